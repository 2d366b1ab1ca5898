//! Issue #14: RP-initiated logout (`/end_session`) and back-channel logout: a signed
//! logout token reaches each app that holds tokens of a session whenever the session
//! ends (sign-out here or through the app, an admin ending it, the user disabled),
//! retried while the app answers 5xx.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::login::Browser;
use crate::op::{enc, Rp, APP_CB};
use crate::op_spec::{authorize, claims, query};

const APP_BYE: &str = "http://127.0.0.1:9/app/signed-out";

/// An app's back-channel logout endpoint: records each `logout_token`, answering 503 to
/// the first `fail` deliveries.
#[derive(Clone)]
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<String>>>,
    attempts: Arc<Mutex<usize>>,
}

async fn receiver(fail: usize) -> Receiver {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let r = Receiver { url: format!("http://{}/backchannel", listener.local_addr().unwrap()), got: Default::default(), attempts: Default::default() };
    let state = r.clone();
    let app = axum::Router::new().route(
        "/backchannel",
        axum::routing::post(move |body: String| {
            let state = state.clone();
            async move {
                let n = {
                    let mut a = state.attempts.lock().unwrap();
                    *a += 1;
                    *a
                };
                if n <= fail {
                    return StatusCode::SERVICE_UNAVAILABLE;
                }
                let token = url::form_urlencoded::parse(body.as_bytes()).find(|(k, _)| k == "logout_token").map(|(_, v)| v.into_owned()).unwrap_or_default();
                state.got.lock().unwrap().push(token);
                StatusCode::OK
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    r
}

impl Receiver {
    /// Waits (up to `secs`) until `n` logout tokens arrived; returns them.
    async fn wait(&self, n: usize, secs: u64) -> Vec<String> {
        for _ in 0..secs * 20 {
            if self.got.lock().unwrap().len() >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.got.lock().unwrap().clone()
    }
}

/// Checks a logout token as an app must (Back-Channel Logout 2.6): signature by the
/// gateway's JWKS, typ, iss, aud, iat, jti, events, sid, and no nonce. Returns its claims.
async fn checked_logout_token(rp: &Rp, token: &str) -> Value {
    use ssogate::token::jws;
    let parsed = jws::parse(token).unwrap();
    assert_eq!(parsed.header.typ.as_deref(), Some("logout+jwt"));
    let jwks: Value = reqwest::get(format!("{}/jwks.json", rp.s.gw.base)).await.unwrap().json().await.unwrap();
    let key = jwks["keys"].as_array().unwrap().iter().find(|k| k["kid"].as_str() == parsed.header.kid.as_deref()).expect("signed with a published key");
    jws::verify(&parsed, &jws::public_key(key).unwrap()).expect("the logout token's signature verifies");
    let c = parsed.claims;
    assert_eq!(c["iss"], rp.s.gw.base);
    assert_eq!(c["aud"], "app");
    assert!(c["iat"].is_i64() && c["jti"].is_string() && c["sid"].is_string() && c["sub"].is_string(), "{c}");
    assert!(c["events"]["http://schemas.openid.net/event/backchannel-logout"].is_object(), "{c}");
    assert!(c.get("nonce").is_none(), "a logout token never has a nonce");
    c
}

/// Signs in with a fresh browser and exchanges the code; returns the browser and tokens.
async fn signed_in(rp: &Rp) -> (Browser, Value) {
    let b = Browser::new();
    let code = rp.code(&b, "").await;
    let (st, t) = rp.exchange(&[("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", APP_CB)], Some(("app", &rp.secret))).await;
    assert_eq!(st, StatusCode::OK, "{t}");
    (b, t)
}

async fn signed_out(rp: &Rp, b: &Browser) -> bool {
    let q = authorize(rp, b, &query("openid", "&prompt=none")).await.app.unwrap_or_default();
    q.get("error").map(String::as_str) == Some("login_required")
}

#[tokio::test]
async fn rp_initiated_logout_with_a_hint_ends_the_session_and_returns_to_the_app() {
    let bcl = receiver(0).await;
    let rp = Rp::with_client(json!({"post_logout_redirect_uris": [APP_BYE], "backchannel_logout_uri": bcl.url})).await;
    let disc: Value = reqwest::get(format!("{}/.well-known/openid-configuration", rp.s.gw.base)).await.unwrap().json().await.unwrap();
    let end = disc["end_session_endpoint"].as_str().unwrap().to_string();
    let (b, t) = signed_in(&rp).await;
    let hint = t["id_token"].as_str().unwrap();
    // Refusals first: an unregistered return, a forged hint, a hint for another client.
    for (q, what) in [
        (format!("id_token_hint={hint}&post_logout_redirect_uri={}", enc("https://evil.example/")), "unregistered post_logout_redirect_uri"),
        (format!("id_token_hint={}x&post_logout_redirect_uri={}", &hint[..hint.len() - 1], enc(APP_BYE)), "forged hint"),
        (format!("id_token_hint={hint}&client_id=other&post_logout_redirect_uri={}", enc(APP_BYE)), "client_id other than the hint's"),
        (format!("post_logout_redirect_uri={}", enc(APP_BYE)), "a return without a client"),
    ] {
        let r = b.http.get(format!("{end}?{q}")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{what}");
    }
    assert!(!signed_out(&rp, &b).await, "refusals end nothing");
    let r = b.http.get(format!("{end}?id_token_hint={hint}&post_logout_redirect_uri={}&state=bye1", enc(APP_BYE))).send().await.unwrap();
    assert!(r.status().is_redirection(), "{}", r.status());
    assert_eq!(r.headers()["location"], format!("{APP_BYE}?state=bye1"));
    assert!(signed_out(&rp, &b).await, "the gateway session ended");
    // The app's back channel hears of it, for the session its ID token named.
    let got = bcl.wait(1, 10).await;
    assert_eq!(got.len(), 1);
    let c = checked_logout_token(&rp, &got[0]).await;
    assert_eq!(c["sid"], claims(hint)["sid"]);
    assert_eq!(c["sub"], claims(hint)["sub"]);
    // POST works too, and with no session left there is nothing to confirm.
    let r = b.http.post(&end).form(&[("id_token_hint", hint), ("post_logout_redirect_uri", APP_BYE)]).send().await.unwrap();
    assert_eq!(r.headers()["location"], APP_BYE);
}

#[tokio::test]
async fn rp_initiated_logout_without_a_hint_asks_the_user_first() {
    let rp = Rp::with_client(json!({"post_logout_redirect_uris": [APP_BYE]})).await;
    let (b, _) = signed_in(&rp).await;
    let end = format!("{}/end_session?client_id=app&post_logout_redirect_uri={}&state=s9", rp.s.gw.base, enc(APP_BYE));
    let r = b.http.get(&end).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let page = r.text().await.unwrap();
    assert!(page.contains("action=\"/end_session/confirm\""), "{page}");
    assert!(!signed_out(&rp, &b).await, "a link alone signs no one out");
    let csrf = page.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_string();
    let confirm = format!("{}/end_session/confirm", rp.s.gw.base);
    let form = |csrf: &str| vec![("csrf", csrf.to_string()), ("client_id", "app".into()), ("post_logout_redirect_uri", APP_BYE.into()), ("state", "s9".into())];
    // Another site's post, or a form without this session's token: refused.
    let r = b.http.post(&confirm).header("sec-fetch-site", "cross-site").form(&form(&csrf)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = b.http.post(&confirm).form(&[("client_id", "app")]).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = b.http.post(&confirm).form(&form("not-the-token")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(!signed_out(&rp, &b).await);
    let r = b.http.post(&confirm).header("sec-fetch-site", "same-origin").form(&form(&csrf)).send().await.unwrap();
    assert!(r.status().is_redirection(), "{}", r.status());
    assert_eq!(r.headers()["location"], format!("{APP_BYE}?state=s9"));
    assert!(signed_out(&rp, &b).await);
}

#[tokio::test]
async fn backchannel_logout_reaches_the_app_whenever_a_session_ends() {
    let bcl = receiver(0).await;
    let rp = Rp::with_client(json!({"backchannel_logout_uri": bcl.url})).await;
    // A client with a back channel that holds no tokens of these sessions hears nothing.
    let quiet = receiver(0).await;
    let (st, _) =
        rp.s.gw.admin(Method::POST, "/clients", Some(json!({"client_id": "quiet", "redirect_uris": [APP_CB], "backchannel_logout_uri": quiet.url}))).await;
    assert_eq!(st, StatusCode::CREATED);

    // 1. The user signs out at the gateway.
    let (b, t) = signed_in(&rp).await;
    let r = b.http.post(format!("{}/logout", rp.s.gw.base)).header("sec-fetch-site", "same-origin").send().await.unwrap();
    assert!(r.status().is_redirection());
    let got = bcl.wait(1, 10).await;
    assert_eq!(got.len(), 1, "sign-out at the gateway");
    assert_eq!(checked_logout_token(&rp, &got[0]).await["sid"], claims(t["id_token"].as_str().unwrap())["sid"]);

    // 2. An admin ends that one session.
    let (_b, t) = signed_in(&rp).await;
    let c = claims(t["id_token"].as_str().unwrap());
    let (st, _) = rp.s.gw.admin(Method::DELETE, &format!("/users/{}/sessions/{}", c["sub"].as_str().unwrap(), c["sid"].as_str().unwrap()), None).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let got = bcl.wait(2, 10).await;
    assert_eq!(got.len(), 2, "an admin ended the session");
    assert_eq!(checked_logout_token(&rp, &got[1]).await["sid"], c["sid"]);

    // 3. The user is disabled.
    let (_b, t) = signed_in(&rp).await;
    let c = claims(t["id_token"].as_str().unwrap());
    let (st, _) = rp.s.gw.admin(Method::PATCH, &format!("/users/{}", c["sub"].as_str().unwrap()), Some(json!({"disabled": true}))).await;
    assert_eq!(st, StatusCode::OK);
    let got = bcl.wait(3, 10).await;
    assert_eq!(got.len(), 3, "the user was disabled");
    assert_eq!(checked_logout_token(&rp, &got[2]).await["sid"], c["sid"]);
    rp.s.gw.admin(Method::PATCH, &format!("/users/{}", c["sub"].as_str().unwrap()), Some(json!({"disabled": false}))).await;

    // 4. The connection is turned off.
    let (_b, t) = signed_in(&rp).await;
    let (st, _) = rp.s.gw.admin(Method::PATCH, &format!("/connections/{}", rp.s.conn), Some(json!({"active": false}))).await;
    assert_eq!(st, StatusCode::OK);
    let got = bcl.wait(4, 10).await;
    assert_eq!(got.len(), 4, "the connection was turned off");
    assert_eq!(checked_logout_token(&rp, &got[3]).await["sid"], claims(t["id_token"].as_str().unwrap())["sid"]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(quiet.got.lock().unwrap().is_empty(), "only the apps holding tokens of the session are told");
    assert_eq!(bcl.got.lock().unwrap().len(), 4, "each session's end is told once");
}

#[tokio::test]
async fn backchannel_logout_is_retried_while_the_app_fails() {
    let bcl = receiver(2).await;
    let rp = Rp::with_client(json!({"backchannel_logout_uri": bcl.url})).await;
    let (b, _) = signed_in(&rp).await;
    let started = std::time::Instant::now();
    let r = b.http.post(format!("{}/logout", rp.s.gw.base)).header("sec-fetch-site", "same-origin").send().await.unwrap();
    assert!(r.status().is_redirection());
    assert!(started.elapsed() < Duration::from_secs(1), "the user never waits for the app");
    let got = bcl.wait(1, 15).await;
    assert_eq!(got.len(), 1, "delivered after two 503s");
    assert_eq!(*bcl.attempts.lock().unwrap(), 3);
    checked_logout_token(&rp, &got[0]).await;
}

#[tokio::test]
async fn backchannel_logout_tells_the_app_when_a_session_expires() {
    let clock = ssogate::clock::Clock::fixed(chrono::Utc::now().timestamp_millis());
    let bcl = receiver(0).await;
    let rp = Rp::with_client_on(clock.clone(), json!({"backchannel_logout_uri": bcl.url})).await;
    let (_b, t) = signed_in(&rp).await;
    // Idle for longer than session.idle_seconds (3600 by default): nobody removes the
    // session, it just expires; the sweep finds it and tells the app.
    clock.advance(3601 * 1000);
    let got = bcl.wait(1, (ssogate::op::backchannel::SWEEP_MS / 1000) * 3).await;
    assert_eq!(got.len(), 1, "an expired session's app is told");
    assert_eq!(checked_logout_token(&rp, &got[0]).await["sid"], claims(t["id_token"].as_str().unwrap())["sid"]);
}

/// The confirmation form's token and hidden fields, from the confirm page.
fn confirm_form(page: &str) -> Vec<(String, String)> {
    page.split("<input type=\"hidden\" name=\"")
        .skip(1)
        .map(|f| {
            let name = f.split('"').next().unwrap().to_string();
            let value = f.split("value=\"").nth(1).unwrap().split('"').next().unwrap().replace("&amp;", "&");
            (name, value)
        })
        .collect()
}

#[tokio::test]
async fn rp_initiated_logout_with_a_hint_for_another_session_confirms_and_returns_to_the_app() {
    let rp = Rp::with_client(json!({"post_logout_redirect_uris": [APP_BYE]})).await;
    // The hint names an older session (another browser's); this browser has its own.
    let (_old, t) = signed_in(&rp).await;
    let hint = t["id_token"].as_str().unwrap();
    let (b, _) = signed_in(&rp).await;
    // The usual form: no client_id, the hint names the client.
    let end = format!("{}/end_session?id_token_hint={hint}&post_logout_redirect_uri={}&state=s7", rp.s.gw.base, enc(APP_BYE));
    let r = b.http.get(&end).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let page = r.text().await.unwrap();
    assert!(page.contains("action=\"/end_session/confirm\""), "{page}");
    assert!(!signed_out(&rp, &b).await, "not before the user confirms");
    let form = confirm_form(&page);
    let r = b.http.post(format!("{}/end_session/confirm", rp.s.gw.base)).header("sec-fetch-site", "same-origin").form(&form).send().await.unwrap();
    assert!(r.status().is_redirection(), "{} {}", r.status(), r.text().await.unwrap());
    assert_eq!(r.headers()["location"], format!("{APP_BYE}?state=s7"));
    assert!(signed_out(&rp, &b).await, "the confirmed sign-out ended the session");
}

#[tokio::test]
async fn a_confirmed_sign_out_ends_the_session_even_when_the_return_is_refused() {
    let rp = Rp::with_client(json!({"post_logout_redirect_uris": [APP_BYE]})).await;
    // Tampered forms: a return not registered for the client, and one with no client.
    for (client, uri) in [(Some("app"), "https://evil.example/"), (None, APP_BYE)] {
        let (b, _) = signed_in(&rp).await;
        let r = b.http.get(format!("{}/end_session?client_id=app&post_logout_redirect_uri={}", rp.s.gw.base, enc(APP_BYE))).send().await.unwrap();
        let csrf = confirm_form(&r.text().await.unwrap()).into_iter().find(|(k, _)| k == "csrf").unwrap().1;
        let mut form = vec![("csrf", csrf), ("post_logout_redirect_uri", uri.to_string())];
        if let Some(c) = client {
            form.push(("client_id", c.to_string()));
        }
        let r = b.http.post(format!("{}/end_session/confirm", rp.s.gw.base)).header("sec-fetch-site", "same-origin").form(&form).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "the gateway's own page, not the refused return ({uri})");
        let text = r.text().await.unwrap();
        assert!(text.contains("Signed out"), "{text}");
        assert!(signed_out(&rp, &b).await, "a refused return never leaves the session alive ({uri})");
    }
}

/// A back-channel endpoint that accepts connections and never answers.
async fn hanging() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/backchannel", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    url
}

#[tokio::test]
async fn a_hanging_app_does_not_delay_the_other_apps_notices() {
    let bcl = receiver(0).await;
    // Many logins from one address: no login rate limits here.
    let env = [("SSOGATE_LOGIN__STARTS_PER_MINUTE", "0"), ("SSOGATE_LOGIN__CALLBACKS_PER_MINUTE", "0")];
    let s = crate::login::setup_on(ssogate::clock::Clock::system(), &env, json!({}), json!({})).await;
    let (st, c) = s.gw.admin(Method::POST, "/clients", Some(json!({"client_id": "app", "redirect_uris": [APP_CB], "backchannel_logout_uri": bcl.url}))).await;
    assert_eq!(st, StatusCode::CREATED, "{c}");
    let rp = Rp { secret: c["client_secret"].as_str().unwrap().to_string(), s };
    let (st, c) =
        rp.s.gw.admin(Method::POST, "/clients", Some(json!({"client_id": "dead", "redirect_uris": [APP_CB], "backchannel_logout_uri": hanging().await}))).await;
    assert_eq!(st, StatusCode::CREATED, "{c}");
    let dead_secret = c["client_secret"].as_str().unwrap().to_string();
    // Many sessions, each with tokens of both apps (more than the deliveries one dead
    // app could once hold up for everyone).
    const SESSIONS: usize = 80;
    let one = || async {
        let (b, t) = signed_in(&rp).await;
        let q = crate::op_spec::query("openid", "").replace("client_id=app", "client_id=dead");
        let code = authorize(&rp, &b, &q).await.app.unwrap()["code"].clone();
        let (st, e) = rp.exchange(&[("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", APP_CB)], Some(("dead", &dead_secret))).await;
        assert_eq!(st, StatusCode::OK, "{e}");
        claims(t["id_token"].as_str().unwrap())["sub"].as_str().unwrap().to_string()
    };
    let mut sub = String::new();
    for _ in 0..SESSIONS {
        sub = one().await;
    }
    // Disabling the user ends every session at once; the working app hears of each
    // promptly, while the dead one hangs.
    let started = std::time::Instant::now();
    let (st, _) = rp.s.gw.admin(Method::PATCH, &format!("/users/{sub}"), Some(json!({"disabled": true}))).await;
    assert_eq!(st, StatusCode::OK);
    let got = bcl.wait(SESSIONS, 20).await;
    assert_eq!(got.len(), SESSIONS, "the working app was told of every ending ({:?})", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(15), "promptly: {:?}", started.elapsed());
    let metrics = reqwest::get(format!("{}/metrics", rp.s.gw.base)).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("ssogate_backchannel_dropped_total 0"), "nothing was dropped");
}

#[tokio::test]
async fn a_notice_the_app_refuses_is_counted_as_failed() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/backchannel", listener.local_addr().unwrap());
    let refusing = axum::Router::new().route("/backchannel", axum::routing::post(|| async { StatusCode::BAD_REQUEST }));
    tokio::spawn(async move { axum::serve(listener, refusing).await.unwrap() });
    let rp = Rp::with_client(json!({"backchannel_logout_uri": url})).await;
    let (b, _) = signed_in(&rp).await;
    let r = b.http.post(format!("{}/logout", rp.s.gw.base)).header("sec-fetch-site", "same-origin").send().await.unwrap();
    assert!(r.status().is_redirection());
    let mut metrics = String::new();
    for _ in 0..100 {
        metrics = reqwest::get(format!("{}/metrics", rp.s.gw.base)).await.unwrap().text().await.unwrap();
        if metrics.contains("ssogate_backchannel_failed_total{client=\"app\"} 1") {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the refused notice is counted: {metrics}");
}
