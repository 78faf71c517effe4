"""Startup services in zmqd (issue 14, item 4): a startup object's service
is invoked once zmqd has loaded its configuration and connected, with the
payload (inline, or from payload_file as a path or Zato's file://path) as
the body. when "each" runs in every zmqd process; when "first" once per
cluster start, guarded by the membership set zmq:zmqd:members in Redis. A
missing payload file is logged with its path and skipped; every invocation
is bounded. Checked with redis-py and pika against real servers."""

import json
import os
import socket
import time

from conftest import register_input_file
from test_zmqd import Zmqd, assert_acked, config, publish, wait_for
from zmqd_helpers import zmqd  # noqa: F401


MEMBERS = "zmq:zmqd:members"


def doc(rabbitmq, queue, startup, services=(), extra=None):
    """A channel on queue into the redis service 'st' (key 'got'), the
    redis service 'boot' (key 'boot') for startup objects, and startup."""
    d = config(rabbitmq.port,
               [{"name": "in", "queue": queue.name, "service": "st"}],
               [{"name": "st", "kind": "redis", "key": "got"},
                {"name": "boot", "kind": "redis", "key": "boot"}]
               + list(services))
    d["startup"] = startup
    d.update(extra or {})
    return d


def startup_lines(z, name):
    return [ln for ln in z.text().splitlines() if "startup '%s'" % name in ln]


def test_inline_payload_to_redis_and_to_a_queue(rabbitmq, queue, redis_store,
                                                zmqd, zmqctl, tmp_path):
    """An inline payload reaches a redis service (RPUSHed as is) and a
    publish service (a message on another queue, seen with pika); the
    result is logged; the channel is consumed afterwards as ever."""
    out = queue.name + ".boot"
    queue.channel.queue_declare(out, durable=True)
    try:
        payload = json.dumps({"hello": "world", "n": 1})
        z = zmqd(d := doc(rabbitmq, queue, [
            {"name": "r", "service": "boot", "payload": payload},
            {"name": "p", "service": "pub", "payload": "to the queue",
             "when": "each"}],
            [{"name": "pub", "kind": "publish", "outconn": "out",
              "routing_key": out, "mandatory": True}]))
        z.wait_log("startup 'p' (when each): service 'pub' done")
        z.wait_log("startup 'r' (when first): service 'boot' done")
        r = redis_store.client()
        assert r.lrange("boot", 0, -1) == [payload.encode()]

        m, props, body = queue.channel.basic_get(out, auto_ack=True)
        assert m is not None and body == b"to the queue"
        assert props.message_id == "startup:p"
        assert queue.channel.basic_get(out, auto_ack=True)[0] is None

        # the channel works after the startup services
        publish(rabbitmq, queue.name, [b"one", b"two"])
        wait_for(lambda: r.llen("got") == 2)
        assert_acked(rabbitmq, queue.name)
        # a new configuration does not run them again: they run at start
        d["service"].append({"name": "more", "kind": "redis", "key": "m"})
        p = tmp_path / "more.json"
        p.write_text(json.dumps(d))
        zmqctl("import", "--replace", p, check=0)
        z.wait_log("configuration version %d applied" % (
            int(r.get("zmq:version")),))
        publish(rabbitmq, queue.name, [b"three"])
        wait_for(lambda: r.llen("got") == 3)
        assert r.llen("boot") == 1
        assert queue.channel.basic_get(out, auto_ack=True)[0] is None
    finally:
        queue.channel.queue_delete(out)


def test_payload_file_as_path_and_as_file_url(rabbitmq, queue, redis_store,
                                              zmqd, tmp_path):
    """payload_file as a plain path and as file://path, and an inline
    payload file://path (Zato's way): each is the file's bytes."""
    files = {}
    for n in ("a", "b", "c"):
        p = tmp_path / ("%s.json" % n)
        p.write_bytes(b'{"file": "%s"}\n\x00end' % n.encode())
        files[n] = p
    z = zmqd(doc(rabbitmq, queue, [
        {"name": "a_plain", "service": "boot", "payload_file": str(files["a"])},
        {"name": "b_url", "service": "boot",
         "payload_file": "file://" + str(files["b"])},
        {"name": "c_inline", "service": "boot",
         "payload": "file://" + str(files["c"])}]))
    z.wait_log("startup 'c_inline' (when first): service 'boot' done")
    assert redis_store.client().lrange("boot", 0, -1) == [
        files[n].read_bytes() for n in ("a", "b", "c")]
    for name, n in (("a_plain", "a"), ("b_url", "b"), ("c_inline", "c")):
        assert "from %s)" % files[n] in startup_lines(z, name)[0]


def test_missing_payload_file_is_logged_and_skipped(rabbitmq, queue,
                                                    redis_store, zmqd,
                                                    tmp_path):
    """A payload file that is not there: an error with its path, the
    service not invoked, the next startup service runs, zmqd consumes."""
    missing = tmp_path / "nowhere" / "boot.json"
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    z = zmqd(doc(rabbitmq, queue, [
        {"name": "a_missing", "service": "boot",
         "payload_file": "file://" + str(missing)},
        {"name": "b_fifo", "service": "boot", "payload_file": str(fifo)},
        {"name": "c_ok", "service": "boot", "payload": "after"}]))
    z.wait_log("startup 'c_ok' (when first): service 'boot' done")
    text = z.text()
    assert ("startup 'a_missing' (when first): service 'boot' not invoked: "
            "payload_file '%s' cannot be read: No such file or directory"
            % missing) in text
    # a FIFO is refused, never waited on
    assert ("payload_file '%s' cannot be read: not a regular file" % fifo) \
        in text
    r = redis_store.client()
    assert r.lrange("boot", 0, -1) == [b"after"]

    publish(rabbitmq, queue.name, [b"x", b"y", b"z"])
    wait_for(lambda: r.llen("got") == 3)
    assert_acked(rabbitmq, queue.name)
    assert z.proc.poll() is None


def test_first_once_per_cluster_start_each_in_every_process(
        rabbitmq, queue, redis_store, zmqd):
    """Two zmqd started together: 'first' runs in one of them, 'each' in
    both. A third joining the running cluster runs only 'each'. All
    stopped, then one started again: a cluster start, 'first' runs
    again."""
    r = redis_store.client()
    d = doc(rabbitmq, queue, [
        {"name": "once", "service": "boot", "payload": "first"},
        {"name": "every", "service": "each_svc", "payload": "each",
         "when": "each"}],
        [{"name": "each_svc", "kind": "redis", "key": "each"}])
    z1 = zmqd(d)
    z2 = zmqd()
    for z in (z1, z2):
        z.wait_log("startup 'every' (when each): service 'each_svc' done")
        z.wait_log("startup 'once' (when first)")
    assert r.lrange("boot", 0, -1) == [b"first"]
    assert r.lrange("each", 0, -1) == [b"each", b"each"]
    ran = [z for z in (z1, z2) if "startup 'once' (when first): service "
           "'boot' done" in z.text()]
    assert len(ran) == 1
    other = z2 if ran[0] is z1 else z1
    assert "startup 'once' (when first): not run here: 1 other zmqd " \
        "process(es) were alive" in other.text()
    assert r.zcard(MEMBERS) == 2

    # joining a running cluster: not a cluster start
    z3 = zmqd()
    z3.wait_log("startup 'every' (when each): service 'each_svc' done")
    z3.wait_log("startup 'once' (when first): not run here: 2 other")
    assert r.llen("boot") == 1 and r.llen("each") == 3

    # all stopped cleanly, then a start: the cluster starts again
    for z in (z1, z2, z3):
        assert z.stop() == 0
    assert r.zcard(MEMBERS) == 0
    z4 = zmqd()
    z4.wait_log("startup 'once' (when first): service 'boot' done")
    z4.wait_log("startup 'every' (when each): service 'each_svc' done")
    assert r.lrange("boot", 0, -1) == [b"first", b"first"]
    assert r.llen("each") == 4
    assert "this one starts the cluster" in z4.text()


def test_workers_are_processes_of_the_cluster(rabbitmq, queue, redis_store,
                                              zmqd):
    """--workers 3: 'each' runs in every worker, 'first' in one."""
    r = redis_store.client()
    z = zmqd(doc(rabbitmq, queue, [
        {"name": "once", "service": "boot", "payload": "first"},
        {"name": "every", "service": "each_svc", "payload": "each",
         "when": "each"}],
        [{"name": "each_svc", "kind": "redis", "key": "each"}]),
        args=["--workers", "3"])
    z.wait_log("startup 'every' (when each): service 'each_svc' done",
               count=3)
    z.wait_log("startup 'once' (when first)", count=3)
    assert r.lrange("boot", 0, -1) == [b"first"]
    assert r.llen("each") == 3
    assert r.zcard(MEMBERS) == 3


def test_a_member_killed_keeps_the_cluster_alive_until_it_expires(
        rabbitmq, queue, redis_store, zmqd):
    """A zmqd killed without leaving is still a member for 10 s: a
    replacement started at once joins a running cluster (no 'first');
    after the membership expired, a start is a cluster start."""
    r = redis_store.client()
    z1 = zmqd(doc(rabbitmq, queue, [
        {"name": "once", "service": "boot", "payload": "first"}]))
    z1.wait_log("startup 'once' (when first): service 'boot' done")
    z1.proc.kill()
    z1.proc.wait(10)
    z1.killed = True
    z2 = zmqd()
    z2.wait_log("startup 'once' (when first): not run here: 1 other")
    assert z2.stop() == 0
    assert r.zcard(MEMBERS) == 1            # the killed one's
    # the killed one's membership expires 10 s after its last renewal
    time.sleep(10.5)
    z3 = zmqd()
    z3.wait_log("startup 'once' (when first): service 'boot' done")
    assert r.llen("boot") == 2


def test_a_hanging_service_is_bounded(rabbitmq, queue, redis_store, zmqd):
    """An http service whose endpoint accepts and never answers: the
    startup service fails after the http_outconn's timeout (1 s), the
    next one runs, and zmqd consumes."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        url = "http://127.0.0.1:%d" % silent.getsockname()[1]
        z = zmqd(doc(rabbitmq, queue, [
            {"name": "a_hang", "service": "hook", "payload": "{}",
             "when": "each"},
            {"name": "b_ok", "service": "boot", "payload": "after"}],
            [{"name": "hook", "kind": "http", "outconn": "web"}],
            {"http_outconn": [{"name": "web", "url": url, "timeout": 1000,
                               "tls": False}]}))
        z.wait_log("startup 'b_ok' (when first): service 'boot' done")
        line = startup_lines(z, "a_hang")[0]
        assert "service 'hook' failed after" in line, line
        ms = float(line.split("failed after ")[1].split(" ms")[0])
        assert 900 <= ms < 5000, line
        r = redis_store.client()
        publish(rabbitmq, queue.name, [b"x"])
        wait_for(lambda: r.llen("got") == 1)
    finally:
        silent.close()


def test_first_without_redis_is_not_run_each_is(rabbitmq, queue, redis_store,
                                                zmqctl, tmp_path):
    """A file configuration and no Redis for the cluster lock ($ZMQ_REDIS
    answers nothing): 'first' is not run (an error says why), 'each'
    runs, zmqd consumes and stops cleanly."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    dead = "redis://127.0.0.1:%d/0" % s.getsockname()[1]
    s.close()
    d = doc(rabbitmq, queue, [
        {"name": "once", "service": "boot", "payload": "first"},
        {"name": "every", "service": "boot", "payload": "each",
         "when": "each"}])
    for svc in d["service"]:
        svc["url"] = redis_store.url        # not the configuration's Redis
    path = tmp_path / "conf.json"
    path.write_text(json.dumps(d))
    register_input_file(str(path))

    class Ctl:
        env = dict(zmqctl.env, ZMQ_REDIS=dead)
    z = Zmqd(Ctl, "file:" + str(path), str(tmp_path))
    try:
        z.wait_log("startup 'every' (when each): service 'boot' done")
        z.wait_log("startup 'once' (when first): not run: the cluster "
                   "lock could not be taken")
        assert "cluster: cannot join" in z.text()
        r = redis_store.client()
        assert r.lrange("boot", 0, -1) == [b"each"]
        publish(rabbitmq, queue.name, [b"x"])
        wait_for(lambda: r.llen("got") == 1)
        assert z.stop() == 0, z.text()
        assert "Sanitizer" not in z.text() and "runtime error:" not in \
            z.text(), z.text()
    finally:
        if z.proc.poll() is None:
            z.proc.kill()
            z.proc.wait(10)
        z.log.close()
