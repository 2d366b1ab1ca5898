//! Ingress auth: `GET /auth` answers nginx `auth_request` / ingress-nginx `auth-url`,
//! Traefik forwardAuth and Envoy ext_authz (200 with `X-Auth-Request-*` headers for a
//! live session, 401 without one, 403 when logged in but not allowed), `GET /start?rd=`
//! starts a login that returns to `rd`, and the redirect validator both use. The
//! oauth2-proxy paths are aliases.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use url::Url;

use crate::login::current_session;
use crate::server::AppState;
use crate::web::page;

/// Whether `host[:port]` matches an allowed-domain entry.
fn host_allowed(host: &str, port: Option<u16>, entry: &str) -> bool {
    let (pattern, want_port) = match entry.rsplit_once(':') {
        Some((h, p)) => match p.parse::<u16>() {
            Ok(p) => (h, Some(p)),
            Err(_) => return false,
        },
        None => (entry, None),
    };
    // A non-default port must be named in the entry; a named port must be the one used.
    if port != want_port {
        return false;
    }
    let pattern = pattern.to_ascii_lowercase();
    match pattern.strip_prefix('.') {
        Some(domain) => host == domain || host.ends_with(&format!(".{domain}")),
        None => host == pattern,
    }
}

/// Validates a return target: a local path, or an http(s) URL on an allowed host.
/// Refuses scheme-relative and backslash tricks, control characters and spaces, user
/// info, other schemes, lookalike suffixes and other ports. Returns the URL to go to.
pub fn validate_redirect(rd: &str, allowed: &[String], public_url: &Url) -> Result<String, &'static str> {
    if rd.is_empty() || rd.len() > 2048 {
        return Err("the return URL is empty or too long");
    }
    if rd.chars().any(|c| c.is_control() || c.is_whitespace() || c == '\\') {
        return Err("the return URL contains spaces, control characters or backslashes");
    }
    if rd.starts_with('/') {
        if rd.starts_with("//") {
            return Err("the return URL is scheme-relative");
        }
        return Ok(rd.to_string());
    }
    let url = Url::parse(rd).map_err(|_| "the return URL is not a URL")?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("the return URL must be http or https");
    }
    // `https:evil.example` parses, but is not how anyone writes a URL: insist on `//`.
    if !rd[url.scheme().len()..].starts_with("://") {
        return Err("the return URL is malformed");
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("the return URL carries a user name or password");
    }
    let host = url.host_str().ok_or("the return URL has no host")?.to_ascii_lowercase();
    let port = url.port();
    let own = public_url.host_str().is_some_and(|h| h.eq_ignore_ascii_case(&host)) && public_url.port() == port;
    if own || allowed.iter().any(|e| host_allowed(&host, port, e.trim())) {
        Ok(url.to_string())
    } else {
        Err("the return URL's host is not one this gateway may send you to")
    }
}

/// `/auth` query: per-route rules, as ingress annotations pass them.
#[derive(Debug, Deserialize, Default)]
pub struct AuthRules {
    allowed_groups: Option<String>,
    allowed_emails: Option<String>,
    allowed_connections: Option<String>,
}

fn list(s: &Option<String>) -> Vec<String> {
    s.as_deref().unwrap_or("").split(',').map(|x| x.trim().to_lowercase()).filter(|x| !x.is_empty()).collect()
}

/// The ingress check. 401: not logged in. 403: logged in but not allowed (never 401,
/// which makes auth_request loop). 503 when the session store cannot answer.
pub async fn forward_auth(State(app): State<AppState>, Query(rules): Query<AuthRules>, headers: HeaderMap) -> Response {
    let Some(id) = crate::login::cookie(&headers, crate::login::SESSION_COOKIE) else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    let session = match app.sessions.touch(id, app.clock.now()).await {
        Ok(Some(s)) => s,
        Ok(None) => return StatusCode::UNAUTHORIZED.into_response(),
        // Fail closed: no answer from the store is never a yes.
        Err(_) => return StatusCode::SERVICE_UNAVAILABLE.into_response(),
    };
    let groups: Vec<String> = session.groups.iter().map(|g| g.to_lowercase()).collect();
    let (want_groups, want_emails, want_conns) = (list(&rules.allowed_groups), list(&rules.allowed_emails), list(&rules.allowed_connections));
    let email = session.email.clone().unwrap_or_default().to_lowercase();
    let allowed = (want_groups.is_empty() || want_groups.iter().any(|g| groups.contains(g)))
        && (want_emails.is_empty() || (session.email_verified && want_emails.contains(&email)))
        && (want_conns.is_empty() || want_conns.contains(&session.connection_id.to_lowercase()));
    if !allowed {
        return StatusCode::FORBIDDEN.into_response();
    }
    let mut resp = StatusCode::OK.into_response();
    let h = resp.headers_mut();
    let mut set = |name: &'static str, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(name, v);
        }
    };
    set("x-auth-request-user", &session.user_id);
    set("x-auth-request-email", session.email.as_deref().unwrap_or(""));
    set("x-auth-request-preferred-username", &session.username);
    set("x-auth-request-groups", &session.groups.join(","));
    resp
}

/// The validated `rd`, or `default` without one; an invalid one is a 400 page saying why.
fn checked_rd(app: &AppState, rd: Option<&str>, default: &str, action: &str) -> Result<String, Box<Response>> {
    match rd {
        None => Ok(default.to_string()),
        Some(rd) => validate_redirect(rd, &app.config.ingress.allowed_domains, &app.config.public_url)
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
    match current_session(&app, &headers).await {
        Some(s) => axum::Json(serde_json::json!({
            "user": s.user_id,
            "email": s.email,
            "preferred_username": s.username,
            "groups": s.groups,
        }))
        .into_response(),
        None => StatusCode::UNAUTHORIZED.into_response(),
    }
}

/// `/oauth2/sign_out?rd=`: ends the session everywhere this cookie reaches, then goes
/// to a validated `rd` (or the login page). An invalid `rd` is refused before anything ends.
pub async fn sign_out(State(app): State<AppState>, Query(q): Query<StartQuery>, headers: HeaderMap) -> Response {
    let target = match checked_rd(&app, q.rd.as_deref(), "/login", "sign out to") {
        Ok(u) => u,
        Err(page) => return *page,
    };
    let mut resp = crate::login::logout(State(app), headers).await;
    if let Ok(v) = HeaderValue::from_str(&target) {
        resp.headers_mut().insert(axum::http::header::LOCATION, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_table() {
        let public = Url::parse("https://sso.example.com").unwrap();
        let allowed = vec!["app.example.com".to_string(), ".corp.example".to_string(), "tools.example.com:8443".to_string()];
        let ok = [
            "/",
            "/path?q=1",
            "https://app.example.com/x",
            "http://app.example.com",
            "https://corp.example/",
            "https://a.b.corp.example/x",
            "https://tools.example.com:8443/",
            "https://sso.example.com/after",
        ];
        for rd in ok {
            assert!(validate_redirect(rd, &allowed, &public).is_ok(), "{rd} should pass");
        }
        let bad = [
            "//evil.example",
            "/\\evil.example",
            "\\/evil.example",
            "/\tx",
            "https://app.example.com/\nx",
            "https://app.example.com\r/x",
            "https:evil.example",
            "https:/evil.example",
            "https://app.example.com@evil.example/",
            "https://user:pw@app.example.com/",
            "https://app.example.com.evil.example/",
            "https://evilcorp.example/",
            "https://app.example.com:444/",
            "https://tools.example.com/",
            "javascript:alert(1)",
            "ftp://app.example.com/",
            "data:text/html,x",
            "https://evil.example/",
            "",
            "https://app.example.com /x",
        ];
        for rd in bad {
            assert!(validate_redirect(rd, &allowed, &public).is_err(), "{rd:?} should be refused");
        }
    }
}
