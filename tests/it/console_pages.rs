//! The console's Users & Groups, Audit log, Signing keys and Apps pages, and the end-user
//! login page, through their real endpoints: search and paging over many users, invite
//! with groups, disable and remove (sessions end), built-in groups protected, a synced
//! membership that cannot be removed by hand, audit filters, key rotation, an app's
//! secret shown once and "Signing in to <app>", branding from the configuration, and a
//! "try again" that keeps the app. Then a real Chromium walks every flow with screenshots
//! in `target/screenshots/console2/`.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::console::{assert_strict, csrf_of, make_admin, Console};
use crate::login::{setup, setup_with, Browser};
use crate::support::Gateway;

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Makes a user through the API; returns its id.
async fn user(gw: &Gateway, username: &str, email: Option<&str>) -> String {
    let (s, u) = gw.admin(Method::POST, "/users", Some(json!({"username": username, "email": email}))).await;
    assert_eq!(s, StatusCode::CREATED, "{u}");
    u["id"].as_str().unwrap().to_string()
}

async fn group(gw: &Gateway, name: &str) -> String {
    let (s, g) = gw.admin(Method::POST, "/groups", Some(json!({"name": name, "description": format!("The {name}")}))).await;
    assert_eq!(s, StatusCode::CREATED, "{g}");
    g["id"].as_str().unwrap().to_string()
}

/// How many table rows of users a page shows.
fn user_rows(html: &str) -> usize {
    html.matches("<tr data-user=").count()
}

#[tokio::test]
async fn the_users_page_searches_and_pages_with_groups_and_identities() {
    let gw = Gateway::start().await;
    let eng = group(&gw, "Engineers").await;
    let mut ids = vec![];
    for i in 0..60 {
        ids.push(user(&gw, &format!("user-{i:02}"), Some(&format!("user{i:02}@example.test"))).await);
    }
    let (s, _) = gw.admin(Method::PUT, &format!("/groups/{eng}/members/{}", ids[3]), None).await;
    assert!(s.is_success());
    let (s, c) = gw
        .admin(
            Method::POST,
            "/connections",
            Some(json!({"id": "con_x", "display_name": "Okta Prod", "protocol": "oidc",
        "oidc": {"issuer": "https://idp.example.test", "client_id": "c", "client_secret": "s", "authorization_endpoint": "https://idp.example.test/a",
                 "token_endpoint": "https://idp.example.test/t", "jwks_uri": "https://idp.example.test/j"}})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{c}");
    let (s, _) = gw.admin(Method::PUT, &format!("/users/{}/links/con_x", ids[3]), Some(json!({"subject": "00u-three"}))).await;
    assert!(s.is_success());
    user(&gw, "<b>mallory</b>", None).await;

    let c = Console::with_token(&gw).await;
    let r = c.b.http.get(format!("{}/console/users", gw.base)).send().await.unwrap();
    let headers = r.headers().clone();
    let html = r.text().await.unwrap();
    assert_strict(&headers, &html, "users page");
    assert_eq!(user_rows(&html), 50, "a page of 50");
    assert!(html.contains("1–50 of 61"), "{html}");
    assert!(html.contains("href=\"/console/users?page=2\""), "a next page");
    assert!(html.contains("&#60;b&#62;mallory&#60;/b&#62;") && !html.contains("<b>mallory"), "escaped");

    let (_, html) = c.get("/console/users?page=2").await;
    assert_eq!(user_rows(&html), 11);
    assert!(html.contains("51–61 of 61") && html.contains("rel=\"prev\"") && !html.contains("rel=\"next\""));

    // A search: username, email; groups with their source; linked identities by name.
    let (_, html) = c.get("/console/users?q=USER03").await;
    assert_eq!(user_rows(&html), 1, "{html}");
    assert!(html.contains("user-03") && html.contains(">Engineers<") && html.contains("added by hand"), "{html}");
    assert!(html.contains("Okta Prod") && html.contains("00u-three"), "{html}");
    let (_, html) = c.get("/console/users?q=%25").await;
    assert_eq!(user_rows(&html), 0, "% is a character, not a wildcard");
    let (_, html) = c.get("/console/users?q=user-0&status=pending").await;
    assert!(html.contains("No user matches"));
    let (_, html) = c.get("/console/users?status=active&q=user-0").await;
    assert_eq!(user_rows(&html), 10);

    // Bad input: a clear 400, not a 500.
    for bad in ["/console/users?page=0", "/console/users?page=x", "/console/users?status=gone"] {
        let (s, html) = c.get(bad).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}: {html}");
    }
    // The type-ahead's search: JSON, at most 8.
    let r = c.b.http.get(format!("{}/console/users/search?q=user", gw.base)).send().await.unwrap();
    let found: Value = r.json().await.unwrap();
    assert_eq!(found.as_array().unwrap().len(), 8);
    assert!(found[0]["id"].as_str().unwrap().starts_with("usr_"));
    // Not signed in: no search.
    let r = Browser::new().http.get(format!("{}/console/users/search?q=user", gw.base)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn invite_disable_and_remove_from_the_console() {
    let s = setup(json!({}), json!({})).await;
    let gw = &s.gw;
    let eng = group(gw, "Engineers").await;
    let c = Console::with_token(gw).await;

    // Without the form token: refused, nothing made.
    let r = gw.request(Method::POST, "/console/users/invite").form(&[("email", "x@example.test")]).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r =
        c.b.http
            .post(format!("{}/console/users/invite", gw.base))
            .header("origin", "https://evil.example")
            .form(&[("csrf", c.csrf.as_str()), ("email", "x@example.test")])
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(gw.admin(Method::GET, "/users", None).await.1, json!([]));

    // A bad address: 422 beside the form, kept as typed; nothing made.
    let r = c.post("/console/users/invite", &[("email", "not-an-address<script>"), ("group", &eng)]).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = r.text().await.unwrap();
    assert!(html.contains("email: is not an email address") && html.contains("not-an-address&#60;script&#62;"), "{html}");
    assert_eq!(gw.admin(Method::GET, "/users", None).await.1, json!([]));

    // Invited with a group: pending, with the date; the group by hand.
    let r = c.post("/console/users/invite", &[("email", "alice@example.test"), ("group", &eng)]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let (_, html) = c.get(r.headers()["location"].to_str().unwrap()).await;
    assert!(html.contains("alice@example.test is invited") && html.contains("status-pending") && html.contains(">Engineers<"), "{html}");
    // A hand-made link cannot put words in the console's mouth: the name is sealed.
    let (_, html) = c.get("/console/users?done=disabled&who=Call%20555-0100%20to%20re-enable").await;
    assert!(!html.contains("555-0100") && html.contains("the user is disabled"), "{html}");
    let (_, users) = gw.admin(Method::GET, "/users", None).await;
    let alice = users[0]["id"].as_str().unwrap().to_string();
    assert_eq!(users[0]["status"], "pending");
    assert!(users[0]["groups"].to_string().contains("Engineers"));
    // The same address again: 409, said.
    let r = c.post("/console/users/invite", &[("email", "ALICE@example.test")]).await;
    assert_eq!(r.status(), StatusCode::CONFLICT);

    // She signs in through the IdP: active.
    let (b, status, _, body) = s.login("alice").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, html) = c.get("/console/users?q=alice").await;
    assert!(html.contains("status-active") && html.contains("Node IdP"), "active, linked: {html}");

    // Disabled: her session ends, she cannot sign in.
    let r = c.post(&format!("/console/users/{alice}/status"), &[("disabled", "true")]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let (_, url) = b.visit(&format!("{}/", gw.base)).await;
    assert!(url.ends_with("/login"), "signed out: {url}");
    assert_eq!(gw.admin(Method::GET, &format!("/users/{alice}"), None).await.1["status"], "disabled");
    let r = c.post(&format!("/console/users/{alice}/status"), &[("disabled", "maybe")]).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = c.post(&format!("/console/users/{alice}/status"), &[("disabled", "false")]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let (b, status, _, _) = s.login("alice").await;
    assert_eq!(status, StatusCode::OK);

    // Removed: the confirmation says what ends; then her session and user are gone.
    let (st, html) = c.get(&format!("/console/users/{alice}/remove")).await;
    assert_eq!(st, StatusCode::OK);
    assert!(html.contains("Remove alice@example.test?") && html.contains("<strong>1</strong> live session"), "{html}");
    let r = c.post(&format!("/console/users/{alice}/remove"), &[]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let (_, url) = b.visit(&format!("{}/", gw.base)).await;
    assert!(url.ends_with("/login"), "signed out: {url}");
    assert_eq!(gw.admin(Method::GET, &format!("/users/{alice}"), None).await.0, StatusCode::NOT_FOUND);
    let r = c.post("/console/users/usr_nosuch/remove", &[]).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn an_admin_cannot_disable_or_remove_themselves() {
    let s = setup(json!({}), json!({})).await;
    let alice = make_admin(&s.gw, "alice@example.test").await;
    let b = Browser::new();
    let (r, _) = b.visit(&format!("{}/login/{}?return_to=%2Fconsole%2Fenter&login_hint=alice", s.gw.base, s.conn)).await;
    let html = r.text().await.unwrap();
    let c = Console { csrf: csrf_of(&html), b, base: s.gw.base.clone() };
    let (_, html) = c.get("/console/users").await;
    assert!(html.contains("<span class=\"faint\">you</span>"), "{html}");
    for path in [format!("/console/users/{alice}/status"), format!("/console/users/{alice}/remove")] {
        let r = c.post(&path, &[("disabled", "true")]).await;
        assert_eq!(r.status(), StatusCode::CONFLICT, "{path}");
    }
    assert_eq!(s.gw.admin(Method::GET, &format!("/users/{alice}"), None).await.1["status"], "active");
}

#[tokio::test]
async fn groups_keep_built_ins_and_synced_memberships_and_show_sources() {
    let s = setup(json!({}), json!({"group_sync": true})).await;
    let gw = &s.gw;
    let staff = group(gw, "staff").await;
    let bob = user(gw, "bob", Some("bob@example.test")).await;
    let carol = user(gw, "carol", None).await;
    // alice's login: group sync grants her `staff` (the IdP asserts engineers and staff).
    let (_, status, _, _) = s.login("alice").await;
    assert_eq!(status, StatusCode::OK);
    let (_, users) = gw.admin(Method::GET, "/users", None).await;
    let alice = users.as_array().unwrap().iter().find(|u| u["username"] == "alice@example.test").unwrap()["id"].as_str().unwrap().to_string();
    let c = Console::with_token(gw).await;

    // New group with members typed (the no-script path); an unknown name is said.
    let r = c.post("/console/groups", &[("name", "Designers"), ("description", "UI"), ("members", "bob, nobody-here")]).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text().await.unwrap().contains("No user is named “nobody-here”"));
    assert_eq!(gw.admin(Method::GET, "/groups", None).await.1.as_array().unwrap().len(), 4, "nothing made");
    // One user's username is another's email: the typed name is refused, not guessed.
    user(gw, "bob@example.test", None).await;
    let r = c.post("/console/groups", &[("name", "Designers"), ("description", "UI"), ("members", "bob@example.test")]).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text().await.unwrap().contains("“bob@example.test” names more than one user"));
    assert_eq!(gw.admin(Method::GET, "/groups", None).await.1.as_array().unwrap().len(), 4, "nothing made");
    let r = c.post("/console/groups", &[("name", "Designers"), ("description", "UI"), ("members", "BOB"), ("member", &carol)]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    let designers = loc.trim_start_matches("/console/groups/").split('?').next().unwrap().to_string();
    let (_, html) = c.get(&loc).await;
    assert!(
        html.contains("The group was created") && html.contains(&format!("data-member=\"{bob}\"")) && html.contains(&format!("data-member=\"{carol}\"")),
        "{html}"
    );
    // A name with a comma, or taken: 422 / 409 on the form.
    let r = c.post("/console/groups", &[("name", "a,b")]).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let r = c.post("/console/groups", &[("name", "designers")]).await;
    assert_eq!(r.status(), StatusCode::CONFLICT);

    // The table: built-ins marked, Users is everyone.
    let (_, html) = c.get("/console/groups").await;
    assert!(html.contains("Built-in") && html.contains("Everyone (4)") && html.contains("Designers"), "{html}");
    assert!(html.contains("<span class=\"muted small\">bob, carol</span>"), "the first members by name: {html}");
    assert!(!html.contains("/console/groups/grp_admins/delete") && !html.contains("/console/groups/grp_users/delete"));
    // Built-ins: Users has no form; Admins cannot be renamed or deleted.
    let (_, html) = c.get("/console/groups/grp_users").await;
    assert!(html.contains("cannot be edited") && !html.contains("action=\"/console/groups/grp_users/members\""), "{html}");
    let r = c.post("/console/groups/grp_users/members", &[("members", "bob")]).await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let r = c.post("/console/groups/grp_admins", &[("name", "Root"), ("description", "x")]).await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let r = c.post("/console/groups/grp_admins/delete", &[]).await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let (st, _) = c.get("/console/groups/grp_queue_admins/delete").await;
    assert_eq!(st, StatusCode::CONFLICT);

    // staff: alice synced from Node IdP (no Remove), bob by hand (Remove).
    let r = c.post(&format!("/console/groups/{staff}/members"), &[("member", &bob)]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let (_, html) = c.get(&format!("/console/groups/{staff}")).await;
    assert!(html.contains("synced from Node IdP") && html.contains("added by hand"), "{html}");
    assert!(html.contains(&format!("/console/groups/{staff}/members/{bob}/remove")));
    assert!(!html.contains(&format!("/console/groups/{staff}/members/{alice}/remove")), "no Remove for a synced one");
    let r = c.post(&format!("/console/groups/{staff}/members/{alice}/remove"), &[]).await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert!(r.text().await.unwrap().contains("synced from Node IdP"));
    let (_, members) = gw.admin(Method::GET, &format!("/groups/{staff}/members"), None).await;
    assert_eq!(members.as_array().unwrap().len(), 2, "both still members");
    let r = c.post(&format!("/console/groups/{staff}/members/{bob}/remove"), &[]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let (_, members) = gw.admin(Method::GET, &format!("/groups/{staff}/members"), None).await;
    assert_eq!(members.as_array().unwrap().len(), 1);

    // Edit, then delete with its confirmation.
    let r = c.post(&format!("/console/groups/{designers}"), &[("name", "Design"), ("description", "Product design")]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(gw.admin(Method::GET, &format!("/groups/{designers}"), None).await.1["name"], "Design");
    let (_, html) = c.get(&format!("/console/groups/{designers}/delete")).await;
    assert!(html.contains("Delete Design?") && html.contains("<strong>2</strong> members lose"), "{html}");
    let r = c.post(&format!("/console/groups/{designers}/delete"), &[]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(gw.admin(Method::GET, &format!("/groups/{designers}"), None).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_audit_log_filters_by_actor_action_connection_and_time() {
    let s = setup(json!({}), json!({})).await;
    let gw = &s.gw;
    user(gw, "bob", None).await;
    s.login("alice").await;
    let c = Console::with_token(gw).await;
    c.post("/console/keys/rotate", &[("alg", "ES256")]).await;

    let (st, html) = c.get("/console/audit").await;
    assert_eq!(st, StatusCode::OK);
    for a in ["user.create", "login.success", "connection.create", "signing_key.create", "console.sign_in"] {
        assert!(html.contains(&format!(">{a}<")), "{a}");
    }
    let (_, html) = c.get("/console/audit?action=login.").await;
    assert!(html.contains(">login.success<") && !html.contains(">user.create<") && !html.contains(">signing_key.create<"), "{html}");
    let (_, html) = c.get("/console/audit?actor=admin+token").await;
    assert!(html.contains(">signing_key.create<") && html.contains(">console.sign_in<") && !html.contains(">login.success<"), "{html}");
    let (_, html) = c.get(&format!("/console/audit?connection={}", s.conn)).await;
    assert!(html.contains(">login.success<") && html.contains(">connection.create<"), "{html}");
    assert!(html.contains("username: alice@example.test") && !html.contains("username: bob"), "what was done through it, not the admin's users: {html}");
    let (_, html) = c.get("/console/audit?until=2000-01-01T00%3A00").await;
    assert!(html.contains("No entry matches"), "{html}");
    let (_, html) = c.get("/console/audit?since=2000-01-01T00%3A00&action=user.create").await;
    assert!(html.contains(">user.create<"));
    let (st, html) = c.get("/console/audit?since=yesterday").await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(html.contains("2026-12-01T09:30"), "{html}");
    let (st, _) = c.get("/console/audit?before=-1").await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn keys_rotate_and_the_old_key_stays_published() {
    let gw = Gateway::start().await;
    let c = Console::with_token(&gw).await;
    let (_, html) = c.get("/console/keys").await;
    assert_eq!(html.matches("<tr data-kid=").count(), 1);
    let r = c.post("/console/keys/rotate", &[("alg", "RS256")]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let (_, html) = c.get("/console/keys?done=rotated").await;
    assert_eq!(html.matches("<tr data-kid=").count(), 2);
    assert!(html.contains("Retired, published") && html.contains(">Signing<") && html.contains(">RS256<"), "{html}");
    let jwks: Value = gw.request(Method::GET, "/jwks.json").send().await.unwrap().json().await.unwrap();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2, "both published");
    let r = c.post("/console/keys/rotate", &[("alg", "HS256")]).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn an_app_is_registered_its_secret_shown_once_and_its_logins_say_its_name() {
    let s = setup(json!({}), json!({})).await;
    let gw = &s.gw;
    let c = Console::with_token(gw).await;
    let callback = format!("{}/app-callback", gw.base);
    let r = c.post("/console/apps", &[("name", "Acme <Wiki>"), ("redirect_uris", "ftp://x")]).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text().await.unwrap().contains("redirect_uris[0]"));
    let r = c.post("/console/apps", &[("name", "Acme <Wiki>"), ("redirect_uris", &format!("{callback}\n"))]).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let html = r.text().await.unwrap();
    let secret = html.split("id=\"client-secret\">").nth(1).unwrap().split('<').next().unwrap().to_string();
    let client_id = html.split("id=\"client-id\">").nth(1).unwrap().split('<').next().unwrap().to_string();
    assert!(secret.len() >= 32 && html.contains("Acme &#60;Wiki&#62; is registered"), "{html}");
    let (_, list) = c.get("/console/apps").await;
    assert!(list.contains(&client_id) && !list.contains(&secret), "the secret is never shown again");
    let (_, audit) = gw.admin(Method::GET, "/audit?action=client.create", None).await;
    assert!(!audit.to_string().contains(&secret) && audit[0]["actor"] == "admin token");

    // A login through the app: the login page names it; after the IdP, a code for the app.
    let b = Browser::new();
    let authorize = format!("{}/authorize?client_id={client_id}&redirect_uri={}&response_type=code&scope=openid&state=st", gw.base, enc(&callback));
    let (r, url) = b.visit(&authorize).await;
    assert!(url.contains("/login?return_to=%2Fauthorize"), "{url}");
    let page = r.text().await.unwrap();
    assert!(page.contains("Signing in to <strong>Acme &#60;Wiki&#62;</strong>"), "{page}");
    let start = page.split("href=\"").find(|h| h.starts_with("/login/")).unwrap().split('"').next().unwrap().replace("&#38;", "&");
    let (_, url) = b.visit(&format!("{}{start}&login_hint=alice", gw.base)).await;
    assert!(url.starts_with(&format!("{callback}?code=")) && url.contains("state=st"), "{url}");

    // Deleted: its next authorization request is refused.
    let r = c.post(&format!("/console/apps/{client_id}/delete"), &[]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let r = b.http.get(&authorize).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_login_page_carries_the_branding_and_try_again_keeps_the_app() {
    let env = [
        ("SSOGATE_BRANDING__PRODUCT_NAME", "Acme <Sign-in>"),
        ("SSOGATE_BRANDING__ACCENT_COLOR", "#0f766e"),
        ("SSOGATE_BRANDING__LOGO_URL", "https://cdn.acme.example/logo.svg"),
    ];
    let s = setup_with(&env, json!({}), json!({"provider": "keycloak"})).await;
    let r = s.gw.request(Method::GET, "/login?return_to=%2Fconsole%2Fenter").send().await.unwrap();
    let csp = r.headers()["content-security-policy"].to_str().unwrap().to_string();
    let html = r.text().await.unwrap();
    assert!(
        html.contains("<title>Sign in · Acme &lt;Sign-in&gt;</title>") && html.contains("<img src=\"https://cdn.acme.example/logo.svg\" alt=\"\">"),
        "{html}"
    );
    assert!(html.contains("--accent:#0f766e"), "{html}");
    assert!(html.contains("src=\"/console/assets/logos/keycloak.svg\"") && html.contains("Sign in with Node IdP"), "the provider's logo: {html}");
    assert!(html.contains("href=\"/login/con_node?return_to=%2Fconsole%2Fenter\""), "{html}");
    assert!(csp.contains("img-src 'self' https://cdn.acme.example;"), "{csp}");

    // A refused start: "try again" is the login page for the same app.
    let back = "%2Fauthorize%3Fclient_id%3Dx%26response_type%3Dcode";
    let r = s.gw.request(Method::GET, &format!("/login/con_nosuch?return_to={back}")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let html = r.text().await.unwrap();
    assert!(html.contains(&format!("href=\"/login?return_to={back}\">Try again")), "{html}");
    assert!(html.contains("Acme &lt;Sign-in&gt;"), "branded: {html}");
    // A refused reply: "try again" is the same login; the login page is offered too.
    let b = Browser::new();
    let r = b.http.get(format!("{}/login/{}?return_to={back}", s.gw.base, s.conn)).send().await.unwrap();
    let to_idp = reqwest::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
    let state = to_idp.query_pairs().find(|(k, _)| k == "state").unwrap().1.into_owned();
    let cb = format!("{}/oidc/{}/callback?state={state}&error=access_denied", s.gw.base, s.conn);
    let html = b.http.get(cb).send().await.unwrap().text().await.unwrap();
    assert!(html.contains(&format!("href=\"/login/{}?return_to={back}\">Try again", s.conn)), "{html}");
    assert!(html.contains(&format!("href=\"/login?return_to={back}\">Choose another way")), "{html}");

    // Branding that cannot be used is refused at start, naming the key.
    let mut config = ssogate::config::Config::default();
    config.branding.accent_color = "red;}body{display:none".into();
    config.branding.logo_url = Some("javascript:alert(1)".into());
    let problems: Vec<String> = config.validate().into_iter().map(|p| p.key).collect();
    assert!(problems.contains(&"branding.accent_color".to_string()) && problems.contains(&"branding.logo_url".to_string()), "{problems:?}");
}

// ---------------------------------------------------------------------------------
// A real browser

fn shots() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/screenshots/console2")
}

#[tokio::test]
async fn a_real_browser_walks_users_groups_audit_keys_and_apps() {
    let accounts = json!({"accounts": {
        "alice": {"email": "alice@example.test", "email_verified": true, "name": "Alice Example", "groups": ["staff"]},
        "dana": {"email": "dana@example.test", "email_verified": true, "name": "Dana Invited", "groups": []}
    }});
    let env = [("SSOGATE_BRANDING__PRODUCT_NAME", "Acme Sign-in"), ("SSOGATE_BRANDING__ACCENT_COLOR", "#0f766e")];
    let s = setup_with(&env, accounts, json!({"group_sync": true, "provider": "keycloak", "display_name": "Acme Keycloak"})).await;
    let gw = &s.gw;
    make_admin(gw, "alice@example.test").await;
    group(gw, "staff").await;
    group(gw, "Engineers").await;
    for (name, email) in [("bob", "bob@example.test"), ("carol", "carol@example.test"), ("erin", "erin@example.test")] {
        user(gw, name, Some(email)).await;
    }
    let dir = shots();
    let _ = std::fs::remove_dir_all(&dir);
    let (base, dir_s) = (gw.base.clone(), dir.display().to_string());
    let out = tokio::task::spawn_blocking(move || crate::console::drive_script("console2.mjs", &[&base, &dir_s], &[], |need| panic!("unexpected need {need}")))
        .await
        .unwrap();
    assert_eq!(out["csp_violations"], json!([]), "{out}");
    assert!(out["invited"].as_str().unwrap().contains("dana@example.test is invited"), "{out}");
    assert!(out["dana_before"].as_str().unwrap().contains("Pending"), "{out}");
    assert!(out["dana_after"].as_str().unwrap().contains("Active") && out["dana_after"].as_str().unwrap().contains("Engineers"), "{out}");
    assert_eq!(out["suggested"], json!(["bob"]), "the type-ahead offers bob: {out}");
    assert!(out["group_members"].as_str().unwrap().contains("bob") && out["group_members"].as_str().unwrap().contains("added by hand"), "{out}");
    assert!(out["staff_members"].as_str().unwrap().contains("synced from Acme Keycloak"), "{out}");
    assert_eq!(out["synced_remove_buttons"], 0, "{out}");
    assert!(!out["after_removal"].as_str().unwrap().contains("bob"), "{out}");
    assert!(out["dana_signed_out"].as_str().unwrap().ends_with("/login"), "disabling ends her session: {out}");
    assert!(out["removed"].as_str().unwrap().contains("was removed"), "{out}");
    assert!(out["audit_filtered"].as_str().unwrap().contains("user.disable"), "{out}");
    assert!(!out["audit_filtered"].as_str().unwrap().contains("login.success"), "{out}");
    assert_eq!(out["keys_after"], 2, "{out}");
    assert!(out["app_secret"].as_str().unwrap().len() >= 32, "{out}");
    assert!(out["signing_in_to"].as_str().unwrap().contains("Signing in to Acme Wiki"), "{out}");
    assert!(out["app_landed"].as_str().unwrap().contains("/app-callback?code="), "{out}");
    assert!(out["error_retry"].as_str().unwrap().starts_with("/login?return_to=%2Fauthorize"), "{out}");
    for page in [
        "users",
        "invite",
        "users-invited",
        "users-active",
        "groups",
        "group-new",
        "group-created",
        "group-synced",
        "user-remove",
        "audit",
        "keys",
        "apps-new",
        "app-created",
        "apps",
        "login-app",
        "login",
        "error",
    ] {
        for size in ["desktop", "phone"] {
            assert!(dir.join(format!("{page}-{size}.png")).exists(), "{page}-{size}");
        }
    }
}
