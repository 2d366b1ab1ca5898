//! A real browser (Debian's headless Chromium, driven by playwright-core) logs in
//! through the login page: the button, the IdP's form, and the signed-in page.

use std::process::Command;

use serde_json::{json, Value};

use crate::login::setup;
use crate::peers::peers_dir;

#[tokio::test]
async fn a_real_browser_logs_in_through_the_login_page() {
    let s = setup(json!({}), json!({})).await;
    let dir = tempfile::tempdir().unwrap();
    let shot = dir.path().join("signed-in.png");
    let script = peers_dir().join("browser/login.mjs");
    assert!(peers_dir().join("browser/node_modules/playwright-core").exists(), "run `bash tests/peers/setup.sh` first");
    let base = s.gw.base.clone();
    let out = tokio::task::spawn_blocking(move || Command::new("node").arg(script).arg(&base).arg("alice").arg(&shot).output().unwrap()).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(v["buttons"], json!(["Sign in with Node IdP"]), "one button, with its provider's logo");
    assert_eq!(v["url"], format!("{}/", s.gw.base));
    let text = v["text"].as_str().unwrap();
    assert!(text.contains("Signed in") && text.contains("alice@example.test"), "{text}");
    assert!(dir.path().join("signed-in.png").exists());
}

#[tokio::test]
async fn a_real_browser_logs_in_through_a_saml_idp() {
    let gw = crate::support::Gateway::start().await;
    let keys = tempfile::tempdir().unwrap();
    let _ = crate::peers::saml_metadata(keys.path(), "http://127.0.0.1:9", &[]);
    let mut cmd = Command::new(peers_dir().join(".venv/bin/python"));
    cmd.arg(peers_dir().join("saml/idp.py")).args(["serve", "--keys"]).arg(keys.path()).args([
        "--sp-metadata-url",
        &format!("{}/saml/con_b/metadata", gw.base),
        "--sign",
        "both",
    ]);
    let idp = crate::peers::spawn(cmd);
    let (s, c) = gw
        .admin(
            reqwest::Method::POST,
            "/connections",
            Some(json!({"id": "con_b", "display_name": "Test SAML", "protocol": "saml",
        "create_users": true, "saml": {"idp_metadata_url": idp.ready["metadata_url"], "sign_requests": true}})),
        )
        .await;
    assert_eq!(s, reqwest::StatusCode::CREATED, "{c}");
    let script = peers_dir().join("browser/login.mjs");
    let base = gw.base.clone();
    let out = tokio::task::spawn_blocking(move || Command::new("node").arg(script).arg(&base).arg("-").output().unwrap()).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(v["url"], format!("{}/", gw.base));
    let text = v["text"].as_str().unwrap();
    assert!(text.contains("Signed in") && text.contains("alice@example.test"), "{text}");
}
