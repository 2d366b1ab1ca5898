//! SP key pairs for signing AuthnRequests: what an admin would otherwise do by hand
//! with openssl. RSA-2048 with a self-signed certificate, because every IdP accepts it.

use openssl::asn1::{Asn1Integer, Asn1Time};
use openssl::bn::{BigNum, MsbOption};
use openssl::hash::MessageDigest;
use openssl::pkey::{Id, PKey, Private};
use openssl::rsa::Rsa;
use openssl::x509::{X509Builder, X509NameBuilder, X509};

/// How long a generated SP certificate is valid.
pub const VALID_DAYS: u32 = 3 * 365;

/// Generates an RSA-2048 key and a self-signed certificate for `common_name`.
/// Returns (certificate PEM, PKCS#8 private key PEM).
pub fn generate(common_name: &str) -> Result<(String, String), openssl::error::ErrorStack> {
    let key = PKey::from_rsa(Rsa::generate(2048)?)?;
    let cert = String::from_utf8_lossy(&self_signed(&key, common_name, VALID_DAYS)?.to_pem()?).into_owned();
    let pem = String::from_utf8_lossy(&key.private_key_to_pem_pkcs8()?).into_owned();
    Ok((cert, pem))
}

/// A self-signed certificate for `key` named `common_name`, valid from now for `days`
/// (SHA-256, or no digest for Ed25519 keys, which sign the message itself).
pub fn self_signed(key: &PKey<Private>, common_name: &str, days: u32) -> Result<X509, openssl::error::ErrorStack> {
    let mut name = X509NameBuilder::new()?;
    // X.509 limits a CN to 64 characters.
    let cn: String = common_name.chars().take(64).collect();
    name.append_entry_by_text("CN", if cn.is_empty() { "ssogate" } else { &cn })?;
    let name = name.build();
    let mut b = X509Builder::new()?;
    b.set_version(2)?;
    let mut serial = BigNum::new()?;
    serial.rand(127, MsbOption::MAYBE_ZERO, false)?;
    b.set_serial_number(&*Asn1Integer::from_bn(&serial)?)?;
    b.set_subject_name(&name)?;
    b.set_issuer_name(&name)?;
    b.set_pubkey(key)?;
    b.set_not_before(&*Asn1Time::days_from_now(0)?)?;
    b.set_not_after(&*Asn1Time::days_from_now(days)?)?;
    let digest = if key.id() == Id::ED25519 { MessageDigest::null() } else { MessageDigest::sha256() };
    b.sign(key, digest)?;
    Ok(b.build())
}

/// Checks that an uploaded certificate and private key are PEM and belong together.
pub fn check_pair(cert_pem: &str, key_pem: &str) -> Result<(), String> {
    let cert = X509::from_pem(cert_pem.as_bytes()).map_err(|_| "sp_certificate is not a PEM certificate".to_string())?;
    if key_pem.contains("ENCRYPTED") {
        return Err("sp_private_key must not be encrypted: upload the key without a passphrase".into());
    }
    // No passphrase callback may ever reach the terminal: answer "no passphrase".
    let key = PKey::private_key_from_pem_callback(key_pem.as_bytes(), |_| Ok(0)).map_err(|_| "sp_private_key is not a PEM private key".to_string())?;
    let public = cert.public_key().map_err(|_| "sp_certificate has no usable public key".to_string())?;
    if !public.public_eq(&key) {
        return Err("sp_private_key does not belong to sp_certificate".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn generated_pair_matches_and_foreign_pair_does_not() {
        let (c1, k1) = super::generate("sp.example").unwrap();
        let (_, k2) = super::generate("sp.example").unwrap();
        assert!(c1.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(k1.starts_with("-----BEGIN PRIVATE KEY-----"));
        super::check_pair(&c1, &k1).unwrap();
        assert!(super::check_pair(&c1, &k2).unwrap_err().contains("does not belong"));
        assert!(super::check_pair("junk", &k1).is_err());
    }
}
