"""zmq_metrics and zmq_status for STOMP outgoing connections (issue 16, with
issue 17's metrics): publish results, inflight, connection_up, reconnects
and the publish duration histogram carry transport="stomp" like the AMQP
ones, counted for REST channels and for the admin API's send and invoke;
and the durations of rpc and invoke requests have a histogram of their
own, zmq_rpc_duration_seconds{outconn, kind="rpc"|"invoke"}. Values are
read with test_metrics.py's strict parser after a known number of
requests, against a scripted fake STOMP broker and the session's RabbitMQ
(an rpc responder in pika)."""

import concurrent.futures
import time

import pytest
import requests

from fake_stomp import FakeStomp, frame, receipt
from test_metrics import get, parse
from test_rpc import Responder, invoke_config, rpc_config  # noqa: F401
from test_stomp_admin import Gw, Script, Silent  # noqa: F401
from activemq_helpers import rabbitmq_stomp  # noqa: F401 (fixture)

METRICS = "location = /metrics { zmq_metrics; }\n"
PUB = ("location = /pub { zmq_service svc; zmq_confirm_timeout 1s; }\n"
       + METRICS)


def scrape(url):
    r = requests.get(url, timeout=5)
    assert r.status_code == 200, r.text
    return parse(r.text)


def wait_stomp_ready(gw, name, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ws = gw.status()["workers"]
        states = [w.get("stomp", {}).get(name, {}).get("state") for w in ws]
        if states and all(s == "ready" for s in states):
            return
        time.sleep(0.05)
    raise AssertionError("%s is %s" % (name, states))


@pytest.fixture
def fake():
    b = FakeStomp(Script())
    yield b
    b.close()


def test_stomp_publishes_are_counted_like_amqp_ones(gateway, fake):
    cfg = {"stomp_def": [{"name": "broker", "host": "127.0.0.1",
                          "port": fake.port, "heartbeat": 0}],
           "stomp_outconn": [{"name": "sout", "def": "broker"}],
           "service": [{"name": "svc", "kind": "publish",
                        "stomp_outconn": "sout",
                        "destination": "/queue/m"}]}
    gw = gateway(cfg, PUB, wait=None)
    wait_stomp_ready(gw, "sout")
    url = gw.url + "/metrics"

    for _ in range(5):
        assert requests.post(gw.url + "/pub", data=b"x",
                             timeout=10).status_code == 202
    fake.script.mode = "refuse"         # ERROR for it, then the link closes
    assert requests.post(gw.url + "/pub", data=b"x",
                         timeout=10).status_code == 502
    wait_stomp_ready(gw, "sout")
    fake.script.mode = "hold"           # no receipt: 504, still in flight
    assert requests.post(gw.url + "/pub", data=b"x",
                         timeout=10).status_code == 504

    m = scrape(url)
    lab = {"outconn": "sout", "transport": "stomp"}
    assert get(m, "zmq_publish_total", result="confirmed", **lab) == 5
    assert get(m, "zmq_publish_total", result="nacked", **lab) == 1
    assert get(m, "zmq_publish_total", result="timed_out", **lab) == 1
    assert get(m, "zmq_publish_total", result="lost", **lab) == 0
    assert get(m, "zmq_publish_total", result="rejected", **lab) == 0
    # STOMP has no basic.return: no "returned" series
    assert not [k for k in m if k[0] == "zmq_publish_total"
                and ("transport", "stomp") in k[1]
                and ("result", "returned") in k[1]]
    assert get(m, "zmq_inflight", **lab) == 1
    assert get(m, "zmq_connection_up", worker="0", **lab) == 1
    assert get(m, "zmq_connection_reconnects_total", **lab) == 1
    assert get(m, "zmq_publish_duration_seconds_count", **lab) == 7
    assert get(m, "zmq_publish_duration_seconds_bucket", le="+Inf",
               **lab) == 7
    # the 504 waited zmq_confirm_timeout (1 s): 6 answers under it
    assert get(m, "zmq_publish_duration_seconds_bucket", le="0.5",
               **lab) == 6
    assert get(m, "zmq_publish_duration_seconds_sum", **lab) >= 1.0

    # zmq_status says the same, under "stomp"
    [st] = [w["stomp"]["sout"] for w in gw.status()["workers"]]
    assert (st["published"], st["confirmed"], st["nacked"],
            st["timed_out"], st["inflight"], st["reconnects"],
            st["state"]) == (7, 5, 1, 1, 1, 1, "ready")

    # the broker gone: connection_up 0, rejected counted
    fake.close()
    deadline = time.monotonic() + 10
    while get(scrape(url), "zmq_connection_up", worker="0", **lab) != 0:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert requests.post(gw.url + "/pub", data=b"x",
                         timeout=10).status_code == 503
    m = scrape(url)
    assert get(m, "zmq_publish_total", result="rejected", **lab) == 1
    assert get(m, "zmq_publish_total", result="lost", **lab) == 1
    assert get(m, "zmq_inflight", **lab) == 0
    gw.ngx.forget_problems()


def test_admin_send_and_invoke_count_in_the_publish_histogram(
        nginx_factory, zmqctl, redis_store, tmp_path, rabbitmq_stomp, fake):
    silent = Silent()
    try:
        gw = Gw(nginx_factory, zmqctl, redis_store, tmp_path,
                rabbitmq_stomp.stomp_port, fake, silent)
        gw.wait_stomp("fake.out")
        for _ in range(3):
            r = gw.send("fake.out", {"destination": "/queue/x",
                                     "body": "a"})
            assert r.status_code == 202, r.text
        r = gw.call("POST", "api/service/fpub/invoke", data=b"b")
        assert r.status_code == 202, r.text
        m = scrape(gw.url + "/zmq/metrics")
        lab = {"outconn": "fake.out", "transport": "stomp"}
        assert get(m, "zmq_publish_total", result="confirmed", **lab) == 4
        assert get(m, "zmq_publish_duration_seconds_count", **lab) == 4
    finally:
        silent.close()


def test_rpc_and_invoke_durations_have_their_own_histogram(
        rabbitmq, gateway, queue):
    # an rpc service answered by a pika responder that waits 0.3 s
    def slow(props, body):
        time.sleep(0.3)
        return (b"done", {})

    resp = Responder(rabbitmq, queue.name, slow)
    try:
        cfg = rpc_config(rabbitmq, queue.name)
        inv = invoke_config(rabbitmq, queue.name + ".inv", "async")
        inv["service"] = [dict(s, outconn="out") for s in inv["service"]]
        cfg["service"] += inv["service"]
        queue.channel.queue_declare(queue.name + ".inv", durable=True)
        gw = gateway(cfg, "location = /rpc { zmq_service svc; }\n"
                          "location = /inv { zmq_service inv; }\n" + METRICS)
        with concurrent.futures.ThreadPoolExecutor(4) as ex:
            rs = list(ex.map(lambda i: requests.post(
                gw.url + "/rpc", data=b"q%d" % i, timeout=30), range(4)))
        assert [r.status_code for r in rs] == [200] * 4, [r.text for r in rs]
        for _ in range(2):
            r = requests.post(gw.url + "/inv", data=b"{}", timeout=30)
            assert r.status_code == 202, r.text
        m = scrape(gw.url + "/metrics")
        rpc = {"outconn": "out", "kind": "rpc"}
        assert get(m, "zmq_rpc_duration_seconds_count", **rpc) == 4
        # each waited for the responder's 0.3 s
        assert get(m, "zmq_rpc_duration_seconds_bucket", le="0.25",
                   **rpc) == 0
        assert get(m, "zmq_rpc_duration_seconds_sum", **rpc) >= 1.2
        inv = {"outconn": "out", "kind": "invoke"}
        assert get(m, "zmq_rpc_duration_seconds_count", **inv) == 2
        # neither is a publish of the publish histogram
        assert not [k for k in m if k[0].startswith(
            "zmq_publish_duration_seconds")]
        assert get(m, "zmq_rpc_requests_total", outconn="out") == 4
    finally:
        resp.stop()
        try:
            queue.channel.queue_delete(queue.name + ".inv")
        except Exception:
            pass
