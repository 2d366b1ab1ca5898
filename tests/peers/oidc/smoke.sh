#!/usr/bin/env bash
# Smoke test of the OIDC test peer (server.mjs): code + PKCE flows driven with curl and a
# cookie jar (login_hint shortcut, login form, plain PKCE, abort), token exchange with
# client_secret_basic, ID token payload, userinfo, account update, key rotation,
# revocation, and claims_in_id_token=false. Needs `bash tests/peers/setup.sh` first.
set -euo pipefail
cd "$(dirname "$0")"
WORK=$(mktemp -d)
REDIRECT=http://127.0.0.1:1/callback
CLIENT=gateway SECRET=gateway-secret-0123456789
PASS=0

fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { PASS=$((PASS + 1)); echo "ok - $*"; }
b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
b64url_decode() { local s; s=$(tr '_-' '/+'); while (( ${#s} % 4 )); do s+='='; done; printf '%s' "$s" | openssl base64 -d -A; }
json() { node -e 'const o=JSON.parse(require("fs").readFileSync(0,"utf8"));const v=process.argv[1].split(".").reduce((a,k)=>a?.[k],o);process.stdout.write(typeof v==="string"?v:JSON.stringify(v)??"")' "$1"; }

start() { # start CONFIG: coproc with stdin held open by us; sets ISSUER
  coproc SRV { exec node server.mjs "$1" 2>>"${SERVER_LOG:-$WORK/server.log}"; }
  local line
  read -r -t 20 line <&"${SRV[0]}" || { cat "$WORK/server.log" >&2; fail "server did not start"; }
  echo "ready line: $line"
  ISSUER=$(printf '%s' "$line" | json issuer)
}
stop() { if [[ -n "${SRV_PID:-}" ]]; then eval "exec ${SRV[1]}>&-"; wait "$SRV_PID" || true; fi; }
trap 'stop; rm -rf "$WORK"' EXIT

JAR="$WORK/jar"
get() { curl -sS -b "$JAR" -c "$JAR" -o "$WORK/body" -D "$WORK/hdr" -w '%{http_code}' "$@"; }
loc() { sed -n 's/^[Ll]ocation: *//p' "$WORK/hdr" | tr -d '\r'; }
# follow URL: follows redirects until one leaves for REDIRECT; also submits an
# auto-posting form (oidc-provider's logout confirm when the account changes)
follow() {
  local url=$1 code n action
  for n in 1 2 3 4 5 6 7 8; do
    code=$(get "$url")
    if [[ $code == 200 ]] && action=$(sed -n 's/.*<form method="post" action="\([^"]*\)".*/\1/p' "$WORK/body") \
        && grep -q 'forms\[0\].submit()' "$WORK/body"; then
      local args=() f
      while read -r f; do args+=(--data-urlencode "$f"); done \
        < <(sed -n 's/.*<input type="hidden" name="\([^"]*\)" value="\([^"]*\)".*/\1=\2/p' "$WORK/body")
      code=$(get "${args[@]}" "$action")
    fi
    [[ $code == 30? ]] || { FINAL=$url; [[ -z ${DEBUG:-} ]] || cat "$WORK/body" >&2; return 0; }
    url=$(abs "$(loc)")
    [[ $url == "$REDIRECT"* ]] && { FINAL=$url; return 0; }
  done
  fail "too many redirects"
}
abs() { [[ $1 == /* ]] && printf '%s%s' "$ISSUER" "$1" || printf '%s' "$1"; }
qparam() { printf '%s' "$1" | sed -n "s/.*[?&]$2=\([^&]*\).*/\1/p"; }

pkce() { VERIFIER=$(openssl rand 48 | b64url); CHALLENGE=$(printf '%s' "$VERIFIER" | openssl dgst -sha256 -binary | b64url); }
authorize_url() { # extra query string appended
  printf '%s/auth?client_id=%s&response_type=code&scope=openid%%20email%%20profile&redirect_uri=%s&state=st123&nonce=n456%s' \
    "$ISSUER" "$CLIENT" "$REDIRECT" "$1"
}
token() { # token CODE VERIFIER -> JSON on stdout
  curl -sS -u "$CLIENT:$SECRET" --data-urlencode grant_type=authorization_code \
    --data-urlencode "code=$1" --data-urlencode "redirect_uri=$REDIRECT" \
    --data-urlencode "code_verifier=$2" "$ISSUER/token"
}
id_payload() { printf '%s' "$1" | json id_token | cut -d. -f2 | b64url_decode; }

start sample-config.json

# A. login_hint shortcut: redirects only
rm -f "$JAR"; pkce
follow "$(authorize_url "&code_challenge=$CHALLENGE&code_challenge_method=S256&login_hint=alice")"
CODE=$(qparam "$FINAL" code); [[ -n $CODE && $(qparam "$FINAL" state) == st123 ]] || fail "no code: $FINAL"
ok "login_hint shortcut -> $FINAL"
TOK=$(token "$CODE" "$VERIFIER"); AT=$(printf '%s' "$TOK" | json access_token)
[[ -n $AT ]] || fail "token: $TOK"
P=$(id_payload "$TOK"); echo "id_token payload: $P"
[[ $(printf '%s' "$P" | json sub) == alice && $(printf '%s' "$P" | json nonce) == n456 ]] || fail "id_token sub/nonce"
[[ $(printf '%s' "$P" | json groups) == '["admins","staff"]' && $(printf '%s' "$P" | json email) == alice@example.test ]] || fail "id_token claims"
ok "token exchange (client_secret_basic, S256), id_token carries email + groups"
UI=$(curl -sS -H "Authorization: Bearer $AT" "$ISSUER/me"); echo "userinfo: $UI"
[[ $(printf '%s' "$UI" | json groups) == '["admins","staff"]' ]] || fail "userinfo"
ok "userinfo"
[[ $(token "$CODE" "$VERIFIER" | json error) == invalid_grant ]] || fail "code reuse accepted"
ok "code reuse refused"

# B. login form (new cookie jar); then wrong verifier refused
rm -f "$JAR"; pkce
[[ $(get "$(authorize_url "&code_challenge=$CHALLENGE&code_challenge_method=S256")") == 303 ]] || fail "authorize"
INTER=$(loc); [[ $INTER == /interaction/* ]] || fail "not an interaction: $INTER"
[[ $(get "$ISSUER$INTER") == 200 ]] && grep -q 'name="login"' "$WORK/body" || fail "no login form"
[[ $(get --data-urlencode login=bob "$ISSUER$INTER/login") == 303 ]] || fail "login post"
follow "$(abs "$(loc)")"; CODE=$(qparam "$FINAL" code); [[ -n $CODE ]] || fail "form: $FINAL"
ok "login form -> $FINAL"
[[ $(token "$CODE" "${VERIFIER}x" | json error) == invalid_grant ]] || fail "wrong verifier accepted"
ok "wrong PKCE verifier refused"

# C. session reused (no login), plain PKCE, missing verifier refused
pkce
follow "$(authorize_url "&code_challenge=$VERIFIER&code_challenge_method=plain")"
CODE=$(qparam "$FINAL" code); [[ -n $CODE ]] || fail "plain: $FINAL"
[[ $(token "$CODE" "" | json error) == invalid_grant ]] || fail "missing verifier accepted"
follow "$(authorize_url "&code_challenge=$VERIFIER&code_challenge_method=plain")"
P=$(id_payload "$(token "$(qparam "$FINAL" code)" "$VERIFIER")")
[[ $(printf '%s' "$P" | json sub) == bob ]] || fail "plain token: $P"
ok "plain PKCE (emulated) with live session, missing verifier refused"
pkce
follow "$(authorize_url "&code_challenge=$CHALLENGE&code_challenge_method=S256&login_hint=alice")"
P=$(id_payload "$(token "$(qparam "$FINAL" code)" "$VERIFIER")")
[[ $(printf '%s' "$P" | json sub) == alice ]] || fail "login_hint switch: $P"
ok "login_hint naming another account than the session logs that account in"

# D. abort -> error=access_denied on the callback
rm -f "$JAR"
get "$(authorize_url "")" >/dev/null; INTER=$(loc)
get "$ISSUER$INTER" >/dev/null; get -X POST "$ISSUER$INTER/abort" >/dev/null
follow "$(abs "$(loc)")"; [[ $(qparam "$FINAL" error) == access_denied ]] || fail "abort: $FINAL"
ok "abort -> $FINAL"

# E. account update + key rotation, then ES256 client; revocation
curl -sS -fo /dev/null -H 'content-type: application/json' \
  -d '{"email":"alice@example.test","email_verified":true,"groups":["staff"]}' "$ISSUER/__test/accounts/alice"
OLD_KIDS=$(curl -sS "$ISSUER/jwks" | json keys)
curl -sS -f -X POST "$ISSUER/__test/rotate-keys" >/dev/null
[[ $(curl -sS "$ISSUER/jwks" | json keys) != "$OLD_KIDS" ]] || fail "keys not rotated"
rm -f "$JAR"; pkce
follow "$(authorize_url "&code_challenge=$CHALLENGE&code_challenge_method=S256&login_hint=alice")"
TOK=$(token "$(qparam "$FINAL" code)" "$VERIFIER"); P=$(id_payload "$TOK")
KID=$(printf '%s' "$TOK" | json id_token | cut -d. -f1 | b64url_decode | json kid)
curl -sS "$ISSUER/jwks" | grep -q "\"$KID\"" || fail "kid $KID not in new JWKS"
[[ $(printf '%s' "$P" | json groups) == '["staff"]' ]] || fail "updated groups: $P"
ok "account update + key rotation (kid $KID)"
AT=$(printf '%s' "$TOK" | json access_token)
curl -sS -f -u "$CLIENT:$SECRET" -d "token=$AT" "$ISSUER/token/revocation" >/dev/null
[[ $(curl -sS -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $AT" "$ISSUER/me") == 401 ]] || fail "revoked token works"
ok "revocation"
CLIENT=gateway-es256 SECRET=gateway-es256-secret-0123456789; pkce
follow "$(authorize_url "&code_challenge=$CHALLENGE&code_challenge_method=S256")"
TOK=$(curl -sS -d grant_type=authorization_code -d "code=$(qparam "$FINAL" code)" -d "redirect_uri=$REDIRECT" \
  -d "code_verifier=$VERIFIER" -d "client_id=$CLIENT" -d "client_secret=$SECRET" "$ISSUER/token")
[[ $(printf '%s' "$TOK" | json id_token | cut -d. -f1 | b64url_decode | json alg) == ES256 ]] || fail "ES256: $TOK"
ok "ES256 client (client_secret_post)"
CLIENT=gateway SECRET=gateway-secret-0123456789; rm -f "$JAR"; pkce
follow "$(authorize_url "&code_challenge=$CHALLENGE&code_challenge_method=S256&login_hint=alice" | sed 's/scope=openid/scope=openid%20offline_access/')&prompt=consent"
RT=$(token "$(qparam "$FINAL" code)" "$VERIFIER" | json refresh_token); [[ -n $RT ]] || fail "no refresh token"
TOK=$(curl -sS -u "$CLIENT:$SECRET" -d grant_type=refresh_token --data-urlencode "refresh_token=$RT" "$ISSUER/token")
[[ -n $(printf '%s' "$TOK" | json access_token) ]] || fail "refresh: $TOK"
ok "offline_access + prompt=consent (auto-consent) -> refresh token works"
stop; unset SRV_PID

# F. claims_in_id_token=false: only userinfo has the profile/email/groups claims
node -e 'const c=require("./sample-config.json");c.claims_in_id_token=false;c.pkce_methods=["S256"];console.log(JSON.stringify(c))' >"$WORK/cfg2.json"
start "$WORK/cfg2.json"; CLIENT=gateway SECRET=gateway-secret-0123456789
rm -f "$JAR"; pkce
follow "$(authorize_url "&code_challenge=$CHALLENGE&code_challenge_method=S256&login_hint=alice")"
TOK=$(token "$(qparam "$FINAL" code)" "$VERIFIER"); P=$(id_payload "$TOK"); echo "id_token payload: $P"
[[ -z $(printf '%s' "$P" | json groups) && -z $(printf '%s' "$P" | json email) ]] || fail "claims leaked into id_token"
UI=$(curl -sS -H "Authorization: Bearer $(printf '%s' "$TOK" | json access_token)" "$ISSUER/me")
[[ $(printf '%s' "$UI" | json groups) == '["admins","staff"]' ]] || fail "userinfo: $UI"
ok "claims_in_id_token=false"
[[ $(get "$(authorize_url "&code_challenge=$VERIFIER&code_challenge_method=plain")") == 303 && $(loc) == *error=invalid_request* ]] || fail "plain accepted"
ok "plain refused when not in pkce_methods"

echo "oidc smoke: $PASS passed, 0 failed"
