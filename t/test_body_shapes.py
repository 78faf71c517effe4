"""Request bodies in every shape NGINX hands over, to every kind of
publishing location.

NGINX gives a module the body as a chain of buffers: memory (preread with
the headers or read later), a temporary file (a body larger than
client_body_buffer_size, or client_body_in_file_only), and an empty
end-of-body buffer (a chunked body always ends with one). Each case sends
one body, in one shape, to one location, and checks the answer: 202 with
the body byte for byte in the queue (read back with pika), or 400
invalid_json for a body that is not JSON in a JSON location; and no worker
may die (no "exited on signal" in the error log).

The gateway follows Redis, so the same NGINX serves zmq_service locations
and a zmq_router with REST channels.
"""

import json
import os
import socket
import time
import uuid

import pytest

from conftest import Nginx, Zmqctl, amqp_config

QUEUE = "t.shapes." + uuid.uuid4().hex[:8]

LOCATIONS = """
location = /zmq/status { zmq_status; }
location = /none { zmq_service svc; }
location = /json { zmq_service svc; zmq_data_format json; }
location = /file { zmq_service svc; client_body_in_file_only on; }
location = /file-json {
    zmq_service svc;
    zmq_data_format json;
    client_body_in_file_only clean;
}
location /api/ { zmq_router; }
"""

REST_CHANNELS = [
    {"name": "rest-json", "url_path": "/api/json", "method": "POST",
     "service": "svc", "data_format": "json"},
    {"name": "rest-none", "url_path": "/api/none", "method": "POST",
     "service": "svc"},
]

# (path, the location checks JSON, bodies are written to a file anyway)
KINDS = [
    ("/none", False, False),
    ("/json", True, False),
    ("/api/none", False, False),
    ("/api/json", True, False),
    ("/file", False, True),
    ("/file-json", True, True),
]

SPILLED = "a client request body is buffered to a temporary file"


# ------------------------------------------------------------------ helpers

def http(port, path, body=b"", chunks=None, trickle=False, headers=(),
         method="POST", timeout=30):
    """One request on its own connection, the bytes exactly as given:
    a Content-Length body, or (chunks not None) a chunked body with those
    chunks. trickle: each chunk in its own write, so that NGINX reads the
    body in several steps rather than with the headers. Returns (status,
    headers, body); status None if the connection closed without an
    answer."""
    head = ["%s %s HTTP/1.1" % (method, path), "Host: localhost",
            "Connection: close"] + list(headers)
    if chunks is not None:
        head.append("Transfer-Encoding: chunked")
        parts = [b"%x\r\n%s\r\n" % (len(c), c) for c in chunks if c]
        parts.append(b"0\r\n\r\n")
    else:
        head.append("Content-Length: %d" % len(body))
        parts = [body]
    head = ("\r\n".join(head) + "\r\n\r\n").encode()

    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        if trickle:
            s.sendall(head)
            for p in parts:
                time.sleep(0.005)
                s.sendall(p)
        else:
            s.sendall(head + b"".join(parts))
        data = b""
        while True:
            try:
                d = s.recv(65536)
            except ConnectionResetError:
                break
            if not d:
                break
            data += d
    finally:
        s.close()
    return parse_response(data)


def parse_response(data):
    if not data:
        return None, {}, b""
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    hdrs = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    return status, hdrs, body


def split(body, size):
    return [body[i:i + size] for i in range(0, len(body), size)]


def json_body(n):
    """A JSON document of exactly n bytes (n >= 10)."""
    doc = b'{"k": "' + b"x" * (n - 10) + b'"} '
    assert len(doc) == n
    return doc


def raw_body(n):
    return (bytes(range(256)) * (n // 256 + 1))[:n]


class ShapesGateway:
    """NGINX following Redis, with every kind of publishing location."""

    def __init__(self, tmp, redis, rabbit):
        key = os.path.join(tmp, "secret.key")
        self.zmqctl = Zmqctl(redis.url, key)
        self.zmqctl("keygen", check=0)
        redis.client().flushall()
        doc = amqp_config(rabbit.port, {"svc": {"routing_key": QUEUE}})
        doc["rest_channel"] = REST_CHANNELS
        path = os.path.join(tmp, "config.json")
        with open(path, "w") as f:
            json.dump(doc, f)
        out = self.zmqctl("import", "--replace", path, check=0).stdout
        self.version = int(out.rsplit("version", 1)[1])

        d = os.path.join(tmp, "nginx")
        os.mkdir(d)
        # workers (unprivileged when the master is root) may write a
        # sanitizer report here
        os.chmod(d, 0o777)
        self.ngx = Nginx(d, http="zmq_key_file %s;\n"
                                 "zmq_config redis://127.0.0.1:%d/0;\n"
                         % (key, redis.port),
                         server=LOCATIONS, workers=2)
        self.ngx.start()
        self.port = self.ngx.port
        self.wait_ready()

    def status(self):
        st, _, body = http(self.port, "/zmq/status", method="GET")
        assert st == 200, body
        return json.loads(body)

    def wait_ready(self, timeout=30.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ws = self.status()["workers"]
            if len(ws) == 2 and all(
                    w["config_version"] == self.version
                    and w["outconns"].get("out", {}).get("state") == "ready"
                    for w in ws):
                return
            time.sleep(0.05)
        raise AssertionError("gateway not ready: %s" % self.status())

    def log_size(self):
        try:
            return os.path.getsize(os.path.join(self.ngx.dir, "error.log"))
        except OSError:
            return 0

    def log_since(self, offset):
        with open(os.path.join(self.ngx.dir, "error.log"), "rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", "replace")


@pytest.fixture(scope="module")
def gw(redis_server, rabbitmq, tmp_path_factory):
    g = ShapesGateway(str(tmp_path_factory.mktemp("shapes")), redis_server,
                      rabbitmq)
    yield g
    g.ngx.stop()
    bad = [line for line in g.ngx.error_log().splitlines()
           if "[alert]" in line or "Sanitizer" in line
           or "exited on signal" in line]
    for name in os.listdir(g.ngx.dir):
        if name.startswith("asan."):
            with open(os.path.join(g.ngx.dir, name)) as f:
                bad.append(f.read())
    assert not bad, "nginx error log:\n" + "\n".join(bad)


@pytest.fixture(scope="module")
def shapes_queue(rabbitmq):
    conn = rabbitmq.connection()
    ch = conn.channel()
    ch.queue_declare(QUEUE, durable=True)
    yield ch
    try:
        ch.queue_delete(QUEUE)
        conn.close()
    except Exception:
        pass


@pytest.fixture
def q(shapes_queue, gw):
    """The queue, empty; after the test, no worker may have died."""
    shapes_queue.queue_purge(QUEUE)
    offset = gw.log_size()
    checked = {}

    def take():
        """The one message a 202 put in the queue."""
        m, _, body = shapes_queue.basic_get(QUEUE, auto_ack=True)
        assert m is not None, "a 202 but no message in the queue"
        extra, _, _ = shapes_queue.basic_get(QUEUE, auto_ack=True)
        assert extra is None, "more than one message in the queue"
        return body

    def empty():
        return shapes_queue.queue_declare(
            QUEUE, durable=True, passive=True).method.message_count == 0

    def log():
        checked["log"] = gw.log_since(offset)
        return checked["log"]

    take.empty = empty
    take.log = log
    yield take
    new = gw.log_since(offset)
    dead = [line for line in new.splitlines()
            if "exited on signal" in line or "exited with code" in line
            or "[alert]" in line or "Sanitizer" in line]
    assert not dead, "\n".join(dead)


def check(gw, q, path, is_json, body, valid=True, **kw):
    status, hdrs, answer = http(gw.port, path, body=body, **kw)
    assert status is not None, "no answer: did the worker die?"
    if is_json and not valid:
        assert status == 400, answer
        assert hdrs["content-type"] == "application/json"
        assert json.loads(answer)["error"] == "invalid_json"
        assert q.empty()
        return
    assert status == 202, answer
    assert q() == (body if kw.get("chunks") is None
                   else b"".join(kw["chunks"]))


# -------------------------------------------------------------------- cases

def body_for(is_json, n):
    return json_body(n) if is_json else raw_body(n)


SHAPES = {
    # name: (body size, chunk sizes or None for Content-Length, trickle)
    "chunked in one chunk": (300, 300, False),
    "chunked in 1-byte chunks": (40, 1, False),
    "chunked in 1-byte chunks, one write each": (40, 1, True),
    "chunked in 7-byte chunks": (1000, 7, False),
    "chunked in 4 KiB chunks": (6000, 4096, False),
    "chunked in 4 KiB chunks, one write each": (6000, 4096, True),
    "content-length in memory": (2000, None, False),
    "content-length, body after the headers": (2000, None, True),
}


@pytest.mark.parametrize("path,is_json,in_file", KINDS,
                         ids=[k[0] for k in KINDS])
@pytest.mark.parametrize("shape", list(SHAPES))
def test_a_body_in_this_shape_is_published_byte_exact(gw, q, path, is_json,
                                                      in_file, shape):
    n, chunk, trickle = SHAPES[shape]
    body = body_for(is_json, n)
    if chunk is None:
        check(gw, q, path, is_json, body, trickle=trickle)
    else:
        check(gw, q, path, is_json, None, chunks=split(body, chunk),
              trickle=trickle)


@pytest.mark.parametrize("path,is_json,in_file", KINDS,
                         ids=[k[0] for k in KINDS])
def test_an_empty_chunked_body(gw, q, path, is_json, in_file):
    # empty is not JSON; elsewhere an empty message is published
    check(gw, q, path, is_json, None, valid=not is_json, chunks=[])


@pytest.mark.parametrize("path,is_json,in_file", KINDS,
                         ids=[k[0] for k in KINDS])
def test_an_empty_content_length_body(gw, q, path, is_json, in_file):
    check(gw, q, path, is_json, b"", valid=not is_json)


@pytest.mark.parametrize("path,is_json,in_file", KINDS,
                         ids=[k[0] for k in KINDS])
@pytest.mark.parametrize("chunk", [1, 5, 4096])
def test_invalid_json_in_chunks(gw, q, path, is_json, in_file, chunk):
    body = b'{"a": [1, 2, 3], "b": "' + b"y" * 5000 + b'",}'
    check(gw, q, path, is_json, None, valid=False,
          chunks=split(body, chunk))


@pytest.mark.parametrize("path,is_json,in_file", KINDS,
                         ids=[k[0] for k in KINDS])
def test_json_with_trailing_garbage_in_chunks(gw, q, path, is_json,
                                              in_file):
    check(gw, q, path, is_json, None, valid=False,
          chunks=[b'{"a": 1}', b" ", b"x"])


# --------------------------------------------- bodies larger than the buffer

# client_body_buffer_size is NGINX's default (8 KiB here): a larger body is
# written to a temporary file while it arrives, and published from there.

@pytest.mark.parametrize("path,is_json,in_file", KINDS,
                         ids=[k[0] for k in KINDS])
@pytest.mark.parametrize("chunk", [None, 1000, 65536])
def test_a_body_larger_than_the_buffer_goes_to_a_file_and_is_published(
        gw, q, path, is_json, in_file, chunk):
    body = body_for(is_json, 100 * 1024)
    if chunk is None:
        check(gw, q, path, is_json, body)
    else:
        check(gw, q, path, is_json, None, chunks=split(body, chunk))
    assert SPILLED in q.log()


@pytest.mark.parametrize("path,is_json,in_file", KINDS,
                         ids=[k[0] for k in KINDS])
def test_invalid_json_larger_than_the_buffer_is_400(gw, q, path, is_json,
                                                    in_file):
    body = b'[' + b'"abc", ' * 20000 + b'"end",]'
    check(gw, q, path, is_json, None, valid=False, chunks=split(body, 4096))
    assert SPILLED in q.log()


@pytest.mark.parametrize("path", ["/none", "/json", "/api/json"])
@pytest.mark.parametrize("chunked", [False, True], ids=["length", "chunked"])
def test_a_1mib_body_bigger_than_the_buffer_is_published_byte_exact(
        gw, q, path, chunked):
    is_json = path.endswith("json")
    body = json_body(1024 * 1024) if is_json else os.urandom(1024 * 1024)
    if chunked:
        check(gw, q, path, is_json, None, chunks=split(body, 16384))
    else:
        check(gw, q, path, is_json, body)
    assert SPILLED in q.log()
