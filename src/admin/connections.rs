//! Admin routes for connections.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::ACTOR;
use crate::app::AppState;
use crate::connection::discovery::Discovered;
use crate::connection::{preset, ConnectionPatch, ConnectionView, Protocol};
use crate::store::ConnectionSort;
use crate::web::error::ErrorBody;
use crate::web::{ApiError, ApiJson, ApiPath, ApiQuery};

/// Sorting of the connections table.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Column (default `name`).
    #[param(inline)]
    pub sort: Option<ConnectionSort>,
    /// Direction (default `asc`).
    #[param(inline)]
    pub order: Option<Order>,
}

/// Sort direction.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    /// Ascending.
    Asc,
    /// Descending.
    Desc,
}

/// The connection's health, for its view (a failure to read it leaves the fields empty:
/// it is never a reason to refuse the admin the connection itself).
async fn health(app: &AppState, id: Option<&str>) -> std::collections::HashMap<String, crate::store::ConnectionHealth> {
    match app.store.health_list().await {
        Ok(list) => list.into_iter().filter(|h| id.is_none_or(|id| h.connection_id == id)).map(|h| (h.connection_id.clone(), h)).collect(),
        Err(e) => {
            tracing::warn!(error = %e, "could not read the connections' health");
            Default::default()
        }
    }
}

/// The view of `c` with its health.
async fn view(app: &AppState, c: &crate::connection::Connection) -> ConnectionView {
    let h = health(app, Some(&c.id)).await;
    c.view(&app.config.public_base()).with_health(h.get(&c.id))
}

fn with_etag(view: ConnectionView, status: StatusCode) -> Response {
    let etag = HeaderValue::from_str(&format!("\"{}\"", view.version)).ok();
    let mut resp = (status, Json(view)).into_response();
    if let Some(v) = etag {
        resp.headers_mut().insert(header::ETAG, v);
    }
    resp
}

/// Ends every session started through a connection that was turned off, deleted, or
/// changed in who may sign in, on every replica within a second.
async fn end_sessions(app: &AppState, id: &str) -> Result<(), ApiError> {
    let n = app.sessions.remove_connection(id).await.map_err(|e| super::directory::not_reached(&e))?;
    tracing::info!(connection = %id, sessions = n, "sessions of the connection ended");
    Ok(())
}

/// The connections table.
#[utoipa::path(get, path = "/connections", tag = "connections", params(ListQuery),
    security(("admin_token" = [])),
    responses((status = 200, body = [ConnectionView]), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn list_connections(State(app): State<AppState>, ApiQuery(q): ApiQuery<ListQuery>) -> Result<Json<Vec<ConnectionView>>, ApiError> {
    let descending = matches!(q.order, Some(Order::Desc));
    let list = app.registry.list(q.sort.unwrap_or_default(), descending).await?;
    let base = app.config.public_base();
    // One read for every row's health (no query per row).
    let health = health(&app, None).await;
    Ok(Json(list.iter().map(|c| c.view(&base).with_health(health.get(&c.id))).collect()))
}

/// Creates a connection from a provider preset and the given fields.
#[utoipa::path(post, path = "/connections", tag = "connections", request_body = ConnectionPatch,
    security(("admin_token" = [])),
    responses((status = 201, body = ConnectionView), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_connection(State(app): State<AppState>, ApiJson(patch): ApiJson<ConnectionPatch>) -> Result<Response, ApiError> {
    let c = app.registry.create(&patch, ACTOR).await?;
    Ok(with_etag(c.view(&app.config.public_base()), StatusCode::CREATED))
}

/// One connection; its `ETag` is its version.
#[utoipa::path(get, path = "/connections/{id}", tag = "connections", params(("id" = String, Path, description = "Connection id")),
    security(("admin_token" = [])),
    responses((status = 200, body = ConnectionView), (status = 404, body = ErrorBody)))]
pub async fn get_connection(State(app): State<AppState>, ApiPath(id): ApiPath<String>) -> Result<Response, ApiError> {
    let c = app.registry.get(&id).await?;
    Ok(with_etag(view(&app, &c).await, StatusCode::OK))
}

/// The version a change is based on: `Some(n)` from `If-Match: "n"`, `None` for
/// `If-Match: *` (overwrite whatever is there). Without the header the change is
/// refused, so a stale editor can never overwrite someone else's change silently.
fn if_match(headers: &HeaderMap) -> Result<Option<i64>, ApiError> {
    let Some(v) = headers.get(header::IF_MATCH) else {
        return Err(ApiError::new(
            StatusCode::PRECONDITION_REQUIRED,
            "precondition_required",
            "send If-Match with the ETag from GET; If-Match: * overwrites whatever is there",
        ));
    };
    let text = v.to_str().unwrap_or("").trim();
    if text == "*" {
        return Ok(None);
    }
    let text = text.trim_start_matches("W/").trim_matches('"');
    text.parse()
        .map(Some)
        .map_err(|_| ApiError::invalid(vec![crate::connection::FieldError::new("If-Match", "must be the connection's ETag (its version), such as \"3\"")]))
}

/// Changes a connection. Send `If-Match` (or `version`): a change based on an older
/// version is refused with 409 instead of overwriting someone else's.
#[utoipa::path(patch, path = "/connections/{id}", tag = "connections", params(("id" = String, Path, description = "Connection id"),
        ("If-Match" = String, Header, description = "The ETag read before the change, or * to overwrite")),
    request_body = ConnectionPatch, security(("admin_token" = [])),
    responses((status = 200, body = ConnectionView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody), (status = 428, body = ErrorBody)))]
pub async fn update_connection(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
    ApiJson(patch): ApiJson<ConnectionPatch>,
) -> Result<Response, ApiError> {
    let (c, admission_changed) = app.registry.update_admission(&id, &patch, if_match(&headers)?, ACTOR).await?;
    // Turned off, or who may sign in changed: sessions admitted before end now.
    if !c.active || admission_changed {
        end_sessions(&app, &id).await?;
    }
    Ok(with_etag(c.view(&app.config.public_base()), StatusCode::OK))
}

/// Deletes a connection, its links and the memberships it granted, and ends its sessions.
#[utoipa::path(delete, path = "/connections/{id}", tag = "connections", params(("id" = String, Path, description = "Connection id")),
    security(("admin_token" = [])),
    responses((status = 204, description = "Deleted"), (status = 404, body = ErrorBody)))]
pub async fn delete_connection(State(app): State<AppState>, ApiPath(id): ApiPath<String>) -> Result<StatusCode, ApiError> {
    // Whose groups change with the memberships it granted: known only before it goes.
    let granted = app.directory.granted_by(&id).await?;
    app.registry.delete(&id, ACTOR).await?;
    end_sessions(&app, &id).await?;
    super::directory::reach_sessions(&app, granted).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Shows the connection on the login page.
#[utoipa::path(post, path = "/connections/{id}/activate", tag = "connections", params(("id" = String, Path, description = "Connection id")),
    security(("admin_token" = [])),
    responses((status = 200, body = ConnectionView), (status = 404, body = ErrorBody)))]
pub async fn activate_connection(State(app): State<AppState>, ApiPath(id): ApiPath<String>) -> Result<Response, ApiError> {
    let c = app.registry.set_active(&id, true, ACTOR).await?;
    Ok(with_etag(c.view(&app.config.public_base()), StatusCode::OK))
}

/// Hides the connection, refuses logins through it and ends its sessions.
#[utoipa::path(post, path = "/connections/{id}/deactivate", tag = "connections", params(("id" = String, Path, description = "Connection id")),
    security(("admin_token" = [])),
    responses((status = 200, body = ConnectionView), (status = 404, body = ErrorBody)))]
pub async fn deactivate_connection(State(app): State<AppState>, ApiPath(id): ApiPath<String>) -> Result<Response, ApiError> {
    let c = app.registry.set_active(&id, false, ACTOR).await?;
    end_sessions(&app, &id).await?;
    Ok(with_etag(c.view(&app.config.public_base()), StatusCode::OK))
}

/// Generates a new SP key pair (RSA-2048, self-signed) for signing AuthnRequests.
#[utoipa::path(post, path = "/connections/{id}/sp-keypair", tag = "connections", params(("id" = String, Path, description = "Connection id")),
    security(("admin_token" = [])),
    responses((status = 200, body = ConnectionView), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn generate_sp_keypair(State(app): State<AppState>, ApiPath(id): ApiPath<String>) -> Result<Response, ApiError> {
    let c = app.registry.generate_sp_keypair(&id, ACTOR).await?;
    Ok(with_etag(c.view(&app.config.public_base()), StatusCode::OK))
}

/// The SP certificate (PEM) to register at the IdP.
#[utoipa::path(get, path = "/connections/{id}/sp-certificate", tag = "connections", params(("id" = String, Path, description = "Connection id")),
    security(("admin_token" = [])),
    responses((status = 200, description = "PEM certificate", content_type = "application/x-pem-file", body = String), (status = 404, body = ErrorBody)))]
pub async fn sp_certificate(State(app): State<AppState>, ApiPath(id): ApiPath<String>) -> Result<Response, ApiError> {
    let c = app.registry.get(&id).await?;
    let pem = c
        .settings
        .upstream
        .saml()
        .and_then(|s| s.sp_certificate.clone())
        .ok_or_else(|| ApiError::not_found(format!("SP certificate of connection {id} (generate one with POST .../sp-keypair)")))?;
    Ok(([(header::CONTENT_TYPE, "application/x-pem-file".to_string()), (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{id}-sp.crt\""))], pem)
        .into_response())
}

/// "Fetch from issuer": an issuer (or a preset and its placeholder values).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DiscoverRequest {
    /// Issuer URL; or give `provider` and `placeholders`.
    pub issuer: Option<String>,
    /// OIDC provider preset.
    pub provider: Option<String>,
    /// Values for the preset's placeholders.
    #[serde(default)]
    pub placeholders: std::collections::BTreeMap<String, String>,
}

/// Reads an issuer's discovery document and returns its endpoints (nothing is saved).
#[utoipa::path(post, path = "/discovery", tag = "connections", request_body = DiscoverRequest,
    security(("admin_token" = [])),
    responses((status = 200, body = Discovered), (status = 422, body = ErrorBody)))]
pub async fn discover(State(app): State<AppState>, ApiJson(req): ApiJson<DiscoverRequest>) -> Result<Json<Discovered>, ApiError> {
    let preset = match &req.provider {
        Some(p) => Some(
            preset::find(Protocol::Oidc, p)
                .ok_or_else(|| ApiError::invalid(vec![crate::connection::FieldError::new("provider", format!("{p:?} is not an OIDC provider"))]))?,
        ),
        None => None,
    };
    let issuer = match (&req.issuer, preset.and_then(|p| p.oidc()?.issuer.as_deref())) {
        (Some(i), _) => i.trim().to_string(),
        (None, Some(pattern)) => preset.map(|p| p.fill(pattern, &req.placeholders, None)).transpose().map_err(ApiError::invalid)?.unwrap_or_default(),
        (None, None) => return Err(ApiError::invalid(vec![crate::connection::FieldError::new("issuer", "is required")])),
    };
    let url = match preset.and_then(|p| Some((p, p.oidc()?.discovery_url.as_deref()?))) {
        Some((p, pattern)) => Some(p.fill(pattern, &req.placeholders, Some(&issuer)).map_err(ApiError::invalid)?),
        None => None,
    };
    Ok(Json(app.registry.discover(&issuer, url.as_deref()).await?))
}

/// A Test Provider run, started.
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct TestStarted {
    /// The test's id.
    pub test_id: String,
    /// Open this in the browser that will sign in at the IdP (once; it expires with
    /// `login.flow_ttl_seconds`). The result shows there, and at `GET /connection-tests/{id}`.
    pub start_url: String,
    /// The connection as it will be tried (nothing is saved).
    pub connection: ConnectionView,
}

/// Test Provider: tries a connection — a new one, or a saved one with changes (give its
/// `id`) — with a real round trip to the IdP that creates nothing. The body is what a
/// create or update takes; it is validated (422 names each field) but not saved.
#[utoipa::path(post, path = "/connection-tests", tag = "connections", request_body = ConnectionPatch,
    security(("admin_token" = [])),
    responses((status = 201, body = TestStarted), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn start_test(State(app): State<AppState>, ApiJson(patch): ApiJson<ConnectionPatch>) -> Result<Response, ApiError> {
    let draft = app.registry.draft(&patch).await?;
    let view = draft.view(&app.config.public_base());
    let test_id = crate::login::test::create(&app, draft, ACTOR, None).await.map_err(|e| state_unavailable(&e))?;
    let start_url = format!("{}/test/{test_id}/start", app.config.public_base());
    Ok((StatusCode::CREATED, Json(TestStarted { test_id, start_url, connection: view })).into_response())
}

/// The result of a Test Provider run: every check, the claims as received (secrets
/// redacted), the mapped identity, what a login would do, warnings. 404 until it finished.
#[utoipa::path(get, path = "/connection-tests/{id}", tag = "connections", params(("id" = String, Path, description = "Test id")),
    security(("admin_token" = [])),
    responses((status = 200, description = "The result", body = Object), (status = 404, body = ErrorBody)))]
pub async fn test_result(State(app): State<AppState>, ApiPath(id): ApiPath<String>) -> Result<Json<crate::login::test::TestResult>, ApiError> {
    match crate::login::test::result(&app, &id).await.map_err(|e| state_unavailable(&e))? {
        Some(r) => Ok(Json(r)),
        None => Err(ApiError::not_found(format!("test {id} (not finished, expired, or never started)"))),
    }
}

fn state_unavailable(e: &crate::state::StateError) -> ApiError {
    crate::web::outage::STATE.failed(e);
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "the state store is unavailable; try again shortly")
}
