"""The fleet (issue 19, item 3): every gateway following one store reports
itself into Redis with a time to live, and zmq_status shows, per instance,
the configuration version it runs next to the store's."""

import json
import time

import pytest
import requests

from conftest import amqp_config

STATUS = "location = /zmq/status { zmq_status; }\n"


def gateway(nginx_factory, zmqctl, redis, name, interval="1s", workers=2,
            extra=""):
    ngx = nginx_factory(
        http="zmq_key_file %s;\nzmq_config redis://127.0.0.1:%d/0;\n"
             "zmq_config_poll 200ms;\nzmq_fleet_interval %s;\n%s%s" % (
                 zmqctl.env["ZMQ_KEY_FILE"], redis.port, interval,
                 "zmq_instance %s;\n" % name if name else "", extra),
        server=STATUS, workers=workers)
    return ngx


def status(ngx):
    return requests.get(ngx.url + "/zmq/status", timeout=5).json()


def wait_fleet(ngx, pred, timeout=15.0):
    """The first fleet ngx's status shows for which pred holds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = status(ngx).get("fleet")
        if last is not None and pred(last):
            return last
        time.sleep(0.1)
    raise AssertionError("fleet: %s" % json.dumps(last, indent=1))


def by_instance(fleet):
    return {(e["kind"], e["instance"]): e for e in fleet["instances"]}


def import_config(zmqctl, tmp_path, doc):
    p = tmp_path / ("c%d.json" % time.monotonic_ns())
    p.write_text(json.dumps(doc))
    r = zmqctl("import", "--replace", p, check=0)
    return int(r.stdout.rsplit("version", 1)[1])


@pytest.fixture
def store_v1(zmqctl, redis_store, rabbitmq, tmp_path):
    return import_config(zmqctl, tmp_path, amqp_config(rabbitmq.port, {
        "svc": {"routing_key": "q"}}))


def test_two_gateways_see_each_other_and_a_change(
        nginx_factory, zmqctl, redis_store, rabbitmq, store_v1, tmp_path):
    # each started before the next is made: a port is chosen when an
    # instance is made, and is only taken when it starts
    a = gateway(nginx_factory, zmqctl, redis_store, "gw-a")
    a.start()
    b = gateway(nginx_factory, zmqctl, redis_store, "gw-b", workers=1)
    b.start()

    def both_at(version):
        def pred(fleet):
            es = by_instance(fleet)
            return (fleet["store_version"] == version
                    and {("gateway", "gw-a"), ("gateway", "gw-b")}
                    <= set(es)
                    and all(es[("gateway", n)]["version"] == version
                            and es[("gateway", n)]["lag"] == 0
                            for n in ("gw-a", "gw-b")))
        return pred

    fleet = wait_fleet(a, both_at(store_v1))
    es = by_instance(fleet)
    ea = es[("gateway", "gw-a")]
    assert ea["workers"] == 2 and es[("gateway", "gw-b")]["workers"] == 1
    assert ea["state"] == "connected"
    assert ea["interval"] == 1
    assert ea["pid"] == int(open(a.dir + "/nginx.pid").read())
    assert ea["host"]
    assert 0 <= ea["age"] <= 3
    # b shows the same fleet
    wait_fleet(b, both_at(store_v1))

    # a change through zmqctl reaches both, and both say so
    v2 = import_config(zmqctl, tmp_path, amqp_config(rabbitmq.port, {
        "svc": {"routing_key": "q2"}}))
    assert v2 > store_v1
    wait_fleet(a, both_at(v2))
    wait_fleet(b, both_at(v2))

    # the entries in Redis, read with an independent client
    r = redis_store.client()
    members = {m.decode() for m in r.zrange("zmq:fleet", 0, -1)}
    assert {"gateway:gw-a", "gateway:gw-b"} <= members
    ttl = r.ttl("zmq:fleet:gateway:gw-a")
    assert 0 < ttl <= 3


def test_a_stopped_gateway_leaves_the_fleet(
        nginx_factory, zmqctl, redis_store, rabbitmq, store_v1):
    # each started before the next is made: a port is chosen when an
    # instance is made, and is only taken when it starts
    a = gateway(nginx_factory, zmqctl, redis_store, "gw-a")
    a.start()
    b = gateway(nginx_factory, zmqctl, redis_store, "gw-b", workers=1)
    b.start()
    wait_fleet(a, lambda f: ("gateway", "gw-b") in by_instance(f))

    b.stop()
    # its entry expires (ttl: three intervals), then a's next read has it
    # gone; the key itself is gone from Redis
    wait_fleet(a, lambda f: ("gateway", "gw-b") not in by_instance(f)
               and ("gateway", "gw-a") in by_instance(f), timeout=15)
    assert redis_store.client().get("zmq:fleet:gateway:gw-b") is None


def test_a_lagging_gateway_shows_its_lag(
        nginx_factory, zmqctl, redis_store, rabbitmq, store_v1, tmp_path):
    """A gateway that refuses a snapshot keeps running the last good one:
    the fleet shows it behind the store."""
    a = gateway(nginx_factory, zmqctl, redis_store, "gw-a")
    a.start()
    wait_fleet(a, lambda f: by_instance(f).get(
        ("gateway", "gw-a"), {}).get("version") == store_v1)

    # an object that does not validate, written behind zmqctl's back: the
    # snapshot is refused whole
    r = redis_store.client()
    r.set("zmq:obj:service:broken", b'{"name": "broken", "kind": "nope"}')
    r.sadd("zmq:index:service", "broken")
    v = r.incr("zmq:version")
    r.publish("zmq:events", json.dumps({"version": v, "kind": "service",
                                        "name": "broken", "op": "put"}))

    fleet = wait_fleet(a, lambda f: f["store_version"] == v and by_instance(
        f).get(("gateway", "gw-a"), {}).get("lag") == v - store_v1)
    assert by_instance(fleet)[("gateway", "gw-a")]["version"] == store_v1
    a.forget_problems()


def test_default_instance_name_and_garbage_in_the_store(
        nginx_factory, zmqctl, redis_store, rabbitmq, store_v1):
    """Without zmq_instance: host/master-pid. Entries the store holds that
    are not entries (another program, an attacker with Redis access) are
    left out of the fleet, never break zmq_status."""
    r = redis_store.client()
    far = int(time.time()) + 3600
    for member, value in [("gateway:junk", b"not json"),
                          ("gateway:arr", b"[1,2]"),
                          ("gateway:big", b"{" + b" " * 5000 + b"}"),
                          ("zmqd:noversion",
                           b'{"kind":"zmqd","instance":"x"}')]:
        r.set("zmq:fleet:" + member, value)
        r.zadd("zmq:fleet", {member: far})

    a = gateway(nginx_factory, zmqctl, redis_store, None)
    a.start()
    pid = int(open(a.dir + "/nginx.pid").read())
    fleet = wait_fleet(a, lambda f: len(f["instances"]) >= 1)
    assert [e["instance"].rsplit("/", 1)[1] for e in fleet["instances"]] \
        == [str(pid)]
    assert fleet["instances"][0]["kind"] == "gateway"


def test_fleet_off_and_bad_directives(nginx_factory, zmqctl, redis_store,
                                      store_v1):
    a = gateway(nginx_factory, zmqctl, redis_store, "gw-off", interval="0")
    a.start()
    # the follower is at the store's version, and no entry was written
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        ws = status(a)["workers"]
        if all(w["config_version"] == store_v1 for w in ws):
            break
        time.sleep(0.05)
    time.sleep(1.5)     # more than a would-be interval
    assert "fleet" not in status(a)
    assert redis_store.client().zcard("zmq:fleet") == 0

    for bad, why in [("zmq_instance 'a b';", "only letters"),
                     ("zmq_instance %s;" % ("x" * 128), "1-127"),
                     ("zmq_fleet_interval 500ms;", "at least 1s")]:
        ngx = nginx_factory(
            http="zmq_config redis://127.0.0.1:%d/0;\n%s" % (
                redis_store.port, bad), server=STATUS)
        rc, out = ngx.test_config()
        assert rc != 0 and why in out, (bad, out)


# ------------------------------------------------------- zmqd and zmqctl

from zmqd_helpers import zmqd  # noqa: E402,F401  (the fixture)


def zmqctl_fleet(zmqctl):
    r = zmqctl("fleet", "--json")
    assert r.returncode in (0, 1), r.stderr
    return json.loads(r.stdout), r.returncode


def test_three_gateways_and_two_zmqd_apply_one_change(
        nginx_factory, zmqctl, zmqd, redis_store, rabbitmq, store_v1,
        tmp_path):
    """Issue 19's fleet: three gateway instances (own prefixes and ports)
    and two zmqd processes follow one Redis; one change, all apply it and
    say so; one gateway stopped, the fleet shows it gone after its TTL."""
    gws = []
    for i in range(3):
        # each started before the next is made (its port is taken then)
        gws.append(gateway(nginx_factory, zmqctl, redis_store, "gw-%d" % i,
                           workers=1))
        gws[-1].start()
    z1 = zmqd(args=("--instance", "side-1", "--fleet-interval", "1"))
    z2 = zmqd(args=("--fleet-interval", "1"))
    a = gws[0]

    def everyone_at(version):
        def pred(fleet):
            es = by_instance(fleet)
            kinds = sorted(k for k, _ in es)
            return (fleet["store_version"] == version
                    and kinds == ["gateway"] * 3 + ["zmqd"] * 2
                    and ("zmqd", "side-1") in es
                    and all(e["version"] == version and e["lag"] == 0
                            for e in es.values()))
        return pred

    fleet = wait_fleet(a, everyone_at(store_v1))
    es = by_instance(fleet)
    assert es[("zmqd", "side-1")]["pid"] == z1.proc.pid
    unnamed = [e for (k, n), e in es.items() if k == "zmqd" and n != "side-1"]
    assert unnamed[0]["instance"].endswith("/%d" % z2.proc.pid)
    assert unnamed[0]["interval"] == 1

    # zmqctl sees the same, and exits 0: nobody lags
    doc, rc = zmqctl_fleet(zmqctl)
    assert rc == 0
    assert {(e["kind"], e["instance"]) for e in doc["instances"]} == set(es)
    table = zmqctl("fleet", check=0).stdout
    assert "store version %d, 5 instances" % store_v1 in table
    assert "side-1" in table and "gw-2" in table

    # one change through zmqctl: every gateway and both zmqd apply it
    v2 = import_config(zmqctl, tmp_path, amqp_config(rabbitmq.port, {
        "svc": {"routing_key": "q2"}}))
    for g in gws:
        wait_fleet(g, everyone_at(v2))
        assert all(w["config_version"] == v2 for w in status(g)["workers"])

    # a gateway stopped and a zmqd stopped leave the fleet after their TTL
    gws[2].stop()
    z1.proc.send_signal(15)
    z1.proc.wait(20)
    fleet = wait_fleet(a, lambda f: ("gateway", "gw-2") not in by_instance(f)
                       and ("zmqd", "side-1") not in by_instance(f))
    assert {("gateway", "gw-0"), ("gateway", "gw-1")} <= set(
        by_instance(fleet))
    assert redis_store.client().get("zmq:fleet:gateway:gw-2") is None


def test_zmqctl_fleet_exits_1_when_an_instance_lags(zmqctl, redis_store):
    r = redis_store.client()
    r.set("zmq:version", 9)
    now = int(time.time())
    for name, version in (("ok", 9), ("behind", 7),
                          ("hostile", -9223372036854775808)):
        entry = {"kind": "zmqd", "instance": name, "host": "h\x1b[31m",
                 "pid": 1, "version": version, "max_version": version,
                 "state": "connected", "workers": 1, "started": now,
                 "reported": now, "interval": 5}
        r.set("zmq:fleet:zmqd:" + name, json.dumps(entry), ex=60)
        r.zadd("zmq:fleet", {"zmqd:" + name: now + 60})
    doc, rc = zmqctl_fleet(zmqctl)
    assert rc == 1
    es = {e["instance"]: e for e in doc["instances"]}
    assert es["behind"]["lag"] == 2 and es["ok"]["lag"] == 0
    # a version no reporter writes (its lag would overflow): left out
    assert "hostile" not in es
    # a control character from the store never reaches the terminal
    assert es["ok"]["host"] == "?"
    out = zmqctl("fleet", check=1).stdout
    assert "\x1b" not in out

    r = zmqctl("fleet", "extra")
    assert r.returncode == 2
    r = zmqctl("list", "--json")
    assert r.returncode == 2 and "--json applies to fleet" in r.stderr
