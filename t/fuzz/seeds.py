#!/usr/bin/python3
"""Writes the seed corpora of the fuzz targets (t/fuzz/corpus/<target>/).

Seeds are small valid inputs of each format, so that the fuzzer starts from
the shapes real peers send and mutates from there. Run it again after
changing it; crash reproducers found later are added to the same folders
by hand (named crash-*), and this script leaves them alone.
"""

import json
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CORPUS = os.path.join(HERE, "corpus")


def write(target, name, data, prefix="seed-"):
    """prefix "crash-": an input that fails today, kept as a regression
    (the defects of issue 9 the fuzzer is to catch)."""
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, prefix + name), "wb") as f:
        f.write(data)


# ------------------------------------------------------------------ model

FULL = {
    "amqp_def": [
        {"name": "rabbit", "host": "127.0.0.1", "port": 5672, "vhost": "/",
         "username": "guest", "password": "guest", "heartbeat": 30,
         "frame_max": 131072, "tls": False, "use_jms": False,
         "hosts": ["10.0.0.1:5672", "[::1]:5673", "broker.example"]},
        {"name": "sealed", "password": {"$sealed": "AAAA"}},
    ],
    "amqp_outconn": [
        {"name": "out", "def": "rabbit", "delivery_mode": 1, "priority": 5,
         "expiration": 60000, "content_type": "application/json",
         "content_encoding": "utf-8", "user_id": "guest", "app_id": "crm",
         "max_inflight": 16},
    ],
    "amqp_channel": [
        {"name": "in", "def": "rabbit", "queue": "q", "service": "store",
         "prefetch": 5, "ack_mode": "ack", "data_format": "xml",
         "consumers": 2,
         "retry": {"attempts": 2, "initial_delay": 10, "multiplier": 1.5,
                   "max_delay": 100},
         "dead_letter": {"outconn": "out", "exchange": "dlx",
                         "routing_key": "dead"}},
    ],
    "http_outconn": [
        {"name": "hook", "url": "http://127.0.0.1:8080/hook", "timeout": 500,
         "tls": False, "security": "client"},
    ],
    "service": [
        {"name": "pub", "kind": "publish", "outconn": "out",
         "exchange": "ex", "routing_key": "rk.{id}.$arg_x",
         "mandatory": True, "confirm": True, "delivery_mode": 2,
         "priority": 1, "expiration": 10, "content_type": "text/plain",
         "headers": {"from": "svc", "x-a": "1"}},
        {"name": "rpc", "kind": "rpc", "outconn": "out", "routing_key": "r",
         "timeout": 100},
        {"name": "web", "kind": "http", "outconn": "hook", "method": "PUT",
         "path": "/x"},
        {"name": "store", "kind": "redis", "op": "rpush", "key": "k",
         "max_len": 10, "url": "redis://127.0.0.1:6379/1"},
        {"name": "all", "kind": "fanout", "services": ["pub", "store"],
         "retry": {"attempts": 1}},
    ],
    "rest_channel": [
        {"name": "r1", "url_path": "/api/{id}/items/*", "method": "POST",
         "service": "pub", "security": "clients", "data_format": "json",
         "max_body": 1024},
        {"name": "r2", "url_path": "/exact", "method": "PUT",
         "service": "all"},
    ],
    "security": [
        {"name": "clients", "type": "basic_auth", "username": "u",
         "password": "p", "realm": "r"},
        {"name": "client", "type": "apikey", "direction": "out",
         "header": "X-Key", "key": "k"},
        {"name": "tokens", "type": "jwt", "secret": "s", "algorithm": "HS256",
         "issuer": "i", "audience": "a", "leeway": 1, "ttl": 60},
    ],
    "startup": [
        {"name": "boot", "service": "store", "payload": "{}"},
    ],
}


def model_seeds():
    with open(os.path.join(ROOT, "conf", "demo.json")) as f:
        demo = f.read()
    full = json.dumps(FULL)
    for flag in (0, 1):
        write("model", "demo-%d" % flag, bytes([flag]) + demo.encode())
        write("model", "full-%d" % flag, bytes([flag]) + full.encode())
    write("model", "empty", b"\x00{}")
    write("model", "bad-port", b'\x00{"amqp_def":[{"name":"a","port":0}]}')
    write("model", "dangling", b'\x00{"amqp_outconn":[{"name":"o",'
                               b'"def":"x"}]}')
    write("model", "cycle", b'\x00{"service":[{"name":"a","kind":"fanout",'
                            b'"services":["b"]},{"name":"b","kind":"fanout",'
                            b'"services":["a"]}]}')


# --------------------------------------------------------------- snapshot

def resp(v):
    """RESP2 encoding: bytes/str -> bulk, int -> integer, None -> nil,
    list -> array, Exception -> error."""
    if v is None:
        return b"$-1\r\n"
    if isinstance(v, Exception):
        return b"-" + str(v).encode() + b"\r\n"
    if isinstance(v, bool):
        v = int(v)
    if isinstance(v, int):
        return b":%d\r\n" % v
    if isinstance(v, str):
        v = v.encode()
    if isinstance(v, bytes):
        return b"$%d\r\n%s\r\n" % (len(v), v)
    return b"*%d\r\n" % len(v) + b"".join(resp(x) for x in v)


# the snapshot's order: ZGW_KIND_NAMES (src/core/zgw_model.h)
KINDS = ["amqp_def", "amqp_outconn", "amqp_channel", "http_outconn",
         "service", "rest_channel", "security", "startup", "stomp_def",
         "stomp_outconn", "stomp_channel"]


def snapshot_reply(doc, version=7, objver=True):
    """What the snapshot script answers: the version, the objects of each
    kind, then (since the admin API) the objects' versions."""
    out = [str(version)]
    versions = []
    for kind in KINDS:
        objs = []
        for i, obj in enumerate(sorted(doc.get(kind, []),
                                       key=lambda o: o["name"])):
            objs += [obj["name"], json.dumps(obj, sort_keys=True)]
            versions += ["%s:%s" % (kind, obj["name"]), str(i + 1)]
        out.append(objs)
    if objver:
        out.append(versions)
    return resp(out)


def snapshot_seeds():
    write("snapshot", "full", snapshot_reply(FULL))
    with open(os.path.join(ROOT, "conf", "demo.json")) as f:
        write("snapshot", "demo", snapshot_reply(json.load(f), 12))
    write("snapshot", "empty", snapshot_reply({}, 0))
    write("snapshot", "no-versions", snapshot_reply(FULL, 9, objver=False))
    write("snapshot", "bad-versions",
          resp(["3", []] + [[] for _ in KINDS[1:]]
               + [["amqp_def", "1", "nokind:x", "2", "amqp_def:a", "-4",
                   "amqp_def:a", "x9", "service:", "18446744073709551616"]]))
    write("snapshot", "error", resp(Exception("NOSCRIPT No matching script")))
    write("snapshot", "missing-object",
          resp(["3", ["a", ""]] + [[] for _ in KINDS[1:]]))
    write("snapshot", "name-mismatch",
          resp(["3", ["a", '{"name":"b"}']] + [[] for _ in KINDS[1:]]))
    write("snapshot", "two-replies",
          snapshot_reply({}, 1) + snapshot_reply(FULL, 2))


# -------------------------------------------------------------- redis_url

def redis_url_seeds():
    for i, url in enumerate([
            "redis://127.0.0.1:6379/0", "redis://:secret@host:1/15",
            "host", "host:6380", "redis://[::1]:6379/2", "redis://h/",
            "redis://:@h", "unix:///tmp/redis.sock", "redis://h:0",
            "redis://h:65536/99999",
            "rediss://u:p@h:6380/1?ca_file=/ca.pem&verify=0"
            "&server_name=r.example&cert_file=/c%40.pem&key_file=/k.pem",
            "redis-sentinel://:p@s1,s2:26380,[::1]/mymaster/2"]):
        write("redis_url", "%02d" % i, url)




# ------------------------------------------------------------------ trace
# t/fuzz/fuzz_trace.c: first byte even: a traceparent, odd: a tracestate

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def trace_seeds():
    for i, tp in enumerate([
            TRACEPARENT, TRACEPARENT.upper(), "01" + TRACEPARENT[2:],
            "00-" + "0" * 32 + TRACEPARENT[35:],
            TRACEPARENT[:36] + "0" * 16 + TRACEPARENT[52:],
            TRACEPARENT + "-x", TRACEPARENT[:-1], ""]):
        write("trace", "tp%02d" % i, "\x00" + tp)
    for i, ts in enumerate([
            "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE",
            " a=1 ,\t, b@c=x y ,", "a=1,a=2", "A=1", "a",
            ",".join("k%d=v" % n for n in range(33)),
            "t@" + "s" * 14 + "=v", "k=" + "v" * 256, "k= "]):
        write("trace", "ts%02d" % i, "\x01" + ts)


# ------------------------------------------------------------------- amqp
# t/fuzz/fuzz_amqp.c: 3 bytes of settings, then (op, arg) pairs; op & 15:
# 5 writable, 6 publish, 7 time, 8 detach, 9 connect/hangup, else feed.

def amqp_frames(*frames):
    return b"".join(f.marshal() for f in frames)


def feed(data):
    out = b""
    while data:
        chunk, data = data[:256], data[256:]
        out += bytes([0x00, len(chunk) - 1]) + chunk
    return out


def amqp_seeds():
    import pika.frame
    import pika.spec as s
    M = pika.frame.Method

    def hs(frame_max=4096, heartbeat=0):
        return [
            M(0, s.Connection.Start(server_properties={
                "product": "RabbitMQ", "version": "3.10.8",
                "capabilities": {"publisher_confirms": True,
                                 "basic.nack": True,
                                 "connection.blocked": True}},
                mechanisms="PLAIN AMQPLAIN", locales="en_US")),
            M(0, s.Connection.Tune(channel_max=2047, frame_max=frame_max,
                                   heartbeat=heartbeat)),
            M(0, s.Connection.OpenOk()),
            M(1, s.Channel.OpenOk()),
            M(1, s.Confirm.SelectOk()),
        ]

    writable = bytes([0x85, 0])
    settings = bytes([1, 0x03, 1])     # heartbeat 1, 131072, 4 inflight

    def publish(flags, size=10):
        return bytes([0x06 | ((size // 1000) << 4), flags]) if size < 1000 \
            else bytes([0x06 | ((size // 1000) << 4), size % 1000 & 0xff])

    def seed(name, *parts):
        write("amqp", name, settings + writable + b"".join(parts))

    handshake = feed(amqp_frames(*hs()))
    seed("handshake", handshake)
    seed("handshake-trickle", b"".join(
        bytes([0x00, 0]) + bytes([c]) for c in amqp_frames(*hs())))
    seed("ack", handshake, publish(0x00), writable,
         feed(amqp_frames(M(1, s.Basic.Ack(delivery_tag=1)))))
    seed("ack-multiple", handshake, publish(0), publish(0), publish(0x02),
         writable, feed(amqp_frames(M(1, s.Basic.Ack(delivery_tag=3,
                                                     multiple=True)))))
    seed("nack", handshake, publish(0x04), writable,
         feed(amqp_frames(M(1, s.Basic.Nack(delivery_tag=1)))))
    ret = amqp_frames(
        M(1, s.Basic.Return(reply_code=312, reply_text="NO_ROUTE",
                            exchange="", routing_key="q")),
        pika.frame.Header(1, 4, s.BasicProperties(message_id="m-0")),
        pika.frame.Body(1, b"body"),
        M(1, s.Basic.Ack(delivery_tag=1)))
    seed("return", handshake, publish(0x09), writable, feed(ret))
    seed("return-same-id", handshake, publish(0x09), publish(0x09),
         publish(0x09), publish(0x09), writable, feed(ret))
    seed("big-body", handshake, publish(0, 5000), writable,
         feed(amqp_frames(M(1, s.Basic.Ack(delivery_tag=1)))))
    seed("blocked", handshake, feed(amqp_frames(
        M(0, s.Connection.Blocked(reason="low on memory")))),
        publish(0), feed(amqp_frames(M(0, s.Connection.Unblocked()))),
        publish(0))
    seed("channel-close", handshake, publish(0), writable, feed(amqp_frames(
        M(1, s.Channel.Close(reply_code=406, reply_text="PRECONDITION_FAILED",
                             class_id=60, method_id=40)))))
    seed("connection-close", handshake, publish(0), writable,
         feed(amqp_frames(M(0, s.Connection.Close(
             reply_code=320, reply_text="CONNECTION_FORCED", class_id=0,
             method_id=0)))), bytes([0x07, 50]), writable, handshake)
    seed("heartbeat", handshake, feed(pika.frame.Heartbeat().marshal()),
         bytes([0x07, 10]), bytes([0x07, 10]), bytes([0x07, 30]))
    seed("timeout-then-ack", handshake, publish(0x04), writable,
         bytes([0x07, 11]),
         feed(amqp_frames(M(1, s.Basic.Ack(delivery_tag=1)))))
    seed("detach", handshake, publish(0), bytes([0x08, 0]), writable,
         feed(amqp_frames(M(1, s.Basic.Ack(delivery_tag=1)))))
    seed("stall", handshake, bytes([0x05, 0]), publish(0, 7000),
         publish(0, 7000), bytes([0x05, 3]), bytes([0x85, 0]))
    seed("refused-then-ok", bytes([0x09, 0]), bytes([0x89, 0]),
         bytes([0x07, 2]), bytes([0x49, 1]), bytes([0x07, 30]), writable,
         handshake)
    seed("out-of-order", feed(amqp_frames(*hs()[1:2])))
    seed("not-amqp", feed(b"AMQP\x00\x00\x09\x01"))
    seed("small-frame-max", feed(amqp_frames(*hs(frame_max=4096))),
         publish(0, 3000))

    # rpc (flag 0x10): basic.consume goes out before the publish; the
    # replies come as basic.deliver to "ngx_zmq.rpc", correlation id
    # "c-<n>" (n: the publish's index in the input). op 10 cancels one.
    consume_ok = M(1, s.Basic.ConsumeOk(consumer_tag="ngx_zmq.rpc"))

    def deliver(cid, body=b"reply", tag=1, **props):
        p = dict(content_type="application/json",
                 headers={"x-zmq-status": 201})
        p.update(props)
        if cid is not None:
            p["correlation_id"] = cid
        frames = [M(1, s.Basic.Deliver(
                      consumer_tag="ngx_zmq.rpc", delivery_tag=tag,
                      redelivered=False, exchange="",
                      routing_key="amq.rabbitmq.reply-to.g2dkAA")),
                  pika.frame.Header(1, len(body), s.BasicProperties(**p))]
        for i in range(0, len(body), 4088):
            frames.append(pika.frame.Body(1, body[i:i + 4088]))
        return frames

    def ack(tag=1):
        return M(1, s.Basic.Ack(delivery_tag=tag))

    def cancel(i, timed_out=False):
        return bytes([0x8a if timed_out else 0x0a, i])

    rpc = publish(0x10)
    seed("rpc-reply", handshake, rpc, writable,
         feed(amqp_frames(consume_ok, ack(), *deliver("c-0"))))
    seed("rpc-reply-before-ack", handshake, rpc, writable,
         feed(amqp_frames(consume_ok, *deliver("c-0"), ack())))
    seed("rpc-two-out-of-order", handshake, rpc, rpc, writable,
         feed(amqp_frames(consume_ok, ack(2, ), *deliver("c-1", tag=1),
                          *deliver("c-0", b"", tag=2), ack(1))))
    seed("rpc-big-reply", handshake, rpc, writable,
         feed(amqp_frames(consume_ok, ack(),
                          *deliver("c-0", bytes(range(256)) * 40))))
    seed("rpc-late", handshake, rpc, writable,
         feed(amqp_frames(consume_ok, ack())), cancel(0, True),
         feed(amqp_frames(*deliver("c-0"))))
    seed("rpc-cancel-mid-body", handshake, rpc, writable,
         feed(amqp_frames(consume_ok, ack())),
         feed(amqp_frames(*deliver("c-0", b"x" * 9000))[:5000]), cancel(0),
         feed(amqp_frames(*deliver("c-0", b"x" * 9000))[5000:]))
    seed("rpc-no-cid", handshake, rpc, writable,
         feed(amqp_frames(consume_ok, ack(), *deliver(None))))
    seed("rpc-bad-status", handshake, rpc, rpc, writable,
         feed(amqp_frames(consume_ok, ack(2, ),
                          *deliver("c-0", headers={"x-zmq-status": "abc"}),
                          *deliver("c-1", headers={"x-zmq-status": 99}))))
    deep = "bottom"
    for _ in range(20):
        deep = {"n": deep}
    seed("rpc-deep-headers", handshake, rpc, writable,
         feed(amqp_frames(consume_ok, ack(),
                          *deliver("c-0", headers={"deep": deep}))))
    seed("rpc-lost", handshake, rpc, writable,
         feed(amqp_frames(consume_ok, ack())), bytes([0x09, 0]))
    seed("rpc-mandatory-return", handshake, publish(0x11), writable,
         feed(amqp_frames(consume_ok) + ret))




# ------------------------------------------------------------------ redis
# t/fuzz/fuzz_redis.c: 2 bytes of settings, then (op, arg) pairs; op & 15:
# 5 writable, 6 command, 7 time, 8 connect/hangup, else feed.

def redis_seeds():
    def feed(data):
        out = b""
        while data:
            chunk, data = data[:256], data[256:]
            out += bytes([0x00, len(chunk) - 1]) + chunk
        return out

    writable = bytes([0x85, 0])
    get, evalsha, sub, ping = (bytes([0x06, i]) for i in range(4))

    def seed(name, settings, *parts):
        write("redis", name, bytes(settings) + writable + b"".join(parts))

    seed("get", [0, 1], get, feed(b"$2\r\n42\r\n"))
    seed("auth-select", [3, 1], get, feed(b"+OK\r\n+OK\r\n:7\r\n"))
    seed("error", [0, 1], get, feed(b"-ERR wrong type\r\n"))
    seed("nil", [0, 1], get, feed(b"$-1\r\n"))
    seed("snapshot", [0, 1], evalsha, feed(snapshot_reply(FULL)))
    seed("pipelined", [0, 1], get, get, ping,
         feed(b":1\r\n$1\r\nx\r\n+PONG\r\n"))
    seed("subscriber", [8, 1], sub, feed(
        resp(["subscribe", "zmq:events", 1]) +
        resp(["message", "zmq:events",
              '{"version":3,"kind":"service","name":"a","op":"put"}'])))
    seed("unasked", [0, 1], feed(b"+OK\r\n"))
    seed("split", [0, 1], get, b"".join(
        bytes([0x00, 0]) + bytes([c]) for c in b"$5\r\nhello\r\n"))
    seed("protocol-error", [0, 1], get, feed(b"?what\r\n"))
    seed("timeout", [0, 1], get, bytes([0x07, 30]), get)
    seed("hangup", [0, 1], get, get, bytes([0x08, 0]), bytes([0x07, 10]),
         writable, get, feed(b":1\r\n"))
    seed("refused", [0, 0], bytes([0x88, 0]), bytes([0x08, 0]),
         bytes([0x07, 10]), bytes([0x48, 1]), bytes([0x07, 100]), writable)
    seed("stall", [0, 1], bytes([0x05, 0]), get, get, bytes([0x05, 1]),
         writable)
    # the bounds lowered (settings' high bits): reads of 64 B, a buffer of
    # 256 B and 8 slots; a long reply parsed across reads cut short, a
    # bulk announced too long, a line without end, too many slots
    bounded = [0x30, 0x03 | (3 << 2) | (3 << 5)]
    seed("bounded-long", bounded, get, get, feed(
        resp("v" * 200) + resp(["message", "x" * 150, "y"])))
    seed("bounded-snapshot", [0x10, 0x03 | (7 << 2) | (7 << 5)], evalsha,
         feed(snapshot_reply({}, 3)))
    seed("bounded-bulk", bounded, get, feed(b"$999999\r\n" + b"z" * 100))
    seed("bounded-line", bounded, get, feed(b"-" + b"e" * 400))
    seed("bounded-slots", bounded, get, feed(b"*9\r\n"))
    seed("bounded-sub", [0x28, 0x03 | (2 << 2) | (4 << 5)], sub, feed(
        resp(["subscribe", "zmq:events", 1]) +
        resp(["message", "zmq:events", '{"version":4}']) * 6))




# --------------------------------------------------------------- sentinel
# t/fuzz/fuzz_sentinel.c: a byte (even: a +switch-master message and the
# ip buffer's size; odd: RESP replies of a sentinel and of ROLE), the rest

def sentinel_seeds():
    full = bytes([254])
    msgs = {
        "v4": "mymaster 10.0.0.1 6379 10.0.0.2 6380",
        "v6": "mymaster ::1 6379 2001:db8::7 26379",
        "mapped": "mymaster 1.2.3.4 1 ::ffff:10.1.2.3 65535",
        "other": "othermaster 10.0.0.1 6379 10.0.0.2 6380",
        "name": "mymaster 10.0.0.1 6379 redis.example 6380",
        "port0": "mymaster 10.0.0.1 6379 10.0.0.2 0",
        "port-big": "mymaster 10.0.0.1 6379 10.0.0.2 65536",
        "two-spaces": "mymaster  10.0.0.1 6379 10.0.0.2 6380",
        "six": "mymaster 10.0.0.1 6379 10.0.0.2 6380 x",
        "nul": "mymaster 10.0.0.1 6379 10.0.0.2\0 6380",
        # the edges of each field's rule, a mutation or two from across
        "port-lead0": "mymaster 10.0.0.1 6379 10.0.0.2 06380",
        "port-zeros": "mymaster 10.0.0.1 6379 10.0.0.2 0006380",
        "name-longer": "mymaster2 10.0.0.1 6379 10.0.0.2 6380",
        "trailing-space": "mymaster 10.0.0.1 6379 10.0.0.2 6380 ",
    }
    for name, msg in msgs.items():
        write("sentinel", "switch-" + name, full + msg.encode())
    # an ip buffer too small for the address
    write("sentinel", "switch-small-ip", bytes([2 * 7])
          + b"mymaster 10.0.0.1 6379 10.0.0.2 6380")
    replies = {
        "master": ["10.0.0.2", "6380"],
        "master-v6": ["2001:db8::7", "26379"],
        "not-ip": ["redis.example", "6379"],
        "bad-port": ["10.0.0.2", "70000"],
        "nil": None,
        "error": Exception("ERR \x1b[31mno such master\r\nfake line"),
        "role-master": ["master", 100, []],
        "role-slave": ["slave", "10.0.0.1", 6379, "connected", 100],
        "role-other": ["sentinel\n\x07", ["mymaster"]],
        "readonly": Exception("READONLY You can't write against a replica"),
    }
    for name, v in replies.items():
        write("sentinel", "reply-" + name, bytes([1]) + resp(v))


# ------------------------------------------------------------------- show
# t/fuzz/fuzz_show.c: a byte (the buffer's size, 255: ZGW_SHOW_SIZE), the
# text

def show_seeds():
    write("show", "error", bytes([255]) + b"ERR wrong number of arguments")
    write("show", "control", bytes([255]) + b"a\r\nb\x1b[31mc\x7f\xc3\xa9\0d")
    write("show", "long", bytes([255]) + b"x" * 300)
    write("show", "exact", bytes([255]) + b"y" * 200)
    write("show", "small", bytes([8]) + b"abcdefghij")
    write("show", "tiny", bytes([3]) + b"abcdefg")
    write("show", "zero", bytes([0]) + b"abc")
    write("show", "null", bytes([1]))


# ------------------------------------------------------------------ fleet
# t/fuzz/fuzz_fleet.c: a byte (even: RESP; odd: lines: now, version, one
# entry a line), the rest

def fleet_entry(**kw):
    e = {"kind": "gateway", "instance": "gw-1", "host": "web1", "pid": 42,
         "software": "ngx_zmq", "version": 7, "max_version": 7,
         "state": "running", "workers": 2, "started": 1700000000,
         "reported": 1700000100, "interval": 5}
    e.update(kw)
    return json.dumps(e, separators=(",", ":"))


def fleet_seeds():
    entries = [
        fleet_entry(),
        fleet_entry(kind="zmqd", instance="zmqd@host:1", version=5),
        fleet_entry(instance="gw-2", host="\u001b[31mred", state=["x"],
                    extra="kept?", pid="42"),
        fleet_entry(instance="bad name"),
        fleet_entry(kind="other"),
        fleet_entry(version=-1),
        '{"kind":"gateway","instance":"gw-3","version":1,"reported":1}',
        '{"kind":"gateway","kind":"zmqd","instance":"x","version":1,'
        '"reported":1}',
        "not json",
        "[]",
    ]
    write("fleet", "reply", bytes([0]) + resp([1700000105, "7", entries]))
    write("fleet", "reply-int", bytes([0]) + resp([1700000105, 7,
                                                   entries[:2]]))
    write("fleet", "reply-empty", bytes([0]) + resp([1, "0", []]))
    write("fleet", "reply-bad", bytes([0]) + resp([1, "x", ["{}"]]))
    write("fleet", "lines", bytes([1]) + "\n".join(
        ["1700000105", "7"] + entries).encode())
    write("fleet", "lines-one", bytes([1]) + ("1700000105\n9\n"
                                              + fleet_entry()).encode())


# ------------------------------------------------------------------- resp
# t/fuzz/fuzz_resp.c: 3 bytes (the buffer bound 16 << b, the slot bound
# 1 << b, the reads' size), then what a peer sends

def resp_seeds():
    replies = (resp(["message", "zmq:events", '{"version":3}']) +
               b"+OK\r\n:42\r\n$-1\r\n*-1\r\n-ERR no\r\n" +
               resp([[1, 2, [3]], "x" * 100, None]))
    write("resp", "mixed", bytes([6, 4, 0x06]) + replies)
    write("resp", "mixed-varied", bytes([6, 4, 0x80]) + replies
          + bytes(range(0, 64, 3)))
    write("resp", "whole", bytes([15, 15, 0x40]) + snapshot_reply(FULL))
    write("resp", "bulk-too-long", bytes([4, 4, 0x03]) + b"$999999999\r\n"
          + b"x" * 300)
    write("resp", "line-endless", bytes([4, 4, 0x10]) + b"+" + b"a" * 400)
    write("resp", "bulk-streamed", bytes([4, 4, 0x10]) + b"$200\r\n"
          + b"y" * 300)
    write("resp", "slots", bytes([15, 3, 0x40]) + b"*5\r\n:1\r\n:2\r\n")
    write("resp", "nested", bytes([15, 4, 0x01]) + b"*2\r\n*2\r\n:1\r\n"
          b":2\r\n*2\r\n:3\r\n:4\r\n")
    write("resp", "plus-length", bytes([4, 4, 0x02]) + b"$+100\r\n"
          + b"z" * 120)


# ------------------------------------------------------------------ props
# t/fuzz/fuzz_props.c: 2 bytes picking defaults, then header lines

def props_seeds():
    def seed(name, flags, *lines, prefix="seed-"):
        write("props", name, bytes(flags) + "\n".join(lines).encode(),
              prefix)

    seed("none", [0, 0])
    seed("all", [31, 31], "Content-Type: application/x-thing",
         "Content-Encoding: gzip", "X-Message-Id: m-1",
         "X-Correlation-Id: c-1", "X-Reply-To: replies", "X-Priority: 7",
         "X-Expiration: 60000", "X-Delivery-Mode: transient",
         "X-Zmq-Header-Customer: ACME",
         "X-Zmq-Header-City: Z\u00fcrich \u6771\u4eac")
    seed("lowercase", [0, 0], "x-message-id: m", "x-delivery-mode: 2",
         "x-zmq-header-a: 1", "x-zmq-header-a: 2")
    seed("bad-priority", [0, 0], "X-Priority: 12")
    seed("bad-expiration", [0, 0], "X-Expiration: -5")
    seed("long-id", [0, 0], "X-Message-Id: " + "m" * 300)
    # issue 9, defect 3: each drops the broker channel or connection
    seed("header-key-over-255-bytes", [0, 0],
         "X-Zmq-Header-" + "k" * 300 + ": v", prefix="crash-")
    seed("reply-to-direct-reply", [0, 0],
         "X-Reply-To: amq.rabbitmq.reply-to", prefix="crash-")
    seed("cc-not-an-array", [0, 0], "X-Zmq-Header-CC: q", prefix="crash-")
    seed("many", [0, 16], *["X-Zmq-Header-h%d: %d" % (i, i)
                            for i in range(40)])




# ----------------------------------------------------------------- router
# t/fuzz/fuzz_router.c: "R METHOD URL_PATH" channels, "Q METHOD URI" asks

def router_seeds():
    def seed(name, *lines, prefix="seed-"):
        write("router", name, "\n".join(lines), prefix)

    seed("demo", "R POST /api/customers/{id}/updates",
         "Q POST /api/customers/42/updates", "Q GET /api/customers/42/updates",
         "Q POST /api/customers/42", "Q POST //api//customers/7/updates/")
    seed("classes", "R POST /a/b", "R POST /a/{x}", "R ANY /a/*",
         "R GET /a/{x}/c", "Q POST /a/b", "Q POST /a/z", "Q PUT /a/z",
         "Q DELETE /a/b/c/d", "Q GET /a/q/c", "Q GET /")
    seed("inactive", "!R POST /x", "R PUT /x", "Q POST /x", "Q PUT /x")
    seed("params", "R ANY /{a}/{b}/{c}/{d}/{e}/{f}/{g}/{h}/{i}/{j}/{k}/{l}"
         "/{m}/{n}/{o}/{p}/{q}/{r}",
         "Q GET /1/2/3/4/5/6/7/8/9/10/11/12/13/14/15/16/17/18")
    seed("root-prefix", "R ANY /*", "Q PATCH /anything/at/all")
    # issue 9, defect 8: a path of more than 64 segments is cut, and an
    # exact route matches a longer path
    seed("exact-route-matches-a-longer-path", "R POST /" + "/".join(
        "s" for _ in range(64)), "Q POST /" + "/".join(
        "s" for _ in range(65)), prefix="crash-")




# ------------------------------------------------------------------- body
# t/fuzz/fuzz_body.c: a shape byte, its cut points, then the body

def body_seeds():
    def seed(name, shape, cuts, body, prefix="seed-"):
        if isinstance(body, str):
            body = body.encode()
        write("body", name, bytes([shape | len(cuts)]) + bytes(cuts) + body,
              prefix)

    doc = json.dumps(FULL).encode()
    seed("memory", 0, [], b'{"a": 1}')
    seed("memory-invalid", 0, [], b'{"a": 1,}')
    seed("chunks", 0x40, [30, 90, 150, 200], doc)
    seed("in-file-only", 0x20, [], doc)
    seed("file-then-memory", 0x10, [128], doc)
    seed("empty", 0, [], b"")
    seed("binary-4096", 0x80, [1, 2, 250], bytes(range(256)) * 20)
    seed("utf8", 0, [], '["Z\u00fcrich", "\u6771\u4eac"]')
    # issue 9, defect 1: a chunked body to a JSON location ends with an
    # empty last_buf that the JSON check read as a file (SIGSEGV)
    seed("chunked-json-empty-last-buf", 0x48, [64], doc, prefix="crash-")




# --------------------------------------------------------------- hostport

def hostport_seeds():
    for i, (port, text) in enumerate([
            (0, "127.0.0.1:5672"), (21, "rabbit"), (0, "[::1]:5673"),
            (0, "broker.example.com:1"), (0, "my_rabbit:65535"),
            (21, "[fe80::1%eth0]"), (0, "["), (0, "[:5672"), (0, "h:0"),
            (0, "10.0.0.256:5672"), (0, "::1:5672")]):
        write("hostport", "%02d" % i, bytes([port]) + text.encode())

# -------------------------------------------------------------------- jwt

# fuzz_jwt.c's fixed HS256 secret and its ES256 key "a" (for fuzzing only)
JWT_SECRET = b"fuzz-secret-0123456789abcdef-0123456789abcdef"
JWT_EC_KEY = """-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgehtyFyBjYpU1f2T0
OlrpGpBW0h3lV7lx/1w/EXQVlXihRANCAASt2StkX///oSbBG5aFNx9DfHSnvPjD
JGFQmfW5bhs8VDahIbJ5uCZfDNv/rQ2klr3tkOl6ORZ435exETmdM6MM
-----END PRIVATE KEY-----
"""


def b64url(data):
    import base64
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt_hs256(header, claims):
    import hashlib
    import hmac
    h = b64url(json.dumps(header, separators=(",", ":")).encode())
    p = b64url(json.dumps(claims, separators=(",", ":")).encode())
    mac = hmac.new(JWT_SECRET, (h + "." + p).encode(), hashlib.sha256)
    return h + "." + p + "." + b64url(mac.digest())


def jwt_seeds():
    ok = {"iss": "https://id.example", "aud": "api", "sub": "fuzz",
          "exp": 1700000100, "iat": 1699999990}
    hs = {"alg": "HS256", "typ": "JWT"}
    tokens = [
        jwt_hs256(hs, ok),
        jwt_hs256(hs, dict(ok, aud=["x", "crm"], nbf=1700000010.5)),
        jwt_hs256(hs, dict(ok, exp=1699999980)),
        jwt_hs256(dict(hs, kid="a", crit=["exp"]), ok),
        jwt_hs256({"alg": "none"}, ok).rsplit(".", 1)[0] + ".",
    ]
    try:
        import jwt  # Debian's python3-jwt
        tokens.append(jwt.encode(ok, JWT_EC_KEY, algorithm="ES256",
                                 headers={"kid": "a"}))
        tokens.append(jwt.encode(ok, JWT_EC_KEY, algorithm="ES256",
                                 headers={"kid": "b"}))
    except ImportError:
        pass
    for i, t in enumerate(tokens):
        write("jwt", "%02d" % i, t)
    # '~': a payload the target signs; '^': a header it signs
    for i, c in enumerate([ok, dict(ok, exp=1.7e9), {"aud": [], "exp": 2e9},
                           dict(ok, iss=None)]):
        write("jwt", "p%02d" % i, "~" + json.dumps(c))
    for i, h in enumerate([hs, {"alg": "ES256", "kid": "a"},
                           {"alg": "ES256", "kid": "a", "crit": []},
                           {"alg": "HS256", "kid": 1}]):
        write("jwt", "h%02d" % i, "^" + json.dumps(h))


# ------------------------------------------------------------------ stomp
# t/fuzz/fuzz_stomp.c: 3 bytes of settings, then (op, arg) pairs as amqp.
# Receipt ids are the connection's message counter: "0", "1", ...

def stomp_seeds():
    def fr(command, headers=(), body=b""):
        head = command + "\n" + "".join("%s:%s\n" % h for h in headers)
        return head.encode() + b"\n" + body + b"\0"

    connected = fr("CONNECTED", [("version", "1.2"),
                                 ("heart-beat", "1000,1000")])
    writable = bytes([0x85, 0])
    settings = bytes([1, 0x03, 1])

    def publish(flags=0x00):
        return bytes([0x06, flags])

    def seed(name, *parts):
        write("stomp", name, settings + writable + b"".join(parts))

    seed("connected", feed(connected))
    seed("receipt", feed(connected), publish(), writable,
         feed(fr("RECEIPT", [("receipt-id", "0")])))
    seed("receipts-crlf", feed(connected), publish(), publish(0x08),
         writable, feed(b"\r\n\n" + fr("RECEIPT", [("receipt-id", "1")])
                        .replace(b"\n", b"\r\n", 2)
                        + fr("RECEIPT", [("receipt-id", "0")])))
    seed("error-receipt", feed(connected), publish(), writable,
         feed(fr("ERROR", [("receipt-id", "0"), ("message", "no"),
                           ("content-length", "3")], b"a\0b")))
    seed("error", feed(connected), publish(0x04), writable,
         feed(fr("ERROR", [("message", "x\\cy")], b"details")))
    seed("timeout", feed(connected), publish(0x04), writable,
         bytes([0x07, 20]), feed(fr("RECEIPT", [("receipt-id", "0")])))
    seed("escapes", feed(connected), publish(0x08), writable,
         feed(fr("RECEIPT", [("receipt-id", "0"), ("a\\c\\\\", "\\n\\r")])))
    seed("bad-escape", feed(connected), publish(), writable,
         feed(fr("RECEIPT", [("receipt-id", "\\t")])))
    seed("message", feed(connected),
         feed(fr("MESSAGE", [("subscription", "0")], b"hi")))
    seed("heartbeats", feed(connected), bytes([0x07, 30]), feed(b"\n"),
         bytes([0x07, 30]), publish(), writable, bytes([0x07, 50]))
    seed("hangup", feed(connected), publish(), writable, bytes([0x09, 0]),
         bytes([0x07, 5]), feed(connected))
    seed("login-refused", feed(fr("ERROR", [("message", "bad login")])),
         bytes([0x07, 5]), feed(connected))
    seed("stomp10", feed(b"CONNECTED\nsession:1\n\n\0"))


def main():
    model_seeds()
    snapshot_seeds()
    redis_url_seeds()
    trace_seeds()
    hostport_seeds()
    jwt_seeds()
    amqp_seeds()
    redis_seeds()
    props_seeds()
    router_seeds()
    body_seeds()
    stomp_seeds()
    sentinel_seeds()
    show_seeds()
    fleet_seeds()
    resp_seeds()


if __name__ == "__main__":
    main()
