"""A hostile Redis (a store, a page service's Redis, a sentinel) cannot
make a client buffer a reply without end, nor hold it without end by
answering one byte at a time (attack review, finding c).

* A reply may hold at most 64 MiB unparsed, a bulk string may not
  announce more, a line (status, error, integer) may not be longer than
  64 KiB: the connection is dropped with the reason ("reply too
  large: ...") and the process goes on (zmqctl fails with that error; an
  NGINX worker logs it and answers 503 store_unavailable).
* zmqctl and zmqd give each command, and each TLS handshake, one deadline
  (the timeout) as a whole: a server that trickles bytes fails the call
  at the timeout, as a silent one does.

Each hostile peer is a small Python socket server on 127.0.0.1. The
endless streams stop after 100 MiB (past the bound), so a client without
the bound is not pushed to exhaust the machine: it then waits, and fails
with another error, or not at all.
"""

import json
import os
import socket
import subprocess
import threading
import time

import pytest
import requests

from conftest import ZMQCTL, record_output, register_input_file

# past the 64 MiB bound; then the stream pauses for good
STREAM_CAP = 100 * 1024 * 1024
CHUNK = b"x" * 65536


class Hostile:
    """Accepts connections; on a connection's first bytes (a command, or a
    ClientHello) starts `mode`:
      "bulk"     $999999999 then bytes without end
      "line"     a status line without end (+xxxx...)
      "trickle"  $100000 then one byte every 100 ms
      "tls"      a TLS record header announcing 16 KB, then one byte
                 every 100 ms (the handshake never finishes)
    Later connections get the same."""

    def __init__(self, mode):
        self.mode = mode
        self.stop = False
        self.accepted = 0
        self.sent = []
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop:
            try:
                c, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            self.conns.append(c)
            threading.Thread(target=self.serve, args=(c,),
                             daemon=True).start()

    def pause(self, seconds):
        end = time.monotonic() + seconds
        while not self.stop and time.monotonic() < end:
            time.sleep(0.05)

    def serve(self, c):
        c.settimeout(1.0)
        try:
            while not self.stop:
                try:
                    if c.recv(65536):
                        break
                    return                  # closed before asking
                except socket.timeout:
                    continue
            sent = 0
            if self.mode in ("bulk", "line"):
                c.sendall(b"$999999999\r\n" if self.mode == "bulk"
                          else b"+")
                c.settimeout(5.0)
                while not self.stop and sent < STREAM_CAP:
                    c.sendall(CHUNK)
                    sent += len(CHUNK)
                self.pause(3600)
            else:
                c.sendall(b"$100000\r\n" if self.mode == "trickle"
                          else b"\x16\x03\x03\x40\x00")
                while not self.stop:
                    c.sendall(b"\x02")
                    sent += 1
                    self.pause(0.1)
        except OSError:
            pass                            # the client went: as it should
        finally:
            self.sent.append(sent)
            c.close()

    def close(self):
        self.stop = True
        self.sock.close()
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass


@pytest.fixture
def hostile():
    made = []

    def make(mode):
        h = Hostile(mode)
        made.append(h)
        return h

    yield make
    for h in made:
        h.close()


def run_zmqctl(url, *args, tmp_path, limit=60):
    """zmqctl against url; (returncode, stderr, seconds). A run that has
    not ended after `limit` seconds is stopped and fails the test."""
    env = dict(os.environ, ZMQ_REDIS=url,
               ZMQ_KEY_FILE=str(tmp_path / "secret.key"))
    t0 = time.monotonic()
    try:
        r = subprocess.run([ZMQCTL] + list(args), env=env,
                           capture_output=True, text=True, timeout=limit)
    except subprocess.TimeoutExpired:
        pytest.fail("zmqctl %s against %s has not ended after %d s"
                    % (" ".join(args), url, limit))
    took = time.monotonic() - t0
    record_output("zmqctl %s" % " ".join(args),
                  "%s\n%s" % (r.stdout, r.stderr))
    return r.returncode, r.stdout + r.stderr, took


# ------------------------------------------------------------------ zmqctl

@pytest.mark.parametrize("mode,reason", [
    ("bulk", "reply too large: a bulk string of 999999999 bytes "
             "(the bound is 67108864)"),
    ("line", "reply too large: a line of more than 65536 bytes"),
], ids=["announced-bulk", "endless-line"])
def test_zmqctl_fails_on_an_endless_reply_with_the_reason(
        hostile, tmp_path, mode, reason):
    h = hostile(mode)
    rc, out, took = run_zmqctl("redis://127.0.0.1:%d/0" % h.port, "export",
                               tmp_path=tmp_path)
    assert rc != 0, out
    assert "reply too large: " in out and reason in out, out
    # dropped at the bound: well short of what the server would send (the
    # server's thread hears of the close a moment after zmqctl ends)
    end = time.monotonic() + 10
    while not h.sent and time.monotonic() < end:
        time.sleep(0.05)
    assert h.sent and h.sent[0] < STREAM_CAP


def test_zmqctl_gives_up_on_a_trickling_store_at_its_timeout(
        hostile, tmp_path):
    """One byte every 100 ms kept each 5 s wait short: zmqctl never ended.
    The 5 s timeout now covers the whole reply."""
    h = hostile("trickle")
    rc, out, took = run_zmqctl("redis://127.0.0.1:%d/0" % h.port, "export",
                               tmp_path=tmp_path, limit=40)
    assert rc != 0, out
    assert "no complete answer within 5000 ms (" in out, out
    assert "bytes came)" in out, out


def test_zmqctl_gives_up_on_a_trickling_sentinel(hostile, tmp_path):
    """A sentinel that trickles its answer: given up at the sentinel's
    1 s bound, named in the error."""
    h = hostile("trickle")
    rc, out, took = run_zmqctl("redis-sentinel://127.0.0.1:%d/mymaster"
                               % h.port, "export", tmp_path=tmp_path,
                               limit=40)
    assert rc != 0, out
    assert ("no master for 'mymaster' (sentinels: 127.0.0.1:%d: no "
            "complete answer within 1000 ms (" % h.port) in out, out


def test_zmqctl_gives_up_on_a_tls_handshake_that_never_finishes(
        hostile, tmp_path):
    """A rediss:// peer that answers the ClientHello one byte at a time:
    each wait was short, the handshake never ended."""
    h = hostile("tls")
    rc, out, took = run_zmqctl("rediss://127.0.0.1:%d/0" % h.port, "export",
                               tmp_path=tmp_path, limit=40)
    assert rc != 0, out
    assert ("the TLS handshake did not finish within 5000 ms (the server "
            "answers too slowly)") in out, out


# ----------------------------------------------------------- NGINX worker

def page_gateway(nginx_factory, tmp_path, port):
    doc = {"service": [{"name": "p", "kind": "redis_page",
                        "url": "redis://127.0.0.1:%d/0" % port,
                        "key": "k"}],
           "rest_channel": [{"name": "l", "url_path": "/api/list",
                             "method": "GET", "service": "p"}]}
    path = tmp_path / "bounds.json"
    path.write_text(json.dumps(doc))
    register_input_file(path)
    ngx = nginx_factory(http="zmq_config file:%s;" % path,
                        server="location /api/ { zmq_router; }\n")
    ngx.start()
    return ngx


@pytest.mark.parametrize("mode,reason", [
    ("bulk", "connection closed: reply too large: a bulk string of "
             "999999999 bytes (the bound is 67108864)"),
    ("line", "reply too large: a line of more than 65536 bytes"),
], ids=["announced-bulk", "endless-line"])
def test_a_worker_drops_an_endless_reply_logs_why_and_answers_503(
        nginx_factory, tmp_path, hostile, mode, reason):
    h = hostile(mode)
    ngx = page_gateway(nginx_factory, tmp_path, h.port)
    deadline = time.monotonic() + 10
    while not h.accepted:
        assert time.monotonic() < deadline, "the worker never connected"
        time.sleep(0.05)
    time.sleep(0.3)
    pids = ngx.worker_pids()

    # dropped at the bound, not at the command timeout (5 s)
    t0 = time.monotonic()
    r = requests.get(ngx.url + "/api/list", timeout=30)
    took = time.monotonic() - t0
    assert r.status_code == 503, r.text
    assert r.json()["error"] == "store_unavailable"
    log = ngx.error_log()
    assert "reply too large: " in log and reason in log, log[-2000:]
    assert took < 4, took

    # the worker is the same one, and goes on answering
    for _ in range(3):
        r = requests.get(ngx.url + "/api/list", timeout=30)
        assert r.status_code == 503, r.text
        assert r.json()["error"] == "store_unavailable"
        assert r.headers["Retry-After"] == "1"
    assert ngx.worker_pids() == pids
