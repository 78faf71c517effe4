#!/usr/bin/python3
"""bench/consume: zmqd's drain rate against a raw consumer, in one run, on
servers this script starts (loopback, temporary directories).

A durable queue is preloaded with 100,000 persistent 256-byte messages
before each case, which then drains it:

  (a) a raw rabbitmq-c consumer that acks each message
  (b) zmqd delivering to an http service: NGINX answering 200
  (c) zmqd delivering to a redis service (RPUSH)

zmqd runs with --workers 2 (one process per core of the 2-core machine the
goals are set for); --workers 1 shows a single process.

lost counts messages taken from the queue but not delivered (NGINX's
access log for (b), the Redis list's length for (c)). The last line is
machine-readable:

  consume: b/a=<ratio> c/a=<ratio> lost=<count>
"""

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "t"))

from conftest import (BUILD, ZMQCTL, Nginx, RabbitServer,  # noqa: E402
                      RedisServer)

QUEUE = "bench.consume"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=100000)
    ap.add_argument("--prefetch", type=int, default=200)
    ap.add_argument("--workers", type=int, default=2,
                    help="zmqd --workers (one per core here)")
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="zmq-consume-")
    rabbit = redis = ngx = None
    n = args.messages
    try:
        for d in ("rabbit", "redis", "nginx"):
            os.makedirs(os.path.join(tmp, d))
        rabbit = RabbitServer(os.path.join(tmp, "rabbit"))
        redis = RedisServer(os.path.join(tmp, "redis"))
        ngx = Nginx(os.path.join(tmp, "nginx"),
                    server="location = /hook { access_log %s/hook.log; "
                           "return 200; }\n" % tmp,
                    workers=1, log_level="warn")
        ngx.start()

        conn = rabbit.connection()
        ch = conn.channel()
        ch.queue_declare(QUEUE, durable=True)

        def preload():
            ch.queue_purge(QUEUE)
            subprocess.run([os.path.join(BUILD, "bench", "publish_raw"),
                            "127.0.0.1", str(rabbit.port), QUEUE, "600",
                            "256", "1000", str(n)], check=True,
                            capture_output=True)
            got = ch.queue_declare(QUEUE, passive=True).method.message_count
            if got != n:
                raise RuntimeError("preloaded %d of %d" % (got, n))

        def left():
            return ch.queue_declare(QUEUE, passive=True).method.message_count

        print("bench/consume: %d persistent 256-byte messages per case, "
              "zmqd --workers %d" % (n, args.workers), flush=True)

        # (a)
        preload()
        out = subprocess.run([os.path.join(BUILD, "bench", "consume_raw"),
                              "127.0.0.1", str(rabbit.port), QUEUE, str(n),
                              str(args.prefetch)],
                             capture_output=True, text=True, check=True)
        rate_a = float(re.search(r"rate=(\d+)", out.stdout).group(1))
        print("(a) raw rabbitmq-c consumer, ack each   %8.0f msg/s"
              % rate_a, flush=True)

        key = os.path.join(tmp, "secret.key")
        env = dict(os.environ, ZMQ_REDIS=redis.url, ZMQ_KEY_FILE=key)
        subprocess.run([ZMQCTL, "keygen"], env=env, check=True,
                       capture_output=True)

        def zmqd_case(label, services, extra, delivered):
            doc = {
                "amqp_def": [{"name": "rabbit", "host": "127.0.0.1",
                              "port": rabbit.port, "username": "guest",
                              "password": "guest"}],
                "service": services,
                "amqp_channel": [{"name": "in", "def": "rabbit",
                                  "queue": QUEUE, "service": "svc",
                                  "prefetch": args.prefetch}],
            }
            doc.update(extra)
            path = os.path.join(tmp, "c.json")
            with open(path, "w") as f:
                json.dump(doc, f)
            subprocess.run([ZMQCTL, "import", "--replace", path], env=env,
                           check=True, capture_output=True)
            preload()
            open(os.path.join(tmp, "hook.log"), "w").close()
            log = open(os.path.join(tmp, "zmqd.log"), "w")
            t0 = time.monotonic()
            z = subprocess.Popen([os.path.join(BUILD, "zmqd"), "--config",
                                  redis.url, "--workers",
                                  str(args.workers)],
                                 env=env, stdout=log, stderr=log)
            # done when every message was delivered, or nothing moves
            last, since = -1, time.monotonic()
            while True:
                got = delivered()
                if got >= n:
                    break
                if got != last:
                    last, since = got, time.monotonic()
                elif time.monotonic() - since > 10:
                    break
                if z.poll() is not None:
                    raise RuntimeError("zmqd exited")
                time.sleep(0.1)
            rate = got / (time.monotonic() - t0)
            z.send_signal(signal.SIGTERM)
            if z.wait(30) != 0:
                raise RuntimeError("zmqd did not exit cleanly")
            log.close()
            # taken from the queue (acked) but never delivered
            lost = max(0, n - delivered() - left())
            print("%-40s %8.0f msg/s  (%d lost)" % (label, rate, lost),
                  flush=True)
            return rate, lost

        def hook_lines():
            with open(os.path.join(tmp, "hook.log")) as f:
                lines = f.readlines()
            if lines and "POST /hook" not in lines[0]:
                print("unexpected access log line: %s" % lines[0])
            return sum(1 for line in lines if "POST /hook" in line)

        rate_b, lost_b = zmqd_case(
            "(b) zmqd -> http service (NGINX 200)",
            [{"name": "svc", "kind": "http", "outconn": "web",
              "path": "/hook"}],
            {"http_outconn": [{"name": "web", "url": ngx.url}]}, hook_lines)

        r = redis.client()
        rate_c, lost_c = zmqd_case(
            "(c) zmqd -> redis service (RPUSH)",
            [{"name": "svc", "kind": "redis", "key": "bench"}], {},
            lambda: r.llen("bench"))

        conn.close()
        print("consume: b/a=%.2f c/a=%.2f lost=%d" % (
            rate_b / rate_a, rate_c / rate_a, lost_b + lost_c))
    finally:
        if ngx is not None:
            ngx.stop()
        if redis is not None:
            redis.stop()
        if rabbit is not None:
            rabbit.close()
        subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    main()
