//! OIDC discovery ("Fetch from issuer"): reads the issuer's
//! `/.well-known/openid-configuration` and fills the connection's endpoints.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ClientAuth, OidcSettings, Pkce, TENANT_PLACEHOLDER};
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
    if doc.issuer != expected_issuer && !tenant_template_of(&doc.issuer, expected_issuer) {
        return Err(DiscoveryError::IssuerMismatch { expected: expected_issuer.into(), found: doc.issuer });
    }
    Ok(doc)
}

/// Whether `template` is the multi-tenant issuer of `fetched_for`: Entra ID's `common` and
/// `organizations` metadata names the issuer `https://login.microsoftonline.com/{tenantid}/v2.0`
/// literally, and tokens name their own tenant there. The template must be the issuer
/// the document was fetched for with one path segment replaced by `{tenantid}`.
pub fn tenant_template_of(template: &str, fetched_for: &str) -> bool {
    let Some((before, after)) = template.split_once(TENANT_PLACEHOLDER) else { return false };
    if after.contains(TENANT_PLACEHOLDER) || !before.ends_with('/') || !(after.is_empty() || after.starts_with('/')) {
        return false;
    }
    let Some(middle) = fetched_for.strip_prefix(before).and_then(|rest| rest.strip_suffix(after)) else { return false };
    super::input::safe_tenant(middle)
}

/// The client authentication method for a connection whose admin did not choose one:
/// the current one (the preset's) when the IdP lists it, else the first the IdP lists of
/// `client_secret_basic`, `client_secret_post`, `client_secret_jwt` (those work with the
/// client secret the admin gives; `private_key_jwt` needs our key registered at the IdP
/// first, so it is never picked unasked). An empty list means `client_secret_basic`
/// (OpenID Connect Discovery 1.0, section 3).
pub fn pick_client_auth(current: ClientAuth, supported: &[String]) -> ClientAuth {
    if supported.is_empty() {
        return current;
    }
    let has = |m: ClientAuth| supported.iter().any(|s| s == m.as_str());
    if has(current) {
        return current;
    }
    [ClientAuth::ClientSecretBasic, ClientAuth::ClientSecretPost, ClientAuth::ClientSecretJwt].into_iter().find(|m| has(*m)).unwrap_or(current)
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
        // A multi-tenant document names the issuer template: tokens are checked against it.
        if self.issuer.contains(TENANT_PLACEHOLDER) {
            o.issuer.clone_from(&self.issuer);
        }
        if keep_explicit.token_endpoint_auth_method.is_none() {
            o.token_endpoint_auth_method = pick_client_auth(o.token_endpoint_auth_method, &self.token_endpoint_auth_methods_supported);
        }
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

#[cfg(test)]
mod vendor_tests {
    use super::*;

    #[test]
    fn the_entra_multi_tenant_template_is_the_issuer_it_was_fetched_for() {
        let t = "https://login.microsoftonline.com/{tenantid}/v2.0";
        assert!(tenant_template_of(t, "https://login.microsoftonline.com/organizations/v2.0"));
        assert!(tenant_template_of(t, "https://login.microsoftonline.com/common/v2.0"));
        for other in [
            "https://login.microsoftonline.com/common/v2.0/x",
            "https://evil.example/common/v2.0",
            "https://login.microsoftonline.com/a/b/v2.0",
            "https://login.microsoftonline.com//v2.0",
        ] {
            assert!(!tenant_template_of(t, other), "{other}");
        }
        assert!(!tenant_template_of("https://login.microsoftonline.com/{tenantid}{tenantid}/v2.0", "https://login.microsoftonline.com/common/v2.0"));
        assert!(!tenant_template_of("https://login.microsoftonline.com/x{tenantid}/v2.0", "https://login.microsoftonline.com/xcommon/v2.0"));
    }

    #[test]
    fn the_client_authentication_is_picked_from_what_the_idp_lists() {
        let l = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(pick_client_auth(ClientAuth::ClientSecretBasic, &[]), ClientAuth::ClientSecretBasic);
        assert_eq!(pick_client_auth(ClientAuth::ClientSecretBasic, &l(&["client_secret_post", "private_key_jwt"])), ClientAuth::ClientSecretPost);
        assert_eq!(pick_client_auth(ClientAuth::ClientSecretPost, &l(&["client_secret_basic", "client_secret_post"])), ClientAuth::ClientSecretPost);
        assert_eq!(pick_client_auth(ClientAuth::ClientSecretBasic, &l(&["client_secret_jwt", "private_key_jwt"])), ClientAuth::ClientSecretJwt);
        assert_eq!(pick_client_auth(ClientAuth::ClientSecretBasic, &l(&["private_key_jwt"])), ClientAuth::ClientSecretBasic, "never picked unasked");
    }
}
