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

use openssl::pkey::{PKey, Public};
use roxmltree::Node;
use serde_json::{Map, Value};

use super::saml_precheck;
use super::xmldsig::{self, text_of};
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
        Some(v) => chrono::DateTime::parse_from_rfc3339(v.trim())
            .map(|t| Some(t.timestamp_millis()))
            .map_err(|_| invalid(format!("the {} {attr} {v:?} is not a UTC date-time", n.tag_name().name()))),
    }
}

/// Pinned public keys from the connection's IdP certificates.
pub fn pinned_keys(conn: &Connection) -> Vec<PKey<Public>> {
    conn.settings
        .saml
        .iter()
        .flat_map(|s| s.idp.certificates.iter())
        .filter_map(|c| openssl::x509::X509::from_pem(c.pem.as_bytes()).ok())
        .filter_map(|c| c.public_key().ok())
        .collect()
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
    let short = |v: &str| v.strip_prefix("urn:oasis:names:tc:SAML:2.0:status:").filter(|s| s.chars().all(|c| c.is_ascii_alphanumeric())).unwrap_or("unknown").to_string();
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
        Some(r) => return Err(invalid(format!("the assertion is meant for {r:?}, not for this connection's ACS (Recipient)"))),
        None => return Err(invalid("the bearer confirmation has no Recipient")),
    }
    let until = instant(data, "NotOnOrAfter")?.ok_or_else(|| invalid("the bearer confirmation has no NotOnOrAfter"))?;
    if now >= until + skew {
        return Err(invalid("the assertion has expired (SubjectConfirmationData NotOnOrAfter)"));
    }
    if instant(data, "NotBefore")?.is_some_and(|nb| now + skew < nb) {
        return Err(invalid("the assertion is not valid yet (SubjectConfirmationData NotBefore)"));
    }
    if data.has_attribute("InResponseTo") {
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
    let s = conn.settings.saml.as_ref().ok_or_else(|| UpstreamError::Unavailable("the connection has no SAML settings".into()))?;
    let doc = saml_precheck::parse(xml).map_err(|e| invalid(e.to_string()))?;
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
    let dsig = |e: xmldsig::DsigError| invalid(e.to_string());
    let response_signed = xmldsig::verify_element(root, &keys).map_err(dsig)?;

    if one(root, ASSERTION, "EncryptedAssertion").is_some() {
        return Err(invalid("the response carries an encrypted assertion, which this gateway does not accept; turn assertion encryption off at the IdP"));
    }
    let mut assertions = children(root, ASSERTION, "Assertion");
    let assertion = assertions.next().ok_or_else(|| invalid("the response has no assertion"))?;
    if assertions.next().is_some() {
        return Err(invalid("the response has more than one assertion"));
    }
    let assertion_signed = xmldsig::verify_element(assertion, &keys).map_err(dsig)?;
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
        Some(d) if d != expect.acs_url => return Err(invalid(format!("the response is addressed to {d:?}, not to this connection's ACS"))),
        None if response_signed => return Err(invalid("the signed response has no Destination")),
        _ => {}
    }
    let idp = s.idp.entity_id.as_str();
    if let Some(issuer) = one(root, ASSERTION, "Issuer") {
        if text_of(issuer).trim() != idp {
            return Err(invalid(format!("the response was issued by {:?}, not by this connection's IdP", text_of(issuer).trim())));
        }
    }
    in_response_to(root, expect)?;

    // The Assertion.
    let now = expect.now;
    let skew = expect.skew_ms;
    let issuer = one(assertion, ASSERTION, "Issuer").ok_or_else(|| invalid("the assertion has no Issuer"))?;
    if text_of(issuer).trim() != idp {
        return Err(invalid(format!("the assertion was issued by {:?}, not by this connection's IdP", text_of(issuer).trim())));
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

    let conditions = one(assertion, ASSERTION, "Conditions").ok_or_else(|| invalid("the assertion has no Conditions, so no Audience"))?;
    if instant(conditions, "NotBefore")?.is_some_and(|nb| now + skew < nb) {
        return Err(invalid("the assertion is not valid yet (Conditions NotBefore)"));
    }
    if let Some(until) = instant(conditions, "NotOnOrAfter")? {
        if now >= until + skew {
            return Err(invalid("the assertion has expired (Conditions NotOnOrAfter)"));
        }
        valid_until = valid_until.max(until);
    }
    let restrictions: Vec<_> = children(conditions, ASSERTION, "AudienceRestriction").collect();
    if restrictions.is_empty() {
        return Err(invalid("the assertion names no Audience"));
    }
    for r in restrictions {
        if !children(r, ASSERTION, "Audience").any(|a| text_of(a).trim() == s.entity_id) {
            return Err(invalid(format!("the assertion is meant for another service provider (Audience is not {:?})", s.entity_id)));
        }
    }
    if issued < now - expect.max_age_ms - skew {
        return Err(invalid("the assertion was issued too long ago"));
    }
    if one(assertion, ASSERTION, "AuthnStatement").is_none() {
        return Err(invalid("the assertion has no AuthnStatement"));
    }

    // Attributes: by Name, and by FriendlyName where that name is free; always lists.
    let mut claims = Map::new();
    if let Some(n) = name_id {
        claims.insert(NAME_ID.into(), Value::String(text_of(n).trim().to_string()));
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
                .filter(|v| v.attribute(("http://www.w3.org/2001/XMLSchema-instance", "nil")) != Some("true"))
                .map(|v| Value::String(text_of(v).trim().to_string()))
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
    Ok(Verified { claims: Value::Object(claims), assertion_id: assertion_id.to_string(), valid_until })
}
