//! A real OIDC client that nobody here wrote logs in *through* ssogate: Apache with
//! mod_auth_openidc (Debian) protects a page, ssogate is its OpenID Provider, and
//! oidc-provider is the upstream IdP behind ssogate. The page receives the user's
//! email and groups.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::login::{setup, Browser};

struct Apache(Child);

impl Drop for Apache {
    fn drop(&mut self) {
        // Apache runs in a process group of its own: stop the parent and its www-data
        // workers together, so none outlives the test.
        let group = format!("-{}", self.0.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5) && !matches!(self.0.try_wait(), Ok(Some(_))) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn chmod(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn start_apache(dir: &std::path::Path, port: u16, gateway: &str, client_id: &str, secret: &str) -> Apache {
    start_apache_with(dir, port, gateway, client_id, secret, "OIDCScope \"openid email profile groups\"")
}

/// [`start_apache`] with `extra` configuration lines (the scope among them).
fn start_apache_with(dir: &std::path::Path, port: u16, gateway: &str, client_id: &str, secret: &str, extra: &str) -> Apache {
    let www = dir.join("www/protected");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(
        www.join("index.shtml"),
        "user=<!--#echo var=\"REMOTE_USER\" -->;email=<!--#echo var=\"OIDC_CLAIM_email\" -->;groups=<!--#echo var=\"OIDC_CLAIM_groups\" -->;connection=<!--#echo var=\"OIDC_CLAIM_connection\" -->;at=<!--#echo var=\"OIDC_access_token\" -->;\n",
    )
    .unwrap();
    for p in [dir.to_path_buf(), dir.join("www"), www.clone()] {
        chmod(&p, 0o755);
    }
    chmod(&www.join("index.shtml"), 0o644);
    let m = "/usr/lib/apache2/modules";
    let conf = format!(
        r#"ServerName 127.0.0.1
Listen 127.0.0.1:{port}
PidFile {d}/apache.pid
ErrorLog {d}/error.log
LogLevel warn auth_openidc:info
Mutex file:{d}
DefaultRuntimeDir {d}
User www-data
Group www-data
LoadModule mpm_event_module {m}/mod_mpm_event.so
LoadModule authz_core_module {m}/mod_authz_core.so
LoadModule authn_core_module {m}/mod_authn_core.so
LoadModule authz_user_module {m}/mod_authz_user.so
LoadModule include_module {m}/mod_include.so
LoadModule mime_module {m}/mod_mime.so
LoadModule dir_module {m}/mod_dir.so
LoadModule auth_openidc_module {m}/mod_auth_openidc.so
TypesConfig /etc/mime.types
DocumentRoot {d}/www
AddType text/html .shtml
AddOutputFilter INCLUDES .shtml
DirectoryIndex index.shtml
<Directory {d}/www>
  Options +Includes
  Require all granted
</Directory>
OIDCProviderMetadataURL {gateway}/.well-known/openid-configuration
OIDCClientID {client_id}
OIDCClientSecret {secret}
OIDCRedirectURI http://127.0.0.1:{port}/protected/redirect_uri
OIDCCryptoPassphrase test-passphrase-0123456789
{extra}
OIDCPKCEMethod S256
OIDCAuthRequestParams connection=con_node&login_hint=alice
OIDCRemoteUserClaim preferred_username
OIDCCacheType shm
<Location /protected>
  AuthType openid-connect
  Require valid-user
</Location>
"#,
        d = dir.display()
    );
    let path = dir.join("apache.conf");
    std::fs::write(&path, conf).unwrap();
    use std::os::unix::process::CommandExt;
    let mut child = Command::new("apache2")
        .args(["-f", path.to_str().unwrap(), "-DFOREGROUND"])
        .process_group(0)
        .spawn()
        .expect("apache2 is installed (scripts/test installs it)");
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("apache exited ({status}): {}", std::fs::read_to_string(dir.join("error.log")).unwrap_or_default());
        }
        assert!(start.elapsed() < Duration::from_secs(15), "apache did not start: {}", std::fs::read_to_string(dir.join("error.log")).unwrap_or_default());
        std::thread::sleep(Duration::from_millis(50));
    }
    Apache(child)
}

#[tokio::test]
async fn mod_auth_openidc_logs_in_through_ssogate() {
    let s = setup(json!({}), json!({"group_sync": true})).await;
    s.gw.admin(Method::POST, "/groups", Some(json!({"name": "Engineers"}))).await;
    let port = free_port();
    let (st, client) =
        s.gw.admin(
            Method::POST,
            "/clients",
            Some(json!({"client_id": "apache", "name": "Apache",
        "redirect_uris": [format!("http://127.0.0.1:{port}/protected/redirect_uri")]})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{client}");
    let dir = tempfile::tempdir().unwrap();
    let _apache = start_apache(dir.path(), port, &s.gw.base, "apache", client["client_secret"].as_str().unwrap());

    let b = Browser::new();
    let (resp, url) = b.visit(&format!("http://127.0.0.1:{port}/protected/")).await;
    let status = resp.status();
    let body = resp.text().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{url}: {body}\n{}", std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default());
    assert_eq!(url, format!("http://127.0.0.1:{port}/protected/"));
    assert!(body.contains("email=alice@example.test"), "{body}");
    assert!(body.contains("groups=") && body.contains("Engineers") && body.contains("Users"), "{body}");
    assert!(body.contains("connection=con_node"), "{body}");
    assert!(body.contains("user=alice@example.test"), "{body}");
}

/// The access token the protected page shows (mod_auth_openidc's `OIDC_access_token`).
fn access_token_of(body: &str) -> String {
    body.split("at=").nth(1).and_then(|s| s.split(';').next()).unwrap_or_default().to_string()
}

/// Issue #14: mod_auth_openidc refreshes its tokens through the gateway (rotation), and
/// is logged out by back-channel logout when the user signs out at the gateway and when
/// an admin ends the session.
#[tokio::test]
async fn mod_auth_openidc_refreshes_and_is_logged_out_by_the_back_channel() {
    let s = setup(json!({}), json!({"group_sync": true})).await;
    let port = free_port();
    let redirect = format!("http://127.0.0.1:{port}/protected/redirect_uri");
    let (st, client) =
        s.gw.admin(
            Method::POST,
            "/clients",
            Some(json!({"client_id": "apache", "redirect_uris": [redirect],
                "grant_types": ["authorization_code", "refresh_token"], "access_token_lifetime_seconds": 60,
                "backchannel_logout_uri": format!("{redirect}?logout=backchannel")})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{client}");
    let dir = tempfile::tempdir().unwrap();
    // Refresh whenever under 58 s of the 60 s remain: two seconds after a login.
    let extra = "OIDCScope \"openid email profile groups offline_access\"\nOIDCRefreshAccessTokenBeforeExpiry 58\nOIDCPassRefreshToken On";
    let _apache = start_apache_with(dir.path(), port, &s.gw.base, "apache", client["client_secret"].as_str().unwrap(), extra);
    let log = || std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default();
    let page = format!("http://127.0.0.1:{port}/protected/");

    let b = Browser::new();
    let (resp, _) = b.visit(&page).await;
    assert_eq!(resp.status(), StatusCode::OK, "{}", log());
    let at1 = access_token_of(&resp.text().await.unwrap());
    assert!(!at1.is_empty());
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (resp, url) = b.visit(&page).await;
    assert_eq!((resp.status(), url.as_str()), (StatusCode::OK, page.as_str()), "{}", log());
    let at2 = access_token_of(&resp.text().await.unwrap());
    assert_ne!(at2, at1, "mod_auth_openidc refreshed its access token through the gateway: {}", log());
    let info = reqwest::Client::new().get(format!("{}/userinfo", s.gw.base)).bearer_auth(&at2).send().await.unwrap();
    assert_eq!(info.status(), StatusCode::OK, "the refreshed token is the gateway's");

    // The user signs out at the gateway: the app's session ends through the back channel.
    let r = b.http.post(format!("{}/logout", s.gw.base)).header("sec-fetch-site", "same-origin").send().await.unwrap();
    assert!(r.status().is_redirection());
    let logged_out = |b: &Browser| {
        let b = b.http.clone();
        let page = page.clone();
        async move {
            for _ in 0..100 {
                let r = b.get(&page).send().await.unwrap();
                if r.status().is_redirection() {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            false
        }
    };
    assert!(logged_out(&b).await, "the app's session ended by back-channel logout: {}", log());

    // An admin ends the session: the same.
    let b = Browser::new();
    let (resp, _) = b.visit(&page).await;
    assert_eq!(resp.status(), StatusCode::OK, "{}", log());
    let users = s.gw.admin(Method::GET, "/users", None).await.1;
    let id = users[0]["id"].as_str().unwrap();
    let (st, _) = s.gw.admin(Method::DELETE, &format!("/users/{id}/sessions"), None).await;
    assert_eq!(st, StatusCode::OK);
    assert!(logged_out(&b).await, "an admin ended the session: {}", log());
}
