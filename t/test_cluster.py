"""A real three-node RabbitMQ cluster (t/rabbit_cluster.py): the gateway's
and zmqd's workers spread their connections over the nodes of a
definition (host, then hosts); quorum queues keep every message the
gateway answered 2xx when the queue's leader node is killed (kill -9)
under load, and the gateway moves to a surviving node without a reload;
zmqd consuming a quorum queue across the kill of its node acks every
message at least once, and reconnects to another node. Checked on the
broker side with pika and rabbitmqctl."""

import http.client
import json
import re
import threading
import time
import uuid

import pytest

from rabbit_cluster import cluster, rabbit_cluster  # noqa: F401
from zmqd_helpers import zmqd  # noqa: F401

PUB = "location = /pub { zmq_service svc; }\n"


def cluster_def(cluster, **kw):
    """An amqp_def naming every node: node 1 as host:port, the others in
    hosts."""
    d = {"name": "rabbit", "host": "127.0.0.1", "port": cluster[0].port,
         "hosts": cluster.addrs[1:], "username": "guest",
         "password": "guest", "heartbeat": 10}
    d.update(kw)
    return d


def gateway_config(cluster, queue):
    return {"amqp_def": [cluster_def(cluster)],
            "amqp_outconn": [{"name": "out", "def": "rabbit"}],
            "service": [{"name": "svc", "kind": "publish", "outconn": "out",
                         "routing_key": queue}]}


def declare_quorum(node, name=None):
    """A quorum queue declared through node (whose node then leads it:
    RabbitMQ's client-local leader placement)."""
    name = name or "qq." + uuid.uuid4().hex[:10]
    conn = node.connection()
    conn.channel().queue_declare(name, durable=True,
                                 arguments={"x-queue-type": "quorum"})
    conn.close()
    return name


def wait_leader(cluster, queue, timeout=30):
    deadline = time.monotonic() + timeout
    while True:
        n = cluster.leader(queue)
        if n is not None and n.running():
            return n
        assert time.monotonic() < deadline, "no leader for %s" % queue
        time.sleep(0.2)


def client_nodes(cluster, expect, timeout=30):
    """The nodes of the cluster's client connections, once there are
    expect of them, sorted."""
    deadline = time.monotonic() + timeout
    while True:
        conns = cluster.connections()
        if len(conns) == expect:
            return sorted(node for _, node, _ in conns)
        assert time.monotonic() < deadline, conns
        time.sleep(0.2)


def queue_counts(node, queue):
    """(ready, unacked, consumers) as the broker counts them."""
    r = node.ctl("list_queues", "-q", "--no-table-headers", "name",
                 "messages_ready", "messages_unacknowledged", "consumers")
    assert r.returncode == 0, r.stdout + r.stderr
    for line in r.stdout.splitlines():
        f = line.split("\t")
        if len(f) == 4 and f[0] == queue:
            return int(f[1]), int(f[2]), int(f[3])
    raise AssertionError("queue %s not listed:\n%s" % (queue, r.stdout))


def drain_ids(node, queue, expect):
    """Every message of the queue, consumed through node: its message ids
    (message_id property) in delivery order."""
    conn = node.connection()
    ch = conn.channel()
    ch.basic_qos(prefetch_count=1000)
    ids = []
    deadline = time.monotonic() + 60
    for m, props, body in ch.consume(queue, auto_ack=True,
                                     inactivity_timeout=2):
        if m is None:
            if len(ids) >= expect or time.monotonic() > deadline:
                break
            continue
        ids.append(props.message_id)
    ch.cancel()
    conn.close()
    return ids


class Load:
    """Concurrent publishers through the gateway: threads, each on a
    kept-alive HTTP connection, each request with a unique X-Message-Id;
    every answer's status is kept by id, with its time."""

    def __init__(self, gw, threads=12):
        self.port = int(gw.url.rsplit(":", 1)[1])
        self.answers = {}               # id -> (status, when)
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.seq = 0
        self.bodies = {}
        self.threads = [threading.Thread(target=self.run, args=(i,),
                                         daemon=True)
                        for i in range(threads)]

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def stop(self):
        self.stopping.set()
        for t in self.threads:
            t.join(60)

    def run(self, i):
        c = None
        n = 0
        while not self.stopping.is_set():
            mid = "cl-%d-%d" % (i, n)
            n += 1
            try:
                if c is None:
                    c = http.client.HTTPConnection("127.0.0.1", self.port,
                                                   timeout=30)
                c.request("POST", "/pub", body=mid.encode(),
                          headers={"X-Message-Id": mid})
                r = c.getresponse()
                body = r.read()
                status = r.status
                if status != 202 and status not in self.bodies:
                    self.bodies[status] = body      # one of each
                if r.getheader("Connection", "").lower() == "close":
                    c.close()
                    c = None
            except (OSError, http.client.HTTPException):
                status = 0              # no answer: counted, never 2xx
                if c is not None:
                    c.close()
                c = None
            with self.lock:
                self.answers[mid] = (status, time.monotonic())
        if c is not None:
            c.close()

    def count(self, pred=lambda s, t: True):
        with self.lock:
            return sum(1 for s, t in self.answers.values() if pred(s, t))


def test_gateway_workers_start_on_different_nodes(cluster, gateway):
    """2 workers, 3 nodes: worker N starts at address N, so the two
    connections are on two different nodes (the broker's own view)."""
    q = declare_quorum(cluster[0])
    gw = gateway(gateway_config(cluster, q), PUB, workers=2)
    nodes = client_nodes(cluster, 2)
    assert nodes == sorted([cluster[0].name, cluster[1].name]), nodes
    log = gw.ngx.error_log()
    assert 'ready on %s' % cluster[0].addr in log, log
    assert 'ready on %s' % cluster[1].addr in log, log


def test_zmqd_workers_start_on_different_nodes(cluster, zmqd, redis_store):
    q = declare_quorum(cluster[0])
    z = zmqd({"amqp_def": [cluster_def(cluster)],
              "service": [{"name": "st", "kind": "redis", "key": "w"}],
              "amqp_channel": [{"name": "in", "def": "rabbit", "queue": q,
                                "service": "st", "prefetch": 10}]},
             args=["--workers", "2"])
    z.wait_log("consuming queue", count=2, timeout=30)
    peers = set(re.findall(r"amqp_def 'rabbit': connected to (\S+)",
                           z.text()))
    assert peers == {cluster[0].addr, cluster[1].addr}, z.text()
    nodes = client_nodes(cluster, 2)
    assert nodes == sorted([cluster[0].name, cluster[1].name]), nodes
    assert z.stop() == 0


def test_quorum_queue_keeps_every_2xx_when_its_leader_is_killed(
        cluster, gateway):
    """Publishing continuously through a 2-worker gateway while the
    quorum queue's leader node, which also holds worker 0's connection,
    is killed with SIGKILL: every answer is 2xx, 503 or 504; every 2xx
    message is in the queue afterwards; the gateway is back on surviving
    nodes and publishing again, without a reload."""
    q = declare_quorum(cluster[0])
    assert wait_leader(cluster, q) is cluster[0]
    gw = gateway(gateway_config(cluster, q), PUB, workers=2)
    assert client_nodes(cluster, 2) == sorted([cluster[0].name,
                                               cluster[1].name])

    load = Load(gw).start()
    try:
        deadline = time.monotonic() + 10
        while load.count(lambda s, t: s == 202) < 300:
            assert time.monotonic() < deadline, load.answers
            time.sleep(0.05)
        killed_at = time.monotonic()
        cluster.kill(0)                     # the leader, and worker 0's node
        # publishing resumes on both workers: each confirms 200 more
        # messages after the failover settled
        time.sleep(2)
        before = [o["confirmed"] for o in gw.outconn()]
        deadline = time.monotonic() + 30
        while True:
            now = [o["confirmed"] for o in gw.outconn()]
            if all(n - b >= 200 for n, b in zip(now, before)):
                break
            assert time.monotonic() < deadline, \
                "publishing did not resume: %s -> %s, %s" % (
                    before, now, gw.outconn())
            time.sleep(0.1)
        resumed_at = time.monotonic()
        time.sleep(0.5)
    finally:
        load.stop()

    statuses = {}
    for s, _ in load.answers.values():
        statuses[s] = statuses.get(s, 0) + 1
    print("answers by status:", statuses)
    for st in sorted(statuses):
        ts = [t - killed_at for s, t in load.answers.values() if s == st]
        print("  %d: %.2f s to %.2f s after the kill" % (st, min(ts),
                                                         max(ts)))
    # 503: in flight on the lost connection, or no connection yet
    # (broker_unavailable), or nacked: RabbitMQ refuses publishes to the
    # quorum queue while it has no leader (and on a channel stuck by that,
    # see ngx_zmq_amqp.c: NGX_HTTP_ZMQ_NACK_RESET, for 1 s); 504: no
    # confirm in time. Issue 19: only 2xx, 503 and 504.
    assert set(statuses) <= {202, 503, 504}, (statuses, load.bodies)
    if 503 in statuses:
        assert json.loads(load.bodies[503])["error"] in (
            "broker_unavailable", "nacked")
    # only during the failover: none before the kill, none once both
    # workers publish again
    late = [t for s, t in load.answers.values() if s != 202]
    if late:
        assert min(late) > killed_at and max(late) < resumed_at, \
            (min(late) - killed_at, max(late) - killed_at,
             resumed_at - killed_at)

    leader = wait_leader(cluster, q)
    assert leader is not cluster[0]
    gw.wait_state("ready")
    nodes = client_nodes(cluster, 2)
    assert cluster[0].name not in nodes, nodes

    ok = {mid for mid, (s, _) in load.answers.items() if s == 202}
    ids = drain_ids(cluster[1], q, len(ok))
    missing = ok - set(ids)
    assert not missing, "%d confirmed messages lost: %s" % (
        len(missing), sorted(missing)[:20])
    # unconfirmed ones may be there too; nothing else is
    assert set(ids) <= set(load.answers), set(ids) - set(load.answers)
    print("2xx %d, in the queue %d (%d duplicates)" % (
        len(ok), len(ids), len(ids) - len(set(ids))))
    gw.ngx.forget_problems()    # the lost connection is logged, as it must


def test_zmqd_consumes_a_quorum_queue_across_the_kill_of_its_node(
        cluster, zmqd, redis_store, record_property):
    """zmqd's connection and the queue's leader on node 1; node 1 killed
    mid-stream: zmqd reconnects to another node and every message is
    delivered to the service at least once and acked (duplicates are
    counted and reported)."""
    q = declare_quorum(cluster[0])
    assert wait_leader(cluster, q) is cluster[0]
    total = 6000
    conn = cluster[1].connection()
    ch = conn.channel()
    ch.confirm_delivery()
    import pika
    for i in range(total):
        ch.basic_publish("", q, b"%d" % i,
                         pika.BasicProperties(delivery_mode=2,
                                              message_id="z%d" % i))
    conn.close()

    z = zmqd({"amqp_def": [cluster_def(cluster)],
              "service": [{"name": "st", "kind": "redis", "key": "ids"}],
              "amqp_channel": [{"name": "in", "def": "rabbit", "queue": q,
                                "service": "st", "prefetch": 50}]})
    r = redis_store.client()
    deadline = time.monotonic() + 30
    while r.llen("ids") < 1000:
        assert time.monotonic() < deadline, z.text()
        time.sleep(0.01)
    cluster.kill(0)
    assert r.llen("ids") < total, "consumed before the kill: no test"

    deadline = time.monotonic() + 90
    while len(set(r.lrange("ids", 0, -1))) < total:
        assert time.monotonic() < deadline, (r.llen("ids"), z.text())
        time.sleep(0.2)
    got = r.lrange("ids", 0, -1)
    assert set(got) == {b"%d" % i for i in range(total)}
    dups = len(got) - total
    record_property("duplicates", dups)
    print("zmqd across the kill: %d messages, %d delivered twice or more"
          % (total, dups))

    peers = re.findall(r"amqp_def 'rabbit': connected to (\S+)", z.text())
    assert peers[0] == cluster[0].addr, z.text()
    assert peers[-1] != cluster[0].addr, z.text()

    node = cluster[1]
    deadline = time.monotonic() + 30
    while True:
        ready, unacked, consumers = queue_counts(node, q)
        if ready == 0 and unacked == 0:
            break
        assert time.monotonic() < deadline, (ready, unacked, consumers)
        time.sleep(0.2)
    assert z.stop() == 0
    # nothing came back when its consumer went away: all acked
    assert queue_counts(node, q)[:2] == (0, 0)
