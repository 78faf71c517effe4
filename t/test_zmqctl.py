"""zmqctl against a real Redis: import/export, all-or-nothing imports,
secrets at rest, events, deletes, keys and the command line itself."""

import json
import os
import stat
import threading

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(ROOT, "conf", "demo.json")

SECRET = "Zq-very-s3cret-9217"
CLIENT_PW = "client-pw-4410"

SMALL = {
    "amqp_def": [{"name": "crm", "host": "127.0.0.1", "username": "app",
                  "password": SECRET}],
    "amqp_outconn": [{"name": "crm.out", "def": "crm"}],
    "service": [{"name": "pub", "kind": "publish", "outconn": "crm.out",
                 "routing_key": "q"}],
    "security": [{"name": "clients", "type": "basic_auth",
                  "username": "u", "password": CLIENT_PW},
                 {"name": "jwt", "type": "jwt",
                  "secret": SECRET + "-jwt-of-at-least-32-bytes"}],
}


def strip_secrets(doc):
    doc = json.loads(json.dumps(doc))
    for d in doc.get("amqp_def", []):
        d.pop("password", None)
    for s in doc.get("security", []):
        for k in ("password", "key", "secret"):
            s.pop(k, None)
    return doc


def export(zmqctl):
    r = zmqctl("export", check=0)
    return json.loads(r.stdout)


def test_demo_import_then_export_round_trips(zmqctl, write_json):
    zmqctl("import", DEMO, check=0)
    first = export(zmqctl)

    with open(DEMO) as f:
        demo = strip_secrets(json.load(f))
    # every field written in the demo comes back with the same value
    for kind, objs in demo.items():
        got = {o["name"]: o for o in first[kind]}
        for obj in objs:
            for field, value in obj.items():
                if isinstance(value, dict):
                    for k, v in value.items():
                        assert got[obj["name"]][field][k] == v
                else:
                    assert got[obj["name"]][field] == value, (kind, field)

    # export -> import changes nothing, and exports the same again
    r = zmqctl("import", write_json("exported.json", first), check=0)
    assert "0 changed" in r.stdout
    assert export(zmqctl) == first


def test_importing_the_same_file_twice_changes_nothing(zmqctl, redis_store,
                                                       write_json):
    path = write_json("small.json", SMALL)
    r = zmqctl("import", path, check=0)
    assert "5 objects, 5 changed, version 5" in r.stdout
    before = redis_store.dump()
    r = zmqctl("import", path, check=0)
    assert "0 changed, version 5" in r.stdout
    assert redis_store.dump() == before


def test_three_errors_are_all_reported_and_nothing_is_written(
        zmqctl, redis_store, write_json):
    zmqctl("import", DEMO, check=0)
    before = redis_store.dump()

    bad = json.loads(json.dumps(SMALL))
    bad["amqp_def"][0]["port"] = 70000                       # range
    bad["amqp_outconn"][0]["colour"] = "red"                 # unknown field
    bad["service"][0]["outconn"] = "nowhere"                 # dangling ref
    r = zmqctl("import", write_json("bad.json", bad))

    assert r.returncode == 1
    assert "3 errors" in r.stderr
    assert "amqp_def 'crm': port 70000 is out of range 1-65535" in r.stderr
    assert "amqp_outconn 'crm.out': unknown field 'colour'" in r.stderr
    assert "service 'pub': outconn 'nowhere' does not exist" in r.stderr
    assert "nothing was written" in r.stderr
    assert redis_store.dump() == before


def test_invalid_json_names_line_and_column(zmqctl, redis_store, write_json):
    path = write_json("broken.json", '{\n  "amqp_def": [\n    {"name": 1,}\n')
    r = zmqctl("import", path)
    assert r.returncode == 1
    assert path + ":3:" in r.stderr
    assert redis_store.dump() == {}


def test_secrets_are_unreadable_in_redis(zmqctl, redis_store, write_json):
    zmqctl("import", write_json("small.json", SMALL), check=0)
    dump = redis_store.dump()
    raw = json.dumps({k.decode(): repr(v) for k, v in dump.items()})
    assert SECRET not in raw
    assert CLIENT_PW not in raw

    c = redis_store.client()
    d = json.loads(c.get("zmq:obj:amqp_def:crm"))
    assert set(d["password"]) == {"$sealed"}
    s = json.loads(c.get("zmq:obj:security:clients"))
    assert s["password"]["$hash"].startswith("pbkdf2-sha256$")
    j = json.loads(c.get("zmq:obj:security:jwt"))
    assert set(j["secret"]) == {"$sealed"}


def test_export_and_get_never_print_secrets(zmqctl, write_json):
    zmqctl("import", write_json("small.json", SMALL), check=0)
    out = zmqctl("export", check=0).stdout
    assert SECRET not in out and "$sealed" not in out and "$hash" not in out
    for kind, name in (("amqp_def", "crm"), ("security", "clients"),
                       ("security", "jwt")):
        r = zmqctl("get", kind, name, check=0)
        assert SECRET not in r.stdout and "$" not in r.stdout
        assert json.loads(r.stdout)["name"] == name


def test_a_sealed_secret_survives_an_import_without_it(zmqctl, redis_store,
                                                       write_json):
    zmqctl("import", write_json("small.json", SMALL), check=0)
    c = redis_store.client()
    sealed = json.loads(c.get("zmq:obj:amqp_def:crm"))["password"]

    zmqctl("import", write_json("exp.json", export(zmqctl)), check=0)
    assert json.loads(c.get("zmq:obj:amqp_def:crm"))["password"] == sealed


def test_a_new_definition_without_password_gets_a_random_one(
        zmqctl, redis_store, write_json):
    zmqctl("import", write_json("d.json", {"amqp_def": [{"name": "a"}]}),
           check=0)
    d = json.loads(redis_store.client().get("zmq:obj:amqp_def:a"))
    assert "$sealed" in d["password"]


def test_a_secret_needs_the_key_file(zmqctl, redis_store, write_json,
                                     tmp_path):
    zmqctl.env["ZMQ_KEY_FILE"] = str(tmp_path / "missing.key")
    r = zmqctl("import", write_json("small.json", SMALL))
    assert r.returncode == 1
    assert "zmqctl keygen" in r.stderr
    assert redis_store.dump() == {}


def test_check_validates_without_writing(zmqctl, redis_store, write_json):
    r = zmqctl("import", "--check", write_json("small.json", SMALL), check=0)
    assert "valid (5 objects); an import would change 5" in r.stdout
    assert redis_store.dump() == {}

    bad = dict(SMALL, amqp_outconn=[{"name": "crm.out"}])
    r = zmqctl("import", "--check", write_json("bad.json", bad))
    assert r.returncode == 1
    assert "missing required field 'def'" in r.stderr


def test_import_merges_and_replace_deletes(zmqctl, write_json):
    zmqctl("import", write_json("small.json", SMALL), check=0)
    extra = {"service": [{"name": "store", "kind": "redis", "key": "k"}]}
    path = write_json("extra.json", extra)

    zmqctl("import", path, check=0)
    names = {o["name"] for o in export(zmqctl)["service"]}
    assert names == {"pub", "store"}

    r = zmqctl("import", "--replace", path, check=0)
    assert "version" in r.stdout
    assert export(zmqctl) == {"service": [
        {"name": "store", "kind": "redis", "key": "k", "is_active": True,
         "op": "rpush", "max_len": 0}]}


def test_references_may_point_at_stored_objects(zmqctl, write_json):
    zmqctl("import", write_json("small.json", SMALL), check=0)
    more = {"rest_channel": [{"name": "r", "url_path": "/x",
                              "service": "pub", "security": "clients"}]}
    zmqctl("import", write_json("more.json", more), check=0)

    # with --replace the stored objects are gone, so the references dangle
    r = zmqctl("import", "--replace", write_json("more.json", more))
    assert r.returncode == 1
    assert "rest_channel 'r': service 'pub' does not exist" in r.stderr


def test_every_change_is_published(zmqctl, redis_store, write_json):
    c = redis_store.client()
    p = c.pubsub()
    p.subscribe("zmq:events")
    assert p.get_message(timeout=5)["type"] == "subscribe"

    zmqctl("import", write_json("small.json", SMALL), check=0)
    events = []
    while len(events) < 5:
        m = p.get_message(timeout=5)
        assert m is not None, events
        events.append(json.loads(m["data"]))
    assert [e["version"] for e in events] == [1, 2, 3, 4, 5]
    assert {(e["kind"], e["name"], e["op"]) for e in events} == {
        ("amqp_def", "crm", "put"), ("amqp_outconn", "crm.out", "put"),
        ("service", "pub", "put"), ("security", "clients", "put"),
        ("security", "jwt", "put")}

    zmqctl("delete", "security", "jwt", check=0)
    m = p.get_message(timeout=5)
    assert json.loads(m["data"]) == {"version": 6, "kind": "security",
                                     "name": "jwt", "op": "delete"}
    p.close()


def test_concurrent_imports_never_interleave(zmqctl, redis_store,
                                             write_json):
    docs = []
    for i in range(4):
        docs.append(write_json("c%d.json" % i, {"service": [
            {"name": "s%d_%d" % (i, j), "kind": "redis", "key": "k"}
            for j in range(20)]}))
    results = [None] * 4

    def run(i):
        results[i] = zmqctl("import", docs[i])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    ok = [r for r in results if r.returncode == 0]
    assert ok, [r.stderr for r in results]
    for r in results:
        assert r.returncode == 0 or "CONFLICT" in r.stderr, r.stderr
    c = redis_store.client()
    assert int(c.get("zmq:version")) == 20 * len(ok)
    assert c.scard("zmq:index:service") == 20 * len(ok)


def test_delete_refuses_while_referenced(zmqctl, write_json):
    zmqctl("import", write_json("small.json", SMALL), check=0)
    r = zmqctl("delete", "amqp_outconn", "crm.out")
    assert r.returncode == 1
    assert "service 'pub' (field outconn)" in r.stderr
    zmqctl("delete", "service", "pub", check=0)
    zmqctl("delete", "amqp_outconn", "crm.out", check=0)
    r = zmqctl("get", "amqp_outconn", "crm.out")
    assert r.returncode == 1
    assert "does not exist" in r.stderr


def test_list(zmqctl, write_json):
    zmqctl("import", write_json("small.json", SMALL), check=0)
    lines = zmqctl("list", check=0).stdout.splitlines()
    assert "amqp_def\tcrm\tactive" in lines
    assert len(lines) == 5
    only = zmqctl("list", "security", check=0).stdout.splitlines()
    assert only == ["security\tclients\tactive", "security\tjwt\tactive"]
    assert zmqctl("list", "nonsense").returncode == 2


def test_version(zmqctl, write_json):
    zmqctl("import", write_json("small.json", SMALL), check=0)
    r = zmqctl("version", check=0)
    assert "zmqctl 0.1.0" in r.stdout
    assert "configuration version 5" in r.stdout


def test_keygen_writes_a_private_key_and_never_overwrites(zmqctl, tmp_path):
    key = tmp_path / "secret.key"
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    assert len(key.read_text().strip()) == 64
    before = key.read_text()
    r = zmqctl("keygen")
    assert r.returncode == 1 and "--force" in r.stderr
    assert key.read_text() == before
    zmqctl("keygen", "--force", check=0)
    assert key.read_text() != before


@pytest.mark.parametrize("command", ["import", "export", "get", "list",
                                     "delete", "keygen", "version"])
def test_every_command_has_help(zmqctl, command):
    r = zmqctl(command, "--help", check=0)
    assert r.stdout.startswith("usage: zmqctl")
    assert command in r.stdout


def test_usage_errors_exit_2(zmqctl):
    assert zmqctl().returncode == 2
    assert zmqctl("frobnicate").returncode == 2
    assert zmqctl("get", "service").returncode == 2
    assert zmqctl("export", "--replace").returncode == 2
    assert zmqctl("--help", check=0).stdout.startswith("usage:")


def test_unreachable_redis_fails_cleanly(zmqctl, redis_store):
    zmqctl.env["ZMQ_REDIS"] = "redis://127.0.0.1:1/0"
    r = zmqctl("export")
    assert r.returncode == 1
    assert "cannot connect" in r.stderr
    # --redis wins over ZMQ_REDIS
    r = zmqctl("--redis", redis_store.url, "export", check=0)
    assert json.loads(r.stdout) == {}
