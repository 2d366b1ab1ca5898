//! The gateway's own tokens: the claims a session gives an app, and their signing with
//! the current key. One place for both the OpenID Provider (ID tokens, userinfo) and the
//! ingress (the bearer token for the app), so a claim added here reaches every token.

use openssl::pkey::PKey;
use serde_json::{json, Value};

use crate::clock::Millis;
use crate::secret::Cipher;
use crate::state::Session;
use crate::store::Store;

/// Which of the session's claims a token carries.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    /// Everything the session knows (the ingress's token for the app).
    All,
    /// What an OIDC `scope` asks for (space-separated).
    Oidc(&'a str),
}

impl Scope<'_> {
    fn has(self, name: &str) -> bool {
        match self {
            Scope::All => true,
            Scope::Oidc(s) => s.split(' ').any(|x| x == name),
        }
    }
}

/// The session's claims about the user, as the scope allows (OIDC Core 5.4): `sub` and
/// `sid` (the session's public name, never its id) always; `email` adds email and
/// email_verified; `profile` adds name, username, the stored profile (given and family
/// name, picture) and the connection signed in with; `groups` adds the groups.
pub fn user(s: &Session, scope: Scope<'_>) -> Value {
    let mut c = json!({
        "sub": s.user_id,
        "sid": crate::state::public_sid(&s.id),
    });
    if scope.has("email") {
        c["email"] = json!(s.email);
        c["email_verified"] = json!(s.email_verified);
    }
    if scope.has("profile") {
        c["name"] = json!(s.name);
        c["preferred_username"] = json!(s.username);
        c["connection"] = json!(s.connection_id);
        let p = &s.profile;
        for (k, v) in [("given_name", &p.given_name), ("family_name", &p.family_name), ("picture", &p.picture)] {
            if let Some(v) = v {
                c[k] = json!(v);
            }
        }
    }
    if scope.has("groups") {
        c["groups"] = json!(s.groups);
    }
    c
}

/// A token's claims: [`user`]'s plus the issuer, audience and lifetime.
pub fn token(issuer: &str, audience: &str, s: &Session, scope: Scope<'_>, now: Millis, expires: Millis) -> Value {
    let mut c = user(s, scope);
    c["iss"] = json!(issuer);
    c["aud"] = json!(audience);
    c["iat"] = json!(now / 1000);
    c["exp"] = json!(expires / 1000);
    c
}

/// Signs claims with the gateway's current signing key.
pub async fn sign(store: &dyn Store, cipher: &Cipher, claims: &Value) -> Result<String, String> {
    sign_typed(store, cipher, "JWT", claims).await
}

/// [`sign`] with the JOSE `typ` given (`logout+jwt` for logout tokens).
pub async fn sign_typed(store: &dyn Store, cipher: &Cipher, typ: &str, claims: &Value) -> Result<String, String> {
    let keys = store.signing_key_list().await.map_err(|e| e.to_string())?;
    let key = keys.iter().find(|k| k.retired_at.is_none()).ok_or("no active signing key")?;
    let pem = cipher.open(&format!("signing_key:{}", key.kid), &key.private_key).map_err(|e| e.to_string())?;
    let pkey = PKey::private_key_from_pem(&pem).map_err(|e| e.to_string())?;
    super::jws::sign_typed(&pkey, &key.alg, &key.kid, typ, claims).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ingress_and_id_tokens_carry_the_same_user_claims() {
        let mut s = crate::testkit::session("sess-1", "usr_a", "con_a", &["Users", "Eng"], 1_000_000);
        s.profile.given_name = Some("Ada".into());
        let all = token("https://sso", "app", &s, Scope::All, 1_000_000, 2_000_000);
        let oidc = token("https://sso", "client", &s, Scope::Oidc("openid email profile groups"), 1_000_000, 2_000_000);
        for k in ["sub", "email", "email_verified", "name", "preferred_username", "groups", "connection", "sid", "given_name", "iss", "iat", "exp"] {
            assert_eq!(all[k], oidc[k], "{k}");
        }
        assert_ne!(all["sid"], json!("sess-1"), "the sid never is the session's id");
        let bare = token("i", "a", &s, Scope::Oidc("openid"), 0, 1);
        for k in ["given_name", "email", "name", "groups", "connection", "preferred_username"] {
            assert!(bare.get(k).is_none(), "openid alone: no {k}");
        }
    }
}
