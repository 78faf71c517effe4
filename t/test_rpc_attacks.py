"""Hostile replies to rpc requests (issue 14): a responder is anyone who
can publish to a reply queue, and what it sends is read as an attacker
could have written it. Each case: the request gets a clear answer (502
bad_reply or reply_too_large, or 504 when the reply names no request),
the worker survives, and the broker connection is not dropped (the other
requests on it are not the responder's to fail)."""

import decimal
import time

import pika
import pytest
import requests

from conftest import amqp_config
from test_rpc import Responder, json_error, wait_totals  # noqa: F401
from test_rpc import responders  # noqa: F401  (fixture)

RPC = "location = /rpc { zmq_service svc; }\n"
MIB = 1024 * 1024


def start(rabbitmq, gateway, queue, timeout=30000, frame_max=None):
    cfg = amqp_config(rabbitmq.port, {"svc": {
        "kind": "rpc", "routing_key": queue.name, "timeout": timeout}})
    if frame_max:
        cfg["amqp_def"][0]["frame_max"] = frame_max
    gw = gateway(cfg, RPC)
    gw.worker = gw.ngx.worker_pids()
    return gw


def post(gw, data=b"x", timeout=60):
    return requests.post(gw.url + "/rpc", data=data, timeout=timeout)


def still_fine(gw, resp):
    """The same worker, the same broker connection, and it still relays a
    good reply."""
    assert gw.ngx.worker_pids() == gw.worker
    resp.handler = lambda p, b: (b"fine", {"content_type": "text/plain"})
    r = post(gw, b"after")
    assert r.status_code == 200 and r.content == b"fine", r.text
    t = gw.totals()
    assert t["reconnects"] == 0 and t["lost"] == 0, t
    assert t["rpc_waiting"] == 0


def nested(depth):
    v = "bottom"
    for _ in range(depth):
        v = {"n": v}
    return v


BAD_STATUS = [
    ("a status below 100", 99),
    ("a 1xx status, which is no final HTTP answer", 150),
    ("a status of four digits", 1000),
    ("a negative status", -200),
    ("a string that is no number", "abc"),
    ("an empty string", ""),
    ("a string with a sign", "+200"),
    ("a string of four digits", "0200"),
    ("a huge integer", 2 ** 62),
    ("a boolean", True),
    ("a decimal", decimal.Decimal("200")),
    ("a table", {"code": 200}),
    ("an array", [200]),
]


@pytest.mark.parametrize("title,status", BAD_STATUS,
                         ids=[c[0] for c in BAD_STATUS])
def test_an_invalid_x_zmq_status_is_502_bad_reply(rabbitmq, gateway, queue,
                                                  responders, title, status):
    resp = responders(rabbitmq, queue.name, lambda p, b: (
        b"body", {"headers": {"x-zmq-status": status}}))
    gw = start(rabbitmq, gateway, queue)
    body = json_error(post(gw), 502, "bad_reply")
    assert "x-zmq-status" in body["message"]
    t = gw.totals()
    assert t["rpc_bad"] == 1 and t["rpc_replies"] == 0
    still_fine(gw, resp)


def test_a_reply_over_16_mib_is_502_reply_too_large(rabbitmq, gateway,
                                                    queue, responders):
    resp = responders(rabbitmq, queue.name, lambda p, b: (
        b"z" * (16 * MIB + 1), {}))
    gw = start(rabbitmq, gateway, queue)
    body = json_error(post(gw), 502, "reply_too_large")
    assert "16 MiB" in body["message"]
    assert gw.totals()["rpc_bad"] == 1
    still_fine(gw, resp)


def test_a_reply_of_exactly_16_mib_is_relayed(rabbitmq, gateway, queue,
                                              responders):
    big = bytes(range(256)) * (16 * MIB // 256)
    responders(rabbitmq, queue.name, lambda p, b: (big, {}))
    gw = start(rabbitmq, gateway, queue)
    r = post(gw)
    assert r.status_code == 200
    assert len(r.content) == 16 * MIB and r.content == big


def test_a_reply_without_correlation_id_is_dropped_and_counted(
        rabbitmq, gateway, queue, responders):
    # nothing says which request it answers: that request times out
    resp = responders(rabbitmq, queue.name, lambda p, b: (
        b"anonymous", {"correlation_id": None}))
    gw = start(rabbitmq, gateway, queue, timeout=500)
    json_error(post(gw), 504, "reply_timeout")
    t = wait_totals(gw, "rpc_bad", 1)
    assert t["rpc_bad"] == 1 and t["rpc_late"] == 0
    assert "a reply without a correlation_id" in gw.ngx.error_log()
    still_fine(gw, resp)


def test_a_reply_for_someone_else_is_late(rabbitmq, gateway, queue,
                                          responders):
    resp = responders(rabbitmq, queue.name, lambda p, b: (
        b"not yours", {"correlation_id": "0" * 36}))
    gw = start(rabbitmq, gateway, queue, timeout=500)
    json_error(post(gw), 504, "reply_timeout")
    assert wait_totals(gw, "rpc_late", 1)["rpc_late"] == 1
    still_fine(gw, resp)


def test_a_second_reply_to_one_request_is_late(rabbitmq, gateway, queue,
                                               responders):
    def twice(props, body):
        resp.reply(props, b"first")
        resp.reply(props, b"second")
    resp = responders(rabbitmq, queue.name, twice)
    gw = start(rabbitmq, gateway, queue)
    r = post(gw)
    assert r.status_code == 200 and r.content == b"first"
    t = wait_totals(gw, "rpc_late", 1)
    assert (t["rpc_replies"], t["rpc_late"]) == (1, 1)
    still_fine(gw, resp)


@pytest.mark.parametrize("depth", [15, 16, 40])
def test_a_deeply_nested_headers_table(rabbitmq, gateway, queue, responders,
                                       depth):
    # the walker takes tables nested 16 deep (the outer one included):
    # deeper is refused, the reply answered 502, the connection kept
    resp = responders(rabbitmq, queue.name, lambda p, b: (
        b"deep", {"headers": {"x-zmq-status": 201, "deep": nested(depth)}}))
    gw = start(rabbitmq, gateway, queue)
    r = post(gw)
    if depth < 16:
        assert r.status_code == 201 and r.content == b"deep"
    else:
        body = json_error(r, 502, "bad_reply")
        assert "nested" in body["message"]
    still_fine(gw, resp)


@pytest.mark.parametrize("ctype", [
    "text/plain\r\nSet-Cookie: stolen=1",
    "text/plain\nX-Evil: 1",
    "text/\x00plain",
    "caf\u00e9/latte",
])
def test_a_content_type_that_is_no_header_value_is_502(rabbitmq, gateway,
                                                       queue, responders,
                                                       ctype):
    resp = responders(rabbitmq, queue.name, lambda p, b: (
        b"x", {"content_type": ctype}))
    gw = start(rabbitmq, gateway, queue)
    r = post(gw)
    json_error(r, 502, "bad_reply")
    assert "Set-Cookie" not in r.headers and "X-Evil" not in r.headers
    still_fine(gw, resp)


def test_many_replies_nobody_waits_for_cost_nothing(rabbitmq, gateway,
                                                    queue, responders):
    # a flood of large replies for no request: read past, not buffered
    resp = responders(rabbitmq, queue.name, lambda p, b: None)
    gw = start(rabbitmq, gateway, queue, timeout=300, frame_max=4096)
    json_error(post(gw), 504, "reply_timeout")
    [(_, p, _)] = resp.seen

    def flood():
        for i in range(40):
            resp.ch.basic_publish("", p.reply_to, b"f" * MIB,
                                  pika.BasicProperties(
                                      correlation_id="flood-%d" % i))
    resp.call(flood)
    t = wait_totals(gw, "rpc_late", 40, timeout=60)
    assert t["rpc_late"] == 40
    still_fine(gw, resp)


def test_a_reply_while_its_client_leaves_mid_body(rabbitmq, gateway, queue,
                                                  responders):
    # the client gives up while a large reply is being read: the rest is
    # read past, and counted late
    resp = responders(rabbitmq, queue.name, lambda p, b: None)
    gw = start(rabbitmq, gateway, queue, frame_max=4096)
    with pytest.raises(requests.exceptions.Timeout):
        post(gw, timeout=0.5)
    resp.wait_seen(1)
    wait_totals(gw, "rpc_waiting", 0)
    [(_, p, _)] = resp.seen
    resp.call(lambda: resp.reply(p, b"q" * (8 * MIB)))
    assert wait_totals(gw, "rpc_late", 1)["rpc_late"] == 1
    still_fine(gw, resp)


def test_status_keeps_counting_after_abuse(rabbitmq, gateway, queue,
                                           responders):
    resp = responders(rabbitmq, queue.name, lambda p, b: (
        b"", {"headers": {"x-zmq-status": "abc"}}))
    gw = start(rabbitmq, gateway, queue)
    for _ in range(5):
        json_error(post(gw), 502, "bad_reply")
    time.sleep(0.1)
    t = gw.totals()
    assert (t["rpc_requests"], t["rpc_bad"], t["rpc_waiting"]) == (5, 5, 0)
    still_fine(gw, resp)
