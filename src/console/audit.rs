//! The Audit log page: who changed what, and every login, newest first, filtered by
//! actor, action, connection and time, over the same store query as `GET /audit`.
//! Times in the filter are UTC (the form says so); paging goes back by sequence number.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::common::{self, enc, when};
use super::session::Admin;
use super::users::connection_names;
use super::views::Chrome;
use crate::app::AppState;
use crate::store::AuditQuery;

/// Entries per page.
const PAGE: i64 = 50;

/// Actions offered in the filter (a prefix ending in `.` takes every action under it).
const ACTIONS: &[(&str, &str)] = &[
    ("login.", "Logins (all)"),
    ("login.success", "Login succeeded"),
    ("login.refused", "Login refused"),
    ("console.sign_in", "Console sign-in"),
    ("connection.", "Connections (all)"),
    ("user.", "Users (all)"),
    ("invitation.", "Invitations (all)"),
    ("group.", "Groups (all)"),
    ("membership.", "Memberships (all)"),
    ("link.", "Linked identities (all)"),
    ("client.", "Apps (all)"),
    ("signing_key.", "Signing keys (all)"),
];

/// `?actor=&action=&connection=&since=&until=&before=`
#[derive(Debug, Default, Deserialize)]
pub struct Filters {
    actor: Option<String>,
    action: Option<String>,
    connection: Option<String>,
    since: Option<String>,
    until: Option<String>,
    before: Option<String>,
}

/// The audit log page.
#[derive(Template)]
#[template(path = "audit.html")]
pub struct AuditPage {
    /// Frame.
    pub chrome: Chrome,
    /// The filters, as given.
    pub actor: String,
    /// Action filter.
    pub action: String,
    /// Connection filter (id).
    pub connection: String,
    /// From (`YYYY-MM-DDTHH:MM`, UTC).
    pub since: String,
    /// Until (`YYYY-MM-DDTHH:MM`, UTC).
    pub until: String,
    /// Action choices.
    pub actions: Vec<(String, String)>,
    /// Connection choices (id, name).
    pub connections: Vec<(String, String)>,
    /// The entries.
    pub rows: Vec<AuditRow>,
    /// The link to older entries.
    pub older: Option<String>,
    /// Any filter is set.
    pub filtered: bool,
}

/// An entry.
pub struct AuditRow {
    /// Sequence number.
    pub seq: i64,
    /// When, for people.
    pub at: String,
    /// When, RFC 3339.
    pub at_iso: String,
    /// Who.
    pub actor: String,
    /// What.
    pub action: String,
    /// About what.
    pub target: String,
    /// Details, compact JSON.
    pub detail: String,
    /// A refusal or removal (shown in the warning colour).
    pub warn: bool,
}

/// `YYYY-MM-DDTHH:MM[:SS]` (a `datetime-local` value, taken as UTC) or RFC 3339.
fn instant(field: &str, v: Option<&str>) -> Result<Option<i64>, Box<Response>> {
    let Some(v) = v.map(str::trim).filter(|v| !v.is_empty()) else { return Ok(None) };
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(v) {
        return Ok(Some(t.timestamp_millis()));
    }
    for f in ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(v, f) {
            return Ok(Some(t.and_utc().timestamp_millis()));
        }
    }
    Err(Box::new(super::error_page(StatusCode::BAD_REQUEST, "Not understood", &format!("The {field} time must look like 2026-12-01T09:30 (UTC)."))))
}

/// An entry's detail for people: `key: value` pairs (strings unquoted), at most 400
/// characters; anything else as stored.
fn readable(detail: &str) -> String {
    let text = match serde_json::from_str::<serde_json::Value>(detail) {
        Ok(serde_json::Value::Object(m)) => m
            .iter()
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => format!("{k}: {s}"),
                other => format!("{k}: {other}"),
            })
            .collect::<Vec<_>>()
            .join(", "),
        _ => detail.to_string(),
    };
    text.chars().take(400).collect()
}

/// `GET /console/audit`
pub async fn list(State(app): State<AppState>, admin: Admin, Query(f): Query<Filters>) -> Response {
    let (actor, action, connection) = match (
        common::param("actor", f.actor.as_deref()),
        common::param("action", f.action.as_deref()),
        common::param("connection", f.connection.as_deref()),
    ) {
        (Ok(a), Ok(b), Ok(c)) => (a, b, c),
        (Err(r), _, _) | (_, Err(r), _) | (_, _, Err(r)) => return *r,
    };
    let (since, until) = match (instant("from", f.since.as_deref()), instant("until", f.until.as_deref())) {
        (Ok(s), Ok(u)) => (s, u),
        (Err(r), _) | (_, Err(r)) => return *r,
    };
    let before = match f.before.as_deref().filter(|b| !b.is_empty()).map(str::parse::<i64>) {
        None => None,
        Some(Ok(b)) if b > 0 => Some(b),
        Some(_) => return super::error_page(StatusCode::BAD_REQUEST, "Not understood", "before is an entry's sequence number."),
    };
    let q = AuditQuery { before, limit: PAGE, actor: actor.clone(), action: action.clone(), target: None, connection: connection.clone(), since, until };
    let entries = match app.store.audit_list(q).await {
        Ok(e) => e,
        Err(e) => return super::unavailable(&e),
    };
    let connections: Vec<(String, String)> = match connection_names(&app).await {
        Ok(c) => c.into_iter().collect(),
        Err(r) => return r,
    };
    let fmt_local = |ms: Option<i64>| ms.and_then(chrono::DateTime::from_timestamp_millis).map(|d| d.format("%Y-%m-%dT%H:%M").to_string()).unwrap_or_default();
    let (since_s, until_s) = (fmt_local(since), fmt_local(until));
    let older = (entries.len() as i64 == PAGE).then(|| {
        let last = entries.last().map(|e| e.seq).unwrap_or(0);
        let mut s = format!("/console/audit?before={last}");
        for (k, v) in [("actor", &actor), ("action", &action), ("connection", &connection)] {
            if let Some(v) = v {
                s.push_str(&format!("&{k}={}", enc(v)));
            }
        }
        for (k, v) in [("since", &since_s), ("until", &until_s)] {
            if !v.is_empty() {
                s.push_str(&format!("&{k}={}", enc(v)));
            }
        }
        s
    });
    let rows = entries
        .into_iter()
        .map(|e| AuditRow {
            seq: e.seq,
            at: when(e.at),
            at_iso: crate::clock::rfc3339(e.at),
            warn: e.action.ends_with("refused") || e.action.ends_with(".delete") || e.action.ends_with(".disable") || e.action.ends_with(".remove"),
            actor: e.actor,
            action: e.action,
            target: e.target,
            detail: readable(&e.detail),
        })
        .collect();
    let mut actions: Vec<(String, String)> = ACTIONS.iter().map(|(v, l)| (v.to_string(), l.to_string())).collect();
    if let Some(a) = action.as_ref().filter(|a| !ACTIONS.iter().any(|(v, _)| v == *a)) {
        actions.push((a.clone(), a.clone()));
    }
    let view = AuditPage {
        chrome: Chrome::at(&admin, "audit"),
        filtered: actor.is_some() || action.is_some() || connection.is_some() || since.is_some() || until.is_some(),
        actor: actor.unwrap_or_default(),
        action: action.unwrap_or_default(),
        connection: connection.unwrap_or_default(),
        since: since_s,
        until: until_s,
        actions,
        connections,
        rows,
        older,
    };
    super::render(StatusCode::OK, &view)
}
