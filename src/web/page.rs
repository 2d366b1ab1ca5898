//! Server-rendered HTML: the login page, the signed-in page and error pages. Plain
//! HTML that works without JavaScript; every value put into it is escaped.

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

/// The one style sheet, inline in every page and allowed by its hash in the CSP.
const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:28rem;margin:4rem auto;padding:0 1rem;color:#222}\
a.button{display:block;padding:.8rem 1rem;margin:.5rem 0;border:1px solid #bbb;border-radius:.4rem;text-decoration:none;color:#222}\
a.button:hover{background:#f3f3f3}.initial{display:inline-block;width:1.6rem;height:1.6rem;line-height:1.6rem;text-align:center;border-radius:50%;background:#335;color:#fff;margin-right:.6rem}\
.error{border-left:4px solid #b00;padding:.5rem 1rem;background:#fff4f4}.muted{color:#666;font-size:.85rem}";

/// A whole page around `body`.
pub fn layout(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{t}</title><style>{STYLE}</style></head><body>{body}</body></html>",
        t = esc(title)
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
    static STYLE_HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let style = STYLE_HASH.get_or_init(|| csp_hash(STYLE));
    let script = script.map(|s| format!("; script-src {}", csp_hash(s))).unwrap_or_default();
    // Origins go in as they were serialized by `url`; anything with a space or `;` would
    // add a directive, so it is left out.
    let targets: String = form_targets.iter().filter(|t| !t.contains([' ', ';', ',', '\'', '"'])).map(|t| format!(" {t}")).collect();
    format!("default-src 'none'; style-src {style}{script}; form-action 'self'{targets}; frame-ancestors 'none'; base-uri 'none'")
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
pub async fn security_headers(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let mut resp = next.run(req).await;
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

/// An error page whose "try again" goes to `retry` (a local path: the same login).
pub fn error_with_retry(status: StatusCode, message: &str, retry: &str) -> Response {
    let id = super::request_id::current().unwrap_or_default();
    let retry = super::redirect::local_path(retry).unwrap_or_else(|| "/login".into());
    let body = format!(
        "<h1>Sign-in failed</h1><p class=\"error\">{}</p><p><a href=\"{}\">Try again</a></p><p class=\"muted\">Request id: {}</p>",
        esc(message),
        esc(&retry),
        esc(&id)
    );
    (status, Html(layout("Sign-in failed", &body))).into_response()
}

#[cfg(test)]
mod tests {
    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(super::esc("<a href=\"x\">'&'</a>"), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
    }
}
