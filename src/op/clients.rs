//! Downstream clients: from configuration (`[[clients]]`) and from the admin API.
//! Secrets are kept as SHA-256 only and compared in constant time.

use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use utoipa::ToSchema;

use crate::app::AppState;
use crate::audit::AuditEntry;
use crate::clock::rfc3339;
use crate::connection::input::check_url;
use crate::connection::FieldError;
use crate::store::Client;
use crate::web::ApiError;

fn sha(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// What the store keeps of a client secret (SHA-256, hex).
pub fn secret_hash(secret: &str) -> String {
    sha(secret)
}

/// A client by id. Clients of the configuration file are in the store too, put there
/// by `declare::reconcile` with `managed_by: "config"`.
pub async fn find(app: &AppState, client_id: &str) -> Option<Client> {
    app.store.client_get(client_id).await.ok().flatten()
}

/// 409 when the configuration file declares the client (the API does not change it).
fn editable(app: &AppState, c: &Client) -> Result<(), ApiError> {
    if c.managed_by.as_deref() == Some(crate::declare::MANAGED_BY) {
        let message = crate::declare::read_only("client", &c.client_id, app.config.file.as_deref());
        return Err(ApiError::new(axum::http::StatusCode::CONFLICT, "managed_by_config", message));
    }
    Ok(())
}

/// Removes a client made through the API (409 for one the configuration file declares).
pub async fn delete(app: &AppState, id: &str, actor: &str) -> Result<(), ApiError> {
    let c = app.store.client_get(id).await?.ok_or_else(|| ApiError::not_found(format!("client {id}")))?;
    editable(app, &c)?;
    app.store.client_delete(id, &AuditEntry::new(app.clock.now(), actor, "client.delete", id, json!({}))).await?;
    Ok(())
}

/// The client, if `secret` is its secret.
pub async fn authenticate(app: &AppState, client_id: &str, secret: &str) -> Option<Client> {
    let c = find(app, client_id).await?;
    bool::from(sha(secret).as_bytes().ct_eq(c.secret_sha256.as_bytes())).then_some(c)
}

/// A new client, or changes to one.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientInput {
    /// Client id (create only; default: generated).
    pub client_id: Option<String>,
    /// A name for admins.
    pub name: Option<String>,
    /// Exact redirect URIs allowed (https; http only for localhost).
    pub redirect_uris: Option<Vec<String>>,
    /// Set to true to generate a new secret (shown once in the answer).
    #[serde(default)]
    pub rotate_secret: bool,
}

/// A client as the API shows it; `client_secret` only right after it was made.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ClientView {
    /// Client id.
    pub client_id: String,
    /// Name.
    pub name: String,
    /// Redirect URIs.
    pub redirect_uris: Vec<String>,
    /// The new secret: shown once, at creation or rotation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    /// Created (RFC 3339).
    pub created_at: String,
    /// Last change (RFC 3339).
    pub updated_at: String,
    /// `config` when the configuration file declares it: the API does not change it.
    pub managed_by: Option<String>,
}

/// The API view of a client.
pub fn view(c: &Client, secret: Option<String>) -> ClientView {
    ClientView {
        client_id: c.client_id.clone(),
        name: c.name.clone(),
        redirect_uris: c.redirect_uris.clone(),
        client_secret: secret,
        created_at: rfc3339(c.created_at),
        updated_at: rfc3339(c.updated_at),
        managed_by: c.managed_by.clone(),
    }
}

/// The redirect URIs' rules (at least one; https, http only for localhost).
pub fn check_redirect_uris(uris: &[String]) -> Result<(), ApiError> {
    check_uris(uris)
}

fn check_uris(uris: &[String]) -> Result<(), ApiError> {
    let mut errors = Vec::new();
    if uris.is_empty() {
        errors.push(FieldError::new("redirect_uris", "must list at least one URI"));
    }
    for (i, u) in uris.iter().enumerate() {
        check_url(&mut errors, &format!("redirect_uris[{i}]"), u);
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(errors))
    }
}

/// Creates a client with a generated secret.
pub async fn create(app: &AppState, input: &ClientInput, actor: &str) -> Result<ClientView, ApiError> {
    let uris = input.redirect_uris.clone().unwrap_or_default();
    check_uris(&uris)?;
    let client_id = match &input.client_id {
        Some(id) if crate::id::is_wellformed(id) => id.clone(),
        Some(_) => return Err(ApiError::invalid(vec![FieldError::new("client_id", "may hold only letters, digits, '-' and '_'")])),
        None => crate::id::new("cli"),
    };
    let secret = crate::id::token(32);
    let now = app.clock.now();
    let c = Client {
        client_id,
        name: input.name.clone().unwrap_or_default(),
        secret_sha256: sha(&secret),
        redirect_uris: uris,
        created_at: now,
        updated_at: now,
        managed_by: None,
    };
    app.store.client_insert(&c, &AuditEntry::new(now, actor, "client.create", &c.client_id, json!({"redirect_uris": c.redirect_uris}))).await?;
    Ok(view(&c, Some(secret)))
}

/// Changes a client (and rotates its secret when asked).
pub async fn update(app: &AppState, id: &str, input: &ClientInput, actor: &str) -> Result<ClientView, ApiError> {
    let mut c = app.store.client_get(id).await?.ok_or_else(|| ApiError::not_found(format!("client {id}")))?;
    editable(app, &c)?;
    if input.client_id.as_ref().is_some_and(|x| x != id) {
        return Err(ApiError::invalid(vec![FieldError::new("client_id", "cannot change")]));
    }
    if let Some(u) = &input.redirect_uris {
        check_uris(u)?;
        c.redirect_uris = u.clone();
    }
    if let Some(n) = &input.name {
        c.name = n.clone();
    }
    let secret = input.rotate_secret.then(|| crate::id::token(32));
    if let Some(s) = &secret {
        c.secret_sha256 = sha(s);
    }
    c.updated_at = app.clock.now();
    app.store.client_update(&c, &AuditEntry::new(c.updated_at, actor, "client.update", id, json!({"secret_rotated": secret.is_some()}))).await?;
    Ok(view(&c, secret))
}
