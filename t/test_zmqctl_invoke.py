"""zmqctl invoke SERVICE [FILE|-] (issue 14, item 5): runs any service
with zmqd's own service code on the configuration in Redis, prints the
answer's body on stdout and "status N [type]" on stderr, exits 0 on 2xx.
An http endpoint, redis-py, a pika rpc responder and a running zmqd (for
invoke services) are the other sides."""

import json
import threading
import uuid

import pika
import pytest

from test_zmqd import assert_acked, wait_for
from test_zmqd_invoke import Paths, failing  # noqa: F401
from zmqd_helpers import zmqd  # noqa: F401
import http.server


@pytest.fixture
def web():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Paths)
    server.lock = threading.Lock()
    server.seen = {}
    server.paths = {}
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    server.url = "http://127.0.0.1:%d" % server.server_address[1]
    yield server
    server.shutdown()
    server.server_close()


def base(rabbitmq, web, services):
    return {
        "amqp_def": [{"name": "rabbit", "host": "127.0.0.1",
                      "port": rabbitmq.port, "username": "guest",
                      "password": "guest", "heartbeat": 10}],
        "amqp_outconn": [{"name": "out", "def": "rabbit"}],
        "http_outconn": [{"name": "ep", "url": web.url, "tls": False}],
        "service": services,
    }


def load(zmqctl, tmp_path, doc):
    p = tmp_path / ("cfg-%s.json" % uuid.uuid4().hex[:6])
    p.write_text(json.dumps(doc))
    zmqctl("import", "--replace", p, check=0)


def status_line(r):
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("status ")]
    assert lines, r.stderr
    return lines[-1]


def test_http_service_prints_the_endpoints_answer(rabbitmq, zmqctl, web,
                                                  tmp_path):
    web.paths["/x"] = lambda b: (201, "application/json",
                                 json.dumps({"got": b.decode()}).encode())
    web.paths["/bad"] = lambda b: (418, "text/plain", b"teapot")
    load(zmqctl, tmp_path, base(rabbitmq, web, [
        {"name": "web", "kind": "http", "outconn": "ep", "path": "/x"},
        {"name": "bad", "kind": "http", "outconn": "ep", "path": "/bad"}]))
    f = tmp_path / "payload.txt"
    f.write_bytes(b"from a file")
    r = zmqctl("invoke", "web", f, check=0)
    assert json.loads(r.stdout) == {"got": "from a file"}
    assert status_line(r) == "status 201 application/json"

    r = zmqctl("invoke", "web", "-", input="from stdin", check=0)
    assert json.loads(r.stdout) == {"got": "from stdin"}

    r = zmqctl("invoke", "web", check=0)                # empty payload
    assert json.loads(r.stdout) == {"got": ""}
    assert [b for h, b in web.seen["/x"]] == [b"from a file",
                                               b"from stdin", b""]

    # a status that is not 2xx: printed as it came, exit 1
    r = zmqctl("invoke", "bad", check=1)
    assert r.stdout == "teapot\n"
    assert status_line(r) == "status 418 text/plain"


def test_redis_service_prints_ok(rabbitmq, zmqctl, redis_store, web,
                                 tmp_path):
    load(zmqctl, tmp_path, base(rabbitmq, web, [
        {"name": "st", "kind": "redis", "key": "got"}]))
    r = zmqctl("invoke", "st", "-", input="pushed", check=0)
    assert json.loads(r.stdout) == {"ok": True}
    assert status_line(r) == "status 200 application/json"
    assert redis_store.client().lrange("got", 0, -1) == [b"pushed"]


def test_unknown_service_and_unreachable_endpoint_fail(rabbitmq, zmqctl,
                                                       web, tmp_path):
    load(zmqctl, tmp_path, base(rabbitmq, web, [
        {"name": "gone", "kind": "http", "outconn": "down"}]) | {
        "http_outconn": [{"name": "ep", "url": web.url, "tls": False},
                         {"name": "down", "url": "http://127.0.0.1:1",
                          "tls": False}]})
    r = zmqctl("invoke", "nosuch", check=1)
    assert "nosuch" in r.stderr
    r = zmqctl("invoke", "gone", check=1)
    assert status_line(r) == "status 502 application/json"
    doc = json.loads(r.stdout)
    assert doc["error"] == "service_failed"
    assert "127.0.0.1:1" in doc["message"]


class Responder(threading.Thread):
    """A pika rpc responder on its own connection: answers every request
    on queue with the body upper-cased, content type text/x-upper, status
    299 (an AMQP short string: any width is allowed) and the request's
    correlation_id."""

    def __init__(self, rabbitmq, queue):
        super().__init__(daemon=True)
        self.conn = rabbitmq.connection()
        self.ch = self.conn.channel()
        self.queue = queue
        self.stop = False
        self.seen = []
        self.ch.queue_declare(queue, durable=True)
        self.ch.basic_consume(queue, self.on_request, auto_ack=True)

    def on_request(self, ch, method, props, body):
        self.seen.append(props)
        ch.basic_publish("", props.reply_to, body.upper(),
                         pika.BasicProperties(
                             correlation_id=props.correlation_id,
                             content_type="text/x-upper",
                             headers={"x-zmq-status": "299"}))

    def run(self):
        while not self.stop:
            self.conn.process_data_events(time_limit=0.1)
        self.ch.queue_delete(self.queue)
        self.conn.close()


def test_rpc_service_waits_for_a_pika_responder(rabbitmq, zmqctl, web,
                                                tmp_path):
    q = "rpc." + uuid.uuid4().hex[:8]
    resp = Responder(rabbitmq, q)
    resp.start()
    try:
        load(zmqctl, tmp_path, base(rabbitmq, web, [
            {"name": "up", "kind": "rpc", "outconn": "out",
             "routing_key": q, "timeout": 10000},
            {"name": "mute", "kind": "rpc", "outconn": "out",
             "routing_key": q + ".nobody", "timeout": 500,
             "mandatory": False}]))
        r = zmqctl("invoke", "up", "-", input="hello", check=0)
        assert r.stdout == "HELLO\n"
        assert status_line(r) == "status 299 text/x-upper"
        [p] = resp.seen
        assert p.reply_to.startswith("amq.rabbitmq.reply-to")
        assert p.correlation_id == p.message_id
        uuid.UUID(p.correlation_id)

        # nobody answers (nothing even routes): a failure after the timeout
        r = zmqctl("invoke", "mute", check=1)
        assert "no reply within 500 ms" in r.stdout
    finally:
        resp.stop = True
        resp.join(10)


def test_invoke_service_sync_waits_for_zmqd_async_is_handed_off(
        rabbitmq, zmqctl, redis_store, web, zmqd, tmp_path):
    """A sync invoke service: zmqctl publishes the invocation and waits
    for zmqd's reply (the target fails once, then answers). An async one:
    202 with the cid at once, zmqd runs it and calls the callback."""
    iq = "inv." + uuid.uuid4().hex[:8]
    web.paths["/target"] = failing(1)
    web.paths["/cb"] = lambda b: (200, "text/plain", b"")
    z = zmqd(base(rabbitmq, web, [
        {"name": "tgt", "kind": "http", "outconn": "ep", "path": "/target"},
        {"name": "cb", "kind": "http", "outconn": "ep", "path": "/cb"},
        {"name": "inv", "kind": "invoke", "outconn": "out", "queue": iq,
         "target": "tgt", "seconds": 0, "timeout": 15000},
        {"name": "later", "kind": "invoke", "outconn": "out", "queue": iq,
         "target": "tgt", "mode": "async", "callback": "cb"}]))
    z.wait_log("consuming queue '%s'" % iq)
    try:
        r = zmqctl("invoke", "inv", "-", input='{"a": 1}', check=0)
        assert json.loads(r.stdout) == {"result": 42}
        assert status_line(r) == "status 200 application/json"
        assert len(web.seen["/target"]) == 2

        r = zmqctl("invoke", "later", "-", input="bg", check=0)
        assert status_line(r) == "status 202 application/json"
        doc = json.loads(r.stdout)
        assert doc["accepted"] is True
        wait_for(lambda: web.seen.get("/cb"), 20)
        cb = json.loads(web.seen["/cb"][0][1])
        assert cb["cid"] == doc["cid"] and cb["ok"] is True
        assert cb["source"] == "later"
        assert_acked(rabbitmq, iq)
    finally:
        conn = rabbitmq.connection()
        conn.channel().queue_delete(iq)
        conn.close()
