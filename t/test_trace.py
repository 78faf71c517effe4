"""W3C Trace Context (issue 20): a request's traceparent and tracestate,
when valid, are copied into the message's headers table under the same
names; a malformed traceparent is dropped (and tracestate with it); with
zmq_trace on a request without one starts a trace. Checked with pika."""

import http.client
import re

import pytest
import requests

from conftest import amqp_config

TP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
TS = "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"
NEW_TP = re.compile(r"00-[0-9a-f]{32}-[0-9a-f]{16}-01")

LOCS = ("location /pub { zmq_service svc; }\n"
        "location /traced { zmq_service svc; zmq_trace on; }\n"
        "location /batch { zmq_service svc; zmq_batch on; zmq_trace on; }\n")


@pytest.fixture
def gw(rabbitmq, gateway, queue):
    g = gateway(amqp_config(rabbitmq.port, {"svc": {
        "routing_key": queue.name}}), LOCS)
    g.queue = queue
    return g


def publish(gw, headers, path="/pub", data=b"{}"):
    r = requests.post(gw.url + path, data=data, headers=headers, timeout=30)
    assert r.status_code in (200, 202), r.text
    return r


def headers_of(gw, n=1):
    got = gw.queue.drain(expect=n)
    assert len(got) == n
    return [p.headers or {} for _, p, _ in got]


def test_valid_trace_context_is_copied_as_sent(gw):
    publish(gw, {"traceparent": TP, "tracestate": TS,
                 "X-Zmq-Header-Tenant": "acme"})
    [h] = headers_of(gw)
    assert h == {"traceparent": TP, "tracestate": TS, "Tenant": "acme"}


def test_no_trace_context_adds_nothing_without_zmq_trace(gw):
    publish(gw, {})
    [h] = headers_of(gw)
    assert h == {}


@pytest.mark.parametrize("bad", [
    TP.upper(),                                             # uppercase hex
    "01" + TP[2:],                                          # version 01
    "ff" + TP[2:],                                          # version ff
    "00-" + "0" * 32 + TP[35:],                             # zero trace id
    TP[:36] + "0" * 16 + TP[52:],                           # zero parent id
    TP + "-extra",                                          # too long
    TP[:-1],                                                # too short
    TP.replace("-", "_"),                                   # separators
    TP[:53] + "zz",                                         # flags
    "",                                                     # empty
], ids=["uppercase", "v01", "vff", "zero-trace", "zero-parent", "long",
        "short", "separator", "flags", "empty"])
def test_a_malformed_traceparent_is_dropped_with_its_tracestate(gw, bad):
    publish(gw, {"traceparent": bad, "tracestate": TS})
    [h] = headers_of(gw)
    assert "traceparent" not in h and "tracestate" not in h


@pytest.mark.parametrize("bad", [
    "Rojo=1",                                   # uppercase key
    "rojo",                                     # no =
    "rojo=1,rojo=2",                            # a key twice
    "rojo=a,b",                                 # a member without =
    ",".join("k%d=v" % i for i in range(33)),   # 33 members
    "k=" + "v" * 256 + ",j=" + "v" * 255,       # over 512 bytes
    "rojo=tab\there",                           # control character
    "rojo=",                                    # empty value
], ids=["uppercase", "no-equals", "twice", "member", "33", "513", "ctl",
        "empty-value"])
def test_a_bad_tracestate_is_dropped_alone(gw, bad):
    publish(gw, {"traceparent": TP, "tracestate": bad})
    [h] = headers_of(gw)
    assert h == {"traceparent": TP}


def test_tracestate_limits_are_inclusive(gw):
    members = ",".join("k%d=v" % i for i in range(32))
    publish(gw, {"traceparent": TP, "tracestate": members})
    long = "a@b=" + "v" * 256 + ",c=" + "w" * 249          # 512 bytes
    assert len(long) == 512
    publish(gw, {"traceparent": TP, "tracestate": long})
    h1, h2 = headers_of(gw, 2)
    assert h1["tracestate"] == members and h2["tracestate"] == long


def test_tracestate_without_traceparent_is_dropped(gw):
    publish(gw, {"tracestate": TS})
    [h] = headers_of(gw)
    assert h == {}


def test_two_tracestate_lines_are_one_list(gw):
    c = http.client.HTTPConnection("127.0.0.1", gw.ngx.port, timeout=30)
    c.putrequest("POST", "/pub")
    c.putheader("traceparent", TP)
    c.putheader("tracestate", "rojo=1")
    c.putheader("tracestate", "congo=2")
    c.putheader("Content-Length", "0")
    c.endheaders()
    assert c.getresponse().status == 202
    [h] = headers_of(gw)
    assert h == {"traceparent": TP, "tracestate": "rojo=1,congo=2"}


def test_two_traceparent_lines_are_malformed(gw):
    c = http.client.HTTPConnection("127.0.0.1", gw.ngx.port, timeout=30)
    c.putrequest("POST", "/pub")
    c.putheader("traceparent", TP)
    c.putheader("traceparent", TP)
    c.putheader("Content-Length", "0")
    c.endheaders()
    assert c.getresponse().status == 202
    [h] = headers_of(gw)
    assert h == {}


def test_zmq_trace_on_starts_a_trace(gw):
    publish(gw, {"tracestate": TS}, path="/traced")
    publish(gw, {}, path="/traced")
    h1, h2 = headers_of(gw, 2)
    for h in (h1, h2):
        assert NEW_TP.fullmatch(h["traceparent"]), h
        assert h["traceparent"][3:35] != "0" * 32
        assert h["traceparent"][36:52] != "0" * 16
        assert "tracestate" not in h        # belonged to no trace of ours
    assert h1["traceparent"][3:35] != h2["traceparent"][3:35]


def test_zmq_trace_on_keeps_a_valid_one_and_replaces_a_malformed_one(gw):
    publish(gw, {"traceparent": TP, "tracestate": TS}, path="/traced")
    publish(gw, {"traceparent": TP.upper(), "tracestate": TS},
            path="/traced")
    h1, h2 = headers_of(gw, 2)
    assert h1 == {"traceparent": TP, "tracestate": TS}
    assert NEW_TP.fullmatch(h2["traceparent"]) and h2["traceparent"] != TP
    assert "tracestate" not in h2


@pytest.mark.parametrize("name", ["traceparent", "TraceState"])
def test_trace_headers_cannot_be_set_through_x_zmq_header(gw, name):
    r = requests.post(gw.url + "/pub", headers={"X-Zmq-Header-" + name: TP},
                      timeout=30)
    assert r.status_code == 400
    assert r.json()["error"] == "bad_header"
    assert gw.queue.count() == 0


def test_every_message_of_a_batch_carries_the_trace(gw):
    publish(gw, {"Content-Type": "application/x-ndjson", "traceparent": TP},
            path="/batch", data=b"1\n2\n3\n")
    assert [h["traceparent"] for h in headers_of(gw, 3)] == [TP] * 3
    publish(gw, {"Content-Type": "application/x-ndjson"}, path="/batch",
            data=b"1\n2\n")
    h = headers_of(gw, 2)
    assert NEW_TP.fullmatch(h[0]["traceparent"])
    assert h[0]["traceparent"] == h[1]["traceparent"]
