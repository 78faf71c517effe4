"""Broker CPU per request for: one rabbitmq-c requester (1000 outstanding),
the same with the gateway's x-zmq-seq header, and two requesters of 500
each (as 2 NGINX workers), alternating rounds, one broker and responder."""
# build first: cp bench/rpc_raw.c bench/rpc_split/raw_seq.c &&
#   patch bench/rpc_split/raw_seq.c bench/rpc_split/raw_seq.patch &&
#   cc -O2 bench/rpc_split/raw_seq.c -o bench/rpc_split/raw_seq -lrabbitmq
# run: ZMQ_BUILD=$PWD/build /usr/bin/python3 bench/rpc_split/exp.py [ROUNDS]
import os, sys, subprocess, tempfile, time, re
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "t"))
from conftest import RabbitServer, BUILD
RAW = os.path.join(os.path.dirname(os.path.abspath(__file__)), "raw_seq")
RESP = os.path.join(BUILD, "bench", "rpc_responder")
tmp = tempfile.mkdtemp(prefix="zmq-rpcexp-")
os.makedirs(tmp + "/rabbit")
rabbit = RabbitServer(tmp + "/rabbit")
resp = subprocess.Popen([RESP, "127.0.0.1", str(rabbit.port), "bench.rpc", "500"], stdout=subprocess.PIPE, text=True)
assert resp.stdout.readline().strip() == "ready"
hz = os.sysconf("SC_CLK_TCK")
def ticks(pid):
    n = 0
    for t in os.listdir("/proc/%d/task" % pid):
        try:
            v = open("/proc/%d/task/%s/stat" % (pid, t)).read().rsplit(")", 1)[1].split()
            n += int(v[11]) + int(v[12])
        except OSError:
            pass
    return n
def machine():
    v = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    return sum(v[:8]) - v[3] - v[4] - v[7]
def case(name, procs, seconds=5):
    env = dict(os.environ)
    if name == "seq":
        env["RAW_SEQ"] = "1"
    beam = rabbit.beam_pid()
    b0, m0, t0 = ticks(beam), machine(), time.monotonic()
    ps = [subprocess.Popen([RAW, "127.0.0.1", str(rabbit.port), "bench.rpc", str(seconds), "256", str(1000 // procs)], stdout=subprocess.PIPE, text=True, env=env) for _ in range(procs)]
    outs = [p.communicate()[0] for p in ps]
    b1, m1, t1 = ticks(beam), machine(), time.monotonic()
    ok = sum(int(re.search(r"replied=(\d+)", o).group(1)) for o in outs)
    rate = sum(float(re.search(r"rate=(\d+)", o).group(1)) for o in outs)
    print("%-6s rate %6.0f  broker %.1f us/req  machine busy %.2f" % (name, rate, (b1 - b0) / hz * 1e6 / ok, (m1 - m0) / hz / (t1 - t0)), flush=True)
    return (b1 - b0) / hz * 1e6 / ok
try:
    case("warm", 1, 4)
    res = {}
    order = ["plain", "seq", "two"]
    for r in range(int(sys.argv[1]) if len(sys.argv) > 1 else 4):
        for n in (order if r % 2 == 0 else order[::-1]):
            res.setdefault(n, []).append(case(n, 2 if n == "two" else 1))
    for n, v in res.items():
        v = sorted(v)
        print("median %-6s broker %.1f us/req  (%s)" % (n, v[(len(v) - 1) // 2], " ".join("%.0f" % x for x in v)))
finally:
    resp.terminate(); resp.wait()
    rabbit.close()
    subprocess.run(["rm", "-rf", tmp])
