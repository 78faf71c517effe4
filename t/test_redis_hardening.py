"""What a hostile or failing store and sentinel can no longer do (attack
review, findings b, d, e, f):

* (b) a command sent on a store connection before its SELECT/AUTH: an
  admin write whose build (on a thread) ends while the connection is
  reconnecting is refused (503), not queued ahead of SELECT;
* (d) a sentinel flooding +switch-master cannot make the workers reconnect
  in a loop, and a real switch is still followed;
* (e) a fleet entry's unknown fields do not reach zmq_status;
* (f) a store's error texts reach the log and zmqctl's stderr printable
  and cut.

Small RESP servers on loopback play the hostile parts (a recording proxy
in front of the real Redis, a sentinel, a store that answers errors);
every other part is real (redis-server, nginx, zmqctl)."""

import json
import os
import socket
import subprocess
import threading
import time

import pytest
import requests

from conftest import (ZMQCTL, RedisServer, record_output, register_secret,
                      register_url_secret)

STATUS = "location = /zmq/status { zmq_status; }\n"
OPEN = "location /zmq/open/ { zmq_admin; zmq_admin_auth off; }\n"
ROUTER = "location /api/ { zmq_router; }\n"
NAME = "hostilemaster"


def wait_until(fn, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            v = fn()
        except Exception as e:          # not up yet
            last = e
            v = None
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError("timed out waiting for %s (last: %r)" % (what, last))


def status(ngx):
    return requests.get(ngx.url + "/zmq/status", timeout=5).json()


def wait_version(ngx, v, timeout=30):
    def ok():
        ws = status(ngx)["workers"]
        return ws and all(w["config_version"] == v
                          and w["source_state"] == "connected" for w in ws)
    wait_until(ok, timeout, "every worker at version %d" % v)


def ctl(env, *args, check=None):
    r = subprocess.run([ZMQCTL] + [str(a) for a in args], env=env,
                       capture_output=True, timeout=60)
    out = r.stdout.decode(errors="replace")
    err = r.stderr.decode(errors="replace")
    record_output("zmqctl %s" % " ".join(map(str, args)), out + err)
    if check is not None:
        assert r.returncode == check, (r.returncode, out, err)
    return r


def import_config(env, tmp_path, doc):
    p = tmp_path / ("c%d.json" % time.monotonic_ns())
    p.write_text(json.dumps(doc))
    r = ctl(env, "import", "--replace", p, check=0)
    return int(r.stdout.decode().rsplit("version", 1)[1])


def outconns(n, tag):
    return {"http_outconn": [{"name": "h%d" % i,
                              "url": "http://127.0.0.1:1/%s/%d" % (tag, i)}
                             for i in range(n)]}


# ------------------------------------------------------------------ RESP


class Commands:
    """The commands a client sends (arrays of bulk strings), read
    incrementally from what arrives."""

    def __init__(self):
        self.buf = b""

    def feed(self, data):
        self.buf += data
        out = []
        while True:
            cmd, rest = self.one(self.buf)
            if cmd is None:
                return out
            out.append(cmd)
            self.buf = rest

    @staticmethod
    def one(buf):
        if not buf.startswith(b"*"):
            return None, buf
        end = buf.find(b"\r\n")
        if end < 0:
            return None, buf
        n = int(buf[1:end])
        pos = end + 2
        args = []
        for _ in range(n):
            end = buf.find(b"\r\n", pos)
            if end < 0 or buf[pos:pos + 1] != b"$":
                return None, buf
            ln = int(buf[pos + 1:end])
            if len(buf) < end + 2 + ln + 2:
                return None, buf
            args.append(buf[end + 2:end + 2 + ln])
            pos = end + 2 + ln + 2
        return args, buf[pos:]


def bulk(s):
    s = s if isinstance(s, bytes) else str(s).encode()
    return b"$%d\r\n%s\r\n" % (len(s), s)


def array(*items):
    return b"*%d\r\n" % len(items) + b"".join(bulk(i) for i in items)


class Server:
    """A TCP server on loopback, one thread per connection; stopped (and
    its connections closed) by close()."""

    def __init__(self, backlog=64):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(backlog)
        self.port = self.sock.getsockname()[1]
        self.stopped = False
        self.accepting = threading.Event()
        self.accepting.set()
        self.lock = threading.Lock()
        self.conns = []
        self.accepted = 0
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        self.sock.settimeout(0.05)
        while not self.stopped:
            if not self.accepting.is_set():
                time.sleep(0.02)
                continue
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                self.conns.append(conn)
                self.accepted += 1
            threading.Thread(target=self.guard, args=(conn,),
                             daemon=True).start()

    def guard(self, conn):
        try:
            self.handle(conn)
        except OSError:
            pass
        finally:
            conn.close()

    def drop(self):
        """Closes every connection (as a restart of the server would)."""
        with self.lock:
            conns, self.conns = self.conns, []
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self):
        self.stopped = True
        self.accepting.set()
        self.drop()
        self.sock.close()
        self.thread.join(5)


class RecordingProxy(Server):
    """In front of the real Redis: records, per connection, the commands
    the client sends, in order. stall() makes new connections wait in
    connect() (the accept queue is full: their SYNs are dropped until
    release())."""

    def __init__(self, upstream):
        super().__init__(backlog=0)
        self.upstream = upstream
        self.sessions = []
        self.dummies = []

    def handle(self, conn):
        up = socket.create_connection(("127.0.0.1", self.upstream))
        cmds = []
        with self.lock:
            self.sessions.append(cmds)
            self.conns.append(up)
        reader = Commands()

        def back():
            try:
                while True:
                    d = up.recv(65536)
                    if not d:
                        break
                    conn.sendall(d)
            except OSError:
                pass
            finally:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

        t = threading.Thread(target=back, daemon=True)
        t.start()
        try:
            while True:
                d = conn.recv(65536)
                if not d:
                    break
                cmds.extend(reader.feed(d))
                up.sendall(d)
        finally:
            try:
                up.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            t.join(5)
            up.close()

    def stall(self):
        self.accepting.clear()
        time.sleep(0.1)             # the accept loop sees it
        for _ in range(3):
            d = socket.socket()
            d.setblocking(False)
            d.connect_ex(("127.0.0.1", self.port))
            self.dummies.append(d)
        time.sleep(0.1)

    def release(self):
        for d in self.dummies:
            d.close()
        self.dummies = []
        self.accepting.set()

    def commands(self):
        with self.lock:
            return [list(s) for s in self.sessions]


# ------------------------------------------------------------------- (b)


def test_a_write_built_while_the_store_reconnects_never_precedes_select(
        nginx_factory, zmqctl, redis_store, tmp_path):
    """The admin write's build runs on a thread (it may hash passwords).
    Here the thread pool has one thread, held by the snapshot cache's write
    into a FIFO, so the build waits; meanwhile the store connection is
    lost and its reconnect hangs in connect(). When the build ends, its
    EVAL must not be queued on that connection (it would go out before
    SELECT 1, into database 0): the write is refused with 503, and every
    connection's first command is SELECT."""
    proxy = RecordingProxy(redis_store.port)
    env = dict(zmqctl.env, ZMQ_REDIS="redis://127.0.0.1:%d/1"
               % redis_store.port)
    try:
        v1 = import_config(env, tmp_path, outconns(1, "b1"))
        ngx = nginx_factory(
            http="zmq_key_file %s;\nzmq_config redis://127.0.0.1:%d/1;\n"
                 "zmq_fleet_interval 0;\n" % (
                     zmqctl.env["ZMQ_KEY_FILE"], proxy.port),
            server=STATUS + OPEN + ROUTER, workers=1)
        with open(ngx.conf) as f:
            conf = f.read()
        with open(ngx.conf, "w") as f:
            f.write(conf.replace("daemon off;",
                                 "daemon off;\nthread_pool default "
                                 "threads=1;", 1))
        ngx.start()
        wait_version(ngx, v1)

        # the pool's one thread: blocked opening the cache's FIFO
        pid = ngx.worker_pids()[0]
        fifo = os.path.join(ngx.dir, "zmq_cache",
                            "config.json.%d.tmp" % pid)
        os.mkfifo(fifo)
        os.chmod(fifo, 0o666)
        v2 = import_config(env, tmp_path, outconns(2, "b2"))
        wait_version(ngx, v2)

        # the write: its snapshot read, its build queued behind the cache
        answer = {}

        def post():
            answer["r"] = requests.post(
                ngx.url + "/zmq/open/api/http_outconn", timeout=30,
                json={"name": "during", "url": "http://127.0.0.1:1/"})

        evals = sum(c[0].upper() == b"EVAL" for s in proxy.commands()
                    for c in s)
        writer = threading.Thread(target=post)
        writer.start()
        wait_until(lambda: sum(c[0].upper() == b"EVAL"
                               for s in proxy.commands() for c in s)
                   > evals, 10, "the write's snapshot read")
        time.sleep(0.3)
        assert "r" not in answer

        # the store goes away; its reconnect hangs in connect()
        proxy.stall()
        proxy.drop()
        time.sleep(0.4)

        # the thread is free: the build ends while the store is connecting
        with open(fifo, "rb") as f:
            f.read()
        time.sleep(0.4)
        proxy.release()
        writer.join(30)

        for s in proxy.commands():
            if s:
                assert s[0][:2] == [b"SELECT", b"1"], [c[0] for c in s[:3]]
        # nothing went to database 0
        assert redis_store.client().keys("zmq:*") == []
        r = answer["r"]
        assert r.status_code == 503, r.text
        assert r.json()["error"] == "redis_unavailable", r.text
    finally:
        proxy.close()


# ------------------------------------------------------------------- (d)


class FakeSentinel(Server):
    """Names master_port as NAME's master, takes SUBSCRIBE +switch-master
    and publishes what flood() is given."""

    def __init__(self, master_port):
        super().__init__()
        self.master_port = master_port
        self.subscribers = []

    def handle(self, conn):
        send = threading.Lock()
        reader = Commands()
        while True:
            d = conn.recv(65536)
            if not d:
                return
            for cmd in reader.feed(d):
                name = cmd[0].upper()
                if name == b"SENTINEL":
                    out = array("127.0.0.1", self.master_port)
                elif name == b"SUBSCRIBE":
                    out = b"*3\r\n" + bulk("subscribe") + bulk(cmd[1]) \
                        + b":1\r\n"
                    with self.lock:
                        self.subscribers.append((conn, send))
                elif name == b"PING":
                    out = b"+PONG\r\n"
                else:
                    out = b"-ERR unknown command\r\n"
                with send:
                    conn.sendall(out)

    def publish(self, text):
        msg = array("message", "+switch-master", text)
        with self.lock:
            subs = list(self.subscribers)
        for conn, send in subs:
            try:
                with send:
                    conn.sendall(msg)
            except OSError:
                pass

    def flood(self, text, seconds, every=0.002):
        n = 0
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.publish(text)
            n += 1
            time.sleep(every)
        return n


def connections(redis_server):
    return int(redis_server.client().info("stats")
               ["total_connections_received"])


@pytest.fixture
def sentinel_gateway(nginx_factory, zmqctl, redis_store, tmp_path):
    made = []

    def make(master_port):
        s = FakeSentinel(master_port)
        made.append(s)
        ngx = nginx_factory(
            http="zmq_key_file %s;\nzmq_config redis-sentinel://127.0.0.1:"
                 "%d/%s/0;\nzmq_config_poll 500ms;\nzmq_fleet_interval 0;\n"
                 % (zmqctl.env["ZMQ_KEY_FILE"], s.port, NAME),
            server=STATUS, workers=1)
        ngx.start()
        return s, ngx

    yield make
    for s in made:
        s.close()


def test_switch_master_naming_the_master_in_use_is_ignored(
        sentinel_gateway, zmqctl, redis_store, tmp_path):
    v = import_config(zmqctl.env, tmp_path, outconns(1, "d1"))
    s, ngx = sentinel_gateway(redis_store.port)
    wait_version(ngx, v)
    wait_until(lambda: s.subscribers, 10, "the watch to subscribe")
    time.sleep(0.5)                 # ROLE answered on both connections

    before = connections(redis_store)
    n = s.flood("%s 127.0.0.1 1 127.0.0.1 %d" % (NAME, redis_store.port), 2)
    time.sleep(0.5)
    after = connections(redis_store)
    assert n > 100
    assert after - before <= 1, (before, after)     # the count's own
    assert "the master this worker is on already, ignored" \
        in ngx.error_log()
    wait_version(ngx, v)


def test_a_switch_master_flood_reconnects_a_bounded_number_of_times(
        sentinel_gateway, zmqctl, redis_store, tmp_path):
    v = import_config(zmqctl.env, tmp_path, outconns(1, "d2"))
    s, ngx = sentinel_gateway(redis_store.port)
    wait_version(ngx, v)
    wait_until(lambda: s.subscribers, 10, "the watch to subscribe")
    time.sleep(0.5)

    # 3 s of messages naming another master: reconnects at 0, 1 and 3 s,
    # two connections each (and the count's own)
    before = connections(redis_store)
    n = s.flood("%s 127.0.0.1 %d 127.0.0.1 1" % (NAME, redis_store.port), 3)
    time.sleep(0.3)
    after = connections(redis_store)
    assert n > 300
    assert after - before <= 2 * 4 + 1, (n, before, after)
    wait_version(ngx, v, timeout=15)

    # a real failover right after the flood: followed within a hold
    (tmp_path / "redis2").mkdir()
    other = RedisServer(str(tmp_path / "redis2"))
    try:
        env = dict(zmqctl.env, ZMQ_REDIS=other.url)
        v2 = import_config(env, tmp_path, outconns(3, "d2b"))
        v2 = import_config(env, tmp_path, outconns(2, "d2c"))
        assert v2 != v
        s.master_port = other.port
        s.publish("%s 127.0.0.1 %d 127.0.0.1 %d" % (
            NAME, redis_store.port, other.port))
        t0 = time.monotonic()
        wait_version(ngx, v2, timeout=15)
        assert time.monotonic() - t0 < 10
    finally:
        other.stop()


# ------------------------------------------------------------------- (e)


KNOWN = {"kind", "instance", "host", "pid", "software", "version",
         "max_version", "state", "workers", "started", "reported",
         "interval", "lag", "age"}


def test_a_fleet_entry_shows_only_its_known_fields(
        nginx_factory, zmqctl, redis_store, tmp_path):
    v = import_config(zmqctl.env, tmp_path, outconns(1, "e"))
    r = redis_store.client()
    now = int(r.time()[0])
    entry = {"kind": "gateway", "instance": "evil", "version": v,
             "reported": now, "host": "h", "pid": "not a number",
             "workers": [1, 2], "admin_url": "http://evil.example/",
             "nested": {"deep": ["x" * 100]}, "lag": -1,
             "note": "<script>alert(1)</script>"}
    r.set("zmq:fleet:gateway:evil", json.dumps(entry), ex=100)
    r.zadd("zmq:fleet", {"gateway:evil": now + 100})

    ngx = nginx_factory(
        http="zmq_key_file %s;\nzmq_config redis://127.0.0.1:%d/0;\n"
             "zmq_fleet_interval 1s;\n" % (zmqctl.env["ZMQ_KEY_FILE"],
                                           redis_store.port),
        server=STATUS, workers=1)
    ngx.start()

    def evil():
        for e in (status(ngx).get("fleet") or {}).get("instances", []):
            if e["instance"] == "evil":
                return e
    e = wait_until(evil, 15, "the evil entry in zmq_status")
    assert set(e) <= KNOWN, set(e) - KNOWN
    assert "pid" not in e and "workers" not in e     # not integers
    assert e["lag"] == 0 and e["host"] == "h"

    out = json.loads(ctl(zmqctl.env, "fleet", "--json").stdout)
    e = [x for x in out["instances"] if x["instance"] == "evil"][0]
    assert set(e) <= KNOWN, set(e) - KNOWN


# ------------------------------------------------------------------- (f)


# control characters, a line break of its own, an escape sequence, and
# 10 KB: what a hostile store can put in an error reply
HOSTILE = (b"ERR \x1b[31mRED\x07\x08\rFAKE\n2030/01/01 [emerg] injected "
           + b"A" * 1000 + b"MARK-AT-1000" + b"B" * 9000)


class ErrorStore(Server):
    """Answers every command with the hostile error."""

    def handle(self, conn):
        reader = Commands()
        while True:
            d = conn.recv(65536)
            if not d:
                return
            for _ in reader.feed(d):
                conn.sendall(b"-" + HOSTILE + b"\r\n")


def assert_filtered(text, where):
    assert "\x1b" not in text and "\x07" not in text and "\x08" not in text, \
        where
    assert "MARK-AT-1000" not in text, where
    for line in text.splitlines():
        if "RED" in line:
            assert len(line) < 700, (where, len(line))


def test_store_error_texts_are_logged_printable_and_cut(
        nginx_factory, zmqctl, tmp_path):
    store = ErrorStore()
    try:
        ngx = nginx_factory(
            http="zmq_key_file %s;\nzmq_config redis://127.0.0.1:%d/0;\n"
                 "zmq_config_poll 200ms;\nzmq_fleet_interval 1s;\n" % (
                     zmqctl.env["ZMQ_KEY_FILE"], store.port),
            server=STATUS, workers=1)
        ngx.start()
        # the snapshot, SUBSCRIBE, PING and the fleet report, each refused
        where = ("redis: snapshot: ERR ", "SUBSCRIBE zmq:events: ERR ",
                 "PING: ERR ", "refused this gateway's report: ERR ")
        wait_until(lambda: all(w in ngx.error_log() for w in where), 15,
                   "every refusal logged")
        log = ngx.error_log()
        assert_filtered(log, "error.log")
        for w in where:
            assert w + "?[31mRED???FAKE?2030/01/01 [emerg] injected AAA" \
                in log, w
        assert "A" * 150 + "..." in log

        # zmqctl: stderr
        env = dict(zmqctl.env, ZMQ_REDIS="redis://127.0.0.1:%d/0"
                   % store.port)
        r = ctl(env, "fleet")
        err = r.stderr.decode(errors="replace")
        assert r.returncode != 0 and "ERR ?[31mRED" in err, err
        assert_filtered(err, "zmqctl fleet")
        assert len(r.stderr) < 600

        password = "hostile-pw-%s" % os.urandom(4).hex()
        register_secret(password)
        url = "redis://:%s@127.0.0.1:%d/0" % (password, store.port)
        register_url_secret(url)
        r = ctl(dict(env, ZMQ_REDIS=url), "export")
        err = r.stderr.decode(errors="replace")
        assert r.returncode != 0 and "AUTH: ERR ?[31mRED" in err, err
        assert_filtered(err, "zmqctl export")
    finally:
        store.close()
