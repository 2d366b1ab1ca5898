//! Group sync: the groups an upstream asserts become memberships whose source is the
//! connection. The change is computed as a [`Plan`] first, then applied; a dry run
//! shows the plan and applies nothing. Only memberships this connection granted are
//! ever removed: manual ones and other connections' are never touched.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::store::{Group, Membership, Source};

/// A group the plan adds or removes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
pub struct PlannedGroup {
    /// Group id.
    pub id: String,
    /// Group name.
    pub name: String,
}

/// What group sync would change for one user and one connection.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Plan {
    /// Memberships to add (source: this connection).
    pub add: Vec<PlannedGroup>,
    /// Memberships this connection granted that the IdP no longer asserts.
    pub remove: Vec<PlannedGroup>,
    /// Asserted groups with no group of that name in the directory (ignored).
    pub unmatched: Vec<String>,
}

impl Plan {
    /// Whether nothing changes.
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.remove.is_empty()
    }
}

/// Computes the plan. `asserted` are the group names from the IdP, `groups` the
/// directory's groups, `current` the user's memberships (every source).
pub fn plan(asserted: &[String], groups: &[Group], current: &[Membership], connection_id: &str) -> Plan {
    // Names match regardless of ASCII case, anything else exactly (`store::name_key`). Built-in groups are never synced: `Users` is
    // everyone, and `Admins`/`Queue admins` would let whoever names a group in an IdP
    // grant themselves administration here. Admins are made by hand.
    let by_name: BTreeMap<String, &Group> = groups.iter().filter(|g| g.builtin.is_none()).map(|g| (crate::store::name_key(&g.name), g)).collect();
    let source = Source::Connection(connection_id.to_string());
    let granted: BTreeSet<&str> = current.iter().filter(|m| m.source == source).map(|m| m.group_id.as_str()).collect();
    let mut wanted = BTreeSet::new();
    let mut out = Plan::default();
    for name in asserted {
        match by_name.get(&crate::store::name_key(crate::upstream::xmldsig::xml_trim(name))) {
            Some(g) => {
                if wanted.insert(g.id.as_str()) && !granted.contains(g.id.as_str()) {
                    out.add.push(PlannedGroup { id: g.id.clone(), name: g.name.clone() });
                }
            }
            None => out.unmatched.push(name.clone()),
        }
    }
    let names: BTreeMap<&str, &str> = groups.iter().map(|g| (g.id.as_str(), g.name.as_str())).collect();
    for id in granted.difference(&wanted) {
        out.remove.push(PlannedGroup { id: id.to_string(), name: names.get(id).copied().unwrap_or(id).to_string() });
    }
    out.add.sort();
    out.remove.sort();
    out.unmatched.sort();
    out.unmatched.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Builtin;

    fn group(id: &str, name: &str) -> Group {
        Group { id: id.into(), name: name.into(), description: String::new(), builtin: None, created_at: 0, updated_at: 0, managed_by: None }
    }

    fn member(group: &str, source: Source) -> Membership {
        Membership { group_id: group.into(), user_id: "u".into(), source, created_at: 0 }
    }

    #[test]
    fn adds_matches_removes_only_its_own_grants() {
        let groups = vec![
            group("g_eng", "Engineers"),
            group("g_ops", "Ops"),
            group("g_old", "Old"),
            group("g_man", "Manual"),
            Group { builtin: Some(Builtin::Users), ..group("grp_users", "Users") },
            Group { builtin: Some(Builtin::Admins), ..group("grp_admins", "Admins") },
        ];
        let current = vec![
            member("g_ops", Source::Connection("c1".into())),
            member("g_old", Source::Connection("c1".into())),
            member("g_man", Source::Manual),
            member("g_eng", Source::Connection("c2".into())),
        ];
        let asserted = vec!["engineers".into(), "OPS".into(), "nope".into(), "users".into(), "Engineers".into(), "admins".into()];
        let p = plan(&asserted, &groups, &current, "c1");
        assert_eq!(p.add, vec![PlannedGroup { id: "g_eng".into(), name: "Engineers".into() }], "another connection's grant does not count");
        assert_eq!(p.remove, vec![PlannedGroup { id: "g_old".into(), name: "Old".into() }]);
        assert_eq!(p.unmatched, vec!["admins", "nope", "users"], "built-in groups are never synced");
        // The manual membership is never removed, even when not asserted.
        assert!(!p.remove.iter().any(|g| g.id == "g_man"));
        // Nothing asserted: remove every grant of this connection, and only those.
        let p = plan(&[], &groups, &current, "c1");
        assert_eq!(p.remove.len(), 2);
        assert!(p.add.is_empty());
        assert!(plan(&["ops".into(), "old".into()], &groups, &current, "c1").is_empty());
    }
}
