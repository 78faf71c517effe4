"""A bad `hosts` entry of an amqp_def (issue 9, defect 5: "[" and "[:5672"
made the runtime write before a buffer, for a file at start and for every
snapshot from Redis). Every part now uses one validated host:port parser:
NGINX refuses the file with a message naming the entry, zmqctl refuses the
import, and a worker following Redis refuses the snapshot and keeps the
last good one (run under the ASan build, make asan-nginx, for the memory
side)."""

import json
import time

import pytest

from conftest import amqp_config
from test_live_config import PUB, live, post  # noqa: F401  (live: fixture)

BAD = [
    ("[", "'[' without a closing ']'"),
    ("[:5672", "'[' without a closing ']'"),
    ("[]:5672", "no IPv6 address between '[' and ']'"),
    ("::1", "an IPv6 address must be written in brackets"),
    ("rabbit:0", "port 0 is out of range 1-65535"),
    ("rabbit:99999", "port 99999 is out of range 1-65535"),
    ("-rabbit", "begins or ends with '-'"),
    ("rab*bit", "'*' is not allowed in a host name"),
    ("", "is empty"),
]


@pytest.mark.parametrize("entry,why", BAD, ids=[b[0] or "empty"
                                                for b in BAD])
def test_nginx_refuses_a_file_with_a_bad_hosts_entry(nginx_factory, tmp_path,
                                                    entry, why):
    doc = amqp_config(5672, {"svc": {"routing_key": "q"}},
                      amqp_def={"hosts": ["127.0.0.1:5673", entry]})
    path = tmp_path / "zmq.json"
    path.write_text(json.dumps(doc))
    ngx = nginx_factory(http="zmq_config file:%s;" % path, server=PUB)
    rc, out = ngx.test_config()
    assert rc != 0
    assert "amqp_def 'rabbit': hosts[1] '%s': " % entry in out, out
    assert why in out


def test_good_hosts_entries_are_accepted(nginx_factory, tmp_path):
    doc = amqp_config(5672, {"svc": {"routing_key": "q"}}, amqp_def={
        "host": "::1",
        "hosts": ["127.0.0.1", "127.0.0.1:5673", "[::1]:5674", "localhost"]})
    path = tmp_path / "zmq.json"
    path.write_text(json.dumps(doc))
    ngx = nginx_factory(http="zmq_config file:%s;" % path, server=PUB)
    rc, out = ngx.test_config()
    assert rc == 0, out


def test_zmqctl_refuses_a_bad_hosts_entry(zmqctl, tmp_path, redis_store):
    doc = amqp_config(5672, {"svc": {"routing_key": "q"}},
                      amqp_def={"hosts": ["["]})
    path = tmp_path / "c.json"
    path.write_text(json.dumps(doc))
    r = zmqctl("import", path)
    assert r.returncode != 0
    assert "amqp_def 'rabbit': hosts[0] '[': '[' without a closing ']'" in (
        r.stdout + r.stderr)
    assert redis_store.client().get("zmq:version") is None


def test_a_snapshot_with_a_bad_hosts_entry_is_refused(rabbitmq, live, queue,
                                                      redis_store):
    gw = live(PUB, workers=1)
    v = gw.write(amqp_config(rabbitmq.port, {"svc": {
        "routing_key": queue.name}}))
    gw.start()
    gw.wait_version(v)
    gw.wait_ready()
    pid = gw.status()["workers"][0]["pid"]

    # written past zmqctl, as anyone with access to Redis could
    c = redis_store.client()
    d = json.loads(c.get("zmq:obj:amqp_def:rabbit"))
    d["hosts"] = ["[", "[:5672"]
    c.set("zmq:obj:amqp_def:rabbit", json.dumps(d))
    c.incr("zmq:version")
    c.publish("zmq:events", json.dumps({"version": v + 1}))

    deadline = time.monotonic() + 10
    while "refused" not in gw.ngx.error_log():
        assert time.monotonic() < deadline, gw.ngx.error_log()
        time.sleep(0.05)
    log = gw.ngx.error_log()
    assert "amqp_def 'rabbit': hosts[0] '[': '[' without a closing ']'" \
        in log, log
    assert "hosts[1] '[:5672': '[' without a closing ']'" in log

    w = gw.status()["workers"][0]
    assert w["pid"] == pid                          # the worker lived
    assert w["config_version"] == v                 # the last good one
    assert "hosts[0] '['" in w["error"]
    assert post(gw.url + "/pub").status_code == 202
    assert queue.count() == 1
    assert "exited on signal" not in gw.ngx.error_log()
