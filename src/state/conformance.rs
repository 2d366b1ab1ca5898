//! The suite every state backend passes. It moves the clock it is given, so a backend
//! under test must read time from that same clock (memory) or be given TTLs in real time.

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
