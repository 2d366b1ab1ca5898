//! Test Provider: the dry run of a connection, saved or not. An admin asks for a test of
//! the settings on screen (`POST /api/v1/admin/connection-tests`, or the console); the
//! gateway keeps the drafted connection for the flow's lifetime and hands back a start
//! URL. The browser that opens it first owns the test: it goes to the IdP like a real
//! login, and the reply runs exactly the code a real login runs — the upstream seam's
//! `finish`, then the [`pipeline`](super::pipeline) in report-only mode — and stops
//! there. The result page shows every check, the claims as received (secrets
//! redacted), the mapped identity, what the directory would do, and warnings.
//!
//! It creates nothing: no user, link, membership, session or cookie that logs anyone
//! in; one `connection.test` audit record. A test flow expires with the flow TTL, is
//! bound to the browser that started it, and can never be turned into a login (the
//! reply handler sends a test flow here, never to a session).

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::{LoginError, Step};
use super::pipeline::{self, Outcome, Report, UserOutcome};
use crate::app::AppState;
use crate::connection::Connection;
use crate::upstream::{self, Diagnostics, FlowState, Outbound, Purpose, Reply, UpstreamError};
use crate::web::browser;
use crate::web::page::esc;
use crate::web::ApiPath;

/// A test in progress: the connection as drafted (secrets included: it lives in the
/// state store, sealed there when that is Redis, for the flow's lifetime) and who asked.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TestRun {
    /// The test's id (also its capability: 32 random bytes).
    pub id: String,
    /// The connection under test.
    pub connection: Connection,
    /// Who started it (for the audit record and "your own account" warning).
    pub actor: String,
    /// The admin's user id, when the admin is a user of the directory.
    pub actor_user_id: Option<String>,
    /// When it was started.
    pub started_at: crate::clock::Millis,
}

/// What a test found.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TestResult {
    /// The test's id.
    pub test_id: String,
    /// The connection tested.
    pub connection_id: String,
    /// Its name.
    pub connection_name: String,
    /// Whether the round trip verified and a login would go on (refused by the
    /// directory counts as a result, not a failure: `user.action` says `refuse`).
    pub ok: bool,
    /// Every check, in order, with what it found.
    pub steps: Vec<upstream::Check>,
    /// What failed, in words, when something did.
    pub error: Option<String>,
    /// What to change, when something failed.
    pub hint: Option<String>,
    /// The claims (OIDC) or attributes and NameID (SAML) as received, secrets redacted.
    pub claims: Option<Value>,
    /// What a real login would have done.
    pub report: Option<Value>,
    /// Things an admin can act on.
    pub warnings: Vec<String>,
    /// When it finished.
    pub finished_at: crate::clock::Millis,
}

fn run_key(id: &str) -> String {
    format!("test:{id}")
}

fn ttl_ms(app: &AppState) -> i64 {
    (app.config.login.flow_ttl_seconds * 1000) as i64
}

/// Keeps a test of `connection` and returns its id; its start URL is `/test/{id}/start`.
pub async fn create(app: &AppState, connection: Connection, actor: &str, actor_user_id: Option<String>) -> Result<String, crate::state::StateError> {
    let id = crate::id::token(32);
    let run = TestRun { id: id.clone(), connection, actor: actor.to_string(), actor_user_id, started_at: app.clock.now() };
    let value = serde_json::to_string(&run).map_err(|e| crate::state::StateError(e.to_string()))?;
    app.ephemeral.put_new(&run_key(&id), &value, ttl_ms(app)).await?;
    // The connection id's pending test: a reply for a connection that is not saved (or
    // not active) yet is screened with it.
    let _ = app.ephemeral.take(&format!("test-of:{}", run.connection.id)).await?;
    app.ephemeral.put_new(&format!("test-of:{}", run.connection.id), &id, ttl_ms(app)).await?;
    Ok(id)
}

async fn run(app: &AppState, id: &str) -> Result<Option<TestRun>, crate::state::StateError> {
    if !crate::id::is_wellformed(id) {
        return Ok(None);
    }
    Ok(app.ephemeral.get(&run_key(id)).await?.and_then(|v| serde_json::from_str(&v).ok()))
}

/// The connection of the test pending for connection `id`, if one is.
pub async fn pending_connection(app: &AppState, id: &str) -> Option<Connection> {
    let test_id = app.ephemeral.get(&format!("test-of:{id}")).await.ok().flatten()?;
    run(app, &test_id).await.ok().flatten().map(|r| r.connection).filter(|c| c.id == id)
}

/// `GET /test/{id}/start`: the first browser to open it owns the test and goes to the IdP.
/// `?login_hint=` passes on to the IdP (who to test as).
pub async fn start(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
    axum::extract::Query(q): axum::extract::Query<super::ReturnTo>,
    client: crate::limit::Client,
    headers: HeaderMap,
) -> Result<Response, LoginError> {
    if let Some(why) = crate::limit::too_long("login_hint", q.login_hint.as_deref(), crate::limit::LOGIN_HINT_MAX) {
        return Err(LoginError::bad_request(Step::Start, why));
    }
    let expired = || LoginError::new(StatusCode::NOT_FOUND, Step::Start, "this test has expired or does not exist; start a new test from the console");
    let test = run(&app, &id).await.map_err(|e| LoginError::state_unavailable(Step::Start, &e))?.ok_or_else(expired)?;
    let flow_id = browser::flow_id(&app, &headers);
    let binding = browser::binding(&flow_id);
    // Single use: the first browser holds it.
    match app.ephemeral.put_new(&format!("test-browser:{id}"), &binding, ttl_ms(&app)).await {
        Ok(true) => {}
        Ok(false) => return Err(LoginError::forbidden(Step::Start, "this test was already started; start a new test from the console")),
        Err(e) => return Err(LoginError::state_unavailable(Step::Start, &e)),
    }
    let conn = &test.connection;
    let base = app.config.public_base();
    let start = upstream::Start {
        public_base: &base,
        browser: binding,
        return_to: None,
        login_hint: q.login_hint.as_deref().filter(|h| !h.is_empty() && !h.chars().any(char::is_control)),
        now: app.clock.now(),
        purpose: Purpose::Test { test_id: id.clone() },
        force_authn: false,
    };
    let begun = match upstream::begin(conn, start) {
        Ok(b) => b,
        Err(e) => {
            let mut report = Diagnostics::default();
            let _ = report.fail::<()>("authorization request", e.clone());
            save(&app, &test, failed(&test, &report, &e, app.clock.now())).await;
            return Ok(Redirect::to(&format!("/test/{id}")).into_response());
        }
    };
    super::keep_flow(&app, &client, &begun.key, &begun.flow).await.map_err(|e| e.connection(&conn.id))?;
    let mut resp = match begun.outbound {
        Outbound::Redirect(url) => Redirect::to(&url).into_response(),
        Outbound::Post { url, fields } => super::post_form(&url, &fields),
    };
    resp.headers_mut().append(header::SET_COOKIE, browser::flow_cookie(&app, &flow_id, app.config.login.flow_ttl_seconds));
    Ok(resp)
}

/// The reply to a test flow: the run's connection, the seam's `finish`, the pipeline in
/// report-only mode; the result kept and shown. Never a session.
pub async fn finish(app: &AppState, flow: &FlowState, test_id: &str, reply: Reply, mut report: Diagnostics) -> Result<Response, LoginError> {
    let test = run(app, test_id)
        .await
        .map_err(|e| LoginError::state_unavailable(Step::Flow, &e))?
        .filter(|t| t.connection.id == flow.connection_id)
        .ok_or_else(|| LoginError::bad_request(Step::Flow, "this test has expired; start a new test from the console"))?;
    let conn = &test.connection;
    let base = app.config.public_base();
    let cx = super::upstream_context(app, &base);
    let result = match upstream::finish(conn, Some(flow), reply, &cx, &mut report).await {
        Err(e) => failed(&test, &report, &e, app.clock.now()),
        Ok(verified) => {
            let claims = redacted(&verified.claims);
            let mut warnings = claim_warnings(conn, &verified.claims, &verified.identity);
            match pipeline::run(app, conn, verified, pipeline::Mode::DryRun).await {
                Ok(Outcome::Report(r)) => {
                    warnings.extend(report_warnings(&test, &r));
                    TestResult {
                        test_id: test.id.clone(),
                        connection_id: conn.id.clone(),
                        connection_name: conn.display_name.clone(),
                        ok: true,
                        steps: report.steps.clone(),
                        error: None,
                        hint: None,
                        claims: Some(claims),
                        report: serde_json::to_value(&*r).ok(),
                        warnings,
                        finished_at: app.clock.now(),
                    }
                }
                Ok(Outcome::Session(_)) => return Err(LoginError::forbidden(Step::Session, "a test never starts a session")),
                Err(e) => TestResult {
                    test_id: test.id.clone(),
                    connection_id: conn.id.clone(),
                    connection_name: conn.display_name.clone(),
                    ok: false,
                    steps: report.steps.clone(),
                    error: Some(e.message().to_string()),
                    hint: None,
                    claims: Some(claims),
                    report: None,
                    warnings,
                    finished_at: app.clock.now(),
                },
            }
        }
    };
    save(app, &test, result).await;
    // The flow cookie stays: it is what shows this browser the result.
    Ok(Redirect::to(&format!("/test/{test_id}")).into_response())
}

fn failed(test: &TestRun, report: &Diagnostics, e: &UpstreamError, now: crate::clock::Millis) -> TestResult {
    let step = report.failed_step().unwrap_or("upstream").to_string();
    TestResult {
        test_id: test.id.clone(),
        connection_id: test.connection.id.clone(),
        connection_name: test.connection.display_name.clone(),
        ok: false,
        steps: report.steps.clone(),
        error: Some(format!("{step}: {e}")),
        hint: Some(hint(&test.connection, &step, &e.to_string())),
        claims: None,
        report: None,
        warnings: vec![],
        finished_at: now,
    }
}

/// What to change, for the step that failed and what it said.
fn hint(conn: &Connection, step: &str, what: &str) -> String {
    let w = what.to_ascii_lowercase();
    if w.contains("invalid_client") || w.contains("unauthorized") || w.contains("http 401") {
        return "The IdP did not accept the client credentials: check the client id and client secret, and the token endpoint authentication method.".into();
    }
    if w.contains("redirect_uri") {
        return format!("Register the callback URL at the IdP exactly as shown for this connection ({}).", conn.id);
    }
    if w.contains("could not be reached") || w.contains("timed out") || w.contains("connection failed") {
        return "The gateway could not reach the IdP: check the URL, DNS and TLS from the gateway's network.".into();
    }
    if w.contains("clock") || w.contains("expired") || w.contains("future") {
        return "The times in the reply are outside the allowed window: check the clocks of the gateway and the IdP (login.clock_skew_seconds).".into();
    }
    match step {
        "ID token signature" => "The ID token's signature did not verify: check the JWKS URI and the allowed algorithms (fetch from issuer again).".into(),
        "signature and conditions" if w.contains("signature") || w.contains("certificate") => {
            "The SAML signature did not verify with the pinned certificates: import the IdP's metadata again.".into()
        }
        "signature and conditions" => {
            "The SAML response did not match this connection: register the ACS URL and SP entity id shown for it at the IdP, and check the IdP's entity id."
                .into()
        }
        "authorization response" => "The IdP refused the sign-in: its error is shown above; check the app's assignment and consent at the IdP.".into(),
        "attribute mapping" | "claim mapping" => "The user id claim is missing: map claims.user_id to a claim the IdP sends (see the claims above).".into(),
        _ => "Check the connection's settings against the IdP's application, then test again.".into(),
    }
}

/// The claims as received, with the values of anything named like a token or secret hidden.
fn redacted(claims: &Value) -> Value {
    match claims {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| {
                    let lk = k.to_ascii_lowercase();
                    let secret = ["token", "secret", "password", "assertion"].iter().any(|s| lk.contains(s)) && !lk.ends_with("_hash");
                    (k.clone(), if secret { Value::String("[redacted]".into()) } else { redacted(v) })
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(redacted).collect()),
        other => other.clone(),
    }
}

fn claim_warnings(conn: &Connection, claims: &Value, identity: &crate::mapping::Identity) -> Vec<String> {
    let mut out = vec![];
    let m = &conn.settings.claims;
    if identity.email.is_some() && identity.email_verified.is_none() {
        out.push("The IdP sent an email without email_verified: this email never claims an existing account (and is refused where the connection requires a verified email).".into());
    }
    if identity.email.is_none() && !m.email.is_empty() {
        out.push(format!("No email came in {} (mapped from {}).", identity.sources.join(" and "), m.email.0.join(", ")));
    }
    if conn.settings.group_sync && identity.groups.is_none() {
        out.push(format!("Group sync is on but no groups claim came ({}): memberships would not change.", m.groups.0.join(", ")));
    }
    if identity.sources.iter().any(|s| s == "userinfo") {
        out.push("Claims were merged from the userinfo endpoint: sign-ins also depend on it answering.".into());
    }
    if claims.get("NameIDFormat").and_then(Value::as_str) == Some(crate::upstream::saml::UNSPECIFIED) {
        out.push("The NameID has no particular format: make sure it is stable for a user (or map the user id from an attribute).".into());
    }
    out
}

fn report_warnings(test: &TestRun, r: &Report) -> Vec<String> {
    let mut out = vec![];
    if !r.groups.unmatched.is_empty() {
        out.push(format!("These groups match no directory group and are ignored: {}.", r.groups.unmatched.join(", ")));
    }
    let me = test.actor_user_id.as_deref();
    match (&r.user, me) {
        (UserOutcome::Link { user_id, username } | UserOutcome::Email { user_id, username }, Some(me)) if user_id != me => {
            out.push(format!("This identity would sign in as {username}, not as your own account."))
        }
        (UserOutcome::Create { .. }, Some(_)) => out.push("A new account would be created: your own account would not match this identity.".into()),
        _ => {}
    }
    out
}

async fn save(app: &AppState, test: &TestRun, result: TestResult) {
    let detail = serde_json::json!({"test_id": test.id, "ok": result.ok, "error": result.error});
    let audit = crate::audit::AuditEntry::new(app.clock.now(), &test.actor, "connection.test", &test.connection.id, detail);
    if let Err(e) = app.store.audit_append(&audit).await {
        tracing::warn!(error = %e, "could not write the connection.test audit record");
    }
    let value = serde_json::to_string(&result).unwrap_or_default();
    if let Err(e) = app.ephemeral.put_new(&format!("test-result:{}", test.id), &value, ttl_ms(app)).await {
        tracing::warn!(error = %e, "could not keep the test result");
    }
}

/// The result of test `id`, once it finished.
pub async fn result(app: &AppState, id: &str) -> Result<Option<TestResult>, crate::state::StateError> {
    if !crate::id::is_wellformed(id) {
        return Ok(None);
    }
    Ok(app.ephemeral.get(&format!("test-result:{id}")).await?.and_then(|v| serde_json::from_str(&v).ok()))
}

/// `GET /test/{id}`: the result, for the browser that ran the test only.
pub async fn page(State(app): State<AppState>, ApiPath(id): ApiPath<String>, headers: HeaderMap) -> Result<Response, LoginError> {
    let owner = app.ephemeral.get(&format!("test-browser:{id}")).await.map_err(|e| LoginError::state_unavailable(Step::Flow, &e))?;
    if !owner.as_deref().is_some_and(|b| browser::holds_flow(&app, &headers, b)) {
        return Err(LoginError::new(StatusCode::NOT_FOUND, Step::Flow, "there is no test result for this browser; start a new test from the console"));
    }
    let result = result(&app, &id).await.map_err(|e| LoginError::state_unavailable(Step::Flow, &e))?;
    let Some(r) = result else {
        let body = format!(
            "<div class=\"page-head\"><div><p class=\"crumbs\">Test Provider</p><h1>Waiting for the provider</h1></div></div>\
<div class=\"notice info\" role=\"status\"><strong>The test has not finished yet.</strong> Complete the sign-in at your identity provider in this browser; \
it brings you back here with the result.</div><p><a class=\"btn\" href=\"/test/{id}\">Look again</a></p>",
            id = esc(&id)
        );
        return Ok(with_result_csp(Html(shell("Test Provider", &body)).into_response()));
    };
    Ok(render_page(&r))
}

/// The result page's Content-Security-Policy: the console's style sheet, nothing else.
const RESULT_CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

fn render_page(r: &TestResult) -> Response {
    with_result_csp(Html(render(r)).into_response())
}

fn with_result_csp(mut resp: Response) -> Response {
    if let Ok(v) = axum::http::HeaderValue::from_str(RESULT_CSP) {
        resp.headers_mut().insert(header::CONTENT_SECURITY_POLICY, v);
    }
    resp
}

/// A result page's document: the console's style sheet and top bar around `body`.
fn shell(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{title}</title><link rel=\"stylesheet\" href=\"/console/assets/console.css\"></head><body>\
<header class=\"topbar\"><div class=\"topbar-inner\"><a class=\"brand\" href=\"/console\"><span class=\"brand-mark\" aria-hidden=\"true\"></span>ssogate <small>console</small></a></div></header>\
<main id=\"main\">{body}</main></body></html>",
        title = esc(title)
    )
}

fn json_block(v: &Value) -> String {
    format!("<pre class=\"json\">{}</pre>", esc(&serde_json::to_string_pretty(v).unwrap_or_default()))
}

fn render(r: &TestResult) -> String {
    let (tone, verdict) = if r.ok { ("success", "The round trip verified") } else { ("error", "The test failed") };
    let mut body = format!(
        "<div class=\"page-head\"><div><p class=\"crumbs\">Test Provider</p><h1>{name}</h1><p class=\"lede\">A real sign-in at the provider with these settings. Nothing was created: no user, link, membership or session.</p></div></div>\
<div class=\"notice {tone}\" role=\"status\"><strong>{verdict}.</strong>{error}</div>",
        name = esc(&r.connection_name),
        error = r.error.as_deref().map(|e| format!(" {}", esc(e))).unwrap_or_default(),
    );
    if let Some(h) = &r.hint {
        body.push_str(&format!("<div class=\"notice info\"><strong>What to change:</strong> {}</div>", esc(h)));
    }
    for w in &r.warnings {
        body.push_str(&format!("<div class=\"notice warn\">{}</div>", esc(w)));
    }
    body.push_str("<section class=\"card\"><div class=\"card-body\"><h2>Checks</h2><ol class=\"checks\">");
    for s in &r.steps {
        let (class, mark, said) = if s.ok { ("pass", "✔", "passed") } else { ("fail", "✘", "failed") };
        body.push_str(&format!(
            "<li><span class=\"mark {class}\" aria-hidden=\"true\">{mark}</span><strong>{step}<span class=\"visually-hidden\"> {said}</span></strong><span class=\"check-detail\">{detail} <span class=\"faint\">({ms} ms)</span></span></li>",
            step = esc(&s.step),
            detail = esc(&s.detail),
            ms = s.ms
        ));
    }
    body.push_str("</ol></div></section><div class=\"test-grid\">");
    if let Some(rep) = &r.report {
        body.push_str(&format!(
            "<section class=\"card\"><div class=\"card-body\"><h2>What a sign-in would do</h2>{}{}</div></section>",
            outcome(rep),
            json_block(rep)
        ));
    }
    if let Some(c) = &r.claims {
        body.push_str(&format!("<section class=\"card\"><div class=\"card-body\"><h2>Claims as received</h2><p class=\"muted\">Tokens and secrets are redacted.</p>{}</div></section>", json_block(c)));
    }
    body.push_str("</div>");
    shell(&format!("Test Provider · {}", r.connection_name), &body)
}

/// One sentence for the report's user outcome and group changes.
fn outcome(rep: &Value) -> String {
    let u = &rep["user"];
    let who = match u["action"].as_str() {
        Some("link") => format!("Signs in as <strong>{}</strong> (already linked).", esc(u["username"].as_str().unwrap_or_default())),
        Some("email") => format!("Links to and signs in as <strong>{}</strong> (same verified email).", esc(u["username"].as_str().unwrap_or_default())),
        Some("create") => format!("Creates the user <strong>{}</strong>.", esc(u["username"].as_str().unwrap_or_default())),
        Some("refuse") => format!("Refused: {}.", esc(u["reason"].as_str().unwrap_or_default())),
        _ => String::new(),
    };
    let names =
        |k: &str| rep["groups"][k].as_array().map(|a| a.iter().filter_map(|g| g["name"].as_str()).map(esc).collect::<Vec<_>>().join(", ")).unwrap_or_default();
    let (add, remove) = (names("add"), names("remove"));
    let mut out = format!("<p>{who}</p>");
    if !add.is_empty() {
        out.push_str(&format!("<p>Adds to: {add}.</p>"));
    }
    if !remove.is_empty() {
        out.push_str(&format!("<p>Removes from: {remove}.</p>"));
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn secrets_in_claims_are_redacted_but_hashes_stay() {
        let c = json!({"sub": "a", "access_token": "t", "at_hash": "h", "nested": {"client_secret": "s"}, "list": [{"password": "p"}]});
        let r = super::redacted(&c);
        assert_eq!(
            r,
            json!({"sub": "a", "access_token": "[redacted]", "at_hash": "h", "nested": {"client_secret": "[redacted]"}, "list": [{"password": "[redacted]"}]})
        );
    }
}
