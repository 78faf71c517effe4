"""zmqd --workers N: the master never loses a signal, and a worker that
replaces a dead one starts on the configuration that is current, not on
the one the master loaded at start-up."""

import os
import re
import signal
import time

from test_zmqd import assert_acked, config, publish, wait_for
from zmqd_helpers import zmqd  # noqa: F401


def worker_pids(z):
    """The PIDs that logged a start, in order (the master never does)."""
    pids = []
    for line in z.text().splitlines():
        m = re.search(r"zmqd\[(\d+)\] info: started with configuration", line)
        if m and int(m.group(1)) not in pids:
            pids.append(int(m.group(1)))
    return pids


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie of a master that is gone is reaped by init; one whose
    # master still runs is not alive either
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def kill_all(pids):
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_sigterm_right_after_a_worker_died_stops_everything(
        rabbitmq, queue, zmqd, redis_store):
    z = zmqd(config(rabbitmq.port,
                    [{"name": "in", "queue": queue.name, "service": "st"}],
                    [{"name": "st", "kind": "redis", "key": "w"}]),
             args=["--workers", "2"])
    pids = []
    try:
        z.wait_log("consuming queue", count=2)
        pids = worker_pids(z)
        assert len(pids) == 2
        os.kill(pids[0], signal.SIGKILL)
        time.sleep(0.1)             # the master is reaping, or respawning
        z.proc.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        deadline = t0 + 15
        while z.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert z.proc.poll() == 0, "the master did not exit:\n" + z.text()
        pids = worker_pids(z)
        assert not [p for p in pids if alive(p)], z.text()
    finally:
        kill_all(pids)
        if z.proc.poll() is None:
            z.proc.kill()
            z.proc.wait(5)
            z.killed = True


def test_sighup_and_sigterm_together_during_a_respawn(
        rabbitmq, queue, zmqd, redis_store):
    """Signals that arrive together while a worker is being replaced are
    all acted on: the master and every worker exit."""
    z = zmqd(config(rabbitmq.port,
                    [{"name": "in", "queue": queue.name, "service": "st"}],
                    [{"name": "st", "kind": "redis", "key": "w"}]),
             args=["--workers", "3"])
    pids = []
    try:
        z.wait_log("consuming queue", count=3)
        pids = worker_pids(z)
        os.kill(pids[1], signal.SIGKILL)
        z.wait_log("starting another")
        z.proc.send_signal(signal.SIGHUP)
        z.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        while z.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert z.proc.poll() == 0, "the master did not exit:\n" + z.text()
        pids = worker_pids(z)
        assert not [p for p in pids if alive(p)], z.text()
    finally:
        kill_all(pids)
        if z.proc.poll() is None:
            z.proc.kill()
            z.proc.wait(5)
            z.killed = True


def test_a_replacement_worker_starts_on_the_current_configuration(
        rabbitmq, queue, zmqd, zmqctl, redis_store, tmp_path):
    import json
    svcs = [{"name": "old", "kind": "redis", "key": "old"},
            {"name": "new", "kind": "redis", "key": "new"}]
    z = zmqd(config(rabbitmq.port,
                    [{"name": "in", "queue": queue.name, "service": "old"}],
                    svcs),
             args=["--workers", "2"])
    z.wait_log("consuming queue", count=2)
    start = int(re.search(r"started with configuration version (\d+)",
                          z.text()).group(1))

    p = tmp_path / "new.json"
    p.write_text(json.dumps(config(
        rabbitmq.port,
        [{"name": "in", "queue": queue.name, "service": "new"}], svcs)))
    zmqctl("import", "--replace", p, check=0)
    z.wait_log("0 channel(s) started, 1 restarted", count=2)
    current = int(re.findall(r"configuration version (\d+) applied: 0 ",
                             z.text())[-1])
    assert current > start

    first = worker_pids(z)
    os.kill(first[0], signal.SIGKILL)
    wait_for(lambda: len(worker_pids(z)) == 3, timeout=15)
    new = worker_pids(z)[2]
    applied = [int(v) for v in re.findall(
        r"zmqd\[%d\] info: configuration version (\d+) applied" % new,
        z.text())]
    assert applied[0] == current, z.text()

    publish(rabbitmq, queue.name, [b"%d" % i for i in range(100)])
    r = redis_store.client()
    wait_for(lambda: r.llen("new") == 100, timeout=20)
    assert r.llen("old") == 0
    assert_acked(rabbitmq, queue.name)
