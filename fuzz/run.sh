#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 60): bash fuzz/run.sh [SECONDS].
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz --locked`); makes
# the seed corpora first if they are missing (seeds.sh). A crash stops the run and leaves
# its input in fuzz/artifacts/<target>/ (reproduce: cargo +nightly fuzz run TARGET FILE).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/ssogate-fuzz-target}
[ -f fuzz/keys/idp.crt ] && [ -d fuzz/corpus/response ] || bash fuzz/seeds.sh
for target in precheck response response_signed; do
  echo "== $target, ${secs}s"
  # -timeout: any input taking over 2 s is a stall, reported like a crash.
  cargo +nightly fuzz run --release "$target" "fuzz/corpus/$target" -- \
    -max_total_time="$secs" -timeout=2 -max_len=16384 -rss_limit_mb=2048 -print_final_stats=1
done
