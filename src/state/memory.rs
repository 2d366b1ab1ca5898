//! In-process state for a single machine: hash maps behind mutexes, with expired
//! entries swept as they are met and by a size-triggered sweep.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::*;
use crate::clock::Clock;

/// Default bound on entries (`state.memory_max_entries`).
pub const MAX_ENTRIES: usize = 200_000;

/// What an entry costs beyond its key and value: the map slot, the `String`s, the
/// owner's index. An estimate, so that many tiny entries count too.
const ENTRY_OVERHEAD: usize = 160;

/// How far the in-memory store may grow.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Entries at most.
    pub max_entries: usize,
    /// Bytes at most (keys, values and [`ENTRY_OVERHEAD`] each).
    pub max_bytes: usize,
    /// Flow states one client may hold; past it, the client's own oldest goes.
    pub flows_per_client: usize,
}

impl Default for Bounds {
    fn default() -> Self {
        Self { max_entries: MAX_ENTRIES, max_bytes: 64 << 20, flows_per_client: 1000 }
    }
}

struct Entry {
    value: String,
    exp: Millis,
    /// The client whose login this is, and its place in that client's queue.
    owner: Option<(Arc<str>, u64)>,
}

#[derive(Default)]
struct Inner {
    map: HashMap<String, Entry>,
    bytes: usize,
    /// Each client's flow keys, oldest first.
    owners: HashMap<Arc<str>, BTreeMap<u64, String>>,
    /// Clients by how many flows they hold: the largest is evicted from first.
    by_count: BTreeSet<(usize, Arc<str>)>,
    seq: u64,
    last_sweep: Millis,
}

fn cost(key: &str, value: &str, owned: bool) -> usize {
    ENTRY_OVERHEAD + value.len() + key.len() * if owned { 2 } else { 1 }
}

impl Inner {
    fn remove(&mut self, key: &str) -> Option<Entry> {
        let e = self.map.remove(key)?;
        self.bytes = self.bytes.saturating_sub(cost(key, &e.value, e.owner.is_some()));
        if let Some((owner, seq)) = &e.owner {
            if let Some(queue) = self.owners.get_mut(owner) {
                let before = queue.len();
                queue.remove(seq);
                self.by_count.remove(&(before, owner.clone()));
                if queue.is_empty() {
                    self.owners.remove(owner);
                } else {
                    self.by_count.insert((queue.len(), owner.clone()));
                }
            }
        }
        Some(e)
    }

    /// Drops `owner`'s oldest flow; false when it has none.
    fn evict_oldest_of(&mut self, owner: &Arc<str>) -> bool {
        let Some(key) = self.owners.get(owner).and_then(|q| q.first_key_value()).map(|(_, k)| k.clone()) else { return false };
        self.remove(&key).is_some()
    }

    /// Drops the oldest flow of the client holding the most; false when no flow is left
    /// (codes and replay markers are never pushed out: losing one breaks a login or
    /// re-opens a replay).
    fn evict_from_largest(&mut self) -> bool {
        let Some((_, owner)) = self.by_count.last().cloned() else { return false };
        self.evict_oldest_of(&owner)
    }

    fn sweep(&mut self, now: Millis) {
        let expired: Vec<String> = self.map.iter().filter(|(_, e)| e.exp <= now).map(|(k, _)| k.clone()).collect();
        for k in expired {
            self.remove(&k);
        }
        self.last_sweep = now;
    }
}

/// Ephemeral values in memory, bounded by entries and bytes; flow states are kept per
/// client, so that a flood pushes out the flooder's own logins first.
pub struct MemoryEphemeral {
    clock: Clock,
    bounds: Bounds,
    map: Mutex<Inner>,
}

impl std::fmt::Debug for MemoryEphemeral {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Keys and values are codes and flow states: never printed.
        f.write_str("MemoryEphemeral")
    }
}

impl MemoryEphemeral {
    /// An empty store on `clock` with the default bounds.
    pub fn new(clock: Clock) -> Self {
        Self::with_bounds(clock, Bounds::default())
    }

    /// An empty store on `clock` within `bounds`.
    pub fn with_bounds(clock: Clock, bounds: Bounds) -> Self {
        Self { clock, bounds, map: Mutex::new(Inner::default()) }
    }

    fn insert(&self, owner: Option<&str>, key: &str, value: &str, ttl_ms: Millis) -> StateResult<bool> {
        let now = self.clock.now();
        let mut guard = self.map.lock().map_err(poisoned)?;
        let inner = &mut *guard;
        // Sweep expired entries at most once a second, not on every insert.
        if inner.map.len() > 1024 && now - inner.last_sweep > 1000 {
            inner.sweep(now);
        }
        match inner.map.get(key) {
            Some(e) if e.exp > now => return Ok(false),
            Some(_) => {
                inner.remove(key);
            }
            None => {}
        }
        let owner: Option<Arc<str>> = owner.map(Arc::from);
        if let Some(o) = &owner {
            while inner.owners.get(o).is_some_and(|q| q.len() >= self.bounds.flows_per_client) {
                inner.evict_oldest_of(o);
            }
        }
        let size = cost(key, value, owner.is_some());
        while inner.map.len() >= self.bounds.max_entries || inner.bytes + size > self.bounds.max_bytes {
            if !inner.evict_from_largest() {
                return Err(StateError("the in-memory state store is full".into()));
            }
        }
        let owner = owner.map(|o| {
            inner.seq += 1;
            let queue = inner.owners.entry(o.clone()).or_default();
            let before = queue.len();
            queue.insert(inner.seq, key.to_string());
            let after = queue.len();
            inner.by_count.remove(&(before, o.clone()));
            inner.by_count.insert((after, o.clone()));
            (o, inner.seq)
        });
        inner.bytes += size;
        inner.map.insert(key.to_string(), Entry { value: value.to_string(), exp: now.saturating_add(ttl_ms), owner });
        Ok(true)
    }
}

fn poisoned<T>(_: T) -> StateError {
    StateError("in-memory state lock poisoned".into())
}

#[async_trait]
impl Ephemeral for MemoryEphemeral {
    async fn put_new(&self, key: &str, value: &str, ttl_ms: Millis) -> StateResult<bool> {
        self.insert(None, key, value, ttl_ms)
    }

    async fn put_flow(&self, client: &str, key: &str, value: &str, ttl_ms: Millis) -> StateResult<bool> {
        self.insert(Some(client), key, value, ttl_ms)
    }

    async fn take(&self, key: &str) -> StateResult<Option<String>> {
        let now = self.clock.now();
        let mut guard = self.map.lock().map_err(poisoned)?;
        Ok(guard.remove(key).filter(|e| e.exp > now).map(|e| e.value))
    }

    async fn get(&self, key: &str) -> StateResult<Option<String>> {
        let now = self.clock.now();
        let guard = self.map.lock().map_err(poisoned)?;
        Ok(guard.map.get(key).filter(|e| e.exp > now).map(|e| e.value.clone()))
    }

    async fn ping(&self) -> StateResult<()> {
        Ok(())
    }

    fn usage(&self) -> Option<Usage> {
        let guard = self.map.lock().ok()?;
        Some(Usage { entries: guard.map.len(), bytes: guard.bytes })
    }
}

/// Sessions in memory, shared with the requests that use them.
#[derive(Default)]
pub struct MemorySessions {
    map: Mutex<HashMap<String, Arc<Session>>>,
}

impl std::fmt::Debug for MemorySessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Session ids are cookie values: never printed.
        f.write_str("MemorySessions")
    }
}

impl MemorySessions {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl Sessions for MemorySessions {
    async fn create(&self, s: &Session) -> StateResult<()> {
        let mut map = self.map.lock().map_err(poisoned)?;
        if map.len() > 100_000 && map.len() % 1024 == 0 {
            let now = s.created_at;
            map.retain(|_, v| v.live(now));
        }
        map.insert(s.id.clone(), Arc::new(s.clone()));
        Ok(())
    }

    async fn touch(&self, id: &str, now: Millis) -> StateResult<Option<Arc<Session>>> {
        let mut map = self.map.lock().map_err(poisoned)?;
        match map.get_mut(id) {
            Some(s) if s.live(now) => {
                if now - s.last_seen >= LAST_SEEN_STEP_MS {
                    // Copies only while a request still holds the old version.
                    Arc::make_mut(s).last_seen = now;
                }
                Ok(Some(Arc::clone(s)))
            }
            Some(_) => {
                map.remove(id);
                Ok(None)
            }
            None => Ok(None),
        }
    }

    async fn remove(&self, id: &str) -> StateResult<Option<Session>> {
        Ok(self.map.lock().map_err(poisoned)?.remove(id).map(Arc::unwrap_or_clone))
    }

    async fn remove_user(&self, user_id: &str) -> StateResult<usize> {
        let mut map = self.map.lock().map_err(poisoned)?;
        let before = map.len();
        map.retain(|_, s| s.user_id != user_id);
        Ok(before - map.len())
    }

    async fn list_user(&self, user_id: &str, now: Millis) -> StateResult<Vec<(String, Session)>> {
        let map = self.map.lock().map_err(poisoned)?;
        Ok(map.values().filter(|s| s.user_id == user_id && s.live(now)).map(|s| (super::public_sid(&s.id), Session::clone(s))).collect())
    }

    async fn list_connection(&self, connection_id: &str, now: Millis) -> StateResult<Vec<(String, Session)>> {
        let map = self.map.lock().map_err(poisoned)?;
        Ok(map.values().filter(|s| s.connection_id == connection_id && s.live(now)).map(|s| (super::public_sid(&s.id), Session::clone(s))).collect())
    }

    async fn count_by_connection(&self, connections: &[String], now: Millis) -> StateResult<Option<BTreeMap<String, u64>>> {
        // One pass under the lock (about a millisecond per 100 000 sessions), once a scrape.
        let mut counts: BTreeMap<String, u64> = connections.iter().map(|c| (c.clone(), 0)).collect();
        let map = self.map.lock().map_err(poisoned)?;
        for s in map.values().filter(|s| s.live(now)) {
            match counts.get_mut(&s.connection_id) {
                Some(n) => *n += 1,
                None => {
                    counts.insert(s.connection_id.clone(), 1);
                }
            }
        }
        Ok(Some(counts))
    }

    async fn remove_sid(&self, user_id: &str, sid: &str) -> StateResult<bool> {
        let mut map = self.map.lock().map_err(poisoned)?;
        let id = map.values().find(|s| s.user_id == user_id && super::public_sid(&s.id) == sid).map(|s| s.id.clone());
        Ok(id.is_some_and(|id| map.remove(&id).is_some()))
    }

    async fn set_groups(&self, groups: &BTreeMap<String, Vec<String>>) -> StateResult<usize> {
        if groups.is_empty() {
            return Ok(0);
        }
        let mut map = self.map.lock().map_err(poisoned)?;
        let mut n = 0;
        // One pass for all the users: a group rename touches every member at once.
        for s in map.values_mut() {
            if let Some(g) = groups.get(&s.user_id) {
                if s.groups != *g {
                    // Copies only while a request still holds the old version.
                    Arc::make_mut(s).groups.clone_from(g);
                }
                n += 1;
            }
        }
        Ok(n)
    }

    async fn remove_connection(&self, connection_id: &str) -> StateResult<usize> {
        let mut map = self.map.lock().map_err(poisoned)?;
        let before = map.len();
        map.retain(|_, s| s.connection_id != connection_id);
        Ok(before - map.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_backends_pass_conformance() {
        let clock = Clock::fixed(1_000_000);
        super::super::conformance::ephemeral(&MemoryEphemeral::new(clock.clone()), &clock).await.unwrap();
        super::super::conformance::sessions(&MemorySessions::new(), &clock).await.unwrap();
        super::super::conformance::revocation(&MemorySessions::new(), &clock).await.unwrap();
        super::super::conformance::counts(&MemorySessions::new(), &clock).await.unwrap();
        let bounds = Bounds { flows_per_client: 30, ..Bounds::default() };
        super::super::conformance::flow_quota(&MemoryEphemeral::with_bounds(clock.clone(), bounds), 30).await.unwrap();
    }

    #[tokio::test]
    async fn a_flood_pushes_out_its_own_flows_first_and_never_codes() {
        let clock = Clock::fixed(1_000_000);
        let bounds = Bounds { max_entries: 100, max_bytes: 1 << 20, flows_per_client: 30 };
        let m = MemoryEphemeral::with_bounds(clock.clone(), bounds);
        assert!(m.put_flow("victim", "flow:v0", "v", 60_000).await.unwrap());
        assert!(m.put_new("code:c0", "c", 60_000).await.unwrap());
        // Over its quota, a client loses its own oldest flows.
        for i in 0..100 {
            assert!(m.put_flow("flooder", &format!("flow:f{i}"), "f", 60_000).await.unwrap());
        }
        assert_eq!(m.usage().unwrap().entries, 32);
        assert!(m.get("flow:f0").await.unwrap().is_none() && m.get("flow:f99").await.unwrap().is_some());
        assert!(m.get("flow:v0").await.unwrap().is_some());
        // At the store's bound, many clients: the one holding the most loses first.
        for c in 0..10 {
            for i in 0..10 {
                m.put_flow(&format!("bot{c}"), &format!("flow:b{c}-{i}"), "b", 60_000).await.unwrap();
            }
        }
        let u = m.usage().unwrap();
        assert!(u.entries <= 100, "{u:?}");
        assert!(m.get("flow:v0").await.unwrap().is_some(), "the client with one login keeps it");
        assert!(m.get("code:c0").await.unwrap().is_some(), "codes are never pushed out");
        // Taken entries free their place and their bytes.
        assert!(m.take("flow:v0").await.unwrap().is_some());
        assert!(m.usage().unwrap().entries < u.entries);
        // Bytes bound too: big values fill it sooner than the entry count.
        let big = MemoryEphemeral::with_bounds(clock.clone(), Bounds { max_entries: 1000, max_bytes: 64 * 1024, flows_per_client: 1000 });
        for i in 0..100 {
            big.put_flow("x", &format!("flow:{i}"), &"v".repeat(4000), 60_000).await.unwrap();
        }
        let u = big.usage().unwrap();
        assert!(u.bytes <= 64 * 1024 && u.entries < 20, "{u:?}");
        // Only codes: the store refuses rather than drop one.
        let codes = MemoryEphemeral::with_bounds(clock, Bounds { max_entries: 3, max_bytes: 1 << 20, flows_per_client: 10 });
        for i in 0..3 {
            codes.put_new(&format!("code:{i}"), "c", 60_000).await.unwrap();
        }
        assert!(codes.put_new("code:x", "c", 60_000).await.is_err());
    }
}
