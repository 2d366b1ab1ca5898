//! Server-rendered HTML: the login page, the signed-in page and error pages. Plain
//! HTML that works without JavaScript; every value put into it is escaped.
//!
//! Every page carries the configured branding (`[branding]`: product name, logo, accent
//! colour), read from the gateway answering the request: [`security_headers`] keeps it
//! for the request, so that error pages made far from any handler state are branded too.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};

/// Escapes text for HTML element content and quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The one style sheet of the end-user pages, inline in every page and allowed by its hash
/// in the CSP. `--accent` is the configured colour ([`crate::config::BrandingConfig`]),
/// appended as the last rule.
const STYLE: &str = ":root{--accent:#4338ca;--text:#1d2330;--muted:#5d6676;--border:#dde1e7;--bg:#f5f6f8}\
*,*::before,*::after{box-sizing:border-box}\
body{margin:0;min-height:100vh;display:flex;align-items:center;justify-content:center;padding:2rem 1rem;background:var(--bg);color:var(--text);font:15px/1.5 system-ui,-apple-system,\"Segoe UI\",Roboto,Arial,sans-serif}\
main{width:100%;max-width:26rem}\
.brand{display:flex;align-items:center;justify-content:center;gap:.6rem;font-weight:700;font-size:1.15rem;margin:0 0 1.25rem}\
.brand img{max-height:40px;max-width:12rem}\
.mark{width:30px;height:30px;border-radius:8px;background:var(--accent);position:relative;display:inline-block}\
.mark::after{content:\"\";position:absolute;inset:8px;border:2.5px solid #fff;border-radius:50%}\
.card{background:#fff;border:1px solid var(--border);border-radius:12px;box-shadow:0 1px 3px rgba(16,24,40,.08);padding:2rem}\
h1{font-size:1.35rem;margin:0 0 .35rem}\
p{margin:0 0 .9rem}\
.app{color:var(--muted);margin-bottom:1.25rem}\
.app strong{color:var(--text)}\
a{color:var(--accent)}\
a.button,button{display:flex;align-items:center;gap:.75rem;width:100%;padding:.7rem .9rem;margin:.55rem 0;border:1px solid #c5cbd4;border-radius:8px;background:#fff;color:var(--text);font:inherit;font-weight:600;text-decoration:none;cursor:pointer}\
a.button:hover,button:hover{border-color:var(--accent);box-shadow:inset 0 0 0 1px var(--accent)}\
a.button:focus-visible,button:focus-visible,a:focus-visible{outline:3px solid var(--accent);outline-offset:2px}\
a.button img{width:28px;height:28px;flex:none}\
a.primary,button.primary{justify-content:center;background:var(--accent);border-color:var(--accent);color:#fff}\
a.primary:hover{box-shadow:none;filter:brightness(.92)}\
.initial{display:inline-flex;width:28px;height:28px;align-items:center;justify-content:center;border-radius:8px;background:var(--accent);color:#fff}\
.error{border-left:4px solid #b42318;padding:.6rem 1rem;background:#fef3f2;border-radius:4px;color:#912018}\
.muted{color:var(--muted);font-size:.85rem}\
.links{display:flex;flex-direction:column;gap:.25rem;margin-top:1rem}\
@media (max-width:480px){body{padding:1.25rem .75rem;align-items:flex-start}.card{padding:1.4rem}}";

tokio::task_local! {
    /// The gateway answering this request (for its branding), set by [`security_headers`].
    static APP: crate::app::AppState;
}

/// The branding of the gateway answering now (the defaults outside a request).
pub fn branding() -> crate::config::BrandingConfig {
    APP.try_with(|app| app.config.branding.clone()).unwrap_or_default()
}

/// The page style with the configured accent colour (validated at start: `#` and hex).
fn style() -> String {
    let accent = branding().accent_color;
    let accent = if crate::config::is_colour(&accent) { accent } else { "#4338ca".into() };
    format!("{STYLE}:root{{--accent:{accent}}}")
}

/// A whole page around `body`: the product's name and logo above it, in a card.
pub fn layout(title: &str, body: &str) -> String {
    let b = branding();
    let logo = match b.logo_url.as_deref().filter(|l| crate::config::logo_source(l).is_ok()) {
        Some(l) => format!("<img src=\"{}\" alt=\"\">", esc(l)),
        None => "<span class=\"mark\" aria-hidden=\"true\"></span>".into(),
    };
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{t} · {p}</title><style>{style}</style></head><body><main><div class=\"brand\">{logo}<span>{p}</span></div><div class=\"card\">{body}</div></main></body></html>",
        t = esc(title),
        p = esc(&b.product_name),
        style = style()
    )
}

/// `'sha256-…'` of an inline style or script, as a CSP source.
fn csp_hash(text: &str) -> String {
    use base64::Engine;
    use sha2::Digest;
    format!("'sha256-{}'", base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(text.as_bytes())))
}

/// The Content-Security-Policy of a page: nothing but our own style (by hash), the
/// inline `script` when given (by hash), forms that post to this gateway and to the
/// `form_targets` origins only (a SAML IdP; where a sign-out goes next), never framed,
/// no `<base>`.
pub fn csp(script: Option<&str>, form_targets: &[String]) -> String {
    let style = csp_hash(&style());
    // Images: ours (provider logos) and the configured logo's origin.
    let logo = branding().logo_url.as_deref().and_then(|l| crate::config::logo_source(l).ok().flatten()).map(|o| format!(" {o}")).unwrap_or_default();
    let script = script.map(|s| format!("; script-src {}", csp_hash(s))).unwrap_or_default();
    // Origins go in as they were serialized by `url`; anything with a space or `;` would
    // add a directive, so it is left out.
    let targets: String = form_targets.iter().filter(|t| !t.contains([' ', ';', ',', '\'', '"'])).map(|t| format!(" {t}")).collect();
    format!("default-src 'none'; style-src {style}{script}; img-src 'self'{logo}; form-action 'self'{targets}; frame-ancestors 'none'; base-uri 'none'")
}

/// Puts a page's own CSP on `resp` ([`security_headers`] adds the default one otherwise).
pub fn with_csp(mut resp: Response, script: Option<&str>, form_targets: &[String]) -> Response {
    if let Ok(v) = HeaderValue::from_str(&csp(script, form_targets)) {
        resp.headers_mut().insert(header::CONTENT_SECURITY_POLICY, v);
    }
    resp
}

/// Middleware: every HTML answer gets a CSP (the default one unless the page set its
/// own), `nosniff`, no referrer (our URLs can carry codes and return targets), and is
/// never cached (pages show who is signed in and carry tokens).
pub async fn security_headers(
    axum::extract::State(app): axum::extract::State<crate::app::AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    APP.scope(app, async move {
        let resp = next.run(req).await;
        headers(resp)
    })
    .await
}

fn headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    if !h.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("text/html")) {
        return resp;
    }
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        if let Ok(v) = HeaderValue::from_str(&csp(None, &[])) {
            h.insert(header::CONTENT_SECURITY_POLICY, v);
        }
    }
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// An error page: what happened, what to do, and the request id to quote.
pub fn error(status: StatusCode, message: &str) -> Response {
    error_with_retry(status, message, "/login")
}

/// The sign-in error page (`failed.html`).
#[derive(askama::Template)]
#[template(path = "failed.html")]
pub struct Failed {
    /// What happened and what to do.
    pub message: String,
    /// "Try again": the same login (the same connection, return target and app).
    pub retry: String,
    /// "Choose another way": the login page for the same return target, when the retry
    /// goes straight to one connection.
    pub other: Option<String>,
    /// To quote.
    pub request_id: String,
}

/// The login page that offers every connection for the same return target as `retry`
/// (`/login/{id}?return_to=X` gives `/login?return_to=X`).
fn login_page_for(retry: &str) -> Option<String> {
    let rest = retry.strip_prefix("/login/")?;
    let query = rest.split_once('?').map(|(_, q)| q).unwrap_or("");
    let back = url::form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == "return_to").map(|(_, v)| v.into_owned());
    Some(match back {
        Some(b) => format!("/login?return_to={}", url::form_urlencoded::byte_serialize(b.as_bytes()).collect::<String>()),
        None => "/login".into(),
    })
}

/// An error page whose "try again" goes to `retry` (a local path: the same login), and
/// which offers the login page for the same return target besides.
pub fn error_with_retry(status: StatusCode, message: &str, retry: &str) -> Response {
    use askama::Template;
    let request_id = super::request_id::current().unwrap_or_default();
    let retry = super::redirect::local_path(retry).unwrap_or_else(|| "/login".into());
    let other = login_page_for(&retry).filter(|o| *o != retry);
    let view = Failed { message: message.to_string(), retry, other, request_id };
    let body = view.render().unwrap_or_else(|e| {
        tracing::error!(error = %e, "error page template failed");
        format!("<h1>Sign-in failed</h1><p class=\"error\">{}</p>", esc(message))
    });
    (status, Html(layout("Sign-in failed", &body))).into_response()
}

/// The login page's body (`login.html`).
#[derive(askama::Template)]
#[template(path = "login.html")]
pub struct LoginPage {
    /// The downstream app the login comes from ("Signing in to …").
    pub app_name: Option<String>,
    /// One per active connection.
    pub buttons: Vec<LoginButton>,
}

/// A "Sign in with …" button.
pub struct LoginButton {
    /// The login start (with the return target).
    pub href: String,
    /// The provider preset (for the logo, and `data-provider`).
    pub provider: String,
    /// The provider's logo.
    pub logo: String,
    /// The connection's display name.
    pub name: String,
}

/// The login page around its body.
pub fn login(view: &LoginPage) -> Response {
    use askama::Template;
    match view.render() {
        Ok(body) => Html(layout("Sign in", &body)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "login page template failed");
            error(StatusCode::INTERNAL_SERVER_ERROR, "The sign-in page could not be shown.")
        }
    }
}

/// The downstream app a login's return target belongs to: `/authorize?…client_id=X…`
/// names the client X, whose registered name is shown ("Signing in to X").
pub fn authorize_client(return_to: &str) -> Option<String> {
    let query = return_to.strip_prefix("/authorize?")?;
    url::form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == "client_id").map(|(_, v)| v.into_owned()).filter(|c| !c.is_empty() && c.len() <= 256)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_app_of_a_login_is_read_from_its_authorize_return_target() {
        assert_eq!(super::authorize_client("/authorize?response_type=code&client_id=app%201&scope=openid").as_deref(), Some("app 1"));
        assert_eq!(super::authorize_client("/console/enter"), None);
        assert_eq!(super::authorize_client("/authorize?client_id="), None);
    }

    #[test]
    fn try_again_offers_the_login_page_for_the_same_return_target() {
        assert_eq!(
            super::login_page_for("/login/con_a?return_to=%2Fauthorize%3Fclient_id%3Dx").as_deref(),
            Some("/login?return_to=%2Fauthorize%3Fclient_id%3Dx")
        );
        assert_eq!(super::login_page_for("/login/con_a").as_deref(), Some("/login"));
        assert_eq!(super::login_page_for("/login?return_to=%2F"), None);
    }

    #[test]
    fn branding_colours_and_logos_are_checked() {
        use crate::config::{is_colour, logo_source};
        for good in ["#fff", "#4338CA", "#0a0b0c"] {
            assert!(is_colour(good), "{good}");
        }
        for bad in ["", "fff", "#ffff", "#ggg", "red", "#fff;x", "#fff}body{", "#12345"] {
            assert!(!is_colour(bad), "{bad}");
        }
        assert_eq!(logo_source("https://cdn.example.com/logo.svg").unwrap().as_deref(), Some("https://cdn.example.com"));
        assert_eq!(logo_source("/static/logo.png").unwrap(), None);
        assert!(logo_source("http://localhost:8080/l.png").is_ok());
        for bad in [
            "http://cdn.example.com/l.png",
            "//evil.example/l.png",
            "javascript:alert(1)",
            "data:image/png;base64,AAAA",
            "https://u:p@cdn.example/l.png",
            "https://cdn.example/l.png' ; script-src *",
            "https://cdn.example/a b.png",
            "ftp://cdn.example/l.png",
        ] {
            assert!(logo_source(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(super::esc("<a href=\"x\">'&'</a>"), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
    }
}
