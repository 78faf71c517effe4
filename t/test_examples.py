"""The examples (examples/flask_app, examples/django_app, issue 15 item 4)
driven by their frameworks' test clients against the real stack: RabbitMQ,
Redis, NGINX with the module following the demo's configuration
(conf/demo.json, only its broker port changed: the protected REST channel
/api/customers/{id}/updates publishing to the queue customer.updates,
which the amqp_channel customer.updates.in consumes into the redis service
pushing onto the list customer:updates) and zmqd.

Both apps go through the same scenario: orders posted as JSON and as a
form arrive in the list zmqd fills (waited for, not slept on); invalid
orders are refused field by field and publish nothing; /updates pages the
list with Django's get_page semantics (page 2, past the end, 0, negative,
not an integer) and get_elided_page_range; a wrong channel password, the
broker down (a second gateway whose broker port is closed), the gateway
unreachable and Redis unreachable give their mapped answers (502, 503 with
Retry-After). The Flask app runs in this process (app.test_client()); the
Django project in a subprocess driven line by line (django.test.Client;
Django's settings can be configured once per process, and other test
files configure them their own way)."""

import importlib.util
import json
import json as _json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.parse

import pytest

from conftest import ROOT
from test_live_config import Live
from test_zmqd import assert_acked
from zmqd_helpers import zmqd  # noqa: F401 (a fixture)

sys.path.insert(0, os.path.join(ROOT, "clients", "python"))

EXAMPLES = os.path.join(ROOT, "examples")
QUEUE = "customer.updates"              # conf/demo.json
LIST = "customer:updates"
OUTCONN = "local-rabbit.out"
LOCATIONS = "location /api/ { zmq_router; }\n"
WRONG_PW = "not-the-crm-password"


# ------------------------------------------------------------- the stack


def demo_config(amqp_port):
    """conf/demo.json with its broker on amqp_port."""
    with open(os.path.join(ROOT, "conf", "demo.json")) as f:
        doc = json.load(f)
    for d in doc["amqp_def"]:
        d["port"] = amqp_port
    return doc


def closed_port():
    """A port that refuses connections: bound, never listening."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    return s


def wait_for(fn, what, timeout=20.0):
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        assert time.monotonic() < deadline, "timed out waiting for " + what
        time.sleep(0.02)


class Stack:
    pass


@pytest.fixture
def stack(rabbitmq, nginx_factory, zmqctl, redis_store, tmp_path, zmqd,
          gateway):
    conn = rabbitmq.connection()
    ch = conn.channel()
    ch.queue_delete(QUEUE)
    ch.queue_declare(QUEUE, durable=True)    # as make run declares it
    closed = closed_port()
    try:
        live = Live(nginx_factory, zmqctl, redis_store, tmp_path, LOCATIONS,
                    workers=1)
        v = live.write(demo_config(rabbitmq.port))
        live.start()
        live.wait_version(v)
        live.wait_ready(OUTCONN)
        z = zmqd()
        wait_for(lambda: ch.queue_declare(QUEUE, durable=True, passive=True)
                 .method.consumer_count == 1, "zmqd's consumer")
        # the same channel on a gateway whose broker is down
        down = gateway(demo_config(closed.getsockname()[1]), LOCATIONS,
                       wait=None)
        wait_for(lambda: all(o["state"] != "connecting"
                             for o in down.outconn(OUTCONN)),
                 "the down gateway's first connection attempt")
        s = Stack()
        s.rabbitmq = rabbitmq
        s.url = live.url
        s.down_url = down.url
        s.closed_url = "http://127.0.0.1:%d" % closed.getsockname()[1]
        s.closed_redis = "redis://127.0.0.1:%d/0" % closed.getsockname()[1]
        s.redis_url = redis_store.url
        s.redis = redis_store.client()
        s.zmqd = z
        yield s
    finally:
        closed.close()
        try:
            ch.queue_delete(QUEUE)
            conn.close()
        except Exception:
            pass


# ------------------------------------------------------ the two drivers


class Answer:
    def __init__(self, status, headers, text):
        self.status = status
        self.headers = {k.lower(): v for k, v in headers.items()}
        self.text = text

    def json(self):
        return json.loads(self.text)

    def __repr__(self):
        return "<Answer %s %s %s>" % (self.status, self.headers,
                                      self.text[:2000])


def load_flask_app():
    path = os.path.join(EXAMPLES, "flask_app", "app.py")
    spec = importlib.util.spec_from_file_location("flask_example_app", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod            # Flask finds its templates so
    spec.loader.exec_module(mod)
    return mod


class FlaskDriver:
    """The Flask example in this process, one app per set of settings."""

    def __init__(self, settings):
        self.mod = load_flask_app()
        self.settings = settings
        self.apps = {}

    def request(self, method, path, json=None, form=None, settings=None):
        key = repr(sorted((settings or {}).items()))
        if key not in self.apps:
            cfg = dict(self.settings, **(settings or {}))
            app = self.mod.create_app(cfg)
            app.testing = True
            self.apps[key] = app.test_client()
        client = self.apps[key]
        kw = {}
        if json is not None:
            kw["json"] = json
        if form is not None:
            kw["data"] = urllib.parse.urlencode(form)
            kw["content_type"] = "application/x-www-form-urlencoded"
        r = client.open(path, method=method, **kw)
        return Answer(r.status_code, dict(r.headers),
                      r.get_data(as_text=True))

    def close(self):
        pass


DJANGO_DRIVER = r"""
import json, sys
out, sys.stdout = sys.stdout, sys.stderr
import django
django.setup()
from django.test import Client
from django.test.utils import override_settings, setup_test_environment
setup_test_environment()
clients = {}
for line in sys.stdin:
    q = json.loads(line)
    key = (q.get("client"), q.get("csrf", False))
    if key not in clients:
        clients[key] = Client(enforce_csrf_checks=q.get("csrf", False))
    c = clients[key]
    with override_settings(**q.get("settings", {})):
        if q["method"] == "GET":
            r = c.get(q["path"])
        elif q.get("json") is not None:
            r = c.post(q["path"], q["json"], content_type="application/json")
        else:
            r = c.post(q["path"], q.get("form_text", ""),
                       content_type="application/x-www-form-urlencoded")
    out.write(json.dumps({"status": r.status_code, "headers": dict(r.items()),
                          "text": r.content.decode("utf-8"),
                          "cookies": {k: m.value for k, m in
                                      c.cookies.items()}}) + "\n")
    out.flush()
"""


class DjangoDriver:
    """The Django project in a subprocess: one request per line in, one
    answer per line out."""

    def __init__(self, settings, tmp_path):
        env = dict(os.environ, DJANGO_SETTINGS_MODULE="orders_site.settings",
                   PYTHONPATH=os.pathsep.join([
                       os.path.join(EXAMPLES, "django_app"),
                       os.path.join(ROOT, "clients", "python")]))
        env.pop("NGX_ZMQ_DJANGO", None)
        for k, v in settings.items():
            env[k] = str(v)
        self.log = open(str(tmp_path / "django.log"), "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", DJANGO_DRIVER], env=env, cwd=str(tmp_path),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log,
            text=True)

    def request(self, method, path, json=None, form=None, settings=None,
                csrf=False, client=None):
        q = {"method": method, "path": path, "settings": settings or {},
             "csrf": csrf, "client": client}
        if json is not None:
            q["json"] = json
        if form is not None:
            q["form_text"] = urllib.parse.urlencode(form)
        self.proc.stdin.write(_json.dumps(q) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(10)
            with open(self.log.name) as f:
                pytest.fail("the Django driver exited %s:\n%s"
                            % (self.proc.returncode, f.read()))
        a = _json.loads(line)
        answer = Answer(a["status"], a["headers"], a["text"])
        answer.cookies = a["cookies"]
        return answer

    def close(self):
        self.proc.stdin.close()
        try:
            assert self.proc.wait(20) == 0
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(5)
            self.log.close()


# ----------------------------------------------------- reading the pages


SECTION = re.compile(r'<section class="updates" data-count="(\d+)" '
                     r'data-page="(\d+)" data-num-pages="(\d+)">')
ITEM = re.compile(r'<li class="update" value="(\d+)"'
                  r'(?: data-order="([^"]*)")?>')
NAV = re.compile(r'<nav class="pagination"[^>]*>(.*?)</nav>', re.S)
TOKEN = re.compile(r'<(a|span)([^>]*)>([^<]*)</\1>')


def section(a):
    """(count, page, num_pages) of an updates page."""
    m = SECTION.search(a.text)
    assert m, a
    return tuple(int(x) for x in m.groups())


def items(a):
    """[(index in the list, order id or None)] of an updates page."""
    return [(int(i), o or None) for i, o in ITEM.findall(a.text)]


def pager(a):
    """The pagination links as text: "prev:N", "N" (a link), "[N]" (this
    page), "…", "next:N"; [] without a pagination."""
    m = NAV.search(a.text)
    if not m:
        return []
    out = []
    for tag, attrs, text in TOKEN.findall(m.group(1)):
        href = re.search(r'href="\?page=(\d+)"', attrs)
        if 'rel="prev"' in attrs:
            out.append("prev:" + href.group(1))
        elif 'rel="next"' in attrs:
            out.append("next:" + href.group(1))
        elif tag == "a":
            assert href.group(1) == text, (attrs, text)
            out.append(text)
        elif 'aria-current="page"' in attrs:
            out.append("[%s]" % text)
        else:
            assert 'class="ellipsis"' in attrs and text == "\u2026", attrs
            out.append(text)
    return out


def error_code(a):
    m = re.search(r'<p class="error" data-code="([^"]*)">', a.text)
    return m.group(1) if m else None


def stored(stack):
    return [x.decode() for x in stack.redis.lrange(LIST, 0, -1)]


def wait_stored(stack, n):
    """The list once zmqd has pushed n items (never more)."""
    wait_for(lambda: stack.redis.llen(LIST) >= n,
             "%d items in %s (%s)" % (n, LIST, stored(stack)))
    got = stored(stack)
    assert len(got) == n, got
    return got


# ------------------------------------------------------------ the scenario


def scenario(app, stack):
    # nothing yet: page 1 of 1
    a = app.request("GET", "/updates")
    assert a.status == 200, a
    assert section(a) == (0, 1, 1) and "No updates yet" in a.text
    assert items(a) == [] and pager(a) == []

    # the form carries a fresh order id
    a = app.request("GET", "/orders")
    assert a.status == 200, a
    ids = re.findall(r'name="order_id" value="([0-9a-f]{32})"', a.text)
    assert len(ids) == 1, a
    assert ids[0] not in app.request("GET", "/orders").text

    # a JSON order: 202 once the broker confirmed it; zmqd pushes it
    a = app.request("POST", "/orders", json={
        "customer": 42, "item": "<b>widget</b>", "quantity": 2})
    assert a.status == 202, a
    doc = a.json()
    assert doc["confirmed"] is True and doc["message_id"] == doc["order_id"]
    first = doc["order_id"]
    got = wait_stored(stack, 1)
    assert json.loads(got[0]) == {"order_id": first, "customer": 42,
                                  "item": "<b>widget</b>", "quantity": 2}

    # a form order, with the form's order id: 303 to the form
    a = app.request("POST", "/orders", form={
        "customer": "7", "item": " gadget ", "quantity": "3",
        "order_id": "form-order-1"})
    assert a.status == 303, a
    assert a.headers["location"].endswith("/orders?sent=form-order-1"), a
    got = wait_stored(stack, 2)
    assert json.loads(got[1]) == {"order_id": "form-order-1", "customer": 7,
                                  "item": "gadget", "quantity": 3}
    a = app.request("GET", "/orders?sent=form-order-1")
    assert '<p class="sent">Order <code>form-order-1</code> sent' in a.text

    # invalid orders: 400 field by field, nothing published
    a = app.request("POST", "/orders", json={"customer": "abc",
                                             "quantity": 0})
    assert a.status == 400, a
    assert a.json()["error"] == "invalid"
    assert set(a.json()["errors"]) == {"customer", "item", "quantity"}, a
    a = app.request("POST", "/orders", json=[1, 2])
    assert (a.status, a.json()["errors"]) == (400, {"order": "a JSON object"})
    a = app.request("POST", "/orders", json={"customer": 1, "item": "x",
                                             "order_id": "../etc"})
    assert a.status == 400 and set(a.json()["errors"]) == {"order_id"}, a
    a = app.request("POST", "/orders", form={"customer": "", "item": "x"})
    assert a.status == 400 and error_code(a) == "invalid", a
    assert 'data-field="customer"' in a.text
    assert 'data-field="item"' not in a.text

    # 23 more: 25 in all, in the order they were confirmed
    for i in range(3, 26):
        a = app.request("POST", "/orders", json={
            "customer": i, "item": "item %d" % i, "order_id": "o-%02d" % i})
        assert a.status == 202, a
    got = wait_stored(stack, 25)
    order_ids = [json.loads(x)["order_id"] for x in got]
    assert order_ids == [first, "form-order-1"] + [
        "o-%02d" % i for i in range(3, 26)]
    # zmqd acked every message (the broker's own counts)
    assert_acked(stack.rabbitmq, QUEUE)

    # pages of 10: Django's get_page
    def page(q, settings=None):
        a = app.request("GET", "/updates" + q, settings=settings)
        assert a.status == 200, a
        return a

    a = page("")
    assert section(a) == (25, 1, 3)
    assert items(a) == list(zip(range(1, 11), order_ids[:10]))
    assert pager(a) == ["[1]", "2", "3", "next:2"]
    assert "Updates 1\u201310 of 25" in a.text
    # what the list holds is escaped
    assert "&lt;b&gt;widget&lt;/b&gt;" in a.text and "<b>" not in a.text

    a = page("?page=2")
    assert section(a) == (25, 2, 3)
    assert items(a) == list(zip(range(11, 21), order_ids[10:20]))
    assert pager(a) == ["prev:1", "1", "[2]", "3", "next:3"]
    assert "Updates 11\u201320 of 25" in a.text

    last = list(zip(range(21, 26), order_ids[20:]))
    for q in ("?page=3", "?page=99", "?page=0", "?page=-1"):
        # out of range (Django's EmptyPage): the last page
        a = page(q)
        assert section(a) == (25, 3, 3), q
        assert items(a) == last, q
        assert pager(a) == ["prev:2", "1", "2", "[3]"], q
    for q in ("?page=abc", "?page=2.5", "?page=", "?page=1e1"):
        # not an integer (Django's PageNotAnInteger): page 1
        a = page(q)
        assert section(a) == (25, 1, 3), q
        assert items(a)[0] == (1, first), q

    # elided page ranges (on_each_side=2, on_ends=1)
    two = {"UPDATES_PER_PAGE": 2}
    a = page("?page=7", two)
    assert section(a) == (25, 7, 13)
    assert items(a) == [(13, order_ids[12]), (14, order_ids[13])]
    assert pager(a) == ["prev:6", "1", "\u2026", "5", "6", "[7]", "8", "9",
                        "\u2026", "13", "next:8"]
    a = page("?page=13", two)
    assert items(a) == [(25, order_ids[24])]
    assert pager(a) == ["prev:12", "1", "\u2026", "11", "12", "[13]"]
    a = page("?page=2", two)
    assert pager(a) == ["prev:1", "1", "[2]", "3", "4", "\u2026", "13",
                        "next:3"]

    # an update that is not an order (or not JSON) is shown as it is
    stack.redis.rpush(LIST, '{"email": "x@example.com"}', "plain <text>")
    a = page("?page=3")
    assert items(a) == last + [(26, None), (27, None)]
    assert "<code>plain &lt;text&gt;</code>" in a.text
    assert "x@example.com" in a.text

    # a wrong channel password: the gateway's 401 is this app's 502
    bad = {"GATEWAY_PASSWORD": WRONG_PW}
    a = app.request("POST", "/orders", settings=bad, json={
        "customer": 1, "item": "x"})
    assert a.status == 502 and a.json()["error"] == "gateway_auth", a
    assert "retry-after" not in a.headers
    a = app.request("POST", "/orders", settings=bad, form={
        "customer": "1", "item": "x", "order_id": "form-bad-pw"})
    assert a.status == 502 and error_code(a) == "gateway_auth", a

    # the broker down: 503 with the gateway's Retry-After, the order id to
    # send again
    down = {"GATEWAY_URL": stack.down_url}
    a = app.request("POST", "/orders", settings=down, json={
        "customer": 1, "item": "x", "order_id": "down-1"})
    assert a.status == 503, a
    assert int(a.headers["retry-after"]) >= 1, a
    assert a.json()["error"] == "broker_unavailable"
    assert a.json()["order_id"] == "down-1"
    a = app.request("POST", "/orders", settings=down, form={
        "customer": "1", "item": "x", "order_id": "down-form-1"})
    assert a.status == 503 and int(a.headers["retry-after"]) >= 1, a
    assert error_code(a) == "broker_unavailable"
    # the form comes back with its order id, to send it again as it was
    assert re.search(r'name="order_id" value="down-form-1"', a.text), a

    # the gateway unreachable: 503 too
    a = app.request("POST", "/orders", json={"customer": 1, "item": "x"},
                    settings={"GATEWAY_URL": stack.closed_url})
    assert a.status == 503 and a.headers["retry-after"] == "5", a
    assert a.json()["error"] == "gateway_unreachable"

    # Redis unreachable: /updates answers 503
    a = app.request("GET", "/updates?page=2",
                    settings={"UPDATES_REDIS_URL": stack.closed_redis})
    assert a.status == 503 and a.headers["retry-after"] == "5", a
    assert error_code(a) == "store_unavailable"

    # none of the failed orders went anywhere
    assert stack.redis.llen(LIST) == 27
    assert stack.zmqd.proc.poll() is None


def settings_for(stack):
    return {"GATEWAY_URL": stack.url, "UPDATES_REDIS_URL": stack.redis_url,
            "UPDATES_PER_PAGE": 10}


def test_the_flask_example_takes_orders_and_pages_updates(stack):
    app = FlaskDriver(settings_for(stack))
    scenario(app, stack)
    # its defaults are the demo's (make run)
    cfg = app.mod.settings_from_env({})
    assert (cfg["GATEWAY_URL"], cfg["GATEWAY_USER"], cfg["UPDATES_KEY"],
            cfg["UPDATES_REDIS_URL"]) == (
        "http://127.0.0.1:8080", "crm", LIST, "redis://127.0.0.1:6379/0")


def test_the_django_example_takes_orders_and_pages_updates(stack, tmp_path):
    app = DjangoDriver(settings_for(stack), tmp_path)
    try:
        scenario(app, stack)
        # the form is protected from cross-site posts; JSON needs no token
        order = {"customer": "3", "item": "csrf", "order_id": "csrf-1"}
        a = app.request("POST", "/orders", form=order, csrf=True)
        assert a.status == 403, a
        a = app.request("GET", "/orders", csrf=True, client="browser")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"',
                          a.text).group(1)
        a = app.request("POST", "/orders", csrf=True, client="browser",
                        form=dict(order, csrfmiddlewaretoken=token))
        assert a.status == 303, a
        a = app.request("POST", "/orders", csrf=True, json={
            "customer": 3, "item": "csrf", "order_id": "csrf-2"})
        assert a.status == 202, a
        got = wait_stored(stack, 29)
        assert [json.loads(x)["order_id"] for x in got[27:]] == [
            "csrf-1", "csrf-2"]
    finally:
        app.close()
