"""What a request keeps while its body arrives must be its own (issue 9,
defect 2): the {param} names of a zmq_router route pointed into the
runtime's pool, and a configuration applied while the body was read freed
it before the publish read them. Run under the ASan build of the module
(make asan-nginx) this test catches the read of freed memory; in any build
it checks the message and its routing key with pika."""

import os
import socket
import time

from conftest import amqp_config
from test_live_config import ROUTER, live  # noqa: F401  (live: fixture)


def read_response(s, timeout=30):
    s.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v)
    while len(body) < length:
        chunk = s.recv(65536)
        if not chunk:
            break
        body += chunk
    return head, body


def test_a_param_outlives_a_change_applied_while_the_body_arrives(
        rabbitmq, live, queue):
    target = queue.name + ".42"
    queue.channel.queue_declare(target, durable=True)
    try:
        gw = live(ROUTER, workers=2)
        # the workers run as nobody under root: let them write ASan reports
        os.chmod(gw.ngx.dir, 0o777)
        doc = amqp_config(rabbitmq.port, {"svc": {
            "routing_key": queue.name + ".{id}"}})
        doc["rest_channel"] = [{"name": "orders",
                                "url_path": "/api/orders/{id}",
                                "service": "svc"}]
        v = gw.write(doc)
        gw.start()
        gw.wait_version(v, workers=2)
        gw.wait_ready()

        body = b"0123456789" * 100
        s = socket.create_connection(("127.0.0.1", gw.ngx.port))
        try:
            s.sendall(b"POST /api/orders/42 HTTP/1.1\r\nHost: gw\r\n"
                      b"Content-Length: %d\r\nExpect: 100-continue\r\n"
                      b"Connection: close\r\n\r\n" % len(body))
            # 100 Continue: the route was matched, the body is being read
            s.settimeout(10)
            assert s.recv(1024).startswith(b"HTTP/1.1 100 Continue")
            s.sendall(body[:500])

            # a new configuration replaces the runtime (and frees its pool)
            doc["service"].append({"name": "other", "kind": "publish",
                                   "outconn": "out", "routing_key": "x"})
            doc["rest_channel"].append({"name": "more",
                                        "url_path": "/api/more/{x}",
                                        "service": "other"})
            v2 = gw.write(doc)
            assert v2 > v
            gw.wait_version(v2, workers=2)

            s.sendall(body[500:])
            head, answer = read_response(s)
        finally:
            s.close()

        assert head.startswith(b"HTTP/1.1 202"), (head, answer,
                                                  gw.ngx.error_log())
        m = None
        deadline = time.monotonic() + 10
        while m is None and time.monotonic() < deadline:
            m, props, got = queue.channel.basic_get(target, auto_ack=True)
            if m is None:
                time.sleep(0.05)
        assert m is not None, "no message in %s" % target
        assert m.routing_key == target
        assert got == body
        assert queue.count() == 0

        log = gw.ngx.error_log()
        assert "exited on signal" not in log and "exited with code" \
            not in log, log
        reports = [n for n in os.listdir(gw.ngx.dir) if n.startswith("asan")]
        assert not reports, reports
    finally:
        queue.channel.queue_delete(target)


def test_a_route_seen_before_a_change_keeps_its_own_limits(rabbitmq, live,
                                                            queue):
    """The route's fields (service, max_body, data format) are the
    request's own copy: a change while the body arrives does not swap them
    under it."""
    target = queue.name + ".7"
    queue.channel.queue_declare(target, durable=True)
    try:
        gw = live(ROUTER, workers=1)
        doc = amqp_config(rabbitmq.port, {"svc": {
            "routing_key": queue.name + ".{n}"}})
        doc["rest_channel"] = [{"name": "r", "url_path": "/api/n/{n}",
                                "service": "svc", "max_body": 2000}]
        v = gw.write(doc)
        gw.start()
        gw.wait_version(v)
        gw.wait_ready()

        s = socket.create_connection(("127.0.0.1", gw.ngx.port))
        try:
            s.sendall(b"POST /api/n/7 HTTP/1.1\r\nHost: gw\r\n"
                      b"Content-Length: 1500\r\nExpect: 100-continue\r\n"
                      b"Connection: close\r\n\r\n")
            s.settimeout(10)
            assert s.recv(1024).startswith(b"HTTP/1.1 100 Continue")
            s.sendall(b"a" * 700)
            doc["rest_channel"][0]["max_body"] = 10
            v2 = gw.write(doc)
            gw.wait_version(v2)
            s.sendall(b"a" * 800)
            head, answer = read_response(s)
        finally:
            s.close()
        assert head.startswith(b"HTTP/1.1 202"), (head, answer)
        assert queue.channel.queue_declare(
            target, passive=True).method.message_count == 1
    finally:
        queue.channel.queue_delete(target)
