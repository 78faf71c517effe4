"""Fixtures for ngx_zmq integration tests.

Every server is real (Debian's redis-server, rabbitmq-server, nginx), bound to
127.0.0.1 on a free port, with its files in a temporary directory, and is
stopped by its PID when the test (or the session) is over. A test is skipped,
not failed, when a daemon is not installed. Any nginx error log line with
[alert] or a sanitizer report fails the test that produced it.
"""

import json
import os
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
# ASan runtime preloaded (make asan-nginx); reports go to files, see below
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
    def __init__(self, tmp):
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
        with open(self.env["RABBITMQ_CONFIG_FILE"], "w") as f:
            f.write("listeners.tcp.default = 127.0.0.1:%d\n"
                    "disk_free_limit.absolute = 50MB\n"
                    "loopback_users = none\n" % self.port)
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


@pytest.fixture(scope="session")
def rabbitmq(tmp_path_factory):
    server = RabbitServer(str(tmp_path_factory.mktemp("rabbitmq")))
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
        # them reach their directory (e.g. for zmq_cache)
        p = os.path.abspath(tmp)
        while p not in ("/", "/tmp"):
            os.chmod(p, os.stat(p).st_mode | 0o011)
            p = os.path.dirname(p)
        self.port = free_port()
        self.conf = os.path.join(tmp, "nginx.conf")
        with open(self.conf, "w") as f:
            f.write(NGINX_CONF.format(module=MODULE, workers=workers,
                                      dir=tmp, port=self.port, http=http,
                                      server=server, log_level=log_level))
        self.proc = None

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def args(self):
        return [NGINX, "-p", self.dir, "-c", self.conf, "-e",
                os.path.join(self.dir, "error.log")]

    def env(self):
        env = dict(os.environ)
        if ASAN_PRELOAD:
            env["LD_PRELOAD"] = ASAN_PRELOAD
            env["ASAN_OPTIONS"] = "detect_leaks=0:log_path=%s/asan" % self.dir
        return env

    def test_config(self):
        """nginx -t: returns (exit code, output)."""
        r = subprocess.run(self.args() + ["-t"], capture_output=True,
                           text=True, timeout=30, env=self.env())
        return r.returncode, r.stdout + r.stderr

    def start(self):
        self.proc = subprocess.Popen(self.args(), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL,
                                     env=self.env())
        wait_port(self.port, 10, self.proc)
        return self

    def restart(self):
        self.stop()
        return self.start()

    def stop(self):
        stop_pid(self.proc, signal.SIGQUIT)

    def error_log(self):
        path = os.path.join(self.dir, "error.log")
        if not os.path.exists(path):
            return ""
        with open(path, errors="replace") as f:
            return f.read()


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
        for line in ngx.error_log().splitlines():
            if "[alert]" in line or "Sanitizer" in line:
                bad.append(line)
        for name in os.listdir(ngx.dir):
            if name.startswith("asan."):
                with open(os.path.join(ngx.dir, name)) as f:
                    bad.append(f.read())
    assert not bad, "nginx error log:\n" + "\n".join(bad)


# -------------------------------------------------------------------- zmqctl

class Zmqctl:
    def __init__(self, redis_url, key_file):
        if not os.path.exists(ZMQCTL):
            pytest.fail("%s is not built: run make" % ZMQCTL)
        self.env = dict(os.environ, ZMQ_REDIS=redis_url,
                        ZMQ_KEY_FILE=key_file)

    def __call__(self, *args, check=None, input=None):
        r = subprocess.run([ZMQCTL] + [str(a) for a in args], env=self.env,
                           capture_output=True, text=True, input=input,
                           timeout=60)
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

    def wait_state(self, state, name="out", timeout=30.0):
        deadline = time.monotonic() + timeout
        seen = None
        while time.monotonic() < deadline:
            seen = [o["state"] for o in self.outconn(name)]
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
