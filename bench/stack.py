"""bench/stack: the servers a benchmark runs against (RabbitMQ, Redis,
NGINX with the module), each in a directory of one temporary directory,
and stopped whatever happens, the last started first, before that
directory is removed.

    with Stack("zmq-bench-") as servers:
        rabbit = servers.rabbit(QUEUE)      # and servers.ch, a channel
        cfg = servers.config(amqp_config(rabbit.port, ...))   # tmp/zmq.json
        ngx = servers.nginx("location = /b { zmq_service svc; }\n",
                            http="zmq_config file:%s;" % cfg, workers=2)
        ...                                 # every worker's "out" is ready

Loopback only; every process is stopped by PID (t/conftest.py's
RabbitServer, RedisServer and Nginx).
"""

import contextlib
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "t"))

from conftest import (Gateway, Nginx, RabbitServer,  # noqa: E402
                      RedisServer, STATUS_LOCATION, free_port, wait_port)


class ManagedRabbit(RabbitServer):
    """RabbitServer with rabbitmq_management on a port of its own
    (self.mgmt_port), for its HTTP API."""

    mgmt_port = None

    def start(self):
        if self.mgmt_port is None:
            self.mgmt_port = free_port()
            with open(self.env["RABBITMQ_CONFIG_FILE"], "a") as f:
                f.write("management.tcp.ip = 127.0.0.1\n"
                        "management.tcp.port = %d\n" % self.mgmt_port)
            with open(self.env["RABBITMQ_ENABLED_PLUGINS_FILE"], "w") as f:
                f.write("[rabbitmq_management].\n")
        super().start()
        wait_port(self.mgmt_port, 60)


class Stack:
    def __init__(self, prefix):
        self.tmp = tempfile.mkdtemp(prefix=prefix)
        self.ch = None
        self._exit = contextlib.ExitStack()
        self._exit.callback(subprocess.run, ["rm", "-rf", self.tmp])

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self._exit.__exit__(*exc)

    def callback(self, fn, *args):
        """fn(*args) at the end, before what was started earlier stops."""
        self._exit.callback(fn, *args)

    def dir(self, name):
        path = os.path.join(self.tmp, name)
        os.makedirs(path)
        return path

    def rabbit(self, queue, tls=None, management=False):
        """A RabbitMQ node in tmp/rabbit (with tls: its TLS listener too;
        with management: ManagedRabbit), and a pika channel to it, self.ch,
        on which queue (unless None) is declared durable."""
        cls = ManagedRabbit if management else RabbitServer
        # made before it starts, so that one that fails half-way through
        # its start is stopped too
        rabbit = cls.__new__(cls)
        self.callback(_close_rabbit, rabbit)
        rabbit.__init__(self.dir("rabbit"), tls=tls)

        conn = rabbit.connection()
        self.callback(_close_connection, conn)
        self.ch = conn.channel()
        if queue is not None:
            self.ch.queue_declare(queue, durable=True)
        return rabbit

    def redis(self):
        """A Redis server in tmp/redis."""
        path = self.dir("redis")
        redis = RedisServer.__new__(RedisServer)
        self.callback(_stop_redis, redis)
        redis.__init__(path)
        return redis

    def config(self, doc):
        """doc written to tmp/zmq.json: its path."""
        path = os.path.join(self.tmp, "zmq.json")
        with open(path, "w") as f:
            json.dump(doc, f)
        return path

    def nginx(self, server, http, workers, name="nginx", main="",
              outconn="out"):
        """NGINX with the module in tmp/<name>, its server the zmq_status
        location and server, main put in the main context; started, and
        (unless outconn is None) waited for until every worker's outgoing
        connection outconn is ready. Its error log goes to stderr when it
        does not start or get ready."""
        ngx = Nginx(self.dir(name), http=http,
                    server=STATUS_LOCATION + server, workers=workers,
                    log_level="warn")
        if main:
            with open(ngx.conf) as f:
                text = f.read()
            with open(ngx.conf, "w") as f:
                f.write(text.replace("events {", main + "events {", 1))
        self.callback(ngx.stop)
        try:
            ngx.start()
            if outconn is not None:
                Gateway(ngx).wait_state("ready", name=outconn)
        except Exception:
            print(ngx.error_log(), file=sys.stderr)
            raise
        return ngx


def _close_rabbit(rabbit):
    if getattr(rabbit, "epmd", None) is not None:
        rabbit.close()


def _stop_redis(redis):
    if getattr(redis, "proc", None) is not None:
        redis.stop()


def _close_connection(conn):
    import pika
    if conn.is_open:
        try:
            conn.close()
        except pika.exceptions.AMQPError:
            pass                        # the broker is going anyway
