"""zmqd --metrics counts stomp_channels like amqp_channels (acked,
retried, dead_lettered, service durations, zmqd_connection_up of the
stomp_def with transport="stomp") and invocations of invoke services
(acked and retried on their internal channel, zmqd_invocations_total by
service and their target's outcome). Exact values after a known number of
messages, parsed by test_metrics' strict parser."""

import json
import uuid

import pika

from activemq_helpers import activemq, unique_queue  # noqa: F401
from conftest import free_port
from test_metrics import fetch, get
from test_zmqd import http_endpoint, wait_for  # noqa: F401
from test_zmqd_stomp import stomp_config, wait_empty
from zmqd_helpers import zmqd  # noqa: F401


def settled(url, want):
    """The metrics once each (name, labels) of want has its value."""
    def ok():
        m = fetch(url)
        for (name, labels), v in want.items():
            try:
                if get(m, name, **dict(labels)) != v:
                    return None
            except AssertionError:
                return None
        return m
    return wait_for(ok, timeout=30)


def test_stomp_channels_and_invocations_are_counted(
        activemq, rabbitmq, zmqd, http_endpoint, tmp_path, zmqctl):
    src = unique_queue("m")
    invq = "inv." + uuid.uuid4().hex[:8]
    http_endpoint.status = lambda body: 500 if body.startswith(b"bad") \
        else 200
    doc = stomp_config(activemq.stomp_port, "/queue/" + src, http_endpoint,
                       retry={"attempts": 1, "initial_delay": 100,
                              "multiplier": 1, "max_delay": 100})
    doc["amqp_def"] = [{"name": "rabbit", "host": "127.0.0.1",
                        "port": rabbitmq.port, "username": "guest",
                        "password": "guest", "heartbeat": 10}]
    doc["amqp_outconn"] = [{"name": "out", "def": "rabbit"}]
    doc["service"] += [{"name": "inv", "kind": "invoke", "outconn": "out",
                        "queue": invq, "target": "hook", "mode": "async",
                        "repeats": 2, "seconds": 0}]
    mport = free_port()
    url = "http://127.0.0.1:%d/metrics" % mport
    z = zmqd(doc, args=["--metrics", "127.0.0.1:%d" % mport])
    z.wait_log("consuming '/queue/%s'" % src)
    z.wait_log("consuming queue '%s'" % invq)

    activemq.produce([{"text": "a"}, {"text": "b"}, {"text": "bad"}],
                     queue=src)
    conn = rabbitmq.connection()
    ch = conn.channel()
    ch.confirm_delivery()
    for body in (b"ok", b"bad"):
        cid = str(uuid.uuid4())
        ch.basic_publish("", invq, body, pika.BasicProperties(
            correlation_id=cid, message_id=cid, delivery_mode=2,
            headers={"x-zmq-invoke": "inv", "x-zmq-mode": "async",
                     "x-zmq-req-ts": "2024-01-01T00:00:00.000000"}),
            mandatory=True)
    conn.close()

    inv = "invoke/rabbit/" + invq
    m = settled(url, {
        ("zmqd_messages_total", (("channel", "in"), ("result", "acked"))): 2,
        ("zmqd_messages_total", (("channel", "in"),
                                 ("result", "dead_lettered"))): 1,
        ("zmqd_invocations_total", (("service", "inv"),
                                    ("result", "failed"))): 1,
        ("zmqd_invocations_total", (("service", "inv"),
                                    ("result", "succeeded"))): 1,
    })
    assert get(m, "zmqd_messages_total", channel="in", result="retried") == 1
    assert get(m, "zmqd_messages_total", channel="in",
               result="rejected") == 0
    assert get(m, "zmqd_service_duration_seconds_count", channel="in") == 4
    assert get(m, "zmqd_service_duration_seconds_sum", channel="in") > 0
    assert get(m, "zmqd_connection_up",
               **{"def": "broker", "transport": "stomp"}) == 1
    assert get(m, "zmqd_connection_up",
               **{"def": "rabbit", "transport": "amqp"}) == 1
    # invocations: both acked (done), the bad one's first try retried
    assert get(m, "zmqd_messages_total", channel=inv, result="acked") == 2
    assert get(m, "zmqd_messages_total", channel=inv, result="retried") == 1
    assert get(m, "zmqd_messages_total", channel=inv,
               result="dead_lettered") == 0
    assert get(m, "zmqd_service_duration_seconds_count", channel=inv) == 3
    wait_empty(activemq, src)

    # the stomp_def moved to a port nobody listens on: down
    doc["stomp_def"][0]["port"] = free_port()
    p = tmp_path / "moved.json"
    p.write_text(json.dumps(doc))
    zmqctl("import", "--replace", p)
    z.wait_log("stomp_channel 'in': cannot connect", timeout=20)
    m = settled(url, {("zmqd_connection_up",
                         (("def", "broker"), ("transport", "stomp"))): 0})
    assert get(m, "zmqd_connection_up",
               **{"def": "rabbit", "transport": "amqp"}) == 1
