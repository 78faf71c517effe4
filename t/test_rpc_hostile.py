"""A hostile broker on the reply path of rpc services (issue 14): the fake
broker (t/fake_amqp.py) answers an rpc request's publish with frames a
real RabbitMQ would not send on demand: a reply body split into 1-byte
frames, a body longer than its header said, a half-read body then
channel.close or connection.close, basic.cancel of the reply consumer, a
reply for a correlation id nobody waits for, an empty body. Each time the
request gets a clear answer, the worker survives (run under the ASan
module too: make asan-nginx), and the connection is dropped only for what
breaks the protocol."""

import pika
import pytest
import requests

from fake_amqp import FakeAmqp, frame, method_frame
from test_amqp_hardening import config, wait_for, workers_die_loudly  # noqa: F401

RPC = "location = /rpc { zmq_service svc; }\n"
TAG = "ngx_zmq.rpc"


def header(props, size):
    return pika.frame.Header(1, size, props).marshal()


def deliver(cid, body, chunk=None, size=None, ctype="text/plain"):
    """basic.deliver to the reply consumer, its content header (body size
    `size`, default len(body)) and body frames of `chunk` bytes."""
    data = method_frame(1, pika.spec.Basic.Deliver(
        consumer_tag=TAG, delivery_tag=1, exchange="",
        routing_key="amq.rabbitmq.reply-to.x"))
    data += header(pika.spec.BasicProperties(correlation_id=cid,
                                             content_type=ctype),
                   len(body) if size is None else size)
    chunk = chunk or len(body) or 1
    for i in range(0, len(body), chunk):
        data += frame(3, 1, body[i:i + chunk])
    return data


def consume_ok():
    return method_frame(1, pika.spec.Basic.ConsumeOk(consumer_tag=TAG))


def ack(tag):
    return method_frame(1, pika.spec.Basic.Ack(delivery_tag=tag))


def run(gateway, answer, timeout=3000):
    """A gateway on a fake broker whose answer to the first rpc publish is
    answer(tag, cid) (raw bytes); later publishes get the usual ack. The
    HTTP answer to one request."""
    def on_publish(fake, tag, method, props, body, raw):
        if tag == 1:
            return consume_ok() + answer(tag, props.correlation_id)
        return None

    fake = FakeAmqp(on_publish=on_publish)
    svc = {"kind": "rpc", "routing_key": "q", "timeout": timeout}
    gw = gateway(config(fake.port, svc), RPC)
    gw.fake = fake
    try:
        r = requests.post(gw.url + "/rpc", data=b"req", timeout=30)
    except Exception:
        fake.close()
        raise
    return gw, r


def alive(gw):
    assert gw.status()["pid"] > 0


def test_a_body_in_one_byte_frames(gateway):
    body = b"0123456789" * 30
    gw, r = run(gateway, lambda t, c: ack(t) + deliver(c, body, chunk=1))
    try:
        assert r.status_code == 200, r.text
        assert r.content == body
        assert r.headers["Content-Type"] == "text/plain"
        alive(gw)
    finally:
        gw.fake.close()


def test_an_empty_reply(gateway):
    gw, r = run(gateway, lambda t, c: ack(t) + deliver(c, b""))
    try:
        assert r.status_code == 200, r.text
        assert r.content == b""
        alive(gw)
    finally:
        gw.fake.close()


def test_a_reply_before_the_confirm(gateway):
    gw, r = run(gateway, lambda t, c: deliver(c, b"early") + ack(t))
    try:
        assert (r.status_code, r.content) == (200, b"early"), r.text
    finally:
        gw.fake.close()


def test_a_body_longer_than_its_header_said(gateway):
    gw, r = run(gateway, lambda t, c: ack(t) + deliver(c, b"x" * 20, size=5))
    try:
        assert r.status_code == 502, r.text
        assert r.json()["error"] == "reply_lost"
        alive(gw)
    finally:
        gw.fake.close()


@pytest.mark.parametrize("close", [
    method_frame(1, pika.spec.Channel.Close(
        reply_code=406, reply_text="PRECONDITION_FAILED", class_id=0,
        method_id=0)),
    method_frame(0, pika.spec.Connection.Close(
        reply_code=320, reply_text="CONNECTION_FORCED", class_id=0,
        method_id=0)),
    method_frame(1, pika.spec.Basic.Cancel(consumer_tag=TAG)),
], ids=["channel.close", "connection.close", "basic.cancel"])
def test_a_half_read_body_then_the_channel_goes(gateway, close):
    """A header claiming 1000 bytes, 10 of them, then the channel or the
    connection goes: 502 reply_lost at once, not at the timeout; the half
    body is freed (ASan)."""
    gw, r = run(gateway, lambda t, c: ack(t) + deliver(c, b"y" * 10,
                                                       size=1000) + close,
                timeout=20000)
    try:
        assert r.status_code == 502, r.text
        assert r.json()["error"] == "reply_lost"
        assert r.elapsed.total_seconds() < 10
        alive(gw)
    finally:
        gw.fake.close()


def test_basic_cancel_while_waiting(gateway):
    """The broker cancels the reply consumer (no reply can come any more):
    the request is answered 502 reply_lost at once, not at its timeout."""
    gw, r = run(gateway, lambda t, c: ack(t) + method_frame(
        1, pika.spec.Basic.Cancel(consumer_tag=TAG)), timeout=20000)
    try:
        assert r.status_code == 502, r.text
        assert r.json()["error"] == "reply_lost"
        assert r.elapsed.total_seconds() < 10
        alive(gw)
    finally:
        gw.fake.close()


def test_a_reply_for_nobody_then_the_real_one(gateway):
    """A reply with another correlation id is late (dropped, counted), and
    does not answer the request; the real one does."""
    gw, r = run(gateway, lambda t, c: ack(t) + deliver("not-" + c, b"evil")
                + deliver(c, b"good"))
    try:
        assert (r.status_code, r.content) == (200, b"good"), r.text
        t = gw.totals()
        assert t["rpc_late"] == 1 and t["rpc_replies"] == 1, t
    finally:
        gw.fake.close()
