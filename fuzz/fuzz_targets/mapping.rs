//! Claim mapping on what an IdP sends: the first line is a claim name (dotted paths,
//! colons, URIs), the rest a JSON claim set. Lookup and the whole mapping must answer
//! without panicking, whatever the nesting, types or characters.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ssogate::connection::{ClaimMappings, ClaimNames};
use ssogate::mapping::{lookup, map};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (name, json) = text.split_once('\n').unwrap_or((text, "{}"));
    let Ok(claims) = serde_json::from_str::<serde_json::Value>(json) else { return };
    let _ = lookup(&claims, name);
    let n = ClaimNames::one(name);
    let m = ClaimMappings {
        user_id: n.clone(),
        email: n.clone(),
        name: n.clone(),
        given_name: n.clone(),
        family_name: n.clone(),
        picture: n.clone(),
        groups: n,
    };
    let _ = map(&claims, &m);
    let _ = map(&claims, &ClaimMappings::default());
});
