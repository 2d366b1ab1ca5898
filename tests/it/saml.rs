//! SAML service provider, the start of a login, against a real IdP (pysaml2 + xmlsec1):
//! our SP metadata imported by the IdP as is, AuthnRequests over HTTP-Redirect that the
//! IdP accepts (unsigned, then signed and verified by the IdP, and refused when
//! tampered), RelayState and InResponseTo carried through; full logins through the ACS
//! with the assertion, the response, or both signed, group sync and JIT; and every
//! refusal the ACS owes, each its own test with responses made by `forge.py` (xmlsec1).

use std::io::Read;
use std::process::Command;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::login::Browser;
use crate::peers::{peers_dir, saml_metadata as idp_keys};
use crate::support::Gateway;

const PERSISTENT: &str = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent";
const TRANSIENT: &str = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient";
const EMAIL_FORMAT: &str = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress";
const UNSPECIFIED: &str = "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified";

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
    let (s, c) = gw
        .admin(
            Method::POST,
            "/connections",
            Some(json!({"id": "con_s", "display_name": "pysaml2", "protocol": "saml",
        "saml": {"idp_metadata_url": idp.ready["metadata_url"]}})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{c}");

    // Our SP metadata says what we do.
    let md = reqwest::get(&sp_metadata_url).await.unwrap().text().await.unwrap();
    assert!(
        md.contains(&format!("entityID=\"{sp_metadata_url}\"")) && md.contains("AuthnRequestsSigned=\"false\"") && md.contains("WantAssertionsSigned=\"true\""),
        "{md}"
    );
    assert!(md.contains(&format!("Location=\"{}/saml/con_s/acs\"", gw.base)));
    // A persistent NameID by default (issue #10, 6), said in the metadata the IdP imports.
    assert!(md.contains(&format!("<md:NameIDFormat>{PERSISTENT}</md:NameIDFormat>")), "{md}");

    let acs = format!("{}/saml/con_s/acs", gw.base);
    let login = |tamper: bool| {
        let gw_base = gw.base.clone();
        async move {
            let b = Browser::new();
            let r = b.http.get(format!("{gw_base}/login/con_s")).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::SEE_OTHER);
            let mut url = reqwest::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
            if tamper {
                let pairs: Vec<(String, String)> = url
                    .query_pairs()
                    .map(|(k, v)| {
                        let v = if k == "RelayState" { format!("{v}x") } else { v.to_string() };
                        (k.to_string(), v)
                    })
                    .collect();
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
    assert!(xml.contains(&format!("<samlp:NameIDPolicy Format=\"{PERSISTENT}\" AllowCreate=\"true\"/>")), "{xml}");
    assert!(html.contains(&format!("action=\"{acs}\"")), "{html}");
    assert_eq!(hidden(&html, "RelayState"), query(&url, "RelayState"), "RelayState comes back");
    let response = String::from_utf8(B64.decode(hidden(&html, "SAMLResponse").unwrap()).unwrap()).unwrap();
    assert!(response.contains(&format!("InResponseTo=\"{request_id}\"")), "{response}");

    // JIT is off: the verified response is still refused, and nothing is created.
    let r = b
        .http
        .post(&acs)
        .form(&[("SAMLResponse", hidden(&html, "SAMLResponse").unwrap()), ("RelayState", hidden(&html, "RelayState").unwrap())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let body = r.text().await.unwrap();
    assert!(body.contains("no account for you"), "{body}");
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
        format!(
            r#"<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:SignedInfo><ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/><ds:SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"/><ds:Reference URI="{uri}"><ds:Transforms><ds:Transform Algorithm="{transform}"/></ds:Transforms><ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/><ds:DigestValue>x</ds:DigestValue></ds:Reference></ds:SignedInfo><ds:SignatureValue>x</ds:SignatureValue></ds:Signature>"#
        )
    };
    let response = |inner: &str| format!(r#"<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" ID="_r">{inner}</samlp:Response>"#);
    let env = "http://www.w3.org/2000/09/xmldsig#enveloped-signature";
    let cases = [
        ("garbage base64", "!!not-base64!!".to_string(), "not base64"),
        ("remote reference", B64.encode(response(&sig(&remote, env))), "not an element of this response"),
        ("XSLT transform", B64.encode(response(&sig("#_r", "http://www.w3.org/TR/1999/REC-xslt-19991116"))), "not allowed"),
        (
            "XXE",
            B64.encode(r#"<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol">&x;</samlp:Response>"#),
            "DOCTYPE",
        ),
        (
            "billion laughs",
            B64.encode(format!(
                "<?xml version=\"1.0\"?><!DOCTYPE l [<!ENTITY a \"ha\">{}]><l>&j;</l>",
                (b'b'..=b'j').map(|c| format!("<!ENTITY {} \"{}\">", c as char, format!("&{};", (c - 1) as char).repeat(10))).collect::<String>()
            )),
            "DOCTYPE",
        ),
        ("duplicate IDs", B64.encode(response(r#"<a ID="_r"/>"#)), "duplicate IDs"),
        // Parsers recurse per level: this would overflow the stack, taking the process down.
        ("deep nesting", B64.encode(response(&format!("{}{}", "<a>".repeat(30_000), "</a>".repeat(30_000)))), "nests elements more than 64 deep"),
        // Parsers copy every namespace in scope into each element: quadratic work.
        (
            "namespace flood",
            B64.encode(response(&format!("<b {}>{}</b>", (0..40).map(|i| format!(" xmlns:n{i}=\"u\"")).collect::<String>(), "<c xmlns:z=\"u\"/>".repeat(2000)))),
            "namespace declarations in scope",
        ),
        ("attribute flood", B64.encode(response(&format!("<b {}/>", (0..20_000).map(|i| format!(" a{i}=\"\"")).collect::<String>()))), "more than 64 attributes"),
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
    // Text an attacker writes into the message is not shown on our page.
    let lure = "Your account is locked. Call IT at +1-555-0100";
    let r = post(B64.encode(response(&sig(lure, env)))).await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body = r.text().await.unwrap();
    assert!(!body.contains("locked") && body.contains("not an element of this response"), "{body}");
    let big = "A".repeat(2 * 1024 * 1024);
    let r = post(big).await.unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let (_, users) = gw.admin(Method::GET, "/users", None).await;
    assert_eq!(users, json!([]));
}

/// A gateway with a SAML connection `con_s` trusting the key in `keys` (IdP entity id
/// `http://127.0.0.1:9/metadata`), and what a forged response needs to know.
pub struct Acs {
    pub gw: Gateway,
    pub keys: tempfile::TempDir,
    pub idp: String,
    pub sp: String,
    pub acs: String,
}

/// Makes a response with tests/peers/saml/forge.py (signed by xmlsec1).
pub fn forge(spec: &serde_json::Value) -> String {
    let out = Command::new(crate::peers::peers_dir().join(".venv/bin/python")).arg(peers_dir().join("saml/forge.py")).arg(spec.to_string()).output().unwrap();
    assert!(out.status.success(), "forge.py: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

impl Acs {
    /// `saml` and `conn` are merged into the connection's `saml` object and top level.
    pub async fn new(saml: serde_json::Value, conn: serde_json::Value) -> Acs {
        let gw = Gateway::start().await;
        let keys = tempfile::tempdir().unwrap();
        let md = idp_keys(keys.path(), "http://127.0.0.1:9", &[]);
        let mut s = json!({"idp_metadata_xml": md});
        s.as_object_mut().unwrap().extend(saml.as_object().unwrap().clone());
        let mut body = json!({"id": "con_s", "display_name": "Forged IdP", "protocol": "saml", "saml": s});
        body.as_object_mut().unwrap().extend(conn.as_object().unwrap().clone());
        let (st, c) = gw.admin(Method::POST, "/connections", Some(body)).await;
        assert_eq!(st, StatusCode::CREATED, "{c}");
        let (sp, acs) = (format!("{}/saml/con_s/metadata", gw.base), format!("{}/saml/con_s/acs", gw.base));
        Acs { gw, keys, idp: "http://127.0.0.1:9/metadata".into(), sp, acs }
    }

    /// Starts a login in a new browser: (browser, RelayState, AuthnRequest id).
    pub async fn start(&self) -> (Browser, String, String) {
        let b = Browser::new();
        let r = b.http.get(format!("{}/login/con_s", self.gw.base)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        let url = reqwest::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
        let mut xml = String::new();
        flate2::read::DeflateDecoder::new(&B64.decode(query(&url, "SAMLRequest").unwrap()).unwrap()[..]).read_to_string(&mut xml).unwrap();
        let id_start = xml.find("ID=\"").unwrap() + 4;
        let request_id = xml[id_start..id_start + xml[id_start..].find('"').unwrap()].to_string();
        (b, query(&url, "RelayState").unwrap(), request_id)
    }

    /// A spec for forge.py answering `request_id`, with `extra` on top.
    pub fn spec(&self, request_id: Option<&str>, extra: serde_json::Value) -> serde_json::Value {
        let mut s = json!({"keys": self.keys.path(), "acs": self.acs, "sp": self.sp, "idp": self.idp, "in_response_to": request_id,
            "name_id": "alice", "attributes": {"email": ["alice@example.test"], "groups": ["admins", "staff"]}});
        s.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        s
    }

    /// Posts a response to the ACS: (status, body, whether a session cookie was set).
    pub async fn post(&self, b: &Browser, relay: Option<&str>, response: &str) -> (StatusCode, String, bool) {
        let mut form = vec![("SAMLResponse", response.to_string())];
        if let Some(r) = relay {
            form.push(("RelayState", r.to_string()));
        }
        let r = b.http.post(&self.acs).form(&form).send().await.unwrap();
        let session = r
            .headers()
            .get_all("set-cookie")
            .iter()
            .any(|c| c.to_str().unwrap().starts_with("ssogate_session=") && !c.to_str().unwrap().starts_with("ssogate_session=;"));
        (r.status(), r.text().await.unwrap(), session)
    }

    /// A login with a response forged from `extra`; asserts the refusal and that nothing
    /// was created.
    pub async fn refuses(&self, extra: serde_json::Value, status: StatusCode, needle: &str) {
        let (b, relay, id) = self.start().await;
        let response = forge(&self.spec(Some(&id), extra.clone()));
        let (st, body, session) = self.post(&b, Some(&relay), &response).await;
        assert_eq!(st, status, "{extra}: {body}");
        assert!(body.contains(needle), "{extra}: expected {needle:?} in {body}");
        assert!(!session, "{extra}: no session");
        let (_, users) = self.gw.admin(Method::GET, "/users", None).await;
        assert_eq!(users, json!([]), "{extra}: nothing created");
    }

    /// Users' usernames and their groups.
    pub async fn users(&self) -> Vec<(String, Vec<String>)> {
        let (_, users) = self.gw.admin(Method::GET, "/users", None).await;
        let mut out = vec![];
        for u in users.as_array().unwrap() {
            let mut names: Vec<String> = u["groups"].as_array().unwrap().iter().map(|g| g["name"].as_str().unwrap().to_string()).collect();
            names.sort();
            out.push((u["username"].as_str().unwrap().to_string(), names));
        }
        out
    }
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

#[tokio::test]
async fn forged_responses_verify_signed_every_way_and_log_in() {
    let acs = Acs::new(json!({"require_signed_assertions": false}), json!({"create_users": true})).await;
    for sign in ["assertion", "response", "both"] {
        let (b, relay, id) = acs.start().await;
        let (st, body, session) = acs.post(&b, Some(&relay), &forge(&acs.spec(Some(&id), json!({"sign": sign})))).await;
        assert_eq!(st, StatusCode::SEE_OTHER, "{sign}: {body}");
        assert!(session, "{sign}");
        let (r, _) = b.visit(&format!("{}/", acs.gw.base)).await;
        assert!(r.text().await.unwrap().contains("alice@example.test"), "{sign}: signed in");
    }
    // One user, linked by NameID: the second and third logins found the first's user.
    assert_eq!(acs.users().await.len(), 1);
}

macro_rules! refusal {
    ($name:ident, $saml:expr, $extra:expr, $status:expr, $needle:expr) => {
        #[tokio::test]
        async fn $name() {
            let acs = Acs::new($saml, json!({"create_users": true})).await;
            acs.refuses($extra, $status, $needle).await;
        }
    };
}

const FORBIDDEN: StatusCode = StatusCode::FORBIDDEN;
const BAD: StatusCode = StatusCode::BAD_REQUEST;

refusal!(acs_refuses_unsigned, json!({}), json!({"sign": "none"}), FORBIDDEN, "neither the response nor the assertion is signed");
refusal!(acs_refuses_signed_response_when_assertions_must_be_signed, json!({}), json!({"sign": "response"}), FORBIDDEN, "requires signed assertions");
refusal!(acs_refuses_tampered, json!({}), json!({"attack": "tamper"}), FORBIDDEN, "digest mismatch");
refusal!(acs_refuses_expired, json!({}), json!({"now": now() - 3600}), FORBIDDEN, "expired");
refusal!(acs_refuses_not_yet_valid, json!({}), json!({"now": now() + 3600}), FORBIDDEN, "issued in the future");
refusal!(acs_refuses_conditions_not_yet_valid, json!({}), json!({"not_before": 600}), FORBIDDEN, "not valid yet (Conditions NotBefore)");
refusal!(acs_refuses_subject_confirmation_expired, json!({}), json!({"scd_not_on_or_after": -600}), FORBIDDEN, "SubjectConfirmationData NotOnOrAfter");
refusal!(acs_refuses_wrong_audience, json!({}), json!({"audience": "https://other-sp.example/"}), FORBIDDEN, "Audience");
refusal!(acs_refuses_missing_audience, json!({}), json!({"no_audience": true}), FORBIDDEN, "names no Audience");
refusal!(acs_refuses_wrong_recipient, json!({}), json!({"recipient": "https://other-sp.example/acs"}), FORBIDDEN, "(Recipient)");
refusal!(
    acs_refuses_wrong_destination,
    json!({"require_signed_assertions": false}),
    json!({"sign": "both", "destination": "https://other-sp.example/acs"}),
    FORBIDDEN,
    "addressed to"
);
refusal!(acs_refuses_wrong_issuer, json!({}), json!({"issuer": "https://evil-idp.example/"}), FORBIDDEN, "not by this connection&#39;s IdP");
refusal!(acs_refuses_wrong_in_response_to, json!({}), json!({"in_response_to": "_someone_elses_request"}), FORBIDDEN, "answers another sign-in");
refusal!(acs_refuses_status_not_success, json!({}), json!({"status": "urn:oasis:names:tc:SAML:2.0:status:Requester"}), FORBIDDEN, "SAML status Requester");
refusal!(acs_refuses_assertion_moved, json!({}), json!({"attack": "moved"}), FORBIDDEN, "neither the response nor the assertion is signed");
refusal!(acs_refuses_evil_assertion_before, json!({}), json!({"attack": "evil_before"}), FORBIDDEN, "more than one assertion");
refusal!(acs_refuses_evil_assertion_after, json!({}), json!({"attack": "evil_after"}), FORBIDDEN, "more than one assertion");
refusal!(acs_refuses_evil_assertion_around, json!({}), json!({"attack": "evil_around"}), FORBIDDEN, "neither the response nor the assertion is signed");
refusal!(acs_refuses_duplicate_ids, json!({}), json!({"attack": "duplicate_id"}), BAD, "duplicate IDs");
refusal!(acs_refuses_nested_ids, json!({}), json!({"attack": "nested_id"}), FORBIDDEN, "does not sign the element that contains it");
refusal!(acs_refuses_comment_in_name_id, json!({}), json!({"attack": "comment_nameid", "name_id": "alice@example.test.evil.example"}), BAD, "comments");
refusal!(acs_refuses_xslt_transform, json!({}), json!({"attack": "xslt"}), BAD, "not allowed");
refusal!(
    acs_refuses_sha1,
    json!({}),
    json!({"sig_alg": "http://www.w3.org/2000/09/xmldsig#rsa-sha1", "digest_alg": "http://www.w3.org/2000/09/xmldsig#sha1"}),
    // Not malformed, refused by policy (issue #15: the connection's allow_sha1 is off).
    FORBIDDEN,
    "signed with SHA-1"
);

#[tokio::test]
async fn acs_refuses_a_foreign_key() {
    let acs = Acs::new(json!({}), json!({"create_users": true})).await;
    let foreign = tempfile::tempdir().unwrap();
    let _ = idp_keys(foreign.path(), "http://127.0.0.1:9", &[]);
    acs.refuses(json!({"keys": foreign.path()}), FORBIDDEN, "does not verify with any of the IdP").await;
}

#[tokio::test]
async fn acs_refuses_a_missing_in_response_to() {
    let acs = Acs::new(json!({}), json!({"create_users": true})).await;
    let (b, relay, _) = acs.start().await;
    let (st, body, session) = acs.post(&b, Some(&relay), &forge(&acs.spec(None, json!({})))).await;
    assert_eq!((st, session), (FORBIDDEN, false), "{body}");
    assert!(body.contains("no InResponseTo"), "{body}");
    assert_eq!(acs.users().await, vec![]);
}

#[tokio::test]
async fn acs_refuses_a_replay_and_another_browsers_flow() {
    let acs = Acs::new(json!({}), json!({"create_users": true})).await;
    let (b, relay, id) = acs.start().await;
    let response = forge(&acs.spec(Some(&id), json!({})));
    // Another browser posting this browser's response: the flow cookie is missing.
    let (st, body, _) = acs.post(&Browser::new(), Some(&relay), &response).await;
    assert_eq!(st, BAD, "{body}");
    assert!(body.contains("started in another browser"), "{body}");
    // The flow was single use: even the right browser now gets nothing.
    let (st, _, _) = acs.post(&b, Some(&relay), &response).await;
    assert_eq!(st, FORBIDDEN);

    // A fresh flow, a successful login, then the same assertion again in a new flow.
    let (b, relay, id) = acs.start().await;
    let response = forge(&acs.spec(Some(&id), json!({})));
    let (st, body, session) = acs.post(&b, Some(&relay), &response).await;
    assert_eq!((st, session), (StatusCode::SEE_OTHER, true), "{body}");
    let (st, body, session) = acs.post(&b, Some(&relay), &response).await;
    assert_eq!((st, session), (FORBIDDEN, false), "the flow is gone: {body}");
    // Unsolicited replays are caught by the assertion-id cache when IdP-initiated is on.
    let (s, c) = acs.gw.admin(Method::PATCH, "/connections/con_s", Some(json!({"saml": {"allow_idp_initiated": true}}))).await;
    assert_eq!(s, StatusCode::OK, "{c}");
    let unsolicited = forge(&acs.spec(None, json!({})));
    let (st, body, _) = acs.post(&Browser::new(), None, &unsolicited).await;
    assert_eq!(st, StatusCode::SEE_OTHER, "{body}");
    let (st, body, session) = acs.post(&Browser::new(), None, &unsolicited).await;
    assert_eq!((st, session), (FORBIDDEN, false), "{body}");
    assert!(body.contains("replayed"), "{body}");
}

#[tokio::test]
async fn idp_initiated_login_is_off_unless_enabled() {
    let acs = Acs::new(json!({}), json!({"create_users": true})).await;
    let unsolicited = forge(&acs.spec(None, json!({})));
    let (st, body, session) = acs.post(&Browser::new(), None, &unsolicited).await;
    assert_eq!((st, session), (FORBIDDEN, false), "{body}");
    assert!(body.contains("IdP-initiated sign-in is off"), "{body}");
    assert_eq!(acs.users().await, vec![]);
    let (s, _) = acs.gw.admin(Method::PATCH, "/connections/con_s", Some(json!({"saml": {"allow_idp_initiated": true}}))).await;
    assert_eq!(s, StatusCode::OK);
    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    // An unsolicited response with a local RelayState lands there.
    let b = Browser::new();
    let (st, body, session) = acs.post(&b, Some("/me?x=1"), &forge(&acs.spec(None, json!({})))).await;
    assert_eq!((st, session), (StatusCode::SEE_OTHER, true), "{body}");
    // A response that names a request is still refused without its flow.
    let (st, _, session) = acs.post(&Browser::new(), None, &forge(&acs.spec(Some("_not_ours"), json!({})))).await;
    assert_eq!((st, session), (FORBIDDEN, false));
}

#[tokio::test]
async fn acs_refuses_a_remote_reference_without_fetching_it() {
    let acs = Acs::new(json!({}), json!({"create_users": true})).await;
    let bait = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    bait.set_nonblocking(true).unwrap();
    let remote = format!("http://{}/steal", bait.local_addr().unwrap());
    let started = std::time::Instant::now();
    acs.refuses(json!({"attack": "remote_reference", "remote": remote}), BAD, "not an element of this response").await;
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "answered without waiting on a fetch");
    assert!(bait.accept().is_err(), "nothing connected to the remote reference's host");
}

/// Follows a login through a real IdP: the gateway's redirect (or POST form), the IdP's
/// auto-POST form, the ACS. Returns the ACS answer's status and the page it leads to.
async fn saml_login(b: &Browser, gw: &Gateway, idp_params: &str) -> (StatusCode, String) {
    let r = b.http.get(format!("{}/login/con_s", gw.base)).send().await.unwrap();
    let idp_page = if r.status() == StatusCode::SEE_OTHER {
        let url = format!("{}&{idp_params}", r.headers()["location"].to_str().unwrap());
        b.http.get(url).send().await.unwrap()
    } else {
        // HTTP-POST binding: our auto-submitting form.
        let html = r.text().await.unwrap();
        let action = html.split("action=\"").nth(1).unwrap().split('"').next().unwrap().replace("&amp;", "&");
        let fields = [("SAMLRequest", hidden(&html, "SAMLRequest").unwrap()), ("RelayState", hidden(&html, "RelayState").unwrap())];
        b.http.post(format!("{action}?{idp_params}")).form(&fields).send().await.unwrap()
    };
    let st = idp_page.status();
    let html = idp_page.text().await.unwrap();
    assert_eq!(st, StatusCode::OK, "the IdP answered: {html}");
    let form = [("SAMLResponse", hidden(&html, "SAMLResponse").unwrap()), ("RelayState", hidden(&html, "RelayState").unwrap())];
    let r = b.http.post(format!("{}/saml/con_s/acs", gw.base)).form(&form).send().await.unwrap();
    let status = r.status();
    if status != StatusCode::SEE_OTHER {
        return (status, r.text().await.unwrap());
    }
    let (page, _) = b.visit(&format!("{}{}", gw.base, r.headers()["location"].to_str().unwrap())).await;
    (status, page.text().await.unwrap())
}

#[tokio::test]
async fn saml_login_through_a_real_idp_every_signing_mode_with_group_sync_and_jit() {
    let gw = Gateway::start().await;
    let keys = tempfile::tempdir().unwrap();
    let _ = idp_keys(keys.path(), "http://127.0.0.1:9", &[]);
    let users = keys.path().join("users.json");
    let write_users = |groups: &[&str]| {
        std::fs::write(&users, json!({"alice": {"email": ["alice@example.test"], "givenName": ["Alice"], "sn": ["Example"], "groups": groups}}).to_string())
            .unwrap();
    };
    write_users(&["staff", "ops"]);
    let mut cmd = Command::new(peers_dir().join(".venv/bin/python"));
    cmd.arg(peers_dir().join("saml/idp.py"))
        .args(["serve", "--keys"])
        .arg(keys.path())
        .args(["--sp-metadata-url", &format!("{}/saml/con_s/metadata", gw.base), "--users"])
        .arg(&users);
    let idp = crate::peers::spawn(cmd);
    for name in ["Staff", "Ops"] {
        gw.admin(Method::POST, "/groups", Some(json!({"name": name}))).await;
    }
    let (s, c) = gw
        .admin(
            Method::POST,
            "/connections",
            Some(json!({"id": "con_s", "display_name": "pysaml2", "protocol": "saml",
        "provider": "custom", "group_sync": true, "create_users": false,
        "saml": {"idp_metadata_url": idp.ready["metadata_url"], "require_signed_assertions": false}})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{c}");

    // JIT off: a verified login without an account is refused; nothing is created.
    let (st, body) = saml_login(&Browser::new(), &gw, "sign=assertion").await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("no account for you"), "{body}");
    let (_, list) = gw.admin(Method::GET, "/users", None).await;
    assert_eq!(list, json!([]));

    // JIT on: every signing mode logs in the same user.
    let (s, _) = gw.admin(Method::PATCH, "/connections/con_s", Some(json!({"create_users": true}))).await;
    assert_eq!(s, StatusCode::OK);
    for sign in ["assertion", "response", "both"] {
        let b = Browser::new();
        let (st, page) = saml_login(&b, &gw, &format!("sign={sign}")).await;
        assert_eq!(st, StatusCode::SEE_OTHER, "{sign}: {page}");
        assert!(page.contains("alice@example.test"), "{sign}: signed in: {page}");
    }
    let (_, list) = gw.admin(Method::GET, "/users", None).await;
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    let names = |u: &serde_json::Value| {
        let mut n: Vec<String> = u["groups"].as_array().unwrap().iter().map(|g| g["name"].as_str().unwrap().to_string()).collect();
        n.sort();
        n
    };
    assert_eq!(names(&list[0]), vec!["Ops", "Staff", "Users"], "multi-valued groups synced");
    assert_eq!(list[0]["links"][0]["subject"], "alice", "NameID is the user id");

    // The IdP drops a group: the next login removes it.
    write_users(&["staff"]);
    let (st, page) = saml_login(&Browser::new(), &gw, "sign=assertion").await;
    assert_eq!(st, StatusCode::SEE_OTHER, "{page}");
    let (_, list) = gw.admin(Method::GET, "/users", None).await;
    assert_eq!(names(&list[0]), vec!["Staff", "Users"], "group removed");

    // Assertions required signed again: a response-only signature is refused.
    let (s, _) = gw.admin(Method::PATCH, "/connections/con_s", Some(json!({"saml": {"require_signed_assertions": true}}))).await;
    assert_eq!(s, StatusCode::OK);
    let (st, body) = saml_login(&Browser::new(), &gw, "sign=response").await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("requires signed assertions"), "{body}");

    // Signed AuthnRequests over HTTP-POST: the IdP verifies the enveloped signature.
    let (s, c) = gw.admin(Method::PATCH, "/connections/con_s", Some(json!({"saml": {"sign_requests": true}}))).await;
    assert_eq!(s, StatusCode::OK, "{c}");
    let post_sso = format!("{}/sso/post", idp.ready["base_url"].as_str().unwrap());
    let mut md = reqwest::get(idp.ready["metadata_url"].as_str().unwrap()).await.unwrap().text().await.unwrap();
    md = md.replace("urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect", "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST-x");
    let (s, c) = gw.admin(Method::PATCH, "/connections/con_s", Some(json!({"saml": {"idp_metadata_url": null, "idp_metadata_xml": md}}))).await;
    assert_eq!(s, StatusCode::OK, "{c}");
    assert_eq!(c["saml"]["idp"]["sso_binding"], "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST", "{c}");
    assert_eq!(c["saml"]["idp"]["sso_url"], post_sso.as_str());
    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    let (st, page) = saml_login(&Browser::new(), &gw, "sign=assertion").await;
    assert_eq!(st, StatusCode::SEE_OTHER, "{page}");
    assert!(page.contains("alice@example.test"));
}

#[tokio::test]
async fn metadata_by_url_is_refreshed_when_the_idp_rolls_its_key() {
    let gw = Gateway::start().await;
    let keys = tempfile::tempdir().unwrap();
    let _ = idp_keys(keys.path(), "http://127.0.0.1:9", &[]);
    let mut cmd = Command::new(peers_dir().join(".venv/bin/python"));
    cmd.arg(peers_dir().join("saml/idp.py"))
        .args(["serve", "--keys"])
        .arg(keys.path())
        .args(["--sp-metadata-url", &format!("{}/saml/con_s/metadata", gw.base)]);
    let mut idp = crate::peers::spawn(cmd);
    let (s, c) = gw
        .admin(
            Method::POST,
            "/connections",
            Some(json!({"id": "con_s", "display_name": "pysaml2", "protocol": "saml",
        "create_users": true, "saml": {"idp_metadata_url": idp.ready["metadata_url"]}})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{c}");
    let old_cert = c["saml"]["idp"]["certificates"][0]["sha256"].clone();
    assert!(c["saml"]["idp"]["certificates"][0]["not_after"].is_string(), "expiry shown: {c}");
    let (st, page) = saml_login(&Browser::new(), &gw, "sign=assertion").await;
    assert_eq!(st, StatusCode::SEE_OTHER, "{page}");
    assert_eq!(gw.app.registry.refresh_saml_metadata().await, vec![("con_s".to_string(), Ok(false))], "unchanged: nothing written");

    // The IdP rolls its key: its responses no longer verify against the pinned certificate...
    std::fs::remove_file(keys.path().join("idp.key")).unwrap();
    std::fs::remove_file(keys.path().join("idp.crt")).unwrap();
    let _ = idp_keys(keys.path(), "http://127.0.0.1:9", &[]);
    let (st, body) = saml_login(&Browser::new(), &gw, "sign=assertion").await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("does not verify with any of the IdP"), "{body}");
    // ...until the refresh reads the new metadata.
    assert_eq!(gw.app.registry.refresh_saml_metadata().await, vec![("con_s".to_string(), Ok(true))]);
    let (_, c) = gw.admin(Method::GET, "/connections/con_s", None).await;
    assert_ne!(c["saml"]["idp"]["certificates"][0]["sha256"], old_cert, "{c}");
    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    let (st, page) = saml_login(&Browser::new(), &gw, "sign=assertion").await;
    assert_eq!(st, StatusCode::SEE_OTHER, "{page}");

    // The IdP goes away: the refresh fails and the connection keeps what it has.
    idp.child.kill().unwrap();
    let _ = idp.child.wait();
    let result = gw.app.registry.refresh_saml_metadata().await;
    assert!(result[0].1.as_ref().is_err_and(|e| e.contains("could not fetch")), "{result:?}");
    let (_, after) = gw.admin(Method::GET, "/connections/con_s", None).await;
    assert_eq!(after["saml"]["idp"], c["saml"]["idp"]);
    assert_eq!(after["version"], c["version"]);
}

refusal!(
    acs_refuses_assertion_not_naming_the_request,
    json!({"require_signed_assertions": true}),
    json!({"scd_in_response_to": null}),
    FORBIDDEN,
    "no InResponseTo"
);
refusal!(
    acs_refuses_a_huge_prefix_list,
    json!({}),
    json!({"prefix_list": (0..40).map(|i| format!("p{i}")).collect::<Vec<_>>().join(" ")}),
    FORBIDDEN,
    "PrefixList names too many prefixes"
);

/// Control characters in a signed NameID or attribute value never reach the directory:
/// the ACS refuses the login, naming the claim, and nothing is created.
#[tokio::test]
async fn acs_refuses_control_characters_in_identity_fields() {
    let acs = Acs::new(json!({}), json!({"create_users": true})).await;
    acs.refuses(
        json!({"attributes": {"email": ["alice@example.test\nX-Injected: yes"], "groups": ["staff"]}}),
        FORBIDDEN,
        "email claim contains a control character",
    )
    .await;
    acs.refuses(json!({"name_id": "alice\u{85}admin"}), FORBIDDEN, "NameID claim contains a control character").await;
    acs.refuses(json!({"attributes": {"email": ["alice@example.test"], "groups": ["staff\nadmins"]}}), FORBIDDEN, "groups claim contains a control character")
        .await;
}

/// Issue #10, 6: a transient NameID (SimpleSAMLphp's default) is never a user id: the
/// refusal says what to configure. With the user id mapped from an attribute it is fine.
#[tokio::test]
async fn acs_refuses_a_transient_nameid_as_the_user_id_unless_mapped_from_an_attribute() {
    let acs = Acs::new(json!({}), json!({"create_users": true})).await;
    acs.refuses(json!({"name_id_format": TRANSIENT}), FORBIDDEN, "transient NameID").await;
    let (b, relay, id) = acs.start().await;
    let (_, body, _) = acs.post(&b, Some(&relay), &forge(&acs.spec(Some(&id), json!({"name_id_format": TRANSIENT})))).await;
    assert!(body.contains("persistent NameID") && body.contains("user id from an attribute"), "says what to configure: {body}");

    let acs = Acs::new(json!({}), json!({"create_users": true, "claims": {"user_id": "uid"}})).await;
    for name_id in ["_t1", "_t2"] {
        let (b, relay, id) = acs.start().await;
        let extra = json!({"name_id_format": TRANSIENT, "name_id": name_id, "attributes": {"uid": ["alice"], "email": ["alice@example.test"]}});
        let (st, body, session) = acs.post(&b, Some(&relay), &forge(&acs.spec(Some(&id), extra))).await;
        assert_eq!((st, session), (StatusCode::SEE_OTHER, true), "{body}");
    }
    assert_eq!(acs.users().await.len(), 1, "two transient NameIDs, one user (by the uid attribute)");
}

/// The NameID's Format must be the one requested (persistent by default); an absent or
/// `unspecified` Format is taken (SAML Core 8.3.1: the IdP's own interpretation).
#[tokio::test]
async fn acs_checks_the_nameid_format_against_the_requested_one() {
    let acs = Acs::new(json!({}), json!({"create_users": true})).await;
    acs.refuses(json!({"name_id_format": EMAIL_FORMAT}), FORBIDDEN, "requested urn:oasis:names:tc:SAML:2.0:nameid-format:persistent").await;
    for format in [json!(null), json!(UNSPECIFIED), json!(PERSISTENT)] {
        let (b, relay, id) = acs.start().await;
        let (st, body, _) = acs.post(&b, Some(&relay), &forge(&acs.spec(Some(&id), json!({"name_id_format": format})))).await;
        assert_eq!(st, StatusCode::SEE_OTHER, "{format}: {body}");
    }
    // A connection that asks for emailAddress takes it, and says so to the IdP.
    let acs = Acs::new(json!({"name_id_format": EMAIL_FORMAT}), json!({"create_users": true})).await;
    let md = reqwest::get(&acs.sp).await.unwrap().text().await.unwrap();
    assert!(md.contains(&format!("<md:NameIDFormat>{EMAIL_FORMAT}</md:NameIDFormat>")), "{md}");
    let (b, relay, id) = acs.start().await;
    let (st, body, _) = acs.post(&b, Some(&relay), &forge(&acs.spec(Some(&id), json!({"name_id_format": EMAIL_FORMAT})))).await;
    assert_eq!(st, StatusCode::SEE_OTHER, "{body}");
}

/// Issue #10, 9: an admin links a user to (connection, subject) before the first login;
/// an invitation may name the subject, and then that subject's first login claims it
/// whatever its email (SAML never links by email: without this, invite-only SAML cannot work).
#[tokio::test]
async fn prelinked_users_and_invitations_naming_the_subject_are_claimed_by_the_first_saml_login() {
    let acs = Acs::new(json!({}), json!({"create_users": false})).await;
    let gw = &acs.gw;
    let login = |name_id: &'static str, email: &'static str| {
        let acs = &acs;
        async move {
            let (b, relay, id) = acs.start().await;
            let extra = json!({"name_id": name_id, "attributes": {"email": [email]}});
            acs.post(&b, Some(&relay), &forge(&acs.spec(Some(&id), extra))).await
        }
    };
    let (_, u) = gw.admin(Method::POST, "/users", Some(json!({"username": "alice-here"}))).await;
    let uid = u["id"].as_str().unwrap().to_string();
    let (st, v) = gw.admin(Method::PUT, &format!("/users/{uid}/links/con_s"), Some(json!({"subject": "alice"}))).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!((&v["links"][0]["connection_id"], &v["links"][0]["subject"]), (&json!("con_s"), &json!("alice")), "{v}");
    let (st, body, _) = login("alice", "alice@example.test").await;
    assert_eq!(st, StatusCode::SEE_OTHER, "{body}");
    assert_eq!(acs.users().await.iter().map(|u| u.0.as_str()).collect::<Vec<_>>(), vec!["alice-here"], "the pre-linked user, no other");

    // The subject is someone else's already: 409. Unknown user or connection: 404.
    let (_, bob) = gw.admin(Method::POST, "/users", Some(json!({"username": "bob-here"}))).await;
    let bob = bob["id"].as_str().unwrap().to_string();
    let (st, e) = gw.admin(Method::PUT, &format!("/users/{bob}/links/con_s"), Some(json!({"subject": "alice"}))).await;
    assert_eq!(st, StatusCode::CONFLICT, "{e}");
    let (st, _) = gw.admin(Method::PUT, "/users/usr_nobody/links/con_s", Some(json!({"subject": "x"}))).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = gw.admin(Method::PUT, &format!("/users/{bob}/links/con_nothing"), Some(json!({"subject": "x"}))).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = gw.admin(Method::PUT, &format!("/users/{bob}/links/con_s"), Some(json!({"subject": "a\nb"}))).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);

    // An invitation naming the subject: claimed by it, whatever email the IdP sends.
    let (st, inv) = gw.admin(Method::POST, "/invitations", Some(json!({"email": "carol@corp.example", "connection_id": "con_s", "subject": "c-123"}))).await;
    assert_eq!(st, StatusCode::CREATED, "{inv}");
    let (st, body, _) = login("c-123", "someone-else@example.test").await;
    assert_eq!(st, StatusCode::SEE_OTHER, "{body}");
    let (_, carol) = gw.admin(Method::GET, &format!("/users/{}", inv["user_id"].as_str().unwrap()), None).await;
    assert_eq!((&carol["status"], &carol["links"][0]["subject"]), (&json!("active"), &json!("c-123")), "{carol}");
    // An invitation naming a subject that is linked already: 409, nothing made.
    let (st, _) = gw.admin(Method::POST, "/invitations", Some(json!({"email": "dan@corp.example", "connection_id": "con_s", "subject": "alice"}))).await;
    assert_eq!(st, StatusCode::CONFLICT);
    assert_eq!(acs.users().await.len(), 3);

    // Unlinked: the next login finds no account.
    let (st, _) = gw.admin(Method::DELETE, &format!("/users/{uid}/links/con_s"), None).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (_, v) = gw.admin(Method::GET, &format!("/users/{uid}"), None).await;
    assert_eq!(v["links"], json!([]));
    let (st, body, _) = login("alice", "alice@example.test").await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{body}");
    let (_, audit) = gw.admin(Method::GET, "/audit?limit=1000", None).await;
    let by_admin: Vec<&str> = audit.as_array().unwrap().iter().filter(|a| a["target"] == uid.as_str()).map(|a| a["action"].as_str().unwrap()).collect();
    assert!(by_admin.contains(&"link.create") && by_admin.contains(&"link.delete"), "{by_admin:?}");
}
