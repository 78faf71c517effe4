"""Security definitions (issue 11) from a file: configuration: basic_auth
and apikey accepted and refused, where zmq_security and a route's security
apply, the identity a consumer reads in x-zmq-auth (checked with pika), a
client that forges it, bodies that a refused request never sends, nginx -t
for a definition that does not exist, and the throttle of failed attempts.

JWTs: test_security_jwt.py. From Redis (PBKDF2 on the thread pool, changes
applied live on every worker, zmqctl apikey, the stall bound):
test_security_live.py."""

import socket
import time
import unicodedata

import pytest

from conftest import amqp_config
from security_helpers import (apikey_digest, basic, call, refusals, source,
                              unauthorized)

ALICE_PW = "alice-Secret-7731"
COLON_PW = "left:right::more-0918"
UTF8_PW = "Gr\u00fc\u00dfe-\u20ac-\u00e9t\u00e9-\u65e5\u672c-4471"
KEY1 = "kA7-2xYq9vLm0Pz3RtW8sNc5bHj1uGf4eDo6iKl2Qw"
KEY2 = "zZ9_8yXw7vUt6sRq5pOn4mLk3jIh2gFe1dCb0aAB77"
HDR_KEY = "hdr-key-5f2c9a7e31b84d06a9e3c1f7b2d845aa"

LOCATIONS = """
location = /basic { zmq_service svc; zmq_security basic; }
location = /colon { zmq_service svc; zmq_security b-colon; }
location = /utf8 { zmq_service svc; zmq_security b-utf8; }
location = /key { zmq_service svc; zmq_security keys; }
location = /hdr { zmq_service svc; zmq_security key-hdr; }
location = /open { zmq_service svc; }
location = /guarded-status { zmq_security basic; zmq_status; }
location /api/ { zmq_router; zmq_security basic; }
"""

BASIC = 'Basic realm="crm", charset="UTF-8"'
BASIC_DEFAULT = 'Basic realm="ngx_zmq", charset="UTF-8"'
APIKEY = 'ApiKey header="X-API-Key"'


def config(port, queue):
    return amqp_config(port, {"svc": {"routing_key": queue}}, extra={
        "security": [
            {"name": "basic", "type": "basic_auth", "username": "alice",
             "password": ALICE_PW, "realm": "crm"},
            {"name": "b-colon", "type": "basic_auth", "username": "bob",
             "password": COLON_PW},
            {"name": "b-utf8", "type": "basic_auth",
             "username": "j\u00fcrgen", "password": UTF8_PW},
            {"name": "keys", "type": "apikey", "keys": [
                {"id": "app1", "sha256": apikey_digest(KEY1)},
                {"id": "app2", "sha256": apikey_digest(KEY2)}]},
            {"name": "key-hdr", "type": "apikey", "header": "X-Token",
             "keys": [{"id": "h", "sha256": apikey_digest(HDR_KEY)}]},
        ],
        "rest_channel": [
            # the route's own security wins over the location's
            {"name": "own", "url_path": "/api/own", "service": "svc",
             "security": "keys"},
            # none of its own: the location's zmq_security applies
            {"name": "plain", "url_path": "/api/plain", "service": "svc"},
        ]})


@pytest.fixture
def gw(rabbitmq, gateway, queue):
    from conftest import register_secret
    for s in (ALICE_PW, COLON_PW, UTF8_PW, KEY1, KEY2, HDR_KEY):
        register_secret(s)
    g = gateway(config(rabbitmq.port, queue.name), LOCATIONS)
    g.port = g.ngx.port
    g.queue = queue
    return g


def reasons(gw):
    return [(name, why) for _, name, why in refusals(gw.ngx.error_log())]


# ---------------------------------------------------------------- basic


def test_basic_auth_accepts_its_user_and_tells_the_consumer(gw):
    a = call(gw.port, "/basic", {"Authorization": basic("alice", ALICE_PW)},
             body=b"hello")
    assert a.status == 202, a
    [(_, props, body)] = gw.queue.drain(expect=1)
    assert body == b"hello"
    assert props.headers["x-zmq-auth"] == "basic:alice"
    # a location without security adds no identity
    assert call(gw.port, "/open").status == 202
    [(_, props, _)] = gw.queue.drain(expect=1)
    assert "x-zmq-auth" not in (props.headers or {})


def test_basic_auth_refusals_say_nothing_and_log_the_reason(gw):
    cases = [
        ("no header", {}, "no basic credentials"),
        ("wrong password", {"Authorization": basic("alice", "nope-0001x")},
         "bad password"),
        ("unknown user", {"Authorization": basic("mallory", ALICE_PW)},
         "unknown user"),
        ("another scheme", {"Authorization": "Bearer abc.def.ghi"},
         "no basic credentials"),
        ("empty password", {"Authorization": "Basic YWxpY2U6"},
         "bad password"),
        ("a NUL after the password", {"Authorization": basic(
            "alice", ALICE_PW + "\0")}, "malformed password"),
    ]
    bodies = set()
    for title, headers, _ in cases:
        a = call(gw.port, "/basic", headers)
        unauthorized(a, BASIC)
        bodies.add(a.body)
    # the body never says whether the user or the password was wrong
    assert len(bodies) == 1, bodies
    assert reasons(gw) == [("basic", why) for _, _, why in cases]
    assert gw.queue.count() == 0


def test_basic_auth_malformed_base64_is_refused(gw):
    values = ("Basic !!!not-base64!!!",
              "Basic Y",                        # 6 bits: no byte
              "Basic YWxp Y2U6",                # a space inside
              "Basic YWxpY2U",                  # "alic", no ':'
              "Basic bm9jb2xvbg==",             # "nocolon"
              "Basic ")
    for value in values:
        a = call(gw.port, "/basic", {"Authorization": value})
        unauthorized(a, BASIC)
    assert [r for _, r in reasons(gw)] == ["no basic credentials"] * len(
        values)
    assert gw.queue.count() == 0


def test_a_password_containing_colons(gw):
    """RFC 7617: the user ends at the first ':', the password may hold
    more."""
    a = call(gw.port, "/colon", {"Authorization": basic("bob", COLON_PW)})
    assert a.status == 202, a
    [(_, props, _)] = gw.queue.drain(expect=1)
    assert props.headers["x-zmq-auth"] == "b-colon:bob"
    # the password is not cut at a ':' (nor is more accepted)
    for wrong in ("left", "left:right:", COLON_PW + ":"):
        unauthorized(call(gw.port, "/colon", {"Authorization": basic(
            "bob", wrong)}), BASIC_DEFAULT)
    assert reasons(gw) == [("b-colon", "bad password")] * 3


def test_a_utf8_user_and_password(gw):
    a = call(gw.port, "/utf8",
             {"Authorization": basic("j\u00fcrgen", UTF8_PW)})
    assert a.status == 202, a
    [(_, props, _)] = gw.queue.drain(expect=1)
    assert props.headers["x-zmq-auth"] == "b-utf8:j\u00fcrgen"
    # the same text in another Unicode form (NFD) is another password
    nfd = unicodedata.normalize("NFD", UTF8_PW)
    assert nfd != UTF8_PW
    unauthorized(call(gw.port, "/utf8", {"Authorization": basic(
        "j\u00fcrgen", nfd)}), BASIC_DEFAULT)
    a = call(gw.port, "/utf8", {"Authorization": basic(
        "j\u00fcrgen", UTF8_PW.replace("\u20ac", "E"))})
    unauthorized(a, BASIC_DEFAULT)
    assert [r for _, r in reasons(gw)] == ["bad password"] * 2


# --------------------------------------------------------------- apikey


def test_apikey_accepts_every_current_key_with_its_id(gw):
    for key, kid in ((KEY1, "app1"), (KEY2, "app2")):
        a = call(gw.port, "/key", {"X-API-Key": key})
        assert a.status == 202, a
        [(_, props, _)] = gw.queue.drain(expect=1)
        assert props.headers["x-zmq-auth"] == "keys:" + kid
    # the header's name is case-insensitive, its own header only
    a = call(gw.port, "/hdr", {"x-token": HDR_KEY})
    assert a.status == 202, a
    [(_, props, _)] = gw.queue.drain(expect=1)
    assert props.headers["x-zmq-auth"] == "key-hdr:h"


def test_apikey_refusals(gw):
    cases = [
        ("/key", {}, "no key"),
        ("/key", {"X-API-Key": KEY1[:-1]}, "unknown key"),
        ("/key", {"X-API-Key": KEY1 + "A"}, "unknown key"),
        ("/key", {"X-API-Key": apikey_digest(KEY1)}, "unknown key"),
        ("/key", {"X-API-Key": ""}, "unknown key"),
        ("/key", [("X-API-Key", KEY1), ("X-API-Key", KEY2)],
         "more than one key"),
        ("/key", {"Authorization": "Bearer " + KEY1}, "no key"),
        ("/hdr", {"X-API-Key": HDR_KEY}, "no key"),       # not its header
        ("/key", {"X-Token": KEY1}, "no key"),
    ]
    for path, headers, _ in cases:
        a = call(gw.port, path, headers)
        unauthorized(a, APIKEY if path == "/key"
                     else 'ApiKey header="X-Token"')
    assert [r for _, r in reasons(gw)] == [why for _, _, why in cases]
    assert gw.queue.count() == 0


# --------------------------------------------------- where it applies


def test_a_route_security_wins_over_the_location(gw):
    # /api/own: the route names "keys"
    unauthorized(call(gw.port, "/api/own",
                      {"Authorization": basic("alice", ALICE_PW)}), APIKEY)
    a = call(gw.port, "/api/own", {"X-API-Key": KEY2})
    assert a.status == 202, a
    [(_, props, _)] = gw.queue.drain(expect=1)
    assert props.headers["x-zmq-auth"] == "keys:app2"
    # /api/plain: none of its own, the location's basic applies
    unauthorized(call(gw.port, "/api/plain", {"X-API-Key": KEY2}), BASIC)
    a = call(gw.port, "/api/plain",
             {"Authorization": basic("alice", ALICE_PW)})
    assert a.status == 202, a
    [(_, props, _)] = gw.queue.drain(expect=1)
    assert props.headers["x-zmq-auth"] == "basic:alice"
    # a path no route has is still the router's 404, with no credentials
    a = call(gw.port, "/api/none")
    assert a.status == 404 and a.json()["error"] == "not_found", a


def test_zmq_security_guards_any_location(gw):
    a = call(gw.port, "/guarded-status", method="GET", body=None)
    unauthorized(a, BASIC)
    a = call(gw.port, "/guarded-status", {
        "Authorization": basic("alice", ALICE_PW)}, method="GET", body=None)
    assert a.status == 200, a
    assert a.json()["module"] == "ngx_zmq"


# ------------------------------------------------------ forged identity


@pytest.mark.parametrize("name", ["X-Zmq-Header-x-zmq-auth",
                                  "X-ZMQ-HEADER-X-ZMQ-AUTH",
                                  "x-zmq-header-X-Zmq-Auth",
                                  "X-Zmq-Header-x-zmq-claim-role"])
def test_a_forged_identity_header_is_refused(gw, name):
    """Even with valid credentials: the consumer must be able to trust
    x-zmq-auth."""
    a = call(gw.port, "/basic", {"Authorization": basic("alice", ALICE_PW),
                                 name: "basic:admin"})
    assert a.status == 400, a
    assert a.json()["error"] == "bad_header"
    assert "beginning with x-" in a.json()["message"]
    # on an open location too: nobody can make a message look proved
    a = call(gw.port, "/open", {name: "basic:admin"})
    assert a.status == 400, a
    assert gw.queue.count() == 0


# ------------------------------------------------ bodies never read


def send_headers_only(port, path, headers, length=1000000,
                      timeout=5.0):
    """Headers announcing a large body that never comes: the answer must
    come at once (the body would never finish). (status, seconds)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        t = time.monotonic()
        req = "POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n" % (
            path, length)
        for k, v in headers.items():
            req += "%s: %s\r\n" % (k, v)
        s.sendall((req + "\r\n").encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        return int(data.split(b" ", 2)[1]), time.monotonic() - t, data
    finally:
        s.close()


@pytest.mark.parametrize("path,headers,challenge", [
    ("/basic", {}, BASIC),
    ("/basic", {"Authorization": "Basic YWxpY2U6d3Jvbmc="}, BASIC),
    ("/key", {"X-API-Key": "wrong"}, APIKEY),
    ("/api/own", {}, APIKEY),
])
def test_a_refused_request_never_waits_for_its_body(gw, path, headers,
                                                    challenge):
    status, took, data = send_headers_only(gw.port, path, headers)
    assert status == 401, data
    assert took < 1.0, took
    assert challenge.encode() in data
    # the control: an admitted request does wait for its body
    with pytest.raises(socket.timeout):
        send_headers_only(gw.port, "/key", {"X-API-Key": KEY1},
                          timeout=1.0)


# ------------------------------------------------------------- nginx -t


@pytest.mark.parametrize("extra,name", [
    ([], "absent"),
    ([{"name": "outgoing", "type": "basic_auth", "direction": "out",
       "username": "u", "password": "out-pass-9912"}], "outgoing"),
])
def test_nginx_t_fails_for_a_definition_the_file_lacks(
        rabbitmq, nginx_factory, write_json, extra, name):
    doc = config(rabbitmq.port, "q")
    doc["security"] += extra
    path = write_json("zmq.json", doc)
    ngx = nginx_factory(http="zmq_config file:%s;" % path,
                        server="location = /p { zmq_service svc; "
                               "zmq_security %s; }" % name)
    rc, out = ngx.test_config()
    assert rc != 0, out
    assert ('zmq_security "%s": no incoming security definition of that '
            'name' % name) in out, out
    # the control: the same file with an existing definition passes
    ngx2 = nginx_factory(http="zmq_config file:%s;" % path,
                         server="location = /p { zmq_service svc; "
                                "zmq_security basic; }")
    rc, out = ngx2.test_config()
    assert rc == 0, out


# ------------------------------------------------------------- throttle


def test_wrong_api_keys_are_throttled_too(gw):
    for i in range(10):
        unauthorized(call(gw.port, "/key", {"X-API-Key": "nope-%d" % i}),
                     APIKEY)
    a = call(gw.port, "/key", {"X-API-Key": KEY1})
    assert a.status == 429, a
    assert a.json()["error"] == "too_many_attempts"
    assert 1 <= int(a.headers["Retry-After"]) <= 10
    # per definition: the basic one still answers this client
    assert call(gw.port, "/basic", {"Authorization": basic(
        "alice", ALICE_PW)}).status == 202


def test_failures_are_throttled_per_address_and_definition_then_recover(
        gw):
    good = {"Authorization": basic("alice", ALICE_PW)}
    t0 = time.monotonic()
    for i in range(10):
        a = call(gw.port, "/basic", {"Authorization": basic(
            "alice", "guess-%04d-x" % i)})
        unauthorized(a, BASIC)

    t429 = time.monotonic()
    a = call(gw.port, "/basic", {"Authorization": basic("alice", "guess-x")})
    assert a.status == 429, a
    assert a.json()["error"] == "too_many_attempts"
    retry = int(a.headers["Retry-After"])
    assert 1 <= retry <= 10, retry
    # the right password too: the throttle comes before any check
    assert call(gw.port, "/basic", good).status == 429
    # on a route under the same definition as well
    assert call(gw.port, "/api/plain", good).status == 429
    assert gw.queue.count() == 0

    # another client address is not throttled, nor another definition
    assert call(gw.port, "/basic", good, source=source(0)).status == 202
    assert call(gw.port, "/key", {"X-API-Key": KEY1}).status == 202
    gw.queue.drain(expect=2)
    assert len(refusals(gw.ngx.error_log())) == 10   # 429s are not counted

    # recovery when Retry-After says so (10 s from the first failure)
    assert t429 + retry >= t0 + 9.5
    time.sleep(max(0.0, t429 + retry + 0.1 - time.monotonic()))
    a = call(gw.port, "/basic", good)
    assert a.status == 202, a
    # and a failure is a 401 again, not a 429
    unauthorized(call(gw.port, "/basic", {"Authorization": basic(
        "alice", "guess-after")}), BASIC)


def test_a_success_forgets_the_failures(gw):
    good = {"Authorization": basic("alice", ALICE_PW)}
    for round_ in range(3):
        for i in range(9):
            unauthorized(call(gw.port, "/basic", {"Authorization": basic(
                "alice", "miss-%d-%d-z" % (round_, i))}), BASIC)
        assert call(gw.port, "/basic", good).status == 202
    assert gw.queue.count() == 3
