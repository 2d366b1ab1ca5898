//! The SAML response pre-check: runs on every POST to the ACS before any signature work,
//! so that nothing an attacker sends can reach the network or the XML-DSig library's
//! dangerous corners. It refuses: input that is not base64 or not UTF-8 XML; any DTD
//! (XXE, billion laughs); a root other than `samlp:Response`; duplicate `ID`s (the basis
//! of signature wrapping); comments and processing instructions inside the response
//! (a comment in a NameID splits its text, the classic truncation trick); `ds:Reference` URIs other than `""` or `#id` of an element in
//! the document (a remote URI makes libxmlsec fetch it); transforms other than
//! enveloped-signature and exclusive c14n (XSLT runs code); SHA-1 signature and digest
//! algorithms; and, before the XML parser sees the text, shapes no IdP sends that make
//! the parser stall or overflow its stack (see [`parse`]).

use std::collections::HashSet;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

const PROTOCOL: &str = "urn:oasis:names:tc:SAML:2.0:protocol";
const DS: &str = "http://www.w3.org/2000/09/xmldsig#";
/// Largest decoded response accepted.
pub const MAX_XML: usize = 512 * 1024;
/// Deepest element nesting accepted (a SAML response nests about ten deep).
pub const MAX_DEPTH: usize = 64;
/// Most attributes on one element, namespace declarations included.
pub const MAX_ATTRIBUTES: usize = 32;
/// Most namespace declarations in scope at one element (declarations on it and on its
/// ancestors; a SAML response has under ten).
pub const MAX_NAMESPACES: usize = 32;
/// Most elements that declare namespaces (some IdPs declare two on every attribute
/// value); the parser copies the whole scope at each of them.
pub const MAX_DECLARING: usize = 4096;

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
];
const DIGEST_ALGS: &[&str] = &[
    "http://www.w3.org/2001/04/xmlenc#sha256",
    "http://www.w3.org/2001/04/xmldsig-more#sha384",
    "http://www.w3.org/2001/04/xmlenc#sha512",
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
    /// Nesting, attributes or namespace declarations beyond the limits above.
    #[error("the SAML response {0}, which is never allowed")]
    Shape(String),
    /// A DOCTYPE (entities, external references) is present.
    #[error("the SAML response contains a DOCTYPE, which is never allowed")]
    Doctype,
    /// The root is not a SAML protocol Response.
    #[error("the message is not a SAML Response")]
    NotResponse,
    /// A comment or processing instruction inside the response (text could hide in it).
    #[error("the SAML response contains comments or processing instructions, which are never allowed")]
    Comment,
    /// Two elements share an ID.
    #[error("the SAML response has duplicate IDs")]
    DuplicateId,
    /// A signature references something other than this document's elements.
    #[error("a signature references {0:?}, which is not an element of this response")]
    Reference(String),
    /// A transform or canonicalization outside the allow-list.
    #[error("a signature uses the transform {0:?}, which is not allowed")]
    Transform(String),
    /// A signature or digest algorithm outside the allow-list (SHA-1 among them).
    #[error("a signature uses the algorithm {0:?}, which is not allowed")]
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

/// Parses a response: [`shape`] first, then roxmltree without DTDs and with a node
/// limit. Every parse of a response goes through here.
pub fn parse(xml: &str) -> Result<roxmltree::Document<'_>, Refused> {
    shape(xml)?;
    let opts = roxmltree::ParsingOptions { allow_dtd: false, nodes_limit: 50_000 };
    roxmltree::Document::parse_with_options(xml, opts).map_err(|e| match e {
        roxmltree::Error::DtdDetected => Refused::Doctype,
        _ => Refused::Xml,
    })
}

/// A lexical pass over the text, before the parser sees it, that bounds what makes
/// roxmltree 0.20 dangerous on hostile input: its tokenizer recurses once per nesting
/// level (35 KB of `<a>` overflow a 2 MiB thread stack, which aborts the whole
/// gateway), and its checks for duplicate attributes and namespace declarations are
/// quadratic (one 500 KB POST kept a core busy for minutes; within these limits the
/// worst 500 KB document parses in tens of milliseconds). Exact on well-formed XML; on
/// malformed XML it may miscount, and the parser refuses that anyway.
fn shape(xml: &str) -> Result<(), Refused> {
    let b = xml.as_bytes();
    let after = |from: usize, pat: &[u8]| b.get(from..).and_then(|s| s.windows(pat.len()).position(|w| w == pat)).map(|p| from + p + pat.len());
    // Namespace declarations of each open element.
    let mut open: Vec<usize> = Vec::new();
    let (mut in_scope, mut declaring) = (0, 0);
    let mut i = 0;
    while let Some(p) = b[i..].iter().position(|&c| c == b'<') {
        i += p;
        let rest = &b[i..];
        let skip: Option<(usize, &[u8])> = if rest.starts_with(b"<!--") {
            Some((4, b"-->"))
        } else if rest.starts_with(b"<![CDATA[") {
            Some((9, b"]]>"))
        } else if rest.starts_with(b"<?") {
            Some((2, b"?>"))
        } else {
            None
        };
        if let Some((start, end)) = skip {
            i = after(i + start, end).ok_or(Refused::Xml)?;
            continue;
        }
        if rest.starts_with(b"<!") {
            return Err(Refused::Doctype);
        }
        if rest.starts_with(b"</") {
            in_scope -= open.pop().unwrap_or(0);
            i += 2;
            continue;
        }
        // A start tag, up to its '>': count `name=` outside quoted values.
        let (mut attributes, mut declarations, mut j) = (0, 0, i + 1);
        loop {
            match b.get(j) {
                None => return Err(Refused::Xml),
                Some(&q @ (b'"' | b'\'')) => {
                    j = after(j + 1, &[q]).ok_or(Refused::Xml)?;
                    continue;
                }
                Some(b'=') => {
                    attributes += 1;
                    if attributes > MAX_ATTRIBUTES {
                        return Err(Refused::Shape(format!("has an element with more than {MAX_ATTRIBUTES} attributes")));
                    }
                    let mut end = j;
                    while end > i && b[end - 1].is_ascii_whitespace() {
                        end -= 1;
                    }
                    let mut start = end;
                    while start > i && !b[start - 1].is_ascii_whitespace() && b[start - 1] != b'<' {
                        start -= 1;
                    }
                    let name = &b[start..end];
                    if name == b"xmlns" || name.starts_with(b"xmlns:") {
                        declarations += 1;
                    }
                }
                Some(b'>') => break,
                _ => {}
            }
            j += 1;
        }
        if in_scope + declarations > MAX_NAMESPACES {
            return Err(Refused::Shape(format!("has more than {MAX_NAMESPACES} namespace declarations in scope")));
        }
        declaring += usize::from(declarations > 0);
        if declaring > MAX_DECLARING {
            return Err(Refused::Shape(format!("has more than {MAX_DECLARING} elements that declare namespaces")));
        }
        if b[j - 1] != b'/' {
            open.push(declarations);
            in_scope += declarations;
            if open.len() > MAX_DEPTH {
                return Err(Refused::Shape(format!("nests elements more than {MAX_DEPTH} deep")));
            }
        }
        i = j + 1;
    }
    Ok(())
}

/// Checks decoded XML (see the module text).
pub fn check_xml(xml: &str) -> Result<(), Refused> {
    let doc = parse(xml)?;
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
    fn a_plain_signed_response_passes() {
        check_xml(&response(&signature("#_a1", ENV, RSA256, SHA256))).unwrap();
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
            (response(&signature("#_a1", ENV, "http://www.w3.org/2000/09/xmldsig#rsa-sha1", SHA256)), "Algorithm"),
            (response(&signature("#_a1", ENV, RSA256, "http://www.w3.org/2000/09/xmldsig#sha1")), "Algorithm"),
            (response("<saml:Assertion ID=\"_r1\"/>"), "DuplicateId"),
            (response("<saml:NameID>a@b.example<!---->.evil.example</saml:NameID>"), "Comment"),
            (response("<?pi x?>"), "Comment"),
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

    /// Runs `check_xml` where the ACS runs it: a thread with tokio's 2 MiB stack.
    fn on_small_stack(xml: String) -> Result<(), Refused> {
        std::thread::Builder::new().stack_size(2 << 20).spawn(move || check_xml(&xml)).unwrap().join().unwrap()
    }

    #[test]
    fn shapes_that_overflow_or_stall_the_parser_are_refused_before_parsing() {
        // Found while fuzzing (issue #4). Before: the first aborted the process (stack
        // overflow in the parser); each of the others kept a core busy for minutes.
        let open = format!("<samlp:Response xmlns:samlp=\"{PROTOCOL}\"");
        let deep = format!("{open}>{}{}</samlp:Response>", "<a>".repeat(20_000), "</a>".repeat(20_000));
        let attributes = format!("{open}{}/>", (0..60_000).map(|i| format!(" a{i:x}=\"\"")).collect::<String>());
        let declarations = format!("{open}{}/>", (0..30_000).map(|i| format!(" xmlns:n{i:x}=\"u\"")).collect::<String>());
        let scope = format!("{open}>{}{}{}</samlp:Response>", (0..40).map(|i| format!("<e xmlns:n{i}=\"u\">")).collect::<String>(), "<a xmlns:q=\"u\"/>".repeat(25_000), "</e>".repeat(40));
        let declaring = format!("{open}>{}</samlp:Response>", "<a xmlns:q=\"u\"/>".repeat(30_000));
        for (xml, want) in [(deep, "nests"), (attributes, "has an element"), (declarations, "has an element"), (scope, "has more than 32"), (declaring, "has more than 4096")] {
            match on_small_stack(xml) {
                Err(Refused::Shape(m)) => assert!(m.starts_with(want), "{want}: {m}"),
                other => panic!("{want}: {other:?}"),
            }
        }
    }

    #[test]
    fn shapes_within_the_limits_pass_and_markup_in_values_is_not_miscounted() {
        let decls: String = (0..MAX_NAMESPACES - 4).map(|i| format!(" xmlns:n{i}=\"u\"")).collect();
        let attrs: String = (0..MAX_ATTRIBUTES - 1).map(|i| format!(" a{i}=\"=\"")).collect();
        let nested = format!("{}<x{attrs}/>{}", "<saml:N>".repeat(MAX_DEPTH - 2), "</saml:N>".repeat(MAX_DEPTH - 2));
        let xml = response(&nested).replacen("ID=\"_r1\"", &format!("ID=\"_r1\"{decls}"), 1);
        on_small_stack(xml).unwrap();
        // Quotes, '>' and '=' in values, CDATA, a prolog and a comment before the root:
        // none is a tag or an attribute.
        let tricky = format!(
            "<?xml version=\"1.0\"?><!-- <a b=\"c\"> --><samlp:Response xmlns:samlp=\"{PROTOCOL}\" xmlns:saml=\"urn:oasis:names:tc:SAML:2.0:assertion\" ID='_r1' X=\"a'>b=c\"><saml:A><![CDATA[<b x=\"y>]]></saml:A>{}</samlp:Response>",
            "<saml:B v=\"&quot;>\"/>".repeat(50)
        );
        on_small_stack(tricky).unwrap();
        // One element deeper than allowed is refused.
        let xml = response(&format!("{}{}", "<saml:N>".repeat(MAX_DEPTH - 1), "</saml:N>".repeat(MAX_DEPTH - 1)));
        assert!(matches!(on_small_stack(xml), Err(Refused::Shape(_))));
    }
}
