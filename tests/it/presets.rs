//! Every preset builds a valid connection through the API, starting from its values.

use reqwest::{Method, StatusCode};
use serde_json::json;
use ssogate::connection::{preset, Protocol};

use crate::support::{saml_metadata, Gateway};

#[tokio::test]
async fn every_preset_builds_a_valid_connection() {
    let gw = Gateway::start().await;
    for p in preset::all() {
        let placeholders: serde_json::Map<String, serde_json::Value> = p.placeholders.iter().map(|ph| (ph.name.clone(), json!(ph.example))).collect();
        let name = format!("{} {}", p.protocol(), p.name);
        let body = match p.protocol() {
            Protocol::Oidc => {
                // Endpoints given by hand (no internet here); the issuer comes from the pattern.
                let mut oidc = json!({"client_id": "cid", "client_secret": "csecret",
                    "authorization_endpoint": "https://idp.example/authorize", "token_endpoint": "https://idp.example/token",
                    "jwks_uri": "https://idp.example/jwks", "userinfo_endpoint": "https://idp.example/userinfo"});
                if p.oidc().unwrap().issuer.is_none() {
                    oidc["issuer"] = json!("https://custom.example");
                }
                json!({"display_name": name, "protocol": "oidc", "provider": p.provider, "placeholders": placeholders, "discover": false, "oidc": oidc})
            }
            Protocol::Saml => json!({"display_name": name, "protocol": "saml", "provider": p.provider,
                "saml": {"idp_metadata_xml": saml_metadata("https://idp.example/saml")}}),
        };
        let (s, c) = gw.admin(Method::POST, "/connections", Some(body)).await;
        assert_eq!(s, StatusCode::CREATED, "{}: {c}", p.provider);
        assert_eq!(c["provider"], p.provider);
        // The preset's values are where the connection starts.
        let want_groups = serde_json::to_value(&p.claims.mappings.groups).unwrap();
        assert_eq!(c["claims"]["groups"], want_groups, "{}", p.provider);
        assert_eq!(c["group_sync"], p.claims.group_sync);
        if let Some(o) = p.oidc() {
            assert_eq!(c["oidc"]["email_verification"], o.email_verification);
            assert_eq!(c["oidc"]["additional_scopes"], json!(o.additional_scopes));
            if let Some(pattern) = &o.issuer {
                let vals = p.placeholders.iter().map(|ph| (ph.name.clone(), ph.example.clone())).collect();
                assert_eq!(c["oidc"]["issuer"], p.fill(pattern, &vals, None).unwrap());
            }
        }
        if let Some(s) = p.saml() {
            assert_eq!(c["saml"]["sign_requests"], s.sign_requests);
            assert_eq!(c["saml"]["sp_private_key_set"], s.sign_requests, "a key pair exists exactly when requests are signed");
        }
    }
    // Each value can be overridden.
    let body = json!({"display_name": "Cognito custom", "protocol": "oidc", "provider": "cognito", "discover": false,
        "placeholders": {"region": "eu-west-1", "user_pool_id": "eu-west-1_Abc"},
        "claims": {"groups": "custom:teams"}, "group_sync": false,
        "oidc": {"issuer": "https://login.example.com", "client_id": "c", "client_secret": "s", "code_challenge_method": "plain",
                 "authorization_endpoint": "https://login.example.com/a", "token_endpoint": "https://login.example.com/t", "jwks_uri": "https://login.example.com/k"}});
    let (s, c) = gw.admin(Method::POST, "/connections", Some(body)).await;
    assert_eq!(s, StatusCode::CREATED, "{c}");
    assert_eq!(c["oidc"]["issuer"], "https://login.example.com");
    assert_eq!(c["claims"]["groups"], "custom:teams");
    assert_eq!(c["oidc"]["code_challenge_method"], "plain");
}
