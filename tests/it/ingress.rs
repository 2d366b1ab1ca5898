//! Ingress auth through the real endpoints: `/auth` answers 401 without a session, 200
//! with the identity headers, 403 (never 401) when a route's rules refuse; `/start`
//! refuses an off-site `rd` and returns to an allowed one after the login. The
//! oauth2-proxy paths answer the same.

use reqwest::StatusCode;
use serde_json::json;

use crate::login::{setup_with, Browser};

#[tokio::test]
async fn auth_and_start_for_an_ingress() {
    let s = setup_with(&[("SSOGATE_INGRESS__ALLOWED_DOMAINS", "app.example.test, .corp.example.test")], json!({}), json!({"group_sync": true})).await;
    s.gw.admin(reqwest::Method::POST, "/groups", Some(json!({"name": "Engineers"}))).await;
    let b = Browser::new();
    let get = |path: String| b.http.get(format!("{}{path}", s.gw.base)).send();
    assert_eq!(get("/auth".into()).await.unwrap().status(), StatusCode::UNAUTHORIZED);
    assert_eq!(get("/oauth2/auth".into()).await.unwrap().status(), StatusCode::UNAUTHORIZED);

    // An off-site rd: refused, nothing started.
    for rd in ["https://evil.example/", "//evil.example", "https://app.example.test.evil.example/", "https:evil.example"] {
        let enc: String = url::form_urlencoded::byte_serialize(rd.as_bytes()).collect();
        let r = get(format!("/start?rd={enc}")).await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{rd}");
        assert!(r.headers().get("set-cookie").is_none(), "{rd}: no flow started");
    }
    // An allowed rd goes to the login, which comes back to it.
    let rd = "https://app.example.test/page?x=1";
    let enc: String = url::form_urlencoded::byte_serialize(rd.as_bytes()).collect();
    let r = get(format!("/start?rd={enc}&connection={}", s.conn)).await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let login = r.headers()["location"].to_str().unwrap().to_string();
    assert!(login.starts_with(&format!("/login/{}?return_to=", s.conn)), "{login}");
    let mut url = format!("{}{login}&login_hint=alice", s.gw.base);
    let landed = loop {
        let r = b.http.get(&url).send().await.unwrap();
        assert!(r.status().is_redirection(), "{url}: {}", r.status());
        let next = reqwest::Url::parse(&url).unwrap().join(r.headers()["location"].to_str().unwrap()).unwrap().to_string();
        if next.starts_with("https://app.example.test") {
            break next;
        }
        url = next;
    };
    assert_eq!(landed, rd, "back at the page that asked");

    // Logged in: the identity headers; per-route rules.
    let r = get("/auth".into()).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["x-auth-request-email"], "alice@example.test");
    assert!(r.headers()["x-auth-request-groups"].to_str().unwrap().contains("Engineers"));
    assert!(r.headers()["x-auth-request-user"].to_str().unwrap().starts_with("usr_"));
    for (q, want) in [
        ("allowed_groups=engineers", StatusCode::OK),
        ("allowed_groups=admins", StatusCode::FORBIDDEN),
        ("allowed_emails=alice@example.test", StatusCode::OK),
        ("allowed_emails=bob@example.test", StatusCode::FORBIDDEN),
        (&format!("allowed_connections={}", s.conn), StatusCode::OK),
        ("allowed_connections=con_other", StatusCode::FORBIDDEN),
    ] {
        assert_eq!(get(format!("/auth?{q}")).await.unwrap().status(), want, "{q}");
    }
    assert_eq!(get("/oauth2/auth?allowed_groups=admins".into()).await.unwrap().status(), StatusCode::FORBIDDEN);
    // With a session, /start goes straight back.
    let r = get(format!("/start?rd={enc}")).await.unwrap();
    assert_eq!(r.headers()["location"], rd);
    // oauth2-proxy's userinfo and sign-in paths.
    let info: serde_json::Value = get("/oauth2/userinfo".into()).await.unwrap().json().await.unwrap();
    assert_eq!(info["email"], "alice@example.test");
    assert!(get("/oauth2/sign_in".into()).await.unwrap().text().await.unwrap().contains("Sign in with Node IdP"));
    // Sign-out: an off-site rd is refused and ends nothing; an allowed one ends the session.
    let r = get("/oauth2/sign_out?rd=https%3A%2F%2Fevil.example%2F".into()).await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(get("/auth".into()).await.unwrap().status(), StatusCode::OK, "still signed in");
    let r = get(format!("/oauth2/sign_out?rd={enc}")).await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], rd);
    assert_eq!(get("/auth".into()).await.unwrap().status(), StatusCode::UNAUTHORIZED);
    assert_eq!(get("/oauth2/userinfo".into()).await.unwrap().status(), StatusCode::UNAUTHORIZED);
}
