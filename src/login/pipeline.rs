//! The one login pipeline after the upstream seam: replay check, the email requirement,
//! mapping clean-up, directory resolution and the group plan; then either apply it and
//! start the session (a real login) or stop and report everything it would have done,
//! writing nothing (the Test Provider dry run). Both modes run the same steps up to the
//! one place that decides.

use serde::Serialize;

use super::error::{LoginError, Reason, Step};
use crate::app::AppState;
use crate::connection::Connection;
use crate::directory::provision::{Found, Refusal, Resolution};
use crate::directory::sync::Plan;
use crate::mapping::Identity;
use crate::state::Session;
use crate::upstream::Verified;

/// What the pipeline is for.
#[derive(Debug, Clone)]
pub enum Mode {
    /// A user signs in: apply the plan and start a session.
    Login {
        /// The session this browser had before this login: it ends when the new one
        /// starts, so a login in the same browser never leaves the previous one alive.
        previous_session: Option<String>,
    },
    /// An admin tries the connection: report, write nothing.
    DryRun,
}

/// What a login did or would do.
#[derive(Debug)]
pub enum Outcome {
    /// A session was started.
    Session(Box<Session>),
    /// The dry run's report.
    Report(Box<Report>),
}

/// What a real login would have done, as the dry run found it.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The identity as the directory would take it (after clean-up).
    pub identity: Identity,
    /// Which user: `link` (already linked), `email` (an existing user by verified email,
    /// to be linked), `create`, or `refuse`.
    pub user: UserOutcome,
    /// The group sync plan (empty when sync is off or no groups claim came).
    pub groups: Plan,
    /// The session's groups after the plan.
    pub session_groups: Vec<String>,
}

/// The user a login would sign in as.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum UserOutcome {
    /// Already linked to this connection and subject.
    Link {
        /// The user.
        user_id: String,
        /// Their username.
        username: String,
    },
    /// An existing (or invited) user with the same verified email; a link would be made.
    Email {
        /// The user.
        user_id: String,
        /// Their username.
        username: String,
    },
    /// A new user would be created.
    Create {
        /// The username it would get.
        username: String,
        /// Its email.
        email: Option<String>,
    },
    /// The login would be refused.
    Refuse {
        /// Why, as the user would read it.
        reason: String,
    },
}

fn user_outcome(r: &Resolution) -> UserOutcome {
    match &r.found {
        Found::Linked(u) => UserOutcome::Link { user_id: u.id.clone(), username: u.username.clone() },
        Found::ByEmail(u) => UserOutcome::Email { user_id: u.id.clone(), username: u.username.clone() },
        Found::New { username, email } => UserOutcome::Create { username: username.clone(), email: email.clone() },
    }
}

/// Runs the pipeline for a verified reply.
pub async fn run(app: &AppState, conn: &Connection, verified: Verified, mode: Mode) -> Result<Outcome, LoginError> {
    let Verified { identity, require_verified_email, upstream_token, session_until, replay, auth_time, .. } = verified;
    let refused = |e: LoginError| e.connection(&conn.id);
    // Replay: an assertion is accepted once, for as long as it could be presented; a
    // dry run spends it too, so a tested assertion can never be replayed as a login.
    if let Some((key, ttl)) = replay {
        match app.ephemeral.put_new(&key, "1", ttl).await {
            Ok(true) => {}
            Ok(false) => return Err(refused(LoginError::forbidden(Step::Replay, "this SAML assertion was already used (replayed)").reason(Reason::Replay))),
            Err(e) => return Err(refused(LoginError::state_unavailable(Step::Replay, &e))),
        }
    }
    // The requirement is met by what the IdP vouched for; then what cannot be stored is
    // dropped (an email that is not an address: the login goes on without one).
    let checked = if require_verified_email { crate::directory::provision::require_verified(&identity) } else { Ok(()) };
    let identity = crate::directory::provision::sanitize(&identity, &conn.id);
    let resolution = match checked {
        Ok(()) => app.directory.resolve(conn, &identity, false).await,
        Err(refusal) => Err(refusal),
    };
    let resolution = match (resolution, &mode) {
        (Ok(r), _) => r,
        (Err(Refusal::Store(e)), _) => return Err(refused(LoginError::store_unavailable(Step::Directory, &e))),
        (Err(refusal), Mode::DryRun) => {
            let report = Report { identity, user: UserOutcome::Refuse { reason: refusal.to_string() }, groups: Plan::default(), session_groups: vec![] };
            return Ok(Outcome::Report(Box::new(report)));
        }
        (Err(refusal), Mode::Login { .. }) => {
            let e = LoginError::forbidden(Step::Directory, refusal.to_string());
            let e = match &refusal {
                Refusal::EmailNotVerified(_) => e.reason(Reason::EmailNotVerified),
                Refusal::NoAccount => e.reason(Reason::NoAccount),
                Refusal::Disabled(user) => e.reason(Reason::UserDisabled).user(user),
                Refusal::Store(_) => e,
            };
            return Err(refused(e));
        }
    };
    let previous_session = match mode {
        Mode::DryRun => {
            let report = Report { user: user_outcome(&resolution), session_groups: resolution.group_names(), groups: resolution.plan, identity };
            return Ok(Outcome::Report(Box::new(report)));
        }
        Mode::Login { previous_session } => previous_session,
    };
    let user = app.directory.apply(conn, &identity, &resolution).await.map_err(|e| refused(LoginError::store_unavailable(Step::Directory, &e)))?;
    let now = app.clock.now();
    let lifetime_ms = (app.config.session.lifetime_seconds * 1000) as i64;
    let expires_at = session_until.map_or(now + lifetime_ms, |until| until.min(now + lifetime_ms));
    let session = Session {
        id: crate::id::token(32),
        user_id: user.id.clone(),
        connection_id: conn.id.clone(),
        username: user.username.clone(),
        email: user.email.clone(),
        email_verified: session_email_verified(&identity, user.email.as_deref()),
        name: user.profile.name.clone(),
        groups: resolution.group_names(),
        created_at: now,
        expires_at,
        idle_timeout_ms: (app.config.session.idle_seconds * 1000) as i64,
        last_seen: now,
        profile: user.profile.clone(),
        upstream_token,
        auth_time: auth_time.map(|t| t.min(now)),
    };
    app.sessions.create(&session).await.map_err(|e| refused(LoginError::state_unavailable(Step::Session, &e)))?;
    let session = settle(app, session).await.map_err(refused)?;
    if let Some(previous) = previous_session.filter(|p| *p != session.id) {
        if let Err(e) = app.sessions.remove(&previous).await {
            tracing::warn!(error = %e, "the previous session of this browser could not be ended");
        }
    }
    tracing::info!(user_id = %user.id, connection = %conn.id, "login");
    Ok(Outcome::Session(Box::new(session)))
}

/// Brings a session just stored in line with the directory and the connection as they
/// are now. An admin change saved while this login ran (a membership or a group, the
/// account disabled or removed, the connection turned off) was applied to the live
/// sessions before this one existed, and this login read the directory before it: read
/// once more now that the session is visible, so that no session keeps what the admin
/// took away. A change saved after this read reaches the session like any other.
async fn settle(app: &AppState, mut session: Session) -> Result<Session, LoginError> {
    let end = |e: LoginError| async {
        if let Err(cause) = app.sessions.remove(&session.id).await {
            tracing::error!(error = %cause, user_id = %session.user_id, "a session refused at login could not be removed");
        }
        Err(e)
    };
    // One read: the user's status, the connection, the user's groups.
    let seen = match app.store.session_check(&session.user_id, &session.connection_id).await {
        Ok(seen) => seen,
        Err(e) => return end(LoginError::store_unavailable(Step::Session, &e)).await,
    };
    if seen.user_status.is_none_or(|s| s == crate::store::UserStatus::Disabled) {
        let why = "your account here was disabled while you were signing in; ask an administrator to enable it";
        return end(LoginError::forbidden(Step::Session, why).reason(Reason::UserDisabled).user(&session.user_id)).await;
    }
    if !seen.connection_active {
        return end(LoginError::forbidden(Step::Session, "this sign-in method was turned off while you were signing in")).await;
    }
    let groups = crate::directory::session_group_names(seen.groups);
    if groups != session.groups {
        let users = std::collections::BTreeMap::from([(session.user_id.clone(), groups.clone())]);
        if let Err(e) = app.sessions.set_groups(&users).await {
            return end(LoginError::state_unavailable(Step::Session, &e)).await;
        }
        session.groups = groups;
    }
    Ok(session)
}

/// Whether the session's email counts as verified by this login.
///
/// Decision: the session's `email` stays the stored user's address (what the directory,
/// and so every app, knows the user by); its `email_verified` is true only when this
/// login's identity carries that same address (ASCII case-insensitively, anything else
/// exactly, as the directory compares) and the IdP verified it in this login. A linked
/// user whose IdP now vouches for another address keeps the stored address, unverified.
fn session_email_verified(identity: &Identity, stored: Option<&str>) -> bool {
    identity.email_verified == Some(true) && matches!((identity.email.as_deref(), stored), (Some(mine), Some(stored)) if mine.eq_ignore_ascii_case(stored))
}

#[cfg(test)]
mod tests {
    use crate::mapping::Identity;

    #[test]
    fn session_email_is_verified_only_when_this_login_verified_that_very_address() {
        let id = |email: Option<&str>, verified: Option<bool>| Identity {
            subject: "s".into(),
            email: email.map(str::to_string),
            email_verified: verified,
            ..Default::default()
        };
        for (email, verified, stored, want) in [
            (Some("a@x.test"), Some(true), Some("a@x.test"), true),
            (Some("A@X.test"), Some(true), Some("a@x.test"), true),
            (Some("b@x.test"), Some(true), Some("a@x.test"), false),
            (Some("a@x.test"), Some(false), Some("a@x.test"), false),
            (Some("a@x.test"), None, Some("a@x.test"), false),
            (None, Some(true), Some("a@x.test"), false),
            (Some("a@x.test"), Some(true), None, false),
            (Some("\u{212A}@x.test"), Some(true), Some("k@x.test"), false),
            (Some("a@x.test\u{A0}"), Some(true), Some("a@x.test"), false),
        ] {
            assert_eq!(super::session_email_verified(&id(email, verified), stored), want, "{email:?} {verified:?} {stored:?}");
        }
    }
}
