"""Hostile inputs against what was built today (TLS, batches, idempotency
keys, trace context, the fleet, STOMP ping/send): each test asserts the
worker survives (the nginx fixture fails a test on a crash, an [alert] or
sanitizer output), the answer is the documented JSON error, and nothing is
lost or leaked. Run it under ASan too (see the file's README section)."""

import http.client
import json
import socket
import time

import pytest
import requests

from conftest import amqp_config

TP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

LOCS = ("location /pub { zmq_service svc; }\n"
        "location /batch { zmq_service svc; zmq_batch on; }\n"
        "location /env { zmq_service svc; zmq_batch on; "
        "zmq_batch_envelope on; }\n")


@pytest.fixture
def gw(rabbitmq, gateway, queue):
    g = gateway(amqp_config(rabbitmq.port, {"svc": {
        "routing_key": queue.name}}), LOCS)
    g.queue = queue
    return g


def raw_post(gw, path, headers, body=b""):
    """A request with headers repeated as given (a list of pairs)."""
    c = http.client.HTTPConnection("127.0.0.1", gw.ngx.port, timeout=30)
    c.putrequest("POST", path)
    for k, v in headers:
        c.putheader(k, v)
    c.putheader("Content-Length", str(len(body)))
    c.endheaders()
    c.send(body)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data


# ----------------------------------------------------------- trace context

def test_33_long_tracestate_lines_are_dropped_not_copied_past_the_buffer(gw):
    """33 tracestate lines: the 33rd made the joined length look like
    exactly 512 bytes, and the 32 kept lines (here 8 KB) were copied into a
    513-byte buffer (a heap overflow in the worker)."""
    lines = [("tracestate", "k%d=%s" % (i, "v" * 240)) for i in range(33)]
    status, body = raw_post(gw, "/pub", [("traceparent", TP)] + lines, b"{}")
    assert status == 202, body
    [(_, props, _)] = gw.queue.drain(expect=1)
    assert props.headers == {"traceparent": TP}
    assert "tracestate dropped: has more than 32 list members" \
        in gw.ngx.error_log()
