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
    /// The directory's groups, as read for the plan (id to name).
    groups: std::collections::BTreeMap<String, String>,
    /// The user's memberships before the plan (empty for a new user).
    current: Vec<Membership>,
    /// The connection the plan is for.
    connection_id: String,
}

impl Resolution {
    /// The user's group names once the plan is applied (`Users` included).
    pub fn group_names(&self) -> Vec<String> {
        let removed: Vec<&str> = self.plan.remove.iter().map(|g| g.id.as_str()).collect();
        let mut names: Vec<String> = vec!["Users".into()];
        for m in &self.current {
            // A membership survives unless it is the one this plan removes.
            let gone = removed.contains(&m.group_id.as_str()) && m.source == Source::Connection(self.connection_id.clone());
            if let (false, Some(n)) = (gone, self.groups.get(&m.group_id)) {
                names.push(n.clone());
            }
        }
        names.extend(self.plan.add.iter().map(|g| g.name.clone()));
        names.sort();
        names.dedup();
        names
    }
}

/// Why a login is refused by the directory step. Each says what the user can do.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// The connection requires a verified email and the IdP did not vouch for it: why
    /// (which claim was missing or false, and where it was looked for).
    #[error("your identity provider did not confirm your email address ({0}), and this sign-in requires a verified email")]
    EmailNotVerified(String),
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
            let why = match (&id.email, id.email_verified) {
                (None, _) => format!("no email claim in {}", id.looked_in()),
                (Some(_), Some(false)) => "its email_verified claim is false".into(),
                (Some(_), _) => format!("no email_verified claim for the email in {}", id.looked_in()),
            };
            return Err(Refusal::EmailNotVerified(why));
        }
        let found = if let Some(u) = self.store.user_by_link(&conn.id, &id.subject).await? {
            Found::Linked(u)
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
        // Read once: the plan and the session's group snapshot both come from these.
        let groups = self.store.group_list().await?;
        let current = match &found {
            Found::Linked(u) | Found::ByEmail(u) => self.store.memberships_of_user(&u.id).await?,
            Found::New { .. } => vec![],
        };
        // An absent groups claim is no news: sync changes nothing (only a present, empty
        // claim removes this connection's grants). An IdP that drops the claim for a
        // while, or sends it only in userinfo, must not strip everyone's groups.
        let plan = match (&id.groups, conn.settings.group_sync) {
            (Some(asserted), true) => sync::plan(asserted, &groups, &current, &conn.id),
            _ => Plan::default(),
        };
        let groups = groups.into_iter().map(|g| (g.id, g.name)).collect();
        Ok(Resolution { found, plan, groups, current, connection_id: conn.id.clone() })
    }

    /// Writes a resolution: creates or links the user, activates an invited one, and
    /// applies the group sync plan. Every change is audited with the connection as actor.
    pub async fn apply(&self, conn: &Connection, id: &Identity, r: &Resolution) -> Result<User, Refusal> {
        let actor = format!("connection:{}", conn.id);
        let now = self.clock.now();
        let mut user = match r.found.clone() {
            Found::Linked(u) => u,
            Found::ByEmail(u) => {
                let link = Link { connection_id: conn.id.clone(), subject: id.subject.clone(), user_id: u.id.clone(), created_at: now };
                self.store.link_insert(&link, &self.audit(&actor, "link.create", &u.id, json!({"connection_id": conn.id, "by": "verified email"}))).await?;
                u
            }
            Found::New { username, email } => {
                let mut u = User {
                    id: crate::id::new("usr"),
                    username: username.clone(),
                    email,
                    status: UserStatus::Active,
                    invited_at: None,
                    created_at: now,
                    updated_at: now,
                };
                // A taken username gets a short random suffix rather than failing the login.
                let mut tries = 0;
                loop {
                    match self.store.user_insert(&u, &self.audit(&actor, "user.create", &u.id, json!({"username": u.username, "connection_id": conn.id}))).await
                    {
                        Ok(()) => break,
                        Err(StoreError::Conflict(m)) if m.starts_with("username") && tries < 3 => {
                            tries += 1;
                            u.username = format!("{username}-{}", &crate::id::new("x")[2..7]);
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
                let link = Link { connection_id: conn.id.clone(), subject: id.subject.clone(), user_id: u.id.clone(), created_at: now };
                match self.store.link_insert(&link, &self.audit(&actor, "link.create", &u.id, json!({"connection_id": conn.id, "by": "created"}))).await {
                    Ok(()) => u,
                    // Two first logins of one identity raced and the other linked first:
                    // remove the user made here (no orphan), continue as the linked one.
                    Err(StoreError::Conflict(_)) => {
                        let why = json!({"reason": "a concurrent first login of the same identity linked first"});
                        self.store.user_delete(&u.id, &self.audit(&actor, "user.delete", &u.id, why)).await?;
                        self.store
                            .user_by_link(&conn.id, &id.subject)
                            .await?
                            .ok_or_else(|| StoreError::Conflict("the identity's link changed during the login".into()))?
                    }
                    Err(e) => return Err(e.into()),
                }
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::sync::PlannedGroup;

    #[test]
    fn session_groups_are_the_memberships_after_the_plan() {
        let m = |g: &str, source: Source| Membership { group_id: g.into(), user_id: "u".into(), source, created_at: 0 };
        let pg = |id: &str, name: &str| PlannedGroup { id: id.into(), name: name.into() };
        let r = Resolution {
            found: Found::New { username: "u".into(), email: None },
            plan: Plan { add: vec![pg("g_new", "New")], remove: vec![pg("g_old", "Old"), pg("g_both", "Both")], unmatched: vec![] },
            groups: [("g_old", "Old"), ("g_both", "Both"), ("g_man", "Manual"), ("g_new", "New")].iter().map(|(a, b)| (a.to_string(), b.to_string())).collect(),
            current: vec![
                m("g_old", Source::Connection("c1".into())),
                m("g_both", Source::Connection("c1".into())),
                m("g_both", Source::Connection("c2".into())),
                m("g_man", Source::Manual),
            ],
            connection_id: "c1".into(),
        };
        // Old goes; Both stays through the other connection's grant; Manual stays; New comes.
        assert_eq!(r.group_names(), vec!["Both", "Manual", "New", "Users"]);
    }
}
