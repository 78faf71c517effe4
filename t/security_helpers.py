"""Helpers of the security tests (issue 11).

Requests go out with http.client, so that a test can choose the loopback
source address (127.0.0.N: the throttle counts per client address) and send
exactly the headers it means to (a Content-Length without a body, one header
twice, raw bytes). Credentials are made here, tokens are signed by PyJWT and
keys made by python3-cryptography: never by the code under test. Every
password, key and token a test uses is registered with the conftest secret
scan, so that no log, answer or message may hold it.
"""

import base64
import functools
import hashlib
import hmac
import http.client
import json
import re
import subprocess
import time

from conftest import ZMQCTL, free_port, record_output, register_secret


# ------------------------------------------------------------------- HTTP


class Answer:
    def __init__(self, status, headers, body, elapsed):
        self.status = status
        self.headers = headers
        self.body = body
        self.elapsed = elapsed

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "<%d %r %r>" % (self.status, dict(self.headers.items()),
                               self.body[:300])


def call(port, path, headers=(), method="POST", body=b"x",
         source="127.0.0.1", timeout=30):
    """One request on a new connection (so that every worker gets its
    share) from source; headers: a dict or a list of (name, value)."""
    hs = list(headers.items()) if isinstance(headers, dict) else list(headers)
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout,
                                   source_address=(source, 0))
    try:
        t = time.monotonic()
        c.putrequest(method, path, skip_accept_encoding=True)
        for k, v in hs:
            c.putheader(k, v)
        if body is not None and not any(k.lower() == "content-length"
                                        for k, _ in hs):
            c.putheader("Content-Length", str(len(body)))
        c.endheaders(body)
        r = c.getresponse()
        data = r.read()
        elapsed = time.monotonic() - t
    finally:
        c.close()
    record_output("HTTP answer to %s %s" % (method, path),
                  "%s %s\n%s" % (r.status, dict(r.headers.items()),
                                 data.decode("utf-8", "replace")))
    return Answer(r.status, r.headers, data, elapsed)


def source(n):
    """The n-th loopback client address other than 127.0.0.1 (n >= 0):
    127.0.0.2 and up, then 127.0.1.x..."""
    n += 2
    return "127.0.%d.%d" % (n // 250, n % 250 + 1) if n >= 250 \
        else "127.0.0.%d" % n


def unauthorized(a, challenge):
    """a is the 401 of the definitions' kind, with the JSON body that never
    says what was wrong."""
    assert a.status == 401, a
    assert a.json()["error"] == "unauthorized", a
    assert a.headers["WWW-Authenticate"] == challenge, a
    assert a.headers["Content-Type"].startswith("application/json"), a


# ------------------------------------------------------------ credentials


def basic(user, password):
    """An Authorization header value (RFC 7617, UTF-8); the password and the
    encoded credentials are test secrets."""
    register_secret(password)
    cred = base64.b64encode(("%s:%s" % (user, password)).encode()).decode()
    register_secret(cred)
    return "Basic " + cred


def bearer(token):
    register_secret(token)
    return "Bearer " + token


def apikey_digest(key):
    return hashlib.sha256(key.encode()).hexdigest()


def zmqctl_apikey(zmqctl, *args):
    """zmqctl apikey ARGS, run here rather than through the fixture: its
    stdout holds the new key, which the test registers as a secret (the
    fixture would record that output for the scan). (returncode, key or
    None, stdout, stderr)."""
    r = subprocess.run([ZMQCTL, "apikey"] + [str(a) for a in args],
                       env=zmqctl.env, capture_output=True, text=True,
                       timeout=60)
    key = None
    if r.returncode == 0 and "--revoke" not in args:
        key = r.stdout.strip().splitlines()[-1]
        register_secret(key)
        record_output("zmqctl apikey %s" % " ".join(map(str, args)),
                      r.stdout.replace(key, "<the key>") + r.stderr)
    else:
        record_output("zmqctl apikey %s" % " ".join(map(str, args)),
                      r.stdout + r.stderr)
    return r.returncode, key, r.stdout, r.stderr


# -------------------------------------------------------------- keys, JWT


@functools.lru_cache(maxsize=None)
def keys():
    """Key pairs made once per session by python3-cryptography."""
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    return {
        "rsa": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "rsa2": rsa.generate_private_key(public_exponent=65537,
                                         key_size=2048),
        "rsa3": rsa.generate_private_key(public_exponent=65537,
                                         key_size=2048),
        "ec256": ec.generate_private_key(ec.SECP256R1()),
        "ec384": ec.generate_private_key(ec.SECP384R1()),
    }


def public_pem(key):
    from cryptography.hazmat.primitives import serialization
    return key.public_key().public_bytes(
        serialization.Encoding.PEM,
        serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def jwk(key, kid, alg):
    """The public JWK of key, with its kid."""
    import jwt
    if alg.startswith("ES"):
        d = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    else:
        d = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    d.update(kid=kid, use="sig", alg=alg)
    return d


def sign(claims, key, alg, headers=None):
    """A token signed by PyJWT."""
    import jwt
    tok = jwt.encode(claims, key, algorithm=alg, headers=headers)
    return tok if isinstance(tok, str) else tok.decode()


def b64url(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs_sign_raw(header, claims, secret, digest=hashlib.sha256):
    """An HMAC token made by hand: for what PyJWT rightly refuses to make
    (an RSA public key's PEM as an HMAC secret)."""
    signing = "%s.%s" % (b64url(json.dumps(header, separators=(",", ":"))),
                         b64url(json.dumps(claims, separators=(",", ":"))))
    if isinstance(secret, str):
        secret = secret.encode()
    mac = hmac.new(secret, signing.encode(), digest).digest()
    return signing + "." + b64url(mac)


# ------------------------------------------------------------- error log

REFUSED = re.compile(r"\[info\] (\d+)#\d+: \*\d+ zmq: security \"([^\"]+)\" "
                     r"refused the request: (.*?)(?:, client: .*)?$")


def refusals(text):
    """(pid, definition, reason) of each refusal in an error log."""
    out = []
    for line in text.splitlines():
        m = REFUSED.search(line)
        if m:
            out.append((int(m.group(1)), m.group(2), m.group(3)))
    return out


def wait_for(what, timeout=10.0, step=0.02):
    deadline = time.monotonic() + timeout
    while True:
        v = what()
        if v:
            return v
        if time.monotonic() > deadline:
            return v
        time.sleep(step)


def reuseport_listen():
    """A second listener of the server with one socket per worker: the
    kernel spreads new connections over the workers by their source port,
    so that a few requests reach every worker."""
    port = free_port()
    return port, "listen 127.0.0.1:%d reuseport;\n" % port
