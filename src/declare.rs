//! Declarative configuration: connections, groups and downstream clients declared in the
//! configuration file, reconciled into the store at start and on SIGHUP, so a Git
//! repository (a Helm values file, a ConfigMap) can hold them.
//!
//! [`resolve`] reads the declarations when the file is loaded: every secret by
//! reference (`client_secret_file`, `client_secret_env`, ...; a connection's secret is
//! never inline), every problem reported with its key path. [`reconcile`] then makes the
//! store match: what is declared is created, or changed to exactly what the file says
//! (starting from the provider's preset, as a create does), and marked
//! `managed_by: "config"`; the API and the CLI refuse to change or delete it (409
//! naming the file), so GitOps and the console never fight over it. An entry with the
//! same key made earlier through the API is taken over.
//!
//! What leaves the file (decision):
//! - a connection is turned off (it leaves the login page, its sessions end) and handed
//!   back to the API (`managed_by` empty), where an admin can delete it or turn it on.
//!   Its links to users and the memberships it granted stay, so putting it back in the
//!   file restores it as it was; a slip in the file never deletes users' links;
//! - a group is handed back to the API, with its members;
//! - a client is deleted (it holds nothing but its secret, which lives in the file).
//!
//! Several replicas each reconcile at their start and on their SIGHUP; they agree once
//! they run the same file.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use serde_json::json;

use crate::app::AppState;
use crate::audit::AuditEntry;
use crate::config::{Config, GroupConfig, Problem};
use crate::connection::{ConnectionError, ConnectionPatch};
use crate::secret::Secret;

/// The `managed_by` of what the file declares.
pub const MANAGED_BY: &str = "config";
/// The actor of the reconciler's changes in the audit log.
pub const ACTOR: &str = "config";

/// What the file declares, secrets read.
#[derive(Clone, Default)]
pub struct Declared {
    /// Connections, each with its `id`.
    pub connections: Vec<ConnectionPatch>,
    /// Groups, by name.
    pub groups: Vec<GroupConfig>,
    /// Downstream clients.
    pub clients: Vec<DeclaredClient>,
}

impl std::fmt::Debug for Declared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Ids only: the patches hold secrets.
        let ids: Vec<&str> = self.connections.iter().filter_map(|c| c.id.as_deref()).collect();
        let groups: Vec<&str> = self.groups.iter().map(|g| g.name.as_str()).collect();
        let clients: Vec<&str> = self.clients.iter().map(|c| c.client_id.as_str()).collect();
        f.debug_struct("Declared").field("connections", &ids).field("groups", &groups).field("clients", &clients).finish()
    }
}

/// A downstream client as declared, its secret read.
#[derive(Debug, Clone)]
pub struct DeclaredClient {
    /// OAuth client id.
    pub client_id: String,
    /// A name for admins.
    pub name: String,
    /// The secret.
    pub secret: Secret,
    /// Exact redirect URIs.
    pub redirect_uris: Vec<String>,
    /// Per-client settings.
    pub settings: crate::store::ClientSettings,
}

/// The sentence the API answers (409) when asked to change what the file declares.
pub fn read_only(kind: &str, id: &str, file: Option<&Path>) -> String {
    let file = file.map_or_else(|| "the configuration file".to_string(), |f| format!("the configuration file {}", f.display()));
    format!("{kind} {id} is declared in {file} (managed_by: config): change it there and reload the gateway (SIGHUP); the API does not change or delete it")
}

/// A secret given by reference: the file's content (trailing line breaks dropped) or
/// the environment variable's value.
fn read_secret(key: &str, file: Option<&str>, var: Option<&str>, env: &HashMap<String, String>, problems: &mut Vec<Problem>) -> Option<String> {
    let mut bad = |k: &str, m: String| problems.push(Problem { key: format!("{key}{k}"), message: m });
    match (file, var) {
        (Some(_), Some(_)) => {
            bad("_file", "give the secret by one reference only: a file or an environment variable".into());
            None
        }
        (Some(path), None) => match std::fs::read_to_string(path) {
            Ok(s) if s.trim_end_matches(['\r', '\n']).is_empty() => {
                bad("_file", format!("{path} is empty"));
                None
            }
            Ok(s) => Some(s.trim_end_matches(['\r', '\n']).to_string()),
            Err(e) => {
                bad("_file", format!("could not read {path}: {e}"));
                None
            }
        },
        (None, Some(name)) => match env.get(name) {
            Some(v) if !v.is_empty() => Some(v.clone()),
            _ => {
                bad("_env", format!("the environment variable {name} is not set"));
                None
            }
        },
        (None, None) => None,
    }
}

/// A string field of a TOML table, removed from it.
fn take_str(t: &mut toml::Table, key: &str, at: &str, problems: &mut Vec<Problem>) -> Option<String> {
    match t.remove(key) {
        None => None,
        Some(toml::Value::String(s)) => Some(s),
        Some(_) => {
            problems.push(Problem { key: format!("{at}.{key}"), message: "must be a string".into() });
            None
        }
    }
}

/// One `[[connections]]` table to the patch it declares, its secrets read.
fn connection(i: usize, table: &toml::Table, env: &HashMap<String, String>, problems: &mut Vec<Problem>) -> Option<ConnectionPatch> {
    let at = format!("connections[{i}]");
    let before = problems.len();
    let mut t = table.clone();
    for (section, secret, refs) in [("oidc", "client_secret", "client_secret"), ("saml", "sp_private_key", "sp_private_key")] {
        let Some(toml::Value::Table(s)) = t.get_mut(section) else { continue };
        let key = format!("{at}.{section}.{secret}");
        if s.contains_key(secret) {
            problems.push(Problem {
                key: key.clone(),
                message: format!(
                    "a secret is not written in the configuration file: give {refs}_file (a mounted secret) or {refs}_env (an environment variable)"
                ),
            });
            s.remove(secret);
        }
        let file = take_str(s, &format!("{refs}_file"), &format!("{at}.{section}"), problems);
        let var = take_str(s, &format!("{refs}_env"), &format!("{at}.{section}"), problems);
        if let Some(value) = read_secret(&key, file.as_deref(), var.as_deref(), env, problems) {
            s.insert(secret.into(), toml::Value::String(value));
        }
        if section == "saml" {
            // Not secret, but long: from files too.
            for (field, target) in [("idp_metadata_file", "idp_metadata_xml"), ("sp_certificate_file", "sp_certificate")] {
                if let Some(path) = take_str(s, field, &format!("{at}.saml"), problems) {
                    match std::fs::read_to_string(&path) {
                        Ok(text) => {
                            s.insert(target.into(), toml::Value::String(text));
                        }
                        Err(e) => problems.push(Problem { key: format!("{at}.saml.{field}"), message: format!("could not read {path}: {e}") }),
                    }
                }
            }
        }
    }
    let value = match serde_json::to_value(toml::Value::Table(t)) {
        Ok(v) => v,
        Err(e) => {
            problems.push(Problem { key: at, message: format!("cannot be read: {e}") });
            return None;
        }
    };
    let patch: ConnectionPatch = match serde_path_to_error::deserialize(value) {
        Ok(p) => p,
        Err(e) => {
            problems.push(Problem { key: format!("{at}.{}", e.path()), message: e.inner().to_string() });
            return None;
        }
    };
    let mut bad = |k: &str, m: &str| problems.push(Problem { key: format!("{at}.{k}"), message: m.into() });
    match patch.id.as_deref() {
        None => bad("id", "is required: it is the key the connection is kept by (and in its callback URL)"),
        Some(id) if !crate::id::is_wellformed(id) => bad("id", "may hold only letters, digits, '-' and '_' (at most 64)"),
        Some(_) => {}
    }
    if patch.protocol.is_none() {
        bad("protocol", "is required: oidc or saml");
    }
    if patch.display_name.is_none() {
        bad("display_name", "is required");
    }
    if patch.version.is_some() {
        bad("version", "is for API updates only");
    }
    (problems.len() == before).then_some(patch)
}

/// Reads the declarations of `config`, their secrets from files and from `env`. Every
/// problem is returned with its key path; a declaration with one is left out.
pub fn resolve(config: &Config, env: &HashMap<String, String>) -> (Declared, Vec<Problem>) {
    let mut problems = Vec::new();
    let mut out = Declared::default();
    let mut ids = BTreeSet::new();
    for (i, c) in config.connections.iter().enumerate() {
        if let Some(patch) = connection(i, &c.0, env, &mut problems) {
            if let Some(id) = &patch.id {
                if !ids.insert(id.clone()) {
                    problems.push(Problem { key: format!("connections[{i}].id"), message: format!("{id} is declared twice") });
                    continue;
                }
            }
            out.connections.push(patch);
        }
    }
    let mut names = BTreeSet::new();
    for (i, g) in config.groups.iter().enumerate() {
        let name = g.name.trim();
        let key = crate::store::name_key(name);
        if name.is_empty() || name.len() > 128 || name.contains(',') || name.chars().any(char::is_control) {
            problems.push(Problem { key: format!("groups[{i}].name"), message: "must be 1 to 128 characters, without commas or control characters".into() });
        } else if crate::store::Builtin::ALL.iter().any(|(_, _, builtin, _)| crate::store::same_name(builtin, name)) {
            problems
                .push(Problem { key: format!("groups[{i}].name"), message: format!("{name} is a built-in group: it exists already and cannot be declared") });
        } else if !names.insert(key) {
            problems.push(Problem { key: format!("groups[{i}].name"), message: format!("{name} is declared twice") });
        } else {
            out.groups.push(GroupConfig { name: name.to_string(), description: g.description.clone() });
        }
    }
    let mut client_ids = BTreeSet::new();
    for (i, c) in config.clients.iter().enumerate() {
        let key = format!("clients[{i}].client_secret");
        let before = problems.len();
        let by_ref = read_secret(&key, c.client_secret_file.as_deref().and_then(Path::to_str), c.client_secret_env.as_deref(), env, &mut problems);
        let secret = match (c.client_secret.as_ref(), by_ref) {
            (Some(_), Some(_)) => {
                problems.push(Problem { key: key.clone(), message: "give the secret once: inline, or by client_secret_file or client_secret_env".into() });
                None
            }
            (Some(s), None) => Some(s.expose().to_string()),
            (None, Some(s)) => Some(s),
            (None, None) if problems.len() == before => {
                problems.push(Problem { key: key.clone(), message: "is required: client_secret_file, client_secret_env, or client_secret".into() });
                None
            }
            (None, None) => None,
        };
        if secret.as_ref().is_some_and(|s| s.len() < 16) {
            problems.push(Problem { key, message: "must be at least 16 characters".into() });
            continue;
        }
        if !crate::id::is_wellformed(&c.client_id) {
            problems.push(Problem { key: format!("clients[{i}].client_id"), message: "may hold only letters, digits, '-' and '_' (at most 64)".into() });
            continue;
        }
        if !client_ids.insert(c.client_id.clone()) {
            problems.push(Problem { key: format!("clients[{i}].client_id"), message: format!("{} is declared twice", c.client_id) });
            continue;
        }
        if let Some(secret) = secret {
            out.clients.push(DeclaredClient {
                client_id: c.client_id.clone(),
                name: c.name.clone(),
                secret: Secret::new(secret),
                redirect_uris: c.redirect_uris.clone(),
                settings: c.settings.clone(),
            });
        }
    }
    (out, problems)
}

/// What a reconciliation did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Report {
    /// One line per change (`connection con_x created`).
    pub changes: Vec<String>,
    /// One line per declaration that could not be applied, with why; it keeps what the
    /// store had.
    pub failures: Vec<String>,
}

/// Makes the store match `declared` (see the module's text). Failures of one entry
/// (an IdP whose discovery does not answer, a display name another connection has) are
/// reported and leave that entry as it was; the rest is applied.
pub async fn reconcile(app: &AppState, declared: &Declared) -> Report {
    let mut report = Report::default();
    connections(app, declared, &mut report).await;
    groups(app, declared, &mut report).await;
    clients(app, declared, &mut report).await;
    for c in &report.changes {
        tracing::info!(change = %c, "configuration applied");
    }
    for f in &report.failures {
        tracing::error!(failure = %f, "configuration not applied");
    }
    app.metrics.config_reconciled(report.failures.is_empty());
    report
}

async fn end_sessions(app: &AppState, id: &str, report: &mut Report) {
    if let Err(e) = app.sessions.remove_connection(id).await {
        report.failures.push(format!("connection {id}: turned off or changed who may sign in, but its sessions could not be ended: {e}"));
    }
}

async fn connections(app: &AppState, declared: &Declared, report: &mut Report) {
    use crate::connection::Declaration;
    for patch in &declared.connections {
        let id = patch.id.clone().unwrap_or_default();
        let mut declared = app.registry.declare(patch).await;
        // Another replica applying the same file may have written it in between: once more.
        if matches!(declared, Err(ConnectionError::Conflict(_) | ConnectionError::Stale { .. })) {
            declared = app.registry.declare(patch).await;
        }
        match declared {
            Ok(Declaration::Created(c)) => report.changes.push(format!("connection {} created", c.id)),
            Ok(Declaration::Updated { connection, was_active, admission_changed }) => {
                report.changes.push(format!("connection {} updated", connection.id));
                if (was_active && !connection.active) || admission_changed {
                    end_sessions(app, &connection.id, report).await;
                }
            }
            Ok(Declaration::Unchanged) => {}
            Err(ConnectionError::Invalid(fields)) => {
                let why: Vec<String> = fields.iter().map(|f| format!("{}: {}", f.field, f.message)).collect();
                report.failures.push(format!("connection {id}: {}", why.join("; ")));
            }
            Err(e) => report.failures.push(format!("connection {id}: {e}")),
        }
    }
    let stored = match app.registry.list(crate::store::ConnectionSort::Id, false).await {
        Ok(l) => l,
        Err(e) => {
            report.failures.push(format!("connections: could not list them: {e}"));
            return;
        }
    };
    let wanted: BTreeSet<&str> = declared.connections.iter().filter_map(|p| p.id.as_deref()).collect();
    for c in stored.iter().filter(|c| c.managed_by.as_deref() == Some(MANAGED_BY) && !wanted.contains(c.id.as_str())) {
        match app.registry.release(&c.id).await {
            Ok(_) => {
                report.changes.push(format!("connection {} left the configuration: turned off and handed to the API", c.id));
                end_sessions(app, &c.id, report).await;
            }
            Err(e) => report.failures.push(format!("connection {}: could not be released: {e}", c.id)),
        }
    }
}

async fn groups(app: &AppState, declared: &Declared, report: &mut Report) {
    match app.directory.declare_groups(&declared.groups, ACTOR).await {
        Ok(changes) => report.changes.extend(changes),
        Err(e) => report.failures.push(format!("groups: {e}")),
    }
}

async fn clients(app: &AppState, declared: &Declared, report: &mut Report) {
    let stored = match app.store.client_list().await {
        Ok(l) => l,
        Err(e) => {
            report.failures.push(format!("clients: could not list them: {e}"));
            return;
        }
    };
    let now = app.clock.now();
    for d in &declared.clients {
        let secret_sha256 = crate::op::clients::secret_hash(d.secret.expose());
        let want = crate::store::Client {
            client_id: d.client_id.clone(),
            name: d.name.clone(),
            secret_sha256,
            redirect_uris: d.redirect_uris.clone(),
            created_at: now,
            updated_at: now,
            managed_by: Some(MANAGED_BY.into()),
            settings: d.settings.clone(),
        };
        if let Err(e) = crate::op::clients::check_redirect_uris(&want.redirect_uris).and_then(|()| crate::op::clients::check_settings(&want.settings)) {
            let why: Vec<String> = e.fields.iter().map(|f| format!("{}: {}", f.field, f.message)).collect();
            report.failures.push(format!("client {}: {}", d.client_id, why.join("; ")));
            continue;
        }
        let written = match stored.iter().find(|c| c.client_id == d.client_id) {
            None => {
                let audit =
                    AuditEntry::new(now, ACTOR, "client.create", &want.client_id, json!({"redirect_uris": want.redirect_uris, "managed_by": MANAGED_BY}));
                app.store.client_insert(&want, &audit).await.map(|()| format!("client {} created", want.client_id))
            }
            Some(c)
                if c.name == want.name
                    && c.secret_sha256 == want.secret_sha256
                    && c.redirect_uris == want.redirect_uris
                    && c.managed_by == want.managed_by
                    && c.settings == want.settings =>
            {
                continue;
            }
            Some(c) => {
                let rotated = c.secret_sha256 != want.secret_sha256;
                let changed = crate::store::Client { created_at: c.created_at, updated_at: now.max(c.updated_at + 1), ..want.clone() };
                let audit = AuditEntry::new(now, ACTOR, "client.update", &want.client_id, json!({"secret_rotated": rotated, "managed_by": MANAGED_BY}));
                app.store.client_update(&changed, &audit).await.map(|()| format!("client {} updated", want.client_id))
            }
        };
        match written {
            Ok(line) => report.changes.push(line),
            Err(e) => report.failures.push(format!("client {}: {e}", d.client_id)),
        }
    }
    let wanted: BTreeSet<&str> = declared.clients.iter().map(|c| c.client_id.as_str()).collect();
    for c in stored.iter().filter(|c| c.managed_by.as_deref() == Some(MANAGED_BY) && !wanted.contains(c.client_id.as_str())) {
        let audit = AuditEntry::new(now, ACTOR, "client.delete", &c.client_id, json!({"why": "no longer in the configuration file"}));
        match app.store.client_delete(&c.client_id, &audit).await {
            Ok(()) => report.changes.push(format!("client {} left the configuration: deleted", c.client_id)),
            Err(e) => report.failures.push(format!("client {}: could not be deleted: {e}", c.client_id)),
        }
    }
}

/// Loads the configuration file again and reconciles what it declares (SIGHUP). Only
/// the declarations are applied; every other setting needs a restart. A file with a
/// problem changes nothing (the problems are logged).
pub async fn reload(app: &AppState, env: impl IntoIterator<Item = (String, String)>) -> Result<Report, crate::config::ConfigError> {
    let fresh = Config::load(app.config.file.as_deref(), env);
    match fresh {
        Ok(config) => Ok(reconcile(app, &config.declared).await),
        Err(e) => {
            tracing::error!(error = %e, "configuration reload refused: nothing changed");
            app.metrics.config_reconciled(false);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(toml: &str, env: &[(&str, &str)]) -> Result<Config, crate::config::ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, toml).unwrap();
        Config::load(Some(&f), env.iter().map(|(a, b)| (a.to_string(), b.to_string())))
    }

    #[test]
    fn secrets_come_by_reference_and_never_print() {
        let dir = tempfile::tempdir().unwrap();
        let secret_file = dir.path().join("okta");
        std::fs::write(&secret_file, "from-a-file-0123456789\n").unwrap();
        let toml = format!(
            r#"
[[connections]]
id = "corp"
display_name = "Corp"
protocol = "oidc"
[connections.oidc]
issuer = "https://idp.example.com"
client_id = "gw"
client_secret_file = "{}"
authorization_endpoint = "https://idp.example.com/a"
token_endpoint = "https://idp.example.com/t"
jwks_uri = "https://idp.example.com/k"

[[clients]]
client_id = "app"
client_secret_env = "APP_SECRET"
redirect_uris = ["https://app.example.com/cb"]

[[groups]]
name = "Engineers"
description = "People who build"
"#,
            secret_file.display()
        );
        let c = load(&toml, &[("APP_SECRET", "from-the-environment-01")]).unwrap();
        let d = &c.declared;
        assert_eq!(d.connections[0].oidc.as_ref().unwrap().client_secret.as_deref(), Some("from-a-file-0123456789"), "trailing newline dropped");
        assert_eq!(d.clients[0].secret.expose(), "from-the-environment-01");
        assert_eq!(d.groups[0].name, "Engineers");
        let shown = format!("{c:?}");
        assert!(!shown.contains("from-a-file") && !shown.contains("from-the-environment"), "{shown}");
        assert!(shown.contains("corp"), "ids are shown: {shown}");
        assert!(c.file.is_some());
    }

    #[test]
    fn every_declaration_problem_is_named_by_its_key() {
        let toml = r#"
[[connections]]
display_name = "No id"
protocol = "oidc"
[connections.oidc]
client_secret = "inline-is-refused-0123"

[[connections]]
id = "dup"
display_name = "A"
protocol = "saml"
bogus = 1

[[connections]]
id = "dup2"
display_name = "B"
protocol = "oidc"

[[connections]]
id = "dup2"
display_name = "C"
protocol = "oidc"

[[connections]]
id = "env"
display_name = "D"
protocol = "oidc"
[connections.oidc]
client_secret_env = "NOT_SET"

[[clients]]
client_id = "short"
client_secret = "short"
redirect_uris = ["https://a.example/cb"]

[[clients]]
client_id = "none"
redirect_uris = ["https://a.example/cb"]

[[clients]]
client_id = "file"
client_secret_file = "/nonexistent/secret"
redirect_uris = ["https://a.example/cb"]

[[groups]]
name = "Admins"

[[groups]]
name = "eng"
[[groups]]
name = "ENG"
"#;
        let err = load(toml, &[]).unwrap_err().to_string();
        for needle in [
            "connections[0].id: is required",
            "connections[0].oidc.client_secret: a secret is not written in the configuration file",
            "connections[1].bogus",
            "connections[4].oidc.client_secret_env: the environment variable NOT_SET is not set",
            "connections[3].id: dup2 is declared twice",
            "clients[0].client_secret: must be at least 16 characters",
            "clients[1].client_secret: is required",
            "clients[2].client_secret_file: could not read /nonexistent/secret",
            "groups[0].name: Admins is a built-in group",
            "groups[2].name: ENG is declared twice",
        ] {
            assert!(err.contains(needle), "{needle} missing from:\n{err}");
        }
        assert!(!err.contains("inline-is-refused"), "the refused secret is not echoed: {err}");
    }
}
