"""zmqd answers (issue 14, item 2): a message an amqp_channel consumes
that carries reply_to gets a reply with its correlation_id once its service
finished: an http service's status, content type and body; {"ok": true}
for the others; 502 service_failed after the final failure (and the
message is dead-lettered as ever). pika plays the requester, with
RabbitMQ's direct reply-to."""

import http.server
import json
import threading
import uuid

import pika
import pytest

from test_zmqd import FAST_RETRY, assert_acked, config, wait_for
from zmqd_helpers import zmqd  # noqa: F401


class Answer(http.server.BaseHTTPRequestHandler):
    """Answers server.answer(body) = (status, content type, body)."""

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.requests.append((dict(self.headers), body))
        code, ctype, out = self.server.answer(body)
        self.send_response(code)
        if ctype:
            self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args):
        pass


@pytest.fixture
def endpoint():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    server.requests = []
    server.answer = lambda body: (200, "text/plain", b"ok")
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    server.url = "http://127.0.0.1:%d" % server.server_address[1]
    yield server
    server.shutdown()
    server.server_close()


class Requester:
    """A pika client that publishes with reply_to amq.rabbitmq.reply-to
    on a blocking connection and takes the replies."""

    def __init__(self, rabbitmq):
        self.conn = rabbitmq.connection()
        self.ch = self.conn.channel()
        self.replies = {}
        self.ch.basic_consume("amq.rabbitmq.reply-to", self._on_reply,
                              auto_ack=True)
        self.ch.confirm_delivery()

    def _on_reply(self, ch, method, props, body):
        self.replies.setdefault(props.correlation_id, []).append(
            (props, body))

    def request(self, queue, body, cid=None, headers=None,
                content_type=None):
        cid = cid or str(uuid.uuid4())
        self.ch.basic_publish("", queue, body, pika.BasicProperties(
            reply_to="amq.rabbitmq.reply-to", correlation_id=cid,
            message_id=cid, delivery_mode=2, headers=headers,
            content_type=content_type), mandatory=True)
        return cid

    def wait(self, cid, timeout=20):
        def got():
            self.conn.process_data_events(time_limit=0.1)
            return self.replies.get(cid)
        return wait_for(got, timeout)[0]

    def close(self):
        self.conn.close()


@pytest.fixture
def requester(rabbitmq):
    r = Requester(rabbitmq)
    yield r
    r.close()


def status(props):
    return (props.headers or {}).get("x-zmq-status")


def test_an_http_service_answers_with_its_status_type_and_body(
        rabbitmq, queue, redis_store, zmqd, endpoint, requester):
    """The endpoint's chosen status, content type and body come back as
    the reply, with the request's correlation_id; the message is acked."""
    endpoint.answer = lambda body: (
        201, "application/vnd.test+json",
        json.dumps({"echo": body.decode()}).encode())
    z = zmqd(config(rabbitmq.port,
                    [{"name": "in", "queue": queue.name, "service": "web"}],
                    [{"name": "web", "kind": "http", "outconn": "ep",
                      "path": "/x"}],
                    {"http_outconn": [{"name": "ep", "url": endpoint.url,
                                       "tls": False}]}))
    z.wait_log("consuming queue")
    cid = requester.request(queue.name, b"hello")
    props, body = requester.wait(cid)
    assert props.correlation_id == cid
    assert status(props) == 201
    assert props.content_type == "application/vnd.test+json"
    assert json.loads(body) == {"echo": "hello"}
    assert endpoint.requests[0][1] == b"hello"
    assert_acked(rabbitmq, queue.name)
    # exactly one reply
    requester.conn.process_data_events(time_limit=0.5)
    assert len(requester.replies[cid]) == 1


def test_a_redis_service_answers_ok_true(rabbitmq, queue, redis_store, zmqd,
                                         requester):
    z = zmqd(config(rabbitmq.port,
                    [{"name": "in", "queue": queue.name, "service": "st"}],
                    [{"name": "st", "kind": "redis", "key": "got"}]))
    z.wait_log("consuming queue")
    cids = [requester.request(queue.name, b"m%d" % i) for i in range(3)]
    for cid in cids:
        props, body = requester.wait(cid)
        assert status(props) == 200
        assert props.content_type == "application/json"
        assert json.loads(body) == {"ok": True}
    assert redis_store.client().lrange("got", 0, -1) == [b"m0", b"m1", b"m2"]
    assert_acked(rabbitmq, queue.name)


def test_no_reply_without_reply_to(rabbitmq, queue, redis_store, zmqd):
    """A message without reply_to is only done and acked, as before."""
    z = zmqd(config(rabbitmq.port,
                    [{"name": "in", "queue": queue.name, "service": "st"}],
                    [{"name": "st", "kind": "redis", "key": "got"}]))
    z.wait_log("consuming queue")
    conn = rabbitmq.connection()
    ch = conn.channel()
    ch.basic_publish("", queue.name, b"x",
                     pika.BasicProperties(message_id="plain"))
    conn.close()
    wait_for(lambda: redis_store.client().llen("got") == 1)
    assert_acked(rabbitmq, queue.name)
    assert "reply" not in z.text()


def test_final_failure_answers_502_and_dead_letters(
        rabbitmq, queue, redis_store, zmqd, endpoint, requester):
    """The endpoint fails every time: after the channel's retries the
    requester gets 502 service_failed (the last error in message), and the
    message is dead-lettered with x-zmq-error as without reply_to."""
    endpoint.answer = lambda body: (500, "text/plain", b"broken")
    dead = queue.name + ".dead"
    z = zmqd(config(rabbitmq.port,
                    [{"name": "in", "queue": queue.name, "service": "web",
                      "retry": FAST_RETRY}],
                    [{"name": "web", "kind": "http", "outconn": "ep"}],
                    {"http_outconn": [{"name": "ep", "url": endpoint.url,
                                       "tls": False}]}))
    z.wait_log("consuming queue")
    try:
        cid = requester.request(queue.name, b"doomed")
        props, body = requester.wait(cid)
        assert status(props) == 502
        assert props.content_type == "application/json"
        doc = json.loads(body)
        assert doc["error"] == "service_failed"
        assert "status 500" in doc["message"]
        # three attempts (FAST_RETRY: 2 retries), then the dead letter
        assert len(endpoint.requests) == 3
        conn = rabbitmq.connection()
        ch = conn.channel()
        m, p, b = ch.basic_get(dead, auto_ack=True)
        assert m is not None and b == b"doomed"
        assert "status 500" in p.headers["x-zmq-error"]
        assert p.headers["x-zmq-attempts"] == 3
        assert p.correlation_id == cid
        conn.close()
        assert_acked(rabbitmq, queue.name)
    finally:
        queue.channel.queue_delete(dead)


def test_a_reply_that_cannot_be_sent_does_not_hold_the_message(
        rabbitmq, queue, redis_store, zmqd, requester):
    """reply_to names a queue that does not exist (the reply is published
    without mandatory, and lost): the message is still done and acked,
    and the next one is answered."""
    z = zmqd(config(rabbitmq.port,
                    [{"name": "in", "queue": queue.name, "service": "st"}],
                    [{"name": "st", "kind": "redis", "key": "got"}]))
    z.wait_log("consuming queue")
    conn = rabbitmq.connection()
    ch = conn.channel()
    ch.basic_publish("", queue.name, b"lost", pika.BasicProperties(
        reply_to="nobody." + uuid.uuid4().hex, correlation_id="c1"))
    conn.close()
    cid = requester.request(queue.name, b"after")
    props, body = requester.wait(cid)
    assert json.loads(body) == {"ok": True}
    assert redis_store.client().lrange("got", 0, -1) == [b"lost", b"after"]
    assert_acked(rabbitmq, queue.name)
