"""The gateway's STOMP publishing proven with a real Java JMS application
(issue 16): a REST channel publishes through a stomp_outconn to Debian's
ActiveMQ 5.17, and the Java consumer (t/jms/JmsTool.java, OpenWire, the
broker's own JMS client) says what a JMS program receives: the message
class, the body bytes, every JMS header and every property.

Also: ActiveMQ killed (kill -9) and restarted while client threads publish
through the gateway; every message answered 202 is in the broker
afterwards (the Java consumer counts them by message id), the gateway
reconnects by itself.
"""

import base64
import concurrent.futures
import threading
import time

import pytest
import requests

from activemq_helpers import activemq, unique_queue  # noqa: F401 (fixture)

LOCATIONS = (
    "location ~ ^/plain/(?<dest>[A-Za-z0-9._-]+)$ { zmq_service plain;"
    " zmq_confirm_timeout 10s; zmq_max_body 1m; }\n"
    "location ~ ^/jms/(?<dest>[A-Za-z0-9._-]+)$ { zmq_service jms;"
    " zmq_confirm_timeout 10s; zmq_max_body 1m; }\n")

JSON_BODY = ('{"order": 42, "name": "h\u00e9llo \u2713 \U0001f600",'
             ' "tags": ["a:b", "c\\\\d", "\\u0000"]}')
BINARY_BODY = bytes(range(256)) + b"\0\0tail\0" + bytes(range(255, -1, -1))


def config(port, heartbeat=10, outconn=None):
    defs = [{"name": "amq", "port": port, "heartbeat": heartbeat},
            {"name": "amq-jms", "port": port, "heartbeat": heartbeat,
             "use_jms": True}]
    outs = [{"name": "to-amq", "def": "amq"},
            {"name": "to-amq-jms", "def": "amq-jms"}]
    for o in outs:
        o.update(outconn or {})
    return {"stomp_def": defs, "stomp_outconn": outs,
            "service": [{"name": "plain", "kind": "publish",
                         "stomp_outconn": "to-amq",
                         "destination": "/queue/$dest"},
                        {"name": "jms", "kind": "publish",
                         "stomp_outconn": "to-amq-jms",
                         "destination": "/queue/$dest"}]}


def stomp_states(gw):
    return {name: o["state"] for w in gw.status()["workers"]
            for name, o in w.get("stomp", {}).items()}


def stomp_stats(gw, name):
    return [w["stomp"][name] for w in gw.status()["workers"]
            if name in w.get("stomp", {})]


def wait_ready(gw, timeout=30.0):
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        seen = stomp_states(gw)
        if seen and all(s == "ready" for s in seen.values()):
            return
        time.sleep(0.05)
    raise AssertionError("stomp connections are %s, not ready" % seen)


@pytest.fixture
def amq_gw(gateway, activemq):
    def start(workers=1, **kw):
        gw = gateway(config(activemq.stomp_port, **kw), LOCATIONS,
                     workers=workers, wait=None)
        wait_ready(gw)
        return gw
    return start


def props(m):
    return {k: (v["type"], v["value"]) for k, v in m["properties"].items()}


HEADERS = {"X-Correlation-Id": "corr-\u00e9-1".encode("utf-8"),
           "X-Priority": "7",
           "X-Expiration": "600000",
           "X-Reply-To": "/queue/replies",
           "X-Zmq-Header-type": "OrderPlaced",
           "X-Zmq-Header-Tenant": "a:b\\c",
           "X-Zmq-Header-Region": "eu west"}


def publish(gw, path, body, content_type, headers=HEADERS):
    h = dict(headers)
    if content_type:
        h["Content-Type"] = content_type
    r = requests.post(gw.url + path, data=body, headers=h, timeout=30)
    assert r.status_code == 202, r.text
    assert r.json()["confirmed"] is True
    return r.json()["message_id"]


def check_jms_headers(m, q, before, after, id_prop, mid):
    assert m["JMSDestination"] == "queue://" + q
    assert m["JMSCorrelationID"] == "corr-\u00e9-1"
    assert m["JMSPriority"] == 7
    assert before + 600000 <= m["JMSExpiration"] <= after + 600000, m
    assert m["JMSType"] == "OrderPlaced"
    assert m["JMSReplyTo"] == "queue://replies"
    assert m["JMSDeliveryMode"] == 2                    # persistent
    assert m["JMSMessageID"].startswith("ID:")
    assert not m["JMSRedelivered"]
    p = props(m)
    # every X-Zmq-Header-* as a String property, escapes undone
    assert p["Tenant"] == ("String", "a:b\\c")
    assert p["Region"] == ("String", "eu west")
    # the gateway's message id (the 202's), as a String property
    assert p[id_prop] == ("String", mid)
    return p


def test_plain_definition_bodies_and_jms_headers(amq_gw, activemq):
    """Without use_jms every body arrives as a BytesMessage (the SEND
    always carries content-length), byte for byte; the JMS headers and
    properties as mapped."""
    gw = amq_gw()
    q = unique_queue("gw.plain")
    before = int(time.time() * 1000)
    mids = [publish(gw, "/plain/" + q, JSON_BODY.encode("utf-8"),
                    "application/json"),
            publish(gw, "/plain/" + q, BINARY_BODY,
                    "application/octet-stream")]
    after = int(time.time() * 1000)
    got = activemq.consume(q, count=2, idle=3)
    assert len(got) == 2, got
    j, b = got
    assert j["class"] == "BytesMessage"
    assert j["body_bytes"] == JSON_BODY.encode("utf-8")
    assert b["class"] == "BytesMessage"
    assert b["body_bytes"] == BINARY_BODY
    for m, mid, ct in ((j, mids[0], "application/json"),
                       (b, mids[1], "application/octet-stream")):
        p = check_jms_headers(m, q, before, after, "amqp-message-id", mid)
        assert p["content-type"] == ("String", ct)
        assert "amq-msg-type" not in p
        # what the STOMP layer consumed is not left as a property
        for gone in ("destination", "receipt", "content-length",
                     "persistent", "priority", "expires", "correlation-id",
                     "reply-to", "type"):
            assert gone not in p, (gone, p)
    assert activemq.queue_size(q) == 0


def test_use_jms_json_is_a_text_message_binary_a_bytes_message(amq_gw,
                                                               activemq):
    gw = amq_gw()
    q = unique_queue("gw.jms")
    before = int(time.time() * 1000)
    mids = [publish(gw, "/jms/" + q, JSON_BODY.encode("utf-8"),
                    "application/json; charset=utf-8"),
            publish(gw, "/jms/" + q, BINARY_BODY,
                    "application/octet-stream"),
            publish(gw, "/jms/" + q, "plain text \u2713".encode("utf-8"),
                    "text/plain"),
            publish(gw, "/jms/" + q, b"\x00\x01no type", None)]
    after = int(time.time() * 1000)
    got = activemq.consume(q, count=4, idle=3)
    assert len(got) == 4, got
    j, b, t, n = got

    assert j["class"] == "TextMessage"
    assert j["body"] == JSON_BODY
    assert t["class"] == "TextMessage"
    assert t["body"] == "plain text \u2713"
    assert b["class"] == "BytesMessage"
    assert b["body_bytes"] == BINARY_BODY
    assert n["class"] == "BytesMessage"
    assert n["body_bytes"] == b"\x00\x01no type"
    for m, mid in zip(got, mids):
        p = check_jms_headers(m, q, before, after, "zmq_message_id", mid)
        # nothing of the STOMP layer is left as a property
        assert set(p) == {"Tenant", "Region", "zmq_message_id"} | (
            {"content-type"} if m is not n else set()), p
    assert props(j)["content-type"] == ("String",
                                        "application/json; charset=utf-8")
    assert activemq.queue_size(q) == 0


def test_use_jms_text_with_nul_or_astral_characters(amq_gw, activemq):
    """A text body is sent as Java's modified UTF-8: a NUL and characters
    beyond U+FFFF arrive in the Java String as sent; a text/* body that is
    not UTF-8 arrives as a BytesMessage, byte for byte."""
    gw = amq_gw()
    q = unique_queue("gw.utf")
    text = "a\0b \U0001f600\U0010ffff \u00e9"
    publish(gw, "/jms/" + q, text.encode("utf-8"), "text/plain", headers={})
    publish(gw, "/jms/" + q, b"caf\xe9", "text/plain; charset=iso-8859-1",
            headers={})
    t, b = activemq.consume(q, count=2, idle=3)
    assert t["class"] == "TextMessage"
    assert t["body"] == text
    assert set(props(t)) == {"zmq_message_id", "content-type"}
    assert b["class"] == "BytesMessage"
    assert b["body_bytes"] == b"caf\xe9"


def test_defaults_and_transient_delivery(amq_gw, activemq):
    """No X- headers: persistent, ActiveMQ's default priority 4, no
    expiration, no JMSType, no reply-to; X-Delivery-Mode: 1 is a
    non-persistent message; the outconn's priority and expires apply."""
    gw = amq_gw()
    q = unique_queue("gw.defaults")
    publish(gw, "/jms/" + q, b"{}", "application/json", headers={})
    publish(gw, "/jms/" + q, b"{}", "application/json",
            headers={"X-Delivery-Mode": "1"})
    got = activemq.consume(q, count=2, idle=3)
    assert len(got) == 2, got
    by_mode = {m["JMSDeliveryMode"]: m for m in got}
    assert set(by_mode) == {1, 2}
    for m in got:
        assert m["class"] == "TextMessage" and m["body"] == "{}"
        assert m["JMSPriority"] == 4
        assert m["JMSExpiration"] == 0
        assert m["JMSType"] is None
        assert m["JMSReplyTo"] is None
        assert m["JMSCorrelationID"] is None

    gw = amq_gw(outconn={"priority": 2, "expires": 30000,
                         "persistent": False})
    before = int(time.time() * 1000)
    publish(gw, "/plain/" + q, b"x", None, headers={})
    publish(gw, "/plain/" + q, b"y", None,
            headers={"X-Delivery-Mode": "persistent", "X-Priority": "9"})
    after = int(time.time() * 1000)
    x, y = sorted(activemq.consume(q, count=2, idle=3),
                  key=lambda m: m["body_bytes"])
    assert x["JMSDeliveryMode"] == 1 and x["JMSPriority"] == 2
    assert before + 30000 <= x["JMSExpiration"] <= after + 30000
    assert y["JMSDeliveryMode"] == 2 and y["JMSPriority"] == 9


def test_reply_to_without_a_prefix_is_only_a_property(amq_gw, activemq):
    """ActiveMQ makes JMSReplyTo only of /queue/ or /topic/ names."""
    gw = amq_gw()
    q = unique_queue("gw.replyto")
    publish(gw, "/jms/" + q, b"{}", "application/json",
            headers={"X-Reply-To": "/topic/news"})
    publish(gw, "/jms/" + q, b"{}", "application/json",
            headers={"X-Reply-To": "replies"})
    a, b = activemq.consume(q, count=2, idle=3)
    assert a["JMSReplyTo"] == "topic://news"
    assert b["JMSReplyTo"] is None
    assert props(b)["reply-to"] == ("String", "replies")


# ------------------------------------------------- kill -9 under load

def test_activemq_killed_and_restarted_under_load(amq_gw, activemq):
    """N client threads publish persistent messages through the gateway
    (two workers) while the broker is killed with SIGKILL and started
    again on the same data. Every message answered 202 must be in the
    broker afterwards; one answered otherwise may or may not be."""
    gw = amq_gw(workers=2)
    q = unique_queue("gw.kill")
    threads, stop = 8, threading.Event()
    lock = threading.Lock()
    ok, failed, codes = {}, [], {}

    def client(k):
        s = requests.Session()
        i = 0
        while not stop.is_set():
            body = ("{\"client\": %d, \"n\": %d}" % (k, i)).encode()
            i += 1
            try:
                r = s.post(gw.url + "/jms/" + q, data=body, timeout=30,
                           headers={"Content-Type": "application/json"})
                code = r.status_code
            except requests.RequestException:
                code = "exception"
                s = requests.Session()
            with lock:
                codes[code] = codes.get(code, 0) + 1
                if code == 202:
                    ok[r.json()["message_id"]] = body
                else:
                    failed.append(body)
            if code != 202:
                time.sleep(0.05)

    with concurrent.futures.ThreadPoolExecutor(threads) as ex:
        futs = [ex.submit(client, k) for k in range(threads)]
        time.sleep(3)
        before_kill = len(ok)
        activemq.kill()
        time.sleep(2)
        during = dict(codes)
        activemq.start()
        # the gateway reconnects by itself, and 202s come again
        deadline = time.monotonic() + 30
        while len(ok) <= before_kill + 50 and time.monotonic() < deadline:
            time.sleep(0.1)
        n_after = len(ok)
        time.sleep(2)
        stop.set()
        for f in futs:
            f.result(60)

    print("answers:", codes, "202 before the kill:", before_kill)
    assert before_kill > 50, codes
    assert n_after > before_kill + 50, ("no 202 after the restart", codes)
    assert any(c != 202 for c in codes), \
        ("the kill was never seen", during, codes)
    wait_ready(gw)
    reconnects = sum(st["reconnects"]
                     for st in stomp_stats(gw, "to-amq-jms"))
    assert reconnects >= 1

    got = activemq.consume(q, idle=5, timeout=300)
    seen = {}
    for m in got:
        mid = m["properties"]["zmq_message_id"]["value"]
        seen[mid] = seen.get(mid, 0) + 1
        assert m["class"] == "TextMessage"
        assert m["JMSDeliveryMode"] == 2
    missing = set(ok) - set(seen)
    assert not missing, ("answered 202 but not in the broker: %d of %d"
                         % (len(missing), len(ok)))
    bodies = {m["properties"]["zmq_message_id"]["value"]: m["body"]
              for m in got}
    assert all(bodies[mid] == body.decode() for mid, body in ok.items())
    # a 202 message stored twice would be a duplicate the client never sent
    # twice: the gateway sends each message once per request
    dups = [mid for mid, n in seen.items() if n > 1]
    extra = set(seen) - set(ok)
    print("in the broker: %d (%d answered 202, %d others of %d non-202, "
          "%d duplicates)" % (len(seen), len(ok), len(extra), len(failed),
                              len(dups)))
    assert len(extra) <= len(failed)
    assert not dups
    gw.ngx.forget_problems()
