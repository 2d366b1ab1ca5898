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

/// Migration 3 on a store written before it (keys by Unicode lowercase): every key is
/// refolded by ASCII case only, so a lookup finds the same row by its own spelling and
/// never by a Unicode case variant (issue #10, 3). On SQLite and PostgreSQL.
#[tokio::test]
async fn migration_3_refolds_keys_by_ascii_case_only() {
    use sqlx::Connection;
    use ssogate::store::{Store, User, UserStatus};
    let dir = tempfile::tempdir().unwrap();
    let pg = PgDb::new().await;
    for url in [format!("sqlite://{}?mode=rwc", dir.path().join("m.db").display()), pg.url.clone()] {
        let store = ssogate::store::open(&url, 2).await.unwrap();
        let user = User {
            id: "usr_jose".into(),
            username: "JOSÉ".into(),
            email: Some("JOSÉ@Example.test".into()),
            status: UserStatus::Active,
            invited_at: None,
            profile: Default::default(),
            created_at: 1,
            updated_at: 1,
        };
        store.user_insert(&user, &ssogate::audit::AuditEntry::new(1, "test", "user.create", "usr_jose", serde_json::json!({}))).await.unwrap();
        drop(store);
        // What the version before wrote: Unicode lowercase keys, and no migration 3.
        sqlx::any::install_default_drivers();
        let mut raw = sqlx::AnyConnection::connect(&url).await.unwrap();
        sqlx::query("UPDATE users SET email_key = 'josé@example.test', username_key = 'josé' WHERE id = 'usr_jose'").execute(&mut raw).await.unwrap();
        // The migrations after 3 are undone too (the runner resumes after the highest
        // version done): 5 added the profile columns.
        sqlx::query("DELETE FROM schema_migrations WHERE version >= 3").execute(&mut raw).await.unwrap();
        for column in ["name", "given_name", "family_name", "picture"] {
            sqlx::query(&format!("ALTER TABLE users DROP COLUMN {column}")).execute(&mut raw).await.unwrap();
        }
        raw.close().await.unwrap();

        let store = ssogate::store::open(&url, 2).await.unwrap();
        let found = store.user_by_email("josÉ@EXAMPLE.TEST").await.unwrap();
        assert_eq!(found.map(|u| u.id).as_deref(), Some("usr_jose"), "{url}: found by ASCII case variants of its own spelling");
        assert!(store.user_by_email("josé@example.test").await.unwrap().is_none(), "{url}: É and é are different letters here");
        // The migration ran once; reopening changes nothing.
        drop(store);
        let store = ssogate::store::open(&url, 2).await.unwrap();
        assert!(store.user_by_email("JOSÉ@example.test").await.unwrap().is_some(), "{url}");
    }
}
