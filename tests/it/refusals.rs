//! Every refusal a browser can see during a login logs its cause (issue #18): one line
//! with the request id the page shows, the connection, the step and the underlying cause
//! — the IdP's error at the callback, an unreachable token endpoint, a bad reply, a flow
//! that does not exist. Against the real binary, with JSON logs.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::cli::{spawn_gateway, Lines};

const TOKEN: &str = "sgt_refusals-test-admin-token-0123456789";

/// The log line of `request_id` saying "login refused", waited for.
fn refusal_line(err: &Lines, request_id: &str) -> Value {
    let start = Instant::now();
    loop {
        let found = err
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["message"] == "login refused" && v["request_id"] == request_id);
        if let Some(v) = found {
            return v;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "no \"login refused\" line for request {request_id}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The request id an error page shows.
fn page_request_id(body: &str) -> String {
    let after = body.split("Request id: ").nth(1).unwrap_or_else(|| panic!("no request id on the page: {body}"));
    after.split('<').next().unwrap().trim().to_string()
}

#[tokio::test]
async fn every_login_refusal_logs_its_cause_with_the_request_id() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, base, _out, err) = spawn_gateway(dir.path(), &[("SSOGATE_ADMIN_TOKEN", TOKEN)]);
    let admin = reqwest::Client::new();
    let create = |body: Value| {
        let admin = admin.clone();
        let base = base.clone();
        async move {
            let r = admin.post(format!("{base}/api/v1/admin/connections")).bearer_auth(TOKEN).json(&body).send().await.unwrap();
            assert_eq!(r.status(), 201);
            r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string()
        }
    };
    // Nothing listens on port 9 of loopback: the token endpoint refuses connections.
    let oidc = create(json!({"display_name": "Refusals OIDC", "protocol": "oidc", "oidc": {
        "issuer": "http://127.0.0.1:9", "client_id": "c", "client_secret": "s",
        "authorization_endpoint": "http://127.0.0.1:9/authorize", "token_endpoint": "http://127.0.0.1:9/token",
        "jwks_uri": "http://127.0.0.1:9/jwks"}}))
    .await;
    let saml = create(json!({"display_name": "Refusals SAML", "protocol": "saml",
        "saml": {"idp_metadata_xml": crate::support::saml_metadata("https://idp.refusals.test/metadata")}}))
    .await;

    // A browser with a real flow of the OIDC connection (its state and flow cookie).
    let browser = reqwest::Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let state = || {
        let browser = browser.clone();
        let url = format!("{base}/login/{oidc}");
        async move {
            let r = browser.get(url).send().await.unwrap();
            let loc = reqwest::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
            loc.query_pairs().find(|(k, _)| k == "state").unwrap().1.to_string()
        }
    };
    let cb = format!("{base}/oidc/{oidc}/callback");
    let acs = format!("{base}/saml/{saml}/acs");
    let long = "/".to_string() + &"a".repeat(5000);

    // (what, request, status, step, what the cause says)
    let s1 = state().await;
    let s2 = state().await;
    let cases: Vec<(&str, reqwest::RequestBuilder, u16, &str, &str)> = vec![
        ("unknown connection", browser.get(format!("{base}/login/con_nosuch")), 404, "start", "does not exist"),
        ("oversized return_to", browser.get(format!("{base}/login/{oidc}?return_to={long}")), 400, "start", "longer than"),
        ("no state", browser.get(format!("{cb}?code=x")), 400, "flow", "no state"),
        ("unknown state", browser.get(format!("{cb}?code=x&state=unknown")), 400, "flow", "expired or was already used"),
        (
            "the IdP's error",
            browser.get(format!("{cb}?state={s1}&error=access_denied&error_description=not+today")),
            403,
            "upstream",
            "access_denied: not today",
        ),
        ("unreachable token endpoint", browser.get(format!("{cb}?state={s2}&code=x")), 502, "upstream", "code exchange: "),
        ("no SAMLResponse", browser.post(&acs).form(&[("RelayState", "x")]), 400, "upstream", "no SAMLResponse"),
        ("hostile SAML", browser.post(&acs).form(&[("SAMLResponse", "PCFET0NUWVBFIHg+PHg+PC94Pg==")]), 400, "upstream", "pre-check"),
    ];
    for (what, req, status, step, cause) in cases {
        let r = req.send().await.unwrap();
        assert_eq!(r.status().as_u16(), status, "{what}");
        let header_id = r.headers()["x-request-id"].to_str().unwrap().to_string();
        let body = r.text().await.unwrap();
        let id = page_request_id(&body);
        assert_eq!(id, header_id, "{what}: the page shows the response's request id");
        let line = refusal_line(&err, &id);
        assert_eq!(line["step"], step, "{what}: {line}");
        assert!(line["cause"].as_str().unwrap().contains(cause), "{what}: {line}");
        assert_eq!(line["status"], status, "{what}: {line}");
        if !what.starts_with("unknown connection") {
            assert!(line["connection"] == oidc.as_str() || line["connection"] == saml.as_str(), "{what}: {line}");
        }
    }
    // The transport failure is named, not just "could not be reached".
    let s3 = state().await;
    let r = browser.get(format!("{cb}?state={s3}&code=x")).send().await.unwrap();
    let id = page_request_id(&r.text().await.unwrap());
    let cause = refusal_line(&err, &id)["cause"].as_str().unwrap().to_string();
    assert!(cause.contains("connection failed") || cause.contains("refused"), "{cause}");
    // "Try again" returns to the same login, not to the bare login page.
    let s4 = state().await;
    let body = browser.get(format!("{cb}?state={s4}&error=access_denied")).send().await.unwrap().text().await.unwrap();
    assert!(body.contains(&format!("href=\"/login/{oidc}\"")), "{body}");
    child.kill().unwrap();
}
