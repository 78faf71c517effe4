"""The admin ping of a definition (POST api/amqp_def/NAME/ping and
api/stomp_def/NAME/ping) when it cannot even start its probe: the answer
is 200 {"ok": false, "error": ...} naming the kind, the definition and
what is wrong, the same for both protocols: a host NGINX did not resolve
when it read its configuration (names are never resolved in a worker), a
TLS CA file that cannot be read, a sealed password / passcode with no
zmq_key_file, and one sealed with another key. Nothing is connected to.
"""

import json
import time

import pytest
import requests

from conftest import Zmqctl, free_port, register_secret
from test_live_config import STATUS

ADMIN_PW = "admin-Passw0rd-pingdef-3391"
SECRET = "the-broker-secret-7720"

LOCATIONS = "location /zmq/admin/ { zmq_admin; zmq_security admins; }\n"

KINDS = (("amqp_def", "password"), ("stomp_def", "passcode"))


def defs(port, ca_file):
    doc = {"security": [{"name": "admins", "type": "basic_auth",
                         "username": "root", "password": ADMIN_PW}]}
    for kind, field in KINDS:
        base = {"host": "127.0.0.1", "port": port}
        doc[kind] = [
            dict(base, name="unresolved", host="unresolved.invalid"),
            dict(base, name="badca", tls=True, ca_file=ca_file),
            dict(base, name="secret", **{field: SECRET}),
        ]
    return doc


class Gw:
    """NGINX following a Redis; key_file: its zmq_key_file, or none."""

    def __init__(self, nginx_factory, zmqctl, redis_store, tmp_path,
                 key_file):
        register_secret(ADMIN_PW)
        register_secret(SECRET)
        self.closed = free_port()
        self.ca_file = str(tmp_path / "no-such-ca.pem")
        p = tmp_path / "defs.json"
        p.write_text(json.dumps(defs(self.closed, self.ca_file)))
        out = zmqctl("import", "--replace", p, check=0).stdout
        version = int(out.rsplit("version", 1)[1])
        http = "zmq_config redis://127.0.0.1:%d/0;\n" % redis_store.port
        if key_file is not None:
            http = "zmq_key_file %s;\n%s" % (key_file, http)
        self.ngx = nginx_factory(http=http, server=STATUS + LOCATIONS,
                                 workers=1)
        self.ngx.start()
        self.url = self.ngx.url
        # the worker answers once it runs that configuration
        deadline = time.monotonic() + 10
        while [w["config_version"] for w in requests.get(
                self.url + "/zmq/status", timeout=5).json()["workers"]] \
                != [version]:
            assert time.monotonic() < deadline, "the configuration is late"
            time.sleep(0.05)

    def ping(self, kind, name):
        r = requests.post("%s/zmq/admin/api/%s/%s/ping"
                          % (self.url, kind, name),
                          auth=("root", ADMIN_PW), timeout=15)
        assert r.status_code == 200, r.text
        assert r.headers["Content-Type"] == "application/json"
        body = r.json()
        assert body["ok"] is False, body
        assert isinstance(body["ms"], float), body
        return body["error"]


@pytest.fixture
def gw(nginx_factory, zmqctl, redis_store, tmp_path):
    return Gw(nginx_factory, zmqctl, redis_store, tmp_path,
              zmqctl.env["ZMQ_KEY_FILE"])


@pytest.mark.parametrize("kind, field", KINDS)
def test_a_host_not_resolved_at_startup_is_named_and_never_resolved(
        gw, kind, field):
    assert gw.ping(kind, "unresolved") == (
        "%s 'unresolved': host 'unresolved.invalid' was not resolved when "
        "NGINX read its configuration, and names are never resolved in a "
        "worker (it would block): use an IP address, or reload NGINX" % kind)


@pytest.mark.parametrize("kind, field", KINDS)
def test_a_ca_file_that_cannot_be_read_is_named(gw, kind, field):
    assert gw.ping(kind, "badca") == (
        "%s 'badca': TLS: ca_file \"%s\": No such file or directory"
        % (kind, gw.ca_file))


@pytest.mark.parametrize("kind, field", KINDS)
def test_a_sealed_secret_without_a_key_file_is_named(
        nginx_factory, zmqctl, redis_store, tmp_path, kind, field):
    g = Gw(nginx_factory, zmqctl, redis_store, tmp_path, None)
    assert g.ping(kind, "secret") == (
        "%s 'secret': the %s is sealed and no zmq_key_file is set"
        % (kind, field))


@pytest.mark.parametrize("kind, field", KINDS)
def test_a_secret_sealed_with_another_key_does_not_open(
        nginx_factory, zmqctl, redis_store, tmp_path, kind, field):
    other = tmp_path / "other.key"
    Zmqctl(redis_store.url, str(other))("keygen", check=0)
    g = Gw(nginx_factory, zmqctl, redis_store, tmp_path, str(other))
    assert g.ping(kind, "secret").startswith(
        "%s 'secret': the %s does not open: " % (kind, field))
