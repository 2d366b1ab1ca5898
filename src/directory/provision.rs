//! The directory step of a login: find the user an upstream identity belongs to
//! (by link, then by verified email for an existing or invited user), or create one
//! when the connection allows it, or refuse; then group sync. [`Directory::resolve`]
//! only reads and plans (a dry run stops there); [`Directory::apply`] writes.

use serde_json::json;

use super::sync::{self, Plan};
use super::{check_email, check_name, Directory, DirectoryError};
use crate::connection::Connection;
use crate::mapping::Identity;
use crate::store::{same_name, Link, Membership, Profile, Source, StoreError, User, UserStatus};

/// The longest name (full, given or family) kept from an IdP, in characters.
const MAX_NAME: usize = 256;
/// The longest picture URL kept from an IdP, in bytes.
const MAX_PICTURE: usize = 2048;

/// The identity with what the directory must not store taken out, each logged (never the
/// value): an email that is not an address (see [`check_email`]) is dropped with its
/// verification, so the login goes on without an email rather than failing; a picture
/// that is not an http(s) URL of at most 2048 bytes, and names over 256 characters, are
/// dropped likewise. Control characters never get this far (`mapping` refuses them).
pub fn sanitize(id: &Identity, connection: &str) -> Identity {
    let mut id = id.clone();
    if id.email.as_deref().is_some_and(|e| check_email("email", e).is_err()) {
        tracing::warn!(connection, "the identity provider's email is not an address: dropped");
        id.email = None;
        id.email_verified = None;
    }
    let web = |p: &str| p.len() <= MAX_PICTURE && url::Url::parse(p).is_ok_and(|u| matches!(u.scheme(), "https" | "http") && u.host().is_some());
    if id.picture.as_deref().is_some_and(|p| !web(p)) {
        tracing::warn!(connection, "the identity provider's picture is not an http(s) URL: dropped");
        id.picture = None;
    }
    for (what, field) in [("name", &mut id.name), ("given_name", &mut id.given_name), ("family_name", &mut id.family_name)] {
        if field.as_deref().is_some_and(|n| n.chars().count() > MAX_NAME) {
            tracing::warn!(connection, claim = what, "the identity provider's name is over 256 characters: dropped");
            *field = None;
        }
    }
    id
}

/// The refusal of a login whose IdP did not vouch for the email, when the connection
/// requires a verified one: names the claim missing or false and where it was looked for.
pub fn require_verified(id: &Identity) -> Result<(), Refusal> {
    if id.email_verified == Some(true) {
        return Ok(());
    }
    let why = match (&id.email, id.email_verified) {
        (None, _) => format!("no email claim in {}", id.looked_in()),
        (Some(_), Some(false)) => "its email_verified claim is false".into(),
        (Some(_), _) => format!("no email_verified claim for the email in {}", id.looked_in()),
    };
    Err(Refusal::EmailNotVerified(why))
}

/// The profile an identity brings: what it sends replaces, what it leaves out stays.
/// Returns the fields that changed.
fn refresh_profile(p: &mut Profile, id: &Identity) -> Vec<&'static str> {
    let mut changed = vec![];
    for (what, mine, theirs) in [
        ("name", &mut p.name, &id.name),
        ("given_name", &mut p.given_name, &id.given_name),
        ("family_name", &mut p.family_name, &id.family_name),
        ("picture", &mut p.picture, &id.picture),
    ] {
        if theirs.is_some() && mine != theirs {
            mine.clone_from(theirs);
            changed.push(what);
        }
    }
    changed
}

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
        let mut names: Vec<String> = vec![];
        for m in &self.current {
            // A membership survives unless it is the one this plan removes.
            let gone = removed.contains(&m.group_id.as_str()) && m.source == Source::Connection(self.connection_id.clone());
            if let (false, Some(n)) = (gone, self.groups.get(&m.group_id)) {
                names.push(n.clone());
            }
        }
        names.extend(self.plan.add.iter().map(|g| g.name.clone()));
        super::session_group_names(names)
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
    /// The account (its id) was disabled by an admin.
    #[error("your account here is disabled; ask an administrator to enable it")]
    Disabled(String),
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
    /// Refreshes what the IdP sends of an existing user at login, audited as one
    /// `user.update` naming the fields (never the values). The profile: each field the
    /// IdP sends replaces the stored one; one it leaves out stays. The email: replaced
    /// only by one this login verified (`email_verified` true for that very address) that
    /// no other user has: an unverified address stored over the old one could later be
    /// taken for the account's own and claim it by email, and another user's is never
    /// taken over (logged).
    async fn refresh(&self, conn: &Connection, id: &Identity, mut user: User) -> Result<User, Refusal> {
        let mut fields = vec![];
        if let (Some(e), Some(true)) = (&id.email, id.email_verified) {
            if !user.email.as_deref().is_some_and(|mine| same_name(mine, e)) {
                match self.store.user_by_email(e).await? {
                    None => {
                        user.email = Some(e.clone());
                        user.email_verified = true;
                        fields.push("email");
                    }
                    Some(other) if other.id != user.id => {
                        tracing::info!(connection = %conn.id, user_id = %user.id, "the IdP's new email is another user's: the stored one stays");
                    }
                    Some(_) => {}
                }
            }
        }
        // The stored address, now vouched for by this login: the account's own from now on
        // (another login's verified email may then claim it).
        if let (Some(e), Some(true), Some(mine)) = (&id.email, id.email_verified, user.email.as_deref()) {
            if !user.email_verified && same_name(mine, e) {
                user.email_verified = true;
                fields.push("email_verified");
            }
        }
        fields.extend(refresh_profile(&mut user.profile, id));
        if fields.is_empty() {
            return Ok(user);
        }
        user.updated_at = self.clock.now();
        let audit = self.audit(&format!("connection:{}", conn.id), "user.update", &user.id, json!({"fields": fields, "by": "login"}));
        match self.store.user_update(&user, &audit).await {
            Ok(()) => Ok(user),
            // Another login took the address in between: the login goes on, nothing refreshed.
            Err(StoreError::Conflict(_)) => {
                tracing::info!(connection = %conn.id, user_id = %user.id, "the profile refresh lost a race for the email; nothing refreshed");
                Ok(self.store.user_get(&user.id).await?.unwrap_or(user))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Finds (or plans) the user for `id` and plans group sync. Writes nothing.
    pub async fn resolve(&self, conn: &Connection, id: &Identity, require_verified_email: bool) -> Result<Resolution, Refusal> {
        if require_verified_email {
            require_verified(id)?;
        }
        let found = if let Some(u) = self.store.user_by_link(&conn.id, &id.subject).await? {
            Found::Linked(u)
        } else {
            // Only an email the IdP vouches for may claim an existing account, and only an
            // account whose own email is known to be its owner's (an admin's entry, an
            // invitation, or a verified login): one created from an unverified assertion
            // would otherwise let whoever asserted the address first take the account over.
            let by_email = match (&id.email, id.email_verified) {
                (Some(e), Some(true)) => self.store.user_by_email(e).await?.filter(|u| u.email_verified),
                _ => None,
            };
            match by_email {
                Some(u) => Found::ByEmail(u),
                None if conn.settings.create_users => {
                    let email = match &id.email {
                        Some(e) if self.store.user_by_email(e).await?.is_none() && id.email_verified != Some(false) => Some(e.clone()),
                        _ => None,
                    };
                    // The username: the email, or the subject when it makes a valid one
                    // (at most 128 characters), or else a made-up one.
                    let username = email.as_deref().or(Some(id.subject.as_str())).and_then(|n| check_name("username", n, 128).ok());
                    Found::New { username: username.unwrap_or_else(|| format!("user-{}", &crate::id::new("x")[2..12])), email }
                }
                None => return Err(Refusal::NoAccount),
            }
        };
        if let Found::Linked(u) | Found::ByEmail(u) = &found {
            if u.status == UserStatus::Disabled {
                return Err(Refusal::Disabled(u.id.clone()));
            }
        }
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
            (Some(asserted), true) => sync::plan(asserted, &conn.settings.group_mapping, &groups, &current, &conn.id),
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
            Found::Linked(u) => self.refresh(conn, id, u).await?,
            Found::ByEmail(u) => {
                let link = Link { connection_id: conn.id.clone(), subject: id.subject.clone(), user_id: u.id.clone(), created_at: now };
                self.store.link_insert(&link, &self.audit(&actor, "link.create", &u.id, json!({"connection_id": conn.id, "by": "verified email"}))).await?;
                self.refresh(conn, id, u).await?
            }
            Found::New { username, email } => {
                let email_verified = email.is_some() && id.email_verified == Some(true);
                let mut u = User {
                    id: crate::id::new("usr"),
                    username: username.clone(),
                    email,
                    email_verified,
                    status: UserStatus::Active,
                    invited_at: None,
                    profile: {
                        let mut p = Profile::default();
                        refresh_profile(&mut p, id);
                        p
                    },
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
    fn sanitize_drops_what_cannot_be_stored_and_refresh_keeps_what_is_absent() {
        let id = Identity {
            subject: "s".into(),
            email: Some("a@@x.test".into()),
            email_verified: Some(true),
            name: Some("n".repeat(257)),
            given_name: Some("G".into()),
            picture: Some("javascript:alert(1)".into()),
            ..Default::default()
        };
        let clean = sanitize(&id, "c");
        assert_eq!((clean.email, clean.email_verified, clean.name, clean.picture), (None, None, None, None));
        assert_eq!(clean.given_name.as_deref(), Some("G"));
        let ok = Identity { email: Some("a@x.test".into()), picture: Some("https://p.example/a.png".into()), ..id.clone() };
        assert_eq!(sanitize(&ok, "c").picture.as_deref(), Some("https://p.example/a.png"));
        assert_eq!(sanitize(&ok, "c").email.as_deref(), Some("a@x.test"));

        let mut p = Profile { name: Some("Old".into()), family_name: Some("F".into()), ..Default::default() };
        let changed = refresh_profile(&mut p, &Identity { name: Some("New".into()), given_name: Some("G".into()), ..Default::default() });
        assert_eq!(changed, vec!["name", "given_name"]);
        assert_eq!(p.family_name.as_deref(), Some("F"), "an absent claim keeps the stored value");
        assert!(refresh_profile(&mut p, &Identity { name: Some("New".into()), ..Default::default() }).is_empty());
    }

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
