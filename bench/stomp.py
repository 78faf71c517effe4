#!/usr/bin/python3
"""bench/stomp: the gateway's persistent publishing to ActiveMQ over STOMP
against a raw STOMP publisher, measured in the same run, on servers this
script starts (loopback, temporary dirs; Debian's ActiveMQ 5.17 through
t/activemq_helpers.py).

  (b) the gateway: wrk POSTs to a publish service with a stomp_outconn;
      each answer is a 202 after the broker's RECEIPT
  (c) bench/stomp_raw: a C publisher on blocking sockets pipelining SENDs,
      each with a receipt header; as many processes (broker connections)
      as the gateway has workers, and as many receipts outstanding in all
      as wrk has connections (the most the gateway can have)

256-byte bodies, persistent:true, the same headers (the gateway's stomp_def
has no use_jms). The broker is warmed up first; then (b) and (c) alternate
in rounds (each round in the other order) and each case counts with its
median round. Each round publishes to a queue of its own; after every (b)
the broker's statistics must count at least as many messages as the
gateway answered 202 for; the difference is reported as lost. The last
line is machine-readable:

  stomp: b/raw=<ratio> lost=<count>
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "t"))
sys.path.insert(0, os.path.join(ROOT, "bench"))

from conftest import BUILD, Nginx, Gateway  # noqa: E402
from activemq_helpers import ActiveMQ, activemq_installed  # noqa: E402
from publish import wrk, median  # noqa: E402


def raw_publish(raw, port, dest, seconds, size, window, procs):
    """procs stomp_raw processes at once, window/procs receipts outstanding
    each; the rates add up, the latencies are the worst process's."""
    ps = [subprocess.Popen([raw, "127.0.0.1", str(port), dest, str(seconds),
                            str(size), str(max(1, window // procs))],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True) for _ in range(procs)]
    r = {"rate": 0.0, "p50": 0.0, "p99": 0.0, "ok": 0}
    for p in ps:
        out, err = p.communicate(timeout=seconds + 60)
        m = re.search(r"rate=(\d+) p50_ms=([\d.]+) p99_ms=([\d.]+) "
                      r"confirmed=(\d+)", out)
        if p.returncode != 0 or not m:
            raise RuntimeError("stomp_raw: %s %s" % (out, err))
        r["rate"] += float(m.group(1))
        r["p50"] = max(r["p50"], float(m.group(2)))
        r["p99"] = max(r["p99"], float(m.group(3)))
        r["ok"] += int(m.group(4))
    return r


def line(name, r):
    print("%-46s %7.0f msg/s   p50 %7.2f ms   p99 %7.2f ms   (%s ok, %s "
          "errors)" % (name, r["rate"], r["p50"], r["p99"], r["ok"],
                       r.get("bad", 0)), flush=True)


def stomp_stats(ngx):
    return [o for w in Gateway(ngx).status()["workers"]
            for o in w.get("stomp", {}).values()]


def wait_ready(ngx, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = stomp_stats(ngx)
        if st and all(o["state"] == "ready" for o in st):
            return
        time.sleep(0.1)
    raise RuntimeError("the gateway's STOMP connections are not ready: %s"
                       % stomp_stats(ngx))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--connections", type=int, default=200)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()

    if not activemq_installed():
        sys.exit("bench/stomp: ActiveMQ or a JDK is not installed "
                 "(make deps-test)")
    raw = os.path.join(BUILD, "bench", "stomp_raw")
    if not os.access(raw, os.X_OK):
        sys.exit("bench/stomp: %s is not built (make bench)" % raw)

    tmp = tempfile.mkdtemp(prefix="zmq-bench-stomp-")
    broker = ngx = None
    try:
        # room for the queues the rounds fill (nothing consumes them): no
        # producer flow control within a run
        broker = ActiveMQ(os.path.join(tmp, "activemq"), memory_mb=256,
                          heap_mb=768)
        port = broker.stomp_port

        cfg = os.path.join(tmp, "zmq.json")
        with open(cfg, "w") as f:
            json.dump({
                "stomp_def": [{"name": "amq", "port": port,
                               "heartbeat": 10}],
                "stomp_outconn": [{"name": "to-amq", "def": "amq",
                                   "max_inflight": 4096}],
                "service": [{"name": "svc", "kind": "publish",
                             "stomp_outconn": "to-amq",
                             "destination": "/queue/$arg_q"}]}, f)
        ndir = os.path.join(tmp, "nginx")
        os.makedirs(ndir)
        ngx = Nginx(ndir, http="zmq_config file:%s;" % cfg,
                    server="location = /zmq/status { zmq_status; }\n"
                           "location = /b { zmq_service svc;"
                           " zmq_confirm_timeout 30s; }\n",
                    workers=args.workers, log_level="warn")
        try:
            ngx.start()
        except RuntimeError:
            print(ngx.error_log(), file=sys.stderr)
            raise
        wait_ready(ngx)

        env = {"BODY_SIZE": str(args.size)}
        print("bench/stomp: %d-byte persistent messages to ActiveMQ over "
              "STOMP, %d connections (receipts outstanding), %d rounds of "
              "%d s" % (args.size, args.connections, args.rounds,
                        args.seconds), flush=True)

        # a fresh broker (JIT, KahaDB) is slower for its first seconds
        raw_publish(raw, port, "/queue/bench.warmup", args.seconds,
                    args.size, args.connections, args.workers)

        n = [0]

        def case_b():
            n[0] += 1
            q = "bench.b%d" % n[0]
            r = wrk(ngx.url + "/b?q=" + q, args.seconds, args.connections,
                    env)
            time.sleep(1)
            r["in_queue"] = broker.queue_size(q)
            r["lost"] = max(0, r["ok"] - r["in_queue"])
            return r

        def case_c():
            n[0] += 1
            return raw_publish(raw, port, "/queue/bench.c%d" % n[0],
                               args.seconds, args.size, args.connections,
                               args.workers)

        cases = {"b": ("(b) gateway, 202 after the RECEIPT", case_b),
                 "c": ("(c) raw STOMP, same receipts outstanding", case_c)}
        results = {}
        order = ["b", "c"]
        for rnd in range(args.rounds):
            for k in order[rnd % 2:] + order[:rnd % 2]:
                r = cases[k][1]()
                results.setdefault(k, []).append(r)
                line("%s, round %d" % (cases[k][0], rnd + 1), r)
                if k == "b":
                    print("    %d answered 202, %d in the queue, %d lost"
                          % (r["ok"], r["in_queue"], r["lost"]), flush=True)
                time.sleep(1)

        med = {k: median(v) for k, v in results.items()}
        for k in "bc":
            line("median %s" % cases[k][0], med[k])
        st = stomp_stats(ngx)
        print("gateway's STOMP counters: published %d, confirmed %d, "
              "rejected %d, lost %d, timed_out %d" % tuple(
                  sum(o[c] for o in st) for c in (
                      "published", "confirmed", "rejected", "lost",
                      "timed_out")))
        lost = sum(r["lost"] for r in results["b"])
        ratio = med["b"]["rate"] / max(med["c"]["rate"], 1)
        print("stomp: b/raw=%.2f lost=%d" % (ratio, lost))
    finally:
        if ngx is not None:
            ngx.stop()
        if broker is not None:
            broker.stop()
        subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    main()
