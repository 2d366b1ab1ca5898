#!/usr/bin/env bash
# Builds the release binary and runs the users page benchmark (N users, default 10000;
# R requests per row, default 200).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/ssogate-target}
cargo build --locked --release --bin ssogate
BENCH_SSOGATE_EXE=$CARGO_TARGET_DIR/release/ssogate cargo bench --locked --bench users -- "${1:-10000}" "${2:-200}"
