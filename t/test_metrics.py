"""Prometheus metrics (issue 17, item 3): the gateway's zmq_metrics and
zmqd's --metrics answer the text exposition format (version 0.0.4),
checked line by line by a strict parser, with exact values after a known
number of publishes (confirmed, returned through mandatory, rejected with
503) and consumptions (acked, retried, dead-lettered); then a real
Prometheus scrapes both and its HTTP API gives the same values."""

import json
import math
import os
import re
import shutil
import subprocess
import time
import urllib.parse
import uuid

import pytest
import requests

from conftest import STATUS_LOCATION, free_port, wait_port, stop_pid
from test_zmqd import FAST_RETRY, http_endpoint  # noqa: F401 (fixture)
from zmqd_helpers import zmqd  # noqa: F401 (fixture)

METRICS = "location = /metrics { zmq_metrics; }\n"
# a location whose name needs escaping in a label: /m"e\t
ODD = 'location = "/m\\"e\\\\t" { zmq_service svc; }\n'
ODD_URI = "/m%22e%5Ct"
ODD_LABEL = '/m"e\\t'

CONTENT_TYPE = "text/plain; version=0.0.4"

# ------------------------------------------------------------ the parser

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL_VALUE = r'"(?:[^"\\\n]|\\[\\"n])*"'
LABEL = r"[a-zA-Z_][a-zA-Z0-9_]*=" + LABEL_VALUE
SAMPLE = re.compile(r"^(?P<name>%s)(?:\{(?P<labels>%s(?:,%s)*)?\})? "
                    r"(?P<value>\S+)$" % (NAME, LABEL, LABEL))
HELP = re.compile(r"^# HELP (?P<name>%s) (?P<text>.*)$" % NAME)
TYPE = re.compile(r"^# TYPE (?P<name>%s) "
                  r"(?P<type>counter|gauge|histogram|summary|untyped)$"
                  % NAME)
ONE_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)=(%s)' % LABEL_VALUE)


def unescape(v):
    return re.sub(r'\\(.)', lambda m: {"n": "\n"}.get(m.group(1),
                                                      m.group(1)), v[1:-1])


def parse(text):
    """{(name, frozenset(labels)): value}, after checking every line
    strictly: a sample, a HELP or a TYPE; each family typed once, before
    its samples, its samples together; no series twice; counters and
    histograms end in _total or _bucket/_sum/_count; histograms
    cumulative with +Inf equal to _count."""
    assert text.endswith("\n"), "the text must end with a line feed"
    samples = {}
    types = {}
    helps = set()
    done = set()        # families whose samples are over
    current = None
    for line in text[:-1].split("\n"):
        m = HELP.match(line)
        if m:
            assert m.group("name") not in helps, line
            helps.add(m.group("name"))
            continue
        m = TYPE.match(line)
        if m:
            fam = m.group("name")
            assert fam not in types, "typed twice: " + line
            types[fam] = m.group("type")
            if current is not None:
                done.add(current)
            current = fam
            continue
        assert not line.startswith("#"), "a bad comment: %r" % line
        m = SAMPLE.match(line)
        assert m, "not a valid sample line: %r" % line
        name = m.group("name")
        fam = name
        if current and types[current] == "histogram":
            fam = re.sub(r"_(bucket|sum|count)$", "", name)
        assert fam == current, "%s outside its family (%s)" % (name, current)
        assert fam not in done
        labels = tuple((k, unescape(v))
                       for k, v in ONE_LABEL.findall(m.group("labels") or ""))
        assert len(dict(labels)) == len(labels), "a label twice: " + line
        value = float(m.group("value"))
        assert not math.isnan(value)
        key = (name, frozenset(labels))
        assert key not in samples, "a series twice: " + line
        samples[key] = value
        if types[fam] == "counter":
            assert name.endswith("_total"), line
            assert value >= 0 and value == int(value), line
    check_histograms(samples, types)
    return samples


def check_histograms(samples, types):
    for fam, t in types.items():
        if t != "histogram":
            continue
        series = {}
        for (name, labels), v in samples.items():
            if name == fam + "_bucket":
                rest = frozenset(kv for kv in labels if kv[0] != "le")
                le = dict(labels)["le"]
                series.setdefault(rest, []).append(
                    (float("inf") if le == "+Inf" else float(le), v))
        for rest, buckets in series.items():
            buckets.sort()
            values = [v for _, v in buckets]
            assert values == sorted(values), "not cumulative: %s" % buckets
            assert buckets[-1][0] == float("inf"), "no +Inf bucket"
            assert samples[(fam + "_count", rest)] == values[-1], \
                "+Inf is not _count for %s" % dict(rest)
            assert (fam + "_sum", rest) in samples
            assert samples[(fam + "_sum", rest)] >= 0


def get(samples, name, **labels):
    """A sample's value by some of its labels (exactly one must match)."""
    found = [v for (n, ls), v in samples.items()
             if n == name and set(labels.items()) <= set(ls)]
    assert len(found) == 1, "%s%s: %d series" % (name, labels, len(found))
    return found[0]


def fetch(url):
    r = requests.get(url, timeout=5)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith(CONTENT_TYPE), r.headers
    return parse(r.text)


def test_the_parser_refuses_what_is_not_the_format():
    good = ('# HELP a_total x\n# TYPE a_total counter\n'
            'a_total{l="q\\"\\\\\\n"} 1\n')
    assert get(parse(good), "a_total", l='q"\\\n') == 1
    for bad in ('a_total 1\n',                         # untyped
                '# TYPE a_total counter\na_total{l="x} 1\n',
                '# TYPE a_total counter\na_total{l="\\t"} 1\n',
                '# TYPE a counter\na 1\n',              # no _total
                '# TYPE h histogram\nh_bucket{le="1"} 2\n'
                'h_bucket{le="+Inf"} 1\nh_sum 0\nh_count 1\n',
                '# TYPE h histogram\nh_bucket{le="+Inf"} 2\nh_sum 0\n'
                'h_count 1\n'):
        with pytest.raises(AssertionError):
            parse(bad)


# ------------------------------------------------------------- the setup

def gateway_config(port, queue, queue2, down_port):
    d = {"username": "guest", "password": "guest", "heartbeat": 10,
         "host": "127.0.0.1"}
    return {
        "amqp_def": [dict(d, name="rabbit", port=port),
                     dict(d, name="nowhere", port=down_port)],
        "amqp_outconn": [{"name": "out", "def": "rabbit"},
                         {"name": "down", "def": "nowhere"}],
        "service": [
            {"name": "svc", "kind": "publish", "outconn": "out",
             "routing_key": queue},
            {"name": "bad", "kind": "publish", "outconn": "out",
             "routing_key": queue2},
            {"name": "unr", "kind": "publish", "outconn": "out",
             "routing_key": "nobody.listens", "mandatory": True},
            {"name": "dn", "kind": "publish", "outconn": "down",
             "routing_key": queue}],
    }


LOCATIONS = (METRICS + ODD
             + "location = /pub { zmq_service svc; }\n"
             + "location = /bad { zmq_service bad; }\n"
             + "location = /unr { zmq_service unr; }\n"
             + "location = /down { zmq_service dn; }\n")


def zmqd_config(port, queue, queue2, url):
    return {
        "amqp_def": [{"name": "rabbit", "host": "127.0.0.1", "port": port,
                      "username": "guest", "password": "guest",
                      "heartbeat": 10}],
        "http_outconn": [{"name": "web", "url": url}],
        "service": [{"name": "st", "kind": "redis", "key": "got"},
                    {"name": "hook", "kind": "http", "outconn": "web"}],
        "amqp_channel": [
            {"name": "in", "def": "rabbit", "queue": queue, "service": "st",
             "prefetch": 10},
            {"name": "failing", "def": "rabbit", "queue": queue2,
             "service": "hook", "retry": FAST_RETRY, "prefetch": 10}],
    }


@pytest.fixture
def world(rabbitmq, gateway, zmqd, http_endpoint, redis_store, tmp_path):
    """The gateway (two workers) publishing to two queues that zmqd
    consumes, one through a service that always fails; after the events:
    3 + 1 confirmed, 2 returned, 4 rejected; 3 acked, 2 retried, 1
    dead-lettered."""
    ch = rabbitmq.connection().channel()
    q = "t.m." + uuid.uuid4().hex[:8]
    q2 = q + ".f"
    for name in (q, q2):
        ch.queue_declare(name, durable=True)
    http_endpoint.status = lambda body: 500
    url = "http://127.0.0.1:%d" % http_endpoint.server_address[1]
    mport = free_port()
    z = zmqd(zmqd_config(rabbitmq.port, q, q2, url),
             args=["--metrics", "127.0.0.1:%d" % mport])
    wait_port(mport, proc=z.proc)
    gw = gateway(gateway_config(rabbitmq.port, q, q2, free_port()),
                 LOCATIONS, workers=2)

    def post(path, n, code):
        for i in range(n):
            r = requests.post(gw.url + path, data=b"m%d" % i, timeout=10)
            assert r.status_code == code, (path, r.status_code, r.text)

    post("/pub", 2, 202)
    post(ODD_URI, 1, 202)
    post("/bad", 1, 202)
    post("/unr", 2, 422)
    post("/down", 4, 503)
    z.wait_log("dead-lettered after 3 attempt(s)")
    r = redis_store.client()
    deadline = time.monotonic() + 15
    while r.llen("got") < 3:
        assert time.monotonic() < deadline, "zmqd did not consume"
        time.sleep(0.05)

    class W:
        pass
    w = W()
    w.gw, w.zmqd, w.zmqd_url = gw, z, "http://127.0.0.1:%d/metrics" % mport
    w.queues = (q, q2)
    yield w
    for name in (q, q2, q2 + ".dead"):
        try:
            ch.queue_delete(name)
        except Exception:
            pass


GATEWAY_EXPECT = [
    ("zmq_publish_total", {"outconn": "out", "transport": "amqp",
                           "result": "confirmed"}, 4),
    ("zmq_publish_total", {"outconn": "out", "result": "returned"}, 2),
    ("zmq_publish_total", {"outconn": "out", "result": "nacked"}, 0),
    ("zmq_publish_total", {"outconn": "out", "result": "timed_out"}, 0),
    ("zmq_publish_total", {"outconn": "out", "result": "lost"}, 0),
    ("zmq_publish_total", {"outconn": "out", "result": "rejected"}, 0),
    ("zmq_publish_total", {"outconn": "down", "result": "rejected"}, 4),
    ("zmq_publish_total", {"outconn": "down", "result": "confirmed"}, 0),
    ("zmq_requests_total", {"channel": "/pub", "code": "202"}, 2),
    ("zmq_requests_total", {"channel": ODD_LABEL, "code": "202"}, 1),
    ("zmq_requests_total", {"channel": "/bad", "code": "202"}, 1),
    ("zmq_requests_total", {"channel": "/unr", "code": "422"}, 2),
    ("zmq_requests_total", {"channel": "/down", "code": "503"}, 4),
    ("zmq_publish_duration_seconds_count", {"outconn": "out"}, 6),
    ("zmq_publish_duration_seconds_bucket", {"outconn": "out",
                                             "le": "+Inf"}, 6),
    ("zmq_inflight", {"outconn": "out"}, 0),
    ("zmq_rpc_requests_total", {"outconn": "out"}, 0),
]

ZMQD_EXPECT = [
    ("zmqd_messages_total", {"channel": "in", "result": "acked"}, 3),
    ("zmqd_messages_total", {"channel": "in", "result": "retried"}, 0),
    ("zmqd_messages_total", {"channel": "failing", "result": "retried"}, 2),
    ("zmqd_messages_total", {"channel": "failing",
                             "result": "dead_lettered"}, 1),
    ("zmqd_messages_total", {"channel": "failing", "result": "acked"}, 0),
    ("zmqd_messages_total", {"channel": "failing", "result": "rejected"}, 0),
    ("zmqd_service_duration_seconds_count", {"channel": "in"}, 3),
    ("zmqd_service_duration_seconds_count", {"channel": "failing"}, 3),
    ("zmqd_connection_up", {"def": "rabbit"}, 1),
]


def test_the_gateways_metrics_count_exactly(world):
    m = fetch(world.gw.url + "/metrics")
    for name, labels, value in GATEWAY_EXPECT:
        assert get(m, name, **labels) == value, (name, labels)
    # per worker: both connected to the broker, none to the closed port
    for w in ("0", "1"):
        assert get(m, "zmq_connection_up", outconn="out", worker=w) == 1
        assert get(m, "zmq_connection_up", outconn="down", worker=w) == 0
        assert get(m, "zmq_config_source_up", worker=w) == 1
        assert get(m, "zmq_config_version", worker=w) >= 0
    assert get(m, "zmq_publish_duration_seconds_sum", outconn="out") > 0
    # a 503 is not a publish: none in the histogram
    assert get(m, "zmq_publish_duration_seconds_count", outconn="down") == 0
    assert get(m, "zmq_connection_reconnects_total", outconn="out") == 0


def test_zmqds_metrics_count_exactly(world):
    m = fetch(world.zmqd_url)
    for name, labels, value in ZMQD_EXPECT:
        assert get(m, name, **labels) == value, (name, labels)
    assert get(m, "zmqd_service_duration_seconds_sum", channel="failing") > 0


def test_zmqd_refuses_metrics_with_workers(zmqctl):
    from test_zmqd import ZMQD
    r = subprocess.run([ZMQD, "--metrics", "127.0.0.1:1", "--workers", "2"],
                       env=zmqctl.env, capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 2 and "--workers 1" in r.stderr
    r = subprocess.run([ZMQD, "--metrics", "localhost"], env=zmqctl.env,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0


# -------------------------------------------------------------- Prometheus

class Prometheus:
    def __init__(self, tmp, targets):
        exe = shutil.which("prometheus")
        if exe is None:
            pytest.skip("prometheus is not installed (Debian: prometheus)")
        self.port = free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        conf = os.path.join(tmp, "prometheus.yml")
        jobs = []
        for job, (host, path) in targets.items():
            jobs.append("  - job_name: %s\n    metrics_path: %s\n"
                        "    static_configs:\n      - targets: ['%s']\n"
                        % (job, path, host))
        with open(conf, "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  "
                    "scrape_timeout: 1s\n  evaluation_interval: 1s\n"
                    "scrape_configs:\n" + "".join(jobs))
        self.log = open(os.path.join(tmp, "prometheus.log"), "w")
        self.proc = subprocess.Popen(
            [exe, "--config.file=" + conf,
             "--storage.tsdb.path=" + os.path.join(tmp, "tsdb"),
             "--web.listen-address=127.0.0.1:%d" % self.port],
            stdout=self.log, stderr=self.log)
        wait_port(self.port, proc=self.proc)
        # it listens before its storage is open: its API answers 503 until
        # /-/ready does 200 (a loaded machine takes seconds)
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(self.url + "/-/ready",
                                timeout=5).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert self.proc.poll() is None, "prometheus exited"
            assert time.monotonic() < deadline, "prometheus never ready"
            time.sleep(0.2)

    def query(self, q):
        r = requests.get(self.url + "/api/v1/query",
                         params={"query": q}, timeout=5)
        assert r.status_code == 200, r.text
        doc = r.json()
        assert doc["status"] == "success", doc
        return doc["data"]["result"]

    def wait_scraped_after(self, job, t, timeout=30):
        """Until a scrape of job that started after t succeeded."""
        deadline = time.monotonic() + timeout
        while True:
            res = self.query('timestamp(up{job="%s"} == 1)' % job)
            if res and float(res[0]["value"][1]) > t:
                return
            assert time.monotonic() < deadline, \
                "%s not scraped after %s: %s" % (job, t, self.query("up"))
            time.sleep(0.2)

    def value(self, q):
        res = self.query(q)
        assert len(res) == 1, (q, res)
        return float(res[0]["value"][1])

    def stop(self):
        stop_pid(self.proc)
        self.log.close()


def promql(name, labels):
    sel = ",".join('%s="%s"' % (k, v.replace("\\", "\\\\")
                                .replace('"', '\\"'))
                   for k, v in labels.items())
    return "sum(%s{%s})" % (name, sel)


def test_prometheus_scrapes_both_and_reads_the_same_counts(world, tmp_path):
    gw_host = urllib.parse.urlparse(world.gw.url).netloc
    zmqd_host = urllib.parse.urlparse(world.zmqd_url).netloc
    events_done = time.time()
    p = Prometheus(str(tmp_path), {"gateway": (gw_host, "/metrics"),
                                   "zmqd": (zmqd_host, "/metrics")})
    try:
        p.wait_scraped_after("gateway", events_done)
        p.wait_scraped_after("zmqd", events_done)
        for name, labels, value in GATEWAY_EXPECT + ZMQD_EXPECT:
            assert p.value(promql(name, labels)) == value, (name, labels)
        assert p.value('sum(zmq_connection_up{outconn="out"})') == 2
        assert p.value('histogram_quantile(1, sum by (le) ('
                       'zmq_publish_duration_seconds_bucket'
                       '{outconn="out"}))') > 0
    finally:
        p.stop()
