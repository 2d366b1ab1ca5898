//! Real peers over loopback: panva's oidc-provider (npm) and a pysaml2 IdP, both set up
//! by `tests/peers/setup.sh`. Each test starts its own peer on port 0.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::support::Gateway;

/// A peer process; killed on drop (and it exits by itself when our stdin pipe closes).
pub struct Peer {
    pub child: Child,
    /// The JSON line it printed when ready.
    pub ready: Value,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn peers_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peers")
}

fn python() -> PathBuf {
    let p = peers_dir().join(".venv/bin/python");
    assert!(p.exists(), "run `bash tests/peers/setup.sh` first (it makes {})", p.display());
    p
}

pub fn spawn(mut cmd: Command) -> Peer {
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().expect("peer starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let ready = serde_json::from_str(&line).unwrap_or_else(|_| panic!("peer printed {line:?} instead of its ready line"));
    Peer { child, ready }
}

/// Starts oidc-provider with a config (see tests/peers/oidc/sample-config.json).
pub fn oidc_provider(config: &Value) -> (Peer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    std::fs::write(&path, config.to_string()).unwrap();
    assert!(peers_dir().join("oidc/node_modules/oidc-provider").exists(), "run `bash tests/peers/setup.sh` first");
    let mut cmd = Command::new("node");
    cmd.arg(peers_dir().join("oidc/server.mjs")).arg(&path);
    (spawn(cmd), dir)
}

/// IdP keys and metadata from pysaml2.
pub fn saml_metadata(keys: &std::path::Path, base_url: &str, extra: &[&str]) -> String {
    let idp = peers_dir().join("saml/idp.py");
    let out = Command::new(python()).arg(&idp).args(["keys", "--out"]).arg(keys).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = Command::new(python()).arg(&idp).args(["metadata", "--base-url", base_url, "--keys"]).arg(keys).args(extra).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn oidc_config() -> Value {
    json!({
        "clients": [{"client_id": "gateway", "client_secret": "gateway-secret-0123456789",
                     "redirect_uris": ["http://127.0.0.1:1/callback"], "token_endpoint_auth_method": "client_secret_basic"}],
        "accounts": {"alice": {"email": "alice@example.test", "email_verified": true, "groups": ["staff"]}},
        "pkce_methods": ["S256"]
    })
}

#[tokio::test]
async fn oidc_connection_is_filled_from_a_real_issuers_discovery() {
    let (peer, _dir) = oidc_provider(&oidc_config());
    let issuer = peer.ready["issuer"].as_str().unwrap().to_string();
    let gw = Gateway::start().await;

    // "Fetch from issuer" without saving.
    let (s, doc) = gw.admin(Method::POST, "/discovery", Some(json!({"issuer": issuer}))).await;
    assert_eq!(s, StatusCode::OK, "{doc}");
    assert_eq!(doc["issuer"], issuer);
    assert!(doc["code_challenge_methods_supported"].to_string().contains("S256"));

    // Create with only issuer and client: the endpoints come from discovery.
    let body = json!({"display_name": "Node IdP", "protocol": "oidc", "provider": "custom",
        "oidc": {"issuer": issuer, "client_id": "gateway", "client_secret": "gateway-secret-0123456789"}});
    let (s, c) = gw.admin(Method::POST, "/connections", Some(body)).await;
    assert_eq!(s, StatusCode::CREATED, "{c}");
    assert_eq!(c["oidc"]["authorization_endpoint"], doc["authorization_endpoint"]);
    assert_eq!(c["oidc"]["token_endpoint"], doc["token_endpoint"]);
    assert_eq!(c["oidc"]["jwks_uri"], doc["jwks_uri"]);
    assert_eq!(c["oidc"]["userinfo_endpoint"], doc["userinfo_endpoint"]);
    assert_eq!(c["oidc"]["revocation_endpoint"], doc["revocation_endpoint"]);
    assert_eq!(c["oidc"]["code_challenge_method"], "S256");

    // An explicit endpoint wins over discovery; re-discovery on update keeps it.
    let id = c["id"].as_str().unwrap();
    let custom_auth = format!("{issuer}/custom-auth");
    let (s, u) = gw.admin(Method::PATCH, &format!("/connections/{id}"), Some(json!({"discover": true, "oidc": {"authorization_endpoint": custom_auth}}))).await;
    assert_eq!(s, StatusCode::OK, "{u}");
    assert_eq!(u["oidc"]["authorization_endpoint"], custom_auth);

    // The document must name the issuer it was fetched for.
    let (s, e) = gw.admin(Method::POST, "/discovery", Some(json!({"issuer": format!("{issuer}/")}))).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(e["message"].as_str().unwrap().contains("names issuer"), "{e}");
}

#[tokio::test]
async fn discovery_never_follows_redirects_and_reports_unreachable_issuers() {
    let (peer, _dir) = oidc_provider(&oidc_config());
    let issuer = peer.ready["issuer"].as_str().unwrap().to_string();
    // A hostile issuer that redirects to another server's document.
    let target = format!("{issuer}/.well-known/openid-configuration");
    let app = axum::Router::new().fallback(move || {
        let t = target.clone();
        async move { axum::response::Redirect::temporary(&t) }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hostile = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let gw = Gateway::start().await;
    let (s, e) = gw.admin(Method::POST, "/discovery", Some(json!({"issuer": hostile}))).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(e["message"].as_str().unwrap().contains("HTTP 307"), "{e}");

    // Nothing listens here: a quick, clear error, and nothing is created.
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let body = json!({"display_name": "Dead", "protocol": "oidc", "oidc": {"issuer": dead_url, "client_id": "c", "client_secret": "s"}});
    let (s, e) = gw.admin(Method::POST, "/connections", Some(body)).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(e["fields"][0]["field"] == "oidc.issuer" && e["message"].as_str().unwrap().contains("could not reach"), "{e}");
    let (_, list) = gw.admin(Method::GET, "/connections", None).await;
    assert_eq!(list, json!([]));
}

#[tokio::test]
async fn saml_connection_from_a_real_idps_metadata_file_and_url() {
    let keys = tempfile::tempdir().unwrap();
    let xml = saml_metadata(keys.path(), "http://127.0.0.1:9", &[]);
    let gw = Gateway::start().await;
    let (s, c) = gw.admin(Method::POST, "/connections", Some(json!({"display_name": "pysaml2", "protocol": "saml", "saml": {"idp_metadata_xml": xml}}))).await;
    assert_eq!(s, StatusCode::CREATED, "{c}");
    let idp = &c["saml"]["idp"];
    assert_eq!(idp["entity_id"], "http://127.0.0.1:9/metadata");
    assert_eq!(idp["sso_url"], "http://127.0.0.1:9/sso/redirect");
    assert_eq!(idp["sso_binding"], "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect");
    let pem = std::fs::read_to_string(keys.path().join("idp.crt")).unwrap();
    let want = openssl::x509::X509::from_pem(pem.as_bytes()).unwrap().digest(openssl::hash::MessageDigest::sha256()).unwrap();
    assert_eq!(idp["certificates"][0]["sha256"], hex::encode(want), "the pinned certificate is the IdP's");

    let bare = saml_metadata(keys.path(), "http://127.0.0.1:9", &["--no-signing-cert"]);
    let (s, e) = gw.admin(Method::POST, "/connections", Some(json!({"display_name": "no cert", "protocol": "saml", "saml": {"idp_metadata_xml": bare}}))).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(e.to_string().contains("no signing certificate"), "{e}");

    // The IdP serving its metadata: the connection reads it from the URL.
    let sp = keys.path().join("sp.xml");
    std::fs::write(&sp, "<x/>").unwrap();
    let mut cmd = Command::new(python());
    cmd.arg(peers_dir().join("saml/idp.py")).args(["serve", "--keys"]).arg(keys.path()).arg("--sp-metadata").arg(&sp);
    let served = spawn(cmd);
    let url = served.ready["metadata_url"].as_str().unwrap();
    let (s, c) = gw.admin(Method::POST, "/connections", Some(json!({"display_name": "by url", "protocol": "saml", "saml": {"idp_metadata_url": url}}))).await;
    assert_eq!(s, StatusCode::CREATED, "{c}");
    assert_eq!(c["saml"]["idp"]["entity_id"], served.ready["entity_id"]);
    assert_eq!(c["saml"]["idp_metadata_url"], url);
}
