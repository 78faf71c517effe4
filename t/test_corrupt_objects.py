"""A corrupt stored object (issue 10, defect 14): every follower refuses the
whole configuration while it is stored, so zmqctl shows it (list, get: with
the reason) and removes it (delete) or overwrites it (import, import
--replace). And the key file: refused when group or others may read it."""

import json
import os
import stat
import subprocess

import pytest

from conftest import BUILD, NGINX

ZMQD = os.path.join(BUILD, "zmqd")

GOOD = {
    "amqp_def": [{"name": "rabbit", "password": "guest"}],
    "amqp_outconn": [{"name": "out", "def": "rabbit"}],
    "service": [{"name": "pub", "kind": "publish", "outconn": "out",
                 "routing_key": "q"}],
}

# each case: how the stored text is broken, and the reason zmqctl gives
CORRUPT = [
    ("invalid JSON", "{\"name\": \"bad\", ", "invalid JSON at"),
    ("name that is not its key",
     json.dumps({"name": "other", "kind": "publish", "outconn": "out"}),
     "the object's name does not match its key"),
    ("field the model refuses",
     json.dumps({"name": "bad", "kind": "publish", "outconn": "out",
                 "colour": "red"}),
     "unknown field 'colour'"),
    ("key listed in the index but missing", None,
     "listed in zmq:index:service but missing"),
]


def store_corrupt(redis_store, text, name="bad"):
    r = redis_store.client()
    if text is not None:
        r.set("zmq:obj:service:%s" % name, text)
    r.sadd("zmq:index:service", name)


def zmqd_check(zmqctl, redis_store):
    return subprocess.run([ZMQD, "--config", redis_store.url, "--check"],
                          env=zmqctl.env, capture_output=True, text=True,
                          timeout=30)


@pytest.fixture
def corrupt_store(zmqctl, redis_store, write_json):
    zmqctl("import", write_json("good.json", GOOD), check=0)

    def make(text, name="bad"):
        store_corrupt(redis_store, text, name)
        return redis_store.client()
    return make


@pytest.mark.parametrize("what,text,reason", CORRUPT,
                         ids=[c[0] for c in CORRUPT])
def test_list_and_get_say_it_is_corrupt_and_why(zmqctl, corrupt_store,
                                                redis_store, what, text,
                                                reason):
    corrupt_store(text)

    # what every follower does with it: refuses the whole configuration
    r = zmqd_check(zmqctl, redis_store)
    assert r.returncode == 1 and reason in r.stderr, r.stderr

    r = zmqctl("list", check=0)
    lines = r.stdout.splitlines()
    assert "service\tpub\tactive" in lines
    bad = [l for l in lines if l.startswith("service\tbad\t")]
    assert len(bad) == 1 and bad[0].startswith("service\tbad\tcorrupt\t")
    assert reason in bad[0]
    assert "1 corrupt object" in r.stderr

    r = zmqctl("list", "service", check=0)
    assert any(l.startswith("service\tbad\tcorrupt\t")
               for l in r.stdout.splitlines())
    r = zmqctl("list", "amqp_def", check=0)
    assert r.stdout == "amqp_def\trabbit\tactive\n"

    r = zmqctl("get", "service", "bad", check=1)
    assert "service 'bad' is corrupt: " in r.stderr and reason in r.stderr
    assert "zmqctl delete service bad" in r.stderr
    assert r.stdout == ""

    # the others still read as they are
    assert json.loads(zmqctl("get", "service", "pub", check=0).stdout)[
        "name"] == "pub"


@pytest.mark.parametrize("what,text,reason", CORRUPT,
                         ids=[c[0] for c in CORRUPT])
def test_delete_removes_it(zmqctl, corrupt_store, redis_store, what, text,
                           reason):
    r = corrupt_store(text)
    version = int(r.get("zmq:version"))
    p = r.pubsub()
    p.subscribe("zmq:events")
    p.get_message(timeout=1)

    out = zmqctl("delete", "service", "bad", check=0)
    assert "deleted service 'bad', version %d" % (version + 1) in out.stdout

    assert not r.exists("zmq:obj:service:bad")
    assert r.smembers("zmq:index:service") == {b"pub"}
    assert int(r.get("zmq:version")) == version + 1
    ev = p.get_message(timeout=5)
    assert json.loads(ev["data"]) == {"version": version + 1,
                                      "kind": "service", "name": "bad",
                                      "op": "delete"}
    p.close()

    # followers take the configuration again; zmqctl has nothing to say
    assert zmqd_check(zmqctl, redis_store).returncode == 0
    r2 = zmqctl("list", check=0)
    assert "corrupt" not in r2.stdout + r2.stderr
    zmqctl("get", "service", "bad", check=1)
    assert "does not exist" in zmqctl("delete", "service", "bad",
                                      check=1).stderr


def test_import_replace_overwrites_or_deletes_it(zmqctl, corrupt_store,
                                                 redis_store, write_json):
    r = corrupt_store("{oops")

    # a file with a valid 'bad' overwrites it
    doc = json.loads(json.dumps(GOOD))
    doc["service"].append({"name": "bad", "kind": "publish",
                           "outconn": "out", "routing_key": "b"})
    zmqctl("import", "--replace", write_json("fix.json", doc), check=0)
    got = json.loads(zmqctl("get", "service", "bad", check=0).stdout)
    assert got["routing_key"] == "b"
    assert zmqd_check(zmqctl, redis_store).returncode == 0

    # a file without it deletes it, corrupt or not
    store_corrupt(redis_store, "{oops", "worse")
    assert zmqd_check(zmqctl, redis_store).returncode == 1
    zmqctl("import", "--replace", write_json("good.json", GOOD), check=0)
    assert not r.exists("zmq:obj:service:worse")
    assert not r.exists("zmq:obj:service:bad")
    assert r.smembers("zmq:index:service") == {b"pub"}
    assert zmqd_check(zmqctl, redis_store).returncode == 0


def test_import_without_replace_overwrites_it_and_keeps_others(
        zmqctl, corrupt_store, redis_store, write_json):
    r = corrupt_store("[1, 2]")
    store_corrupt(redis_store, "{oops", "other")

    out = zmqctl("import", write_json("fix.json", {"service": [
        {"name": "bad", "kind": "publish", "outconn": "out",
         "routing_key": "b"}]}), check=0)
    assert "service 'other' is corrupt" in out.stderr
    assert json.loads(r.get("zmq:obj:service:bad"))["routing_key"] == "b"
    # an import without --replace leaves what the file does not name
    assert r.get("zmq:obj:service:other") == b"{oops"


def test_delete_of_a_corrupt_object_still_in_use_is_refused(
        zmqctl, corrupt_store, redis_store, write_json):
    r = corrupt_store("{oops")
    zmqctl("import", write_json("ch.json", {"amqp_channel": [
        {"name": "ch", "def": "rabbit", "queue": "q", "service": "bad"}]}),
        check=0)
    out = zmqctl("delete", "service", "bad", check=1)
    assert "amqp_channel 'ch'" in out.stderr
    assert r.get("zmq:obj:service:bad") == b"{oops"


def test_wipe_removes_corrupt_objects(zmqctl, corrupt_store, redis_store):
    r = corrupt_store("{oops")
    zmqctl("wipe", "--yes", check=0)
    assert r.keys("zmq:obj:*") == []
    assert r.smembers("zmq:index:service") == set()


# ----------------------------------------------------------------- key file

SEALED = {"amqp_def": [{"name": "rabbit", "password": "Kf-secret-5521"}]}


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o602])
def test_a_key_file_others_may_read_is_refused(zmqctl, redis_store,
                                               write_json, tmp_path, mode):
    key = zmqctl.env["ZMQ_KEY_FILE"]
    os.chmod(key, mode)
    want = "permissions %04o are too open" % mode

    r = zmqctl("import", write_json("s.json", SEALED), check=1)
    assert want in r.stderr and "chmod 600" in r.stderr
    assert redis_store.client().keys("zmq:obj:*") == []

    r = subprocess.run([ZMQD, "--config", redis_store.url, "--key-file", key,
                        "--check"], env=zmqctl.env, capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 1 and want in r.stderr

    # nginx -t names the mode too
    if not os.environ.get("ZMQ_SKIP_NGINX") and os.access(NGINX, os.X_OK):
        from conftest import Nginx
        d = tmp_path / "ngx"
        d.mkdir()
        ngx = Nginx(str(d), http="zmq_key_file %s;" % key)
        rc, out = ngx.test_config()
        assert rc != 0 and want in out, out

    # owner-only works again
    os.chmod(key, 0o600)
    zmqctl("import", write_json("s.json", SEALED), check=0)


def test_keygen_writes_0600_whatever_the_umask(zmqctl, tmp_path):
    key = tmp_path / "new.key"
    env = dict(zmqctl.env, ZMQ_KEY_FILE=str(key))
    r = subprocess.run(["sh", "-c", "umask 000 && exec \"$0\" keygen",
                        os.path.join(BUILD, "zmqctl")], env=env,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600

    # --force over a file that was too open leaves it private
    os.chmod(key, 0o644)
    r = subprocess.run(["sh", "-c", "umask 000 && exec \"$0\" keygen "
                        "--force", os.path.join(BUILD, "zmqctl")], env=env,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
