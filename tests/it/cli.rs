//! The real binary: started with no configuration in an empty folder, used over HTTP,
//! stopped with SIGTERM; the CLI on the same store; logs that never carry a secret.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_ssogate");

fn cli(dir: &Path, args: &[&str]) -> (bool, String, String) {
    cli_with(dir, args, &[])
}

/// [`cli`] with settings in the environment.
fn cli_with(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(args).current_dir(dir).env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
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

fn collect(stream: impl std::io::Read + Send + 'static) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    std::thread::spawn(move || {
        for l in BufReader::new(stream).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(l);
        }
    });
    lines
}

/// Output lines of a child process, as they come.
pub type Lines = Arc<Mutex<Vec<String>>>;

/// The real binary serving from `dir` on port 0 with JSON logs and the given extra
/// environment (nothing else of ours is inherited). Returns the process, its base URL,
/// and its stdout and stderr lines as they come.
pub fn spawn_gateway(dir: &Path, env: &[(&str, &str)]) -> (std::process::Child, String, Lines, Lines) {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        // Port 0: other processes may hold 8080.
        .env("SSOGATE_LISTEN", "127.0.0.1:0")
        .env("SSOGATE_LOG__FORMAT", "json")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let out = collect(child.stdout.take().unwrap());
    let err = collect(child.stderr.take().unwrap());
    let serving: Value = serde_json::from_str(&wait_for(&err, "ssogate is serving")).unwrap();
    let base = format!("http://{}", serving["listen"].as_str().unwrap());
    (child, base, out, err)
}

#[tokio::test]
async fn binary_runs_on_defaults_and_the_cli_shares_its_store() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "cli-test-client-secret-987";
    // Debug logs: the most a log ever says.
    let (mut child, base, out, err) = spawn_gateway(dir.path(), &[("SSOGATE_LOG__LEVEL", "debug")]);
    let token_line = wait_for(&out, "sgt_");
    let token = token_line.trim().to_string();
    assert!(token.starts_with("sgt_"), "{token_line}");

    let http = reqwest::Client::new();
    assert_eq!(http.get(format!("{base}/healthz")).send().await.unwrap().status(), 200);
    assert_eq!(http.get(format!("{base}/readyz")).send().await.unwrap().status(), 200);
    let body = json!({"display_name": "CLI OIDC", "protocol": "oidc", "oidc": {"issuer": "https://idp.example.com", "client_id": "c",
        "client_secret": secret, "authorization_endpoint": "https://idp.example.com/a", "token_endpoint": "https://idp.example.com/t",
        "jwks_uri": "https://idp.example.com/k"}});
    let r = http.post(format!("{base}/api/v1/admin/connections")).bearer_auth(&token).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 201);
    assert!(r.headers().contains_key("x-request-id"));
    let id = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string();

    // First start made the data dir, the SQLite file and a private master key.
    assert!(dir.path().join("data/ssogate.db").exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("certs/master.key")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // SIGTERM: a graceful stop.
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let start = Instant::now();
    let code = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(start.elapsed() < Duration::from_secs(15), "did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(code.success(), "exit status {code}");
    wait_for(&err, "stopped");
    let logs = err.lock().unwrap().join("\n") + &out.lock().unwrap().join("\n");
    assert!(!logs.contains(secret), "a secret reached the logs");
    assert!(logs.contains("request_id"), "log lines carry the request id");
    let log_lines = err.lock().unwrap().join("\n");
    assert!(!log_lines.contains(&token), "the admin token is printed to the terminal, never logged");

    // The CLI works on the same store.
    let (ok, list, e) = cli(dir.path(), &["connections", "list"]);
    assert!(ok, "{e}");
    assert!(list.contains("CLI OIDC") && list.contains(&id), "{list}");
    let (ok, show, _) = cli(dir.path(), &["connections", "show", &id]);
    assert!(ok && show.contains("\"client_secret_set\": true") && !show.contains(secret), "{show}");
    let (ok, exported, _) = cli(dir.path(), &["connections", "export", "--format", "json"]);
    assert!(ok && exported.contains("CLI OIDC") && !exported.contains(secret), "{exported}");
    let (ok, yaml, _) = cli(dir.path(), &["connections", "export"]);
    assert!(ok && yaml.contains("display_name: CLI OIDC"), "{yaml}");
    let (ok, full, _) = cli(dir.path(), &["connections", "export", "--format", "json", "--include-secrets"]);
    assert!(ok && full.contains(secret));
    // TOML: `[[connections]]` tables the configuration file declares as they are.
    let (ok, toml, e) = cli(dir.path(), &["connections", "export", "--format", "toml"]);
    assert!(ok && toml.contains("[[connections]]") && !toml.contains(secret), "{e}{toml}");
    let declared = dir.path().join("declared.toml");
    std::fs::write(&declared, &toml).unwrap();
    let cfg = ssogate::config::Config::load(Some(&declared), std::iter::empty()).unwrap();
    assert_eq!(cfg.declared.connections[0].display_name.as_deref(), Some("CLI OIDC"));
    assert_eq!(cfg.declared.connections[0].id.as_deref(), Some(id.as_str()));
    let (ok, _, e) = cli(dir.path(), &["connections", "export", "--format", "toml", "--include-secrets"]);
    assert!(!ok && e.contains("by reference"), "{e}");

    // Import into a fresh gateway folder, then again (an update, not a duplicate).
    let other = tempfile::tempdir().unwrap();
    let file = other.path().join("export.json");
    std::fs::write(&file, &full).unwrap();
    let (ok, _, e) = cli(other.path(), &["connections", "import", file.to_str().unwrap()]);
    assert!(ok && e.contains("1 created"), "{e}");
    let (ok, _, e) = cli(other.path(), &["connections", "import", file.to_str().unwrap()]);
    assert!(ok && e.contains("1 updated"), "{e}");
    let (_, list, _) = cli(other.path(), &["connections", "list", "--json"]);
    let list: Value = serde_json::from_str(&list).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["id"], id.as_str(), "ids survive an export and import");

    // Create from YAML; a bad file names every problem.
    let yaml_file = other.path().join("new.yaml");
    std::fs::write(&yaml_file, "display_name: From YAML\nprotocol: oidc\noidc:\n  issuer: https://i.example\n  client_id: c\n  client_secret: s\n  authorization_endpoint: https://i.example/a\n  token_endpoint: https://i.example/t\n  jwks_uri: https://i.example/k\n").unwrap();
    let (ok, o, e) = cli(other.path(), &["connections", "create", yaml_file.to_str().unwrap()]);
    assert!(ok && o.contains("created connection"), "{o}{e}");
    std::fs::write(
        &yaml_file,
        "display_name: Broken\nprotocol: oidc\noidc:\n  client_id: c\n  issuer: https://i.example\n  authorization_endpoint: nope\n  discover: true\n",
    )
    .unwrap();
    let (ok, _, e) = cli(other.path(), &["connections", "create", yaml_file.to_str().unwrap()]);
    assert!(!ok && e.contains("discover"), "{e}");

    let (ok, o, _) = cli(dir.path(), &["keys", "generate", "--alg", "RS256"]);
    assert!(ok && o.contains("generated RS256"), "{o}");
    let (ok, o, _) = cli(dir.path(), &["keys", "list"]);
    assert!(ok && o.lines().count() == 2 && o.contains("retired"), "{o}");
}

#[test]
fn config_check_and_help_explain_themselves() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, o, _) = cli(dir.path(), &["config", "check"]);
    assert!(ok && o.contains("127.0.0.1:8080"), "{o}");
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "listen = \"nowhere\"\npublic_url = \"ftp://x\"\ncolour = \"red\"\n[store]\nurl = \"mysql://x\"\n").unwrap();
    let (ok, _, e) = cli(dir.path(), &["--config", bad.to_str().unwrap(), "config", "check"]);
    assert!(!ok);
    for key in ["colour", "listen"] {
        assert!(e.contains(key), "{key} in {e}");
    }
    let (ok, o, _) = cli(dir.path(), &["--help"]);
    assert!(ok);
    for word in ["serve", "connections", "keys", "config", "SSOGATE_"] {
        assert!(o.contains(word), "{word} in --help: {o}");
    }
    let (ok, o, _) = cli(dir.path(), &["connections", "export", "--help"]);
    assert!(ok && o.contains("--include-secrets"), "{o}");
}

/// An import that changes who may sign in through a connection (here: an allow rule)
/// ends the connection's live sessions, as the API does; the gateway and the CLI share
/// the store (the folder) and the state (Redis).
#[tokio::test]
async fn an_import_that_changes_who_may_sign_in_ends_the_connections_sessions() {
    use crate::login::Browser;
    let prefix = crate::replicas::RedisPrefix::new();
    let redis = crate::replicas::redis_url();
    let dir = tempfile::tempdir().unwrap();
    let port = crate::replicas::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let conn = "con_imp";
    let (idp, _idp_dir) = crate::peers::oidc_provider(&json!({
        "clients": [{"client_id": "gateway", "client_secret": "gateway-secret-0123456789",
                     "redirect_uris": [format!("{base}/oidc/{conn}/callback")], "token_endpoint_auth_method": "client_secret_basic"}],
        "accounts": {"alice": {"email": "alice@example.test", "email_verified": true, "name": "Alice"}},
        "pkce_methods": ["S256"]
    }));
    let listen = format!("127.0.0.1:{port}");
    let state = [("SSOGATE_STATE__URL", redis.as_str()), ("SSOGATE_STATE__PREFIX", prefix.0.as_str())];
    let mut env = vec![("SSOGATE_LISTEN", listen.as_str()), ("SSOGATE_PUBLIC_URL", base.as_str()), ("SSOGATE_ADMIN_TOKEN", crate::support::TOKEN)];
    env.extend(state);
    let (mut child, _, _, _) = spawn_gateway(dir.path(), &env);
    let body = json!({"id": conn, "display_name": "Imported IdP", "protocol": "oidc", "create_users": true,
        "oidc": {"issuer": idp.ready["issuer"], "client_id": "gateway", "client_secret": "gateway-secret-0123456789"}});
    let (st, c) = crate::support::admin_call(&reqwest::Client::new(), &base, reqwest::Method::POST, "/connections", Some(body)).await;
    assert_eq!(st, reqwest::StatusCode::CREATED, "{c}");
    let b = Browser::new();
    let (resp, landed) = b.visit(&format!("{base}/login/{conn}?login_hint=alice")).await;
    assert_eq!(resp.status(), reqwest::StatusCode::OK, "{landed}");
    let auth = || async { b.http.get(format!("{base}/auth")).send().await.unwrap().status() };
    assert_eq!(auth().await, reqwest::StatusCode::OK);

    // Exported, given an allow rule, imported: an update that changes who may sign in.
    let (ok, exported, e) = cli_with(dir.path(), &["connections", "export", "--format", "json"], &state);
    assert!(ok, "{e}");
    let mut list: Value = serde_json::from_str(&exported).unwrap();
    list[0]["allow"] = json!([{"claim": "email", "values": ["bob@example.test"]}]);
    let file = dir.path().join("import.json");
    std::fs::write(&file, list.to_string()).unwrap();
    let (ok, _, e) = cli_with(dir.path(), &["connections", "import", file.to_str().unwrap()], &state);
    assert!(ok && e.contains("1 updated"), "{e}");
    let start = Instant::now();
    while auth().await != reqwest::StatusCode::UNAUTHORIZED {
        assert!(start.elapsed() < Duration::from_secs(5), "the session admitted under the old rule did not end");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
}
