"""zmqd keeps every connection alive whatever a service is doing: a service
that takes longer than the heartbeat neither loses the consuming connection
nor gets its message again, an idle publishing connection is still there
for the next publish, and every wait for the broker has one bound."""

import threading
import time

import pika
import pika.frame
import pika.spec
import pytest

from fake_amqp import FakeAmqp
from test_zmqd import assert_acked, config, http_endpoint, publish  # noqa: F401,E501
from test_zmqd import wait_for
from zmqd_helpers import connections, rabbit_log, zmqd  # noqa: F401


def with_heartbeat(doc, seconds):
    doc["amqp_def"][0]["heartbeat"] = seconds
    return doc


def test_a_service_longer_than_the_heartbeat_keeps_the_connection(
        rabbitmq, queue, zmqd, http_endpoint):
    """heartbeat 2 s, an endpoint that takes 7 s: the broker must not drop
    the connection mid-call; the message is delivered once and acked."""
    url = "http://127.0.0.1:%d" % http_endpoint.server_address[1]

    def slow(body):
        time.sleep(7)
        return 200
    http_endpoint.status = slow
    missed = rabbit_log(rabbitmq).count("missed heartbeats")
    before = set(connections(rabbitmq))
    z = zmqd(with_heartbeat(config(
        rabbitmq.port,
        [{"name": "in", "queue": queue.name, "service": "hook"}],
        [{"name": "hook", "kind": "http", "outconn": "web"}],
        {"http_outconn": [{"name": "web", "url": url, "timeout": 20000}]}),
        2))
    z.wait_log("consuming queue")
    mine = wait_for(lambda: set(connections(rabbitmq)) - before)
    assert len(mine) == 1, mine
    publish(rabbitmq, queue.name, [b"slow one"], message_id="s-1")
    z.wait_log("message 's-1' done by service 'hook'", timeout=20)
    time.sleep(6)                   # three heartbeat intervals more
    assert [b for _, b in http_endpoint.requests] == [b"slow one"]
    assert_acked(rabbitmq, queue.name)
    assert "connection lost" not in z.text()
    assert rabbit_log(rabbitmq).count("missed heartbeats") == missed
    assert set(connections(rabbitmq)) - before == mine


def test_an_idle_publishing_connection_publishes_on_the_first_attempt(
        rabbitmq, queue, zmqd):
    """The publishing connection idles for 3x the heartbeat between two
    messages of a publish service; the second goes out on its first try."""
    target = queue.name + ".out"
    queue.channel.queue_declare(target, durable=True)
    try:
        missed = rabbit_log(rabbitmq).count("missed heartbeats")
        z = zmqd(with_heartbeat(config(
            rabbitmq.port,
            [{"name": "in", "queue": queue.name, "service": "fwd"}],
            [{"name": "fwd", "kind": "publish", "outconn": "out",
              "routing_key": target}]), 2))
        z.wait_log("consuming queue")
        publish(rabbitmq, queue.name, [b"first"], message_id="p-1")
        z.wait_log("message 'p-1' done")
        time.sleep(7)
        publish(rabbitmq, queue.name, [b"second"], message_id="p-2")
        z.wait_log("message 'p-2' done")
        assert "failed" not in z.text(), z.text()
        assert rabbit_log(rabbitmq).count("missed heartbeats") == missed
        assert_acked(rabbitmq, queue.name)
        conn = rabbitmq.connection()
        n = conn.channel().queue_declare(target, passive=True) \
            .method.message_count
        conn.close()
        assert n == 2
    finally:
        queue.channel.queue_delete(target)


def test_an_idle_dead_letter_connection_works_on_the_first_attempt(
        rabbitmq, queue, zmqd, http_endpoint):
    """A dead letter after the publishing connection idled for 3x the
    heartbeat is published at once: nothing is requeued."""
    url = "http://127.0.0.1:%d" % http_endpoint.server_address[1]
    http_endpoint.status = lambda body: 400 if body == b"bad" else 200
    dead = queue.name + ".dead"
    try:
        z = zmqd(with_heartbeat(config(
            rabbitmq.port,
            [{"name": "in", "queue": queue.name, "service": "hook",
              "retry": {"attempts": 0}}],
            [{"name": "hook", "kind": "http", "outconn": "web"}],
            {"http_outconn": [{"name": "web", "url": url}]}), 2))
        z.wait_log("consuming queue")
        publish(rabbitmq, queue.name, [b"bad"], message_id="d-1")
        z.wait_log("message 'd-1' dead-lettered")
        time.sleep(7)
        publish(rabbitmq, queue.name, [b"bad"], message_id="d-2")
        z.wait_log("message 'd-2' dead-lettered")
        assert "could not be dead-lettered" not in z.text(), z.text()
        assert_acked(rabbitmq, queue.name)
    finally:
        queue.channel.queue_delete(dead)


class StaleAcker(FakeAmqp):
    """A broker that never confirms a publish but keeps sending acks for
    a delivery tag already confirmed, one every 0.3 s."""

    def on_frame(self, conn, frame, pending, raw=b""):
        if isinstance(frame, pika.frame.Method) \
                and isinstance(frame.method, pika.spec.Connection.Close):
            self.send(conn, pika.frame.Method(
                0, pika.spec.Connection.CloseOk()))
            return pending
        return FakeAmqp.on_frame(self, conn, frame, pending, raw)

    def published_one(self, conn, pending):
        with self.lock:
            self.published.append(tuple(pending[:3]))

        def stale():
            while not self.stopping:
                try:
                    self.send(conn, pika.frame.Method(1, pika.spec.Basic.Ack(
                        delivery_tag=0)))
                except OSError:
                    return
                time.sleep(0.3)
        threading.Thread(target=stale, daemon=True).start()


def test_a_confirm_wait_has_one_bound_whatever_frames_arrive(
        rabbitmq, queue, zmqd):
    """The wait for a publisher confirm ends after 5 s even while the
    broker keeps sending other frames."""
    fake = StaleAcker()
    try:
        doc = config(rabbitmq.port,
                     [{"name": "in", "queue": queue.name, "service": "fwd",
                       "retry": {"attempts": 5, "initial_delay": 60000,
                                 "multiplier": 1, "max_delay": 60000}}],
                     [{"name": "fwd", "kind": "publish", "outconn": "far",
                       "routing_key": "x"}])
        doc["amqp_def"].append({"name": "fake", "host": "127.0.0.1",
                                "port": fake.port, "username": "guest",
                                "password": "guest", "heartbeat": 0})
        doc["amqp_outconn"].append({"name": "far", "def": "fake"})
        z = zmqd(doc)
        z.wait_log("consuming queue")
        t0 = time.monotonic()
        publish(rabbitmq, queue.name, [b"m"], message_id="c-1")
        z.wait_log("message 'c-1' failed (attempt 1)", timeout=15)
        assert time.monotonic() - t0 < 9
        assert "no confirm" in z.text()
    finally:
        fake.close()
