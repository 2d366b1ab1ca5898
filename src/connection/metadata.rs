//! SAML IdP metadata: parsed into the IdP's entity id, its SSO URL and binding, and
//! every signing certificate. Parsing refuses DTDs (no entity expansion, no XXE) and
//! anything that is not SAML 2.0 metadata.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use openssl::x509::X509;

use super::{Certificate, IdpMetadata};
use crate::clock::rfc3339;

const MD: &str = "urn:oasis:names:tc:SAML:2.0:metadata";
const DS: &str = "http://www.w3.org/2000/09/xmldsig#";
/// The HTTP-Redirect binding.
pub const REDIRECT: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect";
/// The HTTP-POST binding.
pub const POST: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST";

/// Largest metadata document accepted.
pub const MAX_BYTES: usize = 512 * 1024;

/// Parses IdP metadata; the error says what is missing or wrong.
pub fn parse(xml: &str) -> Result<IdpMetadata, String> {
    if xml.len() > MAX_BYTES {
        return Err(format!("is larger than {MAX_BYTES} bytes"));
    }
    // Aggregates list many entities; the other limits are a response's.
    let limits = crate::upstream::saml_precheck::Limits { elements: 100_000, ..crate::upstream::saml_precheck::RESPONSE_LIMITS };
    crate::upstream::saml_precheck::shape_within(xml, &limits)?;
    let opts = roxmltree::ParsingOptions { allow_dtd: false, nodes_limit: 100_000 };
    let doc = roxmltree::Document::parse_with_options(xml, opts).map_err(|e| match e {
        roxmltree::Error::DtdDetected => "must not contain a DOCTYPE".to_string(),
        other => format!("is not well-formed XML ({other})"),
    })?;
    let root = doc.root_element();
    let is = |n: &roxmltree::Node, name: &str| n.is_element() && n.tag_name().name() == name && n.tag_name().namespace() == Some(MD);
    let entities: Vec<roxmltree::Node> = if is(&root, "EntityDescriptor") {
        vec![root]
    } else if is(&root, "EntitiesDescriptor") {
        root.descendants().filter(|n| is(n, "EntityDescriptor")).collect()
    } else {
        return Err("is not SAML 2.0 metadata (no md:EntityDescriptor)".into());
    };
    let idps: Vec<(roxmltree::Node, roxmltree::Node)> =
        entities.iter().filter_map(|e| e.children().find(|c| is(c, "IDPSSODescriptor")).map(|d| (*e, d))).collect();
    let (entity, idp) = match idps.as_slice() {
        [] => return Err("describes no identity provider (no IDPSSODescriptor)".into()),
        [one] => *one,
        many => return Err(format!("describes {} identity providers; upload the metadata of one", many.len())),
    };
    let entity_id = entity.attribute("entityID").map(str::trim).unwrap_or_default();
    if entity_id.is_empty() {
        return Err("has no entityID".into());
    }
    let sso: Vec<(String, String)> = idp
        .children()
        .filter(|c| is(c, "SingleSignOnService"))
        .filter_map(|c| Some((c.attribute("Binding")?.to_string(), c.attribute("Location")?.trim().to_string())))
        .collect();
    let (sso_binding, sso_url) = [REDIRECT, POST]
        .iter()
        .find_map(|b| sso.iter().find(|(binding, _)| binding == b).cloned())
        .ok_or("has no SingleSignOnService with the HTTP-Redirect or HTTP-POST binding")?;
    let mut certificates = Vec::new();
    for kd in idp.children().filter(|c| is(c, "KeyDescriptor")) {
        if !matches!(kd.attribute("use"), None | Some("signing")) {
            continue;
        }
        for cert in kd.descendants().filter(|n| n.is_element() && n.tag_name().name() == "X509Certificate" && n.tag_name().namespace() == Some(DS)) {
            let text: String = cert.text().unwrap_or_default().chars().filter(|c| !c.is_whitespace()).collect();
            let der = B64.decode(text).map_err(|_| "has an X509Certificate that is not base64".to_string())?;
            certificates.push(certificate(&der)?);
        }
    }
    certificates.dedup_by(|a, b| a.sha256 == b.sha256);
    if certificates.is_empty() {
        return Err("has no signing certificate, so responses could not be verified".into());
    }
    Ok(IdpMetadata { entity_id: entity_id.to_string(), sso_url, sso_binding, certificates })
}

/// Describes a DER certificate: PEM, subject, expiry, fingerprint.
pub fn certificate(der: &[u8]) -> Result<Certificate, String> {
    let x = X509::from_der(der).map_err(|_| "has an X509Certificate that is not a certificate".to_string())?;
    describe(&x)
}

/// Describes a parsed certificate.
pub fn describe(x: &X509) -> Result<Certificate, String> {
    let pem = String::from_utf8(x.to_pem().map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    let subject = x
        .subject_name()
        .entries()
        .filter_map(|e| Some(format!("{}={}", e.object().nid().short_name().ok()?, String::from_utf8_lossy(e.data().as_slice()))))
        .collect::<Vec<_>>()
        .join(", ");
    let epoch = openssl::asn1::Asn1Time::from_unix(0).map_err(|e| e.to_string())?;
    let diff = epoch.diff(x.not_after()).map_err(|e| e.to_string())?;
    let not_after = (i64::from(diff.days) * 86_400 + i64::from(diff.secs)) * 1000;
    let digest = x.digest(openssl::hash::MessageDigest::sha256()).map_err(|e| e.to_string())?;
    Ok(Certificate { pem, subject, not_after: rfc3339(not_after), sha256: hex::encode(digest) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_b64() -> String {
        let (cert, _) = crate::connection::keypair::generate("idp.example").unwrap();
        let x = X509::from_pem(cert.as_bytes()).unwrap();
        B64.encode(x.to_der().unwrap())
    }

    fn metadata(key: &str) -> String {
        format!(
            r#"<?xml version="1.0"?>
<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="https://idp.example/saml">
  <md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">
    {key}
    <md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="https://idp.example/post"/>
    <md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="https://idp.example/redirect?a=1"/>
  </md:IDPSSODescriptor>
</md:EntityDescriptor>"#
        )
    }

    #[test]
    fn parses_entity_sso_and_every_signing_certificate() {
        let (a, b) = (cert_b64(), cert_b64());
        let keys = format!(
            "<md:KeyDescriptor use=\"signing\"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>\n{a}\n</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>\
             <md:KeyDescriptor><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{b}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>\
             <md:KeyDescriptor use=\"encryption\"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{a}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>"
        );
        let m = parse(&metadata(&keys)).unwrap();
        assert_eq!(m.entity_id, "https://idp.example/saml");
        assert_eq!(m.sso_url, "https://idp.example/redirect?a=1");
        assert_eq!(m.sso_binding, REDIRECT);
        assert_eq!(m.certificates.len(), 2);
        assert!(m.certificates[0].subject.contains("CN="));
    }

    #[test]
    fn refuses_what_is_not_usable_metadata() {
        assert!(parse(&metadata("")).unwrap_err().contains("no signing certificate"));
        assert!(parse("<html/>").unwrap_err().contains("not SAML 2.0 metadata"));
        assert!(parse("not xml").unwrap_err().contains("well-formed"));
        let xxe = "<?xml version=\"1.0\"?><!DOCTYPE x [<!ENTITY e SYSTEM \"file:///etc/passwd\">]><x>&e;</x>";
        assert!(parse(xxe).unwrap_err().contains("DOCTYPE"));
        let sp_only = r#"<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="x"><md:SPSSODescriptor/></md:EntityDescriptor>"#;
        assert!(parse(sp_only).unwrap_err().contains("IDPSSODescriptor"));
    }
}
