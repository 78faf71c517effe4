"""Hostile inputs against what was built today (TLS, batches, idempotency
keys, trace context, the fleet, STOMP ping/send): each test asserts the
worker survives (the nginx fixture fails a test on a crash, an [alert] or
sanitizer output), the answer is the documented JSON error, and nothing is
lost or leaked. Run it under ASan too (see the file's README section)."""

import http.client
import json
import socket
import time

import pytest
import requests

from conftest import amqp_config

TP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

LOCS = ("location /pub { zmq_service svc; }\n"
        "location /batch { zmq_service svc; zmq_batch on; }\n"
        "location /env { zmq_service svc; zmq_batch on; "
        "zmq_batch_envelope on; }\n")


@pytest.fixture
def gw(rabbitmq, gateway, queue):
    g = gateway(amqp_config(rabbitmq.port, {"svc": {
        "routing_key": queue.name}}), LOCS)
    g.queue = queue
    return g


def raw_post(gw, path, headers, body=b""):
    """A request with headers repeated as given (a list of pairs)."""
    c = http.client.HTTPConnection("127.0.0.1", gw.ngx.port, timeout=30)
    c.putrequest("POST", path)
    for k, v in headers:
        c.putheader(k, v)
    c.putheader("Content-Length", str(len(body)))
    c.endheaders()
    c.send(body)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data


# ----------------------------------------------------------- trace context

def test_33_long_tracestate_lines_are_dropped_not_copied_past_the_buffer(gw):
    """33 tracestate lines: the 33rd made the joined length look like
    exactly 512 bytes, and the 32 kept lines (here 8 KB) were copied into a
    513-byte buffer (a heap overflow in the worker)."""
    lines = [("tracestate", "k%d=%s" % (i, "v" * 240)) for i in range(33)]
    status, body = raw_post(gw, "/pub", [("traceparent", TP)] + lines, b"{}")
    assert status == 202, body
    [(_, props, _)] = gw.queue.drain(expect=1)
    assert props.headers == {"traceparent": TP}
    assert "tracestate dropped: has more than 32 list members" \
        in gw.ngx.error_log()


# ----------------------------------------------------------------- batches

def test_an_envelope_with_thousands_of_headers_is_refused_quickly(gw):
    """Each envelope header was compared with every one before it (case
    insensitively): one line of 60,000 short headers kept the worker busy
    for seconds, every other request on it waiting."""
    hdrs = {"h%d" % i: "v" for i in range(60000)}
    line = json.dumps({"body": "x", "headers": hdrs}).encode()
    t0 = time.monotonic()
    r = requests.post(gw.url + "/env", data=line + b"\n", timeout=120,
                      headers={"Content-Type": "application/x-ndjson"})
    took = time.monotonic() - t0
    assert r.status_code == 400, r.text
    doc = r.json()
    assert doc["error"] == "bad_header"
    assert "line 1: headers: more than 256 headers" in doc["message"]
    assert took < 2, took
    assert gw.queue.count() == 0


# ------------------------------------------------------- idempotency keys

def test_the_same_key_and_body_to_another_path_is_not_a_replay(
        rabbitmq, gateway, redis_store):
    """The key's scope is the channel, and the hash covered the body
    only: the same Idempotency-Key and body to /api/q/<queue b> replayed
    the answer of /api/q/<queue a> (202, Idempotent-Replayed) and b's
    message was never published."""
    conn = rabbitmq.connection()
    ch = conn.channel()
    qa, qb = "t.attack.a.%d" % time.time_ns(), "t.attack.b.%d" % time.time_ns()
    for q in (qa, qb):
        ch.queue_declare(q, durable=True)
    try:
        doc = amqp_config(rabbitmq.port, {"dyn": {"routing_key": "{rk}"}},
                          extra={"rest_channel": [{
                              "name": "q", "url_path": "/api/q/{rk}",
                              "service": "dyn", "idempotency": True}]})
        gw = gateway(doc, "location /api/ { zmq_router; }\n",
                     http="zmq_idempotency_redis %s;" % redis_store.url)
        h = {"Idempotency-Key": "same"}
        ra = requests.post(gw.url + "/api/q/" + qa, data=b'{"n":1}',
                           headers=h, timeout=30)
        assert ra.status_code == 202, ra.text
        rb = requests.post(gw.url + "/api/q/" + qb, data=b'{"n":1}',
                           headers=h, timeout=30)
        assert rb.status_code == 422, rb.text
        assert rb.json()["error"] == "idempotency_mismatch"
        assert "Idempotent-Replayed" not in rb.headers
        # the same request again is still a replay
        ra2 = requests.post(gw.url + "/api/q/" + qa, data=b'{"n":1}',
                            headers=h, timeout=30)
        assert ra2.status_code == 202
        assert ra2.headers["Idempotent-Replayed"] == "true"
        assert ra2.content == ra.content
        time.sleep(0.3)
        assert ch.queue_declare(qa, passive=True).method.message_count == 1
        assert ch.queue_declare(qb, passive=True).method.message_count == 0
    finally:
        for q in (qa, qb):
            ch.queue_delete(q)
        conn.close()


# ---------------------------------------------- a hostile idempotency Redis

class FakeRedis:
    """Accepts the gateway's connections and answers each command with the
    next of `replies` (bytes, or None: say nothing); `tls_stall`: never
    answers anything (a ClientHello waits for good)."""

    def __init__(self, replies, tls_stall=False):
        self.replies = list(replies)
        self.tls_stall = tls_stall
        self.commands = []
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.stop = False
        import threading
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        import threading
        self.sock.settimeout(0.2)
        while not self.stop:
            try:
                c, _ = self.sock.accept()
            except OSError:
                continue
            self.conns.append(c)
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    def serve(self, c):
        buf = b""
        c.settimeout(0.2)
        while not self.stop:
            try:
                d = c.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            if not d:
                return
            if self.tls_stall:
                continue
            buf += d
            while True:
                cmd, buf = self.parse(buf)
                if cmd is None:
                    break
                self.commands.append(cmd)
                if self.replies:
                    reply = self.replies.pop(0)
                    if reply is not None:
                        try:
                            c.sendall(reply)
                        except OSError:
                            return

    @staticmethod
    def parse(buf):
        if not buf.startswith(b"*") or b"\r\n" not in buf:
            return None, buf
        head, rest = buf.split(b"\r\n", 1)
        args = []
        for _ in range(int(head[1:])):
            if b"\r\n" not in rest:
                return None, buf
            ln, rest2 = rest.split(b"\r\n", 1)
            n = int(ln[1:])
            if len(rest2) < n + 2:
                return None, buf
            args.append(rest2[:n])
            rest = rest2[n + 2:]
        return args, rest

    def close(self):
        self.stop = True
        for c in self.conns:
            c.close()
        self.sock.close()


IDEM_CH = {"name": "orders", "url_path": "/api/orders", "service": "svc",
           "idempotency": True}


def idem_gateway(gateway, rabbitmq, queue, url):
    doc = amqp_config(rabbitmq.port, {"svc": {"routing_key": queue.name}},
                      extra={"rest_channel": [IDEM_CH]})
    return gateway(doc, "location /api/ { zmq_router; }\n",
                   http="zmq_idempotency_redis %s;" % url)


def idem_post(gw, key="k"):
    return requests.post(gw.url + "/api/orders", data=b'{"n":1}',
                         headers={"Idempotency-Key": key}, timeout=30)


def wait_connected(fake, gw, timeout=10):
    """The worker's connection is up when a request reaches the fake."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if fake.conns:
            time.sleep(0.3)
            return
        time.sleep(0.05)
    raise AssertionError("the gateway never connected to the fake Redis")


@pytest.mark.parametrize("reply,status,error", [
    (b":1\r\n", 503, "idempotency_unavailable"),              # an integer
    (b"*2\r\n$1\r\na\r\n$1\r\nb\r\n", 503, "idempotency_unavailable"),
    (b"$3\r\nDxx\r\n", 503, "idempotency_unavailable"),       # too short
    (b"$68\r\nD" + b"0" * 64 + b"999\r\n", 422, "idempotency_mismatch"),
    (b"*1\r\n" * 40 + b":1\r\n", 503, "idempotency_unavailable"),  # deep
    (b"-ERR nope\r\n", 503, "idempotency_unavailable"),
    (b"+OK\r\n", 503, "idempotency_unavailable"),             # a status
    (b"$-5\r\n", 503, "idempotency_unavailable"),             # bad length
], ids=["integer", "array", "short", "other-hash", "deep", "error",
        "status", "negative-length"])
def test_a_hostile_idempotency_redis_gets_a_json_error_and_no_publish(
        rabbitmq, gateway, queue, reply, status, error):
    fake = FakeRedis([reply])
    try:
        gw = idem_gateway(gateway, rabbitmq, queue,
                          "redis://127.0.0.1:%d" % fake.port)
        wait_connected(fake, gw)
        r = idem_post(gw)
        assert r.status_code == status, r.text
        assert r.headers["Content-Type"] == "application/json"
        assert r.json()["error"] == error
        time.sleep(0.3)
        assert queue.count() == 0
    finally:
        fake.close()


def test_a_tls_handshake_that_stalls_is_timed_out_and_requests_get_503(
        rabbitmq, gateway, queue, tls_pki):
    """rediss:// to a peer that takes the ClientHello and never answers:
    the handshake times out (the command timeout), the connection is
    retried with backoff, and a request with a key gets 503 meanwhile."""
    fake = FakeRedis([], tls_stall=True)
    try:
        gw = idem_gateway(gateway, rabbitmq, queue,
                          "rediss://127.0.0.1:%d?ca_file=%s"
                          % (fake.port, tls_pki["ca"]))
        wait_connected(fake, gw)
        r = idem_post(gw)
        assert r.status_code == 503, r.text
        assert r.json()["error"] == "idempotency_unavailable"
        assert r.headers["Retry-After"] == "1"
        deadline = time.monotonic() + 10
        while "TLS handshake timed out" not in gw.ngx.error_log():
            assert time.monotonic() < deadline, gw.ngx.error_log()
            time.sleep(0.1)
        assert queue.count() == 0
    finally:
        fake.close()


def test_max_batch_tiny_lines_at_the_limit_and_one_past_it(gw):
    hdr = {"Content-Type": "application/x-ndjson"}
    r = requests.post(gw.url + "/batch", data=b"1\n" * 1000, headers=hdr,
                      timeout=60)
    assert r.status_code == 200, r.text
    res = r.json()["results"]
    assert len(res) == 1000 and all(x["status"] == 202 for x in res)
    r = requests.post(gw.url + "/batch", data=b"1\n" * 1001, headers=hdr,
                      timeout=60)
    assert r.status_code == 413
    assert r.json()["error"] == "batch_too_large"
    assert len(gw.queue.drain(expect=1000)) == 1000


def test_a_deep_json_line_is_refused_by_the_parser_not_the_stack(gw):
    hdr = {"Content-Type": "application/x-ndjson"}
    deep = b"[" * 100000 + b"]" * 100000
    r = requests.post(gw.url + "/env", data=b'{"body":' + deep + b"}\n",
                      headers=hdr, timeout=60)
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "invalid_json"
    assert gw.queue.count() == 0


def test_clients_that_leave_mid_batch_leave_the_worker_sound(gw):
    """A client that sends a batch and goes at once: its messages are
    detached from the connection's ring; the worker goes on."""
    body = b"".join(b'{"i":%d}\n' % i for i in range(1000))
    head = ("POST /batch HTTP/1.1\r\nHost: x\r\nContent-Type: "
            "application/x-ndjson\r\nContent-Length: %d\r\n\r\n"
            % len(body)).encode()
    for _ in range(10):
        s = socket.create_connection(("127.0.0.1", gw.ngx.port))
        s.sendall(head + body)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                     b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.close()                           # a reset, at once
    # the detached messages settle; then the worker publishes again
    deadline = time.monotonic() + 20
    while True:
        r = requests.post(gw.url + "/batch", data=b"1\n2\n", timeout=30,
                          headers={"Content-Type": "application/x-ndjson"})
        assert r.status_code == 200
        st = [(x["status"], x.get("error")) for x in r.json()["results"]]
        if st == [(202, None), (202, None)]:
            break
        assert st[0] == (503, "overloaded"), st
        assert time.monotonic() < deadline, st
        time.sleep(0.2)
    # every message the gateway took is in the queue, none twice
    got = gw.queue.drain(expect=2, timeout=5)
    ids = [p.message_id for _, p, _ in got]
    assert len(ids) == len(set(ids)) and len(ids) <= 10002


def test_a_bad_rediss_idempotency_url_is_named_redacted(nginx_factory,
                                                        tmp_path):
    """The TLS error named the URL after it was zeroed: 'zmq_idempotency_
    redis "": TLS: ...'. It names it, with the password redacted."""
    ngx = nginx_factory(http="zmq_idempotency_redis "
                        "rediss://u:s3cr3tpw@127.0.0.1:1?ca_file=%s/none;"
                        % tmp_path)
    code, out = ngx.test_config()
    assert code != 0
    assert 'zmq_idempotency_redis "rediss://u:' in out, out
    assert "127.0.0.1:1" in out and "s3cr3tpw" not in out
