#!/usr/bin/env bash
# The proxy benchmark: corral's reverse proxy (memory tier) side by side with the
# origin itself, nginx proxy_cache, Varnish and Squid, through the shared harness
# (../shared/bench, or $HARNESS): 1 KiB hits at 32 and 256 connections, 100 KiB
# hits, 200 clients at once on a cold URL with a 100 ms origin; then memory per
# cached 1 KiB object (RSS growth over MEM_N objects) for corral and the peers; then
# user-space instructions per 1 KiB hit (callgrind) for the origin and for corral
# with the access log off and on, and per range hit (1 KiB of a stored 1 MiB, from
# its start and its end) beside a full 1 KiB hit; then the hit-ratio replay of a
# Zipf trace through corral's memory tier and the policies nginx and Varnish evict by.
#
#     ./bench/proxy.sh              # ROUNDS=5 DUR=10 by default; MEM=0 skips memory,
#                                   # INSTR=0 the instruction counts, HIT_RATIO=0 the
#                                   # replay (2.5 minutes)
#
# Needs wrk, curl, taskset, nginx, varnishd, squid, valgrind, ab (Debian packages:
# apache2-utils for ab). Servers run on CPU 0 and the load generator on CPU 1, as the
# harness pins its own peers.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

HARNESS=${HARNESS:-$(cd .. && pwd)/shared/bench}
PORT=${PORT:-19401}
MEM=${MEM:-1}
INSTR=${INSTR:-1}
HIT_RATIO=${HIT_RATIO:-1}
export ROUNDS=${ROUNDS:-5} DUR=${DUR:-10}

[ -x "$HARNESS/peers.sh" ] || { echo "proxy.sh: no harness at $HARNESS (set HARNESS=)" >&2; exit 1; }
cargo build --release -q -p corral-proxy
CORRAL=$PWD/target/release/corral
# The harness builds its own tools (origin, stampede, fill) in a target dir of its own.
export CARGO_TARGET_DIR=${HARNESS_TARGET:-/tmp/corral-bench-harness}
(cd "$HARNESS" && ./peers.sh build >/dev/null)

pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null || true; (cd "$HARNESS" && ./peers.sh stop >/dev/null 2>&1) || true; }
trap cleanup EXIT
start_corral() {
    [ -n "$pid" ] && { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }
    if curl -s -m 1 -o /dev/null "http://127.0.0.1:$PORT/"; then
        echo "proxy.sh: something already listens on port $PORT (set PORT=)" >&2; exit 1
    fi
    taskset -c 0 "$CORRAL" serve --listen "127.0.0.1:$PORT" --upstream http://127.0.0.1:19001 \
        --access-log false --admin false "$@" &
    pid=$!
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || { echo "proxy.sh: corral exited" >&2; exit 1; }
        curl -s -o /dev/null "http://127.0.0.1:$PORT/" && return
        sleep 0.1
    done
    echo "proxy.sh: corral did not start" >&2; exit 1
}

start_corral
(cd "$HARNESS" && ./peers.sh all "corral=http://127.0.0.1:$PORT@$pid")
if [ "$MEM" = 1 ]; then
    # A fresh process (RSS growth starts from an empty cache) with room for all
    # MEM_N objects (the default 256MiB holds about 70k of them).
    start_corral --max-bytes 1GiB
    (cd "$HARNESS" && ./peers.sh start origin >/dev/null && ./peers.sh mem "corral=http://127.0.0.1:$PORT@$pid")
    (cd "$HARNESS" && ./peers.sh mem)
fi
if [ "$INSTR" = 1 ]; then
    [ -n "$pid" ] && { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; pid=; }
    (cd "$HARNESS" && ./peers.sh start origin >/dev/null)
    count() { # name, then the server command
        local name=$1; shift
        printf 'RESULT round=1 peer=%s fig=instr1k %s\n' "$name" \
            "$("$HARNESS/instr-per-request.sh" "http://127.0.0.1:$((PORT + 1))/static/1" 5000 4 -- "$@")"
    }
    count origin "$CARGO_TARGET_DIR/release/origin" --port $((PORT + 1)) --threads 1
    for log in false true; do
        count "corral-access-log-$log" "$CORRAL" serve --listen "127.0.0.1:$((PORT + 1))" \
            --upstream http://127.0.0.1:19001 --admin false --access-log "$log"
    done
    # Range hits, in one run with a full 1 KiB hit: the harness's counter sends its
    # requests with the `ab` it finds first on PATH, here one that adds the `Range`.
    ranged() { # name, range, path
        local shim; shim=$(mktemp -d)
        if [ -n "$2" ]; then
            printf '#!/bin/sh\nexec %s -H "Range: %s" "$@"\n' "$(command -v ab)" "$2" >"$shim/ab"
            chmod +x "$shim/ab"
        fi
        printf 'RESULT round=%s peer=corral fig=%s %s\n' "${round:-1}" "$1" \
            "$(PATH="$shim:$PATH" "$HARNESS/instr-per-request.sh" "http://127.0.0.1:$((PORT + 1))$3" 5000 4 -- \
                "$CORRAL" serve --listen "127.0.0.1:$((PORT + 1))" --upstream http://127.0.0.1:19001 \
                --admin false --access-log false)"
        rm -rf "$shim"
    }
    for round in 1 2; do
        ranged instr-full-1k "" /static/1
        ranged instr-range-first-1k "bytes=0-1023" /sized/1048576/1
        ranged instr-range-last-1k "bytes=-1024" /sized/1048576/1
    done
fi
if [ "$HIT_RATIO" = 1 ]; then
    cargo run --release -q -p corral-bench --bin hit_ratio
fi
