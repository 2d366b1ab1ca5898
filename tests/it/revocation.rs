//! Live revocation on one gateway, through the real endpoints: what an admin changes —
//! a membership removed, a group deleted or renamed, a connection turned off or deleted —
//! binds sessions started before the change within a second, in `/auth` (the rules and
//! the app's bearer token), `/oauth2/userinfo` and the OpenID Provider's `/userinfo`.
//! (The same across replicas: `replicas.rs`.)

use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::login::{setup, Browser, Setup};

/// Asks `check` every 25 ms until it holds; fails after a second.
async fn within_a_second<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < Duration::from_secs(1), "{what}: not within a second");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn auth(s: &Setup, b: &Browser, query: &str) -> StatusCode {
    b.http.get(format!("{}/auth?{query}", s.gw.base)).send().await.unwrap().status()
}

async fn userinfo_groups(s: &Setup, b: &Browser) -> Vec<String> {
    let info: Value = b.http.get(format!("{}/oauth2/userinfo", s.gw.base)).send().await.unwrap().json().await.unwrap();
    serde_json::from_value(info["groups"].clone()).unwrap()
}

/// The groups in the bearer token `/auth` hands the app.
async fn token_groups(s: &Setup, b: &Browser) -> Vec<String> {
    let r = b.http.get(format!("{}/auth?set_authorization_header=true", s.gw.base)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let token = r.headers()["authorization"].to_str().unwrap().strip_prefix("Bearer ").unwrap().to_string();
    let claims: Value = serde_json::from_slice(&B64URL.decode(token.split('.').nth(1).unwrap()).unwrap()).unwrap();
    serde_json::from_value(claims["groups"].clone()).unwrap()
}

/// A gateway where alice is a manual member of `Ops` and logged in (in the returned
/// browser) after she joined it; gives her user id and the group's id.
async fn alice_in_ops() -> (Setup, Browser, String, String) {
    let s = setup(json!({}), json!({})).await;
    let (st, g) = s.gw.admin(Method::POST, "/groups", Some(json!({"name": "Ops"}))).await;
    assert_eq!(st, StatusCode::CREATED, "{g}");
    let gid = g["id"].as_str().unwrap().to_string();
    // A first login creates her; she joins Ops; the session under test starts after.
    let (_, st, _, body) = s.login("alice").await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let uid = s.users().await[0]["id"].as_str().unwrap().to_string();
    let (st, _) = s.gw.admin(Method::PUT, &format!("/groups/{gid}/members/{uid}"), None).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (b, st, _, body) = s.login("alice").await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(auth(&s, &b, "allowed_groups=ops").await, StatusCode::OK, "the session starts with Ops");
    assert_eq!(token_groups(&s, &b).await, ["Ops", "Users"]);
    (s, b, uid, gid)
}

#[tokio::test]
async fn a_removed_membership_refuses_live_sessions_within_a_second() {
    let (s, b, uid, gid) = alice_in_ops().await;
    let (st, _) = s.gw.admin(Method::DELETE, &format!("/groups/{gid}/members/{uid}"), None).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    within_a_second("/auth refuses the group she left", || async { auth(&s, &b, "allowed_groups=ops").await == StatusCode::FORBIDDEN }).await;
    assert_eq!(auth(&s, &b, "").await, StatusCode::OK, "she is still signed in");
    assert_eq!(userinfo_groups(&s, &b).await, ["Users"]);
    assert_eq!(token_groups(&s, &b).await, ["Users"], "the app's cached token is not handed out with the old groups");
    // Added back: that reaches the session too.
    let (st, _) = s.gw.admin(Method::PUT, &format!("/groups/{gid}/members/{uid}"), None).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    within_a_second("/auth lets her in again", || async { auth(&s, &b, "allowed_groups=ops").await == StatusCode::OK }).await;
}

#[tokio::test]
async fn a_deleted_group_refuses_live_sessions_within_a_second() {
    let (s, b, _, gid) = alice_in_ops().await;
    let (st, _) = s.gw.admin(Method::DELETE, &format!("/groups/{gid}"), None).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    within_a_second("/auth refuses the deleted group", || async { auth(&s, &b, "allowed_groups=ops").await == StatusCode::FORBIDDEN }).await;
    assert_eq!(userinfo_groups(&s, &b).await, ["Users"]);
    assert_eq!(token_groups(&s, &b).await, ["Users"]);
    // A group made again under the old name is a new group she is not in.
    let (st, _) = s.gw.admin(Method::POST, "/groups", Some(json!({"name": "Ops"}))).await;
    assert_eq!(st, StatusCode::CREATED);
    assert_eq!(auth(&s, &b, "allowed_groups=ops").await, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_renamed_group_is_what_auth_userinfo_and_the_op_see() {
    let (s, b, _, gid) = alice_in_ops().await;
    // An app of the gateway's OpenID Provider, signed in before the rename.
    let cb = "http://127.0.0.1:9/app/callback";
    let (st, c) = s.gw.admin(Method::POST, "/clients", Some(json!({"client_id": "app", "redirect_uris": [cb]}))).await;
    assert_eq!(st, StatusCode::CREATED, "{c}");
    let secret = c["client_secret"].as_str().unwrap().to_string();
    let enc: String = url::form_urlencoded::byte_serialize(cb.as_bytes()).collect();
    let r = b
        .http
        .get(format!("{}/authorize?client_id=app&response_type=code&scope=openid%20groups&redirect_uri={enc}&state=st&nonce=n", s.gw.base))
        .send()
        .await
        .unwrap();
    let loc = reqwest::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
    let code = loc.query_pairs().find(|(k, _)| k == "code").expect("a code for the signed-in browser").1.into_owned();
    let tokens: Value = reqwest::Client::new()
        .post(format!("{}/token", s.gw.base))
        .basic_auth("app", Some(&secret))
        .form(&[("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", cb)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access = tokens["access_token"].as_str().expect("an access token").to_string();
    let op_groups = || async {
        let info: Value = reqwest::Client::new().get(format!("{}/userinfo", s.gw.base)).bearer_auth(&access).send().await.unwrap().json().await.unwrap();
        serde_json::from_value::<Vec<String>>(info["groups"].clone()).unwrap()
    };
    assert_eq!(op_groups().await, ["Ops", "Users"]);

    let (st, g) = s.gw.admin(Method::PATCH, &format!("/groups/{gid}"), Some(json!({"name": "SRE"}))).await;
    assert_eq!(st, StatusCode::OK, "{g}");
    within_a_second("/auth knows the new name", || async { auth(&s, &b, "allowed_groups=sre").await == StatusCode::OK }).await;
    assert_eq!(auth(&s, &b, "allowed_groups=ops").await, StatusCode::FORBIDDEN, "and not the old one");
    let r = b.http.get(format!("{}/auth", s.gw.base)).send().await.unwrap();
    assert_eq!(r.headers()["x-auth-request-groups"], "SRE,Users");
    assert_eq!(userinfo_groups(&s, &b).await, ["SRE", "Users"]);
    assert_eq!(token_groups(&s, &b).await, ["SRE", "Users"]);
    assert_eq!(op_groups().await, ["SRE", "Users"], "the OpenID Provider's userinfo");
}

#[tokio::test]
async fn a_connection_turned_off_or_deleted_ends_its_sessions() {
    let s = setup(json!({}), json!({})).await;
    let (b, st, _, body) = s.login("alice").await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(auth(&s, &b, "").await, StatusCode::OK);
    let (st, _) = s.gw.admin(Method::POST, &format!("/connections/{}/deactivate", s.conn), None).await;
    assert_eq!(st, StatusCode::OK);
    within_a_second("/auth refuses a session of a connection turned off", || async { auth(&s, &b, "").await == StatusCode::UNAUTHORIZED }).await;
    assert_eq!(b.http.get(format!("{}/oauth2/userinfo", s.gw.base)).send().await.unwrap().status(), StatusCode::UNAUTHORIZED);

    // Turned off by an edit, the same.
    let (st, _) = s.gw.admin(Method::POST, &format!("/connections/{}/activate", s.conn), None).await;
    assert_eq!(st, StatusCode::OK);
    let (b, st, _, _) = s.login("alice").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(auth(&s, &b, "").await, StatusCode::OK);
    let (st, _) = s.gw.admin(Method::PATCH, &format!("/connections/{}", s.conn), Some(json!({"active": false}))).await;
    assert_eq!(st, StatusCode::OK);
    within_a_second("/auth refuses it after an edit turned it off", || async { auth(&s, &b, "").await == StatusCode::UNAUTHORIZED }).await;

    // Deleted.
    let (st, _) = s.gw.admin(Method::POST, &format!("/connections/{}/activate", s.conn), None).await;
    assert_eq!(st, StatusCode::OK);
    let (b, st, _, _) = s.login("alice").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(auth(&s, &b, "").await, StatusCode::OK);
    let (st, _) = s.gw.admin(Method::DELETE, &format!("/connections/{}", s.conn), None).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    within_a_second("/auth refuses a session of a deleted connection", || async { auth(&s, &b, "").await == StatusCode::UNAUTHORIZED }).await;
}
