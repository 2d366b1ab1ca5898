//! `/authorize`, GET and POST (OIDC Core 3.1.2.1): checks the client and redirect URI
//! first (until both are known good, errors are shown, never redirected), then the
//! request; sends the browser to sign in when there is no session, when `prompt=login`
//! asks, or when the session's authentication is older than `max_age` (the upstream is
//! then asked to authenticate again too); otherwise issues a code. Every redirect back to
//! the client carries `iss` (RFC 9207).

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::{Deserialize, Serialize};

use super::clients;
use crate::app::AppState;
use crate::clock::Millis;
use crate::store::Client;
use crate::web::browser::current_session;
use crate::web::page;

/// How long a code may wait for its exchange.
pub const CODE_TTL_MS: i64 = 60_000;

/// `/authorize` parameters (query for GET, form for POST).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct AuthorizeQuery {
    #[serde(skip_serializing_if = "Option::is_none")]
    client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    redirect_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    state: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    code_challenge: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    code_challenge_method: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_age: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    login_hint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_mode: Option<String>,
    /// ssogate extension: go straight to this upstream connection.
    #[serde(skip_serializing_if = "Option::is_none")]
    connection: Option<String>,
    /// Request objects (OIDC Core 6) are not supported: refused, never carried.
    #[serde(skip_serializing)]
    request: Option<String>,
    #[serde(skip_serializing)]
    request_uri: Option<String>,
    #[serde(skip_serializing)]
    registration: Option<String>,
}

/// What a code stands for until it is exchanged (no `Debug`: it holds the session id).
#[derive(Serialize, Deserialize)]
pub(crate) struct CodeGrant {
    pub client_id: String,
    pub redirect_uri: String,
    pub session_id: String,
    pub nonce: Option<String>,
    pub challenge: Option<(String, String)>,
    pub scope: String,
}

/// The first parameter over its length cap, as the sentence refusing it.
fn oversized(q: &AuthorizeQuery) -> Option<String> {
    use crate::limit::*;
    too_long("state", q.state.as_deref(), STATE_MAX)
        .or_else(|| too_long("nonce", q.nonce.as_deref(), NONCE_MAX))
        .or_else(|| too_long("scope", q.scope.as_deref(), SCOPE_MAX))
        .or_else(|| too_long("code_challenge", q.code_challenge.as_deref(), CODE_CHALLENGE_MAX))
        .or_else(|| too_long("login_hint", q.login_hint.as_deref(), LOGIN_HINT_MAX))
        .or_else(|| too_long("prompt", q.prompt.as_deref(), 64))
        .or_else(|| too_long("max_age", q.max_age.as_deref(), 20))
}

/// The client's redirect URI with `pairs` and `iss` (RFC 9207) added to its query.
fn back_to_client(app: &AppState, redirect_uri: &str, pairs: &[(&str, &str)]) -> Response {
    let mut u = match url::Url::parse(redirect_uri) {
        Ok(u) => u,
        Err(_) => return page::error(StatusCode::BAD_REQUEST, "The registered redirect_uri is not a URL."),
    };
    {
        let mut q = u.query_pairs_mut();
        for (k, v) in pairs {
            q.append_pair(k, v);
        }
        q.append_pair("iss", &app.config.public_base());
    }
    Redirect::to(u.as_str()).into_response()
}

/// An error sent back to the client (RFC 6749 4.1.2.1), with `state` and `iss`.
fn redirect_error(app: &AppState, redirect_uri: &str, error: &str, description: &str, state: Option<&str>) -> Response {
    let mut pairs = vec![("error", error), ("error_description", description)];
    if let Some(s) = state {
        pairs.push(("state", s));
    }
    back_to_client(app, redirect_uri, &pairs)
}

/// `GET /authorize`.
pub async fn authorize_get(State(app): State<AppState>, Query(q): Query<AuthorizeQuery>, requester: crate::limit::Client, headers: HeaderMap) -> Response {
    authorize(app, q, requester, headers).await
}

/// `POST /authorize` (form-encoded, OIDC Core 3.1.2.1: MUST be supported).
pub async fn authorize_post(State(app): State<AppState>, requester: crate::limit::Client, headers: HeaderMap, Form(q): Form<AuthorizeQuery>) -> Response {
    authorize(app, q, requester, headers).await
}

/// The PKCE challenge a request carries, by the client's rules (RFC 7636 4.3: no method
/// means `plain`, which a client must be allowed).
fn pkce(client: &Client, q: &AuthorizeQuery) -> Result<Option<(String, String)>, &'static str> {
    let Some(challenge) = q.code_challenge.as_deref() else {
        if q.code_challenge_method.is_some() {
            return Err("code_challenge_method was sent without a code_challenge");
        }
        if clients::requires_pkce(client) {
            return Err("this client must use PKCE: send code_challenge with code_challenge_method=S256");
        }
        return Ok(None);
    };
    let method = q.code_challenge_method.as_deref().unwrap_or("plain");
    let well_formed = (43..=128).contains(&challenge.len()) && challenge.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
    match method {
        _ if !well_formed => Err("code_challenge must be 43 to 128 characters of A-Z, a-z, 0-9, '-', '.', '_', '~'"),
        "S256" => Ok(Some((challenge.to_string(), "S256".into()))),
        "plain" if client.settings.allow_plain_pkce => Ok(Some((challenge.to_string(), "plain".into()))),
        "plain" => Err("code_challenge_method plain (also what a challenge without a method means) is not allowed for this client: use S256"),
        _ => Err("code_challenge_method must be S256 (or plain where the client allows it)"),
    }
}

/// The granted scope: what was asked, of what the gateway has and the client may have,
/// in the order asked, once each. Scopes it may not have are left out (OIDC Core 3.1.2.1
/// lets an OP ignore what it does not grant).
pub(crate) fn granted_scope(client: &Client, asked: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for s in asked.split(' ').filter(|s| !s.is_empty()) {
        if clients::SCOPES.contains(&s) && clients::allows_scope(client, s) && !out.contains(&s) {
            out.push(s);
        }
    }
    out.join(" ")
}

async fn authorize(app: AppState, q: AuthorizeQuery, requester: crate::limit::Client, headers: HeaderMap) -> Response {
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
    let refuse = |error: &str, why: &str| redirect_error(&app, redirect_uri, error, why, state);
    // OIDC Core 6.1, 6.2, 7.2.1: what an OP does not support it must refuse by name.
    for (sent, error) in [(&q.request, "request_not_supported"), (&q.request_uri, "request_uri_not_supported"), (&q.registration, "registration_not_supported")]
    {
        if sent.is_some() {
            return refuse(error, "request objects and registration parameters are not supported; send plain parameters");
        }
    }
    match q.response_type.as_deref() {
        None | Some("") => return refuse("invalid_request", "response_type is required (code)"),
        Some("code") => {}
        Some(_) => return refuse("unsupported_response_type", "only response_type=code is supported"),
    }
    if q.response_mode.as_deref().is_some_and(|m| m != "query") {
        return refuse("invalid_request", "only response_mode=query is supported");
    }
    let asked = q.scope.clone().unwrap_or_default();
    if !asked.split(' ').any(|s| s == "openid") {
        return refuse("invalid_scope", "the openid scope is required");
    }
    let scope = granted_scope(&client, &asked);
    let challenge = match pkce(&client, &q) {
        Ok(c) => c,
        Err(why) => return refuse("invalid_request", why),
    };
    let prompts: Vec<&str> = q.prompt.as_deref().unwrap_or_default().split(' ').filter(|p| !p.is_empty()).collect();
    if let Some(p) = prompts.iter().find(|p| !matches!(**p, "none" | "login" | "consent" | "select_account")) {
        return refuse("invalid_request", &format!("prompt {p:?} is not one of none, login, consent, select_account"));
    }
    let prompt_none = prompts.contains(&"none");
    if prompt_none && prompts.len() > 1 {
        return refuse("invalid_request", "prompt=none cannot be combined with other prompt values");
    }
    let max_age: Option<Millis> = match q.max_age.as_deref() {
        None | Some("") => None,
        Some(v) => match v.parse::<u32>() {
            Ok(s) => Some(i64::from(s) * 1000),
            Err(_) => return refuse("invalid_request", "max_age must be a number of seconds"),
        },
    };
    let now = app.clock.now();
    let session = current_session(&app, &headers).await;
    // OIDC Core 3.1.2.1: `prompt=login` and a `max_age` the authentication is older than
    // both mean "authenticate again", here and at the upstream.
    let stale = session.as_ref().is_some_and(|s| max_age.is_some_and(|m| now - s.auth_time.unwrap_or(s.created_at) > m));
    let again = prompts.contains(&"login") || stale;
    let session = session.filter(|_| !again);
    let Some(session) = session else {
        if prompt_none {
            return refuse("login_required", "the user is not signed in (or must sign in again) and prompt=none forbids asking");
        }
        return to_login(&app, &q, requester, again);
    };
    // A code is kept for a minute with its scope and nonce: a signed-in client spends the
    // same budget as an unauthenticated start, so no one client can fill the state store.
    if let Err(after) = app.limits.starts.take(requester, now) {
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
    if !matches!(app.ephemeral.put_new(&format!("code:{}", super::hashed(&code)), &stored, CODE_TTL_MS).await, Ok(true)) {
        return refuse("temporarily_unavailable", "try again shortly");
    }
    let mut pairs = vec![("code", code.as_str())];
    if let Some(s) = state {
        pairs.push(("state", s));
    }
    back_to_client(&app, redirect_uri, &pairs)
}

/// Sends the browser to sign in, then back to this same request (as a GET, whatever
/// verb it came with). `again`: the user must authenticate anew, at the upstream too.
fn to_login(app: &AppState, q: &AuthorizeQuery, requester: crate::limit::Client, again: bool) -> Response {
    // An unauthenticated start: it spends the client's budget.
    if let Err(after) = app.limits.starts.take(requester, app.clock.now()) {
        return crate::limit::too_many(after);
    }
    // Coming back, `prompt=login` and `max_age` are spent: the upstream was asked to
    // authenticate anew, and the ID token's `auth_time` says when it really did. Asking
    // again would loop forever behind an IdP that ignores the request.
    let back_query = AuthorizeQuery {
        prompt: q.prompt.as_deref().map(|p| p.split(' ').filter(|p| *p != "login").collect::<Vec<_>>().join(" ")).filter(|p| !p.is_empty()),
        max_age: None,
        ..q.clone()
    };
    let back = format!("/authorize?{}", serde_urlencoded::to_string(&back_query).unwrap_or_default());
    if back.len() > crate::limit::RETURN_TO_MAX {
        let why = format!("The authorization request is longer than {} bytes; it cannot be carried through the sign-in.", crate::limit::RETURN_TO_MAX);
        return page::error(StatusCode::BAD_REQUEST, &why);
    }
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let mut extra = String::new();
    if let Some(h) = &q.login_hint {
        extra.push_str(&format!("&login_hint={}", enc(h)));
    }
    if again {
        extra.push_str("&prompt=login");
    }
    let target = match q.connection.as_deref().filter(|c| crate::id::is_wellformed(c)) {
        Some(c) => format!("/login/{c}?return_to={}{extra}", enc(&back)),
        None => format!("/login?return_to={}{}", enc(&back), if again { "&prompt=login" } else { "" }),
    };
    Redirect::to(&target).into_response()
}
