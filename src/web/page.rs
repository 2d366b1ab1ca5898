//! Server-rendered HTML: the login page, the signed-in page and error pages. Plain
//! HTML that works without JavaScript; every value put into it is escaped.

use axum::http::StatusCode;
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

/// A whole page around `body`.
pub fn layout(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{t}</title><style>body{{font-family:system-ui,sans-serif;max-width:28rem;margin:4rem auto;padding:0 1rem;color:#222}}\
a.button{{display:block;padding:.8rem 1rem;margin:.5rem 0;border:1px solid #bbb;border-radius:.4rem;text-decoration:none;color:#222}}\
a.button:hover{{background:#f3f3f3}}.initial{{display:inline-block;width:1.6rem;height:1.6rem;line-height:1.6rem;text-align:center;border-radius:50%;background:#335;color:#fff;margin-right:.6rem}}\
.error{{border-left:4px solid #b00;padding:.5rem 1rem;background:#fff4f4}}.muted{{color:#666;font-size:.85rem}}</style></head>\
<body>{body}</body></html>",
        t = esc(title)
    )
}

/// An error page: what happened, what to do, and the request id to quote.
pub fn error(status: StatusCode, message: &str) -> Response {
    let id = super::request_id::current().unwrap_or_default();
    let body = format!(
        "<h1>Sign-in failed</h1><p class=\"error\">{}</p><p><a href=\"/login\">Back to sign-in</a></p><p class=\"muted\">Request id: {}</p>",
        esc(message),
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
