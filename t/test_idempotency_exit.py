"""Idempotency keys and an exiting worker: a publish whose request NGINX
ended (a reload with worker_shutdown_timeout) keeps its outcome once the
broker settles it, and the old worker stays until Redis has answered that
store (bounded by the idempotency Redis timeout), instead of exiting as
soon as the publish is settled.

The broker's confirm is held by a TCP proxy (as in
test_idempotency_leave.py), and so are Redis' replies, by a second one:
the old worker's store then reaches Redis but its reply waits, and the
worker must still be there.
"""

import os
import signal
import time

from test_idempotency_leave import (HoldProxy, KEY, post_in_thread,
                                    ready_count, start_with_shutdown_timeout,
                                    wait_for)


class RedisVia:
    """redis_store as seen through a proxy: only its url differs."""

    def __init__(self, port):
        self.url = "redis://127.0.0.1:%d/0" % port


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_an_exiting_worker_waits_for_its_orphans_store(
        rabbitmq, nginx_factory, tmp_path, queue, redis_store):
    amqp = HoldProxy(rabbitmq.port)
    rds = HoldProxy(redis_store.port)
    try:
        gw = start_with_shutdown_timeout(nginx_factory, tmp_path, amqp,
                                         queue, RedisVia(rds.port))
        [old] = gw.ngx.worker_pids()
        amqp.hold()

        t, result = post_in_thread(gw)
        wait_for(lambda: ready_count(queue) == 1)

        os.kill(gw.ngx.proc.pid, signal.SIGHUP)
        t.join(15)
        assert not t.is_alive()
        assert "e" in result, result
        wait_for(lambda: set(gw.ngx.worker_pids()) - {old})
        assert alive(old)                  # the publish keeps it

        # Redis' replies held: the old worker's store goes, its reply waits
        rds.hold()
        amqp.release()
        c = redis_store.client()
        wait_for(lambda: (c.get(KEY) or b"P")[:1] == b"D")
        time.sleep(0.5)
        assert alive(old), "the worker exited before Redis answered"

        # the reply comes: the worker goes
        rds.release()
        wait_for(lambda: not alive(old), timeout=10)
        log = gw.ngx.error_log()
        assert "ended before the broker answered" in log
        assert "not kept" not in log
    finally:
        amqp.close()
        rds.close()
