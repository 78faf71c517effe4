"""Errors get a JSON body: a body that stops arriving (client_body_timeout)
gets 408 body_timeout instead of a closed connection, and with
zmq_json_errors the errors NGINX raises before a location is chosen (a bad
request line, a bare CR in a header, an unsupported Transfer-Encoding)
are JSON too."""

import json
import os
import socket
import time

import pytest

from conftest import ROOT, amqp_config

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


# ------------------------------------------- errors before a location is chosen

DEMO = os.path.join(ROOT, "conf", "demo.json")
PUB = "location = /pub { zmq_service customer.updates; }\n"

# (name, request bytes, status, error code): NGINX rejects each of these
# before it has chosen a location, some before it knows the virtual server
EARLY = [
    ("bad request line", b"GARBAGE\r\n\r\n", 400, "bad_request"),
    ("bad method", b"G@T /pub HTTP/1.1\r\nHost: x\r\n\r\n", 400,
     "bad_request"),
    ("bare CR in a header",
     b"POST /pub HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n", 400,
     "bad_request"),
    ("bare CR in a header before Host",
     b"POST /pub HTTP/1.1\r\nX-A: a\rb\r\nHost: x\r\n\r\n", 400,
     "bad_request"),
    ("NUL in a header", b"POST /pub HTTP/1.1\r\nHost: x\r\nX-A: a\0b\r\n\r\n",
     400, "bad_request"),
    ("Transfer-Encoding gzip, chunked",
     b"POST /pub HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked"
     b"\r\n\r\n", 501, "not_implemented"),
    ("Content-Length and Transfer-Encoding",
     b"POST /pub HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, "bad_request"),
    ("bad Content-Length",
     b"POST /pub HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", 400,
     "bad_request"),
    ("HTTP/1.1 without Host", b"POST /pub HTTP/1.1\r\n\r\n", 400,
     "bad_request"),
    ("two Host headers", b"POST /pub HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
     400, "bad_request"),
    ("invalid Host", b"POST /pub HTTP/1.1\r\nHost: a/b\r\n\r\n", 400,
     "bad_request"),
    ("HTTP/2.0 on an HTTP/1 listener", b"POST /pub HTTP/2.0\r\nHost: x\r\n\r\n",
     505, "http_version_not_supported"),
    ("headers over large_client_header_buffers",
     b"POST /pub HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * 9000 + b"\r\n\r\n",
     400, "bad_request"),
    ("request line over large_client_header_buffers",
     b"POST /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414,
     "uri_too_long"),
    ("a path no location serves", b"GET /nothing HTTP/1.1\r\nHost: x\r\n"
     b"Connection: close\r\n\r\n", 404, "not_found"),
]


def early_gateway(nginx_factory, http="", server=""):
    return nginx_factory(http="zmq_config file:%s;\n%s" % (DEMO, http),
                         server=server + PUB).start()


@pytest.mark.parametrize("name,request_bytes,status,code", EARLY,
                         ids=[e[0] for e in EARLY])
def test_early_errors_are_json_with_zmq_json_errors_in_the_server(
        nginx_factory, name, request_bytes, status, code):
    ngx = early_gateway(nginx_factory, server="zmq_json_errors on;\n")
    got, hdrs, body, _ = raw(ngx.port, [request_bytes])
    assert got == status, body
    assert json_error(got, hdrs, body) == code
    assert int(hdrs["content-length"]) == len(body)


@pytest.mark.parametrize("name,request_bytes,status,code", EARLY[:6],
                         ids=[e[0] for e in EARLY[:6]])
def test_early_errors_are_json_with_zmq_json_errors_in_http(
        nginx_factory, name, request_bytes, status, code):
    ngx = early_gateway(nginx_factory, http="zmq_json_errors on;\n")
    got, hdrs, body, _ = raw(ngx.port, [request_bytes])
    assert got == status and json_error(got, hdrs, body) == code


@pytest.mark.parametrize("name,request_bytes,status,code", EARLY[:6],
                         ids=[e[0] for e in EARLY[:6]])
def test_without_zmq_json_errors_early_errors_stay_nginx_pages(
        nginx_factory, name, request_bytes, status, code):
    # even for a request to a zmq_service location: NGINX rejects it before
    # it knows the location
    ngx = early_gateway(nginx_factory)
    got, hdrs, body, _ = raw(ngx.port, [request_bytes])
    assert got == status
    assert hdrs["content-type"] == "text/html"


def test_zmq_json_errors_off_in_a_location_gives_nginx_pages_there(
        nginx_factory):
    ngx = early_gateway(nginx_factory, server="zmq_json_errors on;\n"
                        "location /html/ { zmq_json_errors off; }\n")
    got, hdrs, _, _ = raw(ngx.port, [b"GET /html/x HTTP/1.1\r\nHost: x\r\n"
                                     b"Connection: close\r\n\r\n"])
    assert got == 404 and hdrs["content-type"] == "text/html"
    got, hdrs, body, _ = raw(ngx.port, [b"GET /other HTTP/1.1\r\nHost: x\r\n"
                                        b"Connection: close\r\n\r\n"])
    assert got == 404 and json_error(got, hdrs, body) == "not_found"


def two_servers(nginx_factory, default, named):
    """Two servers on one port: the first (default) with `default`
    directives, one named json.test with `named`."""
    ngx = nginx_factory(http="zmq_config file:%s;" % DEMO,
                        server="server_name json.test;\n" + named + PUB)
    with open(ngx.conf) as f:
        text = f.read()
    text = text.replace(
        "    server {",
        "    server {\n        listen 127.0.0.1:%d default_server;\n"
        "        server_name default.test;\n        %s\n    }\n"
        "    server {" % (ngx.port, default), 1)
    with open(ngx.conf, "w") as f:
        f.write(text)
    return ngx.start()


def test_before_the_host_is_known_the_default_server_decides(nginx_factory):
    ngx = two_servers(nginx_factory, default="", named="zmq_json_errors on;")
    # the request line: the virtual server is not known yet
    got, hdrs, _, _ = raw(ngx.port, [b"GARBAGE\r\n\r\n"])
    assert got == 400 and hdrs["content-type"] == "text/html"
    # a bad header before Host: still the default server
    got, hdrs, _, _ = raw(ngx.port, [b"POST /pub HTTP/1.1\r\nX-A: a\rb\r\n"
                                     b"Host: json.test\r\n\r\n"])
    assert got == 400 and hdrs["content-type"] == "text/html"
    # after Host: the named server
    got, hdrs, body, _ = raw(ngx.port, [b"POST /pub HTTP/1.1\r\n"
                                        b"Host: json.test\r\nX-A: a\rb\r\n"
                                        b"\r\n"])
    assert got == 400 and json_error(got, hdrs, body) == "bad_request"
    got, hdrs, body, _ = raw(ngx.port, [b"POST /pub HTTP/1.1\r\n"
                                        b"Host: json.test\r\n"
                                        b"Transfer-Encoding: gzip, chunked"
                                        b"\r\n\r\n"])
    assert got == 501 and json_error(got, hdrs, body) == "not_implemented"

    ngx.stop()
    ngx = two_servers(nginx_factory, default="zmq_json_errors on;", named="")
    got, hdrs, body, _ = raw(ngx.port, [b"GARBAGE\r\n\r\n"])
    assert got == 400 and json_error(got, hdrs, body) == "bad_request"


def test_what_cannot_be_json(nginx_factory):
    ngx = early_gateway(nginx_factory, http="client_header_timeout 1s;\n",
                        server="zmq_json_errors on;\n")
    # headers that stop arriving: NGINX closes without an answer
    got, _, body, took = raw(ngx.port, [b"POST /pub HTTP/1.1\r\nHost: x\r\n"])
    assert got is None and body == b"" and 0.9 <= took < 8
    # an HTTP/0.9 request has no status line and no headers: the JSON
    # body alone
    s = socket.create_connection(("127.0.0.1", ngx.port), timeout=10)
    s.sendall(b"GET /nothing\r\n")
    out = b""
    while True:
        d = s.recv(65536)
        if not d:
            break
        out += d
    s.close()
    assert json.loads(out)["error"] == "not_found"


def test_a_zmq_location_names_nginx_errors_by_their_status(nginx_factory):
    # an access rule in a zmq_service location: 403 forbidden, not an
    # internal error
    ngx = early_gateway(nginx_factory, server="location = /denied {\n"
                        "    zmq_service customer.updates;\n"
                        "    deny all;\n}\n")
    got, hdrs, body, _ = raw(ngx.port, [b"POST /denied HTTP/1.1\r\n"
                                        b"Host: x\r\nContent-Length: 0\r\n"
                                        b"Connection: close\r\n\r\n"])
    assert got == 403 and json_error(got, hdrs, body) == "forbidden"
