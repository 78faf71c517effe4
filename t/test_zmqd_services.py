"""zmqd's services when a command or a message goes wrong: a Redis error
never leaves a reply behind for the next message, a failed AUTH or SELECT
fails the message instead of writing elsewhere, and message properties that
would inject HTTP headers are refused and dead-lettered. Checked with pika,
redis-py and a recording HTTP server."""

import os
import subprocess

import pika
import pytest

from conftest import REDIS_SERVER, free_port, stop_pid, wait_port
from test_zmqd import (FAST_RETRY, assert_acked, config, http_endpoint,  # noqa: F401,E501
                       publish, wait_for, zmqd)

SLOW_RETRY = {"attempts": 1, "initial_delay": 1500, "multiplier": 1,
              "max_delay": 1500}


def dead_letters(rabbitmq, queue, expect, timeout=15):
    """The dead letters of queue (in its default '<queue>.dead'), by
    message id; the dead-letter queue is deleted afterwards."""
    conn = rabbitmq.connection()
    ch = conn.channel()
    ch.queue_declare(queue + ".dead", durable=True)
    got = {}

    def take():
        m, p, body = ch.basic_get(queue + ".dead", auto_ack=True)
        if m is not None:
            got[p.message_id] = (p, body)
        return len(got) >= expect
    try:
        wait_for(take, timeout)
        return got
    finally:
        ch.queue_delete(queue + ".dead")
        conn.close()


def wait_outcome(z, mid, timeout=15):
    """Waits until zmqd logged the first outcome of message mid; returns
    'done' or 'failed'."""
    def seen():
        text = z.text()
        if "message '%s' done by" % mid in text:
            return "done"
        if "message '%s' failed" % mid in text \
                or "message '%s' dead-lettered" % mid in text:
            return "failed"
        return None
    return wait_for(seen, timeout)


@pytest.fixture
def queues(rabbitmq, queue):
    """Extra durable queues next to the queue fixture's, deleted after."""
    made = []

    def make(suffix):
        name = queue.name + suffix
        queue.channel.queue_declare(name, durable=True)
        made.append(name)
        return name
    yield make
    for name in made:
        queue.channel.queue_delete(name)
        queue.channel.queue_delete(name + ".dead")


# ---------------------------------------------------------------- defect 12


def test_a_redis_error_mid_pipeline_leaves_no_reply_for_the_next_message(
        rabbitmq, queue, queues, redis_store, zmqd):
    """RPUSH + LTRIM on a key holding a string: both fail with WRONGTYPE.
    The next commands on the same connection must read their own replies:
    a good message lands and is acked, a bad one is never acked on the good
    one's success."""
    r = redis_store.client()
    r.set("str", "not a list")
    qb, qg, qz = queue.name, queues(".good"), queues(".zadd")
    z = zmqd(config(rabbitmq.port, [
        {"name": "bad", "queue": qb, "service": "capped",
         "retry": SLOW_RETRY},
        {"name": "good", "queue": qg, "service": "plain",
         "retry": SLOW_RETRY},
        {"name": "zbad", "queue": qz, "service": "scored",
         "retry": SLOW_RETRY}], [
        {"name": "capped", "kind": "redis", "key": "str", "max_len": 2},
        {"name": "plain", "kind": "redis", "key": "list"},
        {"name": "scored", "kind": "redis", "op": "zadd", "key": "str"}]))
    z.wait_log("consuming queue", count=3)

    publish(rabbitmq, qb, [b"b1"], message_id="b1")
    assert wait_outcome(z, "b1") == "failed"
    publish(rabbitmq, qg, [b"g1"], message_id="g1")
    assert wait_outcome(z, "g1") == "done"
    publish(rabbitmq, qz, [b"z1"], message_id="z1")
    assert wait_outcome(z, "z1") == "failed"
    publish(rabbitmq, qg, [b"g2"], message_id="g2")
    assert wait_outcome(z, "g2") == "done"

    # each failing message is retried once, then dead-lettered
    z.wait_log("message 'b1' dead-lettered after 2 attempt(s)")
    z.wait_log("message 'z1' dead-lettered after 2 attempt(s)")
    for q, mid in ((qb, "b1"), (qz, "z1")):
        dl = dead_letters(rabbitmq, q, 1)
        assert list(dl) == [mid]
        p, body = dl[mid]
        assert body == mid.encode()
        assert "WRONGTYPE" in p.headers["x-zmq-error"]
        assert p.headers["x-zmq-attempts"] == 2

    assert r.lrange("list", 0, -1) == [b"g1", b"g2"]
    assert r.get("str") == b"not a list"
    assert "message 'g1' failed" not in z.text()
    assert "message 'g2' failed" not in z.text()
    for q in (qb, qg, qz):
        assert_acked(rabbitmq, q)


# ----------------------------------------------------------------- defect 7


def test_a_failed_select_is_a_failure_not_a_write_to_database_0(
        rabbitmq, queue, redis_store, zmqd):
    url = "redis://127.0.0.1:%d/99" % redis_store.port
    z = zmqd(config(rabbitmq.port,
                    [{"name": "in", "queue": queue.name, "service": "st",
                      "retry": FAST_RETRY}],
                    [{"name": "st", "kind": "redis", "key": "db99",
                      "url": url}]))
    publish(rabbitmq, queue.name, [b"nowhere"], message_id="s1")
    z.wait_log("message 's1' dead-lettered after 3 attempt(s)")
    assert "message 's1' done by" not in z.text()
    dl = dead_letters(rabbitmq, queue.name, 1)
    err = dl["s1"][0].headers["x-zmq-error"]
    assert "SELECT 99" in err and "out of range" in err, err
    assert not redis_store.client().exists("db99")     # not in db 0
    assert_acked(rabbitmq, queue.name)


@pytest.fixture
def redis_with_password(tmp_path):
    if not os.access(REDIS_SERVER, os.X_OK):
        pytest.skip("redis-server is not installed")
    port = free_port()
    proc = subprocess.Popen(
        [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1",
         "--save", "", "--appendonly", "no", "--dir", str(tmp_path),
         "--requirepass", "right-pw-4711"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, 10, proc)
        yield port
    finally:
        stop_pid(proc)


def test_a_failed_auth_is_a_failure_with_a_clear_error(
        rabbitmq, queue, queues, redis_with_password, zmqd):
    import redis
    port = redis_with_password
    q2 = queues(".right")
    z = zmqd(config(rabbitmq.port, [
        {"name": "in", "queue": queue.name, "service": "wrong",
         "retry": FAST_RETRY},
        {"name": "in2", "queue": q2, "service": "right"}], [
        {"name": "wrong", "kind": "redis", "key": "k",
         "url": "redis://127.0.0.1:%d/0" % port,
         "password": "wrong-pw-0815"},
        {"name": "right", "kind": "redis", "key": "k",
         "url": "redis://127.0.0.1:%d/0" % port,
         "password": "right-pw-4711"}]))
    publish(rabbitmq, queue.name, [b"refused"], message_id="a1")
    z.wait_log("message 'a1' dead-lettered after 3 attempt(s)")
    dl = dead_letters(rabbitmq, queue.name, 1)
    err = dl["a1"][0].headers["x-zmq-error"]
    assert "AUTH" in err and "WRONGPASS" in err, err
    assert "wrong-pw-0815" not in err
    assert "wrong-pw-0815" not in z.text()
    assert_acked(rabbitmq, queue.name)

    # the right password works
    publish(rabbitmq, q2, [b"welcome"], message_id="a2")
    assert wait_outcome(z, "a2") == "done"
    c = redis.Redis(host="127.0.0.1", port=port, password="right-pw-4711")
    assert c.lrange("k", 0, -1) == [b"welcome"]
    assert_acked(rabbitmq, q2)


# ---------------------------------------------------------------- defect 13


def test_headers_that_would_inject_are_refused_and_dead_lettered(
        rabbitmq, queue, zmqd, http_endpoint):
    url = "http://127.0.0.1:%d" % http_endpoint.server_address[1]
    z = zmqd(config(rabbitmq.port,
                    [{"name": "in", "queue": queue.name, "service": "hook",
                      "retry": FAST_RETRY}],
                    [{"name": "hook", "kind": "http", "outconn": "web"}],
                    {"http_outconn": [{"name": "web", "url": url}]}))
    bad = {
        "crlf-value": {"headers": {"note": "x\r\nX-Injected: yes"}},
        "lf-bytes": {"headers": {"note": b"x\nX-Injected: yes"}},
        "nul-value": {"headers": {"note": b"a\x00b"}},
        "del-value": {"headers": {"note": "a\x7fb"}},
        "crlf-name": {"headers": {"a\r\nX-Injected: yes\r\nb": "v"}},
        "space-name": {"headers": {"bad name": "v"}},
        "colon-name": {"headers": {"bad:name": "v"}},
        "correlation": {"correlation_id": "c\r\nX-Injected: yes"},
        "content-type": {"content_type": "text/plain\r\nX-Injected: yes"},
        "reply-to": {"reply_to": "q\nX-Injected: yes"},
        "message-id\r\nX-Injected: yes": {},
    }
    for mid, props in bad.items():
        publish(rabbitmq, queue.name, [b"bad"], message_id=mid, **props)
    publish(rabbitmq, queue.name, [b"good"], message_id="good",
            headers={"note": "caf\u00e9\tok", "n": 5, "empty": ""})
    z.wait_log("message 'good' done by")
    z.wait_log("dead-lettered after 1 attempt(s)", count=len(bad))

    # nothing bad reached the endpoint, the good one did
    assert [b for _, b in http_endpoint.requests] == [b"good"]
    headers = http_endpoint.requests[0][0]
    assert "X-Injected" not in headers
    assert headers["X-Zmq-Header-note"].encode("latin-1") == \
        "caf\u00e9\tok".encode()
    assert headers["X-Zmq-Header-empty"] == ""

    dl = dead_letters(rabbitmq, queue.name, len(bad))
    assert sorted(dl) == sorted(bad)
    for mid, (p, body) in dl.items():
        err = p.headers["x-zmq-error"]
        assert body == b"bad"
        assert p.headers["x-zmq-attempts"] == 1, (mid, err)   # no retries
        assert "not allowed in an HTTP header" in err, (mid, err)
        assert "\r" not in err and "\n" not in err
    assert "X-Correlation-Id" in dl["correlation"][0].headers["x-zmq-error"]
    assert "name" in dl["space-name"][0].headers["x-zmq-error"]
    assert "value" in dl["crlf-value"][0].headers["x-zmq-error"]
    assert_acked(rabbitmq, queue.name)


def test_a_zadd_message_without_its_score_is_dead_lettered_at_once(
        rabbitmq, queue, redis_store, zmqd):
    z = zmqd(config(rabbitmq.port,
                    [{"name": "in", "queue": queue.name, "service": "sc",
                      "retry": FAST_RETRY}],
                    [{"name": "sc", "kind": "redis", "op": "zadd",
                      "key": "z", "score_field": "ts"}]))
    publish(rabbitmq, queue.name, [b'{"x": 1}'], message_id="no-ts")
    publish(rabbitmq, queue.name, [b"not json"], message_id="no-json")
    publish(rabbitmq, queue.name, [b'{"ts": 3}'], message_id="fine")
    z.wait_log("dead-lettered after 1 attempt(s)", count=2)
    dl = dead_letters(rabbitmq, queue.name, 2)
    assert sorted(dl) == ["no-json", "no-ts"]
    for p, _ in dl.values():
        assert "score field 'ts' is not a number" in p.headers["x-zmq-error"]
    wait_for(lambda: redis_store.client().zcard("z") == 1)
    assert_acked(rabbitmq, queue.name)
