"""Idempotency keys when the client is gone before its answer (issue 20):
the outcome of the publish is still kept under the key, so that the
client's retry with the same key and body gets the answer it missed and
nothing is published twice.

The broker's confirm is held back by a TCP proxy between the gateway and
RabbitMQ (the broker has the message; its basic.ack waits in the proxy),
so the client leaves while its publish waits. Two ways it leaves:

* an HTTP/2 client that goes away (curl killed): NGINX keeps the request
  until the confirm, but its answer can no longer be sent;
* the request ended by NGINX itself while the publish waits: a reload with
  worker_shutdown_timeout closes the old worker's connections, and the
  publish outlives its request.

An HTTP/1.1 client that closes its connection is not among them: NGINX
does not notice until it writes the answer, which is then kept as usual.
Checked with pika (one message in the queue) and redis-py.
"""

import json
import os
import signal
import socket
import subprocess
import threading
import time

import pytest
import requests

from conftest import Gateway, amqp_config, free_port, register_input_file

KEY = "zmq:idem:6:orders:k-1"
BODY = b'{"n": 1}'


class HoldProxy:
    """Forwards TCP to the broker; hold() keeps what the broker sends (its
    confirms) until release()."""

    def __init__(self, upstream):
        self.upstream = upstream
        self.open = threading.Event()
        self.open.set()
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(16)
        self.port = self.lsock.getsockname()[1]
        self.socks = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            up = socket.create_connection(("127.0.0.1", self.upstream))
            self.socks += [c, up]
            threading.Thread(target=self._pump, args=(c, up, False),
                             daemon=True).start()
            threading.Thread(target=self._pump, args=(up, c, True),
                             daemon=True).start()

    def _pump(self, src, dst, held):
        try:
            while True:
                d = src.recv(65536)
                if not d:
                    break
                if held:
                    self.open.wait()
                dst.sendall(d)
        except OSError:
            pass
        finally:
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def hold(self):
        self.open.clear()

    def release(self):
        self.open.set()

    def close(self):
        self.open.set()
        self.lsock.close()
        for s in self.socks:
            try:
                s.close()
            except OSError:
                pass


@pytest.fixture
def proxy(rabbitmq):
    p = HoldProxy(rabbitmq.port)
    yield p
    p.close()


def channel_config(proxy, queue, service=None):
    svc = {"routing_key": queue.name}
    svc.update(service or {})
    doc = amqp_config(proxy.port, {"svc": svc})
    doc["rest_channel"] = [{"name": "orders", "url_path": "/api/orders",
                            "service": "svc", "idempotency": True}]
    return doc


def start_h2(gateway, proxy, queue, redis, service=None):
    """The gateway with a second server speaking HTTP/2 (prior knowledge)
    on gw.h2_port."""
    h2_port = free_port()
    locations = ("location /api/ { zmq_router; }\n"
                 "zmq_confirm_timeout 20s;\n"
                 "}\n"
                 "server {\n"
                 "    listen 127.0.0.1:%d http2;\n"
                 "    zmq_confirm_timeout 20s;\n"
                 "    location /api/ { zmq_router; }\n" % h2_port)
    gw = gateway(channel_config(proxy, queue, service), locations,
                 http="zmq_idempotency_redis %s;" % redis.url)
    gw.h2_port = h2_port
    return gw


def post(gw, key="k-1"):
    return requests.post(gw.url + "/api/orders", data=BODY,
                         headers={"Idempotency-Key": key}, timeout=30)


def post_in_thread(gw):
    """post(gw) in a thread: (the thread, a dict that gets "r", the
    response, or "e", the requests exception)."""
    result = {}

    def client():
        try:
            result["r"] = post(gw)
        except requests.RequestException as e:
            result["e"] = e

    t = threading.Thread(target=client)
    t.start()
    return t, result


def wait_for(what, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = what()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError("timed out waiting")


def ready_count(queue):
    return queue.channel.queue_declare(queue.name, durable=True,
                                       passive=True).method.message_count


def h2_post_and_leave(gw, queue):
    """An HTTP/2 client publishes, and is killed once the broker has the
    message (its confirm held by the proxy)."""
    client = subprocess.Popen(
        ["curl", "-s", "-o", "/dev/null", "--http2-prior-knowledge",
         "-H", "Idempotency-Key: k-1", "-H", "Content-Type: application/json",
         "--data-binary", BODY.decode(),
         "http://127.0.0.1:%d/api/orders" % gw.h2_port],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: ready_count(queue) == 1)
    finally:
        client.kill()
        client.wait()
    time.sleep(0.3)


@pytest.fixture(autouse=True)
def need_curl():
    if subprocess.run(["curl", "-V"], capture_output=True,
                      text=True).stdout.find("HTTP2") < 0:
        pytest.skip("curl without HTTP/2")


def test_an_http2_client_gone_mid_publish_gets_its_202_on_retry(
        rabbitmq, gateway, queue, redis_store, proxy):
    gw = start_h2(gateway, proxy, queue, redis_store)
    proxy.hold()
    h2_post_and_leave(gw, queue)

    # still in flight: the retry waits
    r = post(gw)
    assert r.status_code == 409, r.text
    assert r.json()["error"] == "in_progress"

    proxy.release()
    c = redis_store.client()
    wait_for(lambda: (c.get(KEY) or b"P")[:1] == b"D")

    r = post(gw)
    assert r.status_code == 202, r.text
    assert r.headers["Idempotent-Replayed"] == "true"
    [(m, props, body)] = queue.drain(expect=1)
    assert body == BODY
    assert r.json() == {"message_id": props.message_id, "confirmed": True}
    time.sleep(0.3)
    assert queue.count() == 0
    assert gw.totals()["published"] == 1
    assert 86000 < c.ttl(KEY) <= 86400


def test_an_http2_client_gone_mid_publish_gets_its_unroutable_422(
        rabbitmq, gateway, queue, redis_store, proxy):
    gw = start_h2(gateway, proxy, queue, redis_store,
                  service={"routing_key": "nobody.here", "mandatory": True})
    proxy.hold()
    client = subprocess.Popen(
        ["curl", "-s", "-o", "/dev/null", "--http2-prior-knowledge",
         "-H", "Idempotency-Key: k-1", "--data-binary", BODY.decode(),
         "http://127.0.0.1:%d/api/orders" % gw.h2_port])
    try:
        wait_for(lambda: gw.totals()["published"] == 1)
        time.sleep(0.3)
    finally:
        client.kill()
        client.wait()
    time.sleep(0.3)
    assert post(gw).status_code == 409

    proxy.release()
    c = redis_store.client()
    wait_for(lambda: (c.get(KEY) or b"P")[:1] == b"D")
    r = post(gw)
    assert r.status_code == 422, r.text
    assert r.json()["error"] == "unroutable"
    assert r.headers["Idempotent-Replayed"] == "true"
    assert gw.totals()["published"] == 1


def start_with_shutdown_timeout(nginx_factory, tmp_path, proxy, queue,
                                redis):
    path = tmp_path / "zmq-leave.json"
    path.write_text(json.dumps(channel_config(proxy, queue)))
    register_input_file(path)
    ngx = nginx_factory(
        http="zmq_idempotency_redis %s;\nzmq_config file:%s;"
             % (redis.url, path),
        server="location = /zmq/status { zmq_status; }\n"
               "location /api/ { zmq_router; }\n"
               "zmq_confirm_timeout 20s;\n")
    with open(ngx.conf) as f:
        text = f.read()
    with open(ngx.conf, "w") as f:
        f.write(text.replace("daemon off;",
                             "daemon off;\nworker_shutdown_timeout 1s;", 1))
    ngx.start()
    gw = Gateway(ngx)
    gw.wait_state("ready")
    return gw


def test_a_publish_outliving_its_request_keeps_its_outcome(
        rabbitmq, nginx_factory, tmp_path, queue, redis_store, proxy):
    """A reload with worker_shutdown_timeout: the old worker closes the
    waiting client's connection after 1 s and ends its request; the
    publish, still waiting for its confirm, keeps the worker alive and its
    outcome under the key."""
    gw = start_with_shutdown_timeout(nginx_factory, tmp_path, proxy, queue,
                                     redis_store)
    old = set(gw.ngx.worker_pids())
    proxy.hold()

    t, result = post_in_thread(gw)
    wait_for(lambda: ready_count(queue) == 1)

    os.kill(gw.ngx.proc.pid, signal.SIGHUP)
    # the old worker drops the client once its shutdown timeout is over
    t.join(15)
    assert not t.is_alive()
    assert "e" in result, result
    wait_for(lambda: set(gw.ngx.worker_pids()) - old)

    # a new worker answers; the old one still waits for the confirm
    r = post(gw)
    assert r.status_code == 409, r.text

    proxy.release()
    c = redis_store.client()
    wait_for(lambda: (c.get(KEY) or b"P")[:1] == b"D")
    r = post(gw)
    assert r.status_code == 202, r.text
    assert r.headers["Idempotent-Replayed"] == "true"
    [(m, props, body)] = queue.drain(expect=1)
    assert r.json() == {"message_id": props.message_id, "confirmed": True}
    time.sleep(0.3)
    assert queue.count() == 0
    assert "ended before the broker answered" in gw.ngx.error_log()
