"""The admin API's ping (issue 12, operations): POST api/amqp_def/NAME/ping
opens a fresh connection through the module's own asynchronous AMQP client
up to channel.open and closes it; POST api/http_outconn/NAME/ping makes a
TCP connection (and for https the TLS handshake). Real RabbitMQ, Redis and
NGINX (one worker, so that "the worker stays responsive" means the same
worker); small local listeners stand in for a broker that never answers and
for an HTTPS server."""

import json
import os
import socket
import ssl
import subprocess
import threading
import time

import pytest
import requests

from conftest import amqp_config, free_port, register_secret
from security_helpers import zmqctl_apikey
from test_live_config import Live

ADMIN_PW = "admin-Passw0rd-ping-4417"
BAD_PW = "not-the-broker-password-5573"

LOCATIONS = ("location /zmq/admin/ { zmq_admin; zmq_security admins; }\n"
             "location /zmq/view/ { zmq_admin; zmq_security viewers; }\n")

CONNECT_TIMEOUT_MS = 1000


class Silent:
    """A listener that accepts connections and never says a word."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]

    def accept(self, timeout=5.0):
        self.sock.settimeout(timeout)
        conn, _ = self.sock.accept()
        return conn

    def close(self):
        self.sock.close()


class TlsServer:
    """An HTTPS listener with a self-signed certificate for 127.0.0.1:
    completes TLS handshakes, then closes."""

    def __init__(self, tmp_path):
        self.cert = str(tmp_path / "cert.pem")
        self.key = str(tmp_path / "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048",
                        "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                        "-addext", "subjectAltName=IP:127.0.0.1",
                        "-keyout", self.key, "-out", self.cert],
                       check=True, capture_output=True, timeout=60)
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(self.cert, self.key)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stop = False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop:
            try:
                conn, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            conn.settimeout(5)
            try:
                with self.ctx.wrap_socket(conn, server_side=True):
                    pass
            except (ssl.SSLError, OSError):
                pass
            finally:
                conn.close()

    def close(self):
        self.stop = True
        self.thread.join(5)
        self.sock.close()


class Gw:
    """A gateway with one worker following Redis, with the definitions and
    outgoing connections the tests ping."""

    def __init__(self, nginx_factory, zmqctl, redis_store, tmp_path,
                 rabbitmq, silent, tls_port=None):
        register_secret(ADMIN_PW)
        register_secret(BAD_PW)
        self.live = Live(nginx_factory, zmqctl, redis_store, tmp_path,
                         LOCATIONS, workers=1,
                         http="zmq_amqp_connect_timeout %dms;"
                              % CONNECT_TIMEOUT_MS)
        self.url = self.live.url
        self.closed_port = free_port()
        amqp = dict(host="127.0.0.1", username="guest")
        d = amqp_config(rabbitmq.port, {"svc": {"routing_key": "q"}}, extra={
            "security": [
                {"name": "admins", "type": "basic_auth", "username": "root",
                 "password": ADMIN_PW},
                {"name": "viewers", "type": "apikey", "role": "viewer"},
            ],
            "http_outconn": [
                {"name": "web", "url": self.url + "/zmq/status"},
                {"name": "down", "url": "http://127.0.0.1:%d/"
                                        % self.closed_port},
                {"name": "named", "url": "http://no-such-host.invalid/x"},
            ],
        })
        d["amqp_def"] += [
            dict(amqp, name="badpw", port=rabbitmq.port, password=BAD_PW),
            dict(amqp, name="novhost", port=rabbitmq.port, password="guest",
                 vhost="no-such-vhost"),
            dict(amqp, name="closed", port=self.closed_port,
                 password="guest"),
            dict(amqp, name="silent", port=silent.port, password="guest"),
        ]
        if tls_port is not None:
            url = "https://127.0.0.1:%d/" % tls_port
            d["http_outconn"] += [
                {"name": "tls-verified", "url": url, "tls": True},
                {"name": "tls-unverified", "url": url, "tls": False},
            ]
        version = self.live.write(d)
        rc, self.key, out, err = zmqctl_apikey(zmqctl, "--id", "ops",
                                               "viewers")
        assert rc == 0, (out, err)
        version = int(redis_store.client().get("zmq:version"))
        self.live.start()
        self.live.wait_version(version)

    def ping(self, kind, name, auth="admin", timeout=15):
        if auth == "admin":
            kw = {"auth": ("root", ADMIN_PW)}
            base = "/zmq/admin/"
        else:
            kw = {"headers": {"X-API-Key": self.key}}
            base = "/zmq/view/"
        with requests.Session() as s:
            return s.post("%s%sapi/%s/%s/ping" % (self.url, base, kind, name),
                          timeout=timeout, **kw)

    def error_log(self):
        return self.live.ngx.error_log()


@pytest.fixture
def silent():
    s = Silent()
    yield s
    s.close()


@pytest.fixture
def gw(nginx_factory, zmqctl, redis_store, tmp_path, rabbitmq, silent):
    return Gw(nginx_factory, zmqctl, redis_store, tmp_path, rabbitmq, silent)


def ok_answer(r):
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"] == "application/json"
    return r.json()


# ----------------------------------------------------------------- amqp_def


def test_ping_of_the_live_broker_is_ok_with_its_product_and_version(gw):
    body = ok_answer(gw.ping("amqp_def", "rabbit"))
    assert body["ok"] is True, body
    assert body["server"]["product"] == "RabbitMQ"
    assert body["server"]["version"].count(".") >= 1, body
    assert isinstance(body["ms"], (int, float)) and 0 <= body["ms"] < 5000
    assert body["address"].startswith("127.0.0.1:")
    # the log names the probe, and says it closed at channel.open
    assert "\"ping:rabbit\": probe of" in gw.error_log()


def test_ping_with_a_wrong_password_says_access_refused(gw):
    body = ok_answer(gw.ping("amqp_def", "badpw"))
    assert body["ok"] is False, body
    assert body["error"].startswith("ACCESS_REFUSED - "), body
    assert BAD_PW not in json.dumps(body)


def test_ping_of_a_vhost_that_does_not_exist_says_not_allowed(gw):
    body = ok_answer(gw.ping("amqp_def", "novhost"))
    assert body["ok"] is False, body
    assert body["error"].startswith("NOT_ALLOWED - "), body
    assert "no-such-vhost" in body["error"]


def test_ping_of_a_closed_port_says_connection_refused(gw):
    body = ok_answer(gw.ping("amqp_def", "closed"))
    assert body["ok"] is False, body
    assert "refused" in body["error"].lower(), body
    assert "127.0.0.1:%d" % gw.closed_port in body["error"], body


def test_ping_of_a_silent_listener_ends_at_the_connect_timeout_and_the_worker_keeps_answering(gw, silent):
    answer = {}

    def ping():
        t0 = time.monotonic()
        answer["r"] = gw.ping("amqp_def", "silent")
        answer["s"] = time.monotonic() - t0

    t = threading.Thread(target=ping)
    t.start()
    peer = silent.accept()      # the probe is connected and waiting
    try:
        # meanwhile the one worker answers other requests at once
        for _ in range(10):
            t0 = time.monotonic()
            r = requests.get(gw.url + "/zmq/view/api/amqp_def/rabbit",
                             headers={"X-API-Key": gw.key}, timeout=5)
            assert r.status_code == 200, r.text
            assert time.monotonic() - t0 < 0.5
            assert t.is_alive()
            time.sleep(0.03)
        t.join(10)
        assert not t.is_alive()
    finally:
        peer.close()
    body = ok_answer(answer["r"])
    assert body["ok"] is False, body
    assert "timed out" in body["error"], body
    assert "%d ms" % CONNECT_TIMEOUT_MS in body["error"], body
    assert CONNECT_TIMEOUT_MS / 1000.0 - 0.1 <= answer["s"] \
        <= CONNECT_TIMEOUT_MS / 1000.0 + 1.5, answer["s"]


def test_a_client_that_leaves_mid_ping_ends_the_probe_and_nothing_breaks(gw, silent):
    import base64
    auth = base64.b64encode(("root:" + ADMIN_PW).encode()).decode()
    c = socket.create_connection(("127.0.0.1", gw.live.ngx.port))
    c.sendall(("POST /zmq/admin/api/amqp_def/silent/ping HTTP/1.1\r\n"
               "Host: x\r\nAuthorization: Basic %s\r\n"
               "Content-Length: 0\r\n\r\n" % auth).encode())
    peer = silent.accept()
    time.sleep(0.1)
    c.close()                   # before the probe's timeout
    # the gateway closes its connection to the listener well before
    # zmq_amqp_connect_timeout would have
    peer.settimeout(CONNECT_TIMEOUT_MS / 1000.0 * 0.7)
    t0 = time.monotonic()
    data = peer.recv(100)       # the protocol header, then EOF
    while data:
        data = peer.recv(100)
    assert time.monotonic() - t0 < CONNECT_TIMEOUT_MS / 1000.0 * 0.7
    peer.close()
    time.sleep(CONNECT_TIMEOUT_MS / 1000.0)   # past the probe's timer
    assert "probe cancelled" in gw.error_log()
    # the worker is fine, and pings again
    assert ok_answer(gw.ping("amqp_def", "rabbit"))["ok"] is True


def test_ping_of_an_unknown_definition_is_404(gw):
    r = gw.ping("amqp_def", "nope")
    assert r.status_code == 404, r.text
    assert r.json()["error"] == "not_found"
    r = gw.ping("http_outconn", "nope")
    assert r.status_code == 404, r.text
    assert r.json()["error"] == "not_found"


def test_a_viewer_may_not_ping(gw):
    r = gw.ping("amqp_def", "rabbit", auth="viewer")
    assert r.status_code == 403, r.text
    assert r.json()["error"] == "forbidden"


# ------------------------------------------------------------- http_outconn


def test_ping_of_a_live_http_listener_is_ok_with_the_time_taken(gw):
    body = ok_answer(gw.ping("http_outconn", "web"))
    assert body["ok"] is True, body
    assert isinstance(body["ms"], (int, float)) and 0 <= body["ms"] < 5000
    assert body["address"] == "127.0.0.1:%d" % gw.live.ngx.port


def test_ping_of_a_closed_http_port_says_connection_refused(gw):
    body = ok_answer(gw.ping("http_outconn", "down"))
    assert body["ok"] is False, body
    assert "refused" in body["error"].lower(), body


def test_ping_of_an_http_host_name_never_resolves_in_the_worker(gw):
    body = ok_answer(gw.ping("http_outconn", "named"))
    assert body["ok"] is False, body
    assert "no-such-host.invalid" in body["error"], body
    assert "never resolved in a worker" in body["error"], body


def test_https_ping_does_the_tls_handshake_and_verifies_when_asked(
        nginx_factory, zmqctl, redis_store, tmp_path, rabbitmq, silent):
    tls = TlsServer(tmp_path)
    try:
        gw = Gw(nginx_factory, zmqctl, redis_store, tmp_path, rabbitmq,
                silent, tls_port=tls.port)
        body = ok_answer(gw.ping("http_outconn", "tls-unverified"))
        assert body["ok"] is True, body
        assert body["tls"].startswith("TLSv1."), body
        assert body["verified"] is False
        body = ok_answer(gw.ping("http_outconn", "tls-verified"))
        assert body["ok"] is False, body
        assert "certificate" in body["error"], body
    finally:
        tls.close()
