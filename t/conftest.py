"""Fixtures for ngx_zmq integration tests.

Every server is real (Debian's redis-server, rabbitmq-server, nginx), bound to
127.0.0.1 on a free port, with its files in a temporary directory, and is
stopped by its PID when the test (or the session) is over. A test is skipped,
not failed, when a daemon is not installed.

A test fails when a process it started misbehaved, even if every assertion
of the test held: an nginx error log line at [alert] or worse, an nginx
worker (or cache process) that exited on a signal or with a code other than
0, an nginx master that did not exit cleanly, and any sanitizer report
(ASan, UBSan, LSan) from any process the test started (nginx, zmqd,
zmqctl). Sanitizer reports go to files in a directory every user can write:
under "make test" as root, NGINX workers run as "nobody" and could not
write into the test's own 0700 directory, so their reports would be lost.
"""

import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.abspath(os.environ.get("ZMQ_BUILD",
                                      os.path.join(ROOT, "build")))
MODULE = os.environ.get("ZMQ_MODULE",
                        os.path.join(BUILD, "ngx_http_zmq_module.so"))
# a module built with -fsanitize=address loads into Debian's nginx with the
# ASan runtime preloaded (make asan-nginx); reports go to files, see
# "Sanitizers" below
ASAN_PRELOAD = os.environ.get("ZMQ_ASAN_PRELOAD")
ZMQCTL = os.path.join(BUILD, "zmqctl")
NGINX = shutil.which("nginx", path="/usr/sbin:/usr/bin") or "/usr/sbin/nginx"
REDIS_SERVER = "/usr/bin/redis-server"
RABBITMQ_SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"
RABBITMQCTL = "/usr/lib/rabbitmq/bin/rabbitmqctl"
EPMD = shutil.which("epmd") or "/usr/bin/epmd"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=30.0, proc=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("process exited with %s" % proc.returncode)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError("port %d did not open in %.0fs" % (port, timeout))


def stop_pid(proc, sig=signal.SIGTERM, timeout=20.0):
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


# ---------------------------------------------------------------- Sanitizers

SANITIZER_VARS = ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS")


def open_to_workers(path):
    """NGINX workers run unprivileged when the master is root: let them
    through every directory from path up to /tmp."""
    p = os.path.abspath(path)
    while p not in ("/", "/tmp"):
        os.chmod(p, os.stat(p).st_mode | 0o011)
        p = os.path.dirname(p)


def sanitizer_dir(parent):
    """A directory for sanitizer reports that any process of the test can
    write, whatever its user: parent/sanitizer, mode 1777."""
    d = os.path.join(parent, "sanitizer")
    os.makedirs(d, exist_ok=True)
    os.chmod(d, 0o1777)
    open_to_workers(parent)
    return d


def sanitizer_options(directory, extra="", base=None):
    """Environment values that send every sanitizer's reports to files
    directory/report.<pid> (ASan, UBSan and LSan share the log_path) and
    make UBSan print a stack. base: the environment whose options come first
    (later options win)."""
    base = os.environ if base is None else base
    log = "log_path=%s/report" % directory
    ours = {
        "ASAN_OPTIONS": log + ":" + extra if extra else log,
        "UBSAN_OPTIONS": log + ":print_stacktrace=1",
        "LSAN_OPTIONS": log,
    }
    out = {}
    for var in SANITIZER_VARS:
        prev = base.get(var, "")
        out[var] = prev + ":" + ours[var] if prev else ours[var]
    return out


def sanitizer_reports(directory):
    """The text of every report in directory."""
    out = []
    if not os.path.isdir(directory):
        return out
    for name in sorted(os.listdir(directory)):
        with open(os.path.join(directory, name), errors="replace") as f:
            text = f.read()
        if text.strip():
            out.append("%s:\n%s" % (name, text))
    return out


@pytest.fixture(autouse=True)
def sanitizer_check(tmp_path, monkeypatch):
    """Every process a test starts writes its sanitizer reports into this
    test's report directory; any report fails the test (at teardown, after
    the other fixtures have stopped their processes)."""
    d = sanitizer_dir(str(tmp_path))
    for var, value in sanitizer_options(d).items():
        monkeypatch.setenv(var, value)
    yield d
    reports = sanitizer_reports(d)
    assert not reports, "sanitizer report(s):\n" + "\n".join(reports)


# ------------------------------------------------------------- Secret scan
#
# Every password a test gives the system is registered here (the fixtures do
# it for what they write, import or start with: "password" and "secret"
# fields, a security definition's "key", the password of a Redis URL; other
# tests call register_secret()). At each test's teardown, after every other
# fixture has stopped its processes, everything the test produced is scanned
# for every registered secret, in the forms it could leak in: every file
# under the test's tmp_path (nginx error and access logs, zmqd logs, the
# disk cache, sanitizer reports, exports), every zmqctl output and nginx -t
# output the fixtures captured, every HTTP answer read with requests (status
# answers, error JSON) and every message read from RabbitMQ with pika's
# basic_get (dead letters). A secret found fails the test with where and
# line. Not scanned: the files the test wrote as input (a JSON file given to
# zmqctl import/restore, a zmq_config file:, write_json files, nginx.conf)
# and paths given to scan_exclude(). Not secrets: NOT_SECRET (RabbitMQ's
# default "guest") and strings shorter than MIN_SECRET_LEN, which would
# match everywhere.

NOT_SECRET = {"guest"}
MIN_SECRET_LEN = 6
SECRETS = set()             # session-wide: every test password so far
INPUT_PATHS = set()         # files a test wrote as input: not scanned
_OUTPUTS = []               # (name, text) this test's captured outputs
SECRET_FIELDS = ("password", "secret")
URL_USERINFO = re.compile(r"\b[a-z][a-z0-9+.-]*://([^/?#\s\"']*)@")


def register_secret(secret):
    """A test password: no output of the test may hold it."""
    if isinstance(secret, bytes):
        secret = secret.decode("utf-8", "replace")
    if not isinstance(secret, str) or secret in NOT_SECRET \
            or len(secret) < MIN_SECRET_LEN:
        return
    SECRETS.add(secret)


def register_url_secret(url):
    """The password of every URL in a string (scheme://user:pw@host),
    as written and percent-decoded."""
    import urllib.parse
    if not isinstance(url, str):
        return
    for m in URL_USERINFO.finditer(url):
        info = m.group(1)
        if ":" in info:
            pw = info.split(":", 1)[1]
            register_secret(pw)
            register_secret(urllib.parse.unquote(pw))


def register_config_secrets(doc):
    """Every secret of a configuration (a dict, a JSON text or a JSON
    file's path): "password"/"secret" fields, a security object's "key",
    and URL passwords."""
    if isinstance(doc, bytes):
        doc = doc.decode("utf-8", "replace")
    if isinstance(doc, str):
        try:
            doc = json.loads(doc)
        except ValueError:
            register_url_secret(doc)
            return
    if isinstance(doc, dict):
        for k, v in doc.items():
            if k in SECRET_FIELDS and isinstance(v, str):
                register_secret(v)
            elif k == "security" and isinstance(v, list):
                for s in v:
                    if isinstance(s, dict) and isinstance(s.get("key"), str):
                        register_secret(s["key"])
                register_config_secrets(v)
            else:
                register_config_secrets(v)
    elif isinstance(doc, list):
        for v in doc:
            register_config_secrets(v)


def register_input_file(path):
    """A file the test wrote as input (it may hold passwords in clear):
    register its secrets, and do not scan it."""
    path = os.path.abspath(str(path))
    INPUT_PATHS.add(path)
    try:
        with open(path, "rb") as f:
            register_config_secrets(f.read())
    except OSError:
        pass


def scan_exclude(path):
    """Narrowly: a file that the test itself wrote a secret into."""
    INPUT_PATHS.add(os.path.abspath(str(path)))


def record_output(name, value):
    """An output the scan reads at this test's teardown."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    elif not isinstance(value, str):
        value = json.dumps(value, default=repr)
    _OUTPUTS.append((name, value))


def secret_needles(secrets):
    """Each secret in the forms it may leak in: as it is, percent-encoded
    (as in a URL), JSON-escaped."""
    import urllib.parse
    out = {}
    for s in secrets:
        for v in (s, urllib.parse.quote(s, safe=""), urllib.parse.quote(s),
                  json.dumps(s)[1:-1], s.replace("%", "%25")):
            if v:
                out[v] = s
    return out


def _find(name, text, needles):
    """Each line of text that holds a needle, once."""
    found = []
    lines = set()
    for needle in needles:
        i = text.find(needle)
        while i >= 0:
            line = text.count("\n", 0, i) + 1
            if line in lines:
                i = text.find(needle, i + 1)
                continue
            lines.add(line)
            start = text.rfind("\n", 0, i) + 1
            end = text.find("\n", i)
            ctx = text[start:end if end >= 0 else len(text)]
            if len(ctx) > 200:
                ctx = ctx[max(0, i - start - 80):i - start + 120]
            found.append((line, "%s:%d: %s" % (name, line, ctx)))
            i = text.find(needle, i + 1)
    return [f for _, f in sorted(found)]


def find_secrets(directory=None, outputs=None, secrets=None):
    """Where a registered secret appears: in a file under directory (but
    INPUT_PATHS), or in outputs (a list of (name, text)). A list of
    "file:line: text of the line"."""
    needles = secret_needles(SECRETS if secrets is None else secrets)
    if not needles:
        return []
    found = []
    if directory is not None:
        for root, dirs, files in os.walk(str(directory)):
            dirs.sort()
            for fname in sorted(files):
                path = os.path.join(root, fname)
                if os.path.abspath(path) in INPUT_PATHS \
                        or not os.path.isfile(path):
                    continue
                try:
                    with open(path, "rb") as f:
                        text = f.read().decode("utf-8", "replace")
                except OSError:
                    continue
                found.extend(_find(path, text, needles))
    for name, text in (_OUTPUTS if outputs is None else outputs):
        found.extend(_find(name, text, needles))
    return found


def _record_basic_get():
    """Every message a test reads with pika's basic_get (dead letters):
    its properties, headers and body go to the scan."""
    try:
        from pika.adapters.blocking_connection import BlockingChannel
    except ImportError:
        return
    orig = BlockingChannel.basic_get
    if getattr(orig, "_zmq_scan", False):
        return

    def basic_get(self, *args, **kw):
        m, props, body = orig(self, *args, **kw)
        if m is not None:
            record_output("message from %s" % (args[0] if args else
                                               kw.get("queue")),
                          "%r %s %s" % (props, json.dumps(
                              getattr(props, "headers", None) or {},
                              default=str),
                              (body or b"").decode("utf-8", "replace")))
        return m, props, body
    basic_get._zmq_scan = True
    BlockingChannel.basic_get = basic_get


def _record_http():
    """Every HTTP answer a test reads with requests (zmq_status, error
    JSON) goes to the scan: its status line, headers and up to 1 MB of
    body."""
    try:
        import requests
    except ImportError:
        return
    orig = requests.Session.send
    if getattr(orig, "_zmq_scan", False):
        return

    def send(self, request, **kw):
        r = orig(self, request, **kw)
        if not kw.get("stream"):
            record_output("HTTP answer to %s %s" % (request.method,
                                                    request.url),
                          "%s %s\n%s" % (r.status_code, dict(r.headers),
                                         r.content[:1 << 20].decode(
                                             "utf-8", "replace")))
        return r
    send._zmq_scan = True
    requests.Session.send = send


@pytest.fixture(autouse=True)
def secret_scan(tmp_path):
    """At teardown (after the other fixtures stopped their processes):
    no registered secret in anything this test produced."""
    _record_basic_get()
    _record_http()
    del _OUTPUTS[:]
    yield
    try:
        check_no_secrets(tmp_path)
    finally:
        del _OUTPUTS[:]


def check_no_secrets(directory):
    """The teardown check: fails naming each file (or output) and line
    that holds a registered secret."""
    found = find_secrets(directory)
    if found:
        raise AssertionError("test passwords leaked:\n" + "\n".join(found))


# --------------------------------------------------------------------- Redis

class RedisServer:
    def __init__(self, tmp):
        if not os.access(REDIS_SERVER, os.X_OK):
            pytest.skip("redis-server is not installed")
        self.dir = tmp
        self.port = free_port()
        self.proc = None
        self.start()

    @property
    def url(self):
        return "redis://127.0.0.1:%d/0" % self.port

    def start(self):
        self.proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", self.dir,
             "--logfile", os.path.join(self.dir, "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port, 10, self.proc)

    def stop(self):
        stop_pid(self.proc)

    def client(self):
        import redis
        return redis.Redis(host="127.0.0.1", port=self.port, db=0)

    def dump(self):
        """Every key with its type and value: to prove nothing changed."""
        c = self.client()
        out = {}
        for key in sorted(c.keys("*")):
            t = c.type(key).decode()
            if t == "string":
                out[key] = (t, c.get(key))
            elif t == "set":
                out[key] = (t, sorted(c.smembers(key)))
            elif t == "list":
                out[key] = (t, c.lrange(key, 0, -1))
            else:
                out[key] = (t, None)
        return out


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    server = RedisServer(str(tmp_path_factory.mktemp("redis")))
    yield server
    server.stop()


@pytest.fixture
def redis_store(redis_server):
    """The session's Redis, emptied for this test."""
    redis_server.client().flushall()
    return redis_server


# ------------------------------------------------------------------ RabbitMQ

class RabbitServer:
    """A RabbitMQ node of its own on loopback. With tls (the paths from
    tls_certs.make_pki, optionally with "require_client_cert": True and
    "server"/"server_key" replaced to serve a wrong certificate), the node
    also listens with TLS on self.tls_port."""

    def __init__(self, tmp, tls=None):
        if not os.access(RABBITMQ_SERVER, os.X_OK):
            pytest.skip("rabbitmq-server is not installed")
        self.dir = tmp
        self.port = free_port()
        self.dist_port = free_port()
        self.epmd_port = free_port()
        home = os.path.join(tmp, "home")
        os.makedirs(home, exist_ok=True)
        self.env = dict(
            os.environ,
            HOME=home,
            RABBITMQ_NODENAME="zmqtest%d@localhost" % self.port,
            RABBITMQ_USE_LONGNAME="false",
            RABBITMQ_MNESIA_BASE=os.path.join(tmp, "mnesia"),
            RABBITMQ_LOG_BASE=os.path.join(tmp, "log"),
            RABBITMQ_CONFIG_FILE=os.path.join(tmp, "rabbitmq.conf"),
            RABBITMQ_ENABLED_PLUGINS_FILE=os.path.join(tmp,
                                                       "enabled_plugins"),
            RABBITMQ_PID_FILE=os.path.join(tmp, "beam.pid"),
            RABBITMQ_CONF_ENV_FILE=os.path.join(tmp, "rabbitmq-env.conf"),
            RABBITMQ_DIST_PORT=str(self.dist_port),
            ERL_EPMD_PORT=str(self.epmd_port),
            ERL_EPMD_ADDRESS="127.0.0.1",
        )
        self.tls = tls
        self.tls_port = free_port() if tls else None
        with open(self.env["RABBITMQ_CONFIG_FILE"], "w") as f:
            f.write("listeners.tcp.default = 127.0.0.1:%d\n"
                    "disk_free_limit.absolute = 50MB\n"
                    "loopback_users = none\n" % self.port)
            if tls:
                require = bool(tls.get("require_client_cert"))
                f.write("listeners.ssl.default = 127.0.0.1:%d\n"
                        "ssl_options.cacertfile = %s\n"
                        "ssl_options.certfile = %s\n"
                        "ssl_options.keyfile = %s\n"
                        "ssl_options.verify = verify_peer\n"
                        "ssl_options.fail_if_no_peer_cert = %s\n"
                        % (self.tls_port, tls["ca"], tls["server"],
                           tls["server_key"], "true" if require else "false"))
        with open(self.env["RABBITMQ_ENABLED_PLUGINS_FILE"], "w") as f:
            f.write("[].\n")
        open(self.env["RABBITMQ_CONF_ENV_FILE"], "w").close()
        self.epmd = subprocess.Popen(
            [EPMD, "-port", str(self.epmd_port), "-address", "127.0.0.1"],
            env=self.env, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        self.proc = None
        self.start()

    def start(self):
        self.log = open(os.path.join(self.dir, "server.out"), "ab")
        self.proc = subprocess.Popen([RABBITMQ_SERVER], env=self.env,
                                     stdout=self.log, stderr=self.log,
                                     start_new_session=True)
        wait_port(self.port, 90, self.proc)
        if self.tls_port:
            wait_port(self.tls_port, 30, self.proc)

    def ctl(self, *args, timeout=60):
        return subprocess.run([RABBITMQCTL] + list(args), env=self.env,
                              capture_output=True, text=True,
                              timeout=timeout)

    def beam_pid(self):
        try:
            with open(self.env["RABBITMQ_PID_FILE"]) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def stop(self):
        """SIGTERM to the wrapper, which stops the node cleanly; then make
        sure by the node's own PID and the process group."""
        if self.proc is None:
            return
        beam = self.beam_pid()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        if beam is not None:
            for _ in range(100):
                try:
                    os.kill(beam, 0)
                except OSError:
                    break
                time.sleep(0.1)
            else:
                os.kill(beam, signal.SIGKILL)
        self.proc = None
        self.log.close()

    def close(self):
        self.stop()
        stop_pid(self.epmd)

    def connection(self):
        import pika
        return pika.BlockingConnection(pika.ConnectionParameters(
            host="127.0.0.1", port=self.port, connection_attempts=3,
            retry_delay=0.5))

    def tls_connection(self, client_cert=True):
        """pika over TLS, verifying the node's certificate against the
        test CA (and presenting the client certificate)."""
        import ssl
        import pika
        ctx = ssl.create_default_context(cafile=self.tls["ca"])
        if client_cert:
            ctx.load_cert_chain(self.tls["client"], self.tls["client_key"])
        return pika.BlockingConnection(pika.ConnectionParameters(
            host="127.0.0.1", port=self.tls_port, connection_attempts=3,
            retry_delay=0.5,
            ssl_options=pika.SSLOptions(ctx, server_hostname="localhost")))


@pytest.fixture(scope="session")
def rabbitmq(tmp_path_factory):
    server = RabbitServer(str(tmp_path_factory.mktemp("rabbitmq")))
    yield server
    server.close()


@pytest.fixture(scope="session")
def tls_pki(tmp_path_factory):
    """A CA and certificates (see tls_certs.py), made once per session."""
    from tls_certs import make_pki
    return make_pki(str(tmp_path_factory.mktemp("pki")))


@pytest.fixture(scope="session")
def rabbitmq_tls(tmp_path_factory, tls_pki):
    """A second RabbitMQ node with a TLS listener (tls_port) next to its
    plain one; client certificates are verified when given, not required."""
    server = RabbitServer(str(tmp_path_factory.mktemp("rabbitmq_tls")),
                          tls=tls_pki)
    yield server
    server.close()


# --------------------------------------------------------------------- NGINX

NGINX_CONF = """
load_module {module};
daemon off;
master_process on;
worker_processes {workers};
pid {dir}/nginx.pid;
error_log {dir}/error.log {log_level};
{notice_log}
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
{http}
    server {{
        listen 127.0.0.1:{port};
{server}
    }}
}}
"""

# NGINX's own words for a child process that ended (src/os/unix/
# ngx_process.c): "%s %P exited on signal %d%s" at [alert], "%s %P exited
# with code %d" at [notice] (an ASan report ends a worker with code 1), and
# "exited with fatal code %d and cannot be respawned" at [alert]
NGINX_CHILD_EXIT = re.compile(
    r"(?P<process>[a-z ]+ process) (?P<pid>\d+) exited "
    r"(?:on signal (?P<signal>\d+)|with (?:fatal )?code (?P<code>\d+))")

# the level at which NGINX and the module log what cannot happen ([emerg] is
# a configuration error, which tests of nginx -t cause on purpose)
NGINX_BAD_LEVELS = ("[alert]",)
NGINX_LEVELS = ("debug", "info", "notice", "warn", "error", "crit", "alert",
                "emerg")


def nginx_log_problems(text):
    """The lines of an NGINX error log that fail a test: [alert], a child process that exited on a signal or with a code other
    than 0, and sanitizer output (when stderr went to the log)."""
    bad = []
    for line in text.splitlines():
        m = NGINX_CHILD_EXIT.search(line)
        if m and (m.group("signal") is not None or m.group("code") != "0"):
            bad.append(line)
        elif any(level in line for level in NGINX_BAD_LEVELS):
            bad.append(line)
        elif "Sanitizer" in line or "runtime error:" in line:
            bad.append(line)
    return bad


def no_core_files():
    """A worker that crashes on purpose (or not) leaves no core file in the
    working directory: the error log and the sanitizer report say what
    happened."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


ZMQ_CONFIG_DIRECTIVE = re.compile(r"\bzmq_config\s+([^;\s]+)\s*;")


def register_nginx_secrets(conf):
    """The secrets of an nginx.conf snippet: of a zmq_config file: (an
    input file) and a zmq_config Redis URL."""
    for m in ZMQ_CONFIG_DIRECTIVE.finditer(conf or ""):
        src = m.group(1)
        if src.startswith("file:"):
            register_input_file(src[len("file:"):])
        else:
            register_url_secret(src)


class Nginx:
    def __init__(self, tmp, http="", server="", workers=1, log_level="info"):
        if os.environ.get("ZMQ_SKIP_NGINX"):
            pytest.skip("ZMQ_SKIP_NGINX is set")
        if not os.access(NGINX, os.X_OK):
            pytest.skip("nginx is not installed")
        if not os.path.exists(MODULE):
            pytest.fail("%s is not built: run make" % MODULE)
        self.dir = tmp
        # workers run as an unprivileged user when the master is root: let
        # them reach their directory (e.g. for zmq_cache), and write their
        # sanitizer reports
        open_to_workers(tmp)
        self.sanitizer = sanitizer_dir(tmp)
        self.port = free_port()
        self.conf = os.path.join(tmp, "nginx.conf")
        # a worker's exit is logged at [notice]: keep a log at that level
        # whatever the test asked for
        self.logs = [os.path.join(tmp, "error.log")]
        notice_log = ""
        if NGINX_LEVELS.index(log_level) > NGINX_LEVELS.index("notice"):
            self.logs.append(os.path.join(tmp, "notice.log"))
            notice_log = "error_log %s notice;" % self.logs[1]
        self.checked = {path: 0 for path in self.logs}
        register_nginx_secrets(http)
        register_input_file(self.conf)      # it may hold a Redis URL
        with open(self.conf, "w") as f:
            f.write(NGINX_CONF.format(module=MODULE, workers=workers,
                                      dir=tmp, port=self.port, http=http,
                                      server=server, log_level=log_level,
                                      notice_log=notice_log))
        self.proc = None
        self.master_exits = []

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def args(self):
        return [NGINX, "-p", self.dir, "-c", self.conf, "-e",
                os.path.join(self.dir, "error.log")]

    def env(self):
        env = dict(os.environ)
        env.update(sanitizer_options(self.sanitizer, extra="detect_leaks=0",
                                     base={}))
        if ASAN_PRELOAD:
            env["LD_PRELOAD"] = ASAN_PRELOAD
        return env

    def test_config(self):
        """nginx -t: returns (exit code, output)."""
        r = subprocess.run(self.args() + ["-t"], capture_output=True,
                           text=True, timeout=30, env=self.env(),
                           preexec_fn=no_core_files)
        record_output("nginx -t (%s)" % self.conf, r.stdout + r.stderr)
        return r.returncode, r.stdout + r.stderr

    def start(self):
        self.proc = subprocess.Popen(self.args(), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL,
                                     env=self.env(), preexec_fn=no_core_files)
        self.reaped = False
        wait_port(self.port, 10, self.proc)
        return self

    def restart(self):
        self.stop()
        return self.start()

    def stop(self):
        if self.proc is None or self.reaped:
            return
        stop_pid(self.proc, signal.SIGQUIT)
        self.reaped = True
        self.master_exits.append(self.proc.returncode)

    def error_log(self):
        path = os.path.join(self.dir, "error.log")
        if not os.path.exists(path):
            return ""
        with open(path, errors="replace") as f:
            return f.read()

    def worker_pids(self):
        """The master's children, by /proc."""
        pids = []
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                with open("/proc/%s/stat" % name) as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == self.proc.pid:
                pids.append(int(name))
        return sorted(pids)

    def _new_log_text(self, path):
        if not os.path.exists(path):
            return ""
        with open(path, errors="replace") as f:
            f.seek(self.checked[path])
            return f.read()

    def problems(self):
        """What fails a test in what this NGINX did since it was made (or
        since forget_problems()): bad error log lines, sanitizer reports,
        and a master that did not exit with 0."""
        bad = []
        seen = set()
        for path in self.logs:
            for line in nginx_log_problems(self._new_log_text(path)):
                if line not in seen:        # notice.log repeats error.log
                    seen.add(line)
                    bad.append(line)
        bad.extend(sanitizer_reports(self.sanitizer))
        for code in self.master_exits:
            if code != 0:
                bad.append("the nginx master exited with %s" % code)
        return bad

    def forget_problems(self):
        """For a test that causes problems on purpose, once it has checked
        them: what happened so far no longer fails the test."""
        for path in self.logs:
            if os.path.exists(path):
                self.checked[path] = os.path.getsize(path)
        for name in os.listdir(self.sanitizer):
            os.unlink(os.path.join(self.sanitizer, name))
        self.master_exits = []


@pytest.fixture
def nginx_factory(tmp_path):
    started = []
    n = [0]

    def make(**kw):
        n[0] += 1
        d = tmp_path / ("nginx%d" % n[0])
        d.mkdir()
        ngx = Nginx(str(d), **kw)
        started.append(ngx)
        return ngx

    yield make

    bad = []
    for ngx in started:
        ngx.stop()
        bad.extend(ngx.problems())
    assert not bad, "nginx:\n" + "\n".join(bad)


# -------------------------------------------------------------------- zmqctl

class Zmqctl:
    def __init__(self, redis_url, key_file):
        if not os.path.exists(ZMQCTL):
            pytest.fail("%s is not built: run make" % ZMQCTL)
        self.env = dict(os.environ, ZMQ_REDIS=redis_url,
                        ZMQ_KEY_FILE=key_file)
        register_url_secret(redis_url)

    def __call__(self, *args, check=None, input=None):
        args = [str(a) for a in args]
        if args and args[0] in ("import", "restore"):
            # the file it reads is the test's input: its secrets count,
            # the file is not scanned
            for a in args[1:]:
                if a == "-" and input is not None:
                    register_config_secrets(input)
                elif not a.startswith("-") and os.path.isfile(a):
                    register_input_file(a)
        r = subprocess.run([ZMQCTL] + args, env=self.env,
                           capture_output=True, text=True, input=input,
                           timeout=60)
        record_output("zmqctl %s" % " ".join(args),
                      "%s\n%s" % (r.stdout, r.stderr))
        if check is not None:
            assert r.returncode == check, (r.returncode, r.stdout, r.stderr)
        return r


@pytest.fixture
def zmqctl(redis_store, tmp_path):
    key = tmp_path / "secret.key"
    ctl = Zmqctl(redis_store.url, str(key))
    ctl("keygen", check=0)
    return ctl


@pytest.fixture
def write_json(tmp_path):
    def write(name, doc):
        p = tmp_path / name
        p.write_text(json.dumps(doc, indent=2) if not isinstance(doc, str)
                     else doc)
        register_input_file(p)
        return str(p)
    return write


# ------------------------------------------------------------------ gateway

STATUS_LOCATION = "location = /zmq/status { zmq_status; }\n"


def amqp_config(port, services, outconn=None, amqp_def=None, extra=None):
    """A configuration with one definition on 127.0.0.1:port, one outgoing
    connection "out" and the given services (kind publish by default)."""
    d = {"name": "rabbit", "host": "127.0.0.1", "port": port,
         "username": "guest", "password": "guest", "heartbeat": 10}
    d.update(amqp_def or {})
    o = {"name": "out", "def": "rabbit"}
    o.update(outconn or {})
    svcs = []
    for name, fields in services.items():
        s = {"name": name, "kind": "publish", "outconn": "out"}
        s.update(fields)
        svcs.append(s)
    doc = {"amqp_def": [d], "amqp_outconn": [o], "service": svcs}
    doc.update(extra or {})
    return doc


class Gateway:
    def __init__(self, ngx):
        self.ngx = ngx
        self.url = ngx.url

    def status(self):
        import requests
        return requests.get(self.url + "/zmq/status", timeout=5).json()

    def outconn(self, name="out"):
        """Each worker's entry for one outgoing connection."""
        return [w["outconns"][name] for w in self.status()["workers"]]

    def states(self, name="out"):
        """Each worker's state of one outgoing connection, None where the
        worker has none (yet)."""
        return [w.get("outconns", {}).get(name, {}).get("state")
                for w in self.status()["workers"]]

    def wait_state(self, state, name="out", timeout=30.0):
        deadline = time.monotonic() + timeout
        seen = None
        while time.monotonic() < deadline:
            seen = self.states(name)
            if seen and all(s == state for s in seen):
                return
            time.sleep(0.05)
        raise AssertionError("outconn %s is %s, not %s" % (name, seen, state))

    def totals(self, name="out"):
        out = {}
        for o in self.outconn(name):
            for k, v in o.items():
                if isinstance(v, int):
                    out[k] = out.get(k, 0) + v
        return out


@pytest.fixture
def gateway(nginx_factory, tmp_path):
    def start(config, locations, workers=1, http="", wait="ready",
              log_level="info"):
        path = tmp_path / ("zmq%d.json" % len(list(tmp_path.glob("zmq*"))))
        path.write_text(json.dumps(config))
        register_input_file(path)
        ngx = nginx_factory(http="%s\nzmq_config file:%s;" % (http, path),
                            server=STATUS_LOCATION + locations,
                            workers=workers, log_level=log_level)
        ngx.start()
        gw = Gateway(ngx)
        if wait:
            gw.wait_state(wait)
        return gw
    return start


@pytest.fixture
def queue(rabbitmq):
    """A fresh durable queue on the session broker; yields its name and a
    pika channel to inspect it, and deletes it afterwards."""
    import uuid
    name = "t." + uuid.uuid4().hex[:12]
    conn = rabbitmq.connection()
    ch = conn.channel()
    ch.queue_declare(name, durable=True)

    class Q:
        pass
    q = Q()
    q.name = name
    q.channel = ch

    def drain(expect=None, timeout=10.0):
        msgs = []
        deadline = time.monotonic() + timeout
        while True:
            m, props, body = ch.basic_get(name, auto_ack=True)
            if m is None:
                if expect is None or len(msgs) >= expect \
                        or time.monotonic() > deadline:
                    return msgs
                time.sleep(0.05)
                continue
            msgs.append((m, props, body))
    q.drain = drain

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
