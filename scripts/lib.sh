# Shared by scripts/run and scripts/test: install what the build needs on a fresh Debian
# machine (as root), without apt-get update when everything is already there.
set -euo pipefail

say() { echo "ssogate: $*" >&2; }
die() { echo "ssogate: ERROR: $*" >&2; exit 1; }

# Debian packages the build needs: OpenSSL headers, pkg-config, a C compiler. (SAML
# signatures are verified in Rust over OpenSSL: no libxml2/xmlsec/libclang at build time.)
BUILD_PACKAGES=(build-essential pkg-config libssl-dev libsqlite3-dev)

apt_install() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  [[ $(id -u) == 0 ]] || die "need root to install: ${missing[*]} (or install them and re-run)"
  say "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null || die "apt-get update failed"
  apt-get install -y -qq "${missing[@]}" >/dev/null || die "apt-get install ${missing[*]} failed"
}

need_cargo() {
  if ! command -v cargo >/dev/null; then
    [[ -x $HOME/.cargo/bin/cargo ]] && export PATH=$HOME/.cargo/bin:$PATH
  fi
  command -v cargo >/dev/null || die "cargo not found: install Rust (rustup) first"
}

# Builds go outside the clone so repeated runs (and fresh clones) reuse them.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/ssogate-target}
