//! Signing out: `POST /logout` (and the ingress's sign-out) end the session, refused
//! when another site asks; the upstream access token is revoked where the IdP has a
//! revocation endpoint.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use sha2::{Digest, Sha256};

use crate::app::AppState;
use crate::state::Session;
use crate::web::browser::{clear_session_cookie, cookie, SESSION_COOKIE};
use crate::web::page;

/// Where a browser request that ends a session came from, as the browser says.
#[derive(Debug, PartialEq, Eq)]
pub enum Site {
    /// This gateway, a site of its own (`Sec-Fetch-Site` same-origin, same-site or none),
    /// or an app of `ingress.allowed_domains` (`Origin`).
    Ours,
    /// Another site: what said so, to name in the refusal.
    Other(String),
    /// The request says nothing (a non-browser client, or a browser from before
    /// `Sec-Fetch-Site`).
    Unknown,
}

/// Reads `Sec-Fetch-Site` and `Origin`; either one naming another site decides.
pub fn request_site(app: &AppState, headers: &HeaderMap) -> Site {
    let shown = |v: &str| v.chars().take(100).flat_map(char::escape_default).collect::<String>();
    let get = |name: &str| headers.get(name).map(|v| v.to_str().unwrap_or("(not ASCII)"));
    let fetch_site = get("sec-fetch-site");
    if let Some(v) = fetch_site.filter(|v| !matches!(*v, "same-origin" | "same-site" | "none")) {
        return Site::Other(format!("Sec-Fetch-Site: {}", shown(v)));
    }
    if let Some(origin) = get("origin") {
        // An origin is scheme://host[:port]; "null" (a sandboxed or privacy-sensitive
        // context) is no site of ours.
        let ok = (origin.starts_with("https://") || origin.starts_with("http://"))
            && crate::web::redirect::validate(&format!("{origin}/"), &app.config.ingress.allowed_domains, &app.config.public_url).is_ok();
        return if ok { Site::Ours } else { Site::Other(format!("Origin: {}", shown(origin))) };
    }
    if fetch_site.is_some() {
        Site::Ours
    } else {
        Site::Unknown
    }
}

/// The sign-out form's token: bound to the session (only its cookie's holder can make
/// it), never the session id itself.
pub fn sign_out_token(session_id: &str) -> String {
    hex::encode(Sha256::digest(format!("ssogate sign-out\0{session_id}").as_bytes()))
}

/// The refusal (403, naming why) of a POST that ends the session: when another site
/// sends it, or when it carries a `csrf` field that is not this session's token. None
/// lets it through.
pub fn sign_out_refusal(app: &AppState, headers: &HeaderMap, body: &[u8]) -> Option<Response> {
    if let Site::Other(why) = request_site(app, headers) {
        tracing::info!(reason = %why, "sign-out refused: the request came from another site");
        return Some(page::error(
            StatusCode::FORBIDDEN,
            &format!("Sign-out refused: the request came from another site ({why}). To sign out, use the sign-out button of this service or of your app."),
        ));
    }
    let sent = url::form_urlencoded::parse(body).find(|(k, _)| k == "csrf").map(|(_, v)| v.into_owned());
    if let Some(sent) = sent {
        let want = cookie(headers, SESSION_COOKIE).map(sign_out_token).unwrap_or_default();
        if !bool::from(subtle::ConstantTimeEq::ct_eq(sent.as_bytes(), want.as_bytes())) {
            tracing::info!("sign-out refused: the form's token is not this session's");
            return Some(page::error(StatusCode::FORBIDDEN, "Sign-out refused: the form is not from this browser's session. Reload the page and try again."));
        }
    }
    None
}

/// `POST /logout`: ends the session (see [`end_session`]) unless another site asks.
pub async fn logout(State(app): State<AppState>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    if let Some(refusal) = sign_out_refusal(&app, &headers, &body) {
        return refusal;
    }
    end_session(&app, &headers).await
}

/// Ends the session (and revokes the upstream token where the IdP has a revocation
/// endpoint), clears the cookie and goes to the login page.
pub async fn end_session(app: &AppState, headers: &HeaderMap) -> Response {
    if let Err(resp) = end_browser_session(app, headers, "logout").await {
        return resp;
    }
    let mut resp = Redirect::to("/login").into_response();
    for v in clear_session_cookie(app) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

/// Ends this browser's session, if it has one, and revokes its upstream token where the
/// IdP can; `why` goes in the log line. Err: the store failed and the user is still
/// signed in, as the page says (fail closed: the cookie stays, so signing out can be
/// tried again).
pub async fn end_browser_session(app: &AppState, headers: &HeaderMap, why: &str) -> Result<(), Response> {
    let Some(id) = cookie(headers, SESSION_COOKIE) else { return Ok(()) };
    match app.sessions.remove(id).await {
        Ok(Some(s)) => {
            tracing::info!(user_id = %s.user_id, why, "session ended");
            revoke_upstream(app, &s).await;
            Ok(())
        }
        Ok(None) => Ok(()),
        Err(e) => {
            crate::web::outage::STATE.failed(&e);
            let mut resp =
                page::error(StatusCode::SERVICE_UNAVAILABLE, "Signing out is unavailable right now, and you are still signed in. Try again shortly.");
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static(crate::web::outage::RETRY_AFTER_SECONDS));
            Err(resp)
        }
    }
}

async fn revoke_upstream(app: &AppState, s: &Session) {
    let Some(token) = &s.upstream_token else { return };
    let Ok(conn) = app.registry.get(&s.connection_id).await else { return };
    crate::upstream::revoke(&conn, token, &app.http).await;
}
