#!/usr/bin/python3
"""bench/rpc: request/reply through the gateway's rpc service against a raw
requester, measured in one run, on servers this script starts (loopback,
temporary dirs).

One responder (bench/rpc_responder.c, rabbitmq-c) consumes a queue and
answers every request at once: a reply to its reply_to with the same
correlation_id, content_type and body. It answers both cases:

  (a) a raw rabbitmq-c requester (bench/rpc_raw.c) using direct reply-to,
      N requests outstanding on one channel
  (b) HTTP clients (wrk, N connections, 2 threads) through the gateway: a
      REST channel to a service of kind rpc (exchange "", routing key =
      the responder's queue), 2 NGINX workers

256-byte bodies, each unique to its request, transient messages. The
broker is warmed up first with (a) and (b), unmeasured; then (a) and (b)
alternate in rounds (each round in the other order) and each case counts
with its median round. A request counts when its reply (b: a 2xx answer)
carries that request's body; lost counts the requests of (b) without
their reply: another status, a body not matching, or a socket error (the
requests still waiting when a round's time is up are not counted). The
last line is machine-readable:

  rpc: b/a=<ratio> lost=<count>

The machine may be shared: before each case the script waits (up to
--quiet-wait s) until other users take under a quarter of a core, and each
round says where the CPU went (from /proc and the client's rusage): NGINX's
workers, the broker, the responder, the client (rpc_raw or wrk), and
"others", the rest of the machine, and the CPU per request answered of
the broker, NGINX and the client; and the broker's TCP segments per
request to and from the requester and the responder (ss, between 1 s in
and 1 s before the end: on loopback about one write each). Before the last
line come the median CPU per request of each part over all rounds and over
the rounds where others took under half a core: on a shared machine these
compare better than the rates. Goal: b/a >= 0.7 and lost = 0 (printed, not
asserted).
"""

import argparse
import os
import re
import resource
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "t"))

from conftest import BUILD, Gateway  # noqa: E402
from stack import Stack  # noqa: E402

QUEUE = "bench.rpc"
PATH = "/api/rpc"


def wrk(url, seconds, connections, size, timeout_s, threads=2):
    out = subprocess.run(
        ["wrk", "-t%d" % threads, "-c%d" % connections, "-d%ds" % seconds,
         "--timeout", "%ds" % timeout_s, "--latency",
         "-s", os.path.join(ROOT, "bench", "rpc.lua"), url],
        capture_output=True, text=True,
        env=dict(os.environ, BODY_SIZE=str(size)),
        timeout=seconds + timeout_s + 60)
    m = re.search(r"RESULT ok=(\d+) bad=(\d+) sockerr=(\d+) rate=([\d.]+) "
                  r"p50_ms=([\d.]+) p99_ms=([\d.]+)", out.stdout)
    if not m:
        raise RuntimeError("wrk: %s %s" % (out.stdout, out.stderr))
    r = {"ok": int(m.group(1)), "bad": int(m.group(2)),
         "sockerr": int(m.group(3)), "rate": float(m.group(4)),
         "p50": float(m.group(5)), "p99": float(m.group(6))}
    r["lost"] = r["bad"] + r["sockerr"]
    return r


def broker_segs(port):
    """The broker's TCP sockets (local port = port) by peer port: (data
    segments in, data segments out, bytes in, bytes out), from the
    kernel's counters (ss; cheap). On loopback a segment is one write of
    the peer (or of the broker) unless writes were coalesced."""
    out = subprocess.run(["ss", "-tinH", "state", "established",
                          "( sport = :%d )" % port],
                         capture_output=True, text=True).stdout
    segs, peer = {}, None
    for ln in out.splitlines():
        if not ln.startswith((" ", "\t")):
            v = ln.split()
            peer = int(v[-1].rsplit(":", 1)[1]) if len(v) >= 4 else None
            continue
        if peer is None:
            continue
        m = dict(re.findall(r"(data_segs_in|data_segs_out|bytes_received|"
                            r"bytes_acked):(\d+)", ln))
        segs[peer] = tuple(int(m.get(k, 0)) for k in (
            "data_segs_in", "data_segs_out", "bytes_received",
            "bytes_acked"))
    return segs


def local_ports(pid):
    """The local TCP ports of a process's sockets (ss)."""
    out = subprocess.run(["ss", "-tnpH"], capture_output=True,
                         text=True).stdout
    ports = set()
    for ln in out.splitlines():
        if "pid=%d," % pid in ln:
            ports.add(int(ln.split()[3].rsplit(":", 1)[1]))
    return ports


class SegWatch:
    """Two snapshots of the broker's sockets within a case (at 1 s and 1 s
    before its end), from a thread: the requester's and the responder's
    segments per request answered in between (the rate times the time)."""

    def __init__(self, port, seconds, skip, responder):
        import threading
        self.port, self.skip, self.responder = port, skip, responder
        self.snaps = []
        self.t = threading.Thread(target=self.run, args=(seconds,))
        self.t.start()

    def run(self, seconds):
        time.sleep(1)
        self.snaps.append((time.monotonic(), broker_segs(self.port)))
        time.sleep(max(seconds - 2, 1))
        self.snaps.append((time.monotonic(), broker_segs(self.port)))

    def line(self, rate):
        self.t.join()
        (t0, a), (t1, b) = self.snaps
        req, resp = [0] * 4, [0] * 4
        for peer, v in b.items():
            if peer in self.skip or peer not in a:
                continue
            tgt = resp if peer in self.responder else req
            for i in range(4):
                tgt[i] += v[i] - a[peer][i]
        n = max(rate * (t1 - t0), 1)
        return ("    broker TCP segments per request: from the requester "
                "%.3f (%.0f B), to it %.3f (%.0f B); from the responder "
                "%.3f, to it %.3f" % (req[0] / n, req[2] / n, req[1] / n,
                                      req[3] / n, resp[0] / n,
                                      resp[1] / n))


class Cpu:
    """CPU (in cores, over an interval) of NGINX's workers, the broker, the
    responder, this script's children that ended in the interval (the
    client: rpc_raw or wrk, from getrusage), this script, and of the whole
    machine (/proc/stat); "others" is what the machine used besides
    these."""

    def __init__(self, ngx, rabbit, responder):
        self.ngx, self.rabbit, self.responder = ngx, rabbit, responder
        self.hz = os.sysconf("SC_CLK_TCK")

    def ticks(self, pid):
        n = 0
        try:
            tids = os.listdir("/proc/%d/task" % pid)
        except OSError:
            return 0
        for tid in tids:
            try:
                with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                    v = f.read().rsplit(")", 1)[1].split()
                n += int(v[11]) + int(v[12])
            except (OSError, IndexError, ValueError):
                pass
        return n

    def snapshot(self):
        s = {"nginx": sum(self.ticks(p) for p in self.ngx.worker_pids()),
             "responder": self.ticks(self.responder.pid),
             "self": self.ticks(os.getpid())}
        beam = self.rabbit.beam_pid()
        s["broker"] = self.ticks(beam) if beam is not None else 0
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        s["client"] = (ru.ru_utime + ru.ru_stime) * self.hz
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        # user nice system idle iowait irq softirq steal: busy = all - idle
        s["machine"] = sum(v[:8]) - v[3] - v[4] - v[7]
        s["t"] = time.monotonic()
        return s

    def delta(self, a, b):
        secs = max(b["t"] - a["t"], 1e-3)
        d = {k: (b[k] - a[k]) / self.hz / secs for k in a if k != "t"}
        d["secs"] = secs
        d["others"] = max(0.0, d["machine"] - sum(
            d[k] for k in ("nginx", "broker", "responder", "client",
                           "self")))
        return d

    def quiet(self, limit):
        """Wait (at most limit s) until other users of the machine take
        under a quarter of a core over a second; how long it took."""
        t0 = time.monotonic()
        while True:
            c0 = self.snapshot()
            time.sleep(1)
            if (self.delta(c0, self.snapshot())["others"] < 0.25
                    or time.monotonic() - t0 >= limit):
                return time.monotonic() - t0


def cpu_line(c, answered):
    """Cores used during a case; and the CPU per request answered of the
    broker (its work for a request and its reply: what both cases share),
    NGINX's workers and the client."""
    per = c["secs"] * 1e6 / max(answered, 1)
    return ("    cpu (cores): nginx %.2f (%.1f us/req), broker %.2f "
            "(%.0f us/req), responder %.2f, client %.2f (%.1f us/req), "
            "others %.2f; machine busy %.2f of %d" % (
                c["nginx"], c["nginx"] * per, c["broker"],
                c["broker"] * per, c["responder"], c["client"],
                c["client"] * per, c["others"], c["machine"],
                os.cpu_count()))


def raw_rpc(raw, port, seconds, size, outstanding):
    out = subprocess.run([raw, "127.0.0.1", str(port), QUEUE, str(seconds),
                          str(size), str(outstanding)],
                         capture_output=True, text=True, timeout=seconds + 60)
    m = re.search(r"rate=(\d+) p50_ms=([\d.]+) p99_ms=([\d.]+) sent=(\d+) "
                  r"replied=(\d+) lost=(\d+) bad=(\d+) returned=(\d+)",
                  out.stdout)
    if not m:
        raise RuntimeError("rpc_raw: %s %s" % (out.stdout, out.stderr))
    return {"rate": float(m.group(1)), "p50": float(m.group(2)),
            "p99": float(m.group(3)), "ok": int(m.group(5)),
            "lost": int(m.group(6)), "bad": int(m.group(7))}


def probe(url, size):
    """One request through the gateway: (True, "") when it is answered
    like the contract says, else (False, what came back)."""
    import requests
    body = b"0" * 16 + b"p" * (size - 16)
    try:
        r = requests.post(url, data=body, timeout=30,
                          headers={"Content-Type": "text/plain"})
    except requests.RequestException as e:
        return False, str(e)
    if (r.status_code == 200 and r.content == body
            and r.headers.get("X-Correlation-Id")):
        return True, ""
    return False, "%d %s" % (r.status_code, r.text[:300])


def queue_settle(ch, timeout=10.0):
    """Wait until the responder has taken every request (the queue is
    empty); return what is left."""
    deadline = time.monotonic() + timeout
    while True:
        left = ch.queue_declare(QUEUE, passive=True).method.message_count
        if left == 0 or time.monotonic() > deadline:
            return left
        time.sleep(0.2)


def median(runs):
    """The run with the median rate (rounds are odd by default; with an even
    count, the lower middle one)."""
    return sorted(runs, key=lambda r: r["rate"])[(len(runs) - 1) // 2]


def line(name, r):
    print("%-46s %8.0f req/s   p50 %7.2f ms   p99 %7.2f ms   (%s ok, %s "
          "lost)" % (name, r["rate"], r["p50"], r["p99"], r["ok"],
                     r["lost"]), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--connections", type=int, default=1000,
                    help="N: (b)'s connections, (a)'s outstanding requests")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--prefetch", type=int, default=500,
                    help="the responder's basic.qos")
    ap.add_argument("--timeout", type=int, default=30000,
                    help="the rpc service's timeout (ms)")
    ap.add_argument("--quiet-wait", type=float, default=20,
                    help="at most this many seconds before each case, "
                         "for other users of the machine to go quiet")
    args = ap.parse_args()
    if args.size < 16:
        ap.error("--size must be at least 16")

    raw = os.path.join(BUILD, "bench", "rpc_raw")
    responder_bin = os.path.join(BUILD, "bench", "rpc_responder")
    wrk_timeout = args.timeout // 1000 + 10

    with Stack("zmq-rpc-") as servers:
        # no queue: the responder declares its own, then consumes it
        rabbit = servers.rabbit(None)
        ch = servers.ch
        responder = subprocess.Popen(
            [responder_bin, "127.0.0.1", str(rabbit.port), QUEUE,
             str(args.prefetch)], stdout=subprocess.PIPE, text=True)
        servers.callback(stop_responder, responder)
        if responder.stdout.readline().strip() != "ready":
            raise RuntimeError("rpc_responder did not start")

        cfg = servers.config({
            "amqp_def": [{"name": "rabbit", "host": "127.0.0.1",
                          "port": rabbit.port, "username": "guest",
                          "password": "guest", "heartbeat": 10}],
            "amqp_outconn": [{"name": "out", "def": "rabbit",
                              "max_inflight": 4096}],
            "service": [{"name": "rpc", "kind": "rpc", "outconn": "out",
                         "exchange": "", "routing_key": QUEUE,
                         "delivery_mode": 1,
                         "timeout": args.timeout}],
            "rest_channel": [{"name": "rpc", "url_path": PATH,
                              "method": "POST", "service": "rpc"}],
        })
        ngx = servers.nginx("location /api/ { zmq_router; }\n",
                            http="zmq_config file:%s;" % cfg,
                            workers=args.workers)
        gw = Gateway(ngx)
        url = ngx.url + PATH

        ok, what = probe(url, args.size)
        if not ok:
            raise SystemExit("bench/rpc: the gateway's rpc service does not "
                             "answer as the contract says: %s" % what)

        print("bench/rpc: %d-byte requests echoed by one rabbitmq-c "
              "responder, N = %d, %d rounds of %d s, %d NGINX workers" % (
                  args.size, args.connections, args.rounds, args.seconds,
                  args.workers), flush=True)

        # A fresh broker (and each worker's reply consumer, made at its
        # first rpc request) is slower for its first seconds; whichever
        # case ran first would pay for that. Warm both up, unmeasured.
        raw_rpc(raw, rabbit.port, args.seconds, args.size, args.connections)
        queue_settle(ch)
        wrk(url, 2, args.connections, args.size, wrk_timeout)
        queue_settle(ch)
        time.sleep(1)

        cases = {
            "a": ("(a) raw rabbitmq-c, direct reply-to",
                  lambda: raw_rpc(raw, rabbit.port, args.seconds, args.size,
                                  args.connections)),
            "b": ("(b) gateway rpc service, wrk",
                  lambda: wrk(url, args.seconds, args.connections,
                              args.size, wrk_timeout)),
        }
        cpu = Cpu(ngx, rabbit, responder)

        # the script's own (pika) connection is no requester
        skip = local_ports(os.getpid())
        resp_ports = local_ports(responder.pid)

        def run(k):
            waited = cpu.quiet(args.quiet_wait)
            c0 = cpu.snapshot()
            segs = SegWatch(rabbit.port, args.seconds, skip, resp_ports)
            r = cases[k][1]()
            r["cpu"] = cpu.delta(c0, cpu.snapshot())
            r["io"] = segs.line(r["rate"])
            r["waited"] = waited
            return r

        # the broker's speed drifts over a run: the cases alternate, each
        # round in the other order, and each counts with its median round
        results = {}
        before = gw.totals()
        for rnd in range(args.rounds):
            for k in ("ab" if rnd % 2 == 0 else "ba"):
                r = run(k)
                results.setdefault(k, []).append(r)
                line("%s, round %d" % (cases[k][0], rnd + 1), r)
                print(cpu_line(r["cpu"], r["ok"])
                      + ("; waited %.0f s for a quiet machine" % r["waited"]
                         if r["waited"] > 1.5 else ""), flush=True)
                print(r["io"], flush=True)
                left = queue_settle(ch)
                if left:
                    print("    %d requests still in the queue" % left,
                          flush=True)
        after = gw.totals()

        responder.terminate()
        out = responder.communicate(timeout=30)[0].strip()
        responder = None
        print("responder: %s" % out, flush=True)

        # what the gateway's status counted over the rounds, the counters
        # that moved: rpc_late are the replies to the requests still waiting
        # when wrk closed its connections at the end of a round (up to N a
        # round); rpc_timeouts, rpc_bad, rpc_lost would be failures
        moved = {k: after[k] - before.get(k, 0) for k in sorted(after)
                 if after[k] != before.get(k, 0)}
        print("gateway counters over the rounds: %s" % " ".join(
            "%s=%d" % kv for kv in moved.items()), flush=True)

        # CPU per request answered, the median over the rounds: what a
        # busy machine disturbs least (the ratio of rates depends on who
        # else ran); also over the quieter rounds (others under 0.5 core)
        def us(r, part):
            return r["cpu"][part] * r["cpu"]["secs"] * 1e6 / max(r["ok"], 1)

        def mid(xs):
            xs = sorted(xs)
            return xs[(len(xs) - 1) // 2] if xs else float("nan")

        for label, keep in (("all rounds", lambda r: True),
                            ("rounds with others < 0.5 core",
                             lambda r: r["cpu"]["others"] < 0.5)):
            print("median CPU per request, %s: %s" % (label, "; ".join(
                "(%s) broker %.1f us, nginx %.1f us, client %.1f us, "
                "responder %.1f us [%d]" % (
                    k, mid([us(r, "broker") for r in v if keep(r)]),
                    mid([us(r, "nginx") for r in v if keep(r)]),
                    mid([us(r, "client") for r in v if keep(r)]),
                    mid([us(r, "responder") for r in v if keep(r)]),
                    len([r for r in v if keep(r)]))
                for k, v in sorted(results.items()))), flush=True)

        med = {k: median(v) for k, v in results.items()}
        for k in "ab":
            line("median %s" % cases[k][0], med[k])
        lost = sum(r["lost"] for r in results["b"])
        lost_a = sum(r["lost"] for r in results["a"])
        if lost_a:
            print("(a) lost %d requests over the rounds" % lost_a)
        ba = med["b"]["rate"] / max(med["a"]["rate"], 1)
        print("rpc: b/a=%.2f lost=%d" % (ba, lost))


def stop_responder(responder):
    responder.terminate()
    try:
        responder.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        responder.kill()
        responder.wait()


if __name__ == "__main__":
    main()
