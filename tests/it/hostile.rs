//! Replies no real IdP sends on purpose, from a hostile IdP written here as a real HTTP
//! server with its own keys: every case of SECURITY.md's OIDC list through the callback
//! endpoint. Each refusal is a clear page, and leaves no user and no session.

use std::sync::{Arc, Mutex};

use axum::extract::{Form, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use openssl::pkey::{PKey, Private};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use ssogate::token::{jws, make, Alg};

use crate::login::Browser;
use crate::support::Gateway;

const CLIENT: &str = "gw-client";
const SECRET: &str = "gw-client-secret-123456";

#[derive(Default)]
struct Idp {
    keys: Vec<Value>,
    id_token: String,
    access_token: String,
    userinfo: Value,
    jwks_hits: usize,
    token_form: Vec<(String, String)>,
    revoked: Vec<(String, String)>,
}

type Shared = Arc<Mutex<Idp>>;

struct Hostile {
    base: String,
    state: Shared,
    key: PKey<Private>,
    kid: String,
}

fn keypair(alg: Alg) -> (PKey<Private>, Value, String) {
    let (kid, pem, jwk) = make(alg).unwrap();
    (PKey::private_key_from_pem(pem.as_bytes()).unwrap(), jwk, kid)
}

async fn start_idp() -> Hostile {
    let (key, jwk, kid) = keypair(Alg::Rs256);
    let state: Shared = Arc::new(Mutex::new(Idp { keys: vec![jwk], access_token: "at-1".into(), ..Default::default() }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let b = base.clone();
    let app = Router::new()
        .route(
            "/jwks",
            get(|State(s): State<Shared>| async move {
                let mut s = s.lock().unwrap();
                s.jwks_hits += 1;
                Json(json!({"keys": s.keys}))
            }),
        )
        .route(
            "/token",
            post(|State(s): State<Shared>, Form(form): Form<Vec<(String, String)>>| async move {
                let mut s = s.lock().unwrap();
                s.token_form = form;
                Json(json!({"id_token": s.id_token, "access_token": s.access_token, "token_type": "Bearer"}))
            }),
        )
        // No userinfo set: 404, as from an IdP without one (the gateway then reads the ID token alone).
        .route(
            "/userinfo",
            get(|State(s): State<Shared>| async move {
                let info = s.lock().unwrap().userinfo.clone();
                if info.is_null() {
                    Err(axum::http::StatusCode::NOT_FOUND)
                } else {
                    Ok(Json(info))
                }
            }),
        )
        .route(
            "/revoke",
            post(|State(s): State<Shared>, Form(form): Form<Vec<(String, String)>>| async move {
                s.lock().unwrap().revoked.extend(form);
                axum::http::StatusCode::OK
            }),
        )
        // RFC 8414 / OIDC Discovery, saying that the authorization response carries `iss` (RFC 9207).
        .route(
            "/.well-known/openid-configuration",
            get(move || async move {
                Json(json!({"issuer": b, "authorization_endpoint": format!("{b}/authorize"), "token_endpoint": format!("{b}/token"),
                    "jwks_uri": format!("{b}/jwks"), "userinfo_endpoint": format!("{b}/userinfo"), "revocation_endpoint": format!("{b}/revoke"),
                    "authorization_response_iss_parameter_supported": true}))
            }),
        )
        .with_state(state.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Hostile { base, state, key, kid }
}

struct Case {
    gw: Gateway,
    idp: Hostile,
}

impl Case {
    async fn new(extra_env: &[(&str, &str)], conn_extra: Value) -> Case {
        let idp = start_idp().await;
        let gw = Gateway::start_in(Arc::new(tempfile::tempdir().unwrap()), extra_env).await;
        let mut oidc = json!({"issuer": idp.base, "client_id": CLIENT, "client_secret": SECRET,
            "authorization_endpoint": format!("{}/authorize", idp.base), "token_endpoint": format!("{}/token", idp.base),
            "jwks_uri": format!("{}/jwks", idp.base), "userinfo_endpoint": format!("{}/userinfo", idp.base),
            "revocation_endpoint": format!("{}/revoke", idp.base),
            "allowed_algorithms": ["RS256", "ES256"]});
        if let Some(o) = conn_extra.get("oidc").and_then(Value::as_object) {
            for (k, v) in o {
                oidc[k] = v.clone();
            }
        }
        let mut claims = json!({"user_id": "sub"});
        if let Some(c) = conn_extra.get("claims").and_then(Value::as_object) {
            claims.as_object_mut().unwrap().extend(c.clone());
        }
        let body = json!({"id": "con_h", "display_name": "Hostile", "protocol": "oidc", "create_users": true, "discover": false,
            "oidc": oidc, "claims": claims});
        let (s, c) = gw.admin(Method::POST, "/connections", Some(body)).await;
        assert_eq!(s, StatusCode::CREATED, "{c}");
        Case { gw, idp }
    }

    fn claims(&self, nonce: &str) -> Value {
        let now = chrono::Utc::now().timestamp();
        json!({"iss": self.idp.base, "aud": CLIENT, "sub": "mallory", "nonce": nonce, "iat": now, "exp": now + 300,
               "email": "m@example.test", "email_verified": true})
    }

    fn sign(&self, claims: &Value) -> String {
        jws::sign(&self.idp.key, "RS256", &self.idp.kid, claims).unwrap()
    }

    /// Starts a login; returns the browser, the state and the nonce the gateway sent.
    async fn start(&self) -> (Browser, String, String, String) {
        let b = Browser::new();
        let r = b.http.get(format!("{}/login/con_h", self.gw.base)).send().await.unwrap();
        let loc = reqwest::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
        let q = |k: &str| loc.query_pairs().find(|(n, _)| n == k).map(|(_, v)| v.to_string()).unwrap_or_default();
        (b, q("state"), q("nonce"), q("code_challenge"))
    }

    /// One login where the IdP answers with the token `make` builds from the nonce.
    async fn attempt(&self, make: impl Fn(&Case, &str) -> String) -> (StatusCode, String, Option<String>) {
        let (_, status, body, cookie) = self.callback("", make).await;
        (status, body, cookie)
    }

    /// One login, `extra` appended to the callback's query; returns the browser too.
    async fn callback(&self, extra: &str, make: impl Fn(&Case, &str) -> String) -> (Browser, StatusCode, String, Option<String>) {
        let (b, state, nonce, _) = self.start().await;
        self.idp.state.lock().unwrap().id_token = make(self, &nonce);
        let r = b.http.get(format!("{}/oidc/con_h/callback?state={state}&code=c1{extra}", self.gw.base)).send().await.unwrap();
        let cookie = r
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .find(|c| c.starts_with("ssogate_session=") && !c.starts_with("ssogate_session=;"));
        let status = r.status();
        (b, status, r.text().await.unwrap(), cookie)
    }

    async fn refused(&self, what: &str, needle: &str, make: impl Fn(&Case, &str) -> String) {
        self.refused_with("", what, needle, make).await
    }

    /// A refusal (403, naming `needle`) with `extra` in the callback's query: no session, no user.
    async fn refused_with(&self, extra: &str, what: &str, needle: &str, make: impl Fn(&Case, &str) -> String) {
        let (_, status, body, cookie) = self.callback(extra, make).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{what}: {body}");
        assert!(body.contains(needle), "{what}: {needle:?} not in {body}");
        assert!(body.contains("Request id"), "{what}");
        assert!(cookie.is_none(), "{what}: no session cookie");
        let (_, users) = self.gw.admin(Method::GET, "/users", None).await;
        assert_eq!(users, json!([]), "{what}: no user created");
    }
}

fn unsigned(header: Value, claims: &Value, sig: &[u8]) -> String {
    format!("{}.{}.{}", B64URL.encode(header.to_string()), B64URL.encode(claims.to_string()), B64URL.encode(sig))
}

#[tokio::test]
async fn forged_and_stale_id_tokens_are_refused() {
    let c = Case::new(&[], json!({})).await;
    c.refused("alg none", "does not accept", |c, n| unsigned(json!({"alg": "none"}), &c.claims(n), b"")).await;
    c.refused("HS256 keyed with the client secret", "does not accept", |c, n| {
        let claims = c.claims(n);
        let input = format!("{}.{}", B64URL.encode(json!({"alg": "HS256", "typ": "JWT"}).to_string()), B64URL.encode(claims.to_string()));
        let key = PKey::hmac(SECRET.as_bytes()).unwrap();
        let mut s = openssl::sign::Signer::new(openssl::hash::MessageDigest::sha256(), &key).unwrap();
        s.update(input.as_bytes()).unwrap();
        format!("{input}.{}", B64URL.encode(s.sign_to_vec().unwrap()))
    })
    .await;
    c.refused("ES512, off the allow-list", "does not accept", |c, n| unsigned(json!({"alg": "ES512", "kid": c.idp.kid}), &c.claims(n), b"x")).await;
    c.refused("bad signature", "signature is invalid", |c, n| {
        let (other, _, _) = keypair(Alg::Rs256);
        jws::sign(&other, "RS256", &c.idp.kid, &c.claims(n)).unwrap()
    })
    .await;
    c.refused("tampered payload", "signature is invalid", |c, n| {
        let good = c.sign(&c.claims(n));
        let mut parts: Vec<String> = good.split('.').map(str::to_string).collect();
        let mut evil = c.claims(n);
        evil["sub"] = json!("admin");
        parts[1] = B64URL.encode(evil.to_string());
        parts.join(".")
    })
    .await;
    c.refused("unknown kid", "no key", |c, n| {
        let (other, _, _) = keypair(Alg::Rs256);
        jws::sign(&other, "RS256", "not-published", &c.claims(n)).unwrap()
    })
    .await;
    c.refused("wrong issuer", "another issuer", |c, n| {
        let mut x = c.claims(n);
        x["iss"] = json!("https://evil.example");
        c.sign(&x)
    })
    .await;
    c.refused("audience without our client", "not meant for this client", |c, n| {
        let mut x = c.claims(n);
        x["aud"] = json!("someone-else");
        c.sign(&x)
    })
    .await;
    c.refused("extra untrusted audience", "untrusted audiences", |c, n| {
        let mut x = c.claims(n);
        x["aud"] = json!([CLIENT, "evil"]);
        c.sign(&x)
    })
    .await;
    c.refused("wrong azp", "azp", |c, n| {
        let mut x = c.claims(n);
        x["azp"] = json!("evil");
        c.sign(&x)
    })
    .await;
    c.refused("missing nonce", "nonce", |c, n| {
        let mut x = c.claims(n);
        x.as_object_mut().unwrap().remove("nonce");
        c.sign(&x)
    })
    .await;
    c.refused("wrong nonce", "nonce", |c, _| c.sign(&c.claims("another-login"))).await;
    c.refused("expired", "expired", |c, n| {
        let mut x = c.claims(n);
        x["exp"] = json!(chrono::Utc::now().timestamp() - 120);
        c.sign(&x)
    })
    .await;
    c.refused("issued in the future", "future", |c, n| {
        let mut x = c.claims(n);
        x["iat"] = json!(chrono::Utc::now().timestamp() + 600);
        c.sign(&x)
    })
    .await;
    c.refused("at_hash mismatch", "at_hash", |c, n| {
        let mut x = c.claims(n);
        x["at_hash"] = json!(jws::half_hash("RS256", "another-token").unwrap());
        c.sign(&x)
    })
    .await;

    // Within the skew, with a matching at_hash: accepted (the checks are not simply always failing).
    let (status, body, cookie) = c
        .attempt(|c, n| {
            let mut x = c.claims(n);
            x["exp"] = json!(chrono::Utc::now().timestamp() - 30);
            x["at_hash"] = json!(jws::half_hash("RS256", "at-1").unwrap());
            x["azp"] = json!(CLIENT);
            c.sign(&x)
        })
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    assert!(cookie.is_some());
}

#[tokio::test]
async fn pkce_verifier_goes_with_the_code_and_matches_the_challenge() {
    let c = Case::new(&[], json!({})).await;
    let (b, state, nonce, challenge) = c.start().await;
    c.idp.state.lock().unwrap().id_token = c.sign(&c.claims(&nonce));
    let r = b.http.get(format!("{}/oidc/con_h/callback?state={state}&code=c1", c.gw.base)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let form = c.idp.state.lock().unwrap().token_form.clone();
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let verifier = get("code_verifier").expect("the code exchange carries the verifier");
    assert!(verifier.len() >= 43);
    assert_eq!(B64URL.encode(Sha256::digest(verifier.as_bytes())), challenge, "S256(verifier) is the challenge");
    assert_eq!(get("code").as_deref(), Some("c1"));
    assert_eq!(get("redirect_uri").unwrap(), format!("{}/oidc/con_h/callback", c.gw.base));
    assert_eq!(get("client_secret"), None, "client_secret_basic: the secret is not in the body");
}

#[tokio::test]
async fn userinfo_for_another_subject_is_refused() {
    let c = Case::new(&[], json!({"oidc": {"userinfo_from_id_token": false}})).await;
    c.idp.state.lock().unwrap().userinfo = json!({"sub": "someone-else", "email": "x@example.test", "email_verified": true});
    c.refused("userinfo sub mismatch", "userinfo sub", |c, n| c.sign(&c.claims(n))).await;
    c.idp.state.lock().unwrap().userinfo = json!({"sub": "mallory", "email": "from-userinfo@example.test", "email_verified": true});
    let (status, _, _) = c.attempt(|c, n| c.sign(&c.claims(n))).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (_, users) = c.gw.admin(Method::GET, "/users", None).await;
    assert_eq!(users[0]["email"], "from-userinfo@example.test", "claims came from userinfo");
}

#[tokio::test]
async fn idp_key_rotation_refetches_the_jwks_once_and_rate_limits_refetches() {
    // Default refetch interval (10 s): a burst of unknown kids costs one refetch.
    let c = Case::new(&[], json!({})).await;
    let (status, _, _) = c.attempt(|c, n| c.sign(&c.claims(n))).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(c.idp.state.lock().unwrap().jwks_hits, 1);
    // The IdP rotates: the new key is published, tokens carry its kid.
    let (new_key, new_jwk, new_kid) = keypair(Alg::Es256);
    c.idp.state.lock().unwrap().keys.push(new_jwk);
    let sign_new = |c: &Case, n: &str| jws::sign(&new_key, "ES256", &new_kid, &c.claims(n)).unwrap();
    // Within 10 s of the last fetch: no refetch, so the new kid is not known yet.
    let (status, _, _) = c.attempt(sign_new).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(c.idp.state.lock().unwrap().jwks_hits, 1, "refetches are rate-limited");

    // With refetch allowed: the unknown kid refetches once and the login works.
    let c2 = Case::new(&[("SSOGATE_LOGIN__JWKS_MIN_REFETCH_SECONDS", "0")], json!({})).await;
    let (status, _, _) = c2.attempt(|c, n| c.sign(&c.claims(n))).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (k2, j2, kid2) = keypair(Alg::Es256);
    c2.idp.state.lock().unwrap().keys = vec![j2];
    let (status, body, _) = c2.attempt(|c, n| jws::sign(&k2, "ES256", &kid2, &c.claims(n)).unwrap()).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    assert_eq!(c2.idp.state.lock().unwrap().jwks_hits, 2, "one refetch for the rotated key");
    // The old key is gone from the IdP: a token signed with it no longer verifies.
    let (status, _, _) = c2.attempt(|c, n| c.sign(&c.claims(n))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn logout_ends_the_session_and_revokes_the_upstream_token() {
    let c = Case::new(&[], json!({})).await;
    let (b, state, nonce, _) = c.start().await;
    c.idp.state.lock().unwrap().id_token = c.sign(&c.claims(&nonce));
    let r = b.http.get(format!("{}/oidc/con_h/callback?state={state}&code=c1", c.gw.base)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let home = b.http.get(format!("{}/", c.gw.base)).send().await.unwrap();
    assert_eq!(home.status(), StatusCode::OK, "signed in");
    let r = b.http.post(format!("{}/logout", c.gw.base)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let revoked = c.idp.state.lock().unwrap().revoked.clone();
    assert!(revoked.contains(&("token".into(), "at-1".into())), "the access token was revoked upstream: {revoked:?}");
    let home = b.http.get(format!("{}/", c.gw.base)).send().await.unwrap();
    assert_eq!(home.status(), StatusCode::SEE_OTHER, "the session is gone");
    // Removing a user ends their sessions too.
    let (b, state, nonce, _) = c.start().await;
    c.idp.state.lock().unwrap().id_token = c.sign(&c.claims(&nonce));
    b.http.get(format!("{}/oidc/con_h/callback?state={state}&code=c1", c.gw.base)).send().await.unwrap();
    let (_, users) = c.gw.admin(Method::GET, "/users", None).await;
    let (s, _) = c.gw.admin(Method::DELETE, &format!("/users/{}", users[0]["id"].as_str().unwrap()), None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let home = b.http.get(format!("{}/", c.gw.base)).send().await.unwrap();
    assert_eq!(home.status(), StatusCode::SEE_OTHER, "the removed user's session is gone");
}

#[tokio::test]
async fn concurrent_first_logins_of_one_identity_make_one_user() {
    let c = Case::new(&[], json!({})).await;
    let mut pending = Vec::new();
    for _ in 0..6 {
        let (b, state, nonce, _) = c.start().await;
        pending.push((b, state, c.sign(&c.claims(&nonce))));
    }
    // Six callbacks of the same subject at once. The IdP here has one token slot, so a
    // callback may meet another login's nonce and be refused (403); every one that
    // succeeds must land on the same single user, whatever the interleaving.
    let mut tasks = Vec::new();
    for (b, state, token) in pending {
        let base = c.gw.base.clone();
        let idp = c.idp.state.clone();
        tasks.push(tokio::spawn(async move {
            idp.lock().unwrap().id_token = token;
            b.http.get(format!("{base}/oidc/con_h/callback?state={state}&code=c1")).send().await.unwrap().status()
        }));
    }
    let mut ok = 0;
    for t in tasks {
        let s = t.await.unwrap();
        assert!(s == StatusCode::SEE_OTHER || s == StatusCode::FORBIDDEN, "{s}");
        ok += (s == StatusCode::SEE_OTHER) as usize;
    }
    assert!(ok >= 1);
    let (_, users) = c.gw.admin(Method::GET, "/users", None).await;
    assert_eq!(users.as_array().unwrap().len(), 1, "one identity, one user: {users}");
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// An ECDSA JWS with any header, signed with `md` by `key`, r and s each `width` bytes
/// (left-padded with zeros, or with leading zero bytes dropped when `width` is short).
fn ec_token(key: &PKey<Private>, header: Value, claims: &Value, md: openssl::hash::MessageDigest, width: usize) -> String {
    let input = format!("{}.{}", B64URL.encode(header.to_string()), B64URL.encode(claims.to_string()));
    let mut signer = openssl::sign::Signer::new(md, key).unwrap();
    signer.update(input.as_bytes()).unwrap();
    let der = openssl::ecdsa::EcdsaSig::from_der(&signer.sign_to_vec().unwrap()).unwrap();
    let (mut r, mut s) = (der.r().to_vec(), der.s().to_vec());
    assert!(r.len() <= width && s.len() <= width, "pick a width the values fit in");
    r.splice(0..0, std::iter::repeat_n(0, width - r.len()));
    s.splice(0..0, std::iter::repeat_n(0, width - s.len()));
    r.extend(s);
    format!("{input}.{}", B64URL.encode(r))
}

/// A P-384 key pair and its JWK, which names no `alg`.
fn p384(kid: &str) -> (PKey<Private>, Value) {
    let group = openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::SECP384R1).unwrap();
    let ec = openssl::ec::EcKey::generate(&group).unwrap();
    let mut ctx = openssl::bn::BigNumContext::new().unwrap();
    let (mut x, mut y) = (openssl::bn::BigNum::new().unwrap(), openssl::bn::BigNum::new().unwrap());
    ec.public_key().affine_coordinates(&group, &mut x, &mut y, &mut ctx).unwrap();
    let jwk = json!({"kty": "EC", "crv": "P-384", "kid": kid, "use": "sig",
        "x": B64URL.encode(x.to_vec_padded(48).unwrap()), "y": B64URL.encode(y.to_vec_padded(48).unwrap())});
    (PKey::from_ec_key(ec).unwrap(), jwk)
}

#[tokio::test]
async fn userinfo_email_does_not_inherit_the_id_tokens_verification() {
    let c = Case::new(&[], json!({"oidc": {"userinfo_from_id_token": false}})).await;
    let (s, victim) = c.gw.admin(Method::POST, "/users", Some(json!({"username": "victim", "email": "victim@example.test"}))).await;
    assert_eq!(s, StatusCode::CREATED, "{victim}");
    let victim_id = victim["id"].as_str().unwrap().to_string();
    // The ID token vouches for dave@; userinfo (same sub) names the victim's address and says nothing of it.
    c.idp.state.lock().unwrap().userinfo = json!({"sub": "mallory", "email": "victim@example.test"});
    let dave = |c: &Case, n: &str| {
        let mut x = c.claims(n);
        x["email"] = json!("dave@example.test");
        c.sign(&x)
    };
    let (b, status, body, _) = c.callback("", dave).await;
    assert!(status == StatusCode::SEE_OTHER || status == StatusCode::FORBIDDEN, "{body}");
    let (_, audit) = c.gw.admin(Method::GET, "/audit?limit=1000", None).await;
    let onto_victim = audit.as_array().unwrap().iter().any(|a| a["action"] == "link.create" && a["target"] == victim_id.as_str());
    assert!(!onto_victim, "the login was linked to the victim's account: {audit}");
    let (home, _) = b.visit(&format!("{}/", c.gw.base)).await;
    assert!(!home.text().await.unwrap().contains("victim"), "signed in as the victim");

    // The same reply where userinfo itself says the address is verified: it may claim the account.
    c.idp.state.lock().unwrap().userinfo = json!({"sub": "mallory2", "email": "victim@example.test", "email_verified": true});
    let (b, status, body, _) = c
        .callback("", |c, n| {
            let mut x = c.claims(n);
            x["sub"] = json!("mallory2");
            x["email"] = json!("dave@example.test");
            c.sign(&x)
        })
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    let (home, _) = b.visit(&format!("{}/", c.gw.base)).await;
    assert!(home.text().await.unwrap().contains("<strong>victim</strong>"), "userinfo vouched for its own address");
}

#[tokio::test]
async fn ecdsa_keys_must_fit_the_algorithm_and_signatures_their_exact_size() {
    let c = Case::new(&[], json!({})).await;
    let (k384, j384) = p384("p384");
    let (k256, j256, kid256) = keypair(Alg::Es256);
    c.idp.state.lock().unwrap().keys.extend([j384, j256]);
    let sha256 = openssl::hash::MessageDigest::sha256;
    c.refused("ES256 with a P-384 key from a JWKS entry without alg", "no key", |c, n| {
        ec_token(&k384, json!({"alg": "ES256", "kid": "p384"}), &c.claims(n), sha256(), 48)
    })
    .await;
    c.refused("ES256 with a 66-byte signature", "signature is invalid", |c, n| {
        ec_token(&k256, json!({"alg": "ES256", "kid": kid256}), &c.claims(n), sha256(), 33)
    })
    .await;
    // The right size with the right curve: accepted.
    let (status, body, cookie) = c.attempt(|c, n| ec_token(&k256, json!({"alg": "ES256", "kid": kid256}), &c.claims(n), sha256(), 32)).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    assert!(cookie.is_some());
}

#[tokio::test]
async fn id_token_not_valid_yet_is_refused() {
    let c = Case::new(&[], json!({})).await;
    c.refused("nbf an hour ahead", "not valid yet", |c, n| {
        let mut x = c.claims(n);
        x["nbf"] = json!(chrono::Utc::now().timestamp() + 3600);
        c.sign(&x)
    })
    .await;
    c.refused("nbf not a number", "nbf", |c, n| {
        let mut x = c.claims(n);
        x["nbf"] = json!("soon");
        c.sign(&x)
    })
    .await;
    // Within the skew: accepted.
    let (status, body, _) = c
        .attempt(|c, n| {
            let mut x = c.claims(n);
            x["nbf"] = json!(chrono::Utc::now().timestamp() + 30);
            c.sign(&x)
        })
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
}

#[tokio::test]
async fn authorization_response_iss_must_name_the_issuer() {
    let c = Case::new(&[], json!({})).await;
    let good = format!("&iss={}", enc(&c.idp.base));
    let sign = |c: &Case, n: &str| c.sign(&c.claims(n));
    // Not required by this connection: when present it must still be exact.
    c.refused_with("&iss=https%3A%2F%2Fevil.example", "wrong iss", "iss", sign).await;
    c.refused_with(&format!("&iss={}", enc(&format!("{}/", c.idp.base))), "iss with a trailing slash", "iss", sign).await;
    let (_, status, body, _) = c.callback("&iss=", sign).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "an empty iss is not the issuer: {body}");
    let (_, users) = c.gw.admin(Method::GET, "/users", None).await;
    assert_eq!(users, json!([]));
    let (_, status, body, _) = c.callback("", sign).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "no iss, not required: {body}");
    c.gw.admin(Method::DELETE, &format!("/users/{}", c.gw.admin(Method::GET, "/users", None).await.1[0]["id"].as_str().unwrap()), None).await;
    let (_, status, body, _) = c.callback(&good, sign).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "the right iss: {body}");
    c.gw.admin(Method::DELETE, &format!("/users/{}", c.gw.admin(Method::GET, "/users", None).await.1[0]["id"].as_str().unwrap()), None).await;

    // Discovery says the IdP sends iss: the connection requires it from then on.
    let (s, doc) = c.gw.admin(Method::POST, "/discovery", Some(json!({"issuer": c.idp.base}))).await;
    assert_eq!(s, StatusCode::OK, "{doc}");
    assert_eq!(doc["authorization_response_iss_parameter_supported"], true);
    let (s, conn) = c.gw.admin(Method::PATCH, "/connections/con_h", Some(json!({"discover": true}))).await;
    assert_eq!(s, StatusCode::OK, "{conn}");
    assert_eq!(conn["oidc"]["authorization_response_iss_parameter_supported"], true, "{conn}");
    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    c.refused("iss missing when the IdP says it sends one", "iss", sign).await;
    c.refused_with("&iss=https%3A%2F%2Fevil.example", "wrong iss when required", "iss", sign).await;
    let (_, status, body, cookie) = c.callback(&good, sign).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "the right iss when required: {body}");
    assert!(cookie.is_some());
}

#[tokio::test]
async fn control_characters_from_the_idp_never_reach_the_directory() {
    let c = Case::new(&[], json!({})).await;
    c.refused("CRLF in the email", "email claim", |c, n| {
        let mut x = c.claims(n);
        x["email"] = json!("crlf@example.test\r\nX-Injected: yes");
        c.sign(&x)
    })
    .await;
    c.refused("NUL in the name", "name claim", |c, n| {
        let mut x = c.claims(n);
        x["name"] = json!("Mallory\u{0}Admin");
        c.sign(&x)
    })
    .await;
    c.refused("LF in the subject", "sub claim", |c, n| {
        let mut x = c.claims(n);
        x["sub"] = json!("mallory\nX-Injected: yes");
        c.sign(&x)
    })
    .await;
    // The page names the claim, never the value.
    let (_, _, body, _) = c
        .callback("", |c, n| {
            let mut x = c.claims(n);
            x["email"] = json!("crlf@example.test\r\nX-Injected: yes");
            c.sign(&x)
        })
        .await;
    assert!(!body.contains("X-Injected"), "{body}");
}

#[tokio::test]
async fn session_email_verified_describes_the_session_email() {
    let c = Case::new(&[], json!({})).await;
    let (b, status, body, _) = c.callback("", |c, n| c.sign(&c.claims(n))).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    let auth = |b: &Browser, email: &str| b.http.get(format!("{}/auth?allowed_emails={}", c.gw.base, enc(email))).send();
    assert_eq!(auth(&b, "m@example.test").await.unwrap().status(), StatusCode::OK, "the stored address, verified by this login");
    // Later the IdP vouches for another address, which another user has (so it does not
    // replace the stored one): the session still carries the stored one, which this
    // login did not verify.
    let (st, _) = c.gw.admin(Method::POST, "/users", Some(json!({"username": "other", "email": "other@example.test"}))).await;
    assert_eq!(st, StatusCode::CREATED);
    let (b, status, body, _) = c
        .callback("", |c, n| {
            let mut x = c.claims(n);
            x["email"] = json!("other@example.test");
            c.sign(&x)
        })
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    let info: Value = b.http.get(format!("{}/oauth2/userinfo", c.gw.base)).send().await.unwrap().json().await.unwrap();
    assert_eq!(info["email"], "m@example.test", "{info}");
    assert_eq!(auth(&b, "m@example.test").await.unwrap().status(), StatusCode::FORBIDDEN, "m@ was not verified by this login");
    assert_eq!(auth(&b, "other@example.test").await.unwrap().status(), StatusCode::FORBIDDEN);
    // Same address in another ASCII case: verified.
    let (b, _, _, _) = c
        .callback("", |c, n| {
            let mut x = c.claims(n);
            x["email"] = json!("M@Example.Test");
            c.sign(&x)
        })
        .await;
    assert_eq!(auth(&b, "m@example.test").await.unwrap().status(), StatusCode::OK);
}

/// Issue #10, 3: a verified `\u{212A}ate@` (KELVIN SIGN, which Unicode lowercases to `k`)
/// is another address than `kate@`: it never claims her account.
#[tokio::test]
async fn a_kelvin_sign_email_never_claims_the_ascii_account() {
    let c = Case::new(&[], json!({})).await;
    let (s, kate) = c.gw.admin(Method::POST, "/users", Some(json!({"username": "kate", "email": "kate@example.test"}))).await;
    assert_eq!(s, StatusCode::CREATED, "{kate}");
    let kate_id = kate["id"].as_str().unwrap().to_string();
    let (b, status, body, _) = c
        .callback("", |c, n| {
            let mut x = c.claims(n);
            x["email"] = json!("\u{212A}ate@example.test");
            c.sign(&x)
        })
        .await;
    assert!(status == StatusCode::SEE_OTHER || status == StatusCode::FORBIDDEN, "{body}");
    let (_, audit) = c.gw.admin(Method::GET, "/audit?limit=1000", None).await;
    let onto_kate = audit.as_array().unwrap().iter().any(|a| a["action"] == "link.create" && a["target"] == kate_id.as_str());
    assert!(!onto_kate, "the Kelvin-sign login was linked to kate: {audit}");
    let (home, _) = b.visit(&format!("{}/", c.gw.base)).await;
    assert!(!home.text().await.unwrap().contains("<strong>kate</strong>"), "signed in as kate");
}

/// `email_verified` vouches for the `email` claim only: with the email mapped from
/// `preferred_username` (Entra ID's shape) and no `email` claim, a verified flag never
/// lets that free-text field claim an account, with or without userinfo.
#[tokio::test]
async fn email_verified_never_vouches_for_an_email_mapped_from_another_claim() {
    for from_id_token in [true, false] {
        let extra = json!({"claims": {"email": ["email", "preferred_username"]}, "oidc": {"userinfo_from_id_token": from_id_token}});
        let c = Case::new(&[], extra).await;
        let (s, victim) = c.gw.admin(Method::POST, "/users", Some(json!({"username": "victim", "email": "victim@example.test"}))).await;
        assert_eq!(s, StatusCode::CREATED, "{victim}");
        let victim_id = victim["id"].as_str().unwrap().to_string();
        c.idp.state.lock().unwrap().userinfo = json!({"sub": "mallory", "preferred_username": "victim@example.test", "email_verified": true});
        let (_, status, body, _) = c
            .callback("", |c, n| {
                let mut x = c.claims(n);
                x.as_object_mut().unwrap().remove("email");
                x["preferred_username"] = json!("victim@example.test");
                x["email_verified"] = json!(true);
                c.sign(&x)
            })
            .await;
        assert!(status == StatusCode::SEE_OTHER || status == StatusCode::FORBIDDEN, "{body}");
        let (_, audit) = c.gw.admin(Method::GET, "/audit?limit=1000", None).await;
        let onto_victim = audit.as_array().unwrap().iter().any(|a| a["action"] == "link.create" && a["target"] == victim_id.as_str());
        assert!(!onto_victim, "userinfo_from_id_token={from_id_token}: linked to the victim: {audit}");
    }
}

/// Issue #10, 1: an account created from an unverified assertion can never be claimed
/// by email. An attacker's login without `email_verified` creates a user with the
/// victim's address; the victim's later login with that address verified must not land
/// on the attacker's account (it gets an account of its own, or a refusal).
#[tokio::test]
async fn an_account_created_from_an_unverified_email_is_never_claimed_by_email() {
    let c = Case::new(&[], json!({"oidc": {"email_verification": false}})).await;
    let (b, status, body, _) = c
        .callback("", |c, n| {
            let mut x = c.claims(n);
            x["sub"] = json!("attacker");
            x["email"] = json!("victim@example.test");
            x.as_object_mut().unwrap().remove("email_verified");
            c.sign(&x)
        })
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    drop(b);
    let (_, users) = c.gw.admin(Method::GET, "/users", None).await;
    let attacker_id = users[0]["id"].as_str().unwrap().to_string();
    assert_eq!(users[0]["email"], "victim@example.test", "the unverified address was stored: {users}");
    let (_, status, body, _) = c
        .callback("", |c, n| {
            let mut x = c.claims(n);
            x["sub"] = json!("victim");
            x["email"] = json!("victim@example.test");
            x["email_verified"] = json!(true);
            c.sign(&x)
        })
        .await;
    assert!(status == StatusCode::SEE_OTHER || status == StatusCode::FORBIDDEN, "{body}");
    let (_, audit) = c.gw.admin(Method::GET, "/audit?limit=1000", None).await;
    let claimed =
        audit.as_array().unwrap().iter().any(|a| a["action"] == "link.create" && a["target"] == attacker_id.as_str() && a["detail"]["by"] == "verified email");
    assert!(!claimed, "the victim's verified login was linked to the attacker-created account: {audit}");
    // An account whose address an admin entered may be claimed by a verified login.
    let (s, carol) = c.gw.admin(Method::POST, "/users", Some(json!({"username": "carol", "email": "carol@example.test"}))).await;
    assert_eq!(s, StatusCode::CREATED, "{carol}");
    let (_, status, body, _) = c
        .callback("", |c, n| {
            let mut x = c.claims(n);
            x["sub"] = json!("carol-at-idp");
            x["email"] = json!("carol@example.test");
            x["email_verified"] = json!(true);
            c.sign(&x)
        })
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    let (_, audit) = c.gw.admin(Method::GET, "/audit?limit=1000", None).await;
    assert!(audit.as_array().unwrap().iter().any(|a| a["action"] == "link.create" && a["target"] == carol["id"]), "{audit}");
}
