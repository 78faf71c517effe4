"""use_jms on an amqp_def: the wire headers of RabbitMQ's JMS client
(rabbitmq-jms-client, AMQP destinations) added by the gateway and taken out
again by zmqd, so that a service sees the same message whether a Java
program sent it or not. No RabbitMQ JMS client can be installed here: both
sides are checked at the header level with pika, against the table in
src/core/zgw_jms.h (what that client's RMQMessage.toAmqpHeaders writes and
setJMSPropertiesFromAmqpProperties reads)."""

import time
import uuid

import pika
import pytest
import requests

from conftest import amqp_config
from test_zmqd import assert_acked, config, http_endpoint  # noqa: F401
from test_zmqd import wait_for
from zmqd_helpers import zmqd  # noqa: F401

PUB = "location = /pub { zmq_service svc; }\n"
JMS = {"use_jms": True}


def post(gw, data=b"", headers=None):
    return requests.post(gw.url + "/pub", data=data, headers=headers or {},
                         timeout=30)


def jms_gateway(gateway, rabbitmq, queue, use_jms=True, svc=None):
    s = {"routing_key": queue.name}
    s.update(svc or {})
    return gateway(amqp_config(rabbitmq.port, {"svc": s},
                               amqp_def=JMS if use_jms else None), PUB)


def now_ms():
    return int(time.time() * 1000)


def jms_headers(p):
    return {k: v for k, v in (p.headers or {}).items()
            if k.lower().startswith("jms") or k.lower().startswith("rmq.")}


# ------------------------------------------------ the gateway publishes


def test_a_text_message_carries_every_jms_header_the_client_reads(
        rabbitmq, gateway, queue):
    gw = jms_gateway(gateway, rabbitmq, queue)
    before = now_ms()
    r = post(gw, b'{"order": 1}', {
        "Content-Type": "application/json",
        "X-Message-Id": "m-1",
        "X-Correlation-Id": "c-1",
        "X-Reply-To": "replies",
        "X-Priority": "7",
        "X-Expiration": "60000",
        "X-Zmq-Header-Customer": "ACME",
    })
    after = now_ms()
    assert r.status_code == 202, r.text

    [(m, p, body)] = queue.drain(expect=1)
    assert body == b'{"order": 1}'
    ts = p.headers["JMSTimestamp"]
    assert before - 1000 <= ts <= after + 1000
    assert p.headers == {
        "Customer": "ACME",
        "JMSDeliveryMode": "PERSISTENT",
        "JMSMessageID": "ID:m-1",
        "JMSTimestamp": ts,
        "JMSPriority": 7,
        "JMSCorrelationID": "c-1",
        "JMSType": "TextMessage",
        "JMSExpiration": ts + 60000,
    }
    # the AMQP properties the client reads, consistent with the headers
    assert p.message_id == "m-1"
    assert p.correlation_id == "c-1"
    assert p.reply_to == "replies"      # JMSReplyTo comes from reply_to
    assert p.priority == 7
    assert p.expiration == "60000"
    assert p.delivery_mode == 2
    assert p.timestamp == ts // 1000
    assert p.content_type == "application/json"


def test_a_binary_transient_message_is_a_bytes_message(rabbitmq, gateway,
                                                       queue):
    gw = jms_gateway(gateway, rabbitmq, queue)
    r = post(gw, bytes(range(256)), {"Content-Type": "image/png",
                                     "X-Delivery-Mode": "transient"})
    assert r.status_code == 202, r.text
    mid = r.json()["message_id"]

    [(m, p, body)] = queue.drain(expect=1)
    assert body == bytes(range(256))
    ts = p.headers["JMSTimestamp"]
    assert p.headers == {
        "JMSDeliveryMode": "NON_PERSISTENT",
        "JMSMessageID": "ID:" + mid,
        "JMSTimestamp": ts,
        "JMSPriority": 4,               # JMS' default, as the client writes
        "JMSType": "BytesMessage",
    }
    assert p.priority is None           # no AMQP priority is made up
    assert p.correlation_id is None and p.reply_to is None
    assert p.expiration is None
    assert p.delivery_mode == 1
    assert p.message_id == mid
    assert p.timestamp == ts // 1000


@pytest.mark.parametrize("ctype,encoding,jms_type", [
    ("text/plain", None, "TextMessage"),
    ("text/csv; charset=UTF-8", None, "TextMessage"),
    ("application/xml", None, "TextMessage"),
    ("application/problem+json", None, "TextMessage"),
    ("text/plain; charset=iso-8859-1", None, "BytesMessage"),
    ("application/json", "gzip", "BytesMessage"),
    ("application/octet-stream", None, "BytesMessage"),
    (None, None, "BytesMessage"),
])
def test_text_or_bytes_by_content_type(rabbitmq, gateway, queue, ctype,
                                       encoding, jms_type):
    gw = jms_gateway(gateway, rabbitmq, queue)
    h = {}
    if ctype:
        h["Content-Type"] = ctype
    if encoding:
        h["Content-Encoding"] = encoding
    r = post(gw, b"abc", h)
    assert r.status_code == 202, r.text
    [(m, p, body)] = queue.drain(expect=1)
    assert p.headers["JMSType"] == jms_type


def test_without_use_jms_no_jms_header_is_added(rabbitmq, gateway, queue):
    gw = jms_gateway(gateway, rabbitmq, queue, use_jms=False)
    r = post(gw, b"x", {"Content-Type": "text/plain", "X-Message-Id": "p-1",
                        "X-Correlation-Id": "c", "X-Priority": "3",
                        "X-Expiration": "1000",
                        "X-Zmq-Header-JMSType": "theirs"})
    assert r.status_code == 202, r.text
    [(m, p, body)] = queue.drain(expect=1)
    # a header the request names is its own business without use_jms
    assert p.headers == {"JMSType": "theirs"}


@pytest.mark.parametrize("name", ["JMSType", "jmsmessageid", "JMSXGroupID",
                                  "Jms-Anything"])
def test_a_request_cannot_set_a_jms_header_on_a_use_jms_connection(
        rabbitmq, gateway, queue, name):
    gw = jms_gateway(gateway, rabbitmq, queue)
    r = post(gw, b"x", {"X-Zmq-Header-" + name: "forged"})
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "bad_header"
    assert "JMS or rmq." in r.json()["message"]
    assert queue.drain(timeout=0.5) == []


def test_an_rmq_header_never_gets_through(rabbitmq, gateway, queue):
    """NGINX drops a header name with a dot (ignore_invalid_headers); were
    it let through, the gateway would refuse it like a JMS one."""
    gw = jms_gateway(gateway, rabbitmq, queue)
    r = post(gw, b"x", {"X-Zmq-Header-rmq.jms.message.id": "forged"})
    if r.status_code == 400:
        assert "JMS or rmq." in r.json()["message"]
        return
    assert r.status_code == 202, r.text
    [(m, p, body)] = queue.drain(expect=1)
    assert not [k for k in p.headers or {} if k.lower().startswith("rmq.")]
    assert p.headers["JMSType"] == "BytesMessage"


def test_the_gateways_jms_headers_win_over_the_services(rabbitmq, gateway,
                                                         queue):
    gw = jms_gateway(gateway, rabbitmq, queue, svc={
        "headers": {"JMSType": "Custom", "JMSMessageID": "ID:svc",
                    "Tenant": "t1"}})
    r = post(gw, b"x", {"Content-Type": "text/plain", "X-Message-Id": "g-1"})
    assert r.status_code == 202, r.text
    [(m, p, body)] = queue.drain(expect=1)
    assert p.headers["Tenant"] == "t1"
    assert p.headers["JMSType"] == "TextMessage"
    assert p.headers["JMSMessageID"] == "ID:g-1"


def test_longest_ids_still_fit(rabbitmq, gateway, queue):
    gw = jms_gateway(gateway, rabbitmq, queue)
    mid, cid = "m" * 255, "c" * 255
    r = post(gw, b"x", {"X-Message-Id": mid, "X-Correlation-Id": cid})
    assert r.status_code == 202, r.text
    [(m, p, body)] = queue.drain(expect=1)
    assert p.headers["JMSMessageID"] == "ID:" + mid
    assert p.headers["JMSCorrelationID"] == cid
    assert p.message_id == mid and p.correlation_id == cid


def test_properties_too_large_for_a_small_frame_are_refused_clearly(
        rabbitmq, gateway, queue):
    gw = gateway(amqp_config(rabbitmq.port, {"svc": {
        "routing_key": queue.name}}, amqp_def={"use_jms": True,
                                               "frame_max": 4096}), PUB)
    big = {"X-Zmq-Header-H%d" % i: "v" * 1000 for i in range(3)}
    r = post(gw, b"x", dict(big, **{"X-Message-Id": "m" * 255,
                                    "X-Correlation-Id": "c" * 255}))
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "bad_header"
    assert "do not fit in one AMQP frame" in r.json()["message"]
    assert queue.drain(timeout=0.5) == []
    # the connection is still good
    r = post(gw, b"x")
    assert r.status_code == 202, r.text


# --------------------------------------------------- zmqd consumes


def hook_config(rabbitmq, queue, url, use_jms=True, extra_services=(),
                service="hook"):
    doc = config(rabbitmq.port,
                 [{"name": "in", "queue": queue.name, "service": service}],
                 [{"name": "hook", "kind": "http", "outconn": "web",
                   "path": "/hook"}] + list(extra_services),
                 {"http_outconn": [{"name": "web", "url": url}]})
    doc["amqp_def"][0]["use_jms"] = use_jms
    return doc


def java_send(rabbitmq, queue, body, text=True, **over):
    """A message as RabbitMQ's JMS client sends it to an AMQP destination
    (RMQMessageProducer.sendAMQPMessage): content_type octet-stream, the
    AMQP delivery_mode/priority/correlation_id/expiration, the JMS headers
    and the user's properties; no message_id, no timestamp."""
    ms = now_ms()
    headers = {
        "JMSDeliveryMode": "PERSISTENT",
        "JMSMessageID": "ID:" + str(uuid.UUID(int=7)),
        "JMSTimestamp": ms,
        "JMSPriority": 6,
        "JMSCorrelationID": "corr-9",
        "Customer": "ACME",
        "Count": 3,
    }
    if text:
        headers["JMSType"] = "TextMessage"
    headers.update(over.pop("headers", {}))
    props = dict(content_type="application/octet-stream", delivery_mode=2,
                 priority=6, correlation_id="corr-9", headers=headers)
    props.update(over)
    conn = rabbitmq.connection()
    ch = conn.channel()
    ch.confirm_delivery()
    ch.basic_publish("", queue, body, pika.BasicProperties(**props))
    conn.close()
    return ms


def seen(http_endpoint, n=1):
    wait_for(lambda: len(http_endpoint.requests) >= n)
    return http_endpoint.requests[n - 1]


def no_jms(headers):
    return [k for k in headers if k.lower().startswith("x-zmq-header-jms")
            or k.lower().startswith("x-zmq-header-rmq.")]


def test_a_java_text_message_reaches_an_http_service_mapped(
        rabbitmq, queue, zmqd, http_endpoint):
    url = "http://127.0.0.1:%d" % http_endpoint.server_address[1]
    zmqd(hook_config(rabbitmq, queue, url)).wait_log("consuming queue")
    java_send(rabbitmq, queue.name, "h\u00e9llo".encode("utf-8"),
              headers={"rmq.jms.message.redelivered": "x",
                       "JMSXGroupID": "g"})
    headers, body = seen(http_endpoint)
    assert body == "h\u00e9llo".encode("utf-8")
    assert headers["X-Message-Id"] == str(uuid.UUID(int=7))
    assert headers["X-Correlation-Id"] == "corr-9"
    assert headers["Content-Type"] == "text/plain; charset=utf-8"
    assert headers["X-Zmq-Header-Customer"] == "ACME"
    assert no_jms(headers) == [], headers
    assert_acked(rabbitmq, queue.name)


def test_a_java_bytes_message_stays_octet_stream(rabbitmq, queue, zmqd,
                                                  http_endpoint):
    url = "http://127.0.0.1:%d" % http_endpoint.server_address[1]
    zmqd(hook_config(rabbitmq, queue, url)).wait_log("consuming queue")
    java_send(rabbitmq, queue.name, b"\x00\x01\xff", text=False)
    headers, body = seen(http_endpoint)
    assert body == b"\x00\x01\xff"
    assert headers["Content-Type"] == "application/octet-stream"
    assert headers["X-Message-Id"] == str(uuid.UUID(int=7))
    assert no_jms(headers) == [], headers


def test_without_use_jms_zmqd_passes_the_jms_headers_on(
        rabbitmq, queue, zmqd, http_endpoint):
    url = "http://127.0.0.1:%d" % http_endpoint.server_address[1]
    zmqd(hook_config(rabbitmq, queue, url, use_jms=False)).wait_log(
        "consuming queue")
    java_send(rabbitmq, queue.name, b"x")
    headers, body = seen(http_endpoint)
    assert headers["X-Zmq-Header-JMSMessageID"] == \
        "ID:" + str(uuid.UUID(int=7))
    assert headers["X-Message-Id"].startswith("tag ")
    assert headers["Content-Type"] == "application/octet-stream"


def test_the_mapped_properties_are_what_a_publish_service_forwards(
        rabbitmq, queue, zmqd):
    target = queue.name + ".out"
    queue.channel.queue_declare(target, durable=True)
    try:
        doc = hook_config(rabbitmq, queue, "http://127.0.0.1:9",
                          extra_services=[{"name": "fwd", "kind": "publish",
                                           "outconn": "out",
                                           "routing_key": target}],
                          service="fwd")
        zmqd(doc).wait_log("consuming queue")
        ms = java_send(rabbitmq, queue.name, b"fwd me",
                       headers={"JMSExpiration": 0})
        ms2 = java_send(rabbitmq, queue.name, b"and me", priority=None,
                        delivery_mode=None, headers={
                            "JMSExpiration": now_ms() + 30000,
                            "JMSTimestamp": now_ms() - 0, "JMSPriority": 2,
                            "JMSDeliveryMode": "NON_PERSISTENT",
                            "JMSType": "OrderCreated"})
        got = []

        def take():
            m, p, body = queue.channel.basic_get(target, auto_ack=True)
            if m is not None:
                got.append((p, body))
            return len(got) == 2
        wait_for(take)
        (p, body), (p2, body2) = got
        assert body == b"fwd me"
        assert p.message_id == str(uuid.UUID(int=7))
        assert p.correlation_id == "corr-9"
        assert p.timestamp == ms // 1000
        assert p.priority == 6 and p.delivery_mode == 2
        assert p.content_type == "text/plain; charset=utf-8"
        assert p.expiration is None          # JMSExpiration 0: never
        assert p.headers == {"Customer": "ACME", "Count": 3}

        assert body2 == b"and me"
        assert p2.priority == 2 and p2.delivery_mode == 1
        assert p2.type == "OrderCreated"
        assert p2.content_type == "application/octet-stream"
        assert 29000 <= int(p2.expiration) <= 30000
        assert p2.timestamp in (ms2 // 1000, ms2 // 1000 + 1)
        assert_acked(rabbitmq, queue.name)
    finally:
        queue.channel.queue_delete(target)


def test_hostile_jms_headers_are_dropped_not_passed_on(
        rabbitmq, queue, zmqd, http_endpoint):
    url = "http://127.0.0.1:%d" % http_endpoint.server_address[1]
    z = zmqd(hook_config(rabbitmq, queue, url))
    z.wait_log("consuming queue")
    hostile = {
        "JMSMessageID": 12345,
        "JMSTimestamp": "yesterday",
        "JMSPriority": 200,
        "JMSCorrelationID": "a\r\nX-Evil: 1",
        "JMSDeliveryMode": {"nested": ["table"]},
        "JMSType": ["TextMessage"],
        "JMSExpiration": -5,
        "JMSReplyTo": "amq.rabbitmq.reply-to.forged",
        "jmsmessageid": "sneaky",
        "Jmstype": "TextMessage",
    }
    java_send(rabbitmq, queue.name, b"one", correlation_id=None,
              priority=None, headers=dict(hostile, Customer="ACME"))
    # huge values: 50 KB ids, a 20-digit timestamp
    java_send(rabbitmq, queue.name, b"two", text=False, correlation_id=None,
              headers={"JMSMessageID": "ID:" + "x" * 50000,
                       "JMSCorrelationID": "y" * 50000,
                       "JMSTimestamp": "9" * 20,
                       "JMSExpiration": 2 ** 63 - 1})
    # the properties present win over disagreeing headers
    java_send(rabbitmq, queue.name, b"three", message_id="prop-id",
              correlation_id="prop-c",
              headers={"JMSMessageID": "ID:hdr", "JMSCorrelationID": "hdr"})

    (h1, b1) = seen(http_endpoint, 1)
    (h2, b2) = seen(http_endpoint, 2)
    (h3, b3) = seen(http_endpoint, 3)
    assert (b1, b2, b3) == (b"one", b"two", b"three")

    for h in (h1, h2):
        assert h["X-Message-Id"].startswith("tag "), h
        assert "X-Correlation-Id" not in h, h
        assert "X-Evil" not in h
        assert no_jms(h) == [], h
        assert h["Content-Type"] == "application/octet-stream"
    assert h1["X-Zmq-Header-Customer"] == "ACME"
    assert "X-Reply-To" not in h1
    assert h3["X-Message-Id"] == "prop-id"
    assert h3["X-Correlation-Id"] == "prop-c"
    assert_acked(rabbitmq, queue.name)
    assert "runtime error" not in z.text()


def test_a_service_sees_the_same_from_the_gateway_and_from_java(
        rabbitmq, gateway, queue, zmqd, http_endpoint):
    """The gateway publishes through a use_jms definition, a Java-like
    sender publishes the same message, zmqd with use_jms hands both to an
    http service: the service cannot tell them apart."""
    url = "http://127.0.0.1:%d" % http_endpoint.server_address[1]
    zmqd(hook_config(rabbitmq, queue, url)).wait_log("consuming queue")
    gw = jms_gateway(gateway, rabbitmq, queue)
    mid = str(uuid.UUID(int=7))
    r = post(gw, "h\u00e9llo".encode("utf-8"), {
        "Content-Type": "text/plain; charset=utf-8", "X-Message-Id": mid,
        "X-Correlation-Id": "corr-9", "X-Priority": "6",
        "X-Zmq-Header-Customer": "ACME"})
    assert r.status_code == 202, r.text
    h1, b1 = seen(http_endpoint, 1)
    java_send(rabbitmq, queue.name, "h\u00e9llo".encode("utf-8"))
    h2, b2 = seen(http_endpoint, 2)

    assert b1 == b2

    def view(h):
        return {k: v for k, v in h.items()
                if k.startswith("X-") or k == "Content-Type"}
    assert view(h1) == view(h2) == {
        "Content-Type": "text/plain; charset=utf-8",
        "X-Message-Id": mid,
        "X-Correlation-Id": "corr-9",
        "X-Zmq-Channel": "in",
        "X-Zmq-Header-Customer": "ACME",
    }, (view(h1), view(h2))
