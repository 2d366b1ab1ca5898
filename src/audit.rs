//! The audit log: who changed what, when. Entries never carry a secret: callers
//! describe changes by field names, not values, for anything secret.

use serde::Serialize;

use crate::clock::{rfc3339, Millis};

/// One audit entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// Sequence number (assigned by the store; 0 before).
    pub seq: i64,
    /// When.
    pub at: Millis,
    /// Who: `admin`, `cli`, `system`, or `connection:ID` for group sync.
    pub actor: String,
    /// What, as `noun.verb` (`connection.create`).
    pub action: String,
    /// The id of what was changed.
    pub target: String,
    /// Details (JSON object); never secret values.
    pub detail: String,
    /// The request that made the change, when there was one.
    pub request_id: Option<String>,
}

impl AuditEntry {
    /// A new entry at `at`.
    pub fn new(at: Millis, actor: &str, action: &str, target: &str, detail: serde_json::Value) -> Self {
        Self {
            seq: 0,
            at,
            actor: actor.into(),
            action: action.into(),
            target: target.into(),
            detail: detail.to_string(),
            request_id: crate::web::request_id::current(),
        }
    }
}

/// An audit entry as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditView {
    /// Sequence number; pass as `before` to page.
    pub seq: i64,
    /// When (RFC 3339).
    pub at: String,
    /// Who.
    pub actor: String,
    /// What.
    pub action: String,
    /// The id of what was changed.
    pub target: String,
    /// Details.
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
    /// The request that made the change.
    pub request_id: Option<String>,
}

impl From<AuditEntry> for AuditView {
    fn from(e: AuditEntry) -> Self {
        Self {
            seq: e.seq,
            at: rfc3339(e.at),
            actor: e.actor,
            action: e.action,
            target: e.target,
            detail: serde_json::from_str(&e.detail).unwrap_or(serde_json::Value::Null),
            request_id: e.request_id,
        }
    }
}
