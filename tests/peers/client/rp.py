"""A main server's use of ssogate, driven with Authlib (PyPI): code flow with PKCE,
ID token validation against the gateway's JWKS, refresh (rotation), introspection,
revocation and RP-initiated logout.

Run: .client-venv/bin/python client/rp.py CONFIG_JSON
CONFIG_JSON: {"issuer", "client_id", "client_secret", "redirect_uri",
              "post_logout_redirect_uri", "extra": {authorization request extras}}
The "browser" is a requests.Session following redirects by hand (no JavaScript is
needed: the test IdP signs in by login_hint) until the redirect_uri, which is not served.
Prints ONE JSON object: each named check with true/false, and "detail" on failure.
Exits 0 when every check passed.
"""

import json
import os
import sys
import warnings
from urllib.parse import parse_qs, urljoin, urlencode, urlparse

# Loopback test peers speak plain HTTP; Authlib refuses that unless told.
os.environ["AUTHLIB_INSECURE_TRANSPORT"] = "1"
warnings.simplefilter("ignore")

import requests  # noqa: E402
from authlib.common.security import generate_token  # noqa: E402
from authlib.integrations.requests_client import OAuth2Session  # noqa: E402
from authlib.jose import JsonWebKey, jwt  # noqa: E402
from authlib.oidc.core import CodeIDToken  # noqa: E402

cfg = json.loads(open(sys.argv[1]).read()) if len(sys.argv) > 1 else json.loads(sys.stdin.read())
checks = {}
detail = {}


def check(name, ok, info=None):
    checks[name] = bool(ok)
    if not ok and info is not None:
        detail[name] = str(info)[:2000]


def browse(browser, url, stop):
    """Follows redirects from url until one to `stop`; returns that URL (or None)."""
    for _ in range(20):
        r = browser.get(url, allow_redirects=False)
        if r.status_code not in (301, 302, 303, 307, 308):
            return None, r
        url = urljoin(url, r.headers["location"])
        if url.startswith(stop):
            return url, r
    return None, None


meta = requests.get(cfg["issuer"] + "/.well-known/openid-configuration", timeout=10).json()
jwks = JsonWebKey.import_key_set(requests.get(meta["jwks_uri"], timeout=10).json())
client = OAuth2Session(
    cfg["client_id"],
    cfg["client_secret"],
    scope="openid email profile groups offline_access",
    redirect_uri=cfg["redirect_uri"],
    code_challenge_method="S256",
    revocation_endpoint_auth_method="client_secret_basic",
)
browser = requests.Session()

# 1. Code flow with PKCE.
verifier = generate_token(48)
nonce = generate_token(20)
url, state = client.create_authorization_url(meta["authorization_endpoint"], code_verifier=verifier, nonce=nonce, **cfg.get("extra", {}))
back, last = browse(browser, url, cfg["redirect_uri"])
check("authorization_code_returned", back and "code=" in back, back or (last.status_code, last.text[:300]) if last is not None else "no answer")
check("iss_in_authorization_response", back and parse_qs(urlparse(back).query).get("iss") == [cfg["issuer"]], back)
token = client.fetch_token(meta["token_endpoint"], authorization_response=back, code_verifier=verifier)
check("refresh_token_issued", "refresh_token" in token, token)

# 2. The ID token, validated as Authlib's OpenID Connect client does it.
claims = jwt.decode(
    token["id_token"],
    jwks,
    claims_cls=CodeIDToken,
    claims_options={"iss": {"values": [cfg["issuer"]]}},
    claims_params={"nonce": nonce, "client_id": cfg["client_id"]},
)
try:
    claims.validate()
    check("id_token_valid", True)
except Exception as e:  # noqa: BLE001
    check("id_token_valid", False, e)
check("id_token_claims", claims.get("email") and claims.get("sid") and claims.get("groups") is not None, dict(claims))

# 3. Refresh: a new access token and a rotated refresh token.
first = dict(token)
refreshed = client.refresh_token(meta["token_endpoint"], refresh_token=first["refresh_token"])
check("refresh_new_access_token", refreshed["access_token"] != first["access_token"], refreshed)
check("refresh_rotated", refreshed.get("refresh_token") and refreshed["refresh_token"] != first["refresh_token"], refreshed)
try:
    client.refresh_token(meta["token_endpoint"], refresh_token=first["refresh_token"])
    check("refresh_reuse_refused", False, "the spent refresh token was accepted")
except Exception as e:  # noqa: BLE001 (Authlib's requests client raises its own OAuthError)
    check("refresh_reuse_refused", getattr(e, "error", None) == "invalid_grant", repr(e))

# The reuse revoked the family: sign in again for the rest.
url, state = client.create_authorization_url(meta["authorization_endpoint"], code_verifier=verifier, nonce=nonce, **cfg.get("extra", {}))
back, _ = browse(browser, url, cfg["redirect_uri"])
token = client.fetch_token(meta["token_endpoint"], authorization_response=back, code_verifier=verifier)

# 4. Introspection (RFC 7662) of both tokens.
info = client.introspect_token(meta["introspection_endpoint"], token=token["access_token"], token_type_hint="access_token").json()
check("introspect_access_active", info.get("active") is True and info.get("sub") == claims["sub"] and info.get("client_id") == cfg["client_id"], info)
info = client.introspect_token(meta["introspection_endpoint"], token=token["refresh_token"], token_type_hint="refresh_token").json()
check("introspect_refresh_active", info.get("active") is True and info.get("token_type") == "refresh_token", info)

# 5. Revocation (RFC 7009) of the refresh token: it and its access token die.
r = client.revoke_token(meta["revocation_endpoint"], token=token["refresh_token"], token_type_hint="refresh_token")
check("revoke_ok", r.status_code == 200, (r.status_code, r.text))
info = client.introspect_token(meta["introspection_endpoint"], token=token["access_token"]).json()
check("revoked_family_access_inactive", info == {"active": False}, info)
try:
    client.refresh_token(meta["token_endpoint"], refresh_token=token["refresh_token"])
    check("revoked_refresh_refused", False, "a revoked refresh token was accepted")
except Exception as e:  # noqa: BLE001 (Authlib's requests client raises its own OAuthError)
    check("revoked_refresh_refused", getattr(e, "error", None) == "invalid_grant", repr(e))

# 6. RP-initiated logout with the ID token as hint, back to the registered URI with state.
logout_state = generate_token(12)
end = meta["end_session_endpoint"] + "?" + urlencode(
    {"id_token_hint": token["id_token"], "post_logout_redirect_uri": cfg["post_logout_redirect_uri"], "state": logout_state}
)
back, last = browse(browser, end, cfg["post_logout_redirect_uri"])
check("logout_returns_with_state", back and parse_qs(urlparse(back).query).get("state") == [logout_state], back or (last.status_code if last is not None else None))
url, _ = client.create_authorization_url(meta["authorization_endpoint"], code_verifier=verifier, nonce=nonce, prompt="none", **cfg.get("extra", {}))
back, _ = browse(browser, url, cfg["redirect_uri"])
check("logged_out_prompt_none_login_required", back and parse_qs(urlparse(back).query).get("error") == ["login_required"], back)

print(json.dumps({"checks": checks, "detail": detail}))
sys.exit(0 if all(checks.values()) else 1)
