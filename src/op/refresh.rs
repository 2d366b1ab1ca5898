//! Refresh tokens. Each is random, kept in the state store under its SHA-256 only, for
//! one client and one gateway session, in a *family* (the tokens that descend from one
//! code exchange). A refresh spends the token and hands out its successor (rotation on
//! every use); the spent token's hash is remembered, so presenting it again (a stolen
//! copy, or the thief's after the owner's) revokes the whole family, access tokens too
//! (OAuth 2.0 Security BCP, RFC 9700 4.14). Kept in the same store as sessions, they
//! end with the session at the latest: a refresh needs the session alive, so logout,
//! an admin ending the session, and disabling or removing the user all kill them.
//!
//! Every marker (a spent token, a revoked family) lives until the family's session
//! ends — kept in the record, not read from the configuration, which may change — and
//! revoking a family also deletes its one live token.
//!
//! Bounded: every entry expires with its session, a family has at most
//! [`ROTATIONS_MAX`] refreshes, and the state store's own bounds (`state.memory_max_*`,
//! Redis `maxmemory`) cap the rest.

use serde::{Deserialize, Serialize};

use crate::app::AppState;
use crate::clock::Millis;
use crate::state::StateError;

/// What a refresh token stands for (no `Debug`: it holds the session id).
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct RefreshRecord {
    /// The family it belongs to.
    pub family: String,
    /// The gateway session it lives within.
    pub session_id: String,
    /// The client it was issued to.
    pub client_id: String,
    /// The scope granted at the code exchange (a refresh may narrow, never widen it).
    pub scope: String,
    /// How many refreshes the family has had: at [`ROTATIONS_MAX`] it ends, so one
    /// client cannot pile up spent-token markers without bound.
    #[serde(default)]
    pub generation: u32,
    /// When its session ends (epoch ms): the family's tokens live no longer, so its
    /// spent and revoked markers must live this long (not the configured lifetime,
    /// which may since have been shortened). 0 in records from before it was kept.
    #[serde(default)]
    pub until: Millis,
}

/// What a spent token's marker holds: its family, and when the family's session ends.
#[derive(Serialize, Deserialize)]
struct Spent {
    family: String,
    until: Millis,
}

/// Refreshes one family may have; then the user signs in again.
pub const ROTATIONS_MAX: u32 = 10_000;

/// What presenting a refresh token found.
pub(crate) enum Presented {
    /// A live token, now spent: its successor must be issued.
    Live(RefreshRecord),
    /// A token already spent: its family (and when its session ends) must be revoked.
    Reused(String, Millis),
    /// Unknown, expired, or of a revoked family.
    Unknown,
}

fn key(token: &str) -> String {
    format!("rt:{}", super::hashed(token))
}

fn spent_key(token: &str) -> String {
    format!("rt-spent:{}", super::hashed(token))
}

fn revoked_key(family: &str) -> String {
    format!("rt-family-revoked:{family}")
}

fn live_key(family: &str) -> String {
    format!("rt-family-live:{family}")
}

/// How long a family's markers (spent tokens, revocation) are remembered: as long as
/// any of its tokens could live, that is until its session's end `until`. A record
/// from before the end was kept (`until` 0) falls back on the configured lifetime.
fn marker_ttl(app: &AppState, until: Millis) -> Millis {
    if until > 0 {
        (until - app.clock.now()).max(1000)
    } else {
        (app.config.session.lifetime_seconds * 1000) as i64
    }
}

/// A new family's name.
pub(crate) fn new_family() -> String {
    crate::id::token(16)
}

/// Issues a refresh token for `rec`, alive until `rec.until` (the session's end), and
/// remembers it as its family's live token (so revoking the family deletes it too).
pub(crate) async fn issue(app: &AppState, rec: &RefreshRecord) -> Result<String, StateError> {
    let token = crate::id::token(32);
    let ttl = (rec.until - app.clock.now()).max(1000);
    let stored = serde_json::to_string(rec).map_err(|e| StateError(e.to_string()))?;
    if !app.ephemeral.put_new(&key(&token), &stored, ttl).await? {
        return Err(StateError("the state store did not keep the refresh token (full, or a collision)".into()));
    }
    // One live token per family (rotation spends the previous one): replace the pointer.
    let _ = app.ephemeral.take(&live_key(&rec.family)).await?;
    app.ephemeral.put_new(&live_key(&rec.family), &key(&token), ttl).await?;
    Ok(token)
}

/// Spends `token`: a live one is taken (and remembered as spent until `until`'s
/// default, its family's lifetime), a spent one is reported as reused.
pub(crate) async fn present(app: &AppState, token: &str) -> Result<Presented, StateError> {
    if let Some(raw) = app.ephemeral.take(&key(token)).await? {
        let Ok(rec) = serde_json::from_str::<RefreshRecord>(&raw) else { return Ok(Presented::Unknown) };
        // Remembered before anything else can fail: a copy presented later is a reuse.
        let spent = serde_json::to_string(&Spent { family: rec.family.clone(), until: rec.until }).map_err(|e| StateError(e.to_string()))?;
        app.ephemeral.put_new(&spent_key(token), &spent, marker_ttl(app, rec.until)).await?;
        if family_revoked(app, &rec.family).await? {
            return Ok(Presented::Unknown);
        }
        return Ok(Presented::Live(rec));
    }
    match app.ephemeral.get(&spent_key(token)).await? {
        // A marker from before the session's end was kept holds the bare family.
        Some(raw) => Ok(match serde_json::from_str::<Spent>(&raw) {
            Ok(s) => Presented::Reused(s.family, s.until),
            Err(_) => Presented::Reused(raw, 0),
        }),
        None => Ok(Presented::Unknown),
    }
}

/// The family of a live refresh token, without spending it (for revocation and
/// introspection).
pub(crate) async fn peek(app: &AppState, token: &str) -> Result<Option<RefreshRecord>, StateError> {
    let Some(raw) = app.ephemeral.get(&key(token)).await? else { return Ok(None) };
    let Ok(rec) = serde_json::from_str::<RefreshRecord>(&raw) else { return Ok(None) };
    if family_revoked(app, &rec.family).await? {
        return Ok(None);
    }
    Ok(Some(rec))
}

/// Whether `family` was revoked.
pub(crate) async fn family_revoked(app: &AppState, family: &str) -> Result<bool, StateError> {
    Ok(app.ephemeral.get(&revoked_key(family)).await?.is_some())
}

/// Revokes every refresh token of `family` and the access tokens issued with them:
/// the revocation is remembered until the family's session ends (`until`, 0 if not
/// known), and the family's live refresh token is deleted outright.
pub(crate) async fn revoke_family(app: &AppState, family: &str, until: Millis) -> Result<(), StateError> {
    app.ephemeral.put_new(&revoked_key(family), "1", marker_ttl(app, until)).await?;
    if let Some(live) = app.ephemeral.take(&live_key(family)).await? {
        app.ephemeral.take(&live).await?;
    }
    Ok(())
}
