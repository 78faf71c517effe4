"""A Redis Sentinel deployment for tests: one master, two replicas
(redis-server --replicaof; the second with replica-priority 0, never
promoted, so that a failover promotes the first) and three sentinels (redis-server sentinel.conf
--sentinel), all on loopback with free ports, each in its own directory,
each stopped by its PID. Every wait is for the event that decides it
(a port that opens, the replica in sync, the sentinels seeing each other,
the sentinels naming a new master), never a sleep."""

import os
import signal
import subprocess
import time

import pytest

from conftest import (REDIS_SERVER, free_port, register_secret, scan_exclude,
                      stop_pid, wait_port)

NAME = "zmqmaster"
# the master's (and replica's) password: sentinels are asked without one,
# the clients send it to the master only
PASSWORD = "s3nt1nel-pw-%s" % os.urandom(4).hex()


def wait_until(fn, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            v = fn()
        except Exception as e:          # a server that is not up yet
            last = e
            v = None
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError("timed out waiting for %s (last: %r)" % (what, last))


class Node:
    def __init__(self, tmp, name, args, port=None):
        self.dir = os.path.join(tmp, name)
        os.makedirs(self.dir, exist_ok=True)
        self.name = name
        self.port = port or free_port()
        self.args = args
        self.proc = None
        self.password = None

    def start(self):
        self.proc = subprocess.Popen(
            [REDIS_SERVER] + self.args(self) ,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            cwd=self.dir)
        wait_port(self.port, 10, self.proc)
        return self

    def stop(self, sig=signal.SIGTERM):
        stop_pid(self.proc, sig)

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def client(self):
        import redis
        return redis.Redis(host="127.0.0.1", port=self.port,
                           socket_timeout=5, password=self.password)

    def log(self):
        p = os.path.join(self.dir, "redis.log")
        if not os.path.exists(p):
            return ""
        with open(p, errors="replace") as f:
            return f.read()


def data_args(replicaof=None, priority=None):
    def args(node):
        a = ["--port", str(node.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", node.dir,
             "--logfile", os.path.join(node.dir, "redis.log"),
             "--requirepass", PASSWORD, "--masterauth", PASSWORD]
        if replicaof is not None:
            a += ["--replicaof", "127.0.0.1", str(replicaof)]
        if priority is not None:
            a += ["--replica-priority", str(priority)]
        return a
    return args


def sentinel_args(master_port, down_ms, failover_ms):
    def args(node):
        conf = os.path.join(node.dir, "sentinel.conf")
        scan_exclude(conf)          # it holds the master's password
        with open(conf, "w") as f:
            f.write("port %d\nbind 127.0.0.1\ndaemonize no\n"
                    "dir %s\nlogfile %s\n"
                    "sentinel monitor %s 127.0.0.1 %d 2\n"
                    "sentinel down-after-milliseconds %s %d\n"
                    "sentinel failover-timeout %s %d\n"
                    "sentinel parallel-syncs %s 1\n"
                    "sentinel auth-pass %s %s\n" % (
                        node.port, node.dir,
                        os.path.join(node.dir, "redis.log"),
                        NAME, master_port, NAME, down_ms, NAME, failover_ms,
                        NAME, NAME, PASSWORD))
        return [conf, "--sentinel"]
    return args


class SentinelCluster:
    def __init__(self, tmp, down_ms=1000, failover_ms=3000):
        if not os.access(REDIS_SERVER, os.X_OK):
            pytest.skip("redis-server is not installed")
        self.tmp = tmp
        register_secret(PASSWORD)
        self.master = Node(tmp, "a", data_args())
        self.replica = Node(tmp, "b", data_args(self.master.port))
        # a second replica that the sentinels never promote (priority 0),
        # so that the tests know which one a failover promotes
        self.replica2 = Node(tmp, "c", data_args(self.master.port, 0))
        self.sentinels = [Node(tmp, "s%d" % i,
                               sentinel_args(self.master.port, down_ms,
                                             failover_ms))
                          for i in range(3)]
        self.nodes = [self.master, self.replica, self.replica2] \
            + self.sentinels
        self.master.password = self.replica.password = PASSWORD
        self.replica2.password = PASSWORD

    def start(self):
        self.master.start()
        self.replica.start()
        self.replica2.start()
        wait_until(self.replica_in_sync, 20, "the replicas in sync")
        for s in self.sentinels:
            s.start()
        # each sentinel knows the replica and the two other sentinels:
        # a failover can be agreed
        wait_until(self.sentinels_ready, 30, "the sentinels to meet")
        return self

    def replica_in_sync(self):
        info = self.master.client().info("replication")
        return info.get("connected_slaves") == 2 and all(
            info.get("slave%d" % i, {}).get("state") == "online"
            for i in range(2))

    def sentinels_ready(self):
        for s in self.sentinels:
            m = s.client().execute_command("SENTINEL", "MASTER", NAME)
            d = dict(zip(m[::2], m[1::2]))
            if int(d[b"num-slaves"]) < 2 or \
                    int(d[b"num-other-sentinels"]) < 2:
                return False
        return True

    def url(self, auth=":%s@" % PASSWORD, db=0):
        return "redis-sentinel://%s%s/%s/%d" % (
            auth, ",".join("127.0.0.1:%d" % s.port for s in self.sentinels),
            NAME, db)

    def master_port(self, sentinel=0):
        """The master's port as one sentinel names it."""
        h, p = self.sentinels[sentinel].client().execute_command(
            "SENTINEL", "GET-MASTER-ADDR-BY-NAME", NAME)
        return int(p)

    def node_at(self, port):
        return next(n for n in (self.master, self.replica, self.replica2)
                    if n.port == port)

    def wait_master(self, port, timeout=30.0):
        """Every sentinel names port as the master, and it says so."""
        def switched():
            if any(self.master_port(i) != port for i in range(3)):
                return False
            role = self.node_at(port).client().execute_command("ROLE")
            return role[0] == b"master"
        wait_until(switched, timeout, "every sentinel to name :%d" % port)

    def stop(self):
        for n in reversed(self.nodes):
            n.stop()
