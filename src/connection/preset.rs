//! Provider presets: what each vendor really uses (URL patterns, scopes, claim names,
//! PKCE), as data in `providers/*.toml`, compiled into the binary. A connection made
//! from a preset starts from these values; every one can be overridden.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::*;

/// The preset files, embedded at build time. A test checks this list against the folder.
pub const FILES: &[(&str, &str)] = &[
    ("oidc-adfs.toml", include_str!("../../providers/oidc-adfs.toml")),
    ("oidc-auth0.toml", include_str!("../../providers/oidc-auth0.toml")),
    ("oidc-azure.toml", include_str!("../../providers/oidc-azure.toml")),
    ("oidc-cognito.toml", include_str!("../../providers/oidc-cognito.toml")),
    ("oidc-custom.toml", include_str!("../../providers/oidc-custom.toml")),
    ("oidc-google.toml", include_str!("../../providers/oidc-google.toml")),
    ("oidc-keycloak.toml", include_str!("../../providers/oidc-keycloak.toml")),
    ("oidc-okta.toml", include_str!("../../providers/oidc-okta.toml")),
    ("oidc-ping.toml", include_str!("../../providers/oidc-ping.toml")),
    ("saml-adfs.toml", include_str!("../../providers/saml-adfs.toml")),
    ("saml-custom.toml", include_str!("../../providers/saml-custom.toml")),
    ("saml-duo.toml", include_str!("../../providers/saml-duo.toml")),
    ("saml-google.toml", include_str!("../../providers/saml-google.toml")),
    ("saml-jumpcloud.toml", include_str!("../../providers/saml-jumpcloud.toml")),
];

/// A value the admin supplies to fill the preset's URL patterns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Placeholder {
    /// Name used as `{name}` in patterns.
    pub name: String,
    /// What it is.
    pub description: String,
    /// An example value.
    pub example: String,
}

/// OIDC part of a preset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OidcPreset {
    /// Issuer pattern.
    pub issuer: Option<String>,
    /// Discovery document URL pattern (`{issuer}` is the issuer).
    pub discovery_url: Option<String>,
    /// Standard scopes.
    pub scopes: Vec<String>,
    /// Additional scopes.
    pub additional_scopes: Vec<String>,
    /// PKCE method.
    pub code_challenge_method: Pkce,
    /// Token endpoint client authentication.
    pub token_endpoint_auth_method: ClientAuth,
    /// Claims from the ID token.
    pub userinfo_from_id_token: bool,
    /// Require `email_verified`.
    pub email_verification: bool,
    /// Verify ID token signatures.
    pub verify_signature: bool,
    /// Other `iss` forms the vendor's ID tokens carry (Google's scheme-less one).
    #[serde(default)]
    pub issuer_aliases: Vec<String>,
}

/// SAML part of a preset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SamlPreset {
    /// IdP metadata URL pattern.
    pub metadata_url: Option<String>,
    /// NameID format to request.
    pub name_id_format: Option<String>,
    /// Require signed assertions.
    pub require_signed_assertions: bool,
    /// Sign AuthnRequests.
    pub sign_requests: bool,
}

/// Claim mappings of a preset, with the group sync default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClaimsPreset {
    /// The mappings.
    #[serde(flatten)]
    pub mappings: ClaimMappings,
    /// Group sync on by default (only where the vendor sends groups without set-up).
    pub group_sync: bool,
}

/// One vendor preset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "PresetFile", into = "PresetFile")]
pub struct Preset {
    /// Provider id, unique within its protocol.
    pub provider: String,
    /// Vendor name.
    pub name: String,
    /// One line for the admin.
    pub hint: String,
    /// The vendor page the admin needs.
    pub docs: Option<String>,
    /// Values to supply for the URL patterns.
    pub placeholders: Vec<Placeholder>,
    /// The protocol's defaults.
    pub upstream: UpstreamPreset,
    /// Claim mappings.
    pub claims: ClaimsPreset,
}

/// The protocol's part of a preset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamPreset {
    /// OIDC defaults.
    Oidc(OidcPreset),
    /// SAML defaults.
    Saml(SamlPreset),
}

/// A preset as written in `providers/*.toml` and listed by the API: `protocol` names the
/// one section (`[oidc]` or `[saml]`) that must be present.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PresetFile {
    /// Provider id, unique within its protocol.
    pub provider: String,
    /// Protocol.
    pub protocol: Protocol,
    /// Vendor name.
    pub name: String,
    /// One line for the admin.
    pub hint: String,
    /// The vendor page the admin needs.
    pub docs: Option<String>,
    /// Values to supply for the URL patterns.
    #[serde(default)]
    pub placeholders: Vec<Placeholder>,
    /// OIDC defaults.
    pub oidc: Option<OidcPreset>,
    /// SAML defaults.
    pub saml: Option<SamlPreset>,
    /// Claim mappings.
    pub claims: ClaimsPreset,
}

impl TryFrom<PresetFile> for Preset {
    type Error = String;

    fn try_from(f: PresetFile) -> Result<Self, String> {
        let upstream = match (f.protocol, f.oidc, f.saml) {
            (Protocol::Oidc, Some(o), None) => UpstreamPreset::Oidc(o),
            (Protocol::Saml, None, Some(s)) => UpstreamPreset::Saml(s),
            (p, _, _) => return Err(format!("a {p} preset needs its [{p}] section and no other")),
        };
        Ok(Preset { provider: f.provider, name: f.name, hint: f.hint, docs: f.docs, placeholders: f.placeholders, upstream, claims: f.claims })
    }
}

impl From<Preset> for PresetFile {
    fn from(p: Preset) -> Self {
        let protocol = p.protocol();
        let (oidc, saml) = match p.upstream {
            UpstreamPreset::Oidc(o) => (Some(o), None),
            UpstreamPreset::Saml(s) => (None, Some(s)),
        };
        PresetFile { provider: p.provider, protocol, name: p.name, hint: p.hint, docs: p.docs, placeholders: p.placeholders, oidc, saml, claims: p.claims }
    }
}

/// Parses one preset file.
pub fn parse(text: &str) -> Result<Preset, String> {
    let f: PresetFile = toml::from_str(text).map_err(|e| e.to_string())?;
    Preset::try_from(f)
}

/// Every preset, parsed once.
pub fn all() -> &'static [Preset] {
    static ALL: OnceLock<Vec<Preset>> = OnceLock::new();
    ALL.get_or_init(|| {
        FILES
            .iter()
            // The files are checked by a test; a broken one is skipped, not fatal.
            .filter_map(|(name, text)| parse(text).map_err(|e| tracing::error!(file = name, error = %e, "bad preset")).ok())
            .collect()
    })
}

/// The preset for a protocol and provider.
pub fn find(protocol: Protocol, provider: &str) -> Option<&'static Preset> {
    all().iter().find(|p| p.protocol() == protocol && p.provider == provider)
}

/// Whether a placeholder value is safe to put in a URL: no `/`, `@`, `?`, `#` or `:`
/// that could turn a host into another one.
fn safe_value(v: &str) -> bool {
    !v.is_empty() && v.len() <= 253 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
}

impl Preset {
    /// The protocol of this preset.
    pub fn protocol(&self) -> Protocol {
        match self.upstream {
            UpstreamPreset::Oidc(_) => Protocol::Oidc,
            UpstreamPreset::Saml(_) => Protocol::Saml,
        }
    }

    /// The OIDC defaults, for an OIDC preset.
    pub fn oidc(&self) -> Option<&OidcPreset> {
        match &self.upstream {
            UpstreamPreset::Oidc(o) => Some(o),
            UpstreamPreset::Saml(_) => None,
        }
    }

    /// The SAML defaults, for a SAML preset.
    pub fn saml(&self) -> Option<&SamlPreset> {
        match &self.upstream {
            UpstreamPreset::Saml(s) => Some(s),
            UpstreamPreset::Oidc(_) => None,
        }
    }

    /// Fills a pattern with placeholder values; errors name the missing or bad ones.
    pub fn fill(&self, pattern: &str, values: &BTreeMap<String, String>, issuer: Option<&str>) -> Result<String, Vec<FieldError>> {
        let mut out = pattern.to_string();
        let mut errors = Vec::new();
        if let Some(iss) = issuer {
            out = out.replace("{issuer}", iss.trim_end_matches('/'));
        }
        for p in &self.placeholders {
            let key = format!("{{{}}}", p.name);
            if !out.contains(&key) {
                continue;
            }
            match values.get(&p.name).map(|v| v.trim()) {
                Some(v) if safe_value(v) => out = out.replace(&key, v),
                Some(_) => errors.push(FieldError::new(format!("placeholders.{}", p.name), "may hold only letters, digits, '.', '-' and '_'")),
                None => errors.push(FieldError::new(format!("placeholders.{}", p.name), format!("is required: {} (for example {})", p.description, p.example))),
            }
        }
        if errors.is_empty() {
            Ok(out)
        } else {
            Err(errors)
        }
    }

    /// The settings a new connection starts from. URL patterns stay unfilled here
    /// (the registry fills them from the admin's placeholder values).
    pub fn settings(&self) -> Settings {
        Settings {
            webapp_url: None,
            create_users: false,
            group_sync: self.claims.group_sync,
            claims: self.claims.mappings.clone(),
            upstream: match &self.upstream {
                UpstreamPreset::Oidc(o) => Upstream::Oidc(OidcSettings {
                    issuer: String::new(),
                    client_id: String::new(),
                    authorization_endpoint: String::new(),
                    token_endpoint: String::new(),
                    revocation_endpoint: None,
                    userinfo_endpoint: None,
                    jwks_uri: None,
                    userinfo_from_id_token: o.userinfo_from_id_token,
                    email_verification: o.email_verification,
                    verify_signature: o.verify_signature,
                    code_challenge_method: o.code_challenge_method,
                    token_endpoint_auth_method: o.token_endpoint_auth_method,
                    scopes: o.scopes.clone(),
                    additional_scopes: o.additional_scopes.clone(),
                    allowed_algorithms: vec!["RS256".into(), "ES256".into(), "PS256".into()],
                    authorization_response_iss_parameter_supported: false,
                    issuer_aliases: o.issuer_aliases.clone(),
                    allowed_tenants: vec![],
                    client_jwk: None,
                    groups_endpoint: None,
                }),
                UpstreamPreset::Saml(s) => Upstream::Saml(SamlSettings {
                    entity_id: String::new(),
                    idp: IdpMetadata { entity_id: String::new(), sso_url: String::new(), sso_binding: String::new(), certificates: vec![] },
                    idp_metadata_url: None,
                    require_signed_assertions: s.require_signed_assertions,
                    sign_requests: s.sign_requests,
                    sp_certificate: None,
                    name_id_format: s.name_id_format.clone(),
                    allow_idp_initiated: false,
                    allow_sha1: false,
                }),
            },
            allow: vec![],
            group_mapping: Default::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_in_providers_is_embedded_and_parses() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/providers");
        let mut on_disk: Vec<String> =
            std::fs::read_dir(dir).unwrap().filter_map(|e| e.ok()?.file_name().into_string().ok()).filter(|n| n.ends_with(".toml")).collect();
        on_disk.sort();
        let embedded: Vec<String> = FILES.iter().map(|(n, _)| n.to_string()).collect();
        assert_eq!(on_disk, embedded, "providers/ and preset::FILES differ");
        for (name, text) in FILES {
            let p = parse(text).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(format!("{}-{}.toml", p.protocol(), p.provider), *name);
            assert!(!p.hint.is_empty() && !p.hint.contains('\n'), "{name}: hint is one line");
        }
        assert_eq!(all().len(), FILES.len(), "every embedded preset parses");
    }

    #[test]
    fn every_placeholder_in_a_pattern_is_declared() {
        for p in all() {
            let patterns =
                [p.oidc().and_then(|o| o.issuer.clone()), p.oidc().and_then(|o| o.discovery_url.clone()), p.saml().and_then(|s| s.metadata_url.clone())];
            let values: BTreeMap<String, String> = p.placeholders.iter().map(|ph| (ph.name.clone(), ph.example.clone())).collect();
            for pattern in patterns.into_iter().flatten() {
                let filled = p.fill(&pattern, &values, Some("https://issuer.example")).unwrap();
                assert!(!filled.contains('{'), "{}: {pattern} leaves {filled}", p.provider);
                url::Url::parse(&filled).unwrap();
            }
        }
    }

    #[test]
    fn vendor_facts_are_in_the_presets() {
        let cognito = find(Protocol::Oidc, "cognito").unwrap();
        assert_eq!(cognito.claims.mappings.groups, ClaimNames::one("cognito:groups"));
        let azure = find(Protocol::Oidc, "azure").unwrap();
        assert!(azure.oidc().unwrap().issuer.as_ref().unwrap().contains("{tenant}"));
        assert!(!azure.oidc().unwrap().email_verification, "Entra ID sends no email_verified");
        let okta = find(Protocol::Oidc, "okta").unwrap();
        assert!(okta.oidc().unwrap().additional_scopes.contains(&"groups".to_string()));
        let adfs = find(Protocol::Saml, "adfs").unwrap();
        assert!(adfs.claims.mappings.email.0.iter().any(|n| n.contains("xmlsoap.org/ws/2005/05/identity/claims/emailaddress")));
        assert!(find(Protocol::Saml, "google").is_some() && find(Protocol::Oidc, "google").is_some());
    }

    #[test]
    fn presets_follow_vendors_md() {
        let google = find(Protocol::Oidc, "google").unwrap();
        assert_eq!(google.oidc().unwrap().issuer_aliases, vec!["accounts.google.com"], "Google's legacy issuer form");
        assert!(google.hint.contains("hd"), "the Workspace domain is an allow rule");
        for vendor in ["keycloak", "okta", "azure", "adfs"] {
            let o = find(Protocol::Oidc, vendor).unwrap().oidc().unwrap();
            assert!(!o.email_verification, "{vendor}: email_verified is not established by VENDORS.md, so not required");
        }
        let adfs = find(Protocol::Saml, "adfs").unwrap();
        assert_eq!(adfs.claims.mappings.user_id.0[0], "http://schemas.microsoft.com/identity/claims/objectidentifier", "Entra's stable id first");
        assert!(adfs.hint.contains("SHA-256") && find(Protocol::Saml, "jumpcloud").unwrap().hint.contains("RSA-SHA256"), "how to leave SHA-1");
        for p in all() {
            assert!(p.hint.len() <= 300, "{}: a hint is one line an admin reads", p.provider);
        }
    }

    #[test]
    fn placeholder_values_cannot_redirect_the_url() {
        let cognito = find(Protocol::Oidc, "cognito").unwrap();
        let pattern = cognito.oidc().unwrap().issuer.clone().unwrap();
        let mut v = BTreeMap::new();
        v.insert("region".to_string(), "evil.com/x?".to_string());
        v.insert("user_pool_id".to_string(), "p".to_string());
        let errs = cognito.fill(&pattern, &v, None).unwrap_err();
        assert_eq!(errs[0].field, "placeholders.region");
        let errs = cognito.fill(&pattern, &BTreeMap::new(), None).unwrap_err();
        assert_eq!(errs.len(), 2);
    }
}
