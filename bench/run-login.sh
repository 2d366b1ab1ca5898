#!/usr/bin/env bash
# Builds the release binary and runs the login benchmark (N logins, default 500).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/ssogate-target}
cargo build --locked --release --bin ssogate
BENCH_SSOGATE_EXE=$CARGO_TARGET_DIR/release/ssogate cargo bench --locked --bench login -- "${1:-500}"
