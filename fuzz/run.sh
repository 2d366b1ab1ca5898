#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 60): bash fuzz/run.sh [SECONDS].
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz --locked`); makes
# the seed corpora first if they are missing (seeds.sh). A crash stops the run and leaves
# its input in fuzz/artifacts/<target>/ (reproduce: the target's binary with the file).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/ssogate-fuzz-target}
[ -f fuzz/keys/idp.crt ] && [ -d fuzz/corpus/response ] && [ -d fuzz/corpus/redirect ] || bash fuzz/seeds.sh
# One build, then the binaries themselves: `cargo fuzz run` builds with other debug
# settings than `cargo fuzz build`, which would rebuild everything.
cargo +nightly fuzz build
bin=$CARGO_TARGET_DIR/x86_64-unknown-linux-gnu/release
for target in precheck response response_signed dsig_differential metadata mapping redirect; do
  echo "== $target, ${secs}s"
  mkdir -p "fuzz/artifacts/$target"
  # -timeout: any input taking over 2 s is a stall, reported like a crash.
  "$bin/$target" "fuzz/corpus/$target" -artifact_prefix="fuzz/artifacts/$target/" \
    -max_total_time="$secs" -timeout=2 -max_len=16384 -rss_limit_mb=2048 -print_final_stats=1
done
