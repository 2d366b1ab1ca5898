//! In-process state for a single machine: hash maps behind mutexes, with expired
//! entries swept as they are met and by a size-triggered sweep.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::*;
use crate::clock::Clock;

/// At most this many live entries: beyond it, new logins are refused (503) rather than
/// letting abandoned login starts grow memory without bound.
pub const MAX_ENTRIES: usize = 200_000;

/// Values with their expiry, and when expired ones were last swept.
type Entries = (HashMap<String, (String, Millis)>, Millis);

/// Ephemeral values in memory.
pub struct MemoryEphemeral {
    clock: Clock,
    map: Mutex<Entries>,
}

impl std::fmt::Debug for MemoryEphemeral {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Keys and values are codes and flow states: never printed.
        f.write_str("MemoryEphemeral")
    }
}

impl MemoryEphemeral {
    /// An empty store on `clock`.
    pub fn new(clock: Clock) -> Self {
        Self { clock, map: Mutex::new((HashMap::new(), 0)) }
    }
}

fn poisoned<T>(_: T) -> StateError {
    StateError("in-memory state lock poisoned".into())
}

#[async_trait]
impl Ephemeral for MemoryEphemeral {
    async fn put_new(&self, key: &str, value: &str, ttl_ms: Millis) -> StateResult<bool> {
        let now = self.clock.now();
        let mut guard = self.map.lock().map_err(poisoned)?;
        let (map, last_sweep) = &mut *guard;
        // Sweep expired entries at most once a second, not on every insert.
        if map.len() > 1024 && now - *last_sweep > 1000 {
            map.retain(|_, (_, exp)| *exp > now);
            *last_sweep = now;
        }
        if map.get(key).is_some_and(|(_, exp)| *exp > now) {
            return Ok(false);
        }
        if map.len() >= MAX_ENTRIES {
            return Err(StateError("too many logins in progress".into()));
        }
        map.insert(key.to_string(), (value.to_string(), now.saturating_add(ttl_ms)));
        Ok(true)
    }

    async fn take(&self, key: &str) -> StateResult<Option<String>> {
        let now = self.clock.now();
        let mut guard = self.map.lock().map_err(poisoned)?;
        Ok(guard.0.remove(key).filter(|(_, exp)| *exp > now).map(|(v, _)| v))
    }

    async fn get(&self, key: &str) -> StateResult<Option<String>> {
        let now = self.clock.now();
        let guard = self.map.lock().map_err(poisoned)?;
        Ok(guard.0.get(key).filter(|(_, exp)| *exp > now).map(|(v, _)| v.clone()))
    }

    async fn ping(&self) -> StateResult<()> {
        Ok(())
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
    }
}
