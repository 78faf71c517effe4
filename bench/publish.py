#!/usr/bin/python3
"""bench/publish: the gateway's publish rate against baselines measured in
the same run, on servers this script starts (loopback, temporary dirs).

  (a) NGINX alone answering 202 after reading the body
  (b) the gateway: zmq_service publishing with confirms
  (c) a raw rabbitmq-c publisher, 1,000 unconfirmed messages in flight
  (d) the RabbitMQ management HTTP API publish endpoint

256-byte bodies, persistent messages, a durable queue. The broker is
warmed up first; then (b), (c) and (d) alternate in rounds (each round in
another order) and each case counts with its median round. After every (b)
the queue must hold at least as many messages as the gateway answered 202
for; the difference is reported as lost. The last line is machine-readable:

  publish: b/c=<ratio> b/d=<ratio> lost=<count>

With --scrape, a fifth case (s) joins the rounds: (b) again while a
thread scrapes the gateway's zmq_metrics once a second (as Prometheus
would, much more often than its usual 15 s), and one more line follows:

  scrape: s/b=<ratio>

before the last line (issue 17: the metrics endpoint must not cost the
publish path; goal s/b >= 0.98).
"""

import argparse
import base64
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "t"))

from conftest import BUILD, amqp_config  # noqa: E402
from stack import Stack  # noqa: E402

QUEUE = "bench.publish"


def wrk(url, seconds, connections, env, threads=2):
    # a client thread per core, as wrk advises: with one, the client's turn
    # between an answer and the next request is what every case waits for
    out = subprocess.run(
        ["wrk", "-t%d" % threads, "-c%d" % connections, "-d%ds" % seconds,
         "--latency", "-s", os.path.join(ROOT, "bench", "count.lua"), url],
        capture_output=True, text=True, env=dict(os.environ, **env),
        timeout=seconds + 60)
    m = re.search(r"RESULT ok=(\d+) bad=(\d+) rate=([\d.]+) "
                  r"p50_ms=([\d.]+) p99_ms=([\d.]+)", out.stdout)
    if not m:
        raise RuntimeError("wrk: %s %s" % (out.stdout, out.stderr))
    return {"ok": int(m.group(1)), "bad": int(m.group(2)),
            "rate": float(m.group(3)), "p50": float(m.group(4)),
            "p99": float(m.group(5))}


def queue_count(ch):
    return ch.queue_declare(QUEUE, durable=True,
                            passive=True).method.message_count


def raw_publish(raw, port, seconds, size, window=1000, chunk=None):
    opts = ["--chunk", str(chunk)] if chunk else []
    out = subprocess.run([raw] + opts + ["127.0.0.1", str(port), QUEUE,
                                         str(seconds), str(size),
                                         str(window)],
                         capture_output=True, text=True, timeout=seconds + 60)
    m = re.search(r"rate=(\d+) p50_ms=([\d.]+) p99_ms=([\d.]+) "
                  r"confirmed=(\d+)", out.stdout)
    if not m:
        raise RuntimeError("publish_raw: %s %s" % (out.stdout, out.stderr))
    r = {"rate": float(m.group(1)), "p50": float(m.group(2)),
         "p99": float(m.group(3)), "ok": int(m.group(4))}
    # the same latencies as wrk would report them (bench/latency)
    c = re.search(r"p50c_ms=([\d.]+) p99c_ms=([\d.]+)", out.stdout)
    if c:
        r["p50c"], r["p99c"] = float(c.group(1)), float(c.group(2))
    return r


def settle(ch, queue=QUEUE):
    """Empty the queue, and give the broker a moment to drop what the purge
    left to its message store before the next case starts."""
    ch.queue_purge(queue)
    time.sleep(3)


def median(runs):
    """The run with the median rate (rounds are odd by default; with an even
    count, the lower middle one)."""
    return sorted(runs, key=lambda r: r["rate"])[(len(runs) - 1) // 2]


def line(name, r):
    print("%-42s %9.0f msg/s   p50 %7.2f ms   p99 %7.2f ms   (%s ok, %s "
          "errors)" % (name, r["rate"], r["p50"], r["p99"], r["ok"],
                       r.get("bad", 0)), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--connections", type=int, default=1000)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--scrape", action="store_true",
                    help="also (b) with zmq_metrics scraped every second")
    args = ap.parse_args()

    raw = os.path.join(BUILD, "bench", "publish_raw")
    results = {}

    with Stack("zmq-bench-") as servers:
        # the broker, with the management plugin for (d)
        rabbit = servers.rabbit(QUEUE, management=True)
        mgmt_port = rabbit.mgmt_port
        ch = servers.ch

        cfg = servers.config(amqp_config(rabbit.port, {"svc": {
            "routing_key": QUEUE}}, outconn={"max_inflight": 4096}))
        ngx = servers.nginx("location = /metrics { zmq_metrics; }\n"
                            "location = /a { return 202 '{}'; }\n"
                            "location = /b { zmq_service svc; }\n",
                            http="zmq_config file:%s;" % cfg,
                            workers=args.workers)

        env = {"BODY_SIZE": str(args.size)}
        payload = json.dumps({"properties": {"delivery_mode": 2},
                              "routing_key": QUEUE, "payload": "x" * args.size,
                              "payload_encoding": "string"})
        env_d = dict(env, PAYLOAD_JSON=payload,
                     AUTH=base64.b64encode(b"guest:guest").decode())
        url_d = ("http://127.0.0.1:%d/api/exchanges/%%2F/amq.default/publish"
                 % mgmt_port)

        print("bench/publish: %d-byte persistent messages to a durable "
              "queue, %d connections, %d rounds of %d s" % (
                  args.size, args.connections, args.rounds, args.seconds),
              flush=True)

        results["a"] = [wrk(ngx.url + "/a", args.seconds, args.connections,
                            env)]
        line("(a) nginx alone, 202 after the body", results["a"][0])

        # A fresh broker is slower for its first seconds of persistent
        # traffic (its allocators and queue index grow); whichever case ran
        # first would pay for that. Warm it up, unmeasured.
        raw_publish(raw, rabbit.port, args.seconds, args.size)
        settle(ch)

        def case_b():
            r = wrk(ngx.url + "/b", args.seconds, args.connections, env)
            time.sleep(0.5)
            r["in_queue"] = queue_count(ch)
            r["lost"] = max(0, r["ok"] - r["in_queue"])
            return r

        scrapes = {"n": 0, "bytes": 0}

        def case_s():
            stop = threading.Event()

            def scrape():
                while not stop.wait(1.0):
                    with urllib.request.urlopen(ngx.url + "/metrics",
                                                timeout=5) as resp:
                        scrapes["bytes"] += len(resp.read())
                        scrapes["n"] += 1

            t = threading.Thread(target=scrape, daemon=True)
            t.start()
            try:
                return case_b()
            finally:
                stop.set()
                t.join()

        cases = {
            "b": ("(b) gateway, publish with confirms", case_b),
            "s": ("(s) = (b), zmq_metrics scraped every 1 s", case_s),
            "c": ("(c) raw rabbitmq-c, 1000 in flight",
                  lambda: raw_publish(raw, rabbit.port, args.seconds,
                                      args.size)),
            "d": ("(d) management HTTP API publish",
                  lambda: wrk(url_d, args.seconds, args.connections, env_d)),
        }

        # The broker's speed drifts over a run (its message store grows,
        # purges leave work behind), so the cases alternate in rounds, each
        # round in another order, and each case's rate is its median round.
        order = ["b", "c", "d"] + (["s"] if args.scrape else [])
        for rnd in range(args.rounds):
            for k in order[rnd % len(order):] + order[:rnd % len(order)]:
                r = cases[k][1]()
                results.setdefault(k, []).append(r)
                line("%s, round %d" % (cases[k][0], rnd + 1), r)
                if k in "bs":
                    print("    %d answered 202, %d in the queue, %d lost" % (
                        r["ok"], r["in_queue"], r["lost"]), flush=True)
                settle(ch)

        med = {k: median(v) for k, v in results.items()}
        for k in "bcd":
            line("median %s" % cases[k][0], med[k])
        lost = sum(r["lost"] for r in results["b"] + results.get("s", []))
        bc = med["b"]["rate"] / max(med["c"]["rate"], 1)
        bd = med["b"]["rate"] / max(med["d"]["rate"], 1)
        ba = med["b"]["rate"] / max(med["a"]["rate"], 1)
        print("ratios of the medians: b/a=%.2f b/c=%.2f b/d=%.2f" % (
            ba, bc, bd))
        if args.scrape:
            line("median %s" % cases["s"][0], med["s"])
            print("    %d scrapes, %d bytes each on average" % (
                scrapes["n"], scrapes["bytes"] // max(scrapes["n"], 1)))
            print("scrape: s/b=%.2f" % (
                med["s"]["rate"] / max(med["b"]["rate"], 1)))
        print("publish: b/c=%.2f b/d=%.2f lost=%d" % (bc, bd, lost))


if __name__ == "__main__":
    main()
