"""zmqd publishing through a stomp_outconn (issue 16): a channel's
publish service names a stomp_outconn; zmqd sends one SEND with a receipt
on its own STOMP connection and acks the consumed message only after the
RECEIPT. Checked on the broker side by the Java JMS consumer (ActiveMQ)
and pika (RabbitMQ's STOMP plugin); a target broker that never sends the
RECEIPT leaves the message unacked, and the broker delivers it again."""

import socket
import threading
import time

import pika

from activemq_helpers import (activemq, rabbitmq_stomp,  # noqa: F401
                              unique_queue)
from test_zmqd import assert_acked_after_stop, wait_for
from test_zmqd_stomp import wait_empty
from zmqd_helpers import zmqd  # noqa: F401


def amqp_to_stomp(rabbitmq, queue, stomp_port, destination, use_jms=True,
                  login=None, vhost=None, **svc):
    """An amqp_channel on queue into a publish service 'fwd' through the
    stomp_outconn 'sout' of the stomp_def 'target'."""
    d = {"name": "target", "host": "127.0.0.1", "port": stomp_port,
         "heartbeat": 5, "use_jms": use_jms}
    if login:
        d["login"], d["passcode"] = login
    if vhost:
        d["virtual_host"] = vhost
    s = {"name": "fwd", "kind": "publish", "stomp_outconn": "sout",
         "destination": destination}
    s.update(svc)
    return {
        "amqp_def": [{"name": "rabbit", "host": "127.0.0.1",
                      "port": rabbitmq.port, "username": "guest",
                      "password": "guest", "heartbeat": 10}],
        "amqp_channel": [{"name": "in", "def": "rabbit", "queue": queue,
                          "service": "fwd", "prefetch": 10,
                          "retry": {"attempts": 2, "initial_delay": 100,
                                    "multiplier": 1, "max_delay": 100}}],
        "stomp_def": [d],
        "stomp_outconn": [{"name": "sout", "def": "target",
                           "priority": 2, "content_type": "text/plain"}],
        "service": [s],
    }


def props_of(m):
    return {k: v["value"] for k, v in m["properties"].items()}


# ------------------------------------------------------ ActiveMQ and Java

def test_amqp_messages_reach_a_java_consumer_through_stomp(
        rabbitmq, queue, activemq, zmqd):
    out = unique_queue("out")
    z = zmqd(amqp_to_stomp(rabbitmq, queue.name, activemq.stomp_port,
                           "/queue/" + out, headers={"tenant": "t1"}))
    z.wait_log("channel 'in': consuming queue")
    conn = rabbitmq.connection()
    ch = conn.channel()
    ch.confirm_delivery()
    text = "h\u00e9llo \U0001F600 {\"n\": 1}"
    ch.basic_publish("", queue.name, text.encode(), pika.BasicProperties(
        delivery_mode=2, message_id="m-text", correlation_id="c-1",
        content_type="application/json", priority=6, type="Order",
        expiration="600000",
        headers={"customer": "ACME", "n": 5, "ok": True,
                 "tenant": "forged", "receipt": "stolen",
                 "content-length": "1"}))
    ch.basic_publish("", queue.name, b"\x00bin\xff", pika.BasicProperties(
        delivery_mode=1, message_id="m-bin", correlation_id="c-2",
        content_type="application/octet-stream"))
    # no content type: the outconn's text/plain, priority 2
    ch.basic_publish("", queue.name, b"plain", pika.BasicProperties(
        message_id="m-plain"))
    conn.close()
    sent_ms = time.time() * 1000

    got = activemq.consume(out, count=3, idle=20, timeout=60)
    assert len(got) == 3, z.text()
    by = {props_of(m).get("zmq_message_id"): m for m in got}

    t = by["m-text"]
    assert t["class"] == "TextMessage"               # use_jms, JSON, UTF-8
    assert t["body"] == text                         # beyond U+FFFF too
    assert t["JMSCorrelationID"] == "c-1"
    assert t["JMSPriority"] == 6
    assert t["JMSType"] == "Order"
    assert t["JMSDeliveryMode"] == 2
    assert abs(t["JMSExpiration"] - (sent_ms + 600000)) < 30000
    p = props_of(t)
    assert p["customer"] == "ACME" and p["n"] == "5" and p["ok"] == "true"
    assert p["tenant"] == "t1"                       # the service's wins
    assert p["content-type"] == "application/json"
    # zmqd's own headers are never the message's; nothing else is left
    assert "receipt" not in p and "content-length" not in p
    assert "amq-msg-type" not in p

    b = by["m-bin"]
    assert b["class"] == "BytesMessage"
    assert b["body_bytes"] == b"\x00bin\xff"
    assert b["JMSDeliveryMode"] == 1                 # the message's own
    assert b["JMSCorrelationID"] == "c-2"

    pl = by["m-plain"]
    assert pl["class"] == "TextMessage" and pl["body"] == "plain"
    assert pl["JMSPriority"] == 2                    # the outconn's
    assert pl["JMSDeliveryMode"] == 2                # persistent default
    assert props_of(pl)["content-type"] == "text/plain"

    z.wait_log("done by service 'fwd'", count=3)
    assert z.stop() == 0
    z.killed = True
    # whatever zmqd did not ack would be back in the queue now
    assert_acked_after_stop(rabbitmq, queue.name)


class SilentStomp:
    """A STOMP broker that accepts CONNECT, records every SEND and never
    sends a RECEIPT for it."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.sends = []
        self.conns = []
        threading.Thread(target=self.run, daemon=True).start()

    def serve(self, c):
        buf = b""
        connected = False
        while True:
            d = c.recv(65536)
            if not d:
                return
            buf += d
            while b"\0" in buf:
                frame, _, buf = buf.partition(b"\0")
                frame = frame.lstrip(b"\r\n")
                if frame.startswith(b"CONNECT") and not connected:
                    connected = True
                    c.sendall(b"CONNECTED\nversion:1.2\n"
                              b"heart-beat:0,0\n\n\0")
                elif frame.startswith(b"SEND"):
                    self.sends.append(frame)

    def run(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)
            threading.Thread(target=self._serve, args=(c,),
                             daemon=True).start()

    def _serve(self, c):
        try:
            self.serve(c)
        except OSError:
            pass

    def close(self):
        self.sock.close()
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass


def test_no_receipt_no_ack_and_the_broker_delivers_it_again(
        activemq, zmqd):
    """A stomp_channel on ActiveMQ publishes through a stomp_outconn whose
    broker never sends the RECEIPT: the attempt fails after 5 s and the
    message stays unacked (held for its retry); zmqd killed, ActiveMQ
    still has it; a zmqd whose outconn reaches a real broker publishes it
    and ActiveMQ holds nothing afterwards."""
    src, out = unique_queue("src"), unique_queue("out")
    silent = SilentStomp()
    try:
        doc = {
            "stomp_def": [{"name": "amq", "port": activemq.stomp_port,
                           "use_jms": True, "heartbeat": 2},
                          {"name": "target", "port": silent.port,
                           "heartbeat": 0}],
            "stomp_channel": [{"name": "in", "def": "amq",
                               "destination": "/queue/" + src,
                               "service": "fwd",
                               "retry": {"attempts": 10,
                                         "initial_delay": 1000,
                                         "multiplier": 1,
                                         "max_delay": 1000}}],
            "stomp_outconn": [{"name": "sout", "def": "target"}],
            "service": [{"name": "fwd", "kind": "publish",
                         "stomp_outconn": "sout",
                         "destination": "/queue/" + out}]}
        z = zmqd(doc)
        z.wait_log("consuming '/queue/%s'" % src)
        activemq.produce([{"text": "only once", "correlation_id": "c-n"}],
                         queue=src)
        z.wait_log("no RECEIPT in 5000 ms", timeout=30)
        z.wait_log("failed (attempt 1)")
        assert len(silent.sends) >= 1 and b"only once" in silent.sends[0]
        assert b"receipt:" in silent.sends[0]
        z.proc.kill()                               # held, never acked
        z.proc.wait(10)
        z.killed = True
        left = activemq.browse_messages(src)
        assert [m["body"] for m in left] == ["only once"]
        # the same channel, its outconn now on ActiveMQ itself
        doc["stomp_def"][1]["port"] = activemq.stomp_port
        z2 = zmqd(doc)
        z2.wait_log("done by service 'fwd'", timeout=30)
        got = activemq.consume(out, count=1, idle=5, timeout=30)
        # "target" has no use_jms: bytes, with content-length
        assert [m["body_bytes"] for m in got] == [b"only once"]
        assert got[0]["JMSCorrelationID"] == "c-n"
        wait_empty(activemq, src)                   # acked after the RECEIPT
    finally:
        silent.close()


# ------------------------------------------------ RabbitMQ's STOMP plugin

def test_rabbitmq_stomp_target_checked_with_pika(
        rabbitmq, queue, rabbitmq_stomp, zmqd):
    out = unique_queue("out")
    rconn = rabbitmq_stomp.connection()
    rch = rconn.channel()
    rch.queue_declare(out, durable=True)
    z = zmqd(amqp_to_stomp(rabbitmq, queue.name, rabbitmq_stomp.stomp_port,
                           "/amq/queue/" + out, use_jms=False,
                           login=("guest", "guest"), vhost="/"))
    z.wait_log("channel 'in': consuming queue")
    conn = rabbitmq.connection()
    ch = conn.channel()
    ch.confirm_delivery()
    for i in range(20):
        ch.basic_publish("", queue.name, b"body-%d\x00" % i,
                         pika.BasicProperties(
                             delivery_mode=2, message_id="m-%d" % i,
                             correlation_id="c-%d" % i,
                             content_type="application/json",
                             headers={"k": "v%d" % i}))
    conn.close()
    seen = {}

    def drained():
        while True:
            m, p, body = rch.basic_get(out, auto_ack=True)
            if m is None:
                return len(seen) == 20
            seen[p.message_id] = (p, body)
    wait_for(drained, timeout=30)
    for i in range(20):
        p, body = seen["m-%d" % i]
        assert body == b"body-%d\x00" % i               # content-length
        assert p.correlation_id == "c-%d" % i
        assert p.delivery_mode == 2
        assert p.content_type == "application/json"
        assert p.headers["k"] == "v%d" % i
    rconn.close()
    z.wait_log("done by service 'fwd'", count=20)
    assert z.stop() == 0
    z.killed = True
    assert_acked_after_stop(rabbitmq, queue.name)


def test_a_refused_send_is_a_failure_retried_then_dead_lettered(
        rabbitmq, queue, rabbitmq_stomp, zmqd):
    """RabbitMQ refuses a SEND to an exchange it does not have (an ERROR
    for its receipt, and the connection closed): each attempt fails on a
    new connection, the amqp_channel dead-letters the message with the
    reason, and acks it."""
    z = zmqd(amqp_to_stomp(rabbitmq, queue.name, rabbitmq_stomp.stomp_port,
                           "/exchange/" + unique_queue("nope") + "/k",
                           use_jms=False, login=("guest", "guest"),
                           vhost="/"))
    z.wait_log("channel 'in': consuming queue")
    conn = rabbitmq.connection()
    ch = conn.channel()
    ch.queue_declare(queue.name + ".dead", durable=True)
    ch.basic_publish("", queue.name, b"x", pika.BasicProperties(
        delivery_mode=2, message_id="m-x"))
    z.wait_log("dead-lettered after 3 attempt(s)", timeout=40)
    m, p, body = ch.basic_get(queue.name + ".dead", auto_ack=True)
    assert body == b"x" and "ERROR frame" in p.headers["x-zmq-error"]
    ch.queue_delete(queue.name + ".dead")
    conn.close()
    assert z.stop() == 0
    z.killed = True
    assert_acked_after_stop(rabbitmq, queue.name)
