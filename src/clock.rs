//! Time as a dependency: handlers ask the [`Clock`] in state, tests can pin it.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// Milliseconds since the Unix epoch.
pub type Millis = i64;

/// A source of the current time.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    /// When set, the clock is pinned to this instant (tests).
    fixed: Option<Arc<AtomicI64>>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Self { fixed: None }
    }

    /// A clock pinned at `at`, movable with [`Clock::advance`].
    pub fn fixed(at: Millis) -> Self {
        Self { fixed: Some(Arc::new(AtomicI64::new(at))) }
    }

    /// Moves a pinned clock forward; no effect on the system clock.
    pub fn advance(&self, by: Millis) {
        if let Some(f) = &self.fixed {
            f.fetch_add(by, Ordering::SeqCst);
        }
    }

    /// Now, in milliseconds since the epoch.
    pub fn now(&self) -> Millis {
        match &self.fixed {
            Some(f) => f.load(Ordering::SeqCst),
            // Straight from the system clock: no calendar arithmetic on the hot path.
            None => std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as Millis),
        }
    }
}

/// Formats epoch milliseconds as RFC 3339 (UTC), the form the API shows.
pub fn rfc3339(at: Millis) -> String {
    chrono::DateTime::from_timestamp_millis(at).unwrap_or_default().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
