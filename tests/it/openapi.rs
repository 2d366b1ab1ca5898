//! The admin API's OpenAPI document is valid and matches the server: schemathesis
//! (PyPI) generates requests from the document against the real binary and checks
//! every answer against it (tests/peers/openapi/check.sh).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

const TOKEN: &str = "test-admin-token-0123456789";

#[test]
fn schemathesis_finds_the_document_valid_and_the_server_conforming() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ssogate"))
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("SSOGATE_LISTEN", "127.0.0.1:0")
        .env("SSOGATE_ADMIN_TOKEN", TOKEN)
        .env("SSOGATE_LOG__FORMAT", "json")
        .env("SSOGATE_LOG__LEVEL", "warn,ssogate=info")
        // Generated bodies reuse the presets' real issuers: a dead proxy keeps every
        // outbound fetch on this machine, failing fast.
        .env("HTTP_PROXY", "http://127.0.0.1:9")
        .env("HTTPS_PROXY", "http://127.0.0.1:9")
        .env("NO_PROXY", "127.0.0.1,localhost")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let base = loop {
        let line = lines.next().expect("the gateway logs that it serves").unwrap();
        if line.contains("ssogate is serving") {
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            break format!("http://{}", v["listen"].as_str().unwrap());
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/openapi/check.sh");
    let out = Command::new("bash").arg(script).arg(&base).arg(TOKEN).output().unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "schemathesis found problems:\n{text}");
    assert!(text.contains("OK"), "{text}");
}
