"""The AMQP client read as an attacker would: a hostile broker (or anyone
between the gateway and the broker) sends any frame_max, any frame size,
any nesting, returns for messages it never had; clients choose message ids
that collide. The gateway refuses what AMQP 0-9-1 forbids, logs why, keeps
its 2xx honest and never crashes (conftest fails a test on any [alert],
which is how NGINX reports a worker that died, or on a sanitizer report).
"""

import concurrent.futures
import os
import re
import struct
import subprocess
import time
import uuid

import pika.spec
import pytest
import requests

import conftest
from conftest import amqp_config, ASAN_PRELOAD
from fake_amqp import FakeAmqp, frame, method_frame
from test_live_config import live  # noqa: F401 (a fixture)

PUB = ("location = /pub { zmq_service svc; zmq_max_body 4m;"
       " client_max_body_size 4m; }\n")
HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(autouse=True)
def workers_die_loudly(monkeypatch):
    """Under a root master the workers run as nobody and cannot write their
    sanitizer report (asan.<pid>) into the test's directory, and NGINX logs
    a worker's exit with a non-zero code only as a notice: let them write
    it, and fail on any such exit (a signal is an [alert] already)."""
    started = []
    start = conftest.Nginx.start

    def writable_start(self):
        os.chmod(self.dir, 0o1777)
        started.append(self)
        return start(self)

    monkeypatch.setattr(conftest.Nginx, "start", writable_start)
    yield
    bad = [line for ngx in started for line in ngx.error_log().splitlines()
           if re.search(r"exited with (fatal )?code [1-9]", line)]
    assert not bad, "\n".join(bad)


def post(gw, data=b"x", headers=None, path="/pub", timeout=30):
    return requests.post(gw.url + path, data=data, headers=headers or {},
                         timeout=timeout)


def config(port, svc=None, amqp_def=None, **outconn):
    return amqp_config(port, {"svc": svc or {"routing_key": "q"}},
                       outconn=outconn or None, amqp_def=amqp_def)


def wait_for(cond, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


def dropped_and_retried(gw, fake, text):
    """The gateway gave up on the connection, said why, and tried again;
    meanwhile a request is answered 503 broker_unavailable."""
    wait_for(lambda: fake.connections >= 2, what="a second connection")
    wait_for(lambda: text in gw.ngx.error_log(), what=repr(text))
    r = post(gw, b"after", timeout=10)
    assert r.status_code == 503, r.text
    assert r.json()["error"] == "broker_unavailable"
    assert "Retry-After" in r.headers
    assert gw.status()["pid"] > 0


# ------------------------------------------------ connection.tune frame_max

@pytest.mark.parametrize("frame_max", [1, 7, 100, 4095])
def test_a_frame_max_below_the_amqp_minimum_is_refused(gateway, frame_max):
    fake = FakeAmqp(frame_max=frame_max)
    try:
        gw = gateway(config(fake.port), PUB, wait=None)
        dropped_and_retried(gw, fake, "frame_max %d" % frame_max)
        log = gw.ngx.error_log()
        assert "below the AMQP minimum of 4096" in log
        # a large body is refused the same way, and nothing was published
        r = post(gw, b"x" * (1024 * 1024), timeout=10)
        assert r.status_code == 503
        assert r.json()["error"] == "broker_unavailable"
        assert fake.published == []
        assert gw.totals()["reconnects"] >= 2
    finally:
        fake.close()


@pytest.mark.parametrize("ours", [4096, 131072])
def test_a_frame_max_of_zero_means_our_own_limit(gateway, ours):
    """0 in connection.tune: the broker sets no limit; the gateway uses the
    definition's frame_max and splits large bodies by it."""
    fake = FakeAmqp(frame_max=0)
    try:
        gw = gateway(config(fake.port, amqp_def={"frame_max": ours}), PUB)
        body = os.urandom(300 * 1024 + 17)
        r = post(gw, body)
        assert r.status_code == 202, r.text
        [(_, _, got)] = fake.published
        assert got == body
        assert fake.max_frame <= ours
        assert "frame_max %d," % ours in gw.ngx.error_log()
    finally:
        fake.close()


def test_the_smallest_frame_max_carries_large_bodies(gateway):
    fake = FakeAmqp(frame_max=4096)
    try:
        gw = gateway(config(fake.port), PUB)
        bodies = [os.urandom(n) for n in (0, 1, 4087, 4088, 4089, 100000)]
        for body in bodies:
            assert post(gw, body).status_code == 202
        assert [b for _, _, b in fake.published] == bodies
        assert fake.max_frame <= 4096
    finally:
        fake.close()


# --------------------------------------------- frames a broker must not send

def nested_arrays(depth):
    """A field value: arrays nested depth deep."""
    v = b"A" + struct.pack(">I", 0)
    for _ in range(depth - 1):
        v = b"A" + struct.pack(">I", len(v)) + v
    return v


def table(entries):
    data = b""
    for k, v in entries:
        data += bytes([len(k)]) + k + v
    return struct.pack(">I", len(data)) + data


def header_payload(body_size, flags, props=b""):
    return struct.pack(">HHQH", 60, 0, body_size, flags) + props


def basic_return(routing_key="q"):
    return method_frame(1, pika.spec.Basic.Return(
        reply_code=312, reply_text="NO_ROUTE", exchange="",
        routing_key=routing_key))


HOSTILE = {
    "method frame shorter than a method id":
        (frame(1, 1, b"\x00\x3c"), "bad frame"),
    "empty method frame":
        (frame(1, 0, b""), "bad frame"),
    "content header shorter than its fixed part":
        (frame(2, 1, b"\x00\x3c\x00\x00\x00"), "bad frame"),
    "frame larger than frame_max":
        (struct.pack(">BHL", 3, 1, 1000000) + b"x" * 100, "bad frame"),
    "frame size 2^32-1":
        (struct.pack(">BHL", 1, 1, 0xffffffff) + b"x" * 100, "bad frame"),
    "unknown frame type":
        (frame(9, 1, b"abcd"), "bad frame"),
    "wrong frame-end byte":
        (frame(8, 0, b"")[:-1] + b"\x00", "bad frame"),
    "content frames on a channel never opened":
        (frame(3, 7, b"body"), "bad frame"),
    "a method the gateway never expects":
        (method_frame(1, pika.spec.Queue.Declare(queue="x")),
         "unexpected method"),
    "properties with a continuation flag word":
        (basic_return() + frame(2, 1, header_payload(0, 0x0001)
                                + b"\xff\xff" * 8), "bad content header"),
    "headers nested 300 deep in a returned message":
        (basic_return() + frame(2, 1, header_payload(
            0, 0x2000, table([(b"k", nested_arrays(300))]))),
         "bad content header"),
    "a headers table longer than its frame":
        (basic_return() + frame(2, 1, header_payload(
            0, 0x2000, struct.pack(">I", 1000) + b"\x01k")),
         "bad content header"),
    "a body before any content header":
        (frame(3, 1, b"stray"), "bad frame"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_a_hostile_frame_drops_the_connection_not_the_worker(gateway, name):
    data, text = HOSTILE[name]
    fake = FakeAmqp(after_ready=data, frame_max=131072)
    try:
        gw = gateway(config(fake.port), PUB, wait=None)
        dropped_and_retried(gw, fake, text)
    finally:
        fake.close()


def test_headers_nested_deeper_than_any_stack_do_not_crash(gateway):
    """A returned message whose headers nest arrays hundreds of thousands
    deep: a recursive decoder would run out of stack."""
    payload = header_payload(0, 0x2000,
                             table([(b"k", nested_arrays(400000))]))
    fake = FakeAmqp(after_ready=basic_return() + frame(2, 1, payload),
                    frame_max=2097152)
    try:
        gw = gateway(config(fake.port, amqp_def={"frame_max": 2097152}),
                     PUB, wait=None)
        dropped_and_retried(gw, fake, "bad content header")
    finally:
        fake.close()


def test_a_start_with_server_properties_nested_too_deep(gateway):
    nested = table([(b"k", b"F" + table([]))])
    for _ in range(600):
        nested = table([(b"k", b"F" + nested)])
    payload = (struct.pack(">I", 0x000a000a) + b"\x00\x09" + nested
               + struct.pack(">I", 5) + b"PLAIN"
               + struct.pack(">I", 5) + b"en_US")
    fake = FakeAmqp(start=frame(1, 0, payload))
    try:
        gw = gateway(config(fake.port), PUB, wait=None)
        dropped_and_retried(gw, fake, "bad frame")
    finally:
        fake.close()


def test_a_broker_that_never_stops_sending_does_not_starve_the_worker(
        gateway):
    """Heartbeats as fast as the broker can send them, for 4 s: the worker
    reads a bounded amount per turn of its event loop and keeps answering
    its clients meanwhile."""
    fake = FakeAmqp(flood=4.0)
    try:
        gw = gateway(config(fake.port), PUB, wait=None)
        wait_for(lambda: fake.flooded > 0, what="the flood")
        worst = 0.0
        t_end = time.monotonic() + 3
        while time.monotonic() < t_end:
            t0 = time.monotonic()
            requests.get(gw.url + "/zmq/status", timeout=10)
            worst = max(worst, time.monotonic() - t0)
        assert worst < 1.0, "a request waited %.1f s" % worst
        assert fake.flooded > 50 * 1024 * 1024     # it was a flood
    finally:
        fake.close()


def test_confirms_for_tags_never_published_are_ignored(gateway):
    data = (method_frame(1, pika.spec.Basic.Ack(delivery_tag=2 ** 64 - 1,
                                                multiple=True))
            + method_frame(1, pika.spec.Basic.Nack(delivery_tag=77,
                                                   multiple=False)))
    fake = FakeAmqp(after_ready=data)
    try:
        gw = gateway(config(fake.port), PUB)
        wait_for(lambda: "unknown delivery tag" in gw.ngx.error_log())
        assert post(gw, b"fine").status_code == 202
        assert gw.totals()["reconnects"] == 0
    finally:
        fake.close()


def test_broker_text_cannot_forge_log_lines(gateway):
    data = method_frame(0, pika.spec.Connection.Blocked(
        reason="low\n2030/01/01 00:00:00 [emerg] 1#1: forged"))
    fake = FakeAmqp(after_ready=data)
    try:
        gw = gateway(config(fake.port), PUB, wait=None)
        wait_for(lambda: "blocked publishing" in gw.ngx.error_log())
        assert "blocked publishing: low\\x0a2030/01/01" in gw.ngx.error_log()
        log = gw.ngx.error_log()
        assert not any(line.startswith("2030/01/01")
                       for line in log.splitlines())
    finally:
        fake.close()


# ------------------------------------------------ basic.return matching

MANDATORY = {"routing_key": "$arg_q", "mandatory": True}


def test_returns_match_the_message_not_its_client_chosen_id(gateway):
    """Two requests with the same X-Message-Id in flight: the routable one
    published first, the unroutable one second. The return must reach the
    second."""
    fake = FakeAmqp(unroutable={"nobody"}, ack_delay=0.5)
    try:
        gw = gateway(config(fake.port, MANDATORY), PUB)
        hdr = {"X-Message-Id": "same"}
        with concurrent.futures.ThreadPoolExecutor(2) as ex:
            routed = ex.submit(post, gw, b"a", hdr, "/pub?q=somebody")
            wait_for(lambda: len(fake.published) == 1)
            unrouted = ex.submit(post, gw, b"b", hdr, "/pub?q=nobody")
            assert routed.result().status_code == 202, routed.result().text
            r = unrouted.result()
            assert r.status_code == 422, r.text
            assert r.json()["error"] == "unroutable"
        t = gw.totals()
        assert (t["confirmed"], t["returned"]) == (1, 1)
        # the gateway's own header went with every mandatory message
        seqs = [p.headers["x-zmq-seq"] for _, p, _ in fake.published]
        assert seqs == [1, 2]
    finally:
        fake.close()


def test_a_client_cannot_forge_the_gateway_header(gateway):
    fake = FakeAmqp(unroutable={"nobody"}, ack_delay=0.3)
    try:
        gw = gateway(config(fake.port, MANDATORY), PUB)
        with concurrent.futures.ThreadPoolExecutor(2) as ex:
            routed = ex.submit(post, gw, b"a", {}, "/pub?q=somebody")
            wait_for(lambda: len(fake.published) == 1)
            # claims to be message 1
            unrouted = ex.submit(post, gw, b"b",
                                 {"X-Zmq-Header-x-zmq-seq": "1"},
                                 "/pub?q=nobody")
            assert routed.result().status_code == 202
            # refused at the edge, or replaced by the gateway's own
            assert unrouted.result().status_code in (400, 422)
        headers = [p.headers for _, p, _ in fake.published]
        assert headers in ([{"x-zmq-seq": 1}],
                           [{"x-zmq-seq": 1}, {"x-zmq-seq": 2}])
    finally:
        fake.close()


def test_a_return_without_the_gateway_header_is_logged_and_ignored(gateway):
    def strip(fake, tag, method, props, body, raw_header):
        # a return whose content header the gateway never sent, then the
        # ack that settles the message
        return (basic_return("nobody")
                + frame(2, 1, header_payload(len(body), 0))
                + frame(3, 1, body)
                + method_frame(1, pika.spec.Basic.Ack(delivery_tag=tag)))
    fake = FakeAmqp(on_publish=strip)
    try:
        gw = gateway(config(fake.port, MANDATORY), PUB)
        r = post(gw, b"x", path="/pub?q=nobody")
        assert r.status_code == 202
        assert "basic.return for no message in flight" in gw.ngx.error_log()
    finally:
        fake.close()


def test_a_large_returned_message_is_skipped_frame_by_frame(gateway):
    fake = FakeAmqp(unroutable={"nobody"}, frame_max=4096)
    try:
        gw = gateway(config(fake.port, MANDATORY), PUB)
        r = post(gw, os.urandom(200000), path="/pub?q=nobody")
        assert r.status_code == 422
        assert post(gw, b"next", path="/pub?q=x").status_code == 202
        assert gw.totals()["reconnects"] == 0
    finally:
        fake.close()


def test_same_message_id_routable_and_unroutable_on_rabbitmq(rabbitmq,
                                                             gateway, queue):
    gw = gateway(amqp_config(rabbitmq.port, {"svc": MANDATORY}), PUB)
    n = 200
    mid = "dup-" + uuid.uuid4().hex[:8]

    def one(i):
        routable = i % 2 == 0
        q = queue.name if routable else "nobody.listens." + mid
        r = post(gw, b"%d" % i, {"X-Message-Id": mid}, "/pub?q=" + q)
        return i, routable, r.status_code

    with concurrent.futures.ThreadPoolExecutor(32) as ex:
        results = list(ex.map(one, range(n)))
    wrong = [(i, code) for i, routable, code in results
             if code != (202 if routable else 422)]
    assert wrong == []
    msgs = queue.drain(expect=n // 2)
    assert sorted(int(b) for _, _, b in msgs) == list(range(0, n, 2))
    assert all(p.message_id == mid for _, p, _ in msgs)
    assert all(isinstance(p.headers["x-zmq-seq"], int) for _, p, _ in msgs)
    t = gw.totals()
    assert (t["confirmed"], t["returned"]) == (n // 2, n // 2)


# ------------------------------------------------ allocation failures

def build_failmalloc(tmp_path):
    so = str(tmp_path / "failmalloc.so")
    subprocess.run(["gcc", "-shared", "-fPIC", "-O1", "-o", so,
                    os.path.join(HERE, "failmalloc.c")], check=True)
    return so


class FailMalloc:
    """Arms t/failmalloc.c in front of the next nginx started: malloc() of
    the given sizes fails while the trigger file exists."""

    def __init__(self, tmp_path, monkeypatch, sizes):
        self.trigger = tmp_path / "failmalloc.on"
        self.log = tmp_path / "failmalloc.log"
        self.log.write_text("")
        os.chmod(self.log, 0o666)        # workers run as nobody under root
        monkeypatch.setenv("LD_PRELOAD", build_failmalloc(tmp_path))
        monkeypatch.setenv("FAILMALLOC_SIZE",
                           ",".join(str(s) for s in sizes))
        monkeypatch.setenv("FAILMALLOC_TRIGGER", str(self.trigger))
        monkeypatch.setenv("FAILMALLOC_LOG", str(self.log))

    def on(self):
        self.trigger.touch()

    def off(self):
        self.trigger.unlink()

    def fired(self):
        return self.log.read_text()


@pytest.fixture
def failmalloc(tmp_path, monkeypatch):
    if ASAN_PRELOAD:
        pytest.skip("the malloc shim cannot stand in front of ASan")
    return lambda *sizes: FailMalloc(tmp_path, monkeypatch, sizes)


def test_a_failed_allocation_never_turns_unroutable_into_202(gateway,
                                                             failmalloc):
    """The message id of a mandatory message was copied with an unchecked
    allocation: when it failed, the return matched nothing and the ack
    answered 202."""
    mid = "m" * 233
    fm = failmalloc(len(mid) + 1)
    fake = FakeAmqp(unroutable={"nobody"})
    try:
        gw = gateway(config(fake.port, MANDATORY), PUB)
        fm.on()
        r = post(gw, b"x", {"X-Message-Id": mid}, "/pub?q=nobody")
        assert r.status_code != 202, fm.fired()
        assert r.status_code == 422, r.text
    finally:
        fake.close()


def entry_size():
    src = ("#include <stdio.h>\n#include <amqp.h>\nint main(void){"
           "printf(\"%zu\", sizeof(amqp_table_entry_t));return 0;}")
    exe = "/tmp/zmq_entry_size_%d" % os.getpid()
    subprocess.run(["gcc", "-x", "c", "-", "-o", exe], input=src.encode(),
                   check=True)
    try:
        return int(subprocess.check_output([exe]))
    finally:
        os.unlink(exe)


def test_a_failed_allocation_of_the_headers_table_is_500(gateway,
                                                         failmalloc):
    nheaders = 37          # the gateway's table has one more entry
    fm = failmalloc((nheaders + 1) * entry_size())
    fake = FakeAmqp(unroutable={"nobody"})
    try:
        gw = gateway(config(fake.port, MANDATORY), PUB)
        fm.on()
        headers = {"X-Zmq-Header-H%d" % i: "v" for i in range(nheaders)}
        r = post(gw, b"x", headers, "/pub?q=nobody")
        assert fm.fired()
        assert r.status_code == 500, r.text
        assert r.json()["error"] == "internal_error"
        assert fake.published == []
        fm.off()
        r = post(gw, b"x", headers, "/pub?q=nobody")
        assert r.status_code == 422
    finally:
        fake.close()


# ------------------------------------------------ memory per connection

def worker_rss_kb(gw):
    pid = gw.status()["pid"]
    with open("/proc/%d/status" % pid) as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


def test_max_inflight_memory_grows_with_use_not_with_the_bound(gateway):
    fake = FakeAmqp()
    fake_small = FakeAmqp()
    try:
        small = gateway(config(fake_small.port, max_inflight=16), PUB)
        # the model's largest max_inflight (65536; more is refused at
        # validation): 65,536 slots of 160 bytes were 10 MB up front
        big = gateway(config(fake.port, max_inflight=65536), PUB)
        assert post(big).status_code == 202
        assert worker_rss_kb(big) < worker_rss_kb(small) + 4 * 1024
    finally:
        fake.close()
        fake_small.close()


def test_the_ring_grows_with_messages_in_flight(gateway):
    """Hundreds of messages in flight, confirmed late and out of order of
    arrival: every answer reaches its own request."""
    fake = FakeAmqp(ack_delay=0.3)
    try:
        gw = gateway(config(fake.port, max_inflight=1000), PUB)
        with concurrent.futures.ThreadPoolExecutor(64) as ex:
            rs = list(ex.map(lambda i: post(gw, b"%d" % i,
                                            {"X-Message-Id": "id-%d" % i}),
                             range(400)))
        assert [r.status_code for r in rs] == [202] * 400
        assert [r.json()["message_id"] for r in rs] == \
            ["id-%d" % i for i in range(400)]
        t = gw.totals()
        assert (t["published"], t["confirmed"], t["inflight"]) == (
            400, 400, 0)
    finally:
        fake.close()


def test_the_inflight_bound_holds_past_the_first_ring(gateway):
    fake = FakeAmqp(never_ack=True)
    try:
        gw = gateway(config(fake.port, max_inflight=100),
                     PUB + "zmq_confirm_timeout 3s;")
        with concurrent.futures.ThreadPoolExecutor(100) as ex:
            waiting = [ex.submit(post, gw, b"w%d" % i) for i in range(100)]
            wait_for(lambda: len(fake.published) == 100)
            r = post(gw, b"over")
            assert r.status_code == 503
            assert r.json()["error"] == "overloaded"
            assert {w.result().status_code for w in waiting} == {504}
    finally:
        fake.close()


# ------------------------------------------------ a retired connection

@pytest.mark.parametrize("heartbeat", [0, 1])
def test_a_retired_connection_that_is_never_confirmed_gives_up(live,
                                                               heartbeat):
    """A configuration change retires a connection whose broker never
    confirms (with heartbeats, or none agreed: either way the link looks
    alive): once every waiting request has had its answer, it gives the
    rest up instead of draining forever."""
    fake = FakeAmqp(never_ack=True, heartbeat=heartbeat)
    if heartbeat:
        fake.answer_heartbeats = True
    try:
        gw = live(PUB + "zmq_confirm_timeout 300ms;", workers=1)
        doc = config(fake.port, amqp_def={"heartbeat": heartbeat})
        v = gw.write(doc)
        gw.start()
        gw.wait_version(v)
        gw.wait_ready()
        r = post(gw, b"never confirmed")
        assert r.status_code == 504
        doc["amqp_def"][0]["vhost"] = "/other"
        v2 = gw.write(doc)
        gw.wait_version(v2)
        assert any("draining" in n
                   for n in gw.status()["workers"][0]["outconns"])
        # 300 ms of confirm timeout and 5 s of grace
        wait_for(lambda: len(gw.status()["workers"][0]["outconns"]) == 1,
                 timeout=15, what="the drain to end")
        log = gw.ngx.error_log()
        assert "retired, and 1 message(s) still unconfirmed after 5300 ms" \
            in log
        assert "drained and closed" in log
    finally:
        fake.close()
