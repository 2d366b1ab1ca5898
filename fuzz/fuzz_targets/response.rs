//! Response verification on pre-checked XML, with the connection the seeds were signed
//! for (RSA-2048 from `fuzz/keys`). Mutations of the signed seeds reach the signature
//! parsing, canonicalization and digest; the unmutated seeds reach every profile check.
#![no_main]

mod common;

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use ssogate::connection::Connection;
use ssogate::upstream::{saml_precheck, saml_response};

static CONN: OnceLock<(Connection, Connection)> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let Ok(xml) = std::str::from_utf8(data) else { return };
    if saml_precheck::check_xml(xml).is_err() {
        return;
    }
    let (lenient, strict) = CONN.get_or_init(|| {
        let cert = common::seed_certificate();
        (common::connection(&cert, false), common::connection(&cert, true))
    });
    let expect = common::expect();
    let a = saml_response::verify_xml(xml, lenient, &expect);
    let b = saml_response::verify_xml(xml, strict, &expect);
    // Requiring signed assertions can only refuse more.
    if let Ok(v) = &b {
        assert_eq!(a.as_ref(), Ok(v));
    }
});
