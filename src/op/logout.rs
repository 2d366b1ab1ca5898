//! RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0): `/end_session`, GET or
//! POST, with `id_token_hint`, `post_logout_redirect_uri` (registered for the client,
//! exact match), `state` and `client_id`. With a hint this gateway signed for the
//! browser's own session, the session ends at once; without one (or with a hint for
//! another session) the user confirms first, so no other site can sign them out with a
//! link. Ending the session tells every app through back-channel logout
//! ([`super::backchannel`]).

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;
use serde_json::Value;

use super::clients;
use crate::app::AppState;
use crate::login::logout::{sign_out_refusal, sign_out_token};
use crate::web::browser::{clear_session_cookie, current_session};
use crate::web::page::{self, esc};

/// `/end_session` parameters (query for GET, form for POST).
#[derive(Debug, Default, Deserialize)]
pub struct EndSession {
    id_token_hint: Option<String>,
    post_logout_redirect_uri: Option<String>,
    state: Option<String>,
    client_id: Option<String>,
    /// The confirmation form's token (POST `/end_session/confirm` only).
    csrf: Option<String>,
}

/// What an ID token hint says, once its signature and issuer check out.
struct Hint {
    client_id: String,
    sid: Option<String>,
}

/// The `sid` and audience of an ID token this gateway signed (expired or not: a hint
/// names a session, it grants nothing).
async fn read_hint(app: &AppState, token: &str) -> Option<Hint> {
    use crate::token::jws;
    let parsed = jws::parse(token).ok()?;
    let kid = parsed.header.kid.as_deref()?;
    let keys = app.store.signing_key_list().await.ok()?;
    let key = keys.iter().find(|k| k.kid == kid && k.alg == parsed.header.alg)?;
    let jwk: Value = serde_json::from_str(&key.public_jwk).ok()?;
    jws::verify(&parsed, &jws::public_key(&jwk).ok()?).ok()?;
    let c = &parsed.claims;
    if c.get("iss").and_then(Value::as_str) != Some(app.config.public_base().as_str()) {
        return None;
    }
    // The client it was issued to: `azp` when present (OIDC Core 2), else the audience.
    let client_id = match (c.get("azp"), c.get("aud")) {
        (Some(Value::String(azp)), _) => azp.clone(),
        (_, Some(Value::String(a))) => a.clone(),
        (_, Some(Value::Array(a))) => a.first().and_then(Value::as_str)?.to_string(),
        _ => return None,
    };
    Some(Hint { client_id, sid: c.get("sid").and_then(Value::as_str).map(str::to_string) })
}

/// Where to go afterwards: the registered `post_logout_redirect_uri` with `state`, or
/// none (the gateway's own "signed out" page). Err: the refusal page.
async fn checked_target(app: &AppState, q: &EndSession, hint: Option<&Hint>) -> Result<Option<String>, Response> {
    let bad = |why: &str| page::error(StatusCode::BAD_REQUEST, why);
    if q.id_token_hint.as_deref().is_some_and(|h| h.len() > 8192)
        || q.post_logout_redirect_uri.as_deref().is_some_and(|u| u.len() > 2048)
        || q.state.as_deref().is_some_and(|s| s.len() > crate::limit::STATE_MAX)
    {
        return Err(bad("A sign-out parameter is too long (id_token_hint 8192, post_logout_redirect_uri 2048, state 512 bytes at most)."));
    }
    let client_id = match (q.client_id.as_deref(), hint) {
        (Some(a), Some(h)) if a != h.client_id => return Err(bad("client_id differs from the audience of the id_token_hint.")),
        (Some(a), _) => Some(a.to_string()),
        (None, Some(h)) => Some(h.client_id.clone()),
        (None, None) => None,
    };
    let Some(uri) = q.post_logout_redirect_uri.as_deref() else { return Ok(None) };
    let Some(client_id) = client_id else {
        return Err(bad("post_logout_redirect_uri needs the client: send id_token_hint or client_id."));
    };
    let client = clients::find(app, &client_id).await;
    if !client.is_some_and(|c| c.settings.post_logout_redirect_uris.iter().any(|u| u == uri)) {
        return Err(bad("post_logout_redirect_uri is not registered for this application."));
    }
    let mut u = url::Url::parse(uri).map_err(|_| bad("post_logout_redirect_uri is not a URL."))?;
    if let Some(s) = &q.state {
        u.query_pairs_mut().append_pair("state", s);
    }
    Ok(Some(u.to_string()))
}

/// `GET /end_session`.
pub async fn end_session_get(State(app): State<AppState>, headers: HeaderMap, Query(q): Query<EndSession>) -> Response {
    end_session(app, headers, q).await
}

/// `POST /end_session` (form-encoded).
pub async fn end_session_post(State(app): State<AppState>, headers: HeaderMap, Form(q): Form<EndSession>) -> Response {
    end_session(app, headers, q).await
}

async fn end_session(app: AppState, headers: HeaderMap, q: EndSession) -> Response {
    let hint = match q.id_token_hint.as_deref().filter(|h| !h.is_empty()) {
        None => None,
        Some(h) => match read_hint(&app, h).await {
            Some(h) => Some(h),
            None => return page::error(StatusCode::BAD_REQUEST, "The id_token_hint is not an ID token this sign-in service issued."),
        },
    };
    let target = match checked_target(&app, &q, hint.as_ref()).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let Some(session) = current_session(&app, &headers).await else {
        // Nothing to end here: the app's own sign-out goes on.
        return done(target);
    };
    let same = hint.as_ref().and_then(|h| h.sid.as_deref()) == Some(crate::state::public_sid(&session.id).as_str());
    if same {
        return finish(&app, &headers, target).await;
    }
    // The form carries the client the hint named (the usual request has no client_id),
    // so the confirmed answer can still go back to the app.
    let client_id = q.client_id.clone().or_else(|| hint.map(|h| h.client_id));
    confirm_page(&session.id, &q, client_id.as_deref(), target.as_deref())
}

/// The question asked when the request alone cannot show that the user wants out.
fn confirm_page(session_id: &str, q: &EndSession, client_id: Option<&str>, target: Option<&str>) -> Response {
    let hidden = |name: &str, v: Option<&str>| v.map(|v| format!("<input type=\"hidden\" name=\"{name}\" value=\"{}\">", esc(v))).unwrap_or_default();
    let body = format!(
        "<h1>Sign out?</h1><p>An application asks to sign you out of this sign-in service.</p>\
<form method=\"post\" action=\"/end_session/confirm\">{}{}{}{}<button type=\"submit\">Sign out</button></form>",
        hidden("csrf", Some(&sign_out_token(session_id))),
        hidden("post_logout_redirect_uri", q.post_logout_redirect_uri.as_deref()),
        hidden("state", q.state.as_deref()),
        hidden("client_id", client_id),
    );
    page::with_csp(Html(page::layout("Sign out", &body)).into_response(), None, &origin(target))
}

fn origin(target: Option<&str>) -> Vec<String> {
    target.and_then(|t| url::Url::parse(t).ok()).map(|u| u.origin().ascii_serialization()).into_iter().filter(|o| o != "null").collect()
}

/// `POST /end_session/confirm`: the user's own answer (this session's form token, from
/// this site), so the session ends — first, whatever the form says about the return: a
/// return that does not check out (a tampered form) gets the gateway's own "signed out"
/// page, never a session left alive behind a page the user takes for a sign-out.
pub async fn confirm(State(app): State<AppState>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    if let Some(refusal) = sign_out_refusal(&app, &headers, &body) {
        return refusal;
    }
    let q: EndSession = match serde_urlencoded::from_bytes(&body) {
        Ok(q) => q,
        Err(e) => return page::error(StatusCode::BAD_REQUEST, &format!("The sign-out form is malformed: {e}")),
    };
    // `sign_out_refusal` compares the token when there is one; here there must be one.
    if q.csrf.is_none() {
        return page::error(StatusCode::FORBIDDEN, "Sign-out refused: the confirmation form's token is missing.");
    }
    if let Err(r) = end(&app, &headers).await {
        return r;
    }
    let target = match checked_target(&app, &EndSession { id_token_hint: None, csrf: None, ..q }, None).await {
        Ok(t) => t,
        Err(_) => {
            tracing::info!("sign-out confirmed with a return that does not check out: showing the gateway's own page");
            None
        }
    };
    signed_out(&app, target)
}

/// Ends the browser's session, clears the cookie, and goes on.
async fn finish(app: &AppState, headers: &HeaderMap, target: Option<String>) -> Response {
    if let Err(r) = end(app, headers).await {
        return r;
    }
    signed_out(app, target)
}

/// Ends the browser's session (the upstream token revoked where the IdP can). Err: the
/// store failed and the user is still signed in (the page says so).
async fn end(app: &AppState, headers: &HeaderMap) -> Result<(), Response> {
    crate::login::logout::end_browser_session(app, headers, "logout requested by an application").await
}

/// [`done`], with the session cookie cleared.
fn signed_out(app: &AppState, target: Option<String>) -> Response {
    let mut resp = done(target);
    for v in clear_session_cookie(app) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

/// The app's registered return, or the gateway's own "signed out" page.
fn done(target: Option<String>) -> Response {
    match target {
        Some(t) => Redirect::to(&t).into_response(),
        None => {
            Html(page::layout("Signed out", "<h1>Signed out</h1><p>You are signed out of this sign-in service.</p><p><a href=\"/login\">Sign in again</a></p>"))
                .into_response()
        }
    }
}
