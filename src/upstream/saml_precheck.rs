//! The SAML response pre-check: runs on every POST to the ACS before any signature work,
//! so that nothing an attacker sends can reach the network or the XML-DSig library's
//! dangerous corners. It refuses: input that is not base64 or not UTF-8 XML; any DTD
//! (XXE, billion laughs); a root other than `samlp:Response`; duplicate `ID`s (the basis
//! of signature wrapping); comments and processing instructions inside the response
//! (a comment in a NameID splits its text, the classic truncation trick); `ds:Reference` URIs other than `""` or `#id` of an element in
//! the document (a remote URI makes libxmlsec fetch it); transforms other than
//! enveloped-signature and exclusive c14n (XSLT runs code); signature and digest
//! algorithms outside the allow-list. RSA-SHA1 and SHA-1 digests pass here (they are not
//! dangerous to process, only weak): the connection is not known yet, and the signature
//! check refuses them unless that connection opted in (`allow_sha1`).

use std::collections::HashSet;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

const PROTOCOL: &str = "urn:oasis:names:tc:SAML:2.0:protocol";
const DS: &str = "http://www.w3.org/2000/09/xmldsig#";
/// Largest decoded response accepted.
pub const MAX_XML: usize = 256 * 1024;
/// Deepest element nesting accepted (real responses nest about ten deep).
pub const MAX_DEPTH: usize = 64;

const TRANSFORMS: &[&str] = &[
    "http://www.w3.org/2000/09/xmldsig#enveloped-signature",
    "http://www.w3.org/2001/10/xml-exc-c14n#",
    "http://www.w3.org/2001/10/xml-exc-c14n#WithComments",
];
const C14N: &[&str] = &["http://www.w3.org/2001/10/xml-exc-c14n#", "http://www.w3.org/2001/10/xml-exc-c14n#WithComments"];
const SIGNATURE_ALGS: &[&str] = &[
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384",
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512",
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256",
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384",
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha512",
    // Refused by the signature check unless the connection allows SHA-1.
    "http://www.w3.org/2000/09/xmldsig#rsa-sha1",
];
const DIGEST_ALGS: &[&str] = &[
    "http://www.w3.org/2001/04/xmlenc#sha256",
    "http://www.w3.org/2001/04/xmldsig-more#sha384",
    "http://www.w3.org/2001/04/xmlenc#sha512",
    // Refused by the signature check unless the connection allows SHA-1.
    "http://www.w3.org/2000/09/xmldsig#sha1",
];

/// Why a response was refused before verification. Each is a 400 for the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// Not base64.
    #[error("the SAML response is not base64")]
    Base64,
    /// Too large once decoded.
    #[error("the SAML response is larger than {MAX_XML} bytes")]
    TooLarge,
    /// Not UTF-8 or not well-formed XML.
    #[error("the SAML response is not well-formed XML")]
    Xml,
    /// A DOCTYPE (entities, external references) is present.
    #[error("the SAML response contains a DOCTYPE, which is never allowed")]
    Doctype,
    /// The root is not a SAML protocol Response.
    #[error("the message is not a SAML Response")]
    NotResponse,
    /// Shaped like no real response (nesting, element, attribute or namespace counts).
    #[error("the SAML response {0}")]
    Shape(String),
    /// A comment or processing instruction inside the response (text could hide in it).
    #[error("the SAML response contains comments or processing instructions, which are never allowed")]
    Comment,
    /// Two elements share an ID.
    #[error("the SAML response has duplicate IDs")]
    DuplicateId,
    /// A signature references something other than this document's elements.
    #[error("a signature references {}, which is not an element of this response", shown(.0))]
    Reference(String),
    /// A transform or canonicalization outside the allow-list.
    #[error("a signature uses the transform {}, which is not allowed", shown(.0))]
    Transform(String),
    /// A signature or digest algorithm outside the allow-list (SHA-1 among them).
    #[error("a signature uses the algorithm {}, which is not allowed", shown(.0))]
    Algorithm(String),
}

/// Decodes the form value and checks the XML; returns the XML text on success.
pub fn check(saml_response: &str) -> Result<String, Refused> {
    let compact: String = saml_response.chars().filter(|c| !c.is_whitespace()).collect();
    if compact.len() > MAX_XML * 4 / 3 + 4 {
        return Err(Refused::TooLarge);
    }
    let bytes = B64.decode(compact).map_err(|_| Refused::Base64)?;
    if bytes.len() > MAX_XML {
        return Err(Refused::TooLarge);
    }
    let xml = String::from_utf8(bytes).map_err(|_| Refused::Xml)?;
    check_xml(&xml)?;
    Ok(xml)
}

/// Limits on the raw shape of untrusted XML, checked before any parse: XML parsers
/// (roxmltree among them) recurse once per nesting level, copy every namespace in scope
/// into each element, and look for duplicate attributes pairwise, so a few hundred
/// kilobytes of the wrong shape cost a stack overflow or minutes of CPU.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Deepest element nesting.
    pub depth: usize,
    /// Elements in all.
    pub elements: usize,
    /// Attributes (namespace declarations included) on one element.
    pub attributes: usize,
    /// Namespace declarations in scope at any element.
    pub namespaces: usize,
    /// CDATA sections in all: roxmltree rebuilds the text before each one it joins to a
    /// text node, so text and CDATA in turn cost quadratic copying. Real responses have
    /// none or a few.
    pub cdata: usize,
}

/// Limits for SAML responses: real ones nest about ten deep, have a few hundred elements,
/// a handful of attributes per element and of namespaces.
pub const RESPONSE_LIMITS: Limits = Limits { depth: MAX_DEPTH, elements: 20_000, attributes: 64, namespaces: 32, cdata: 16 };

/// Which limit the raw text broke, as a sentence.
pub fn shape_within(xml: &str, limits: &Limits) -> Result<(), String> {
    shape_counted(xml, limits).0
}

/// [`shape_within`], and how many steps the scan took: every byte is looked at a bounded
/// number of times (at most twice: once by the scan, once by `skip_to`'s window), so the
/// work is linear in the input, whatever its shape. The tests hold it to that.
fn shape_counted(xml: &str, limits: &Limits) -> (Result<(), String>, usize) {
    let b = xml.as_bytes();
    let mut steps = 0usize;
    let (mut i, mut elements, mut cdata) = (0usize, 0usize, 0usize);
    // Namespace declarations per open element; their sum is what is in scope.
    let mut open: Vec<usize> = Vec::new();
    let mut in_scope = 0usize;
    macro_rules! skip_to {
        ($from:expr, $end:expr) => {{
            let (from, end): (usize, &[u8]) = ($from, $end);
            let found = b.get(from..).and_then(|r| r.windows(end.len()).position(|w| w == end));
            steps += found.map_or(b.len().saturating_sub(from), |p| p + end.len());
            found.map(|p| from + p + end.len()).unwrap_or(b.len())
        }};
    }
    while i < b.len() {
        steps += 1;
        if b[i] != b'<' {
            i += 1;
            continue;
        }
        let rest = &b[i..];
        if rest.starts_with(b"<!--") {
            i = skip_to!(i + 4, b"-->");
        } else if rest.starts_with(b"<![CDATA[") {
            cdata += 1;
            if cdata > limits.cdata {
                return (Err(format!("has more than {} CDATA sections", limits.cdata)), steps);
            }
            i = skip_to!(i + 9, b"]]>");
        } else if rest.starts_with(b"<?") {
            i = skip_to!(i + 2, b"?>");
        } else if rest.starts_with(b"<!") {
            i = skip_to!(i + 2, b">");
        } else if rest.starts_with(b"</") {
            in_scope -= open.pop().unwrap_or(0);
            i = skip_to!(i + 2, b">");
        } else {
            // A start tag: to its '>', outside quoted values; "/>" closes it at once. The
            // name before each '=' is the last run of non-space bytes, tracked while moving
            // forward (never by looking back), and each limit is checked as soon as it is
            // passed, not when the tag ends.
            let (mut j, mut quote, mut attributes, mut declared) = (i + 1, 0u8, 0usize, 0usize);
            // The last name-like run outside quotes: [run_start, run_end).
            let (mut run_start, mut run_end, mut in_run) = (j, j, false);
            elements += 1;
            if elements > limits.elements {
                return (Err(format!("has more than {} elements", limits.elements)), steps);
            }
            while j < b.len() {
                steps += 1;
                let c = b[j];
                match (quote, c) {
                    (0, q @ (b'"' | b'\'')) => {
                        quote = q;
                        in_run = false;
                    }
                    (0, b'>') => break,
                    (0, b'=') => {
                        in_run = false;
                        attributes += 1;
                        if attributes > limits.attributes {
                            return (Err(format!("has an element with more than {} attributes", limits.attributes)), steps);
                        }
                        // Is the name before '=' a namespace declaration?
                        let name = &b[run_start..run_end];
                        // `p:xmlns` is an attribute to XML Namespaces (and libxml2), but
                        // roxmltree takes it for a default namespace declaration: a name
                        // two readers see differently is never allowed.
                        if name.ends_with(b":xmlns") {
                            return (Err("has an attribute named prefix:xmlns, which XML readers disagree on".into()), steps);
                        }
                        if name == b"xmlns" || name.starts_with(b"xmlns:") {
                            declared += 1;
                            if in_scope + declared > limits.namespaces {
                                return (Err(format!("has more than {} namespace declarations in scope", limits.namespaces)), steps);
                            }
                        }
                        // A second '=' without a new name names nothing.
                        run_start = j + 1;
                        run_end = j + 1;
                    }
                    (0, c) if c.is_ascii_whitespace() => in_run = false,
                    (0, _) => {
                        if !in_run {
                            run_start = j;
                            in_run = true;
                        }
                        run_end = j + 1;
                    }
                    (q, c) if c == q => quote = 0,
                    _ => {}
                }
                j += 1;
            }
            if j < b.len() && b[j - 1] != b'/' {
                open.push(declared);
                in_scope += declared;
                if open.len() > limits.depth {
                    return (Err(format!("nests elements more than {} deep", limits.depth)), steps);
                }
            }
            i = j + 1;
        }
    }
    (Ok(()), steps)
}

/// A value from the message, fit to show on a page: short URI-like text as it is, anything
/// else (sentences an attacker could write for the victim to read) left out.
pub fn shown(v: &str) -> String {
    let plain = v.len() <= 100 && v.chars().all(|c| c.is_ascii_alphanumeric() || ":/#._-?=&%~+@".contains(c));
    if plain {
        format!("{v:?}")
    } else {
        "(a value not shown)".into()
    }
}

/// Checks decoded XML (see the module text).
pub fn check_xml(xml: &str) -> Result<(), Refused> {
    shape_within(xml, &RESPONSE_LIMITS).map_err(Refused::Shape)?;
    let opts = roxmltree::ParsingOptions { allow_dtd: false, nodes_limit: 50_000 };
    let doc = roxmltree::Document::parse_with_options(xml, opts).map_err(|e| match e {
        roxmltree::Error::DtdDetected => Refused::Doctype,
        _ => Refused::Xml,
    })?;
    let root = doc.root_element();
    if root.tag_name().name() != "Response" || root.tag_name().namespace() != Some(PROTOCOL) {
        return Err(Refused::NotResponse);
    }
    if root.descendants().any(|n| n.is_comment() || n.is_pi()) {
        return Err(Refused::Comment);
    }
    let mut ids = HashSet::new();
    for n in doc.descendants().filter(|n| n.is_element()) {
        if let Some(id) = n.attribute("ID") {
            if !ids.insert(id) {
                return Err(Refused::DuplicateId);
            }
        }
    }
    let ds = |n: &roxmltree::Node, name: &str| n.is_element() && n.tag_name().name() == name && n.tag_name().namespace() == Some(DS);
    for n in doc.descendants() {
        let alg = || n.attribute("Algorithm").unwrap_or_default().to_string();
        if ds(&n, "Reference") {
            let uri = n.attribute("URI").unwrap_or_default();
            let local = uri.is_empty() || uri.strip_prefix('#').is_some_and(|id| ids.contains(id));
            if !local {
                return Err(Refused::Reference(uri.to_string()));
            }
        } else if ds(&n, "Transform") {
            if !TRANSFORMS.contains(&alg().as_str()) {
                return Err(Refused::Transform(alg()));
            }
        } else if ds(&n, "CanonicalizationMethod") {
            if !C14N.contains(&alg().as_str()) {
                return Err(Refused::Transform(alg()));
            }
        } else if ds(&n, "SignatureMethod") {
            if !SIGNATURE_ALGS.contains(&alg().as_str()) {
                return Err(Refused::Algorithm(alg()));
            }
        } else if ds(&n, "DigestMethod") && !DIGEST_ALGS.contains(&alg().as_str()) {
            return Err(Refused::Algorithm(alg()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(sig: &str) -> String {
        format!(
            r#"<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" ID="_r1"><saml:Assertion ID="_a1">{sig}</saml:Assertion></samlp:Response>"#
        )
    }

    fn signature(uri: &str, transform: &str, method: &str, digest: &str) -> String {
        format!(
            r#"<ds:Signature><ds:SignedInfo><ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/><ds:SignatureMethod Algorithm="{method}"/><ds:Reference URI="{uri}"><ds:Transforms><ds:Transform Algorithm="{transform}"/></ds:Transforms><ds:DigestMethod Algorithm="{digest}"/><ds:DigestValue>x</ds:DigestValue></ds:Reference></ds:SignedInfo><ds:SignatureValue>x</ds:SignatureValue></ds:Signature>"#
        )
    }

    const ENV: &str = "http://www.w3.org/2000/09/xmldsig#enveloped-signature";
    const RSA256: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256";
    const SHA256: &str = "http://www.w3.org/2001/04/xmlenc#sha256";

    #[test]
    fn shape_is_measured_on_the_raw_text() {
        let l = |depth, namespaces| Limits { depth, elements: 100, attributes: 3, namespaces, cdata: 2 };
        assert_eq!(shape_within("<a><b/><c x='>' y=\"/>\"><!-- <d><d><d> --><![CDATA[<e><e>]]><?p <f>?></c></a>", &l(2, 0)), Ok(()));
        assert!(shape_within("<a><b><c></c></b></a>", &l(2, 0)).unwrap_err().contains("deep"));
        assert_eq!(shape_within("<a></a><a></a><a></a>", &l(1, 0)), Ok(()));
        assert!(["", "<a", "<a x='", "</", "<!", "<!--"].iter().all(|x| shape_within(x, &l(1, 0)).is_ok()));
        // Namespaces in scope add up down the tree and drop when elements close.
        assert_eq!(shape_within("<a xmlns='u'><b xmlns:p = 'u'/><c xmlns:q='u'></c></a>", &l(5, 2)), Ok(()));
        assert!(shape_within("<a xmlns='u'><b xmlns:p='u'><c xmlns:q='u'/></b></a>", &l(5, 2)).unwrap_err().contains("namespace"));
        assert!(shape_within("<a x='1' y='2' z='3' w='4'/>", &l(5, 2)).unwrap_err().contains("attributes"));
        // Quoted '=' and '>' are values, not attributes or ends.
        assert_eq!(shape_within("<a x='a=b>c' y=\"=\"/>", &l(5, 0)), Ok(()));
    }

    /// The scan looks at each byte a bounded number of times, whatever the shape: the
    /// shapes that made the old backwards scan quadratic (every '=' looking back to the
    /// previous space, in a tag with none), at the size limit, each within 3 steps a byte.
    #[test]
    fn the_scan_is_linear_in_the_worst_shapes() {
        let fill = |head: &str, unit: &str| {
            let mut s = head.to_string();
            while s.len() + unit.len() <= MAX_XML {
                s.push_str(unit);
            }
            s
        };
        let shapes = [
            fill("<a", "="),
            fill("<a x", "x") + "==",
            fill("<a", "x=''"),
            fill("<a", "xmlns:p=''"),
            fill("<a x='", "="),
            fill("", "<a"),
            fill("", "</"),
            fill("", "<!--"),
            fill("", "<![CDATA["),
            fill("", "<?"),
            fill("", "<!"),
            fill("<r>", "<a/>"),
            fill("<r>", "<a x='1' y='2'>"),
            fill("<r>", "aaaaaaaa<![CDATA[]]>"),
        ];
        let loose = Limits { depth: usize::MAX, elements: usize::MAX, attributes: usize::MAX, namespaces: usize::MAX, cdata: usize::MAX };
        for xml in &shapes {
            for limits in [&RESPONSE_LIMITS, &loose] {
                let (_, steps) = shape_counted(xml, limits);
                assert!(steps <= 3 * xml.len() + 16, "{} bytes starting {:?}: {steps} steps", xml.len(), &xml[..20]);
            }
        }
        // Text and CDATA in turn: roxmltree's join of the two is quadratic; bounded here.
        let mut alternating = format!("<samlp:Response xmlns:samlp=\"{PROTOCOL}\">{}", "a".repeat(128 * 1024));
        alternating.push_str(&"<![CDATA[]]>".repeat(10_900));
        alternating.push_str("</samlp:Response>");
        assert!(check_xml(&alternating).unwrap_err().to_string().contains("CDATA sections"));
        assert!(check_xml(&format!("<samlp:Response xmlns:samlp=\"{PROTOCOL}\"><a><![CDATA[x]]></a></samlp:Response>")).is_ok());
        // `p:xmlns` reads as a declaration to roxmltree and as an attribute to libxml2.
        let bent = format!("<samlp:Response xmlns:samlp=\"{PROTOCOL}\"><a q:xmlns=\"urn:x\"/></samlp:Response>");
        assert!(check_xml(&bent).unwrap_err().to_string().contains("prefix:xmlns"));
        // Refused as soon as a limit is passed, not at the end of the tag.
        let (got, steps) = shape_counted(&shapes[0], &RESPONSE_LIMITS);
        assert!(got.unwrap_err().contains("attributes"));
        assert!(steps < 200, "{steps}");
    }

    #[test]
    fn values_from_a_message_are_shown_only_when_plain() {
        assert_eq!(shown("http://www.w3.org/2000/09/xmldsig#sha1"), "\"http://www.w3.org/2000/09/xmldsig#sha1\"");
        assert_eq!(shown("Your account is locked. Call +1-555-0100"), "(a value not shown)");
    }

    #[test]
    fn a_plain_signed_response_passes() {
        check_xml(&response(&signature("#_a1", ENV, RSA256, SHA256))).unwrap();
        // SHA-1 is the connection's decision (allow_sha1), made at the signature check.
        check_xml(&response(&signature("#_a1", ENV, "http://www.w3.org/2000/09/xmldsig#rsa-sha1", "http://www.w3.org/2000/09/xmldsig#sha1"))).unwrap();
        check_xml(&response(&signature("", ENV, RSA256, SHA256))).unwrap();
        let b64 = B64.encode(response(""));
        assert!(check(&b64).is_ok());
    }

    #[test]
    fn dangerous_shapes_are_refused_before_any_signature_work() {
        let cases = [
            (response(&signature("http://127.0.0.1:1/x", ENV, RSA256, SHA256)), "Reference"),
            (response(&signature("#_nowhere", ENV, RSA256, SHA256)), "Reference"),
            (response(&signature("#_a1", "http://www.w3.org/TR/1999/REC-xslt-19991116", RSA256, SHA256)), "Transform"),
            (response(&signature("#_a1", ENV, "http://www.w3.org/2000/09/xmldsig#dsa-sha1", SHA256)), "Algorithm"),
            (response(&signature("#_a1", ENV, "http://www.w3.org/2001/04/xmldsig-more#rsa-md5", SHA256)), "Algorithm"),
            (response(&signature("#_a1", ENV, RSA256, "http://www.w3.org/2001/04/xmldsig-more#md5")), "Algorithm"),
            (response("<saml:Assertion ID=\"_r1\"/>"), "DuplicateId"),
            (response("<saml:NameID>a@b.example<!---->.evil.example</saml:NameID>"), "Comment"),
            (response("<?pi x?>"), "Comment"),
            (response(&format!("{}{}", "<x>".repeat(70), "</x>".repeat(70))), "Shape"),
            (format!("{}{}", "<a>".repeat(60_000), "</a>".repeat(60_000)), "Shape"),
            (response(&"<b/>".repeat(20_001)), "Shape"),
            (response(&format!("<b {}/>", (0..65).map(|i| format!("a{i}=\"\"")).collect::<Vec<_>>().join(" "))), "Shape"),
            (response(&format!("<b {}><c xmlns:z=\"u\"/></b>", (0..31).map(|i| format!("xmlns:n{i}=\"u\"")).collect::<Vec<_>>().join(" "))), "Shape"),
            ("<?xml version=\"1.0\"?><!DOCTYPE r [<!ENTITY a \"aaaa\"><!ENTITY b \"&a;&a;&a;\">]><r>&b;</r>".to_string(), "Doctype"),
            ("<x/>".to_string(), "NotResponse"),
            ("<samlp:Response".to_string(), "Xml"),
        ];
        for (xml, want) in cases {
            let got = check_xml(&xml).unwrap_err();
            assert!(format!("{got:?}").starts_with(want), "{want}: got {got:?}");
        }
        assert_eq!(check("%%%not base64%%%"), Err(Refused::Base64));
        assert_eq!(check(&B64.encode([0xff, 0xfe])), Err(Refused::Xml));
    }
}
