//! Declarative configuration, through the real binary: an OIDC connection, a group and a
//! client declared in the file (secrets from a file and from the environment) are in
//! the store at start, marked `managed_by: "config"`; a user logs in through the
//! connection at oidc-provider; the API refuses to change any of them, naming the file;
//! a SIGHUP applies a changed file, refuses a broken one without changing anything, and
//! hands a connection that left the file back to the API, turned off.

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::cli::{spawn_gateway, Lines};
use crate::login::Browser;
use crate::peers::oidc_provider;
use crate::replicas::free_port;
use crate::support::TOKEN;

struct Gateway {
    child: Child,
    base: String,
    logs: Lines,
    http: reqwest::Client,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Gateway {
    async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        crate::support::admin_call(&self.http, &self.base, method, path, body).await
    }

    fn hangup(&self) {
        assert!(Command::new("kill").args(["-HUP", &self.child.id().to_string()]).status().unwrap().success());
    }

    /// Waits for a log line with `needle` after the first `skip` lines.
    async fn log_after(&self, skip: usize, needle: &str) -> String {
        let start = Instant::now();
        loop {
            if let Some(l) = self.logs.lock().unwrap().iter().skip(skip).find(|l| l.contains(needle)) {
                return l.clone();
            }
            assert!(start.elapsed() < Duration::from_secs(20), "no {needle:?} in the log");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    fn lines(&self) -> usize {
        self.logs.lock().unwrap().len()
    }
}

fn write_config(path: &Path, issuer: &str, secret_file: &Path, name: &str, with_connection: bool, with_client: bool) {
    let mut text = String::new();
    if with_connection {
        text.push_str(&format!(
            r#"
[[connections]]
id = "corp"
display_name = "{name}"
protocol = "oidc"
create_users = true
group_sync = true
[connections.oidc]
issuer = "{issuer}"
client_id = "gateway"
client_secret_file = "{}"
"#,
            secret_file.display()
        ));
    }
    text.push_str(
        r#"
[[groups]]
name = "Engineers"
description = "Declared in the file"
"#,
    );
    if with_client {
        text.push_str(
            r#"
[[clients]]
client_id = "app"
name = "Main app"
client_secret_env = "APP_CLIENT_SECRET"
redirect_uris = ["https://app.example.test/cb"]
"#,
        );
    }
    std::fs::write(path, text).unwrap();
}

#[tokio::test]
async fn a_declared_connection_logs_users_in_follows_sighup_and_is_read_only_in_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let (idp, _idp_dir) = oidc_provider(&json!({
        "clients": [{"client_id": "gateway", "client_secret": "gateway-secret-0123456789",
                     "redirect_uris": [format!("{base}/oidc/corp/callback")], "token_endpoint_auth_method": "client_secret_basic"}],
        "accounts": {"alice": {"email": "alice@example.test", "email_verified": true, "name": "Alice", "groups": ["engineers"]}},
        "pkce_methods": ["S256"]
    }));
    let issuer = idp.ready["issuer"].as_str().unwrap().to_string();
    let secret_file = dir.path().join("corp-client-secret");
    std::fs::write(&secret_file, "gateway-secret-0123456789\n").unwrap();
    let file = dir.path().join("ssogate.toml");
    write_config(&file, &issuer, &secret_file, "Corp IdP", true, true);
    let listen = format!("127.0.0.1:{port}");
    let env = [
        ("SSOGATE_CONFIG", file.to_str().unwrap()),
        ("SSOGATE_LISTEN", listen.as_str()),
        ("SSOGATE_PUBLIC_URL", base.as_str()),
        ("SSOGATE_ADMIN_TOKEN", TOKEN),
        ("APP_CLIENT_SECRET", "app-secret-from-the-environment"),
    ];
    let (child, got, _, logs) = spawn_gateway(dir.path(), &env);
    let gw = Gateway { child, base: got, logs, http: reqwest::Client::new() };
    assert_eq!(gw.base, base);

    // In the store at start, marked as the file's.
    let (s, c) = gw.admin(Method::GET, "/connections/corp", None).await;
    assert_eq!(s, StatusCode::OK, "{c}");
    assert_eq!((c["display_name"].as_str(), c["managed_by"].as_str(), c["active"].as_bool()), (Some("Corp IdP"), Some("config"), Some(true)));
    assert_eq!(c["oidc"]["client_secret_set"], true);
    assert!(c["oidc"]["token_endpoint"].as_str().unwrap().starts_with(&issuer), "endpoints from the issuer's discovery: {c}");
    let (_, groups) = gw.admin(Method::GET, "/groups", None).await;
    let eng = groups.as_array().unwrap().iter().find(|g| g["name"] == "Engineers").unwrap().clone();
    assert_eq!(eng["managed_by"], "config");
    let (_, clients) = gw.admin(Method::GET, "/clients", None).await;
    assert_eq!(clients[0]["client_id"], "app");
    assert_eq!(clients[0]["managed_by"], "config");
    // The client's secret came from the environment: the token endpoint takes it.
    let r = gw
        .http
        .post(format!("{base}/token"))
        .basic_auth("app", Some("app-secret-from-the-environment"))
        .form(&[("grant_type", "authorization_code"), ("code", "nope")])
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "invalid_grant", "authenticated, then the code is refused: {body}");

    // A user logs in through it; group sync puts her in the declared group.
    let b = Browser::new();
    let (resp, url) = b.visit(&format!("{base}/login/corp?login_hint=alice")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(url, format!("{base}/"));
    let (_, users) = gw.admin(Method::GET, "/users", None).await;
    let alice = &users[0];
    assert!(alice["groups"].as_array().unwrap().iter().any(|g| g["name"] == "Engineers"), "{alice}");

    // The API refuses to change what the file declares, and says where to change it.
    let named = file.display().to_string();
    for (method, path, body) in [
        (Method::PATCH, "/connections/corp".to_string(), Some(json!({"display_name": "Edited"}))),
        (Method::DELETE, "/connections/corp".to_string(), None),
        (Method::POST, "/connections/corp/deactivate".to_string(), None),
        (Method::PATCH, format!("/groups/{}", eng["id"].as_str().unwrap()), Some(json!({"description": "Edited"}))),
        (Method::DELETE, format!("/groups/{}", eng["id"].as_str().unwrap()), None),
        (Method::PATCH, "/clients/app".to_string(), Some(json!({"rotate_secret": true}))),
        (Method::DELETE, "/clients/app".to_string(), None),
    ] {
        let (s, e) = gw.admin(method.clone(), &path, body).await;
        assert_eq!(s, StatusCode::CONFLICT, "{method} {path}: {e}");
        assert_eq!(e["error"], "managed_by_config");
        let m = e["message"].as_str().unwrap();
        assert!(m.contains(&named) && m.contains("SIGHUP"), "{method} {path}: {m}");
    }
    let (_, c) = gw.admin(Method::GET, "/connections/corp", None).await;
    assert_eq!((c["display_name"].as_str(), c["active"].as_bool()), (Some("Corp IdP"), Some(true)), "nothing changed");
    // Memberships of a declared group stay the API's.
    let (s, _) = gw.admin(Method::PUT, &format!("/groups/{}/members/{}", eng["id"].as_str().unwrap(), alice["id"].as_str().unwrap()), None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);

    // SIGHUP with a changed file: renamed, the client gone.
    write_config(&file, &issuer, &secret_file, "Corp IdP (renamed)", true, false);
    let seen = gw.lines();
    gw.hangup();
    gw.log_after(seen, "configuration reloaded").await;
    let (_, c) = gw.admin(Method::GET, "/connections/corp", None).await;
    assert_eq!((c["display_name"].as_str(), c["managed_by"].as_str()), (Some("Corp IdP (renamed)"), Some("config")), "{c}");
    let (s, _) = gw.admin(Method::GET, "/clients/app", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "a client that left the file is deleted");
    let (_, audit) = gw.admin(Method::GET, "/audit?actor=config&target=corp", None).await;
    assert!(audit.as_array().unwrap().iter().any(|e| e["action"] == "connection.update"), "{audit}");
    // The session the user has survives a rename.
    let r = b.http.get(format!("{base}/auth")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // A broken file changes nothing: its problems are logged.
    std::fs::write(
        &file,
        "[[connections]]\nid = \"corp\"\ndisplay_name = \"Broken\"\nprotocol = \"oidc\"\n[connections.oidc]\nclient_secret = \"inline-secret-0123456\"\n",
    )
    .unwrap();
    let seen = gw.lines();
    gw.hangup();
    let line = gw.log_after(seen, "configuration reload refused").await;
    assert!(line.contains("connections[0].oidc.client_secret") && !line.contains("inline-secret-0123456"), "{line}");
    let (_, c) = gw.admin(Method::GET, "/connections/corp", None).await;
    assert_eq!((c["display_name"].as_str(), c["active"].as_bool()), (Some("Corp IdP (renamed)"), Some(true)));

    // The connection leaves the file: turned off, its sessions ended, handed to the API.
    write_config(&file, &issuer, &secret_file, "unused", false, false);
    let seen = gw.lines();
    gw.hangup();
    gw.log_after(seen, "configuration reloaded").await;
    let (_, c) = gw.admin(Method::GET, "/connections/corp", None).await;
    assert_eq!((c["active"].as_bool(), c["managed_by"].clone()), (Some(false), Value::Null), "{c}");
    let r = b.http.get(format!("{base}/auth")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "its sessions ended");
    let (_, users) = gw.admin(Method::GET, "/users", None).await;
    assert_eq!(users[0]["links"][0]["connection_id"], "corp", "the user's link stays");
    let (s, _) = gw.admin(Method::DELETE, "/connections/corp", None).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "the API may now delete it");
}

/// In process, on SQLite: a SAML connection declared with its IdP metadata from a file
/// and signed requests keeps the key pair the gateway made across reconciliations
/// (nothing is written when nothing changed); a connection made through the API with a
/// declared id is taken over; an API-made group of a declared name too.
#[tokio::test]
async fn reconciling_twice_changes_nothing_and_takes_over_what_the_api_made() {
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let metadata = dir.path().join("idp-metadata.xml");
    std::fs::write(&metadata, crate::support::saml_metadata("https://idp.declared.test/metadata")).unwrap();
    let file = dir.path().join("ssogate.toml");
    let toml = format!(
        r#"
[[connections]]
id = "saml-idp"
display_name = "Declared SAML"
protocol = "saml"
[connections.saml]
idp_metadata_file = "{}"
sign_requests = true

[[connections]]
id = "taken-over"
display_name = "Taken over"
protocol = "oidc"
discover = false
[connections.oidc]
issuer = "https://idp.example.com"
client_id = "gw"
client_secret_env = "TAKEN_OVER_SECRET"
authorization_endpoint = "https://idp.example.com/authorize"
token_endpoint = "https://idp.example.com/token"
jwks_uri = "https://idp.example.com/jwks"

[[groups]]
name = "ops"
description = "From the file"
"#,
        metadata.display()
    );
    std::fs::write(&file, toml).unwrap();
    let env = [
        ("SSOGATE_DATA_DIR", dir.path().join("data").display().to_string()),
        ("SSOGATE_CERTS_DIR", dir.path().join("certs").display().to_string()),
        ("SSOGATE_ADMIN_TOKEN", TOKEN.to_string()),
        ("SSOGATE_LISTEN", "127.0.0.1:0".to_string()),
        ("TAKEN_OVER_SECRET", "taken-over-secret-value".to_string()),
    ];
    let load = || ssogate::config::Config::load(Some(&file), env.iter().map(|(k, v)| (k.to_string(), v.clone()))).unwrap();
    // First a gateway without declarations, where an admin makes the connection and group.
    let bare = ssogate::config::Config::load(None, env.iter().map(|(k, v)| (k.to_string(), v.clone()))).unwrap();
    let (gw, _) = crate::support::Gateway::start_config(dir.clone(), bare).await;
    let mut body = crate::support::oidc_body("Made by an admin");
    body["id"] = json!("taken-over");
    assert_eq!(gw.admin(Method::POST, "/connections", Some(body)).await.0, StatusCode::CREATED);
    assert_eq!(gw.admin(Method::POST, "/groups", Some(json!({"name": "OPS"}))).await.0, StatusCode::CREATED);
    gw.stop().await;

    // Started with the file: created, taken over, marked.
    let (gw, _) = crate::support::Gateway::start_config(dir.clone(), load()).await;
    let (_, saml) = gw.admin(Method::GET, "/connections/saml-idp", None).await;
    assert_eq!(saml["managed_by"], "config", "{saml}");
    assert_eq!(saml["saml"]["sign_requests"], true);
    let cert = saml["saml"]["sp_certificate"].as_str().unwrap().to_string();
    let (_, taken) = gw.admin(Method::GET, "/connections/taken-over", None).await;
    assert_eq!((taken["display_name"].as_str(), taken["managed_by"].as_str()), (Some("Taken over"), Some("config")), "{taken}");
    let (_, groups) = gw.admin(Method::GET, "/groups", None).await;
    let ops = groups.as_array().unwrap().iter().find(|g| g["name"] == "ops").expect("the declared spelling").clone();
    assert_eq!((ops["description"].as_str(), ops["managed_by"].as_str()), (Some("From the file"), Some("config")));

    // Once more with the same file: nothing written, the key pair kept.
    let version = saml["version"].clone();
    let report = ssogate::declare::reconcile(&gw.app, &load().declared).await;
    assert!(report.changes.is_empty() && report.failures.is_empty(), "{report:?}");
    let (_, again) = gw.admin(Method::GET, "/connections/saml-idp", None).await;
    assert_eq!((again["version"].clone(), again["saml"]["sp_certificate"].as_str()), (version, Some(cert.as_str())));
    let (_, audit) = gw.admin(Method::GET, "/audit?actor=config&limit=1000", None).await;
    let by_config = audit.as_array().unwrap().len();
    assert_eq!(by_config, 3, "create, take-over, group take-over: {audit}");

    // The CLI's import refuses a declared connection too (the registry does).
    let patch: ssogate::connection::ConnectionPatch = serde_json::from_value(json!({"display_name": "Edited"})).unwrap();
    let err = gw.app.registry.update("taken-over", &patch, None, "cli").await.unwrap_err();
    assert!(err.to_string().contains(&file.display().to_string()), "{err}");
    // The metadata refresh (a system actor) may still update it.
    let refreshed = gw.app.registry.update("saml-idp", &ssogate::connection::ConnectionPatch::default(), None, "system:metadata-refresh").await;
    assert!(refreshed.is_ok(), "{refreshed:?}");
}
