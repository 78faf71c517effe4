"""Publishing through a STOMP outgoing connection (issue 16, PROTO16): a
publish service with stomp_outconn sends the body as one SEND to its
destination and answers as an AMQP publish does: 202 only after the
broker's RECEIPT, 502 when the broker refuses the message (ERROR with its
receipt-id), 503 when the connection is down, lost or full, 504 when no
receipt comes in time. Against a scripted fake broker (t/fake_stomp.py)
for the error paths and hostile input, and against RabbitMQ's STOMP plugin
checked with pika.
"""

import concurrent.futures
import os
import re
import time
import uuid

import pytest
import requests

import conftest
from conftest import RabbitServer, free_port, wait_port
from fake_stomp import FakeStomp, frame, receipt
from test_live_config import live  # noqa: F401 (a fixture)

PUB = ("location = /pub { zmq_service svc; zmq_max_body 4m;"
       " client_max_body_size 4m; zmq_confirm_timeout 1500ms; }\n"
       "location ~ ^/to/(?<dest>[a-z]+)$ { zmq_service tmpl;"
       " zmq_confirm_timeout 1500ms; }\n")


def stomp_config(port, svc=None, stomp_def=None, outconn=None, hosts=None):
    d = {"name": "broker", "host": "127.0.0.1", "port": port,
         "login": "guest", "passcode": "guest", "heartbeat": 0}
    if hosts is not None:
        d["hosts"] = hosts
    d.update(stomp_def or {})
    o = {"name": "sout", "def": "broker"}
    o.update(outconn or {})
    s = {"name": "svc", "kind": "publish", "stomp_outconn": "sout",
         "destination": "/queue/orders"}
    s.update(svc or {})
    t = {"name": "tmpl", "kind": "publish", "stomp_outconn": "sout",
         "destination": "/queue/$dest"}
    return {"stomp_def": [d], "stomp_outconn": [o], "service": [s, t]}


def stomp_status(gw, name="sout"):
    return [w["stomp"][name] for w in gw.status()["workers"]
            if name in w.get("stomp", {})]


def wait_stomp(gw, state, name="sout", timeout=20.0):
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        seen = [o["state"] for o in stomp_status(gw, name)]
        if seen and all(s == state for s in seen):
            return
        time.sleep(0.05)
    raise AssertionError("stomp %s is %s, not %s" % (name, seen, state))


def post(gw, data=b"x", headers=None, path="/pub", timeout=30):
    return requests.post(gw.url + path, data=data, headers=headers or {},
                         timeout=timeout)


@pytest.fixture
def fake():
    brokers = []

    def make(*a, **kw):
        b = FakeStomp(*a, **kw)
        brokers.append(b)
        return b
    yield make
    for b in brokers:
        b.close()


@pytest.fixture
def stomp_gw(gateway):
    def start(config, wait="ready", **kw):
        gw = gateway(config, PUB, wait=None, **kw)
        if wait:
            wait_stomp(gw, wait)
        return gw
    return start


# ------------------------------------------------------------ fake broker

def test_a_send_is_answered_202_only_after_its_receipt(fake, stomp_gw):
    held = []

    def hold(broker, f):
        if f.command == "SEND":
            held.append(f)
        return None

    b = fake(hold)
    gw = stomp_gw(stomp_config(b.port))
    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        fut = ex.submit(post, gw, b"hello")
        deadline = time.monotonic() + 5
        while not held and time.monotonic() < deadline:
            time.sleep(0.02)
        assert held, "the SEND never reached the broker"
        time.sleep(0.3)
        assert not fut.done(), "answered before the receipt"
        b.conns[-1].sendall(receipt(held[0]))
        r = fut.result(10)
    assert r.status_code == 202, r.text
    assert r.json()["confirmed"] is True


def test_the_send_carries_the_mapped_headers_escaped(fake, stomp_gw):
    b = fake()
    gw = stomp_gw(stomp_config(b.port, outconn={"priority": 3,
                                                "expires": 60000}))
    before = int(time.time() * 1000)
    r = post(gw, b"{\"a\": 1}\0tail", headers={
        "Content-Type": "application/json",
        "X-Correlation-Id": "corr-1",
        "X-Reply-To": "/queue/replies",
        "X-Message-Id": "mid-42",
        "X-Zmq-Header-Tenant": "a:b\\c",
        "X-Zmq-Header-type": "OrderPlaced"})
    assert r.status_code == 202, r.text
    assert r.json()["message_id"] == "mid-42"
    (f,) = b.sends()
    assert not b.errors
    assert f.get("destination") == "/queue/orders"
    assert f.get("content-length") == str(len(b"{\"a\": 1}\0tail"))
    assert f.body == b"{\"a\": 1}\0tail"
    assert f.get("receipt") is not None
    assert f.get("persistent") == "true"
    assert f.get("priority") == "3"
    assert before + 60000 <= int(f.get("expires")) <= \
        int(time.time() * 1000) + 60000
    assert f.get("content-type") == "application/json"
    assert f.get("correlation-id") == "corr-1"
    assert f.get("reply-to") == "/queue/replies"
    assert f.get("amqp-message-id") == "mid-42"
    # the value went out escaped (\c, \\) and came back whole
    assert f.get("Tenant") == "a:b\\c"
    assert f.get("type") == "OrderPlaced"
    assert f.get("amq-msg-type") is None


def test_x_priority_x_expiration_and_transient_delivery(fake, stomp_gw):
    b = fake()
    gw = stomp_gw(stomp_config(b.port))
    now = int(time.time() * 1000)
    r = post(gw, headers={"X-Priority": "7", "X-Expiration": "5000",
                          "X-Delivery-Mode": "1"})
    assert r.status_code == 202, r.text
    (f,) = b.sends()
    assert f.get("priority") == "7"
    assert f.get("persistent") == "false"
    assert now + 5000 <= int(f.get("expires")) <= now + 5000 + 5000


def test_connect_frame_negotiates_version_host_and_login(fake, stomp_gw):
    b = fake(heart_beat="500,500")
    stomp_gw(stomp_config(b.port, stomp_def={"virtual_host": "/vh",
                                             "heartbeat": 1}))
    (c,) = [f for f in b.frames if f.command == "CONNECT"]
    assert c.get("accept-version") == "1.2"
    assert c.get("host") == "/vh"
    assert c.get("login") == "guest"
    assert c.get("passcode") == "guest"
    assert c.get("heart-beat") == "1000,1000"


def test_destination_template_like_routing_key(fake, stomp_gw):
    b = fake()
    gw = stomp_gw(stomp_config(b.port))
    r = post(gw, b"x", path="/to/invoices")
    assert r.status_code == 202, r.text
    assert b.sends()[0].get("destination") == "/queue/invoices"


def test_use_jms_says_text_or_bytes_by_content_type(fake, stomp_gw):
    # ActiveMQ: a SEND without content-length is a TextMessage, read as
    # Java's modified UTF-8; one with content-length a BytesMessage
    b = fake()
    gw = stomp_gw(stomp_config(b.port, stomp_def={"use_jms": True}))
    for ct, kind in (("application/json", "text"), ("text/plain", "text"),
                     ("application/vnd.x+xml", "text"),
                     ("application/octet-stream", "bytes"), (None, "bytes")):
        hdrs = {"Content-Type": ct} if ct else {}
        assert post(gw, b"x", headers=hdrs).status_code == 202
        f = b.sends()[-1]
        assert f.get("amq-msg-type") is None, (ct, f)
        assert f.get("zmq_message_id")
        assert f.get("content-length") == (None if kind == "text" else "1")
        assert f.body == b"x"
    # text: NUL as C0 80, a character beyond U+FFFF as two surrogates
    text = "a\0b \u00e9\u2713 \U0001f600!".encode("utf-8")
    assert post(gw, text, headers={"Content-Type": "text/plain"}) \
        .status_code == 202
    f = b.sends()[-1]
    assert f.get("content-length") is None and f.get("amq-msg-type") is None
    assert f.body == (b"a\xc0\x80b \xc3\xa9\xe2\x9c\x93 "
                      b"\xed\xa0\xbd\xed\xb8\x80!")
    # a "text" body that is not UTF-8 goes as bytes
    for bad in (b"\xff\xfe", b"caf\xe9", b"\xe2\x9c", b"\xf5\x80\x80\x80"):
        assert post(gw, bad, headers={"Content-Type": "text/plain"}) \
            .status_code == 202
        f = b.sends()[-1]
        assert f.get("content-length") == str(len(bad)) and f.body == bad


def test_a_header_that_would_override_stomp_is_refused(fake, stomp_gw):
    b = fake()
    gw = stomp_gw(stomp_config(b.port))
    for name in ("destination", "receipt", "transaction",
                 "content-length"):
        r = post(gw, headers={"X-Zmq-Header-" + name: "x"})
        assert r.status_code == 400, (name, r.text)
        assert r.json()["error"] == "bad_header"
    assert not b.sends()


def test_error_with_the_receipt_id_is_502(fake, stomp_gw):
    def refuse(broker, f):
        if f.command == "SEND":
            return frame("ERROR", [("receipt-id", f.get("receipt")),
                                   ("message", "access refused")],
                         b"no write on /queue/orders")
        return None

    b = fake(refuse)
    gw = stomp_gw(stomp_config(b.port))
    r = post(gw)
    assert r.status_code == 502, r.text
    assert r.json()["error"] == "nacked"
    log = gw.ngx.error_log()
    assert "ERROR from the broker refusing a message" in log
    assert "access refused" in log
    assert stomp_status(gw)[0]["nacked"] == 1


def test_error_without_receipt_id_ends_the_connection_503(fake, stomp_gw):
    def fail(broker, f):
        if f.command == "SEND":
            return frame("ERROR", [("message", "internal error")])
        return None

    b = fake(fail)
    gw = stomp_gw(stomp_config(b.port))
    r = post(gw)
    assert r.status_code == 503, r.text
    assert r.json()["error"] == "broker_unavailable"
    assert "Retry-After" in r.headers
    wait_stomp(gw, "ready")
    assert b.connects >= 2
    assert stomp_status(gw)[0]["lost"] == 1


def test_no_receipt_in_time_is_504(fake, stomp_gw):
    b = fake(lambda broker, f: None)
    gw = stomp_gw(stomp_config(b.port))
    t0 = time.monotonic()
    r = post(gw)
    assert r.status_code == 504, r.text
    assert r.json()["error"] == "confirm_timeout"
    assert 1.0 < time.monotonic() - t0 < 10
    assert stomp_status(gw)[0]["timed_out"] == 1


def test_a_dead_broker_is_503_with_retry_after(stomp_gw):
    port = free_port()
    gw = stomp_gw(stomp_config(port), wait="backoff")
    r = post(gw)
    assert r.status_code == 503, r.text
    assert r.json()["error"] == "broker_unavailable"
    assert int(r.headers["Retry-After"]) >= 1
    gw.ngx.forget_problems()


def test_max_inflight_is_503_overloaded(fake, stomp_gw):
    b = fake(lambda broker, f: None)
    gw = stomp_gw(stomp_config(b.port, outconn={"max_inflight": 1}))
    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        first = ex.submit(post, gw)
        deadline = time.monotonic() + 5
        while not b.sends() and time.monotonic() < deadline:
            time.sleep(0.02)
        r = post(gw)
        assert r.status_code == 503, r.text
        assert r.json()["error"] == "overloaded"
        assert r.headers["Retry-After"] == "1"
        assert first.result(10).status_code == 504


def test_login_refused_backs_off(fake, stomp_gw):
    b = fake(connected=frame("ERROR", [("message", "bad login")]))
    gw = stomp_gw(stomp_config(b.port), wait=None)
    deadline = time.monotonic() + 10
    while b.connects < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert b.connects >= 2
    assert post(gw).status_code == 503
    assert "bad login" in gw.ngx.error_log()


def test_a_broker_speaking_stomp_1_0_is_refused(fake, stomp_gw):
    b = fake(connected=b"CONNECTED\nsession:x\n\n\0")
    gw = stomp_gw(stomp_config(b.port), wait=None)
    deadline = time.monotonic() + 10
    while "not 1.2" not in gw.ngx.error_log() \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "the broker speaks STOMP 1.0, not 1.2" in gw.ngx.error_log()


HOSTILE = {
    "garbage": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" * 50,
    "lower-case command": b"receipt\nreceipt-id:0\n\n\0",
    "huge header": b"RECEIPT\nx:" + b"a" * 20000 + b"\n\n\0",
    "too many headers": b"RECEIPT\n" + b"".join(
        b"h%d:v\n" % i for i in range(70)) + b"\n\0",
    "missing NUL": b"RECEIPT\nreceipt-id:0\ncontent-length:2\n\nabX",
    "NUL in headers": b"RECEIPT\nreceipt-id:0\0\n\n\0",
    "bad escape": b"RECEIPT\nreceipt-id:\\t0\n\n\0",
    "trailing backslash": b"RECEIPT\nreceipt-id:0\\\n\n\0",
    "header without colon": b"RECEIPT\nreceipt-id\n\n\0",
    "content-length not a number": b"RECEIPT\ncontent-length:-1\n\n\0",
    "content-length too big": b"RECEIPT\ncontent-length:99999999\n\n\0",
    "body without NUL": b"ERROR\n\n" + b"z" * (1024 * 1024 + 10),
    "a MESSAGE": b"MESSAGE\nsubscription:0\nmessage-id:1\n"
                 b"destination:/queue/x\n\nhi\0",
    "receipt without id": b"RECEIPT\n\n\0",
    "CR without LF": b"\r\r",
}


@pytest.mark.parametrize("what", sorted(HOSTILE))
def test_hostile_frames_close_and_reconnect(fake, stomp_gw, what):
    state = {"bad": True}

    def script(broker, f):
        if f.command == "SEND":
            if state["bad"]:
                state["bad"] = False
                return HOSTILE[what]
            return receipt(f)
        return None

    b = fake(script)
    gw = stomp_gw(stomp_config(b.port))
    r = post(gw)
    assert r.status_code == 503, (what, r.text)
    assert "bad frame from the broker" in gw.ngx.error_log() \
        or "ERROR from the broker" in gw.ngx.error_log(), what
    wait_stomp(gw, "ready")
    r = post(gw)
    assert r.status_code == 202, (what, r.text)
    assert b.connects >= 2


def test_heart_beats_go_out_and_a_silent_broker_is_dropped(fake, stomp_gw):
    b = fake(heart_beat="1000,1000")
    gw = stomp_gw(stomp_config(b.port, stomp_def={"heartbeat": 1}))
    # the broker sends nothing: after twice the interval the gateway drops
    deadline = time.monotonic() + 10
    while b.connects < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert b.connects >= 2
    assert "no heart-beat from the broker" in gw.ngx.error_log()


def test_failover_to_the_next_host(fake, stomp_gw):
    b = fake()
    dead = free_port()
    gw = stomp_gw(stomp_config(dead, hosts=["127.0.0.1:%d" % b.port]))
    r = post(gw)
    assert r.status_code == 202, r.text
    assert len(b.sends()) == 1
    gw.ngx.forget_problems()


def test_status_lists_stomp_connections(fake, stomp_gw):
    b = fake()
    gw = stomp_gw(stomp_config(b.port))
    for _ in range(3):
        assert post(gw).status_code == 202
    (st,) = stomp_status(gw)
    assert st["state"] == "ready"
    assert st["published"] == 3 and st["confirmed"] == 3
    assert st["inflight"] == 0
    for k in ("nacked", "timed_out", "lost", "rejected", "reconnects"):
        assert k in st


def test_a_large_body_arrives_whole(fake, stomp_gw):
    b = fake()
    gw = stomp_gw(stomp_config(b.port))
    body = os.urandom(3 * 1024 * 1024)
    r = post(gw, body)
    assert r.status_code == 202, r.text
    assert b.sends()[0].body == body
    assert not b.errors


# ---------------------------------------------------- RabbitMQ STOMP plugin

class RabbitStomp(RabbitServer):
    def start(self):
        if not hasattr(self, "stomp_port"):
            self.stomp_port = free_port()
            with open(self.env["RABBITMQ_CONFIG_FILE"], "a") as f:
                f.write("stomp.listeners.tcp.1 = 127.0.0.1:%d\n"
                        % self.stomp_port)
            with open(self.env["RABBITMQ_ENABLED_PLUGINS_FILE"], "w") as f:
                f.write("[rabbitmq_stomp].\n")
        super().start()
        wait_port(self.stomp_port, 60, self.proc)


@pytest.fixture(scope="module")
def rabbit_stomp(tmp_path_factory):
    if not os.path.isdir("/usr/lib/rabbitmq/lib"):
        pytest.skip("rabbitmq-server is not installed")
    server = RabbitStomp(str(tmp_path_factory.mktemp("rabbitstomp")))
    yield server
    server.close()


def test_rabbitmq_202_means_the_message_is_in_the_queue(rabbit_stomp,
                                                         stomp_gw):
    q = "stomp-" + uuid.uuid4().hex[:8]
    gw = stomp_gw(stomp_config(
        rabbit_stomp.stomp_port, stomp_def={"virtual_host": "/",
                                            "heartbeat": 10},
        svc={"destination": "/queue/" + q}))
    n = 50
    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        rs = list(ex.map(lambda i: post(
            gw, b"m%d" % i, headers={"X-Correlation-Id": "c%d" % i,
                                     "X-Zmq-Header-Tenant": "t:1",
                                     "Content-Type": "text/plain"}),
            range(n)))
    assert all(r.status_code == 202 for r in rs), [r.text for r in rs]
    ids = {r.json()["message_id"] for r in rs}

    conn = rabbit_stomp.connection()
    try:
        ch = conn.channel()
        got = []
        while True:
            method, props, body = ch.basic_get(q, auto_ack=True)
            if method is None:
                break
            got.append((props, body))
        assert len(got) == n
        assert {p.message_id for p, _ in got} == ids
        bodies = {b for _, b in got}
        assert bodies == {b"m%d" % i for i in range(n)}
        p = got[0][0]
        assert p.delivery_mode == 2
        assert p.content_type == "text/plain"
        assert p.correlation_id.startswith("c")
        assert p.headers["Tenant"] == "t:1"
        ch.queue_delete(q)
    finally:
        conn.close()
    (st,) = stomp_status(gw)
    assert st["confirmed"] == n and st["lost"] == 0


def test_rabbitmq_missing_exchange_is_an_error(rabbit_stomp, stomp_gw):
    gw = stomp_gw(stomp_config(
        rabbit_stomp.stomp_port, stomp_def={"virtual_host": "/"},
        svc={"destination": "/exchange/no-such-exchange/rk"}))
    r = post(gw)
    assert r.status_code in (502, 503), r.text
    wait_stomp(gw, "ready")
    gw.ngx.forget_problems()


# ---------------------------------------------------- live configuration

def test_live_config_adds_changes_and_removes_stomp_outconns(fake, live):
    from test_live_config import post as live_post
    a, b = fake(), fake()
    gw = live("location = /pub { zmq_service svc;"
              " zmq_confirm_timeout 3s; }\n", workers=1).start()

    v = gw.write(stomp_config(a.port))                    # added
    gw.wait_version(v)
    wait_stomp(gw, "ready")
    assert live_post(gw.url + "/pub").status_code == 202
    assert len(a.sends()) == 1

    # changed while a message is in flight: the old one drains its receipt
    held = []
    a.script = lambda broker, f: held.append(f) if f.command == "SEND" \
        else None
    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        fut = ex.submit(live_post, gw.url + "/pub")
        deadline = time.monotonic() + 5
        while not held and time.monotonic() < deadline:
            time.sleep(0.02)
        v = gw.write(stomp_config(b.port))
        gw.wait_version(v)
        wait_stomp(gw, "ready")
        assert "sout (draining, generation 1)" in \
            gw.status()["workers"][0]["stomp"]
        assert live_post(gw.url + "/pub").status_code == 202
        assert len(b.sends()) == 1
        a.conns[-1].sendall(receipt(held[0]))
        assert fut.result(10).status_code == 202
    deadline = time.monotonic() + 5
    while len(gw.status()["workers"][0]["stomp"]) > 1 \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list(gw.status()["workers"][0]["stomp"]) == ["sout"]

    # removed: the service is gone with it
    doc = stomp_config(b.port)
    doc["stomp_outconn"] = []
    doc["service"] = []
    doc["stomp_def"] = []
    v = gw.write(doc)
    gw.wait_version(v)
    assert gw.status()["workers"][0]["stomp"] == {}
    assert live_post(gw.url + "/pub").status_code == 404
