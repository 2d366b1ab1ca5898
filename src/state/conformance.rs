//! The suite every state backend passes. It moves the clock it is given, so a backend
//! under test must read time from that same clock (memory) or be given TTLs in real time.

use std::collections::BTreeMap;

use super::*;
use crate::clock::Clock;

fn fail(what: &str) -> StateError {
    StateError(format!("conformance: {what}"))
}

fn check(ok: bool, what: &str) -> StateResult<()> {
    if ok {
        Ok(())
    } else {
        Err(fail(what))
    }
}

/// Single use, no overwrite of a live value, expiry.
pub async fn ephemeral(e: &dyn Ephemeral, clock: &Clock) -> StateResult<()> {
    let key = format!("conf:{}", crate::id::token(8));
    e.ping().await?;
    check(e.put_new(&key, "v1", 60_000).await?, "first put stores")?;
    check(!e.put_new(&key, "v2", 60_000).await?, "a live key is not overwritten")?;
    check(e.get(&key).await?.as_deref() == Some("v1"), "get reads the value")?;
    check(e.get(&key).await?.as_deref() == Some("v1"), "get does not consume it")?;
    check(e.take(&key).await?.as_deref() == Some("v1"), "take returns the value")?;
    check(e.take(&key).await?.is_none(), "a value is taken once")?;
    check(e.put_new(&key, "v3", 1_000).await?, "a taken key can be stored again")?;
    clock.advance(1_001);
    check(e.take(&key).await?.is_none(), "an expired value is gone")?;
    check(e.put_new(&key, "v4", 1_000).await?, "an expired key can be stored again")?;
    Ok(())
}

/// A flooding client pushes out its own oldest flows, never another client's: with
/// `quota` flows per client, a client that starts `quota + 20` keeps its newest `quota`.
pub async fn flow_quota(e: &dyn Ephemeral, quota: usize) -> StateResult<()> {
    let run = crate::id::token(8);
    let (victim, flooder) = (format!("victim-{run}"), format!("flooder-{run}"));
    check(e.put_flow(&victim, &format!("flow:{run}:v"), "v", 60_000).await?, "the victim's flow is stored")?;
    for i in 0..quota + 20 {
        check(e.put_flow(&flooder, &format!("flow:{run}:f{i}"), "f", 60_000).await?, "a flood's flow is stored (pushing out its own)")?;
    }
    check(e.get(&format!("flow:{run}:v")).await?.is_some(), "another client's flow survives the flood")?;
    check(e.get(&format!("flow:{run}:f0")).await?.is_none(), "the flood's oldest flow was pushed out")?;
    check(e.get(&format!("flow:{run}:f{}", quota + 19)).await?.is_some(), "the flood's newest flow is kept")?;
    let mut kept = 0;
    for i in 0..quota + 20 {
        kept += usize::from(e.get(&format!("flow:{run}:f{i}")).await?.is_some());
    }
    check(kept == quota, &format!("the flood keeps exactly its quota ({kept} kept, quota {quota})"))?;
    // A taken flow frees its place: the client can start another without losing one.
    check(e.take(&format!("flow:{run}:f{}", quota + 19)).await?.is_some(), "a flow is taken")?;
    check(e.put_flow(&flooder, &format!("flow:{run}:again"), "f", 60_000).await?, "a new flow is stored")?;
    check(e.get(&format!("flow:{run}:f20")).await?.is_some(), "a taken flow's place is reused before an older one is pushed out")?;
    Ok(())
}

/// Absolute and idle expiry, touch, removal by id and by user.
pub async fn sessions(s: &dyn Sessions, clock: &Clock) -> StateResult<()> {
    let now = clock.now();
    let mk = |id: &str, user: &str| Session {
        id: id.into(),
        user_id: user.into(),
        connection_id: "c".into(),
        username: "u".into(),
        email: None,
        email_verified: false,
        name: None,
        groups: vec!["g".into()],
        created_at: now,
        expires_at: now + 10_000,
        idle_timeout_ms: 4_000,
        last_seen: now,
        profile: Default::default(),
        upstream_token: None,
        auth_time: None,
    };
    let tag = crate::id::token(8);
    let (a, b, c) = (format!("a{tag}"), format!("b{tag}"), format!("c{tag}"));
    s.create(&mk(&a, "u1")).await?;
    s.create(&mk(&b, "u1")).await?;
    s.create(&mk(&c, "u2")).await?;
    check(s.touch(&a, now + 3_000).await?.is_some_and(|x| x.last_seen == now + 3_000), "touch moves last use")?;
    check(
        s.touch(&a, now + 3_500).await?.is_some_and(|x| (now + 3_500 - LAST_SEEN_STEP_MS..=now + 3_500).contains(&x.last_seen)),
        "last use is recorded to within a second",
    )?;
    check(s.touch(&b, now + 5_000).await?.is_none(), "idle session is gone")?;
    check(s.touch(&a, now + 6_000).await?.is_some(), "a used session stays")?;
    check(s.touch(&a, now + 10_000).await?.is_none(), "absolute expiry ends it")?;
    check(s.remove(&c).await?.is_some(), "remove returns the session")?;
    check(s.touch(&c, now).await?.is_none(), "removed session is gone")?;
    s.create(&mk(&a, "u3")).await?;
    s.create(&mk(&b, "u3")).await?;
    check(s.remove_user("u3").await? == 2, "remove_user ends every session of the user")?;
    check(s.touch(&a, now).await?.is_none(), "and they are gone")?;
    Ok(())
}

/// Live revocation: groups rewritten in sessions that already exist, and every session
/// of a connection ended, without touching anyone else's.
pub async fn revocation(s: &dyn Sessions, clock: &Clock) -> StateResult<()> {
    let now = clock.now();
    let mk = |id: &str, user: &str, conn: &str| Session {
        id: id.into(),
        user_id: user.into(),
        connection_id: conn.into(),
        username: "u".into(),
        email: None,
        email_verified: false,
        name: None,
        groups: vec!["Users".into(), "admins".into()],
        created_at: now,
        expires_at: now + 60_000,
        idle_timeout_ms: 60_000,
        last_seen: now,
        upstream_token: Some("t".into()),
        auth_time: None,
        profile: Default::default(),
    };
    let tag = crate::id::token(8);
    let (u1, u2, u3) = (format!("r1{tag}"), format!("r2{tag}"), format!("r3{tag}"));
    let (c1, c2) = (format!("con_a{tag}"), format!("con_b{tag}"));
    let ids: Vec<String> = (0..5).map(|i| format!("s{i}{tag}")).collect();
    s.create(&mk(&ids[0], &u1, &c1)).await?;
    s.create(&mk(&ids[1], &u1, &c2)).await?;
    s.create(&mk(&ids[2], &u2, &c1)).await?;
    s.create(&mk(&ids[3], &u3, &c2)).await?;
    // Read once first: a backend with a cache in front must not answer the old groups.
    for id in &ids[..4] {
        check(s.touch(id, now).await?.is_some(), "sessions start live")?;
    }
    let groups = |id: String| async move { s.touch(&id, now + 10).await.map(|x| x.map(|x| x.groups.clone())) };
    let changes: BTreeMap<String, Vec<String>> = [(u1.clone(), vec!["Users".into()]), (u2.clone(), vec!["Users".into(), "renamed".into()])].into();
    check(s.set_groups(&changes).await? == 3, "set_groups rewrites every session of the users named")?;
    check(groups(ids[0].clone()).await? == Some(vec!["Users".into()]), "a removed group is gone from a session")?;
    check(groups(ids[1].clone()).await? == Some(vec!["Users".into()]), "from every session of that user")?;
    check(groups(ids[2].clone()).await? == Some(vec!["Users".into(), "renamed".into()]), "a renamed group shows its new name")?;
    check(groups(ids[3].clone()).await? == Some(vec!["Users".into(), "admins".into()]), "another user's session keeps its groups")?;
    let kept = s.touch(&ids[0], now + 20).await?;
    check(kept.as_ref().is_some_and(|x| x.user_id == u1 && x.connection_id == c1 && x.expires_at == now + 60_000), "nothing else changes")?;
    check(kept.is_some_and(|x| x.upstream_token.as_deref() == Some("t")), "the upstream token stays")?;
    check(s.set_groups(&BTreeMap::new()).await? == 0, "nothing to change changes nothing")?;
    // A session created after a change carries what its login computed.
    s.create(&mk(&ids[4], &u1, &c1)).await?;
    check(groups(ids[4].clone()).await?.is_some_and(|g| g.contains(&"admins".to_string())), "a later session is its own")?;

    check(s.remove_connection(&c1).await? == 3, "remove_connection ends every session of the connection")?;
    for id in [&ids[0], &ids[2], &ids[4]] {
        check(s.touch(id, now + 30).await?.is_none(), "and they are gone")?;
    }
    check(s.touch(&ids[1], now + 30).await?.is_some(), "the user's session through another connection stays")?;
    check(s.touch(&ids[3], now + 30).await?.is_some(), "another connection's sessions stay")?;
    check(s.remove_connection(&c1).await? == 0, "a second time finds nothing")?;
    // The admin's lists, by public sid: a connection's sessions, a user's; ending one.
    let by_conn = s.list_connection(&c2, now + 40).await?;
    let mut sids: Vec<String> = by_conn.iter().map(|(sid, _)| sid.clone()).collect();
    sids.sort();
    let mut want = vec![super::public_sid(&ids[1]), super::public_sid(&ids[3])];
    want.sort();
    check(sids == want, "list_connection names the connection's sessions")?;
    check(s.list_connection(&c1, now + 40).await?.is_empty(), "an ended connection lists nothing")?;
    let listed = s.list_user(&u3, now + 40).await?;
    check(listed.len() == 1 && listed[0].0 == super::public_sid(&ids[3]) && listed[0].1.connection_id == c2, "list_user names the session by its sid")?;
    check(!s.remove_sid(&u1, &listed[0].0).await?, "another user's sid ends nothing")?;
    check(s.touch(&ids[3], now + 40).await?.is_some(), "and the session stays")?;
    check(s.remove_sid(&u3, &listed[0].0).await?, "remove_sid ends the user's session")?;
    check(s.touch(&ids[3], now + 50).await?.is_none(), "it is gone")?;
    check(s.list_user(&u3, now + 50).await?.is_empty(), "and no longer listed")?;
    check(s.remove_user(&u1).await? == 1, "remove_user still finds the user's other session")?;
    Ok(())
}

/// Live sessions counted per connection (for the metrics), where the backend counts.
pub async fn counts(s: &dyn Sessions, clock: &Clock) -> StateResult<()> {
    let now = clock.now();
    let tag = crate::id::token(8);
    let (a, b, none) = (format!("ca{tag}"), format!("cb{tag}"), format!("cn{tag}"));
    let mk = |conn: &str, ttl: Millis| Session {
        id: crate::id::token(16),
        user_id: format!("u{tag}"),
        connection_id: conn.into(),
        username: "u".into(),
        email: None,
        email_verified: false,
        name: None,
        groups: vec![],
        created_at: now,
        expires_at: now + ttl,
        idle_timeout_ms: 60_000,
        last_seen: now,
        profile: Default::default(),
        upstream_token: None,
        auth_time: None,
    };
    s.create(&mk(&a, 10_000)).await?;
    s.create(&mk(&a, 10_000)).await?;
    s.create(&mk(&b, 10_000)).await?;
    s.create(&mk(&b, 500)).await?;
    clock.advance(600);
    let Some(counts) = s.count_by_connection(&[a.clone(), b.clone(), none.clone()], clock.now()).await? else {
        return Ok(());
    };
    check(counts.get(&a) == Some(&2), "two live sessions of the first connection")?;
    check(counts.get(&b) == Some(&1), "an expired session is not counted")?;
    check(counts.get(&none) == Some(&0), "a connection without sessions counts zero")
}
