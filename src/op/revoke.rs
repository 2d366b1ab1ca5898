//! Token revocation (RFC 7009, `/revoke`) and introspection (RFC 7662, `/introspect`)
//! for the main server's APIs, both client-authenticated. A client sees and revokes
//! only the tokens issued to it: another client's token is "not active" to it, and its
//! revocation a no-op, so neither endpoint tells whether a token exists elsewhere.

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use serde::Deserialize;
use serde_json::{json, Value};

use super::client_auth::{self, Credentials};
use super::{access_key, access_record, oauth_error, refresh, store_unavailable};
use crate::app::AppState;

/// The form both endpoints take (no `Debug`: it holds a token and credentials).
#[derive(Deserialize)]
pub struct TokenQuery {
    token: Option<String>,
    token_type_hint: Option<String>,
    #[serde(flatten)]
    credentials: Credentials,
}

/// `POST /revoke`: the access token, or the refresh token with its whole family (and
/// the access tokens issued with it). 200 whether or not there was such a token.
pub async fn revoke(State(app): State<AppState>, headers: HeaderMap, Form(f): Form<TokenQuery>) -> Response {
    let client = match client_auth::authenticate(&app, &headers, &f.credentials).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let Some(token) = f.token.as_deref().filter(|t| !t.is_empty()) else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "token is required");
    };
    if let Some(h) = f.token_type_hint.as_deref().filter(|h| !matches!(*h, "access_token" | "refresh_token")) {
        return oauth_error(StatusCode::BAD_REQUEST, "unsupported_token_type", &format!("token_type_hint {h:?} is not access_token or refresh_token"));
    }
    match refresh::peek(&app, token).await {
        Ok(Some(rec)) if rec.client_id == client.client_id => {
            if let Err(e) = refresh::revoke_family(&app, &rec.family, rec.until).await {
                return store_unavailable("revoke", e);
            }
            tracing::info!(client_id = %client.client_id, "refresh token revoked with its family");
        }
        Ok(_) => match access_record(&app, token).await {
            Ok(Some(rec)) if rec.client_id == client.client_id => {
                if let Err(e) = app.ephemeral.take(&access_key(token)).await {
                    return store_unavailable("revoke", e);
                }
                tracing::info!(client_id = %client.client_id, "access token revoked");
            }
            Ok(_) => {}
            Err(e) => return store_unavailable("revoke", e),
        },
        Err(e) => return store_unavailable("revoke", e),
    }
    ([(header::CACHE_CONTROL, "no-store")], StatusCode::OK).into_response()
}

fn inactive() -> Response {
    ([(header::CACHE_CONTROL, "no-store")], Json(json!({"active": false}))).into_response()
}

/// `POST /introspect`: whether a token is active, and what it stands for. Only for
/// clients that prove who they are (RFC 7662 4): a public client is refused.
pub async fn introspect(State(app): State<AppState>, headers: HeaderMap, Form(f): Form<TokenQuery>) -> Response {
    let client = match client_auth::authenticate(&app, &headers, &f.credentials).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    if client_auth::is_public(&client) {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "a public client (token_endpoint_auth_method none) cannot introspect: introspection needs a client that authenticates",
        );
    }
    let Some(token) = f.token.as_deref().filter(|t| !t.is_empty()) else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "token is required");
    };
    let now = app.clock.now();
    let (session_id, scope, kind, iat, exp) = match access_record(&app, token).await {
        Ok(Some(rec)) if rec.client_id == client.client_id => (rec.session_id, rec.scope, "Bearer", Some(rec.iat), Some(rec.exp)),
        Ok(Some(_)) => return inactive(),
        Ok(None) => match refresh::peek(&app, token).await {
            Ok(Some(rec)) if rec.client_id == client.client_id => (rec.session_id, rec.scope, "refresh_token", None, None),
            Ok(_) => return inactive(),
            Err(e) => return store_unavailable("introspect", e),
        },
        Err(e) => return store_unavailable("introspect", e),
    };
    let session = match app.sessions.touch(&session_id, now).await {
        Ok(Some(s)) => s,
        Ok(None) => return inactive(),
        Err(e) => return store_unavailable("introspect", e),
    };
    let mut body = json!({
        "active": true,
        "iss": app.config.public_base(),
        "client_id": client.client_id,
        "aud": client.client_id,
        "sub": session.user_id,
        "sid": crate::state::public_sid(&session.id),
        "scope": scope,
        "token_type": kind,
        "exp": exp.unwrap_or(session.expires_at) / 1000,
    });
    // The username is profile information: only where the token's scope has `profile`.
    if scope.split(' ').any(|s| s == "profile") {
        body["username"] = Value::from(session.username.clone());
    }
    if let Some(iat) = iat {
        body["iat"] = Value::from(iat / 1000);
    }
    ([(header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
}
