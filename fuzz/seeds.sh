#!/usr/bin/env bash
# Makes the fuzz key (fuzz/keys: RSA-2048, self-signed, test only) and the seed corpora
# (fuzz/corpus/<target>/: decoded XML, one file per shape) with
# tests/peers/saml/forge.py, which signs with xmlsec1. Neither is committed; run.sh runs
# this when the corpus is missing. Needs python3 (stdlib), openssl and /usr/bin/xmlsec1.
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p keys corpus/precheck corpus/response corpus/response_signed corpus/dsig_differential
if [ ! -f keys/idp.crt ]; then
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj /CN=fuzz-idp \
    -keyout keys/idp.key -out keys/idp.crt 2>/dev/null
fi
python3 - <<'PY'
import base64, json, os, subprocess, sys

# What fuzz_targets/common.rs expects.
BASE = {
    "keys": os.path.abspath("keys"), "now": 1800000000,
    "acs": "https://sso.example.test/saml/con_f/acs",
    "sp": "https://sso.example.test/saml/con_f/metadata",
    "idp": "https://idp.example.test/metadata",
    "in_response_to": "_fuzzrequest0123456789", "name_id": "alice@example.test",
    "attributes": {"email": ["alice@example.test"], "displayName": ["Alice Example"],
                   "groups": ["admins", "staff", "eng"], "empty": []},
    "friendly": {"email": "mail", "groups": "memberOf"},
}
SIGNED = {  # fuzz target `response`: signed with keys/, then maybe bent
    "assertion": {}, "response": {"sign": "response"}, "both": {"sign": "both"},
    "no_prefix_list": {"prefix_list": ""},
    "sha512": {"sig_alg": "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512",
               "digest_alg": "http://www.w3.org/2001/04/xmlenc#sha512"},
    "unsolicited": {"in_response_to": None},
    "remote_reference": {"attack": "remote_reference", "remote": "http://127.0.0.1:9/x"},
}
for a in ["tamper", "comment_nameid", "moved", "evil_before", "evil_after", "evil_around",
          "duplicate_id", "nested_id", "xslt"]:
    SIGNED[a] = {"attack": a}
PROFILE = {  # both targets: each refusal of the Web SSO profile checks once
    "ok": {}, "status": {"status": "urn:oasis:names:tc:SAML:2.0:status:Requester"},
    "no_audience": {"no_audience": True}, "audience": {"audience": "https://other.example"},
    "recipient": {"recipient": "https://other.example/acs"},
    "destination": {"destination": "https://other.example/acs"},
    "issuer": {"issuer": "https://evil.example"}, "expired": {"not_on_or_after": -100},
    "not_yet": {"not_before": 100}, "scd_expired": {"scd_not_on_or_after": -100},
    "irt": {"in_response_to": "_other"}, "scd_irt": {"scd_in_response_to": "_other"},
}

def forge(spec):
    out = subprocess.run([sys.executable, "../tests/peers/saml/forge.py", json.dumps(spec)],
                         check=True, capture_output=True, text=True)
    return base64.b64decode(out.stdout)

def put(target, name, xml):
    with open(f"corpus/{target}/{name}.xml", "wb") as f:
        f.write(xml)

for name, extra in SIGNED.items():
    xml = forge({**BASE, **extra})
    put("response", name, xml); put("precheck", name, xml)
for name, extra in PROFILE.items():
    put("response", "profile_" + name, forge({**BASE, **extra}))
    put("response_signed", name, forge({**BASE, **extra, "sign": "none"}))
# dsig_differential: the xmlsec1-signed seeds as they are, the profile seeds unsigned
# (signed there by sign_root), and names with U+1680 (Unicode whitespace, yet an XML name
# character): after signing (forge.py's ogham_name) and before (signed there).
for name, extra in SIGNED.items():
    put("dsig_differential", "signed_" + name, forge({**BASE, **extra}))
for name, extra in PROFILE.items():
    put("dsig_differential", "unsigned_" + name, forge({**BASE, **extra, "sign": "none"}))
put("dsig_differential", "signed_ogham_name", forge({**BASE, "attack": "ogham_name"}))
put("dsig_differential", "signed_both_ogham_name", forge({**BASE, "sign": "both", "attack": "ogham_name"}))
ok = forge({**BASE, "sign": "none"}).decode()
for tag in ["saml:AuthnContextClassRef", "saml:Audience", "saml:NameID"]:
    local = tag.split(":")[1]
    renamed = ok.replace("<" + tag, "<" + tag + "\u1680X", 1).replace("</" + tag + ">", "</" + tag + "\u1680X>", 1)
    put("dsig_differential", "unsigned_ogham_" + local, renamed.encode())
    prefixed = ok.replace("<" + tag, "<saml\u1680X:" + local + ' xmlns:saml\u1680X="urn:oasis:names:tc:SAML:2.0:assertion"', 1)
    put("dsig_differential", "unsigned_ogham_prefix_" + local, prefixed.replace("</" + tag + ">", "</saml\u1680X:" + local + ">", 1).encode())
put("precheck", "doctype", b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aa">]><r>&a;</r>')
PY
echo "seeds: $(ls corpus/response | wc -l) response, $(ls corpus/response_signed | wc -l) response_signed, $(ls corpus/dsig_differential | wc -l) dsig_differential, $(ls corpus/precheck | wc -l) precheck; key in fuzz/keys"
