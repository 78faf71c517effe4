"""zmqd when its broker restarts and when its configuration Redis goes
away: it reconnects and finishes, or keeps going on what it knows."""

import json
import os
import signal
import subprocess
import threading
import time

import pika
import pytest

from conftest import RabbitServer, RedisServer
from test_zmqd import Zmqd, config, http_endpoint, publish, wait_for  # noqa: F401


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    server = RabbitServer(str(tmp_path_factory.mktemp("zmqd-outage")))
    yield server
    server.close()


def test_broker_restart_during_consumption(broker, zmqctl, redis_store,
                                           tmp_path):
    conn = broker.connection()
    conn.channel().queue_declare("work", durable=True)
    conn.close()
    p = tmp_path / "c.json"
    p.write_text(json.dumps(config(
        broker.port, [{"name": "in", "queue": "work", "service": "st",
                       "prefetch": 20}],
        [{"name": "st", "kind": "redis", "key": "work"}])))
    zmqctl("import", p, check=0)
    z = Zmqd(zmqctl, redis_store.url, str(tmp_path))
    try:
        z.wait_log("consuming queue")
        publish(broker, "work", [b"%d" % i for i in range(3000)])
        r = redis_store.client()
        wait_for(lambda: r.llen("work") > 300, timeout=30)

        broker.stop()
        broker.start()
        z.wait_log("connected to", count=2, timeout=60)
        wait_for(lambda: len(set(r.lrange("work", 0, -1))) == 3000,
                 timeout=60)
        assert set(r.lrange("work", 0, -1)) == {b"%d" % i
                                                for i in range(3000)}
    finally:
        assert z.stop() == 0, z.text()
        z.log.close()


def test_redis_outage_keeps_zmqd_on_its_last_configuration(
        broker, zmqctl, tmp_path, http_endpoint):
    redis = RedisServer(str(tmp_path))
    z = None
    try:
        zmqctl.env["ZMQ_REDIS"] = redis.url
        zmqctl("keygen", "--force", check=0)
        conn = broker.connection()
        conn.channel().queue_declare("hooked", durable=True)
        conn.close()
        url = "http://127.0.0.1:%d" % http_endpoint.server_address[1]
        p = tmp_path / "c.json"
        p.write_text(json.dumps(config(
            broker.port, [{"name": "in", "queue": "hooked",
                           "service": "hook"}],
            [{"name": "hook", "kind": "http", "outconn": "web"}],
            {"http_outconn": [{"name": "web", "url": url}]})))
        zmqctl("import", p, check=0)
        z = Zmqd(zmqctl, redis.url, str(tmp_path))
        z.wait_log("consuming queue")

        redis.stop()
        z.wait_log("running on configuration version")
        publish(broker, "hooked", [b"while redis is down"])
        wait_for(lambda: http_endpoint.requests)
        assert http_endpoint.requests[0][1] == b"while redis is down"
    finally:
        if z is not None:
            assert z.stop() == 0, z.text()
            z.log.close()
        redis.stop()


def test_a_hanging_configuration_redis_does_not_slow_consumption(
        broker, zmqctl, redis_store, tmp_path):
    """The configuration's Redis stops answering (SIGSTOP): following it
    waits on its own thread; consumption goes on at the same pace."""
    redis = RedisServer(str(tmp_path))
    z = load = None
    stopped = False
    done = threading.Event()
    try:
        zmqctl.env["ZMQ_REDIS"] = redis.url
        zmqctl("keygen", "--force", check=0)
        conn = broker.connection()
        conn.channel().queue_declare("flow", durable=True)
        conn.close()
        p = tmp_path / "c.json"
        p.write_text(json.dumps(config(
            broker.port, [{"name": "in", "queue": "flow", "service": "st",
                           "prefetch": 100}],
            [{"name": "st", "kind": "redis", "key": "flow",
              "url": redis_store.url}])))
        zmqctl("import", p, check=0)
        load = threading.Thread(target=publish_until, args=(broker, "flow",
                                                            done))
        load.start()
        z = Zmqd(zmqctl, redis.url, str(tmp_path))
        z.wait_log("consuming queue")
        r = redis_store.client()
        wait_for(lambda: r.llen("flow") > 500, timeout=30)

        n0 = r.llen("flow")
        time.sleep(3)
        before = r.llen("flow") - n0

        os.kill(redis.proc.pid, signal.SIGSTOP)
        stopped = True
        time.sleep(0.6)                 # zmqd's next look at the store
        n1 = r.llen("flow")
        time.sleep(3)
        during = r.llen("flow") - n1
        assert before > 100, before
        assert during >= 0.3 * before, (before, during)
    finally:
        done.set()
        if load is not None:
            load.join()
        if stopped:
            os.kill(redis.proc.pid, signal.SIGCONT)
        if z is not None:
            assert z.stop() == 0, z.text()
            z.log.close()
        redis.stop()
        conn = broker.connection()
        conn.channel().queue_delete("flow")
        conn.close()


def publish_until(broker, queue, done):
    """Publishes as fast as one pika connection does, until done: zmqd
    keeps up with it while it is healthy."""
    conn = broker.connection()
    ch = conn.channel()
    i = 0
    while not done.is_set():
        ch.basic_publish("", queue, b"%d" % i,
                         pika.BasicProperties(delivery_mode=1))
        i += 1
    conn.close()


def test_an_idle_publishing_connection_is_replaced_after_a_broker_restart(
        broker, zmqctl, redis_store, tmp_path):
    """The publishing connection broke while idle (the broker restarted):
    the heartbeat thread notices, and the next publish opens a new one
    instead of failing once on the dead one."""
    conn = broker.connection()
    for q in ("fwd.in", "fwd.out"):
        conn.channel().queue_declare(q, durable=True)
    conn.close()
    doc = config(broker.port,
                 [{"name": "in", "queue": "fwd.in", "service": "fwd"}],
                 [{"name": "fwd", "kind": "publish", "outconn": "out",
                   "routing_key": "fwd.out"}])
    doc["amqp_def"][0]["heartbeat"] = 2
    p = tmp_path / "c.json"
    p.write_text(json.dumps(doc))
    zmqctl("import", "--replace", p, check=0)
    z = Zmqd(zmqctl, redis_store.url, str(tmp_path))
    try:
        z.wait_log("consuming queue")
        publish(broker, "fwd.in", [b"before"], message_id="b-1")
        z.wait_log("message 'b-1' done")
        broker.stop()
        broker.start()
        z.wait_log("consuming queue", count=2, timeout=60)
        z.wait_log("cannot send a heartbeat", timeout=15)
        publish(broker, "fwd.in", [b"after"], message_id="a-1")
        z.wait_log("message 'a-1' done")
        assert "message 'a-1' failed" not in z.text(), z.text()
    finally:
        assert z.stop() == 0, z.text()
        z.log.close()
        conn = broker.connection()
        for q in ("fwd.in", "fwd.out"):
            conn.channel().queue_delete(q)
        conn.close()
