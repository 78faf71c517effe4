"""Errors get a JSON body: a body that stops arriving (client_body_timeout)
gets 408 body_timeout instead of a closed connection, and with
zmq_json_errors the errors NGINX raises before a location is chosen (a bad
request line, a bare CR in a header, an unsupported Transfer-Encoding)
are JSON too."""

import json
import socket
import time

import pytest

from conftest import amqp_config

TIMEOUT_LOCATIONS = """
client_body_timeout 1s;
location = /pub { zmq_service svc; }
location = /json { zmq_service svc; zmq_data_format json; }
location /api/ { zmq_router; }
"""


def raw(port, data, timeout=10, pause=None):
    """Send data (a list: one write each, pause seconds apart), read the
    answer until the server closes. Returns (status, headers, body, secs)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    started = time.monotonic()
    try:
        for i, part in enumerate(data):
            if i and pause:
                time.sleep(pause)
            s.sendall(part)
        out = b""
        while True:
            try:
                d = s.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not d:
                break
            out += d
    finally:
        s.close()
    took = time.monotonic() - started
    if not out:
        return None, {}, b"", took
    head, _, body = out.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    hdrs = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    return int(lines[0].split()[1]), hdrs, body, took


def json_error(status, hdrs, body):
    assert hdrs.get("content-type") == "application/json", (status, body)
    doc = json.loads(body)
    assert set(doc) == {"error", "message"}
    return doc["error"]


@pytest.fixture
def timeout_gw(rabbitmq, gateway, queue):
    doc = amqp_config(rabbitmq.port, {"svc": {"routing_key": queue.name}})
    doc["rest_channel"] = [{"name": "r", "url_path": "/api/x",
                            "method": "POST", "service": "svc",
                            "data_format": "json"}]
    return gateway(doc, TIMEOUT_LOCATIONS)


@pytest.mark.parametrize("path", ["/pub", "/json", "/api/x"])
@pytest.mark.parametrize("chunked", [False, True], ids=["length", "chunked"])
def test_a_body_that_stops_arriving_gets_json_408(timeout_gw, queue, path,
                                                  chunked):
    if chunked:
        head = ("POST %s HTTP/1.1\r\nHost: x\r\n"
                "Transfer-Encoding: chunked\r\n\r\n" % path).encode()
        part = b"10\r\n{\"a\": 1, "
    else:
        head = ("POST %s HTTP/1.1\r\nHost: x\r\n"
                "Content-Length: 100\r\n\r\n" % path).encode()
        part = b'{"a": 1, '
    status, hdrs, body, took = raw(timeout_gw.ngx.port, [head, part],
                                   pause=0.1)
    assert status == 408, body
    assert json_error(status, hdrs, body) == "body_timeout"
    assert hdrs.get("connection") == "close"
    assert 0.9 <= took < 8
    assert queue.count() == 0
    assert "client timed out while sending the body" in \
        timeout_gw.ngx.error_log()


def test_a_slow_body_that_keeps_arriving_is_published(timeout_gw, queue):
    # each piece within client_body_timeout of the last: no 408
    head = (b"POST /pub HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            b"Content-Length: 4\r\n\r\n")
    status, _, body, took = raw(timeout_gw.ngx.port,
                                [head, b"a", b"b", b"c", b"d"], pause=0.6)
    assert status == 202, body
    assert took >= 2.4
    [(_, _, got)] = queue.drain(expect=1)
    assert got == b"abcd"


def test_the_connection_stays_usable_for_nothing_after_a_408(timeout_gw,
                                                            queue):
    # the answer says close; a request sent after it gets no answer
    head = (b"POST /pub HTTP/1.1\r\nHost: x\r\n"
            b"Content-Length: 10\r\n\r\n")
    s = socket.create_connection(("127.0.0.1", timeout_gw.ngx.port),
                                 timeout=10)
    try:
        s.sendall(head + b"abc")
        out = b""
        while b"\r\n\r\n" not in out or not out.endswith(b"}\n"):
            d = s.recv(65536)
            if not d:
                break
            out += d
        assert out.startswith(b"HTTP/1.1 408 ")
        # whatever follows is read and dropped, then the server closes
        try:
            s.sendall(b"defghij")
            rest = s.recv(65536)
        except ConnectionResetError:
            rest = b""
        assert rest == b""
    finally:
        s.close()
    assert queue.count() == 0
