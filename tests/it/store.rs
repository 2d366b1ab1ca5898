//! The store conformance suite on SQLite and PostgreSQL, and start-up checks of the
//! master key against the store.

use ssogate::clock::Clock;
use ssogate::server::{App, StartupError};

use crate::support::{config, Gateway, PgDb};

#[tokio::test]
async fn sqlite_store_passes_conformance() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("c.db").display());
    let store = ssogate::store::open(&url, 4).await.unwrap();
    ssogate::store::conformance::run(&store).await.unwrap();
    // Migrations are idempotent: reopening the same file works and keeps data.
    let again = ssogate::store::open(&url, 4).await.unwrap();
    ssogate::store::conformance::run(&again).await.unwrap();
}

#[tokio::test]
async fn postgres_store_passes_conformance() {
    let db = PgDb::new().await;
    let store = ssogate::store::open(&db.url, 4).await.unwrap();
    ssogate::store::conformance::run(&store).await.unwrap();
    let again = ssogate::store::open(&db.url, 4).await.unwrap();
    ssogate::store::conformance::run(&again).await.unwrap();
}

#[tokio::test]
async fn wrong_master_key_is_a_clear_startup_error() {
    let dir = tempfile::tempdir().unwrap();
    let key_a = "a".repeat(64);
    let cfg = config(dir.path(), &[("SSOGATE_MASTER_KEY", &key_a)]);
    App::start(cfg, Clock::system()).await.unwrap();
    let cfg = config(dir.path(), &[("SSOGATE_MASTER_KEY", &"b".repeat(64))]);
    let err = App::start(cfg, Clock::system()).await.unwrap_err();
    assert!(matches!(err, StartupError::WrongMasterKey), "{err}");
    assert!(err.to_string().contains("master key does not match"), "{err}");
    // A malformed key is refused by configuration checks before anything opens.
    let dir2 = tempfile::tempdir().unwrap();
    let bad = ssogate::config::Config::load(
        None,
        vec![("SSOGATE_MASTER_KEY".into(), "short".into()), ("SSOGATE_DATA_DIR".into(), dir2.path().display().to_string())],
    );
    assert!(bad.unwrap_err().to_string().contains("master_key"));
}

#[tokio::test]
async fn gateway_on_postgres_keeps_data_across_restarts() {
    let db = PgDb::new().await;
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let gw = Gateway::start_in(dir.clone(), &[("SSOGATE_STORE__URL", &db.url)]).await;
    let (s, v) = gw.admin(reqwest::Method::POST, "/connections", Some(crate::support::oidc_body("On Postgres"))).await;
    assert_eq!(s, 201, "{v}");
    gw.stop().await;
    let gw = Gateway::start_in(dir, &[("SSOGATE_STORE__URL", &db.url)]).await;
    let (s, list) = gw.admin(reqwest::Method::GET, "/connections", None).await;
    assert_eq!(s, 200);
    assert_eq!(list[0]["display_name"], "On Postgres");
    assert_eq!(list[0]["oidc"]["client_secret_set"], true);
    gw.stop().await;
}
