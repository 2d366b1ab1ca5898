//! The ACS pre-check on anything: as the form value (`check`, base64 and all) and as
//! decoded XML (`check_xml`). It must answer, quickly, without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ssogate::upstream::saml_precheck::{check, check_xml};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = check_xml(text);
        let _ = check(text);
    }
    // The same bytes as the IdP would post them: base64, possibly not UTF-8 inside.
    use base64::Engine;
    let posted = base64::engine::general_purpose::STANDARD.encode(data);
    if let Ok(xml) = check(&posted) {
        assert_eq!(xml.as_bytes(), data, "check must return the decoded document");
    }
});
