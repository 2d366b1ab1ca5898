//! Test Provider (issue #11, built on the login pipeline's report-only mode of #18): a
//! real round trip through oidc-provider with a connection that is not saved, which
//! shows the checks, the claims and what a login would do, and creates nothing.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::login::{setup, Browser};

/// What the directory and the sessions hold, to compare before and after a test.
async fn snapshot(s: &crate::login::Setup) -> Value {
    let users = s.gw.admin(Method::GET, "/users", None).await.1;
    let groups = s.gw.admin(Method::GET, "/groups", None).await.1;
    let mut members = vec![];
    for g in groups.as_array().unwrap() {
        members.push(s.gw.admin(Method::GET, &format!("/groups/{}/members", g["id"].as_str().unwrap()), None).await.1);
    }
    let mut sessions = vec![];
    for u in users.as_array().unwrap() {
        sessions.push(s.gw.admin(Method::GET, &format!("/users/{}/sessions", u["id"].as_str().unwrap()), None).await.1);
    }
    json!({"users": users, "groups": groups, "members": members, "sessions": sessions})
}

fn draft(s: &crate::login::Setup, id: &str, secret: &str) -> Value {
    json!({"id": id, "display_name": format!("Draft {id}"), "protocol": "oidc", "create_users": true, "group_sync": true,
        "claims": {"groups": "groups"},
        "oidc": {"issuer": s.idp.ready["issuer"], "client_id": "gateway", "client_secret": secret}})
}

#[tokio::test]
async fn a_dry_run_of_an_unsaved_connection_reports_everything_and_creates_nothing() {
    // The IdP knows the draft's callback; the saved connection `con_node` is not used.
    let s = setup(json!({}), json!({})).await;
    let engineers = s.gw.admin(Method::POST, "/groups", Some(json!({"name": "engineers"}))).await.1;
    assert!(engineers["id"].is_string(), "{engineers}");
    let before = snapshot(&s).await;

    // The draft's id is con_node's: the IdP has its callback registered. Saved connection
    // or not, the test runs the draft's settings (here: with group sync).
    let (st, started) = s.gw.admin(Method::POST, "/connection-tests", Some(draft(&s, &s.conn, "gateway-secret-0123456789"))).await;
    assert_eq!(st, StatusCode::CREATED, "{started}");
    let start_url = started["start_url"].as_str().unwrap().to_string();
    assert_eq!(started["connection"]["callback_url"], format!("{}/oidc/{}/callback", s.gw.base, s.conn));

    let admin_browser = Browser::new();
    let (page, url) = admin_browser.visit(&format!("{start_url}?login_hint=alice")).await;
    assert_eq!(page.status(), StatusCode::OK, "{url}");
    assert!(url.contains("/test/"), "{url}");
    let csp = page.headers()["content-security-policy"].to_str().unwrap().to_string();
    assert!(csp.contains("style-src 'self'") && csp.contains("frame-ancestors 'none'"), "the result page loads the console's style sheet: {csp}");
    let body = page.text().await.unwrap();
    assert!(body.contains("The round trip verified"), "{body}");
    assert!(body.contains("alice@example.test") && body.contains("ID token signature"), "{body}");
    assert!(body.contains("Nothing was created"), "{body}");

    let test_id = started["test_id"].as_str().unwrap();
    let (st, result) = s.gw.admin(Method::GET, &format!("/connection-tests/{test_id}"), None).await;
    assert_eq!(st, StatusCode::OK, "{result}");
    assert_eq!(result["ok"], true, "{result}");
    assert_eq!(result["report"]["user"]["action"], "create", "{result}");
    assert_eq!(result["report"]["groups"]["add"][0]["name"], "engineers", "{result}");
    assert_eq!(result["report"]["groups"]["unmatched"], json!(["staff"]), "{result}");
    assert_eq!(result["claims"]["email"], "alice@example.test");
    let steps: Vec<&str> = result["steps"].as_array().unwrap().iter().map(|c| c["step"].as_str().unwrap()).collect();
    for want in ["code exchange", "ID token signature", "ID token claims", "claim mapping"] {
        assert!(steps.contains(&want), "{want} in {steps:?}");
    }
    assert!(result["warnings"].as_array().unwrap().iter().any(|w| w.as_str().unwrap().contains("staff")), "{result}");

    // Nothing was created, and the browser holds no session.
    assert_eq!(snapshot(&s).await, before);
    let (home, url) = admin_browser.visit(&format!("{}/", s.gw.base)).await;
    assert!(url.ends_with("/login") && home.status() == StatusCode::OK, "{url}");
    // One audit record says the test ran.
    let audit = s.gw.admin(Method::GET, "/audit", None).await.1;
    assert!(audit.as_array().unwrap().iter().any(|e| e["action"] == "connection.test"), "{audit}");

    // The start URL is single use, and the result is the starting browser's alone.
    let other = Browser::new();
    let (r, _) = other.visit(&start_url).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let (r, _) = other.visit(&format!("{}/test/{test_id}", s.gw.base)).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_failing_dry_run_says_what_failed_and_what_to_change() {
    let s = setup(json!({}), json!({})).await;
    let before = snapshot(&s).await;
    let (st, started) = s.gw.admin(Method::POST, "/connection-tests", Some(draft(&s, &s.conn, "the-wrong-secret"))).await;
    assert_eq!(st, StatusCode::CREATED, "{started}");
    let b = Browser::new();
    let (page, _) = b.visit(&format!("{}?login_hint=alice", started["start_url"].as_str().unwrap())).await;
    let body = page.text().await.unwrap();
    assert!(body.contains("The test failed") && body.contains("client secret"), "{body}");
    let (_, result) = s.gw.admin(Method::GET, &format!("/connection-tests/{}", started["test_id"].as_str().unwrap()), None).await;
    assert_eq!(result["ok"], false);
    assert!(result["error"].as_str().unwrap().starts_with("code exchange:"), "{result}");
    assert!(result["error"].as_str().unwrap().contains("invalid_client"), "{result}");
    assert_eq!(snapshot(&s).await, before);

    // A draft with a bad field is refused before anything starts, naming the field.
    let (st, e) = s.gw.admin(Method::POST, "/connection-tests", Some(json!({"display_name": "x", "protocol": "oidc", "oidc": {"issuer": "not a url"}}))).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
}

/// A pysaml2 IdP serving `keys`, asking our SP metadata of `conn` at each request.
fn saml_idp(gw: &crate::support::Gateway, keys: &std::path::Path, conn: &str) -> crate::peers::Peer {
    let users = keys.join("users.json");
    std::fs::write(&users, json!({"alice": {"email": ["alice@example.test"], "givenName": ["Alice"], "groups": ["Staff"]}}).to_string()).unwrap();
    let mut cmd = std::process::Command::new(crate::peers::peers_dir().join(".venv/bin/python"));
    cmd.arg(crate::peers::peers_dir().join("saml/idp.py"))
        .args(["serve", "--keys"])
        .arg(keys)
        .args(["--sp-metadata-url", &format!("{}/saml/{conn}/metadata", gw.base), "--users"])
        .arg(&users);
    crate::peers::spawn(cmd)
}

/// Walks a test's start URL through the IdP (HTTP-Redirect binding) to the result page.
async fn run_saml_test(gw: &crate::support::Gateway, conn: &str, start_url: &str) -> String {
    let b = Browser::new();
    let r = b.http.get(start_url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let idp = b.http.get(format!("{}&sign=assertion", r.headers()["location"].to_str().unwrap())).send().await.unwrap();
    let html = idp.text().await.unwrap();
    let field = |name: &str| {
        let marker = format!("name=\"{name}\" value=\"");
        let start = html.find(&marker).unwrap_or_else(|| panic!("no {name} in {html}")) + marker.len();
        html[start..start + html[start..].find('"').unwrap()].replace("&quot;", "\"").replace("&amp;", "&")
    };
    let form = [("SAMLResponse", field("SAMLResponse")), ("RelayState", field("RelayState"))];
    let r = b.http.post(format!("{}/saml/{conn}/acs", gw.base)).form(&form).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let (page, url) = b.visit(&format!("{}{}", gw.base, r.headers()["location"].to_str().unwrap())).await;
    assert!(url.contains("/test/"), "{url}");
    page.text().await.unwrap()
}

#[tokio::test]
async fn a_saml_dry_run_with_signed_requests_reports_a_refusal_and_a_wrong_key() {
    let gw = crate::support::Gateway::start().await;
    gw.admin(Method::POST, "/groups", Some(json!({"name": "Staff"}))).await;
    let keys = tempfile::tempdir().unwrap();
    let _ = crate::peers::saml_metadata(keys.path(), "http://127.0.0.1:9", &[]);
    let idp = saml_idp(&gw, keys.path(), "con_t");
    let users_before = gw.admin(Method::GET, "/users", None).await.1;

    // Not saved, signed AuthnRequests (a key pair made for the draft), no account for
    // alice and no JIT: the test verifies the round trip and reports the refusal.
    let draft = json!({"id": "con_t", "display_name": "Draft SAML", "protocol": "saml", "group_sync": true, "create_users": false,
        "saml": {"idp_metadata_url": idp.ready["metadata_url"], "sign_requests": true}});
    let (st, started) = gw.admin(Method::POST, "/connection-tests", Some(draft)).await;
    assert_eq!(st, StatusCode::CREATED, "{started}");
    assert!(started["connection"]["saml"]["sp_certificate"].is_string(), "{started}");
    let body = run_saml_test(&gw, "con_t", started["start_url"].as_str().unwrap()).await;
    assert!(body.contains("The round trip verified") && body.contains("signature and conditions"), "{body}");
    let (_, result) = gw.admin(Method::GET, &format!("/connection-tests/{}", started["test_id"].as_str().unwrap()), None).await;
    assert_eq!(result["ok"], true, "{result}");
    assert_eq!(result["report"]["user"]["action"], "refuse", "{result}");
    assert!(result["report"]["user"]["reason"].as_str().unwrap().contains("no account"), "{result}");
    assert!(result["claims"]["NameID"].is_string() || result["claims"]["NameID"].is_array(), "{result}");
    assert_eq!(gw.admin(Method::GET, "/users", None).await.1, users_before, "nothing was created");
    assert_eq!(gw.admin(Method::GET, "/connections", None).await.1, json!([]), "nothing was saved");

    // Metadata with another signing key: the test says the signature failed and what to do.
    let other = tempfile::tempdir().unwrap();
    let base = idp.ready["metadata_url"].as_str().unwrap().trim_end_matches("/metadata").to_string();
    let wrong_md = crate::peers::saml_metadata(other.path(), &base, &[]);
    let draft = json!({"id": "con_t", "display_name": "Draft SAML", "protocol": "saml", "create_users": true,
        "saml": {"idp_metadata_xml": wrong_md}});
    let (st, started) = gw.admin(Method::POST, "/connection-tests", Some(draft)).await;
    assert_eq!(st, StatusCode::CREATED, "{started}");
    let body = run_saml_test(&gw, "con_t", started["start_url"].as_str().unwrap()).await;
    assert!(body.contains("The test failed") && body.contains("metadata again"), "{body}");
    assert_eq!(gw.admin(Method::GET, "/users", None).await.1, users_before);
}

/// The start URL and the result page at the edges: a test that expired (or never
/// existed) says so and what to do; a result asked for before the sign-in finished gets
/// a page that says to finish it, in the console's style; another browser sees nothing.
#[tokio::test]
async fn an_expired_test_and_an_unfinished_one_say_what_to_do() {
    use ssogate::clock::Clock;
    let clock = Clock::fixed(1_800_000_000_000);
    let gw = crate::support::Gateway::start_with(std::sync::Arc::new(tempfile::tempdir().unwrap()), &[], clock.clone(), None).await;
    let (st, first) = gw.admin(Method::POST, "/connection-tests", Some(crate::support::oidc_body("Draft"))).await;
    assert_eq!(st, StatusCode::CREATED, "{first}");
    let (st, second) = gw.admin(Method::POST, "/connection-tests", Some(crate::support::oidc_body("Draft two"))).await;
    assert_eq!(st, StatusCode::CREATED, "{second}");
    let (first_start, first_id) = (first["start_url"].as_str().unwrap(), first["test_id"].as_str().unwrap());

    // Started, not finished: the browser that started it is told to finish at the IdP.
    let admin = Browser::new();
    let r = admin.http.get(first_start).send().await.unwrap();
    assert!(r.status().is_redirection(), "{}", r.status());
    assert!(r.headers()["location"].to_str().unwrap().starts_with("https://idp.example.com/authorize"));
    let r = admin.http.get(format!("{}/test/{first_id}", gw.base)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let csp = r.headers()["content-security-policy"].to_str().unwrap().to_string();
    assert!(csp.contains("style-src 'self'"), "{csp}");
    let body = r.text().await.unwrap();
    assert!(body.contains("has not finished") && body.contains("console.css") && body.contains("class=\"notice"), "{body}");
    assert!(body.contains(&format!("href=\"/test/{first_id}\"")), "a way to look again: {body}");
    // Another browser gets nothing of it.
    let r = Browser::new().http.get(format!("{}/test/{first_id}", gw.base)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // Past the flow lifetime the second test's start URL has expired.
    clock.advance(600_000 + 1_000);
    let r = Browser::new().http.get(second["start_url"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let body = r.text().await.unwrap();
    assert!(body.contains("expired or does not exist") && body.contains("start a new test from the console"), "{body}");
    // And an id that never existed reads the same.
    let r = Browser::new().http.get(format!("{}/test/tst_nosuch/start", gw.base)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}
