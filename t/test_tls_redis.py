"""The module's own Redis client over TLS (rediss://, issue 17 item 2): the
configuration follower and redis_page services reach a Redis 7 that listens
with TLS only (--port 0 --tls-port), certificates made by the test. The
configuration is written with zmqctl into the session's plain Redis and
copied key by key (DUMP/RESTORE over TLS, with redis-py) into the TLS one,
which the gateway follows; a change there is applied like any other. A
server the options do not trust is refused with the reason in the log and
in zmq_status; a missing ca_file fails nginx -t."""

import json
import os
import shutil
import subprocess
import time
import urllib.parse
import uuid

import pytest
import requests

from conftest import (REDIS_SERVER, amqp_config, free_port, open_to_workers,
                      register_input_file, stop_pid, wait_port)

STATUS = "location = /zmq/status { zmq_status; }\n"
PUB = "location = /pub { zmq_service svc; }\n"
PAGE = "location /api/ { zmq_router; }\n"
MINIMAL = {"amqp_def": [{"name": "x", "host": "127.0.0.1", "port": 1}]}


@pytest.fixture(scope="module")
def pki(tls_pki, tmp_path_factory):
    d = tmp_path_factory.mktemp("pki_redis_workers")
    out = {}
    for k, path in tls_pki.items():
        dst = os.path.join(str(d), os.path.basename(path))
        shutil.copy(path, dst)
        os.chmod(dst, 0o644)
        out[k] = dst
    open_to_workers(str(d))
    return out


class RedisTls:
    """redis-server with TLS only; client certificates "no" (not asked),
    "yes" (required) or "optional"."""

    def __init__(self, tmp, pki, auth_clients="no"):
        if not os.access(REDIS_SERVER, os.X_OK):
            pytest.skip("redis-server is not installed")
        self.pki = pki
        self.port = free_port()
        self.proc = subprocess.Popen(
            [REDIS_SERVER, "--port", "0", "--tls-port", str(self.port),
             "--bind", "127.0.0.1", "--tls-cert-file", pki["server"],
             "--tls-key-file", pki["server_key"],
             "--tls-ca-cert-file", pki["ca"],
             "--tls-auth-clients", auth_clients,
             "--save", "", "--appendonly", "no", "--dir", tmp,
             "--logfile", os.path.join(tmp, "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port, 10, self.proc)

    def client(self):
        import redis
        return redis.Redis(host="127.0.0.1", port=self.port, db=0, ssl=True,
                           ssl_ca_certs=self.pki["ca"],
                           ssl_certfile=self.pki["client"],
                           ssl_keyfile=self.pki["client_key"])

    def url(self, **opts):
        q = urllib.parse.urlencode(opts, safe="/")
        return "rediss://127.0.0.1:%d/0%s" % (self.port,
                                               "?" + q if q else "")

    def stop(self):
        stop_pid(self.proc)


@pytest.fixture
def redis_tls(tmp_path, pki):
    servers = []

    def make(auth_clients="no"):
        d = tmp_path / ("redis_tls%d" % len(servers))
        d.mkdir()
        s = RedisTls(str(d), pki, auth_clients)
        servers.append(s)
        return s
    yield make
    for s in servers:
        s.stop()


def copy_store(plain, tls):
    """What zmqctl wrote into the plain Redis, into the TLS one (the
    version last); the event tells the followers."""
    src = plain.client()
    dst = tls.client()
    keys = sorted(k for k in src.keys("zmq:*") if k != b"zmq:version")
    for k in keys + [b"zmq:version"]:
        dst.restore(k, 0, src.dump(k), replace=True)
    version = int(src.get("zmq:version"))
    dst.publish("zmq:events", json.dumps({"version": version}))
    return version


def write(zmqctl, tmp_path, doc):
    p = tmp_path / ("c%s.json" % uuid.uuid4().hex[:6])
    p.write_text(json.dumps(doc))
    register_input_file(p)
    zmqctl("import", "--replace", p, check=0)


def gateway(nginx_factory, zmqctl, url, locations=STATUS + PUB):
    return nginx_factory(
        http="zmq_key_file %s;\nzmq_config %s;\nzmq_config_poll 500ms;\n"
             % (zmqctl.env["ZMQ_KEY_FILE"], url),
        server=locations)


def workers(ngx):
    return requests.get(ngx.url + "/zmq/status", timeout=5).json()["workers"]


def wait_for(pred, timeout=20.0, what="condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError("%s not met: %r" % (what, last))


def wait_version(ngx, version, timeout=20.0):
    return wait_for(lambda: all(w["config_version"] == version
                                for w in workers(ngx)) and workers(ngx),
                    timeout, "config version %d" % version)


def post(url, data=b"x"):
    with requests.Session() as s:
        return s.post(url, data=data, timeout=30)


# ------------------------------------------------------------------- tests

def test_the_module_follows_its_configuration_over_rediss_and_applies_a_change(
        nginx_factory, zmqctl, redis_store, redis_tls, pki, rabbitmq, queue,
        tmp_path):
    tls = redis_tls()
    other = queue.name + ".b"
    queue.channel.queue_declare(other, durable=True)
    try:
        write(zmqctl, tmp_path, amqp_config(rabbitmq.port, {"svc": {
            "routing_key": queue.name}}))
        v1 = copy_store(redis_store, tls)

        ngx = gateway(nginx_factory, zmqctl, tls.url(ca_file=pki["ca"]))
        ngx.start()
        wait_version(ngx, v1)
        wait_for(lambda: all(w["outconns"]["out"]["state"] == "ready"
                             for w in workers(ngx)), what="ready")
        assert post(ngx.url + "/pub").status_code == 202
        assert queue.count() == 1

        # a change, written to the TLS Redis: applied without a reload
        write(zmqctl, tmp_path, amqp_config(rabbitmq.port, {"svc": {
            "routing_key": other}}))
        v2 = copy_store(redis_store, tls)
        assert v2 > v1
        wait_version(ngx, v2)
        assert post(ngx.url + "/pub").status_code == 202
        assert queue.channel.queue_declare(
            other, passive=True).method.message_count == 1

        w = workers(ngx)[0]
        assert w["source_state"] == "connected", w
        log = ngx.error_log()
        assert "zmq redis 127.0.0.1:%d (config): TLSv1." % tls.port in log
        assert "certificate verified" in log
    finally:
        queue.channel.queue_delete(other)


def test_a_redis_that_requires_client_certificates(
        nginx_factory, zmqctl, redis_store, redis_tls, pki, tmp_path):
    tls = redis_tls("yes")
    write(zmqctl, tmp_path, MINIMAL)
    v = copy_store(redis_store, tls)

    # without a certificate: refused, and status says so
    ngx = gateway(nginx_factory, zmqctl, tls.url(ca_file=pki["ca"]))
    ngx.start()
    w = wait_for(lambda: [x for x in workers(ngx)
                          if "the server sent the TLS alert" in
                          x.get("error", "")
                          or "TLS handshake" in x.get("error", "")],
                 what="refusal")[0]
    assert w["source_state"] in ("waiting", "stale"), w
    assert "closed: " in ngx.error_log()

    # with the client certificate: followed
    ngx2 = gateway(nginx_factory, zmqctl, tls.url(
        ca_file=pki["ca"], cert_file=pki["client"],
        key_file=pki["client_key"]))
    ngx2.start()
    wait_version(ngx2, v)
    assert workers(ngx2)[0]["source_state"] == "connected"


def test_a_redis_from_another_ca_is_refused_clearly(
        nginx_factory, zmqctl, redis_store, redis_tls, pki, tmp_path):
    tls = redis_tls()
    write(zmqctl, tmp_path, MINIMAL)
    copy_store(redis_store, tls)

    ngx = gateway(nginx_factory, zmqctl, tls.url(ca_file=pki["other_ca"]))
    ngx.start()
    w = wait_for(lambda: [x for x in workers(ngx)
                          if "certificate verify failed: " in
                          x.get("error", "")], what="refusal")[0]
    assert w["source_state"] in ("waiting", "stale"), w
    assert w["config_version"] != copy_store(redis_store, tls)
    assert "(config): connection closed: certificate verify failed: " \
        in ngx.error_log()

    # and a name the certificate does not carry
    ngx2 = gateway(nginx_factory, zmqctl, tls.url(
        ca_file=pki["ca"], server_name="wrong.example"))
    ngx2.start()
    wait_for(lambda: [x for x in workers(ngx2)
                      if "hostname mismatch" in x.get("error", "")],
             what="hostname mismatch")


def test_verify_0_follows_a_redis_it_does_not_trust(
        nginx_factory, zmqctl, redis_store, redis_tls, pki, tmp_path):
    tls = redis_tls()
    write(zmqctl, tmp_path, MINIMAL)
    v = copy_store(redis_store, tls)
    ngx = gateway(nginx_factory, zmqctl, tls.url(verify="0"))
    ngx.start()
    wait_version(ngx, v)
    assert "certificate NOT verified: verify is off" in ngx.error_log()


def test_nginx_t_refuses_a_ca_file_that_is_missing(nginx_factory, zmqctl,
                                                   tmp_path, pki):
    missing = str(tmp_path / "nope.pem")
    ngx = gateway(nginx_factory, zmqctl,
                  "rediss://127.0.0.1:%d/0?ca_file=%s" % (free_port(),
                                                          missing))
    rc, out = ngx.test_config()
    assert rc != 0
    assert "TLS: ca_file \"%s\": No such file or directory" % missing in out


def test_a_redis_page_service_reads_zmq_config_redis_over_tls(
        nginx_factory, zmqctl, redis_store, redis_tls, pki, tmp_path):
    tls = redis_tls()
    write(zmqctl, tmp_path, {
        "service": [{"name": "p", "kind": "redis_page", "key": "pg:list"},
                    {"name": "own", "kind": "redis_page", "key": "pg:list",
                     "url": tls.url(ca_file=pki["ca"])}],
        "rest_channel": [
            {"name": "l", "url_path": "/api/list", "method": "GET",
             "service": "p"},
            {"name": "o", "url_path": "/api/own", "method": "GET",
             "service": "own"}]})
    v = copy_store(redis_store, tls)
    tls.client().rpush("pg:list", b'"over-tls"')
    ngx = gateway(nginx_factory, zmqctl, tls.url(ca_file=pki["ca"]),
                  STATUS + PAGE)
    ngx.start()
    wait_version(ngx, v)
    for path in ("/api/list", "/api/own"):
        r = wait_for(lambda: (lambda r: r if r.status_code == 200 else None)(
            requests.get(ngx.url + path, timeout=10)), what=path)
        assert r.json()["object_list"] == ["over-tls"], r.text


def test_idempotency_keys_over_rediss(nginx_factory, zmqctl, redis_store,
                                      redis_tls, pki, rabbitmq, queue,
                                      tmp_path):
    """The idempotency connection speaks TLS too: to zmq_config's rediss://
    store (by default) and to its own zmq_idempotency_redis rediss://. The
    answers it keeps are read back over TLS with redis-py."""
    tls = redis_tls()
    doc = amqp_config(rabbitmq.port, {"svc": {"routing_key": queue.name}})
    doc["rest_channel"] = [{"name": "orders", "url_path": "/api/orders",
                            "service": "svc", "idempotency": True}]
    write(zmqctl, tmp_path, doc)
    v1 = copy_store(redis_store, tls)
    url = tls.url(ca_file=pki["ca"])

    for extra in ("", "zmq_idempotency_redis %s;\n" % url):
        ngx = nginx_factory(
            http="zmq_key_file %s;\nzmq_config %s;\n%s" % (
                zmqctl.env["ZMQ_KEY_FILE"], url, extra),
            server=STATUS + PAGE)
        ngx.start()
        wait_version(ngx, v1)
        key = "k-%s" % uuid.uuid4().hex
        before = queue.count()
        answers = []
        for _ in range(2):
            answers.append(wait_for(lambda: (lambda r: r if r.status_code
                                             != 503 else None)(
                requests.post(ngx.url + "/api/orders", data=b'{"a":1}',
                              headers={"Idempotency-Key": key}, timeout=30)),
                what="an answer other than 503"))
        assert [a.status_code for a in answers] == [202, 202]
        assert answers[0].json() == answers[1].json()
        assert answers[1].headers.get("Idempotent-Replayed") == "true"
        assert queue.count() == before + 1
        kept = [k for k in tls.client().keys("zmq:idem:*")
                if key.encode() in k]
        assert len(kept) == 1
        ngx.stop()

    # a wrong CA for the idempotency Redis fails nginx -t clearly
    ngx = nginx_factory(
        http="zmq_config %s;\nzmq_idempotency_redis %s;\n" % (
            url, tls.url(ca_file="/nonexistent/ca.pem")),
        server=STATUS + PAGE)
    rc, out = ngx.test_config()
    assert rc != 0 and "zmq_idempotency_redis" in out \
        and "/nonexistent/ca.pem" in out, out
