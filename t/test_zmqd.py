"""zmqd against real RabbitMQ and Redis: each message's service runs, the
message is acked only after it succeeded, failures are retried without
holding up other messages and then dead-lettered (checked with pika), and
the configuration is followed live."""

import http.server
import json
import os
import signal
import subprocess
import threading
import time
import uuid

import pika
import pytest

from conftest import BUILD, stop_pid

ZMQD = os.path.join(BUILD, "zmqd")

FAST_RETRY = {"attempts": 2, "initial_delay": 50, "multiplier": 2,
              "max_delay": 200}


class Zmqd:
    def __init__(self, zmqctl, source, tmp, args=()):
        self.log_path = os.path.join(tmp, "zmqd-%s.log" % uuid.uuid4().hex[:6])
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [ZMQD, "--config", source, "--verbose"] + list(args),
            env=zmqctl.env, stdout=self.log, stderr=self.log)

    def text(self):
        with open(self.log_path) as f:
            return f.read()

    def wait_log(self, needle, timeout=15, count=1):
        deadline = time.monotonic() + timeout
        while self.text().count(needle) < count:
            assert self.proc.poll() is None, self.text()
            assert time.monotonic() < deadline, self.text()
            time.sleep(0.05)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            return self.proc.wait(20)
        return self.proc.returncode


class Recorder(http.server.BaseHTTPRequestHandler):
    """An HTTP endpoint that records requests; answers server.status(body)."""

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.requests.append((dict(self.headers), body))
        code = self.server.status(body)
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_PUT = do_POST

    def log_message(self, *args):
        pass


@pytest.fixture
def http_endpoint():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    server.requests = []
    server.status = lambda body: 200
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def zmqd(zmqctl, redis_store, tmp_path):
    started = []

    def start(doc=None, source=None, args=()):
        if doc is not None:
            p = tmp_path / ("z%d.json" % len(started))
            p.write_text(json.dumps(doc))
            zmqctl("import", "--replace", p, check=0)
        z = Zmqd(zmqctl, source or redis_store.url, str(tmp_path), args)
        started.append(z)
        return z

    yield start
    for z in started:
        if not getattr(z, "killed", False):
            assert z.stop() == 0, z.text()
        z.log.close()


def config(port, channels, services, extra=None):
    doc = {
        "amqp_def": [{"name": "rabbit", "host": "127.0.0.1", "port": port,
                      "username": "guest", "password": "guest",
                      "heartbeat": 10}],
        "amqp_outconn": [{"name": "out", "def": "rabbit"}],
        "service": services,
        "amqp_channel": [dict({"def": "rabbit", "prefetch": 10}, **c)
                         for c in channels],
    }
    doc.update(extra or {})
    return doc


def publish(rabbitmq, queue, bodies, **props):
    conn = rabbitmq.connection()
    ch = conn.channel()
    ch.confirm_delivery()
    for i, b in enumerate(bodies):
        ch.basic_publish("", queue, b, pika.BasicProperties(
            delivery_mode=2, message_id=props.get("message_id", "m%d" % i),
            **{k: v for k, v in props.items() if k != "message_id"}))
    conn.close()


def count(rabbitmq, queue):
    """Messages ready in a queue. Not a proof of acks: a passive declare's
    message_count leaves out messages delivered and not yet acked."""
    conn = rabbitmq.connection()
    n = conn.channel().queue_declare(queue, passive=True).method.message_count
    conn.close()
    return n


def broker_counts(rabbitmq, queue):
    """The broker's own counts for a queue: (ready, unacked, consumers)."""
    r = rabbitmq.ctl("list_queues", "-q", "--no-table-headers", "name",
                     "messages_ready", "messages_unacknowledged",
                     "consumers")
    assert r.returncode == 0, r.stdout + r.stderr
    for line in r.stdout.splitlines():
        f = line.split("\t")
        if len(f) == 4 and f[0] == queue:
            return int(f[1]), int(f[2]), int(f[3])
    raise AssertionError("queue %s not listed:\n%s" % (queue, r.stdout))


def assert_acked(rabbitmq, queue, timeout=15):
    """Every message of the queue was acked: none is ready and none is
    delivered but unacked, as the broker counts them. Waits for the acks
    zmqd batches until it is idle."""
    deadline = time.monotonic() + timeout
    while True:
        ready, unacked, _ = broker_counts(rabbitmq, queue)
        if ready == 0 and unacked == 0:
            return
        assert time.monotonic() < deadline, \
            "%s: %d ready, %d unacked" % (queue, ready, unacked)
        time.sleep(0.2)


def assert_acked_after_stop(rabbitmq, queue, timeout=15):
    """With zmqd stopped: its consumers are gone, so whatever it did not
    ack is back in the queue; the queue must be empty."""
    deadline = time.monotonic() + timeout
    while True:
        ready, unacked, consumers = broker_counts(rabbitmq, queue)
        if consumers == 0 and unacked == 0:
            assert ready == 0, "%s: %d not acked" % (queue, ready)
            return
        assert time.monotonic() < deadline, \
            "%s: %d unacked, %d consumers" % (queue, unacked, consumers)
        time.sleep(0.2)


def wait_for(fn, timeout=15):
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_redis_service_gets_every_message_and_each_is_acked(
        rabbitmq, queue, redis_store, zmqd):
    z = zmqd(config(rabbitmq.port,
                    [{"name": "in", "queue": queue.name, "service": "st"}],
                    [{"name": "st", "kind": "redis", "key": "got"}]))
    bodies = [b"one", b"\x00two", b"three"]
    publish(rabbitmq, queue.name, bodies)
    r = redis_store.client()
    wait_for(lambda: r.llen("got") == 3)
    assert r.lrange("got", 0, -1) == bodies
    assert_acked(rabbitmq, queue.name)
    assert z.stop() == 0
    assert_acked_after_stop(rabbitmq, queue.name)
    assert r.lrange("got", 0, -1) == bodies


def test_redis_lpush_cap_and_zadd(rabbitmq, queue, redis_store, zmqd):
    q2 = queue.name + ".z"
    queue.channel.queue_declare(q2, durable=True)
    try:
        zmqd(config(rabbitmq.port, [
            {"name": "in", "queue": queue.name, "service": "capped"},
            {"name": "in2", "queue": q2, "service": "scored"}], [
            {"name": "capped", "kind": "redis", "op": "lpush", "key": "l",
             "max_len": 2},
            {"name": "scored", "kind": "redis", "op": "zadd", "key": "z",
             "score_field": "ts"}]))
        publish(rabbitmq, queue.name, [b"a", b"b", b"c"])
        publish(rabbitmq, q2, [b'{"ts": 5}', b'{"ts": 1}'])
        r = redis_store.client()
        wait_for(lambda: r.zcard("z") == 2 and r.llen("l") == 2)
        assert_acked(rabbitmq, queue.name)
        assert_acked(rabbitmq, q2)
        assert r.lrange("l", 0, -1) == [b"c", b"b"]
        assert r.zrange("z", 0, -1, withscores=True) == [
            (b'{"ts": 1}', 1.0), (b'{"ts": 5}', 5.0)]
    finally:
        queue.channel.queue_delete(q2)


def test_http_service_gets_body_and_properties_as_headers(
        rabbitmq, queue, zmqd, http_endpoint):
    url = "http://127.0.0.1:%d" % http_endpoint.server_address[1]
    zmqd(config(rabbitmq.port,
                [{"name": "in", "queue": queue.name, "service": "hook"}],
                [{"name": "hook", "kind": "http", "outconn": "web",
                  "path": "/hook"}],
                {"http_outconn": [{"name": "web", "url": url}]}))
    publish(rabbitmq, queue.name, [b'{"x": 1}'], message_id="id-1",
            content_type="application/json", correlation_id="c-9",
            headers={"customer": "ACME"})
    wait_for(lambda: http_endpoint.requests)
    headers, body = http_endpoint.requests[0]
    assert body == b'{"x": 1}'
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Message-Id"] == "id-1"
    assert headers["X-Correlation-Id"] == "c-9"
    assert headers["X-Zmq-Channel"] == "in"
    assert headers["X-Zmq-Header-customer"] == "ACME"
    assert_acked(rabbitmq, queue.name)


def test_failures_are_retried_then_dead_lettered_with_headers(
        rabbitmq, queue, zmqd, http_endpoint):
    url = "http://127.0.0.1:%d" % http_endpoint.server_address[1]
    http_endpoint.status = lambda body: 500
    dead = queue.name + ".dead"
    z = zmqd(config(rabbitmq.port,
                    [{"name": "in", "queue": queue.name, "service": "hook",
                      "retry": FAST_RETRY}],
                    [{"name": "hook", "kind": "http", "outconn": "web"}],
                    {"http_outconn": [{"name": "web", "url": url}]}))
    publish(rabbitmq, queue.name, [b"doomed"], message_id="d-1",
            headers={"keep": "me"})
    z.wait_log("dead-lettered after 3 attempt(s)")
    assert len(http_endpoint.requests) == 3        # 1 try + 2 retries
    conn = rabbitmq.connection()
    ch = conn.channel()
    m, p, body = ch.basic_get(dead, auto_ack=True)
    assert body == b"doomed"
    assert p.message_id == "d-1"
    assert p.headers["x-zmq-attempts"] == 3
    assert p.headers["x-zmq-channel"] == "in"
    assert "status 500" in p.headers["x-zmq-error"]
    assert p.headers["keep"] == "me"
    ch.queue_delete(dead)
    conn.close()
    assert_acked(rabbitmq, queue.name)


def test_a_retry_does_not_hold_up_other_messages(rabbitmq, queue, zmqd,
                                                 http_endpoint):
    url = "http://127.0.0.1:%d" % http_endpoint.server_address[1]
    fails = {"slow": 1}

    def status(body):
        if fails.get(body.decode(), 0) > 0:
            fails[body.decode()] -= 1
            return 503
        return 200
    http_endpoint.status = status
    zmqd(config(rabbitmq.port,
                [{"name": "in", "queue": queue.name, "service": "hook",
                  "retry": {"attempts": 3, "initial_delay": 1000,
                            "multiplier": 1, "max_delay": 1000}}],
                [{"name": "hook", "kind": "http", "outconn": "web"}],
                {"http_outconn": [{"name": "web", "url": url}]}))
    publish(rabbitmq, queue.name, [b"slow", b"fast1", b"fast2"])
    wait_for(lambda: len(http_endpoint.requests) == 4)
    order = [b for _, b in http_endpoint.requests]
    assert order == [b"slow", b"fast1", b"fast2", b"slow"]
    assert_acked(rabbitmq, queue.name)


def test_invalid_json_is_dead_lettered_at_once(rabbitmq, queue, zmqd,
                                               redis_store):
    dead = queue.name + ".dl"
    queue.channel.queue_declare(dead, durable=True)
    try:
        z = zmqd(config(rabbitmq.port,
                        [{"name": "in", "queue": queue.name,
                          "service": "st", "data_format": "json",
                          "dead_letter": {"routing_key": dead}}],
                        [{"name": "st", "kind": "redis", "key": "ok"}]))
        publish(rabbitmq, queue.name, [b'{"fine": true}', b"{broken"])
        z.wait_log("dead-lettered after 1 attempt(s)")
        m, p, body = queue.channel.basic_get(dead, auto_ack=True)
        assert body == b"{broken"
        assert "invalid JSON" in p.headers["x-zmq-error"]
        assert redis_store.client().lrange("ok", 0, -1) == [
            b'{"fine": true}']
        assert_acked(rabbitmq, queue.name)
    finally:
        queue.channel.queue_delete(dead)


def test_xml_is_checked_for_well_formedness(rabbitmq, queue, zmqd,
                                            redis_store):
    z = zmqd(config(rabbitmq.port,
                    [{"name": "in", "queue": queue.name, "service": "st",
                      "data_format": "xml"}],
                    [{"name": "st", "kind": "redis", "key": "xml"}]))
    publish(rabbitmq, queue.name, [b"<a><b/></a>", b"<a><b></a>"])
    z.wait_log("invalid XML")
    assert redis_store.client().lrange("xml", 0, -1) == [b"<a><b/></a>"]
    z.wait_log("dead-lettered after 1 attempt(s)")
    assert_acked(rabbitmq, queue.name)
    conn = rabbitmq.connection()
    conn.channel().queue_delete(queue.name + ".dead")
    conn.close()


def test_publish_and_fanout_services(rabbitmq, queue, zmqd, redis_store):
    target = queue.name + ".out"
    queue.channel.queue_declare(target, durable=True)
    try:
        zmqd(config(rabbitmq.port,
                    [{"name": "in", "queue": queue.name, "service": "both"}],
                    [{"name": "fwd", "kind": "publish", "outconn": "out",
                      "routing_key": target, "mandatory": True},
                     {"name": "st", "kind": "redis", "key": "copy"},
                     {"name": "both", "kind": "fanout",
                      "services": ["fwd", "st"]}]))
        publish(rabbitmq, queue.name, [b"m1", b"m2"], message_id="same")
        wait_for(lambda: count(rabbitmq, target) == 2)
        m, p, body = queue.channel.basic_get(target, auto_ack=True)
        assert body == b"m1" and p.message_id == "same"
        assert redis_store.client().lrange("copy", 0, -1) == [b"m1", b"m2"]
        assert_acked(rabbitmq, queue.name)
    finally:
        queue.channel.queue_delete(target)


def test_ack_mode_reject_hands_over_to_the_queues_dead_letter_exchange(
        rabbitmq, zmqd, http_endpoint):
    url = "http://127.0.0.1:%d" % http_endpoint.server_address[1]
    http_endpoint.status = lambda body: 500
    name = "t.rej." + uuid.uuid4().hex[:6]
    conn = rabbitmq.connection()
    ch = conn.channel()
    ch.queue_declare(name + ".dlx", durable=True)
    ch.queue_declare(name, durable=True, arguments={
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": name + ".dlx"})
    try:
        z = zmqd(config(rabbitmq.port,
                        [{"name": "in", "queue": name, "service": "hook",
                          "ack_mode": "reject", "retry": FAST_RETRY}],
                        [{"name": "hook", "kind": "http", "outconn": "web"}],
                        {"http_outconn": [{"name": "web", "url": url}]}))
        publish(rabbitmq, name, [b"r"])
        z.wait_log("rejected to the queue's dead-letter exchange")
        wait_for(lambda: ch.queue_declare(name + ".dlx", passive=True)
                 .method.message_count == 1)
        assert_acked(rabbitmq, name)
    finally:
        ch.queue_delete(name)
        ch.queue_delete(name + ".dlx")
        conn.close()


def test_sigterm_exits_0_and_returns_unfinished_messages(
        rabbitmq, queue, zmqd, http_endpoint):
    url = "http://127.0.0.1:%d" % http_endpoint.server_address[1]
    http_endpoint.status = lambda body: 500
    z = zmqd(config(rabbitmq.port,
                    [{"name": "in", "queue": queue.name, "service": "hook",
                      "retry": {"attempts": 5, "initial_delay": 60000,
                                "multiplier": 1, "max_delay": 60000}}],
                    [{"name": "hook", "kind": "http", "outconn": "web"}],
                    {"http_outconn": [{"name": "web", "url": url}]}))
    publish(rabbitmq, queue.name, [b"a", b"b"])
    z.wait_log("retrying in", count=2)
    assert z.stop() == 0
    # the two messages waiting for a retry are back in the queue
    wait_for(lambda: count(rabbitmq, queue.name) == 2)


def test_check_validates_the_configuration(zmqctl, redis_store, tmp_path):
    good = tmp_path / "good.json"
    good.write_text(json.dumps(config(5672, [], [])))
    r = subprocess.run([ZMQD, "--config", "file:%s" % good, "--check"],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "valid" in r.stdout
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(config(5672, [{"name": "c", "queue": "q",
                                             "service": "nope"}], [])))
    r = subprocess.run([ZMQD, "--config", "file:%s" % bad, "--check"],
                       capture_output=True, text=True)
    assert r.returncode == 1
    assert "service 'nope' does not exist" in r.stderr


def test_channels_follow_the_configuration_live(rabbitmq, queue, zmqd,
                                                zmqctl, redis_store,
                                                tmp_path):
    q2 = queue.name + ".two"
    queue.channel.queue_declare(q2, durable=True)
    try:
        svcs = [{"name": "st", "kind": "redis", "key": "live"}]
        one = {"name": "one", "queue": queue.name, "service": "st"}
        z = zmqd(config(rabbitmq.port, [one], svcs))
        z.wait_log("consuming queue '%s'" % queue.name)

        # a second channel is added: only it starts
        p = tmp_path / "two.json"
        two = {"name": "two", "queue": q2, "service": "st"}
        p.write_text(json.dumps(config(rabbitmq.port, [one, two], svcs)))
        zmqctl("import", "--replace", p, check=0)
        z.wait_log("1 channel(s) started, 0 restarted, 0 stopped")
        z.wait_log("consuming queue '%s'" % q2)
        publish(rabbitmq, q2, [b"via two"])
        r = redis_store.client()
        wait_for(lambda: r.llen("live") == 1)

        # the second channel changes: only it restarts
        p.write_text(json.dumps(config(rabbitmq.port,
                                       [one, dict(two, prefetch=3)], svcs)))
        zmqctl("import", "--replace", p, check=0)
        z.wait_log("0 channel(s) started, 1 restarted, 0 stopped")

        # the second channel is removed: its queue is left alone
        p.write_text(json.dumps(config(rabbitmq.port, [one], svcs)))
        zmqctl("import", "--replace", p, check=0)
        z.wait_log("0 channel(s) started, 0 restarted, 1 stopped")
        time.sleep(0.5)
        publish(rabbitmq, q2, [b"stays"])
        publish(rabbitmq, queue.name, [b"via one"])
        wait_for(lambda: r.llen("live") == 2)
        time.sleep(0.3)
        assert count(rabbitmq, q2) == 1
        assert z.text().count("amqp_def 'rabbit': connected") == 1
        assert_acked(rabbitmq, queue.name)
    finally:
        queue.channel.queue_delete(q2)


def test_competing_consumers_share_a_queue(rabbitmq, queue, zmqd,
                                           redis_store):
    doc = config(rabbitmq.port,
                 [{"name": "in", "queue": queue.name, "service": "st",
                   "prefetch": 5}],
                 [{"name": "st", "kind": "redis", "key": "shared"}])
    a = zmqd(doc)
    b = zmqd()
    a.wait_log("consuming queue")
    b.wait_log("consuming queue")
    publish(rabbitmq, queue.name, [b"%d" % i for i in range(300)])
    r = redis_store.client()
    wait_for(lambda: r.llen("shared") == 300, timeout=30)
    got = r.lrange("shared", 0, -1)
    assert sorted(got) == sorted(b"%d" % i for i in range(300))
    assert a.text().count(" done by ") > 0
    assert b.text().count(" done by ") > 0
    assert a.text().count(" done by ") + b.text().count(" done by ") == 300
    assert_acked(rabbitmq, queue.name)


def test_a_file_configuration_reloads_on_sighup(rabbitmq, queue, zmqd,
                                                redis_store, tmp_path):
    path = tmp_path / "static.json"
    svcs = [{"name": "st", "kind": "redis", "key": "static"}]
    path.write_text(json.dumps(config(rabbitmq.port, [], svcs)))
    z = zmqd(source="file:%s" % path)
    z.wait_log("started with configuration")
    path.write_text(json.dumps(config(
        rabbitmq.port,
        [{"name": "in", "queue": queue.name, "service": "st"}], svcs)))
    z.proc.send_signal(signal.SIGHUP)
    z.wait_log("1 channel(s) started")
    publish(rabbitmq, queue.name, [b"from a file"])
    r = redis_store.client()
    wait_for(lambda: r.llen("static") == 1)
    assert_acked(rabbitmq, queue.name)


def test_worker_processes_share_the_channels(rabbitmq, queue, zmqd,
                                             redis_store):
    z = zmqd(config(rabbitmq.port,
                    [{"name": "in", "queue": queue.name, "service": "st"}],
                    [{"name": "st", "kind": "redis", "key": "workers"}]),
             args=["--workers", "2"])
    z.wait_log("consuming queue", count=2)
    publish(rabbitmq, queue.name, [b"%d" % i for i in range(200)])
    r = redis_store.client()
    wait_for(lambda: r.llen("workers") == 200)
    pids = {line.split("zmqd[")[1].split("]")[0]
            for line in z.text().splitlines() if " done by " in line}
    assert len(pids) == 2
    assert_acked(rabbitmq, queue.name)
    assert z.stop() == 0
    assert "master: every worker has exited" in z.text()


def test_two_failures_then_success_is_delivered_once_and_acked(
        rabbitmq, queue, zmqd, http_endpoint):
    url = "http://127.0.0.1:%d" % http_endpoint.server_address[1]
    answers = [500, 500, 200]
    http_endpoint.status = lambda body: answers.pop(0) if answers else 200
    z = zmqd(config(rabbitmq.port,
                    [{"name": "in", "queue": queue.name, "service": "hook",
                      "retry": FAST_RETRY}],
                    [{"name": "hook", "kind": "http", "outconn": "web"}],
                    {"http_outconn": [{"name": "web", "url": url}]}))
    publish(rabbitmq, queue.name, [b"third time lucky"], message_id="t-1")
    z.wait_log("message 't-1' done by service 'hook' after a retry")
    assert [b for _, b in http_endpoint.requests] == [b"third time lucky"] * 3
    assert_acked(rabbitmq, queue.name)
    conn = rabbitmq.connection()
    ch = conn.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker):
        ch.queue_declare(queue.name + ".dead", passive=True)
    conn.close()


def test_kill_9_mid_stream_then_restart_loses_nothing(rabbitmq, queue, zmqd,
                                                      redis_store):
    doc = config(rabbitmq.port,
                 [{"name": "in", "queue": queue.name, "service": "st",
                   "prefetch": 50}],
                 [{"name": "st", "kind": "redis", "key": "ids"}])
    z = zmqd(doc)
    z.wait_log("consuming queue")
    conn = rabbitmq.connection()
    ch = conn.channel()
    for i in range(10000):
        ch.basic_publish("", queue.name, b"%d" % i,
                         pika.BasicProperties(delivery_mode=2))
    conn.close()
    r = redis_store.client()
    wait_for(lambda: r.llen("ids") > 2000, timeout=30)
    z.proc.kill()                                    # kill -9
    z.proc.wait(10)
    z.killed = True
    z2 = zmqd()
    wait_for(lambda: len(set(r.lrange("ids", 0, -1))) == 10000, timeout=60)
    assert_acked(rabbitmq, queue.name)
    got = r.lrange("ids", 0, -1)
    assert set(got) == {b"%d" % i for i in range(10000)}
    assert len(got) >= 10000                         # at least once
    assert z2.stop() == 0
    assert_acked_after_stop(rabbitmq, queue.name)


def test_a_channel_changed_under_load_leaves_the_other_alone(
        rabbitmq, queue, zmqd, zmqctl, redis_store, tmp_path):
    qb = queue.name + ".b"
    qc = queue.name + ".c"
    for q in (qb, qc):
        queue.channel.queue_declare(q, durable=True)
    try:
        svcs = [{"name": "sa", "kind": "redis", "key": "a"},
                {"name": "sb", "kind": "redis", "key": "b"},
                {"name": "sc", "kind": "redis", "key": "c"}]
        a = {"name": "a", "queue": queue.name, "service": "sa"}
        b = {"name": "b", "queue": qb, "service": "sb"}
        z = zmqd(config(rabbitmq.port, [a, b], svcs))
        z.wait_log("consuming queue", count=2)

        stop = threading.Event()
        sent = [0]

        def load():
            conn = rabbitmq.connection()
            ch = conn.channel()
            while not stop.is_set():
                ch.basic_publish("", queue.name, b"%d" % sent[0],
                                 pika.BasicProperties(delivery_mode=2))
                sent[0] += 1
            conn.close()

        t = threading.Thread(target=load)
        t.start()
        try:
            time.sleep(0.5)
            # channel b moves to a new queue and a new service
            p = tmp_path / "moved.json"
            p.write_text(json.dumps(config(
                rabbitmq.port, [a, dict(b, queue=qc, service="sc")], svcs)))
            zmqctl("import", "--replace", p, check=0)
            z.wait_log("0 channel(s) started, 1 restarted, 0 stopped")
            z.wait_log("consuming queue '%s'" % qc)
            time.sleep(0.5)
        finally:
            stop.set()
            t.join()

        publish(rabbitmq, qc, [b"to c"])
        r = redis_store.client()
        wait_for(lambda: r.llen("a") == sent[0] and r.llen("c") == 1,
                 timeout=30)
        # a was never restarted and its connection never dropped
        assert z.text().count("consuming queue '%s'" % queue.name) == 1
        assert "connection lost" not in z.text()
        assert r.lrange("a", 0, -1) == [b"%d" % i for i in range(sent[0])]
        assert_acked(rabbitmq, queue.name)
        assert_acked(rabbitmq, qc)
    finally:
        for q in (qb, qc):
            queue.channel.queue_delete(q)
