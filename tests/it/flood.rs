//! Floods, oversized parameters and failed writes (issue 16, items 1 to 3 and 8): every
//! value kept server side has a length cap, named in a 400; nothing is handed out that
//! was not stored.

use std::sync::Arc;

use async_trait::async_trait;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use ssogate::clock::Millis;
use ssogate::state::{Ephemeral, StateError, StateResult};

use crate::support::{oidc_body, Gateway};

const APP_CB: &str = "http://127.0.0.1:9/app/callback";

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

/// A registered client `app`; returns its secret.
async fn client(gw: &Gateway) -> String {
    let (st, c) = gw.admin(Method::POST, "/clients", Some(json!({"client_id": "app", "redirect_uris": [APP_CB]}))).await;
    assert_eq!(st, StatusCode::CREATED, "{c}");
    c["client_secret"].as_str().unwrap().to_string()
}

/// A connection whose IdP endpoints are configured but need not answer: a login start
/// only redirects there.
async fn connection(gw: &Gateway) -> String {
    let (st, c) = gw.admin(Method::POST, "/connections", Some(oidc_body("Flood IdP"))).await;
    assert_eq!(st, StatusCode::CREATED, "{c}");
    c["id"].as_str().unwrap().to_string()
}

async fn refused_naming(http: &reqwest::Client, url: &str, cookie: Option<&str>, needles: &[&str]) {
    let mut req = http.get(url);
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    let r = req.send().await.unwrap();
    let status = r.status();
    let body = r.text().await.unwrap();
    let shown = &url[..url.len().min(160)];
    assert_eq!(status, StatusCode::BAD_REQUEST, "{shown}: {body}");
    for n in needles {
        assert!(body.contains(n), "{shown}: `{n}` not in {body}");
    }
}

#[tokio::test]
async fn oversized_login_and_authorize_parameters_are_refused_naming_the_limit() {
    let gw = Gateway::start().await;
    let conn = connection(&gw).await;
    client(&gw).await;
    let http = no_redirects();
    let b = &gw.base;

    // Login starts keep return_to and login_hint in the flow state.
    let long_path = format!("/{}", "a".repeat(5000));
    refused_naming(&http, &format!("{b}/login/{conn}?return_to={}", enc(&long_path)), None, &["return_to", "4096"]).await;
    refused_naming(&http, &format!("{b}/login/{conn}?login_hint={}", "h".repeat(300)), None, &["login_hint", "256"]).await;
    // Within the limits the start works.
    let r = http.get(format!("{b}/login/{conn}?return_to=%2Fok&login_hint={}", "h".repeat(256))).send().await.unwrap();
    assert!(r.status().is_redirection(), "{}", r.status());

    // /authorize keeps scope, nonce, state and the challenge with each code.
    let cookie = gw.session_cookie().await;
    let authz = |extra: &str| format!("{b}/authorize?client_id=app&response_type=code&redirect_uri={}&scope=openid{extra}", enc(APP_CB));
    for (extra, needles) in [
        (format!("%20{}", "x".repeat(24_000)), ["scope", "1024"]),
        (format!("&nonce={}", "n".repeat(10_000)), ["nonce", "512"]),
        (format!("&state={}", "s".repeat(600)), ["state", "512"]),
        (format!("&code_challenge={}&code_challenge_method=S256", "c".repeat(200)), ["code_challenge", "128"]),
        (format!("&login_hint={}", "h".repeat(300)), ["login_hint", "256"]),
    ] {
        refused_naming(&http, &authz(&extra), Some(&cookie), &needles).await;
        // Signed out too: nothing is carried to the login either.
        refused_naming(&http, &authz(&extra), None, &needles).await;
    }
    // Real clients' values pass.
    let r = http.get(authz(&format!("&nonce={}&state={}", "n".repeat(512), "s".repeat(512)))).header("cookie", &cookie).send().await.unwrap();
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    assert!(loc.starts_with(APP_CB) && loc.contains("code="), "{loc}");

    // RelayState comes back to the ACS; an oversized one is refused before any work.
    let r = http
        .post(format!("{b}/saml/{conn}/acs"))
        .form(&[("SAMLResponse", "PHg+"), ("RelayState", &"r".repeat(2000))])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body = r.text().await.unwrap();
    assert!(body.contains("RelayState") && body.contains("1024"), "{body}");
}

/// The real ephemeral store, but every write of a key with `prefix` fails.
#[derive(Debug)]
struct FailingWrites {
    inner: Arc<dyn Ephemeral>,
    prefix: &'static str,
}

#[async_trait]
impl Ephemeral for FailingWrites {
    async fn put_new(&self, key: &str, value: &str, ttl_ms: Millis) -> StateResult<bool> {
        if key.starts_with(self.prefix) {
            return Err(StateError("injected write failure".into()));
        }
        self.inner.put_new(key, value, ttl_ms).await
    }
    async fn take(&self, key: &str) -> StateResult<Option<String>> {
        self.inner.take(key).await
    }
    async fn get(&self, key: &str) -> StateResult<Option<String>> {
        self.inner.get(key).await
    }
    async fn ping(&self) -> StateResult<()> {
        self.inner.ping().await
    }
}

#[tokio::test]
async fn token_endpoint_hands_out_no_token_whose_write_failed() {
    let gw = Gateway::start_adjusted(&[], |app| {
        app.ephemeral = Arc::new(FailingWrites { inner: app.ephemeral.clone(), prefix: "at:" });
    })
    .await;
    let secret = client(&gw).await;
    let cookie = gw.session_cookie().await;
    let http = no_redirects();
    let url = format!("{}/authorize?client_id=app&response_type=code&redirect_uri={}&scope=openid&state=s1", gw.base, enc(APP_CB));
    let r = http.get(url).header("cookie", &cookie).send().await.unwrap();
    let loc = reqwest::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
    let code = loc.query_pairs().find(|(k, _)| k == "code").unwrap().1.to_string();
    let r = http
        .post(format!("{}/token", gw.base))
        .basic_auth("app", Some(&secret))
        .form(&[("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", APP_CB)])
        .send()
        .await
        .unwrap();
    let status = r.status();
    let retry = r.headers().get("retry-after").cloned();
    let body: Value = r.json().await.unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"], "temporarily_unavailable");
    assert!(body.get("access_token").is_none() && body.get("id_token").is_none(), "{body}");
    assert!(retry.is_some(), "503 says when to try again");
}
