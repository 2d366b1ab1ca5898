//! Ingress benchmark: `/auth` with a valid session against, in the same run on the same
//! machine, axum's hello world, nginx `return 200`, and Apache mod_auth_openidc on an
//! authenticated request; then the gateway's RSS with N live sessions.
//!
//! Every server is pinned to core 0 (`taskset`), wrk (`-t1 -c64 --latency`) to core 1;
//! each target runs `runs` times, interleaved, and the medians are reported. The gateway
//! is the release binary as its own process (SQLite store, in-memory state unless
//! `BENCH_STATE_URL` points it at Redis). Sessions come from real logins through an IdP
//! in this process (ES256 ID tokens, JWKS published); Apache logs in through the
//! gateway's OpenID Provider, as tests/it/apache.rs does.
//!
//!     bash bench/run-auth.sh          (installs wrk, nginx, Apache; builds; runs this)
//!
//! Environment: BENCH_SSOGATE_EXE, BENCH_HELLO_EXE (the binaries), BENCH_DURATION (s, 10),
//! BENCH_RUNS (3), BENCH_CONNECTIONS (64), BENCH_SESSIONS (100000),
//! BENCH_LOGIN_WORKERS (1), BENCH_STATE_URL (a `redis://` URL: the gateway keeps its
//! state there), BENCH_PERF_DIR (a directory: the first measured run of each target is
//! recorded with `perf record -g` on the server's main process, as `<n>.data`).

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing::{get, post};
use axum::{Form, Json, Router};
use openssl::pkey::PKey;
use serde_json::{json, Value};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A server in a process group of its own, pinned to core 0; stopped with its children.
struct Server {
    name: &'static str,
    child: Child,
}

impl Server {
    fn spawn(name: &'static str, mut cmd: Command) -> Server {
        let child = cmd.process_group(0).spawn().unwrap_or_else(|e| panic!("start {name}: {e}"));
        Server { name, child }
    }

    /// CPU ticks of every process in the group (nginx and Apache have workers).
    fn cpu_ticks(&self) -> u64 {
        let pgid = self.child.id().to_string();
        let mut total = 0;
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
            let Some(close) = stat.rfind(')') else { continue };
            let f: Vec<&str> = stat[close + 2..].split(' ').collect();
            if f.len() > 12 && f[2] == pgid {
                total += f[11].parse::<u64>().unwrap_or(0) + f[12].parse::<u64>().unwrap_or(0);
            }
        }
        total
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5) && !matches!(self.child.try_wait(), Ok(Some(_))) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.wait();
        eprintln!("bench: stopped {}", self.name);
    }
}

fn pinned(program: &str) -> Command {
    let mut c = Command::new("taskset");
    c.args(["-c", "0", program]);
    c
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn wait_port(port: u16, what: &str, log: &Path) {
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < Duration::from_secs(20), "{what} did not start: {}", std::fs::read_to_string(log).unwrap_or_default());
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok()).unwrap_or(0)
}

/// One wrk run's figures.
#[derive(Clone, Copy, Debug)]
struct Run {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    cpu_us: f64,
}

fn duration_ms(s: &str) -> f64 {
    let s = s.trim();
    let (num, mul) = if let Some(v) = s.strip_suffix("us") {
        (v, 0.001)
    } else if let Some(v) = s.strip_suffix("ms") {
        (v, 1.0)
    } else if let Some(v) = s.strip_suffix('s') {
        (v, 1000.0)
    } else {
        (s, 1.0)
    };
    num.parse::<f64>().unwrap_or(f64::NAN) * mul
}

fn wrk(url: &str, headers: &[String], seconds: u64, connections: u32, server: &Server) -> Run {
    let hz = ticks_per_second();
    let c0 = server.cpu_ticks();
    let mut cmd = Command::new("taskset");
    cmd.args(["-c", "1", "wrk", "-t1", &format!("-c{connections}"), &format!("-d{seconds}s"), "--latency"]);
    for h in headers {
        cmd.args(["-H", h]);
    }
    let out = cmd.arg(url).output().expect("wrk runs (apt-get install wrk)");
    let cpu = (server.cpu_ticks() - c0) as f64 / hz;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "wrk failed: {text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(!text.contains("Non-2xx"), "{url} answered errors under load:\n{text}");
    let field =
        |prefix: &str| text.lines().map(str::trim).find_map(|l| l.strip_prefix(prefix)).map(str::trim).unwrap_or_else(|| panic!("no {prefix} in {text}"));
    let rps: f64 = field("Requests/sec:").parse().unwrap();
    let requests: f64 =
        text.lines().find(|l| l.contains("requests in")).and_then(|l| l.split_whitespace().next()).and_then(|n| n.parse().ok()).unwrap_or(f64::NAN);
    Run { rps, p50_ms: duration_ms(field("50%")), p99_ms: duration_ms(field("99%")), cpu_us: cpu / requests * 1e6 }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn ticks_per_second() -> f64 {
    let out = Command::new("getconf").arg("CLK_TCK").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(100.0)
}

/// The IdP: answers the token request with an ES256 ID token whose nonce is the code
/// (the driver passes the nonce as the code), so logins can run concurrently.
async fn idp() -> String {
    let (kid, pem, jwk) = ssogate::token::make(ssogate::token::Alg::Es256).unwrap();
    let key = Arc::new(PKey::private_key_from_pem(pem.as_bytes()).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let iss = base.clone();
    let app = Router::new()
        .route(
            "/jwks",
            get(move || {
                let j = jwk.clone();
                async move { Json(json!({"keys": [j]})) }
            }),
        )
        .route(
            "/token",
            post(move |Form(f): Form<HashMap<String, String>>| {
                let (key, kid, iss) = (key.clone(), kid.clone(), iss.clone());
                async move {
                    let code = f.get("code").cloned().unwrap_or_default();
                    let (nonce, sub) = code.split_once('.').unwrap_or((&code, "user0"));
                    let now = chrono::Utc::now().timestamp();
                    let claims = json!({"iss": iss, "aud": "c", "sub": sub, "nonce": nonce, "iat": now, "exp": now + 300,
                    "email": format!("{sub}@bench.example"), "email_verified": true, "name": format!("User {sub}"),
                    "groups": ["eng", "staff", "bench-readers"]});
                    let t = ssogate::token::jws::sign(&key, "ES256", &kid, &claims).unwrap();
                    Json(json!({"id_token": t, "access_token": "at", "token_type": "Bearer"}))
                }
            }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await });
    base
}

/// One login through the gateway with `http` (a cookie jar): start, then the callback.
async fn login(http: &reqwest::Client, base: &str, user: usize) {
    let r = http.get(format!("{base}/login/con_b")).send().await.unwrap();
    let loc = reqwest::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
    let q = |k: &str| loc.query_pairs().find(|(n, _)| n == k).unwrap().1.to_string();
    let (state, nonce) = (q("state"), q("nonce"));
    let r = http.get(format!("{base}/oidc/con_b/callback?state={state}&code={nonce}.user{user}")).send().await.unwrap();
    assert_eq!(r.status(), 303, "login failed: {}", r.text().await.unwrap_or_default());
}

fn jar_client(jar: &Arc<reqwest::cookie::Jar>, follow: bool) -> reqwest::Client {
    let policy = if follow { reqwest::redirect::Policy::limited(10) } else { reqwest::redirect::Policy::none() };
    reqwest::Client::builder().cookie_provider(jar.clone()).redirect(policy).build().unwrap()
}

fn start_nginx(dir: &Path) -> (Server, u16) {
    let port = free_port();
    let d = dir.display();
    std::fs::create_dir_all(dir.join("tmp")).unwrap();
    let conf = format!(
        r#"daemon off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path {d}/tmp/body; proxy_temp_path {d}/tmp/proxy; fastcgi_temp_path {d}/tmp/fastcgi; uwsgi_temp_path {d}/tmp/uwsgi; scgi_temp_path {d}/tmp/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{ return 200 "ok"; }}
    }}
}}
"#
    );
    std::fs::write(dir.join("nginx.conf"), conf).unwrap();
    let mut cmd = pinned("nginx");
    cmd.arg("-p").arg(dir).arg("-e").arg(dir.join("nginx-error.log")).arg("-c").arg(dir.join("nginx.conf"));
    let s = Server::spawn("nginx", cmd);
    wait_port(port, "nginx", &dir.join("nginx-error.log"));
    (s, port)
}

fn start_apache(dir: &Path, gateway: &str, client_id: &str, secret: &str, port: u16) -> Server {
    use std::os::unix::fs::PermissionsExt;
    let www = dir.join("www/protected");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("index.html"), "ok\n").unwrap();
    for p in [dir.to_path_buf(), dir.join("www"), www.clone()] {
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::set_permissions(www.join("index.html"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let m = "/usr/lib/apache2/modules";
    let d = dir.display();
    let conf = format!(
        r#"ServerName 127.0.0.1
Listen 127.0.0.1:{port}
PidFile {d}/apache.pid
ErrorLog {d}/apache-error.log
LogLevel warn
Mutex file:{d}
DefaultRuntimeDir {d}
User www-data
Group www-data
KeepAlive On
MaxKeepAliveRequests 0
LoadModule mpm_event_module {m}/mod_mpm_event.so
LoadModule authz_core_module {m}/mod_authz_core.so
LoadModule authn_core_module {m}/mod_authn_core.so
LoadModule authz_user_module {m}/mod_authz_user.so
LoadModule mime_module {m}/mod_mime.so
LoadModule dir_module {m}/mod_dir.so
LoadModule auth_openidc_module {m}/mod_auth_openidc.so
TypesConfig /etc/mime.types
DocumentRoot {d}/www
DirectoryIndex index.html
<Directory {d}/www>
  Require all granted
</Directory>
OIDCProviderMetadataURL {gateway}/.well-known/openid-configuration
OIDCClientID {client_id}
OIDCClientSecret {secret}
OIDCRedirectURI http://127.0.0.1:{port}/protected/redirect_uri
OIDCCryptoPassphrase bench-passphrase-0123456789
OIDCScope "openid email profile groups"
OIDCPKCEMethod S256
OIDCAuthRequestParams connection=con_b
OIDCRemoteUserClaim preferred_username
OIDCCacheType shm
<Location /protected>
  AuthType openid-connect
  Require valid-user
</Location>
"#
    );
    std::fs::write(dir.join("apache.conf"), conf).unwrap();
    let mut cmd = pinned("apache2");
    cmd.arg("-f").arg(dir.join("apache.conf")).arg("-DFOREGROUND");
    let s = Server::spawn("apache2 + mod_auth_openidc", cmd);
    wait_port(port, "apache", &dir.join("apache-error.log"));
    s
}

#[tokio::main]
async fn main() {
    let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    let exe = std::env::var("BENCH_SSOGATE_EXE").unwrap_or_else(|_| format!("{target}/release/ssogate"));
    let hello_exe = std::env::var("BENCH_HELLO_EXE").unwrap_or_else(|_| format!("{target}/release/examples/hello"));
    let seconds: u64 = env_or("BENCH_DURATION", 10);
    let runs: usize = env_or("BENCH_RUNS", 3);
    let connections: u32 = env_or("BENCH_CONNECTIONS", 64);
    let sessions: usize = env_or("BENCH_SESSIONS", 100_000);
    let state_url = std::env::var("BENCH_STATE_URL").ok().filter(|s| !s.is_empty());
    let dir = tempfile::tempdir().unwrap();
    let idp = idp().await;

    // The gateway.
    let admin = "bench-admin-token-0123456789";
    let gw_port = free_port();
    let base = format!("http://127.0.0.1:{gw_port}");
    let mut cmd = pinned(&exe);
    cmd.current_dir(dir.path())
        .env("SSOGATE_LISTEN", format!("127.0.0.1:{gw_port}"))
        .env("SSOGATE_PUBLIC_URL", &base)
        .env("SSOGATE_ADMIN_TOKEN", admin)
        .env("SSOGATE_LOG__FORMAT", "json")
        .env("SSOGATE_LOG__LEVEL", "warn,ssogate=info")
        // Every benchmark login comes from this one client: no per-client limits.
        .env("SSOGATE_LOGIN__STARTS_PER_MINUTE", "0")
        .env("SSOGATE_LOGIN__CALLBACKS_PER_MINUTE", "0")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(u) = &state_url {
        // The Redis state backend's key (issue #5, the state store for several replicas).
        cmd.env("SSOGATE_STATE__URL", u);
    }
    let mut gateway = Server::spawn("ssogate", cmd);
    let mut lines = BufReader::new(gateway.child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    loop {
        let Some(Ok(l)) = lines.next() else { panic!("{exe} stopped before serving: {}", seen.join("\n")) };
        seen.push(l.clone());
        if l.contains("ssogate is serving") {
            break;
        }
    }
    // Errors of the gateway show on the driver's stderr.
    std::thread::spawn(move || {
        for l in lines.map_while(Result::ok).filter(|l| l.contains("\"ERROR\"")) {
            eprintln!("gateway: {l}");
        }
    });
    let gw_pid = gateway.child.id();
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let body = json!({"id": "con_b", "display_name": "Bench", "protocol": "oidc", "create_users": true, "group_sync": true, "discover": false,
        "oidc": {"issuer": idp, "client_id": "c", "client_secret": "s", "authorization_endpoint": format!("{idp}/authorize"),
                 "token_endpoint": format!("{idp}/token"), "jwks_uri": format!("{idp}/jwks")}});
    let r = http.post(format!("{base}/api/v1/admin/connections")).bearer_auth(admin).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
    for g in ["eng", "staff"] {
        http.post(format!("{base}/api/v1/admin/groups")).bearer_auth(admin).json(&json!({"name": g})).send().await.unwrap();
    }
    let apache_port = free_port();
    let r = http
        .post(format!("{base}/api/v1/admin/clients"))
        .bearer_auth(admin)
        .json(&json!({"client_id": "apache", "name": "Apache", "redirect_uris": [format!("http://127.0.0.1:{apache_port}/protected/redirect_uri")]}))
        .send()
        .await
        .unwrap();
    let client: Value = r.json().await.unwrap();
    let secret = client["client_secret"].as_str().expect("client secret").to_string();

    // The browser whose session the benchmark uses; Apache logs in through the gateway.
    let jar = Arc::new(reqwest::cookie::Jar::default());
    login(&jar_client(&jar, false), &base, 0).await;
    let gw_url: reqwest::Url = base.parse().unwrap();
    let cookie = reqwest::cookie::CookieStore::cookies(jar.as_ref(), &gw_url).expect("session cookie").to_str().unwrap().to_string();
    let apache = start_apache(dir.path(), &base, "apache", &secret, apache_port);
    let protected = format!("http://127.0.0.1:{apache_port}/protected/index.html");
    let r = jar_client(&jar, true).get(&protected).send().await.unwrap();
    assert_eq!(r.status(), 200, "Apache login through the gateway: {}", std::fs::read_to_string(dir.path().join("apache-error.log")).unwrap_or_default());
    let apache_url: reqwest::Url = protected.parse().unwrap();
    let apache_cookie = reqwest::cookie::CookieStore::cookies(jar.as_ref(), &apache_url).unwrap().to_str().unwrap().to_string();
    let r = http.get(&protected).header("cookie", &apache_cookie).send().await.unwrap();
    assert_eq!(r.status(), 200, "Apache accepts its session cookie");

    // Live sessions: N real logins (ten users, each login its own session).
    let rss_before = rss_kb(gw_pid);
    let t = Instant::now();
    // The logins run one after the other (a browser's pace) unless BENCH_LOGIN_WORKERS
    // says otherwise (8 workers over the same ten users: 3000 logins in 3 s, none refused).
    let workers: usize = env_or("BENCH_LOGIN_WORKERS", 1);
    let mut tasks = Vec::new();
    for w in 0..workers {
        let base = base.clone();
        tasks.push(tokio::spawn(async move {
            let mut cookies = Vec::new();
            let mut i = w;
            while i < sessions {
                let jar = Arc::new(reqwest::cookie::Jar::default());
                login(&jar_client(&jar, false), &base, i % 10).await;
                let url: reqwest::Url = base.parse().unwrap();
                cookies.push(reqwest::cookie::CookieStore::cookies(jar.as_ref(), &url).unwrap().to_str().unwrap().to_string());
                i += workers;
            }
            cookies
        }));
    }
    let mut all_cookies = Vec::new();
    for t in tasks {
        all_cookies.extend(t.await.unwrap());
    }
    let login_secs = t.elapsed().as_secs_f64();
    let rss_sessions = rss_kb(gw_pid);
    eprintln!("bench: {sessions} logins in {login_secs:.0} s; RSS {rss_before} kB -> {rss_sessions} kB");

    // The references.
    let mut hello_cmd = pinned(&hello_exe);
    hello_cmd.stdout(Stdio::piped());
    let mut hello = Server::spawn("axum hello world", hello_cmd);
    let mut line = String::new();
    BufReader::new(hello.child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let hello_url = format!("http://{}/", line.trim());
    let (nginx, nginx_port) = start_nginx(dir.path());

    let auth_ok = http.get(format!("{base}/auth")).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(auth_ok.status(), 200);
    assert!(auth_ok.headers().contains_key("x-auth-request-user"));
    let ck = vec![format!("Cookie: {cookie}")];
    let targets: Vec<(&str, String, Vec<String>, &Server)> = vec![
        ("axum hello world", hello_url, vec![], &hello),
        ("nginx `return 200`", format!("http://127.0.0.1:{nginx_port}/"), vec![], &nginx),
        ("ssogate `/auth`, valid session", format!("{base}/auth"), ck.clone(), &gateway),
        ("ssogate `/oauth2/auth?allowed_groups=eng`", format!("{base}/oauth2/auth?allowed_groups=eng"), ck.clone(), &gateway),
        ("ssogate `/auth?set_authorization_header=1` (ES256 token, cached)", format!("{base}/auth?set_authorization_header=1"), ck.clone(), &gateway),
        ("Apache mod_auth_openidc, authenticated request", protected, vec![format!("Cookie: {apache_cookie}")], &apache),
    ];
    for (name, url, headers, server) in &targets {
        eprintln!("bench: warm-up {name}");
        wrk(url, headers, 2, connections, server);
    }
    let mut results: Vec<Vec<Run>> = vec![Vec::new(); targets.len()];
    let perf_dir = std::env::var("BENCH_PERF_DIR").ok().filter(|s| !s.is_empty());
    for round in 0..runs {
        for (i, (name, url, headers, server)) in targets.iter().enumerate() {
            let perf = perf_dir.as_ref().filter(|_| round == 0).map(|d| {
                Command::new("perf")
                    .args(["record", "-q", "-g", "-F", "1999", "-o", &format!("{d}/{i}.data"), "-p", &server.child.id().to_string()])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("perf runs (apt-get install linux-perf)")
            });
            let r = wrk(url, headers, seconds, connections, server);
            if let Some(mut p) = perf {
                let _ = Command::new("kill").args(["-INT", &p.id().to_string()]).status();
                let _ = p.wait();
            }
            eprintln!("bench: round {} {name}: {:.0} req/s, p50 {:.3} ms, p99 {:.3} ms, {:.1} µs CPU/req", round + 1, r.rps, r.p50_ms, r.p99_ms, r.cpu_us);
            results[i].push(r);
        }
    }
    let rss_runs = rss_kb(gw_pid);
    // Every session used once through /auth (the ingress's view of a busy cluster).
    let mut touches = Vec::new();
    for c in all_cookies.chunks(all_cookies.len().div_ceil(workers).max(1)) {
        let (c, base) = (c.to_vec(), base.clone());
        touches.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            for cookie in c {
                let r = http.get(format!("{base}/auth")).header("cookie", cookie).send().await.unwrap();
                assert_eq!(r.status(), 200);
            }
        }));
    }
    for t in touches {
        t.await.unwrap();
    }
    let rss_used = rss_kb(gw_pid);
    drop(targets);

    let med = |i: usize, f: fn(&Run) -> f64| median(results[i].iter().map(f).collect());
    let rps = |i: usize| med(i, |r| r.rps);
    println!("| server (pinned to core 0; wrk -t1 -c{connections} on core 1, {seconds} s, median of {runs}) | req/s | p50 | p99 | server CPU µs/req |");
    println!("| --- | --- | --- | --- | --- |");
    let names = [
        "axum hello world",
        "nginx `return 200`",
        "ssogate `/auth`, valid session",
        "ssogate `/oauth2/auth?allowed_groups=eng`",
        "ssogate `/auth?set_authorization_header=1` (ES256 token, cached)",
        "Apache mod_auth_openidc, authenticated request",
    ];
    for (i, name) in names.iter().enumerate() {
        println!("| {name} | {:.1}k | {:.2} ms | {:.2} ms | {:.1} |", rps(i) / 1000.0, med(i, |r| r.p50_ms), med(i, |r| r.p99_ms), med(i, |r| r.cpu_us));
    }
    let auth = rps(2);
    println!();
    println!("| target (PERFORMANCE.md) | measured | met |");
    println!("| --- | --- | --- |");
    let yes = |b: bool| if b { "yes" } else { "**no**" };
    if state_url.is_some() {
        println!("| `/auth` with Redis behind the cache ≥ 0.8× axum hello world | {:.2}× | {} |", auth / rps(0), yes(auth / rps(0) >= 0.8));
    } else {
        println!("| `/auth` ≥ 0.9× axum hello world | {:.2}× | {} |", auth / rps(0), yes(auth / rps(0) >= 0.9));
    }
    println!("| `/auth` ≥ 0.85× nginx `return 200` | {:.2}× | {} |", auth / rps(1), yes(auth / rps(1) >= 0.85));
    println!("| `/auth` ≥ 5× Apache mod_auth_openidc | {:.1}× | {} |", auth / rps(5), yes(auth / rps(5) >= 5.0));
    println!("| `/auth` p99 < 1 ms at {connections} connections | {:.2} ms | {} |", med(2, |r| r.p99_ms), yes(med(2, |r| r.p99_ms) < 1.0));
    let mb = |kb: u64| kb as f64 / 1024.0;
    println!(
        "| RSS with {sessions} live sessions < 200 MB | {:.0} MB ({:.0} MB after each was used once through `/auth`) | {} |",
        mb(rss_sessions),
        mb(rss_used),
        yes(mb(rss_used) < 200.0)
    );
    println!();
    println!(
        "RSS of the gateway before the logins: {:.0} MB; after the wrk runs: {:.0} MB; {sessions} logins took {login_secs:.0} s. State: {}.",
        mb(rss_before),
        mb(rss_runs),
        state_url.as_deref().map(|_| "Redis (BENCH_STATE_URL)").unwrap_or("in memory")
    );
}
