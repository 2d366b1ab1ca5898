//! The store: connections, the directory (users, links, groups, memberships,
//! invitations), the audit log and the gateway's signing keys.
//!
//! [`Store`] is the one interface; [`sql::Sql`] implements it over SQLite (the default,
//! a file in the data dir) and PostgreSQL (several replicas), with the same queries and
//! migrations run at start. Every change that an admin makes is written together with
//! its audit entry, in one transaction. [`conformance`] is the suite both pass.
//!
//! The store keeps connections as opaque settings (JSON) and sealed secrets: it knows
//! nothing of protocols; `crate::connection` does.

pub mod conformance;
pub mod sql;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::audit::AuditEntry;
use crate::clock::Millis;

/// What can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The named thing does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// A unique value is already taken, or the change contradicts a rule.
    #[error("{0}")]
    Conflict(String),
    /// The record changed since the caller read it (optimistic concurrency).
    #[error("it was changed by someone else (now at version {current}); reload and apply your change again")]
    Stale {
        /// The version now stored.
        current: i64,
    },
    /// The database failed or is unreachable.
    #[error("the database failed: {0}")]
    Backend(#[source] sqlx::Error),
    /// A stored value could not be read back.
    #[error("stored data is unreadable: {0}")]
    Corrupt(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Backend(e)
    }
}

/// Result of a store call.
pub type StoreResult<T> = Result<T, StoreError>;

/// A connection as stored: protocol settings are JSON, secrets are sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredConnection {
    /// Stable, URL-safe id.
    pub id: String,
    /// Unique (case-insensitive) name shown on the login page.
    pub display_name: String,
    /// `oidc` or `saml`.
    pub protocol: String,
    /// Preset the connection was made from.
    pub provider: String,
    /// Shown on the login page and usable for logins.
    pub active: bool,
    /// Protocol settings and claim mappings (JSON).
    pub settings: String,
    /// Secrets, sealed with the master key (JSON object sealed as one value).
    pub secrets: Option<String>,
    /// Creation time.
    pub created_at: Millis,
    /// Last change.
    pub updated_at: Millis,
    /// Incremented on every change; updates name the version they started from.
    pub version: i64,
    /// `config` when the configuration file declares it (read-only through the API).
    pub managed_by: Option<String>,
}

/// A user's status in the directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum UserStatus {
    /// Has logged in, or was created by an admin.
    Active,
    /// Invited by email; becomes active at first login.
    Pending,
    /// Disabled by an admin: cannot log in, and has no sessions.
    Disabled,
}

impl UserStatus {
    fn as_str(self) -> &'static str {
        match self {
            UserStatus::Active => "active",
            UserStatus::Pending => "pending",
            UserStatus::Disabled => "disabled",
        }
    }

    fn parse(s: &str) -> StoreResult<Self> {
        match s {
            "active" => Ok(UserStatus::Active),
            "pending" => Ok(UserStatus::Pending),
            "disabled" => Ok(UserStatus::Disabled),
            other => Err(StoreError::Corrupt(format!("user status {other:?}"))),
        }
    }
}

/// What an identity provider says of a user besides who they are: refreshed at each
/// login from the claims the IdP sends (an absent claim keeps the stored value).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    /// Full name.
    pub name: Option<String>,
    /// Given name.
    pub given_name: Option<String>,
    /// Family name.
    pub family_name: Option<String>,
    /// Picture URL (http or https).
    pub picture: Option<String>,
}

/// A user of the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Stable id (`usr_...`); the `sub` of our session tokens.
    pub id: String,
    /// Unique (case-insensitive).
    pub username: String,
    /// Unique (case-insensitive) when set.
    pub email: Option<String>,
    /// Whether `email` is known to be the user's: entered by an admin, invited, or vouched
    /// for (`email_verified: true`) by the IdP whose login created the user. Only such an
    /// account may be claimed by another login's verified email (SECURITY.md).
    pub email_verified: bool,
    /// Active or pending.
    pub status: UserStatus,
    /// When the user was invited, if they were.
    pub invited_at: Option<Millis>,
    /// Name and picture, as the identity provider last sent them.
    pub profile: Profile,
    /// Creation time.
    pub created_at: Millis,
    /// Last change.
    pub updated_at: Millis,
}

/// A link from an upstream identity (connection + subject) to a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The connection.
    pub connection_id: String,
    /// The upstream subject (OIDC `sub`, SAML NameID or the mapped user id).
    pub subject: String,
    /// The user.
    pub user_id: String,
    /// When the link was made.
    pub created_at: Millis,
}

/// Which built-in group a group is, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Builtin {
    /// `Users`: everyone; membership is implicit and the group cannot be edited.
    Users,
    /// `Admins`: cannot be removed.
    Admins,
    /// `Queue admins`: cannot be removed.
    QueueAdmins,
}

impl Builtin {
    /// The fixed id, name and description of each built-in group.
    pub const ALL: [(Builtin, &'static str, &'static str, &'static str); 3] = [
        (Builtin::Users, "grp_users", "Users", "Everyone in the directory."),
        (Builtin::Admins, "grp_admins", "Admins", "Administrators."),
        (Builtin::QueueAdmins, "grp_queue_admins", "Queue admins", "Administrators of queues."),
    ];

    fn as_str(self) -> &'static str {
        match self {
            Builtin::Users => "users",
            Builtin::Admins => "admins",
            Builtin::QueueAdmins => "queue_admins",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "users" => Some(Builtin::Users),
            "admins" => Some(Builtin::Admins),
            "queue_admins" => Some(Builtin::QueueAdmins),
            _ => None,
        }
    }
}

/// A group of the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// Stable id (`grp_...`).
    pub id: String,
    /// Unique (case-insensitive).
    pub name: String,
    /// Free text.
    pub description: String,
    /// Set for the built-in groups.
    pub builtin: Option<Builtin>,
    /// Creation time.
    pub created_at: Millis,
    /// Last change.
    pub updated_at: Millis,
    /// `config` when the configuration file declares it (read-only through the API).
    pub managed_by: Option<String>,
}

/// Where a membership came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    /// Granted by an admin: group sync never touches it.
    Manual,
    /// Granted by group sync of this connection; removed when the IdP stops asserting it.
    Connection(String),
}

impl Source {
    /// Stored form: `manual` or `connection:ID`.
    pub fn encode(&self) -> String {
        match self {
            Source::Manual => "manual".into(),
            Source::Connection(id) => format!("connection:{id}"),
        }
    }

    /// Parses the stored form.
    pub fn decode(s: &str) -> StoreResult<Self> {
        match s {
            "manual" => Ok(Source::Manual),
            _ => s
                .strip_prefix("connection:")
                .map(|id| Source::Connection(id.to_string()))
                .ok_or_else(|| StoreError::Corrupt(format!("membership source {s:?}"))),
        }
    }
}

/// A user's membership of a group, with its source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    /// The group.
    pub group_id: String,
    /// The user.
    pub user_id: String,
    /// Who granted it.
    pub source: Source,
    /// When.
    pub created_at: Millis,
}

/// What [`Store::session_check`] read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SessionCheck {
    /// The user's status; `None` when the user is gone.
    pub user_status: Option<UserStatus>,
    /// The connection exists and is on.
    pub connection_active: bool,
    /// Names of the groups with a membership of the user.
    pub groups: Vec<String>,
}

/// An invitation by email; it comes with a pending user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invitation {
    /// Stable id (`inv_...`).
    pub id: String,
    /// The invited address.
    pub email: String,
    /// The pending user made for it.
    pub user_id: String,
    /// Who invited.
    pub invited_by: String,
    /// When.
    pub created_at: Millis,
}

/// One of the gateway's own signing keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningKey {
    /// Key id, the JWT `kid`.
    pub kid: String,
    /// `ES256` or `RS256`.
    pub alg: String,
    /// PKCS#8 PEM private key, sealed with the master key.
    pub private_key: String,
    /// The public JWK (JSON).
    pub public_jwk: String,
    /// Creation time.
    pub created_at: Millis,
    /// When it stopped signing; it stays in the JWKS until its tokens expire.
    pub retired_at: Option<Millis>,
}

/// A downstream client: an application that logs its users in through ssogate's
/// OpenID Provider endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    /// The OAuth client id.
    pub client_id: String,
    /// A name for admins.
    pub name: String,
    /// SHA-256 (hex) of the client secret; the secret itself is never stored.
    pub secret_sha256: String,
    /// Exact redirect URIs allowed (JSON list).
    pub redirect_uris: Vec<String>,
    /// Creation time.
    pub created_at: Millis,
    /// Last change.
    pub updated_at: Millis,
    /// `config` when the configuration file declares it (read-only through the API).
    pub managed_by: Option<String>,
    /// How the client authenticates, what it may ask for, where its logouts go.
    pub settings: ClientSettings,
}

/// How a downstream client authenticates at the token endpoint (OIDC Core 9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuthMethod {
    /// HTTP Basic with the client secret (default; `client_secret_post` is accepted too).
    #[default]
    ClientSecretBasic,
    /// The secret in the form (`client_secret_basic` is accepted too).
    ClientSecretPost,
    /// A JWT signed with a key of the client's registered JWKS (RFC 7523).
    PrivateKeyJwt,
    /// A public client (a browser or native app): no secret; PKCE then is required.
    None,
}

/// A client's per-client settings (one JSON column), named as OpenID Connect Dynamic
/// Client Registration names them. Every field has a default, so older rows read as the
/// confidential code-flow client they were.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ClientSettings {
    /// How the client authenticates at the token, revocation and introspection endpoints.
    pub token_endpoint_auth_method: ClientAuthMethod,
    /// Grants beyond `authorization_code`: `refresh_token` lets it have refresh tokens.
    pub grant_types: Vec<String>,
    /// PKCE required on every authorization request (unset: required for public clients).
    pub require_pkce: Option<bool>,
    /// Accept `code_challenge_method=plain` (and a challenge without a method, which RFC
    /// 7636 reads as plain). Off: S256 only.
    pub allow_plain_pkce: bool,
    /// Scopes it may be granted (unset: all the gateway supports); others are dropped.
    pub allowed_scopes: Option<Vec<String>>,
    /// ID token lifetime in seconds (unset: 3600); never past the session's end.
    pub id_token_lifetime_seconds: Option<u32>,
    /// Access token lifetime in seconds (unset: 3600); never past the session's end.
    pub access_token_lifetime_seconds: Option<u32>,
    /// Where RP-initiated logout may send the browser afterwards (exact match).
    pub post_logout_redirect_uris: Vec<String>,
    /// Where logout tokens are POSTed when one of its users' sessions ends.
    pub backchannel_logout_uri: Option<String>,
    /// Its public keys (a JWK Set) for `private_key_jwt`.
    #[schema(value_type = Option<Object>)]
    pub jwks: Option<serde_json::Value>,
    /// Where its public keys are published, for `private_key_jwt`.
    pub jwks_uri: Option<String>,
}

/// One page of the users table: a search, a status, a window. Sorted by username.
#[derive(Debug, Clone, Default)]
pub struct UserQuery {
    /// Part of the username, email or name (ASCII letters without case); empty: everyone.
    pub search: Option<String>,
    /// Only users with this status.
    pub status: Option<UserStatus>,
    /// Users to skip (the page's start).
    pub offset: i64,
    /// At most this many (clamped to 1..=200).
    pub limit: i64,
}

/// A page of users with everything the users table shows of them, read in a fixed number
/// of queries whatever the page size (no query per user).
#[derive(Debug, Clone, Default)]
pub struct UserPage {
    /// The page, by username.
    pub users: Vec<User>,
    /// How many users match the search in all.
    pub total: i64,
    /// Every membership of the users on the page.
    pub memberships: Vec<Membership>,
    /// Every link of the users on the page.
    pub links: Vec<Link>,
}

/// Sort column of the connections table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, utoipa::ToSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionSort {
    /// Display name (case-insensitive).
    #[default]
    Name,
    /// Active first or last.
    Active,
    /// Provider preset.
    Provider,
    /// Protocol.
    Protocol,
    /// Id.
    Id,
    /// Last update.
    UpdatedAt,
}

/// One page of the audit log, newest first, filtered.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Entries with a sequence number below this one.
    pub before: Option<i64>,
    /// At most this many.
    pub limit: i64,
    /// Made by exactly this actor (`admin`, `cli`, `connection:ID`, ...).
    pub actor: Option<String>,
    /// This action exactly, or every action starting with it when it ends in `.`
    /// (`login.` for `login.success` and `login.refused`).
    pub action: Option<String>,
    /// About exactly this target (a connection, user, group, client id).
    pub target: Option<String>,
    /// Touching this connection: its own changes (target) and what was done through it
    /// (actor `connection:ID`: logins, group sync).
    pub connection: Option<String>,
    /// At or after this time.
    pub since: Option<Millis>,
    /// Before this time.
    pub until: Option<Millis>,
}

/// How a connection has been doing: its last login and its last refusal.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectionHealth {
    /// The connection.
    pub connection_id: String,
    /// When a login through it last succeeded.
    pub last_login_at: Option<Millis>,
    /// When a login through it was last refused.
    pub last_error_at: Option<Millis>,
    /// What that refusal said (step, reason, the sentence the user saw).
    pub last_error: Option<String>,
}

/// Everything ssogate keeps durably. Implemented for SQLite and PostgreSQL by
/// [`sql::Sql`]; both pass [`conformance`].
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Reachable and answering.
    async fn ping(&self) -> StoreResult<()>;

    /// A value of the gateway's own metadata (master key check, admin token hash).
    async fn meta_get(&self, key: &str) -> StoreResult<Option<String>>;
    /// Sets a metadata value unless set; returns whether this call set it.
    async fn meta_put_if_absent(&self, key: &str, value: &str) -> StoreResult<bool>;
    /// Sets a metadata value.
    async fn meta_put(&self, key: &str, value: &str) -> StoreResult<()>;

    /// All connections, sorted.
    async fn connection_list(&self, sort: ConnectionSort, descending: bool) -> StoreResult<Vec<StoredConnection>>;
    /// One connection.
    async fn connection_get(&self, id: &str) -> StoreResult<Option<StoredConnection>>;
    /// Adds a connection; `Conflict` when the display name is taken.
    async fn connection_insert(&self, c: &StoredConnection, audit: &AuditEntry) -> StoreResult<()>;
    /// Replaces a connection if it is still at `expected_version`; stores `c.version`.
    async fn connection_update(&self, c: &StoredConnection, expected_version: i64, audit: &AuditEntry) -> StoreResult<()>;
    /// Removes a connection with its links and the memberships it granted.
    async fn connection_delete(&self, id: &str, audit: &AuditEntry) -> StoreResult<()>;

    /// All users, by username.
    async fn user_list(&self) -> StoreResult<Vec<User>>;
    /// A page of users matching `q`, with their memberships and links (four queries).
    async fn user_page(&self, q: &UserQuery) -> StoreResult<UserPage>;
    /// The users with these ids (those that exist), by username: one query per 500 ids.
    async fn users_by_ids(&self, ids: &[String]) -> StoreResult<Vec<User>>;
    /// One user.
    async fn user_get(&self, id: &str) -> StoreResult<Option<User>>;
    /// The user with this email (case-insensitive).
    async fn user_by_email(&self, email: &str) -> StoreResult<Option<User>>;
    /// Adds a user; `Conflict` when the username or email is taken.
    async fn user_insert(&self, u: &User, audit: &AuditEntry) -> StoreResult<()>;
    /// Replaces a user's fields.
    async fn user_update(&self, u: &User, audit: &AuditEntry) -> StoreResult<()>;
    /// Removes a user with their links, memberships and invitations.
    async fn user_delete(&self, id: &str, audit: &AuditEntry) -> StoreResult<()>;

    /// The user linked to an upstream identity.
    async fn link_get(&self, connection_id: &str, subject: &str) -> StoreResult<Option<Link>>;
    /// The user linked to an upstream identity, in one read (the login path).
    async fn user_by_link(&self, connection_id: &str, subject: &str) -> StoreResult<Option<User>>;
    /// A user's links.
    async fn links_of_user(&self, user_id: &str) -> StoreResult<Vec<Link>>;
    /// Links an upstream identity to a user; `Conflict` when it is linked already.
    async fn link_insert(&self, link: &Link, audit: &AuditEntry) -> StoreResult<()>;
    /// Makes `link` the user's one link on its connection (an admin's pre-link), in one
    /// transaction: `NotFound` without the user, `Conflict` when the identity is another
    /// user's; the user's other links on that connection go. Already so: nothing changes,
    /// nothing is audited.
    async fn link_set(&self, link: &Link, audit: &AuditEntry) -> StoreResult<()>;
    /// Removes a user's links on a connection; `NotFound` when there is none.
    async fn link_delete(&self, user_id: &str, connection_id: &str, audit: &AuditEntry) -> StoreResult<()>;

    /// All groups, by name.
    async fn group_list(&self) -> StoreResult<Vec<Group>>;
    /// One group.
    async fn group_get(&self, id: &str) -> StoreResult<Option<Group>>;
    /// Adds a group; `Conflict` when the name is taken.
    async fn group_insert(&self, g: &Group, audit: &AuditEntry) -> StoreResult<()>;
    /// Replaces a group's name and description.
    async fn group_update(&self, g: &Group, audit: &AuditEntry) -> StoreResult<()>;
    /// Removes a group and every membership of it.
    async fn group_delete(&self, id: &str, audit: &AuditEntry) -> StoreResult<()>;

    /// Memberships of a user (every source).
    async fn memberships_of_user(&self, user_id: &str) -> StoreResult<Vec<Membership>>;
    /// What a login checks once its session is stored, in one read: the user's status
    /// (`None`: no such user), whether the connection is there and on, and the names of
    /// the groups the user has a membership in (unsorted, possibly repeated).
    async fn session_check(&self, user_id: &str, connection_id: &str) -> StoreResult<SessionCheck>;
    /// Memberships of a group (every source).
    async fn memberships_of_group(&self, group_id: &str) -> StoreResult<Vec<Membership>>;
    /// Adds and removes memberships in one transaction, one audit entry per change.
    /// Adding one that exists and removing one that does not are no-ops.
    async fn memberships_apply(&self, add: &[Membership], remove: &[Membership], audit: &[AuditEntry]) -> StoreResult<()>;

    /// All invitations, newest first.
    async fn invitation_list(&self) -> StoreResult<Vec<Invitation>>;
    /// Adds an invitation together with its pending user, their memberships and links
    /// (an invitation naming the expected upstream subject), in one transaction; `Conflict`
    /// when a link's identity is linked already.
    async fn invitation_insert(&self, inv: &Invitation, user: &User, memberships: &[Membership], links: &[Link], audit: &[AuditEntry]) -> StoreResult<()>;
    /// Removes an invitation; its user too while still pending.
    async fn invitation_delete(&self, id: &str, audit: &AuditEntry) -> StoreResult<()>;

    /// Appends to the audit log (for changes that are not store writes themselves).
    async fn audit_append(&self, entry: &AuditEntry) -> StoreResult<()>;
    /// Records a login through a connection at `at` (a later one already recorded stays).
    async fn health_login(&self, connection_id: &str, at: Millis) -> StoreResult<()>;
    /// Records a refused login through a connection at `at`, with what it said (a later
    /// one already recorded stays).
    async fn health_error(&self, connection_id: &str, at: Millis, error: &str) -> StoreResult<()>;
    /// The health of every connection that has any.
    async fn health_list(&self) -> StoreResult<Vec<ConnectionHealth>>;
    /// Reads the audit log, newest first.
    async fn audit_list(&self, q: AuditQuery) -> StoreResult<Vec<AuditEntry>>;

    /// Every signing key, newest first.
    async fn signing_key_list(&self) -> StoreResult<Vec<SigningKey>>;
    /// Adds a signing key and retires the others (they stay listed).
    async fn signing_key_insert(&self, k: &SigningKey, audit: &AuditEntry) -> StoreResult<()>;

    /// All downstream clients.
    async fn client_list(&self) -> StoreResult<Vec<Client>>;
    /// One downstream client.
    async fn client_get(&self, client_id: &str) -> StoreResult<Option<Client>>;
    /// Adds a client; `Conflict` when the id is taken.
    async fn client_insert(&self, c: &Client, audit: &AuditEntry) -> StoreResult<()>;
    /// Replaces a client's name, secret hash and redirect URIs.
    async fn client_update(&self, c: &Client, audit: &AuditEntry) -> StoreResult<()>;
    /// Removes a client.
    async fn client_delete(&self, client_id: &str, audit: &AuditEntry) -> StoreResult<()>;
}

/// The key a name or an email is unique by and looked up by: ASCII letters without case,
/// every other character exactly as given. Unicode case mapping would merge distinct
/// strings (the Kelvin sign lowercases to `k`, `ß` uppercases to `SS`), so that an IdP
/// asserting `\u{212A}ate@example.test` would claim `kate@example.test`'s account or an
/// asserted `\u{212A}ube-admins` would grant `Kube-Admins`. SECURITY.md: distinct strings
/// never merge. [`same_name`] is the same rule as a comparison.
pub fn name_key(s: &str) -> String {
    s.to_ascii_lowercase()
}

/// Whether two names or emails are the same by [`name_key`]'s rule, without allocating.
pub fn same_name(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// Whether the database failed in a way that passes: unreachable, connection dropped
/// (an admin or crash shutdown kills it mid-query), out of connections, a lock or a
/// serialization conflict. Worth a 503 and a retry, not a 500.
pub fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(d) => d.code().is_some_and(|c| transient_sqlstate(&c)),
        _ => false,
    }
}

fn transient_sqlstate(code: &str) -> bool {
    // PostgreSQL: 08 connection exception, 53 insufficient resources, 57P operator
    // intervention (shutdown, cannot connect now), 40001 serialization, 40P01 deadlock.
    // SQLite: BUSY and LOCKED with their extended codes.
    code.starts_with("08") || code.starts_with("53") || code.starts_with("57P") || matches!(code, "40001" | "40P01" | "5" | "6" | "261" | "262" | "517" | "773")
}

/// [`open`], waiting up to `wait` for a database that is unreachable for now (a replica
/// started before PostgreSQL, or while it restarts): each failure that passes is retried
/// with a growing pause (up to 5 s), logged when the wait begins and every 30 s after,
/// with its cause. Anything else (a wrong password, a bad URL) fails at once.
pub async fn open_waiting(url: &str, max_connections: u32, wait: std::time::Duration, shown_url: &str) -> StoreResult<sql::Sql> {
    let started = std::time::Instant::now();
    let mut pause = std::time::Duration::from_millis(250);
    let mut last_log: Option<std::time::Instant> = None;
    loop {
        match open(url, max_connections).await {
            Err(StoreError::Backend(e)) if is_unavailable(&e) && started.elapsed() + pause < wait => {
                if last_log.is_none_or(|t| t.elapsed() >= std::time::Duration::from_secs(30)) {
                    let left = wait.saturating_sub(started.elapsed()).as_secs();
                    tracing::warn!(store = %shown_url, error = %e, waited_s = started.elapsed().as_secs(), left_s = left, "waiting for the database (store.connect_wait_seconds)");
                    last_log = Some(std::time::Instant::now());
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(std::time::Duration::from_secs(5));
            }
            other => {
                if other.is_ok() && last_log.is_some() {
                    tracing::info!(store = %shown_url, waited_s = started.elapsed().as_secs(), "the database answers");
                }
                return other;
            }
        }
    }
}

/// Opens the store named by `url` and runs its migrations.
pub async fn open(url: &str, max_connections: u32) -> StoreResult<sql::Sql> {
    sql::Sql::connect(url, max_connections).await
}

/// Makes a folder (and its parents) readable by its owner only (0700 on Unix): the data
/// dir holds the SQLite files, with sealed secrets and the audit log.
pub fn private_dir(path: &std::path::Path) -> std::io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(path)
}
