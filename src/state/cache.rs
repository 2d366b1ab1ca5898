//! A replica's memory of the sessions it recently read from a shared store (Redis), so
//! the ingress check (`/auth`, on every request) answers without a round trip.
//!
//! Serving from memory is only safe while this replica hears every revocation. The
//! shared store publishes one on an invalidation feed (see `state::redis`), and the feed
//! also carries this replica's own heartbeat. The cache answers only while its last
//! heartbeat is fresh ([`FRESH_MS`]): a dropped subscription, a frozen or unreachable
//! Redis, or a missed message all stop the heartbeat, and then every lookup goes to the
//! store (which fails closed). Whatever was cached before such a gap is thrown away
//! when the feed comes back, since messages may have been lost in between. Entries
//! also expire after a short TTL: the safety bound, and the interval at which a
//! session's last use is written through to the store.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use async_trait::async_trait;
use sha2::{Digest, Sha256};

use super::{Session, Sessions, StateResult};
use crate::clock::Millis;

/// How often a replica publishes its heartbeat on the invalidation feed.
pub const HEARTBEAT_MS: u64 = 200;
/// The cache answers only if this replica's heartbeat came back within this long, so a
/// revocation published anywhere reaches it (or turns its cache off) within a second.
pub const FRESH_MS: i64 = 700;
/// At most this many cached sessions; beyond it lookups go to the store.
pub const MAX_ENTRIES: usize = 200_000;

/// The key sessions are known by in the shared store and on the feed: SHA-256 of the
/// session id, so neither Redis nor its channel ever holds a usable cookie value.
pub type Key = [u8; 32];

/// The feed key of a session id.
pub fn key(id: &str) -> Key {
    Sha256::digest(id.as_bytes()).into()
}

struct Entry {
    session: Arc<Session>,
    epoch: u64,
    until: Millis,
}

struct Map {
    entries: HashMap<Key, Entry>,
    /// Bumped by every invalidation, so a read that raced one is not cached.
    gen: u64,
}

/// What a lookup must remember to cache its result: the state of the cache before
/// the store was read.
#[derive(Debug, Clone, Copy)]
pub struct Ticket {
    epoch: u64,
    gen: u64,
}

/// Sessions this replica read recently, valid while the feed is heard.
pub struct SessionCache {
    map: RwLock<Map>,
    /// Bumped when the feed is lost or comes back after a gap: older entries are void.
    epoch: AtomicU64,
    /// When this replica last heard its own heartbeat (ms since `started`).
    heard_at: AtomicI64,
    started: Instant,
    ttl_ms: Millis,
}

impl std::fmt::Debug for SessionCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Entries are sessions: never printed.
        f.debug_struct("SessionCache").field("ttl_ms", &self.ttl_ms).field("live", &self.live()).finish_non_exhaustive()
    }
}

impl SessionCache {
    /// An empty cache whose entries live `ttl_ms`; it answers nothing until the feed is heard.
    pub fn new(ttl_ms: Millis) -> Self {
        Self {
            map: RwLock::new(Map { entries: HashMap::new(), gen: 0 }),
            epoch: AtomicU64::new(0),
            heard_at: AtomicI64::new(i64::MIN / 2),
            started: Instant::now(),
            ttl_ms,
        }
    }

    fn elapsed_ms(&self) -> i64 {
        self.started.elapsed().as_millis() as i64
    }

    /// Whether the feed was heard recently enough for cached entries to be trusted.
    pub fn live(&self) -> bool {
        self.elapsed_ms() - self.heard_at.load(Ordering::SeqCst) < FRESH_MS
    }

    /// A live cached session, if there is one.
    pub fn get(&self, key: &Key, now: Millis) -> Option<Arc<Session>> {
        // Freshness first, then the epoch: `heard` bumps the epoch before it marks the
        // feed fresh, so a fresh feed is never paired with a stale epoch.
        if !self.live() {
            return None;
        }
        let epoch = self.epoch.load(Ordering::SeqCst);
        let map = self.map.read().ok()?;
        let e = map.entries.get(key)?;
        (e.epoch == epoch && now < e.until && e.session.live(now)).then(|| Arc::clone(&e.session))
    }

    /// Taken before reading the store; [`SessionCache::put`] refuses the result if
    /// anything was invalidated in between.
    pub fn ticket(&self) -> Ticket {
        let gen = self.map.read().map(|m| m.gen).unwrap_or(u64::MAX);
        Ticket { epoch: self.epoch.load(Ordering::SeqCst), gen }
    }

    /// Caches a session just read from the store, unless the feed is not heard or an
    /// invalidation came after `ticket`.
    pub fn put(&self, key: Key, session: Arc<Session>, now: Millis, ticket: Ticket) {
        if !self.live() {
            return;
        }
        let Ok(mut map) = self.map.write() else { return };
        if map.gen != ticket.gen || self.epoch.load(Ordering::SeqCst) != ticket.epoch {
            return;
        }
        if map.entries.len() >= MAX_ENTRIES {
            map.entries.retain(|_, e| now < e.until);
            if map.entries.len() >= MAX_ENTRIES {
                return;
            }
        }
        map.entries.insert(key, Entry { session, epoch: ticket.epoch, until: now.saturating_add(self.ttl_ms) });
    }

    /// One session was revoked (here or on another replica).
    pub fn forget(&self, key: &Key) {
        if let Ok(mut map) = self.map.write() {
            map.entries.remove(key);
            map.gen = map.gen.wrapping_add(1);
        }
    }

    /// Every session of a user was revoked, or rewritten (their groups changed).
    pub fn forget_user(&self, user_id: &str) {
        self.forget_where(|s| s.user_id == user_id);
    }

    /// Every session of these users was rewritten.
    pub fn forget_users<V>(&self, users: &BTreeMap<String, V>) {
        self.forget_where(|s| users.contains_key(&s.user_id));
    }

    /// Every session of a connection was revoked.
    pub fn forget_connection(&self, connection_id: &str) {
        self.forget_where(|s| s.connection_id == connection_id);
    }

    fn forget_where(&self, gone: impl Fn(&Session) -> bool) {
        if let Ok(mut map) = self.map.write() {
            map.entries.retain(|_, e| !gone(&e.session));
            map.gen = map.gen.wrapping_add(1);
        }
    }

    fn clear(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut map) = self.map.write() {
            map.entries.clear();
            map.gen = map.gen.wrapping_add(1);
        }
    }

    /// This replica's heartbeat came back through the feed.
    pub fn heard(&self) {
        if !self.live() {
            // After a gap (or at the start) messages may have been missed: start empty.
            self.clear();
        }
        self.heard_at.store(self.elapsed_ms(), Ordering::SeqCst);
    }

    /// The feed's subscription dropped: answer nothing from memory until it is back.
    pub fn lost(&self) {
        self.heard_at.store(i64::MIN / 2, Ordering::SeqCst);
        self.clear();
    }

    /// Drops expired entries (called now and then, so memory follows the live sessions).
    pub fn sweep(&self, now: Millis) {
        if let Ok(mut map) = self.map.write() {
            map.entries.retain(|_, e| now < e.until);
        }
    }

    /// How many entries are held (for tests and metrics).
    pub fn len(&self) -> usize {
        self.map.read().map(|m| m.entries.len()).unwrap_or(0)
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Sessions in a shared store with this replica's [`SessionCache`] in front of `touch`.
/// Created, removed and revoked sessions go straight to the store, which publishes the
/// revocations to every replica.
pub struct Cached {
    inner: Arc<dyn Sessions>,
    cache: Arc<SessionCache>,
    /// Background work that keeps the cache honest (the feed); stopped on drop.
    _tasks: Tasks,
}

impl std::fmt::Debug for Cached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cached").field("inner", &self.inner).field("cache", &self.cache).finish()
    }
}

/// Tasks aborted when dropped.
#[derive(Debug, Default)]
pub struct Tasks(pub Vec<tokio::task::JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

impl Cached {
    /// `inner` with `cache` in front; `tasks` keep the cache's feed running.
    pub fn new(inner: Arc<dyn Sessions>, cache: Arc<SessionCache>, tasks: Tasks) -> Self {
        Self { inner, cache, _tasks: tasks }
    }

    /// The cache (tests look at it).
    pub fn cache(&self) -> &Arc<SessionCache> {
        &self.cache
    }
}

#[async_trait]
impl Sessions for Cached {
    async fn create(&self, s: &Session) -> StateResult<()> {
        let created = self.inner.create(s).await;
        // Whatever this replica held under the id is not this session.
        self.cache.forget(&key(&s.id));
        created
    }

    async fn touch(&self, id: &str, now: Millis) -> StateResult<Option<Arc<Session>>> {
        let k = key(id);
        if let Some(s) = self.cache.get(&k, now) {
            return Ok(Some(s));
        }
        let ticket = self.cache.ticket();
        let found = self.inner.touch(id, now).await?;
        if let Some(s) = &found {
            self.cache.put(k, Arc::clone(s), now, ticket);
        }
        Ok(found)
    }

    async fn remove(&self, id: &str) -> StateResult<Option<Session>> {
        let removed = self.inner.remove(id).await;
        // After the store: a lookup that read the session before its removal either sees
        // the bumped generation or has its entry dropped here.
        self.cache.forget(&key(id));
        removed
    }

    async fn remove_user(&self, user_id: &str) -> StateResult<usize> {
        let n = self.inner.remove_user(user_id).await;
        self.cache.forget_user(user_id);
        n
    }

    async fn list_user(&self, user_id: &str, now: Millis) -> StateResult<Vec<(String, Session)>> {
        self.inner.list_user(user_id, now).await
    }

    async fn list_connection(&self, connection_id: &str, now: Millis) -> StateResult<Vec<(String, Session)>> {
        self.inner.list_connection(connection_id, now).await
    }

    async fn count_by_connection(&self, connections: &[String], now: Millis) -> StateResult<Option<BTreeMap<String, u64>>> {
        self.inner.count_by_connection(connections, now).await
    }

    async fn remove_sid(&self, user_id: &str, sid: &str) -> StateResult<bool> {
        // As `remove_user`: the store tells the other replicas; this one forgets the user's.
        let removed = self.inner.remove_sid(user_id, sid).await;
        self.cache.forget_user(user_id);
        removed
    }

    async fn set_groups(&self, groups: &BTreeMap<String, Vec<String>>) -> StateResult<usize> {
        // After the store, as in `remove`; also when it failed half-way.
        let n = self.inner.set_groups(groups).await;
        self.cache.forget_users(groups);
        n
    }

    async fn remove_connection(&self, connection_id: &str) -> StateResult<usize> {
        let n = self.inner.remove_connection(connection_id).await;
        self.cache.forget_connection(connection_id);
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(id: &str, user: &str, now: Millis) -> Arc<Session> {
        Arc::new(Session {
            id: id.into(),
            user_id: user.into(),
            connection_id: "c".into(),
            username: "u".into(),
            email: None,
            email_verified: false,
            name: None,
            groups: vec![],
            created_at: now,
            expires_at: now + 100_000,
            idle_timeout_ms: 60_000,
            last_seen: now,
            profile: Default::default(),
            upstream_token: None,
            auth_time: None,
        })
    }

    #[test]
    fn answers_only_while_the_feed_is_heard() {
        let c = SessionCache::new(5_000);
        let (k, now) = (key("a"), 1_000);
        c.put(k, session("a", "u", now), now, c.ticket());
        assert!(c.get(&k, now).is_none(), "nothing is cached before the feed is heard");
        c.heard();
        c.put(k, session("a", "u", now), now, c.ticket());
        assert!(c.get(&k, now + 4_999).is_some());
        assert!(c.get(&k, now + 5_000).is_none(), "the TTL bounds every entry");
        c.lost();
        assert!(c.get(&k, now).is_none(), "a lost feed answers nothing");
        c.put(k, session("a", "u", now), now, c.ticket());
        assert!(c.is_empty(), "and caches nothing until it is back");
        c.heard();
        assert!(c.get(&k, now).is_none(), "what was cached before the loss is gone");
    }

    #[test]
    fn a_stale_heartbeat_voids_the_cache() {
        let c = SessionCache::new(5_000);
        c.heard();
        let k = key("a");
        c.put(k, session("a", "u", 0), 0, c.ticket());
        assert!(c.get(&k, 0).is_some());
        // The feed goes quiet: pretend the last heartbeat was long ago.
        c.heard_at.store(c.elapsed_ms() - FRESH_MS, Ordering::SeqCst);
        assert!(c.get(&k, 0).is_none(), "a quiet feed is not trusted");
        c.heard();
        assert!(c.get(&k, 0).is_none(), "entries from before the gap are void");
    }

    #[test]
    fn invalidations_win_over_racing_reads() {
        let c = SessionCache::new(5_000);
        c.heard();
        let (a, b) = (key("a"), key("b"));
        let before = c.ticket();
        c.forget(&a);
        c.put(a, session("a", "u", 0), 0, before);
        assert!(c.get(&a, 0).is_none(), "a read that began before a revocation is not cached");
        c.put(a, session("a", "u1", 0), 0, c.ticket());
        c.put(b, session("b", "u2", 0), 0, c.ticket());
        c.forget_user("u1");
        assert!(c.get(&a, 0).is_none() && c.get(&b, 0).is_some(), "only that user's sessions go");
        let mut other = session("a", "u1", 0);
        Arc::make_mut(&mut other).connection_id = "c2".into();
        c.put(a, other, 0, c.ticket());
        let before = c.ticket();
        c.forget_connection("c");
        assert!(c.get(&a, 0).is_some() && c.get(&b, 0).is_none(), "only that connection's sessions go");
        c.put(b, session("b", "u2", 0), 0, before);
        assert!(c.get(&b, 0).is_none(), "a read that began before it is not cached");
        c.forget_users(&BTreeMap::from([("u1".to_string(), ())]));
        assert!(c.get(&a, 0).is_none(), "forget_users drops the users named");
        let mut dead = session("b", "u2", 0);
        Arc::make_mut(&mut dead).expires_at = 10;
        c.put(b, dead, 0, c.ticket());
        assert!(c.get(&b, 10).is_none(), "a cached session still ends at its expiry");
    }
}
