//! ACS benchmark: one signed SAML response verified, per second and µs per response.
//!
//! A response of typical size (an assertion with ten attributes, one of them twenty
//! groups; RSA-2048 SHA-256; signed by xmlsec1 through tests/peers/saml/forge.py) goes
//! through `saml_response::verify` N times on one thread: base64 in, verified claims out,
//! pre-check included. Signed assertion, signed response, and both. As references from
//! the same run, on the same document: one raw RSA-2048 SHA-256 verification (OpenSSL),
//! a SHA-256 of the document, a roxmltree parse, the pre-check alone, exclusive c14n of
//! the assertion, and decoding the IdP certificate.
//!
//!     cargo bench --bench acs -- [N]      (or: bash bench/run-acs.sh)

use std::process::Command;
use std::time::Instant;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use openssl::hash::{hash, MessageDigest};
use openssl::pkey::PKey;
use openssl::sign::{Signer, Verifier};
use serde_json::json;
use ssogate::connection::Connection;
use ssogate::upstream::saml_response::{self, Expect};
use ssogate::upstream::{saml_precheck, xmldsig};

const ACS: &str = "https://sso.example.test/saml/con_b/acs";
const SP: &str = "https://sso.example.test/saml/con_b/metadata";
const IDP: &str = "https://idp.example.test/metadata";
const REQUEST_ID: &str = "_0123456789abcdef0123456789abcdef";

fn connection(cert_pem: &str) -> Connection {
    let cert = openssl::x509::X509::from_pem(cert_pem.as_bytes()).unwrap();
    ssogate::testkit::saml_connection(ssogate::testkit::SamlNames { id: "con_b", sp_entity_id: SP, idp_entity_id: IDP }, &cert, false)
}

/// Times `f` n times after n/10 warm-up calls: (median µs, p99 µs, per second).
fn time(n: usize, mut f: impl FnMut()) -> (f64, f64, f64) {
    for _ in 0..n / 10 + 1 {
        f();
    }
    let mut us: Vec<f64> = Vec::with_capacity(n);
    let t = Instant::now();
    for _ in 0..n {
        let t0 = Instant::now();
        f();
        us.push(t0.elapsed().as_secs_f64() * 1e6);
    }
    let per_second = n as f64 / t.elapsed().as_secs_f64();
    us.sort_by(f64::total_cmp);
    (us[n / 2], us[(n * 99 / 100).min(n - 1)], per_second)
}

fn row(what: &str, (median, p99, per_second): (f64, f64, f64)) {
    println!("| {what} | {median:.1} µs | {p99:.1} µs | {per_second:.0} |");
}

fn main() {
    let n: usize = std::env::args().skip(1).find_map(|s| s.parse().ok()).unwrap_or(2000);
    let root = env!("CARGO_MANIFEST_DIR");
    let (cert, key_pem) = ssogate::connection::keypair::generate("bench-idp").unwrap();
    let keys = tempfile::tempdir().unwrap();
    std::fs::write(keys.path().join("idp.crt"), &cert).unwrap();
    std::fs::write(keys.path().join("idp.key"), &key_pem).unwrap();
    let conn = connection(&cert);
    let now = chrono::Utc::now().timestamp();
    let expect = Expect { acs_url: ACS, request_id: Some(REQUEST_ID), now: now * 1000 + 1000, skew_ms: 60_000, max_age_ms: 600_000 };

    // Ten attributes, as a directory-backed IdP sends them; twenty groups.
    let groups: Vec<String> = (1..=20).map(|i| format!("team-{i:02}-engineering")).collect();
    let attributes = json!({
        "urn:oid:0.9.2342.19200300.100.1.3": ["alice.example@example.test"],
        "urn:oid:2.16.840.1.113730.3.1.241": ["Alice Example"],
        "urn:oid:2.5.4.42": ["Alice"],
        "urn:oid:2.5.4.4": ["Example"],
        "urn:oid:0.9.2342.19200300.100.1.1": ["alice"],
        "urn:oid:2.5.4.11": ["Platform Engineering"],
        "urn:oid:2.5.4.12": ["Staff Engineer"],
        "urn:oid:2.16.840.1.113730.3.1.3": ["E-004217"],
        "urn:oid:1.3.6.1.4.1.5923.1.1.1.6": ["alice@example.test"],
        "urn:oid:1.3.6.1.4.1.5923.1.1.1.7": groups,
    });
    let friendly = json!({"urn:oid:0.9.2342.19200300.100.1.3": "mail", "urn:oid:2.5.4.42": "givenName", "urn:oid:2.5.4.4": "sn",
        "urn:oid:2.16.840.1.113730.3.1.241": "displayName", "urn:oid:1.3.6.1.4.1.5923.1.1.1.7": "eduPersonEntitlement"});
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let forge = |sign: &str| {
        let spec = json!({"keys": keys.path(), "now": now, "acs": ACS, "sp": SP, "idp": IDP, "in_response_to": REQUEST_ID,
            "name_id": "alice@example.test", "attributes": attributes, "friendly": friendly, "sign": sign});
        let out = Command::new(&python)
            .arg(format!("{root}/tests/peers/saml/forge.py"))
            .arg(spec.to_string())
            .output()
            .unwrap_or_else(|e| panic!("run {python} forge.py: {e}"));
        assert!(out.status.success(), "forge.py: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };

    println!("| what (one thread, {n} runs) | median | p99 | per second |");
    println!("| --- | --- | --- | --- |");
    let mut reference_xml = String::new();
    for sign in ["assertion", "response", "both"] {
        let posted = forge(sign);
        let xml = String::from_utf8(B64.decode(&posted).unwrap()).unwrap();
        let v = saml_response::verify(&posted, &conn, &expect).unwrap_or_else(|e| panic!("{sign}: {e}"));
        assert_eq!(v.claims["NameID"], "alice@example.test");
        assert_eq!(v.claims["eduPersonEntitlement"].as_array().unwrap().len(), 20);
        row(
            &format!("`verify`, {sign} signed ({} bytes of XML)", xml.len()),
            time(n, || {
                std::hint::black_box(saml_response::verify(&posted, &conn, &expect).unwrap());
            }),
        );
        if sign == "assertion" {
            row(
                "  of which `verify_xml` (after the pre-check)",
                time(n, || {
                    std::hint::black_box(saml_response::verify_xml(&xml, &conn, &expect).unwrap());
                }),
            );
            reference_xml = xml;
        }
    }

    // References on the assertion-signed document.
    let xml = reference_xml;
    let posted = B64.encode(&xml);
    row(
        "reference: pre-check alone (`saml_precheck::check`: base64, parse, checks)",
        time(n, || {
            std::hint::black_box(saml_precheck::check(&posted).unwrap());
        }),
    );
    let opts = || roxmltree::ParsingOptions { allow_dtd: false, nodes_limit: 50_000 };
    row(
        "reference: roxmltree parse of the XML",
        time(n, || {
            std::hint::black_box(roxmltree::Document::parse_with_options(&xml, opts()).unwrap());
        }),
    );
    let doc = roxmltree::Document::parse_with_options(&xml, opts()).unwrap();
    let assertion = doc.descendants().find(|e| e.tag_name().name() == "Assertion").unwrap();
    let sig = assertion.children().find(|e| e.tag_name().name() == "Signature").map(|s| s.id());
    row(
        "reference: exclusive c14n of the assertion (`xmldsig::canonicalize`)",
        time(n, || {
            std::hint::black_box(xmldsig::canonicalize(&xml, assertion, sig, &["xs".into()]).unwrap());
        }),
    );
    row(
        "reference: SHA-256 of the XML",
        time(n, || {
            std::hint::black_box(hash(MessageDigest::sha256(), xml.as_bytes()).unwrap());
        }),
    );
    let key = PKey::private_key_from_pem(key_pem.as_bytes()).unwrap();
    let public = PKey::public_key_from_pem(&key.public_key_to_pem().unwrap()).unwrap();
    let signed_info = vec![b'x'; 900];
    let signature = Signer::new(MessageDigest::sha256(), &key).unwrap().sign_oneshot_to_vec(&signed_info).unwrap();
    row(
        "reference: one raw RSA-2048 SHA-256 verification (OpenSSL)",
        time(n, || {
            let ok = Verifier::new(MessageDigest::sha256(), &public).unwrap().verify_oneshot(&signature, &signed_info).unwrap();
            assert!(ok);
        }),
    );
    row(
        "reference: one certificate decoded (PEM, X.509, public key), as before the per-process cache",
        time(n, || {
            std::hint::black_box(openssl::x509::X509::from_pem(cert.as_bytes()).unwrap().public_key().unwrap());
        }),
    );
    row(
        "reference: `saml_response::pinned_keys` (cached)",
        time(n, || {
            std::hint::black_box(saml_response::pinned_keys(&conn));
        }),
    );
}
