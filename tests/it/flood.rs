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
    let r = http.post(format!("{b}/saml/{conn}/acs")).form(&[("SAMLResponse", "PHg+"), ("RelayState", &"r".repeat(2000))]).send().await.unwrap();
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

/// A client whose connections come from `ip` (a loopback address other than the gateway's).
fn client_from(ip: [u8; 4]) -> reqwest::Client {
    reqwest::Client::builder().local_address(std::net::IpAddr::from(ip)).redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

/// Issue 16 item 1: one client floods login starts (long `return_to` and `login_hint`)
/// while another starts logins. The flood gets 429 with Retry-After past its budget, the
/// other client gets its redirect every time, and what the flood leaves in the state
/// store is capped by the per-client quota of flows. Bounded: 600 flood requests.
#[tokio::test]
async fn login_start_flood_from_one_client_is_throttled_while_another_logs_in() {
    let gw = Gateway::start_in(Arc::new(tempfile::tempdir().unwrap()), &[("SSOGATE_LOGIN__FLOWS_PER_CLIENT", "50")]).await;
    let base = gw.base.clone();
    flood_while_another_logs_in(&gw, &base).await;
}

/// The same through nginx as a trusted proxy: every request reaches the gateway from
/// nginx's address, and the clients are told apart by `X-Forwarded-For`.
#[tokio::test]
async fn login_start_flood_through_a_trusted_nginx_is_throttled_per_client() {
    use crate::nginx::{free_port, nginx_http_paths, nginx_main, start_nginx};
    let gw =
        Gateway::start_in(Arc::new(tempfile::tempdir().unwrap()), &[("SSOGATE_LOGIN__FLOWS_PER_CLIENT", "50"), ("SSOGATE_HTTP__TRUSTED_PROXIES", "127.0.0.1")])
            .await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let conf = format!(
        "{main}http {{\n    access_log off;\n    {paths}    server {{\n    listen 127.0.0.1:{port};\n    location / {{\n        \
         proxy_set_header Host $http_host;\n        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n        \
         proxy_set_header X-Real-IP $remote_addr;\n        proxy_http_version 1.1;\n        proxy_set_header Connection \"\";\n        \
         proxy_pass {gw};\n    }}\n    }}\n}}\n",
        main = nginx_main(dir.path()),
        paths = nginx_http_paths(dir.path()),
        gw = gw.base,
    );
    let _nginx = start_nginx(dir.path(), &conf, port);
    flood_while_another_logs_in(&gw, &format!("http://127.0.0.1:{port}")).await;
}

/// 600 login starts from 127.0.0.2 (8 at a time) against `front` while 127.0.0.3 starts
/// 30 logins; asserts the flood's 429s, the other client's redirects and flows, and the
/// bound on what the state store holds.
async fn flood_while_another_logs_in(gw: &Gateway, front: &str) {
    let conn = connection(gw).await;
    let flood_url = format!("{front}/login/{conn}?return_to={}&login_hint={}", enc(&format!("/{}", "r".repeat(4000))), "h".repeat(256));
    let flooder = client_from([127, 0, 0, 2]);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (http, url) = (flooder.clone(), flood_url.clone());
        tasks.push(tokio::spawn(async move {
            let (mut limited, mut started, mut retry_after) = (0, 0, true);
            for _ in 0..75 {
                let r = http.get(&url).send().await.unwrap();
                match r.status() {
                    StatusCode::TOO_MANY_REQUESTS => {
                        limited += 1;
                        retry_after &= r.headers().get("retry-after").and_then(|v| v.to_str().ok()).is_some_and(|v| v.parse::<u64>().is_ok_and(|s| s >= 1));
                    }
                    s if s.is_redirection() => started += 1,
                    s => panic!("flood answered {s}"),
                }
            }
            (limited, started, retry_after)
        }));
    }
    // Meanwhile another client starts logins, one after another.
    let other = client_from([127, 0, 0, 3]);
    let mut states = Vec::new();
    for i in 0..30 {
        let r = other.get(format!("{front}/login/{conn}?return_to=%2Fpage{i}")).send().await.unwrap();
        assert!(r.status().is_redirection(), "login {i} of the other client: {}", r.status());
        let loc = reqwest::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
        assert_eq!(loc.host_str(), Some("idp.example.com"), "{loc}");
        states.push(loc.query_pairs().find(|(k, _)| k == "state").unwrap().1.to_string());
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (mut limited, mut started) = (0, 0);
    for t in tasks {
        let (l, s, retry) = t.await.unwrap();
        assert!(retry, "every 429 carries Retry-After");
        limited += l;
        started += s;
    }
    assert!(limited >= 400, "the flood is throttled: {limited} refused, {started} started");
    // The flood never pushed out the other client's logins.
    for s in &states {
        assert!(gw.app.ephemeral.get(&format!("flow:{s}")).await.unwrap().is_some(), "the other client's flow {s} survived the flood");
    }
    // What the flood left is bounded by its quota (50 flows of at most ~5 KB each).
    let usage = gw.app.ephemeral.usage().unwrap();
    assert!(usage.entries <= 50 + states.len(), "{usage:?}");
    assert!(usage.bytes <= (50 + states.len()) * 6 * 1024, "{usage:?}");
}

/// Every unauthenticated start and every callback spends the client's budget; behind a
/// trusted proxy the client is the address the proxy reports, and from anyone else
/// `X-Forwarded-For` is ignored.
#[tokio::test]
async fn starts_and_callbacks_are_limited_per_client_as_trusted_proxies_name_it() {
    let gw = Gateway::start_in(
        Arc::new(tempfile::tempdir().unwrap()),
        &[
            ("SSOGATE_LOGIN__STARTS_BURST", "3"),
            ("SSOGATE_LOGIN__STARTS_PER_MINUTE", "1"),
            ("SSOGATE_LOGIN__CALLBACKS_BURST", "3"),
            ("SSOGATE_LOGIN__CALLBACKS_PER_MINUTE", "1"),
            ("SSOGATE_HTTP__TRUSTED_PROXIES", "127.0.0.4, 10.0.0.0/8"),
        ],
    )
    .await;
    let conn = connection(&gw).await;
    client(&gw).await;
    let b = gw.base.clone();
    let statuses = |http: reqwest::Client, url: String, xff: Option<&'static str>| async move {
        let mut out = Vec::new();
        for _ in 0..5 {
            let mut req = http.get(&url);
            if let Some(x) = xff {
                req = req.header("x-forwarded-for", x);
            }
            let r = req.send().await.unwrap();
            if r.status() == StatusCode::TOO_MANY_REQUESTS {
                assert!(r.headers().contains_key("retry-after"));
            }
            out.push(r.status().as_u16());
        }
        out
    };
    let limited = |v: &[u16]| v.iter().filter(|s| **s == 429).count();
    let authorize = format!("{b}/authorize?client_id=app&response_type=code&redirect_uri={}&scope=openid", enc(APP_CB));
    for (ip, url) in [
        ([127, 0, 0, 5], format!("{b}/start")),
        ([127, 0, 0, 6], format!("{b}/oauth2/start?rd=%2F")),
        ([127, 0, 0, 7], authorize.clone()),
        ([127, 0, 0, 8], format!("{b}/oidc/{conn}/callback?state=nosuch&code=x")),
    ] {
        let got = statuses(client_from(ip), url.clone(), None).await;
        assert_eq!(limited(&got), 2, "{url}: {got:?}");
    }
    let acs = client_from([127, 0, 0, 9]);
    let mut acs_limited = 0;
    for _ in 0..5 {
        let r = acs.post(format!("{b}/saml/{conn}/acs")).form(&[("SAMLResponse", "PHg+")]).send().await.unwrap();
        acs_limited += usize::from(r.status() == StatusCode::TOO_MANY_REQUESTS);
    }
    assert_eq!(acs_limited, 2, "ACS posts are callbacks");
    // /authorize with a session spends the same budget (each answer keeps a code): the
    // client that spent it waits, another signed-in client gets its code.
    let cookie = gw.session_cookie().await;
    let r = client_from([127, 0, 0, 7]).get(&authorize).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let r = client_from([127, 0, 0, 11]).get(&authorize).header("cookie", &cookie).send().await.unwrap();
    assert!(r.status().is_redirection(), "{}", r.status());

    // Behind the trusted proxy each reported client has its own budget...
    let proxy = client_from([127, 0, 0, 4]);
    let start = format!("{b}/login/{conn}");
    assert_eq!(limited(&statuses(proxy.clone(), start.clone(), Some("203.0.113.1")).await), 2);
    assert_eq!(limited(&statuses(proxy.clone(), start.clone(), Some("203.0.113.9, 10.1.2.3")).await), 2, "rightmost untrusted hop");
    assert_eq!(limited(&statuses(proxy.clone(), start.clone(), Some("198.51.100.7")).await), 2);
    // ...and a client cannot choose another's budget by prepending to the header.
    assert_eq!(limited(&statuses(proxy, start.clone(), Some("198.51.100.8, 203.0.113.1")).await), 5);
    // From an untrusted peer the header means nothing: all of it is that peer's.
    let direct = client_from([127, 0, 0, 10]);
    let mut got = Vec::new();
    for x in ["192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4", "192.0.2.5"] {
        got.push(direct.get(&start).header("x-forwarded-for", x).send().await.unwrap().status().as_u16());
    }
    assert_eq!(limited(&got), 2, "{got:?}");
}

/// Per-browser limits: one browser (told apart by its flow cookie) that starts logins
/// or answers callbacks over and over is held back by its own budget, while another
/// browser behind the same address (an office NAT) still gets through. A request without
/// a flow cookie counts only against the address's budget.
#[tokio::test]
async fn one_browser_behind_a_shared_address_is_limited_without_holding_back_the_others() {
    let gw = Gateway::start_in(
        Arc::new(tempfile::tempdir().unwrap()),
        &[
            ("SSOGATE_LOGIN__BROWSER_BURST", "3"),
            ("SSOGATE_LOGIN__BROWSER_PER_MINUTE", "1"),
            ("SSOGATE_LOGIN__STARTS_BURST", "100"),
            ("SSOGATE_LOGIN__CALLBACKS_BURST", "100"),
        ],
    )
    .await;
    let conn = connection(&gw).await;
    let http = client_from([127, 0, 0, 12]);
    let b = gw.base.clone();
    // A first start gives the browser its flow cookie.
    let r = http.get(format!("{b}/login/{conn}")).send().await.unwrap();
    assert!(r.status().is_redirection());
    let set = r.headers()["set-cookie"].to_str().unwrap();
    let flow = set.split(';').next().unwrap().to_string();
    assert!(flow.starts_with("ssogate_flow="), "{set}");
    let with_cookie = |url: String, cookie: String| {
        let http = http.clone();
        async move {
            let mut got = Vec::new();
            for _ in 0..4 {
                let r = http.get(&url).header("cookie", &cookie).send().await.unwrap();
                let status = r.status();
                if status == StatusCode::TOO_MANY_REQUESTS {
                    assert!(r.headers().contains_key("retry-after"), "429 carries Retry-After");
                    let body = r.text().await.unwrap();
                    assert!(body.contains("this browser"), "the refusal says whose budget ran out: {body}");
                }
                got.push(if status == StatusCode::TOO_MANY_REQUESTS { 429 } else { 0 });
            }
            got.iter().filter(|s| **s == 429).count()
        }
    };
    // The first start came before the browser had its cookie: it counted against the
    // address only. Of 4 more, the burst of 3 passes.
    assert_eq!(with_cookie(format!("{b}/login/{conn}"), flow.clone()).await, 1, "starts of one browser");
    // Callbacks have a budget of their own, per browser too.
    assert_eq!(with_cookie(format!("{b}/oidc/{conn}/callback?state=nosuch&code=x"), flow.clone()).await, 1, "callbacks of one browser");
    // Another browser at the same address, and requests with no flow cookie, still pass.
    let other = format!("ssogate_flow={}", "A".repeat(43));
    assert_eq!(with_cookie(format!("{b}/login/{conn}"), other).await, 1, "another browser has its own budget");
    for _ in 0..5 {
        let r = http.get(format!("{b}/login/{conn}")).send().await.unwrap();
        assert!(r.status().is_redirection(), "no cookie: the address's budget only ({})", r.status());
    }
}

/// Issue 16 item 3: 1 000 sockets that never send a byte (more than the connection cap),
/// 20 that send one header line a second, and one idle keep-alive connection. `/auth`
/// answers throughout; the server closes every one of them once past its timeout.
#[tokio::test]
async fn idle_and_slow_sockets_are_closed_while_auth_keeps_answering() {
    use std::time::{Duration, Instant};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    let gw = Gateway::start_in(
        Arc::new(tempfile::tempdir().unwrap()),
        &[("SSOGATE_HTTP__HEADER_READ_TIMEOUT_SECONDS", "2"), ("SSOGATE_HTTP__IDLE_TIMEOUT_SECONDS", "3"), ("SSOGATE_HTTP__MAX_CONNECTIONS", "256")],
    )
    .await;
    let addr = gw.base.trim_start_matches("http://").to_string();
    let begin = Instant::now();
    let mut silent = Vec::new();
    for _ in 0..1000 {
        silent.push(TcpStream::connect(&addr).await.unwrap());
    }
    let mut slow = Vec::new();
    for _ in 0..20 {
        let addr = addr.clone();
        slow.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(&addr).await.unwrap();
            let start = Instant::now();
            s.write_all(b"GET /auth HTTP/1.1\r\nHost: x\r\n").await.unwrap();
            let mut buf = [0u8; 256];
            loop {
                // Closed by the server: the read ends (EOF or reset) before 20 s.
                match tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf)).await {
                    Ok(Ok(0)) | Ok(Err(_)) => return start.elapsed(),
                    Ok(Ok(_)) => {}
                    Err(_) => {}
                }
                if start.elapsed() > Duration::from_secs(20) || s.write_all(b"X-Slow: 1\r\n").await.is_err() {
                    return start.elapsed();
                }
            }
        }));
    }
    // One keep-alive connection that asks once, then idles.
    let mut kept = TcpStream::connect(&addr).await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 1024];
    assert!(kept.read(&mut buf).await.unwrap() > 0);

    // /auth answers (401: no session) all along, promptly.
    let probe = reqwest::Client::builder().timeout(Duration::from_secs(1)).build().unwrap();
    while begin.elapsed() < Duration::from_secs(5) {
        let r = probe.get(format!("{}/auth", gw.base)).send().await.expect("/auth answers while the sockets idle");
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for t in slow {
        let took = t.await.unwrap();
        assert!(took < Duration::from_secs(5), "a slow header is cut at the header-read timeout: {took:?}");
    }
    let closed = |mut s: TcpStream| async move {
        let mut b = [0u8; 16];
        matches!(tokio::time::timeout(Duration::from_secs(3), s.read(&mut b)).await, Ok(Ok(0)) | Ok(Err(_)))
    };
    let mut open = 0;
    for s in silent {
        open += usize::from(!closed(s).await);
    }
    assert_eq!(open, 0, "silent sockets still open past the header-read timeout");
    assert!(closed(kept).await, "an idle keep-alive connection is closed past the idle timeout");
}

/// Issue 16 item 8: the database drops the gateway's connections while an admin writes.
/// Every failed write is a 503 with Retry-After, never a 500; the writes that went
/// through are there.
#[tokio::test]
async fn admin_writes_answer_503_with_retry_after_when_the_database_drops_connections() {
    use sqlx::Connection;
    use std::time::{Duration, Instant};
    let db = crate::support::PgDb::new().await;
    let gw = Gateway::start_in(Arc::new(tempfile::tempdir().unwrap()), &[("SSOGATE_STORE__URL", db.url.as_str())]).await;
    let name = reqwest::Url::parse(&db.url).unwrap().path().trim_start_matches('/').to_string();
    let killer = tokio::spawn(async move {
        let mut c = sqlx::PgConnection::connect(&crate::support::pg_admin_url()).await.unwrap();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(3) {
            // Only this test's database: the gateway's pooled connections die mid-use.
            sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()")
                .bind(&name)
                .execute(&mut c)
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
    });
    let http = reqwest::Client::new();
    let (mut ok, mut unavailable, mut other) = (0, 0, Vec::new());
    let start = Instant::now();
    let mut i = 0;
    while start.elapsed() < Duration::from_secs(3) {
        i += 1;
        let r = http
            .post(format!("{}/api/v1/admin/groups", gw.base))
            .bearer_auth(crate::support::TOKEN)
            .json(&json!({"name": format!("group-{i}")}))
            .send()
            .await
            .unwrap();
        match r.status() {
            s if s.is_success() => ok += 1,
            StatusCode::SERVICE_UNAVAILABLE => {
                assert!(r.headers().contains_key("retry-after"), "503 says when to retry");
                unavailable += 1;
            }
            s => other.push((s.as_u16(), r.text().await.unwrap())),
        }
    }
    killer.await.unwrap();
    assert!(other.is_empty(), "{ok} ok, {unavailable} unavailable, and others: {other:?}");
    assert!(ok > 0 && unavailable > 0, "{ok} ok, {unavailable} unavailable");
}

/// A state store that answers pings but refuses writes (full, read-only, out of memory)
/// stops every login: `/readyz` says so.
#[tokio::test]
async fn readyz_reports_a_state_store_that_refuses_writes() {
    let gw = Gateway::start_adjusted(&[], |app| {
        app.ephemeral = Arc::new(FailingWrites { inner: app.ephemeral.clone(), prefix: "" });
    })
    .await;
    let r = reqwest::get(format!("{}/readyz", gw.base)).await.unwrap();
    let status = r.status();
    let body = r.text().await.unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body.contains("state store") && body.contains("write"), "{body}");
    let healthy = Gateway::start().await;
    assert_eq!(reqwest::get(format!("{}/readyz", healthy.base)).await.unwrap().status(), StatusCode::OK);
}

/// A signed-in user flooding `/authorize` (each answer keeps a code with its scope and
/// nonce for a minute) spends the same per-client budget as unauthenticated starts: past
/// it, 429 with `Retry-After`, and no code is kept; another client is not affected.
#[tokio::test]
async fn authorize_floods_from_a_signed_in_client_are_throttled() {
    let gw =
        Gateway::start_in(Arc::new(tempfile::tempdir().unwrap()), &[("SSOGATE_LOGIN__STARTS_BURST", "5"), ("SSOGATE_LOGIN__STARTS_PER_MINUTE", "1")]).await;
    client(&gw).await;
    let cookie = gw.session_cookie().await;
    let url = format!("{}/authorize?response_type=code&client_id=app&redirect_uri={}&scope=openid&state=s&nonce={}", gw.base, enc(APP_CB), "n".repeat(500));
    let flood = client_from([127, 0, 0, 2]);
    let mut statuses = Vec::new();
    for _ in 0..20 {
        let r = flood.get(&url).header("cookie", &cookie).send().await.unwrap();
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            assert!(r.headers().contains_key("retry-after"));
        }
        statuses.push(r.status());
    }
    let issued = statuses.iter().filter(|s| s.is_redirection()).count();
    assert_eq!(issued, 5, "the burst, then 429s: {statuses:?}");
    assert!(statuses[5..].iter().all(|s| *s == StatusCode::TOO_MANY_REQUESTS), "{statuses:?}");
    let other = client_from([127, 0, 0, 3]);
    let r = other.get(&url).header("cookie", &cookie).send().await.unwrap();
    assert!(r.status().is_redirection(), "another client is not affected: {}", r.status());
}

/// The gateway process's resident memory now and at its peak (`VmRSS`, `VmHWM`), in KB.
fn rss_kb(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field =
        |name: &str| status.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok()).unwrap();
    (field("VmRSS:"), field("VmHWM:"))
}

/// Issue 16 item 1, as the attacker ran it: the gateway binary on its default limits,
/// one client (127.0.0.2) flooding `/login/{id}` with the longest `return_to` and
/// `login_hint` it may send, while another (127.0.0.3) signs in through oidc-provider
/// over and over. Every one of the second client's logins completes; the flood gets
/// 429s; the process's peak resident memory grows by less than 32 MB. Bounded: 2 400
/// flood requests.
#[tokio::test]
async fn a_login_flood_leaves_memory_bounded_while_another_client_signs_in_through_a_real_idp() {
    flood_with_real_logins(false).await;
}

/// The same with nginx in front as a trusted proxy (every request reaches the gateway
/// from nginx's address; the clients are told apart by `X-Forwarded-For`).
#[tokio::test]
async fn a_login_flood_through_a_trusted_nginx_holds_back_only_the_flooding_client() {
    flood_with_real_logins(true).await;
}

async fn flood_with_real_logins(through_nginx: bool) {
    use crate::cli::spawn_gateway;
    use crate::login::Browser;
    use crate::nginx::{free_port, nginx_http_paths, nginx_main, start_nginx};
    use crate::peers::oidc_provider;
    use crate::support::TOKEN;

    let dir = tempfile::tempdir().unwrap();
    let (port, front_port) = (free_port(), free_port());
    let direct = format!("http://127.0.0.1:{port}");
    // The public URL is where browsers reach the gateway: nginx's when it is in front.
    let base = if through_nginx { format!("http://127.0.0.1:{front_port}") } else { direct.clone() };
    let conn = "con_flood";
    let (idp, _idp_dir) = oidc_provider(&json!({
        "clients": [{"client_id": "gateway", "client_secret": "gateway-secret-0123456789",
                     "redirect_uris": [format!("{base}/oidc/{conn}/callback")], "token_endpoint_auth_method": "client_secret_basic"}],
        "accounts": {"alice": {"email": "alice@example.test", "email_verified": true, "name": "Alice", "groups": ["staff"]}},
        "pkce_methods": ["S256"]
    }));
    let listen = format!("127.0.0.1:{port}");
    let mut env = vec![("SSOGATE_LISTEN", listen.as_str()), ("SSOGATE_PUBLIC_URL", base.as_str()), ("SSOGATE_ADMIN_TOKEN", TOKEN)];
    if through_nginx {
        env.push(("SSOGATE_HTTP__TRUSTED_PROXIES", "127.0.0.1"));
    }
    let (child, got, _out, _err) = spawn_gateway(dir.path(), &env);
    let child = Killed(child);
    assert_eq!(got, direct);
    let nginx_dir = tempfile::tempdir().unwrap();
    let _nginx = through_nginx.then(|| {
        let conf = format!(
            "{main}http {{\n    access_log off;\n    {paths}    server {{\n    listen 127.0.0.1:{front_port};\n    location / {{\n        \
             proxy_set_header Host $http_host;\n        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n        \
             proxy_http_version 1.1;\n        proxy_set_header Connection \"\";\n        proxy_pass {direct};\n    }}\n    }}\n}}\n",
            main = nginx_main(nginx_dir.path()),
            paths = nginx_http_paths(nginx_dir.path()),
        );
        start_nginx(nginx_dir.path(), &conf, front_port)
    });
    let issuer = idp.ready["issuer"].as_str().unwrap();
    let body = json!({"id": conn, "display_name": "Real IdP", "protocol": "oidc", "create_users": true,
        "oidc": {"issuer": issuer, "client_id": "gateway", "client_secret": "gateway-secret-0123456789"}});
    let r = reqwest::Client::new().post(format!("{direct}/api/v1/admin/connections")).bearer_auth(TOKEN).json(&body).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);

    let signer = || {
        let http = reqwest::Client::builder()
            .local_address(std::net::IpAddr::from([127, 0, 0, 3]))
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Browser { http }
    };
    // One login before the flood: the process has met every code path once.
    let (resp, landed) = signer().visit(&format!("{base}/login/{conn}?login_hint=alice")).await;
    let status = resp.status();
    assert_eq!(status, StatusCode::OK, "{landed}: {}", resp.text().await.unwrap());
    let (rss_before, _) = rss_kb(child.0.id());

    let flood_url = format!("{base}/login/{conn}?return_to={}&login_hint={}", enc(&format!("/{}", "r".repeat(4000))), "h".repeat(256));
    let flooder = client_from([127, 0, 0, 2]);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (http, url) = (flooder.clone(), flood_url.clone());
        tasks.push(tokio::spawn(async move {
            let mut limited = 0;
            for _ in 0..300 {
                let r = http.get(&url).send().await.unwrap();
                match r.status() {
                    StatusCode::TOO_MANY_REQUESTS => limited += 1,
                    s if s.is_redirection() => {}
                    s => panic!("flood answered {s}"),
                }
            }
            limited
        }));
    }
    let mut logins = 0;
    while logins < 10 || !tasks.iter().all(|t| t.is_finished()) {
        let b = signer();
        let (resp, landed) = b.visit(&format!("{base}/login/{conn}?login_hint=alice")).await;
        assert_eq!(resp.status(), StatusCode::OK, "login {logins} during the flood ended at {landed}");
        let auth = b.http.get(format!("{base}/auth")).send().await.unwrap();
        assert_eq!(auth.status(), StatusCode::OK, "login {logins} during the flood made a session");
        logins += 1;
        assert!(logins < 500, "the flood did not end");
    }
    let mut limited = 0;
    for t in tasks {
        limited += t.await.unwrap();
    }
    let (rss_after, peak) = rss_kb(child.0.id());
    eprintln!(
        "flood (through nginx: {through_nginx}): {limited} of 2400 refused with 429; {logins} logins completed meanwhile; RSS {rss_before} kB before, {rss_after} kB after, peak {peak} kB"
    );
    assert!(limited >= 1500, "the flood is throttled: {limited} refused");
    assert!(peak.saturating_sub(rss_before) < 32 * 1024, "peak RSS grew by {} kB (before {rss_before} kB, peak {peak} kB)", peak - rss_before);
}

/// A child process killed when dropped, also when the test fails half-way.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
