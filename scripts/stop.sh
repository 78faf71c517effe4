#!/bin/bash
# make stop: stop what make run started, by the PIDs it recorded.
set -uo pipefail

PROJECT=$(cd "$(dirname "$0")/.." && pwd)
RUN=$PROJECT/run

stop() {
    local name=$1 pidfile=$2 sig=$3 pid i
    [ -f "$pidfile" ] || return 0
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
        kill "-$sig" "$pid"
        for ((i = 0; i < 600; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            echo "stop: $name ($pid) did not exit; killing it" >&2
            kill -KILL "$pid"
        fi
        echo "stop: $name ($pid) stopped"
    fi
    rm -f "$pidfile"
}

stop zmqd "$RUN/zmqd.pid" TERM
stop nginx "$RUN/nginx/nginx.pid" QUIT
stop rabbitmq "$RUN/rabbitmq/server.pid" TERM
stop "rabbitmq node" "$RUN/rabbitmq/beam.pid" TERM
stop epmd "$RUN/rabbitmq/epmd.pid" TERM
stop redis "$RUN/redis/redis.pid" TERM
