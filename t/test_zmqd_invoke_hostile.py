"""Hostile invocations against zmqd (issue 14): a publisher of the
invocation queue controls message_id, correlation_id, reply_to and the
x-zmq-* headers; none of them may break the JSON zmqd writes, make an
invocation loop forever, or make zmqd publish into another queue."""

import json
import time
import uuid

import pika

from test_zmqd import assert_acked, wait_for
from test_zmqd_invoke import (Gateway, callbacks, gw, invoke_config, iq,  # noqa: F401
                              now_ts, status, web)
from zmqd_helpers import zmqd  # noqa: F401


def publish(gw, queue, body, props):
    gw.ch.basic_publish("", queue, body, props, mandatory=True)


def test_cid_with_quotes_gives_valid_json(rabbitmq, redis_store, zmqd, web,
                                          gw, iq):
    """A message_id with '"' and '\\' (the cid) is escaped in the 202
    answer of sync_async, not pasted into it."""
    web.paths["/target"] = lambda b: (503, "text/plain", b"down")
    z = zmqd(invoke_config(rabbitmq, web, iq, mode="sync_async", repeats=2,
                           seconds=0))
    z.wait_log("consuming queue '%s'" % iq)
    cid = 'a"b\\c","x":"y'
    publish(gw, iq, b"x", pika.BasicProperties(
        reply_to="amq.rabbitmq.reply-to", correlation_id=cid,
        message_id=cid, delivery_mode=2,
        headers={"x-zmq-invoke": "inv", "x-zmq-mode": "sync_async",
                 "x-zmq-req-ts": now_ts()}))
    props, body = gw.reply(cid)
    assert status(props) == 202
    assert json.loads(body) == {"accepted": True, "cid": cid}
    wait_for(lambda: callbacks(web), 20)
    assert callbacks(web)[0]["cid"] == cid


def test_binary_req_ts_and_cid_do_not_loop(rabbitmq, redis_store, zmqd, web,
                                           gw, iq):
    """x-zmq-req-ts as a byte array of invalid UTF-8: the callback still
    gets its document (the bytes replaced), once; the target is not run
    again and again. (A message_id of invalid UTF-8 is covered by the same
    code; it is not used here because zmqd's log keeps such bytes as they
    are and the fixture reads the log as UTF-8.)"""
    web.paths["/target"] = lambda b: (200, "text/plain", b"ok")
    z = zmqd(invoke_config(rabbitmq, web, iq, mode="async"))
    z.wait_log("consuming queue '%s'" % iq)
    publish(gw, iq, b"x", pika.BasicProperties(
        delivery_mode=2, message_id="m\u00e9\\",
        headers={"x-zmq-invoke": "inv", "x-zmq-mode": "async",
                 "x-zmq-req-ts": b"\xff\xfe\x80"}))
    wait_for(lambda: callbacks(web), 20)
    time.sleep(3)
    assert len(web.seen["/target"]) == 1, len(web.seen["/target"])
    [doc] = callbacks(web)
    assert doc["ok"] is True and doc["response"] == "ok"
    assert isinstance(doc["req_ts_utc"], (str, type(None)))
    assert_acked(rabbitmq, iq)


def test_reply_to_a_real_queue_is_not_written(rabbitmq, redis_store, zmqd,
                                              web, gw, iq):
    """reply_to naming another queue: zmqd runs the invocation but never
    publishes its reply there (an invocation replies only to RabbitMQ's
    direct reply-to), so a publisher of the invocation queue cannot use
    zmqd to write into a queue it may not write itself."""
    web.paths["/target"] = lambda b: (200, "application/json",
                                      b'{"injected": true}')
    victim = "victim." + uuid.uuid4().hex[:8]
    conn = rabbitmq.connection()
    ch = conn.channel()
    ch.queue_declare(victim)
    try:
        z = zmqd(invoke_config(rabbitmq, web, iq, mode="sync"))
        z.wait_log("consuming queue '%s'" % iq)
        cid = str(uuid.uuid4())
        publish(gw, iq, b"x", pika.BasicProperties(
            reply_to=victim, correlation_id=cid, message_id=cid,
            delivery_mode=2,
            headers={"x-zmq-invoke": "inv", "x-zmq-mode": "sync",
                     "x-zmq-req-ts": now_ts()}))
        wait_for(lambda: web.seen.get("/target"), 20)
        z.wait_log("not amq.rabbitmq.reply-to")
        assert_acked(rabbitmq, iq)
        assert ch.queue_declare(victim, passive=True) \
            .method.message_count == 0
    finally:
        ch.queue_delete(victim)
        conn.close()


def test_missing_and_odd_headers(rabbitmq, redis_store, zmqd, web, gw, iq):
    """x-zmq-invoke as an integer, x-zmq-mode as a table, no x-zmq-req-ts,
    no message_id nor correlation_id: 404 unknown_service for the first;
    the second runs in the service's mode with req_ts_utc null."""
    web.paths["/target"] = lambda b: (200, "text/plain", b"fine")
    z = zmqd(invoke_config(rabbitmq, web, iq, mode="async"))
    z.wait_log("consuming queue '%s'" % iq)
    cid = str(uuid.uuid4())
    publish(gw, iq, b"x", pika.BasicProperties(
        reply_to="amq.rabbitmq.reply-to", correlation_id=cid,
        delivery_mode=2, headers={"x-zmq-invoke": 7}))
    props, body = gw.reply(cid)
    assert status(props) == 404
    assert json.loads(body)["error"] == "unknown_service"
    publish(gw, iq, b"y", pika.BasicProperties(
        delivery_mode=2, headers={"x-zmq-invoke": "inv",
                                  "x-zmq-mode": {"a": 1}}))
    wait_for(lambda: callbacks(web), 20)
    [doc] = callbacks(web)
    assert doc["req_ts_utc"] is None and doc["response"] == "fine"
    assert doc["cid"].startswith("tag ")
    assert_acked(rabbitmq, iq)
