//! OIDC discovery ("Fetch from issuer"): reads the issuer's
//! `/.well-known/openid-configuration` and fills the connection's endpoints.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{OidcSettings, Pkce};
use crate::outbound::{self, OutboundError};

/// Largest discovery document accepted.
const MAX_BYTES: usize = 256 * 1024;

/// The parts of a discovery document ssogate uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Discovered {
    /// Issuer as the document states it.
    pub issuer: String,
    /// Authorization endpoint.
    pub authorization_endpoint: String,
    /// Token endpoint.
    pub token_endpoint: String,
    /// User info endpoint.
    pub userinfo_endpoint: Option<String>,
    /// JWKS URI.
    pub jwks_uri: Option<String>,
    /// Revocation endpoint.
    pub revocation_endpoint: Option<String>,
    /// PKCE methods.
    #[serde(default)]
    pub code_challenge_methods_supported: Vec<String>,
    /// Client authentication methods.
    #[serde(default)]
    pub token_endpoint_auth_methods_supported: Vec<String>,
    /// Scopes.
    #[serde(default)]
    pub scopes_supported: Vec<String>,
    /// ID token signature algorithms.
    #[serde(default)]
    pub id_token_signing_alg_values_supported: Vec<String>,
    /// Whether the IdP puts `iss` in every authorization response (RFC 9207).
    #[serde(default)]
    pub authorization_response_iss_parameter_supported: bool,
}

/// Discovery failed.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// The document could not be fetched.
    #[error(transparent)]
    Fetch(#[from] OutboundError),
    /// The document is not a discovery document.
    #[error("{url} is not an OpenID discovery document: {reason}")]
    Invalid {
        /// The URL.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The document names another issuer (OpenID Connect Discovery 1.0, section 4.3).
    #[error("the discovery document names issuer {found:?}, not {expected:?}")]
    IssuerMismatch {
        /// Configured.
        expected: String,
        /// In the document.
        found: String,
    },
}

/// The discovery URL of an issuer.
pub fn default_url(issuer: &str) -> String {
    format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/'))
}

/// Fetches and checks a discovery document.
pub async fn fetch(client: &reqwest::Client, url: &str, expected_issuer: &str) -> Result<Discovered, DiscoveryError> {
    let body = outbound::get_bytes(client, url, MAX_BYTES).await?;
    let doc: Discovered = serde_json::from_slice(&body).map_err(|e| DiscoveryError::Invalid { url: url.into(), reason: e.to_string() })?;
    if doc.issuer != expected_issuer {
        return Err(DiscoveryError::IssuerMismatch { expected: expected_issuer.into(), found: doc.issuer });
    }
    Ok(doc)
}

impl Discovered {
    /// Fills endpoints (and whether the IdP sends `iss` with its authorization responses)
    /// the admin has not set, and adjusts PKCE to what the IdP supports when it says.
    pub fn fill(&self, o: &mut OidcSettings, keep_explicit: &super::OidcPatch) {
        let fill = |target: &mut String, explicit: &Option<String>, found: &str| {
            if explicit.is_none() {
                *target = found.to_string();
            }
        };
        let fill_opt = |target: &mut Option<String>, explicit: &Option<String>, found: &Option<String>| {
            if explicit.is_none() && found.is_some() {
                *target = found.clone();
            }
        };
        fill(&mut o.authorization_endpoint, &keep_explicit.authorization_endpoint, &self.authorization_endpoint);
        fill(&mut o.token_endpoint, &keep_explicit.token_endpoint, &self.token_endpoint);
        fill_opt(&mut o.userinfo_endpoint, &keep_explicit.userinfo_endpoint, &self.userinfo_endpoint);
        fill_opt(&mut o.jwks_uri, &keep_explicit.jwks_uri, &self.jwks_uri);
        fill_opt(&mut o.revocation_endpoint, &keep_explicit.revocation_endpoint, &self.revocation_endpoint);
        if keep_explicit.authorization_response_iss_parameter_supported.is_none() {
            o.authorization_response_iss_parameter_supported = self.authorization_response_iss_parameter_supported;
        }
        let methods = &self.code_challenge_methods_supported;
        if keep_explicit.code_challenge_method.is_none() && !methods.is_empty() {
            let has = |m: &str| methods.iter().any(|x| x == m);
            o.code_challenge_method = match o.code_challenge_method {
                Pkce::S256 if has("S256") => Pkce::S256,
                Pkce::Plain if has("plain") => Pkce::Plain,
                _ if has("S256") => Pkce::S256,
                other => other,
            };
        }
    }
}
