//! What an admin sends to create or change a connection, and the rules a connection
//! must satisfy before it is stored. Create and update share one patch type: create
//! applies it over the preset's values, update over the stored connection.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use url::Url;
use utoipa::ToSchema;

use super::*;

/// A field-level validation error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FieldError {
    /// The field's path, such as `oidc.jwks_uri`.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl FieldError {
    /// An error on `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

/// Fields to set on a connection. On create, `display_name` and `protocol` are
/// required and everything else starts from the provider's preset; on update, absent
/// fields keep their value. For optional URLs, an empty string clears the value.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectionPatch {
    /// Id to give a new connection (import); default: a new random id. Create only.
    pub id: Option<String>,
    /// Unique (case-insensitive) name shown on the login page.
    pub display_name: Option<String>,
    /// `oidc` or `saml` (create only).
    pub protocol: Option<Protocol>,
    /// Provider preset, such as `okta` or `custom` (create only; default `custom`).
    pub provider: Option<String>,
    /// Shown on the login page (default on).
    pub active: Option<bool>,
    /// Version the change starts from (or send `If-Match`); update only.
    pub version: Option<i64>,
    /// External URL of the gateway for this connection (empty: the public URL).
    pub webapp_url: Option<String>,
    /// Create users on first login (default off: only existing or invited users).
    pub create_users: Option<bool>,
    /// Sync group memberships from the groups claim.
    pub group_sync: Option<bool>,
    /// Values for the preset's URL placeholders, such as `{"region": "eu-west-1"}`.
    pub placeholders: Option<BTreeMap<String, String>>,
    /// Fill missing OIDC endpoints from the issuer's discovery document.
    pub discover: Option<bool>,
    /// Claim mappings to change (each a name or a list of names).
    pub claims: Option<ClaimsPatch>,
    /// OIDC settings to change.
    pub oidc: Option<OidcPatch>,
    /// SAML settings to change.
    pub saml: Option<SamlPatch>,
    /// Allow rules (replaces the list): only replies whose claim holds one of the values
    /// sign in, such as `[{"claim": "hd", "values": ["example.com"]}]`.
    pub allow: Option<Vec<AllowRule>>,
    /// Group values to directory groups (replaces the mapping).
    pub group_mapping: Option<GroupMapping>,
}

impl ConnectionPatch {
    /// The name of a protocol section this patch sets that `protocol`'s connections do
    /// not have (it is refused, never ignored).
    pub fn other_protocol_section(&self, protocol: Protocol) -> Option<&'static str> {
        let sections = [(Protocol::Oidc, self.oidc.is_some()), (Protocol::Saml, self.saml.is_some())];
        sections.into_iter().find(|(p, set)| *set && *p != protocol).map(|(p, _)| p.as_str())
    }
}

/// Claim mappings to change; absent ones are kept.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClaimsPatch {
    /// Stable user id.
    pub user_id: Option<ClaimNames>,
    /// Email.
    pub email: Option<ClaimNames>,
    /// Full name.
    pub name: Option<ClaimNames>,
    /// Given name.
    pub given_name: Option<ClaimNames>,
    /// Family name.
    pub family_name: Option<ClaimNames>,
    /// Picture.
    pub picture: Option<ClaimNames>,
    /// Groups.
    pub groups: Option<ClaimNames>,
}

/// OIDC settings to change.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OidcPatch {
    /// Issuer URL.
    pub issuer: Option<String>,
    /// Client id.
    pub client_id: Option<String>,
    /// Client secret (write-only; empty string removes it).
    #[schema(value_type = Option<String>, format = Password)]
    pub client_secret: Option<String>,
    /// Authorization endpoint.
    pub authorization_endpoint: Option<String>,
    /// Token endpoint.
    pub token_endpoint: Option<String>,
    /// Revocation endpoint.
    pub revocation_endpoint: Option<String>,
    /// User info endpoint.
    pub userinfo_endpoint: Option<String>,
    /// JWKS URI.
    pub jwks_uri: Option<String>,
    /// Claims from the ID token (on) or the user info endpoint (off).
    pub userinfo_from_id_token: Option<bool>,
    /// Require `email_verified` true.
    pub email_verification: Option<bool>,
    /// Verify ID token signatures.
    pub verify_signature: Option<bool>,
    /// PKCE: `none`, `plain` or `S256`.
    pub code_challenge_method: Option<Pkce>,
    /// `client_secret_basic`, `client_secret_post`, `client_secret_jwt`, `private_key_jwt`
    /// (the gateway makes the key pair; register `client_jwks_url` at the IdP) or `none`.
    /// Unset on create: the preset's when discovery lists it, else the first of
    /// `client_secret_basic`, `client_secret_post`, `client_secret_jwt` it lists.
    pub token_endpoint_auth_method: Option<ClientAuth>,
    /// Standard scopes: a list, or one comma-separated string.
    #[schema(value_type = Option<Vec<String>>)]
    pub scopes: Option<ScopeList>,
    /// Additional scopes: a list, or one comma-separated string.
    #[schema(value_type = Option<Vec<String>>)]
    pub additional_scopes: Option<ScopeList>,
    /// Accepted ID token algorithms.
    pub allowed_algorithms: Option<Vec<String>>,
    /// The IdP sends `iss` in every authorization response (RFC 9207): require it. Filled
    /// by discovery unless set here.
    pub authorization_response_iss_parameter_supported: Option<bool>,
    /// Other `iss` values accepted for this issuer (replaces the list).
    pub issuer_aliases: Option<Vec<String>>,
    /// Tenants (`tid`) allowed with a `{tenantid}` issuer template (replaces the list).
    pub allowed_tenants: Option<Vec<String>>,
    /// Groups endpoint followed on a groups overage (empty string clears it).
    pub groups_endpoint: Option<String>,
}

/// SAML settings to change.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SamlPatch {
    /// Our SP entity id (default: our SP metadata URL).
    pub entity_id: Option<String>,
    /// The IdP's metadata XML.
    pub idp_metadata_xml: Option<String>,
    /// Fetch the IdP's metadata from this URL.
    pub idp_metadata_url: Option<String>,
    /// The IdP as already parsed (export and import); certificates are re-read from `pem`.
    pub idp: Option<IdpMetadata>,
    /// Refuse unsigned assertions (default on).
    pub require_signed_assertions: Option<bool>,
    /// Sign AuthnRequests; a key pair is generated when none is stored.
    pub sign_requests: Option<bool>,
    /// SP certificate (PEM) to go with an uploaded private key.
    pub sp_certificate: Option<String>,
    /// SP private key (PEM, write-only).
    #[schema(value_type = Option<String>, format = Password)]
    pub sp_private_key: Option<String>,
    /// NameID format to request (empty: the default, persistent; `…:unspecified` asks for none in particular).
    pub name_id_format: Option<String>,
    /// Accept IdP-initiated logins.
    pub allow_idp_initiated: Option<bool>,
    /// Accept SHA-1 signatures and digests from this IdP (legacy; off by default).
    pub allow_sha1: Option<bool>,
}

/// Scopes, given as a list or as one comma- or space-separated string.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ScopeList(pub Vec<String>);

impl<'de> Deserialize<'de> for ScopeList {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Text(String),
            List(Vec<String>),
        }
        let items = match Form::deserialize(d)? {
            Form::Text(s) => s.split([',', ' ']).map(str::to_string).collect(),
            Form::List(v) => v,
        };
        Ok(ScopeList(items.into_iter().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()))
    }
}

/// ID token algorithms ssogate can verify. No `none`, no HMAC (its key would be the
/// client secret, shared with whoever configured the IdP).
pub const KNOWN_ALGORITHMS: &[&str] = &["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"];

/// Whether `host` is a loopback name, where plain http is tolerated.
fn is_loopback(u: &Url) -> bool {
    match u.host() {
        Some(url::Host::Domain(d)) => d == "localhost" || d.ends_with(".localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Checks an endpoint URL: absolute, https (http only on loopback), no fragment, no
/// credentials.
pub fn check_url(errors: &mut Vec<FieldError>, field: &str, value: &str) {
    match Url::parse(value) {
        Err(e) => errors.push(FieldError::new(field, format!("is not a valid URL ({e})"))),
        Ok(u) => {
            if u.scheme() != "https" && !(u.scheme() == "http" && is_loopback(&u)) {
                errors.push(FieldError::new(field, "must be an https URL (http only for localhost)"));
            } else if u.fragment().is_some() {
                errors.push(FieldError::new(field, "must not have a #fragment"));
            } else if !u.username().is_empty() || u.password().is_some() {
                errors.push(FieldError::new(field, "must not carry a user name or password"));
            }
        }
    }
}

fn check_required_url(errors: &mut Vec<FieldError>, field: &str, value: &str) {
    if value.trim().is_empty() {
        errors.push(FieldError::new(field, "is required"));
    } else {
        check_url(errors, field, value);
    }
}

fn check_scopes(errors: &mut Vec<FieldError>, field: &str, scopes: &[String]) {
    for s in scopes {
        // RFC 6749 scope-token: printable ASCII without space, quote or backslash.
        if s.is_empty() || !s.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b'"' && b != b'\\') {
            errors.push(FieldError::new(field, format!("{s:?} is not a valid scope")));
        }
    }
}

/// Sets `target` from a patch value; an empty string clears it.
pub(crate) fn set_opt(target: &mut Option<String>, value: &Option<String>) {
    if let Some(v) = value {
        let v = v.trim();
        *target = if v.is_empty() { None } else { Some(v.to_string()) };
    }
}

/// Sets `target` from a patch value.
pub(crate) fn set<T: Clone>(target: &mut T, value: &Option<T>) {
    if let Some(v) = value {
        *target = v.clone();
    }
}

impl ClaimsPatch {
    /// Applies the changed mappings.
    pub fn apply(&self, c: &mut ClaimMappings) {
        set(&mut c.user_id, &self.user_id);
        set(&mut c.email, &self.email);
        set(&mut c.name, &self.name);
        set(&mut c.given_name, &self.given_name);
        set(&mut c.family_name, &self.family_name);
        set(&mut c.picture, &self.picture);
        set(&mut c.groups, &self.groups);
    }
}

impl OidcPatch {
    /// Applies the changed settings (the secret goes to `secrets`).
    pub fn apply(&self, o: &mut OidcSettings, secrets: &mut Secrets) {
        let trimmed = |v: &Option<String>| v.as_ref().map(|s| s.trim().to_string());
        set(&mut o.issuer, &trimmed(&self.issuer));
        set(&mut o.client_id, &trimmed(&self.client_id));
        set_opt(&mut secrets.client_secret, &self.client_secret);
        set(&mut o.authorization_endpoint, &trimmed(&self.authorization_endpoint));
        set(&mut o.token_endpoint, &trimmed(&self.token_endpoint));
        set_opt(&mut o.revocation_endpoint, &self.revocation_endpoint);
        set_opt(&mut o.userinfo_endpoint, &self.userinfo_endpoint);
        set_opt(&mut o.jwks_uri, &self.jwks_uri);
        set(&mut o.userinfo_from_id_token, &self.userinfo_from_id_token);
        set(&mut o.email_verification, &self.email_verification);
        set(&mut o.verify_signature, &self.verify_signature);
        set(&mut o.code_challenge_method, &self.code_challenge_method);
        set(&mut o.token_endpoint_auth_method, &self.token_endpoint_auth_method);
        set(&mut o.scopes, &self.scopes.as_ref().map(|s| s.0.clone()));
        set(&mut o.additional_scopes, &self.additional_scopes.as_ref().map(|s| s.0.clone()));
        set(&mut o.allowed_algorithms, &self.allowed_algorithms);
        set(&mut o.authorization_response_iss_parameter_supported, &self.authorization_response_iss_parameter_supported);
        let trim_all = |v: &Option<Vec<String>>| v.as_ref().map(|l| l.iter().map(|s| s.trim().to_string()).collect::<Vec<_>>());
        set(&mut o.issuer_aliases, &trim_all(&self.issuer_aliases));
        set(&mut o.allowed_tenants, &trim_all(&self.allowed_tenants));
        set_opt(&mut o.groups_endpoint, &self.groups_endpoint);
    }
}

/// Checks a connection before it is stored; returns every problem found.
pub fn validate(c: &Connection) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let name = c.display_name.trim();
    if name.is_empty() {
        errors.push(FieldError::new("display_name", "is required"));
    } else if name.chars().count() > 100 {
        errors.push(FieldError::new("display_name", "must be at most 100 characters"));
    } else if name.chars().any(char::is_control) {
        errors.push(FieldError::new("display_name", "must not contain control characters"));
    }
    if let Some(w) = &c.settings.webapp_url {
        check_url(&mut errors, "webapp_url", w);
    }
    let claims = &c.settings.claims;
    if claims.user_id.is_empty() {
        errors.push(FieldError::new("claims.user_id", "is required (the claim that identifies a user for good)"));
    }
    if c.settings.group_sync && claims.groups.is_empty() {
        errors.push(FieldError::new("claims.groups", "is required when group_sync is on"));
    }
    for (field, names) in [
        ("claims.user_id", &claims.user_id),
        ("claims.email", &claims.email),
        ("claims.name", &claims.name),
        ("claims.given_name", &claims.given_name),
        ("claims.family_name", &claims.family_name),
        ("claims.picture", &claims.picture),
        ("claims.groups", &claims.groups),
    ] {
        if names.0.iter().any(|n| n.trim().is_empty() || n.len() > 512) {
            errors.push(FieldError::new(field, "names must be non-empty and at most 512 characters"));
        }
    }
    validate_vendor(&mut errors, &c.settings);
    match &c.settings.upstream {
        Upstream::Oidc(o) => validate_oidc(&mut errors, o, &c.secrets),
        Upstream::Saml(s) => validate_saml(&mut errors, s, &c.secrets),
    }
    errors
}

/// Most allow rules, values per rule, mapped group values and issuer aliases: bounds on
/// what a connection stores.
const MAX_RULES: usize = 16;
const MAX_VALUES: usize = 256;
const MAX_GROUP_MAP: usize = 2000;
const MAX_ALIASES: usize = 8;

/// A short identifier-like value: non-empty, at most 512 bytes, no control character.
fn plain_text(v: &str) -> bool {
    !v.trim().is_empty() && v.len() <= 512 && !v.chars().any(crate::mapping::is_refused_char)
}

/// Allow rules and the group mapping, common to every protocol.
fn validate_vendor(errors: &mut Vec<FieldError>, s: &Settings) {
    if s.allow.len() > MAX_RULES {
        errors.push(FieldError::new("allow", format!("may hold at most {MAX_RULES} rules")));
    }
    for (i, rule) in s.allow.iter().enumerate() {
        if !plain_text(&rule.claim) {
            errors.push(FieldError::new(format!("allow[{i}].claim"), "must name a claim (non-empty, at most 512 characters, no control character)"));
        }
        if rule.values.is_empty() {
            errors.push(FieldError::new(format!("allow[{i}].values"), "must list at least one value (a rule with none would admit no one)"));
        } else if rule.values.len() > MAX_VALUES || !rule.values.iter().all(|v| plain_text(v)) {
            errors.push(FieldError::new(
                format!("allow[{i}].values"),
                format!("must be at most {MAX_VALUES} non-empty values of at most 512 characters, without control characters"),
            ));
        } else if rule.values.iter().any(|v| v.contains(',')) {
            // The console lists values comma-separated: one with a comma would come back as two.
            errors.push(FieldError::new(format!("allow[{i}].values"), "must not contain commas (list each value on its own)"));
        }
    }
    let m = &s.group_mapping;
    if m.map.len() > MAX_GROUP_MAP {
        errors.push(FieldError::new("group_mapping.map", format!("may hold at most {MAX_GROUP_MAP} entries")));
    }
    if m.map.iter().any(|(k, v)| !plain_text(k) || !plain_text(v)) {
        errors.push(FieldError::new(
            "group_mapping.map",
            "keys (IdP group values) and values (directory group names or ids) must be non-empty, at most 512 characters, without control characters",
        ));
    }
}

/// A tenant id as `tid` carries it: a GUID, or a domain-like name; nothing that could
/// change the issuer's shape once put into the template.
pub fn safe_tenant(t: &str) -> bool {
    !t.is_empty() && t.len() <= 253 && t.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
}

fn validate_oidc(errors: &mut Vec<FieldError>, o: &OidcSettings, secrets: &Secrets) {
    if o.is_multi_tenant() {
        // The template is checked with a tenant put in; the tenants must be listed.
        let filled = o.issuer.replacen(TENANT_PLACEHOLDER, "tenant", 1);
        if filled.contains(TENANT_PLACEHOLDER) || filled.contains('{') {
            errors.push(FieldError::new("oidc.issuer", "may hold {tenantid} once, and no other placeholder"));
        } else {
            check_required_url(errors, "oidc.issuer", &filled);
        }
        if o.allowed_tenants.is_empty() {
            errors.push(FieldError::new(
                "oidc.allowed_tenants",
                "is required with a multi-tenant issuer ({tenantid}): list the tenant ids (tid) that may sign in",
            ));
        }
    } else {
        check_required_url(errors, "oidc.issuer", &o.issuer);
        if !o.allowed_tenants.is_empty() {
            errors.push(FieldError::new(
                "oidc.allowed_tenants",
                "applies only to a multi-tenant issuer (one holding {tenantid}); use an allow rule on tid instead",
            ));
        }
    }
    if o.allowed_tenants.len() > MAX_VALUES || !o.allowed_tenants.iter().all(|t| safe_tenant(t)) {
        errors.push(FieldError::new("oidc.allowed_tenants", "must be tenant ids: letters, digits, '-', '.' and '_'"));
    }
    if o.issuer_aliases.len() > MAX_ALIASES || !o.issuer_aliases.iter().all(|a| plain_text(a) && !a.contains(char::is_whitespace)) {
        errors.push(FieldError::new("oidc.issuer_aliases", format!("must be at most {MAX_ALIASES} issuer values without spaces or control characters")));
    }
    if o.client_id.trim().is_empty() {
        errors.push(FieldError::new("oidc.client_id", "is required"));
    }
    check_required_url(errors, "oidc.authorization_endpoint", &o.authorization_endpoint);
    check_required_url(errors, "oidc.token_endpoint", &o.token_endpoint);
    if let Some(u) = &o.revocation_endpoint {
        check_url(errors, "oidc.revocation_endpoint", u);
    }
    match &o.userinfo_endpoint {
        Some(u) => check_url(errors, "oidc.userinfo_endpoint", u),
        None if !o.userinfo_from_id_token => errors.push(FieldError::new("oidc.userinfo_endpoint", "is required when userinfo_from_id_token is off")),
        None => {}
    }
    if let Some(u) = &o.groups_endpoint {
        check_url(errors, "oidc.groups_endpoint", u);
    }
    match &o.jwks_uri {
        Some(u) => check_url(errors, "oidc.jwks_uri", u),
        None if o.verify_signature => errors.push(FieldError::new("oidc.jwks_uri", "is required when verify_signature is on")),
        None => {}
    }
    match o.token_endpoint_auth_method {
        ClientAuth::None if o.code_challenge_method == Pkce::None => {
            errors.push(FieldError::new("oidc.code_challenge_method", "a public client (token_endpoint_auth_method none) must use PKCE"))
        }
        ClientAuth::None => {}
        ClientAuth::PrivateKeyJwt if secrets.client_private_key.is_none() || o.client_jwk.is_none() => errors.push(FieldError::new(
            "oidc.token_endpoint_auth_method",
            "private_key_jwt needs the connection's key pair (the gateway makes one when the method is set)",
        )),
        ClientAuth::PrivateKeyJwt => {}
        m if m.needs_secret() && secrets.client_secret.is_none() => {
            errors.push(FieldError::new("oidc.client_secret", format!("is required with token_endpoint_auth_method {}", m.as_str())))
        }
        // RFC 7518 3.2: an HS256 key must be at least as long as the hash (32 bytes).
        ClientAuth::ClientSecretJwt if secrets.client_secret.as_ref().is_some_and(|s| s.len() < 32) => {
            errors.push(FieldError::new("oidc.client_secret", "must be at least 32 bytes with client_secret_jwt (it is the HS256 key)"))
        }
        _ => {}
    }
    if !o.scopes.iter().any(|s| s == "openid") {
        errors.push(FieldError::new("oidc.scopes", "must include openid"));
    }
    check_scopes(errors, "oidc.scopes", &o.scopes);
    check_scopes(errors, "oidc.additional_scopes", &o.additional_scopes);
    if o.allowed_algorithms.is_empty() {
        errors.push(FieldError::new("oidc.allowed_algorithms", "must list at least one algorithm"));
    }
    for a in &o.allowed_algorithms {
        if !KNOWN_ALGORITHMS.contains(&a.as_str()) {
            errors.push(FieldError::new("oidc.allowed_algorithms", format!("{a:?} is not accepted; choose from {}", KNOWN_ALGORITHMS.join(", "))));
        }
    }
}

fn validate_saml(errors: &mut Vec<FieldError>, s: &SamlSettings, secrets: &Secrets) {
    if s.entity_id.trim().is_empty() {
        errors.push(FieldError::new("saml.entity_id", "is required"));
    }
    if s.idp.entity_id.is_empty() || s.idp.sso_url.is_empty() {
        errors.push(FieldError::new("saml.idp_metadata_xml", "is required: upload the IdP's metadata (or give idp_metadata_url)"));
    } else {
        check_url(errors, "saml.idp.sso_url", &s.idp.sso_url);
        if s.idp.certificates.is_empty() {
            errors.push(FieldError::new("saml.idp_metadata_xml", "has no signing certificate, so responses could not be verified"));
        }
    }
    if let Some(u) = &s.idp_metadata_url {
        check_url(errors, "saml.idp_metadata_url", u);
    }
    if s.sign_requests && (s.sp_certificate.is_none() || secrets.sp_private_key.is_none()) {
        errors.push(FieldError::new("saml.sign_requests", "needs an SP key pair: upload sp_certificate and sp_private_key, or generate one"));
    }
}
