//! Identity integrity (issue #10), through the real endpoints: a login in a browser that
//! already has a session ends that session.

use std::io::Read;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use reqwest::StatusCode;
use serde_json::json;

use crate::login::Browser;
use crate::saml::{forge, Acs};

/// Starts a SAML login in `b`: (RelayState, AuthnRequest id).
async fn start_in(acs: &Acs, b: &Browser) -> (String, String) {
    let r = b.http.get(format!("{}/login/con_s", acs.gw.base)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let url = reqwest::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
    let q = |k: &str| url.query_pairs().find(|(n, _)| n == k).unwrap().1.to_string();
    let mut xml = String::new();
    flate2::read::DeflateDecoder::new(&B64.decode(q("SAMLRequest")).unwrap()[..]).read_to_string(&mut xml).unwrap();
    let start = xml.find("ID=\"").unwrap() + 4;
    (q("RelayState"), xml[start..start + xml[start..].find('"').unwrap()].to_string())
}

/// Logs `name_id` in through `b`; returns the new session id.
async fn login(acs: &Acs, b: &Browser, name_id: &str) -> String {
    let (relay, id) = start_in(acs, b).await;
    let spec = acs.spec(Some(&id), json!({"name_id": name_id, "attributes": {"email": [format!("{name_id}@example.test")]}}));
    let r = b.http.post(&acs.acs).form(&[("SAMLResponse", forge(&spec)), ("RelayState", relay)]).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    r.headers()
        .get_all("set-cookie")
        .iter()
        .map(|c| c.to_str().unwrap().to_string())
        .find(|c| c.starts_with("ssogate_session=") && !c.starts_with("ssogate_session=;"))
        .and_then(|c| c.trim_start_matches("ssogate_session=").split(';').next().map(str::to_string))
        .expect("a session cookie")
}

/// Issue #10, 7: logging in again in the same browser (as another user here) ends the
/// session the browser had; another browser's session is untouched.
#[tokio::test]
async fn a_new_login_in_the_same_browser_ends_its_previous_session() {
    let acs = Acs::new(json!({}), json!({"create_users": true})).await;
    let (b, other) = (Browser::new(), Browser::new());
    let first = login(&acs, &b, "alice").await;
    let others = login(&acs, &other, "carol").await;
    let second = login(&acs, &b, "bob").await;
    assert_ne!(first, second);
    let now = acs.gw.app.clock.now();
    assert!(acs.gw.app.sessions.touch(&first, now).await.unwrap().is_none(), "the previous session ended");
    assert!(acs.gw.app.sessions.touch(&second, now).await.unwrap().is_some());
    assert!(acs.gw.app.sessions.touch(&others, now).await.unwrap().is_some(), "another browser's session stays");
}

/// Issue #10, 7: an admin disables a user: every session ends at once, and the user
/// cannot log in until re-enabled. An admin can also end a user's sessions alone.
#[tokio::test]
async fn a_disabled_user_loses_every_session_and_cannot_log_in_until_enabled() {
    use reqwest::Method;
    let acs = Acs::new(json!({}), json!({"create_users": true})).await;
    let (b, other) = (Browser::new(), Browser::new());
    let first = login(&acs, &b, "alice").await;
    let second = login(&acs, &other, "alice").await;
    let (_, users) = acs.gw.admin(Method::GET, "/users", None).await;
    let id = users[0]["id"].as_str().unwrap().to_string();
    let live = |sid: String| {
        let gw = &acs.gw;
        async move { gw.app.sessions.touch(&sid, gw.app.clock.now()).await.unwrap().is_some() }
    };
    assert!(live(first.clone()).await && live(second.clone()).await);

    // The admin's list names each session by its sid, never by the cookie; one ends alone.
    let (s, list) = acs.gw.admin(Method::GET, &format!("/users/{id}/sessions"), None).await;
    assert_eq!(s, StatusCode::OK, "{list}");
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");
    assert!(!list.to_string().contains(&first) && !list.to_string().contains(&second), "no session id in the list: {list}");
    assert_eq!(list[0]["connection_id"], "con_s");
    let newest = list[0]["sid"].as_str().unwrap().to_string();
    let (s, by_conn) = acs.gw.admin(Method::GET, "/connections/con_s/sessions", None).await;
    assert_eq!(s, StatusCode::OK, "{by_conn}");
    assert_eq!(by_conn.as_array().unwrap().len(), 2, "the connection's sessions: {by_conn}");
    assert_eq!(by_conn[0]["user_id"], id.as_str());
    let (s, v) = acs.gw.admin(Method::DELETE, &format!("/users/{id}/sessions/{newest}"), None).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    assert!(!live(second.clone()).await && live(first.clone()).await, "only that session ended");
    let (s, _) = acs.gw.admin(Method::DELETE, &format!("/users/{id}/sessions/{newest}"), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "a second time finds nothing");
    let second = login(&acs, &other, "alice").await;

    // Ending the sessions alone: the user may log in again.
    let (s, v) = acs.gw.admin(Method::DELETE, &format!("/users/{id}/sessions"), None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["ended"], 2, "{v}");
    assert!(!live(first).await && !live(second).await);
    let again = login(&acs, &b, "alice").await;

    let (s, v) = acs.gw.admin(Method::PATCH, &format!("/users/{id}"), Some(json!({"disabled": true}))).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "disabled");
    assert!(!live(again).await, "disabling ends the sessions");
    let (relay, request_id) = start_in(&acs, &b).await;
    let spec = acs.spec(Some(&request_id), json!({"name_id": "alice", "attributes": {"email": ["alice@example.test"]}}));
    let r = b.http.post(&acs.acs).form(&[("SAMLResponse", forge(&spec)), ("RelayState", relay)]).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(r.text().await.unwrap().contains("disabled"), "the page says why");

    let (s, v) = acs.gw.admin(Method::PATCH, &format!("/users/{id}"), Some(json!({"disabled": false}))).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "active");
    login(&acs, &b, "alice").await;
    let (_, audit) = acs.gw.admin(Method::GET, "/audit?limit=1000", None).await;
    for action in ["user.disable", "user.enable", "user.sessions.end"] {
        assert!(audit.as_array().unwrap().iter().any(|a| a["action"] == action), "{action} audited: {audit}");
    }
}
