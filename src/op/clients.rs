//! Downstream clients: from configuration (`[[clients]]`) and from the admin API, with
//! their per-client settings (auth method, grants, PKCE, scopes, token lifetimes, logout
//! URIs, keys) and the rules those settings follow. Secrets are kept as SHA-256 only and
//! compared in constant time.

use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::app::AppState;
use crate::audit::AuditEntry;
use crate::clock::rfc3339;
use crate::connection::input::check_url;
use crate::connection::FieldError;
use crate::store::{Client, ClientAuthMethod, ClientSettings};
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
    /// `client_secret_basic` (default), `client_secret_post`, `private_key_jwt` or `none`
    /// (a public client: PKCE required).
    pub token_endpoint_auth_method: Option<ClientAuthMethod>,
    /// Grants beyond `authorization_code`: `["refresh_token"]` allows refresh tokens.
    pub grant_types: Option<Vec<String>>,
    /// PKCE on every authorization request (default: required for public clients only).
    pub require_pkce: Option<bool>,
    /// Accept PKCE `plain` (default: S256 only).
    pub allow_plain_pkce: Option<bool>,
    /// Scopes it may be granted (default: all).
    pub allowed_scopes: Option<Vec<String>>,
    /// ID token lifetime, seconds (60 to 86400; default 3600).
    pub id_token_lifetime_seconds: Option<u32>,
    /// Access token lifetime, seconds (60 to 86400; default 3600).
    pub access_token_lifetime_seconds: Option<u32>,
    /// Exact URIs RP-initiated logout may return to.
    pub post_logout_redirect_uris: Option<Vec<String>>,
    /// Where logout tokens are POSTed when a session of its users ends.
    pub backchannel_logout_uri: Option<String>,
    /// Its public keys (JWK Set) for `private_key_jwt`.
    #[schema(value_type = Option<Object>)]
    pub jwks: Option<serde_json::Value>,
    /// Where its public keys are published, for `private_key_jwt`.
    pub jwks_uri: Option<String>,
}

impl ClientInput {
    /// `s` with what this input sets.
    fn apply(&self, s: &mut ClientSettings) {
        if let Some(v) = self.token_endpoint_auth_method {
            s.token_endpoint_auth_method = v;
        }
        if let Some(v) = &self.grant_types {
            s.grant_types = v.clone();
        }
        if let Some(v) = self.require_pkce {
            s.require_pkce = Some(v);
        }
        if let Some(v) = self.allow_plain_pkce {
            s.allow_plain_pkce = v;
        }
        if let Some(v) = &self.allowed_scopes {
            s.allowed_scopes = Some(v.clone());
        }
        if let Some(v) = self.id_token_lifetime_seconds {
            s.id_token_lifetime_seconds = Some(v);
        }
        if let Some(v) = self.access_token_lifetime_seconds {
            s.access_token_lifetime_seconds = Some(v);
        }
        if let Some(v) = &self.post_logout_redirect_uris {
            s.post_logout_redirect_uris = v.clone();
        }
        if let Some(v) = &self.backchannel_logout_uri {
            s.backchannel_logout_uri = Some(v.clone()).filter(|v| !v.is_empty());
        }
        if let Some(v) = &self.jwks {
            s.jwks = Some(v.clone()).filter(|v| !v.is_null());
        }
        if let Some(v) = &self.jwks_uri {
            s.jwks_uri = Some(v.clone()).filter(|v| !v.is_empty());
        }
    }
}

/// The longest an ID or access token may be set to live for any client, seconds. A
/// retired signing key stays in `/jwks.json` this long ([`super::jwks`]), so every
/// token it signed can be verified until it expires, whatever the client's settings.
pub const TOKEN_LIFETIME_MAX_S: u32 = 86_400;

/// Scopes the gateway knows; a client's `allowed_scopes` is a subset.
pub const SCOPES: &[&str] = &["openid", "email", "profile", "groups", "offline_access"];

/// Grants a client may be given.
pub const GRANTS: &[&str] = &["authorization_code", "refresh_token"];

/// The most keys a client may register (a JWK Set is stored with the client).
const JWKS_MAX_KEYS: usize = 10;

/// Whether the client is public (no credentials of its own).
pub fn is_public(c: &Client) -> bool {
    c.settings.token_endpoint_auth_method == ClientAuthMethod::None
}

/// Whether every authorization request of the client must carry a PKCE challenge.
pub fn requires_pkce(c: &Client) -> bool {
    c.settings.require_pkce.unwrap_or_else(|| is_public(c))
}

/// Whether the client may be given refresh tokens.
pub fn allows_refresh(c: &Client) -> bool {
    c.settings.grant_types.iter().any(|g| g == "refresh_token")
}

/// Whether the client may be granted `scope`.
pub fn allows_scope(c: &Client, scope: &str) -> bool {
    if scope == "openid" {
        return true;
    }
    if scope == "offline_access" && !allows_refresh(c) {
        return false;
    }
    c.settings.allowed_scopes.as_ref().is_none_or(|a| a.iter().any(|s| s == scope))
}

/// The settings' rules, each broken one named.
pub fn check_settings(s: &ClientSettings) -> Result<(), ApiError> {
    let mut errors = Vec::new();
    for (i, g) in s.grant_types.iter().enumerate() {
        if !GRANTS.contains(&g.as_str()) {
            errors.push(FieldError::new(format!("grant_types[{i}]"), format!("{g:?} is not a grant this gateway has (authorization_code, refresh_token)")));
        }
    }
    for (i, sc) in s.allowed_scopes.iter().flatten().enumerate() {
        if !SCOPES.contains(&sc.as_str()) {
            errors.push(FieldError::new(format!("allowed_scopes[{i}]"), format!("{sc:?} is not a scope this gateway has ({})", SCOPES.join(", "))));
        }
    }
    for (field, v) in [("id_token_lifetime_seconds", s.id_token_lifetime_seconds), ("access_token_lifetime_seconds", s.access_token_lifetime_seconds)] {
        if v.is_some_and(|v| !(60..=TOKEN_LIFETIME_MAX_S).contains(&v)) {
            errors.push(FieldError::new(field, "must be 60 to 86400 seconds"));
        }
    }
    if s.token_endpoint_auth_method == ClientAuthMethod::None && s.require_pkce == Some(false) {
        errors.push(FieldError::new("require_pkce", "a public client (token_endpoint_auth_method none) must use PKCE"));
    }
    for (i, u) in s.post_logout_redirect_uris.iter().enumerate() {
        check_url(&mut errors, &format!("post_logout_redirect_uris[{i}]"), u);
    }
    if let Some(u) = &s.backchannel_logout_uri {
        check_url(&mut errors, "backchannel_logout_uri", u);
    }
    if let Some(u) = &s.jwks_uri {
        check_url(&mut errors, "jwks_uri", u);
    }
    if let Some(jwks) = &s.jwks {
        match jwks.get("keys").and_then(serde_json::Value::as_array) {
            None => errors.push(FieldError::new("jwks", "must be a JWK Set: {\"keys\": [...]}")),
            Some(keys) if keys.is_empty() || keys.len() > JWKS_MAX_KEYS => {
                errors.push(FieldError::new("jwks", format!("must hold 1 to {JWKS_MAX_KEYS} keys")));
            }
            Some(keys) => {
                for (i, k) in keys.iter().enumerate() {
                    if k.get("d").is_some() {
                        errors.push(FieldError::new(format!("jwks.keys[{i}]"), "is a private key: register the public key only"));
                    } else if let Err(e) = crate::token::jws::public_key(k) {
                        errors.push(FieldError::new(format!("jwks.keys[{i}]"), format!("is not a usable public key ({e})")));
                    }
                }
            }
        }
    }
    if s.token_endpoint_auth_method == ClientAuthMethod::PrivateKeyJwt && s.jwks.is_none() && s.jwks_uri.is_none() {
        errors.push(FieldError::new("jwks", "private_key_jwt needs the client's public keys: jwks or jwks_uri"));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(errors))
    }
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
    /// Per-client settings.
    #[serde(flatten)]
    pub settings: ClientSettings,
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
        settings: c.settings.clone(),
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
    let mut settings = ClientSettings::default();
    input.apply(&mut settings);
    check_settings(&settings)?;
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
        settings,
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
    input.apply(&mut c.settings);
    check_settings(&c.settings)?;
    let secret = input.rotate_secret.then(|| crate::id::token(32));
    if let Some(s) = &secret {
        c.secret_sha256 = sha(s);
    }
    c.updated_at = app.clock.now();
    app.store.client_update(&c, &AuditEntry::new(c.updated_at, actor, "client.update", id, json!({"secret_rotated": secret.is_some()}))).await?;
    Ok(view(&c, secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_clients_carry_their_settings_and_the_same_rules_hold() {
        let c: crate::config::ClientConfig = toml::from_str(
            r#"
client_id = "app"
client_secret = "s3cret-s3cret-s3cret"
redirect_uris = ["https://app.example/cb"]
[settings]
grant_types = ["authorization_code", "refresh_token"]
backchannel_logout_uri = "https://app.example/backchannel"
post_logout_redirect_uris = ["https://app.example/bye"]
access_token_lifetime_seconds = 300
"#,
        )
        .unwrap();
        assert_eq!(c.settings.grant_types, ["authorization_code", "refresh_token"]);
        assert!(check_settings(&c.settings).is_ok());
        let bad: Result<crate::config::ClientConfig, _> = toml::from_str("client_id = \"a\"\nredirect_uris = []\n[settings]\ngrant_type = []\n");
        assert!(bad.is_err(), "a misspelt setting is refused, not ignored");
        let public = ClientSettings { token_endpoint_auth_method: ClientAuthMethod::None, ..Default::default() };
        let c = Client {
            client_id: "spa".into(),
            name: String::new(),
            secret_sha256: String::new(),
            redirect_uris: vec![],
            created_at: 0,
            updated_at: 0,
            managed_by: None,
            settings: public,
        };
        assert!(requires_pkce(&c), "PKCE is on by default for public clients");
        assert!(!allows_scope(&c, "offline_access"), "no offline_access without the refresh_token grant");
    }
}
