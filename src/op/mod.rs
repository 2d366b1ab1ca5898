//! ssogate as an OpenID Provider for the main application server: discovery, JWKS,
//! `/authorize` (code flow, PKCE, `connection=ID` straight to an upstream), `/token`
//! (codes single use, short-lived, bound to client, redirect URI and PKCE), and
//! `/userinfo`. The ID token is the session token: the user's stable id, email, name,
//! groups, the connection used and the session id, signed with the gateway's key.

pub mod clients;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Form, Json};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::app::AppState;
use crate::state::Session;
use crate::web::browser::current_session;
use crate::web::page;

/// How long a code may wait for its exchange.
const CODE_TTL_MS: i64 = 60_000;

/// The OpenID Provider's routes.
pub fn routes() -> axum::Router<AppState> {
    use axum::routing::{get, post};
    axum::Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/jwks.json", get(jwks))
        .route("/authorize", get(authorize))
        .route("/token", post(token))
        .route("/userinfo", get(userinfo).post(userinfo))
}
/// The longest an ID or access token lives (less when the session ends sooner).
pub const TOKEN_TTL_MS: i64 = 3600 * 1000;

/// `/.well-known/openid-configuration`
pub async fn discovery(State(app): State<AppState>) -> Json<Value> {
    let b = app.config.public_base();
    Json(json!({
        "issuer": b,
        "authorization_endpoint": format!("{b}/authorize"),
        "token_endpoint": format!("{b}/token"),
        "userinfo_endpoint": format!("{b}/userinfo"),
        "jwks_uri": format!("{b}/jwks.json"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256", "RS256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "code_challenge_methods_supported": ["S256", "plain"],
        "scopes_supported": ["openid", "email", "profile", "groups"],
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "email", "email_verified", "name", "given_name", "family_name", "picture", "preferred_username", "groups", "connection", "sid"],
    }))
}

/// `/jwks.json`: the signing key and the retired ones whose tokens may still be alive.
pub async fn jwks(State(app): State<AppState>) -> Response {
    let keys = match app.store.signing_key_list().await {
        Ok(k) => k,
        Err(e) => return crate::web::ApiError::from(e).into_response(),
    };
    let now = app.clock.now();
    let live: Vec<Value> =
        keys.iter().filter(|k| k.retired_at.is_none_or(|r| r + TOKEN_TTL_MS > now)).filter_map(|k| serde_json::from_str(&k.public_jwk).ok()).collect();
    ([(header::CACHE_CONTROL, "public, max-age=300")], Json(json!({"keys": live}))).into_response()
}

/// `/authorize` parameters.
#[derive(Debug, Deserialize)]
pub struct AuthorizeQuery {
    client_id: Option<String>,
    redirect_uri: Option<String>,
    response_type: Option<String>,
    scope: Option<String>,
    state: Option<String>,
    nonce: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
    prompt: Option<String>,
    login_hint: Option<String>,
    /// ssogate extension: go straight to this upstream connection.
    connection: Option<String>,
}

/// What a code stands for until it is exchanged (no `Debug`: it holds the session id).
#[derive(Serialize, Deserialize)]
struct CodeGrant {
    client_id: String,
    redirect_uri: String,
    session_id: String,
    nonce: Option<String>,
    challenge: Option<(String, String)>,
    scope: String,
}

/// The first parameter over its length cap, as the sentence refusing it.
fn oversized(q: &AuthorizeQuery) -> Option<String> {
    use crate::limit::*;
    too_long("state", q.state.as_deref(), STATE_MAX)
        .or_else(|| too_long("nonce", q.nonce.as_deref(), NONCE_MAX))
        .or_else(|| too_long("scope", q.scope.as_deref(), SCOPE_MAX))
        .or_else(|| too_long("code_challenge", q.code_challenge.as_deref(), CODE_CHALLENGE_MAX))
        .or_else(|| too_long("login_hint", q.login_hint.as_deref(), LOGIN_HINT_MAX))
}

fn redirect_error(redirect_uri: &str, error: &str, description: &str, state: Option<&str>) -> Response {
    let mut u = match url::Url::parse(redirect_uri) {
        Ok(u) => u,
        Err(_) => return page::error(StatusCode::BAD_REQUEST, description),
    };
    {
        let mut q = u.query_pairs_mut();
        q.append_pair("error", error).append_pair("error_description", description);
        if let Some(s) = state {
            q.append_pair("state", s);
        }
    }
    Redirect::to(u.as_str()).into_response()
}

/// Starts (or, with a live session, completes) an authorization request.
pub async fn authorize(
    State(app): State<AppState>,
    Query(q): Query<AuthorizeQuery>,
    requester: crate::limit::Client,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> Response {
    // Kept with the code, or carried through the login: bounded first. Shown here, not
    // redirected: an oversized `state` is not echoed anywhere.
    if let Some(why) = oversized(&q) {
        return page::error(StatusCode::BAD_REQUEST, &why);
    }
    // Until client and redirect URI are known good, errors are shown here, never
    // redirected: an unchecked redirect_uri is an open redirect.
    let Some(client_id) = q.client_id.as_deref() else {
        return page::error(StatusCode::BAD_REQUEST, "The application sent no client_id.");
    };
    let Some(client) = clients::find(&app, client_id).await else {
        return page::error(StatusCode::BAD_REQUEST, "The application is not registered with this sign-in service (unknown client_id).");
    };
    let Some(redirect_uri) = q.redirect_uri.as_deref().filter(|r| client.redirect_uris.iter().any(|u| u == r)) else {
        return page::error(StatusCode::BAD_REQUEST, "The application sent a redirect_uri that is not registered for it.");
    };
    let state = q.state.as_deref();
    if q.response_type.as_deref() != Some("code") {
        return redirect_error(redirect_uri, "unsupported_response_type", "only response_type=code is supported", state);
    }
    let scope = q.scope.clone().unwrap_or_default();
    if !scope.split(' ').any(|s| s == "openid") {
        return redirect_error(redirect_uri, "invalid_scope", "the openid scope is required", state);
    }
    let challenge = match (q.code_challenge.as_deref(), q.code_challenge_method.as_deref().unwrap_or("plain")) {
        (None, _) => None,
        (Some(c), m @ ("S256" | "plain")) if (43..=128).contains(&c.len()) => Some((c.to_string(), m.to_string())),
        _ => return redirect_error(redirect_uri, "invalid_request", "code_challenge must be 43 to 128 characters, method S256 or plain", state),
    };
    let session = if q.prompt.as_deref() == Some("login") { None } else { current_session(&app, &headers).await };
    let Some(session) = session else {
        if q.prompt.as_deref() == Some("none") {
            return redirect_error(redirect_uri, "login_required", "the user is not signed in", state);
        }
        // An unauthenticated start: it spends the client's budget.
        if let Err(after) = app.limits.starts.take(requester, app.clock.now()) {
            return crate::limit::too_many(after);
        }
        // Log in first, then come back to this same request.
        let mut back = uri.path_and_query().map(|p| p.as_str().to_string()).unwrap_or_else(|| "/authorize".into());
        if q.prompt.as_deref() == Some("login") {
            back = back.replace("prompt=login", "prompt=");
        }
        if back.len() > crate::limit::RETURN_TO_MAX {
            let why = format!("The authorization request is longer than {} bytes; it cannot be carried through the sign-in.", crate::limit::RETURN_TO_MAX);
            return page::error(StatusCode::BAD_REQUEST, &why);
        }
        let back_enc: String = url::form_urlencoded::byte_serialize(back.as_bytes()).collect();
        let hint = q
            .login_hint
            .as_deref()
            .map(|h| format!("&login_hint={}", url::form_urlencoded::byte_serialize(h.as_bytes()).collect::<String>()))
            .unwrap_or_default();
        let target = match q.connection.as_deref().filter(|c| crate::id::is_wellformed(c)) {
            Some(c) => format!("/login/{c}?return_to={back_enc}{hint}"),
            None => format!("/login?return_to={back_enc}"),
        };
        return Redirect::to(&target).into_response();
    };
    // A code is kept for a minute with its scope and nonce: a signed-in client spends the
    // same budget as an unauthenticated start, so no one client can fill the state store.
    if let Err(after) = app.limits.starts.take(requester, app.clock.now()) {
        return crate::limit::too_many(after);
    }
    let grant = CodeGrant {
        client_id: client_id.to_string(),
        redirect_uri: redirect_uri.to_string(),
        session_id: session.id.clone(),
        nonce: q.nonce.clone(),
        challenge,
        scope,
    };
    let code = crate::id::token(32);
    let stored = serde_json::to_string(&grant).unwrap_or_default();
    if !matches!(app.ephemeral.put_new(&format!("code:{code}"), &stored, CODE_TTL_MS).await, Ok(true)) {
        return redirect_error(redirect_uri, "temporarily_unavailable", "try again shortly", state);
    }
    let mut u = match url::Url::parse(redirect_uri) {
        Ok(u) => u,
        Err(_) => return page::error(StatusCode::BAD_REQUEST, "The registered redirect_uri is not a URL."),
    };
    {
        let mut qp = u.query_pairs_mut();
        qp.append_pair("code", &code);
        if let Some(s) = state {
            qp.append_pair("state", s);
        }
        qp.append_pair("iss", &app.config.public_base());
    }
    Redirect::to(u.as_str()).into_response()
}

/// `/token` form (no `Debug`: it holds the client secret and the code).
#[derive(Deserialize)]
pub struct TokenForm {
    grant_type: Option<String>,
    code: Option<String>,
    redirect_uri: Option<String>,
    code_verifier: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let mut r = (status, [(header::CACHE_CONTROL, "no-store")], Json(json!({"error": error, "error_description": description}))).into_response();
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Basic realm=\"ssogate\""));
    }
    r
}

/// The state store did not answer: not "invalid", which would make the client drop a
/// good code or token, but 503, try again.
fn store_unavailable(endpoint: &'static str, e: crate::state::StateError) -> Response {
    tracing::debug!(error = %e, endpoint, "the state store failed");
    crate::web::outage::STATE.failed(&e);
    let mut r = oauth_error(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable", "the session store is unreachable; try again shortly");
    r.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
    r
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let raw = base64::engine::general_purpose::STANDARD.decode(v.strip_prefix("Basic ")?.trim()).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (id, secret) = text.split_once(':')?;
    let dec = |s: &str| url::form_urlencoded::parse(format!("x={s}").as_bytes()).next().map(|(_, v)| v.into_owned());
    Some((dec(id)?, dec(secret)?))
}

/// Exchanges a code for the session token (ID token) and an access token.
pub async fn token(State(app): State<AppState>, headers: HeaderMap, Form(f): Form<TokenForm>) -> Response {
    let (client_id, secret) = match (basic_credentials(&headers), &f.client_id, &f.client_secret) {
        (Some(c), _, None) => c,
        (None, Some(id), Some(s)) => (id.clone(), s.clone()),
        _ => return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "authenticate with client_secret_basic or client_secret_post"),
    };
    let Some(client) = clients::authenticate(&app, &client_id, &secret).await else {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "unknown client or wrong secret");
    };
    if f.grant_type.as_deref() != Some("authorization_code") {
        return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type", "only authorization_code is supported");
    }
    let Some(code) = f.code.as_deref() else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "code is required");
    };
    // Single use: taken here; a second exchange finds nothing.
    let grant: Option<CodeGrant> = match app.ephemeral.take(&format!("code:{code}")).await {
        Ok(v) => v.and_then(|s| serde_json::from_str(&s).ok()),
        Err(e) => return store_unavailable("token", e),
    };
    let Some(grant) = grant else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "the code is unknown, expired or already used");
    };
    if grant.client_id != client.client_id || f.redirect_uri.as_deref() != Some(grant.redirect_uri.as_str()) {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "the code was issued to another client or redirect_uri");
    }
    if let Some((challenge, method)) = &grant.challenge {
        let Some(verifier) = f.code_verifier.as_deref() else {
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "code_verifier is required");
        };
        let computed = if method == "S256" { B64URL.encode(Sha256::digest(verifier.as_bytes())) } else { verifier.to_string() };
        if !bool::from(subtle::ConstantTimeEq::ct_eq(computed.as_bytes(), challenge.as_bytes())) {
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "code_verifier does not match the code_challenge");
        }
    }
    let now = app.clock.now();
    let session = match app.sessions.touch(&grant.session_id, now).await {
        Ok(Some(s)) => s,
        Ok(None) => return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "the session behind this code has ended"),
        Err(e) => return store_unavailable("token", e),
    };
    let exp = (now + TOKEN_TTL_MS).min(session.expires_at);
    let claims = id_token_claims(&app, &session, &grant.scope, &client.client_id, grant.nonce.as_deref(), now, exp);
    let id_token = match crate::token::claims::sign(app.store.as_ref(), &app.cipher, &claims).await {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "could not sign the session token");
            return oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "could not sign the token");
        }
    };
    let access = crate::id::token(32);
    let info = json!({"session_id": session.id, "scope": grant.scope});
    // Never hand out a token /userinfo would then refuse.
    match app.ephemeral.put_new(&format!("at:{access}"), &info.to_string(), exp - now).await {
        Ok(true) => {}
        Ok(false) => return store_unavailable("token", crate::state::StateError("a fresh access token collided with a live one".into())),
        Err(e) => return store_unavailable("token", e),
    }
    (
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({"access_token": access, "token_type": "Bearer", "expires_in": (exp - now) / 1000, "id_token": id_token, "scope": grant.scope})),
    )
        .into_response()
}

fn id_token_claims(app: &AppState, s: &Session, scope: &str, aud: &str, nonce: Option<&str>, now: i64, exp: i64) -> Value {
    let mut c = crate::token::claims::token(&app.config.public_base(), aud, s, crate::token::claims::Scope::Oidc(scope), now, exp);
    c["auth_time"] = json!(s.created_at / 1000);
    if let Some(n) = nonce {
        c["nonce"] = json!(n);
    }
    c
}

/// `/userinfo`: the session's claims for a bearer access token.
pub async fn userinfo(State(app): State<AppState>, headers: HeaderMap) -> Response {
    let bearer = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")).map(str::trim);
    let unauthorized = || {
        let mut r = (StatusCode::UNAUTHORIZED, Json(json!({"error": "invalid_token"}))).into_response();
        r.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer error=\"invalid_token\""));
        r
    };
    let Some(token) = bearer else { return unauthorized() };
    let info = match app.ephemeral.get(&format!("at:{token}")).await {
        Ok(Some(info)) => info,
        Ok(None) => return unauthorized(),
        Err(e) => return store_unavailable("userinfo", e),
    };
    let info: Value = serde_json::from_str(&info).unwrap_or_default();
    let Some(sid) = info.get("session_id").and_then(Value::as_str) else { return unauthorized() };
    match app.sessions.touch(sid, app.clock.now()).await {
        Ok(Some(s)) => Json(crate::token::claims::user(&s, crate::token::claims::Scope::Oidc(info.get("scope").and_then(Value::as_str).unwrap_or_default())))
            .into_response(),
        Ok(None) => unauthorized(),
        Err(e) => store_unavailable("userinfo", e),
    }
}
