//! Users page benchmark: the console's Users page over a directory of N users (10 000 by
//! default), each with two memberships and a linked identity.
//!
//! Runs the release `ssogate` binary as its own process (SQLite in a temporary directory,
//! on /dev/shm when there is one), seeds the directory through the store API in this
//! process, signs in to the console with the admin token, and times R requests of each
//! kind: the first page, the last page, a search that finds one user, a search that finds
//! none, and the members type-ahead. The gateway's CPU per request comes from
//! /proc/PID/stat; wall times are per request, sequential. As a contrast, the admin
//! API's `GET /users` (which reads each user's groups and links with queries of their own).
//!
//!     cargo bench --bench users -- [N] [R]      (or: bash bench/run-users.sh)

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Instant;

use serde_json::{json, Value};
use ssogate::audit::AuditEntry;
use ssogate::store::{Group, Invitation, Link, Membership, Source, Store, User, UserStatus};

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

fn ticks_per_second() -> f64 {
    let out = Command::new("getconf").arg("CLK_TCK").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(100.0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let r: usize = std::env::args().nth(2).and_then(|s| s.parse().ok()).unwrap_or(200);
    let exe = std::env::var("BENCH_SSOGATE_EXE")
        .unwrap_or_else(|_| format!("{}/release/ssogate", std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into())));
    let dir = if std::path::Path::new("/dev/shm").is_dir() { tempfile::tempdir_in("/dev/shm").unwrap() } else { tempfile::tempdir().unwrap() };
    let admin = "bench-admin-token-0123456789";
    let mut child = Command::new(&exe)
        .current_dir(dir.path())
        .env("SSOGATE_LISTEN", "127.0.0.1:0")
        .env("SSOGATE_ADMIN_TOKEN", admin)
        .env("SSOGATE_LOG__FORMAT", "json")
        .env("SSOGATE_LOG__LEVEL", "warn,ssogate=info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {exe}: {e} (build it with cargo build --release)"));
    let pid = child.id();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let base = loop {
        let Some(Ok(l)) = lines.next() else { panic!("{exe} stopped before serving") };
        if l.contains("ssogate is serving") {
            let v: Value = serde_json::from_str(&l).unwrap();
            break format!("http://{}", v["listen"].as_str().unwrap());
        }
    };
    std::thread::spawn(move || for _ in lines {});

    // The directory, written beside the running gateway through the same store code.
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("data/ssogate.db").display());
    let store = ssogate::store::open(&url, 2).await.unwrap();
    let seeded = Instant::now();
    let mut groups = vec![];
    for i in 0..20 {
        let g = Group {
            id: format!("grp_bench{i:02}"),
            name: format!("Team {i:02}"),
            description: format!("Bench team {i}"),
            builtin: None,
            created_at: 0,
            updated_at: 0,
            managed_by: None,
        };
        store.group_insert(&g, &AuditEntry::new(0, "bench", "group.create", &g.id, json!({}))).await.unwrap();
        groups.push(g.id);
    }
    for i in 0..n {
        let id = format!("usr_bench{i:05}");
        let email = format!("user-{i:05}@example.test");
        let u = User {
            id: id.clone(),
            username: format!("user-{i:05}"),
            email: Some(email.clone()),
            email_verified: true,
            status: if i % 10 == 0 { UserStatus::Pending } else { UserStatus::Active },
            invited_at: Some(0),
            profile: Default::default(),
            created_at: 0,
            updated_at: 0,
        };
        let ms = [
            Membership { group_id: groups[i % 20].clone(), user_id: id.clone(), source: Source::Manual, created_at: 0 },
            Membership { group_id: groups[(i + 7) % 20].clone(), user_id: id.clone(), source: Source::Connection("con_bench".into()), created_at: 0 },
        ];
        let link = Link { connection_id: "con_bench".into(), subject: format!("00u{i:07}"), user_id: id.clone(), created_at: 0 };
        let inv = Invitation { id: format!("inv_bench{i:05}"), email, user_id: id, invited_by: "bench".into(), created_at: 0 };
        store.invitation_insert(&inv, &u, &ms, &[link], &[]).await.unwrap();
    }
    let seed_s = seeded.elapsed().as_secs_f64();

    // A console session with the admin token, as a browser gets one.
    let http = reqwest::Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let page = http.get(format!("{base}/console")).send().await.unwrap().text().await.unwrap();
    let at = page.find("name=\"csrf\" value=\"").unwrap() + "name=\"csrf\" value=\"".len();
    let csrf = page[at..].split('"').next().unwrap().to_string();
    let resp = http.post(format!("{base}/console/sign-in")).form(&[("csrf", csrf.as_str()), ("token", admin)]).send().await.unwrap();
    assert_eq!(resp.status(), 303, "signed in");

    let hz = ticks_per_second();
    let last_page = n.div_ceil(50);
    let cases: Vec<(String, String, &str)> = vec![
        ("reference: GET /healthz".into(), "/healthz".into(), ""),
        ("Users page 1 (50 rows)".into(), "/console/users".into(), "1–50 of"),
        (format!("Users page {last_page} (the last)"), format!("/console/users?page={last_page}"), "of"),
        ("search, one match (`user-07777`)".into(), "/console/users?q=user-07777".into(), "user-07777"),
        ("search, no match".into(), "/console/users?q=nobody-at-all".into(), "No user matches"),
        ("type-ahead JSON (`user-0777`, 8 of 11)".into(), "/console/users/search?q=user-0777".into(), "usr_bench"),
    ];
    println!("{n} users (20 groups, 2 memberships and 1 link each; seeded in {seed_s:.1} s); {r} sequential requests per row.\n");
    println!("| request | wall p50 | wall p99 | gateway CPU per request |");
    println!("| --- | --- | --- | --- |");
    for (label, path, expect) in &cases {
        for _ in 0..5 {
            http.get(format!("{base}{path}")).send().await.unwrap().text().await.unwrap();
        }
        let mut walls = Vec::with_capacity(r);
        let c0 = cpu_ticks(pid);
        for _ in 0..r {
            let t = Instant::now();
            let resp = http.get(format!("{base}{path}")).send().await.unwrap();
            assert_eq!(resp.status(), 200, "{path}");
            let body = resp.text().await.unwrap();
            walls.push(t.elapsed().as_secs_f64() * 1000.0);
            assert!(body.contains(expect), "{path}: {}", &body[..body.len().min(300)]);
        }
        let cpu = (cpu_ticks(pid) - c0) as f64 / hz / r as f64 * 1e6;
        walls.sort_by(|a, b| a.partial_cmp(b).unwrap());
        println!("| {label} | {:.2} ms | {:.2} ms | {cpu:.0} µs |", percentile(&walls, 0.5), percentile(&walls, 0.99));
    }
    // The contrast: the API's list of every user reads groups and links per user.
    let mut walls = vec![];
    let c0 = cpu_ticks(pid);
    for _ in 0..3 {
        let t = Instant::now();
        let resp = http.get(format!("{base}/api/v1/admin/users")).bearer_auth(admin).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        resp.bytes().await.unwrap();
        walls.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let cpu = (cpu_ticks(pid) - c0) as f64 / hz / 3.0 * 1e3;
    walls.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!("| contrast: `GET /api/v1/admin/users` (all {n}, queries per user) | {:.0} ms | | {cpu:.0} ms |", walls[1]);
    println!("\nCPU from /proc/{pid}/stat at {hz} ticks/s: ±{:.0} µs per request.", 1e6 / hz / r as f64);
    let _ = child.kill();
    let _ = child.wait();
}
