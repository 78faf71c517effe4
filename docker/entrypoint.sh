#!/bin/bash
# The image's entrypoint (docker/Dockerfile): runs the gateway or zmqd.
#
#   zmq-entrypoint gateway     makes the key file if there is none, waits
#                              for Redis, imports $ZMQ_IMPORT when set,
#                              checks the NGINX configuration, runs nginx
#                              in the foreground
#   zmq-entrypoint zmqd        waits for the key file (the gateway makes
#                              it), gives $ZMQD_USER its own copy, runs
#                              zmqd $ZMQD_ARGS as $ZMQD_USER
#   zmq-entrypoint zmqctl ...  runs zmqctl
#   zmq-entrypoint CMD ...     runs CMD
#
# Environment: ZMQ_REDIS, ZMQ_KEY_FILE (shared by both; a volume),
# ZMQ_IMPORT (a JSON file for zmqctl import), ZMQ_NGINX_CONF
# (/etc/nginx/zmq/nginx.conf), ZMQ_NGINX_PREFIX (nginx -p, optional),
# ZMQD_USER (empty: zmqd runs as the current user), ZMQD_ARGS,
# ZMQ_WAIT (seconds to wait for Redis or the key file, 60).
set -euo pipefail

: "${ZMQ_REDIS:=redis://127.0.0.1:6379/0}"
: "${ZMQ_KEY_FILE:=/etc/ngx_zmq/secret.key}"
: "${ZMQ_NGINX_CONF:=/etc/nginx/zmq/nginx.conf}"
: "${ZMQ_NGINX_PREFIX:=}" "${ZMQ_IMPORT:=}" "${ZMQD_USER:=}" "${ZMQD_ARGS:=}"
: "${ZMQ_WAIT:=60}"
export ZMQ_REDIS ZMQ_KEY_FILE

say() { echo "zmq-entrypoint: $*" >&2; }

# runs "$@" every 0.5 s until it succeeds, at most ZMQ_WAIT seconds
wait_for() {
    local what=$1 i
    shift
    for ((i = 0; i < ZMQ_WAIT * 2; i++)); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.5
    done
    say "gave up after ${ZMQ_WAIT}s waiting for $what"
    exit 1
}

gateway() {
    local nginx=(nginx -c "$ZMQ_NGINX_CONF")
    [ -n "$ZMQ_NGINX_PREFIX" ] && nginx+=(-p "$ZMQ_NGINX_PREFIX")

    if [ ! -e "$ZMQ_KEY_FILE" ]; then
        zmqctl keygen
    fi
    wait_for "Redis ($ZMQ_REDIS)" zmqctl list
    if [ -n "$ZMQ_IMPORT" ]; then
        zmqctl import "$ZMQ_IMPORT"
    fi
    "${nginx[@]}" -t -q
    say "starting nginx (${nginx[*]})"
    exec "${nginx[@]}"
}

zmqd_run() {
    local key=$ZMQ_KEY_FILE

    wait_for "the key file $ZMQ_KEY_FILE" test -s "$ZMQ_KEY_FILE"
    if [ -n "$ZMQD_USER" ] && [ "$(id -u)" -eq 0 ]; then
        # a key file must belong to the user that reads it
        key=/run/zmqd/secret.key
        install -d -m 0700 -o "$ZMQD_USER" -g "$ZMQD_USER" /run/zmqd
        install -m 0600 -o "$ZMQD_USER" -g "$ZMQD_USER" "$ZMQ_KEY_FILE" \
            "$key"
        say "starting zmqd as $ZMQD_USER"
        # shellcheck disable=SC2086
        exec setpriv --reuid="$ZMQD_USER" --regid="$ZMQD_USER" \
            --init-groups --no-new-privs \
            env ZMQ_KEY_FILE="$key" zmqd $ZMQD_ARGS
    fi
    say "starting zmqd"
    # shellcheck disable=SC2086
    exec zmqd $ZMQD_ARGS
}

case ${1:-gateway} in
gateway) gateway ;;
zmqd) zmqd_run ;;
zmqctl) shift; exec zmqctl "$@" ;;
*) exec "$@" ;;
esac
