"""A real three-node RabbitMQ cluster on loopback, for the cluster tests.

Three nodes of Debian's rabbitmq-server, each with its own AMQP port,
Erlang distribution port, Mnesia directory and log directory, named
zmqc<i>_<epmd port>@localhost; one epmd of the cluster's own on a free
port (the machine's epmd, and other tests' clusters, are never touched);
one HOME whose .erlang.cookie (mode 0400, written here) every node and
every rabbitmqctl shares. Nodes 2 and 3 join node 1 as RabbitMQ's
clustering guide says (rabbitmqctl stop_app, join_cluster, start_app).

Starting a node costs seconds of CPU on a 2-core machine: the three boot
at once, the Erlang schedulers do not busy-wait, and a test module shares
one cluster (module scope); a test that kills a node restarts it before it
starts (the cluster fixture: Cluster.ensure_running()), a test finds
three nodes.

kill(i) sends SIGKILL to node i's beam (its PID file), as a machine that
dies would; start(i) boots it again on the same data, and it rejoins.
close() stops every process by its PID: each node (SIGTERM to the
wrapper, then the beam by PID), then epmd.
"""

import os
import signal
import subprocess
import time

import pytest

from conftest import (EPMD, RABBITMQ_SERVER, RABBITMQCTL, free_port,
                      wait_port)

RABBITMQ_QUEUES = os.path.join(os.path.dirname(RABBITMQCTL),
                               "rabbitmq-queues")


class Node:
    """One node of the cluster (the parts of conftest.RabbitServer that
    a cluster needs, with the cluster's epmd, HOME and cookie)."""

    def __init__(self, cluster, index):
        self.cluster = cluster
        self.index = index
        self.dir = os.path.join(cluster.dir, "node%d" % index)
        os.makedirs(self.dir, exist_ok=True)
        self.port = free_port()
        self.dist_port = free_port()
        self.name = "zmqc%d_%d@localhost" % (index, cluster.epmd_port)
        self.env = dict(
            os.environ,
            HOME=cluster.home,
            RABBITMQ_NODENAME=self.name,
            RABBITMQ_USE_LONGNAME="false",
            RABBITMQ_MNESIA_BASE=os.path.join(self.dir, "mnesia"),
            RABBITMQ_LOG_BASE=os.path.join(self.dir, "log"),
            RABBITMQ_CONFIG_FILE=os.path.join(self.dir, "rabbitmq.conf"),
            RABBITMQ_ENABLED_PLUGINS_FILE=os.path.join(self.dir,
                                                       "enabled_plugins"),
            RABBITMQ_PID_FILE=os.path.join(self.dir, "beam.pid"),
            RABBITMQ_CONF_ENV_FILE=os.path.join(self.dir,
                                                "rabbitmq-env.conf"),
            RABBITMQ_DIST_PORT=str(self.dist_port),
            # three nodes on two cores: no spinning schedulers
            RABBITMQ_SCHEDULER_BUSY_WAIT_THRESHOLD="none",
            ERL_EPMD_PORT=str(cluster.epmd_port),
            ERL_EPMD_ADDRESS="127.0.0.1",
        )
        with open(self.env["RABBITMQ_CONFIG_FILE"], "w") as f:
            f.write("listeners.tcp.default = 127.0.0.1:%d\n"
                    "disk_free_limit.absolute = 50MB\n"
                    "loopback_users = none\n" % self.port)
        with open(self.env["RABBITMQ_ENABLED_PLUGINS_FILE"], "w") as f:
            f.write("[].\n")
        open(self.env["RABBITMQ_CONF_ENV_FILE"], "w").close()
        self.proc = None
        self.log = None

    @property
    def addr(self):
        return "127.0.0.1:%d" % self.port

    def spawn(self):
        """Start the node without waiting for it."""
        self.log = open(os.path.join(self.dir, "server.out"), "ab")
        self.proc = subprocess.Popen([RABBITMQ_SERVER], env=self.env,
                                     stdout=self.log, stderr=self.log,
                                     start_new_session=True)

    def wait(self, timeout=120):
        wait_port(self.port, timeout, self.proc)

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def ctl(self, *args, timeout=60, check=False):
        """rabbitmqctl against this node."""
        r = subprocess.run([RABBITMQCTL, "-n", self.name] + list(args),
                           env=self.env, capture_output=True, text=True,
                           timeout=timeout)
        if check:
            assert r.returncode == 0, (args, r.stdout, r.stderr)
        return r

    def queues_cli(self, *args, timeout=60):
        return subprocess.run([RABBITMQ_QUEUES, "-n", self.name] + list(args),
                              env=self.env, capture_output=True, text=True,
                              timeout=timeout)

    def beam_pid(self):
        try:
            with open(self.env["RABBITMQ_PID_FILE"]) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def kill(self):
        """SIGKILL to the node's beam (by its PID), as a dead machine:
        no goodbye to clients or to the other nodes."""
        beam = self.beam_pid()
        assert beam is not None, "node %s has no PID file" % self.name
        os.kill(beam, signal.SIGKILL)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        self._gone(beam)
        try:
            os.unlink(self.env["RABBITMQ_PID_FILE"])
        except OSError:
            pass
        self.proc = None
        self.log.close()

    def _gone(self, beam):
        for _ in range(100):
            try:
                os.kill(beam, 0)
            except OSError:
                return
            time.sleep(0.1)
        os.kill(beam, signal.SIGKILL)

    def stop(self):
        """SIGTERM to the wrapper (the node stops cleanly), then the beam
        by its PID and the process group, if anything is left."""
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
            self._gone(beam)
        self.proc = None
        self.log.close()

    def connection(self, attempts=3):
        import pika
        return pika.BlockingConnection(pika.ConnectionParameters(
            host="127.0.0.1", port=self.port, connection_attempts=attempts,
            retry_delay=0.5))


class Cluster:
    def __init__(self, tmp, size=3):
        if not os.access(RABBITMQ_SERVER, os.X_OK):
            pytest.skip("rabbitmq-server is not installed")
        self.dir = tmp
        self.home = os.path.join(tmp, "home")
        os.makedirs(self.home, exist_ok=True)
        cookie = os.path.join(self.home, ".erlang.cookie")
        with open(cookie, "w") as f:
            f.write("ZMQCLUSTER%s" % os.urandom(12).hex().upper())
        os.chmod(cookie, 0o400)
        self.epmd_port = free_port()
        self.epmd = subprocess.Popen(
            [EPMD, "-port", str(self.epmd_port), "-address", "127.0.0.1"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env=dict(os.environ, ERL_EPMD_PORT=str(self.epmd_port)))
        self.nodes = [Node(self, i + 1) for i in range(size)]
        try:
            for n in self.nodes:
                n.spawn()
            for n in self.nodes:
                n.wait()
            first = self.nodes[0]
            for n in self.nodes[1:]:
                n.ctl("stop_app", check=True)
                n.ctl("join_cluster", first.name, check=True)
                n.ctl("start_app", check=True)
            self.wait_members(size)
        except BaseException:
            self.close()
            raise

    def __getitem__(self, i):
        return self.nodes[i]

    @property
    def addrs(self):
        return [n.addr for n in self.nodes]

    def alive(self):
        return [n for n in self.nodes if n.running()]

    def running_nodes(self):
        """The cluster's running nodes, as the first live node sees it."""
        r = self.alive()[0].ctl("eval",
                                "rabbit_nodes:all_running().")
        return r.stdout

    def wait_members(self, count, timeout=60):
        deadline = time.monotonic() + timeout
        out = ""
        while time.monotonic() < deadline:
            out = self.running_nodes()
            if sum(n.name in out for n in self.nodes) >= count:
                return
            time.sleep(0.5)
        raise AssertionError("cluster: %d nodes not running: %s"
                             % (count, out))

    def kill(self, i):
        self.nodes[i].kill()

    def start(self, i):
        n = self.nodes[i]
        n.spawn()
        n.wait()
        # booted means rejoined: the node waits for its peers' tables
        n.ctl("await_startup", check=True)

    def ensure_running(self):
        """Every node killed by a test booted again (the next test finds
        the whole cluster)."""
        dead = [n for n in self.nodes if not n.running()]
        for n in dead:
            n.spawn()
        for n in dead:
            n.wait()
            n.ctl("await_startup", check=True)
        if dead:
            self.wait_members(len(self.nodes))

    def node_of(self, name):
        for n in self.nodes:
            if n.name == name:
                return n
        return None

    def connections(self):
        """The cluster's client connections: (name, node, peer port)."""
        r = self.alive()[0].ctl("list_connections", "-q",
                                "--no-table-headers", "name", "pid",
                                "peer_port")
        assert r.returncode == 0, r.stdout + r.stderr
        out = []
        for line in r.stdout.splitlines():
            f = line.split("\t")
            if len(f) == 3:
                # a connection's process, <node.N.N.N>, names its node
                node = f[1].strip().lstrip("<").split(".")[0]
                out.append((f[0], node, int(f[2])))
        return out

    def leader(self, queue):
        """The node leading a quorum queue (None while there is none)."""
        r = self.alive()[0].ctl("list_queues", "-q", "--no-table-headers",
                                "name", "leader")
        for line in r.stdout.splitlines():
            f = line.split("\t")
            if len(f) == 2 and f[0] == queue:
                return self.node_of(f[1].strip())
        return None

    def close(self):
        for n in self.nodes:
            try:
                n.stop()
            except Exception:
                if n.proc is not None and n.proc.poll() is None:
                    os.killpg(n.proc.pid, signal.SIGKILL)
        if self.epmd.poll() is None:
            self.epmd.terminate()
            try:
                self.epmd.wait(10)
            except subprocess.TimeoutExpired:
                self.epmd.kill()
                self.epmd.wait(5)


@pytest.fixture(scope="module")
def rabbit_cluster(tmp_path_factory):
    c = Cluster(str(tmp_path_factory.mktemp("cluster")))
    yield c
    c.close()


@pytest.fixture
def cluster(rabbit_cluster):
    """The module's cluster with all three nodes running when the test
    starts (a node an earlier test killed is booted again here, so the
    last test's kill costs no restart)."""
    rabbit_cluster.ensure_running()
    return rabbit_cluster
