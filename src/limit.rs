//! Bounds on what clients can make the gateway keep or do: length caps for every value
//! kept server side, per-client rate limits on unauthenticated login starts and
//! callbacks, and who "the client" is (the peer, or the address a trusted proxy reports).
//!
//! The caps are far above what real clients send (OIDC clients use 22 to 64 characters
//! of `state` and `nonce`; a scope list rarely passes 200) and far below what would let a
//! flood grow memory: the largest flow state or code stays under 8 KB.

/// `return_to` of a login start (a local path or an allowed URL). It carries a whole
/// `/authorize` request back after sign-in, hence more than `rd`'s 2048.
pub const RETURN_TO_MAX: usize = 4096;
/// `login_hint`, passed on to the IdP.
pub const LOGIN_HINT_MAX: usize = 256;
/// `/authorize`'s `state`, echoed to the client.
pub const STATE_MAX: usize = 512;
/// `/authorize`'s `nonce`, kept with the code and put in the ID token.
pub const NONCE_MAX: usize = 512;
/// `/authorize`'s `scope`, kept with the code and the access token.
pub const SCOPE_MAX: usize = 1024;
/// PKCE `code_challenge` (RFC 7636: 43 to 128 characters).
pub const CODE_CHALLENGE_MAX: usize = 128;
/// SAML `RelayState` posted back to the ACS (the SAML bindings say 80 bytes; IdP-initiated
/// logins put URLs there).
pub const RELAY_STATE_MAX: usize = 1024;

/// The sentence refusing `name` when `value` is longer than `max` bytes.
pub fn too_long(name: &str, value: Option<&str>, max: usize) -> Option<String> {
    value.filter(|v| v.len() > max).map(|_| format!("The {name} parameter is longer than {max} bytes; this sign-in service does not keep values that long."))
}
