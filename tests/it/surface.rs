//! The gateway's own surface against odd and hostile requests (issue 16, items 4 to 7):
//! cookies read per pair, the Envoy form's rules, sign-out CSRF, security headers on
//! every page, request ids only from trusted proxies, control characters in the log,
//! private data files, admin authentication before routing, and the oversized SAML post.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use reqwest::header::HeaderValue;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::ingress::{auth, gateway_with_session, new_session, no_redirects};
use crate::support::{Gateway, TOKEN};

const APP_CB: &str = "http://127.0.0.1:9/cb";

/// GET `path` with these raw `Cookie:` header values (bytes, not necessarily ASCII).
async fn with_cookies(gw: &Gateway, path: &str, cookies: &[Vec<u8>], headers: &[(&str, &str)]) -> reqwest::Response {
    let mut r = no_redirects().get(format!("{}{path}", gw.base));
    for c in cookies {
        r = r.header("cookie", HeaderValue::from_bytes(c).unwrap());
    }
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.send().await.unwrap()
}

#[tokio::test]
async fn a_non_ascii_cookie_never_hides_the_session() {
    let (gw, _clock, cookie, _) = gateway_with_session(&[], &["Engineers"]).await;
    let (st, c) = gw.admin(Method::POST, "/clients", Some(json!({"client_id": "app", "redirect_uris": [APP_CB]}))).await;
    assert_eq!(st, StatusCode::CREATED, "{c}");
    let session = cookie.as_bytes().to_vec();
    let cat = |parts: &[&[u8]]| parts.concat();
    let cases: Vec<(&str, Vec<Vec<u8>>)> = vec![
        ("UTF-8 before", vec![cat(&[b"pref=Jos\xc3\xa9; ", &session])]),
        ("UTF-8 after", vec![cat(&[&session, b"; pref=Jos\xc3\xa9"])]),
        ("Latin-1 byte", vec![cat(&[b"pref=Jos\xe9; ", &session])]),
        ("two headers", vec![b"pref=Jos\xc3\xa9".to_vec(), session.clone()]),
        ("malformed pairs", vec![cat(&[b"=x; noequals; ;  ; a=\xff\xfe; ", &session, b"; z"])]),
        ("a bad pair of the same name first", vec![cat(&[b"ssogate_session=\xff\xfe; ", &session])]),
    ];
    let envoy = [("host", "app.example.test"), ("x-forwarded-proto", "https")];
    let authorize = format!("/authorize?client_id=app&response_type=code&scope=openid&state=s1&redirect_uri={}", enc(APP_CB));
    for (what, cookies) in &cases {
        assert_eq!(with_cookies(&gw, "/auth", cookies, &[]).await.status(), StatusCode::OK, "/auth: {what}");
        assert_eq!(with_cookies(&gw, "/oauth2/auth?allowed_groups=engineers", cookies, &[]).await.status(), StatusCode::OK, "/oauth2/auth: {what}");
        assert_eq!(with_cookies(&gw, "/auth/app/page", cookies, &envoy).await.status(), StatusCode::OK, "envoy: {what}");
        let r = with_cookies(&gw, "/oauth2/userinfo", cookies, &[]).await;
        assert_eq!(r.status(), StatusCode::OK, "userinfo: {what}");
        assert_eq!(r.json::<Value>().await.unwrap()["user"], "usr_alice");
        let r = with_cookies(&gw, &authorize, cookies, &[]).await;
        let loc = r.headers().get("location").map(|l| l.to_str().unwrap().to_string()).unwrap_or_default();
        assert!(loc.starts_with(APP_CB) && loc.contains("code="), "/authorize: {what}: {} {loc}", r.status());
        let r = with_cookies(&gw, "/", cookies, &[]).await;
        assert!(r.text().await.unwrap().contains("Signed in"), "home: {what}");
    }
    // Without the session cookie, the odd cookies are just ignored.
    assert_eq!(with_cookies(&gw, "/auth", &[b"pref=Jos\xe9".to_vec()], &[]).await.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_envoy_form_reads_its_rules_as_strictly_as_auth() {
    let (gw, _clock, cookie, _) = gateway_with_session(&[], &["Engineers"]).await;
    let envoy = [("host", "app.example.test"), ("x-forwarded-proto", "https")];
    for (q, want) in [
        ("allowed_groups=nosuch", StatusCode::FORBIDDEN),
        ("allowed_groups=engineers", StatusCode::OK),
        ("allowed_emails=bob@example.test", StatusCode::FORBIDDEN),
        ("allowed_connections=con_other", StatusCode::FORBIDDEN),
        ("allowed_connections=con_node&allowed_groups=Engineers", StatusCode::OK),
    ] {
        assert_eq!(auth(&gw, &format!("/auth/x?{q}"), Some(&cookie), &envoy).await.status(), want, "{q}");
        assert_eq!(auth(&gw, &format!("/auth/deep/path/?{q}"), Some(&cookie), &envoy).await.status(), want, "{q}");
    }
    // The app's own query passes through untouched; only rules are read.
    for q in ["page=2&sort=name", "redirect=%2Fhome", "set_authorization_header=yes", "allowances=3"] {
        assert_eq!(auth(&gw, &format!("/auth/x?{q}"), Some(&cookie), &envoy).await.status(), StatusCode::OK, "{q}");
        assert_eq!(auth(&gw, &format!("/auth/x?{q}&allowed_groups=nosuch"), Some(&cookie), &envoy).await.status(), StatusCode::FORBIDDEN, "{q}");
    }
    for (q, says) in [
        ("allowed-groups=admins", "unknown parameter `allowed-groups`"),
        ("AllowedGroup=admins", "unknown parameter `AllowedGroup`"),
        ("allow_emails=a%40b.example", "unknown parameter `allow_emails`"),
        ("allowed_groups=", "`allowed_groups` is empty"),
        ("allowed_groups=a&allowed_groups=engineers", "`allowed_groups` is given twice"),
    ] {
        let r = auth(&gw, &format!("/auth/x?{q}"), Some(&cookie), &envoy).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{q}");
        assert!(r.text().await.unwrap().contains(says), "{q}");
    }
    // Not logged in: 401, or the redirect to the sign-in when asked.
    assert_eq!(auth(&gw, "/auth/x?allowed_groups=engineers", None, &envoy).await.status(), StatusCode::UNAUTHORIZED);
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn hidden(html: &str, name: &str) -> Option<String> {
    let at = html.find(&format!("name=\"{name}\""))?;
    let rest = &html[at..];
    Some(rest.split("value=\"").nth(1)?.split('"').next()?.to_string())
}

#[tokio::test]
async fn sign_out_by_get_only_from_this_site_and_post_refuses_other_sites() {
    let allowed = [("SSOGATE_INGRESS__ALLOWED_DOMAINS", "app.example.test")];
    let (gw, clock, cookie, _) = gateway_with_session(&allowed, &[]).await;
    let url = format!("{}/oauth2/sign_out?rd=%2Fbye", gw.base);
    // A cross-site GET (an <img>, a link on another site), or one from a browser that
    // says nothing: a confirmation page with a POST form; the session lives on.
    let mut token = String::new();
    for site in [Some("cross-site"), None] {
        let mut r = no_redirects().get(&url).header("cookie", &cookie);
        if let Some(s) = site {
            r = r.header("sec-fetch-site", s);
        }
        let r = r.send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{site:?}");
        assert!(r.headers().get("set-cookie").is_none(), "{site:?}");
        let html = r.text().await.unwrap();
        assert!(html.contains("method=\"post\"") && html.contains("action=\"/oauth2/sign_out?rd=%2Fbye\""), "{html}");
        token = hidden(&html, "csrf").expect("a token in the form");
        assert!(token.len() >= 32 && !cookie.contains(&token));
        assert_eq!(auth(&gw, "/auth", Some(&cookie), &[]).await.status(), StatusCode::OK, "still signed in after a {site:?} GET");
    }
    // rd is still validated before anything.
    let r = no_redirects().get(format!("{}/oauth2/sign_out?rd=https%3A%2F%2Fevil.example%2F", gw.base)).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // A POST from another site: 403 naming why, whatever it carries.
    for (h, v, why) in [
        ("origin", "https://evil.example", "https://evil.example"),
        ("origin", "null", "null"),
        ("sec-fetch-site", "cross-site", "cross-site"),
        ("origin", "https://app.example.test.evil.example", "https://app.example.test.evil.example"),
    ] {
        for path in ["/logout", "/oauth2/sign_out"] {
            let r = no_redirects().post(format!("{}{path}", gw.base)).header("cookie", &cookie).header(h, v).form(&[("csrf", &token)]).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::FORBIDDEN, "{path} {h}: {v}");
            assert!(r.headers().get("set-cookie").is_none());
            let body = r.text().await.unwrap();
            assert!(body.contains("another site") && body.contains(why), "{path} {h}: {v}: {body}");
        }
    }
    assert_eq!(auth(&gw, "/auth", Some(&cookie), &[]).await.status(), StatusCode::OK, "still signed in");
    // The confirmation form with a wrong token: refused.
    let r = no_redirects()
        .post(&url)
        .header("cookie", &cookie)
        .header("origin", &gw.base)
        .header("sec-fetch-site", "same-origin")
        .form(&[("csrf", "x".repeat(token.len()))])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(auth(&gw, "/auth", Some(&cookie), &[]).await.status(), StatusCode::OK, "still signed in");
    // The confirmation form, posted from the gateway's own page: signed out, on to rd.
    let r = no_redirects()
        .post(&url)
        .header("cookie", &cookie)
        .header("origin", &gw.base)
        .header("sec-fetch-site", "same-origin")
        .form(&[("csrf", &token)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], "/bye");
    assert_eq!(auth(&gw, "/auth", Some(&cookie), &[]).await.status(), StatusCode::UNAUTHORIZED);
    // A GET from this site (or typed in the address bar) signs out at once.
    for site in ["same-origin", "same-site", "none"] {
        let cookie = format!("ssogate_session={}", new_session(&gw, &clock, &[]).await);
        let r = no_redirects().get(&url).header("cookie", &cookie).header("sec-fetch-site", site).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{site}");
        assert_eq!(r.headers()["location"], "/bye");
        assert_eq!(auth(&gw, "/auth", Some(&cookie), &[]).await.status(), StatusCode::UNAUTHORIZED, "{site}");
    }
    // POST /logout from an app of ingress.allowed_domains, or from the home page.
    for origin in ["https://app.example.test", gw.base.as_str()] {
        let cookie = format!("ssogate_session={}", new_session(&gw, &clock, &[]).await);
        let r = no_redirects().post(format!("{}/logout", gw.base)).header("cookie", &cookie).header("origin", origin).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{origin}");
        assert_eq!(auth(&gw, "/auth", Some(&cookie), &[]).await.status(), StatusCode::UNAUTHORIZED, "{origin}");
    }
}

fn csp_hash(text: &str) -> String {
    format!("'sha256-{}'", base64::engine::general_purpose::STANDARD.encode(Sha256::digest(text.as_bytes())))
}

fn between<'a>(html: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let start = html.find(open)? + open.len();
    Some(&html[start..start + html[start..].find(close)?])
}

#[tokio::test]
async fn every_html_page_sends_security_headers() {
    let gw = Gateway::start().await;
    // A SAML IdP that takes the AuthnRequest by POST: our page auto-posts a form to it.
    let md = crate::support::saml_metadata("https://idp.test/metadata").replace("bindings:HTTP-Redirect", "bindings:HTTP-POST");
    let body = json!({"id": "con_s", "display_name": "POST IdP", "protocol": "saml", "saml": {"idp_metadata_xml": md}});
    let (st, c) = gw.admin(Method::POST, "/connections", Some(body)).await;
    assert_eq!(st, StatusCode::CREATED, "{c}");
    let pages = [
        ("/login", StatusCode::OK),
        ("/login/con_nosuch", StatusCode::NOT_FOUND),
        ("/authorize", StatusCode::BAD_REQUEST),
        ("/oauth2/sign_out?rd=https%3A%2F%2Fevil.example%2F", StatusCode::BAD_REQUEST),
        ("/start?rd=https%3A%2F%2Fevil.example%2F", StatusCode::BAD_REQUEST),
        // An OIDC reply for a SAML connection: there is no such OIDC connection.
        ("/oidc/con_s/callback", StatusCode::NOT_FOUND),
        ("/login/con_s", StatusCode::OK),
    ];
    for (path, status) in pages {
        let r = no_redirects().get(format!("{}{path}", gw.base)).send().await.unwrap();
        assert_eq!(r.status(), status, "{path}");
        let h = r.headers().clone();
        assert!(h["content-type"].to_str().unwrap().starts_with("text/html"), "{path}");
        let csp = h.get("content-security-policy").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
        for part in ["default-src 'none'", "frame-ancestors 'none'", "base-uri 'none'", "form-action 'self'"] {
            assert!(csp.contains(part), "{path}: {part} in {csp:?}");
        }
        assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
        assert_eq!(h.get("x-content-type-options").map(|v| v.to_str().unwrap()), Some("nosniff"), "{path}");
        assert_eq!(h.get("referrer-policy").map(|v| v.to_str().unwrap()), Some("no-referrer"), "{path}");
        assert_eq!(h.get("cache-control").map(|v| v.to_str().unwrap()), Some("no-store"), "{path}");
        let html = r.text().await.unwrap();
        // The page's own style (and script, on the auto-post) are allowed by hash, nothing else.
        let style = between(&html, "<style>", "</style>").unwrap();
        assert!(csp.contains(&format!("style-src {}", csp_hash(style))), "{path}: {csp}");
        if let Some(script) = between(&html, "<script>", "</script>") {
            assert!(csp.contains(&format!("script-src {}", csp_hash(script))), "{path}: {csp}");
            assert!(csp.contains("form-action 'self' https://idp.test"), "{path}: the IdP may be posted to: {csp}");
        } else {
            assert!(!csp.contains("script-src"), "{path}: {csp}");
            assert!(csp.contains("form-action 'self';") || csp.ends_with("form-action 'self'"), "{path}: {csp}");
        }
    }
}

#[tokio::test]
async fn request_ids_are_taken_only_from_trusted_proxies() {
    let id_of = |r: &reqwest::Response| r.headers()["x-request-id"].to_str().unwrap().to_string();
    let gw = Gateway::start().await;
    let r = gw.request(Method::GET, "/healthz").header("x-request-id", "spoofed-id-1").send().await.unwrap();
    assert_ne!(id_of(&r), "spoofed-id-1", "not from any client");
    let r = gw.request(Method::GET, "/api/v1/nosuch").header("x-request-id", "spoofed-id-1").send().await.unwrap();
    assert_ne!(id_of(&r), "spoofed-id-1");
    assert_ne!(r.json::<Value>().await.unwrap()["request_id"], "spoofed-id-1");
    for (proxies, trusted) in [("10.0.0.0/8, 127.0.0.1", true), ("127.0.0.0/8", true), ("::1, 10.0.0.0/8", false), ("127.0.0.2", false)] {
        let gw = Gateway::start_in(Arc::new(tempfile::tempdir().unwrap()), &[("SSOGATE_HTTP__TRUSTED_PROXIES", proxies)]).await;
        let r = gw.request(Method::GET, "/healthz").header("x-request-id", "proxy-id-1").send().await.unwrap();
        assert_eq!(id_of(&r) == "proxy-id-1", trusted, "{proxies}");
        // Even a trusted proxy's id must be well formed.
        let r = gw.request(Method::GET, "/healthz").header("x-request-id", "bad id/../x").send().await.unwrap();
        assert!(id_of(&r) != "bad id/../x" && id_of(&r).bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)));
    }
}

/// The real binary with text logs; its base URL and stderr lines as they come.
fn spawn_text_logs(dir: &std::path::Path) -> (std::process::Child, String, Arc<Mutex<Vec<String>>>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ssogate"))
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("SSOGATE_LISTEN", "127.0.0.1:0")
        .env("SSOGATE_LOG__FORMAT", "text")
        .env("NO_COLOR", "1")
        .env("SSOGATE_ADMIN_TOKEN", TOKEN)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    let err = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(err).split(b'\n').map_while(Result::ok) {
            sink.lock().unwrap().push(String::from_utf8_lossy(&l).into_owned());
        }
    });
    let line = wait_for(&lines, "ssogate is serving");
    let listen = line.split("listen=").nth(1).unwrap().split_whitespace().next().unwrap().to_string();
    (child, format!("http://{listen}"), lines)
}

fn wait_for(lines: &Arc<Mutex<Vec<String>>>, needle: &str) -> String {
    let start = Instant::now();
    loop {
        if let Some(l) = lines.lock().unwrap().iter().find(|l| l.contains(needle)) {
            return l.clone();
        }
        assert!(start.elapsed() < Duration::from_secs(20), "no {needle:?} in {:?}", lines.lock().unwrap());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends one raw HTTP/1.1 request; returns the status line.
fn raw(base: &str, request: &[u8]) -> String {
    let mut s = std::net::TcpStream::connect(base.trim_start_matches("http://")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).unwrap();
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf).unwrap();
    String::from_utf8_lossy(&buf[..n]).lines().next().unwrap_or_default().to_string()
}

#[tokio::test]
async fn control_characters_of_a_path_are_escaped_in_the_text_log_and_an_oversized_saml_post_is_refused_like_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, base, lines) = spawn_text_logs(dir.path());
    // U+0085 (NEL) and U+009B (CSI), raw UTF-8 in the request target; U+2028 too.
    let status = raw(&base, b"GET /marker\xc2\x85x\xc2\x9b2J\xe2\x80\xa8y HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    assert!(status.contains(" 404"), "{status}");
    let line = wait_for(&lines, "/marker");
    assert!(!line.contains(['\u{85}', '\u{9b}', '\u{2028}']), "a control character reached the log: {line:?}");
    assert!(line.contains("\\u{85}") && line.contains("\\u{9b}") && line.contains("\\u{2028}"), "{line}");

    // A SAML post over http.max_body_bytes: the ACS's own error page and log line.
    let big = "a".repeat(1024 * 1024 + 10);
    let r = reqwest::Client::new()
        .post(format!("{base}/saml/con_big/acs"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("SAMLResponse={big}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    let page = r.text().await.unwrap();
    assert!(page.contains("Sign-in failed") && page.contains(&id) && page.contains("too large"), "{page}");
    let line = wait_for(&lines, "login refused");
    assert!(line.contains("con_big") && line.contains("too large"), "{line}");
    let _ = child.kill();
    let _ = child.wait();
}

#[cfg(unix)]
#[tokio::test]
async fn data_dir_and_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let gw = Gateway::start_in(dir.clone(), &[]).await;
    // A write, so that the WAL exists too.
    let (st, _) = gw.admin(Method::POST, "/groups", Some(json!({"name": "Staff"}))).await;
    assert_eq!(st, StatusCode::CREATED);
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let data = dir.path().join("data");
    assert_eq!(mode(&data), 0o700, "the data dir");
    let mut files = 0;
    for f in std::fs::read_dir(&data).unwrap() {
        let p = f.unwrap().path();
        assert_eq!(mode(&p), 0o600, "{}", p.display());
        files += 1;
    }
    assert!(files >= 2, "the database and its WAL");
    gw.stop().await;
    // A file left world-readable by an older version is made private at start.
    std::fs::set_permissions(data.join("ssogate.db"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let gw = Gateway::start_in(dir.clone(), &[]).await;
    assert_eq!(mode(&data.join("ssogate.db")), 0o600);
    gw.stop().await;
}

#[tokio::test]
async fn admin_paths_authenticate_before_routing() {
    let gw = Gateway::start().await;
    for (method, path) in [
        (Method::GET, "/api/v1/admin/nosuch"),
        (Method::GET, "/api/v1/admin"),
        (Method::GET, "/api/v1/admin/"),
        (Method::DELETE, "/api/v1/admin/connections"),
        (Method::PUT, "/api/v1/admin/groups"),
        (Method::GET, "/api/v1/admin/connections/con_x/nosuch"),
        (Method::POST, "/api/v1/admin/keys/nosuch"),
    ] {
        let r = gw.request(method.clone(), path).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{method} {path}");
        assert!(r.headers().contains_key("www-authenticate"), "{method} {path}");
        let r = gw.request(method.clone(), path).bearer_auth("wrong").send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{method} {path} with a wrong token");
    }
    // With the token, the router answers as before.
    let r = gw.request(Method::GET, "/api/v1/admin/nosuch").bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = gw.request(Method::DELETE, "/api/v1/admin/connections").bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    // Public API routes stay public.
    assert_eq!(gw.request(Method::GET, "/api/v1/providers").send().await.unwrap().status(), StatusCode::OK);
    assert_eq!(gw.request(Method::GET, "/api/v1/openapi.json").send().await.unwrap().status(), StatusCode::OK);
}
