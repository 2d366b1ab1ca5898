//! Vendor fidelity (issue #15): oidc-provider configured to behave like each vendor where
//! it differs from a generic IdP — Google's scheme-less issuer and `hd`, Entra ID's
//! multi-tenant issuer template with `tid`, object-id groups and group overage, Keycloak's
//! full group paths, `email_verified` as a string, `private_key_jwt` and
//! `client_secret_jwt` — each logged in through the real callback, or refused with a
//! clear message, a login error reason and nothing created.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::login::{setup, Setup};

const SECRET: &str = "gateway-secret-0123456789";

/// The IdP's issuer.
fn issuer(s: &Setup) -> String {
    s.idp.ready["issuer"].as_str().unwrap().to_string()
}

/// The login refusals audited for the setup's connection: (reason, sentence).
async fn refusals(s: &Setup) -> Vec<(String, String)> {
    let (status, events) = s.gw.admin(Method::GET, &format!("/audit?connection={}&action=login.refused", s.conn), None).await;
    assert_eq!(status, StatusCode::OK, "{events}");
    events.as_array().unwrap().iter().map(|e| (e["detail"]["reason"].as_str().unwrap_or_default().to_string(), e["detail"]["message"].to_string())).collect()
}

fn user_names(users: &[Value]) -> Vec<String> {
    let mut names: Vec<String> = users.iter().map(|u| u["username"].as_str().unwrap().to_string()).collect();
    names.sort();
    names
}

fn group_names(user: &Value) -> Vec<String> {
    let mut names: Vec<String> = user["groups"].as_array().unwrap().iter().map(|g| g["name"].as_str().unwrap().to_string()).collect();
    names.sort();
    names
}

#[tokio::test]
async fn vendors_email_verified_as_the_string_true_is_not_verified() {
    // VENDORS: trust email only when email_verified is literally true.
    let accounts = json!({"accounts": {
        "carol": {"email": "carol@example.test", "email_verified": "true", "name": "Carol"},
        "dan": {"email": "dan@example.test", "email_verified": true, "name": "Dan"}
    }});
    let s = setup(accounts, json!({"oidc": {"email_verification": true}})).await;
    let (_, status, _, body) = s.login("carol").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("verif"), "{body}");
    assert!(s.users().await.is_empty(), "nothing is created");
    assert!(refusals(&s).await.iter().any(|(r, _)| r == "email_not_verified"));
    let (_, status, _, body) = s.login("dan").await;
    assert_eq!(status, StatusCode::OK, "the literal true passes: {body}");
}

#[tokio::test]
async fn vendors_google_legacy_issuer_form_is_accepted_only_as_an_alias() {
    // Google's legacy ID tokens say `accounts.google.com`: the issuer without its scheme.
    let s = setup(json!({"id_token_issuer": "{host}"}), json!({})).await;
    let host = issuer(&s).trim_start_matches("http://").to_string();
    let (_, status, _, body) = s.login("alice").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("another issuer"), "{body}");
    assert!(s.users().await.is_empty());
    let (st, c) = s.gw.admin(Method::PATCH, &format!("/connections/{}", s.conn), Some(json!({"oidc": {"issuer_aliases": [host]}}))).await;
    assert_eq!(st, StatusCode::OK, "{c}");
    assert_eq!(c["oidc"]["issuer_aliases"][0], host.as_str());
    let (_, status, _, body) = s.login("alice").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(user_names(&s.users().await), vec!["alice@example.test"]);
    // The alias is no wildcard: another form is still refused.
    let (st, _) = s.gw.admin(Method::PATCH, &format!("/connections/{}", s.conn), Some(json!({"oidc": {"issuer_aliases": ["accounts.google.com"]}}))).await;
    assert_eq!(st, StatusCode::OK);
    let (_, status, _, _) = s.login("alice").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn vendors_google_hd_allow_rule_admits_only_the_workspace_domain() {
    let accounts = json!({"accounts": {
        "ws": {"email": "ws@example.com", "email_verified": true, "hd": "example.com"},
        "gmail": {"email": "someone@gmail.com", "email_verified": true},
        "other": {"email": "x@other.example", "email_verified": true, "hd": "other.example"}
    }});
    let s = setup(accounts, json!({"allow": [{"claim": "hd", "values": ["example.com"]}]})).await;
    let (_, status, _, body) = s.login("gmail").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    // The refusal names the claim, never the values admitted (internal domains stay private).
    assert!(body.contains("no hd claim") && !body.contains("example.com"), "{body}");
    let (_, status, _, body) = s.login("other").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("hd is not one this connection admits") && !body.contains("other.example") && !body.contains("example.com"), "{body}");
    assert!(s.users().await.is_empty(), "a refused account is never created");
    // Refusals are audited once per reason and minute (the rest counted): one here.
    let reasons: Vec<String> = refusals(&s).await.into_iter().map(|(r, _)| r).collect();
    assert_eq!(reasons, vec!["not_allowed"], "{reasons:?}");
    let (browser, status, _, body) = s.login("ws").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(user_names(&s.users().await), vec!["ws@example.com"]);
    let auth = |b: crate::login::Browser| {
        let url = format!("{}/auth", s.gw.base);
        async move { b.http.get(url).send().await.unwrap().status() }
    };
    assert_eq!(auth(crate::login::Browser { http: browser.http.clone() }).await, StatusCode::OK);
    // A change to who may sign in binds live sessions: they end, and each user signs in
    // again under the new rule. A change elsewhere (the display name) ends nothing.
    let (_, c) = s.gw.admin(Method::PATCH, &format!("/connections/{}", s.conn), Some(json!({"display_name": "Workspace"}))).await;
    assert_eq!(c["display_name"], "Workspace", "{c}");
    assert_eq!(auth(crate::login::Browser { http: browser.http.clone() }).await, StatusCode::OK, "renaming ends no session");
    let (st, c) = s.gw.admin(Method::PATCH, &format!("/connections/{}", s.conn), Some(json!({"allow": [{"claim": "hd", "values": ["corp.example"]}]}))).await;
    assert_eq!(st, StatusCode::OK, "{c}");
    assert_eq!(auth(browser).await, StatusCode::UNAUTHORIZED, "the session admitted under the old rule ended");
    // Values with commas are refused: the console lists them comma-separated.
    let (st, e) =
        s.gw.admin(Method::PATCH, &format!("/connections/{}", s.conn), Some(json!({"allow": [{"claim": "hd", "values": ["a.example,b.example"]}]}))).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert!(e.to_string().contains("allow[0].values") && e.to_string().contains("comma"), "{e}");
    // A rule with no values would admit no one: refused with the field named.
    let (st, e) = s.gw.admin(Method::PATCH, &format!("/connections/{}", s.conn), Some(json!({"allow": [{"claim": "hd", "values": []}]}))).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert!(e.to_string().contains("allow[0].values"), "{e}");
}

#[tokio::test]
async fn vendors_entra_multi_tenant_checks_the_tid_template_then_the_allow_list() {
    let accounts = json!({
        "tenant_discovery": true,
        "id_token_issuer": {"t1user": "{issuer}/{tid}/v2.0", "t2user": "{issuer}/{tid}/v2.0", "liar": "{issuer}/t1/v2.0", "notid": "{issuer}/t1/v2.0"},
        "accounts": {
            "t1user": {"email": "a@t1.example", "tid": "t1", "oid": "oid-a"},
            "t2user": {"email": "b@t2.example", "tid": "t2", "oid": "oid-b"},
            "liar": {"email": "c@t2.example", "tid": "t2", "oid": "oid-c"},
            "notid": {"email": "d@t1.example", "oid": "oid-d"}
        }
    });
    // Without the tenant allow-list the multi-tenant connection is refused, naming it.
    let s = setup(accounts, json!({"display_name": "Single", "oidc": {"email_verification": false}})).await;
    let organizations = format!("{}/organizations/v2.0", issuer(&s));
    let body = |allowed: Value| {
        json!({"display_name": "Entra", "protocol": "oidc", "provider": "azure", "create_users": true,
               "id": "con_entra",
               "oidc": {"issuer": organizations, "client_id": "gateway", "client_secret": SECRET, "allowed_tenants": allowed}})
    };
    let (st, e) = s.gw.admin(Method::POST, "/connections", Some(body(json!([])))).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert!(e.to_string().contains("oidc.allowed_tenants"), "{e}");
    // The IdP's client accepts this connection's callback too.
    let cb = format!("{}/oidc/con_entra/callback", s.gw.base);
    let r = reqwest::Client::new().post(format!("{}/__test/clients/gateway/redirect_uris", issuer(&s))).json(&json!({"uri": cb})).send().await.unwrap();
    assert!(r.status().is_success());
    let (st, c) = s.gw.admin(Method::POST, "/connections", Some(body(json!(["t1"])))).await;
    assert_eq!(st, StatusCode::CREATED, "{c}");
    assert_eq!(c["oidc"]["issuer"], format!("{}/{{tenantid}}/v2.0", issuer(&s)), "discovery's template is the issuer");
    let mut entra = s;
    entra.conn = "con_entra".into();
    let (_, status, _, body) = entra.login("t1user").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, status, _, body) = entra.login("t2user").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("tenant t2") && body.contains("allowed_tenants"), "{body}");
    let (_, status, _, body) = entra.login("liar").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("another issuer"), "iss of t1 with a tid of t2: {body}");
    let (_, status, _, body) = entra.login("notid").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("no usable tid"), "{body}");
    let users = entra.users().await;
    assert_eq!(users.len(), 1, "only t1's user: {users:?}");
    assert_eq!(users[0]["links"][0]["subject"], "oid-a", "Entra ID users are keyed on oid");
    let reasons: Vec<String> = refusals(&entra).await.into_iter().map(|(r, _)| r).collect();
    assert!(reasons.contains(&"not_allowed".to_string()) && reasons.contains(&"invalid_reply".to_string()), "{reasons:?}");
}

#[tokio::test]
async fn vendors_object_id_groups_and_keycloak_paths_map_to_directory_groups() {
    let eng = "5f2c8e1a-0b3d-4c6e-9f7a-1d2e3f4a5b6c";
    let ops = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d";
    let accounts = json!({"accounts": {
        "erin": {"email": "erin@example.test", "email_verified": true, "groups": [eng, ops, "/parent/child", "/elsewhere/child", "Staff"]}
    }});
    let mapping = json!({"map": {eng: "Engineers", "/parent/child": "Child"}, "unmapped": "ignore"});
    let s = setup(accounts, json!({"group_sync": true, "group_mapping": mapping})).await;
    for name in ["Engineers", "Child", "Staff", ops] {
        let (st, _) = s.gw.admin(Method::POST, "/groups", Some(json!({"name": name}))).await;
        assert_eq!(st, StatusCode::CREATED);
    }
    let (_, status, _, body) = s.login("erin").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let users = s.users().await;
    assert_eq!(group_names(&users[0]), vec!["Child", "Engineers", "Users"], "mapped values only: unmapped ones are ignored");
    // Matched by name as well: the unmapped values that name a group.
    let (st, c) =
        s.gw.admin(Method::PATCH, &format!("/connections/{}", s.conn), Some(json!({"group_mapping": {"map": {eng: "Engineers"}, "unmapped": "by_name"}})))
            .await;
    assert_eq!(st, StatusCode::OK, "{c}");
    assert_eq!(c["group_mapping"]["unmapped"], "by_name");
    let (_, status, _, body) = s.login("erin").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let users = s.users().await;
    let mut want = vec!["Engineers".to_string(), "Staff".into(), "Users".into(), ops.to_string()];
    want.sort();
    assert_eq!(group_names(&users[0]), want, "the path is no longer mapped, so Child goes");
}

#[tokio::test]
async fn vendors_entra_group_overage_is_refused_or_read_from_the_configured_groups_endpoint() {
    let accounts = json!({"accounts": {
        "many": {"email": "many@example.test", "email_verified": true,
                 "_claim_names": {"groups": "src1"},
                 "_claim_sources": {"src1": {"endpoint": "https://graph.microsoft.com/v1.0/users/many/getMemberObjects"}}}
    }});
    let s = setup(accounts, json!({"group_sync": true})).await;
    let (_, status, _, body) = s.login("many").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("overage") && body.contains("_claim_names.groups"), "{body}");
    assert!(s.users().await.is_empty());
    assert_eq!(refusals(&s).await.into_iter().map(|(r, _)| r).collect::<Vec<_>>(), vec!["groups_overage"]);
    // Without group sync the pointer changes nothing.
    let (st, _) = s.gw.admin(Method::PATCH, &format!("/connections/{}", s.conn), Some(json!({"group_sync": false}))).await;
    assert_eq!(st, StatusCode::OK);
    let (_, status, _, body) = s.login("many").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(group_names(&s.users().await[0]), vec!["Users"]);

    // With the groups endpoint the admin configured, the groups are read there instead
    // (never from the URL the token names).
    let eng = "5f2c8e1a-0b3d-4c6e-9f7a-1d2e3f4a5b6c";
    s.gw.admin(Method::POST, "/groups", Some(json!({"name": "Engineers"}))).await;
    let mut many = json!({"email": "many@example.test", "email_verified": true, "all_groups": [eng, "unknown-id"],
        "_claim_names": {"groups": "src1"}, "_claim_sources": {"src1": {"endpoint": "http://127.0.0.1:1/never"}}});
    s.set_account("many", many.clone()).await;
    let endpoint = format!("{}/__groups", issuer(&s));
    let patch = json!({"group_sync": true, "group_mapping": {"map": {eng: "Engineers"}}, "oidc": {"groups_endpoint": endpoint}});
    let (st, c) = s.gw.admin(Method::PATCH, &format!("/connections/{}", s.conn), Some(patch)).await;
    assert_eq!(st, StatusCode::OK, "{c}");
    let (_, status, _, body) = s.login("many").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(group_names(&s.users().await[0]), vec!["Engineers", "Users"]);
    // An endpoint that refuses: the login is refused, the memberships stay as they were.
    many["all_groups"] = json!([]);
    s.set_account("many", many).await;
    let bad = json!({"oidc": {"groups_endpoint": format!("{}/__nowhere", issuer(&s))}});
    let (st, _) = s.gw.admin(Method::PATCH, &format!("/connections/{}", s.conn), Some(bad)).await;
    assert_eq!(st, StatusCode::OK);
    let (_, status, _, body) = s.login("many").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert!(body.contains("groups endpoint"), "{body}");
    assert_eq!(group_names(&s.users().await[0]), vec!["Engineers", "Users"]);
}

/// A setup whose IdP client authenticates with `method` (and `extra` client metadata).
async fn jwt_setup(method: &str, extra: Value, conn: Value) -> Setup {
    // The connection's callback and JWKS URL are known before the gateway starts only by
    // their shape: the helper's gateway is made first, so the client is added after.
    let mut client = json!({"client_id": "gateway", "client_secret": "gateway-secret-0123456789-0123456789-abcdef",
        "redirect_uris": ["http://127.0.0.1:1/unused"], "token_endpoint_auth_method": method});
    if let (Value::Object(c), Value::Object(e)) = (&mut client, extra) {
        c.extend(e);
    }
    setup(json!({"clients": [client]}), conn).await
}

#[tokio::test]
async fn vendors_private_key_jwt_authenticates_with_the_key_pair_the_gateway_made() {
    // The IdP fetches the connection's public key from its JWKS URL at the token call.
    let s = jwt_setup("private_key_jwt", json!({"token_endpoint_auth_signing_alg": "RS256", "jwks_uri": "http://127.0.0.1:1/replaced"}), json!({})).await;
    // setup made the connection with the default method; switch it, which makes the pair.
    let (st, c) =
        s.gw.admin(Method::PATCH, &format!("/connections/{}", s.conn), Some(json!({"oidc": {"token_endpoint_auth_method": "private_key_jwt"}}))).await;
    assert_eq!(st, StatusCode::OK, "{c}");
    let jwks_url = c["oidc"]["client_jwks_url"].as_str().unwrap().to_string();
    assert_eq!(jwks_url, format!("{}/oidc/{}/jwks.json", s.gw.base, s.conn));
    let jwks: Value = reqwest::get(&jwks_url).await.unwrap().json().await.unwrap();
    let key = &jwks["keys"][0];
    assert_eq!((key["kty"].as_str(), key["alg"].as_str()), (Some("RSA"), Some("RS256")));
    assert!(key.get("d").is_none() && key.get("p").is_none(), "only the public key is published: {key}");
    assert_eq!(c["oidc"]["client_jwk"], *key);
    let (st, exported) = s.gw.admin(Method::GET, &format!("/connections/{}", s.conn), None).await;
    assert_eq!(st, StatusCode::OK);
    assert!(!exported.to_string().contains("PRIVATE KEY"), "the private key is a secret");
    // Register the JWKS URL at the IdP (its client), then log in.
    let idp = issuer(&s);
    let r = reqwest::Client::new().post(format!("{idp}/__test/clients/gateway/jwks_uri")).json(&json!({"uri": jwks_url})).send().await.unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let cb = format!("{}/oidc/{}/callback", s.gw.base, s.conn);
    let r = reqwest::Client::new().post(format!("{idp}/__test/clients/gateway/redirect_uris")).json(&json!({"uri": cb})).send().await.unwrap();
    assert!(r.status().is_success());
    let (_, status, _, body) = s.login("alice").await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn vendors_client_secret_jwt_and_the_method_chosen_from_discovery() {
    // The IdP lists only client_secret_jwt: a connection that leaves the method unset
    // takes it from discovery.
    let s = jwt_setup("client_secret_jwt", json!({}), json!({"oidc": {"client_secret": "gateway-secret-0123456789-0123456789-abcdef"}})).await;
    let (_, c) = s.gw.admin(Method::GET, &format!("/connections/{}", s.conn), None).await;
    assert_eq!(c["oidc"]["token_endpoint_auth_method"], "client_secret_basic", "oidc-provider lists basic too: the preset's stays");
    let idp = issuer(&s);
    let cb = format!("{}/oidc/{}/callback", s.gw.base, s.conn);
    let r = reqwest::Client::new().post(format!("{idp}/__test/clients/gateway/redirect_uris")).json(&json!({"uri": cb})).send().await.unwrap();
    assert!(r.status().is_success());
    let (_, status, _, _) = s.login("alice").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "the IdP refuses Basic for a client_secret_jwt client");
    let short = json!({"oidc": {"token_endpoint_auth_method": "client_secret_jwt", "client_secret": "too-short-for-hs256"}});
    let (st, e) = s.gw.admin(Method::PATCH, &format!("/connections/{}", s.conn), Some(short)).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert!(e.to_string().contains("at least 32 bytes"), "{e}");
    let (st, c) =
        s.gw.admin(Method::PATCH, &format!("/connections/{}", s.conn), Some(json!({"oidc": {"token_endpoint_auth_method": "client_secret_jwt"}}))).await;
    assert_eq!(st, StatusCode::OK, "{c}");
    let (_, status, _, body) = s.login("alice").await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Discovery listing client_secret_post and client_secret_jwt only: the method left
    // unset becomes client_secret_post.
    let s = setup(
        json!({"client_auth_methods": ["client_secret_post", "client_secret_jwt"],
               "clients": [{"client_id": "gateway", "client_secret": SECRET, "redirect_uris": ["http://127.0.0.1:1/unused"], "token_endpoint_auth_method": "client_secret_post"}]}),
        json!({}),
    )
    .await;
    let (_, c) = s.gw.admin(Method::GET, &format!("/connections/{}", s.conn), None).await;
    assert_eq!(c["oidc"]["token_endpoint_auth_method"], "client_secret_post", "{c}");
    let cb = format!("{}/oidc/{}/callback", s.gw.base, s.conn);
    let r = reqwest::Client::new().post(format!("{}/__test/clients/gateway/redirect_uris", issuer(&s))).json(&json!({"uri": cb})).send().await.unwrap();
    assert!(r.status().is_success());
    let (_, status, _, body) = s.login("alice").await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

// ---------------------------------------------------------------------------------
// SAML, against pysaml2 (xmlsec1 signing)

/// A hidden form field's value (the IdP's auto-POST form).
fn hidden(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let end = html[start..].find('"')? + start;
    Some(html[start..end].replace("&#x27;", "'").replace("&quot;", "\"").replace("&amp;", "&"))
}

/// A gateway, and a pysaml2 IdP serving `users` (USERS.json) to connection `con_s`.
async fn saml_setup(users: Value) -> (crate::support::Gateway, crate::peers::Peer, tempfile::TempDir) {
    let gw = crate::support::Gateway::start().await;
    let keys = tempfile::tempdir().unwrap();
    let _ = crate::peers::saml_metadata(keys.path(), "http://127.0.0.1:9", &[]);
    let file = keys.path().join("users.json");
    std::fs::write(&file, users.to_string()).unwrap();
    let mut cmd = std::process::Command::new(crate::peers::peers_dir().join(".venv/bin/python"));
    cmd.arg(crate::peers::peers_dir().join("saml/idp.py"))
        .args(["serve", "--keys"])
        .arg(keys.path())
        .args(["--sp-metadata-url", &format!("{}/saml/con_s/metadata", gw.base), "--users"])
        .arg(&file);
    let idp = crate::peers::spawn(cmd);
    (gw, idp, keys)
}

/// A login through the IdP with `idp_params` (`alg=sha1`, ...): the ACS's status and the
/// page it leads to.
async fn saml_login(gw: &crate::support::Gateway, idp_params: &str) -> (StatusCode, String) {
    let b = crate::login::Browser::new();
    let r = b.http.get(format!("{}/login/con_s", gw.base)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let url = format!("{}&{idp_params}", r.headers()["location"].to_str().unwrap());
    let page = b.http.get(url).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
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
async fn vendors_saml_sha1_is_refused_by_default_and_accepted_only_with_the_opt_in() {
    let (gw, idp, _keys) = saml_setup(json!({"alice": {"email": ["alice@example.test"]}})).await;
    let (st, c) = gw
        .admin(
            Method::POST,
            "/connections",
            Some(json!({"id": "con_s", "display_name": "Legacy AD FS", "protocol": "saml", "create_users": true,
                         "saml": {"idp_metadata_url": idp.ready["metadata_url"]}})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{c}");
    assert_eq!(c["saml"]["allow_sha1"], false, "off for a new connection");
    let (st, body) = saml_login(&gw, "alg=sha1").await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("signed with SHA-1") && body.contains("allow_sha1") && body.contains("SHA-256"), "{body}");
    let (_, users) = gw.admin(Method::GET, "/users", None).await;
    assert_eq!(users, json!([]), "nothing is created");
    let metrics = reqwest::get(format!("{}/metrics", gw.base)).await.unwrap().text().await.unwrap();
    assert!(!metrics.contains("ssogate_saml_sha1_allowed{"), "{metrics}");

    // The opt-in: shown on the connection, counted in the metrics, SHA-1 accepted.
    let (st, c) = gw.admin(Method::PATCH, "/connections/con_s", Some(json!({"saml": {"allow_sha1": true}}))).await;
    assert_eq!(st, StatusCode::OK, "{c}");
    assert_eq!(c["saml"]["allow_sha1"], true);
    let metrics = reqwest::get(format!("{}/metrics", gw.base)).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("ssogate_saml_sha1_allowed{connection=\"con_s\"} 1"), "{metrics}");
    let (st, page) = saml_login(&gw, "alg=sha1").await;
    assert_eq!(st, StatusCode::SEE_OTHER, "{page}");
    assert!(page.contains("alice@example.test"), "{page}");
    // SHA-256 goes on working either way.
    let (st, page) = saml_login(&gw, "alg=sha256").await;
    assert_eq!(st, StatusCode::SEE_OTHER, "{page}");
}

#[tokio::test]
async fn vendors_entra_saml_keys_on_the_object_identifier_refuses_groups_link_overage_and_allows_by_tenant() {
    const OID: &str = "http://schemas.microsoft.com/identity/claims/objectidentifier";
    const LINK: &str = "http://schemas.microsoft.com/claims/groups.link";
    const TENANT: &str = "http://schemas.microsoft.com/identity/claims/tenantid";
    let users = json!({"alice": {
        "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress": ["alice@example.test"],
        OID: ["7c1e9a52-0d4b-4f1e-8a3c-2b9d6e5f4a31"],
        TENANT: ["3f2b8c1e-7d4a-4e6b-9a0c-5b1d2e3f4a5b"],
        LINK: ["https://graph.windows.net/tenant/users/7c1e9a52/getMemberObjects"]
    }});
    let (gw, idp, _keys) = saml_setup(users).await;
    let (st, c) = gw
        .admin(
            Method::POST,
            "/connections",
            Some(json!({"id": "con_s", "display_name": "Entra SAML", "protocol": "saml", "provider": "adfs",
                         "create_users": true, "group_sync": true,
                         "saml": {"idp_metadata_url": idp.ready["metadata_url"]}})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{c}");
    let (st, body) = saml_login(&gw, "alg=sha256").await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("overage") && body.contains("groups.link"), "{body}");
    let (_, users) = gw.admin(Method::GET, "/users", None).await;
    assert_eq!(users, json!([]));
    let (st, events) = gw.admin(Method::GET, "/audit?connection=con_s&action=login.refused", None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(events[0]["detail"]["reason"], "groups_overage", "{events}");
    // Group sync off: the overage changes nothing; an allow rule on the tenant attribute
    // (any attribute) admits only the tenant named.
    let other_tenant = json!({"group_sync": false, "allow": [{"claim": TENANT, "values": ["00000000-0000-4000-8000-000000000000"]}]});
    let (st, _) = gw.admin(Method::PATCH, "/connections/con_s", Some(other_tenant)).await;
    assert_eq!(st, StatusCode::OK);
    let (st, body) = saml_login(&gw, "alg=sha256").await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("is not one this connection admits") && !body.contains("3f2b8c1e") && !body.contains("00000000-0000"), "{body}");
    let ours = json!({"allow": [{"claim": TENANT, "values": ["3F2B8C1E-7D4A-4E6B-9A0C-5B1D2E3F4A5B"]}]});
    let (st, _) = gw.admin(Method::PATCH, "/connections/con_s", Some(ours)).await;
    assert_eq!(st, StatusCode::OK);
    // Keyed on the object identifier (not the NameID).
    let (st, page) = saml_login(&gw, "alg=sha256").await;
    assert_eq!(st, StatusCode::SEE_OTHER, "{page}");
    let (_, users) = gw.admin(Method::GET, "/users", None).await;
    assert_eq!(users[0]["links"][0]["subject"], "7c1e9a52-0d4b-4f1e-8a3c-2b9d6e5f4a31", "{users}");
}

/// A declared `private_key_jwt` connection keeps the key pair the gateway made across
/// reconciliations (a new pair each time would break the IdP's copy of our key).
#[tokio::test]
async fn vendors_a_declared_private_key_jwt_connection_keeps_its_key_pair() {
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let file = dir.path().join("ssogate.toml");
    std::fs::write(
        &file,
        r#"
[[connections]]
id = "okta-jwt"
display_name = "Okta"
protocol = "oidc"
provider = "okta"
discover = false
placeholders = { okta_domain = "acme.okta.com" }
[connections.oidc]
client_id = "gw"
token_endpoint_auth_method = "private_key_jwt"
authorization_endpoint = "https://acme.okta.com/oauth2/v1/authorize"
token_endpoint = "https://acme.okta.com/oauth2/v1/token"
jwks_uri = "https://acme.okta.com/oauth2/v1/keys"
"#,
    )
    .unwrap();
    let env = [
        ("SSOGATE_DATA_DIR", dir.path().join("data").display().to_string()),
        ("SSOGATE_CERTS_DIR", dir.path().join("certs").display().to_string()),
        ("SSOGATE_ADMIN_TOKEN", crate::support::TOKEN.to_string()),
        ("SSOGATE_LISTEN", "127.0.0.1:0".to_string()),
    ];
    let load = || ssogate::config::Config::load(Some(&file), env.iter().map(|(k, v)| (k.to_string(), v.clone()))).unwrap();
    let (gw, _) = crate::support::Gateway::start_config(dir.clone(), load()).await;
    let (st, c) = gw.admin(Method::GET, "/connections/okta-jwt", None).await;
    assert_eq!(st, StatusCode::OK, "{c}");
    let jwk = c["oidc"]["client_jwk"].clone();
    assert_eq!(jwk["kty"], "RSA", "{c}");
    let report = ssogate::declare::reconcile(&gw.app, &load().declared).await;
    assert!(report.changes.is_empty() && report.failures.is_empty(), "{report:?}");
    let (_, again) = gw.admin(Method::GET, "/connections/okta-jwt", None).await;
    assert_eq!((&again["oidc"]["client_jwk"], &again["version"]), (&jwk, &c["version"]), "the same key, nothing written");
}
