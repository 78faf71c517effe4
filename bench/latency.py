#!/usr/bin/python3
"""bench/latency: the gateway's rate and tail at everyday concurrency
against a raw rabbitmq-c publisher at the same concurrency, measured in
one run on servers this script starts (loopback, temporary dirs).

For each N in --levels (default 1, 8, 32, 256):

  gateway  wrk with N connections (min(N, 2) threads, --latency) against a
           zmq_service location publishing with confirms, 2 NGINX workers
  raw      bench/publish_raw with a window of N unconfirmed messages (its
           latency: basic.publish to its basic.ack)

wrk corrects every latency it reports for coordinated omission (wrk 4's
stats_correct(): a response that took x adds the samples x - i, x - 2i, ...
with i the interval between two requests of one connection), and that
correction cannot be turned off; bench/publish_raw applies the very same
correction to its own samples (a window slot counting as a connection), and
the p99 ratio compares those two (issue 18's first table compared wrk's
corrected p99 with the raw publisher's uncorrected one). The raw
publisher's uncorrected p99 is printed beside it.

256-byte persistent messages to a durable queue, the same properties the
gateway sets. The broker is warmed up first; then, for every N, the two
cases alternate in rounds (each round in the other order) and each counts
with its median round (by rate; its p50 and p99 are that round's). After
every gateway round the queue must hold at least as many messages as were
answered 202; the difference is reported as lost.

The table comes first, the machine-readable line last:

  latency: p99x_8=<gateway p99 / raw p99 at N=8> p99x_32=<...>
           rate_8=<gateway rate / raw rate at 8> rate_32=<...> lost=<n>

(on one line). Goal (issue 18): p99x_8 <= 1.5, p99x_32 <= 1.5,
rate_8 >= 0.9, rate_32 >= 0.9 (printed, never asserted). The machine may
be shared: run it on a quiet one, and compare ratios, not rates.
"""

import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "t"))
sys.path.insert(0, os.path.join(ROOT, "bench"))

from conftest import BUILD, amqp_config  # noqa: E402
from stack import Stack  # noqa: E402
from publish import QUEUE, wrk, raw_publish, queue_count, settle  # noqa
from publish import median  # noqa: E402


def gateway_case(url, seconds, n, env, ch):
    r = wrk(url, seconds, n, env, threads=min(n, 2))
    time.sleep(0.5)
    r["in_queue"] = queue_count(ch)
    r["lost"] = max(0, r["ok"] - r["in_queue"])
    return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--levels", default="1,8,32,256")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    levels = [int(x) for x in args.levels.split(",") if x]

    raw = os.path.join(BUILD, "bench", "publish_raw")
    rows = {}
    lost = 0

    with Stack("zmq-bench-") as servers:
        rabbit = servers.rabbit(QUEUE)
        ch = servers.ch
        cfg = servers.config(amqp_config(rabbit.port, {"svc": {
            "routing_key": QUEUE}}, outconn={"max_inflight": 4096}))
        ngx = servers.nginx("location = /b { zmq_service svc; }\n",
                            http="zmq_config file:%s;" % cfg,
                            workers=args.workers)
        env = {"BODY_SIZE": str(args.size)}
        url = ngx.url + "/b"

        print("bench/latency: %d-byte persistent messages, N in %s, %d "
              "rounds of %d s, %d NGINX workers" % (
                  args.size, levels, args.rounds, args.seconds,
                  args.workers), flush=True)

        # warm the broker up, unmeasured
        raw_publish(raw, rabbit.port, args.seconds, args.size)
        gateway_case(url, 2, 32, env, ch)
        settle(ch)

        for n in levels:
            runs = {"gw": [], "raw": []}
            for rnd in range(args.rounds):
                order = ["gw", "raw"] if rnd % 2 == 0 else ["raw", "gw"]
                for k in order:
                    if k == "gw":
                        r = gateway_case(url, args.seconds, n, env, ch)
                        lost += r["lost"]
                    else:
                        r = raw_publish(raw, rabbit.port, args.seconds,
                                        args.size, window=n)
                    runs[k].append(r)
                    print("  N=%-4d %-8s round %d  %8.0f msg/s  p50 %7.2f ms"
                          "  p99 %7.2f ms%s" % (
                              n, k, rnd + 1, r["rate"], r.get("p50c", r["p50"]),
                              r.get("p99c", r["p99"]),
                              "  (%d lost)" % r["lost"] if k == "gw" else
                              "  (uncorrected p99 %.2f ms)" % r["p99"]),
                          flush=True)
                    settle(ch)
            rows[n] = (median(runs["gw"]), median(runs["raw"]))

        print()
        print("| N | gateway req/s | raw msg/s | ratio | gateway p50 / p99 ms"
              " | raw p50 / p99 ms | raw p99 uncorrected | p99 ratio |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|")
        for n in levels:
            g, r = rows[n]
            print("| %d | %.0f | %.0f | %.2f | %.2f / %.1f | %.2f / %.1f "
                  "| %.1f | %.2f |" % (
                      n, g["rate"], r["rate"], g["rate"] / max(r["rate"], 1),
                      g["p50"], g["p99"], r["p50c"], r["p99c"], r["p99"],
                      g["p99"] / max(r["p99c"], 0.001)))

        def ratio(n, key):
            if n not in rows:
                return float("nan")
            g, r = rows[n]
            if key == "p99":
                return g["p99"] / max(r["p99c"], 0.001)
            return g["rate"] / max(r["rate"], 1)

        print("latency: p99x_8=%.2f p99x_32=%.2f rate_8=%.2f rate_32=%.2f "
              "lost=%d" % (ratio(8, "p99"), ratio(32, "p99"),
                           ratio(8, "rate"), ratio(32, "rate"), lost))


if __name__ == "__main__":
    main()
