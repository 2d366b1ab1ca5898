//! The directory: users, groups, memberships and invitations, with the rules above
//! the store: built-in groups (`Users` is everyone and not editable; `Admins` and
//! `Queue admins` cannot be removed), unique names, manual memberships, and
//! invitations that come with a pending user. Login-time provisioning and group sync
//! build on this.

pub mod provision;
pub mod sync;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use crate::audit::AuditEntry;
use crate::clock::{rfc3339, Clock};
use crate::connection::FieldError;
use crate::store::{Builtin, Group, Invitation, Link, Membership, Source, Store, StoreError, User, UserStatus};

/// Why a directory operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// The named thing does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// Fields are missing or wrong.
    #[error("the request is not valid")]
    Invalid(Vec<FieldError>),
    /// A name is taken, or a built-in group would be changed.
    #[error("{0}")]
    Conflict(String),
    /// The configuration file declares it: only the file changes it (the sentence says so).
    #[error("{0}")]
    Managed(String),
    /// The store failed.
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for DirectoryError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => DirectoryError::NotFound(what),
            StoreError::Conflict(m) => DirectoryError::Conflict(m),
            other => DirectoryError::Store(other),
        }
    }
}

/// A new user.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    /// Unique username.
    pub username: String,
    /// Email address (unique when set).
    pub email: Option<String>,
}

/// Changes to a user.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    /// New username.
    pub username: Option<String>,
    /// New email; empty string removes it.
    pub email: Option<String>,
    /// `true` disables the user (no login; every session ends), `false` enables them again.
    pub disabled: Option<bool>,
}

/// A new group, or changes to one.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupInput {
    /// Unique name (required on create).
    pub name: Option<String>,
    /// Description.
    pub description: Option<String>,
}

/// A new invitation.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewInvitation {
    /// Address to invite; the user logs in with an identity carrying it (verified).
    pub email: String,
    /// Groups (ids) the user joins (manual memberships).
    #[serde(default)]
    pub groups: Vec<String>,
    /// With `subject`: the connection the invited user will sign in through.
    pub connection_id: Option<String>,
    /// With `connection_id`: the upstream subject (OIDC `sub`, SAML NameID or the mapped
    /// user id) expected. The invited user is linked to it at once, so its first login
    /// claims the invitation whatever email it carries.
    pub subject: Option<String>,
}

/// The upstream identity an admin links a user to, on the connection in the path.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkInput {
    /// The upstream subject (OIDC `sub`, SAML NameID or the mapped user id), exactly as
    /// the identity provider will send it.
    pub subject: String,
}

/// A group membership as shown on a user.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UserGroupView {
    /// Group id.
    pub id: String,
    /// Group name.
    pub name: String,
    /// Where the membership came from: `manual` or `connection:ID`.
    pub sources: Vec<String>,
}

/// An upstream identity linked to a user.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LinkView {
    /// Connection.
    pub connection_id: String,
    /// Upstream subject.
    pub subject: String,
    /// When linked (RFC 3339).
    pub created_at: String,
}

/// A user as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UserView {
    /// Stable id.
    pub id: String,
    /// Username.
    pub username: String,
    /// Email.
    pub email: Option<String>,
    /// Whether the email is known to be the user's (an admin's entry, an invitation, or a
    /// verified login): only then may another login claim the account by this address.
    pub email_verified: bool,
    /// `active` or `pending`.
    pub status: UserStatus,
    /// Full name, as the identity provider last sent it.
    pub name: Option<String>,
    /// Given name, as the identity provider last sent it.
    pub given_name: Option<String>,
    /// Family name, as the identity provider last sent it.
    pub family_name: Option<String>,
    /// Picture URL, as the identity provider last sent it.
    pub picture: Option<String>,
    /// When invited (RFC 3339).
    pub invited_at: Option<String>,
    /// Created (RFC 3339).
    pub created_at: String,
    /// Last change (RFC 3339).
    pub updated_at: String,
    /// Groups, `Users` included.
    pub groups: Vec<UserGroupView>,
    /// Linked upstream identities.
    pub links: Vec<LinkView>,
}

/// A group as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct GroupView {
    /// Stable id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Set for built-in groups.
    pub builtin: Option<Builtin>,
    /// Number of members.
    pub members: usize,
    /// Created (RFC 3339).
    pub created_at: String,
    /// Last change (RFC 3339).
    pub updated_at: String,
    /// `config` when the configuration file declares it: its name and description are
    /// changed there, not here (its members are managed here as any group's).
    pub managed_by: Option<String>,
}

/// A member as shown on a group.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MemberView {
    /// User id.
    pub user_id: String,
    /// Username.
    pub username: String,
    /// Email.
    pub email: Option<String>,
    /// `manual` or `connection:ID`; empty for the implicit `Users` membership.
    pub sources: Vec<String>,
}

/// An invitation as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InvitationView {
    /// Id.
    pub id: String,
    /// Invited address.
    pub email: String,
    /// The pending (or since active) user.
    pub user_id: String,
    /// Who invited.
    pub invited_by: String,
    /// When (RFC 3339).
    pub created_at: String,
}

fn invalid(field: &str, message: &str) -> DirectoryError {
    DirectoryError::Invalid(vec![FieldError::new(field, message)])
}

/// Checks a name-like value: trimmed, non-empty, bounded, no control characters.
pub(crate) fn check_name(field: &str, value: &str, max: usize) -> Result<String, DirectoryError> {
    let v = value.trim();
    if v.is_empty() {
        return Err(invalid(field, "is required"));
    }
    if v.chars().count() > max {
        return Err(invalid(field, &format!("must be at most {max} characters")));
    }
    if v.chars().any(char::is_control) {
        return Err(invalid(field, "must not contain control characters"));
    }
    Ok(v.to_string())
}

/// Checks a group name: a name (see [`check_name`]) without a comma, because ingress
/// headers (`X-Auth-Request-Groups`) and `/auth?allowed_groups=` list groups separated by
/// commas: `Eng,admins` would reach an app as the two groups `Eng` and `admins`.
fn check_group_name(value: &str) -> Result<String, DirectoryError> {
    let name = check_name("name", value, 128)?;
    if name.contains(',') {
        return Err(invalid("name", "must not contain a comma (ingress headers list groups separated by commas)"));
    }
    Ok(name)
}

/// Checks an upstream subject as the login path will see it: what claim mapping keeps
/// (no surrounding XML whitespace, no refused character), non-empty, at most 1024 bytes.
fn check_subject(field: &str, value: &str) -> Result<String, DirectoryError> {
    if value.is_empty() || value.trim_matches([' ', '\t', '\r', '\n']) != value {
        return Err(invalid(field, "is required, without surrounding whitespace"));
    }
    if value.len() > 1024 {
        return Err(invalid(field, "must be at most 1024 bytes"));
    }
    if value.chars().any(crate::mapping::is_refused_char) {
        return Err(invalid(field, "must not contain control, bidirectional or invisible characters"));
    }
    Ok(value.to_string())
}

/// Checks an email address's shape, RFC 5322's addr-spec without its obsolete and quoted
/// forms: `local@domain`, at most 254 bytes; the local part dot-separated atoms (no
/// leading, trailing or doubled dot); the domain dot-separated labels (no empty label);
/// no whitespace, control, bidirectional or invisible character, nor any of
/// `<>()[],;:\"` anywhere. Non-ASCII letters are allowed (RFC 6531 addresses).
pub fn check_email(field: &str, value: &str) -> Result<String, DirectoryError> {
    let v = value.trim();
    let atoms = |s: &str| !s.is_empty() && s.split('.').all(|a| !a.is_empty());
    let ok = v.len() <= 254
        && matches!(v.split_once('@'), Some((local, domain)) if atoms(local) && atoms(domain) && !domain.contains('@') && local.len() <= 64)
        && !v.chars().any(|c| c.is_whitespace() || crate::mapping::is_refused_char(c) || "<>()[],;:\\\"".contains(c));
    if ok {
        Ok(v.to_string())
    } else {
        Err(invalid(field, "is not an email address"))
    }
}

/// Users, groups, memberships and invitations.
#[derive(Debug, Clone)]
pub struct Directory {
    store: Arc<dyn Store>,
    clock: Clock,
    /// The configuration file, named in refusals to change what it declares.
    config_file: Option<Arc<std::path::Path>>,
}

/// The groups a session carries, from the names of the user's groups: `Users` (everyone
/// is in it) and each name once, sorted. The one rule for a login, a login's re-check
/// and an admin's change reaching live sessions.
pub fn session_group_names(names: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut out: Vec<String> = std::iter::once("Users".to_string()).chain(names).collect();
    out.sort();
    out.dedup();
    out
}

impl Directory {
    /// A directory over `store`.
    pub fn new(store: Arc<dyn Store>, clock: Clock) -> Self {
        Self { store, clock, config_file: None }
    }

    /// This directory, naming `file` when it refuses to change what the file declares.
    pub fn with_config_file(mut self, file: Option<&std::path::Path>) -> Self {
        self.config_file = file.map(Arc::from);
        self
    }

    fn editable(&self, g: &Group, actor: &str) -> Result<(), DirectoryError> {
        if g.managed_by.as_deref() == Some(crate::declare::MANAGED_BY) && actor != crate::declare::ACTOR {
            return Err(DirectoryError::Managed(crate::declare::read_only("group", &g.name, self.config_file.as_deref())));
        }
        Ok(())
    }

    /// Makes the groups the configuration file declares exist, with its descriptions,
    /// marked `managed_by: "config"` (a group of that name made through the API is taken
    /// over); a group it no longer declares is handed back to the API with its members.
    /// Returns one line per change.
    pub async fn declare_groups(&self, declared: &[crate::config::GroupConfig], actor: &str) -> Result<Vec<String>, DirectoryError> {
        let managed = Some(crate::declare::MANAGED_BY.to_string());
        let stored = self.store.group_list().await?;
        let mut changes = vec![];
        for d in declared {
            let now = self.clock.now();
            match stored.iter().find(|g| crate::store::same_name(&g.name, &d.name)) {
                None => {
                    let g = Group {
                        id: crate::id::new("grp"),
                        name: d.name.clone(),
                        description: d.description.clone(),
                        builtin: None,
                        created_at: now,
                        updated_at: now,
                        managed_by: managed.clone(),
                    };
                    let audit = self.audit(actor, "group.create", &g.id, json!({"name": g.name, "managed_by": crate::declare::MANAGED_BY}));
                    self.store.group_insert(&g, &audit).await?;
                    changes.push(format!("group {} created", g.name));
                }
                Some(g) if g.builtin.is_some() => changes.push(format!("group {} is built in: left as it is", g.name)),
                Some(g) if g.name == d.name && g.description == d.description && g.managed_by == managed => {}
                Some(g) => {
                    let changed = Group { name: d.name.clone(), description: d.description.clone(), managed_by: managed.clone(), updated_at: now, ..g.clone() };
                    let audit = self.audit(actor, "group.update", &g.id, json!({"name": changed.name, "managed_by": crate::declare::MANAGED_BY}));
                    self.store.group_update(&changed, &audit).await?;
                    changes.push(format!("group {} updated", changed.name));
                }
            }
        }
        for g in stored.iter().filter(|g| g.managed_by == managed && !declared.iter().any(|d| crate::store::same_name(&d.name, &g.name))) {
            let released = Group { managed_by: None, updated_at: self.clock.now(), ..g.clone() };
            let audit = self.audit(actor, "group.update", &g.id, json!({"name": g.name, "released": true}));
            self.store.group_update(&released, &audit).await?;
            changes.push(format!("group {} left the configuration: handed to the API", g.name));
        }
        Ok(changes)
    }

    fn audit(&self, actor: &str, action: &str, target: &str, detail: serde_json::Value) -> AuditEntry {
        AuditEntry::new(self.clock.now(), actor, action, target, detail)
    }

    async fn group_names(&self) -> Result<BTreeMap<String, Group>, DirectoryError> {
        Ok(self.store.group_list().await?.into_iter().map(|g| (g.id.clone(), g)).collect())
    }

    /// A user with their groups and links.
    pub async fn user_view(&self, u: User) -> Result<UserView, DirectoryError> {
        let groups = self.group_names().await?;
        let mut by_group: BTreeMap<String, Vec<String>> = BTreeMap::new();
        if let Some((_, id, _, _)) = Builtin::ALL.iter().find(|b| b.0 == Builtin::Users) {
            by_group.insert(id.to_string(), vec![]);
        }
        for m in self.store.memberships_of_user(&u.id).await? {
            by_group.entry(m.group_id).or_default().push(m.source.encode());
        }
        let links = self.store.links_of_user(&u.id).await?;
        Ok(UserView {
            id: u.id,
            username: u.username,
            email: u.email,
            email_verified: u.email_verified,
            status: u.status,
            name: u.profile.name,
            given_name: u.profile.given_name,
            family_name: u.profile.family_name,
            picture: u.profile.picture,
            invited_at: u.invited_at.map(rfc3339),
            created_at: rfc3339(u.created_at),
            updated_at: rfc3339(u.updated_at),
            groups: by_group.into_iter().filter_map(|(id, sources)| Some(UserGroupView { name: groups.get(&id)?.name.clone(), id, sources })).collect(),
            links: links.into_iter().map(|l| LinkView { connection_id: l.connection_id, subject: l.subject, created_at: rfc3339(l.created_at) }).collect(),
        })
    }

    /// All users.
    pub async fn users(&self) -> Result<Vec<User>, DirectoryError> {
        Ok(self.store.user_list().await?)
    }

    /// One user.
    pub async fn user(&self, id: &str) -> Result<User, DirectoryError> {
        self.store.user_get(id).await?.ok_or_else(|| DirectoryError::NotFound(format!("user {id}")))
    }

    /// Creates an active user.
    pub async fn create_user(&self, input: &NewUser, actor: &str) -> Result<User, DirectoryError> {
        let username = check_name("username", &input.username, 128)?;
        let email = input.email.as_deref().map(|e| check_email("email", e)).transpose()?;
        let now = self.clock.now();
        // An address an admin enters is the user's: a verified login may claim the account.
        let email_verified = email.is_some();
        let u = User {
            id: crate::id::new("usr"),
            username,
            email,
            email_verified,
            status: UserStatus::Active,
            invited_at: None,
            profile: Default::default(),
            created_at: now,
            updated_at: now,
        };
        let audit = self.audit(actor, "user.create", &u.id, json!({"username": u.username}));
        self.store.user_insert(&u, &audit).await?;
        Ok(u)
    }

    /// Changes a user's username or email.
    pub async fn update_user(&self, id: &str, p: &UserPatch, actor: &str) -> Result<User, DirectoryError> {
        let mut u = self.user(id).await?;
        let mut fields = vec![];
        if let Some(name) = &p.username {
            u.username = check_name("username", name, 128)?;
            fields.push("username");
        }
        if let Some(email) = &p.email {
            u.email = if email.trim().is_empty() { None } else { Some(check_email("email", email)?) };
            u.email_verified = u.email.is_some();
            fields.push("email");
        }
        let mut action = "user.update";
        match p.disabled {
            Some(true) if u.status != UserStatus::Disabled => {
                u.status = UserStatus::Disabled;
                action = "user.disable";
                fields.push("disabled");
            }
            Some(false) if u.status == UserStatus::Disabled => {
                u.status = UserStatus::Active;
                action = "user.enable";
                fields.push("disabled");
            }
            _ => {}
        }
        u.updated_at = self.clock.now();
        self.store.user_update(&u, &self.audit(actor, action, id, json!({ "fields": fields }))).await?;
        Ok(u)
    }

    /// Records that an admin ended a user's sessions.
    pub async fn audit_sessions_ended(&self, id: &str, ended: usize, actor: &str) -> Result<(), DirectoryError> {
        self.store.audit_append(&self.audit(actor, "user.sessions.end", id, json!({ "ended": ended }))).await?;
        Ok(())
    }

    /// Removes a user, their links, memberships and invitation.
    pub async fn delete_user(&self, id: &str, actor: &str) -> Result<(), DirectoryError> {
        let u = self.user(id).await?;
        self.store.user_delete(id, &self.audit(actor, "user.delete", id, json!({"username": u.username}))).await?;
        Ok(())
    }

    /// One group.
    pub async fn group(&self, id: &str) -> Result<Group, DirectoryError> {
        self.store.group_get(id).await?.ok_or_else(|| DirectoryError::NotFound(format!("group {id}")))
    }

    /// All groups with member counts.
    pub async fn groups(&self) -> Result<Vec<GroupView>, DirectoryError> {
        let everyone = self.store.user_list().await?.len();
        let mut out = Vec::new();
        for g in self.store.group_list().await? {
            let members = self.member_count(&g, everyone).await?;
            out.push(group_view(g, members));
        }
        Ok(out)
    }

    async fn member_count(&self, g: &Group, everyone: usize) -> Result<usize, DirectoryError> {
        if g.builtin == Some(Builtin::Users) {
            return Ok(everyone);
        }
        let mut users: Vec<String> = self.store.memberships_of_group(&g.id).await?.into_iter().map(|m| m.user_id).collect();
        users.dedup();
        Ok(users.len())
    }

    /// One group as shown.
    pub async fn group_view(&self, id: &str) -> Result<GroupView, DirectoryError> {
        let g = self.group(id).await?;
        let everyone = self.store.user_list().await?.len();
        let members = self.member_count(&g, everyone).await?;
        Ok(group_view(g, members))
    }

    /// Creates a group.
    pub async fn create_group(&self, input: &GroupInput, actor: &str) -> Result<GroupView, DirectoryError> {
        let name = check_group_name(input.name.as_deref().unwrap_or_default())?;
        let description = input.description.clone().unwrap_or_default();
        if description.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
            return Err(invalid("description", "must not contain control characters"));
        }
        if description.chars().count() > 1024 {
            return Err(invalid("description", "must be at most 1024 characters"));
        }
        let now = self.clock.now();
        let g = Group { id: crate::id::new("grp"), name, description, builtin: None, created_at: now, updated_at: now, managed_by: None };
        self.store.group_insert(&g, &self.audit(actor, "group.create", &g.id, json!({"name": g.name}))).await?;
        Ok(group_view(g, 0))
    }

    /// Changes a group's name or description. `Users` cannot be edited; the other
    /// built-in groups keep their names.
    pub async fn update_group(&self, id: &str, input: &GroupInput, actor: &str) -> Result<GroupView, DirectoryError> {
        let mut g = self.group(id).await?;
        self.editable(&g, actor)?;
        match g.builtin {
            Some(Builtin::Users) => return Err(DirectoryError::Conflict("group Users is built in and cannot be edited".into())),
            Some(_) if input.name.as_ref().is_some_and(|n| n.trim() != g.name) => {
                return Err(DirectoryError::Conflict(format!("group {} is built in and cannot be renamed", g.name)))
            }
            _ => {}
        }
        if let Some(name) = &input.name {
            g.name = check_group_name(name)?;
        }
        if let Some(d) = &input.description {
            if d.chars().count() > 1024 {
                return Err(invalid("description", "must be at most 1024 characters"));
            }
            g.description = d.clone();
        }
        g.updated_at = self.clock.now();
        self.store.group_update(&g, &self.audit(actor, "group.update", id, json!({"name": g.name}))).await?;
        self.group_view(id).await
    }

    /// Removes a group and the memberships it carried.
    pub async fn delete_group(&self, id: &str, actor: &str) -> Result<(), DirectoryError> {
        let g = self.group(id).await?;
        self.editable(&g, actor)?;
        self.store.group_delete(id, &self.audit(actor, "group.delete", id, json!({"name": g.name}))).await?;
        Ok(())
    }

    /// Members of a group with the sources of their memberships.
    pub async fn members(&self, id: &str) -> Result<Vec<MemberView>, DirectoryError> {
        let g = self.group(id).await?;
        let users: BTreeMap<String, User> = self.store.user_list().await?.into_iter().map(|u| (u.id.clone(), u)).collect();
        let mut sources: BTreeMap<String, Vec<String>> = BTreeMap::new();
        if g.builtin == Some(Builtin::Users) {
            for id in users.keys() {
                sources.insert(id.clone(), vec![]);
            }
        } else {
            for m in self.store.memberships_of_group(id).await? {
                sources.entry(m.user_id).or_default().push(m.source.encode());
            }
        }
        Ok(sources
            .into_iter()
            .filter_map(|(uid, sources)| {
                let u = users.get(&uid)?;
                Some(MemberView { user_id: uid, username: u.username.clone(), email: u.email.clone(), sources })
            })
            .collect())
    }

    /// Adds a user to a group by hand (a `manual` membership, which sync never removes).
    pub async fn add_member(&self, group_id: &str, user_id: &str, actor: &str) -> Result<(), DirectoryError> {
        let g = self.group(group_id).await?;
        if g.builtin == Some(Builtin::Users) {
            return Err(DirectoryError::Conflict("everyone is a member of Users; it cannot be edited".into()));
        }
        self.user(user_id).await?;
        let m = Membership { group_id: group_id.into(), user_id: user_id.into(), source: Source::Manual, created_at: self.clock.now() };
        let audit = self.audit(actor, "membership.add", group_id, json!({"user_id": user_id, "source": "manual"}));
        self.store.memberships_apply(&[m], &[], &[audit]).await?;
        Ok(())
    }

    /// Removes a manual membership.
    pub async fn remove_member(&self, group_id: &str, user_id: &str, actor: &str) -> Result<(), DirectoryError> {
        let g = self.group(group_id).await?;
        if g.builtin == Some(Builtin::Users) {
            return Err(DirectoryError::Conflict("everyone is a member of Users; it cannot be edited".into()));
        }
        let has = self.store.memberships_of_user(user_id).await?.into_iter().find(|m| m.group_id == group_id && m.source == Source::Manual);
        let Some(m) = has else {
            return Err(DirectoryError::NotFound(format!("manual membership of user {user_id} in group {group_id}")));
        };
        let audit = self.audit(actor, "membership.remove", group_id, json!({"user_id": user_id, "source": "manual"}));
        self.store.memberships_apply(&[], &[m], &[audit]).await?;
        Ok(())
    }

    async fn connection_exists(&self, id: &str) -> Result<(), DirectoryError> {
        match self.store.connection_get(id).await? {
            Some(_) => Ok(()),
            None => Err(DirectoryError::NotFound(format!("connection {id}"))),
        }
    }

    /// Links a user to (connection, subject) ahead of their first login through it; the
    /// user's other link on that connection, if any, goes. `Conflict` when the identity is
    /// another user's.
    pub async fn link_user(&self, user_id: &str, connection_id: &str, input: &LinkInput, actor: &str) -> Result<User, DirectoryError> {
        let subject = check_subject("subject", &input.subject)?;
        let user = self.user(user_id).await?;
        self.connection_exists(connection_id).await?;
        let link = Link { connection_id: connection_id.into(), subject, user_id: user_id.into(), created_at: self.clock.now() };
        let audit = self.audit(actor, "link.create", user_id, json!({"connection_id": connection_id, "by": "admin"}));
        self.store.link_set(&link, &audit).await?;
        Ok(user)
    }

    /// Removes a user's link on a connection: their next login through it is a first one.
    pub async fn unlink_user(&self, user_id: &str, connection_id: &str, actor: &str) -> Result<(), DirectoryError> {
        self.user(user_id).await?;
        let audit = self.audit(actor, "link.delete", user_id, json!({"connection_id": connection_id}));
        self.store.link_delete(user_id, connection_id, &audit).await?;
        Ok(())
    }

    /// All invitations.
    pub async fn invitations(&self) -> Result<Vec<InvitationView>, DirectoryError> {
        Ok(self.store.invitation_list().await?.into_iter().map(invitation_view).collect())
    }

    /// Invites an address: a pending user, and manual memberships of the given groups.
    pub async fn invite(&self, input: &NewInvitation, actor: &str) -> Result<InvitationView, DirectoryError> {
        let email = check_email("email", &input.email)?;
        let mut groups = Vec::new();
        for (i, gid) in input.groups.iter().enumerate() {
            match self.store.group_get(gid).await? {
                Some(g) if g.builtin != Some(Builtin::Users) => groups.push(g.id),
                Some(_) => {}
                None => return Err(invalid(&format!("groups[{i}]"), &format!("group {gid} does not exist"))),
            }
        }
        let expected = match (&input.connection_id, &input.subject) {
            (Some(c), Some(subject)) => {
                let subject = check_subject("subject", subject)?;
                if self.store.connection_get(c).await?.is_none() {
                    return Err(invalid("connection_id", &format!("connection {c} does not exist")));
                }
                Some((c.clone(), subject))
            }
            (None, None) => None,
            (Some(_), None) => return Err(invalid("subject", "is required with connection_id")),
            (None, Some(_)) => return Err(invalid("connection_id", "is required with subject")),
        };
        if self.store.user_by_email(&email).await?.is_some() {
            return Err(DirectoryError::Conflict("email: a user with this address already exists".into()));
        }
        let now = self.clock.now();
        let user = User {
            id: crate::id::new("usr"),
            username: email.clone(),
            email: Some(email.clone()),
            email_verified: true,
            status: UserStatus::Pending,
            invited_at: Some(now),
            profile: Default::default(),
            created_at: now,
            updated_at: now,
        };
        let inv = Invitation { id: crate::id::new("inv"), email, user_id: user.id.clone(), invited_by: actor.into(), created_at: now };
        let adds: Vec<Membership> =
            groups.iter().map(|g| Membership { group_id: g.clone(), user_id: user.id.clone(), source: Source::Manual, created_at: now }).collect();
        let mut audits = vec![self.audit(actor, "invitation.create", &inv.id, json!({"user_id": user.id, "groups": groups}))];
        audits.extend(groups.iter().map(|g| self.audit(actor, "membership.add", g, json!({"user_id": user.id, "source": "manual"}))));
        let links: Vec<Link> = expected
            .map(|(connection_id, subject)| {
                audits.push(self.audit(actor, "link.create", &user.id, json!({"connection_id": connection_id, "by": "invitation"})));
                Link { connection_id, subject, user_id: user.id.clone(), created_at: now }
            })
            .into_iter()
            .collect();
        // One transaction: an invitation is never left without the memberships and the
        // link it promised.
        self.store.invitation_insert(&inv, &user, &adds, &links, &audits).await?;
        Ok(invitation_view(inv))
    }

    /// The group names each user's sessions must carry now, as a login computes them
    /// (`Users` and the name of every group with a membership, sorted), for
    /// [`crate::state::Sessions::set_groups`] after a change to memberships or groups.
    pub async fn session_groups(&self, users: &BTreeSet<String>) -> Result<BTreeMap<String, Vec<String>>, DirectoryError> {
        let groups = self.group_names().await?;
        let mut out = BTreeMap::new();
        for u in users {
            let names = self.store.memberships_of_user(u).await?.into_iter().filter_map(|m| groups.get(&m.group_id).map(|g| g.name.clone()));
            out.insert(u.clone(), session_group_names(names));
        }
        Ok(out)
    }

    /// The users with a membership in a group (for `Users`, nobody: it is implicit and
    /// never renamed or removed).
    pub async fn member_ids(&self, group_id: &str) -> Result<BTreeSet<String>, DirectoryError> {
        Ok(self.store.memberships_of_group(group_id).await?.into_iter().map(|m| m.user_id).collect())
    }

    /// The users with a membership a connection granted (group sync).
    pub async fn granted_by(&self, connection_id: &str) -> Result<BTreeSet<String>, DirectoryError> {
        let source = Source::Connection(connection_id.to_string());
        let mut out = BTreeSet::new();
        for g in self.store.group_list().await? {
            out.extend(self.store.memberships_of_group(&g.id).await?.into_iter().filter(|m| m.source == source).map(|m| m.user_id));
        }
        Ok(out)
    }

    /// Withdraws an invitation (its user too, while still pending).
    pub async fn delete_invitation(&self, id: &str, actor: &str) -> Result<(), DirectoryError> {
        self.store.invitation_delete(id, &self.audit(actor, "invitation.delete", id, json!({}))).await?;
        Ok(())
    }
}

fn group_view(g: Group, members: usize) -> GroupView {
    GroupView {
        id: g.id,
        name: g.name,
        description: g.description,
        builtin: g.builtin,
        members,
        created_at: rfc3339(g.created_at),
        updated_at: rfc3339(g.updated_at),
        managed_by: g.managed_by,
    }
}

fn invitation_view(i: Invitation) -> InvitationView {
    InvitationView { id: i.id, email: i.email, user_id: i.user_id, invited_by: i.invited_by, created_at: rfc3339(i.created_at) }
}

#[cfg(test)]
mod tests {
    #[test]
    fn email_shapes() {
        assert!(super::check_email("email", "a@b.example").is_ok());
        for bad in
            ["", "a", "a@", "@b", "a@b@c", "a b@c", "a<b>@c", ".a@b", "a.@b", "a..b@c", "a@b..c", "a@.b", "a@b.", "carol@@x.test", "a\u{202E}@b", "a@b\r\nX: y"]
        {
            assert!(super::check_email("email", bad).is_err(), "{bad}");
        }
    }
}
