//! Login benchmark: the gateway's own CPU per OIDC login.
//!
//! Runs the release `ssogate` binary as its own process, an IdP on loopback in this
//! process (it signs real RS256 ID tokens and serves its JWKS), and drives N logins:
//! first N starts (`/login/{id}`), then N callbacks (code exchange, ID token signature
//! and claims, directory step, group sync, session). The gateway's CPU comes from
//! /proc/PID/stat around each phase, so the IdP's and the client's work is not counted.
//! As a reference from the same run: the CPU of N `/healthz` requests.
//!
//!     cargo run --release --bench login -- [N]      (or: bash bench/run-login.sh)

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use openssl::pkey::PKey;
use serde_json::{json, Value};

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces): utime is 14th, stime 15th.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

fn ticks_per_second() -> f64 {
    let out = Command::new("getconf").arg("CLK_TCK").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(100.0)
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(500);
    let exe = std::env::var("BENCH_SSOGATE_EXE").unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../target/release/ssogate").into());
    let exe = if std::path::Path::new(&exe).exists() {
        exe
    } else {
        format!("{}/release/ssogate", std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into()))
    };

    // The IdP: honest, RS256, JWKS published.
    let (kid, pem, jwk) = ssogate::token::make(ssogate::token::Alg::Rs256).unwrap();
    let key = PKey::private_key_from_pem(pem.as_bytes()).unwrap();
    let token: Arc<Mutex<String>> = Arc::default();
    let t2 = token.clone();
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
            post(|State(t): State<Arc<Mutex<String>>>| async move {
                Json(json!({"id_token": t.lock().unwrap().clone(), "access_token": "at", "token_type": "Bearer"}))
            }),
        )
        .with_state(t2);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let idp = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = tempfile::tempdir().unwrap();
    let admin = "bench-admin-token-0123456789";
    let mut child = Command::new(&exe)
        .current_dir(dir.path())
        .env("SSOGATE_LISTEN", "127.0.0.1:0")
        .env("SSOGATE_ADMIN_TOKEN", admin)
        .env("SSOGATE_LOG__FORMAT", "json")
        .env("SSOGATE_LOG__LEVEL", "warn,ssogate=info")
        // Every benchmark login comes from this one client: no per-client limits.
        .env("SSOGATE_LOGIN__STARTS_PER_MINUTE", "0")
        .env("SSOGATE_LOGIN__CALLBACKS_PER_MINUTE", "0")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {exe}: {e} (build it with cargo build --release)"));
    let pid = child.id();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    let base = loop {
        let Some(Ok(l)) = lines.next() else { panic!("{exe} stopped before serving: {}", seen.join("\n")) };
        seen.push(l.clone());
        if l.contains("ssogate is serving") {
            let v: Value = serde_json::from_str(&l).unwrap();
            break format!("http://{}", v["listen"].as_str().unwrap());
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let body = json!({"id": "con_b", "display_name": "Bench", "protocol": "oidc", "create_users": true, "group_sync": true, "discover": false,
        "oidc": {"issuer": idp, "client_id": "c", "client_secret": "s", "authorization_endpoint": format!("{idp}/authorize"),
                 "token_endpoint": format!("{idp}/token"), "jwks_uri": format!("{idp}/jwks")}});
    let r = http.post(format!("{base}/api/v1/admin/connections")).bearer_auth(admin).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 201);
    http.post(format!("{base}/api/v1/admin/groups")).bearer_auth(admin).json(&json!({"name": "eng"})).send().await.unwrap();

    let sign = |nonce: &str, sub: &str| {
        let now = chrono::Utc::now().timestamp();
        let claims = json!({"iss": idp, "aud": "c", "sub": sub, "nonce": nonce, "iat": now, "exp": now + 300,
            "email": format!("{sub}@bench.example"), "email_verified": true, "groups": ["eng", "other"]});
        ssogate::token::jws::sign(&key, "RS256", &kid, &claims).unwrap()
    };
    // Each login in its own browser (flow cookie), for ten users so most logins are
    // returning users (link found, group sync with nothing to change) as in real life.
    async fn start(http: &reqwest::Client, base: &str) -> (String, String, String) {
        let r = http.get(format!("{base}/login/con_b")).send().await.unwrap();
        let cookie = r.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
        let loc = reqwest::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
        let q = |k: &str| loc.query_pairs().find(|(n, _)| n == k).unwrap().1.to_string();
        (q("state"), q("nonce"), cookie)
    }
    for i in 0..20 {
        let (state, nonce, cookie) = start(&http, &base).await;
        *token.lock().unwrap() = sign(&nonce, &format!("user{}", i % 10));
        let r = http.get(format!("{base}/oidc/con_b/callback?state={state}&code=x")).header("cookie", cookie).send().await.unwrap();
        assert_eq!(r.status(), 303, "warm-up login failed");
    }

    let hz = ticks_per_second();
    let c0 = cpu_ticks(pid);
    let t0 = Instant::now();
    for _ in 0..n {
        http.get(format!("{base}/healthz")).send().await.unwrap();
    }
    let health_cpu = (cpu_ticks(pid) - c0) as f64 / hz;

    let c1 = cpu_ticks(pid);
    let t1 = Instant::now();
    let mut pending = Vec::with_capacity(n);
    for _ in 0..n {
        pending.push(start(&http, &base).await);
    }
    let start_cpu = (cpu_ticks(pid) - c1) as f64 / hz;
    let start_wall = t1.elapsed().as_secs_f64();

    let c2 = cpu_ticks(pid);
    let t2 = Instant::now();
    for (i, (state, nonce, cookie)) in pending.into_iter().enumerate() {
        *token.lock().unwrap() = sign(&nonce, &format!("user{}", i % 10));
        let r = http.get(format!("{base}/oidc/con_b/callback?state={state}&code=x")).header("cookie", cookie).send().await.unwrap();
        assert_eq!(r.status(), 303);
    }
    let cb_cpu = (cpu_ticks(pid) - c2) as f64 / hz;
    let cb_wall = t2.elapsed().as_secs_f64();
    let _ = t0;
    let _ = child.kill();
    let _ = child.wait();

    let us = |s: f64| s / n as f64 * 1e6;
    println!("| what | gateway CPU per request | wall per request |");
    println!("| --- | --- | --- |");
    println!("| reference: GET /healthz | {:.0} µs | |", us(health_cpu));
    println!("| login start (/login/{{id}}) | {:.0} µs | {:.0} µs |", us(start_cpu), us(start_wall));
    println!("| callback (exchange + RS256 ID token + directory + group sync + session), JWKS cached | {:.0} µs | {:.0} µs |", us(cb_cpu), us(cb_wall));
    println!("| whole login (start + callback) | {:.0} µs | |", us(start_cpu + cb_cpu));
    println!("\n{n} logins; CPU from /proc/{pid}/stat at {hz} ticks/s, so figures are ±{:.0} µs.", 1e6 / hz / n as f64);
}
