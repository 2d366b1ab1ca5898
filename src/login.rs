//! The browser-facing login: the login page, the start of a login, the OIDC callback,
//! and logout. After the upstream step everything is protocol-blind: the directory
//! step (link, match, create or refuse), group sync, the session and the redirect.
//!
//! Every refusal renders an error page with a sentence the user can act on and the
//! request id, and leaves nothing behind: no user, membership, link or session.

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::connection::{Connection, Protocol};
use crate::directory::provision::Refusal;
use crate::mapping::Identity;
use crate::server::AppState;
use crate::state::Session;
use crate::store::ConnectionSort;
use crate::upstream::saml::{self, Outbound};
use crate::upstream::{oidc, saml_precheck, saml_response, FlowState, UpstreamError};
use crate::web::page::{self, esc};
use crate::web::ApiPath;

/// Cookie binding a login in progress to the browser. Named so it cannot collide with
/// an IdP's cookies on the same host (`_session`, `_interaction`).
pub const FLOW_COOKIE: &str = "ssogate_flow";
/// The session cookie.
pub const SESSION_COOKIE: &str = "ssogate_session";

pub use crate::web::cookie::find as cookie;

fn set_cookie(app: &AppState, name: &str, value: &str, max_age: u64) -> HeaderValue {
    cookie_header(app, name, value, max_age, "Lax")
}

fn cookie_header(app: &AppState, name: &str, value: &str, max_age: u64, same_site: &str) -> HeaderValue {
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
fn flow_cookie_name(app: &AppState) -> &'static str {
    if app.config.secure_cookies() {
        "__Host-ssogate_flow"
    } else {
        FLOW_COOKIE
    }
}

/// The flow cookie must come back on a SAML IdP's cross-site POST to the ACS, which
/// `SameSite=Lax` forbids: over https it is `SameSite=None` (browsers take `None` only
/// with `Secure`) for every protocol, as one cookie serves logins in several tabs. Over
/// plain http (a local trial) it stays `Lax`, which works when the IdP is on the same site.
fn flow_cookie(app: &AppState, value: &str, max_age: u64) -> HeaderValue {
    let same_site = if app.config.secure_cookies() { "None" } else { "Lax" };
    cookie_header(app, flow_cookie_name(app), value, max_age, same_site)
}

fn flow_cookie_value<'a>(app: &AppState, headers: &'a HeaderMap) -> Option<&'a str> {
    cookie(headers, flow_cookie_name(app))
}

/// Set-Cookie values that end the session cookie: with the configured Domain, and
/// host-only too (a cookie from before the domain was configured).
fn clear_session_cookie(app: &AppState) -> Vec<HeaderValue> {
    let mut out = vec![set_cookie(app, SESSION_COOKIE, "", 0)];
    if app.config.cookie_domain().is_some() {
        let secure = if app.config.secure_cookies() { "; Secure" } else { "" };
        if let Ok(v) = HeaderValue::from_str(&format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{secure}")) {
            out.push(v);
        }
    }
    out
}

fn hash(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// A local return path: absolute path on this host, no scheme-relative tricks.
pub fn local_path(p: &str) -> Option<String> {
    let ok = p.starts_with('/')
        && !p.starts_with("//")
        && !p.starts_with("/\\")
        && p.len() <= crate::limit::RETURN_TO_MAX
        && !p.chars().any(|c| c.is_control() || c == '\\');
    ok.then(|| p.to_string())
}

/// Where a login may return: a local path, or a URL on a host of `ingress.allowed_domains`.
fn return_target(app: &AppState, p: &str) -> Option<String> {
    local_path(p).or_else(|| crate::ingress::validate_redirect(p, &app.config.ingress.allowed_domains, &app.config.public_url).ok())
}

/// `?return_to=&login_hint=`
#[derive(Debug, Deserialize)]
pub struct ReturnTo {
    /// Where to go after login (a path on this gateway).
    pub return_to: Option<String>,
    /// Passed to the IdP as `login_hint` (who is signing in, when known).
    pub login_hint: Option<String>,
}

/// The login page: one button per active connection; works without JavaScript.
pub async fn login_page(State(app): State<AppState>, Query(q): Query<ReturnTo>) -> Response {
    let list = match app.store.connection_list(ConnectionSort::Name, false).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "login page: store failed");
            return page::error(StatusCode::SERVICE_UNAVAILABLE, "Sign-in is unavailable right now; try again shortly.");
        }
    };
    let suffix = q
        .return_to
        .as_deref()
        .and_then(|p| return_target(&app, p))
        .map(|p| format!("?return_to={}", url::form_urlencoded::byte_serialize(p.as_bytes()).collect::<String>()))
        .unwrap_or_default();
    let mut buttons = String::new();
    for c in list.iter().filter(|c| c.active) {
        let initial = c.display_name.chars().next().map(|ch| ch.to_uppercase().to_string()).unwrap_or_default();
        buttons.push_str(&format!(
            "<a class=\"button\" href=\"/login/{id}{suffix}\" data-provider=\"{p}\"><span class=\"initial\">{i}</span>Sign in with {n}</a>",
            id = esc(&c.id),
            suffix = esc(&suffix),
            p = esc(&c.provider),
            i = esc(&initial),
            n = esc(&c.display_name)
        ));
    }
    if buttons.is_empty() {
        buttons = "<p>No identity provider is set up yet. An administrator adds one through the admin API.</p>".into();
    }
    Html(page::layout("Sign in", &format!("<h1>Sign in</h1>{buttons}"))).into_response()
}

async fn active_connection(app: &AppState, id: &str) -> Result<std::sync::Arc<Connection>, Response> {
    match app.registry.get_cached(id).await {
        Ok(c) if c.active => Ok(c),
        Ok(_) | Err(crate::connection::ConnectionError::NotFound(_)) => {
            Err(page::error(StatusCode::NOT_FOUND, "This sign-in option does not exist or is turned off. Choose another one."))
        }
        Err(e) => {
            tracing::error!(error = %e, "could not read the connection");
            Err(page::error(StatusCode::SERVICE_UNAVAILABLE, "Sign-in is unavailable right now; try again shortly."))
        }
    }
}

/// Starts a login with a connection: keeps the flow state and redirects to the IdP.
pub async fn login_start(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
    Query(q): Query<ReturnTo>,
    client: crate::limit::Client,
    headers: HeaderMap,
) -> Response {
    use crate::limit::{too_long, LOGIN_HINT_MAX, RETURN_TO_MAX};
    // Both are kept with the flow state: bounded before anything is looked up.
    if let Some(why) = too_long("return_to", q.return_to.as_deref(), RETURN_TO_MAX).or_else(|| too_long("login_hint", q.login_hint.as_deref(), LOGIN_HINT_MAX))
    {
        return page::error(StatusCode::BAD_REQUEST, &why);
    }
    let conn = match active_connection(&app, &id).await {
        Ok(c) => c,
        Err(r) => return r,
    };

    // Reuse the browser's flow cookie so two tabs can log in at once.
    let browser =
        flow_cookie_value(&app, &headers).filter(|v| v.len() == 43 && crate::id::is_wellformed(v)).map(str::to_string).unwrap_or_else(|| crate::id::token(32));
    let return_to = q.return_to.as_deref().and_then(|p| return_target(&app, p));
    let base = app.config.public_base();
    let callback = conn.callback_url(&base);
    let hint = q.login_hint.as_deref().filter(|h| !h.is_empty() && !h.chars().any(char::is_control));
    let begun = match conn.protocol {
        Protocol::Oidc => oidc::begin(&conn, &callback, &hash(&browser), return_to, hint, app.clock.now()).map(|(s, f, url)| (s, f, Outbound::Redirect(url))),
        Protocol::Saml => saml::begin(&conn, &base, &hash(&browser), return_to, app.clock.now()),
    };
    let (state, flow, outbound) = match begun {
        Ok(x) => x,
        Err(e) => return page::error(StatusCode::BAD_GATEWAY, &e.to_string()),
    };
    let ttl = app.config.login.flow_ttl_seconds;
    let stored = serde_json::to_string(&flow).unwrap_or_default();
    match app.ephemeral.put_flow(&client.to_string(), &format!("flow:{state}"), &stored, (ttl * 1000) as i64).await {
        Ok(true) => {}
        Ok(false) | Err(_) => return page::error(StatusCode::SERVICE_UNAVAILABLE, "Sign-in is unavailable right now; try again shortly."),
    }
    let mut resp = match outbound {
        Outbound::Redirect(url) => Redirect::to(&url).into_response(),
        Outbound::Post { url, saml_request, relay_state } => post_form(&url, &[("SAMLRequest", &saml_request), ("RelayState", &relay_state)]),
    };
    resp.headers_mut().append(header::SET_COOKIE, flow_cookie(&app, &browser, ttl));
    resp
}

/// An auto-submitting form (SAML HTTP-POST binding). Without JavaScript the user presses
/// the button. Every value is escaped.
fn post_form(url: &str, fields: &[(&str, &str)]) -> Response {
    const SCRIPT: &str = "document.getElementById('f').submit()";
    let inputs: String = fields.iter().map(|(k, v)| format!("<input type=\"hidden\" name=\"{}\" value=\"{}\">", esc(k), esc(v))).collect();
    let body = format!(
        "<h1>Signing in</h1><form id=\"f\" method=\"post\" action=\"{}\">{inputs}<button type=\"submit\">Continue to your identity provider</button></form>\
<script>{SCRIPT}</script>",
        esc(url)
    );
    // The form may post to the IdP's origin, and the one script run is this one.
    let idp: Vec<String> = url::Url::parse(url).ok().map(|u| u.origin().ascii_serialization()).into_iter().filter(|o| o != "null").collect();
    page::with_csp(Html(page::layout("Signing in", &body)).into_response(), Some(SCRIPT), &idp)
}

/// The OIDC callback's query.
#[derive(Debug, Deserialize)]
pub struct CallbackQuery {
    state: Option<String>,
    code: Option<String>,
    /// RFC 9207: the issuer of the authorization response.
    iss: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// The IdP sends the browser back here: check and consume the state, exchange the
/// code, verify the ID token, then the shared steps.
pub async fn oidc_callback(State(app): State<AppState>, ApiPath(id): ApiPath<String>, Query(q): Query<CallbackQuery>, headers: HeaderMap) -> Response {
    let Some(state) = q.state.as_deref().filter(|s| !s.is_empty() && s.len() <= 128) else {
        return page::error(StatusCode::BAD_REQUEST, "The sign-in reply has no state. Start the sign-in again.");
    };
    // Single use: taken here, so a replayed or reused state finds nothing.
    let flow: Option<FlowState> = match app.ephemeral.take(&format!("flow:{state}")).await {
        Ok(v) => v.and_then(|s| serde_json::from_str(&s).ok()),
        Err(e) => {
            return state_unavailable(&e, "Sign-in is unavailable right now; try again shortly.");
        }
    };
    let Some(flow) = flow else {
        return page::error(StatusCode::BAD_REQUEST, "This sign-in has expired or was already used. Start the sign-in again.");
    };
    let browser_ok = flow_cookie_value(&app, &headers).is_some_and(|c| hash(c) == flow.browser);
    if flow.connection_id != id || !browser_ok {
        tracing::warn!(connection = %id, "callback state bound to another browser or connection");
        return page::error(StatusCode::BAD_REQUEST, "This sign-in was started in another browser. Start the sign-in again here.");
    }
    let conn = match active_connection(&app, &id).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    // RFC 9207 (mix-up defence), before anything of the reply is used, errors included.
    if let Err(e) = oidc::check_response_issuer(&conn, q.iss.as_deref()) {
        return upstream_error(&conn, e);
    }
    if let Some(err) = &q.error {
        let detail = q.error_description.as_deref().map(|d| format!(": {d}")).unwrap_or_default();
        return page::error(StatusCode::FORBIDDEN, &format!("Your identity provider refused the sign-in ({err}{detail})."));
    }
    let Some(code) = q.code.as_deref().filter(|c| !c.is_empty()) else {
        return page::error(StatusCode::BAD_REQUEST, "The sign-in reply has no code. Start the sign-in again.");
    };
    let checks = oidc::Checks { now: app.clock.now(), skew_ms: (app.config.login.clock_skew_seconds * 1000) as i64 };
    let callback = conn.callback_url(&app.config.public_base());
    let verified = match oidc::finish(&conn, &callback, code, &flow, &app.http, &app.jwks, checks).await {
        Ok(v) => v,
        Err(e) => return upstream_error(&conn, e),
    };
    let require_verified = conn.settings.oidc.as_ref().is_some_and(|o| o.email_verification);
    let finish = Finish {
        identity: &verified.identity,
        require_verified_email: require_verified,
        upstream_token: verified.access_token,
        return_to: flow.return_to,
        session_until: None,
        previous_session: previous_session(&headers),
    };
    complete(&app, &conn, finish).await
}

fn upstream_error(conn: &Connection, e: UpstreamError) -> Response {
    tracing::warn!(connection = %conn.id, error = %e, "login refused");
    let status = match e {
        UpstreamError::Refused(_) => StatusCode::FORBIDDEN,
        UpstreamError::Unavailable(_) => StatusCode::BAD_GATEWAY,
        UpstreamError::Invalid(_) => StatusCode::FORBIDDEN,
    };
    page::error(status, &format!("{}.", upper_first(&e.to_string())))
}

/// What a verified upstream reply hands to [`complete`].
pub struct Finish<'a> {
    /// Who the IdP says the user is.
    pub identity: &'a Identity,
    /// Refuse unless the IdP verified the email.
    pub require_verified_email: bool,
    /// The upstream access token, for revocation at logout.
    pub upstream_token: Option<String>,
    /// Where to go after the login.
    pub return_to: Option<String>,
    /// The IdP's own end for the session (SAML `SessionNotOnOrAfter`): the session and its
    /// cookie never outlive it.
    pub session_until: Option<crate::clock::Millis>,
    /// The session this browser had before this login: it ends when the new one starts,
    /// so a login in the same browser (another user, another connection) never leaves the
    /// previous session alive.
    pub previous_session: Option<String>,
}

/// A 503 page for a state-store failure, with `Retry-After`; the outage is logged once
/// when it begins and then once a minute (`web::outage`), not once per request.
fn state_unavailable(e: &dyn std::fmt::Display, message: &str) -> Response {
    crate::web::outage::STATE.failed(e);
    let mut resp = page::error(StatusCode::SERVICE_UNAVAILABLE, message);
    resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static(crate::web::outage::RETRY_AFTER_SECONDS));
    resp
}

/// The session cookie a request carries, for [`Finish::previous_session`].
fn previous_session(headers: &HeaderMap) -> Option<String> {
    cookie(headers, SESSION_COOKIE).filter(|v| !v.is_empty()).map(str::to_string)
}

/// The shared steps after any upstream: directory, group sync, session, redirect.
pub async fn complete(app: &AppState, conn: &Connection, finish: Finish<'_>) -> Response {
    let Finish { identity, require_verified_email, upstream_token, return_to, session_until, previous_session } = finish;
    // The requirement is met by what the IdP vouched for; then what cannot be stored is
    // dropped (an email that is not an address: the login goes on without one).
    let checked = if require_verified_email { crate::directory::provision::require_verified(identity) } else { Ok(()) };
    let identity = &crate::directory::provision::sanitize(identity, &conn.id);
    let resolution = match checked {
        Ok(()) => app.directory.resolve(conn, identity, false).await,
        Err(refusal) => Err(refusal),
    };
    let resolution = match resolution {
        Ok(r) => r,
        Err(Refusal::Store(e)) => {
            tracing::error!(error = %e, "directory step failed");
            return page::error(StatusCode::SERVICE_UNAVAILABLE, "Sign-in is unavailable right now; try again shortly.");
        }
        Err(refusal) => {
            tracing::info!(connection = %conn.id, reason = %refusal, "login refused by the directory step");
            return page::error(StatusCode::FORBIDDEN, &format!("{}.", upper_first(&refusal.to_string())));
        }
    };
    let user = match app.directory.apply(conn, identity, &resolution).await {
        Ok(u) => u,
        Err(e) => {
            tracing::error!(error = %e, "directory step failed");
            return page::error(StatusCode::SERVICE_UNAVAILABLE, "Sign-in is unavailable right now; try again shortly.");
        }
    };
    let groups = resolution.group_names();
    let now = app.clock.now();
    let lifetime_ms = (app.config.session.lifetime_seconds * 1000) as i64;
    let expires_at = session_until.map_or(now + lifetime_ms, |until| until.min(now + lifetime_ms));
    let session = Session {
        id: crate::id::token(32),
        user_id: user.id.clone(),
        connection_id: conn.id.clone(),
        username: user.username.clone(),
        email: user.email.clone(),
        email_verified: session_email_verified(identity, user.email.as_deref()),
        name: user.profile.name.clone(),
        groups,
        created_at: now,
        expires_at,
        idle_timeout_ms: (app.config.session.idle_seconds * 1000) as i64,
        last_seen: now,
        profile: user.profile.clone(),
        upstream_token,
    };
    if let Err(e) = app.sessions.create(&session).await {
        return state_unavailable(&e, "Sign-in is unavailable right now; try again shortly.");
    }
    if let Some(previous) = previous_session.filter(|p| *p != session.id) {
        if let Err(e) = app.sessions.remove(&previous).await {
            tracing::warn!(error = %e, "the previous session of this browser could not be ended");
        }
    }
    tracing::info!(user_id = %user.id, connection = %conn.id, "login");
    let mut resp = Redirect::to(return_to.as_deref().unwrap_or("/")).into_response();
    resp.headers_mut().append(header::SET_COOKIE, set_cookie(app, SESSION_COOKIE, &session.id, ((expires_at - now) / 1000).max(1) as u64));
    resp.headers_mut().append(header::SET_COOKIE, flow_cookie(app, "", 0));
    resp
}

/// Whether the session's email counts as verified by this login.
///
/// Decision: the session's `email` stays the stored user's address (what the directory,
/// and so every app, knows the user by); its `email_verified` is true only when this
/// login's identity carries that same address (ASCII case-insensitively, anything else
/// exactly, as the directory compares) and the IdP verified it in this login. A linked
/// user whose IdP now vouches for another address keeps the stored address, unverified.
fn session_email_verified(identity: &Identity, stored: Option<&str>) -> bool {
    identity.email_verified == Some(true) && matches!((identity.email.as_deref(), stored), (Some(mine), Some(stored)) if mine.eq_ignore_ascii_case(stored))
}

fn upper_first(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().collect::<String>() + c.as_str()).unwrap_or_default()
}

/// The session of this browser, if it has a live one, its last use moved to `now`; an
/// error when the store did not answer (callers that must not take that for "signed
/// out" answer 503).
pub async fn browser_session(app: &AppState, headers: &HeaderMap, now: crate::clock::Millis) -> crate::state::StateResult<Option<std::sync::Arc<Session>>> {
    match cookie(headers, SESSION_COOKIE) {
        Some(id) => app.sessions.touch(id, now).await,
        None => Ok(None),
    }
}

/// The session of this browser, if it has a live one (a store failure counts as none).
pub async fn current_session(app: &AppState, headers: &HeaderMap) -> Option<std::sync::Arc<Session>> {
    browser_session(app, headers, app.clock.now()).await.ok().flatten()
}

/// `/`: who is signed in, or the login page.
pub async fn home(State(app): State<AppState>, headers: HeaderMap) -> Response {
    match current_session(&app, &headers).await {
        Some(s) => {
            let body = format!(
                "<h1>Signed in</h1><p>You are signed in as <strong>{}</strong>{}.</p><p class=\"muted\">Groups: {}</p>\
                 <form method=\"post\" action=\"/logout\"><button type=\"submit\">Sign out</button></form>",
                esc(&s.username),
                s.email.as_deref().map(|e| format!(" ({})", esc(e))).unwrap_or_default(),
                esc(&s.groups.join(", "))
            );
            Html(page::layout("Signed in", &body)).into_response()
        }
        None => Redirect::to("/login").into_response(),
    }
}

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
            && crate::ingress::validate_redirect(&format!("{origin}/"), &app.config.ingress.allowed_domains, &app.config.public_url).is_ok();
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
    if let Some(id) = cookie(headers, SESSION_COOKIE) {
        match app.sessions.remove(id).await {
            Ok(Some(s)) => {
                revoke_upstream(app, &s).await;
                tracing::info!(user_id = %s.user_id, "logout");
            }
            Ok(None) => {}
            // Fail closed: the session may live on, so do not pretend it ended (and keep
            // the cookie, so that signing out can be tried again).
            Err(e) => {
                return state_unavailable(&e, "Signing out is unavailable right now, and you are still signed in. Try again shortly.");
            }
        }
    }
    let mut resp = Redirect::to("/login").into_response();
    for v in clear_session_cookie(app) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

async fn revoke_upstream(app: &AppState, s: &Session) {
    let Some(token) = &s.upstream_token else { return };
    let Ok(conn) = app.registry.get(&s.connection_id).await else { return };
    let Some(o) = &conn.settings.oidc else { return };
    let Some(endpoint) = &o.revocation_endpoint else { return };
    let secret = conn.secrets.client_secret.clone().unwrap_or_default();
    let form = [("token", token.as_str()), ("token_type_hint", "access_token")];
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let req = app.http.post(endpoint).basic_auth(enc(&o.client_id), Some(enc(&secret))).form(&form);
    // Best effort: the local session is already gone whatever the IdP says.
    match req.send().await {
        Ok(r) if r.status().is_success() => tracing::info!(connection = %conn.id, "upstream token revoked"),
        Ok(r) => tracing::warn!(connection = %conn.id, status = r.status().as_u16(), "upstream revocation refused"),
        Err(_) => tracing::warn!(connection = %conn.id, "upstream revocation endpoint unreachable"),
    }
}

#[cfg(test)]
mod tests {
    use crate::mapping::Identity;

    #[test]
    fn session_email_is_verified_only_when_this_login_verified_that_very_address() {
        let id = |email: Option<&str>, verified: Option<bool>| Identity {
            subject: "s".into(),
            email: email.map(str::to_string),
            email_verified: verified,
            ..Default::default()
        };
        for (email, verified, stored, want) in [
            (Some("a@x.test"), Some(true), Some("a@x.test"), true),
            (Some("A@X.test"), Some(true), Some("a@x.test"), true),
            (Some("b@x.test"), Some(true), Some("a@x.test"), false),
            (Some("a@x.test"), Some(false), Some("a@x.test"), false),
            (Some("a@x.test"), None, Some("a@x.test"), false),
            (None, Some(true), Some("a@x.test"), false),
            (Some("a@x.test"), Some(true), None, false),
            (Some("\u{212A}@x.test"), Some(true), Some("k@x.test"), false),
            (Some("a@x.test\u{A0}"), Some(true), Some("a@x.test"), false),
        ] {
            assert_eq!(super::session_email_verified(&id(email, verified), stored), want, "{email:?} {verified:?} {stored:?}");
        }
    }

    #[test]
    fn return_paths_stay_on_this_host() {
        for ok in ["/", "/authorize?client_id=a&x=%2F%2Fevil", "/a/b"] {
            assert!(super::local_path(ok).is_some(), "{ok}");
        }
        for bad in [
            "//evil.example",
            "/\\evil.example",
            "\\/evil.example",
            "https://evil.example",
            "https:evil.example",
            "evil.example",
            "/\tx",
            "/a\nb",
            "/a\rb",
            "//good@evil.example",
            "",
            "javascript:alert(1)",
        ] {
            assert!(super::local_path(bad).is_none(), "{bad:?}");
        }
    }
}

/// Our SP metadata for a SAML connection, for the IdP to import as is.
pub async fn saml_metadata(State(app): State<AppState>, ApiPath(id): ApiPath<String>) -> Response {
    let conn = match app.registry.get_cached(&id).await {
        Ok(c) => c,
        Err(_) => return page::error(StatusCode::NOT_FOUND, "There is no SAML connection with this id."),
    };
    match crate::upstream::saml::sp_metadata(&conn, &app.config.public_base()) {
        Some(xml) => ([(header::CONTENT_TYPE, "application/samlmetadata+xml")], xml).into_response(),
        None => page::error(StatusCode::NOT_FOUND, "There is no SAML connection with this id."),
    }
}

/// The ACS form.
#[derive(Debug, Deserialize)]
pub struct AcsForm {
    #[serde(rename = "SAMLResponse")]
    saml_response: Option<String>,
    #[serde(rename = "RelayState")]
    relay_state: Option<String>,
}

fn refused(status: StatusCode, id: &str, reason: &str) -> Response {
    tracing::warn!(connection = %id, reason, "SAML response refused");
    page::error(status, &format!("{}.", upper_first(reason)))
}

/// The assertion consumer service. In order: the pre-check (no DTD, no comments, local
/// references only, allowed transforms and algorithms, unique IDs), off the async
/// runtime; the flow this browser started (RelayState, single use, bound to the flow
/// cookie), or an unsolicited response when the connection accepts those; signatures and
/// the profile's checks (`saml_response`), off the runtime; the replay cache; then the
/// shared steps. Each refusal leaves nothing behind.
pub async fn saml_acs(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    // Refused like every other reply: the same page and log line (413 kept).
    let body = match body {
        Ok(b) => b,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return refused(StatusCode::PAYLOAD_TOO_LARGE, &id, "the SAML reply is too large (over http.max_body_bytes); start the sign-in again")
        }
        Err(_) => return refused(StatusCode::BAD_REQUEST, &id, "the SAML reply could not be read; start the sign-in again"),
    };
    let form: AcsForm = match serde_urlencoded::from_bytes(&body) {
        Ok(f) => f,
        Err(_) => return page::error(StatusCode::BAD_REQUEST, "The SAML reply is not a form post. Start the sign-in again."),
    };
    if let Some(why) = crate::limit::too_long("RelayState", form.relay_state.as_deref(), crate::limit::RELAY_STATE_MAX) {
        return refused(StatusCode::BAD_REQUEST, &id, why.trim_end_matches('.'));
    }
    let Some(value) = form.saml_response else {
        return page::error(StatusCode::BAD_REQUEST, "The SAML reply has no SAMLResponse. Start the sign-in again.");
    };
    let xml = match tokio::task::spawn_blocking(move || saml_precheck::check(&value)).await {
        Ok(Ok(xml)) => xml,
        Ok(Err(e)) => return refused(StatusCode::BAD_REQUEST, &id, &e.to_string()),
        Err(_) => return page::error(StatusCode::INTERNAL_SERVER_ERROR, "The SAML reply could not be checked."),
    };
    let conn = match active_connection(&app, &id).await {
        Ok(c) if c.protocol == Protocol::Saml => c,
        Ok(_) => return page::error(StatusCode::NOT_FOUND, "There is no SAML connection with this id."),
        Err(r) => return r,
    };
    let allow_unsolicited = conn.settings.saml.as_ref().is_some_and(|s| s.allow_idp_initiated);

    // The login this browser started, if the RelayState names one (taken: single use).
    let relay = form.relay_state.filter(|r| !r.is_empty());
    let flow: Option<FlowState> = match &relay {
        Some(r) if crate::id::is_wellformed(r) => match app.ephemeral.take(&format!("flow:{r}")).await {
            Ok(v) => v.and_then(|s| serde_json::from_str(&s).ok()),
            Err(e) => {
                return state_unavailable(&e, "Sign-in is unavailable right now; try again shortly.");
            }
        },
        _ => None,
    };
    let return_to = match &flow {
        Some(f) => {
            let browser_ok = flow_cookie_value(&app, &headers).is_some_and(|c| hash(c) == f.browser);
            if f.connection_id != id || !browser_ok {
                return refused(StatusCode::BAD_REQUEST, &id, "this sign-in was started in another browser; start the sign-in again here");
            }
            f.return_to.clone()
        }
        None if allow_unsolicited => relay.as_deref().and_then(|r| return_target(&app, r)),
        None => {
            return refused(StatusCode::FORBIDDEN, &id, "this SAML response answers no sign-in started in this browser (it expired, was already used, or came unrequested, and IdP-initiated sign-in is off for this connection); start the sign-in again")
        }
    };

    let acs = conn.acs_url(&app.config.public_base());
    let request_id = flow.and_then(|f| f.saml_request_id);
    let now = app.clock.now();
    let login = &app.config.login;
    let (skew_ms, max_age_ms) = ((login.clock_skew_seconds * 1000) as i64, (login.flow_ttl_seconds * 1000) as i64);
    let c = conn.clone();
    let verified = tokio::task::spawn_blocking(move || {
        let expect = saml_response::Expect { acs_url: &acs, request_id: request_id.as_deref(), now, skew_ms, max_age_ms };
        saml_response::verify_xml(&xml, &c, &expect)
    })
    .await;
    let verified = match verified {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => return upstream_error(&conn, e),
        Err(_) => return page::error(StatusCode::INTERNAL_SERVER_ERROR, "The SAML reply could not be checked."),
    };
    // Replay cache: an assertion is accepted once, for as long as it could be presented.
    let ttl = (verified.valid_until - now + skew_ms).clamp(1000, 24 * 3600 * 1000);
    match app.ephemeral.put_new(&format!("saml-assertion:{}:{}", conn.id, verified.assertion_id), "1", ttl).await {
        Ok(true) => {}
        Ok(false) => return refused(StatusCode::FORBIDDEN, &id, "this SAML assertion was already used (replayed)"),
        Err(e) => {
            return state_unavailable(&e, "Sign-in is unavailable right now; try again shortly.");
        }
    }
    let mut identity = match crate::mapping::map(&verified.claims, &conn.settings.claims) {
        Ok(i) => i,
        Err(e @ crate::mapping::MappingError::NoSubject(_)) => {
            return refused(StatusCode::FORBIDDEN, &id, &format!("{e} (looked in the SAML assertion's NameID and attributes)"))
        }
        Err(e) => return refused(StatusCode::FORBIDDEN, &id, &e.to_string()),
    };
    identity.sources = vec!["the SAML assertion".into()];
    if let Err(e) = saml::check_name_id(&conn, &verified.claims, crate::mapping::source_of(&verified.claims, &conn.settings.claims.user_id)) {
        return upstream_error(&conn, e);
    }
    // SAML says nothing of email verification: the email never claims an existing account,
    // whatever an attribute named `email_verified` says.
    identity.email_verified = None;
    let finish = Finish {
        identity: &identity,
        require_verified_email: false,
        upstream_token: None,
        return_to,
        session_until: verified.session_until,
        previous_session: previous_session(&headers),
    };
    complete(&app, &conn, finish).await
}
