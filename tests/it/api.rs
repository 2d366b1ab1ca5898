//! The admin API through real HTTP: the whole connection lifecycle, the directory,
//! every bad-input case (nothing stored half-way), concurrency, auth on every route,
//! and secrets that never come back.

use std::sync::Arc;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::support::{oidc_body, saml_metadata, Gateway, TOKEN};

async fn count(gw: &Gateway, path: &str) -> usize {
    gw.admin(Method::GET, path, None).await.1.as_array().map(Vec::len).unwrap_or(0)
}

/// Everything an admin can see, to compare before and after a refused request.
async fn snapshot(gw: &Gateway) -> Value {
    let mut out = json!({});
    for p in ["/connections", "/users", "/groups", "/invitations", "/audit?limit=1000"] {
        out[p] = gw.admin(Method::GET, p, None).await.1;
    }
    out
}

#[tokio::test]
async fn connections_lifecycle_with_providers_list_and_restart() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let gw = Gateway::start_in(dir.clone(), &[]).await;
    let (s, oidc) = gw.admin(Method::POST, "/connections", Some(oidc_body("Corp Okta"))).await;
    assert_eq!(s, StatusCode::CREATED, "{oidc}");
    let oidc_id = oidc["id"].as_str().unwrap().to_string();
    assert_eq!(oidc["callback_url"], format!("{}/oidc/{oidc_id}/callback", gw.base));
    assert_eq!(oidc["oidc"]["client_secret_set"], true);

    let saml_body = json!({"display_name": "Corp SAML", "protocol": "saml", "provider": "custom",
        "saml": {"idp_metadata_xml": saml_metadata("https://idp.test/meta")}});
    let (s, saml) = gw.admin(Method::POST, "/connections", Some(saml_body)).await;
    assert_eq!(s, StatusCode::CREATED, "{saml}");
    let saml_id = saml["id"].as_str().unwrap().to_string();
    assert_eq!(saml["acs_url"], format!("{}/saml/{saml_id}/acs", gw.base));
    assert_eq!(saml["saml"]["idp"]["entity_id"], "https://idp.test/meta");
    assert_eq!(saml["saml"]["require_signed_assertions"], true, "signed assertions are required by default");
    assert_eq!(saml["saml"]["entity_id"], format!("{}/saml/{saml_id}/metadata", gw.base));
    assert!(saml["saml"]["next_certificate_expiry"].is_string());

    // The table, sorted.
    let (_, list) = gw.admin(Method::GET, "/connections?sort=name&order=desc", None).await;
    let names: Vec<&str> = list.as_array().unwrap().iter().map(|c| c["display_name"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["Corp SAML", "Corp Okta"]);
    let (s, _) = gw.admin(Method::GET, "/connections?sort=colour", None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    // Toggle one off: only the active one is public.
    let (s, off) = gw.admin(Method::POST, &format!("/connections/{saml_id}/deactivate"), None).await;
    assert_eq!((s, &off["active"]), (StatusCode::OK, &json!(false)));
    let providers: Value = gw.request(Method::GET, "/api/v1/providers").send().await.unwrap().json().await.unwrap();
    assert_eq!(providers.as_array().unwrap().len(), 1);
    assert_eq!(providers[0]["id"], oidc_id);
    assert_eq!(providers[0]["login_url"], format!("{}/login/{oidc_id}", gw.base));
    assert!(!providers.to_string().contains("client"), "no client details in the public list: {providers}");

    // Restart on the same data: everything is still there.
    gw.stop().await;
    let gw = Gateway::start_in(dir, &[]).await;
    let (_, list) = gw.admin(Method::GET, "/connections", None).await;
    assert_eq!(list.as_array().unwrap().len(), 2);
    let (_, again) = gw.admin(Method::GET, &format!("/connections/{saml_id}"), None).await;
    assert_eq!(again["active"], false);
    assert_eq!(again["saml"]["idp"], saml["saml"]["idp"]);

    // Activate again, then delete.
    let (s, _) = gw.admin(Method::POST, &format!("/connections/{saml_id}/activate"), None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = gw.admin(Method::DELETE, &format!("/connections/{saml_id}"), None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, e) = gw.admin(Method::GET, &format!("/connections/{saml_id}"), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(e["request_id"].is_string());
    let (_, audit) = gw.admin(Method::GET, "/audit", None).await;
    let actions: Vec<&str> = audit.as_array().unwrap().iter().map(|a| a["action"].as_str().unwrap()).collect();
    for a in ["connection.create", "connection.update", "connection.delete"] {
        assert!(actions.contains(&a), "{a} audited: {actions:?}");
    }
    gw.stop().await;
}

#[tokio::test]
async fn patch_with_a_stale_version_is_refused_not_lost() {
    let gw = Gateway::start().await;
    let (_, c) = gw.admin(Method::POST, "/connections", Some(oidc_body("Race"))).await;
    let id = c["id"].as_str().unwrap();
    let patch = |name: &str, etag: &str| {
        gw.request(Method::PATCH, &format!("/api/v1/admin/connections/{id}"))
            .bearer_auth(TOKEN)
            .header("If-Match", etag)
            .json(&json!({"display_name": name}))
            .send()
    };
    let first = patch("Race A", "\"1\"").await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(first.headers()["etag"], "\"2\"");
    let second = patch("Race B", "\"1\"").await.unwrap();
    assert_eq!(second.status(), StatusCode::CONFLICT);
    let body: Value = second.json().await.unwrap();
    assert!(body["message"].as_str().unwrap().contains("changed by someone else"), "{body}");
    let (_, now) = gw.admin(Method::GET, &format!("/connections/{id}"), None).await;
    assert_eq!(now["display_name"], "Race A");
    // Same through the body's version field.
    let (s, _) = gw.admin(Method::PATCH, &format!("/connections/{id}"), Some(json!({"version": 1, "active": false}))).await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (s, v) = gw.admin(Method::PATCH, &format!("/connections/{id}"), Some(json!({"version": 2, "active": false}))).await;
    assert_eq!((s, &v["version"]), (StatusCode::OK, &json!(3)));

    // Without a precondition a change is refused: 428 says how to send one.
    let r = gw.request(Method::PATCH, &format!("/api/v1/admin/connections/{id}")).bearer_auth(TOKEN).json(&json!({"active": true})).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::PRECONDITION_REQUIRED);
    // Many concurrent writers that chose to overwrite (If-Match: *): each lands once.
    let mut tasks = Vec::new();
    for i in 0..8 {
        let req = gw
            .request(Method::PATCH, &format!("/api/v1/admin/connections/{id}"))
            .bearer_auth(TOKEN)
            .header("If-Match", "*")
            .json(&json!({"oidc": {"additional_scopes": [format!("s{i}")]}}));
        tasks.push(tokio::spawn(async move { req.send().await.unwrap().status() }));
    }
    let mut ok = 0;
    for t in tasks {
        let s = t.await.unwrap();
        assert!(s == StatusCode::OK || s == StatusCode::CONFLICT, "{s}");
        ok += (s == StatusCode::OK) as i64;
    }
    let (_, after) = gw.admin(Method::GET, &format!("/connections/{id}"), None).await;
    assert_eq!(after["version"], json!(3 + ok), "every accepted write bumped the version once");
}

#[tokio::test]
async fn bad_input_gets_a_4xx_naming_the_problem_and_changes_nothing() {
    let gw = Gateway::start().await;
    let (_, existing) = gw.admin(Method::POST, "/connections", Some(oidc_body("Existing"))).await;
    let id = existing["id"].as_str().unwrap().to_string();
    let before = snapshot(&gw).await;
    let url = "/api/v1/admin/connections".to_string();

    let raw = |body: Vec<u8>, ct: &'static str| gw.request(Method::POST, &url).bearer_auth(TOKEN).header("content-type", ct).body(body).send();
    let check = |resp: reqwest::Response, status: u16, needle: &'static str| async move {
        assert_eq!(resp.status().as_u16(), status);
        let body: Value = resp.json().await.unwrap();
        assert!(body.to_string().contains(needle), "{needle:?} not in {body}");
        assert!(body["request_id"].is_string());
    };
    check(raw(b"{\"display_name\": ".to_vec(), "application/json").await.unwrap(), 400, "not valid JSON").await;
    check(raw(b"{\"display_name\": \"\xff\xfe\"}".to_vec(), "application/json").await.unwrap(), 400, "not valid JSON").await;
    check(raw(b"display_name=x".to_vec(), "application/x-www-form-urlencoded").await.unwrap(), 415, "application/json").await;
    let huge = format!("{{\"display_name\": \"{}\"}}", "x".repeat(2 * 1024 * 1024));
    check(raw(huge.into_bytes(), "application/json").await.unwrap(), 413, "larger").await;

    let cases: Vec<(Value, u16, &str)> = vec![
        (json!({"display_name": "N", "protocol": "oidc", "colour": "red"}), 422, "colour"),
        (json!({"display_name": "N", "protocol": "oidc", "oidc": {"client_id": 5}}), 422, "oidc.client_id"),
        (json!({"display_name": "N", "protocol": "ldap"}), 422, "protocol"),
        (json!({"display_name": "N"}), 422, "protocol"),
        (json!({"protocol": "oidc"}), 422, "display_name"),
        (json!({"display_name": "N", "protocol": "oidc", "provider": "nope"}), 422, "provider"),
        (
            {
                let mut b = oidc_body("N");
                b["oidc"]["token_endpoint"] = json!("not a url");
                b
            },
            422,
            "oidc.token_endpoint",
        ),
        (
            {
                let mut b = oidc_body("N");
                b["oidc"]["authorization_endpoint"] = json!("http://idp.example.com/a");
                b
            },
            422,
            "https",
        ),
        (
            {
                let mut b = oidc_body("N");
                b["oidc"]["jwks_uri"] = json!("");
                b
            },
            422,
            "oidc.jwks_uri",
        ),
        (
            {
                let mut b = oidc_body("N");
                b["oidc"]["userinfo_from_id_token"] = json!(false);
                b
            },
            422,
            "oidc.userinfo_endpoint",
        ),
        (
            {
                let mut b = oidc_body("N");
                b["oidc"]["client_secret"] = json!("");
                b
            },
            422,
            "oidc.client_secret",
        ),
        (
            {
                let mut b = oidc_body("N");
                b["oidc"]["scopes"] = json!("email,profile");
                b
            },
            422,
            "openid",
        ),
        (
            {
                let mut b = oidc_body("N");
                b["oidc"]["allowed_algorithms"] = json!(["none"]);
                b
            },
            422,
            "allowed_algorithms",
        ),
        (
            {
                let mut b = oidc_body("N");
                b["group_sync"] = json!(true);
                b["claims"] = json!({"groups": ""});
                b
            },
            422,
            "claims.groups",
        ),
        (
            {
                let mut b = oidc_body("N");
                b["webapp_url"] = json!("javascript:alert(1)");
                b
            },
            422,
            "webapp_url",
        ),
        (oidc_body("EXISTING"), 409, "display_name"),
        (json!({"display_name": "S", "protocol": "saml", "saml": {"idp_metadata_xml": "<html/>"}}), 422, "not SAML 2.0 metadata"),
        (json!({"display_name": "S", "protocol": "saml", "saml": {"idp_metadata_xml": "<!DOCTYPE x [<!ENTITY a \"b\">]><x>&a;</x>"}}), 422, "DOCTYPE"),
        (json!({"display_name": "S", "protocol": "saml", "saml": {}}), 422, "saml.idp_metadata_xml"),
        (
            json!({"display_name": "S", "protocol": "saml", "saml": {"idp_metadata_xml": saml_metadata("x").replace("use=\"signing\"", "use=\"encryption\"")}}),
            422,
            "no signing certificate",
        ),
        (json!({"display_name": "S", "protocol": "saml", "oidc": {}, "saml": {"idp_metadata_xml": saml_metadata("x")}}), 422, "SAML connection"),
        (
            json!({"display_name": "S", "protocol": "saml", "saml": {"idp_metadata_xml": saml_metadata("x"), "sp_certificate": "junk", "sp_private_key": "junk"}}),
            422,
            "sp_certificate",
        ),
    ];
    for (body, status, needle) in cases {
        let (s, v) = gw.admin(Method::POST, "/connections", Some(body.clone())).await;
        assert_eq!(s.as_u16(), status, "{body} -> {v}");
        assert!(v.to_string().contains(needle), "{needle:?} not in {v} (for {body})");
    }
    // Updates are held to the same rules.
    for (body, status, needle) in [
        (json!({"oidc": {"token_endpoint": "ftp://x"}}), 422, "oidc.token_endpoint"),
        (json!({"protocol": "saml"}), 422, "protocol"),
        (json!({"display_name": ""}), 422, "display_name"),
        (json!({"unknown": 1}), 422, "unknown"),
    ] {
        let (s, v) = gw.admin(Method::PATCH, &format!("/connections/{id}"), Some(body.clone())).await;
        assert_eq!(s.as_u16(), status, "{body} -> {v}");
        assert!(v.to_string().contains(needle), "{needle:?} not in {v}");
    }
    let (s, _) = gw
        .request(Method::PATCH, &format!("{url}/{id}"))
        .bearer_auth(TOKEN)
        .header("If-Match", "yesterday")
        .json(&json!({}))
        .send()
        .await
        .map(|r| (r.status(), ()))
        .unwrap();
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    // Arrays where objects belong are refused, not mapped by position.
    for body in [json!(["renamed", ""]), json!({"claims": ["sub", null]})] {
        let (s, v) = gw.admin(Method::PATCH, &format!("/connections/{id}"), Some(body.clone())).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body} -> {v}");
        assert!(v.to_string().contains("must be a JSON object"), "{v}");
    }
    let (s, _) = gw.admin(Method::POST, "/users", Some(json!(["carol", "carol@example.test"]))).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);

    // Directory bad input.
    for (method, path, body, status, needle) in [
        (Method::DELETE, "/groups/grp_admins".to_string(), None, 409, "built in"),
        (Method::DELETE, "/groups/grp_users".to_string(), None, 409, "built in"),
        (Method::PATCH, "/groups/grp_users".to_string(), Some(json!({"description": "x"})), 409, "cannot be edited"),
        (Method::PATCH, "/groups/grp_admins".to_string(), Some(json!({"name": "Root"})), 409, "renamed"),
        (Method::POST, "/groups".to_string(), Some(json!({"name": "admins"})), 409, "name"),
        (Method::POST, "/groups".to_string(), Some(json!({"name": " "})), 422, "name"),
        // X-Auth-Request-Groups separates groups with commas: `Eng,admins` would reach the app as two.
        (Method::POST, "/groups".to_string(), Some(json!({"name": "Eng,admins"})), 422, "comma"),
        (Method::POST, "/users".to_string(), Some(json!({"username": "u", "email": "not-an-email"})), 422, "email"),
        (Method::POST, "/users".to_string(), Some(json!({"username": "u", "extra": true})), 422, "extra"),
        (Method::POST, "/invitations".to_string(), Some(json!({"email": "a@b.example", "groups": ["grp_nope"]})), 422, "groups[0]"),
        (Method::PUT, "/groups/grp_users/members/usr_x".to_string(), None, 409, "Users"),
        (Method::PUT, "/groups/grp_admins/members/usr_nope".to_string(), None, 404, "user"),
        (Method::DELETE, "/users/usr_nope".to_string(), None, 404, "not found"),
        (Method::GET, "/audit?limit=0".to_string(), None, 400, "limit"),
        (Method::GET, "/audit?limit=ten".to_string(), None, 400, "query"),
    ] {
        let (s, v) = gw.admin(method.clone(), &path, body.clone()).await;
        assert_eq!(s.as_u16(), status, "{method} {path} {body:?} -> {v}");
        assert!(v.to_string().contains(needle), "{needle:?} not in {v}");
    }
    assert_eq!(snapshot(&gw).await, before, "refused requests left the store unchanged");

    // Unknown routes and methods get JSON errors too.
    let r = gw.request(Method::GET, "/api/v1/admin/nothing-here").bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = gw.request(Method::PUT, "/api/v1/providers").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn every_documented_admin_route_exists_and_refuses_without_the_token() {
    let gw = Gateway::start().await;
    let doc: Value = gw.request(Method::GET, "/api/v1/openapi.json").send().await.unwrap().json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    let mut admin_ops = 0;
    for (path, ops) in paths {
        let concrete = path.replace("{id}", "x_missing").replace("{user_id}", "x_missing");
        for (method, op) in ops.as_object().unwrap() {
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            assert!(op["operationId"].is_string(), "{method} {path} has an operationId");
            let mut req = gw.request(m.clone(), &concrete);
            if op.get("requestBody").is_some() {
                req = req.json(&json!({}));
            }
            if path.starts_with("/api/v1/admin/") {
                admin_ops += 1;
                let anon = req.try_clone().unwrap().send().await.unwrap();
                assert_eq!(anon.status(), StatusCode::UNAUTHORIZED, "{method} {path} without token");
                assert!(anon.headers().contains_key("www-authenticate"));
                let wrong = req.try_clone().unwrap().bearer_auth("wrong-token-wrong-token").send().await.unwrap();
                assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED, "{method} {path} with a wrong token");
                req = req.bearer_auth(TOKEN);
            }
            // With the token, the route exists: never the router's own 404 or 405.
            let resp = req.send().await.unwrap();
            let status = resp.status();
            let body = resp.text().await.unwrap();
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            assert!(!body.contains("no such route"), "{method} {path} is documented but not routed");
            assert!(status.as_u16() < 500, "{method} {path} -> {status} {body}");
        }
    }
    assert!(admin_ops >= 25, "documented admin operations: {admin_ops}");
}

#[tokio::test]
async fn secrets_are_write_only_sealed_at_rest_and_never_logged_or_audited() {
    let gw = Gateway::start().await;
    let secret = "the-client-secret-value";
    let (_, c) = gw.admin(Method::POST, "/connections", Some(oidc_body("Secretive"))).await;
    let id = c["id"].as_str().unwrap();
    let saml = json!({"display_name": "Signed", "protocol": "saml", "saml": {"idp_metadata_xml": saml_metadata("https://i"), "sign_requests": true}});
    let (s, sc) = gw.admin(Method::POST, "/connections", Some(saml)).await;
    assert_eq!(s, StatusCode::CREATED, "{sc}");
    assert_eq!(sc["saml"]["sp_private_key_set"], true, "a key pair was generated for signing");
    let mut seen = String::new();
    for p in ["/connections".to_string(), format!("/connections/{id}"), "/audit?limit=1000".to_string()] {
        seen.push_str(&gw.admin(Method::GET, &p, None).await.1.to_string());
    }
    seen.push_str(&gw.request(Method::GET, "/api/v1/providers").send().await.unwrap().text().await.unwrap());
    assert!(!seen.contains(secret), "the client secret came back from the API");
    assert!(!seen.contains("PRIVATE KEY"), "a private key came back from the API");
    // At rest: the raw database file holds neither in clear.
    let db = std::fs::read(gw.dir.path().join("data/ssogate.db")).unwrap();
    let wal = std::fs::read(gw.dir.path().join("data/ssogate.db-wal")).unwrap_or_default();
    for bytes in [&db, &wal] {
        let text = String::from_utf8_lossy(bytes);
        assert!(!text.contains(secret) && !text.contains("PRIVATE KEY"), "secret stored in clear");
    }
    // Debug output of every type that holds it.
    let conn = gw.app.registry.get(id).await.unwrap();
    assert_eq!(conn.secrets.client_secret.as_deref(), Some(secret), "the registry can still open it");
    assert!(!format!("{conn:?}").contains(secret));
    assert!(!format!("{:?}", gw.app.config).contains(TOKEN));
    // Export leaves secrets out unless asked.
    let plain = serde_json::to_string(&ssogate::connection::export(&conn, false)).unwrap();
    assert!(!plain.contains(secret));
    let full = serde_json::to_string(&ssogate::connection::export(&conn, true)).unwrap();
    assert!(full.contains(secret));
    // Changing the secret works and still never shows it.
    let (s, v) = gw.admin(Method::PATCH, &format!("/connections/{id}"), Some(json!({"oidc": {"client_secret": "another-secret-xyz"}}))).await;
    assert_eq!(s, StatusCode::OK);
    assert!(!v.to_string().contains("another-secret-xyz"));
    let (_, audit) = gw.admin(Method::GET, "/audit", None).await;
    assert!(!audit.to_string().contains("another-secret-xyz"));
    assert!(audit.to_string().contains("oidc.client_secret"), "the audit names the changed field: {audit}");
}

#[tokio::test]
async fn sp_key_pairs_are_generated_downloaded_and_checked() {
    let gw = Gateway::start().await;
    let (_, c) = gw
        .admin(Method::POST, "/connections", Some(json!({"display_name": "SP", "protocol": "saml", "saml": {"idp_metadata_xml": saml_metadata("https://i")}})))
        .await;
    let id = c["id"].as_str().unwrap();
    let r = gw.request(Method::GET, &format!("/api/v1/admin/connections/{id}/sp-certificate")).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let (s, v) = gw.admin(Method::POST, &format!("/connections/{id}/sp-keypair"), None).await;
    assert_eq!((s, &v["saml"]["sp_private_key_set"]), (StatusCode::OK, &json!(true)));
    let r = gw.request(Method::GET, &format!("/api/v1/admin/connections/{id}/sp-certificate")).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let pem = r.text().await.unwrap();
    let cert = openssl::x509::X509::from_pem(pem.as_bytes()).unwrap();
    assert_eq!(cert.public_key().unwrap().bits(), 2048);
    let (s, _) = gw.admin(Method::PATCH, &format!("/connections/{id}"), Some(json!({"saml": {"sign_requests": true}}))).await;
    assert_eq!(s, StatusCode::OK);
    // An uploaded key must belong to the uploaded certificate.
    let (c1, _) = ssogate::connection::keypair::generate("a").unwrap();
    let (_, k2) = ssogate::connection::keypair::generate("b").unwrap();
    let (s, v) = gw.admin(Method::PATCH, &format!("/connections/{id}"), Some(json!({"saml": {"sp_certificate": c1, "sp_private_key": k2}}))).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(v.to_string().contains("does not belong"), "{v}");
    // OIDC connections have no SP key pair.
    let (_, o) = gw.admin(Method::POST, "/connections", Some(oidc_body("O"))).await;
    let (s, _) = gw.admin(Method::POST, &format!("/connections/{}/sp-keypair", o["id"].as_str().unwrap()), None).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn directory_users_groups_memberships_and_invitations() {
    let gw = Gateway::start().await;
    let (s, alice) = gw.admin(Method::POST, "/users", Some(json!({"username": "alice", "email": "Alice@Example.com"}))).await;
    assert_eq!(s, StatusCode::CREATED, "{alice}");
    let alice_id = alice["id"].as_str().unwrap().to_string();
    assert_eq!(alice["status"], "active");
    assert_eq!(alice["groups"][0]["name"], "Users", "everyone is in Users");
    let (s, _) = gw.admin(Method::POST, "/users", Some(json!({"username": "ALICE"}))).await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (s, _) = gw.admin(Method::POST, "/users", Some(json!({"username": "al2", "email": "alice@example.COM"}))).await;
    assert_eq!(s, StatusCode::CONFLICT);

    let (s, g) = gw.admin(Method::POST, "/groups", Some(json!({"name": "Engineers", "description": "Builders"}))).await;
    assert_eq!(s, StatusCode::CREATED);
    let gid = g["id"].as_str().unwrap().to_string();
    let (s, _) = gw.admin(Method::PUT, &format!("/groups/{gid}/members/{alice_id}"), None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = gw.admin(Method::PUT, &format!("/groups/grp_admins/members/{alice_id}"), None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, members) = gw.admin(Method::GET, &format!("/groups/{gid}/members"), None).await;
    assert_eq!(members[0]["sources"], json!(["manual"]));
    let (_, u) = gw.admin(Method::GET, &format!("/users/{alice_id}"), None).await;
    let names: Vec<&str> = u["groups"].as_array().unwrap().iter().map(|g| g["name"].as_str().unwrap()).collect();
    assert_eq!(names.len(), 3, "{names:?}");
    let (_, groups) = gw.admin(Method::GET, "/groups", None).await;
    let users_group = groups.as_array().unwrap().iter().find(|g| g["name"] == "Users").unwrap();
    assert_eq!(users_group["members"], 1);

    let (s, g2) = gw.admin(Method::PATCH, &format!("/groups/{gid}"), Some(json!({"name": "Engineering"}))).await;
    assert_eq!((s, &g2["name"]), (StatusCode::OK, &json!("Engineering")));
    let (s, _) = gw.admin(Method::PATCH, "/groups/grp_admins", Some(json!({"description": "People who run ssogate"}))).await;
    assert_eq!(s, StatusCode::OK);

    // Deleting a group removes the grants it carried.
    let (s, _) = gw.admin(Method::DELETE, &format!("/groups/{gid}"), None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, u) = gw.admin(Method::GET, &format!("/users/{alice_id}"), None).await;
    assert_eq!(u["groups"].as_array().unwrap().len(), 2);

    // Removing a manual membership.
    let (s, _) = gw.admin(Method::DELETE, &format!("/groups/grp_admins/members/{alice_id}"), None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = gw.admin(Method::DELETE, &format!("/groups/grp_admins/members/{alice_id}"), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Invitations: a pending user with the invite date, and manual memberships.
    let (s, inv) = gw.admin(Method::POST, "/invitations", Some(json!({"email": "bob@example.com", "groups": ["grp_queue_admins"]}))).await;
    assert_eq!(s, StatusCode::CREATED, "{inv}");
    let (_, bob) = gw.admin(Method::GET, &format!("/users/{}", inv["user_id"].as_str().unwrap()), None).await;
    assert_eq!(bob["status"], "pending");
    assert!(bob["invited_at"].is_string());
    assert!(bob["groups"].to_string().contains("Queue admins"));
    let (s, _) = gw.admin(Method::POST, "/invitations", Some(json!({"email": "BOB@example.com"}))).await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(count(&gw, "/invitations").await, 1);
    let (s, _) = gw.admin(Method::DELETE, &format!("/invitations/{}", inv["id"].as_str().unwrap()), None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(count(&gw, "/users").await, 1, "the pending user went with the invitation");

    // Editing and removing a user.
    let (s, u) = gw.admin(Method::PATCH, &format!("/users/{alice_id}"), Some(json!({"email": ""}))).await;
    assert_eq!((s, &u["email"]), (StatusCode::OK, &Value::Null));
    let (s, _) = gw.admin(Method::DELETE, &format!("/users/{alice_id}"), None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(count(&gw, "/users").await, 0);

    let (_, audit) = gw.admin(Method::GET, "/audit?limit=1000", None).await;
    let actions: Vec<&str> = audit.as_array().unwrap().iter().map(|a| a["action"].as_str().unwrap()).collect();
    for a in [
        "user.create",
        "group.create",
        "membership.add",
        "membership.remove",
        "group.delete",
        "invitation.create",
        "invitation.delete",
        "user.update",
        "user.delete",
    ] {
        assert!(actions.contains(&a), "{a} audited");
    }
    let by_admin: Vec<&Value> = audit.as_array().unwrap().iter().filter(|a| a["actor"] != "system").collect();
    assert!(by_admin.iter().all(|a| a["actor"] == "admin" && a["request_id"].is_string()), "{audit}");
}

#[tokio::test]
async fn presets_are_listed_and_keys_rotate() {
    let gw = Gateway::start().await;
    let (s, presets) = gw.admin(Method::GET, "/presets", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(presets.as_array().unwrap().len(), ssogate::connection::preset::FILES.len());
    let (_, keys) = gw.admin(Method::GET, "/keys", None).await;
    assert_eq!(keys.as_array().unwrap().len(), 1, "a signing key is made at first start");
    let (s, k) = gw.admin(Method::POST, "/keys", Some(json!({"alg": "RS256"}))).await;
    assert_eq!((s, &k["alg"]), (StatusCode::CREATED, &json!("RS256")));
    let (_, keys) = gw.admin(Method::GET, "/keys", None).await;
    assert_eq!(keys.as_array().unwrap().len(), 2);
    assert!(keys[1]["retired_at"].is_string(), "the old key is retired, not removed");
    let (s, _) = gw.admin(Method::POST, "/keys", Some(json!({"alg": "HS256"}))).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
}

/// IdP metadata whose one signing certificate is self-signed for `key`, named `cn`.
fn metadata_with_key(key: &openssl::pkey::PKey<openssl::pkey::Private>, cn: &str) -> String {
    use base64::Engine;
    let cert = ssogate::connection::keypair::self_signed(key, cn, 365).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(cert.to_der().unwrap());
    let md = saml_metadata("https://idp.weak.test/saml");
    let (start, end) = (md.find("<ds:X509Certificate>").unwrap() + "<ds:X509Certificate>".len(), md.find("</ds:X509Certificate>").unwrap());
    format!("{}{b64}{}", &md[..start], &md[end..])
}

fn rsa_key(bits: u32) -> openssl::pkey::PKey<openssl::pkey::Private> {
    openssl::pkey::PKey::from_rsa(openssl::rsa::Rsa::generate(bits).unwrap()).unwrap()
}

#[tokio::test]
async fn saml_metadata_with_a_weak_signing_key_is_refused_naming_the_certificate() {
    let gw = Gateway::start().await;
    let before = snapshot(&gw).await;
    let weak = metadata_with_key(&rsa_key(1024), "weak-signer.idp.test");
    let (s, v) = gw.admin(Method::POST, "/connections", Some(json!({"display_name": "Weak", "protocol": "saml", "saml": {"idp_metadata_xml": weak}}))).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let text = v.to_string();
    for needle in ["saml.idp_metadata_xml", "signing certificate 1", "CN=weak-signer.idp.test", "1024-bit RSA key", "at least 2048"] {
        assert!(text.contains(needle), "{needle:?} not in {v}");
    }
    assert_eq!(snapshot(&gw).await, before, "nothing stored");

    // Metadata by URL: refused when the connection is made, and when the hourly refresh
    // finds a weak certificate there later the connection keeps the certificates it has.
    let served = Arc::new(std::sync::Mutex::new(weak));
    let body = served.clone();
    let app = axum::Router::new().route("/metadata", axum::routing::get(move || async move { body.lock().unwrap().clone() }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/metadata", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let by_url = json!({"id": "con_weak", "display_name": "By URL", "protocol": "saml", "saml": {"idp_metadata_url": url}});
    let (s, v) = gw.admin(Method::POST, "/connections", Some(by_url.clone())).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(v.to_string().contains("saml.idp_metadata_url") && v.to_string().contains("1024-bit RSA key"), "{v}");
    *served.lock().unwrap() = metadata_with_key(&rsa_key(2048), "strong.idp.test");
    let (s, created) = gw.admin(Method::POST, "/connections", Some(by_url)).await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    *served.lock().unwrap() = metadata_with_key(&rsa_key(1024), "rolled-weak.idp.test");
    let result = gw.app.registry.refresh_saml_metadata().await;
    assert_eq!(result.len(), 1, "{result:?}");
    assert!(result[0].1.as_ref().is_err_and(|e| e.contains("CN=rolled-weak.idp.test") && e.contains("1024-bit RSA key")), "{result:?}");
    let (_, after) = gw.admin(Method::GET, "/connections/con_weak", None).await;
    assert_eq!(after["saml"]["idp"], created["saml"]["idp"], "the pinned certificate stays");
    assert_eq!(after["version"], created["version"]);

    // An imported `idp` (the export format) is held to the same rule.
    let mut idp = created["saml"]["idp"].clone();
    let weak_pem = openssl::x509::X509::from_der(&{
        use base64::Engine;
        let md = metadata_with_key(&rsa_key(1024), "imported-weak.idp.test");
        let (start, end) = (md.find("<ds:X509Certificate>").unwrap() + "<ds:X509Certificate>".len(), md.find("</ds:X509Certificate>").unwrap());
        base64::engine::general_purpose::STANDARD.decode(&md[start..end]).unwrap()
    })
    .unwrap()
    .to_pem()
    .unwrap();
    idp["certificates"][0]["pem"] = json!(String::from_utf8(weak_pem).unwrap());
    let (s, v) = gw.admin(Method::POST, "/connections", Some(json!({"display_name": "Imported", "protocol": "saml", "saml": {"idp": idp}}))).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(v.to_string().contains("saml.idp") && v.to_string().contains("CN=imported-weak.idp.test") && v.to_string().contains("1024-bit RSA key"), "{v}");
}
