"""redis_page items (issue 15, item 3; the endpoint's speed, bench/paginate):
an item that is JSON is checked and copied as it is, never parsed and
written again, and what the check calls JSON is what jansson's json_loadb()
(which the endpoint used before) reads: these cases hold for both."""

import json
import math

import pytest
import requests

from conftest import register_input_file

DEEP = 2048             # jansson's JSON_PARSER_MAX_DEPTH

# (bytes in Redis, the item in the answer)
CASES = [
    (b'{"b": 1, "a": [1, 2.5, null]}', {"b": 1, "a": [1, 2.5, None]}),
    (b' \t{"a" : 1 , "b":[ ] }\r\n', {"a": 1, "b": []}),
    (b"{}", {}), (b"[]", []), (b"[true,false,null]", [True, False, None]),
    (b"true ", True), (b"truex", "truex"), (b"nul", "nul"),
    (b"9223372036854775807", 9223372036854775807),
    (b"9223372036854775808", "9223372036854775808"),
    (b"-9223372036854775808", -9223372036854775808),
    (b"-9223372036854775809", "-9223372036854775809"),
    (b"123456789012345678901234", "123456789012345678901234"),
    (b"1e400", "1e400"), (b"-1e400", "-1e400"), (b"1e-400", 0.0),
    (b"1E+2", 100.0), (b"2.50", 2.5), (b"-0", 0), (b"0", 0),
    (b"01", "01"), (b"1.", "1."), (b".5", ".5"), (b"1e", "1e"),
    (b"-", "-"), (b"- 1", "- 1"), (b"1 2", "1 2"), (b"\x0b1", "\x0b1"),
    (b"", ""), (b"  ", "  "),
    (b"[1,]", "[1,]"), (b'{"a":1,}', '{"a":1,}'), (b"{1:2}", "{1:2}"),
    (b'["a" "b"]', '["a" "b"]'), (b'{"a"}', '{"a"}'), (b"[", "["),
    (b'{"a":1,"a":2}', {"a": 2}),
    (b'"\\/"', "/"), (b'"\\ud83d\\ude00"', "\U0001f600"),
    (b'"\\u00e9\\n"', "\u00e9\n"),
    (b'"\\u0000"', '"\\u0000"'), (b'"\\ud800"', '"\\ud800"'),
    (b'"\\udc00"', '"\\udc00"'), (b'"\\ud800\\u0041"', '"\\ud800\\u0041"'),
    (b'"\\u12"', '"\\u12"'), (b'"bad\\x"', '"bad\\x"'),
    (b'"unterminated', '"unterminated'),
    (b'"a\x00b"', '"a\x00b"'), (b'"tab\there"', '"tab\there"'),
    (b'"\x7f"', "\x7f"), (b'"caf\xc3\xa9"', "caf\u00e9"),
    (b'"\xed\xa0\x80"', '"\ufffd\ufffd\ufffd"'),
    (b'"\xc0\xaf"', '"\ufffd\ufffd"'),
    (b'"\xf4\x90\x80\x80"', '"\ufffd\ufffd\ufffd\ufffd"'),
    (b"caf\xc3\xa9", "caf\u00e9"), (b"\xe2\x82", "\ufffd\ufffd"),
    (b"a\x00\xff", "a\ufffd\ufffd"), (b"a\x00b", "a\x00b"),
    (b"line1\nline2\x01\x1f", "line1\nline2\x01\x1f"),
    (b'say "hi" \\ bye', 'say "hi" \\ bye'),
    (b"[" * 2049 + b"]" * 2049, "[" * 2049 + "]" * 2049),
    (b'{"a":' * DEEP + b"1" + b"}" * DEEP,
     '{"a":' * DEEP + "1" + "}" * DEEP),
]


@pytest.fixture
def gw(nginx_factory, tmp_path, redis_store):
    doc = {"service": [
        {"name": "p", "kind": "redis_page", "url": redis_store.url,
         "key": "pi:{k}", "max_per_page": 1000},
        {"name": "z", "kind": "redis_page", "url": redis_store.url,
         "source": "zset", "key": "pi:zset", "withscores": True}],
        "rest_channel": [
            {"name": "l", "url_path": "/api/list/{k}", "method": "GET",
             "service": "p"},
            {"name": "z", "url_path": "/api/zset", "method": "GET",
             "service": "z"}]}
    path = tmp_path / "items.json"
    path.write_text(json.dumps(doc))
    register_input_file(path)
    ngx = nginx_factory(http="zmq_config file:%s;" % path,
                        server="location /api/ { zmq_router; }\n")
    ngx.start()
    ngx.redis = redis_store.client()
    return ngx


def page(ngx, path, **params):
    params.setdefault("per_page", 1000)
    r = requests.get(ngx.url + path, params=params, timeout=10)
    assert r.status_code == 200, r.text
    return r


def test_items_are_json_exactly_when_jansson_reads_them(gw):
    gw.redis.rpush("pi:cases", *[raw for raw, _ in CASES])
    got = page(gw, "/api/list/cases").json()["object_list"]
    assert len(got) == len(CASES)
    for (raw, want), item in zip(CASES, got):
        assert item == want and type(item) is type(want), raw[:40]


def test_deep_values_at_the_limit_are_json(gw):
    # Python's json cannot read these back (recursion): look at the text
    arrays = b"[" * DEEP + b"]" * DEEP
    objects = b'{"a":' * (DEEP - 1) + b"1" + b"}" * (DEEP - 1)
    for key, raw in (("arrays", arrays), ("objects", objects)):
        gw.redis.rpush("pi:" + key, raw)
        text = page(gw, "/api/list/" + key).text
        assert '"object_list":[%s]' % raw.decode() in text


def test_json_items_are_copied_as_they_are(gw):
    raw = '{"z": 1, "a": {"y": [1, 2.50, 1E+2]}, "s": "\\u00e9\\/"}'
    gw.redis.rpush("pi:verbatim", raw.encode(), b'  [1, 2]  ')
    text = page(gw, "/api/list/verbatim").text
    # the key order, the spaces and the escapes as stored; only the white
    # space around a value is left out
    assert '"object_list":[%s,[1, 2]]' % raw in text


def test_the_answer_is_compact_json_with_sorted_keys(gw):
    gw.redis.rpush("pi:few", b"1", b"x")
    r = page(gw, "/api/list/few", per_page=1, page=2)
    assert r.text == (
        '{"count":2,"end_index":2,"has_next":false,"has_previous":true,'
        '"num_pages":2,"number":2,"object_list":["x"],"per_page":1,'
        '"start_index":2}\n')
    assert r.headers["Content-Type"] == "application/json"


def test_scores_are_reals_and_infinities_strings(gw):
    scores = [0.1, 1e20, -3, 1.5e-7, 2.5, 123456789.125, 5e-324,
              float("inf"), float("-inf")]
    gw.redis.zadd("pi:zset", {"m%d" % i: s for i, s in enumerate(scores)})
    got = page(gw, "/api/zset", per_page=100).json()["object_list"]
    want = sorted(("m%d" % i, s) for i, s in enumerate(scores))
    want.sort(key=lambda ms: ms[1])
    assert [g["member"] for g in got] == [m for m, _ in want]
    for g, (_, s) in zip(got, want):
        if math.isinf(s):
            assert g["score"] == ("inf" if s > 0 else "-inf")
        else:
            assert isinstance(g["score"], float) and g["score"] == s


# ------------------------------------------- score ranges read by rank


def zset_page_outcomes(ngx, redis, key_path, ranges, per_page):
    """Every page of each range (and one past the end) against
    ZRANGEBYSCORE/ZREVRANGEBYSCORE ... LIMIT on the same key."""
    for lo, hi, reverse in ranges:
        count = redis.zcount("pi:ties", lo, hi)
        pages = max(1, -(-count // per_page))
        for number in range(1, pages + 2):
            r = requests.get(ngx.url + key_path, timeout=10, params={
                "page": number, "per_page": per_page, "min": lo, "max": hi})
            if number > pages:
                assert r.status_code == 404, (lo, hi, number)
                continue
            assert r.status_code == 200, r.text
            off = (number - 1) * per_page
            if reverse:
                want = redis.zrevrangebyscore("pi:ties", hi, lo, start=off,
                                              num=per_page, withscores=True)
            else:
                want = redis.zrangebyscore("pi:ties", lo, hi, start=off,
                                           num=per_page, withscores=True)
            # an infinite score is the string "inf" or "-inf"
            got = [(g["member"], float(g["score"])) for g in
                   r.json()["object_list"]]
            assert got == [(m.decode(), s) for m, s in want], \
                (lo, hi, reverse, number)
            assert r.json()["count"] == count


RANGES = [("10", "20", False), ("(10", "20", False), ("10", "(20", False),
          ("(10", "(20", False), ("-inf", "(3", False), ("(97", "+inf", False),
          ("20", "10", False), ("10.5", "10.5", False), ("-inf", "-5", False),
          ("(-inf", "(+inf", False)]


def ties_config(redis_url):
    doc = {"service": [
        {"name": "up", "kind": "redis_page", "url": redis_url,
         "source": "zset", "key": "pi:ties", "withscores": True},
        {"name": "down", "kind": "redis_page", "url": redis_url,
         "source": "zset", "key": "pi:ties", "withscores": True,
         "reverse": True}],
        "rest_channel": [
            {"name": "up", "url_path": "/api/up", "method": "GET",
             "service": "up"},
            {"name": "down", "url_path": "/api/down", "method": "GET",
             "service": "down"}]}
    return doc


def fill_ties(redis):
    # several members on each score, the bounds among them, and infinities
    members = {}
    for i in range(300):
        members["m%03d" % i] = (i // 3)
    members.update({"half": 10.5, "up": float("inf"),
                    "down": float("-inf")})
    redis.zadd("pi:ties", members)


def start_ties(nginx_factory, tmp_path, redis_url):
    path = tmp_path / "ties.json"
    path.write_text(json.dumps(ties_config(redis_url)))
    register_input_file(path)
    ngx = nginx_factory(http="zmq_config file:%s;" % path,
                        server="location /api/ { zmq_router; }\n")
    ngx.start()
    return ngx


def commandstats(redis):
    return {k: v["calls"] for k, v in redis.info("commandstats").items()}


def test_score_ranges_are_read_by_rank_with_the_same_pages(
        nginx_factory, tmp_path, redis_store):
    redis = redis_store.client()
    fill_ties(redis)
    ngx = start_ties(nginx_factory, tmp_path, redis_store.url)
    redis.config_resetstat()
    up = RANGES
    down = [(lo, hi, True) for lo, hi, _ in RANGES]
    zset_page_outcomes(ngx, redis, "/api/up", up, 7)
    zset_page_outcomes(ngx, redis, "/api/down", down, 7)
    stats = commandstats(redis)
    # the gateway's reads went through the script; the test's own through
    # ZRANGEBYSCORE and ZREVRANGEBYSCORE only
    assert stats.get("cmdstat_eval", 0) > 0
    assert stats.get("cmdstat_zrangebyscore", 0) + \
        stats.get("cmdstat_zrevrangebyscore", 0) < stats["cmdstat_eval"]


def test_without_eval_score_ranges_are_read_with_limit(nginx_factory,
                                                       tmp_path):
    import os
    from conftest import RedisServer
    rdir = tmp_path / "redis"
    os.makedirs(rdir)
    rs = RedisServer(str(rdir))
    try:
        redis = rs.client()
        # an ACL that refuses scripts (as a read-only user's would)
        redis.execute_command("ACL", "SETUSER", "default", "-@scripting")
        fill_ties(redis)
        ngx = start_ties(nginx_factory, tmp_path, rs.url)
        zset_page_outcomes(ngx, redis, "/api/up", RANGES[:3], 7)
        zset_page_outcomes(ngx, redis, "/api/down",
                           [(lo, hi, True) for lo, hi, _ in RANGES[:3]], 7)
        assert "Redis refused EVAL" in ngx.error_log()
        assert commandstats(redis).get("cmdstat_eval", 0) == 0
    finally:
        rs.stop()


# ------------------------------------------- against jansson, at random


def jansson_reads(raw):
    """json_loadb(raw, JSON_DECODE_ANY) succeeds (libjansson, which the
    module links)."""
    import ctypes
    lib = ctypes.CDLL("libjansson.so.4")
    lib.json_loadb.restype = ctypes.c_void_p
    lib.json_loadb.argtypes = [ctypes.c_char_p, ctypes.c_size_t,
                               ctypes.c_size_t, ctypes.c_void_p]
    lib.json_delete.argtypes = [ctypes.c_void_p]
    v = lib.json_loadb(raw, len(raw), 4, None)
    if not v:
        return False
    # a reference, not freed: a test process
    return True


def as_string(raw):
    """The module's string for bytes that are not JSON: UTF-8 as it is,
    else one U+FFFD per bad byte (and per NUL)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        pass
    out, i = [], 0
    while i < len(raw):
        c = raw[i]
        n = (1 if c < 0x80 else 2 if c & 0xe0 == 0xc0 else
             3 if c & 0xf0 == 0xe0 else 4 if c & 0xf8 == 0xf0 else 0)
        if c == 0:
            n = 0
        if n:
            try:
                out.append(raw[i:i + n].decode("utf-8"))
                i += n
                continue
            except UnicodeDecodeError:
                pass
        out.append("\ufffd")
        i += 1
    return "".join(out)


SEEDS = [b'{"a": [1, 2.5e3, -0.0, true, null], "b": {"c": "d\\u00e9"}}',
         b'[1, "x", {"y": []}, -12, 3.25E-2]', b'"caf\xc3\xa9 \\n \\ud83d\\ude00"',
         b"9223372036854775807", b"-123.456e+78", b"true", b"null",
         b'{"k": "\\/\\b\\f\\r\\t\\"\\\\"}', b"[[[[]]]]", b"plain text"]
BYTES = b' \t\r\n{}[]:,"\\/ubfnrtd0123456789+-.eE\x00\x01\x1f\x7f\x80\xbf' \
        b'\xc0\xc3\xa9\xe2\x82\xac\xed\xa0\xf0\x9f\x98\x80\xf4\xf5\xffaxz'


def mutate(rnd, raw):
    raw = bytearray(raw)
    for _ in range(rnd.randint(1, 3)):
        op = rnd.randrange(4)
        i = rnd.randrange(len(raw) + 1)
        if op == 0 and raw:
            del raw[min(i, len(raw) - 1)]
        elif op == 1:
            raw[i:i] = bytes([rnd.choice(BYTES)])
        elif op == 2 and raw:
            raw[min(i, len(raw) - 1)] = rnd.choice(BYTES)
        else:
            j = rnd.randrange(len(raw) + 1)
            raw[i:i] = raw[min(i, j):max(i, j)][:8]
    return bytes(raw)


def test_random_items_are_what_jansson_and_python_make_of_them(gw):
    import random
    rnd = random.Random(15)
    items = []
    while len(items) < 1000:
        raw = mutate(rnd, rnd.choice(SEEDS))
        if b"\x00" in raw and jansson_reads(raw) and \
                jansson_reads(raw.split(b"\x00")[0]):
            continue        # jansson stops at a NUL after a value: not JSON
        items.append(raw)
    gw.redis.rpush("pi:random", *items)
    got = page(gw, "/api/list/random").json()["object_list"]
    assert len(got) == len(items)
    for raw, item in zip(items, got):
        want = json.loads(raw) if jansson_reads(raw) else as_string(raw)
        assert item == want and type(item) is type(want), raw
