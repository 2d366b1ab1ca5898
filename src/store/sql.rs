//! [`Store`] over SQL: one set of queries for SQLite and PostgreSQL through sqlx's
//! `Any` driver. Only booleans-as-integers, text and 64-bit integers are stored, so the
//! two databases read back the same values. Migrations run at connect time, under an
//! advisory lock on PostgreSQL so replicas starting together do not race.

use std::sync::Once;

use async_trait::async_trait;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::AnyConnection;
use sqlx::{AnyPool, Connection, Executor, Row};

use super::*;
use crate::audit::AuditEntry;

/// Which SQL dialect the pool speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// SQLite (a file in the data dir).
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// The SQL store.
#[derive(Debug, Clone)]
pub struct Sql {
    pool: AnyPool,
    dialect: Dialect,
}

/// Schema migrations, in order. `{AUTO_ID}` is the dialect's auto-increment key.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE connections (
  id TEXT PRIMARY KEY, display_name TEXT NOT NULL, name_key TEXT NOT NULL UNIQUE,
  protocol TEXT NOT NULL, provider TEXT NOT NULL, active BIGINT NOT NULL,
  settings TEXT NOT NULL, secrets TEXT,
  created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL, version BIGINT NOT NULL);
CREATE TABLE users (
  id TEXT PRIMARY KEY, username TEXT NOT NULL, username_key TEXT NOT NULL UNIQUE,
  email TEXT, email_key TEXT UNIQUE, status TEXT NOT NULL, invited_at BIGINT,
  created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL);
CREATE TABLE user_links (
  connection_id TEXT NOT NULL, subject TEXT NOT NULL, user_id TEXT NOT NULL,
  created_at BIGINT NOT NULL, PRIMARY KEY (connection_id, subject));
CREATE INDEX user_links_user ON user_links (user_id);
CREATE TABLE user_groups (
  id TEXT PRIMARY KEY, name TEXT NOT NULL, name_key TEXT NOT NULL UNIQUE,
  description TEXT NOT NULL, builtin TEXT,
  created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL);
CREATE TABLE memberships (
  group_id TEXT NOT NULL, user_id TEXT NOT NULL, source TEXT NOT NULL,
  created_at BIGINT NOT NULL, PRIMARY KEY (group_id, user_id, source));
CREATE INDEX memberships_user ON memberships (user_id);
CREATE TABLE invitations (
  id TEXT PRIMARY KEY, email TEXT NOT NULL, email_key TEXT NOT NULL UNIQUE,
  user_id TEXT NOT NULL, invited_by TEXT NOT NULL, created_at BIGINT NOT NULL);
CREATE TABLE audit_log (
  seq {AUTO_ID}, at BIGINT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
  target TEXT NOT NULL, detail TEXT NOT NULL, request_id TEXT);
CREATE TABLE signing_keys (
  kid TEXT PRIMARY KEY, alg TEXT NOT NULL, private_key TEXT NOT NULL,
  public_jwk TEXT NOT NULL, created_at BIGINT NOT NULL, retired_at BIGINT)
"#,
    r#"
CREATE TABLE clients (
  client_id TEXT PRIMARY KEY, name TEXT NOT NULL, secret_sha256 TEXT NOT NULL,
  redirect_uris TEXT NOT NULL, created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL)
"#,
    // 3: the unique keys of names and emails become ASCII-only case folds (`name_key`);
    // stores written before kept Unicode lowercase. No SQL: `rekey` rewrites them.
    "",
    // 4: whether a user's email is known to be theirs. Before, any address an IdP asserted
    // was stored alike; now only an admin's or an invitation's counts for users made
    // before this (a login-created one cannot be told apart, and is left unverified).
    r#"
ALTER TABLE users ADD COLUMN email_verified BIGINT NOT NULL DEFAULT 0;
UPDATE users SET email_verified = 1 WHERE email IS NOT NULL AND (invited_at IS NOT NULL
  OR id IN (SELECT target FROM audit_log WHERE action = 'user.create' AND actor NOT LIKE 'connection:%'))
"#,
    // 5: the user's profile, as the identity provider last sent it.
    r#"
ALTER TABLE users ADD COLUMN name TEXT;
ALTER TABLE users ADD COLUMN given_name TEXT;
ALTER TABLE users ADD COLUMN family_name TEXT;
ALTER TABLE users ADD COLUMN picture TEXT
"#,
    // 6: a connection's protocol settings become one section named by the protocol
    // (`"upstream": {"oidc": {...}}`) instead of two optional ones (`"oidc"`, `"saml"`,
    // one of them null). No SQL: `one_upstream` rewrites the JSON.
    "",
    // 7: what the configuration file declares (read-only through the API); each
    // connection's last login and last refusal; the audit log's filters.
    r#"
ALTER TABLE connections ADD COLUMN managed_by TEXT;
ALTER TABLE clients ADD COLUMN managed_by TEXT;
ALTER TABLE user_groups ADD COLUMN managed_by TEXT;
CREATE TABLE connection_health (
  connection_id TEXT PRIMARY KEY, last_login_at BIGINT, last_error_at BIGINT, last_error TEXT);
CREATE INDEX audit_log_actor ON audit_log (actor, seq);
CREATE INDEX audit_log_action ON audit_log (action, seq);
CREATE INDEX audit_log_target ON audit_log (target, seq);
CREATE INDEX audit_log_at ON audit_log (at)
"#,
    // issue #14: per-client settings (JSON): auth method, grants, PKCE, scopes,
    // lifetimes, logout URIs, keys.
    "ALTER TABLE clients ADD COLUMN settings TEXT",
];

/// The columns keyed by [`name_key`]: (table, value column, key column).
const KEYED: &[(&str, &str, &str)] = &[
    ("connections", "display_name", "name_key"),
    ("users", "username", "username_key"),
    ("users", "email", "email_key"),
    ("user_groups", "name", "name_key"),
    ("invitations", "email", "email_key"),
];

/// Recomputes every key with [`name_key`] (migration 3). ASCII folding only tells apart
/// what Unicode lowercase merged, so no two rows can end up with one key.
async fn rekey(tx: &mut AnyConnection) -> StoreResult<()> {
    for (table, column, key) in KEYED {
        let rows = sqlx::query(&format!("SELECT id, {column} AS v, {key} AS k FROM {table}")).fetch_all(&mut *tx).await?;
        for row in rows {
            let (id, value, old): (String, Option<String>, Option<String>) = (row.try_get("id")?, row.try_get("v")?, row.try_get("k")?);
            let new = value.as_deref().map(name_key);
            if new != old {
                sqlx::query(&format!("UPDATE {table} SET {key} = $1 WHERE id = $2")).bind(new).bind(id).execute(&mut *tx).await?;
            }
        }
    }
    Ok(())
}

/// Rewrites every connection's settings to the one-section form (migration 6).
async fn one_upstream(tx: &mut AnyConnection) -> StoreResult<()> {
    let rows = sqlx::query("SELECT id, protocol, settings FROM connections").fetch_all(&mut *tx).await?;
    for row in rows {
        let (id, protocol, settings): (String, String, String) = (row.try_get("id")?, row.try_get("protocol")?, row.try_get("settings")?);
        let upgraded = upstream_section(&protocol, &settings).map_err(|e| StoreError::Corrupt(format!("connection {id}: {e}")))?;
        if let Some(new) = upgraded {
            sqlx::query("UPDATE connections SET settings = $1 WHERE id = $2").bind(new).bind(id).execute(&mut *tx).await?;
        }
    }
    Ok(())
}

/// The settings JSON with the protocol's section moved under `upstream`, every other
/// field kept as it is; `None` when it is already in that form.
fn upstream_section(protocol: &str, settings: &str) -> Result<Option<String>, String> {
    let mut v: serde_json::Value = serde_json::from_str(settings).map_err(|e| format!("settings are not JSON: {e}"))?;
    let obj = v.as_object_mut().ok_or("settings are not a JSON object")?;
    if obj.contains_key("upstream") {
        return Ok(None);
    }
    let (oidc, saml) = (obj.remove("oidc").unwrap_or_default(), obj.remove("saml").unwrap_or_default());
    let section = match protocol {
        "oidc" if !oidc.is_null() => oidc,
        "saml" if !saml.is_null() => saml,
        other => return Err(format!("protocol {other:?} has no settings section")),
    };
    obj.insert("upstream".into(), serde_json::json!({ protocol: section }));
    Ok(Some(v.to_string()))
}

static DRIVERS: Once = Once::new();

/// The SQLite files are the owner's alone (0600): created so when the URL lets SQLite
/// create the database (`mode=rwc`), and tightened when an older version left them
/// world-readable. SQLite gives its `-wal` and `-shm` files the database file's mode.
fn private_sqlite_files(url: &str) -> StoreResult<()> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")).unwrap_or_default();
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path.is_empty() || path.contains(":memory:") || query.split('&').any(|kv| kv == "mode=memory") {
        return Ok(());
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let path = std::path::Path::new(path);
        if !path.exists() && query.split('&').any(|kv| kv == "mode=rwc") {
            std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(|e| StoreError::Backend(sqlx::Error::Io(e)))?;
        }
        for suffix in ["", "-wal", "-shm"] {
            let p = std::path::PathBuf::from(format!("{}{suffix}", path.display()));
            match std::fs::metadata(&p) {
                Ok(m) if m.permissions().mode() & 0o077 != 0 => {
                    if let Err(e) = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)) {
                        tracing::warn!(file = %p.display(), error = %e, "could not make the store file private (0600)");
                    }
                }
                _ => {}
            }
        }
    }
    Ok(())
}

impl Sql {
    /// Connects, creating the SQLite file if needed, and runs pending migrations.
    pub async fn connect(url: &str, max_connections: u32) -> StoreResult<Self> {
        DRIVERS.call_once(sqlx::any::install_default_drivers);
        let dialect = if url.starts_with("sqlite:") { Dialect::Sqlite } else { Dialect::Postgres };
        // SQLite serializes writers anyway; one connection also avoids a deferred
        // transaction failing to upgrade to a write (SQLITE_BUSY_SNAPSHOT) under load.
        let max_connections = if dialect == Dialect::Sqlite { 1 } else { max_connections };
        if dialect == Dialect::Sqlite {
            private_sqlite_files(url)?;
        }
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(std::time::Duration::from_secs(5))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if dialect == Dialect::Sqlite {
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA busy_timeout = 5000").await?;
                        conn.execute("PRAGMA synchronous = NORMAL").await?;
                    }
                    Ok(())
                })
            })
            .connect(url)
            .await?;
        let store = Self { pool, dialect };
        store.migrate().await?;
        Ok(store)
    }

    /// The dialect in use.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    async fn migrate(&self) -> StoreResult<()> {
        let mut conn = self.pool.acquire().await?;
        let mut tx = conn.begin().await?;
        if self.dialect == Dialect::Postgres {
            tx.execute("SELECT pg_advisory_xact_lock(551020)").await?;
        }
        tx.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)").await?;
        let done: i64 = sqlx::query("SELECT COALESCE(MAX(version), 0) AS v FROM schema_migrations").fetch_one(&mut *tx).await?.try_get("v")?;
        let auto_id = match self.dialect {
            Dialect::Sqlite => "INTEGER PRIMARY KEY AUTOINCREMENT",
            Dialect::Postgres => "BIGSERIAL PRIMARY KEY",
        };
        let now = chrono::Utc::now().timestamp_millis();
        for (i, migration) in MIGRATIONS.iter().enumerate() {
            let version = i as i64 + 1;
            if version <= done {
                continue;
            }
            for stmt in migration.replace("{AUTO_ID}", auto_id).split(';') {
                if !stmt.trim().is_empty() {
                    tx.execute(stmt).await?;
                }
            }
            if version == 3 {
                rekey(&mut tx).await?;
            }
            if version == 6 {
                one_upstream(&mut tx).await?;
            }
            if version == 1 {
                for (kind, id, name, description) in Builtin::ALL {
                    sqlx::query(
                        "INSERT INTO user_groups (id, name, name_key, description, builtin, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $6)",
                    )
                    .bind(id)
                    .bind(name)
                    .bind(name_key(name))
                    .bind(description)
                    .bind(kind.as_str())
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                }
            }
            sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)").bind(version).bind(now).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

/// Turns a unique violation into a `Conflict` naming the field; `keys` maps a column
/// (as it appears in the database's message) to the sentence to show.
fn conflict(e: sqlx::Error, keys: &[(&str, &str)]) -> StoreError {
    if let sqlx::Error::Database(db) = &e {
        if db.is_unique_violation() {
            let msg = db.message().to_string() + db.constraint().unwrap_or("");
            for (col, sentence) in keys {
                if msg.contains(col) {
                    return StoreError::Conflict((*sentence).to_string());
                }
            }
            return StoreError::Conflict("a record with the same key already exists".into());
        }
    }
    StoreError::Backend(e)
}

/// Ends a single-row change: `NotFound` when it touched nothing, else the audit entry
/// and the commit.
async fn commit_audited(mut tx: sqlx::Transaction<'_, sqlx::Any>, affected: u64, missing: impl FnOnce() -> String, audit: &AuditEntry) -> StoreResult<()> {
    if affected == 0 {
        return Err(StoreError::NotFound(missing()));
    }
    write_audit(&mut tx, audit).await?;
    tx.commit().await?;
    Ok(())
}

async fn insert_link(conn: &mut AnyConnection, link: &Link) -> StoreResult<()> {
    sqlx::query("INSERT INTO user_links (connection_id, subject, user_id, created_at) VALUES ($1, $2, $3, $4)")
        .bind(&link.connection_id)
        .bind(&link.subject)
        .bind(&link.user_id)
        .bind(link.created_at)
        .execute(&mut *conn)
        .await
        .map_err(|e| conflict(e, &[("", "this upstream identity is already linked to a user")]))?;
    Ok(())
}

async fn write_audit(conn: &mut AnyConnection, e: &AuditEntry) -> StoreResult<()> {
    sqlx::query("INSERT INTO audit_log (at, actor, action, target, detail, request_id) VALUES ($1, $2, $3, $4, $5, $6)")
        .bind(e.at)
        .bind(&e.actor)
        .bind(&e.action)
        .bind(&e.target)
        .bind(&e.detail)
        .bind(&e.request_id)
        .execute(conn)
        .await?;
    Ok(())
}

fn lower_opt(s: &Option<String>) -> Option<String> {
    s.as_deref().map(name_key)
}

fn connection_row(r: &AnyRow) -> StoreResult<StoredConnection> {
    Ok(StoredConnection {
        id: r.try_get("id")?,
        display_name: r.try_get("display_name")?,
        protocol: r.try_get("protocol")?,
        provider: r.try_get("provider")?,
        active: r.try_get::<i64, _>("active")? != 0,
        settings: r.try_get("settings")?,
        secrets: r.try_get("secrets")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        version: r.try_get("version")?,
        managed_by: r.try_get("managed_by")?,
    })
}

fn user_row(r: &AnyRow) -> StoreResult<User> {
    Ok(User {
        id: r.try_get("id")?,
        username: r.try_get("username")?,
        email: r.try_get("email")?,
        email_verified: r.try_get::<i64, _>("email_verified")? != 0,
        status: UserStatus::parse(&r.try_get::<String, _>("status")?)?,
        invited_at: r.try_get("invited_at")?,
        profile: Profile {
            name: r.try_get("name")?,
            given_name: r.try_get("given_name")?,
            family_name: r.try_get("family_name")?,
            picture: r.try_get("picture")?,
        },
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

fn link_row(r: &AnyRow) -> StoreResult<Link> {
    Ok(Link {
        connection_id: r.try_get("connection_id")?,
        subject: r.try_get("subject")?,
        user_id: r.try_get("user_id")?,
        created_at: r.try_get("created_at")?,
    })
}

fn group_row(r: &AnyRow) -> StoreResult<Group> {
    Ok(Group {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        description: r.try_get("description")?,
        builtin: r.try_get::<Option<String>, _>("builtin")?.as_deref().and_then(Builtin::parse),
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        managed_by: r.try_get("managed_by")?,
    })
}

fn membership_row(r: &AnyRow) -> StoreResult<Membership> {
    Ok(Membership {
        group_id: r.try_get("group_id")?,
        user_id: r.try_get("user_id")?,
        source: Source::decode(&r.try_get::<String, _>("source")?)?,
        created_at: r.try_get("created_at")?,
    })
}

fn invitation_row(r: &AnyRow) -> StoreResult<Invitation> {
    Ok(Invitation {
        id: r.try_get("id")?,
        email: r.try_get("email")?,
        user_id: r.try_get("user_id")?,
        invited_by: r.try_get("invited_by")?,
        created_at: r.try_get("created_at")?,
    })
}

fn audit_row(r: &AnyRow) -> StoreResult<AuditEntry> {
    Ok(AuditEntry {
        seq: r.try_get("seq")?,
        at: r.try_get("at")?,
        actor: r.try_get("actor")?,
        action: r.try_get("action")?,
        target: r.try_get("target")?,
        detail: r.try_get("detail")?,
        request_id: r.try_get("request_id")?,
    })
}

fn key_row(r: &AnyRow) -> StoreResult<SigningKey> {
    Ok(SigningKey {
        kid: r.try_get("kid")?,
        alg: r.try_get("alg")?,
        private_key: r.try_get("private_key")?,
        public_jwk: r.try_get("public_jwk")?,
        created_at: r.try_get("created_at")?,
        retired_at: r.try_get("retired_at")?,
    })
}

fn client_row(r: &AnyRow) -> StoreResult<Client> {
    let uris: String = r.try_get("redirect_uris")?;
    Ok(Client {
        client_id: r.try_get("client_id")?,
        name: r.try_get("name")?,
        secret_sha256: r.try_get("secret_sha256")?,
        redirect_uris: serde_json::from_str(&uris).map_err(|e| StoreError::Corrupt(format!("client redirect_uris: {e}")))?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        managed_by: r.try_get("managed_by")?,
        settings: match r.try_get::<Option<String>, _>("settings")? {
            Some(s) => serde_json::from_str(&s).map_err(|e| StoreError::Corrupt(format!("client settings: {e}")))?,
            None => Default::default(),
        },
    })
}

const CONNECTION_NAME_TAKEN: &[(&str, &str)] = &[("name_key", "display_name: another connection already has this display name")];
const USER_TAKEN: &[(&str, &str)] =
    &[("username_key", "username: another user already has this username"), ("email_key", "email: another user already has this email address")];

#[async_trait]
impl Store for Sql {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn meta_get(&self, key: &str) -> StoreResult<Option<String>> {
        let row = sqlx::query("SELECT value FROM meta WHERE key = $1").bind(key).fetch_optional(&self.pool).await?;
        Ok(match row {
            Some(r) => Some(r.try_get("value")?),
            None => None,
        })
    }

    async fn meta_put_if_absent(&self, key: &str, value: &str) -> StoreResult<bool> {
        let done = sqlx::query("INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING").bind(key).bind(value).execute(&self.pool).await?;
        Ok(done.rows_affected() == 1)
    }

    async fn meta_put(&self, key: &str, value: &str) -> StoreResult<()> {
        sqlx::query("INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value")
            .bind(key)
            .bind(value)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn connection_list(&self, sort: ConnectionSort, descending: bool) -> StoreResult<Vec<StoredConnection>> {
        let column = match sort {
            ConnectionSort::Name => "name_key",
            ConnectionSort::Active => "active",
            ConnectionSort::Provider => "provider",
            ConnectionSort::Protocol => "protocol",
            ConnectionSort::Id => "id",
            ConnectionSort::UpdatedAt => "updated_at",
        };
        let dir = if descending { "DESC" } else { "ASC" };
        // Column and direction come from the enums above, never from the request.
        let q = format!("SELECT * FROM connections ORDER BY {column} {dir}, name_key ASC");
        sqlx::query(&q).fetch_all(&self.pool).await?.iter().map(connection_row).collect()
    }

    async fn connection_get(&self, id: &str) -> StoreResult<Option<StoredConnection>> {
        let row = sqlx::query("SELECT * FROM connections WHERE id = $1").bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(connection_row).transpose()
    }

    async fn connection_insert(&self, c: &StoredConnection, audit: &AuditEntry) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("INSERT INTO connections (id, display_name, name_key, protocol, provider, active, settings, secrets, created_at, updated_at, version, managed_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)")
            .bind(&c.id).bind(&c.display_name).bind(name_key(&c.display_name)).bind(&c.protocol)
            .bind(&c.provider).bind(c.active as i64).bind(&c.settings).bind(&c.secrets)
            .bind(c.created_at).bind(c.updated_at).bind(c.version).bind(&c.managed_by)
            .execute(&mut *tx).await
            .map_err(|e| conflict(e, CONNECTION_NAME_TAKEN))?;
        write_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn connection_update(&self, c: &StoredConnection, expected_version: i64, audit: &AuditEntry) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE connections SET display_name = $1, name_key = $2, provider = $3, active = $4, settings = $5, secrets = $6, updated_at = $7, version = $8, managed_by = $9 WHERE id = $10 AND version = $11",
        )
        .bind(&c.display_name)
        .bind(name_key(&c.display_name))
        .bind(&c.provider)
        .bind(c.active as i64)
        .bind(&c.settings)
        .bind(&c.secrets)
        .bind(c.updated_at)
        .bind(c.version)
        .bind(&c.managed_by)
        .bind(&c.id)
        .bind(expected_version)
        .execute(&mut *tx)
        .await
        .map_err(|e| conflict(e, CONNECTION_NAME_TAKEN))?;
        if done.rows_affected() == 0 {
            let current = sqlx::query("SELECT version FROM connections WHERE id = $1").bind(&c.id).fetch_optional(&mut *tx).await?;
            return Err(match current {
                Some(r) => StoreError::Stale { current: r.try_get("version")? },
                None => StoreError::NotFound(format!("connection {}", c.id)),
            });
        }
        write_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn connection_delete(&self, id: &str, audit: &AuditEntry) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query("DELETE FROM connections WHERE id = $1").bind(id).execute(&mut *tx).await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("connection {id}")));
        }
        sqlx::query("DELETE FROM user_links WHERE connection_id = $1").bind(id).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM memberships WHERE source = $1").bind(Source::Connection(id.to_string()).encode()).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM connection_health WHERE connection_id = $1").bind(id).execute(&mut *tx).await?;
        write_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn user_list(&self) -> StoreResult<Vec<User>> {
        sqlx::query("SELECT * FROM users ORDER BY username_key").fetch_all(&self.pool).await?.iter().map(user_row).collect()
    }

    async fn user_page(&self, q: &UserQuery) -> StoreResult<UserPage> {
        // The search is a bound LIKE pattern (its own `%`, `_` and `\` escaped), never
        // spliced into the text; the status too.
        let pattern = q.search.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(|s| {
            let mut p = String::from("%");
            for c in name_key(s).chars() {
                if matches!(c, '%' | '_' | '\\') {
                    p.push('\\');
                }
                p.push(c);
            }
            p.push('%');
            p
        });
        let mut cond = String::from(" WHERE 1 = 1");
        let mut binds: Vec<String> = vec![];
        if let Some(p) = &pattern {
            // Three places, one value: bound three times (SQLite numbers each place).
            cond.push_str(" AND (username_key LIKE $1 ESCAPE '\\' OR email_key LIKE $2 ESCAPE '\\' OR lower(coalesce(name, '')) LIKE $3 ESCAPE '\\')");
            binds.extend([p.clone(), p.clone(), p.clone()]);
        }
        if let Some(st) = q.status {
            cond.push_str(&format!(" AND status = ${}", binds.len() + 1));
            binds.push(st.as_str().to_string());
        }
        let count_sql = format!("SELECT COUNT(*) AS n FROM users{cond}");
        let mut count = sqlx::query(&count_sql);
        for b in &binds {
            count = count.bind(b);
        }
        let total: i64 = count.fetch_one(&self.pool).await?.try_get("n")?;
        let page_sql = format!("SELECT * FROM users{cond} ORDER BY username_key LIMIT ${} OFFSET ${}", binds.len() + 1, binds.len() + 2);
        let mut page = sqlx::query(&page_sql);
        for b in &binds {
            page = page.bind(b);
        }
        let users: Vec<User> =
            page.bind(q.limit.clamp(1, 200)).bind(q.offset.max(0)).fetch_all(&self.pool).await?.iter().map(user_row).collect::<StoreResult<_>>()?;
        if users.is_empty() {
            return Ok(UserPage { users, total, ..Default::default() });
        }
        // One query each for the page's memberships and links: `IN ($1, …, $n)`.
        let marks = (1..=users.len()).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ");
        let sql = format!("SELECT * FROM memberships WHERE user_id IN ({marks}) ORDER BY user_id, group_id, source");
        let mut mq = sqlx::query(&sql);
        for u in &users {
            mq = mq.bind(&u.id);
        }
        let memberships = mq.fetch_all(&self.pool).await?.iter().map(membership_row).collect::<StoreResult<_>>()?;
        let sql = format!("SELECT * FROM user_links WHERE user_id IN ({marks}) ORDER BY user_id, created_at, connection_id");
        let mut lq = sqlx::query(&sql);
        for u in &users {
            lq = lq.bind(&u.id);
        }
        let links = lq.fetch_all(&self.pool).await?.iter().map(link_row).collect::<StoreResult<_>>()?;
        Ok(UserPage { users, total, memberships, links })
    }

    async fn users_by_ids(&self, ids: &[String]) -> StoreResult<Vec<User>> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(500) {
            let marks = (1..=chunk.len()).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ");
            let sql = format!("SELECT * FROM users WHERE id IN ({marks})");
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q.bind(id);
            }
            for row in q.fetch_all(&self.pool).await? {
                out.push(user_row(&row)?);
            }
        }
        out.sort_by_key(|u| name_key(&u.username));
        Ok(out)
    }

    async fn user_get(&self, id: &str) -> StoreResult<Option<User>> {
        let row = sqlx::query("SELECT * FROM users WHERE id = $1").bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(user_row).transpose()
    }

    async fn user_by_email(&self, email: &str) -> StoreResult<Option<User>> {
        let row = sqlx::query("SELECT * FROM users WHERE email_key = $1").bind(name_key(email)).fetch_optional(&self.pool).await?;
        row.as_ref().map(user_row).transpose()
    }

    async fn user_insert(&self, u: &User, audit: &AuditEntry) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        insert_user(&mut tx, u).await?;
        write_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn user_update(&self, u: &User, audit: &AuditEntry) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE users SET username = $1, username_key = $2, email = $3, email_key = $4, status = $5, invited_at = $6, updated_at = $7, \
             name = $8, given_name = $9, family_name = $10, picture = $11, email_verified = $13 WHERE id = $12",
        )
        .bind(&u.username)
        .bind(name_key(&u.username))
        .bind(&u.email)
        .bind(lower_opt(&u.email))
        .bind(u.status.as_str())
        .bind(u.invited_at)
        .bind(u.updated_at)
        .bind(&u.profile.name)
        .bind(&u.profile.given_name)
        .bind(&u.profile.family_name)
        .bind(&u.profile.picture)
        .bind(&u.id)
        .bind(u.email_verified as i64)
        .execute(&mut *tx)
        .await
        .map_err(|e| conflict(e, USER_TAKEN))?;
        commit_audited(tx, done.rows_affected(), || format!("user {}", u.id), audit).await
    }

    async fn user_delete(&self, id: &str, audit: &AuditEntry) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query("DELETE FROM users WHERE id = $1").bind(id).execute(&mut *tx).await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("user {id}")));
        }
        for table in ["user_links", "memberships", "invitations"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE user_id = $1")).bind(id).execute(&mut *tx).await?;
        }
        write_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn link_get(&self, connection_id: &str, subject: &str) -> StoreResult<Option<Link>> {
        let row = sqlx::query("SELECT * FROM user_links WHERE connection_id = $1 AND subject = $2")
            .bind(connection_id)
            .bind(subject)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(link_row).transpose()
    }

    async fn user_by_link(&self, connection_id: &str, subject: &str) -> StoreResult<Option<User>> {
        let row = sqlx::query("SELECT u.* FROM user_links l JOIN users u ON u.id = l.user_id WHERE l.connection_id = $1 AND l.subject = $2")
            .bind(connection_id)
            .bind(subject)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(user_row).transpose()
    }

    async fn links_of_user(&self, user_id: &str) -> StoreResult<Vec<Link>> {
        sqlx::query("SELECT * FROM user_links WHERE user_id = $1 ORDER BY created_at, connection_id")
            .bind(user_id)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(link_row)
            .collect()
    }

    async fn link_insert(&self, link: &Link, audit: &AuditEntry) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        let user = sqlx::query("SELECT id FROM users WHERE id = $1").bind(&link.user_id).fetch_optional(&mut *tx).await?;
        if user.is_none() {
            return Err(StoreError::NotFound(format!("user {}", link.user_id)));
        }
        insert_link(&mut tx, link).await?;
        write_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn link_set(&self, link: &Link, audit: &AuditEntry) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        let user = sqlx::query("SELECT id FROM users WHERE id = $1").bind(&link.user_id).fetch_optional(&mut *tx).await?;
        if user.is_none() {
            return Err(StoreError::NotFound(format!("user {}", link.user_id)));
        }
        let row = sqlx::query("SELECT * FROM user_links WHERE connection_id = $1 AND subject = $2")
            .bind(&link.connection_id)
            .bind(&link.subject)
            .fetch_optional(&mut *tx)
            .await?;
        match row.as_ref().map(link_row).transpose()? {
            Some(l) if l.user_id == link.user_id => return Ok(()),
            Some(_) => return Err(StoreError::Conflict("subject: this upstream identity is already linked to another user".into())),
            None => {}
        }
        sqlx::query("DELETE FROM user_links WHERE user_id = $1 AND connection_id = $2").bind(&link.user_id).bind(&link.connection_id).execute(&mut *tx).await?;
        insert_link(&mut tx, link).await?;
        write_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn link_delete(&self, user_id: &str, connection_id: &str, audit: &AuditEntry) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query("DELETE FROM user_links WHERE user_id = $1 AND connection_id = $2").bind(user_id).bind(connection_id).execute(&mut *tx).await?;
        commit_audited(tx, done.rows_affected(), || format!("link of user {user_id} on connection {connection_id}"), audit).await
    }

    async fn group_list(&self) -> StoreResult<Vec<Group>> {
        sqlx::query("SELECT * FROM user_groups ORDER BY name_key").fetch_all(&self.pool).await?.iter().map(group_row).collect()
    }

    async fn group_get(&self, id: &str) -> StoreResult<Option<Group>> {
        let row = sqlx::query("SELECT * FROM user_groups WHERE id = $1").bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(group_row).transpose()
    }

    async fn group_insert(&self, g: &Group, audit: &AuditEntry) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO user_groups (id, name, name_key, description, builtin, created_at, updated_at, managed_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&g.id)
        .bind(&g.name)
        .bind(name_key(&g.name))
        .bind(&g.description)
        .bind(g.builtin.map(Builtin::as_str))
        .bind(g.created_at)
        .bind(g.updated_at)
        .bind(&g.managed_by)
        .execute(&mut *tx)
        .await
        .map_err(|e| conflict(e, &[("name_key", "name: another group already has this name")]))?;
        write_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn group_update(&self, g: &Group, audit: &AuditEntry) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query("UPDATE user_groups SET name = $1, name_key = $2, description = $3, updated_at = $4, managed_by = $5 WHERE id = $6")
            .bind(&g.name)
            .bind(name_key(&g.name))
            .bind(&g.description)
            .bind(g.updated_at)
            .bind(&g.managed_by)
            .bind(&g.id)
            .execute(&mut *tx)
            .await
            .map_err(|e| conflict(e, &[("name_key", "name: another group already has this name")]))?;
        commit_audited(tx, done.rows_affected(), || format!("group {}", g.id), audit).await
    }

    async fn group_delete(&self, id: &str, audit: &AuditEntry) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query("DELETE FROM user_groups WHERE id = $1 AND builtin IS NULL").bind(id).execute(&mut *tx).await?;
        if done.rows_affected() == 0 {
            let builtin = sqlx::query("SELECT name FROM user_groups WHERE id = $1").bind(id).fetch_optional(&mut *tx).await?;
            return Err(match builtin {
                Some(r) => StoreError::Conflict(format!("group {} is built in and cannot be deleted", r.try_get::<String, _>("name")?)),
                None => StoreError::NotFound(format!("group {id}")),
            });
        }
        sqlx::query("DELETE FROM memberships WHERE group_id = $1").bind(id).execute(&mut *tx).await?;
        write_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn memberships_of_user(&self, user_id: &str) -> StoreResult<Vec<Membership>> {
        sqlx::query("SELECT * FROM memberships WHERE user_id = $1 ORDER BY group_id, source")
            .bind(user_id)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(membership_row)
            .collect()
    }

    async fn session_check(&self, user_id: &str, connection_id: &str) -> StoreResult<SessionCheck> {
        // One row per membership (one with a NULL name when there is none); none when the
        // user is gone. The connection's state rides along on every row.
        let rows = sqlx::query(
            "SELECT u.status AS status, (SELECT c.active FROM connections c WHERE c.id = $2) AS active, g.name AS group_name \
             FROM users u LEFT JOIN memberships m ON m.user_id = u.id LEFT JOIN user_groups g ON g.id = m.group_id WHERE u.id = $1",
        )
        .bind(user_id)
        .bind(connection_id)
        .fetch_all(&self.pool)
        .await?;
        let Some(first) = rows.first() else {
            let active = sqlx::query("SELECT active FROM connections WHERE id = $1").bind(connection_id).fetch_optional(&self.pool).await?;
            let connection_active = active.map(|r| r.try_get::<i64, _>("active")).transpose()?.is_some_and(|a| a != 0);
            return Ok(SessionCheck { user_status: None, connection_active, groups: vec![] });
        };
        Ok(SessionCheck {
            user_status: Some(UserStatus::parse(&first.try_get::<String, _>("status")?)?),
            connection_active: first.try_get::<Option<i64>, _>("active")?.is_some_and(|a| a != 0),
            groups: rows.iter().map(|r| r.try_get::<Option<String>, _>("group_name")).collect::<Result<Vec<_>, _>>()?.into_iter().flatten().collect(),
        })
    }

    async fn memberships_of_group(&self, group_id: &str) -> StoreResult<Vec<Membership>> {
        sqlx::query("SELECT * FROM memberships WHERE group_id = $1 ORDER BY user_id, source")
            .bind(group_id)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(membership_row)
            .collect()
    }

    async fn memberships_apply(&self, add: &[Membership], remove: &[Membership], audit: &[AuditEntry]) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        for m in add {
            for (table, id) in [("users", &m.user_id), ("user_groups", &m.group_id)] {
                let found = sqlx::query(&format!("SELECT id FROM {table} WHERE id = $1")).bind(id).fetch_optional(&mut *tx).await?;
                if found.is_none() {
                    let what = if table == "users" { "user" } else { "group" };
                    return Err(StoreError::NotFound(format!("{what} {id}")));
                }
            }
            sqlx::query("INSERT INTO memberships (group_id, user_id, source, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING")
                .bind(&m.group_id)
                .bind(&m.user_id)
                .bind(m.source.encode())
                .bind(m.created_at)
                .execute(&mut *tx)
                .await?;
        }
        for m in remove {
            sqlx::query("DELETE FROM memberships WHERE group_id = $1 AND user_id = $2 AND source = $3")
                .bind(&m.group_id)
                .bind(&m.user_id)
                .bind(m.source.encode())
                .execute(&mut *tx)
                .await?;
        }
        for e in audit {
            write_audit(&mut tx, e).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn invitation_list(&self) -> StoreResult<Vec<Invitation>> {
        sqlx::query("SELECT * FROM invitations ORDER BY created_at DESC, id").fetch_all(&self.pool).await?.iter().map(invitation_row).collect()
    }

    async fn invitation_insert(&self, inv: &Invitation, user: &User, memberships: &[Membership], links: &[Link], audit: &[AuditEntry]) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        insert_user(&mut tx, user).await?;
        for link in links {
            insert_link(&mut tx, link).await?;
        }
        sqlx::query("INSERT INTO invitations (id, email, email_key, user_id, invited_by, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(&inv.id)
            .bind(&inv.email)
            .bind(name_key(&inv.email))
            .bind(&inv.user_id)
            .bind(&inv.invited_by)
            .bind(inv.created_at)
            .execute(&mut *tx)
            .await
            .map_err(|e| conflict(e, &[("email_key", "email: this address is already invited")]))?;
        for m in memberships {
            let group = sqlx::query("SELECT id FROM user_groups WHERE id = $1").bind(&m.group_id).fetch_optional(&mut *tx).await?;
            if group.is_none() {
                return Err(StoreError::NotFound(format!("group {}", m.group_id)));
            }
            sqlx::query("INSERT INTO memberships (group_id, user_id, source, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING")
                .bind(&m.group_id)
                .bind(&m.user_id)
                .bind(m.source.encode())
                .bind(m.created_at)
                .execute(&mut *tx)
                .await?;
        }
        for a in audit {
            write_audit(&mut tx, a).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn invitation_delete(&self, id: &str, audit: &AuditEntry) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query("SELECT * FROM invitations WHERE id = $1").bind(id).fetch_optional(&mut *tx).await?;
        let Some(inv) = row.as_ref().map(invitation_row).transpose()? else {
            return Err(StoreError::NotFound(format!("invitation {id}")));
        };
        sqlx::query("DELETE FROM invitations WHERE id = $1").bind(id).execute(&mut *tx).await?;
        // A user who never logged in goes with the invitation; an active one stays.
        let pending = sqlx::query("DELETE FROM users WHERE id = $1 AND status = 'pending'").bind(&inv.user_id).execute(&mut *tx).await?;
        if pending.rows_affected() > 0 {
            sqlx::query("DELETE FROM memberships WHERE user_id = $1").bind(&inv.user_id).execute(&mut *tx).await?;
            sqlx::query("DELETE FROM user_links WHERE user_id = $1").bind(&inv.user_id).execute(&mut *tx).await?;
        }
        write_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn audit_append(&self, entry: &AuditEntry) -> StoreResult<()> {
        let mut conn = self.pool.acquire().await?;
        write_audit(&mut conn, entry).await
    }

    async fn audit_list(&self, q: AuditQuery) -> StoreResult<Vec<AuditEntry>> {
        // Each filter adds a condition with its value bound, never spliced into the text.
        let mut sql = String::from("SELECT * FROM audit_log WHERE seq < $1");
        let mut texts: Vec<String> = vec![];
        let mut numbers: Vec<i64> = vec![];
        let mut next = 2;
        let mut bind_text = |sql: &mut String, cond: &str, v: String, texts: &mut Vec<String>| {
            sql.push_str(&cond.replace('?', &format!("${next}")));
            next += 1;
            texts.push(v);
        };
        if let Some(a) = q.actor {
            bind_text(&mut sql, " AND actor = ?", a, &mut texts);
        }
        match q.action {
            Some(a) if a.ends_with('.') => {
                let n = a.chars().count();
                bind_text(&mut sql, &format!(" AND substr(action, 1, {n}) = ?"), a, &mut texts);
            }
            Some(a) => bind_text(&mut sql, " AND action = ?", a, &mut texts),
            None => {}
        }
        if let Some(t) = q.target {
            bind_text(&mut sql, " AND target = ?", t, &mut texts);
        }
        if let Some(c) = q.connection {
            // Two places, one value: bound twice.
            let actor = format!("connection:{c}");
            sql.push_str(&format!(" AND (target = ${} OR actor = ${})", next, next + 1));
            next += 2;
            texts.push(c);
            texts.push(actor);
        }
        let mut numeric = |sql: &mut String, cond: &str, v: i64| {
            sql.push_str(&cond.replace('?', &format!("${next}")));
            next += 1;
            numbers.push(v);
        };
        if let Some(since) = q.since {
            numeric(&mut sql, " AND at >= ?", since);
        }
        if let Some(until) = q.until {
            numeric(&mut sql, " AND at < ?", until);
        }
        sql.push_str(&format!(" ORDER BY seq DESC LIMIT ${next}"));
        let mut query = sqlx::query(&sql).bind(q.before.unwrap_or(i64::MAX));
        for t in texts {
            query = query.bind(t);
        }
        for n in numbers {
            query = query.bind(n);
        }
        query.bind(q.limit.clamp(1, 1000)).fetch_all(&self.pool).await?.iter().map(audit_row).collect()
    }

    async fn health_login(&self, connection_id: &str, at: Millis) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO connection_health (connection_id, last_login_at) VALUES ($1, $2) ON CONFLICT (connection_id) DO UPDATE SET \
             last_login_at = CASE WHEN connection_health.last_login_at IS NULL OR connection_health.last_login_at < excluded.last_login_at \
             THEN excluded.last_login_at ELSE connection_health.last_login_at END",
        )
        .bind(connection_id)
        .bind(at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn health_error(&self, connection_id: &str, at: Millis, error: &str) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO connection_health (connection_id, last_error_at, last_error) VALUES ($1, $2, $3) ON CONFLICT (connection_id) DO UPDATE SET \
             last_error = CASE WHEN connection_health.last_error_at IS NULL OR connection_health.last_error_at <= excluded.last_error_at \
             THEN excluded.last_error ELSE connection_health.last_error END, \
             last_error_at = CASE WHEN connection_health.last_error_at IS NULL OR connection_health.last_error_at < excluded.last_error_at \
             THEN excluded.last_error_at ELSE connection_health.last_error_at END",
        )
        .bind(connection_id)
        .bind(at)
        .bind(error)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn health_list(&self) -> StoreResult<Vec<ConnectionHealth>> {
        let rows = sqlx::query("SELECT * FROM connection_health ORDER BY connection_id").fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                Ok(ConnectionHealth {
                    connection_id: r.try_get("connection_id")?,
                    last_login_at: r.try_get("last_login_at")?,
                    last_error_at: r.try_get("last_error_at")?,
                    last_error: r.try_get("last_error")?,
                })
            })
            .collect()
    }

    async fn signing_key_list(&self) -> StoreResult<Vec<SigningKey>> {
        sqlx::query("SELECT * FROM signing_keys ORDER BY created_at DESC, kid").fetch_all(&self.pool).await?.iter().map(key_row).collect()
    }

    async fn signing_key_insert(&self, k: &SigningKey, audit: &AuditEntry) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE signing_keys SET retired_at = $1 WHERE retired_at IS NULL").bind(k.created_at).execute(&mut *tx).await?;
        sqlx::query("INSERT INTO signing_keys (kid, alg, private_key, public_jwk, created_at, retired_at) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(&k.kid)
            .bind(&k.alg)
            .bind(&k.private_key)
            .bind(&k.public_jwk)
            .bind(k.created_at)
            .bind(k.retired_at)
            .execute(&mut *tx)
            .await?;
        write_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn client_list(&self) -> StoreResult<Vec<Client>> {
        sqlx::query("SELECT * FROM clients ORDER BY client_id").fetch_all(&self.pool).await?.iter().map(client_row).collect()
    }

    async fn client_get(&self, client_id: &str) -> StoreResult<Option<Client>> {
        let row = sqlx::query("SELECT * FROM clients WHERE client_id = $1").bind(client_id).fetch_optional(&self.pool).await?;
        row.as_ref().map(client_row).transpose()
    }

    async fn client_insert(&self, c: &Client, audit: &AuditEntry) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO clients (client_id, name, secret_sha256, redirect_uris, created_at, updated_at, managed_by, settings) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&c.client_id)
        .bind(&c.name)
        .bind(&c.secret_sha256)
        .bind(serde_json::to_string(&c.redirect_uris).unwrap_or_default())
        .bind(c.created_at)
        .bind(c.updated_at)
        .bind(&c.managed_by)
        .bind(serde_json::to_string(&c.settings).unwrap_or_default())
        .execute(&mut *tx)
        .await
        .map_err(|e| conflict(e, &[("", "client_id: another client has this id")]))?;
        write_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn client_update(&self, c: &Client, audit: &AuditEntry) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE clients SET name = $1, secret_sha256 = $2, redirect_uris = $3, updated_at = $4, managed_by = $5, settings = $7 WHERE client_id = $6",
        )
        .bind(&c.name)
        .bind(&c.secret_sha256)
        .bind(serde_json::to_string(&c.redirect_uris).unwrap_or_default())
        .bind(c.updated_at)
        .bind(&c.managed_by)
        .bind(&c.client_id)
        .bind(serde_json::to_string(&c.settings).unwrap_or_default())
        .execute(&mut *tx)
        .await?;
        commit_audited(tx, done.rows_affected(), || format!("client {}", c.client_id), audit).await
    }

    async fn client_delete(&self, client_id: &str, audit: &AuditEntry) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query("DELETE FROM clients WHERE client_id = $1").bind(client_id).execute(&mut *tx).await?;
        commit_audited(tx, done.rows_affected(), || format!("client {client_id}"), audit).await
    }
}

async fn insert_user(conn: &mut AnyConnection, u: &User) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO users (id, username, username_key, email, email_key, status, invited_at, created_at, updated_at, name, given_name, family_name, picture, email_verified) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
    )
    .bind(&u.id)
    .bind(&u.username)
    .bind(name_key(&u.username))
    .bind(&u.email)
    .bind(lower_opt(&u.email))
    .bind(u.status.as_str())
    .bind(u.invited_at)
    .bind(u.created_at)
    .bind(u.updated_at)
    .bind(&u.profile.name)
    .bind(&u.profile.given_name)
    .bind(&u.profile.family_name)
    .bind(&u.profile.picture)
    .bind(u.email_verified as i64)
    .execute(conn)
    .await
    .map_err(|e| conflict(e, USER_TAKEN))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::upstream_section;

    #[test]
    fn migration_6_moves_the_protocol_section_and_keeps_the_rest() {
        let old = r#"{"webapp_url":null,"create_users":true,"group_sync":false,"claims":{"user_id":"sub"},"oidc":{"issuer":"https://i"},"saml":null}"#;
        let new: serde_json::Value = serde_json::from_str(&upstream_section("oidc", old).unwrap().unwrap()).unwrap();
        assert_eq!(
            new,
            serde_json::json!({"webapp_url": null, "create_users": true, "group_sync": false, "claims": {"user_id": "sub"}, "upstream": {"oidc": {"issuer": "https://i"}}})
        );
        assert_eq!(upstream_section("oidc", &new.to_string()).unwrap(), None, "already moved: left alone");
        let saml = r#"{"oidc":null,"saml":{"entity_id":"e"}}"#;
        assert!(upstream_section("saml", saml).unwrap().unwrap().contains(r#""upstream":{"saml":{"entity_id":"e"}}"#));
        for (protocol, bad) in [("saml", old), ("oidc", "[]"), ("oidc", "not json"), ("ldap", old)] {
            assert!(upstream_section(protocol, bad).is_err(), "{protocol} {bad}");
        }
    }
}
