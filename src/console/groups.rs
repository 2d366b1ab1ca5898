//! The Groups pages: the table (name, description, members, id), a new group with its
//! members, a group's page (edit, members with the source of each membership, add and
//! remove), and deletion.
//!
//! Built-in groups are marked and protected as the product says: `Users` is everyone and
//! cannot be edited; `Admins` and `Queue admins` keep their names and cannot be deleted.
//! A membership group sync granted shows which connection granted it and has no Remove
//! button; a hand-made POST to remove one is refused (409): the IdP's next login would
//! only grant it again, and SECURITY.md wants sync to remove exactly what it added.
//!
//! Members are picked with a type-ahead over `GET /console/users/search` (the script adds
//! it); without the script the same field takes usernames or emails, separated by commas.

use std::collections::BTreeSet;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::common::{self, enc};
use super::form::Form;
use super::session::Admin;
use super::users::{connection_names, source_label};
use super::views::Chrome;
use crate::app::AppState;
use crate::directory::{DirectoryError, GroupInput};
use crate::store::{Builtin, Source, UserQuery};
use crate::web::ApiPath;

/// `?done=&who=`
#[derive(Debug, Default, Deserialize)]
pub struct DoneQuery {
    /// What just happened (a code).
    done: Option<String>,
    /// Whom or what it happened to (shown escaped).
    who: Option<String>,
}

/// The Groups table.
#[derive(Template)]
#[template(path = "groups.html")]
pub struct GroupsPage {
    /// Frame.
    pub chrome: Chrome,
    /// One per group.
    pub rows: Vec<GroupRow>,
    /// What just happened.
    pub notice: Option<String>,
}

/// A group in the table.
pub struct GroupRow {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Members.
    pub members: usize,
    /// The first few members' usernames.
    pub preview: Vec<String>,
    /// Built in (cannot be deleted).
    pub builtin: bool,
    /// `Users`: everyone, not editable.
    pub everyone: bool,
    /// Declared in the configuration file.
    pub managed: bool,
}

/// Members named in the table, per group.
const PREVIEW: usize = 3;

async fn reach_sessions(app: &AppState, users: BTreeSet<String>) -> Result<(), Response> {
    if users.is_empty() {
        return Ok(());
    }
    let groups = app.directory.session_groups(&users).await.map_err(common::directory_refusal)?;
    match app.sessions.set_groups(&groups).await {
        Ok(n) => {
            tracing::info!(users = groups.len(), sessions = n, "console: live sessions given their new groups");
            Ok(())
        }
        Err(e) => {
            tracing::error!(error = %e, "a saved console change did not reach the live sessions");
            Err(super::error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Saved, not yet applied",
                "The change is saved, but live sessions could not be updated because the state store is unavailable. End the affected users' sessions once it is back.",
            ))
        }
    }
}

async fn everyone(app: &AppState) -> Result<usize, Response> {
    match app.store.user_page(&UserQuery { limit: 1, ..Default::default() }).await {
        Ok(p) => Ok(p.total as usize),
        Err(e) => Err(super::unavailable(&e)),
    }
}

/// `GET /console/groups`
pub async fn list(State(app): State<AppState>, admin: Admin, Query(q): Query<DoneQuery>) -> Response {
    let groups = match app.store.group_list().await {
        Ok(g) => g,
        Err(e) => return super::unavailable(&e),
    };
    let all = match everyone(&app).await {
        Ok(n) => n,
        Err(r) => return r,
    };
    let mut rows = Vec::new();
    let mut previews: Vec<Vec<String>> = vec![];
    // One query per group (there are few groups; never one per user).
    for g in groups {
        let (members, preview) = if g.builtin == Some(Builtin::Users) {
            (all, vec![])
        } else {
            match app.store.memberships_of_group(&g.id).await {
                Ok(m) => {
                    let ids = m.into_iter().map(|m| m.user_id).collect::<BTreeSet<_>>();
                    (ids.len(), ids.into_iter().take(PREVIEW).collect())
                }
                Err(e) => return super::unavailable(&e),
            }
        };
        previews.push(preview);
        rows.push(GroupRow {
            everyone: g.builtin == Some(Builtin::Users),
            builtin: g.builtin.is_some(),
            managed: g.managed_by.is_some(),
            id: g.id,
            name: g.name,
            description: g.description,
            members,
            preview: vec![],
        });
    }
    // The first few members of every group by name, in one read.
    let wanted: Vec<String> = previews.iter().flatten().cloned().collect::<BTreeSet<_>>().into_iter().collect();
    let names: std::collections::BTreeMap<String, String> = match app.store.users_by_ids(&wanted).await {
        Ok(u) => u.into_iter().map(|u| (u.id, u.username)).collect(),
        Err(e) => return super::unavailable(&e),
    };
    for (row, ids) in rows.iter_mut().zip(previews) {
        row.preview = ids.iter().filter_map(|id| names.get(id).cloned()).collect();
        row.preview.sort_by_key(|n| n.to_ascii_lowercase());
    }
    // Built-in groups first, then by name.
    rows.sort_by_key(|r| (!r.builtin, r.name.to_ascii_lowercase()));
    let who = super::common::notice_name(&app, q.who.as_deref(), "The group");
    let notice = match q.done.as_deref() {
        Some("deleted") => Some(format!("{who} was deleted, with the memberships it carried.")),
        _ => None,
    };
    super::render(StatusCode::OK, &GroupsPage { chrome: Chrome::at(&admin, "groups"), rows, notice })
}

/// A new group, or a group's settings.
#[derive(Template)]
#[template(path = "group-form.html")]
pub struct GroupForm {
    /// Frame.
    pub chrome: Chrome,
    /// Name, as typed.
    pub name: String,
    /// Description, as typed.
    pub description: String,
    /// The members typed (no-script path).
    pub typed: String,
    /// Members already picked (kept when the form comes back with errors).
    pub picked: Vec<Picked>,
    /// What was wrong.
    pub errors: Vec<String>,
}

/// A member picked with the type-ahead.
pub struct Picked {
    /// User id.
    pub id: String,
    /// Username.
    pub label: String,
}

/// `GET /console/groups/new`
pub async fn new_form(admin: Admin) -> Response {
    let view = GroupForm {
        chrome: Chrome::at(&admin, "groups"),
        name: String::new(),
        description: String::new(),
        typed: String::new(),
        picked: vec![],
        errors: vec![],
    };
    super::render(StatusCode::OK, &view)
}

/// The users a form names: picked ids (`member`) and typed usernames or emails (`members`,
/// comma- or line-separated). Returns the ids, what was picked, and what matched nobody.
async fn members_of(app: &AppState, form: &Form) -> Result<(BTreeSet<String>, Vec<Picked>, Vec<String>), Response> {
    let mut ids = BTreeSet::new();
    let mut picked = vec![];
    let (mut unknown, mut ambiguous): (Vec<String>, Vec<String>) = (vec![], vec![]);
    for (_, id) in form.fields().iter().filter(|(k, _)| k == "member").take(500) {
        match app.store.user_get(id).await {
            Ok(Some(u)) => {
                if ids.insert(u.id.clone()) {
                    picked.push(Picked { id: u.id, label: u.username });
                }
            }
            Ok(None) => unknown.push(id.chars().take(64).collect()),
            Err(e) => return Err(super::unavailable(&e)),
        }
    }
    let typed = form.get("members").unwrap_or("");
    for entry in typed.split([',', '\n', ';']).map(str::trim).filter(|s| !s.is_empty()).take(500) {
        let mut found: Vec<_> = match app.store.user_page(&UserQuery { search: Some(entry.to_string()), limit: 200, ..Default::default() }).await {
            Ok(p) => p
                .users
                .into_iter()
                .filter(|u| crate::store::same_name(&u.username, entry) || u.email.as_deref().is_some_and(|e| crate::store::same_name(e, entry)))
                .collect(),
            Err(e) => return Err(super::unavailable(&e)),
        };
        // One user's username may be another's email: a typed name that fits two users is
        // refused, never resolved to whichever sorts first (it could grant the wrong person).
        match found.len() {
            0 => unknown.push(entry.chars().take(128).collect()),
            1 => {
                let u = found.remove(0);
                if ids.insert(u.id.clone()) {
                    picked.push(Picked { id: u.id, label: u.username });
                }
            }
            _ => ambiguous.push(entry.chars().take(128).collect::<String>()),
        }
    }
    let mut refusals = vec![];
    if !unknown.is_empty() {
        refusals.push(format!(
            "No user is named {}: check the spelling, or invite them first.",
            unknown.iter().map(|u| format!("“{u}”")).collect::<Vec<_>>().join(", ")
        ));
    }
    if !ambiguous.is_empty() {
        refusals.push(format!(
            "{} names more than one user (a username and another user's email): pick them from the list as you type.",
            ambiguous.iter().map(|u| format!("“{u}”")).collect::<Vec<_>>().join(", ")
        ));
    }
    Ok((ids, picked, refusals))
}

async fn add_manual(app: &AppState, group_id: &str, ids: &BTreeSet<String>, actor: &str) -> Result<(), Response> {
    for uid in ids {
        app.directory.add_member(group_id, uid, actor).await.map_err(common::directory_refusal)?;
    }
    reach_sessions(app, ids.clone()).await
}

/// `POST /console/groups`: a new group with its first members.
pub async fn create(State(app): State<AppState>, admin: Admin, headers: HeaderMap, form: Form) -> Response {
    if let Some(r) = common::refused(&app, &admin, &headers, &form) {
        return r;
    }
    let name = form.get("name").unwrap_or("").to_string();
    let description = form.get("description").unwrap_or("").to_string();
    let (ids, picked, refused) = match members_of(&app, &form).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    let again = |errors: Vec<String>, status: StatusCode| {
        let view = GroupForm {
            chrome: Chrome::at(&admin, "groups"),
            name: name.clone(),
            description: description.clone(),
            typed: form.get("members").unwrap_or("").to_string(),
            picked,
            errors,
        };
        super::render(status, &view)
    };
    if !refused.is_empty() {
        return again(refused, StatusCode::UNPROCESSABLE_ENTITY);
    }
    let input = GroupInput { name: Some(name.clone()), description: Some(description.clone()) };
    let actor = admin.identity.actor();
    let g = match app.directory.create_group(&input, &actor).await {
        Ok(g) => g,
        Err(DirectoryError::Store(e)) => return super::unavailable(&e),
        Err(e) => {
            let e = crate::web::ApiError::from(e);
            let status = if e.status == StatusCode::CONFLICT { StatusCode::CONFLICT } else { StatusCode::UNPROCESSABLE_ENTITY };
            return again(common::problems(&e), status);
        }
    };
    if let Err(r) = add_manual(&app, &g.id, &ids, &actor).await {
        return r;
    }
    Redirect::to(&format!("/console/groups/{}?done=created", enc(&g.id))).into_response()
}

/// A group's page.
#[derive(Template)]
#[template(path = "group.html")]
pub struct GroupPage {
    /// Frame.
    pub chrome: Chrome,
    /// Id.
    pub id: String,
    /// Name (as stored, or as typed when the form came back).
    pub name: String,
    /// Description.
    pub description: String,
    /// `Users`: everyone, not editable.
    pub everyone: bool,
    /// Built in: the name is fixed, it cannot be deleted.
    pub builtin: bool,
    /// Declared in the configuration file: name and description change there.
    pub managed: bool,
    /// Members with the sources of their memberships (not for `Users`).
    pub members: Vec<MemberRow>,
    /// How many users (for `Users`).
    pub everyone_count: usize,
    /// What just happened.
    pub notice: Option<String>,
    /// What was wrong.
    pub errors: Vec<String>,
    /// The add-members field's text (empty).
    pub typed: String,
    /// The add-members field's picks (none).
    pub picked: Vec<Picked>,
}

/// A member on a group's page.
pub struct MemberRow {
    /// User id.
    pub user_id: String,
    /// Username.
    pub username: String,
    /// Email.
    pub email: Option<String>,
    /// Each source: "added by hand", "synced from Okta".
    pub sources: Vec<String>,
    /// Has a manual membership (removable by hand).
    pub manual: bool,
}

async fn group_page(
    app: &AppState,
    admin: &Admin,
    id: &str,
    status: StatusCode,
    notice: Option<String>,
    errors: Vec<String>,
    typed: Option<(&str, &str)>,
) -> Response {
    let g = match app.directory.group(id).await {
        Ok(g) => g,
        Err(e) => return common::directory_refusal(e),
    };
    let everyone = g.builtin == Some(Builtin::Users);
    let connections = match connection_names(app).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let mut members = vec![];
    let mut everyone_count = 0;
    if everyone {
        everyone_count = match self::everyone(app).await {
            Ok(n) => n,
            Err(r) => return r,
        };
    } else {
        // The members' memberships, then those users in one query per 500 (never the
        // whole directory, never a query per member).
        let memberships = match app.store.memberships_of_group(id).await {
            Ok(m) => m,
            Err(e) => return super::unavailable(&e),
        };
        let mut sources: std::collections::BTreeMap<String, Vec<Source>> = std::collections::BTreeMap::new();
        for m in memberships {
            sources.entry(m.user_id).or_default().push(m.source);
        }
        let ids: Vec<String> = sources.keys().cloned().collect();
        let users = match app.store.users_by_ids(&ids).await {
            Ok(u) => u,
            Err(e) => return super::unavailable(&e),
        };
        for u in users {
            let s = sources.remove(&u.id).unwrap_or_default();
            members.push(MemberRow {
                manual: s.contains(&Source::Manual),
                sources: s.iter().map(|s| source_label(s, &connections)).collect(),
                user_id: u.id,
                username: u.username,
                email: u.email,
            });
        }
    }
    let (name, description) = typed.map(|(n, d)| (n.to_string(), d.to_string())).unwrap_or((g.name.clone(), g.description.clone()));
    let view = GroupPage {
        chrome: Chrome::at(admin, "groups"),
        id: g.id,
        name,
        description,
        everyone,
        builtin: g.builtin.is_some(),
        managed: g.managed_by.is_some(),
        members,
        everyone_count,
        notice,
        errors,
        typed: String::new(),
        picked: vec![],
    };
    super::render(status, &view)
}

/// `GET /console/groups/{id}`
pub async fn show(State(app): State<AppState>, admin: Admin, ApiPath(id): ApiPath<String>, Query(q): Query<DoneQuery>) -> Response {
    let who = super::common::notice_name(&app, q.who.as_deref(), "The user");
    let notice = match q.done.as_deref() {
        Some("created") => Some("The group was created.".to_string()),
        Some("saved") => Some("Saved.".to_string()),
        Some("added") => Some("Members added (by hand: group sync never removes them).".to_string()),
        Some("removed") => Some(format!("{who} is no longer a member by hand.")),
        _ => None,
    };
    group_page(&app, &admin, &id, StatusCode::OK, notice, vec![], None).await
}

/// `POST /console/groups/{id}`: name and description.
pub async fn update(State(app): State<AppState>, admin: Admin, ApiPath(id): ApiPath<String>, headers: HeaderMap, form: Form) -> Response {
    if let Some(r) = common::refused(&app, &admin, &headers, &form) {
        return r;
    }
    let name = form.get("name").map(str::to_string);
    let description = form.get("description").unwrap_or("").to_string();
    let input = GroupInput { name: name.clone(), description: Some(description.clone()) };
    match app.directory.update_group(&id, &input, &admin.identity.actor()).await {
        Ok(_) => {}
        Err(DirectoryError::Store(e)) => return super::unavailable(&e),
        Err(DirectoryError::NotFound(w)) => return common::directory_refusal(DirectoryError::NotFound(w)),
        Err(e) => {
            let e = crate::web::ApiError::from(e);
            let status = if e.status == StatusCode::CONFLICT { StatusCode::CONFLICT } else { StatusCode::UNPROCESSABLE_ENTITY };
            let typed = name.clone().unwrap_or_default();
            return group_page(&app, &admin, &id, status, None, common::problems(&e), Some((&typed, &description))).await;
        }
    }
    if name.is_some() {
        // A rename: the sessions of its members carry the old name.
        match app.directory.member_ids(&id).await {
            Ok(m) => {
                if let Err(r) = reach_sessions(&app, m).await {
                    return r;
                }
            }
            Err(e) => return common::directory_refusal(e),
        }
    }
    Redirect::to(&format!("/console/groups/{}?done=saved", enc(&id))).into_response()
}

/// `POST /console/groups/{id}/members`: manual memberships for the users the form names.
pub async fn add_members(State(app): State<AppState>, admin: Admin, ApiPath(id): ApiPath<String>, headers: HeaderMap, form: Form) -> Response {
    if let Some(r) = common::refused(&app, &admin, &headers, &form) {
        return r;
    }
    let (ids, _, refused) = match members_of(&app, &form).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    if !refused.is_empty() {
        return group_page(&app, &admin, &id, StatusCode::UNPROCESSABLE_ENTITY, None, refused, None).await;
    }
    if ids.is_empty() {
        return group_page(&app, &admin, &id, StatusCode::UNPROCESSABLE_ENTITY, None, vec!["Pick at least one user to add.".into()], None).await;
    }
    if let Err(r) = add_manual(&app, &id, &ids, &admin.identity.actor()).await {
        return r;
    }
    Redirect::to(&format!("/console/groups/{}?done=added", enc(&id))).into_response()
}

/// `POST /console/groups/{id}/members/{user_id}/remove`: a manual membership goes; one
/// that group sync granted is refused (409), saying which connection manages it.
pub async fn remove_member(
    State(app): State<AppState>,
    admin: Admin,
    ApiPath((id, user_id)): ApiPath<(String, String)>,
    headers: HeaderMap,
    form: Form,
) -> Response {
    if let Some(r) = common::refused(&app, &admin, &headers, &form) {
        return r;
    }
    let memberships = match app.store.memberships_of_user(&user_id).await {
        Ok(m) => m,
        Err(e) => return super::unavailable(&e),
    };
    let here: Vec<&Source> = memberships.iter().filter(|m| m.group_id == id).map(|m| &m.source).collect();
    if !here.contains(&&Source::Manual) {
        if let Some(Source::Connection(c)) = here.first() {
            let names = connection_names(&app).await.unwrap_or_default();
            let name = names.get(c).cloned().unwrap_or_else(|| c.clone());
            return super::error_page(
                StatusCode::CONFLICT,
                "Not changed",
                &format!("This membership was synced from {name}: its group sync adds and removes it at each sign-in, so it cannot be removed by hand. Change the user's groups at the identity provider. Nothing was changed."),
            );
        }
    }
    if let Err(e) = app.directory.remove_member(&id, &user_id, &admin.identity.actor()).await {
        return common::directory_refusal(e);
    }
    if let Err(r) = reach_sessions(&app, BTreeSet::from([user_id.clone()])).await {
        return r;
    }
    let who = app.store.user_get(&user_id).await.ok().flatten().map(|u| u.username).unwrap_or(user_id);
    Redirect::to(&format!("/console/groups/{}?done=removed&who={}", enc(&id), super::common::sealed_name(&app, &who))).into_response()
}

/// The delete confirmation.
#[derive(Template)]
#[template(path = "group-delete.html")]
pub struct DeletePage {
    /// Frame.
    pub chrome: Chrome,
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Members who lose it.
    pub members: usize,
}

/// `GET /console/groups/{id}/delete`
pub async fn confirm_delete(State(app): State<AppState>, admin: Admin, ApiPath(id): ApiPath<String>) -> Response {
    let g = match app.directory.group(&id).await {
        Ok(g) => g,
        Err(e) => return common::directory_refusal(e),
    };
    if g.builtin.is_some() {
        return super::error_page(StatusCode::CONFLICT, "Built in", &format!("{} is a built-in group and cannot be deleted.", g.name));
    }
    let members = match app.directory.member_ids(&id).await {
        Ok(m) => m.len(),
        Err(e) => return common::directory_refusal(e),
    };
    super::render(StatusCode::OK, &DeletePage { chrome: Chrome::at(&admin, "groups"), id: g.id, name: g.name, members })
}

/// `POST /console/groups/{id}/delete`: the group goes with its memberships; its members'
/// live sessions lose it.
pub async fn delete(State(app): State<AppState>, admin: Admin, ApiPath(id): ApiPath<String>, headers: HeaderMap, form: Form) -> Response {
    if let Some(r) = common::refused(&app, &admin, &headers, &form) {
        return r;
    }
    let g = match app.directory.group(&id).await {
        Ok(g) => g,
        Err(e) => return common::directory_refusal(e),
    };
    // Its members are known only before it goes.
    let members = match app.directory.member_ids(&id).await {
        Ok(m) => m,
        Err(e) => return common::directory_refusal(e),
    };
    if let Err(e) = app.directory.delete_group(&id, &admin.identity.actor()).await {
        return common::directory_refusal(e);
    }
    if let Err(r) = reach_sessions(&app, members).await {
        return r;
    }
    Redirect::to(&format!("/console/groups?done=deleted&who={}", super::common::sealed_name(&app, &g.name))).into_response()
}
