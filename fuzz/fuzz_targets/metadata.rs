//! IdP metadata parsing on anything (an admin pastes it, or it is fetched from a URL the
//! IdP serves): it must answer, quickly, without panicking, and what it accepts has at
//! least one signing certificate and an SSO URL.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ssogate::connection::metadata::parse;

fuzz_target!(|data: &[u8]| {
    if let Ok(xml) = std::str::from_utf8(data) {
        if let Ok(m) = parse(xml) {
            assert!(!m.certificates.is_empty(), "accepted metadata with no signing certificate");
        }
    }
});
