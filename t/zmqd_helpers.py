"""Helpers of the zmqd hardening tests (t/test_zmqd_*.py): a zmqd fixture
that never leaves a process behind, even when zmqd hangs (which is what
some of these tests catch), and the broker's own view of things."""

import glob
import json
import os
import signal
import subprocess

import pytest

from conftest import register_input_file, register_url_secret
from test_zmqd import Zmqd


@pytest.fixture
def zmqd(zmqctl, redis_store, tmp_path):
    """As test_zmqd's fixture; a zmqd that does not stop within 20 s of
    SIGTERM is killed and fails the test, and so does a sanitizer report
    in its log (an ASan build: make asan)."""
    started = []

    def start(doc=None, source=None, args=()):
        if doc is not None:
            p = tmp_path / ("z%d.json" % len(started))
            p.write_text(json.dumps(doc))
            zmqctl("import", "--replace", p, check=0)
        if source and source.startswith("file:"):
            register_input_file(source[len("file:"):])
        else:
            register_url_secret(source)     # its log lines are scanned
        z = Zmqd(zmqctl, source or redis_store.url, str(tmp_path), args)
        started.append(z)
        return z

    yield start
    bad = []
    for z in started:
        if getattr(z, "killed", False):
            continue
        if z.proc.poll() is None:
            z.proc.send_signal(signal.SIGTERM)
            try:
                z.proc.wait(20)
            except subprocess.TimeoutExpired:
                z.proc.kill()
                z.proc.wait(5)
                bad.append("zmqd did not stop within 20 s of SIGTERM")
        if z.proc.returncode != 0:
            bad.append("zmqd exited %s:\n%s" % (z.proc.returncode, z.text()))
        elif "runtime error:" in z.text() or "Sanitizer" in z.text():
            bad.append("sanitizer report:\n" + z.text())
        z.log.close()
    assert not bad, "\n".join(bad)


def rabbit_log(rabbitmq):
    """The broker's log so far."""
    text = ""
    for path in glob.glob(os.path.join(rabbitmq.env["RABBITMQ_LOG_BASE"],
                                       "*.log")):
        with open(path, errors="replace") as f:
            text += f.read()
    return text


def connections(rabbitmq):
    """The broker's client connections by name."""
    r = rabbitmq.ctl("list_connections", "-q", "--no-table-headers", "name",
                     "user", "timeout")
    assert r.returncode == 0, r.stdout + r.stderr
    out = {}
    for line in r.stdout.splitlines():
        f = line.split("\t")
        if len(f) == 3:
            out[f[0]] = (f[1], f[2])
    return out
