"""The STOMP configuration model (issue 16): stomp_def, stomp_outconn and
stomp_channel, and publish services that name a stomp_outconn, through
zmqctl (import, export, list, get, delete, passwd: the passcode sealed,
never printed), the admin API (read, write, the passcode's password
operation, in-use refusals and cascades) and, until STOMP publishing is
built, the guards: a STOMP publish answers 501 in the gateway, which keeps
serving, and zmqd checks such a configuration and fails the call with a
clear error. Real Redis, RabbitMQ and NGINX."""

import json
import os
import subprocess

import requests

from conftest import BUILD, register_secret
from test_admin_api import (Admin, ADMIN, ADMIN_PW, json_error,
                            no_stored_secret)

ZMQD = os.path.join(BUILD, "zmqd")

PASSCODE = "stomp-Passc0de-7731"
NEW_PASSCODE = "stomp-Passc0de-new-4409"

ROUTER = "location /api/ { zmq_router; }\n" \
         "location = /spub { zmq_service spub; }\n"

STOMP = {
    "stomp_def": [{"name": "amq", "host": "127.0.0.1", "port": 61613,
                   "hosts": ["127.0.0.1:61614"], "virtual_host": "/",
                   "login": "admin", "passcode": PASSCODE,
                   "heartbeat": 5, "use_jms": True}],
    "stomp_outconn": [{"name": "amq.out", "def": "amq", "priority": 4,
                       "expires": 60000, "content_type": "application/json"}],
    "stomp_channel": [{"name": "orders", "def": "amq",
                       "destination": "/queue/orders", "service": "sink",
                       "prefetch": 20, "retry": {"attempts": 2}}],
}

SERVICES = [
    {"name": "sink", "kind": "redis", "key": "stomp.sink"},
    {"name": "spub", "kind": "publish", "stomp_outconn": "amq.out",
     "destination": "/queue/orders.{id}"},
]


def stomp_doc(extra_services=()):
    register_secret(PASSCODE)
    register_secret(NEW_PASSCODE)
    doc = json.loads(json.dumps(STOMP))
    doc["service"] = [dict(s) for s in SERVICES] + list(extra_services)
    return doc


def stored(redis_store, kind, name):
    text = redis_store.client().get("zmq:obj:%s:%s" % (kind, name))
    return json.loads(text) if text is not None else None


def outputs_hold_no_passcode(*results):
    for r in results:
        for text in (r.stdout, r.stderr):
            assert PASSCODE not in text and NEW_PASSCODE not in text


# ------------------------------------------------------------------ zmqctl


def test_import_export_round_trip_seals_the_passcode(zmqctl, redis_store,
                                                     write_json):
    path = write_json("stomp.json", stomp_doc())
    imp = zmqctl("import", path, check=0)

    sealed = stored(redis_store, "stomp_def", "amq")["passcode"]
    assert set(sealed) == {"$sealed"}
    assert PASSCODE not in json.dumps(sealed)

    exp = zmqctl("export", check=0)
    doc = json.loads(exp.stdout)
    [d] = doc["stomp_def"]
    assert "passcode" not in d
    assert d["port"] == 61613 and d["heartbeat"] == 5 and d["use_jms"]
    assert d["tls"] is False and d["hosts"] == ["127.0.0.1:61614"]
    [o] = doc["stomp_outconn"]
    assert o == {"name": "amq.out", "def": "amq", "is_active": True,
                 "persistent": True, "priority": 4, "expires": 60000,
                 "content_type": "application/json", "max_inflight": 1024}
    [c] = doc["stomp_channel"]
    assert c["prefetch"] == 20 and c["data_format"] == "none"
    assert "dead_letter" not in c
    spub = [s for s in doc["service"] if s["name"] == "spub"][0]
    assert spub["stomp_outconn"] == "amq.out"
    assert spub["destination"] == "/queue/orders.{id}"
    for amqp_only in ("outconn", "exchange", "routing_key", "mandatory"):
        assert amqp_only not in spub

    # the export imported again changes nothing, the passcode included
    version = int(redis_store.client().get("zmq:version"))
    again = zmqctl("import", write_json("export.json", doc), check=0)
    assert int(redis_store.client().get("zmq:version")) == version
    assert stored(redis_store, "stomp_def", "amq")["passcode"] == sealed

    # sealed export keeps the sealed form, and restores it
    sexp = zmqctl("export", "--sealed", check=None)
    if sexp.returncode == 0:
        assert json.loads(sexp.stdout)["stomp_def"][0]["passcode"] == sealed

    outputs_hold_no_passcode(imp, exp, again)


def test_list_get_delete_and_passwd_of_the_stomp_kinds(zmqctl, redis_store,
                                                       write_json):
    zmqctl("import", write_json("stomp.json", stomp_doc()), check=0)

    r = zmqctl("list", "stomp_def", check=0)
    assert r.stdout.split() == ["stomp_def", "amq", "active"]
    r = zmqctl("list", check=0)
    for kind, name in (("stomp_def", "amq"), ("stomp_outconn", "amq.out"),
                       ("stomp_channel", "orders")):
        assert "%s %s" % (kind, name) in " ".join(r.stdout.split())

    r = zmqctl("get", "stomp_def", "amq", check=0)
    assert "passcode" not in json.loads(r.stdout)

    # in use: refused, naming who refers to it
    r = zmqctl("delete", "stomp_def", "amq", check=1)
    assert "stomp_outconn 'amq.out'" in r.stderr
    assert "stomp_channel 'orders'" in r.stderr
    r = zmqctl("delete", "stomp_outconn", "amq.out", check=1)
    assert "service 'spub' (field stomp_outconn)" in r.stderr

    # a new passcode from standard input: sealed anew, never printed
    before = stored(redis_store, "stomp_def", "amq")["passcode"]
    pw = zmqctl("passwd", "stomp_def", "amq", input=NEW_PASSCODE + "\n",
                check=0)
    after = stored(redis_store, "stomp_def", "amq")["passcode"]
    assert set(after) == {"$sealed"} and after != before
    r = zmqctl("passwd", "stomp_outconn", "amq.out", input="x\n", check=1)
    assert "holds no secret" in r.stderr and "stomp_def" in r.stderr
    outputs_hold_no_passcode(pw)

    # unknown kinds name every kind
    r = zmqctl("list", "stomp_defs", check=2)
    assert "stomp_def, stomp_outconn, stomp_channel" in r.stderr

    # deleted from the referrers up
    zmqctl("delete", "stomp_channel", "orders", check=0)
    zmqctl("delete", "service", "spub", check=0)
    zmqctl("delete", "stomp_outconn", "amq.out", check=0)
    zmqctl("delete", "stomp_def", "amq", check=0)
    assert stored(redis_store, "stomp_def", "amq") is None


def test_a_bad_stomp_document_is_refused_whole(zmqctl, redis_store,
                                               write_json):
    doc = stomp_doc()
    doc["stomp_channel"][0]["destination"] = "/queue/a\nreceipt:x"
    doc["service"][1].pop("destination")
    doc["service"].append({"name": "both", "kind": "publish",
                           "stomp_outconn": "amq.out", "outconn": "nope",
                           "destination": "/q"})
    r = zmqctl("import", write_json("bad.json", doc), check=1)
    assert "stomp_channel 'orders': destination '/queue/a?receipt:x' " \
           "holds a NUL, carriage return or line feed" in r.stderr
    assert "service 'spub': a STOMP publish (stomp_outconn) needs a " \
           "'destination'" in r.stderr
    assert "service 'both': set 'outconn' (AMQP) or 'stomp_outconn' " \
           "(STOMP), not both" in r.stderr
    assert redis_store.client().get("zmq:obj:stomp_def:amq") is None
    outputs_hold_no_passcode(r)


# -------------------------------------------------------------- admin API


def stomp_gw(nginx_factory, zmqctl, redis_store, tmp_path, rabbitmq):
    gw = Admin(nginx_factory, zmqctl, redis_store, tmp_path, rabbitmq,
               locations=ADMIN + ROUTER)
    return gw


def written(r, status):
    assert r.status_code == status, r.text
    no_stored_secret(r)
    return r.json()


def test_admin_api_reads_writes_and_cascades_the_stomp_kinds(
        nginx_factory, zmqctl, redis_store, tmp_path, rabbitmq):
    gw = stomp_gw(nginx_factory, zmqctl, redis_store, tmp_path, rabbitmq)
    register_secret(PASSCODE)
    register_secret(NEW_PASSCODE)

    d = written(gw.call("POST", "api/stomp_def?wait=1", json={
        "name": "amq", "passcode": PASSCODE, "login": "admin"}), 201)
    assert d["data"]["passcode"] == {"$set": True}
    assert d["data"]["port"] == 61613 and d["data"]["heartbeat"] == 10
    written(gw.call("POST", "api/stomp_def?wait=1", json={"name": "bare"}),
            201)
    assert "passcode" not in gw.get("api/stomp_def/bare").json()
    written(gw.call("POST", "api/stomp_outconn?wait=1", json={
        "name": "amq.out", "def": "amq"}), 201)
    written(gw.call("POST", "api/service?wait=1", json={
        "name": "spub", "kind": "publish", "stomp_outconn": "amq.out",
        "destination": "/queue/x"}), 201)
    written(gw.call("POST", "api/stomp_channel?wait=1", json={
        "name": "orders", "def": "amq", "destination": "/queue/orders",
        "service": "svc", "dead_letter": "/queue/orders.failed"}), 201)
    written(gw.call("POST", "api/rest_channel?wait=1", json={
        "name": "sr", "url_path": "/api/stomp", "service": "spub"}), 201)

    r = gw.get("api/stomp_def")
    assert [o["name"] for o in r.json()["data"]] == ["amq", "bare"]
    no_stored_secret(r)
    r = gw.get("api/stomp_channel/orders")
    assert r.json()["prefetch"] == 10 and r.headers["ETag"]

    # the model's refusals, with the field's name
    r = gw.call("POST", "api/stomp_channel", json={
        "name": "c2", "def": "amq", "destination": "/queue/orders",
        "service": "svc", "dead_letter": "/queue/orders"})
    json_error(r, 400, "invalid")
    assert "dead_letter is the consumed destination" in r.text
    r = gw.call("POST", "api/service", json={
        "name": "s2", "kind": "publish", "stomp_outconn": "amq.out",
        "destination": "/q", "routing_key": "k"})
    json_error(r, 400, "invalid")
    assert "exchange, routing_key and mandatory are AMQP's" in r.text
    r = gw.call("POST", "api/stomp_outconn", json={"name": "o2",
                                                   "def": "rabbit"})
    json_error(r, 400, "invalid")
    assert "def 'rabbit' does not exist (stomp_def expected)" in r.text

    # PUT back what GET showed keeps the passcode; PATCH changes a field
    cur = gw.get("api/stomp_def/amq")
    before = stored(redis_store, "stomp_def", "amq")["passcode"]
    written(gw.call("PUT", "api/stomp_def/amq?wait=1",
                    json=dict(cur.json(), heartbeat=0),
                    headers={"If-Match": cur.headers["ETag"]}), 200)
    assert stored(redis_store, "stomp_def", "amq")["passcode"] == before
    d = written(gw.call("PATCH", "api/stomp_def/amq?wait=1",
                        json={"virtual_host": "/v"}), 200)
    assert d["data"]["virtual_host"] == "/v" and d["data"]["heartbeat"] == 0

    # the passcode's password operation
    pw = {"password1": NEW_PASSCODE, "password2": NEW_PASSCODE}
    r = gw.call("POST", "api/stomp_def/amq/password?wait=1", json=pw)
    assert r.status_code == 200, r.text
    after = stored(redis_store, "stomp_def", "amq")["passcode"]
    assert set(after) == {"$sealed"} and after != before
    r = gw.call("POST", "api/stomp_outconn/amq.out/password", json=pw)
    assert r.status_code == 404, r.text       # no such operation there
    r = gw.call("POST", "api/stomp_def/amq/ping")
    assert r.status_code == 200, r.text       # t/test_stomp_admin.py
    assert r.json()["ok"] is False

    # in use, then cascade: the whole chain down to the REST channel
    r = gw.call("DELETE", "api/stomp_def/amq")
    json_error(r, 409, "in_use")
    refs = {(x["kind"], x["name"]) for x in r.json()["referrers"]}
    assert refs == {("stomp_outconn", "amq.out"), ("stomp_channel",
                                                   "orders")}
    r = gw.call("DELETE", "api/stomp_def/amq?cascade=true&wait=1")
    assert r.status_code == 200, r.text
    deleted = [(x["kind"], x["name"]) for x in r.json()["deleted"]]
    assert deleted[0] == ("stomp_def", "amq")
    assert set(deleted) == {("stomp_def", "amq"),
                            ("stomp_outconn", "amq.out"),
                            ("stomp_channel", "orders"),
                            ("service", "spub"), ("rest_channel", "sr")}
    assert gw.get("api/stomp_def/amq").status_code == 404
    assert gw.get("api/service/svc").status_code == 200

    # an unknown kind's 404 names every kind
    r = gw.get("api/stomp")
    json_error(r, 404, "not_found")
    assert "stomp_def, stomp_outconn, stomp_channel" in r.json()["message"]

    # the export document has the kinds, without the passcode
    doc = gw.get("api/export").json()
    assert [o["name"] for o in doc["stomp_def"]] == ["bare"]


def test_a_body_the_admin_api_does_not_read_is_not_the_next_request(
        nginx_factory, zmqctl, redis_store, tmp_path, rabbitmq):
    # a password sent to an operation a kind does not have (or a method a
    # path does not serve) is answered at once: its body was read as the
    # connection's next request line, and logged with the secret in it
    gw = stomp_gw(nginx_factory, zmqctl, redis_store, tmp_path, rabbitmq)
    register_secret(NEW_PASSCODE)
    pw = {"password1": NEW_PASSCODE, "password2": NEW_PASSCODE}
    with requests.Session() as s:
        s.auth = ("root", ADMIN_PW)
        base = gw.url + "/zmq/admin/"
        for method, path, status in (
                ("POST", "api/amqp_outconn/out/password", 404),
                ("POST", "api/nosuch", 404),
                ("POST", "api/status", 405),
                ("PUT", "api/service", 405)):
            r = s.request(method, base + path, json=pw, timeout=10)
            json_error(r, status, "not_found" if status == 404
                       else "method_not_allowed")
            r = s.get(base + "api/whoami", timeout=10)
            assert r.status_code == 200, r.text
    log = gw.live.ngx.error_log()
    assert "request line" not in log and "password1" not in log


# ----------------------------------------------------------------- guards


def test_a_stomp_publish_to_no_broker_answers_503_and_the_gateway_keeps_serving(
        nginx_factory, zmqctl, redis_store, tmp_path, rabbitmq):
    gw = stomp_gw(nginx_factory, zmqctl, redis_store, tmp_path, rabbitmq)
    doc = stomp_doc()
    doc["rest_channel"] = [{"name": "sr", "url_path": "/api/stomp/{id}",
                            "service": "spub"},
                           {"name": "ar", "url_path": "/api/amqp",
                            "service": "svc"}]
    doc["service"] += gw.export()["service"]
    r = gw.call("POST", "api/import?wait=1", json=doc)
    assert r.status_code == 200, r.text
    gw.live.wait_ready("out")

    # the stomp_def names no STOMP broker that answers
    for path in ("/api/stomp/7", "/spub"):
        for _ in range(3):
            r = requests.post(gw.url + path, data=b'{"a": 1}', timeout=10)
            json_error(r, 503, "broker_unavailable")
            assert r.headers.get("Retry-After")

    r = gw.call("POST", "api/service/spub/invoke", data=b"x")
    json_error(r, 503, "broker_unavailable")

    # the same worker still publishes through AMQP
    r = requests.post(gw.url + "/api/amqp", data=b"x", timeout=10)
    assert r.status_code == 202, r.text
    assert gw.get("api/status").status_code == 200


def test_zmqd_checks_a_stomp_configuration_and_fails_a_stomp_publish(
        zmqctl, redis_store, write_json):
    doc = stomp_doc([{"name": "fan", "kind": "fanout",
                      "services": ["spub"]}])
    zmqctl("import", write_json("stomp.json", doc), check=0)

    r = subprocess.run([ZMQD, "--config", redis_store.url, "--check"],
                       env=zmqctl.env, capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, (r.stdout, r.stderr)
    outputs_hold_no_passcode(r)

    # zmqctl invoke runs a service as zmqd does: it publishes through the
    # stomp_outconn, whose definition names no broker that answers
    for name in ("spub", "fan"):
        r = zmqctl("invoke", name, "-", input="{}", check=1)
        assert "stomp_outconn 'amq.out': cannot connect to " \
               "127.0.0.1:61613" in r.stderr, r.stderr
        outputs_hold_no_passcode(r)
