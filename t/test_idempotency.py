"""Idempotency keys (issue 20): a REST channel with "idempotency": true
keeps the first answer for an Idempotency-Key in Redis; a repeat with the
same body gets it again without publishing, another body 422, a repeat
while the first is in flight 409, Redis down 503. Checked with pika and
redis-py."""

import concurrent.futures
import json
import time

import pytest
import requests

from conftest import amqp_config, RedisServer

ROUTER = "location /api/ { zmq_router; }\n"


def config(port, queue, channel=None, service=None):
    svc = {"routing_key": queue}
    svc.update(service or {})
    doc = amqp_config(port, {"svc": svc})
    ch = {"name": "orders", "url_path": "/api/orders", "service": "svc",
          "idempotency": True, "batch": True}
    ch.update(channel or {})
    doc["rest_channel"] = [ch]
    return doc


def start(gateway, rabbitmq, queue, redis, channel=None, service=None):
    return gateway(config(rabbitmq.port, queue.name, channel, service),
                   ROUTER, http="zmq_idempotency_redis %s;" % redis.url)


def post(gw, body=b'{"n": 1}', key="k-1", headers=None):
    h = {"Idempotency-Key": key} if key is not None else {}
    h.update(headers or {})
    return requests.post(gw.url + "/api/orders", data=body, headers=h,
                         timeout=30)


def test_the_same_key_twice_publishes_once_and_answers_the_same(
        rabbitmq, gateway, queue, redis_store):
    gw = start(gateway, rabbitmq, queue, redis_store)
    r1 = post(gw)
    assert r1.status_code == 202, r1.text
    assert "Idempotent-Replayed" not in r1.headers
    r2 = post(gw)
    assert r2.status_code == 202
    assert r2.content == r1.content
    assert r2.headers["Content-Type"] == "application/json"
    assert r2.headers["Idempotent-Replayed"] == "true"
    [(m, p, body)] = queue.drain(expect=1)
    time.sleep(0.3)
    assert queue.count() == 0
    assert p.message_id == r1.json()["message_id"]
    # one key per channel and key, kept for the channel's TTL
    c = redis_store.client()
    assert c.exists("zmq:idem:6:orders:k-1")
    assert 86000 < c.ttl("zmq:idem:6:orders:k-1") <= 86400


def test_another_body_with_the_key_is_422(rabbitmq, gateway, queue,
                                          redis_store):
    gw = start(gateway, rabbitmq, queue, redis_store)
    assert post(gw).status_code == 202
    r = post(gw, body=b'{"n": 2}')
    assert r.status_code == 422
    assert r.json()["error"] == "idempotency_mismatch"
    assert len(queue.drain(expect=1)) == 1
    time.sleep(0.3)
    assert queue.count() == 0


def test_requests_without_a_key_publish_each_time(rabbitmq, gateway, queue,
                                                  redis_store):
    gw = start(gateway, rabbitmq, queue, redis_store)
    assert post(gw, key=None).status_code == 202
    assert post(gw, key=None).status_code == 202
    assert len(queue.drain(expect=2)) == 2


def test_different_keys_publish_each(rabbitmq, gateway, queue, redis_store):
    gw = start(gateway, rabbitmq, queue, redis_store)
    assert post(gw, key="a").status_code == 202
    assert post(gw, key="b").status_code == 202
    assert len(queue.drain(expect=2)) == 2


@pytest.mark.parametrize("key", ["", "x" * 256, "with space", "caf\u00e9"])
def test_a_malformed_key_is_400(rabbitmq, gateway, queue, redis_store, key):
    gw = start(gateway, rabbitmq, queue, redis_store)
    r = post(gw, key=key.encode("utf-8"))
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "bad_header"
    assert queue.count() == 0


def test_concurrent_duplicates_publish_once(rabbitmq, gateway, queue,
                                            redis_store):
    gw = start(gateway, rabbitmq, queue, redis_store)
    with concurrent.futures.ThreadPoolExecutor(20) as ex:
        rs = list(ex.map(lambda _: post(gw, key="same"), range(40)))
    codes = [r.status_code for r in rs]
    assert set(codes) <= {202, 409}, codes
    assert 202 in codes
    for r in rs:
        if r.status_code == 409:
            assert r.json()["error"] == "in_progress"
            assert r.headers["Retry-After"] == "1"
    ids = {r.json()["message_id"] for r in rs if r.status_code == 202}
    assert len(ids) == 1
    assert len(queue.drain(expect=1)) == 1
    time.sleep(0.5)
    assert queue.count() == 0


def test_the_key_expires_after_its_ttl(rabbitmq, gateway, queue,
                                       redis_store):
    gw = start(gateway, rabbitmq, queue, redis_store,
               channel={"idempotency_ttl": 1})
    r1 = post(gw)
    assert r1.status_code == 202
    assert post(gw).headers.get("Idempotent-Replayed") == "true"
    time.sleep(2.2)
    r3 = post(gw)
    assert r3.status_code == 202
    assert "Idempotent-Replayed" not in r3.headers
    assert r3.json()["message_id"] != r1.json()["message_id"]
    assert len(queue.drain(expect=2)) == 2


def test_an_in_flight_marker_left_behind_expires(rabbitmq, gateway, queue,
                                                 redis_store):
    """A worker that died mid-publish leaves "in flight": 409 until the
    marker's TTL (confirm timeout + 30 s) ends, never for good."""
    gw = start(gateway, rabbitmq, queue, redis_store)
    c = redis_store.client()
    import hashlib
    # the hash covers the method, the URI and the body
    h = hashlib.sha256(b'POST /api/orders\n{"n": 1}').hexdigest()
    c.set("zmq:idem:6:orders:k-1", "P" + h, ex=1)
    r = post(gw)
    assert r.status_code == 409
    assert r.json()["error"] == "in_progress"
    time.sleep(1.5)
    assert post(gw).status_code == 202
    assert len(queue.drain(expect=1)) == 1


def test_unroutable_422_is_kept_like_any_4xx(rabbitmq, gateway, queue,
                                             redis_store):
    gw = start(gateway, rabbitmq, queue, redis_store,
               service={"routing_key": "nobody.here", "mandatory": True})
    r1 = post(gw)
    assert r1.status_code == 422 and r1.json()["error"] == "unroutable"
    r2 = post(gw)
    assert r2.status_code == 422 and r2.content == r1.content
    assert r2.headers["Idempotent-Replayed"] == "true"
    assert gw.totals()["published"] == 1


def test_a_batch_answer_is_replayed(rabbitmq, gateway, queue, redis_store):
    gw = start(gateway, rabbitmq, queue, redis_store)
    body = b"1\n2\n3\n"
    hdr = {"Content-Type": "application/x-ndjson"}
    r1 = post(gw, body=body, headers=hdr)
    assert r1.status_code == 200, r1.text
    r2 = post(gw, body=body, headers=hdr)
    assert r2.status_code == 200 and r2.content == r1.content
    assert len(queue.drain(expect=3)) == 3
    time.sleep(0.3)
    assert queue.count() == 0


def test_a_5xx_answer_is_not_kept(rabbitmq, gateway, queue, redis_store):
    """The service inactive: 503, the key deleted, so a retry publishes
    once the cause is gone (here: still 503, and still no key)."""
    gw = start(gateway, rabbitmq, queue, redis_store,
               service={"is_active": False})
    r = post(gw)
    assert r.status_code == 503
    # the key is deleted as the answer goes out: Redis has done it shortly
    c = redis_store.client()
    deadline = time.monotonic() + 10
    while c.exists("zmq:idem:6:orders:k-1") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not c.exists("zmq:idem:6:orders:k-1")


@pytest.fixture
def own_redis(tmp_path):
    server = RedisServer(str(tmp_path))
    yield server
    server.stop()


def test_redis_down_is_503_and_nothing_published(rabbitmq, gateway, queue,
                                                 own_redis):
    gw = start(gateway, rabbitmq, queue, own_redis)
    assert post(gw, key="before").status_code == 202
    own_redis.stop()
    time.sleep(0.5)
    r = post(gw)
    assert r.status_code == 503
    assert r.json()["error"] == "idempotency_unavailable"
    assert r.headers["Retry-After"] == "1"
    # without a key the channel still publishes
    assert post(gw, key=None).status_code == 202
    assert len(queue.drain(expect=2)) == 2
    time.sleep(0.3)
    assert queue.count() == 0
