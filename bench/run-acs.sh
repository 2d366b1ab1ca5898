#!/usr/bin/env bash
# Builds and runs the ACS benchmark (N verifications per case, default 2000); the signed
# responses come from tests/peers/saml/forge.py (python3 stdlib + /usr/bin/xmlsec1).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/ssogate-target}
cargo bench --locked --bench acs --no-run
# One core for the benchmark when taskset is there.
pin=(); command -v taskset >/dev/null && pin=(taskset -c 1)
"${pin[@]}" cargo bench --locked --bench acs -- "${1:-2000}"
