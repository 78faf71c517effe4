#!/bin/bash
# make run: start Redis, RabbitMQ and NGINX with the module and the demo
# configuration, as the current user, everything under run/, loopback only.
# make stop (scripts/stop.sh) stops them by their PIDs.
set -euo pipefail

PROJECT=$(cd "$(dirname "$0")/.." && pwd)
RUN=$PROJECT/run
BUILD=${BUILD:-$PROJECT/build}

REDIS_PORT=${ZMQ_REDIS_PORT:-6379}
AMQP_PORT=${ZMQ_AMQP_PORT:-5672}
HTTP_PORT=8080
EPMD_PORT=${ZMQ_EPMD_PORT:-4371}
DIST_PORT=${ZMQ_DIST_PORT:-25674}

mkdir -p "$RUN"/{redis,rabbitmq/home,nginx}

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
    local port=$1 what=$2 secs=$3 i
    for ((i = 0; i < secs * 10; i++)); do
        port_open "$port" && return 0
        sleep 0.1
    done
    echo "run: $what did not open 127.0.0.1:$port in ${secs}s" >&2
    return 1
}

need_free() {
    if port_open "$1"; then
        echo "run: 127.0.0.1:$1 ($2) is taken by another process;" \
             "stop it or set $3" >&2
        exit 1
    fi
}

# --- Redis
if alive "$RUN/redis/redis.pid"; then
    echo "run: redis is already running"
else
    need_free "$REDIS_PORT" redis ZMQ_REDIS_PORT
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$RUN/redis" \
        --daemonize yes --pidfile "$RUN/redis/redis.pid" \
        --logfile "$RUN/redis/redis.log"
    wait_port "$REDIS_PORT" redis 10
    echo "run: redis on 127.0.0.1:$REDIS_PORT"
fi

# --- RabbitMQ (its own epmd, so nothing outlives make stop)
export HOME=$RUN/rabbitmq/home RABBITMQ_NODENAME=zmqrun@localhost \
    RABBITMQ_USE_LONGNAME=false RABBITMQ_MNESIA_BASE=$RUN/rabbitmq/mnesia \
    RABBITMQ_LOG_BASE=$RUN/rabbitmq/log \
    RABBITMQ_CONFIG_FILE=$RUN/rabbitmq/rabbitmq.conf \
    RABBITMQ_ENABLED_PLUGINS_FILE=$RUN/rabbitmq/enabled_plugins \
    RABBITMQ_PID_FILE=$RUN/rabbitmq/beam.pid \
    RABBITMQ_CONF_ENV_FILE=$RUN/rabbitmq/rabbitmq-env.conf \
    RABBITMQ_DIST_PORT=$DIST_PORT ERL_EPMD_PORT=$EPMD_PORT \
    ERL_EPMD_ADDRESS=127.0.0.1

if alive "$RUN/rabbitmq/server.pid"; then
    echo "run: rabbitmq is already running"
else
    need_free "$AMQP_PORT" rabbitmq ZMQ_AMQP_PORT
    printf 'listeners.tcp.default = 127.0.0.1:%s\n%s\n' "$AMQP_PORT" \
        'disk_free_limit.absolute = 50MB' > "$RABBITMQ_CONFIG_FILE"
    echo '[].' > "$RABBITMQ_ENABLED_PLUGINS_FILE"
    : > "$RABBITMQ_CONF_ENV_FILE"
    if ! alive "$RUN/rabbitmq/epmd.pid"; then
        epmd -port "$EPMD_PORT" -address 127.0.0.1 \
            > "$RUN/rabbitmq/epmd.log" 2>&1 &
        echo $! > "$RUN/rabbitmq/epmd.pid"
    fi
    echo "run: starting rabbitmq (10-30 s)..."
    setsid /usr/lib/rabbitmq/bin/rabbitmq-server \
        > "$RUN/rabbitmq/server.log" 2>&1 < /dev/null &
    echo $! > "$RUN/rabbitmq/server.pid"
    wait_port "$AMQP_PORT" rabbitmq 90 || {
        tail -20 "$RUN/rabbitmq/server.log" >&2; exit 1; }
    echo "run: rabbitmq on 127.0.0.1:$AMQP_PORT (guest/guest)"
fi

# the queue the demo's service publishes to (mandatory: it must exist)
/usr/bin/python3 - "$AMQP_PORT" <<'PY'
import sys, pika
c = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1",
                                                      int(sys.argv[1])))
c.channel().queue_declare("customer.updates", durable=True)
c.close()
PY

# --- the configuration: key file, then the demo into Redis
export ZMQ_REDIS=redis://127.0.0.1:$REDIS_PORT/0
export ZMQ_KEY_FILE=$RUN/secret.key
[ -f "$ZMQ_KEY_FILE" ] || "$BUILD/zmqctl" keygen
"$BUILD/zmqctl" import "$PROJECT/conf/demo.json"

# --- NGINX with the module (conf/nginx.conf with this run's Redis port)
sed "s|redis://127.0.0.1:6379/0|redis://127.0.0.1:$REDIS_PORT/0|" \
    "$PROJECT/conf/nginx.conf" > "$RUN/nginx.conf"
NGINX=(nginx -p "$PROJECT" -c "$RUN/nginx.conf" -e "$RUN/nginx/error.log")

if alive "$RUN/nginx/nginx.pid"; then
    echo "run: nginx is already running; reloading"
    "${NGINX[@]}" -s reload
else
    need_free "$HTTP_PORT" nginx "the listen port in conf/nginx.conf"
    "${NGINX[@]}" -t -q
    "${NGINX[@]}"
    wait_port "$HTTP_PORT" nginx 10
    echo "run: nginx on 127.0.0.1:$HTTP_PORT"
fi

# --- zmqd: the demo's channel consumes customer.updates into Redis
if alive "$RUN/zmqd.pid"; then
    echo "run: zmqd is already running; it follows the configuration"
else
    "$BUILD/zmqd" --config "$ZMQ_REDIS" --key-file "$ZMQ_KEY_FILE" \
        > "$RUN/zmqd.log" 2>&1 < /dev/null &
    echo $! > "$RUN/zmqd.pid"
    sleep 0.5
    alive "$RUN/zmqd.pid" || { cat "$RUN/zmqd.log" >&2; exit 1; }
    echo "run: zmqd consuming (log: run/zmqd.log)"
fi

cat <<MSG

ngx_zmq is up. Try:

    curl -s http://127.0.0.1:$HTTP_PORT/zmq/status
    curl -si -H 'Content-Type: application/json' -H 'X-Message-Id: demo-1' \\
         -d '{"customer": 42, "email": "new@example.com"}' \\
         http://127.0.0.1:$HTTP_PORT/api/customers/updates
    curl -si -u crm:change-me -d '{"email": "x@example.com"}' \\
         http://127.0.0.1:$HTTP_PORT/api/customers/42/updates
        # a REST channel protected by the security definition crm-clients:
        # without -u (or with a wrong password) 401, and 429 after 10 tries
    curl -s -u admin:change-me-admin http://127.0.0.1:$HTTP_PORT/zmq/admin/api/amqp_def
        # the admin API; the web-admin is at
        # http://127.0.0.1:$HTTP_PORT/zmq/admin/ui/ (admin / change-me-admin)
    ZMQ_REDIS=$ZMQ_REDIS ZMQ_KEY_FILE=$ZMQ_KEY_FILE build/zmqctl list
    ZMQ_REDIS=$ZMQ_REDIS build/zmqctl export
    ZMQ_REDIS=$ZMQ_REDIS build/zmqctl get rest_channel customer.updates.rest
    redis-cli -p $REDIS_PORT lrange customer:updates 0 -1   # what zmqd stored
    PYTHONPATH=clients/python UPDATES_REDIS_URL=$ZMQ_REDIS /usr/bin/python3 examples/flask_app/app.py     # http://127.0.0.1:5000/orders
    PYTHONPATH=clients/python UPDATES_REDIS_URL=$ZMQ_REDIS /usr/bin/python3 examples/django_app/manage.py runserver 127.0.0.1:8000
        # the example apps (apt-get install python3-flask python3-django;
        # examples/*/README.md): orders through the protected channel,
        # /updates pages customer:updates

Logs are in run/. Stop everything with: make stop
MSG
