#!/usr/bin/env bash
# Checks that the admin API's OpenAPI document is valid and that the running server keeps to it:
#
#   bash tests/peers/openapi/check.sh BASE_URL ADMIN_TOKEN      (e.g. http://127.0.0.1:PORT)
#
# Needs `bash tests/peers/setup.sh` first (tests/peers/.openapi-venv with schemathesis, pinned
# in requirements.txt) and openssl. The server should be a fresh one of its own (an empty
# data dir): this creates users, groups, connections and an invitation, and schemathesis then
# sends about 2,000 requests, many of them writes.
# Start that server with its outbound calls sent to a closed local port:
#   HTTP_PROXY=http://127.0.0.1:9 HTTPS_PROXY=http://127.0.0.1:9 NO_PROXY=127.0.0.1,localhost
# Schemathesis reuses values from earlier responses, so it sends the presets' real issuers
# (https://accounts.google.com, ...) to POST /discovery and POST /connections, and the server
# would try to fetch them; behind that proxy each such call fails at once, inside the machine.
#
# 1. GET BASE_URL/api/v1/openapi.json; validate_doc.py checks it against the OpenAPI 3.1 and
#    JSON Schema 2020-12 meta-schemas, $refs, operationIds and path parameters.
# 2. Fixtures through the API (a user, a group with that member, an OIDC and a SAML connection,
#    an invitation, and one more of each to delete), so that the {id} operations reach a real
#    object instead of answering 404 only.
# 3. schemathesis, every operation: the coverage, fuzzing and stateful phases (and examples,
#    though the document has none), valid and invalid data, all checks: no 5xx, status codes,
#    content types, headers and bodies as documented, invalid requests refused, valid ones
#    accepted (see the one adjustment below), auth required, 405 with Allow for undocumented
#    methods, created resources found, deleted ones gone. Deterministic (no seed:
#    --generation-deterministic, one worker): the same findings on every run.
# Takes about 20 s on 2 cores. Exits 0 with a last line "openapi check: N operations, OK";
# 1 with schemathesis' report (each finding with a curl command that reproduces it);
# 2 when it cannot run. OPENAPI_CHECK_KEEP=DIR keeps the document, config, report and events.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
VENV=$HERE/../.openapi-venv
# A few examples per operation are enough: the coverage phase already walks each schema's
# boundaries and each documented status.
MAX_EXAMPLES=${OPENAPI_CHECK_MAX_EXAMPLES:-20}
RUN_TIMEOUT=240    # seconds, for schemathesis as a whole (about 20 alone; far more on 2 busy cores)
REQUEST_TIMEOUT=10 # seconds, per request; a slower one is reported as a failure

die() { echo "openapi check: ERROR: $*" >&2; exit 2; }
# Only loopback is spoken to here: no proxy of the caller's in between.
unset HTTP_PROXY HTTPS_PROXY ALL_PROXY http_proxy https_proxy all_proxy
(($# == 2)) || die "usage: check.sh BASE_URL ADMIN_TOKEN"
BASE=${1%/}
TOKEN=$2
[[ -x $VENV/bin/schemathesis ]] || die "no $VENV/bin/schemathesis: run bash tests/peers/setup.sh"
PY=$VENV/bin/python
WORK=$(mktemp -d)
keep() {
  [[ -n ${OPENAPI_CHECK_KEEP:-} ]] || return 0
  mkdir -p "$OPENAPI_CHECK_KEEP" && cp "$WORK"/{openapi.json,schemathesis.toml,out.txt,events.ndjson} "$OPENAPI_CHECK_KEEP"/ 2>/dev/null
}
trap 'keep; rm -rf "$WORK"' EXIT

# http METHOD URL [JSON]: the response body on stdout; fails, saying why, unless it is a 2xx.
http() {
  "$PY" - "$TOKEN" "$@" <<'EOF'
import sys
import requests
token, method, url, *body = sys.argv[1:]
headers = {"Authorization": f"Bearer {token}"}
if body:
    headers["Content-Type"] = "application/json"
try:
    r = requests.request(method, url, headers=headers, data=body[0].encode() if body else None, timeout=10)
except requests.RequestException as e:
    sys.exit(f"openapi check: {method} {url}: {e}")
if not 200 <= r.status_code < 300:
    sys.exit(f"openapi check: {method} {url} answered {r.status_code}: {r.text}")
sys.stdout.write(r.text)
EOF
}

# 1. The document.
http GET "$BASE/api/v1/openapi.json" >"$WORK/openapi.json" || die "could not get the document"
if ! "$PY" "$HERE/validate_doc.py" "$WORK/openapi.json" >"$WORK/doc.txt"; then
  cat "$WORK/doc.txt"
  echo "openapi check: the document is not valid" >&2
  exit 1
fi

# 2. Fixtures. api METHOD PATH [JSON]: http on an admin route, or stop.
api() { http "$1" "$BASE/api/v1/admin$2" ${3:+"$3"} || die "could not make the fixtures"; }
# new METHOD PATH [JSON]: the id of the object made.
new() {
  local made
  made=$(api "$@") || exit 2
  "$PY" -c 'import json, sys; print(json.loads(sys.argv[1])["id"])' "$made"
}
oidc_body() {
  printf '{"display_name": "%s", "protocol": "oidc", "oidc": {"issuer": "https://idp.example.test",
    "client_id": "client-1", "client_secret": "the-client-secret-value",
    "authorization_endpoint": "https://idp.example.test/authorize",
    "token_endpoint": "https://idp.example.test/token", "jwks_uri": "https://idp.example.test/jwks"}}' "$1"
}
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 -subj /CN=idp.example.test \
  -keyout "$WORK/idp.key" -out "$WORK/idp.crt" 2>/dev/null || die "openssl req failed"
saml_body=$("$PY" - "$WORK/idp.crt" <<'EOF'
import json, sys
cert = "".join(l.strip() for l in open(sys.argv[1]) if "-----" not in l)
md = f"""<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="https://idp.example.test/metadata">
  <md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">
    <md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{cert}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>
    <md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="https://idp.example.test/sso"/>
  </md:IDPSSODescriptor>
</md:EntityDescriptor>"""
print(json.dumps({"display_name": "Fixture SAML", "protocol": "saml", "saml": {"idp_metadata_xml": md}}))
EOF
)
user=$(new POST /users '{"username": "fixture-user", "email": "fixture-user@example.test"}')
user_del=$(new POST /users '{"username": "fixture-delete", "email": "fixture-delete@example.test"}')
group=$(new POST /groups '{"name": "fixture-group", "description": "Made by check.sh."}')
group_del=$(new POST /groups '{"name": "fixture-group-delete"}')
api PUT "/groups/$group/members/$user" >/dev/null
oidc=$(new POST /connections "$(oidc_body 'Fixture OIDC')")
oidc_del=$(new POST /connections "$(oidc_body 'Fixture OIDC delete')")
saml=$(new POST /connections "$saml_body")
invitation=$(new POST /invitations '{"email": "fixture-invited@example.test"}')

# Path values per operation: the object each operation works on (DELETEs get their own), as
# one-value dictionaries rather than fixed `parameters`: a fixed value would also replace the id
# that the stateful phase passes along a link (POST /groups -> DELETE /groups/{id}).
# Operations are matched by exact name: within one [[operations]], include-path and
# include-method match either, not both.
A=/api/v1/admin
cat >"$WORK/schemathesis.toml" <<EOF
# No crash cache (.schemathesis/): it would replay an earlier run's failures first.
cache = { enabled = false }

[dictionaries]
user = { values = ["$user"] }
user_del = { values = ["$user_del"] }
group = { values = ["$group"] }
group_del = { values = ["$group_del"] }
oidc = { values = ["$oidc"] }
oidc_del = { values = ["$oidc_del"] }
saml = { values = ["$saml"] }
invitation = { values = ["$invitation"] }

[[operations]]
include-name = ["GET $A/users/{id}", "PATCH $A/users/{id}"]
parameters = { "path.id" = { dictionary = "user" } }
[[operations]]
include-name = "DELETE $A/users/{id}"
parameters = { "path.id" = { dictionary = "user_del" } }
[[operations]]
include-name = ["GET $A/groups/{id}", "PATCH $A/groups/{id}", "GET $A/groups/{id}/members"]
parameters = { "path.id" = { dictionary = "group" } }
[[operations]]
include-name = "DELETE $A/groups/{id}"
parameters = { "path.id" = { dictionary = "group_del" } }
[[operations]]
include-name = ["PUT $A/groups/{id}/members/{user_id}", "DELETE $A/groups/{id}/members/{user_id}"]
parameters = { "path.id" = { dictionary = "group" }, "path.user_id" = { dictionary = "user" } }
[[operations]]
include-name = ["GET $A/connections/{id}", "PATCH $A/connections/{id}"]
parameters = { "path.id" = { dictionary = "oidc" } }
[[operations]]
include-name = "DELETE $A/connections/{id}"
parameters = { "path.id" = { dictionary = "oidc_del" } }
[[operations]]
include-name = ["POST $A/connections/{id}/activate", "POST $A/connections/{id}/deactivate",
                "GET $A/connections/{id}/sp-certificate", "POST $A/connections/{id}/sp-keypair"]
parameters = { "path.id" = { dictionary = "saml" } }
[[operations]]
include-name = "DELETE $A/invitations/{id}"
parameters = { "path.id" = { dictionary = "invitation" } }

# positive_data_acceptance (a request the schema allows must not be refused) stays on, with 422
# added to what it accepts. The server answers 400 to a request it cannot read (bad JSON, query
# string or header), which the schema can and must describe; and 422, with field errors, to
# one that breaks a rule no JSON Schema states: a referenced group or user must exist, fields
# must fit together (version and If-Match, protocol and its block), a URL must answer
# (discovery), an SP key pair is for SAML connections only. So a 400 to a schema-valid request
# is still a finding here; a 422 is not.
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "422", "429", "5xx"] # default + 422
# A PATCH without its If-Match header is answered 428 Precondition Required (RFC 6585), the
# status made for exactly this; the default list predates it.
[checks.missing_required_header]
expected-statuses = ["400", "401", "403", "406", "415", "422", "428"] # default + 428
EOF

# 3. schemathesis. All checks run; none is left out. Run in $WORK, where hypothesis keeps its
# files (.hypothesis/), so that nothing is left in the caller's directory.
cd "$WORK"
set +e
timeout --kill-after=5 "$RUN_TIMEOUT" "$VENV/bin/schemathesis" --config-file "$WORK/schemathesis.toml" run \
  "$WORK/openapi.json" --url "$BASE" \
  -H "Authorization: Bearer $TOKEN" \
  --checks all --phases examples,coverage,fuzzing,stateful \
  --max-examples "$MAX_EXAMPLES" --generation-deterministic --workers 1 \
  --request-timeout "$REQUEST_TIMEOUT" --continue-on-failure \
  --output-sanitize false --no-color \
  --report ndjson --report-ndjson-path "$WORK/events.ndjson" \
  >"$WORK/out.txt" 2>&1
rc=$?
set -e
if ((rc == 124 || rc == 137)); then
  cat "$WORK/out.txt"
  echo "openapi check: the slowest requests before the time ran out:"
  "$PY" - "$WORK/events.ndjson" <<'EOF' || true
import json, sys
seen = []
for line in open(sys.argv[1]):
    try:
        event = json.loads(line)
    except ValueError:
        continue
    for i in (event.get("ScenarioFinished") or {}).get("recorder", {}).get("interactions", {}).values():
        if i.get("response"):
            seen.append((i["response"]["elapsed"], i["request"]["method"], i["request"]["uri"]))
for elapsed, method, uri in sorted(seen, reverse=True)[:10]:
    print(f"  {elapsed:6.2f} s  {method} {uri}")
EOF
  echo "openapi check: FAILED: schemathesis ran past ${RUN_TIMEOUT} s" >&2
  exit 1
fi
tested=$(sed -n 's/^ *Tested: *\([0-9]*\).*/\1/p' "$WORK/out.txt")
selected=$(sed -n 's/^ *Selected: *[0-9]*\/\([0-9]*\).*/\1/p' "$WORK/out.txt")
if ((rc != 0)) || [[ -z $tested || $tested != "$selected" ]]; then
  cat "$WORK/out.txt"
  echo "openapi check: FAILED (schemathesis exit $rc; ${tested:-?} of ${selected:-?} operations tested)" >&2
  exit 1
fi
sed -n '/= SUMMARY =/,$p' "$WORK/out.txt" | sed '/^Reports:/,/^$/d'
echo "openapi check: $tested operations, OK"
