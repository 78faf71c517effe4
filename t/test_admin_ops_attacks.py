"""Attacks on the admin API's operations (issue 12): the AMQP ping (a probe
through the module's own client), the http_outconn ping (TCP, TLS), and
send's exchange check (a probe with a passive exchange.declare), played
against hostile brokers and listeners written here, and clients that leave
at the wrong moment. Each case: the answer is bounded in time, precise,
valid JSON in printable ASCII, and the worker stays healthy (the fixtures
fail a test on any [alert] or sanitizer report). One worker, so that "the
worker" is always the same process."""

import base64
import json
import os
import random
import signal
import socket
import struct
import threading
import time
import uuid

import pika.frame
import pika.spec
import pytest
import requests

from conftest import register_secret
from test_admin_ping import TlsServer
from test_live_config import Live

ADMIN_PW = "admin-Passw0rd-attack2-9931"
AUTH = ("root", ADMIN_PW)
LOCATIONS = "location /zmq/admin/ { zmq_admin; zmq_security admins; }\n"
TIMEOUT_MS = 1000
HEADER = b"AMQP\x00\x00\x09\x01"

# text a hostile broker puts in its close frames: quotes, backslashes,
# control bytes, bytes that are not UTF-8, a format directive, 255 bytes
HOSTILE_TEXT = (b'NOT_FOUND - "x\\y" %s %n \x00\x01\n\r\x1b[31m \xff\xfe\xc3'
                + b"A" * 255)[:255]


# ------------------------------------------------------------ wire helpers

def shortstr(b):
    return struct.pack(">B", len(b)) + b


def longstr(b):
    return struct.pack(">L", len(b)) + b


def table(entries):
    """entries: (key bytes, type byte, encoded value)."""
    body = b"".join(shortstr(k) + t + v for k, t, v in entries)
    return longstr(body)


def frame(kind, channel, payload):
    return struct.pack(">BHL", kind, channel, len(payload)) + payload + b"\xce"


def method_raw(channel, class_id, method_id, args):
    return frame(1, channel, struct.pack(">HH", class_id, method_id) + args)


def start_raw(props_table):
    """connection.start with server_properties already encoded."""
    return method_raw(0, 10, 10, b"\x00\x09" + props_table
                      + longstr(b"PLAIN") + longstr(b"en_US"))


def close_raw(channel, code, text):
    """connection.close (channel 0) or channel.close, any reply text."""
    cls = 10 if channel == 0 else 20
    mid = 50 if channel == 0 else 40
    return method_raw(channel, cls, mid, struct.pack(">H", code)
                      + shortstr(text) + struct.pack(">HH", 0, 0))


def marshal(channel, m):
    return pika.frame.Method(channel, m).marshal()


DEFAULT_START = marshal(0, pika.spec.Connection.Start(
    server_properties={"product": "hostile", "version": "6.6.6"},
    mechanisms="PLAIN", locales="en_US"))


class Peer:
    """One connection a hostile broker accepted."""

    def __init__(self, conn, broker):
        self.conn = conn
        self.broker = broker
        self.buf = b""

    def send(self, data):
        self.conn.sendall(data)

    def method(self, channel, m):
        self.send(marshal(channel, m))

    def read_exact(self, n):
        while len(self.buf) < n:
            chunk = self.conn.recv(65536)
            if not chunk:
                raise EOFError
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def frame(self):
        while True:
            consumed, f = pika.frame.decode_frame(self.buf)
            if f is not None:
                self.buf = self.buf[consumed:]
                return f
            chunk = self.conn.recv(65536)
            if not chunk:
                raise EOFError
            self.buf += chunk

    def until(self, cls):
        """Frames until a method of class cls (answered as a broker would
        on the way), which is returned."""
        while True:
            f = self.frame()
            if isinstance(f, pika.frame.Method) and isinstance(f.method, cls):
                return f
            self.answer(f)

    def silence(self):
        """Read and ignore until the gateway closes."""
        while self.conn.recv(65536):
            pass
        self.broker.eof.append(time.monotonic())

    def answer(self, f):
        """The cooperative broker's answer to one frame."""
        if not isinstance(f, pika.frame.Method):
            return
        m = f.method
        if isinstance(m, pika.spec.Connection.StartOk):
            self.method(0, pika.spec.Connection.Tune(
                channel_max=0, frame_max=131072, heartbeat=0))
        elif isinstance(m, pika.spec.Connection.Open):
            self.method(0, pika.spec.Connection.OpenOk())
        elif isinstance(m, pika.spec.Channel.Open):
            self.method(f.channel_number, pika.spec.Channel.OpenOk())
        elif isinstance(m, pika.spec.Confirm.Select):
            self.method(f.channel_number, pika.spec.Confirm.SelectOk())
            self.tag = 0
        elif isinstance(m, pika.spec.Connection.Close):
            self.method(0, pika.spec.Connection.CloseOk())
        elif isinstance(m, pika.spec.Basic.Publish):
            h = self.frame()
            body = b""
            while len(body) < h.body_size:
                body += self.frame().fragment
            self.broker.published.append((m.exchange, body))
            self.tag += 1
            self.method(f.channel_number,
                        pika.spec.Basic.Ack(delivery_tag=self.tag))

    def serve(self, on_declare=None):
        """A cooperative broker; on_declare(peer, frame) answers a passive
        exchange.declare."""
        self.send(DEFAULT_START)
        while True:
            f = self.frame()
            if (isinstance(f, pika.frame.Method)
                    and isinstance(f.method, pika.spec.Exchange.Declare)):
                self.broker.declares.append(f.method.exchange)
                if on_declare is not None:
                    on_declare(self, f)
                    continue
                self.method(f.channel_number, pika.spec.Exchange.DeclareOk())
                continue
            self.answer(f)


class Broker:
    """A listener; each connection, after the client's protocol header,
    is handed to script(peer) in its own thread."""

    def __init__(self, script):
        self.script = script
        self.published = []
        self.declares = []
        self.eof = []           # when a silent peer saw the gateway close
        self.connections = 0
        self.stop = False
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(256)
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def loop(self):
        while not self.stop:
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.connections += 1
            conn.settimeout(30)
            threading.Thread(target=self.serve, args=(conn,),
                             daemon=True).start()

    def serve(self, conn):
        peer = Peer(conn, self)
        try:
            if peer.read_exact(8) != HEADER:
                return
            self.script(peer)
        except (OSError, EOFError):
            self.eof.append(time.monotonic())   # the gateway hung up
        finally:
            conn.close()

    def close(self):
        self.stop = True
        self.thread.join(5)
        self.sock.close()


@pytest.fixture
def brokers():
    made = []

    def make(script):
        b = Broker(script)
        made.append(b)
        return b

    yield make
    for b in made:
        b.close()


# ----------------------------------------------------------------- gateway

class Gw:
    def __init__(self, nginx_factory, zmqctl, redis_store, tmp_path, defs,
                 outconn_def=None, http_outconns=()):
        register_secret(ADMIN_PW)
        self.live = Live(nginx_factory, zmqctl, redis_store, tmp_path,
                         LOCATIONS, workers=1,
                         http="zmq_amqp_connect_timeout %dms;" % TIMEOUT_MS)
        self.url = self.live.url
        d = {
            "security": [{"name": "admins", "type": "basic_auth",
                          "username": "root", "password": ADMIN_PW}],
            "amqp_def": [dict(name=name, host="127.0.0.1", port=port,
                              username="guest",
                              password=pw if pw is not None else "guest")
                         for name, port, pw in defs],
            "http_outconn": list(http_outconns),
        }
        if outconn_def is not None:
            d["amqp_outconn"] = [{"name": "out", "def": outconn_def}]
        self.live.write(d)
        version = int(redis_store.client().get("zmq:version"))
        self.live.start()
        self.live.wait_version(version)
        if outconn_def is not None:
            self.live.wait_ready("out")

    def ping(self, kind, name, timeout=15):
        with requests.Session() as s:
            return s.post("%s/zmq/admin/api/%s/%s/ping"
                          % (self.url, kind, name), auth=AUTH,
                          timeout=timeout)

    def timed_ping(self, name, kind="amqp_def"):
        t0 = time.monotonic()
        r = self.ping(kind, name)
        took = time.monotonic() - t0
        assert r.status_code == 200, r.text
        return checked_json(r), took

    def send(self, exchange, body="hello", timeout=15):
        with requests.Session() as s:
            return s.post(self.url + "/zmq/admin/api/amqp_outconn/out/send",
                          auth=AUTH, timeout=timeout,
                          json={"exchange": exchange, "routing_key": "k",
                                "body": body})

    def raw(self, path, body=b""):
        """A request on a socket of our own, to leave at will."""
        auth = base64.b64encode(("root:" + ADMIN_PW).encode()).decode()
        c = socket.create_connection(("127.0.0.1", self.live.ngx.port))
        c.sendall(("POST /zmq/admin/api/%s HTTP/1.1\r\nHost: x\r\n"
                   "Authorization: Basic %s\r\nContent-Type: "
                   "application/json\r\nContent-Length: %d\r\n\r\n"
                   % (path, auth, len(body))).encode() + body)
        return c

    def log(self):
        return self.live.ngx.error_log()

    def worker(self):
        pids = self.live.ngx.worker_pids()
        assert len(pids) == 1, pids
        return pids[0]

    def fds(self):
        return len(os.listdir("/proc/%d/fd" % self.worker()))

    def healthy(self):
        r = requests.get(self.url + "/zmq/admin/api/amqp_def", auth=AUTH,
                         timeout=5)
        assert r.status_code == 200, r.text


def checked_json(r):
    """The answer is JSON, in printable ASCII (anything a peer sent is
    escaped), and says ok or why not."""
    assert r.headers["Content-Type"] == "application/json", r.headers
    raw = r.content
    assert all(0x20 <= b < 0x7f or b == 0x0a for b in raw), raw
    return json.loads(raw)


@pytest.fixture
def gw_for(nginx_factory, zmqctl, redis_store, tmp_path):
    def make(defs, **kw):
        return Gw(nginx_factory, zmqctl, redis_store, tmp_path, defs, **kw)
    return make


def wait_eof(b, timeout=1.0):
    deadline = time.monotonic() + timeout
    while not b.eof and time.monotonic() < deadline:
        time.sleep(0.01)
    return bool(b.eof)


def failed(body):
    assert body["ok"] is False, body
    return body["error"]


BOUND = TIMEOUT_MS / 1000.0 + 1.0       # the connect timeout, and slack


# ---------------------------------------------- hostile brokers and a ping

def _garbage(peer):
    peer.send(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
    peer.silence()


def _header_back(peer):
    peer.send(HEADER)
    peer.silence()


def _oversized_start(peer):
    peer.send(start_raw(table([(b"pad", b"S", longstr(b"p" * 200000))])))
    peer.silence()


def _nested_start(peer):
    t = table([])
    for _ in range(300):
        t = table([(b"n", b"F", t)])
    peer.send(start_raw(t))
    peer.silence()


def _lying_table(peer):
    # the table says 4000 bytes, the frame holds 10
    peer.send(start_raw(struct.pack(">L", 4000) + b"\x01kSabc"))
    peer.silence()


def _lying_string(peer):
    # a longstr inside the table longer than the table
    peer.send(start_raw(longstr(shortstr(b"product") + b"S"
                                + struct.pack(">L", 0xfffffff0) + b"x")))
    peer.silence()


def _unknown_field_type(peer):
    peer.send(start_raw(table([(b"product", b"?", b"xyz")])))
    peer.silence()


@pytest.mark.parametrize("script, words", [
    (_garbage, "bad frame from the broker"),
    (_header_back, "does not speak AMQP 0-9-1"),
    (_oversized_start, "larger than frame_max"),
    (_nested_start, "too deeply nested"),
    (_lying_table, "malformed"),
    (_lying_string, "malformed"),
    (_unknown_field_type, "malformed"),
], ids=["garbage_after_header", "protocol_header_back",
        "start_over_frame_max", "tables_nested_300_deep",
        "table_longer_than_frame", "string_longer_than_table",
        "unknown_field_type"])
def test_a_broker_that_sends_nonsense_first_fails_the_ping_at_once_and_says_why(
        brokers, gw_for, script, words):
    b = brokers(script)
    gw = gw_for([("bad", b.port, None)])
    body, took = gw.timed_ping("bad")
    assert words in failed(body), body
    assert "127.0.0.1:%d" % b.port in body["error"], body
    assert took < 0.8, took
    assert wait_eof(b), "the gateway did not hang up"
    gw.healthy()


def test_huge_hostile_server_properties_are_read_and_only_bounded_ascii_is_answered(
        brokers, gw_for):
    entries = [(("k%05d" % i).encode(), b"S", longstr(b"v" * 100))
               for i in range(900)]                    # about 100 KB
    entries.append((b"product", b"S",
                    longstr(b'R"\\\x01\xff\xfe<script>' + b"A" * 500)))
    entries.append((b"version", b"x", longstr(b"3.\x00\n1")))
    entries.append((b"nested", b"F", table([(b"product", b"S",
                                             longstr(b"inner"))])))
    props = table(entries)
    assert 90000 < len(props) < 120000

    def script(peer):
        peer.send(start_raw(props))
        peer.until(pika.spec.Connection.Close)
        peer.silence()

    b = brokers(script)
    gw = gw_for([("big", b.port, None)])
    body, took = gw.timed_ping("big")
    assert body["ok"] is True, body
    product = body["server"]["product"]
    assert product == ('R"\\???<script>' + "A" * 500)[:63], product
    assert body["server"]["version"] == "3.??1", body


def test_a_product_that_is_not_a_string_is_left_out(brokers, gw_for):
    def script(peer):
        peer.send(start_raw(table([(b"product", b"F", table([])),
                                   (b"version", b"I",
                                    struct.pack(">l", 7))])))
        peer.until(pika.spec.Connection.Close)
        peer.silence()

    b = brokers(script)
    gw = gw_for([("odd", b.port, None)])
    body, _ = gw.timed_ping("odd")
    assert body["ok"] is True, body
    assert "product" not in body.get("server", {}), body


@pytest.mark.parametrize("after", [
    pika.spec.Connection.StartOk, pika.spec.Connection.Open,
    pika.spec.Channel.Open])
def test_a_broker_that_goes_silent_mid_handshake_is_timed_out_within_the_bound(
        brokers, gw_for, after):
    def script(peer):
        peer.send(DEFAULT_START)
        peer.until(after)
        peer.silence()

    b = brokers(script)
    gw = gw_for([("mute", b.port, None)])
    body, took = gw.timed_ping("mute")
    assert "the AMQP handshake timed out" in failed(body), body
    assert "%d ms" % TIMEOUT_MS in body["error"]
    assert TIMEOUT_MS / 1000.0 - 0.1 <= took <= BOUND, took
    assert wait_eof(b)           # the gateway closed the socket
    gw.healthy()


def test_a_broker_that_floods_heartbeats_instead_of_tune_is_still_timed_out(
        brokers, gw_for):
    flood = (struct.pack(">BHL", 8, 0, 0) + b"\xce") * (1 << 17)   # 1 MB

    def script(peer):
        peer.send(DEFAULT_START)
        peer.until(pika.spec.Connection.StartOk)
        end = time.monotonic() + 5
        while time.monotonic() < end:
            peer.send(flood)

    b = brokers(script)
    gw = gw_for([("flood", b.port, None)])
    body, took = gw.timed_ping("flood")
    assert "the AMQP handshake timed out" in failed(body), body
    assert took <= BOUND, took
    assert wait_eof(b)
    gw.healthy()


@pytest.mark.parametrize("after", [None, pika.spec.Connection.StartOk,
                                   pika.spec.Connection.Open,
                                   pika.spec.Channel.Open])
def test_a_broker_that_hangs_up_mid_handshake_fails_the_ping_at_once(
        brokers, gw_for, after):
    def script(peer):
        if after is not None:
            peer.send(DEFAULT_START)
            peer.until(after)
        peer.conn.shutdown(socket.SHUT_RDWR)

    b = brokers(script)
    gw = gw_for([("hangup", b.port, None)])
    body, took = gw.timed_ping("hangup")
    err = failed(body)
    assert "closed by the broker" in err or "reset" in err.lower(), body
    assert took < 0.8, took


@pytest.mark.parametrize("channel", [0, 1])
def test_close_frames_with_hostile_reply_text_are_escaped_and_bounded(
        brokers, gw_for, channel):
    def script(peer):
        peer.send(DEFAULT_START)
        peer.until(pika.spec.Connection.Open if channel == 0
                   else pika.spec.Channel.Open)
        peer.send(close_raw(channel, 404, HOSTILE_TEXT))
        peer.silence()

    b = brokers(script)
    gw = gw_for([("rude", b.port, None)])
    body, took = gw.timed_ping("rude")
    err = failed(body)
    assert err.startswith('NOT_FOUND - "x\\x5cy" %s %n \\x00\\x01\\x0a'
                          '\\x0d\\x1b[31m \\xff\\xfe\\xc3AAA'), err
    assert len(err) < 512
    assert took < 0.8, took
    # the log line is escaped too
    log = gw.log()
    assert "\x1b[31m" not in log and "\x00" not in log


def test_frames_out_of_order_or_on_other_channels_fail_the_ping(
        brokers, gw_for):
    cases = {
        "early": lambda p: p.method(1, pika.spec.Channel.OpenOk()),
        "chan2": lambda p: p.method(2, pika.spec.Channel.OpenOk()),
        "declok": lambda p: p.method(1, pika.spec.Exchange.DeclareOk()),
        "ack": lambda p: p.method(1, pika.spec.Basic.Ack(delivery_tag=1)),
        "ret": lambda p: p.send(
            marshal(1, pika.spec.Basic.Return(reply_code=312,
                                              reply_text="NO_ROUTE",
                                              exchange="", routing_key="k"))
            + pika.frame.Header(1, 3, pika.spec.BasicProperties()).marshal()
            + frame(3, 1, b"abc")),
        "body": lambda p: p.send(frame(3, 1, b"abc")),
        "start2": lambda p: p.send(DEFAULT_START),
    }
    expect = {"early": "in the handshake", "chan2": "never opened",
              "declok": "unexpected exchange.declare-ok",
              "ack": "timed out", "ret": "timed out",
              "body": "without a header", "start2": "in the handshake"}
    made = {}
    for name, act in cases.items():
        def script(peer, act=act):
            peer.send(DEFAULT_START)
            peer.until(pika.spec.Connection.StartOk)
            act(peer)
            peer.silence()
        made[name] = brokers(script)
    gw = gw_for([(n, b.port, None) for n, b in made.items()])
    for name in cases:
        body, took = gw.timed_ping(name)
        assert expect[name] in failed(body), (name, body)
        assert took <= BOUND, (name, took)
    gw.healthy()


def test_a_broker_that_never_closes_after_the_ping_is_left_behind(
        brokers, gw_for):
    def script(peer):
        peer.send(DEFAULT_START)
        peer.until(pika.spec.Connection.Close)   # the probe's goodbye
        peer.silence()                           # no close-ok, no FIN

    b = brokers(script)
    gw = gw_for([("sticky", b.port, None)])
    fds = gw.fds()
    body, took = gw.timed_ping("sticky")
    assert body["ok"] is True, body
    assert body["server"] == {"product": "hostile", "version": "6.6.6"}
    assert wait_eof(b), "the probe did not close its socket"
    assert gw.fds() <= fds       # a leak would be one per ping


# ------------------------------------------------------ the exchange check

def _declare_by_name(peer, f):
    """The answer to a passive exchange.declare depends on its name."""
    name = f.method.exchange
    ch = f.channel_number
    if name == "twice":
        peer.method(ch, pika.spec.Exchange.DeclareOk())
        peer.method(ch, pika.spec.Exchange.DeclareOk())
        peer.send(b"\x00garbage")
    elif name == "huge":
        peer.send(close_raw(ch, 404, HOSTILE_TEXT))
    elif name == "refused":
        peer.send(close_raw(ch, 403, b"ACCESS_REFUSED - no"))
    elif name == "stall":
        peer.silence()
        raise EOFError
    elif name == "connclose":
        peer.send(close_raw(0, 541, b"INTERNAL_ERROR \xff"))
    elif name == "gone":
        peer.conn.shutdown(socket.SHUT_RDWR)
        raise EOFError
    elif name == "ackinstead":
        peer.method(ch, pika.spec.Basic.Ack(delivery_tag=1))
        peer.method(ch, pika.spec.Exchange.DeclareOk())
    else:
        peer.method(ch, pika.spec.Exchange.DeclareOk())


@pytest.fixture
def coop(brokers, gw_for):
    b = brokers(lambda peer: peer.serve(_declare_by_name))
    gw = gw_for([("coop", b.port, None)], outconn_def="coop")
    gw.broker = b
    return gw


def test_an_exchange_declare_ok_answered_twice_still_sends_once(coop):
    r = coop.send("twice", body="m-twice")
    assert r.status_code == 202, r.text
    assert coop.broker.published == [("twice", b"m-twice")]


@pytest.mark.parametrize("exchange, status, code", [
    ("huge", 404, "exchange_not_found"),
    ("refused", 502, "exchange_refused"),
    ("connclose", 503, "broker_unavailable"),
    ("gone", 503, "broker_unavailable"),
    ("stall", 503, "broker_unavailable"),
])
def test_a_hostile_answer_to_the_exchange_check_is_a_precise_error_and_nothing_is_sent(
        coop, exchange, status, code):
    t0 = time.monotonic()
    r = coop.send(exchange)
    took = time.monotonic() - t0
    assert r.status_code == status, r.text
    body = checked_json(r)
    assert body["error"] == code, body
    assert took <= BOUND, took
    if exchange == "huge":
        assert body["message"].startswith('NOT_FOUND - "x\\x5cy"'), body
    if exchange == "stall":
        assert "timed out" in body["message"], body
    assert coop.broker.published == []
    # the shared connection is untouched: a send to the default exchange
    r = coop.send("", body="after")
    assert r.status_code == 202, r.text
    assert coop.broker.published == [("", b"after")]


def test_an_ack_during_the_exchange_check_is_ignored(coop):
    r = coop.send("ackinstead")
    assert r.status_code == 202, r.text


def test_a_client_that_leaves_mid_check_cancels_it_and_sends_nothing(coop):
    b = coop.broker
    c = coop.raw("amqp_outconn/out/send",
                 json.dumps({"exchange": "stall", "body": "x"}).encode())
    deadline = time.monotonic() + 5
    while "stall" not in b.declares and time.monotonic() < deadline:
        time.sleep(0.01)
    assert "stall" in b.declares
    c.close()
    t0 = time.monotonic()
    while not b.eof and time.monotonic() < deadline:
        time.sleep(0.01)
    assert b.eof and b.eof[0] - t0 < 0.5, "the check was not cancelled"
    time.sleep(TIMEOUT_MS / 1000.0)      # past the probe's deadline
    assert "probe cancelled" in coop.log()
    assert b.published == []
    assert coop.send("there", body="y").status_code == 202


def test_clients_leaving_at_random_moments_of_pings_and_checks(coop):
    rnd = random.Random(12)
    for i in range(60):
        if i % 2:
            c = coop.raw("amqp_def/coop/ping")
        else:
            c = coop.raw("amqp_outconn/out/send", json.dumps(
                {"exchange": "there", "body": "r%d" % i}).encode())
        time.sleep(rnd.uniform(0, 0.012))
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                     struct.pack("ii", 1, 0))       # a reset, at once
        c.close()
    time.sleep(0.5)
    coop.healthy()
    body, _ = coop.timed_ping("coop")
    assert body["ok"] is True, body
    assert coop.send("there", body="last").status_code == 202


def test_many_concurrent_pings_are_all_answered_and_leave_no_descriptor(
        brokers, gw_for):
    fast = brokers(lambda peer: peer.serve())
    mute = brokers(lambda peer: peer.silence())
    gw = gw_for([("fast", fast.port, None), ("mute", mute.port, None)])
    fds = gw.fds()
    results = []

    def one(name):
        r = gw.ping("amqp_def", name, timeout=30)
        results.append((name, r.status_code, r.json()))

    threads = [threading.Thread(target=one, args=("fast" if i % 4 else
                                                  "mute",))
               for i in range(80)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(results) == 80
    for name, status, body in results:
        assert status == 200, body
        assert body["ok"] is (name == "fast"), body
    time.sleep(0.3)
    assert gw.fds() <= fds       # a leak would be one per ping


# ------------------------------------------------------------- http/https

class StallTls:
    """Accepts TCP connections and never says a word (a TLS server that
    stalls mid-handshake, after reading the ClientHello)."""

    def __init__(self):
        self.b = Broker(lambda peer: None)
        self.b.serve = self.serve
        self.port = self.b.port
        self.hello = []
        self.eof = []

    def serve(self, conn):
        try:
            while True:
                data = conn.recv(65536)
                if not data:
                    self.eof.append(time.monotonic())
                    return
                self.hello.append(data)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self):
        self.b.close()


def test_an_https_listener_that_stalls_mid_handshake(gw_for):
    s = StallTls()
    try:
        gw = gw_for([], http_outconns=[
            {"name": "stall", "url": "https://127.0.0.1:%d/" % s.port,
             "timeout": TIMEOUT_MS, "tls": True}])
        body, took = gw.timed_ping("stall", kind="http_outconn")
        assert "the TLS handshake timed out" in failed(body), body
        assert took <= BOUND, took
        assert s.hello and s.hello[0][:1] == b"\x16"   # a ClientHello
        assert wait_eof(s)

        # a client that leaves mid-handshake ends it at once
        s.eof.clear()
        c = gw.raw("http_outconn/stall/ping")
        time.sleep(0.2)
        c.close()
        t0 = time.monotonic()
        while not s.eof and time.monotonic() - t0 < 2:
            time.sleep(0.01)
        assert s.eof and s.eof[0] - t0 < 0.5
        gw.healthy()
    finally:
        s.close()


def test_repeated_https_pings_leave_no_descriptor_behind(gw_for, tmp_path):
    tls = TlsServer(tmp_path)
    try:
        url = "https://127.0.0.1:%d/" % tls.port
        gw = gw_for([], http_outconns=[
            {"name": "v", "url": url, "tls": True},
            {"name": "u", "url": url, "tls": False}])
        fds = gw.fds()
        for i in range(20):
            body, _ = gw.timed_ping("u" if i % 2 else "v",
                                    kind="http_outconn")
            assert body["ok"] is bool(i % 2), body
        time.sleep(0.2)
        assert gw.fds() <= fds       # a leak would be one per ping
    finally:
        tls.close()


def test_https_pings_load_the_authorities_once_per_worker(gw_for, tmp_path):
    """Loading the system's authorities into a fresh TLS context takes some
    20 ms of CPU on the event loop: it is done once per worker, not per
    ping (the worker logs each context it makes)."""
    tls = TlsServer(tmp_path)
    try:
        url = "https://127.0.0.1:%d/" % tls.port
        gw = gw_for([], http_outconns=[
            {"name": "v", "url": url, "tls": True},
            {"name": "u", "url": url, "tls": False}])
        for name in ("u", "v") * 8:
            body, _ = gw.timed_ping(name, kind="http_outconn")
            assert "ms" in body, body
        log = gw.live.ngx.error_log()
        assert log.count("this worker's verifying TLS client context is "
                         "made") == 1, log
        assert log.count("this worker's non-verifying TLS client context "
                         "is made") == 1, log
    finally:
        tls.close()


# ------------------------------------------------------------------ secrets

def _memory_holds(pid, needle):
    """How many times needle is in the process's writable memory."""
    n = 0
    with open("/proc/%d/maps" % pid) as maps, \
            open("/proc/%d/mem" % pid, "rb", 0) as mem:
        for line in maps:
            fields = line.split()
            if "rw" not in fields[1]:
                continue
            if len(fields) > 5 and fields[5].startswith("["):
                if fields[5] not in ("[heap]", "[stack]"):
                    continue
            lo, hi = (int(x, 16) for x in fields[0].split("-"))
            if hi - lo > (1 << 31):
                continue            # ASan's shadow
            try:
                mem.seek(lo)
                data = mem.read(hi - lo)
            except (OSError, ValueError, OverflowError):
                continue
            n += data.count(needle)
    return n


@pytest.mark.skipif(os.geteuid() != 0, reason="reads a worker's memory")
def test_the_ping_leaves_no_copy_of_the_broker_password_in_the_worker(
        brokers, gw_for):
    pw = "pw-" + uuid.uuid4().hex
    register_secret(pw)
    seen = []

    def script(peer):
        peer.send(DEFAULT_START)
        f = peer.until(pika.spec.Connection.StartOk)
        seen.append(pw.encode() in f.method.response.encode()
                    if isinstance(f.method.response, str)
                    else pw.encode() in f.method.response)
        peer.method(0, pika.spec.Connection.Tune(
            channel_max=0, frame_max=131072, heartbeat=0))
        peer.until(pika.spec.Connection.Close)
        peer.silence()

    b = brokers(script)
    # the password is sealed in Redis (zmq_key_file): only a ping opens it
    gw = gw_for([("secret", b.port, pw)])
    body, _ = gw.timed_ping("secret")
    assert body["ok"] is True, body
    assert seen == [True]
    time.sleep(0.2)
    found = _memory_holds(gw.worker(), pw.encode())
    assert found == 0, "the password is still in the worker's memory " \
                       "(%d copies)" % found


# ------------------------------------------------------- graceful shutdown

@pytest.mark.parametrize("what", ["amqp_ping", "exchange_check",
                                  "https_ping"])
def test_a_graceful_shutdown_answers_the_pending_ping_or_check_first(
        brokers, gw_for, what):
    mute = brokers(lambda peer: peer.silence())
    coop = brokers(lambda peer: peer.serve(_declare_by_name))
    tls = StallTls()
    try:
        gw = gw_for([("mute", mute.port, None), ("coop", coop.port, None)],
                    outconn_def="coop", http_outconns=[
                        {"name": "stall", "timeout": TIMEOUT_MS,
                         "url": "https://127.0.0.1:%d/" % tls.port}])
        answer = {}

        def request():
            try:
                if what == "amqp_ping":
                    answer["r"] = gw.ping("amqp_def", "mute")
                elif what == "https_ping":
                    answer["r"] = gw.ping("http_outconn", "stall")
                else:
                    answer["r"] = gw.send("stall")
            except requests.RequestException as e:
                answer["e"] = e

        t = threading.Thread(target=request)
        t.start()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not (
                mute.connections or tls.hello or coop.declares):
            time.sleep(0.01)
        time.sleep(0.1)
        gw.live.ngx.proc.send_signal(signal.SIGQUIT)
        t.join(10)
        assert "e" not in answer, answer
        r = answer["r"]
        body = checked_json(r)
        if what == "exchange_check":
            assert r.status_code == 503, r.text
            assert "timed out" in body["message"], body
        else:
            assert "timed out" in failed(body), body
        assert gw.live.ngx.proc.wait(10) == 0
    finally:
        tls.close()
