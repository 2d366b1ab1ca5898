//! Admin routes for users, groups, memberships and invitations.

use std::collections::BTreeSet;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;

use super::ACTOR;
use crate::app::AppState;
use crate::directory::{GroupInput, GroupView, InvitationView, LinkInput, MemberView, NewInvitation, NewUser, UserPatch, UserView};
use crate::web::error::ErrorBody;
use crate::web::{ApiError, ApiJson, ApiPath};

/// Makes a saved change to memberships or groups reach the live sessions of `users`, on
/// every replica within a second: their groups are recomputed from the store and
/// written into each of their sessions (`/auth`, `/oauth2/userinfo` and the OpenID
/// Provider read the groups there, without asking the store per request).
pub(super) async fn reach_sessions(app: &AppState, users: BTreeSet<String>) -> Result<(), ApiError> {
    if users.is_empty() {
        return Ok(());
    }
    let groups = app.directory.session_groups(&users).await?;
    let n = app.sessions.set_groups(&groups).await.map_err(|e| not_reached(&e))?;
    tracing::info!(users = groups.len(), sessions = n, "live sessions given their new groups");
    Ok(())
}

/// The change was saved but live sessions did not take it: say so, not just "retry".
pub(super) fn not_reached(e: &crate::state::StateError) -> ApiError {
    tracing::error!(error = %e, "a saved admin change did not reach the live sessions");
    ApiError::new(
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "the change is saved, but live sessions could not be updated because the state store is unavailable; end the affected users' sessions once it is back",
    )
}

/// All users with their groups.
#[utoipa::path(get, path = "/users", tag = "users", security(("admin_token" = [])),
    responses((status = 200, body = [UserView]), (status = 401, body = ErrorBody)))]
pub async fn list_users(State(app): State<AppState>) -> Result<Json<Vec<UserView>>, ApiError> {
    let mut out = Vec::new();
    for u in app.directory.users().await? {
        out.push(app.directory.user_view(u).await?);
    }
    Ok(Json(out))
}

/// Creates an active user.
#[utoipa::path(post, path = "/users", tag = "users", request_body = NewUser, security(("admin_token" = [])),
    responses((status = 201, body = UserView), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_user(State(app): State<AppState>, ApiJson(input): ApiJson<NewUser>) -> Result<(StatusCode, Json<UserView>), ApiError> {
    let u = app.directory.create_user(&input, ACTOR).await?;
    Ok((StatusCode::CREATED, Json(app.directory.user_view(u).await?)))
}

/// One user.
#[utoipa::path(get, path = "/users/{id}", tag = "users", params(("id" = String, Path, description = "User id")),
    security(("admin_token" = [])), responses((status = 200, body = UserView), (status = 404, body = ErrorBody)))]
pub async fn get_user(State(app): State<AppState>, ApiPath(id): ApiPath<String>) -> Result<Json<UserView>, ApiError> {
    let u = app.directory.user(&id).await?;
    Ok(Json(app.directory.user_view(u).await?))
}

/// Changes a user's username or email, or disables or enables the user. Disabling ends
/// every session of the user (503, and nothing changed, when the state store is away).
#[utoipa::path(patch, path = "/users/{id}", tag = "users", params(("id" = String, Path, description = "User id")),
    request_body = UserPatch, security(("admin_token" = [])),
    responses((status = 200, body = UserView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn update_user(State(app): State<AppState>, ApiPath(id): ApiPath<String>, ApiJson(p): ApiJson<UserPatch>) -> Result<Json<UserView>, ApiError> {
    let disabling = p.disabled == Some(true);
    if disabling {
        // As for a removal: first (so a store outage changes nothing), and again after,
        // for a login that finished in between.
        app.directory.user(&id).await?;
        app.sessions.remove_user(&id).await.map_err(|e| ApiError::unavailable(&e))?;
    }
    let u = app.directory.update_user(&id, &p, ACTOR).await?;
    if disabling {
        let ended = app.sessions.remove_user(&id).await.map_err(|e| ApiError::unavailable(&e))?;
        tracing::info!(user_id = %id, sessions = ended, "user disabled");
    }
    Ok(Json(app.directory.user_view(u).await?))
}

/// How many sessions were ended.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct SessionsEnded {
    /// Sessions ended.
    pub ended: usize,
}

/// A live session, as the admin's list shows it: named by its public `sid` (the `sid` of
/// tokens), never by its id (the cookie).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct SessionView {
    /// The session's public name; `DELETE /users/{id}/sessions/{sid}` ends it.
    pub sid: String,
    /// Whose session it is.
    pub user_id: String,
    /// The connection it was started through.
    pub connection_id: String,
    /// Started (RFC 3339).
    pub created_at: String,
    /// Ends at the latest (RFC 3339).
    pub expires_at: String,
}

fn session_views(mut list: Vec<(String, crate::state::Session)>) -> Vec<SessionView> {
    list.sort_by_key(|(_, s)| std::cmp::Reverse(s.created_at));
    let view = |(sid, s): (String, crate::state::Session)| SessionView {
        sid,
        user_id: s.user_id,
        connection_id: s.connection_id,
        created_at: crate::clock::rfc3339(s.created_at),
        expires_at: crate::clock::rfc3339(s.expires_at),
    };
    list.into_iter().map(view).collect()
}

/// The live sessions started through a connection, newest first.
#[utoipa::path(get, path = "/connections/{id}/sessions", tag = "connections", params(("id" = String, Path, description = "Connection id")),
    security(("admin_token" = [])), responses((status = 200, body = [SessionView]), (status = 503, body = ErrorBody)))]
pub async fn list_connection_sessions(State(app): State<AppState>, ApiPath(id): ApiPath<String>) -> Result<Json<Vec<SessionView>>, ApiError> {
    let list = app.sessions.list_connection(&id, app.clock.now()).await.map_err(|e| ApiError::unavailable(&e))?;
    Ok(Json(session_views(list)))
}

/// The live sessions of a user, newest first.
#[utoipa::path(get, path = "/users/{id}/sessions", tag = "users", params(("id" = String, Path, description = "User id")),
    security(("admin_token" = [])), responses((status = 200, body = [SessionView]), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn list_user_sessions(State(app): State<AppState>, ApiPath(id): ApiPath<String>) -> Result<Json<Vec<SessionView>>, ApiError> {
    app.directory.user(&id).await?;
    let list = app.sessions.list_user(&id, app.clock.now()).await.map_err(|e| ApiError::unavailable(&e))?;
    Ok(Json(session_views(list)))
}

/// Ends one session of a user (on every replica).
#[utoipa::path(delete, path = "/users/{id}/sessions/{sid}", tag = "users",
    params(("id" = String, Path, description = "User id"), ("sid" = String, Path, description = "The session's sid, from the list")),
    security(("admin_token" = [])), responses((status = 204, description = "Ended"), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn end_user_session(State(app): State<AppState>, ApiPath((id, sid)): ApiPath<(String, String)>) -> Result<StatusCode, ApiError> {
    app.directory.user(&id).await?;
    if !app.sessions.remove_sid(&id, &sid).await.map_err(|e| ApiError::unavailable(&e))? {
        return Err(ApiError::not_found(format!("session {sid} of user {id}")));
    }
    app.directory.audit_sessions_ended(&id, 1, ACTOR).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Ends every session of a user (on every replica); the user may log in again.
#[utoipa::path(delete, path = "/users/{id}/sessions", tag = "users", params(("id" = String, Path, description = "User id")),
    security(("admin_token" = [])), responses((status = 200, body = SessionsEnded), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn end_user_sessions(State(app): State<AppState>, ApiPath(id): ApiPath<String>) -> Result<Json<SessionsEnded>, ApiError> {
    app.directory.user(&id).await?;
    let ended = app.sessions.remove_user(&id).await.map_err(|e| ApiError::unavailable(&e))?;
    app.directory.audit_sessions_ended(&id, ended, ACTOR).await?;
    Ok(Json(SessionsEnded { ended }))
}

/// Removes a user, their links, memberships and invitation.
#[utoipa::path(delete, path = "/users/{id}", tag = "users", params(("id" = String, Path, description = "User id")),
    security(("admin_token" = [])), responses((status = 204, description = "Deleted"), (status = 404, body = ErrorBody)))]
pub async fn delete_user(State(app): State<AppState>, ApiPath(id): ApiPath<String>) -> Result<StatusCode, ApiError> {
    // Removing a user ends their sessions too: first, so that with the state store away
    // nothing is removed (503) rather than a removed user keeping live sessions; and
    // again after, for a login that finished in between.
    let before = app.sessions.remove_user(&id).await.map_err(|e| ApiError::unavailable(&e))?;
    app.directory.delete_user(&id, ACTOR).await?;
    let after = app.sessions.remove_user(&id).await.map_err(|e| ApiError::unavailable(&e))?;
    tracing::info!(user_id = %id, sessions = before + after, "user removed");
    Ok(StatusCode::NO_CONTENT)
}

/// Links a user to an upstream identity (connection, subject) ahead of their first login
/// through that connection, replacing the user's link there if any.
#[utoipa::path(put, path = "/users/{id}/links/{connection_id}", tag = "users",
    params(("id" = String, Path, description = "User id"), ("connection_id" = String, Path, description = "Connection id")),
    request_body = LinkInput, security(("admin_token" = [])),
    responses((status = 200, body = UserView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn link_user(
    State(app): State<AppState>,
    ApiPath((id, connection_id)): ApiPath<(String, String)>,
    ApiJson(input): ApiJson<LinkInput>,
) -> Result<Json<UserView>, ApiError> {
    let u = app.directory.link_user(&id, &connection_id, &input, ACTOR).await?;
    Ok(Json(app.directory.user_view(u).await?))
}

/// Removes a user's link on a connection.
#[utoipa::path(delete, path = "/users/{id}/links/{connection_id}", tag = "users",
    params(("id" = String, Path, description = "User id"), ("connection_id" = String, Path, description = "Connection id")),
    security(("admin_token" = [])), responses((status = 204, description = "Unlinked"), (status = 404, body = ErrorBody)))]
pub async fn unlink_user(State(app): State<AppState>, ApiPath((id, connection_id)): ApiPath<(String, String)>) -> Result<StatusCode, ApiError> {
    app.directory.unlink_user(&id, &connection_id, ACTOR).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// All groups with member counts.
#[utoipa::path(get, path = "/groups", tag = "groups", security(("admin_token" = [])),
    responses((status = 200, body = [GroupView])))]
pub async fn list_groups(State(app): State<AppState>) -> Result<Json<Vec<GroupView>>, ApiError> {
    Ok(Json(app.directory.groups().await?))
}

/// Creates a group.
#[utoipa::path(post, path = "/groups", tag = "groups", request_body = GroupInput, security(("admin_token" = [])),
    responses((status = 201, body = GroupView), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_group(State(app): State<AppState>, ApiJson(input): ApiJson<GroupInput>) -> Result<(StatusCode, Json<GroupView>), ApiError> {
    Ok((StatusCode::CREATED, Json(app.directory.create_group(&input, ACTOR).await?)))
}

/// One group.
#[utoipa::path(get, path = "/groups/{id}", tag = "groups", params(("id" = String, Path, description = "Group id")),
    security(("admin_token" = [])), responses((status = 200, body = GroupView), (status = 404, body = ErrorBody)))]
pub async fn get_group(State(app): State<AppState>, ApiPath(id): ApiPath<String>) -> Result<Json<GroupView>, ApiError> {
    Ok(Json(app.directory.group_view(&id).await?))
}

/// Renames a group or changes its description (`Users` cannot be edited).
#[utoipa::path(patch, path = "/groups/{id}", tag = "groups", params(("id" = String, Path, description = "Group id")),
    request_body = GroupInput, security(("admin_token" = [])),
    responses((status = 200, body = GroupView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update_group(State(app): State<AppState>, ApiPath(id): ApiPath<String>, ApiJson(input): ApiJson<GroupInput>) -> Result<Json<GroupView>, ApiError> {
    let view = app.directory.update_group(&id, &input, ACTOR).await?;
    if input.name.is_some() {
        // A rename: the sessions of its members carry the old name.
        reach_sessions(&app, app.directory.member_ids(&id).await?).await?;
    }
    Ok(Json(view))
}

/// Deletes a group and the memberships it carried (built-in groups: 409).
#[utoipa::path(delete, path = "/groups/{id}", tag = "groups", params(("id" = String, Path, description = "Group id")),
    security(("admin_token" = [])),
    responses((status = 204, description = "Deleted"), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete_group(State(app): State<AppState>, ApiPath(id): ApiPath<String>) -> Result<StatusCode, ApiError> {
    // Its members are known only before it goes.
    let members = app.directory.member_ids(&id).await?;
    app.directory.delete_group(&id, ACTOR).await?;
    reach_sessions(&app, members).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Members of a group, with the source of each membership.
#[utoipa::path(get, path = "/groups/{id}/members", tag = "groups", params(("id" = String, Path, description = "Group id")),
    security(("admin_token" = [])), responses((status = 200, body = [MemberView]), (status = 404, body = ErrorBody)))]
pub async fn list_members(State(app): State<AppState>, ApiPath(id): ApiPath<String>) -> Result<Json<Vec<MemberView>>, ApiError> {
    Ok(Json(app.directory.members(&id).await?))
}

/// Adds a user to a group by hand (group sync never removes such a membership).
#[utoipa::path(put, path = "/groups/{id}/members/{user_id}", tag = "groups",
    params(("id" = String, Path, description = "Group id"), ("user_id" = String, Path, description = "User id")),
    security(("admin_token" = [])),
    responses((status = 204, description = "Member"), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn add_member(State(app): State<AppState>, ApiPath((id, user_id)): ApiPath<(String, String)>) -> Result<StatusCode, ApiError> {
    app.directory.add_member(&id, &user_id, ACTOR).await?;
    reach_sessions(&app, BTreeSet::from([user_id])).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Removes a manual membership.
#[utoipa::path(delete, path = "/groups/{id}/members/{user_id}", tag = "groups",
    params(("id" = String, Path, description = "Group id"), ("user_id" = String, Path, description = "User id")),
    security(("admin_token" = [])),
    responses((status = 204, description = "Removed"), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn remove_member(State(app): State<AppState>, ApiPath((id, user_id)): ApiPath<(String, String)>) -> Result<StatusCode, ApiError> {
    app.directory.remove_member(&id, &user_id, ACTOR).await?;
    reach_sessions(&app, BTreeSet::from([user_id])).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// All invitations.
#[utoipa::path(get, path = "/invitations", tag = "invitations", security(("admin_token" = [])),
    responses((status = 200, body = [InvitationView])))]
pub async fn list_invitations(State(app): State<AppState>) -> Result<Json<Vec<InvitationView>>, ApiError> {
    Ok(Json(app.directory.invitations().await?))
}

/// Invites an address: a pending user who becomes active at first login; with
/// `connection_id` and `subject`, linked at once to that upstream identity.
#[utoipa::path(post, path = "/invitations", tag = "invitations", request_body = NewInvitation, security(("admin_token" = [])),
    responses((status = 201, body = InvitationView), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_invitation(State(app): State<AppState>, ApiJson(input): ApiJson<NewInvitation>) -> Result<(StatusCode, Json<InvitationView>), ApiError> {
    Ok((StatusCode::CREATED, Json(app.directory.invite(&input, ACTOR).await?)))
}

/// Withdraws an invitation (and its user while still pending).
#[utoipa::path(delete, path = "/invitations/{id}", tag = "invitations", params(("id" = String, Path, description = "Invitation id")),
    security(("admin_token" = [])), responses((status = 204, description = "Deleted"), (status = 404, body = ErrorBody)))]
pub async fn delete_invitation(State(app): State<AppState>, ApiPath(id): ApiPath<String>) -> Result<StatusCode, ApiError> {
    app.directory.delete_invitation(&id, ACTOR).await?;
    Ok(StatusCode::NO_CONTENT)
}
