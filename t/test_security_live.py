"""Security definitions from Redis (issue 11), written by zmqctl while NGINX
runs: basic_auth passwords stored as PBKDF2 hashes and checked on the thread
pool (a UTF-8 password with ':'), a password changed live (the old one
refused and the new one accepted on every worker within 2 s, although both
workers had cached the old one), a JWT secret replaced live, API key
rotation with zmqctl apikey (two keys valid together, then one revoked on
every worker), zmqctl apikey's refusals, a zmq_security naming a definition
Redis lacks (503 until it exists), and the stall bound: while wrong
passwords arrive at 50 a second, another location of the same worker keeps
answering within 1 s.

Which worker answered: a refusal's error log line carries the worker's pid,
an accepted message the worker's published count in zmq_status. A second
listener with reuseport spreads new connections over the workers."""

import concurrent.futures
import json
import re
import threading
import time

import pytest

from conftest import amqp_config
from security_helpers import (basic, bearer, call, refusals, reuseport_listen,
                              sign, source, unauthorized, wait_for,
                              zmqctl_apikey)
from test_live_config import Live

OLD_PW = "old-Passw0rd-5521"
NEW_PW = "new-Passw0rd-8830"
UTF8_PW = "k\u00e4se:br\u00f6t-\u20ac\u20ac:\u00df-9140"
JWT_S1 = "jwt-secret-one-of-at-least-32-bytes-41"
JWT_S2 = "jwt-secret-two-of-at-least-32-bytes-77"
# tests of the thread pool itself: every wrong password hashed, however
# many (the failure budget, tested on its own, would shed most)
NO_BUDGET = "zmq_auth_fail_rate 0;"


@pytest.fixture
def live(nginx_factory, zmqctl, redis_store, tmp_path):
    def make(locations, workers=2, http=NO_BUDGET):
        # the failure budget has a test of its own; elsewhere it would
        # answer 503 for the wrong passwords the tests send on purpose
        port, listen = reuseport_listen()
        g = Live(nginx_factory, zmqctl, redis_store, tmp_path,
                 listen + locations, workers=workers, http=http)
        g.port = port
        return g
    return make


def doc(rabbitmq, queue, security, extra=None):
    d = amqp_config(rabbitmq.port, {"svc": {"routing_key": queue.name}},
                    extra={"security": security})
    d.update(extra or {})
    return d


def published(gw):
    """pid -> messages its connection "out" published."""
    return {w["pid"]: w["outconns"]["out"]["published"]
            for w in gw.status()["workers"]}


def accepted_by_every_worker(gw, path, headers, tries=40):
    """Requests (each on a new connection) until every worker has
    published one: each must be accepted. Returns how many it took."""
    before = published(gw)
    for i in range(tries):
        a = call(gw.port, path, headers)
        assert a.status == 202, a
        now = published(gw)
        if all(now[p] > before[p] for p in before):
            return i + 1
    raise AssertionError("not every worker answered in %d requests: %s -> "
                         "%s" % (tries, before, now))


def refused_by_every_worker(gw, path, headers, reason, challenge, n=16):
    """n requests from n client addresses (no throttle): each refused, and
    the refusals logged by every worker, with reason."""
    mark = len(gw.ngx.error_log())
    for i in range(n):
        a = call(gw.port, path, headers, source=source(i))
        unauthorized(a, challenge)
    seen = refusals(gw.ngx.error_log()[mark:])
    assert len(seen) == n, seen
    assert {r for _, _, r in seen} == {reason}, seen
    pids = {w["pid"] for w in gw.status()["workers"]}
    assert {p for p, _, _ in seen} == pids, (seen, pids)


def stored(redis_store, name):
    return json.loads(redis_store.client().get("zmq:obj:security:" + name))


# ------------------------------------------------- basic, PBKDF2 threads


def test_a_utf8_password_with_colons_checked_on_the_thread_pool(
        rabbitmq, live, queue, redis_store):
    gw = live("location = /b { zmq_service svc; zmq_security crm; }\n",
              workers=1)
    v = gw.write(doc(rabbitmq, queue, [{
        "name": "crm", "type": "basic_auth", "username": "m\u00fcller",
        "password": UTF8_PW}]))
    # stored as a PBKDF2 hash, never in clear
    h = stored(redis_store, "crm")["password"]["$hash"]
    assert h.startswith("pbkdf2-sha256$") and UTF8_PW not in json.dumps(
        stored(redis_store, "crm"))
    gw.start()
    gw.wait_version(v)
    gw.wait_ready()

    good = {"Authorization": basic("m\u00fcller", UTF8_PW)}
    first = call(gw.port, "/b", good)
    assert first.status == 202, first
    again = call(gw.port, "/b", good)              # from the cache
    assert again.status == 202, again
    msgs = queue.drain(expect=2)
    assert [p.headers["x-zmq-auth"] for _, p, _ in msgs] == \
        ["crm:m\u00fcller"] * 2

    for wrong in (UTF8_PW.split(":")[0], UTF8_PW + ":",
                  UTF8_PW.replace("\u00df", "ss")):
        unauthorized(call(gw.port, "/b", {"Authorization": basic(
            "m\u00fcller", wrong)}), 'Basic realm="ngx_zmq", charset="UTF-8"')
    unauthorized(call(gw.port, "/b", {"Authorization": basic(
        "muller", UTF8_PW)}), 'Basic realm="ngx_zmq", charset="UTF-8"')
    # the hash sees a C string: the password and a NUL and more must not
    # pass as the password
    unauthorized(call(gw.port, "/b", {"Authorization": basic(
        "m\u00fcller", UTF8_PW + "\0tail")}),
        'Basic realm="ngx_zmq", charset="UTF-8"')
    assert [r for _, _, r in refusals(gw.ngx.error_log())] == \
        ["bad password"] * 3 + ["unknown user", "malformed password"]
    assert queue.count() == 0


def test_a_password_changed_live_applies_on_every_worker_within_2s(
        rabbitmq, live, queue):
    gw = live("location = /b { zmq_service svc; zmq_security crm; }\n")
    sec = {"name": "crm", "type": "basic_auth", "username": "ops",
           "password": OLD_PW, "realm": "CRM"}
    v = gw.write(doc(rabbitmq, queue, [sec]))
    gw.start()
    gw.wait_version(v, workers=2)
    gw.wait_ready()
    old = {"Authorization": basic("ops", OLD_PW)}
    new = {"Authorization": basic("ops", NEW_PW)}
    challenge = 'Basic realm="CRM", charset="UTF-8"'

    # both workers verified the old password, and cached it
    accepted_by_every_worker(gw, "/b", old)
    accepted_by_every_worker(gw, "/b", old)
    refused_by_every_worker(gw, "/b", new, "bad password", challenge)

    t0 = time.monotonic()
    v2 = gw.write(doc(rabbitmq, queue, [dict(sec, password=NEW_PW)]))
    gw.wait_version(v2, workers=2, timeout=2.0)
    took = time.monotonic() - t0
    assert took < 2.0, took

    refused_by_every_worker(gw, "/b", old, "bad password", challenge)
    accepted_by_every_worker(gw, "/b", new)
    for _, props, _ in queue.drain(expect=queue.count()):
        assert props.headers["x-zmq-auth"] == "crm:ops"


def test_a_jwt_secret_replaced_live_refuses_cached_tokens(rabbitmq, live,
                                                          queue):
    gw = live("location = /j { zmq_service svc; zmq_security tok; }\n")
    sec = {"name": "tok", "type": "jwt", "alg": "HS256", "secret": JWT_S1,
           "claims_to_headers": ["tenant"]}
    v = gw.write(doc(rabbitmq, queue, [sec]))
    gw.start()
    gw.wait_version(v, workers=2)
    gw.wait_ready()
    now = int(time.time())
    claims = {"sub": "svc-a", "tenant": "acme", "exp": now + 600}
    t1 = {"Authorization": bearer(sign(claims, JWT_S1, "HS256"))}
    t2 = {"Authorization": bearer(sign(claims, JWT_S2, "HS256"))}
    accepted_by_every_worker(gw, "/j", t1)
    accepted_by_every_worker(gw, "/j", t1)          # cached by now

    v2 = gw.write(doc(rabbitmq, queue, [dict(sec, secret=JWT_S2)]))
    gw.wait_version(v2, workers=2, timeout=2.0)
    refused_by_every_worker(gw, "/j", t1, "bad signature",
                            'Bearer error="invalid_token"')
    accepted_by_every_worker(gw, "/j", t2)
    for _, props, _ in queue.drain(expect=queue.count()):
        assert props.headers["x-zmq-auth"] == "tok:svc-a"
        assert props.headers["x-zmq-claim-tenant"] == "acme"


# ------------------------------------------------------ zmqctl apikey


def version_of(stdout):
    return int(re.search(r"version (\d+)", stdout).group(1))


def test_api_keys_rotate_without_downtime(rabbitmq, live, queue,
                                          zmqctl):
    gw = live("location = /k { zmq_service svc; zmq_security api; }\n")
    v = gw.write(doc(rabbitmq, queue, [{"name": "api", "type": "apikey"}]))
    gw.start()
    gw.wait_version(v, workers=2)
    gw.wait_ready()
    # no key yet: nothing gets in
    unauthorized(call(gw.port, "/k", {"X-API-Key": "x" * 43}),
                 'ApiKey header="X-API-Key"')

    rc, old_key, out, err = zmqctl_apikey(zmqctl, "--id", "old", "api")
    assert rc == 0, err
    assert "added key 'old' to security 'api'" in out
    rc, new_key, out, err = zmqctl_apikey(zmqctl, "api")
    assert rc == 0, err
    kid = re.search(r"added key '([^']+)'", out).group(1)
    assert kid != "old"
    # 32 random bytes in base64url, and only the digests are stored
    for k in (old_key, new_key):
        assert re.fullmatch(r"[A-Za-z0-9_-]{43}", k), k
    text = redis_text(gw)
    assert old_key not in text and new_key not in text
    gw.wait_version(version_of(out), workers=2, timeout=2.0)

    accepted_by_every_worker(gw, "/k", {"X-API-Key": old_key})
    accepted_by_every_worker(gw, "/k", {"X-API-Key": new_key})
    ids = {p.headers["x-zmq-auth"] for _, p, _ in
           queue.drain(expect=queue.count())}
    assert ids == {"api:old", "api:" + kid}

    t0 = time.monotonic()
    rc, _, out, err = zmqctl_apikey(zmqctl, "--revoke", "old", "api")
    assert rc == 0, err
    assert "revoked key 'old' of security 'api'" in out
    gw.wait_version(version_of(out), workers=2, timeout=2.0)
    assert time.monotonic() - t0 < 2.0
    refused_by_every_worker(gw, "/k", {"X-API-Key": old_key}, "unknown key",
                            'ApiKey header="X-API-Key"')
    accepted_by_every_worker(gw, "/k", {"X-API-Key": new_key})
    ids = {p.headers["x-zmq-auth"] for _, p, _ in
           queue.drain(expect=queue.count())}
    assert ids == {"api:" + kid}


def redis_text(gw):
    c = gw.redis.client()
    return "\n".join((c.get(k) or b"").decode("utf-8", "replace")
                     for k in c.keys("zmq:obj:*"))


def test_zmqctl_apikey_refuses_and_writes_nothing(zmqctl, redis_store,
                                                  write_json):
    path = write_json("c.json", {"security": [
        {"name": "api", "type": "apikey"},
        {"name": "web", "type": "basic_auth", "username": "u",
         "password": "web-pass-6620"},
        {"name": "out", "type": "apikey", "direction": "out",
         "key": "outgoing-key-5512"}]})
    zmqctl("import", path, check=0)
    rc, _, _, err = zmqctl_apikey(zmqctl, "--id", "app", "api")
    assert rc == 0, err
    c = redis_store.client()
    before = redis_store.dump()

    cases = [
        (("nope",), "there is no incoming apikey security definition "
                    "'nope'"),
        (("web",), "there is no incoming apikey security definition 'web'"),
        (("out",), "there is no incoming apikey security definition 'out'"),
        (("--id", "app", "api"), "security 'api' already has a key 'app'"),
        (("--revoke", "zzz", "api"), "security 'api' has no key 'zzz'"),
        (("--revoke", "app", "nope"), "no incoming apikey security "
                                      "definition 'nope'"),
        (("--id", "x", "--revoke", "app", "api"), "give --id or --revoke"),
        (("--id", "bad id", "api"), "keys[1].id 'bad id'"),
    ]
    for args, message in cases:
        rc, key, out, err = zmqctl_apikey(zmqctl, *args)
        assert rc != 0, (args, out)
        assert key is None
        assert message in err, (args, err)
        assert redis_store.dump() == before, args
    assert c.get("zmq:version") == before[b"zmq:version"][1]


# ----------------------------------------------------- 503, then live


def test_a_definition_absent_from_redis_answers_503_until_it_exists(
        rabbitmq, live, queue, zmqctl):
    gw = live("location = /g { zmq_service svc; zmq_security ghost; }\n"
              "location = /p { zmq_service svc; }\n", workers=1)
    v = gw.write(doc(rabbitmq, queue, []))
    gw.start()
    gw.wait_version(v)
    gw.wait_ready()
    a = call(gw.port, "/g", {"X-API-Key": "whatever-key"})
    assert a.status == 503, a
    assert a.json()["error"] == "security_unavailable"
    assert "WWW-Authenticate" not in a.headers
    assert 'zmq: security "ghost" does not exist: request refused' in \
        gw.ngx.error_log()
    assert call(gw.port, "/p").status == 202        # the rest serves
    queue.drain(expect=1)

    v = gw.write(doc(rabbitmq, queue, [{"name": "ghost", "type": "apikey"}]))
    rc, key, out, err = zmqctl_apikey(zmqctl, "ghost")
    assert rc == 0, err
    gw.wait_version(version_of(out), timeout=2.0)
    unauthorized(call(gw.port, "/g", {}), 'ApiKey header="X-API-Key"')
    a = call(gw.port, "/g", {"X-API-Key": key})
    assert a.status == 202, a
    [(_, props, _)] = queue.drain(expect=1)
    assert props.headers["x-zmq-auth"] == "ghost:k1"


# ---------------------------------------------------------- the stall


def test_wrong_passwords_at_50_a_second_do_not_stall_the_worker(
        rabbitmq, live, queue):
    """Every wrong password costs a PBKDF2 check (100,000 iterations) on
    the thread pool: they come from 40 client addresses, 5 each, so that
    the throttle does not spare the checks. Meanwhile a location without
    security on the same (single) worker answers each request in under
    1 s."""
    gw = live("location = /b { zmq_service svc; zmq_security crm; }\n"
              "location = /p { zmq_service svc; }\n", workers=1,
              http=NO_BUDGET)
    v = gw.write(doc(rabbitmq, queue, [{
        "name": "crm", "type": "basic_auth", "username": "ops",
        "password": OLD_PW}]))
    gw.start()
    gw.wait_version(v)
    gw.wait_ready()
    rate, seconds, addresses = 50, 4, 40
    n = rate * seconds
    wrong = [{"Authorization": basic("ops", "wrong-%04d-pw" % i)}
             for i in range(n)]

    attack = []
    started = []
    stop = threading.Event()

    def guess(i):
        started.append(time.monotonic())
        a = call(gw.port, "/b", wrong[i], source=source(i % addresses))
        attack.append(a.status)

    plain = []

    def innocent():
        while not stop.is_set():
            a = call(gw.port, "/p", body=b"innocent")
            plain.append((a.status, a.elapsed))

    with concurrent.futures.ThreadPoolExecutor(n) as ex:
        watcher = threading.Thread(target=innocent)
        watcher.start()
        try:
            t0 = time.monotonic()
            futures = []
            for i in range(n):
                time.sleep(max(0.0, t0 + i / rate - time.monotonic()))
                futures.append(ex.submit(guess, i))
            for f in futures:
                f.result()
        finally:
            stop.set()
            watcher.join()

    # the attack happened as meant: every guess was checked or shed
    assert len(attack) == n
    assert set(attack) <= {401, 503}, sorted(set(attack))
    checked = [r for _, _, r in refusals(gw.ngx.error_log())].count(
        "bad password")
    assert checked == attack.count(401)
    # most were hashed (here all 200; a third under ASan, which sheds the
    # rest with 503 auth_busy)
    assert checked >= n // 3, (checked, attack.count(503))
    # at the rate meant
    assert max(started) - t0 < seconds + 0.5, max(started) - t0

    # and the other location kept answering, each answer within 1 s
    assert len(plain) >= 20, len(plain)
    assert all(s == 202 for s, _ in plain), [s for s, _ in plain]
    slowest = max(e for _, e in plain)
    assert slowest < 1.0, sorted(e for _, e in plain)[-5:]
    # not merely under the bound: the event loop was never the one that
    # computed the hashes (then half the answers wait behind one, here
    # 20 answers in 4 s, a median of 0.2 s; on the thread pool, hundreds)
    median = sorted(e for _, e in plain)[len(plain) // 2]
    assert median < 0.1, (median, len(plain))
    assert queue.count() == len(plain)


def test_a_reload_answers_the_password_checks_under_way(rabbitmq, live,
                                                        queue):
    """A worker that shuts down (reload) waits for the checks its thread
    pool is running and answers them; it used to exit at once, leaving
    the clients without an answer ([alert] open socket left)."""
    import os
    import signal
    gw = live("location = /b { zmq_service svc; zmq_security crm; }\n",
              workers=1,
              http=NO_BUDGET)
    v = gw.write(doc(rabbitmq, queue, [{
        "name": "crm", "type": "basic_auth", "username": "ops",
        "password": OLD_PW}]))
    gw.start()
    gw.wait_version(v)
    gw.wait_ready()
    old_pids = {w["pid"] for w in gw.status()["workers"]}
    n = 40
    wrong = [{"Authorization": basic("ops", "reload-%03d-pw" % i)}
             for i in range(n)]
    ready = threading.Barrier(n + 1)

    def guess(i):
        ready.wait()
        return call(gw.port, "/b", wrong[i], source=source(i)).status

    with concurrent.futures.ThreadPoolExecutor(n) as ex:
        futures = [ex.submit(guess, i) for i in range(n)]
        ready.wait()
        # the checks under way (they take tens of ms each, 2 cores)
        time.sleep(0.2)
        os.kill(gw.ngx.proc.pid, signal.SIGHUP)
        statuses = []
        for f in futures:
            try:
                statuses.append(f.result())
            except OSError as e:
                statuses.append(repr(e))
    assert statuses == [401] * n, statuses
    # the reload happened, and the new worker serves
    assert wait_for_new_worker(gw, old_pids)
    assert call(gw.port, "/b", {"Authorization": basic(
        "ops", OLD_PW)}).status == 202


def wait_for_new_worker(gw, old_pids, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = set(gw.ngx.worker_pids())
        if pids and not pids & old_pids:
            return pids
        time.sleep(0.05)
    return None


def test_clients_that_leave_during_their_check_harm_nothing(rabbitmq, live,
                                                            queue):
    """Clients that close (or reset) their connection while their password
    is being checked: the worker finishes the checks, answers into closed
    sockets and serves on (ASan, under make asan-nginx, watches the
    request's memory that the thread's answer comes back to)."""
    import socket
    import struct
    gw = live("location = /b { zmq_service svc; zmq_security crm; }\n",
              workers=1,
              http=NO_BUDGET)
    v = gw.write(doc(rabbitmq, queue, [{
        "name": "crm", "type": "basic_auth", "username": "ops",
        "password": OLD_PW}]))
    gw.start()
    gw.wait_version(v)
    gw.wait_ready()
    n = 30
    socks = []
    for i in range(n):
        s = socket.socket()
        s.bind((source(i), 0))
        s.connect(("127.0.0.1", gw.port))
        s.sendall(("POST /b HTTP/1.1\r\nHost: x\r\nAuthorization: %s\r\n"
                   "Content-Length: 1\r\n\r\nx" % basic(
                       "ops", "leaving-%02d-pw" % i)).encode())
        socks.append(s)
    for i, s in enumerate(socks):
        if i % 2:
            # RST rather than FIN
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                         struct.pack("ii", 1, 0))
        s.close()
    # every check finishes (and is logged) ...
    assert wait_for(lambda: len(refusals(gw.ngx.error_log())) == n), \
        refusals(gw.ngx.error_log())
    # ... and the worker serves on, with the same pid
    pids = gw.ngx.worker_pids()
    a = call(gw.port, "/b", {"Authorization": basic("ops", OLD_PW)})
    assert a.status == 202, a
    assert gw.ngx.worker_pids() == pids


def test_more_checks_than_a_worker_takes_are_shed_with_503(rabbitmq, live,
                                                           queue):
    """Over 64 password checks under way in one worker: the next requests
    get 503 auth_busy with Retry-After 1 at once, not a place in a queue
    without end."""
    gw = live("location = /b { zmq_service svc; zmq_security crm; }\n",
              workers=1,
              http=NO_BUDGET)
    v = gw.write(doc(rabbitmq, queue, [{
        "name": "crm", "type": "basic_auth", "username": "ops",
        "password": OLD_PW}]))
    gw.start()
    gw.wait_version(v)
    gw.wait_ready()
    n = 120
    wrong = [{"Authorization": basic("ops", "burst-%03d-pw" % i)}
             for i in range(n)]
    ready = threading.Barrier(n)

    def guess(i):
        ready.wait()
        return call(gw.port, "/b", wrong[i], source=source(i))

    with concurrent.futures.ThreadPoolExecutor(n) as ex:
        answers = list(ex.map(guess, range(n)))
    busy = [a for a in answers if a.status == 503]
    assert busy, "no 503 among %d" % n
    assert {a.status for a in answers} == {401, 503}
    for a in busy:
        assert a.json()["error"] == "auth_busy", a
        assert a.headers["Retry-After"] == "1"
        assert "WWW-Authenticate" not in a.headers
    assert len(refusals(gw.ngx.error_log())) == n - len(busy)
    assert "password checks are under way in this worker" in \
        gw.ngx.error_log()
    # and once the burst is over, the right password gets in
    assert wait_for(lambda: call(gw.port, "/b", {"Authorization": basic(
        "ops", OLD_PW)}).status == 202, timeout=5)


def test_a_burst_of_one_clients_requests_on_a_cold_cache_costs_one_check(
        rabbitmq, live, queue):
    """30 requests with the same right password, all at once, before any
    is cached: they wait for one password check instead of hashing 30
    times, so the throttle (which counts every check as it starts) never
    sees more than one attempt, and every request is published."""
    gw = live("location = /b { zmq_service svc; zmq_security crm; }\n",
              workers=1)
    v = gw.write(doc(rabbitmq, queue, [{
        "name": "crm", "type": "basic_auth", "username": "u",
        "password": OLD_PW}]))
    gw.start()
    gw.wait_version(v)
    gw.wait_ready()

    good = {"Authorization": basic("u", OLD_PW)}
    n = 30
    with concurrent.futures.ThreadPoolExecutor(n) as ex:
        got = list(ex.map(lambda i: call(gw.port, "/b", good).status,
                          range(n)))
    assert got == [202] * n, got
    assert len(queue.drain(expect=n)) == n


def test_the_failure_budget_sheds_new_checks_not_cached_clients(
        rabbitmq, live, queue):
    """zmq_auth_fail_rate 5: wrong passwords from 30 addresses at once
    (which the per-address throttle does not see) cost at most about 5
    hashes, the rest answered 503 auth_busy at once; a client already in
    the cache passes meanwhile; a second later the budget has refilled and a
    new right password passes."""
    gw = live("location = /b { zmq_service svc; zmq_security crm; }\n",
              workers=1, http="zmq_auth_fail_rate 5;")
    v = gw.write(doc(rabbitmq, queue, [
        {"name": "crm", "type": "basic_auth", "username": "ops",
         "password": OLD_PW}]))
    gw.start()
    gw.wait_version(v)
    gw.wait_ready()
    good = {"Authorization": basic("ops", OLD_PW)}
    assert call(gw.port, "/b", good).status == 202          # now cached

    n = 30
    with concurrent.futures.ThreadPoolExecutor(n) as ex:
        got = list(ex.map(lambda i: call(
            gw.port, "/b", {"Authorization": basic("ops", "w-%d" % i)},
            source=source(i)), range(n)))
    statuses = [a.status for a in got]
    assert set(statuses) <= {401, 503}, statuses
    assert 1 <= statuses.count(401) <= 7, statuses
    for a in got:
        if a.status == 503:
            assert a.json()["error"] == "auth_busy"
            assert a.headers["Retry-After"] == "1"
    hashed = [r for _, _, r in refusals(gw.ngx.error_log())].count(
        "bad password")
    assert hashed == statuses.count(401)

    # the cached client is not affected
    assert call(gw.port, "/b", good).status == 202
    # and the budget refills
    time.sleep(1.1)
    fresh = {"Authorization": basic("ops", OLD_PW + "x")}
    assert call(gw.port, "/b", fresh, source=source(99)).status == 401
