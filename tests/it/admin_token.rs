//! Rotating the admin token without a restart, on every replica: two gateways on one
//! PostgreSQL; a rotation through one (the API) or by the CLI's function is taken by
//! both within a second, and the old token is refused as fast.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use ssogate::config::Config;

use crate::support::{Gateway, PgDb};

async fn status(base: &str, token: &str) -> StatusCode {
    reqwest::Client::new().get(format!("{base}/api/v1/admin/connections")).bearer_auth(token).send().await.unwrap().status()
}

/// Waits up to `within` for `base` to answer `want` to `token`; returns how long it took.
async fn until(base: &str, token: &str, want: StatusCode, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        if status(base, token).await == want {
            return start.elapsed();
        }
        assert!(start.elapsed() < within, "{base} did not answer {want} to the token within {within:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn a_rotated_admin_token_reaches_every_replica_within_a_second() {
    let db = PgDb::new().await;
    let key = "cd".repeat(32);
    let cfg = |dir: &std::path::Path| {
        let env = [
            ("SSOGATE_STORE__URL", db.url.clone()),
            ("SSOGATE_MASTER_KEY", key.clone()),
            ("SSOGATE_LISTEN", "127.0.0.1:0".into()),
            ("SSOGATE_DATA_DIR", dir.join("data").display().to_string()),
            ("SSOGATE_CERTS_DIR", dir.join("certs").display().to_string()),
        ];
        Config::load(None, env.iter().map(|(k, v)| (k.to_string(), v.clone()))).unwrap()
    };
    let (dir_a, dir_b) = (Arc::new(tempfile::tempdir().unwrap()), Arc::new(tempfile::tempdir().unwrap()));
    let (a, started) = Gateway::start_config(dir_a.clone(), cfg(dir_a.path())).await;
    let first = started.admin_token_generated.expect("the first start makes the token").expose().to_string();
    let (b, started) = Gateway::start_config(dir_b.clone(), cfg(dir_b.path())).await;
    assert!(started.admin_token_generated.is_none(), "the second replica reads the stored one");
    for gw in [&a, &b] {
        assert_eq!(status(&gw.base, &first).await, StatusCode::OK);
        assert_eq!(status(&gw.base, "sgt_wrong").await, StatusCode::UNAUTHORIZED);
    }

    // Rotated through A: A takes it at once, B within a second; the old one is refused.
    let r = reqwest::Client::new().post(format!("{}/api/v1/admin/admin-token", a.base)).bearer_auth(&first).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let second = r.json::<serde_json::Value>().await.unwrap()["admin_token"].as_str().unwrap().to_string();
    assert!(second.starts_with("sgt_") && second != first);
    assert_eq!(status(&a.base, &second).await, StatusCode::OK);
    assert_eq!(status(&a.base, &first).await, StatusCode::UNAUTHORIZED);
    let took = until(&b.base, &second, StatusCode::OK, Duration::from_secs(3)).await;
    assert!(took <= Duration::from_millis(1500), "{took:?}");
    until(&b.base, &first, StatusCode::UNAUTHORIZED, Duration::from_millis(1500)).await;

    // The CLI's reset (same function, straight on the store): both take it.
    let third = ssogate::app::reset_admin_token(a.app.store.as_ref(), 0, "cli").await.unwrap().expose().to_string();
    for gw in [&a, &b] {
        until(&gw.base, &third, StatusCode::OK, Duration::from_millis(1500)).await;
        until(&gw.base, &second, StatusCode::UNAUTHORIZED, Duration::from_millis(1500)).await;
    }
    let (_, audit) = b.admin_with(&third, "/audit?action=admin_token.").await;
    assert_eq!(audit.as_array().unwrap().len(), 2, "both rotations are audited: {audit}");
    assert!(!audit.to_string().contains(&third) && !audit.to_string().contains(&second), "never the token itself");
}

#[tokio::test]
async fn a_configured_admin_token_cannot_be_rotated_through_the_api() {
    let gw = Gateway::start().await;
    let (s, body) = gw.admin(reqwest::Method::POST, "/admin-token", None).await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert!(body["message"].as_str().unwrap().contains("SSOGATE_ADMIN_TOKEN"), "{body}");
    assert_eq!(gw.admin(reqwest::Method::GET, "/connections", None).await.0, StatusCode::OK, "the configured one still works");
}
