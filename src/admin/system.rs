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

/// Paging of the audit log.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// Entries older than this sequence number.
    pub before: Option<i64>,
    /// At most this many (1 to 1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
}

/// The audit log, newest first.
#[utoipa::path(get, path = "/audit", tag = "audit", params(AuditParams), security(("admin_token" = [])),
    responses((status = 200, body = [AuditView]), (status = 400, body = ErrorBody)))]
pub async fn list_audit(State(app): State<AppState>, ApiQuery(q): ApiQuery<AuditParams>) -> Result<Json<Vec<AuditView>>, ApiError> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request("limit must be between 1 and 1000"));
    }
    let entries = app.store.audit_list(AuditQuery { before: q.before, limit, ..Default::default() }).await?;
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
