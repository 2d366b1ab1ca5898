//! OIDC relying party: the authorization request (state, nonce, PKCE), the code
//! exchange, and ID token verification — signature against the JWKS with an algorithm
//! allow-list, `iss`, `aud`, `azp`, `nonce`, `exp`/`iat`/`nbf` with a bounded skew, `at_hash`
//! — then claims from the ID token or the userinfo endpoint (whose `sub` must match).

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::jwks::JwksCache;
use super::{Begun, Context, Diagnostics, FlowState, Kept, Outbound, Reply, Start, UpstreamError, Verified};
use crate::clock::Millis;
use crate::connection::{ClaimMappings, ClientAuth, Connection, OidcSettings, Pkce, TENANT_PLACEHOLDER};
use crate::mapping::{self, Identity};
use crate::token::jws;

const MAX_BODY: usize = 512 * 1024;

/// Random URL-safe text of `bytes` bytes of entropy.
fn random(bytes: usize) -> String {
    crate::id::token(bytes)
}

/// Builds the authorization request: `state` (the flow's key), nonce and PKCE verifier
/// kept with the flow, and the URL to send the browser to.
pub fn begin(conn: &Connection, o: &OidcSettings, start: Start<'_>) -> Result<Begun, UpstreamError> {
    let state = random(32);
    let nonce = random(32);
    let verifier = (o.code_challenge_method != Pkce::None).then(|| random(48));
    let mut url = url::Url::parse(&o.authorization_endpoint).map_err(|_| UpstreamError::Unavailable("the authorization endpoint is not a URL".into()))?;
    let scopes: Vec<&str> = o.scopes.iter().chain(o.additional_scopes.iter()).map(String::as_str).collect();
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("response_type", "code")
            .append_pair("client_id", &o.client_id)
            .append_pair("redirect_uri", &conn.callback_url(start.public_base))
            .append_pair("scope", &scopes.join(" "))
            .append_pair("state", &state)
            .append_pair("nonce", &nonce);
        if let Some(h) = start.login_hint {
            q.append_pair("login_hint", h);
        }
        if start.force_authn {
            q.append_pair("prompt", "login");
        }
        if let Some(v) = &verifier {
            let (challenge, method) = match o.code_challenge_method {
                Pkce::S256 => (B64URL.encode(Sha256::digest(v.as_bytes())), "S256"),
                _ => (v.clone(), "plain"),
            };
            q.append_pair("code_challenge", &challenge).append_pair("code_challenge_method", method);
        }
    }
    let flow = FlowState {
        connection_id: conn.id.clone(),
        browser: start.browser,
        return_to: start.return_to,
        created_at: start.now,
        kept: Kept::Oidc { nonce, pkce_verifier: verifier },
        purpose: start.purpose,
        force_authn: start.force_authn,
    };
    Ok(Begun { key: state, flow, outbound: Outbound::Redirect(url.into()) })
}

#[derive(Deserialize)]
struct TokenResponse {
    id_token: Option<String>,
    access_token: Option<String>,
}

#[derive(Debug, Deserialize)]
struct OAuthError {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

/// Revokes `token` at the IdP's revocation endpoint (RFC 7009), when it has one.
pub async fn revoke(conn: &Connection, o: &OidcSettings, token: &str, http: &reqwest::Client) {
    let Some(endpoint) = &o.revocation_endpoint else { return };
    let secret = conn.secrets.client_secret.clone().unwrap_or_default();
    let mut form = vec![("token", token.to_string()), ("token_type_hint", "access_token".to_string())];
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let mut req = http.post(endpoint);
    // The client authenticates as it does at the token endpoint (RFC 7009 section 2.1).
    match o.token_endpoint_auth_method {
        ClientAuth::ClientSecretBasic => req = req.basic_auth(enc(&o.client_id), Some(enc(&secret))),
        ClientAuth::ClientSecretPost => form.extend([("client_id", o.client_id.clone()), ("client_secret", secret)]),
        ClientAuth::None => form.push(("client_id", o.client_id.clone())),
        ClientAuth::PrivateKeyJwt | ClientAuth::ClientSecretJwt => {
            // Sign-out has no injected clock; the assertion's minute starts now.
            let Ok(assertion) = client_assertion(conn, o, crate::clock::Clock::system().now()) else {
                tracing::warn!(connection = %conn.id, "upstream revocation skipped: the client assertion could not be signed");
                return;
            };
            form.extend([("client_id", o.client_id.clone()), ("client_assertion_type", JWT_BEARER.to_string()), ("client_assertion", assertion)]);
        }
    }
    let req = req.form(&form);
    match req.send().await {
        Ok(r) if r.status().is_success() => tracing::info!(connection = %conn.id, "upstream token revoked"),
        Ok(r) => tracing::warn!(connection = %conn.id, status = r.status().as_u16(), "upstream revocation refused"),
        Err(e) => tracing::warn!(connection = %conn.id, cause = %crate::outbound::describe(&e), "upstream revocation endpoint unreachable"),
    }
}

/// Tuning of the checks.
#[derive(Debug, Clone, Copy)]
pub struct Checks {
    /// Now.
    pub now: Millis,
    /// Allowed clock difference with the IdP.
    pub skew_ms: Millis,
}

fn invalid(msg: impl Into<String>) -> UpstreamError {
    UpstreamError::Invalid(msg.into())
}

/// RFC 9207: the authorization response's `iss`, when present, is the connection's issuer
/// byte for byte; when the IdP's discovery says it sends one, it must be there.
pub fn check_response_issuer(o: &OidcSettings, iss: Option<&str>) -> Result<(), UpstreamError> {
    match iss {
        Some(iss) if !issuer_matches(o, iss) => Err(invalid("the sign-in reply's iss names another issuer (RFC 9207)")),
        Some(_) => Ok(()),
        None if o.authorization_response_iss_parameter_supported => {
            Err(invalid("the sign-in reply has no iss, which this identity provider says it always sends (RFC 9207)"))
        }
        None => Ok(()),
    }
}

/// Whether `iss` names this connection's issuer: the issuer itself or one of its aliases,
/// byte for byte; for a multi-tenant template, the template with an allowed tenant put in.
fn issuer_matches(o: &OidcSettings, iss: &str) -> bool {
    if o.is_multi_tenant() {
        return o.allowed_tenants.iter().any(|t| o.issuer.replacen(TENANT_PLACEHOLDER, t, 1) == iss);
    }
    iss == o.issuer || o.issuer_aliases.iter().any(|a| a == iss)
}

/// The ID token's `iss`: the issuer (or an alias) byte for byte; with a multi-tenant
/// template (Entra ID `common` / `organizations`), the template with the token's own
/// `tid` put in, and then that tenant must be on the connection's allow-list.
fn check_issuer(o: &OidcSettings, c: &Value) -> Result<(), UpstreamError> {
    let iss = c.get("iss").and_then(Value::as_str).ok_or_else(|| invalid("the ID token comes from another issuer"))?;
    if !o.is_multi_tenant() {
        return if iss == o.issuer || o.issuer_aliases.iter().any(|a| a == iss) { Ok(()) } else { Err(invalid("the ID token comes from another issuer")) };
    }
    let tid = c.get("tid").and_then(Value::as_str).filter(|t| crate::connection::input::safe_tenant(t));
    let tid = tid.ok_or_else(|| invalid("the ID token has no usable tid, which a multi-tenant issuer ({tenantid}) needs"))?;
    if o.issuer.replacen(TENANT_PLACEHOLDER, tid, 1) != iss {
        return Err(invalid("the ID token comes from another issuer (its iss is not the issuer template with its own tid)"));
    }
    if !o.allowed_tenants.iter().any(|t| t.eq_ignore_ascii_case(tid)) {
        return Err(UpstreamError::NotAllowed(format!("the tenant {tid} may not sign in through this connection (it is not in allowed_tenants)")));
    }
    Ok(())
}

/// A client assertion (RFC 7523 section 2.2) for the token endpoint: `iss` and `sub` the
/// client id, `aud` the token endpoint, a fresh `jti`, one minute of life. Signed with
/// the connection's private key (`private_key_jwt`, RS256) or the client secret
/// (`client_secret_jwt`, HS256).
pub fn client_assertion(conn: &Connection, o: &OidcSettings, now: Millis) -> Result<String, UpstreamError> {
    let now_s = now / 1000;
    let claims = serde_json::json!({
        "iss": o.client_id, "sub": o.client_id, "aud": o.token_endpoint,
        "jti": random(24), "iat": now_s, "exp": now_s + 60,
    });
    let unusable = |what: &str| UpstreamError::Unavailable(format!("the client assertion could not be signed ({what})"));
    match o.token_endpoint_auth_method {
        ClientAuth::PrivateKeyJwt => {
            let pem = conn.secrets.client_private_key.as_deref().ok_or_else(|| unusable("no client key pair"))?;
            let key = openssl::pkey::PKey::private_key_from_pem(pem.as_bytes()).map_err(|_| unusable("the client key is unusable"))?;
            let kid = o.client_jwk.as_ref().and_then(|j| j.get("kid")).and_then(Value::as_str).unwrap_or_default();
            jws::sign(&key, "RS256", kid, &claims).map_err(|_| unusable("signing failed"))
        }
        ClientAuth::ClientSecretJwt => {
            let secret = conn.secrets.client_secret.as_deref().ok_or_else(|| unusable("no client secret"))?;
            let header = serde_json::json!({"alg": "HS256", "typ": "JWT"});
            let input = format!("{}.{}", B64URL.encode(header.to_string()), B64URL.encode(claims.to_string()));
            let key = openssl::pkey::PKey::hmac(secret.as_bytes()).map_err(|_| unusable("the client secret is unusable"))?;
            let mut signer = openssl::sign::Signer::new(openssl::hash::MessageDigest::sha256(), &key).map_err(|_| unusable("signing failed"))?;
            let mac = signer.update(input.as_bytes()).and_then(|_| signer.sign_to_vec()).map_err(|_| unusable("signing failed"))?;
            Ok(format!("{input}.{}", B64URL.encode(mac)))
        }
        _ => Err(unusable("the method takes no assertion")),
    }
}

/// RFC 7523's client assertion type.
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Checks the callback (issuer, error, code), exchanges the code and verifies everything;
/// returns the mapped identity.
pub async fn finish(
    conn: &Connection,
    o: &OidcSettings,
    flow: Option<&FlowState>,
    reply: &Reply,
    cx: &Context<'_>,
    report: &mut Diagnostics,
) -> Result<Verified, UpstreamError> {
    let (nonce, verifier) = match flow.map(|f| &f.kept) {
        Some(Kept::Oidc { nonce, pkce_verifier }) => (nonce.as_str(), pkce_verifier.as_deref()),
        // The generic step only lets an unsolicited reply through where the protocol
        // takes those, and OIDC never does.
        _ => return Err(invalid("this sign-in reply answers no sign-in of this connection")),
    };
    // RFC 9207 (mix-up defence), before anything of the reply is used, errors included.
    report.record("authorization response issuer (RFC 9207)", check_response_issuer(o, reply.get("iss")), |_| match reply.get("iss") {
        Some(_) => format!("iss is {}", o.issuer),
        None => "no iss sent (the IdP does not announce it)".into(),
    })?;
    if let Some(err) = reply.get("error") {
        let detail = reply.get("error_description").map(|d| format!(": {d}")).unwrap_or_default();
        let e = UpstreamError::Refused(format!("{err}{detail}"));
        return report.fail("authorization response", e);
    }
    let code =
        report.record("authorization response", reply.get("code").filter(|c| !c.is_empty()).ok_or_else(|| invalid("the sign-in reply has no code")), |_| {
            "a code was returned".into()
        })?;
    let callback_url = conn.callback_url(cx.public_base);
    let mut form = vec![("grant_type", "authorization_code"), ("code", code), ("redirect_uri", callback_url.as_str())];
    if let Some(v) = verifier {
        form.push(("code_verifier", v));
    }
    let secret = conn.secrets.client_secret.clone().unwrap_or_default();
    let mut req = cx.http.post(&o.token_endpoint).header("accept", "application/json");
    let assertion = match o.token_endpoint_auth_method {
        ClientAuth::PrivateKeyJwt | ClientAuth::ClientSecretJwt => {
            Some(report.record("client assertion", client_assertion(conn, o, cx.now), |_| format!("{} signed", o.token_endpoint_auth_method.as_str()))?)
        }
        _ => None,
    };
    match o.token_endpoint_auth_method {
        // RFC 6749 2.3.1: id and secret are form-urlencoded before Basic encoding.
        ClientAuth::ClientSecretBasic => {
            let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            req = req.basic_auth(enc(&o.client_id), Some(enc(&secret)));
        }
        ClientAuth::ClientSecretPost => {
            form.push(("client_id", &o.client_id));
            form.push(("client_secret", &secret));
        }
        ClientAuth::None => form.push(("client_id", &o.client_id)),
        // Only the assertion authenticates: Okta refuses credentials in two places.
        ClientAuth::PrivateKeyJwt | ClientAuth::ClientSecretJwt => {
            form.push(("client_id", &o.client_id));
            form.push(("client_assertion_type", JWT_BEARER));
            form.push(("client_assertion", assertion.as_deref().unwrap_or_default()));
        }
    }
    let exchanged = exchange(o, req.form(&form)).await;
    let tokens = report.record("code exchange", exchanged, |_| format!("{} answered with tokens", o.token_endpoint))?;
    let id_token =
        report.record("ID token", tokens.id_token.ok_or_else(|| invalid("the token endpoint sent no ID token (is the openid scope allowed?)")), |_| {
            "present".into()
        })?;
    let checks = Checks { now: cx.now, skew_ms: cx.skew_ms };
    let (claims, _kid) = verify_id_token(o, &id_token, nonce, tokens.access_token.as_deref(), cx.jwks, checks, report).await?;
    let auth_time = claims.get("auth_time").and_then(serde_json::Value::as_i64).map(|s| s.saturating_mul(1000));
    let info = read_userinfo(o, cx.http, tokens.access_token.as_deref(), &conn.id).await;
    let info_claims = report.record("userinfo", info, |i| match i {
        Some(_) => format!("read from {}", o.userinfo_endpoint.as_deref().unwrap_or_default()),
        None => "not read (no endpoint, no access token, or unavailable: the ID token's claims are used)".into(),
    })?;
    if let Some(info) = &info_claims {
        // OIDC Core 5.3.2: the userinfo sub must be the ID token's, or it is someone else's answer.
        let same = if info.get("sub") != claims.get("sub") { Err(invalid("the userinfo sub differs from the ID token's sub")) } else { Ok(()) };
        report.record("userinfo sub", same, |_| "same as the ID token's".into())?;
    }
    let (claims, identity) = report.record("claim mapping", claims_and_identity(claims, info_claims, &conn.settings.claims), |(_, i)| {
        format!("user id {:?} from {}", i.subject, i.sources.join(" and "))
    })?;
    let (claims, identity) = match (&o.groups_endpoint, mapping::groups_overage(&claims, &conn.settings.claims.groups)) {
        (Some(endpoint), Some(pointer)) if conn.settings.group_sync => {
            let read = read_groups(cx.http, endpoint, tokens.access_token.as_deref()).await;
            let groups = report.record("groups endpoint", read, |g| format!("{} groups read from {endpoint} (the token had {pointer})", g.len()))?;
            with_groups(claims, groups, &conn.settings.claims)?
        }
        _ => (claims, identity),
    };
    Ok(Verified {
        identity,
        claims,
        require_verified_email: o.email_verification,
        upstream_token: tokens.access_token,
        session_until: None,
        replay: None,
        auth_time,
    })
}

/// The token endpoint's answer: its tokens, or why there are none (the IdP's error
/// code and description, or the transport failure).
async fn exchange(o: &OidcSettings, req: reqwest::RequestBuilder) -> Result<TokenResponse, UpstreamError> {
    let resp =
        req.send().await.map_err(|e| UpstreamError::Unavailable(format!("the token endpoint could not be reached ({})", crate::outbound::describe(&e))))?;
    let status = resp.status();
    let body = crate::outbound::read_capped(&o.token_endpoint, resp, MAX_BODY)
        .await
        .map_err(|e| UpstreamError::Unavailable(format!("the token endpoint's answer could not be read: {e}")))?;
    if !status.is_success() {
        let why = serde_json::from_slice::<OAuthError>(&body)
            .map(|e| format!("HTTP {}: {}{}", status.as_u16(), e.error, e.error_description.map(|d| format!(" ({d})")).unwrap_or_default()))
            .unwrap_or_else(|_| format!("HTTP {}", status.as_u16()));
        return Err(UpstreamError::Refused(format!("the code exchange failed: {why}")));
    }
    serde_json::from_slice(&body).map_err(|_| invalid("the token endpoint did not answer with JSON tokens"))
}

/// Userinfo, read whenever the IdP has an endpoint for it: an IdP may put claims (groups,
/// `email_verified`) there and not in the ID token. Required when the connection reads its
/// claims from userinfo (`userinfo_from_id_token` off): then any failure refuses the login.
/// Otherwise the ID token is enough: an endpoint that cannot be reached, or answers with
/// an HTTP error, is logged and the login goes on with the ID token alone (an absent
/// groups claim changes no membership, and a missing `email_verified` is refused where
/// verification is required, naming where it was looked for). An answer that is there
/// but is not a JSON object, or names another `sub`, is refused either way.
async fn read_userinfo(o: &OidcSettings, http: &reqwest::Client, access: Option<&str>, connection: &str) -> Result<Option<Value>, UpstreamError> {
    if !o.userinfo_from_id_token {
        let endpoint = o.userinfo_endpoint.as_deref().ok_or_else(|| UpstreamError::Unavailable("no userinfo endpoint is configured".into()))?;
        let access = access.ok_or_else(|| invalid("the token endpoint sent no access token for the userinfo call"))?;
        return userinfo(http, endpoint, access).await.map(Some);
    }
    let (Some(endpoint), Some(access)) = (o.userinfo_endpoint.as_deref(), access) else {
        return Ok(None);
    };
    match userinfo(http, endpoint, access).await {
        Ok(v) => Ok(Some(v)),
        Err(UpstreamError::Unavailable(why)) => {
            tracing::warn!(connection, reason = %why, "userinfo unavailable; the login goes on with the ID token's claims");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

async fn userinfo(http: &reqwest::Client, endpoint: &str, access: &str) -> Result<Value, UpstreamError> {
    let resp = http
        .get(endpoint)
        .bearer_auth(access)
        .header("accept", "application/json")
        .send()
        .await
        .map_err(|e| UpstreamError::Unavailable(format!("the userinfo endpoint could not be reached ({})", crate::outbound::describe(&e))))?;
    if !resp.status().is_success() {
        return Err(UpstreamError::Unavailable(format!("the userinfo endpoint answered HTTP {}", resp.status().as_u16())));
    }
    let body = crate::outbound::read_capped(endpoint, resp, MAX_BODY)
        .await
        .map_err(|_| UpstreamError::Unavailable("the userinfo answer could not be read (or is too large)".into()))?;
    let v: Value = serde_json::from_slice(&body).map_err(|_| invalid("the userinfo answer is not JSON"))?;
    if !v.is_object() {
        return Err(invalid("the userinfo answer is not a JSON object"));
    }
    Ok(v)
}

fn says_true(v: Option<&Value>) -> bool {
    v.and_then(mapping::boolean) == Some(true)
}

/// The userinfo answer laid over the ID token's claims, except that an `email` and its
/// `email_verified` always come from the same source: userinfo's address keeps userinfo's
/// verification alone, unless both sources name the same address, when either one's
/// `true` counts. A userinfo `email_verified` without an `email` says nothing about the
/// ID token's address and is dropped.
fn merge_userinfo(mut claims: Value, info: Value) -> Value {
    let (Value::Object(target), Value::Object(mut extra)) = (&mut claims, info) else {
        return claims;
    };
    let info_verified = extra.remove("email_verified");
    match extra.get("email").and_then(Value::as_str) {
        Some(info_email) => {
            let same = target.get("email").and_then(Value::as_str).is_some_and(|mine| crate::store::same_name(mine, info_email));
            let verified = if same && (says_true(target.get("email_verified")) || says_true(info_verified.as_ref())) {
                Some(Value::Bool(true))
            } else if same {
                info_verified.or_else(|| target.get("email_verified").cloned())
            } else {
                info_verified
            };
            match verified {
                Some(v) => target.insert("email_verified".into(), v),
                None => target.remove("email_verified"),
            };
        }
        // Userinfo's `email` is there but not a string (a list, a number): no one vouches for it.
        None if extra.contains_key("email") => {
            target.remove("email_verified");
        }
        None => {}
    }
    target.extend(extra);
    claims
}

/// Most groups read from a groups endpoint.
const MAX_GROUPS: usize = 10_000;

/// The user's groups from the connection's groups endpoint (an overage: the token left
/// them out): a POST with the login's access token, as Microsoft Graph's
/// `getMemberObjects` takes it; the answer's `value` is a list of ids, or of objects with
/// an `id` (Graph's `memberOf`). Only the configured URL is called, never one the token
/// names (`_claim_sources`), so a token cannot point the gateway anywhere.
async fn read_groups(http: &reqwest::Client, endpoint: &str, access: Option<&str>) -> Result<Vec<String>, UpstreamError> {
    let access = access.ok_or_else(|| invalid("the token endpoint sent no access token to read the groups with"))?;
    let resp = http
        .post(endpoint)
        .bearer_auth(access)
        .header("accept", "application/json")
        .json(&serde_json::json!({"securityEnabledOnly": false}))
        .send()
        .await
        .map_err(|e| UpstreamError::Unavailable(format!("the groups endpoint could not be reached ({})", crate::outbound::describe(&e))))?;
    if !resp.status().is_success() {
        return Err(UpstreamError::Unavailable(format!(
            "the groups endpoint answered HTTP {} (does the access token carry a scope that reads groups?)",
            resp.status().as_u16()
        )));
    }
    let body = crate::outbound::read_capped(endpoint, resp, MAX_BODY)
        .await
        .map_err(|_| UpstreamError::Unavailable("the groups endpoint's answer could not be read (or is too large)".into()))?;
    let v: Value = serde_json::from_slice(&body).map_err(|_| invalid("the groups endpoint's answer is not JSON"))?;
    let items = v.get("value").and_then(Value::as_array).ok_or_else(|| invalid("the groups endpoint's answer has no value list"))?;
    if items.len() > MAX_GROUPS {
        return Err(invalid(format!("the groups endpoint lists more than {MAX_GROUPS} groups")));
    }
    items
        .iter()
        .map(|g| g.as_str().or_else(|| g.get("id").and_then(Value::as_str)).map(str::to_string))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| invalid("the groups endpoint's value list holds something that is not a group id"))
}

/// The claims with the groups read from the endpoint put under the groups claim's name,
/// and the identity mapped again from them (the same checks as any groups claim).
fn with_groups(mut claims: Value, groups: Vec<String>, m: &ClaimMappings) -> Result<(Value, Identity), UpstreamError> {
    let name = m.groups.0.first().cloned().unwrap_or_else(|| "groups".into());
    if let Value::Object(map) = &mut claims {
        map.insert(name, Value::from(groups));
    }
    let sources = vec!["the ID token".to_string(), "the groups endpoint".to_string()];
    let mut identity = mapping::map(&claims, m).map_err(|e| invalid(e.to_string()))?;
    identity.sources = sources;
    Ok((claims, identity))
}

/// The claims (userinfo laid over the ID token's, when there is userinfo) and the identity mapped from them.
fn claims_and_identity(claims: Value, info: Option<Value>, m: &ClaimMappings) -> Result<(Value, Identity), UpstreamError> {
    let merged = info.is_some();
    let claims = match info {
        Some(info) => merge_userinfo(claims, info),
        None => claims,
    };
    let sources: Vec<String> = if merged { vec!["the ID token".into(), "userinfo".into()] } else { vec!["the ID token".into()] };
    let mut identity = mapping::map(&claims, m).map_err(|e| match e {
        mapping::MappingError::NoSubject(_) => invalid(format!("{e} (looked in {})", if merged { "the ID token and userinfo" } else { "the ID token" })),
        e => invalid(e.to_string()),
    })?;
    // `mapping::map` pairs `email_verified` with the `email` claim only, so an address
    // mapped from another claim (userinfo's `upn`, say) is never taken as vouched for.
    identity.sources = sources;
    Ok((claims, identity))
}

/// A time claim in seconds: a JSON number (fractions cut, values beyond `i64` saturated).
fn number(claims: &Value, name: &str) -> Option<i64> {
    claims.get(name).and_then(|v| v.as_i64().or_else(|| v.as_f64().map(|f| f as i64)))
}

/// `exp`, `iat` and `nbf` (when present) with the skew, in saturating arithmetic: no
/// claim value, clock or skew can overflow.
fn check_times(c: &Value, checks: Checks) -> Result<(), UpstreamError> {
    let now_s = checks.now / 1000;
    let skew_s = (checks.skew_ms / 1000).max(0);
    let exp = number(c, "exp").ok_or_else(|| invalid("the ID token has no exp"))?;
    // RFC 7519 4.1.4: expired on or after exp (here exp + skew).
    if now_s >= exp.saturating_add(skew_s) {
        return Err(invalid("the ID token has expired"));
    }
    let iat = number(c, "iat").ok_or_else(|| invalid("the ID token has no iat"))?;
    if iat > now_s.saturating_add(skew_s) {
        return Err(invalid("the ID token was issued in the future (check the clocks)"));
    }
    if c.get("nbf").is_some() {
        let nbf = number(c, "nbf").ok_or_else(|| invalid("the ID token's nbf is not a number"))?;
        if nbf > now_s.saturating_add(skew_s) {
            return Err(invalid("the ID token is not valid yet (nbf is in the future; check the clocks)"));
        }
    }
    Ok(())
}

/// Verifies an ID token; returns its claims and the kid of the key that verified it.
pub async fn verify_id_token(
    o: &OidcSettings,
    token: &str,
    nonce: &str,
    access_token: Option<&str>,
    jwks: &JwksCache,
    checks: Checks,
    report: &mut Diagnostics,
) -> Result<(Value, Option<String>), UpstreamError> {
    let signed = signature(o, token, jwks).await;
    let (parsed, verified_with) = report.record("ID token signature", signed, |(p, kid)| match kid {
        Some(kid) => format!("{} with the IdP's key {kid}", p.header.alg),
        None if o.verify_signature => format!("{} with the IdP's key (no kid)", p.header.alg),
        None => format!("{}, not verified (verify_signature is off)", p.header.alg),
    })?;
    report.record("ID token claims", id_token_claims(o, &parsed, nonce, access_token, checks), |_| {
        format!(
            "iss {}, aud {}, nonce of this login, exp/iat/nbf within {} s{}",
            o.issuer,
            o.client_id,
            checks.skew_ms / 1000,
            if access_token.is_some() { ", at_hash" } else { "" }
        )
    })?;
    Ok((parsed.claims, verified_with))
}

/// The ID token parsed, its algorithm allowed, and its signature verified against the
/// IdP's JWKS (unless the connection turns that off); with the kid of the key.
async fn signature(o: &OidcSettings, token: &str, jwks: &JwksCache) -> Result<(jws::Parsed, Option<String>), UpstreamError> {
    let parsed = jws::parse(token).map_err(|e| invalid(e.to_string()))?;
    let alg = parsed.header.alg.clone();
    // The allow-list comes first: `none` and HMAC are never on it.
    if !o.allowed_algorithms.contains(&alg) {
        return Err(invalid(format!("the ID token is signed with {alg:?}, which this connection does not accept")));
    }
    // RFC 8725 3.11: a token typed as another kind of JWT (an access token is `at+jwt`,
    // RFC 9068) is not an ID token. IdPs send no typ, or `JWT`; `JOSE` is the generic type.
    if let Some(typ) = &parsed.header.typ {
        let lower = typ.to_ascii_lowercase();
        if !matches!(lower.strip_prefix("application/").unwrap_or(&lower), "jwt" | "jose") {
            return Err(invalid(format!("the ID token is typed {typ:?}, which is not an ID token's type (JWT)")));
        }
    }
    let mut verified_with = None;
    if o.verify_signature {
        let uri = o.jwks_uri.as_deref().ok_or_else(|| UpstreamError::Unavailable("no JWKS URI is configured".into()))?;
        let keys = jwks.candidates(uri, parsed.header.kid.as_deref(), &alg).await?;
        if keys.is_empty() {
            return Err(invalid("no key of the IdP's JWKS matches the ID token's kid and algorithm"));
        }
        let ok = keys.iter().find(|k| jws::public_key(k).ok().is_some_and(|pk| jws::verify(&parsed, &pk).is_ok()));
        let key = ok.ok_or_else(|| invalid("the ID token's signature is invalid"))?;
        verified_with = key.get("kid").and_then(Value::as_str).map(str::to_string);
    }
    Ok((parsed, verified_with))
}

/// The ID token's claims checked: issuer, audience, azp, nonce, times, at_hash, sub.
pub fn id_token_claims(o: &OidcSettings, parsed: &jws::Parsed, nonce: &str, access_token: Option<&str>, checks: Checks) -> Result<(), UpstreamError> {
    let alg = &parsed.header.alg;
    let c = &parsed.claims;
    check_issuer(o, c)?;
    let aud: Vec<&str> = match c.get("aud") {
        Some(Value::String(s)) => vec![s.as_str()],
        // A member that is not a string (RFC 7519 4.1.3) is an audience we cannot compare,
        // so one we do not trust: it stays in the list as "".
        Some(Value::Array(a)) => a.iter().map(|v| v.as_str().unwrap_or_default()).collect(),
        _ => vec![],
    };
    if !aud.contains(&o.client_id.as_str()) {
        return Err(invalid("the ID token is not meant for this client (aud)"));
    }
    if aud.iter().any(|a| *a != o.client_id) {
        return Err(invalid("the ID token is also meant for other, untrusted audiences"));
    }
    if let Some(azp) = c.get("azp") {
        if azp.as_str() != Some(o.client_id.as_str()) {
            return Err(invalid("the ID token's azp is another client"));
        }
    }
    if c.get("nonce").and_then(Value::as_str) != Some(nonce) {
        return Err(invalid("the ID token's nonce does not match this login"));
    }
    check_times(c, checks)?;
    if let (Some(at_hash), Some(access)) = (c.get("at_hash").and_then(Value::as_str), access_token) {
        if jws::half_hash(alg, access).as_deref() != Some(at_hash) {
            return Err(invalid("the ID token's at_hash does not match the access token"));
        }
    }
    if c.get("sub").and_then(Value::as_str).is_none_or(str::is_empty) {
        return Err(invalid("the ID token has no sub"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::connection::ClaimNames;

    const NOW: i64 = 1_700_000_000;

    fn at(now_s: i64, skew_s: i64) -> Checks {
        Checks { now: now_s.saturating_mul(1000), skew_ms: skew_s.saturating_mul(1000) }
    }

    #[test]
    fn time_checks_never_overflow() {
        let ok = |c: Value, checks: Checks| check_times(&c, checks).is_ok();
        for (what, claims, want) in [
            ("exp at i64::MAX", json!({"exp": i64::MAX, "iat": NOW}), true),
            ("exp at i64::MIN", json!({"exp": i64::MIN, "iat": NOW}), false),
            ("iat at i64::MIN", json!({"exp": NOW + 10, "iat": i64::MIN}), true),
            ("iat at i64::MAX", json!({"exp": NOW + 10, "iat": i64::MAX}), false),
            ("nbf at i64::MAX", json!({"exp": NOW + 10, "iat": NOW, "nbf": i64::MAX}), false),
            ("nbf at i64::MIN", json!({"exp": NOW + 10, "iat": NOW, "nbf": i64::MIN}), true),
            ("exp beyond i64", json!({"exp": u64::MAX, "iat": NOW}), true),
            ("exp 1e300", json!({"exp": 1e300, "iat": NOW}), true),
            ("exp -1e300", json!({"exp": -1e300, "iat": NOW}), false),
            ("all at i64::MAX", json!({"exp": i64::MAX, "iat": i64::MAX, "nbf": i64::MAX}), false),
        ] {
            assert_eq!(ok(claims.clone(), at(NOW, 60)), want, "{what}");
        }
        // Extreme clocks and skews do not panic either.
        for checks in [at(i64::MAX / 1000, i64::MAX / 1000), at(i64::MIN / 1000, i64::MAX / 1000), at(0, 0), Checks { now: i64::MAX, skew_ms: i64::MAX }] {
            for claims in [json!({"exp": i64::MAX, "iat": i64::MIN, "nbf": i64::MIN}), json!({"exp": i64::MIN, "iat": i64::MAX, "nbf": i64::MAX})] {
                let _ = check_times(&claims, checks);
            }
        }
    }

    #[test]
    fn nbf_is_checked_with_the_skew_and_must_be_a_number() {
        let base = json!({"exp": NOW + 300, "iat": NOW});
        let with = |nbf: Value| {
            let mut c = base.clone();
            c["nbf"] = nbf;
            check_times(&c, at(NOW, 60)).map_err(|e| e.to_string())
        };
        assert!(with(json!(NOW + 3600)).unwrap_err().contains("not valid yet"));
        assert!(with(json!(NOW + 61)).unwrap_err().contains("not valid yet"));
        assert!(with(json!(NOW + 60)).is_ok(), "within the skew");
        assert!(with(json!(NOW - 10)).is_ok());
        assert!(with(json!(NOW as f64 + 0.5)).is_ok());
        for bad in [json!("soon"), json!(null), json!(true), json!([NOW]), json!({})] {
            assert!(with(bad.clone()).unwrap_err().contains("nbf"), "{bad}");
        }
        assert!(check_times(&base, at(NOW, 60)).is_ok(), "nbf is optional");
    }

    fn mappings(email: &[&str]) -> ClaimMappings {
        ClaimMappings { user_id: ClaimNames::one("sub"), email: ClaimNames(email.iter().map(|s| s.to_string()).collect()), ..Default::default() }
    }

    #[test]
    fn an_email_keeps_the_verification_of_the_source_that_sent_it() {
        let ev = |v: Option<Value>| v.map(|v| json!({"email_verified": v})).unwrap_or(json!({}));
        let src = |email: Option<&str>, v: Option<Value>| {
            let mut o = json!({"sub": "s"});
            if let Some(e) = email {
                o["email"] = json!(e);
            }
            o.as_object_mut().unwrap().extend(ev(v).as_object().unwrap().clone());
            o
        };
        let t = || Some(json!(true));
        let f = || Some(json!(false));
        // (ID token email, its verification, userinfo email, its verification) -> (email, verified)
        type Row<'a> = (Option<&'a str>, Option<Value>, Option<&'a str>, Option<Value>, Option<&'a str>, Option<bool>);
        let table: Vec<Row> = vec![
            (Some("dave@x.test"), t(), Some("victim@x.test"), None, Some("victim@x.test"), None),
            (Some("dave@x.test"), t(), Some("victim@x.test"), f(), Some("victim@x.test"), Some(false)),
            (Some("dave@x.test"), t(), Some("victim@x.test"), Some(json!("yes")), Some("victim@x.test"), None),
            (Some("dave@x.test"), f(), Some("victim@x.test"), t(), Some("victim@x.test"), Some(true)),
            (Some("dave@x.test"), t(), Some("dave@x.test"), None, Some("dave@x.test"), Some(true)),
            (Some("dave@x.test"), f(), Some("dave@x.test"), t(), Some("dave@x.test"), Some(true)),
            (Some("dave@x.test"), None, Some("dave@x.test"), Some(json!("true")), Some("dave@x.test"), None),
            (Some("dave@x.test"), f(), Some("dave@x.test"), None, Some("dave@x.test"), Some(false)),
            (Some("Dave@X.test"), t(), Some("dave@x.test"), None, Some("dave@x.test"), Some(true)),
            (Some("kim@x.test"), t(), Some("\u{212A}im@x.test"), None, Some("\u{212A}im@x.test"), None),
            (Some("dave@x.test"), t(), None, f(), Some("dave@x.test"), Some(true)),
            (Some("dave@x.test"), t(), None, None, Some("dave@x.test"), Some(true)),
            (None, t(), Some("victim@x.test"), None, Some("victim@x.test"), None),
            (None, None, Some("victim@x.test"), t(), Some("victim@x.test"), Some(true)),
        ];
        for (i, (id_email, id_v, ui_email, ui_v, want_email, want_v)) in table.into_iter().enumerate() {
            let (_, identity) = claims_and_identity(src(id_email, id_v), Some(src(ui_email, ui_v)), &mappings(&["email"])).unwrap();
            assert_eq!((identity.email.as_deref(), identity.email_verified), (want_email, want_v), "case {i}");
        }
        // Without userinfo the ID token's pair stands as it is.
        let (_, identity) = claims_and_identity(src(Some("dave@x.test"), t()), None, &mappings(&["email"])).unwrap();
        assert_eq!(identity.email_verified, Some(true));
        // An address mapped from another claim of userinfo is not what email_verified describes.
        let info = json!({"sub": "s", "upn": "victim@x.test"});
        let (_, identity) = claims_and_identity(src(Some("dave@x.test"), t()), Some(info), &mappings(&["upn", "email"])).unwrap();
        assert_eq!((identity.email.as_deref(), identity.email_verified), (Some("victim@x.test"), None));
        // Other userinfo claims are still laid over the ID token's.
        let (claims, _) = claims_and_identity(json!({"sub": "s", "name": "a"}), Some(json!({"sub": "s", "name": "b"})), &mappings(&["email"])).unwrap();
        assert_eq!(claims["name"], "b");
    }

    #[test]
    fn times_are_checked_with_the_skew_at_their_boundaries() {
        let base = |exp: i64, iat: i64| json!({"exp": exp, "iat": iat});
        // (what, claims, accepted) at NOW with a 60 s skew.
        let table: Vec<(&str, Value, bool)> = vec![
            ("valid", base(NOW + 300, NOW), true),
            ("exp 59 s ago (within the skew)", base(NOW - 59, NOW - 120), true),
            ("exp exactly 60 s ago (RFC 7519: expired on or after)", base(NOW - 60, NOW - 120), false),
            ("exp 61 s ago", base(NOW - 61, NOW - 120), false),
            ("exp a fraction after the skew", json!({"exp": (NOW - 60) as f64 + 0.5, "iat": NOW - 120}), false),
            ("exp missing", json!({"iat": NOW}), false),
            ("exp a string", json!({"exp": (NOW + 300).to_string(), "iat": NOW}), false),
            ("exp null", json!({"exp": null, "iat": NOW}), false),
            ("iat 60 s ahead (within the skew)", base(NOW + 300, NOW + 60), true),
            ("iat 61 s ahead", base(NOW + 300, NOW + 61), false),
            ("iat long ago", base(NOW + 300, 0), true),
            ("iat missing", json!({"exp": NOW + 300}), false),
            ("iat a string", json!({"exp": NOW + 300, "iat": NOW.to_string()}), false),
            ("nbf 60 s ahead (within the skew)", json!({"exp": NOW + 300, "iat": NOW, "nbf": NOW + 60}), true),
            ("nbf 61 s ahead", json!({"exp": NOW + 300, "iat": NOW, "nbf": NOW + 61}), false),
        ];
        for (what, claims, ok) in table {
            assert_eq!(check_times(&claims, at(NOW, 60)).is_ok(), ok, "{what}");
        }
        // The skew is whole seconds; a clock part-way through a second counts that second.
        let late = Checks { now: NOW * 1000 + 999, skew_ms: 60_999 };
        assert!(check_times(&base(NOW - 60, NOW - 120), late).is_err(), "the skew's milliseconds are not a second");
        // No skew: exp is the first instant the token is no longer valid.
        assert!(check_times(&base(NOW, NOW - 1), at(NOW, 0)).is_err());
        assert!(check_times(&base(NOW + 1, NOW - 1), at(NOW, 0)).is_ok());
    }

    /// The claim checks of `verify_id_token` (signature checking off: the JWS differential
    /// and `oidc_differential` cover keys and signatures), each refusal naming its check.
    #[tokio::test]
    async fn id_token_claims_table() {
        const ISSUER: &str = "https://idp.example.test";
        const ACCESS: &str = "at-1";
        let o = crate::testkit::oidc_settings(ISSUER, "app", None);
        let jwks = JwksCache::new(reqwest::Client::new(), crate::clock::Clock::fixed(NOW * 1000), 60_000);
        let at_hash = jws::half_hash("RS256", ACCESS).unwrap();
        let good = json!({"iss": ISSUER, "sub": "alice", "aud": "app", "exp": NOW + 300, "iat": NOW, "nonce": "n1", "at_hash": at_hash});
        let token = |header: Value, claims: &Value| format!("{}.{}.c2ln", B64URL.encode(header.to_string()), B64URL.encode(claims.to_string()));
        let rs256 = json!({"alg": "RS256", "kid": "k1"});
        // (what, header, claim edits (null removes), access token, None = accepted / Some(part of the refusal))
        type Row<'a> = (&'a str, Value, Value, Option<&'a str>, Option<&'a str>);
        let table: Vec<Row> = vec![
            ("valid", rs256.clone(), json!({}), Some(ACCESS), None),
            ("iss another issuer", rs256.clone(), json!({"iss": "https://evil.example.test"}), Some(ACCESS), Some("another issuer")),
            ("iss with a trailing slash", rs256.clone(), json!({"iss": format!("{ISSUER}/")}), Some(ACCESS), Some("another issuer")),
            ("iss missing", rs256.clone(), json!({"iss": null}), Some(ACCESS), Some("another issuer")),
            ("iss not a string", rs256.clone(), json!({"iss": [ISSUER]}), Some(ACCESS), Some("another issuer")),
            ("aud another client", rs256.clone(), json!({"aud": "other"}), Some(ACCESS), Some("not meant for this client")),
            ("aud missing", rs256.clone(), json!({"aud": null}), Some(ACCESS), Some("not meant for this client")),
            ("aud an empty list", rs256.clone(), json!({"aud": []}), Some(ACCESS), Some("not meant for this client")),
            ("aud a number", rs256.clone(), json!({"aud": 5}), Some(ACCESS), Some("not meant for this client")),
            ("aud a list of ours", rs256.clone(), json!({"aud": ["app"]}), Some(ACCESS), None),
            ("aud ours twice", rs256.clone(), json!({"aud": ["app", "app"]}), Some(ACCESS), None),
            ("aud ours and another", rs256.clone(), json!({"aud": ["app", "other"]}), Some(ACCESS), Some("other, untrusted audiences")),
            ("aud ours and another, azp ours", rs256.clone(), json!({"aud": ["app", "other"], "azp": "app"}), Some(ACCESS), Some("other, untrusted audiences")),
            ("aud ours and a number", rs256.clone(), json!({"aud": ["app", 5]}), Some(ACCESS), Some("other, untrusted audiences")),
            ("aud ours and null", rs256.clone(), json!({"aud": ["app", null]}), Some(ACCESS), Some("other, untrusted audiences")),
            ("azp ours", rs256.clone(), json!({"azp": "app"}), Some(ACCESS), None),
            ("azp another client", rs256.clone(), json!({"azp": "other"}), Some(ACCESS), Some("azp is another client")),
            ("azp not a string", rs256.clone(), json!({"azp": ["app"]}), Some(ACCESS), Some("azp is another client")),
            ("nonce missing", rs256.clone(), json!({"nonce": null}), Some(ACCESS), Some("nonce does not match")),
            ("nonce of another login", rs256.clone(), json!({"nonce": "n2"}), Some(ACCESS), Some("nonce does not match")),
            ("nonce a number", rs256.clone(), json!({"nonce": 1}), Some(ACCESS), Some("nonce does not match")),
            ("nonce with a trailing space", rs256.clone(), json!({"nonce": "n1 "}), Some(ACCESS), Some("nonce does not match")),
            ("expired", rs256.clone(), json!({"exp": NOW - 600}), Some(ACCESS), Some("expired")),
            ("at_hash of another access token", rs256.clone(), json!({"at_hash": jws::half_hash("RS256", "at-2").unwrap()}), Some(ACCESS), Some("at_hash")),
            ("at_hash not a hash", rs256.clone(), json!({"at_hash": "x"}), Some(ACCESS), Some("at_hash")),
            ("at_hash with no access token to compare", rs256.clone(), json!({"at_hash": "x"}), None, None),
            ("at_hash absent", rs256.clone(), json!({"at_hash": null}), Some(ACCESS), None),
            ("sub missing", rs256.clone(), json!({"sub": null}), Some(ACCESS), Some("no sub")),
            ("sub empty", rs256.clone(), json!({"sub": ""}), Some(ACCESS), Some("no sub")),
            ("sub a number", rs256.clone(), json!({"sub": 7}), Some(ACCESS), Some("no sub")),
            ("alg not allowed", json!({"alg": "RS384"}), json!({}), Some(ACCESS), Some("does not accept")),
            ("alg HS256", json!({"alg": "HS256"}), json!({}), Some(ACCESS), Some("does not accept")),
            ("alg none", json!({"alg": "none"}), json!({}), Some(ACCESS), Some("does not accept")),
            ("typ JWT", json!({"alg": "RS256", "typ": "JWT"}), json!({}), Some(ACCESS), None),
            ("typ jwt", json!({"alg": "RS256", "typ": "jwt"}), json!({}), Some(ACCESS), None),
            ("typ application/jwt", json!({"alg": "RS256", "typ": "application/jwt"}), json!({}), Some(ACCESS), None),
            ("typ JOSE", json!({"alg": "RS256", "typ": "JOSE"}), json!({}), Some(ACCESS), None),
            ("typ at+jwt", json!({"alg": "RS256", "typ": "at+jwt"}), json!({}), Some(ACCESS), Some("typed \"at+jwt\"")),
            ("typ application/at+jwt", json!({"alg": "RS256", "typ": "application/at+jwt"}), json!({}), Some(ACCESS), Some("typed")),
            ("typ logout+jwt", json!({"alg": "RS256", "typ": "logout+jwt"}), json!({}), Some(ACCESS), Some("typed")),
            ("typ not a string", json!({"alg": "RS256", "typ": 1}), json!({}), Some(ACCESS), Some("not a well-formed JWS")),
        ];
        for (what, header, edits, access, refusal) in table {
            let mut claims = good.clone();
            for (k, v) in edits.as_object().unwrap() {
                if v.is_null() {
                    claims.as_object_mut().unwrap().remove(k);
                } else {
                    claims[k] = v.clone();
                }
            }
            let got = verify_id_token(&o, &token(header, &claims), "n1", access, &jwks, at(NOW, 60), &mut Default::default()).await;
            match (refusal, got) {
                (None, Ok((c, kid))) => assert_eq!((c, kid), (claims, None), "{what}"),
                (None, Err(e)) => panic!("{what}: refused: {e}"),
                (Some(part), Ok(_)) => panic!("{what}: accepted, want a refusal naming {part:?}"),
                (Some(part), Err(e)) => assert!(e.to_string().contains(part), "{what}: {e}"),
            }
        }
    }
}
