"""The admin API for STOMP (issue 16): POST api/stomp_def/NAME/ping through
the gateway's own non-blocking STOMP client (a probe: CONNECT up to
CONNECTED, then DISCONNECT), POST api/stomp_outconn/NAME/send and POST
api/service/NAME/invoke of a publish service with a stomp_outconn, both
answered 202 only after the broker's RECEIPT (502 on its ERROR, 503 broker
down, 504 no receipt in time), and `zmqctl ping stomp_def`. Against
RabbitMQ's STOMP plugin (checked with pika), ActiveMQ 5.17 (checked with
the Java JMS tool), a scripted fake broker (t/fake_stomp.py), a closed
port and a listener that never answers. One NGINX worker, so that "the
worker stays responsive" means the same worker.
"""

import base64
import concurrent.futures
import json
import socket
import threading
import time
import uuid

import pytest
import requests

from activemq_helpers import activemq, rabbitmq_stomp  # noqa: F401
from activemq_helpers import activemq_installed, unique_queue
from conftest import free_port, register_secret
from fake_stomp import FakeStomp, frame, receipt
from security_helpers import zmqctl_apikey
from test_live_config import Live

ADMIN_PW = "admin-Passw0rd-stomp-6121"
BAD_PASSCODE = "not-the-stomp-passcode-8830"
CONNECT_TIMEOUT_MS = 1000

LOCATIONS = ("location /zmq/admin/ { zmq_admin; zmq_security admins;"
             " zmq_confirm_timeout 1500ms; }\n"
             "location /zmq/view/ { zmq_admin; zmq_security viewers; }\n"
             "location = /zmq/metrics { zmq_metrics; }\n")


class Silent:
    """A listener that accepts connections and never says a word."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]

    def accept(self, timeout=5.0):
        self.sock.settimeout(timeout)
        conn, _ = self.sock.accept()
        return conn

    def close(self):
        self.sock.close()


class Script:
    """The fake broker's answers, changeable while the gateway runs."""

    def __init__(self):
        self.mode = "ok"
        self.held = []

    def __call__(self, broker, f):
        if f.command != "SEND":
            return None
        if self.mode == "ok":
            return receipt(f)
        if self.mode == "refuse":
            return frame("ERROR", [("receipt-id", f.get("receipt")),
                                   ("message", "no write access")])
        self.held.append(f)             # "hold": no receipt
        return None


def stomp_defs(rabbit_port, fake_port, closed, silent_port):
    base = {"host": "127.0.0.1", "heartbeat": 0}
    return [
        dict(base, name="rabbit", port=rabbit_port, login="guest",
             passcode="guest", virtual_host="/"),
        dict(base, name="badpw", port=rabbit_port, login="guest",
             passcode=BAD_PASSCODE, virtual_host="/"),
        dict(base, name="fake", port=fake_port, login="u", passcode="guest"),
        dict(base, name="closed", port=closed),
        dict(base, name="silent", port=silent_port),
        dict(base, name="failover", port=closed,
             hosts=["127.0.0.1:%d" % rabbit_port], login="guest",
             passcode="guest", virtual_host="/"),
    ]


class Gw:
    def __init__(self, nginx_factory, zmqctl, redis_store, tmp_path,
                 rabbit_port, fake, silent, extra_defs=()):
        register_secret(ADMIN_PW)
        register_secret(BAD_PASSCODE)
        self.fake = fake
        self.closed_port = free_port()
        self.live = Live(nginx_factory, zmqctl, redis_store, tmp_path,
                         LOCATIONS, workers=1,
                         http="zmq_amqp_connect_timeout %dms;"
                              % CONNECT_TIMEOUT_MS)
        self.url = self.live.url
        self.queue = "adm-" + uuid.uuid4().hex[:8]
        doc = {
            "security": [
                {"name": "admins", "type": "basic_auth", "username": "root",
                 "password": ADMIN_PW},
                {"name": "viewers", "type": "apikey", "role": "viewer"}],
            "stomp_def": stomp_defs(rabbit_port, fake.port,
                                    self.closed_port, silent.port)
            + list(extra_defs),
            "stomp_outconn": [
                {"name": "rabbit.out", "def": "rabbit"},
                {"name": "fake.out", "def": "fake", "priority": 3,
                 "expires": 60000, "content_type": "text/plain"},
                {"name": "closed.out", "def": "closed"}],
            "service": [
                {"name": "spub", "kind": "publish",
                 "stomp_outconn": "rabbit.out",
                 "destination": "/queue/" + self.queue},
                {"name": "fpub", "kind": "publish",
                 "stomp_outconn": "fake.out", "destination": "/queue/f"}],
        }
        if any(d["name"] == "amq" for d in extra_defs):
            doc["stomp_outconn"].append({"name": "amq.out", "def": "amq"})
        self.live.write(doc)
        rc, self.key, out, err = zmqctl_apikey(zmqctl, "--id", "ops",
                                               "viewers")
        assert rc == 0, (out, err)
        version = int(redis_store.client().get("zmq:version"))
        self.live.start()
        self.live.wait_version(version)

    def call(self, method, path, timeout=15, **kw):
        with requests.Session() as s:
            return s.request(method, "%s/zmq/admin/%s" % (self.url, path),
                             auth=("root", ADMIN_PW), timeout=timeout, **kw)

    def ping(self, name, timeout=15):
        return self.call("POST", "api/stomp_def/%s/ping" % name,
                         timeout=timeout)

    def send(self, outconn, doc, **kw):
        return self.call("POST", "api/stomp_outconn/%s/send" % outconn,
                         json=doc, **kw)

    def stomp(self, name):
        return [w["stomp"][name] for w in self.live.status()["workers"]
                if name in w.get("stomp", {})]

    def wait_stomp(self, name, state="ready", timeout=20.0):
        deadline = time.monotonic() + timeout
        seen = None
        while time.monotonic() < deadline:
            seen = [o["state"] for o in self.stomp(name)]
            if seen and all(s == state for s in seen):
                return
            time.sleep(0.05)
        raise AssertionError("%s is %s, not %s" % (name, seen, state))

    def error_log(self):
        return self.live.ngx.error_log()


@pytest.fixture
def silent():
    s = Silent()
    yield s
    s.close()


@pytest.fixture
def fake():
    b = FakeStomp(Script())
    yield b
    b.close()


@pytest.fixture
def gw(nginx_factory, zmqctl, redis_store, tmp_path, rabbitmq_stomp, fake,
       silent):
    return Gw(nginx_factory, zmqctl, redis_store, tmp_path,
              rabbitmq_stomp.stomp_port, fake, silent)


def ok_answer(r):
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"] == "application/json"
    return r.json()


def json_error(r, status, code):
    assert r.status_code == status, r.text
    assert r.json()["error"] == code, r.text
    return r.json()


def drain(rabbitmq_stomp, queue, expect, timeout=10.0):
    conn = rabbitmq_stomp.connection()
    got = []
    try:
        ch = conn.channel()
        deadline = time.monotonic() + timeout
        while len(got) < expect and time.monotonic() < deadline:
            try:
                method, props, body = ch.basic_get(queue, auto_ack=True)
            except Exception:           # the queue is not declared yet
                ch = conn.channel()
                method = None
            if method is None:
                time.sleep(0.05)
                continue
            got.append((props, body))
    finally:
        conn.close()
    return got


# --------------------------------------------------------------- ping

def test_ping_of_rabbitmq_stomp_is_ok_with_its_server(gw, rabbitmq_stomp):
    body = ok_answer(gw.ping("rabbit"))
    assert body["ok"] is True, body
    assert body["server"]["product"] == "RabbitMQ", body
    assert body["server"]["version"].count(".") >= 1, body
    assert 0 <= body["ms"] < CONNECT_TIMEOUT_MS
    assert body["address"] == "127.0.0.1:%d" % rabbitmq_stomp.stomp_port
    assert "\"ping:rabbit\": probe of" in gw.error_log()


def test_ping_with_a_wrong_passcode_answers_the_brokers_error(gw):
    body = ok_answer(gw.ping("badpw"))
    assert body["ok"] is False, body
    assert body["error"].startswith(
        "the broker answered CONNECT with ERROR: "), body
    assert "refused" in body["error"].lower(), body
    assert BAD_PASSCODE not in json.dumps(body)
    assert BAD_PASSCODE not in gw.error_log()


def test_ping_of_a_closed_port_says_connection_refused(gw):
    body = ok_answer(gw.ping("closed"))
    assert body["ok"] is False, body
    assert "refused" in body["error"].lower(), body
    assert "127.0.0.1:%d" % gw.closed_port in body["error"], body


def test_ping_tries_the_next_host_after_a_refused_one(gw, rabbitmq_stomp):
    body = ok_answer(gw.ping("failover"))
    assert body["ok"] is True, body
    assert body["address"] == "127.0.0.1:%d" % rabbitmq_stomp.stomp_port


def test_ping_of_a_silent_listener_ends_at_the_connect_timeout_and_the_worker_keeps_answering(gw, silent):
    answer = {}

    def ping():
        t0 = time.monotonic()
        answer["r"] = gw.ping("silent")
        answer["s"] = time.monotonic() - t0

    t = threading.Thread(target=ping)
    t.start()
    peer = silent.accept()
    try:
        for _ in range(10):
            t0 = time.monotonic()
            r = requests.get(gw.url + "/zmq/view/api/stomp_def/rabbit",
                             headers={"X-API-Key": gw.key}, timeout=5)
            assert r.status_code == 200, r.text
            assert time.monotonic() - t0 < 0.5
            time.sleep(0.03)
        # the probe wrote its CONNECT and waits for CONNECTED
        peer.settimeout(2)
        assert peer.recv(4096).startswith(b"CONNECT\naccept-version:1.2\n")
        t.join(10)
        assert not t.is_alive()
    finally:
        peer.close()
    body = ok_answer(answer["r"])
    assert body["ok"] is False, body
    assert "no CONNECTED in time" in body["error"], body
    assert "%d ms" % CONNECT_TIMEOUT_MS in body["error"], body
    assert CONNECT_TIMEOUT_MS / 1000.0 - 0.1 <= answer["s"] \
        <= CONNECT_TIMEOUT_MS / 1000.0 + 1.5, answer["s"]


def test_a_client_that_leaves_mid_ping_ends_the_probe(gw, silent):
    auth = base64.b64encode(("root:" + ADMIN_PW).encode()).decode()
    c = socket.create_connection(("127.0.0.1", gw.live.ngx.port))
    c.sendall(("POST /zmq/admin/api/stomp_def/silent/ping HTTP/1.1\r\n"
               "Host: x\r\nAuthorization: Basic %s\r\n"
               "Content-Length: 0\r\n\r\n" % auth).encode())
    peer = silent.accept()
    time.sleep(0.1)
    c.close()
    peer.settimeout(CONNECT_TIMEOUT_MS / 1000.0 * 0.7)
    data = b""
    while True:
        chunk = peer.recv(4096)         # EOF well before the timeout
        if not chunk:
            break
        data += chunk
    peer.close()
    assert data.startswith(b"CONNECT\n")
    deadline = time.monotonic() + 5
    while "probe cancelled" not in gw.error_log() \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "\"ping:silent\": probe cancelled" in gw.error_log()
    assert gw.ping("rabbit").json()["ok"] is True


@pytest.mark.parametrize("answer, expect", [
    (frame("ERROR", [("message", "bad \x01login\\")],
           b"line one\nline two"),
     "the broker answered CONNECT with ERROR: \"bad \\x01login\\x5c\" "
     "line one"),
    (b"CONNECTED\nsession:x\n\n\0", "the broker speaks STOMP 1.0, not 1.2"),
    (b"\x16\x03\x01\x02\x00" * 40, "bad frame from the broker"),
    (b"RECEIPT\nreceipt-id:1\n\n\0", "a frame other than CONNECTED or "
                                     "ERROR in answer to CONNECT"),
    (b"CONNECTED\nversion:1.2\nx:" + b"a" * 20000 + b"\n\n\0",
     "longer than 16384 bytes"),
])
def test_ping_of_a_hostile_broker_says_why_in_printable_text(
        gw, fake, answer, expect):
    fake.connected = answer
    body = ok_answer(gw.ping("fake"))
    assert body["ok"] is False, body
    assert expect in body["error"], body
    assert body["address"] == "127.0.0.1:%d" % fake.port
    assert all(0x20 <= ord(c) < 0x7f for c in body["error"]), body
    assert len(body["error"]) < 512
    gw.live.ngx.forget_problems()


def test_ping_sends_the_definitions_connect_and_disconnects(gw, fake):
    body = ok_answer(gw.ping("fake"))
    assert body["ok"] is True and body["server"] == {
        "product": "fake", "version": "1"}, body
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        cmds = [f.command for f in fake.frames]
        if "DISCONNECT" in cmds:
            break
        time.sleep(0.02)
    c = [f for f in fake.frames if f.command == "CONNECT"][-1]
    assert c.get("accept-version") == "1.2" and c.get("login") == "u"
    assert c.get("host") == "127.0.0.1" and c.get("heart-beat") == "0,0"
    assert "DISCONNECT" in [f.command for f in fake.frames]


def test_ping_is_for_admins_and_names_that_exist(gw):
    r = requests.post(gw.url + "/zmq/view/api/stomp_def/rabbit/ping",
                      headers={"X-API-Key": gw.key}, timeout=10)
    json_error(r, 403, "forbidden")
    json_error(gw.ping("nosuch"), 404, "not_found")
    r = gw.call("GET", "api/stomp_def/rabbit/ping")
    assert r.status_code == 405 and r.headers["Allow"] == "POST", r.text


# ---------------------------------------------------------------- send

def test_send_is_202_after_the_receipt_and_the_message_is_in_rabbitmq(
        gw, rabbitmq_stomp):
    gw.wait_stomp("rabbit.out")
    q = "send-" + uuid.uuid4().hex[:8]
    r = gw.send("rabbit.out", {
        "destination": "/queue/" + q, "body": "{\"id\": 42}",
        "properties": {"content_type": "application/json",
                       "correlation_id": "c-1", "priority": 5,
                       "message_id": "m-42", "reply_to": "/queue/back"},
        "headers": {"tenant": "acme", "attempt": 2, "urgent": True}})
    assert r.status_code == 202, r.text
    assert r.json() == {"message_id": "m-42", "confirmed": True}
    r = gw.send("rabbit.out", {"destination": "/queue/" + q,
                               "body_base64": base64.b64encode(
                                   b"\x00\xffbin").decode(),
                               "properties": {"delivery_mode": 1}})
    assert r.status_code == 202, r.text
    (p1, b1), (p2, b2) = drain(rabbitmq_stomp, q, 2)
    assert b1 == b"{\"id\": 42}"
    assert p1.content_type == "application/json"
    assert p1.correlation_id == "c-1" and p1.priority == 5
    assert p1.delivery_mode == 2 and p1.message_id == "m-42"
    assert p1.reply_to == "/queue/back"
    assert p1.headers["tenant"] == "acme"
    assert str(p1.headers["attempt"]) == "2"
    assert str(p1.headers["urgent"]) == "true"
    assert "x-zmq-auth" in p1.headers
    # persistent:false: RabbitMQ sets no delivery_mode (transient)
    assert b2 == b"\x00\xffbin" and p2.delivery_mode in (None, 1)
    assert p2.message_id == r.json()["message_id"]
    assert "sends message \"m-42\" through stomp_outconn \"rabbit.out\"" \
        in gw.error_log()


def test_send_holds_its_answer_until_the_receipt(gw, fake):
    gw.wait_stomp("fake.out")
    fake.script.mode = "hold"
    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        fut = ex.submit(gw.send, "fake.out", {"destination": "/queue/x",
                                              "body": "hi"})
        deadline = time.monotonic() + 5
        while not fake.script.held and time.monotonic() < deadline:
            time.sleep(0.02)
        assert fake.script.held, "the SEND never reached the broker"
        time.sleep(0.3)
        assert not fut.done(), "answered before the receipt"
        f = fake.script.held[0]
        fake.conns[-1].sendall(receipt(f))
        r = fut.result(10)
    assert r.status_code == 202, r.text
    # the outconn's defaults: content type, priority, expires, persistent
    assert f.get("content-type") == "text/plain"
    assert f.get("priority") == "3" and f.get("persistent") == "true"
    assert int(f.get("expires")) > time.time() * 1000
    assert f.get("amqp-message-id") == r.json()["message_id"]
    assert f.get("content-length") == "2" and f.body == b"hi"


def test_send_refused_by_the_broker_is_502_and_no_receipt_is_504(gw, fake):
    gw.wait_stomp("fake.out")
    fake.script.mode = "refuse"
    r = gw.send("fake.out", {"destination": "/queue/x", "body": "a"})
    json_error(r, 502, "nacked")
    gw.wait_stomp("fake.out")           # the ERROR closed the connection
    fake.script.mode = "hold"
    t0 = time.monotonic()
    r = gw.send("fake.out", {"destination": "/queue/x", "body": "b"})
    json_error(r, 504, "confirm_timeout")
    assert 1.3 < time.monotonic() - t0 < 5
    st = gw.stomp("fake.out")[0]
    assert st["nacked"] == 1 and st["timed_out"] == 1
    gw.live.ngx.forget_problems()


def test_send_to_a_broker_that_is_down_is_503_with_retry_after(gw):
    r = gw.send("closed.out", {"destination": "/queue/x", "body": "a"})
    json_error(r, 503, "broker_unavailable")
    assert int(r.headers["Retry-After"]) >= 1
    gw.live.ngx.forget_problems()


@pytest.mark.parametrize("doc, words", [
    ({"body": "x"}, "destination must be a string of 1-1024 bytes"),
    ({"destination": "", "body": "x"}, "destination must be"),
    ({"destination": "/queue/a\nb", "body": "x"},
     "destination must not contain NUL, CR or LF"),
    ({"destination": "/q/" + "a" * 1100, "body": "x"}, "1-1024 bytes"),
    ({"destination": "/queue/x"}, "give exactly one of body"),
    ({"destination": "/queue/x", "body": "x", "exchange": ""},
     "unknown field \"exchange\""),
    ({"destination": "/queue/x", "body": "x",
      "properties": {"user_id": "guest"}},
     "properties: \"user_id\" is not sent over STOMP"),
    ({"destination": "/queue/x", "body": "x",
      "properties": {"priority": 10}}, "properties.priority: must be"),
    ({"destination": "/queue/x", "body": "x",
      "headers": {"receipt": "1"}}, "headers.receipt: names a STOMP header"),
    ({"destination": "/queue/x", "body": "x",
      "headers": {"Content-Length": "1"}}, "headers.Content-Length: names"),
    ({"destination": "/queue/x", "body": "x",
      "headers": {"a": "b\r\nc"}}, "headers.a: a header value has no"),
    ({"destination": "/queue/x", "body_base64": "@@@="}, "not valid base64"),
])
def test_bad_sends_are_400_naming_the_field_and_send_nothing(gw, fake, doc,
                                                            words):
    gw.wait_stomp("fake.out")
    r = gw.send("fake.out", doc)
    body = json_error(r, 400, "bad_request")
    assert words in body["message"], body
    assert not fake.sends()


def test_send_to_no_such_outconn_is_404_and_viewers_get_403(gw):
    json_error(gw.send("nosuch", {"destination": "/q", "body": "x"}), 404,
               "not_found")
    r = requests.post(gw.url + "/zmq/view/api/stomp_outconn/fake.out/send",
                      headers={"X-API-Key": gw.key}, timeout=10,
                      json={"destination": "/q", "body": "x"})
    json_error(r, 403, "forbidden")


# -------------------------------------------------------------- invoke

def test_invoke_of_a_stomp_publish_service_is_202_after_the_receipt(
        gw, rabbitmq_stomp):
    gw.wait_stomp("rabbit.out")
    r = gw.call("POST", "api/service/spub/invoke", data=b"<order/>",
                headers={"Content-Type": "application/xml",
                         "X-Correlation-Id": "c-7",
                         "X-Zmq-Header-Tenant": "t1"})
    assert r.status_code == 202, r.text
    assert r.json()["confirmed"] is True
    ((props, body),) = drain(rabbitmq_stomp, gw.queue, 1)
    assert body == b"<order/>"
    assert props.content_type == "application/xml"
    assert props.correlation_id == "c-7"
    assert props.headers["Tenant"] == "t1"
    assert props.message_id == r.json()["message_id"]


def test_invoke_answers_as_the_rest_channel_would_502_504(gw, fake):
    gw.wait_stomp("fake.out")
    fake.script.mode = "refuse"
    r = gw.call("POST", "api/service/fpub/invoke", data=b"x")
    json_error(r, 502, "nacked")
    gw.wait_stomp("fake.out")
    fake.script.mode = "hold"
    r = gw.call("POST", "api/service/fpub/invoke", data=b"x")
    json_error(r, 504, "confirm_timeout")
    gw.live.ngx.forget_problems()


# ------------------------------------------------------------- ActiveMQ

@pytest.mark.skipif(not activemq_installed(),
                    reason="ActiveMQ is not installed")
def test_activemq_ping_and_send_seen_by_a_java_jms_consumer(
        nginx_factory, zmqctl, redis_store, tmp_path, rabbitmq_stomp, fake,
        silent, activemq):
    amq = {"name": "amq", "host": "127.0.0.1", "port": activemq.stomp_port,
           "heartbeat": 0, "use_jms": True}
    g = Gw(nginx_factory, zmqctl, redis_store, tmp_path,
           rabbitmq_stomp.stomp_port, fake, silent, extra_defs=[amq])
    body = ok_answer(g.ping("amq"))
    assert body["ok"] is True, body
    assert body["server"]["product"] == "ActiveMQ", body
    assert body["server"]["version"].startswith("5."), body

    g.wait_stomp("amq.out")
    q = unique_queue("adm")
    r1 = g.send("amq.out", {"destination": "/queue/" + q,
                            "body": "{\"n\": 1}",
                            "properties": {"content_type":
                                           "application/json",
                                           "correlation_id": "c-1",
                                           "priority": 7, "type": "Order"},
                            "headers": {"tenant": "acme"}})
    assert r1.status_code == 202, r1.text
    r2 = g.send("amq.out", {"destination": "/queue/" + q,
                            "body_base64": base64.b64encode(
                                b"\x00\x01").decode()})
    assert r2.status_code == 202, r2.text
    got = sorted(activemq.consume(q, count=2, idle=3),
                 key=lambda m: m["class"])
    b, t = got
    assert t["class"] == "TextMessage" and t["body"] == "{\"n\": 1}"
    assert t["JMSCorrelationID"] == "c-1" and t["JMSPriority"] == 7
    assert t["JMSType"] == "Order" and t["JMSDeliveryMode"] == 2
    assert t["properties"]["tenant"]["value"] == "acme"
    assert t["properties"]["zmq_message_id"]["value"] == \
        r1.json()["message_id"]
    assert b["class"] == "BytesMessage"
    assert base64.b64decode(b["body"]) == b"\x00\x01"
    assert activemq.queue_size(q) == 0


# -------------------------------------------------------------- zmqctl

def test_zmqctl_ping_stomp_def(gw, zmqctl, rabbitmq_stomp, silent):
    r = zmqctl("ping", "stomp_def", "rabbit", check=None)
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert r.stdout.startswith("ok ") and "RabbitMQ 3." in r.stdout
    assert "at 127.0.0.1:%d" % rabbitmq_stomp.stomp_port in r.stdout

    r = zmqctl("ping", "stomp_def", "badpw", check=None)
    assert r.returncode == 1
    assert r.stdout.startswith("failed: 127.0.0.1:%d: the broker answered "
                               "CONNECT with ERROR: "
                               % rabbitmq_stomp.stomp_port), r.stdout
    assert BAD_PASSCODE not in r.stdout + r.stderr

    r = zmqctl("ping", "stomp_def", "closed", check=None)
    assert r.returncode == 1 and "refused" in r.stdout.lower(), r.stdout

    r = zmqctl("ping", "stomp_def", "failover", check=None)
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert "trying the next address" in r.stderr

    t0 = time.monotonic()
    r = zmqctl("ping", "--timeout", "700", "stomp_def", "silent", check=None)
    assert r.returncode == 1
    assert "no CONNECTED in time (no answer within 700 ms)" in r.stdout
    assert 0.6 < time.monotonic() - t0 < 5

    r = zmqctl("ping", "stomp_def", "nosuch", check=None)
    assert r.returncode == 1 and "does not exist" in r.stderr
