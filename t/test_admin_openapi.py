"""The admin API's OpenAPI document (issue 12): GET api/openapi.json serves
ngx_zmq_module/openapi.json byte for byte; a real OpenAPI 3.1 validator from
npm (installed by make deps-test into build/npm) accepts it and refuses a
broken copy; its object schemas have exactly the fields of src/core's model;
and the live API keeps to it: every documented path and method answers, with
an admin, a viewer and no credentials, every answer's status is documented
for its operation and its body matches the schema documented for that
status (jsonschema, Draft 2020-12), and a method a path does not document
is 405 with Allow listing exactly the documented ones."""

import json
import os
import re
import subprocess
from pathlib import Path

import jsonschema
import pytest

from conftest import register_secret
from test_admin_api import Admin, PARTNER_PW

ROOT = Path(__file__).resolve().parent.parent
DOC_PATH = ROOT / "ngx_zmq_module" / "openapi.json"
HEADER_PATH = ROOT / "ngx_zmq_module" / "ngx_http_zmq_openapi_json.h"
VALIDATOR = ("node_modules/@seriousme/openapi-schema-validator/bin/"
             "validate-api-cli.js")
METHODS = ("get", "put", "post", "delete", "patch", "head")
ALLOW_ORDER = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")

DEF_PW = "oa-def-Secret-4417"
OUT_PW = "oa-partner-Secret-2290"


def load_doc():
    return json.loads(DOC_PATH.read_bytes())


def validator_cli():
    build = Path(os.environ.get("ZMQ_BUILD", ROOT / "build"))
    cli = build / "npm" / VALIDATOR
    # not a skip: without the validator the document is not checked
    assert cli.is_file(), ("%s is missing: make deps-test installs the "
                           "OpenAPI validator" % cli)
    return cli


def validate_api(path):
    r = subprocess.run(["node", str(validator_cli()), str(path)],
                       capture_output=True, text=True, timeout=120)
    return r.returncode, r.stdout + r.stderr


# --------------------------------------------------- the document itself


def test_the_file_is_valid_openapi_3_1_for_a_real_validator(tmp_path):
    rc, out = validate_api(DOC_PATH)
    assert rc == 0, out
    assert json.loads(out)["valid"] is True, out
    assert load_doc()["openapi"] == "3.1.0"

    # the validator does check: a response without its description, a
    # dangling $ref, a path parameter that is not declared
    for breakage in ("description", "ref", "param"):
        doc = load_doc()
        if breakage == "description":
            del doc["paths"]["/api/status"]["get"]["responses"]["200"][
                "description"]
        elif breakage == "ref":
            doc["paths"]["/api/status"]["get"]["responses"]["200"][
                "content"]["application/json"]["schema"]["$ref"] += "X"
        else:
            doc["paths"]["/api/nothing/{x}"] = {"get": {"responses": {
                "200": {"description": "x"}}}}
            doc["paths"]["/api/nothing/{x}"]["get"]["parameters"] = [{
                "name": "x", "in": "query", "schema": {"type": "string"}}]
            doc["paths"]["/api/nothing/{x}"]["get"]["parameters"][0][
                "required"] = "yes"
        bad = tmp_path / ("bad-%s.json" % breakage)
        bad.write_text(json.dumps(doc))
        rc, out = validate_api(bad)
        assert rc != 0, (breakage, out)


def test_every_schema_is_valid_json_schema_2020_12():
    doc = load_doc()
    assert doc["jsonSchemaDialect"] == \
        "https://json-schema.org/draft/2020-12/schema"
    for name, schema in doc["components"]["schemas"].items():
        jsonschema.Draft202012Validator.check_schema(schema)


def test_the_generated_header_is_the_file_as_make_writes_it(tmp_path):
    out = tmp_path / "h.h"
    subprocess.run([str(ROOT / "scripts" / "openapi_h.sh"), str(DOC_PATH),
                    str(out)], check=True)
    assert out.read_bytes() == HEADER_PATH.read_bytes(), \
        "run make: ngx_http_zmq_openapi_json.h is older than openapi.json"
    text = DOC_PATH.read_bytes()
    # a plain ASCII file, one line per C string
    assert all(b < 0x80 for b in text) and b"\t" not in text
    assert text.endswith(b"\n")


def model_fields():
    """{table: [field names]} from src/core/zgw_model.c's field tables"""
    src = (ROOT / "src" / "core" / "zgw_model.c").read_text()
    tables = {}
    for m in re.finditer(r"zgw_field_t\s+zgw_(\w+)_fields\[\] = \{(.*?)\n\};",
                         src, re.S):
        body = m.group(2)
        names = re.findall(r'F_\w+\("(\w+)"', body)
        if "ZGW_COMMON" in body:
            names = ["name", "is_active"] + names
        tables[m.group(1)] = names
    return tables


def test_object_schemas_have_exactly_the_models_fields():
    tables = model_fields()
    schemas = load_doc()["components"]["schemas"]

    def props(name):
        return set(schemas[name]["properties"])

    plain = ("amqp_def", "amqp_outconn", "amqp_channel", "http_outconn",
             "rest_channel", "startup", "stomp_def", "stomp_outconn",
             "stomp_channel")
    for kind in plain:
        assert props(kind) == set(tables[kind]), kind
    for v in ("publish", "rpc", "http", "redis", "fanout", "invoke",
              "redis_page"):
        assert props("service_" + v) == \
            set(tables["service"]) | set(tables["service_" + v]), v
    for v, table in (("basic_auth", "security_basic"),
                     ("apikey", "security_apikey"), ("jwt", "security_jwt")):
        assert props("security_" + v) == \
            set(tables["security"]) | set(tables[table]), v
    assert props("Retry") == set(tables["retry"])
    assert props("DeadLetter") == set(tables["dead_letter"])
    assert props("ApiKey") == set(tables["security_apikey_key"])
    # every kind of the model, and no other
    kinds = re.findall(r'\{ "(\w+)", zgw_\w+_fields,', (
        ROOT / "src" / "core" / "zgw_model.c").read_text())
    assert schemas["Kind"]["enum"] == kinds


# ------------------------------------------------------ checking answers


class Contract:
    """Calls the live API and checks each answer against the document."""

    def __init__(self, gw, doc):
        self.gw = gw
        self.doc = doc
        self.resolver = jsonschema.RefResolver("", doc)
        self.ops = []
        for tpl, item in doc["paths"].items():
            rx = re.compile("^" + re.sub(r"\\\{\w+\\\}", "[^/]+",
                                         re.escape(tpl)) + "$")
            for m in METHODS:
                if m in item:
                    self.ops.append((tpl, m.upper(), rx))
        self.covered = set()
        self.answers = 0

    def deref(self, obj):
        while "$ref" in obj:
            _, obj = self.resolver.resolve(obj["$ref"])
        return obj

    def operation(self, method, path):
        path = "/" + path.split("?")[0]
        found = [(tpl, m) for tpl, m, rx in self.ops
                 if rx.match(path) and m == method]
        assert len(found) == 1, (method, path, found)
        return found[0]

    def call(self, method, path, auth="admin", expect=None, **kw):
        tpl, m = self.operation(method, path)
        r = self.gw.call(method, path, auth=auth, **kw)
        self.check(tpl, m, r)
        if auth == "admin":
            self.covered.add((tpl, m))
        if expect is not None:
            assert r.status_code == expect, (method, path, r.status_code,
                                             r.text)
        return r

    def check(self, tpl, method, r):
        op = self.doc["paths"][tpl][method.lower()]
        status = str(r.status_code)
        assert status in op["responses"], (
            "%s %s answered %s, which the document does not list: %s" % (
                method, tpl, status, r.text))
        resp = self.deref(op["responses"][status])
        ctype = r.headers.get("Content-Type", "")
        assert ctype in resp.get("content", {}), (method, tpl, status, ctype)
        schema = resp["content"][ctype]["schema"]
        body = r.json() if ctype == "application/json" else r.text
        v = jsonschema.Draft202012Validator(schema, resolver=self.resolver)
        errors = sorted(v.iter_errors(body), key=str)
        assert not errors, "%s %s %s: %s\n%s" % (
            method, tpl, status, errors[0], r.text)
        for h in resp.get("headers", {}):
            if h == "ETag" and "ETag" in r.headers:
                assert re.match(r'^"[0-9]+"$', r.headers["ETag"])
        self.answers += 1


# objects of every kind, made by the test; the fixture has rabbit, crm, out,
# svc, admins, viewers, partner, tokens and hook
NEW = {
    "amqp_def": {"name": "oa_def", "host": "127.0.0.1", "port": 5673,
                 "password": DEF_PW},
    "amqp_outconn": {"name": "oa_out", "def": "rabbit"},
    "amqp_channel": {"name": "oa_ch", "def": "rabbit", "queue": "oa_q",
                     "service": "svc"},
    "http_outconn": {"name": "oa_http", "url": "http://127.0.0.1:9/y"},
    "service": {"name": "oa_svc", "kind": "publish", "outconn": "out",
                "routing_key": "oa"},
    "rest_channel": {"name": "oa_rest", "url_path": "/oa", "service": "svc"},
    "security": {"name": "oa_keys", "type": "apikey"},
    "startup": {"name": "oa_start", "service": "svc", "payload": "{}"},
    "stomp_def": {"name": "oa_sdef", "port": 61613, "passcode": DEF_PW},
    "stomp_outconn": {"name": "oa_sout", "def": "oa_sdef"},
    "stomp_channel": {"name": "oa_sch", "def": "oa_sdef",
                      "destination": "/queue/oa", "service": "svc"},
}


@pytest.fixture
def contract(nginx_factory, zmqctl, redis_store, tmp_path, rabbitmq):
    for s in (DEF_PW, OUT_PW):
        register_secret(s)
    gw = Admin(nginx_factory, zmqctl, redis_store, tmp_path, rabbitmq)
    return Contract(gw, load_doc())


def test_the_check_refuses_an_answer_that_is_off_its_schema(contract):
    doc = load_doc()
    doc["components"]["schemas"]["Page"]["required"].append("next")
    with pytest.raises(AssertionError, match="'next' is a required"):
        Contract(contract.gw, doc).call("GET", "api/service")
    doc = load_doc()
    del doc["paths"]["/api/service/{name}"]["get"]["responses"]["404"]
    with pytest.raises(AssertionError, match="does not list"):
        Contract(contract.gw, doc).call("GET", "api/service/nosuch")


def test_served_byte_for_byte_as_json_to_admins_and_viewers(contract):
    want = DOC_PATH.read_bytes()
    for auth in ("admin", "viewer"):
        r = contract.gw.get("api/openapi.json", auth=auth)
        assert r.status_code == 200
        assert r.headers["Content-Type"] == "application/json"
        assert r.content == want
        assert int(r.headers["Content-Length"]) == len(want)
    r = contract.gw.call("HEAD", "api/openapi.json")
    assert r.status_code == 200 and r.content == b""
    assert int(r.headers["Content-Length"]) == len(want)
    contract.call("GET", "api/openapi.json", expect=200)


def test_every_documented_operation_answers_as_documented(contract):
    c = contract
    gw = c.gw

    # documents
    c.call("GET", "api/openapi.json", expect=200)
    c.call("GET", "api/status", expect=200)
    c.call("GET", "api/whoami", expect=200)
    export = c.call("GET", "api/export", expect=200).json()
    r = c.call("POST", "api/import?check=1", json=export, expect=200)
    assert r.json()["check"] is True
    c.call("POST", "api/import", json={"service": [{"name": "x",
           "kind": "publish", "outconn": "none"}]}, expect=400)
    c.call("POST", "api/import", data=b"[1", expect=400)
    c.call("POST", "api/import?wait=1", json=export, expect=200)

    # every kind: list, create, read, replace, patch, delete
    for kind, obj in NEW.items():
        name = obj["name"]
        body = {k: v for k, v in obj.items() if k != "name"}
        c.call("GET", "api/" + kind, expect=200)
        c.call("GET", "api/%s?page_size=0" % kind, expect=400)
        c.call("GET", "api/%s?page=99" % kind, expect=404)
        c.call("POST", "api/%s?check=1" % kind, json=obj, expect=200)
        r = c.call("POST", "api/%s?wait=1" % kind, json=obj, expect=201)
        c.call("POST", "api/" + kind, json=obj, expect=409)
        r = c.call("POST", "api/" + kind, json=dict(obj, name=name + "x",
                                                      nosuchfield=1),
                   expect=400)
        assert r.json()["errors"][0]["field"] == "nosuchfield"
        c.call("POST", "api/" + kind, data=b"{", expect=400)
        r = c.call("GET", "api/%s?q=oa_" % kind, expect=200)
        assert [o["name"] for o in r.json()["data"]] == [name]
        r = c.call("GET", "api/%s/%s" % (kind, name), expect=200)
        tag = r.headers["ETag"]
        c.call("GET", "api/%s/nosuch" % kind, expect=404)
        r = c.call("PUT", "api/%s/%s?wait=1" % (kind, name),
                   json=dict(r.json(), is_active=False),
                   headers={"If-Match": tag}, expect=200)
        c.call("PUT", "api/%s/%s" % (kind, name), json=body,
               headers={"If-Match": tag}, expect=412)
        c.call("PUT", "api/%s/%s" % (kind, name), json=dict(body, name="o"),
               expect=400)
        c.call("PUT", "api/%s/%s2" % (kind, name), json=body, expect=201)
        c.call("PATCH", "api/%s/%s" % (kind, name),
               json={"is_active": True}, expect=200)
        c.call("PATCH", "api/%s/%s?check=1" % (kind, name),
               json={"is_active": False}, expect=200)
        c.call("PATCH", "api/%s/nosuch" % kind, json={}, expect=404)
        c.call("PATCH", "api/%s/%s" % (kind, name), json={"name": 5},
               expect=400)
        c.call("DELETE", "api/%s/%s2?check=1" % (kind, name), expect=200)
        c.call("DELETE", "api/%s/%s2?wait=1" % (kind, name), expect=200)
        c.call("DELETE", "api/%s/%s2" % (kind, name), expect=404)
        c.call("DELETE", "api/%s/%s" % (kind, name),
               headers={"If-Match": '"1"'}, expect=412)

    # in use, then cascade
    r = c.call("DELETE", "api/amqp_def/rabbit", expect=409)
    assert r.json()["referrers"]
    c.call("POST", "api/amqp_outconn", json={"name": "oa_out2",
                                             "def": "oa_def"}, expect=201)
    r = c.call("DELETE", "api/amqp_def/oa_def?cascade=true&wait=1",
               expect=200)
    assert {"kind": "amqp_outconn", "name": "oa_out2"} in r.json()["deleted"]
    r = c.call("DELETE", "api/stomp_def/oa_sdef", expect=409)
    assert len(r.json()["referrers"]) == 2

    # a STOMP publish service, its outconn and definition (no broker on
    # 61613: ping ok false, send and invoke 503)
    c.call("POST", "api/service?wait=1", json={
        "name": "oa_spub", "kind": "publish", "stomp_outconn": "oa_sout",
        "destination": "/queue/oa"}, expect=201)
    c.call("POST", "api/service/oa_spub/invoke", data=b"hi", expect=503)
    c.call("POST", "api/stomp_def/oa_sdef/ping", expect=200)
    c.call("POST", "api/stomp_outconn/oa_sout/send",
           json={"destination": "/queue/oa", "body": "hi"}, expect=503)
    c.call("POST", "api/stomp_outconn/oa_sout/send", json={"body": "hi"},
           expect=400)
    c.call("POST", "api/stomp_outconn/nosuch/send",
           json={"destination": "/queue/oa", "body": "hi"}, expect=404)

    # passwords
    pw = {"password1": OUT_PW, "password2": OUT_PW}
    c.call("POST", "api/security/partner/password?wait=1", json=pw,
           expect=200)
    c.call("POST", "api/amqp_def/crm/password", json=pw, expect=200)
    c.call("POST", "api/stomp_def/oa_sdef/password", json=pw, expect=200)
    c.call("POST", "api/stomp_def/nosuch/password", json=pw, expect=404)
    c.call("POST", "api/amqp_def/crm/password",
           json={"password1": "a", "password2": "b"}, expect=400)
    c.call("POST", "api/amqp_def/nosuch/password", json=pw, expect=404)
    c.call("POST", "api/http_outconn/hook/password", json=pw, expect=400)
    c.call("POST", "api/security/partner/password", json=pw,
           headers={"If-Match": '"1"'}, expect=412)

    # API keys
    r = c.call("POST", "api/security/oa_keys/keys?wait=1",
               json={"id": "k-oa"}, expect=201)
    assert len(r.json()["key"]) == 43
    c.call("POST", "api/security/oa_keys/keys", json={"id": "k-oa"},
           expect=409)
    c.call("POST", "api/security/oa_keys/keys", json={"x": 1}, expect=400)
    c.call("POST", "api/security/admins/keys", expect=400)
    c.call("POST", "api/security/nosuch/keys", expect=404)
    c.call("DELETE", "api/security/oa_keys/keys/k-oa?wait=1", expect=200)
    c.call("DELETE", "api/security/oa_keys/keys/k-oa", expect=404)

    # ping: whatever it answers must be documented (501 not_implemented
    # until it is built)
    c.call("POST", "api/amqp_def/rabbit/ping")
    c.call("POST", "api/amqp_def/crm/ping")
    c.call("POST", "api/http_outconn/hook/ping")

    # send and invoke
    gw.live.wait_ready("out")
    r = c.call("POST", "api/amqp_outconn/out/send",
               json={"exchange": "", "routing_key": "q", "body": "hi",
                     "properties": {"content_type": "text/plain",
                                    "delivery_mode": "persistent"},
                     "headers": {"h": "v"}}, expect=202)
    assert r.json()["confirmed"] is True
    c.call("POST", "api/amqp_outconn/out/send",
           json={"routing_key": "oa-nowhere", "body_base64": "aGk=",
                 "mandatory": True}, expect=422)
    c.call("POST", "api/amqp_outconn/out/send", json={"body": "x",
                                                     "bogus": 1},
           expect=400)
    c.call("POST", "api/amqp_outconn/out/send", data=b"{", expect=400)
    c.call("POST", "api/amqp_outconn/nosuch/send", json={"body": "x"},
           expect=404)
    c.call("POST", "api/service/svc/invoke", data=b"hi", expect=202)
    c.call("POST", "api/service/nosuch/invoke", data=b"hi", expect=404)
    c.call("POST", "api/service?wait=1", json={
        "name": "oa_fan", "kind": "fanout", "services": ["svc"]}, expect=201)
    c.call("POST", "api/service/oa_fan/invoke", data=b"hi", expect=501)

    # every documented path and method has been called with an admin
    missing = {(t, m) for t, m, _ in c.ops} - c.covered
    assert not missing, sorted(missing)


def fill(tpl):
    names = {"amqp_def": "rabbit", "amqp_outconn": "out", "service": "svc",
             "security": "viewers", "http_outconn": "hook",
             "amqp_channel": "nosuch", "rest_channel": "nosuch",
             "startup": "nosuch", "stomp_def": "nosuch",
             "stomp_outconn": "nosuch", "stomp_channel": "nosuch"}
    parts = tpl.split("/")
    if len(parts) > 3 and parts[3] == "{name}":
        parts[3] = names[parts[2]]
    return "/".join(parts).replace("{id}", "ops")[1:]


def test_no_credentials_401_and_viewers_403_everywhere(contract):
    c = contract
    for tpl, m, _ in c.ops:
        path = fill(tpl)
        r = c.call(m, path, auth="/zmq/admin/", json={}, expect=401)
        assert r.headers["WWW-Authenticate"].startswith("Basic")
        if m != "GET":
            c.call(m, path, auth="viewer", json={}, expect=403)
        else:
            assert c.call(m, path, auth="viewer").status_code in (200, 404)
    assert c.gw.current_store_version() == c.gw.version


def test_other_methods_are_405_with_allow_as_documented(contract):
    c = contract
    for tpl, item in c.doc["paths"].items():
        documented = {m.upper() for m in METHODS if m in item}
        if "GET" in documented:
            documented.add("HEAD")
        allow = ", ".join(m for m in ALLOW_ORDER if m in documented)
        assert allow in item["description"], tpl
        for m in ALLOW_ORDER:
            if m in documented:
                continue
            r = c.gw.call(m, fill(tpl), json={})
            assert r.status_code == 405, (m, tpl, r.text)
            if m != "HEAD":
                assert r.json()["error"] == "method_not_allowed"
            assert r.headers["Allow"] == allow, (m, tpl)
    assert c.gw.current_store_version() == c.gw.version
