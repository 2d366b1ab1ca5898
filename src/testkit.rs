//! Fixtures that unit tests, integration tests, benches and fuzz targets share, so each
//! writes none of them out by hand: a SAML connection trusting one certificate, and a
//! session. Compiled into the library (benches, fuzz targets and `tests/` are other
//! crates), small, and used by nothing that serves requests.

use crate::clock::Millis;
use crate::connection::{ClaimMappings, ClientAuth, Connection, IdpMetadata, OidcSettings, Pkce, SamlSettings, Secrets, Settings, Upstream};
use crate::state::Session;

/// The names a SAML fixture connection uses.
#[derive(Debug, Clone, Copy)]
pub struct SamlNames<'a> {
    /// The connection's id.
    pub id: &'a str,
    /// Our SP entity id (the Audience).
    pub sp_entity_id: &'a str,
    /// The IdP's entity id (the Issuer).
    pub idp_entity_id: &'a str,
}

/// A SAML connection trusting `cert` (the IdP's signing certificate): HTTP-Redirect to
/// `https://idp.example.test/sso`, default claim mappings, users created, group sync on.
pub fn saml_connection(names: SamlNames<'_>, cert: &openssl::x509::X509, require_signed_assertions: bool) -> Connection {
    let certificate = crate::connection::metadata::describe(cert).unwrap_or_else(|e| panic!("fixture certificate: {e}"));
    let saml = SamlSettings {
        entity_id: names.sp_entity_id.into(),
        idp: IdpMetadata {
            entity_id: names.idp_entity_id.into(),
            sso_url: "https://idp.example.test/sso".into(),
            sso_binding: crate::connection::metadata::REDIRECT.into(),
            certificates: vec![certificate],
        },
        idp_metadata_url: None,
        require_signed_assertions,
        sign_requests: false,
        sp_certificate: None,
        name_id_format: None,
        allow_idp_initiated: false,
        allow_sha1: false,
    };
    Connection {
        id: names.id.into(),
        display_name: format!("Fixture {}", names.id),
        provider: "custom".into(),
        active: true,
        settings: Settings {
            webapp_url: None,
            create_users: true,
            group_sync: true,
            claims: ClaimMappings::default(),
            upstream: Upstream::Saml(saml),
            allow: vec![],
            group_mapping: Default::default(),
        },
        secrets: Secrets::default(),
        created_at: 0,
        updated_at: 0,
        version: 1,
        managed_by: None,
    }
}

/// OIDC settings for `issuer` and `client_id`: endpoints under the issuer, PKCE S256,
/// HTTP Basic, `openid` only, RS256 and ES256; the JWKS at `jwks_uri` verifies signatures
/// when given (without one, signatures are not verified).
pub fn oidc_settings(issuer: &str, client_id: &str, jwks_uri: Option<&str>) -> OidcSettings {
    OidcSettings {
        issuer: issuer.into(),
        client_id: client_id.into(),
        authorization_endpoint: format!("{issuer}/authorize"),
        token_endpoint: format!("{issuer}/token"),
        revocation_endpoint: None,
        userinfo_endpoint: None,
        jwks_uri: jwks_uri.map(str::to_string),
        userinfo_from_id_token: true,
        email_verification: false,
        verify_signature: jwks_uri.is_some(),
        code_challenge_method: Pkce::S256,
        token_endpoint_auth_method: ClientAuth::ClientSecretBasic,
        scopes: vec!["openid".into()],
        additional_scopes: vec![],
        allowed_algorithms: vec!["RS256".into(), "ES256".into()],
        authorization_response_iss_parameter_supported: false,
        issuer_aliases: vec![],
        allowed_tenants: vec![],
        client_jwk: None,
        groups_endpoint: None,
    }
}

/// The SAML settings of a fixture connection, to change one.
pub fn saml_mut(c: &mut Connection) -> &mut SamlSettings {
    match &mut c.settings.upstream {
        Upstream::Saml(s) => s,
        Upstream::Oidc(_) => panic!("{} is not a SAML fixture", c.id),
    }
}

/// A live session of `user` through `connection`, created at `now`, 8 hours long with
/// an hour of idle time, with `groups`; email `<user>@example.test`, verified.
pub fn session(id: &str, user: &str, connection: &str, groups: &[&str], now: Millis) -> Session {
    Session {
        id: id.into(),
        user_id: user.into(),
        connection_id: connection.into(),
        username: user.into(),
        email: Some(format!("{user}@example.test")),
        email_verified: true,
        name: None,
        groups: groups.iter().map(|g| g.to_string()).collect(),
        created_at: now,
        expires_at: now + 8 * 3600 * 1000,
        idle_timeout_ms: 3600 * 1000,
        last_seen: now,
        profile: Default::default(),
        upstream_token: None,
        auth_time: None,
    }
}
