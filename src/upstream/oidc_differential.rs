//! Differential test of the ID-token checks (`oidc::verify_id_token`, issue #18) against
//! the `openidconnect` crate (4.1): a table of ID tokens, each verified by both against
//! the same JWKS, issuer, client id, nonce and clock.
//!
//! Ours: `verify_id_token` with a JWKS cache fetching from a JWKS served on loopback, a
//! 60 s skew. Theirs: `CoreIdTokenVerifier::new_public_client` with the same keys, the
//! same allowed algorithms, `set_time_fn` set to now minus the skew (the crate has no
//! leeway; a time function is how `exp` gets one), then `at_hash` compared by hand with
//! `AccessTokenHash::from_token`, as the crate's documentation says to (it never checks
//! `at_hash` itself).
//!
//! Where the crate checks less by design, the row says `OursStricter` and why:
//! - `azp` is not checked at all (see the comment on steps 4-5 in its `verify_claims`);
//! - `nbf` is not a field of its ID token claims, so it is ignored;
//! - `iat` is accepted whatever it is unless the application sets an issue-time verifier;
//! - an empty `sub` deserializes as a subject.
//!
//! Not compared: signature verification as such (the JWS differential against
//! jsonwebtoken covers it; here only which key and algorithm are used), and the userinfo
//! and code exchange steps, which the crate does not do from a token alone.

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use openidconnect::core::{CoreIdToken, CoreIdTokenVerifier, CoreJsonWebKeySet, CoreJwsSigningAlgorithm};
use openidconnect::{AccessToken, AccessTokenHash, ClientId, IssuerUrl, Nonce};
use openssl::pkey::{PKey, Private};
use serde_json::{json, Value};

use super::jwks::JwksCache;
use super::oidc::{verify_id_token, Checks};
use crate::clock::Clock;
use crate::connection::OidcSettings;
use crate::token::jws;

const NOW: i64 = 1_700_000_000;
const SKEW: i64 = 60;
const ISSUER: &str = "https://idp.example.test";
const CLIENT: &str = "app";
const NONCE: &str = "n-4f7d0c2b9a";
const ACCESS: &str = "at-5e1b8d3c77";

/// The IdP: an RSA key (kid `k1`) and a P-256 key (kid `e1`), both in its JWKS, and a key
/// it does not publish.
struct Idp {
    rsa: PKey<Private>,
    ec: PKey<Private>,
    stranger: PKey<Private>,
    jwks: Value,
}

impl Idp {
    fn new() -> Idp {
        let key = |alg, kid: &str| {
            let (_, pem, mut jwk) = crate::token::make(alg).unwrap();
            jwk["kid"] = json!(kid);
            (PKey::private_key_from_pem(pem.as_bytes()).unwrap(), jwk)
        };
        let (rsa, rsa_jwk) = key(crate::token::Alg::Rs256, "k1");
        let (ec, ec_jwk) = key(crate::token::Alg::Es256, "e1");
        let (stranger, _) = key(crate::token::Alg::Rs256, "k1");
        Idp { rsa, ec, stranger, jwks: json!({"keys": [rsa_jwk, ec_jwk]}) }
    }
}

fn settings(jwks_uri: &str) -> OidcSettings {
    crate::testkit::oidc_settings(ISSUER, CLIENT, Some(jwks_uri))
}

/// Their allowed algorithms: the connection's.
const THEIR_ALGS: [CoreJwsSigningAlgorithm; 2] = [CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256, CoreJwsSigningAlgorithm::EcdsaP256Sha256];

/// A JWKS on loopback, for our JWKS cache.
async fn serve_jwks(jwks: Value) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let body = Arc::new(jwks.to_string());
    let app = axum::Router::new().route(
        "/jwks.json",
        axum::routing::get(move || {
            let body = body.clone();
            async move { ([("content-type", "application/json")], body.as_str().to_owned()) }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/jwks.json")
}

async fn ours(o: &OidcSettings, cache: &JwksCache, token: &str, access: Option<&str>) -> Result<(), String> {
    let checks = Checks { now: NOW * 1000, skew_ms: SKEW * 1000 };
    verify_id_token(o, token, NONCE, access, cache, checks, &mut Default::default()).await.map(|_| ()).map_err(|e| e.to_string())
}

fn theirs(jwks: &CoreJsonWebKeySet, token: &str, access: Option<&str>) -> Result<(), String> {
    let id_token: CoreIdToken = token.parse().map_err(|e| format!("not an ID token: {e}"))?;
    let verifier = CoreIdTokenVerifier::new_public_client(ClientId::new(CLIENT.into()), IssuerUrl::new(ISSUER.into()).unwrap(), jwks.clone())
        .set_allowed_algs(THEIR_ALGS)
        .set_time_fn(|| chrono::DateTime::from_timestamp(NOW - SKEW, 0).unwrap());
    let claims = id_token.claims(&verifier, &Nonce::new(NONCE.into())).map_err(|e| e.to_string())?;
    if let (Some(expected), Some(access)) = (claims.access_token_hash(), access) {
        let alg = id_token.signing_alg().map_err(|e| e.to_string())?;
        let key = id_token.signing_key(&verifier).map_err(|e| e.to_string())?;
        let actual = AccessTokenHash::from_token(&AccessToken::new(access.into()), alg, key).map_err(|e| e.to_string())?;
        if actual != *expected {
            return Err("at_hash does not match the access token".into());
        }
    }
    Ok(())
}

/// The expected verdicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    Accept,
    Refuse,
    /// Ours refuses what openidconnect accepts, for the reason given.
    OursStricter(&'static str),
}

struct Row {
    what: &'static str,
    token: String,
    access: Option<&'static str>,
    want: Want,
}

/// The claims of a valid ID token for this login.
fn good() -> Value {
    json!({
        "iss": ISSUER, "sub": "alice", "aud": CLIENT, "exp": NOW + 300, "iat": NOW, "nonce": NONCE,
        "at_hash": jws::half_hash("RS256", ACCESS).unwrap(),
    })
}

/// `good()` changed by `edit`.
fn claims(edit: impl FnOnce(&mut serde_json::Map<String, Value>)) -> Value {
    let mut c = good();
    edit(c.as_object_mut().unwrap());
    c
}

fn b64(s: &str) -> String {
    B64URL.encode(s)
}

fn rows(idp: &Idp) -> Vec<Row> {
    let rs = |c: Value| jws::sign(&idp.rsa, "RS256", "k1", &c).unwrap();
    let es = |c: Value| {
        let mut c = c;
        c["at_hash"] = json!(jws::half_hash("ES256", ACCESS).unwrap());
        jws::sign(&idp.ec, "ES256", "e1", &c).unwrap()
    };
    // RS256 by the IdP's key under a header of our choosing (jws::sign writes its own).
    let with_header = |header: Value, c: Value| {
        let input = format!("{}.{}", b64(&header.to_string()), b64(&c.to_string()));
        let mut signer = openssl::sign::Signer::new(openssl::hash::MessageDigest::sha256(), &idp.rsa).unwrap();
        signer.update(input.as_bytes()).unwrap();
        format!("{input}.{}", B64URL.encode(signer.sign_to_vec().unwrap()))
    };
    let row = |what, token, want| Row { what, token, access: Some(ACCESS), want };
    vec![
        row("valid, RS256", rs(good()), Want::Accept),
        row("valid, ES256", es(good()), Want::Accept),
        row("aud as a list of our client alone", rs(claims(|c| _ = c.insert("aud".into(), json!([CLIENT])))), Want::Accept),
        // Issuer.
        row("iss another issuer", rs(claims(|c| _ = c.insert("iss".into(), json!("https://evil.example.test")))), Want::Refuse),
        row("iss with a trailing slash", rs(claims(|c| _ = c.insert("iss".into(), json!(format!("{ISSUER}/"))))), Want::Refuse),
        row("iss missing", rs(claims(|c| _ = c.remove("iss"))), Want::Refuse),
        // Audience and authorized party.
        row("aud another client", rs(claims(|c| _ = c.insert("aud".into(), json!("other")))), Want::Refuse),
        row("aud missing", rs(claims(|c| _ = c.remove("aud"))), Want::Refuse),
        row("aud an empty list", rs(claims(|c| _ = c.insert("aud".into(), json!([])))), Want::Refuse),
        row("aud ours and another, no azp", rs(claims(|c| _ = c.insert("aud".into(), json!([CLIENT, "other"])))), Want::Refuse),
        row(
            "aud ours and another, azp ours",
            rs(claims(|c| {
                c.insert("aud".into(), json!([CLIENT, "other"]));
                c.insert("azp".into(), json!(CLIENT));
            })),
            Want::Refuse,
        ),
        row("aud ours and a number", rs(claims(|c| _ = c.insert("aud".into(), json!([CLIENT, 5])))), Want::Refuse),
        row("azp ours", rs(claims(|c| _ = c.insert("azp".into(), json!(CLIENT)))), Want::Accept),
        row(
            "azp another client, aud ours",
            rs(claims(|c| _ = c.insert("azp".into(), json!("other")))),
            Want::OursStricter("OIDC Core 3.1.3.7 step 5: an azp is our client id; openidconnect does not check azp"),
        ),
        // Times (skew 60 s).
        row("exp skew + 1 s ago", rs(claims(|c| _ = c.insert("exp".into(), json!(NOW - SKEW - 1)))), Want::Refuse),
        row("exp exactly skew ago", rs(claims(|c| _ = c.insert("exp".into(), json!(NOW - SKEW)))), Want::Refuse),
        row("exp skew - 1 s ago", rs(claims(|c| _ = c.insert("exp".into(), json!(NOW - SKEW + 1)))), Want::Accept),
        row("exp missing", rs(claims(|c| _ = c.remove("exp"))), Want::Refuse),
        row("exp a string", rs(claims(|c| _ = c.insert("exp".into(), json!((NOW + 300).to_string())))), Want::Refuse),
        row(
            "nbf skew + 1 s ahead",
            rs(claims(|c| _ = c.insert("nbf".into(), json!(NOW + SKEW + 1)))),
            Want::OursStricter("RFC 7519 4.1.5: not before nbf; openidconnect's ID token claims have no nbf"),
        ),
        row("nbf exactly skew ahead", rs(claims(|c| _ = c.insert("nbf".into(), json!(NOW + SKEW)))), Want::Accept),
        row("nbf in the past", rs(claims(|c| _ = c.insert("nbf".into(), json!(NOW - 10)))), Want::Accept),
        row(
            "iat skew + 1 s ahead",
            rs(claims(|c| _ = c.insert("iat".into(), json!(NOW + SKEW + 1)))),
            Want::OursStricter(
                "OIDC Core 3.1.3.7 step 10 leaves iat to the client: ours refuses a token issued in the future; openidconnect accepts any iat by default",
            ),
        ),
        row("iat exactly skew ahead", rs(claims(|c| _ = c.insert("iat".into(), json!(NOW + SKEW)))), Want::Accept),
        row("iat missing", rs(claims(|c| _ = c.remove("iat"))), Want::Refuse),
        // Nonce.
        row("nonce missing", rs(claims(|c| _ = c.remove("nonce"))), Want::Refuse),
        row("nonce of another login", rs(claims(|c| _ = c.insert("nonce".into(), json!("n-other")))), Want::Refuse),
        row("nonce a number", rs(claims(|c| _ = c.insert("nonce".into(), json!(7)))), Want::Refuse),
        // at_hash.
        row(
            "at_hash of another access token",
            rs(claims(|c| _ = c.insert("at_hash".into(), json!(jws::half_hash("RS256", "at-other").unwrap())))),
            Want::Refuse,
        ),
        row("at_hash with the ES256 token's hash length", es(good()), Want::Accept),
        Row { what: "at_hash, no access token to compare", token: rs(good()), access: None, want: Want::Accept },
        row("at_hash absent", rs(claims(|c| _ = c.remove("at_hash"))), Want::Accept),
        // Subject.
        row("sub missing", rs(claims(|c| _ = c.remove("sub"))), Want::Refuse),
        row("sub empty", rs(claims(|c| _ = c.insert("sub".into(), json!("")))), Want::OursStricter("an empty sub names no one (OIDC Core 2)")),
        // Algorithm and key.
        row("RS384, not allowed", jws::sign(&idp.rsa, "RS384", "k1", &good()).unwrap(), Want::Refuse),
        row("signed by a key the IdP does not publish, kid k1", jws::sign(&idp.stranger, "RS256", "k1", &good()).unwrap(), Want::Refuse),
        row("kid unknown", jws::sign(&idp.rsa, "RS256", "k9", &good()).unwrap(), Want::Refuse),
        row("no kid, one key fits the algorithm", with_header(json!({"alg": "RS256"}), good()), Want::Accept),
        row("alg none, no signature", format!("{}.{}.", b64(r#"{"alg":"none"}"#), b64(&good().to_string())), Want::Refuse),
        row(
            "alg RS256 header swapped to ES256, kid e1",
            {
                let token = rs(good());
                format!("{}.{}", b64(&json!({"alg": "ES256", "kid": "e1"}).to_string()), token.split_once('.').unwrap().1)
            },
            Want::Refuse,
        ),
        row(
            "payload changed after signing",
            {
                let token = rs(good());
                let (head, rest) = token.split_once('.').unwrap();
                let sig = rest.split_once('.').unwrap().1;
                format!("{head}.{}.{sig}", b64(&claims(|c| _ = c.insert("sub".into(), json!("mallory"))).to_string()))
            },
            Want::Refuse,
        ),
        // Explicit typing (RFC 8725 3.11).
        row("typ JWT", with_header(json!({"alg": "RS256", "kid": "k1", "typ": "JWT"}), good()), Want::Accept),
        row("typ absent", with_header(json!({"alg": "RS256", "kid": "k1"}), good()), Want::Accept),
        row("typ at+jwt (an access token, RFC 9068)", with_header(json!({"alg": "RS256", "kid": "k1", "typ": "at+jwt"}), good()), Want::Refuse),
    ]
}

#[tokio::test]
async fn id_token_checks_agree_with_openidconnect() {
    let idp = Idp::new();
    let uri = serve_jwks(idp.jwks.clone()).await;
    let o = settings(&uri);
    let http = crate::outbound::client(std::time::Duration::from_secs(5)).unwrap();
    let cache = JwksCache::new(http, Clock::fixed(NOW * 1000), 60_000);
    let their_keys: CoreJsonWebKeySet = serde_json::from_value(idp.jwks.clone()).unwrap();
    let rows = rows(&idp);
    let mut wrong = Vec::new();
    println!("ours   theirs  want          case");
    for r in &rows {
        let o = ours(&o, &cache, &r.token, r.access).await;
        let t = theirs(&their_keys, &r.token, r.access);
        let verdict = |v: &Result<(), String>| if v.is_ok() { "accept" } else { "refuse" };
        let want = match r.want {
            Want::Accept => (true, true),
            Want::Refuse => (false, false),
            Want::OursStricter(_) => (false, true),
        };
        println!("{:<6} {:<7} {:<13} {}", verdict(&o), verdict(&t), format!("{:?}", r.want).split('(').next().unwrap_or(""), r.what);
        if (o.is_ok(), t.is_ok()) != want {
            wrong.push(format!("{}: want {:?}, ours {o:?}, openidconnect {t:?}", r.what, r.want));
        }
    }
    assert!(wrong.is_empty(), "{} of {} verdicts differ from the wanted ones:\n{}", wrong.len(), rows.len(), wrong.join("\n"));
}
