//! Console sessions: who is signed in to the console, until when.
//!
//! A console session is its own cookie (`ssogate_console`, `__Host-` prefixed over
//! https) naming an entry in the [`crate::state::Ephemeral`] store (in memory, or sealed
//! in Redis for several replicas), keyed by the SHA-256 of the cookie. It holds the
//! identity (a user, or "admin token"), the CSRF token and an expiry. It is made in one
//! of two ways:
//! - a member of `Admins` signs in through any active connection with the normal login,
//!   which returns to `/console/enter`; that checks the directory and makes the console
//!   session from the login session;
//! - the admin token is posted to `/console/sign-in` (break-glass; never in a URL).
//!
//! Decision: a user's console session is re-checked on **every** console request, in two
//! ways: its login session must still be live (logout, expiry, the connection turned off
//! or the user removed end it), and the directory must still have the user, not disabled,
//! in `Admins` (read from the store, not from the session's cached groups, so a removed
//! membership binds at the next click). An app's `allowed_groups` or any other group never
//! grants the console. A token session ends when the admin token is changed.

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::form::Form;
use super::views;
use crate::app::AppState;
use crate::clock::Millis;
use crate::store::UserStatus;

/// The console session cookie over plain http (a local trial).
pub const COOKIE: &str = "ssogate_console";
/// Over https: a cookie only this very host can set (no sibling subdomain can plant one).
pub const SECURE_COOKIE: &str = "__Host-ssogate_console";
/// The sign-in form's double-submit cookie (the token form has no session yet).
const SIGN_IN_COOKIE: &str = "ssogate_console_signin";
/// The id of the built-in `Admins` group: the only group that grants the console.
pub const ADMINS_GROUP: &str = "grp_admins";
/// How long a break-glass (admin token) session lasts.
const TOKEN_SESSION_MS: Millis = 60 * 60 * 1000;

/// Who a console session belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Identity {
    /// A member of `Admins` who signed in through a connection.
    User {
        /// The user's id.
        user_id: String,
        /// The user's email, when known.
        email: Option<String>,
        /// Username, to show.
        username: String,
    },
    /// Whoever holds the admin token.
    AdminToken,
}

impl Identity {
    /// The audit log's actor: `usr_… (email)`, or `admin token`.
    pub fn actor(&self) -> String {
        match self {
            Identity::User { user_id, email: Some(e), .. } => format!("{user_id} ({e})"),
            Identity::User { user_id, email: None, .. } => user_id.clone(),
            Identity::AdminToken => "admin token".into(),
        }
    }

    /// What the page header shows.
    pub fn label(&self) -> String {
        match self {
            Identity::User { email: Some(e), .. } => e.clone(),
            Identity::User { username, .. } => username.clone(),
            Identity::AdminToken => "Admin token".into(),
        }
    }
}

/// What the state store keeps for a console session.
#[derive(Clone, Serialize, Deserialize)]
struct Record {
    identity: Identity,
    /// The form token of this session.
    csrf: String,
    expires_at: Millis,
    /// The login session it was made from (users): the console ends with it.
    login_session: Option<String>,
    /// SHA-256 (hex) of the admin token it was made with (token sessions): a new token ends it.
    token_sha256: Option<String>,
}

/// A signed-in console admin: every console page takes one.
#[derive(Debug, Clone)]
pub struct Admin {
    /// Who.
    pub identity: Identity,
    /// The session's CSRF token, for forms.
    pub csrf: String,
}

fn cookie_name(app: &AppState) -> &'static str {
    if app.config.secure_cookies() {
        SECURE_COOKIE
    } else {
        COOKIE
    }
}

fn state_key(cookie: &str) -> String {
    format!("console:{}", hex::encode(Sha256::digest(cookie.as_bytes())))
}

fn cookie_header(app: &AppState, name: &str, value: &str, max_age_s: i64, path: &str) -> HeaderValue {
    let secure = if app.config.secure_cookies() { "; Secure" } else { "" };
    HeaderValue::from_str(&format!("{name}={value}; Path={path}; HttpOnly; SameSite=Lax; Max-Age={}{secure}", max_age_s.max(0)))
        .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Why no admin could be read from a request.
enum Missing {
    /// Not signed in (no cookie, expired, ended).
    SignedOut,
    /// Signed in as someone who is no longer an admin.
    NotAdmin(String),
    /// A backend failed: the answer to give.
    Failed(Response),
}

async fn load(app: &AppState, headers: &HeaderMap) -> Result<Admin, Missing> {
    let Some(cookie) = crate::web::cookie::find(headers, cookie_name(app)).filter(|c| !c.is_empty()) else {
        return Err(Missing::SignedOut);
    };
    let key = state_key(cookie);
    let stored = app.ephemeral.get(&key).await.map_err(|e| Missing::Failed(super::unavailable(&e)))?;
    let Some(record) = stored.and_then(|s| serde_json::from_str::<Record>(&s).ok()) else {
        return Err(Missing::SignedOut);
    };
    let now = app.clock.now();
    let end = || async {
        let _ = app.ephemeral.take(&key).await;
    };
    if now >= record.expires_at {
        end().await;
        return Err(Missing::SignedOut);
    }
    match &record.identity {
        Identity::AdminToken => {
            let current = match app.admin_token.current(app.store.as_ref()).await {
                Ok(h) => hex::encode(h),
                Err(e) => return Err(Missing::Failed(super::unavailable(&e))),
            };
            if !record.token_sha256.as_deref().is_some_and(|t| bool::from(t.as_bytes().ct_eq(current.as_bytes()))) {
                end().await;
                return Err(Missing::SignedOut);
            }
        }
        Identity::User { user_id, .. } => {
            let login = match &record.login_session {
                Some(id) => app.sessions.touch(id, now).await.map_err(|e| Missing::Failed(super::unavailable(&e)))?,
                None => None,
            };
            if login.is_none_or(|s| s.user_id != *user_id) {
                end().await;
                return Err(Missing::SignedOut);
            }
            if let Some(why) = not_admin(app, user_id).await.map_err(Missing::Failed)? {
                end().await;
                return Err(Missing::NotAdmin(why));
            }
        }
    }
    Ok(Admin { identity: record.identity, csrf: record.csrf })
}

/// Why `user_id` may not use the console, read from the directory now; None: an admin.
async fn not_admin(app: &AppState, user_id: &str) -> Result<Option<String>, Response> {
    let user = app.store.user_get(user_id).await.map_err(|e| super::unavailable(&e))?;
    let Some(user) = user else { return Ok(Some("your user no longer exists in the directory".into())) };
    if user.status == UserStatus::Disabled {
        return Ok(Some("your user is disabled".into()));
    }
    let memberships = app.store.memberships_of_user(user_id).await.map_err(|e| super::unavailable(&e))?;
    if memberships.iter().any(|m| m.group_id == ADMINS_GROUP) {
        Ok(None)
    } else {
        Ok(Some(format!("{} is not a member of the Admins group", user.email.as_deref().unwrap_or(&user.username))))
    }
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Response> {
        match load(app, &parts.headers).await {
            Ok(a) => Ok(a),
            Err(Missing::Failed(r)) => Err(r),
            Err(Missing::NotAdmin(why)) => Err(forbidden(&why)),
            // A page asked for: go and sign in. A form posted: say so (the session ended
            // while the form was open; a redirect would lose what was typed anyway).
            Err(Missing::SignedOut) if parts.method == Method::GET => Err(Redirect::to("/console").into_response()),
            Err(Missing::SignedOut) => Err(super::error_page(
                StatusCode::UNAUTHORIZED,
                "Signed out",
                "Your console session has ended, so nothing was changed. Sign in again and repeat the change.",
            )),
        }
    }
}

/// The 403 page for someone signed in who is not an admin.
pub fn forbidden(why: &str) -> Response {
    let view = views::Forbidden { reason: why.to_string(), request_id: crate::web::request_id::current().unwrap_or_default() };
    super::render(StatusCode::FORBIDDEN, &view)
}

/// `GET /console`: the console for an admin; else the sign-in page.
pub async fn home(State(app): State<AppState>, headers: HeaderMap) -> Response {
    match load(&app, &headers).await {
        Ok(_) => Redirect::to("/console/connections").into_response(),
        Err(Missing::Failed(r)) => r,
        Err(Missing::NotAdmin(why)) => forbidden(&why),
        Err(Missing::SignedOut) => sign_in_page(&app, StatusCode::OK, None).await,
    }
}

async fn sign_in_page(app: &AppState, status: StatusCode, error: Option<&str>) -> Response {
    let connections = match app.registry.list(crate::store::ConnectionSort::Name, false).await {
        Ok(l) => l,
        Err(e) => return super::unavailable(&e),
    };
    let buttons = connections
        .into_iter()
        .filter(|c| c.active)
        .map(|c| views::SignInButton {
            href: format!("/login/{}?return_to=%2Fconsole%2Fenter", c.id),
            logo: super::assets::logo_path(c.protocol(), &c.provider),
            name: c.display_name,
        })
        .collect();
    let form_token = crate::id::token(24);
    let view = views::SignIn { buttons, form_token: form_token.clone(), error: error.map(str::to_string) };
    let mut resp = super::render(status, &view);
    resp.headers_mut().append(header::SET_COOKIE, cookie_header(app, SIGN_IN_COOKIE, &form_token, 3600, "/console"));
    resp
}

/// Starts a console session for `identity` and goes to the connections page.
async fn start(app: &AppState, identity: Identity, login_session: Option<String>, expires_at: Millis) -> Response {
    let now = app.clock.now();
    let token_sha256 = match identity {
        Identity::AdminToken => match app.admin_token.current(app.store.as_ref()).await {
            Ok(h) => Some(hex::encode(h)),
            Err(e) => return super::unavailable(&e),
        },
        Identity::User { .. } => None,
    };
    let cookie = crate::id::token(32);
    let record = Record { identity: identity.clone(), csrf: crate::id::token(32), expires_at, login_session, token_sha256 };
    let value = serde_json::to_string(&record).unwrap_or_default();
    match app.ephemeral.put_new(&state_key(&cookie), &value, expires_at - now).await {
        Ok(true) => {}
        Ok(false) => return super::error_page(StatusCode::SERVICE_UNAVAILABLE, "Try again", "The console session could not be started; try again."),
        Err(e) => return super::unavailable(&e),
    }
    let audit = crate::audit::AuditEntry::new(now, &identity.actor(), "console.sign_in", "console", serde_json::json!({}));
    if let Err(e) = app.store.audit_append(&audit).await {
        let _ = app.ephemeral.take(&state_key(&cookie)).await;
        return super::unavailable(&e);
    }
    tracing::info!(actor = %identity.actor(), "console sign-in");
    let mut resp = Redirect::to("/console/connections").into_response();
    resp.headers_mut().append(header::SET_COOKIE, cookie_header(app, cookie_name(app), &cookie, (expires_at - now) / 1000, "/"));
    resp.headers_mut().append(header::SET_COOKIE, cookie_header(app, SIGN_IN_COOKIE, "", 0, "/console"));
    resp
}

/// `POST /console/sign-in`: the admin token, exchanged for a console session. The form
/// is bound to the browser (a double-submit cookie) and to this site (origin check), so
/// no other site can sign a browser in as the admin token's holder.
pub async fn sign_in_with_token(State(app): State<AppState>, headers: HeaderMap, form: Form) -> Response {
    let expected = crate::web::cookie::find(&headers, SIGN_IN_COOKIE).unwrap_or_default();
    if let Some(r) = super::csrf::refusal(&app, &headers, expected, form.get("csrf")) {
        return r;
    }
    let presented = form.get("token").unwrap_or("").trim();
    // Hashes compared in constant time: neither length nor content leaks through timing.
    let ok = match app.admin_token.accepts(app.store.as_ref(), presented).await {
        Ok(ok) => !presented.is_empty() && ok,
        Err(e) => return super::unavailable(&e),
    };
    if !ok {
        tracing::info!("console sign-in with a wrong admin token");
        return sign_in_page(&app, StatusCode::UNAUTHORIZED, Some("That is not the admin token. Check it and try again.")).await;
    }
    let lifetime = (app.config.session.lifetime_seconds as i64 * 1000).min(TOKEN_SESSION_MS);
    start(&app, Identity::AdminToken, None, app.clock.now() + lifetime).await
}

/// `GET /console/enter`: where a login started from the sign-in page comes back. The
/// browser's login session makes a console session when its user is in `Admins` now.
pub async fn enter(State(app): State<AppState>, headers: HeaderMap) -> Response {
    let now = app.clock.now();
    let session = match crate::web::browser::browser_session(&app, &headers, now).await {
        Ok(Some(s)) => s,
        Ok(None) => return Redirect::to("/console").into_response(),
        Err(e) => return super::unavailable(&e),
    };
    match not_admin(&app, &session.user_id).await {
        Err(r) => return r,
        Ok(Some(why)) => {
            tracing::info!(user_id = %session.user_id, "console refused: not an admin");
            return forbidden(&why);
        }
        Ok(None) => {}
    }
    let user = match app.store.user_get(&session.user_id).await {
        Ok(Some(u)) => u,
        Ok(None) => return forbidden("your user no longer exists in the directory"),
        Err(e) => return super::unavailable(&e),
    };
    let identity = Identity::User { user_id: user.id.clone(), email: user.email.clone(), username: user.username.clone() };
    let lifetime = app.config.session.lifetime_seconds as i64 * 1000;
    start(&app, identity, Some(session.id.clone()), (now + lifetime).min(session.expires_at)).await
}

/// `POST /console/sign-out`: ends the console session (the login session stays).
pub async fn sign_out(State(app): State<AppState>, admin: Admin, headers: HeaderMap, form: Form) -> Response {
    if let Some(r) = super::csrf::refusal(&app, &headers, &admin.csrf, form.get("csrf")) {
        return r;
    }
    if let Some(cookie) = crate::web::cookie::find(&headers, cookie_name(&app)) {
        if let Err(e) = app.ephemeral.take(&state_key(cookie)).await {
            return super::unavailable(&e);
        }
    }
    let mut resp = Redirect::to("/console").into_response();
    resp.headers_mut().append(header::SET_COOKIE, cookie_header(&app, cookie_name(&app), "", 0, "/"));
    resp
}
