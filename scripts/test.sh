#!/usr/bin/env bash
# corral's whole test suite, as CI runs it: formatting, lints, every unit, integration
# and doc test, and the loom model of the flight. Run from anywhere in the repo:
#
#     ./scripts/test.sh
#
# Needs the Rust toolchain (cargo with rustfmt and clippy).
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

say "formatting"
cargo fmt --all -- --check

say "lints"
cargo clippy --workspace --all-targets --locked -- -D warnings

say "tests (unit, integration, examples, benchmarks in test mode)"
cargo test --workspace --all-targets --locked

say "doc tests"
cargo test --workspace --doc --locked

say "loom model of the flight"
RUSTFLAGS="--cfg corral_loom" cargo test -p corral --lib --locked \
    --target-dir target/loom flight::loom_model

say "all tests passed"
