"""TLS in zmqd and zmqctl (issue 17, items 1 and 2): AMQP through
rabbitmq-c's SSL socket, Redis (rediss://) through src/core's transport.

Against a RabbitMQ node with a TLS listener (checked with pika over TLS),
a node that requires client certificates, Redis 7 with --tls-port (with
and without required client certificates, checked with redis-py over
TLS), and, for certificates the broker does not serve (expired, for
another host), a TLS proxy made here in front of the broker's plain port,
which also records the SNI each client sent."""

import json
import os
import re
import socket
import ssl
import subprocess
import threading
import time
import urllib.parse
import uuid

import pika
import pytest

from conftest import (REDIS_SERVER, RabbitServer, Zmqctl, free_port,
                      stop_pid, wait_port)
from test_zmqd import Zmqd, broker_counts, wait_for
from zmqd_helpers import zmqd  # noqa: F401  (the fixture)

OK_TLS_RE = re.compile(r"^ok [0-9.]+ ms, RabbitMQ [0-9.]+ over "
                       r"TLSv1\.[23], certificate verified\n$")


# ----------------------------------------------------------------- servers

class TlsProxy:
    """A TLS listener serving cert/key, each connection forwarded in clear
    to target_port; self.snis holds the SNI of each handshake (None when
    the client sent none)."""

    def __init__(self, cert, key, target_port):
        self.target = target_port
        self.snis = []
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        self.ctx.sni_callback = self._sni
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(16)
        self.port = self.lsock.getsockname()[1]
        self.closed = False
        self.socks = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _sni(self, sslsock, name, ctx):
        self.snis.append(name)

    def _accept(self):
        while not self.closed:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,),
                             daemon=True).start()

    def _serve(self, c):
        try:
            c.settimeout(10)
            s = self.ctx.wrap_socket(c, server_side=True)
        except (OSError, ssl.SSLError):
            c.close()
            return
        up = socket.create_connection(("127.0.0.1", self.target))
        self.socks += [s, up]
        threading.Thread(target=self._pump, args=(up, s),
                         daemon=True).start()
        self._pump(s, up)

    @staticmethod
    def _pump(a, b):
        a.settimeout(None)
        try:
            while True:
                d = a.recv(65536)
                if not d:
                    break
                b.sendall(d)
        except (OSError, ssl.SSLError):
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self):
        self.closed = True
        self.lsock.close()
        for s in self.socks:
            try:
                s.close()
            except OSError:
                pass


class RedisTls:
    """redis-server on a TLS port only (--port 0)."""

    def __init__(self, tmp, pki, auth_clients="no"):
        if not os.access(REDIS_SERVER, os.X_OK):
            pytest.skip("redis-server is not installed")
        self.pki = pki
        self.port = free_port()
        os.makedirs(tmp, exist_ok=True)
        self.proc = subprocess.Popen(
            [REDIS_SERVER, "--port", "0", "--tls-port", str(self.port),
             "--bind", "127.0.0.1", "--tls-cert-file", pki["server"],
             "--tls-key-file", pki["server_key"], "--tls-ca-cert-file",
             pki["ca"], "--tls-auth-clients", auth_clients, "--save", "",
             "--appendonly", "no", "--dir", tmp, "--logfile",
             os.path.join(tmp, "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port, 10, self.proc)

    def url(self, host="127.0.0.1", **query):
        q = urllib.parse.urlencode(dict({"ca_file": self.pki["ca"]},
                                        **query))
        return "rediss://%s:%d/0?%s" % (host, self.port, q)

    def client_url(self, **query):
        return self.url(cert_file=self.pki["client"],
                        key_file=self.pki["client_key"], **query)

    def client(self):
        """redis-py over TLS, verifying the server, with the client
        certificate."""
        import redis
        return redis.Redis(host="localhost", port=self.port, ssl=True,
                           ssl_ca_certs=self.pki["ca"],
                           ssl_certfile=self.pki["client"],
                           ssl_keyfile=self.pki["client_key"])

    def stop(self):
        stop_pid(self.proc)


@pytest.fixture(scope="module")
def rabbitmq_mtls(tmp_path_factory, tls_pki):
    """A RabbitMQ node whose TLS listener requires a client certificate."""
    server = RabbitServer(str(tmp_path_factory.mktemp("rabbitmq_mtls")),
                          tls=dict(tls_pki, require_client_cert=True))
    yield server
    server.close()


@pytest.fixture
def proxy(rabbitmq_tls, tls_pki):
    """proxy(name): a TLS proxy to the broker serving tls_pki[name]."""
    made = []

    def make(name):
        p = TlsProxy(tls_pki[name], tls_pki[name + "_key"],
                     rabbitmq_tls.port)
        made.append(p)
        return p

    yield make
    for p in made:
        p.close()


@pytest.fixture
def redis_tls(tmp_path, tls_pki):
    made = []

    def make(auth_clients="no"):
        r = RedisTls(str(tmp_path / ("redis%d" % len(made))), tls_pki,
                     auth_clients)
        made.append(r)
        return r

    yield make
    for r in made:
        r.stop()


@pytest.fixture
def tls_queue(rabbitmq_tls):
    """A fresh durable queue on the TLS node, declared over TLS."""
    name = "t." + uuid.uuid4().hex[:12]
    conn = rabbitmq_tls.tls_connection()
    ch = conn.channel()
    ch.queue_declare(name, durable=True)
    yield name
    try:
        ch.queue_delete(name)
        conn.close()
    except pika.exceptions.AMQPError:
        pass


def tls_def(port, pki, **kw):
    d = {"name": "rabbit", "host": "127.0.0.1", "port": port,
         "username": "guest", "password": "guest", "heartbeat": 10,
         "tls": True, "ca_file": pki["ca"]}
    d.update(kw)
    return {k: v for k, v in d.items() if v is not None}


def ping(zmqctl, write_json, definition, check=None):
    zmqctl("import", "--replace", write_json("c.json",
                                             {"amqp_def": [definition]}),
           check=0)
    return zmqctl("ping", "--timeout", "3000", "amqp_def", "rabbit",
                  check=check)


def ready_over_tls(rabbitmq_tls, queue):
    """Messages ready in queue, asked over TLS with pika."""
    conn = rabbitmq_tls.tls_connection()
    try:
        return conn.channel().queue_declare(
            queue, passive=True).method.message_count
    finally:
        conn.close()


# ------------------------------------------------------- zmqctl ping, AMQP

def test_ping_over_tls_is_verified_and_says_so(zmqctl, write_json,
                                               rabbitmq_tls, tls_pki):
    r = ping(zmqctl, write_json, tls_def(rabbitmq_tls.tls_port, tls_pki),
             check=0)
    assert OK_TLS_RE.match(r.stdout), r.stdout
    # a DNS name is checked as such
    r = ping(zmqctl, write_json, tls_def(rabbitmq_tls.tls_port, tls_pki,
                                         host="localhost"), check=0)
    assert OK_TLS_RE.match(r.stdout), r.stdout


def test_ping_with_another_ca_fails_with_the_reason(zmqctl, write_json,
                                                    rabbitmq_tls, tls_pki):
    r = ping(zmqctl, write_json, tls_def(rabbitmq_tls.tls_port, tls_pki,
                                         ca_file=tls_pki["other_ca"]),
             check=1)
    assert r.stdout.startswith("failed: 127.0.0.1:%d: TLS: certificate "
                               "verify failed: " % rabbitmq_tls.tls_port), \
        r.stdout
    assert ("unable to get local issuer certificate" in r.stdout
            or "self-signed certificate in certificate chain" in r.stdout), \
        r.stdout


def test_ping_of_an_expired_certificate_fails_with_the_reason(
        zmqctl, write_json, proxy, tls_pki):
    p = proxy("expired")
    r = ping(zmqctl, write_json, tls_def(p.port, tls_pki), check=1)
    assert "TLS: certificate verify failed: certificate has expired" \
        in r.stdout, r.stdout


def test_ping_of_a_certificate_for_another_host_fails_with_the_reason(
        zmqctl, write_json, proxy, tls_pki):
    p = proxy("wrong_host")
    r = ping(zmqctl, write_json, tls_def(p.port, tls_pki, host="localhost"),
             check=1)
    assert ("TLS: certificate verify failed: hostname mismatch (the "
            "certificate is not for 'localhost')") in r.stdout, r.stdout
    # an address is checked against the certificate's IP addresses
    r = ping(zmqctl, write_json, tls_def(p.port, tls_pki), check=1)
    assert ("TLS: certificate verify failed: IP address mismatch (the "
            "certificate is not for '127.0.0.1')") in r.stdout, r.stdout


def test_ping_with_verify_false_accepts_any_certificate(
        zmqctl, write_json, proxy, tls_pki):
    p = proxy("wrong_host")
    r = ping(zmqctl, write_json, tls_def(p.port, tls_pki, verify=False),
             check=0)
    assert re.match(r"^ok [0-9.]+ ms, RabbitMQ [0-9.]+ over TLSv1\.[23], "
                    r"certificate not verified \(verify is false\)\n$",
                    r.stdout), r.stdout
    p = proxy("expired")
    ping(zmqctl, write_json, tls_def(p.port, tls_pki, verify=False,
                                     ca_file=None), check=0)


def test_server_name_is_the_sni_and_the_name_checked(zmqctl, write_json,
                                                     proxy, tls_pki,
                                                     rabbitmq_tls):
    p = proxy("server")
    # an address: no SNI (RFC 6066), the IP address checked
    ping(zmqctl, write_json, tls_def(p.port, tls_pki), check=0)
    assert p.snis == [None]
    # server_name: sent as SNI and checked, whatever the host
    ping(zmqctl, write_json, tls_def(p.port, tls_pki,
                                     server_name="localhost"), check=0)
    assert p.snis == [None, "localhost"]
    # a name the certificate does not have is refused
    r = ping(zmqctl, write_json, tls_def(rabbitmq_tls.tls_port, tls_pki,
                                         server_name="wrong.example"),
             check=1)
    assert ("hostname mismatch (the certificate is not for "
            "'wrong.example')") in r.stdout, r.stdout
    # and it is the one the wrong-host certificate names
    p = proxy("wrong_host")
    ping(zmqctl, write_json, tls_def(p.port, tls_pki,
                                     server_name="wrong.example"), check=0)
    assert p.snis == ["wrong.example"]


def test_mutual_tls_required_by_the_broker(zmqctl, write_json,
                                           rabbitmq_mtls, tls_pki):
    r = ping(zmqctl, write_json, tls_def(rabbitmq_mtls.tls_port, tls_pki),
             check=1)
    assert r.stdout.startswith("failed: 127.0.0.1:%d: TLS: "
                               % rabbitmq_mtls.tls_port), r.stdout
    assert ("certificate required" in r.stdout
            or "asking for a client certificate" in r.stdout), r.stdout
    r = ping(zmqctl, write_json, tls_def(rabbitmq_mtls.tls_port, tls_pki,
                                         cert_file=tls_pki["client"],
                                         key_file=tls_pki["client_key"]),
             check=0)
    assert OK_TLS_RE.match(r.stdout), r.stdout


def test_a_client_key_that_is_not_the_certificates_is_refused(
        zmqctl, write_json, rabbitmq_tls, tls_pki):
    r = ping(zmqctl, write_json, tls_def(rabbitmq_tls.tls_port, tls_pki,
                                         cert_file=tls_pki["client"],
                                         key_file=tls_pki["server_key"]),
             check=1)
    assert "TLS: key_file %s" % tls_pki["server_key"] in r.stdout, r.stdout
    r = ping(zmqctl, write_json, tls_def(rabbitmq_tls.tls_port, tls_pki,
                                         ca_file="/nonexistent/ca.pem"),
             check=1)
    assert ("TLS: ca_file /nonexistent/ca.pem: No such file or directory"
            in r.stdout), r.stdout


def test_send_over_tls_is_confirmed(zmqctl, write_json, rabbitmq_tls,
                                    tls_pki, tls_queue):
    zmqctl("import", "--replace", write_json("c.json", {
        "amqp_def": [tls_def(rabbitmq_tls.tls_port, tls_pki)],
        "amqp_outconn": [{"name": "out", "def": "rabbit"}]}), check=0)
    r = zmqctl("send", "--exchange", "", "--routing-key", tls_queue,
               "--property", "message_id=tls-1", "out", "-",
               input="over tls", check=0)
    assert r.stdout.startswith("confirmed"), r.stdout
    conn = rabbitmq_tls.tls_connection()
    m, props, body = conn.channel().basic_get(tls_queue, auto_ack=True)
    conn.close()
    assert body == b"over tls" and props.message_id == "tls-1"


# ------------------------------------------------------------ zmqd, AMQP

def test_zmqd_consumes_over_tls_and_acks(zmqd, rabbitmq_tls, tls_pki,  # noqa: F811
                                         tls_queue, redis_store):
    z = zmqd({"amqp_def": [tls_def(rabbitmq_tls.tls_port, tls_pki)],
              "service": [{"name": "st", "kind": "redis", "key": "got"}],
              "amqp_channel": [{"name": "in", "def": "rabbit",
                                "queue": tls_queue, "service": "st",
                                "prefetch": 10}]})
    z.wait_log("amqp_def 'rabbit': connected to 127.0.0.1:%d over TLSv1."
               % rabbitmq_tls.tls_port)
    assert "certificate verified" in z.text()
    z.wait_log("consuming queue '%s'" % tls_queue)

    conn = rabbitmq_tls.tls_connection()
    ch = conn.channel()
    ch.confirm_delivery()
    bodies = [b"one", b"two", b"three"]
    for i, b in enumerate(bodies):
        ch.basic_publish("", tls_queue, b, pika.BasicProperties(
            delivery_mode=2, message_id="m%d" % i))
    conn.close()

    r = redis_store.client()
    wait_for(lambda: r.llen("got") == 3)
    assert r.lrange("got", 0, -1) == bodies
    wait_for(lambda: broker_counts(rabbitmq_tls, tls_queue)[:2] == (0, 0))
    assert z.stop() == 0
    # zmqd gone, nothing it held comes back: every message was acked
    assert ready_over_tls(rabbitmq_tls, tls_queue) == 0


def test_zmqd_publishes_over_tls(zmqd, rabbitmq_tls, tls_pki,  # noqa: F811
                                 tls_queue):
    target = tls_queue + ".out"
    conn = rabbitmq_tls.tls_connection()
    ch = conn.channel()
    ch.queue_declare(target, durable=True)
    try:
        z = zmqd({"amqp_def": [tls_def(rabbitmq_tls.tls_port, tls_pki)],
                  "amqp_outconn": [{"name": "out", "def": "rabbit"}],
                  "service": [{"name": "fwd", "kind": "publish",
                               "outconn": "out", "routing_key": target,
                               "mandatory": True}],
                  "amqp_channel": [{"name": "in", "def": "rabbit",
                                    "queue": tls_queue, "service": "fwd",
                                    "prefetch": 10}]})
        z.wait_log("consuming queue '%s'" % tls_queue)
        ch.confirm_delivery()
        ch.basic_publish("", tls_queue, b"forward me", pika.BasicProperties(
            delivery_mode=2, message_id="fwd-1"))

        m, props, body = wait_for(lambda: _get(ch, target))
        assert body == b"forward me" and props.message_id == "fwd-1"
        wait_for(lambda: broker_counts(rabbitmq_tls, tls_queue)[:2]
                 == (0, 0))
        assert z.stop() == 0
        assert ready_over_tls(rabbitmq_tls, tls_queue) == 0
    finally:
        ch.queue_delete(target)
        conn.close()


def _get(ch, queue):
    m, props, body = ch.basic_get(queue, auto_ack=True)
    return (m, props, body) if m is not None else None


def test_zmqd_refused_certificate_is_logged_and_backs_off(
        zmqd, rabbitmq_tls, tls_pki, tls_queue):  # noqa: F811
    z = zmqd({"amqp_def": [tls_def(rabbitmq_tls.tls_port, tls_pki,
                                   ca_file=tls_pki["other_ca"])],
              "service": [{"name": "st", "kind": "redis", "key": "got"}],
              "amqp_channel": [{"name": "in", "def": "rabbit",
                                "queue": tls_queue, "service": "st"}]})
    line = ("amqp_def 'rabbit': cannot connect to 127.0.0.1:%d: TLS: "
            "certificate verify failed: " % rabbitmq_tls.tls_port)
    z.wait_log(line, count=3, timeout=20)
    delays = [float(x) for x in re.findall(
        re.escape(line) + r"[^\n]*; retrying in ([0-9.]+) s", z.text())]
    assert len(delays) >= 3 and delays[0] < delays[1] < delays[2], delays
    assert "consuming queue" not in z.text()


# -------------------------------------------------------- Redis: rediss://

def tls_zmqctl(url, zmqctl):
    """zmqctl on url with the same key file as the zmqctl fixture."""
    return Zmqctl(url, zmqctl.env["ZMQ_KEY_FILE"])


def test_import_and_export_over_rediss(redis_tls, zmqctl, write_json,
                                       tls_pki):
    r = redis_tls()
    ctl = tls_zmqctl(r.url(), zmqctl)
    doc = {"service": [{"name": "st", "kind": "redis", "key": "k"}]}
    ctl("import", write_json("c.json", doc), check=0)
    out = json.loads(ctl("export", check=0).stdout)
    assert out["service"][0]["name"] == "st"
    # what was written is in Redis, as redis-py over TLS reads it
    assert r.client().get("zmq:version") == b"1"
    assert r.client().sismember("zmq:index:service", "st")
    # the name checked: localhost by name, or server_name
    tls_zmqctl(r.url(host="localhost"), zmqctl)("export", check=0)
    tls_zmqctl(r.url(server_name="localhost"), zmqctl)("export", check=0)


def test_rediss_refusals_say_why(redis_tls, zmqctl, tls_pki):
    r = redis_tls()
    res = tls_zmqctl(r.url(ca_file=tls_pki["other_ca"]), zmqctl)(
        "export", check=1)
    assert re.search(r"redis rediss://127\.0\.0\.1:%d/0\?ca_file=\S+: TLS "
                     r"handshake: certificate verify failed: " % r.port,
                     res.stderr), res.stderr
    res = tls_zmqctl(r.url(server_name="wrong.example"), zmqctl)(
        "export", check=1)
    assert ("TLS handshake: certificate verify failed: hostname mismatch "
            "(the certificate is not for 'wrong.example')") in res.stderr, \
        res.stderr
    # verify=0 takes any certificate
    tls_zmqctl(r.url(server_name="wrong.example", verify="0"), zmqctl)(
        "export", check=0)
    # plain redis:// to a TLS port does not pass for TLS
    res = tls_zmqctl("redis://127.0.0.1:%d/0" % r.port, zmqctl)(
        "export", check=1)
    assert "redis redis://127.0.0.1:%d/0: " % r.port in res.stderr


def test_rediss_with_required_client_certificates(redis_tls, zmqctl,
                                                  write_json):
    r = redis_tls("yes")
    res = tls_zmqctl(r.url(), zmqctl)("export", check=1)
    assert ("TLS: tlsv13 alert certificate required" in res.stderr
            or "asking for a client certificate" in res.stderr), res.stderr
    ctl = tls_zmqctl(r.client_url(), zmqctl)
    ctl("import", write_json("c.json", {
        "service": [{"name": "st", "kind": "redis", "key": "k"}]}), check=0)
    assert json.loads(ctl("export", check=0).stdout)["service"]


def follow_doc(port, pki, queue, key, prefetch):
    return {"amqp_def": [tls_def(port, pki)],
            "service": [{"name": "st", "kind": "redis", "key": key}],
            "amqp_channel": [{"name": "in", "def": "rabbit",
                              "queue": queue, "service": "st",
                              "prefetch": prefetch}]}


@pytest.mark.parametrize("auth_clients", ["no", "yes"])
def test_zmqd_follows_its_configuration_over_rediss(
        auth_clients, redis_tls, zmqctl, zmqd, write_json,  # noqa: F811
        rabbitmq_tls, tls_pki, tls_queue, redis_store):
    r = redis_tls(auth_clients)
    url = r.client_url() if auth_clients == "yes" else r.url()
    ctl = tls_zmqctl(url, zmqctl)
    ctl("import", "--replace", write_json("a.json", follow_doc(
        rabbitmq_tls.tls_port, tls_pki, tls_queue, "first", 10)), check=0)
    z = zmqd(source=url)
    z.wait_log("consuming queue '%s'" % tls_queue)

    # a live change, over TLS: the channel restarts with another prefetch,
    # its service writes elsewhere
    ctl("import", "--replace", write_json("b.json", follow_doc(
        rabbitmq_tls.tls_port, tls_pki, tls_queue, "second", 5)), check=0)
    z.wait_log("0 channel(s) started, 1 restarted, 0 stopped")
    conn = rabbitmq_tls.tls_connection()
    ch = conn.channel()
    ch.confirm_delivery()
    ch.basic_publish("", tls_queue, b"after", pika.BasicProperties(
        delivery_mode=2))
    conn.close()
    # the redis service without a url writes to the store, over TLS too
    store = r.client()
    wait_for(lambda: store.llen("second") == 1)
    assert store.lrange("second", 0, -1) == [b"after"]
    assert store.llen("first") == 0
    assert redis_store.client().llen("second") == 0
    assert z.stop() == 0
    assert ready_over_tls(rabbitmq_tls, tls_queue) == 0


def test_zmqd_with_a_rediss_store_it_cannot_verify_says_why(
        redis_tls, zmqctl, tls_pki, tmp_path):
    r = redis_tls()
    url = r.url(ca_file=tls_pki["other_ca"])
    z = Zmqd(zmqctl, url, str(tmp_path))
    try:
        assert z.proc.wait(20) == 1
    finally:
        if z.proc.poll() is None:
            z.proc.kill()
            z.proc.wait(5)
        z.log.close()
    assert "TLS handshake: certificate verify failed: " in z.text(), z.text()
