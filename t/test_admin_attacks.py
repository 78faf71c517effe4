"""The admin API's writes under attack (issue 12): a hostile or careless
client against a real Redis, RabbitMQ and NGINX (run it against the
ASan-built module: make asan-nginx does).

What must hold: every bad request gets a JSON error and changes nothing;
the worker never crashes, never blocks, never leaks a write's state when
its client leaves or Redis goes; cascade deletes list (and cost) each
object once."""

import json
import socket
import threading
import time

import pytest
import requests

from conftest import amqp_config, register_secret
from security_helpers import zmqctl_apikey
from test_admin_api import ADMIN, ADMIN_PW, VIEW, Admin, config, json_error
from test_live_config import Live


class Gateway(Admin):
    """Admin with extra http{} directives (body buffers, limits)."""

    def __init__(self, nginx_factory, zmqctl, redis_store, tmp_path,
                 rabbitmq, locations=ADMIN + VIEW, http="", doc=None):
        self.live = Live(nginx_factory, zmqctl, redis_store, tmp_path,
                         locations, workers=1, http=http)
        self.zmqctl = zmqctl
        self.redis_store = redis_store
        self.version = self.live.write(doc or config(rabbitmq))
        rc, self.key, out, err = zmqctl_apikey(zmqctl, "--id", "ops",
                                               "viewers")
        assert rc == 0, (out, err)
        self.version = self.current_store_version()
        self.live.start()
        self.live.wait_version(self.version)
        self.url = self.live.url
        self.port = int(self.url.rsplit(":", 1)[1])

    def redis(self):
        return self.live.redis.client()

    def raw(self, method, path, body=b"", headers=None, close=True):
        """A request on a raw socket, as written; closed at once (the
        client leaves before the answer) unless close is False."""
        import base64
        auth = base64.b64encode(("root:" + ADMIN_PW).encode()).decode()
        head = ["%s /zmq/admin/%s HTTP/1.1" % (method, path),
                "Host: x", "Authorization: Basic " + auth,
                "Content-Type: application/json",
                "Content-Length: %d" % len(body), "Connection: close"]
        head += headers or []
        s = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        s.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        if close:
            s.close()
            return None
        return s

    def alive(self):
        r = self.get("api/service/svc")
        assert r.status_code == 200, r.text


@pytest.fixture
def gw(nginx_factory, zmqctl, redis_store, tmp_path, rabbitmq):
    def make(**kw):
        return Gateway(nginx_factory, zmqctl, redis_store, tmp_path,
                       rabbitmq, **kw)
    return make


def unchanged(g, v0):
    assert g.current_store_version() == v0


def wait_for(cond, timeout=15.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError("no %s in %.0fs" % (what, timeout))


# ------------------------------------------------------------ cascade delete


def lattice(rabbitmq, layers):
    """base <- 2 fanouts <- 2 fanouts <- ...: each fanout of layer i lists
    both of layer i - 1 (so every object is reachable many ways)."""
    doc = config(rabbitmq)
    doc["service"].append({"name": "base", "kind": "publish",
                           "outconn": "out", "routing_key": "b"})
    below = ["base"]
    for i in range(layers):
        here = ["l%d.a" % i, "l%d.b" % i]
        for n in here:
            doc["service"].append({"name": n, "kind": "fanout",
                                   "services": below})
        below = here
    return doc


def test_cascade_delete_lists_and_walks_each_object_once(gw, rabbitmq):
    layers = 12
    g = gw(doc=lattice(rabbitmq, layers))
    v0 = g.current_store_version()

    r = g.call("DELETE", "api/service/base")
    json_error(r, 409, "in_use")
    assert len(r.json()["referrers"]) == 2

    t0 = time.monotonic()
    r = g.call("DELETE", "api/service/base?cascade=true")
    took = time.monotonic() - t0
    assert r.status_code == 200, r.text
    gone = [(o["kind"], o["name"]) for o in r.json()["deleted"]]
    assert len(gone) == len(set(gone)) == 1 + 2 * layers, gone[:20]
    assert r.json()["changes"] == 1 + 2 * layers
    assert g.current_store_version() == v0 + 1 + 2 * layers
    assert took < 5, took


def test_in_use_names_a_referrer_once_even_if_it_lists_it_twice(gw,
                                                                 rabbitmq):
    doc = config(rabbitmq)
    doc["service"].append({"name": "twice", "kind": "fanout",
                           "services": ["svc", "svc", "svc"]})
    g = gw(doc=doc)
    v0 = g.current_store_version()
    r = g.call("DELETE", "api/service/svc")
    json_error(r, 409, "in_use")
    refs = r.json()["referrers"]
    assert len(refs) == len({(x["kind"], x["name"]) for x in refs}), refs
    assert "used by %d object" % len(refs) in r.json()["message"]
    unchanged(g, v0)
