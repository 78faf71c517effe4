"""zmqd follows its configuration reliably (issue 10, defect 9): every edit
of a file: source is applied, even two within the same second or one that
keeps the file's size and mtime; a configuration that does not validate,
from a file or from Redis, is logged once with its reason and the running
one goes on; a refused Redis version is not downloaded again and again,
not even after a reconnect, and the next valid version is applied."""

import json
import os
import time

from test_zmqd import config, publish, wait_for
from zmqd_helpers import zmqd  # noqa: F401

APPLIED = "configuration version 0 applied"


def file_config(port, queue, key, channel="in"):
    """One channel on queue whose redis service writes to the list key."""
    return json.dumps(config(
        port, [{"name": channel, "queue": queue, "service": "st"}],
        [{"name": "st", "kind": "redis", "key": key}]), indent=1)


def refusals(z):
    return [line for line in z.text().splitlines() if " refused" in line]


def delivered_to(rabbitmq, queue, redis_store, key, body):
    """Publishes body and waits until the redis service put it in key."""
    r = redis_store.client()
    publish(rabbitmq, queue, [body], message_id=body.decode())
    wait_for(lambda: body in r.lrange(key, 0, -1))


def set_mtime(path, ns):
    os.utime(path, ns=(ns, ns))
    assert os.stat(path).st_mtime_ns == ns


def test_two_edits_within_the_same_second_are_both_applied(
        rabbitmq, queue, redis_store, zmqd, tmp_path):
    path = tmp_path / "same-second.json"
    path.write_text(file_config(rabbitmq.port, queue.name, "key1"))
    second = int(time.time()) * 10**9
    set_mtime(path, second - 10 * 10**9)
    z = zmqd(source="file:%s" % path)
    z.wait_log(APPLIED)
    z.wait_log("consuming queue '%s'" % queue.name)
    delivered_to(rabbitmq, queue.name, redis_store, "key1", b"m1")

    # first edit: at .100 of a second; zmqd applies it
    path.write_text(file_config(rabbitmq.port, queue.name, "key2"))
    set_mtime(path, second + 100 * 10**6)
    z.wait_log(APPLIED, count=2)
    delivered_to(rabbitmq, queue.name, redis_store, "key2", b"m2")

    # second edit, same size, at .600 of the same second
    path.write_text(file_config(rabbitmq.port, queue.name, "key3"))
    set_mtime(path, second + 600 * 10**6)
    z.wait_log(APPLIED, count=3, timeout=5)
    delivered_to(rabbitmq, queue.name, redis_store, "key3", b"m3")
    assert redis_store.client().lrange("key2", 0, -1) == [b"m2"]
    assert not refusals(z), z.text()


def test_an_edit_that_keeps_size_and_mtime_is_applied(
        rabbitmq, queue, redis_store, zmqd, tmp_path):
    """As 'rsync -t', 'cp -p' or two writes within one clock tick leave
    it: same inode, same size, same mtime to the nanosecond."""
    path = tmp_path / "same-stat.json"
    path.write_text(file_config(rabbitmq.port, queue.name, "keyA"))
    z = zmqd(source="file:%s" % path)
    z.wait_log(APPLIED)
    z.wait_log("consuming queue '%s'" % queue.name)
    before = os.stat(path)

    path.write_text(file_config(rabbitmq.port, queue.name, "keyB"))
    set_mtime(path, before.st_mtime_ns)
    after = os.stat(path)
    assert (after.st_ino, after.st_size) == (before.st_ino, before.st_size)

    z.wait_log(APPLIED, count=2, timeout=5)
    delivered_to(rabbitmq, queue.name, redis_store, "keyB", b"b1")
    assert redis_store.client().llen("keyA") == 0


def test_an_invalid_file_edit_is_logged_once_and_the_old_one_runs(
        rabbitmq, queue, redis_store, zmqd, tmp_path):
    path = tmp_path / "invalid.json"
    good = file_config(rabbitmq.port, queue.name, "kept")
    path.write_text(good)
    z = zmqd(source="file:%s" % path)
    z.wait_log(APPLIED)
    z.wait_log("consuming queue '%s'" % queue.name)

    # a reference that does not resolve
    doc = json.loads(good)
    doc["amqp_channel"][0]["service"] = "nope"
    path.write_text(json.dumps(doc))
    time.sleep(3)
    lines = refusals(z)
    assert len(lines) == 1, z.text()
    assert "file:%s" % path in lines[0]
    assert "service 'nope' does not exist" in lines[0]
    delivered_to(rabbitmq, queue.name, redis_store, "kept", b"k1")

    # then a file that is not JSON: a new refusal, logged once too
    path.write_text(good[:len(good) // 2])
    time.sleep(3)
    lines = refusals(z)
    assert len(lines) == 2, z.text()
    assert "invalid JSON" in lines[1] or "JSON" in lines[1], lines[1]

    # the file goes away for a moment: said once
    os.unlink(path)
    time.sleep(2)
    gone = [line for line in z.text().splitlines()
            if "cannot be read" in line]
    assert len(gone) == 1 and "No such file" in gone[0], z.text()
    delivered_to(rabbitmq, queue.name, redis_store, "kept", b"k2")

    # a valid edit is applied; nothing was applied in between
    assert z.text().count(APPLIED) == 1
    path.write_text(file_config(rabbitmq.port, queue.name, "fixed"))
    z.wait_log(APPLIED, count=2, timeout=5)
    delivered_to(rabbitmq, queue.name, redis_store, "fixed", b"f1")
    assert len(refusals(z)) == 2, z.text()


def test_a_refused_redis_version_is_logged_once_and_not_downloaded_again(
        rabbitmq, queue, redis_store, zmqd, zmqctl, tmp_path):
    doc = config(rabbitmq.port,
                 [{"name": "in", "queue": queue.name, "service": "st"}],
                 [{"name": "st", "kind": "redis", "key": "r1"}])
    z = zmqd(doc)
    z.wait_log("consuming queue '%s'" % queue.name)
    r = redis_store.client()
    running = int(r.get("zmq:version"))

    # an object that does not validate, written past zmqctl
    r.set("zmq:obj:service:bad", "{\"name\": \"bad\", ")
    r.sadd("zmq:index:service", "bad")
    refused = r.incr("zmq:version")
    time.sleep(3)
    lines = refusals(z)
    assert len(lines) == 1, z.text()
    assert "version %d" % refused in lines[0]
    assert "keeping version %d" % running in lines[0]
    assert "invalid JSON" in lines[0] and "bad" in lines[0]
    delivered_to(rabbitmq, queue.name, redis_store, "r1", b"x1")

    # a reconnect does not bring it back either
    before = z.text().count("running on configuration version")
    r.execute_command("CLIENT", "KILL", "TYPE", "normal")
    z.wait_log("running on configuration version", count=before + 1)
    time.sleep(2)
    assert len(refusals(z)) == 1, z.text()

    # the next valid version is applied
    doc["service"][0]["key"] = "r2"
    p = tmp_path / "fixed.json"
    p.write_text(json.dumps(doc))
    zmqctl("import", "--replace", p, check=0)
    fixed = int(r.get("zmq:version"))
    z.wait_log("configuration version %d applied" % fixed)
    delivered_to(rabbitmq, queue.name, redis_store, "r2", b"x2")
    assert len(refusals(z)) == 1, z.text()
