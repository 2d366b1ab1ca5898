//! The browser's side of a login: the two cookies (the flow cookie that binds a login
//! in progress to this browser, and the session cookie) and the session they lead to.
//! The only module that writes a `Set-Cookie` for them.

use axum::http::{HeaderMap, HeaderValue};
use sha2::{Digest, Sha256};

use crate::app::{App, AppState};
use crate::clock::Millis;
use crate::state::Session;

/// Cookie binding a login in progress to the browser. Named so it cannot collide with
/// an IdP's cookies on the same host (`_session`, `_interaction`).
pub const FLOW_COOKIE: &str = "ssogate_flow";
/// The session cookie.
pub const SESSION_COOKIE: &str = "ssogate_session";

pub use super::cookie::find as cookie;

/// A `Set-Cookie` for the session cookie (`SameSite=Lax`, the configured Domain).
pub fn session_cookie(app: &App, value: &str, max_age: u64) -> HeaderValue {
    cookie_header(app, SESSION_COOKIE, value, max_age, "Lax")
}

fn cookie_header(app: &App, name: &str, value: &str, max_age: u64, same_site: &str) -> HeaderValue {
    let secure = if app.config.secure_cookies() { "; Secure" } else { "" };
    // Only the session cookie spans the domain (`session.cookie_domain`): the flow
    // cookie stays on the gateway's host.
    let domain = match app.config.cookie_domain() {
        Some(d) if name == SESSION_COOKIE => format!("; Domain={d}"),
        _ => String::new(),
    };
    HeaderValue::from_str(&format!("{name}={value}; Path=/; HttpOnly; SameSite={same_site}; Max-Age={max_age}{secure}{domain}"))
        .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The flow cookie's name. Over https it is `__Host-` prefixed: a browser takes such a
/// cookie only from this very host (Secure, no Domain), so a sibling subdomain cannot
/// plant a flow id of its own choosing (login CSRF by cookie tossing).
fn flow_cookie_name(app: &App) -> &'static str {
    if app.config.secure_cookies() {
        "__Host-ssogate_flow"
    } else {
        FLOW_COOKIE
    }
}

/// A `Set-Cookie` for the flow cookie. It must come back on a SAML IdP's cross-site POST
/// to the ACS, which `SameSite=Lax` forbids: over https it is `SameSite=None` (browsers
/// take `None` only with `Secure`) for every protocol, as one cookie serves logins in
/// several tabs. Over plain http (a local trial) it stays `Lax`, which works when the
/// IdP is on the same site.
pub fn flow_cookie(app: &App, value: &str, max_age: u64) -> HeaderValue {
    let same_site = if app.config.secure_cookies() { "None" } else { "Lax" };
    cookie_header(app, flow_cookie_name(app), value, max_age, same_site)
}

/// This browser's flow cookie, when it is one of ours (43 URL-safe characters); else a
/// new one. Reused so that two tabs can log in at once.
pub fn flow_id(app: &App, headers: &HeaderMap) -> String {
    flow_cookie_value(app, headers).map(str::to_string).unwrap_or_else(|| crate::id::token(32))
}

/// The flow cookie the browser sent, when it has the shape of one of ours.
pub fn flow_cookie_value<'a>(app: &App, headers: &'a HeaderMap) -> Option<&'a str> {
    cookie(headers, flow_cookie_name(app)).filter(|v| v.len() == 43 && crate::id::is_wellformed(v))
}

/// What a flow keeps of the browser's flow cookie: its SHA-256 (hex), never the value.
pub fn binding(flow_id: &str) -> String {
    hex::encode(Sha256::digest(flow_id.as_bytes()))
}

/// Whether this browser holds the flow cookie a flow was bound to.
pub fn holds_flow(app: &App, headers: &HeaderMap, bound_to: &str) -> bool {
    cookie(headers, flow_cookie_name(app)).is_some_and(|c| binding(c) == bound_to)
}

/// Set-Cookie values that end the session cookie: with the configured Domain, and
/// host-only too (a cookie from before the domain was configured).
pub fn clear_session_cookie(app: &App) -> Vec<HeaderValue> {
    let mut out = vec![session_cookie(app, "", 0)];
    if app.config.cookie_domain().is_some() {
        let secure = if app.config.secure_cookies() { "; Secure" } else { "" };
        if let Ok(v) = HeaderValue::from_str(&format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{secure}")) {
            out.push(v);
        }
    }
    out
}

/// The session cookie a request carries.
pub fn session_id(headers: &HeaderMap) -> Option<&str> {
    cookie(headers, SESSION_COOKIE).filter(|v| !v.is_empty())
}

/// The session of this browser, if it has a live one, its last use moved to `now`; an
/// error when the store did not answer (callers that must not take that for "signed
/// out" answer 503).
pub async fn browser_session(app: &AppState, headers: &HeaderMap, now: Millis) -> crate::state::StateResult<Option<std::sync::Arc<Session>>> {
    match cookie(headers, SESSION_COOKIE) {
        Some(id) => app.sessions.touch(id, now).await,
        None => Ok(None),
    }
}

/// The session of this browser, if it has a live one (a store failure counts as none).
pub async fn current_session(app: &AppState, headers: &HeaderMap) -> Option<std::sync::Arc<Session>> {
    browser_session(app, headers, app.clock.now()).await.ok().flatten()
}
