//! What an operator watches, after real logins through oidc-provider: `/metrics` (logins
//! by connection and outcome with the refusal's step and reason, `/auth` by status,
//! latency histograms, JWKS fetches, sessions), the login audit events (one per success,
//! refusals bounded per connection, step and reason and minute) with the audit API's
//! filters, and each connection's health in its API view.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::login::{setup, Browser};
use crate::support::Gateway;

/// The value of one series in a Prometheus text page (`name{labels}` exactly as written).
pub fn series(page: &str, series: &str) -> Option<f64> {
    page.lines().find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')).and_then(|v| v.trim().parse().ok()))
}

pub async fn scrape(base: &str) -> String {
    let r = reqwest::get(format!("{base}/metrics")).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
    r.text().await.unwrap()
}

async fn audit(gw: &Gateway, query: &str) -> Vec<Value> {
    let (s, v) = gw.admin(Method::GET, &format!("/audit?limit=1000&{query}"), None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v.as_array().unwrap().clone()
}

#[tokio::test]
async fn metrics_and_audit_follow_real_logins_and_refusals() {
    let s = setup(json!({}), json!({})).await;
    let (gw, conn) = (&s.gw, s.conn.as_str());
    let before = scrape(&gw.base).await;
    assert_eq!(series(&before, "ssogate_build_info{version=\"0.1.0\"}"), Some(1.0));
    assert_eq!(series(&before, "ssogate_auth_requests_total{code=\"200\"}"), Some(0.0));

    // A login, and one the directory refuses (bob's email is unverified).
    let (alice, status, _, body) = s.login("alice").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, status, _, body) = s.login("bob").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    // The ingress check: a yes, a no (not allowed), a not-logged-in.
    let auth = |b: &Browser, q: &str| b.http.get(format!("{}/auth{q}", gw.base)).send();
    assert_eq!(auth(&alice, "").await.unwrap().status(), StatusCode::OK);
    assert_eq!(auth(&alice, "?allowed_groups=nobody").await.unwrap().status(), StatusCode::FORBIDDEN);
    assert_eq!(auth(&Browser::new(), "").await.unwrap().status(), StatusCode::UNAUTHORIZED);
    assert_eq!(auth(&Browser::new(), "?bogus=1").await.unwrap().status(), StatusCode::BAD_REQUEST);
    // Callbacks nobody started: for this connection, and for ids that do not exist.
    let forged = Browser::new();
    for i in 0..5 {
        let r = forged.http.get(format!("{}/oidc/{conn}/callback?code=x&state=forged{i}", gw.base)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    }
    for id in ["con_nope", "con_other", "..%2f"] {
        let r = forged.http.get(format!("{}/oidc/{id}/callback?code=x&state=y", gw.base)).send().await.unwrap();
        assert!(r.status().is_client_error(), "{id}");
    }

    let page = scrape(&gw.base).await;
    let logins = |outcome: &str, step: &str, reason: &str| {
        series(&page, &format!("ssogate_logins_total{{connection=\"{conn}\",outcome=\"{outcome}\",step=\"{step}\",reason=\"{reason}\"}}"))
    };
    assert_eq!(logins("success", "", ""), Some(1.0), "{page}");
    assert_eq!(logins("refused", "directory", "email_not_verified"), Some(1.0), "{page}");
    assert_eq!(logins("refused", "flow", "flow_missing"), Some(5.0), "{page}");
    // Unknown ids share one series, whatever was sent: no label from a client.
    let unknown: f64 =
        page.lines().filter(|l| l.starts_with("ssogate_logins_total{connection=\"(unknown)\"")).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum();
    assert_eq!(unknown, 3.0, "{page}");
    assert!(!page.contains("con_nope") && !page.contains("con_other"), "{page}");
    for (code, n) in [("200", 1.0), ("403", 1.0), ("401", 1.0), ("400", 1.0)] {
        assert_eq!(series(&page, &format!("ssogate_auth_requests_total{{code=\"{code}\"}}")), Some(n), "{code}: {page}");
    }
    assert_eq!(series(&page, "ssogate_auth_duration_seconds_count"), Some(4.0), "{page}");
    assert_eq!(series(&page, "ssogate_auth_duration_seconds_bucket{le=\"+Inf\"}"), Some(4.0));
    let callbacks = series(&page, "ssogate_login_duration_seconds_count{protocol=\"oidc\"}").unwrap();
    assert!(callbacks >= 7.0, "two logins and the forged callbacks of known routes: {callbacks}");
    assert_eq!(series(&page, "ssogate_login_duration_seconds_count{protocol=\"saml\"}"), Some(0.0));
    assert!(series(&page, "ssogate_jwks_refresh_total{result=\"ok\"}").unwrap() >= 1.0, "the IdP's keys were fetched");
    assert_eq!(series(&page, &format!("ssogate_sessions{{connection=\"{conn}\"}}")), Some(1.0), "{page}");
    assert_eq!(series(&page, "ssogate_up{component=\"store\"}"), Some(1.0));
    assert_eq!(series(&page, "ssogate_up{component=\"state\"}"), Some(1.0));

    // The audit log: the success, the directory's refusal, and the forged callbacks as
    // one event at once and the rest counted into one more when the minute is written.
    let alice_id = s.users().await[0]["id"].as_str().unwrap().to_string();
    let events = audit(gw, &format!("connection={conn}&action=login.")).await;
    let success: Vec<&Value> = events.iter().filter(|e| e["action"] == "login.success").collect();
    assert_eq!(success.len(), 1, "{events:?}");
    assert_eq!(success[0]["target"], alice_id.as_str());
    assert_eq!(success[0]["actor"], format!("connection:{conn}"));
    assert_eq!(success[0]["detail"]["user_id"], alice_id.as_str());
    assert!(success[0]["request_id"].as_str().is_some_and(|r| !r.is_empty()));
    let refused = |reason: &str| events.iter().filter(|e| e["action"] == "login.refused" && e["detail"]["reason"] == reason).cloned().collect::<Vec<_>>();
    let bob = refused("email_not_verified");
    assert_eq!(bob.len(), 1, "{events:?}");
    assert_eq!(bob[0]["detail"]["step"], "directory");
    assert_eq!(bob[0]["detail"]["status"], 403);
    assert!(bob[0]["detail"]["message"].as_str().unwrap().contains("did not confirm your email"));
    assert_eq!(refused("flow_missing").len(), 1, "the first of the minute only: {events:?}");
    ssogate::login::record::flush(&gw.app, true).await;
    let flow = audit(gw, &format!("connection={conn}&action=login.refused")).await;
    let flow: Vec<&Value> = flow.iter().filter(|e| e["detail"]["reason"] == "flow_missing").collect();
    assert_eq!(flow.len(), 2, "{flow:?}");
    assert_eq!(flow[0]["detail"]["count"], 4, "the other four, counted: {flow:?}");
    assert_eq!(flow[0]["detail"]["aggregated"], true);
    let unknown = audit(gw, "actor=connection:(unknown)").await;
    assert!(!unknown.is_empty() && unknown.iter().all(|e| e["detail"]["connection"] == "(unknown)"), "{unknown:?}");
    // Nothing secret in any of it.
    let all = serde_json::to_string(&audit(gw, "").await).unwrap();
    assert!(!all.contains("gateway-secret-0123456789"), "no client secret in the audit log");

    // Filters: by target, by exact action, by time.
    let mine = audit(gw, &format!("target={alice_id}&action=login.success")).await;
    assert_eq!(mine.len(), 1);
    assert!(audit(gw, "since=2999-01-01T00:00:00Z").await.is_empty());
    assert!(!audit(gw, "until=2999-01-01T00:00:00Z&action=login.").await.is_empty());
    let (st, err) = gw.admin(Method::GET, "/audit?since=yesterday", None).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(err["fields"][0]["field"], "since", "{err}");
    let (st, _) = gw.admin(Method::GET, "/audit?actr=admin", None).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "an unknown filter is refused, not ignored");

    // The connection's health: its last login, its last refusal with the time.
    let (_, c) = gw.admin(Method::GET, &format!("/connections/{conn}"), None).await;
    assert!(c["last_login_at"].as_str().is_some_and(|t| t.starts_with("20")), "{c}");
    assert!(c["last_error_at"].as_str().is_some(), "{c}");
    assert!(c["last_error"].as_str().unwrap().starts_with("flow: flow_missing"), "{c}");
    assert_eq!(c["managed_by"], Value::Null);
    let (_, list) = gw.admin(Method::GET, "/connections", None).await;
    assert_eq!(list[0]["last_login_at"], c["last_login_at"]);
}

#[tokio::test]
async fn metrics_can_move_to_their_own_listener_or_be_turned_off() {
    let off = Gateway::start_in(std::sync::Arc::new(tempfile::tempdir().unwrap()), &[("SSOGATE_METRICS__ENABLED", "false")]).await;
    assert_eq!(reqwest::get(format!("{}/metrics", off.base)).await.unwrap().status(), StatusCode::NOT_FOUND);

    // A listener of their own: there, and not on the main one.
    let own = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = own.local_addr().unwrap().to_string();
    let gw = Gateway::start_in(std::sync::Arc::new(tempfile::tempdir().unwrap()), &[("SSOGATE_METRICS__LISTEN", &addr)]).await;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(ssogate::server::serve_metrics(own, gw.app.clone(), async {
        let _ = rx.await;
    }));
    assert_eq!(reqwest::get(format!("{}/metrics", gw.base)).await.unwrap().status(), StatusCode::NOT_FOUND);
    let cookie = gw.session_cookie().await;
    let r = reqwest::Client::new().get(format!("{}/auth", gw.base)).header("cookie", cookie).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let page = scrape(&format!("http://{addr}")).await;
    assert_eq!(series(&page, "ssogate_auth_requests_total{code=\"200\"}"), Some(1.0), "{page}");
    let _ = tx.send(());
}
