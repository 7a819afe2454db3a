#!/usr/bin/env bash
# The pool benchmark: three corral peers (reverse proxies for the shared harness's
# origin) on one machine.
#
#   1. Cache-hit throughput and p99 for one URL through its owner, and through a
#      non-owner (one extra hop), interleaved in rounds so each ratio is taken in one
#      round; then through a non-owner with the hot cache on.
#   2. Origin requests per unique URL across the pool: 1000 URLs requested through
#      all three peers at once (three fill clients over the same URLs).
#
#     ./bench/pool.sh               # ROUNDS=5 DUR=8 CONNS=32 by default
#
# Needs wrk, curl, taskset and the harness in ../shared/bench ($HARNESS). Peers run
# on CPU 0, the load generator on CPU 1.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

HARNESS=${HARNESS:-$(cd .. && pwd)/shared/bench}
ROUNDS=${ROUNDS:-5}
DUR=${DUR:-8}
CONNS=${CONNS:-32}
ORIGIN=http://127.0.0.1:19001
PORTS=(19411 19412 19413)
HOT_PORT=19414
ADMIN=(19421 19422 19423)
SECRET=bench-$$-$RANDOM

for tool in wrk curl taskset; do
    command -v "$tool" >/dev/null || { echo "pool.sh: $tool is not installed" >&2; exit 1; }
done
[ -x "$HARNESS/peers.sh" ] || { echo "pool.sh: no harness at $HARNESS (set HARNESS=)" >&2; exit 1; }
cargo build --release -q -p corral-proxy
CORRAL=$PWD/target/release/corral
export CARGO_TARGET_DIR=${HARNESS_TARGET:-/tmp/corral-bench-harness}
(cd "$HARNESS" && ./peers.sh build >/dev/null && ./peers.sh start origin >/dev/null)
FILL=$CARGO_TARGET_DIR/release/fill

pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    (cd "$HARNESS" && ./peers.sh stop >/dev/null 2>&1) || true
}
trap cleanup EXIT

PEERS=$(printf 'http://127.0.0.1:%s,' "${PORTS[@]}"); PEERS=${PEERS%,}
start_peer() { # port admin-port [flags...]
    local port=$1 admin=$2; shift 2
    CORRAL_PEER_SECRET=$SECRET taskset -c 0 "$CORRAL" serve --listen "127.0.0.1:$port" \
        --upstream "$ORIGIN" --admin-listen "127.0.0.1:$admin" --access-log false "$@" >/dev/null &
    pids+=($!)
}
for i in 0 1 2; do start_peer "${PORTS[$i]}" "${ADMIN[$i]}" --peers "$PEERS"; done
# A fourth process, a client of the pool only (it owns nothing), with the hot cache.
start_peer $HOT_PORT 19424 --peers "$PEERS" --peer-self "http://127.0.0.1:$HOT_PORT" \
    --peer-hot-cache 64MiB --peer-hot-ttl 60s
for port in "${PORTS[@]}" $HOT_PORT; do
    for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$port/__count" && break; sleep 0.1; done
done

# A URL the first peer owns.
path=
for n in $(seq 1 100); do
    candidate=/static/pool-hit-$n
    owner=$(curl -s "http://127.0.0.1:${ADMIN[0]}/peers?url=$ORIGIN$candidate" | sed -n 's/.*"owner":"\([^"]*\)".*/\1/p')
    if [ "$owner" = "http://127.0.0.1:${PORTS[0]}" ]; then path=$candidate; break; fi
done
[ -n "$path" ] || { echo "pool.sh: no URL owned by the first peer" >&2; exit 1; }
for port in "${PORTS[@]}" $HOT_PORT; do curl -s -o /dev/null "http://127.0.0.1:$port$path"; done
echo "# URL $path, owned by peer :${PORTS[0]}; origin fetches so far: $(curl -s "$ORIGIN/__count?path=$path")"

wrk_run() { # port -> "rps p99_ms"
    taskset -c 1 wrk -t1 -c"$CONNS" -d"${DUR}s" --latency "http://127.0.0.1:$1$path" | awk '
        function ms(v) { if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /s$/) return v*1000; return v }
        /^ +99%/ { p99=ms($2) } /^Requests\/sec:/ { rps=$2 }
        END { printf "%.0f %.3f", rps, p99 }'
}
median() { printf '%s\n' "$@" | sort -n | awk '{ a[NR]=$1 } END { print (NR % 2 ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2) }'; }
hop=(); hot=()
for round in $(seq 1 "$ROUNDS"); do
    read -r owner_rps owner_p99 <<<"$(wrk_run "${PORTS[0]}")"
    read -r other_rps other_p99 <<<"$(wrk_run "${PORTS[1]}")"
    read -r hot_rps hot_p99 <<<"$(wrk_run $HOT_PORT)"
    hop+=("$(awk -v a="$other_rps" -v b="$owner_rps" 'BEGIN { printf "%.3f", a / b }')")
    hot+=("$(awk -v a="$hot_rps" -v b="$owner_rps" 'BEGIN { printf "%.3f", a / b }')")
    echo "RESULT round=$round fig=pool_hit_c$CONNS owner_rps=$owner_rps owner_p99_ms=$owner_p99 non_owner_rps=$other_rps non_owner_p99_ms=$other_p99 hot_rps=$hot_rps hot_p99_ms=$hot_p99 non_owner_vs_owner=${hop[-1]} hot_vs_owner=${hot[-1]}"
done
echo "SUMMARY fig=pool_hit_c$CONNS non_owner_vs_owner_median=$(median "${hop[@]}") hot_vs_owner_median=$(median "${hot[@]}") rounds=$ROUNDS"

prefix=/static/pool-fill-$$-
fills=()
for port in "${PORTS[@]}"; do
    taskset -c 1 "$FILL" --base "http://127.0.0.1:$port" --prefix "$prefix" --count 1000 --conc 16 >/dev/null &
    fills+=($!)
done
for pid in "${fills[@]}"; do wait "$pid"; done
counts=$(curl -s "$ORIGIN/__count?prefix=$prefix")
echo "RESULT fig=pool_unique_urls requests=3000 urls=1000 origin=$counts"
echo "SUMMARY fig=pool_unique_urls origin_fetches_per_url=$(sed -n 's/.*"count":\([0-9]*\).*"distinct":\([0-9]*\).*/\1 \2/p' <<<"$counts" | awk '{ printf "%.3f", $1 / $2 }') (target 1)"
