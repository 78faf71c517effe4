#!/usr/bin/python3
"""bench/latency_probe: where a publish's time goes inside the gateway
(issue 18), with a probe build of the module (`make probe`, which builds
build/probe/ngx_http_zmq_module.so with -DNGX_ZMQ_PROBE=1; see
ngx_zmq_module/ngx_http_zmq_probe.h).

For each N in --levels it starts NGINX afresh (the workers write their
records when they exit), runs wrk with N connections for --seconds, stops
NGINX, and reads /tmp/zmq-probe.<pid> of each worker; then the raw
rabbitmq-c publisher with a window of N, for its publish-to-ack latency.
It prints, per N:

  * wrk's p50/p99 (the client's view) and the raw publisher's;
  * the per-message phases inside the gateway, p50/p99/max in ms:
      read->pub        the handler: properties, frames queued
      pub->written     until the socket took the frames (the posted write)
      written->ackread the broker (and the network) until the read event
                       that brought the confirm started
      ackread->acked   inside that read event, until this confirm
      acked->answered  the answer queue (NGX_HTTP_ZMQ_ANSWERS_PER_PASS)
      read->answered   the whole stay in the gateway
  * the same phases' means over the slowest 1% of messages (by
    read->answered), which says which phase makes the tail;
  * requests per worker and per broker connection.

  ZMQ_MODULE=$PWD/build/probe/ngx_http_zmq_module.so \\
      /usr/bin/python3 bench/latency_probe.py --levels 1,8,32

Loopback only, temporary directories; every process is stopped by PID.
"""

import argparse
import os
import struct
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "t"))
sys.path.insert(0, os.path.join(ROOT, "bench"))

from conftest import BUILD, amqp_config  # noqa: E402
from stack import Stack  # noqa: E402
from publish import QUEUE, wrk, raw_publish, settle  # noqa: E402

REC = struct.Struct("<7Q")
PHASES = [("read->pub", 0, 1), ("pub->written", 1, 2),
          ("written->ackread", 2, 3), ("ackread->acked", 3, 4),
          ("acked->answered", 4, 5), ("read->answered", 0, 5)]


def pct(xs, p):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))]


def split(url, seconds, n, env):
    """wrk -tN -cN with latency_probe.lua: in/gw/out per request"""
    out = subprocess.run(
        ["wrk", "-t%d" % n, "-c%d" % n, "-d%ds" % seconds, "-s",
         os.path.join(ROOT, "bench", "latency_probe.lua"), url],
        capture_output=True, text=True, env=dict(os.environ, **env),
        timeout=seconds + 60)
    for line in out.stdout.splitlines():
        if line.startswith("PROBE"):
            return line
    raise RuntimeError("wrk: rc %d %s %s" % (out.returncode, out.stdout,
                                             out.stderr))


def schedstat(pids):
    """/proc/PID/schedstat: ns on the CPU, ns waiting for one, slices"""
    out = []
    for pid in pids:
        with open("/proc/%d/schedstat" % pid) as f:
            out.append(tuple(int(x) for x in f.read().split()))
    return out


def read_records(pids):
    recs = []
    for pid in pids:
        path = "/tmp/zmq-probe.%d" % pid
        if not os.path.exists(path):
            continue
        with open(path, "rb") as f:
            data = f.read()
        os.unlink(path)
        for i in range(0, len(data) - REC.size + 1, REC.size):
            r = REC.unpack_from(data, i)
            recs.append((pid,) + r)
    return recs


def report(n, recs, client, raw):
    print("N=%d: wrk p50 %.2f p99 %.2f ms (%.0f req/s); raw p50 %.2f "
          "p99 %.2f ms, corrected as wrk does %.2f / %.2f (%.0f msg/s); "
          "%d probe records" % (
              n, client["p50"], client["p99"], client["rate"], raw["p50"],
              raw["p99"], raw.get("p50c", 0), raw.get("p99c", 0),
              raw["rate"], len(recs)))
    if "split" in client:
        print("  wrk -t%d -c%d, p50/p99 ms: %s" % (n, n, client["split"]))
    for run, wait, slices in client.get("sched", []):
        print("  worker: %.0f ms on a CPU, %.0f ms runnable but waiting for "
              "one, %d slices (%.3f ms waited per slice)" % (
                  run / 1e6, wait / 1e6, slices,
                  wait / 1e6 / max(slices, 1)))
    # only complete records (a confirm came): all six times set
    full = [r[1:7] for r in recs if all(r[1:7])]
    if not full:
        return
    total = sorted(full, key=lambda t: t[5] - t[0])
    tail = total[int(len(total) * 0.99):]
    print("  %-18s %8s %8s %8s %12s" % ("phase (ms)", "p50", "p99", "max",
                                         "slowest 1%"))
    for name, a, b in PHASES:
        xs = [(t[b] - t[a]) / 1000.0 for t in full]
        ts = [(t[b] - t[a]) / 1000.0 for t in tail]
        print("  %-18s %8.3f %8.3f %8.3f %12.3f" % (
            name, pct(xs, 0.5), pct(xs, 0.99), max(xs), sum(ts) / len(ts)))
    per = {}
    for r in recs:
        per.setdefault((r[0], r[7]), 0)
        per[(r[0], r[7])] += 1
    print("  per worker/connection: %s" % ", ".join(
        "%d" % v for v in sorted(per.values(), reverse=True)))
    sys.stdout.flush()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--levels", default="1,8,32")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--split", action="store_true",
                    help="also wrk -tN -cN with latency_probe.lua: the "
                         "client's view split at the gateway's read and "
                         "answer")
    ap.add_argument("--wrk-threads", type=int, default=0,
                    help="wrk threads (default min(N, 2))")
    args = ap.parse_args()

    raw = os.path.join(BUILD, "bench", "publish_raw")
    with Stack("zmq-probe-") as servers:
        rabbit = servers.rabbit(QUEUE)
        ch = servers.ch
        cfg = servers.config(amqp_config(rabbit.port, {"svc": {
            "routing_key": QUEUE}}, outconn={"max_inflight": 4096}))
        env = {"BODY_SIZE": str(args.size)}
        raw_publish(raw, rabbit.port, args.seconds, args.size)
        settle(ch)

        for i, n in enumerate(int(x) for x in args.levels.split(",")):
            ngx = servers.nginx("location = /b { zmq_service svc; }\n",
                                http="zmq_config file:%s;" % cfg,
                                workers=args.workers, name="nginx%d" % i)
            try:
                pids = ngx.worker_pids()
                before = schedstat(pids)
                client = wrk(ngx.url + "/b", args.seconds, n, env,
                             threads=args.wrk_threads or min(n, 2))
                after = schedstat(pids)
                client["sched"] = [(a[0] - b[0], a[1] - b[1], a[2] - b[2])
                                   for a, b in zip(after, before)]
                if args.split:
                    client["split"] = split(ngx.url + "/b", args.seconds, n,
                                            env)
            finally:
                ngx.stop()
            time.sleep(0.5)
            recs = read_records(pids)
            settle(ch)
            r = raw_publish(raw, rabbit.port, args.seconds, args.size,
                            window=n)
            settle(ch)
            report(n, recs, client, r)


if __name__ == "__main__":
    main()
