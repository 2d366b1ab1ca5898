//! Response verification past the signature: each input that passes the pre-check and
//! has a root `ID` is signed here (enveloped, on the Response, with a P-256 key the
//! connection trusts), so mutations reach the Web SSO profile checks and the attribute
//! reading. Also checks that canonicalization is stable: what `sign_root` signed must
//! verify after the signature is inserted and the document parsed again.
#![no_main]

mod common;

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use openssl::pkey::{PKey, Private, Public};
use ssogate::connection::Connection;
use ssogate::upstream::{saml_precheck, saml_response, xmldsig};

static SETUP: OnceLock<(PKey<Private>, PKey<Public>, Connection)> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let Ok(xml) = std::str::from_utf8(data) else { return };
    if saml_precheck::check_xml(xml).is_err() {
        return;
    }
    let (key, public, conn) = SETUP.get_or_init(|| {
        let (key, cert) = common::ec_key();
        let public = cert.public_key().unwrap();
        let conn = common::connection(&cert, false);
        (key, public, conn)
    });
    let expect = common::expect();
    let Ok(signed) = xmldsig::sign_root(xml, key, None, true) else {
        let _ = saml_response::verify_xml(xml, conn, &expect);
        return;
    };
    if saml_precheck::check_xml(&signed).is_err() {
        return;
    }
    let doc = roxmltree::Document::parse(&signed).unwrap();
    let already_signed = roxmltree::Document::parse(xml).unwrap().root_element().children().any(|c| c.tag_name().name() == "Signature" && c.tag_name().namespace() == Some(xmldsig::DS));
    let verified = xmldsig::verify_element(doc.root_element(), std::slice::from_ref(public));
    if !already_signed {
        assert_eq!(verified, Ok(true), "a document signed by sign_root does not verify:\n{signed}");
    }
    let _ = saml_response::verify_xml(&signed, conn, &expect);
});
