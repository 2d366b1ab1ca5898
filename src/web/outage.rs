//! Outages of the store and the state store, logged once when they begin and then at
//! most once a minute with a count, never once per failed request: during an outage
//! log volume would otherwise grow with traffic.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// What a 503 for an outage tells clients to wait, in seconds.
pub const RETRY_AFTER_SECONDS: &str = "5";

/// Failures within this long of the last one belong to the same outage.
const SAME_OUTAGE_MS: i64 = 60_000;

/// One dependency's outage log.
#[derive(Debug)]
pub struct Outage {
    what: &'static str,
    last_failure_ms: AtomicI64,
    last_logged_ms: AtomicI64,
    unlogged: AtomicU64,
}

/// The store (connections, directory, audit, keys).
pub static STORE: Outage = Outage::new("the store");
/// The state store (flow state, codes, sessions).
pub static STATE: Outage = Outage::new("the state store");

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

impl Outage {
    const fn new(what: &'static str) -> Self {
        Self { what, last_failure_ms: AtomicI64::new(0), last_logged_ms: AtomicI64::new(0), unlogged: AtomicU64::new(0) }
    }

    /// Notes a failure: logged with its cause when an outage begins, and then once a
    /// minute with the number of failures since.
    pub fn failed(&self, cause: &dyn std::fmt::Display) {
        self.failed_at(now_ms(), cause);
    }

    fn failed_at(&self, now: i64, cause: &dyn std::fmt::Display) -> bool {
        let previous = self.last_failure_ms.swap(now, Ordering::Relaxed);
        let logged = self.last_logged_ms.load(Ordering::Relaxed);
        if now - previous > SAME_OUTAGE_MS {
            self.last_logged_ms.store(now, Ordering::Relaxed);
            self.unlogged.store(0, Ordering::Relaxed);
            tracing::error!(error = %cause, "{} is failing: answering 503 until it recovers", self.what);
            return true;
        }
        if now - logged >= SAME_OUTAGE_MS && self.last_logged_ms.compare_exchange(logged, now, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
            let since = self.unlogged.swap(0, Ordering::Relaxed) + 1;
            tracing::error!(error = %cause, failures = since, "{} is still failing", self.what);
            return true;
        }
        self.unlogged.fetch_add(1, Ordering::Relaxed);
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_is_logged_when_it_begins_then_once_a_minute() {
        let o = Outage::new("x");
        let logged: Vec<bool> = [1_000_000, 1_000_010, 1_030_000, 1_061_000, 1_061_500, 1_200_000].iter().map(|t| o.failed_at(*t, &"down")).collect();
        assert_eq!(logged, [true, false, false, true, false, true]);
    }
}
