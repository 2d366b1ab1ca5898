#!/usr/bin/env bash
# Makes the fuzz key (fuzz/keys: RSA-2048, self-signed, test only) and the seed corpora
# (fuzz/corpus/<target>/: decoded XML, one file per shape) with
# tests/peers/saml/forge.py, which signs with xmlsec1. Neither is committed; run.sh runs
# this when the corpus is missing. Needs python3 (stdlib), openssl and /usr/bin/xmlsec1.
# SEEDS_DIR=dir puts keys/ and corpus/ there instead (the differential unit test
# `upstream::dsig_differential` makes every seed this way and judges each one).
set -euo pipefail
cd "$(dirname "$0")"
out=${SEEDS_DIR:-.}
mkdir -p "$out"/keys "$out"/corpus/precheck "$out"/corpus/response "$out"/corpus/response_signed "$out"/corpus/dsig_differential \
  "$out"/corpus/metadata "$out"/corpus/mapping "$out"/corpus/redirect
if [ ! -f "$out"/keys/idp.crt ]; then
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj /CN=fuzz-idp \
    -keyout "$out"/keys/idp.key -out "$out"/keys/idp.crt 2>/dev/null
fi
python3 - "$out" <<'PY'
import base64, json, os, subprocess, sys
OUT = sys.argv[1]

# What fuzz_targets/common.rs expects.
BASE = {
    "keys": os.path.abspath(os.path.join(OUT, "keys")), "now": 1800000000,
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
    with open(os.path.join(OUT, "corpus", target, name + ".xml"), "wb") as f:
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
def start_tag(xml, tag):
    """Where the first start tag of `tag` itself begins (not of a longer name such as
    saml:AudienceRestriction for saml:Audience) and where its name ends."""
    i = xml.index("<" + tag)
    while xml[i + 1 + len(tag)] not in " />":
        i = xml.index("<" + tag, i + 1)
    return i, i + 1 + len(tag)
for tag in ["saml:AuthnContextClassRef", "saml:Audience", "saml:NameID"]:
    local = tag.split(":")[1]
    start, end = start_tag(ok, tag)
    renamed = ok[:end] + "\u1680X" + ok[end:]
    put("dsig_differential", "unsigned_ogham_" + local, renamed.replace("</" + tag + ">", "</" + tag + "\u1680X>", 1).encode())
    prefixed = ok[:start] + "<saml\u1680X:" + local + ' xmlns:saml\u1680X="urn:oasis:names:tc:SAML:2.0:assertion"' + ok[end:]
    put("dsig_differential", "unsigned_ogham_prefix_" + local, prefixed.replace("</" + tag + ">", "</saml\u1680X:" + local + ">", 1).encode())
put("precheck", "doctype", b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aa">]><r>&a;</r>')
# metadata: an IdP's metadata with the fuzz key, and with two certificates (a rollover).
cert = "".join(l for l in open(os.path.join(OUT, "keys", "idp.crt")).read().splitlines() if "CERTIFICATE" not in l)
key = ('<md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>' + cert +
       '</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>')
def metadata(keys):
    return ('<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" '
            'entityID="https://idp.example.test/metadata"><md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">'
            + keys + '<md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="https://idp.example.test/sso"/>'
            '<md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="https://idp.example.test/sso/post"/>'
            '</md:IDPSSODescriptor></md:EntityDescriptor>').encode()
def seed(target, name, data):
    with open(os.path.join(OUT, "corpus", target, name), "wb") as f:
        f.write(data)
seed("metadata", "one_key.xml", metadata(key))
seed("metadata", "rollover.xml", metadata(key + key.replace('use="signing"', "")))
# mapping: a claim name, a newline, a claim set.
claims = {"sub": "alice", "email": "alice@example.test", "email_verified": True, "name": "Alice",
          "groups": ["staff", "/parent/child"], "realm_access": {"roles": ["admin"]},
          "http://schemas.microsoft.com/ws/2008/06/identity/claims/groups": ["0c9d"], "urn:oid:0.9.2342.19200300.100.1.3": "a@x"}
for name in ["email", "groups", "realm_access.roles", "http://schemas.microsoft.com/ws/2008/06/identity/claims/groups",
             "urn:oid:0.9.2342.19200300.100.1.3", "a.b.c.d"]:
    seed("mapping", name.replace("/", "_").replace(":", "_"), (name + "\n" + json.dumps(claims)).encode())
# redirect: the open-redirect table's shapes.
for i, rd in enumerate(["/", "/path?q=1", "https://app.example.com/x", "https://a.b.corp.example/x", "https://tools.example.com:8443/",
                        "//evil.example", "/\\evil.example", "https://app.example.com@evil.example/", "https:evil.example",
                        "https://app.example.com.evil.example/", "javascript:alert(1)", "https://sso.example.com/after"]):
    seed("redirect", "rd%02d" % i, rd.encode())
PY
echo "seeds: $(ls "$out"/corpus/response | wc -l) response, $(ls "$out"/corpus/metadata "$out"/corpus/mapping "$out"/corpus/redirect | wc -l) metadata/mapping/redirect, $(ls "$out"/corpus/response_signed | wc -l) response_signed, $(ls "$out"/corpus/dsig_differential | wc -l) dsig_differential, $(ls "$out"/corpus/precheck | wc -l) precheck; key in $out/keys"
