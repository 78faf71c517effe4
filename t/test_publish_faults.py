"""Publishing when the broker misbehaves, with a fake AMQP server for what a
real RabbitMQ will not do on demand: frames one byte at a time, no answer
at all, confirms that come late, never, or negative; and clients that go
away while their message is in flight."""

import concurrent.futures
import json
import re
import socket
import time

import requests

from conftest import amqp_config, free_port
from fake_amqp import FakeAmqp

PUB = "location = /pub { zmq_service svc; }\n"


def post(gw, data=b"x", timeout=30):
    return requests.post(gw.url + "/pub", data=data, timeout=timeout)


def config(port, **outconn):
    return amqp_config(port, {"svc": {"routing_key": "q"}},
                       outconn=outconn or None)


def test_handshake_frames_sent_one_byte_at_a_time(gateway):
    fake = FakeAmqp(trickle=True)
    try:
        gw = gateway(config(fake.port), PUB)
        r = post(gw, data=b"slowly")
        assert r.status_code == 202, r.text
        assert r.json()["confirmed"] is True
        [(method, props, body)] = fake.published
        assert body == b"slowly"
        assert method.routing_key == "q"
    finally:
        fake.close()


def test_a_handshake_out_of_order_is_dropped_and_retried(gateway):
    fake = FakeAmqp(tune_first=True)
    try:
        gw = gateway(config(fake.port), PUB, wait="backoff")
        deadline = time.monotonic() + 10
        while fake.connections < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert fake.connections >= 2, "no retry after the bad handshake"
        r = post(gw, timeout=5)
        assert r.status_code == 503
        assert r.json()["error"] == "broker_unavailable"
        assert "unexpected method" in gw.ngx.error_log()
        assert fake.published == []
    finally:
        fake.close()


def test_a_broker_that_never_answers_times_out_without_a_hang(gateway):
    fake = FakeAmqp(silent=True)
    try:
        gw = gateway(config(fake.port), PUB,
                     http="zmq_amqp_connect_timeout 300ms;",
                     wait="connecting")
        t0 = time.monotonic()
        r = post(gw, timeout=5)
        assert time.monotonic() - t0 < 2
        assert r.status_code == 503
        assert r.json()["error"] == "broker_unavailable"
        assert int(r.headers["Retry-After"]) >= 1
        # it gives up on the handshake and tries again, with backoff
        deadline = time.monotonic() + 10
        while gw.totals()["reconnects"] < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert gw.totals()["reconnects"] >= 2
        assert fake.connections >= 2
        assert "handshake timed out" in gw.ngx.error_log()
    finally:
        fake.close()


def test_a_refused_connection_is_503_and_backoff(gateway):
    port = free_port()                   # nobody listens there
    gw = gateway(config(port), PUB, wait="backoff")
    r = post(gw)
    assert r.status_code == 503
    assert r.json()["error"] == "broker_unavailable"
    assert "Retry-After" in r.headers
    assert gw.totals()["rejected"] == 1


def test_no_confirm_in_time_is_504(gateway):
    fake = FakeAmqp(never_ack=True)
    try:
        gw = gateway(config(fake.port), PUB + "zmq_confirm_timeout 300ms;")
        t0 = time.monotonic()
        r = post(gw)
        assert 0.2 < time.monotonic() - t0 < 3
        assert r.status_code == 504
        assert r.json()["error"] == "confirm_timeout"
        t = gw.totals()
        assert t["timed_out"] == 1
        # the message still holds its in-flight slot: the broker may yet
        # confirm it, and the bound must stay honest
        assert t["inflight"] == 1
    finally:
        fake.close()


def test_the_inflight_bound_answers_503_instead_of_queueing(gateway):
    fake = FakeAmqp(never_ack=True)
    try:
        gw = gateway(config(fake.port, max_inflight=2),
                     PUB + "zmq_confirm_timeout 2s;")
        with concurrent.futures.ThreadPoolExecutor(2) as ex:
            waiting = [ex.submit(post, gw, b"w%d" % i) for i in range(2)]
            deadline = time.monotonic() + 5
            while len(fake.published) < 2 and time.monotonic() < deadline:
                time.sleep(0.02)
            t0 = time.monotonic()
            r = post(gw)
            assert time.monotonic() - t0 < 1
            assert r.status_code == 503
            assert r.json()["error"] == "overloaded"
            assert r.headers["Retry-After"] == "1"
            assert [w.result().status_code for w in waiting] == [504, 504]
        assert len(fake.published) == 2
    finally:
        fake.close()


def test_a_nack_is_503_with_retry_after(gateway):
    fake = FakeAmqp(nack=True)
    try:
        gw = gateway(config(fake.port), PUB)
        r = post(gw)
        assert r.status_code == 503
        assert r.json()["error"] == "nacked"
        assert r.headers.get("Retry-After") == "1"
        assert gw.totals()["nacked"] == 1
    finally:
        fake.close()


def test_late_confirms_are_matched_to_their_requests(gateway):
    fake = FakeAmqp(ack_delay=0.3)
    try:
        gw = gateway(config(fake.port), PUB)
        with concurrent.futures.ThreadPoolExecutor(8) as ex:
            codes = list(ex.map(lambda i: post(gw, b"%d" % i).status_code,
                                range(16)))
        assert codes == [202] * 16
        assert sorted(b for _, _, b in fake.published) == sorted(
            b"%d" % i for i in range(16))
    finally:
        fake.close()


def raw_request(port, body):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"POST /pub HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n"
              % len(body) + body)
    return s


def test_clients_that_abort_mid_flight_leave_nothing_behind(gateway):
    fake = FakeAmqp(ack_delay=0.5)
    try:
        gw = gateway(config(fake.port), PUB)
        for i in range(20):
            raw_request(gw.ngx.port, b"abort %d" % i).close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            t = gw.totals()
            if t["confirmed"] == 20 and t["inflight"] == 0:
                break
            time.sleep(0.1)
        t = gw.totals()
        assert (t["published"], t["confirmed"], t["inflight"]) == (20, 20, 0)
        # and the worker is as good as new
        assert post(gw, b"after").status_code == 202
        assert len(fake.published) == 21
    finally:
        fake.close()


def read_response(s):
    """Status and body of one HTTP/1.1 response with a Content-Length."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        assert chunk, "connection closed before the response"
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
    while len(body) < length:
        chunk = s.recv(4096)
        assert chunk
        body += chunk
    return int(head.split()[1]), json.loads(body)


def test_one_confirm_for_hundreds_of_requests_answers_them_all(gateway):
    """One basic.ack "multiple" settles 300 requests; the worker answers
    them a batch per turn of its event loop, each its own message id, and
    the clients that left meanwhile are skipped without harm."""
    fake = FakeAmqp(batch_ack=300)
    try:
        gw = gateway(config(fake.port), PUB)
        socks = []

        def send(i):
            s = socket.create_connection(("127.0.0.1", gw.ngx.port))
            s.sendall(b"POST /pub HTTP/1.1\r\nHost: t\r\nX-Message-Id: "
                      b"m-%d\r\nContent-Length: 1\r\n\r\nx" % i)
            socks.append(s)

        def published(n):
            deadline = time.monotonic() + 10
            while len(fake.published) < n and time.monotonic() < deadline:
                time.sleep(0.05)
            assert len(fake.published) == n

        for i in range(299):
            send(i)
        published(299)
        # some clients leave while their messages wait for the broker
        gone = set(range(0, 299, 7))
        for i in gone:
            socks[i].close()
        send(299)           # the broker acks all 300 with this one
        published(300)
        for i, s in enumerate(socks):
            if i in gone:
                continue
            s.settimeout(10)
            status, doc = read_response(s)
            assert (status, doc) == (202, {"message_id": "m-%d" % i,
                                           "confirmed": True})
            s.close()
        t = gw.totals()
        assert (t["published"], t["confirmed"], t["inflight"]) == (
            300, 300, 0)
    finally:
        fake.close()


def test_the_connection_lost_with_messages_in_flight_is_503(gateway):
    fake = FakeAmqp(never_ack=True)
    try:
        gw = gateway(config(fake.port), PUB + "zmq_confirm_timeout 10s;")
        with concurrent.futures.ThreadPoolExecutor(1) as ex:
            waiting = ex.submit(post, gw)
            deadline = time.monotonic() + 5
            while not fake.published and time.monotonic() < deadline:
                time.sleep(0.02)
            fake.close()              # the broker goes away
            r = waiting.result()
        assert r.status_code == 503
        assert r.json()["error"] == "broker_unavailable"
        assert "Retry-After" in r.headers
        assert gw.totals()["lost"] == 1
    finally:
        fake.close()


def test_heartbeats_are_sent_and_a_silent_broker_is_dropped(gateway):
    fake = FakeAmqp(heartbeat=1)          # the gateway agrees to 1 s
    try:
        gw = gateway(config(fake.port), PUB)
        deadline = time.monotonic() + 10
        while gw.totals()["reconnects"] == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        # it sent heartbeats, heard none back, and gave up on the link
        assert fake.heartbeats >= 1
        assert gw.totals()["reconnects"] >= 1
        assert "no heartbeat from the broker" in gw.ngx.error_log()
    finally:
        fake.close()


def test_the_next_host_of_the_definition_is_tried(gateway):
    fake = FakeAmqp()
    try:
        cfg = amqp_config(free_port(), {"svc": {"routing_key": "q"}},
                          amqp_def={"hosts": ["127.0.0.1:%d" % fake.port]})
        gw = gateway(cfg, PUB, wait=None)
        gw.wait_state("ready", timeout=15)
        assert post(gw).status_code == 202
        assert len(fake.published) == 1
    finally:
        fake.close()


def test_a_broker_that_stops_reading_fills_a_bounded_buffer(gateway):
    fake = FakeAmqp(stall=True)
    try:
        gw = gateway(config(fake.port), PUB + "zmq_confirm_timeout 2s;"
                     "zmq_max_body 2m;",
                     http="zmq_amqp_buffer_limit 256k;")
        [worker] = gw.ngx.worker_pids()
        body = b"x" * (1024 * 1024)
        with concurrent.futures.ThreadPoolExecutor(24) as ex:
            rs = list(ex.map(lambda i: post(gw, body), range(24)))
        codes = [r.status_code for r in rs]
        # what the socket took waits for a confirm (504); past the bound
        # the gateway answers at once instead of buffering without limit
        assert set(codes) <= {503, 504}, codes
        overloaded = [r for r in rs if r.status_code == 503]
        assert overloaded, codes
        assert {r.json()["error"] for r in overloaded} == {"overloaded"}
        timed_out = codes.count(504)
        # the same worker (it neither died nor blocked) answers at once,
        # and its counters add up: each 504 was published and still waits
        # for its confirm, each 503 was refused without publishing
        t0 = time.monotonic()
        doc = gw.status()
        assert time.monotonic() - t0 < 1
        assert doc["pid"] == worker
        assert gw.ngx.worker_pids() == [worker]
        [w] = doc["workers"]
        assert w["outconns"]["out"] == {
            "state": "ready", "inflight": timed_out, "published": timed_out,
            "confirmed": 0, "nacked": 0, "returned": 0,
            "timed_out": timed_out, "lost": 0, "rejected": len(overloaded),
            "reconnects": 0, "rpc_requests": 0, "rpc_waiting": 0,
            "rpc_replies": 0, "rpc_timeouts": 0, "rpc_late": 0,
            "rpc_bad": 0, "rpc_lost": 0}
    finally:
        fake.close()
