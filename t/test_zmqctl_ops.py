"""zmqctl ping, passwd and send against a real Redis and RabbitMQ (issue
12, item 5): pings that succeed, are refused or time out within their
bound; secrets set from stdin or a terminal, never echoed, never printed,
nothing written when refused; messages published with confirms and read
back with pika, returned, nacked."""

import json
import os
import pty
import re
import select
import socket
import ssl
import subprocess
import threading
import time
import uuid

import pytest

from conftest import ZMQCTL, free_port, record_output, register_secret

PW_RE = re.compile(r"^ok \d+\.\d ms, RabbitMQ (\d+\.\d+\.\d+)\n$")


def version(redis_store):
    v = redis_store.client().get("zmq:version")
    return int(v) if v is not None else 0


def broker_config(port, amqp_def=None, outconn=None, extra=None):
    d = {"name": "rabbit", "host": "127.0.0.1", "port": port,
         "username": "guest", "password": "guest", "heartbeat": 10}
    d.update(amqp_def or {})
    o = {"name": "out", "def": "rabbit"}
    o.update(outconn or {})
    doc = {"amqp_def": [d], "amqp_outconn": [o]}
    doc.update(extra or {})
    return doc


@pytest.fixture
def silent_listener():
    """A TCP port that accepts connections (the kernel completes them)
    and never says a word."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    yield s.getsockname()[1]
    s.close()


@pytest.fixture
def rabbit_user(rabbitmq):
    """A RabbitMQ user of its own, deleted afterwards."""
    name = "zo_" + uuid.uuid4().hex[:8]
    pw = "pw-" + uuid.uuid4().hex
    register_secret(pw)
    r = rabbitmq.ctl("add_user", name, pw)
    assert r.returncode == 0, r.stderr
    r = rabbitmq.ctl("set_permissions", "-p", "/", name, ".*", ".*", ".*")
    assert r.returncode == 0, r.stderr
    yield name, pw
    rabbitmq.ctl("delete_user", name)


# ---------------------------------------------------------------- ping amqp

def test_ping_shows_the_time_and_the_broker_version(zmqctl, rabbitmq,
                                                    write_json):
    zmqctl("import", write_json("c.json", broker_config(rabbitmq.port)),
           check=0)
    r = zmqctl("ping", "amqp_def", "rabbit", check=0)
    m = PW_RE.match(r.stdout)
    assert m, r.stdout
    assert m.group(1) == rabbitmq.ctl("version").stdout.strip()


def test_ping_with_a_wrong_password_is_access_refused(zmqctl, rabbitmq,
                                                      write_json):
    doc = broker_config(rabbitmq.port, {"password": "not-the-password-71"})
    zmqctl("import", write_json("c.json", doc), check=0)
    r = zmqctl("ping", "amqp_def", "rabbit", check=1)
    assert r.stdout.startswith("failed: 127.0.0.1:%d: ACCESS_REFUSED - "
                               % rabbitmq.port), r.stdout


def test_ping_of_a_missing_vhost_says_so(zmqctl, rabbitmq, write_json):
    doc = broker_config(rabbitmq.port, {"vhost": "no-such-vhost"})
    zmqctl("import", write_json("c.json", doc), check=0)
    r = zmqctl("ping", "amqp_def", "rabbit", check=1)
    assert r.stdout == ("failed: 127.0.0.1:%d: NOT_ALLOWED - vhost "
                        "no-such-vhost not found\n" % rabbitmq.port)


def test_ping_a_closed_port_is_refused(zmqctl, write_json):
    port = free_port()
    zmqctl("import", write_json("c.json", broker_config(port)), check=0)
    r = zmqctl("ping", "amqp_def", "rabbit", check=1)
    assert r.stdout == "failed: 127.0.0.1:%d: Connection refused\n" % port


def test_ping_of_a_silent_listener_ends_at_the_timeout(zmqctl, write_json,
                                                       silent_listener):
    zmqctl("import", write_json("c.json", broker_config(silent_listener)),
           check=0)
    start = time.monotonic()
    r = zmqctl("ping", "--timeout", "1000", "amqp_def", "rabbit", check=1)
    took = time.monotonic() - start
    assert r.stdout == ("failed: 127.0.0.1:%d: no answer within 1000 ms\n"
                        % silent_listener)
    assert 0.9 < took < 3.0


def test_ping_tries_host_then_each_of_hosts(zmqctl, rabbitmq, write_json,
                                            silent_listener):
    closed = free_port()
    doc = broker_config(closed, {"hosts": [
        "127.0.0.1:%d" % silent_listener, "127.0.0.1:%d" % rabbitmq.port]})
    zmqctl("import", write_json("c.json", doc), check=0)
    r = zmqctl("ping", "--timeout", "500", "amqp_def", "rabbit", check=0)
    assert PW_RE.match(r.stdout), r.stdout
    assert ("127.0.0.1:%d: Connection refused; trying the next address"
            % closed) in r.stderr
    assert ("127.0.0.1:%d: no answer within 500 ms; trying the next "
            "address" % silent_listener) in r.stderr

    # all of them failing: each named, in order
    doc["amqp_def"][0]["hosts"] = ["127.0.0.1:%d" % silent_listener]
    zmqctl("import", write_json("c2.json", doc), check=0)
    r = zmqctl("ping", "--timeout", "500", "amqp_def", "rabbit", check=1)
    assert r.stdout == ("failed: 127.0.0.1:%d: Connection refused; "
                        "127.0.0.1:%d: no answer within 500 ms\n"
                        % (closed, silent_listener))


def test_ping_refuses_what_it_cannot_ping(zmqctl, rabbitmq, write_json):
    zmqctl("import", write_json("c.json", broker_config(rabbitmq.port)),
           check=0)
    r = zmqctl("ping", "amqp_outconn", "out", check=2)
    assert "ping takes an amqp_def or an http_outconn" in r.stderr
    r = zmqctl("ping", "amqp_def", "nowhere", check=1)
    assert "amqp_def 'nowhere' does not exist" in r.stderr
    zmqctl("ping", "amqp_def", check=2)
    r = zmqctl("ping", "--timeout", "0", "amqp_def", "rabbit", check=2)
    assert "--timeout needs milliseconds" in r.stderr
    r = zmqctl("list", "--timeout", "10", check=2)
    assert "--timeout applies to ping and send" in r.stderr


def test_ping_needs_the_key_file_for_a_sealed_password(zmqctl, rabbitmq,
                                                       write_json, tmp_path):
    zmqctl("import", write_json("c.json", broker_config(rabbitmq.port)),
           check=0)
    env = dict(zmqctl.env, ZMQ_KEY_FILE=str(tmp_path / "absent.key"))
    r = subprocess.run([ZMQCTL, "ping", "amqp_def", "rabbit"], env=env,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert "absent.key" in r.stderr and r.stdout == ""


# ---------------------------------------------------------- ping http_outconn

@pytest.fixture
def tls_server(tmp_path):
    """An https listener with a self-signed certificate for 127.0.0.1 that
    completes handshakes: yields its port."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec",
                    "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-subj", "/CN=127.0.0.1", "-addext",
                    "subjectAltName=IP:127.0.0.1", "-days", "1",
                    "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=30)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert), str(key))
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    srv.settimeout(0.2)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                c, _ = srv.accept()
            except OSError:
                continue
            c.settimeout(5)
            try:
                with ctx.wrap_socket(c, server_side=True) as s:
                    s.recv(1)
            except (OSError, ssl.SSLError):
                pass
            finally:
                c.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield srv.getsockname()[1]
    stop.set()
    t.join(5)
    srv.close()


def outconn_doc(url, tls=True):
    return {"http_outconn": [{"name": "web", "url": url, "tls": tls}]}


def test_ping_http_outconn_connects(zmqctl, write_json):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    port = srv.getsockname()[1]
    try:
        zmqctl("import", write_json("c.json", outconn_doc(
            "http://127.0.0.1:%d/hook?x=1" % port)), check=0)
        r = zmqctl("ping", "http_outconn", "web", check=0)
        assert re.match(r"^ok \d+\.\d ms, TCP connect to 127\.0\.0\.1:%d\n$"
                        % port, r.stdout), r.stdout
    finally:
        srv.close()

    r = zmqctl("ping", "http_outconn", "web", check=1)
    assert r.stdout == "failed: 127.0.0.1:%d: Connection refused\n" % port


def test_ping_https_verifies_the_certificate_when_tls_is_true(
        zmqctl, write_json, tls_server):
    url = "https://127.0.0.1:%d/" % tls_server
    zmqctl("import", write_json("c.json", outconn_doc(url, True)), check=0)
    r = zmqctl("ping", "http_outconn", "web", check=1)
    assert r.stdout.startswith("failed: 127.0.0.1:%d: TLS handshake: "
                               "certificate verify failed: self-signed "
                               "certificate" % tls_server), r.stdout

    zmqctl("import", write_json("c2.json", outconn_doc(url, False)), check=0)
    r = zmqctl("ping", "http_outconn", "web", check=0)
    assert re.match(r"^ok \d+\.\d ms, TCP connect and TLSv1\.[23] handshake "
                    r"with 127\.0\.0\.1:%d, certificate not verified "
                    r"\(tls is false\)\n$" % tls_server, r.stdout), r.stdout


def test_ping_of_a_tls_amqp_def_verifies_the_brokers_certificate(
        zmqctl, write_json, tls_server):
    zmqctl("import", write_json("c.json", broker_config(
        tls_server, {"tls": True})), check=0)
    r = zmqctl("ping", "amqp_def", "rabbit", check=1)
    assert r.stdout == ("failed: 127.0.0.1:%d: TLS: certificate verify "
                        "failed: self-signed certificate (/CN=127.0.0.1)\n"
                        % tls_server)


def test_ping_https_of_a_silent_listener_ends_at_the_timeout(
        zmqctl, write_json, silent_listener):
    zmqctl("import", write_json("c.json", outconn_doc(
        "https://127.0.0.1:%d" % silent_listener)), check=0)
    start = time.monotonic()
    r = zmqctl("ping", "--timeout", "800", "http_outconn", "web", check=1)
    assert time.monotonic() - start < 2.8
    assert r.stdout == ("failed: 127.0.0.1:%d: no answer to the TLS "
                        "handshake within 800 ms\n" % silent_listener)


# -------------------------------------------------------------------- passwd

def test_passwd_from_stdin_then_ping_logs_in(zmqctl, rabbitmq, redis_store,
                                             write_json, rabbit_user):
    user, pw = rabbit_user
    doc = broker_config(rabbitmq.port, {"username": user,
                                        "password": "initial-wrong-5521"})
    zmqctl("import", write_json("c.json", doc), check=0)
    assert "ACCESS_REFUSED" in zmqctl("ping", "amqp_def", "rabbit",
                                      check=1).stdout

    v = version(redis_store)
    r = zmqctl("passwd", "amqp_def", "rabbit", input=pw + "\n", check=0)
    assert r.stdout == "set the password of amqp_def 'rabbit': version %d\n" \
        % (v + 1)
    assert version(redis_store) == v + 1

    stored = redis_store.client().get("zmq:obj:amqp_def:rabbit").decode()
    assert pw not in stored and "$sealed" in stored
    assert PW_RE.match(zmqctl("ping", "amqp_def", "rabbit", check=0).stdout)

    # the same again changes nothing; a CRLF line end is not part of it
    r = zmqctl("passwd", "amqp_def", "rabbit", input=pw + "\r\n", check=0)
    assert "is the one stored: nothing was written, version %d" % (v + 1) \
        in r.stdout
    assert version(redis_store) == v + 1


def test_passwd_refuses_an_empty_one_and_writes_nothing(
        zmqctl, rabbitmq, redis_store, write_json):
    zmqctl("import", write_json("c.json", broker_config(rabbitmq.port)),
           check=0)
    before = redis_store.dump()
    for given in ("\n", "", "\r\n"):
        r = zmqctl("passwd", "amqp_def", "rabbit", input=given, check=1)
        assert "an empty password is refused; nothing was written" \
            in r.stderr
    r = zmqctl("passwd", "amqp_def", "rabbit", input="a\0b\n", check=1)
    assert "NUL" in r.stderr
    r = zmqctl("passwd", "amqp_def", "rabbit", input="x" * 5000 + "\n",
               check=1)
    assert "longer than 4096 bytes" in r.stderr
    assert redis_store.dump() == before


def test_passwd_never_takes_the_secret_from_the_command_line(zmqctl):
    r = zmqctl("passwd", "amqp_def", "rabbit", "on-the-command-line",
               check=2)
    assert r.stderr.startswith("usage: zmqctl passwd KIND NAME")


def run_on_terminal(env, args, lines):
    """zmqctl with a terminal as stdin and stderr: each line is typed
    after the next prompt. Returns (exit status, what the terminal
    showed, stdout)."""
    master, slave = pty.openpty()
    p = subprocess.Popen([ZMQCTL] + args, env=env, stdin=slave,
                         stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    shown = b""
    deadline = time.monotonic() + 30
    todo = list(lines)
    while time.monotonic() < deadline:
        r, _, _ = select.select([master], [], [], 0.1)
        if r:
            try:
                data = os.read(master, 4096)
            except OSError:
                break
            if not data:
                break
            shown += data
            if todo and shown.rstrip().endswith(b":"):
                os.write(master, todo.pop(0).encode() + b"\n")
        elif p.poll() is not None:
            break
    out = p.communicate(timeout=30)[0].decode()
    os.close(master)
    text = shown.decode("utf-8", "replace")
    record_output("zmqctl %s on a terminal" % " ".join(args),
                  text + "\n" + out)
    return p.returncode, text, out


def test_passwd_on_a_terminal_asks_twice_without_echo(
        zmqctl, rabbitmq, redis_store, write_json, rabbit_user):
    user, pw = rabbit_user
    doc = broker_config(rabbitmq.port, {"username": user})
    zmqctl("import", write_json("c.json", doc), check=0)
    before = redis_store.dump()

    other = "typed-differently-8812"
    register_secret(other)
    rc, shown, out = run_on_terminal(zmqctl.env,
                                     ["passwd", "amqp_def", "rabbit"],
                                     [pw, other])
    assert rc == 1
    assert "New password of amqp_def 'rabbit':" in shown
    assert "Retype the new password:" in shown
    assert "the two entries do not match" in shown
    assert pw not in shown and other not in shown
    assert out == ""
    assert redis_store.dump() == before

    rc, shown, out = run_on_terminal(zmqctl.env,
                                     ["passwd", "amqp_def", "rabbit"],
                                     [pw, pw])
    assert rc == 0, shown
    assert pw not in shown and pw not in out
    assert out.startswith("set the password of amqp_def 'rabbit'")
    assert PW_RE.match(zmqctl("ping", "amqp_def", "rabbit", check=0).stdout)

    # an empty first entry is refused without asking again
    rc, shown, out = run_on_terminal(zmqctl.env,
                                     ["passwd", "amqp_def", "rabbit"], [""])
    assert rc == 1 and "Retype" not in shown
    assert "an empty password is refused" in shown


def ec_public_key():
    """A P-256 public key in PEM (an ES256 jwt definition's public_key)."""
    key = subprocess.run(["openssl", "genpkey", "-algorithm", "EC",
                          "-pkeyopt", "ec_paramgen_curve:P-256"],
                         check=True, capture_output=True, timeout=30).stdout
    return subprocess.run(["openssl", "pkey", "-pubout"], input=key,
                          check=True, capture_output=True,
                          timeout=30).stdout.decode()


def security(pem):
    return SECURITY + [{"name": "ec", "type": "jwt", "alg": "ES256",
                        "public_key": pem}]


SECURITY = [
    {"name": "clients", "type": "basic_auth", "username": "u"},
    {"name": "partner", "type": "basic_auth", "direction": "out",
     "username": "u"},
    {"name": "keys-in", "type": "apikey"},
    {"name": "key-out", "type": "apikey", "direction": "out",
     "key": "first-key-value-1234"},
    {"name": "tokens", "type": "jwt",
     "secret": "a-first-secret-of-32-bytes-at-least-0001"},
]


def stored(redis_store, kind, name):
    return json.loads(redis_store.client().get(
        "zmq:obj:%s:%s" % (kind, name)))


def test_passwd_sets_each_kind_of_secret(zmqctl, redis_store, write_json):
    doc = {"security": SECURITY,
           "http_outconn": [{"name": "web", "url": "https://example.com/",
                             "security": "partner"}],
           "service": [{"name": "cache", "kind": "redis", "key": "k",
                        "url": "redis://127.0.0.1:6399/0"}]}
    zmqctl("import", write_json("c.json", doc), check=0)

    cases = [("security", "clients", "password", "$hash"),
             ("security", "partner", "password", "$sealed"),
             ("security", "key-out", "key", "$sealed"),
             ("security", "tokens", "secret", "$sealed"),
             ("service", "cache", "password", "$sealed")]
    for kind, name, field, form in cases:
        new = "new-%s-%s-secret-of-at-least-32-bytes" % (name, field)
        register_secret(new)
        old = stored(redis_store, kind, name).get(field)
        v = version(redis_store)
        r = zmqctl("passwd", kind, name, input=new + "\n", check=0)
        assert r.stdout == "set the %s of %s '%s': version %d\n" % (
            field, kind, name, v + 1)
        now = stored(redis_store, kind, name)[field]
        assert list(now) == [form] and now != old, (kind, name)


def test_passwd_refuses_objects_without_a_secret(zmqctl, redis_store,
                                                  write_json):
    doc = {"security": security(ec_public_key()),
           "http_outconn": [{"name": "web", "url": "https://example.com/",
                             "security": "partner"},
                            {"name": "bare", "url": "http://example.com/"}],
           "service": [{"name": "cache", "kind": "redis", "key": "k"},
                       {"name": "pub", "kind": "http", "outconn": "bare"}]}
    zmqctl("import", write_json("c.json", doc), check=0)
    before = redis_store.dump()
    refusals = [
        (("security", "keys-in"), "create one with 'zmqctl apikey keys-in'"),
        (("security", "ec"), "verifies ES256 tokens with a public key"),
        (("http_outconn", "web"), "its credentials are those of security "
                                  "'partner' (change that one's "
                                  "password)"),
        (("http_outconn", "bare"), "has no security definition"),
        (("security", "nobody"), "security 'nobody' does not exist"),
        (("service", "pub"), "service 'pub' (kind http) holds no secret"),
        (("amqp_outconn", "x"), "amqp_outconn 'x' does not exist"),
        # the model's rules hold: a redis service's password belongs to
        # its url, and there is none
        (("service", "cache"), "passwd: service 'cache': password is the "
                               "password of url"),
    ]
    for args, why in refusals:
        r = zmqctl("passwd", *args, input="whatever-it-is-123\n", check=1)
        assert why in r.stderr, r.stderr
    # the model's rules hold: an HS256 secret of fewer than 32 bytes
    r = zmqctl("passwd", "security", "tokens", input="short-secret-77\n",
               check=1)
    assert "at least 32" in r.stderr and "nothing was written" in r.stderr
    assert redis_store.dump() == before


# ---------------------------------------------------------------------- send

ALL_PROPS = {
    "content_type": "application/octet-stream",
    "content_encoding": "identity",
    "delivery_mode": "1",
    "priority": "7",
    "correlation_id": "corr-42",
    "reply_to": "replies.q",
    "expiration": "60000",
    "message_id": "msg-0001",
    "timestamp": "1700000000",
    "type": "order.created",
    "user_id": "guest",
    "app_id": "zmqctl-test",
}


def test_send_publishes_every_property_and_header(zmqctl, rabbitmq, queue,
                                                  write_json, tmp_path):
    zmqctl("import", write_json("c.json", broker_config(rabbitmq.port)),
           check=0)
    body = bytes(range(256)) * 3
    path = tmp_path / "body.bin"
    path.write_bytes(body)
    args = ["send", "--exchange", "", "--routing-key", queue.name]
    for k, v in ALL_PROPS.items():
        args += ["--property", "%s=%s" % (k, v)]
    args += ["--header", "Tenant=acme", "--header", "trace-id=a=b",
             "out", str(path)]
    r = zmqctl(*args, check=0)
    assert r.stdout == "confirmed msg-0001\n"

    (m, props, got), = queue.drain(1)
    assert got == body
    assert props.content_type == "application/octet-stream"
    assert props.content_encoding == "identity"
    assert props.delivery_mode == 1
    assert props.priority == 7
    assert props.correlation_id == "corr-42"
    assert props.reply_to == "replies.q"
    assert props.expiration == "60000"
    assert props.message_id == "msg-0001"
    assert props.timestamp == 1700000000
    assert props.type == "order.created"
    assert props.user_id == "guest"
    assert props.app_id == "zmqctl-test"
    assert props.headers == {"Tenant": "acme", "trace-id": "a=b"}


def test_send_takes_defaults_from_the_outconn(zmqctl, rabbitmq, queue,
                                              write_json):
    oc = {"delivery_mode": 1, "priority": 3, "expiration": 90000,
          "content_type": "application/json", "content_encoding": "utf-8",
          "app_id": "crm"}
    zmqctl("import", write_json("c.json", broker_config(
        rabbitmq.port, outconn=oc)), check=0)
    r = zmqctl("send", "--exchange", "", "--routing-key", queue.name, "out",
               "-", input='{"a": 1}', check=0)
    m = re.match(r"^confirmed ([0-9a-f-]{36})\n$", r.stdout)
    assert m, r.stdout

    (_, props, body), = queue.drain(1)
    assert body == b'{"a": 1}'
    assert props.message_id == m.group(1)
    assert str(uuid.UUID(props.message_id)) == props.message_id
    assert (props.delivery_mode, props.priority, props.expiration) == \
        (1, 3, "90000")
    assert props.content_type == "application/json"
    assert props.content_encoding == "utf-8"
    assert props.app_id == "crm"
    assert abs(props.timestamp - time.time()) < 10
    assert props.headers is None

    # the command line wins over the outconn
    zmqctl("send", "--exchange", "", "--routing-key", queue.name,
           "--property", "delivery_mode=persistent", "--property",
           "app_id=other", "out", "-", input="x", check=0)
    (_, props, _), = queue.drain(1)
    assert (props.delivery_mode, props.app_id, props.priority) == \
        (2, "other", 3)


def test_send_mandatory_to_no_queue_is_returned(zmqctl, rabbitmq,
                                                write_json):
    zmqctl("import", write_json("c.json", broker_config(rabbitmq.port)),
           check=0)
    rk = "nobody.listens." + uuid.uuid4().hex
    r = zmqctl("send", "--exchange", "amq.direct", "--routing-key", rk,
               "--mandatory", "out", "-", input="lost", check=1)
    assert r.stdout == "returned: NO_ROUTE\n"
    # without --mandatory the broker confirms and drops it
    r = zmqctl("send", "--exchange", "amq.direct", "--routing-key", rk,
               "out", "-", input="lost", check=0)
    assert r.stdout.startswith("confirmed ")


def test_send_refused_by_the_queue_is_nacked(zmqctl, rabbitmq, write_json):
    name = "t.full." + uuid.uuid4().hex[:8]
    conn = rabbitmq.connection()
    ch = conn.channel()
    ch.queue_declare(name, arguments={"x-max-length": 0,
                                      "x-overflow": "reject-publish"})
    try:
        zmqctl("import", write_json("c.json", broker_config(rabbitmq.port)),
               check=0)
        r = zmqctl("send", "--exchange", "", "--routing-key", name, "out",
                   "-", input="x", check=1)
        assert r.stdout == "nacked\n"
    finally:
        ch.queue_delete(name)
        conn.close()


def test_send_to_a_missing_exchange_fails_with_the_brokers_reason(
        zmqctl, rabbitmq, write_json):
    zmqctl("import", write_json("c.json", broker_config(rabbitmq.port)),
           check=0)
    r = zmqctl("send", "--exchange", "no.such.exchange", "--routing-key",
               "k", "out", "-", input="x", check=1)
    assert r.stdout == ("failed: NOT_FOUND - no exchange 'no.such.exchange' "
                        "in vhost '/'\n")
    # RabbitMQ checks user_id against the user logged in
    r = zmqctl("send", "--exchange", "", "--routing-key", "k", "--property",
               "user_id=someone-else", "out", "-", input="x", check=1)
    assert r.stdout == ("failed: PRECONDITION_FAILED - user_id property set "
                        "to 'someone-else' but authenticated user was "
                        "'guest'\n")


@pytest.mark.parametrize("args,why", [
    (["--property", "colour=red"], "unknown property 'colour'"),
    (["--property", "priority"], "--property needs K=V"),
    (["--property", "priority=10"], "priority: must be an integer 0-9"),
    (["--property", "priority=1", "--property", "priority=2"],
     "priority is given twice"),
    (["--property", "delivery_mode=3"], "must be 1, 2, transient or"),
    (["--property", "expiration=soon"], "--property expiration:"),
    (["--property", "timestamp=-1"], "timestamp: must be Unix seconds"),
    (["--property", "message_id="], "message_id: must be 1-255 bytes"),
    (["--property", "type=" + "t" * 256], "type: is longer than 255"),
    (["--property", "reply_to=amq.rabbitmq.reply-to"], "reply_to:"),
    (["--property", "correlation_id=a\x01b"], "correlation_id:"),
    (["--header", "x-death=1"], "--header 'x-death':"),
    (["--header", "CC=a"], "--header 'CC':"),
    (["--header", "a b=1"], "--header 'a b':"),
    (["--header", "Tenant=a", "--header", "tenant=b"], "is given twice"),
    (["--header", "novalue"], "--header needs K=V"),
])
def test_send_refuses_bad_arguments_before_connecting(zmqctl, args, why):
    r = zmqctl("send", "--exchange", "", "--routing-key", "q", *args,
               "out", "-", input="x", check=2)
    assert why in r.stderr, r.stderr


def test_send_needs_exchange_and_routing_key(zmqctl):
    r = zmqctl("send", "--routing-key", "q", "out", "-", check=2)
    assert "send needs --exchange and --routing-key" in r.stderr
    r = zmqctl("send", "--exchange", "", "out", "-", check=2)
    assert "send needs --exchange and --routing-key" in r.stderr
    r = zmqctl("send", "--exchange", "", "--routing-key",
               "amq.rabbitmq.reply-to.x", "out", "-", check=2)
    assert "--routing-key" in r.stderr
    r = zmqctl("list", "--mandatory", check=2)
    assert "apply to send" in r.stderr


def test_send_of_a_silent_broker_ends_at_the_timeout(zmqctl, write_json,
                                                     silent_listener):
    zmqctl("import", write_json("c.json", broker_config(silent_listener)),
           check=0)
    start = time.monotonic()
    r = zmqctl("send", "--timeout", "700", "--exchange", "",
               "--routing-key", "q", "out", "-", input="x", check=1)
    assert time.monotonic() - start < 2.7
    assert r.stdout == ("failed: 127.0.0.1:%d: no answer within 700 ms\n"
                        % silent_listener)


def test_send_through_an_inactive_or_missing_outconn_is_refused(
        zmqctl, rabbitmq, write_json):
    zmqctl("import", write_json("c.json", broker_config(
        rabbitmq.port, outconn={"is_active": False})), check=0)
    r = zmqctl("send", "--exchange", "", "--routing-key", "q", "out", "-",
               input="x", check=1)
    assert "amqp_outconn 'out' is inactive" in r.stderr
    r = zmqctl("send", "--exchange", "", "--routing-key", "q", "nope", "-",
               input="x", check=1)
    assert "amqp_outconn 'nope' does not exist" in r.stderr
    r = zmqctl("send", "--exchange", "", "--routing-key", "q", "out",
               "/nonexistent/body", check=1)
    assert "/nonexistent/body: No such file or directory" in r.stderr


# ------------------------------------------- a fake broker: slow or stalled

@pytest.fixture
def fake_broker():
    from fake_amqp import FakeAmqp
    made = []

    def make(**kw):
        f = FakeAmqp(**kw)
        made.append(f)
        return f
    yield make
    for f in made:
        f.close()


def test_ping_reads_frames_that_come_one_byte_at_a_time(zmqctl, write_json,
                                                        fake_broker):
    fake = fake_broker(trickle=True)
    zmqctl("import", write_json("c.json", broker_config(fake.port)), check=0)
    r = zmqctl("ping", "amqp_def", "rabbit", check=0)
    assert re.match(r"^ok \d+\.\d ms, fake \(unknown version\)\n$",
                    r.stdout), r.stdout


def test_send_without_a_confirm_ends_at_the_timeout(zmqctl, write_json,
                                                    fake_broker):
    fake = fake_broker(never_ack=True)
    zmqctl("import", write_json("c.json", broker_config(fake.port)), check=0)
    start = time.monotonic()
    r = zmqctl("send", "--timeout", "700", "--exchange", "",
               "--routing-key", "q", "out", "-", input="x", check=1)
    assert time.monotonic() - start < 2.7
    assert r.stdout == ("failed: no confirm within 700 ms (the message may "
                        "still be delivered)\n")
    assert len(fake.published) == 1


def test_send_to_a_broker_that_stops_reading_ends_at_the_timeout(
        zmqctl, write_json, fake_broker, tmp_path):
    # rabbitmq-c's own sends have no deadline: the watchdog ends this one
    fake = fake_broker(stall=True, frame_max=131072)
    zmqctl("import", write_json("c.json", broker_config(fake.port)), check=0)
    body = tmp_path / "big.bin"
    with open(str(body), "wb") as f:
        f.truncate(64 << 20)
    start = time.monotonic()
    r = zmqctl("send", "--timeout", "1000", "--exchange", "",
               "--routing-key", "q", "out", str(body), check=1)
    assert time.monotonic() - start < 4.0
    assert r.stdout == ("failed: the broker read nothing of the message for "
                        "1000 ms (is it blocking publishers? a memory or "
                        "disk alarm)\n")


@pytest.mark.parametrize("command,words", [
    ("ping", "--timeout MS"), ("passwd", "Never from the command"),
    ("send", "--property K=V")])
def test_the_new_commands_have_help_and_usage(zmqctl, command, words):
    r = zmqctl(command, "--help", check=0)
    assert r.stdout.startswith("usage: zmqctl [--redis URL] [--key-file "
                               "PATH] %s " % command)
    assert words in r.stdout
    assert ("\n  %s " % command) in zmqctl("--help", check=0).stdout
