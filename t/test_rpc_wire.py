"""What an rpc request costs the broker: the messages the gateway publishes
for a request that awaits a reply carry no headers table of the gateway's
(no x-zmq-seq): a basic.return finds its request by correlation_id (the
gateway's fresh UUID), not by x-zmq-seq. Other mandatory messages (publish
services, async invocations) still carry x-zmq-seq. Real RabbitMQ and
NGINX; the other side is pika."""

import concurrent.futures
import uuid

import requests

from conftest import amqp_config
from test_rpc import (RPC, INV, invoke_config, json_error, post, responders,
                      rpc_config, wait_totals)

__all__ = ["responders"]                # the fixture, for pytest


def test_an_rpc_request_carries_no_headers_table(rabbitmq, gateway, queue,
                                                 responders):
    resp = responders(rabbitmq, queue.name, lambda p, b: (b"ok", {}))
    gw = gateway(rpc_config(rabbitmq, queue.name), RPC)
    assert post(gw, b"x").status_code == 200
    [(m, p, body)] = resp.seen
    assert p.headers is None
    assert p.reply_to.startswith("amq.rabbitmq.reply-to.")
    assert p.message_id == p.correlation_id


def test_an_rpc_requests_headers_are_only_the_ones_asked_for(
        rabbitmq, gateway, queue, responders):
    resp = responders(rabbitmq, queue.name, lambda p, b: (b"ok", {}))
    gw = gateway(rpc_config(rabbitmq, queue.name,
                            headers={"tenant": "acme"}), RPC)
    r = post(gw, b"x", {"X-Zmq-Header-Trace": "t1"})
    assert r.status_code == 200, r.text
    [(m, p, body)] = resp.seen
    assert p.headers == {"tenant": "acme", "Trace": "t1"}


def test_returns_find_their_requests_by_correlation_id(rabbitmq, gateway,
                                                       queue, responders):
    """Many requests in flight on a worker's connection, every other one
    unroutable: each unroutable one is 422, each routed one gets its
    reply; none waits for its timeout."""
    responders(rabbitmq, queue.name, lambda p, b: (b"re:" + b, {}))
    gw = gateway(rpc_config(rabbitmq, "unused", timeout=20000),
                 "location = /rk { zmq_service svc;"
                 " zmq_routing_key $arg_q; }\n")
    nobody = "nobody.listens." + uuid.uuid4().hex
    n = 300

    def one(i):
        q = queue.name if i % 2 else nobody
        body = b"request-%d" % i
        r = requests.post(gw.url + "/rk?q=" + q, data=body, timeout=30)
        return i, r

    with concurrent.futures.ThreadPoolExecutor(60) as ex:
        out = list(ex.map(one, range(n)))

    for i, r in out:
        if i % 2:
            assert r.status_code == 200, (i, r.status_code, r.text)
            assert r.content == b"re:request-%d" % i
        else:
            json_error(r, 422, "unroutable")
            assert r.headers["X-Correlation-Id"]   # named, once published

    t = wait_totals(gw, "rpc_replies", n // 2)
    assert t["returned"] == n // 2 and t["rpc_replies"] == n // 2
    assert t["rpc_waiting"] == 0 and t["rpc_timeouts"] == 0
    assert t["confirmed"] == n // 2


def test_a_sync_invocation_nobody_can_take_is_422(rabbitmq, gateway):
    gw = gateway(invoke_config(rabbitmq, "zmq.nobody." + uuid.uuid4().hex,
                               "sync", timeout=20000), INV)
    r = post(gw, b"{}", path="/inv")
    json_error(r, 422, "unroutable")
    t = gw.totals()
    assert t["returned"] == 1 and t["rpc_waiting"] == 0


def test_mandatory_messages_without_a_reply_keep_x_zmq_seq(rabbitmq,
                                                           gateway, queue):
    # an async invocation awaits no reply: its return is matched by the
    # header, as a publish service's
    gw = gateway(invoke_config(rabbitmq, queue.name, "async"), INV)
    assert post(gw, b"{}", path="/inv").status_code == 202
    [(m, p, body)] = queue.drain(expect=1)
    assert isinstance(p.headers["x-zmq-seq"], int)

    gw2 = gateway(amqp_config(rabbitmq.port,
                              {"svc": {"routing_key": queue.name,
                                       "mandatory": True}}),
                  "location = /pub { zmq_service svc; }\n")
    assert post(gw2, b"{}", path="/pub").status_code == 202
    [(m, p, body)] = queue.drain(expect=1)
    assert isinstance(p.headers["x-zmq-seq"], int)
