//! Issue #14: refresh tokens (rotation, reuse detection revoking the family, bound to
//! the gateway session), revocation (RFC 7009), introspection (RFC 7662) and
//! `private_key_jwt` client authentication, through the real endpoints.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::login::Browser;
use crate::op::{Rp, APP_CB};
use crate::op_spec::claims;

/// A client allowed refresh tokens, and a signed-in browser's first tokens.
async fn refreshing() -> (Rp, Browser, Value) {
    let rp = Rp::with_client(json!({"grant_types": ["authorization_code", "refresh_token"]})).await;
    let b = Browser::new();
    let code = rp.code_scoped(&b, "openid%20email%20offline_access", "").await;
    let (st, t) = rp.exchange(&[("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", APP_CB)], Some(("app", &rp.secret))).await;
    assert_eq!(st, StatusCode::OK, "{t}");
    assert!(t["refresh_token"].is_string(), "offline_access and the grant: a refresh token: {t}");
    (rp, b, t)
}

impl Rp {
    async fn refresh(&self, token: &str) -> (StatusCode, Value) {
        self.exchange(&[("grant_type", "refresh_token"), ("refresh_token", token)], Some(("app", &self.secret))).await
    }

    async fn userinfo(&self, access: &str) -> StatusCode {
        reqwest::Client::new().get(format!("{}/userinfo", self.s.gw.base)).bearer_auth(access).send().await.unwrap().status()
    }

    async fn post(&self, path: &str, form: &[(&str, &str)], auth: Option<(&str, &str)>) -> (StatusCode, Value) {
        let mut req = reqwest::Client::new().post(format!("{}{path}", self.s.gw.base)).form(form);
        if let Some((id, secret)) = auth {
            req = req.basic_auth(id, Some(secret));
        }
        let r = req.send().await.unwrap();
        let st = r.status();
        (st, r.json().await.unwrap_or(Value::Null))
    }
}

#[tokio::test]
async fn refresh_tokens_rotate_and_a_reused_one_revokes_its_family() {
    let (rp, b, t) = refreshing().await;
    let r0 = t["refresh_token"].as_str().unwrap().to_string();
    let (st, t1) = rp.refresh(&r0).await;
    assert_eq!(st, StatusCode::OK, "{t1}");
    let r1 = t1["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(r1, r0, "rotated on every use");
    assert_eq!(claims(t1["id_token"].as_str().unwrap())["sub"], claims(t["id_token"].as_str().unwrap())["sub"]);
    assert!(claims(t1["id_token"].as_str().unwrap()).get("nonce").is_none(), "no nonce on a refreshed ID token");
    let a1 = t1["access_token"].as_str().unwrap().to_string();
    assert_eq!(rp.userinfo(&a1).await, StatusCode::OK);
    // A narrower scope may be asked, a wider one not.
    let (st, e) = rp.exchange(&[("grant_type", "refresh_token"), ("refresh_token", &r1), ("scope", "openid groups")], Some(("app", &rp.secret))).await;
    assert_eq!((st, e["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_scope")), "{e}");
    // The refused call spent nothing. The old token again: reuse, and the whole family
    // is revoked.
    let (st, e) = rp.refresh(&r0).await;
    assert_eq!((st, e["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")), "{e}");
    assert_eq!(rp.userinfo(&a1).await, StatusCode::UNAUTHORIZED, "the family's access tokens are revoked too");
    let (st, _) = rp.refresh(&r1).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "every token of the family is revoked");
    // Without offline_access, no refresh token; a client without the grant never gets one.
    let code = rp.code_scoped(&b, "openid", "").await;
    let (_, t) = rp.exchange(&[("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", APP_CB)], Some(("app", &rp.secret))).await;
    assert!(t.get("refresh_token").is_none(), "{t}");
}

#[tokio::test]
async fn refresh_tokens_die_with_the_gateway_session() {
    // An admin ends the session.
    let (rp, _b, t) = refreshing().await;
    let sub = claims(t["id_token"].as_str().unwrap())["sub"].as_str().unwrap().to_string();
    let (st, _) = rp.s.gw.admin(Method::DELETE, &format!("/users/{sub}/sessions"), None).await;
    assert_eq!(st, StatusCode::OK);
    let (st, e) = rp.refresh(t["refresh_token"].as_str().unwrap()).await;
    assert_eq!((st, e["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")), "{e}");

    // The user is disabled.
    let b = Browser::new();
    let code = rp.code_scoped(&b, "openid%20offline_access", "").await;
    let (_, t) = rp.exchange(&[("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", APP_CB)], Some(("app", &rp.secret))).await;
    let (st, _) = rp.s.gw.admin(Method::PATCH, &format!("/users/{sub}"), Some(json!({"disabled": true}))).await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = rp.refresh(t["refresh_token"].as_str().unwrap()).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "a disabled user's refresh tokens are dead");
    rp.s.gw.admin(Method::PATCH, &format!("/users/{sub}"), Some(json!({"disabled": false}))).await;

    // The user signs out at the gateway.
    let b = Browser::new();
    let code = rp.code_scoped(&b, "openid%20offline_access", "").await;
    let (_, t) = rp.exchange(&[("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", APP_CB)], Some(("app", &rp.secret))).await;
    let r = b.http.post(format!("{}/logout", rp.s.gw.base)).header("sec-fetch-site", "same-origin").send().await.unwrap();
    assert!(r.status().is_redirection(), "{}", r.status());
    let (st, _) = rp.refresh(t["refresh_token"].as_str().unwrap()).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "signing out ends the refresh tokens");

    // The user is removed.
    let b = Browser::new();
    let code = rp.code_scoped(&b, "openid%20offline_access", "").await;
    let (_, t) = rp.exchange(&[("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", APP_CB)], Some(("app", &rp.secret))).await;
    let (st, _) = rp.s.gw.admin(Method::DELETE, &format!("/users/{sub}"), None).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, _) = rp.refresh(t["refresh_token"].as_str().unwrap()).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "a removed user's refresh tokens are dead");
}

#[tokio::test]
async fn revocation_and_introspection_are_client_authenticated_and_per_client() {
    let (rp, _b, t) = refreshing().await;
    let (st, c) = rp.s.gw.admin(Method::POST, "/clients", Some(json!({"client_id": "other", "redirect_uris": [APP_CB]}))).await;
    assert_eq!(st, StatusCode::CREATED);
    let other = c["client_secret"].as_str().unwrap().to_string();
    let me = Some(("app", rp.secret.as_str()));
    let access = t["access_token"].as_str().unwrap();
    let refresh = t["refresh_token"].as_str().unwrap();

    // Introspection: active, with what the token stands for.
    let (st, i) = rp.post("/introspect", &[("token", access)], me).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!((&i["active"], &i["client_id"], &i["token_type"]), (&json!(true), &json!("app"), &json!("Bearer")), "{i}");
    assert_eq!(i["sub"], claims(t["id_token"].as_str().unwrap())["sub"]);
    assert!(i["scope"].as_str().unwrap().contains("offline_access") && i["exp"].is_i64() && i["iat"].is_i64(), "{i}");
    let (_, i) = rp.post("/introspect", &[("token", refresh), ("token_type_hint", "refresh_token")], me).await;
    assert_eq!((&i["active"], &i["token_type"]), (&json!(true), &json!("refresh_token")), "{i}");
    let (_, i) = rp.post("/introspect", &[("token", "forged")], me).await;
    assert_eq!(i, json!({"active": false}));
    // Another client sees nothing of it; no client at all is refused.
    let (_, i) = rp.post("/introspect", &[("token", access)], Some(("other", &other))).await;
    assert_eq!(i, json!({"active": false}));
    let (st, e) = rp.post("/introspect", &[("token", access)], None).await;
    assert_eq!((st, e["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_client")));
    let (st, e) = rp.post("/introspect", &[], me).await;
    assert_eq!((st, e["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_request")));

    // Revocation: another client's attempt changes nothing; an unknown token is 200.
    let (st, _) = rp.post("/revoke", &[("token", access)], Some(("other", &other))).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(rp.userinfo(access).await, StatusCode::OK);
    let (st, _) = rp.post("/revoke", &[("token", "forged")], me).await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = rp.post("/revoke", &[("token", access)], None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, _) = rp.post("/revoke", &[("token", access), ("token_type_hint", "access_token")], me).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(rp.userinfo(access).await, StatusCode::UNAUTHORIZED, "the revoked access token is dead");
    let (_, i) = rp.post("/introspect", &[("token", access)], me).await;
    assert_eq!(i["active"], false);
    // Revoking the refresh token revokes its family (the next refresh fails).
    let (st, t2) = rp.refresh(refresh).await;
    assert_eq!(st, StatusCode::OK, "{t2}");
    let r2 = t2["refresh_token"].as_str().unwrap();
    let (st, _) = rp.post("/revoke", &[("token", r2)], me).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(rp.userinfo(t2["access_token"].as_str().unwrap()).await, StatusCode::UNAUTHORIZED);
    let (st, _) = rp.refresh(r2).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (_, i) = rp.post("/introspect", &[("token", r2)], me).await;
    assert_eq!(i["active"], false);
}

/// A client's key pair: the private key and its public JWK Set.
fn client_key() -> (openssl::pkey::PKey<openssl::pkey::Private>, Value) {
    use base64::Engine;
    let group = openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1).unwrap();
    let ec = openssl::ec::EcKey::generate(&group).unwrap();
    let mut ctx = openssl::bn::BigNumContext::new().unwrap();
    let (mut x, mut y) = (openssl::bn::BigNum::new().unwrap(), openssl::bn::BigNum::new().unwrap());
    ec.public_key().affine_coordinates(&group, &mut x, &mut y, &mut ctx).unwrap();
    let b64 = |b: Vec<u8>| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let jwk = json!({"kty": "EC", "crv": "P-256", "kid": "k1", "x": b64(x.to_vec_padded(32).unwrap()), "y": b64(y.to_vec_padded(32).unwrap())});
    (openssl::pkey::PKey::from_ec_key(ec).unwrap(), json!({"keys": [jwk]}))
}

#[tokio::test]
async fn private_key_jwt_authenticates_a_client() {
    let (key, jwks) = client_key();
    let rp = Rp::with_client(json!({"token_endpoint_auth_method": "private_key_jwt", "jwks": jwks})).await;
    let base = rp.s.gw.base.clone();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let assertion = |aud: &str, jti: &str, exp: i64| {
        ssogate::token::jws::sign(&key, "ES256", "k1", &json!({"iss": "app", "sub": "app", "aud": aud, "jti": jti, "exp": exp, "iat": now})).unwrap()
    };
    let b = Browser::new();
    let token_url = format!("{base}/token");
    let type_ = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
    let exchange = |code: String, a: String| {
        let rp = &rp;
        async move {
            rp.exchange(
                &[("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", APP_CB), ("client_assertion_type", type_), ("client_assertion", &a)],
                None,
            )
            .await
        }
    };
    let good = assertion(&token_url, "j1", now + 60);
    let (st, t) = exchange(rp.code(&b, "").await, good.clone()).await;
    assert_eq!(st, StatusCode::OK, "{t}");
    // Replayed, for another audience, expired, signed by another key, or the secret
    // instead: refused.
    let (other_key, _) = client_key();
    let foreign =
        ssogate::token::jws::sign(&other_key, "ES256", "k1", &json!({"iss": "app", "sub": "app", "aud": token_url, "jti": "j9", "exp": now + 60})).unwrap();
    for (what, a) in [
        ("replayed", good),
        ("another audience", assertion("https://elsewhere.example/token", "j2", now + 60)),
        ("expired", assertion(&token_url, "j3", now - 600)),
        ("too long-lived", assertion(&token_url, "j4", now + 7200)),
        ("another key", foreign),
    ] {
        let (st, e) = exchange(rp.code(&b, "").await, a).await;
        assert_eq!((st, e["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_client")), "{what}: {e}");
    }
    let (st, _) =
        rp.exchange(&[("grant_type", "authorization_code"), ("code", &rp.code(&b, "").await), ("redirect_uri", APP_CB)], Some(("app", &rp.secret))).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "a private_key_jwt client's secret does not count");
    // A JWK Set with a private key is refused when registered.
    let (st, e) =
        rp.s.gw
            .admin(Method::POST, "/clients", Some(json!({"client_id": "bad", "redirect_uris": [APP_CB], "token_endpoint_auth_method": "private_key_jwt"})))
            .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
}

#[tokio::test]
async fn introspection_refuses_public_clients_and_names_the_user_only_for_profile() {
    use base64::Engine;
    use sha2::Digest;
    let (rp, b, t) = refreshing().await;
    let me = Some(("app", rp.secret.as_str()));
    // The scope has no `profile`: no username in the answer.
    let (_, i) = rp.post("/introspect", &[("token", t["access_token"].as_str().unwrap())], me).await;
    assert_eq!(i["active"], true, "{i}");
    assert!(i.get("username").is_none(), "username only with the profile scope: {i}");
    let code = rp.code_scoped(&b, "openid%20profile", "").await;
    let (_, tp) = rp.exchange(&[("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", APP_CB)], me).await;
    let (_, i) = rp.post("/introspect", &[("token", tp["access_token"].as_str().unwrap())], me).await;
    assert!(i["username"].is_string(), "profile granted: the username is there: {i}");

    // A public client (no secret): its own access token.
    let (st, c) =
        rp.s.gw.admin(Method::POST, "/clients", Some(json!({"client_id": "spa", "redirect_uris": [APP_CB], "token_endpoint_auth_method": "none"}))).await;
    assert_eq!(st, StatusCode::CREATED, "{c}");
    let verifier = "v".repeat(43);
    let s256 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
    let q = crate::op_spec::authorize(
        &rp,
        &b,
        &format!(
            "client_id=spa&response_type=code&scope=openid%20profile&redirect_uri={}&state=s&code_challenge={s256}&code_challenge_method=S256",
            crate::op::enc(APP_CB)
        ),
    )
    .await
    .app
    .unwrap_or_default();
    let form =
        [("grant_type", "authorization_code"), ("code", q["code"].as_str()), ("redirect_uri", APP_CB), ("client_id", "spa"), ("code_verifier", &verifier)];
    let (st, ts) = rp.exchange(&form, None).await;
    assert_eq!(st, StatusCode::OK, "{ts}");
    let access = ts["access_token"].as_str().unwrap();
    // Naming itself is no authorisation to introspect (RFC 7662 4).
    let (st, e) = rp.post("/introspect", &[("token", access), ("client_id", "spa")], None).await;
    assert_eq!((st, e["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_client")), "{e}");
    assert!(e["error_description"].as_str().unwrap().contains("public"), "the refusal says why: {e}");
    // It may still revoke its own token (RFC 7009 allows it).
    let (st, _) = rp.post("/revoke", &[("token", access), ("client_id", "spa")], None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(rp.userinfo(access).await, StatusCode::UNAUTHORIZED, "the public client's revocation worked");
    let disc: Value = reqwest::get(format!("{}/.well-known/openid-configuration", rp.s.gw.base)).await.unwrap().json().await.unwrap();
    assert!(!disc["introspection_endpoint_auth_methods_supported"].as_array().unwrap().contains(&json!("none")), "{disc}");
    assert!(disc["revocation_endpoint_auth_methods_supported"].as_array().unwrap().contains(&json!("none")), "{disc}");
}

#[tokio::test]
async fn a_spent_refresh_token_stays_known_for_its_session_after_the_lifetime_is_shortened() {
    // Two replicas on one Redis and one store: the second was restarted with a shorter
    // session lifetime. Sessions made before keep their own (8 h) end.
    let prefix = crate::replicas::RedisPrefix::new();
    let redis = crate::replicas::redis_url();
    let clock = ssogate::clock::Clock::fixed(chrono::Utc::now().timestamp_millis());
    let env = [("SSOGATE_STATE__URL", redis.as_str()), ("SSOGATE_STATE__PREFIX", prefix.0.as_str())];
    let s = crate::login::setup_on(clock.clone(), &env, json!({}), json!({})).await;
    let (st, c) = s
        .gw
        .admin(Method::POST, "/clients", Some(json!({"client_id": "app", "redirect_uris": [APP_CB], "grant_types": ["authorization_code", "refresh_token"]})))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{c}");
    let rp = Rp { secret: c["client_secret"].as_str().unwrap().to_string(), s };
    let short = crate::support::Gateway::start_with(
        rp.s.gw.dir.clone(),
        &[env[0], env[1], ("SSOGATE_SESSION__LIFETIME_SECONDS", "3600"), ("SSOGATE_SESSION__IDLE_SECONDS", "3600")],
        clock.clone(),
        None,
    )
    .await;
    let b = Browser::new();
    let code = rp.code_scoped(&b, "openid%20offline_access", "").await;
    let (st, t) = rp.exchange(&[("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", APP_CB)], Some(("app", &rp.secret))).await;
    assert_eq!(st, StatusCode::OK, "{t}");
    let r0 = t["refresh_token"].as_str().unwrap().to_string();
    let refresh_at = |base: String, token: String| {
        let secret = rp.secret.clone();
        async move {
            let r = reqwest::Client::new()
                .post(format!("{base}/token"))
                .basic_auth("app", Some(secret))
                .form(&[("grant_type", "refresh_token"), ("refresh_token", token.as_str())])
                .send()
                .await
                .unwrap();
            (r.status(), r.json::<Value>().await.unwrap())
        }
    };
    // The short-lived replica spends r0, and (50 minutes on, keeping the session in use) r1.
    let (st, t1) = refresh_at(short.base.clone(), r0.clone()).await;
    assert_eq!(st, StatusCode::OK, "{t1}");
    clock.advance(50 * 60 * 1000);
    let (st, t2) = refresh_at(short.base.clone(), t1["refresh_token"].as_str().unwrap().to_string()).await;
    assert_eq!(st, StatusCode::OK, "{t2}");
    let r2 = t2["refresh_token"].as_str().unwrap().to_string();
    // 100 minutes after r0 was spent (longer than the new lifetime, well within the
    // session's own end), a stolen copy of r0 is still a reuse: the family is revoked.
    clock.advance(50 * 60 * 1000);
    let (st, e) = refresh_at(rp.s.gw.base.clone(), r0).await;
    assert_eq!((st, e["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")), "{e}");
    let (st, e) = refresh_at(rp.s.gw.base.clone(), r2).await;
    assert_eq!((st, e["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")), "the reuse revoked the family: {e}");
    short.stop().await;
}
