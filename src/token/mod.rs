//! The gateway's own signing keys, for the session tokens it issues. Keys are made
//! here (ES256 by default, RS256 on request), stored sealed with the master key, and
//! rotated by adding a new one: older keys are retired but stay listed (and in the
//! JWKS) until their tokens have expired.

pub mod claims;
pub mod jws;
#[cfg(test)]
mod jws_differential;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use openssl::bn::BigNumContext;
use openssl::ec::{EcGroup, EcKey};
use openssl::nid::Nid;
use openssl::pkey::PKey;
use openssl::rsa::Rsa;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use crate::audit::AuditEntry;
use crate::clock::{rfc3339, Millis};
use crate::secret::Cipher;
use crate::store::{SigningKey, Store, StoreError};

/// Signature algorithms for the gateway's keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, clap::ValueEnum)]
pub enum Alg {
    /// ECDSA P-256 with SHA-256 (default).
    #[serde(rename = "ES256")]
    #[value(name = "ES256")]
    Es256,
    /// RSA-2048 PKCS#1 v1.5 with SHA-256.
    #[serde(rename = "RS256")]
    #[value(name = "RS256")]
    Rs256,
}

impl Alg {
    /// The JOSE name.
    pub fn as_str(self) -> &'static str {
        match self {
            Alg::Es256 => "ES256",
            Alg::Rs256 => "RS256",
        }
    }
}

/// A key as listed (public parts only).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct KeyView {
    /// Key id.
    pub kid: String,
    /// Algorithm.
    pub alg: String,
    /// Created (RFC 3339).
    pub created_at: String,
    /// Retired (RFC 3339), if it no longer signs.
    pub retired_at: Option<String>,
}

impl From<&SigningKey> for KeyView {
    fn from(k: &SigningKey) -> Self {
        Self { kid: k.kid.clone(), alg: k.alg.clone(), created_at: rfc3339(k.created_at), retired_at: k.retired_at.map(rfc3339) }
    }
}

/// Why key generation failed.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// openssl failed.
    #[error("could not generate the key")]
    Crypto(#[from] openssl::error::ErrorStack),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn b64(bytes: &[u8]) -> String {
    B64URL.encode(bytes)
}

/// Makes a key: (kid, PKCS#8 PEM private key, public JWK).
pub fn make(alg: Alg) -> Result<(String, String, serde_json::Value), openssl::error::ErrorStack> {
    let kid = crate::id::token(12);
    let (pkey, jwk) = match alg {
        Alg::Es256 => {
            let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
            let ec = EcKey::generate(&group)?;
            let mut ctx = BigNumContext::new()?;
            let mut x = openssl::bn::BigNum::new()?;
            let mut y = openssl::bn::BigNum::new()?;
            ec.public_key().affine_coordinates(&group, &mut x, &mut y, &mut ctx)?;
            let jwk = json!({"kty": "EC", "crv": "P-256", "x": b64(&x.to_vec_padded(32)?), "y": b64(&y.to_vec_padded(32)?)});
            (PKey::from_ec_key(ec)?, jwk)
        }
        Alg::Rs256 => {
            let rsa = Rsa::generate(2048)?;
            let jwk = json!({"kty": "RSA", "n": b64(&rsa.n().to_vec()), "e": b64(&rsa.e().to_vec())});
            (PKey::from_rsa(rsa)?, jwk)
        }
    };
    let mut jwk = jwk;
    jwk["kid"] = json!(kid);
    jwk["alg"] = json!(alg.as_str());
    jwk["use"] = json!("sig");
    let pem = String::from_utf8_lossy(&pkey.private_key_to_pem_pkcs8()?).into_owned();
    Ok((kid, pem, jwk))
}

/// Generates a key, stores it sealed, and makes it the one that signs.
pub async fn rotate(store: &dyn Store, cipher: &Cipher, alg: Alg, now: Millis, actor: &str) -> Result<SigningKey, KeyError> {
    let (kid, pem, jwk) = make(alg)?;
    let key = SigningKey {
        private_key: cipher.seal(&format!("signing_key:{kid}"), pem.as_bytes()),
        kid: kid.clone(),
        alg: alg.as_str().into(),
        public_jwk: jwk.to_string(),
        created_at: now,
        retired_at: None,
    };
    store.signing_key_insert(&key, &AuditEntry::new(now, actor, "signing_key.create", &kid, json!({"alg": alg.as_str()}))).await?;
    Ok(key)
}

/// Makes sure a signing key exists (first start); returns whether one was made.
pub async fn ensure(store: &dyn Store, cipher: &Cipher, now: Millis) -> Result<bool, KeyError> {
    if store.signing_key_list().await?.iter().any(|k| k.retired_at.is_none()) {
        return Ok(false);
    }
    rotate(store, cipher, Alg::Es256, now, "system").await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_keys_have_public_jwks_without_private_parts() {
        for alg in [Alg::Es256, Alg::Rs256] {
            let (kid, pem, jwk) = make(alg).unwrap();
            assert!(pem.contains("PRIVATE KEY"));
            assert_eq!(jwk["kid"], kid);
            assert_eq!(jwk["alg"], alg.as_str());
            assert!(jwk.get("d").is_none(), "no private exponent in the JWK");
        }
    }
}
