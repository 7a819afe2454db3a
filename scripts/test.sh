#!/usr/bin/env bash
# corral's whole test suite, as CI runs it: formatting, lints, every unit, integration
# and doc test, and the loom model of the flight. Run from anywhere in the repo:
#
#     ./scripts/test.sh
#
# Needs the Rust toolchain (cargo with rustfmt and clippy), redis-server, redis-cli,
# openssl, python3, and Chromium with chromedriver (the Redis tier's tests start their
# own servers on loopback; the status page's browser test drives headless Chromium).
# Run as root, this script installs them with apt-get; when Chromium and chromedriver
# cannot be installed, it says why and skips that one test (CORRAL_SKIP_BROWSER_TEST=1).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { printf '\n== %s\n' "$*"; }
missing() {
    echo "scripts/test.sh: $1 is missing: $2" >&2
    exit 1
}

command -v cargo >/dev/null || missing cargo "install Rust from https://rustup.rs"
cargo fmt --version >/dev/null 2>&1 || missing rustfmt "rustup component add rustfmt"
cargo clippy --version >/dev/null 2>&1 || missing clippy "rustup component add clippy"
# Installs a Debian package when running as root, or says what to install.
need() { # command package purpose
    command -v "$1" >/dev/null && return 0
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        say "installing $2 ($3)"
        apt-get install -y -q "$2" >/dev/null 2>&1 ||
            { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q "$2" >/dev/null; } ||
            missing "$1" "apt-get install $2 failed"
    else
        missing "$1" "install the $2 package ($3), e.g. sudo apt-get install $2"
    fi
}
need redis-server redis-server "the Redis tier's tests start their own servers"
need redis-cli redis-tools "the Redis Cluster test creates a cluster with it"
need openssl openssl "the rediss:// test makes its own certificates"
need python3 python3 "the import-cycle check is a Python script"
# Chromium and chromedriver (Debian's chromium, chromium-driver) for the status page's
# browser test; without them that test is skipped, with a message that says why.
browser() {
    command -v chromium >/dev/null && command -v chromedriver >/dev/null && return 0
    local why
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        say "installing chromium and chromium-driver (the status page's browser test)"
        apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 ||
            { apt-get update -q >/dev/null 2>&1 &&
                apt-get install -y -q chromium chromium-driver >/dev/null 2>&1; } ||
            why="apt-get install chromium chromium-driver failed"
        [ -z "${why:-}" ] && command -v chromium >/dev/null && command -v chromedriver >/dev/null &&
            return 0
        why="${why:-chromium or chromedriver is still missing after apt-get install}"
    else
        why="chromium and chromedriver are not installed (not root with apt-get: install the chromium and chromium-driver packages)"
    fi
    echo "scripts/test.sh: skipping the status page's browser test: $why" >&2
    export CORRAL_SKIP_BROWSER_TEST=1
}
browser

say "formatting"
cargo fmt --all -- --check

say "import cycles between files"
python3 scripts/module-cycles.py

say "lints (all features, then each crate's defaults)"
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings
cargo clippy --workspace --all-targets --locked -- -D warnings

say "tests (unit, integration, examples, benchmarks in test mode)"
cargo test --workspace --all-targets --all-features --locked

say "docs (every intra-doc link resolves)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --lib --no-deps --all-features --locked

say "doc tests"
cargo test --workspace --doc --all-features --locked

say "loom model of the flight"
RUSTFLAGS="--cfg corral_loom" cargo test -p corral --lib --locked \
    --target-dir target/loom flight::loom_model

say "all tests passed"
