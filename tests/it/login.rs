//! OIDC login end to end against a real IdP (panva's oidc-provider): PKCE S256, plain
//! and none; claims from the ID token and from userinfo; JIT creation on and off;
//! invitations; unverified emails; group sync adding and removing while manual
//! memberships stay; state checks; logout.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::peers::{oidc_provider, Peer};
use crate::support::{Gateway, TOKEN};

/// A browser: its own cookie jar, redirects followed by hand so each hop is visible.
pub struct Browser {
    pub http: reqwest::Client,
}

impl Browser {
    pub fn new() -> Self {
        let http = reqwest::Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build().unwrap();
        Self { http }
    }

    /// GETs `url` and follows redirects until a non-redirect answer; returns it and its URL.
    pub async fn visit(&self, url: &str) -> (reqwest::Response, String) {
        let mut url = url.to_string();
        for _ in 0..15 {
            let resp = self.http.get(&url).send().await.unwrap();
            if !resp.status().is_redirection() {
                return (resp, url);
            }
            let loc = resp.headers()["location"].to_str().unwrap().to_string();
            url = reqwest::Url::parse(&url).unwrap().join(&loc).unwrap().to_string();
        }
        panic!("too many redirects at {url}");
    }
}

pub struct Setup {
    pub gw: Gateway,
    pub idp: Peer,
    _dir: tempfile::TempDir,
    pub conn: String,
}

/// A gateway and an IdP that knows it, with connection `conn` made from `patch`.
pub async fn setup(idp_extra: Value, conn_patch: Value) -> Setup {
    setup_with(&[], idp_extra, conn_patch).await
}

/// [`setup`] with extra gateway settings.
pub async fn setup_with(env: &[(&str, &str)], idp_extra: Value, conn_patch: Value) -> Setup {
    setup_on(ssogate::clock::Clock::system(), env, idp_extra, conn_patch).await
}

/// [`setup_with`] on `clock` (pin it to test expiry).
pub async fn setup_on(clock: ssogate::clock::Clock, env: &[(&str, &str)], idp_extra: Value, conn_patch: Value) -> Setup {
    let mut env = env.to_vec();
    env.push(("SSOGATE_LOGIN__JWKS_MIN_REFETCH_SECONDS", "0"));
    let gw = Gateway::start_with(std::sync::Arc::new(tempfile::tempdir().unwrap()), &env, clock, None).await;
    setup_gateway(gw, idp_extra, conn_patch).await
}

/// [`setup`] on a gateway whose state `adjust` changes before it serves.
pub async fn setup_adjusted(idp_extra: Value, conn_patch: Value, adjust: impl FnOnce(&mut ssogate::app::App)) -> Setup {
    let gw = Gateway::start_adjusted(&[("SSOGATE_LOGIN__JWKS_MIN_REFETCH_SECONDS", "0")], adjust).await;
    setup_gateway(gw, idp_extra, conn_patch).await
}

/// A connection `con_node` on `gw` and an oidc-provider that knows it.
async fn setup_gateway(gw: Gateway, idp_extra: Value, conn_patch: Value) -> Setup {
    let conn = "con_node".to_string();
    let mut config = json!({
        "clients": [{"client_id": "gateway", "client_secret": "gateway-secret-0123456789",
                     "redirect_uris": [format!("{}/oidc/{conn}/callback", gw.base)], "token_endpoint_auth_method": "client_secret_basic",
                     // The ID token says when the user authenticated (OIDC auth_time).
                     "require_auth_time": true}],
        "accounts": {
            "alice": {"email": "alice@example.test", "email_verified": true, "name": "Alice Example", "groups": ["engineers", "staff"]},
            "bob": {"email": "bob@example.test", "email_verified": false, "name": "Bob Example", "groups": []}
        },
        "pkce_methods": ["S256", "plain"],
        "pkce_required": false
    });
    if let Value::Object(extra) = idp_extra {
        for (k, v) in extra {
            config[k] = v;
        }
    }
    let (idp, dir) = oidc_provider(&config);
    let issuer = idp.ready["issuer"].as_str().unwrap().to_string();
    let mut body = json!({"id": conn, "display_name": "Node IdP", "protocol": "oidc", "create_users": true,
        "oidc": {"issuer": issuer, "client_id": "gateway", "client_secret": "gateway-secret-0123456789"}});
    merge(&mut body, conn_patch);
    let (s, c) = gw.admin(Method::POST, "/connections", Some(body)).await;
    assert_eq!(s, StatusCode::CREATED, "{c}");
    Setup { gw, idp, _dir: dir, conn }
}

fn merge(a: &mut Value, b: Value) {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (a, b) => *a = b,
    }
}

impl Setup {
    /// Logs `account` in through the gateway with a fresh browser.
    pub async fn login(&self, account: &str) -> (Browser, StatusCode, String, String) {
        let b = Browser::new();
        let (resp, url) = b.visit(&format!("{}/login/{}?login_hint={account}", self.gw.base, self.conn)).await;
        let status = resp.status();
        let body = resp.text().await.unwrap();
        (b, status, url, body)
    }

    pub async fn set_account(&self, account: &str, claims: Value) {
        let r = reqwest::Client::new()
            .post(format!("{}/__test/accounts/{account}", self.idp.ready["issuer"].as_str().unwrap()))
            .json(&claims)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }

    pub async fn users(&self) -> Vec<Value> {
        self.gw.admin(Method::GET, "/users", None).await.1.as_array().unwrap().clone()
    }
}

fn groups_of(user: &Value) -> Vec<(String, Vec<String>)> {
    user["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| (g["name"].as_str().unwrap().to_string(), serde_json::from_value(g["sources"].clone()).unwrap()))
        .collect()
}

#[tokio::test]
async fn login_creates_the_user_syncs_groups_and_keeps_manual_memberships() {
    let s = setup(json!({}), json!({"group_sync": true})).await;
    for name in ["Engineers", "Staff", "Ops"] {
        s.gw.admin(Method::POST, "/groups", Some(json!({"name": name}))).await;
    }
    let (browser, status, url, body) = s.login("alice").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(url, format!("{}/", s.gw.base));
    assert!(body.contains("alice@example.test"), "{body}");
    let users = s.users().await;
    assert_eq!(users.len(), 1);
    let alice = &users[0];
    assert_eq!(alice["links"][0]["connection_id"], s.conn);
    assert_eq!(alice["links"][0]["subject"], "alice");
    let c = format!("connection:{}", s.conn);
    let g = groups_of(alice);
    assert!(g.contains(&("Engineers".into(), vec![c.clone()])) && g.contains(&("Staff".into(), vec![c.clone()])), "{g:?}");

    // A manual grant of a group the IdP also asserts, and one it does not.
    let uid = alice["id"].as_str().unwrap();
    s.gw.admin(Method::PUT, &format!("/groups/grp_admins/members/{uid}"), None).await;
    let staff =
        s.gw.admin(Method::GET, "/groups", None).await.1.as_array().unwrap().iter().find(|g| g["name"] == "Staff").unwrap()["id"].as_str().unwrap().to_string();
    s.gw.admin(Method::PUT, &format!("/groups/{staff}/members/{uid}"), None).await;

    // The IdP drops both groups: sync removes its own grants only.
    // "admins" is asserted too: built-in groups are never granted by an IdP.
    s.set_account("alice", json!({"email": "alice@example.test", "email_verified": true, "groups": ["ops", "admins"]})).await;
    let (_, status, _, body) = s.login("alice").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, alice) = s.gw.admin(Method::GET, &format!("/users/{uid}"), None).await;
    let mut g = groups_of(&alice);
    g.sort();
    assert_eq!(
        g,
        vec![("Admins".into(), vec!["manual".into()]), ("Ops".into(), vec![c.clone()]), ("Staff".into(), vec!["manual".into()]), ("Users".into(), vec![]),],
        "Engineers removed; Ops added; Staff stays by its manual grant; Admins only by hand"
    );
    let (_, audit) = s.gw.admin(Method::GET, "/audit?limit=1000", None).await;
    let by_conn: Vec<&str> = audit.as_array().unwrap().iter().filter(|a| a["actor"] == c.as_str()).map(|a| a["action"].as_str().unwrap()).collect();
    for a in ["user.create", "link.create", "membership.add", "membership.remove"] {
        assert!(by_conn.contains(&a), "{a} audited by the connection: {by_conn:?}");
    }
    // The session: the home page knows the user; logout ends it.
    let (resp, _) = browser.visit(&format!("{}/", s.gw.base)).await;
    assert!(resp.text().await.unwrap().contains("Signed in"));
    let r = browser.http.post(format!("{}/logout", s.gw.base)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let (_, url) = browser.visit(&format!("{}/", s.gw.base)).await;
    assert_eq!(url, format!("{}/login", s.gw.base), "after logout the session is gone");
}

#[tokio::test]
async fn pkce_plain_and_none_and_claims_from_userinfo() {
    for (method, in_id_token) in [("plain", true), ("none", true), ("S256", false)] {
        // The IdP requires PKCE whenever the connection uses it, so ignoring the setting fails.
        let idp = json!({"claims_in_id_token": in_id_token, "pkce_required": method != "none"});
        let s = setup(idp, json!({"oidc": {"code_challenge_method": method, "userinfo_from_id_token": in_id_token}})).await;
        let r = Browser::new().http.get(format!("{}/login/{}", s.gw.base, s.conn)).send().await.unwrap();
        let authorize = reqwest::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
        let sent: std::collections::HashMap<_, _> = authorize.query_pairs().into_owned().collect();
        match method {
            "none" => assert!(!sent.contains_key("code_challenge"), "no PKCE when the method is none"),
            m => assert_eq!(sent.get("code_challenge_method").map(String::as_str), Some(m)),
        }
        let (_, status, _, body) = s.login("alice").await;
        assert_eq!(status, StatusCode::OK, "PKCE {method}: {body}");
        let users = s.users().await;
        assert_eq!(users[0]["email"], "alice@example.test", "PKCE {method}, claims from id token: {in_id_token}");
    }
}

#[tokio::test]
async fn without_jit_only_existing_or_invited_users_log_in() {
    let s = setup(json!({}), json!({"create_users": false})).await;
    let (_, status, _, body) = s.login("alice").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("ask an administrator to invite you") && body.contains("Request id"), "{body}");
    assert!(s.users().await.is_empty(), "a refused login creates no user");

    let (st, inv) = s.gw.admin(Method::POST, "/invitations", Some(json!({"email": "ALICE@example.test", "groups": ["grp_queue_admins"]}))).await;
    assert_eq!(st, StatusCode::CREATED);
    let (_, status, _, body) = s.login("alice").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let users = s.users().await;
    assert_eq!(users.len(), 1);
    assert_eq!(users[0]["id"], inv["user_id"], "the invited user is the one who logged in");
    assert_eq!(users[0]["status"], "active");
    assert_eq!(users[0]["links"][0]["subject"], "alice");
}

#[tokio::test]
async fn unverified_email_is_refused_and_creates_nothing() {
    let s = setup(json!({}), json!({})).await;
    let (_, status, _, body) = s.login("bob").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("did not confirm your email"), "{body}");
    assert!(s.users().await.is_empty());
    // With verification off, bob gets in, but his unverified email claims no account.
    let (st, _) = s.gw.admin(Method::POST, "/users", Some(json!({"username": "bob-existing", "email": "bob@example.test"}))).await;
    assert_eq!(st, StatusCode::CREATED);
    s.gw.admin(Method::PATCH, &format!("/connections/{}", s.conn), Some(json!({"oidc": {"email_verification": false}}))).await;
    let (_, status, _, body) = s.login("bob").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let users = s.users().await;
    assert_eq!(users.len(), 2, "a new user, not the existing one with the same unverified email");
    let new = users.iter().find(|u| u["username"] != "bob-existing").unwrap();
    assert_eq!(new["email"], Value::Null);
}

#[tokio::test]
async fn state_must_exist_be_single_use_and_belong_to_this_browser() {
    let s = setup(json!({}), json!({})).await;
    let cb = format!("{}/oidc/{}/callback", s.gw.base, s.conn);
    let b = Browser::new();
    let (r, _) = b.visit(&format!("{cb}?code=x")).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let (r, _) = b.visit(&format!("{cb}?code=x&state=unknown")).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("expired or was already used"));

    // A real flow's callback URL, replayed: first in another browser, then again here.
    let start = b.http.get(format!("{}/login/{}?login_hint=alice", s.gw.base, s.conn)).send().await.unwrap();
    let authorize = start.headers()["location"].to_str().unwrap().to_string();
    let mut url = authorize.clone();
    let callback = loop {
        let r = b.http.get(&url).send().await.unwrap();
        let loc = reqwest::Url::parse(&url).unwrap().join(r.headers()["location"].to_str().unwrap()).unwrap().to_string();
        if loc.starts_with(&cb) {
            break loc;
        }
        url = loc;
    };
    let other = Browser::new();
    let (r, _) = other.visit(&callback).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("another browser"));
    let (r, _) = b.visit(&callback).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST, "the state was consumed by the first attempt");
    assert!(s.users().await.is_empty());

    // The IdP's error= is shown, and nothing is created. (oidc-provider's discovery says it
    // sends `iss` with every authorization response, errors included: RFC 9207.)
    let start = b.http.get(format!("{}/login/{}", s.gw.base, s.conn)).send().await.unwrap();
    let loc = reqwest::Url::parse(start.headers()["location"].to_str().unwrap()).unwrap();
    let state = loc.query_pairs().find(|(k, _)| k == "state").unwrap().1.to_string();
    let iss: String = url::form_urlencoded::byte_serialize(s.idp.ready["issuer"].as_str().unwrap().as_bytes()).collect();
    let (r, _) = b.visit(&format!("{cb}?state={state}&iss={iss}&error=access_denied&error_description=User+cancelled")).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let body = r.text().await.unwrap();
    assert!(body.contains("access_denied") && body.contains("User cancelled"), "{body}");
    assert!(s.users().await.is_empty());
    let _ = TOKEN;
}

#[tokio::test]
async fn login_page_lists_active_connections_escaped_and_keeps_return_to() {
    let gw = Gateway::start().await;
    let mut body = crate::support::oidc_body("<b>Corp</b> & Co");
    body["id"] = json!("con_page");
    gw.admin(Method::POST, "/connections", Some(body)).await;
    let mut off = crate::support::oidc_body("Hidden IdP");
    off["active"] = json!(false);
    gw.admin(Method::POST, "/connections", Some(off)).await;
    let page = gw.request(Method::GET, "/login?return_to=/authorize%3Fclient_id%3Dapp").send().await.unwrap().text().await.unwrap();
    assert!(page.contains("Sign in with &#60;b&#62;Corp&#60;/b&#62; &#38; Co"), "{page}");
    assert!(!page.contains("<b>Corp</b>"), "names are escaped");
    assert!(!page.contains("Hidden IdP"), "inactive connections are not shown");
    assert!(page.contains("/login/con_page?return_to=%2Fauthorize%3Fclient_id%3Dapp"), "{page}");
    // An off-site return_to is dropped, not passed on.
    let page = gw.request(Method::GET, "/login?return_to=//evil.example").send().await.unwrap().text().await.unwrap();
    assert!(!page.contains("evil"), "{page}");
    // An inactive connection cannot start a login.
    let (_, list) = gw.admin(Method::GET, "/connections", None).await;
    let hidden = list.as_array().unwrap().iter().find(|c| c["display_name"] == "Hidden IdP").unwrap()["id"].as_str().unwrap().to_string();
    let r = gw.request(Method::GET, &format!("/login/{hidden}")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

/// Issue #10, 5: the IdP puts every claim but `sub` in userinfo only, and the connection
/// reads the ID token (the `custom` preset's default). Userinfo is read whenever the IdP
/// has one; an absent groups claim changes no membership, a present empty one removes
/// this connection's grants; a refusal for a missing claim names it and where it looked.
#[tokio::test]
async fn claims_only_in_userinfo_are_read_and_an_absent_groups_claim_keeps_groups() {
    let s = setup(json!({"claims_in_id_token": false}), json!({"group_sync": true})).await;
    for name in ["Engineers", "Staff"] {
        s.gw.admin(Method::POST, "/groups", Some(json!({"name": name}))).await;
    }
    let (_, status, _, body) = s.login("alice").await;
    assert_eq!(status, StatusCode::OK, "userinfo vouches for the email: {body}");
    let c = format!("connection:{}", s.conn);
    let synced = vec![("Engineers".to_string(), vec![c.clone()]), ("Staff".into(), vec![c.clone()]), ("Users".into(), vec![])];
    let users = s.users().await;
    assert_eq!(users[0]["email"], "alice@example.test");
    let uid = users[0]["id"].as_str().unwrap().to_string();
    let groups = || async {
        let mut g = groups_of(&s.gw.admin(Method::GET, &format!("/users/{uid}"), None).await.1);
        g.sort();
        g
    };
    assert_eq!(groups().await, synced, "groups from userinfo");

    // No groups claim at all: nothing changes.
    s.set_account("alice", json!({"email": "alice@example.test", "email_verified": true})).await;
    let (_, status, _, body) = s.login("alice").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(groups().await, synced, "an absent groups claim is not an empty one");

    // A present, empty one: this connection's grants go.
    s.set_account("alice", json!({"email": "alice@example.test", "email_verified": true, "groups": []})).await;
    let (_, status, _, body) = s.login("alice").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(groups().await, vec![("Users".to_string(), vec![])]);

    // No email_verified anywhere: the refusal names the claim and both places looked in.
    s.set_account("alice", json!({"email": "alice@example.test"})).await;
    let (_, status, _, body) = s.login("alice").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("email_verified") && body.contains("ID token") && body.contains("userinfo"), "{body}");

    // The user id mapped from a claim neither source has.
    s.gw.admin(Method::PATCH, &format!("/connections/{}", s.conn), Some(json!({"claims": {"user_id": "oid"}}))).await;
    let (_, status, _, body) = s.login("alice").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("oid claim") && body.contains("ID token") && body.contains("userinfo"), "{body}");
}

/// Issue #10, 8: given and family name and picture are stored; what the IdP sends is
/// refreshed at every login (audited); an email another user has is not taken over; an
/// email that is not an address is dropped (logged), not a failed login.
#[tokio::test]
async fn profiles_are_stored_refreshed_at_each_login_and_audited() {
    let s = setup(json!({}), json!({})).await;
    let alice = |email: &str, family: &str, picture: &str| json!({"email": email, "email_verified": true, "name": format!("Alice {family}"), "given_name": "Alice", "family_name": family, "picture": picture});
    s.set_account("alice", alice("alice@example.test", "Example", "https://pics.example/a.png")).await;
    let (_, status, _, body) = s.login("alice").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let uid = s.users().await[0]["id"].as_str().unwrap().to_string();
    let user = || async { s.gw.admin(Method::GET, &format!("/users/{uid}"), None).await.1 };
    let u = user().await;
    let fields = |u: &Value| ["email", "name", "given_name", "family_name", "picture"].map(|f| u[f].as_str().unwrap_or("-").to_string());
    assert_eq!(fields(&u), ["alice@example.test", "Alice Example", "Alice", "Example", "https://pics.example/a.png"]);

    s.set_account("alice", alice("alice.new@example.test", "Newname", "https://pics.example/b.png")).await;
    let (_, status, _, body) = s.login("alice").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(fields(&user().await), ["alice.new@example.test", "Alice Newname", "Alice", "Newname", "https://pics.example/b.png"]);
    let (_, audit) = s.gw.admin(Method::GET, "/audit?limit=1000", None).await;
    let update = audit.as_array().unwrap().iter().find(|a| a["action"] == "user.update" && a["target"] == uid.as_str()).expect("the refresh is audited");
    assert_eq!(update["actor"], format!("connection:{}", s.conn));
    assert_eq!(update["detail"]["fields"], json!(["email", "name", "family_name", "picture"]), "{update}");

    // Another user's address is not taken over; the rest still refreshes.
    s.gw.admin(Method::POST, "/users", Some(json!({"username": "other", "email": "taken@example.test"}))).await;
    s.set_account("alice", alice("taken@example.test", "Third", "https://pics.example/b.png")).await;
    let (_, status, _, body) = s.login("alice").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(fields(&user().await), ["alice.new@example.test", "Alice Third", "Alice", "Third", "https://pics.example/b.png"]);

    // Not an address: dropped, and the login goes on.
    s.set_account("carol", json!({"email": "carol@@example.test", "email_verified": true, "name": "Carol"})).await;
    let (_, status, _, body) = s.login("carol").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let carol = s.users().await.into_iter().find(|u| u["links"][0]["subject"] == "carol").unwrap();
    assert_eq!((&carol["email"], &carol["username"]), (&Value::Null, &json!("carol")), "{carol}");
}
