//! Ingress auth: `GET /auth` answers nginx `auth_request` / ingress-nginx `auth-url`,
//! Traefik forwardAuth and Envoy ext_authz (200 with `X-Auth-Request-*` headers for a
//! live session, and a bearer token for the app when asked; 401 without one, or a 302
//! to the sign-in with `redirect=1`; 403 when logged in but not allowed), `GET /start?rd=`
//! starts a login that returns to `rd`, and the redirect validator both use. The
//! oauth2-proxy paths are aliases. `/auth` is the hot path: it asks the session store
//! on every request (so expiry and logout take effect at once) and signs the app's
//! token once per session and five minutes ([`Tokens`]).

use std::collections::HashMap;
use std::sync::Mutex;

use axum::body::{Body, Bytes};
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use url::Url;

use crate::app::AppState;
use crate::clock::Millis;
use crate::state::Session;
use crate::web::browser::{browser_session, current_session};
use crate::web::page;

/// The ingress's browser routes (`/auth` itself is answered by the server's front, and
/// routed by [`crate::server::router`] for callers that use the router directly).
pub fn routes(state: &AppState) -> axum::Router<AppState> {
    use axum::routing::get;
    let starts = || axum::middleware::from_fn_with_state(state.clone(), crate::limit::starts);
    axum::Router::new()
        .route("/start", get(start).layer(starts()))
        .route("/oauth2/start", get(start).layer(starts()))
        .route("/oauth2/sign_out", get(sign_out).post(sign_out_post))
        .route("/oauth2/userinfo", get(userinfo))
}

/// `/auth` query: per-route rules, as ingress annotations pass them, and two switches.
#[derive(Debug, Default)]
pub struct AuthQuery {
    allowed_groups: Option<String>,
    allowed_emails: Option<String>,
    allowed_connections: Option<String>,
    /// oauth2-proxy's `allowed_email_domains`: `example.com` (that domain), `.example.com`
    /// or `*.example.com` (its subdomains), `*` (any domain); a verified email only.
    allowed_email_domains: Option<String>,
    /// `redirect=1`: answer "not logged in" with a 302 to `/start?rd=<original URL>`
    /// instead of 401, for proxies that hand the auth answer to the browser as is
    /// (Traefik forwardAuth). nginx `auth_request` must not use it: it needs the 401.
    redirect: Option<String>,
    /// `set_authorization_header=true`: add `Authorization: Bearer <token>` for the app
    /// (oauth2-proxy's `--set-authorization-header`).
    set_authorization_header: Option<String>,
}

impl AuthQuery {
    /// Reads the query string (form encoding), strictly: the query is the route's rule,
    /// written by an admin in an annotation, so a slip must not open the route. An
    /// unknown name (`allowed-groups`, `allowed_group`) is refused, not ignored; so is a
    /// rule with nothing in it (an empty template variable) and a name given twice (two
    /// lists could mean "either" or "both"). Each answer is a 400 naming the parameter.
    pub fn parse(query: Option<&str>) -> Result<Self, String> {
        Self::parse_as(query, false)
    }

    /// The query of the Envoy form (`/auth/<path>?<query>`): Envoy passes the app's own
    /// query there, so only the rule names are read (as strictly as on `/auth`) and the
    /// flags `redirect` and `set_authorization_header` when their value is a flag's; a
    /// near miss of a rule name (`allowed-groups`, `allowedGroup`) is refused as a slip,
    /// and anything else is the app's and left alone. Whoever writes the app's query can
    /// add rules, which only ever narrow who gets in.
    pub fn parse_envoy(query: Option<&str>) -> Result<Self, String> {
        Self::parse_as(query, true)
    }

    fn parse_as(query: Option<&str>, envoy: bool) -> Result<Self, String> {
        let mut q = AuthQuery::default();
        for (name, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            let (slot, is_rule) = match &*name {
                "allowed_groups" => (&mut q.allowed_groups, true),
                "allowed_emails" => (&mut q.allowed_emails, true),
                "allowed_connections" => (&mut q.allowed_connections, true),
                "allowed_email_domains" => (&mut q.allowed_email_domains, true),
                // In the Envoy form a flag is ours only when its value is a flag's (`1`,
                // `true`, `0`, `false`); an app's own `redirect=/home` is the app's.
                "redirect" if !envoy || is_flag_value(&value) => (&mut q.redirect, false),
                "set_authorization_header" if !envoy || is_flag_value(&value) => (&mut q.set_authorization_header, false),
                _ if envoy && !looks_like_a_rule(&name) => continue,
                _ if envoy => {
                    let shown: String = name.chars().take(64).flat_map(char::escape_default).collect();
                    return Err(format!(
                        "unknown parameter `{shown}`: a rule is written allowed_groups, allowed_emails, allowed_email_domains or allowed_connections"
                    ));
                }
                _ => {
                    let shown: String = name.chars().take(64).flat_map(char::escape_default).collect();
                    return Err(format!(
                        "unknown parameter `{shown}`: /auth takes allowed_groups, allowed_emails, allowed_email_domains, allowed_connections, redirect and set_authorization_header"
                    ));
                }
            };
            if slot.is_some() {
                return Err(format!("`{name}` is given twice: give one comma-separated list"));
            }
            if is_rule && value.split(',').all(|x| x.trim().is_empty()) {
                return Err(format!("`{name}` is empty: list at least one name, or leave the rule out"));
            }
            *slot = Some(value.into_owned());
        }
        Ok(q)
    }
}

fn is_flag_value(v: &str) -> bool {
    matches!(v, "1" | "0" | "true" | "false")
}

/// Whether a query parameter's name is a slip for a rule name: `allowed-groups`,
/// `AllowedGroups`, `allow_group`... (letters and digits only, ASCII case aside).
fn looks_like_a_rule(name: &str) -> bool {
    let n: String = name.chars().filter(char::is_ascii_alphanumeric).collect::<String>().to_ascii_lowercase();
    let n = n.strip_prefix("allowed").or_else(|| n.strip_prefix("allow")).unwrap_or("");
    matches!(n, "groups" | "group" | "emails" | "email" | "connections" | "connection" | "emaildomains" | "emaildomain" | "domains" | "domain")
}

/// Whether a rule lets the session in: no rule lets everyone in, otherwise one listed
/// item must match ([`AuthQuery::parse`] refuses a rule with no items).
fn rule(list: &Option<String>, matches: impl FnMut(&str) -> bool) -> bool {
    match list {
        None => true,
        Some(l) => l.split(',').map(str::trim).filter(|x| !x.is_empty()).any(matches),
    }
}

/// Equal by the directory's rule (`store::name_key`): ASCII letters without case,
/// anything else exactly, so a rule never admits a lookalike of a listed name.
fn same(a: &str, b: &str) -> bool {
    crate::store::same_name(a, b)
}

fn flag(s: &Option<String>) -> bool {
    matches!(s.as_deref(), Some("1" | "true" | "yes" | "on"))
}

/// The URL the browser asked the proxy for, as each proxy reports it: `X-Original-URL`
/// (nginx, ingress-nginx), `X-Forwarded-Proto` + `-Host` + `-Uri` (Traefik forwardAuth),
/// or `Host` and the path after `/auth` (Envoy ext_authz with `path_prefix: /auth`).
/// Nothing here is trusted: it is logged without its query, and validated with
/// [`validate_redirect`] before it goes into a `Location`.
pub fn original_url(headers: &HeaderMap, envoy_path: Option<&str>) -> Option<String> {
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty());
    // Chained proxies append to X-Forwarded-*: the first value is the browser's.
    let first = |v: &str| v.split(',').next().unwrap_or_default().trim().to_string();
    if let Some(u) = h("x-original-url") {
        return Some(u.to_string());
    }
    let proto = h("x-forwarded-proto").map(first).unwrap_or_else(|| "https".into());
    if let (Some(host), Some(uri)) = (h("x-forwarded-host"), h("x-forwarded-uri")) {
        return Some(format!("{proto}://{}{uri}", first(host)));
    }
    let path = envoy_path?;
    Some(format!("{proto}://{}{path}", h("host")?))
}

/// A URL for logs: no query or fragment (they can carry codes and tokens), bounded.
fn loggable(url: &str) -> &str {
    let end = url.find(['?', '#']).unwrap_or(url.len()).min(512);
    url.get(..end).unwrap_or_default()
}

/// How long an ingress bearer token lives, and when a cached one is replaced.
const TOKEN_TTL_MS: Millis = 300_000;
const TOKEN_REFRESH_MS: Millis = 60_000;
/// Cached tokens beyond this many are swept (expired ones first, then all).
const MAX_TOKENS: usize = 250_000;

/// Whether the route's rules let this session in: groups and connections compared
/// without case, and only a verified email counts for `allowed_emails`.
fn allows(s: &Session, q: &AuthQuery) -> bool {
    rule(&q.allowed_groups, |g| s.groups.iter().any(|mine| same(mine, g)))
        && rule(&q.allowed_emails, |e| s.email_verified && s.email.as_deref().is_some_and(|mine| same(mine, e)))
        && rule(&q.allowed_connections, |c| same(&s.connection_id, c))
        && rule(&q.allowed_email_domains, |d| s.email_verified && s.email.as_deref().is_some_and(|mine| email_in_domain(mine, d)))
}

/// Whether `email`'s domain matches a rule of `allowed_email_domains`, as oauth2-proxy
/// reads it: `example.com` is that domain only, `.example.com` and `*.example.com` its
/// subdomains only, `*` any domain; ASCII letters without case. An address with no `@`
/// or with an empty domain matches nothing.
fn email_in_domain(email: &str, rule: &str) -> bool {
    let Some((local, domain)) = email.rsplit_once('@') else { return false };
    if local.is_empty() || domain.is_empty() {
        return false;
    }
    if rule == "*" {
        return true;
    }
    match rule.strip_prefix("*.").or_else(|| rule.strip_prefix('.')) {
        // A subdomain: a label, then a dot, then the rule's domain.
        Some(parent) if !parent.is_empty() => {
            let cut = domain.len().saturating_sub(parent.len());
            cut > 1 && domain.as_bytes().get(cut - 1) == Some(&b'.') && domain.get(cut..).is_some_and(|tail| same(tail, parent))
        }
        Some(_) => false,
        None => same(domain, rule),
    }
}

/// The identity headers of a session (oauth2-proxy's names).
fn identity_headers(s: &Session, h: &mut HeaderMap) {
    let mut set = |name: &'static str, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(HeaderName::from_static(name), v);
        }
    };
    set("x-auth-request-user", &s.user_id);
    set("x-auth-request-email", s.email.as_deref().unwrap_or(""));
    set("x-auth-request-preferred-username", &s.username);
    // Joined once and handed over, not copied again. A group whose name has a comma (the
    // directory refuses those now; a store may hold older ones) is left out: listed, it
    // would reach the app as two groups.
    let joined = if s.groups.iter().any(|g| g.contains(',')) {
        s.groups.iter().map(String::as_str).filter(|g| !g.contains(',')).collect::<Vec<_>>().join(",")
    } else {
        s.groups.join(",")
    };
    if let Ok(v) = HeaderValue::from_maybe_shared(Bytes::from(joined)) {
        h.insert(HeaderName::from_static("x-auth-request-groups"), v);
    }
}

/// The app's bearer tokens by session id, so `/auth` signs once per session and five
/// minutes, not per request. The session store is still asked first on every request,
/// so an ended session never gets its cached token, and a token is handed out only
/// while the session says what it says ([`Tokens::fingerprint`]): once an admin change
/// rewrites a session's groups, its next request gets a new token on every replica.
/// (The identity headers are not cached: building them costs less than the memory a
/// cache entry per session takes.)
#[derive(Default)]
pub struct Tokens {
    map: Mutex<(HashMap<String, Cached>, Millis)>,
    /// Keyed per process, so nobody can pick groups whose fingerprint matches another set.
    keys: std::hash::RandomState,
}

/// A token header, when it expires, and the fingerprint of the session it describes.
type Cached = (HeaderValue, Millis, u64);

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Keys are session ids (cookie values), values tokens: never printed.
        f.write_str("Tokens")
    }
}

impl Tokens {
    /// What the token says of session `s` (all of it but the times it is signed and
    /// expires), with the session's start: a cached token whose session since changed,
    /// or was replaced under the same id, is not handed out.
    fn fingerprint(&self, s: &Session) -> u64 {
        use std::hash::BuildHasher;
        self.keys.hash_one((s.created_at, &s.user_id, &s.connection_id, &s.username, &s.email, s.email_verified, &s.name, &s.groups))
    }

    /// The cached token of session `s`, while it has more than a minute to live and the
    /// session still says what the token says.
    fn get(&self, s: &Session, now: Millis) -> Option<HeaderValue> {
        let fingerprint = self.fingerprint(s);
        let guard = self.map.lock().ok()?;
        let (v, exp, of) = guard.0.get(&s.id)?;
        (*of == fingerprint && exp - now > TOKEN_REFRESH_MS).then(|| v.clone())
    }

    fn put(&self, s: &Session, value: HeaderValue, exp: Millis, now: Millis) {
        let fingerprint = self.fingerprint(s);
        let Ok(mut guard) = self.map.lock() else { return };
        let (map, last_sweep) = &mut *guard;
        if map.len() >= MAX_TOKENS && now - *last_sweep > 1000 {
            map.retain(|_, (_, exp, _)| *exp > now);
            *last_sweep = now;
        }
        if map.len() >= MAX_TOKENS {
            map.clear();
        }
        map.insert(s.id.clone(), (value, exp, fingerprint));
    }

    /// Drops the token of a session (logout).
    pub fn forget(&self, session_id: &str) {
        if let Ok(mut guard) = self.map.lock() {
            guard.0.remove(session_id);
        }
    }
}

/// The bearer token for the app: a short-lived JWT signed with the gateway's key,
/// describing the session's user. Cached per session until a minute before it expires.
/// It names the session by a hash, never by its id (the cookie value).
async fn bearer(app: &AppState, s: &Session, now: Millis) -> Option<HeaderValue> {
    if let Some(v) = app.ingress.get(s, now) {
        return Some(v);
    }
    let exp = (now + TOKEN_TTL_MS).min(s.expires_at);
    let claims = crate::token::claims::token(&app.config.public_base(), &app.config.ingress.token_audience, s, crate::token::claims::Scope::All, now, exp);
    let token = match crate::token::claims::sign(app.store.as_ref(), &app.cipher, &claims).await {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "could not sign the ingress token");
            return None;
        }
    };
    let value = HeaderValue::from_str(&format!("Bearer {token}")).ok()?;
    app.ingress.put(s, value.clone(), exp, now);
    Some(value)
}

/// The ingress check (nginx `auth_request`, ingress-nginx `auth-url`, Traefik
/// forwardAuth). 401: not logged in (or a 302 to the sign-in with `redirect=1`).
/// 403: logged in but not allowed (never 401, which makes auth_request loop).
/// 503 when the session store cannot answer.
pub async fn forward_auth(State(app): State<AppState>, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    answer(&app, &parts).await
}

/// `/auth` and `/oauth2/auth` as the server's front answers them before the router
/// (and [`forward_auth`] behind it): the request read in place.
pub async fn answer(app: &AppState, req: &axum::http::request::Parts) -> Response {
    let started = std::time::Instant::now();
    let resp = match AuthQuery::parse(req.uri.query()) {
        Ok(q) => check(app, &q, &req.headers, None).await,
        Err(why) => bad_query(why),
    };
    // The metrics' whole cost here: a clock read and three relaxed atomic increments.
    app.metrics.auth.observe(resp.status().as_u16(), started.elapsed());
    resp
}

/// Whether the front answers this request itself (see [`answer`]).
pub fn is_check(req: &Request) -> bool {
    matches!(req.uri().path(), "/auth" | "/oauth2/auth") && matches!(*req.method(), Method::GET | Method::HEAD)
}

fn bad_query(why: String) -> Response {
    tracing::info!(reason = %why, "auth: refused a malformed query");
    (StatusCode::BAD_REQUEST, why).into_response()
}

/// Envoy ext_authz (HTTP service, `path_prefix: /auth`) asks `/auth/<original path>`.
/// Its query is the app's: rules in it are read as strictly as on `/auth` (a rule, or a
/// slip in one, is never ignored, which would open the route), everything else is left
/// to the app ([`AuthQuery::parse_envoy`]). The original URL is `Host` and the path,
/// without the query.
pub async fn forward_auth_envoy(State(app): State<AppState>, uri: Uri, headers: HeaderMap) -> Response {
    let started = std::time::Instant::now();
    let resp = match AuthQuery::parse_envoy(uri.query()) {
        Ok(q) => {
            let original = uri.path().strip_prefix("/auth").unwrap_or(uri.path());
            check(&app, &q, &headers, Some(original)).await
        }
        Err(why) => bad_query(why),
    };
    app.metrics.auth.observe(resp.status().as_u16(), started.elapsed());
    resp
}

async fn check(app: &AppState, q: &AuthQuery, headers: &HeaderMap, envoy_path: Option<&str>) -> Response {
    let now = app.clock.now();
    let session = match browser_session(app, headers, now).await {
        Ok(s) => s,
        Err(e) => {
            // Fail closed: no answer from the store is never a yes.
            crate::web::outage::STATE.failed(&e);
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
    };
    let Some(session) = session else {
        return not_logged_in(app, q, headers, envoy_path);
    };
    if !allows(&session, q) {
        if tracing::enabled!(tracing::Level::INFO) {
            let url = original_url(headers, envoy_path).unwrap_or_default();
            tracing::info!(user_id = %session.user_id, url = loggable(&url), "auth: refused by the route's rules");
        }
        return StatusCode::FORBIDDEN.into_response();
    }
    let mut resp = Response::new(Body::empty());
    let h = resp.headers_mut();
    identity_headers(&session, h);
    if flag(&q.set_authorization_header) || app.config.ingress.set_authorization_header {
        match bearer(app, &session, now).await {
            Some(v) => {
                h.insert(header::AUTHORIZATION, v);
            }
            // The app was promised a token: without one, say so rather than pass a bare request.
            None => return StatusCode::SERVICE_UNAVAILABLE.into_response(),
        }
    }
    resp
}

fn not_logged_in(app: &AppState, q: &AuthQuery, headers: &HeaderMap, envoy_path: Option<&str>) -> Response {
    if !flag(&q.redirect) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let start = format!("{}/start", app.config.public_base());
    let Some(original) = original_url(headers, envoy_path) else {
        return Redirect::to(&start).into_response().with_status(StatusCode::FOUND);
    };
    match crate::web::redirect::validate(&original, &app.config.ingress.allowed_domains, &app.config.public_url) {
        Ok(rd) => {
            let enc: String = url::form_urlencoded::byte_serialize(rd.as_bytes()).collect();
            Redirect::to(&format!("{start}?rd={enc}")).into_response().with_status(StatusCode::FOUND)
        }
        Err(why) => {
            tracing::warn!(url = loggable(&original), reason = why, "auth: not redirecting to sign in (add the host to ingress.allowed_domains)");
            StatusCode::UNAUTHORIZED.into_response()
        }
    }
}

trait WithStatus {
    fn with_status(self, status: StatusCode) -> Self;
}

impl WithStatus for Response {
    fn with_status(mut self, status: StatusCode) -> Self {
        *self.status_mut() = status;
        self
    }
}

/// The validated `rd`, or `default` without one; an invalid one is a 400 page saying why.
fn checked_rd(app: &AppState, rd: Option<&str>, default: &str, action: &str) -> Result<String, Box<Response>> {
    match rd {
        None => Ok(default.to_string()),
        Some(rd) => crate::web::redirect::validate(rd, &app.config.ingress.allowed_domains, &app.config.public_url)
            .map_err(|why| Box::new(page::error(StatusCode::BAD_REQUEST, &format!("Cannot {action} this page: {why}.")))),
    }
}

/// `/start` query.
#[derive(Debug, Deserialize)]
pub struct StartQuery {
    rd: Option<String>,
    connection: Option<String>,
}

/// Starts a login that returns to `rd` (validated first: an invalid one creates nothing).
pub async fn start(State(app): State<AppState>, Query(q): Query<StartQuery>, headers: HeaderMap) -> Response {
    let rd = match checked_rd(&app, q.rd.as_deref(), "/", "sign in for") {
        Ok(u) => u,
        Err(page) => return *page,
    };
    if current_session(&app, &headers).await.is_some() {
        return Redirect::to(&rd).into_response();
    }
    let enc: String = url::form_urlencoded::byte_serialize(rd.as_bytes()).collect();
    match q.connection.as_deref().filter(|c| crate::id::is_wellformed(c)) {
        Some(c) => Redirect::to(&format!("/login/{c}?return_to={enc}")).into_response(),
        None => Redirect::to(&format!("/login?return_to={enc}")).into_response(),
    }
}

/// `/oauth2/userinfo`: who the session is, as JSON (oauth2-proxy's shape); 401 without one.
pub async fn userinfo(State(app): State<AppState>, headers: HeaderMap) -> Response {
    let session = match browser_session(&app, &headers, app.clock.now()).await {
        Ok(s) => s,
        Err(e) => {
            // Not "signed out": the session may well be fine once the store answers.
            crate::web::outage::STATE.failed(&e);
            return (StatusCode::SERVICE_UNAVAILABLE, [(header::RETRY_AFTER, crate::web::outage::RETRY_AFTER_SECONDS)]).into_response();
        }
    };
    match session {
        // oauth2-proxy's names (`user`, `email`, `groups`, `preferredUsername`); the
        // snake_case `preferred_username` stays for clients written against ours before.
        Some(s) => axum::Json(serde_json::json!({
            "user": s.user_id,
            "email": s.email,
            "groups": s.groups,
            "preferredUsername": s.username,
            "preferred_username": s.username,
        }))
        .into_response(),
        None => StatusCode::UNAUTHORIZED.into_response(),
    }
}

/// `GET /oauth2/sign_out?rd=`: ends the session everywhere this cookie reaches, then
/// goes to a validated `rd` (or the login page). An invalid `rd` is refused before
/// anything ends.
///
/// Decision (logout CSRF): a GET ends the session at once only when the browser says it
/// comes from this site or a site of its own, or was typed (`Sec-Fetch-Site`
/// same-origin, same-site or none), as a "Sign out" link in an app under the cookie
/// domain does. Anything else (another site's link or `<img>`, or no `Sec-Fetch-Site` at
/// all: an old browser or a script) gets a confirmation page whose POST form carries a
/// token bound to the session. Scripts sign out with a POST.
pub async fn sign_out(State(app): State<AppState>, Query(q): Query<StartQuery>, headers: HeaderMap) -> Response {
    let target = match checked_rd(&app, q.rd.as_deref(), "/login", "sign out to") {
        Ok(u) => u,
        Err(page) => return *page,
    };
    let session = crate::web::browser::cookie(&headers, crate::web::browser::SESSION_COOKIE);
    let from_us = headers.get("sec-fetch-site").is_some() && crate::login::request_site(&app, &headers) == crate::login::Site::Ours;
    match session {
        Some(id) if !from_us => confirm_sign_out(&app, id, q.rd.as_deref().map(|_| target.as_str())),
        _ => signed_out(&app, &headers, &target).await,
    }
}

/// `POST /oauth2/sign_out?rd=`: as the GET, refused (403) when another site asks.
pub async fn sign_out_post(State(app): State<AppState>, Query(q): Query<StartQuery>, headers: HeaderMap, body: Bytes) -> Response {
    let target = match checked_rd(&app, q.rd.as_deref(), "/login", "sign out to") {
        Ok(u) => u,
        Err(page) => return *page,
    };
    if let Some(refusal) = crate::login::sign_out_refusal(&app, &headers, &body) {
        return refusal;
    }
    signed_out(&app, &headers, &target).await
}

async fn signed_out(app: &AppState, headers: &HeaderMap, target: &str) -> Response {
    if let Some(id) = crate::web::browser::cookie(headers, crate::web::browser::SESSION_COOKIE) {
        app.ingress.forget(id);
    }
    let mut resp = crate::login::end_session(app, headers).await;
    if resp.status().is_redirection() {
        if let Ok(v) = HeaderValue::from_str(target) {
            resp.headers_mut().insert(header::LOCATION, v);
        }
    }
    resp
}

/// "Sign out?": a POST form back to the sign-out, with the session's token. It may post
/// to this gateway only, and the redirect after it to `rd`'s origin.
fn confirm_sign_out(app: &AppState, session_id: &str, rd: Option<&str>) -> Response {
    let action = match rd {
        Some(rd) => format!("/oauth2/sign_out?rd={}", url::form_urlencoded::byte_serialize(rd.as_bytes()).collect::<String>()),
        None => "/oauth2/sign_out".to_string(),
    };
    let body = format!(
        "<h1>Sign out?</h1><p>A page asked to sign you out of {host}. Sign out only if you meant to.</p>\
<form method=\"post\" action=\"{action}\"><input type=\"hidden\" name=\"csrf\" value=\"{token}\"><button type=\"submit\">Sign out</button></form>",
        host = page::esc(app.config.public_url.host_str().unwrap_or("this service")),
        action = page::esc(&action),
        token = crate::login::sign_out_token(session_id),
    );
    let targets: Vec<String> = rd.and_then(|r| Url::parse(r).ok()).map(|u| u.origin().ascii_serialization()).into_iter().collect();
    page::with_csp(axum::response::Html(page::layout("Sign out?", &body)).into_response(), None, &targets)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs.iter().map(|(k, v)| (HeaderName::from_static(k), HeaderValue::from_static(v))).collect()
    }

    #[test]
    fn original_url_as_each_proxy_sends_it() {
        // ingress-nginx / nginx: X-Original-URL wins over everything else.
        let h = headers(&[("x-original-url", "https://app.example.com/a?b=1"), ("x-forwarded-host", "other.example.com"), ("x-forwarded-uri", "/x")]);
        assert_eq!(original_url(&h, None).as_deref(), Some("https://app.example.com/a?b=1"));
        // Traefik forwardAuth; chained proxies append, the first value is the browser's.
        let h = headers(&[("x-forwarded-proto", "https, http"), ("x-forwarded-host", "app.example.com, proxy.internal"), ("x-forwarded-uri", "/p?q=1")]);
        assert_eq!(original_url(&h, None).as_deref(), Some("https://app.example.com/p?q=1"));
        let h = headers(&[("x-forwarded-host", "app.example.com"), ("x-forwarded-uri", "/p")]);
        assert_eq!(original_url(&h, None).as_deref(), Some("https://app.example.com/p"), "https unless told otherwise");
        // Envoy ext_authz: Host and the path after the prefix.
        let h = headers(&[("host", "app.example.com"), ("x-forwarded-proto", "http")]);
        assert_eq!(original_url(&h, Some("/p?q")).as_deref(), Some("http://app.example.com/p?q"));
        assert_eq!(original_url(&h, None), None, "Host alone says nothing on /auth");
        assert_eq!(original_url(&headers(&[]), None), None);
    }

    #[test]
    fn logged_urls_lose_their_query() {
        assert_eq!(loggable("https://a.example/p?code=secret"), "https://a.example/p");
        assert_eq!(loggable("https://a.example/p#frag"), "https://a.example/p");
        assert_eq!(loggable(&"x".repeat(2000)).len(), 512);
    }

    #[test]
    fn rules_compare_lowercased_and_trust_only_verified_emails() {
        let mut s = Session {
            id: "sid".into(),
            user_id: "usr_1".into(),
            connection_id: "con_A".into(),
            username: "alice".into(),
            email: Some("Alice@Example.com".into()),
            email_verified: true,
            name: None,
            groups: vec!["Engineers".into()],
            created_at: 0,
            expires_at: 10,
            idle_timeout_ms: 10,
            last_seen: 0,
            profile: Default::default(),
            upstream_token: None,
            auth_time: None,
        };
        let some = |x: &str| (!x.is_empty()).then(|| x.to_string());
        let q = |g: &str, e: &str, c: &str| AuthQuery { allowed_groups: some(g), allowed_emails: some(e), allowed_connections: some(c), ..Default::default() };
        assert!(allows(&s, &q("admins, ENGINEERS", "alice@example.com", "con_a")));
        assert!(allows(&s, &q("", "", "")));
        assert!(!allows(&s, &q("admins", "", "")));
        assert!(!allows(&s, &q("", "bob@example.com", "")));
        assert!(!allows(&s, &q("", "", "con_b")));
        let mut h = HeaderMap::new();
        identity_headers(&s, &mut h);
        assert_eq!(h["x-auth-request-groups"], "Engineers");
        // A legacy group named with a comma is left out, never split into two.
        let legacy = Session { groups: vec!["Eng,admins".into(), "Engineers".into()], ..s.clone() };
        let mut h = HeaderMap::new();
        identity_headers(&legacy, &mut h);
        assert_eq!(h["x-auth-request-groups"], "Engineers");
        assert_eq!(h["x-auth-request-email"], "Alice@Example.com");
        s.email_verified = false;
        assert!(!allows(&s, &q("", "alice@example.com", "")));
    }

    #[test]
    fn email_domains_match_as_oauth2_proxy_reads_them() {
        for (email, rule, want) in [
            ("a@example.com", "example.com", true),
            ("a@EXAMPLE.com", "example.COM", true),
            ("a@sub.example.com", "example.com", false),
            ("a@sub.example.com", ".example.com", true),
            ("a@sub.example.com", "*.example.com", true),
            ("a@example.com", ".example.com", false),
            ("a@badexample.com", ".example.com", false),
            ("a@badexample.com", "example.com", false),
            ("a@x.example.com.evil.test", ".example.com", false),
            ("a@anything.test", "*", true),
            ("a@", "*", false),
            ("@example.com", "example.com", false),
            ("no-at-sign", "*", false),
            ("a@b@example.com", "example.com", true),
            ("a@\u{212A}.example.com", ".example.com", true),
            ("a@ex\u{212A}mple.com", "example.com", false),
            ("a@example.com", ".", false),
            ("a@example.com", "*.", false),
        ] {
            assert_eq!(email_in_domain(email, rule), want, "{email} {rule}");
        }
    }

    #[test]
    fn the_query_is_read_strictly() {
        let ok = AuthQuery::parse(Some("allowed_groups=a,%20b&redirect=1&allowed_emails=x%40y.test")).unwrap();
        assert_eq!(ok.allowed_groups.as_deref(), Some("a, b"));
        assert_eq!(ok.allowed_emails.as_deref(), Some("x@y.test"));
        assert!(AuthQuery::parse(None).unwrap().allowed_groups.is_none());
        for (query, names) in [
            ("allowed-groups=admins", "unknown parameter `allowed-groups`"),
            ("ALLOWED_GROUPS=admins", "unknown parameter `ALLOWED_GROUPS`"),
            ("allowed_group=admins", "unknown parameter `allowed_group`"),
            ("allowed_groups=", "`allowed_groups` is empty"),
            ("allowed_emails=%20,%20", "`allowed_emails` is empty"),
            ("allowed_groups=a&allowed%5Fgroups=b", "`allowed_groups` is given twice"),
            ("x%0A%1B=1", "unknown parameter `x\\n\\u{1b}`"),
        ] {
            let err = AuthQuery::parse(Some(query)).unwrap_err();
            assert!(err.contains(names), "{query}: {err}");
        }
    }

    #[test]
    fn unicode_rules_compare_as_whole_strings() {
        let s = Session {
            id: "sid".into(),
            user_id: "usr_1".into(),
            connection_id: "con_a".into(),
            username: "a".into(),
            email: None,
            email_verified: false,
            name: None,
            groups: vec!["ΟΔΟΣ".into(), "Ärzte".into(), "Kube-Admins".into()],
            created_at: 0,
            expires_at: 10,
            idle_timeout_ms: 10,
            last_seen: 0,
            profile: Default::default(),
            upstream_token: None,
            auth_time: None,
        };
        let q = |g: &str| AuthQuery { allowed_groups: Some(g.into()), ..Default::default() };
        // ASCII letters without case; anything else exactly (SECURITY.md: distinct strings
        // never merge, and Unicode case mapping merges some: the Kelvin sign is not a `k`).
        assert!(allows(&s, &q("ΟΔΟΣ")));
        assert!(!allows(&s, &q("οδος")));
        assert!(allows(&s, &q("ÄRZTE")));
        assert!(!allows(&s, &q("ärzte")));
        assert!(!allows(&s, &q("arzte")));
        assert!(allows(&s, &q("kube-ADMINS")));
        assert!(!allows(&s, &q("\u{212A}ube-admins")));
    }
}
