//! The admin console through its real endpoints: sign-in with the admin token and through
//! a connection (oidc-provider), the 403 for a non-admin, CSRF (token and origin), the
//! strict CSP with no inline script or style, field errors, a stale edit, the delete
//! confirmation; then a real Chromium through every page (OIDC and SAML), with screenshots
//! in `target/screenshots/console/`.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::login::{setup, Browser};
use crate::peers::peers_dir;
use crate::support::{oidc_body, Gateway, TOKEN};

const CSP: &str =
    "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// A browser with a console session.
pub(crate) struct Console {
    pub(crate) b: Browser,
    pub(crate) base: String,
    pub(crate) csrf: String,
}

/// The value of the first hidden `csrf` field of a page.
pub(crate) fn csrf_of(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a form with a csrf field") + "name=\"csrf\" value=\"".len();
    html[at..].split('"').next().unwrap().to_string()
}

impl Console {
    /// Signs in with the admin token through the sign-in form.
    pub(crate) async fn with_token(gw: &Gateway) -> Console {
        let b = Browser::new();
        let page = b.http.get(format!("{}/console", gw.base)).send().await.unwrap().text().await.unwrap();
        let form = [("csrf", csrf_of(&page)), ("token", TOKEN.to_string())];
        let r = b.http.post(format!("{}/console/sign-in", gw.base)).form(&form).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert_eq!(r.headers()["location"], "/console/connections");
        let page = b.http.get(format!("{}/console/connections", gw.base)).send().await.unwrap().text().await.unwrap();
        Console { csrf: csrf_of(&page), b, base: gw.base.clone() }
    }

    pub(crate) async fn get(&self, path: &str) -> (StatusCode, String) {
        let r = self.b.http.get(format!("{}{path}", self.base)).send().await.unwrap();
        (r.status(), r.text().await.unwrap())
    }

    /// Posts a form as a browser on the console's page would (same origin, with the token).
    pub(crate) async fn post(&self, path: &str, fields: &[(&str, &str)]) -> reqwest::Response {
        let mut form: Vec<(String, String)> = vec![("csrf".into(), self.csrf.clone())];
        form.extend(fields.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        self.b.http.post(format!("{}{path}", self.base)).header("origin", &self.base).header("sec-fetch-site", "same-origin").form(&form).send().await.unwrap()
    }
}

async fn audit_actors(gw: &Gateway, action: &str) -> Vec<String> {
    let (_, audit) = gw.admin(Method::GET, "/audit?limit=1000", None).await;
    audit.as_array().unwrap().iter().filter(|a| a["action"] == action).map(|a| a["actor"].as_str().unwrap().to_string()).collect()
}

/// Checks the console's security headers and that a page carries no inline code.
pub(crate) fn assert_strict(headers: &reqwest::header::HeaderMap, html: &str, what: &str) {
    assert_eq!(headers["content-security-policy"], CSP, "{what}");
    assert_eq!(headers["x-frame-options"], "DENY", "{what}");
    assert_eq!(headers["x-content-type-options"], "nosniff", "{what}");
    assert_eq!(headers["referrer-policy"], "no-referrer", "{what}");
    assert!(!html.contains("<style") && !html.contains(" style="), "{what}: inline style");
    for (i, _) in html.match_indices("<script") {
        let tag = &html[i..i + html[i..].find('>').unwrap()];
        assert!(tag.contains(" src=\"/console/assets/"), "{what}: inline script {tag}");
        assert!(html[i..].starts_with(&format!("{tag}></script>")), "{what}: script with a body");
    }
    let lower = html.to_ascii_lowercase();
    for handler in [" onclick=", " onload=", " onsubmit=", " onchange=", "javascript:"] {
        assert!(!lower.contains(handler), "{what}: {handler}");
    }
}

#[tokio::test]
async fn the_first_page_says_how_to_sign_in_with_the_admin_token() {
    let gw = Gateway::start().await;
    let r = gw.request(Method::GET, "/console").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let headers = r.headers().clone();
    let html = r.text().await.unwrap();
    assert_strict(&headers, &html, "sign-in page");
    assert!(html.contains("bash scripts/run") && html.contains("admin-token reset") && html.contains("Admin token"), "{html}");
    // Not signed in: the console pages send the browser to sign in; forms are refused.
    let r = Browser::new().http.get(format!("{}/console/connections", gw.base)).send().await.unwrap();
    assert_eq!((r.status(), r.headers()["location"].to_str().unwrap()), (StatusCode::SEE_OTHER, "/console"));
    let r = gw.request(Method::POST, "/console/connections").form(&[("csrf", "x")]).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // The assets are served from the binary, with the same headers.
    for (path, ct) in
        [("/console/assets/console.css", "text/css"), ("/console/assets/console.js", "text/javascript"), ("/console/assets/logos/okta.svg", "image/svg+xml")]
    {
        let r = gw.request(Method::GET, path).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        assert!(r.headers()["content-type"].to_str().unwrap().starts_with(ct), "{path}");
        assert_eq!(r.headers()["content-security-policy"], CSP, "{path}");
    }
}

#[tokio::test]
async fn the_admin_token_is_exchanged_for_a_console_session_by_form_only() {
    let gw = Gateway::start().await;
    let b = Browser::new();
    let page = b.http.get(format!("{}/console", gw.base)).send().await.unwrap().text().await.unwrap();
    let token = csrf_of(&page);
    // A wrong token: 401, the page says so, no session.
    let r = b.http.post(format!("{}/console/sign-in", gw.base)).form(&[("csrf", token.as_str()), ("token", "sgt_wrong")]).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let page = r.text().await.unwrap();
    assert!(page.contains("not the admin token"));
    // Each sign-in page binds a fresh form token to the browser.
    let token = csrf_of(&page);
    // Without the form's token (a form from another site): refused before the token is read.
    let r = Browser::new().http.post(format!("{}/console/sign-in", gw.base)).form(&[("token", TOKEN)]).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = b
        .http
        .post(format!("{}/console/sign-in", gw.base))
        .header("origin", "http://evil.example")
        .form(&[("csrf", token.as_str()), ("token", TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // Never in a URL.
    let r = b.http.get(format!("{}/console/sign-in?token={TOKEN}", gw.base)).send().await.unwrap();
    assert_ne!(r.status(), StatusCode::SEE_OTHER);
    let (s, html) = (r.status(), r.text().await.unwrap());
    assert!(s.is_client_error() && !html.contains("Identity Providers"), "{s} {html}");
    assert_eq!(audit_actors(&gw, "console.sign_in").await, Vec::<String>::new());

    // The right one: a console session with its own cookie.
    let r = b.http.post(format!("{}/console/sign-in", gw.base)).form(&[("csrf", token.as_str()), ("token", TOKEN)]).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let cookies: Vec<&str> = r.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap()).collect();
    let session = cookies.iter().find(|c| c.starts_with("ssogate_console=")).expect("the console cookie");
    assert!(session.contains("HttpOnly") && session.contains("SameSite=Lax") && session.contains("Max-Age=3600"), "{session}");
    let (r, url) = b.visit(&format!("{}/console", gw.base)).await;
    assert_eq!(url, format!("{}/console/connections", gw.base));
    let html = r.text().await.unwrap();
    assert!(html.contains("No identity providers yet") && html.contains("Admin token"), "the empty state, signed in as the token: {html}");
    assert_eq!(audit_actors(&gw, "console.sign_in").await, vec!["admin token".to_string()]);
    // It is not an ingress session: /auth does not know it.
    let r = b.http.get(format!("{}/auth", gw.base)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // Signing out ends it.
    let c = Console { csrf: csrf_of(&html), b, base: gw.base.clone() };
    let r = c.post("/console/sign-out", &[]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let (_, url) = c.b.visit(&format!("{}/console/connections", gw.base)).await;
    assert_eq!(url, format!("{}/console", gw.base));
}

#[tokio::test]
async fn state_changes_need_the_form_token_and_our_origin() {
    let gw = Gateway::start().await;
    let (s, conn) = gw.admin(Method::POST, "/connections", Some(oidc_body("Corp"))).await;
    assert_eq!(s, StatusCode::CREATED, "{conn}");
    let id = conn["id"].as_str().unwrap();
    let c = Console::with_token(&gw).await;
    let path = format!("{}/console/connections/{id}/active", gw.base);
    let active = || async { gw.admin(Method::GET, &format!("/connections/{id}"), None).await.1["active"].clone() };

    let attempts: Vec<(&str, reqwest::RequestBuilder)> = vec![
        ("no token", c.b.http.post(&path).header("origin", &gw.base).form(&[("active", "false")])),
        ("a wrong token", c.b.http.post(&path).header("origin", &gw.base).form(&[("active", "false"), ("csrf", "nope")])),
        ("another origin", c.b.http.post(&path).header("origin", "http://evil.example").form(&[("active", "false"), ("csrf", c.csrf.as_str())])),
        ("a null origin", c.b.http.post(&path).header("origin", "null").form(&[("active", "false"), ("csrf", c.csrf.as_str())])),
        ("a cross-site fetch", c.b.http.post(&path).header("sec-fetch-site", "cross-site").form(&[("active", "false"), ("csrf", c.csrf.as_str())])),
        ("a sibling site", c.b.http.post(&path).header("sec-fetch-site", "same-site").form(&[("active", "false"), ("csrf", c.csrf.as_str())])),
    ];
    for (what, req) in attempts {
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{what}");
        let headers = r.headers().clone();
        let html = r.text().await.unwrap();
        assert!(html.contains("nothing changed"), "{what}: {html}");
        assert_strict(&headers, &html, what);
        assert_eq!(active().await, json!(true), "{what}: nothing changed");
    }
    // Delete, create and update are guarded the same way.
    for p in [format!("/console/connections/{id}/delete"), format!("/console/connections/{id}"), "/console/connections".into()] {
        let r = c.b.http.post(format!("{}{p}", gw.base)).header("origin", &gw.base).form(&[("display_name", "x")]).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{p}");
    }
    assert_eq!(gw.admin(Method::GET, "/connections", None).await.1.as_array().unwrap().len(), 1);

    // From our own page: done, and audited under the console's identity.
    let r = c.post(&format!("/console/connections/{id}/active"), &[("active", "false")]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(active().await, json!(false));
    let (_, html) = c.get(r.headers()["location"].to_str().unwrap()).await;
    assert!(html.contains("Corp is off"), "{html}");
    assert_eq!(audit_actors(&gw, "connection.update").await, vec!["admin token".to_string()]);
}

#[tokio::test]
async fn every_page_sends_the_strict_csp_and_no_inline_script_or_style() {
    let gw = Gateway::start().await;
    let (_, oidc) = gw.admin(Method::POST, "/connections", Some(oidc_body("Corp"))).await;
    let saml = json!({"display_name": "Corp SAML", "protocol": "saml", "saml": {"idp_metadata_xml": crate::support::saml_metadata("https://idp.test/metadata"), "sign_requests": true}});
    let (s, saml) = gw.admin(Method::POST, "/connections", Some(saml)).await;
    assert_eq!(s, StatusCode::CREATED, "{saml}");
    let c = Console::with_token(&gw).await;
    let (o, m) = (oidc["id"].as_str().unwrap(), saml["id"].as_str().unwrap());
    let pages = [
        "/console/connections".to_string(),
        "/console/connections?sort=updated_at&order=desc".into(),
        "/console/connections/new".into(),
        "/console/connections/new?protocol=oidc".into(),
        "/console/connections/new?protocol=saml".into(),
        "/console/connections/new/oidc/okta".into(),
        "/console/connections/new/saml/custom".into(),
        format!("/console/connections/{o}"),
        format!("/console/connections/{m}"),
        format!("/console/connections/{o}/delete"),
        "/console/nowhere".into(),
    ];
    for p in pages {
        let r = c.b.http.get(format!("{}{p}", gw.base)).send().await.unwrap();
        let status = r.status();
        let headers = r.headers().clone();
        let html = r.text().await.unwrap();
        assert!(status == StatusCode::OK || p == "/console/nowhere", "{p}: {status}");
        assert_strict(&headers, &html, &p);
    }
    // Every control has a label: each input / select / textarea id is named by a <label for>.
    let (_, html) = c.get(&format!("/console/connections/{m}")).await;
    for tag in ["<input ", "<select ", "<textarea "] {
        for (i, _) in html.match_indices(tag) {
            let el = &html[i..i + html[i..].find('>').unwrap()];
            if el.contains("type=\"hidden\"") {
                continue;
            }
            let id = el.split("id=\"").nth(1).map(|s| s.split('"').next().unwrap()).unwrap_or_else(|| panic!("no id: {el}"));
            assert!(html.contains(&format!("<label for=\"{id}\"")), "no label for {id}");
        }
    }
    // Write-only secrets show "set", never their value.
    let (_, html) = c.get(&format!("/console/connections/{o}")).await;
    assert!(html.contains("secret-state\">set</span>") && !html.contains("the-client-secret-value"), "{html}");
    let (_, html) = c.get(&format!("/console/connections/{m}")).await;
    assert!(html.contains("secret-state\">set</span>") && !html.contains("PRIVATE KEY"), "the SP key is set, never shown");
    assert!(html.contains("Download certificate"), "{html}");
    let r = c.b.http.get(format!("{}/console/connections/{m}/sp-certificate", gw.base)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.unwrap().starts_with("-----BEGIN CERTIFICATE-----"));
}

#[tokio::test]
async fn field_errors_show_beside_their_fields_and_nothing_is_saved() {
    let gw = Gateway::start().await;
    let c = Console::with_token(&gw).await;
    let (_, form) = c.get("/console/connections/new/oidc/custom").await;
    let id = form.split("name=\"id\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_string();
    assert!(id.starts_with("con_") && id.len() == 20, "an id like crate::id makes: {id}");
    assert!(form.contains(&format!("{}/oidc/{id}/callback", gw.base)), "the callback URL before saving");
    let r = c
        .post(
            "/console/connections",
            &[("id", &id), ("protocol", "oidc"), ("provider", "custom"), ("display_name", "Broken"), ("oidc.issuer", "not a url"), ("claims.user_id", "sub")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = r.text().await.unwrap();
    let issuer = html.split("id=\"field-oidc-issuer\"").nth(1).unwrap().split("id=\"field-").next().unwrap();
    assert!(issuer.contains("class=\"err\"") && issuer.contains("not a valid URL"), "{issuer}");
    assert!(html.contains("Nothing was saved") && html.contains(&format!("value=\"{id}\"")), "the same reserved id again");
    assert_eq!(gw.admin(Method::GET, "/connections", None).await.1, json!([]));

    // Saved with its reserved id, audited as the console's identity.
    let mut fields = vec![
        ("id", id.as_str()),
        ("protocol", "oidc"),
        ("provider", "custom"),
        ("display_name", "Fixed"),
        ("oidc.issuer", "https://idp.example.com"),
        ("oidc.client_id", "c1"),
        ("oidc.client_secret", "s3cret-value"),
        ("oidc.authorization_endpoint", "https://idp.example.com/authorize"),
        ("oidc.token_endpoint", "https://idp.example.com/token"),
        ("oidc.jwks_uri", "https://idp.example.com/jwks"),
        ("oidc.verify_signature", "on"),
        ("oidc.userinfo_from_id_token", "on"),
        ("oidc.code_challenge_method", "S256"),
        ("oidc.scopes", "openid, email"),
        ("oidc.allowed_algorithms", "RS256"),
        ("claims.user_id", "sub"),
        ("active", "on"),
    ];
    let r = c.post("/console/connections", &fields).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "{}", r.text().await.unwrap());
    let (_, conn) = gw.admin(Method::GET, &format!("/connections/{id}"), None).await;
    assert_eq!((conn["display_name"].as_str(), conn["oidc"]["client_secret_set"].as_bool()), (Some("Fixed"), Some(true)));
    assert_eq!(conn["oidc"]["scopes"], json!(["openid", "email"]));
    assert_eq!(audit_actors(&gw, "connection.create").await, vec!["admin token".to_string()]);
    // The reserved id is used once: a second form with it is a conflict, shown on the page.
    fields[3] = ("display_name", "Other");
    let r = c.post("/console/connections", &fields).await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
}

#[tokio::test]
async fn a_stale_edit_is_refused_and_offers_to_reload() {
    let gw = Gateway::start().await;
    let (_, conn) = gw.admin(Method::POST, "/connections", Some(oidc_body("Corp"))).await;
    let id = conn["id"].as_str().unwrap();
    let c = Console::with_token(&gw).await;
    let (_, form) = c.get(&format!("/console/connections/{id}")).await;
    assert!(form.contains("name=\"version\" value=\"1\""), "{form}");
    // Someone else saves first.
    let (s, _) = gw.admin(Method::PATCH, &format!("/connections/{id}"), Some(json!({"display_name": "Corp (theirs)"}))).await;
    assert_eq!(s, StatusCode::OK);
    let fields = [
        ("version", "1"),
        ("display_name", "Corp (mine)"),
        ("oidc.issuer", "https://idp.example.com"),
        ("oidc.client_id", "client-1"),
        ("oidc.authorization_endpoint", "https://idp.example.com/authorize"),
        ("oidc.token_endpoint", "https://idp.example.com/token"),
        ("oidc.jwks_uri", "https://idp.example.com/jwks"),
        ("oidc.verify_signature", "on"),
        ("oidc.userinfo_from_id_token", "on"),
        ("oidc.scopes", "openid"),
        ("oidc.allowed_algorithms", "RS256"),
        ("claims.user_id", "sub"),
    ];
    let r = c.post(&format!("/console/connections/{id}"), &fields).await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let html = r.text().await.unwrap();
    assert!(html.contains("Someone else changed this connection") && html.contains("now at version 2"), "{html}");
    assert!(html.contains(&format!("href=\"/console/connections/{id}\">Reload the current settings")), "{html}");
    let (_, now) = gw.admin(Method::GET, &format!("/connections/{id}"), None).await;
    assert_eq!((now["display_name"].as_str(), now["version"].as_i64()), (Some("Corp (theirs)"), Some(2)), "never overwritten");
    // From the current version it saves, and the secret stays (empty field: kept).
    let mut fields = fields.to_vec();
    fields[0] = ("version", "2");
    let r = c.post(&format!("/console/connections/{id}"), &fields).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "{}", r.text().await.unwrap());
    let (_, now) = gw.admin(Method::GET, &format!("/connections/{id}"), None).await;
    assert_eq!((now["display_name"].as_str(), now["oidc"]["client_secret_set"].as_bool()), (Some("Corp (mine)"), Some(true)));
}

/// Accounts for the console's login tests: alice (to be an admin), carol (not one).
fn accounts() -> Value {
    json!({"accounts": {
        "alice": {"email": "alice@example.test", "email_verified": true, "name": "Alice Example", "groups": ["admins"]},
        "carol": {"email": "carol@example.test", "email_verified": true, "name": "Carol Example", "groups": []}
    }})
}

/// Makes `email` a user of the directory and a member of Admins; returns the user id.
pub(crate) async fn make_admin(gw: &Gateway, email: &str) -> String {
    let (s, u) = gw.admin(Method::POST, "/users", Some(json!({"username": email, "email": email}))).await;
    assert_eq!(s, StatusCode::CREATED, "{u}");
    let id = u["id"].as_str().unwrap().to_string();
    let (s, _) = gw.admin(Method::PUT, &format!("/groups/grp_admins/members/{id}"), None).await;
    assert!(s.is_success());
    id
}

#[tokio::test]
async fn admins_sign_in_through_a_connection_and_others_get_403() {
    let s = setup(accounts(), json!({})).await;
    let alice = make_admin(&s.gw, "alice@example.test").await;
    let console = |who: &str| format!("{}/login/{}?return_to=%2Fconsole%2Fenter&login_hint={who}", s.gw.base, s.conn);

    // carol: a good login, no console; not even with a group an app's allowed_groups names.
    let carol = Browser::new();
    let (r, url) = carol.visit(&console("carol")).await;
    assert_eq!((r.status(), url.as_str()), (StatusCode::FORBIDDEN, format!("{}/console/enter", s.gw.base).as_str()));
    let html = r.text().await.unwrap();
    assert!(html.contains("No access to the console") && html.contains("not a member of the Admins group"), "{html}");
    let (r, _) = carol.visit(&format!("{}/console/connections", s.gw.base)).await;
    assert!(!r.text().await.unwrap().contains("Identity Providers</h1>"));
    let (r, _) = carol.visit(&format!("{}/", s.gw.base)).await;
    assert!(r.text().await.unwrap().contains("carol@example.test"), "her login session is untouched");

    // alice, in Admins: the console, audited as her.
    let b = Browser::new();
    let (r, url) = b.visit(&console("alice")).await;
    assert_eq!(url, format!("{}/console/connections", s.gw.base));
    let html = r.text().await.unwrap();
    assert!(html.contains("alice@example.test") && html.contains("Node IdP"), "{html}");
    let c = Console { csrf: csrf_of(&html), b, base: s.gw.base.clone() };
    let r = c.post(&format!("/console/connections/{}/active", s.conn), &[("active", "true")]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let actor = format!("{alice} (alice@example.test)");
    assert_eq!(audit_actors(&s.gw, "connection.update").await, vec![actor.clone()]);
    assert_eq!(audit_actors(&s.gw, "console.sign_in").await, vec![actor]);

    // Out of Admins: the next console request is refused, and the session is over.
    let (st, _) = s.gw.admin(Method::DELETE, &format!("/groups/grp_admins/members/{alice}"), None).await;
    assert!(st.is_success());
    let (status, html) = c.get("/console/connections").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{html}");
    let r = c.post(&format!("/console/connections/{}/active", s.conn), &[("active", "false")]).await;
    assert_ne!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(s.gw.admin(Method::GET, &format!("/connections/{}", s.conn), None).await.1["active"], json!(true));

    // Back in Admins, a new console session; a logout ends it with the login session.
    make_admin_again(&s.gw, &alice).await;
    let (_, url) = c.b.visit(&format!("{}/console/enter", s.gw.base)).await;
    assert_eq!(url, format!("{}/console/connections", s.gw.base));
    let r = c.b.http.post(format!("{}/logout", s.gw.base)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let (_, url) = c.b.visit(&format!("{}/console/connections", s.gw.base)).await;
    assert_eq!(url, format!("{}/console", s.gw.base), "signed out of the console too");
}

async fn make_admin_again(gw: &Gateway, id: &str) {
    let (s, _) = gw.admin(Method::PUT, &format!("/groups/grp_admins/members/{id}"), None).await;
    assert!(s.is_success());
}

#[tokio::test]
async fn the_delete_confirmation_says_what_it_ends() {
    let s = setup(accounts(), json!({"group_sync": true})).await;
    let (st, _) = s.gw.admin(Method::POST, "/groups", Some(json!({"name": "Engineers"}))).await;
    assert!(st.is_success());
    s.set_account("carol", json!({"email": "carol@example.test", "email_verified": true, "groups": ["engineers"]})).await;
    let (carol, status, _, _) = s.login("carol").await;
    assert_eq!(status, StatusCode::OK);
    let c = Console::with_token(&s.gw).await;
    let (status, html) = c.get(&format!("/console/connections/{}/delete", s.conn)).await;
    assert_eq!(status, StatusCode::OK);
    let text = html.split_whitespace().collect::<Vec<_>>().join(" ");
    for want in ["<strong>1</strong> live session started through it", "<strong>1</strong> linked user:", "<strong>1</strong> user's group memberships"] {
        assert!(text.contains(want), "{want}: {text}");
    }
    let r = c.post(&format!("/console/connections/{}/delete", s.conn), &[]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let (st, _) = s.gw.admin(Method::GET, &format!("/connections/{}", s.conn), None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let r = carol.http.get(format!("{}/auth", s.gw.base)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "her session ended");
    assert_eq!(audit_actors(&s.gw, "connection.delete").await, vec!["admin token".to_string()]);
}

#[tokio::test]
async fn saml_connections_from_an_uploaded_file_or_pasted_xml() {
    let gw = Gateway::start().await;
    let c = Console::with_token(&gw).await;
    let (_, form) = c.get("/console/connections/new/saml/custom").await;
    let id = form.split("name=\"id\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_string();
    for url in [format!("{}/saml/{id}/acs", gw.base), format!("{}/saml/{id}/metadata", gw.base)] {
        assert!(form.contains(&format!("value=\"{url}\"")) && form.contains(&format!("data-copy=\"{url}\"")), "{url} with a copy button");
    }
    let xml = crate::support::saml_metadata("https://idp.test/metadata");
    let multipart = reqwest::multipart::Form::new()
        .text("csrf", c.csrf.clone())
        .text("id", id.clone())
        .text("protocol", "saml")
        .text("provider", "custom")
        .text("display_name", "Uploaded")
        .text("saml.entity_id", "")
        .text("saml.idp_metadata_xml", "")
        .part("saml.idp_metadata_file", reqwest::multipart::Part::text(xml.clone()).file_name("idp.xml").mime_str("text/xml").unwrap())
        .text("saml.require_signed_assertions", "on")
        .text("saml.sign_requests", "on")
        .text("claims.user_id", "NameID")
        .text("active", "on");
    let r = c.b.http.post(format!("{}/console/connections", gw.base)).header("origin", &gw.base).multipart(multipart).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "{}", r.text().await.unwrap());
    let (_, conn) = gw.admin(Method::GET, &format!("/connections/{id}"), None).await;
    assert_eq!(conn["saml"]["idp"]["entity_id"], "https://idp.test/metadata");
    assert_eq!(conn["saml"]["entity_id"], format!("{}/saml/{id}/metadata", gw.base));
    assert_eq!(conn["saml"]["sp_private_key_set"], json!(true), "a key pair was generated for signed requests");

    // Pasted XML without a signing certificate: the error is beside the metadata field.
    let (_, form) = c.get("/console/connections/new/saml/custom").await;
    let id2 = form.split("name=\"id\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_string();
    let r = c
        .post(
            "/console/connections",
            &[
                ("id", &id2),
                ("protocol", "saml"),
                ("provider", "custom"),
                ("display_name", "Pasted"),
                ("saml.idp_metadata_xml", "<nope/>"),
                ("claims.user_id", "NameID"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = r.text().await.unwrap();
    let field = html.split("id=\"field-saml-idp-metadata-xml\"").nth(1).unwrap().split("id=\"field-").next().unwrap();
    assert!(field.contains("class=\"err\""), "{field}");
    assert!(field.contains("&#60;nope/&#62;"), "the pasted XML comes back, escaped: {field}");
}

// ---------------------------------------------------------------------------------
// A real browser

/// Where the screenshots go (named in the README).
fn shots() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/screenshots/console")
}

/// What the directory and the sessions hold (users with their links and groups, each
/// user's sessions, the groups), to see that Test Provider creates nothing.
async fn store_snapshot(base: String) -> Value {
    let http = reqwest::Client::new();
    let get = |path: String| {
        let http = http.clone();
        let base = base.clone();
        async move { http.get(format!("{base}/api/v1/admin{path}")).bearer_auth(TOKEN).send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let users = get("/users".into()).await;
    let mut sessions = vec![];
    for u in users.as_array().unwrap() {
        sessions.push(get(format!("/users/{}/sessions", u["id"].as_str().unwrap())).await);
    }
    json!({"users": users, "sessions": sessions, "groups": get("/groups".into()).await})
}

/// Runs console.mjs; `answer` does what each {"need": …} line asks. Returns its last line.
fn drive(args: &[&str], env: &[(&str, &str)], answer: impl FnMut(&Value)) -> Value {
    drive_script("console.mjs", args, env, answer)
}

/// Runs the browser script `script` (in tests/peers/browser) with `args` and `env`;
/// `answer` does what each {"need": …} line it prints asks. Returns its last line.
pub(crate) fn drive_script(script: &str, args: &[&str], env: &[(&str, &str)], mut answer: impl FnMut(&Value)) -> Value {
    assert!(peers_dir().join("browser/node_modules/playwright-core").exists(), "run `bash tests/peers/setup.sh` first");
    let mut cmd = Command::new("node");
    cmd.arg(peers_dir().join("browser").join(script)).args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut last = String::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        let v: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
        if v.get("need").is_some() {
            answer(&v);
            writeln!(stdin, "ok").unwrap();
        } else {
            last = line;
        }
    }
    let status = child.wait().unwrap();
    assert!(status.success(), "{script} failed; last line {last}");
    serde_json::from_str(&last).unwrap_or_else(|_| panic!("{script} printed {last:?}"))
}

#[tokio::test]
async fn a_real_browser_runs_the_console_with_oidc() {
    let s = setup(accounts(), json!({})).await;
    make_admin(&s.gw, "alice@example.test").await;
    let issuer = s.idp.ready["issuer"].as_str().unwrap().to_string();
    let dir = shots().join("oidc");
    let _ = std::fs::remove_dir_all(&dir);
    let (base, dir_s, iss) = (s.gw.base.clone(), dir.display().to_string(), issuer.clone());
    let rt = tokio::runtime::Handle::current();
    let gw_base = s.gw.base.clone();
    let out = tokio::task::spawn_blocking(move || {
        let mut before = Value::Null;
        drive(&["oidc", &base, &dir_s, &iss], &[], |need| match need["need"].as_str() {
            Some("redirect_uri") => {
                let callback = need["callback"].as_str().unwrap().to_string();
                let r = rt
                    .block_on(reqwest::Client::new().post(format!("{iss}/__test/clients/gateway/redirect_uris")).json(&json!({"uri": callback})).send())
                    .unwrap();
                assert!(r.status().is_success());
            }
            Some("snapshot") => before = rt.block_on(store_snapshot(gw_base.clone())),
            Some("compare") => assert_eq!(rt.block_on(store_snapshot(gw_base.clone())), before, "Test Provider created nothing"),
            other => panic!("unexpected need {other:?}"),
        })
    })
    .await
    .unwrap();
    assert!(out["test_verdict"].as_str().unwrap().contains("The round trip verified"), "{out}");
    let checks = out["test_checks"].to_string();
    for step in ["code exchange", "ID token signature", "ID token claims", "claim mapping"] {
        assert!(checks.contains(step), "{step} in {checks}");
    }
    assert!(out["test_outcome"].as_str().unwrap().contains("alice"), "the test signs in as alice: {out}");
    assert_eq!(out["who"], "alice@example.test");
    let presets: Vec<String> = serde_json::from_value(out["presets"].clone()).unwrap();
    assert_eq!(presets.len(), 9, "every OIDC preset in the grid: {presets:?}");
    assert_eq!(presets.last().map(String::as_str), Some("custom"));
    let callback = out["callback"].as_str().unwrap();
    let id = callback.trim_start_matches(&format!("{}/oidc/", s.gw.base)).trim_end_matches("/callback");
    assert!(id.starts_with("con_"), "{callback}");
    assert_eq!(out["fetched"], format!("{issuer}/auth"), "Fetch from issuer filled the endpoints");
    assert!(out["created"].as_str().unwrap().contains("Second IdP was created"), "{out}");
    assert_eq!((&out["off"], &out["on"]), (&json!("false"), &json!("true")));
    assert!(out["delete_text"].as_str().unwrap().contains("Delete Second IdP?"), "{out}");
    assert!(out["buttons"].to_string().contains("Sign in with Second IdP"), "{out}");
    assert!(out["user_text"].as_str().unwrap().contains("carol@example.test"), "carol signed in with its button: {out}");
    assert_eq!(out["refused_status"], 403);
    assert_eq!(out["csp_violations"], json!([]));
    // The connection is what the browser made, under the id the form reserved.
    let (_, conn) = s.gw.admin(Method::GET, &format!("/connections/{id}"), None).await;
    assert_eq!((conn["display_name"].as_str(), conn["active"].as_bool()), (Some("Second IdP"), Some(true)));
    assert_eq!(conn["oidc"]["token_endpoint"], format!("{issuer}/token"));
    for page in [
        "signin",
        "connections",
        "new-protocol",
        "new-oidc-providers",
        "new-oidc-form",
        "test-provider-result",
        "connections-two",
        "edit-oidc",
        "delete-confirm",
        "forbidden",
    ] {
        for size in ["desktop", "phone"] {
            assert!(dir.join(format!("{page}-{size}.png")).exists(), "{page}-{size}");
        }
    }
}

#[tokio::test]
async fn a_real_browser_runs_the_console_with_saml_and_an_uploaded_metadata_file() {
    let gw = Gateway::start().await;
    let keys = tempfile::tempdir().unwrap();
    let _ = crate::peers::saml_metadata(keys.path(), "http://127.0.0.1:9", &[]);
    // The IdP reads our SP metadata from this file at each request: written once we have it.
    let sp = keys.path().join("sp.xml");
    std::fs::write(&sp, "<x/>").unwrap();
    let mut cmd = Command::new(peers_dir().join(".venv/bin/python"));
    cmd.arg(peers_dir().join("saml/idp.py")).args(["serve", "--keys"]).arg(keys.path()).arg("--sp-metadata").arg(&sp).args(["--sign", "both"]);
    let idp = crate::peers::spawn(cmd);
    let metadata = reqwest::get(idp.ready["metadata_url"].as_str().unwrap()).await.unwrap().text().await.unwrap();
    let file = keys.path().join("idp-metadata.xml");
    std::fs::write(&file, metadata).unwrap();
    let dir = shots().join("saml");
    let _ = std::fs::remove_dir_all(&dir);
    let (base, dir_s, file_s) = (gw.base.clone(), dir.display().to_string(), file.display().to_string());
    let rt = tokio::runtime::Handle::current();
    let out = tokio::task::spawn_blocking(move || {
        let mut before = Value::Null;
        drive(&["saml", &base, &dir_s, &file_s], &[("CONSOLE_TOKEN", TOKEN)], |need| match need["need"].as_str() {
            Some("snapshot") => before = rt.block_on(store_snapshot(base.clone())),
            Some("compare") => assert_eq!(rt.block_on(store_snapshot(base.clone())), before, "Test Provider created nothing"),
            _ => {
                assert_eq!(need["need"], "sp_metadata");
                let xml = rt.block_on(async { reqwest::get(need["url"].as_str().unwrap()).await.unwrap().text().await.unwrap() });
                assert!(xml.contains("AuthnRequestsSigned=\"true\""), "signed requests: {xml}");
                std::fs::write(&sp, xml).unwrap();
            }
        })
    })
    .await
    .unwrap();
    assert_eq!(out["who"], "Admin token");
    assert!(out["empty"].as_str().unwrap().contains("No identity providers yet"), "{out}");
    let presets: Vec<String> = serde_json::from_value(out["presets"].clone()).unwrap();
    assert_eq!(presets.len(), 5, "every SAML preset in the grid: {presets:?}");
    assert_eq!((&out["off"], &out["on"]), (&json!("false"), &json!("true")));
    let edit = out["edit_text"].as_str().unwrap();
    assert!(edit.contains("IdP metadata in use") && edit.contains("Request signing certificate"), "{edit}");
    assert!(out["user_text"].as_str().unwrap().contains("Signed in") && out["user_text"].as_str().unwrap().contains("alice@example.test"), "{out}");
    assert_eq!(out["csp_violations"], json!([]));
    assert_eq!(audit_actors(&gw, "connection.create").await, vec!["admin token".to_string()]);
    // Test Provider from the row, with signed requests, through the real IdP.
    assert!(out["test_verdict"].as_str().unwrap().contains("The round trip verified"), "{out}");
    assert!(out["test_checks"].to_string().contains("signature and conditions"), "{out}");
    assert!(out["test_outcome"].as_str().unwrap().contains("Creates the user"), "{out}");
    assert!(out["last_test"].as_str().unwrap().contains("passed"), "{out}");
    assert_eq!(audit_actors(&gw, "connection.test").await, vec!["admin token".to_string()]);
    for page in ["signin-first-run", "connections-empty", "new-saml-providers", "new-saml-form", "connections-saml", "test-provider-saml", "edit-saml"] {
        for size in ["desktop", "phone"] {
            assert!(dir.join(format!("{page}-{size}.png")).exists(), "{page}-{size}");
        }
    }
}
