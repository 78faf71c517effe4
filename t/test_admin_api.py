"""The admin REST API, read-only slice (issue 12): zmq_admin locations
following a real Redis written by zmqctl, with real RabbitMQ and NGINX.

Lists page like Django's Paginator and match `zmqctl export`; one object by
name; secrets never in any answer (the conftest scan reads every answer of
every test, and the tests check for $sealed/$hash); a viewer may only read
(403), an admin gets 405 for writes (not built yet), no credentials 401;
nginx -t refuses zmq_admin without zmq_security unless zmq_admin_auth off;
status and export documents; a change made with zmqctl shows once the
worker runs it."""

import json
import math

import pytest
import requests

from conftest import amqp_config, register_secret
from security_helpers import zmqctl_apikey
from test_live_config import Live

ADMIN_PW = "admin-Passw0rd-3391"
BROKER_PW = "crm-broker-Secret-5521"
PARTNER_PW = "partner-Secret-8812"
JWT_SECRET = "jwt-secret-of-at-least-32-bytes-for-admin-62"

ADMIN = "location /zmq/admin/ { zmq_admin; zmq_security admins; }\n"
VIEW = "location /zmq/view/ { zmq_admin; zmq_security viewers; }\n"
OPEN = "location /zmq/open/ { zmq_admin; zmq_admin_auth off; }\n"

WRITES = ("POST", "PUT", "PATCH", "DELETE")


def config(rabbitmq, nservices=0):
    """Every kind with a secret: an amqp_def with a password, an outgoing
    basic_auth used by an http_outconn, a jwt secret, a basic_auth and an
    apikey definition for the admin API, and nservices more services."""
    for s in (ADMIN_PW, BROKER_PW, PARTNER_PW, JWT_SECRET):
        register_secret(s)
    d = amqp_config(rabbitmq.port, {"svc": {"routing_key": "q"}}, extra={
        "security": [
            {"name": "admins", "type": "basic_auth", "username": "root",
             "password": ADMIN_PW},
            {"name": "viewers", "type": "apikey", "role": "viewer"},
            {"name": "partner", "type": "basic_auth", "direction": "out",
             "username": "p", "password": PARTNER_PW},
            {"name": "tokens", "type": "jwt", "secret": JWT_SECRET},
        ],
        "http_outconn": [{"name": "hook", "url": "http://127.0.0.1:9/x",
                          "security": "partner"}],
    })
    d["amqp_def"].append({"name": "crm", "host": "127.0.0.1",
                          "password": BROKER_PW})
    for i in range(nservices):
        d["service"].append({"name": "svc.%03d" % i, "kind": "publish",
                             "outconn": "out", "routing_key": "k%d" % i})
    return d


class Admin:
    """A gateway with admin locations, its viewer key and the version it
    runs."""

    def __init__(self, nginx_factory, zmqctl, redis_store, tmp_path,
                 rabbitmq, locations=ADMIN + VIEW, nservices=0):
        self.live = Live(nginx_factory, zmqctl, redis_store, tmp_path,
                         locations, workers=1)
        self.zmqctl = zmqctl
        self.version = self.live.write(config(rabbitmq, nservices))
        rc, self.key, out, err = zmqctl_apikey(zmqctl, "--id", "ops",
                                               "viewers")
        assert rc == 0, (out, err)
        self.version = self.current_store_version()
        self.live.start()
        self.live.wait_version(self.version)
        self.url = self.live.url

    def current_store_version(self):
        return int(self.live.redis.client().get("zmq:version"))

    def export(self):
        return json.loads(self.zmqctl("export", check=0).stdout)

    def get(self, path, auth="admin", **kw):
        return self.call("GET", path, auth, **kw)

    def call(self, method, path, auth="admin", **kw):
        headers = kw.pop("headers", {})
        if auth == "admin":
            kw["auth"] = ("root", ADMIN_PW)
            base = "/zmq/admin/"
        elif auth == "viewer":
            headers["X-API-Key"] = self.key
            base = "/zmq/view/"
        else:
            base = auth
        with requests.Session() as s:
            return s.request(method, self.url + base + path,
                             headers=headers, timeout=10, **kw)


@pytest.fixture
def admin(nginx_factory, zmqctl, redis_store, tmp_path, rabbitmq):
    def make(**kw):
        return Admin(nginx_factory, zmqctl, redis_store, tmp_path, rabbitmq,
                     **kw)
    return make


def no_stored_secret(r, digests=False):
    assert "$sealed" not in r.text and "$hash" not in r.text, r.text
    if not digests:
        assert "sha256" not in r.text, r.text


def json_error(r, status, code):
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["Content-Type"] == "application/json"
    assert r.json()["error"] == code, r.text
    assert r.json()["message"]


# ----------------------------------------------------------------- lists


def test_pages_of_a_list_together_are_zmqctl_exports_objects_in_order(admin):
    gw = admin(nservices=12)
    want = gw.export()["service"]
    assert len(want) == 13
    pages = math.ceil(13 / 5)
    got = []
    for n in range(1, pages + 1):
        r = gw.get("api/service", params={"page": n, "page_size": 5})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["page"] == {"number": n, "size": 5, "count": 13,
                                "num_pages": pages}
        assert body["version"] == gw.version
        got.extend(body["data"])
    assert got == want
    assert [o["name"] for o in got] == sorted(o["name"] for o in got)


def test_a_list_is_50_a_page_by_default_and_1000_at_most(admin):
    gw = admin(nservices=59)
    r = gw.get("api/service")
    assert r.status_code == 200, r.text
    assert len(r.json()["data"]) == 50
    assert r.json()["page"] == {"number": 1, "size": 50, "count": 60,
                                "num_pages": 2}
    assert len(gw.get("api/service", params={"page": 2}).json()["data"]) \
        == 10
    r = gw.get("api/service", params={"page_size": 1000})
    assert len(r.json()["data"]) == 60
    json_error(gw.get("api/service", params={"page_size": 1001}), 400,
               "bad_request")
    json_error(gw.get("api/service", params={"page_size": 0}), 400,
               "bad_request")


def django_page(count, size, number):
    """Django's Paginator (allow_empty_first_page): (items on the page,
    num_pages), or None for EmptyPage. Django is not installed here."""
    pages = max(1, math.ceil(count / size))
    if number < 1 or number > pages:
        return None
    return min(size, count - (number - 1) * size), pages


def test_pages_past_the_end_are_404_except_the_first_of_nothing(admin):
    gw = admin(nservices=3)                 # 4 services, no startup
    for kind, count in (("service", 4), ("startup", 0)):
        for n in range(0, 5):
            r = gw.get("api/" + kind, params={"page": n, "page_size": 3})
            want = django_page(count, 3, n)
            if want is None:
                json_error(r, 404, "not_found")
                continue
            assert r.status_code == 200, (kind, n, r.text)
            assert len(r.json()["data"]) == want[0]
            assert r.json()["page"] == {"number": n, "size": 3,
                                        "count": count, "num_pages": want[1]}
    json_error(gw.get("api/service", params={"page": "two"}), 400,
               "bad_request")
    json_error(gw.get("api/service", params={"page": "-1"}), 400,
               "bad_request")


def test_q_lists_the_names_that_contain_it_ignoring_case(admin):
    gw = admin(nservices=12)
    r = gw.get("api/service", params={"q": "SVC.00"})
    assert [o["name"] for o in r.json()["data"]] == \
        ["svc.%03d" % i for i in range(10)]
    assert r.json()["page"]["count"] == 10
    r = gw.get("api/service", params={"q": "nothing-like-it"})
    assert r.status_code == 200
    assert r.json()["data"] == [] and r.json()["page"]["num_pages"] == 1


# ------------------------------------------------------- objects, secrets


def test_one_object_by_name_is_its_export(admin):
    gw = admin()
    want = {o["name"]: o for o in gw.export()["amqp_outconn"]}["out"]
    r = gw.get("api/amqp_outconn/out")
    assert r.status_code == 200, r.text
    assert r.json() == want
    json_error(gw.get("api/amqp_outconn/missing"), 404, "not_found")
    assert "missing" in gw.get("api/amqp_outconn/missing").json()["message"]


def test_a_set_secret_reads_as_set_and_is_never_returned(admin):
    gw = admin()
    exp = gw.export()
    for kind, name, field in (("amqp_def", "crm", "password"),
                              ("amqp_def", "rabbit", "password"),
                              ("security", "admins", "password"),
                              ("security", "partner", "password"),
                              ("security", "tokens", "secret")):
        r = gw.get("api/%s/%s" % (kind, name))
        assert r.status_code == 200, r.text
        assert r.json()[field] == {"$set": True}, r.text
        no_stored_secret(r)
        # otherwise what zmqctl export shows
        want = {o["name"]: o for o in exp[kind]}[name]
        got = dict(r.json())
        del got[field]
        assert got == want
    # lists too
    for kind in ("amqp_def", "security", "http_outconn"):
        r = gw.get("api/" + kind)
        assert r.status_code == 200
        no_stored_secret(r)
    # an apikey definition shows its keys' ids, not their digests
    r = gw.get("api/security/viewers")
    assert r.json()["keys"] == [{"id": "ops"}]
    assert r.json()["role"] == "viewer"
    assert gw.get("api/security/admins").json()["role"] == "admin"


# ------------------------------------------------------------ who may do what


def test_a_viewer_reads_and_gets_403_for_anything_else(admin):
    gw = admin()
    r = gw.get("api/service", auth="viewer")
    assert r.status_code == 200 and r.json()["page"]["count"] == 1
    assert gw.call("HEAD", "api/service", auth="viewer").status_code == 200
    for m in WRITES:
        for path in ("api/service", "api/service/svc", "api/nothing"):
            json_error(gw.call(m, path, auth="viewer", json={"name": "x"}),
                       403, "forbidden")


def test_a_method_a_path_does_not_serve_is_405_with_allow(admin):
    gw = admin()
    cases = [("PUT", "api/service", "GET, HEAD, POST"),
             ("DELETE", "api/service", "GET, HEAD, POST"),
             ("POST", "api/service/svc", "GET, HEAD, PUT, PATCH, DELETE"),
             ("PUT", "api/export", "GET, HEAD"),
             ("POST", "api/status", "GET, HEAD"),
             ("DELETE", "api/openapi.json", "GET, HEAD"),
             ("GET", "api/import", "POST"),
             ("GET", "api/amqp_def/d/ping", "POST"),
             ("PUT", "api/service/svc/invoke", "POST"),
             ("POST", "api/security/admins/keys/k1", "DELETE")]
    for m, path, allow in cases:
        r = gw.call(m, path, json={"name": "x"})
        json_error(r, 405, "method_not_allowed")
        assert r.headers["Allow"] == allow, (m, path)
    # operations a kind does not have, and paths too deep, are 404
    for m, path in (("POST", "api/service/svc/ping"),
                    ("POST", "api/amqp_def/d/send"),
                    ("DELETE", "api/amqp_def/d/keys/k1"),
                    ("GET", "api/service/svc/a/b/c")):
        json_error(gw.call(m, path), 404, "not_found")
    # nothing changed
    assert gw.current_store_version() == gw.version


def test_without_or_with_wrong_credentials_401(admin):
    gw = admin()
    for m in ("GET",) + WRITES:
        r = gw.call(m, "api/service", auth="/zmq/admin/")
        json_error(r, 401, "unauthorized")
        assert r.headers["WWW-Authenticate"].startswith("Basic")
        json_error(gw.call(m, "api/service", auth="/zmq/view/"), 401,
                   "unauthorized")
    r = gw.call("GET", "api/service", auth="/zmq/admin/",
                headers={"Authorization": "Basic cm9vdDp3cm9uZw=="})
    json_error(r, 401, "unauthorized")


def test_nginx_t_refuses_zmq_admin_without_zmq_security(nginx_factory,
                                                         zmqctl, redis_store,
                                                         tmp_path):
    bare = Live(nginx_factory, zmqctl, redis_store, tmp_path,
                "location /zmq/admin/ { zmq_admin; }\n")
    rc, out = bare.ngx.test_config()
    assert rc != 0
    assert 'zmq_admin in location "/zmq/admin/" has no zmq_security' in out
    assert "zmq_admin_auth off" in out

    inherited = Live(nginx_factory, zmqctl, redis_store, tmp_path,
                     "location /zmq/ { zmq_security admins;\n"
                     "  location /zmq/admin/ { zmq_admin; } }\n")
    rc, out = inherited.ngx.test_config()
    assert rc == 0, out

    off = Live(nginx_factory, zmqctl, redis_store, tmp_path, OPEN)
    rc, out = off.ngx.test_config()
    assert rc == 0, out
    assert "anyone who reaches it is an admin" in out


def test_zmq_admin_auth_off_serves_anyone_as_admin(admin):
    gw = admin(locations=ADMIN + VIEW + OPEN)
    r = gw.get("api/service", auth="/zmq/open/")
    assert r.status_code == 200 and r.json()["page"]["count"] == 1
    # an admin: the write is taken (and refused for its empty body)
    json_error(gw.call("POST", "api/service", auth="/zmq/open/"), 400,
               "bad_json")


# ------------------------------------------------ documents, paths, live


def test_export_is_zmqctl_export_and_status_is_zmq_status(admin):
    gw = admin()
    r = gw.get("api/export")
    assert r.status_code == 200, r.text
    assert r.json() == gw.export()
    # as zmqctl export: API keys' digests (not secrets) so that it imports
    # back without losing them
    no_stored_secret(r, digests=True)
    st = gw.get("api/status").json()
    assert st["module"] == "ngx_zmq"
    assert [w["config_version"] for w in st["workers"]] == [gw.version]
    assert st.keys() == gw.live.status().keys()
    # a viewer reads them too
    assert gw.get("api/export", auth="viewer").json() == r.json()


@pytest.mark.parametrize("path", [
    "api/nothing", "api/nothing/x", "api/service/svc/x", "api/service/",
    "api", "api/", "", "other", "api/status/x", "api/export/x",
    "api/service/bad%20name"])
def test_an_unknown_path_or_kind_is_404_json(admin, path):
    gw = admin()
    json_error(gw.get(path), 404, "not_found")
    json_error(gw.get(path, auth="viewer"), 404, "not_found")


def test_a_change_made_with_zmqctl_shows_once_the_worker_runs_it(admin,
                                                                   rabbitmq):
    gw = admin()
    doc = config(rabbitmq)
    doc["service"].append({"name": "added", "kind": "publish",
                           "outconn": "out", "routing_key": "new"})
    v = gw.live.write(doc, replace=False)
    assert v > gw.version
    gw.live.wait_version(v)
    r = gw.get("api/service")
    assert r.json()["version"] == v
    assert [o["name"] for o in r.json()["data"]] == ["added", "svc"]
    assert gw.get("api/service/added").json()["routing_key"] == "new"


def test_whoami_names_the_role_and_the_principal(admin):
    gw = admin(locations=ADMIN + VIEW + OPEN)
    assert gw.get("api/whoami").json() == {"role": "admin",
                                           "principal": "admins:root"}
    assert gw.get("api/whoami", auth="viewer").json() == {
        "role": "viewer", "principal": "viewers:ops"}
    assert gw.get("api/whoami", auth="/zmq/open/").json() == {
        "role": "admin", "principal": None}
    json_error(gw.call("GET", "api/whoami", auth="/zmq/admin/"), 401,
               "unauthorized")


def test_writes_from_another_sites_page_are_refused(admin):
    """A browser that answered the API's Basic challenge sends those
    credentials with any site's form: the Origin (or Sec-Fetch-Site) a
    browser adds tells the API the request is not from its own pages."""
    gw = admin()
    v0 = gw.current_store_version()
    host = gw.url.split("//", 1)[1]
    body = {"name": "csrf", "host": "127.0.0.1"}
    for headers in ({"Origin": "http://evil.example"},
                    {"Origin": "null"},
                    {"Origin": "http://%s.evil.example" % host},
                    {"Sec-Fetch-Site": "cross-site"},
                    {"Sec-Fetch-Site": "same-site",
                     "Origin": "http://%s" % host}):
        r = gw.call("POST", "api/amqp_def", json=body, headers=headers)
        json_error(r, 403, "cross_site")
    assert gw.current_store_version() == v0
    # reads are not refused; the API's own pages (same origin) may write
    assert gw.get("api/amqp_def", headers={
        "Origin": "http://evil.example"}).status_code == 200
    r = gw.call("POST", "api/amqp_def", json=body, headers={
        "Origin": "http://%s" % host, "Sec-Fetch-Site": "same-origin"})
    assert r.status_code == 201, r.text
