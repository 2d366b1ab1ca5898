//! nginx (Debian, with `auth_request` and set-misc's `set_escape_uri`) in front of a
//! small app, configured exactly as ingress-nginx configures `auth-url`, `auth-signin`
//! and `auth-response-headers` (the config the README shows). The browser resolves
//! `app.example.test` and `sso.example.test` to loopback, so the session cookie must
//! cross hosts through `session.cookie_domain`, as it does between apps in a cluster.
//! The login runs at the real oidc-provider.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::json;
use ssogate::clock::Clock;

use crate::login::Browser;
use crate::peers::oidc_provider;
use crate::support::Gateway;

/// A server run in a process group of its own, stopped with its workers on drop.
pub struct Group(pub Child);

impl Drop for Group {
    fn drop(&mut self) {
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

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The directives every nginx run here needs: foreground, its own pid, logs and
/// temporary files under `dir`, and the set-misc module for `set_escape_uri`.
pub fn nginx_main(dir: &Path) -> String {
    let d = dir.display();
    format!(
        r#"load_module /usr/lib/nginx/modules/ndk_http_module.so;
load_module /usr/lib/nginx/modules/ngx_http_set_misc_module.so;
daemon off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 1024; }}
"#
    )
}

/// Temporary paths inside `dir` (the defaults are under /var/lib/nginx).
pub fn nginx_http_paths(dir: &Path) -> String {
    let d = dir.display();
    format!("client_body_temp_path {d}/tmp/body; proxy_temp_path {d}/tmp/proxy; fastcgi_temp_path {d}/tmp/fastcgi; uwsgi_temp_path {d}/tmp/uwsgi; scgi_temp_path {d}/tmp/scgi;\n")
}

/// Starts `nginx` on `conf` (written to `dir`) and waits for `port`.
pub fn start_nginx(dir: &Path, conf: &str, port: u16) -> Group {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir.join("tmp")).unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    let log = dir.join("error.log");
    let child = Command::new("nginx")
        .arg("-p")
        .arg(dir)
        .arg("-e")
        .arg(&log)
        .arg("-c")
        .arg(&path)
        .process_group(0)
        .spawn()
        .expect("nginx is installed (scripts/test installs it)");
    let mut nginx = Group(child);
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = nginx.0.try_wait() {
            panic!("nginx exited ({status}): {}", std::fs::read_to_string(&log).unwrap_or_default());
        }
        assert!(start.elapsed() < Duration::from_secs(15), "nginx did not start: {}", std::fs::read_to_string(&log).unwrap_or_default());
        std::thread::sleep(Duration::from_millis(20));
    }
    nginx
}

/// What ingress-nginx generates for one path of an Ingress with
/// `auth-url: {auth_url}`, `auth-signin: {signin}` and
/// `auth-response-headers: X-Auth-Request-User,-Email,-Preferred-Username,-Groups`.
pub fn ingress_location(path: &str, name: &str, auth_host: &str, auth_url: &str, signin: &str, app: &str) -> String {
    let mut headers = String::new();
    for (i, h) in ["User", "Email", "Preferred-Username", "Groups"].iter().enumerate() {
        let var = h.to_lowercase().replace('-', "_");
        headers.push_str(&format!(
            "        auth_request_set $authHeader{i} $upstream_http_x_auth_request_{var};\n        proxy_set_header 'X-Auth-Request-{h}' $authHeader{i};\n"
        ));
    }
    format!(
        r#"    location = /_external-auth-{name} {{
        internal;
        proxy_pass_request_body     off;
        proxy_set_header            Content-Length          "";
        proxy_set_header            X-Forwarded-Proto       "";
        proxy_set_header            Host                    {auth_host};
        proxy_set_header            X-Original-URL          $scheme://$http_host$request_uri;
        proxy_set_header            X-Original-Method       $request_method;
        proxy_set_header            X-Sent-From             "nginx-ingress-controller";
        proxy_set_header            X-Real-IP               $remote_addr;
        proxy_set_header            X-Forwarded-For         $remote_addr;
        proxy_set_header            X-Auth-Request-Redirect $request_uri;
        proxy_buffering             off;
        proxy_http_version          1.1;
        proxy_pass_request_headers  on;
        proxy_pass                  {auth_url};
    }}

    location @signin-{name} {{
        internal;
        add_header Set-Cookie $auth_cookie;
        return 302 {signin}rd=$scheme://$http_host$escaped_request_uri;
    }}

    location {path} {{
        auth_request        /_external-auth-{name};
        auth_request_set    $auth_cookie $upstream_http_set_cookie;
        add_header          Set-Cookie $auth_cookie;
{headers}        set_escape_uri $escaped_request_uri $request_uri;
        error_page 401 = @signin-{name};
        proxy_set_header Host $http_host;
        proxy_pass {app};
    }}
"#
    )
}

/// The app behind nginx: echoes the path and the identity headers it received.
async fn echo_app() -> String {
    let app = axum::Router::new().fallback(|uri: axum::http::Uri, h: HeaderMap| async move {
        let get = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).unwrap_or("-").to_string();
        format!(
            "uri={uri}\nuser={}\nemail={}\nusername={}\ngroups={}\n",
            get("x-auth-request-user"),
            get("x-auth-request-email"),
            get("x-auth-request-preferred-username"),
            get("x-auth-request-groups")
        )
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

#[tokio::test]
async fn nginx_auth_request_in_front_of_an_app_as_ingress_nginx_configures_it() {
    let ngx_port = free_port();
    let app_host = format!("app.example.test:{ngx_port}");
    let allowed = app_host.clone();
    let env = [
        ("SSOGATE_SESSION__COOKIE_DOMAIN", "example.test"),
        ("SSOGATE_INGRESS__ALLOWED_DOMAINS", allowed.as_str()),
        ("SSOGATE_LOGIN__JWKS_MIN_REFETCH_SECONDS", "0"),
    ];
    let gw = Gateway::start_with(Arc::new(tempfile::tempdir().unwrap()), &env, Clock::system(), Some("sso.example.test")).await;
    let sso = gw.app.config.public_base();
    let (idp, _idp_dir) = oidc_provider(&json!({
        "clients": [{"client_id": "gateway", "client_secret": "gateway-secret-0123456789",
                     "redirect_uris": [format!("{sso}/oidc/con_node/callback")], "token_endpoint_auth_method": "client_secret_basic"}],
        "accounts": {"alice": {"email": "alice@example.test", "email_verified": true, "name": "Alice Example", "groups": ["engineers", "staff"]}},
        "pkce_methods": ["S256"]
    }));
    let issuer = idp.ready["issuer"].as_str().unwrap().to_string();
    let (s, c) = gw
        .admin(
            Method::POST,
            "/connections",
            Some(json!({"id": "con_node", "display_name": "Node IdP", "protocol": "oidc",
        "create_users": true, "group_sync": true, "oidc": {"issuer": issuer, "client_id": "gateway", "client_secret": "gateway-secret-0123456789"}})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{c}");
    gw.admin(Method::POST, "/groups", Some(json!({"name": "Engineers"}))).await;

    // nginx as ingress-nginx writes it: `/` needs a login, `/admin` the group admins.
    let app = echo_app().await;
    let dir = tempfile::tempdir().unwrap();
    let gw_addr = gw.base.trim_start_matches("http://");
    let auth_host = sso.trim_start_matches("http://");
    let signin = format!("{sso}/oauth2/start?connection=con_node&");
    let conf = format!(
        "{main}http {{\n    access_log off;\n    {paths}    server {{\n    listen 127.0.0.1:{ngx_port};\n    server_name _;\n{root}{admin}    }}\n}}\n",
        main = nginx_main(dir.path()),
        paths = nginx_http_paths(dir.path()),
        root = ingress_location("/", "Lw-Prefix", auth_host, &format!("http://{gw_addr}/oauth2/auth"), &signin, &app),
        admin = ingress_location("/admin", "L2FkbWlu-Prefix", auth_host, &format!("http://{gw_addr}/oauth2/auth?allowed_groups=admins"), &signin, &app),
    );
    let _nginx = start_nginx(dir.path(), &conf, ngx_port);

    // The browser resolves both names to loopback; the IdP stays on 127.0.0.1.
    let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let http = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .resolve("app.example.test", loopback)
        .resolve("sso.example.test", loopback)
        .build()
        .unwrap();
    let b = Browser { http };

    // No cookie: nginx sends the browser to ssogate with the escaped original URL.
    let page = format!("http://{app_host}/page/one?x=1&y=a%2Fb");
    let r = b.http.get(&page).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    let to_signin = r.headers()["location"].to_str().unwrap().to_string();
    assert_eq!(to_signin, format!("{sso}/oauth2/start?connection=con_node&rd=http://{app_host}%2Fpage%2Fone%3Fx%3D1%26y%3Da%252Fb"));

    // ssogate's /start, the login page of the real IdP, its form.
    let (form, at) = b.visit(&to_signin).await;
    assert_eq!(form.status(), StatusCode::OK, "{at}");
    assert!(at.starts_with(&format!("{issuer}/interaction/")), "{at}");
    let r = b.http.post(format!("{at}/login")).form(&[("login", "alice")]).send().await.unwrap();
    assert!(r.status().is_redirection(), "{}", r.status());
    let next = reqwest::Url::parse(&at).unwrap().join(r.headers()["location"].to_str().unwrap()).unwrap().to_string();

    // Back at the very page that was asked for, with the identity headers at the app.
    let (resp, landed) = b.visit(&next).await;
    let status = resp.status();
    let body = resp.text().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{landed}: {body}\n{}", std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default());
    assert_eq!(landed, page);
    assert!(body.contains("uri=/page/one?x=1&y=a%2Fb\n"), "{body}");
    assert!(body.contains("email=alice@example.test\n"), "{body}");
    assert!(body.contains("username=alice@example.test\n"), "{body}");
    assert!(body.contains("groups=") && body.contains("Engineers"), "{body}");
    assert!(body.lines().any(|l| l.starts_with("user=usr_")), "{body}");
    // The session cookie came from sso.example.test: only its Domain got it to this host.
    let r = b.http.get(format!("http://{app_host}/other")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // Logged in, but /admin wants a group alice lacks: 403 from nginx, no redirect loop.
    let r = b.http.get(format!("http://{app_host}/admin/x")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(r.headers().get("location").is_none());

    // Sign-out at ssogate ends the session for every app: the next request is redirected.
    let rd: String = url::form_urlencoded::byte_serialize(format!("http://{app_host}/bye").as_bytes()).collect();
    let r = b.http.get(format!("{sso}/oauth2/sign_out?rd={rd}")).header("sec-fetch-site", "same-site").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], format!("http://{app_host}/bye"));
    let r = b.http.get(&page).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    assert!(r.headers()["location"].to_str().unwrap().starts_with(&format!("{sso}/oauth2/start?")));
    // ...and an off-site original URL never becomes a return target.
    let evil = "http://app.example.test.evil.example/";
    let r = b.http.get(format!("{sso}/oauth2/start?rd={}", url::form_urlencoded::byte_serialize(evil.as_bytes()).collect::<String>())).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}
