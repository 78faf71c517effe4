"""The module's own Redis connections: a refused AUTH or SELECT is a failed
connection with a clear error in zmq_status, never a connection that follows
database 0 (or nothing) while status says "connected"."""
import time

import pytest
import requests

from conftest import RedisServer, register_secret

STATUS = "location = /zmq/status { zmq_status; }\n"
RIGHT = "right-redis-pw-5521"
WRONG = "wrong-redis-pw-8812"


@pytest.fixture
def locked_redis(tmp_path):
    d = tmp_path / "redis-auth"
    d.mkdir()
    server = RedisServer(str(d))
    server.client().execute_command("CONFIG", "SET", "requirepass", RIGHT)
    register_secret(RIGHT)
    register_secret(WRONG)
    yield server
    server.stop()


def follower(nginx_factory, url):
    ngx = nginx_factory(http="zmq_config %s;\nzmq_config_poll 200ms;" % url,
                        server=STATUS, workers=1)
    ngx.start()
    return ngx


def wait_worker(ngx, pred, timeout=10.0):
    deadline = time.monotonic() + timeout
    w = None
    while time.monotonic() < deadline:
        ws = requests.get(ngx.url + "/zmq/status", timeout=5).json()["workers"]
        if ws:
            w = ws[0]
            if pred(w):
                return w
        time.sleep(0.05)
    raise AssertionError("worker status never matched: %r" % (w,))


def test_a_refused_auth_fails_the_connection_with_its_reason(
        nginx_factory, locked_redis):
    ngx = follower(nginx_factory, "redis://:%s@127.0.0.1:%d/0"
                   % (WRONG, locked_redis.port))
    w = wait_worker(ngx, lambda w: "AUTH" in (w.get("error") or ""))
    assert w["source_state"] != "connected"
    assert "WRONGPASS" in w["error"] or "invalid" in w["error"]
    assert WRONG not in w["error"]


def test_the_right_password_connects(nginx_factory, locked_redis):
    ngx = follower(nginx_factory, "redis://:%s@127.0.0.1:%d/0"
                   % (RIGHT, locked_redis.port))
    w = wait_worker(ngx, lambda w: w["source_state"] == "connected")
    assert not w.get("error")


def test_a_database_the_server_does_not_have_fails_the_connection(
        nginx_factory, redis_store):
    ngx = follower(nginx_factory, "redis://127.0.0.1:%d/99"
                   % redis_store.port)
    w = wait_worker(ngx, lambda w: "SELECT" in (w.get("error") or ""))
    assert w["source_state"] != "connected"
    assert "out of range" in w["error"]
