"""The Python client (clients/python, issue 15) against the real stack:
NGINX with the module, RabbitMQ (checked with pika), Redis, and a fake
broker where a real one will not misbehave on demand.

Every error code of the gateway that a client can provoke maps to its
exception class (GatewayError subclasses named after the codes; 503s with
their retry_after); send() delivers body, properties and headers byte for
byte; credentials of the three kinds (basic_auth with a UTF-8 password, API
key, JWT signed by PyJWT, also from a callable) reach the consumer as
x-zmq-auth; retries=N waits what each Retry-After says and sends every
attempt with the same message id, and the broker holds the message once
with that id; AdminClient lists, gets, creates, updates with If-Match,
deletes, pings, changes passwords and sends; invoke() returns an rpc
channel's reply (when the gateway has rpc services) and maps its errors.

Not provoked: 408 body_timeout (the client sends whole bodies), 400
bad_request from a malformed request (requests does not make one; the
admin API's bad_request is), 503 busy and redis_unavailable of the admin
API, 409 no_key and conflict (they need a store racing the test)."""

import base64
import datetime
import hashlib
import json
import os
import socket
import sys
import threading
import time
import uuid

import pika
import pytest
import requests

from conftest import ROOT, amqp_config, register_secret
from fake_amqp import FakeAmqp
from security_helpers import zmqctl_apikey
from test_live_config import Live

sys.path.insert(0, os.path.join(ROOT, "clients", "python"))

import ngx_zmq                                              # noqa: E402
from ngx_zmq import AdminClient, Client, SendResult         # noqa: E402

UTF8_PW = "Gr\u00fc\u00dfe-\u20ac-pyclient-4471"
API_KEY = "pyc-kA7-2xYq9vLm0Pz3RtW8sNc5bHj1uGf4eDo6iKl2"
JWT_SECRET = "pyclient-jwt-secret-of-at-least-32-bytes-77"
ADMIN_PW = "pyclient-admin-Passw0rd-5531"


def digest(key):
    return hashlib.sha256(key.encode()).hexdigest()


def token(sub="app", ttl=300):
    import jwt
    t = jwt.encode({"sub": sub, "exp": int(time.time()) + ttl}, JWT_SECRET,
                   algorithm="HS256")
    t = t if isinstance(t, str) else t.decode()
    register_secret(t)
    return t


# ------------------------------------------------------------ the stack


LOCATIONS = """
location /pub { zmq_service svc; }
location /json { zmq_service svc; zmq_data_format json; }
location /small { zmq_service svc; zmq_max_body 1k; }
location /mand { zmq_service mand; }
location /inactive { zmq_service off; }
location /down { zmq_service down; }
location /slow { zmq_service slow; zmq_confirm_timeout 500ms; }
location /blocked { zmq_service blocked; }
location /api/ { zmq_router; }
location /zmq/admin/ { zmq_admin; zmq_admin_auth off; }
"""


def file_config(rabbit_port, queue, full, fake_port, blocked_port,
                down_port):
    cfg = amqp_config(rabbit_port, {
        "svc": {"routing_key": queue},
        "mand": {"routing_key": "nobody.listens.here", "mandatory": True},
        "off": {"routing_key": queue, "is_active": False},
        "full": {"routing_key": full},
        "byparam": {"routing_key": "{k}"},
        "down": {"outconn": "down-out", "routing_key": queue},
        "slow": {"outconn": "fake-out", "routing_key": queue},
        "blocked": {"outconn": "blocked-out", "routing_key": queue},
    }, extra={
        "security": [
            {"name": "basic", "type": "basic_auth", "username": "j\u00fcrgen",
             "password": UTF8_PW, "realm": "crm"},
            {"name": "keys", "type": "apikey", "keys": [
                {"id": "app1", "sha256": digest(API_KEY)}]},
            {"name": "tokens", "type": "jwt", "secret": JWT_SECRET},
        ],
        "rest_channel": [
            {"name": "basic", "url_path": "/api/basic", "service": "svc",
             "security": "basic"},
            {"name": "key", "url_path": "/api/key", "service": "svc",
             "security": "keys"},
            {"name": "jwt", "url_path": "/api/jwt", "service": "svc",
             "security": "tokens"},
            {"name": "put", "url_path": "/api/put-only", "service": "svc",
             "method": "PUT"},
            {"name": "rk", "url_path": "/api/rk/{k}", "service": "byparam"},
            {"name": "kind", "url_path": "/api/kind", "service": "store"},
            {"name": "full", "url_path": "/api/full", "service": "full"},
        ]})
    cfg["service"].append({"name": "store", "kind": "redis", "key": "k"})
    for name, port in (("down", down_port), ("fake", fake_port),
                       ("blocked", blocked_port)):
        cfg["amqp_def"].append({"name": name, "host": "127.0.0.1",
                                "port": port, "username": "guest",
                                "password": "guest"})
        cfg["amqp_outconn"].append({"name": name + "-out", "def": name,
                                    "max_inflight": 1})
    cfg["amqp_outconn"].append({"name": "offline", "def": "rabbit",
                                "is_active": False})
    return cfg


def closed_port():
    """A port that refuses connections: bound, never listening."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    return s


@pytest.fixture
def stack(rabbitmq, gateway, queue):
    for s in (UTF8_PW, API_KEY, JWT_SECRET):
        register_secret(s)
    full = "t.full." + uuid.uuid4().hex[:8]
    queue.channel.queue_declare(full, arguments={
        "x-max-length": 1, "x-overflow": "reject-publish"})
    queue.channel.basic_publish("", full, b"filler")
    fake = FakeAmqp(never_ack=True)
    blocked = FakeAmqp(after_ready=pika.frame.Method(
        0, pika.spec.Connection.Blocked(reason="low on memory")).marshal())
    down = closed_port()
    try:
        gw = gateway(file_config(rabbitmq.port, queue.name, full, fake.port,
                                 blocked.port, down.getsockname()[1]),
                     LOCATIONS)
        gw.queue = queue
        gw.fake = fake
        yield gw
    finally:
        fake.close()
        blocked.close()
        down.close()
        queue.channel.queue_delete(full)


def raises(cls, f, *args, **kw):
    """f(...) raises exactly cls (not a subclass); the exception."""
    with pytest.raises(ngx_zmq.GatewayError) as e:
        f(*args, **kw)
    assert type(e.value) is cls, (type(e.value), e.value)
    assert e.value.message and isinstance(e.value.message, str)
    return e.value


# ------------------------------------------------------------------ send


def test_send_delivers_body_properties_and_headers(stack):
    c = Client(stack.url)
    r = c.send("/pub", b"\x00raw\xffbytes", message_id="m-1",
               correlation_id="c-1", reply_to="replies", priority=7,
               expiration=datetime.timedelta(seconds=60),
               headers={"Tenant": "acme", "City": "Z\u00fcrich",
                        "Attempt": 3, "Urgent": True},
               content_type="application/x-thing")
    assert r == SendResult("m-1", True)
    r2 = c.send("/pub", json={"a": ["\u00e9", 1]}, persistent=False)
    r3 = c.send("/pub", "text \u00e9", persistent=None)
    (_, p, body), (_, p2, body2), (_, p3, body3) = \
        stack.queue.drain(expect=3)
    assert body == b"\x00raw\xffbytes"
    assert (p.message_id, p.correlation_id, p.reply_to, p.priority,
            p.expiration, p.delivery_mode, p.content_type) == (
        "m-1", "c-1", "replies", 7, "60000", 2, "application/x-thing")
    assert p.headers == {"Tenant": "acme", "City": "Z\u00fcrich",
                         "Attempt": "3", "Urgent": "true"}
    assert json.loads(body2) == {"a": ["\u00e9", 1]}
    assert p2.content_type == "application/json"
    assert p2.delivery_mode == 1 and p2.message_id == r2.message_id
    assert body3 == "text \u00e9".encode()
    assert p3.delivery_mode == 2            # the outconn's default
    assert p3.message_id == r3.message_id and r3.confirmed


def test_every_error_code_of_a_publish_maps_to_its_exception(stack):
    c = Client(stack.url)
    e = raises(ngx_zmq.InvalidJSON, c.send, "/json", b"{nope")
    assert (e.status, e.code) == (400, "invalid_json")
    assert isinstance(e, ngx_zmq.BadRequest) and e.errors == []
    e = raises(ngx_zmq.BadHeader, c.send, "/pub", b"x", priority=12)
    assert "X-Priority" in e.message
    raises(ngx_zmq.BadHeader, c.send, "/pub", b"x",
           headers={"x-forged": "1"})
    e = raises(ngx_zmq.BadRoutingKey, c.send, "/api/rk/" + "k" * 300, b"x")
    assert e.status == 400
    e = raises(ngx_zmq.NotFound, c.send, "/api/nothing-here", b"x")
    assert (e.status, e.code) == (404, "not_found")
    e = raises(ngx_zmq.MethodNotAllowed, c.send, "/api/put-only", b"x")
    assert e.allow == ["PUT"]
    assert c.send("/api/put-only", b"x", method="PUT").confirmed
    e = raises(ngx_zmq.BodyTooLarge, c.send, "/small", b"x" * 1025)
    assert e.status == 413
    e = raises(ngx_zmq.Unroutable, c.send, "/mand", b"x")
    assert (e.status, e.code) == (422, "unroutable")
    e = raises(ngx_zmq.Nacked, c.send, "/api/full", b"x")
    assert (e.status, e.code) == (503, "nacked")
    assert isinstance(e, ngx_zmq.ServerError)
    assert isinstance(e, ngx_zmq.Unavailable)     # retried with retries=N
    e = raises(ngx_zmq.ServiceKindUnsupported, c.send, "/api/kind", b"x")
    assert e.status == 501
    e = raises(ngx_zmq.ServiceInactive, c.send, "/inactive", b"x")
    assert e.status == 503 and isinstance(e, ngx_zmq.Unavailable)
    e = raises(ngx_zmq.BrokerUnavailable, c.send, "/down", b"x")
    assert e.status == 503 and e.retry_after >= 1
    assert e.headers["Retry-After"] == str(e.retry_after)
    e = raises(ngx_zmq.Unauthorized, c.send, "/api/basic", b"x")
    assert e.challenge == 'Basic realm="crm", charset="UTF-8"'
    # the marker: everything the gateway accepted so far is in the queue
    assert c.send("/pub", b"marker").confirmed
    assert [b for _, _, b in stack.queue.drain(expect=2)] == [b"x",
                                                             b"marker"]


def test_confirm_timeout_overloaded_and_blocked_from_a_fake_broker(stack):
    c = Client(stack.url)
    stack.wait_state("ready", "fake-out")
    deadline = time.monotonic() + 10
    got = {}

    def first():
        try:
            c.send("/slow", b"waits")
        except ngx_zmq.GatewayError as e:
            got["first"] = e
    t = threading.Thread(target=first)
    t.start()
    while not stack.fake.published and time.monotonic() < deadline:
        time.sleep(0.02)
    e = raises(ngx_zmq.Overloaded, c.send, "/slow", b"no room")
    assert e.retry_after == 1
    t.join(10)
    assert type(got["first"]) is ngx_zmq.ConfirmTimeout
    assert (got["first"].status, got["first"].code) == (504,
                                                        "confirm_timeout")
    assert isinstance(got["first"], ngx_zmq.GatewayTimeout)
    # connection.blocked arrives right after the handshake
    while True:
        try:
            c.send("/blocked", b"x")
        except ngx_zmq.BrokerBlocked as e:
            assert e.retry_after == 5
            break
        except ngx_zmq.BrokerUnavailable:
            assert time.monotonic() < deadline
            time.sleep(0.1)


def test_connection_failures_are_connection_failed(stack):
    s = closed_port()
    try:
        c = Client("http://127.0.0.1:%d" % s.getsockname()[1], timeout=2)
        e = raises(ngx_zmq.ConnectionFailed, c.send, "/pub", b"x")
        assert e.status is None
    finally:
        s.close()


# ------------------------------------------------------------------ auth


def test_basic_auth_api_key_and_jwt_reach_the_consumer(stack):
    tokens = []

    def fresh():
        tokens.append(token())
        return tokens[-1]

    for c, path, who in (
            (Client(stack.url, auth=("j\u00fcrgen", UTF8_PW)), "/api/basic",
             "basic:j\u00fcrgen"),
            (Client(stack.url, api_key=API_KEY), "/api/key", "keys:app1"),
            (Client(stack.url, token=token()), "/api/jwt", "tokens:app"),
            (Client(stack.url, token=fresh), "/api/jwt", "tokens:app")):
        r = c.send(path, json={"who": who})
        [(_, p, body)] = stack.queue.drain(expect=1)
        assert p.message_id == r.message_id
        assert p.headers["x-zmq-auth"] == who
    assert len(tokens) == 1

    e = raises(ngx_zmq.Unauthorized,
               Client(stack.url, auth=("j\u00fcrgen", "wrong-" + UTF8_PW))
               .send, "/api/basic", b"x")
    assert e.code == "unauthorized"
    e = raises(ngx_zmq.Unauthorized,
               Client(stack.url, api_key=API_KEY[::-1]).send, "/api/key",
               b"x")
    assert e.challenge == 'ApiKey header="X-API-Key"'
    e = raises(ngx_zmq.Unauthorized,
               Client(stack.url, token=token(ttl=-60)).send, "/api/jwt",
               b"x")
    assert e.challenge == 'Bearer error="invalid_token"'
    with pytest.raises(ValueError):
        Client(stack.url, auth=("a", "b"), api_key="k")


def test_too_many_failed_attempts_is_too_many_attempts(stack):
    c = Client(stack.url, auth=("j\u00fcrgen", "wrong-password-x"))
    for _ in range(10):
        raises(ngx_zmq.Unauthorized, c.send, "/api/basic", b"x")
    e = raises(ngx_zmq.TooManyAttempts, c.send, "/api/basic", b"x")
    assert e.status == 429 and 1 <= e.retry_after <= 10
    # retries are for 503 only: a 429 is raised at once
    c.retries = 3
    c.sleep = lambda s: pytest.fail("slept on a 429")
    raises(ngx_zmq.TooManyAttempts, c.send, "/api/basic", b"x")


# --------------------------------------------------------------- retries


class Gate:
    """A port that refuses connections until open(), then forwards them to
    the broker."""

    def __init__(self, target):
        self.target = target
        self.sock = closed_port()
        self.port = self.sock.getsockname()[1]
        self.socks = []
        self.stopping = False

    def open(self):
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while not self.stopping:
            try:
                a, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            b = socket.create_connection(("127.0.0.1", self.target))
            self.socks += [a, b]
            for x, y in ((a, b), (b, a)):
                threading.Thread(target=self.pump, args=(x, y),
                                 daemon=True).start()

    @staticmethod
    def pump(x, y):
        try:
            while True:
                d = x.recv(65536)
                if not d:
                    break
                y.sendall(d)
        except OSError:
            pass
        finally:
            try:
                y.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def close(self):
        self.stopping = True
        self.sock.close()
        for s in self.socks:
            s.close()


@pytest.fixture
def gated(rabbitmq, gateway, queue):
    gate = Gate(rabbitmq.port)
    try:
        gw = gateway(amqp_config(gate.port, {"svc": {
            "routing_key": queue.name}}), "location /pub { zmq_service svc; }",
            wait=None)
        gw.gate = gate
        gw.queue = queue
        yield gw
    finally:
        gate.close()


def recorder(client):
    """Every request the client sends: (time, headers, status,
    Retry-After)."""
    seen = []

    def hook(r, **kw):
        seen.append((time.monotonic(), dict(r.request.headers),
                     r.status_code, r.headers.get("Retry-After")))
    client.session.hooks["response"].append(hook)
    return seen


def test_retries_honour_retry_after_and_keep_the_message_id(gated):
    c = Client(gated.url, retries=8)
    seen = recorder(c)
    waits = []

    def sleep(s):
        waits.append(s)
        if len(waits) == 1:
            gated.gate.open()       # the broker comes back meanwhile
        time.sleep(s)
    c.sleep = sleep
    r = c.send("/pub", b"exactly once", correlation_id="c-9")
    assert r.confirmed
    assert len(seen) >= 2 and seen[-1][2] == 202
    assert all(s[2] == 503 for s in seen[:-1])
    # every attempt carried the same id, made by the client (a UUID4)
    ids = {s[1]["X-Message-Id"] for s in seen}
    assert ids == {r.message_id}
    assert uuid.UUID(r.message_id).version == 4
    # each wait was the previous answer's Retry-After, and was waited
    assert waits == [float(s[3]) for s in seen[:-1]]
    for (t0, _, _, ra), (t1, _, _, _) in zip(seen, seen[1:]):
        assert t1 - t0 >= float(ra) - 0.05
    # the broker holds it once, with that id
    [(_, p, body)] = gated.queue.drain(expect=1)
    assert (body, p.message_id, p.correlation_id) == (
        b"exactly once", r.message_id, "c-9")
    time.sleep(0.3)
    assert gated.queue.count() == 0


def test_retries_give_up_with_the_last_503_and_one_id(gated):
    c = Client(gated.url, retries=2)
    seen = recorder(c)
    waits = []
    c.sleep = waits.append
    e = raises(ngx_zmq.BrokerUnavailable, c.send, "/pub", b"x",
               message_id="mine-1")
    assert len(seen) == 3 and len(waits) == 2
    assert {s[1]["X-Message-Id"] for s in seen} == {"mine-1"}
    assert e.retry_after == float(seen[-1][3])
    # without retries, one attempt and no id made up by the client
    c.retries = 0
    del seen[:]
    raises(ngx_zmq.BrokerUnavailable, c.send, "/pub", b"x")
    assert len(seen) == 1 and "X-Message-Id" not in seen[0][1]
    # Retry-After above retry_max_wait waits retry_max_wait
    c.retry_max_wait = 0.5
    raises(ngx_zmq.BrokerUnavailable, c.send, "/pub", b"x", retries=1)
    assert waits[-1] <= 0.5


# ------------------------------------------------------------------- rpc


def test_invoke_maps_the_errors_of_a_channel(stack):
    """invoke() against publish channels: the gateway's errors raise as
    for send (an rpc channel's reply needs the gateway's rpc services:
    see the next test)."""
    c = Client(stack.url)
    raises(ngx_zmq.Unroutable, c.invoke, "/mand", b"x")
    raises(ngx_zmq.ServiceKindUnsupported, c.invoke, "/api/kind", b"x")
    raises(ngx_zmq.NotFound, c.invoke, "/api/none", b"x")
    raises(ngx_zmq.Unauthorized, c.invoke, "/api/jwt", b"x")
    reply = c.invoke("/pub", json={"a": 1})
    assert reply.status == 202 and reply.json()["confirmed"] is True
    body, ctype, status = reply
    assert ctype == "application/json" and status == 202


def responder(rabbitmq, queue_name, answer, stop):
    """A pika consumer of queue_name answering each request to its
    reply_to with answer(props, body) -> (body, content_type, status)."""
    conn = rabbitmq.connection()
    ch = conn.channel()

    def on(ch, m, props, body):
        out, ctype, status = answer(props, body)
        headers = {"x-zmq-status": status} if status is not None else None
        ch.basic_publish("", props.reply_to, out, pika.BasicProperties(
            correlation_id=props.correlation_id, content_type=ctype,
            headers=headers))
        ch.basic_ack(m.delivery_tag)
    ch.basic_consume(queue_name, on)
    while not stop.is_set():
        conn.process_data_events(time_limit=0.1)
    conn.close()


def test_invoke_returns_the_reply_of_an_rpc_channel(rabbitmq, gateway,
                                                    queue):
    cfg = amqp_config(rabbitmq.port, {
        "svc": {"kind": "rpc", "routing_key": queue.name, "timeout": 3000},
        "lonely": {"kind": "rpc", "routing_key": queue.name + ".nobody",
                   "mandatory": False, "timeout": 500}})
    cfg["rest_channel"] = [
        {"name": "rpc", "url_path": "/rpc", "service": "svc"},
        {"name": "lonely", "url_path": "/lonely", "service": "lonely"}]
    gw = gateway(cfg, "location / { zmq_router; }")
    c = Client(gw.url, timeout=10)
    try:
        c.invoke("/rpc", b"probe", timeout=0.5)
    except ngx_zmq.ServiceKindUnsupported:
        pytest.skip("this gateway has no rpc services yet (issue 14)")
    except (ngx_zmq.ReplyTimeout, ngx_zmq.ConnectionFailed):
        pass
    queue.drain()
    stop = threading.Event()

    def answer(props, body):
        if body == b"fail":
            return b'{"error":"boom","message":"x"}', "application/json", 502
        return body.upper(), "text/x-upper", 201 if body == b"new" else None
    t = threading.Thread(target=responder, args=(rabbitmq, queue.name,
                                                 answer, stop))
    t.start()
    try:
        r = c.invoke("/rpc", b"hello")
        assert (r.body, r.content_type, r.status) == (b"HELLO",
                                                     "text/x-upper", 200)
        assert r.correlation_id
        assert c.invoke("/rpc", b"new").status == 201
        # a responder's error is its reply, not the gateway's error
        r = c.invoke("/rpc", b"fail")
        assert r.status == 502 and r.json()["error"] == "boom"
        assert not r.ok
        e = raises(ngx_zmq.ReplyTimeout, c.invoke, "/lonely", b"x")
        assert (e.status, e.code) == (504, "reply_timeout")
    finally:
        stop.set()
        t.join(10)


# ----------------------------------------------------------------- admin


ADMIN = """
location /zmq/admin/ { zmq_admin; zmq_security admins; }
location /zmq/view/ { zmq_admin; zmq_security viewers; }
location /ghost { zmq_service ghost; }
location /nosec { zmq_service svc; zmq_security nobody; }
"""


@pytest.fixture
def admin(rabbitmq, nginx_factory, zmqctl, redis_store, tmp_path, queue):
    register_secret(ADMIN_PW)
    live = Live(nginx_factory, zmqctl, redis_store, tmp_path, ADMIN,
                workers=1)
    cfg = amqp_config(rabbitmq.port, {
        "svc": {"routing_key": queue.name}}, extra={
        "security": [
            {"name": "admins", "type": "basic_auth", "username": "root",
             "password": ADMIN_PW},
            {"name": "viewers", "type": "apikey", "role": "viewer"}],
        "http_outconn": [{"name": "hook", "url": "http://127.0.0.1:9/x"}],
    })
    cfg["service"].append({"name": "store", "kind": "redis", "key": "k"})
    live.write(cfg)
    rc, key, out, err = zmqctl_apikey(zmqctl, "--id", "ops", "viewers")
    assert rc == 0, (out, err)
    version = int(redis_store.client().get("zmq:version"))
    live.start()
    live.wait_version(version)
    live.wait_ready()
    live.viewer_key = key
    live.queue = queue
    live.rabbit_port = rabbitmq.port
    return live


def test_admin_client_reads_writes_with_if_match_and_deletes(admin):
    a = AdminClient(admin.url + "/zmq/admin", auth=("root", ADMIN_PW))
    assert a.whoami()["role"] == "admin"
    assert [s["name"] for s in a.list("service")] == ["store", "svc"]
    p = a.page("service", 1, page_size=1)
    assert p["page"] == {"number": 1, "size": 1, "count": 2,
                         "num_pages": 2}
    d = a.get("amqp_def", "rabbit")
    assert d["password"] == {"$set": True} and d.etag.startswith('"')

    made = a.create("amqp_def", {"name": "erp", "host": "127.0.0.1",
                                 "port": admin.rabbit_port,
                                 "username": "guest", "password": "guest"})
    assert made.status == 201 and made["data"]["name"] == "erp"
    e = raises(ngx_zmq.Exists, a.create, "amqp_def",
               {"name": "erp", "host": "127.0.0.1"})
    assert isinstance(e, ngx_zmq.Conflict) and e.status == 409

    up = a.update("amqp_def", "erp", {"heartbeat": 45}, if_match=made,
                  wait=True)
    assert up["applied"] is True and up["data"]["heartbeat"] == 45
    assert up.etag != made.etag
    e = raises(ngx_zmq.PreconditionFailed, a.update, "amqp_def", "erp",
               {"heartbeat": 40}, if_match=made.etag)
    assert e.etag == up.etag
    assert a.get("amqp_def", "erp")["heartbeat"] == 45
    rep = a.replace("amqp_def", "erp", {"name": "erp", "host": "127.0.0.1",
                                        "port": admin.rabbit_port,
                                        "password": {"$set": True}},
                    if_match=int(up.etag.strip('"')))
    # fields left out take their defaults
    assert rep.status == 200 and rep["data"]["heartbeat"] != 45

    e = raises(ngx_zmq.Invalid, a.create, "amqp_def",
               {"name": "bad", "host": "127.0.0.1", "port": 70000})
    assert e.errors and e.errors[0]["field"] == "port"
    assert isinstance(e, ngx_zmq.BadRequest)
    raises(ngx_zmq.BadJSON, a.create, "amqp_def", [1, 2])
    raises(ngx_zmq.NotFound, a.get, "amqp_def", "nope")

    a.create("amqp_outconn", {"name": "erp-out", "def": "erp"})
    e = raises(ngx_zmq.InUse, a.delete, "amqp_def", "erp")
    assert e.referrers == [{"kind": "amqp_outconn", "name": "erp-out"}]
    # reads come from the configuration the worker runs: wait for it
    gone = a.delete("amqp_def", "erp", cascade=True, wait=True)
    assert sorted(x["name"] for x in gone["deleted"]) == ["erp", "erp-out"]
    raises(ngx_zmq.NotFound, a.get, "amqp_def", "erp")


def test_admin_client_ping_password_send_invoke(admin):
    a = AdminClient(admin.url + "/zmq/admin", auth=("root", ADMIN_PW))
    a.create("amqp_def", {"name": "erp", "host": "127.0.0.1",
                          "port": admin.rabbit_port, "username": "guest",
                          "password": "guest"}, wait=True)
    ok = a.ping("amqp_def", "erp")
    assert ok["ok"] is True and ok["server"]["product"] == "RabbitMQ"
    wrong = "not-the-guest-password-1"
    register_secret(wrong)
    changed = a.change_password("amqp_def", "erp", wrong, wait=True)
    assert changed["changes"] == 1 and changed["applied"] is True
    bad = a.ping("amqp_def", "erp")
    assert bad["ok"] is False and "ACCESS_REFUSED" in bad["error"]
    raises(ngx_zmq.NoSecret, a.password, "http_outconn", "hook", wrong)
    assert a.ping("http_outconn", "hook")["ok"] is False

    r = a.send("out", b"\x00bin\xff", routing_key=admin.queue.name,
               properties={"message_id": "adm-1", "priority": 3},
               headers={"tenant": "acme", "n": 2})
    assert r == SendResult("adm-1", True)
    r2 = a.send("out", "text", routing_key=admin.queue.name)
    [(_, p, body), (_, p2, body2)] = admin.queue.drain(expect=2)
    assert (body, p.message_id, p.priority) == (b"\x00bin\xff", "adm-1", 3)
    assert p.headers["tenant"] == "acme" and p.headers["n"] == 2
    assert p.headers["x-zmq-auth"] == "admins:root"
    assert (body2, p2.message_id) == (b"text", r2.message_id)
    e = raises(ngx_zmq.BadRequest, a.send, "out", "x",
               properties={"priority": 12})
    assert "priority" in e.message
    e = raises(ngx_zmq.ExchangeNotFound, a.send, "out", "x",
               exchange="no-such-exchange")
    assert e.status == 404
    raises(ngx_zmq.NotFound, a.send, "nope", "x")

    r = a.invoke("svc", b"<order/>", content_type="application/xml",
                 headers={"X-Correlation-Id": "c-7"})
    assert r.confirmed
    [(_, p, body)] = admin.queue.drain(expect=1)
    assert (body, p.content_type, p.correlation_id, p.message_id) == (
        b"<order/>", "application/xml", "c-7", r.message_id)
    raises(ngx_zmq.NotInvokable, a.invoke, "store", b"x")


def test_admin_client_credentials_and_roles(admin):
    viewer = AdminClient(admin.url + "/zmq/view", api_key=admin.viewer_key)
    assert viewer.whoami()["role"] == "viewer"
    assert viewer.get("service", "svc")["name"] == "svc"
    e = raises(ngx_zmq.Forbidden, viewer.create, "amqp_def",
               {"name": "x", "host": "127.0.0.1"})
    assert e.status == 403
    raises(ngx_zmq.Forbidden, viewer.ping, "amqp_def", "rabbit")
    e = raises(ngx_zmq.Unauthorized, AdminClient(
        admin.url + "/zmq/admin", auth=("root", "wrong-" + ADMIN_PW)).whoami)
    assert e.challenge.startswith("Basic ")


def test_unknown_service_and_security_unavailable_from_redis(admin):
    c = Client(admin.url)
    e = raises(ngx_zmq.UnknownService, c.send, "/ghost", b"x")
    assert (e.status, e.code) == (404, "unknown_service")
    assert isinstance(e, ngx_zmq.NotFound)
    e = raises(ngx_zmq.SecurityUnavailable, c.send, "/nosec", b"x")
    assert e.status == 503


def test_admin_api_of_a_file_configuration(stack):
    """read_only writes; send through an inactive outconn."""
    a = AdminClient(stack.url + "/zmq/admin/")
    e = raises(ngx_zmq.ReadOnly, a.create, "amqp_def",
               {"name": "x", "host": "127.0.0.1"})
    assert e.status == 409
    e = raises(ngx_zmq.OutconnInactive, a.send, "offline", "x")
    assert e.status == 503


def test_error_answers_that_are_not_the_gateways(stack):
    """A 5xx from something in front of the gateway (no JSON body): the
    class of its status, no code."""
    from ngx_zmq.client import error_from_response
    r = requests.models.Response()
    r.status_code = 502
    r.reason = "Bad Gateway"
    r.headers["Content-Type"] = "text/html"
    r._content = b"<html>proxy</html>"
    e = error_from_response(r)
    assert type(e) is ngx_zmq.BadGateway and e.code is None
    r.status_code = 418
    assert type(error_from_response(r)) is ngx_zmq.ClientError
    r.status_code = 503
    r.headers["Retry-After"] = "Wed, 21 Oct 2015 07:28:00 GMT"
    assert error_from_response(r).retry_after == 0.0
