#!/usr/bin/python3
"""bench/security: what checking a security definition costs a publish, on
servers this script starts (loopback, temporary dirs).

One NGINX (2 workers), the publish service of bench/publish.py (256-byte
bodies to a durable queue, publisher confirms), five locations:

  (a) no security
  (b) basic_auth, the same credentials on every request (the worker's
      cache answers; a miss costs PBKDF2 on the thread pool)
  (c) apikey (SHA-256 of the key on the event loop)
  (d) jwt HS256, one token (verified once, then cached)
  (e) jwt RS256, one token (verified once, then cached)

and (f): location (a) again while 50 distinct wrong passwords a second
(--flood-rate)
arrive at a basic_auth location of the same NGINX, each from its own
connection, from 250 loopback source addresses (127.0.0.2 and up) so that
the throttle (10 failures per 10 s per address) never answers for the
verification: every one costs a PBKDF2 (100,000 iterations) on the thread
pool `zmq_auth` (2 threads per worker).

The definitions live in Redis (zmqctl import; the apikey's key made by
zmqctl apikey), so basic_auth compares against the PBKDF2 hash. wrk runs
with bench/publish.py's settings (1,000 connections, 2 threads, 6 s). The
cases alternate in rounds, each round in another order; before each case a
1 s wrk with 8 connections fills the workers' caches (unmeasured), then the
queue is purged and the broker given 3 s, and the script waits (up to
--quiet-wait s) until other users of the machine take under a quarter of a
core. Each case counts with its median round (by rate of 2xx answers); p99
figures are the medians of the rounds' p99.

Every round also says where the CPU went (from /proc: the workers' event
loops, their other threads, i.e. the thread pools, the broker, wrk, and
"others", what the rest of the machine used), and the event loops' CPU per
answer (us/req): the cost of a check, less sensitive than the rate to the
broker's and the machine's moods. The last line is machine-readable:

  security: basic=<b/a> apikey=<c/a> jwt_hs=<d/a> jwt_pk=<e/a> stall_p99x=<f>

where stall_p99x = median p99 of (f) / median p99 of (a). Goals: every
ratio >= 0.9, stall_p99x <= 2 (printed, not asserted).
"""

import argparse
import asyncio
import base64
import json
import os
import re
import secrets
import subprocess
import sys
import threading
import time

import jwt
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "t"))
sys.path.insert(0, os.path.join(ROOT, "bench"))

from conftest import ZMQCTL, amqp_config  # noqa: E402
from stack import Stack  # noqa: E402
from publish import settle  # noqa: E402

QUEUE = "bench.security"
USER = "bench"
FLOOD_ADDRS = 250           # 127.0.0.2 ...: each sends one every 5 s
CASES = ("a", "b", "c", "d", "e", "f")
NAMES = {
    "a": "(a) no security",
    "b": "(b) basic_auth, cached",
    "c": "(c) apikey",
    "d": "(d) jwt HS256",
    "e": "(e) jwt RS256",
    "f": "(f) (a) + %g wrong passwords/s",
}


def wrk(url, seconds, connections, env, threads=2, cpu=None):
    """bench/publish.py's wrk, through security.lua (count.lua and one
    credential header); rate counts 2xx answers only. With cpu (a Cpu),
    the run's CPU use goes into the result as "cpu"."""
    p = subprocess.Popen(
        ["wrk", "-t%d" % threads, "-c%d" % connections, "-d%ds" % seconds,
         "--latency", "-s", os.path.join(ROOT, "bench", "security.lua"),
         url],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=dict(os.environ, **env))
    usage = None
    if cpu is not None:
        cpu.wrk = p.pid
        time.sleep(0.5)             # its connections made
        c0 = cpu.snapshot()
        time.sleep(seconds - 1)
        usage = cpu.delta(c0, cpu.snapshot())
    try:
        stdout, stderr = p.communicate(timeout=seconds + 60)
    except subprocess.TimeoutExpired:
        p.kill()
        raise
    m = re.search(r"RESULT ok=(\d+) bad=(\d+) rate=([\d.]+) "
                  r"p50_ms=([\d.]+) p99_ms=([\d.]+)", stdout)
    if not m:
        raise RuntimeError("wrk: %s %s" % (stdout, stderr))
    ok, bad, rate = int(m.group(1)), int(m.group(2)), float(m.group(3))
    r = {"ok": ok, "bad": bad, "rate": rate * ok / max(ok + bad, 1),
         "p50": float(m.group(4)), "p99": float(m.group(5)), "cpu": usage}
    if usage is not None:
        # the event loops' CPU per answer: what a check costs, whatever
        # the broker's speed in this round
        r["us"] = usage["loops"] / max(rate, 1) * 1e6
    return r


class Flood:
    """Wrong passwords at a fixed rate, each on a new connection from the
    next of FLOOD_ADDRS loopback addresses (Linux routes 127/8 to lo); an
    answer is awaited without holding back the next request."""

    def __init__(self, port, path, rate):
        self.port, self.path, self.rate = port, path, rate
        self.stop = threading.Event()
        self.n = 0
        self.statuses = {}
        self.latencies = []
        self.thread = None

    async def one(self, i):
        src = "127.0.0.%d" % (2 + i % FLOOD_ADDRS)
        password = "wrong-%d-%s" % (i, secrets.token_hex(4))
        cred = base64.b64encode(("%s:%s" % (USER, password)).encode())
        body = b"x" * 256
        req = (b"POST %s HTTP/1.1\r\nHost: bench\r\nAuthorization: Basic %s"
               b"\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
               b"Connection: close\r\n\r\n%s" % (
                   self.path.encode(), cred, len(body), body))
        t0 = time.monotonic()
        status = "error"
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(
                "127.0.0.1", self.port, local_addr=(src, 0)), 10)
            writer.write(req)
            line = await asyncio.wait_for(reader.readline(), 30)
            status = line.split(b" ")[1].decode() if line else "closed"
            await asyncio.wait_for(reader.read(), 10)
            writer.close()
        except (OSError, asyncio.TimeoutError, IndexError) as e:
            status = type(e).__name__
        self.statuses[status] = self.statuses.get(status, 0) + 1
        self.latencies.append((time.monotonic() - t0) * 1000)

    async def run(self):
        tasks = []
        t0 = time.monotonic()
        while not self.stop.is_set():
            tasks.append(asyncio.ensure_future(self.one(self.n)))
            self.n += 1
            await asyncio.sleep(max(0, t0 + self.n / self.rate
                                    - time.monotonic()))
        await asyncio.gather(*tasks)

    def start(self):
        self.thread = threading.Thread(
            target=lambda: asyncio.run(self.run()))
        self.thread.start()

    def finish(self):
        self.stop.set()
        self.thread.join(60)
        lat = sorted(self.latencies) or [0]
        return {"sent": self.n, "statuses": dict(sorted(
            self.statuses.items())), "p50": lat[len(lat) // 2],
            "p99": lat[min(len(lat) - 1, int(len(lat) * 0.99))]}


class Cpu:
    """Where the CPU went during a run, from /proc (perf is not always
    there): the NGINX workers' event loops (their main threads), their
    other threads (the thread pools: PBKDF2), the broker (beam), wrk, and
    the whole machine (/proc/stat): busy, and what of it was neither these
    nor this script ("others": other users of the machine)."""

    def __init__(self, ngx, rabbit):
        self.ngx, self.rabbit = ngx, rabbit
        self.hz = os.sysconf("SC_CLK_TCK")
        self.wrk = None

    @staticmethod
    def ticks(pid, tid):
        try:
            with open("/proc/%d/task/%d/stat" % (pid, tid)) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            return 0

    def threads(self, pid):
        try:
            return [int(t) for t in os.listdir("/proc/%d/task" % pid)]
        except OSError:
            return []

    def snapshot(self):
        s = {"loops": 0, "pool": 0, "broker": 0, "wrk": 0, "self": 0}
        for pid in self.ngx.worker_pids():
            for tid in self.threads(pid):
                s["loops" if tid == pid else "pool"] += self.ticks(pid, tid)
        beam = self.rabbit.beam_pid()
        if beam is not None:
            for tid in self.threads(beam):
                s["broker"] += self.ticks(beam, tid)
        if self.wrk is not None:
            for tid in self.threads(self.wrk):
                s["wrk"] += self.ticks(self.wrk, tid)
        for tid in self.threads(os.getpid()):
            s["self"] += self.ticks(os.getpid(), tid)
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        # user nice system idle iowait irq softirq steal guest guest_nice
        s["machine"] = sum(v[:8]) - v[3] - v[4] - v[7]
        s["steal"] = v[7]
        s["t"] = time.monotonic()
        return s

    def delta(self, a, b):
        secs = max(b["t"] - a["t"], 1e-3)
        d = {k: (b[k] - a[k]) / self.hz / secs for k in a if k != "t"}
        d["others"] = max(0.0, d["machine"] - sum(
            d[k] for k in ("loops", "pool", "broker", "wrk", "self")))
        return d


def cpu_line(c):
    return ("    cpu (cores): nginx loops %.2f, nginx threads %.2f, "
            "broker %.2f, wrk %.2f, others %.2f; machine busy %.2f of %d" % (
                c["loops"], c["pool"], c["broker"], c["wrk"], c["others"],
                c["machine"], os.cpu_count()))


def line(name, r):
    print("%-40s %8.0f msg/s   p50 %7.2f ms   p99 %7.2f ms   %5.1f us/req  "
          "(%s ok, %s errors)" % (name, r["rate"], r["p50"], r["p99"],
                                  r.get("us", 0), r["ok"], r.get("bad", 0)),
          flush=True)


def median_by(runs, key):
    return sorted(r[key] for r in runs)[(len(runs) - 1) // 2]


def median(runs):
    """The round with the median rate (with an even count, the lower middle
    one), as bench/publish.py."""
    return sorted(runs, key=lambda r: r["rate"])[(len(runs) - 1) // 2]


def zmqctl(env, *args):
    r = subprocess.run([ZMQCTL] + list(args), env=env, capture_output=True,
                       text=True, timeout=120)
    if r.returncode != 0:
        raise RuntimeError("zmqctl %s: %s%s" % (" ".join(args), r.stdout,
                                                r.stderr))
    return r.stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--connections", type=int, default=1000)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--flood-rate", type=float, default=50)
    ap.add_argument("--auth-threads", type=int, default=2)
    ap.add_argument("--quiet-wait", type=float, default=20,
                    help="before each case, wait up to this many seconds "
                         "for other users of the machine to go quiet")
    ap.add_argument("--cases", default="".join(CASES),
                    help="a subset of abcdef (a is always run)")
    args = ap.parse_args()
    # a case starts at most 3 + 40 + 1 s after its warm-up filled the
    # caches: within zmq_auth_cache_ttl (60 s), so no miss in a round
    args.quiet_wait = min(args.quiet_wait, 40)
    cases = ["a"] + [k for k in args.cases if k in CASES and k != "a"]
    NAMES["f"] = NAMES["f"] % args.flood_rate

    with Stack("zmq-secbench-") as servers:
        rabbit = servers.rabbit(QUEUE)
        ch = servers.ch
        redis = servers.redis()

        # the definitions, in Redis: zmqctl hashes the basic_auth password
        # (PBKDF2) and seals the HS256 secret
        key = os.path.join(servers.tmp, "secret.key")
        env = dict(os.environ, ZMQ_REDIS=redis.url, ZMQ_KEY_FILE=key)
        zmqctl(env, "keygen")

        password = secrets.token_urlsafe(18)
        hs_secret = secrets.token_urlsafe(48)
        rsa_key = rsa.generate_private_key(public_exponent=65537,
                                           key_size=2048)
        rsa_pub = rsa_key.public_key().public_bytes(
            serialization.Encoding.PEM,
            serialization.PublicFormat.SubjectPublicKeyInfo).decode()
        jwt_common = {"type": "jwt", "iss": "bench-issuer", "aud": "ngx_zmq"}
        doc = amqp_config(rabbit.port, {"svc": {"routing_key": QUEUE}},
                          outconn={"max_inflight": 4096})
        doc["security"] = [
            {"name": "basic", "type": "basic_auth", "username": USER,
             "password": password},
            {"name": "apikey", "type": "apikey", "keys": []},
            dict(jwt_common, name="jwt-hs", alg="HS256", secret=hs_secret),
            dict(jwt_common, name="jwt-rs", alg="RS256", public_key=rsa_pub),
        ]
        path = os.path.join(servers.tmp, "config.json")
        with open(path, "w") as f:
            json.dump(doc, f)
        zmqctl(env, "import", path)
        os.unlink(path)
        # the gateway makes API keys: shown once, on the last line
        api_key = zmqctl(env, "apikey", "--id", "bench",
                         "apikey").strip().splitlines()[-1]

        now = int(time.time())
        claims = {"sub": "bench-client", "iss": "bench-issuer",
                  "aud": "ngx_zmq", "iat": now, "exp": now + 3 * 3600}
        tok_hs = jwt.encode(claims, hs_secret, algorithm="HS256")
        tok_rs = jwt.encode(claims, rsa_key, algorithm="RS256")

        ngx = servers.nginx("location = /a { zmq_service svc; }\n"
                            "location = /b { zmq_service svc;"
                            " zmq_security basic; }\n"
                            "location = /c { zmq_service svc;"
                            " zmq_security apikey; }\n"
                            "location = /d { zmq_service svc;"
                            " zmq_security jwt-hs; }\n"
                            "location = /e { zmq_service svc;"
                            " zmq_security jwt-rs; }\n"
                            "location = /flood { zmq_service svc;"
                            " zmq_security basic; }\n",
                            http="zmq_key_file %s;\n"
                                 "zmq_config redis://127.0.0.1:%d/0;\n"
                                 "zmq_auth_thread_pool zmq_auth;\n"
                                 % (key, redis.port),
                            workers=args.workers,
                            # a thread pool of its own, in the main context
                            main="thread_pool zmq_auth threads=%d;\n"
                                 % args.auth_threads)

        basic = base64.b64encode(("%s:%s" % (USER, password))
                                 .encode()).decode()
        envs = {
            "a": ("/a", {}),
            "b": ("/b", {"AUTH": basic}),
            "c": ("/c", {"HEADER_NAME": "X-API-Key",
                         "HEADER_VALUE": api_key}),
            "d": ("/d", {"HEADER_NAME": "Authorization",
                         "HEADER_VALUE": "Bearer " + tok_hs}),
            "e": ("/e", {"HEADER_NAME": "Authorization",
                         "HEADER_VALUE": "Bearer " + tok_rs}),
            "f": ("/a", {}),
        }
        for k in envs:
            envs[k][1]["BODY_SIZE"] = str(args.size)

        # each location takes its credentials and refuses others
        s = requests.Session()
        for k in "abcde":
            p, e = envs[k]
            h = {}
            if "AUTH" in e:
                h["Authorization"] = "Basic " + e["AUTH"]
            if "HEADER_NAME" in e:
                h[e["HEADER_NAME"]] = e["HEADER_VALUE"]
            r = s.post(ngx.url + p, data="x", headers=h, timeout=10)
            if r.status_code != 202:
                raise RuntimeError("%s: %d %s" % (p, r.status_code, r.text))
            if k != "a":
                r = s.post(ngx.url + p, data="x", timeout=10)
                if r.status_code != 401:
                    raise RuntimeError("%s without credentials: %d" % (
                        p, r.status_code))
        settle(ch, QUEUE)

        print("bench/security: %d-byte persistent messages to a durable "
              "queue, %d connections, %d rounds of %d s, %d workers, "
              "thread_pool zmq_auth threads=%d" % (
                  args.size, args.connections, args.rounds, args.seconds,
                  args.workers, args.auth_threads), flush=True)

        # a fresh broker is slower for its first seconds of persistent
        # traffic: warm it up, unmeasured
        wrk(ngx.url + "/a", args.seconds, args.connections, envs["a"][1])
        settle(ch, QUEUE)

        floods = []
        cpu = Cpu(ngx, rabbit)

        def quiet(limit):
            """Wait (at most limit s) until other users of the machine take
            under a quarter of a core over a second; how long it took."""
            t0 = time.monotonic()
            while True:
                c0 = cpu.snapshot()
                time.sleep(1)
                if (cpu.delta(c0, cpu.snapshot())["others"] < 0.25
                        or time.monotonic() - t0 >= limit):
                    return time.monotonic() - t0

        def run(k):
            p, e = envs[k]
            # the workers' caches filled (and both workers reached), at a
            # concurrency no cold cache can turn into a herd of PBKDF2s
            wrk(ngx.url + p, 1, 8, e)
            settle(ch, QUEUE)
            waited = quiet(args.quiet_wait)
            flood = None
            if k == "f":
                flood = Flood(ngx.port, "/flood", args.flood_rate)
                flood.start()
                time.sleep(1)
            r = wrk(ngx.url + p, args.seconds, args.connections, e,
                    cpu=cpu)
            if flood is not None:
                r["flood"] = flood.finish()
                floods.append(r["flood"])
            r["waited"] = waited
            return r

        results = {}
        for rnd in range(args.rounds):
            n = rnd % len(cases)
            for k in cases[n:] + cases[:n]:
                r = run(k)
                results.setdefault(k, []).append(r)
                line("%s, round %d" % (NAMES[k], rnd + 1), r)
                print(cpu_line(r["cpu"]) + ("; waited %.0f s for a quiet "
                      "machine" % r["waited"] if r["waited"] > 1.5 else ""),
                      flush=True)
                if "flood" in r:
                    fl = r["flood"]
                    print("    flood: %d wrong passwords sent, answers %s, "
                          "p50 %.0f ms, p99 %.0f ms" % (
                              fl["sent"], fl["statuses"], fl["p50"],
                              fl["p99"]), flush=True)
        settle(ch, QUEUE)

        print()
        print("%-40s %8s %8s %8s %7s %7s %7s %7s" % (
            "median of %d rounds" % args.rounds, "msg/s", "p50 ms",
            "p99 ms", "us/req", "others", "errors", "x (a)"))
        med = {k: median(v) for k, v in results.items()}
        p99 = {k: median_by(v, "p99") for k, v in results.items()}
        for k in cases:
            m = med[k]
            print("%-40s %8.0f %8.2f %8.2f %7.1f %7.2f %7d %7.2f" % (
                NAMES[k], m["rate"], median_by(results[k], "p50"), p99[k],
                median_by(results[k], "us"),
                sorted(r["cpu"]["others"] for r in results[k])[
                    (len(results[k]) - 1) // 2],
                sum(r["bad"] for r in results[k]),
                m["rate"] / max(med["a"]["rate"], 1)))
        if floods:
            total = {}
            for fl in floods:
                for st, c in fl["statuses"].items():
                    total[st] = total.get(st, 0) + c
            print("flood, all rounds: %d wrong passwords, answers %s" % (
                sum(fl["sent"] for fl in floods), total))
        busy = ngx.error_log().count("password checks are under way")
        print("error log: %d \"auth_busy\" refusals" % busy)

        def ratio(k):
            if k not in med:
                return "n/a"
            return "%.2f" % (med[k]["rate"] / max(med["a"]["rate"], 1))

        stall = ("%.2f" % (p99["f"] / max(p99["a"], 1e-3))
                 if "f" in p99 else "n/a")
        print("security: basic=%s apikey=%s jwt_hs=%s jwt_pk=%s "
              "stall_p99x=%s" % (ratio("b"), ratio("c"), ratio("d"),
                                 ratio("e"), stall))


if __name__ == "__main__":
    main()
