//! The conformance suite every [`Store`] backend passes. Integration tests call
//! [`run`] on SQLite and on PostgreSQL; a new backend is done when it passes too.
//!
//! The suite makes its own ids, so it can run on a store that already has data.

use super::*;
use crate::audit::AuditEntry;

fn audit(action: &str, target: &str) -> AuditEntry {
    AuditEntry::new(1_000, "conformance", action, target, serde_json::json!({}))
}

fn connection(id: &str, name: &str) -> StoredConnection {
    StoredConnection {
        id: id.into(),
        display_name: name.into(),
        protocol: "oidc".into(),
        provider: "custom".into(),
        active: true,
        settings: "{\"a\":1}".into(),
        secrets: Some("v1:sealed".into()),
        created_at: 1_000,
        updated_at: 1_000,
        version: 1,
        managed_by: None,
    }
}

fn user(id: &str, name: &str, email: Option<&str>) -> User {
    User {
        id: id.into(),
        username: name.into(),
        email: email.map(Into::into),
        email_verified: email.is_some(),
        status: UserStatus::Active,
        invited_at: None,
        profile: Default::default(),
        created_at: 1_000,
        updated_at: 1_000,
    }
}

fn fail(what: &str) -> StoreError {
    StoreError::Corrupt(format!("conformance: {what}"))
}

fn check(cond: bool, what: &str) -> StoreResult<()> {
    if cond {
        Ok(())
    } else {
        Err(fail(what))
    }
}

/// Runs every check; the first failure is returned with what was being checked.
pub async fn run(store: &dyn Store) -> StoreResult<()> {
    let tag = crate::id::new("t");
    store.ping().await?;
    meta(store, &tag).await?;
    connections(store, &tag).await?;
    directory(store, &tag).await?;
    user_pages(store, &tag).await?;
    keys_and_audit(store, &tag).await?;
    clients(store, &tag).await?;
    Ok(())
}

async fn clients(store: &dyn Store, tag: &str) -> StoreResult<()> {
    let c = Client {
        client_id: format!("{tag}_app"),
        name: "App".into(),
        secret_sha256: "ab".repeat(32),
        redirect_uris: vec!["https://app.example/cb".into(), "https://app.example/cb2".into()],
        created_at: 1,
        updated_at: 1,
        managed_by: Some("config".into()),
        settings: ClientSettings {
            grant_types: vec!["refresh_token".into()],
            post_logout_redirect_uris: vec!["https://app.example/bye".into()],
            ..Default::default()
        },
    };
    store.client_insert(&c, &audit("client.create", &c.client_id)).await?;
    check(store.client_get(&c.client_id).await?.as_ref() == Some(&c), "client reads back")?;
    check(matches!(store.client_insert(&c, &audit("client.create", &c.client_id)).await, Err(StoreError::Conflict(_))), "client id is unique")?;
    let changed = Client { redirect_uris: vec!["https://new.example/cb".into()], updated_at: 2, ..c.clone() };
    store.client_update(&changed, &audit("client.update", &c.client_id)).await?;
    check(store.client_list().await?.contains(&changed), "client update is listed")?;
    store.client_delete(&c.client_id, &audit("client.delete", &c.client_id)).await?;
    check(store.client_get(&c.client_id).await?.is_none(), "client deleted")?;
    check(matches!(store.client_delete(&c.client_id, &audit("client.delete", &c.client_id)).await, Err(StoreError::NotFound(_))), "second delete is not found")
}

async fn meta(store: &dyn Store, tag: &str) -> StoreResult<()> {
    let key = format!("{tag}.k");
    check(store.meta_get(&key).await?.is_none(), "meta starts empty")?;
    check(store.meta_put_if_absent(&key, "one").await?, "first put_if_absent sets")?;
    check(!store.meta_put_if_absent(&key, "two").await?, "second put_if_absent does not")?;
    check(store.meta_get(&key).await?.as_deref() == Some("one"), "put_if_absent keeps the first")?;
    store.meta_put(&key, "three").await?;
    check(store.meta_get(&key).await?.as_deref() == Some("three"), "put overwrites")
}

async fn connections(store: &dyn Store, tag: &str) -> StoreResult<()> {
    let a = connection(&format!("{tag}_a"), &format!("{tag} Alpha"));
    store.connection_insert(&a, &audit("connection.create", &a.id)).await?;
    check(store.connection_get(&a.id).await?.as_ref() == Some(&a), "connection reads back as written")?;

    // Display names are unique regardless of case.
    let dup = connection(&format!("{tag}_b"), &format!("{tag} ALPHA"));
    check(
        matches!(store.connection_insert(&dup, &audit("connection.create", &dup.id)).await, Err(StoreError::Conflict(m)) if m.contains("display_name")),
        "duplicate display name (other case) is a conflict naming display_name",
    )?;
    check(store.connection_get(&dup.id).await?.is_none(), "refused insert leaves nothing")?;

    check(store.session_check("nobody", &a.id).await?.connection_active, "session check: the connection is on")?;

    // Optimistic concurrency: an update from an old version is refused.
    let mut b = a.clone();
    b.active = false;
    b.version = 2;
    b.updated_at = 2_000;
    store.connection_update(&b, 1, &audit("connection.update", &a.id)).await?;
    let mut c = a.clone();
    c.display_name = format!("{tag} Gamma");
    c.version = 2;
    check(
        matches!(store.connection_update(&c, 1, &audit("connection.update", &a.id)).await, Err(StoreError::Stale { current: 2 })),
        "stale update is refused with the current version",
    )?;
    check(store.connection_get(&a.id).await?.as_ref() == Some(&b), "stale update changed nothing")?;
    check(
        matches!(store.connection_update(&connection(&format!("{tag}_none"), "x"), 1, &audit("u", "x")).await, Err(StoreError::NotFound(_))),
        "update of a missing connection is not found",
    )?;

    let list = store.connection_list(ConnectionSort::Name, false).await?;
    check(list.iter().any(|x| x.id == a.id && !x.active), "list shows the update")?;
    let desc = store.connection_list(ConnectionSort::Name, true).await?;
    check(desc.first().map(|x| &x.id) == list.last().map(|x| &x.id), "descending reverses")?;

    // Deleting a connection removes its links and the memberships it granted.
    let u = user(&format!("{tag}_cu"), &format!("{tag}-cu"), None);
    store.user_insert(&u, &audit("user.create", &u.id)).await?;
    let link = Link { connection_id: a.id.clone(), subject: "sub-1".into(), user_id: u.id.clone(), created_at: 1 };
    store.link_insert(&link, &audit("link.create", &u.id)).await?;
    let granted = Membership { group_id: "grp_admins".into(), user_id: u.id.clone(), source: Source::Connection(a.id.clone()), created_at: 1 };
    let manual = Membership { source: Source::Manual, ..granted.clone() };
    store.memberships_apply(&[granted, manual.clone()], &[], &[]).await?;
    store.connection_delete(&a.id, &audit("connection.delete", &a.id)).await?;
    check(store.connection_get(&a.id).await?.is_none(), "deleted connection is gone")?;
    check(store.link_get(&a.id, "sub-1").await?.is_none(), "its links are gone")?;
    check(store.memberships_of_user(&u.id).await? == vec![manual], "its grants are gone, manual ones stay")?;
    check(matches!(store.connection_delete(&a.id, &audit("connection.delete", &a.id)).await, Err(StoreError::NotFound(_))), "second delete is not found")?;
    store.user_delete(&u.id, &audit("user.delete", &u.id)).await
}

/// The users table's reads: search, status, window, and the page's memberships and links.
async fn user_pages(store: &dyn Store, tag: &str) -> StoreResult<()> {
    let g = Group {
        id: format!("{tag}_pg"),
        name: format!("{tag}-page-group"),
        description: String::new(),
        builtin: None,
        created_at: 1_000,
        updated_at: 1_000,
        managed_by: None,
    };
    store.group_insert(&g, &audit("group.create", &g.id)).await?;
    let mut ids = vec![];
    for (i, name) in ["Cat", "ant", "bee_x"].iter().enumerate() {
        let mut u = user(&format!("{tag}_p{i}"), &format!("{tag}-{name}"), Some(&format!("{tag}-{i}@pages.example")));
        if i == 2 {
            u.status = UserStatus::Disabled;
        }
        store.user_insert(&u, &audit("user.create", &u.id)).await?;
        let m = Membership { group_id: g.id.clone(), user_id: u.id.clone(), source: Source::Manual, created_at: 1_000 };
        store.memberships_apply(&[m], &[], &[audit("membership.add", &g.id)]).await?;
        let l = Link { connection_id: format!("{tag}_c"), subject: format!("sub-{i}"), user_id: u.id.clone(), created_at: 1_000 };
        store.link_insert(&l, &audit("link.create", &u.id)).await?;
        ids.push(u.id);
    }
    let q = |search: &str, status: Option<UserStatus>, offset: i64, limit: i64| UserQuery { search: Some(search.to_string()), status, offset, limit };
    let p = store.user_page(&q(&tag.to_ascii_uppercase(), None, 0, 2)).await?;
    check(p.total == 3, "the count is of every match")?;
    check(p.users.iter().map(|u| u.id.as_str()).collect::<Vec<_>>() == vec![ids[1].as_str(), ids[2].as_str()], "by username, a window of 2")?;
    check(p.memberships.len() == 2 && p.memberships.iter().all(|m| m.user_id != ids[0]), "the page's memberships only")?;
    check(p.links.len() == 2 && p.links.iter().all(|l| l.user_id != ids[0]), "the page's links only")?;
    let p = store.user_page(&q(tag, None, 2, 2)).await?;
    check(p.users.len() == 1 && p.users[0].id == ids[0], "the next window")?;
    let p = store.user_page(&q(&format!("{tag}-bee_"), None, 0, 10)).await?;
    check(p.total == 1, "`_` is a character, not a wildcard")?;
    let p = store.user_page(&q(&format!("{tag}-b%"), None, 0, 10)).await?;
    check(p.total == 0, "`%` is a character, not a wildcard")?;
    let p = store.user_page(&q(&format!("{tag}-1@PAGES"), None, 0, 10)).await?;
    check(p.total == 1 && p.users[0].id == ids[1], "email, without case")?;
    let p = store.user_page(&q(tag, Some(UserStatus::Disabled), 0, 10)).await?;
    check(p.total == 1 && p.users[0].id == ids[2], "status filter")?;
    let found = store.users_by_ids(&[ids[0].clone(), format!("{tag}_nobody"), ids[1].clone()]).await?;
    check(found.iter().map(|u| u.id.as_str()).collect::<Vec<_>>() == vec![ids[1].as_str(), ids[0].as_str()], "users by ids, by username")?;
    let p = store.user_page(&q(&format!("{tag}-nobody"), None, 0, 10)).await?;
    check(p.total == 0 && p.users.is_empty() && p.memberships.is_empty(), "no match")?;
    Ok(())
}

async fn directory(store: &dyn Store, tag: &str) -> StoreResult<()> {
    // Built-in groups exist from the first migration.
    let groups = store.group_list().await?;
    for (kind, id, name, _) in Builtin::ALL {
        check(groups.iter().any(|g| g.id == id && g.name == name && g.builtin == Some(kind)), "built-in group present")?;
    }
    check(
        matches!(store.group_delete("grp_admins", &audit("group.delete", "grp_admins")).await, Err(StoreError::Conflict(_))),
        "built-in group cannot be deleted",
    )?;

    let alice = user(&format!("{tag}_alice"), &format!("{tag}-Alice"), Some(&format!("{tag}-Alice@Example.com")));
    store.user_insert(&alice, &audit("user.create", &alice.id)).await?;
    check(store.user_get(&alice.id).await?.as_ref() == Some(&alice), "user reads back")?;
    check(store.user_by_email(&format!("{tag}-alice@example.COM")).await?.map(|u| u.id) == Some(alice.id.clone()), "email lookup ignores case")?;
    let clash = user(&format!("{tag}_bob"), &format!("{tag}-bob"), Some(&format!("{tag}-alice@example.com")));
    check(
        matches!(store.user_insert(&clash, &audit("user.create", &clash.id)).await, Err(StoreError::Conflict(m)) if m.contains("email")),
        "duplicate email is a conflict naming email",
    )?;
    let clash = user(&format!("{tag}_bob"), &format!("{tag}-ALICE"), None);
    check(
        matches!(store.user_insert(&clash, &audit("user.create", &clash.id)).await, Err(StoreError::Conflict(m)) if m.contains("username")),
        "duplicate username is a conflict naming username",
    )?;
    let bob = user(&format!("{tag}_bob"), &format!("{tag}-bob"), None);
    store.user_insert(&bob, &audit("user.create", &bob.id)).await?;

    // Links: one upstream identity maps to one user.
    let link = Link { connection_id: format!("{tag}_c"), subject: "s".into(), user_id: alice.id.clone(), created_at: 5 };
    store.link_insert(&link, &audit("link.create", &alice.id)).await?;
    check(store.link_get(&link.connection_id, "s").await?.as_ref() == Some(&link), "link reads back")?;
    check(store.user_by_link(&link.connection_id, "s").await?.as_ref() == Some(&alice), "user by link")?;
    check(store.user_by_link(&link.connection_id, "other").await?.is_none(), "no user for an unknown subject")?;
    let again = Link { user_id: bob.id.clone(), ..link.clone() };
    check(matches!(store.link_insert(&again, &audit("link.create", &bob.id)).await, Err(StoreError::Conflict(_))), "an identity links to one user only")?;
    check(store.links_of_user(&alice.id).await? == vec![link.clone()], "links of user")?;
    let ghost = Link { user_id: format!("{tag}_ghost"), subject: "g".into(), ..link.clone() };
    check(matches!(store.link_insert(&ghost, &audit("link.create", "g")).await, Err(StoreError::NotFound(_))), "link to a missing user is refused")?;
    // An admin's pre-link: another user's identity is a conflict; the user's own link on
    // the connection is replaced; setting it again changes nothing; deleting it removes it.
    check(matches!(store.link_set(&again, &audit("link.create", &bob.id)).await, Err(StoreError::Conflict(_))), "link_set: another user's identity")?;
    check(matches!(store.link_set(&ghost, &audit("link.create", "g")).await, Err(StoreError::NotFound(_))), "link_set: a missing user")?;
    let pre = Link { user_id: bob.id.clone(), subject: "pre".into(), ..link.clone() };
    store.link_set(&pre, &audit("link.create", &bob.id)).await?;
    let moved = Link { subject: "pre2".into(), ..pre.clone() };
    store.link_set(&moved, &audit("link.create", &bob.id)).await?;
    store.link_set(&moved, &audit("link.create", &bob.id)).await?;
    check(store.links_of_user(&bob.id).await? == vec![moved.clone()], "link_set replaces the user's link on the connection")?;
    store.link_delete(&bob.id, &moved.connection_id, &audit("link.delete", &bob.id)).await?;
    check(store.links_of_user(&bob.id).await?.is_empty() && store.user_by_link(&moved.connection_id, "pre2").await?.is_none(), "link_delete")?;
    check(matches!(store.link_delete(&bob.id, &moved.connection_id, &audit("link.delete", &bob.id)).await, Err(StoreError::NotFound(_))), "link_delete: none")?;

    // Groups, memberships with sources.
    let g = Group {
        id: format!("{tag}_g"),
        name: format!("{tag} Engineers"),
        description: "d".into(),
        builtin: None,
        created_at: 1,
        updated_at: 1,
        managed_by: Some("config".into()),
    };
    store.group_insert(&g, &audit("group.create", &g.id)).await?;
    let dup = Group { id: format!("{tag}_g2"), name: g.name.to_uppercase(), ..g.clone() };
    check(
        matches!(store.group_insert(&dup, &audit("group.create", &dup.id)).await, Err(StoreError::Conflict(m)) if m.contains("name")),
        "duplicate group name is a conflict",
    )?;
    let renamed = Group { name: format!("{tag} Eng"), updated_at: 2, ..g.clone() };
    store.group_update(&renamed, &audit("group.update", &g.id)).await?;
    check(store.group_get(&g.id).await?.as_ref() == Some(&renamed), "group update reads back")?;

    let manual = Membership { group_id: g.id.clone(), user_id: alice.id.clone(), source: Source::Manual, created_at: 3 };
    let synced = Membership { source: Source::Connection(format!("{tag}_c")), ..manual.clone() };
    store.memberships_apply(&[manual.clone(), synced.clone(), manual.clone()], &[], &[audit("membership.add", &g.id)]).await?;
    check(store.memberships_of_group(&g.id).await?.len() == 2, "two sources are two memberships; re-adding is a no-op")?;
    store.memberships_apply(&[], std::slice::from_ref(&synced), &[audit("membership.remove", &g.id)]).await?;
    check(store.memberships_of_user(&alice.id).await? == vec![manual.clone()], "removing a synced grant keeps the manual one")?;
    let ghost = Membership { group_id: format!("{tag}_nogroup"), ..manual.clone() };
    check(
        matches!(store.memberships_apply(&[synced.clone(), ghost], &[], &[]).await, Err(StoreError::NotFound(_))),
        "membership of a missing group is refused",
    )?;
    check(store.memberships_of_user(&alice.id).await? == vec![manual.clone()], "a refused batch applies nothing")?;
    // What a login settles its session against, in one read.
    let seen = store.session_check(&alice.id, &format!("{tag}_nosuch")).await?;
    check(
        seen.user_status == Some(UserStatus::Active) && !seen.connection_active && seen.groups == vec![renamed.name.clone()],
        "session check: the status, no connection, the group's name",
    )?;
    let seen = store.session_check(&bob.id, &format!("{tag}_nosuch")).await?;
    check(seen.user_status == Some(UserStatus::Active) && seen.groups.is_empty(), "session check: a user without groups")?;
    let seen = store.session_check(&format!("{tag}_ghost"), &format!("{tag}_nosuch")).await?;
    check(seen == SessionCheck::default(), "session check: a user that is gone")?;

    // Deleting a group removes the grants it carried.
    store.group_delete(&g.id, &audit("group.delete", &g.id)).await?;
    check(store.memberships_of_user(&alice.id).await?.is_empty(), "group delete removes its memberships")?;

    // Invitations come with a pending user; deleting a pending invitation removes the user.
    let invited = User {
        status: UserStatus::Pending,
        invited_at: Some(9),
        profile: Default::default(),
        ..user(&format!("{tag}_inv"), &format!("{tag}-new@example.com"), Some(&format!("{tag}-new@example.com")))
    };
    let inv = Invitation {
        id: format!("{tag}_i"),
        email: invited.email.clone().unwrap_or_default(),
        user_id: invited.id.clone(),
        invited_by: "admin".into(),
        created_at: 9,
    };
    let grant = Membership { group_id: "grp_admins".into(), user_id: invited.id.clone(), source: Source::Manual, created_at: 9 };
    store.invitation_insert(&inv, &invited, &[grant], &[], &[audit("invitation.create", &inv.id)]).await?;
    check(store.memberships_of_user(&invited.id).await?.len() == 1, "the invitation's memberships are written with it")?;
    check(store.invitation_list().await?.contains(&inv), "invitation listed")?;
    check(store.user_get(&invited.id).await?.map(|u| u.status) == Some(UserStatus::Pending), "invited user is pending")?;
    let again = Invitation { id: format!("{tag}_i2"), user_id: format!("{tag}_inv2"), ..inv.clone() };
    let again_user = User { id: format!("{tag}_inv2"), username: format!("{tag}-other"), email: Some(format!("{tag}-NEW@example.com")), ..invited.clone() };
    check(
        matches!(store.invitation_insert(&again, &again_user, &[], &[], &[audit("invitation.create", &again.id)]).await, Err(StoreError::Conflict(_))),
        "an address is invited once",
    )?;
    check(store.user_get(&again_user.id).await?.is_none(), "refused invitation leaves no user")?;
    store.invitation_delete(&inv.id, &audit("invitation.delete", &inv.id)).await?;
    check(store.user_get(&invited.id).await?.is_none(), "pending user goes with the invitation")?;

    // Removing a user ends their links and memberships.
    store.memberships_apply(&[Membership { group_id: "grp_admins".into(), ..manual.clone() }], &[], &[]).await?;
    store.user_delete(&alice.id, &audit("user.delete", &alice.id)).await?;
    check(store.user_get(&alice.id).await?.is_none(), "user gone")?;
    check(store.links_of_user(&alice.id).await?.is_empty(), "links gone")?;
    check(store.memberships_of_user(&alice.id).await?.is_empty(), "memberships gone")?;
    check(matches!(store.user_delete(&alice.id, &audit("user.delete", &alice.id)).await, Err(StoreError::NotFound(_))), "second delete is not found")?;
    let mut bob2 = bob.clone();
    bob2.email = Some(format!("{tag}-bob@example.com"));
    bob2.updated_at = 7;
    store.user_update(&bob2, &audit("user.update", &bob.id)).await?;
    check(store.user_get(&bob.id).await?.as_ref() == Some(&bob2), "user update reads back")?;
    store.user_delete(&bob.id, &audit("user.delete", &bob.id)).await
}

async fn keys_and_audit(store: &dyn Store, tag: &str) -> StoreResult<()> {
    let k1 = SigningKey {
        kid: format!("{tag}_k1"),
        alg: "ES256".into(),
        private_key: "v1:x".into(),
        public_jwk: "{}".into(),
        created_at: chrono::Utc::now().timestamp_millis() + 1_000_000,
        retired_at: None,
    };
    store.signing_key_insert(&k1, &audit("key.create", &k1.kid)).await?;
    let k2 = SigningKey { kid: format!("{tag}_k2"), created_at: k1.created_at + 1, ..k1.clone() };
    store.signing_key_insert(&k2, &audit("key.create", &k2.kid)).await?;
    let keys = store.signing_key_list().await?;
    check(keys.first().map(|k| k.kid.as_str()) == Some(k2.kid.as_str()), "newest key first")?;
    check(keys.iter().filter(|k| k.retired_at.is_none()).count() == 1, "one active key; older ones retired but kept")?;

    let e = AuditEntry::new(42, "admin", "test.event", tag, serde_json::json!({"field": "value"}));
    store.audit_append(&e).await?;
    let page = store.audit_list(AuditQuery { before: None, limit: 3, ..Default::default() }).await?;
    check(page.len() == 3, "audit page has the limit")?;
    let newest = page.first().ok_or_else(|| fail("audit empty"))?;
    check(newest.action == "test.event" && newest.target == tag && newest.detail == e.detail, "newest audit entry first")?;
    check(page.windows(2).all(|w| w[0].seq > w[1].seq), "audit newest first")?;
    let next = store.audit_list(AuditQuery { before: Some(newest.seq), limit: 1, ..Default::default() }).await?;
    check(next.first().map(|x| x.seq) == page.get(1).map(|x| x.seq), "audit pages with before")?;
    let all = store.audit_list(AuditQuery { before: None, limit: 1000, ..Default::default() }).await?;
    check(all.iter().any(|a| a.action == "connection.create"), "mutations were audited")?;
    audit_filters(store, tag).await?;
    health(store, tag).await
}

async fn audit_filters(store: &dyn Store, tag: &str) -> StoreResult<()> {
    let conn = format!("{tag}_con");
    let entries = [
        AuditEntry::new(5_000, &format!("connection:{conn}"), "login.success", &format!("{tag}_usr"), serde_json::json!({})),
        AuditEntry::new(6_000, &format!("connection:{conn}"), "login.refused", &conn, serde_json::json!({})),
        AuditEntry::new(7_000, "admin", "connection.update", &conn, serde_json::json!({})),
        AuditEntry::new(8_000, "admin", "login_x", &format!("{tag}_other"), serde_json::json!({})),
        // A value that would be a wildcard in LIKE matches only itself.
        AuditEntry::new(9_000, &format!("{tag}%"), "login.success", "x", serde_json::json!({})),
    ];
    for e in &entries {
        store.audit_append(e).await?;
    }
    let mine =
        |list: Vec<AuditEntry>| -> Vec<(String, i64)> { list.into_iter().filter(|e| e.at >= 5_000 && e.at <= 9_000).map(|e| (e.action, e.at)).collect() };
    let by_connection = AuditQuery { connection: Some(conn.clone()), limit: 1000, ..Default::default() };
    check(
        mine(store.audit_list(by_connection).await?) == [("connection.update".into(), 7_000), ("login.refused".into(), 6_000), ("login.success".into(), 5_000)],
        "audit filter by connection: its target and its actor",
    )?;
    let by_actor = AuditQuery { actor: Some(format!("connection:{conn}")), limit: 1000, ..Default::default() };
    check(store.audit_list(by_actor).await?.len() == 2, "audit filter by actor")?;
    let by_target = AuditQuery { target: Some(format!("{tag}_usr")), limit: 1000, ..Default::default() };
    check(mine(store.audit_list(by_target).await?) == [("login.success".into(), 5_000)], "audit filter by target")?;
    let prefix = AuditQuery { action: Some("login.".into()), connection: Some(conn.clone()), limit: 1000, ..Default::default() };
    check(store.audit_list(prefix).await?.len() == 2, "audit filter by action prefix")?;
    let exact = AuditQuery { action: Some("login.refused".into()), connection: Some(conn.clone()), limit: 1000, ..Default::default() };
    check(store.audit_list(exact).await?.len() == 1, "audit filter by exact action")?;
    let window = AuditQuery { since: Some(6_000), until: Some(8_000), connection: Some(conn.clone()), limit: 1000, ..Default::default() };
    check(
        mine(store.audit_list(window).await?) == [("connection.update".into(), 7_000), ("login.refused".into(), 6_000)],
        "audit filter by time: since inclusive, until exclusive",
    )?;
    let wildcard = AuditQuery { actor: Some(format!("{tag}_")), limit: 1000, ..Default::default() };
    check(store.audit_list(wildcard).await?.is_empty(), "audit filters compare exactly")
}

async fn health(store: &dyn Store, tag: &str) -> StoreResult<()> {
    let conn = format!("{tag}_health");
    let get = || async { Ok::<_, StoreError>(store.health_list().await?.into_iter().find(|h| h.connection_id == conn)) };
    check(get().await?.is_none(), "no health before any login")?;
    store.health_login(&conn, 2_000).await?;
    store.health_login(&conn, 1_000).await?;
    store.health_error(&conn, 3_000, "upstream: invalid_reply").await?;
    store.health_error(&conn, 2_500, "older").await?;
    let h = get().await?.ok_or_else(|| fail("health recorded"))?;
    check(h.last_login_at == Some(2_000), "the latest login stays when an older one is recorded after it")?;
    check(h.last_error_at == Some(3_000) && h.last_error.as_deref() == Some("upstream: invalid_reply"), "the latest error stays")?;
    store.health_error(&conn, 4_000, "directory: no_account").await?;
    let h = get().await?.ok_or_else(|| fail("health recorded"))?;
    check(
        h.last_error_at == Some(4_000) && h.last_error.as_deref() == Some("directory: no_account") && h.last_login_at == Some(2_000),
        "a newer error replaces it",
    )
}
