//! The browser-facing login: the login page, the start of a login, and the IdP's reply
//! (the OIDC callback and the SAML ACS), each through the same steps:
//!
//! 1. start: the connection, then the protocol's `begin` (upstream seam) and the flow
//!    state, bound to this browser's flow cookie;
//! 2. reply: the connection, the protocol's `screen`, the flow this browser started
//!    (single use), the protocol's `finish` (upstream seam), then the [`pipeline`].
//!
//! Every refusal is a [`LoginError`]: a page the user can act on, and one log line.

pub mod error;
pub mod logout;
pub mod pipeline;
pub mod record;
pub mod test;

use axum::extract::{Query, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;

pub use error::{LoginError, Reason, Step};
pub use logout::{end_session, request_site, sign_out_refusal, sign_out_token, Site};

use crate::app::AppState;
use crate::connection::{Connection, Protocol};
use crate::store::ConnectionSort;
use crate::upstream::{self, FlowState, Outbound, Purpose, Reply, Transport, Unsolicited};
use crate::web::browser;
use crate::web::page::{self, esc};
use crate::web::redirect::return_target;
use crate::web::ApiPath;

/// The login's routes. Unauthenticated starts and replies spend the client's budget
/// (429 past it).
pub fn routes(state: &AppState) -> Router<AppState> {
    let starts = || axum::middleware::from_fn_with_state(state.clone(), crate::limit::starts);
    let replies = || axum::middleware::from_fn_with_state(state.clone(), crate::limit::callbacks);
    Router::new()
        .route("/", get(home))
        .route("/login", get(login_page))
        .route("/oauth2/sign_in", get(login_page))
        .route("/login/{id}", get(login_start).layer(starts()))
        .route("/oidc/{id}/callback", get(oidc_callback).layer(replies()))
        .route("/saml/{id}/metadata", get(saml_metadata))
        .route("/oidc/{id}/jwks.json", get(oidc_client_jwks))
        .route("/saml/{id}/acs", post(saml_acs).layer(replies()))
        .route("/logout", post(logout::logout))
        .route("/test/{id}/start", get(test::start).layer(starts()))
        .route("/test/{id}", get(test::page))
}

/// `?return_to=&login_hint=`
#[derive(Debug, Deserialize)]
pub struct ReturnTo {
    /// Where to go after login (a path on this gateway).
    pub return_to: Option<String>,
    /// Passed to the IdP as `login_hint` (who is signing in, when known).
    pub login_hint: Option<String>,
    /// `login`: the IdP must authenticate the user anew (an app's `prompt=login` or
    /// `max_age`), passed on by the login page's buttons.
    pub prompt: Option<String>,
}

/// The login page: one button per active connection, with its provider's logo; "Signing
/// in to <app>" when the login comes from a downstream client's `/authorize`; the product
/// name, logo and colour of `[branding]`. Works without JavaScript.
pub async fn login_page(State(app): State<AppState>, Query(q): Query<ReturnTo>) -> Response {
    let list = match app.store.connection_list(ConnectionSort::Name, false).await {
        Ok(l) => l,
        Err(e) => return LoginError::store_unavailable(Step::Start, &e).into_response(),
    };
    let back = q.return_to.as_deref().filter(|p| p.len() <= crate::limit::RETURN_TO_MAX).and_then(|p| return_target(&app.config, p));
    let suffix = back
        .as_deref()
        .map(|p| format!("?return_to={}", url::form_urlencoded::byte_serialize(p.as_bytes()).collect::<String>()))
        .map(|s| if q.prompt.as_deref() == Some("login") { format!("{s}&prompt=login") } else { s })
        .unwrap_or_default();
    let app_name = match back.as_deref().and_then(page::authorize_client) {
        Some(id) => match app.store.client_get(&id).await {
            Ok(Some(c)) => Some(if c.name.trim().is_empty() { c.client_id } else { c.name }),
            Ok(None) => None,
            Err(e) => return LoginError::store_unavailable(Step::Start, &e).into_response(),
        },
        None => None,
    };
    let buttons = list
        .iter()
        .filter(|c| c.active)
        .map(|c| page::LoginButton {
            href: format!("/login/{}{suffix}", c.id),
            logo: crate::console::assets::logo_path(Protocol::parse(&c.protocol).unwrap_or(Protocol::Oidc), &c.provider),
            provider: c.provider.clone(),
            name: c.display_name.clone(),
        })
        .collect();
    page::login(&page::LoginPage { app_name, buttons })
}

/// The connection a login goes through, when it exists and is on.
pub async fn active_connection(app: &AppState, id: &str) -> Result<std::sync::Arc<Connection>, LoginError> {
    match app.registry.get_cached(id).await {
        Ok(c) if c.active => Ok(c),
        Ok(_) | Err(crate::connection::ConnectionError::NotFound(_)) => {
            Err(LoginError::new(StatusCode::NOT_FOUND, Step::Start, "this sign-in option does not exist or is turned off; choose another one").connection(id))
        }
        Err(e) => Err(LoginError::store_unavailable(Step::Start, &e).connection(id)),
    }
}

/// Where "try again" goes for a login through `conn` that was to return to `return_to`;
/// `force_authn`: the IdP was asked to authenticate anew, and will be again.
fn retry_href(conn_id: &str, return_to: Option<&str>, force_authn: bool) -> String {
    let mut query: Vec<String> =
        return_to.map(|r| format!("return_to={}", url::form_urlencoded::byte_serialize(r.as_bytes()).collect::<String>())).into_iter().collect();
    if force_authn {
        query.push("prompt=login".into());
    }
    if query.is_empty() {
        format!("/login/{conn_id}")
    } else {
        format!("/login/{conn_id}?{}", query.join("&"))
    }
}

/// Starts a login with a connection: keeps the flow state and sends the browser to the
/// IdP. A refusal is counted and audited ([`record`]).
pub async fn login_start(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
    Query(q): Query<ReturnTo>,
    client: crate::limit::Client,
    headers: HeaderMap,
) -> Response {
    match start(&app, &id, &q, &client, &headers).await {
        Ok(resp) => resp,
        Err(e) => {
            record::refused(&app, &e).await;
            // "Try again" is the login page for the same return target (the same app).
            let back = q.return_to.as_deref().filter(|p| p.len() <= crate::limit::RETURN_TO_MAX).and_then(|p| return_target(&app.config, p));
            let again = if q.prompt.as_deref() == Some("login") { "&prompt=login" } else { "" };
            let retry = back.map(|p| format!("/login?return_to={}{again}", url::form_urlencoded::byte_serialize(p.as_bytes()).collect::<String>()));
            e.retry(retry).into_response()
        }
    }
}

async fn start(app: &AppState, id: &str, q: &ReturnTo, client: &crate::limit::Client, headers: &HeaderMap) -> Result<Response, LoginError> {
    use crate::limit::{too_long, LOGIN_HINT_MAX, RETURN_TO_MAX};
    // Both are kept with the flow state: bounded before anything is looked up.
    if let Some(why) = too_long("return_to", q.return_to.as_deref(), RETURN_TO_MAX).or_else(|| too_long("login_hint", q.login_hint.as_deref(), LOGIN_HINT_MAX))
    {
        return Err(LoginError::bad_request(Step::Start, why).connection(id));
    }
    let conn = active_connection(app, id).await?;
    let return_to = q.return_to.as_deref().and_then(|p| return_target(&app.config, p));
    let hint = q.login_hint.as_deref().filter(|h| !h.is_empty() && !h.chars().any(char::is_control));
    let flow_id = browser::flow_id(app, headers);
    let base = app.config.public_base();
    let start = upstream::Start {
        public_base: &base,
        browser: browser::binding(&flow_id),
        return_to,
        login_hint: hint,
        now: app.clock.now(),
        purpose: Purpose::Login,
        force_authn: q.prompt.as_deref() == Some("login"),
    };
    let begun = upstream::begin(&conn, start).map_err(|e| LoginError::upstream(&e, None).connection(&conn.id))?;
    keep_flow(app, client, &begun.key, &begun.flow).await.map_err(|e| e.connection(&conn.id))?;
    let mut resp = match begun.outbound {
        Outbound::Redirect(url) => Redirect::to(&url).into_response(),
        Outbound::Post { url, fields } => post_form(&url, &fields),
    };
    resp.headers_mut().append(header::SET_COOKIE, browser::flow_cookie(app, &flow_id, app.config.login.flow_ttl_seconds));
    Ok(resp)
}

/// What the upstream step's `finish` needs of the gateway, now.
pub(crate) fn upstream_context<'a>(app: &'a crate::app::App, public_base: &'a str) -> upstream::Context<'a> {
    upstream::Context {
        public_base,
        http: &app.http,
        jwks: &app.jwks,
        now: app.clock.now(),
        skew_ms: (app.config.login.clock_skew_seconds * 1000) as i64,
        max_age_ms: (app.config.login.flow_ttl_seconds * 1000) as i64,
    }
}

/// Keeps a flow until its reply (or `login.flow_ttl_seconds`), within the client's share.
pub async fn keep_flow(app: &AppState, client: &crate::limit::Client, key: &str, flow: &FlowState) -> Result<(), LoginError> {
    let ttl_ms = (app.config.login.flow_ttl_seconds * 1000) as i64;
    let stored = serde_json::to_string(flow).unwrap_or_default();
    match app.ephemeral.put_flow(&client.to_string(), &format!("flow:{key}"), &stored, ttl_ms).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(LoginError::new(StatusCode::SERVICE_UNAVAILABLE, Step::Start, "sign-in is unavailable right now; try again shortly")
            .cause("the flow store is full (login.flows_per_client or state.memory_max_*)")),
        Err(e) => Err(LoginError::state_unavailable(Step::Start, &e)),
    }
}

/// An auto-submitting form (SAML HTTP-POST binding). Without JavaScript the user presses
/// the button. Every value is escaped.
pub(crate) fn post_form(url: &str, fields: &[(&str, String)]) -> Response {
    const SCRIPT: &str = "document.getElementById('f').submit()";
    let inputs: String = fields.iter().map(|(k, v)| format!("<input type=\"hidden\" name=\"{}\" value=\"{}\">", esc(k), esc(v))).collect();
    let body = format!(
        "<h1>Signing in</h1><form id=\"f\" method=\"post\" action=\"{}\">{inputs}<button type=\"submit\">Continue to your identity provider</button></form>\
<script>{SCRIPT}</script>",
        esc(url)
    );
    // The form may post to the IdP's origin, and the one script run is this one.
    let idp: Vec<String> = url::Url::parse(url).ok().map(|u| u.origin().ascii_serialization()).into_iter().filter(|o| o != "null").collect();
    page::with_csp(Html(page::layout("Signing in", &body)).into_response(), Some(SCRIPT), &idp)
}

/// The OIDC callback: the IdP sends the browser back here.
pub async fn oidc_callback(State(app): State<AppState>, ApiPath(id): ApiPath<String>, RawQuery(q): RawQuery, headers: HeaderMap) -> Response {
    let started = std::time::Instant::now();
    let params = url::form_urlencoded::parse(q.unwrap_or_default().as_bytes()).into_owned().collect();
    let answered = reply(&app, &id, Protocol::Oidc, Reply::new(Transport::Query, params), &headers).await;
    let resp = recorded(&app, answered).await;
    app.metrics.oidc_callback.observe(started.elapsed());
    resp
}

/// The answer to a reply; a refusal counted and audited first ([`record`]).
async fn recorded(app: &AppState, answered: Result<Response, LoginError>) -> Response {
    match answered {
        Ok(resp) => resp,
        Err(e) => {
            record::refused(app, &e).await;
            e.into_response()
        }
    }
}

/// The SAML assertion consumer service: the IdP's form post.
pub async fn saml_acs(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let started = std::time::Instant::now();
    let answered = acs(&app, &id, &headers, body).await;
    let resp = recorded(&app, answered).await;
    app.metrics.saml_acs.observe(started.elapsed());
    resp
}

async fn acs(
    app: &AppState,
    id: &str,
    headers: &HeaderMap,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, LoginError> {
    let refused = |e: LoginError| Err(e.connection(id));
    // Refused like every other reply: the same page and log line (413 kept).
    let body = match body {
        Ok(b) => b,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            let why = "the SAML reply is too large (over http.max_body_bytes); start the sign-in again";
            return refused(LoginError::new(StatusCode::PAYLOAD_TOO_LARGE, Step::Reply, why));
        }
        Err(_) => return refused(LoginError::bad_request(Step::Reply, "the SAML reply could not be read; start the sign-in again")),
    };
    let reply = Reply::new(Transport::Form, url::form_urlencoded::parse(&body).into_owned().collect());
    if let Some(why) = crate::limit::too_long("RelayState", reply.get("RelayState"), crate::limit::RELAY_STATE_MAX) {
        return refused(LoginError::bad_request(Step::Reply, why));
    }
    self::reply(app, id, Protocol::Saml, reply, headers).await
}

/// The reply to a login, whatever the protocol: the connection; the protocol's screen;
/// the flow this browser started (taken: single use), or an unsolicited reply where the
/// connection takes those; the protocol's verification; then the pipeline. Each refusal
/// leaves nothing behind.
async fn reply(app: &AppState, id: &str, protocol: Protocol, reply: Reply, headers: &HeaderMap) -> Result<Response, LoginError> {
    // Screened before anything is looked up: a hostile message costs one linear pass.
    let mut report = upstream::Diagnostics::default();
    let reply = upstream::screen(protocol, reply, &mut report).await.map_err(|e| LoginError::upstream(&e, report.failed_step()).connection(id))?;
    // A connection being tried before it is saved or turned on: its pending test's
    // draft names the flow's key; only a test flow ever uses the draft.
    // `live` is what a real login may use; `conn` only names the protocol's flow key.
    let (conn, live) = match active_connection(app, id).await {
        Ok(c) => (c.clone(), Ok(c)),
        Err(e) => match test::pending_connection(app, id).await {
            Some(draft) => (std::sync::Arc::new(draft), Err(e)),
            None => return Err(e),
        },
    };
    if conn.protocol() != protocol {
        return Err(LoginError::new(StatusCode::NOT_FOUND, Step::Reply, format!("there is no {protocol} connection with this id")).connection(id));
    }
    let at = |e: LoginError| e.connection(&conn.id);
    let key = upstream::flow_key(&conn, &reply).map(str::to_string);
    let flow: Option<FlowState> = match key.as_deref().filter(|k| k.len() <= 128 && crate::id::is_wellformed(k)) {
        Some(k) => match app.ephemeral.take(&format!("flow:{k}")).await {
            Ok(v) => v.and_then(|s| serde_json::from_str(&s).ok()),
            Err(e) => return Err(at(LoginError::state_unavailable(Step::Flow, &e))),
        },
        None => None,
    };
    let return_to = match &flow {
        Some(f) if f.connection_id != conn.id || !browser::holds_flow(app, headers, &f.browser) => {
            let e =
                LoginError::bad_request(Step::Flow, "this sign-in was started in another browser; start the sign-in again here").reason(Reason::WrongBrowser);
            return Err(at(e.cause("the flow is bound to another browser or connection")));
        }
        Some(f) => f.return_to.clone(),
        None => match upstream::unsolicited(&conn) {
            Unsolicited::Accepted => key.as_deref().and_then(|r| return_target(&app.config, r)),
            Unsolicited::Refused(why) => {
                let e = LoginError::forbidden(
                    Step::Flow,
                    format!("this reply answers no sign-in started in this browser (it expired, was already used, or came unrequested, and {why}); start the sign-in again"),
                );
                return Err(at(e.reason(Reason::FlowMissing)));
            }
            Unsolicited::Never if key.is_none() => {
                let e = LoginError::bad_request(Step::Flow, "the sign-in reply names no sign-in (no state); start the sign-in again");
                return Err(at(e.reason(Reason::FlowMissing)));
            }
            Unsolicited::Never => {
                let e = LoginError::bad_request(
                    Step::Flow,
                    "this sign-in has expired or was already used (or was started in another browser); start the sign-in again",
                );
                return Err(at(e.reason(Reason::FlowMissing)));
            }
        },
    };
    if let Some(f @ FlowState { purpose: Purpose::Test { test_id }, .. }) = &flow {
        // A test flow's reply goes to its result, never into a login (nor its counts).
        return Ok(test::finish(app, f, test_id, reply, report).await.unwrap_or_else(|e| at(e).into_response()));
    }
    // From here on a real login: only a saved, active connection (never a test's draft).
    let conn = live?;
    let retry = retry_href(&conn.id, return_to.as_deref(), flow.as_ref().is_some_and(|f| f.force_authn));
    let base = app.config.public_base();
    let cx = upstream_context(app, &base);
    let verified = upstream::finish(&conn, flow.as_ref(), reply, &cx, &mut report)
        .await
        .map_err(|e| at(LoginError::upstream(&e, report.failed_step())).retry(Some(retry.clone())))?;
    let mode = pipeline::Mode::Login { previous_session: browser::session_id(headers).map(str::to_string) };
    let session = match pipeline::run(app, &conn, verified, mode).await.map_err(|e| e.retry(Some(retry.clone())))? {
        pipeline::Outcome::Session(s) => s,
        pipeline::Outcome::Report(_) => return Err(at(LoginError::forbidden(Step::Session, "this sign-in did not start a session"))),
    };
    record::success(app, &conn, &session).await;
    let now = app.clock.now();
    let mut resp = Redirect::to(return_to.as_deref().unwrap_or("/")).into_response();
    resp.headers_mut().append(header::SET_COOKIE, browser::session_cookie(app, &session.id, ((session.expires_at - now) / 1000).max(1) as u64));
    resp.headers_mut().append(header::SET_COOKIE, browser::flow_cookie(app, "", 0));
    Ok(resp)
}

/// `/`: who is signed in, or the login page.
pub async fn home(State(app): State<AppState>, headers: HeaderMap) -> Response {
    match browser::current_session(&app, &headers).await {
        Some(s) => {
            let body = format!(
                "<h1>Signed in</h1><p>You are signed in as <strong>{}</strong>{}.</p><p class=\"muted\">Groups: {}</p>\
                 <form method=\"post\" action=\"/logout\"><button type=\"submit\">Sign out</button></form>",
                esc(&s.username),
                s.email.as_deref().map(|e| format!(" ({})", esc(e))).unwrap_or_default(),
                esc(&s.groups.join(", "))
            );
            Html(page::layout("Signed in", &body)).into_response()
        }
        None => Redirect::to("/login").into_response(),
    }
}

/// The public key an IdP verifies this connection's `private_key_jwt` client assertions
/// with (a JWKS of one key; nothing when the connection has no key pair).
pub async fn oidc_client_jwks(State(app): State<AppState>, ApiPath(id): ApiPath<String>) -> Response {
    let conn = match app.registry.get_cached(&id).await {
        Ok(c) => Some((*c).clone()),
        Err(_) => test::pending_connection(&app, &id).await,
    };
    match conn.as_ref().and_then(|c| c.settings.upstream.oidc()).and_then(|o| o.client_jwk.clone()) {
        Some(jwk) => ([(header::CONTENT_TYPE, "application/json")], serde_json::json!({"keys": [jwk]}).to_string()).into_response(),
        None => LoginError::new(StatusCode::NOT_FOUND, Step::Start, "there is no OIDC connection with a client key pair with this id")
            .connection(&id)
            .into_response(),
    }
}

/// Our SP metadata for a SAML connection, for the IdP to import as is; for a connection
/// not saved yet, that of its pending Test Provider draft (the admin registers the SP at
/// the IdP before saving).
pub async fn saml_metadata(State(app): State<AppState>, ApiPath(id): ApiPath<String>) -> Response {
    let conn = match app.registry.get_cached(&id).await {
        Ok(c) => Some((*c).clone()),
        Err(_) => test::pending_connection(&app, &id).await,
    };
    match conn.and_then(|c| crate::upstream::saml::sp_metadata(&c, &app.config.public_base())) {
        Some(xml) => ([(header::CONTENT_TYPE, "application/samlmetadata+xml")], xml).into_response(),
        None => LoginError::new(StatusCode::NOT_FOUND, Step::Start, "there is no SAML connection with this id").connection(&id).into_response(),
    }
}
