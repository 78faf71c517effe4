"""Idempotency keys: whose key an outcome may replace, and how long the
in-flight marker lasts (issue 20).

The in-flight marker is "P<sha256><owner>", the owner 32 random hex digits
of the request's. Its outcome replaces it only while the key still holds
that very marker (a compare-and-set in Redis): a publish settled after its
marker expired, and another request took the key, leaves that request's
marker alone. The marker lasts as long as the request may wait: the
confirm (60 s when zmq_confirm_timeout is 0, no limit) plus an rpc
service's reply timeout, plus 30 s.

The broker's confirm is held by the TCP proxy of test_idempotency_leave;
Redis is read with redis-py, the queue with pika.
"""

import hashlib
import re
import time

import pika

from conftest import amqp_config
from test_idempotency_leave import (BODY, KEY, channel_config, post,  # noqa
                                    post_in_thread, proxy, ready_count,
                                    wait_for)

ROUTER = "location /api/ { zmq_router; }\n"
HASH = hashlib.sha256(b"POST /api/orders\n" + BODY).hexdigest()


def marker(c):
    v = c.get(KEY)
    return v.decode() if v is not None and v.startswith(b"P") else None


def test_the_marker_names_its_owner(rabbitmq, gateway, queue, redis_store,
                                    proxy):
    gw = gateway(channel_config(proxy, queue), ROUTER,
                 http="zmq_idempotency_redis %s;" % redis_store.url)
    c = redis_store.client()
    proxy.hold()
    t, out = post_in_thread(gw)
    try:
        m = wait_for(lambda: marker(c))
        assert re.fullmatch("P%s[0-9a-f]{32}" % HASH, m), m
    finally:
        proxy.release()
        t.join(30)
    assert out["r"].status_code == 202
    # the outcome replaced its own marker (stored as the answer goes out:
    # Redis has it shortly)
    wait_for(lambda: (c.get(KEY) or b"").startswith(
        b"D" + HASH.encode() + b"202"))


def test_a_late_outcome_leaves_another_requests_key_alone(
        rabbitmq, gateway, queue, redis_store, proxy):
    """The marker of the first request is replaced (as when it expired and
    another request took the key); the first one's confirm comes after:
    its outcome is not kept, the other request's marker stays."""
    gw = gateway(channel_config(proxy, queue), ROUTER,
                 http="zmq_idempotency_redis %s;" % redis_store.url)
    c = redis_store.client()
    proxy.hold()
    t, out = post_in_thread(gw)
    other = "P" + HASH + "f" * 32
    try:
        wait_for(lambda: marker(c))
        wait_for(lambda: ready_count(queue) == 1)
        c.set(KEY, other, ex=300)
    finally:
        proxy.release()
        t.join(30)
    # the client still gets the broker's answer
    assert out["r"].status_code == 202, out["r"].text
    wait_for(lambda: "in-flight marker had expired" in gw.ngx.error_log())
    assert c.get(KEY).decode() == other
    # and the key is still in flight for everybody else
    r = post(gw)
    assert r.status_code == 409 and r.json()["error"] == "in_progress"
    assert ready_count(queue) == 1


def test_a_5xx_deletes_only_its_own_marker(rabbitmq, gateway, queue,
                                           redis_store, proxy):
    """The confirm never comes in time (504): the key is deleted when it
    holds this request's marker, left alone when it holds another's."""
    doc = channel_config(proxy, queue)
    gw = gateway(doc, "zmq_confirm_timeout 1s;\n" + ROUTER,
                 http="zmq_idempotency_redis %s;" % redis_store.url)
    c = redis_store.client()
    proxy.hold()
    try:
        r = post(gw, key="own")
        assert r.status_code == 504, r.text
        own_key = KEY.replace("k-1", "own")
        wait_for(lambda: "outcome was not kept" in gw.ngx.error_log()
                 or not c.exists(own_key))
        assert not c.exists(own_key)

        t, out = post_in_thread(gw)
        wait_for(lambda: marker(c))
        other = "P" + HASH + "e" * 32
        c.set(KEY, other, ex=300)
        t.join(30)
        assert out["r"].status_code == 504
        wait_for(lambda: "in-flight marker had expired" in gw.ngx.error_log())
        assert c.get(KEY).decode() == other
    finally:
        proxy.release()


def test_the_marker_outlasts_an_rpc_services_reply_timeout(
        rabbitmq, gateway, queue, redis_store):
    """confirm 10 s + reply 60 s + 30 s: the marker's TTL is 100 s, where
    the confirm alone would give 40 s and let a retry publish while the
    first request still waits for its reply."""
    doc = amqp_config(rabbitmq.port, {"svc": {
        "kind": "rpc", "routing_key": queue.name, "timeout": 60000}})
    doc["rest_channel"] = [{"name": "orders", "url_path": "/api/orders",
                            "service": "svc", "idempotency": True}]
    gw = gateway(doc, ROUTER,
                 http="zmq_idempotency_redis %s;" % redis_store.url)
    c = redis_store.client()
    t, out = post_in_thread(gw)
    conn = rabbitmq.connection()
    try:
        ch = conn.channel()
        deadline = time.monotonic() + 10
        m = None
        while m is None and time.monotonic() < deadline:
            m, props, body = ch.basic_get(queue.name, auto_ack=True)
            if m is None:
                time.sleep(0.05)
        assert m is not None and body == BODY
        assert marker(c)
        assert 90 < c.ttl(KEY) <= 100, c.ttl(KEY)
        # a retry meanwhile is in progress, not a second publish
        r = post(gw)
        assert r.status_code == 409
        ch.basic_publish("", props.reply_to, b"done", pika.BasicProperties(
            correlation_id=props.correlation_id, content_type="text/plain"))
    finally:
        t.join(30)
        conn.close()
    assert out["r"].status_code == 200 and out["r"].content == b"done"
    r = post(gw)
    assert r.status_code == 200 and r.content == b"done"
    assert r.headers["Idempotent-Replayed"] == "true"
    assert queue.count() == 0


def test_no_confirm_limit_gives_the_marker_90_seconds(
        rabbitmq, gateway, queue, redis_store, proxy):
    gw = gateway(channel_config(proxy, queue),
                 "zmq_confirm_timeout 0;\n" + ROUTER,
                 http="zmq_idempotency_redis %s;" % redis_store.url)
    c = redis_store.client()
    proxy.hold()
    t, out = post_in_thread(gw)
    try:
        wait_for(lambda: marker(c))
        assert 80 < c.ttl(KEY) <= 90, c.ttl(KEY)
    finally:
        proxy.release()
        t.join(30)
    assert out["r"].status_code == 202
