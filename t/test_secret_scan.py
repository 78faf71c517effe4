"""Secrets stay secret, and Redis URLs are read as URLs (issue 10, defects 2
and 10).

A Redis whose ACL user has a password with '/', '@', ':' and '%' in it:
zmqctl, zmqd and NGINX all connect with redis://user:password@host/db, in
the URL forms an operator writes (raw or percent-encoded). Then one
representative scenario -- zmqctl import/export/get/list/version, NGINX
following the store and publishing, zmqd consuming into Redis and an HTTP
endpoint, dead letters from failing services -- with distinctive test
passwords, and a scan of every output, log file, status answer, stored
value and dead letter: none of the passwords appears anywhere.

assert_no_secrets() is the scan; other tests can call it on their outputs:

    from test_secret_scan import assert_no_secrets
    assert_no_secrets({"zmqctl export": r.stdout, "log": path}, [pw])
"""

import http.server
import json
import os
import pathlib
import signal
import subprocess
import threading
import time
import urllib.parse
import uuid

import pika
import pytest
import requests

import conftest
from conftest import (BUILD, REDIS_SERVER, Nginx, Zmqctl, check_no_secrets,
                      find_secrets, free_port, register_secret, scan_exclude,
                      stop_pid, wait_port)

ZMQD = os.path.join(BUILD, "zmqd")

# Every test password contains MARK: a leak of any part of one that holds
# MARK is found whatever encoding the rest is in (MARK is letters and
# digits, the same percent-encoded or not).
MARK = "Lk9Qx"
ACL_USER = "zmq-app"
ACL_PW = MARK + "/acl@us%er:" + MARK          # '/', '@', '%', ':'
DEFAULT_PW = MARK + "-default/p@ss%"
WRONG_PW = MARK + "-wrong"
AMQP_USER = "zmqscan"
AMQP_PW = MARK + "-amqp"
HTTP_PW = MARK + "-http"
SIMPLE_PW = MARK + "simple"                   # any parser reads this one
SECRETS = [ACL_PW, DEFAULT_PW, WRONG_PW, AMQP_PW, HTTP_PW, SIMPLE_PW]


# ------------------------------------------------------------ the scan

def _variants(secret):
    """The forms a secret may leak in: as it is, percent-encoded (as in a
    URL), JSON-escaped, and each part of it long enough to be telling."""
    out = {secret, urllib.parse.quote(secret, safe=""),
           urllib.parse.quote(secret), json.dumps(secret)[1:-1],
           secret.replace("%", "%25")}
    return {v for v in out if v}


def _text(value):
    """Any output as text: str, bytes, a JSON-able object, a file or a
    directory (every file under it), or pika's (method, properties, body)."""
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, str):
        return value
    if isinstance(value, pathlib.Path):
        if value.is_dir():
            return "\n".join(_text(p) for p in sorted(value.rglob("*"))
                             if p.is_file())
        return value.read_bytes().decode("utf-8", "replace")
    if isinstance(value, pika.spec.BasicProperties):
        return repr(value) + json.dumps(value.headers or {}, default=str)
    if isinstance(value, (list, tuple)):
        return "\n".join(_text(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, default=_text)
    return repr(value)


def assert_no_secrets(outputs, secrets=SECRETS, markers=(MARK,)):
    """Fails naming every output (name -> value, see _text) that holds a
    secret, in any of its forms, or a marker that every secret carries.
    Returns how many characters were scanned (so a caller can check it
    scanned something)."""
    found = []
    scanned = 0
    needles = set(markers)
    for s in secrets:
        needles |= _variants(s)
    for name, value in outputs.items():
        text = _text(value)
        scanned += len(text)
        for needle in needles:
            i = text.find(needle)
            if i >= 0:
                found.append("%s: ...%s..." % (
                    name, text[max(0, i - 60):i + len(needle) + 20]))
    assert not found, "secrets leaked:\n" + "\n".join(found)
    return scanned


def test_the_scan_finds_secrets_in_every_form(tmp_path):
    """The scan itself: it must find what it is meant to find."""
    f = tmp_path / "log"
    f.write_text("start\nredis://u:%s@h/0\n" % urllib.parse.quote(ACL_PW))
    scan_exclude(f)             # it leaks on purpose
    for leak in ({"out": "x " + ACL_PW}, {"file": f}, {"dir": tmp_path},
                 {"json": {"a": [HTTP_PW]}}, {"bytes": AMQP_PW.encode()},
                 {"cut": ACL_PW[:8]}, {"quoted": json.dumps(DEFAULT_PW)}):
        with pytest.raises(AssertionError):
            assert_no_secrets(leak)
    assert assert_no_secrets({"clean": "redis://u:***@h/0"}) > 0


# --------------------------------------------------------------- servers

class AclRedis:
    """A redis-server whose default user needs DEFAULT_PW and whose ACL
    user ACL_USER needs ACL_PW."""

    def __init__(self, tmp):
        if not os.access(REDIS_SERVER, os.X_OK):
            pytest.skip("redis-server is not installed")
        self.dir = tmp
        self.port = free_port()
        self.log = os.path.join(tmp, "redis.log")
        self.proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", tmp,
             "--logfile", self.log],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port, 10, self.proc)
        import redis
        register_secret(ACL_PW)
        register_secret(DEFAULT_PW)
        r = redis.Redis(host="127.0.0.1", port=self.port)
        r.execute_command("ACL", "SETUSER", ACL_USER, "on", ">" + ACL_PW,
                          "~*", "&*", "+@all")
        r.execute_command("CONFIG", "SET", "requirepass", DEFAULT_PW)

    def client(self, db=0):
        import redis
        return redis.Redis(host="127.0.0.1", port=self.port, db=db,
                           username=ACL_USER, password=ACL_PW)

    def url(self, db, form="raw"):
        """The ACL user's URL as an operator may write it: 'raw' (only the
        '%' escaped, '/', '@' and ':' as they are) or 'encoded' (every
        reserved character percent-encoded)."""
        if form == "raw":
            pw = ACL_PW.replace("%", "%25")
        else:
            pw = urllib.parse.quote(ACL_PW, safe="")
        return "redis://%s:%s@127.0.0.1:%d/%d" % (ACL_USER, pw, self.port,
                                                  db)

    def default_url(self, db):
        return "redis://:%s@127.0.0.1:%d/%d" % (
            urllib.parse.quote(DEFAULT_PW, safe=""), self.port, db)

    def shown(self, db):
        return "redis://%s:***@127.0.0.1:%d/%d" % (ACL_USER, self.port, db)

    def stop(self):
        stop_pid(self.proc)


@pytest.fixture
def acl_redis(tmp_path):
    d = tmp_path / "acl-redis"
    d.mkdir()
    server = AclRedis(str(d))
    yield server
    server.stop()


def ctl_for(url, key):
    return Zmqctl(url, key)


# ------------------------------------------------------ URLs that work

@pytest.mark.parametrize("form", ["raw", "encoded", "default user"])
def test_zmqctl_and_zmqd_connect_with_such_a_password(acl_redis, tmp_path,
                                                      write_json, form):
    url = (acl_redis.default_url(4) if form == "default user"
           else acl_redis.url(4, form))
    ctl = ctl_for(url, str(tmp_path / "k.key"))
    ctl("keygen", check=0)
    doc = {"amqp_def": [{"name": "rabbit", "password": "guest"}]}
    r = ctl("import", write_json("a.json", doc), check=0)
    assert "version 1" in r.stdout

    # in database 4, as the URL says
    assert acl_redis.client(4).get("zmq:version") == b"1"
    assert acl_redis.client(0).get("zmq:version") is None

    r = ctl("version", check=0)
    shown = ("redis://:***@127.0.0.1:%d/4" % acl_redis.port
             if form == "default user" else acl_redis.shown(4))
    assert "configuration version 1 at %s" % shown in r.stdout

    r = subprocess.run([ZMQD, "--config", url, "--check"], env=ctl.env,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "%s: valid (1 objects, 0 channel(s))\n" % shown
    assert_no_secrets({"zmqctl": [r.stdout, r.stderr]})


def test_a_wrong_password_is_an_error_that_does_not_show_it(acl_redis,
                                                            tmp_path):
    url = "redis://%s:%s@127.0.0.1:%d/4" % (ACL_USER, WRONG_PW,
                                            acl_redis.port)
    ctl = ctl_for(url, str(tmp_path / "k.key"))
    ctl("keygen", check=0)
    r = ctl("list", check=1)
    assert "redis redis://%s:***@127.0.0.1:%d/4: AUTH: WRONGPASS" % (
        ACL_USER, acl_redis.port) in r.stderr
    r2 = subprocess.run([ZMQD, "--config", url, "--check"], env=ctl.env,
                        capture_output=True, text=True, timeout=30)
    assert r2.returncode == 1 and "WRONGPASS" in r2.stderr
    assert_no_secrets({"zmqctl list": [r.stdout, r.stderr],
                       "zmqd --check": [r2.stdout, r2.stderr]})


def test_nginx_t_does_not_show_the_password_of_a_bad_url(tmp_path):
    if os.environ.get("ZMQ_SKIP_NGINX"):
        pytest.skip("ZMQ_SKIP_NGINX is set")
    out = {}
    for name, url in [("port", "redis://u:%s@127.0.0.1:0/0" % AMQP_PW),
                      ("db", "redis://:%s@127.0.0.1/x" % AMQP_PW),
                      ("scheme", "rediss://u:%s@h" % AMQP_PW)]:
        d = tmp_path / name
        d.mkdir()
        rc, text = Nginx(str(d), http="zmq_config %s;" % url).test_config()
        assert rc != 0 and "zmq_config" in text, text
        out[name] = text
    assert "redis://u:***@127.0.0.1:0/0': host '127.0.0.1:0': port 0" \
        in out["port"]
    assert "the database must be a number" in out["db"]
    assert "rediss://u:***@h" in out["scheme"]
    assert_no_secrets(out)


def test_status_version_and_start_up_lines_hide_the_password(acl_redis,
                                                              tmp_path,
                                                              write_json):
    """The leaks the issue lists, with a password every parser reads:
    zmq_status 'source', zmqd's start-up line, 'zmqctl version', errors."""
    acl_redis.client().execute_command("CONFIG", "SET", "requirepass",
                                       SIMPLE_PW)
    url = "redis://:%s@127.0.0.1:%d/0" % (SIMPLE_PW, acl_redis.port)
    shown = "redis://:***@127.0.0.1:%d/0" % acl_redis.port
    out = {}
    ctl = ctl_for(url, str(tmp_path / "k.key"))
    ctl("keygen", check=0)
    r = ctl("import", write_json("a.json", {"amqp_def": [
        {"name": "rabbit", "password": "guest"}]}), check=0)
    out["zmqctl import"] = [r.stdout, r.stderr]
    r = ctl("version", check=0)
    out["zmqctl version"] = [r.stdout, r.stderr]
    assert "at %s" % shown in r.stdout

    log = tmp_path / "zmqd.log"
    with open(log, "w") as f:
        z = subprocess.Popen([ZMQD, "--config", url], env=ctl.env,
                             stdout=f, stderr=f)
    wait_for(lambda: "started" in log.read_text() or z.poll() is not None)
    z.send_signal(signal.SIGTERM)
    assert z.wait(30) == 0, log.read_text()
    out["zmqd log"] = log
    assert "from %s" % shown in log.read_text()

    if not os.environ.get("ZMQ_SKIP_NGINX"):
        d = tmp_path / "ngx"
        d.mkdir()
        ngx = Nginx(str(d), http="zmq_config %s;" % url,
                    server="location = /zmq/status { zmq_status; }\n")
        ngx.start()
        try:
            status = requests.get(ngx.url + "/zmq/status", timeout=5).json()
        finally:
            ngx.stop()
        out["zmq_status"] = status
        out["nginx error.log"] = ngx.error_log()
        assert status["config"]["source"] == shown

    assert_no_secrets(out)


# ------------------------------------------------------------ scenario

class Endpoint(http.server.BaseHTTPRequestHandler):
    """Records each request's Authorization; always answers 500."""

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.auth.append(self.headers.get("Authorization"))
        self.send_response(500)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def endpoint():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Endpoint)
    server.auth = []
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def amqp_user(rabbitmq):
    """A broker user with a distinctive password."""
    register_secret(AMQP_PW)
    r = rabbitmq.ctl("add_user", AMQP_USER, AMQP_PW)
    assert r.returncode == 0, r.stderr
    r = rabbitmq.ctl("set_permissions", "-p", "/", AMQP_USER, ".*", ".*",
                     ".*")
    assert r.returncode == 0, r.stderr
    yield AMQP_USER
    rabbitmq.ctl("delete_user", AMQP_USER)


def wait_for(what, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not what():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_no_password_appears_in_any_output(acl_redis, rabbitmq, amqp_user,
                                           endpoint, tmp_path, write_json):
    if os.environ.get("ZMQ_SKIP_NGINX"):
        pytest.skip("ZMQ_SKIP_NGINX is set")
    out = {}
    tag = uuid.uuid4().hex[:8]
    q = {k: "scan.%s.%s" % (tag, k) for k in ("ok", "auth", "http", "dflt")}
    conn = rabbitmq.connection()
    ch = conn.channel()
    for name in q.values():
        ch.queue_declare(name, durable=True)
        ch.queue_declare(name + ".dead", durable=True)

    store_url = acl_redis.url(2)
    key = str(tmp_path / "secret.key")
    ctl = ctl_for(store_url, key)
    r = ctl("keygen", check=0)
    out["zmqctl keygen"] = [r.stdout, r.stderr]

    hook = "http://127.0.0.1:%d/hook" % endpoint.server_address[1]
    retry = {"attempts": 1, "initial_delay": 50, "multiplier": 1,
             "max_delay": 50}
    redis3 = "redis://%s@127.0.0.1:%d/3" % (ACL_USER, acl_redis.port)
    doc = {
        "amqp_def": [{"name": "rabbit", "host": "127.0.0.1",
                      "port": rabbitmq.port, "username": AMQP_USER,
                      "password": AMQP_PW, "heartbeat": 10}],
        "amqp_outconn": [{"name": "out", "def": "rabbit"}],
        "http_outconn": [{"name": "web", "url": hook, "tls": False,
                          "security": "hook-auth"}],
        "security": [{"name": "hook-auth", "type": "basic_auth",
                      "direction": "out", "username": "hook",
                      "password": HTTP_PW}],
        "service": [
            {"name": "pub.ok", "kind": "publish", "outconn": "out",
             "routing_key": q["ok"]},
            {"name": "pub.auth", "kind": "publish", "outconn": "out",
             "routing_key": q["auth"]},
            # an ACL user in the url, its password sealed
            {"name": "to-list", "kind": "redis", "url": redis3,
             "password": ACL_PW, "key": "scan:list"},
            # the same user with a wrong password: AUTH fails
            {"name": "bad-auth", "kind": "redis", "url": redis3,
             "password": WRONG_PW, "key": "scan:never"},
            # no url: zmqd's own configuration Redis and its credentials
            {"name": "to-default", "kind": "redis", "key": "scan:dflt"},
            {"name": "hook", "kind": "http", "outconn": "web"},
        ],
        "amqp_channel": [
            {"name": "c.ok", "def": "rabbit", "queue": q["ok"],
             "service": "to-list", "retry": retry},
            {"name": "c.auth", "def": "rabbit", "queue": q["auth"],
             "service": "bad-auth", "retry": retry},
            {"name": "c.http", "def": "rabbit", "queue": q["http"],
             "service": "hook", "retry": retry},
            {"name": "c.dflt", "def": "rabbit", "queue": q["dflt"],
             "service": "to-default", "retry": retry},
        ],
    }
    path = write_json("scan.json", doc)
    out["config file"] = "(not scanned: it holds the passwords)"

    r = ctl("import", "--check", path, check=0)
    out["zmqctl import --check"] = [r.stdout, r.stderr]
    r = ctl("import", path, check=0)
    out["zmqctl import"] = [r.stdout, r.stderr]
    r = ctl("export", check=0)
    out["zmqctl export"] = [r.stdout, r.stderr]
    exported = json.loads(r.stdout)
    r = ctl("list", check=0)
    out["zmqctl list"] = [r.stdout, r.stderr]
    for kind, objs in exported.items():
        for obj in objs:
            r = ctl("get", kind, obj["name"], check=0)
            out["zmqctl get %s %s" % (kind, obj["name"])] = [r.stdout,
                                                             r.stderr]
    r = ctl("version", check=0)
    out["zmqctl version"] = [r.stdout, r.stderr]
    assert acl_redis.shown(2) in r.stdout

    # export -> import round-trips without the secrets
    r = ctl("import", write_json("exported.json", exported), check=0)
    assert "0 changed" in r.stdout
    out["zmqctl import (export)"] = [r.stdout, r.stderr]

    # what Redis holds: every key, raw
    raw = {}
    for db in (2,):
        c = acl_redis.client(db)
        for k in c.keys("*"):
            if c.type(k) == b"string":
                raw["db%d %s" % (db, k.decode())] = c.get(k)
    assert len(raw) > 10
    out["redis values"] = raw

    # zmqd, following the store through the ACL user
    zlog = tmp_path / "zmqd.log"
    with open(zlog, "w") as f:
        z = subprocess.Popen([ZMQD, "--config", store_url, "--key-file", key,
                              "--verbose"], env=ctl.env, stdout=f, stderr=f)
    try:
        r = subprocess.run([ZMQD, "--config", store_url, "--key-file", key,
                            "--check"], env=ctl.env, capture_output=True,
                           text=True, timeout=30)
        out["zmqd --check"] = [r.stdout, r.stderr]
        assert r.returncode == 0, r.stderr

        # NGINX, following the same store, publishing with the sealed
        # broker password
        ngx_dir = tmp_path / "nginx"
        ngx_dir.mkdir()
        cache = tmp_path / "cache"
        cache.mkdir()
        os.chmod(cache, 0o777)
        ngx = Nginx(str(ngx_dir),
                    http="zmq_key_file %s;\nzmq_config %s;\n"
                         "zmq_config_cache %s;\nzmq_config_poll 500ms;"
                         % (key, store_url, cache),
                    server="location = /zmq/status { zmq_status; }\n"
                           "location = /ok { zmq_service pub.ok; }\n"
                           "location = /auth { zmq_service pub.auth; }\n")
        ngx.start()
        try:
            version = int(acl_redis.client(2).get("zmq:version"))

            def ready():
                st = requests.get(ngx.url + "/zmq/status", timeout=5).json()
                return all(w["config_version"] == version
                           and w["outconns"].get("out", {}).get("state")
                           == "ready" for w in st["workers"])
            wait_for(ready)
            status = requests.get(ngx.url + "/zmq/status", timeout=5).json()
            out["zmq_status"] = status
            assert status["config"]["source"] == acl_redis.shown(2)

            for i in range(3):
                assert requests.post(ngx.url + "/ok", data=b"ok%d" % i,
                                     timeout=10).status_code == 202
                assert requests.post(ngx.url + "/auth", data=b"auth%d" % i,
                                     timeout=10).status_code == 202
            ch.confirm_delivery()
            for i in range(3):
                ch.basic_publish("", q["http"], b"http%d" % i,
                                 pika.BasicProperties(delivery_mode=2))
                ch.basic_publish("", q["dflt"], b"dflt%d" % i,
                                 pika.BasicProperties(delivery_mode=2))

            # the services ran: into db 3 as the ACL user, into db 2 through
            # zmqd's own URL, to the endpoint with the sealed basic password
            wait_for(lambda: acl_redis.client(3).llen("scan:list") == 3)
            wait_for(lambda: acl_redis.client(2).llen("scan:dflt") == 3)
            wait_for(lambda: len(endpoint.auth) >= 3)
            assert endpoint.auth[0] == "Basic " + __import__("base64") \
                .b64encode(("hook:" + HTTP_PW).encode()).decode()

            # dead letters, read with pika
            dead = {}
            for k in ("auth", "http"):
                got = []

                def drained():
                    m, p, body = ch.basic_get(q[k] + ".dead", auto_ack=True)
                    if m is not None:
                        got.append((p, body))
                    return len(got) == 3
                wait_for(drained)
                dead[k] = got
            out["dead letters"] = [[p, b] for k in dead for p, b in dead[k]]
            errors = {k: {p.headers["x-zmq-error"] for p, _ in v}
                      for k, v in dead.items()}
            assert all("AUTH failed" in e and "WRONGPASS" in e
                       for e in errors["auth"]), errors
            assert all("redis 127.0.0.1:%d/3" % acl_redis.port in e
                       for e in errors["auth"]), errors
            assert all("http %s: status 500" % hook in e
                       for e in errors["http"]), errors

            # a zmqctl that cannot authenticate
            bad = ctl_for(store_url.replace(ACL_PW.replace("%", "%25"),
                                            WRONG_PW), key)
            r = bad("list", check=1)
            out["zmqctl wrong password"] = [r.stdout, r.stderr]
            assert "redis %s: AUTH: WRONGPASS" % acl_redis.shown(2) \
                in r.stderr
        finally:
            ngx.stop()
        out["nginx error.log"] = pathlib.Path(ngx_dir / "error.log")
        out["nginx cache"] = cache
        assert "[alert]" not in ngx.error_log()
        assert "zmq redis" in ngx.error_log()      # it logged connecting
    finally:
        z.send_signal(signal.SIGTERM)
        z.wait(30)

    out["zmqd log"] = zlog
    zmqd_log = zlog.read_text()
    assert "from %s" % acl_redis.shown(2) in zmqd_log
    assert "dead-lettered" in zmqd_log
    out["redis-server log"] = pathlib.Path(acl_redis.log)

    for name in q.values():
        ch.queue_delete(name)
        ch.queue_delete(name + ".dead")
    conn.close()

    assert assert_no_secrets(out) > 10000


# ---------------------------------------------- the suite-wide scan itself

def test_the_suite_wide_scan_catches_a_leak_in_an_access_log(nginx_factory,
                                                             tmp_path):
    """conftest's teardown scan (every test runs it): a registered secret
    that a request URI puts into an access log is found, with the file and
    line; so is one in an HTTP answer, a zmqctl output and a message read
    from RabbitMQ. The leaks are removed before teardown: this test passes,
    proving check_no_secrets() would have failed it."""
    import sys
    assert sys.modules["conftest"] is conftest   # one registry, not two
    secret = MARK + "-leak/p@ss:" + uuid.uuid4().hex[:6]
    register_secret(secret)
    assert secret in conftest.SECRETS
    assert find_secrets(tmp_path) == []
    ngx = nginx_factory(server="access_log access.log;\n"
                               "location / { return 204; }\n")
    ngx.start()
    try:
        for i in range(2):
            r = requests.get(ngx.url + "/x%d?pw=%s"
                             % (i, urllib.parse.quote(secret, safe="")),
                             timeout=5)
            assert r.status_code == 204
    finally:
        ngx.stop()
    access = os.path.join(ngx.dir, "access.log")
    with pytest.raises(AssertionError) as e:
        check_no_secrets(tmp_path)
    msg = str(e.value)
    assert "test passwords leaked" in msg
    assert "%s:1: " % access in msg and "%s:2: " % access in msg, msg
    assert "GET /x1?pw=" in msg
    assert msg.count("\n") == 2, msg     # the two lines, nothing else
    os.unlink(access)                    # the leak on purpose goes
    check_no_secrets(tmp_path)

    # what the fixtures capture is scanned as well
    conftest.record_output("zmqctl get amqp_def x", '{"password": "%s"}'
                           % secret)
    found = find_secrets(None)
    assert found == ['zmqctl get amqp_def x:1: {"password": "%s"}' % secret]
    del conftest._OUTPUTS[:]
    check_no_secrets(tmp_path)


def test_the_scan_reads_http_answers_and_dead_letters(rabbitmq, queue):
    """Answers read with requests and messages read with basic_get (dead
    letters) are recorded for the teardown scan."""
    secret = MARK + "-dead-" + uuid.uuid4().hex[:6]
    register_secret(secret)
    queue.channel.basic_publish("", queue.name, b"x",
                                pika.BasicProperties(headers={
                                    "x-zmq-error": "AUTH " + secret}))
    assert len(queue.drain(expect=1)) == 1
    found = find_secrets(None)
    assert len(found) == 1 and found[0].startswith(
        "message from %s:1: " % queue.name), found
    del conftest._OUTPUTS[:]

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        requests.get("http://127.0.0.1:%d/%s" % (server.server_address[1],
                                                  secret), timeout=5)
    finally:
        server.shutdown()
        server.server_close()
    found = find_secrets(None)
    assert len(found) == 1 and found[0].startswith("HTTP answer to GET"), \
        found
    del conftest._OUTPUTS[:]


class Echo(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"source": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass
