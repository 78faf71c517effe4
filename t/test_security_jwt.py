"""jwt security definitions (issue 11) against tokens signed by PyJWT with
keys from python3-cryptography (never by our code): every pinned algorithm
accepted, and each way a token can be wrong refused with 401 and its reason
in the error log: expired, not yet valid, leeway, wrong iss or aud,
tampered payload or signature, alg none, HS/RS confusion, another
algorithm, a kid not in the JWKS, a crit header, malformed base64url, a
token over 8 KB. The sub and the claims_to_headers reach the consumer
(checked with pika)."""

import base64
import json
import time

import pytest

from conftest import amqp_config
from security_helpers import (b64url, bearer, call, hs_sign_raw, jwk, keys,
                              public_pem, refusals, sign, unauthorized)

HS_SECRET = "hs256-secret-of-at-least-32-bytes-4b7e1"
HS384_SECRET = "hs384-secret-" + "q7" * 20
HS512_SECRET = "hs512-secret-" + "z3" * 30
OTHER_SECRET = "another-secret-of-at-least-32-bytes-9d2"
ISS = "https://issuer.test/"

INVALID = 'Bearer error="invalid_token"'

# definition name -> (alg, what signs for it)
ALGS = {
    "hs": ("HS256", lambda: HS_SECRET),
    "hs384": ("HS384", lambda: HS384_SECRET),
    "hs512": ("HS512", lambda: HS512_SECRET),
    "rs": ("RS256", lambda: keys()["rsa"]),
    "rs384": ("RS384", lambda: keys()["rsa"]),
    "rs512": ("RS512", lambda: keys()["rsa"]),
    "ps": ("PS256", lambda: keys()["rsa"]),
    "es": ("ES256", lambda: keys()["ec256"]),
    "es384": ("ES384", lambda: keys()["ec384"]),
}


def definitions():
    k = keys()
    d = [
        {"name": "hs", "type": "jwt", "alg": "HS256", "secret": HS_SECRET,
         "iss": ISS, "aud": ["crm", "billing"],
         "claims_to_headers": ["tenant", "roles", "level", "admin",
                               "absent"]},
        {"name": "hs384", "type": "jwt", "alg": "HS384",
         "secret": HS384_SECRET},
        {"name": "hs512", "type": "jwt", "alg": "HS512",
         "secret": HS512_SECRET},
        {"name": "jwks", "type": "jwt", "alg": "RS256", "jwks": {"keys": [
            jwk(k["rsa"], "k-one", "RS256"),
            jwk(k["rsa2"], "k-two", "RS256")]}},
        {"name": "leeway", "type": "jwt", "secret": HS_SECRET, "leeway": 30,
         "aud": "crm"},
        {"name": "noexp", "type": "jwt", "secret": HS_SECRET,
         "require_exp": False},
        {"name": "maxage", "type": "jwt", "secret": HS_SECRET,
         "max_age": 60},
    ]
    for name in ("rs", "rs384", "rs512", "ps", "es", "es384"):
        alg, key = ALGS[name]
        d.append({"name": name, "type": "jwt", "alg": alg,
                  "public_key": public_pem(key())})
    return d


NAMES = [d for d in ALGS] + ["jwks", "leeway", "noexp", "maxage"]
LOCATIONS = "large_client_header_buffers 4 32k;\n" + "".join(
    "location = /j/%s { zmq_service svc; zmq_security %s; }\n" % (n, n)
    for n in NAMES)


@pytest.fixture
def gw(rabbitmq, gateway, queue):
    doc = amqp_config(rabbitmq.port, {"svc": {"routing_key": queue.name}},
                      extra={"security": definitions()})
    g = gateway(doc, LOCATIONS)
    g.port = g.ngx.port
    g.queue = queue
    return g


def claims(**kw):
    now = int(time.time())
    c = {"sub": "user-17", "iss": ISS, "aud": "crm", "iat": now,
         "exp": now + 300}
    c.update(kw)
    return {k: v for k, v in c.items() if v is not None}


def hs(**kw):
    return sign(claims(**kw), HS_SECRET, "HS256")


def post(gw, name, token=None, headers=None):
    h = dict(headers or {})
    if token is not None:
        h["Authorization"] = bearer(token)
    return call(gw.port, "/j/" + name, h)


def reasons(gw):
    return [(n, r) for _, n, r in refusals(gw.ngx.error_log())]


# ------------------------------------------------------------ accepted


@pytest.mark.parametrize("name", sorted(ALGS))
def test_each_algorithm_accepts_its_tokens(gw, name):
    alg, key = ALGS[name]
    a = post(gw, name, sign(claims(sub="svc-" + alg), key(), alg))
    assert a.status == 202, a
    [(_, props, _)] = gw.queue.drain(expect=1)
    assert props.headers["x-zmq-auth"] == "%s:svc-%s" % (name, alg)


def test_a_jwks_key_is_chosen_by_kid(gw):
    k = keys()
    for key, kid in ((k["rsa"], "k-one"), (k["rsa2"], "k-two")):
        a = post(gw, "jwks", sign(claims(sub=kid), key, "RS256",
                                  headers={"kid": kid}))
        assert a.status == 202, a
    subs = [p.headers["x-zmq-auth"] for _, p, _ in gw.queue.drain(expect=2)]
    assert subs == ["jwks:k-one", "jwks:k-two"]


def test_sub_and_claims_reach_the_consumer(gw):
    tok = hs(sub="alice@example.com", tenant="acme", roles=["ops", "dev"],
             level=3, admin=False, other="not copied")
    a = post(gw, "hs", tok)
    assert a.status == 202, a
    [(_, props, _)] = gw.queue.drain(expect=1)
    assert props.headers == {
        "x-zmq-auth": "hs:alice@example.com",
        "x-zmq-claim-tenant": "acme",               # strings verbatim
        "x-zmq-claim-roles": '["ops","dev"]',       # the rest as JSON text
        "x-zmq-claim-level": "3",
        "x-zmq-claim-admin": "false",
    }, props.headers
    # the cached token carries the same identity the second time
    assert post(gw, "hs", tok).status == 202
    [(_, props2, _)] = gw.queue.drain(expect=1)
    assert props2.headers == props.headers


def test_aud_may_be_any_of_the_definitions_or_a_list(gw):
    for aud in ("crm", "billing", ["other", "billing"]):
        assert post(gw, "hs", hs(aud=aud)).status == 202, aud
    gw.queue.drain(expect=3)
    for aud in ("crmx", ["other", "more"], None):
        unauthorized(post(gw, "hs", hs(aud=aud)), INVALID)
    assert reasons(gw) == [("hs", "wrong audience")] * 3


def test_a_token_without_sub_carries_the_definition_alone(gw):
    assert post(gw, "hs", hs(sub=None)).status == 202
    [(_, props, _)] = gw.queue.drain(expect=1)
    assert props.headers["x-zmq-auth"] == "hs:"


def test_the_bearer_scheme_is_case_insensitive(gw):
    tok = hs(sub="case")
    register = bearer(tok)              # registers the token as a secret
    for value in ("bearer " + tok, "BEARER   " + tok, register + "  "):
        a = call(gw.port, "/j/hs", {"Authorization": value})
        assert a.status == 202, (value[:12], a)
    assert gw.queue.count() == 3


def test_a_sub_or_claim_a_header_cannot_hold(gw):
    """A sub with a control character is refused (the consumer could not
    be told who it is); a copied claim that cannot be a header value is
    left out, and said so in the log."""
    unauthorized(post(gw, "hs", hs(sub="ali\u0001ce")), INVALID)
    assert reasons(gw) == [
        ("hs", "the principal cannot be carried in a header")]
    a = post(gw, "hs", hs(sub="bob", tenant="ac\nme", level=2))
    assert a.status == 202, a
    [(_, props, _)] = gw.queue.drain(expect=1)
    assert props.headers == {"x-zmq-auth": "hs:bob",
                             "x-zmq-claim-level": "2"}
    assert 'zmq: security "hs": claim "tenant" cannot be carried in a ' \
        'header: left out' in gw.ngx.error_log()


def test_bad_tokens_are_throttled(gw):
    for i in range(10):
        unauthorized(post(gw, "hs", hs(iss="https://evil-%d/" % i)),
                     INVALID)
    a = post(gw, "hs", hs())
    assert a.status == 429, a
    assert a.json()["error"] == "too_many_attempts"
    assert 1 <= int(a.headers["Retry-After"]) <= 10


def test_require_exp_false_accepts_a_token_without_exp(gw):
    tok = sign(claims(exp=None), HS_SECRET, "HS256")
    assert post(gw, "noexp", tok).status == 202
    unauthorized(post(gw, "hs", tok), INVALID)
    assert reasons(gw) == [("hs", "missing exp")]


def test_leeway_for_exp_and_nbf(gw):
    now = int(time.time())
    late = hs(exp=now - 10)
    early = hs(nbf=now + 10)
    assert post(gw, "leeway", late).status == 202
    assert post(gw, "leeway", early).status == 202
    # without leeway (the default, 0), the same tokens are refused
    unauthorized(post(gw, "hs", late), INVALID)
    unauthorized(post(gw, "hs", early), INVALID)
    # and beyond the leeway, the leeway definition refuses them too
    unauthorized(post(gw, "leeway", hs(exp=now - 45)), INVALID)
    unauthorized(post(gw, "leeway", hs(nbf=now + 45)), INVALID)
    assert reasons(gw) == [("hs", "expired"), ("hs", "not yet valid"),
                           ("leeway", "expired"),
                           ("leeway", "not yet valid")]
    assert gw.queue.count() == 2


def test_max_age_counts_from_iat(gw):
    now = int(time.time())
    assert post(gw, "maxage", hs(iat=now - 30)).status == 202
    unauthorized(post(gw, "maxage", hs(iat=now - 120)), INVALID)
    unauthorized(post(gw, "maxage", hs(iat=None)), INVALID)
    assert reasons(gw) == [("maxage", "issued too long ago"),
                           ("maxage", "missing iat")]


# ------------------------------------------------------------- refused


def tamper_payload(tok):
    h, p, s = tok.split(".")
    c = json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))
    c["sub"] = "admin"
    return "%s.%s.%s" % (h, b64url(json.dumps(c)), s)


def tamper_signature(tok):
    h, p, s = tok.split(".")
    # the first character: all of its bits are signature bits
    return "%s.%s.%s%s" % (h, p, "B" if s[0] == "A" else "A", s[1:])


def alg_none():
    """PyJWT's unsecured token: header.payload. with an empty signature
    (refused as malformed before its alg is looked at)."""
    tok = sign(claims(), None, "none")
    assert tok.endswith(".") and '"none"' in base64.urlsafe_b64decode(
        tok.split(".")[0] + "==").decode()
    return tok


def alg_none_with_signature():
    h, p, s = hs().split(".")
    return "%s.%s.%s" % (b64url(json.dumps({"alg": "none"})), p, s)


def hs_with_rsa_pem():
    """The RS256 definition's own public key PEM as an HMAC secret: the
    classic confusion. PyJWT refuses to make it; made by hand."""
    return hs_sign_raw({"alg": "HS256", "typ": "JWT"}, claims(),
                       public_pem(keys()["rsa"]))


def unknown_kid():
    return sign(claims(), keys()["rsa3"], "RS256", headers={"kid": "k-three"})


def kid_of_another_key():
    return sign(claims(), keys()["rsa2"], "RS256", headers={"kid": "k-one"})


def crit_header():
    return sign(claims(), HS_SECRET, "HS256",
                headers={"crit": ["exp-policy"], "exp-policy": 1})


def padded_base64():
    h, p, s = hs().split(".")
    return "%s.%s.%s" % (h, p + "=" * (-len(p) % 4 or 4), s)


def standard_base64():
    """'+' and '/' are base64, not base64url: a signature that holds '-'
    or '_' written in the standard alphabet."""
    for i in range(200):
        h, p, s = hs(pad=i).split(".")
        if "-" in s or "_" in s:
            return "%s.%s.%s" % (h, p, s.replace("-", "+").replace("_", "/"))
    raise AssertionError("no signature with - or _")


def signed_payload(payload):
    """A token whose payload is these bytes, rightly signed (by hand:
    PyJWT signs JSON objects only)."""
    import hmac
    signing = "%s.%s" % (b64url(json.dumps({"alg": "HS256"})),
                         b64url(payload))
    mac = hmac.new(HS_SECRET.encode(), signing.encode(),
                   "sha256").digest()
    return signing + "." + b64url(mac)


def huge():
    tok = hs(pad="x" * 9000)
    assert len(tok) > 8192
    return tok


REFUSED = [
    # (title, definition, token maker, reason)
    ("expired", "hs", lambda: hs(exp=int(time.time()) - 1), "expired"),
    ("expired long ago", "rs",
     lambda: sign(claims(exp=1000000000), keys()["rsa"], "RS256"),
     "expired"),
    ("not yet valid", "hs", lambda: hs(nbf=int(time.time()) + 60),
     "not yet valid"),
    ("wrong iss", "hs", lambda: hs(iss="https://evil.test/"),
     "wrong issuer"),
    ("no iss", "hs", lambda: hs(iss=None), "wrong issuer"),
    ("wrong aud", "hs", lambda: hs(aud="evil"), "wrong audience"),
    ("no exp", "hs", lambda: hs(exp=None), "missing exp"),
    ("tampered payload", "hs", lambda: tamper_payload(hs()),
     "bad signature"),
    ("tampered payload RS256", "rs", lambda: tamper_payload(
        sign(claims(), keys()["rsa"], "RS256")), "bad signature"),
    ("tampered signature", "hs", lambda: tamper_signature(hs()),
     "bad signature"),
    ("tampered signature ES256", "es", lambda: tamper_signature(
        sign(claims(), keys()["ec256"], "ES256")), "bad signature"),
    ("another secret", "hs",
     lambda: sign(claims(), OTHER_SECRET, "HS256"), "bad signature"),
    ("another RSA key", "rs",
     lambda: sign(claims(), keys()["rsa2"], "RS256"), "bad signature"),
    ("alg none", "hs", alg_none, "malformed token"),
    ("alg none on a key definition", "rs", alg_none, "malformed token"),
    ("alg none with a valid signature", "hs", alg_none_with_signature,
     "algorithm not allowed"),
    ("HS256 with the RSA public key as secret", "rs", hs_with_rsa_pem,
     "algorithm not allowed"),
    ("RS384 against RS256", "rs",
     lambda: sign(claims(), keys()["rsa"], "RS384"),
     "algorithm not allowed"),
    ("PS256 against RS256", "rs",
     lambda: sign(claims(), keys()["rsa"], "PS256"),
     "algorithm not allowed"),
    ("HS512 against HS256", "hs",
     lambda: sign(claims(), HS_SECRET, "HS512"), "algorithm not allowed"),
    ("ES384 against ES256", "es",
     lambda: sign(claims(), keys()["ec384"], "ES384"),
     "algorithm not allowed"),
    ("a kid not in the JWKS", "jwks", unknown_kid, "unknown key id"),
    ("a kid naming another key", "jwks", kid_of_another_key,
     "bad signature"),
    ("a crit header", "hs", crit_header, "unsupported critical header"),
    ("padded base64url", "hs", padded_base64, "malformed token"),
    ("standard base64", "hs", standard_base64, "malformed token"),
    ("two parts", "hs", lambda: ".".join(hs().split(".")[:2]),
     "malformed token"),
    ("four parts", "hs", lambda: hs() + ".e30", "malformed token"),
    ("a payload that is not JSON", "hs", lambda: signed_payload(
        b"not json"), "malformed token"),
    ("a payload that is an array", "hs", lambda: signed_payload(
        b'["sub"]'), "malformed token"),
    ("an exp that is a string", "hs", lambda: hs(exp="99999999999"),
     "malformed claim"),
    ("a token over 8 KB", "hs", huge, "token too large"),
]


@pytest.mark.parametrize("title,name,make,reason", REFUSED,
                         ids=[r[0] for r in REFUSED])
def test_a_bad_token_is_refused_with_its_reason(gw, title, name, make,
                                                reason):
    a = post(gw, name, make())
    unauthorized(a, INVALID)
    assert reasons(gw) == [(name, reason)]
    assert gw.queue.count() == 0


def test_no_token_or_another_scheme(gw):
    a = post(gw, "hs")
    unauthorized(a, "Bearer")          # RFC 6750 3.1: no error code then
    a = call(gw.port, "/j/hs", {"Authorization": "Basic YTpi"})
    unauthorized(a, INVALID)
    a = call(gw.port, "/j/hs", {"Authorization": "Bearer"})
    unauthorized(a, INVALID)
    assert reasons(gw) == [("hs", "no bearer token")] * 3
    assert gw.queue.count() == 0


def token_of_length(n):
    """An HS256 token of exactly n bytes, signed by PyJWT."""
    for extra in range(4):
        base = len(sign(claims(pad=""), HS_SECRET, "HS256",
                        headers={"x": "y" * extra}))
        for pad in range(max(0, (n - base) * 3 // 4 - 8),
                         (n - base) * 3 // 4 + 8):
            tok = sign(claims(pad="p" * pad), HS_SECRET, "HS256",
                       headers={"x": "y" * extra})
            if len(tok) == n:
                return tok
    raise AssertionError("no token of %d bytes" % n)


def test_8192_bytes_is_the_largest_token(gw):
    assert post(gw, "hs", token_of_length(8192)).status == 202
    unauthorized(post(gw, "hs", token_of_length(8193)), INVALID)
    assert reasons(gw) == [("hs", "token too large")]


def test_a_cached_token_is_not_accepted_past_its_exp(gw):
    """The cache keeps a token at most until its exp, to the millisecond:
    first used (and cached) at X.85 s with exp X+2, it is refused at
    X+2.3 s."""
    while not 0.80 <= time.time() % 1 < 0.88:
        time.sleep(0.01)
    x = int(time.time())
    tok = hs(exp=x + 2)
    assert post(gw, "hs", tok).status == 202
    assert post(gw, "hs", tok).status == 202        # cached now
    time.sleep(max(0.0, x + 2.3 - time.time()))
    unauthorized(post(gw, "hs", tok), INVALID)
    assert reasons(gw) == [("hs", "expired")]


@pytest.mark.parametrize("name,kw", [
    ("leeway", {"exp": 2 ** 63 - 1}),
    ("leeway", {"exp": 1e300}),
    ("maxage", {"iat": 2 ** 63 - 1}),
    ("maxage", {"iat": 1e300}),
    ("maxage", {"iat": 2 ** 63 - 1, "exp": 2 ** 63 - 1}),
])
def test_dates_at_the_ends_of_the_range(gw, name, kw):
    """Valid (far future) dates that the cache's arithmetic must not
    overflow on (UBSan under make asan-nginx); accepted twice, the second
    time from the cache."""
    tok = hs(**kw)
    for _ in range(2):
        a = post(gw, name, tok)
        assert a.status == 202, a
    assert gw.queue.count() == 2
