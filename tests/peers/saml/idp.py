#!/usr/bin/env python3
"""SAML 2.0 test IdP for ssogate tests: pysaml2 + xmlsec1, loopback only.

Run with tests/peers/.venv/bin/python (made by tests/peers/setup.sh).
  keys --out DIR                        RSA-2048 key + self-signed cert: DIR/idp.key, DIR/idp.crt
  metadata --base-url URL --keys DIR [--entity-id ID] [--no-signing-cert]
                                        prints the IdP metadata XML
  serve --keys DIR (--sp-metadata FILE | --sp-metadata-url URL) [--users USERS.json]
        [--entity-id ID] [--sign assertion|response|both|none] [--attr-names plain|oid]
      binds 127.0.0.1:0, prints ONE line:
      {"base_url": "http://127.0.0.1:PORT", "port": PORT, "entity_id": ..., "metadata_url": BASE/metadata}
      and exits when stdin closes (unless PEER_IGNORE_STDIN is set) or on SIGTERM.
Routes (serve):
  GET  /metadata           this IdP's metadata
  GET  /sso/redirect       HTTP-Redirect AuthnRequest (SAMLRequest, RelayState, SigAlg, Signature)
  POST /sso/post           HTTP-POST AuthnRequest (form SAMLRequest, RelayState)
  GET  /sso/idp-initiated?sp=ENTITY_ID   unsolicited response (no InResponseTo)
  Query params on the three /sso routes: user=NAME (default: first user), sign=MODE
  (default --sign, or env SAML_IDP_SIGN, else "assertion"), attr_names=plain|oid (default
  --attr-names, else plain), alg=sha256|sha1 (default env SAML_IDP_ALG, else sha256: RSA-SHA256
  with SHA-256 digests; sha1 signs with RSA-SHA1 and SHA-1 digests), and relay_state= on
  idp-initiated.
  Every answer is 200 HTML with a form POSTing SAMLResponse (+ RelayState) to the SP's ACS,
  auto-submitted by JavaScript; a client without JavaScript posts the hidden fields itself.
The SP metadata (file or URL) and USERS.json are read again on every request: the SP may
start later, and a test may edit a user's attributes (drop a group) and log in again.
A request's signature is checked when the SP metadata says AuthnRequestsSigned="true", or
when one is present: for HTTP-Redirect over the raw query string bytes (SAML bindings 3.4.4.1).
USERS.json: {"alice": {"email": ["a@x"], "givenName": ["A"], "sn": ["X"], "groups": ["a", "b"]}}
Attribute names: "plain" emits them as given (NameFormat basic); "oid" uses pysaml2's
saml_uri map (e.g. givenName -> urn:oid:2.5.4.42 with FriendlyName, NameFormat uri; unknown
names such as groups stay as given). The NameID is the user name (persistent), or the
first email when the request asks for emailAddress.
"""
import argparse
import base64
import html
import json
import os
import subprocess
import sys
import tempfile
import threading
import urllib.request
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote_plus, urlsplit

from cryptography.utils import CryptographyDeprecationWarning

warnings.filterwarnings("ignore", category=CryptographyDeprecationWarning)  # pysaml2 imports CFB
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT, saml
from saml2.attribute_converter import AttributeConverter
from saml2.config import IdPConfig
from saml2.metadata import entity_descriptor, metadata_tostring_fix
from saml2.s_utils import do_ava
from saml2.server import Server
from saml2.xmldsig import DIGEST_SHA1, DIGEST_SHA256, SIG_RSA_SHA1, SIG_RSA_SHA256

XMLSEC = "/usr/bin/xmlsec1"
BASIC = "urn:oasis:names:tc:SAML:2.0:attrname-format:basic"
URI = "urn:oasis:names:tc:SAML:2.0:attrname-format:uri"
ATTR_NAMES = ("plain", "oid")
PASSWORD_PROTECTED = "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"
SIGN_MODES = ("assertion", "response", "both", "none")
DEFAULT_USERS = {
    "alice": {"email": ["alice@example.test"], "givenName": ["Alice"], "sn": ["Example"],
              "groups": ["admins", "staff"]},
}
REDIRECT_SIG_HASHES = {
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256": hashes.SHA256(),
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384": hashes.SHA384(),
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512": hashes.SHA512(),
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256": hashes.SHA256(),
}


def log(*args):
    print("saml-idp:", *args, file=sys.stderr, flush=True)


def cmd_keys(args):
    os.makedirs(args.out, exist_ok=True)
    key, crt = os.path.join(args.out, "idp.key"), os.path.join(args.out, "idp.crt")
    if os.path.exists(key) and os.path.exists(crt):
        return
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256",
                    "-days", "3650", "-subj", "/CN=ssogate test SAML IdP",
                    "-keyout", key, "-out", crt], check=True, capture_output=True)


class PlainNames(AttributeConverter):
    """Attributes named exactly as in USERS.json, NameFormat basic."""

    def __init__(self):
        super().__init__(BASIC)

    def to_(self, attrvals):
        return [saml.Attribute(name=k, name_format=BASIC, attribute_value=do_ava(v)) for k, v in attrvals.items()]


def idp_config(base_url, keys, entity_id=None, sp_metadata=None, signing_cert=True, want_signed=False,
               attr_names="plain"):
    conf = {
        "entityid": entity_id or f"{base_url}/metadata",
        "xmlsec_binary": XMLSEC,
        "service": {"idp": {
            "endpoints": {"single_sign_on_service": [
                (f"{base_url}/sso/redirect", BINDING_HTTP_REDIRECT),
                (f"{base_url}/sso/post", BINDING_HTTP_POST)]},
            "name_id_format": [saml.NAMEID_FORMAT_PERSISTENT, saml.NAMEID_FORMAT_EMAILADDRESS],
            "want_authn_requests_signed": want_signed,
            "policy": {"default": {"lifetime": {"minutes": 5}, "attribute_restrictions": None,
                                   "name_form": BASIC if attr_names == "plain" else URI}},
        }},
        "accepted_time_diff": 60,
    }
    if signing_cert:
        conf["key_file"] = os.path.join(keys, "idp.key")
        conf["cert_file"] = os.path.join(keys, "idp.crt")
    if sp_metadata:
        conf["metadata"] = {"local": [sp_metadata]}
    cfg = IdPConfig()
    cfg.load(conf)
    if attr_names == "plain":
        cfg.attribute_converters = [PlainNames()]
    return cfg


def metadata_xml(base_url, keys, entity_id=None, signing_cert=True):
    desc = entity_descriptor(idp_config(base_url, keys, entity_id, signing_cert=signing_cert))
    desc.extensions = None  # drop pysaml2's long algorithm-support list (md5, sha1, ...)
    return metadata_tostring_fix(desc, {"md": "urn:oasis:names:tc:SAML:2.0:metadata",
                                        "ds": "http://www.w3.org/2000/09/xmldsig#"}).decode()


def cmd_metadata(args):
    sys.stdout.write(metadata_xml(args.base_url.rstrip("/"), args.keys, args.entity_id,
                                  not args.no_signing_cert) + "\n")


class BadRequest(Exception):
    pass


def raw_query_param(query, name):
    """The still-encoded value of NAME in a raw query string, or None."""
    for part in query.split("&"):
        if part.split("=", 1)[0] == name:
            return part.split("=", 1)[1] if "=" in part else ""
    return None


def verify_redirect_signature(query, certs):
    """SAML bindings 3.4.4.1: signature over the raw SAMLRequest[&RelayState]&SigAlg."""
    sigalg, signature = raw_query_param(query, "SigAlg"), raw_query_param(query, "Signature")
    if sigalg is None or signature is None:
        raise BadRequest("AuthnRequest must be signed (SigAlg/Signature missing)")
    algo = REDIRECT_SIG_HASHES.get(unquote_plus(sigalg))
    if algo is None:
        raise BadRequest(f"unsupported SigAlg {unquote_plus(sigalg)}")
    signed = "&".join(f"{n}={raw_query_param(query, n)}" for n in ("SAMLRequest", "RelayState", "SigAlg")
                      if raw_query_param(query, n) is not None).encode()
    sig = base64.b64decode(unquote_plus(signature))
    for cert_b64 in certs:
        key = x509.load_der_x509_certificate(base64.b64decode("".join(cert_b64.split()))).public_key()
        try:
            if isinstance(key, rsa.RSAPublicKey):
                key.verify(sig, signed, padding.PKCS1v15(), algo)
            elif isinstance(key, ec.EllipticCurvePublicKey):
                key.verify(sig, signed, ec.ECDSA(algo))
            else:
                continue
            return
        except InvalidSignature:
            continue
    raise BadRequest("AuthnRequest signature does not verify with the SP metadata certificates")


class Idp:
    def __init__(self, args):
        self.args = args
        self.base_url = None

    @property
    def users(self):
        """USERS.json as it is now (re-read on every request), or DEFAULT_USERS."""
        if not self.args.users:
            return DEFAULT_USERS
        with open(self.args.users) as f:
            return json.load(f)

    @property
    def entity_id(self):
        return self.args.entity_id or f"{self.base_url}/metadata"

    def server(self, want_signed=False, attr_names="plain"):
        """A fresh pysaml2 Server with the SP metadata as it is now."""
        path = self.args.sp_metadata
        if self.args.sp_metadata_url:
            with urllib.request.urlopen(self.args.sp_metadata_url, timeout=10) as r:
                data = r.read()
            tmp = tempfile.NamedTemporaryFile(suffix=".xml", delete=False)
            tmp.write(data)
            tmp.close()
            path = tmp.name
        try:
            return Server(config=idp_config(self.base_url, self.args.keys, self.args.entity_id,
                                            sp_metadata=path, want_signed=want_signed,
                                            attr_names=attr_names))
        finally:
            if self.args.sp_metadata_url:
                os.unlink(path)

    @staticmethod
    def sp_wants_signed(server, sp_entity_id):
        try:
            sp = server.metadata[sp_entity_id]["spsso_descriptor"][0]
        except (KeyError, IndexError, TypeError):
            raise BadRequest(f"unknown SP {sp_entity_id!r}")
        return str(sp.get("authn_requests_signed", "false")).lower() == "true"

    def handle_authn_request(self, binding, saml_request, relay_state, raw_query, params):
        probe = self.server()
        parsed = probe.parse_authn_request(saml_request, binding)
        if parsed is None:
            raise BadRequest("AuthnRequest did not parse")
        sp = parsed.message.issuer.text.strip()
        must = self.sp_wants_signed(probe, sp)
        if binding == BINDING_HTTP_REDIRECT:
            if must or raw_query_param(raw_query, "Signature") is not None:
                verify_redirect_signature(raw_query, [c for _, c in probe.metadata.certs(sp, "any", "signing")])
        elif must or parsed.message.signature is not None:
            # HTTP-POST: enveloped XML signature, checked by pysaml2/xmlsec1 against SP metadata.
            try:
                parsed = self.server(want_signed=True).parse_authn_request(saml_request, binding)
            except Exception as e:  # noqa: BLE001 - any failure is a refusal
                raise BadRequest(f"AuthnRequest signature: {e}") from e
        resp_args = probe.response_args(parsed.message, [BINDING_HTTP_POST])
        return self.respond(resp_args, sp, relay_state, params, parsed.message.id)

    def respond(self, resp_args, sp, relay_state, params, in_response_to):
        users = self.users
        name = params.get("user") or next(iter(users))
        if name not in users:
            raise BadRequest(f"unknown user {name!r}")
        sign = params.get("sign") or self.args.sign
        if sign not in SIGN_MODES:
            raise BadRequest(f"sign must be one of {', '.join(SIGN_MODES)}")
        # alg=sha1: RSA-SHA1 and SHA-1 digests (a legacy AD FS or JumpCloud set-up).
        alg = params.get("alg") or os.environ.get("SAML_IDP_ALG") or "sha256"
        if alg not in ("sha256", "sha1"):
            raise BadRequest("alg must be sha256 or sha1")
        attr_names = params.get("attr_names") or self.args.attr_names
        if attr_names not in ATTR_NAMES:
            raise BadRequest(f"attr_names must be one of {', '.join(ATTR_NAMES)}")
        server = self.server(attr_names=attr_names)
        attrs = users[name]
        fmt = (resp_args.get("name_id_policy") and resp_args["name_id_policy"].format) or ""
        if fmt == saml.NAMEID_FORMAT_EMAILADDRESS and attrs.get("email"):
            name_id = saml.NameID(format=fmt, text=attrs["email"][0])
        else:
            name_id = saml.NameID(format=saml.NAMEID_FORMAT_PERSISTENT, text=name)
        response = server.create_authn_response(
            identity={k: list(v) if isinstance(v, (list, tuple)) else [v] for k, v in attrs.items()},
            in_response_to=in_response_to,
            destination=resp_args["destination"],
            sp_entity_id=sp,
            name_id=name_id,
            authn={"class_ref": PASSWORD_PROTECTED, "authn_auth": self.entity_id},
            sign_assertion=sign in ("assertion", "both"),
            sign_response=sign in ("response", "both"),
            sign_alg=SIG_RSA_SHA1 if alg == "sha1" else SIG_RSA_SHA256,
            digest_alg=DIGEST_SHA1 if alg == "sha1" else DIGEST_SHA256,
        )
        return post_form(resp_args["destination"], str(response), relay_state)

    def idp_initiated(self, params):
        server = self.server()
        sp = params.get("sp")
        if not sp:
            raise BadRequest("sp (entity id) is required")
        self.sp_wants_signed(server, sp)  # raises for an unknown SP
        acs = server.metadata.assertion_consumer_service(sp, BINDING_HTTP_POST)
        if not acs:
            raise BadRequest(f"SP {sp!r} has no HTTP-POST AssertionConsumerService")
        resp_args = {"destination": acs[0]["location"], "name_id_policy": None}
        return self.respond(resp_args, sp, params.get("relay_state"), params, None)


def post_form(action, response_xml, relay_state):
    value = base64.b64encode(response_xml.encode()).decode()
    fields = f'<input type="hidden" name="SAMLResponse" value="{value}"/>'
    if relay_state is not None:
        fields += f'<input type="hidden" name="RelayState" value="{html.escape(relay_state)}"/>'
    return ("<!doctype html><html><head><title>SAML POST</title></head>"
            '<body onload="document.forms[0].submit()">'
            f'<form method="post" action="{html.escape(action)}">{fields}'
            '<noscript><button type="submit">Continue</button></noscript></form></body></html>\n')


def make_handler(idp):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, fmt, *a):
            log(fmt % a)

        def send(self, status, body, ctype="text/html; charset=utf-8"):
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(data)

        def dispatch(self, form):
            url = urlsplit(self.path)
            params = {k: v[0] for k, v in parse_qs(url.query).items()}
            try:
                if url.path == "/metadata" and self.command == "GET":
                    return self.send(200, metadata_xml(idp.base_url, idp.args.keys, idp.args.entity_id),
                                     "application/samlmetadata+xml")
                if url.path == "/sso/redirect" and self.command == "GET" and "SAMLRequest" in params:
                    return self.send(200, idp.handle_authn_request(
                        BINDING_HTTP_REDIRECT, params["SAMLRequest"], params.get("RelayState"),
                        url.query, params))
                if url.path == "/sso/post" and self.command == "POST" and "SAMLRequest" in form:
                    return self.send(200, idp.handle_authn_request(
                        BINDING_HTTP_POST, form["SAMLRequest"], form.get("RelayState"), "", params))
                if url.path == "/sso/idp-initiated" and self.command == "GET":
                    return self.send(200, idp.idp_initiated(params))
                return self.send(404, "not found\n", "text/plain")
            except BadRequest as e:
                log("refused:", e)
                return self.send(400, f"{e}\n", "text/plain")
            except Exception as e:  # noqa: BLE001 - a test peer answers, never dies
                log("error:", repr(e))
                return self.send(400, f"bad request: {e!r}\n", "text/plain")

        def do_GET(self):
            self.dispatch({})

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(min(length, 1 << 20)).decode("utf-8", "replace")
            self.dispatch({k: v[0] for k, v in parse_qs(body).items()})

    return Handler


def cmd_serve(args):
    if not (args.sp_metadata or args.sp_metadata_url):
        sys.exit("serve: --sp-metadata FILE or --sp-metadata-url URL is required")
    idp = Idp(args)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(idp))
    port = httpd.server_address[1]
    idp.base_url = f"http://127.0.0.1:{port}"
    print(json.dumps({"base_url": idp.base_url, "port": port, "entity_id": idp.entity_id,
                      "metadata_url": f"{idp.base_url}/metadata"}), flush=True)
    if not os.environ.get("PEER_IGNORE_STDIN"):
        def watch_stdin():
            while sys.stdin.buffer.read(65536):
                pass
            os._exit(0)
        threading.Thread(target=watch_stdin, daemon=True).start()
    import signal
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    httpd.serve_forever()


def main():
    ap = argparse.ArgumentParser(description="SAML 2.0 test IdP (pysaml2)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    k = sub.add_parser("keys")
    k.add_argument("--out", required=True)
    m = sub.add_parser("metadata")
    m.add_argument("--base-url", required=True)
    m.add_argument("--keys", required=True)
    m.add_argument("--entity-id")
    m.add_argument("--no-signing-cert", action="store_true")
    s = sub.add_parser("serve")
    s.add_argument("--keys", required=True)
    s.add_argument("--sp-metadata")
    s.add_argument("--sp-metadata-url")
    s.add_argument("--users")
    s.add_argument("--entity-id")
    s.add_argument("--sign", choices=SIGN_MODES, default=os.environ.get("SAML_IDP_SIGN", "assertion"))
    s.add_argument("--attr-names", choices=ATTR_NAMES, default="plain")
    args = ap.parse_args()
    {"keys": cmd_keys, "metadata": cmd_metadata, "serve": cmd_serve}[args.cmd](args)


if __name__ == "__main__":
    main()
