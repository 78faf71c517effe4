"""Idempotency keys against a hostile or odd Redis (issue 20): values
another process wrote under a key, a key of another type, a Redis that
refuses EVAL (the outcome's compare-and-set), a confirm timeout too long
for a Redis TTL. The worker never crashes, the client always gets an
answer, and nothing is published twice. Checked with redis-py and pika.
"""

import hashlib
import threading
import time

import pytest
import requests

from conftest import register_url_secret
from test_idempotency_leave import (BODY, KEY, channel_config, proxy,  # noqa
                                    wait_for)

ROUTER = "location /api/ { zmq_router; }\n"
HASH = hashlib.sha256(b"POST /api/orders\n" + BODY).hexdigest().encode()


def post(gw, key="k-1"):
    return requests.post(gw.url + "/api/orders", data=BODY,
                         headers={"Idempotency-Key": key}, timeout=30)


def start(gateway, proxy, queue, redis_url, locations=""):
    return gateway(channel_config(proxy, queue), ROUTER + locations,
                   http="zmq_idempotency_redis %s;" % redis_url)


@pytest.mark.parametrize("value,status,error", [
    (b"", 503, "idempotency_unavailable"),
    (b"P", 503, "idempotency_unavailable"),
    (b"D", 503, "idempotency_unavailable"),
    (b"X" * 300, 503, "idempotency_unavailable"),
    (b"\x00" * 97, 503, "idempotency_unavailable"),
    (b"P" + b"\x00\xff" * 48, 422, "idempotency_mismatch"),
    (b"P" + HASH[:63], 503, "idempotency_unavailable"),
    (b"P" + HASH, 409, "in_progress"),            # a marker of old workers
    (b"P" + HASH + b"\xff" * 3, 409, "in_progress"),
    (b"P" + HASH + b"0" * 4000, 409, "in_progress"),
    (b"D" + HASH, 503, "idempotency_unavailable"),
    (b"D" + HASH + b"20", 503, "idempotency_unavailable"),
    (b"D" + HASH + b"+20{}", 503, "idempotency_unavailable"),
    (b"D" + HASH + b"-20{}", 503, "idempotency_unavailable"),
    (b"D" + HASH + b"099{}", 503, "idempotency_unavailable"),
    (b"D" + HASH + b"503{}", 503, "idempotency_unavailable"),
    (b"D" + HASH + b"999{}", 503, "idempotency_unavailable"),
    (b"D" + HASH + b"2\x0000{}", 503, "idempotency_unavailable"),
])
def test_a_foreign_value_under_the_key_is_refused(
        rabbitmq, gateway, queue, redis_store, proxy, value, status, error):
    gw = start(gateway, proxy, queue, redis_store.url)
    c = redis_store.client()
    c.set(KEY, value, ex=600)
    pids = gw.ngx.worker_pids()
    r = post(gw)
    assert r.status_code == status, (r.status_code, r.text)
    assert r.json()["error"] == error
    assert "Idempotent-Replayed" not in r.headers
    # nothing published, the value left as it was, the worker the same
    time.sleep(0.3)
    assert queue.count() == 0
    assert c.get(KEY) == value
    assert gw.ngx.worker_pids() == pids


def test_a_foreign_done_value_is_given_back_as_it_is(
        rabbitmq, gateway, queue, redis_store, proxy):
    """A "D" value of the right hash is an answer, whatever its body: given
    back with its status, byte for byte, nothing published."""
    gw = start(gateway, proxy, queue, redis_store.url)
    c = redis_store.client()
    body = b"\x00\xff not json \r\n"
    c.set(KEY, b"D" + HASH + b"418" + body, ex=600)
    r = post(gw)
    assert r.status_code == 418
    assert r.content == body
    assert r.headers["Idempotent-Replayed"] == "true"
    time.sleep(0.3)
    assert queue.count() == 0


def test_a_key_of_another_type_is_503_and_left_alone(
        rabbitmq, gateway, queue, redis_store, proxy):
    gw = start(gateway, proxy, queue, redis_store.url)
    c = redis_store.client()
    c.rpush(KEY, b"a", b"b")
    r = post(gw)
    assert r.status_code == 503
    assert r.json()["error"] == "idempotency_unavailable"
    assert "WRONGTYPE" in gw.ngx.error_log()
    time.sleep(0.3)
    assert queue.count() == 0
    assert c.lrange(KEY, 0, -1) == [b"a", b"b"]


def post_held(gw, c, proxy):
    """A request whose confirm the proxy holds, once its marker is set."""
    out = {}

    def run():
        out["r"] = post(gw)
    proxy.hold()
    t = threading.Thread(target=run)
    t.start()
    m = wait_for(lambda: (c.get(KEY) or b"").startswith(b"P"))
    assert m
    return t, out


def test_a_key_turned_into_a_list_mid_publish_still_answers(
        rabbitmq, gateway, queue, redis_store, proxy):
    """The outcome's EVAL fails with WRONGTYPE: logged, the list left as it
    is, the client still answered."""
    gw = start(gateway, proxy, queue, redis_store.url)
    c = redis_store.client()
    t, out = post_held(gw, c, proxy)
    try:
        c.delete(KEY)
        c.rpush(KEY, b"x")
    finally:
        proxy.release()
        t.join(30)
    assert out["r"].status_code == 202
    assert wait_for(lambda: "WRONGTYPE" in gw.ngx.error_log())
    assert "an idempotency outcome was not kept" in gw.ngx.error_log()
    assert c.lrange(KEY, 0, -1) == [b"x"]
    assert len(queue.drain(expect=1)) == 1


@pytest.fixture
def no_eval_user(redis_store):
    """An ACL user of the test's Redis that may do all but EVAL."""
    c = redis_store.client()
    c.execute_command("ACL", "SETUSER", "noeval", "on", ">noevalpw", "~*",
                      "&*", "+@all", "-eval", "-evalsha")
    url = "redis://noeval:noevalpw@127.0.0.1:%d/0" % redis_store.port
    register_url_secret(url)
    yield url
    c.execute_command("ACL", "DELUSER", "noeval")


def test_a_redis_refusing_eval_answers_and_keeps_the_marker(
        rabbitmq, gateway, queue, redis_store, proxy, no_eval_user):
    """Without EVAL no outcome is kept: the client gets its 202, the log
    says why, the marker stays until its TTL, a retry meanwhile is 409 and
    publishes nothing."""
    gw = start(gateway, proxy, queue, no_eval_user)
    c = redis_store.client()
    r = post(gw)
    assert r.status_code == 202
    assert wait_for(lambda: "an idempotency outcome was not kept"
                    in gw.ngx.error_log())
    assert "eval" in gw.ngx.error_log().lower()
    assert c.get(KEY).startswith(b"P" + HASH)
    assert 0 < c.ttl(KEY) <= 90
    r2 = post(gw)
    assert r2.status_code == 409
    assert r2.json()["error"] == "in_progress"
    assert len(queue.drain(expect=1)) == 1
    time.sleep(0.3)
    assert queue.count() == 0


def test_a_confirm_timeout_past_redis_range_still_sets_a_marker(
        rabbitmq, gateway, queue, redis_store, proxy):
    """zmq_confirm_timeout near NGINX's largest: the marker's TTL is
    bounded so that Redis takes it (not a 503 for every request)."""
    gw = start(gateway, proxy, queue, redis_store.url,
               "zmq_confirm_timeout 9223372036854775807ms;\n")
    c = redis_store.client()
    r = post(gw)
    assert r.status_code == 202, r.text
    # the outcome is stored as the answer goes out: Redis has it shortly
    wait_for(lambda: (c.get(KEY) or b"").startswith(b"D" + HASH + b"202"))
    assert len(queue.drain(expect=1)) == 1
