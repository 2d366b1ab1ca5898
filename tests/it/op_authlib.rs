//! Issue #14: a main server written with Authlib (PyPI), a Python OAuth / OpenID Connect
//! client nobody here wrote, uses the gateway: code flow with PKCE and ID token
//! validation, refresh with rotation (and reuse refused), introspection, revocation and
//! RP-initiated logout (tests/peers/client/rp.py; each step a named check).

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::login::setup;
use crate::peers::peers_dir;

#[tokio::test]
async fn authlib_refreshes_introspects_revokes_and_logs_out() {
    let s = setup(json!({}), json!({"group_sync": true})).await;
    let cb = "http://127.0.0.1:9/authlib/callback";
    let bye = "http://127.0.0.1:9/authlib/signed-out";
    let (st, c) =
        s.gw.admin(
            Method::POST,
            "/clients",
            Some(json!({"client_id": "authlib", "redirect_uris": [cb], "grant_types": ["authorization_code", "refresh_token"],
                "post_logout_redirect_uris": [bye], "require_pkce": true})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{c}");
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("rp.json");
    let body = json!({"issuer": s.gw.base, "client_id": "authlib", "client_secret": c["client_secret"], "redirect_uri": cb,
        "post_logout_redirect_uri": bye, "extra": {"connection": "con_node", "login_hint": "alice"}});
    std::fs::write(&cfg, body.to_string()).unwrap();
    let python = peers_dir().join(".client-venv/bin/python");
    assert!(python.exists(), "run `bash tests/peers/setup.sh` first (Authlib venv)");
    let out = tokio::process::Command::new(python).arg(peers_dir().join("client/rp.py")).arg(&cfg).output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|_| panic!("rp.py printed {stdout:?}; stderr: {stderr}"));
    let checks = report["checks"].as_object().unwrap();
    let failed: Vec<String> =
        checks.iter().filter(|(_, ok)| *ok != &json!(true)).map(|(name, _)| format!("{name}: {}", report["detail"][name.as_str()])).collect();
    assert!(failed.is_empty(), "Authlib checks failed:\n{}\n{stderr}", failed.join("\n"));
    for name in [
        "authorization_code_returned",
        "id_token_valid",
        "refresh_rotated",
        "refresh_reuse_refused",
        "introspect_access_active",
        "revoke_ok",
        "revoked_refresh_refused",
        "logout_returns_with_state",
        "logged_out_prompt_none_login_required",
    ] {
        assert_eq!(checks.get(name), Some(&json!(true)), "{name} ran");
    }
    assert!(out.status.success());
}
