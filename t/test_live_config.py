"""Live configuration from Redis: every worker follows zmqctl's changes
without a reload, keeps serving through Redis outages (also across an NGINX
restart, from its disk cache), refuses corrupt snapshots, and routes REST
channels that come and go."""

import concurrent.futures
import json
import time
import uuid

import pytest
import requests

from conftest import RedisServer, amqp_config

STATUS = "location = /zmq/status { zmq_status; }\n"
PUB = "location = /pub { zmq_service svc; }\n"
ROUTER = "location /api/ { zmq_router; }\n"


class Live:
    """NGINX following a Redis, and zmqctl writing to it."""

    def __init__(self, nginx_factory, zmqctl, redis, tmp_path, locations,
                 workers=2, http=""):
        self.zmqctl = zmqctl
        self.tmp = tmp_path
        self.redis = redis
        self.ngx = nginx_factory(
            http="zmq_key_file %s;\nzmq_config redis://127.0.0.1:%d/0;\n"
                 "zmq_config_poll 500ms;\n%s" % (zmqctl.env["ZMQ_KEY_FILE"],
                                                 redis.port, http),
            server=STATUS + locations, workers=workers)
        self.url = self.ngx.url

    def start(self):
        self.ngx.start()
        return self

    def write(self, doc, replace=True):
        p = self.tmp / ("c%s.json" % uuid.uuid4().hex[:6])
        p.write_text(json.dumps(doc))
        args = ["import"] + (["--replace"] if replace else []) + [p]
        r = self.zmqctl(*args, check=0)
        return int(r.stdout.rsplit("version", 1)[1])

    def status(self):
        return requests.get(self.url + "/zmq/status", timeout=5).json()

    def wait_version(self, version, timeout=10.0, workers=None):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ws = self.status()["workers"]
            if (workers is None or len(ws) == workers) and ws and all(
                    w["config_version"] == version for w in ws):
                return ws
            time.sleep(0.05)
        raise AssertionError("workers at %s, not %s" % (
            [w["config_version"] for w in self.status()["workers"]],
            version))

    def wait_ready(self, name="out", timeout=20.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = [w["outconns"].get(name, {}).get("state")
                      for w in self.status()["workers"]]
            if states and all(s == "ready" for s in states):
                return
            time.sleep(0.05)
        raise AssertionError("%s is %s" % (name, states))


def post(url, data=b"x", **kw):
    # a new connection each time, so that every worker gets its share
    with requests.Session() as s:
        return s.post(url, data=data, timeout=30, **kw)


@pytest.fixture
def live(nginx_factory, zmqctl, redis_store, tmp_path):
    def make(locations, **kw):
        return Live(nginx_factory, zmqctl, redis_store, tmp_path, locations,
                    **kw)
    return make


def test_a_change_applies_to_every_worker_without_reload(rabbitmq, live,
                                                         queue):
    other = queue.name + ".b"
    queue.channel.queue_declare(other, durable=True)
    try:
        gw = live(PUB, workers=2)
        v = gw.write(amqp_config(rabbitmq.port, {"svc": {
            "routing_key": queue.name}}))
        gw.start()
        gw.wait_version(v, workers=2)
        gw.wait_ready()
        for _ in range(10):
            assert post(gw.url + "/pub").status_code == 202
        assert queue.count() == 10

        master = gw.ngx.proc.pid
        pids = {w["pid"] for w in gw.status()["workers"]}
        v2 = gw.write(amqp_config(rabbitmq.port, {"svc": {
            "routing_key": other}}))
        gw.wait_version(v2, workers=2)
        for _ in range(10):
            assert post(gw.url + "/pub").status_code == 202
        assert queue.channel.queue_declare(
            other, passive=True).method.message_count == 10
        # no reload: the same master and workers
        assert gw.ngx.proc.pid == master
        assert {w["pid"] for w in gw.status()["workers"]} == pids
    finally:
        queue.channel.queue_delete(other)


def test_redefining_a_broker_moves_its_traffic_and_spares_the_rest(
        rabbitmq, live, queue):
    vhost = "v" + uuid.uuid4().hex[:6]
    assert rabbitmq.ctl("add_vhost", vhost).returncode == 0
    assert rabbitmq.ctl("set_permissions", "-p", vhost, "guest", ".*", ".*",
                        ".*").returncode == 0
    import pika
    c2 = pika.BlockingConnection(pika.ConnectionParameters(
        "127.0.0.1", rabbitmq.port, vhost))
    c2.channel().queue_declare(queue.name, durable=True)

    def config(vhost_b):
        doc = amqp_config(rabbitmq.port, {"a": {"routing_key": queue.name}})
        doc["amqp_def"].append({"name": "rabbit-b", "host": "127.0.0.1",
                                "port": rabbitmq.port, "vhost": vhost_b,
                                "username": "guest", "password": "guest"})
        doc["amqp_outconn"].append({"name": "out-b", "def": "rabbit-b"})
        doc["service"].append({"name": "b", "kind": "publish",
                               "outconn": "out-b",
                               "routing_key": queue.name})
        return doc

    try:
        gw = live("location = /a { zmq_service a; }\n"
                  "location = /b { zmq_service b; }\n", workers=1)
        v = gw.write(config("/"))
        gw.start()
        gw.wait_version(v)
        gw.wait_ready("out")
        gw.wait_ready("out-b")
        assert post(gw.url + "/b").status_code == 202
        assert queue.count() == 1

        # A publishes all along while B's definition moves
        stop = []
        codes = []

        def load_a():
            while not stop:
                codes.append(post(gw.url + "/a").status_code)

        with concurrent.futures.ThreadPoolExecutor(1) as ex:
            fut = ex.submit(load_a)
            time.sleep(0.3)
            v2 = gw.write(config(vhost))
            gw.wait_version(v2)
            gw.wait_ready("out-b")
            # A keeps publishing on after B's new connection is ready
            after = len(codes)
            deadline = time.monotonic() + 10
            while len(codes) < after + 20 and time.monotonic() < deadline:
                time.sleep(0.01)
            stop.append(1)
            fut.result()
        assert len(codes) >= after + 20, (after, len(codes))

        assert codes and set(codes) == {202}, set(codes)
        w = gw.status()["workers"][0]["outconns"]
        assert w["out"]["reconnects"] == 0          # A was not disturbed
        assert post(gw.url + "/b").status_code == 202
        moved = c2.channel().queue_declare(
            queue.name, passive=True).method.message_count
        assert moved == 1
        # every 202 for A is in the queue (and B's first message)
        assert queue.count() == len(codes) + 1
    finally:
        c2.close()
        rabbitmq.ctl("delete_vhost", vhost)


def test_rest_channels_come_and_go_live(rabbitmq, live, queue):
    gw = live(ROUTER, workers=2)
    base = amqp_config(rabbitmq.port, {"svc": {
        "routing_key": "%s.{id}" % queue.name}})
    queue.channel.queue_bind  # noqa: B018
    q2 = queue.name + ".42"
    queue.channel.queue_declare(q2, durable=True)
    try:
        v = gw.write(base)
        gw.start()
        gw.wait_version(v, workers=2)
        gw.wait_ready()

        r = post(gw.url + "/api/customers/42")
        assert r.status_code == 404
        assert r.json()["error"] == "not_found"

        doc = dict(base, rest_channel=[{
            "name": "r", "url_path": "/api/customers/{id}",
            "method": "POST", "service": "svc"}])
        v = gw.write(doc)
        gw.wait_version(v, workers=2)
        for _ in range(4):
            assert post(gw.url + "/api/customers/42").status_code == 202
        assert queue.channel.queue_declare(
            q2, passive=True).method.message_count == 4

        r = requests.get(gw.url + "/api/customers/42", timeout=5)
        assert r.status_code == 405
        assert r.headers["Allow"] == "POST"
        assert r.json()["error"] == "method_not_allowed"

        # changed: now PUT, JSON only
        doc["rest_channel"][0].update(method="PUT", data_format="json")
        v = gw.write(doc)
        gw.wait_version(v, workers=2)
        assert post(gw.url + "/api/customers/42").status_code == 405
        with requests.Session() as s:
            assert s.put(gw.url + "/api/customers/42", data=b"{",
                         timeout=10).status_code == 400
            assert s.put(gw.url + "/api/customers/42", data=b"{}",
                         timeout=10).status_code == 202

        # deleted
        v = gw.write(base)
        gw.wait_version(v, workers=2)
        assert requests.put(gw.url + "/api/customers/42", data=b"{}",
                            timeout=5).status_code == 404
    finally:
        queue.channel.queue_delete(q2)


def test_exact_param_and_prefix_routes(rabbitmq, live, queue):
    gw = live(ROUTER, workers=1)
    doc = amqp_config(rabbitmq.port, {"svc": {
        "routing_key": queue.name, "headers": {}}})
    doc["rest_channel"] = [
        {"name": "exact", "url_path": "/api/a/b", "service": "svc"},
        {"name": "param", "url_path": "/api/a/{x}", "service": "svc",
         "method": "PUT"},
        {"name": "prefix", "url_path": "/api/files/*", "service": "svc",
         "method": "ANY"},
    ]
    v = gw.write(doc)
    gw.start()
    gw.wait_version(v)
    gw.wait_ready()
    assert post(gw.url + "/api/a/b").status_code == 202        # exact
    assert requests.put(gw.url + "/api/a/zz", data=b"1",
                        timeout=10).status_code == 202        # param
    assert post(gw.url + "/api/a/zz").status_code == 405
    assert post(gw.url + "/api/files/x/y/z").status_code == 202  # prefix
    assert post(gw.url + "/api/other").status_code == 404
    assert queue.count() == 3


def test_a_secured_rest_channel_demands_its_credentials(rabbitmq, live,
                                                       queue):
    """A REST channel with a security definition is served only to a
    request that proves it (it was refused with 501 before issue 11)."""
    import hashlib
    key = "k" * 43
    gw = live(ROUTER, workers=1)
    doc = amqp_config(rabbitmq.port, {"svc": {"routing_key": queue.name}})
    doc["security"] = [{"name": "s", "type": "apikey", "keys": [
        {"id": "k1", "sha256": hashlib.sha256(key.encode()).hexdigest()}]}]
    doc["rest_channel"] = [{"name": "r", "url_path": "/api/x",
                            "service": "svc", "security": "s"}]
    v = gw.write(doc)
    gw.start()
    gw.wait_version(v)
    gw.wait_ready()
    r = post(gw.url + "/api/x")
    assert r.status_code == 401
    assert r.json()["error"] == "unauthorized"
    assert queue.count() == 0
    r = post(gw.url + "/api/x", headers={"X-API-Key": key})
    assert r.status_code == 202, r.text
    [(_, props, _)] = queue.drain(expect=1)
    assert props.headers["x-zmq-auth"] == "s:k1"


def test_corrupt_data_keeps_the_last_good_snapshot(rabbitmq, live, queue,
                                                   redis_store):
    gw = live(PUB, workers=1)
    v = gw.write(amqp_config(rabbitmq.port, {"svc": {
        "routing_key": queue.name}}))
    gw.start()
    gw.wait_version(v)
    gw.wait_ready()

    c = redis_store.client()
    c.set("zmq:obj:service:svc", "{not json")
    c.incr("zmq:version")
    c.publish("zmq:events", json.dumps({"version": v + 1}))

    deadline = time.monotonic() + 10
    while "zmq:obj:service:svc" not in gw.ngx.error_log():
        assert time.monotonic() < deadline, gw.ngx.error_log()
        time.sleep(0.05)
    assert "invalid JSON" in gw.ngx.error_log()
    w = gw.status()["workers"][0]
    assert w["config_version"] == v                 # still the good one
    assert "zmq:obj:service:svc" in w["error"]
    assert post(gw.url + "/pub").status_code == 202
    assert queue.count() == 1


def test_redis_outages_do_not_stop_publishing(rabbitmq, nginx_factory,
                                              zmqctl, tmp_path, queue):
    redis = RedisServer(str(tmp_path))
    try:
        zmqctl.env["ZMQ_REDIS"] = redis.url
        gw = Live(nginx_factory, zmqctl, redis, tmp_path, PUB, workers=2)
        v = gw.write(amqp_config(rabbitmq.port, {"svc": {
            "routing_key": queue.name}}))
        gw.start()
        gw.wait_version(v, workers=2)
        gw.wait_ready()

        redis.stop()
        deadline = time.monotonic() + 10
        while any(w["source_state"] != "stale"
                  for w in gw.status()["workers"]):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        for _ in range(6):
            assert post(gw.url + "/pub").status_code == 202

        # NGINX restarted while Redis is down: it serves from its cache
        gw.ngx.restart()
        ws = gw.wait_version(v, workers=2)
        assert all(w["source_state"] in ("waiting", "stale") for w in ws)
        gw.wait_ready()
        assert post(gw.url + "/pub").status_code == 202
        assert queue.count() == 7

        # Redis back, empty, then with changed data: the workers catch up
        redis.start()
        other = queue.name + ".c"
        queue.channel.queue_declare(other, durable=True)
        gw.write(amqp_config(rabbitmq.port, {"svc": {
            "routing_key": "nowhere"}}))
        v2 = gw.write(amqp_config(rabbitmq.port, {"svc": {
            "routing_key": other}}))
        assert v2 != v
        ws = gw.wait_version(v2, timeout=15, workers=2)
        assert all(w["source_state"] == "connected" for w in ws)
        assert post(gw.url + "/pub").status_code == 202
        assert queue.channel.queue_declare(
            other, passive=True).method.message_count == 1
        queue.channel.queue_delete(other)
    finally:
        redis.stop()


def test_a_replaced_connection_drains_its_confirms(live, queue):
    from fake_amqp import FakeAmqp
    slow = FakeAmqp(ack_delay=1.5)
    try:
        gw = live(PUB, workers=1)
        doc = amqp_config(slow.port, {"svc": {"routing_key": "q"}})
        v = gw.write(doc)
        gw.start()
        gw.wait_version(v)
        gw.wait_ready()
        with concurrent.futures.ThreadPoolExecutor(1) as ex:
            waiting = ex.submit(post, gw.url + "/pub", b"in flight")
            deadline = time.monotonic() + 5
            while not slow.published and time.monotonic() < deadline:
                time.sleep(0.02)
            # the definition changes while the message waits for its ack
            doc["amqp_def"][0]["heartbeat"] = 20
            v2 = gw.write(doc)
            gw.wait_version(v2)
            names = set(gw.status()["workers"][0]["outconns"])
            assert "out" in names and any("draining" in n for n in names)
            assert waiting.result().status_code == 202
        # drained and closed; the new connection serves
        deadline = time.monotonic() + 5
        while len(gw.status()["workers"][0]["outconns"]) != 1:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert slow.connections == 2
        assert "drained and closed" in gw.ngx.error_log()
    finally:
        slow.close()


def test_the_version_poll_catches_a_missed_event(rabbitmq, live, queue,
                                                 redis_store):
    gw = live(PUB, workers=1)
    doc = amqp_config(rabbitmq.port, {"svc": {"routing_key": "nowhere"}})
    v = gw.write(doc)
    gw.start()
    gw.wait_version(v)
    gw.wait_ready()

    # a write whose event is lost: object and version, no PUBLISH
    c = redis_store.client()
    svc = json.loads(c.get("zmq:obj:service:svc"))
    svc["routing_key"] = queue.name
    c.set("zmq:obj:service:svc", json.dumps(svc))
    c.incr("zmq:version")
    gw.wait_version(v + 1, timeout=5)
    assert post(gw.url + "/pub").status_code == 202
    assert queue.count() == 1


def test_unknown_and_inactive_services_are_answered_clearly(rabbitmq, live,
                                                            queue):
    gw = live(PUB + "location = /other { zmq_service nope; }\n", workers=1)
    doc = amqp_config(rabbitmq.port, {"svc": {"routing_key": queue.name,
                                              "is_active": False}})
    v = gw.write(doc)
    gw.start()
    gw.wait_version(v)
    r = post(gw.url + "/other")
    assert r.status_code == 404 and r.json()["error"] == "unknown_service"
    r = post(gw.url + "/pub")
    assert r.status_code == 503 and r.json()["error"] == "service_inactive"

    doc["service"][0]["is_active"] = True
    v = gw.write(doc)
    gw.wait_version(v)
    gw.wait_ready()
    assert post(gw.url + "/pub").status_code == 202
    assert queue.count() == 1
