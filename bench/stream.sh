#!/usr/bin/env bash
# A body far larger than memory through the proxy's disk tier: one 2 GiB object asked
# for by 10 clients at once (cold: one origin fetch, written to disk as it arrives and
# read by all ten meanwhile), then by 10 more (warm: read from disk), with the proxy's
# resident memory sampled every 50 ms. Beside it, the same with no disk tier (each
# client's body streams through from the origin, unstored).
#
#     ./bench/stream.sh          # SIZE=2147483648 CLIENTS=10 by default
#
# Needs the shared harness's origin (../shared/bench, or $HARNESS) and curl.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

HARNESS=${HARNESS:-$(cd .. && pwd)/shared/bench}
SIZE=${SIZE:-2147483648}
CLIENTS=${CLIENTS:-10}
PORT=${PORT:-19404}
DISK=${DISK:-/tmp/corral-stream-bench}
LOG=${LOG:-/tmp/corral-stream-bench.log}

[ -x "$HARNESS/peers.sh" ] || { echo "stream.sh: no harness at $HARNESS (set HARNESS=)" >&2; exit 1; }
cargo build --release -q -p corral-proxy
CORRAL=$PWD/target/release/corral
export CARGO_TARGET_DIR=${HARNESS_TARGET:-/tmp/corral-bench-harness}
(cd "$HARNESS" && ./peers.sh build >/dev/null)
ORIGIN=$CARGO_TARGET_DIR/release/origin

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$DISK"; }
trap cleanup EXIT

"$ORIGIN" --port 19001 --body-size "$SIZE" --threads 1 >/dev/null 2>&1 &
pids+=($!)

wait_for() { for _ in $(seq 1 200); do curl -s -o /dev/null "$1" && return; sleep 0.1; done; echo "no answer at $1" >&2; exit 1; }
wait_for http://127.0.0.1:19001/__count

any_alive() { for p in "$@"; do kill -0 "$p" 2>/dev/null && return 0; done; return 1; }
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

# Runs CLIENTS downloads of $1 at once while sampling the proxy's RSS; prints the
# seconds taken, the RSS before and at its peak, and the bytes every client got.
round() {
    local url=$1 pid=$2 before peak=0 start end
    before=$(rss_kib "$pid")
    start=$(date +%s.%N)
    local dl=()
    for i in $(seq 1 "$CLIENTS"); do
        curl -s -o /dev/null -w '%{size_download}\n' "$url" > "/tmp/stream-bench-$i" &
        dl+=($!)
    done
    while any_alive "${dl[@]}"; do
        local now; now=$(rss_kib "$pid"); [ "$now" -gt "$peak" ] && peak=$now
        sleep 0.05
    done
    wait "${dl[@]}" || true
    end=$(date +%s.%N)
    local sizes; sizes=$(cat /tmp/stream-bench-* | sort -u | tr '\n' ' '); rm -f /tmp/stream-bench-*
    printf '  %-28s %6.1f s   RSS before %6d KiB   peak %6d KiB   growth %6d KiB   bodies: %s\n' \
        "$3" "$(echo "$end - $start" | bc)" "$before" "$peak" "$((peak - before))" "$sizes"
}

origin_count() { curl -s "http://127.0.0.1:19001/__count?path=$1" | sed 's/.*"count":\([0-9]*\).*/\1/'; }

serve() {
    "$CORRAL" serve --listen "127.0.0.1:$PORT" --upstream http://127.0.0.1:19001 \
        --access-log false --admin false --max-bytes 64MiB "$@" >"$LOG" 2>&1 &
    pids+=($!)
    wait_for "http://127.0.0.1:$PORT/__count"
}

echo "== $CLIENTS clients of one $SIZE-byte object"
rm -rf "$DISK"
serve --disk "$DISK" --disk-size 8GiB --max-disk-body 4GiB
pid=${pids[-1]}
round "http://127.0.0.1:$PORT/static/1" "$pid" "disk, cold (one fetch)"
echo "  origin fetches: $(origin_count /static/1)"
round "http://127.0.0.1:$PORT/static/1" "$pid" "disk, warm"
echo "  origin fetches: $(origin_count /static/1)"
kill "$pid"; wait "$pid" 2>/dev/null || true

serve
pid=${pids[-1]}
round "http://127.0.0.1:$PORT/static/2" "$pid" "no disk (streams through)"
echo "  origin fetches: $(origin_count /static/2)"
