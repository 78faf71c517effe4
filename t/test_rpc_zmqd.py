"""End to end (issue 14): HTTP -> the gateway's invoke service -> the
invocation queue -> zmqd -> an HTTP target -> zmqd's reply -> the HTTP
answer. The gateway and zmqd follow one Redis; the target is a small HTTP
server that fails a given number of times first."""

import json

import pytest
import requests

from test_live_config import Live
from test_zmqd_invoke import (callbacks, failing, invoke_config,  # noqa
                              iq, web, wait_for)
from zmqd_helpers import zmqd  # noqa: F401  (fixture)

INV = "location = /inv { zmq_service inv; }\n"


@pytest.fixture
def stack(nginx_factory, zmqctl, redis_store, tmp_path, rabbitmq, zmqd,
          web, iq):
    def start(mode, **fields):
        doc = invoke_config(rabbitmq, web, iq, mode=mode, seconds=0,
                            **fields)
        live = Live(nginx_factory, zmqctl, redis_store, tmp_path, INV,
                    workers=1)
        version = live.write(doc)
        z = zmqd()
        z.wait_log("consuming queue '%s'" % iq)
        live.start()
        live.wait_version(version)
        live.wait_ready("out")
        return live
    return start


def post(live, body=b'{"q": 1}'):
    return requests.post(live.url + "/inv", data=body, timeout=60,
                         headers={"Content-Type": "application/json"})


def test_sync_through_zmqd_answers_the_targets_first_success(stack, web):
    web.paths["/target"] = failing(2)
    live = stack("sync")
    r = post(live)
    assert r.status_code == 200, r.text
    assert r.json() == {"result": 42}
    assert len(web.seen["/target"]) == 3
    h, b = web.seen["/target"][0]
    assert b == b'{"q": 1}'
    assert h["X-Message-Id"] == r.headers["X-Correlation-Id"]


def test_sync_through_zmqd_exhausting_its_repeats_is_its_502(stack, web):
    web.paths["/target"] = failing(100)
    live = stack("sync")
    r = post(live)
    assert r.status_code == 502
    assert r.json()["error"] == "target_failed"


def test_sync_async_through_zmqd_is_202_then_the_callback(stack, web):
    web.paths["/target"] = failing(1)
    live = stack("sync_async")
    r = post(live)
    assert r.status_code == 202
    cid = r.headers["X-Correlation-Id"]
    assert r.json() == {"accepted": True, "cid": cid}
    wait_for(lambda: callbacks(web), 20)
    [doc] = callbacks(web)
    assert doc["cid"] == cid and doc["ok"] is True


def test_async_through_zmqd_is_202_at_once_then_the_callback(stack, web):
    web.paths["/target"] = failing(0)
    live = stack("async")
    r = post(live)
    assert r.status_code == 202
    cid = r.json()["cid"]
    wait_for(lambda: callbacks(web), 20)
    [doc] = callbacks(web)
    assert doc["cid"] == cid and doc["response"] == {"result": 42}
    assert json.loads(web.seen["/target"][0][1]) == {"q": 1}
