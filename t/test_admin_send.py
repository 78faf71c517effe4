"""The admin API's send and invoke (issue 12, item 3), against real Redis,
RabbitMQ and NGINX; pika reads what the broker got.

POST api/amqp_outconn/NAME/send publishes the message its JSON body
describes through the worker's own connection for that outgoing
connection and answers like a REST channel (202 once confirmed, 422
unroutable, 503 broker down); every bad field is a 400 naming it.
POST api/service/NAME/invoke publishes the request's body through a
publish service as a REST channel bound to it would; other kinds 501."""

import base64
import json
import socket
import threading
import time

import pytest
import requests

from conftest import amqp_config, free_port, register_secret
from security_helpers import zmqctl_apikey
from test_live_config import Live

ADMIN_PW = "admin-Send-Passw0rd-7719"

LOCATIONS = ("location /zmq/admin/ { zmq_admin; zmq_security admins; }\n"
             "location /zmq/view/ { zmq_admin; zmq_security viewers; }\n"
             "location /pub { zmq_service svc; }\n")


def config(rabbitmq, queue):
    register_secret(ADMIN_PW)
    d = amqp_config(
        rabbitmq.port,
        {"svc": {"routing_key": queue},
         "other": {"kind": "http", "outconn": "hook"}},
        outconn={"app_id": "gw-default", "delivery_mode": 2},
        extra={
            "security": [
                {"name": "admins", "type": "basic_auth", "username": "root",
                 "password": ADMIN_PW},
                {"name": "viewers", "type": "apikey", "role": "viewer"},
            ],
            "http_outconn": [{"name": "hook",
                              "url": "http://127.0.0.1:9/x"}],
        })
    # a definition whose broker is down (nothing listens on the port)
    d["amqp_def"].append({"name": "dead", "host": "127.0.0.1",
                          "port": free_port(), "username": "guest",
                          "password": "guest"})
    d["amqp_outconn"].append({"name": "down", "def": "dead"})
    return d


class Gw:
    def __init__(self, live, key):
        self.live = live
        self.url = live.url
        self.key = key

    def post(self, path, auth="admin", **kw):
        headers = kw.pop("headers", {})
        if auth == "admin":
            kw["auth"] = ("root", ADMIN_PW)
            base = "/zmq/admin/"
        else:
            headers["X-API-Key"] = self.key
            base = "/zmq/view/"
        with requests.Session() as s:
            return s.post(self.url + base + path, headers=headers,
                          timeout=15, **kw)

    def send(self, doc, outconn="out", **kw):
        return self.post("api/amqp_outconn/%s/send" % outconn, json=doc,
                         **kw)


@pytest.fixture
def gw(nginx_factory, zmqctl, redis_store, tmp_path, rabbitmq, queue):
    live = Live(nginx_factory, zmqctl, redis_store, tmp_path, LOCATIONS,
                workers=1)
    live.write(config(rabbitmq, queue.name))
    rc, key, out, err = zmqctl_apikey(zmqctl, "--id", "ops", "viewers")
    assert rc == 0, (out, err)
    version = int(redis_store.client().get("zmq:version"))
    live.start()
    live.wait_version(version)
    live.wait_ready("out")
    return Gw(live, key)


def json_error(r, status, code, *words):
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["Content-Type"] == "application/json"
    body = r.json()
    assert body["error"] == code, r.text
    for w in words:
        assert w in body["message"], (w, body["message"])
    return body


def one(queue):
    msgs = queue.drain(expect=1)
    assert len(msgs) == 1, msgs
    return msgs[0]


# ------------------------------------------------------------------ send


def test_send_publishes_every_property_and_header_pika_reads(gw, queue):
    props = {"content_type": "application/json",
             "content_encoding": "identity", "delivery_mode": 1,
             "priority": 7, "correlation_id": "corr-1",
             "reply_to": "replies", "expiration": "60000",
             "message_id": "msg-42", "timestamp": 1700000000,
             "type": "order.created", "user_id": "guest",
             "app_id": "admin-test"}
    headers = {"tenant": "acme", "attempt": 3, "urgent": True,
               "quiet": False}
    r = gw.send({"exchange": "", "routing_key": queue.name,
                 "body": "{\"n\": 1} \u00e9t\u00e9", "properties": props,
                 "headers": headers})
    assert r.status_code == 202, r.text
    assert r.json() == {"message_id": "msg-42", "confirmed": True}
    m, p, body = one(queue)
    assert body == "{\"n\": 1} \u00e9t\u00e9".encode()
    assert m.routing_key == queue.name and m.exchange == ""
    assert p.content_type == "application/json"
    assert p.content_encoding == "identity"
    assert p.delivery_mode == 1
    assert p.priority == 7
    assert p.correlation_id == "corr-1"
    assert p.reply_to == "replies"
    assert p.expiration == "60000"
    assert p.message_id == "msg-42"
    assert p.timestamp == 1700000000
    assert p.type == "order.created"
    assert p.user_id == "guest"
    assert p.app_id == "admin-test"
    assert p.headers["tenant"] == b"acme" or p.headers["tenant"] == "acme"
    assert p.headers["attempt"] == 3
    assert p.headers["urgent"] is True and p.headers["quiet"] is False
    # who sent it, as for a REST channel with a security definition
    assert "x-zmq-auth" in p.headers


def test_send_without_properties_takes_the_outconns_defaults(gw, queue):
    r = gw.send({"routing_key": queue.name, "body": "plain"})
    assert r.status_code == 202, r.text
    mid = r.json()["message_id"]
    m, p, body = one(queue)
    assert body == b"plain"
    assert p.message_id == mid and len(mid) == 36
    assert p.app_id == "gw-default" and p.delivery_mode == 2
    assert abs(p.timestamp - time.time()) < 60


def test_send_body_base64_round_trips_binary_bytes(gw, queue):
    data = bytes(range(256)) * 3 + b"\x00\xff"
    r = gw.send({"routing_key": queue.name,
                 "body_base64": base64.b64encode(data).decode()})
    assert r.status_code == 202, r.text
    assert one(queue)[2] == data
    r = gw.send({"routing_key": queue.name, "body": ""})
    assert r.status_code == 202, r.text
    assert one(queue)[2] == b""


def test_send_mandatory_to_an_unbound_routing_key_is_422(gw, queue):
    r = gw.send({"routing_key": "nobody.listens.here", "body": "x",
                 "mandatory": True})
    json_error(r, 422, "unroutable")
    # without mandatory the broker drops it and confirms
    r = gw.send({"routing_key": "nobody.listens.here", "body": "x"})
    assert r.status_code == 202, r.text
    assert queue.count() == 0


def test_send_through_an_outconn_whose_broker_is_down_is_503(gw):
    r = gw.send({"routing_key": "q", "body": "x"}, outconn="down")
    json_error(r, 503, "broker_unavailable")
    assert r.headers["Retry-After"]


def outconn_counters(gw, name="out"):
    (w,) = gw.live.status()["workers"]
    o = w["outconns"][name]
    return o["lost"], o["reconnects"]


def test_send_to_a_missing_exchange_is_404_and_rest_traffic_never_notices(
        gw, queue):
    """RabbitMQ answers a publish to an exchange that does not exist by
    closing the channel, which would fail every message in flight on the
    worker's shared connection. The send checks the exchange first on a
    connection of its own: while two clients keep publishing through a
    REST channel on the same (only) worker, each send to a missing
    exchange is 404 exchange_not_found with the broker's words, every REST
    publish is 202, pika finds every REST message, and the shared
    connection neither lost a message nor reconnected."""
    lost0, reconnects0 = outconn_counters(gw)
    stop = threading.Event()
    results = []

    def rest(tag):
        n = 0
        with requests.Session() as s:
            while not stop.is_set() or n < 20:
                body = "%s-%d" % (tag, n)
                r = s.post(gw.url + "/pub", data=body, timeout=15)
                results.append((r.status_code, body, r.text))
                n += 1

    threads = [threading.Thread(target=rest, args=(t,)) for t in "ab"]
    for t in threads:
        t.start()
    sends = []
    try:
        for i in range(8):
            sends.append(gw.send({"exchange": "no.such.exchange",
                                  "routing_key": queue.name,
                                  "body": "lost %d" % i}))
            time.sleep(0.05)
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    failed = [x for x in results if x[0] != 202]
    assert not failed, failed[:5]
    for r in sends:
        json_error(r, 404, "exchange_not_found",
                   "NOT_FOUND - no exchange 'no.such.exchange' in vhost '/'")
    bodies = sorted(b.encode() for _, b, _ in results)
    got = sorted(m[2] for m in queue.drain(expect=len(bodies)))
    assert got == bodies                    # none of the sends' bodies
    assert outconn_counters(gw) == (lost0, reconnects0)
    log = gw.live.ngx.error_log()
    assert "zmq amqp \"out\": connection to" not in log   # never closed
    assert "\"check:out\": probe of" in log and "404 NOT_FOUND" in log


def test_send_to_an_existing_named_exchange_is_checked_then_published(
        gw, rabbitmq, queue):
    conn = rabbitmq.connection()
    try:
        conn.channel().queue_bind(queue.name, "amq.direct",
                                  routing_key=queue.name)
    finally:
        conn.close()
    r = gw.send({"exchange": "amq.direct", "routing_key": queue.name,
                 "body": "via amq.direct"})
    assert r.status_code == 202, r.text
    m, p, body = one(queue)
    assert body == b"via amq.direct" and m.exchange == "amq.direct"
    assert p.message_id == r.json()["message_id"]
    assert "exchange \"amq.direct\" exists" in gw.live.ngx.error_log()


def test_send_to_a_named_exchange_through_a_down_broker_is_503(gw):
    """The check cannot reach the broker: answered as the publish would
    have been, 503 broker_unavailable with Retry-After, saying why."""
    r = gw.send({"exchange": "ex", "routing_key": "q", "body": "x"},
                outconn="down")
    json_error(r, 503, "broker_unavailable", "checking the exchange",
               "refused")
    assert r.headers["Retry-After"]


def test_a_client_that_leaves_mid_check_cancels_it(
        nginx_factory, zmqctl, redis_store, tmp_path, rabbitmq, queue):
    """The check's connection goes with the request: a broker that never
    answers would hold it until zmq_amqp_connect_timeout (2 s here)."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    live = Live(nginx_factory, zmqctl, redis_store, tmp_path, LOCATIONS,
                workers=1, http="zmq_amqp_connect_timeout 2000ms;")
    d = config(rabbitmq, queue.name)
    d["amqp_def"].append({"name": "mute", "host": "127.0.0.1",
                          "port": silent.getsockname()[1],
                          "username": "guest", "password": "guest"})
    d["amqp_outconn"].append({"name": "mute", "def": "mute"})
    version = live.write(d)
    live.start()
    live.wait_version(version)
    try:
        auth = base64.b64encode(("root:" + ADMIN_PW).encode()).decode()
        body = json.dumps({"exchange": "x", "routing_key": "q",
                           "body": "x"})
        c = socket.create_connection(("127.0.0.1", live.ngx.port))
        c.sendall(("POST /zmq/admin/api/amqp_outconn/mute/send HTTP/1.1\r\n"
                   "Host: x\r\nAuthorization: Basic %s\r\n"
                   "Content-Type: application/json\r\n"
                   "Content-Length: %d\r\n\r\n%s"
                   % (auth, len(body), body)).encode())
        time.sleep(0.3)             # the body is read, the check waits
        assert "\"check:mute\"" not in live.ngx.error_log()
        t0 = time.monotonic()
        c.close()
        while "\"check:mute\": probe cancelled" not in live.ngx.error_log():
            assert time.monotonic() - t0 < 1.0, live.ngx.error_log()[-2000:]
            time.sleep(0.02)
        # the worker is fine and sends again
        r = requests.post(live.url + "/zmq/admin/api/amqp_outconn/out/send",
                          auth=("root", ADMIN_PW), timeout=15,
                          json={"routing_key": queue.name, "body": "after"})
        assert r.status_code == 202, r.text
        assert one(queue)[2] == b"after"
    finally:
        silent.close()


@pytest.mark.parametrize("data, words", [
    (b"{not json", ("not JSON",)),
    (b"[1, 2]", ("JSON object",)),
    (b"", ("no body",)),
])
def test_send_of_a_body_that_is_not_a_json_object_is_400(gw, data, words):
    r = gw.post("api/amqp_outconn/out/send", data=data,
                headers={"Content-Type": "application/json"})
    json_error(r, 400, "bad_json", *words)


@pytest.mark.parametrize("doc, words", [
    ({"routing_key": "q", "body": "x", "colour": "red"},
     ("unknown field \"colour\"",)),
    ({"routing_key": "q", "body": "x", "body_base64": "eA=="},
     ("exactly one of body",)),
    ({"routing_key": "q"}, ("exactly one of body",)),
    ({"routing_key": "q", "body_base64": "not base64!"},
     ("body_base64", "base64")),
    ({"routing_key": "q", "body_base64": "eA==garbage"},
     ("body_base64",)),
    ({"routing_key": "q", "body": 5}, ("body must be a string",)),
    ({"routing_key": 7, "body": "x"}, ("routing_key",)),
    ({"exchange": ["x"], "body": "x"}, ("exchange",)),
    ({"exchange": "e" * 256, "body": "x"}, ("exchange", "255")),
    ({"routing_key": "q", "body": "x", "mandatory": "yes"},
     ("mandatory",)),
    ({"routing_key": "amq.rabbitmq.reply-to.x", "body": "x"},
     ("routing_key",)),
    ({"routing_key": "q", "body": "x", "properties": {"priority": 12}},
     ("properties.priority", "0-9")),
    ({"routing_key": "q", "body": "x",
      "properties": {"delivery_mode": 3}}, ("properties.delivery_mode",)),
    ({"routing_key": "q", "body": "x",
      "properties": {"expiration": "-5"}}, ("properties.expiration",)),
    ({"routing_key": "q", "body": "x",
      "properties": {"timestamp": "today"}}, ("properties.timestamp",)),
    ({"routing_key": "q", "body": "x",
      "properties": {"reply_to": "amq.rabbitmq.reply-to"}},
     ("properties.reply_to",)),
    ({"routing_key": "q", "body": "x",
      "properties": {"user_id": "mallory"}}, ("properties.user_id",)),
    ({"routing_key": "q", "body": "x",
      "properties": {"message_id": ""}}, ("properties.message_id",)),
    ({"routing_key": "q", "body": "x",
      "properties": {"type": "a\nb"}}, ("properties.type",)),
    ({"routing_key": "q", "body": "x",
      "properties": {"app_id": 5}}, ("properties.app_id", "string")),
    ({"routing_key": "q", "body": "x",
      "properties": {"colour": "red"}},
     ("unknown property \"colour\"",)),
    ({"routing_key": "q", "body": "x", "properties": "p"},
     ("properties must be an object",)),
    ({"routing_key": "q", "body": "x", "headers": {"n": {"a": 1}}},
     ("headers.n", "string, an integer or a boolean")),
    ({"routing_key": "q", "body": "x", "headers": {"n": [1]}},
     ("headers.n",)),
    ({"routing_key": "q", "body": "x", "headers": {"n": 1.5}},
     ("headers.n",)),
    ({"routing_key": "q", "body": "x", "headers": {"x-death": "1"}},
     ("headers.x-death",)),
    ({"routing_key": "q", "body": "x", "headers": {"CC": "a"}},
     ("headers.CC",)),
    ({"routing_key": "q", "body": "x", "headers": {"a": "1", "A": "2"}},
     ("given twice",)),
    ({"routing_key": "q", "body": "x", "headers": {"a b": "1"}},
     ("headers.a b",)),
    ({"routing_key": "q", "body": "x", "headers": "h"},
     ("headers must be an object",)),
])
def test_send_refuses_a_bad_field_naming_it(gw, queue, doc, words):
    json_error(gw.send(doc), 400, "bad_request", *words)
    assert queue.count() == 0


def test_send_to_an_unknown_outconn_is_404(gw):
    json_error(gw.send({"body": "x"}, outconn="nope"), 404, "not_found",
               "amqp_outconn 'nope' does not exist")


def test_a_viewer_may_not_send_or_invoke(gw, queue):
    json_error(gw.send({"routing_key": queue.name, "body": "x"},
                       auth="viewer"), 403, "forbidden")
    json_error(gw.post("api/service/svc/invoke", auth="viewer", data=b"x"),
               403, "forbidden")
    assert queue.count() == 0


def test_send_takes_only_post(gw):
    with requests.Session() as s:
        r = s.get(gw.url + "/zmq/admin/api/amqp_outconn/out/send",
                  auth=("root", ADMIN_PW), timeout=10)
    json_error(r, 405, "method_not_allowed")
    assert r.headers["Allow"] == "POST"


# ---------------------------------------------------------------- invoke


def test_invoke_of_a_publish_service_publishes_like_its_rest_channel(
        gw, queue):
    data = b"\x00raw bytes\xff of any type"
    hdrs = {"Content-Type": "application/octet-stream",
            "X-Correlation-Id": "c-9", "X-Zmq-Header-Tenant": "acme"}
    r = gw.post("api/service/svc/invoke", data=data, headers=hdrs)
    assert r.status_code == 202, r.text
    assert r.json()["confirmed"] is True
    mid = r.json()["message_id"]
    m, p, body = one(queue)
    assert body == data
    assert p.message_id == mid
    assert p.content_type == "application/octet-stream"
    assert p.correlation_id == "c-9"
    assert p.headers["Tenant"] in ("acme", b"acme")
    assert p.app_id == "gw-default" and p.delivery_mode == 2

    # the REST channel bound to the same service: the same message
    with requests.Session() as s:
        r2 = s.post(gw.url + "/pub", data=data, headers=hdrs, timeout=15)
    assert r2.status_code == 202, r2.text
    m2, p2, body2 = one(queue)
    assert body2 == body and m2.routing_key == m.routing_key
    for f in ("content_type", "correlation_id", "app_id", "delivery_mode"):
        assert getattr(p2, f) == getattr(p, f), f
    assert p2.headers["Tenant"] == p.headers["Tenant"]


def test_invoke_refuses_bad_headers_as_the_rest_channel_does(gw, queue):
    r = gw.post("api/service/svc/invoke", data=b"x",
                headers={"X-Priority": "high"})
    json_error(r, 400, "bad_header", "X-Priority")
    assert queue.count() == 0


def test_invoke_of_another_kind_of_service_is_501_not_invokable(gw):
    json_error(gw.post("api/service/other/invoke", data=b"x"), 501,
               "not_invokable", "invocation of http services is not built")


def test_invoke_of_an_unknown_service_is_404(gw):
    json_error(gw.post("api/service/nope/invoke", data=b"x"), 404,
               "not_found", "service 'nope' does not exist")
