#!/usr/bin/env bash
# The middleware benchmark: an axum app serving 1 KiB, bare and behind corral's
# HttpCacheLayer, measured side by side; then 200 clients at once on a handler that
# takes 100 ms.
#
#     ./bench/axum-layer.sh            # ROUNDS=5 DUR=10 CONNS=32 by default
#
# Needs wrk and taskset. Servers run on CPU $SERVER_CPU (one tokio worker), the load
# generator on CPU $CLIENT_CPU; rounds interleave the two apps so that each ratio is
# taken within one round.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

ROUNDS=${ROUNDS:-5}
DUR=${DUR:-10}
CONNS=${CONNS:-32}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
BARE_PORT=19601
CACHED_PORT=19602

for tool in wrk taskset curl; do
    command -v "$tool" >/dev/null || { echo "axum-layer.sh: $tool is not installed (apt-get install $tool)" >&2; exit 1; }
done
cargo build --release -q -p corral-bench
BIN=target/release

pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT
taskset -c "$SERVER_CPU" "$BIN/bench-app" --port $BARE_PORT & pids+=($!)
BARE_PID=$!
taskset -c "$SERVER_CPU" "$BIN/bench-app" --port $CACHED_PORT --cache & pids+=($!)
CACHED_PID=$!

cpu_ticks() { # pid -> utime+stime of the process (all threads), in clock ticks
    awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"
}
for port in $BARE_PORT $CACHED_PORT; do
    for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$port/__calls" && break; sleep 0.1; done
done
curl -s -o /dev/null "http://127.0.0.1:$CACHED_PORT/static"
echo "# warm cached response: $(curl -s -D - -o /dev/null "http://127.0.0.1:$CACHED_PORT/static" | tr -d '\r' | grep -i '^x-cache')"

wrk_run() { # port pid -> "rps p99_ms requests_per_server_cpu_second"
    local before after
    before=$(cpu_ticks "$2")
    taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNS" -d"${DUR}s" --latency "http://127.0.0.1:$1/static" >/tmp/corral-wrk.$$
    after=$(cpu_ticks "$2")
    awk -v ticks=$((after - before)) -v hz="$(getconf CLK_TCK)" '
        function ms(v) { if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /s$/) return v*1000; return v }
        /^ +99%/ { p99=ms($2) } /^Requests\/sec:/ { rps=$2 } /requests in/ { reqs=$1 }
        END { printf "%.0f %.3f %.0f", rps, p99, (ticks > 0 ? reqs / (ticks / hz) : 0) }' /tmp/corral-wrk.$$
    rm -f /tmp/corral-wrk.$$
}

ratios=()
cpu_ratios=()
for round in $(seq 1 "$ROUNDS"); do
    read -r bare_rps bare_p99 bare_eff <<<"$(wrk_run $BARE_PORT $BARE_PID)"
    read -r cached_rps cached_p99 cached_eff <<<"$(wrk_run $CACHED_PORT $CACHED_PID)"
    ratio=$(awk -v a="$cached_rps" -v b="$bare_rps" 'BEGIN { printf "%.3f", a / b }')
    cpu_ratio=$(awk -v a="$cached_eff" -v b="$bare_eff" 'BEGIN { printf "%.3f", (b > 0 ? a / b : 0) }')
    ratios+=("$ratio")
    cpu_ratios+=("$cpu_ratio")
    echo "RESULT round=$round fig=hit1k_c$CONNS bare_rps=$bare_rps bare_p99_ms=$bare_p99 bare_req_per_cpu_s=$bare_eff cached_rps=$cached_rps cached_p99_ms=$cached_p99 cached_req_per_cpu_s=$cached_eff ratio=$ratio cpu_ratio=$cpu_ratio"
done
median() { printf '%s\n' "$@" | sort -n | awk '{ a[NR]=$1 } END { print (NR % 2 ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2) }'; }
echo "SUMMARY fig=hit1k_c$CONNS cached_vs_bare_rps_median=$(median "${ratios[@]}") cached_vs_bare_req_per_cpu_s_median=$(median "${cpu_ratios[@]}") rounds=$ROUNDS (target >= 0.9)"

p99s=()
for round in $(seq 1 "$ROUNDS"); do
    before=$(curl -s "http://127.0.0.1:$CACHED_PORT/__calls")
    line=$(taskset -c "$CLIENT_CPU" "$BIN/stampede" --url "http://127.0.0.1:$CACHED_PORT/slow/st-$round-$$" -n 200)
    after=$(curl -s "http://127.0.0.1:$CACHED_PORT/__calls")
    p99=$(sed -n 's/.*p99_ms=\([0-9.]*\).*/\1/p' <<<"$line")
    p99s+=("$p99")
    echo "RESULT round=$round fig=stampede_n200 handler_calls=$((after - before)) $line"
done
echo "SUMMARY fig=stampede_n200 p99_ms_median=$(median "${p99s[@]}") (target: 1 handler call, p99 < 110 ms)"
