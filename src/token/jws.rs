//! Compact JWS (RFC 7515) over openssl: verifying ID tokens from upstream IdPs against
//! their JWKS, and signing the gateway's own session tokens. Only asymmetric
//! algorithms exist here; `none` and HMAC are not algorithms this code knows.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey};
use openssl::ecdsa::EcdsaSig;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{HasParams, Id, PKey, PKeyRef, Private, Public};
use openssl::rsa::{Padding, Rsa};
use openssl::sign::{Signer, Verifier};
use serde::Deserialize;
use serde_json::Value;

/// Why a token could not be read or verified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwsError {
    /// Not three base64url parts with a JSON header and payload.
    #[error("the token is not a well-formed JWS")]
    Malformed,
    /// The algorithm is not on the allow-list (this includes `none` and HMAC).
    #[error("the token is signed with {0:?}, which is not accepted")]
    Algorithm(String),
    /// The key cannot be used (wrong type, bad parameters).
    #[error("the signing key is unusable: {0}")]
    Key(String),
    /// The signature does not verify.
    #[error("the token's signature is invalid")]
    Signature,
}

/// The JOSE header fields we read.
#[derive(Debug, Clone, Deserialize)]
pub struct Header {
    /// Algorithm.
    pub alg: String,
    /// Key id.
    #[serde(default)]
    pub kid: Option<String>,
    /// Type of the whole token (RFC 7515 4.1.9), e.g. `JWT`.
    #[serde(default)]
    pub typ: Option<String>,
    /// Critical extensions: we understand none, so any is a refusal.
    #[serde(default)]
    pub crit: Option<Value>,
}

/// A token split into its parts, not yet verified.
#[derive(Debug, Clone)]
pub struct Parsed {
    /// Header.
    pub header: Header,
    /// Payload as JSON.
    pub claims: Value,
    signing_input: String,
    signature: Vec<u8>,
}

/// Splits and decodes a compact JWS without verifying it.
pub fn parse(token: &str) -> Result<Parsed, JwsError> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(JwsError::Malformed);
    };
    let decode = |x: &str| B64URL.decode(x).map_err(|_| JwsError::Malformed);
    let header: Header = serde_json::from_slice(&decode(h)?).map_err(|_| JwsError::Malformed)?;
    let claims: Value = serde_json::from_slice(&decode(p)?).map_err(|_| JwsError::Malformed)?;
    if !claims.is_object() || header.crit.is_some() {
        return Err(JwsError::Malformed);
    }
    Ok(Parsed { header, claims, signing_input: format!("{h}.{p}"), signature: decode(s)? })
}

fn digest(alg: &str) -> Option<MessageDigest> {
    match alg {
        "RS256" | "PS256" | "ES256" => Some(MessageDigest::sha256()),
        "RS384" | "PS384" | "ES384" => Some(MessageDigest::sha384()),
        "RS512" | "PS512" | "ES512" => Some(MessageDigest::sha512()),
        _ => None,
    }
}

/// The curve an ECDSA algorithm is defined on (RFC 7518 3.4), its JWK name, and the size
/// in bytes of one coordinate (so of `r` and of `s`).
fn ec_curve(alg: &str) -> Option<(Nid, &'static str, usize)> {
    match alg {
        "ES256" => Some((Nid::X9_62_PRIME256V1, "P-256", 32)),
        "ES384" => Some((Nid::SECP384R1, "P-384", 48)),
        "ES512" => Some((Nid::SECP521R1, "P-521", 66)),
        _ => None,
    }
}

fn b64_field(jwk: &Value, name: &str) -> Result<Vec<u8>, JwsError> {
    let s = jwk.get(name).and_then(Value::as_str).ok_or_else(|| JwsError::Key(format!("no {name}")))?;
    B64URL.decode(s.trim_end_matches('=')).map_err(|_| JwsError::Key(format!("{name} is not base64url")))
}

/// A public key from a JWK (RSA, EC P-256/384/521, OKP Ed25519).
pub fn public_key(jwk: &Value) -> Result<PKey<Public>, JwsError> {
    let kty = jwk.get("kty").and_then(Value::as_str).unwrap_or_default();
    let err = |e: openssl::error::ErrorStack| JwsError::Key(e.to_string());
    match kty {
        "RSA" => {
            let n = BigNum::from_slice(&b64_field(jwk, "n")?).map_err(err)?;
            let e = BigNum::from_slice(&b64_field(jwk, "e")?).map_err(err)?;
            let rsa = Rsa::from_public_components(n, e).map_err(err)?;
            if rsa.size() < 256 {
                return Err(JwsError::Key("RSA keys under 2048 bits are refused".into()));
            }
            PKey::from_rsa(rsa).map_err(err)
        }
        "EC" => {
            let nid = match jwk.get("crv").and_then(Value::as_str) {
                Some("P-256") => Nid::X9_62_PRIME256V1,
                Some("P-384") => Nid::SECP384R1,
                Some("P-521") => Nid::SECP521R1,
                other => return Err(JwsError::Key(format!("curve {other:?}"))),
            };
            let group = EcGroup::from_curve_name(nid).map_err(err)?;
            let x = BigNum::from_slice(&b64_field(jwk, "x")?).map_err(err)?;
            let y = BigNum::from_slice(&b64_field(jwk, "y")?).map_err(err)?;
            let key = EcKey::from_public_key_affine_coordinates(&group, &x, &y).map_err(err)?;
            key.check_key().map_err(err)?;
            PKey::from_ec_key(key).map_err(err)
        }
        "OKP" if jwk.get("crv").and_then(Value::as_str) == Some("Ed25519") => PKey::public_key_from_raw_bytes(&b64_field(jwk, "x")?, Id::ED25519).map_err(err),
        other => Err(JwsError::Key(format!("key type {other:?}"))),
    }
}

/// Whether a JWK may verify `alg`: its `kty`, for ECDSA its curve (ES256 only on P-256,
/// ES384 on P-384, ES512 on P-521, whether or not the key names an `alg`), and its own
/// `alg` and `use` when set.
pub fn key_fits(jwk: &Value, alg: &str) -> bool {
    let kty = jwk.get("kty").and_then(Value::as_str).unwrap_or_default();
    let family = match alg {
        a if a.starts_with("RS") || a.starts_with("PS") => "RSA",
        a if a.starts_with("ES") => match ec_curve(a) {
            Some((_, crv, _)) if jwk.get("crv").and_then(Value::as_str) == Some(crv) => "EC",
            _ => return false,
        },
        "EdDSA" => "OKP",
        _ => return false,
    };
    kty == family && jwk.get("alg").and_then(Value::as_str).is_none_or(|a| a == alg) && jwk.get("use").and_then(Value::as_str).is_none_or(|u| u == "sig")
}

/// Whether `key` can make or check `alg`: the algorithm's key type (an EC key never
/// verifies an "RS256" token, nor makes one), and for ECDSA the algorithm's own curve
/// (RFC 7518 3.4).
fn key_for<T: HasParams>(key: &PKeyRef<T>, alg: &str) -> Result<(), JwsError> {
    let id = key.id();
    let fits = match alg {
        "EdDSA" => id == Id::ED25519,
        a if a.starts_with("RS") || a.starts_with("PS") => id == Id::RSA,
        a if a.starts_with("ES") => id == Id::EC,
        _ => return Err(JwsError::Algorithm(alg.into())),
    };
    if !fits {
        return Err(JwsError::Key(format!("{alg} needs a key of its own type")));
    }
    if let Some((nid, _, _)) = ec_curve(alg) {
        if key.ec_key().ok().and_then(|k| k.group().curve_name()) != Some(nid) {
            return Err(JwsError::Key(format!("{alg} needs a key on its own curve")));
        }
    }
    Ok(())
}

/// Verifies the signature of `parsed` with `key` for its (already allowed) algorithm.
pub fn verify(parsed: &Parsed, key: &PKey<Public>) -> Result<(), JwsError> {
    let alg = parsed.header.alg.as_str();
    let input = parsed.signing_input.as_bytes();
    let sig = &parsed.signature;
    let err = |_| JwsError::Signature;
    key_for(key, alg)?;
    let ok = if alg == "EdDSA" {
        let mut v = Verifier::new_without_digest(key).map_err(err)?;
        v.verify_oneshot(sig, input).map_err(err)?
    } else {
        let md = digest(alg).ok_or_else(|| JwsError::Algorithm(alg.into()))?;
        let mut v = Verifier::new(md, key).map_err(err)?;
        if alg.starts_with("PS") {
            v.set_rsa_padding(Padding::PKCS1_PSS).map_err(err)?;
            v.set_rsa_pss_saltlen(openssl::sign::RsaPssSaltlen::DIGEST_LENGTH).map_err(err)?;
        }
        let der;
        let sig: &[u8] = if alg.starts_with("ES") {
            // RFC 7518 3.4: the signature is r || s, each exactly one coordinate long (64, 96
            // or 132 bytes); the key is on the algorithm's curve (`key_for`). openssl wants DER.
            let (_, _, size) = ec_curve(alg).ok_or_else(|| JwsError::Algorithm(alg.into()))?;
            if sig.len() != 2 * size {
                return Err(JwsError::Signature);
            }
            let half = size;
            let r = BigNum::from_slice(&sig[..half]).map_err(err)?;
            let s = BigNum::from_slice(&sig[half..]).map_err(err)?;
            der = EcdsaSig::from_private_components(r, s).and_then(|x| x.to_der()).map_err(err)?;
            &der
        } else {
            // RFC 8017 8.1.2 and 8.2.2: an RSA signature is exactly as long as the modulus.
            // OpenSSL's PSS path reads a shorter one (leading zero bytes dropped) as the same
            // number: a second text for one signature (found by jws_differential).
            if sig.len() != key.size() {
                return Err(JwsError::Signature);
            }
            sig
        };
        v.update(input).map_err(err)?;
        v.verify(sig).map_err(err)?
    };
    if ok {
        Ok(())
    } else {
        Err(JwsError::Signature)
    }
}

/// Signs `claims` as a compact JWS with `alg` (any algorithm [`verify`] knows) and `kid`.
/// The key must be one `alg` is made with (its type, and for ECDSA its curve): it is
/// never used its own way under another algorithm's name.
pub fn sign(key: &PKey<Private>, alg: &str, kid: &str, claims: &Value) -> Result<String, JwsError> {
    sign_typed(key, alg, kid, "JWT", claims)
}

/// [`sign`] with the header's `typ` given (RFC 7515 4.1.9), e.g. `logout+jwt`.
pub fn sign_typed(key: &PKey<Private>, alg: &str, kid: &str, typ: &str, claims: &Value) -> Result<String, JwsError> {
    key_for(key, alg)?;
    let header = serde_json::json!({"alg": alg, "typ": typ, "kid": kid});
    let input = format!("{}.{}", B64URL.encode(header.to_string()), B64URL.encode(claims.to_string()));
    let err = |e: openssl::error::ErrorStack| JwsError::Key(e.to_string());
    let mut sig = if alg == "EdDSA" {
        Signer::new_without_digest(key).and_then(|mut s| s.sign_oneshot_to_vec(input.as_bytes())).map_err(err)?
    } else {
        let md = digest(alg).ok_or_else(|| JwsError::Algorithm(alg.into()))?;
        let mut signer = Signer::new(md, key).map_err(err)?;
        if alg.starts_with("PS") {
            signer.set_rsa_padding(Padding::PKCS1_PSS).map_err(err)?;
            signer.set_rsa_pss_saltlen(openssl::sign::RsaPssSaltlen::DIGEST_LENGTH).map_err(err)?;
        }
        signer.update(input.as_bytes()).map_err(err)?;
        signer.sign_to_vec().map_err(err)?
    };
    if let Some((_, _, size)) = ec_curve(alg) {
        let parsed = EcdsaSig::from_der(&sig).map_err(err)?;
        let size = size as i32;
        let mut raw = parsed.r().to_vec_padded(size).map_err(err)?;
        raw.extend(parsed.s().to_vec_padded(size).map_err(err)?);
        sig = raw;
    }
    Ok(format!("{input}.{}", B64URL.encode(sig)))
}

/// The OIDC `at_hash`/`c_hash` of a value for `alg`: the left half of its digest.
pub fn half_hash(alg: &str, value: &str) -> Option<String> {
    let md = if alg == "EdDSA" { MessageDigest::sha512() } else { digest(alg)? };
    let d = openssl::hash::hash(md, value.as_bytes()).ok()?;
    Some(B64URL.encode(&d[..d.len() / 2]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(alg: crate::token::Alg) -> (PKey<Private>, Value) {
        let (_, pem, jwk) = crate::token::make(alg).unwrap();
        (PKey::private_key_from_pem(pem.as_bytes()).unwrap(), jwk)
    }

    #[test]
    fn sign_then_verify_es256_and_rs256() {
        for (alg, name) in [(crate::token::Alg::Es256, "ES256"), (crate::token::Alg::Rs256, "RS256")] {
            let (key, jwk) = pair(alg);
            let t = sign(&key, name, "k1", &serde_json::json!({"sub": "a"})).unwrap();
            let p = parse(&t).unwrap();
            assert_eq!(p.header.kid.as_deref(), Some("k1"));
            assert!(key_fits(&jwk, name));
            verify(&p, &public_key(&jwk).unwrap()).unwrap();
            // Tampered payload: the signature no longer matches.
            let mut parts: Vec<&str> = t.split('.').collect();
            let evil = B64URL.encode(r#"{"sub":"b"}"#);
            parts[1] = &evil;
            let p = parse(&parts.join(".")).unwrap();
            assert_eq!(verify(&p, &public_key(&jwk).unwrap()), Err(JwsError::Signature));
            // Another key does not verify it.
            let (_, other) = pair(alg);
            assert_eq!(verify(&parse(&t).unwrap(), &public_key(&other).unwrap()), Err(JwsError::Signature));
        }
    }

    #[test]
    fn malformed_tokens_and_unfit_keys() {
        for bad in ["", "a.b", "a.b.c.d", "!!.e30.x", "e30.e30"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        let crit = format!("{}.{}.", B64URL.encode(r#"{"alg":"ES256","crit":["x"]}"#), B64URL.encode("{}"));
        assert_eq!(parse(&crit).unwrap_err(), JwsError::Malformed);
        let (_, ec) = pair(crate::token::Alg::Es256);
        assert!(!key_fits(&ec, "RS256"));
        assert!(!key_fits(&ec, "HS256"));
        assert!(!key_fits(&ec, "none"));
        assert_eq!(half_hash("RS256", "x").unwrap().len(), 22);
    }

    /// An EC key on `nid` and its JWK (no `alg`, as many IdPs publish them).
    fn ec_pair(nid: Nid, width: usize) -> (PKey<Private>, Value) {
        let group = EcGroup::from_curve_name(nid).unwrap();
        let ec = EcKey::generate(&group).unwrap();
        let mut ctx = openssl::bn::BigNumContext::new().unwrap();
        let (mut x, mut y) = (BigNum::new().unwrap(), BigNum::new().unwrap());
        ec.public_key().affine_coordinates(&group, &mut x, &mut y, &mut ctx).unwrap();
        let crv = match nid {
            Nid::X9_62_PRIME256V1 => "P-256",
            Nid::SECP384R1 => "P-384",
            _ => "P-521",
        };
        let jwk = serde_json::json!({"kty": "EC", "crv": crv, "x": B64URL.encode(x.to_vec_padded(width as i32).unwrap()),
            "y": B64URL.encode(y.to_vec_padded(width as i32).unwrap())});
        (PKey::from_ec_key(ec).unwrap(), jwk)
    }

    /// A token with header `alg`, signed with `md` by `key`, r and s each `width` bytes
    /// (zero-padded). With `width` under the usual size, signs again until both fit
    /// (a valid signature of that shorter length; `s` may be replaced by `n - s`).
    fn ec_token(key: &PKey<Private>, alg: &str, md: MessageDigest, width: usize) -> String {
        let input = format!("{}.{}", B64URL.encode(format!(r#"{{"alg":"{alg}"}}"#)), B64URL.encode(r#"{"sub":"a"}"#));
        let ec = key.ec_key().unwrap();
        let mut order = BigNum::new().unwrap();
        ec.group().order(&mut order, &mut openssl::bn::BigNumContext::new().unwrap()).unwrap();
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
                return format!("{input}.{}", B64URL.encode(raw));
            }
        }
        panic!("no signature of width {width}");
    }

    #[test]
    fn ecdsa_curve_is_bound_to_the_algorithm_and_the_signature_has_its_exact_size() {
        let (p256, j256) = ec_pair(Nid::X9_62_PRIME256V1, 32);
        let (p384, j384) = ec_pair(Nid::SECP384R1, 48);
        let (p521, j521) = ec_pair(Nid::SECP521R1, 66);
        let (sha256, sha384, sha512) = (MessageDigest::sha256(), MessageDigest::sha384(), MessageDigest::sha512());
        // (what, key, its JWK, header alg, digest, width of r and of s, accepted)
        type Case<'a> = (&'a str, &'a PKey<Private>, &'a Value, &'a str, MessageDigest, usize, bool);
        let cases: Vec<Case> = vec![
            ("ES256 on P-256, 64 bytes", &p256, &j256, "ES256", sha256, 32, true),
            ("ES384 on P-384, 96 bytes", &p384, &j384, "ES384", sha384, 48, true),
            ("ES512 on P-521, 132 bytes", &p521, &j521, "ES512", sha512, 66, true),
            ("ES256 with a P-384 key", &p384, &j384, "ES256", sha256, 48, false),
            ("ES256 with a P-521 key", &p521, &j521, "ES256", sha256, 66, false),
            ("ES384 with a P-256 key", &p256, &j256, "ES384", sha384, 32, false),
            ("ES512 with a P-384 key", &p384, &j384, "ES512", sha512, 48, false),
            ("ES256, 66 bytes (zero-padded)", &p256, &j256, "ES256", sha256, 33, false),
            ("ES256, 62 bytes (leading zeros dropped)", &p256, &j256, "ES256", sha256, 31, false),
            ("ES384, 98 bytes", &p384, &j384, "ES384", sha384, 49, false),
            ("ES512, 134 bytes", &p521, &j521, "ES512", sha512, 67, false),
            ("ES512, 130 bytes", &p521, &j521, "ES512", sha512, 65, false),
        ];
        for (what, key, jwk, alg, md, width, ok) in cases {
            let token = ec_token(key, alg, md, width);
            let verdict = verify(&parse(&token).unwrap(), &public_key(jwk).unwrap());
            assert_eq!(verdict.is_ok(), ok, "{what}: {verdict:?}");
        }
        // An EC key never verifies a token that says RS256 (openssl would take a DER ECDSA signature).
        let input = format!("{}.{}", B64URL.encode(r#"{"alg":"RS256"}"#), B64URL.encode(r#"{"sub":"a"}"#));
        let mut signer = Signer::new(MessageDigest::sha256(), &p256).unwrap();
        signer.update(input.as_bytes()).unwrap();
        let der = format!("{input}.{}", B64URL.encode(signer.sign_to_vec().unwrap()));
        assert!(verify(&parse(&der).unwrap(), &public_key(&j256).unwrap()).is_err(), "RS256 with an EC key");
        // Our own signer makes the exact size for each curve.
        for (key, jwk, alg) in [(&p256, &j256, "ES256"), (&p384, &j384, "ES384"), (&p521, &j521, "ES512")] {
            let t = sign(key, alg, "k", &serde_json::json!({"sub": "a"})).unwrap();
            verify(&parse(&t).unwrap(), &public_key(jwk).unwrap()).unwrap_or_else(|e| panic!("{alg}: {e}"));
        }
    }

    #[test]
    fn jwks_candidates_fit_the_algorithms_curve() {
        let (_, j256) = ec_pair(Nid::X9_62_PRIME256V1, 32);
        let (_, j384) = ec_pair(Nid::SECP384R1, 48);
        let (_, j521) = ec_pair(Nid::SECP521R1, 66);
        let mut no_crv = j256.clone();
        no_crv.as_object_mut().unwrap().remove("crv");
        let mut labelled = j384.clone();
        labelled["alg"] = serde_json::json!("ES256");
        for (what, jwk, alg, fits) in [
            ("P-256 for ES256", &j256, "ES256", true),
            ("P-384 for ES384", &j384, "ES384", true),
            ("P-521 for ES512", &j521, "ES512", true),
            ("P-384 without alg for ES256", &j384, "ES256", false),
            ("P-521 without alg for ES256", &j521, "ES256", false),
            ("P-256 without alg for ES384", &j256, "ES384", false),
            ("P-384 labelled ES256", &labelled, "ES256", false),
            ("EC without crv", &no_crv, "ES256", false),
            ("P-256 for EdDSA", &j256, "EdDSA", false),
            ("P-256 for ES", &j256, "ES", false),
            ("P-256 for ES256K", &j256, "ES256K", false),
        ] {
            assert_eq!(key_fits(jwk, alg), fits, "{what}");
        }
    }
}
