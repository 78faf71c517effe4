#!/usr/bin/python3
"""bench/batch: batch publishing and idempotency keys (issue 20), against
baselines measured in the same run, on servers this script starts
(loopback, temporary dirs).

Batches:

  (b) the gateway: wrk with --connections connections, each POSTing one
      NDJSON batch of --batch lines (a REST channel with "batch": true)
      at a time; every line a 256-byte JSON string, one persistent message
      to a durable queue; counted: the lines answered 202 (a response()
      callback in bench/batch.lua reads every answer's results)
  (c) bench/publish_raw (rabbitmq-c, publisher confirms) with a window of
      connections x batch unconfirmed messages: the same number in flight
  (d) the same, refilling its window a batch at a time (--chunk): a batch
      is published once the window has room for all of it, as the
      gateway's clients do (each sends its next batch once the whole last
      one is answered); printed as b/d, to show what refilling by batches
      costs by itself
  (e) bench/publish_raw with 90% of the window: how much the broker's rate
      depends on the messages in flight (printed as e/c)

Idempotency keys, single publishes to the same queue through one REST
channel with "idempotency": true (its Redis started here):

  (k) every request with a fresh Idempotency-Key
  (n) the same requests without one (a neutral header of the same length
      instead, so that the client's work is the same)

The broker is warmed up first; then each pair alternates in rounds (each
round in the other order) and each case counts with its median round (by
rate: messages confirmed per second). After every gateway round the queue
must hold at least as many messages as were answered 202 (per line for
batches); the difference is reported as lost. The last two lines are
machine-readable, the batch line last:

  window: e/c=<ratio>
  idempotency: k/b=<rate with keys / rate without>
  batch: b/c=<gateway batch rate / raw rate> b/d=<...> lost=<n>

Goals (issue 20, printed, never asserted): b/c >= 1.0, k/b >= 0.8. The
machine may be shared: compare ratios, not rates.
"""

import argparse
import os
import re
import subprocess
import sys
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "t"))
sys.path.insert(0, os.path.join(ROOT, "bench"))

from conftest import BUILD, amqp_config  # noqa: E402
from stack import Stack  # noqa: E402
from publish import QUEUE, raw_publish, queue_count, settle  # noqa: E402
from publish import median  # noqa: E402


def wrk_batch(url, seconds, connections, env, threads=2):
    """wrk with bench/batch.lua: ok = lines (or answers) that were 2xx."""
    out = subprocess.run(
        ["wrk", "-t%d" % min(threads, connections), "-c%d" % connections,
         "-d%ds" % seconds, "--latency", "-s",
         os.path.join(ROOT, "bench", "batch.lua"), url],
        capture_output=True, text=True, env=dict(os.environ, **env),
        timeout=seconds + 60)
    m = re.search(r"RESULT ok=(\d+) bad=(\d+) requests=(\d+) rate=([\d.]+) "
                  r"p50_ms=([\d.]+) p99_ms=([\d.]+)", out.stdout)
    if not m:
        raise RuntimeError("wrk: %s %s" % (out.stdout, out.stderr))
    return {"ok": int(m.group(1)), "bad": int(m.group(2)),
            "requests": int(m.group(3)), "rate": float(m.group(4)),
            "p50": float(m.group(5)), "p99": float(m.group(6))}


def line(name, r, unit="msg/s"):
    print("%-46s %9.0f %s   p50 %7.2f ms   p99 %7.2f ms   (%s ok, %s "
          "not)" % (name, r["rate"], unit, r["p50"], r["p99"], r["ok"],
                    r.get("bad", 0)), flush=True)


def main():
    ap = argparse.ArgumentParser()
    # the broker's rate varies by about 10% from round to round: 9 rounds
    # of 8 s give medians steady to a few percent
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--connections", type=int, default=10,
                    help="batches in flight (window = this x --batch)")
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--idem-connections", type=int, default=100)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--only", choices=("batch", "idempotency"),
                    help="measure one pair of cases (its line is printed "
                         "as n/a for the other)")
    args = ap.parse_args()
    window = args.connections * args.batch
    smaller = window * 9 // 10

    raw = os.path.join(BUILD, "bench", "publish_raw")
    results = {}
    lost = {"b": 0, "k": 0, "n": 0}

    with Stack("zmq-bench-") as servers:
        rabbit = servers.rabbit(QUEUE)
        ch = servers.ch
        redis = servers.redis()

        doc = amqp_config(rabbit.port, {"svc": {"routing_key": QUEUE}},
                          outconn={"max_inflight": 4096})
        doc["rest_channel"] = [
            {"name": "batches", "url_path": "/api/batches", "service": "svc",
             "batch": True, "max_batch": args.batch},
            {"name": "orders", "url_path": "/api/orders", "service": "svc",
             "idempotency": True, "idempotency_ttl": 600}]
        cfg = servers.config(doc)
        ngx = servers.nginx("location /api/ { zmq_router; }\n",
                            http="zmq_config file:%s;\n"
                                 "zmq_idempotency_redis %s;"
                                 % (cfg, redis.url),
                            workers=args.workers)

        env = {"BODY_SIZE": str(args.size), "BATCH": str(args.batch)}

        print("bench/batch: %d-byte persistent messages to a durable queue; "
              "batches of %d on %d connections (%d in flight) against "
              "publish_raw with a window of %d; idempotency on %d "
              "connections; %d rounds of %d s" % (
                  args.size, args.batch, args.connections, window, window,
                  args.idem_connections, args.rounds, args.seconds),
              flush=True)

        # a fresh broker is slower for its first seconds of persistent
        # traffic: warm it up, unmeasured
        raw_publish(raw, rabbit.port, args.seconds, args.size, window)
        settle(ch)

        def gateway_case(path, connections, extra):
            r = wrk_batch(ngx.url + path, args.seconds, connections,
                          dict(env, **extra))
            time.sleep(0.5)
            r["in_queue"] = queue_count(ch)
            r["lost"] = max(0, r["ok"] - r["in_queue"])
            return r

        def keys(kind):
            # a prefix per round: every key is new, also across rounds
            return {"KEYS": kind, "KEY_PREFIX": uuid.uuid4().hex[:12]}

        cases = {
            "b": ("(b) gateway, NDJSON batches of %d" % args.batch,
                  lambda: gateway_case("/api/batches", args.connections, {})),
            "c": ("(c) raw rabbitmq-c, %d in flight" % window,
                  lambda: raw_publish(raw, rabbit.port, args.seconds,
                                      args.size, window)),
            "d": ("(d) raw rabbitmq-c, %d in flight, %d at a time" % (
                      window, args.batch),
                  lambda: raw_publish(raw, rabbit.port, args.seconds,
                                      args.size, window, chunk=args.batch)),
            "e": ("(e) raw rabbitmq-c, %d in flight" % smaller,
                  lambda: raw_publish(raw, rabbit.port, args.seconds,
                                      args.size, smaller)),
            "k": ("(k) gateway, a fresh Idempotency-Key each",
                  lambda: gateway_case("/api/orders", args.idem_connections,
                                       keys("key"))),
            "n": ("(n) gateway, the same channel without keys",
                  lambda: gateway_case("/api/orders", args.idem_connections,
                                       keys("seq"))),
        }

        # the broker's speed drifts over a run: the cases of each pair
        # alternate in rounds, each round in the other order
        pairs = {"idempotency": ["k", "n"], "batch": ["b", "c", "d", "e"]}
        for name, pair in pairs.items():
            if args.only not in (None, name):
                continue
            for rnd in range(args.rounds):
                for k in pair[rnd % len(pair):] + pair[:rnd % len(pair)]:
                    r = cases[k][1]()
                    results.setdefault(k, []).append(r)
                    line("%s, round %d" % (cases[k][0], rnd + 1), r)
                    if k in lost:
                        lost[k] += r["lost"]
                        print("    %d answered 202 (%d requests), %d in the "
                              "queue, %d lost" % (
                                  r["ok"], r["requests"], r["in_queue"],
                                  r["lost"]), flush=True)
                    if k == "k":
                        # proof that the keys were honoured: one each
                        print("    %d idempotency keys in Redis" %
                              redis.client().dbsize(), flush=True)
                        redis.client().flushall()
                    settle(ch)

        med = {k: median(v) for k, v in results.items()}
        for k in "knbcde":
            if k in med:
                line("median %s" % cases[k][0], med[k])

        def ratio(a, b):
            if a not in med or b not in med:
                return "n/a"
            return "%.2f" % (med[a]["rate"] / max(med[b]["rate"], 1))

        print("lost: %d with keys, %d without" % (lost["k"], lost["n"]))
        print("window: e/c=%s" % ratio("e", "c"))
        print("idempotency: k/b=%s" % ratio("k", "n"))
        print("batch: b/c=%s b/d=%s lost=%d" % (ratio("b", "c"),
                                                 ratio("b", "d"), lost["b"]))

if __name__ == "__main__":
    main()
