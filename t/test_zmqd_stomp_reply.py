"""Replies on stomp_channels (issues 14 and 16): a message with a reply-to
header gets, once its service finished, a SEND to that destination with
its correlation-id and x-zmq-status (an http service's answer, or 502
{"error": "service_failed"} after the final failure, then the dead
letter); the message is ACKed only after the reply's RECEIPT. use_jms dead
letters keep a TextMessage a TextMessage (no amq-msg-type). Checked with
the Java JMS consumer (ActiveMQ) and pika (RabbitMQ's STOMP plugin)."""

import http.server
import json
import threading

import pytest

from activemq_helpers import (RawStomp, activemq,  # noqa: F401
                              rabbitmq_stomp, unique_queue)
from test_zmqd import wait_for
from test_zmqd_stomp import wait_empty
from zmqd_helpers import zmqd  # noqa: F401


class Answer(http.server.BaseHTTPRequestHandler):
    """Answers server.answer(body) = (status, content type, body)."""

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.requests.append((dict(self.headers), body))
        code, ctype, out = self.server.answer(body)
        self.send_response(code)
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
    server.answer = lambda body: (
        (500, "text/plain", b"down") if body.startswith((b"bad", b"\x00"))
        else (201, "application/json", b'{"total": 42}'))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    server.url = "http://127.0.0.1:%d" % server.server_address[1]
    yield server
    server.shutdown()
    server.server_close()


def config(port, destination, url, use_jms=True, login=None, vhost=None):
    d = {"name": "broker", "host": "127.0.0.1", "port": port,
         "heartbeat": 2, "use_jms": use_jms}
    if login:
        d["login"], d["passcode"] = login
    if vhost:
        d["virtual_host"] = vhost
    return {"stomp_def": [d],
            "stomp_channel": [{"name": "in", "def": "broker",
                               "destination": destination,
                               "service": "hook",
                               "retry": {"attempts": 1,
                                         "initial_delay": 100,
                                         "multiplier": 1,
                                         "max_delay": 100}}],
            "http_outconn": [{"name": "web", "url": url}],
            "service": [{"name": "hook", "kind": "http", "outconn": "web",
                         "path": "/hook"}]}


def props_of(m):
    return {k: v["value"] for k, v in m["properties"].items()}


def test_activemq_replies_and_use_jms_dead_letters(activemq, zmqd,
                                                   endpoint):
    src, rep = unique_queue("src"), unique_queue("rep")
    z = zmqd(config(activemq.stomp_port, "/queue/" + src, endpoint.url))
    z.wait_log("consuming '/queue/%s'" % src)
    bad_text = "bad h\u00e9 \U0001F600 end"
    activemq.produce([
        {"text": "q1", "correlation_id": "c-1", "reply_to": rep},
        {"text": bad_text, "correlation_id": "c-2", "reply_to": rep,
         "properties": {"customer": "ACME"}},
        {"bytes": b"\x00bad", "correlation_id": "c-3"},
    ], queue=src)
    # a reply-to that is not a destination: handled as without one
    with RawStomp(activemq.stomp_port) as s:
        s.connect()
        assert s.send("/queue/" + src, b"q3",
                      {"reply-to": "nowhere"}).command == "RECEIPT"
        s.disconnect()

    replies = activemq.consume(rep, count=2, idle=20, timeout=60)
    assert len(replies) == 2, z.text()
    by = {m["JMSCorrelationID"]: m for m in replies}
    ok = by["c-1"]
    assert ok["class"] == "TextMessage"              # use_jms, JSON
    assert json.loads(ok["body"]) == {"total": 42}
    assert props_of(ok)["x-zmq-status"] == "201"
    assert props_of(ok)["content-type"] == "application/json"
    failed = by["c-2"]
    assert props_of(failed)["x-zmq-status"] == "502"
    doc = json.loads(failed["body"])
    assert doc["error"] == "service_failed" and "500" in doc["message"]

    dead = activemq.consume(src + ".dead", count=2, idle=20, timeout=60)
    assert len(dead) == 2, z.text()
    by = {m["JMSCorrelationID"]: m for m in dead}
    t = by["c-2"]
    assert t["class"] == "TextMessage"               # stays a TextMessage
    assert t["body"] == bad_text                     # beyond U+FFFF too
    p = props_of(t)
    assert "amq-msg-type" not in p and "content-length" not in p
    assert p["customer"] == "ACME" and p["x-zmq-attempts"] == "2"
    b = by["c-3"]
    assert b["class"] == "BytesMessage"
    assert b["body_bytes"] == b"\x00bad"
    assert "amq-msg-type" not in props_of(b)

    z.wait_log("its reply-to 'nowhere' is not a STOMP destination")
    z.wait_log("done by service 'hook', answered")
    wait_empty(activemq, src)                        # every one ACKed
    assert activemq.stats(rep)["size"] == 0          # no third reply
    assert sorted(b for h, b in endpoint.requests) == sorted(
        [b"q1", b"q3"] + [bad_text.encode()] * 2 + [b"\x00bad"] * 2)


def test_rabbitmq_reply_then_a_refused_reply_is_dead_lettered_not_rerun(
        rabbitmq_stomp, zmqd, endpoint):
    import pika
    src, rep = unique_queue("src"), unique_queue("rep")
    conn = rabbitmq_stomp.connection()
    ch = conn.channel()
    for q in (src, src + ".dead", rep):
        ch.queue_declare(q, durable=True)
    z = zmqd(config(rabbitmq_stomp.stomp_port, "/amq/queue/" + src,
                    endpoint.url, use_jms=False, login=("guest", "guest"),
                    vhost="/"))
    z.wait_log("consuming '/amq/queue/%s'" % src)
    ch.basic_publish("", src, b"q1", pika.BasicProperties(
        delivery_mode=2, message_id="m-1", correlation_id="c-1",
        reply_to="/amq/queue/" + rep))
    ch.basic_publish("", src, b"q2", pika.BasicProperties(
        delivery_mode=2, message_id="m-2", correlation_id="c-2",
        reply_to="/exchange/%s/k" % unique_queue("nope")))

    def reply():
        m, p, body = ch.basic_get(rep, auto_ack=True)
        return (p, body) if m else None
    p, body = wait_for(reply, timeout=30)
    assert p.correlation_id == "c-1" and body == b'{"total": 42}'
    assert p.content_type == "application/json"
    assert p.headers["x-zmq-status"] == "201"

    # q2: run once, its reply refused, delivered again: dead-lettered
    z.wait_log("dead-lettered to '/amq/queue/%s.dead'" % src, timeout=30)

    def dead():
        m, p, body = ch.basic_get(src + ".dead", auto_ack=True)
        return (p, body) if m else None
    p, body = wait_for(dead, timeout=15)
    assert body == b"q2" and "refused the reply" in p.headers["x-zmq-error"]
    assert [b for h, b in endpoint.requests].count(b"q2") == 1
    assert z.stop() == 0
    z.killed = True
    # whatever zmqd did not ACK is back in the queue once it is gone
    assert ch.queue_declare(src, passive=True).method.message_count == 0
    m, _, _ = ch.basic_get(rep, auto_ack=True)
    assert m is None
    conn.close()
