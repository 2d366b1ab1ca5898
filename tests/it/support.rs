//! Test support: a gateway on port 0 with its own data dir, and a client for it.

use std::sync::Arc;

use reqwest::{Method, StatusCode};
use serde_json::Value;
use ssogate::app::App;
use ssogate::clock::Clock;
use ssogate::config::Config;
use ssogate::server;
use tokio::sync::oneshot;

/// The admin token every test gateway uses.
pub const TOKEN: &str = "test-admin-token-0123456789";

/// A PostgreSQL database made for one test and dropped after.
pub struct PgDb {
    pub url: String,
    name: String,
}

/// The PostgreSQL server tests use (CI starts it at 127.0.0.1:5432 with trust auth).
pub fn pg_admin_url() -> String {
    std::env::var("SSOGATE_TEST_POSTGRES").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

impl PgDb {
    pub async fn new() -> PgDb {
        use sqlx::Connection;
        let name = format!("ssogate_it_{}", ssogate::id::new("db").trim_start_matches("db_"));
        let mut conn = sqlx::PgConnection::connect(&pg_admin_url())
            .await
            .expect("PostgreSQL must run at 127.0.0.1:5432 (see .ci/run); set SSOGATE_TEST_POSTGRES to use another");
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.unwrap();
        let mut url = url::Url::parse(&pg_admin_url()).unwrap();
        url.set_path(&name);
        PgDb { url: url.to_string(), name }
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop on a thread of its own: Drop cannot be async, and the test runtime may be gone.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                use sqlx::Connection;
                if let Ok(mut c) = sqlx::PgConnection::connect(&pg_admin_url()).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut c).await;
                }
            })
        })
        .join();
    }
}

/// A running gateway.
pub struct Gateway {
    pub base: String,
    pub app: Arc<App>,
    pub dir: Arc<tempfile::TempDir>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    http: reqwest::Client,
}

/// Configuration for a gateway in `dir`, with extra `SSOGATE_*` pairs.
pub fn config(dir: &std::path::Path, extra: &[(&str, &str)]) -> Config {
    let mut env: Vec<(String, String)> = vec![
        ("SSOGATE_DATA_DIR".into(), dir.join("data").display().to_string()),
        ("SSOGATE_CERTS_DIR".into(), dir.join("certs").display().to_string()),
        ("SSOGATE_ADMIN_TOKEN".into(), TOKEN.into()),
        ("SSOGATE_LISTEN".into(), "127.0.0.1:0".into()),
    ];
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Config::load(None, env).unwrap()
}

impl Gateway {
    /// A gateway on SQLite in a fresh temporary folder.
    pub async fn start() -> Gateway {
        Self::start_in(Arc::new(tempfile::tempdir().unwrap()), &[]).await
    }

    /// A gateway in `dir` (reuse it to test a restart) with extra settings.
    pub async fn start_in(dir: Arc<tempfile::TempDir>, extra: &[(&str, &str)]) -> Gateway {
        Self::start_with(dir, extra, Clock::system(), None).await
    }

    /// A gateway on `clock` (pin it to test expiry); `public_host` replaces 127.0.0.1 in
    /// its public URL, for tests whose client resolves that name to loopback itself.
    pub async fn start_with(dir: Arc<tempfile::TempDir>, extra: &[(&str, &str)], clock: Clock, public_host: Option<&str>) -> Gateway {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let public = match public_host {
            Some(h) => format!("http://{h}:{}", listener.local_addr().unwrap().port()),
            None => base.clone(),
        };
        let mut extra: Vec<(&str, &str)> = extra.to_vec();
        extra.push(("SSOGATE_PUBLIC_URL", &public));
        let cfg = config(dir.path(), &extra);
        let (app, _) = App::start(cfg, clock).await.unwrap();
        let app = Arc::new(app);
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(server::serve(listener, app.clone(), async {
            let _ = rx.await;
        }));
        let task = tokio::spawn(async move {
            let _ = task.await;
        });
        Gateway { base, app, dir, stop: Some(tx), task: Some(task), http: reqwest::Client::new() }
    }

    /// Stops the server and waits for it.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }

    /// An admin request with a JSON body.
    pub async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        admin_call(&self.http, &self.base, method, path, body).await
    }

    /// An admin GET with another token.
    pub async fn admin_with(&self, token: &str, path: &str) -> (StatusCode, Value) {
        let resp = self.http.get(format!("{}/api/v1/admin{path}", self.base)).bearer_auth(token).send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// A raw request builder on the gateway.
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, format!("{}{path}", self.base))
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// An admin request with a JSON body to the gateway at `base`, with the tests' token; a
/// PATCH of a connection overwrites (`If-Match: *`: tests that are not about concurrency
/// say so). The answer's status and JSON (or its text as a JSON string).
pub async fn admin_call(http: &reqwest::Client, base: &str, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    let overwrite = method == Method::PATCH && path.starts_with("/connections/");
    let mut req = http.request(method, format!("{base}/api/v1/admin{path}")).bearer_auth(TOKEN);
    if overwrite {
        req = req.header("If-Match", "*");
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// A valid custom OIDC connection body.
pub fn oidc_body(name: &str) -> Value {
    serde_json::json!({
        "display_name": name,
        "protocol": "oidc",
        "oidc": {
            "issuer": "https://idp.example.com",
            "client_id": "client-1",
            "client_secret": "the-client-secret-value",
            "authorization_endpoint": "https://idp.example.com/authorize",
            "token_endpoint": "https://idp.example.com/token",
            "jwks_uri": "https://idp.example.com/jwks"
        }
    })
}

/// SAML IdP metadata with one fresh signing certificate.
pub fn saml_metadata(entity_id: &str) -> String {
    use base64::Engine;
    let (cert, _) = ssogate::connection::keypair::generate("idp.test").unwrap();
    let der = openssl::x509::X509::from_pem(cert.as_bytes()).unwrap().to_der().unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    format!(
        r#"<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="{entity_id}">
  <md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">
    <md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{b64}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>
    <md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="https://idp.test/sso"/>
  </md:IDPSSODescriptor>
</md:EntityDescriptor>"#
    )
}

impl Gateway {
    /// A gateway whose state is changed by `adjust` before it serves (to put a failing
    /// store in front of the real one, say).
    pub async fn start_adjusted(extra: &[(&str, &str)], adjust: impl FnOnce(&mut App)) -> Gateway {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let mut extra: Vec<(&str, &str)> = extra.to_vec();
        extra.push(("SSOGATE_PUBLIC_URL", &base));
        let cfg = config(dir.path(), &extra);
        let (mut app, _) = App::start(cfg, Clock::system()).await.unwrap();
        adjust(&mut app);
        let app = Arc::new(app);
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(server::serve(listener, app.clone(), async {
            let _ = rx.await;
        }));
        let task = tokio::spawn(async move {
            let _ = task.await;
        });
        Gateway { base, app, dir, stop: Some(tx), task: Some(task), http: reqwest::Client::new() }
    }

    /// A live session for a made-up user, stored directly; returns its cookie header value.
    pub async fn session_cookie(&self) -> String {
        let now = self.app.clock.now();
        let s = ssogate::state::Session {
            id: ssogate::id::token(32),
            user_id: "usr_test".into(),
            connection_id: "con_test".into(),
            username: "tester".into(),
            email: Some("tester@example.test".into()),
            email_verified: true,
            name: None,
            groups: vec![],
            created_at: now,
            expires_at: now + 3_600_000,
            idle_timeout_ms: 3_600_000,
            last_seen: now,
            upstream_token: None,
            auth_time: None,
            profile: Default::default(),
        };
        self.app.sessions.create(&s).await.unwrap();
        format!("ssogate_session={}", s.id)
    }
}

impl Gateway {
    /// A gateway on `cfg` as given (no test admin token added), with what its start said.
    pub async fn start_config(dir: Arc<tempfile::TempDir>, cfg: Config) -> (Gateway, ssogate::app::Startup) {
        let listener = tokio::net::TcpListener::bind(cfg.listen).await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (app, startup) = App::start(cfg, Clock::system()).await.unwrap();
        let app = Arc::new(app);
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(server::serve(listener, app.clone(), async {
            let _ = rx.await;
        }));
        let task = tokio::spawn(async move {
            let _ = task.await;
        });
        (Gateway { base, app, dir, stop: Some(tx), task: Some(task), http: reqwest::Client::new() }, startup)
    }
}
