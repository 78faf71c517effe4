#!/usr/bin/python3
"""bench/publish: the gateway's publish rate against baselines measured in
the same run, on servers this script starts (loopback, temporary dirs).

  (a) NGINX alone answering 202 after reading the body
  (b) the gateway: zmq_service publishing with confirms
  (c) a raw rabbitmq-c publisher, 1,000 unconfirmed messages in flight
  (d) the RabbitMQ management HTTP API publish endpoint

256-byte bodies, persistent messages, a durable queue. After (b) the queue
must hold at least as many messages as the gateway answered 202 for; the
difference is reported as lost. The last line is machine-readable:

  publish: b/c=<ratio> b/d=<ratio> lost=<count>
"""

import argparse
import base64
import json
import os
import re
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "t"))

from conftest import (BUILD, Nginx, RabbitServer, Gateway,  # noqa: E402
                      amqp_config, wait_port)

QUEUE = "bench.publish"


def wrk(url, seconds, connections, env):
    out = subprocess.run(
        ["wrk", "-t1", "-c%d" % connections, "-d%ds" % seconds,
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


def line(name, r):
    print("%-42s %9.0f msg/s   p50 %7.2f ms   p99 %7.2f ms   (%s ok, %s "
          "errors)" % (name, r["rate"], r["p50"], r["p99"], r["ok"],
                       r.get("bad", 0)), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--connections", type=int, default=1000)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="zmq-bench-")
    raw = os.path.join(BUILD, "bench", "publish_raw")
    results = {}
    rabbit = ngx = None

    try:
        # the broker, with the management plugin for (d)
        rdir = os.path.join(tmp, "rabbit")
        os.makedirs(rdir)
        rabbit = RabbitServer.__new__(RabbitServer)
        mgmt_port = rabbit_with_management(rabbit, rdir)

        conn = rabbit.connection()
        ch = conn.channel()
        ch.queue_declare(QUEUE, durable=True)

        ndir = os.path.join(tmp, "nginx")
        os.makedirs(ndir)
        cfg = os.path.join(tmp, "zmq.json")
        with open(cfg, "w") as f:
            json.dump(amqp_config(rabbit.port, {"svc": {
                "routing_key": QUEUE}}, outconn={"max_inflight": 4096}), f)
        ngx = Nginx(ndir, http="zmq_config file:%s;" % cfg,
                    server="location = /zmq/status { zmq_status; }\n"
                           "location = /a { return 202 '{}'; }\n"
                           "location = /b { zmq_service svc; }\n",
                    workers=args.workers, log_level="warn")
        try:
            ngx.start()
        except RuntimeError:
            print(ngx.error_log(), file=sys.stderr)
            raise
        Gateway(ngx).wait_state("ready")

        env = {"BODY_SIZE": str(args.size)}

        print("bench/publish: %d-byte persistent messages to a durable "
              "queue, %d s per run, %d connections" % (
                  args.size, args.seconds, args.connections), flush=True)

        results["a"] = wrk(ngx.url + "/a", args.seconds, args.connections,
                           env)
        line("(a) nginx alone, 202 after the body", results["a"])

        ch.queue_purge(QUEUE)
        results["b"] = wrk(ngx.url + "/b", args.seconds, args.connections,
                           env)
        time.sleep(0.5)
        in_queue = queue_count(ch)
        lost = max(0, results["b"]["ok"] - in_queue)
        line("(b) gateway, publish with confirms", results["b"])
        print("    %d answered 202, %d in the queue, %d lost" % (
            results["b"]["ok"], in_queue, lost), flush=True)

        ch.queue_purge(QUEUE)
        out = subprocess.run([raw, "127.0.0.1", str(rabbit.port), QUEUE,
                              str(args.seconds), str(args.size), "1000"],
                             capture_output=True, text=True,
                             timeout=args.seconds + 60)
        m = re.search(r"rate=(\d+) p50_ms=([\d.]+) p99_ms=([\d.]+) "
                      r"confirmed=(\d+)", out.stdout)
        if not m:
            raise RuntimeError("publish_raw: %s %s" % (out.stdout,
                                                       out.stderr))
        results["c"] = {"rate": float(m.group(1)), "p50": float(m.group(2)),
                        "p99": float(m.group(3)), "ok": int(m.group(4))}
        line("(c) raw rabbitmq-c, 1000 in flight", results["c"])

        ch.queue_purge(QUEUE)
        payload = json.dumps({"properties": {"delivery_mode": 2},
                              "routing_key": QUEUE, "payload": "x" * args.size,
                              "payload_encoding": "string"})
        results["d"] = wrk(
            "http://127.0.0.1:%d/api/exchanges/%%2F/amq.default/publish"
            % mgmt_port, args.seconds, args.connections,
            dict(env, PAYLOAD_JSON=payload,
                 AUTH=base64.b64encode(b"guest:guest").decode()))
        line("(d) management HTTP API publish", results["d"])
        conn.close()

        bc = results["b"]["rate"] / max(results["c"]["rate"], 1)
        bd = results["b"]["rate"] / max(results["d"]["rate"], 1)
        ba = results["b"]["rate"] / max(results["a"]["rate"], 1)
        print("ratios: b/a=%.2f b/c=%.2f b/d=%.2f" % (ba, bc, bd))
        print("publish: b/c=%.2f b/d=%.2f lost=%d" % (bc, bd, lost))
    finally:
        if ngx is not None:
            ngx.stop()
        if rabbit is not None and getattr(rabbit, "proc", None):
            rabbit.close()
        subprocess.run(["rm", "-rf", tmp])


def rabbit_with_management(rabbit, rdir):
    """RabbitServer, with rabbitmq_management enabled on a free port."""
    from conftest import free_port
    mgmt = free_port()
    orig_start = RabbitServer.start

    def start(self):
        with open(self.env["RABBITMQ_CONFIG_FILE"], "a") as f:
            f.write("management.tcp.ip = 127.0.0.1\n"
                    "management.tcp.port = %d\n" % mgmt)
        with open(self.env["RABBITMQ_ENABLED_PLUGINS_FILE"], "w") as f:
            f.write("[rabbitmq_management].\n")
        orig_start(self)
        wait_port(mgmt, 60)

    RabbitServer.start = start
    try:
        RabbitServer.__init__(rabbit, rdir)
    finally:
        RabbitServer.start = orig_start
    return mgmt


if __name__ == "__main__":
    main()
