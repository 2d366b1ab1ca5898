//! Short-lived state: logins in progress (flow state), one-time authorization codes,
//! the SAML assertion replay cache, and sessions. [`Ephemeral`] and [`Sessions`] are the
//! interfaces; [`memory`] keeps them in this process (one machine), [`redis`] in Redis
//! for several replicas, with [`cache`] in front of session lookups on each replica.
//! [`conformance`] is the suite every backend passes. Expiry uses the injected clock,
//! so tests never sleep.

pub mod cache;
pub mod conformance;
pub mod memory;
pub mod redis;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::clock::Millis;

/// The state backend failed (unreachable, or data unreadable).
#[derive(Debug, thiserror::Error)]
#[error("the state store failed: {0}")]
pub struct StateError(pub String);

/// Result of a state call.
pub type StateResult<T> = Result<T, StateError>;

/// The two state backends the server holds.
pub type Backends = (Arc<dyn Ephemeral>, Arc<dyn Sessions>);

/// A session's last use is recorded to this precision: a touch within it of the last
/// recorded one writes nothing, so the idle timeout may end a session up to this much
/// early, never late.
pub const LAST_SEEN_STEP_MS: Millis = 1000;

/// Single-use values with a time to live: flow state, codes, replay markers.
#[async_trait]
pub trait Ephemeral: Send + Sync + std::fmt::Debug {
    /// Stores `value` under `key` until `ttl_ms` from now, unless a live value is
    /// already there; returns whether this call stored it.
    async fn put_new(&self, key: &str, value: &str, ttl_ms: Millis) -> StateResult<bool>;
    /// Removes and returns the live value: a second `take` of the same key gets nothing.
    async fn take(&self, key: &str) -> StateResult<Option<String>>;
    /// Reads the live value without consuming it.
    async fn get(&self, key: &str) -> StateResult<Option<String>>;
    /// Reachable and answering.
    async fn ping(&self) -> StateResult<()>;
    /// [`put_new`](Self::put_new) for a login's flow state, started by `client`. A backend
    /// that bounds state per client makes room by dropping that client's own oldest flow.
    async fn put_flow(&self, client: &str, key: &str, value: &str, ttl_ms: Millis) -> StateResult<bool> {
        let _ = client;
        self.put_new(key, value, ttl_ms).await
    }
    /// Entries and bytes held, where the backend counts them (in memory; Redis has its
    /// own `maxmemory`).
    fn usage(&self) -> Option<Usage> {
        None
    }
}

/// What a state backend holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Live and not yet swept entries.
    pub entries: usize,
    /// Their estimated bytes.
    pub bytes: usize,
}

/// A logged-in browser. `Debug` leaves out the id (a cookie value) and the upstream token.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// Opaque random id (the cookie value).
    pub id: String,
    /// The user.
    pub user_id: String,
    /// The connection the user logged in with.
    pub connection_id: String,
    /// Username at login.
    pub username: String,
    /// Email at login.
    pub email: Option<String>,
    /// Whether that email was verified upstream.
    pub email_verified: bool,
    /// Display name at login.
    pub name: Option<String>,
    /// Group names: computed at login, rewritten when an admin changes the user's
    /// memberships or one of their groups ([`Sessions::set_groups`]).
    pub groups: Vec<String>,
    /// Created.
    pub created_at: Millis,
    /// Absolute expiry.
    pub expires_at: Millis,
    /// Ends after this long without use.
    pub idle_timeout_ms: Millis,
    /// Last use.
    pub last_seen: Millis,
    /// The user's stored profile at login (given and family name, picture; `name` as
    /// above), for the OpenID Provider's `profile` scope.
    #[serde(default)]
    pub profile: crate::store::Profile,
    /// Upstream token to revoke at logout, when the connection has a revocation endpoint.
    #[serde(default)]
    pub upstream_token: Option<String>,
    /// When the user really authenticated (the upstream's OIDC `auth_time`, SAML
    /// `AuthnInstant`), which may be before the session began; none: at `created_at`.
    #[serde(default)]
    pub auth_time: Option<Millis>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &"[redacted]")
            .field("user_id", &self.user_id)
            .field("connection_id", &self.connection_id)
            .field("groups", &self.groups)
            .field("expires_at", &self.expires_at)
            .field("upstream_token", &self.upstream_token.as_ref().map(|_| "[redacted]"))
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Whether the session is still good at `now`.
    pub fn live(&self, now: Millis) -> bool {
        now < self.expires_at && now < self.last_seen.saturating_add(self.idle_timeout_ms)
    }
}

/// Sessions by id, and by user for revocation.
#[async_trait]
pub trait Sessions: Send + Sync + std::fmt::Debug {
    /// Stores a new session.
    async fn create(&self, s: &Session) -> StateResult<()>;
    /// A live session, its last use moved to `now` (at most [`LAST_SEEN_STEP_MS`]
    /// behind); expired ones are removed. Shared, not copied: `/auth` asks this on every
    /// request.
    async fn touch(&self, id: &str, now: Millis) -> StateResult<Option<Arc<Session>>>;
    /// Ends a session; returns it if it existed.
    async fn remove(&self, id: &str) -> StateResult<Option<Session>>;
    /// Ends every session of a user; returns how many.
    async fn remove_user(&self, user_id: &str) -> StateResult<usize>;
    /// Replaces the groups of every live session of each user in `groups` (user id ->
    /// group names, as a login would compute them now), on every replica: what an
    /// admin changes in the directory binds sessions started before the change.
    /// Returns how many sessions were rewritten.
    async fn set_groups(&self, groups: &BTreeMap<String, Vec<String>>) -> StateResult<usize>;
    /// Ends every session started through a connection (turned off or deleted), on
    /// every replica; returns how many.
    async fn remove_connection(&self, connection_id: &str) -> StateResult<usize>;
    /// The unexpired sessions of a user, each with its [`public_sid`] (never its id, which
    /// is the cookie), for the admin's list.
    async fn list_user(&self, user_id: &str, now: Millis) -> StateResult<Vec<(String, Session)>>;
    /// The unexpired sessions started through a connection, with their [`public_sid`]s.
    async fn list_connection(&self, connection_id: &str, now: Millis) -> StateResult<Vec<(String, Session)>>;
    /// Ends the session of `user_id` whose [`public_sid`] is `sid`, on every replica;
    /// whether there was one.
    async fn remove_sid(&self, user_id: &str, sid: &str) -> StateResult<bool>;
    /// Live sessions per connection (of `connections`, and any other the backend holds
    /// sessions of), for the metrics; `None` where counting is not cheap.
    async fn count_by_connection(&self, connections: &[String], now: Millis) -> StateResult<Option<BTreeMap<String, u64>>> {
        let _ = (connections, now);
        Ok(None)
    }
}

/// The public name of a session (`sid` in tokens, the handle in the admin API): the first
/// half of the SHA-256 of its id, in hex. It names the session without being the cookie.
pub fn public_sid(session_id: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(&Sha256::digest(session_id.as_bytes())[..16])
}
