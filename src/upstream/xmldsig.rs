//! XML signatures for SAML, written for this project: exclusive XML canonicalization
//! (with or without an `InclusiveNamespaces` prefix list) over a parsed `roxmltree`
//! document, and enveloped signatures checked with OpenSSL against pinned keys only.
//!
//! The rules are narrower than XML-DSig allows, on purpose:
//! - a signature is verified only as a *direct child* of the element it signs, and its
//!   one `Reference` must name that element (`#ID`, or `""` for the document root); the
//!   caller then reads that same element from the same parsed tree, so what is read is
//!   what was signed (no signature wrapping);
//! - transforms: enveloped-signature (required) and exclusive c14n; nothing else;
//! - algorithms: RSA and ECDSA with SHA-256/384/512; RSA-SHA1 and SHA-1 digests only
//!   where the caller allows them (a connection's legacy opt-in, `allow_sha1`);
//! - `KeyInfo` is ignored: only the keys pinned from the IdP's metadata count;
//! - no comments or processing instructions anywhere (the pre-check refuses them too), so
//!   "with comments" and "without" canonicalize alike and no text can hide in a comment.
//!
//! Nothing here touches the network or the file system.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use openssl::bn::BigNum;
use openssl::ecdsa::EcdsaSig;
use openssl::hash::{hash, MessageDigest};
use openssl::nid::Nid;
use openssl::pkey::{Id, PKey, Private, Public};
use openssl::sign::{Signer, Verifier};
use roxmltree::{Node, NodeId};

/// Deepest nesting canonicalized (the pre-check refuses far less already).
pub const MAX_DEPTH: usize = 128;
/// The XML-DSig namespace.
pub const DS: &str = "http://www.w3.org/2000/09/xmldsig#";
const EXC_C14N: &str = "http://www.w3.org/2001/10/xml-exc-c14n#";
const EXC_C14N_COMMENTS: &str = "http://www.w3.org/2001/10/xml-exc-c14n#WithComments";
const ENVELOPED: &str = "http://www.w3.org/2000/09/xmldsig#enveloped-signature";
const SHA256: &str = "http://www.w3.org/2001/04/xmlenc#sha256";

/// Why a signature was not accepted. The text names the problem for an admin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DsigError {
    /// More than one signature on one element.
    #[error("an element carries more than one signature")]
    Multiple,
    /// The signature's structure is not what XML-DSig requires.
    #[error("a signature is malformed: {0}")]
    Malformed(&'static str),
    /// The reference does not name the element the signature is in.
    #[error("a signature does not sign the element that contains it")]
    Detached,
    /// An algorithm or transform outside the allow-list.
    #[error("a signature uses {}, which is not allowed", super::saml_precheck::shown(.0))]
    Algorithm(String),
    /// The signed content was changed.
    #[error("the signed content was changed after signing (digest mismatch)")]
    Digest,
    /// No pinned key verifies the signature.
    #[error("the signature does not verify with any of the IdP's certificates")]
    Signature,
    /// Signed content nested deeper than [`MAX_DEPTH`].
    #[error("the signed content nests elements too deep")]
    TooDeep,
    /// Comments or processing instructions inside signed content.
    #[error("the signed content contains comments or processing instructions")]
    Comment,
    /// A name that the canonical form and the XML reader would see differently (a Unicode
    /// space inside an element or attribute name, say): what is signed would not be what
    /// is read.
    #[error("the signed content has an element or attribute name that does not read the same way twice (a Unicode space inside a name?)")]
    Name,
}

/// XML's own whitespace (XML 1.0 `S`): space, tab, CR, LF. Nothing else separates names,
/// prefixes or base64 in XML, and treating any other Unicode space as a separator makes
/// two different documents share one canonical form.
pub fn is_xml_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

/// Trims XML whitespace only (never a no-break space or another Unicode space: those are
/// part of the value, and trimming them would merge distinct identifiers).
pub fn xml_trim(s: &str) -> &str {
    s.trim_matches(is_xml_space)
}

fn is_ds(n: &Node, name: &str) -> bool {
    n.is_element() && n.tag_name().name() == name && n.tag_name().namespace() == Some(DS)
}

fn child<'a, 'i>(n: Node<'a, 'i>, name: &str) -> Option<Node<'a, 'i>> {
    n.children().find(|c| is_ds(c, name))
}

/// The SHA-1 signature method (RSA only) and digest, accepted only by a legacy opt-in.
pub const RSA_SHA1: &str = "http://www.w3.org/2000/09/xmldsig#rsa-sha1";
/// SHA-1 digest method.
pub const SHA1: &str = "http://www.w3.org/2000/09/xmldsig#sha1";

fn digest_of(alg: &str, sha1: bool) -> Option<MessageDigest> {
    match alg {
        SHA1 if sha1 => Some(MessageDigest::sha1()),
        SHA256 => Some(MessageDigest::sha256()),
        "http://www.w3.org/2001/04/xmldsig-more#sha384" => Some(MessageDigest::sha384()),
        "http://www.w3.org/2001/04/xmlenc#sha512" => Some(MessageDigest::sha512()),
        _ => None,
    }
}

/// (digest, the curve for ECDSA) for a signature method URI on the allow-list. Each ECDSA
/// method is bound to the curve of its strength (as JWS binds ES256 to P-256): a key on
/// another curve does not verify it.
fn signature_of(alg: &str, sha1: bool) -> Option<(MessageDigest, Option<Nid>)> {
    if sha1 && alg == RSA_SHA1 {
        return Some((MessageDigest::sha1(), None));
    }
    let (md, curve) = match alg.strip_prefix("http://www.w3.org/2001/04/xmldsig-more#")? {
        "rsa-sha256" => (MessageDigest::sha256(), None),
        "rsa-sha384" => (MessageDigest::sha384(), None),
        "rsa-sha512" => (MessageDigest::sha512(), None),
        "ecdsa-sha256" => (MessageDigest::sha256(), Some(Nid::X9_62_PRIME256V1)),
        "ecdsa-sha384" => (MessageDigest::sha384(), Some(Nid::SECP384R1)),
        "ecdsa-sha512" => (MessageDigest::sha512(), Some(Nid::SECP521R1)),
        _ => return None,
    };
    Some((md, curve))
}

/// Whether `key` may verify a signature made with this method: RSA for RSA methods; for
/// ECDSA, a key on the method's curve and a value of exactly twice the curve's size
/// (XML-DSig 1.1: r and s, each padded to the size of the curve's order).
fn key_fits(key: &PKey<Public>, curve: Option<Nid>, raw_len: usize) -> bool {
    match curve {
        None => key.id() == Id::RSA,
        Some(want) => {
            let Ok(ec) = key.ec_key() else { return false };
            let group = ec.group();
            let size = (group.degree() as usize).div_ceil(8);
            group.curve_name() == Some(want) && raw_len == 2 * size
        }
    }
}

/// Most prefixes an `InclusiveNamespaces PrefixList` may name (real ones name one to three).
const MAX_PREFIXES: usize = 16;

/// The `InclusiveNamespaces PrefixList` under a c14n method or transform element.
fn prefix_list(method: Node) -> Result<Vec<String>, DsigError> {
    let mut list: Vec<String> = method
        .children()
        .find(|c| c.is_element() && c.tag_name().name() == "InclusiveNamespaces" && c.tag_name().namespace() == Some(EXC_C14N))
        .and_then(|n| n.attribute("PrefixList"))
        .map(|l| l.split(is_xml_space).filter(|p| !p.is_empty()).map(|p| if p == "#default" { String::new() } else { p.to_string() }).collect())
        .unwrap_or_default();
    list.sort_unstable();
    list.dedup();
    if list.len() > MAX_PREFIXES {
        return Err(DsigError::Malformed("an InclusiveNamespaces PrefixList names too many prefixes"));
    }
    Ok(list)
}

fn compact_b64(s: &str) -> Result<Vec<u8>, DsigError> {
    let c: String = s.chars().filter(|c| !is_xml_space(*c)).collect();
    B64.decode(c).map_err(|_| DsigError::Malformed("a digest or signature value is not base64"))
}

/// Verifies the enveloped signature that is a direct child of `elem`. `Ok(false)`: the
/// element is not signed; `Ok(true)`: signed, and the signature verifies with one of
/// `keys`; `Err`: signed, but not acceptably. SHA-1 is refused.
pub fn verify_element(elem: Node, keys: &[PKey<Public>]) -> Result<bool, DsigError> {
    verify_element_with(elem, keys, false)
}

/// [`verify_element`], with RSA-SHA1 and SHA-1 digests accepted when `sha1` is set (a
/// connection's legacy opt-in; nothing else changes).
pub fn verify_element_with(elem: Node, keys: &[PKey<Public>], sha1: bool) -> Result<bool, DsigError> {
    let mut sigs = elem.children().filter(|c| is_ds(c, "Signature"));
    let Some(sig) = sigs.next() else { return Ok(false) };
    if sigs.next().is_some() {
        return Err(DsigError::Multiple);
    }
    let src = elem.document().input_text();
    let signed_info = child(sig, "SignedInfo").ok_or(DsigError::Malformed("no SignedInfo"))?;
    let value = child(sig, "SignatureValue").ok_or(DsigError::Malformed("no SignatureValue"))?;
    let c14n = child(signed_info, "CanonicalizationMethod").ok_or(DsigError::Malformed("no CanonicalizationMethod"))?;
    let c14n_alg = c14n.attribute("Algorithm").unwrap_or_default();
    if c14n_alg != EXC_C14N && c14n_alg != EXC_C14N_COMMENTS {
        return Err(DsigError::Algorithm(c14n_alg.into()));
    }
    let method = child(signed_info, "SignatureMethod").and_then(|m| m.attribute("Algorithm")).ok_or(DsigError::Malformed("no SignatureMethod"))?;
    let (sig_md, curve) = signature_of(method, sha1).ok_or_else(|| DsigError::Algorithm(method.into()))?;

    let mut refs = signed_info.children().filter(|c| is_ds(c, "Reference"));
    let reference = refs.next().ok_or(DsigError::Malformed("no Reference"))?;
    if refs.next().is_some() {
        return Err(DsigError::Malformed("more than one Reference"));
    }
    let uri = reference.attribute("URI").unwrap_or_default();
    let names_elem = match uri.strip_prefix('#') {
        Some(id) => elem.attribute("ID") == Some(id),
        None => uri.is_empty() && elem.parent().is_some_and(|p| p.is_root()),
    };
    if !names_elem {
        return Err(DsigError::Detached);
    }
    let mut enveloped = false;
    let mut inclusive = None;
    if let Some(transforms) = child(reference, "Transforms") {
        for t in transforms.children().filter(|c| c.is_element()) {
            if !is_ds(&t, "Transform") {
                return Err(DsigError::Malformed("unexpected element in Transforms"));
            }
            match t.attribute("Algorithm").unwrap_or_default() {
                ENVELOPED => enveloped = true,
                EXC_C14N | EXC_C14N_COMMENTS => inclusive = Some(prefix_list(t)?),
                other => return Err(DsigError::Algorithm(other.into())),
            }
        }
    }
    if !enveloped {
        return Err(DsigError::Malformed("the signature is not enveloped"));
    }
    // Without a c14n transform XML-DSig means inclusive c14n 1.0, which SAML never uses.
    let inclusive = inclusive.ok_or(DsigError::Malformed("the reference has no exclusive c14n transform (inclusive c14n is not supported)"))?;
    let digest_alg = child(reference, "DigestMethod").and_then(|m| m.attribute("Algorithm")).ok_or(DsigError::Malformed("no DigestMethod"))?;
    let digest_md = digest_of(digest_alg, sha1).ok_or_else(|| DsigError::Algorithm(digest_alg.into()))?;
    let want = compact_b64(&text_of(child(reference, "DigestValue").ok_or(DsigError::Malformed("no DigestValue"))?))?;

    // The signature over SignedInfo first: it is small, and until it verifies nothing in
    // the reference (a prefix list, the size of the signed content) is trusted with work.
    let info = canonicalize(src, signed_info, None, &prefix_list(c14n)?)?;
    let raw = compact_b64(&text_of(value))?;
    let raw_len = raw.len();
    let raw = if curve.is_some() { ecdsa_der(&raw).ok_or(DsigError::Malformed("an ECDSA signature value has an odd length"))? } else { raw };
    let signed = keys
        .iter()
        .filter(|k| key_fits(k, curve, raw_len))
        .any(|key| Verifier::new(sig_md, key).and_then(|mut v| v.verify_oneshot(&raw, info.as_bytes())).unwrap_or(false));
    if !signed {
        return Err(DsigError::Signature);
    }

    let content = canonicalize(src, elem, Some(sig.id()), &inclusive)?;
    let got = hash(digest_md, content.as_bytes()).map_err(|_| DsigError::Digest)?;
    if got.len() != want.len() || !openssl::memcmp::eq(&got, &want) {
        return Err(DsigError::Digest);
    }
    Ok(true)
}

/// XML-DSig carries ECDSA signatures as r || s; OpenSSL wants DER.
fn ecdsa_der(raw: &[u8]) -> Option<Vec<u8>> {
    if raw.is_empty() || raw.len() % 2 != 0 {
        return None;
    }
    let (r, s) = raw.split_at(raw.len() / 2);
    let sig = EcdsaSig::from_private_components(BigNum::from_slice(r).ok()?, BigNum::from_slice(s).ok()?).ok()?;
    sig.to_der().ok()
}

/// All text inside an element (every text node, in order).
pub fn text_of(n: Node) -> String {
    n.descendants().filter(|d| d.is_text()).filter_map(|d| d.text()).collect()
}

/// The element's qualified name as written in the source: up to XML whitespace, `/` or
/// `>` (never another Unicode space: U+1680 is both Unicode whitespace and an XML name
/// character).
fn qname<'i>(src: &'i str, n: Node) -> &'i str {
    let s = src.get(n.range().start + 1..).unwrap_or_default();
    let end = s.find(|c: char| is_xml_space(c) || c == '/' || c == '>').unwrap_or(s.len());
    &s[..end]
}

/// Whether a name as written (`prefix:local` or `local`) is the name the parser reports:
/// the same local part, and the prefix bound to the same namespace. Anything else means
/// the text canonicalized and the tree read disagree, and the signature is refused.
fn reads_alike(written: &str, local: &str, namespace: Option<&str>, resolve: impl Fn(&str) -> Option<String>) -> bool {
    let (prefix, written_local) = match written.split_once(':') {
        Some((p, l)) => (Some(p), l),
        None => (None, written),
    };
    if written_local != local {
        return false;
    }
    match prefix {
        Some("xml") => namespace == Some("http://www.w3.org/XML/1998/namespace"),
        Some(p) => !p.is_empty() && resolve(p).as_deref() == namespace && namespace.is_some(),
        None => true,
    }
}

fn prefix_of(qname: &str) -> &str {
    qname.split_once(':').map(|(p, _)| p).unwrap_or("")
}

/// Exclusive XML canonicalization (xml-exc-c14n, without comments) of the subtree at
/// `apex`, leaving out the element `exclude` (the enveloped signature). `inclusive` is the
/// `InclusiveNamespaces` prefix list ("" for the default namespace).
pub fn canonicalize(src: &str, apex: Node, exclude: Option<NodeId>, inclusive: &[String]) -> Result<String, DsigError> {
    let mut out = String::with_capacity(apex.range().len());
    let mut rendered: Vec<(String, String)> = Vec::new();
    element(src, apex, exclude, inclusive, &mut rendered, &mut out, 0)?;
    Ok(out)
}

fn element(
    src: &str,
    n: Node,
    exclude: Option<NodeId>,
    inclusive: &[String],
    rendered: &mut Vec<(String, String)>,
    out: &mut String,
    depth: usize,
) -> Result<(), DsigError> {
    if depth > MAX_DEPTH {
        return Err(DsigError::TooDeep);
    }
    let name = qname(src, n);
    let resolve = |p: &str| n.lookup_namespace_uri(Some(p)).map(str::to_string);
    if !reads_alike(name, n.tag_name().name(), n.tag_name().namespace(), resolve) || (!name.contains(':') && n.tag_name().namespace() != n.default_namespace())
    {
        return Err(DsigError::Name);
    }
    for a in n.attributes() {
        let q = src.get(a.range_qname()).unwrap_or_default();
        if !reads_alike(q, a.name(), a.namespace(), resolve) || (!q.contains(':') && a.namespace().is_some()) {
            return Err(DsigError::Name);
        }
    }
    // Prefixes this element visibly uses, then the inclusive ones in scope.
    let mut used: Vec<&str> = vec![prefix_of(name)];
    for a in n.attributes() {
        let q = src.get(a.range_qname()).unwrap_or_default();
        let p = prefix_of(q);
        if !p.is_empty() && p != "xml" {
            used.push(p);
        }
    }
    used.extend(inclusive.iter().map(String::as_str));
    used.sort_unstable();
    used.dedup();
    let mark = rendered.len();
    let mut decls = String::new();
    for p in used {
        let uri = if p.is_empty() {
            n.default_namespace().unwrap_or("")
        } else {
            match n.lookup_namespace_uri(Some(p)) {
                Some(u) => u,
                None => continue, // an inclusive prefix not in scope here
            }
        };
        let current = rendered.iter().rev().find(|(rp, _)| rp == p).map(|(_, u)| u.as_str()).unwrap_or("");
        if current == uri {
            continue;
        }
        if p.is_empty() {
            decls.push_str(" xmlns=\"");
        } else {
            decls.push_str(" xmlns:");
            decls.push_str(p);
            decls.push_str("=\"");
        }
        escape_attr(uri, &mut decls);
        decls.push('"');
        rendered.push((p.to_string(), uri.to_string()));
    }
    let mut attrs: Vec<_> = n.attributes().collect();
    attrs.sort_by(|a, b| (a.namespace().unwrap_or(""), a.name()).cmp(&(b.namespace().unwrap_or(""), b.name())));
    out.push('<');
    out.push_str(name);
    out.push_str(&decls);
    for a in attrs {
        out.push(' ');
        out.push_str(src.get(a.range_qname()).unwrap_or_default());
        out.push_str("=\"");
        escape_attr(a.value(), out);
        out.push('"');
    }
    out.push('>');
    for c in n.children() {
        if c.is_element() {
            if Some(c.id()) != exclude {
                element(src, c, exclude, inclusive, rendered, out, depth + 1)?;
            }
        } else if c.is_text() {
            escape_text(c.text().unwrap_or_default(), out);
        } else if c.is_comment() || c.is_pi() {
            return Err(DsigError::Comment);
        }
    }
    out.push_str("</");
    out.push_str(name);
    out.push('>');
    rendered.truncate(mark);
    Ok(())
}

fn escape_text(s: &str, out: &mut String) {
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\r' => out.push_str("&#xD;"),
            c => out.push(c),
        }
    }
}

fn escape_attr(s: &str, out: &mut String) {
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '"' => out.push_str("&quot;"),
            '\t' => out.push_str("&#x9;"),
            '\n' => out.push_str("&#xA;"),
            '\r' => out.push_str("&#xD;"),
            c => out.push(c),
        }
    }
}

/// Signs a whole document (its root element must carry `ID`) with an enveloped
/// signature placed right after the root's first child element when `after_first` (the
/// `Issuer`, where SAML's schema wants it), else first. RSA-SHA256 or ECDSA-SHA256 by key type.
pub fn sign_root(xml: &str, key: &PKey<Private>, cert_pem: Option<&str>, after_first: bool) -> Result<String, DsigError> {
    let bad = |_| DsigError::Malformed("could not sign");
    let doc = roxmltree::Document::parse(xml).map_err(|_| DsigError::Malformed("the document to sign is not XML"))?;
    let root = doc.root_element();
    let id = root.attribute("ID").ok_or(DsigError::Malformed("the root has no ID"))?;
    let content = canonicalize(xml, root, None, &[])?;
    let digest = hash(MessageDigest::sha256(), content.as_bytes()).map_err(bad)?;
    let ec = key.id() == Id::EC;
    // ECDSA with the hash of the curve's strength (the pairing `signature_of` requires).
    let curve = key.ec_key().ok().and_then(|k| k.group().curve_name());
    let (method, md) = match curve {
        _ if !ec => ("rsa-sha256", MessageDigest::sha256()),
        Some(Nid::SECP384R1) => ("ecdsa-sha384", MessageDigest::sha384()),
        Some(Nid::SECP521R1) => ("ecdsa-sha512", MessageDigest::sha512()),
        _ => ("ecdsa-sha256", MessageDigest::sha256()),
    };
    let signed_info = format!(
        "<ds:SignedInfo xmlns:ds=\"{DS}\"><ds:CanonicalizationMethod Algorithm=\"{EXC_C14N}\"></ds:CanonicalizationMethod>\
<ds:SignatureMethod Algorithm=\"http://www.w3.org/2001/04/xmldsig-more#{method}\"></ds:SignatureMethod>\
<ds:Reference URI=\"#{id}\"><ds:Transforms><ds:Transform Algorithm=\"{ENVELOPED}\"></ds:Transform><ds:Transform Algorithm=\"{EXC_C14N}\"></ds:Transform></ds:Transforms>\
<ds:DigestMethod Algorithm=\"{SHA256}\"></ds:DigestMethod><ds:DigestValue>{}</ds:DigestValue></ds:Reference></ds:SignedInfo>",
        B64.encode(digest)
    );
    // Already canonical: parse it only to be sure.
    let info_doc = roxmltree::Document::parse(&signed_info).map_err(|_| DsigError::Malformed("could not sign"))?;
    let info = canonicalize(&signed_info, info_doc.root_element(), None, &[])?;
    let mut signer = Signer::new(md, key).map_err(bad)?;
    let mut sig = signer.sign_oneshot_to_vec(info.as_bytes()).map_err(bad)?;
    if ec {
        let parsed = EcdsaSig::from_der(&sig).map_err(bad)?;
        let width = (key.bits() as i32 + 7) / 8;
        let mut raw = parsed.r().to_vec_padded(width).map_err(bad)?;
        raw.extend(parsed.s().to_vec_padded(width).map_err(bad)?);
        sig = raw;
    }
    let key_info = cert_pem
        .map(|pem| {
            let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
            format!("<ds:KeyInfo><ds:X509Data><ds:X509Certificate>{body}</ds:X509Certificate></ds:X509Data></ds:KeyInfo>")
        })
        .unwrap_or_default();
    let inner = signed_info.replacen(&format!(" xmlns:ds=\"{DS}\""), "", 1);
    let signature = format!("<ds:Signature xmlns:ds=\"{DS}\">{inner}<ds:SignatureValue>{}</ds:SignatureValue>{key_info}</ds:Signature>", B64.encode(sig));
    let at = match root.children().find(|c| c.is_element()) {
        Some(first) if after_first => first.range().end,
        _ => {
            // Just after the root's start tag.
            let start = root.range().start;
            start + xml[start..].find('>').ok_or(DsigError::Malformed("could not sign"))? + 1
        }
    };
    Ok(format!("{}{signature}{}", &xml[..at], &xml[at..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c14n(xml: &str) -> String {
        let doc = roxmltree::Document::parse(xml).unwrap();
        canonicalize(xml, doc.root_element(), None, &[]).unwrap()
    }

    #[test]
    fn canonical_form_follows_exclusive_c14n() {
        // Unused namespaces dropped, used ones declared where first used, attributes sorted
        // by namespace URI then name, empty elements expanded, escapes normalized.
        let xml = "<a:r xmlns:a=\"urn:a\" xmlns:b=\"urn:b\" xmlns:z=\"urn:unused\" z2=\"2\" b:x=\"1\" a1='q\"&amp;&#9;'>\
<b:c/><d xmlns=\"urn:d\">t &gt; &lt; &amp; <e xmlns=\"\"/></d><![CDATA[<&>]]></a:r>";
        assert_eq!(
            c14n(xml),
            "<a:r xmlns:a=\"urn:a\" xmlns:b=\"urn:b\" a1=\"q&quot;&amp;&#x9;\" z2=\"2\" b:x=\"1\"><b:c></b:c><d xmlns=\"urn:d\">t &gt; &lt; &amp; <e xmlns=\"\"></e></d>&lt;&amp;&gt;</a:r>"
        );
        // A subtree renders the namespaces it uses that were declared above it.
        let doc = roxmltree::Document::parse(xml).unwrap();
        let c = doc.descendants().find(|n| n.tag_name().name() == "c").unwrap();
        assert_eq!(canonicalize(xml, c, None, &[]).unwrap(), "<b:c xmlns:b=\"urn:b\"></b:c>");
        // An inclusive prefix is rendered even when unused.
        assert_eq!(canonicalize(xml, c, None, &["z".into()]).unwrap(), "<b:c xmlns:b=\"urn:b\" xmlns:z=\"urn:unused\"></b:c>");
        assert_eq!(c14n("<r>\r\n<x a=\"&#13;\"/></r>"), "<r>\n<x a=\"&#xD;\"></x></r>");
    }

    /// Names end at XML whitespace only: U+1680 (OGHAM SPACE MARK) is Unicode whitespace
    /// and an XML name character, so a name with it inside is one name, canonicalized
    /// whole (it was `<p:Local>`, a name the reader never saw, so the renamed element kept
    /// the digest of the signed one). Nor may a Unicode space split a PrefixList or a
    /// base64 value. A name the canonical form and the parser read differently is refused.
    #[test]
    fn unicode_spaces_never_end_a_name() {
        let mut parsed = 0;
        for sp in ['\u{1680}', '\u{00A0}', '\u{2000}', '\u{200A}', '\u{3000}', '\u{FEFF}', '\u{0085}', '\u{180E}', '\u{200B}', '\u{2028}', '\u{0301}'] {
            let docs = [
                (format!("<p:Local{sp}X xmlns:p=\"urn:p\">v</p:Local{sp}X>"), format!("<p:Local{sp}X xmlns:p=\"urn:p\">v</p:Local{sp}X>")),
                (format!("<r><b{sp}:c xmlns:b{sp}=\"urn:z\"/><b/></r>"), format!("<r><b{sp}:c xmlns:b{sp}=\"urn:z\"></b{sp}:c><b></b></r>")),
                (format!("<r a{sp}x=\"1\"/>"), format!("<r a{sp}x=\"1\"></r>")),
                (format!("<r xmlns:p=\"urn:p\" p:a{sp}x=\"1\"/>"), format!("<r xmlns:p=\"urn:p\" p:a{sp}x=\"1\"></r>")),
            ];
            for (xml, want) in docs {
                // Either the parser refuses the name (not an XML name character), or the
                // whole name is canonicalized.
                let Ok(doc) = roxmltree::Document::parse(&xml) else { continue };
                parsed += 1;
                assert_eq!(canonicalize(&xml, doc.root_element(), None, &[]).as_deref(), Ok(want.as_str()), "U+{:04X}", sp as u32);
            }
        }
        assert!(parsed >= 8, "U+1680 and the combining mark are name characters: {parsed}");
        assert_eq!(qname("<a\u{1680}b c='1'/>", roxmltree::Document::parse("<a\u{1680}b c='1'/>").unwrap().root_element()), "a\u{1680}b");
        assert!(reads_alike("p:a", "a", Some("urn:p"), |_| Some("urn:p".into())));
        assert!(!reads_alike("p:a", "a", Some("urn:q"), |_| Some("urn:p".into())));
        assert!(!reads_alike("p:ab", "a", Some("urn:p"), |_| Some("urn:p".into())));
        assert!(!reads_alike(":a", "a", None, |_| None));
        assert!(reads_alike("xml:lang", "lang", Some("http://www.w3.org/XML/1998/namespace"), |_| None));
        // Plain names and the usual SAML shapes still read alike.
        assert_eq!(c14n("<r xmlns=\"urn:d\" xml:lang=\"en\"><x a=\"1\"/></r>"), "<r xmlns=\"urn:d\" xml:lang=\"en\"><x a=\"1\"></x></r>");
        // A PrefixList splits at XML whitespace only.
        let xml = "<m><ec:InclusiveNamespaces xmlns:ec=\"http://www.w3.org/2001/10/xml-exc-c14n#\" PrefixList=\"a\u{1680}b  c\td\"/></m>";
        let doc = roxmltree::Document::parse(xml).unwrap();
        assert_eq!(prefix_list(doc.root_element()).unwrap(), vec!["a\u{1680}b", "c", "d"]);
        assert!(compact_b64("QU\u{00A0}JD").is_err());
        assert_eq!(compact_b64("QU\r\n JD\t").unwrap(), b"ABC");
        assert_eq!(xml_trim("\u{A0}victim\u{A0} \n"), "\u{A0}victim\u{A0}");
    }

    fn ec(nid: openssl::nid::Nid) -> PKey<Private> {
        PKey::from_ec_key(openssl::ec::EcKey::generate(&openssl::ec::EcGroup::from_curve_name(nid).unwrap()).unwrap()).unwrap()
    }

    /// Each ECDSA method is bound to its curve, and its value is exactly twice the curve's
    /// size: a P-384 key does not verify ecdsa-sha256, and a value of 62 or 66 bytes is
    /// refused even where OpenSSL would take the numbers.
    #[test]
    fn ecdsa_values_fit_the_curve_of_the_method() {
        use openssl::nid::Nid;
        let (p256, p384, p521) = (ec(Nid::X9_62_PRIME256V1), ec(Nid::SECP384R1), ec(Nid::SECP521R1));
        let fits = |k: &PKey<Private>, c: Option<Nid>, n: usize| key_fits(&public(k), c, n);
        assert!(fits(&p256, Some(Nid::X9_62_PRIME256V1), 64));
        assert!(fits(&p384, Some(Nid::SECP384R1), 96));
        assert!(fits(&p521, Some(Nid::SECP521R1), 132));
        for n in [0, 62, 63, 65, 66, 96, 128] {
            assert!(!fits(&p256, Some(Nid::X9_62_PRIME256V1), n), "{n}");
        }
        assert!(!fits(&p384, Some(Nid::X9_62_PRIME256V1), 96));
        assert!(!fits(&p384, Some(Nid::X9_62_PRIME256V1), 64));
        assert!(!fits(&p256, None, 64), "an EC key never verifies an RSA method");
        assert!(!fits(&rsa(), Some(Nid::X9_62_PRIME256V1), 64));
        assert!(fits(&rsa(), None, 256));

        // End to end: a P-384 signature relabelled ecdsa-sha256 is refused, and so is a
        // valid P-256 value with a leading zero byte added to r and s (66 bytes) or removed.
        for key in [&p384, &p521] {
            let signed = sign_root(REQ, key, None, true).unwrap();
            let doc = roxmltree::Document::parse(&signed).unwrap();
            assert_eq!(verify_element(doc.root_element(), &[public(key)]), Ok(true), "{signed}");
        }
        let p384_as_es256 = {
            let signed = sign_root(REQ, &p384, None, true).unwrap();
            signed.replace("xmldsig-more#ecdsa-sha384", "xmldsig-more#ecdsa-sha256")
        };
        let doc = roxmltree::Document::parse(&p384_as_es256).unwrap();
        assert_eq!(verify_element(doc.root_element(), &[public(&p384)]), Err(DsigError::Signature));
        let signed = sign_root(REQ, &p256, None, true).unwrap();
        let doc = roxmltree::Document::parse(&signed).unwrap();
        assert_eq!(verify_element(doc.root_element(), &[public(&p256)]), Ok(true));
        let value = text_of(doc.descendants().find(|n| is_ds(n, "SignatureValue")).unwrap());
        let raw = B64.decode(&value).unwrap();
        let (r, s) = raw.split_at(32);
        let padded = B64.encode([&[0u8][..], r, &[0u8][..], s].concat());
        let bent = signed.replace(&value, &padded);
        let doc = roxmltree::Document::parse(&bent).unwrap();
        assert_eq!(verify_element(doc.root_element(), &[public(&p256)]), Err(DsigError::Signature));
    }

    #[test]
    fn deep_nesting_is_refused_not_recursed() {
        let xml = format!("{}{}", "<a>".repeat(200), "</a>".repeat(200));
        let doc = roxmltree::Document::parse(&xml).unwrap();
        assert_eq!(canonicalize(&xml, doc.root_element(), None, &[]), Err(DsigError::TooDeep));
    }

    #[test]
    fn comments_are_refused() {
        let xml = "<r><n>a<!---->b</n></r>";
        let doc = roxmltree::Document::parse(xml).unwrap();
        assert_eq!(canonicalize(xml, doc.root_element(), None, &[]), Err(DsigError::Comment));
    }

    fn rsa() -> PKey<Private> {
        PKey::from_rsa(openssl::rsa::Rsa::generate(2048).unwrap()).unwrap()
    }

    fn public(k: &PKey<Private>) -> PKey<Public> {
        PKey::public_key_from_pem(&k.public_key_to_pem().unwrap()).unwrap()
    }

    const REQ: &str = "<p:R xmlns:p=\"urn:p\" xmlns:s=\"urn:s\" ID=\"_1\"><s:Issuer>me</s:Issuer><p:X a=\"1\">v</p:X></p:R>";

    #[test]
    fn sign_then_verify_round_trips_and_tampering_fails() {
        let ec = PKey::from_ec_key(openssl::ec::EcKey::generate(&openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1).unwrap()).unwrap())
            .unwrap();
        for key in [rsa(), ec] {
            let signed = sign_root(REQ, &key, None, true).unwrap();
            let doc = roxmltree::Document::parse(&signed).unwrap();
            assert_eq!(verify_element(doc.root_element(), &[public(&key)]), Ok(true), "{signed}");
            // Another key does not verify it.
            assert_eq!(verify_element(doc.root_element(), &[public(&rsa())]), Err(DsigError::Signature));
            let tampered = signed.replace(">v<", ">w<");
            let doc = roxmltree::Document::parse(&tampered).unwrap();
            assert_eq!(verify_element(doc.root_element(), &[public(&key)]), Err(DsigError::Digest));
        }
        let doc = roxmltree::Document::parse(REQ).unwrap();
        assert_eq!(verify_element(doc.root_element(), &[]), Ok(false));
    }

    #[test]
    fn a_signature_must_sign_its_own_parent() {
        let key = rsa();
        let signed = sign_root(REQ, &key, None, true).unwrap();
        // Point the reference elsewhere: refused before any crypto.
        let moved = signed.replace("URI=\"#_1\"", "URI=\"#_2\"").replace("<p:X a=\"1\">", "<p:X a=\"1\" ID=\"_2\">");
        let doc = roxmltree::Document::parse(&moved).unwrap();
        assert_eq!(verify_element(doc.root_element(), &[public(&key)]), Err(DsigError::Detached));
    }
}
