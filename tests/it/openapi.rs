//! The admin API's OpenAPI document is valid and matches the server: schemathesis
//! (PyPI) generates requests from the document against the real binary and checks
//! every answer against it (tests/peers/openapi/check.sh).

use std::process::Command;

const TOKEN: &str = "test-admin-token-0123456789";

#[test]
fn schemathesis_finds_the_document_valid_and_the_server_conforming() {
    let dir = tempfile::tempdir().unwrap();
    // Generated bodies reuse the presets' real issuers: a dead proxy keeps every
    // outbound fetch on this machine, failing fast.
    let env = [
        ("SSOGATE_ADMIN_TOKEN", TOKEN),
        ("SSOGATE_LOG__LEVEL", "warn,ssogate=info"),
        ("HTTP_PROXY", "http://127.0.0.1:9"),
        ("HTTPS_PROXY", "http://127.0.0.1:9"),
        ("NO_PROXY", "127.0.0.1,localhost"),
    ];
    let (mut child, base, _, _) = crate::cli::spawn_gateway(dir.path(), &env);
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/openapi/check.sh");
    let out = Command::new("bash").arg(script).arg(&base).arg(TOKEN).output().unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "schemathesis found problems:\n{text}");
    assert!(text.contains("OK"), "{text}");
}
