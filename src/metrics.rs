//! Prometheus metrics, written in the text exposition format (version 0.0.4) by
//! [`render`]; no metrics crate.
//!
//! The ingress check (`/auth`) is the hot path: it counts with a fixed array of atomics per
//! status and a fixed-bucket histogram, relaxed increments only, no lock and no
//! allocation ([`AuthMetrics::observe`]). Logins are rarer and keyed by connection, so
//! they sit in a map behind a mutex, with labels drawn from fixed sets
//! (`login::Step`, `login::Reason`) and connection ids the registry knows: nothing a
//! client sends becomes a label. Everything else (sessions, certificate expiry) is read
//! when Prometheus scrapes.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::app::AppState;

/// Bucket bounds of the `/auth` histogram, in nanoseconds (50 µs to 1 s).
const AUTH_BOUNDS_NS: [u64; 14] = [
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
];

/// Bucket bounds of the login histograms, in nanoseconds (5 ms to 30 s: upstream round
/// trips included).
const LOGIN_BOUNDS_NS: [u64; 12] = [
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
    30_000_000_000,
];

/// A histogram with fixed buckets: one counter per bucket (not cumulative; summed when
/// rendered) and the sum of the observations in nanoseconds.
#[derive(Debug)]
pub struct Histogram<const N: usize> {
    bounds: &'static [u64; N],
    /// `N` bounded buckets and `+Inf`.
    counts: [AtomicU64; 16],
    sum_ns: AtomicU64,
}

impl<const N: usize> Histogram<N> {
    const fn new(bounds: &'static [u64; N]) -> Self {
        Self { bounds, counts: [const { AtomicU64::new(0) }; 16], sum_ns: AtomicU64::new(0) }
    }

    /// Counts one observation.
    pub fn observe(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let i = self.bounds.iter().position(|b| ns <= *b).unwrap_or(N);
        if let Some(c) = self.counts.get(i) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut total = 0u64;
        for (i, bound) in self.bounds.iter().enumerate() {
            total += self.counts[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{}\"}} {total}", seconds(*bound));
        }
        total += self.counts[N].load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {total}");
        let braces = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
        let _ = writeln!(out, "{name}_sum{braces} {}", seconds(self.sum_ns.load(Ordering::Relaxed)));
        let _ = writeln!(out, "{name}_count{braces} {total}");
    }
}

/// Nanoseconds as seconds, in the shortest form that reads back exactly.
fn seconds(ns: u64) -> String {
    format!("{}", ns as f64 / 1e9)
}

/// The answers of `/auth`, by status, and how long they took (inside the gateway).
#[derive(Debug)]
pub struct AuthMetrics {
    /// Counts per status, in the order of [`AUTH_CODES`] and then everything else.
    by_status: [AtomicU64; AUTH_CODES.len() + 1],
    latency: Histogram<14>,
}

/// The statuses `/auth` answers, each counted on its own; any other counts as `other`.
const AUTH_CODES: [u16; 6] = [200, 401, 403, 503, 302, 400];

impl AuthMetrics {
    const fn new() -> Self {
        Self { by_status: [const { AtomicU64::new(0) }; AUTH_CODES.len() + 1], latency: Histogram::new(&AUTH_BOUNDS_NS) }
    }

    /// Counts one answer: three relaxed atomic increments, nothing else.
    #[inline]
    pub fn observe(&self, status: u16, took: Duration) {
        let i = match status {
            200 => 0,
            401 => 1,
            403 => 2,
            503 => 3,
            302 => 4,
            400 => 5,
            _ => AUTH_CODES.len(),
        };
        self.by_status[i].fetch_add(1, Ordering::Relaxed);
        self.latency.observe(took);
    }
}

/// The outcome of a login, as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// A session was started.
    Success,
    /// The login was refused.
    Refused,
}

/// One series of `ssogate_logins_total`: connection (a known id, or [`UNKNOWN`]),
/// outcome, and for a refusal its step and reason (empty for a success).
type LoginKey = (String, Outcome, &'static str, &'static str);

/// The label of logins whose connection the gateway does not know (a mistyped or
/// forged id): one series for all of them, whatever id was sent.
pub const UNKNOWN: &str = "(unknown)";

/// Every metric the gateway keeps itself. One per [`crate::app::App`].
#[derive(Debug)]
pub struct Metrics {
    /// `/auth`.
    pub auth: AuthMetrics,
    logins: Mutex<BTreeMap<LoginKey, u64>>,
    /// OIDC callbacks, whole (upstream round trips included).
    pub oidc_callback: Histogram<12>,
    /// SAML ACS posts, whole.
    pub saml_acs: Histogram<12>,
    /// SAML metadata refreshes by URL: succeeded (changed or not), failed.
    saml_metadata: [AtomicU64; 2],
    /// Reconciliations of the declarative configuration: all applied, not all.
    config: [AtomicU64; 2],
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// All zero.
    pub const fn new() -> Self {
        Self {
            auth: AuthMetrics::new(),
            logins: Mutex::new(BTreeMap::new()),
            oidc_callback: Histogram::new(&LOGIN_BOUNDS_NS),
            saml_acs: Histogram::new(&LOGIN_BOUNDS_NS),
            saml_metadata: [const { AtomicU64::new(0) }; 2],
            config: [const { AtomicU64::new(0) }; 2],
        }
    }

    /// Counts a login through `connection` (a known id, or [`UNKNOWN`]).
    pub fn login(&self, connection: &str, outcome: Outcome, step: &'static str, reason: &'static str) {
        if let Ok(mut m) = self.logins.lock() {
            *m.entry((connection.to_string(), outcome, step, reason)).or_default() += 1;
        }
    }

    /// Counts a reconciliation of the declarative configuration (at start, on SIGHUP).
    pub fn config_reconciled(&self, ok: bool) {
        self.config[usize::from(!ok)].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a SAML metadata refresh.
    pub fn saml_metadata_refresh(&self, ok: bool) {
        self.saml_metadata[usize::from(!ok)].fetch_add(1, Ordering::Relaxed);
    }
}

/// A label value with `\`, `"` and newlines escaped, as the text format requires.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn head(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Everything, in the Prometheus text format. Reads the store (connections, for their
/// certificates) and the state store (sessions) once each; a failure leaves those
/// series out and sets `ssogate_up` for it to 0.
pub async fn render(app: &AppState) -> String {
    let m = &app.metrics;
    let mut out = String::with_capacity(8192);

    head(&mut out, "ssogate_build_info", "gauge", "The running version (always 1).");
    let _ = writeln!(out, "ssogate_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"));
    head(&mut out, "ssogate_start_time_seconds", "gauge", "When this process started (Unix time).");
    let _ = writeln!(out, "ssogate_start_time_seconds {}", app.started_at as f64 / 1000.0);

    head(&mut out, "ssogate_auth_requests_total", "counter", "Answers of the ingress check (/auth, /oauth2/auth, the Envoy form) by status.");
    for (i, code) in AUTH_CODES.iter().enumerate() {
        let _ = writeln!(out, "ssogate_auth_requests_total{{code=\"{code}\"}} {}", m.auth.by_status[i].load(Ordering::Relaxed));
    }
    let _ = writeln!(out, "ssogate_auth_requests_total{{code=\"other\"}} {}", m.auth.by_status[AUTH_CODES.len()].load(Ordering::Relaxed));
    head(&mut out, "ssogate_auth_duration_seconds", "histogram", "Time the gateway took to answer the ingress check.");
    m.auth.latency.render(&mut out, "ssogate_auth_duration_seconds", "");

    head(&mut out, "ssogate_logins_total", "counter", "Logins by connection and outcome; refusals with the step and a reason from a fixed set.");
    let logins: Vec<(LoginKey, u64)> = m.logins.lock().map(|l| l.iter().map(|(k, v)| (k.clone(), *v)).collect()).unwrap_or_default();
    for ((connection, outcome, step, reason), n) in logins {
        let outcome = match outcome {
            Outcome::Success => "success",
            Outcome::Refused => "refused",
        };
        let _ = writeln!(out, "ssogate_logins_total{{connection=\"{}\",outcome=\"{outcome}\",step=\"{step}\",reason=\"{reason}\"}} {n}", label(&connection));
    }
    head(
        &mut out,
        "ssogate_login_duration_seconds",
        "histogram",
        "Time an IdP's reply took to handle: the OIDC callback, the SAML ACS (upstream round trips included).",
    );
    m.oidc_callback.render(&mut out, "ssogate_login_duration_seconds", "protocol=\"oidc\"");
    m.saml_acs.render(&mut out, "ssogate_login_duration_seconds", "protocol=\"saml\"");

    head(&mut out, "ssogate_jwks_refresh_total", "counter", "Fetches of IdP signing keys (JWKS) by result.");
    let (ok, failed) = app.jwks.fetches();
    let _ = writeln!(out, "ssogate_jwks_refresh_total{{result=\"ok\"}} {ok}");
    let _ = writeln!(out, "ssogate_jwks_refresh_total{{result=\"failed\"}} {failed}");
    head(&mut out, "ssogate_saml_metadata_refresh_total", "counter", "Periodic re-reads of SAML IdP metadata by URL, by result.");
    let _ = writeln!(out, "ssogate_saml_metadata_refresh_total{{result=\"ok\"}} {}", m.saml_metadata[0].load(Ordering::Relaxed));
    let _ = writeln!(out, "ssogate_saml_metadata_refresh_total{{result=\"failed\"}} {}", m.saml_metadata[1].load(Ordering::Relaxed));

    head(
        &mut out,
        "ssogate_config_reconciles_total",
        "counter",
        "Reconciliations of the connections, groups and clients the configuration file declares (at start and on SIGHUP), by result.",
    );
    let _ = writeln!(out, "ssogate_config_reconciles_total{{result=\"ok\"}} {}", m.config[0].load(Ordering::Relaxed));
    let _ = writeln!(out, "ssogate_config_reconciles_total{{result=\"failed\"}} {}", m.config[1].load(Ordering::Relaxed));

    let wait = Duration::from_secs(2);
    let connections = tokio::time::timeout(wait, app.registry.list(crate::store::ConnectionSort::Id, false)).await;
    let connections = match connections {
        Ok(Ok(list)) => Some(list),
        _ => None,
    };
    head(
        &mut out,
        "ssogate_idp_certificate_expiry_timestamp_seconds",
        "gauge",
        "When the first of a SAML connection's pinned IdP signing certificates expires (Unix time).",
    );
    for c in connections.iter().flatten() {
        let Some(saml) = c.settings.upstream.saml() else { continue };
        let first = saml.idp.certificates.iter().filter_map(|x| chrono::DateTime::parse_from_rfc3339(&x.not_after).ok()).map(|t| t.timestamp()).min();
        if let Some(t) = first {
            let _ = writeln!(out, "ssogate_idp_certificate_expiry_timestamp_seconds{{connection=\"{}\"}} {t}", label(&c.id));
        }
    }
    // Legacy SHA-1 acceptance (issue #15): one series per connection while it is on, so an
    // alert can ask for it to be turned off.
    head(&mut out, "ssogate_saml_sha1_allowed", "gauge", "SAML connections that accept SHA-1 signatures (allow_sha1): 1 while on.");
    for c in connections.iter().flatten() {
        if c.settings.upstream.saml().is_some_and(|s| s.allow_sha1) {
            let _ = writeln!(out, "ssogate_saml_sha1_allowed{{connection=\"{}\"}} 1", label(&c.id));
        }
    }

    let ids: Vec<String> = connections.iter().flatten().map(|c| c.id.clone()).collect();
    let sessions = tokio::time::timeout(wait, app.sessions.count_by_connection(&ids, app.clock.now())).await;
    let state_ok = match sessions {
        Ok(Ok(Some(counts))) => {
            head(&mut out, "ssogate_sessions", "gauge", "Live sessions by the connection they were started through.");
            for (connection, n) in counts {
                let _ = writeln!(out, "ssogate_sessions{{connection=\"{}\"}} {n}", label(&connection));
            }
            true
        }
        Ok(Ok(None)) => true,
        _ => false,
    };
    let store_ok = connections.is_some();
    head(&mut out, "ssogate_up", "gauge", "Whether a dependency answered while these metrics were read (1) or not (0).");
    let _ = writeln!(out, "ssogate_up{{component=\"store\"}} {}", u8::from(store_ok));
    let state = if app.config.state.url.is_some() { "redis" } else { "state" };
    let _ = writeln!(out, "ssogate_up{{component=\"{state}\"}} {}", u8::from(state_ok));
    if let Some(u) = app.ephemeral.usage() {
        head(&mut out, "ssogate_state_entries", "gauge", "Flow states, codes and replay markers held in this process.");
        let _ = writeln!(out, "ssogate_state_entries {}", u.entries);
    }
    head(&mut out, "ssogate_backchannel_dropped_total", "counter", "Back-channel logout notices dropped because a queue was full.");
    let _ = writeln!(out, "ssogate_backchannel_dropped_total {}", app.backchannel.dropped());
    head(
        &mut out,
        "ssogate_backchannel_failed_total",
        "counter",
        "Back-channel logout notices an app did not take (refused, or given up after every retry), by client.",
    );
    for (client, n) in app.backchannel.failed() {
        let _ = writeln!(out, "ssogate_backchannel_failed_total{{client=\"{}\"}} {n}", label(&client));
    }
    out
}

/// `GET /metrics`.
pub async fn handler(axum::extract::State(app): axum::extract::State<AppState>) -> axum::response::Response {
    use axum::response::IntoResponse;
    let body = render(&app).await;
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_with_sum_and_count() {
        let h = Histogram::new(&AUTH_BOUNDS_NS);
        h.observe(Duration::from_micros(10));
        h.observe(Duration::from_micros(70));
        h.observe(Duration::from_secs(5));
        let mut out = String::new();
        h.render(&mut out, "x", "");
        assert!(out.contains("x_bucket{le=\"0.00005\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"0.0001\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"1\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("x_sum 5.00008\n"), "{out}");
        assert!(out.contains("x_count 3\n"), "{out}");
        let mut out = String::new();
        h.render(&mut out, "y", "protocol=\"saml\"");
        assert!(out.contains("y_bucket{protocol=\"saml\",le=\"+Inf\"} 3\n") && out.contains("y_count{protocol=\"saml\"} 3\n"), "{out}");
    }

    #[test]
    fn auth_statuses_each_have_a_counter() {
        let a = AuthMetrics::new();
        for s in [200, 200, 401, 403, 503, 302, 400, 500, 404] {
            a.observe(s, Duration::from_micros(1));
        }
        let got: Vec<u64> = a.by_status.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        assert_eq!(got, [2, 1, 1, 1, 1, 1, 2]);
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
