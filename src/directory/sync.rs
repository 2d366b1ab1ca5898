//! Group sync: the groups an upstream asserts become memberships whose source is the
//! connection. The change is computed as a [`Plan`] first, then applied; a dry run
//! shows the plan and applies nothing. Only memberships this connection granted are
//! ever removed: manual ones and other connections' are never touched.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::connection::{GroupMapping, Unmapped};
use crate::store::{Group, Membership, Source};
use crate::upstream::xmldsig::xml_trim;

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

/// Computes the plan. `asserted` are the group values from the IdP (names, object ids,
/// paths), `mapping` how they become directory groups, `groups` the directory's groups,
/// `current` the user's memberships (every source).
///
/// A value the mapping names goes to that group (by id, else by name); a value it does
/// not name is matched by name, or ignored when `unmapped` is `ignore`. Either way a
/// value that finds no group is reported in `unmatched`.
pub fn plan(asserted: &[String], mapping: &GroupMapping, groups: &[Group], current: &[Membership], connection_id: &str) -> Plan {
    // Names match regardless of ASCII case, anything else exactly (`store::name_key`). Built-in groups are never synced: `Users` is
    // everyone, and `Admins`/`Queue admins` would let whoever names a group in an IdP
    // grant themselves administration here — through a mapping too. Admins are made by hand.
    let syncable = || groups.iter().filter(|g| g.builtin.is_none());
    let by_name: BTreeMap<String, &Group> = syncable().map(|g| (crate::store::name_key(&g.name), g)).collect();
    let by_id: BTreeMap<&str, &Group> = syncable().map(|g| (g.id.as_str(), g)).collect();
    let mapped: BTreeMap<String, &str> = mapping.map.iter().map(|(k, v)| (crate::store::name_key(xml_trim(k)), v.as_str())).collect();
    let source = Source::Connection(connection_id.to_string());
    let granted: BTreeSet<&str> = current.iter().filter(|m| m.source == source).map(|m| m.group_id.as_str()).collect();
    let mut wanted = BTreeSet::new();
    let mut out = Plan::default();
    for name in asserted {
        let value = crate::store::name_key(xml_trim(name));
        let found = match mapped.get(&value) {
            Some(target) => by_id.get(target.trim()).or_else(|| by_name.get(&crate::store::name_key(target.trim()))),
            None if mapping.unmapped == Unmapped::Ignore => None,
            None => by_name.get(&value),
        };
        match found {
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
        let p = plan(&asserted, &GroupMapping::default(), &groups, &current, "c1");
        assert_eq!(p.add, vec![PlannedGroup { id: "g_eng".into(), name: "Engineers".into() }], "another connection's grant does not count");
        assert_eq!(p.remove, vec![PlannedGroup { id: "g_old".into(), name: "Old".into() }]);
        assert_eq!(p.unmatched, vec!["admins", "nope", "users"], "built-in groups are never synced");
        // The manual membership is never removed, even when not asserted.
        assert!(!p.remove.iter().any(|g| g.id == "g_man"));
        // Nothing asserted: remove every grant of this connection, and only those.
        let p = plan(&[], &GroupMapping::default(), &groups, &current, "c1");
        assert_eq!(p.remove.len(), 2);
        assert!(p.add.is_empty());
        assert!(plan(&["ops".into(), "old".into()], &GroupMapping::default(), &groups, &current, "c1").is_empty());
    }

    #[test]
    fn external_ids_and_paths_map_to_directory_groups() {
        let groups = vec![
            group("g_eng", "Engineers"),
            group("g_ops", "Ops"),
            group("g_child", "child"),
            Group { builtin: Some(Builtin::Admins), ..group("grp_admins", "Admins") },
        ];
        let oid = "5f2c8e1a-0b3d-4c6e-9f7a-1d2e3f4a5b6c";
        let mut map = BTreeMap::new();
        map.insert(oid.to_string(), "Engineers".to_string());
        map.insert("/parent/child".to_string(), "g_child".to_string());
        map.insert("admin-role".to_string(), "Admins".to_string());
        map.insert("gone".to_string(), "No such group".to_string());
        let by_name = GroupMapping { map: map.clone(), unmapped: Unmapped::ByName };
        let asserted: Vec<String> = vec![oid.to_uppercase(), "/parent/child".into(), "ops".into(), "admin-role".into(), "gone".into()];
        let p = plan(&asserted, &by_name, &groups, &[], "c1");
        let added: Vec<&str> = p.add.iter().map(|g| g.id.as_str()).collect();
        assert_eq!(added, vec!["g_child", "g_eng", "g_ops"], "object id (any ASCII case), path by group id, and an unmapped name");
        assert_eq!(p.unmatched, vec!["admin-role", "gone"], "a mapping never grants a built-in group; a missing target is reported");
        let ignore = GroupMapping { map, unmapped: Unmapped::Ignore };
        let p = plan(&asserted, &ignore, &groups, &[member("g_ops", Source::Connection("c1".into()))], "c1");
        let added: Vec<&str> = p.add.iter().map(|g| g.id.as_str()).collect();
        assert_eq!(added, vec!["g_child", "g_eng"]);
        assert_eq!(p.remove, vec![PlannedGroup { id: "g_ops".into(), name: "Ops".into() }], "an ignored value grants nothing, so its grant goes");
        assert!(p.unmatched.contains(&"ops".to_string()));
        // A Keycloak full path is not its last segment: without a mapping it matches only
        // a group named with the whole path.
        let p = plan(&["/contractors/child".into()], &GroupMapping::default(), &groups, &[], "c1");
        assert!(p.add.is_empty() && p.unmatched == vec!["/contractors/child"]);
    }
}
