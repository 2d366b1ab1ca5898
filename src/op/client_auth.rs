//! Who the client at `/token`, `/revoke` and `/introspect` is (OIDC Core 9, RFC 6749
//! 2.3): a secret by HTTP Basic or in the form, a JWT signed with one of its registered
//! keys (`private_key_jwt`, RFC 7523), or a public client naming itself (no secret, PKCE
//! instead). One method per request: a Basic header and a differing form `client_id`,
//! or a secret sent twice, is refused.

use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use base64::Engine;
use serde::Deserialize;
use serde_json::Value;
use subtle::ConstantTimeEq;

use super::{clients, oauth_error};
use crate::app::AppState;
use crate::store::{Client, ClientAuthMethod};

/// Algorithms a client assertion may be signed with.
pub const ASSERTION_ALGS: &[&str] = &["RS256", "PS256", "ES256", "EdDSA"];

/// RFC 7523 2.2's assertion type.
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The longest a client assertion may be valid for: a replayable credential is short.
const ASSERTION_MAX_LIFE_MS: i64 = 10 * 60 * 1000;

/// The client credentials a form may carry (no `Debug`: they are secrets).
#[derive(Default, Deserialize)]
pub struct Credentials {
    pub(crate) client_id: Option<String>,
    pub(crate) client_secret: Option<String>,
    pub(crate) client_assertion_type: Option<String>,
    pub(crate) client_assertion: Option<String>,
}

fn invalid_client(why: &str) -> Response {
    oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", why)
}

fn basic_credentials(headers: &HeaderMap) -> Option<Result<(String, String), ()>> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let b = v.strip_prefix("Basic ")?;
    let parse = || -> Option<(String, String)> {
        let raw = base64::engine::general_purpose::STANDARD.decode(b.trim()).ok()?;
        let text = String::from_utf8(raw).ok()?;
        let (id, secret) = text.split_once(':')?;
        // RFC 6749 2.3.1: both parts are form-urlencoded before the Basic encoding.
        let dec = |s: &str| url::form_urlencoded::parse(format!("x={s}").as_bytes()).next().map(|(_, v)| v.into_owned());
        Some((dec(id)?, dec(secret)?))
    };
    Some(parse().ok_or(()))
}

fn secret_matches(c: &Client, secret: &str) -> bool {
    bool::from(clients::secret_hash(secret).as_bytes().ct_eq(c.secret_sha256.as_bytes()))
}

/// The authenticated client, or the 401/400 answer saying why not.
pub async fn authenticate(app: &AppState, headers: &HeaderMap, f: &Credentials) -> Result<Client, Response> {
    let basic = match basic_credentials(headers) {
        Some(Ok(c)) => Some(c),
        Some(Err(())) => return Err(invalid_client("the Authorization header is not valid HTTP Basic")),
        None => None,
    };
    if let Some((id, secret)) = basic {
        if f.client_id.as_deref().is_some_and(|form| form != id) {
            return Err(invalid_client("the client_id in the form differs from the one in the Authorization header"));
        }
        if f.client_secret.is_some() || f.client_assertion.is_some() {
            return Err(oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "use one client authentication method per request (HTTP Basic, or the form)"));
        }
        let c = clients::find(app, &id).await.filter(|c| secret_matches(c, &secret) && secret_client(c));
        return c.ok_or_else(|| invalid_client("unknown client or wrong secret"));
    }
    if let Some(assertion) = &f.client_assertion {
        if f.client_secret.is_some() {
            return Err(oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "use one client authentication method per request"));
        }
        if f.client_assertion_type.as_deref() != Some(JWT_BEARER) {
            return Err(invalid_client("client_assertion_type must be urn:ietf:params:oauth:client-assertion-type:jwt-bearer"));
        }
        return assertion_client(app, f.client_id.as_deref(), assertion).await;
    }
    let Some(id) = f.client_id.as_deref() else {
        return Err(invalid_client("authenticate with client_secret_basic, client_secret_post or private_key_jwt"));
    };
    let Some(c) = clients::find(app, id).await else { return Err(invalid_client("unknown client or wrong secret")) };
    match (&f.client_secret, c.settings.token_endpoint_auth_method) {
        (Some(secret), _) if secret_client(&c) && secret_matches(&c, secret) => Ok(c),
        (None, ClientAuthMethod::None) => Ok(c),
        (None, ClientAuthMethod::PrivateKeyJwt) => Err(invalid_client("this client authenticates with private_key_jwt")),
        _ => Err(invalid_client("unknown client or wrong secret")),
    }
}

/// Whether the client is public (`token_endpoint_auth_method` `none`): it names itself
/// and proves nothing, which is enough where it acts on its own tokens (`/token` with
/// PKCE, `/revoke`, RFC 7009 5) but not to be told about tokens (`/introspect`).
pub fn is_public(c: &Client) -> bool {
    c.settings.token_endpoint_auth_method == ClientAuthMethod::None
}

/// Whether the client authenticates with its secret (a `private_key_jwt` or public
/// client has none that counts).
fn secret_client(c: &Client) -> bool {
    matches!(c.settings.token_endpoint_auth_method, ClientAuthMethod::ClientSecretBasic | ClientAuthMethod::ClientSecretPost)
}

/// `private_key_jwt`: a JWT whose `iss` and `sub` are the client, whose `aud` is this
/// gateway (issuer or token endpoint), unexpired and short-lived, used once, signed
/// with one of the client's registered keys.
async fn assertion_client(app: &AppState, form_id: Option<&str>, assertion: &str) -> Result<Client, Response> {
    use crate::token::jws;
    if assertion.len() > 8192 {
        return Err(invalid_client("client_assertion is longer than 8192 bytes"));
    }
    let parsed = jws::parse(assertion).map_err(|_| invalid_client("client_assertion is not a well-formed JWT"))?;
    let alg = parsed.header.alg.as_str();
    if !ASSERTION_ALGS.contains(&alg) {
        return Err(invalid_client("client_assertion is signed with an algorithm not accepted here (RS256, PS256, ES256, EdDSA)"));
    }
    let claims = &parsed.claims;
    let s = |k: &str| claims.get(k).and_then(Value::as_str);
    let Some(id) = s("iss").filter(|iss| s("sub") == Some(iss)) else {
        return Err(invalid_client("client_assertion must have iss and sub both the client_id"));
    };
    if form_id.is_some_and(|f| f != id) {
        return Err(invalid_client("the client_id in the form differs from the assertion's"));
    }
    let Some(c) = clients::find(app, id).await.filter(|c| c.settings.token_endpoint_auth_method == ClientAuthMethod::PrivateKeyJwt) else {
        return Err(invalid_client("unknown client, or the client does not authenticate with private_key_jwt"));
    };
    let base = app.config.public_base();
    let ours = [base.clone(), format!("{base}/token"), format!("{base}/revoke"), format!("{base}/introspect")];
    let aud_ok = match claims.get("aud") {
        Some(Value::String(a)) => ours.contains(a),
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).any(|a| ours.iter().any(|o| o == a)),
        _ => false,
    };
    if !aud_ok {
        return Err(invalid_client("client_assertion's aud must be this gateway's issuer or token endpoint"));
    }
    let now = app.clock.now();
    let skew = (app.config.login.clock_skew_seconds * 1000) as i64;
    let exp = claims.get("exp").and_then(Value::as_i64).map(|e| e.saturating_mul(1000));
    let Some(exp) = exp.filter(|e| *e > now - skew) else {
        return Err(invalid_client("client_assertion has no exp, or it has expired"));
    };
    if exp > now + ASSERTION_MAX_LIFE_MS + skew {
        return Err(invalid_client("client_assertion is valid for too long (exp at most 10 minutes ahead)"));
    }
    let Some(jti) = s("jti").filter(|j| !j.is_empty() && j.len() <= 256) else {
        return Err(invalid_client("client_assertion needs a jti (at most 256 characters)"));
    };
    let kid = parsed.header.kid.as_deref();
    let keys: Vec<Value> = match (&c.settings.jwks, &c.settings.jwks_uri) {
        (Some(set), _) => set
            .get("keys")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|k| jws::key_fits(k, alg))
            .filter(|k| kid.is_none_or(|kid| k.get("kid").and_then(Value::as_str) == Some(kid)))
            .cloned()
            .collect(),
        (None, Some(uri)) => app.jwks.candidates(uri, kid, alg).await.map_err(|e| {
            tracing::info!(client_id = %c.client_id, error = %e, "the client's jwks_uri could not be read");
            invalid_client("the client's jwks_uri could not be read")
        })?,
        (None, None) => Vec::new(),
    };
    let verified = keys.iter().filter_map(|k| jws::public_key(k).ok()).any(|k| jws::verify(&parsed, &k).is_ok());
    if !verified {
        return Err(invalid_client("client_assertion's signature does not verify with the client's registered keys"));
    }
    // Single use (RFC 7523 3): kept until it expires.
    match app.ephemeral.put_new(&format!("client-jti:{}:{}", c.client_id, super::hashed(jti)), "1", (exp - now + skew).max(1000)).await {
        Ok(true) => Ok(c),
        Ok(false) => Err(invalid_client("client_assertion was already used (jti)")),
        Err(e) => Err(super::store_unavailable("client authentication", e)),
    }
}
