//! The SAML response, after the pre-check: signatures (through [`super::xmldsig`], against
//! the certificates pinned from the IdP's metadata), then the Web SSO profile's checks on
//! the signed elements only, then the attributes as claims for the shared mapping.
//!
//! Checked, each refusal naming what failed: Status is Success; a valid signature covers
//! the assertion (the Response's or the Assertion's own), and the Assertion's own when
//! "require signed assertions" is on; exactly one plain `Assertion` (encrypted ones are
//! refused); Destination is our ACS (required on a signed Response); both Issuers are
//! the IdP's entity id; InResponseTo equals this browser's AuthnRequest id, or is absent
//! when the connection accepts IdP-initiated logins; a bearer SubjectConfirmation with
//! Recipient = our ACS and a live NotOnOrAfter; Conditions' NotBefore/NotOnOrAfter with
//! the configured skew; an AudienceRestriction naming our entity id (required); an
//! AuthnStatement; IssueInstant no older than a login may take.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use openssl::pkey::{PKey, Public};
use roxmltree::Node;
use serde_json::{Map, Value};

use super::saml_precheck::{self, shown};
use super::xmldsig::{self, text_of, xml_trim};
use super::UpstreamError;
use crate::clock::Millis;
use crate::connection::Connection;

const PROTOCOL: &str = "urn:oasis:names:tc:SAML:2.0:protocol";
const ASSERTION: &str = "urn:oasis:names:tc:SAML:2.0:assertion";
const SUCCESS: &str = "urn:oasis:names:tc:SAML:2.0:status:Success";
const BEARER: &str = "urn:oasis:names:tc:SAML:2.0:cm:bearer";
/// The claim the NameID is mapped under (the default user id of SAML connections).
pub const NAME_ID: &str = "NameID";

/// What the ACS expects of a response.
#[derive(Debug, Clone)]
pub struct Expect<'a> {
    /// Our ACS URL (Destination, Recipient).
    pub acs_url: &'a str,
    /// The AuthnRequest id of this browser's login; `None` for an unsolicited response.
    pub request_id: Option<&'a str>,
    /// Now.
    pub now: Millis,
    /// Allowed clock difference.
    pub skew_ms: Millis,
    /// Oldest IssueInstant accepted (how long a login may take).
    pub max_age_ms: Millis,
}

/// A verified assertion.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    /// Attributes by Name and FriendlyName (lists of values), plus `NameID`.
    pub claims: Value,
    /// The assertion's ID, for the replay cache.
    pub assertion_id: String,
    /// Until when the assertion could be presented (the replay marker lives this long).
    pub valid_until: Millis,
    /// The earliest `SessionNotOnOrAfter` of the AuthnStatements: the IdP's end for the
    /// session this login starts (the gateway's session never outlives it).
    pub session_until: Option<Millis>,
    /// The latest `AuthnInstant` of the AuthnStatements: when the user authenticated.
    pub authn_instant: Option<Millis>,
}

fn invalid(msg: impl Into<String>) -> UpstreamError {
    UpstreamError::Invalid(msg.into())
}

fn is(n: &Node, ns: &str, name: &str) -> bool {
    n.is_element() && n.tag_name().name() == name && n.tag_name().namespace() == Some(ns)
}

fn children<'a, 'i>(n: Node<'a, 'i>, ns: &'a str, name: &'a str) -> impl Iterator<Item = Node<'a, 'i>> + 'a {
    n.children().filter(move |c| is(c, ns, name))
}

fn one<'a, 'i>(n: Node<'a, 'i>, ns: &'static str, name: &'static str) -> Option<Node<'a, 'i>> {
    children(n, ns, name).next()
}

/// xs:dateTime (with a zone, as SAML requires) to epoch millis.
fn instant(n: Node, attr: &str) -> Result<Option<Millis>, UpstreamError> {
    match n.attribute(attr) {
        None => Ok(None),
        Some(v) => chrono::DateTime::parse_from_rfc3339(xml_trim(v))
            .map(|t| Some(t.timestamp_millis()))
            .map_err(|_| invalid(format!("the {} {attr} {} is not a UTC date-time", n.tag_name().name(), shown(v)))),
    }
}

/// Pinned public keys from the connection's IdP certificates.
pub fn pinned_keys(conn: &Connection) -> Vec<PKey<Public>> {
    conn.settings.upstream.saml().into_iter().flat_map(|s| s.idp.certificates.iter()).filter_map(|c| public_key(&c.pem)).collect()
}

/// The public key of a PEM certificate, decoded once per process: with OpenSSL 3 the
/// decoding costs ~200 µs, more than a third of a whole verification (bench/acs.rs).
/// Keyed by the PEM text itself, so a changed certificate is decoded anew.
fn public_key(pem: &str) -> Option<PKey<Public>> {
    static DECODED: OnceLock<Mutex<HashMap<String, PKey<Public>>>> = OnceLock::new();
    let cache = DECODED.get_or_init(Mutex::default);
    if let Some(k) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(pem) {
        return Some(k.clone());
    }
    let cert = openssl::x509::X509::from_pem(pem.as_bytes()).ok()?;
    // A weak key pinned before the import refused them (or kept by a refresh) never
    // verifies anything: the same rule as the import's.
    if let Some(why) = crate::connection::metadata::weak_key(&cert) {
        tracing::warn!(reason = %why, "a pinned IdP certificate is not used: its key is too weak; import the IdP metadata again");
        return None;
    }
    let key = cert.public_key().ok()?;
    let mut map = cache.lock().unwrap_or_else(|e| e.into_inner());
    // Certificates come from admins' metadata: few. Bounded all the same.
    if map.len() >= 256 {
        map.clear();
    }
    map.insert(pem.to_string(), key.clone());
    Some(key)
}

/// The status of a response, when it is not Success: the status codes' last parts
/// ("Responder/AuthnFailed"). Only names from the SAML status namespace are shown.
fn failed_status(root: Node) -> Option<String> {
    let status = one(root, PROTOCOL, "Status");
    let code = status.and_then(|s| one(s, PROTOCOL, "StatusCode"));
    let value = code.and_then(|c| c.attribute("Value")).unwrap_or_default();
    if value == SUCCESS {
        return None;
    }
    let short = |v: &str| {
        v.strip_prefix("urn:oasis:names:tc:SAML:2.0:status:").filter(|s| s.chars().all(|c| c.is_ascii_alphanumeric())).unwrap_or("unknown").to_string()
    };
    let mut parts = vec![short(value)];
    if let Some(sub) = code.and_then(|c| one(c, PROTOCOL, "StatusCode")).and_then(|c| c.attribute("Value")) {
        parts.push(short(sub));
    }
    Some(parts.join("/"))
}

fn in_response_to(n: Node, expect: &Expect) -> Result<(), UpstreamError> {
    match (n.attribute("InResponseTo"), expect.request_id) {
        (Some(got), Some(want)) if got == want => Ok(()),
        (None, None) => Ok(()),
        (Some(_), Some(_)) => Err(invalid("the response answers another sign-in (InResponseTo does not match)")),
        (None, Some(_)) => Err(invalid("the response does not say which sign-in it answers (no InResponseTo)")),
        (Some(_), None) => Err(invalid("the response answers a sign-in this browser did not start here")),
    }
}

/// A bearer SubjectConfirmation: Recipient is our ACS, NotOnOrAfter live (required),
/// NotBefore reached, InResponseTo (when given) this login's. Returns NotOnOrAfter.
fn bearer(sc: Node, expect: &Expect) -> Result<Millis, UpstreamError> {
    let (now, skew) = (expect.now, expect.skew_ms);
    let data = one(sc, ASSERTION, "SubjectConfirmationData").ok_or_else(|| invalid("the bearer confirmation has no SubjectConfirmationData"))?;
    match data.attribute("Recipient") {
        Some(r) if r == expect.acs_url => {}
        Some(r) => return Err(invalid(format!("the assertion is meant for {}, not for this connection's ACS (Recipient)", shown(r)))),
        None => return Err(invalid("the bearer confirmation has no Recipient")),
    }
    let until = instant(data, "NotOnOrAfter")?.ok_or_else(|| invalid("the bearer confirmation has no NotOnOrAfter"))?;
    if now >= until + skew {
        return Err(invalid("the assertion has expired (SubjectConfirmationData NotOnOrAfter)"));
    }
    if instant(data, "NotBefore")?.is_some_and(|nb| now + skew < nb) {
        return Err(invalid("the assertion is not valid yet (SubjectConfirmationData NotBefore)"));
    }
    // Profiles 4.1.4.2: a solicited assertion names the request in its own (signed)
    // confirmation; the Response's InResponseTo alone may sit outside the signature.
    if data.has_attribute("InResponseTo") || expect.request_id.is_some() {
        in_response_to(data, expect)?;
    }
    Ok(until)
}

/// Verifies a SAML response (base64 form value) for `conn`. Runs the pre-check first;
/// CPU-bound: call it off the async runtime.
pub fn verify(saml_response: &str, conn: &Connection, expect: &Expect) -> Result<Verified, UpstreamError> {
    let xml = saml_precheck::check(saml_response).map_err(|e| invalid(e.to_string()))?;
    verify_xml(&xml, conn, expect)
}

/// [`verify`] on pre-checked XML.
pub fn verify_xml(xml: &str, conn: &Connection, expect: &Expect) -> Result<Verified, UpstreamError> {
    let Some(s) = conn.settings.upstream.saml() else {
        return Err(UpstreamError::Unavailable("the connection has no SAML settings".into()));
    };
    saml_precheck::shape_within(xml, &saml_precheck::RESPONSE_LIMITS).map_err(|e| invalid(saml_precheck::Refused::Shape(e).to_string()))?;
    let doc = roxmltree::Document::parse_with_options(xml, roxmltree::ParsingOptions { allow_dtd: false, nodes_limit: 50_000 })
        .map_err(|_| invalid("the SAML response is not well-formed XML"))?;
    let root = doc.root_element();
    if !is(&root, PROTOCOL, "Response") {
        return Err(invalid("the message is not a SAML Response"));
    }
    if let Some(status) = failed_status(root) {
        return Err(UpstreamError::Refused(format!("SAML status {status}")));
    }
    let keys = pinned_keys(conn);
    if keys.is_empty() {
        return Err(UpstreamError::Unavailable("the connection has no usable IdP signing certificate; import the IdP metadata again".into()));
    }
    let dsig = |e: xmldsig::DsigError| match e {
        xmldsig::DsigError::Algorithm(a) if a == xmldsig::RSA_SHA1 || a == xmldsig::SHA1 => invalid(
            "the identity provider signed with SHA-1, which this connection refuses: switch the IdP to SHA-256 \
             (AD FS: the relying party trust's Advanced tab, Secure hash algorithm SHA-256; JumpCloud: Signature Algorithm RSA-SHA256), \
             or turn on allow_sha1 for this connection",
        ),
        e => invalid(e.to_string()),
    };
    let response_signed = xmldsig::verify_element_with(root, &keys, s.allow_sha1).map_err(dsig)?;

    if one(root, ASSERTION, "EncryptedAssertion").is_some() {
        return Err(invalid("the response carries an encrypted assertion, which this gateway does not accept; turn assertion encryption off at the IdP"));
    }
    let mut assertions = children(root, ASSERTION, "Assertion");
    let assertion = assertions.next().ok_or_else(|| invalid("the response has no assertion"))?;
    if assertions.next().is_some() {
        return Err(invalid("the response has more than one assertion"));
    }
    let assertion_signed = xmldsig::verify_element_with(assertion, &keys, s.allow_sha1).map_err(dsig)?;
    if !response_signed && !assertion_signed {
        return Err(invalid("neither the response nor the assertion is signed"));
    }
    if s.require_signed_assertions && !assertion_signed {
        return Err(invalid("the assertion is not signed, and this connection requires signed assertions"));
    }

    // The Response envelope.
    if root.attribute("Version") != Some("2.0") || assertion.attribute("Version") != Some("2.0") {
        return Err(invalid("the response is not SAML 2.0"));
    }
    match root.attribute("Destination") {
        Some(d) if d != expect.acs_url => return Err(invalid(format!("the response is addressed to {}, not to this connection's ACS", shown(d)))),
        None if response_signed => return Err(invalid("the signed response has no Destination")),
        _ => {}
    }
    let idp = s.idp.entity_id.as_str();
    if let Some(issuer) = one(root, ASSERTION, "Issuer") {
        if xml_trim(&text_of(issuer)) != idp {
            return Err(invalid(format!("the response was issued by {}, not by this connection's IdP", shown(xml_trim(&text_of(issuer))))));
        }
    }
    in_response_to(root, expect)?;

    // The Assertion.
    let now = expect.now;
    let skew = expect.skew_ms;
    let issuer = one(assertion, ASSERTION, "Issuer").ok_or_else(|| invalid("the assertion has no Issuer"))?;
    if xml_trim(&text_of(issuer)) != idp {
        return Err(invalid(format!("the assertion was issued by {}, not by this connection's IdP", shown(xml_trim(&text_of(issuer))))));
    }
    let assertion_id = assertion.attribute("ID").filter(|i| !i.is_empty()).ok_or_else(|| invalid("the assertion has no ID"))?;
    let issued = instant(assertion, "IssueInstant")?.ok_or_else(|| invalid("the assertion has no IssueInstant"))?;
    if issued > now + skew {
        return Err(invalid("the assertion was issued in the future; check the clocks"));
    }

    let subject = one(assertion, ASSERTION, "Subject").ok_or_else(|| invalid("the assertion has no Subject"))?;
    if one(subject, ASSERTION, "EncryptedID").is_some() {
        return Err(invalid("the NameID is encrypted, which this gateway does not accept"));
    }
    let name_id = one(subject, ASSERTION, "NameID");
    if name_id.is_some_and(|n| n.children().any(|c| c.is_element())) {
        return Err(invalid("the NameID has child elements"));
    }
    let mut confirmed: Result<Millis, UpstreamError> = Err(invalid("the assertion has no bearer SubjectConfirmation"));
    for sc in children(subject, ASSERTION, "SubjectConfirmation").filter(|c| c.attribute("Method") == Some(BEARER)) {
        confirmed = bearer(sc, expect);
        if confirmed.is_ok() {
            break;
        }
    }
    let mut valid_until = confirmed?;

    let mut all_conditions = children(assertion, ASSERTION, "Conditions");
    let conditions = all_conditions.next().ok_or_else(|| invalid("the assertion has no Conditions, so no Audience"))?;
    if all_conditions.next().is_some() {
        return Err(invalid("the assertion has more than one Conditions element"));
    }
    if instant(conditions, "NotBefore")?.is_some_and(|nb| now + skew < nb) {
        return Err(invalid("the assertion is not valid yet (Conditions NotBefore)"));
    }
    if let Some(until) = instant(conditions, "NotOnOrAfter")? {
        if now >= until + skew {
            return Err(invalid("the assertion has expired (Conditions NotOnOrAfter)"));
        }
        valid_until = valid_until.max(until);
    }
    conditions_understood(conditions)?;
    let restrictions: Vec<_> = children(conditions, ASSERTION, "AudienceRestriction").collect();
    if restrictions.is_empty() {
        return Err(invalid("the assertion names no Audience"));
    }
    for r in restrictions {
        if !children(r, ASSERTION, "Audience").any(|a| xml_trim(&text_of(a)) == s.entity_id) {
            return Err(invalid(format!("the assertion is meant for another service provider (Audience is not {:?})", s.entity_id)));
        }
    }
    if issued < now - expect.max_age_ms - skew {
        return Err(invalid("the assertion was issued too long ago"));
    }
    if one(assertion, ASSERTION, "AuthnStatement").is_none() {
        return Err(invalid("the assertion has no AuthnStatement"));
    }
    // The IdP's end of the session: the earliest of the statements'. One already past
    // means the IdP says this session is over before it starts.
    let mut session_until: Option<Millis> = None;
    let mut authn_instant: Option<Millis> = None;
    for statement in children(assertion, ASSERTION, "AuthnStatement") {
        if let Some(until) = instant(statement, "SessionNotOnOrAfter")? {
            session_until = Some(session_until.map_or(until, |u| u.min(until)));
        }
        if let Some(at) = instant(statement, "AuthnInstant")? {
            authn_instant = Some(authn_instant.map_or(at, |a| a.max(at)));
        }
    }
    if session_until.is_some_and(|until| until <= now) {
        return Err(invalid("the IdP's session for this sign-in has already ended (AuthnStatement SessionNotOnOrAfter)"));
    }

    // Attributes: by Name, and by FriendlyName where that name is free; always lists.
    let mut claims = Map::new();
    if let Some(n) = name_id {
        claims.insert(NAME_ID.into(), Value::String(xml_trim(&text_of(n)).to_string()));
        if let Some(f) = n.attribute("Format") {
            claims.insert("NameIDFormat".into(), Value::String(f.into()));
        }
    }
    let mut friendly = Vec::new();
    for statement in children(assertion, ASSERTION, "AttributeStatement") {
        if one(statement, ASSERTION, "EncryptedAttribute").is_some() {
            return Err(invalid("the assertion has encrypted attributes, which this gateway does not accept"));
        }
        for attr in children(statement, ASSERTION, "Attribute") {
            let values: Vec<Value> = children(attr, ASSERTION, "AttributeValue")
                .filter(|v| !matches!(v.attribute(("http://www.w3.org/2001/XMLSchema-instance", "nil")), Some("true" | "1")))
                .map(|v| Value::String(xml_trim(&text_of(v)).to_string()))
                .collect();
            if let Some(name) = attr.attribute("Name").filter(|n| !n.is_empty() && *n != NAME_ID) {
                let entry = claims.entry(name.to_string()).or_insert_with(|| Value::Array(vec![]));
                if let Value::Array(list) = entry {
                    list.extend(values.iter().cloned());
                }
            }
            if let Some(f) = attr.attribute("FriendlyName").filter(|n| !n.is_empty() && *n != NAME_ID) {
                friendly.push((f.to_string(), values));
            }
        }
    }
    for (name, values) in friendly {
        claims.entry(name).or_insert(Value::Array(values));
    }
    Ok(Verified { claims: Value::Object(claims), assertion_id: assertion_id.to_string(), valid_until, session_until, authn_instant })
}

/// SAML core 2.5.1: a condition the relying party does not understand makes the
/// assertion's validity Indeterminate, and an indeterminate assertion is not accepted.
/// Understood here: `AudienceRestriction` (checked by the caller), `OneTimeUse` (the
/// replay cache makes every assertion single use), and `ProxyRestriction` unless its
/// `Count` is 0: the gateway hands every login on (a session, tokens for the app), which
/// a `Count` of 0 forbids. Everything else — `Condition` with an `xsi:type`, elements of
/// other namespaces — is refused, named.
fn conditions_understood(conditions: Node) -> Result<(), UpstreamError> {
    for c in conditions.children().filter(Node::is_element) {
        if is(&c, ASSERTION, "AudienceRestriction") || is(&c, ASSERTION, "OneTimeUse") {
            continue;
        }
        if is(&c, ASSERTION, "ProxyRestriction") {
            match c.attribute("Count").map(|n| xml_trim(n).parse::<u32>()) {
                None | Some(Ok(1..)) => continue,
                Some(Ok(0)) => {
                    return Err(invalid(
                        "the IdP forbids passing this sign-in on (ProxyRestriction Count=\"0\"), and the gateway always passes it on to applications",
                    ))
                }
                Some(Err(_)) => return Err(invalid("the assertion's ProxyRestriction Count is not a number")),
            }
        }
        let name = c.tag_name().name();
        return Err(invalid(format!(
            "the assertion carries a condition this gateway does not understand ({}), so it cannot be accepted (SAML core 2.5.1.1)",
            shown(name)
        )));
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    //! The fuzz targets' shapes (fuzz/), deterministic and on stable Rust: responses
    //! signed every way, then cut, bent and repeated. Nothing may panic, and whatever
    //! still verifies must say exactly what the unbent response said.
    use super::*;
    use crate::upstream::xmldsig::sign_root;
    use openssl::pkey::{PKey, Private};

    pub(crate) const ACS: &str = "https://sso.example.test/saml/con_t/acs";
    pub(crate) const SP: &str = "https://sso.example.test/saml/con_t/metadata";
    pub(crate) const IDP: &str = "https://idp.example.test/metadata";
    pub(crate) const REQUEST: &str = "_req0123";
    /// 2027-01-15T08:00:00Z, when the responses below were issued.
    pub(crate) const NOW: Millis = 1_800_000_000_000;

    /// A SAML connection trusting `cert_pem` (also the differential test's fixture).
    pub(crate) fn connection(cert_pem: &str, require_signed_assertions: bool) -> Connection {
        let cert = openssl::x509::X509::from_pem(cert_pem.as_bytes()).unwrap();
        crate::testkit::saml_connection(crate::testkit::SamlNames { id: "con_t", sp_entity_id: SP, idp_entity_id: IDP }, &cert, require_signed_assertions)
    }

    pub(crate) use crate::testkit::saml_mut;

    pub(crate) fn expect() -> Expect<'static> {
        Expect { acs_url: ACS, request_id: Some(REQUEST), now: NOW + 10_000, skew_ms: 60_000, max_age_ms: 600_000 }
    }

    fn assertion() -> String {
        assertion_with("")
    }

    /// The fixture assertion with `sig` right after its Issuer (a signature template).
    pub(crate) fn assertion_with(sig: &str) -> String {
        format!(
            r#"<saml:Assertion xmlns:saml="{ASSERTION}" xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" ID="_a1" Version="2.0" IssueInstant="2027-01-15T08:00:00Z">
  <saml:Issuer>{IDP}</saml:Issuer>{sig}
  <saml:Subject><saml:NameID Format="urn:oasis:names:tc:SAML:2.0:nameid-format:persistent">alice@example.test</saml:NameID>
    <saml:SubjectConfirmation Method="{BEARER}"><saml:SubjectConfirmationData NotOnOrAfter="2027-01-15T08:05:00Z" Recipient="{ACS}" InResponseTo="{REQUEST}"/></saml:SubjectConfirmation></saml:Subject>
  <saml:Conditions NotBefore="2027-01-15T07:59:00Z" NotOnOrAfter="2027-01-15T08:05:00Z"><saml:AudienceRestriction><saml:Audience>{SP}</saml:Audience></saml:AudienceRestriction></saml:Conditions>
  <saml:AuthnStatement AuthnInstant="2027-01-15T08:00:00Z" SessionIndex="_a1"><saml:AuthnContext><saml:AuthnContextClassRef>urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport</saml:AuthnContextClassRef></saml:AuthnContext></saml:AuthnStatement>
  <saml:AttributeStatement>
    <saml:Attribute Name="urn:oid:0.9.2342.19200300.100.1.3" FriendlyName="mail"><saml:AttributeValue xsi:type="xs:string">alice@example.test</saml:AttributeValue></saml:Attribute>
    <saml:Attribute Name="groups"><saml:AttributeValue>admins</saml:AttributeValue><saml:AttributeValue>staff &amp; friends</saml:AttributeValue><saml:AttributeValue xsi:nil="true"/></saml:Attribute>
  </saml:AttributeStatement>
</saml:Assertion>"#
        )
    }

    fn response(assertion: &str) -> String {
        response_with(assertion, "")
    }

    /// The fixture response around `assertion`, with `sig` right after its Issuer.
    pub(crate) fn response_with(assertion: &str, sig: &str) -> String {
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<samlp:Response xmlns:samlp="{PROTOCOL}" xmlns:saml="{ASSERTION}" ID="_r1" Version="2.0" IssueInstant="2027-01-15T08:00:00Z" Destination="{ACS}" InResponseTo="{REQUEST}">
  <saml:Issuer>{IDP}</saml:Issuer>{sig}
  <samlp:Status><samlp:StatusCode Value="{SUCCESS}"/></samlp:Status>
  {assertion}
</samlp:Response>"#
        )
    }

    /// The signed shapes: assertion, response, both (as the seeds of `fuzz/`).
    fn shapes(key: &PKey<Private>) -> Vec<(&'static str, String)> {
        let signed_assertion = sign_root(&assertion(), key, None, true).unwrap();
        let response_signed = sign_root(&response(&assertion()), key, None, true).unwrap();
        let both = sign_root(&response(&signed_assertion), key, None, true).unwrap();
        vec![("assertion", response(&signed_assertion)), ("response", response_signed), ("both", both)]
    }

    /// Deterministic mutations: bytes dropped and changed, truncations, each element
    /// dropped, repeated, moved to the front of its parent, each attribute value emptied.
    fn mutations(xml: &str) -> Vec<String> {
        let mut out = Vec::new();
        let cut = |a: usize, b: usize, with: &str| format!("{}{with}{}", &xml[..a], &xml[b..]);
        for i in (0..xml.len()).step_by(7).filter(|&i| xml.is_char_boundary(i) && xml.is_char_boundary(i + 1)) {
            out.push(cut(i, i + 1, ""));
            out.push(cut(i, i + 1, "<"));
            if i % 3 == 0 {
                out.push(xml[..i].to_string());
            }
        }
        let doc = roxmltree::Document::parse(xml).unwrap();
        for n in doc.descendants().filter(|n| n.is_element()) {
            let r = n.range();
            let me = &xml[r.clone()];
            out.push(cut(r.start, r.end, ""));
            out.push(cut(r.start, r.end, &format!("{me}{me}")));
            if let Some(p) = n.parent().filter(|p| p.is_element()) {
                let open = p.range().start + xml[p.range().start..].find('>').unwrap() + 1;
                if open < r.start {
                    out.push(format!("{}{me}{}{}", &xml[..open], &xml[open..r.start], &xml[r.end..]));
                }
            }
            for a in n.attributes() {
                out.push(cut(a.range_value().start, a.range_value().end, ""));
            }
            // The name with a Unicode space and more after it, in both tags: U+1680 is an
            // XML name character (the parser reads one longer name); the others are not.
            let name_len = me[1..].find(|c: char| " \t\r\n/>".contains(c)).unwrap_or(0);
            let name = &me[1..1 + name_len];
            for sp in ["\u{1680}", "\u{1680}X", "\u{A0}X", "\u{2000}"] {
                let mut bent = me.replacen(name, &format!("{name}{sp}"), 1);
                if let Some(close) = bent.rfind(&format!("</{name}>")) {
                    bent.replace_range(close..close + name.len() + 3, &format!("</{name}{sp}>"));
                }
                out.push(cut(r.start, r.end, &bent));
            }
        }
        out
    }

    /// A fixture assertion changed by `edit`, signed, in a response.
    fn signed_with(key: &PKey<Private>, edit: impl Fn(String) -> String) -> String {
        response(&sign_root(&edit(assertion()), key, None, true).unwrap())
    }

    #[test]
    fn conditions_not_understood_are_refused_and_session_not_on_or_after_is_kept() {
        let (cert, key) = crate::connection::keypair::generate("idp").unwrap();
        let key = PKey::private_key_from_pem(key.as_bytes()).unwrap();
        let conn = connection(&cert, true);
        let with_condition = |c: &'static str| move |a: String| a.replace("</saml:AudienceRestriction>", &format!("</saml:AudienceRestriction>{c}"));
        let cases: [(&str, Option<&str>); 8] = [
            ("<saml:OneTimeUse/>", None),
            ("<saml:ProxyRestriction Count=\"2\"><saml:Audience>urn:x</saml:Audience></saml:ProxyRestriction>", None),
            ("<saml:ProxyRestriction/>", None),
            ("<saml:ProxyRestriction Count=\"0\"/>", Some("ProxyRestriction Count")),
            ("<saml:ProxyRestriction Count=\"many\"/>", Some("not a number")),
            ("<saml:Condition xmlns:g=\"urn:g\" xsi:type=\"g:Geo\"/>", Some("does not understand (\"Condition\")")),
            ("<g:Geo xmlns:g=\"urn:g\"/>", Some("does not understand (\"Geo\")")),
            ("</saml:Conditions><saml:Conditions><saml:Condition/>", Some("more than one Conditions")),
        ];
        for (condition, refusal) in cases {
            let got = verify_xml(&signed_with(&key, with_condition(condition)), &conn, &expect());
            match refusal {
                None => assert!(got.is_ok(), "{condition}: {got:?}"),
                Some(needle) => assert!(got.as_ref().unwrap_err().to_string().contains(needle), "{condition}: {got:?}"),
            }
        }
        let plain = verify_xml(&signed_with(&key, |a| a), &conn, &expect()).unwrap();
        assert_eq!(plain.session_until, None);
        let session_end = |at: &'static str| move |a: String| a.replace("SessionIndex=\"_a1\"", &format!("SessionIndex=\"_a1\" SessionNotOnOrAfter=\"{at}\""));
        let capped = verify_xml(&signed_with(&key, session_end("2027-01-15T09:00:00Z")), &conn, &expect()).unwrap();
        assert_eq!(capped.session_until, Some(NOW + 3_600_000));
        let ended = verify_xml(&signed_with(&key, session_end("2027-01-15T08:00:05Z")), &conn, &expect()).unwrap_err();
        assert!(ended.to_string().contains("SessionNotOnOrAfter"), "{ended}");
    }

    #[test]
    fn bent_responses_never_panic_and_never_verify_as_something_else() {
        let (cert, key) = crate::connection::keypair::generate("idp").unwrap();
        let key = PKey::private_key_from_pem(key.as_bytes()).unwrap();
        let (lenient, strict) = (connection(&cert, false), connection(&cert, true));
        let expect = expect();
        let mut verified = 0;
        for (name, xml) in shapes(&key) {
            saml_precheck::check_xml(&xml).unwrap_or_else(|e| panic!("{name}: {e}\n{xml}"));
            let want = verify_xml(&xml, &lenient, &expect).unwrap_or_else(|e| panic!("{name}: {e}\n{xml}"));
            assert_eq!(want.claims[NAME_ID], "alice@example.test");
            assert_eq!(want.claims["mail"], serde_json::json!(["alice@example.test"]));
            assert_eq!(want.claims["groups"], serde_json::json!(["admins", "staff & friends"]));
            assert_eq!(verify_xml(&xml, &strict, &expect).is_ok(), name != "response", "{name}");
            for bent in mutations(&xml) {
                if saml_precheck::check_xml(&bent).is_err() {
                    continue;
                }
                for conn in [&lenient, &strict] {
                    if let Ok(got) = verify_xml(&bent, conn, &expect) {
                        assert_eq!(got, want, "{name}: a bent response verified as something else:\n{bent}");
                        verified += 1;
                    }
                }
            }
        }
        // Bends outside what is signed (whitespace, the unsigned envelope) still verify.
        assert!(verified > 0);
    }

    /// A weak key pinned before the import refused them is never used to verify.
    #[test]
    fn weak_pinned_keys_are_not_used() {
        let key = PKey::from_rsa(openssl::rsa::Rsa::generate(1024).unwrap()).unwrap();
        let cert = crate::connection::keypair::self_signed(&key, "weak", 30).unwrap();
        let pem = String::from_utf8(cert.to_pem().unwrap()).unwrap();
        let (strong, _) = crate::connection::keypair::generate("strong").unwrap();
        let mut conn = connection(&strong, true);
        saml_mut(&mut conn).idp.certificates[0].pem = pem;
        assert!(pinned_keys(&conn).is_empty());
        let xml = response(&sign_root(&assertion(), &key, None, true).unwrap());
        let err = verify_xml(&xml, &conn, &expect()).unwrap_err();
        assert!(err.to_string().contains("no usable IdP signing certificate"), "{err}");
    }

    #[test]
    fn pinned_keys_are_decoded_once_and_follow_the_certificate() {
        let (cert_a, _) = crate::connection::keypair::generate("a").unwrap();
        let (cert_b, _) = crate::connection::keypair::generate("b").unwrap();
        let der = |c: &Connection| pinned_keys(c).iter().map(|k| k.public_key_to_der().unwrap()).collect::<Vec<_>>();
        let a = connection(&cert_a, true);
        let want_a = openssl::x509::X509::from_pem(cert_a.as_bytes()).unwrap().public_key().unwrap().public_key_to_der().unwrap();
        assert_eq!(der(&a), vec![want_a.clone()]);
        assert_eq!(der(&a), vec![want_a.clone()]);
        let mut both = a.clone();
        saml_mut(&mut both).idp.certificates.extend(saml_mut(&mut connection(&cert_b, true)).idp.certificates.clone());
        assert_eq!(der(&both).len(), 2);
        assert_ne!(der(&both)[1], want_a);
        let mut broken = a;
        saml_mut(&mut broken).idp.certificates[0].pem = "not a certificate".into();
        assert!(pinned_keys(&broken).is_empty());
    }

    /// The Web SSO profile's conditions, one row each, at their skew boundaries: the
    /// assertion edited, then signed (so every edit is inside the signature), in a
    /// response edited outside it. `expect()` is 10 s after the fixture's issue instant
    /// with a 60 s skew, so "now + skew" is 08:01:10 and "now - skew" 07:59:10.
    #[test]
    fn conditions_table() {
        let (cert, key) = crate::connection::keypair::generate("idp").unwrap();
        let key = PKey::private_key_from_pem(key.as_bytes()).unwrap();
        let conn = connection(&cert, true);
        /// Replaces the first `from` with `to`.
        fn swap(xml: &str, from: &str, to: &str) -> String {
            assert!(xml.contains(from), "{from} is not in the fixture");
            xml.replacen(from, to, 1)
        }
        let conditions_nb = "<saml:Conditions NotBefore=\"2027-01-15T07:59:00Z\"";
        let conditions_noa = "NotOnOrAfter=\"2027-01-15T08:05:00Z\"><saml:AudienceRestriction>";
        let scd_noa = "<saml:SubjectConfirmationData NotOnOrAfter=\"2027-01-15T08:05:00Z\"";
        let recipient = format!("Recipient=\"{ACS}\"");
        let scd_irt = format!("Recipient=\"{ACS}\" InResponseTo=\"{REQUEST}\"");
        let audience = format!("<saml:Audience>{SP}</saml:Audience>");
        let bearer_sc = format!("<saml:SubjectConfirmation Method=\"{BEARER}\">");
        let hok = "urn:oasis:names:tc:SAML:2.0:cm:holder-of-key";
        let unsolicited = Expect { request_id: None, ..expect() };
        // (what, edit of the assertion, edit of the response around it, expectation, refusal part or None)
        type Edit<'a> = Box<dyn Fn(String) -> String + 'a>;
        let same = || -> Edit { Box::new(|x| x) };
        let a = |from: &'static str, to: String| -> Edit { Box::new(move |x| swap(&x, from, &to)) };
        let a_owned = |from: String, to: String| -> Edit { Box::new(move |x| swap(&x, &from, &to)) };
        let table: Vec<(&str, Edit, Edit, Expect, Option<&str>)> = vec![
            ("the fixture", same(), same(), expect(), None),
            // Conditions NotBefore / NotOnOrAfter with the skew.
            ("Conditions NotBefore = now + skew", a(conditions_nb, "<saml:Conditions NotBefore=\"2027-01-15T08:01:10Z\"".into()), same(), expect(), None),
            (
                "Conditions NotBefore = now + skew + 1 s",
                a(conditions_nb, "<saml:Conditions NotBefore=\"2027-01-15T08:01:11Z\"".into()),
                same(),
                expect(),
                Some("not valid yet (Conditions NotBefore)"),
            ),
            ("Conditions without NotBefore", a(conditions_nb, "<saml:Conditions".into()), same(), expect(), None),
            (
                "Conditions NotOnOrAfter = now - skew",
                a(conditions_noa, "NotOnOrAfter=\"2027-01-15T07:59:10Z\"><saml:AudienceRestriction>".into()),
                same(),
                expect(),
                Some("expired (Conditions NotOnOrAfter)"),
            ),
            (
                "Conditions NotOnOrAfter = now - skew + 1 s",
                a(conditions_noa, "NotOnOrAfter=\"2027-01-15T07:59:11Z\"><saml:AudienceRestriction>".into()),
                same(),
                expect(),
                None,
            ),
            (
                "Conditions NotOnOrAfter not a date-time",
                a(conditions_noa, "NotOnOrAfter=\"soon\"><saml:AudienceRestriction>".into()),
                same(),
                expect(),
                Some("not a UTC date-time"),
            ),
            // SubjectConfirmationData NotOnOrAfter (required) and NotBefore.
            ("SubjectConfirmationData NotOnOrAfter = now - skew", a(scd_noa, "<saml:SubjectConfirmationData NotOnOrAfter=\"2027-01-15T07:59:10Z\"".into()), same(), expect(), Some("expired (SubjectConfirmationData NotOnOrAfter)")),
            ("SubjectConfirmationData NotOnOrAfter = now - skew + 1 s", a(scd_noa, "<saml:SubjectConfirmationData NotOnOrAfter=\"2027-01-15T07:59:11Z\"".into()), same(), expect(), None),
            ("SubjectConfirmationData without NotOnOrAfter", a(scd_noa, "<saml:SubjectConfirmationData".into()), same(), expect(), Some("no NotOnOrAfter")),
            (
                "SubjectConfirmationData NotBefore = now + skew + 1 s",
                a(scd_noa, "<saml:SubjectConfirmationData NotBefore=\"2027-01-15T08:01:11Z\" NotOnOrAfter=\"2027-01-15T08:05:00Z\"".into()),
                same(),
                expect(),
                Some("not valid yet (SubjectConfirmationData NotBefore)"),
            ),
            (
                "SubjectConfirmationData NotBefore = now + skew",
                a(scd_noa, "<saml:SubjectConfirmationData NotBefore=\"2027-01-15T08:01:10Z\" NotOnOrAfter=\"2027-01-15T08:05:00Z\"".into()),
                same(),
                expect(),
                None,
            ),
            // AudienceRestriction.
            ("no AudienceRestriction", a_owned(format!("<saml:AudienceRestriction>{audience}</saml:AudienceRestriction>"), String::new()), same(), expect(), Some("names no Audience")),
            ("Audience another SP", a_owned(audience.clone(), "<saml:Audience>https://other-sp.example/</saml:Audience>".into()), same(), expect(), Some("another service provider")),
            ("Audience ours among others", a_owned(audience.clone(), format!("<saml:Audience>https://other-sp.example/</saml:Audience>{audience}")), same(), expect(), None),
            ("Audience ours with spaces around", a_owned(audience.clone(), format!("<saml:Audience>\n  {SP} </saml:Audience>")), same(), expect(), None),
            ("Audience ours with a trailing slash", a_owned(audience.clone(), format!("<saml:Audience>{SP}/</saml:Audience>")), same(), expect(), Some("another service provider")),
            ("AudienceRestriction empty", a_owned(audience.clone(), String::new()), same(), expect(), Some("another service provider")),
            (
                "a second AudienceRestriction without us (each must name us)",
                a_owned(format!("{audience}</saml:AudienceRestriction>"), format!("{audience}</saml:AudienceRestriction><saml:AudienceRestriction><saml:Audience>https://other-sp.example/</saml:Audience></saml:AudienceRestriction>")),
                same(),
                expect(),
                Some("another service provider"),
            ),
            (
                "a second AudienceRestriction with us",
                a_owned(format!("{audience}</saml:AudienceRestriction>"), format!("{audience}</saml:AudienceRestriction><saml:AudienceRestriction>{audience}<saml:Audience>https://x.example/</saml:Audience></saml:AudienceRestriction>")),
                same(),
                expect(),
                None,
            ),
            // Recipient.
            ("Recipient another ACS", a_owned(recipient.clone(), "Recipient=\"https://other-sp.example/acs\"".into()), same(), expect(), Some("(Recipient)")),
            ("Recipient ours with a trailing slash", a_owned(recipient.clone(), format!("Recipient=\"{ACS}/\"")), same(), expect(), Some("(Recipient)")),
            ("no Recipient", a_owned(recipient.clone(), String::new()), same(), expect(), Some("no Recipient")),
            // InResponseTo, in the signed confirmation and on the response.
            ("SubjectConfirmationData InResponseTo another request", a_owned(scd_irt.clone(), format!("{recipient} InResponseTo=\"_other\"")), same(), expect(), Some("another sign-in")),
            ("SubjectConfirmationData without InResponseTo", a_owned(scd_irt.clone(), recipient.clone()), same(), expect(), Some("no InResponseTo")),
            ("Response InResponseTo another request", same(), a_owned(format!("InResponseTo=\"{REQUEST}\">"), "InResponseTo=\"_other\">".into()), expect(), Some("another sign-in")),
            ("Response without InResponseTo", same(), a_owned(format!(" InResponseTo=\"{REQUEST}\">"), ">".into()), expect(), Some("no InResponseTo")),
            ("unsolicited, but the response answers a request", same(), same(), unsolicited.clone(), Some("did not start here")),
            (
                "unsolicited, no InResponseTo anywhere",
                a_owned(scd_irt.clone(), recipient.clone()),
                a_owned(format!(" InResponseTo=\"{REQUEST}\">"), ">".into()),
                unsolicited.clone(),
                None,
            ),
            (
                "unsolicited response, but the confirmation answers a request",
                same(),
                a_owned(format!(" InResponseTo=\"{REQUEST}\">"), ">".into()),
                unsolicited.clone(),
                Some("did not start here"),
            ),
            // SubjectConfirmation Method.
            ("Method holder-of-key only", a_owned(bearer_sc.clone(), format!("<saml:SubjectConfirmation Method=\"{hok}\">")), same(), expect(), Some("no bearer SubjectConfirmation")),
            (
                "Method sender-vouches only",
                a_owned(bearer_sc.clone(), "<saml:SubjectConfirmation Method=\"urn:oasis:names:tc:SAML:2.0:cm:sender-vouches\">".into()),
                same(),
                expect(),
                Some("no bearer SubjectConfirmation"),
            ),
            ("Method bearer with a leading space (compared exactly, not schema-collapsed)", a_owned(bearer_sc.clone(), format!("<saml:SubjectConfirmation Method=\" {BEARER}\">")), same(), expect(), Some("no bearer SubjectConfirmation")),
            (
                "holder-of-key beside a valid bearer",
                a_owned(bearer_sc.clone(), format!("<saml:SubjectConfirmation Method=\"{hok}\"/>{bearer_sc}")),
                same(),
                expect(),
                None,
            ),
            (
                "a bearer for another ACS, then a valid one",
                a_owned(
                    bearer_sc.clone(),
                    format!("{bearer_sc}<saml:SubjectConfirmationData NotOnOrAfter=\"2027-01-15T08:05:00Z\" Recipient=\"https://other-sp.example/acs\"/></saml:SubjectConfirmation>{bearer_sc}"),
                ),
                same(),
                expect(),
                None,
            ),
            ("bearer without SubjectConfirmationData", a_owned(format!("<saml:SubjectConfirmationData NotOnOrAfter=\"2027-01-15T08:05:00Z\" {scd_irt}/>"), String::new()), same(), expect(), Some("no SubjectConfirmationData")),
            // IssueInstant.
            ("IssueInstant = now + skew", a("IssueInstant=\"2027-01-15T08:00:00Z\"", "IssueInstant=\"2027-01-15T08:01:10Z\"".into()), same(), expect(), None),
            ("IssueInstant = now + skew + 1 s", a("IssueInstant=\"2027-01-15T08:00:00Z\"", "IssueInstant=\"2027-01-15T08:01:11Z\"".into()), same(), expect(), Some("issued in the future")),
            ("IssueInstant older than a login may take", a("IssueInstant=\"2027-01-15T08:00:00Z\"", "IssueInstant=\"2027-01-15T07:48:00Z\"".into()), same(), expect(), Some("too long ago")),
        ];
        for (what, edit_assertion, edit_response, expect, refusal) in table {
            let signed = sign_root(&edit_assertion(assertion()), &key, None, true).unwrap();
            let xml = edit_response(response(&signed));
            match (refusal, verify_xml(&xml, &conn, &expect)) {
                (None, Ok(v)) => assert_eq!(v.claims[NAME_ID], "alice@example.test", "{what}"),
                (None, Err(e)) => panic!("{what}: refused: {e}"),
                (Some(part), Ok(_)) => panic!("{what}: accepted, want a refusal naming {part:?}"),
                (Some(part), Err(e)) => assert!(e.to_string().contains(part), "{what}: {e}"),
            }
        }
    }
}
