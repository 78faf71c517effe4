"""Redis Sentinel for the configuration store (issue 19, item 2): zmqctl,
zmqd and every NGINX worker reach the store through
redis-sentinel://sentinel,sentinel,sentinel/master/db. A master, a replica
(redis-server --replicaof) and three sentinels run on loopback
(t/sentinel_cluster.py); the master and replica require a password, the
sentinels none. Each step is proven by the event that decides it: the
sentinels naming the new master (asked with redis-py), the version the
workers run (zmq_status), zmqd's log, the key in the new master."""

import json
import os
import re
import time
import uuid

import pytest
import requests

from conftest import register_input_file
from sentinel_cluster import NAME, PASSWORD, SentinelCluster, wait_until
from test_zmqd import Zmqd

STATUS = "location = /zmq/status { zmq_status; }\n"
OPEN = "location /zmq/open/ { zmq_admin; zmq_admin_auth off; }\n"
PUB = "location = /pub { zmq_service svc; }\n"


@pytest.fixture
def cluster(tmp_path):
    made = []

    def make(**kw):
        d = tmp_path / ("sentinel%d" % len(made))
        d.mkdir()
        c = SentinelCluster(str(d), **kw)
        made.append(c)
        return c.start()

    yield make
    for c in made:
        c.stop()


def outconns(n, tag):
    """A configuration that needs no broker: n HTTP outgoing connections."""
    return {"http_outconn": [{"name": "h%d" % i,
                              "url": "http://127.0.0.1:1/%s/%d" % (tag, i)}
                             for i in range(n)]}


class Store:
    """zmqctl through the sentinels, with the test's key."""

    def __init__(self, zmqctl, cluster, tmp):
        self.ctl = zmqctl
        self.tmp = tmp
        self.url = cluster.url()
        self.env = dict(zmqctl.env, ZMQ_REDIS=self.url)

    def __call__(self, *args, check=None):
        import subprocess
        from conftest import ZMQCTL, record_output
        r = subprocess.run([ZMQCTL] + [str(a) for a in args], env=self.env,
                           capture_output=True, text=True, timeout=60)
        record_output("zmqctl %s" % " ".join(map(str, args)),
                      r.stdout + r.stderr)
        if check is not None:
            assert r.returncode == check, (r.returncode, r.stdout, r.stderr)
        return r

    def write(self, doc, check=0):
        p = self.tmp / ("c%s.json" % uuid.uuid4().hex[:6])
        p.write_text(json.dumps(doc))
        register_input_file(p)
        r = self("import", "--replace", p, check=check)
        if check == 0:
            return int(r.stdout.rsplit("version", 1)[1])
        return r


def gateway(nginx_factory, zmqctl, cluster, locations="", workers=2):
    ngx = nginx_factory(
        http="zmq_key_file %s;\nzmq_config %s;\nzmq_config_poll 500ms;\n" % (
            zmqctl.env["ZMQ_KEY_FILE"], cluster.url()),
        server=STATUS + locations, workers=workers)
    return ngx.start()


def status(ngx):
    return requests.get(ngx.url + "/zmq/status", timeout=5).json()


def wait_workers(ngx, pred, what, timeout=30):
    def ok():
        ws = status(ngx)["workers"]
        return ws and all(pred(w) for w in ws) and ws
    return wait_until(ok, timeout, what)


def wait_version(ngx, v, timeout=30):
    return wait_workers(ngx, lambda w: w["config_version"] == v
                        and w["source_state"] == "connected",
                        "every worker at version %d" % v, timeout)


def wait_log(ngx, needle, timeout=30):
    wait_until(lambda: needle in ngx.error_log(), timeout, repr(needle))


def zmqd_at(z, v, timeout=30):
    z.wait_log("configuration version %d applied" % v, timeout=timeout)


@pytest.fixture
def zmqd_sentinel(zmqctl, tmp_path):
    started = []

    def start(url):
        z = Zmqd(zmqctl, url, str(tmp_path))
        started.append(z)
        return z

    yield start
    for z in started:
        assert z.stop() == 0, z.text()
        text = z.text()
        z.log.close()
        assert "runtime error:" not in text and "Sanitizer" not in text, text


def on_master(cluster, port):
    return int(cluster.node_at(port).client().get("zmq:version") or 0)


# ------------------------------------------------------------------ tests


def test_zmqctl_writes_and_reads_through_the_sentinels(zmqctl, cluster,
                                                       tmp_path):
    c = cluster()
    st = Store(zmqctl, c, tmp_path)
    v = st.write(outconns(2, "a"))
    # on the master the sentinels name, and replicated
    assert on_master(c, c.master.port) == v
    wait_until(lambda: c.replica.client().get("zmq:version") == b"%d" % v,
               10, "the replica to have it")
    out = json.loads(st("export", check=0).stdout)
    assert [o["name"] for o in out["http_outconn"]] == ["h0", "h1"]
    # the password is the master's: shown nowhere
    r = st("version", check=0)
    assert PASSWORD not in r.stdout + r.stderr


def test_zmqctl_names_every_sentinel_when_none_leads_to_a_master(
        zmqctl, cluster, tmp_path):
    c = cluster()
    st = Store(zmqctl, c, tmp_path)
    st.url = "redis-sentinel://:%s@127.0.0.1:%d,127.0.0.1:%d/nosuch/0" % (
        PASSWORD, c.sentinels[0].port, c.replica.port)
    st.env["ZMQ_REDIS"] = st.url
    r = st("export", check=1)
    assert "no master for 'nosuch' (sentinels: 127.0.0.1:%d: does not " \
           "know the master 'nosuch'; 127.0.0.1:%d: " % (
               c.sentinels[0].port, c.replica.port) in r.stderr, r.stderr
    assert PASSWORD not in r.stderr


def test_a_manual_failover_is_followed_by_nginx_and_zmqd(
        zmqctl, cluster, nginx_factory, zmqd_sentinel, tmp_path):
    c = cluster()
    st = Store(zmqctl, c, tmp_path)
    v1 = st.write(outconns(1, "v1"))
    ngx = gateway(nginx_factory, zmqctl, c)
    wait_version(ngx, v1)
    z = zmqd_sentinel(c.url())
    zmqd_at(z, v1)

    c.sentinels[0].client().execute_command("SENTINEL", "FAILOVER", NAME)
    c.wait_master(c.replica.port)

    # the workers heard of it from a sentinel and asked again
    wait_log(ngx, "+switch-master %s 127.0.0.1 %d 127.0.0.1 %d" % (
        NAME, c.master.port, c.replica.port))

    v2 = st.write(outconns(2, "v2"))
    assert on_master(c, c.replica.port) == v2      # the new master has it
    ws = wait_version(ngx, v2)
    assert len(ws) == 2
    zmqd_at(z, v2)
    # both sides reached the new master
    assert "127.0.0.1:%d (config): the master of '%s'" % (
        c.replica.port, NAME) in ngx.error_log()


def test_a_killed_master_fails_writes_clearly_until_a_replica_is_promoted(
        zmqctl, cluster, nginx_factory, zmqd_sentinel, tmp_path):
    c = cluster(down_ms=3000)
    st = Store(zmqctl, c, tmp_path)
    v1 = st.write(outconns(1, "k1"))
    ngx = gateway(nginx_factory, zmqctl, c, locations=OPEN)
    wait_version(ngx, v1)
    z = zmqd_sentinel(c.url())
    zmqd_at(z, v1)

    c.master.kill9()

    # the window: the sentinels still name the dead master
    r = st.write(outconns(1, "lost"), check=1)
    assert "no master for '%s' (sentinels: " % NAME in r.stderr, r.stderr
    assert "cannot connect" in r.stderr
    ws = wait_workers(ngx, lambda w: w["source_state"] == "stale"
                      and "no master for" in (w.get("error") or ""),
                      "the workers stale, saying why")
    assert all(w["config_version"] == v1 for w in ws)
    a = requests.post(ngx.url + "/zmq/open/api/http_outconn", timeout=10,
                      json={"name": "during", "url": "http://127.0.0.1:1/"})
    assert a.status_code == 503, a.text
    assert a.json()["error"] == "redis_unavailable", a.text
    assert "no master for '%s'" % NAME in a.json()["message"]
    assert c.master_port() == c.master.port     # still in the window

    c.wait_master(c.replica.port, timeout=60)
    v2 = st.write(outconns(3, "k2"))
    assert v2 > v1
    wait_version(ngx, v2)
    zmqd_at(z, v2)
    # the admin API writes to the new master too
    a = requests.post(ngx.url + "/zmq/open/api/http_outconn", timeout=10,
                      json={"name": "after", "url": "http://127.0.0.1:1/"})
    assert a.status_code in (200, 201), a.text
    assert c.replica.client().exists("zmq:obj:http_outconn:after")
    ngx.forget_problems()       # the dead master's connect() errors


def test_with_no_master_at_all_the_gateway_serves_its_last_snapshot(
        rabbitmq, queue, zmqctl, cluster, nginx_factory, zmqd_sentinel,
        tmp_path):
    from conftest import amqp_config
    c = cluster()
    st = Store(zmqctl, c, tmp_path)
    v = st.write(amqp_config(rabbitmq.port, {"svc": {
        "routing_key": queue.name}}))
    ngx = gateway(nginx_factory, zmqctl, c, locations=PUB)
    wait_version(ngx, v)
    z = zmqd_sentinel(c.url())
    zmqd_at(z, v)

    c.replica.stop()
    c.master.stop()
    ws = wait_workers(ngx, lambda w: w["source_state"] == "stale"
                      and "no master for" in (w.get("error") or ""),
                      "the workers stale")
    assert all(w["config_version"] == v for w in ws)
    z.wait_log("running on configuration version %d" % v)

    def published():
        with requests.Session() as s:
            return s.post(ngx.url + "/pub", data=b"still", timeout=10)
    codes = [published().status_code for _ in range(6)]
    assert codes == [202] * 6
    assert len(queue.drain(expect=6)) == 6
    assert z.proc.poll() is None
    ngx.forget_problems()


def test_nginx_t_checks_a_sentinel_url(zmqctl, nginx_factory):
    bad = nginx_factory(http="zmq_config redis-sentinel://127.0.0.1:1,"
                             "no-such-host.invalid:2/m/0;\n",
                        server=STATUS)
    rc, out = bad.test_config()
    assert rc != 0
    assert "no-such-host.invalid" in out, out
    tls = nginx_factory(http="zmq_config redis-sentinel://127.0.0.1:1/m/0"
                             "?verify=0;\n", server=STATUS)
    rc, out = tls.test_config()
    assert rc != 0 and "zmq_config" in out, out


class FakeSentinel:
    """A 'sentinel' that answers every command with one fixed reply (a
    stale master, a host name, garbage), and counts what it was asked."""

    def __init__(self, reply):
        import socket
        import threading
        self.reply = reply
        self.asked = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.stopped = False
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        import threading
        while not self.stopped:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.one, args=(conn,),
                             daemon=True).start()

    def one(self, conn):
        with conn:
            conn.settimeout(10)
            try:
                data = conn.recv(4096)
                if data:
                    self.asked.append(data)
                    conn.sendall(self.reply)
                    conn.recv(1)          # until the client closes
            except OSError:
                pass

    def close(self):
        self.stopped = True
        self.sock.close()


def resp_master(host, port):
    h, p = host.encode(), str(port).encode()
    return b"*2\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(h), h, len(p), p)


def test_a_stale_or_bad_sentinel_answer_sends_every_client_to_the_next(
        zmqctl, cluster, nginx_factory, tmp_path):
    c = cluster()
    stale = FakeSentinel(resp_master("127.0.0.1", c.replica.port))
    named = FakeSentinel(resp_master("localhost", c.master.port))
    try:
        st = Store(zmqctl, c, tmp_path)
        v = st.write(outconns(1, "s"))
        real = "127.0.0.1:%d" % c.sentinels[0].port
        url = "redis-sentinel://:%s@127.0.0.1:%d,127.0.0.1:%d,%s/%s/0" % (
            PASSWORD, stale.port, named.port, real, NAME)

        # zmqctl: the replica (ROLE) and the name are passed over
        st.env["ZMQ_REDIS"] = url
        out = json.loads(st("export", check=0).stdout)
        assert out["http_outconn"][0]["name"] == "h0"
        assert stale.asked and named.asked
        assert b"get-master-addr-by-name" in stale.asked[0]
        assert PASSWORD.encode() not in b"".join(stale.asked + named.asked)

        # with only the bad ones: the reasons, each sentinel named
        st.env["ZMQ_REDIS"] = url.replace("," + real, "")
        r = st("export", check=1)
        assert ("no master for '%s' (sentinels: 127.0.0.1:%d: master "
                "127.0.0.1:%d: a replica, not the master; 127.0.0.1:%d: "
                "named the master 'localhost', which is not an IP address"
                % (NAME, stale.port, c.replica.port, named.port)) \
            in r.stderr, r.stderr

        # NGINX: the same, without a resolver
        ngx = nginx_factory(
            http="zmq_key_file %s;\nzmq_config %s;\n" % (
                zmqctl.env["ZMQ_KEY_FILE"], url), server=STATUS, workers=1)
        ngx.start()
        wait_version(ngx, v)
        log = ngx.error_log()
        assert "a replica, not the master" in log
        assert "'localhost', which is not an IP address" in log
        assert PASSWORD not in log
    finally:
        stale.close()
        named.close()


def test_idempotency_keys_follow_a_sentinel_store(
        rabbitmq, queue, zmqctl, cluster, nginx_factory, tmp_path):
    """Idempotency keys default to zmq_config's Redis: with a sentinel URL
    they are kept on the master the sentinels name."""
    from conftest import amqp_config
    c = cluster()
    st = Store(zmqctl, c, tmp_path)
    doc = amqp_config(rabbitmq.port, {"svc": {"routing_key": queue.name}})
    doc["rest_channel"] = [{"name": "orders", "url_path": "/api/orders",
                            "service": "svc", "idempotency": True}]
    v = st.write(doc)
    ngx = gateway(nginx_factory, zmqctl, c,
                  locations="location /api/ { zmq_router; }\n")
    wait_version(ngx, v)

    key = "k-" + uuid.uuid4().hex
    deadline = time.monotonic() + 30
    while True:
        r1 = requests.post(ngx.url + "/api/orders", data=b'{"a": 1}',
                           headers={"Idempotency-Key": key}, timeout=30)
        if r1.status_code != 503 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert r1.status_code == 202, r1.text
    r2 = requests.post(ngx.url + "/api/orders", data=b'{"a": 1}',
                       headers={"Idempotency-Key": key}, timeout=30)
    assert r2.status_code == 202 and r2.json() == r1.json()
    assert r2.headers.get("Idempotent-Replayed") == "true"
    assert len(queue.drain(expect=1)) == 1
    kept = [k for k in c.master.client().keys("zmq:idem:*")
            if key.encode() in k]
    assert len(kept) == 1
