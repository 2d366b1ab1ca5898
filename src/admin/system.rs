//! Admin routes for presets, the audit log and signing keys.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::ACTOR;
use crate::app::AppState;
use crate::audit::AuditView;
use crate::connection::preset::{self, Preset, PresetFile};
use crate::connection::FieldError;
use crate::store::AuditQuery;
use crate::token::{Alg, KeyView};
use crate::web::error::ErrorBody;
use crate::web::{ApiError, ApiJson, ApiQuery};

/// Every provider preset.
#[utoipa::path(get, path = "/presets", tag = "presets", security(("admin_token" = [])),
    responses((status = 200, body = [PresetFile])))]
pub async fn list_presets() -> Json<Vec<Preset>> {
    Json(preset::all().to_vec())
}

/// Paging and filters of the audit log; the filters combine (all must hold).
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// Entries older than this sequence number.
    pub before: Option<i64>,
    /// At most this many (1 to 1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
    /// Who: `admin`, `cli`, `system:metadata-refresh`, `connection:ID` (logins and group
    /// sync through that connection), exactly.
    #[param(max_length = 256)]
    pub actor: Option<String>,
    /// What: `login.refused` exactly, or a prefix ending in `.` (`login.` for every login
    /// event, `connection.` for every change of a connection).
    #[param(max_length = 256)]
    pub action: Option<String>,
    /// About what: a connection, user, group or client id, exactly.
    #[param(max_length = 256)]
    pub target: Option<String>,
    /// Everything about a connection: its own changes and what was done through it
    /// (logins, group sync).
    #[param(max_length = 256)]
    pub connection: Option<String>,
    /// At or after this time (RFC 3339, `2026-12-01T00:00:00Z`).
    #[param(format = DateTime)]
    pub since: Option<String>,
    /// Before this time (RFC 3339).
    #[param(format = DateTime)]
    pub until: Option<String>,
}

/// A filter value: empty is no filter; at most 256 characters, none of them a control
/// character (422 naming the field otherwise).
fn filter(field: &str, v: Option<String>) -> Result<Option<String>, ApiError> {
    match v {
        Some(v) if v.is_empty() => Ok(None),
        Some(v) if v.chars().count() > 256 || v.chars().any(char::is_control) => {
            Err(ApiError::invalid(vec![FieldError::new(field, "must be at most 256 characters without control characters")]))
        }
        other => Ok(other),
    }
}

/// A time filter: RFC 3339 (422 naming the field otherwise).
fn instant(field: &str, v: Option<&str>) -> Result<Option<crate::clock::Millis>, ApiError> {
    v.map(|t| {
        chrono::DateTime::parse_from_rfc3339(t)
            .map(|t| t.timestamp_millis())
            .map_err(|_| ApiError::invalid(vec![FieldError::new(field, "must be an RFC 3339 time such as 2026-12-01T00:00:00Z")]))
    })
    .transpose()
}

/// The audit log, newest first: admin changes, group sync, and every login
/// (`login.success`; `login.refused`, with refusals beyond the first of a minute per
/// connection, step and reason written as one event with a `count`).
#[utoipa::path(get, path = "/audit", tag = "audit", params(AuditParams), security(("admin_token" = [])),
    responses((status = 200, body = [AuditView]), (status = 400, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn list_audit(State(app): State<AppState>, ApiQuery(q): ApiQuery<AuditParams>) -> Result<Json<Vec<AuditView>>, ApiError> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request("limit must be between 1 and 1000"));
    }
    let query = AuditQuery {
        before: q.before,
        limit,
        since: instant("since", q.since.as_deref())?,
        until: instant("until", q.until.as_deref())?,
        actor: filter("actor", q.actor)?,
        action: filter("action", q.action)?,
        target: filter("target", q.target)?,
        connection: filter("connection", q.connection)?,
    };
    let entries = app.store.audit_list(query).await?;
    Ok(Json(entries.into_iter().map(AuditView::from).collect()))
}

/// The gateway's signing keys (public parts only).
#[utoipa::path(get, path = "/keys", tag = "keys", security(("admin_token" = [])),
    responses((status = 200, body = [KeyView])))]
pub async fn list_keys(State(app): State<AppState>) -> Result<Json<Vec<KeyView>>, ApiError> {
    Ok(Json(app.store.signing_key_list().await?.iter().map(KeyView::from).collect()))
}

/// Which key to make.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateRequest {
    /// `ES256` (default) or `RS256`.
    pub alg: Option<Alg>,
}

/// Makes a new signing key; the previous one is retired but kept for verification.
#[utoipa::path(post, path = "/keys", tag = "keys", request_body = RotateRequest, security(("admin_token" = [])),
    responses((status = 201, body = KeyView), (status = 422, body = ErrorBody)))]
pub async fn rotate_key(State(app): State<AppState>, ApiJson(req): ApiJson<RotateRequest>) -> Result<(StatusCode, Json<KeyView>), ApiError> {
    let key = crate::token::rotate(app.store.as_ref(), &app.cipher, req.alg.unwrap_or(Alg::Es256), app.clock.now(), ACTOR).await.map_err(|e| match e {
        crate::token::KeyError::Store(s) => ApiError::from(s),
        other => ApiError::internal(&other),
    })?;
    Ok((StatusCode::CREATED, Json(KeyView::from(&key))))
}

/// A new admin token, shown once.
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct NewAdminToken {
    /// The new token: only its hash is kept, so this is the one time it is shown.
    pub admin_token: String,
}

/// Rotates the admin token: the answer carries the new one (shown once). The token that
/// made this request stops working at once here and within a second on every other
/// replica; the new one works as fast. 409 when the token comes from the configuration.
#[utoipa::path(post, path = "/admin-token", tag = "admin", security(("admin_token" = [])),
    responses((status = 201, body = NewAdminToken), (status = 409, body = ErrorBody)))]
pub async fn rotate_admin_token(State(app): State<AppState>) -> Result<(StatusCode, Json<NewAdminToken>), ApiError> {
    if app.admin_token.is_configured() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            "the admin token comes from the configuration (admin_token or SSOGATE_ADMIN_TOKEN), which always wins: change it there",
        ));
    }
    let token = crate::app::reset_admin_token(app.store.as_ref(), app.clock.now(), ACTOR).await?;
    app.admin_token.replaced(crate::app::token_hash(token.expose()));
    Ok((StatusCode::CREATED, Json(NewAdminToken { admin_token: token.expose().to_string() })))
}
