//! What an attacker found at the ACS (issue #17), each through the real endpoint: a
//! pre-check that must stay linear whatever the shape of the input, element names that
//! the canonicalizer and the reader must see alike, conditions the gateway does not
//! understand, and the IdP's `SessionNotOnOrAfter`.

use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use reqwest::StatusCode;
use serde_json::json;

use crate::saml::{forge, Acs};
use crate::support::Gateway;

/// The largest decoded response the pre-check looks at (`saml_precheck::MAX_XML`).
const MAX_XML: usize = 256 * 1024;

/// The shapes that cost a naive scanner the most, each as large as the pre-check
/// accepts: every one must be refused at once (the bound is generous: a debug build on a
/// loaded machine; the quadratic scan took minutes here).
#[tokio::test]
async fn acs_precheck_refuses_the_worst_shapes_at_the_size_limit_quickly() {
    let gw = Gateway::start().await;
    let acs = format!("{}/saml/con_x/acs", gw.base);
    let http = reqwest::Client::new();
    let fill = |head: &str, unit: &str| {
        let mut s = head.to_string();
        while s.len() + unit.len() <= MAX_XML {
            s.push_str(unit);
        }
        s
    };
    let cases = [
        ("'=' after '=' in one tag", fill("<a", "="), "attributes"),
        ("'=' after a long name", fill("<a x", "x")[..MAX_XML - 2].to_string() + "==", "not well-formed"),
        ("name=value without spaces", fill("<a", "x=''"), "attributes"),
        ("declarations without spaces", fill("<a", "xmlns:p=''"), "namespace"),
        ("an unclosed quote", fill("<a x='", "="), "not well-formed"),
        ("unclosed tags", fill("", "<a"), "not well-formed"),
        ("unclosed end tags", fill("", "</"), "not well-formed"),
        ("unclosed comments", fill("", "<!--"), "not well-formed"),
        ("many elements", fill("<r>", "<a/>"), "elements"),
        // roxmltree joins text and CDATA by copying: text and CDATA in turn are quadratic.
        ("text and CDATA in turn", fill("<samlp:Response xmlns:samlp='urn:oasis:names:tc:SAML:2.0:protocol'>", "aaaaaaaa<![CDATA[]]>"), "CDATA sections"),
        // `p:xmlns` is a declaration to roxmltree and an attribute to libxml2.
        (
            "prefix:xmlns",
            "<samlp:Response xmlns:samlp='urn:oasis:names:tc:SAML:2.0:protocol'><a q:xmlns='urn:x'/></samlp:Response>".to_string(),
            "prefix:xmlns",
        ),
    ];
    for (what, xml, needle) in cases {
        assert!(xml.len() <= MAX_XML, "{what}");
        let started = Instant::now();
        let r = http.post(&acs).form(&[("SAMLResponse", B64.encode(&xml))]).send().await.unwrap();
        let took = started.elapsed();
        let status = r.status();
        let body = r.text().await.unwrap();
        assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {body}");
        assert!(body.contains(needle), "{what}: expected {needle:?} in {body}");
        assert!(took < Duration::from_secs(10), "{what}: took {took:?}");
    }
}

/// U+1680 (OGHAM SPACE MARK) is Unicode whitespace and an XML name character: a signed
/// group value renamed `saml:AttributeValue\u{1680}X` after signing disappears from what
/// the reader sees. The digest must break (xmlsec1 agrees), and nothing is created.
#[tokio::test]
async fn acs_refuses_an_element_renamed_with_a_unicode_space() {
    let acs = Acs::new(json!({}), json!({"create_users": true})).await;
    acs.refuses(json!({"attack": "ogham_name"}), StatusCode::FORBIDDEN, "digest mismatch").await;
}

#[tokio::test]
async fn acs_refuses_a_condition_it_does_not_understand() {
    let acs = Acs::new(json!({}), json!({"create_users": true})).await;
    let geo = r#"<saml:Condition xmlns:geo="urn:example:geo" xsi:type="geo:InsideCountry">NZ</saml:Condition>"#;
    acs.refuses(json!({"condition": geo}), StatusCode::FORBIDDEN, "a condition this gateway does not understand").await;
    let elsewhere = r#"<geo:Country xmlns:geo="urn:example:geo">NZ</geo:Country>"#;
    acs.refuses(json!({"condition": elsewhere}), StatusCode::FORBIDDEN, "a condition this gateway does not understand").await;
    // The IdP forbids handing the login on; the gateway always hands it on (sessions, tokens).
    let no_proxy = r#"<saml:ProxyRestriction Count="0"/>"#;
    acs.refuses(json!({"condition": no_proxy}), StatusCode::FORBIDDEN, "ProxyRestriction").await;
    // A second Conditions element (its conditions would go unread).
    let second = r#"</saml:Conditions><saml:Conditions><saml:OneTimeUse/>"#;
    acs.refuses(json!({"condition": second}), StatusCode::FORBIDDEN, "more than one Conditions").await;
    // Understood conditions pass: OneTimeUse (the replay cache enforces it), a ProxyRestriction
    // that allows one more hop.
    for ok in [r#"<saml:OneTimeUse/>"#, r#"<saml:ProxyRestriction Count="1"/>"#] {
        let (b, relay, id) = acs.start().await;
        let (st, body, session) = acs.post(&b, Some(&relay), &forge(&acs.spec(Some(&id), json!({"condition": ok})))).await;
        assert_eq!(st, StatusCode::SEE_OTHER, "{ok}: {body}");
        assert!(session, "{ok}");
    }
}

/// The IdP's `SessionNotOnOrAfter` caps the session (and the cookie) below the
/// configured lifetime; one already past refuses the login.
#[tokio::test]
async fn acs_caps_the_session_at_session_not_on_or_after() {
    let acs = Acs::new(json!({}), json!({"create_users": true})).await;
    acs.refuses(json!({"session_not_on_or_after": -120}), StatusCode::FORBIDDEN, "SessionNotOnOrAfter").await;

    let (b, relay, id) = acs.start().await;
    let response = forge(&acs.spec(Some(&id), json!({"session_not_on_or_after": 120})));
    let r = b.http.post(&acs.acs).form(&[("SAMLResponse", response.as_str()), ("RelayState", relay.as_str())]).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let cookie = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|c| c.to_str().unwrap().to_string())
        .find(|c| c.starts_with("ssogate_session=") && !c.starts_with("ssogate_session=;"))
        .expect("a session cookie");
    let max_age: i64 = cookie.split("; ").find_map(|p| p.strip_prefix("Max-Age=")).unwrap().parse().unwrap();
    assert!((100..=121).contains(&max_age), "the cookie lives as long as the IdP allows: {cookie}");
    let sid = cookie.trim_start_matches("ssogate_session=").split(';').next().unwrap();
    let now = acs.gw.app.clock.now();
    let session = acs.gw.app.sessions.touch(sid, now).await.unwrap().expect("the session");
    assert!(session.expires_at <= now + 121_000, "expires_at {} is capped at SessionNotOnOrAfter", session.expires_at - now);
}

/// SAML IdPs do not vouch for emails: an attribute named `email_verified` does not turn
/// linking by email back on (issue #10, 2), so the admin's user is not claimed.
#[tokio::test]
async fn a_saml_email_verified_attribute_never_claims_an_account() {
    let acs = Acs::new(json!({}), json!({"create_users": true})).await;
    let (st, victim) = acs.gw.admin(reqwest::Method::POST, "/users", Some(json!({"username": "victim", "email": "victim@example.test"}))).await;
    assert_eq!(st, StatusCode::CREATED, "{victim}");
    let (b, relay, id) = acs.start().await;
    let attributes = json!({"email": ["victim@example.test"], "email_verified": ["true"], "groups": []});
    let (st, body, session) = acs.post(&b, Some(&relay), &forge(&acs.spec(Some(&id), json!({"attributes": attributes})))).await;
    assert_eq!(st, StatusCode::SEE_OTHER, "{body}");
    assert!(session);
    let users = acs.users().await;
    assert_eq!(users.len(), 2, "a new user, not the victim: {users:?}");
    let (_, audit) = acs.gw.admin(reqwest::Method::GET, "/audit?limit=1000", None).await;
    assert!(!audit.to_string().contains("verified email"), "no link by email: {audit}");
}

/// Issue #10, 3: group names compare ASCII case-insensitively and otherwise exactly: an
/// asserted `\u{212A}ube-admins` (KELVIN SIGN) is not `Kube-Admins`, `kube-ADMINS` is.
#[tokio::test]
async fn group_sync_never_merges_a_unicode_lookalike() {
    let acs = Acs::new(json!({}), json!({"create_users": true, "group_sync": true})).await;
    let (st, g) = acs.gw.admin(reqwest::Method::POST, "/groups", Some(json!({"name": "Kube-Admins"}))).await;
    assert_eq!(st, StatusCode::CREATED, "{g}");
    let login = |groups: serde_json::Value, name_id: &'static str| {
        let acs = &acs;
        async move {
            let (b, relay, id) = acs.start().await;
            let attributes = json!({"email": [format!("{name_id}@example.test")], "groups": groups});
            let spec = acs.spec(Some(&id), json!({"attributes": attributes, "name_id": name_id}));
            let (st, body, _) = acs.post(&b, Some(&relay), &forge(&spec)).await;
            assert_eq!(st, StatusCode::SEE_OTHER, "{body}");
        }
    };
    login(json!(["\u{212A}ube-admins"]), "mallory").await;
    login(json!(["kube-ADMINS"]), "kate").await;
    let users = acs.users().await;
    let groups_of = |u: &str| users.iter().find(|(n, _)| n.starts_with(u)).map(|(_, g)| g.clone()).unwrap();
    assert!(!groups_of("mallory").contains(&"Kube-Admins".to_string()), "{users:?}");
    assert!(groups_of("kate").contains(&"Kube-Admins".to_string()), "{users:?}");
}
