#!/usr/bin/env bash
# Smoke test of the SAML test IdP (idp.py serve) with a hand-written SP metadata and a
# pysaml2 SP client (smoke_sp.py): HTTP-Redirect and HTTP-POST AuthnRequests, signed and
# unsigned, the four signing modes, another user, refusals, IdP-initiated.
# Needs `bash tests/peers/setup.sh` first.
set -euo pipefail
cd "$(dirname "$0")"
PY=../.venv/bin/python
WORK=$(mktemp -d)
ACS=http://127.0.0.1:1/acs
PASS=0
fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { PASS=$((PASS + 1)); echo "ok - $*"; }
stop() { if [[ -n "${IDP_PID:-}" ]]; then eval "exec ${IDP[1]}>&-"; wait "$IDP_PID" || true; fi; }
trap 'stop; rm -rf "$WORK"' EXIT

$PY idp.py keys --out "$WORK/idp"
$PY idp.py keys --out "$WORK/sp"
SP_CERT=$(sed '/-----/d' "$WORK/sp/idp.crt" | tr -d '\n')
cat >"$WORK/sp-metadata.xml" <<EOF
<?xml version="1.0"?>
<md:EntitiesDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:ds="http://www.w3.org/2000/09/xmldsig#">
  <md:EntityDescriptor entityID="http://127.0.0.1:1/sp-plain">
    <md:SPSSODescriptor AuthnRequestsSigned="false" WantAssertionsSigned="true"
        protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">
      <md:AssertionConsumerService index="0" isDefault="true" Location="$ACS"
          Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"/>
    </md:SPSSODescriptor>
  </md:EntityDescriptor>
  <md:EntityDescriptor entityID="http://127.0.0.1:1/sp-signed">
    <md:SPSSODescriptor AuthnRequestsSigned="true" WantAssertionsSigned="true"
        protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">
      <md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data>
        <ds:X509Certificate>$SP_CERT</ds:X509Certificate>
      </ds:X509Data></ds:KeyInfo></md:KeyDescriptor>
      <md:AssertionConsumerService index="0" isDefault="true" Location="$ACS"
          Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"/>
    </md:SPSSODescriptor>
  </md:EntityDescriptor>
</md:EntitiesDescriptor>
EOF
cat >"$WORK/users.json" <<'EOF'
{"alice": {"email": ["alice@example.test"], "givenName": ["Alice"], "sn": ["Example"], "groups": ["admins", "staff"]},
 "bob": {"email": ["bob@example.test", "bob2@example.test"], "givenName": ["Bob"], "sn": ["Example"], "groups": ["staff"]}}
EOF

start_idp() { # start_idp SERVE_ARGS...: coproc with stdin held open by us; sets BASE
  coproc IDP { exec $PY idp.py serve --keys "$WORK/idp" --users "$WORK/users.json" "$@" \
    2>>"${SERVER_LOG:-$WORK/idp.log}"; }
  local line
  read -r -t 30 line <&"${IDP[0]}" || { cat "$WORK/idp.log" >&2; fail "idp did not start"; }
  echo "ready line: $line"
  BASE=$(printf '%s' "$line" | $PY -c 'import json,sys; print(json.load(sys.stdin)["base_url"])')
}
start_idp --sp-metadata "$WORK/sp-metadata.xml"

curl -sSf "$BASE/metadata" >"$WORK/idp-md.xml"
grep -q 'KeyDescriptor use="signing"' "$WORK/idp-md.xml" && grep -q "$BASE/sso/redirect" "$WORK/idp-md.xml" \
  || fail "metadata: $(cat "$WORK/idp-md.xml")"
$PY idp.py metadata --base-url "$BASE" --keys "$WORK/idp" --no-signing-cert | grep -q KeyDescriptor \
  && fail "--no-signing-cert still has a KeyDescriptor"
ok "metadata (with and without signing cert)"

sp() { # sp ENTITY SUBCOMMAND ARGS...
  local e=$1 c=$2; shift 2
  $PY smoke_sp.py "$c" --idp-metadata "$WORK/idp-md.xml" --entity-id "http://127.0.0.1:1/$e" \
    --acs "$ACS" --keys "$WORK/sp" "$@"
}
jget() { $PY -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
check() { # check ENTITY REQUEST_ID EXPECT_SIGN [RELAY_STATE]
  local out; out=$(sp "$1" check --html "$WORK/page.html" --idp-cert "$WORK/idp/idp.crt" \
    ${2:+--request-id "$2"} --expect-sign "$3" ${4:+--expect-relay-state "$4"}) || fail "check $*"
  echo "  $out"
}
redirect() { # redirect ENTITY EXTRA_QUERY [--sign]: sets CODE, REQ_ID; page in page.html
  local e=$1 extra=$2; shift 2
  local req; req=$(sp "$e" request "$@")
  REQ_ID=$(printf '%s' "$req" | jget id)
  CODE=$(curl -sS -o "$WORK/page.html" -w '%{http_code}' "$(printf '%s' "$req" | jget url)$extra")
}

for mode in assertion response both none; do
  redirect sp-plain "&sign=$mode"; [[ $CODE == 200 ]] || fail "sso/redirect sign=$mode: $(cat "$WORK/page.html")"
  check sp-plain "$REQ_ID" "$mode" rs-123
  ok "HTTP-Redirect, unsigned request, sign=$mode"
done
redirect sp-plain "&user=bob"; [[ $CODE == 200 ]] || fail "user=bob"
OUT=$(check sp-plain "$REQ_ID" assertion rs-123); echo "$OUT"
[[ $OUT == *'"name_id": "bob"'* && $OUT == *'"email": ["bob@example.test", "bob2@example.test"]'* ]] || fail "bob"
ok "user=bob, multi-valued email"
redirect sp-plain "&attr_names=oid"; [[ $CODE == 200 ]] || fail "attr_names=oid"
OUT=$(check sp-plain "$REQ_ID" assertion rs-123); echo "$OUT"
[[ $OUT == *'"urn:oid:2.5.4.42": ["Alice"]'* ]] || fail "oid names"
ok "attr_names=oid"

redirect sp-signed "" --sign; [[ $CODE == 200 ]] || fail "signed request: $(cat "$WORK/page.html")"
check sp-signed "$REQ_ID" assertion rs-123
ok "HTTP-Redirect, signed request (AuthnRequestsSigned=true)"
redirect sp-signed ""; [[ $CODE == 400 ]] || fail "unsigned request accepted for sp-signed"
ok "unsigned request refused when AuthnRequestsSigned=true: $(cat "$WORK/page.html")"
REQ=$(sp sp-signed request --sign); URL=$(printf '%s' "$REQ" | jget url)
BAD=$(printf '%s' "$URL" | sed 's/RelayState=rs-123/RelayState=rs-124/')
[[ $(curl -sS -o "$WORK/page.html" -w '%{http_code}' "$BAD") == 400 ]] || fail "tampered request accepted"
ok "tampered signed request refused: $(cat "$WORK/page.html")"

for e in sp-plain sp-signed; do
  if [[ $e == sp-signed ]]; then REQ=$(sp $e request --binding post --sign); else REQ=$(sp $e request --binding post); fi
  code=$(curl -sS -o "$WORK/page.html" -w '%{http_code}' --data-urlencode "SAMLRequest=$(printf '%s' "$REQ" | jget saml_request)" \
    --data-urlencode RelayState=rs-post "$BASE/sso/post?sign=both")
  [[ $code == 200 ]] || fail "sso/post $e: $(cat "$WORK/page.html")"
  check $e "$(printf '%s' "$REQ" | jget id)" both rs-post
  ok "HTTP-POST AuthnRequest ($e)"
done
REQ=$(sp sp-signed request --binding post)
[[ $(curl -sS -o "$WORK/page.html" -w '%{http_code}' --data-urlencode "SAMLRequest=$(printf '%s' "$REQ" | jget saml_request)" \
  "$BASE/sso/post") == 400 ]] || fail "unsigned POST request accepted for sp-signed"
ok "unsigned HTTP-POST request refused when AuthnRequestsSigned=true: $(cat "$WORK/page.html")"

[[ $(curl -sS -o "$WORK/page.html" -w '%{http_code}' "$BASE/sso/idp-initiated?sp=http://127.0.0.1:1/sp-plain&relay_state=rs-idp") == 200 ]] \
  || fail "idp-initiated: $(cat "$WORK/page.html")"
check sp-plain "" assertion rs-idp
ok "IdP-initiated (no InResponseTo)"

# --sp-metadata-url: SP metadata fetched over HTTP on each request
stop; unset IDP_PID
$PY -u -m http.server 0 --bind 127.0.0.1 -d "$WORK" >"$WORK/http.out" 2>/dev/null &
HTTP_PID=$!; trap 'stop; kill "$HTTP_PID" 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 50); do grep -q 'port' "$WORK/http.out" 2>/dev/null && break; sleep 0.1; done
HTTP_PORT=$(sed -n 's/.* port \([0-9]*\) .*/\1/p' "$WORK/http.out")
start_idp --sp-metadata-url "http://127.0.0.1:$HTTP_PORT/sp-metadata.xml" --sign both
curl -sSf "$BASE/metadata" >"$WORK/idp-md.xml"
redirect sp-plain ""; [[ $CODE == 200 ]] || fail "--sp-metadata-url: $(cat "$WORK/page.html")"
check sp-plain "$REQ_ID" both rs-123
ok "--sp-metadata-url, --sign both"

echo "saml smoke: $PASS passed, 0 failed"
