//! Differential test of [`super::jws`] (issue #18) against the `jsonwebtoken` crate (12,
//! RustCrypto backend: pure Rust, no code shared with the OpenSSL path ours runs on).
//!
//! For every algorithm both sides know (RS256/384/512, PS256/384/512, ES256, ES384, EdDSA):
//! tokens signed by ours verify with jsonwebtoken, tokens signed by jsonwebtoken verify with
//! ours, and a table of refusals gets the same verdict from both: tampered payload, another
//! key, header algorithm swapped, signature of the wrong length (truncated, padded, DER
//! where JOSE wants r || s, leading zeros stripped), the wrong EC curve for the algorithm,
//! an algorithm of another key type (alg/key mismatch), `none`, HMAC with the public key as
//! the secret, `crit`, non-canonical base64.
//!
//! "Ours" is the path an ID token takes in `oidc::verify_id_token`: `jws::parse`, the JWKS
//! key filter `jws::key_fits`, `jws::public_key`, `jws::verify`. "Theirs" is
//! `jsonwebtoken::decode` with the key from the same JWK (`DecodingKey::from_jwk`) and a
//! `Validation` allowing the token's own algorithm when it is one of the asymmetric
//! algorithms (our allow-list), no claim checks: the laxest use an application would make
//! of it, so any refusal of theirs is the signature's, not a policy's.
//!
//! Where the verdicts differ by design, the row says `Ours` stricter and why; jsonwebtoken
//! has no ES512, so ES512 is covered by `jws`'s own tests only.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use jsonwebtoken as jwt;
use openssl::bn::{BigNum, BigNumContext};
use openssl::ec::{EcGroup, EcKey};
use openssl::ecdsa::EcdsaSig;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{Id, PKey, Private};
use openssl::rsa::{Padding, Rsa};
use openssl::sign::{RsaPssSaltlen, Signer};
use serde_json::{json, Value};

use super::jws;

/// The algorithms both implementations know, with the kind of key each needs.
const ALGS: &[(&str, Kind)] = &[
    ("RS256", Kind::Rsa),
    ("RS384", Kind::Rsa),
    ("RS512", Kind::Rsa),
    ("PS256", Kind::Rsa),
    ("PS384", Kind::Rsa),
    ("PS512", Kind::Rsa),
    ("ES256", Kind::P256),
    ("ES384", Kind::P384),
    ("EdDSA", Kind::Ed25519),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Rsa,
    P256,
    P384,
    P521,
    Ed25519,
}

/// A private key, its public JWK (no `alg`, as many IdPs publish them) and jsonwebtoken's
/// encoding key for it.
struct Key {
    kind: Kind,
    private: PKey<Private>,
    jwk: Value,
    theirs: Option<jwt::EncodingKey>,
}

fn b64(bytes: &[u8]) -> String {
    B64URL.encode(bytes)
}

impl Key {
    fn new(kind: Kind) -> Key {
        Key::rsa_bits(kind, 2048)
    }

    fn rsa_bits(kind: Kind, bits: u32) -> Key {
        match kind {
            Kind::Rsa => {
                let rsa = Rsa::generate(bits).unwrap();
                let jwk = json!({"kty": "RSA", "n": b64(&rsa.n().to_vec()), "e": b64(&rsa.e().to_vec())});
                // PKCS#1 PEM: what jsonwebtoken's RustCrypto RSA signer reads.
                let theirs = jwt::EncodingKey::from_rsa_pem(&rsa.private_key_to_pem().unwrap()).unwrap();
                Key { kind, private: PKey::from_rsa(rsa).unwrap(), jwk, theirs: Some(theirs) }
            }
            Kind::P256 | Kind::P384 | Kind::P521 => {
                let (nid, crv, width) = match kind {
                    Kind::P256 => (Nid::X9_62_PRIME256V1, "P-256", 32),
                    Kind::P384 => (Nid::SECP384R1, "P-384", 48),
                    _ => (Nid::SECP521R1, "P-521", 66),
                };
                let group = EcGroup::from_curve_name(nid).unwrap();
                let ec = EcKey::generate(&group).unwrap();
                let (mut x, mut y) = (BigNum::new().unwrap(), BigNum::new().unwrap());
                ec.public_key().affine_coordinates(&group, &mut x, &mut y, &mut BigNumContext::new().unwrap()).unwrap();
                let jwk = json!({"kty": "EC", "crv": crv, "x": b64(&x.to_vec_padded(width).unwrap()), "y": b64(&y.to_vec_padded(width).unwrap())});
                let private = PKey::from_ec_key(ec).unwrap();
                // jsonwebtoken has no P-521.
                let theirs = (kind != Kind::P521).then(|| jwt::EncodingKey::from_ec_pem(&private.private_key_to_pem_pkcs8().unwrap()).unwrap());
                Key { kind, private, jwk, theirs }
            }
            Kind::Ed25519 => {
                let private = PKey::generate_ed25519().unwrap();
                let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": b64(&private.raw_public_key().unwrap())});
                let theirs = jwt::EncodingKey::from_ed_pem(&private.private_key_to_pem_pkcs8().unwrap()).unwrap();
                Key { kind, private, jwk, theirs: Some(theirs) }
            }
        }
    }

    /// Its JWK with `extra` fields laid over it.
    fn jwk_with(&self, extra: Value) -> Value {
        let mut jwk = self.jwk.clone();
        jwk.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        jwk
    }
}

/// The keys of the test: one of each kind, and a second of each for "another key".
struct Keys {
    rsa: Key,
    p256: Key,
    p384: Key,
    p521: Key,
    ed: Key,
    other_rsa: Key,
    other_p256: Key,
    other_p384: Key,
    other_ed: Key,
}

impl Keys {
    fn new() -> Keys {
        Keys {
            rsa: Key::new(Kind::Rsa),
            p256: Key::new(Kind::P256),
            p384: Key::new(Kind::P384),
            p521: Key::new(Kind::P521),
            ed: Key::new(Kind::Ed25519),
            other_rsa: Key::new(Kind::Rsa),
            other_p256: Key::new(Kind::P256),
            other_p384: Key::new(Kind::P384),
            other_ed: Key::new(Kind::Ed25519),
        }
    }

    fn of(&self, kind: Kind) -> &Key {
        match kind {
            Kind::Rsa => &self.rsa,
            Kind::P256 => &self.p256,
            Kind::P384 => &self.p384,
            Kind::P521 => &self.p521,
            Kind::Ed25519 => &self.ed,
        }
    }

    fn other(&self, kind: Kind) -> &Key {
        match kind {
            Kind::Rsa => &self.other_rsa,
            Kind::P256 => &self.other_p256,
            Kind::P384 => &self.other_p384,
            Kind::P521 => unreachable!("no P-521 algorithm is compared"),
            Kind::Ed25519 => &self.other_ed,
        }
    }
}

// ---- the two verifiers ----

/// Ours, as `oidc::verify_id_token` runs it on a JWKS key.
fn ours(token: &str, jwk: &Value) -> Result<(), String> {
    let parsed = jws::parse(token).map_err(|e| e.to_string())?;
    if !jws::key_fits(jwk, &parsed.header.alg) {
        return Err(format!("the JWK does not fit {}", parsed.header.alg));
    }
    let key = jws::public_key(jwk).map_err(|e| e.to_string())?;
    jws::verify(&parsed, &key).map_err(|e| e.to_string())
}

/// jsonwebtoken's `decode`, allowing the token's own algorithm when it is on our allow-list.
fn theirs(token: &str, jwk: &Value) -> Result<(), String> {
    let header = jwt::decode_header(token).map_err(|e| format!("header: {e}"))?;
    if !ALGS.iter().any(|(name, _)| name.parse::<jwt::Algorithm>().ok() == Some(header.alg)) {
        return Err(format!("{:?} is not on the allow-list", header.alg));
    }
    let jwk: jwt::jwk::Jwk = serde_json::from_value(jwk.clone()).map_err(|e| format!("jwk: {e}"))?;
    let key = jwt::DecodingKey::from_jwk(&jwk).map_err(|e| format!("key: {e}"))?;
    let mut validation = jwt::Validation::new(header.alg);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_aud = false;
    jwt::decode::<Value>(token, &key, &validation).map(|_| ()).map_err(|e| e.to_string())
}

// ---- tokens made by hand ----

fn input(header: &Value, claims: &Value) -> String {
    format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()))
}

fn claims() -> Value {
    json!({"iss": "https://idp.example.test", "sub": "alice", "aud": "app", "n": 0})
}

/// `alg`'s signature of `input` by `key`, as OpenSSL makes it (ECDSA as DER).
fn raw_signature(key: &PKey<Private>, alg: &str, input: &str) -> Vec<u8> {
    if key.id() == Id::ED25519 {
        return Signer::new_without_digest(key).unwrap().sign_oneshot_to_vec(input.as_bytes()).unwrap();
    }
    let md = match &alg[2..] {
        "384" => MessageDigest::sha384(),
        "512" => MessageDigest::sha512(),
        _ => MessageDigest::sha256(),
    };
    let mut signer = Signer::new(md, key).unwrap();
    if alg.starts_with("PS") {
        signer.set_rsa_padding(Padding::PKCS1_PSS).unwrap();
        signer.set_rsa_pss_saltlen(RsaPssSaltlen::DIGEST_LENGTH).unwrap();
    }
    signer.update(input.as_bytes()).unwrap();
    signer.sign_to_vec().unwrap()
}

/// An ECDSA signature in JOSE form: r || s, each `width` bytes (zero-padded). With `width`
/// under the curve's size, signs again until both fit (`s` may become `n - s`): a valid
/// signature written shorter.
fn ecdsa_jose(key: &PKey<Private>, md: MessageDigest, input: &str, width: usize) -> Vec<u8> {
    let ec = key.ec_key().unwrap();
    let mut order = BigNum::new().unwrap();
    ec.group().order(&mut order, &mut BigNumContext::new().unwrap()).unwrap();
    for _ in 0..1_000_000 {
        let mut signer = Signer::new(md, key).unwrap();
        signer.update(input.as_bytes()).unwrap();
        let sig = EcdsaSig::from_der(&signer.sign_to_vec().unwrap()).unwrap();
        let r = sig.r().to_owned().unwrap();
        let mut s = sig.s().to_owned().unwrap();
        if s.num_bytes() as usize > width {
            let mut flipped = BigNum::new().unwrap();
            flipped.checked_sub(&order, &s).unwrap();
            s = flipped;
        }
        if r.num_bytes() as usize <= width && s.num_bytes() as usize <= width {
            let mut raw = r.to_vec_padded(width as i32).unwrap();
            raw.extend(s.to_vec_padded(width as i32).unwrap());
            return raw;
        }
    }
    panic!("no signature fits {width} bytes");
}

/// A token with header `{"alg": alg}` (and `kid`) signed the way `alg` says, except with
/// `key` whatever it is: ECDSA in JOSE form at the width of `key`'s curve.
fn signed_as(key: &Key, alg: &str, claims: &Value) -> String {
    signed_under(key, alg, &json!({"alg": alg, "kid": "k1"}), claims)
}

/// [`signed_as`] under the header `header`.
fn signed_under(key: &Key, alg: &str, header: &Value, claims: &Value) -> String {
    let input = input(header, claims);
    let sig = match key.kind {
        Kind::P256 | Kind::P384 | Kind::P521 => {
            let md = match alg {
                "ES384" => MessageDigest::sha384(),
                "ES512" => MessageDigest::sha512(),
                _ => MessageDigest::sha256(),
            };
            let width = match key.kind {
                Kind::P256 => 32,
                Kind::P384 => 48,
                _ => 66,
            };
            ecdsa_jose(&key.private, md, &input, width)
        }
        _ => raw_signature(&key.private, alg, &input),
    };
    format!("{input}.{}", b64(&sig))
}

/// A token whose RSA signature starts with a zero byte (signed again with a counter in
/// the claims until it does), so that dropping that byte keeps the same number.
fn rsa_with_leading_zero(key: &Key, alg: &str) -> String {
    for n in 0..100_000 {
        let mut c = claims();
        c["n"] = json!(n);
        let input = input(&json!({"alg": alg, "kid": "k1"}), &c);
        let sig = raw_signature(&key.private, alg, &input);
        if sig[0] == 0 {
            return format!("{input}.{}", b64(&sig));
        }
    }
    panic!("no {alg} signature with a leading zero byte");
}

// ---- bends of a token ----

fn parts(token: &str) -> (String, String, Vec<u8>) {
    let p: Vec<&str> = token.split('.').collect();
    (p[0].to_string(), p[1].to_string(), B64URL.decode(p[2]).unwrap())
}

fn with_signature(token: &str, sig: &[u8]) -> String {
    let (h, p, _) = parts(token);
    format!("{h}.{p}.{}", b64(sig))
}

fn with_payload(token: &str, claims: &Value) -> String {
    let (h, _, s) = parts(token);
    format!("{h}.{}.{}", b64(claims.to_string().as_bytes()), b64(&s))
}

fn with_header(token: &str, header: &Value) -> String {
    let (_, p, s) = parts(token);
    format!("{}.{p}.{}", b64(header.to_string().as_bytes()), b64(&s))
}

/// The signature's base64 with its unused trailing bits set: another text for the same
/// bytes (only when the length leaves trailing bits).
fn non_canonical_base64(token: &str) -> Option<String> {
    let (h, p, s) = parts(token);
    if s.len() % 3 == 0 {
        return None;
    }
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut text = b64(&s).into_bytes();
    let last = text.last_mut()?;
    let index = ALPHABET.iter().position(|c| c == last)?;
    *last = ALPHABET[index | 1];
    Some(format!("{h}.{p}.{}", String::from_utf8(text).ok()?))
}

/// The ECDSA signature of a JOSE token as DER (what OpenSSL makes and X.509 uses).
fn jose_to_der(sig: &[u8]) -> Vec<u8> {
    let half = sig.len() / 2;
    let r = BigNum::from_slice(&sig[..half]).unwrap();
    let s = BigNum::from_slice(&sig[half..]).unwrap();
    EcdsaSig::from_private_components(r, s).unwrap().to_der().unwrap()
}

// ---- the table ----

/// The expected verdicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    /// Both accept.
    Accept,
    /// Both refuse.
    Refuse,
    /// Ours refuses what jsonwebtoken accepts, for the reason given (a policy of ours that
    /// `decode` leaves to the application).
    OursStricter(&'static str),
    /// jsonwebtoken cannot verify it at all (an algorithm it lacks); ours accepts.
    TheirsCannot(&'static str),
}

impl Want {
    fn verdicts(self) -> (bool, bool) {
        match self {
            Want::Accept => (true, true),
            Want::Refuse => (false, false),
            Want::OursStricter(_) => (false, true),
            Want::TheirsCannot(_) => (true, false),
        }
    }
}

struct Row {
    what: String,
    token: String,
    jwk: Value,
    want: Want,
}

fn row(what: impl Into<String>, token: impl Into<String>, jwk: &Value, want: Want) -> Row {
    Row { what: what.into(), token: token.into(), jwk: jwk.clone(), want }
}

/// Runs both verifiers on every row; returns the rows whose verdicts are not the ones wanted.
fn judge(rows: &[Row]) -> Vec<String> {
    let mut wrong = Vec::new();
    println!("ours   theirs  want            case");
    for r in rows {
        let (o, t) = (ours(&r.token, &r.jwk), theirs(&r.token, &r.jwk));
        let verdict = |v: &Result<(), String>| if v.is_ok() { "accept" } else { "refuse" };
        println!("{:<6} {:<7} {:<15} {}", verdict(&o), verdict(&t), format!("{:?}", r.want).split('(').next().unwrap_or(""), r.what);
        if (o.is_ok(), t.is_ok()) != r.want.verdicts() {
            wrong.push(format!("{}: want {:?}, ours {o:?}, jsonwebtoken {t:?}", r.what, r.want));
        }
    }
    wrong
}

fn assert_agree(rows: &[Row]) {
    let wrong = judge(rows);
    assert!(wrong.is_empty(), "{} of {} verdicts differ from the wanted ones:\n{}", wrong.len(), rows.len(), wrong.join("\n"));
}

/// Signed by `jws::sign`, then by `jsonwebtoken::encode`: each verifies with both.
#[test]
fn each_algorithm_verifies_both_ways() {
    let keys = Keys::new();
    let mut rows = Vec::new();
    for &(alg, kind) in ALGS {
        let key = keys.of(kind);
        let mine = jws::sign(&key.private, alg, "k1", &claims()).unwrap_or_else(|e| format!("jws::sign refused {alg}: {e}"));
        rows.push(row(format!("{alg}: signed by jws::sign"), mine, &key.jwk, Want::Accept));
        let mut header = jwt::Header::new(alg.parse().unwrap());
        header.kid = Some("k1".into());
        let their = jwt::encode(&header, &claims(), key.theirs.as_ref().unwrap()).unwrap();
        rows.push(row(format!("{alg}: signed by jsonwebtoken"), their.clone(), &key.jwk, Want::Accept));
        // The JWK may name its algorithm and use, as IdPs often do.
        let labelled = key.jwk_with(json!({"alg": alg, "use": "sig", "kid": "k1"}));
        rows.push(row(format!("{alg}: signed by jsonwebtoken, JWK labelled {alg}"), their, &labelled, Want::Accept));
    }
    assert_agree(&rows);
}

/// The refusals, each on tokens made by both signers where the case allows.
#[test]
fn refusals_get_the_same_verdict() {
    let keys = Keys::new();
    let mut rows = Vec::new();
    for &(alg, kind) in ALGS {
        let key = keys.of(kind);
        let mut header = jwt::Header::new(alg.parse().unwrap());
        header.kid = Some("k1".into());
        let their = jwt::encode(&header, &claims(), key.theirs.as_ref().unwrap()).unwrap();
        let good = [("jsonwebtoken", their), ("openssl", signed_as(key, alg, &claims()))];
        for (by, token) in &good {
            let (_, _, sig) = parts(token);
            let case = |what: &str| format!("{alg} by {by}: {what}");
            let mut evil = claims();
            evil["sub"] = json!("mallory");
            rows.push(row(case("untouched"), token.clone(), &key.jwk, Want::Accept));
            rows.push(row(case("payload changed"), with_payload(token, &evil), &key.jwk, Want::Refuse));
            rows.push(row(case("verified with another key of the same kind"), token.clone(), &keys.other(kind).jwk, Want::Refuse));
            rows.push(row(case("signature empty"), with_signature(token, &[]), &key.jwk, Want::Refuse));
            rows.push(row(case("signature truncated by a byte"), with_signature(token, &sig[..sig.len() - 1]), &key.jwk, Want::Refuse));
            let mut longer = sig.clone();
            longer.push(0);
            rows.push(row(case("signature with a zero byte appended"), with_signature(token, &longer), &key.jwk, Want::Refuse));
            let mut prefixed = vec![0];
            prefixed.extend(&sig);
            rows.push(row(case("signature with a zero byte prepended"), with_signature(token, &prefixed), &key.jwk, Want::Refuse));
            let mut flipped = sig.clone();
            flipped[sig.len() / 2] ^= 1;
            rows.push(row(case("signature with one bit flipped"), with_signature(token, &flipped), &key.jwk, Want::Refuse));
            if let Some(bent) = non_canonical_base64(token) {
                rows.push(row(case("signature base64 with its unused bits set"), bent, &key.jwk, Want::Refuse));
            }
            rows.push(row(case("signature base64 padded with ="), format!("{token}="), &key.jwk, Want::Refuse));
            // The header's algorithm swapped for another of the same key type.
            let swaps: &[&str] = match kind {
                Kind::Rsa => &["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"],
                Kind::P256 | Kind::P384 => &["ES256", "ES384"],
                _ => &[],
            };
            for other in swaps.iter().filter(|o| **o != alg) {
                rows.push(row(case(&format!("header says {other}")), with_header(token, &json!({"alg": other, "kid": "k1"})), &key.jwk, Want::Refuse));
            }
            for none in ["none", "None", "NONE"] {
                let stripped = format!("{}.{}.", b64(json!({"alg": none}).to_string().as_bytes()), parts(token).1);
                rows.push(row(case(&format!("alg {none}, signature removed")), stripped, &key.jwk, Want::Refuse));
                rows.push(row(case(&format!("alg {none}, signature kept")), with_header(token, &json!({"alg": none})), &key.jwk, Want::Refuse));
            }
        }
        // A critical extension neither understands (RFC 7515 4.1.11), in the signed header.
        let crit = signed_under(key, alg, &json!({"alg": alg, "kid": "k1", "crit": ["exp"], "exp": 1}), &claims());
        rows.push(row(format!("{alg}: crit header naming an extension, signed"), crit, &key.jwk, Want::Refuse));
        let plain = signed_under(key, alg, &json!({"alg": alg, "kid": "k1", "exp": 1}), &claims());
        rows.push(row(format!("{alg}: the same header without crit"), plain, &key.jwk, Want::Accept));
        // ECDSA: the signature is r || s at the curve's width, exactly.
        if let Kind::P256 | Kind::P384 = kind {
            let (token, width, md) = match kind {
                Kind::P256 => (&good[1].1, 32, MessageDigest::sha256()),
                _ => (&good[1].1, 48, MessageDigest::sha384()),
            };
            let (h, p, sig) = parts(token);
            let input = format!("{h}.{p}");
            rows.push(row(format!("{alg}: signature as DER"), with_signature(token, &jose_to_der(&sig)), &key.jwk, Want::Refuse));
            let wide = ecdsa_jose(&key.private, md, &input, width + 1);
            rows.push(row(format!("{alg}: r and s zero-padded a byte each"), with_signature(token, &wide), &key.jwk, Want::Refuse));
            // A valid signature whose r and s both fit a byte less takes ~2^15 signings to
            // find: cheap on P-256, ~30 s on P-384 in a debug build, so P-256 only.
            if kind == Kind::P256 {
                let narrow = ecdsa_jose(&key.private, md, &input, width - 1);
                rows.push(row(format!("{alg}: r and s a byte short each (leading zeros dropped)"), with_signature(token, &narrow), &key.jwk, Want::Refuse));
            }
            let right = ecdsa_jose(&key.private, md, &input, width);
            rows.push(row(format!("{alg}: the same signing input, exact width"), with_signature(token, &right), &key.jwk, Want::Accept));
        }
        // RSA: the signature is exactly as long as the modulus (RFC 8017 8.1.2, 8.2.2).
        if kind == Kind::Rsa {
            let token = rsa_with_leading_zero(key, alg);
            let (_, _, sig) = parts(&token);
            rows.push(row(format!("{alg}: signature starting with a zero byte"), token.clone(), &key.jwk, Want::Accept));
            rows.push(row(format!("{alg}: the same, that zero byte dropped"), with_signature(&token, &sig[1..]), &key.jwk, Want::Refuse));
        }
    }

    // Wrong curve for the algorithm: the key's own signature, the header naming another curve's algorithm.
    for (what, key, alg) in [
        ("ES256 signed with a P-384 key", &keys.p384, "ES256"),
        ("ES256 signed with a P-521 key", &keys.p521, "ES256"),
        ("ES384 signed with a P-256 key", &keys.p256, "ES384"),
        ("ES384 signed with a P-521 key", &keys.p521, "ES384"),
    ] {
        let token = signed_as(key, alg, &claims());
        rows.push(row(what, token.clone(), &key.jwk, Want::Refuse));
        // The JWK claiming the algorithm's curve while carrying the other curve's point.
        let crv = if alg == "ES256" { "P-256" } else { "P-384" };
        rows.push(row(format!("{what}, JWK crv relabelled {crv}"), token, &key.jwk_with(json!({"crv": crv})), Want::Refuse));
    }

    // Algorithm and key of different types.
    let rs_by_ec = {
        let input = input(&json!({"alg": "RS256", "kid": "k1"}), &claims());
        format!("{input}.{}", b64(&raw_signature(&keys.p256.private, "ES256", &input)))
    };
    rows.push(row("RS256 header, DER ECDSA signature, P-256 JWK", rs_by_ec, &keys.p256.jwk, Want::Refuse));
    for (what, signer, alg, verifier) in [
        ("ES256 header, RSA signature, RSA JWK", &keys.rsa, "ES256", &keys.rsa),
        ("ES256 header, P-256 signature, RSA JWK", &keys.p256, "ES256", &keys.rsa),
        ("RS256 header, RSA signature, P-256 JWK", &keys.rsa, "RS256", &keys.p256),
        ("EdDSA header, Ed25519 signature, P-256 JWK", &keys.ed, "EdDSA", &keys.p256),
        ("EdDSA header, Ed25519 signature, RSA JWK", &keys.ed, "EdDSA", &keys.rsa),
        ("ES256 header, Ed25519 signature, Ed25519 JWK", &keys.ed, "ES256", &keys.ed),
        ("PS256 header, Ed25519 signature, Ed25519 JWK", &keys.ed, "PS256", &keys.ed),
    ] {
        rows.push(row(what, signed_as(signer, alg, &claims()), &verifier.jwk, Want::Refuse));
    }
    // HMAC keyed with the public key (the classic confusion): HS256 is on neither allow-list.
    for (what, secret) in
        [("HS256 keyed with the RSA modulus", keys.rsa.jwk["n"].as_str().unwrap()), ("HS256 keyed with the JWK text", &keys.rsa.jwk.to_string())]
    {
        let input = input(&json!({"alg": "HS256", "kid": "k1"}), &claims());
        let pkey = PKey::hmac(secret.as_bytes()).unwrap();
        let mut signer = Signer::new(MessageDigest::sha256(), &pkey).unwrap();
        signer.update(input.as_bytes()).unwrap();
        rows.push(row(what, format!("{input}.{}", b64(&signer.sign_to_vec().unwrap())), &keys.rsa.jwk, Want::Refuse));
    }

    // What the JWK says about itself: jsonwebtoken's `decode` ignores it (`from_jwk` reads the
    // key material only; choosing keys is left to the application). Ours picks JWKS keys by it.
    let ps = signed_as(&keys.rsa, "PS256", &claims());
    rows.push(row(
        "PS256 token, JWK labelled alg RS256",
        ps.clone(),
        &keys.rsa.jwk_with(json!({"alg": "RS256"})),
        Want::OursStricter("a key published for one algorithm verifies no other (RFC 7517 4.4)"),
    ));
    rows.push(row(
        "PS256 token, JWK use enc",
        ps,
        &keys.rsa.jwk_with(json!({"use": "enc"})),
        Want::OursStricter("an encryption key never verifies a signature (RFC 7517 4.2)"),
    ));
    let weak = Key::rsa_bits(Kind::Rsa, 1024);
    rows.push(row(
        "RS256 with an RSA-1024 key",
        signed_as(&weak, "RS256", &claims()),
        &weak.jwk,
        Want::OursStricter("RSA keys under 2048 bits are refused (NIST SP 800-131A)"),
    ));
    rows.push(row(
        "ES512 on P-521",
        signed_as(&keys.p521, "ES512", &claims()),
        &keys.p521.jwk,
        Want::TheirsCannot("jsonwebtoken has no ES512; jws's own tests cover it"),
    ));
    assert_agree(&rows);
}

/// `jws::sign` makes only what it names: an algorithm the key cannot make (another key
/// type, another curve) is refused, never signed the key's own way under that name —
/// which jsonwebtoken (and any verifier) would then refuse, or worse, read as named.
#[test]
fn sign_refuses_an_algorithm_its_key_cannot_make() {
    let keys = Keys::new();
    let mut made = Vec::new();
    for (key, alg) in [
        (&keys.p256, "RS256"),
        (&keys.p256, "PS256"),
        (&keys.p256, "ES384"),
        (&keys.p256, "EdDSA"),
        (&keys.p384, "ES256"),
        (&keys.p521, "ES256"),
        (&keys.rsa, "ES256"),
        (&keys.rsa, "EdDSA"),
        (&keys.ed, "RS256"),
        (&keys.ed, "ES256"),
        (&keys.rsa, "HS256"),
        (&keys.rsa, "none"),
    ] {
        if let Ok(token) = jws::sign(&key.private, alg, "k1", &claims()) {
            made.push(format!("{alg} with a {:?} key: {:?} by jsonwebtoken", key.kind, theirs(&token, &key.jwk)));
        }
    }
    assert!(made.is_empty(), "jws::sign made tokens it should have refused:\n{}", made.join("\n"));
}
