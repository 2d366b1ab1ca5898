//! SAML 2.0 service provider, the start of a login: our SP metadata, and AuthnRequests
//! over HTTP-Redirect (deflated, with a 128-bit random ID and RelayState), signed with the
//! connection's key pair when "sign client requests" is on (RSA-SHA256 or ECDSA-SHA256
//! over the exact query bytes, SAML bindings 3.4.4.1). IdP SSO URLs that already carry a
//! query string keep it, unsigned, ahead of ours.
//!
//! IdPs that take AuthnRequests over HTTP-POST only get an auto-submitting form with the
//! request signed inside (enveloped XML signature) when requests are signed. Responses
//! are verified in [`super::saml_response`].

use std::io::Write;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use openssl::hash::MessageDigest;
use openssl::pkey::{Id, PKey};
use openssl::sign::Signer;

use super::{Begun, Context, Diagnostics, FlowState, Kept, Outbound, Reply, Start, Transport, UpstreamError, Verified};
use crate::connection::metadata::{POST, REDIRECT};
use crate::connection::{Connection, SamlSettings};

/// RSA-SHA256 signature algorithm URI.
pub const RSA_SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256";
/// ECDSA-SHA256 signature algorithm URI.
pub const ECDSA_SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256";

/// Escapes text for XML content and attribute values.
pub fn xml_escape(s: &str) -> String {
    crate::web::page::esc(s)
}

fn pem_body(pem: &str) -> String {
    pem.lines().filter(|l| !l.starts_with("-----")).collect::<String>()
}

/// NameID formats (SAML Core 8.3).
pub const PERSISTENT: &str = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent";
/// A one-time, per-session NameID: never a user id.
pub const TRANSIENT: &str = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient";
/// "No particular format": SAML Core 8.3.1, what an absent `Format` means too.
pub const UNSPECIFIED: &str = "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified";

/// The NameID format a connection asks for: its `name_id_format`, persistent when unset.
/// An IdP that cannot send a persistent one is asked for `unspecified` (the setting), or
/// the user id is mapped from an attribute.
pub fn requested_name_id_format(conn: &Connection) -> &str {
    conn.settings.upstream.saml().and_then(|s| s.name_id_format.as_deref()).unwrap_or(PERSISTENT)
}

/// Checks the assertion's NameID when it is the user id (`user_id_claim`, the claim the
/// user id was mapped from, is `NameID`): never a transient one (a new value at every
/// login would make a new user each time); and of the format requested, unless that is
/// `unspecified`. An absent or `unspecified` Format is taken whatever was requested: it
/// says nothing either way (AD FS and Duo send it for stable values), and an IdP giving a
/// transient value names it. When the user id comes from an attribute, the NameID's
/// format does not matter.
pub fn check_name_id(conn: &Connection, claims: &serde_json::Value, user_id_claim: Option<&str>) -> Result<(), UpstreamError> {
    if user_id_claim != Some(super::saml_response::NAME_ID) {
        return Ok(());
    }
    let got = claims.get("NameIDFormat").and_then(serde_json::Value::as_str).unwrap_or(UNSPECIFIED);
    if got == TRANSIENT {
        return Err(UpstreamError::Invalid(
            "the identity provider sent a transient NameID, which changes at every sign-in and cannot be a user id: \
             configure a persistent NameID at the identity provider, or map the user id from an attribute (claims.user_id)"
                .into(),
        ));
    }
    let want = requested_name_id_format(conn);
    if want != UNSPECIFIED && got != UNSPECIFIED && got != want {
        return Err(UpstreamError::Invalid(format!(
            "the identity provider sent a NameID of format {got}, but this connection requested {want}: configure the identity provider to send \
             {want}, or set the connection's name_id_format to the format it sends"
        )));
    }
    Ok(())
}

/// Our SP metadata for a SAML connection: entity id, ACS (HTTP-POST), NameID format, the
/// signing certificate when requests are signed, and the signing flags as set.
pub fn sp_metadata(conn: &Connection, public_base: &str) -> Option<String> {
    let s = conn.settings.upstream.saml()?;
    let key = match (&s.sp_certificate, s.sign_requests) {
        (Some(cert), true) => {
            format!("<md:KeyDescriptor use=\"signing\"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>", pem_body(cert))
        }
        _ => String::new(),
    };
    let nameid = format!("<md:NameIDFormat>{}</md:NameIDFormat>", xml_escape(requested_name_id_format(conn)));
    Some(format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
<md:EntityDescriptor xmlns:md=\"urn:oasis:names:tc:SAML:2.0:metadata\" xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\" entityID=\"{entity}\">\
<md:SPSSODescriptor AuthnRequestsSigned=\"{signed}\" WantAssertionsSigned=\"{want}\" protocolSupportEnumeration=\"urn:oasis:names:tc:SAML:2.0:protocol\">\
{key}{nameid}<md:AssertionConsumerService Binding=\"{POST}\" Location=\"{acs}\" index=\"0\" isDefault=\"true\"/>\
</md:SPSSODescriptor></md:EntityDescriptor>\n",
        entity = xml_escape(&s.entity_id),
        signed = s.sign_requests,
        want = s.require_signed_assertions,
        acs = xml_escape(&conn.acs_url(public_base)),
    ))
}

fn sp_key(conn: &Connection) -> Result<openssl::pkey::PKey<openssl::pkey::Private>, UpstreamError> {
    let pem = conn.secrets.sp_private_key.as_deref().ok_or_else(|| UpstreamError::Unavailable("the connection signs requests but has no SP key".into()))?;
    PKey::private_key_from_pem_callback(pem.as_bytes(), |_| Ok(0)).map_err(|_| UpstreamError::Unavailable("the SP private key is unusable".into()))
}

/// Builds the AuthnRequest. Returns the RelayState (the flow state's key), the state to
/// keep (with the request id for InResponseTo), and how to send it.
pub fn begin(conn: &Connection, s: &SamlSettings, start: Start<'_>) -> Result<Begun, UpstreamError> {
    let (public_base, now) = (start.public_base, start.now);
    let binding = if s.idp.sso_binding == POST { POST } else { REDIRECT };
    // 128 random bits; an XML ID must not start with a digit.
    let request_id = format!("_{}", hex::encode(rand::random::<[u8; 16]>()));
    let instant = chrono::DateTime::from_timestamp_millis(now).unwrap_or_default().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let nameid = format!("<samlp:NameIDPolicy Format=\"{}\" AllowCreate=\"true\"/>", xml_escape(requested_name_id_format(conn)));
    let xml = format!(
        "<samlp:AuthnRequest xmlns:samlp=\"urn:oasis:names:tc:SAML:2.0:protocol\" xmlns:saml=\"urn:oasis:names:tc:SAML:2.0:assertion\" \
ID=\"{request_id}\" Version=\"2.0\" IssueInstant=\"{instant}\" Destination=\"{dest}\" AssertionConsumerServiceURL=\"{acs}\" \
ProtocolBinding=\"{POST}\"{force}><saml:Issuer>{issuer}</saml:Issuer>{nameid}</samlp:AuthnRequest>",
        dest = xml_escape(&s.idp.sso_url),
        acs = xml_escape(&conn.acs_url(public_base)),
        issuer = xml_escape(&s.entity_id),
        force = if start.force_authn { " ForceAuthn=\"true\"" } else { "" },
    );
    let relay_state = crate::id::token(32);
    let flow = FlowState {
        connection_id: conn.id.clone(),
        browser: start.browser,
        return_to: start.return_to,
        created_at: now,
        kept: Kept::Saml { request_id },
        purpose: start.purpose,
        force_authn: start.force_authn,
    };
    if binding == POST {
        let xml = if s.sign_requests {
            super::xmldsig::sign_root(&xml, &sp_key(conn)?, s.sp_certificate.as_deref(), true)
                .map_err(|_| UpstreamError::Unavailable("could not sign the AuthnRequest".into()))?
        } else {
            xml
        };
        let fields = vec![("SAMLRequest", B64.encode(xml)), ("RelayState", relay_state.clone())];
        return Ok(Begun { key: relay_state, flow, outbound: Outbound::Post { url: s.idp.sso_url.clone(), fields } });
    }
    let mut deflate = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    let deflated =
        deflate.write_all(xml.as_bytes()).and_then(|_| deflate.finish()).map_err(|_| UpstreamError::Unavailable("could not encode the AuthnRequest".into()))?;
    let enc = |v: &str| url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>();
    let mut query = format!("SAMLRequest={}&RelayState={}", enc(&B64.encode(deflated)), enc(&relay_state));
    if s.sign_requests {
        let key = sp_key(conn)?;
        let alg = if key.id() == Id::EC { ECDSA_SHA256 } else { RSA_SHA256 };
        query.push_str(&format!("&SigAlg={}", enc(alg)));
        let err = |_| UpstreamError::Unavailable("could not sign the AuthnRequest".into());
        let mut signer = Signer::new(MessageDigest::sha256(), &key).map_err(err)?;
        signer.update(query.as_bytes()).map_err(err)?;
        let mut sig = signer.sign_to_vec().map_err(err)?;
        if alg == ECDSA_SHA256 {
            // XML-DSig carries ECDSA signatures as r || s, not DER.
            let parsed = openssl::ecdsa::EcdsaSig::from_der(&sig).map_err(err)?;
            let width = (key.bits() as i32 + 7) / 8;
            let mut raw = parsed.r().to_vec_padded(width).map_err(err)?;
            raw.extend(parsed.s().to_vec_padded(width).map_err(err)?);
            sig = raw;
        }
        query.push_str(&format!("&Signature={}", enc(&B64.encode(sig))));
    }
    // Only our own parameters are signed; an SSO URL's own query stays in front of them.
    let sep = if s.idp.sso_url.contains('?') { '&' } else { '?' };
    let url = format!("{}{sep}{query}", s.idp.sso_url);
    Ok(Begun { key: relay_state, flow, outbound: Outbound::Redirect(url) })
}

/// The ACS's first look: a form post with a `SAMLResponse` that passes the pre-check (no
/// DTD, no comments, local references only, allowed transforms and algorithms, unique
/// IDs, bounded shape), off the async runtime. The checked XML is kept in the reply.
pub async fn screen(mut reply: Reply, report: &mut Diagnostics) -> Result<Reply, UpstreamError> {
    let malformed = |m: &str| UpstreamError::Malformed(m.into());
    if reply.transport != Transport::Form {
        return report.fail("SAML response", malformed("the SAML reply is not a form post"));
    }
    let value = reply.params.iter().position(|(k, _)| k == "SAMLResponse").map(|i| reply.params.swap_remove(i).1);
    let value =
        report.record("SAML response", value.ok_or_else(|| malformed("the SAML reply has no SAMLResponse")), |v| format!("{} bytes (base64)", v.len()))?;
    let prechecked = tokio::task::spawn_blocking(move || super::saml_precheck::check(&value)).await;
    let prechecked = match prechecked {
        Ok(r) => r.map_err(|e| UpstreamError::Malformed(e.to_string())),
        Err(_) => Err(UpstreamError::Unavailable("the SAML reply could not be checked".into())),
    };
    let xml = report.record("pre-check", prechecked, |_| "no DTD, comments or external references; allowed algorithms; unique IDs".into())?;
    reply.screened = Some(xml);
    Ok(reply)
}

/// Verifies the IdP's POST to the ACS: the pre-check (unless screened), then signatures and the profile's
/// checks (`saml_response`), both off the async runtime; then the attribute mapping and
/// the NameID rules. SAML says nothing of email verification: `email_verified` is never
/// taken from an attribute, so the email never claims an existing account.
pub async fn finish(
    conn: &Connection,
    s: &SamlSettings,
    flow: Option<&FlowState>,
    reply: Reply,
    cx: &Context<'_>,
    report: &mut Diagnostics,
) -> Result<Verified, UpstreamError> {
    let request_id = match flow.map(|f| &f.kept) {
        Some(Kept::Saml { request_id }) => Some(request_id.clone()),
        Some(_) => return Err(UpstreamError::Invalid("this SAML response answers a sign-in of another protocol".into())),
        None => None,
    };
    let xml = match reply.screened {
        Some(xml) => xml,
        None => screen(reply, report).await?.screened.unwrap_or_default(),
    };
    // The signature check refuses SHA-1 unless the connection allows it; where it does,
    // each use is a warning (a test for the algorithm URIs is enough for a log line).
    let sha1 = s.allow_sha1 && (xml.contains(super::xmldsig::RSA_SHA1) || xml.contains(super::xmldsig::SHA1));
    let acs = conn.acs_url(cx.public_base);
    let (now, skew_ms, max_age_ms) = (cx.now, cx.skew_ms, cx.max_age_ms);
    let c = conn.clone();
    let checked = tokio::task::spawn_blocking(move || {
        let expect = super::saml_response::Expect { acs_url: &acs, request_id: request_id.as_deref(), now, skew_ms, max_age_ms };
        super::saml_response::verify_xml(&xml, &c, &expect)
    })
    .await;
    let checked = match checked {
        Ok(r) => r,
        Err(_) => Err(UpstreamError::Unavailable("the SAML reply could not be checked".into())),
    };
    let verified = report.record("signature and conditions", checked, |v| {
        format!(
            "signed by a pinned certificate of {} ({} pinned); Destination, Recipient, Audience {}, {}, validity window within {} s",
            s.idp.entity_id,
            s.idp.certificates.len(),
            s.entity_id,
            if flow.is_some() { "InResponseTo this login" } else { "unsolicited (IdP-initiated allowed)" },
            skew_ms / 1000,
        ) + v.session_until.map(|_| ", SessionNotOnOrAfter kept").unwrap_or_default()
    })?;
    if sha1 {
        tracing::warn!(connection = %conn.id, "a SAML response signed with SHA-1 was accepted (allow_sha1 is on): switch the IdP to SHA-256");
        report.passed("SHA-1", "the response uses SHA-1, accepted because allow_sha1 is on for this connection: switch the IdP to SHA-256");
    }
    let mapped = crate::mapping::map(&verified.claims, &conn.settings.claims).map_err(|e| match e {
        e @ crate::mapping::MappingError::NoSubject(_) => UpstreamError::Invalid(format!("{e} (looked in the SAML assertion's NameID and attributes)")),
        e => UpstreamError::Invalid(e.to_string()),
    });
    let mut identity = report.record("attribute mapping", mapped, |i| format!("user id {:?}", i.subject))?;
    identity.sources = vec!["the SAML assertion".into()];
    let user_id_from = crate::mapping::source_of(&verified.claims, &conn.settings.claims.user_id);
    report.record("NameID", check_name_id(conn, &verified.claims, user_id_from), |_| {
        let format = verified.claims.get("NameIDFormat").and_then(serde_json::Value::as_str).unwrap_or(UNSPECIFIED);
        format!("format {format}; user id from {}", user_id_from.unwrap_or("(none)"))
    })?;
    identity.email_verified = None;
    // Replay cache: an assertion is accepted once, for as long as it could be presented.
    let ttl = (verified.valid_until - now + skew_ms).clamp(1000, 24 * 3600 * 1000);
    Ok(Verified {
        identity,
        claims: verified.claims,
        require_verified_email: false,
        upstream_token: None,
        session_until: verified.session_until,
        auth_time: verified.authn_instant,
        replay: Some((format!("saml-assertion:{}:{}", conn.id, verified.assertion_id), ttl)),
    })
}
