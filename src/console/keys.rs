//! The Signing keys page: the gateway's own keys (public parts only), which one signs,
//! which are retired but still published for the tokens they signed, and rotation. A
//! rotation is what `POST /keys` does: a new key signs from now on; the old one stays in
//! the JWKS until the tokens it signed have expired, so no app's verification breaks.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::common::{self, when};
use super::form::Form;
use super::session::Admin;
use super::views::Chrome;
use crate::app::AppState;
use crate::token::Alg;

/// `?done=`
#[derive(Debug, Default, Deserialize)]
pub struct DoneQuery {
    done: Option<String>,
}

/// The keys page.
#[derive(Template)]
#[template(path = "keys.html")]
pub struct KeysPage {
    /// Frame.
    pub chrome: Chrome,
    /// Newest first.
    pub rows: Vec<KeyRow>,
    /// What just happened.
    pub notice: Option<String>,
    /// The JWKS URL apps verify with.
    pub jwks: String,
}

/// A key.
pub struct KeyRow {
    /// Key id (`kid`).
    pub kid: String,
    /// `ES256` or `RS256`.
    pub alg: String,
    /// Created, for people.
    pub created: String,
    /// `signing`, `published` (retired, still in the JWKS) or `expired`.
    pub state: &'static str,
    /// What the state means, said.
    pub state_text: String,
}

/// `GET /console/keys`
pub async fn list(State(app): State<AppState>, admin: Admin, Query(q): Query<DoneQuery>) -> Response {
    let keys = match app.store.signing_key_list().await {
        Ok(k) => k,
        Err(e) => return super::unavailable(&e),
    };
    let now = app.clock.now();
    let rows = keys
        .into_iter()
        .map(|k| {
            let (state, state_text) = match k.retired_at {
                None => ("signing", "Signs new tokens".to_string()),
                Some(r) if crate::op::key_published(Some(r), now) => ("published", format!("Retired {}; still in the JWKS until its tokens expire", when(r))),
                Some(r) => ("expired", format!("Retired {}; no longer published", when(r))),
            };
            KeyRow { kid: k.kid, alg: k.alg, created: when(k.created_at), state, state_text }
        })
        .collect();
    let notice = match q.done.as_deref() {
        Some("rotated") => Some("A new key signs from now on. The previous one stays published until the tokens it signed expire.".to_string()),
        _ => None,
    };
    let view = KeysPage { chrome: Chrome::at(&admin, "keys"), rows, notice, jwks: format!("{}/jwks.json", app.config.public_base()) };
    super::render(StatusCode::OK, &view)
}

/// `POST /console/keys/rotate` with `alg=ES256|RS256`.
pub async fn rotate(State(app): State<AppState>, admin: Admin, headers: HeaderMap, form: Form) -> Response {
    if let Some(r) = common::refused(&app, &admin, &headers, &form) {
        return r;
    }
    let alg = match form.get("alg").unwrap_or("ES256") {
        "ES256" => Alg::Es256,
        "RS256" => Alg::Rs256,
        _ => return super::error_page(StatusCode::UNPROCESSABLE_ENTITY, "Not saved", "The algorithm is ES256 or RS256. Nothing was changed."),
    };
    match crate::token::rotate(app.store.as_ref(), &app.cipher, alg, app.clock.now(), &admin.identity.actor()).await {
        Ok(k) => {
            tracing::info!(actor = %admin.identity.actor(), kid = %k.kid, "console: signing key rotated");
            Redirect::to("/console/keys?done=rotated").into_response()
        }
        Err(e) => super::unavailable(&e),
    }
}
