"""Batch publishing (issue 20): a REST channel with "batch": true (or a
zmq_service location with zmq_batch on) takes application/x-ndjson, one
message per line, and answers 200 with one result per line once every
message is settled. Checked on the broker with pika."""

import json
import os
import signal
import socket
import threading
import time
import uuid

import pytest
import requests

from conftest import amqp_config, RabbitServer

ROUTER = "location /api/ { zmq_router; }\n"
NDJSON = {"Content-Type": "application/x-ndjson"}


def config(port, queue, channel=None, service=None, outconn=None):
    svc = {"routing_key": queue}
    svc.update(service or {})
    doc = amqp_config(port, {"svc": svc}, outconn=outconn)
    ch = {"name": "orders", "url_path": "/api/orders", "service": "svc",
          "batch": True}
    ch.update(channel or {})
    doc["rest_channel"] = [ch]
    return doc


def ndjson(values):
    return "".join(json.dumps(v) + "\n" for v in values).encode()


def post(gw, data, headers=None, path="/api/orders"):
    h = dict(NDJSON)
    h.update(headers or {})
    return requests.post(gw.url + path, data=data, headers=h, timeout=60)


def test_a_batch_of_one_line_is_one_message(rabbitmq, gateway, queue):
    gw = gateway(config(rabbitmq.port, queue.name), ROUTER)
    r = post(gw, b'{"order": 1}\n')
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"] == "application/json"
    [res] = r.json()["results"]
    assert res["status"] == 202 and "error" not in res
    [(m, p, body)] = queue.drain(expect=1)
    assert body == b'{"order": 1}'
    assert p.message_id == res["message_id"]
    assert p.content_type == "application/json"
    assert p.delivery_mode == 2


def test_a_batch_of_1000_lines_arrives_in_order(rabbitmq, gateway, queue):
    gw = gateway(config(rabbitmq.port, queue.name), ROUTER)
    values = [{"n": i, "pad": "x" * (i % 50)} for i in range(1000)]
    r = post(gw, ndjson(values))
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert len(results) == 1000
    assert all(x["status"] == 202 for x in results)
    assert len({x["message_id"] for x in results}) == 1000
    got = queue.drain(expect=1000)
    assert [json.loads(b) for _, _, b in got] == values
    assert [p.message_id for _, p, _ in got] == \
        [x["message_id"] for x in results]
    # one request, 1000 publishes, every one confirmed
    assert gw.totals()["confirmed"] == 1000


def test_crlf_lines_and_a_last_line_without_newline(rabbitmq, gateway,
                                                     queue):
    gw = gateway(config(rabbitmq.port, queue.name), ROUTER)
    r = post(gw, b'1\r\n"two"\r\n[3]')
    assert r.status_code == 200, r.text
    assert [x["status"] for x in r.json()["results"]] == [202] * 3
    assert [b for _, _, b in queue.drain(expect=3)] == [b"1", b'"two"',
                                                        b"[3]"]


def test_more_lines_than_max_batch_is_413_and_nothing_published(
        rabbitmq, gateway, queue):
    gw = gateway(config(rabbitmq.port, queue.name, {"max_batch": 5}),
                 ROUTER)
    r = post(gw, ndjson(range(6)))
    assert r.status_code == 413, r.text
    assert r.json()["error"] == "batch_too_large"
    assert "more than 5 lines" in r.json()["message"]
    assert queue.count() == 0
    r = post(gw, ndjson(range(5)))
    assert r.status_code == 200
    assert len(queue.drain(expect=5)) == 5


@pytest.mark.parametrize("bad,line,code", [
    (b'{"a": 1}\n{"a": 2}\n{"a": \n{"a": 4}\n', 3, "invalid_json"),
    (b'1\n\n2\n', 2, "invalid_json"),
    (b'1\n2 3\n', 2, "invalid_json"),
    (b'"\xff"\n', 1, "invalid_json"),
], ids=["truncated", "empty line", "two values", "not utf-8"])
def test_a_bad_line_is_400_naming_it_and_nothing_is_published(
        rabbitmq, gateway, queue, bad, line, code):
    gw = gateway(config(rabbitmq.port, queue.name), ROUTER)
    r = post(gw, bad)
    assert r.status_code == 400, r.text
    assert r.json()["error"] == code
    assert r.json()["message"].startswith("line %d: " % line), r.text
    # checked after the answer: nothing of the batch reached the queue
    time.sleep(0.3)
    assert queue.count() == 0


def test_an_empty_batch_is_400(rabbitmq, gateway, queue):
    gw = gateway(config(rabbitmq.port, queue.name), ROUTER)
    r = post(gw, b"")
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_batch"


def test_ndjson_to_a_channel_without_batch_is_one_message(rabbitmq, gateway,
                                                         queue):
    gw = gateway(config(rabbitmq.port, queue.name, {"batch": False}),
                 ROUTER)
    r = post(gw, b"1\n2\n")
    assert r.status_code == 202, r.text
    [(m, p, body)] = queue.drain(expect=1)
    assert body == b"1\n2\n"
    assert p.content_type == "application/x-ndjson"


def test_a_batch_refuses_x_message_id(rabbitmq, gateway, queue):
    gw = gateway(config(rabbitmq.port, queue.name), ROUTER)
    r = post(gw, b"1\n", {"X-Message-Id": "m"})
    assert r.status_code == 400
    assert r.json()["error"] == "bad_header"
    assert queue.count() == 0


def test_request_headers_apply_to_every_message(rabbitmq, gateway, queue):
    gw = gateway(config(rabbitmq.port, queue.name), ROUTER)
    r = post(gw, b"1\n2\n", {"X-Zmq-Header-Tenant": "acme",
                             "X-Correlation-Id": "c-9",
                             "X-Delivery-Mode": "transient"})
    assert r.status_code == 200
    got = queue.drain(expect=2)
    for _, p, _ in got:
        assert p.headers == {"Tenant": "acme"}
        assert p.correlation_id == "c-9"
        assert p.delivery_mode == 1


# ------------------------------------------------------------- envelope

ENV_SVC = ("location /env { zmq_service svc; zmq_batch on; "
           "zmq_batch_envelope on; zmq_max_batch 10; }\n")


def test_envelope_body_message_id_and_headers(rabbitmq, gateway, queue):
    gw = gateway(amqp_config(rabbitmq.port, {"svc": {
        "routing_key": queue.name, "headers": {"from": "svc"}}}), ENV_SVC)
    lines = [
        {"body": "plain text \u00e9", "message_id": "m-1",
         "headers": {"kind": "text"}},
        {"body": {"b": [1, 2]}},
        {"body": 42, "headers": {"a": "1", "b": "2"}},
    ]
    r = post(gw, ndjson(lines), {"X-Zmq-Header-Req": "r"}, path="/env")
    assert r.status_code == 200, r.text
    res = r.json()["results"]
    assert [x["status"] for x in res] == [202] * 3
    assert res[0]["message_id"] == "m-1"
    got = queue.drain(expect=3)
    assert got[0][2] == "plain text \u00e9".encode()
    assert got[0][1].message_id == "m-1"
    assert got[0][1].headers == {"from": "svc", "Req": "r", "kind": "text"}
    assert json.loads(got[1][2]) == {"b": [1, 2]}
    assert got[1][1].headers == {"from": "svc", "Req": "r"}
    assert got[1][1].message_id == res[1]["message_id"]
    assert got[2][2] == b"42"
    assert got[2][1].headers == {"from": "svc", "Req": "r", "a": "1",
                                 "b": "2"}


@pytest.mark.parametrize("line,code,words", [
    ({"body": 1, "extra": 2}, "invalid_envelope", "unknown key 'extra'"),
    ({"message_id": "x"}, "invalid_envelope", '"body" is required'),
    ([1], "invalid_envelope", "must be an object"),
    ({"body": 1, "message_id": ""}, "bad_header", "message_id"),
    ({"body": 1, "message_id": 7}, "invalid_envelope", "message_id"),
    ({"body": 1, "headers": {"CC": "x"}}, "bad_header", "headers CC"),
    ({"body": 1, "headers": {"x-death": "x"}}, "bad_header", "x-death"),
    ({"body": 1, "headers": {"a": 1}}, "bad_header", "must be a string"),
    ({"body": 1, "headers": {"from": "me"}}, "bad_header", "sets this"),
    ({"body": 1, "headers": []}, "invalid_envelope", "headers"),
], ids=["unknown key", "no body", "not an object", "empty id", "id number",
        "CC", "x- header", "header not string", "service header",
        "headers not object"])
def test_bad_envelopes_are_400_naming_the_line(rabbitmq, gateway, queue,
                                               line, code, words):
    gw = gateway(amqp_config(rabbitmq.port, {"svc": {
        "routing_key": queue.name, "headers": {"from": "svc"}}}), ENV_SVC)
    r = post(gw, ndjson([{"body": "ok"}, line]), path="/env")
    assert r.status_code == 400, r.text
    assert r.json()["error"] == code
    msg = r.json()["message"]
    assert msg.startswith("line 2: ") and words in msg, msg
    time.sleep(0.2)
    assert queue.count() == 0


def test_zmq_max_batch_applies_to_the_location(rabbitmq, gateway, queue):
    gw = gateway(amqp_config(rabbitmq.port, {"svc": {
        "routing_key": queue.name}}), ENV_SVC)
    r = post(gw, ndjson([{"body": i} for i in range(11)]), path="/env")
    assert r.status_code == 413


# ------------------------------------------------------ per-line outcomes

def test_mandatory_mix_of_routable_and_unroutable_lines(rabbitmq, gateway,
                                                        queue):
    """Through amq.headers, a line's envelope headers decide whether a
    queue takes it: routable lines 202 and in the queue, the others 422."""
    queue.channel.queue_bind(queue.name, "amq.headers",
                             arguments={"x-match": "all", "route": "yes"})
    doc = config(rabbitmq.port, "", {"batch_envelope": True},
                 {"exchange": "amq.headers", "mandatory": True,
                  "routing_key": ""})
    gw = gateway(doc, ROUTER)
    routes = ["yes", "no", "yes", "yes", "no", "no", "yes"]
    lines = [{"body": {"i": i}, "message_id": "m-%d" % i,
              "headers": {"route": v}} for i, v in enumerate(routes)]
    r = post(gw, ndjson(lines))
    assert r.status_code == 200, r.text
    res = r.json()["results"]
    assert [x["message_id"] for x in res] == ["m-%d" % i
                                              for i in range(len(routes))]
    assert [x["status"] for x in res] == [202 if v == "yes" else 422
                                          for v in routes]
    assert all(x["error"] == "unroutable" for x in res if x["status"] == 422)
    got = queue.drain(expect=4)
    time.sleep(0.2)
    got += queue.drain()
    assert sorted(p.message_id for _, p, _ in got) == \
        ["m-0", "m-2", "m-3", "m-6"]


def test_lines_past_max_inflight_are_503_not_published(rabbitmq, gateway,
                                                       queue):
    gw = gateway(config(rabbitmq.port, queue.name,
                        outconn={"max_inflight": 10}), ROUTER)
    r = post(gw, ndjson(range(25)))
    assert r.status_code == 200, r.text
    res = r.json()["results"]
    assert [x["status"] for x in res] == [202] * 10 + [503] * 15
    assert all(x["error"] == "overloaded" for x in res[10:])
    assert r.headers["Retry-After"] == "1"
    got = queue.drain(expect=10)
    time.sleep(0.2)
    got += queue.drain()
    assert [b for _, _, b in got] == [str(i).encode() for i in range(10)]
    # the room is back once they are confirmed
    r = post(gw, ndjson(range(10)))
    assert [x["status"] for x in r.json()["results"]] == [202] * 10


def test_a_client_that_leaves_mid_batch_leaves_nothing_behind(
        rabbitmq, gateway, queue):
    gw = gateway(config(rabbitmq.port, queue.name), ROUTER)
    body = ndjson(range(1000))
    for _ in range(5):
        s = socket.create_connection(("127.0.0.1", gw.ngx.port))
        s.sendall(b"POST /api/orders HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Type: application/x-ndjson\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(body) + body)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                     b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.close()                 # a reset, before the confirms come
    # their messages settle without anyone to answer
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        t = gw.totals()
        if t["published"] >= 1000 and t["inflight"] == 0:
            break
        time.sleep(0.05)
    assert t["inflight"] == 0 and t["published"] >= 1000, t
    # the worker goes on: a new batch is answered whole
    r = post(gw, ndjson(range(3)))
    assert r.status_code == 200
    assert [x["status"] for x in r.json()["results"]] == [202] * 3


def test_a_batch_to_an_rpc_service_is_501(rabbitmq, gateway, queue):
    gw = gateway(config(rabbitmq.port, queue.name,
                        service={"kind": "rpc", "timeout": 1}), ROUTER)
    r = post(gw, b"1\n")
    assert r.status_code == 501
    assert r.json()["error"] == "batch_unsupported"


# ------------------------------------------------- broker lost mid-batch

@pytest.fixture
def own_rabbit(tmp_path):
    server = RabbitServer(str(tmp_path / "rabbit"))
    yield server
    server.close()


def test_broker_killed_mid_batch_every_202_line_is_in_the_queue(
        own_rabbit, gateway):
    name = "t.kill." + uuid.uuid4().hex[:8]
    conn = own_rabbit.connection()
    conn.channel().queue_declare(name, durable=True)
    conn.close()
    n = 20000
    doc = config(own_rabbit.port, name, {"max_batch": n,
                                         "max_body": 8 << 20},
                 outconn={"max_inflight": n})
    gw = gateway(doc, ROUTER, http="client_max_body_size 16m; "
                                   "zmq_max_body 16m; "
                                   "client_body_buffer_size 16m;")
    body = ndjson([{"n": i, "pad": "p" * 200} for i in range(n)])
    out = {}

    def send():
        out["r"] = post(gw, body)

    t = threading.Thread(target=send)
    t.start()
    # kill the node once the broker has confirmed some of the batch
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if gw.totals().get("confirmed", 0) > 0:
            break
        time.sleep(0.002)
    os.kill(own_rabbit.beam_pid(), signal.SIGKILL)
    t.join(120)
    r = out["r"]
    assert r.status_code == 200, r.text
    res = r.json()["results"]
    assert len(res) == n
    ok = {x["message_id"] for x in res if x["status"] == 202}
    failed = [x for x in res if x["status"] != 202]
    assert all(x["status"] in (503, 504) for x in failed)
    assert all(x["error"] in ("broker_unavailable", "confirm_timeout")
               for x in failed)
    assert failed, "the node died after the whole batch was confirmed"
    assert r.headers.get("Retry-After")

    own_rabbit.stop()
    own_rabbit.start()
    conn = own_rabbit.connection()
    ch = conn.channel()
    seen = set()
    while True:
        m, p, b = ch.basic_get(name, auto_ack=True)
        if m is None:
            break
        seen.add(p.message_id)
    conn.close()
    assert ok <= seen, "%d lines answered 202 are not in the queue" % len(
        ok - seen)
