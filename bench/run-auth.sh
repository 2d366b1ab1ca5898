#!/usr/bin/env bash
# The ingress benchmark: /auth with a valid session against axum hello world, nginx
# `return 200` and Apache mod_auth_openidc, in the same run; then RSS with N live
# sessions. Results go to stdout as Markdown tables (copy them to BENCHMARKS.md).
#
#   bash bench/run-auth.sh [--state-url redis://127.0.0.1:6379/0] [--sessions N] [--runs N] [--duration S]
#
# --state-url keeps the gateway's sessions and flow state in Redis (SSOGATE_STATE__URL)
# instead of in memory. Run as root on Debian: installs wrk, nginx and Apache with
# mod_auth_openidc when missing. Needs 2 cores: servers on core 0, wrk on core 1.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
while (($#)); do
  case $1 in
    --state-url) export BENCH_STATE_URL=$2; shift 2 ;;
    --sessions) export BENCH_SESSIONS=$2; shift 2 ;;
    --runs) export BENCH_RUNS=$2; shift 2 ;;
    --duration) export BENCH_DURATION=$2; shift 2 ;;
    *) die "unknown argument $1 (see the comment at the top of $0)" ;;
  esac
done
(($(nproc) >= 2)) || die "needs at least 2 cores (server and load generator apart)"
apt_install "${BUILD_PACKAGES[@]}" wrk nginx apache2 libapache2-mod-auth-openidc util-linux
need_cargo
say "building the release binary, the hello-world reference and the benchmark"
cargo build --locked --release --bin ssogate --example hello
cargo bench --locked --bench auth --no-run
export BENCH_SSOGATE_EXE=$CARGO_TARGET_DIR/release/ssogate BENCH_HELLO_EXE=$CARGO_TARGET_DIR/release/examples/hello
say "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(uname -r), $(date -u +%F)"
# The driver (IdP, logins, wrk) on core 1; it pins the servers to core 0 itself.
taskset -c 1 cargo bench --locked --bench auth
