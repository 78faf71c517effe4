"""A real broker that stops, restarts, or raises a memory alarm under the
gateway: requests are refused quickly with 503, other locations of the same
worker keep answering, and publishing resumes without an NGINX reload."""

import concurrent.futures
import time

import pytest
import requests

from conftest import RabbitServer, amqp_config

PUB = "location = /pub { zmq_service svc; }\n"


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    """A broker of this module's own: these tests stop and alarm it."""
    server = RabbitServer(str(tmp_path_factory.mktemp("outage")))
    yield server
    server.close()


def publish_queue(broker):
    conn = broker.connection()
    ch = conn.channel()
    ch.queue_declare("outage", durable=True)
    ch.queue_purge("outage")
    return conn, ch


def post(gw, timeout=30):
    return requests.post(gw.url + "/pub", data=b"m", timeout=timeout)


def test_broker_stopped_then_started_again(broker, gateway):
    conn, ch = publish_queue(broker)
    conn.close()
    gw = gateway(amqp_config(broker.port, {"svc": {"routing_key": "outage"}}),
                 PUB + "zmq_confirm_timeout 5s;")
    assert post(gw).status_code == 202

    broker.stop()
    gw.wait_state("backoff", timeout=30)

    t0 = time.monotonic()
    r = post(gw, timeout=5)
    assert time.monotonic() - t0 < 1
    assert r.status_code == 503
    assert r.json()["error"] == "broker_unavailable"
    assert int(r.headers["Retry-After"]) >= 1
    # the same worker still serves its other locations
    assert gw.status()["workers"][0]["outconns"]["out"]["state"] in (
        "backoff", "connecting")

    broker.start()
    gw.wait_state("ready", timeout=60)
    assert post(gw).status_code == 202

    # both answered 202 and both survived the restart (persistent, durable)
    conn = broker.connection()
    count = conn.channel().queue_declare("outage", durable=True,
                                         passive=True).method.message_count
    conn.close()
    assert count == 2
    assert gw.totals()["reconnects"] >= 1


def test_memory_alarm_gives_503_and_recovers(broker, gateway):
    conn, ch = publish_queue(broker)
    gw = gateway(amqp_config(broker.port, {"svc": {"routing_key": "outage"}}),
                 PUB + "zmq_confirm_timeout 2s;")
    assert post(gw).status_code == 202

    r = broker.ctl("set_vm_memory_high_watermark", "0.0000001")
    assert r.returncode == 0, r.stderr
    try:
        # the broker blocks the connection; the first publish may be the
        # one that finds out (and times out); after that 503 at once
        codes = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            t0 = time.monotonic()
            res = post(gw, timeout=10)
            codes.append(res.status_code)
            if res.status_code == 503 and time.monotonic() - t0 < 1:
                assert res.json()["error"] == "broker_blocked"
                assert "Retry-After" in res.headers
                break
        else:
            pytest.fail("never refused quickly: %s" % codes)
        assert set(codes) <= {503, 504}
        gw.wait_state("blocked")
        # the worker stays responsive while blocked
        for _ in range(5):
            t0 = time.monotonic()
            st = gw.status()
            assert time.monotonic() - t0 < 1
            assert st["pid"] in gw.ngx.worker_pids()
            assert [w["outconns"]["out"]["state"] for w in st["workers"]] \
                == ["blocked"] * len(st["workers"])
    finally:
        r = broker.ctl("set_vm_memory_high_watermark", "0.4")
        assert r.returncode == 0, r.stderr

    gw.wait_state("ready", timeout=30)
    assert post(gw).status_code == 202
    # everything answered 202 is in the queue
    count = ch.queue_declare("outage", durable=True,
                             passive=True).method.message_count
    assert count >= 2
    conn.close()
