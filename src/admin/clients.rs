//! Admin routes for downstream clients (applications using ssogate as their OpenID Provider).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;

use super::ACTOR;
use crate::app::AppState;
use crate::op::clients::{self, ClientInput, ClientView};
use crate::web::error::ErrorBody;
use crate::web::{ApiError, ApiJson, ApiPath};

/// Every client: those registered through the API, and those the configuration file
/// declares (`managed_by: "config"`, read-only here).
#[utoipa::path(get, path = "/clients", tag = "clients", security(("admin_token" = [])),
    responses((status = 200, body = [ClientView])))]
pub async fn list_clients(State(app): State<AppState>) -> Result<Json<Vec<ClientView>>, ApiError> {
    Ok(Json(app.store.client_list().await?.iter().map(|c| clients::view(c, None)).collect()))
}

/// Registers a client; the answer carries its secret, shown only this once.
#[utoipa::path(post, path = "/clients", tag = "clients", request_body = ClientInput, security(("admin_token" = [])),
    responses((status = 201, body = ClientView), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_client(State(app): State<AppState>, ApiJson(input): ApiJson<ClientInput>) -> Result<(StatusCode, Json<ClientView>), ApiError> {
    Ok((StatusCode::CREATED, Json(clients::create(&app, &input, ACTOR).await?)))
}

/// One client.
#[utoipa::path(get, path = "/clients/{id}", tag = "clients", params(("id" = String, Path, description = "Client id")),
    security(("admin_token" = [])), responses((status = 200, body = ClientView), (status = 404, body = ErrorBody)))]
pub async fn get_client(State(app): State<AppState>, ApiPath(id): ApiPath<String>) -> Result<Json<ClientView>, ApiError> {
    let c = app.store.client_get(&id).await?.ok_or_else(|| ApiError::not_found(format!("client {id}")))?;
    Ok(Json(clients::view(&c, None)))
}

/// Changes a client's name or redirect URIs, or rotates its secret.
#[utoipa::path(patch, path = "/clients/{id}", tag = "clients", params(("id" = String, Path, description = "Client id")),
    request_body = ClientInput, security(("admin_token" = [])),
    responses((status = 200, body = ClientView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update_client(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(input): ApiJson<ClientInput>,
) -> Result<Json<ClientView>, ApiError> {
    Ok(Json(clients::update(&app, &id, &input, ACTOR).await?))
}

/// Removes a client.
#[utoipa::path(delete, path = "/clients/{id}", tag = "clients", params(("id" = String, Path, description = "Client id")),
    security(("admin_token" = [])), responses((status = 204, description = "Deleted"), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete_client(State(app): State<AppState>, ApiPath(id): ApiPath<String>) -> Result<StatusCode, ApiError> {
    clients::delete(&app, &id, ACTOR).await?;
    Ok(StatusCode::NO_CONTENT)
}
