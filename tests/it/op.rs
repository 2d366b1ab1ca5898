//! ssogate as an OpenID Provider, driven as a relying party would: discovery, the code
//! flow with PKCE, the token endpoint's refusals (reused code, wrong client, wrong
//! redirect URI, wrong verifier), userinfo, and ID tokens verified by the
//! `openidconnect` crate against our JWKS, across a signing key rotation.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use openidconnect::core::{CoreIdToken, CoreIdTokenVerifier, CoreJsonWebKeySet, CoreJwsSigningAlgorithm};
use openidconnect::{ClientId, IssuerUrl, Nonce};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::login::{Browser, Setup};

pub const APP_CB: &str = "http://127.0.0.1:9/app/callback";

/// A gateway with an upstream IdP and one client, `app`, as a relying party drives it.
pub struct Rp {
    pub s: Setup,
    pub secret: String,
}

impl Rp {
    pub async fn new() -> Rp {
        Rp::with_client(json!({})).await
    }

    /// [`Rp::new`] with the client's settings patched by `settings`.
    pub async fn with_client(settings: Value) -> Rp {
        Rp::with_client_on(ssogate::clock::Clock::system(), settings).await
    }

    /// [`Rp::with_client`] on `clock`.
    pub async fn with_client_on(clock: ssogate::clock::Clock, settings: Value) -> Rp {
        let s = crate::login::setup_on(clock, &[], json!({}), json!({"group_sync": true})).await;
        s.gw.admin(Method::POST, "/groups", Some(json!({"name": "Engineers"}))).await;
        let mut body = json!({"client_id": "app", "redirect_uris": [APP_CB]});
        for (k, v) in settings.as_object().unwrap() {
            body[k] = v.clone();
        }
        let (st, c) = s.gw.admin(Method::POST, "/clients", Some(body)).await;
        assert_eq!(st, StatusCode::CREATED, "{c}");
        Rp { secret: c["client_secret"].as_str().unwrap().to_string(), s }
    }

    /// Runs /authorize in `b` up to the redirect back to the app; returns the code.
    pub async fn code(&self, b: &Browser, extra: &str) -> String {
        self.code_scoped(b, "openid%20email%20profile%20groups", extra).await
    }

    /// [`Rp::code`] asking for `scope` (URL-encoded).
    pub async fn code_scoped(&self, b: &Browser, scope: &str, extra: &str) -> String {
        let mut url = format!(
            "{}/authorize?client_id=app&response_type=code&scope={scope}&redirect_uri={}&state=st1&nonce=n1&connection=con_node&login_hint=alice{extra}",
            self.s.gw.base,
            enc(APP_CB)
        );
        for _ in 0..15 {
            let r = b.http.get(&url).send().await.unwrap();
            assert!(r.status().is_redirection(), "{url}: {} {}", r.status(), r.text().await.unwrap());
            let loc = reqwest::Url::parse(&url).unwrap().join(r.headers()["location"].to_str().unwrap()).unwrap();
            if loc.as_str().starts_with(APP_CB) {
                let q: std::collections::HashMap<_, _> = loc.query_pairs().into_owned().collect();
                assert_eq!(q.get("state").map(String::as_str), Some("st1"));
                assert_eq!(q.get("iss"), Some(&self.s.gw.base));
                return q["code"].clone();
            }
            url = loc.to_string();
        }
        panic!("no code");
    }

    /// POSTs `form` to `/token`, with HTTP Basic `auth` when given.
    pub async fn exchange(&self, form: &[(&str, &str)], auth: Option<(&str, &str)>) -> (StatusCode, Value) {
        let mut req = reqwest::Client::new().post(format!("{}/token", self.s.gw.base)).form(form);
        if let Some((id, secret)) = auth {
            req = req.basic_auth(id, Some(secret));
        }
        let r = req.send().await.unwrap();
        (r.status(), r.json().await.unwrap())
    }

    pub async fn verifier(&self) -> CoreIdTokenVerifier<'static> {
        let jwks: CoreJsonWebKeySet = reqwest::get(format!("{}/jwks.json", self.s.gw.base)).await.unwrap().json().await.unwrap();
        // The algorithms our discovery document lists (the crate's default is RS256 only).
        CoreIdTokenVerifier::new_public_client(ClientId::new("app".into()), IssuerUrl::new(self.s.gw.base.clone()).unwrap(), jwks)
            .set_allowed_algs(vec![CoreJwsSigningAlgorithm::EcdsaP256Sha256, CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256])
    }
}

pub fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn kid(token: &str) -> String {
    let header: Value = serde_json::from_slice(&B64URL.decode(token.split('.').next().unwrap()).unwrap()).unwrap();
    header["kid"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn code_flow_with_pkce_issues_a_verifiable_session_token() {
    let rp = Rp::new().await;
    let disc: Value = reqwest::get(format!("{}/.well-known/openid-configuration", rp.s.gw.base)).await.unwrap().json().await.unwrap();
    assert_eq!(disc["issuer"], rp.s.gw.base);
    assert_eq!(disc["token_endpoint"], format!("{}/token", rp.s.gw.base));

    let b = Browser::new();
    let verifier = "v".repeat(50);
    let challenge = B64URL.encode(Sha256::digest(verifier.as_bytes()));
    let code = rp.code(&b, &format!("&code_challenge={challenge}&code_challenge_method=S256")).await;
    let form = [("grant_type", "authorization_code"), ("code", code.as_str()), ("redirect_uri", APP_CB), ("code_verifier", verifier.as_str())];
    let (st, tokens) = rp.exchange(&form, Some(("app", &rp.secret))).await;
    assert_eq!(st, StatusCode::OK, "{tokens}");
    let id_token = tokens["id_token"].as_str().unwrap().to_string();

    // A library nobody here wrote verifies it with our JWKS.
    let parsed: CoreIdToken = id_token.parse().unwrap();
    let v = rp.verifier().await;
    let claims = parsed.claims(&v, &Nonce::new("n1".into())).expect("the openidconnect crate accepts our ID token");
    assert_eq!(claims.email().map(|e| e.as_str()), Some("alice@example.test"));
    assert!(claims.subject().as_str().starts_with("usr_"), "sub is our stable user id");
    let raw: Value = serde_json::from_slice(&B64URL.decode(id_token.split('.').nth(1).unwrap()).unwrap()).unwrap();
    assert_eq!(raw["connection"], "con_node");
    assert!(raw["groups"].as_array().unwrap().contains(&json!("Engineers")));
    // The sid names the session without being its id (the session cookie's value).
    let sid = raw["sid"].as_str().unwrap();
    assert_eq!(sid.len(), 32);
    let now = rp.s.gw.app.clock.now();
    assert!(rp.s.gw.app.sessions.touch(sid, now).await.unwrap().is_none(), "the sid is not a session cookie");

    // userinfo with the access token.
    let r = reqwest::Client::new().get(format!("{}/userinfo", rp.s.gw.base)).bearer_auth(tokens["access_token"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let info: Value = r.json().await.unwrap();
    assert_eq!(info["sub"], raw["sub"]);
    assert_eq!(info["email"], "alice@example.test");
    let r = reqwest::Client::new().get(format!("{}/userinfo", rp.s.gw.base)).bearer_auth("forged").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // The code is single use.
    let (st, e) = rp.exchange(&form, Some(("app", &rp.secret))).await;
    assert_eq!((st, e["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")));

    // The signing key rotates: the old token still verifies (its key stays published),
    // a new token carries the new kid.
    let old_kid = kid(&id_token);
    let (st, _) = rp.s.gw.admin(Method::POST, "/keys", Some(json!({"alg": "RS256"}))).await;
    assert_eq!(st, StatusCode::CREATED);
    let v = rp.verifier().await;
    parsed.claims(&v, &Nonce::new("n1".into())).expect("tokens signed before the rotation still verify");
    let code = rp.code(&b, "").await;
    let (st, tokens) = rp
        .exchange(&[("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", APP_CB), ("client_id", "app"), ("client_secret", &rp.secret)], None)
        .await;
    assert_eq!(st, StatusCode::OK, "client_secret_post works too: {tokens}");
    let new_token = tokens["id_token"].as_str().unwrap();
    assert_ne!(kid(new_token), old_kid);
    let parsed: CoreIdToken = new_token.parse().unwrap();
    parsed.claims(&v, &Nonce::new("n1".into())).expect("the new token verifies");
}

#[tokio::test]
async fn token_endpoint_refuses_wrong_clients_uris_and_verifiers() {
    let rp = Rp::new().await;
    let b = Browser::new();
    let verifier = "w".repeat(43);
    let challenge = B64URL.encode(Sha256::digest(verifier.as_bytes()));
    let code = rp.code(&b, &format!("&code_challenge={challenge}&code_challenge_method=S256")).await;
    let base = |v: &'static str| vec![("grant_type", "authorization_code"), ("redirect_uri", APP_CB), ("code_verifier", v)];
    // Wrong secret, unknown client, no credentials: 401, and the code is not spent.
    for auth in [Some(("app", "wrong")), Some(("nope", "x")), None] {
        let mut f = base("x");
        f.push(("code", &code));
        let (st, e) = rp.exchange(&f, auth).await;
        assert_eq!((st, e["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_client")), "{auth:?}");
    }
    // Wrong verifier: refused, and the code is spent (single use even when refused).
    let mut f = base("not-the-verifier-not-the-verifier-not-the-verifier");
    f.push(("code", &code));
    let (st, e) = rp.exchange(&f, Some(("app", &rp.secret))).await;
    assert_eq!((st, e["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")), "{e}");
    let mut f = base("w");
    f.push(("code", &code));
    let (st, _) = rp.exchange(&f, Some(("app", &rp.secret))).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);

    // Missing verifier, and a redirect_uri other than the code's.
    let code = rp.code(&b, &format!("&code_challenge={challenge}&code_challenge_method=S256")).await;
    let (st, e) = rp.exchange(&[("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", APP_CB)], Some(("app", &rp.secret))).await;
    assert_eq!((st, e["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")));
    let code = rp.code(&b, "").await;
    let (st, _) =
        rp.exchange(&[("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", "http://127.0.0.1:9/other")], Some(("app", &rp.secret))).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);

    // /authorize never redirects to an unregistered URI, nor for an unknown client.
    for q in [
        format!("client_id=app&response_type=code&scope=openid&redirect_uri={}", enc("https://evil.example/cb")),
        format!("client_id=nope&response_type=code&scope=openid&redirect_uri={}", enc(APP_CB)),
    ] {
        let r = b.http.get(format!("{}/authorize?{q}", rp.s.gw.base)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{q}");
    }
    // Registered URI, bad request: the error goes back to the app.
    let r = b
        .http
        .get(format!("{}/authorize?client_id=app&response_type=token&scope=openid&state=s&redirect_uri={}", rp.s.gw.base, enc(APP_CB)))
        .send()
        .await
        .unwrap();
    let loc = r.headers()["location"].to_str().unwrap();
    assert!(loc.starts_with(APP_CB) && loc.contains("error=unsupported_response_type") && loc.contains("state=s"), "{loc}");
}

/// Issue #10, 8: the stored profile (given and family name, picture) reaches apps in the
/// ID token and userinfo under the `profile` scope, and only under it.
#[tokio::test]
async fn the_profile_scope_hands_on_the_stored_profile() {
    let rp = Rp::new().await;
    let profile = json!({"email": "alice@example.test", "email_verified": true, "name": "Alice Example", "given_name": "Alice",
        "family_name": "Example", "picture": "https://pics.example/alice.png", "groups": ["engineers"]});
    rp.s.set_account("alice", profile).await;
    let b = Browser::new();
    for (scope, with) in [("openid%20email", false), ("openid%20profile", true)] {
        let code = rp.code_scoped(&b, scope, "").await;
        let form =
            [("grant_type", "authorization_code"), ("code", code.as_str()), ("redirect_uri", APP_CB), ("client_id", "app"), ("client_secret", &rp.secret)];
        let (st, tokens) = rp.exchange(&form, None).await;
        assert_eq!(st, StatusCode::OK, "{tokens}");
        let raw: Value = serde_json::from_slice(&B64URL.decode(tokens["id_token"].as_str().unwrap().split('.').nth(1).unwrap()).unwrap()).unwrap();
        let r = reqwest::Client::new().get(format!("{}/userinfo", rp.s.gw.base)).bearer_auth(tokens["access_token"].as_str().unwrap()).send().await.unwrap();
        let info: Value = r.json().await.unwrap();
        for claims in [&raw, &info] {
            if with {
                assert_eq!((&claims["given_name"], &claims["family_name"]), (&json!("Alice"), &json!("Example")), "{scope}: {claims}");
                assert_eq!(claims["picture"], "https://pics.example/alice.png", "{scope}: {claims}");
            } else {
                assert!(claims.get("given_name").is_none() && claims.get("picture").is_none(), "{scope}: {claims}");
            }
        }
    }
}

#[tokio::test]
async fn a_retired_key_stays_published_while_its_longest_lived_tokens_are_valid() {
    let clock = ssogate::clock::Clock::fixed(chrono::Utc::now().timestamp_millis());
    let rp = Rp::with_client_on(clock.clone(), json!({"id_token_lifetime_seconds": 86_400})).await;
    let b = Browser::new();
    let code = rp.code(&b, "").await;
    let (st, t) = rp.exchange(&[("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", APP_CB)], Some(("app", &rp.secret))).await;
    assert_eq!(st, StatusCode::OK, "{t}");
    let id_token = t["id_token"].as_str().unwrap();
    let old_kid = kid(id_token);
    let (st, _) = rp.s.gw.admin(Method::POST, "/keys", Some(json!({"alg": "RS256"}))).await;
    assert_eq!(st, StatusCode::CREATED);
    let published = |kid: String| {
        let base = rp.s.gw.base.clone();
        async move {
            let jwks: Value = reqwest::get(format!("{base}/jwks.json")).await.unwrap().json().await.unwrap();
            jwks["keys"].as_array().unwrap().iter().any(|k| k["kid"].as_str() == Some(kid.as_str()))
        }
    };
    // Two hours on, the ID token (a day's lifetime) is still valid: its key is published.
    clock.advance(2 * 3600 * 1000);
    let exp = crate::op_spec::claims(id_token)["exp"].as_i64().unwrap() * 1000;
    assert!(exp > clock.now(), "the token is still valid");
    assert!(published(old_kid.clone()).await, "the retired key verifies tokens that are still valid");
    // Past the longest lifetime any client can have, it leaves the JWKS.
    clock.advance(23 * 3600 * 1000);
    assert!(!published(old_kid).await, "a retired key leaves once no token it signed can be valid");
}
