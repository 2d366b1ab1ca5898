//! Secrets: a string type that never prints, and the cipher that keeps secrets
//! encrypted at rest (AES-256-GCM under the master key).
//!
//! Every ciphertext is bound to where it is stored (the associated data names the row
//! and field), so a ciphertext copied into another row does not decrypt.

use std::fmt;
use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, OsRng, Payload};
use aes_gcm::{AeadCore, Aes256Gcm, Key, Nonce};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::{Deserialize, Deserializer};

/// A secret value (client secret, token, key). `Debug` and `Display` print
/// `[redacted]`; the value is reachable only through [`Secret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself: call only where it is used, never to log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

/// What can go wrong with the master key or a ciphertext.
#[derive(Debug, thiserror::Error)]
pub enum CipherError {
    /// The master key text is not 32 bytes in base64 or hex.
    #[error("the master key must be 32 bytes, given as base64 or 64 hex characters")]
    BadKey,
    /// Reading or writing the master key file failed.
    #[error("could not {action} the master key file {path}")]
    KeyFile {
        /// What was attempted.
        action: &'static str,
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A ciphertext did not decrypt: wrong master key, or tampered data.
    #[error("a stored secret could not be decrypted (wrong master key, or the data was altered)")]
    Decrypt,
    /// A stored value is not in our ciphertext format.
    #[error("a stored secret is not in the expected format")]
    Format,
}

/// AES-256-GCM under the master key.
#[derive(Clone)]
pub struct Cipher {
    key: Key<Aes256Gcm>,
}

impl fmt::Debug for Cipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Cipher([redacted])")
    }
}

const PREFIX: &str = "v1:";

impl Cipher {
    /// A cipher from master key text: base64 (standard or URL-safe) or hex of 32 bytes.
    pub fn from_text(text: &str) -> Result<Self, CipherError> {
        let t = text.trim();
        let bytes = if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex::decode(t).map_err(|_| CipherError::BadKey)?
        } else {
            B64.decode(t).or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(t)).map_err(|_| CipherError::BadKey)?
        };
        if bytes.len() != 32 {
            return Err(CipherError::BadKey);
        }
        Ok(Self { key: *Key::<Aes256Gcm>::from_slice(&bytes) })
    }

    /// Reads the master key file, or creates it (mode 0600) with a fresh random key.
    /// Returns the cipher and whether the file was created.
    pub fn load_or_create(path: &Path) -> Result<(Self, bool), CipherError> {
        let shown = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(text) => Ok((Self::from_text(&text)?, false)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = Aes256Gcm::generate_key(OsRng);
                let text = B64.encode(key);
                write_private(path, &text).map_err(|source| CipherError::KeyFile { action: "create", path: shown, source })?;
                Ok((Self { key }, true))
            }
            Err(source) => Err(CipherError::KeyFile { action: "read", path: shown, source }),
        }
    }

    /// Encrypts `plain`, bound to `context` (for example `connection:ID:client_secret`).
    pub fn seal(&self, context: &str, plain: &[u8]) -> String {
        let cipher = Aes256Gcm::new(&self.key);
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        // Encryption with a valid key and a fresh nonce cannot fail for inputs this size.
        let ct = cipher.encrypt(&nonce, Payload { msg: plain, aad: context.as_bytes() }).unwrap_or_default();
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        format!("{PREFIX}{}", B64.encode(out))
    }

    /// Decrypts what [`Cipher::seal`] made for the same `context`.
    pub fn open(&self, context: &str, sealed: &str) -> Result<Vec<u8>, CipherError> {
        let body = sealed.strip_prefix(PREFIX).ok_or(CipherError::Format)?;
        let raw = B64.decode(body).map_err(|_| CipherError::Format)?;
        if raw.len() < 12 + 16 {
            return Err(CipherError::Format);
        }
        let (nonce, ct) = raw.split_at(12);
        Aes256Gcm::new(&self.key).decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad: context.as_bytes() }).map_err(|_| CipherError::Decrypt)
    }
}

/// Writes a file readable by its owner only (0600), creating missing parent folders
/// readable by their owner only (0700).
pub fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        crate::store::private_dir(dir)?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(text.as_bytes())?;
    f.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_debug_and_display_are_redacted() {
        let s = Secret::new("hunter2-very-secret");
        assert_eq!(format!("{s:?}"), "[redacted]");
        assert_eq!(format!("{s}"), "[redacted]");
        assert_eq!(format!("{:?}", Some(s.clone())), "Some([redacted])");
        assert_eq!(s.expose(), "hunter2-very-secret");
    }

    #[test]
    fn seal_and_open_round_trip_bound_to_context() {
        let c = Cipher::from_text(&B64.encode([7u8; 32])).unwrap();
        let sealed = c.seal("connection:a:client_secret", b"s3cret");
        assert!(!sealed.contains("s3cret"));
        assert_eq!(c.open("connection:a:client_secret", &sealed).unwrap(), b"s3cret");
        assert!(matches!(c.open("connection:b:client_secret", &sealed), Err(CipherError::Decrypt)));
        let other = Cipher::from_text(&"ab".repeat(32)).unwrap();
        assert!(matches!(other.open("connection:a:client_secret", &sealed), Err(CipherError::Decrypt)));
        assert!(format!("{c:?}").contains("redacted"));
    }

    #[test]
    fn bad_master_keys_are_refused() {
        assert!(Cipher::from_text("short").is_err());
        assert!(Cipher::from_text(&B64.encode([1u8; 16])).is_err());
    }

    #[test]
    fn key_file_is_created_private_and_reread() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("certs/master.key");
        let (a, created) = Cipher::load_or_create(&path).unwrap();
        assert!(created);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (b, created) = Cipher::load_or_create(&path).unwrap();
        assert!(!created);
        assert_eq!(b.open("x", &a.seal("x", b"y")).unwrap(), b"y");
    }
}
