//! SAML IdP metadata: parsed into the IdP's entity id, its SSO URL and binding, and
//! every signing certificate. Parsing refuses DTDs (no entity expansion, no XXE) and
//! anything that is not SAML 2.0 metadata. Signing certificates are pinned only with a
//! key strong enough to trust a signature from: RSA of at least [`MIN_RSA_BITS`] bits,
//! or ECDSA on P-256, P-384 or P-521.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use openssl::nid::Nid;
use openssl::pkey::Id;
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

/// Smallest RSA key accepted in a pinned signing certificate.
pub const MIN_RSA_BITS: u32 = 2048;

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
    let mut position = 0;
    for kd in idp.children().filter(|c| is(c, "KeyDescriptor")) {
        if !matches!(kd.attribute("use"), None | Some("signing")) {
            continue;
        }
        for cert in kd.descendants().filter(|n| n.is_element() && n.tag_name().name() == "X509Certificate" && n.tag_name().namespace() == Some(DS)) {
            let text: String = cert.text().unwrap_or_default().chars().filter(|c| !c.is_whitespace()).collect();
            let der = B64.decode(text).map_err(|_| "has an X509Certificate that is not base64".to_string())?;
            position += 1;
            let x = X509::from_der(&der).map_err(|_| "has an X509Certificate that is not a certificate".to_string())?;
            certificates.push(pinned(&x, position)?);
        }
    }
    certificates.dedup_by(|a, b| a.sha256 == b.sha256);
    if certificates.is_empty() {
        return Err("has no signing certificate, so responses could not be verified".into());
    }
    Ok(IdpMetadata { entity_id: entity_id.to_string(), sso_url, sso_binding, certificates })
}

/// Describes signing certificate number `position` (from 1, in document order) if its
/// key is strong enough; else says which certificate it is and what is wrong with it.
pub fn pinned(x: &X509, position: usize) -> Result<Certificate, String> {
    let c = describe(x)?;
    match weak_key(x) {
        None => Ok(c),
        Some(why) => {
            let subject: String = if c.subject.is_empty() { "no subject".into() } else { c.subject.chars().take(200).collect() };
            Err(format!("has signing certificate {position} ({subject}, expires {}) with {why}", c.not_after))
        }
    }
}

/// Why the key of `x` is not trusted to sign, if it is not.
pub fn weak_key(x: &X509) -> Option<String> {
    let Ok(key) = x.public_key() else { return Some("a public key that cannot be read".into()) };
    match key.id() {
        Id::RSA if key.bits() >= MIN_RSA_BITS => None,
        Id::RSA => Some(format!("a {}-bit RSA key; at least {MIN_RSA_BITS} bits are required", key.bits())),
        Id::EC => match key.ec_key().ok().and_then(|k| k.group().curve_name()) {
            Some(Nid::X9_62_PRIME256V1 | Nid::SECP384R1 | Nid::SECP521R1) => None,
            Some(nid) => Some(format!("an EC key on the curve {}; only P-256, P-384 and P-521 are accepted", nid.short_name().unwrap_or("(unnamed)"))),
            None => Some("an EC key on a curve given by explicit parameters; only the named curves P-256, P-384 and P-521 are accepted".into()),
        },
        other => {
            let name = Nid::from_raw(other.as_raw()).short_name().unwrap_or("unknown");
            Some(format!("a {name} key; only RSA ({MIN_RSA_BITS} bits or more) and ECDSA (P-256, P-384, P-521) keys are accepted"))
        }
    }
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

    /// A self-signed certificate for `key` (DER, base64) named `cn`.
    fn signed_by(key: &openssl::pkey::PKey<openssl::pkey::Private>, cn: &str) -> String {
        B64.encode(crate::connection::keypair::self_signed(key, cn, 30).unwrap().to_der().unwrap())
    }

    fn rsa(bits: u32) -> openssl::pkey::PKey<openssl::pkey::Private> {
        openssl::pkey::PKey::from_rsa(openssl::rsa::Rsa::generate(bits).unwrap()).unwrap()
    }

    fn ec(curve: openssl::nid::Nid) -> openssl::pkey::PKey<openssl::pkey::Private> {
        let group = openssl::ec::EcGroup::from_curve_name(curve).unwrap();
        openssl::pkey::PKey::from_ec_key(openssl::ec::EcKey::generate(&group).unwrap()).unwrap()
    }

    fn signing(certs: &[&str]) -> String {
        certs
            .iter()
            .map(|c| format!("<md:KeyDescriptor use=\"signing\"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{c}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>"))
            .collect()
    }

    #[test]
    fn accepts_rsa_2048_and_the_nist_curves() {
        use openssl::nid::Nid;
        let certs = [
            signed_by(&rsa(2048), "rsa2048"),
            signed_by(&ec(Nid::X9_62_PRIME256V1), "p256"),
            signed_by(&ec(Nid::SECP384R1), "p384"),
            signed_by(&ec(Nid::SECP521R1), "p521"),
        ];
        let m = parse(&metadata(&signing(&certs.iter().map(String::as_str).collect::<Vec<_>>()))).unwrap();
        assert_eq!(m.certificates.len(), 4);
    }

    #[test]
    fn refuses_weak_or_unsupported_signing_keys_naming_the_certificate() {
        use openssl::nid::Nid;
        let good = signed_by(&rsa(2048), "good.idp.example");
        let dsa = openssl::pkey::PKey::from_dsa(openssl::dsa::Dsa::generate(1024).unwrap()).unwrap();
        for (weak, why) in [
            (signed_by(&rsa(1024), "weak.idp.example"), "1024-bit RSA key"),
            (signed_by(&rsa(2047), "weak.idp.example"), "2047-bit RSA key"),
            (signed_by(&ec(Nid::SECP256K1), "weak.idp.example"), "secp256k1"),
            (signed_by(&ec(Nid::SECP224R1), "weak.idp.example"), "secp224r1"),
            (signed_by(&dsa, "weak.idp.example"), "DSA key"),
            (signed_by(&openssl::pkey::PKey::generate_ed25519().unwrap(), "weak.idp.example"), "ED25519 key"),
        ] {
            let err = parse(&metadata(&signing(&[&good, &weak]))).unwrap_err();
            assert!(err.contains("signing certificate 2") && err.contains("CN=weak.idp.example") && err.contains("expires"), "{err}");
            assert!(err.contains(why), "{why} not in {err}");
            assert!(!err.contains("good.idp.example"), "{err}");
        }
        let err = parse(&metadata(&signing(&[&signed_by(&rsa(1024), "only")]))).unwrap_err();
        assert!(err.contains("signing certificate 1 (CN=only") && err.contains("at least 2048"), "{err}");
        // An encryption key is not pinned, so it is not judged.
        let enc = signed_by(&rsa(1024), "enc");
        let keys = format!("{}<md:KeyDescriptor use=\"encryption\"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{enc}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>", signing(&[&good]));
        assert_eq!(parse(&metadata(&keys)).unwrap().certificates.len(), 1);
    }
}
