//! Several replicas on one PostgreSQL and one Redis: a login started on one completes on
//! the other, a logout or a user removal on one is refused by `/auth` on the other within
//! a second, a connection turned off on one leaves the other's login page. And Redis
//! going away: `/auth` fails closed (503), `/readyz` names Redis, logins show an error
//! page, and all of it recovers by itself, keeping the sessions Redis kept.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use ssogate::clock::Clock;
use ssogate::state::cache::{Cached, SessionCache};
use ssogate::state::redis::{feed, Redis, RedisSessions};
use ssogate::state::{Session, Sessions};

use crate::cli::spawn_gateway;
use crate::login::{setup_with, Browser};
use crate::peers::oidc_provider;
use crate::support::{PgDb, TOKEN};

/// The shared Redis the tests use (scripts/test starts it at 127.0.0.1:6379).
pub fn redis_url() -> String {
    std::env::var("SSOGATE_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into())
}

/// A key prefix of one test on the shared Redis; everything under it is deleted on drop.
pub struct RedisPrefix(pub String);

impl RedisPrefix {
    pub fn new() -> Self {
        RedisPrefix(format!("ssogate-it:{}:", ssogate::id::token(8)))
    }
}

impl Drop for RedisPrefix {
    fn drop(&mut self) {
        if let Ok(mut c) = redis::Client::open(redis_url()).and_then(|c| c.get_connection()) {
            let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{}*", self.0)).query(&mut c).unwrap_or_default();
            if !keys.is_empty() {
                let _: redis::RedisResult<i64> = redis::cmd("DEL").arg(keys).query(&mut c);
            }
        }
    }
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A redis-server of the test's own on a free loopback port, without persistence;
/// killed on drop.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    stopped: bool,
}

fn spawn_redis(port: u16, extra: &[&str]) -> Child {
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server must be installed (scripts/test installs it)");
    let url = format!("redis://127.0.0.1:{port}/0");
    let start = Instant::now();
    // Up means answering, even if only to say a password is needed.
    let answers = || match redis::Client::open(url.as_str()).and_then(|c| c.get_connection()).and_then(|mut c| redis::cmd("PING").query::<String>(&mut c)) {
        Ok(_) => true,
        Err(e) => e.code().is_some(),
    };
    while !answers() {
        assert!(start.elapsed() < Duration::from_secs(10), "redis-server on port {port} did not answer");
        std::thread::sleep(Duration::from_millis(25));
    }
    child
}

impl RedisServer {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// With extra redis-server arguments.
    pub fn start_with(extra: &[&str]) -> Self {
        let port = free_port();
        RedisServer { port, child: Some(spawn_redis(port, extra)), stopped: false }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        assert!(Command::new("kill").args([sig, &pid]).status().unwrap().success());
    }

    /// SIGSTOP: unreachable, its data kept.
    pub fn freeze(&mut self) {
        self.signal("-STOP");
        self.stopped = true;
    }

    /// SIGCONT.
    pub fn thaw(&mut self) {
        self.signal("-CONT");
        self.stopped = false;
    }

    /// SIGKILL: gone, and its data with it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// A new, empty redis-server on the same port.
    pub fn restart(&mut self) {
        self.kill();
        self.child = Some(spawn_redis(self.port, &[]));
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if self.stopped {
            // A stopped process must be continued before it can die.
            self.thaw();
        }
        self.kill();
    }
}

/// A child process killed when dropped, also when the test fails half-way.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Evaluates `cond` every 25 ms until it holds; fails after `within`. Gives how long it took.
macro_rules! until {
    ($within:expr, $what:expr, $cond:expr) => {{
        let start = Instant::now();
        loop {
            if $cond {
                break start.elapsed();
            }
            assert!(start.elapsed() < $within, "{}: not within {:?}", $what, $within);
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }};
}

/// Follows a login from `start` hop by hop; returns the final response, its URL and the
/// session cookie value that was set on the way.
async fn login_through(b: &Browser, start: &str) -> (StatusCode, String, String) {
    let mut url = start.to_string();
    let mut session = None;
    for _ in 0..15 {
        let r = b.http.get(&url).send().await.unwrap();
        for c in r.headers().get_all("set-cookie") {
            if let Some(v) = c.to_str().unwrap().strip_prefix("ssogate_session=") {
                session = Some(v.split(';').next().unwrap().to_string());
            }
        }
        if !r.status().is_redirection() {
            return (r.status(), url, session.expect("a session cookie was set"));
        }
        url = reqwest::Url::parse(&url).unwrap().join(r.headers()["location"].to_str().unwrap()).unwrap().to_string();
    }
    panic!("too many redirects at {url}");
}

async fn auth(base: &str, session: &str) -> StatusCode {
    let c = reqwest::Client::new();
    match c.get(format!("{base}/auth")).header("cookie", format!("ssogate_session={session}")).timeout(Duration::from_secs(5)).send().await {
        Ok(r) => r.status(),
        Err(_) => StatusCode::GATEWAY_TIMEOUT,
    }
}

async fn get(url: &str) -> (StatusCode, String) {
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).timeout(Duration::from_secs(10)).build().unwrap();
    let r = http.get(url).send().await.unwrap();
    (r.status(), r.text().await.unwrap())
}

#[tokio::test]
async fn two_replicas_share_logins_logouts_and_connections() {
    let db = PgDb::new().await;
    let prefix = RedisPrefix::new();
    // Both replicas sit behind one public URL (a load balancer would): B's.
    let (port_a, port_b) = (free_port(), free_port());
    let (base_a, base_b) = (format!("http://127.0.0.1:{port_a}"), format!("http://127.0.0.1:{port_b}"));
    let conn = "con_shared";
    let (idp, _idp_dir) = oidc_provider(&json!({
        "clients": [{"client_id": "gateway", "client_secret": "gateway-secret-0123456789",
                     "redirect_uris": [format!("{base_b}/oidc/{conn}/callback")], "token_endpoint_auth_method": "client_secret_basic"}],
        "accounts": {"alice": {"email": "alice@example.test", "email_verified": true, "name": "Alice", "groups": ["staff"]}},
        "pkce_methods": ["S256"]
    }));
    let master_key = "ab".repeat(32);
    let redis = redis_url();
    let shared = |port: u16| -> Vec<(&'static str, String)> {
        vec![
            ("SSOGATE_LISTEN", format!("127.0.0.1:{port}")),
            ("SSOGATE_PUBLIC_URL", base_b.clone()),
            ("SSOGATE_STORE__URL", db.url.clone()),
            ("SSOGATE_STATE__URL", redis.clone()),
            ("SSOGATE_STATE__PREFIX", prefix.0.clone()),
            ("SSOGATE_MASTER_KEY", master_key.clone()),
            ("SSOGATE_ADMIN_TOKEN", TOKEN.to_string()),
        ]
    };
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (env_a, env_b) = (shared(port_a), shared(port_b));
    let ra: Vec<(&str, &str)> = env_a.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let rb: Vec<(&str, &str)> = env_b.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (a, got_a, _, logs_a) = spawn_gateway(dir_a.path(), &ra);
    let a = Killed(a);
    let (b, got_b, _, logs_b) = spawn_gateway(dir_b.path(), &rb);
    let b = Killed(b);
    assert_eq!((got_a.as_str(), got_b.as_str()), (base_a.as_str(), base_b.as_str()));

    // The connection is made on A (PostgreSQL holds it).
    let http = reqwest::Client::new();
    let issuer = idp.ready["issuer"].as_str().unwrap();
    let body = json!({"id": conn, "display_name": "Shared IdP", "protocol": "oidc", "create_users": true,
        "oidc": {"issuer": issuer, "client_id": "gateway", "client_secret": "gateway-secret-0123456789"}});
    let r = http.post(format!("{base_a}/api/v1/admin/connections")).bearer_auth(TOKEN).json(&body).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    for base in [&base_a, &base_b] {
        assert_eq!(get(&format!("{base}/readyz")).await.0, StatusCode::OK, "{base}");
    }

    // Started on A, finished on B: the flow state is in Redis.
    let browser = Browser::new();
    let (status, landed, session) = login_through(&browser, &format!("{base_a}/login/{conn}?login_hint=alice")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(landed, format!("{base_b}/"), "the callback and the signed-in page are B's");
    assert_eq!(auth(&base_a, &session).await, StatusCode::OK, "A knows the session B made");
    assert_eq!(auth(&base_b, &session).await, StatusCode::OK);
    assert_eq!(auth(&base_b, &session).await, StatusCode::OK, "B answers from its cache now");

    // Logout on A: B refuses the cookie within a second.
    let r = browser.http.post(format!("{base_a}/logout")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let took = until!(Duration::from_secs(1), "B refuses a session ended on A", auth(&base_b, &session).await == StatusCode::UNAUTHORIZED);
    assert_eq!(auth(&base_a, &session).await, StatusCode::UNAUTHORIZED);
    eprintln!("logout on A reached B's /auth in {took:?}");

    // An admin removing the user on A ends the user's session on B.
    let (status, _, session) = login_through(&Browser::new(), &format!("{base_b}/login/{conn}?login_hint=alice")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(auth(&base_b, &session).await, StatusCode::OK);
    assert_eq!(auth(&base_b, &session).await, StatusCode::OK);
    let users: serde_json::Value = http.get(format!("{base_a}/api/v1/admin/users")).bearer_auth(TOKEN).send().await.unwrap().json().await.unwrap();
    let uid = users[0]["id"].as_str().unwrap().to_string();
    let r = http.delete(format!("{base_a}/api/v1/admin/users/{uid}")).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    until!(Duration::from_secs(1), "B refuses a session of a user removed on A", auth(&base_b, &session).await == StatusCode::UNAUTHORIZED);

    // A connection turned off on A leaves B's login page, and B refuses to start it.
    let (_, page) = get(&format!("{base_b}/login")).await;
    assert!(page.contains("Sign in with Shared IdP"), "{page}");
    let r = http
        .patch(format!("{base_a}/api/v1/admin/connections/{conn}"))
        .bearer_auth(TOKEN)
        .header("If-Match", "*")
        .json(&json!({"active": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    until!(Duration::from_secs(1), "the login page of B drops the connection", !get(&format!("{base_b}/login")).await.1.contains("Shared IdP"));
    until!(Duration::from_secs(5), "B refuses to start a login with it", get(&format!("{base_b}/login/{conn}")).await.0 == StatusCode::NOT_FOUND);

    drop((a, b));
    let logs = logs_a.lock().unwrap().join("\n") + &logs_b.lock().unwrap().join("\n");
    assert!(!logs.contains(&session), "a session id reached the logs");
    assert!(logs.contains("state in redis"), "the replicas said where their state is");
}

async fn allowed(base: &str, session: &str, groups: &str) -> StatusCode {
    let c = reqwest::Client::new();
    let url = format!("{base}/auth?allowed_groups={groups}");
    match c.get(url).header("cookie", format!("ssogate_session={session}")).timeout(Duration::from_secs(5)).send().await {
        Ok(r) => r.status(),
        Err(_) => StatusCode::GATEWAY_TIMEOUT,
    }
}

#[tokio::test]
async fn an_admin_change_on_one_replica_binds_live_sessions_on_the_other() {
    let db = PgDb::new().await;
    let prefix = RedisPrefix::new();
    let (port_a, port_b) = (free_port(), free_port());
    let (base_a, base_b) = (format!("http://127.0.0.1:{port_a}"), format!("http://127.0.0.1:{port_b}"));
    let conn = "con_shared";
    let (idp, _idp_dir) = oidc_provider(&json!({
        "clients": [{"client_id": "gateway", "client_secret": "gateway-secret-0123456789",
                     "redirect_uris": [format!("{base_b}/oidc/{conn}/callback")], "token_endpoint_auth_method": "client_secret_basic"}],
        "accounts": {"alice": {"email": "alice@example.test", "email_verified": true, "name": "Alice"}},
        "pkce_methods": ["S256"]
    }));
    let master_key = "cd".repeat(32);
    let redis = redis_url();
    let shared = |port: u16| -> Vec<(&'static str, String)> {
        vec![
            ("SSOGATE_LISTEN", format!("127.0.0.1:{port}")),
            ("SSOGATE_PUBLIC_URL", base_b.clone()),
            ("SSOGATE_STORE__URL", db.url.clone()),
            ("SSOGATE_STATE__URL", redis.clone()),
            ("SSOGATE_STATE__PREFIX", prefix.0.clone()),
            ("SSOGATE_MASTER_KEY", master_key.clone()),
            ("SSOGATE_ADMIN_TOKEN", TOKEN.to_string()),
        ]
    };
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (env_a, env_b) = (shared(port_a), shared(port_b));
    let ra: Vec<(&str, &str)> = env_a.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let rb: Vec<(&str, &str)> = env_b.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (a, _, _, _) = spawn_gateway(dir_a.path(), &ra);
    let _a = Killed(a);
    let (b, _, _, _) = spawn_gateway(dir_b.path(), &rb);
    let _b = Killed(b);
    let http = reqwest::Client::new();
    let admin = |method: reqwest::Method, path: String| http.request(method, format!("{base_a}/api/v1/admin{path}")).bearer_auth(TOKEN);
    let issuer = idp.ready["issuer"].as_str().unwrap();
    let body = json!({"id": conn, "display_name": "Shared IdP", "protocol": "oidc", "create_users": true,
        "oidc": {"issuer": issuer, "client_id": "gateway", "client_secret": "gateway-secret-0123456789"}});
    assert_eq!(admin(reqwest::Method::POST, "/connections".into()).json(&body).send().await.unwrap().status(), StatusCode::CREATED);
    let g: serde_json::Value = admin(reqwest::Method::POST, "/groups".into()).json(&json!({"name": "Ops"})).send().await.unwrap().json().await.unwrap();
    let gid = g["id"].as_str().unwrap().to_string();
    for base in [&base_a, &base_b] {
        until!(Duration::from_secs(10), "ready", get(&format!("{base}/readyz")).await.0 == StatusCode::OK);
    }

    // Alice's first login creates her; she joins Ops on A; her session starts after.
    let (status, _, _) = login_through(&Browser::new(), &format!("{base_a}/login/{conn}?login_hint=alice")).await;
    assert_eq!(status, StatusCode::OK);
    let users: serde_json::Value = admin(reqwest::Method::GET, "/users".into()).send().await.unwrap().json().await.unwrap();
    let uid = users[0]["id"].as_str().unwrap().to_string();
    assert_eq!(admin(reqwest::Method::PUT, format!("/groups/{gid}/members/{uid}")).send().await.unwrap().status(), StatusCode::NO_CONTENT);
    let (status, _, session) = login_through(&Browser::new(), &format!("{base_a}/login/{conn}?login_hint=alice")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(allowed(&base_b, &session, "ops").await, StatusCode::OK);
    assert_eq!(allowed(&base_b, &session, "ops").await, StatusCode::OK, "B answers from its cache now");

    // The membership removed on A: B refuses the group within a second.
    assert_eq!(admin(reqwest::Method::DELETE, format!("/groups/{gid}/members/{uid}")).send().await.unwrap().status(), StatusCode::NO_CONTENT);
    let took = until!(Duration::from_secs(1), "B refuses a group removed on A", allowed(&base_b, &session, "ops").await == StatusCode::FORBIDDEN);
    eprintln!("a membership removed on A reached B's /auth in {took:?}");
    assert_eq!(allowed(&base_a, &session, "ops").await, StatusCode::FORBIDDEN);
    assert_eq!(auth(&base_b, &session).await, StatusCode::OK, "still signed in");

    // The connection turned off on A: B ends the session within a second.
    assert_eq!(auth(&base_b, &session).await, StatusCode::OK);
    assert_eq!(admin(reqwest::Method::POST, format!("/connections/{conn}/deactivate")).send().await.unwrap().status(), StatusCode::OK);
    until!(Duration::from_secs(1), "B refuses a session of a connection turned off on A", auth(&base_b, &session).await == StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn redis_outage_fails_closed_and_recovers_by_itself() {
    let mut server = RedisServer::start();
    let url = server.url();
    let s = setup_with(&[("SSOGATE_STATE__URL", &url), ("SSOGATE_STATE__TIMEOUT_MS", "300")], json!({}), json!({})).await;
    let base = s.gw.base.clone();
    let (status, _, session) = login_through(&Browser::new(), &format!("{base}/login/{}?login_hint=alice", s.conn)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(auth(&base, &session).await, StatusCode::OK);
    assert_eq!(get(&format!("{base}/readyz")).await.0, StatusCode::OK);

    // A login in progress: at the IdP's redirect back to the gateway.
    let b = Browser::new();
    let callback_prefix = format!("{base}/oidc/{}/callback", s.conn);
    let mut url = format!("{base}/login/{}?login_hint=alice", s.conn);
    let callback = loop {
        let r = b.http.get(&url).send().await.unwrap();
        assert!(r.status().is_redirection(), "{url}: {}", r.status());
        url = reqwest::Url::parse(&url).unwrap().join(r.headers()["location"].to_str().unwrap()).unwrap().to_string();
        if url.starts_with(&callback_prefix) {
            break url;
        }
    };

    // An app of the gateway's OpenID Provider (its registration is in the SQL store).
    let (st, app) =
        s.gw.admin(reqwest::Method::POST, "/clients", Some(json!({"client_id": "app", "name": "App", "redirect_uris": ["https://app.example.test/cb"]}))).await;
    assert_eq!(st, StatusCode::CREATED, "{app}");
    let app_secret = app["client_secret"].as_str().unwrap().to_string();

    // Unreachable, data kept (SIGSTOP): 503, never 200 and never a redirect.
    server.freeze();
    until!(Duration::from_secs(3), "/auth answers 503 while Redis does not answer", auth(&base, &session).await == StatusCode::SERVICE_UNAVAILABLE);
    for _ in 0..3 {
        assert_eq!(auth(&base, &session).await, StatusCode::SERVICE_UNAVAILABLE, "and stays 503");
    }
    let (st, body) = get(&format!("{base}/readyz")).await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("redis"), "{body}");
    // Nor "signed out" to the other readers of a session (the client would drop it).
    let r = reqwest::Client::new().get(format!("{base}/oauth2/userinfo")).header("cookie", format!("ssogate_session={session}")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE, "oauth2-proxy userinfo");
    let r = reqwest::Client::new().get(format!("{base}/userinfo")).bearer_auth(ssogate::id::token(32)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE, "OpenID Provider userinfo");
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["error"], "temporarily_unavailable");
    let r = reqwest::Client::new()
        .post(format!("{base}/token"))
        .basic_auth("app", Some(&app_secret))
        .form(&[("grant_type", "authorization_code"), ("code", "any"), ("redirect_uri", "https://app.example.test/cb")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE, "OpenID Provider token endpoint: a code cannot be told unknown");
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["error"], "temporarily_unavailable");
    let (st, page) = get(&format!("{base}/login/{}", s.conn)).await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "a login cannot start: {page}");
    assert!(page.contains("Sign-in is unavailable right now"), "{page}");
    let r = b.http.get(&callback).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE, "a login cannot finish");
    assert!(r.text().await.unwrap().contains("Sign-in is unavailable right now"));
    // Nor can a sign-out pretend to have ended the session.
    let r = reqwest::Client::new().post(format!("{base}/logout")).header("cookie", format!("ssogate_session={session}")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.headers().get("set-cookie").is_none(), "the cookie stays, so signing out can be tried again");
    assert!(r.text().await.unwrap().contains("you are still signed in"));
    // A user cannot be removed while their sessions cannot be ended.
    let uid = s.users().await[0]["id"].as_str().unwrap().to_string();
    let (st, _) = s.gw.admin(reqwest::Method::DELETE, &format!("/users/{uid}"), None).await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(s.users().await.len(), 1, "the user is still there, so is the way to end their sessions");

    // Back: the session Redis kept works again, with nobody restarting anything.
    server.thaw();
    until!(Duration::from_secs(5), "/auth answers 200 again for the kept session", auth(&base, &session).await == StatusCode::OK);
    assert_eq!(get(&format!("{base}/readyz")).await.0, StatusCode::OK);

    // Killed (its data is gone) and restarted on the same port.
    server.kill();
    until!(Duration::from_secs(3), "/auth answers 503 while Redis is gone", auth(&base, &session).await == StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(get(&format!("{base}/readyz")).await.0, StatusCode::SERVICE_UNAVAILABLE);
    server.restart();
    until!(Duration::from_secs(10), "/readyz recovers", get(&format!("{base}/readyz")).await.0 == StatusCode::OK);
    assert_eq!(auth(&base, &session).await, StatusCode::UNAUTHORIZED, "the new Redis never held that session");
    let (status, _, again) = login_through(&Browser::new(), &format!("{base}/login/{}?login_hint=alice", s.conn)).await;
    assert_eq!(status, StatusCode::OK, "logins work again");
    assert_eq!(auth(&base, &again).await, StatusCode::OK);
}

#[tokio::test]
async fn a_gateway_started_before_redis_waits_for_it() {
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}/0");
    let gw = crate::support::Gateway::start_in(Arc::new(tempfile::tempdir().unwrap()), &[("SSOGATE_STATE__URL", &url)]).await;
    let (st, body) = get(&format!("{}/readyz", gw.base)).await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("redis"), "{body}");
    assert_eq!(auth(&gw.base, &ssogate::id::token(32)).await, StatusCode::SERVICE_UNAVAILABLE, "no answer is never a no, nor a yes");
    assert_eq!(get(&format!("{}/healthz", gw.base)).await.0, StatusCode::OK, "the process itself is fine");
    let mut server = RedisServer { port, child: None, stopped: false };
    server.restart();
    until!(Duration::from_secs(10), "/readyz once Redis is there", get(&format!("{}/readyz", gw.base)).await.0 == StatusCode::OK);
    assert_eq!(auth(&gw.base, &ssogate::id::token(32)).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_redis_password_stays_out_of_the_logs() {
    let password = "redis-password-7f3a9c";
    let server = RedisServer::start_with(&["--requirepass", password]);
    let dir = tempfile::tempdir().unwrap();
    let url = format!("redis://:{password}@127.0.0.1:{}/0", server.port);
    let (child, base, out, err) = spawn_gateway(dir.path(), &[("SSOGATE_STATE__URL", &url), ("SSOGATE_LOG__LEVEL", "debug")]);
    let child = Killed(child);
    until!(Duration::from_secs(10), "ready with the password", get(&format!("{base}/readyz")).await.0 == StatusCode::OK);
    drop(child);
    let logs = err.lock().unwrap().join("\n") + &out.lock().unwrap().join("\n");
    assert!(logs.contains("state in redis") && logs.contains(&format!("redis://:***@127.0.0.1:{}/0", server.port)), "{logs}");
    assert!(!logs.contains(password), "the Redis password reached the logs");
}

#[tokio::test]
async fn a_dropped_invalidation_feed_turns_the_session_cache_off() {
    let server = RedisServer::start();
    let clock = Clock::system();
    let redis = Redis::open(&server.url(), None, "ssogate:", Duration::from_secs(1)).unwrap();
    let cache = Arc::new(SessionCache::new(60_000));
    let sessions = Cached::new(
        Arc::new(RedisSessions::new(redis.clone(), clock.clone(), ssogate::secret::Cipher::from_text(&"5".repeat(64)).unwrap())),
        cache.clone(),
        feed(&redis, cache.clone(), clock.clone()),
    );
    until!(Duration::from_secs(5), "the feed is heard", cache.live());
    let now = clock.now();
    let id = ssogate::id::token(32);
    sessions
        .create(&Session {
            id: id.clone(),
            user_id: "usr_1".into(),
            connection_id: "c".into(),
            username: "u".into(),
            email: None,
            email_verified: false,
            name: None,
            groups: vec![],
            created_at: now,
            expires_at: now + 600_000,
            idle_timeout_ms: 600_000,
            last_seen: now,
            profile: Default::default(),
            upstream_token: None,
            auth_time: None,
        })
        .await
        .unwrap();
    assert!(sessions.touch(&id, now).await.unwrap().is_some());
    // Deleted behind the feed's back (no message): the cache still answers, as designed.
    let mut c = redis::Client::open(server.url()).unwrap().get_connection().unwrap();
    let key = format!("ssogate:s:{}", hex::encode(ssogate::state::cache::key(&id)));
    assert_eq!(redis::cmd("DEL").arg(&key).query::<i64>(&mut c).unwrap(), 1);
    assert!(sessions.touch(&id, now).await.unwrap().is_some(), "served from the cache");
    // The subscription drops: the cache must stop answering at once, not after its TTL.
    let killed: i64 = redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg("pubsub").query(&mut c).unwrap();
    assert_eq!(killed, 1);
    until!(Duration::from_millis(500), "the cache stops answering", sessions.touch(&id, now).await.unwrap().is_none());
    until!(Duration::from_secs(5), "the feed comes back by itself", cache.live());
}

/// A test CA and a certificate from it for `localhost` only (openssl CLI).
fn tls_material(dir: &std::path::Path) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl (scripts/test installs it)");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    run(&[&["req", "-x509"][..], &ec, &["-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=ssogate test CA"]].concat());
    run(&[&["req"][..], &ec, &["-keyout", "redis.key", "-out", "redis.csr", "-subj", "/CN=localhost"]].concat());
    std::fs::write(dir.join("san.ext"), "subjectAltName=DNS:localhost\n").unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "redis.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "redis.pem",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    ]);
}

/// `rediss://`: the state works over TLS when Redis's certificate chains to
/// `state.tls_ca_file`, and a gateway that cannot verify it (the system's trust store
/// does not know the test CA) talks to nobody: not ready, `/auth` 503.
#[tokio::test]
async fn state_over_tls_verifies_the_redis_certificate() {
    let dir = tempfile::tempdir().unwrap();
    tls_material(dir.path());
    let p = |f: &str| dir.path().join(f).to_string_lossy().to_string();
    let port = free_port();
    let mut child = Command::new("redis-server")
        .args(["--port", "0", "--tls-port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .args(["--tls-cert-file", &p("redis.pem"), "--tls-key-file", &p("redis.key"), "--tls-ca-cert-file", &p("ca.pem"), "--tls-auth-clients", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server");
    struct Kill<'a>(&'a mut Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _kill = Kill(&mut child);
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < Duration::from_secs(10), "redis-server with TLS did not listen");
        std::thread::sleep(Duration::from_millis(25));
    }

    let url = format!("rediss://localhost:{port}/0");
    let ca = p("ca.pem");
    let s = setup_with(&[("SSOGATE_STATE__URL", &url), ("SSOGATE_STATE__TLS_CA_FILE", &ca)], json!({}), json!({})).await;
    let base = s.gw.base.clone();
    until!(Duration::from_secs(10), "/readyz over TLS", get(&format!("{base}/readyz")).await.0 == StatusCode::OK);
    let (status, _, session) = login_through(&Browser::new(), &format!("{base}/login/{}?login_hint=alice", s.conn)).await;
    assert_eq!(status, StatusCode::OK, "a login whose state went through Redis over TLS");
    assert_eq!(auth(&base, &session).await, StatusCode::OK);

    // The same Redis, not verifiable: nothing is sent to it.
    let gw = crate::support::Gateway::start_in(Arc::new(tempfile::tempdir().unwrap()), &[("SSOGATE_STATE__URL", &url)]).await;
    let (st, body) = get(&format!("{}/readyz", gw.base)).await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "an unverifiable Redis is not ready: {body}");
    assert_eq!(auth(&gw.base, &session).await, StatusCode::SERVICE_UNAVAILABLE, "and /auth fails closed, even for a session Redis holds");
    // Nor one whose certificate names another host (it names localhost, not 127.0.0.1).
    let other = format!("rediss://127.0.0.1:{port}/0");
    let gw =
        crate::support::Gateway::start_in(Arc::new(tempfile::tempdir().unwrap()), &[("SSOGATE_STATE__URL", &other), ("SSOGATE_STATE__TLS_CA_FILE", &ca)]).await;
    assert_eq!(auth(&gw.base, &session).await, StatusCode::SERVICE_UNAVAILABLE, "a certificate for another name is refused");
    // And the reason is the certificate, said in the error the logs carry.
    let cipher = || ssogate::secret::Cipher::from_text(&"5".repeat(64)).unwrap();
    for (url, ca, want) in [(&url, None, "UnknownIssuer"), (&other, Some(std::fs::read(&ca).unwrap()), "not valid for name")] {
        let redis = Redis::open(url, ca, "ssogate:", Duration::from_secs(2)).unwrap();
        let err = RedisSessions::new(redis, Clock::system(), cipher()).touch("x", 0).await.unwrap_err().to_string();
        assert!(err.contains(want), "{url}: {err}");
    }
}
