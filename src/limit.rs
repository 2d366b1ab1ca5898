//! Bounds on what clients can make the gateway keep or do: length caps for every value
//! kept server side, per-client rate limits on unauthenticated login starts and
//! callbacks, and who "the client" is (the peer, or the address a trusted proxy reports).
//!
//! The caps are far above what real clients send (OIDC clients use 22 to 64 characters
//! of `state` and `nonce`; a scope list rarely passes 200) and far below what would let a
//! flood grow memory: the largest flow state or code stays under 8 KB.

/// `return_to` of a login start (a local path or an allowed URL). It carries a whole
/// `/authorize` request back after sign-in, hence more than `rd`'s 2048.
pub const RETURN_TO_MAX: usize = 4096;
/// `login_hint`, passed on to the IdP.
pub const LOGIN_HINT_MAX: usize = 256;
/// `/authorize`'s `state`, echoed to the client.
pub const STATE_MAX: usize = 512;
/// `/authorize`'s `nonce`, kept with the code and put in the ID token.
pub const NONCE_MAX: usize = 512;
/// `/authorize`'s `scope`, kept with the code and the access token.
pub const SCOPE_MAX: usize = 1024;
/// PKCE `code_challenge` (RFC 7636: 43 to 128 characters).
pub const CODE_CHALLENGE_MAX: usize = 128;
/// SAML `RelayState` posted back to the ACS (the SAML bindings say 80 bytes; IdP-initiated
/// logins put URLs there).
pub const RELAY_STATE_MAX: usize = 1024;

/// The sentence refusing `name` when `value` is longer than `max` bytes.
pub fn too_long(name: &str, value: Option<&str>, max: usize) -> Option<String> {
    value.filter(|v| v.len() > max).map(|_| format!("The {name} parameter is longer than {max} bytes; this sign-in service does not keep values that long."))
}

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Mutex;

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

use crate::app::AppState;
use crate::clock::Millis;
use crate::config::Config;

/// An IP network: an address and a prefix length (`10.0.0.0/8`, `fd00::/8`, or one address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Net {
    addr: IpAddr,
    prefix: u8,
}

impl Net {
    /// `ip` or `ip/prefix`.
    pub fn parse(s: &str) -> Option<Net> {
        let (ip, prefix) = match s.trim().split_once('/') {
            Some((ip, p)) => (ip.parse::<IpAddr>().ok()?, Some(p.parse::<u8>().ok()?)),
            None => (s.trim().parse::<IpAddr>().ok()?, None),
        };
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(Net { addr: ip, prefix })
    }

    /// Whether `ip` is inside (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(n), IpAddr::V4(a)) => mask(u32::from(n).into(), 32, self.prefix) == mask(u32::from(a).into(), 32, self.prefix),
            (IpAddr::V6(n), IpAddr::V6(a)) => mask(u128::from(n), 128, self.prefix) == mask(u128::from(a), 128, self.prefix),
            _ => false,
        }
    }
}

fn mask(bits: u128, width: u32, prefix: u8) -> u128 {
    let keep = u32::from(prefix).min(width);
    if keep == 0 {
        0
    } else {
        bits >> (width - keep)
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The client a request counts against: the peer, or, when the peer is a trusted proxy,
/// the rightmost `X-Forwarded-For` hop that is not one (else `X-Real-IP`). Headers from
/// anyone else are ignored: a client cannot pick whose budget it spends.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[Net]) -> IpAddr {
    let peer = canonical(peer);
    let is_trusted = |ip: IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let hops: Vec<&str> = headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).map(str::trim).collect();
    if !hops.is_empty() {
        let mut last = peer;
        for hop in hops.iter().rev() {
            // A hop we cannot read is where the chain stops being trustworthy.
            let Ok(ip) = hop.parse::<IpAddr>().map(canonical) else { return last };
            if !is_trusted(ip) {
                return ip;
            }
            last = ip;
        }
        return last;
    }
    headers.get("x-real-ip").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<IpAddr>().ok()).map_or(peer, canonical)
}

/// The key a client's budget is kept under: its address, or for IPv6 its /64 (one host
/// usually holds a whole /64, and could otherwise rotate through it).
pub fn client_key(ip: IpAddr) -> IpAddr {
    match canonical(ip) {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
        v4 => v4,
    }
}

/// The client of this request (see [`client_ip`]), as its budget key. Requests that
/// reach the router without a peer address (tests calling it directly) share one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Client(pub IpAddr);

impl Client {
    /// The client of a request with these parts.
    pub fn of(parts: &Parts, app: &AppState) -> Client {
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0.ip());
        Client(client_key(client_ip(peer, &parts.headers, &app.limits.trusted)))
    }
}

impl std::fmt::Display for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl FromRequestParts<AppState> for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Self::Rejection> {
        Ok(Client::of(parts, app))
    }
}

/// Above this many clients tracked, full buckets are swept; if that frees nothing, new
/// clients go untracked (the state store's per-client quota still bounds them).
const MAX_TRACKED: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Millis,
    /// Refusing since the last allowed request: the refusal is logged once per episode.
    refusing: bool,
}

/// Token buckets per key (a client's address, or a browser): `burst` at once, then
/// `per_minute`.
#[derive(Debug)]
pub struct Buckets<K = IpAddr> {
    what: &'static str,
    per_ms: f64,
    burst: f64,
    map: Mutex<(HashMap<K, Bucket>, Millis)>,
}

impl<K: std::hash::Hash + Eq + Copy> Buckets<K> {
    fn new(what: &'static str, per_minute: u32, burst: u32) -> Self {
        Self { what, per_ms: f64::from(per_minute) / 60_000.0, burst: f64::from(burst.max(1)), map: Mutex::new((HashMap::new(), 0)) }
    }

    /// Spends one token of `key`'s (a request of `client`); `Err(seconds)` until the next
    /// one when none is left.
    pub fn take_for(&self, key: K, client: Client, now: Millis) -> Result<(), u64> {
        if self.per_ms <= 0.0 {
            return Ok(());
        }
        let Ok(mut guard) = self.map.lock() else { return Ok(()) };
        let (map, last_sweep) = &mut *guard;
        if map.len() >= MAX_TRACKED && now - *last_sweep > 1000 {
            let (per_ms, burst) = (self.per_ms, self.burst);
            map.retain(|_, b| b.tokens + (now - b.at) as f64 * per_ms < burst);
            *last_sweep = now;
        }
        if map.len() >= MAX_TRACKED && !map.contains_key(&key) {
            return Ok(());
        }
        let b = map.entry(key).or_insert(Bucket { tokens: self.burst, at: now, refusing: false });
        b.tokens = (b.tokens + (now - b.at).max(0) as f64 * self.per_ms).min(self.burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            b.refusing = false;
            return Ok(());
        }
        if !b.refusing {
            b.refusing = true;
            tracing::warn!(client = %client, what = self.what, "client over its rate limit: answering 429 until it slows down");
        }
        Err((((1.0 - b.tokens) / self.per_ms / 1000.0).ceil() as u64).max(1))
    }
}

impl Buckets<IpAddr> {
    /// Spends one token of `client`'s budget.
    pub fn take(&self, client: Client, now: Millis) -> Result<(), u64> {
        self.take_for(client.0, client, now)
    }
}

/// A browser's budget key: the first 16 bytes of the SHA-256 of its flow cookie (never
/// the cookie itself).
pub type BrowserKey = [u8; 16];

fn browser_key(flow_cookie: &str) -> BrowserKey {
    use sha2::Digest;
    let d = sha2::Sha256::digest(flow_cookie.as_bytes());
    let mut k = [0u8; 16];
    k.copy_from_slice(&d[..16]);
    k
}

/// The per-client limits of a gateway, and the proxies trusted to name clients.
#[derive(Debug)]
pub struct Limiter {
    /// Proxies whose forwarding headers name the client (`http.trusted_proxies`).
    pub trusted: Vec<Net>,
    /// Unauthenticated login starts.
    pub starts: Buckets,
    /// OIDC callbacks and SAML ACS posts.
    pub callbacks: Buckets,
    /// Login starts per browser (by its flow cookie), within its address's.
    pub browser_starts: Buckets<BrowserKey>,
    /// Callbacks per browser.
    pub browser_callbacks: Buckets<BrowserKey>,
}

impl Limiter {
    /// The limits `config` sets.
    pub fn new(config: &Config) -> Self {
        let l = &config.login;
        Self {
            trusted: config.http.trusted_proxies.iter().filter_map(|p| Net::parse(p)).collect(),
            starts: Buckets::new("login starts", l.starts_per_minute, l.starts_burst),
            callbacks: Buckets::new("login callbacks", l.callbacks_per_minute, l.callbacks_burst),
            browser_starts: Buckets::new("login starts of one browser", l.browser_per_minute, l.browser_burst),
            browser_callbacks: Buckets::new("login callbacks of one browser", l.browser_per_minute, l.browser_burst),
        }
    }
}

/// Whose budget ran out: the address's (everyone behind it) or this browser's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Over {
    /// The client's address.
    Network,
    /// This browser (its flow cookie).
    Browser,
}

/// 429 with `Retry-After`, as a page the browser shows.
pub fn too_many(retry_after: u64) -> Response {
    too_many_from(Over::Network, retry_after)
}

/// 429 with `Retry-After`, naming whose budget ran out.
pub fn too_many_from(over: Over, retry_after: u64) -> Response {
    let whose = match over {
        Over::Network => "your network",
        Over::Browser => "this browser",
    };
    let mut r = crate::web::page::error(StatusCode::TOO_MANY_REQUESTS, &format!("Too many sign-in attempts from {whose}. Try again in {retry_after} seconds."));
    if let Ok(v) = HeaderValue::from_str(&retry_after.to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

/// Route layer: one login start of the client's budget, or 429.
pub async fn starts(State(app): State<AppState>, req: Request, next: Next) -> Response {
    spend(&app, &app.limits.starts, &app.limits.browser_starts, req, next).await
}

/// Route layer: one callback (OIDC callback, SAML ACS) of the client's budget, or 429.
pub async fn callbacks(State(app): State<AppState>, req: Request, next: Next) -> Response {
    spend(&app, &app.limits.callbacks, &app.limits.browser_callbacks, req, next).await
}

/// One token of the client's address, then, when the request carries a flow cookie of
/// ours, one of that browser's: a browser cannot spend its whole network's budget, and
/// one without the cookie (a script) is held by its address's budget alone.
async fn spend(app: &AppState, network: &Buckets, browsers: &Buckets<BrowserKey>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let client = Client::of(&parts, app);
    let now = app.clock.now();
    if let Err(after) = network.take(client, now) {
        return too_many_from(Over::Network, after);
    }
    if let Some(flow) = crate::web::browser::flow_cookie_value(app, &parts.headers) {
        if let Err(after) = browsers.take_for(browser_key(flow), client, now) {
            return too_many_from(Over::Browser, after);
        }
    }
    next.run(Request::from_parts(parts, body)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_parse_and_match() {
        let n = Net::parse("10.1.0.0/16").unwrap();
        assert!(n.contains("10.1.200.3".parse().unwrap()));
        assert!(n.contains("::ffff:10.1.0.9".parse().unwrap()), "IPv4-mapped counts as IPv4");
        assert!(!n.contains("10.2.0.1".parse().unwrap()));
        assert!(Net::parse("fd00::/8").unwrap().contains("fd12::1".parse().unwrap()));
        assert!(Net::parse("0.0.0.0/0").unwrap().contains("8.8.8.8".parse().unwrap()));
        assert!(Net::parse("127.0.0.1").unwrap().contains("127.0.0.1".parse().unwrap()));
        for bad in ["10.0.0.0/33", "nope", "10.0.0.0/", "::/129", ""] {
            assert!(Net::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn forwarding_headers_count_only_from_trusted_proxies() {
        let trusted = [Net::parse("10.0.0.0/8").unwrap()];
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "6.6.6.6, 1.2.3.4, 10.0.0.7".parse().unwrap());
        h.insert("x-real-ip", "9.9.9.9".parse().unwrap());
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // The rightmost untrusted hop: the client cannot prepend its way to another budget.
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &trusted), ip("1.2.3.4"));
        // From an untrusted peer the headers mean nothing.
        assert_eq!(client_ip(ip("5.5.5.5"), &h, &trusted), ip("5.5.5.5"));
        h.remove("x-forwarded-for");
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &trusted), ip("9.9.9.9"));
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "junk, 10.0.0.3".parse().unwrap());
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &trusted), ip("10.0.0.3"), "an unreadable hop stops the walk");
        assert_eq!(client_key(ip("2001:db8:1:2:3:4:5:6")), ip("2001:db8:1:2::"));
    }

    #[test]
    fn buckets_allow_a_burst_then_the_rate() {
        let b = Buckets::new("t", 60, 3);
        let c = Client("1.2.3.4".parse().unwrap());
        for _ in 0..3 {
            assert!(b.take(c, 1000).is_ok());
        }
        assert_eq!(b.take(c, 1000), Err(1));
        assert!(b.take(Client("1.2.3.5".parse().unwrap()), 1000).is_ok(), "another client has its own budget");
        assert!(b.take(c, 2000).is_ok(), "one a second comes back");
        assert!(b.take(c, 2000).is_err());
    }
}
