//! The Apps page: the downstream clients that sign their users in through the gateway's
//! OpenID Provider. Register one (its secret is shown once, on the page that answers the
//! registration, and never again: only its hash is kept), list them, delete one. Clients
//! the configuration file declares are listed and marked, and are changed there.

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
use crate::op::clients::{self, ClientInput};
use crate::web::ApiPath;

/// `?done=&who=`
#[derive(Debug, Default, Deserialize)]
pub struct DoneQuery {
    done: Option<String>,
    who: Option<String>,
}

/// The Apps table.
#[derive(Template)]
#[template(path = "apps.html")]
pub struct AppsPage {
    /// Frame.
    pub chrome: Chrome,
    /// One per client.
    pub rows: Vec<AppRow>,
    /// What just happened.
    pub notice: Option<String>,
    /// The discovery URL apps are configured with.
    pub issuer: String,
}

/// A client in the table.
pub struct AppRow {
    /// Client id.
    pub client_id: String,
    /// Name.
    pub name: String,
    /// Redirect URIs.
    pub redirect_uris: Vec<String>,
    /// Created, for people.
    pub created: String,
    /// Declared in the configuration file.
    pub managed: bool,
}

/// `GET /console/apps`
pub async fn list(State(app): State<AppState>, admin: Admin, Query(q): Query<DoneQuery>) -> Response {
    let mut list = match app.store.client_list().await {
        Ok(l) => l,
        Err(e) => return super::unavailable(&e),
    };
    list.sort_by_key(|c| (c.name.to_ascii_lowercase(), c.client_id.clone()));
    let rows = list
        .into_iter()
        .map(|c| AppRow { managed: c.managed_by.is_some(), created: when(c.created_at), client_id: c.client_id, name: c.name, redirect_uris: c.redirect_uris })
        .collect();
    let who = super::common::notice_name(&app, q.who.as_deref(), "The app");
    let notice = match q.done.as_deref() {
        Some("deleted") => Some(format!("{who} was deleted: it can no longer sign anyone in.")),
        _ => None,
    };
    super::render(StatusCode::OK, &AppsPage { chrome: Chrome::at(&admin, "apps"), rows, notice, issuer: app.config.public_base() })
}

/// The registration form.
#[derive(Template)]
#[template(path = "app-new.html")]
pub struct NewApp {
    /// Frame.
    pub chrome: Chrome,
    /// Name, as typed.
    pub name: String,
    /// Redirect URIs, as typed (one per line).
    pub redirect_uris: String,
    /// What was wrong.
    pub errors: Vec<String>,
}

/// `GET /console/apps/new`
pub async fn new_form(admin: Admin) -> Response {
    super::render(StatusCode::OK, &NewApp { chrome: Chrome::at(&admin, "apps"), name: String::new(), redirect_uris: String::new(), errors: vec![] })
}

/// The answer to a registration: the secret, this once.
#[derive(Template)]
#[template(path = "app-created.html")]
pub struct Created {
    /// Frame.
    pub chrome: Chrome,
    /// Name.
    pub name: String,
    /// Client id.
    pub client_id: String,
    /// The secret (never stored; shown only here).
    pub secret: String,
    /// The issuer (discovery at `/.well-known/openid-configuration`).
    pub issuer: String,
}

/// `POST /console/apps`: registers a client; the page that answers shows its secret once.
pub async fn create(State(app): State<AppState>, admin: Admin, headers: HeaderMap, form: Form) -> Response {
    if let Some(r) = common::refused(&app, &admin, &headers, &form) {
        return r;
    }
    let name = form.get("name").unwrap_or("").trim().to_string();
    let uris_text = form.get("redirect_uris").unwrap_or("").to_string();
    let uris: Vec<String> = uris_text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string).take(50).collect();
    let mut errors = vec![];
    if name.is_empty() {
        errors.push("Name: is required (it is what people see on the login page: “Signing in to …”).".to_string());
    } else if name.chars().count() > 128 || name.chars().any(char::is_control) {
        errors.push("Name: must be at most 128 characters without control characters.".to_string());
    }
    let made = if errors.is_empty() {
        let input = ClientInput { name: Some(name.clone()), redirect_uris: Some(uris), ..Default::default() };
        match clients::create(&app, &input, &admin.identity.actor()).await {
            Ok(v) => Some(v),
            Err(e) if e.status.is_server_error() => return common::api_refusal(e),
            Err(e) => {
                errors.extend(common::problems(&e));
                None
            }
        }
    } else {
        None
    };
    match made {
        Some(v) => {
            tracing::info!(actor = %admin.identity.actor(), client_id = %v.client_id, "console: app registered");
            let view = Created {
                chrome: Chrome::at(&admin, "apps"),
                name: v.name,
                client_id: v.client_id,
                secret: v.client_secret.unwrap_or_default(),
                issuer: app.config.public_base(),
            };
            // The secret is on this page only: the console's `no-store` keeps it out of caches.
            super::render(StatusCode::CREATED, &view)
        }
        None => super::render(StatusCode::UNPROCESSABLE_ENTITY, &NewApp { chrome: Chrome::at(&admin, "apps"), name, redirect_uris: uris_text, errors }),
    }
}

/// The delete confirmation.
#[derive(Template)]
#[template(path = "app-delete.html")]
pub struct DeletePage {
    /// Frame.
    pub chrome: Chrome,
    /// Client id.
    pub client_id: String,
    /// Name.
    pub name: String,
}

/// `GET /console/apps/{id}/delete`
pub async fn confirm_delete(State(app): State<AppState>, admin: Admin, ApiPath(id): ApiPath<String>) -> Response {
    match app.store.client_get(&id).await {
        Ok(Some(c)) if c.managed_by.is_some() => super::error_page(
            StatusCode::CONFLICT,
            "Declared in the configuration",
            &format!("{} is declared in the configuration file: remove it there.", if c.name.is_empty() { &c.client_id } else { &c.name }),
        ),
        Ok(Some(c)) => super::render(StatusCode::OK, &DeletePage { chrome: Chrome::at(&admin, "apps"), client_id: c.client_id, name: c.name }),
        Ok(None) => super::error_page(StatusCode::NOT_FOUND, "Not found", "There is no such app."),
        Err(e) => super::unavailable(&e),
    }
}

/// `POST /console/apps/{id}/delete`
pub async fn delete(State(app): State<AppState>, admin: Admin, ApiPath(id): ApiPath<String>, headers: HeaderMap, form: Form) -> Response {
    if let Some(r) = common::refused(&app, &admin, &headers, &form) {
        return r;
    }
    let name = match app.store.client_get(&id).await {
        Ok(Some(c)) if !c.name.is_empty() => c.name,
        Ok(_) => id.clone(),
        Err(e) => return super::unavailable(&e),
    };
    match clients::delete(&app, &id, &admin.identity.actor()).await {
        Ok(()) => Redirect::to(&format!("/console/apps?done=deleted&who={}", super::common::sealed_name(&app, &name))).into_response(),
        Err(e) => common::api_refusal(e),
    }
}
