//! The redirect validator (reachable by anyone: `rd`, `return_to`): whatever it
//! accepts, a browser resolving it from a gateway page (the WHATWG URL parser, as the
//! `url` crate implements it) lands on the gateway or an allowed host, over http(s).
#![no_main]

use libfuzzer_sys::fuzz_target;
use ssogate::web::redirect::validate;
use url::Url;

fuzz_target!(|data: &[u8]| {
    let Ok(rd) = std::str::from_utf8(data) else { return };
    let public = Url::parse("https://sso.example.com").unwrap();
    let allowed = ["app.example.com".to_string(), ".corp.example".to_string(), "tools.example.com:8443".to_string()];
    let Ok(target) = validate(rd, &allowed, &public) else { return };
    let page = public.join("/login/con_x").unwrap();
    let landed = page.join(&target).expect("an accepted target resolves");
    let host = landed.host_str().unwrap_or_default();
    let port = landed.port();
    let ok = matches!(landed.scheme(), "http" | "https")
        && landed.username().is_empty()
        && landed.password().is_none()
        && ((host == "sso.example.com" && port.is_none())
            || (host == "app.example.com" && port.is_none())
            || ((host == "corp.example" || host.ends_with(".corp.example")) && port.is_none())
            || (host == "tools.example.com" && port == Some(8443)));
    assert!(ok, "{rd:?} accepted as {target:?} lands on {landed}");
});
