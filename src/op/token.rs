//! `/token` (the `authorization_code` and `refresh_token` grants) and `/userinfo`.
//! Codes are single use, short-lived, bound to client, redirect URI and PKCE; a second
//! use of a code revokes what the first issued (RFC 6749 4.1.2). Every token lives
//! within the gateway session: none outlives it.

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::authorize::CodeGrant;
use super::client_auth::{self, Credentials};
use super::refresh::{self, Presented, RefreshRecord};
use super::{access_key, clients, hashed, oauth_error, store_unavailable, AccessRecord, TOKEN_TTL_MS};
use crate::app::AppState;
use crate::clock::Millis;
use crate::state::Session;
use crate::store::Client;

/// `/token` form (no `Debug`: it holds the client secret, the code, the tokens).
#[derive(Deserialize)]
pub struct TokenForm {
    grant_type: Option<String>,
    code: Option<String>,
    redirect_uri: Option<String>,
    code_verifier: Option<String>,
    refresh_token: Option<String>,
    scope: Option<String>,
    #[serde(flatten)]
    credentials: Credentials,
}

/// What a code exchange issued, kept under the code's hash so that a second use of the
/// code can revoke it.
#[derive(Serialize, Deserialize)]
struct Issued {
    access: String,
    family: Option<String>,
    /// When the session ends: how long the family's revocation must be remembered.
    #[serde(default)]
    until: Millis,
}

fn invalid_grant(why: &str) -> Response {
    oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", why)
}

/// Exchanges a code or a refresh token for tokens.
pub async fn token(State(app): State<AppState>, headers: HeaderMap, Form(f): Form<TokenForm>) -> Response {
    let client = match client_auth::authenticate(&app, &headers, &f.credentials).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    match f.grant_type.as_deref() {
        Some("authorization_code") => code_grant(&app, &client, &f).await,
        Some("refresh_token") if clients::allows_refresh(&client) => refresh_grant(&app, &client, &f).await,
        Some("refresh_token") => oauth_error(StatusCode::BAD_REQUEST, "unauthorized_client", "this client is not allowed the refresh_token grant"),
        None => oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "grant_type is required"),
        Some(_) => oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type", "grant_type must be authorization_code or refresh_token"),
    }
}

async fn code_grant(app: &AppState, client: &Client, f: &TokenForm) -> Response {
    let Some(code) = f.code.as_deref() else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "code is required");
    };
    let code_key = hashed(code);
    // Single use: taken here; a second exchange finds nothing.
    let grant: Option<CodeGrant> = match app.ephemeral.take(&format!("code:{code_key}")).await {
        Ok(v) => v.and_then(|s| serde_json::from_str(&s).ok()),
        Err(e) => return store_unavailable("token", e),
    };
    let Some(grant) = grant else {
        // RFC 6749 4.1.2: a code used twice revokes the tokens issued from it.
        match app.ephemeral.take(&format!("code-issued:{code_key}")).await {
            Ok(Some(raw)) => {
                if let Ok(issued) = serde_json::from_str::<Issued>(&raw) {
                    tracing::warn!(client_id = %client.client_id, "an authorization code was used twice: the tokens issued from it are revoked");
                    let _ = app.ephemeral.take(&format!("at:{}", issued.access)).await;
                    if let Some(family) = issued.family {
                        if let Err(e) = refresh::revoke_family(app, &family, issued.until).await {
                            return store_unavailable("token", e);
                        }
                    }
                }
            }
            Ok(None) => {}
            Err(e) => return store_unavailable("token", e),
        }
        return invalid_grant("the code is unknown, expired or already used");
    };
    if grant.client_id != client.client_id || f.redirect_uri.as_deref() != Some(grant.redirect_uri.as_str()) {
        return invalid_grant("the code was issued to another client or redirect_uri");
    }
    match (&grant.challenge, f.code_verifier.as_deref()) {
        (None, Some(_)) => return invalid_grant("code_verifier was sent, but the authorization request had no code_challenge"),
        (None, None) => {}
        (Some(_), None) => return invalid_grant("code_verifier is required"),
        (Some((challenge, method)), Some(verifier)) => {
            let computed = if method == "S256" { B64URL.encode(Sha256::digest(verifier.as_bytes())) } else { verifier.to_string() };
            if !bool::from(subtle::ConstantTimeEq::ct_eq(computed.as_bytes(), challenge.as_bytes())) {
                return invalid_grant("code_verifier does not match the code_challenge");
            }
        }
    }
    let now = app.clock.now();
    let session = match app.sessions.touch(&grant.session_id, now).await {
        Ok(Some(s)) => s,
        Ok(None) => return invalid_grant("the session behind this code has ended"),
        Err(e) => return store_unavailable("token", e),
    };
    // Refresh tokens only where the client may have them and asked (OIDC Core 11).
    let family = (clients::allows_refresh(client) && grant.scope.split(' ').any(|s| s == "offline_access")).then(refresh::new_family);
    let issued = match issue(app, client, &session, &grant.scope, grant.nonce.as_deref(), family.as_deref().map(|f| (f, 0)), &grant.scope).await {
        Ok(i) => i,
        Err(r) => return r,
    };
    let record = Issued { access: hashed(&issued.access_token), family, until: session.expires_at };
    let ttl = issued.expires_in * 1000;
    if let Err(e) = app.ephemeral.put_new(&format!("code-issued:{code_key}"), &serde_json::to_string(&record).unwrap_or_default(), ttl).await {
        return store_unavailable("token", e);
    }
    issued.into_response()
}

async fn refresh_grant(app: &AppState, client: &Client, f: &TokenForm) -> Response {
    let Some(token) = f.refresh_token.as_deref() else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "refresh_token is required");
    };
    // The scope is checked before the token is spent: a refused request costs nothing.
    let asked = f.scope.as_deref().filter(|s| !s.is_empty());
    if let Some(asked) = asked {
        match refresh::peek(app, token).await {
            Ok(Some(rec)) => {
                let granted: Vec<&str> = rec.scope.split(' ').collect();
                if let Some(extra) = asked.split(' ').filter(|s| !s.is_empty()).find(|s| !granted.contains(s)) {
                    return oauth_error(StatusCode::BAD_REQUEST, "invalid_scope", &format!("scope {extra:?} was not granted to this refresh token"));
                }
            }
            Ok(None) => {}
            Err(e) => return store_unavailable("token", e),
        }
    }
    let rec = match refresh::present(app, token).await {
        Ok(Presented::Live(rec)) => rec,
        Ok(Presented::Reused(family, until)) => {
            tracing::warn!(client_id = %client.client_id, "a spent refresh token was presented again: its family is revoked");
            if let Err(e) = refresh::revoke_family(app, &family, until).await {
                return store_unavailable("token", e);
            }
            return invalid_grant("the refresh token was already used; every token of its grant is now revoked");
        }
        Ok(Presented::Unknown) => return invalid_grant("the refresh token is unknown, expired or revoked"),
        Err(e) => return store_unavailable("token", e),
    };
    if rec.client_id != client.client_id {
        // Someone else's token: the family is not safe any more.
        let _ = refresh::revoke_family(app, &rec.family, rec.until).await;
        return invalid_grant("the refresh token was issued to another client");
    }
    if rec.generation >= refresh::ROTATIONS_MAX {
        return invalid_grant("this grant has been refreshed as often as it may be; sign in again");
    }
    let scope = match asked {
        Some(a) if a.split(' ').all(|s| s.is_empty() || rec.scope.split(' ').any(|g| g == s)) => a.to_string(),
        Some(_) => return oauth_error(StatusCode::BAD_REQUEST, "invalid_scope", "the scope asked was not granted to this refresh token"),
        None => rec.scope.clone(),
    };
    let now = app.clock.now();
    let session = match app.sessions.touch(&rec.session_id, now).await {
        Ok(Some(s)) => s,
        Ok(None) => return invalid_grant("the session behind this refresh token has ended"),
        Err(e) => return store_unavailable("token", e),
    };
    match issue(app, client, &session, &scope, None, Some((&rec.family, rec.generation + 1)), &rec.scope).await {
        Ok(i) => i.into_response(),
        Err(r) => r,
    }
}

/// A token answer (RFC 6749 5.1).
struct Tokens {
    access_token: String,
    id_token: String,
    refresh_token: Option<String>,
    expires_in: i64,
    scope: String,
}

impl IntoResponse for Tokens {
    fn into_response(self) -> Response {
        let mut body =
            json!({"access_token": self.access_token, "token_type": "Bearer", "expires_in": self.expires_in, "id_token": self.id_token, "scope": self.scope});
        if let Some(r) = self.refresh_token {
            body["refresh_token"] = json!(r);
        }
        ([(header::CACHE_CONTROL, "no-store"), (header::PRAGMA, "no-cache")], Json(body)).into_response()
    }
}

fn lifetime(seconds: Option<u32>) -> Millis {
    seconds.map_or(TOKEN_TTL_MS, |s| i64::from(s) * 1000)
}

/// Signs an ID token and makes an access token (and, with `family`, the family's next
/// refresh token carrying `refresh_scope`) for `session`; registers the client for the
/// session's back-channel logout.
async fn issue(
    app: &AppState,
    client: &Client,
    session: &Session,
    scope: &str,
    nonce: Option<&str>,
    family: Option<(&str, u32)>,
    refresh_scope: &str,
) -> Result<Tokens, Response> {
    let now = app.clock.now();
    let id_exp = (now + lifetime(client.settings.id_token_lifetime_seconds)).min(session.expires_at);
    let at_exp = (now + lifetime(client.settings.access_token_lifetime_seconds)).min(session.expires_at);
    let claims = id_token_claims(app, session, scope, &client.client_id, nonce, now, id_exp);
    let id_token = match crate::token::claims::sign(app.store.as_ref(), &app.cipher, &claims).await {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "could not sign the session token");
            return Err(oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "could not sign the token"));
        }
    };
    let access = crate::id::token(32);
    let record = AccessRecord {
        session_id: session.id.clone(),
        client_id: client.client_id.clone(),
        scope: scope.to_string(),
        iat: now,
        exp: at_exp,
        family: family.map(|(f, _)| f.to_string()),
    };
    // Never hand out a token /userinfo would then refuse.
    match app.ephemeral.put_new(&access_key(&access), &serde_json::to_string(&record).unwrap_or_default(), at_exp - now).await {
        Ok(true) => {}
        Ok(false) => return Err(store_unavailable("token", crate::state::StateError("a fresh access token was not kept".into()))),
        Err(e) => return Err(store_unavailable("token", e)),
    }
    let refresh_token = match family {
        Some((f, generation)) => {
            let rec = RefreshRecord {
                family: f.to_string(),
                session_id: session.id.clone(),
                client_id: client.client_id.clone(),
                scope: refresh_scope.to_string(),
                generation,
                until: session.expires_at,
            };
            match refresh::issue(app, &rec).await {
                Ok(t) => Some(t),
                Err(e) => return Err(store_unavailable("token", e)),
            }
        }
        None => None,
    };
    if client.settings.backchannel_logout_uri.is_some() {
        super::backchannel::register(app, session, &client.client_id).await;
    }
    Ok(Tokens { access_token: access, id_token, refresh_token, expires_in: ((at_exp - now) / 1000).max(1), scope: scope.to_string() })
}

fn id_token_claims(app: &AppState, s: &Session, scope: &str, aud: &str, nonce: Option<&str>, now: i64, exp: i64) -> Value {
    let mut c = crate::token::claims::token(&app.config.public_base(), aud, s, crate::token::claims::Scope::Oidc(scope), now, exp);
    c["auth_time"] = json!(s.auth_time.unwrap_or(s.created_at) / 1000);
    c["azp"] = json!(aud);
    if let Some(n) = nonce {
        c["nonce"] = json!(n);
    }
    c
}

/// `/userinfo`: the session's claims for a bearer access token, as its scope allows.
pub async fn userinfo(State(app): State<AppState>, headers: HeaderMap) -> Response {
    let bearer = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")).map(str::trim);
    let unauthorized = || {
        let mut r = (StatusCode::UNAUTHORIZED, Json(json!({"error": "invalid_token"}))).into_response();
        r.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer error=\"invalid_token\""));
        r
    };
    let Some(token) = bearer else { return unauthorized() };
    let rec = match super::access_record(&app, token).await {
        Ok(Some(r)) => r,
        Ok(None) => return unauthorized(),
        Err(e) => return store_unavailable("userinfo", e),
    };
    match app.sessions.touch(&rec.session_id, app.clock.now()).await {
        Ok(Some(s)) => Json(crate::token::claims::user(&s, crate::token::claims::Scope::Oidc(&rec.scope))).into_response(),
        Ok(None) => unauthorized(),
        Err(e) => store_unavailable("userinfo", e),
    }
}
