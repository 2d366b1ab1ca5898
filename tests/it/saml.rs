//! SAML service provider, the start of a login, against a real IdP (pysaml2 + xmlsec1):
//! our SP metadata imported by the IdP as is, AuthnRequests over HTTP-Redirect that the
//! IdP accepts (unsigned, then signed and verified by the IdP, and refused when
//! tampered), RelayState and InResponseTo carried through. The ACS refuses every
//! response until response verification lands (issue #4).

use std::io::Read;
use std::process::Command;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::login::Browser;
use crate::peers::{peers_dir, saml_metadata as idp_keys};
use crate::support::Gateway;

fn hidden(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let end = html[start..].find('"')? + start;
    Some(html[start..end].replace("&#x27;", "'").replace("&quot;", "\"").replace("&amp;", "&"))
}

fn query(url: &reqwest::Url, k: &str) -> Option<String> {
    url.query_pairs().find(|(n, _)| n == k).map(|(_, v)| v.to_string())
}

#[tokio::test]
async fn authn_requests_reach_a_real_idp_unsigned_signed_and_tampered() {
    let gw = Gateway::start().await;
    let keys = tempfile::tempdir().unwrap();
    let _ = idp_keys(keys.path(), "http://127.0.0.1:9", &[]);
    let sp_metadata_url = format!("{}/saml/con_s/metadata", gw.base);
    let mut cmd = Command::new(peers_dir().join(".venv/bin/python"));
    cmd.arg(peers_dir().join("saml/idp.py")).args(["serve", "--keys"]).arg(keys.path()).args(["--sp-metadata-url", &sp_metadata_url]);
    let idp = crate::peers::spawn(cmd);
    let (s, c) = gw.admin(Method::POST, "/connections", Some(json!({"id": "con_s", "display_name": "pysaml2", "protocol": "saml",
        "saml": {"idp_metadata_url": idp.ready["metadata_url"]}}))).await;
    assert_eq!(s, StatusCode::CREATED, "{c}");

    // Our SP metadata says what we do.
    let md = reqwest::get(&sp_metadata_url).await.unwrap().text().await.unwrap();
    assert!(md.contains(&format!("entityID=\"{sp_metadata_url}\"")) && md.contains("AuthnRequestsSigned=\"false\"") && md.contains("WantAssertionsSigned=\"true\""), "{md}");
    assert!(md.contains(&format!("Location=\"{}/saml/con_s/acs\"", gw.base)));

    let acs = format!("{}/saml/con_s/acs", gw.base);
    let login = |tamper: bool| {
        let gw_base = gw.base.clone();
        async move {
            let b = Browser::new();
            let r = b.http.get(format!("{gw_base}/login/con_s")).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::SEE_OTHER);
            let mut url = reqwest::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
            if tamper {
                let pairs: Vec<(String, String)> = url.query_pairs().map(|(k, v)| {
                    let v = if k == "RelayState" { format!("{v}x") } else { v.to_string() };
                    (k.to_string(), v)
                }).collect();
                url.query_pairs_mut().clear().extend_pairs(pairs);
            }
            let resp = b.http.get(url.clone()).send().await.unwrap();
            (url, resp.status(), resp.text().await.unwrap(), b)
        }
    };

    let (url, status, html, b) = login(false).await;
    assert_eq!(status, StatusCode::OK, "the IdP accepted our AuthnRequest: {html}");
    assert_eq!(query(&url, "Signature"), None);
    let mut xml = String::new();
    flate2::read::DeflateDecoder::new(&B64.decode(query(&url, "SAMLRequest").unwrap()).unwrap()[..]).read_to_string(&mut xml).unwrap();
    let id_start = xml.find("ID=\"").unwrap() + 4;
    let request_id = &xml[id_start..id_start + xml[id_start..].find('"').unwrap()];
    assert_eq!(request_id.len(), 33, "an underscore and 128 random bits in hex: {request_id}");
    assert!(html.contains(&format!("action=\"{acs}\"")), "{html}");
    assert_eq!(hidden(&html, "RelayState"), query(&url, "RelayState"), "RelayState comes back");
    let response = String::from_utf8(B64.decode(hidden(&html, "SAMLResponse").unwrap()).unwrap()).unwrap();
    assert!(response.contains(&format!("InResponseTo=\"{request_id}\"")), "{response}");

    // Until the ACS verifies responses, it refuses them all and creates nothing.
    let r = b.http.post(&acs).form(&[("SAMLResponse", hidden(&html, "SAMLResponse").unwrap()), ("RelayState", hidden(&html, "RelayState").unwrap())]).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_IMPLEMENTED);
    let (_, users) = gw.admin(Method::GET, "/users", None).await;
    assert_eq!(users, json!([]));

    // Signed requests: the gateway makes the key pair, the IdP reads our metadata again
    // (now with the certificate) and verifies the signature.
    let (s, c) = gw.admin(Method::PATCH, "/connections/con_s", Some(json!({"saml": {"sign_requests": true}}))).await;
    assert_eq!((s, &c["saml"]["sp_private_key_set"]), (StatusCode::OK, &json!(true)), "{c}");
    let md = reqwest::get(&sp_metadata_url).await.unwrap().text().await.unwrap();
    assert!(md.contains("AuthnRequestsSigned=\"true\"") && md.contains("X509Certificate"), "{md}");
    let (url, status, html, _) = login(false).await;
    assert_eq!(query(&url, "SigAlg").as_deref(), Some("http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"));
    assert!(query(&url, "Signature").is_some());
    assert_eq!(status, StatusCode::OK, "the IdP verified our signature: {html}");
    // A request changed after signing is refused by the IdP.
    let (_, status, body, _) = login(true).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a tampered request is refused: {body}");
}

#[tokio::test]
async fn acs_precheck_refuses_hostile_posts_fast_and_offline() {
    let gw = Gateway::start().await;
    let acs = format!("{}/saml/con_x/acs", gw.base);
    let http = reqwest::Client::new();
    let post = |v: String| http.post(&acs).form(&[("SAMLResponse", v)]).send();
    // A listener that must never be contacted: the remote reference points at it.
    let bait = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    bait.set_nonblocking(true).unwrap();
    let remote = format!("http://{}/steal", bait.local_addr().unwrap());
    let sig = |uri: &str, transform: &str| {
        format!(r#"<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:SignedInfo><ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/><ds:SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"/><ds:Reference URI="{uri}"><ds:Transforms><ds:Transform Algorithm="{transform}"/></ds:Transforms><ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/><ds:DigestValue>x</ds:DigestValue></ds:Reference></ds:SignedInfo><ds:SignatureValue>x</ds:SignatureValue></ds:Signature>"#)
    };
    let response = |inner: &str| format!(r#"<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" ID="_r">{inner}</samlp:Response>"#);
    let env = "http://www.w3.org/2000/09/xmldsig#enveloped-signature";
    let cases = [
        ("garbage base64", "!!not-base64!!".to_string(), "not base64"),
        ("remote reference", B64.encode(response(&sig(&remote, env))), "not an element of this response"),
        ("XSLT transform", B64.encode(response(&sig("#_r", "http://www.w3.org/TR/1999/REC-xslt-19991116"))), "not allowed"),
        ("XXE", B64.encode(r#"<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol">&x;</samlp:Response>"#), "DOCTYPE"),
        ("billion laughs", B64.encode(format!("<?xml version=\"1.0\"?><!DOCTYPE l [<!ENTITY a \"ha\">{}]><l>&j;</l>", (b'b'..=b'j').map(|c| format!("<!ENTITY {} \"{}\">", c as char, format!("&{};", (c - 1) as char).repeat(10))).collect::<String>())), "DOCTYPE"),
        ("duplicate IDs", B64.encode(response(r#"<a ID="_r"/>"#)), "duplicate IDs"),
    ];
    for (what, value, needle) in cases {
        let started = std::time::Instant::now();
        let r = post(value).await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{what}");
        let body = r.text().await.unwrap();
        assert!(body.contains(needle) && body.contains("Request id"), "{what}: {body}");
        assert!(started.elapsed() < std::time::Duration::from_secs(5), "{what} answered at once, not after a fetch");
    }
    assert!(bait.accept().is_err(), "nothing connected to the remote reference's host");
    let big = "A".repeat(2 * 1024 * 1024);
    let r = post(big).await.unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let (_, users) = gw.admin(Method::GET, "/users", None).await;
    assert_eq!(users, json!([]));
}
