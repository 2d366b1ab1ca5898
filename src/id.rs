//! Random identifiers: URL-safe, prefixed by what they name, never reused.

use rand::Rng;

const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyz23456789";

/// A new identifier such as `con_7kq2m4x9c3tpa8wz`: a prefix and 16 characters
/// (80 random bits) from an alphabet without look-alike characters.
pub fn new(prefix: &str) -> String {
    let mut rng = rand::thread_rng();
    let body: String = (0..16).map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char).collect();
    format!("{prefix}_{body}")
}

/// A random token of `bytes` random bytes, base64url without padding.
pub fn token(bytes: usize) -> String {
    use base64::Engine;
    let mut buf = vec![0u8; bytes];
    rand::thread_rng().fill(&mut buf[..]);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}

/// Whether `s` looks like an id we could have made: short and URL-safe.
pub fn is_wellformed(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_url_safe_and_distinct() {
        let a = super::new("con");
        let b = super::new("con");
        assert_ne!(a, b);
        assert!(a.starts_with("con_") && a.len() == 20);
        assert!(super::is_wellformed(&a));
        assert!(!super::is_wellformed("../etc"));
    }
}
