#!/usr/bin/env python3
"""Makes SAML responses for ssogate's ACS tests, signed by xmlsec1 (Debian), then bent.

Every signed fixture the tests post is made here, on demand, from one template: nothing
is hand-edited. Usage (stdlib only; any python3):

  forge.py SPEC_JSON        prints the base64 SAMLResponse on stdout

SPEC (every key optional except keys/acs/sp/idp):
  keys        dir with idp.key + idp.crt (made by `idp.py keys --out DIR`): the signing key
  acs, sp, idp                 ACS URL, SP entity id, IdP entity id
  in_response_to               AuthnRequest id (omitted when null)
  now                          epoch seconds the response is made at (default: now)
  name_id, attributes          NameID text; {"name": ["v", ...]} (Name = key)
  name_id_format               the NameID's Format (default persistent; null = no Format)
  friendly                     {"name": "FriendlyName"} for some attributes
  sign                         "assertion" | "response" | "both" | "none" (default assertion)
  sig_alg, digest_alg          algorithm URIs (default RSA-SHA256, SHA-256)
  prefix_list                  InclusiveNamespaces PrefixList on the c14n transform ("" = none)
  Overrides of what goes in:   destination, recipient, audience, issuer, response_issuer,
                               status, not_before, not_on_or_after, scd_not_on_or_after
                               (times as seconds relative to `now`), no_audience (bool),
                               scd_in_response_to (default = in_response_to),
                               condition (raw XML appended inside Conditions),
                               session_not_on_or_after (AuthnStatement's, relative seconds),
                               authn_instant (AuthnStatement's AuthnInstant, relative seconds)
  attack      applied to the signed XML, by exact text operations:
    tamper            change the NameID after signing
    comment_nameid    put <!----> inside the NameID (the signature still verifies)
    moved             signed assertion moved into Extensions; an evil unsigned one in its place
    evil_before / evil_after   an unsigned evil copy (other ID) before / after the signed one
    evil_around       an evil assertion with the signed one nested inside it
    duplicate_id      an evil copy with the same ID before the signed one
    nested_id         an evil assertion carrying the original signature, the signed
                      assertion nested in that signature's ds:Object
    remote_reference  the assertion's Reference URI pointed at `remote`
    xslt              an XSLT transform added to the assertion's Reference
    ogham_name        the element holding the first value of the "groups" attribute
                      renamed to saml:AttributeValue + U+1680 + "X" (U+1680 is Unicode
                      whitespace and an XML name character): a canonicalizer that ends
                      names at Unicode whitespace still sees the signed name
"""
import base64
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from html import escape

XMLSEC = "/usr/bin/xmlsec1"
PROTOCOL = "urn:oasis:names:tc:SAML:2.0:protocol"
ASSERTION = "urn:oasis:names:tc:SAML:2.0:assertion"
SUCCESS = "urn:oasis:names:tc:SAML:2.0:status:Success"
RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
EVIL = "evil@attacker.example"


def iso(t):
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def signature_template(ref_id, spec):
    prefix_list = spec.get("prefix_list", "xs")
    inclusive = (f'<ec:InclusiveNamespaces xmlns:ec="http://www.w3.org/2001/10/xml-exc-c14n#" '
                 f'PrefixList="{prefix_list}"/>') if prefix_list else ""
    return (
        '<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:SignedInfo>'
        '<ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>'
        f'<ds:SignatureMethod Algorithm="{spec.get("sig_alg", RSA_SHA256)}"/>'
        f'<ds:Reference URI="#{ref_id}"><ds:Transforms>'
        '<ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/>'
        f'<ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#">{inclusive}</ds:Transform>'
        f'</ds:Transforms><ds:DigestMethod Algorithm="{spec.get("digest_alg", SHA256)}"/>'
        '<ds:DigestValue></ds:DigestValue></ds:Reference></ds:SignedInfo>'
        '<ds:SignatureValue></ds:SignatureValue>'
        '<ds:KeyInfo><ds:X509Data></ds:X509Data></ds:KeyInfo></ds:Signature>'
    )


def assertion_xml(spec, aid, sig):
    now = spec["now"]
    rel = lambda k, d: iso(now + spec.get(k, d))
    irt = spec.get("in_response_to")
    scd_irt = spec.get("scd_in_response_to", irt)
    scd_irt_attr = f' InResponseTo="{escape(scd_irt)}"' if scd_irt else ""
    friendly = spec.get("friendly", {})
    fmt = spec.get("name_id_format", "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent")
    fmt_attr = f' Format="{escape(fmt)}"' if fmt else ""
    attrs = ""
    for name, values in spec.get("attributes", {}).items():
        fn = f' FriendlyName="{escape(friendly[name])}"' if name in friendly else ""
        vals = "".join(f'<saml:AttributeValue xsi:type="xs:string">{escape(v)}</saml:AttributeValue>' for v in values)
        attrs += (f'\n      <saml:Attribute Name="{escape(name)}"{fn} '
                  f'NameFormat="urn:oasis:names:tc:SAML:2.0:attrname-format:basic">{vals}</saml:Attribute>')
    session_end = (f' SessionNotOnOrAfter="{rel("session_not_on_or_after", 0)}"'
                   if "session_not_on_or_after" in spec else "")
    audience = "" if spec.get("no_audience") else (
        f'<saml:AudienceRestriction><saml:Audience>{escape(spec.get("audience", spec["sp"]))}'
        '</saml:Audience></saml:AudienceRestriction>')
    return f'''<saml:Assertion xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" ID="{aid}" Version="2.0" IssueInstant="{iso(now)}">
    <saml:Issuer>{escape(spec.get("issuer", spec["idp"]))}</saml:Issuer>{sig}
    <saml:Subject>
      <saml:NameID{fmt_attr}>{escape(spec.get("name_id", "alice"))}</saml:NameID>
      <saml:SubjectConfirmation Method="urn:oasis:names:tc:SAML:2.0:cm:bearer">
        <saml:SubjectConfirmationData NotOnOrAfter="{rel("scd_not_on_or_after", 300)}" Recipient="{escape(spec.get("recipient", spec["acs"]))}"{scd_irt_attr}/>
      </saml:SubjectConfirmation>
    </saml:Subject>
    <saml:Conditions NotBefore="{rel("not_before", -60)}" NotOnOrAfter="{rel("not_on_or_after", 300)}">{audience}{spec.get("condition", "")}</saml:Conditions>
    <saml:AuthnStatement AuthnInstant="{rel("authn_instant", 0)}" SessionIndex="{aid}"{session_end}>
      <saml:AuthnContext><saml:AuthnContextClassRef>urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport</saml:AuthnContextClassRef></saml:AuthnContext>
    </saml:AuthnStatement>
    <saml:AttributeStatement>{attrs}
    </saml:AttributeStatement>
  </saml:Assertion>'''


def response_xml(spec, rid, assertion, sig):
    irt = spec.get("in_response_to")
    irt_attr = f' InResponseTo="{escape(irt)}"' if irt else ""
    dest = spec.get("destination", spec["acs"])
    dest_attr = f' Destination="{escape(dest)}"' if dest else ""
    return f'''<?xml version="1.0" encoding="UTF-8"?>
<samlp:Response xmlns:samlp="{PROTOCOL}" xmlns:saml="{ASSERTION}" ID="{rid}" Version="2.0" IssueInstant="{iso(spec["now"])}"{dest_attr}{irt_attr}>
  <saml:Issuer>{escape(spec.get("response_issuer", spec.get("issuer", spec["idp"])))}</saml:Issuer>{sig}
  <samlp:Status><samlp:StatusCode Value="{escape(spec.get("status", SUCCESS))}"/></samlp:Status>
  {assertion}
</samlp:Response>
'''


def xmlsec_sign(xml, keys, node):
    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, "in.xml")
        with open(src, "w") as f:
            f.write(xml)
        key = os.path.join(keys, "idp.key") + "," + os.path.join(keys, "idp.crt")
        out = subprocess.run(
            [XMLSEC, "--sign", "--privkey-pem", key, "--id-attr:ID", f"{PROTOCOL}:Response",
             "--id-attr:ID", f"{ASSERTION}:Assertion", "--node-xpath", node, src],
            check=True, capture_output=True, text=True)
        return out.stdout


def sign_path(which):
    owner = "samlp:Response" if which == "response" else "saml:Assertion"
    return (f"/*[local-name()='Response']" + ("" if which == "response" else "/*[local-name()='Assertion']")
            + "/*[local-name()='Signature']"), owner


def forge(spec):
    spec.setdefault("now", int(time.time()))
    mode = spec.get("sign", "assertion")
    rid, aid = "_r" + os.urandom(16).hex(), "_a" + os.urandom(16).hex()
    a_sig = signature_template(aid, spec) if mode in ("assertion", "both") else ""
    xml = response_xml(spec, rid, assertion_xml(spec, aid, a_sig), "")
    if a_sig:
        xml = xmlsec_sign(xml, spec["keys"], sign_path("assertion")[0])
    if mode in ("response", "both"):
        marker = f'{escape(spec.get("response_issuer", spec.get("issuer", spec["idp"])))}</saml:Issuer>'
        xml = xml.replace(marker, marker + signature_template(rid, spec), 1)
        xml = xmlsec_sign(xml, spec["keys"], sign_path("response")[0])
    return attack(xml, spec, aid)


def assertion_span(xml):
    start = xml.index("<saml:Assertion ")
    end = xml.index("</saml:Assertion>", start) + len("</saml:Assertion>")
    return start, end


def attack(xml, spec, aid):
    kind = spec.get("attack")
    name_id = escape(spec.get("name_id", "alice"))
    if not kind:
        return xml
    start, end = assertion_span(xml)
    signed = xml[start:end]
    # An evil copy: other ID, other NameID, signature dropped (it could not be re-made).
    sig_start = signed.find("<ds:Signature")
    unsigned = signed if sig_start < 0 else signed[:sig_start] + signed[signed.index("</ds:Signature>") + 15:]
    evil = unsigned.replace(f'ID="{aid}"', 'ID="_evil"', 1).replace(f">{name_id}</saml:NameID>", f">{EVIL}</saml:NameID>")
    # Namespaces the moved assertion relies on, declared on the evil wrapper too.
    if kind == "tamper":
        return xml.replace(f">{name_id}</saml:NameID>", f">{EVIL}</saml:NameID>")
    if kind == "comment_nameid":
        half = len(name_id) // 2
        return xml.replace(f">{name_id}</saml:NameID>", f">{name_id[:half]}<!---->{name_id[half:]}</saml:NameID>")
    if kind == "moved":
        ext = f"<samlp:Extensions>{signed}</samlp:Extensions>"
        xml = xml[:start] + evil + xml[end:]
        return xml.replace("<samlp:Status>", ext + "<samlp:Status>", 1)
    if kind == "evil_before":
        return xml[:start] + evil + signed + xml[end:]
    if kind == "evil_after":
        return xml[:start] + signed + evil + xml[end:]
    if kind == "evil_around":
        inner = evil.replace("<saml:Subject>", f"<saml:Advice>{signed}</saml:Advice><saml:Subject>", 1)
        return xml[:start] + inner + xml[end:]
    if kind == "duplicate_id":
        return xml[:start] + evil.replace('ID="_evil"', f'ID="{aid}"', 1) + signed + xml[end:]
    if kind == "nested_id":
        sig = signed[sig_start:signed.index("</ds:Signature>") + 15]
        carried = sig.replace("</ds:Signature>", f"<ds:Object>{unsigned}</ds:Object></ds:Signature>")
        wrapper = evil.replace("</saml:Issuer>", "</saml:Issuer>" + carried, 1)
        return xml[:start] + wrapper + xml[end:]
    if kind == "remote_reference":
        return xml.replace(f'URI="#{aid}"', f'URI="{escape(spec["remote"])}"', 1)
    if kind == "ogham_name":
        groups = xml.index('Name="groups"')
        open_at = xml.index("<saml:AttributeValue", groups)
        close_at = xml.index("</saml:AttributeValue>", open_at)
        renamed = "saml:AttributeValue\u1680X"
        return (xml[:open_at] + "<" + renamed + xml[open_at + len("<saml:AttributeValue"):close_at]
                + "</" + renamed + ">" + xml[close_at + len("</saml:AttributeValue>"):])
    if kind == "xslt":
        xslt = ('<ds:Transform Algorithm="http://www.w3.org/TR/1999/REC-xslt-19991116">'
                '<xsl:stylesheet xmlns:xsl="http://www.w3.org/1999/XSL/Transform" version="1.0"/></ds:Transform>')
        return xml.replace("<ds:Transforms>", "<ds:Transforms>" + xslt, 1)
    raise SystemExit(f"forge.py: unknown attack {kind!r}")


def main():
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    spec = json.loads(sys.argv[1])
    xml = forge(spec)
    if spec.get("print_xml"):
        sys.stderr.write(xml)
    sys.stdout.write(base64.b64encode(xml.encode()).decode())


if __name__ == "__main__":
    main()
