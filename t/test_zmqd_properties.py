"""What zmqd publishes again (dead letters and the publish service) carries
nothing the broker would refuse and nothing that would lose it: a user_id
that is not zmqd's login moves to a header (RabbitMQ closes the channel on
it, every time), a dead letter has no expiration (it would vanish) and is
persistent. Checked with pika."""

import time

import pika
import pytest

from test_zmqd import assert_acked, config, http_endpoint, publish  # noqa: F401,E501
from test_zmqd import wait_for
from zmqd_helpers import zmqd  # noqa: F401


@pytest.fixture
def alice(rabbitmq):
    """A second broker user: a message she publishes carries user_id
    'alice', which zmqd (logged in as guest) may not publish."""
    rabbitmq.ctl("add_user", "alice", "alice-pw")
    r = rabbitmq.ctl("set_permissions", "-p", "/", "alice", ".*", ".*",
                     ".*")
    assert r.returncode == 0, r.stdout + r.stderr
    yield "alice"
    rabbitmq.ctl("delete_user", "alice")


def publish_as(rabbitmq, user, password, queue, body, **props):
    conn = pika.BlockingConnection(pika.ConnectionParameters(
        host="127.0.0.1", port=rabbitmq.port,
        credentials=pika.PlainCredentials(user, password)))
    ch = conn.channel()
    ch.confirm_delivery()
    ch.basic_publish("", queue, body, pika.BasicProperties(**props))
    conn.close()


def take(rabbitmq, queue, timeout=15):
    conn = rabbitmq.connection()
    ch = conn.channel()
    got = []

    def one():
        m, p, body = ch.basic_get(queue, auto_ack=True)
        if m is not None:
            got.append((p, body))
        return got
    try:
        wait_for(one, timeout)
    finally:
        conn.close()
    return got[0]


def failing_hook(http_endpoint):
    http_endpoint.status = lambda body: 500
    return "http://127.0.0.1:%d" % http_endpoint.server_address[1]


def test_a_dead_letter_drops_a_user_id_the_broker_would_refuse(
        rabbitmq, queue, zmqd, http_endpoint, alice):
    url = failing_hook(http_endpoint)
    dead = queue.name + ".dead"
    try:
        z = zmqd(config(rabbitmq.port,
                        [{"name": "in", "queue": queue.name,
                          "service": "hook", "retry": {"attempts": 0}}],
                        [{"name": "hook", "kind": "http", "outconn": "web"}],
                        {"http_outconn": [{"name": "web", "url": url}]}))
        z.wait_log("consuming queue")
        publish_as(rabbitmq, "alice", "alice-pw", queue.name, b"hers",
                   message_id="a-1", user_id="alice", delivery_mode=2)
        z.wait_log("message 'a-1' dead-lettered after 1 attempt(s)")
        assert "could not be dead-lettered" not in z.text(), z.text()
        p, body = take(rabbitmq, dead)
        assert body == b"hers"
        assert p.user_id is None
        assert p.headers["x-zmq-original-user-id"] == "alice"
        assert p.message_id == "a-1"
        assert_acked(rabbitmq, queue.name)
    finally:
        queue.channel.queue_delete(dead)


def test_a_dead_letter_keeps_a_user_id_equal_to_the_login(
        rabbitmq, queue, zmqd, http_endpoint):
    url = failing_hook(http_endpoint)
    dead = queue.name + ".dead"
    try:
        z = zmqd(config(rabbitmq.port,
                        [{"name": "in", "queue": queue.name,
                          "service": "hook", "retry": {"attempts": 0}}],
                        [{"name": "hook", "kind": "http", "outconn": "web"}],
                        {"http_outconn": [{"name": "web", "url": url}]}))
        z.wait_log("consuming queue")
        publish(rabbitmq, queue.name, [b"mine"], message_id="g-1",
                user_id="guest")
        z.wait_log("message 'g-1' dead-lettered")
        p, body = take(rabbitmq, dead)
        assert p.user_id == "guest"
        assert "x-zmq-original-user-id" not in p.headers
    finally:
        queue.channel.queue_delete(dead)


def test_a_dead_letter_does_not_expire_and_is_persistent(
        rabbitmq, queue, zmqd, http_endpoint):
    url = failing_hook(http_endpoint)
    dead = queue.name + ".dead"
    try:
        z = zmqd(config(rabbitmq.port,
                        [{"name": "in", "queue": queue.name,
                          "service": "hook", "retry": {"attempts": 0}}],
                        [{"name": "hook", "kind": "http", "outconn": "web"}],
                        {"http_outconn": [{"name": "web", "url": url}]}))
        z.wait_log("consuming queue")
        conn = rabbitmq.connection()
        ch = conn.channel()
        ch.confirm_delivery()
        ch.basic_publish("", queue.name, b"short-lived",
                         pika.BasicProperties(message_id="e-1",
                                              expiration="3000",
                                              delivery_mode=1,
                                              headers={"x-zmq-error": "old"}))
        conn.close()
        z.wait_log("message 'e-1' dead-lettered")
        time.sleep(4)                   # past the message's own expiration
        p, body = take(rabbitmq, dead, timeout=2)
        assert body == b"short-lived"
        assert p.expiration is None
        assert p.headers["x-zmq-original-expiration"] == "3000"
        assert p.delivery_mode == 2
        # a header zmqd sets replaces the message's own
        assert "status 500" in p.headers["x-zmq-error"]
        assert_acked(rabbitmq, queue.name)
    finally:
        queue.channel.queue_delete(dead)


def test_the_publish_service_drops_a_user_id_the_broker_would_refuse(
        rabbitmq, queue, zmqd, alice):
    target = queue.name + ".out"
    queue.channel.queue_declare(target, durable=True)
    try:
        z = zmqd(config(rabbitmq.port,
                        [{"name": "in", "queue": queue.name,
                          "service": "fwd"}],
                        [{"name": "fwd", "kind": "publish", "outconn": "out",
                          "routing_key": target}]))
        z.wait_log("consuming queue")
        publish_as(rabbitmq, "alice", "alice-pw", queue.name, b"hers",
                   message_id="f-1", user_id="alice", expiration="60000")
        z.wait_log("message 'f-1' done")
        assert "failed" not in z.text(), z.text()
        p, body = take(rabbitmq, target)
        assert body == b"hers"
        assert p.user_id is None
        assert p.headers["x-zmq-original-user-id"] == "alice"
        # a forwarded message keeps its own expiration
        assert p.expiration == "60000"
        assert_acked(rabbitmq, queue.name)
    finally:
        queue.channel.queue_delete(target)


def test_the_publish_service_gives_its_expiration_to_messages_without(
        rabbitmq, queue, zmqd):
    target = queue.name + ".out"
    queue.channel.queue_declare(target, durable=True)
    try:
        z = zmqd(config(rabbitmq.port,
                        [{"name": "in", "queue": queue.name,
                          "service": "fwd"}],
                        [{"name": "fwd", "kind": "publish", "outconn": "out",
                          "routing_key": target, "expiration": 90000}]))
        z.wait_log("consuming queue")
        publish(rabbitmq, queue.name, [b"plain"], message_id="x-1")
        z.wait_log("message 'x-1' done")
        p, body = take(rabbitmq, target)
        assert p.expiration == "90000"
    finally:
        queue.channel.queue_delete(target)
