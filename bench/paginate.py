#!/usr/bin/python3
"""bench/paginate: pages of a Redis list and sorted set read through the
gateway's redis_page endpoint against redis-py reading Redis directly, on
servers this script starts (loopback, temporary dirs).

  (a) redis-py: N client processes, each in a loop LRANGE (list) or
      ZRANGEBYSCORE ... LIMIT (sorted set) of one page, nothing else
  (b) the gateway: wrk (2 threads) with N connections on GET
      /api/list?page=P and /api/zset?page=P&min=&max=, which also counts
      (LLEN, ZCOUNT) and answers JSON; NGINX as conf/nginx.conf runs it (a
      worker per core, an access log), keepalive as NGINX's defaults
      (keepalive_requests 1000)

Both read the same page (checked before the runs), N the same (--clients,
default 8); (a) counts from when its N processes are connected.

Pages of 20 items from a 100,000-item list and a 100,000-member sorted set
(scores 0-99,999; the range 25,000-75,000, a page in its middle). Cases
alternate in rounds, each counts with its median round. The last line is
machine-readable (goal: both >= 1.0):

  paginate: list=<b/a> zset=<b/a>
"""

import argparse
import json
import multiprocessing
import os
import re
import resource
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "t"))

import redis  # noqa: E402  (imported once, before the clients fork)

from conftest import Nginx, RedisServer  # noqa: E402

ITEMS = 100000
PER_PAGE = 20
LO, HI = 25000, 75000
LIST_PAGE = ITEMS // PER_PAGE // 2
ZSET_PAGE = (HI - LO) // PER_PAGE // 2


def wrk(url, seconds, connections, threads=2):
    out = subprocess.run(
        ["wrk", "-t%d" % threads, "-c%d" % connections, "-d%ds" % seconds,
         url], capture_output=True, text=True, timeout=seconds + 60)
    m = re.search(r"Requests/sec:\s+([\d.]+)", out.stdout)
    n = re.search(r"(\d+) requests in", out.stdout)
    if not m or not n:
        raise RuntimeError("wrk: %s %s" % (out.stdout, out.stderr))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out.stdout)
    if bad:
        raise RuntimeError("wrk: %s answers were not 200" % bad.group(1))
    return float(m.group(1)), int(n.group(1))


def client(port, kind, seconds, counter, start):
    c = redis.Redis(host="127.0.0.1", port=port)
    c.ping()
    off = (LIST_PAGE - 1) * PER_PAGE
    zoff = (ZSET_PAGE - 1) * PER_PAGE
    n = 0
    start.wait()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if kind == "list":
            items = c.lrange("bench:list", off, off + PER_PAGE - 1)
        else:
            items = c.zrangebyscore("bench:zset", LO, HI, start=zoff,
                                    num=PER_PAGE)
        assert len(items) == PER_PAGE
        n += 1
    with counter.get_lock():
        counter.value += n


def direct(port, kind, seconds, clients):
    """Pages per second of N redis-py processes, counted from when every
    one is connected (not their start) for the same seconds as wrk."""
    counter = multiprocessing.Value("q", 0)
    start = multiprocessing.Barrier(clients + 1)
    procs = [multiprocessing.Process(target=client,
                                     args=(port, kind, seconds, counter,
                                           start))
             for _ in range(clients)]
    for p in procs:
        p.start()
    start.wait(timeout=60)
    t0 = time.monotonic()
    for p in procs:
        p.join()
        if p.exitcode != 0:
            raise RuntimeError("a redis-py client failed")
    return counter.value / max(seconds, time.monotonic() - t0), counter.value


def cpu(pids):
    """CPU seconds so far of these processes (servers), and of this
    script's children that ended (wrk, the redis-py clients)."""
    total = 0
    for pid in pids:
        try:
            with open("/proc/%d/stat" % pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return total / os.sysconf("SC_CLK_TCK") + r.ru_utime + r.ru_stime


def median(runs):
    runs = sorted(runs)
    return runs[len(runs) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--clients", type=int, default=8,
                    help="N: redis-py processes, and wrk connections")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2,
                    help="NGINX workers (default: one per core, as "
                         "worker_processes auto)")
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="zmq-bench-")
    rs = ngx = None

    try:
        rdir = os.path.join(tmp, "redis")
        os.makedirs(rdir)
        rs = RedisServer(rdir)
        r = rs.client()
        pipe = r.pipeline(transaction=False)
        for i in range(0, ITEMS, 1000):
            pipe.rpush("bench:list", *[json.dumps({"id": j, "v": "x" * 32})
                                       for j in range(i, i + 1000)])
            pipe.zadd("bench:zset", {json.dumps({"id": j}): j
                                     for j in range(i, i + 1000)})
        pipe.execute()

        cfg = os.path.join(tmp, "zmq.json")
        with open(cfg, "w") as f:
            json.dump({
                "service": [
                    {"name": "plist", "kind": "redis_page", "url": rs.url,
                     "key": "bench:list", "per_page": PER_PAGE},
                    {"name": "pzset", "kind": "redis_page", "url": rs.url,
                     "source": "zset", "key": "bench:zset",
                     "per_page": PER_PAGE}],
                "rest_channel": [
                    {"name": "l", "url_path": "/api/list", "method": "GET",
                     "service": "plist"},
                    {"name": "z", "url_path": "/api/zset", "method": "GET",
                     "service": "pzset"}]}, f)

        ndir = os.path.join(tmp, "nginx")
        os.makedirs(ndir)
        # as conf/nginx.conf runs: an access log (conftest's NGINX_CONF
        # turns it off for tests), a worker per core
        ngx = Nginx(ndir, http="zmq_config file:%s;" % cfg,
                    server="access_log %s;\n"
                           "location /api/ { zmq_router; }\n"
                           % os.path.join(ndir, "access.log"),
                    workers=args.workers, log_level="warn")
        ngx.start()

        urls = {"list": "%s/api/list?page=%d" % (ngx.url, LIST_PAGE),
                "zset": "%s/api/zset?page=%d&min=%d&max=%d" % (
                    ngx.url, ZSET_PAGE, LO, HI)}

        import requests
        deadline = time.monotonic() + 10
        for kind, url in urls.items():
            while True:
                resp = requests.get(url, timeout=5)
                if resp.status_code == 200 or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            body = resp.json()
            # (a) and (b) read the same page
            if kind == "list":
                off = (LIST_PAGE - 1) * PER_PAGE
                same = r.lrange("bench:list", off, off + PER_PAGE - 1)
            else:
                same = r.zrangebyscore("bench:zset", LO, HI,
                                       start=(ZSET_PAGE - 1) * PER_PAGE,
                                       num=PER_PAGE)
            assert len(same) == PER_PAGE, (kind, same)
            assert body["object_list"] == [json.loads(v) for v in same], \
                (kind, body)

        print("bench/paginate: pages of %d of %d items, N=%d (redis-py "
              "processes, wrk connections), %d NGINX workers with an access "
              "log, %d rounds of %d s, load average %s" % (
                  PER_PAGE, ITEMS, args.clients, args.workers, args.rounds,
                  args.seconds, "%.2f %.2f %.2f" % os.getloadavg()))

        results = {k: {"a": [], "b": []} for k in urls}
        # CPU per page: (a) its clients and Redis, (b) wrk, the NGINX
        # workers and Redis (what each costs the machine, whatever else
        # runs on it)
        per_page = {k: {"a": [], "b": []} for k in urls}
        servers = {"a": [rs.proc.pid], "b": [rs.proc.pid] + ngx.worker_pids()}
        for rnd in range(args.rounds):
            for kind in urls:
                cases = [("a", lambda k=kind: direct(rs.port, k, args.seconds,
                                                     args.clients)),
                         ("b", lambda k=kind: wrk(urls[k], args.seconds,
                                                  args.clients))]
                if rnd % 2:
                    cases.reverse()
                for name, run in cases:
                    c0 = cpu(servers[name])
                    rate, pages = run()
                    used = cpu(servers[name]) - c0
                    results[kind][name].append(rate)
                    per_page[kind][name].append(used / max(pages, 1) * 1e6)

        ratios = {}
        for kind in urls:
            a = median(results[kind]["a"])
            b = median(results[kind]["b"])
            ratios[kind] = b / a if a else 0.0
            print("%-5s (a) redis-py %9.0f pages/s   (b) gateway %9.0f "
                  "pages/s" % (kind, a, b))
            print("      CPU per page: (a) %.0f us (clients, Redis)   "
                  "(b) %.0f us (wrk, NGINX, Redis)" % (
                      median(per_page[kind]["a"]),
                      median(per_page[kind]["b"])))

        problems = ngx.problems()
        if problems:
            print("\n".join(problems), file=sys.stderr)
        print("paginate: list=%.2f zset=%.2f" % (ratios["list"],
                                                 ratios["zset"]))

    finally:
        if ngx is not None:
            ngx.stop()
        if rs is not None:
            rs.stop()


if __name__ == "__main__":
    main()
