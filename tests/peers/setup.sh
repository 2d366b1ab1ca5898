#!/usr/bin/env bash
# Installs what the test peers need (run as root on Debian; idempotent, quick when done):
#   xmlsec1, node + npm (Debian packages, only when missing), python3-venv if needed,
#   tests/peers/oidc/node_modules (oidc-provider, from package-lock.json),
#   tests/peers/.venv with pysaml2 7.5.5 (pinned with its dependencies in saml/requirements.txt),
#   tests/peers/.openapi-venv with schemathesis 4.32.5 (likewise, in openapi/requirements.txt),
#   tests/peers/.client-venv with Authlib 1.9.6 (likewise, in client/requirements.txt),
#   chromium (Debian) and tests/peers/browser/node_modules (playwright-core) for page tests.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
OIDC_PROVIDER_VERSION=9.13.3

say() { echo "peers setup: $*"; }
die() { echo "peers setup: ERROR: $*" >&2; exit 1; }

# venv_package VENV REQUIREMENTS PACKAGE: make tests/peers/VENV from REQUIREMENTS unless
# it already has PACKAGE at the version pinned there.
venv_package() {
  local venv=$HERE/$1 req=$HERE/$2 pkg=$3 want have
  want=$(sed -n "s/^$pkg==//p" "$req")
  have=$("$venv/bin/python" -c "import importlib.metadata as m; print(m.version('$pkg'))" 2>/dev/null || true)
  if [[ $have == "$want" ]]; then
    say "venv with $pkg $want present"
    return
  fi
  say "python3 -m venv tests/peers/$1 + pip install -r $2 ($pkg)"
  rm -rf "$venv"
  python3 -m venv "$venv" || die "python3 -m venv failed"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$req" || die "pip install -r $2 failed"
  "$venv/bin/python" -c "import importlib.metadata as m; m.version('$pkg')" || die "$pkg missing after install"
}

# npm_package DIR PACKAGE VERSION: install tests/peers/DIR's packages unless PACKAGE is
# already there at VERSION (npm ci from the lock file when there is one).
npm_package() {
  local dir=$HERE/$1 pkg=$2 want=$3 have npm_cmd
  have=$(node -p "try{require('$dir/node_modules/$pkg/package.json').version}catch{''}")
  if [[ $have == "$want" ]]; then
    say "$pkg $have present"
    return
  fi
  if [[ -f $dir/package-lock.json ]]; then npm_cmd=ci; else npm_cmd=install; fi
  say "npm $npm_cmd in tests/peers/$1 ($pkg $want)"
  (cd "$dir" && npm "$npm_cmd" --no-audit --no-fund --loglevel=error) || die "npm $npm_cmd in tests/peers/$1 failed"
}

# 1. Debian packages, only those missing; apt-get update at most once.
missing=()
command -v xmlsec1 >/dev/null || missing+=(xmlsec1)
command -v chromium >/dev/null || missing+=(chromium)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
command -v openssl >/dev/null || missing+=(openssl)
command -v python3 >/dev/null || missing+=(python3)
if command -v python3 >/dev/null && ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
  missing+=("python3-venv")
fi
if ((${#missing[@]})); then
  say "apt-get install ${missing[*]}"
  [[ $(id -u) == 0 ]] || die "need root to install: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null || die "apt-get update failed"
  apt-get install -y -qq "${missing[@]}" >/dev/null || die "apt-get install ${missing[*]} failed"
else
  say "system packages present (xmlsec1, node, npm, openssl, python3 venv)"
fi

# 2. oidc-provider for the OIDC peer (needs Node >= 20; Debian 12's own nodejs is 18).
node -e 'process.exit(+process.versions.node.split(".")[0] >= 20 ? 0 : 1)' \
  || die "node $(node --version) is too old for oidc-provider 9: need >= 20"
npm_package oidc oidc-provider "$OIDC_PROVIDER_VERSION"

# 3. Python venv with pysaml2 for the SAML peer.
venv_package .venv saml/requirements.txt pysaml2

# 4. Python venv with schemathesis for the OpenAPI check (its own, so pysaml2's pins stay).
venv_package .openapi-venv openapi/requirements.txt schemathesis

# 4b. Python venv with Authlib, a main server's OIDC client library (its own venv too).
venv_package .client-venv client/requirements.txt Authlib

# 5. playwright-core (no browser download: it drives Debian's /usr/bin/chromium).
npm_package browser playwright-core "$(node -p "require('$HERE/browser/package.json').dependencies['playwright-core']")"
say "done"
