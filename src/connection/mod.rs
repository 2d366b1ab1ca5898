//! Connections: one configured upstream identity provider each.
//!
//! This module owns the connection model (protocol settings, claim mappings, secrets),
//! its validation, the vendor presets (`providers/*.toml`), SAML IdP metadata parsing,
//! OIDC discovery and SP key pairs. [`Registry`] is the one place that creates,
//! changes and removes connections, for the admin API and the CLI alike; the store
//! keeps what it is given.

pub mod discovery;
pub mod input;
pub mod keypair;
pub mod metadata;
pub mod preset;
mod registry;

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use utoipa::ToSchema;

pub use input::{ConnectionPatch, FieldError, OidcPatch, SamlPatch};
pub use registry::{changed_fields, export, ConnectionError, Declaration, Registry};

use crate::clock::{rfc3339, Millis};
use crate::secret::Secret;

/// `oidc` or `saml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// OpenID Connect.
    Oidc,
    /// SAML 2.0.
    Saml,
}

impl Protocol {
    /// Every protocol (a new one is added here and in [`Protocol::as_str`]; the compiler
    /// then lists every other place).
    pub const ALL: [Protocol; 2] = [Protocol::Oidc, Protocol::Saml];

    /// `oidc` or `saml`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Oidc => "oidc",
            Protocol::Saml => "saml",
        }
    }

    /// Parses the name [`Protocol::as_str`] gives.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// PKCE code challenge method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum Pkce {
    /// No PKCE.
    #[serde(rename = "none", alias = "None")]
    None,
    /// `plain` (verifier sent as the challenge).
    #[serde(rename = "plain", alias = "Plain")]
    Plain,
    /// `S256` (SHA-256 of the verifier).
    #[serde(rename = "S256", alias = "s256")]
    S256,
}

/// How the client authenticates at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// HTTP Basic with client id and secret (the OIDC default).
    ClientSecretBasic,
    /// Client id and secret in the form body.
    ClientSecretPost,
    /// A public client: no secret, PKCE required.
    None,
    /// A JWT signed with the client secret (HS256, RFC 7523 section 2.2).
    ClientSecretJwt,
    /// A JWT signed with the connection's own private key; its public key is published
    /// at the connection's JWKS URL for the IdP to fetch.
    PrivateKeyJwt,
}

impl ClientAuth {
    /// The name discovery and the API use.
    pub fn as_str(self) -> &'static str {
        match self {
            ClientAuth::ClientSecretBasic => "client_secret_basic",
            ClientAuth::ClientSecretPost => "client_secret_post",
            ClientAuth::None => "none",
            ClientAuth::ClientSecretJwt => "client_secret_jwt",
            ClientAuth::PrivateKeyJwt => "private_key_jwt",
        }
    }

    /// Whether the method needs the client secret.
    pub fn needs_secret(self) -> bool {
        matches!(self, ClientAuth::ClientSecretBasic | ClientAuth::ClientSecretPost | ClientAuth::ClientSecretJwt)
    }
}

/// One allow rule: the login passes only when `claim` (a claim or SAML attribute name,
/// looked up as the claim mappings look names up) holds one of `values`. A list claim
/// passes when any of its members is one of them. Values compare by ASCII case only (they
/// are domains and tenant ids in practice). Every rule of a connection must pass.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AllowRule {
    /// The claim or attribute, such as `hd` (Google Workspace domain) or `tid`.
    pub claim: String,
    /// The values that may sign in, such as `["example.com"]`.
    pub values: Vec<String>,
}

/// What group sync does with an IdP group value that `GroupMapping::map` does not name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Unmapped {
    /// Match it to a directory group of that name (ASCII case-insensitively).
    #[default]
    ByName,
    /// Ignore it: only mapped values grant memberships.
    Ignore,
}

/// How the values of the groups claim become directory groups. IdPs send object ids
/// (Entra ID), full paths (`/parent/child`, Keycloak) or role names; `map` names the
/// directory group (by name or id) each of them stands for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupMapping {
    /// IdP group value to directory group (its name or its id). Keys compare by ASCII case only.
    #[serde(default)]
    pub map: std::collections::BTreeMap<String, String>,
    /// Values not in `map`: `by_name` (default) or `ignore`.
    #[serde(default)]
    pub unmapped: Unmapped,
}

impl GroupMapping {
    /// Whether nothing is set (the default: every value matched by name).
    pub fn is_default(&self) -> bool {
        self == &GroupMapping::default()
    }
}

/// One claim or attribute name, or several tried in order (the first present wins).
/// Accepted as a string or a list; empty means "not mapped".
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClaimNames(pub Vec<String>);

impl ClaimNames {
    /// A single name.
    pub fn one(name: &str) -> Self {
        Self(vec![name.to_string()])
    }

    /// Whether nothing is mapped.
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|n| n.trim().is_empty())
    }
}

impl utoipa::PartialSchema for ClaimNames {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, SchemaType, Type};
        let text = || ObjectBuilder::new().schema_type(SchemaType::Type(Type::String));
        let one_of = OneOfBuilder::new()
            .item(text())
            .item(ArrayBuilder::new().items(text()))
            .description(Some("A claim or attribute name, or a list of names tried in order"))
            .build();
        utoipa::openapi::RefOr::T(Schema::OneOf(one_of))
    }
}

impl ToSchema for ClaimNames {}

impl Serialize for ClaimNames {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0.as_slice() {
            [one] => s.serialize_str(one),
            many => many.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for ClaimNames {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            One(String),
            Many(Vec<String>),
        }
        Ok(match Form::deserialize(d)? {
            Form::One(s) if s.trim().is_empty() => ClaimNames(vec![]),
            Form::One(s) => ClaimNames(vec![s]),
            Form::Many(v) => ClaimNames(v),
        })
    }
}

/// How upstream claims (OIDC) or attributes (SAML) become the identity's fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
pub struct ClaimMappings {
    /// Stable user id (`sub`, `oid`, or `NameID` for SAML).
    pub user_id: ClaimNames,
    /// Email address.
    pub email: ClaimNames,
    /// Full name.
    pub name: ClaimNames,
    /// Given name (optional when `name` is set).
    pub given_name: ClaimNames,
    /// Family name (optional when `name` is set).
    pub family_name: ClaimNames,
    /// Picture URL.
    pub picture: ClaimNames,
    /// Groups (a list or a single string in the claim).
    pub groups: ClaimNames,
}

/// OIDC protocol settings (everything but the secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OidcSettings {
    /// Issuer, compared byte for byte with the ID token's `iss`.
    pub issuer: String,
    /// Client id registered at the IdP.
    pub client_id: String,
    /// Authorization endpoint.
    pub authorization_endpoint: String,
    /// Token endpoint.
    pub token_endpoint: String,
    /// Revocation endpoint, if the IdP has one.
    pub revocation_endpoint: Option<String>,
    /// User info endpoint; required when claims do not come from the ID token.
    pub userinfo_endpoint: Option<String>,
    /// JWKS URI; required when token signatures are verified.
    pub jwks_uri: Option<String>,
    /// On: claims from the ID token. Off: from the user info endpoint.
    pub userinfo_from_id_token: bool,
    /// Allow only users whose `email_verified` claim is true.
    pub email_verification: bool,
    /// Verify ID token signatures with keys from the JWKS URI.
    pub verify_signature: bool,
    /// PKCE method.
    pub code_challenge_method: Pkce,
    /// Client authentication at the token endpoint.
    pub token_endpoint_auth_method: ClientAuth,
    /// Standard userinfo scopes (must include `openid`).
    pub scopes: Vec<String>,
    /// Additional scopes.
    pub additional_scopes: Vec<String>,
    /// ID token signature algorithms accepted.
    pub allowed_algorithms: Vec<String>,
    /// The IdP sends `iss` in every authorization response (RFC 9207; its discovery's
    /// `authorization_response_iss_parameter_supported`): the callback then requires it.
    /// Present or not, an `iss` in the callback must be the issuer.
    #[serde(default)]
    pub authorization_response_iss_parameter_supported: bool,
    /// Other `iss` values the ID token may carry for this same issuer (Google's legacy
    /// `accounts.google.com`, without the scheme). Compared byte for byte.
    #[serde(default)]
    pub issuer_aliases: Vec<String>,
    /// With an issuer holding `{tenantid}` (Entra ID `common` / `organizations`): the
    /// tenants (`tid`) that may sign in. Required then; each tenant's token must name the
    /// issuer with its own `tid` put in the template.
    #[serde(default)]
    pub allowed_tenants: Vec<String>,
    /// The public key (JWK) the IdP verifies `private_key_jwt` assertions with, published at
    /// the connection's JWKS URL; the private key is a secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_jwk: Option<serde_json::Value>,
    /// Where to read a user's groups when the IdP sends an overage pointer instead of them
    /// (Entra ID: `https://graph.microsoft.com/v1.0/me/getMemberObjects`, with a scope that
    /// lets the access token read it). Called with the login's access token; only this
    /// URL, never one the token names. Unset: an overage refuses the login while group
    /// sync is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups_endpoint: Option<String>,
}

/// The issuer template placeholder of Entra ID's multi-tenant metadata.
pub const TENANT_PLACEHOLDER: &str = "{tenantid}";

impl OidcSettings {
    /// Whether the issuer is a multi-tenant template (`{tenantid}` in it).
    pub fn is_multi_tenant(&self) -> bool {
        self.issuer.contains(TENANT_PLACEHOLDER)
    }
}

/// A signing certificate of a SAML IdP, pinned from its metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Certificate {
    /// The certificate, PEM.
    pub pem: String,
    /// Subject, one line.
    pub subject: String,
    /// Expiry (RFC 3339).
    pub not_after: String,
    /// SHA-256 fingerprint, hex.
    pub sha256: String,
}

/// What the IdP's metadata says, parsed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct IdpMetadata {
    /// The IdP's entity id (the `Issuer` of its responses).
    pub entity_id: String,
    /// Where AuthnRequests go.
    pub sso_url: String,
    /// The binding of `sso_url` (HTTP-Redirect preferred).
    pub sso_binding: String,
    /// Every signing certificate (several during a rollover).
    pub certificates: Vec<Certificate>,
}

/// SAML protocol settings (everything but the SP private key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SamlSettings {
    /// Our SP entity id, registered at the IdP.
    pub entity_id: String,
    /// The IdP, from its metadata.
    pub idp: IdpMetadata,
    /// Where the metadata came from, when fetched by URL.
    pub idp_metadata_url: Option<String>,
    /// Refuse responses whose assertion is not signed (on by default).
    pub require_signed_assertions: bool,
    /// Sign AuthnRequests with the SP key pair.
    pub sign_requests: bool,
    /// SP certificate (PEM) to register at the IdP when signing requests.
    pub sp_certificate: Option<String>,
    /// NameID format to ask for; `None`: persistent. A transient NameID is never a user id.
    pub name_id_format: Option<String>,
    /// Accept responses no AuthnRequest of ours asked for (off by default).
    pub allow_idp_initiated: bool,
    /// Accept RSA-SHA1 signatures and SHA-1 digests from this IdP (off by default; legacy
    /// AD FS and JumpCloud set-ups). Logged as a warning at every use and counted in
    /// `ssogate_saml_sha1_connections` while on.
    #[serde(default)]
    pub allow_sha1: bool,
}

/// The protocol's own settings: a connection is exactly one kind of upstream. Stored as
/// `{"oidc": {...}}` or `{"saml": {...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Upstream {
    /// OpenID Connect.
    Oidc(OidcSettings),
    /// SAML 2.0.
    Saml(SamlSettings),
}

impl Upstream {
    /// The protocol of these settings.
    pub fn protocol(&self) -> Protocol {
        match self {
            Upstream::Oidc(_) => Protocol::Oidc,
            Upstream::Saml(_) => Protocol::Saml,
        }
    }

    /// The OIDC settings, when this is an OIDC upstream.
    pub fn oidc(&self) -> Option<&OidcSettings> {
        match self {
            Upstream::Oidc(o) => Some(o),
            Upstream::Saml(_) => None,
        }
    }

    /// The SAML settings, when this is a SAML upstream.
    pub fn saml(&self) -> Option<&SamlSettings> {
        match self {
            Upstream::Saml(s) => Some(s),
            Upstream::Oidc(_) => None,
        }
    }
}

/// Settings common to every protocol, plus the protocol's own; stored as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// External URL of the gateway for this connection; default: the public URL.
    pub webapp_url: Option<String>,
    /// Create users on their first login; off: only existing or invited users.
    pub create_users: bool,
    /// Sync group memberships from the groups claim.
    pub group_sync: bool,
    /// Claim mappings.
    pub claims: ClaimMappings,
    /// The protocol's settings.
    pub upstream: Upstream,
    /// Allow rules: who may sign in beyond a verified reply (`hd`, `tid`, any claim).
    #[serde(default)]
    pub allow: Vec<AllowRule>,
    /// How group values become directory groups.
    #[serde(default)]
    pub group_mapping: GroupMapping,
}

/// Secrets of a connection; sealed together in the store.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Secrets {
    /// OIDC client secret.
    pub client_secret: Option<String>,
    /// SAML SP private key (PKCS#8 PEM).
    pub sp_private_key: Option<String>,
    /// OIDC client private key for `private_key_jwt` (PKCS#8 PEM), made by the gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_private_key: Option<String>,
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = |o: &Option<String>| if o.is_some() { "[redacted]" } else { "None" };
        f.debug_struct("Secrets")
            .field("client_secret", &set(&self.client_secret))
            .field("sp_private_key", &set(&self.sp_private_key))
            .field("client_private_key", &set(&self.client_private_key))
            .finish()
    }
}

impl Secrets {
    /// The client secret as a [`Secret`].
    pub fn client_secret(&self) -> Option<Secret> {
        self.client_secret.as_deref().map(Secret::new)
    }
}

/// A connection with its secrets opened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connection {
    /// Stable, URL-safe id.
    pub id: String,
    /// Unique display name.
    pub display_name: String,
    /// Provider preset.
    pub provider: String,
    /// Usable for logins.
    pub active: bool,
    /// Settings.
    pub settings: Settings,
    /// Secrets.
    pub secrets: Secrets,
    /// Created.
    pub created_at: Millis,
    /// Last update.
    pub updated_at: Millis,
    /// Version for optimistic concurrency.
    pub version: i64,
    /// `config` when the configuration file declares it: read-only through the API.
    #[serde(default)]
    pub managed_by: Option<String>,
}

impl Connection {
    /// What decides who may sign in through this connection: its allow rules, and the
    /// upstream's identity (OIDC issuer, aliases, tenants and client id; the SAML IdP's
    /// entity id). When it changes, sessions admitted under the old values end.
    pub fn admission(&self) -> serde_json::Value {
        let upstream = match &self.settings.upstream {
            Upstream::Oidc(o) => serde_json::json!({"issuer": o.issuer, "aliases": o.issuer_aliases, "tenants": o.allowed_tenants, "client_id": o.client_id}),
            Upstream::Saml(s) => serde_json::json!({"idp": s.idp.entity_id}),
        };
        serde_json::json!({"allow": self.settings.allow, "upstream": upstream})
    }

    /// The protocol (from the settings: there is no other copy of it).
    pub fn protocol(&self) -> Protocol {
        self.settings.upstream.protocol()
    }

    /// The gateway URL this connection's endpoints hang off.
    pub fn webapp_base(&self, public_base: &str) -> String {
        self.settings.webapp_url.as_deref().unwrap_or(public_base).trim_end_matches('/').to_string()
    }

    /// Where the IdP sends the browser back (OIDC).
    pub fn callback_url(&self, public_base: &str) -> String {
        format!("{}/oidc/{}/callback", self.webapp_base(public_base), self.id)
    }

    /// Where the IdP posts its response (SAML).
    pub fn acs_url(&self, public_base: &str) -> String {
        format!("{}/saml/{}/acs", self.webapp_base(public_base), self.id)
    }

    /// The public key of `private_key_jwt` (OIDC), for the IdP.
    pub fn client_jwks_url(&self, public_base: &str) -> String {
        format!("{}/oidc/{}/jwks.json", self.webapp_base(public_base), self.id)
    }

    /// Our SP metadata (SAML).
    pub fn sp_metadata_url(&self, public_base: &str) -> String {
        format!("{}/saml/{}/metadata", self.webapp_base(public_base), self.id)
    }

    /// Where a login with this connection starts.
    pub fn login_url(&self, public_base: &str) -> String {
        format!("{}/login/{}", public_base.trim_end_matches('/'), self.id)
    }
}

/// A connection as the API shows it: no secret, only whether one is set.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ConnectionView {
    /// Stable, URL-safe id.
    pub id: String,
    /// Unique display name.
    pub display_name: String,
    /// Protocol.
    pub protocol: Protocol,
    /// Provider preset.
    pub provider: String,
    /// Shown on the login page.
    pub active: bool,
    /// Created (RFC 3339).
    pub created_at: String,
    /// Last update (RFC 3339).
    pub updated_at: String,
    /// Send as `If-Match` (or `version`) with a PATCH.
    pub version: i64,
    /// External URL of the gateway used for this connection.
    pub webapp_url: String,
    /// Redirect URL to register at the IdP (OIDC).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,
    /// Assertion Consumer Service URL to register at the IdP (SAML).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acs_url: Option<String>,
    /// Our SP metadata URL (SAML).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sp_metadata_url: Option<String>,
    /// Where a login with this connection starts.
    pub login_url: String,
    /// Create users on first login.
    pub create_users: bool,
    /// Group sync.
    pub group_sync: bool,
    /// Claim mappings.
    pub claims: ClaimMappings,
    /// Allow rules: who may sign in beyond a verified reply.
    pub allow: Vec<AllowRule>,
    /// How group values become directory groups.
    pub group_mapping: GroupMapping,
    /// `config` when the configuration file declares this connection: the API then
    /// refuses to change or delete it (409), the file is where it changes.
    pub managed_by: Option<String>,
    /// When a login through it last succeeded (RFC 3339).
    pub last_login_at: Option<String>,
    /// When a login through it was last refused (RFC 3339).
    pub last_error_at: Option<String>,
    /// What that refusal was: its step, its reason and the sentence the user saw.
    pub last_error: Option<String>,
    /// The protocol's settings, as `oidc` or `saml`.
    #[serde(flatten)]
    pub upstream: UpstreamView,
}

impl ConnectionView {
    /// The view with the connection's health (last login, last refusal).
    pub fn with_health(mut self, health: Option<&crate::store::ConnectionHealth>) -> Self {
        if let Some(h) = health {
            self.last_login_at = h.last_login_at.map(rfc3339);
            self.last_error_at = h.last_error_at.map(rfc3339);
            self.last_error.clone_from(&h.last_error);
        }
        self
    }
}

/// The protocol's settings as shown: one key, `oidc` or `saml`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamView {
    /// OIDC settings.
    Oidc(OidcView),
    /// SAML settings.
    Saml(SamlView),
}

/// OIDC settings as shown.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OidcView {
    /// The settings.
    #[serde(flatten)]
    pub settings: OidcSettings,
    /// Whether a client secret is stored (it is never shown).
    pub client_secret_set: bool,
    /// Where the IdP fetches the public key of `private_key_jwt` (register it at the IdP
    /// as the client's JWKS URL); present once the connection has a key pair.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_jwks_url: Option<String>,
}

/// SAML settings as shown.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SamlView {
    /// The settings.
    #[serde(flatten)]
    pub settings: SamlSettings,
    /// Whether an SP private key is stored (it is never shown).
    pub sp_private_key_set: bool,
    /// The earliest expiry among the IdP's signing certificates (RFC 3339).
    pub next_certificate_expiry: Option<String>,
}

impl Connection {
    /// The API view.
    pub fn view(&self, public_base: &str) -> ConnectionView {
        let (mut callback_url, mut acs_url, mut sp_metadata_url) = (None, None, None);
        let upstream = match &self.settings.upstream {
            Upstream::Oidc(o) => {
                callback_url = Some(self.callback_url(public_base));
                UpstreamView::Oidc(OidcView {
                    settings: o.clone(),
                    client_secret_set: self.secrets.client_secret.is_some(),
                    client_jwks_url: o.client_jwk.as_ref().map(|_| self.client_jwks_url(public_base)),
                })
            }
            Upstream::Saml(s) => {
                acs_url = Some(self.acs_url(public_base));
                sp_metadata_url = Some(self.sp_metadata_url(public_base));
                UpstreamView::Saml(SamlView {
                    settings: s.clone(),
                    sp_private_key_set: self.secrets.sp_private_key.is_some(),
                    next_certificate_expiry: s.idp.certificates.iter().map(|c| c.not_after.clone()).min(),
                })
            }
        };
        ConnectionView {
            id: self.id.clone(),
            display_name: self.display_name.clone(),
            protocol: self.protocol(),
            provider: self.provider.clone(),
            active: self.active,
            created_at: rfc3339(self.created_at),
            updated_at: rfc3339(self.updated_at),
            version: self.version,
            webapp_url: self.webapp_base(public_base),
            callback_url,
            acs_url,
            sp_metadata_url,
            login_url: self.login_url(public_base),
            create_users: self.settings.create_users,
            group_sync: self.settings.group_sync,
            claims: self.settings.claims.clone(),
            allow: self.settings.allow.clone(),
            group_mapping: self.settings.group_mapping.clone(),
            managed_by: self.managed_by.clone(),
            last_login_at: None,
            last_error_at: None,
            last_error: None,
            upstream,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_names_accept_string_or_list() {
        let one: ClaimNames = serde_json::from_str("\"cognito:groups\"").unwrap();
        assert_eq!(one, ClaimNames::one("cognito:groups"));
        let many: ClaimNames = serde_json::from_str("[\"a\",\"b\"]").unwrap();
        assert_eq!(many.0, vec!["a", "b"]);
        let none: ClaimNames = serde_json::from_str("\"\"").unwrap();
        assert!(none.is_empty());
        assert_eq!(serde_json::to_string(&one).unwrap(), "\"cognito:groups\"");
    }

    #[test]
    fn secrets_debug_is_redacted() {
        let s = Secrets { client_secret: Some("topsecret".into()), sp_private_key: Some("-----BEGIN".into()), client_private_key: Some("-----BEGIN".into()) };
        let shown = format!("{s:?}");
        assert!(!shown.contains("topsecret") && !shown.contains("BEGIN"), "{shown}");
    }
}
