//! The Identity Providers pages: the table (sort, Active toggle), a new connection
//! (protocol, then the preset grid, then the form with the id reserved so the callback
//! and ACS URLs can be registered before saving), editing with the connection's version
//! (a stale edit is refused and says so), "Fetch from issuer", SAML metadata by file,
//! pasted XML or URL, the SP key pair and certificate, and deleting with a confirmation
//! that says what it ends. Every change goes through the [`crate::connection::Registry`],
//! audited under the console session's identity.
//!
//! The form's field names are the admin API's field paths (`oidc.jwks_uri`,
//! `claims.groups`, …), so the registry's 422 field errors land beside their fields.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::form::Form;
use super::session::Admin;
use super::views::{self, CertBadge, CertInfo, Chrome, Column, Field, FieldAction, IdpSummary, Opt, Section, SpCert};
use crate::app::AppState;
use crate::connection::input::{ClaimsPatch, ScopeList};
use crate::connection::preset::{self, Preset};
use crate::connection::{
    AllowRule, ClaimNames, ClientAuth, Connection, ConnectionError, ConnectionPatch, FieldError, GroupMapping, OidcPatch, Pkce, Protocol, SamlPatch, Settings,
    Unmapped,
};
use crate::store::ConnectionSort;

/// What a form holds: field name to value (checkboxes: `on` when ticked).
type Values = BTreeMap<String, String>;

const DAY_MS: i64 = 24 * 3600 * 1000;

fn protocol_label(p: Protocol) -> &'static str {
    match p {
        Protocol::Oidc => "OpenID Connect",
        Protocol::Saml => "SAML 2.0",
    }
}

fn short_protocol(p: Protocol) -> &'static str {
    match p {
        Protocol::Oidc => "OIDC",
        Protocol::Saml => "SAML",
    }
}

fn when(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map(|d| d.format("%Y-%m-%d %H:%M UTC").to_string()).unwrap_or_default()
}

/// Days from `now` until an RFC 3339 time (negative: past).
fn ms_until(rfc: &str, now: i64) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(rfc).ok().map(|t| t.timestamp_millis() - now)
}

fn date_of(rfc: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(rfc).map(|t| t.format("%Y-%m-%d").to_string()).unwrap_or_else(|_| rfc.to_string())
}

fn chrome(admin: &Admin) -> Chrome {
    Chrome::from(admin)
}

fn failed(e: &ConnectionError) -> Response {
    match e {
        ConnectionError::NotFound(_) => {
            super::error_page(StatusCode::NOT_FOUND, "Not found", "That connection does not exist (it may have just been deleted).")
        }
        ConnectionError::Store(s) => super::unavailable(s),
        // Declared in the configuration file: GitOps owns it, the console only reads it.
        ConnectionError::Managed(why) => super::error_page(StatusCode::CONFLICT, "Managed by the configuration file", why),
        other => {
            tracing::error!(error = %other, "console: connection operation failed");
            super::error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "The change could not be made. Quote the request id below when reporting this.",
            )
        }
    }
}

// ---------------------------------------------------------------------------------
// The table

/// `?sort=&order=&done=&id=`
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    sort: Option<String>,
    order: Option<String>,
    /// What just happened (a code, never text to show).
    done: Option<String>,
    /// The connection it happened to.
    id: Option<String>,
}

const COLUMNS: [(&str, &str, ConnectionSort); 6] = [
    ("active", "Active", ConnectionSort::Active),
    ("name", "Name", ConnectionSort::Name),
    ("provider", "Provider", ConnectionSort::Provider),
    ("protocol", "Protocol", ConnectionSort::Protocol),
    ("id", "ID", ConnectionSort::Id),
    ("updated_at", "Last update", ConnectionSort::UpdatedAt),
];

/// `GET /console/connections`
pub async fn list(State(app): State<AppState>, admin: Admin, Query(q): Query<ListQuery>) -> Response {
    let key = q.sort.as_deref().filter(|k| COLUMNS.iter().any(|c| c.0 == *k)).unwrap_or("name");
    let descending = q.order.as_deref() == Some("desc");
    let sort = COLUMNS.iter().find(|c| c.0 == key).map(|c| c.2).unwrap_or_default();
    let list = match app.registry.list(sort, descending).await {
        Ok(l) => l,
        Err(e) => return failed(&e),
    };
    let columns = COLUMNS
        .iter()
        .map(|(k, label, _)| {
            let current = *k == key;
            let order = if current && !descending { "desc" } else { "asc" };
            Column {
                label,
                href: format!("/console/connections?sort={k}&order={order}"),
                sort: match (current, descending) {
                    (false, _) => "none",
                    (true, false) => "ascending",
                    (true, true) => "descending",
                },
                arrow: match (current, descending) {
                    (false, _) => "",
                    (true, false) => " ▲",
                    (true, true) => " ▼",
                },
            }
        })
        .collect();
    let now = app.clock.now();
    let name_of = |id: &str| list.iter().find(|c| c.id == id).map(|c| c.display_name.clone());
    let named = q.id.as_deref().and_then(name_of).unwrap_or_else(|| "The connection".into());
    let notice = match q.done.as_deref() {
        Some("created") => Some(format!("{named} was created. Users see it on the login page while it is active.")),
        Some("on") => Some(format!("{named} is on: it shows on the login page.")),
        Some("off") => Some(format!("{named} is off: it is hidden from the login page and its sessions have ended.")),
        Some("deleted") => Some("The connection was deleted.".to_string()),
        _ => None,
    };
    let tests = last_tests(&app).await;
    let rows = list
        .iter()
        .map(|c| {
            let p = preset::find(c.protocol(), &c.provider);
            let cert = c.settings.upstream.saml().and_then(|s| s.idp.certificates.iter().map(|x| x.not_after.clone()).min()).map(|exp| {
                let left = ms_until(&exp, now).unwrap_or(0);
                let text = if left < 0 { format!("expired {}", date_of(&exp)) } else { format!("expires {}", date_of(&exp)) };
                CertBadge { text, warn: left < 30 * DAY_MS }
            });
            views::Row {
                id: c.id.clone(),
                name: c.display_name.clone(),
                active: c.active,
                provider_name: p.map(|p| p.name.clone()).unwrap_or_else(|| c.provider.clone()),
                logo: super::assets::logo_path(c.protocol(), &c.provider),
                protocol: short_protocol(c.protocol()),
                updated: when(c.updated_at),
                updated_iso: crate::clock::rfc3339(c.updated_at),
                cert,
                last_test: tests.get(&c.id).map(|(ok, at)| views::LastTest {
                    ok: *ok,
                    when: when(*at),
                    short: chrono::DateTime::from_timestamp_millis(*at).map(|t| t.format("%b %-d, %H:%M").to_string()).unwrap_or_default(),
                }),
            }
        })
        .collect();
    let sorted_by = format!("{} ({})", COLUMNS.iter().find(|c| c.0 == key).map(|c| c.1).unwrap_or("Name"), if descending { "descending" } else { "ascending" });
    super::render(StatusCode::OK, &views::Connections { chrome: chrome(&admin), columns, sorted_by, rows, notice })
}

/// The last Test Provider run of each connection (outcome, time), from the latest audit
/// records (a bounded read: the table shows what is recent).
async fn last_tests(app: &AppState) -> std::collections::HashMap<String, (bool, crate::clock::Millis)> {
    let mut out = std::collections::HashMap::new();
    let Ok(entries) = app.store.audit_list(crate::store::AuditQuery { limit: 1000, action: Some("connection.test".into()), ..Default::default() }).await else {
        return out;
    };
    for e in entries.iter().filter(|e| e.action == "connection.test") {
        let ok = serde_json::from_str::<serde_json::Value>(&e.detail).ok().and_then(|d| d["ok"].as_bool()).unwrap_or(false);
        let seen = out.entry(e.target.clone()).or_insert((ok, e.at));
        if e.at > seen.1 {
            *seen = (ok, e.at);
        }
    }
    out
}

/// Starts a Test Provider run of `patch` (a draft: nothing is saved) for the console's
/// admin and sends this window to its start, where the real round trip begins; the result
/// shows in the same window. Field errors come back on the form like a save's.
async fn test_draft(app: &AppState, admin: &Admin, patch: &ConnectionPatch) -> Result<Response, ConnectionError> {
    let draft = app.registry.draft(patch).await?;
    let user_id = match &admin.identity {
        super::session::Identity::User { user_id, .. } => Some(user_id.clone()),
        super::session::Identity::AdminToken => None,
    };
    match crate::login::test::create(app, draft, &admin.identity.actor(), user_id).await {
        // Not a redirect: the console's `form-action 'self'` would stop a form post from
        // being redirected on to the IdP. A page that moves on by itself (meta refresh),
        // with a link for the keyboard, starts the round trip as a plain navigation.
        Ok(test_id) => Ok(super::render(StatusCode::OK, &views::TestStarting { start: format!("/test/{test_id}/start") })),
        Err(e) => Ok(super::unavailable(&e)),
    }
}

/// `POST /console/connections/{id}/test`: a Test Provider run of the saved settings.
pub async fn test_saved(State(app): State<AppState>, admin: Admin, Path(id): Path<String>, headers: HeaderMap, form: Form) -> Response {
    if let Some(r) = super::csrf::refusal(&app, &headers, &admin.csrf, form.get("csrf")) {
        return r;
    }
    let patch = ConnectionPatch { id: Some(id), ..Default::default() };
    match test_draft(&app, &admin, &patch).await {
        Ok(r) => r,
        Err(e) => failed(&e),
    }
}

/// `POST /console/connections/{id}/active`: `active=true|false` (the state wanted, so
/// two admins clicking at once cannot flip it back).
pub async fn set_active(State(app): State<AppState>, admin: Admin, Path(id): Path<String>, headers: HeaderMap, form: Form) -> Response {
    if let Some(r) = super::csrf::refusal(&app, &headers, &admin.csrf, form.get("csrf")) {
        return r;
    }
    let active = form.get("active") == Some("true");
    if let Err(e) = app.registry.set_active(&id, active, &admin.identity.actor()).await {
        return failed(&e);
    }
    if !active {
        // Turned off: its sessions end on every replica, as through the API.
        match app.sessions.remove_connection(&id).await {
            Ok(n) => tracing::info!(connection = %id, sessions = n, "sessions of the connection ended"),
            Err(e) => return super::unavailable(&e),
        }
    }
    let done = if active { "on" } else { "off" };
    Redirect::to(&format!("/console/connections?done={done}&id={}", urlencode(&id))).into_response()
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

// ---------------------------------------------------------------------------------
// New connection: protocol, then the preset grid

/// `?protocol=`
#[derive(Debug, Deserialize)]
pub struct ChooseQuery {
    protocol: Option<String>,
}

/// `GET /console/connections/new`
pub async fn choose(admin: Admin, Query(q): Query<ChooseQuery>) -> Response {
    let protocol = q.protocol.as_deref().and_then(Protocol::parse);
    let mut presets: Vec<&Preset> = protocol.map(|p| preset::all().iter().filter(|x| x.protocol() == p).collect()).unwrap_or_default();
    // Vendors by name, Custom last.
    presets.sort_by_key(|p| (p.provider == "custom", p.name.to_lowercase()));
    let presets = presets
        .into_iter()
        .map(|p| views::PresetCard {
            href: format!("/console/connections/new/{}/{}", p.protocol(), p.provider),
            provider: p.provider.clone(),
            logo: super::assets::logo_path(p.protocol(), &p.provider),
            name: p.name.clone(),
            summary: summary(p),
        })
        .collect();
    let chosen = protocol.map(Protocol::as_str).unwrap_or("");
    super::render(StatusCode::OK, &views::Choose { chrome: chrome(&admin), chosen, presets })
}

/// A preset's card line: its hint's first sentence, shortened.
fn summary(p: &Preset) -> String {
    if p.provider == "custom" {
        return match p.protocol() {
            Protocol::Oidc => "Any OpenID Connect provider with a discovery document.".into(),
            Protocol::Saml => "Any SAML 2.0 identity provider with a metadata file.".into(),
        };
    }
    let first = p.hint.split(['.', ';']).next().unwrap_or(&p.hint).trim();
    let mut s: String = first.chars().take(90).collect();
    if first.chars().count() > 90 {
        s.push('…');
    }
    s
}

/// `GET /console/connections/new/{protocol}/{provider}`: the form, with a fresh id
/// reserved (carried in the form), so the addresses to register are final already.
pub async fn new_form(State(app): State<AppState>, admin: Admin, Path((protocol, provider)): Path<(String, String)>) -> Response {
    let Some(preset) = Protocol::parse(&protocol).and_then(|p| preset::find(p, &provider)) else {
        return super::error_page(StatusCode::NOT_FOUND, "Not found", "There is no such provider. Choose one from the list.");
    };
    let mut values = values_of(&preset.settings());
    values.insert("display_name".into(), if preset.provider == "custom" { String::new() } else { preset.name.clone() });
    values.insert("active".into(), "on".into());
    let page = Page { creating: true, id: crate::id::new("con"), preset, version: 0, existing: None };
    render_form(&app, &admin, &page, &values, vec![], None, None, StatusCode::OK)
}

// ---------------------------------------------------------------------------------
// Values: from settings, from a form, to a patch

fn names(c: &ClaimNames) -> String {
    c.0.join(", ")
}

fn split_list(s: &str) -> Vec<String> {
    s.split(',').map(|x| x.trim().to_string()).filter(|x| !x.is_empty()).collect()
}

/// Allow rules as the form shows them: one per line, `claim = value, value`.
fn allow_text(rules: &[AllowRule]) -> String {
    rules.iter().map(|r| format!("{} = {}", r.claim, r.values.join(", "))).collect::<Vec<_>>().join("\n")
}

/// The form's allow rules. A line without `=` becomes a rule without values, which
/// validation refuses, naming it.
fn allow_rules(text: &str) -> Vec<AllowRule> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| match l.rsplit_once('=') {
            Some((claim, values)) => AllowRule { claim: claim.trim().to_string(), values: split_list(values) },
            None => AllowRule { claim: l.to_string(), values: vec![] },
        })
        .collect()
}

/// The group map as the form shows it: one per line, `IdP value => directory group`
/// (`=>`, as LDAP group DNs hold `=`).
fn group_map_text(m: &GroupMapping) -> String {
    m.map.iter().map(|(k, v)| format!("{k} => {v}")).collect::<Vec<_>>().join("\n")
}

/// The form's group map. A line without `=>` maps to nothing, which validation refuses.
fn group_map(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| match l.rsplit_once("=>") {
            Some((k, v)) => (k.trim().to_string(), v.trim().to_string()),
            None => (l.to_string(), String::new()),
        })
        .collect()
}

fn on(v: &Values, k: &str) -> bool {
    v.get(k).is_some_and(|x| x == "on")
}

fn val<'a>(v: &'a Values, k: &str) -> &'a str {
    v.get(k).map(|s| s.trim()).unwrap_or("")
}

fn set_flag(v: &mut Values, k: &str, b: bool) {
    if b {
        v.insert(k.into(), "on".into());
    } else {
        v.remove(k);
    }
}

fn pkce_str(p: Pkce) -> &'static str {
    match p {
        Pkce::None => "none",
        Pkce::Plain => "plain",
        Pkce::S256 => "S256",
    }
}

fn auth_str(a: ClientAuth) -> &'static str {
    a.as_str()
}

/// The form's values for stored (or preset) settings. Secrets are never among them.
fn values_of(s: &Settings) -> Values {
    let mut v = Values::new();
    v.insert("webapp_url".into(), s.webapp_url.clone().unwrap_or_default());
    set_flag(&mut v, "create_users", s.create_users);
    set_flag(&mut v, "group_sync", s.group_sync);
    v.insert("allow".into(), allow_text(&s.allow));
    v.insert("group_mapping.map".into(), group_map_text(&s.group_mapping));
    v.insert("group_mapping.unmapped".into(), if s.group_mapping.unmapped == Unmapped::Ignore { "ignore" } else { "by_name" }.into());
    let c = &s.claims;
    for (k, n) in [
        ("user_id", &c.user_id),
        ("email", &c.email),
        ("name", &c.name),
        ("given_name", &c.given_name),
        ("family_name", &c.family_name),
        ("picture", &c.picture),
        ("groups", &c.groups),
    ] {
        v.insert(format!("claims.{k}"), names(n));
    }
    if let Some(o) = s.upstream.oidc() {
        for (k, x) in [
            ("issuer", Some(&o.issuer)),
            ("client_id", Some(&o.client_id)),
            ("authorization_endpoint", Some(&o.authorization_endpoint)),
            ("token_endpoint", Some(&o.token_endpoint)),
            ("revocation_endpoint", o.revocation_endpoint.as_ref()),
            ("userinfo_endpoint", o.userinfo_endpoint.as_ref()),
            ("jwks_uri", o.jwks_uri.as_ref()),
            ("groups_endpoint", o.groups_endpoint.as_ref()),
        ] {
            v.insert(format!("oidc.{k}"), x.cloned().unwrap_or_default());
        }
        set_flag(&mut v, "oidc.userinfo_from_id_token", o.userinfo_from_id_token);
        set_flag(&mut v, "oidc.email_verification", o.email_verification);
        set_flag(&mut v, "oidc.verify_signature", o.verify_signature);
        set_flag(&mut v, "oidc.authorization_response_iss_parameter_supported", o.authorization_response_iss_parameter_supported);
        v.insert("oidc.code_challenge_method".into(), pkce_str(o.code_challenge_method).into());
        v.insert("oidc.token_endpoint_auth_method".into(), auth_str(o.token_endpoint_auth_method).into());
        v.insert("oidc.scopes".into(), o.scopes.join(", "));
        v.insert("oidc.additional_scopes".into(), o.additional_scopes.join(", "));
        v.insert("oidc.allowed_algorithms".into(), o.allowed_algorithms.join(", "));
        v.insert("oidc.issuer_aliases".into(), o.issuer_aliases.join(", "));
        v.insert("oidc.allowed_tenants".into(), o.allowed_tenants.join(", "));
    }
    if let Some(m) = s.upstream.saml() {
        v.insert("saml.entity_id".into(), m.entity_id.clone());
        v.insert("saml.idp_metadata_url".into(), m.idp_metadata_url.clone().unwrap_or_default());
        set_flag(&mut v, "saml.require_signed_assertions", m.require_signed_assertions);
        set_flag(&mut v, "saml.sign_requests", m.sign_requests);
        set_flag(&mut v, "saml.allow_idp_initiated", m.allow_idp_initiated);
        set_flag(&mut v, "saml.allow_sha1", m.allow_sha1);
        v.insert("saml.name_id_format".into(), m.name_id_format.clone().unwrap_or_default());
    }
    v
}

/// The values a submitted form holds. An uploaded metadata file wins over pasted XML
/// (and is kept as pasted XML when the form comes back with errors).
fn values_from_form(form: &Form) -> Values {
    let mut v = Values::new();
    for (k, x) in form.fields() {
        if matches!(k.as_str(), "csrf" | "action") {
            continue;
        }
        v.entry(k.clone()).or_insert_with(|| x.clone());
    }
    if let Some(file) = v.remove("saml.idp_metadata_file").filter(|f| !f.trim().is_empty()) {
        v.insert("saml.idp_metadata_xml".into(), file);
    }
    v
}

/// The registry patch for a form. On create, empty endpoint fields are left out so the
/// issuer's discovery fills them; on update an empty optional field clears it and an
/// empty secret keeps the stored one.
fn to_patch(v: &Values, protocol: Protocol, creating: bool, existing: Option<&Connection>) -> ConnectionPatch {
    let given = |k: &str| Some(val(v, k).to_string()).filter(|s| !s.is_empty());
    // Create: empty means "not given" (preset or discovery fills it). Update: empty clears.
    let maybe = |k: &str| if creating { given(k) } else { Some(val(v, k).to_string()) };
    let claims = |k: &str| Some(ClaimNames(split_list(val(v, &format!("claims.{k}")))));
    let placeholders: BTreeMap<String, String> =
        v.iter().filter_map(|(k, x)| Some((k.strip_prefix("placeholders.")?.to_string(), x.trim().to_string()))).filter(|(_, x)| !x.is_empty()).collect();
    let mut patch = ConnectionPatch {
        display_name: Some(val(v, "display_name").to_string()),
        active: creating.then(|| on(v, "active")),
        webapp_url: maybe("webapp_url"),
        create_users: Some(on(v, "create_users")),
        group_sync: Some(on(v, "group_sync")),
        placeholders: (creating && !placeholders.is_empty()).then_some(placeholders),
        claims: Some(ClaimsPatch {
            user_id: claims("user_id"),
            email: claims("email"),
            name: claims("name"),
            given_name: claims("given_name"),
            family_name: claims("family_name"),
            picture: claims("picture"),
            groups: claims("groups"),
        }),
        allow: Some(allow_rules(val(v, "allow"))),
        group_mapping: Some(GroupMapping {
            map: group_map(val(v, "group_mapping.map")),
            unmapped: if val(v, "group_mapping.unmapped") == "ignore" { Unmapped::Ignore } else { Unmapped::ByName },
        }),
        ..Default::default()
    };
    match protocol {
        Protocol::Oidc => {
            let pkce = match val(v, "oidc.code_challenge_method") {
                "none" => Pkce::None,
                "plain" => Pkce::Plain,
                _ => Pkce::S256,
            };
            let auth = match val(v, "oidc.token_endpoint_auth_method") {
                "client_secret_post" => ClientAuth::ClientSecretPost,
                "client_secret_jwt" => ClientAuth::ClientSecretJwt,
                "private_key_jwt" => ClientAuth::PrivateKeyJwt,
                "none" => ClientAuth::None,
                _ => ClientAuth::ClientSecretBasic,
            };
            patch.oidc = Some(OidcPatch {
                issuer: maybe("oidc.issuer"),
                client_id: Some(val(v, "oidc.client_id").to_string()),
                // Write-only: empty keeps what is stored.
                client_secret: given("oidc.client_secret"),
                authorization_endpoint: maybe("oidc.authorization_endpoint"),
                token_endpoint: maybe("oidc.token_endpoint"),
                revocation_endpoint: maybe("oidc.revocation_endpoint"),
                userinfo_endpoint: maybe("oidc.userinfo_endpoint"),
                jwks_uri: maybe("oidc.jwks_uri"),
                userinfo_from_id_token: Some(on(v, "oidc.userinfo_from_id_token")),
                email_verification: Some(on(v, "oidc.email_verification")),
                verify_signature: Some(on(v, "oidc.verify_signature")),
                code_challenge_method: Some(pkce),
                token_endpoint_auth_method: Some(auth),
                scopes: Some(ScopeList(split_list(val(v, "oidc.scopes")))),
                additional_scopes: Some(ScopeList(split_list(val(v, "oidc.additional_scopes")))),
                allowed_algorithms: Some(split_list(val(v, "oidc.allowed_algorithms"))),
                authorization_response_iss_parameter_supported: Some(on(v, "oidc.authorization_response_iss_parameter_supported")),
                issuer_aliases: Some(split_list(val(v, "oidc.issuer_aliases"))),
                allowed_tenants: Some(split_list(val(v, "oidc.allowed_tenants"))),
                groups_endpoint: maybe("oidc.groups_endpoint"),
            });
        }
        Protocol::Saml => {
            let stored_url = existing.and_then(|c| c.settings.upstream.saml()).and_then(|s| s.idp_metadata_url.clone()).unwrap_or_default();
            let url = val(v, "saml.idp_metadata_url");
            let xml = given("saml.idp_metadata_xml");
            // A URL is fetched when it is new (or given again with nothing pasted on create).
            let idp_metadata_url = if creating || url != stored_url { Some(url.to_string()).filter(|u| !u.is_empty() || !creating) } else { None };
            patch.saml = Some(SamlPatch {
                entity_id: Some(val(v, "saml.entity_id").to_string()),
                idp_metadata_xml: xml,
                idp_metadata_url,
                require_signed_assertions: Some(on(v, "saml.require_signed_assertions")),
                sign_requests: Some(on(v, "saml.sign_requests")),
                sp_certificate: given("saml.sp_certificate"),
                sp_private_key: given("saml.sp_private_key"),
                name_id_format: Some(val(v, "saml.name_id_format").to_string()),
                allow_idp_initiated: Some(on(v, "saml.allow_idp_initiated")),
                allow_sha1: Some(on(v, "saml.allow_sha1")),
                ..Default::default()
            });
        }
    }
    patch
}

// ---------------------------------------------------------------------------------
// The form

/// What the form is about.
struct Page<'a> {
    creating: bool,
    id: String,
    preset: &'a Preset,
    /// The version an edit starts from.
    version: i64,
    /// The stored connection (edit).
    existing: Option<&'a Connection>,
}

fn field(name: &str, label: &str, kind: &'static str, hint: &str) -> Field {
    Field { name: name.into(), id: name.replace(['.', '_'], "-"), label: label.into(), kind, hint: hint.into(), ..Default::default() }
}

fn required(mut f: Field) -> Field {
    f.required = true;
    f
}

fn full(mut f: Field) -> Field {
    f.full = true;
    f
}

fn select(name: &str, label: &str, hint: &str, options: &[(&str, &str)]) -> Field {
    let mut f = field(name, label, "select", hint);
    f.options = options.iter().map(|(v, l)| Opt { value: (*v).into(), label: (*l).into(), selected: false }).collect();
    f
}

fn copy(id: &str, label: &str, value: String, hint: &str) -> Field {
    Field { name: String::new(), id: id.into(), label: label.into(), kind: "copy", value, hint: hint.into(), full: true, ..Default::default() }
}

/// The base URL this connection's addresses hang off, as the form has it now.
fn webapp_base(app: &AppState, v: &Values) -> String {
    let w = val(v, "webapp_url");
    if w.starts_with("https://") || w.starts_with("http://") {
        w.trim_end_matches('/').to_string()
    } else {
        app.config.public_base()
    }
}

fn claims_section(protocol: Protocol) -> Section {
    let (uid_hint, what) = match protocol {
        Protocol::Oidc => ("The claim that identifies a user for good, such as sub (or oid at Entra ID).", "claim"),
        Protocol::Saml => ("NameID (a persistent one), or the attribute that identifies a user for good.", "attribute"),
    };
    let names_hint = format!("The {what} name; several, comma-separated, are tried in order.");
    Section {
        id: "claims",
        title: "Claims mappings",
        intro: format!("Which {what} of the identity provider becomes each field of the user."),
        fields: vec![
            required(field("claims.user_id", "User id", "text", uid_hint)),
            field("claims.email", "Email", "text", &names_hint),
            field("claims.name", "Name", "text", "The full name."),
            field("claims.given_name", "Given name", "text", "Optional when Name is mapped."),
            field("claims.family_name", "Family name", "text", "Optional when Name is mapped."),
            field("claims.picture", "Picture", "text", "An http(s) URL of the user's picture."),
        ],
    }
}

fn groups_section(protocol: Protocol) -> Section {
    let what = if protocol == Protocol::Oidc { "claim" } else { "attribute" };
    Section {
        id: "groups",
        title: "User groups synchronization",
        intro: String::new(),
        fields: vec![
            field(
                "group_sync",
                "Synchronize group memberships",
                "checkbox",
                "At each login, match each group the identity provider sends to an existing group of the directory (case-insensitive) and add the user; remove the memberships this connection granted that it no longer sends. Memberships added by hand, and Admins, are never touched.",
            ),
            field("claims.groups", &format!("Groups {what}"), "text", &format!("The {what} that lists the user's groups.")),
            full(field(
                "group_mapping.map",
                "Group mapping",
                "textarea",
                "One per line: the value the identity provider sends (an object ID, a /parent/child path, a role) => the directory group's name or ID.",
            )),
            select(
                "group_mapping.unmapped",
                "Values not in the mapping",
                "Matched to a group of the same name, or ignored (then only mapped values grant groups).",
                &[("by_name", "Match by group name"), ("ignore", "Ignore")],
            ),
            full(field(
                "allow",
                "Who may sign in",
                "textarea",
                &format!("Optional. One rule per line: {what} = allowed values, such as hd = example.com. Every rule must hold; others are refused."),
            )),
        ],
    }
}

/// The form's fields for a protocol and preset, grouped as the product groups them.
fn layout(app: &AppState, page: &Page, v: &Values) -> (Vec<Field>, Vec<Section>) {
    let base = webapp_base(app, v);
    let id = &page.id;
    let webapp = field(
        "webapp_url",
        "WebApp URL",
        "url",
        &format!("The external URL of this gateway; the addresses above are built from it. Empty: the public URL ({}).", app.config.public_base()),
    );
    let mut general = vec![webapp, required(field("display_name", "Display name", "text", "Shown on the login page; unique across connections."))];
    if page.creating {
        for p in &page.preset.placeholders {
            let mut f = field(&format!("placeholders.{}", p.name), &p.description, "text", &format!("For example {}.", p.example));
            f.placeholder = p.example.clone();
            general.push(f);
        }
    }
    let secret_set = |k: &str| {
        page.existing.is_some_and(|c| match k {
            "oidc.client_secret" => c.secrets.client_secret.is_some(),
            _ => c.secrets.sp_private_key.is_some(),
        })
    };
    match page.preset.protocol() {
        Protocol::Oidc => {
            let register = vec![copy(
                "callback-url",
                "Callback URL",
                format!("{base}/oidc/{id}/callback"),
                "Register it as the redirect URI (sometimes called Redirect URL or Callback URL) of the app at your provider.",
            )];
            let mut issuer = required(field(
                "oidc.issuer",
                "Issuer",
                "url",
                "Exactly as it appears in tokens (a trailing / matters). Fetch from issuer fills the endpoints from its discovery document.",
            ));
            if page.creating && !page.preset.placeholders.is_empty() {
                issuer.required = false;
                issuer.hint = format!("{} Empty: built from the values above.", issuer.hint);
            }
            issuer.action = Some(FieldAction { value: "discover", label: "Fetch from issuer" });
            issuer.full = true;
            let mut secret = field(
                "oidc.client_secret",
                "Client secret",
                "password",
                "Write-only: it is never shown again. Leave empty to keep the stored one; type it again after an error.",
            );
            secret.secret_set = secret_set("oidc.client_secret");
            general.extend([
                issuer,
                required(field("oidc.client_id", "Client ID", "text", "From your provider's app settings.")),
                secret,
                required(field("oidc.authorization_endpoint", "Authorization endpoint", "url", "Filled from discovery.")),
                required(field("oidc.token_endpoint", "Access token endpoint", "url", "Filled from discovery.")),
                field("oidc.revocation_endpoint", "Revocation endpoint", "url", "Optional: the access token is revoked there at logout."),
                field("oidc.jwks_uri", "JWKS URI", "url", "The provider's signing keys; required when token signatures are verified."),
                field("oidc.userinfo_endpoint", "User info endpoint", "url", "Used when user information is not taken from the identity token."),
                field(
                    "oidc.userinfo_from_id_token",
                    "Obtain user information from the identity token",
                    "checkbox",
                    "Off: call the user info endpoint for the claims.",
                ),
                field("oidc.email_verification", "Email verification", "checkbox", "Allow only users whose email_verified claim is true."),
                field("create_users", "Create new users on first login", "checkbox", "Off: only existing users, or users invited by email, may sign in."),
                field("oidc.verify_signature", "Verify token signature", "checkbox", "Verify identity token signatures with the keys at the JWKS URI."),
            ]);
            if page.creating {
                general.push(field("active", "Active", "checkbox", "Show it on the login page once saved."));
            }
            let additional = Section {
                id: "additional",
                title: "Additional settings",
                intro: String::new(),
                fields: vec![
                    select(
                        "oidc.code_challenge_method",
                        "Code challenge method (PKCE)",
                        "Match your provider's app settings.",
                        &[("none", "None"), ("plain", "Plain"), ("S256", "S256")],
                    ),
                    select(
                        "oidc.token_endpoint_auth_method",
                        "Client authentication",
                        "How the client secret is sent to the token endpoint.",
                        &[
                            ("client_secret_basic", "HTTP Basic (client_secret_basic)"),
                            ("client_secret_post", "Form body (client_secret_post)"),
                            ("client_secret_jwt", "JWT signed with the secret (client_secret_jwt)"),
                            ("private_key_jwt", "JWT signed with a key the gateway makes (private_key_jwt)"),
                            ("none", "None (public client, PKCE)"),
                        ],
                    ),
                    field("oidc.scopes", "Standard userinfo scopes", "text", "Comma-separated; must include openid."),
                    field("oidc.additional_scopes", "Additional scopes", "text", "Comma-separated, any others your provider needs."),
                    field("oidc.allowed_algorithms", "Accepted token algorithms", "text", "Comma-separated, such as RS256, ES256, PS256."),
                    field(
                        "oidc.groups_endpoint",
                        "Groups endpoint (overage)",
                        "url",
                        "Read the user's groups here when the provider sends too many to fit in the token (Entra ID: https://graph.microsoft.com/v1.0/me/getMemberObjects).",
                    ),
                    field("oidc.issuer_aliases", "Other issuer forms", "text", "Comma-separated iss values also accepted, such as accounts.google.com."),
                    field(
                        "oidc.allowed_tenants",
                        "Allowed tenants",
                        "text",
                        "Multi-tenant issuer ({tenantid}, Entra ID organizations or common): the tenant IDs (tid) that may sign in, comma-separated.",
                    ),
                    field(
                        "oidc.authorization_response_iss_parameter_supported",
                        "The provider sends iss in its authorization responses (RFC 9207)",
                        "checkbox",
                        "On: the callback requires it. Filled by Fetch from issuer.",
                    ),
                ],
            };
            let sections = vec![
                Section { id: "general", title: "General", intro: String::new(), fields: general },
                additional,
                claims_section(Protocol::Oidc),
                groups_section(Protocol::Oidc),
            ];
            (register, sections)
        }
        Protocol::Saml => {
            let sp_metadata = format!("{base}/saml/{id}/metadata");
            let entity = Some(val(v, "saml.entity_id")).filter(|e| !e.is_empty()).map(str::to_string).unwrap_or_else(|| sp_metadata.clone());
            let register = vec![
                copy(
                    "acs-url",
                    "Reply / ACS URL",
                    format!("{base}/saml/{id}/acs"),
                    "The Assertion Consumer Service URL (HTTP-POST) of the app at your provider.",
                ),
                copy("sp-entity-id", "SP entity id", entity, "The Entity ID (Audience) of the app at your provider."),
                copy("sp-metadata-url", "SP metadata URL", sp_metadata, "Most providers can import all of this, with our certificate, from here."),
            ];
            general.extend([
                field("saml.entity_id", "Entity ID", "text", "Our SP entity id, registered at your provider. Empty: the SP metadata URL."),
                full(field("saml.idp_metadata_file", "IdP metadata file", "file", "The metadata XML your provider offers for download.")),
                full(field("saml.idp_metadata_xml", "…or paste the IdP metadata XML", "textarea", "")),
                full(field(
                    "saml.idp_metadata_url",
                    "…or the IdP metadata URL",
                    "url",
                    "Read at save and again every hour, so certificate rollovers need nothing from you.",
                )),
                field("create_users", "Create new users on first login", "checkbox", "Off: only existing or pre-linked users may sign in."),
            ]);
            if page.creating {
                general.push(field("active", "Active", "checkbox", "Show it on the login page once saved."));
            }
            let mut key = full(field(
                "saml.sp_private_key",
                "Private key (PEM)",
                "textarea",
                "Write-only: never shown again. Only to bring your own key pair, with its certificate.",
            ));
            key.secret_set = secret_set("saml.sp_private_key");
            let security = Section {
                id: "security",
                title: "Security settings",
                intro: String::new(),
                fields: vec![
                    field(
                        "saml.require_signed_assertions",
                        "Require signed assertions",
                        "checkbox",
                        "Refuse assertions your provider did not sign. Keep it on.",
                    ),
                    field(
                        "saml.sign_requests",
                        "Sign client requests",
                        "checkbox",
                        "Sign AuthnRequests. Without a key pair of your own, one is generated when you save; then download its certificate and register it at your provider.",
                    ),
                    full(field("saml.sp_certificate", "Public key / certificate (PEM)", "textarea", "Only to bring your own key pair (openssl), with the private key below.")),
                    key,
                ],
            };
            let additional = Section {
                id: "additional",
                title: "Additional settings",
                intro: String::new(),
                fields: vec![
                    field("saml.name_id_format", "NameID format", "text", "Empty: persistent. A transient NameID is never used as the user id."),
                    field(
                        "saml.allow_idp_initiated",
                        "Allow IdP-initiated sign-in",
                        "checkbox",
                        "Accept responses no request of ours asked for. Off unless you need it.",
                    ),
                    field(
                        "saml.allow_sha1",
                        "Accept SHA-1 signatures (legacy)",
                        "checkbox",
                        "Only for an IdP that cannot sign with SHA-256 (old AD FS, JumpCloud): switch it to SHA-256 instead when you can. Logged and counted in metrics while on.",
                    ),
                ],
            };
            let sections = vec![
                Section { id: "general", title: "General", intro: String::new(), fields: general },
                security,
                additional,
                claims_section(Protocol::Saml),
                groups_section(Protocol::Saml),
            ];
            (register, sections)
        }
    }
}

/// Which form field an API field error belongs to.
fn owner(field: &str) -> &str {
    // `allow[2].values` belongs to the rules' text area.
    if field.starts_with("allow") {
        return "allow";
    }
    match field {
        "saml.idp" | "saml.idp.sso_url" => "saml.idp_metadata_xml",
        // Discovery names the issuer it could not use as plain `issuer`.
        "issuer" => "oidc.issuer",
        f => f,
    }
}

/// Fills the fields with the values and their errors; errors that belong to no field
/// are returned, for the top of the page.
fn fill(fields: &mut [Field], v: &Values, errors: &mut Vec<FieldError>) {
    for f in fields.iter_mut() {
        if f.kind == "copy" {
            continue;
        }
        match f.kind {
            "checkbox" => f.checked = on(v, &f.name),
            // Secrets and files are never rendered back.
            "password" | "file" => {}
            _ if f.name == "saml.sp_private_key" => {}
            "select" => {
                let current = val(v, &f.name).to_string();
                for o in &mut f.options {
                    o.selected = o.value == current;
                }
            }
            _ => f.value = v.get(&f.name).cloned().unwrap_or_default(),
        }
        let mine: Vec<String> = errors.iter().filter(|e| owner(&e.field) == f.name).map(|e| upper_first(&e.message)).collect();
        if !mine.is_empty() {
            f.error = Some(mine.join(" "));
            errors.retain(|e| owner(&e.field) != f.name);
        }
    }
}

fn upper_first(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().collect::<String>() + c.as_str()).unwrap_or_default()
}

#[allow(clippy::too_many_arguments)]
fn render_form(
    app: &AppState,
    admin: &Admin,
    page: &Page,
    v: &Values,
    mut errors: Vec<FieldError>,
    notice: Option<String>,
    stale: Option<i64>,
    status: StatusCode,
) -> Response {
    let (mut register, mut sections) = layout(app, page, v);
    fill(&mut register, v, &mut errors);
    for s in &mut sections {
        fill(&mut s.fields, v, &mut errors);
    }
    let mut top: Vec<String> = errors.iter().map(|e| format!("{}: {}", e.field, e.message)).collect();
    let marked = sections.iter().flat_map(|s| &s.fields).filter(|f| f.error.is_some()).count();
    if top.is_empty() && marked > 0 {
        top.push(format!("{marked} {} below.", if marked == 1 { "field needs attention" } else { "fields need attention" }));
    }
    let now = app.clock.now();
    let saml = page.existing.and_then(|c| c.settings.upstream.saml());
    let idp = saml.filter(|s| !s.idp.entity_id.is_empty()).map(|s| IdpSummary {
        entity_id: s.idp.entity_id.clone(),
        sso_url: s.idp.sso_url.clone(),
        binding: s.idp.sso_binding.rsplit(':').next().unwrap_or_default().to_string(),
        certs: s
            .idp
            .certificates
            .iter()
            .map(|c| CertInfo {
                subject: c.subject.clone(),
                not_after: date_of(&c.not_after),
                sha256: c.sha256.clone(),
                warn: ms_until(&c.not_after, now).is_some_and(|left| left < 30 * DAY_MS),
            })
            .collect(),
    });
    let sp_cert = saml.and_then(|s| s.sp_certificate.as_deref()).and_then(|pem| {
        let c = crate::connection::metadata::describe(&openssl::x509::X509::from_pem(pem.as_bytes()).ok()?).ok()?;
        Some(SpCert { subject: c.subject, not_after: date_of(&c.not_after) })
    });
    let preset = page.preset;
    let title = match page.existing {
        Some(c) => c.display_name.clone(),
        None if preset.provider == "custom" => format!("New {} connection", protocol_label(preset.protocol())),
        None => format!("New {} connection", preset.name),
    };
    let idp_name = if preset.provider == "custom" { "your identity provider".to_string() } else { preset.name.clone() };
    let view = views::ConnectionForm {
        chrome: chrome(admin),
        title,
        action: if page.creating { "/console/connections".into() } else { format!("/console/connections/{}", page.id) },
        creating: page.creating,
        id: page.id.clone(),
        protocol: preset.protocol().as_str(),
        protocol_label: protocol_label(preset.protocol()),
        provider: preset.provider.clone(),
        provider_name: preset.name.clone(),
        idp_name,
        logo: super::assets::logo_path(preset.protocol(), &preset.provider),
        preset_hint: preset.hint.clone(),
        preset_docs: preset.docs.clone(),
        version: page.version,
        notice,
        errors: top,
        stale: stale.map(|current| views::Stale { current }),
        register,
        sections,
        idp,
        sp_cert,
    };
    super::render(status, &view)
}

// ---------------------------------------------------------------------------------
// Create, edit, update

/// "Fetch from issuer": reads the discovery document and puts its endpoints into the
/// form (nothing is saved).
async fn discover_into(app: &AppState, preset: &Preset, v: &mut Values) -> Result<String, Vec<FieldError>> {
    let placeholders: BTreeMap<String, String> =
        v.iter().filter_map(|(k, x)| Some((k.strip_prefix("placeholders.")?.to_string(), x.trim().to_string()))).collect();
    let pattern = preset.oidc().and_then(|o| o.issuer.as_deref());
    let issuer = match (val(v, "oidc.issuer"), pattern) {
        ("", Some(p)) => preset.fill(p, &placeholders, None)?,
        ("", None) => return Err(vec![FieldError::new("oidc.issuer", "is required to fetch the endpoints")]),
        (i, _) => i.to_string(),
    };
    let url = match preset.oidc().and_then(|o| o.discovery_url.as_deref()) {
        Some(p) => Some(preset.fill(p, &placeholders, Some(&issuer))?),
        None => None,
    };
    let d = match app.registry.discover(&issuer, url.as_deref()).await {
        Ok(d) => d,
        Err(ConnectionError::Invalid(e)) => return Err(e.into_iter().map(|f| FieldError::new("oidc.issuer", f.message)).collect()),
        Err(other) => return Err(vec![FieldError::new("oidc.issuer", other.to_string())]),
    };
    v.insert("oidc.issuer".into(), issuer.clone());
    v.insert("oidc.authorization_endpoint".into(), d.authorization_endpoint.clone());
    v.insert("oidc.token_endpoint".into(), d.token_endpoint.clone());
    for (k, x) in [("userinfo_endpoint", &d.userinfo_endpoint), ("jwks_uri", &d.jwks_uri), ("revocation_endpoint", &d.revocation_endpoint)] {
        v.insert(format!("oidc.{k}"), x.clone().unwrap_or_default());
    }
    set_flag(v, "oidc.authorization_response_iss_parameter_supported", d.authorization_response_iss_parameter_supported);
    let methods = &d.code_challenge_methods_supported;
    if !methods.is_empty() && !methods.iter().any(|m| m == val(v, "oidc.code_challenge_method")) {
        let pick = if methods.iter().any(|m| m == "S256") { "S256" } else { "none" };
        v.insert("oidc.code_challenge_method".into(), pick.into());
    }
    Ok(format!("Endpoints filled from the discovery document of {issuer}. Review them, then save."))
}

fn conflict_errors(message: &str) -> Vec<FieldError> {
    if message.contains("display_name") || (message.to_lowercase().contains("name") && !message.starts_with("id:")) {
        vec![FieldError::new("display_name", "is taken by another connection; choose another name")]
    } else {
        vec![FieldError::new("id", message.to_string())]
    }
}

/// `POST /console/connections`: creates the connection the form describes, with its
/// reserved id; or, with `action=discover`, fills the form from the issuer.
pub async fn create(State(app): State<AppState>, admin: Admin, headers: HeaderMap, form: Form) -> Response {
    if let Some(r) = super::csrf::refusal(&app, &headers, &admin.csrf, form.get("csrf")) {
        return r;
    }
    let protocol = form.get("protocol").and_then(Protocol::parse);
    let Some(preset) = protocol.and_then(|p| preset::find(p, form.get("provider").unwrap_or(""))) else {
        return super::error_page(
            StatusCode::BAD_REQUEST,
            "Form not readable",
            "The form does not name a known protocol and provider. Start again from New connection.",
        );
    };
    let id = form.get("id").unwrap_or("").to_string();
    if !id.starts_with("con_") || !crate::id::is_wellformed(&id) {
        return super::error_page(StatusCode::BAD_REQUEST, "Form not readable", "The form's reserved id is not valid. Start again from New connection.");
    }
    let mut v = values_from_form(&form);
    let page = Page { creating: true, id: id.clone(), preset, version: 0, existing: None };
    if form.get("action") == Some("discover") {
        return match discover_into(&app, preset, &mut v).await {
            Ok(notice) => render_form(&app, &admin, &page, &v, vec![], Some(notice), None, StatusCode::OK),
            Err(errors) => render_form(&app, &admin, &page, &v, errors, None, None, StatusCode::UNPROCESSABLE_ENTITY),
        };
    }
    let mut patch = to_patch(&v, preset.protocol(), true, None);
    patch.id = Some(id.clone());
    patch.protocol = Some(preset.protocol());
    patch.provider = Some(preset.provider.clone());
    if form.get("action") == Some("test") {
        return match test_draft(&app, &admin, &patch).await {
            Ok(r) => r,
            Err(ConnectionError::Invalid(errors)) => render_form(&app, &admin, &page, &v, errors, None, None, StatusCode::UNPROCESSABLE_ENTITY),
            Err(e) => failed(&e),
        };
    }
    match app.registry.create(&patch, &admin.identity.actor()).await {
        Ok(c) => Redirect::to(&format!("/console/connections?done=created&id={}", urlencode(&c.id))).into_response(),
        Err(ConnectionError::Invalid(errors)) => render_form(&app, &admin, &page, &v, errors, None, None, StatusCode::UNPROCESSABLE_ENTITY),
        Err(ConnectionError::Conflict(m)) => render_form(&app, &admin, &page, &v, conflict_errors(&m), None, None, StatusCode::CONFLICT),
        Err(e) => failed(&e),
    }
}

/// `?done=`
#[derive(Debug, Deserialize)]
pub struct EditQuery {
    done: Option<String>,
}

/// `GET /console/connections/{id}`: the form with the stored settings and its version.
pub async fn edit(State(app): State<AppState>, admin: Admin, Path(id): Path<String>, Query(q): Query<EditQuery>) -> Response {
    let c = match app.registry.get(&id).await {
        Ok(c) => c,
        Err(e) => return failed(&e),
    };
    let Some(preset) = preset::find(c.protocol(), &c.provider) else {
        return super::error_page(StatusCode::INTERNAL_SERVER_ERROR, "Unknown provider", "This connection names a provider this gateway does not know.");
    };
    let mut v = values_of(&c.settings);
    v.insert("display_name".into(), c.display_name.clone());
    let notice = match q.done.as_deref() {
        Some("saved") => Some(format!("Changes saved (version {}).", c.version)),
        Some("keypair") => Some(
            "A new key pair was generated. Download the certificate and register it at your provider; requests are signed with the new key from now on.".into(),
        ),
        _ => None,
    };
    let page = Page { creating: false, id: c.id.clone(), preset, version: c.version, existing: Some(&c) };
    render_form(&app, &admin, &page, &v, vec![], notice, None, StatusCode::OK)
}

/// `POST /console/connections/{id}`: saves the form over the version it was read at;
/// a change saved by someone else meanwhile is never overwritten.
pub async fn update(State(app): State<AppState>, admin: Admin, Path(id): Path<String>, headers: HeaderMap, form: Form) -> Response {
    if let Some(r) = super::csrf::refusal(&app, &headers, &admin.csrf, form.get("csrf")) {
        return r;
    }
    let c = match app.registry.get(&id).await {
        Ok(c) => c,
        Err(e) => return failed(&e),
    };
    let Some(preset) = preset::find(c.protocol(), &c.provider) else {
        return super::error_page(StatusCode::INTERNAL_SERVER_ERROR, "Unknown provider", "This connection names a provider this gateway does not know.");
    };
    let Some(version) = form.get("version").and_then(|s| s.parse::<i64>().ok()) else {
        return super::error_page(StatusCode::BAD_REQUEST, "Form not readable", "The form does not say which version it edits. Reload the page.");
    };
    let mut v = values_from_form(&form);
    let page = Page { creating: false, id: c.id.clone(), preset, version, existing: Some(&c) };
    if form.get("action") == Some("discover") {
        return match discover_into(&app, preset, &mut v).await {
            Ok(notice) => render_form(&app, &admin, &page, &v, vec![], Some(notice), None, StatusCode::OK),
            Err(errors) => render_form(&app, &admin, &page, &v, errors, None, None, StatusCode::UNPROCESSABLE_ENTITY),
        };
    }
    let mut patch = to_patch(&v, c.protocol(), false, Some(&c));
    if form.get("action") == Some("test") {
        patch.id = Some(id.clone());
        return match test_draft(&app, &admin, &patch).await {
            Ok(r) => r,
            Err(ConnectionError::Invalid(errors)) => render_form(&app, &admin, &page, &v, errors, None, None, StatusCode::UNPROCESSABLE_ENTITY),
            Err(e) => failed(&e),
        };
    }
    match app.registry.update_admission(&id, &patch, Some(version), &admin.identity.actor()).await {
        Ok((saved, admission_changed)) => {
            // Who may sign in changed: sessions admitted under the old rules end, as through the API.
            if admission_changed || !saved.active {
                match app.sessions.remove_connection(&id).await {
                    Ok(n) => tracing::info!(connection = %id, sessions = n, "sessions of the connection ended"),
                    Err(e) => return super::unavailable(&e),
                }
            }
            Redirect::to(&format!("/console/connections/{}?done=saved", urlencode(&saved.id))).into_response()
        }
        Err(ConnectionError::Stale { current }) => render_form(&app, &admin, &page, &v, vec![], None, Some(current), StatusCode::CONFLICT),
        Err(ConnectionError::Invalid(errors)) => render_form(&app, &admin, &page, &v, errors, None, None, StatusCode::UNPROCESSABLE_ENTITY),
        Err(ConnectionError::Conflict(m)) => render_form(&app, &admin, &page, &v, conflict_errors(&m), None, None, StatusCode::CONFLICT),
        Err(e) => failed(&e),
    }
}

// ---------------------------------------------------------------------------------
// SP key pair

/// `POST /console/connections/{id}/sp-keypair`: a new request-signing key pair.
pub async fn generate_keypair(State(app): State<AppState>, admin: Admin, Path(id): Path<String>, headers: HeaderMap, form: Form) -> Response {
    if let Some(r) = super::csrf::refusal(&app, &headers, &admin.csrf, form.get("csrf")) {
        return r;
    }
    match app.registry.generate_sp_keypair(&id, &admin.identity.actor()).await {
        Ok(c) => Redirect::to(&format!("/console/connections/{}?done=keypair#section-security", urlencode(&c.id))).into_response(),
        Err(ConnectionError::Invalid(e)) => {
            super::error_page(StatusCode::UNPROCESSABLE_ENTITY, "No key pair", &e.first().map(|f| f.message.clone()).unwrap_or_default())
        }
        Err(e) => failed(&e),
    }
}

/// `GET /console/connections/{id}/sp-certificate`: the PEM to register at the IdP.
pub async fn sp_certificate(State(app): State<AppState>, _admin: Admin, Path(id): Path<String>) -> Response {
    let c = match app.registry.get(&id).await {
        Ok(c) => c,
        Err(e) => return failed(&e),
    };
    let Some(pem) = c.settings.upstream.saml().and_then(|s| s.sp_certificate.clone()) else {
        return super::error_page(StatusCode::NOT_FOUND, "No certificate", "This connection has no request-signing key pair yet. Generate one on its page.");
    };
    let disposition = format!("attachment; filename=\"{}-sp.crt\"", c.id);
    ([(header::CONTENT_TYPE, "application/x-pem-file".to_string()), (header::CONTENT_DISPOSITION, disposition)], pem).into_response()
}

// ---------------------------------------------------------------------------------
// Delete

/// Users linked to a connection. The store has no index by connection, so this reads
/// every user's links: fine for a confirmation page, not for a hot path.
async fn linked_users(app: &AppState, id: &str) -> Result<usize, crate::store::StoreError> {
    let mut n = 0;
    for u in app.store.user_list().await? {
        if app.store.links_of_user(&u.id).await?.iter().any(|l| l.connection_id == id) {
            n += 1;
        }
    }
    Ok(n)
}

/// `GET /console/connections/{id}/delete`: what deleting ends, and the button.
pub async fn confirm_delete(State(app): State<AppState>, admin: Admin, Path(id): Path<String>) -> Response {
    let c = match app.registry.get(&id).await {
        Ok(c) => c,
        Err(e) => return failed(&e),
    };
    let sessions = match app.sessions.list_connection(&id, app.clock.now()).await {
        Ok(l) => l.len(),
        Err(e) => return super::unavailable(&e),
    };
    let linked = match linked_users(&app, &id).await {
        Ok(n) => n,
        Err(e) => return super::unavailable(&e),
    };
    let granted = match app.directory.granted_by(&id).await {
        Ok(g) => g.len(),
        Err(e) => return super::unavailable(&e),
    };
    let view = views::Delete { chrome: chrome(&admin), id: c.id, name: c.display_name, active: c.active, sessions, linked, granted };
    super::render(StatusCode::OK, &view)
}

/// `POST /console/connections/{id}/delete`: deletes it, ends its sessions, and rewrites
/// the groups of the sessions whose memberships it had granted.
pub async fn delete(State(app): State<AppState>, admin: Admin, Path(id): Path<String>, headers: HeaderMap, form: Form) -> Response {
    if let Some(r) = super::csrf::refusal(&app, &headers, &admin.csrf, form.get("csrf")) {
        return r;
    }
    // Whose groups change with the memberships it granted: known only before it goes.
    let granted = match app.directory.granted_by(&id).await {
        Ok(g) => g,
        Err(e) => return super::unavailable(&e),
    };
    if let Err(e) = app.registry.delete(&id, &admin.identity.actor()).await {
        return failed(&e);
    }
    if let Err(e) = app.sessions.remove_connection(&id).await {
        return super::unavailable(&e);
    }
    if !granted.is_empty() {
        let groups = match app.directory.session_groups(&granted).await {
            Ok(g) => g,
            Err(e) => return super::unavailable(&e),
        };
        if let Err(e) = app.sessions.set_groups(&groups).await {
            return super::unavailable(&e);
        }
    }
    Redirect::to("/console/connections?done=deleted").into_response()
}

#[cfg(test)]
mod vendor_tests {
    use super::*;

    #[test]
    fn allow_rules_and_the_group_map_round_trip_through_the_form() {
        let mut s = crate::connection::preset::find(Protocol::Oidc, "google").unwrap().settings();
        s.allow = vec![AllowRule { claim: "hd".into(), values: vec!["example.com".into(), "corp.example".into()] }];
        s.group_mapping.map.insert("CN=Admins,OU=Groups,DC=corp,DC=example".into(), "Ops".into());
        s.group_mapping.map.insert("/parent/child".into(), "Child".into());
        s.group_mapping.unmapped = Unmapped::Ignore;
        let v = values_of(&s);
        assert_eq!(v["allow"], "hd = example.com, corp.example");
        let p = to_patch(&v, Protocol::Oidc, false, None);
        assert_eq!(p.allow.as_deref(), Some(&s.allow[..]));
        assert_eq!(p.group_mapping.as_ref(), Some(&s.group_mapping), "DNs keep their '=': the separator is =>");
        assert_eq!(p.oidc.unwrap().issuer_aliases, Some(vec!["accounts.google.com".to_string()]));
        // A line without a separator is kept, for validation to name.
        assert_eq!(allow_rules("hd"), vec![AllowRule { claim: "hd".into(), values: vec![] }]);
        assert_eq!(group_map("lonely").get("lonely").map(String::as_str), Some(""));
        assert!(allow_rules("\n  \n").is_empty());
    }
}
