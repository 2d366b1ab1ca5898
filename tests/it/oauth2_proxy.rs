//! What an operator switching from oauth2-proxy keeps using as is: `allowed_email_domains`
//! on `/oauth2/auth`, the `/ping` and `/ready` probes, and `/oauth2/userinfo` with
//! oauth2-proxy's field names.

use reqwest::StatusCode;

use crate::ingress::{auth, gateway_with_session, new_session};

#[tokio::test]
async fn allowed_email_domains_admits_verified_emails_of_the_listed_domains() {
    let (gw, clock, cookie, _) = gateway_with_session(&[], &["Engineers"]).await;
    // The session's email is alice@example.test, verified.
    for (q, want) in [
        ("allowed_email_domains=example.test", StatusCode::OK),
        ("allowed_email_domains=EXAMPLE.test", StatusCode::OK),
        ("allowed_email_domains=other.test,%20example.test", StatusCode::OK),
        ("allowed_email_domains=*", StatusCode::OK),
        ("allowed_email_domains=other.test", StatusCode::FORBIDDEN),
        // A leading dot or `*.` means the subdomains, not the domain itself.
        ("allowed_email_domains=.example.test", StatusCode::FORBIDDEN),
        ("allowed_email_domains=*.example.test", StatusCode::FORBIDDEN),
        ("allowed_email_domains=ample.test", StatusCode::FORBIDDEN),
        // Combined with another rule, both must let the session in.
        ("allowed_email_domains=example.test&allowed_groups=engineers", StatusCode::OK),
        ("allowed_email_domains=example.test&allowed_groups=admins", StatusCode::FORBIDDEN),
    ] {
        for path in ["/auth", "/oauth2/auth"] {
            assert_eq!(auth(&gw, &format!("{path}?{q}"), Some(&cookie), &[]).await.status(), want, "{path}?{q}");
        }
    }
    // Envoy's form reads the rule too, and a slip in its name is still a 400.
    assert_eq!(auth(&gw, "/auth/app/page?allowed_email_domains=other.test", Some(&cookie), &[("host", "app.test")]).await.status(), StatusCode::FORBIDDEN);
    let r = auth(&gw, "/auth?allowed_email_domain=example.test", Some(&cookie), &[]).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("allowed_email_domains"), "the message names the right spelling");
    let r = auth(&gw, "/auth?allowed_email_domains=", Some(&cookie), &[]).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // Without a session: 401 as always, whatever the rule.
    assert_eq!(auth(&gw, "/oauth2/auth?allowed_email_domains=example.test", None, &[]).await.status(), StatusCode::UNAUTHORIZED);

    // An unverified email never matches a domain rule (as allowed_emails).
    let id = new_session(&gw, &clock, &[]).await;
    let mut s = gw.app.sessions.remove(&id).await.unwrap().unwrap();
    s.email_verified = false;
    gw.app.sessions.create(&s).await.unwrap();
    let unverified = format!("ssogate_session={id}");
    assert_eq!(auth(&gw, "/auth?allowed_email_domains=example.test", Some(&unverified), &[]).await.status(), StatusCode::FORBIDDEN);
    assert_eq!(auth(&gw, "/auth", Some(&unverified), &[]).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn ping_ready_and_userinfo_answer_as_oauth2_proxy_does() {
    let (gw, _clock, cookie, _) = gateway_with_session(&[], &["Engineers", "Staff"]).await;
    let r = auth(&gw, "/ping", None, &[]).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.text().await.unwrap(), "OK");
    let r = auth(&gw, "/ready", None, &[]).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.text().await.unwrap(), "ready");

    let r = auth(&gw, "/oauth2/userinfo", Some(&cookie), &[]).await;
    assert_eq!(r.status(), StatusCode::OK);
    let info: serde_json::Value = r.json().await.unwrap();
    assert_eq!(info["user"], "usr_alice");
    assert_eq!(info["email"], "alice@example.test");
    assert_eq!(info["preferredUsername"], "alice");
    assert_eq!(info["groups"], serde_json::json!(["Engineers", "Staff"]));
    assert_eq!(auth(&gw, "/oauth2/userinfo", None, &[]).await.status(), StatusCode::UNAUTHORIZED);
}
