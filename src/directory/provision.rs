//! The directory step of a login: find the user an upstream identity belongs to
//! (by link, then by verified email for an existing or invited user), or create one
//! when the connection allows it, or refuse; then group sync. [`Directory::resolve`]
//! only reads and plans (a dry run stops there); [`Directory::apply`] writes.

use serde_json::json;

use super::sync::{self, Plan};
use super::{Directory, DirectoryError};
use crate::connection::Connection;
use crate::mapping::Identity;
use crate::store::{Link, Membership, Source, StoreError, User, UserStatus};

/// How the identity found its user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// Already linked to this connection and subject.
    Linked(User),
    /// An existing (or invited) user with the same verified email; a link will be made.
    ByEmail(User),
    /// No user yet; one will be created.
    New {
        /// The username it will get.
        username: String,
        /// Its email (unless another user has it).
        email: Option<String>,
    },
}

/// The outcome of the directory step, before anything is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    /// Which user, and how.
    pub found: Found,
    /// Group sync changes (empty when sync is off).
    pub plan: Plan,
}

/// Why a login is refused by the directory step. Each says what the user can do.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// The connection requires a verified email and the IdP did not vouch for it.
    #[error("your identity provider did not confirm your email address, and this sign-in requires a verified email")]
    EmailNotVerified,
    /// No user, no invitation, and the connection does not create users.
    #[error("there is no account for you here; ask an administrator to invite you")]
    NoAccount,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] DirectoryError),
}

impl From<StoreError> for Refusal {
    fn from(e: StoreError) -> Self {
        Refusal::Store(e.into())
    }
}

impl Directory {
    /// Finds (or plans) the user for `id` and plans group sync. Writes nothing.
    pub async fn resolve(&self, conn: &Connection, id: &Identity, require_verified_email: bool) -> Result<Resolution, Refusal> {
        if require_verified_email && id.email_verified != Some(true) {
            return Err(Refusal::EmailNotVerified);
        }
        let found = if let Some(link) = self.store.link_get(&conn.id, &id.subject).await? {
            match self.store.user_get(&link.user_id).await? {
                Some(u) => Found::Linked(u),
                None => return Err(StoreError::Corrupt(format!("link to missing user {}", link.user_id)).into()),
            }
        } else {
            // Only an email the IdP vouches for may claim an existing account.
            let by_email = match (&id.email, id.email_verified) {
                (Some(e), Some(true)) => self.store.user_by_email(e).await?,
                _ => None,
            };
            match by_email {
                Some(u) => Found::ByEmail(u),
                None if conn.settings.create_users => {
                    let email = match &id.email {
                        Some(e) if self.store.user_by_email(e).await?.is_none() && id.email_verified != Some(false) => Some(e.clone()),
                        _ => None,
                    };
                    Found::New { username: email.clone().unwrap_or_else(|| id.subject.clone()), email }
                }
                None => return Err(Refusal::NoAccount),
            }
        };
        let plan = if conn.settings.group_sync {
            let groups = self.store.group_list().await?;
            let current = match &found {
                Found::Linked(u) | Found::ByEmail(u) => self.store.memberships_of_user(&u.id).await?,
                Found::New { .. } => vec![],
            };
            sync::plan(&id.groups, &groups, &current, &conn.id)
        } else {
            Plan::default()
        };
        Ok(Resolution { found, plan })
    }

    /// Writes a resolution: creates or links the user, activates an invited one, and
    /// applies the group sync plan. Every change is audited with the connection as actor.
    pub async fn apply(&self, conn: &Connection, id: &Identity, r: Resolution) -> Result<User, Refusal> {
        let actor = format!("connection:{}", conn.id);
        let now = self.clock.now();
        let mut user = match r.found {
            Found::Linked(u) => u,
            Found::ByEmail(u) => {
                let link = Link { connection_id: conn.id.clone(), subject: id.subject.clone(), user_id: u.id.clone(), created_at: now };
                self.store.link_insert(&link, &self.audit(&actor, "link.create", &u.id, json!({"connection_id": conn.id, "by": "verified email"}))).await?;
                u
            }
            Found::New { username, email } => {
                let mut u = User { id: crate::id::new("usr"), username: username.clone(), email, status: UserStatus::Active, invited_at: None, created_at: now, updated_at: now };
                // A taken username gets a short random suffix rather than failing the login.
                let mut tries = 0;
                loop {
                    match self.store.user_insert(&u, &self.audit(&actor, "user.create", &u.id, json!({"username": u.username, "connection_id": conn.id}))).await {
                        Ok(()) => break,
                        Err(StoreError::Conflict(m)) if m.starts_with("username") && tries < 3 => {
                            tries += 1;
                            u.username = format!("{username}-{}", &crate::id::new("x")[2..7]);
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
                let link = Link { connection_id: conn.id.clone(), subject: id.subject.clone(), user_id: u.id.clone(), created_at: now };
                self.store.link_insert(&link, &self.audit(&actor, "link.create", &u.id, json!({"connection_id": conn.id, "by": "created"}))).await?;
                u
            }
        };
        if user.status == UserStatus::Pending {
            user.status = UserStatus::Active;
            user.updated_at = now;
            self.store.user_update(&user, &self.audit(&actor, "user.activate", &user.id, json!({"connection_id": conn.id}))).await?;
        }
        if !r.plan.is_empty() {
            let source = Source::Connection(conn.id.clone());
            let m = |g: &sync::PlannedGroup| Membership { group_id: g.id.clone(), user_id: user.id.clone(), source: source.clone(), created_at: now };
            let add: Vec<Membership> = r.plan.add.iter().map(m).collect();
            let remove: Vec<Membership> = r.plan.remove.iter().map(m).collect();
            let mut audits = Vec::new();
            for g in &r.plan.add {
                audits.push(self.audit(&actor, "membership.add", &g.id, json!({"user_id": user.id, "source": source.encode(), "group": g.name})));
            }
            for g in &r.plan.remove {
                audits.push(self.audit(&actor, "membership.remove", &g.id, json!({"user_id": user.id, "source": source.encode(), "group": g.name})));
            }
            self.store.memberships_apply(&add, &remove, &audits).await?;
        }
        Ok(user)
    }

    /// The names of a user's groups (every source, and `Users`).
    pub async fn group_names_of(&self, user_id: &str) -> Result<Vec<String>, DirectoryError> {
        let groups = self.group_names_by_id().await?;
        let mut names: Vec<String> = vec!["Users".into()];
        for m in self.store.memberships_of_user(user_id).await? {
            if let Some(n) = groups.get(&m.group_id) {
                names.push(n.clone());
            }
        }
        names.sort();
        names.dedup();
        Ok(names)
    }
}
