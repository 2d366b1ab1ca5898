//! What a login leaves for operators, written from the login's own paths (never from
//! `/auth`): the metrics, an audit event, and the connection's health (its last login
//! and last refusal, shown in the API's connection view).
//!
//! Every success is audited (`login.success`). Refusals are bounded so that a flood
//! cannot fill the store: per connection, step and reason, the first refusal of a minute
//! is written at once (`login.refused`, with its request id, user when known, and the
//! sentence the user saw), and the rest of that minute are counted and written as one
//! `login.refused` with `count`, `first_at` and `last_at` when the minute is over
//! ([`flush`], every few seconds and at shutdown). The keys are bounded too: the
//! connections the registry knows, one [`UNKNOWN`] for every other id, and the fixed
//! [`Step`]s and [`Reason`]s. Health writes follow the same rule, and a success updates
//! `last_login_at` at most every [`HEALTH_WRITE_MS`] per connection and replica (the
//! flush writes the latest).

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::json;

use super::error::{LoginError, Reason, Step};
use crate::app::AppState;
use crate::audit::AuditEntry;
use crate::clock::{rfc3339, Millis};
use crate::connection::Connection;
use crate::metrics::{Outcome, UNKNOWN};
use crate::state::Session;

/// Refusals with the same connection, step and reason within this long are written as one.
pub const WINDOW_MS: Millis = 60_000;
/// A connection's `last_login_at` is written at most this often per replica.
pub const HEALTH_WRITE_MS: Millis = 10_000;
/// The sentence kept with a refusal, at most (characters).
const MESSAGE_MAX: usize = 300;

type Key = (String, Step, Reason);

/// One minute of refusals with one key.
#[derive(Debug)]
struct Window {
    started: Millis,
    /// Refusals after the first, not yet written.
    counted: u64,
    first_counted_at: Millis,
    last_at: Millis,
    /// What the last one said, for the connection's health.
    last_error: String,
}

/// Successes per connection: when `last_login_at` was last written, and a later login
/// not yet written.
#[derive(Debug, Default)]
struct Logins {
    written_at: Millis,
    pending: Option<Millis>,
}

/// The refusal windows and pending health writes of this replica.
#[derive(Debug, Default)]
pub struct Recorder {
    windows: Mutex<HashMap<Key, Window>>,
    logins: Mutex<HashMap<String, Logins>>,
}

fn actor(connection: &str) -> String {
    format!("connection:{connection}")
}

/// The sentence, bounded and on one line.
fn bounded(message: &str) -> String {
    message.chars().filter(|c| !c.is_control()).take(MESSAGE_MAX).collect()
}

/// A successful login through `conn` that started `session`.
pub async fn success(app: &AppState, conn: &Connection, session: &Session) {
    app.metrics.login(&conn.id, Outcome::Success, "", "");
    let now = app.clock.now();
    let detail = json!({"connection": conn.id, "protocol": conn.protocol().as_str(), "user_id": session.user_id});
    let entry = AuditEntry::new(now, &actor(&conn.id), "login.success", &session.user_id, detail);
    if let Err(e) = app.store.audit_append(&entry).await {
        tracing::warn!(connection = %conn.id, error = %e, "could not write the login's audit event");
    }
    let write = match app.recorder.logins.lock() {
        Ok(mut m) => {
            let l = m.entry(conn.id.clone()).or_default();
            if now - l.written_at >= HEALTH_WRITE_MS {
                l.written_at = now;
                l.pending = None;
                true
            } else {
                l.pending = Some(now);
                false
            }
        }
        Err(_) => false,
    };
    if write {
        if let Err(e) = app.store.health_login(&conn.id, now).await {
            tracing::warn!(connection = %conn.id, error = %e, "could not record the connection's last login");
        }
    }
}

/// The connection a refusal counts under: its id when the registry knows it, else
/// [`UNKNOWN`] (any id a client sends would otherwise make a new series and key).
async fn known(app: &AppState, err: &LoginError) -> String {
    match err.connection_id() {
        Some(id) if crate::id::is_wellformed(id) && app.registry.get_cached(id).await.is_ok() => id.to_string(),
        _ => UNKNOWN.to_string(),
    }
}

/// A refused login: counted, and audited as the module says.
pub async fn refused(app: &AppState, err: &LoginError) {
    let connection = known(app, err).await;
    let (step, reason) = (err.step(), err.why());
    app.metrics.login(&connection, Outcome::Refused, step.as_str(), reason.as_str());
    let now = app.clock.now();
    let message = bounded(err.message());
    let summary = format!("{}: {} ({message})", step.as_str(), reason.as_str());
    let key = (connection.clone(), step, reason);
    // Decided under the lock, written after it.
    let (first, closed) = {
        let Ok(mut windows) = app.recorder.windows.lock() else { return };
        match windows.get_mut(&key) {
            Some(w) if now - w.started < WINDOW_MS => {
                if w.counted == 0 {
                    w.first_counted_at = now;
                }
                w.counted += 1;
                w.last_at = now;
                w.last_error.clone_from(&summary);
                (false, None)
            }
            _ => {
                let fresh = Window { started: now, counted: 0, first_counted_at: now, last_at: now, last_error: summary.clone() };
                (true, windows.insert(key.clone(), fresh))
            }
        }
    };
    if let Some(w) = closed {
        write_counted(app, &key, &w).await;
    }
    if !first {
        return;
    }
    let mut detail = json!({"connection": connection, "step": step.as_str(), "reason": reason.as_str(), "status": err.status().as_u16(), "message": message});
    if let Some(user) = err.user_id() {
        detail["user_id"] = json!(user);
    }
    let target = err.user_id().unwrap_or(&connection).to_string();
    let entry = AuditEntry::new(now, &actor(&connection), "login.refused", &target, detail);
    if let Err(e) = app.store.audit_append(&entry).await {
        tracing::warn!(connection = %connection, error = %e, "could not write the refusal's audit event");
    }
    if connection != UNKNOWN {
        if let Err(e) = app.store.health_error(&connection, now, &summary).await {
            tracing::warn!(connection = %connection, error = %e, "could not record the connection's last error");
        }
    }
}

/// The refusals a window counted after its first, as one audit event.
async fn write_counted(app: &AppState, (connection, step, reason): &Key, w: &Window) {
    if w.counted == 0 {
        return;
    }
    let detail = json!({
        "connection": connection, "step": step.as_str(), "reason": reason.as_str(), "count": w.counted,
        "first_at": rfc3339(w.first_counted_at), "last_at": rfc3339(w.last_at), "aggregated": true,
    });
    let entry = AuditEntry { request_id: None, ..AuditEntry::new(w.last_at, &actor(connection), "login.refused", connection, detail) };
    if let Err(e) = app.store.audit_append(&entry).await {
        tracing::warn!(connection = %connection, error = %e, "could not write the refusals' audit event");
    }
    if connection != UNKNOWN {
        if let Err(e) = app.store.health_error(connection, w.last_at, &w.last_error).await {
            tracing::warn!(connection = %connection, error = %e, "could not record the connection's last error");
        }
    }
}

/// Writes what is due: the counted refusals of every window older than a minute (every
/// window with `all`, at shutdown) and the logins not yet in the connections' health.
pub async fn flush(app: &AppState, all: bool) {
    let now = app.clock.now();
    let closed: Vec<(Key, Window)> = match app.recorder.windows.lock() {
        Ok(mut windows) => {
            let due: Vec<Key> = windows.iter().filter(|(_, w)| all || now - w.started >= WINDOW_MS).map(|(k, _)| k.clone()).collect();
            due.into_iter().filter_map(|k| windows.remove(&k).map(|w| (k, w))).collect()
        }
        Err(_) => vec![],
    };
    for (key, w) in &closed {
        write_counted(app, key, w).await;
    }
    let logins: Vec<(String, Millis)> = match app.recorder.logins.lock() {
        Ok(mut m) => m
            .iter_mut()
            .filter_map(|(id, l)| {
                let at = l.pending.take()?;
                l.written_at = now;
                Some((id.clone(), at))
            })
            .collect(),
        Err(_) => vec![],
    };
    for (id, at) in logins {
        if let Err(e) = app.store.health_login(&id, at).await {
            tracing::warn!(connection = %id, error = %e, "could not record the connection's last login");
        }
    }
}
