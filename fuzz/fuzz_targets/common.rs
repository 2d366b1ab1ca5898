//! What the targets share: the fixed connection and expectations the seed corpus was
//! made for (`seeds.sh`, through tests/peers/saml/forge.py with a fixed `now`).
#![allow(dead_code)]

use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::x509::{X509Builder, X509NameBuilder, X509};
use ssogate::connection::Connection;
use ssogate::upstream::saml_response::Expect;

/// The seeds' `now` (seconds); `expect()` checks 10 s later.
pub const NOW_S: i64 = 1_800_000_000;
pub const ACS: &str = "https://sso.example.test/saml/con_f/acs";
pub const SP: &str = "https://sso.example.test/saml/con_f/metadata";
pub const IDP: &str = "https://idp.example.test/metadata";
pub const REQUEST_ID: &str = "_fuzzrequest0123456789";

/// A SAML connection trusting `cert` (PEM).
pub fn connection(cert: &X509, require_signed_assertions: bool) -> Connection {
    ssogate::testkit::saml_connection(ssogate::testkit::SamlNames { id: "con_f", sp_entity_id: SP, idp_entity_id: IDP }, cert, require_signed_assertions)
}

/// What the ACS expects of the seeds.
pub fn expect() -> Expect<'static> {
    Expect { acs_url: ACS, request_id: Some(REQUEST_ID), now: NOW_S * 1000 + 10_000, skew_ms: 60_000, max_age_ms: 600_000 }
}

/// The certificate the seeds were signed with (`fuzz/keys/idp.crt`, made by `seeds.sh`).
pub fn seed_certificate() -> X509 {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/keys/idp.crt");
    let pem = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}; run fuzz/seeds.sh first"));
    X509::from_pem(&pem).unwrap()
}

/// A P-256 key with a self-signed certificate (signing is cheap, so a target can sign
/// every input).
pub fn ec_key() -> (PKey<Private>, X509) {
    let group = openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1).unwrap();
    let key = PKey::from_ec_key(openssl::ec::EcKey::generate(&group).unwrap()).unwrap();
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", "fuzz").unwrap();
    let name = name.build();
    let mut b = X509Builder::new().unwrap();
    b.set_version(2).unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(&name).unwrap();
    b.set_pubkey(&key).unwrap();
    b.set_not_before(&*openssl::asn1::Asn1Time::from_unix(0).unwrap()).unwrap();
    b.set_not_after(&*openssl::asn1::Asn1Time::days_from_now(3650).unwrap()).unwrap();
    b.sign(&key, MessageDigest::sha256()).unwrap();
    (key, b.build())
}
