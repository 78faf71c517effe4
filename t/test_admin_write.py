"""The admin REST API's writes (issue 12): create, replace, merge-patch and
delete objects with ETag/If-Match, cascade deletes, import, password
changes and API keys, against a real Redis (checked with zmqctl export and
redis-py), RabbitMQ and NGINX.

Every refusal leaves the store's version where it was; every write is in
the audit log without its secret; the conftest scan checks that no answer
holds a registered secret."""

import os
import threading

import pytest
import requests

from conftest import register_secret
from test_admin_api import ADMIN, ADMIN_PW, VIEW, Admin, json_error


NEW_PW = "new-admin-Passw0rd-7781"
DEF_PW = "made-def-Secret-6620"


@pytest.fixture
def admin(nginx_factory, zmqctl, redis_store, tmp_path, rabbitmq):
    for s in (NEW_PW, DEF_PW):
        register_secret(s)

    def make(**kw):
        return Admin(nginx_factory, zmqctl, redis_store, tmp_path, rabbitmq,
                     **kw)
    return make


def etag(r):
    return r.headers["ETag"]


def store_object(gw, kind, name):
    for o in gw.export().get(kind, []):
        if o["name"] == name:
            return o
    return None


def audit(gw):
    text = ""
    for path in gw.live.ngx.logs:
        if os.path.exists(path):
            with open(path, errors="replace") as f:
                text += f.read()
    return [line for line in text.splitlines() if "zmq admin:" in line]


# ----------------------------------------------------------------- objects


def test_create_read_replace_patch_delete_round_trip_with_zmqctl(admin):
    gw = admin()
    v0 = gw.current_store_version()

    obj = {"name": "made", "host": "127.0.0.1", "port": 5673,
           "vhost": "/v", "username": "u", "password": DEF_PW}
    r = gw.call("POST", "api/amqp_def?wait=1", json=obj)
    assert r.status_code == 201, r.text
    doc = r.json()
    assert doc["version"] == v0 + 1 and doc["changes"] == 1
    assert doc["applied"] is True
    assert doc["data"]["password"] == {"$set": True}
    assert doc["data"]["port"] == 5673
    assert etag(r) == '"%d"' % (v0 + 1)
    assert store_object(gw, "amqp_def", "made")["port"] == 5673

    # the worker runs it already (wait=1): a GET shows it, same ETag
    g = gw.get("api/amqp_def/made")
    assert g.status_code == 200 and etag(g) == etag(r)
    assert g.json()["vhost"] == "/v"

    # POST again: 409 exists, nothing written
    json_error(gw.call("POST", "api/amqp_def", json=obj), 409, "exists")
    assert gw.current_store_version() == v0 + 1

    # PUT replaces: fields left out take their defaults, the password kept
    r = gw.call("PUT", "api/amqp_def/made?wait=1",
                json={"host": "127.0.0.2", "password": {"$set": True}},
                headers={"If-Match": etag(g)})
    assert r.status_code == 200, r.text
    assert r.json()["data"]["port"] == 5672
    assert r.json()["data"]["password"] == {"$set": True}
    stored = store_object(gw, "amqp_def", "made")
    assert stored["host"] == "127.0.0.2" and stored["port"] == 5672
    redis = gw.live.redis.client()
    assert b"$sealed" in redis.get("zmq:obj:amqp_def:made")

    # PATCH merges (RFC 7396): null removes, the rest stays
    r = gw.call("PATCH", "api/amqp_def/made",
                json={"port": 5999, "vhost": None},
                headers={"If-Match": etag(r)})
    assert r.status_code == 200, r.text
    stored = store_object(gw, "amqp_def", "made")
    assert stored["port"] == 5999 and stored["host"] == "127.0.0.2"
    assert stored.get("vhost", "/") == "/"
    assert r.json()["data"]["password"] == {"$set": True}

    # PUT of a new name creates (201)
    r = gw.call("PUT", "api/amqp_def/made2", json={"host": "h.example"})
    assert r.status_code == 201, r.text
    # created without a password: it has an unusable random one
    assert r.json()["data"]["password"] == {"$set": True}

    # DELETE
    r = gw.call("DELETE", "api/amqp_def/made")
    assert r.status_code == 200, r.text
    assert r.json()["deleted"] == [{"kind": "amqp_def", "name": "made"}]
    assert store_object(gw, "amqp_def", "made") is None
    json_error(gw.call("DELETE", "api/amqp_def/made"), 404, "not_found")
    json_error(gw.call("PATCH", "api/amqp_def/made", json={}), 404,
               "not_found")

    # the audit log has each write: principal, operation, kind, name,
    # version; never a secret
    lines = audit(gw)
    ops = [(l.split("zmq admin: ")[1].split(" ")[1]) for l in lines]
    assert ops == ["create", "replace", "patch", "replace", "delete"], lines
    assert all("admins:root" in l for l in lines), lines
    assert "version %d" % (v0 + 1) in lines[0]
    assert not any(DEF_PW in l for l in lines)


def test_an_invalid_object_lists_every_error_and_changes_nothing(admin):
    gw = admin()
    v0 = gw.current_store_version()
    r = gw.call("POST", "api/amqp_def",
                json={"name": "bad", "port": 99999, "bogus": 1, "host": 5})
    json_error(r, 400, "invalid")
    errors = r.json()["errors"]
    assert len(errors) == 3, errors
    assert {e["field"] for e in errors} == {"port", "bogus", "host"}
    assert all(e["kind"] == "amqp_def" and e["name"] == "bad"
               for e in errors)
    assert all(e["message"] for e in errors)

    # a reference to nothing
    r = gw.call("POST", "api/service",
                json={"name": "s2", "kind": "publish", "outconn": "nope"})
    json_error(r, 400, "invalid")
    assert r.json()["errors"][0]["field"] == "outconn"

    # no name, a name that differs from the path's, not JSON, not an object
    json_error(gw.call("POST", "api/service", json={"kind": "publish"}),
               400, "invalid")
    json_error(gw.call("PUT", "api/service/svc", json={"name": "other"}),
               400, "invalid")
    json_error(gw.call("PUT", "api/service/svc", data=b"{nope"), 400,
               "bad_json")
    json_error(gw.call("PUT", "api/service/svc", json=[1]), 400, "bad_json")
    json_error(gw.call("POST", "api/service", data=b"{\"a\":1,\"a\":2}"),
               400, "bad_json")
    assert gw.current_store_version() == v0


def test_if_match_two_concurrent_patches_exactly_one_wins(admin):
    gw = admin()
    g = gw.get("api/service/svc")
    tag = etag(g)
    results = []
    start = threading.Barrier(2)

    def patch(key):
        start.wait()
        r = gw.call("PATCH", "api/service/svc", json={"routing_key": key},
                    headers={"If-Match": tag})
        results.append((r.status_code, r.json(), key))

    threads = [threading.Thread(target=patch, args=(k,))
               for k in ("first", "second")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    codes = sorted(c for c, _, _ in results)
    assert codes == [200, 412], results
    winner = [k for c, _, k in results if c == 200][0]
    loser = [d for c, d, _ in results if c == 412][0]
    assert loser["error"] == "precondition_failed"
    assert store_object(gw, "service", "svc")["routing_key"] == winner


def test_if_match_stale_star_and_malformed(admin):
    gw = admin()
    v0 = gw.current_store_version()
    tag = etag(gw.get("api/service/svc"))
    r = gw.call("PATCH", "api/service/svc", json={"routing_key": "a"},
                headers={"If-Match": tag})
    assert r.status_code == 200, r.text
    # the old ETag no longer matches: 412 with the current one
    r = gw.call("DELETE", "api/service/svc", headers={"If-Match": tag})
    json_error(r, 412, "precondition_failed")
    assert r.json()["etag"] == '"%d"' % (v0 + 1)
    # * matches any existing object, not a missing one
    json_error(gw.call("PUT", "api/service/nosuch", json={
        "kind": "publish", "outconn": "out"}, headers={"If-Match": "*"}),
        412, "precondition_failed")
    for bad in ('W/"%d"' % (v0 + 1), "12", '"x"', '""'):
        json_error(gw.call("PATCH", "api/service/svc", json={},
                           headers={"If-Match": bad}),
                   412, "precondition_failed")
    r = gw.call("PATCH", "api/service/svc", json={"routing_key": "b"},
                headers={"If-Match": "*"})
    assert r.status_code == 200, r.text
    assert gw.current_store_version() == v0 + 2


def test_delete_in_use_is_409_then_cascade_deletes_the_referrers(admin):
    gw = admin()
    v0 = gw.current_store_version()
    exported = gw.export()
    outconns = [o["name"] for o in exported["amqp_outconn"]
                if o["def"] == "rabbit"]
    assert outconns, exported
    r = gw.call("DELETE", "api/amqp_def/rabbit")
    json_error(r, 409, "in_use")
    refs = r.json()["referrers"]
    assert {"kind": "amqp_outconn", "name": outconns[0]} in refs
    assert gw.current_store_version() == v0

    r = gw.call("DELETE", "api/amqp_def/rabbit?cascade=true")
    assert r.status_code == 200, r.text
    deleted = r.json()["deleted"]
    assert deleted[0] == {"kind": "amqp_def", "name": "rabbit"}
    after = gw.export()
    assert not any(o["def"] == "rabbit" for o in after.get("amqp_outconn",
                                                            []))
    # the services of those outconns went too, and nothing dangles
    assert not any(s.get("outconn") in outconns
                   for s in after.get("service", []))
    assert {"kind": "service", "name": "svc"} in deleted
    # what is left is a whole configuration zmqctl accepts
    path = gw.live.tmp / "after.json"
    path.write_text(gw.get("api/export").text)
    rc = gw.zmqctl("import", "--check", path, check=0)
    assert rc.returncode == 0, rc.stderr


# -------------------------------------------------------- import, export


def test_import_check_then_import_then_replace(admin):
    gw = admin()
    v0 = gw.current_store_version()
    doc = gw.get("api/export").json()
    doc["service"].append({"name": "added", "kind": "publish",
                           "outconn": "out", "routing_key": "a"})

    r = gw.call("POST", "api/import?check=1", json=doc)
    assert r.status_code == 200, r.text
    assert r.json()["check"] is True and r.json()["changes"] == 1
    assert gw.current_store_version() == v0

    r = gw.call("POST", "api/import", json=doc)
    assert r.status_code == 200, r.text
    assert r.json()["changes"] == 1 and r.json()["version"] == v0 + 1
    assert store_object(gw, "service", "added")["routing_key"] == "a"
    # secrets left out of the document keep their stored values: the
    # admin still logs in
    assert gw.get("api/service/added").status_code == 200

    # an invalid document: every error, nothing written
    bad = {"service": [{"name": "x", "kind": "publish", "outconn": "no"}],
           "amqp_def": [{"name": "d", "port": 0}]}
    r = gw.call("POST", "api/import", json=bad)
    json_error(r, 400, "invalid")
    assert len(r.json()["errors"]) == 2, r.json()
    assert gw.current_store_version() == v0 + 1

    # replace: what the document lacks is deleted
    doc["service"] = [s for s in doc["service"] if s["name"] != "added"]
    r = gw.call("POST", "api/import?replace=1", json=doc)
    assert r.status_code == 200, r.text
    assert store_object(gw, "service", "added") is None


# ------------------------------------------------- passwords and API keys


def test_password_change_applies_live(admin):
    gw = admin()
    v0 = gw.current_store_version()
    for body, why in (({"password1": "a", "password2": "b"}, "differ"),
                      ({"password1": "", "password2": ""}, "empty"),
                      ({"password1": "a"}, "missing"),
                      ({"password1": "a", "password2": "a", "x": 1}, "x")):
        json_error(gw.call("POST", "api/security/admins/password",
                           json=body), 400, "invalid")
    # an http_outconn has no secret of its own; a viewer key is made
    json_error(gw.call("POST", "api/http_outconn/hook/password",
                       json={"password1": "a", "password2": "a"}),
               400, "no_secret")
    json_error(gw.call("POST", "api/security/viewers/password",
                       json={"password1": "a", "password2": "a"}),
               400, "no_secret")
    json_error(gw.call("POST", "api/amqp_def/nosuch/password",
                       json={"password1": "a", "password2": "a"}),
               404, "not_found")
    assert gw.current_store_version() == v0

    r = gw.call("POST", "api/security/admins/password?wait=1",
                json={"password1": NEW_PW, "password2": NEW_PW})
    assert r.status_code == 200, r.text
    assert r.json()["applied"] is True
    assert NEW_PW not in r.text

    # the old password no longer passes, the new one does
    old = requests.get(gw.url + "/zmq/admin/api/service",
                       auth=("root", ADMIN_PW), timeout=5)
    json_error(old, 401, "unauthorized")
    new = requests.get(gw.url + "/zmq/admin/api/service",
                       auth=("root", NEW_PW), timeout=5)
    assert new.status_code == 200, new.text
    # stored hashed, never in clear
    assert NEW_PW.encode() not in gw.live.redis.client().get(
        "zmq:obj:security:admins")

    # an amqp_def's password is sealed
    r = requests.post(gw.url + "/zmq/admin/api/amqp_def/crm/password",
                      auth=("root", NEW_PW), timeout=5,
                      json={"password1": DEF_PW, "password2": DEF_PW})
    assert r.status_code == 200, r.text
    raw = gw.live.redis.client().get("zmq:obj:amqp_def:crm")
    assert DEF_PW.encode() not in raw and b"$sealed" in raw


def test_api_keys_are_made_shown_once_and_revoked(admin):
    gw = admin(locations=ADMIN + VIEW)
    r = gw.call("POST", "api/security/viewers/keys?wait=1",
                json={"id": "ci"})
    assert r.status_code == 201, r.text
    key = r.json()["key"]
    assert r.json()["id"] == "ci" and len(key) == 43
    # (not registered as a secret: this answer is the one that shows it)

    def view(k):
        return requests.get(gw.url + "/zmq/view/api/service",
                            headers={"X-API-Key": k}, timeout=5)

    assert view(key).status_code == 200
    # only its digest is stored; a GET shows ids only
    assert key.encode() not in gw.live.redis.client().get(
        "zmq:obj:security:viewers")
    shown = gw.get("api/security/viewers").json()
    assert {"id": "ci"} in shown["keys"] and "sha256" not in str(shown)

    # sending the shown object back keeps the keys' digests
    r = gw.call("PUT", "api/security/viewers?wait=1", json=shown)
    assert r.status_code == 200, r.text
    assert view(key).status_code == 200

    # same id again: 409; no body: the next free kN
    json_error(gw.call("POST", "api/security/viewers/keys",
                       json={"id": "ci"}), 409, "exists")
    r = gw.call("POST", "api/security/viewers/keys")
    assert r.status_code == 201 and r.json()["id"].startswith("k"), r.text

    r = gw.call("DELETE", "api/security/viewers/keys/ci?wait=1")
    assert r.status_code == 200, r.text
    json_error(view(key), 401, "unauthorized")
    json_error(gw.call("DELETE", "api/security/viewers/keys/ci"), 404,
               "not_found")
    json_error(gw.call("POST", "api/security/admins/keys"), 400,
               "not_apikey")


# ----------------------------------------------------- who may, and load


def test_a_viewer_cannot_write_and_nothing_changes(admin):
    gw = admin()
    v0 = gw.current_store_version()
    for m, path in (("POST", "api/service"), ("PUT", "api/service/svc"),
                    ("PATCH", "api/service/svc"),
                    ("DELETE", "api/service/svc"), ("POST", "api/import"),
                    ("POST", "api/security/admins/password")):
        json_error(gw.call(m, path, auth="viewer", json={}), 403,
                   "forbidden")
    assert gw.current_store_version() == v0


def test_redis_gone_is_503_and_the_worker_survives(admin, redis_store):
    gw = admin()
    redis_store.stop()
    try:
        r = gw.call("PATCH", "api/service/svc", json={"routing_key": "z"})
        json_error(r, 503, "redis_unavailable")
        # reads still come from what the worker runs
        assert gw.get("api/service/svc").status_code == 200
    finally:
        redis_store.start()


def test_a_burst_of_writes_does_not_disturb_publishing(admin, rabbitmq):
    gw = admin(locations=ADMIN + VIEW + "location /pub { zmq_service svc; }\n")
    errors = []
    stop = threading.Event()

    def publish():
        with requests.Session() as s:
            while not stop.is_set():
                r = s.post(gw.url + "/pub", data=b"m", timeout=10)
                if r.status_code != 202:
                    errors.append((r.status_code, r.text))

    t = threading.Thread(target=publish)
    t.start()
    try:
        for i in range(40):
            r = gw.call("PUT", "api/service/extra%d" % (i % 5),
                        json={"kind": "publish", "outconn": "out",
                              "routing_key": "r%d" % i})
            assert r.status_code in (200, 201), r.text
    finally:
        stop.set()
        t.join()
    assert errors == []


def test_the_audit_line_names_a_token_subject_on_one_line(admin):
    import time

    from security_helpers import sign
    from test_admin_api import JWT_SECRET
    gw = admin(locations=ADMIN + VIEW
               + "location /zmq/jwt/ { zmq_admin; zmq_security tokens; }\n")
    v0 = gw.current_store_version()

    def patch(sub):
        tok = sign({"sub": sub, "exp": int(time.time()) + 300}, JWT_SECRET,
                   "HS256")
        return gw.call("PATCH", "api/service/svc", auth="/zmq/jwt/",
                       headers={"Authorization": "Bearer " + tok},
                       json={"routing_key": sub[:8].strip()})

    # a subject that would split the log line is refused before the API
    json_error(patch("evil\nzmq admin: forged create service 'x'"), 401,
               "unauthorized")
    assert audit(gw) == [] and gw.current_store_version() == v0
    r = patch("deploy-bot@ci")
    assert r.status_code == 200, r.text
    lines = audit(gw)
    assert len(lines) == 1 and "tokens:deploy-bot@ci patch service 'svc'" \
        in lines[0], lines


def test_a_new_definitions_password_is_unusable_until_changed(admin,
                                                               rabbitmq):
    gw = admin()
    r = gw.call("POST", "api/amqp_def?wait=1", json={
        "name": "fresh", "host": "127.0.0.1", "port": rabbitmq.port,
        "username": "guest"})
    assert r.status_code == 201, r.text
    # created without a password: a random one nobody knows
    ping = gw.call("POST", "api/amqp_def/fresh/ping").json()
    assert ping["ok"] is False and "ACCESS_REFUSED" in ping["error"], ping

    r = gw.call("POST", "api/amqp_def/fresh/password?wait=1",
                json={"password1": "guest", "password2": "guest"})
    assert r.status_code == 200, r.text
    ping = gw.call("POST", "api/amqp_def/fresh/ping").json()
    assert ping["ok"] is True and ping["server"]["product"] == "RabbitMQ", \
        ping
