//! What the directory, audit, keys and apps pages share: turning the directory's and the
//! API helpers' refusals into console pages, times for people, and the checks every
//! state-changing form goes through.

use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::form::Form;
use super::session::Admin;
use crate::app::AppState;
use crate::directory::DirectoryError;
use crate::web::ApiError;

/// A refusal of the API helpers as a console page: bad input names its fields (422),
/// a conflict says why (409), a backend failure is logged and shown as 503.
pub fn api_refusal(e: ApiError) -> Response {
    if e.status.is_server_error() {
        return super::unavailable(&e.message);
    }
    let mut message = e.message.clone();
    for f in &e.fields {
        message.push_str(&format!(" {}: {}.", f.field, f.message));
    }
    let title = match e.status {
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::CONFLICT => "Not changed",
        _ => "Not saved",
    };
    super::error_page(e.status, title, &format!("{} Nothing was changed.", message.trim()))
}

/// A refusal of the directory as a console page (see [`api_refusal`]).
pub fn directory_refusal(e: DirectoryError) -> Response {
    api_refusal(ApiError::from(e))
}

/// The field problems of a refusal, as sentences for a form's error notice.
pub fn problems(e: &ApiError) -> Vec<String> {
    if e.fields.is_empty() {
        vec![upper_first(&e.message)]
    } else {
        e.fields.iter().map(|f| format!("{}: {}", f.field, f.message)).collect()
    }
}

fn upper_first(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
}

/// The CSRF check of a console form (token and origin): the refusal page, if any.
pub fn refused(app: &AppState, admin: &Admin, headers: &HeaderMap, form: &Form) -> Option<Response> {
    super::csrf::refusal(app, headers, &admin.csrf, form.get("csrf"))
}

/// A time for people: `2026-12-02 04:50 UTC`.
pub fn when(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map(|d| d.format("%Y-%m-%d %H:%M UTC").to_string()).unwrap_or_default()
}

/// A date for people: `2026-12-02`.
pub fn date(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map(|d| d.format("%Y-%m-%d").to_string()).unwrap_or_default()
}

/// A URL query value, encoded.
pub fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// A query parameter a page reads: at most 256 characters, no control characters
/// (a 400 page naming it otherwise); empty is absent.
pub fn param(name: &str, v: Option<&str>) -> Result<Option<String>, Box<Response>> {
    match v.map(str::trim) {
        None | Some("") => Ok(None),
        Some(v) if v.chars().count() > 256 || v.chars().any(char::is_control) => Err(Box::new(super::error_page(
            StatusCode::BAD_REQUEST,
            "Not understood",
            &format!("The {name} filter must be at most 256 characters without control characters."),
        ))),
        Some(v) => Ok(Some(v.to_string())),
    }
}

/// What a sealed notice name is bound to.
const NOTICE: &str = "ssogate console notice";

/// A name for the notice after a redirect (`?done=…&who=`), sealed with the master key:
/// a link cannot make the console say something an admin did not do, and the name of a
/// user or group just removed (which cannot be looked up again) still shows. Every
/// replica opens it.
pub fn sealed_name(app: &AppState, name: &str) -> String {
    enc(&app.cipher.seal(NOTICE, name.as_bytes()))
}

/// The name [`sealed_name`] made, or `default` for anything else (a hand-made link).
pub fn notice_name(app: &AppState, who: Option<&str>, default: &str) -> String {
    who.and_then(|w| app.cipher.open(NOTICE, w).ok()).and_then(|v| String::from_utf8(v).ok()).unwrap_or_else(|| default.to_string())
}
