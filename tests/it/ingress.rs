//! Ingress auth through the real endpoints: `/auth` answers 401 without a session, 200
//! with the identity headers, 403 (never 401) when a route's rules refuse; `/start`
//! refuses an off-site `rd` and returns to an allowed one after the login. The
//! oauth2-proxy paths answer the same. Then, on a pinned clock: idle and absolute
//! expiry in `/auth`, the redirect mode and the original URL from each proxy's headers,
//! the bearer token for the app, and the session cookie's domain.

use reqwest::{Method, StatusCode};
use serde_json::json;
use ssogate::clock::Clock;
use ssogate::state::Session;
use ssogate::token::jws;

use crate::login::{setup_with, Browser};
use crate::support::Gateway;

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
    let r = b.http.get(format!("{}/oauth2/sign_out?rd={enc}", s.gw.base)).header("sec-fetch-site", "same-origin").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], rd);
    assert_eq!(get("/auth".into()).await.unwrap().status(), StatusCode::UNAUTHORIZED);
    assert_eq!(get("/oauth2/userinfo".into()).await.unwrap().status(), StatusCode::UNAUTHORIZED);
}

/// A gateway on a pinned clock with one session made directly in its store (the login
/// itself is tested above); returns the gateway and the session's cookie header.
pub async fn gateway_with_session(extra: &[(&str, &str)], groups: &[&str]) -> (Gateway, Clock, String, String) {
    let clock = Clock::fixed(chrono::Utc::now().timestamp_millis());
    let mut env = vec![("SSOGATE_SESSION__LIFETIME_SECONDS", "600"), ("SSOGATE_SESSION__IDLE_SECONDS", "120")];
    env.extend_from_slice(extra);
    let gw = Gateway::start_with(std::sync::Arc::new(tempfile::tempdir().unwrap()), &env, clock.clone(), None).await;
    let id = new_session(&gw, &clock, groups).await;
    (gw, clock, format!("ssogate_session={id}"), id)
}

pub async fn new_session(gw: &Gateway, clock: &Clock, groups: &[&str]) -> String {
    let now = clock.now();
    let cfg = &gw.app.config.session;
    let s = Session {
        id: ssogate::id::token(32),
        user_id: "usr_alice".into(),
        connection_id: "con_node".into(),
        username: "alice".into(),
        email: Some("alice@example.test".into()),
        email_verified: true,
        name: Some("Alice Example".into()),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        created_at: now,
        expires_at: now + cfg.lifetime_seconds as i64 * 1000,
        idle_timeout_ms: cfg.idle_seconds as i64 * 1000,
        last_seen: now,
        profile: Default::default(),
        upstream_token: None,
        auth_time: None,
    };
    gw.app.sessions.create(&s).await.unwrap();
    s.id
}

pub fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

pub async fn auth(gw: &Gateway, path: &str, cookie: Option<&str>, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut r = no_redirects().get(format!("{}{path}", gw.base));
    if let Some(c) = cookie {
        r = r.header("cookie", c);
    }
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.send().await.unwrap()
}

#[tokio::test]
async fn auth_enforces_idle_and_absolute_expiry() {
    let (gw, clock, cookie, _) = gateway_with_session(&[], &["Engineers"]).await;
    assert_eq!(auth(&gw, "/auth", Some(&cookie), &[]).await.status(), StatusCode::OK);
    // Used every 100 s (idle limit 120 s): alive until the absolute limit (600 s)...
    for _ in 0..5 {
        clock.advance(100_000);
        assert_eq!(auth(&gw, "/oauth2/auth", Some(&cookie), &[]).await.status(), StatusCode::OK);
    }
    clock.advance(99_000);
    assert_eq!(auth(&gw, "/auth", Some(&cookie), &[]).await.status(), StatusCode::OK, "599 s after login");
    clock.advance(1_000);
    assert_eq!(auth(&gw, "/auth", Some(&cookie), &[]).await.status(), StatusCode::UNAUTHORIZED, "600 s: absolute expiry, however recent the last use");
    // ...and a session left alone ends after the idle limit.
    let id = new_session(&gw, &clock, &[]).await;
    let cookie = format!("ssogate_session={id}");
    clock.advance(119_000);
    assert_eq!(auth(&gw, "/auth", Some(&cookie), &[]).await.status(), StatusCode::OK);
    clock.advance(120_000);
    assert_eq!(auth(&gw, "/auth", Some(&cookie), &[]).await.status(), StatusCode::UNAUTHORIZED, "idle for 120 s");
    assert_eq!(auth(&gw, "/auth", Some(&cookie), &[]).await.status(), StatusCode::UNAUTHORIZED, "and it stays ended");
}

/// The check is answered before the router: the same answers for HEAD, for a slip in
/// the query (refused, naming it), for rules in any case, and for methods it does not take.
#[tokio::test]
async fn auth_reads_its_query_strictly_and_answers_head() {
    let (gw, _clock, cookie, _) = gateway_with_session(&[], &["Engineers", "Ärzte"]).await;
    let head = no_redirects().head(format!("{}/auth", gw.base)).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    assert!(head.headers().contains_key("x-auth-request-user"));
    let head = no_redirects().head(format!("{}/oauth2/auth", gw.base)).send().await.unwrap();
    assert_eq!(head.status(), StatusCode::UNAUTHORIZED);
    // The query is the route's rule: a slip in it is a 400 naming it, never an open route.
    for (q, says) in [("allowed-groups=admins", "unknown parameter `allowed-groups`"), ("allowed_groups=", "`allowed_groups` is empty")] {
        let r = auth(&gw, &format!("/auth?{q}"), Some(&cookie), &[]).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{q}");
        assert!(r.text().await.unwrap().contains(says), "{q}");
    }
    assert_eq!(auth(&gw, "/auth?allowed_groups=%C3%84RZTE", Some(&cookie), &[]).await.status(), StatusCode::OK, "Unicode case");
    assert_eq!(auth(&gw, "/auth?allowed_groups=%20admins%20,%20engineers", Some(&cookie), &[]).await.status(), StatusCode::OK);
    assert_eq!(auth(&gw, "/auth?allowed_groups=arzte", Some(&cookie), &[]).await.status(), StatusCode::FORBIDDEN, "no folding of accents");
    let r = auth(&gw, "/oauth2/auth?allowed_groups=admins&allowed_groups=engineers", Some(&cookie), &[]).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("`allowed_groups` is given twice"));
    let r = no_redirects().post(format!("{}/auth", gw.base)).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn auth_redirect_mode_reads_the_original_url_and_validates_it() {
    let allowed = [("SSOGATE_INGRESS__ALLOWED_DOMAINS", "app.example.test")];
    let (gw, _clock, cookie, _) = gateway_with_session(&allowed, &["Engineers"]).await;
    let traefik = [("x-forwarded-proto", "https"), ("x-forwarded-host", "app.example.test"), ("x-forwarded-uri", "/p?q=1"), ("accept", "text/html")];
    // Without redirect=1 it is always a bare 401, whatever the browser accepts (nginx needs it).
    let r = auth(&gw, "/auth", None, &traefik).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers().get("location").is_none());
    // Traefik forwardAuth hands our answer to the browser: a redirect to the sign-in.
    let start = format!("{}/start?rd=", gw.app.config.public_base());
    for path in ["/auth?redirect=1", "/oauth2/auth?redirect=true&allowed_groups=engineers"] {
        let r = auth(&gw, path, None, &traefik).await;
        assert_eq!(r.status(), StatusCode::FOUND, "{path}");
        assert_eq!(r.headers()["location"], format!("{start}https%3A%2F%2Fapp.example.test%2Fp%3Fq%3D1"));
    }
    let r = auth(&gw, "/auth?redirect=1", None, &[("x-original-url", "https://app.example.test/x")]).await;
    assert_eq!(r.headers()["location"], format!("{start}https%3A%2F%2Fapp.example.test%2Fx"));
    // No original URL: the sign-in without a return target.
    let r = auth(&gw, "/auth?redirect=1", None, &[]).await;
    assert_eq!(r.headers()["location"], format!("{}/start", gw.app.config.public_base()));
    // A URL from headers that the validator refuses is never put in a Location.
    for h in [
        [("x-original-url", "https://evil.example/"), ("", "")],
        [("x-original-url", "//evil.example/"), ("", "")],
        [("x-original-url", "https://app.example.test@evil.example/"), ("", "")],
        [("x-forwarded-host", "app.example.test.evil.example"), ("x-forwarded-uri", "/")],
        [("x-forwarded-host", "app.example.test:444"), ("x-forwarded-uri", "/")],
        [("x-forwarded-host", "app.example.test"), ("x-forwarded-uri", "/a b")],
    ] {
        let h: Vec<(&str, &str)> = h.into_iter().filter(|(k, _)| !k.is_empty()).collect();
        let r = auth(&gw, "/auth?redirect=1", None, &h).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{h:?}");
        assert!(r.headers().get("location").is_none(), "{h:?}");
    }
    // Logged in: redirect=1 changes nothing; rules still answer 403.
    let r = auth(&gw, "/auth?redirect=1", Some(&cookie), &traefik).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["x-auth-request-groups"], "Engineers");
    assert_eq!(auth(&gw, "/auth?redirect=1&allowed_groups=admins", Some(&cookie), &traefik).await.status(), StatusCode::FORBIDDEN);
    // Envoy ext_authz (path_prefix /auth): the query is the rules, as on /auth; the
    // original URL is Host and the path.
    let envoy = [("host", "app.example.test"), ("x-forwarded-proto", "https")];
    assert_eq!(auth(&gw, "/auth/p/q?allowed_groups=admins", Some(&cookie), &envoy).await.status(), StatusCode::FORBIDDEN);
    assert_eq!(auth(&gw, "/auth/p/q", None, &envoy).await.status(), StatusCode::UNAUTHORIZED);
    let r = auth(&gw, "/auth/p/q?redirect=1", None, &envoy).await;
    assert_eq!(r.status(), StatusCode::FOUND);
    assert_eq!(r.headers()["location"], format!("{start}https%3A%2F%2Fapp.example.test%2Fp%2Fq"));
}

#[tokio::test]
async fn auth_gives_the_app_a_short_lived_signed_token_cached_per_session() {
    let (gw, clock, cookie, id) = gateway_with_session(&[], &["Engineers", "Staff"]).await;
    let r = auth(&gw, "/auth", Some(&cookie), &[]).await;
    assert!(r.headers().get("authorization").is_none(), "only when asked");
    let token_of = |r: &reqwest::Response| r.headers()["authorization"].to_str().unwrap().strip_prefix("Bearer ").unwrap().to_string();
    let r = auth(&gw, "/oauth2/auth?set_authorization_header=true", Some(&cookie), &[]).await;
    assert_eq!(r.status(), StatusCode::OK);
    let token = token_of(&r);
    assert!(!token.contains(&id), "the session id (the cookie value) is never handed out");

    let jwks: serde_json::Value = gw.request(Method::GET, "/jwks.json").send().await.unwrap().json().await.unwrap();
    let parsed = jws::parse(&token).unwrap();
    let jwk = jwks["keys"].as_array().unwrap().iter().find(|k| k["kid"].as_str() == parsed.header.kid.as_deref()).unwrap();
    jws::verify(&parsed, &jws::public_key(jwk).unwrap()).unwrap();
    let c = &parsed.claims;
    assert_eq!(c["iss"], gw.app.config.public_base());
    assert_eq!(c["aud"], "ingress");
    assert_eq!(c["sub"], "usr_alice");
    assert_eq!(c["email"], "alice@example.test");
    assert_eq!(c["groups"], json!(["Engineers", "Staff"]));
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 300, "five minutes");
    assert!(!c["sid"].as_str().unwrap().contains(&id));
    assert!(!c.to_string().contains(&id));

    // Cached: the same token until a minute before it expires, then a fresh one.
    // (Steps under the 120 s idle limit.)
    for step in [100_000, 100_000, 39_000] {
        clock.advance(step);
        assert_eq!(token_of(&auth(&gw, "/auth?set_authorization_header=1", Some(&cookie), &[]).await), token);
    }
    clock.advance(2_000);
    let fresh = token_of(&auth(&gw, "/auth?set_authorization_header=1", Some(&cookie), &[]).await);
    assert_ne!(fresh, token);
    assert!(jws::parse(&fresh).unwrap().claims["exp"].as_i64().unwrap() > c["exp"].as_i64().unwrap());
    // Ended session: no token.
    gw.request(Method::GET, "/oauth2/sign_out").header("cookie", &cookie).header("sec-fetch-site", "same-origin").send().await.unwrap();
    assert_eq!(auth(&gw, "/auth?set_authorization_header=1", Some(&cookie), &[]).await.status(), StatusCode::UNAUTHORIZED);

    // Configured for every route.
    let (gw, _clock, cookie, _) =
        gateway_with_session(&[("SSOGATE_INGRESS__SET_AUTHORIZATION_HEADER", "true"), ("SSOGATE_INGRESS__TOKEN_AUDIENCE", "apps")], &[]).await;
    let r = auth(&gw, "/auth", Some(&cookie), &[]).await;
    assert_eq!(jws::parse(&token_of(&r)).unwrap().claims["aud"], "apps");
}

#[tokio::test]
async fn sign_out_clears_the_cookie_on_its_domain_and_this_host() {
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let gw = Gateway::start_with(dir, &[("SSOGATE_SESSION__COOKIE_DOMAIN", "example.test")], Clock::system(), Some("sso.example.test")).await;
    let r = no_redirects().get(format!("{}/oauth2/sign_out", gw.base)).send().await.unwrap();
    let cookies: Vec<&str> = r.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap()).collect();
    assert!(cookies.iter().any(|c| c.starts_with("ssogate_session=;") && c.contains("Max-Age=0") && c.contains("Domain=example.test")), "{cookies:?}");
    assert!(cookies.iter().any(|c| c.starts_with("ssogate_session=;") && c.contains("Max-Age=0") && !c.contains("Domain")), "{cookies:?}");

    // A cookie domain that does not hold the gateway's own host stops the start.
    let cfg = ssogate::config::Config::load(
        None,
        vec![("SSOGATE_PUBLIC_URL".into(), "https://sso.example.com".into()), ("SSOGATE_SESSION__COOKIE_DOMAIN".into(), "example.org".into())],
    );
    let err = cfg.unwrap_err().to_string();
    assert!(err.contains("session.cookie_domain") && err.contains("sso.example.com"), "{err}");
}
