"""Invoke/retry in zmqd (issue 14, item 3, /work/PROTO14.md): zmqd
consumes the queue of every active invoke service and runs each
invocation in its mode: sync (retries, then the first success or the last
error), sync_async (the first attempt's answer, or 202 and the rest in the
background), async (background only); at the end of the background work
the callback gets Zato's fields. pika plays the gateway: it publishes the
invocations with the PROTO14 headers and takes the replies by direct
reply-to; an HTTP endpoint is the target and records the callbacks."""

import datetime
import http.server
import json
import os
import re
import signal
import threading
import uuid

import pika
import pytest

from test_zmqd import assert_acked, broker_counts, wait_for
from zmqd_helpers import zmqd  # noqa: F401


TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}$")


class Paths(http.server.BaseHTTPRequestHandler):
    """Each path answers server.paths[path](body) = (status, type, body);
    every request is recorded in server.seen[path]."""

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with self.server.lock:
            self.server.seen.setdefault(self.path, []).append(
                (dict(self.headers), body))
            code, ctype, out = self.server.paths.get(
                self.path, lambda b: (404, "text/plain", b"no such path"))(
                    body)
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args):
        pass


@pytest.fixture
def web():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Paths)
    server.lock = threading.Lock()
    server.seen = {}
    server.paths = {"/cb": lambda b: (200, "text/plain", b"thanks")}
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    server.url = "http://127.0.0.1:%d" % server.server_address[1]
    yield server
    server.shutdown()
    server.server_close()


def failing(times, ok=(200, "application/json", b'{"result": 42}')):
    """A target that fails (503) the first `times` calls, then answers
    ok."""
    n = [0]

    def answer(body):
        n[0] += 1
        if n[0] <= times:
            return 503, "text/plain", b"not yet %d" % n[0]
        return ok
    return answer


def invoke_config(rabbitmq, web, queue, **inv):
    """Services: 'tgt' (http /target), 'cb' (http /cb), the invoke service
    'inv' on queue (callback cb, context) with inv's fields."""
    svc = {"name": "inv", "kind": "invoke", "outconn": "out",
           "queue": queue, "target": "tgt", "callback": "cb",
           "repeats": 3, "seconds": 1, "context": {"tenant": "t1",
                                                    "n": [1, 2]}}
    svc.update(inv)
    svc = {k: v for k, v in svc.items() if v is not None}
    return {
        "amqp_def": [{"name": "rabbit", "host": "127.0.0.1",
                      "port": rabbitmq.port, "username": "guest",
                      "password": "guest", "heartbeat": 10}],
        "amqp_outconn": [{"name": "out", "def": "rabbit"}],
        "http_outconn": [{"name": "ep", "url": web.url, "tls": False}],
        "service": [
            {"name": "tgt", "kind": "http", "outconn": "ep",
             "path": "/target"},
            {"name": "cb", "kind": "http", "outconn": "ep", "path": "/cb"},
            svc],
    }


def now_ts():
    return datetime.datetime.utcnow().strftime("%Y-%m-%dT%H:%M:%S.%f")


class Gateway:
    """What the gateway does with an invocation, done with pika."""

    def __init__(self, rabbitmq):
        self.conn = rabbitmq.connection()
        self.ch = self.conn.channel()
        self.replies = {}
        self.ch.basic_consume("amq.rabbitmq.reply-to", self._on_reply,
                              auto_ack=True)
        self.ch.confirm_delivery()

    def _on_reply(self, ch, method, props, body):
        self.replies.setdefault(props.correlation_id, []).append(
            (props, body))

    def invoke(self, queue, name, mode, body, wait=None, ts=None,
               content_type="application/json"):
        cid = str(uuid.uuid4())
        wait = mode != "async" if wait is None else wait
        self.ch.basic_publish("", queue, body, pika.BasicProperties(
            reply_to="amq.rabbitmq.reply-to" if wait else None,
            correlation_id=cid, message_id=cid, delivery_mode=2,
            content_type=content_type,
            headers={"x-zmq-invoke": name, "x-zmq-mode": mode,
                     "x-zmq-req-ts": ts or now_ts()}), mandatory=True)
        return cid

    def reply(self, cid, timeout=30):
        def got():
            self.conn.process_data_events(time_limit=0.1)
            return self.replies.get(cid)
        return wait_for(got, timeout)[0]

    def one_reply(self, cid, seconds=0.5):
        """No second reply comes for cid."""
        self.conn.process_data_events(time_limit=seconds)
        assert len(self.replies.get(cid, [])) == 1, self.replies.get(cid)

    def close(self):
        self.conn.close()


@pytest.fixture
def gw(rabbitmq):
    g = Gateway(rabbitmq)
    yield g
    g.close()


@pytest.fixture
def iq(rabbitmq):
    """A fresh invocation queue name; zmqd declares it. Deleted after,
    with its dead letters."""
    name = "inv." + uuid.uuid4().hex[:10]
    yield name
    conn = rabbitmq.connection()
    ch = conn.channel()
    ch.queue_delete(name)
    ch.queue_delete(name + ".dead")
    conn.close()


def status(props):
    return (props.headers or {}).get("x-zmq-status", 200)


def callbacks(web):
    with web.lock:
        return [json.loads(b) for h, b in web.seen.get("/cb", [])]


def check_callback(doc, cid, req_ts, ok, response, repeats=3, seconds=1):
    """Zato's fields, one by one."""
    assert set(doc) == {"ok", "cid", "source", "target", "retry_seconds",
                        "retry_repeats", "context", "req_ts_utc",
                        "resp_ts_utc", "response"}
    assert doc["ok"] is ok
    assert doc["cid"] == cid
    assert doc["source"] == "inv"
    assert doc["target"] == "tgt"
    assert doc["retry_seconds"] == seconds
    assert doc["retry_repeats"] == repeats
    assert doc["context"] == {"tenant": "t1", "n": [1, 2]}
    assert doc["req_ts_utc"] == req_ts
    assert TS.match(doc["resp_ts_utc"]), doc["resp_ts_utc"]
    assert doc["resp_ts_utc"] >= req_ts
    assert doc["response"] == response


def test_the_queue_is_declared_durable_by_zmqd(rabbitmq, redis_store, zmqd,
                                               web, iq):
    z = zmqd(invoke_config(rabbitmq, web, iq))
    z.wait_log("consuming queue '%s'" % iq)
    conn = rabbitmq.connection()
    # a passive declare with durable=True succeeds only on a durable queue
    conn.channel().queue_declare(iq, durable=True, passive=True)
    r = rabbitmq.ctl("list_queues", "-q", "--no-table-headers", "name",
                     "durable")
    assert "%s\ttrue" % iq in r.stdout
    conn.close()


def test_sync_retries_and_replies_the_first_success(rabbitmq, redis_store,
                                                    zmqd, web, gw, iq):
    """The target fails twice, then answers: the caller gets the third
    answer; the callback is not called in sync mode."""
    web.paths["/target"] = failing(2)
    z = zmqd(invoke_config(rabbitmq, web, iq, mode="sync"))
    z.wait_log("consuming queue '%s'" % iq)
    cid = gw.invoke(iq, "inv", "sync", b'{"q": 1}')
    props, body = gw.reply(cid)
    assert status(props) == 200
    assert props.content_type == "application/json"
    assert json.loads(body) == {"result": 42}
    assert len(web.seen["/target"]) == 3
    for h, b in web.seen["/target"]:
        assert b == b'{"q": 1}'
        assert h["X-Message-Id"] == cid
        assert "X-Reply-To" not in h        # the caller's, not the target's
    assert_acked(rabbitmq, iq)
    assert callbacks(web) == []
    gw.one_reply(cid)


def test_sync_exhausting_its_repeats_replies_the_last_error(
        rabbitmq, redis_store, zmqd, web, gw, iq):
    web.paths["/target"] = failing(100)
    z = zmqd(invoke_config(rabbitmq, web, iq, mode="sync", seconds=0))
    z.wait_log("consuming queue '%s'" % iq)
    cid = gw.invoke(iq, "inv", "sync", b"x")
    props, body = gw.reply(cid)
    assert status(props) == 502
    doc = json.loads(body)
    assert doc["error"] == "target_failed"
    assert "status 503" in doc["message"]
    assert len(web.seen["/target"]) == 3
    assert_acked(rabbitmq, iq)
    assert callbacks(web) == []
    # not a dead letter: the caller was told
    n = rabbitmq.connection()
    assert n.channel().queue_declare(iq + ".dead", durable=True) \
        .method.message_count == 0
    n.close()


def test_sync_async_202_then_background_retries_and_the_callback(
        rabbitmq, redis_store, zmqd, web, gw, iq):
    web.paths["/target"] = failing(2)
    z = zmqd(invoke_config(rabbitmq, web, iq, mode="sync_async"))
    z.wait_log("consuming queue '%s'" % iq)
    ts = now_ts()
    cid = gw.invoke(iq, "inv", "sync_async", b'{"q": 2}', ts=ts)
    props, body = gw.reply(cid)
    assert status(props) == 202
    assert json.loads(body) == {"accepted": True, "cid": cid}
    wait_for(lambda: callbacks(web), 20)
    assert len(web.seen["/target"]) == 3
    [doc] = callbacks(web)
    check_callback(doc, cid, ts, True, {"result": 42})
    h, _ = web.seen["/cb"][0]
    assert h["Content-Type"] == "application/json"
    assert_acked(rabbitmq, iq)
    gw.one_reply(cid)


def test_sync_async_first_success_answers_without_callback(
        rabbitmq, redis_store, zmqd, web, gw, iq):
    web.paths["/target"] = failing(0, (201, "text/plain", b"made"))
    z = zmqd(invoke_config(rabbitmq, web, iq, mode="sync_async"))
    z.wait_log("consuming queue '%s'" % iq)
    cid = gw.invoke(iq, "inv", "sync_async", b"x")
    props, body = gw.reply(cid)
    assert (status(props), props.content_type, body) == (201, "text/plain",
                                                         b"made")
    assert_acked(rabbitmq, iq)
    assert callbacks(web) == []


def test_async_background_retries_then_the_callback(rabbitmq, redis_store,
                                                    zmqd, web, gw, iq):
    """No reply_to: nobody waits; the target fails twice, then succeeds
    (a text answer: the callback's response is a string); the callback
    comes once, then the invocation is acked."""
    web.paths["/target"] = failing(2, (200, "text/plain", b"plain text"))
    z = zmqd(invoke_config(rabbitmq, web, iq, mode="async"))
    z.wait_log("consuming queue '%s'" % iq)
    ts = now_ts()
    cid = gw.invoke(iq, "inv", "async", b"payload", ts=ts)
    wait_for(lambda: callbacks(web), 20)
    [doc] = callbacks(web)
    check_callback(doc, cid, ts, True, "plain text")
    assert len(web.seen["/target"]) == 3
    assert_acked(rabbitmq, iq)
    assert gw.replies == {}


def test_async_target_never_succeeds_callback_says_so(rabbitmq, redis_store,
                                                      zmqd, web, gw, iq):
    web.paths["/target"] = failing(100)
    z = zmqd(invoke_config(rabbitmq, web, iq, mode="async", seconds=0,
                           repeats=2))
    z.wait_log("consuming queue '%s'" % iq)
    ts = now_ts()
    cid = gw.invoke(iq, "inv", "async", b"x", ts=ts)
    wait_for(lambda: callbacks(web), 20)
    [doc] = callbacks(web)
    assert doc["response"]["error"] == "target_failed"
    assert "status 503" in doc["response"]["message"]
    doc["response"] = None
    check_callback(doc, cid, ts, False, None, repeats=2, seconds=0)
    assert len(web.seen["/target"]) == 2
    assert_acked(rabbitmq, iq)


def test_a_callback_that_never_succeeds_dead_letters_the_invocation(
        rabbitmq, redis_store, zmqd, web, gw, iq):
    web.paths["/target"] = failing(0)
    web.paths["/cb"] = lambda b: (500, "text/plain", b"cb down")
    z = zmqd(invoke_config(rabbitmq, web, iq, mode="async", seconds=0))
    z.wait_log("consuming queue '%s'" % iq)
    cid = gw.invoke(iq, "inv", "async", b"x")
    conn = rabbitmq.connection()
    ch = conn.channel()
    ch.queue_declare(iq + ".dead", durable=True)

    def dead():
        m, p, b = ch.basic_get(iq + ".dead", auto_ack=True)
        return (p, b) if m else None
    p, b = wait_for(dead, 20)
    conn.close()
    assert b == b"x" and p.message_id == cid
    assert "callback 'cb' failed 3 time(s)" in p.headers["x-zmq-error"]
    assert len(web.seen["/cb"]) == 3
    assert len(web.seen["/target"]) == 1
    assert_acked(rabbitmq, iq)


def test_unknown_invoke_service_404_and_dead_letter(rabbitmq, redis_store,
                                                    zmqd, web, gw, iq):
    z = zmqd(invoke_config(rabbitmq, web, iq))
    z.wait_log("consuming queue '%s'" % iq)
    cid = gw.invoke(iq, "nosuch", "sync", b"body")
    props, body = gw.reply(cid)
    assert status(props) == 404
    assert json.loads(body)["error"] == "unknown_service"
    conn = rabbitmq.connection()
    ch = conn.channel()
    m, p, b = wait_for(lambda: (lambda r: r if r[0] else None)(
        ch.basic_get(iq + ".dead", auto_ack=True)))
    assert b == b"body" and p.message_id == cid
    assert "nosuch" in p.headers["x-zmq-error"]
    conn.close()
    assert_acked(rabbitmq, iq)
    assert "/target" not in web.seen


def test_kill_9_during_background_retries_resumes_after_restart(
        rabbitmq, redis_store, zmqd, web, gw, iq):
    """zmqd killed with SIGKILL while an async invocation waits for its
    next retry: the invocation was never acked, the broker delivers it
    again to the restarted zmqd, which runs it from attempt 1 and then
    calls the callback (at least once: deduplicated on cid)."""
    web.paths["/target"] = failing(2)
    doc = invoke_config(rabbitmq, web, iq, mode="async", seconds=3,
                        repeats=5)
    z = zmqd(doc)
    z.wait_log("consuming queue '%s'" % iq)
    ts = now_ts()
    cid = gw.invoke(iq, "inv", "async", b"resume me", ts=ts)
    z.wait_log("target 'tgt' failed (attempt 1 of 5)")
    ready, unacked, _ = broker_counts(rabbitmq, iq)
    assert (ready, unacked) == (0, 1)
    os.kill(z.proc.pid, signal.SIGKILL)
    z.proc.wait(10)
    z.killed = True
    assert callbacks(web) == []

    z2 = zmqd()
    wait_for(lambda: callbacks(web), 30)
    z2.wait_log("callback 'cb' done")
    docs = {d["cid"]: d for d in callbacks(web)}
    assert list(docs) == [cid]
    check_callback(docs[cid], cid, ts, True, {"result": 42}, repeats=5,
                   seconds=3)
    assert len(web.seen["/target"]) == 3
    assert_acked(rabbitmq, iq)
    assert "invocation '%s'" % cid in z2.text()


def test_a_schedule_above_max_hold_is_refused_clearly(rabbitmq, redis_store,
                                                      zmqd, web, gw, iq):
    """repeats 100, seconds 600: up to 2 x 99 x 600 s unacked. With
    --max-hold 900 zmqd says so when it loads the configuration, and an
    invocation is refused (500 schedule_too_long, dead-lettered) instead
    of being cut short; with --max-hold 172800 it runs."""
    web.paths["/target"] = failing(0)
    z = zmqd(invoke_config(rabbitmq, web, iq, mode="sync", repeats=100,
                           seconds=600))
    z.wait_log("consuming queue '%s'" % iq)
    assert "may hold an invocation unacked for 118800 s" in z.text()
    cid = gw.invoke(iq, "inv", "sync", b"x")
    props, body = gw.reply(cid)
    assert status(props) == 500
    assert json.loads(body)["error"] == "schedule_too_long"
    assert "/target" not in web.seen
    assert_acked(rabbitmq, iq)
    assert z.stop() == 0

    z = zmqd(args=["--max-hold", "172800"])
    z.wait_log("consuming queue '%s'" % iq)
    cid = gw.invoke(iq, "inv", "sync", b"x")
    props, body = gw.reply(cid)
    assert status(props) == 200 and json.loads(body) == {"result": 42}
    assert_acked(rabbitmq, iq)
