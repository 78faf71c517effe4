"""rpc and invoke services in the gateway (issue 14, items 1 and 5),
against real RabbitMQ and NGINX; the other side is pika.

An rpc service publishes the request's body with reply_to
amq.rabbitmq.reply-to (RabbitMQ's direct reply-to) and correlation_id =
message_id = a fresh UUID, waits for the broker's confirm and for the
reply, and answers with the reply's body, content type and x-zmq-status,
and X-Correlation-Id. An invoke service publishes the invocation to its
queue for zmqd (played here by pika) with x-zmq-invoke, x-zmq-mode and
x-zmq-req-ts; sync modes wait for zmqd's reply like an rpc, async answers
202 {"accepted": true, "cid": ...} once confirmed."""

import asyncio
import datetime
import json
import queue as queue_mod
import re
import threading
import time
import uuid

import pika
import pytest
import requests

from conftest import amqp_config

RPC = "location = /rpc { zmq_service svc; }\n"
UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-"
                   r"[0-9a-f]{12}")


class Responder(threading.Thread):
    """A pika consumer of a queue, in a thread of its own, that answers
    each request with handler(props, body): None (no reply now) or
    (body, dict of reply properties). It records every request."""

    def __init__(self, rabbitmq, queue_name, handler=None):
        super().__init__(daemon=True)
        self.conn = rabbitmq.connection()
        self.ch = self.conn.channel()
        self.handler = handler or (lambda p, b: (b, {}))
        self.seen = []
        self.calls = queue_mod.Queue()
        self.stopping = False
        self.error = None
        self.ch.basic_consume(queue_name, self._on_message, auto_ack=True)
        self.start()

    def _on_message(self, ch, method, props, body):
        self.seen.append((method, props, body))
        out = self.handler(props, body)
        if out is not None:
            self.reply(props, *out)

    def reply(self, req, body, props=None, **kw):
        """A reply to the request whose properties are req (in the
        responder's thread: from outside use call())."""
        d = {"correlation_id": req.correlation_id}
        d.update(props or {})
        d.update(kw)
        self.ch.basic_publish("", req.reply_to, body,
                              pika.BasicProperties(**d))

    def call(self, fn):
        """Runs fn in the responder's thread (pika is not thread-safe)."""
        done = threading.Event()

        def run():
            try:
                fn()
            finally:
                done.set()
        self.calls.put(run)
        assert done.wait(10), "the responder did not run the call"

    def run(self):
        try:
            while not self.stopping:
                self.conn.process_data_events(time_limit=0.02)
                while not self.calls.empty():
                    self.calls.get()()
        except Exception as e:          # reported by stop()
            self.error = e

    def wait_seen(self, n, timeout=15.0):
        deadline = time.monotonic() + timeout
        while len(self.seen) < n and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(self.seen) >= n, (len(self.seen), n)

    def stop(self):
        self.stopping = True
        self.join(10)
        try:
            self.conn.close()
        except Exception:
            pass
        assert self.error is None, self.error


@pytest.fixture
def responders():
    started = []

    def make(rabbitmq, queue_name, handler=None):
        r = Responder(rabbitmq, queue_name, handler)
        started.append(r)
        return r
    yield make
    for r in started:
        r.stop()


def rpc_config(rabbitmq, routing_key, **fields):
    svc = {"kind": "rpc", "routing_key": routing_key}
    svc.update(fields)
    return amqp_config(rabbitmq.port, {"svc": svc},
                       outconn={"max_inflight": 4096})


def post(gw, data=b"", headers=None, path="/rpc", timeout=30):
    return requests.post(gw.url + path, data=data, headers=headers or {},
                         timeout=timeout)


def json_error(r, status, code):
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["Content-Type"] == "application/json"
    assert r.json()["error"] == code, r.text
    return r.json()


def wait_totals(gw, key, value, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        t = gw.totals()
        if t.get(key) == value or time.monotonic() > deadline:
            return t
        time.sleep(0.05)


# -------------------------------------------------------------------- rpc


def test_reply_body_type_status_and_correlation_id(rabbitmq, gateway, queue,
                                                   responders):
    def handler(props, body):
        return (b"<ok>" + body + b"</ok>",
                {"content_type": "application/xml",
                 "headers": {"x-zmq-status": 201}})
    resp = responders(rabbitmq, queue.name, handler)
    gw = gateway(rpc_config(rabbitmq, queue.name), RPC)

    r = post(gw, b"\x00hello\xff", {"Content-Type": "text/x-thing",
                                    "X-Zmq-Header-Tenant": "acme"})
    assert r.status_code == 201, r.text
    assert r.content == b"<ok>\x00hello\xff</ok>"
    assert r.headers["Content-Type"] == "application/xml"

    [(m, p, body)] = resp.seen
    assert body == b"\x00hello\xff"
    assert m.exchange == "" and m.routing_key == queue.name
    # what the gateway set, as pika sees it
    assert UUID4.fullmatch(p.correlation_id)
    assert p.message_id == p.correlation_id
    assert p.reply_to.startswith("amq.rabbitmq.reply-to.")
    assert p.content_type == "text/x-thing"
    assert p.headers["Tenant"] == "acme"
    assert r.headers["X-Correlation-Id"] == p.correlation_id

    t = wait_totals(gw, "rpc_replies", 1)
    assert (t["rpc_requests"], t["rpc_replies"], t["rpc_waiting"],
            t["rpc_timeouts"], t["rpc_late"], t["rpc_bad"]) == (
        1, 1, 0, 0, 0, 0)
    assert t["confirmed"] == 1


def test_reply_without_status_or_type_is_200_octet_stream(rabbitmq, gateway,
                                                          queue, responders):
    responders(rabbitmq, queue.name, lambda p, b: (b"raw", {}))
    gw = gateway(rpc_config(rabbitmq, queue.name), RPC)
    r = post(gw, b"x")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/octet-stream"
    assert r.content == b"raw"


@pytest.mark.parametrize("status", [
    200, 204, 404, 503, 599, "302", "200", b"418"])
def test_x_zmq_status_of_any_integer_width_or_digit_string(
        rabbitmq, gateway, queue, responders, status):
    # pika sends a Python int as a signed 32-bit ('I') or 64-bit ('l')
    # integer, str as 'S' and bytes as 'x'
    responders(rabbitmq, queue.name, lambda p, b: (
        b"" if str(status) in ("204",) else b"body",
        {"headers": {"x-zmq-status": status},
         "content_type": "text/plain"}))
    gw = gateway(rpc_config(rabbitmq, queue.name), RPC)
    r = requests.post(gw.url + "/rpc", data=b"x", timeout=30,
                      allow_redirects=False)
    want = int(status if not isinstance(status, bytes) else status.decode())
    assert r.status_code == want, r.text
    if want != 204:
        assert r.content == b"body"
        assert r.headers["Content-Type"] == "text/plain"


def test_empty_reply_body(rabbitmq, gateway, queue, responders):
    responders(rabbitmq, queue.name, lambda p, b: (b"", {
        "content_type": "application/json"}))
    gw = gateway(rpc_config(rabbitmq, queue.name), RPC)
    r = post(gw, b"x")
    assert r.status_code == 200 and r.content == b""
    assert r.headers["Content-Length"] == "0"


def test_a_reply_larger_than_frame_max_arrives_whole(rabbitmq, gateway,
                                                     queue, responders):
    big = bytes(range(256)) * 4096 * 3         # 3 MiB over frames of 4 KiB
    responders(rabbitmq, queue.name, lambda p, b: (big, {}))
    cfg = rpc_config(rabbitmq, queue.name)
    cfg["amqp_def"][0]["frame_max"] = 4096
    gw = gateway(cfg, RPC)
    r = post(gw, b"x")
    assert r.status_code == 200
    assert len(r.content) == len(big) and r.content == big


def test_no_reply_is_504_then_the_late_reply_is_dropped_and_counted(
        rabbitmq, gateway, queue, responders):
    resp = responders(rabbitmq, queue.name, lambda p, b: None)
    gw = gateway(rpc_config(rabbitmq, queue.name, timeout=500), RPC)

    started = time.monotonic()
    r = post(gw, b"x")
    assert time.monotonic() - started >= 0.45
    body = json_error(r, 504, "reply_timeout")
    assert "500 ms" in body["message"]
    [(_, p, _)] = resp.seen
    assert r.headers["X-Correlation-Id"] == p.correlation_id
    t = wait_totals(gw, "rpc_timeouts", 1)
    assert (t["rpc_timeouts"], t["rpc_waiting"], t["rpc_late"]) == (1, 0, 0)

    resp.call(lambda: resp.reply(p, b"too late"))
    t = wait_totals(gw, "rpc_late", 1)
    assert (t["rpc_late"], t["rpc_replies"]) == (1, 0)
    assert "for no request waiting" in gw.ngx.error_log()

    # the connection and the consumer go on
    resp.handler = lambda p, b: (b"on time", {})
    r = post(gw, b"y")
    assert r.status_code == 200 and r.content == b"on time"


def test_replies_out_of_order_find_their_requests(rabbitmq, gateway, queue,
                                                  responders):
    n = 20
    held = []

    def handler(props, body):
        held.append((props, body))
        if len(held) == n:
            for p, b in reversed(held):
                resp.reply(p, b"reply to " + b, {
                    "headers": {"x-zmq-status": 230 + int(b)}})
        return None
    resp = responders(rabbitmq, queue.name, handler)
    gw = gateway(rpc_config(rabbitmq, queue.name), RPC)

    results = {}

    def one(i):
        results[i] = post(gw, str(i).encode())
    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for i in range(n):
        assert results[i].status_code == 230 + i
        assert results[i].content == b"reply to %d" % i


def test_the_reply_may_come_before_the_confirm(rabbitmq, gateway, queue,
                                               responders):
    # a persistent message on a durable queue is confirmed after the
    # broker's fsync; a fast responder's reply may come first: either way
    # the answer is the reply, once confirmed
    responders(rabbitmq, queue.name, lambda p, b: (b"fast:" + b, {}))
    gw = gateway(rpc_config(rabbitmq, queue.name, delivery_mode=2), RPC)
    for i in range(50):
        r = post(gw, b"%d" % i)
        assert r.status_code == 200 and r.content == b"fast:%d" % i
    t = gw.totals()
    assert t["confirmed"] == 50 and t["rpc_replies"] == 50


def test_2000_concurrent_requests_each_get_their_own_reply(
        rabbitmq, gateway, queue, responders):
    n = 2000

    def handler(props, body):
        return (json.dumps({"cid": props.correlation_id,
                            "got": body.decode()}).encode(),
                {"content_type": "application/json"})
    responders(rabbitmq, queue.name, handler)
    gw = gateway(rpc_config(rabbitmq, queue.name, timeout=120000), RPC)
    port = gw.ngx.port

    async def one(i):
        body = ("request-%d-%s" % (i, uuid.uuid4().hex)).encode()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /rpc HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(body) + body)
        await writer.drain()
        data = await reader.read()
        writer.close()
        head, _, payload = data.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        status = int(lines[0].split()[1])
        headers = dict(l.split(": ", 1) for l in lines[1:])
        return body, status, headers, payload

    async def run():
        return await asyncio.gather(*[one(i) for i in range(n)])

    out = asyncio.run(run())
    cids = set()
    for body, status, headers, payload in out:
        assert status == 200, (status, payload)
        doc = json.loads(payload)
        assert doc["got"] == body.decode()
        assert doc["cid"] == headers["X-Correlation-Id"]
        cids.add(doc["cid"])
    assert len(cids) == n
    t = wait_totals(gw, "rpc_replies", n)
    assert (t["rpc_requests"], t["rpc_replies"], t["rpc_waiting"],
            t["rpc_late"], t["rpc_bad"]) == (n, n, 0, 0, 0)


def test_client_leaving_before_the_reply_makes_it_late(rabbitmq, gateway,
                                                       queue, responders):
    resp = responders(rabbitmq, queue.name, lambda p, b: None)
    gw = gateway(rpc_config(rabbitmq, queue.name), RPC)
    with pytest.raises(requests.exceptions.Timeout):
        post(gw, b"x", timeout=1.0)
    resp.wait_seen(1)
    # the gateway noticed the client left and stopped waiting
    t = wait_totals(gw, "rpc_waiting", 0)
    assert t["rpc_waiting"] == 0 and t["rpc_timeouts"] == 0
    [(_, p, _)] = resp.seen
    resp.call(lambda: resp.reply(p, b"nobody listens"))
    t = wait_totals(gw, "rpc_late", 1)
    assert t["rpc_late"] == 1
    # the worker is alive and serves the next request
    resp.handler = lambda p, b: (b"still here", {})
    r = post(gw, b"y")
    assert r.status_code == 200 and r.content == b"still here"


def test_mandatory_with_no_queue_is_422(rabbitmq, gateway):
    gw = gateway(rpc_config(rabbitmq, "nobody.listens." + uuid.uuid4().hex),
                 RPC)
    r = post(gw, b"x")
    json_error(r, 422, "unroutable")
    t = gw.totals()
    assert t["returned"] == 1 and t["rpc_waiting"] == 0


def test_not_mandatory_with_no_queue_times_out(rabbitmq, gateway):
    gw = gateway(rpc_config(rabbitmq, "nobody.listens." + uuid.uuid4().hex,
                            mandatory=False, timeout=300), RPC)
    json_error(post(gw, b"x"), 504, "reply_timeout")


def test_the_gateway_sets_reply_to_and_correlation_id(rabbitmq, gateway,
                                                      queue, responders):
    responders(rabbitmq, queue.name)
    gw = gateway(rpc_config(rabbitmq, queue.name), RPC)
    for h in ("X-Reply-To", "X-Correlation-Id", "X-Message-Id"):
        r = post(gw, b"x", {h: "mine"})
        body = json_error(r, 400, "bad_header")
        assert h in body["message"]
    assert post(gw, b"x").status_code == 200


def test_connection_lost_while_waiting_is_502_at_once(rabbitmq, gateway,
                                                      queue, responders):
    resp = responders(rabbitmq, queue.name, lambda p, b: None)
    gw = gateway(rpc_config(rabbitmq, queue.name, timeout=60000), RPC)
    out = {}

    def one():
        out["r"] = post(gw, b"x", timeout=60)
    t = threading.Thread(target=one)
    t.start()
    resp.wait_seen(1)
    wait_totals(gw, "confirmed", 1)
    # the broker closes the gateway's connection: the reply can never come
    name = None
    for _ in range(50):
        res = rabbitmq.ctl("list_connections", "pid", "client_properties")
        for line in res.stdout.splitlines():
            if "ngx_zmq" in line:
                name = line.split("\t")[0]
        if name:
            break
        time.sleep(0.1)
    assert name, res.stdout
    started = time.monotonic()
    res = rabbitmq.ctl("close_connection", name, "test closes it")
    assert res.returncode == 0, (name, res.stdout, res.stderr)
    t.join(30)
    assert time.monotonic() - started < 10
    json_error(out["r"], 502, "reply_lost")
    assert gw.totals()["rpc_lost"] == 1
    gw.ngx.forget_problems()
    # it reconnects, and consumes replies again
    gw.wait_state("ready")
    resp.handler = lambda p, b: (b"back", {})
    deadline = time.monotonic() + 20
    while True:
        r = post(gw, b"y")
        if r.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert r.status_code == 200 and r.content == b"back"


def test_rest_channel_zmq_routing_key_applies_to_rpc(rabbitmq, gateway,
                                                     queue, responders):
    responders(rabbitmq, queue.name, lambda p, b: (b"routed", {}))
    gw = gateway(rpc_config(rabbitmq, "unused"),
                 "location = /rk { zmq_service svc;"
                 " zmq_routing_key $arg_q; }\n")
    r = post(gw, b"x", path="/rk?q=" + queue.name)
    assert r.status_code == 200 and r.content == b"routed"


# ----------------------------------------------------------------- invoke


def invoke_config(rabbitmq, queue_name, mode, **fields):
    svc = {"kind": "invoke", "queue": queue_name, "target": "tgt",
           "mode": mode}
    svc.update(fields)
    d = amqp_config(rabbitmq.port, {"inv": svc,
                                    "tgt": {"routing_key": "t"}})
    return d


INV = "location = /inv { zmq_service inv; }\n"


def check_invocation(m, p, body, mode, waits):
    assert m.exchange == "" and body == b'{"a": 1}'
    assert p.delivery_mode == 2
    assert UUID4.fullmatch(p.correlation_id)
    assert p.message_id == p.correlation_id
    assert p.content_type == "application/json"
    assert p.headers["x-zmq-invoke"] == "inv"
    assert p.headers["x-zmq-mode"] == mode
    ts = datetime.datetime.strptime(p.headers["x-zmq-req-ts"],
                                    "%Y-%m-%dT%H:%M:%S.%f")
    now = datetime.datetime.utcnow()
    assert abs((now - ts).total_seconds()) < 10
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}",
                        p.headers["x-zmq-req-ts"])
    if waits:
        assert p.reply_to.startswith("amq.rabbitmq.reply-to.")
    else:
        assert p.reply_to is None


@pytest.mark.parametrize("mode", ["sync", "sync_async"])
def test_invoke_sync_modes_wait_for_zmqds_reply(rabbitmq, gateway, queue,
                                                responders, mode):
    resp = responders(rabbitmq, queue.name, lambda p, b: (
        b'{"result": "done"}', {"content_type": "application/json",
                                "headers": {"x-zmq-status": 200}}))
    gw = gateway(invoke_config(rabbitmq, queue.name, mode), INV)
    r = post(gw, b'{"a": 1}', {"Content-Type": "application/json"},
             path="/inv")
    assert r.status_code == 200, r.text
    assert r.json() == {"result": "done"}
    [(m, p, body)] = resp.seen
    assert m.routing_key == queue.name
    check_invocation(m, p, body, mode, True)
    assert r.headers["X-Correlation-Id"] == p.correlation_id


def test_invoke_sync_async_relays_zmqds_202(rabbitmq, gateway, queue,
                                            responders):
    # zmqd answers 202 with the cid when the first attempt failed
    responders(rabbitmq, queue.name, lambda p, b: (
        json.dumps({"accepted": True, "cid": p.correlation_id}).encode(),
        {"content_type": "application/json",
         "headers": {"x-zmq-status": 202}}))
    gw = gateway(invoke_config(rabbitmq, queue.name, "sync_async"), INV)
    r = post(gw, b'{"a": 1}', {"Content-Type": "application/json"},
             path="/inv")
    assert r.status_code == 202
    assert r.json() == {"accepted": True,
                        "cid": r.headers["X-Correlation-Id"]}


def test_invoke_async_is_202_with_the_cid_once_confirmed(rabbitmq, gateway,
                                                         queue):
    gw = gateway(invoke_config(rabbitmq, queue.name, "async"), INV)
    r = post(gw, b'{"a": 1}', {"Content-Type": "application/json"},
             path="/inv")
    assert r.status_code == 202, r.text
    assert r.headers["Content-Type"] == "application/json"
    doc = r.json()
    assert doc == {"accepted": True, "cid": doc["cid"]}
    assert UUID4.fullmatch(doc["cid"])
    [(m, p, body)] = queue.drain(expect=1)
    check_invocation(m, p, body, "async", False)
    assert p.correlation_id == doc["cid"]
    t = gw.totals()
    assert t["confirmed"] == 1 and t["rpc_requests"] == 0


def test_invoke_sync_times_out_with_the_services_timeout(rabbitmq, gateway,
                                                         queue, responders):
    responders(rabbitmq, queue.name, lambda p, b: None)
    gw = gateway(invoke_config(rabbitmq, queue.name, "sync", timeout=400),
                 INV)
    body = json_error(post(gw, b"{}", path="/inv"), 504, "reply_timeout")
    assert "400 ms" in body["message"]


def test_invoke_to_a_queue_nobody_declared_is_422(rabbitmq, gateway):
    gw = gateway(invoke_config(rabbitmq, "zmq.nobody." + uuid.uuid4().hex,
                               "async"), INV)
    json_error(post(gw, b"{}", path="/inv"), 422, "unroutable")


def test_invoke_headers_are_the_gateways(rabbitmq, gateway, queue):
    gw = gateway(invoke_config(rabbitmq, queue.name, "async"), INV)
    for h in ("x-zmq-invoke", "X-Zmq-Mode", "x-zmq-req-ts"):
        r = post(gw, b"{}", {"X-Zmq-Header-" + h: "forged"}, path="/inv")
        json_error(r, 400, "bad_header")
    # the request's delivery mode does not make an invocation transient
    assert post(gw, b"{}", {"X-Delivery-Mode": "1"},
                path="/inv").status_code == 202
    [(m, p, body)] = queue.drain(expect=1)
    assert p.delivery_mode == 2


def test_other_kinds_answer_501_and_are_refused_by_zmq_service(
        rabbitmq, gateway, nginx_factory, tmp_path):
    cfg = amqp_config(rabbitmq.port, {"svc": {"kind": "fanout",
                                              "services": ["p"]},
                                      "p": {"routing_key": "x"}})
    del cfg["service"][0]["outconn"]
    cfg["rest_channel"] = [{"name": "fan", "url_path": "/api/fan",
                            "service": "svc"}]
    gw = gateway(cfg, "location /api/ { zmq_router; }\n")
    body = json_error(post(gw, b"x", path="/api/fan"), 501,
                      "service_kind_unsupported")
    assert "zmqd" in body["message"]

    path = tmp_path / "fan.json"
    path.write_text(json.dumps(cfg))
    ngx = nginx_factory(http="zmq_config file:%s;" % path, server=RPC)
    rc, out = ngx.test_config()
    assert rc != 0
    assert "runs only in zmqd" in out


# ------------------------------------------------------- admin API invoke

ADMIN = "location /zmq/admin/ { zmq_admin; zmq_admin_auth off; }\n"


def test_admin_invoke_runs_rpc_and_invoke_services(rabbitmq, gateway, queue,
                                                   responders):
    import jsonschema
    from test_admin_openapi import load_doc

    q2 = "t." + uuid.uuid4().hex[:12]
    queue.channel.queue_declare(q2, durable=True)
    try:
        resp = responders(rabbitmq, queue.name, lambda p, b: (
            b"admin got " + b, {"content_type": "text/plain",
                                "headers": {"x-zmq-status": 201}}))
        cfg = amqp_config(rabbitmq.port, {
            "svc": {"kind": "rpc", "routing_key": queue.name},
            "inv": {"kind": "invoke", "queue": q2, "target": "p",
                    "mode": "async"},
            "p": {"routing_key": "x"},
            "fan": {"kind": "fanout", "services": ["p"]}})
        del cfg["service"][3]["outconn"]
        gw = gateway(cfg, ADMIN)
        base = gw.url + "/zmq/admin/api/service/"

        r = requests.post(base + "svc/invoke", data=b"hi", timeout=30)
        assert r.status_code == 201, r.text
        assert r.content == b"admin got hi"
        assert r.headers["Content-Type"] == "text/plain"
        [(_, p, _)] = resp.seen
        assert r.headers["X-Correlation-Id"] == p.correlation_id

        r = requests.post(base + "inv/invoke", data=b"{}", timeout=30,
                          headers={"Content-Type": "application/json"})
        assert r.status_code == 202, r.text
        doc = load_doc()
        jsonschema.validate(r.json(), doc["components"]["schemas"][
            "InvokeAccepted"])
        m, props, body = queue.channel.basic_get(q2, auto_ack=True)
        assert props.correlation_id == r.json()["cid"]
        assert props.headers["x-zmq-invoke"] == "inv"
        assert props.headers["x-zmq-mode"] == "async"

        r = requests.post(base + "fan/invoke", data=b"x", timeout=30)
        json_error(r, 501, "not_invokable")
        assert "zmqd" in r.json()["message"]
    finally:
        queue.channel.queue_delete(q2)
