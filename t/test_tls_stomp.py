"""STOMP over TLS (issue 17 for the STOMP connections of issue 16): a
stomp_def with "tls": true is reached over TLS by the gateway (publishing
connections and the admin ping, through NGINX's SSL layer without
blocking), by zmqd (stomp_channels and publish services) and by zmqctl
ping, with the definition's ca_file, verify and server_name. A real
RabbitMQ 3.10 with its STOMP plugin listening with TLS
(stomp.listeners.ssl.1, the node's ssl_options), certificates made by the
test (tls_certs.py); what reached the broker, and what is left in a queue,
is checked with pika over TLS. A refusal says why in the log and in
zmq_status, and backs off like any other failure."""

import os
import re
import shutil
import time
import uuid

import pika
import pytest
import requests

from conftest import (RabbitServer, free_port, open_to_workers,
                      register_secret, wait_port)
from test_live_config import Live
from test_zmqd import assert_acked_after_stop, http_endpoint  # noqa: F401
from test_zmqd import wait_for
from zmqd_helpers import zmqd  # noqa: F401

PUB = ("location = /pub { zmq_service svc; zmq_confirm_timeout 5s; }\n"
       "location /zmq/admin/ { zmq_admin; zmq_security admins; }\n")
ADMIN_PW = "admin-Passw0rd-stomptls-5512"


# ------------------------------------------------------------------ fixtures

class RabbitStompTls(RabbitServer):
    """conftest's RabbitServer with TLS (the node's ssl_options) and the
    rabbitmq_stomp plugin listening in plain on .stomp_port and with TLS on
    .stomp_tls_port (stomp.listeners.ssl.1 uses the node's ssl_options)."""

    def __init__(self, tmp, pki):
        self.stomp_port = free_port()
        self.stomp_tls_port = free_port()
        self._stomp_configured = False
        super().__init__(tmp, tls=pki)

    def start(self):
        if not self._stomp_configured:
            with open(self.env["RABBITMQ_CONFIG_FILE"], "a") as f:
                f.write("stomp.listeners.tcp.1 = 127.0.0.1:%d\n"
                        "stomp.listeners.ssl.1 = 127.0.0.1:%d\n"
                        % (self.stomp_port, self.stomp_tls_port))
            with open(self.env["RABBITMQ_ENABLED_PLUGINS_FILE"], "w") as f:
                f.write("[rabbitmq_stomp].\n")
            self._stomp_configured = True
        super().start()
        wait_port(self.stomp_port, 60, self.proc)
        wait_port(self.stomp_tls_port, 60, self.proc)


@pytest.fixture(scope="module")
def pki(tls_pki, tmp_path_factory):
    """The test PKI where NGINX workers (unprivileged when the master is
    root) may read it: they load the files when a configuration is
    applied."""
    d = tmp_path_factory.mktemp("pki_stomp")
    out = {}
    for k, path in tls_pki.items():
        dst = os.path.join(str(d), os.path.basename(path))
        shutil.copy(path, dst)
        os.chmod(dst, 0o644)
        out[k] = dst
    open_to_workers(str(d))
    return out


@pytest.fixture(scope="module")
def broker(tmp_path_factory, pki):
    server = RabbitStompTls(str(tmp_path_factory.mktemp("rabbit_stomp_tls")),
                            pki)
    yield server
    server.close()


@pytest.fixture
def queue(broker):
    """A fresh durable queue, seen through pika over TLS."""
    name = "stls." + uuid.uuid4().hex[:10]
    conn = broker.tls_connection()
    ch = conn.channel()
    ch.queue_declare(name, durable=True)

    class Q:
        pass
    q = Q()
    q.name = name
    q.channel = ch

    def get_all(expect, timeout=15.0):
        msgs = []
        deadline = time.monotonic() + timeout
        while len(msgs) < expect and time.monotonic() < deadline:
            m, props, body = ch.basic_get(name, auto_ack=True)
            if m is None:
                time.sleep(0.05)
                continue
            msgs.append((props, body))
        return msgs
    q.get_all = get_all

    def count():
        return ch.queue_declare(name, durable=True,
                                passive=True).method.message_count
    q.count = count
    yield q
    try:
        ch.queue_delete(name)
        conn.close()
    except Exception:
        pass


def stomp_def(broker, pki, name="broker", **kw):
    d = {"name": name, "host": "localhost", "port": broker.stomp_tls_port,
         "login": "guest", "passcode": "guest", "virtual_host": "/",
         "heartbeat": 0, "tls": True, "ca_file": pki["ca"]}
    d.update(kw)
    return d


def gw_config(broker, pki, queue="q", defs=(), **kw):
    return {
        "security": [{"name": "admins", "type": "basic_auth",
                      "username": "root", "password": ADMIN_PW}],
        "stomp_def": [stomp_def(broker, pki, **kw)] + list(defs),
        "stomp_outconn": [{"name": "sout", "def": "broker"}],
        "service": [{"name": "svc", "kind": "publish",
                     "stomp_outconn": "sout",
                     "destination": "/amq/queue/" + queue}],
    }


def stomp_status(gw, name="sout"):
    """Each worker's entry; [] until every worker has it."""
    ws = gw.status()["workers"]
    if not ws or any(name not in w.get("stomp", {}) for w in ws):
        return []
    return [w["stomp"][name] for w in ws]


def wait_ready(gw, timeout=30.0):
    return wait_for(lambda: [o for o in stomp_status(gw)
                             if o["state"] == "ready"] == stomp_status(gw)
                    and stomp_status(gw), timeout)


def refused(gw, reason, timeout=30.0):
    """The connection retries (backoff) and status says why each time."""
    def check():
        o = stomp_status(gw)
        if o and all(x["state"] in ("backoff", "connecting")
                     and reason in x.get("last_error", "")
                     and x["reconnects"] >= 2 for x in o):
            return o
        return None
    return wait_for(check, timeout)


def post(gw, data=b"x"):
    with requests.Session() as s:
        return s.post(gw.url + "/pub", data=data, timeout=30)


def ping(gw, name):
    r = requests.post("%s/zmq/admin/api/stomp_def/%s/ping" % (gw.url, name),
                      auth=("root", ADMIN_PW), timeout=20)
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture
def live(nginx_factory, zmqctl, redis_store, tmp_path):
    register_secret(ADMIN_PW)

    def make(workers=1):
        return Live(nginx_factory, zmqctl, redis_store, tmp_path, PUB,
                    workers=workers,
                    http="zmq_amqp_connect_timeout 3s;")
    return make


# -------------------------------------------------------------- the gateway

def test_the_gateway_publishes_over_tls_answering_202_after_the_receipt(
        live, pki, broker, queue):
    gw = live(workers=2)
    v = gw.write(gw_config(broker, pki, queue.name))
    gw.start()
    gw.wait_version(v, workers=2)
    wait_ready(gw)

    for o in stomp_status(gw):
        assert o["tls"] in ("TLSv1.2", "TLSv1.3"), o
        assert o["verified"] is True, o
        assert "last_error" not in o, o

    bodies = [("m%d-" % i).encode() * (i + 1) for i in range(20)]
    bodies.append(os.urandom(300 * 1024))      # many TLS records
    for b in bodies:
        r = post(gw, b)
        assert r.status_code == 202, r.text
        assert r.json()["confirmed"] is True

    # 202 means the broker's RECEIPT came: each is counted so, and is there
    st = stomp_status(gw)
    assert sum(o["confirmed"] for o in st) == len(bodies)
    got = queue.get_all(len(bodies))
    assert sorted(b for _, b in got) == sorted(bodies)
    assert all(p.delivery_mode == 2 for p, _ in got)

    log = gw.ngx.error_log()
    assert re.search(r'zmq stomp "sout": TLSv1\.[23] with 127\.0\.0\.1:%d '
                     r'\(certificate verified\)' % broker.stomp_tls_port,
                     log), log
    assert "connected to 127.0.0.1:%d over TLSv1." % broker.stomp_tls_port \
        in log


def test_the_gateway_refuses_a_broker_from_another_ca_and_says_why(
        live, pki, broker, queue, tmp_path):
    gw = live()
    gw.write(gw_config(broker, pki, queue.name, ca_file=pki["other_ca"]))
    gw.start()
    o = refused(gw, "certificate verify failed: ")
    assert any(r in o[0]["last_error"] for r in (
        "unable to get local issuer certificate",
        "self-signed certificate in certificate chain",
        "unable to verify the first certificate")), o
    assert "tls" not in o[0]
    r = post(gw)
    assert r.status_code == 503 and "Retry-After" in r.headers, r.text
    log = gw.ngx.error_log()
    assert ('zmq stomp "sout": connection to 127.0.0.1:%d closed: '
            'certificate verify failed' % broker.stomp_tls_port) in log

    # a name the certificate does not carry
    v = gw.write(gw_config(broker, pki, queue.name,
                           server_name="wrong.example"))
    gw.wait_version(v)
    o = refused(gw, "certificate verify failed: hostname mismatch")
    assert '"wrong.example"' in o[0]["last_error"], o

    # a CA file that cannot be read: idle, and status says why
    missing = str(tmp_path / "no-such-ca.pem")
    v = gw.write(gw_config(broker, pki, queue.name, ca_file=missing))
    gw.wait_version(v)
    o = wait_for(lambda: [x for x in stomp_status(gw)
                          if x["state"] == "idle" and x.get("last_error")])
    assert o[0]["last_error"] == \
        'ca_file "%s": No such file or directory' % missing, o
    assert "zmq: stomp_def 'broker': TLS: ca_file" in gw.ngx.error_log()

    # fixed through the live configuration: connects, publishes
    v = gw.write(gw_config(broker, pki, queue.name))
    gw.wait_version(v)
    wait_ready(gw)
    assert post(gw, b"fixed").status_code == 202
    assert [b for _, b in queue.get_all(1)] == [b"fixed"]
    assert queue.count() == 0


def test_the_gateway_with_verify_false_connects_and_says_it_did_not_verify(
        live, pki, broker, queue):
    gw = live()
    v = gw.write(gw_config(broker, pki, queue.name, verify=False,
                           ca_file=pki["other_ca"],
                           server_name="wrong.example", heartbeat=1))
    gw.start()
    gw.wait_version(v)
    wait_ready(gw)
    o = stomp_status(gw)[0]
    assert o["verified"] is False and o["tls"].startswith("TLSv1."), o
    assert post(gw, b"unverified").status_code == 202
    assert [b for _, b in queue.get_all(1)] == [b"unverified"]
    assert "certificate NOT verified: verify is off" in gw.ngx.error_log()

    # heart-beats (1 s both ways) cross TLS: idle for a few, still there
    time.sleep(3.5)
    assert post(gw, b"after beats").status_code == 202
    assert [b for _, b in queue.get_all(1)] == [b"after beats"]
    assert stomp_status(gw)[0]["reconnects"] == 0
    assert "heart-beats: 1000 ms out, 1000 ms in" in gw.ngx.error_log()


def test_the_admin_ping_does_tls_and_says_the_version_and_verification(
        live, pki, broker):
    gw = live()
    v = gw.write(gw_config(broker, pki, defs=[
        stomp_def(broker, pki, name="otherca", ca_file=pki["other_ca"]),
        stomp_def(broker, pki, name="noverify", verify=False,
                  ca_file=pki["other_ca"], server_name="wrong.example"),
        stomp_def(broker, pki, name="plainport", port=broker.stomp_port),
        stomp_def(broker, pki, name="byip", host="127.0.0.1")]))
    gw.start()
    gw.wait_version(v)

    body = ping(gw, "broker")
    assert body["ok"] is True, body
    assert body["tls"] in ("TLSv1.2", "TLSv1.3") and body["verified"] is True
    assert body["server"]["product"] == "RabbitMQ", body

    body = ping(gw, "byip")            # checked against the IP SAN
    assert body["ok"] is True and body["verified"] is True, body

    body = ping(gw, "otherca")
    assert body["ok"] is False, body
    assert body["error"].startswith("127.0.0.1:%d: certificate verify "
                                    "failed: " % broker.stomp_tls_port), body

    body = ping(gw, "noverify")
    assert body["ok"] is True and body["verified"] is False, body

    body = ping(gw, "plainport")
    assert body["ok"] is False, body
    assert "TLS" in body["error"], body


# ------------------------------------------------------------------- zmqctl

def test_zmqctl_ping_over_tls(zmqctl, pki, broker, write_json):
    doc = {"stomp_def": [
        stomp_def(broker, pki),
        stomp_def(broker, pki, name="otherca", ca_file=pki["other_ca"]),
        stomp_def(broker, pki, name="wronghost",
                  server_name="wrong.example"),
        stomp_def(broker, pki, name="noverify", verify=False,
                  ca_file=pki["other_ca"], server_name="wrong.example"),
        stomp_def(broker, pki, name="plainport", port=broker.stomp_port)]}
    zmqctl("import", "--replace", write_json("c.json", doc), check=0)

    r = zmqctl("ping", "stomp_def", "broker")
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert re.match(r"ok [0-9.]+ ms, RabbitMQ 3\.[0-9.]+ at localhost:%d "
                    r"over TLSv1\.[23], certificate verified$"
                    % broker.stomp_tls_port, r.stdout.strip()), r.stdout

    r = zmqctl("ping", "stomp_def", "otherca")
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert r.stdout.startswith("failed: localhost:%d: TLS handshake: "
                               "certificate verify failed: "
                               % broker.stomp_tls_port), r.stdout

    r = zmqctl("ping", "stomp_def", "wronghost")
    assert r.returncode == 1
    assert "hostname mismatch (the certificate is not for " \
           "'wrong.example')" in r.stdout, r.stdout

    r = zmqctl("ping", "stomp_def", "noverify")
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert r.stdout.rstrip().endswith(
        ", certificate not verified (verify is false)"), r.stdout

    r = zmqctl("ping", "--timeout", "2000", "stomp_def", "plainport")
    assert r.returncode == 1, r.stdout
    assert "TLS" in r.stdout, r.stdout
    assert "guest" not in r.stdout + r.stderr


# --------------------------------------------------------------------- zmqd

def url_of(endpoint):
    return "http://127.0.0.1:%d" % endpoint.server_address[1]


def zmqd_channel_config(broker, pki, queue, endpoint, **kw):
    return {
        "stomp_def": [stomp_def(broker, pki, heartbeat=1, **kw)],
        "stomp_channel": [{"name": "in", "def": "broker",
                           "destination": "/amq/queue/" + queue,
                           "service": "hook", "prefetch": 10}],
        "http_outconn": [{"name": "web", "url": url_of(endpoint)}],
        "service": [{"name": "hook", "kind": "http", "outconn": "web",
                     "path": "/hook"}]}


def publish(broker, queue, bodies):
    conn = broker.tls_connection()
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        for b in bodies:
            ch.basic_publish("", queue, b, pika.BasicProperties(
                delivery_mode=2))
    finally:
        conn.close()


def test_zmqd_consumes_a_stomp_channel_over_tls_and_acks_every_message(
        zmqd, pki, broker, queue, http_endpoint):
    z = zmqd(zmqd_channel_config(broker, pki, queue.name, http_endpoint))
    z.wait_log("consuming '/amq/queue/%s' on localhost:%d over TLSv1."
               % (queue.name, broker.stomp_tls_port), timeout=20)
    assert "stomp_def 'broker': connected to localhost:%d over TLSv1." \
        % broker.stomp_tls_port in z.text()
    assert ", certificate verified" in z.text()

    bodies = [b"one-%d" % i for i in range(10)]
    publish(broker, queue.name, bodies)
    wait_for(lambda: len(http_endpoint.requests) >= 10, timeout=20)

    # idle for a few heart-beat intervals (1 s both ways): the heart-beat
    # thread writes through the same TLS connection as the reads
    time.sleep(3.5)
    more = [b"two-%d" % i for i in range(10)]
    publish(broker, queue.name, more)
    wait_for(lambda: len(http_endpoint.requests) >= 20, timeout=20)
    assert sorted(b for _, b in http_endpoint.requests) == \
        sorted(bodies + more)
    z.wait_log("done by service 'hook'", count=20)
    assert "no heart-beat" not in z.text() and "retrying" not in z.text()

    assert z.stop() == 0
    z.killed = True
    # every message acked: nothing left in the queue once zmqd is gone
    assert_acked_after_stop(broker, queue.name)
    assert queue.count() == 0


def test_zmqd_publishes_through_a_stomp_outconn_over_tls(
        zmqd, pki, broker, queue):
    src = "src." + uuid.uuid4().hex[:8]
    conn = broker.tls_connection()
    ch = conn.channel()
    ch.queue_declare(src, durable=True)
    doc = {
        "amqp_def": [{"name": "rabbit", "host": "127.0.0.1",
                      "port": broker.port, "username": "guest",
                      "password": "guest", "heartbeat": 10}],
        "amqp_channel": [{"name": "in", "def": "rabbit", "queue": src,
                          "service": "fwd", "prefetch": 10}],
        "stomp_def": [stomp_def(broker, pki, heartbeat=1)],
        "stomp_outconn": [{"name": "sout", "def": "broker"}],
        "service": [{"name": "fwd", "kind": "publish",
                     "stomp_outconn": "sout",
                     "destination": "/amq/queue/" + queue.name}]}
    try:
        z = zmqd(doc)
        z.wait_log("channel 'in': consuming queue")
        ch.confirm_delivery()
        for i in range(10):
            ch.basic_publish("", src, b"fwd-%d" % i, pika.BasicProperties(
                delivery_mode=2, correlation_id="c-%d" % i))
        got = queue.get_all(10, timeout=30)
        assert sorted(b for _, b in got) == \
            sorted(b"fwd-%d" % i for i in range(10))
        assert all(p.correlation_id == "c-%s" % b[4:].decode()
                   for p, b in got)
        z.wait_log("done by service 'fwd'", count=10)
        assert "stomp_def 'broker': connected to localhost:%d over TLSv1." \
            % broker.stomp_tls_port in z.text()
        assert z.stop() == 0
        z.killed = True
        assert_acked_after_stop(broker, src)
    finally:
        ch.queue_delete(src)
        conn.close()


def test_zmqd_refused_by_the_certificate_logs_why_and_backs_off_then_verify_false_consumes(
        zmqd, zmqctl, pki, broker, queue, http_endpoint, write_json):
    z = zmqd(zmqd_channel_config(broker, pki, queue.name, http_endpoint,
                                 ca_file=pki["other_ca"]))
    needle = ("stomp_channel 'in': cannot connect to localhost:%d: TLS "
              "handshake: certificate verify failed: "
              % broker.stomp_tls_port)
    z.wait_log(needle, timeout=20, count=3)
    delays = [float(x) for x in re.findall(
        re.escape(needle) + r".*; retrying in ([0-9.]+) s", z.text())]
    assert delays[:3] == [0.1, 0.2, 0.4], delays
    assert "consuming" not in z.text()

    # verify false: the same broker is accepted (encrypted, not verified)
    zmqctl("import", "--replace", write_json("v.json", zmqd_channel_config(
        broker, pki, queue.name, http_endpoint, ca_file=pki["other_ca"],
        verify=False)), check=0)
    z.wait_log("consuming '/amq/queue/%s'" % queue.name, timeout=30)
    assert "certificate not verified (verify is false)" in z.text()
    publish(broker, queue.name, [b"after"])
    wait_for(lambda: http_endpoint.requests, timeout=20)
    assert http_endpoint.requests[0][1] == b"after"
    assert z.stop() == 0
    z.killed = True
    assert_acked_after_stop(broker, queue.name)
