"""AMQP over TLS from the gateway (issue 17, item 1): NGINX's own SSL layer,
non-blocking, inside the connection's state machine. A real RabbitMQ with a
TLS listener (checked with pika over TLS), certificates made by the test
(tls_certs.py); small local TLS listeners stand in for a broker serving an
expired or a wrong-host certificate, which the gateway refuses before it
sends a byte of AMQP. Every refusal says why in the error log and in
zmq_status (last_error), the connection backs off and retries like any
other failure, and a definition fixed through the live configuration
connects."""

import hashlib
import os
import shutil
import socket
import ssl
import threading
import time
import concurrent.futures

import pytest
import requests

from conftest import RabbitServer, amqp_config, open_to_workers
from test_live_config import Live

PUB = "location = /pub { zmq_service svc; }\n"
ADMIN = "location /zmq/admin/ { zmq_admin; zmq_security admins; }\n"
ADMIN_PW = "admin-Passw0rd-tls-8812"


# ------------------------------------------------------------------ fixtures

@pytest.fixture(scope="module")
def pki(tls_pki, tmp_path_factory):
    """The test PKI where NGINX workers (unprivileged when the master is
    root) may read it: they load the files when a configuration is
    applied."""
    d = tmp_path_factory.mktemp("pki_workers")
    out = {}
    for k, path in tls_pki.items():
        dst = os.path.join(str(d), os.path.basename(path))
        shutil.copy(path, dst)
        os.chmod(dst, 0o644)
        out[k] = dst
    open_to_workers(str(d))
    return out


@pytest.fixture(scope="module")
def rabbitmq_mtls(tmp_path_factory, tls_pki):
    """A RabbitMQ node whose TLS listener requires a client certificate."""
    server = RabbitServer(str(tmp_path_factory.mktemp("rabbitmq_mtls")),
                          tls=dict(tls_pki, require_client_cert=True))
    yield server
    server.close()


class TlsListener:
    """A TLS server with a given certificate: completes the handshake (the
    gateway refuses what it shows), records how many came, and closes."""

    def __init__(self, cert, key):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.got = b""
        self.stop = False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop:
            try:
                conn, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            self.accepted += 1
            conn.settimeout(2)
            try:
                with self.ctx.wrap_socket(conn, server_side=True) as s:
                    try:
                        self.got += s.recv(64)
                    except (ssl.SSLError, OSError):
                        pass
            except (ssl.SSLError, OSError):
                pass
            finally:
                conn.close()

    def close(self):
        self.stop = True
        self.thread.join(5)
        self.sock.close()


@pytest.fixture
def tls_queue(rabbitmq_tls):
    """A fresh durable queue on the TLS node, seen through pika over TLS."""
    import uuid
    name = "tls." + uuid.uuid4().hex[:12]
    conn = rabbitmq_tls.tls_connection()
    ch = conn.channel()
    ch.queue_declare(name, durable=True)

    class Q:
        pass
    q = Q()
    q.name = name
    q.channel = ch

    def get_all(expect, timeout=10.0):
        msgs = []
        deadline = time.monotonic() + timeout
        while len(msgs) < expect and time.monotonic() < deadline:
            m, props, body = ch.basic_get(name, auto_ack=True)
            if m is None:
                time.sleep(0.05)
                continue
            msgs.append(body)
        return msgs
    q.get_all = get_all
    yield q
    try:
        ch.queue_delete(name)
        conn.close()
    except Exception:
        pass


def tls_def(port, pki, **kw):
    d = {"host": "localhost", "port": port, "tls": True,
         "ca_file": pki["ca"]}
    d.update(kw)
    return d


def config(port, pki, queue="q", **kw):
    return amqp_config(port, {"svc": {"routing_key": queue}},
                       amqp_def=tls_def(port, pki, **kw))


def outconn(gw, name="out"):
    """Each worker's entry; [] until every worker has it."""
    st = requests.get(gw.url + "/zmq/status", timeout=5).json()
    if not st["workers"] or any(name not in w["outconns"]
                                for w in st["workers"]):
        return []
    return [w["outconns"][name] for w in st["workers"]]


def wait_for(pred, timeout=20.0, what="condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError("%s not met: %r" % (what, last))


def refused(gw, reason, timeout=20.0):
    """The connection retries (backoff) and status says why each time."""
    def check():
        o = outconn(gw)
        if o and all(x["state"] in ("backoff", "connecting")
               and reason in x.get("last_error", "")
               and x["reconnects"] >= 2 for x in o):
            return o
        return None
    return wait_for(check, timeout, "refusal with %r" % reason)


def post(url, data=b"x"):
    with requests.Session() as s:
        return s.post(url, data=data, timeout=30)


@pytest.fixture
def live(nginx_factory, zmqctl, redis_store, tmp_path):
    def make(locations=PUB, **kw):
        return Live(nginx_factory, zmqctl, redis_store, tmp_path, locations,
                    **kw)
    return make


# ------------------------------------------------------------- publishing

def test_publishing_over_tls_is_confirmed_and_lands_in_the_queue(
        live, pki, rabbitmq_tls, tls_queue):
    gw = live(workers=2)
    v = gw.write(config(rabbitmq_tls.tls_port, pki, tls_queue.name))
    gw.start()
    gw.wait_version(v, workers=2)
    gw.wait_ready()

    for o in outconn(gw):
        assert o["tls"] in ("TLSv1.2", "TLSv1.3"), o
        assert o["verified"] is True, o
        assert "last_error" not in o, o

    bodies = [("m%d-" % i).encode() * (i + 1) for i in range(20)]
    for b in bodies:
        assert post(gw.url + "/pub", b).status_code == 202

    # 202 means confirmed: every message is counted so, and is there
    st = outconn(gw)
    assert sum(o["confirmed"] for o in st) == 20
    assert sum(o["published"] for o in st) == 20
    assert sorted(tls_queue.get_all(20)) == sorted(bodies)

    log = gw.ngx.error_log()
    assert "certificate verified" in log
    assert "TLSv1." in log


def test_large_concurrent_messages_cross_tls_whole(live, pki, rabbitmq_tls,
                                                   tls_queue):
    """Bodies of many frames, in flight together: partial TLS writes, a
    buffer that grows and moves while a write waits, reads of many
    records per event."""
    gw = live(workers=1)
    v = gw.write(config(rabbitmq_tls.tls_port, pki, tls_queue.name))
    gw.start()
    gw.wait_version(v)
    gw.wait_ready()

    bodies = [os.urandom(256 * 1024 + i * 977) for i in range(16)]
    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        codes = list(ex.map(lambda b: post(gw.url + "/pub", b).status_code,
                            bodies))
    assert codes == [202] * 16
    got = tls_queue.get_all(16, timeout=20)
    assert sorted(hashlib.sha256(b).hexdigest() for b in got) == \
        sorted(hashlib.sha256(b).hexdigest() for b in bodies)


# ---------------------------------------------------------------- refusals

def test_a_server_from_another_ca_is_refused_then_the_fixed_definition_connects(
        live, pki, rabbitmq_tls, tls_queue):
    gw = live()
    gw.write(config(rabbitmq_tls.tls_port, pki, tls_queue.name,
                    ca_file=pki["other_ca"]))
    gw.start()
    o = refused(gw, "certificate verify failed: ")
    # the chain does not reach a trusted CA; OpenSSL names the first error
    assert any(r in o[0]["last_error"] for r in (
        "unable to get local issuer certificate",
        "self-signed certificate in certificate chain",
        "unable to verify the first certificate")), o
    assert "tls" not in o[0]
    assert post(gw.url + "/pub").status_code == 503
    log = gw.ngx.error_log()
    assert "zmq amqp \"out\": connection to 127.0.0.1:%d closed: " \
        "certificate verify failed" % rabbitmq_tls.tls_port in log

    v = gw.write(config(rabbitmq_tls.tls_port, pki, tls_queue.name))
    gw.wait_version(v)
    gw.wait_ready(timeout=30)
    assert post(gw.url + "/pub", b"fixed").status_code == 202
    assert tls_queue.get_all(1) == [b"fixed"]


def test_an_expired_certificate_is_refused(live, pki, rabbitmq_tls):
    srv = TlsListener(pki["expired"], pki["expired_key"])
    try:
        gw = live()
        gw.write(config(srv.port, pki))
        gw.start()
        refused(gw, "certificate verify failed: certificate has expired")
        assert "certificate has expired" in gw.ngx.error_log()
        # not a byte of AMQP (nor the password) went to it
        assert srv.got == b""
        assert srv.accepted >= 2
    finally:
        srv.close()


def test_a_certificate_for_another_host_is_refused(live, pki):
    srv = TlsListener(pki["wrong_host"], pki["wrong_host_key"])
    try:
        gw = live()
        # connected as "localhost": the certificate is for wrong.example
        gw.write(config(srv.port, pki))
        gw.start()
        o = refused(gw, "certificate verify failed: hostname mismatch")
        assert "\"localhost\"" in o[0]["last_error"]
        assert srv.got == b""

        # connected by address: the certificate has no such IP
        v = gw.write(config(srv.port, pki, host="127.0.0.1"))
        gw.wait_version(v)
        refused(gw, "certificate verify failed: IP address mismatch")
    finally:
        srv.close()


def test_a_server_name_the_certificate_does_not_carry_is_refused_and_verify_false_connects(
        live, pki, rabbitmq_tls, tls_queue):
    gw = live()
    gw.write(config(rabbitmq_tls.tls_port, pki, tls_queue.name,
                    server_name="wrong.example"))
    gw.start()
    o = refused(gw, "certificate verify failed: hostname mismatch")
    assert "\"wrong.example\"" in o[0]["last_error"]

    # verify false: encrypted, not verified, and said so
    v = gw.write(config(rabbitmq_tls.tls_port, pki, tls_queue.name,
                        server_name="wrong.example", verify=False,
                        ca_file=pki["other_ca"]))
    gw.wait_version(v)
    gw.wait_ready(timeout=30)
    o = outconn(gw)[0]
    assert o["verified"] is False and o["tls"].startswith("TLSv1."), o
    assert post(gw.url + "/pub", b"unverified").status_code == 202
    assert tls_queue.get_all(1) == [b"unverified"]
    assert "certificate NOT verified: verify is off" in gw.ngx.error_log()


def test_a_ca_file_that_cannot_be_read_leaves_the_connection_idle_and_says_why(
        live, pki, rabbitmq_tls, tmp_path):
    gw = live()
    missing = str(tmp_path / "no-such-ca.pem")
    gw.write(config(rabbitmq_tls.tls_port, pki, ca_file=missing))
    gw.start()
    o = wait_for(lambda: [x for x in outconn(gw)
                          if x.get("last_error")], what="last_error")[0]
    assert o["state"] == "idle", o
    assert o["last_error"] == \
        "ca_file \"%s\": No such file or directory" % missing
    assert "TLS: ca_file" in gw.ngx.error_log()


# -------------------------------------------------------------- mutual TLS

def test_a_broker_that_requires_a_client_certificate(live, pki,
                                                     rabbitmq_mtls):
    gw = live()
    gw.write(config(rabbitmq_mtls.tls_port, pki))
    gw.start()
    # TLS 1.3: the refusal is an alert after the handshake; 1.2: in it
    o = refused(gw, "the server sent the", timeout=30)
    assert "certificate required" in o[0]["last_error"] \
        or "handshake failure" in o[0]["last_error"], o

    v = gw.write(config(rabbitmq_mtls.tls_port, pki,
                        cert_file=pki["client"], key_file=pki["client_key"]))
    gw.wait_version(v)
    gw.wait_ready(timeout=30)

    conn = rabbitmq_mtls.tls_connection()
    try:
        ch = conn.channel()
        ch.queue_declare("mtls", durable=True)
        v = gw.write(config(rabbitmq_mtls.tls_port, pki, "mtls",
                            cert_file=pki["client"],
                            key_file=pki["client_key"]))
        gw.wait_version(v)
        gw.wait_ready(timeout=30)
        assert post(gw.url + "/pub", b"with a certificate").status_code \
            == 202
        m, _, body = ch.basic_get("mtls", auto_ack=True)
        assert body == b"with a certificate"
        ch.queue_delete("mtls")
    finally:
        conn.close()


# ------------------------------------------------------------- admin ping

def test_admin_ping_does_tls_and_says_the_version_and_verification(
        live, pki, rabbitmq_tls):
    from conftest import register_secret
    register_secret(ADMIN_PW)
    gw = live(ADMIN)
    doc = config(rabbitmq_tls.tls_port, pki)
    doc["amqp_def"] += [
        dict(doc["amqp_def"][0], name="otherca", ca_file=pki["other_ca"]),
        dict(doc["amqp_def"][0], name="noverify", verify=False,
             server_name="wrong.example"),
    ]
    doc["security"] = [{"name": "admins", "type": "basic_auth",
                        "username": "root", "password": ADMIN_PW}]
    v = gw.write(doc)
    gw.start()
    gw.wait_version(v)

    def ping(name):
        r = requests.post("%s/zmq/admin/api/amqp_def/%s/ping"
                          % (gw.url, name), auth=("root", ADMIN_PW),
                          timeout=15)
        assert r.status_code == 200, r.text
        return r.json()

    body = ping("rabbit")
    assert body["ok"] is True, body
    assert body["tls"] in ("TLSv1.2", "TLSv1.3") and body["verified"] is True
    assert body["server"]["product"] == "RabbitMQ"

    body = ping("otherca")
    assert body["ok"] is False, body
    assert "certificate verify failed: " in body["error"], body

    body = ping("noverify")
    assert body["ok"] is True and body["verified"] is False, body
