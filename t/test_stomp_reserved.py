"""The STOMP headers a request may not set: one list
(src/core/zgw_stomp_headers.c, zmqd's too) for X-Zmq-Header-* of a
publish with a stomp_outconn (400 bad_header) and for the headers of an
admin send (400 bad_request), in any case of letters; an admin send
refuses "type" as well (its properties set it), while a publish sends
X-Zmq-Header-type as it is (ActiveMQ's JMSType). Against the scripted
fake broker (t/fake_stomp.py): nothing is sent for a refused request.
"""

import pytest

from conftest import free_port
from fake_stomp import FakeStomp
from test_stomp_admin import Gw, Script, Silent
from test_stomp_gateway import fake, stomp_gw  # noqa: F401 (fixtures)
from test_stomp_gateway import post, stomp_config

# every header the gateway sets on a SEND, or the broker uses
RESERVED = (
    "destination", "receipt", "content-length", "content-type",
    "content-encoding", "transaction", "persistent", "priority", "expires",
    "correlation-id", "reply-to", "amq-msg-type", "amqp-message-id",
    "zmq_message_id", "message-id", "subscription", "ack", "id",
    "receipt-id", "host", "login", "passcode", "heart-beat", "version",
    "accept-version", "expiration")


@pytest.fixture
def admin(nginx_factory, zmqctl, redis_store, tmp_path):
    broker = FakeStomp(Script())
    silent = Silent()
    # no RabbitMQ: its definition points at a closed port
    gw = Gw(nginx_factory, zmqctl, redis_store, tmp_path, free_port(),
            broker, silent)
    gw.wait_stomp("fake.out")
    yield gw
    broker.close()
    silent.close()


def test_a_publish_refuses_every_reserved_header_in_any_case(fake, stomp_gw):
    b = fake()
    gw = stomp_gw(stomp_config(b.port))
    # NGINX drops a request header with "_" (underscores_in_headers off)
    names = [n for n in RESERVED if "_" not in n]
    for name in names + [n.upper() for n in names]:
        r = post(gw, headers={"X-Zmq-Header-" + name: "x"})
        assert r.status_code == 400, (name, r.text)
        assert r.json()["error"] == "bad_header", (name, r.text)
        assert "names a STOMP header the gateway sets" \
            in r.json()["message"], (name, r.text)
    assert not b.sends()


def test_a_publish_sends_its_type_header_and_others_as_they_are(fake,
                                                                stomp_gw):
    b = fake()
    gw = stomp_gw(stomp_config(b.port))
    r = post(gw, headers={"X-Zmq-Header-type": "OrderPlaced",
                          "X-Zmq-Header-Destinations": "two"})
    assert r.status_code == 202, r.text
    f = b.sends()[-1]
    assert f.get("type") == "OrderPlaced"
    assert f.get("Destinations") == "two"
    assert f.get("destination") == "/queue/orders"


def test_an_admin_send_refuses_every_reserved_header_and_type(admin):
    for name in RESERVED + ("type", "Type", "DESTINATION", "Heart-Beat"):
        r = admin.send("fake.out", {"destination": "/queue/x", "body": "x",
                                    "headers": {name: "1"}})
        assert r.status_code == 400, (name, r.text)
        assert r.json()["error"] == "bad_request", (name, r.text)
        assert "headers.%s: names a STOMP header the gateway sets" % name \
            in r.json()["message"], (name, r.text)
    assert not admin.fake.sends()


def test_an_admin_send_sends_other_headers_and_its_type_property(admin):
    r = admin.send("fake.out", {"destination": "/queue/x", "body": "x",
                                "properties": {"type": "Order"},
                                "headers": {"types": "2", "Tenant": "t1"}})
    assert r.status_code == 202, r.text
    f = admin.fake.sends()[-1]
    assert f.get("type") == "Order"
    assert f.get("types") == "2" and f.get("Tenant") == "t1"
