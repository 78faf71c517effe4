"""REST publishing through zmq_service against a real RabbitMQ, checked on
the broker side with pika: a 2xx means the broker confirmed the message,
and the message is there, byte for byte, with every mapped property."""

import concurrent.futures
import json
import os
import re
import socket
import subprocess
import time
import uuid

import pytest
import requests

from conftest import amqp_config, ZMQCTL

PUB = "location = /pub { zmq_service svc; }\n"


def post(gw, path="/pub", data=b"", headers=None, **kw):
    return requests.post(gw.url + path, data=data, headers=headers or {},
                         timeout=30, **kw)


def error_of(r):
    assert r.headers["Content-Type"] == "application/json"
    return r.json()["error"]


def test_body_and_every_mapped_property_arrive_byte_exact(rabbitmq, gateway,
                                                          queue):
    gw = gateway(amqp_config(rabbitmq.port, {"svc": {
        "routing_key": queue.name}}), PUB)
    body = bytes(range(256)) * 3 + b"\x00\x00end"
    started = int(time.time())
    r = post(gw, data=body, headers={
        "Content-Type": "application/x-thing",
        "Content-Encoding": "gzip",
        "X-Message-Id": "m-1",
        "X-Correlation-Id": "c-1",
        "X-Reply-To": "replies",
        "X-Priority": "7",
        "X-Expiration": "60000",
        "X-Delivery-Mode": "transient",
        "X-Zmq-Header-Customer": "ACME",
        "X-Zmq-Header-City": "Z\u00fcrich \u6771\u4eac".encode("utf-8"),
    })
    assert r.status_code == 202, r.text
    assert r.json() == {"message_id": "m-1", "confirmed": True}

    [(m, p, got)] = queue.drain(expect=1)
    assert got == body
    assert m.routing_key == queue.name and m.exchange == ""
    assert p.content_type == "application/x-thing"
    assert p.content_encoding == "gzip"
    assert p.message_id == "m-1"
    assert p.correlation_id == "c-1"
    assert p.reply_to == "replies"
    assert p.priority == 7
    assert p.expiration == "60000"
    assert p.delivery_mode == 1
    assert p.headers == {"Customer": "ACME",
                         "City": "Z\u00fcrich \u6771\u4eac"}
    assert p.app_id == "ngx_zmq"
    assert started - 2 <= p.timestamp <= time.time() + 2


def test_empty_body_is_published(rabbitmq, gateway, queue):
    gw = gateway(amqp_config(rabbitmq.port, {"svc": {
        "routing_key": queue.name}}), PUB)
    r = post(gw)
    assert r.status_code == 202
    [(m, p, got)] = queue.drain(expect=1)
    assert got == b""
    # no header given: a generated UUID, persistent by default
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-"
                        r"[89ab][0-9a-f]{3}-[0-9a-f]{12}", p.message_id)
    assert r.json()["message_id"] == p.message_id
    assert p.delivery_mode == 2


@pytest.mark.parametrize("frame_max", [4096, 131072])
def test_a_1mib_body_larger_than_frame_max_arrives_whole(rabbitmq, gateway,
                                                         queue, frame_max):
    gw = gateway(amqp_config(rabbitmq.port, {"svc": {
        "routing_key": queue.name}}, amqp_def={"frame_max": frame_max}),
        PUB)
    body = os.urandom(1024 * 1024)
    r = post(gw, data=body)
    assert r.status_code == 202, r.text
    [(m, p, got)] = queue.drain(expect=1)
    assert len(got) == len(body) and got == body


def test_defaults_then_service_then_request(rabbitmq, gateway, queue):
    gw = gateway(amqp_config(
        rabbitmq.port,
        {"svc": {"routing_key": queue.name, "priority": 5,
                 "content_type": "text/plain", "headers": {"from": "svc",
                                                           "x": "1"}}},
        outconn={"priority": 3, "content_type": "application/json",
                 "content_encoding": "utf-8", "expiration": 5000,
                 "app_id": "crm-gateway", "delivery_mode": 1}), PUB)
    assert post(gw, data=b"a").status_code == 202
    assert post(gw, data=b"b", headers={
        "Content-Type": "application/xml", "X-Zmq-Header-y": "2",
        "X-Delivery-Mode": "2"}).status_code == 202
    # a header the service sets is not the client's to change
    r = post(gw, data=b"c", headers={"X-Zmq-Header-x": "2"})
    assert r.status_code == 400 and r.json()["error"] == "bad_header"

    (_, p1, _), (_, p2, _) = queue.drain(expect=2)
    assert (p1.priority, p1.content_type, p1.content_encoding,
            p1.expiration, p1.app_id, p1.delivery_mode) == (
        5, "text/plain", "utf-8", "5000", "crm-gateway", 1)
    assert p1.headers == {"from": "svc", "x": "1"}
    assert p2.content_type == "application/xml"
    assert p2.delivery_mode == 2
    # the request's headers join the service's
    assert p2.headers == {"from": "svc", "x": "1", "y": "2"}


def test_routing_key_from_request_variables(rabbitmq, gateway, queue):
    gw = gateway(amqp_config(rabbitmq.port, {
        "svc": {"routing_key": "$arg_q"},
        "other": {"routing_key": "not-used"}}),
        PUB + "location = /hdr { zmq_service other;"
              " zmq_routing_key $http_x_routing_key; }\n")
    assert post(gw, "/pub?q=" + queue.name, data=b"1").status_code == 202
    assert post(gw, "/hdr", data=b"2",
                headers={"X-Routing-Key": queue.name}).status_code == 202
    assert [b for _, _, b in queue.drain(expect=2)] == [b"1", b"2"]


def test_unroutable_mandatory_message_is_422(rabbitmq, gateway):
    gw = gateway(amqp_config(rabbitmq.port, {"svc": {
        "routing_key": "nobody.listens", "mandatory": True}}), PUB)
    r = post(gw, data=b"x")
    assert r.status_code == 422
    assert error_of(r) == "unroutable"
    assert gw.totals()["returned"] == 1


def test_unroutable_without_mandatory_is_confirmed(rabbitmq, gateway):
    gw = gateway(amqp_config(rabbitmq.port, {"svc": {
        "routing_key": "nobody.listens"}}), PUB)
    assert post(gw, data=b"x").status_code == 202


def test_a_full_queue_that_rejects_publishes_gives_502(rabbitmq, gateway):
    name = "t.full." + uuid.uuid4().hex[:8]
    conn = rabbitmq.connection()
    ch = conn.channel()
    ch.queue_declare(name, arguments={"x-max-length": 1,
                                      "x-overflow": "reject-publish"})
    try:
        gw = gateway(amqp_config(rabbitmq.port, {"svc": {
            "routing_key": name}}), PUB)
        assert post(gw, data=b"first").status_code == 202
        r = post(gw, data=b"second")
        assert r.status_code == 503           # basic.nack: worth a retry
        assert error_of(r) == "nacked"
        assert r.headers.get("Retry-After") == "1"
        assert ch.queue_declare(name, passive=True).method.message_count \
            == 1
        assert gw.totals()["nacked"] == 1
    finally:
        ch.queue_delete(name)
        conn.close()


def test_wrong_method_is_405_with_allow(rabbitmq, gateway, queue):
    gw = gateway(amqp_config(rabbitmq.port, {"svc": {
        "routing_key": queue.name}}), PUB)
    r = requests.get(gw.url + "/pub", timeout=5)
    assert r.status_code == 405
    assert r.headers["Allow"] == "POST, PUT"
    assert error_of(r) == "method_not_allowed"
    assert requests.put(gw.url + "/pub", data=b"p",
                        timeout=5).status_code == 202
    assert queue.count() == 1


def test_a_body_over_max_body_is_413(rabbitmq, gateway, queue):
    gw = gateway(amqp_config(rabbitmq.port, {"svc": {
        "routing_key": queue.name}}),
        "location = /pub { zmq_service svc; zmq_max_body 1k; }\n")
    r = post(gw, data=b"x" * 1025)
    assert r.status_code == 413 and error_of(r) == "body_too_large"

    def chunks():
        for _ in range(3):
            yield b"y" * 500
    r = post(gw, data=chunks())          # chunked: no Content-Length
    assert r.status_code == 413 and error_of(r) == "body_too_large"

    assert post(gw, data=b"x" * 1024).status_code == 202
    assert queue.count() == 1


def test_invalid_json_is_400_when_the_format_is_json(rabbitmq, gateway,
                                                     queue):
    gw = gateway(amqp_config(rabbitmq.port, {"svc": {
        "routing_key": queue.name}}),
        "location = /pub { zmq_service svc; zmq_data_format json; }\n")
    r = post(gw, data=b'{"a": 1,}')
    assert r.status_code == 400 and error_of(r) == "invalid_json"
    assert post(gw, data=b'{"a": [1, "\xc3\xa9"]}').status_code == 202
    assert post(gw, data=b'"just a string"').status_code == 202
    assert queue.count() == 2


@pytest.mark.parametrize("header,value", [
    ("X-Priority", "12"), ("X-Priority", "high"), ("X-Expiration", "-5"),
    ("X-Delivery-Mode", "3"), ("X-Message-Id", "m" * 300),
    ("X-Reply-To", "r" * 256),
])
def test_bad_property_headers_are_400(rabbitmq, gateway, queue, header,
                                      value):
    gw = gateway(amqp_config(rabbitmq.port, {"svc": {
        "routing_key": queue.name}}), PUB)
    r = post(gw, data=b"x", headers={header: value})
    assert r.status_code == 400
    assert error_of(r) == "bad_header"
    assert header in r.json()["message"]
    # a marker on the same broker channel: once it is confirmed, anything
    # the gateway sent before it is in the queue too
    assert post(gw, data=b"marker").status_code == 202
    assert [b for _, _, b in queue.drain(expect=1)] == [b"marker"]


def test_a_service_may_opt_out_of_confirms(rabbitmq, gateway, queue):
    gw = gateway(amqp_config(rabbitmq.port, {"svc": {
        "routing_key": queue.name, "confirm": False}}), PUB)
    r = post(gw, data=b"fast")
    assert r.status_code == 202
    assert r.json()["confirmed"] is False
    assert [b for _, _, b in queue.drain(expect=1)] == [b"fast"]


def test_2000_concurrent_requests_each_202_is_in_the_queue_exactly_once(
        rabbitmq, gateway, queue):
    gw = gateway(amqp_config(rabbitmq.port, {"svc": {
        "routing_key": queue.name}}), PUB, workers=2)
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_connections=64,
                                            pool_maxsize=64)
    session.mount("http://", adapter)

    def one(i):
        mid = "c-%d" % i
        r = session.post(gw.url + "/pub", data=("body %d" % i).encode(),
                         headers={"X-Message-Id": mid}, timeout=60)
        return mid, r.status_code

    with concurrent.futures.ThreadPoolExecutor(64) as ex:
        results = list(ex.map(one, range(2000)))

    accepted = {mid for mid, status in results if status == 202}
    assert len(accepted) == 2000, {s for _, s in results}

    msgs = queue.drain(expect=2000, timeout=30)
    ids = [p.message_id for _, p, _ in msgs]
    assert len(ids) == len(set(ids)), "a message was published twice"
    assert set(ids) == accepted
    for _, p, body in msgs:
        assert body == ("body %s" % p.message_id[2:]).encode()

    t = gw.totals()
    assert t["published"] == 2000 and t["confirmed"] == 2000
    assert t["inflight"] == 0


def test_generated_message_ids_are_unique_across_workers(rabbitmq, gateway,
                                                        queue):
    """Ids come from a per-worker pool of random bytes refilled every 256
    ids: no two workers, and no two refills, may hand out the same one."""
    gw = gateway(amqp_config(rabbitmq.port, {"svc": {
        "routing_key": queue.name}}), PUB, workers=2)

    def one(i):
        # a connection per request, so that both workers accept some
        r = requests.post(gw.url + "/pub", data=b"x", timeout=60)
        assert r.status_code == 202, r.text
        return r.json()["message_id"]

    with concurrent.futures.ThreadPoolExecutor(32) as ex:
        answered = list(ex.map(one, range(1200)))

    ids = [p.message_id for _, p, _ in queue.drain(expect=1200, timeout=30)]
    assert len(set(ids)) == 1200
    assert set(ids) == set(answered)
    for mid in ids:
        assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-"
                            r"[89ab][0-9a-f]{3}-[0-9a-f]{12}", mid)
    pids = {w["pid"] for w in gw.status()["workers"]
            if w["outconns"]["out"]["published"] > 0}
    assert len(pids) == 2, "both workers must have published"


def test_status_reports_each_worker_and_outconn(rabbitmq, gateway, queue):
    gw = gateway(amqp_config(rabbitmq.port, {"svc": {
        "routing_key": queue.name}}), PUB, workers=2)
    for _ in range(10):
        with requests.Session() as s:
            assert s.post(gw.url + "/pub", data=b"x",
                          timeout=10).status_code == 202
    doc = gw.status()
    assert len(doc["workers"]) == 2
    assert {w["worker"] for w in doc["workers"]} == {0, 1}
    for w in doc["workers"]:
        o = w["outconns"]["out"]
        assert o["state"] == "ready"
        assert set(o) == {"state", "inflight", "published", "confirmed",
                          "nacked", "returned", "timed_out", "lost",
                          "rejected", "reconnects", "rpc_requests",
                          "rpc_waiting", "rpc_replies", "rpc_timeouts",
                          "rpc_late", "rpc_bad", "rpc_lost"}
    t = gw.totals()
    assert t["published"] == 10 and t["confirmed"] == 10


def test_another_location_of_the_worker_keeps_answering(rabbitmq, gateway,
                                                        queue):
    gw = gateway(amqp_config(rabbitmq.port, {"svc": {
        "routing_key": queue.name}}), PUB)
    [worker] = gw.ngx.worker_pids()
    assert post(gw, data=b"x").status_code == 202
    doc = gw.status()
    # the worker that published answers, the same process as before, and
    # counts exactly one message, confirmed
    assert doc["pid"] == worker
    [w] = doc["workers"]
    assert (w["pid"], w["worker"]) == (worker, 0)
    assert w["outconns"]["out"] == {
        "state": "ready", "inflight": 0, "published": 1, "confirmed": 1,
        "nacked": 0, "returned": 0, "timed_out": 0, "lost": 0,
        "rejected": 0, "reconnects": 0, "rpc_requests": 0, "rpc_waiting": 0,
        "rpc_replies": 0, "rpc_timeouts": 0, "rpc_late": 0, "rpc_bad": 0,
        "rpc_lost": 0}
    assert gw.ngx.worker_pids() == [worker]
    assert queue.count() == 1


@pytest.mark.parametrize("location,message", [
    ("location /p { zmq_service nope; }", "zmq_service \"nope\": no such "
                                          "service"),
    ("location /p { zmq_service store; }", "service of kind 'redis' cannot "
                                           "be invoked from a location"),
    ("location /p { zmq_service svc; zmq_data_format yaml; }",
     "invalid value \"yaml\""),
])
def test_location_errors_fail_nginx_t(nginx_factory, tmp_path, location,
                                      message):
    cfg = amqp_config(5672, {"svc": {}})
    cfg["service"].append({"name": "store", "kind": "redis", "key": "k"})
    path = tmp_path / "zmq.json"
    path.write_text(json.dumps(cfg))
    ngx = nginx_factory(http="zmq_config file:%s;" % path, server=location)
    rc, out = ngx.test_config()
    assert rc != 0
    assert message in out
    assert "in %s:" % ngx.conf in out


def test_a_sealed_password_opens_with_the_key_file(rabbitmq, gateway, queue,
                                                   redis_store, zmqctl,
                                                   tmp_path):
    cfg = amqp_config(rabbitmq.port, {"svc": {"routing_key": queue.name}})
    src = tmp_path / "clear.json"
    src.write_text(json.dumps(cfg))
    zmqctl("import", src, check=0)
    stored = json.loads(redis_store.client().get("zmq:obj:amqp_def:rabbit"))
    assert "$sealed" in stored["password"]
    cfg["amqp_def"] = [stored]

    key = zmqctl.env["ZMQ_KEY_FILE"]
    gw = gateway(cfg, PUB, http="zmq_key_file %s;" % key)
    assert post(gw, data=b"sealed").status_code == 202
    assert queue.count() == 1


def test_a_sealed_password_without_a_key_file_fails_nginx_t(
        nginx_factory, tmp_path):
    cfg = amqp_config(5672, {"svc": {}})
    cfg["amqp_def"][0]["password"] = {"$sealed": "AAAA"}
    path = tmp_path / "zmq.json"
    path.write_text(json.dumps(cfg))
    ngx = nginx_factory(http="zmq_config file:%s;" % path, server=PUB)
    rc, out = ngx.test_config()
    assert rc != 0
    assert "set zmq_key_file before zmq_config" in out
