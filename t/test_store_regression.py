"""A configuration store that loses its data does not unconfigure anyone.

Gateways (every NGINX worker) and zmqd follow Redis. When Redis comes back
empty (FLUSHALL, a restart without persistence, an empty replica), its
version is below the one they run: they keep their configuration, say
"regressed" in zmq_status and the log, and go on following. `zmqctl
restore` brings the store back from a gateway's disk cache at a higher
version, which everyone applies; `zmqctl wipe --yes` empties it on purpose.
Only worker 0 writes that cache, once per version, off the event loop. The
subscriber connection PINGs, so a Redis that stops answering is noticed.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import time
import uuid

import pytest
import requests

from conftest import BUILD, RedisServer, amqp_config, stop_pid

ZMQD = os.path.join(BUILD, "zmqd")

LOCATIONS = ("location = /zmq/status { zmq_status; }\n"
             "location /api/ { zmq_router; }\n")


def wait_for(fn, timeout=15.0, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        assert time.monotonic() < deadline, "timed out waiting for " + what
        time.sleep(0.05)


def post(url, data=b"x"):
    # a new connection each time, so that every worker gets its share
    with requests.Session() as s:
        return s.post(url, data=data, timeout=30)


class Follower:
    """NGINX (2 workers) following a Redis of its own; zmqctl on it."""

    def __init__(self, nginx_factory, zmqctl, redis, workers=2):
        self.zmqctl = zmqctl
        self.redis = redis
        self.workers = workers
        self.ngx = nginx_factory(
            http="zmq_key_file %s;\nzmq_config redis://127.0.0.1:%d/0;\n"
                 "zmq_config_poll 500ms;" % (zmqctl.env["ZMQ_KEY_FILE"],
                                             redis.port),
            server=LOCATIONS, workers=workers)
        self.url = self.ngx.url
        self.cache = os.path.join(self.ngx.dir, "zmq_cache", "config.json")

    def status(self):
        return requests.get(self.url + "/zmq/status", timeout=5).json()

    def workers_where(self, pred, timeout=15.0, what="workers"):
        """Waits until every worker satisfies pred; returns them."""
        last = []

        def check():
            last[:] = self.status()["workers"]
            return len(last) == self.workers and all(pred(w) for w in last)
        try:
            wait_for(check, timeout, what)
        except AssertionError:
            raise AssertionError("%s: %s" % (what, last))
        return last

    def wait_connected(self, version, timeout=15.0):
        return self.workers_where(
            lambda w: w["source_state"] == "connected"
            and w["config_version"] == version
            and w.get("store_version", version) == version, timeout,
            "every worker connected at version %d" % version)

    def wait_ready(self, name="out"):
        self.workers_where(
            lambda w: w["outconns"].get(name, {}).get("state") == "ready",
            20, "outconn %s ready" % name)


class Zmqd:
    def __init__(self, zmqctl, source, tmp):
        self.log_path = os.path.join(tmp, "zmqd-%s.log" % uuid.uuid4().hex[:6])
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen([ZMQD, "--config", source],
                                     env=zmqctl.env, stdout=self.log,
                                     stderr=self.log)

    def text(self):
        with open(self.log_path) as f:
            return f.read()

    def wait_log(self, needle, timeout=15):
        wait_for(lambda: needle in self.text() or self.proc.poll()
                 is not None, timeout, "zmqd to log %r" % needle)
        assert self.proc.poll() is None, self.text()

    def stop(self):
        stop_pid(self.proc)
        self.log.close()
        return self.proc.returncode


@pytest.fixture
def own_redis(tmp_path):
    d = tmp_path / "redis"
    d.mkdir()
    server = RedisServer(str(d))
    yield server
    server.stop()


@pytest.fixture
def follower(nginx_factory, zmqctl, own_redis):
    zmqctl.env["ZMQ_REDIS"] = own_redis.url

    def make(workers=2):
        return Follower(nginx_factory, zmqctl, own_redis, workers)
    return make


@pytest.fixture
def queues(rabbitmq):
    conn = rabbitmq.connection()
    ch = conn.channel()
    names = []

    def make(suffix):
        name = "t.%s.%s" % (uuid.uuid4().hex[:8], suffix)
        ch.queue_declare(name, durable=True)
        names.append(name)
        return name

    def count(name):
        return ch.queue_declare(name, durable=True,
                                passive=True).method.message_count
    make.count = count
    yield make
    for n in names:
        ch.queue_delete(n)
    conn.close()


def gateway_config(port, orders, jobs=None, done=None):
    """REST channels /api/orders -> queue orders, /api/jobs -> jobs; and
    (for zmqd) a channel on jobs whose service forwards to done."""
    services = {"orders": {"routing_key": orders}}
    if jobs:
        services["jobs"] = {"routing_key": jobs}
    doc = amqp_config(port, services)
    doc["rest_channel"] = [{"name": "orders", "url_path": "/api/orders",
                            "method": "POST", "service": "orders"}]
    if jobs:
        doc["rest_channel"].append({"name": "jobs", "url_path": "/api/jobs",
                                    "method": "POST", "service": "jobs"})
        doc["service"].append({"name": "fwd", "kind": "publish",
                               "outconn": "out", "routing_key": done})
        doc["amqp_channel"] = [{"name": "jobs-in", "def": "rabbit",
                                "queue": jobs, "service": "fwd"}]
    return doc


def write(zmqctl, tmp_path, doc, *opts):
    p = tmp_path / ("c%s.json" % uuid.uuid4().hex[:6])
    p.write_text(json.dumps(doc))
    r = zmqctl("import", "--replace", *opts, p, check=0)
    return int(r.stdout.rsplit("version", 1)[1]), r


def start_following(rabbitmq, follower, zmqctl, tmp_path, doc):
    """A few versions written (so that the running version is above what
    an import into an empty store would make), then NGINX started."""
    gw = follower()
    changed = json.loads(json.dumps(doc))
    changed["service"][0]["routing_key"] = "elsewhere"
    write(zmqctl, tmp_path, dict(doc, rest_channel=[]))
    write(zmqctl, tmp_path, changed)
    v, _ = write(zmqctl, tmp_path, doc)
    gw.ngx.start()
    gw.wait_connected(v)
    gw.wait_ready()
    return gw, v


def assert_regressed(gw, v, store):
    # the store's version is part of the condition: a worker already
    # regressed (at 0, after a flush) sees the store's next version only
    # at its next poll
    ws = gw.workers_where(
        lambda w: (w["source_state"] == "regressed"
                   and w["store_version"] == store), 15,
        "every worker regressed at store version %d" % store)
    for w in ws:
        assert w["config_version"] == v
        assert "lower than the running version %d" % v in w["error"]
    return ws


# ------------------------------------------------------------- defect 10


def test_flushall_keeps_every_worker_and_zmqd_running_until_restored(
        rabbitmq, follower, zmqctl, own_redis, queues, tmp_path):
    orders, jobs, done = queues("orders"), queues("jobs"), queues("done")
    gw, v = start_following(rabbitmq, follower, zmqctl, tmp_path,
                            gateway_config(rabbitmq.port, orders, jobs, done))
    z = Zmqd(zmqctl, own_redis.url, str(tmp_path))
    try:
        z.wait_log("consuming queue '%s'" % jobs)
        r = own_redis.client()
        stored = {k: r.get(k) for k in r.keys("zmq:obj:*")}

        r.flushall()

        assert_regressed(gw, v, 0)
        log = gw.ngx.error_log()
        assert log.count("the configuration store is at version 0, lower "
                         "than version %d" % v) == 2     # once per worker
        z.wait_log("is regressed: at version 0, lower than version %d" % v)

        # the gateway still publishes (checked on the broker) ...
        for i in range(6):
            assert post(gw.url + "/api/orders").status_code == 202
        assert queues.count(orders) == 6
        # ... and zmqd still consumes
        for i in range(3):
            assert post(gw.url + "/api/jobs").status_code == 202
        wait_for(lambda: queues.count(done) == 3, 15, "zmqd to forward")

        # brought back from a gateway's cache, sealed secrets as they were
        out = zmqctl("restore", gw.cache, check=0)
        assert ("cached version %d" % v) in out.stdout
        assert out.stdout.rstrip().endswith("version %d" % (v + 1))
        assert {k: r.get(k) for k in r.keys("zmq:obj:*")} == stored
        assert r.get("zmq:version") == str(v + 1).encode()

        ws = gw.wait_connected(v + 1)
        assert all("error" not in w for w in ws)
        z.wait_log("configuration version %d applied" % (v + 1))
        assert "at version %d again" % (v + 1) in z.text()
        assert post(gw.url + "/api/orders").status_code == 202
        assert queues.count(orders) == 7
    finally:
        assert z.stop() == 0, z.text()


def test_redis_restarted_empty_is_regressed_then_restored(
        rabbitmq, follower, zmqctl, own_redis, queues, tmp_path):
    orders = queues("orders")
    gw, v = start_following(rabbitmq, follower, zmqctl, tmp_path,
                            gateway_config(rabbitmq.port, orders))

    # a new, empty redis-server on the same port (no persistence)
    own_redis.stop()
    own_redis.start()

    assert_regressed(gw, v, 0)
    for _ in range(4):
        assert post(gw.url + "/api/orders").status_code == 202
    assert queues.count(orders) == 4

    zmqctl("restore", gw.cache, check=0)
    gw.wait_connected(v + 1)
    assert post(gw.url + "/api/orders").status_code == 202
    assert queues.count(orders) == 5


def test_an_import_into_an_emptied_store_warns_and_needs_a_higher_version(
        rabbitmq, follower, zmqctl, own_redis, queues, tmp_path):
    orders, other = queues("orders"), queues("other")
    gw, v = start_following(rabbitmq, follower, zmqctl, tmp_path,
                            gateway_config(rabbitmq.port, orders))
    own_redis.client().flushall()
    assert_regressed(gw, v, 0)

    # a plain import makes a version below the running one: not applied
    doc = gateway_config(rabbitmq.port, other)
    low, r = write(zmqctl, tmp_path, doc)
    assert low < v
    assert "the store had no version" in r.stderr
    assert "--version-floor" in r.stderr
    assert_regressed(gw, v, low)
    assert post(gw.url + "/api/orders").status_code == 202
    assert queues.count(orders) == 1

    # with a floor above what the gateways run, it is
    high, r = write(zmqctl, tmp_path, doc, "--version-floor", v + 10)
    assert high == v + 10 and r.stderr == ""
    gw.wait_connected(v + 10)
    gw.wait_ready()             # the password was sealed anew: reconnected
    assert post(gw.url + "/api/orders").status_code == 202
    assert queues.count(other) == 1


def test_an_explicit_wipe_empties_every_gateway(
        rabbitmq, follower, zmqctl, own_redis, queues, tmp_path):
    orders = queues("orders")
    gw, v = start_following(rabbitmq, follower, zmqctl, tmp_path,
                            gateway_config(rabbitmq.port, orders))
    before = own_redis.dump()

    r = zmqctl("wipe")
    assert r.returncode == 2 and "--yes" in r.stderr
    assert own_redis.dump() == before

    out = zmqctl("wipe", "--yes", check=0)
    assert out.stdout.strip() == "wiped: %d objects deleted, version %d" % (
        len([k for k in before if k.startswith(b"zmq:obj:")]), v + 1)
    assert own_redis.client().keys("zmq:obj:*") == []

    ws = gw.wait_connected(v + 1)
    assert all(w["outconns"] == {} or all(
        "draining" in n for n in w["outconns"]) for w in ws)
    r = post(gw.url + "/api/orders")
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    assert queues.count(orders) == 0


def test_a_wipe_of_an_already_empty_store_needs_a_version_floor(
        rabbitmq, follower, zmqctl, own_redis, queues, tmp_path):
    orders = queues("orders")
    gw, v = start_following(rabbitmq, follower, zmqctl, tmp_path,
                            gateway_config(rabbitmq.port, orders))
    own_redis.client().flushall()
    assert_regressed(gw, v, 0)

    r = zmqctl("wipe", "--yes")
    assert r.returncode == 1 and "--version-floor" in r.stderr
    # nothing but the fleet's reports (the gateway reporting itself)
    assert [k for k in own_redis.client().keys("*")
            if not k.startswith(b"zmq:fleet")] == []

    zmqctl("wipe", "--yes", "--version-floor", v + 1, check=0)
    gw.wait_connected(v + 1)
    assert post(gw.url + "/api/orders").status_code == 404


def test_restore_from_an_export_takes_a_version_floor(
        rabbitmq, follower, zmqctl, own_redis, queues, tmp_path):
    orders = queues("orders")
    gw, v = start_following(rabbitmq, follower, zmqctl, tmp_path,
                            gateway_config(rabbitmq.port, orders))
    export = tmp_path / "export.json"
    zmqctl("export", "-o", export, check=0)
    own_redis.client().flushall()
    assert_regressed(gw, v, 0)

    # an export has no secrets: put them in, restore seals them
    doc = json.loads(export.read_text())
    assert "password" not in doc["amqp_def"][0]
    doc["amqp_def"][0]["password"] = "guest"
    export.write_text(json.dumps(doc))

    # and no version: warned, still regressed
    r = zmqctl("restore", export, check=0)
    assert "holds no version" in r.stderr
    assert_regressed(gw, v, 1)

    zmqctl("restore", "--version-floor", v + 3, export, check=0)
    gw.wait_connected(v + 3)
    gw.wait_ready()
    assert post(gw.url + "/api/orders").status_code == 202
    assert queues.count(orders) == 1


# -------------------------------------------------------------- defect 9


def cached_lines(gw, version):
    return gw.ngx.error_log().count(
        "configuration version %d cached in \"%s\"" % (version, gw.cache))


def test_one_worker_writes_the_cache_once_per_version(
        rabbitmq, follower, zmqctl, own_redis, queues, tmp_path):
    orders, other = queues("orders"), queues("other")
    gw, v = start_following(rabbitmq, follower, zmqctl, tmp_path,
                            gateway_config(rabbitmq.port, orders))
    wait_for(lambda: cached_lines(gw, v) == 1, 10, "the cache write")
    v2, _ = write(zmqctl, tmp_path, gateway_config(rabbitmq.port, other))
    gw.wait_connected(v2)
    wait_for(lambda: cached_lines(gw, v2) >= 1, 10, "the cache write")
    time.sleep(1.5)                     # polls see the same version
    assert cached_lines(gw, v) == 1 and cached_lines(gw, v2) == 1
    # by worker 0
    pid0 = [w["pid"] for w in gw.status()["workers"] if w["worker"] == 0]
    assert [line for line in gw.ngx.error_log().splitlines()
            if "cached in" in line] and all(
        (" %d#" % pid0[0]) in line for line in gw.ngx.error_log(
        ).splitlines() if "cached in" in line)
    with open(gw.cache) as f:
        cache = json.load(f)
    assert cache["version"] == v2
    assert [s["routing_key"] for s in cache["config"]["service"]] == [other]
    assert "$sealed" in cache["config"]["amqp_def"][0]["password"]
    assert not [n for n in os.listdir(os.path.dirname(gw.cache))
                if n.endswith(".tmp")]

    # the write runs on a thread pool, not on a worker's event loop
    for w in gw.status()["workers"]:
        assert len(os.listdir("/proc/%d/task" % w["pid"])) > 1

    # NGINX restarted with Redis up at the cached version: nothing to write
    mtime = os.stat(gw.cache).st_mtime_ns
    gw.ngx.restart()
    gw.wait_connected(v2)
    time.sleep(1)
    assert cached_lines(gw, v2) == 1
    assert os.stat(gw.cache).st_mtime_ns == mtime

    # and it starts from that file while Redis is down
    own_redis.stop()
    gw.ngx.restart()
    ws = gw.workers_where(lambda w: w["config_version"] == v2, 10,
                          "workers at the cached version")
    assert all(w["source_state"] in ("waiting", "stale") for w in ws)
    gw.wait_ready()
    assert post(gw.url + "/api/orders").status_code == 202
    assert queues.count(other) == 1


def test_the_cache_is_written_by_a_thread_of_one_worker(
        rabbitmq, follower, zmqctl, own_redis, queues, tmp_path):
    """Seen from outside with strace: one rename per version, made by a
    thread of worker 0 (not by its event loop, not by the others)."""
    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("strace is not installed")
    orders, other = queues("orders"), queues("other")
    gw, v = start_following(rabbitmq, follower, zmqctl, tmp_path,
                            gateway_config(rabbitmq.port, orders))
    workers = {w["worker"]: w["pid"] for w in gw.status()["workers"]}
    out = tmp_path / "strace.out"
    args = [strace, "-f", "-qq", "-e", "trace=rename,renameat,renameat2",
            "-o", str(out)]
    for pid in workers.values():
        args += ["-p", str(pid)]
    tracer = subprocess.Popen(args, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
    def traced():
        if tracer.poll() is not None:
            pytest.skip("strace cannot attach: %s" % tracer.stderr.read())
        for pid in workers.values():
            for tid in os.listdir("/proc/%d/task" % pid):
                with open("/proc/%d/task/%s/status" % (pid, tid)) as f:
                    if "TracerPid:\t0\n" in f.read():
                        return False
        return True
    try:
        wait_for(traced, 20, "strace to attach to every thread")
        v2, _ = write(zmqctl, tmp_path, gateway_config(rabbitmq.port, other))
        gw.wait_connected(v2)
        time.sleep(1.5)
    finally:
        tracer.send_signal(signal.SIGINT)
        tracer.wait(10)
    renames = re.findall(r'^(\d+) +rename\w*\(.*/config\.json"',
                         out.read_text(), re.M)
    assert len(renames) == 1, out.read_text()
    tid = int(renames[0])
    assert tid != workers[0]            # not the event loop's thread
    assert os.path.exists("/proc/%d/task/%d" % (workers[0], tid))


# ------------------------------------------------------- defect 8 (PING)


def test_a_redis_that_stops_answering_is_noticed_by_the_subscriber(
        rabbitmq, follower, zmqctl, own_redis, queues, tmp_path):
    orders = queues("orders")
    gw, v = start_following(rabbitmq, follower, zmqctl, tmp_path,
                            gateway_config(rabbitmq.port, orders))
    pid = own_redis.proc.pid
    stopped = time.monotonic()
    os.kill(pid, signal.SIGSTOP)
    try:
        gw.workers_where(lambda w: w["source_state"] == "stale", 15,
                         "every worker stale")
        # the subscriber (which only listens) noticed too, by its PING
        wait_for(lambda: gw.ngx.error_log().count(
            "(events): connection closed: PING timed out") >= 2, 15,
            "both subscribers to time out")
        assert post(gw.url + "/api/orders").status_code == 202
    finally:
        os.kill(pid, signal.SIGCONT)
    resumed = time.monotonic()

    gw.wait_connected(v, timeout=20)

    # every subscriber connection Redis has now was made after the stop
    def subscribers():
        return [c for c in own_redis.client().client_list()
                if int(c.get("sub", 0)) > 0]
    wait_for(lambda: len(subscribers()) == 2, 10, "two subscribers")
    subs = subscribers()
    assert all(int(c["age"]) <= resumed - stopped for c in subs), subs

    # and events flow again on them
    v2, _ = write(zmqctl, tmp_path, dict(
        gateway_config(rabbitmq.port, orders), rest_channel=[]))
    gw.wait_connected(v2)
    assert post(gw.url + "/api/orders").status_code == 404
