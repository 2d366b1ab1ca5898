#!/usr/bin/env python3
"""Minimal pysaml2 SP used only by smoke.sh to drive and check idp.py.

  request --idp-metadata F --entity-id SP --acs URL --keys DIR [--sign] [--binding redirect|post]
      prints {"id": REQUEST_ID, "url": REDIRECT_URL} or {"id": ..., "saml_request": B64}
  check --idp-metadata F --entity-id SP --acs URL --keys DIR --html FILE [--request-id ID]
        --idp-cert PEM --expect-sign assertion|response|both|none [--expect-relay-state RS]
      checks the IdP's HTML form: action = ACS, InResponseTo, signatures where expected
      (each verified with the xmlsec1 CLI against the IdP cert), then lets pysaml2's SP
      validate the whole response; prints a short JSON summary.
"""
import argparse
import base64
import html
import json
import logging
import re
import subprocess
import sys
import tempfile
import warnings
import xml.etree.ElementTree as ET

from cryptography.utils import CryptographyDeprecationWarning

warnings.filterwarnings("ignore", category=CryptographyDeprecationWarning)
warnings.filterwarnings("ignore", message="The SAML service provider accepts unsigned")
logging.basicConfig(level=logging.ERROR)
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.client import Saml2Client
from saml2.config import SPConfig
from saml2.xmldsig import DIGEST_SHA256, SIG_RSA_SHA256

DS_SIGNATURE = "{http://www.w3.org/2000/09/xmldsig#}Signature"
ASSERTION = "{urn:oasis:names:tc:SAML:2.0:assertion}Assertion"
ATTRIBUTE = "{urn:oasis:names:tc:SAML:2.0:assertion}Attribute"


def client(args, sign=False):
    cfg = SPConfig()
    cfg.load({
        "entityid": args.entity_id,
        "xmlsec_binary": "/usr/bin/xmlsec1",
        "key_file": f"{args.keys}/idp.key",
        "cert_file": f"{args.keys}/idp.crt",
        "metadata": {"local": [args.idp_metadata]},
        "accepted_time_diff": 60,
        "service": {"sp": {
            "endpoints": {"assertion_consumer_service": [(args.acs, BINDING_HTTP_POST)]},
            "authn_requests_signed": sign,
            "want_response_signed": False,
            "want_assertions_signed": False,
            "want_assertions_or_response_signed": False,
            "allow_unsolicited": True,
            "allow_unknown_attributes": True,
        }},
    })
    return Saml2Client(config=cfg)


def cmd_request(args):
    c = client(args, args.sign)
    idp = next(iter(c.metadata.identity_providers()))
    if args.binding == "redirect":
        rid, info = c.prepare_for_authenticate(entityid=idp, relay_state="rs-123", binding=BINDING_HTTP_REDIRECT,
                                               sign=args.sign, sigalg=SIG_RSA_SHA256 if args.sign else None)
        print(json.dumps({"id": rid, "url": dict(info["headers"])["Location"]}))
    else:
        dest = c.metadata.single_sign_on_service(idp, BINDING_HTTP_POST)[0]["location"]
        rid, req = c.create_authn_request(dest, binding=BINDING_HTTP_POST, sign=args.sign,
                                          sign_alg=SIG_RSA_SHA256, digest_alg=DIGEST_SHA256)
        print(json.dumps({"id": rid, "saml_request": base64.b64encode(str(req).encode()).decode()}))


def xmlsec_verify(xml, xpath, cert):
    with tempfile.NamedTemporaryFile("w", suffix=".xml") as f:
        f.write(xml)
        f.flush()
        r = subprocess.run(["xmlsec1", "--verify", "--pubkey-cert-pem", cert,
                            "--id-attr:ID", "urn:oasis:names:tc:SAML:2.0:protocol:Response",
                            "--id-attr:ID", "urn:oasis:names:tc:SAML:2.0:assertion:Assertion",
                            "--node-xpath", xpath, f.name], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"xmlsec1 verify of {xpath} failed: {r.stderr.strip()}")


def cmd_check(args):
    page = open(args.html).read()
    action = html.unescape(re.search(r'<form method="post" action="([^"]*)"', page).group(1))
    fields = {n: html.unescape(v) for n, v in re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', page)}
    if action != args.acs:
        sys.exit(f"form action {action} != ACS {args.acs}")
    if fields.get("RelayState") != args.expect_relay_state:
        sys.exit(f"RelayState {fields.get('RelayState')!r} != {args.expect_relay_state!r}")
    xml = base64.b64decode(fields["SAMLResponse"]).decode()
    root = ET.fromstring(xml)
    assertion = root.find(ASSERTION)
    resp_sig = root.find(DS_SIGNATURE) is not None
    assert_sig = assertion is not None and assertion.find(DS_SIGNATURE) is not None
    want = args.expect_sign
    if (resp_sig, assert_sig) != (want in ("response", "both"), want in ("assertion", "both")):
        sys.exit(f"signatures: response={resp_sig} assertion={assert_sig}, expected {want}\n{xml}")
    if resp_sig:
        xmlsec_verify(xml, "/*[local-name()='Response']/*[local-name()='Signature']", args.idp_cert)
    if assert_sig:
        xmlsec_verify(xml, "//*[local-name()='Assertion']/*[local-name()='Signature']", args.idp_cert)
    irt = root.get("InResponseTo")
    if irt != args.request_id:
        sys.exit(f"InResponseTo {irt!r} != {args.request_id!r}")
    outstanding = {args.request_id: "/"} if args.request_id else {}
    resp = client(args).parse_authn_request_response(fields["SAMLResponse"], BINDING_HTTP_POST, outstanding)
    if resp is None:
        sys.exit("pysaml2 SP refused the response")
    attrs = {a.get("Name"): [v.text for v in a] for a in root.iter(ATTRIBUTE)}
    print(json.dumps({"in_response_to": irt, "name_id": resp.name_id.text, "signed_response": resp_sig,
                      "signed_assertion": assert_sig, "attributes": attrs, "pysaml2_sp_accepted": True}))


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("request", "check"):
        p = sub.add_parser(name)
        for opt in ("--idp-metadata", "--entity-id", "--acs", "--keys"):
            p.add_argument(opt, required=True)
    r = sub.choices["request"]
    r.add_argument("--sign", action="store_true")
    r.add_argument("--binding", choices=("redirect", "post"), default="redirect")
    c = sub.choices["check"]
    c.add_argument("--html", required=True)
    c.add_argument("--request-id")
    c.add_argument("--idp-cert", required=True)
    c.add_argument("--expect-sign", required=True)
    c.add_argument("--expect-relay-state")
    args = ap.parse_args()
    {"request": cmd_request, "check": cmd_check}[args.cmd](args)


if __name__ == "__main__":
    main()
