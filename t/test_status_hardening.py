"""zmq_status reveals no address (issue 9, defect 8): not in a live
connection's entry, not in the name of a replaced connection that drains
its confirms, which reads "<name> (draining, generation N)" and keeps that
name while it drains. Outgoing connections are named whole in status: two
names that share their first 63 bytes each keep their own counters."""

import concurrent.futures
import json
import re
import time
import uuid

import pytest
import requests

from conftest import STATUS_LOCATION
from fake_amqp import FakeAmqp

PUB = "location = /pub { zmq_service svc; }\n"

# "0x...", a run of 8 or more hex digits with a letter in it (NGINX's %p
# prints 16 hex digits without 0x), or a number of 11 digits or more
# (an address printed in decimal; times and counters are shorter)
ADDRESS = re.compile(r"0[xX][0-9a-fA-F]"
                     r"|(?<![0-9A-Za-z])(?=[0-9]*[a-fA-F])[0-9a-fA-F]{8,}"
                     r"(?![0-9A-Za-z])"
                     r"|(?<![0-9A-Za-z])[0-9]{11,}(?![0-9A-Za-z])")


def status_text(url):
    r = requests.get(url + "/zmq/status", timeout=5)
    assert r.status_code == 200
    return r.text


def assert_no_address(text):
    found = ADDRESS.findall(text)
    assert not found, "status shows what looks like an address: %s in %s" % (
        found, text)


def test_the_address_pattern_catches_what_nginx_prints():
    # the old draining name, and other ways an address can be printed
    assert ADDRESS.search('{"out (draining 00007FA0299E10E0)": {}}')
    assert ADDRESS.search('"at 0x7f12"')
    assert ADDRESS.search('"p": 94367123456000')
    assert not ADDRESS.search('{"since": 1712345678, "pid": 4242, '
                              '"out (draining, generation 3)": {}}')


def test_a_draining_connection_has_a_stable_name_and_no_address(
        nginx_factory, zmqctl, redis_store, tmp_path):
    slow = FakeAmqp(ack_delay=3.0)
    try:
        doc = {"amqp_def": [{"name": "rabbit", "host": "127.0.0.1",
                             "port": slow.port, "heartbeat": 10}],
               "amqp_outconn": [{"name": "out", "def": "rabbit"}],
               "service": [{"name": "svc", "kind": "publish",
                            "outconn": "out", "routing_key": "q"}]}

        def write():
            p = tmp_path / ("c%s.json" % uuid.uuid4().hex[:6])
            p.write_text(json.dumps(doc))
            r = zmqctl("import", "--replace", p, check=0)
            return int(r.stdout.rsplit("version", 1)[1])

        def status():
            text = status_text(ngx.url)
            assert_no_address(text)
            return json.loads(text)

        def wait(pred, what, timeout=10.0):
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                st = status()
                if pred(st):
                    return st
                time.sleep(0.05)
            raise AssertionError("%s: %s" % (what, status()))

        v = write()
        ngx = nginx_factory(
            http="zmq_key_file %s;\nzmq_config redis://127.0.0.1:%d/0;\n"
                 "zmq_config_poll 500ms;" % (zmqctl.env["ZMQ_KEY_FILE"],
                                             redis_store.port),
            server=STATUS_LOCATION + PUB, workers=1)
        ngx.start()
        wait(lambda s: s["workers"]
              and s["workers"][0]["config_version"] == v
              and s["workers"][0]["outconns"].get("out", {})
              .get("state") == "ready", "not ready")

        with concurrent.futures.ThreadPoolExecutor(1) as ex:
            waiting = ex.submit(requests.post, ngx.url + "/pub",
                                data=b"in flight", timeout=30)
            deadline = time.monotonic() + 5
            while not slow.published and time.monotonic() < deadline:
                time.sleep(0.02)
            assert slow.published

            # the definition changes while the message waits for its ack
            doc["amqp_def"][0]["heartbeat"] = 20
            v2 = write()
            st = wait(lambda s: s["workers"][0]["config_version"] == v2,
                      "not applied")

            names = set(st["workers"][0]["outconns"])
            assert "out" in names, names
            draining = [n for n in names if n != "out"]
            # the worker opened "out" once before: generation 1
            assert draining == ["out (draining, generation 1)"], names
            draining = draining[0]
            entry = st["workers"][0]["outconns"][draining]
            assert entry["state"] == "draining"
            assert entry["inflight"] == 1 and entry["published"] == 1

            # the same name on every look while it drains
            for _ in range(5):
                names = set(status()["workers"][0]["outconns"])
                assert draining in names or waiting.done(), names
                time.sleep(0.1)

            assert waiting.result().status_code == 202

        # drained and gone; what is left shows no address either
        wait(lambda s: set(s["workers"][0]["outconns"]) == {"out"},
             "the drained connection stays")
    finally:
        slow.close()


def test_names_sharing_63_bytes_keep_their_own_counters(gateway):
    prefix = "p" * 63
    long_name = "n" * 200                # the longest name the model takes
    names = [prefix + "-one", prefix + "-two", long_name]
    fakes = [FakeAmqp() for _ in names]
    try:
        doc = {"amqp_def": [], "amqp_outconn": [], "service": []}
        for i, (name, fake) in enumerate(zip(names, fakes)):
            doc["amqp_def"].append({"name": "d%d" % i, "host": "127.0.0.1",
                                    "port": fake.port})
            doc["amqp_outconn"].append({"name": name, "def": "d%d" % i})
            doc["service"].append({"name": "s%d" % i, "kind": "publish",
                                   "outconn": name, "routing_key": "q"})
        gw = gateway(doc, "".join("location = /pub/s%d { zmq_service s%d; }\n"
                                  % (i, i) for i in range(len(names))),
                     wait=None)
        for name in names:
            gw.wait_state("ready", name=name)

        for i, n in enumerate((1, 2, 3)):
            for _ in range(n):
                r = requests.post(gw.url + "/pub/s%d" % i, data=b"m",
                                  timeout=10)
                assert r.status_code == 202, r.text

        text = status_text(gw.url)
        assert_no_address(text)
        ocs = json.loads(text)["workers"][0]["outconns"]
        assert set(ocs) == set(names)
        assert [ocs[name]["published"] for name in names] == [1, 2, 3]
        assert [ocs[name]["confirmed"] for name in names] == [1, 2, 3]
        assert [len(f.published) for f in fakes] == [1, 2, 3]
    finally:
        for f in fakes:
            f.close()
