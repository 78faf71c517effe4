#!/bin/bash
# Runs one fuzz target: run.sh BUILD TARGET SECONDS [FILE...]
#
# With files, runs the target once on each (to reproduce a crash);
# otherwise fuzzes for SECONDS from the seed corpus t/fuzz/corpus/TARGET
# (read only) and the inputs found so far in BUILD/fuzz/work/TARGET. A
# crash, a leak, a hang (10 s per input) or a sanitizer report fails the
# run; the input that caused it is left in BUILD/fuzz/crashes/TARGET/ and
# the log in BUILD/fuzz/TARGET.log. Set ZMQ_FUZZ_VERBOSE=1 to see the
# module's log lines (NGINX-hosted targets).
set -euo pipefail

build=$1 target=$2 seconds=$3
shift 3

here=$(cd "$(dirname "$0")" && pwd)
fuzz=$build/fuzz
work=$fuzz/work/$target
crashes=$fuzz/crashes/$target
log=$fuzz/$target.log
mkdir -p "$work" "$crashes"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:+$UBSAN_OPTIONS:}print_stacktrace=1"

args=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=3072
      -print_final_stats=1 -artifact_prefix="$crashes/")
if [ -f "$here/$target.dict" ]; then
    args+=(-dict="$here/$target.dict")
fi
if [ -f "$here/$target.options" ]; then
    read -r -a extra < "$here/$target.options"
    args+=("${extra[@]}")
fi

if [ $# -gt 0 ]; then
    inputs=("$@")
else
    inputs=("$work" "$here/corpus/$target")
fi

run() {
    if [ -x "$fuzz/fuzz_$target" ]; then
        "$fuzz/fuzz_$target" "${args[@]}" "${inputs[@]}"
        return
    fi

    # an NGINX-hosted target: libFuzzer runs inside Debian's nginx
    local so=$fuzz/ngx_fuzz_$target.so dir=$fuzz/nginx-$target rt
    [ -f "$so" ] || { echo "$so is not built (make fuzz)"; return 2; }
    rt=$(clang -print-file-name=libclang_rt.asan-x86_64.so)
    mkdir -p "$dir"
    {
        echo "load_module $so;"
        echo "daemon off; master_process off;"
        echo "error_log stderr notice;"
        echo "pid $dir/nginx.pid;"
        # nginx keeps only the environment it is told to
        echo "env ZMQ_FUZZ_ARGS; env ZMQ_FUZZ_VERBOSE;"
        echo "events { worker_connections 64; }"
        if [ -f "$here/$target.conf" ]; then cat "$here/$target.conf"; fi
    } > "$dir/nginx.conf"
    ZMQ_FUZZ_ARGS="${args[*]} ${inputs[*]}" LD_PRELOAD="$rt" \
    ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=1" \
        /usr/sbin/nginx -p "$dir" -c "$dir/nginx.conf" -e stderr
}

if [ $# -gt 0 ]; then
    run
    exit
fi

start=$SECONDS
if run > "$log" 2>&1; then
    printf 'fuzz %-10s ok   %4ds  %s\n' "$target" $((SECONDS - start)) \
        "$(grep -a -E '^Done [0-9]+ runs' "$log" | tail -1)"
else
    rc=$?
    # the report, without libFuzzer's progress lines
    grep -a -v -E '^#[0-9]+' "$log" | cut -c1-300 \
        | sed -n '/ERROR\|runtime error\|ngx_zmq_fuzz: \|deadly signal\|timeout/,$p' \
        | head -n 80
    printf 'fuzz %-10s FAILED (exit %d); log: %s; input: %s\n' "$target" \
        "$rc" "$log" "$(ls -t "$crashes" | head -1 | sed "s|^|$crashes/|")"
    exit 1
fi
