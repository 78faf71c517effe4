"""Every wait of zmqd for the broker has one bound."""

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


class StaleAcker(FakeAmqp):
    """A broker that never confirms a publish but keeps sending acks for
    a delivery tag already confirmed, one every 0.3 s."""

    def on_frame(self, conn, frame, pending):
        if isinstance(frame, pika.frame.Method) \
                and isinstance(frame.method, pika.spec.Connection.Close):
            self.send(conn, pika.frame.Method(
                0, pika.spec.Connection.CloseOk()))
            return pending
        return FakeAmqp.on_frame(self, conn, frame, pending)

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
