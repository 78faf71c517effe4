"""W3C Trace Context through zmqd (issue 20): a consumed message's
traceparent and tracestate (AMQP headers, or STOMP headers on a
stomp_channel), when valid, reach an HTTP service as the request headers
traceparent/tracestate (and X-Zmq-Header-<name>, as every string header),
stay on what zmqd publishes (publish services, replies, dead letters,
invocations and their callbacks), and every log line about the message
shows trace=<trace-id>. A malformed traceparent is left out of the HTTP
request and of the log. End to end: HTTP client -> gateway (REST channel)
-> RabbitMQ (pika reads the headers) -> zmqd -> an HTTP service."""

import time
import uuid

import pika
import pytest
import requests

from activemq_helpers import rabbitmq_stomp, unique_queue  # noqa: F401
from conftest import amqp_config
from test_zmqd import config, http_endpoint, wait_for  # noqa: F401
from test_zmqd_invoke import invoke_config, iq, web  # noqa: F401
from zmqd_helpers import zmqd  # noqa: F401

TP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
TRACE = "trace=4bf92f3577b34da6a3ce929d0e0e4736"
TS = "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"
ROUTER = "location /api/ { zmq_router; }\n"
ONE_RETRY = {"attempts": 1, "initial_delay": 50, "multiplier": 1,
             "max_delay": 50}


def url_of(endpoint):
    return "http://127.0.0.1:%d" % endpoint.server_address[1]


def hdr(headers, name):
    """A request header by name, any case (http.server keeps the case)."""
    for k, v in headers.items():
        if k.lower() == name.lower():
            return v
    return None


def trace_headers(headers):
    return sorted((k.lower(), v) for k, v in headers.items()
                  if "trace" in k.lower())


def zmqd_doc(rabbitmq, endpoint, queue, service="hook", services=(),
             retry=None):
    ch = {"name": "in", "queue": queue, "service": service}
    if retry:
        ch["retry"] = retry
    return config(rabbitmq.port, [ch],
                  [{"name": "hook", "kind": "http", "outconn": "web",
                    "path": "/hook"}] + list(services),
                  {"http_outconn": [{"name": "web",
                                     "url": url_of(endpoint)}]})


def publish(rabbitmq, queue, headers, body=b"{}", **props):
    conn = rabbitmq.connection()
    ch = conn.channel()
    ch.confirm_delivery()
    mid = props.pop("message_id", "m-" + uuid.uuid4().hex[:8])
    ch.basic_publish("", queue, body, pika.BasicProperties(
        delivery_mode=2, message_id=mid, headers=headers, **props))
    conn.close()
    return mid


def get(rabbitmq, queue, timeout=15):
    """One message of a queue, acked (pika)."""
    conn = rabbitmq.connection()
    ch = conn.channel()
    deadline = time.monotonic() + timeout
    while True:
        m, p, body = ch.basic_get(queue, auto_ack=True)
        if m is not None:
            conn.close()
            return p, body
        assert time.monotonic() < deadline, "nothing in %s" % queue
        time.sleep(0.05)


@pytest.fixture
def extra_queues(rabbitmq):
    """Queues a test declares (durable), deleted afterwards."""
    names = []

    def declare(name):
        conn = rabbitmq.connection()
        conn.channel().queue_declare(name, durable=True)
        conn.close()
        names.append(name)
        return name
    yield declare
    conn = rabbitmq.connection()
    ch = conn.channel()
    for n in names:
        ch.queue_delete(n)
    conn.close()


@pytest.fixture
def gw(rabbitmq, gateway, queue):
    doc = amqp_config(rabbitmq.port, {"svc": {"routing_key": queue.name}})
    doc["rest_channel"] = [{"name": "orders", "url_path": "/api/orders",
                            "service": "svc"}]
    return gateway(doc, ROUTER)


def post(gw, headers):
    h = {"Content-Type": "application/json"}
    h.update(headers)
    r = requests.post(gw.url + "/api/orders", data=b'{"n": 1}', headers=h,
                      timeout=30)
    assert r.status_code == 202, r.text
    return r.json()["message_id"]


# ---------------------------------------------------------- end to end

def test_trace_context_goes_from_the_http_client_to_the_http_service(
        rabbitmq, queue, gw, zmqd, http_endpoint):
    mid = post(gw, {"traceparent": TP, "tracestate": TS})

    # in RabbitMQ: the message's headers table (pika), then put back
    deadline = time.monotonic() + 10
    m = None
    while m is None:
        m, p, body = queue.channel.basic_get(queue.name, auto_ack=False)
        assert m is not None or time.monotonic() < deadline
        time.sleep(0.05 if m is None else 0)
    assert p.message_id == mid
    assert p.headers == {"traceparent": TP, "tracestate": TS}
    queue.channel.basic_nack(m.delivery_tag, requeue=True)

    # zmqd -> the HTTP service: the W3C headers, and X-Zmq-Header-*
    z = zmqd(zmqd_doc(rabbitmq, http_endpoint, queue.name))
    wait_for(lambda: http_endpoint.requests)
    [(h, body)] = http_endpoint.requests
    assert body == b'{"n": 1}'
    assert hdr(h, "X-Message-Id") == mid
    assert trace_headers(h) == sorted([
        ("traceparent", TP), ("tracestate", TS),
        ("x-zmq-header-traceparent", TP), ("x-zmq-header-tracestate", TS)])

    # zmqd's log: the trace id with the message
    z.wait_log("channel 'in': message '%s' (%s) done by service 'hook'"
               % (mid, TRACE))


def test_a_malformed_traceparent_never_reaches_the_http_service(
        rabbitmq, queue, gw, zmqd, http_endpoint):
    z = zmqd(zmqd_doc(rabbitmq, http_endpoint, queue.name))
    z.wait_log("consuming queue '%s'" % queue.name)
    mid = post(gw, {"traceparent": TP.upper(), "tracestate": TS})
    wait_for(lambda: http_endpoint.requests)
    [(h, _)] = http_endpoint.requests
    assert trace_headers(h) == []
    z.wait_log("message '%s' done by service 'hook'" % mid)
    assert "trace=" not in z.text()


# ----------------------------------------------- zmqd checks what it gets

@pytest.mark.parametrize("headers", [
    {"traceparent": TP.upper(), "tracestate": TS},
    {"traceparent": "ff" + TP[2:], "tracestate": TS},
    {"traceparent": TP + "\r\nX-Injected: 1", "tracestate": TS},
    {"traceparent": 7, "tracestate": TS},
    {"traceparent": TP, "Traceparent": TP, "tracestate": TS},
    {"tracestate": TS},
], ids=["uppercase", "version-ff", "crlf", "integer", "twice",
        "state-alone"])
def test_zmqd_leaves_a_malformed_traceparent_out_with_its_tracestate(
        rabbitmq, queue, zmqd, http_endpoint, headers):
    z = zmqd(zmqd_doc(rabbitmq, http_endpoint, queue.name))
    mid = publish(rabbitmq, queue.name, dict(headers, tenant="acme"))
    wait_for(lambda: http_endpoint.requests)
    [(h, _)] = http_endpoint.requests
    assert trace_headers(h) == []
    assert hdr(h, "X-Zmq-Header-tenant") == "acme"
    # delivered and acked, not refused (a CR in a header would be)
    z.wait_log("message '%s' done by service 'hook'" % mid)
    assert "trace=" not in z.text()
    assert "dead-lettered" not in z.text()


def test_zmqd_drops_an_invalid_tracestate_alone(rabbitmq, queue, zmqd,
                                                http_endpoint):
    zmqd(zmqd_doc(rabbitmq, http_endpoint, queue.name))
    publish(rabbitmq, queue.name, {"traceparent": TP,
                                   "tracestate": "Rojo=1"})
    wait_for(lambda: http_endpoint.requests)
    [(h, _)] = http_endpoint.requests
    assert trace_headers(h) == [("traceparent", TP),
                                ("x-zmq-header-traceparent", TP)]


def test_a_byte_array_traceparent_is_taken_like_a_string(
        rabbitmq, queue, zmqd, http_endpoint):
    # pika sends bytes values as field kind 'x' (byte array)
    zmqd(zmqd_doc(rabbitmq, http_endpoint, queue.name))
    publish(rabbitmq, queue.name, {"traceparent": TP.encode(),
                                   "tracestate": TS.encode()})
    wait_for(lambda: http_endpoint.requests)
    [(h, _)] = http_endpoint.requests
    assert hdr(h, "traceparent") == TP and hdr(h, "tracestate") == TS


# ------------------------------------------------ what zmqd publishes

def test_a_publish_service_forwards_the_trace_context(
        rabbitmq, queue, zmqd, http_endpoint, extra_queues):
    out = extra_queues(queue.name + ".out")
    z = zmqd(zmqd_doc(rabbitmq, http_endpoint, queue.name, service="fwd",
                      services=[{"name": "fwd", "kind": "publish",
                                 "outconn": "out", "exchange": "",
                                 "routing_key": out}]))
    mid = publish(rabbitmq, queue.name, {"traceparent": TP,
                                         "tracestate": TS})
    p, body = get(rabbitmq, out)
    assert p.message_id == mid
    assert p.headers == {"traceparent": TP, "tracestate": TS}
    z.wait_log("message '%s' (%s) done by service 'fwd'" % (mid, TRACE))


def test_a_reply_carries_the_requests_trace_context(
        rabbitmq, queue, zmqd, http_endpoint, extra_queues):
    replies = extra_queues(queue.name + ".replies")
    zmqd(zmqd_doc(rabbitmq, http_endpoint, queue.name))
    publish(rabbitmq, queue.name, {"traceparent": TP, "tracestate": TS},
            reply_to=replies, correlation_id="c-1")
    p, _ = get(rabbitmq, replies)
    assert p.correlation_id == "c-1"
    assert p.headers == {"x-zmq-status": 200, "traceparent": TP,
                         "tracestate": TS}


def test_a_reply_leaves_a_malformed_traceparent_out(
        rabbitmq, queue, zmqd, http_endpoint, extra_queues):
    replies = extra_queues(queue.name + ".replies")
    zmqd(zmqd_doc(rabbitmq, http_endpoint, queue.name))
    publish(rabbitmq, queue.name, {"traceparent": TP[:-1],
                                   "tracestate": TS},
            reply_to=replies, correlation_id="c-1")
    p, _ = get(rabbitmq, replies)
    assert p.headers == {"x-zmq-status": 200}


def test_a_dead_letter_keeps_the_trace_context_and_logs_it(
        rabbitmq, queue, zmqd, http_endpoint, extra_queues):
    extra_queues(queue.name + ".dead")
    http_endpoint.status = lambda body: 500
    z = zmqd(zmqd_doc(rabbitmq, http_endpoint, queue.name,
                      retry=ONE_RETRY))
    mid = publish(rabbitmq, queue.name, {"traceparent": TP,
                                         "tracestate": TS})
    p, _ = get(rabbitmq, queue.name + ".dead")
    assert p.message_id == mid
    assert p.headers["traceparent"] == TP and p.headers["tracestate"] == TS
    assert p.headers["x-zmq-attempts"] == 2
    z.wait_log("message '%s' (%s) failed (attempt 1)" % (mid, TRACE))
    z.wait_log("message '%s' (%s) dead-lettered after 2 attempt(s)"
               % (mid, TRACE))
    assert len(http_endpoint.requests) == 2
    assert all(hdr(h, "traceparent") == TP
               for h, _ in http_endpoint.requests)


def test_an_invocation_passes_it_to_its_target_and_its_callback(
        rabbitmq, queue, zmqd, web, iq):
    doc = invoke_config(rabbitmq, web, iq, mode="async", seconds=0)
    web.paths["/target"] = lambda b: (200, "application/json", b"{}")
    doc["amqp_channel"] = [{"name": "in", "def": "rabbit",
                            "queue": queue.name, "service": "inv",
                            "prefetch": 10}]
    z = zmqd(doc)
    publish(rabbitmq, queue.name, {"traceparent": TP, "tracestate": TS})
    wait_for(lambda: web.seen.get("/cb"), 20)
    with web.lock:
        [(target, _)] = web.seen["/target"]
        [(callback, _)] = web.seen["/cb"]
    for h in (target, callback):
        assert hdr(h, "traceparent") == TP and hdr(h, "tracestate") == TS
    z.wait_log("(%s) of 'inv': target 'tgt' done" % TRACE)
    z.wait_log("(%s) of 'inv': callback 'cb' done" % TRACE)


# ------------------------------------------------------------- STOMP

def test_a_stomp_channel_passes_stomp_trace_headers_on(
        rabbitmq_stomp, zmqd, http_endpoint):
    q = unique_queue("tr")
    conn = rabbitmq_stomp.connection()
    ch = conn.channel()
    ch.queue_declare(q, durable=True)
    ch.queue_declare(q + ".dead", durable=True)
    http_endpoint.status = lambda body: 200 if body == b"good" else 500
    doc = {"stomp_def": [{"name": "broker", "host": "127.0.0.1",
                          "port": rabbitmq_stomp.stomp_port, "heartbeat": 2,
                          "login": "guest", "passcode": "guest",
                          "virtual_host": "/"}],
           "stomp_channel": [{"name": "in", "def": "broker",
                              "destination": "/amq/queue/" + q,
                              "service": "hook", "prefetch": 10,
                              "retry": ONE_RETRY,
                              "dead_letter": "/amq/queue/%s.dead" % q}],
           "http_outconn": [{"name": "web", "url": url_of(http_endpoint)}],
           "service": [{"name": "hook", "kind": "http", "outconn": "web",
                        "path": "/hook"}]}
    z = zmqd(doc)
    z.wait_log("consuming '/amq/queue/%s'" % q)
    # RabbitMQ's STOMP plugin gives AMQP headers as STOMP headers
    for body in (b"good", b"bad"):
        ch.basic_publish("", q, body, pika.BasicProperties(
            message_id="m-" + body.decode(),
            headers={"traceparent": TP, "tracestate": TS}))
    z.wait_log("message 'm-good' (%s) done by service 'hook'" % TRACE)
    z.wait_log("message 'm-bad' (%s) dead-lettered to" % TRACE)
    good = [h for h, b in http_endpoint.requests if b == b"good"][0]
    assert hdr(good, "traceparent") == TP and hdr(good, "tracestate") == TS
    m = None
    deadline = time.monotonic() + 15
    while m is None and time.monotonic() < deadline:
        m, p, body = ch.basic_get(q + ".dead", auto_ack=True)
        time.sleep(0.05)
    assert m is not None and body == b"bad"
    assert p.headers["traceparent"] == TP and p.headers["tracestate"] == TS
    ch.queue_delete(q)
    ch.queue_delete(q + ".dead")
    conn.close()
