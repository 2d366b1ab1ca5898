#!/usr/bin/env bash
# The Helm chart and container image tests; `bash scripts/test` runs them before
# `cargo test`. Installs what they need: a virtualenv in tests/helm/.venv with
# helm-python-sdk (Helm's Go library in a wheel: there is no helm binary in the package
# registries) and kubernetes-validate (Kubernetes schemas bundled, offline), and podman
# (Debian) for the image test, which prints SKIP when podman cannot be had.
#
#   bash tests/helm/run.sh
#
# The gateway binary (for `ssogate config check` on the rendered config, and the image)
# is SSOGATE_BIN, else built with `cargo test --locked --no-run`: the very build the
# suite's `cargo test` uses next, so the suite compiles nothing twice.
cd "$(dirname "$0")/../.."
source scripts/lib.sh
set +e

venv=tests/helm/.venv
PYPI_PACKAGES=(helm-python-sdk==0.2.2 kubernetes-validate==1.37.0)

if ! "$venv/bin/python" -c 'import helm_python, kubernetes_validate' 2>/dev/null; then
  python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || die "tests/helm needs Python 3.11 or newer (tomllib)"
  python3 -m venv --help >/dev/null 2>&1 || apt_install python3-venv
  say "making $venv: pip install ${PYPI_PACKAGES[*]}"
  rm -rf "$venv"
  python3 -m venv "$venv" || die "python3 -m venv $venv failed"
  "$venv/bin/pip" install -q "${PYPI_PACKAGES[@]}" || die "pip install ${PYPI_PACKAGES[*]} failed"
fi

if [[ -z ${SSOGATE_BIN:-} ]]; then
  need_cargo
  say "building the gateway for the chart and image tests (cargo test --locked --no-run)"
  cargo test --locked --no-run -q 2>&1 | grep -v '^  Executable' >&2
  ((PIPESTATUS[0] == 0)) || die "the build failed"
  SSOGATE_BIN=$CARGO_TARGET_DIR/debug/ssogate
fi
[[ -x $SSOGATE_BIN ]] || die "no gateway binary at $SSOGATE_BIN"
export SSOGATE_BIN

if ! command -v podman >/dev/null && [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
  say "apt-get install podman (for the image test)"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman; } >/dev/null 2>&1 ||
    say "podman could not be installed: the image test will be skipped"
fi

start=$SECONDS
out=$(mktemp)
trap 'rm -f "$out"' EXIT
say "helm chart: lint, render, kubernetes-validate --strict, Deployment checks, bad values"
"$venv/bin/python" tests/helm/test_chart.py 2>&1 | grep -v 'INFO funcMap fail message' | tee -a "$out"
chart_rc=${PIPESTATUS[0]}
say "container image: podman build and inspection"
bash tests/helm/image.sh "$SSOGATE_BIN" 2>&1 | tee -a "$out"
image_rc=${PIPESTATUS[0]}

total() { grep -E "^(helm chart|image): [0-9]+ passed" "$out" | grep -oE "[0-9]+ $1" | awk '{ n += $1 } END { print n + 0 }'; }
p=$(total passed) f=$(total failed) s=$(total skipped)
# A test runner that stopped before its summary line is a failure too.
((chart_rc == 0 && image_rc == 0)) || ((f > 0)) || f=1
say "helm and image tests took $((SECONDS - start)) s"
echo "helm: $p passed, $f failed, $s skipped"
((f == 0))
