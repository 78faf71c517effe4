#!/usr/bin/python3
"""bench/tls: publishing with confirms over TLS through the gateway, against
a raw rabbitmq-c publisher over TLS, on a RabbitMQ node this script starts
with a TLS listener (loopback, temporary dirs, certificates made by
t/tls_certs.py).

  (b) the gateway: zmq_service publishing with confirms, its amqp_def with
      tls (verified against the test CA), wrk with WINDOW connections
  (c) bench/publish_raw --tls: rabbitmq-c's SSL socket (verifying too),
      WINDOW unconfirmed messages in flight

The same window for both: WINDOW requests in flight through the gateway
(each waits for its confirm), WINDOW messages in flight for the raw
publisher. 256-byte persistent messages to a durable queue. The broker is
warmed up first (unmeasured); then (b) and (c) alternate in rounds and each
counts with its median round. After every (b) the queue must hold at least
as many messages as the gateway answered 202 for; the difference is lost.
The last line is machine-readable:

  tls: b/c=<ratio> lost=<count>

(issue 17: goal b/c >= 0.8). Needs wrk, make (bench/publish_raw).
"""

import argparse
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "t"))
sys.path.insert(0, os.path.join(ROOT, "bench"))

from conftest import (BUILD, Gateway, amqp_config,  # noqa: E402
                      open_to_workers)
from stack import Stack  # noqa: E402
from publish import wrk, median, line, settle  # noqa: E402
from tls_certs import make_pki  # noqa: E402

QUEUE = "bench.publish"


def raw_publish(raw, ca, port, seconds, size, window):
    import re
    out = subprocess.run([raw, "--tls", ca, "localhost", str(port), QUEUE,
                          str(seconds), str(size), str(window)],
                         capture_output=True, text=True, timeout=seconds + 60)
    m = re.search(r"rate=(\d+) p50_ms=([\d.]+) p99_ms=([\d.]+) "
                  r"confirmed=(\d+)", out.stdout)
    if not m:
        raise RuntimeError("publish_raw: %s %s" % (out.stdout, out.stderr))
    return {"rate": float(m.group(1)), "p50": float(m.group(2)),
            "p99": float(m.group(3)), "ok": int(m.group(4))}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--window", type=int, default=1000)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()

    raw = os.path.join(BUILD, "bench", "publish_raw")
    if not os.path.exists(raw):
        subprocess.run(["make", "-C", ROOT, raw], check=True,
                       stdout=subprocess.DEVNULL)
    results = {}

    with Stack("zmq-bench-tls-") as servers:
        pki_dir = os.path.join(servers.tmp, "pki")
        pki = make_pki(pki_dir)
        for path in pki.values():
            os.chmod(path, 0o644)           # the workers read them
        open_to_workers(pki_dir)

        rabbit = servers.rabbit(QUEUE, tls=pki)
        ch = servers.ch
        cfg = servers.config(amqp_config(
            rabbit.tls_port, {"svc": {"routing_key": QUEUE}},
            outconn={"max_inflight": max(4096, args.window)},
            amqp_def={"host": "localhost", "tls": True,
                      "ca_file": pki["ca"]}))
        ngx = servers.nginx("location = /b { zmq_service svc; }\n",
                            http="zmq_config file:%s;" % cfg,
                            workers=args.workers)
        gw = Gateway(ngx)
        tls = {o.get("tls") for o in gw.outconn()}
        verified = all(o.get("verified") for o in gw.outconn())

        env = {"BODY_SIZE": str(args.size)}
        print("bench/tls: %d-byte persistent messages to a durable queue "
              "over %s (verified: %s), window %d, %d rounds of %d s"
              % (args.size, "/".join(sorted(t for t in tls if t)), verified,
                 args.window, args.rounds, args.seconds), flush=True)

        # a fresh broker is slower for its first seconds: warm it up
        raw_publish(raw, pki["ca"], rabbit.tls_port, args.seconds, args.size,
                    args.window)
        settle(ch, QUEUE)

        def case_b():
            r = wrk(ngx.url + "/b", args.seconds, args.window, env)
            time.sleep(0.5)
            r["in_queue"] = ch.queue_declare(
                QUEUE, durable=True, passive=True).method.message_count
            r["lost"] = max(0, r["ok"] - r["in_queue"])
            return r

        cases = {
            "b": ("(b) gateway over TLS, with confirms", case_b),
            "c": ("(c) raw rabbitmq-c over TLS",
                  lambda: raw_publish(raw, pki["ca"], rabbit.tls_port,
                                      args.seconds, args.size, args.window)),
        }

        order = ["b", "c"]
        for rnd in range(args.rounds):
            for k in order[rnd % 2:] + order[:rnd % 2]:
                r = cases[k][1]()
                results.setdefault(k, []).append(r)
                line("%s, round %d" % (cases[k][0], rnd + 1), r)
                if k == "b":
                    print("    %d answered 202, %d in the queue, %d lost" % (
                        r["ok"], r["in_queue"], r["lost"]), flush=True)
                settle(ch, QUEUE)

        med = {k: median(v) for k, v in results.items()}
        for k in "bc":
            line("median %s" % cases[k][0], med[k])
        lost = sum(r["lost"] for r in results["b"])
        bc = med["b"]["rate"] / max(med["c"]["rate"], 1)
        print("tls: b/c=%.2f lost=%d" % (bc, lost), flush=True)


if __name__ == "__main__":
    main()
