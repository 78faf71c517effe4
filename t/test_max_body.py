"""zmq_max_body is enforced by the module, and NGINX's client_max_body_size
is the operator's: the module no longer overwrites it (issue 9, "merge
writing into ngx_http_core's configuration").

The module checks Content-Length before it reads a body, and counts a
chunked body while it arrives, refusing it as soon as it passes the limit.
client_max_body_size, set or NGINX's default 1m, in the location or
inherited, applies as NGINX defines it: the smaller of the two limits wins.
Either way the answer is 413 {"error": "body_too_large"} and nothing is
published.

Each case: a location, the body size it must take (limit) and one byte
more that it must refuse, each sent with a Content-Length and chunked.
"""

import json
import socket
import time

import pytest

from fake_amqp import FakeAmqp

LOCATIONS = """
location = /default { zmq_service svc; }
location = /plain { zmq_service svc; zmq_max_body 1k; }
location = /larger-cmbs {
    zmq_service svc; zmq_max_body 1k; client_max_body_size 4k;
}
location = /smaller-cmbs {
    zmq_service svc; zmq_max_body 4k; client_max_body_size 1k;
}
location = /cmbs-first {
    client_max_body_size 2k; zmq_service svc; zmq_max_body 4k;
}
location = /no-cmbs {
    zmq_service svc; zmq_max_body 1k; client_max_body_size 0;
}
location = /big {
    zmq_service svc; zmq_max_body 300k; client_max_body_size 300k;
}
location /outer/ {
    client_max_body_size 3k;
    location = /outer/inner { zmq_service svc; zmq_max_body 8k; }
}
location /api/ { zmq_router; zmq_max_body 1k; client_max_body_size 0; }
location = /not-zmq { return 204; }
"""

REST_CHANNELS = [
    {"name": "small", "url_path": "/api/small", "method": "POST",
     "service": "svc", "max_body": 512},
    {"name": "big", "url_path": "/api/big", "method": "POST",
     "service": "svc", "max_body": 4096},
]

# (path, the largest body it takes, why)
CASES = [
    ("/default", 1024 * 1024, "zmq_max_body and NGINX's default, 1m"),
    ("/plain", 1024, "zmq_max_body below NGINX's default"),
    ("/larger-cmbs", 1024, "zmq_max_body below the location's limit"),
    ("/smaller-cmbs", 1024, "the operator's smaller client_max_body_size"),
    ("/cmbs-first", 2048, "the same, written before zmq_service"),
    ("/no-cmbs", 1024, "zmq_max_body alone (client_max_body_size 0)"),
    ("/big", 300 * 1024, "both raised"),
    ("/outer/inner", 3 * 1024, "client_max_body_size of an outer location"),
    ("/api/small", 512, "the channel's max_body"),
    ("/api/big", 1024, "the channel's max_body bounded by zmq_max_body"),
]


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    """One gateway for every case (the fixtures in conftest are per test)."""
    from conftest import Nginx, amqp_config
    fake = FakeAmqp()
    tmp = tmp_path_factory.mktemp("max_body")
    cfg = amqp_config(fake.port, {"svc": {"routing_key": "q"}},
                      extra={"rest_channel": REST_CHANNELS})
    path = tmp / "zmq.json"
    path.write_text(json.dumps(cfg))
    d = tmp / "nginx"
    d.mkdir()
    ngx = Nginx(str(d), http="zmq_config file:%s;" % path,
                server="location = /zmq/status { zmq_status; }\n"
                       + LOCATIONS)
    ngx.start()
    ngx.fake = fake
    try:
        deadline = time.monotonic() + 15
        while fake.connections == 0 or not status_ready(ngx):
            assert time.monotonic() < deadline, "not ready"
            time.sleep(0.05)
        yield ngx
    finally:
        ngx.stop()
        fake.close()
        log = ngx.error_log()
        assert "[alert]" not in log and "exited on signal" not in log, log


def status_ready(ngx):
    status, _, body = request(ngx.port, "GET", "/zmq/status")
    return status == 200 and all(
        o["state"] == "ready"
        for w in json.loads(body)["workers"] for o in w["outconns"].values())


def request(port, method, path, body=None, chunks=None, finish=True,
            timeout=10):
    """One request on its own connection: a Content-Length body, or chunks
    (chunked; finish=False leaves the body unfinished and waits for the
    answer anyway). Returns (status, headers, body); status None when the
    connection closed without an answer."""
    head = ["%s %s HTTP/1.1" % (method, path), "Host: localhost",
            "Connection: close"]
    if chunks is not None:
        head.append("Transfer-Encoding: chunked")
        data = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks)
        if finish:
            data += b"0\r\n\r\n"
    else:
        body = body or b""
        head.append("Content-Length: %d" % len(body))
        data = body
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass                # refused before the whole body was sent
        resp = b""
        while True:
            try:
                d = s.recv(65536)
            except ConnectionResetError:
                break
            if not d:
                break
            resp += d
            h, sep, b = resp.partition(b"\r\n\r\n")
            if sep and b"content-length:" in h.lower():
                n = int(h.lower().split(b"content-length:")[1].split()[0])
                if len(b) >= n:
                    break
    finally:
        s.close()
    if not resp:
        return None, {}, b""
    h, _, b = resp.partition(b"\r\n\r\n")
    lines = h.decode("latin-1").split("\r\n")
    hdrs = dict((k.strip().lower(), v.strip()) for k, _, v in
                (line.partition(":") for line in lines[1:]))
    return int(lines[0].split()[1]), hdrs, b


def chunked(n):
    """n bytes in three chunks."""
    third = n // 3
    return [b"c" * third, b"c" * third, b"c" * (n - 2 * third)]


def assert_too_large(answer):
    status, hdrs, body = answer
    assert status == 413, answer
    assert hdrs.get("content-type") == "application/json"
    assert json.loads(body)["error"] == "body_too_large"


@pytest.mark.parametrize("path,limit,why", CASES,
                         ids=[c[0] for c in CASES])
def test_the_limit_holds_for_content_length_and_chunked_bodies(
        gw, path, limit, why):
    before = len(gw.fake.published)

    assert request(gw.port, "POST", path, body=b"x" * limit)[0] == 202, why
    assert request(gw.port, "POST", path, chunks=chunked(limit))[0] == 202, \
        why
    assert_too_large(request(gw.port, "POST", path, body=b"x" * (limit + 1)))
    assert_too_large(request(gw.port, "POST", path,
                             chunks=chunked(limit + 1)))

    assert len(gw.fake.published) == before + 2
    assert [len(m[2]) for m in gw.fake.published[before:]] == [limit] * 2


@pytest.mark.parametrize("path", ["/plain", "/no-cmbs", "/api/small"])
def test_a_chunked_body_is_refused_as_soon_as_it_passes_the_limit(gw, path):
    # the body never ends: the answer must not wait for it
    t = time.monotonic()
    assert_too_large(request(gw.port, "POST", path,
                             chunks=[b"y" * 700, b"y" * 700],
                             finish=False, timeout=5))
    assert time.monotonic() - t < 3


def test_other_locations_keep_nginx_s_limit(gw):
    # NGINX's own default applies outside zmq locations, as before
    status, _, _ = request(gw.port, "POST", "/not-zmq",
                           body=b"z" * (1024 * 1024 + 1))
    assert status == 413


def test_nginx_t_warns_when_client_max_body_size_is_the_smaller(gw):
    rc, out = gw.test_config()
    assert rc == 0, out
    assert ('location "/smaller-cmbs": zmq_max_body 4096 is larger than '
            'client_max_body_size 1024') in out, out
    assert 'location "/outer/inner": zmq_max_body 8192' in out, out
    assert '"/plain"' not in out and '"/default"' not in out, out
