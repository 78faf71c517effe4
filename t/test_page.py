"""Paged reads over HTTP (issue 15, item 3): a REST channel (or a
zmq_service location) bound to a redis_page service answers GET
?page=N&per_page=M[&min=&max=] with the page Django's Paginator.page(N)
gives, compared here with the Python paginator (clients/python,
ngx_zmq.paginator) on the same Redis keys."""

import json
import os
import sys
import time

import pytest
import requests

from conftest import ROOT, RedisServer, register_input_file

sys.path.insert(0, os.path.join(ROOT, "clients", "python"))

ALICE_PW = "alice-Page-5521"

LOCATIONS = """
location /api/ { zmq_router; }
location = /svc-list { zmq_service plist; }
"""


def configure_django():
    try:
        from django.conf import settings
    except ImportError:
        return
    if not settings.configured:
        settings.configure(USE_I18N=False)


def page_service(name, redis, **fields):
    s = {"name": name, "kind": "redis_page", "url": redis.url.replace(
        "/0", "/0"), "key": "pg:list"}
    s.update(fields)
    return s


def config(redis, extra_services=(), channels=()):
    services = [
        page_service("plist", redis, key="pg:list"),
        page_service("plist3", redis, key="pg:list3", per_page=3,
                     orphans=2, max_per_page=5),
        page_service("pnoempty", redis, key="pg:empty",
                     allow_empty_first_page=False),
        page_service("pzset", redis, source="zset", key="pg:zset"),
        page_service("pzrev", redis, source="zset", key="pg:zset",
                     reverse=True, withscores=True, score_min="10",
                     score_max="(90"),
        page_service("puser", redis, key="feed:{user}"),
        page_service("pvar", redis, key="feed:$arg_who"),
        page_service("poff", redis, key="pg:list", is_active=False),
    ]
    services.extend(extra_services)
    rest = [
        {"name": "list", "url_path": "/api/list", "method": "GET",
         "service": "plist"},
        {"name": "list3", "url_path": "/api/list3", "method": "GET",
         "service": "plist3"},
        {"name": "noempty", "url_path": "/api/noempty", "method": "GET",
         "service": "pnoempty"},
        {"name": "zset", "url_path": "/api/zset", "method": "GET",
         "service": "pzset"},
        {"name": "zrev", "url_path": "/api/zrev", "method": "GET",
         "service": "pzrev"},
        {"name": "user", "url_path": "/api/feed/{user}", "method": "GET",
         "service": "puser"},
        {"name": "var", "url_path": "/api/var", "method": "GET",
         "service": "pvar"},
        {"name": "any", "url_path": "/api/any", "method": "ANY",
         "service": "plist"},
        {"name": "off", "url_path": "/api/off", "method": "GET",
         "service": "poff"},
        {"name": "guarded", "url_path": "/api/guarded", "method": "GET",
         "service": "plist", "security": "basic"},
    ]
    rest.extend(channels)
    return {"service": services, "rest_channel": rest,
            "security": [{"name": "basic", "type": "basic_auth",
                          "username": "alice", "password": ALICE_PW}]}


def start(nginx_factory, tmp_path, doc, locations=LOCATIONS):
    from conftest import register_secret
    register_secret(ALICE_PW)
    path = tmp_path / ("page%d.json" % len(list(tmp_path.glob("page*"))))
    path.write_text(json.dumps(doc))
    register_input_file(path)
    ngx = nginx_factory(http="zmq_config file:%s;" % path, server=locations)
    ngx.start()
    # the worker's Redis connection is opened when it starts
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        r = requests.get(ngx.url + "/api/list", timeout=5)
        if r.status_code != 503:
            break
        time.sleep(0.05)
    return ngx


@pytest.fixture
def gw(nginx_factory, tmp_path, redis_store):
    ngx = start(nginx_factory, tmp_path, config(redis_store))
    ngx.redis = redis_store.client()
    return ngx


def get(ngx, path, **params):
    return requests.get(ngx.url + path, params=params, timeout=10)


def expected(p):
    """The Python paginator's Page as the endpoint writes it."""
    def item(v):
        if isinstance(v, tuple):
            return {"member": item(v[0]), "score": v[1]}
        try:
            return json.loads(v)
        except ValueError:
            return v.decode("utf-8", "replace")
    pg = p.paginator
    return {"count": pg.count, "num_pages": pg.num_pages, "number": p.number,
            "per_page": pg.per_page, "has_next": p.has_next(),
            "has_previous": p.has_previous(),
            "start_index": p.start_index(), "end_index": p.end_index(),
            "object_list": [item(v) for v in p.object_list]}


def python_outcome(pager, number):
    from ngx_zmq import paginator as P
    configure_django()
    try:
        return 200, expected(pager.page(number))
    except P.PageNotAnInteger as e:
        return 400, ("page_not_an_integer", str(e))
    except P.EmptyPage as e:
        return 404, ("empty_page", str(e))


def http_outcome(r):
    body = r.json()
    if r.status_code == 200:
        return 200, body
    return r.status_code, (body["error"], body["message"])


# ------------------------------------------------------------------ lists


def test_list_pages_match_the_python_paginator_over_a_grid(gw):
    from ngx_zmq.paginator import ListPaginator
    for size in (0, 1, 2, 19, 20, 21, 45, 100):
        gw.redis.delete("pg:list")
        if size:
            gw.redis.rpush("pg:list", *[b"item-%d" % i for i in range(size)])
        for per_page in (1, 3, 20, 100):
            pager = ListPaginator(gw.redis, "pg:list", per_page)
            last = max(1, pager.num_pages)
            for number in sorted({1, 2, last - 1, last, last + 1, 0, -1}):
                want = python_outcome(pager, number)
                got = http_outcome(get(gw, "/api/list", page=number,
                                       per_page=per_page))
                assert got == want, (size, per_page, number)


def test_orphans_and_the_service_defaults_match(gw):
    from ngx_zmq.paginator import ListPaginator
    for size in (0, 1, 3, 4, 5, 6, 7, 8, 11):
        gw.redis.delete("pg:list3")
        if size:
            gw.redis.rpush("pg:list3", *[str(i) for i in range(size)])
        pager = ListPaginator(gw.redis, "pg:list3", 3, orphans=2)
        for number in range(0, pager.num_pages + 2):
            assert http_outcome(get(gw, "/api/list3", page=number)) == \
                python_outcome(pager, number), (size, number)


def test_empty_first_page_refused_when_not_allowed(gw):
    from ngx_zmq.paginator import ListPaginator
    pager = ListPaginator(gw.redis, "pg:empty", 20,
                          allow_empty_first_page=False)
    r = get(gw, "/api/noempty", page=1)
    assert (r.status_code, r.json()["error"]) == (404, "empty_page")
    assert http_outcome(r) == python_outcome(pager, 1)
    assert get(gw, "/api/list", page=1).json()["object_list"] == []


def test_page_last_is_the_last_page(gw):
    from ngx_zmq.paginator import ListPaginator
    gw.redis.rpush("pg:list", *[b"%d" % i for i in range(47)])
    pager = ListPaginator(gw.redis, "pg:list", 20)
    r = get(gw, "/api/list", page="last")
    assert r.status_code == 200
    assert r.json() == expected(pager.page(pager.num_pages))
    assert r.json()["object_list"] == list(range(40, 47))


def test_page_not_an_integer_is_400(gw):
    for bad in ("x", "1.5", "", "2.0", "1e3", "0x10"):
        r = get(gw, "/api/list", page=bad)
        assert r.status_code == 400, bad
        assert r.json() == {"error": "page_not_an_integer",
                            "message": "That page number is not an integer"}


def test_integers_are_read_as_python_reads_them(gw):
    gw.redis.rpush("pg:list", *[b"%d" % i for i in range(50)])
    for text in (" 2 ", "+2", "02", "0_2"):
        r = get(gw, "/api/list", page=text)
        assert (r.status_code, r.json()["number"]) == (200, 2), text


def test_out_of_range_is_404_empty_page(gw):
    gw.redis.rpush("pg:list", b"a", b"b")
    for number, message in ((2, "That page contains no results"),
                            (0, "That page number is less than 1"),
                            (-3, "That page number is less than 1"),
                            (10 ** 30, "That page contains no results")):
        r = get(gw, "/api/list", page=number)
        assert r.status_code == 404
        assert r.json() == {"error": "empty_page", "message": message}


def test_per_page_is_capped_by_max_per_page(gw):
    gw.redis.rpush("pg:list3", *[b"%d" % i for i in range(12)])
    body = get(gw, "/api/list3", per_page=1000).json()
    assert body["per_page"] == 5
    assert body["object_list"] == [0, 1, 2, 3, 4]
    for bad in ("0", "-1", "x"):
        r = get(gw, "/api/list3", per_page=bad)
        assert (r.status_code, r.json()["error"]) == (400, "bad_per_page")


def test_items_are_json_when_they_parse_else_strings(gw):
    gw.redis.rpush("pg:list", b'{"a": [1, 2]}', b"plain text", b"42",
                   b"true", b'"quoted"', b"\xff\xfeok", b"{broken")
    body = get(gw, "/api/list").json()
    assert body["object_list"] == [{"a": [1, 2]}, "plain text", 42, True,
                                   "quoted", "\ufffd\ufffdok", "{broken"]


# ------------------------------------------------------------ sorted sets


def test_zset_pages_match_the_python_paginator(gw):
    from ngx_zmq.paginator import ZSetPaginator
    gw.redis.zadd("pg:zset", {("m%03d" % i): i for i in range(100)})
    pager = ZSetPaginator(gw.redis, "pg:zset", 20)
    for number in (1, 2, 5, 6):
        assert http_outcome(get(gw, "/api/zset", page=number)) == \
            python_outcome(pager, number)


def test_zset_score_range_reverse_and_withscores(gw):
    from ngx_zmq.paginator import ZSetPaginator
    gw.redis.zadd("pg:zset", {("m%03d" % i): i + 0.5 for i in range(100)})
    pager = ZSetPaginator(gw.redis, "pg:zset", 20, score_min="10",
                          score_max="(90", reverse=True, withscores=True)
    assert pager.count == 80
    for number in (1, 2, 4, 5):
        got = http_outcome(get(gw, "/api/zrev", page=number))
        assert got == python_outcome(pager, number), number
    first = get(gw, "/api/zrev").json()["object_list"][0]
    assert first == {"member": "m089", "score": 89.5}


def test_zset_min_max_from_the_query(gw):
    from ngx_zmq.paginator import ZSetPaginator
    gw.redis.zadd("pg:zset", {("m%03d" % i): i for i in range(100)})
    for lo, hi, rev_path in (("40", "60", "/api/zset"),
                             ("(40", "+inf", "/api/zset"),
                             ("-inf", "(5", "/api/zset")):
        pager = ZSetPaginator(gw.redis, "pg:zset", 7, score_min=lo,
                              score_max=hi)
        for number in range(1, pager.num_pages + 2):
            got = http_outcome(get(gw, rev_path, page=number, per_page=7,
                                   min=lo, max=hi))
            assert got == python_outcome(pager, number), (lo, hi, number)
    r = get(gw, "/api/zset", min="nan")
    assert (r.status_code, r.json()["error"]) == (400, "bad_score")
    r = get(gw, "/api/list", min="1")
    assert (r.status_code, r.json()["error"]) == (400, "bad_score")


def test_wrong_type_is_502_store_error(gw):
    gw.redis.set("pg:list", b"a string")
    r = get(gw, "/api/list")
    assert (r.status_code, r.json()["error"]) == (502, "store_error")
    assert r.json()["message"] == "the key does not hold a list"
    gw.ngx_expect_error = True


# ------------------------------------------------------- keys, methods


def test_key_template_uses_the_path_param(gw):
    gw.redis.rpush("feed:bob", b"b1", b"b2")
    gw.redis.rpush("feed:eve", b"e1")
    assert get(gw, "/api/feed/bob").json()["object_list"] == ["b1", "b2"]
    assert get(gw, "/api/feed/eve").json()["object_list"] == ["e1"]
    assert get(gw, "/api/feed/nobody").json()["count"] == 0


def test_key_template_uses_nginx_variables(gw):
    gw.redis.rpush("feed:carol", b"c1")
    assert get(gw, "/api/var", who="carol").json()["object_list"] == ["c1"]


def test_zmq_service_location_answers_pages(gw):
    gw.redis.rpush("pg:list", b"x")
    assert get(gw, "/svc-list").json()["object_list"] == ["x"]
    r = requests.post(gw.url + "/svc-list", data=b"{}", timeout=5)
    assert r.status_code == 405
    assert r.headers["Allow"] == "GET, HEAD"


def test_other_methods_are_405_with_allow(gw):
    r = requests.post(gw.url + "/api/list", data=b"x", timeout=5)
    assert r.status_code == 405 and "GET" in r.headers["Allow"]
    r = requests.delete(gw.url + "/api/any", timeout=5)
    assert r.status_code == 405
    assert r.headers["Allow"] == "GET, HEAD"
    assert r.json()["error"] == "method_not_allowed"


def test_head_has_no_body(gw):
    gw.redis.rpush("pg:list", b"x")
    r = requests.head(gw.url + "/api/any", timeout=5)
    assert r.status_code == 200 and r.content == b""
    assert int(r.headers["Content-Length"]) > 0


def test_inactive_service_is_503(gw):
    r = get(gw, "/api/off")
    assert (r.status_code, r.json()["error"]) == (503, "service_inactive")


def test_security_applies(gw):
    gw.redis.rpush("pg:list", b"x")
    r = get(gw, "/api/guarded")
    assert r.status_code == 401
    assert "Basic" in r.headers["WWW-Authenticate"]
    assert requests.head(gw.url + "/api/guarded", timeout=5).status_code \
        == 401
    r = requests.get(gw.url + "/api/guarded", auth=("alice", ALICE_PW),
                     timeout=5)
    assert r.status_code == 200 and r.json()["object_list"] == ["x"]
    r = requests.get(gw.url + "/api/guarded", auth=("alice", "wrong"),
                     timeout=5)
    assert r.status_code == 401


# ------------------------------------------------------------ Redis down


def test_redis_down_is_503_store_unavailable_then_recovers(
        nginx_factory, tmp_path):
    own = RedisServer(str(tmp_path))
    try:
        ngx = start(nginx_factory, tmp_path, config(own))
        own.client().rpush("pg:list", b"up")
        assert get(ngx, "/api/list").json()["object_list"] == ["up"]
        own.stop()
        r = None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            r = get(ngx, "/api/list")
            if r.status_code == 503:
                break
            time.sleep(0.05)
        assert r.status_code == 503
        assert r.json()["error"] == "store_unavailable"
        assert r.headers["Retry-After"] == "1"
        own.start()
        own.client().rpush("pg:list", b"again")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            r = get(ngx, "/api/list")
            if r.status_code == 200:
                break
            time.sleep(0.1)
        assert r.status_code == 200
        assert r.json()["object_list"] == ["again"]
    finally:
        own.stop()


def test_default_redis_is_the_configurations(nginx_factory, zmqctl,
                                             redis_store, tmp_path):
    doc = {"service": [{"name": "p", "kind": "redis_page",
                        "key": "pg:list"}],
           "rest_channel": [{"name": "l", "url_path": "/api/list",
                             "method": "GET", "service": "p"}]}
    p = tmp_path / "doc.json"
    p.write_text(json.dumps(doc))
    zmqctl("import", "--replace", p, check=0)
    redis_store.client().rpush("pg:list", b"from-config-redis")
    ngx = nginx_factory(
        http="zmq_key_file %s;\nzmq_config redis://127.0.0.1:%d/0;\n"
             % (zmqctl.env["ZMQ_KEY_FILE"], redis_store.port),
        server="location /api/ { zmq_router; }\n")
    ngx.start()
    r = None
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        r = get(ngx, "/api/list")
        if r.status_code == 200:
            break
        time.sleep(0.05)
    assert r.status_code == 200, r.text
    assert r.json()["object_list"] == ["from-config-redis"]


def test_head_on_a_get_channel(gw):
    gw.redis.rpush("pg:list", b"x")
    r = requests.head(gw.url + "/api/list", timeout=5)
    assert r.status_code == 200 and r.content == b""


# -------------------------------------------- a Redis that misbehaves


class FakeRedis:
    """Answers every command with the next canned reply (bytes), or with
    nothing when the reply is None."""

    def __init__(self, replies):
        import socket
        import threading
        self.replies = list(replies)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        import threading
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)
            threading.Thread(target=self.talk, args=(c,), daemon=True).start()

    def talk(self, c):
        buf = b""
        while True:
            try:
                data = c.recv(65536)
            except OSError:
                return
            if not data:
                return
            buf += data
            # one reply per command: count the "*N\r\n" headers
            while buf.startswith(b"*"):
                n = int(buf[1:buf.index(b"\r\n")])
                parts = buf.split(b"\r\n")
                need = 1 + 2 * n
                if len(parts) <= need:
                    break
                buf = b"\r\n".join(parts[need:])
                reply = self.replies.pop(0) if self.replies else None
                if reply is not None:
                    c.sendall(reply)

    def close(self):
        self.sock.close()
        for c in self.conns:
            c.close()


@pytest.mark.parametrize("count, items, status, code", [
    # more items than the page asked for
    (b":100\r\n", b"*25\r\n" + b"$1\r\nx\r\n" * 25, 502, "store_error"),
    # a count that is not an integer, or negative
    (b"$2\r\n10\r\n", b"*0\r\n", 502, "store_error"),
    (b":-5\r\n", b"*0\r\n", 502, "store_error"),
    # items that are not strings
    (b":2\r\n", b"*2\r\n:1\r\n*0\r\n", 502, "store_error"),
    # an error
    (b":2\r\n", b"-ERR something broke\r\n", 502, "store_error"),
    # the truth, as a control
    (b":2\r\n", b"*2\r\n$1\r\n1\r\n$3\r\nabc\r\n", 200, None),
])
def test_untrusted_replies_are_checked(nginx_factory, tmp_path, count, items,
                                       status, code):
    fake = FakeRedis([count, items])
    try:
        doc = {"service": [{"name": "p", "kind": "redis_page",
                            "url": "redis://127.0.0.1:%d/0" % fake.port,
                            "key": "k"}],
               "rest_channel": [{"name": "l", "url_path": "/api/list",
                                 "method": "GET", "service": "p"}]}
        path = tmp_path / "fake.json"
        path.write_text(json.dumps(doc))
        register_input_file(path)
        ngx = nginx_factory(http="zmq_config file:%s;" % path,
                            server="location /api/ { zmq_router; }\n")
        ngx.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            r = get(ngx, "/api/list")
            if r.status_code != 503:
                break
            time.sleep(0.05)
        assert r.status_code == status, r.text
        if code:
            assert r.json()["error"] == code
        else:
            assert r.json()["object_list"] == [1, "abc"]
    finally:
        fake.close()


def test_a_silent_redis_times_out_with_503(nginx_factory, tmp_path):
    fake = FakeRedis([None, None])
    try:
        doc = {"service": [{"name": "p", "kind": "redis_page",
                            "url": "redis://127.0.0.1:%d/0" % fake.port,
                            "key": "k"}],
               "rest_channel": [{"name": "l", "url_path": "/api/list",
                                 "method": "GET", "service": "p"}]}
        path = tmp_path / "fake.json"
        path.write_text(json.dumps(doc))
        register_input_file(path)
        ngx = nginx_factory(http="zmq_config file:%s;" % path,
                            server="location /api/ { zmq_router; }\n")
        ngx.start()
        time.sleep(0.3)
        t0 = time.monotonic()
        r = requests.get(ngx.url + "/api/list", timeout=30)
        assert r.status_code == 503
        assert r.json()["error"] == "store_unavailable"
        assert r.headers["Retry-After"] == "1"
        assert 4 <= time.monotonic() - t0 < 10
    finally:
        fake.close()
