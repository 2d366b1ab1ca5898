//! ssogate as an OpenID Provider for the main application server. One module per
//! concern:
//! - here: the routes, discovery, the JWKS, CORS for browser-based clients, and what the
//!   endpoints share (errors, the access-token record);
//! - [`authorize`]: `/authorize` (GET and POST): code flow, PKCE, `prompt`, `max_age`,
//!   `connection=ID` straight to an upstream, RFC 9207 `iss` on every answer;
//! - [`client_auth`]: who the client at `/token`, `/revoke` and `/introspect` is
//!   (secret, `private_key_jwt`, or a public client);
//! - [`token`]: `/token` (code and refresh grants) and `/userinfo`;
//! - [`refresh`]: refresh tokens: rotation, reuse detection, families, bound to the session;
//! - [`revoke`]: revocation (RFC 7009) and introspection (RFC 7662);
//! - [`logout`]: RP-initiated logout (`/end_session`);
//! - [`backchannel`]: back-channel logout: every ended session's logout tokens, delivered
//!   in the background with retries;
//! - [`clients`]: clients and their per-client settings.
//!
//! The ID token is the session token: the user's stable id and the session's `sid`, with
//! email, name and groups as the granted scope allows, signed with the gateway's key.

pub mod authorize;
pub mod backchannel;
pub mod client_auth;
pub mod clients;
pub mod logout;
pub mod refresh;
pub mod revoke;
pub mod token;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::app::AppState;
use crate::clock::Millis;

/// The OpenID Provider's routes.
pub fn routes() -> axum::Router<AppState> {
    use axum::routing::{get, post};
    // What a browser-based client calls from its own origin: answered with CORS headers
    // (any origin, never credentials: these endpoints take no cookies).
    let cors = axum::Router::new()
        .route("/.well-known/openid-configuration", get(discovery).options(preflight))
        .route("/jwks.json", get(jwks).options(preflight))
        .route("/token", post(token::token).options(preflight))
        .route("/userinfo", get(token::userinfo).post(token::userinfo).options(preflight))
        .route("/revoke", post(revoke::revoke).options(preflight))
        .route("/introspect", post(revoke::introspect).options(preflight))
        .route_layer(axum::middleware::from_fn(cors));
    axum::Router::new()
        .route("/authorize", get(authorize::authorize_get).post(authorize::authorize_post))
        .route("/end_session", get(logout::end_session_get).post(logout::end_session_post))
        .route("/end_session/confirm", post(logout::confirm))
        .merge(cors)
}

/// The longest an ID or access token lives by default (less when the session ends sooner).
pub const TOKEN_TTL_MS: i64 = 3600 * 1000;

/// Adds `Access-Control-Allow-Origin: *` (no credentials) to the answer.
async fn cors(req: Request, next: Next) -> Response {
    let mut r = next.run(req).await;
    r.headers_mut().insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    r
}

/// The CORS preflight: the methods and headers a browser client needs.
async fn preflight() -> Response {
    (
        StatusCode::NO_CONTENT,
        [
            (header::ACCESS_CONTROL_ALLOW_METHODS, "GET, POST, OPTIONS"),
            (header::ACCESS_CONTROL_ALLOW_HEADERS, "Authorization, Content-Type"),
            (header::ACCESS_CONTROL_MAX_AGE, "600"),
        ],
    )
        .into_response()
}

/// `/.well-known/openid-configuration`
pub async fn discovery(State(app): State<AppState>) -> Json<Value> {
    let b = app.config.public_base();
    let auth_methods = ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"];
    Json(json!({
        "issuer": b,
        "authorization_endpoint": format!("{b}/authorize"),
        "token_endpoint": format!("{b}/token"),
        "userinfo_endpoint": format!("{b}/userinfo"),
        "jwks_uri": format!("{b}/jwks.json"),
        "end_session_endpoint": format!("{b}/end_session"),
        "revocation_endpoint": format!("{b}/revoke"),
        "introspection_endpoint": format!("{b}/introspect"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256", "RS256"],
        "token_endpoint_auth_methods_supported": auth_methods,
        "token_endpoint_auth_signing_alg_values_supported": client_auth::ASSERTION_ALGS,
        "revocation_endpoint_auth_methods_supported": auth_methods,
        // A public client names itself only: not enough to be told about tokens.
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt"],
        "code_challenge_methods_supported": ["S256", "plain"],
        "scopes_supported": clients::SCOPES,
        "prompt_values_supported": ["none", "login", "consent", "select_account"],
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "email", "email_verified", "name", "given_name", "family_name", "picture", "preferred_username", "groups", "connection", "sid"],
        "authorization_response_iss_parameter_supported": true,
        "backchannel_logout_supported": true,
        "backchannel_logout_session_supported": true,
        "frontchannel_logout_supported": false,
        "claims_parameter_supported": false,
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
    }))
}

/// How long a retired signing key stays published: the longest lifetime any client's
/// tokens can have, so an app can verify every still-valid token after a rotation.
pub const RETIRED_KEY_PUBLISHED_MS: i64 = clients::TOKEN_LIFETIME_MAX_S as i64 * 1000;

/// Whether a key retired at `retired_at` (none: the signing key) is still in
/// `/jwks.json` at `now`. The one rule for the JWKS and for what the console says.
pub fn key_published(retired_at: Option<Millis>, now: Millis) -> bool {
    retired_at.is_none_or(|r| r + RETIRED_KEY_PUBLISHED_MS > now)
}

/// `/jwks.json`: the signing key and the retired ones whose tokens may still be alive
/// (retired less than [`RETIRED_KEY_PUBLISHED_MS`] ago).
pub async fn jwks(State(app): State<AppState>) -> Response {
    let keys = match app.store.signing_key_list().await {
        Ok(k) => k,
        Err(e) => return crate::web::ApiError::from(e).into_response(),
    };
    let now = app.clock.now();
    let live: Vec<Value> = keys.iter().filter(|k| key_published(k.retired_at, now)).filter_map(|k| serde_json::from_str(&k.public_jwk).ok()).collect();
    ([(header::CACHE_CONTROL, "public, max-age=300")], Json(json!({"keys": live}))).into_response()
}

/// An OAuth error answer (RFC 6749 5.2); 401 carries the `WWW-Authenticate` it needs.
pub(crate) fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let mut r = (status, [(header::CACHE_CONTROL, "no-store")], Json(json!({"error": error, "error_description": description}))).into_response();
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"ssogate\""));
    }
    r
}

/// The state store did not answer: not "invalid", which would make the client drop a
/// good code or token, but 503, try again.
pub(crate) fn store_unavailable(endpoint: &'static str, e: crate::state::StateError) -> Response {
    tracing::debug!(error = %e, endpoint, "the state store failed");
    crate::web::outage::STATE.failed(&e);
    let mut r = oauth_error(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable", "the session store is unreachable; try again shortly");
    r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    r
}

/// SHA-256 of a token, hex: the key under which the state store keeps it, so a reader
/// of the store cannot use what it reads.
pub(crate) fn hashed(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// What an access token stands for, kept under `at:` + its hash until it expires.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct AccessRecord {
    /// The gateway session it lives within.
    pub session_id: String,
    /// The client it was issued to.
    pub client_id: String,
    /// The granted scope.
    pub scope: String,
    /// Issued, epoch milliseconds.
    pub iat: Millis,
    /// Expires, epoch milliseconds.
    pub exp: Millis,
    /// The refresh-token family it came with, if any: revoking the family revokes it.
    #[serde(default)]
    pub family: Option<String>,
}

/// Key of an access token's record.
pub(crate) fn access_key(token: &str) -> String {
    format!("at:{}", hashed(token))
}

/// The live record of an access token: none when unknown, expired, or its refresh
/// family was revoked.
pub(crate) async fn access_record(app: &AppState, token: &str) -> Result<Option<AccessRecord>, crate::state::StateError> {
    let Some(raw) = app.ephemeral.get(&access_key(token)).await? else { return Ok(None) };
    let Ok(rec) = serde_json::from_str::<AccessRecord>(&raw) else { return Ok(None) };
    if let Some(f) = &rec.family {
        if refresh::family_revoked(app, f).await? {
            return Ok(None);
        }
    }
    Ok(Some(rec))
}
