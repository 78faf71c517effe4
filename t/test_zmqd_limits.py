"""What zmqd holds is bounded, and what it has done is never lost to a
change: prefetch 0 does not pull a whole queue into memory while a service
fails, many held retries still come back in due order, and a change to a
definition sends the acks that wait before the connection is closed."""

import json
import threading
import time

import pika

from test_zmqd import (assert_acked, broker_counts, config, http_endpoint,  # noqa: F401,E501
                       publish, wait_for)
from zmqd_helpers import zmqd  # noqa: F401


def publish_many(rabbitmq, queue, n, size=100):
    conn = rabbitmq.connection()
    ch = conn.channel()
    ch.confirm_delivery()
    pad = b"x" * size
    for i in range(n):
        ch.basic_publish("", queue, b"%d " % i + pad,
                         pika.BasicProperties(delivery_mode=1,
                                              message_id="m%d" % i))
    conn.close()


def test_prefetch_0_with_a_failing_service_holds_a_bounded_number(
        rabbitmq, queue, zmqd, http_endpoint):
    url = "http://127.0.0.1:%d" % http_endpoint.server_address[1]
    http_endpoint.status = lambda body: 503
    publish_many(rabbitmq, queue.name, 3000)
    z = zmqd(config(rabbitmq.port,
                    [{"name": "in", "queue": queue.name, "service": "hook",
                      "prefetch": 0,
                      "retry": {"attempts": 3, "initial_delay": 60000,
                                "multiplier": 1, "max_delay": 60000}}],
                    [{"name": "hook", "kind": "http", "outconn": "web"}],
                    {"http_outconn": [{"name": "web", "url": url}]}))
    z.wait_log("consuming queue")
    time.sleep(3)
    ready, unacked, _ = broker_counts(rabbitmq, queue.name)
    assert unacked <= 1000, (ready, unacked)
    assert "prefetch 0 (no limit) would hold a whole queue" in z.text()
    assert ready + unacked == 3000
    wait_for(lambda: z.text().count("retrying in") >= 1000, timeout=60)
    time.sleep(1)
    ready, unacked, _ = broker_counts(rabbitmq, queue.name)
    assert unacked == 1000 and ready == 2000, (ready, unacked)
    assert z.text().count("retrying in") == 1000


def test_many_held_retries_come_back_in_due_order(rabbitmq, queue, zmqd,
                                                  http_endpoint):
    """500 messages fail once, each with a later retry than the one
    before: every retry comes back, in the order it was due, and every
    message is acked."""
    url = "http://127.0.0.1:%d" % http_endpoint.server_address[1]
    seen = set()
    lock = threading.Lock()

    def status(body):
        with lock:
            if body in seen:
                return 200
            seen.add(body)
            return 500
    http_endpoint.status = status
    n = 500
    publish_many(rabbitmq, queue.name, n, size=10)
    z = zmqd(config(rabbitmq.port,
                    [{"name": "in", "queue": queue.name, "service": "hook",
                      "prefetch": 1000,
                      "retry": {"attempts": 1, "initial_delay": 5000,
                                "multiplier": 1, "max_delay": 5000}}],
                    [{"name": "hook", "kind": "http", "outconn": "web"}],
                    {"http_outconn": [{"name": "web", "url": url}]}))
    wait_for(lambda: len(http_endpoint.requests) == 2 * n, timeout=60)
    first = [b for _, b in http_endpoint.requests[:n]]
    again = [b for _, b in http_endpoint.requests[n:]]
    assert again == first
    assert z.text().count("after a retry") == n
    assert_acked(rabbitmq, queue.name)


def test_a_definition_change_sends_the_acks_that_wait(
        rabbitmq, queue, zmqd, zmqctl, redis_store, tmp_path):
    """Messages done but not yet acked (acks go out in batches) are acked
    before a changed definition closes the connection: none is delivered
    twice."""
    doc = config(rabbitmq.port,
                 [{"name": "in", "queue": queue.name, "service": "st",
                   "prefetch": 100}],
                 [{"name": "st", "kind": "redis", "key": "ids"}])
    z = zmqd(doc)
    z.wait_log("consuming queue")
    stop = threading.Event()
    sent = [0]

    def load():
        conn = rabbitmq.connection()
        ch = conn.channel()
        while not stop.is_set():
            ch.basic_publish("", queue.name, b"%d" % sent[0],
                             pika.BasicProperties(delivery_mode=1))
            sent[0] += 1
        conn.close()

    t = threading.Thread(target=load)
    t.start()
    try:
        for hb in (11, 12, 13, 14):
            time.sleep(0.7)
            doc["amqp_def"][0]["heartbeat"] = hb
            p = tmp_path / ("def%d.json" % hb)
            p.write_text(json.dumps(doc))
            zmqctl("import", "--replace", p, check=0)
            z.wait_log("its definition changed", count=hb - 10)
            z.wait_log("connected to", count=hb - 9)
        time.sleep(0.5)
    finally:
        stop.set()
        t.join()
    r = redis_store.client()
    wait_for(lambda: r.llen("ids") >= sent[0], timeout=60)
    assert_acked(rabbitmq, queue.name)
    got = r.lrange("ids", 0, -1)
    assert len(set(got)) == sent[0]
    dups = len(got) - len(set(got))
    assert dups == 0, "%d of %d delivered twice" % (dups, sent[0])


def test_no_retry_keeps_a_message_unacked_past_max_hold(
        rabbitmq, queue, zmqd, http_endpoint):
    """The broker closes a channel whose delivery stays unacked past its
    consumer_timeout (and the message comes back with its attempts counted
    from 1 again, forever): a retry that would keep the message past
    --max-hold is not made, the message is dead-lettered at once."""
    url = "http://127.0.0.1:%d" % http_endpoint.server_address[1]
    http_endpoint.status = lambda body: 500
    dead = queue.name + ".dead"
    try:
        z = zmqd(config(rabbitmq.port,
                        [{"name": "in", "queue": queue.name,
                          "service": "hook",
                          "retry": {"attempts": 5, "initial_delay": 1000,
                                    "multiplier": 1, "max_delay": 1000}}],
                        [{"name": "hook", "kind": "http", "outconn": "web"}],
                        {"http_outconn": [{"name": "web", "url": url}]}),
                 args=["--max-hold", "2"])
        z.wait_log("consuming queue")
        publish(rabbitmq, queue.name, [b"held"], message_id="h-1")
        z.wait_log("message 'h-1' dead-lettered after 2 attempt(s)")
        assert len(http_endpoint.requests) == 2
        conn = rabbitmq.connection()
        m, p, body = conn.channel().basic_get(dead, auto_ack=True)
        conn.close()
        assert body == b"held"
        assert "not retried" in p.headers["x-zmq-error"]
        assert "--max-hold" in p.headers["x-zmq-error"]
        assert_acked(rabbitmq, queue.name)
    finally:
        queue.channel.queue_delete(dead)
