#!/usr/bin/env bash
# The disk tier through the proxy, beside nginx proxy_cache (whose cache is files, read
# through the page cache): hits of 100 KiB and of 1 MiB objects that corral's memory
# tier is too small to hold, so every corral hit is a disk-tier hit. Both caches keep
# their files in the harness's run directory (tmpfs: the page cache without a device),
# rounds interleaved, through the shared harness (../shared/bench, or $HARNESS).
#
# Then the hit ratio at a budget of memory and disk together on a Zipf trace (10 million
# requests over a million URLs of mixed sizes): corral's memory tier over its disk tier,
# nginx's LRU of files, Varnish's LRU (bench/src/bin/hit_ratio.rs; 2.5 minutes).
#
#     ./bench/disk.sh             # ROUNDS=5 DUR=10 by default; HIT_RATIO=0 skips the replay
#     BASE=/tmp/corral-old ./bench/disk.sh   # and another corral binary beside it, rounds interleaved
#
# Needs what the harness needs (wrk, curl, taskset, nginx; see bench/proxy.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

HARNESS=${HARNESS:-$(cd .. && pwd)/shared/bench}
PORT=${PORT:-19403}
RUN=${BENCH_RUN:-/dev/shm/bench-peers}
HIT_RATIO=${HIT_RATIO:-1}
export ROUNDS=${ROUNDS:-5} DUR=${DUR:-10}

[ -x "$HARNESS/peers.sh" ] || { echo "disk.sh: no harness at $HARNESS (set HARNESS=)" >&2; exit 1; }
cargo build --release -q -p corral-proxy
CORRAL=$PWD/target/release/corral
export CARGO_TARGET_DIR=${HARNESS_TARGET:-/tmp/corral-bench-harness}
(cd "$HARNESS" && ./peers.sh build >/dev/null)

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$RUN"/corral-disk*; (cd "$HARNESS" && ./peers.sh stop >/dev/null 2>&1) || true; }
trap cleanup EXIT
mkdir -p "$RUN"
# A 64 KiB memory tier holds none of the objects: each hit reads its file.
start_corral() { # binary port directory
    rm -rf "$3"
    taskset -c 0 "$1" serve --listen "127.0.0.1:$2" --upstream http://127.0.0.1:19001 \
        --access-log false --admin false --max-bytes 64KiB --disk "$3" --disk-size 4GiB &
    pids+=($!)
    for _ in $(seq 1 100); do
        curl -s -o /dev/null "http://127.0.0.1:$2/" && break
        sleep 0.1
    done
}
start_corral "$CORRAL" "$PORT" "$RUN/corral-disk"
peers=("corral-disk=http://127.0.0.1:$PORT@${pids[0]}")
if [ -n "${BASE:-}" ]; then
    start_corral "$BASE" "$((PORT + 10))" "$RUN/corral-disk-base"
    peers+=("corral-base=http://127.0.0.1:$((PORT + 10))@${pids[1]}")
fi

for size in 102400 1048576; do
    echo "== hits of $size-byte objects: corral from its disk tier, nginx from its cache files"
    (cd "$HARNESS" && FIGS=hit100k_c32 BIG_SIZE=$size HIT_PEERS="origin nginx-lock" STAMPEDE_PEERS="" \
        ./peers.sh all "${peers[@]}")
done

if [ "$HIT_RATIO" = 1 ]; then
    echo "== hit ratio at a budget of memory and disk together"
    (unset CARGO_TARGET_DIR; cargo run --release -q -p corral-bench --bin hit_ratio -- \
        --policies corral-disk,nginx-disk,lru --budgets 1%,5%,10%)
fi
