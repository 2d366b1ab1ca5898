//! The admin console under `/console`: server-rendered pages for the people who run the
//! gateway. Members of the built-in `Admins` group sign in through any active
//! connection (the normal login, then [`session`] checks the directory); the admin token
//! is the break-glass way in. Every change goes through the same [`crate::connection::Registry`]
//! as the admin API and is audited under the console session's identity.
//!
//! - [`session`]: console sessions (their own cookie and state entries), sign-in, sign-out,
//!   and the [`session::Admin`] extractor that every page takes.
//! - [`csrf`]: the per-session token and the origin check on every state-changing request.
//! - [`form`]: reading url-encoded and multipart (file upload) form bodies.
//! - [`views`]: the askama templates' view structs (templates in `src/console/templates`).
//! - [`connections`]: the Identity Providers pages.
//! - [`assets`]: the one style sheet, the one script and the provider logos, from the binary.
//! - [`users`], [`groups`]: Users & Groups (invite, disable, remove; groups with members
//!   picked by type-ahead, the source of each membership).
//! - [`audit`], [`keys`], [`apps`]: the audit log with filters, signing keys with
//!   rotation, the downstream apps (OpenID Provider clients).
//! - [`common`]: what those pages share (refusal pages, times, the form check).
//!
//! Pages work without JavaScript; the script only adds copy buttons. Every console answer
//! carries a strict Content-Security-Policy (no inline script or style), is never framed,
//! and is never cached.

pub mod apps;
pub mod assets;
pub mod audit;
pub mod common;
pub mod connections;
pub mod csrf;
pub mod form;
pub mod groups;
pub mod keys;
pub mod session;
pub mod users;
pub mod views;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::app::AppState;

/// The console's Content-Security-Policy: only our own style sheet, script and images, and
/// the script's one request (the members type-ahead's search) to this origin.
pub const CSP: &str =
    "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Every console route.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/console", get(session::home))
        .route("/console/", get(session::home))
        .route("/console/sign-in", post(session::sign_in_with_token))
        .route("/console/enter", get(session::enter))
        .route("/console/sign-out", post(session::sign_out))
        .route("/console/connections", get(connections::list).post(connections::create))
        .route("/console/connections/new", get(connections::choose))
        .route("/console/connections/new/{protocol}/{provider}", get(connections::new_form))
        .route("/console/connections/{id}", get(connections::edit).post(connections::update))
        .route("/console/connections/{id}/active", post(connections::set_active))
        .route("/console/connections/{id}/test", post(connections::test_saved))
        .route("/console/connections/{id}/delete", get(connections::confirm_delete).post(connections::delete))
        .route("/console/connections/{id}/sp-keypair", post(connections::generate_keypair))
        .route("/console/connections/{id}/sp-certificate", get(connections::sp_certificate))
        .route("/console/users", get(users::list))
        .route("/console/users/search", get(users::search))
        .route("/console/users/invite", get(users::invite_form).post(users::invite))
        .route("/console/users/{id}/status", post(users::set_status))
        .route("/console/users/{id}/remove", get(users::confirm_remove).post(users::remove))
        .route("/console/groups", get(groups::list).post(groups::create))
        .route("/console/groups/new", get(groups::new_form))
        .route("/console/groups/{id}", get(groups::show).post(groups::update))
        .route("/console/groups/{id}/members", post(groups::add_members))
        .route("/console/groups/{id}/members/{user_id}/remove", post(groups::remove_member))
        .route("/console/groups/{id}/delete", get(groups::confirm_delete).post(groups::delete))
        .route("/console/audit", get(audit::list))
        .route("/console/keys", get(keys::list))
        .route("/console/keys/rotate", post(keys::rotate))
        .route("/console/apps", get(apps::list).post(apps::create))
        .route("/console/apps/new", get(apps::new_form))
        .route("/console/apps/{id}/delete", get(apps::confirm_delete).post(apps::delete))
        .route("/console/assets/console.css", get(assets::css))
        .route("/console/assets/console.js", get(assets::js))
        .route("/console/assets/logos/{file}", get(assets::logo))
        .route("/console/{*rest}", get(not_found))
        .layer(axum::middleware::from_fn(headers))
}

/// Middleware: the console's own security headers on every answer (pages, assets and
/// redirects alike).
async fn headers(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    // Console URLs name connections; nothing of them goes to another site.
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

/// Renders a template as an HTML answer; a template failure is logged, never shown.
pub fn render(status: StatusCode, t: &impl askama::Template) -> Response {
    match t.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "console template failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

/// A console error page (signed in or not): what happened, what to do, the request id.
pub fn error_page(status: StatusCode, title: &str, message: &str) -> Response {
    let view = views::ErrorPage { title: title.to_string(), message: message.to_string(), request_id: crate::web::request_id::current().unwrap_or_default() };
    render(status, &view)
}

/// The state store or database did not answer: 503, logged.
pub fn unavailable(cause: &dyn std::fmt::Display) -> Response {
    tracing::error!(error = %cause, "console: a backend did not answer");
    error_page(StatusCode::SERVICE_UNAVAILABLE, "Unavailable", "The console cannot reach its storage right now. Try again shortly.")
}

async fn not_found() -> Response {
    error_page(StatusCode::NOT_FOUND, "Not found", "There is no such console page.")
}
