//! Cross-site request forgery: every state-changing console request must carry the
//! session's token (a hidden `csrf` field) **and** must not say it comes from another
//! origin. Browsers send `Sec-Fetch-Site` and `Origin` with a form POST; when they name
//! anything but this gateway's own origin the request is refused before the token is
//! looked at. Stricter than logout's check: a sibling site (`same-site`, or a host of
//! `ingress.allowed_domains`) is another origin here.

use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use subtle::ConstantTimeEq;

use crate::app::AppState;

/// The refusal (403, saying why) of a request that does not come from this gateway's
/// origin or whose token `sent` is not `expected`; None lets it through.
pub fn refusal(app: &AppState, headers: &HeaderMap, expected: &str, sent: Option<&str>) -> Option<Response> {
    if let Some(why) = foreign(app, headers) {
        tracing::info!(reason = %why, "console request refused: sent from another site");
        return Some(super::error_page(
            StatusCode::FORBIDDEN,
            "Refused",
            &format!("This change was sent from another site ({why}), so it was refused and nothing changed. Make changes from the console's own pages."),
        ));
    }
    let sent = sent.unwrap_or("");
    if expected.is_empty() || sent.is_empty() || !bool::from(sent.as_bytes().ct_eq(expected.as_bytes())) {
        tracing::info!("console request refused: missing or wrong form token");
        return Some(super::error_page(
            StatusCode::FORBIDDEN,
            "Refused",
            "This form is not from your current console session (it may be from an older page, or from another site), so nothing changed. Reload the page and try again.",
        ));
    }
    None
}

/// What names another origin than ours, if anything does.
fn foreign(app: &AppState, headers: &HeaderMap) -> Option<String> {
    let shown = |v: &str| v.chars().take(100).flat_map(char::escape_default).collect::<String>();
    let fetch_site = headers.get("sec-fetch-site").map(|v| v.to_str().unwrap_or("(not ASCII)"));
    // `none`: typed in or bookmarked, which a POST form never is, but harmless.
    if let Some(v) = fetch_site.filter(|v| !matches!(*v, "same-origin" | "none")) {
        return Some(format!("Sec-Fetch-Site: {}", shown(v)));
    }
    if let Some(v) = headers.get("origin") {
        let v = v.to_str().unwrap_or("(not ASCII)");
        // Our pages send `Referrer-Policy: no-referrer`, under which a browser sends
        // `Origin: null` even for a same-origin form: then `Sec-Fetch-Site`, which pages
        // cannot forge, must vouch for it.
        let vouched = v == "null" && fetch_site == Some("same-origin");
        if v != app.config.public_url.origin().ascii_serialization() && !vouched {
            return Some(format!("Origin: {}", shown(v)));
        }
    }
    None
}
