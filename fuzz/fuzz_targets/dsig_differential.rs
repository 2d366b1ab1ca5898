//! Differential: our XML-DSig verifier against xmlsec1 (issue #17). Each input that passes
//! the pre-check is signed on its root here (P-256, `xmldsig::sign_root`) unless its root
//! already carries a signature, in which case it is used as is (the seeds signed by
//! xmlsec1 with `fuzz/keys/idp.crt`). Every signature ours accepts on the Response or its
//! first Assertion — and every one when `verify_xml` accepts the whole response — must
//! also verify with `xmlsec1 --verify` against the same pinned certificates only (KeyInfo
//! ignored, same-document references, IDs declared, `--node-xpath` on that signature).
//! Ours may refuse more; it must never accept what xmlsec1 rejects. Slow: one xmlsec1
//! process (~40 ms) per signature ours accepts.
#![no_main]

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use openssl::pkey::{PKey, Private, Public};
use roxmltree::{Document, Node};
use ssogate::connection::Connection;
use ssogate::upstream::{saml_precheck, saml_response, xmldsig};

const PROTOCOL: &str = "urn:oasis:names:tc:SAML:2.0:protocol";
const ASSERTION: &str = "urn:oasis:names:tc:SAML:2.0:assertion";

struct Setup {
    key: PKey<Private>,
    keys: Vec<PKey<Public>>,
    certs: Vec<PathBuf>,
    conn: Connection,
    file: PathBuf,
}

static SETUP: OnceLock<Setup> = OnceLock::new();

fn setup() -> Setup {
    let (key, ec_cert) = common::ec_key();
    let seed_cert = common::seed_certificate();
    let dir = std::env::temp_dir().join(format!("ssogate-dsig-differential-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (mut certs, mut keys) = (Vec::new(), Vec::new());
    for (name, cert) in [("ec.crt", &ec_cert), ("seed.crt", &seed_cert)] {
        let path = dir.join(name);
        std::fs::write(&path, cert.to_pem().unwrap()).unwrap();
        certs.push(path);
        keys.push(cert.public_key().unwrap());
    }
    let mut conn = common::connection(&ec_cert, false);
    ssogate::testkit::saml_mut(&mut conn).idp.certificates.push(ssogate::connection::metadata::describe(&seed_cert).unwrap());
    Setup { key, keys, certs, conn, file: dir.join("input.xml") }
}

fn is(n: Node, ns: &str, name: &str) -> bool {
    n.is_element() && n.tag_name().name() == name && n.tag_name().namespace() == Some(ns)
}

fn signed(n: Node) -> bool {
    n.children().any(|c| is(c, xmldsig::DS, "Signature"))
}

/// The elements a signature may sit on, each with xmlsec1's XPath to its signature.
fn holders<'a, 'i>(doc: &'a Document<'i>) -> Vec<(Node<'a, 'i>, String)> {
    let root = doc.root_element();
    if !is(root, PROTOCOL, "Response") {
        return vec![];
    }
    let response = format!("/*[local-name()='Response' and namespace-uri()='{PROTOCOL}']");
    let sig = format!("/*[local-name()='Signature' and namespace-uri()='{}'][1]", xmldsig::DS);
    let mut out = vec![(root, format!("{response}{sig}"))];
    if let Some(a) = root.children().find(|c| is(*c, ASSERTION, "Assertion")) {
        out.push((a, format!("{response}/*[local-name()='Assertion' and namespace-uri()='{ASSERTION}'][1]{sig}")));
    }
    out
}

fn xmlsec1_verifies(s: &Setup, xpath: &str) -> bool {
    let mut cmd = Command::new("/usr/bin/xmlsec1");
    cmd.args(["--verify", "--enabled-key-data", "key-name", "--enabled-reference-uris", "empty,same-doc"]);
    for cert in &s.certs {
        cmd.arg("--pubkey-cert-pem").arg(cert);
    }
    cmd.args(["--id-attr:ID", &format!("{PROTOCOL}:Response"), "--id-attr:ID", &format!("{ASSERTION}:Assertion"), "--node-xpath", xpath]);
    cmd.arg(&s.file).output().expect("/usr/bin/xmlsec1 is missing: run tests/peers/setup.sh").status.success()
}

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else { return };
    if saml_precheck::check_xml(input).is_err() {
        return;
    }
    let s = SETUP.get_or_init(setup);
    let already = Document::parse(input).is_ok_and(|d| signed(d.root_element()));
    let xml = match xmldsig::sign_root(input, &s.key, None, true) {
        Ok(signed) if !already => signed,
        _ => input.to_string(),
    };
    if saml_precheck::check_xml(&xml).is_err() {
        return;
    }
    let doc = Document::parse(&xml).unwrap();
    // verify_xml accepts only when every signature it sees verifies, so these cover it.
    let accepted: Vec<String> = holders(&doc).into_iter().filter(|(e, _)| signed(*e) && xmldsig::verify_element(*e, &s.keys) == Ok(true)).map(|(_, x)| x).collect();
    let whole = saml_response::verify_xml(&xml, &s.conn, &common::expect()).is_ok();
    assert!(!whole || !accepted.is_empty(), "verify_xml accepts a response with no signature ours accepts:\n{xml}");
    if accepted.is_empty() {
        return;
    }
    std::fs::write(&s.file, &xml).unwrap();
    for xpath in accepted {
        assert!(xmlsec1_verifies(s, &xpath), "ours accepts the signature at {xpath}, xmlsec1 rejects it:\n{xml}");
    }
});
