//! The store conformance suite on SQLite and PostgreSQL, and start-up checks of the
//! master key against the store.

use ssogate::app::{App, StartupError};
use ssogate::clock::Clock;

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

/// Migrations 3 and 4 on a store written before them. 3: keys by Unicode lowercase are
/// refolded by ASCII case only, so a lookup finds the same row by its own spelling and
/// never by a Unicode case variant (issue #10, 3). 4: only an address an admin entered
/// (or an invitation's) counts as the user's own; a login-created user's is unverified
/// (issue #10, 1). On SQLite and PostgreSQL.
#[tokio::test]
async fn migrations_3_and_4_refold_keys_and_mark_known_emails() {
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
            email_verified: true,
            status: UserStatus::Active,
            invited_at: None,
            profile: Default::default(),
            created_at: 1,
            updated_at: 1,
        };
        store.user_insert(&user, &ssogate::audit::AuditEntry::new(1, "admin", "user.create", "usr_jose", serde_json::json!({}))).await.unwrap();
        let made_by_login = User { id: "usr_idp".into(), username: "idp".into(), email: Some("idp@example.test".into()), ..user.clone() };
        let audit = ssogate::audit::AuditEntry::new(1, "connection:con_x", "user.create", "usr_idp", serde_json::json!({}));
        store.user_insert(&made_by_login, &audit).await.unwrap();
        drop(store);
        // What version 2 wrote: Unicode lowercase keys, no email_verified, no migrations 3 and 4.
        sqlx::any::install_default_drivers();
        let mut raw = sqlx::AnyConnection::connect(&url).await.unwrap();
        sqlx::query("UPDATE users SET email_key = 'josé@example.test', username_key = 'josé' WHERE id = 'usr_jose'").execute(&mut raw).await.unwrap();
        // The migrations from 3 on are undone (the runner resumes after the highest version
        // done): 4 added email_verified, 5 the profile columns.
        sqlx::query("DELETE FROM schema_migrations WHERE version >= 3").execute(&mut raw).await.unwrap();
        for column in ["email_verified", "name", "given_name", "family_name", "picture"] {
            sqlx::query(&format!("ALTER TABLE users DROP COLUMN {column}")).execute(&mut raw).await.unwrap();
        }
        undo_migration_7(&mut raw).await;
        raw.close().await.unwrap();

        let store = ssogate::store::open(&url, 2).await.unwrap();
        let found = store.user_by_email("josÉ@EXAMPLE.TEST").await.unwrap();
        assert_eq!(found.map(|u| u.id).as_deref(), Some("usr_jose"), "{url}: found by ASCII case variants of its own spelling");
        assert!(store.user_by_email("josé@example.test").await.unwrap().is_none(), "{url}: É and é are different letters here");
        assert!(store.user_get("usr_jose").await.unwrap().unwrap().email_verified, "{url}: an admin's entry is the user's address");
        assert!(!store.user_get("usr_idp").await.unwrap().unwrap().email_verified, "{url}: a login-created user's address is unverified");
        // The migration ran once; reopening changes nothing.
        drop(store);
        let store = ssogate::store::open(&url, 2).await.unwrap();
        assert!(store.user_by_email("JOSÉ@example.test").await.unwrap().is_some(), "{url}");
    }
}

/// Takes back what migration 7 added (the rows of `schema_migrations` are the caller's).
async fn undo_migration_7(raw: &mut sqlx::AnyConnection) {
    // Issue #14's migration (clients.settings) came after it: undone first.
    sqlx::query("ALTER TABLE clients DROP COLUMN settings").execute(&mut *raw).await.unwrap();
    for stmt in [
        "DROP INDEX audit_log_actor",
        "DROP INDEX audit_log_action",
        "DROP INDEX audit_log_target",
        "DROP INDEX audit_log_at",
        "DROP TABLE connection_health",
        "ALTER TABLE connections DROP COLUMN managed_by",
        "ALTER TABLE clients DROP COLUMN managed_by",
        "ALTER TABLE user_groups DROP COLUMN managed_by",
    ] {
        sqlx::query(stmt).execute(&mut *raw).await.unwrap();
    }
}

/// Migration 6 on a store written before it: each connection's protocol settings were two
/// optional sections (`"oidc"`, `"saml"`, one null); they become one `upstream` section
/// named by the protocol, and every connection reads back exactly as before, secrets
/// included (issue #18). On SQLite and PostgreSQL.
#[tokio::test]
async fn migration_6_moves_protocol_settings_into_one_section() {
    use sqlx::Connection;
    let pg = PgDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    for url in [format!("sqlite://{}?mode=rwc", dir.path().join("six.db").display()), pg.url.clone()] {
        let cfg = || config(dir.path(), &[("SSOGATE_STORE__URL", &url), ("SSOGATE_MASTER_KEY", &"c".repeat(64))]);
        let (app, _) = App::start(cfg(), Clock::system()).await.unwrap();
        let oidc: ssogate::connection::ConnectionPatch = serde_json::from_value(crate::support::oidc_body("Six OIDC")).unwrap();
        let saml: ssogate::connection::ConnectionPatch = serde_json::from_value(serde_json::json!({
            "display_name": "Six SAML", "protocol": "saml", "provider": "custom",
            "saml": {"idp_metadata_xml": crate::support::saml_metadata("https://idp.six.test/metadata"), "sign_requests": true}
        }))
        .unwrap();
        let before = [app.registry.create(&oidc, "test").await.unwrap(), app.registry.create(&saml, "test").await.unwrap()];
        drop(app);

        // What version 5 wrote: both sections, the other one null, and no migration 6.
        sqlx::any::install_default_drivers();
        let mut raw = sqlx::AnyConnection::connect(&url).await.unwrap();
        for c in &before {
            let row: (String,) = sqlx::query_as("SELECT settings FROM connections WHERE id = $1").bind(&c.id).fetch_one(&mut raw).await.unwrap();
            let mut v: serde_json::Value = serde_json::from_str(&row.0).unwrap();
            let upstream = v.as_object_mut().unwrap().remove("upstream").unwrap();
            let (name, section) = upstream.as_object().unwrap().iter().next().map(|(k, v)| (k.clone(), v.clone())).unwrap();
            let other = if name == "oidc" { "saml" } else { "oidc" };
            v[name.as_str()] = section;
            v[other] = serde_json::Value::Null;
            sqlx::query("UPDATE connections SET settings = $1 WHERE id = $2").bind(v.to_string()).bind(&c.id).execute(&mut raw).await.unwrap();
        }
        sqlx::query("DELETE FROM schema_migrations WHERE version >= 6").execute(&mut raw).await.unwrap();
        undo_migration_7(&mut raw).await;
        raw.close().await.unwrap();

        let (app, _) = App::start(cfg(), Clock::system()).await.unwrap();
        for c in &before {
            let after = app.registry.get(&c.id).await.unwrap();
            assert_eq!(&after, c, "{url}: {} reads back as it was written", c.display_name);
            let stored = ssogate::store::Store::connection_get(app.store.as_ref(), &c.id).await.unwrap().unwrap();
            let v: serde_json::Value = serde_json::from_str(&stored.settings).unwrap();
            assert!(v.get("oidc").is_none() && v.get("saml").is_none() && v["upstream"].get(c.protocol().as_str()).is_some(), "{url}: {v}");
        }
        assert!(before[1].secrets.sp_private_key.is_some(), "the SAML connection has a sealed key to keep");
        drop(app);
        // The migration ran once; reopening changes nothing.
        let (app, _) = App::start(cfg(), Clock::system()).await.unwrap();
        assert_eq!(app.registry.get(&before[0].id).await.unwrap(), before[0]);
    }
}

/// Issue #16, 8: a replica started while PostgreSQL refuses connections waits for it
/// (as it does for Redis) instead of exiting, and starts once it answers.
#[tokio::test]
async fn a_gateway_started_before_postgres_waits_for_it() {
    let db = PgDb::new().await;
    // A port where nothing listens yet: connections are refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut url = url::Url::parse(&db.url).unwrap();
    url.set_host(Some("127.0.0.1")).unwrap();
    url.set_port(Some(port)).unwrap();
    let real = {
        let u = url::Url::parse(&db.url).unwrap();
        format!("{}:{}", u.host_str().unwrap(), u.port().unwrap_or(5432))
    };
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &[("SSOGATE_STORE__URL", url.as_str()), ("SSOGATE_STORE__CONNECT_WAIT_SECONDS", "60")]);
    let starting = tokio::spawn(App::start(cfg, Clock::system()));
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert!(!starting.is_finished(), "the gateway waits for the database instead of exiting");
    // PostgreSQL "comes up" on that port: a plain TCP relay to the real server.
    let relay = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = relay.accept().await {
            let real = real.clone();
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(real).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    let started = tokio::time::timeout(std::time::Duration::from_secs(30), starting).await.expect("started once the database answered");
    assert!(started.unwrap().is_ok(), "started");
}
