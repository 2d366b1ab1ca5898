//! In-process state for a single machine: hash maps behind mutexes, with expired
//! entries swept as they are met and by a size-triggered sweep.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;

use super::*;
use crate::clock::Clock;

/// Ephemeral values in memory.
#[derive(Debug)]
pub struct MemoryEphemeral {
    clock: Clock,
    map: Mutex<HashMap<String, (String, Millis)>>,
}

impl MemoryEphemeral {
    /// An empty store on `clock`.
    pub fn new(clock: Clock) -> Self {
        Self { clock, map: Mutex::new(HashMap::new()) }
    }
}

fn poisoned<T>(_: T) -> StateError {
    StateError("in-memory state lock poisoned".into())
}

#[async_trait]
impl Ephemeral for MemoryEphemeral {
    async fn put_new(&self, key: &str, value: &str, ttl_ms: Millis) -> StateResult<bool> {
        let now = self.clock.now();
        let mut map = self.map.lock().map_err(poisoned)?;
        if map.len() > 10_000 {
            map.retain(|_, (_, exp)| *exp > now);
        }
        if map.get(key).is_some_and(|(_, exp)| *exp > now) {
            return Ok(false);
        }
        map.insert(key.to_string(), (value.to_string(), now.saturating_add(ttl_ms)));
        Ok(true)
    }

    async fn take(&self, key: &str) -> StateResult<Option<String>> {
        let now = self.clock.now();
        let mut map = self.map.lock().map_err(poisoned)?;
        Ok(map.remove(key).filter(|(_, exp)| *exp > now).map(|(v, _)| v))
    }

    async fn ping(&self) -> StateResult<()> {
        Ok(())
    }
}

/// Sessions in memory.
#[derive(Debug, Default)]
pub struct MemorySessions {
    map: Mutex<HashMap<String, Session>>,
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
        map.insert(s.id.clone(), s.clone());
        Ok(())
    }

    async fn touch(&self, id: &str, now: Millis) -> StateResult<Option<Session>> {
        let mut map = self.map.lock().map_err(poisoned)?;
        match map.get_mut(id) {
            Some(s) if s.live(now) => {
                s.last_seen = now;
                Ok(Some(s.clone()))
            }
            Some(_) => {
                map.remove(id);
                Ok(None)
            }
            None => Ok(None),
        }
    }

    async fn remove(&self, id: &str) -> StateResult<Option<Session>> {
        Ok(self.map.lock().map_err(poisoned)?.remove(id))
    }

    async fn remove_user(&self, user_id: &str) -> StateResult<usize> {
        let mut map = self.map.lock().map_err(poisoned)?;
        let before = map.len();
        map.retain(|_, s| s.user_id != user_id);
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
    }
}
