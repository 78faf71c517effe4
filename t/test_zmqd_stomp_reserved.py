"""zmqd's publish service through a stomp_outconn and the STOMP headers a
message may not set: the gateway's one list (src/core/zgw_stomp_headers.c,
with "type", which the message's type property sets), in any case of
letters. A consumed message's header of that list is left out of the SEND
(the rest are sent); a service header of that list fails the attempt,
and nothing is sent. RabbitMQ in, the scripted fake broker
(t/fake_stomp.py) out."""

import pika
import pytest

from fake_stomp import FakeStomp
from test_zmqd import wait_for
from test_zmqd_stomp_publish import amqp_to_stomp
from zmqd_helpers import zmqd  # noqa: F401

# the list, and "type"
RESERVED = (
    "destination", "receipt", "content-length", "content-type",
    "content-encoding", "transaction", "persistent", "priority", "expires",
    "correlation-id", "reply-to", "amq-msg-type", "amqp-message-id",
    "zmq_message_id", "message-id", "subscription", "ack", "id",
    "receipt-id", "host", "login", "passcode", "heart-beat", "version",
    "accept-version", "expiration", "type")


@pytest.fixture
def broker():
    b = FakeStomp()
    yield b
    b.close()


def publish(rabbitmq, queue, headers):
    conn = rabbitmq.connection()
    ch = conn.channel()
    ch.confirm_delivery()
    ch.basic_publish("", queue, b"hello", pika.BasicProperties(
        delivery_mode=2, message_id="m-1", headers=headers))
    conn.close()


def test_a_messages_reserved_headers_are_left_out_in_any_case(
        rabbitmq, queue, broker, zmqd):
    z = zmqd(amqp_to_stomp(rabbitmq, queue.name, broker.port, "/queue/out",
                           use_jms=False))
    z.wait_log("channel 'in': consuming queue")
    headers = {"k": "v", "Destinations": "two", "x-type": "t"}
    for i, name in enumerate(RESERVED):
        headers[name.upper() if i % 2 else name] = "evil"
    publish(rabbitmq, queue.name, headers)
    wait_for(lambda: len(broker.sends()) == 1, timeout=30)
    z.wait_log("done by service 'fwd'")
    f = broker.sends()[0]
    assert f.get("k") == "v"
    assert f.get("Destinations") == "two"
    assert f.get("x-type") == "t"
    assert "evil" not in [v for _, v in f.headers], f
    names = [k.lower() for k, _ in f.headers]
    assert names.count("destination") == 1 and \
        f.get("destination") == "/queue/out"
    assert "type" not in names                   # the message has none
    assert f.get("amqp-message-id") == "m-1"


@pytest.mark.parametrize("name", ["receipt", "Type", "DESTINATION", "id"])
def test_a_service_header_from_the_list_fails_and_sends_nothing(
        rabbitmq, queue, broker, zmqd, name):
    z = zmqd(amqp_to_stomp(rabbitmq, queue.name, broker.port, "/queue/out",
                           use_jms=False, headers={name: "x"}))
    z.wait_log("channel 'in': consuming queue")
    publish(rabbitmq, queue.name, {"k": "v"})
    z.wait_log("service header '%s' is a STOMP header zmqd sets" % name,
               timeout=30)
    assert broker.sends() == []


def test_a_service_header_not_on_the_list_is_sent(rabbitmq, queue, broker,
                                                  zmqd):
    z = zmqd(amqp_to_stomp(rabbitmq, queue.name, broker.port, "/queue/out",
                           use_jms=False, headers={"my-receipt": "s"}))
    z.wait_log("channel 'in': consuming queue")
    publish(rabbitmq, queue.name, {"k": "v"})
    wait_for(lambda: len(broker.sends()) == 1, timeout=30)
    assert broker.sends()[0].get("my-receipt") == "s"
    z.wait_log("done by service 'fwd'")
