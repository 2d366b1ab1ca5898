//! Issue #14: a spec check of the OpenID Provider. Each point of OpenID Connect Core /
//! Discovery, RFC 6749, RFC 7636 and RFC 9207 that the issue names is a named assertion,
//! refusals included; every failing one is listed at the end, not only the first.

use std::collections::HashMap;

use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use base64::Engine;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::login::Browser;
use crate::op::{enc, Rp, APP_CB};

/// Named assertions, all reported at the end.
#[derive(Default)]
pub struct Spec {
    failed: Vec<String>,
    passed: Vec<&'static str>,
}

impl Spec {
    pub fn check(&mut self, name: &'static str, ok: bool, detail: impl std::fmt::Display) {
        if ok {
            self.passed.push(name);
        } else {
            self.failed.push(format!("{name}: {detail}"));
        }
    }

    pub fn done(self) {
        eprintln!("spec check: {} passed: {}", self.passed.len(), self.passed.join(", "));
        assert!(self.failed.is_empty(), "{} failed:\n  {}", self.failed.len(), self.failed.join("\n  "));
    }
}

/// Where a walk through redirects ended: back at the app (its query), or elsewhere.
pub struct Walk {
    pub hops: Vec<String>,
    pub app: Option<HashMap<String, String>>,
}

/// Follows redirects from `first` (already sent) until the app's callback or a page.
pub async fn walk(b: &Browser, mut resp: reqwest::Response, mut url: String) -> Walk {
    let mut hops = vec![url.clone()];
    for _ in 0..20 {
        if !resp.status().is_redirection() {
            return Walk { hops, app: None };
        }
        let loc = reqwest::Url::parse(&url).unwrap().join(resp.headers()["location"].to_str().unwrap()).unwrap();
        hops.push(loc.to_string());
        if loc.as_str().starts_with(APP_CB) {
            return Walk { hops, app: Some(loc.query_pairs().into_owned().collect()) };
        }
        url = loc.to_string();
        resp = b.http.get(&url).send().await.unwrap();
    }
    panic!("too many redirects: {hops:?}");
}

/// GETs `/authorize?{query}` in `b` and walks it.
pub async fn authorize(rp: &Rp, b: &Browser, query: &str) -> Walk {
    let url = format!("{}/authorize?{query}", rp.s.gw.base);
    let resp = b.http.get(&url).send().await.unwrap();
    walk(b, resp, url).await
}

pub fn claims(jwt: &str) -> Value {
    serde_json::from_slice(&B64URL.decode(jwt.split('.').nth(1).unwrap()).unwrap()).unwrap()
}

/// The base query for client `app`, asking `scope` (URL-encoded).
pub fn query(scope: &str, extra: &str) -> String {
    format!("client_id=app&response_type=code&scope={scope}&redirect_uri={}&state=st1&nonce=n1&connection=con_node&login_hint=alice{extra}", enc(APP_CB))
}

#[tokio::test]
async fn op_spec_check() {
    let rp = Rp::new().await;
    let base = rp.s.gw.base.clone();
    let mut spec = Spec::default();
    let http = reqwest::Client::new();
    let secret = rp.secret.clone();
    let auth = Some(("app", secret.as_str()));

    // --- Discovery 1.0 / RFC 9207 / RFC 8414 metadata
    let r = http.get(format!("{base}/.well-known/openid-configuration")).header("origin", "https://spa.example").send().await.unwrap();
    let cors_disc = r.headers().get("access-control-allow-origin").map(|v| v.to_str().unwrap().to_string());
    let no_creds = r.headers().get("access-control-allow-credentials").is_none();
    let disc: Value = r.json().await.unwrap();
    spec.check("rfc9207_metadata_iss_parameter_supported", disc["authorization_response_iss_parameter_supported"] == json!(true), &disc);
    spec.check("discovery_end_session_endpoint", disc["end_session_endpoint"] == json!(format!("{base}/end_session")), &disc);
    spec.check("discovery_revocation_endpoint", disc["revocation_endpoint"] == json!(format!("{base}/revoke")), &disc);
    spec.check("discovery_introspection_endpoint", disc["introspection_endpoint"] == json!(format!("{base}/introspect")), &disc);
    spec.check("discovery_refresh_token_grant", disc["grant_types_supported"].as_array().unwrap().contains(&json!("refresh_token")), &disc);
    spec.check(
        "discovery_backchannel_logout",
        disc["backchannel_logout_supported"] == json!(true) && disc["backchannel_logout_session_supported"] == json!(true),
        &disc,
    );
    spec.check("discovery_private_key_jwt", disc["token_endpoint_auth_methods_supported"].as_array().unwrap().contains(&json!("private_key_jwt")), &disc);

    // --- CORS for browser-based clients, never with credentials
    spec.check("cors_discovery", cors_disc.as_deref() == Some("*") && no_creds, format!("{cors_disc:?}"));
    let r = http.get(format!("{base}/jwks.json")).header("origin", "https://spa.example").send().await.unwrap();
    spec.check("cors_jwks", r.headers().get("access-control-allow-origin").is_some_and(|v| v == "*"), format!("{:?}", r.headers()));
    let r = http
        .request(Method::OPTIONS, format!("{base}/token"))
        .header("origin", "https://spa.example")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "authorization, content-type")
        .send()
        .await
        .unwrap();
    let h = r.headers().clone();
    spec.check(
        "cors_token_preflight",
        r.status().is_success()
            && h.get("access-control-allow-origin").is_some_and(|v| v == "*")
            && h.get("access-control-allow-headers").is_some_and(|v| v.to_str().unwrap().to_lowercase().contains("authorization"))
            && h.get("access-control-allow-credentials").is_none(),
        format!("{} {h:?}", r.status()),
    );
    let r = http.post(format!("{base}/token")).header("origin", "https://spa.example").form(&[("grant_type", "x")]).send().await.unwrap();
    spec.check("cors_token_answer", r.headers().get("access-control-allow-origin").is_some_and(|v| v == "*"), format!("{:?}", r.headers()));
    let r = http.get(format!("{base}/userinfo")).header("origin", "https://spa.example").send().await.unwrap();
    spec.check("cors_userinfo", r.headers().get("access-control-allow-origin").is_some_and(|v| v == "*"), format!("{:?}", r.headers()));

    // --- prompt=none without a session (OIDC Core 3.1.2.6)
    let fresh = Browser::new();
    let w = authorize(&rp, &fresh, &query("openid", "&prompt=none")).await;
    let q = w.app.clone().unwrap_or_default();
    spec.check("prompt_none_login_required", q.get("error").map(String::as_str) == Some("login_required"), format!("{:?}", w.hops));
    spec.check("rfc9207_iss_on_error_redirect", q.get("iss") == Some(&base) && q.get("state").map(String::as_str) == Some("st1"), format!("{q:?}"));

    // A user signs in (the IdP's own session starts now).
    let b = Browser::new();
    let first = rp.code(&b, "").await;
    let (st, t) = rp.exchange(&[("grant_type", "authorization_code"), ("code", &first), ("redirect_uri", APP_CB)], auth).await;
    assert_eq!(st, StatusCode::OK, "{t}");
    let first_claims = claims(t["id_token"].as_str().unwrap());
    let idp_auth_time = first_claims["auth_time"].as_i64().unwrap();

    // --- response_type (RFC 6749 4.1.2.1): missing is invalid_request, others unsupported
    let no_rt = format!("client_id=app&scope=openid&redirect_uri={}&state=s2", enc(APP_CB));
    let q = authorize(&rp, &b, &no_rt).await.app.unwrap_or_default();
    spec.check(
        "missing_response_type_invalid_request",
        q.get("error").map(String::as_str) == Some("invalid_request") && q.get("iss") == Some(&base),
        format!("{q:?}"),
    );
    let q = authorize(&rp, &b, &no_rt.replace("scope=openid", "scope=openid&response_type=token")).await.app.unwrap_or_default();
    spec.check(
        "other_response_type_unsupported",
        q.get("error").map(String::as_str) == Some("unsupported_response_type") && q.get("iss") == Some(&base),
        format!("{q:?}"),
    );
    let q = authorize(&rp, &b, &no_rt.replace("scope=openid", "scope=email&response_type=code")).await.app.unwrap_or_default();
    spec.check(
        "missing_openid_scope_invalid_scope",
        q.get("error").map(String::as_str) == Some("invalid_scope") && q.get("iss") == Some(&base),
        format!("{q:?}"),
    );

    for (param, error) in [("request=eyJ.e30.", "request_not_supported"), ("request_uri=https%3A%2F%2Fapp.example%2Freq", "request_uri_not_supported")] {
        let q = authorize(&rp, &b, &query("openid", &format!("&{param}"))).await.app.unwrap_or_default();
        spec.check("request_objects_refused_by_name", q.get("error").map(String::as_str) == Some(error), format!("{param}: {q:?}"));
    }

    // --- POST /authorize (OIDC Core 3.1.2.1)
    let form: Vec<(String, String)> = url::form_urlencoded::parse(query("openid", "").as_bytes()).into_owned().collect();
    let r = b.http.post(format!("{base}/authorize")).form(&form).send().await.unwrap();
    let w = walk(&b, r, format!("{base}/authorize")).await;
    let q = w.app.clone().unwrap_or_default();
    spec.check(
        "post_authorize_issues_a_code",
        q.contains_key("code") && q.get("iss") == Some(&base) && q.get("state").map(String::as_str) == Some("st1"),
        format!("{:?}", w.hops),
    );

    // --- Claims by scope (OIDC Core 5.4)
    let code = q.get("code").cloned().unwrap_or_default();
    let (_, t) = rp.exchange(&[("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", APP_CB)], auth).await;
    let c = claims(t["id_token"].as_str().unwrap_or("a.e30.b"));
    let info: Value = http.get(format!("{base}/userinfo")).bearer_auth(t["access_token"].as_str().unwrap_or("")).send().await.unwrap().json().await.unwrap();
    let bare = |v: &Value| ["email", "email_verified", "name", "preferred_username", "groups", "given_name", "connection"].iter().all(|k| v.get(*k).is_none());
    spec.check("scope_openid_id_token_sub_and_protocol_claims_only", bare(&c) && c["sub"].is_string() && c["sid"].is_string() && c["auth_time"].is_i64(), &c);
    spec.check("scope_openid_userinfo_sub_only", bare(&info) && info["sub"] == c["sub"], &info);
    let code = rp.code_scoped(&b, "openid%20email", "").await;
    let (_, t) = rp.exchange(&[("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", APP_CB)], auth).await;
    let c = claims(t["id_token"].as_str().unwrap());
    spec.check("scope_email_adds_email_only", c["email"] == json!("alice@example.test") && c.get("groups").is_none() && c.get("name").is_none(), &c);
    let code = rp.code_scoped(&b, "openid%20groups%20profile", "").await;
    let (_, t) = rp.exchange(&[("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", APP_CB)], auth).await;
    let c = claims(t["id_token"].as_str().unwrap());
    spec.check("scope_groups_and_profile_add_theirs", c["groups"].is_array() && c["name"].is_string() && c.get("email").is_none(), &c);

    // --- A second use of a code revokes what the first issued (RFC 6749 4.1.2)
    let code = rp.code(&b, "").await;
    let form = [("grant_type", "authorization_code"), ("code", code.as_str()), ("redirect_uri", APP_CB)];
    let (_, t) = rp.exchange(&form, auth).await;
    let access = t["access_token"].as_str().unwrap().to_string();
    let before = http.get(format!("{base}/userinfo")).bearer_auth(&access).send().await.unwrap().status();
    let (st2, e2) = rp.exchange(&form, auth).await;
    let after = http.get(format!("{base}/userinfo")).bearer_auth(&access).send().await.unwrap().status();
    spec.check(
        "code_reuse_refused_and_revokes_its_tokens",
        before == StatusCode::OK && st2 == StatusCode::BAD_REQUEST && e2["error"] == "invalid_grant" && after == StatusCode::UNAUTHORIZED,
        format!("before {before}, reuse {st2} {e2}, after {after}"),
    );

    // --- PKCE (RFC 7636)
    let code = rp.code(&b, "").await;
    let (st, e) =
        rp.exchange(&[("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", APP_CB), ("code_verifier", &"v".repeat(50))], auth).await;
    spec.check("pkce_verifier_without_challenge_refused", st == StatusCode::BAD_REQUEST && e["error"] == "invalid_grant", format!("{st} {e}"));
    let challenge = "c".repeat(50);
    let q = authorize(&rp, &b, &query("openid", &format!("&code_challenge={challenge}"))).await.app.unwrap_or_default();
    spec.check(
        "pkce_challenge_without_method_is_plain_refused_by_default",
        q.get("error").map(String::as_str) == Some("invalid_request") && q.get("iss") == Some(&base),
        format!("{q:?}"),
    );
    let q = authorize(&rp, &b, &query("openid", &format!("&code_challenge={challenge}&code_challenge_method=plain"))).await.app.unwrap_or_default();
    spec.check("pkce_plain_refused_by_default", q.get("error").map(String::as_str) == Some("invalid_request"), format!("{q:?}"));
    let q = authorize(&rp, &b, &query("openid", "&code_challenge_method=S256")).await.app.unwrap_or_default();
    spec.check("pkce_method_without_challenge_refused", q.get("error").map(String::as_str) == Some("invalid_request"), format!("{q:?}"));
    let q = authorize(&rp, &b, &query("openid", "&code_challenge=short&code_challenge_method=S256")).await.app.unwrap_or_default();
    spec.check("pkce_malformed_challenge_refused", q.get("error").map(String::as_str) == Some("invalid_request"), format!("{q:?}"));
    // A client allowed plain: no method means plain, and the verifier is the challenge.
    let (st, _) = rp.s.gw.admin(Method::PATCH, "/clients/app", Some(json!({"allow_plain_pkce": true}))).await;
    assert_eq!(st, StatusCode::OK);
    let q = authorize(&rp, &b, &query("openid", &format!("&code_challenge={challenge}"))).await.app.unwrap_or_default();
    let code = q.get("code").cloned().unwrap_or_default();
    let (st, e) = rp.exchange(&[("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", APP_CB), ("code_verifier", &challenge)], auth).await;
    spec.check("pkce_no_method_means_plain_where_allowed", st == StatusCode::OK, format!("{st} {e} {q:?}"));
    rp.s.gw.admin(Method::PATCH, "/clients/app", Some(json!({"allow_plain_pkce": false}))).await;
    // A public client must use PKCE, and authenticates with its client_id alone.
    let (st, c) =
        rp.s.gw.admin(Method::POST, "/clients", Some(json!({"client_id": "spa", "redirect_uris": [APP_CB], "token_endpoint_auth_method": "none"}))).await;
    assert_eq!(st, StatusCode::CREATED, "{c}");
    let spa = |extra: &str| format!("client_id=spa&response_type=code&scope=openid&redirect_uri={}&state=s{extra}", enc(APP_CB));
    let q = authorize(&rp, &b, &spa("")).await.app.unwrap_or_default();
    spec.check("pkce_required_for_public_clients", q.get("error").map(String::as_str) == Some("invalid_request"), format!("{q:?}"));
    let verifier = "p".repeat(43);
    let s256 = B64URL.encode(Sha256::digest(verifier.as_bytes()));
    let q = authorize(&rp, &b, &spa(&format!("&code_challenge={s256}&code_challenge_method=S256"))).await.app.unwrap_or_default();
    let code = q.get("code").cloned().unwrap_or_default();
    let (st, e) = rp
        .exchange(&[("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", APP_CB), ("client_id", "spa"), ("code_verifier", &verifier)], None)
        .await;
    spec.check("public_client_exchanges_with_pkce", st == StatusCode::OK, format!("{st} {e}"));

    // --- Client authentication (RFC 6749 2.3): one client per request
    let code = rp.code(&b, "").await;
    let (st, e) = rp.exchange(&[("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", APP_CB), ("client_id", "spa")], auth).await;
    spec.check("basic_and_differing_form_client_id_refused", st == StatusCode::UNAUTHORIZED && e["error"] == "invalid_client", format!("{st} {e}"));
    let (st, e) = rp.exchange(&[("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", APP_CB), ("client_id", "app")], auth).await;
    spec.check("basic_and_same_form_client_id_accepted", st == StatusCode::OK, format!("{st} {e}"));
    let (st, e) = rp.exchange(&[("grant_type", "refresh_token"), ("refresh_token", "x")], auth).await;
    spec.check("refresh_grant_refused_to_clients_without_it", st == StatusCode::BAD_REQUEST && e["error"] == "unauthorized_client", format!("{st} {e}"));

    // --- auth_time is the real authentication time; max_age and prompt=login (OIDC Core 3.1.2.1)
    // The gateway session ends, the IdP's lives on: a new sign-in reuses the IdP's session,
    // and auth_time stays the IdP's original time, not the new gateway session's.
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let user = first_claims["sub"].as_str().unwrap().to_string();
    let (st, _) = rp.s.gw.admin(Method::DELETE, &format!("/users/{user}/sessions"), None).await;
    assert_eq!(st, StatusCode::OK);
    let w = authorize(&rp, &b, &query("openid", "")).await;
    let code = w.app.as_ref().and_then(|q| q.get("code").cloned()).unwrap_or_default();
    let (_, t) = rp.exchange(&[("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", APP_CB)], auth).await;
    let c = claims(t["id_token"].as_str().unwrap_or("a.e30.b"));
    let reused_idp = !w.hops.iter().any(|h| h.contains("/interaction/"));
    spec.check("auth_time_is_the_upstream_authentication_time", reused_idp && c["auth_time"] == json!(idp_auth_time), format!("{c} {:?}", w.hops));
    // max_age larger than the session's age: no new sign-in.
    let w = authorize(&rp, &b, &query("openid", "&max_age=3600")).await;
    spec.check("max_age_satisfied_issues_a_code", w.app.as_ref().is_some_and(|q| q.contains_key("code")) && w.hops.len() == 2, format!("{:?}", w.hops));
    // max_age smaller: the user signs in again, and the upstream is asked to re-authenticate.
    let w = authorize(&rp, &b, &query("openid", "&max_age=1")).await;
    let upstream = w.hops.iter().find(|h| h.contains("/auth?")).cloned().unwrap_or_default();
    let code = w.app.as_ref().and_then(|q| q.get("code").cloned()).unwrap_or_default();
    let (_, t) = rp.exchange(&[("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", APP_CB)], auth).await;
    let c = claims(t["id_token"].as_str().unwrap_or("a.e30.b"));
    spec.check(
        "max_age_exceeded_reauthenticates_upstream",
        upstream.contains("prompt=login") && w.hops.iter().any(|h| h.contains("/interaction/")) && c["auth_time"].as_i64().unwrap_or(0) >= idp_auth_time + 2,
        format!("{c} {:?}", w.hops),
    );
    let w = authorize(&rp, &b, &query("openid", "&prompt=login")).await;
    let upstream = w.hops.iter().find(|h| h.contains("/auth?")).cloned().unwrap_or_default();
    spec.check(
        "prompt_login_passed_upstream",
        upstream.contains("prompt=login") && w.hops.iter().any(|h| h.contains("/interaction/")) && w.app.as_ref().is_some_and(|q| q.contains_key("code")),
        format!("{:?}", w.hops),
    );
    let q = authorize(&rp, &b, &query("openid", "&prompt=none%20login")).await.app.unwrap_or_default();
    spec.check("prompt_none_with_others_refused", q.get("error").map(String::as_str) == Some("invalid_request"), format!("{q:?}"));
    let q = authorize(&rp, &b, &query("openid", "&max_age=soon")).await.app.unwrap_or_default();
    spec.check("max_age_not_a_number_refused", q.get("error").map(String::as_str) == Some("invalid_request"), format!("{q:?}"));

    spec.done();
}

/// Per-client settings: allowed scopes, token lifetimes, and the rules they are held to.
#[tokio::test]
async fn per_client_settings_bound_scopes_and_lifetimes() {
    let rp = Rp::with_client(json!({"allowed_scopes": ["openid", "email"], "id_token_lifetime_seconds": 120, "access_token_lifetime_seconds": 90})).await;
    let b = Browser::new();
    let code = rp.code(&b, "").await;
    let (st, t) = rp.exchange(&[("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", APP_CB)], Some(("app", &rp.secret))).await;
    assert_eq!(st, StatusCode::OK, "{t}");
    assert_eq!(t["scope"], "openid email", "scopes the client may not have are left out");
    let c = claims(t["id_token"].as_str().unwrap());
    assert!(c["email"].is_string() && c.get("groups").is_none() && c.get("name").is_none(), "{c}");
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 120);
    assert!((89..=90).contains(&t["expires_in"].as_i64().unwrap()), "{t}");
    // offline_access is dropped for a client without the refresh_token grant.
    let code = rp.code_scoped(&b, "openid%20offline_access", "").await;
    let (_, t) = rp.exchange(&[("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", APP_CB)], Some(("app", &rp.secret))).await;
    assert!(t.get("refresh_token").is_none() && t["scope"] == "openid", "{t}");
    // The admin API shows the settings and refuses bad ones, naming the field.
    let (_, view) = rp.s.gw.admin(Method::GET, "/clients/app", None).await;
    assert_eq!(view["allowed_scopes"], json!(["openid", "email"]));
    assert_eq!(view["token_endpoint_auth_method"], "client_secret_basic");
    for (patch, field) in [
        (json!({"grant_types": ["implicit"]}), "grant_types[0]"),
        (json!({"allowed_scopes": ["admin"]}), "allowed_scopes[0]"),
        (json!({"access_token_lifetime_seconds": 5}), "access_token_lifetime_seconds"),
        (json!({"token_endpoint_auth_method": "none", "require_pkce": false}), "require_pkce"),
        (json!({"backchannel_logout_uri": "ftp://app.example/bcl"}), "backchannel_logout_uri"),
        (json!({"post_logout_redirect_uris": ["not a url"]}), "post_logout_redirect_uris[0]"),
        (json!({"jwks": {"keys": [{"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA", "d": "AA"}]}}), "jwks.keys[0]"),
    ] {
        let (st, e) = rp.s.gw.admin(Method::PATCH, "/clients/app", Some(patch.clone())).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{patch}: {e}");
        assert!(e.to_string().contains(field), "{patch}: names {field}: {e}");
    }
}

/// Through a SAML connection: `prompt=login` asks the IdP for `ForceAuthn`, and the ID
/// token's `auth_time` is the assertion's `AuthnInstant`.
#[tokio::test]
async fn saml_upstream_gets_force_authn_and_auth_time_is_the_authn_instant() {
    use std::io::Read;
    let acs = crate::saml::Acs::new(json!({}), json!({"create_users": true})).await;
    let (st, c) = acs.gw.admin(Method::POST, "/clients", Some(json!({"client_id": "app", "redirect_uris": [APP_CB]}))).await;
    assert_eq!(st, StatusCode::CREATED, "{c}");
    let secret = c["client_secret"].as_str().unwrap().to_string();
    let b = Browser::new();
    let request = |extra: &str| {
        format!("{}/authorize?client_id=app&response_type=code&scope=openid&redirect_uri={}&state=s&connection=con_s{extra}", acs.gw.base, enc(APP_CB))
    };
    // Follows the gateway's redirects to the IdP; returns the AuthnRequest and RelayState.
    let to_idp = |url: String| {
        let b = &b;
        async move {
            let mut url = url;
            loop {
                let r = b.http.get(&url).send().await.unwrap();
                let loc = reqwest::Url::parse(&url).unwrap().join(r.headers()["location"].to_str().unwrap()).unwrap();
                if let Some(req) = loc.query_pairs().find(|(k, _)| k == "SAMLRequest").map(|(_, v)| v.into_owned()) {
                    let mut xml = String::new();
                    flate2::read::DeflateDecoder::new(&B64.decode(req).unwrap()[..]).read_to_string(&mut xml).unwrap();
                    let relay = loc.query_pairs().find(|(k, _)| k == "RelayState").unwrap().1.into_owned();
                    return (xml, relay);
                }
                url = loc.to_string();
            }
        }
    };
    let (plain, _) = to_idp(request("")).await;
    assert!(!plain.contains("ForceAuthn"), "{plain}");
    // A forced sign-in the IdP refuses: "try again" forces it again (a retry must not
    // become a login on the IdP's old session, with an auth_time of now).
    let (forced, relay) = to_idp(request("&prompt=login")).await;
    let id_start = forced.find("ID=\"").unwrap() + 4;
    let refused_id = &forced[id_start..id_start + forced[id_start..].find('"').unwrap()];
    let spec = acs.spec(Some(refused_id), json!({"status": "urn:oasis:names:tc:SAML:2.0:status:Requester"}));
    let r = b.http.post(&acs.acs).form(&[("SAMLResponse", crate::saml::forge(&spec)), ("RelayState", relay)]).send().await.unwrap();
    assert!(r.status().is_client_error(), "{}", r.status());
    let page = r.text().await.unwrap();
    let retry = page.split("href=\"").map(|h| &h[..h.find('"').unwrap_or(0)]).find(|h| h.starts_with("/login/con_s")).unwrap_or_else(|| panic!("{page}"));
    assert!(retry.contains("prompt=login") && retry.contains("return_to="), "try again asks for a fresh sign-in again: {retry}");
    let (xml, relay) = to_idp(request("&prompt=login")).await;
    assert!(xml.contains("ForceAuthn=\"true\""), "{xml}");
    let id_start = xml.find("ID=\"").unwrap() + 4;
    let request_id = &xml[id_start..id_start + xml[id_start..].find('"').unwrap()];
    // The IdP says the user authenticated ten minutes ago.
    let spec = acs.spec(Some(request_id), json!({"authn_instant": -600}));
    let r = b.http.post(&acs.acs).form(&[("SAMLResponse", crate::saml::forge(&spec)), ("RelayState", relay)]).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let back = reqwest::Url::parse(&acs.gw.base).unwrap().join(r.headers()["location"].to_str().unwrap()).unwrap();
    let resp = b.http.get(back.as_str()).send().await.unwrap();
    let w = walk(&b, resp, back.to_string()).await;
    let code = w.app.as_ref().and_then(|q| q.get("code").cloned()).unwrap_or_else(|| panic!("{:?}", w.hops));
    let (st, t) = reqwest::Client::new()
        .post(format!("{}/token", acs.gw.base))
        .basic_auth("app", Some(&secret))
        .form(&[("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", APP_CB)])
        .send()
        .await
        .map(|r| (r.status(), r))
        .unwrap();
    assert_eq!(st, StatusCode::OK);
    let t: Value = t.json().await.unwrap();
    let c = claims(t["id_token"].as_str().unwrap());
    let now = chrono::Utc::now().timestamp();
    let auth_time = c["auth_time"].as_i64().unwrap();
    assert!((now - 610..=now - 590).contains(&auth_time), "auth_time {auth_time} is the AuthnInstant, about {}", now - 600);
}
