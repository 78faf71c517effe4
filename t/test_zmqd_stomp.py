"""zmqd consuming stomp_channel objects (issue 16): a Java JMS producer ->
ActiveMQ 5.17 (STOMP) -> zmqd -> an HTTP service; retries held unacked,
dead letters with their reason, kill -9 mid-retry; the same code against
RabbitMQ's STOMP plugin checked with pika; and hostile frames from a fake
broker."""

import socket
import threading
import time

import pytest

from activemq_helpers import (activemq, rabbitmq_stomp,  # noqa: F401
                              unique_queue)
from test_zmqd import http_endpoint, wait_for  # noqa: F401
from zmqd_helpers import zmqd  # noqa: F401


def url_of(endpoint):
    return "http://127.0.0.1:%d" % endpoint.server_address[1]


def stomp_config(port, destination, endpoint, retry=None, use_jms=True,
                 dead_letter=None, login=None, vhost=None, heartbeat=2):
    d = {"name": "broker", "host": "127.0.0.1", "port": port,
         "heartbeat": heartbeat, "use_jms": use_jms}
    if login:
        d["login"], d["passcode"] = login
    if vhost:
        d["virtual_host"] = vhost
    ch = {"name": "in", "def": "broker", "destination": destination,
          "service": "hook", "prefetch": 10}
    if retry:
        ch["retry"] = retry
    if dead_letter:
        ch["dead_letter"] = dead_letter
    return {"stomp_def": [d], "stomp_channel": [ch],
            "http_outconn": [{"name": "web", "url": url_of(endpoint)}],
            "service": [{"name": "hook", "kind": "http", "outconn": "web",
                         "path": "/hook"}]}


def hdr(headers, name):
    """A request header by name, any case (http.server keeps the case)."""
    for k, v in headers.items():
        if k.lower() == name.lower():
            return v
    return None


def wait_empty(activemq, q, timeout=20):
    """No message in the queue and none in flight (every one ACKed)."""
    deadline = time.monotonic() + timeout
    while True:
        st = activemq.stats(q)
        if st.get("size", 0) == 0 and st.get("inflightCount", 0) == 0:
            return st
        assert time.monotonic() < deadline, st
        time.sleep(0.3)


# ------------------------------------------------------ ActiveMQ and Java

def test_java_text_and_bytes_messages_reach_the_http_service(
        activemq, zmqd, http_endpoint):
    q = unique_queue("in")
    z = zmqd(stomp_config(activemq.stomp_port, "/queue/" + q, http_endpoint))
    z.wait_log("stomp_channel 'in': consuming '/queue/%s'" % q)
    sent = activemq.produce([
        {"text": "h\u00e9llo", "correlation_id": "c-1", "type": "Order",
         "reply_to": "replies", "priority": 7,
         "properties": {"customer": "ACME", "n": 5, "colon": "a:b"}},
        {"bytes": b"\x00\x01bin\xff", "correlation_id": "c-2",
         "properties": {"customer": "Initech"}},
    ], queue=q)
    wait_for(lambda: len(http_endpoint.requests) == 2)
    by_cid = {hdr(h, "X-Correlation-Id"): (h, b)
              for h, b in http_endpoint.requests}

    h, body = by_cid["c-1"]
    assert body == "h\u00e9llo".encode()
    # use_jms: a TextMessage is UTF-8 text; JMSMessageID without "ID:"
    assert hdr(h, "Content-Type") == "text/plain; charset=utf-8"
    assert hdr(h, "X-Message-Id") == sent[0]["id"][3:]
    assert hdr(h, "X-Reply-To") == "/queue/replies"
    assert hdr(h, "X-Zmq-Channel") == "in"
    assert hdr(h, "X-Zmq-Header-customer") == "ACME"
    assert hdr(h, "X-Zmq-Header-n") == "5"
    assert hdr(h, "X-Zmq-Header-colon") == "a:b"       # unescaped
    # the broker's own headers and ActiveMQ's JMS ones are not passed on
    for k in h:
        low = k.lower()
        assert not low.startswith("x-zmq-header-jms"), k
        assert low not in ("x-zmq-header-destination",
                           "x-zmq-header-subscription", "x-zmq-header-ack",
                           "x-zmq-header-expires", "x-zmq-header-priority",
                           "x-zmq-header-type",
                           "x-zmq-header-content-length"), k

    h, body = by_cid["c-2"]
    assert body == b"\x00\x01bin\xff"                   # exact bytes
    assert hdr(h, "Content-Type") in (None, "")
    assert hdr(h, "X-Message-Id") == sent[1]["id"][3:]
    assert hdr(h, "X-Zmq-Header-customer") == "Initech"

    wait_empty(activemq, q)
    assert activemq.browse(q) == 0


def test_properties_reach_a_publish_service_as_amqp_properties(
        activemq, rabbitmq, queue, zmqd):
    """priority, persistence, type, timestamp and expiration are AMQP
    properties (checked with pika after a publish service)."""
    q = unique_queue("props")
    doc = {"stomp_def": [{"name": "broker", "port": activemq.stomp_port,
                          "use_jms": True}],
           "stomp_channel": [{"name": "in", "def": "broker",
                              "destination": "/queue/" + q,
                              "service": "fwd"}],
           "amqp_def": [{"name": "rabbit", "port": rabbitmq.port,
                         "username": "guest", "password": "guest"}],
           "amqp_outconn": [{"name": "out", "def": "rabbit"}],
           "service": [{"name": "fwd", "kind": "publish", "outconn": "out",
                        "routing_key": queue.name, "mandatory": True}]}
    z = zmqd(doc)
    z.wait_log("stomp_channel 'in': consuming")
    sent = activemq.produce([{"text": "t", "priority": 8, "type": "Order",
                              "ttl_ms": 600000, "correlation_id": "c-7",
                              "properties": {"k": "v"}}], queue=q)
    m = None
    deadline = time.monotonic() + 20
    while m is None and time.monotonic() < deadline:
        m, p, body = queue.channel.basic_get(queue.name, auto_ack=True)
        time.sleep(0.1)
    assert m is not None, z.text()
    assert body == b"t"
    assert p.priority == 8 and p.delivery_mode == 2 and p.type == "Order"
    assert p.correlation_id == "c-7"
    assert p.message_id == sent[0]["id"][3:]
    assert abs(p.timestamp - sent[0]["timestamp"] // 1000) <= 1
    assert 599000 <= int(p.expiration) <= 600000
    assert p.headers == {"k": "v"}
    wait_empty(activemq, q)


def test_failing_twice_then_succeeding_is_delivered_three_times(
        activemq, zmqd, http_endpoint):
    q = unique_queue("retry")
    calls = []

    def status(body):
        calls.append(body)
        return 500 if len(calls) <= 2 else 200
    http_endpoint.status = status
    z = zmqd(stomp_config(activemq.stomp_port, "/queue/" + q, http_endpoint,
                          retry={"attempts": 3, "initial_delay": 200,
                                 "multiplier": 1, "max_delay": 200}))
    z.wait_log("consuming '/queue/%s'" % q)
    activemq.produce([{"text": "once"}], queue=q)
    wait_for(lambda: len(calls) == 3)
    assert calls == [b"once"] * 3
    z.wait_log("after a retry")
    st = wait_empty(activemq, q)
    assert st["dequeueCount"] == 1
    time.sleep(1)
    assert len(calls) == 3
    assert activemq.browse(q) == 0
    assert activemq.stats(q + ".dead")["size"] == 0
    assert activemq.dlq_count() == 0


def test_always_failing_goes_to_the_dead_letter_destination(
        activemq, zmqd, http_endpoint):
    q = unique_queue("dead")
    http_endpoint.status = lambda body: 503
    z = zmqd(stomp_config(activemq.stomp_port, "/queue/" + q, http_endpoint,
                          retry={"attempts": 2, "initial_delay": 100,
                                 "multiplier": 1, "max_delay": 100}))
    z.wait_log("consuming '/queue/%s'" % q)
    dlq_before = activemq.dlq_count()
    activemq.produce([{"text": "doomed", "correlation_id": "c-d",
                       "properties": {"customer": "ACME"}},
                      {"bytes": b"\x00raw"}], queue=q)
    got = activemq.consume(q + ".dead", count=2, idle=20, timeout=60)
    assert len(got) == 2, z.text()
    by_body = {m["body_bytes"]: m for m in got}
    t = by_body[b"doomed"]
    assert t["class"] == "TextMessage"               # stays a TextMessage
    assert t["JMSCorrelationID"] == "c-d"
    assert t["JMSDeliveryMode"] == 2
    p = {k: v["value"] for k, v in t["properties"].items()}
    assert p["x-zmq-attempts"] == "3"
    assert p["x-zmq-channel"] == "in"
    assert "503" in p["x-zmq-error"]
    assert p["customer"] == "ACME"
    assert p["x-zmq-original-message-id"].startswith("ID:")
    b = by_body[b"\x00raw"]
    assert b["class"] == "BytesMessage"
    assert len(http_endpoint.requests) == 6          # 3 attempts each
    wait_empty(activemq, q)
    assert activemq.dlq_count() == dlq_before       # never NACKed


def test_kill_9_mid_retry_loses_nothing(activemq, zmqd, http_endpoint):
    q = unique_queue("kill")
    http_endpoint.status = lambda body: 500
    doc = stomp_config(activemq.stomp_port, "/queue/" + q, http_endpoint,
                       retry={"attempts": 10, "initial_delay": 1000,
                              "multiplier": 1, "max_delay": 1000})
    z = zmqd(doc)
    z.wait_log("consuming '/queue/%s'" % q)
    activemq.produce([{"text": "k%d" % i} for i in range(3)], queue=q)
    z.wait_log("failed (attempt 2)", count=3, timeout=30)
    z.proc.kill()                                    # kill -9, held unacked
    z.proc.wait(10)
    z.killed = True
    assert sorted(m["body"] for m in activemq.browse_messages(q)) \
        == ["k0", "k1", "k2"]
    http_endpoint.status = lambda body: 200
    del http_endpoint.requests[:]
    z2 = zmqd(None)
    z2.wait_log("done by service", count=3, timeout=30)
    assert sorted(b for h, b in http_endpoint.requests) == [b"k0", b"k1",
                                                           b"k2"]
    wait_empty(activemq, q)
    assert activemq.stats(q + ".dead")["size"] == 0


def test_live_configuration_adds_changes_and_removes_channels(
        activemq, zmqd, http_endpoint, zmqctl, tmp_path):
    import json
    q1, q2 = unique_queue("live"), unique_queue("live")
    doc = stomp_config(activemq.stomp_port, "/queue/" + q1, http_endpoint)
    z = zmqd(doc)
    z.wait_log("consuming '/queue/%s'" % q1)
    # changed: the destination moves
    doc["stomp_channel"][0]["destination"] = "/queue/" + q2
    p = tmp_path / "live.json"
    p.write_text(json.dumps(doc))
    zmqctl("import", "--replace", p)
    z.wait_log("consuming '/queue/%s'" % q2)
    activemq.produce([{"text": "to-q2"}], queue=q2)
    wait_for(lambda: [b for h, b in http_endpoint.requests] == [b"to-q2"])
    # removed: nothing consumes any more
    doc["stomp_channel"] = []
    p.write_text(json.dumps(doc))
    zmqctl("import", "--replace", p)
    z.wait_log("stomp_channel 'in': stopped")
    activemq.produce([{"text": "stays"}], queue=q2)
    time.sleep(1.5)
    assert activemq.browse(q2) == 1
    assert activemq.stats(q2)["consumerCount"] == 0


# ------------------------------------------------ RabbitMQ's STOMP plugin

def test_rabbitmq_stomp_plugin_consumed_retried_dead_lettered(
        rabbitmq_stomp, zmqd, http_endpoint):
    import pika
    q = unique_queue("rs")
    conn = rabbitmq_stomp.connection()
    ch = conn.channel()
    ch.queue_declare(q, durable=True)
    ch.queue_declare(q + ".dead", durable=True)
    seen = []

    def status(body):
        seen.append(body)
        if body == b"bad":
            return 500
        return 500 if seen.count(body) == 1 else 200
    http_endpoint.status = status
    doc = stomp_config(rabbitmq_stomp.stomp_port, "/amq/queue/" + q,
                       http_endpoint, use_jms=False,
                       login=("guest", "guest"), vhost="/",
                       dead_letter="/amq/queue/%s.dead" % q,
                       retry={"attempts": 1, "initial_delay": 100,
                              "multiplier": 1, "max_delay": 100})
    z = zmqd(doc)
    z.wait_log("consuming '/amq/queue/%s'" % q)
    for body, cid in ((b"good", "c-g"), (b"bad", "c-b")):
        ch.basic_publish("", q, body, pika.BasicProperties(
            delivery_mode=2, message_id="m-" + cid, correlation_id=cid,
            content_type="application/json", priority=3,
            headers={"customer": "ACME"}))
    wait_for(lambda: seen.count(b"good") == 2 and seen.count(b"bad") == 2,
             timeout=20)
    good = [h for h, b in http_endpoint.requests if b == b"good"][-1]
    assert hdr(good, "X-Message-Id") == "m-c-g"      # amqp-message-id
    assert hdr(good, "X-Correlation-Id") == "c-g"
    assert hdr(good, "Content-Type") == "application/json"
    assert hdr(good, "X-Zmq-Header-customer") == "ACME"
    z.wait_log("dead-lettered to '/amq/queue/%s.dead'" % q)
    m = None
    deadline = time.monotonic() + 15
    while m is None and time.monotonic() < deadline:
        m, p, body = ch.basic_get(q + ".dead", auto_ack=True)
        time.sleep(0.1)
    assert m is not None and body == b"bad"
    assert p.delivery_mode == 2 and p.correlation_id == "c-b"
    assert p.message_id == "m-c-b"
    assert p.headers["x-zmq-attempts"] == "2"
    assert p.headers["x-zmq-channel"] == "in"
    assert "500" in p.headers["x-zmq-error"]
    assert p.headers["customer"] == "ACME"
    assert z.stop() == 0
    z.killed = True
    # every message acked: nothing came back to the queue on close
    assert ch.queue_declare(q, passive=True).method.message_count == 0
    conn.close()


# ------------------------------------------------------- a hostile broker

HOSTILE = [
    ("bad escape", b"MESSAGE\nsubscription:0\nack:1\nk:a\\tb\n\nx\0"),
    ("no colon", b"MESSAGE\nsubscription:0\nack:1\nnocolon\n\nx\0"),
    ("lowercase command", b"message\nack:1\n\nx\0"),
    ("length not a number", b"MESSAGE\nack:1\ncontent-length:12a\n\nx\0"),
    ("no NUL after length", b"MESSAGE\nack:1\ncontent-length:1\n\nxy\0"),
    ("huge length", b"MESSAGE\nack:1\ncontent-length:99999999999\n\n"),
    ("head over limit", b"MESSAGE\nack:1\nk:" + b"v" * 70000 + b"\n\n\0"),
    ("too many headers", b"MESSAGE\nack:1\n"
     + b"".join(b"h%d:v\n" % i for i in range(200)) + b"\nx\0"),
    ("NUL in head", b"MESSAGE\nack:1\0\n\nx\0"),
    ("no ack id", b"MESSAGE\nsubscription:0\n\nx\0"),
    ("ERROR frame", b"ERROR\nmessage:go away\n\n\0"),
    ("garbage", b"\xff\xfe\x00\x01"),
]


class FakeStompBroker:
    """Answers CONNECT and SUBSCRIBE (with its RECEIPT), then sends the
    next hostile payload and closes; after the last, a valid MESSAGE, and
    records the ACK."""

    def __init__(self, payloads):
        self.payloads = list(payloads)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.acks = []
        self.stop = False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    @staticmethod
    def read_frame(c, buf):
        while b"\0" not in buf:
            d = c.recv(65536)
            if not d:
                raise ConnectionError
            buf += d
        frame, _, rest = buf.partition(b"\0")
        return frame.lstrip(b"\r\n"), rest

    def serve(self, c):
        buf = b""
        frame, buf = self.read_frame(c, buf)
        assert frame.startswith(b"CONNECT")
        c.sendall(b"CONNECTED\nversion:1.2\nheart-beat:0,0\n\n\0")
        frame, buf = self.read_frame(c, buf)
        assert frame.startswith(b"SUBSCRIBE")
        rid = [ln.split(b":", 1)[1] for ln in frame.split(b"\n")
               if ln.startswith(b"receipt:")][0]
        c.sendall(b"RECEIPT\nreceipt-id:" + rid + b"\n\n\0")
        if self.payloads:
            c.sendall(self.payloads.pop(0))
            time.sleep(0.3)
            return
        c.sendall(b"MESSAGE\nsubscription:0\nmessage-id:ok-1\nack:a-1\n"
                  b"destination:/queue/x\ncontent-length:2\n\nok\0")
        while not self.stop:
            frame, buf = self.read_frame(c, buf)
            if frame.startswith(b"ACK"):
                self.acks.append(frame)

    def run(self):
        while not self.stop:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            try:
                self.serve(c)
            except (OSError, ConnectionError, AssertionError, IndexError):
                pass
            finally:
                c.close()

    def close(self):
        self.stop = True
        self.sock.close()


def test_hostile_frames_are_errors_and_reconnects_never_crashes(
        zmqd, http_endpoint):
    broker = FakeStompBroker([p for _, p in HOSTILE])
    try:
        z = zmqd(stomp_config(broker.port, "/queue/x", http_endpoint,
                              use_jms=False, heartbeat=0))
        wait_for(lambda: broker.acks, timeout=120)
        assert broker.connections == len(HOSTILE) + 1
        assert [b for h, b in http_endpoint.requests] == [b"ok"]
        assert b"id:a-1" in broker.acks[0]
        log = z.text()
        for needle in ("escape STOMP 1.2 does not define",
                       "is not name:value", "capital letters",
                       "content-length is not a number",
                       "no NUL after its content-length",
                       "over 65536 bytes", "more than 128 headers",
                       "a NUL byte in a frame's command",
                       "without ack and message-id", "go away"):
            assert needle in log, needle
        assert z.proc.poll() is None
    finally:
        broker.close()


def test_a_silent_broker_is_dropped_after_its_heart_beats_stop(
        zmqd, http_endpoint):
    """The broker promises heart-beats every 500 ms and sends none: zmqd
    drops the connection after 2 intervals and a second, and reconnects."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(4)
    port = lsock.getsockname()[1]
    conns = []

    def run():
        while True:
            try:
                c, _ = lsock.accept()
            except OSError:
                return
            conns.append(c)
            buf = b""
            try:
                frame, buf = FakeStompBroker.read_frame(c, buf)
                c.sendall(b"CONNECTED\nversion:1.2\nheart-beat:500,500\n\n\0")
                frame, buf = FakeStompBroker.read_frame(c, buf)
                rid = [ln.split(b":", 1)[1] for ln in frame.split(b"\n")
                       if ln.startswith(b"receipt:")][0]
                c.sendall(b"RECEIPT\nreceipt-id:" + rid + b"\n\n\0")
                # zmqd's own heart-beats arrive (EOLs)
                c.settimeout(5)
                data = c.recv(100)
                assert data.strip(b"\r\n") == b""
            except (OSError, ConnectionError, IndexError, AssertionError):
                pass
    t = threading.Thread(target=run, daemon=True)
    t.start()
    try:
        z = zmqd(stomp_config(port, "/queue/x", http_endpoint,
                              use_jms=False, heartbeat=1))
        z.wait_log("no heart-beat from the broker", timeout=20)
        wait_for(lambda: len(conns) >= 2, timeout=20)
    finally:
        lsock.close()
        for c in conns:
            c.close()


def test_failover_to_the_next_host_when_the_first_refuses(
        zmqd, http_endpoint):
    from conftest import free_port
    broker = FakeStompBroker([])
    try:
        doc = stomp_config(free_port(), "/queue/x", http_endpoint,
                           use_jms=False, heartbeat=0)
        doc["stomp_def"][0]["hosts"] = ["127.0.0.1:%d" % broker.port]
        z = zmqd(doc)
        wait_for(lambda: broker.acks, timeout=30)
        assert [b for h, b in http_endpoint.requests] == [b"ok"]
        z.wait_log("consuming '/queue/x' on 127.0.0.1:%d" % broker.port)
    finally:
        broker.close()
