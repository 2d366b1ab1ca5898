//! Upstream identity providers: the protocol step of a login. Each protocol turns the
//! browser's start into a redirect (`begin`) and the IdP's reply into a verified
//! [`Identity`] (`finish`). Everything after that — directory, group sync, session,
//! hand-off — is shared and protocol-blind (`crate::login`).

pub mod jwks;
pub mod oidc;
pub mod saml;
pub mod saml_precheck;
pub mod saml_response;
pub mod xmldsig;

#[cfg(test)]
mod dsig_differential;
#[cfg(test)]
mod oidc_differential;

use serde::{Deserialize, Serialize};

use crate::clock::Millis;

/// What a login in progress keeps server-side until the IdP answers. `Debug` leaves
/// out the nonce and the PKCE verifier.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowState {
    /// The connection the login goes through.
    pub connection_id: String,
    /// SHA-256 (hex) of the flow cookie that binds the login to this browser.
    pub browser: String,
    /// OIDC nonce.
    pub nonce: String,
    /// PKCE verifier, when PKCE is used.
    pub pkce_verifier: Option<String>,
    /// Where to go after login (a validated local path, or a downstream request id).
    pub return_to: Option<String>,
    /// When the login started.
    pub created_at: Millis,
    /// The SAML AuthnRequest ID, for the response's InResponseTo.
    #[serde(default)]
    pub saml_request_id: Option<String>,
}

impl std::fmt::Debug for FlowState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlowState")
            .field("connection_id", &self.connection_id)
            .field("return_to", &self.return_to)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

/// Why an upstream step failed. Each variant is something a user or admin can act on;
/// none carries a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    /// The IdP answered the login with an error.
    #[error("the identity provider refused the login: {0}")]
    Refused(String),
    /// The IdP could not be reached or answered badly.
    #[error("the identity provider could not be used: {0}")]
    Unavailable(String),
    /// The reply did not verify: it is refused.
    #[error("the identity provider's reply was refused: {0}")]
    Invalid(String),
}
