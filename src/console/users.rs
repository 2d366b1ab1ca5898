//! The Users page: every user of the directory with status, invitation date, groups (and
//! where each membership came from) and linked identities; search and paging; invite by
//! email with groups; disable and enable; remove (which ends the user's sessions).
//!
//! The table is read in a fixed number of queries whatever its size: one page of users
//! with their memberships and links ([`crate::store::Store::user_page`]), the groups and
//! the connections (for names). No query per row, so 10 000 users page as fast as ten.
//!
//! Decision: an admin cannot disable or remove their own user from the console (the next
//! click would lock them out mid-change); another admin, or the admin token, can.

use std::collections::{BTreeMap, BTreeSet};

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::common::{self, date, enc};
use super::form::Form;
use super::session::{Admin, Identity};
use super::views::Chrome;
use crate::app::AppState;
use crate::directory::NewInvitation;
use crate::store::{Builtin, Source, UserQuery, UserStatus};
use crate::web::ApiPath;

/// Users per page.
pub const PAGE_SIZE: i64 = 50;

/// `?q=&status=&page=&done=&who=`
#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    q: Option<String>,
    status: Option<String>,
    page: Option<String>,
    /// What just happened (a code, never text to show).
    done: Option<String>,
    /// Whom it happened to (shown escaped).
    who: Option<String>,
}

/// The Users table.
#[derive(Template)]
#[template(path = "users.html")]
pub struct UsersPage {
    /// Frame.
    pub chrome: Chrome,
    /// The search, as typed.
    pub q: String,
    /// The status filter (`active`, `pending`, `disabled`, or empty).
    pub status: String,
    /// One per user on this page.
    pub rows: Vec<UserRow>,
    /// Users matching in all.
    pub total: i64,
    /// "1–50 of 10 000".
    pub range: String,
    /// The previous page's link.
    pub prev: Option<String>,
    /// The next page's link.
    pub next: Option<String>,
    /// What just happened.
    pub notice: Option<String>,
}

/// A user in the table.
pub struct UserRow {
    /// Id.
    pub id: String,
    /// Username.
    pub username: String,
    /// Email, when it differs from the username.
    pub email: Option<String>,
    /// Full name from the IdP.
    pub name: Option<String>,
    /// `active`, `pending` or `disabled`.
    pub status: &'static str,
    /// `Active`, `Pending` or `Disabled`.
    pub status_label: &'static str,
    /// When invited, for people.
    pub invited: Option<String>,
    /// Groups (not `Users`, which is everyone).
    pub groups: Vec<GroupChip>,
    /// Linked upstream identities.
    pub identities: Vec<IdentityChip>,
    /// This is the signed-in admin.
    pub me: bool,
}

/// A membership as the table shows it.
pub struct GroupChip {
    /// Group name.
    pub name: String,
    /// "added by hand", "synced from Okta".
    pub source: String,
    /// Granted by group sync (not by hand).
    pub synced: bool,
}

/// A linked identity.
pub struct IdentityChip {
    /// The connection's name.
    pub connection: String,
    /// The upstream subject.
    pub subject: String,
}

fn status_of(s: UserStatus) -> (&'static str, &'static str) {
    match s {
        UserStatus::Active => ("active", "Active"),
        UserStatus::Pending => ("pending", "Pending"),
        UserStatus::Disabled => ("disabled", "Disabled"),
    }
}

/// How a membership's source reads: "added by hand", "synced from <connection>".
pub fn source_label(source: &Source, connections: &BTreeMap<String, String>) -> String {
    match source {
        Source::Manual => "added by hand".into(),
        Source::Connection(id) => format!("synced from {}", connections.get(id).map(String::as_str).unwrap_or(id)),
    }
}

/// Connection ids to display names.
pub async fn connection_names(app: &AppState) -> Result<BTreeMap<String, String>, Response> {
    let list = app.store.connection_list(crate::store::ConnectionSort::Name, false).await.map_err(|e| super::unavailable(&e))?;
    Ok(list.into_iter().map(|c| (c.id, c.display_name)).collect())
}

fn user_id_of(admin: &Admin) -> Option<&str> {
    match &admin.identity {
        Identity::User { user_id, .. } => Some(user_id),
        Identity::AdminToken => None,
    }
}

/// `GET /console/users`
pub async fn list(State(app): State<AppState>, admin: Admin, Query(q): Query<ListQuery>) -> Response {
    let search = match common::param("search", q.q.as_deref()) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let status = match q.status.as_deref().unwrap_or("") {
        "" => None,
        "active" => Some(UserStatus::Active),
        "pending" => Some(UserStatus::Pending),
        "disabled" => Some(UserStatus::Disabled),
        _ => return super::error_page(StatusCode::BAD_REQUEST, "Not understood", "The status filter is one of active, pending or disabled."),
    };
    let page: i64 = match q.page.as_deref().unwrap_or("1").parse::<i64>() {
        Ok(p) if (1..=1_000_000).contains(&p) => p,
        _ => return super::error_page(StatusCode::BAD_REQUEST, "Not understood", "The page is a number from 1."),
    };
    let query = UserQuery { search: search.clone(), status, offset: (page - 1) * PAGE_SIZE, limit: PAGE_SIZE };
    let found = match app.store.user_page(&query).await {
        Ok(p) => p,
        Err(e) => return super::unavailable(&e),
    };
    let groups: BTreeMap<String, String> = match app.store.group_list().await {
        Ok(g) => g.into_iter().map(|g| (g.id, g.name)).collect(),
        Err(e) => return super::unavailable(&e),
    };
    let connections = match connection_names(&app).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let mut chips: BTreeMap<&str, Vec<GroupChip>> = BTreeMap::new();
    for m in &found.memberships {
        let Some(name) = groups.get(&m.group_id) else { continue };
        chips.entry(m.user_id.as_str()).or_default().push(GroupChip {
            name: name.clone(),
            source: source_label(&m.source, &connections),
            synced: m.source != Source::Manual,
        });
    }
    let mut idents: BTreeMap<&str, Vec<IdentityChip>> = BTreeMap::new();
    for l in &found.links {
        idents.entry(l.user_id.as_str()).or_default().push(IdentityChip {
            connection: connections.get(&l.connection_id).cloned().unwrap_or_else(|| l.connection_id.clone()),
            subject: l.subject.clone(),
        });
    }
    let me = user_id_of(&admin);
    let rows: Vec<UserRow> = found
        .users
        .iter()
        .map(|u| {
            let (status, status_label) = status_of(u.status);
            let mut g = chips.remove(u.id.as_str()).unwrap_or_default();
            g.sort_by_key(|a| a.name.to_ascii_lowercase());
            UserRow {
                id: u.id.clone(),
                username: u.username.clone(),
                email: u.email.clone().filter(|e| *e != u.username),
                name: u.profile.name.clone(),
                status,
                status_label,
                invited: u.invited_at.map(date),
                groups: g,
                identities: idents.remove(u.id.as_str()).unwrap_or_default(),
                me: me == Some(u.id.as_str()),
            }
        })
        .collect();
    let link = |p: i64| {
        let mut s = format!("/console/users?page={p}");
        if let Some(q) = &search {
            s.push_str(&format!("&q={}", enc(q)));
        }
        if let Some(st) = q.status.as_deref().filter(|s| !s.is_empty()) {
            s.push_str(&format!("&status={st}"));
        }
        s
    };
    let first = query.offset + 1;
    let last = query.offset + rows.len() as i64;
    let range = if rows.is_empty() { format!("0 of {}", thousands(found.total)) } else { format!("{first}–{last} of {}", thousands(found.total)) };
    let who = super::common::notice_name(&app, q.who.as_deref(), "the user");
    let notice = match q.done.as_deref() {
        Some("invited") => Some(format!(
            "{who} is invited. They sign in at {}/login with an identity provider that vouches for this address, and then show as active.",
            app.config.public_base()
        )),
        Some("disabled") => Some(format!("{who} is disabled: their sessions ended and they cannot sign in.")),
        Some("enabled") => Some(format!("{who} is enabled again.")),
        Some("removed") => Some(format!("{who} was removed, with their sessions, links and memberships.")),
        _ => None,
    };
    let (prev, next) = ((page > 1).then(|| link(page - 1)), (last < found.total).then(|| link(page + 1)));
    let view = UsersPage {
        chrome: Chrome::at(&admin, "users"),
        q: search.unwrap_or_default(),
        status: q.status.unwrap_or_default(),
        rows,
        total: found.total,
        range,
        prev,
        next,
        notice,
    };
    super::render(StatusCode::OK, &view)
}

/// `10000` as `10 000`.
fn thousands(n: i64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push('\u{202F}');
        }
        out.push(c);
    }
    out
}

/// A user the type-ahead offers.
#[derive(Debug, Serialize)]
pub struct Suggestion {
    /// Id (the form's value).
    pub id: String,
    /// Username.
    pub username: String,
    /// Email.
    pub email: Option<String>,
}

/// `GET /console/users/search?q=`: up to 8 users matching, for the members type-ahead.
pub async fn search(State(app): State<AppState>, _admin: Admin, Query(q): Query<ListQuery>) -> Response {
    let search = match common::param("search", q.q.as_deref()) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let Some(search) = search else { return Json(Vec::<Suggestion>::new()).into_response() };
    match app.store.user_page(&UserQuery { search: Some(search), status: None, offset: 0, limit: 8 }).await {
        Ok(p) => Json(p.users.into_iter().map(|u| Suggestion { id: u.id, username: u.username, email: u.email }).collect::<Vec<_>>()).into_response(),
        Err(e) => super::unavailable(&e),
    }
}

/// The invitation form.
#[derive(Template)]
#[template(path = "invite.html")]
pub struct InvitePage {
    /// Frame.
    pub chrome: Chrome,
    /// The address, as typed.
    pub email: String,
    /// The groups to choose from.
    pub groups: Vec<GroupChoice>,
    /// What was wrong.
    pub errors: Vec<String>,
}

/// A group on the invitation form.
pub struct GroupChoice {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Ticked.
    pub checked: bool,
}

async fn invite_page(app: &AppState, admin: &Admin, status: StatusCode, email: &str, chosen: &BTreeSet<String>, errors: Vec<String>) -> Response {
    let groups = match app.store.group_list().await {
        Ok(g) => g,
        Err(e) => return super::unavailable(&e),
    };
    let groups = groups
        .into_iter()
        .filter(|g| g.builtin != Some(Builtin::Users))
        .map(|g| GroupChoice { checked: chosen.contains(&g.id), id: g.id, name: g.name, description: g.description })
        .collect();
    super::render(status, &InvitePage { chrome: Chrome::at(admin, "users"), email: email.to_string(), groups, errors })
}

/// `GET /console/users/invite`
pub async fn invite_form(State(app): State<AppState>, admin: Admin) -> Response {
    invite_page(&app, &admin, StatusCode::OK, "", &BTreeSet::new(), vec![]).await
}

/// `POST /console/users/invite`: a pending user with manual memberships of the ticked groups.
pub async fn invite(State(app): State<AppState>, admin: Admin, headers: HeaderMap, form: Form) -> Response {
    if let Some(r) = common::refused(&app, &admin, &headers, &form) {
        return r;
    }
    let email = form.get("email").unwrap_or("").trim().to_string();
    let groups: Vec<String> = form.fields().iter().filter(|(k, _)| k == "group").map(|(_, v)| v.clone()).take(200).collect();
    let input = NewInvitation { email: email.clone(), groups: groups.clone(), connection_id: None, subject: None };
    match app.directory.invite(&input, &admin.identity.actor()).await {
        Ok(inv) => {
            tracing::info!(actor = %admin.identity.actor(), user_id = %inv.user_id, "console: user invited");
            Redirect::to(&format!("/console/users?done=invited&who={}&q={}", super::common::sealed_name(&app, &inv.email), enc(&inv.email))).into_response()
        }
        Err(crate::directory::DirectoryError::Store(e)) => super::unavailable(&e),
        Err(e) => {
            let e = crate::web::ApiError::from(e);
            let status = if e.status == StatusCode::CONFLICT { StatusCode::CONFLICT } else { StatusCode::UNPROCESSABLE_ENTITY };
            invite_page(&app, &admin, status, &email, &groups.into_iter().collect(), common::problems(&e)).await
        }
    }
}

/// `POST /console/users/{id}/status` with `disabled=true|false`. Disabling ends every
/// session of the user, first (so a state-store outage changes nothing) and again after
/// (a login that finished in between).
pub async fn set_status(State(app): State<AppState>, admin: Admin, ApiPath(id): ApiPath<String>, headers: HeaderMap, form: Form) -> Response {
    if let Some(r) = common::refused(&app, &admin, &headers, &form) {
        return r;
    }
    let disabling = match form.get("disabled") {
        Some("true") => true,
        Some("false") => false,
        _ => return super::error_page(StatusCode::BAD_REQUEST, "Not understood", "The form says neither disable nor enable; nothing changed."),
    };
    if disabling && user_id_of(&admin) == Some(id.as_str()) {
        return super::error_page(StatusCode::CONFLICT, "Not changed", "You cannot disable your own user; ask another admin. Nothing changed.");
    }
    let user = match app.directory.user(&id).await {
        Ok(u) => u,
        Err(e) => return common::directory_refusal(e),
    };
    if disabling {
        if let Err(e) = app.sessions.remove_user(&id).await {
            return super::unavailable(&e);
        }
    }
    let patch = crate::directory::UserPatch { disabled: Some(disabling), ..Default::default() };
    if let Err(e) = app.directory.update_user(&id, &patch, &admin.identity.actor()).await {
        return common::directory_refusal(e);
    }
    if disabling {
        match app.sessions.remove_user(&id).await {
            Ok(n) => tracing::info!(user_id = %id, sessions = n, "console: user disabled"),
            Err(e) => return super::unavailable(&e),
        }
    }
    let done = if disabling { "disabled" } else { "enabled" };
    Redirect::to(&format!("/console/users?done={done}&who={}&q={}", super::common::sealed_name(&app, &user.username), enc(&user.username))).into_response()
}

/// The removal confirmation.
#[derive(Template)]
#[template(path = "user-remove.html")]
pub struct RemovePage {
    /// Frame.
    pub chrome: Chrome,
    /// Id.
    pub id: String,
    /// Username.
    pub username: String,
    /// Live sessions that end.
    pub sessions: usize,
    /// Linked identities that go.
    pub links: usize,
    /// Memberships that go.
    pub memberships: usize,
}

/// `GET /console/users/{id}/remove`: what a removal ends.
pub async fn confirm_remove(State(app): State<AppState>, admin: Admin, ApiPath(id): ApiPath<String>) -> Response {
    let user = match app.directory.user(&id).await {
        Ok(u) => u,
        Err(e) => return common::directory_refusal(e),
    };
    let sessions = match app.sessions.list_user(&id, app.clock.now()).await {
        Ok(l) => l.len(),
        Err(e) => return super::unavailable(&e),
    };
    let (links, memberships) = match tokio::try_join!(app.store.links_of_user(&id), app.store.memberships_of_user(&id)) {
        Ok((l, m)) => (l.len(), m.len()),
        Err(e) => return super::unavailable(&e),
    };
    super::render(StatusCode::OK, &RemovePage { chrome: Chrome::at(&admin, "users"), id, username: user.username, sessions, links, memberships })
}

/// `POST /console/users/{id}/remove`: the user goes with their links, memberships and
/// invitation; their sessions end on every replica.
pub async fn remove(State(app): State<AppState>, admin: Admin, ApiPath(id): ApiPath<String>, headers: HeaderMap, form: Form) -> Response {
    if let Some(r) = common::refused(&app, &admin, &headers, &form) {
        return r;
    }
    if user_id_of(&admin) == Some(id.as_str()) {
        return super::error_page(StatusCode::CONFLICT, "Not changed", "You cannot remove your own user; ask another admin. Nothing changed.");
    }
    let user = match app.directory.user(&id).await {
        Ok(u) => u,
        Err(e) => return common::directory_refusal(e),
    };
    // First, so that with the state store away nothing is removed; again after, for a
    // login that finished in between.
    let before = match app.sessions.remove_user(&id).await {
        Ok(n) => n,
        Err(e) => return super::unavailable(&e),
    };
    if let Err(e) = app.directory.delete_user(&id, &admin.identity.actor()).await {
        return common::directory_refusal(e);
    }
    let after = match app.sessions.remove_user(&id).await {
        Ok(n) => n,
        Err(e) => return super::unavailable(&e),
    };
    tracing::info!(user_id = %id, sessions = before + after, "console: user removed");
    Redirect::to(&format!("/console/users?done=removed&who={}", super::common::sealed_name(&app, &user.username))).into_response()
}
