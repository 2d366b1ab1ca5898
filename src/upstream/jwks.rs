//! JWKS cache: keys per JWKS URI, fetched once and kept for an hour. A token with an
//! unknown `kid` makes one refetch, at most once per `min_refetch` per URI, so a key
//! rotation at the IdP does not break logins and a flood of bogus kids cannot make us
//! hammer the IdP.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use serde_json::Value;

use super::UpstreamError;
use crate::clock::{Clock, Millis};
use crate::outbound;

const TTL_MS: Millis = 3600 * 1000;
const MAX_BYTES: usize = 256 * 1024;

#[derive(Debug, Clone)]
struct Entry {
    keys: Vec<Value>,
    fetched_at: Millis,
}

/// Cached JWKS documents.
#[derive(Debug)]
pub struct JwksCache {
    http: reqwest::Client,
    clock: Clock,
    min_refetch_ms: Millis,
    entries: Mutex<HashMap<String, Entry>>,
    /// Fetches that succeeded and failed (the metrics read them).
    fetched: [AtomicU64; 2],
}

impl JwksCache {
    /// A cache fetching with `http`; unknown kids refetch at most once per `min_refetch_ms`.
    pub fn new(http: reqwest::Client, clock: Clock, min_refetch_ms: Millis) -> Self {
        Self { http, clock, min_refetch_ms, entries: Mutex::new(HashMap::new()), fetched: [AtomicU64::new(0), AtomicU64::new(0)] }
    }

    /// How many fetches succeeded and failed since start.
    pub fn fetches(&self) -> (u64, u64) {
        (self.fetched[0].load(Ordering::Relaxed), self.fetched[1].load(Ordering::Relaxed))
    }

    async fn fetch(&self, uri: &str) -> Result<Vec<Value>, UpstreamError> {
        let fetched = self.fetch_keys(uri).await;
        self.fetched[usize::from(fetched.is_err())].fetch_add(1, Ordering::Relaxed);
        fetched
    }

    async fn fetch_keys(&self, uri: &str) -> Result<Vec<Value>, UpstreamError> {
        let body = outbound::get_bytes(&self.http, uri, MAX_BYTES).await.map_err(|e| UpstreamError::Unavailable(format!("JWKS: {e}")))?;
        let doc: Value = serde_json::from_slice(&body).map_err(|_| UpstreamError::Unavailable(format!("{uri} is not a JWKS")))?;
        let keys = doc.get("keys").and_then(Value::as_array).cloned().ok_or_else(|| UpstreamError::Unavailable(format!("{uri} has no keys")))?;
        let entry = Entry { keys: keys.clone(), fetched_at: self.clock.now() };
        if let Ok(mut map) = self.entries.lock() {
            map.insert(uri.to_string(), entry);
        }
        Ok(keys)
    }

    fn cached(&self, uri: &str) -> Option<Entry> {
        self.entries.lock().ok()?.get(uri).cloned()
    }

    /// The keys that may verify a token with `kid` and `alg`: refetched once when none
    /// match and the last fetch is old enough.
    pub async fn candidates(&self, uri: &str, kid: Option<&str>, alg: &str) -> Result<Vec<Value>, UpstreamError> {
        let now = self.clock.now();
        let matching = |keys: &[Value]| -> Vec<Value> {
            keys.iter()
                .filter(|k| crate::token::jws::key_fits(k, alg))
                .filter(|k| match kid {
                    Some(kid) => k.get("kid").and_then(Value::as_str) == Some(kid),
                    None => true,
                })
                .cloned()
                .collect()
        };
        let entry = match self.cached(uri) {
            Some(e) if now - e.fetched_at < TTL_MS => e,
            _ => Entry { keys: self.fetch(uri).await?, fetched_at: now },
        };
        let found = matching(&entry.keys);
        if !found.is_empty() || now - entry.fetched_at < self.min_refetch_ms {
            return Ok(found);
        }
        // Unknown kid: the IdP may have rotated its keys. One refetch, rate-limited.
        tracing::info!(jwks_uri = uri, kid = kid.unwrap_or(""), "unknown signing key; refetching the JWKS");
        Ok(matching(&self.fetch(uri).await?))
    }
}
