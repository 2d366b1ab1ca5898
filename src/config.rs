//! The one configuration tree: a TOML file (`--config`) overlaid by `SSOGATE_*`
//! environment variables (`SSOGATE_STORE__URL` sets `store.url`).
//!
//! Loading never stops at the first mistake: unknown keys, wrong types and invalid
//! values are gathered and reported together, each with its key path.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Deserializer};
use url::Url;

use crate::secret::{Cipher, Secret};

/// The environment variable prefix; `__` separates nested keys.
pub const ENV_PREFIX: &str = "SSOGATE_";

/// Environment variables with the prefix that are not configuration keys.
const ENV_NOT_KEYS: &[&str] = &["SSOGATE_CONFIG"];

/// Everything ssogate can be configured with. Every field has a default, so an empty
/// file (or none) gives a working single-machine gateway.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Address the HTTP server binds.
    pub listen: SocketAddr,
    /// External URL of the gateway: callback and ACS URLs are built from it.
    pub public_url: Url,
    /// Where the SQLite file lives.
    pub data_dir: PathBuf,
    /// Where key material lives (`master.key`).
    pub certs_dir: PathBuf,
    /// Master key for secrets at rest (base64 or hex of 32 bytes); else `certs_dir/master.key`.
    pub master_key: Option<Secret>,
    /// Bootstrap admin token; else one is generated and printed once at first start.
    pub admin_token: Option<Secret>,
    /// The store of connections, directory, audit and keys.
    pub store: StoreConfig,
    /// Logging.
    pub log: LogConfig,
    /// HTTP server limits.
    pub http: HttpConfig,
    /// Outbound HTTP (discovery, JWKS, metadata).
    pub outbound: OutboundConfig,
    /// Logins in progress and upstream token checks.
    pub login: LoginConfig,
    /// Sessions.
    pub session: SessionConfig,
    /// Downstream clients declared here (more through the admin API).
    pub clients: Vec<ClientConfig>,
    /// Connections declared here: each a table with the fields of `POST /connections`
    /// (an `id` required), secrets by reference (`oidc.client_secret_file`, ...).
    pub connections: Vec<ConnectionConfig>,
    /// Groups declared here.
    pub groups: Vec<GroupConfig>,
    /// Ingress auth (`/auth`, `/start`).
    pub ingress: IngressConfig,
    /// Where flow state, one-time codes, replay markers and sessions live.
    pub state: StateConfig,
    /// Prometheus metrics (`/metrics`).
    pub metrics: MetricsConfig,
    /// How the login page and the sign-in error pages look: product name, logo, colour.
    pub branding: BrandingConfig,
    /// `connections`, `groups` and `clients` with their secrets read: what
    /// [`crate::declare::reconcile`] applies. Made by [`Config::load`].
    #[serde(skip)]
    pub declared: crate::declare::Declared,
    /// The file this was read from, if any (named in the API's refusals to change what
    /// it declares).
    #[serde(skip)]
    pub file: Option<PathBuf>,
}

/// `[metrics]`: Prometheus metrics at `/metrics`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct MetricsConfig {
    /// Serve `/metrics` at all.
    #[serde(deserialize_with = "lenient")]
    pub enabled: bool,
    /// A listen address of their own (`0.0.0.0:9090`): `/metrics` is then served there
    /// only, not on `listen`, so it stays off whatever exposes the gateway itself.
    /// Absent: on the main listener, without authentication (like `/healthz`).
    pub listen: Option<SocketAddr>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self { enabled: true, listen: None }
    }
}

/// `[state]`: in this process (the default, one machine), or Redis (several replicas).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct StateConfig {
    /// `redis://[user:password@]host[:port][/db]`, `rediss://...` (TLS, the server's
    /// certificate verified) or `redis+unix:///path.sock`; absent: in-process memory,
    /// which only one replica can use.
    pub url: Option<Secret>,
    /// With `rediss://`: a PEM file of the CA certificates Redis's certificate must chain
    /// to, instead of the system's trust store (a private CA, as managed Redis services
    /// and operators issue).
    pub tls_ca_file: Option<std::path::PathBuf>,
    /// Put before every Redis key and the invalidation channel, so several gateways
    /// (or test runs) can share one Redis.
    pub prefix: String,
    /// How long a replica may answer `/auth` from its own memory before asking Redis
    /// again (and writing the session's last use through); revocations reach every
    /// replica within a second regardless. 0 turns the cache off.
    #[serde(deserialize_with = "lenient")]
    pub cache_seconds: u64,
    /// Longest wait for Redis on a request; past it the request fails closed (503).
    #[serde(deserialize_with = "lenient")]
    pub timeout_ms: u64,
    /// In-process state only: at most this many flow states, codes and replay markers.
    #[serde(deserialize_with = "lenient")]
    pub memory_max_entries: usize,
    /// In-process state only: at most this many bytes of them (keys, values and
    /// bookkeeping). Past either bound the client holding the most logins in progress
    /// loses its oldest; codes and replay markers are never pushed out.
    #[serde(deserialize_with = "lenient")]
    pub memory_max_bytes: usize,
}

impl Default for StateConfig {
    fn default() -> Self {
        Self {
            url: None,
            tls_ca_file: None,
            prefix: "ssogate:".into(),
            cache_seconds: 5,
            timeout_ms: 500,
            memory_max_entries: 200_000,
            memory_max_bytes: 64 << 20,
        }
    }
}

/// `[ingress]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct IngressConfig {
    /// Hosts a login may return to (`rd=`): `app.example.com`, `.example.com` for the
    /// domain and every subdomain, `host:port` for a non-default port. The gateway's own
    /// host is always allowed. A list, or one comma-separated string (environment).
    #[serde(deserialize_with = "string_or_list")]
    pub allowed_domains: Vec<String>,
    /// Every `/auth` answer carries `Authorization: Bearer <token>` (a short-lived JWT
    /// signed with the gateway's key) for the app, as if each route asked with
    /// `set_authorization_header=true`.
    #[serde(deserialize_with = "lenient")]
    pub set_authorization_header: bool,
    /// The `aud` of those tokens.
    pub token_audience: String,
}

impl Default for IngressConfig {
    fn default() -> Self {
        Self { allowed_domains: Vec::new(), set_authorization_header: false, token_audience: "ingress".into() }
    }
}

/// `[[clients]]`: an application that logs in through ssogate's OpenID Provider. The
/// secret is given by reference (`client_secret_file`, `client_secret_env`) or, for
/// files that are themselves secret, inline (`client_secret`): exactly one of them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// OAuth client id.
    pub client_id: String,
    /// Client secret, inline.
    #[serde(default)]
    pub client_secret: Option<Secret>,
    /// A file holding the client secret (a mounted Kubernetes Secret); trailing line
    /// breaks are dropped.
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    /// An environment variable holding the client secret.
    #[serde(default)]
    pub client_secret_env: Option<String>,
    /// Exact redirect URIs allowed.
    pub redirect_uris: Vec<String>,
    /// A name for admins.
    #[serde(default)]
    pub name: String,
    /// Per-client settings (`[clients.settings]`: `grant_types`, `require_pkce`,
    /// `backchannel_logout_uri`, ...), as the admin API takes them.
    #[serde(default)]
    pub settings: crate::store::ClientSettings,
}

/// `[[connections]]`: a connection declared here, as a table of the fields `POST
/// /connections` takes (read by [`crate::declare::resolve`]). `Debug` shows its id only.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct ConnectionConfig(pub toml::Table);

impl fmt::Debug for ConnectionConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionConfig").field("id", &self.0.get("id").and_then(toml::Value::as_str)).finish_non_exhaustive()
    }
}

/// `[[groups]]`: a group of the directory declared here.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupConfig {
    /// Its name (unique regardless of ASCII case): the key it is found by.
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
}

/// `[login]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct LoginConfig {
    /// How long a started login may take before its state expires.
    #[serde(deserialize_with = "lenient")]
    pub flow_ttl_seconds: u64,
    /// Clock difference tolerated with IdPs for token times.
    #[serde(deserialize_with = "lenient")]
    pub clock_skew_seconds: u64,
    /// An unknown `kid` refetches an IdP's JWKS at most this often.
    #[serde(deserialize_with = "lenient")]
    pub jwks_min_refetch_seconds: u64,
    /// SAML connections with a metadata URL read it again this often (0: never).
    #[serde(deserialize_with = "lenient")]
    pub saml_metadata_refresh_seconds: u64,
    /// Login starts (`/login/{id}`, `/start`, `/oauth2/start`, `/authorize`, with or
    /// without a session) one client may make per minute, sustained; past the burst, 429
    /// with `Retry-After`. 0: no limit.
    #[serde(deserialize_with = "lenient")]
    pub starts_per_minute: u32,
    /// Starts one client may make at once before `starts_per_minute` applies.
    #[serde(deserialize_with = "lenient")]
    pub starts_burst: u32,
    /// OIDC callbacks and SAML ACS posts one client may make per minute, sustained. 0: no limit.
    #[serde(deserialize_with = "lenient")]
    pub callbacks_per_minute: u32,
    /// Callbacks one client may make at once before `callbacks_per_minute` applies.
    #[serde(deserialize_with = "lenient")]
    pub callbacks_burst: u32,
    /// Logins in progress one client may hold in the state store (in memory or Redis): a client
    /// over it loses its own oldest one (everyone behind one NAT counts as one client).
    #[serde(deserialize_with = "lenient")]
    pub flows_per_client: usize,
    /// Login starts, and callbacks, one browser (told apart by its flow cookie) may make
    /// per minute, sustained, within its address's budget: behind a NAT, one busy browser
    /// does not use up everyone's. 0: no per-browser limit.
    #[serde(deserialize_with = "lenient")]
    pub browser_per_minute: u32,
    /// Starts (and callbacks) one browser may make at once before `browser_per_minute`.
    #[serde(deserialize_with = "lenient")]
    pub browser_burst: u32,
}

impl Default for LoginConfig {
    fn default() -> Self {
        Self {
            flow_ttl_seconds: 600,
            clock_skew_seconds: 60,
            jwks_min_refetch_seconds: 10,
            saml_metadata_refresh_seconds: 3600,
            starts_per_minute: 600,
            starts_burst: 100,
            callbacks_per_minute: 600,
            callbacks_burst: 100,
            flows_per_client: 1000,
            browser_per_minute: 60,
            browser_burst: 20,
        }
    }
}

/// `[session]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct SessionConfig {
    /// A session ends this long after login, used or not.
    #[serde(deserialize_with = "lenient")]
    pub lifetime_seconds: u64,
    /// A session ends after this long unused.
    #[serde(deserialize_with = "lenient")]
    pub idle_seconds: u64,
    /// Domain of the session cookie (`example.com`), so one login covers every app on
    /// `*.example.com`; the public URL's host must be inside it. None: this host only.
    pub cookie_domain: Option<String>,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self { lifetime_seconds: 8 * 3600, idle_seconds: 3600, cookie_domain: None }
    }
}

/// `[store]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct StoreConfig {
    /// `sqlite://PATH` or `postgres://...`; default: `ssogate.db` in the data dir.
    pub url: Option<Secret>,
    /// Pool size.
    #[serde(deserialize_with = "lenient")]
    pub max_connections: u32,
    /// At start, how long to wait for a database that is unreachable (refusing
    /// connections, starting up) before giving up; 0: give up at once.
    #[serde(deserialize_with = "lenient")]
    pub connect_wait_seconds: u64,
}

/// `[log]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: LogFormat,
    /// A tracing filter such as `info` or `ssogate=debug,info`.
    pub level: String,
}

/// Log line format.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `[http]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct HttpConfig {
    /// Largest request body accepted (413 above it).
    #[serde(deserialize_with = "lenient")]
    pub max_body_bytes: usize,
    /// Requests taking longer are answered 408.
    #[serde(deserialize_with = "lenient")]
    pub request_timeout_seconds: u64,
    /// Proxies in front of the gateway (IPs or CIDRs, `10.0.0.0/8`, `::1`): only a peer in
    /// this list is believed about the request: its `X-Request-Id`, and the client it
    /// names (`X-Forwarded-For`, rightmost untrusted hop, or `X-Real-IP`) for the rate
    /// limits. Empty by default. A list, or one comma-separated string (environment).
    #[serde(deserialize_with = "string_or_list")]
    pub trusted_proxies: Vec<String>,
    /// A new connection must send its first request's headers within this time.
    #[serde(deserialize_with = "lenient")]
    pub header_read_timeout_seconds: u64,
    /// A connection with no request in progress is closed after this long (longer than
    /// a proxy's upstream keep-alive, nginx's 60 s, so the proxy closes first).
    #[serde(deserialize_with = "lenient")]
    pub idle_timeout_seconds: u64,
    /// Open connections at most; at the cap the longest-idle one is closed for a new
    /// one. Keep it below the file-descriptor limit (checked at start).
    #[serde(deserialize_with = "lenient")]
    pub max_connections: usize,
}

impl HttpConfig {
    /// Whether the peer `ip` is one of `trusted_proxies` (an IPv4 peer seen as an
    /// IPv4-mapped IPv6 address counts as its IPv4 address).
    pub fn trusted_proxy(&self, ip: std::net::IpAddr) -> bool {
        self.trusted_proxies.iter().filter_map(|entry| crate::limit::Net::parse(entry)).any(|net| net.contains(ip))
    }
}

/// `a.b.c.d`, `a.b.c.d/n`, an IPv6 address, or one with `/n`: the network and its prefix length.
fn parse_cidr(entry: &str) -> Result<(std::net::IpAddr, u8), String> {
    let entry = entry.trim();
    let (addr, bits) = match entry.split_once('/') {
        Some((a, b)) => (a, Some(b)),
        None => (entry, None),
    };
    let ip: std::net::IpAddr = addr.parse().map_err(|_| format!("`{entry}` is not an IP address or CIDR"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let bits = match bits {
        None => max,
        Some(b) => b.parse::<u8>().ok().filter(|b| *b <= max).ok_or_else(|| format!("`{entry}`: the prefix length must be 0 to {max}"))?,
    };
    Ok((ip, bits))
}

/// `[outbound]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct OutboundConfig {
    /// Timeout for calls to IdPs (discovery, metadata, JWKS, token).
    #[serde(deserialize_with = "lenient")]
    pub timeout_seconds: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: Url::parse("http://127.0.0.1:8080").unwrap_or_else(|_| unreachable!()),
            data_dir: PathBuf::from("data"),
            certs_dir: PathBuf::from("certs"),
            master_key: None,
            admin_token: None,
            store: StoreConfig::default(),
            log: LogConfig::default(),
            http: HttpConfig::default(),
            outbound: OutboundConfig::default(),
            login: LoginConfig::default(),
            session: SessionConfig::default(),
            clients: Vec::new(),
            connections: Vec::new(),
            groups: Vec::new(),
            declared: Default::default(),
            file: None,
            ingress: IngressConfig::default(),
            state: StateConfig::default(),
            metrics: MetricsConfig::default(),
            branding: BrandingConfig::default(),
        }
    }
}

/// `[branding]`: what the end-user pages (login, sign-in errors) show.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrandingConfig {
    /// The product name in the page header and title ("Acme Sign-in").
    pub product_name: String,
    /// The logo: an https URL (http only for localhost), or a path on this gateway
    /// (`/static/logo.svg`). Shown at most 40 pixels high. Absent: a plain mark.
    pub logo_url: Option<String>,
    /// The accent colour of buttons and links, `#rrggbb` or `#rgb`.
    pub accent_color: String,
}

impl Default for BrandingConfig {
    fn default() -> Self {
        Self { product_name: "ssogate".into(), logo_url: None, accent_color: "#4338ca".into() }
    }
}

impl BrandingConfig {
    /// What is wrong with each value, as (key, message).
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = vec![];
        let name = self.product_name.trim();
        if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
            out.push(("branding.product_name", "must be 1 to 64 characters without control characters".to_string()));
        }
        if !is_colour(&self.accent_color) {
            out.push((
                "branding.accent_color",
                format!("must be a colour as #rrggbb or #rgb, not {:?}", self.accent_color.chars().take(40).collect::<String>()),
            ));
        }
        if let Some(logo) = &self.logo_url {
            if let Err(why) = logo_source(logo) {
                out.push(("branding.logo_url", why));
            }
        }
        out
    }
}

/// `#rgb` or `#rrggbb`, hex digits only: nothing else can reach the page's style.
pub fn is_colour(s: &str) -> bool {
    s.strip_prefix('#').is_some_and(|h| (h.len() == 3 || h.len() == 6) && h.chars().all(|c| c.is_ascii_hexdigit()))
}

/// The origin a logo URL loads from (None for a path on this gateway), or why it cannot
/// be a logo: only https (http for localhost), no credentials, no quote, space or
/// backslash (it goes into an attribute and the Content-Security-Policy), at most 2048 bytes.
pub fn logo_source(s: &str) -> Result<Option<String>, String> {
    if s.len() > 2048 || s.chars().any(|c| c.is_control() || c.is_whitespace() || matches!(c, '"' | '\'' | '\\' | '<' | '>' | ';' | ',')) {
        return Err("must be a URL of at most 2048 bytes without spaces, quotes, commas, semicolons or backslashes".into());
    }
    if s.starts_with('/') && !s.starts_with("//") {
        return Ok(None);
    }
    let u = Url::parse(s).map_err(|_| "must be an https URL or a path starting with /".to_string())?;
    let local = matches!(u.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
    if !(u.scheme() == "https" || (u.scheme() == "http" && local)) {
        return Err("must be https (http only for localhost)".into());
    }
    if !u.username().is_empty() || u.password().is_some() || u.host_str().is_none() {
        return Err("must not carry credentials, and must name a host".into());
    }
    Ok(Some(u.origin().ascii_serialization()))
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self { url: None, max_connections: 8, connect_wait_seconds: 300 }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { format: LogFormat::Text, level: "info".into() }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            request_timeout_seconds: 30,
            trusted_proxies: Vec::new(),
            header_read_timeout_seconds: 10,
            idle_timeout_seconds: 75,
            max_connections: 4096,
        }
    }
}

impl Default for OutboundConfig {
    fn default() -> Self {
        Self { timeout_seconds: 10 }
    }
}

/// One thing wrong with the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Key path, such as `store.url`.
    pub key: String,
    /// What is wrong, and where it came from when that helps.
    pub message: String,
}

/// The configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("could not read the config file {path}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not TOML.
    #[error("the config file {path} is not valid TOML: {message}")]
    Syntax {
        /// The file.
        path: String,
        /// The parser's message.
        message: String,
    },
    /// Keys or values are wrong; all of them are listed.
    #[error("{}", list(.0))]
    Invalid(Vec<Problem>),
}

fn list(problems: &[Problem]) -> String {
    let mut out = format!("the configuration has {} problem(s):", problems.len());
    for p in problems {
        out.push_str(&format!("\n  - {}: {}", p.key, p.message));
    }
    out
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

impl Config {
    /// Loads the file (if any), overlays the `SSOGATE_*` variables of `env`, and
    /// validates. Every problem found is reported at once.
    pub fn load(file: Option<&Path>, env: impl IntoIterator<Item = (String, String)>) -> Result<Self, ConfigError> {
        let mut root = match file {
            Some(path) => {
                let shown = path.display().to_string();
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: shown.clone(), source })?;
                toml::from_str::<toml::Table>(&text).map_err(|e| ConfigError::Syntax { path: shown, message: e.message().to_string() })?
            }
            None => toml::Table::new(),
        };
        let env: Vec<(String, String)> = env.into_iter().collect();
        let mut from_env = BTreeMap::new();
        let mut problems = Vec::new();
        for (name, value) in env.iter().cloned() {
            let Some(rest) = name.strip_prefix(ENV_PREFIX) else { continue };
            if ENV_NOT_KEYS.contains(&name.as_str()) || rest.is_empty() {
                continue;
            }
            let path: Vec<String> = rest.split("__").map(|p| p.to_ascii_lowercase()).collect();
            from_env.insert(path.join("."), name.clone());
            if let Err(message) = insert(&mut root, &path, value) {
                problems.push(Problem { key: path.join("."), message: format!("{message} (from {name})") });
            }
        }
        let mut unknown = Vec::new();
        let mut note = |p: serde_ignored::Path<'_>| unknown.push(p.to_string());
        let de = serde_ignored::Deserializer::new(toml::Value::Table(root), &mut note);
        let parsed: Result<Config, _> = serde_path_to_error::deserialize(de);
        for key in unknown {
            let origin = from_env.get(&key).map(|v| format!(" (from {v})")).unwrap_or_default();
            problems.push(Problem { key, message: format!("unknown key{origin}") });
        }
        let mut config: Config = match parsed {
            Ok(c) => c,
            Err(e) => {
                let key = e.path().to_string();
                let origin = from_env.get(&key).map(|v| format!(" (from {v})")).unwrap_or_default();
                problems.push(Problem { key, message: format!("{}{origin}", e.inner()) });
                return Err(ConfigError::Invalid(problems));
            }
        };
        problems.extend(config.validate());
        let (declared, declare_problems) = crate::declare::resolve(&config, &env.iter().cloned().collect());
        problems.extend(declare_problems);
        config.declared = declared;
        config.file = file.map(Path::to_path_buf);
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }

    /// Checks values that parse but cannot work; returns every problem found.
    pub fn validate(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        let mut bad = |key: &str, message: &str| problems.push(Problem { key: key.into(), message: message.into() });
        if !matches!(self.public_url.scheme(), "http" | "https") {
            bad("public_url", "must be an http or https URL");
        }
        for (key, message) in self.branding.problems() {
            bad(key, &message);
        }
        if self.public_url.query().is_some() || self.public_url.fragment().is_some() {
            bad("public_url", "must not have a query or fragment");
        }
        if self.public_url.host_str().is_none() {
            bad("public_url", "must have a host");
        }
        for entry in &self.http.trusted_proxies {
            if let Err(why) = parse_cidr(entry) {
                bad("http.trusted_proxies", &why);
            }
        }
        if let Some(url) = &self.store.url {
            let u = url.expose();
            if !(u.starts_with("sqlite:") || u.starts_with("postgres://") || u.starts_with("postgresql://")) {
                bad("store.url", "must start with sqlite: or postgres://");
            }
        }
        if self.store.max_connections == 0 || self.store.max_connections > 1000 {
            bad("store.max_connections", "must be between 1 and 1000");
        }
        if let Some(key) = &self.master_key {
            if Cipher::from_text(key.expose()).is_err() {
                bad("master_key", "must be 32 bytes, as base64 or 64 hex characters");
            }
        }
        if let Some(token) = &self.admin_token {
            if token.expose().len() < 16 {
                bad("admin_token", "must be at least 16 characters");
            }
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            bad("log.level", "is not a valid filter (for example `info` or `ssogate=debug,info`)");
        }
        if self.http.max_body_bytes < 1024 || self.http.max_body_bytes > 64 * 1024 * 1024 {
            bad("http.max_body_bytes", "must be between 1024 and 67108864");
        }
        if self.http.request_timeout_seconds == 0 {
            bad("http.request_timeout_seconds", "must be at least 1");
        }
        for p in &self.http.trusted_proxies {
            if crate::limit::Net::parse(p).is_none() {
                bad("http.trusted_proxies", &format!("`{p}` is not an IP address or CIDR (10.0.0.0/8, fd00::/8)"));
            }
        }
        if self.http.header_read_timeout_seconds == 0 || self.http.header_read_timeout_seconds > 300 {
            bad("http.header_read_timeout_seconds", "must be between 1 and 300");
        }
        if self.http.idle_timeout_seconds == 0 || self.http.idle_timeout_seconds > 3600 {
            bad("http.idle_timeout_seconds", "must be between 1 and 3600");
        }
        if !(16..=1_000_000).contains(&self.http.max_connections) {
            bad("http.max_connections", "must be between 16 and 1000000");
        }
        if self.login.starts_burst == 0 || self.login.callbacks_burst == 0 {
            bad("login.starts_burst", "login.starts_burst and login.callbacks_burst must be at least 1");
        }
        if self.login.flows_per_client == 0 {
            bad("login.flows_per_client", "must be at least 1");
        }
        if self.state.memory_max_entries < 1000 || self.state.memory_max_bytes < (1 << 20) {
            bad("state.memory_max_entries", "state.memory_max_entries must be at least 1000 and state.memory_max_bytes at least 1048576");
        }
        if !(60..=3600).contains(&self.login.flow_ttl_seconds) {
            bad("login.flow_ttl_seconds", "must be between 60 and 3600");
        }
        let refresh = self.login.saml_metadata_refresh_seconds;
        if refresh != 0 && !(60..=7 * 86400).contains(&refresh) {
            bad("login.saml_metadata_refresh_seconds", "must be 0 (never) or between 60 and 604800");
        }
        if self.login.clock_skew_seconds > 600 {
            bad("login.clock_skew_seconds", "must be at most 600");
        }
        if !(60..=90 * 86_400).contains(&self.session.lifetime_seconds) {
            bad("session.lifetime_seconds", "must be between 60 and 7776000 (90 days)");
        }
        if !(60..=90 * 86_400).contains(&self.session.idle_seconds) {
            bad("session.idle_seconds", "must be between 60 and 7776000 (90 days)");
        }
        if let Some(domain) = &self.session.cookie_domain {
            if let Err(why) = cookie_domain_fits(domain, &self.public_url) {
                bad("session.cookie_domain", &why);
            }
        }
        let aud = &self.ingress.token_audience;
        if aud.trim().is_empty() || aud.len() > 256 || aud.chars().any(char::is_control) {
            bad("ingress.token_audience", "must be 1 to 256 printable characters");
        }
        if self.login.jwks_min_refetch_seconds > 86_400 {
            bad("login.jwks_min_refetch_seconds", "must be at most 86400");
        }
        for (i, c) in self.clients.iter().enumerate() {
            if c.client_id.trim().is_empty() {
                bad(&format!("clients[{i}].client_id"), "is required");
            }
            if c.redirect_uris.is_empty() {
                bad(&format!("clients[{i}].redirect_uris"), "must list at least one URI");
            }
        }
        if self.outbound.timeout_seconds == 0 || self.outbound.timeout_seconds > 120 {
            bad("outbound.timeout_seconds", "must be between 1 and 120");
        }
        if let Some(url) = &self.state.url {
            let u = url.expose();
            if !(u.starts_with("rediss://") || u.starts_with("redis://") || u.starts_with("redis+unix://") || u.starts_with("unix://")) {
                bad("state.url", "must start with redis://, rediss:// (TLS) or redis+unix://");
            } else if u.contains('#') {
                // `#insecure` would turn off the certificate check: never.
                bad("state.url", "must not carry a #fragment (the server's certificate is always verified; for a private CA set state.tls_ca_file)");
            } else if redis::Client::open(u).is_err() {
                bad("state.url", "is not a valid Redis URL");
            }
        }
        if self.state.tls_ca_file.is_some() && !self.state.url.as_ref().is_some_and(|u| u.expose().starts_with("rediss://")) {
            bad("state.tls_ca_file", "only applies to a rediss:// state.url");
        }
        if self.state.prefix.is_empty() || self.state.prefix.len() > 64 || self.state.prefix.chars().any(|c| c.is_whitespace() || c.is_control()) {
            bad("state.prefix", "must be 1 to 64 characters without spaces");
        }
        if self.state.cache_seconds > 60 || self.state.cache_seconds * 1000 >= self.session.idle_seconds * 1000 {
            bad("state.cache_seconds", "must be at most 60, and shorter than session.idle_seconds");
        }
        if !(50..=10_000).contains(&self.state.timeout_ms) {
            bad("state.timeout_ms", "must be between 50 and 10000");
        }
        if self.metrics.listen.is_some_and(|m| m == self.listen && m.port() != 0) {
            bad("metrics.listen", "must differ from listen (leave it out to serve /metrics on the main listener)");
        }
        problems
    }

    /// The store URL in force: the configured one, or the SQLite file in the data dir.
    pub fn store_url(&self) -> String {
        match &self.store.url {
            Some(u) => u.expose().to_string(),
            None => format!("sqlite://{}?mode=rwc", self.data_dir.join("ssogate.db").display()),
        }
    }

    /// Whether cookies get the Secure flag: always, unless the public URL is plain http.
    pub fn secure_cookies(&self) -> bool {
        self.public_url.scheme() == "https"
    }

    /// The `Domain` attribute of the session cookie, when one is configured.
    pub fn cookie_domain(&self) -> Option<&str> {
        self.session.cookie_domain.as_deref().map(|d| d.trim_start_matches('.'))
    }

    /// The public URL without a trailing slash, to append paths to.
    pub fn public_base(&self) -> String {
        self.public_url.as_str().trim_end_matches('/').to_string()
    }
}

/// Checks a cookie domain: a DNS name (not an IP, no port or scheme) that contains the
/// public URL's host, or the browser would never send the session cookie back here.
fn cookie_domain_fits(domain: &str, public_url: &Url) -> Result<(), String> {
    let d = domain.strip_prefix('.').unwrap_or(domain).to_ascii_lowercase();
    let label_ok = |l: &str| !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if d.len() > 253 || !d.contains('.') || !d.split('.').all(label_ok) || d.parse::<std::net::IpAddr>().is_ok() {
        return Err(format!("`{domain}` is not a domain name such as example.com (no scheme, port, IP address or single label)"));
    }
    let Some(url::Host::Domain(host)) = public_url.host() else {
        return Err("needs a public_url with a host name, not an IP address".into());
    };
    let host = host.to_ascii_lowercase();
    if host != d && !host.ends_with(&format!(".{d}")) {
        return Err(format!("public_url's host `{host}` is not inside `{d}`: browsers would not send the session cookie to the gateway"));
    }
    Ok(())
}

fn insert(root: &mut toml::Table, path: &[String], value: String) -> Result<(), String> {
    let (last, parents) = path.split_last().ok_or("empty key")?;
    let mut table = root;
    for p in parents {
        let entry = table.entry(p.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        table = entry.as_table_mut().ok_or_else(|| format!("`{p}` is not a table"))?;
    }
    table.insert(last.clone(), toml::Value::String(value));
    Ok(())
}

/// Accepts a list, or one comma-separated string (environment variables are strings).
fn string_or_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Text(String),
        List(Vec<String>),
    }
    Ok(match Either::deserialize(d)? {
        Either::Text(s) => s.split(',').map(|x| x.trim().to_string()).filter(|x| !x.is_empty()).collect(),
        Either::List(v) => v,
    })
}

/// Accepts a value in its own type or as a string (environment variables are strings).
fn lenient<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr + Deserialize<'de>,
    T::Err: fmt::Display,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either<T> {
        Text(String),
        Native(T),
    }
    match Either::<T>::deserialize(d)? {
        Either::Native(v) => Ok(v),
        Either::Text(s) => s.trim().parse().map_err(|e| serde::de::Error::custom(format!("`{s}`: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn defaults_make_a_working_gateway() {
        let c = Config::load(None, env(&[])).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.public_url.as_str(), "http://127.0.0.1:8080/");
        assert_eq!(c.data_dir, PathBuf::from("data"));
        assert!(c.store_url().starts_with("sqlite://data/ssogate.db"));
    }

    #[test]
    fn env_overlays_file_and_nested_keys() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "listen = \"127.0.0.1:9000\"\n[http]\nmax_body_bytes = 2048\n").unwrap();
        let c = Config::load(Some(&f), env(&[("SSOGATE_HTTP__MAX_BODY_BYTES", "4096"), ("SSOGATE_STORE__URL", "postgres://x/y"), ("HOME", "/")])).unwrap();
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.http.max_body_bytes, 4096);
        assert_eq!(c.store_url(), "postgres://x/y");
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "public_url = \"ftp://x\"\nbogus = 1\n[store]\nurl = \"mysql://x\"\nextra = 2\n").unwrap();
        let err = Config::load(Some(&f), env(&[("SSOGATE_NOPE", "1"), ("SSOGATE_ADMIN_TOKEN", "short")])).unwrap_err();
        let ConfigError::Invalid(problems) = err else { panic!("{err}") };
        let keys: Vec<_> = problems.iter().map(|p| p.key.as_str()).collect();
        for k in ["bogus", "store.extra", "nope", "public_url", "store.url", "admin_token"] {
            assert!(keys.contains(&k), "{k} missing from {problems:?}");
        }
        assert!(problems.iter().any(|p| p.message.contains("SSOGATE_NOPE")));
    }

    #[test]
    fn wrong_types_name_the_key() {
        let err = Config::load(None, env(&[("SSOGATE_HTTP__MAX_BODY_BYTES", "lots")])).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("http.max_body_bytes"), "{text}");
        assert!(text.contains("SSOGATE_HTTP__MAX_BODY_BYTES"), "{text}");
    }

    #[test]
    fn trusted_proxies_are_ips_or_cidrs() {
        let c = Config::load(None, env(&[("SSOGATE_HTTP__TRUSTED_PROXIES", "10.0.0.0/8, 192.168.1.7, fd00::/8, ::1")])).unwrap();
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        for (addr, want) in [
            ("10.1.2.3", true),
            ("11.0.0.1", false),
            ("192.168.1.7", true),
            ("192.168.1.8", false),
            ("::ffff:10.9.9.9", true),
            ("fd12::1", true),
            ("fe80::1", false),
            ("::1", true),
            ("127.0.0.1", false),
        ] {
            assert_eq!(c.http.trusted_proxy(ip(addr)), want, "{addr}");
        }
        assert!(!Config::default().http.trusted_proxy(ip("127.0.0.1")), "nobody by default");
        let all = Config::load(None, env(&[("SSOGATE_HTTP__TRUSTED_PROXIES", "0.0.0.0/0")])).unwrap();
        assert!(all.http.trusted_proxy(ip("8.8.8.8")));
        for bad in ["nope", "10.0.0.0/33", "::1/129", "10.0.0.0/", "10.0.0.1:80", "example.com"] {
            let err = Config::load(None, env(&[("SSOGATE_HTTP__TRUSTED_PROXIES", bad)])).unwrap_err().to_string();
            assert!(err.contains("http.trusted_proxies") && err.contains(bad), "{bad}: {err}");
        }
    }

    #[test]
    fn cookie_domain_must_contain_the_public_host() {
        let ok = [
            ("https://sso.example.com", "example.com"),
            ("https://sso.example.com", ".example.com"),
            ("https://example.com", "example.com"),
            ("http://a.b.example.com:8080", "b.example.com"),
        ];
        for (url, domain) in ok {
            let c = Config::load(None, env(&[("SSOGATE_PUBLIC_URL", url), ("SSOGATE_SESSION__COOKIE_DOMAIN", domain)])).unwrap();
            assert_eq!(c.cookie_domain(), Some(domain.trim_start_matches('.')));
        }
        let bad = [
            ("https://sso.example.com", "other.com"),
            ("https://sso.example.com", "ample.com"),
            ("https://sso.example.com.evil.com", "example.com"),
            ("https://sso.example.com", "sso.example.com:443"),
            ("https://sso.example.com", "https://example.com"),
            ("https://sso.example.com", "com"),
            ("http://127.0.0.1:8080", "0.0.1"),
            ("http://127.0.0.1:8080", "127.0.0.1"),
            ("https://sso.example.com", ""),
        ];
        for (url, domain) in bad {
            let err = Config::load(None, env(&[("SSOGATE_PUBLIC_URL", url), ("SSOGATE_SESSION__COOKIE_DOMAIN", domain)])).unwrap_err();
            assert!(err.to_string().contains("session.cookie_domain"), "{url} {domain}: {err}");
        }
    }

    #[test]
    fn secrets_do_not_show_in_debug() {
        let c = Config::load(None, env(&[("SSOGATE_ADMIN_TOKEN", "a-very-secret-admin-token")])).unwrap();
        assert!(!format!("{c:?}").contains("a-very-secret-admin-token"));
    }

    #[test]
    fn state_section_is_checked() {
        let c = Config::load(None, env(&[])).unwrap();
        assert!(c.state.url.is_none(), "in-process state by default");
        let c = Config::load(None, env(&[("SSOGATE_STATE__URL", "redis://:pw@127.0.0.1:6379/2"), ("SSOGATE_STATE__CACHE_SECONDS", "0")])).unwrap();
        assert_eq!(c.state.cache_seconds, 0);
        assert!(!format!("{c:?}").contains("pw@"), "the Redis password is a secret");
        let err = Config::load(
            None,
            env(&[
                ("SSOGATE_STATE__URL", "rediss://x#insecure"),
                ("SSOGATE_STATE__PREFIX", "a b"),
                ("SSOGATE_STATE__TIMEOUT_MS", "1"),
                ("SSOGATE_STATE__CACHE_SECONDS", "61"),
            ]),
        )
        .unwrap_err()
        .to_string();
        for k in ["state.url", "state.prefix", "state.timeout_ms", "state.cache_seconds"] {
            assert!(err.contains(k), "{k} in {err}");
        }
        assert!(err.contains("always verified"), "turning the certificate check off is refused: {err}");
        let tls =
            Config::load(None, env(&[("SSOGATE_STATE__URL", "rediss://redis.internal:6380/0"), ("SSOGATE_STATE__TLS_CA_FILE", "/etc/ssogate/redis-ca.pem")]))
                .unwrap();
        assert!(tls.state.tls_ca_file.is_some());
        let err = Config::load(None, env(&[("SSOGATE_STATE__URL", "redis://x"), ("SSOGATE_STATE__TLS_CA_FILE", "/ca.pem")])).unwrap_err().to_string();
        assert!(err.contains("state.tls_ca_file"), "a CA file without TLS is a mistake worth naming: {err}");
        assert!(Config::load(None, env(&[("SSOGATE_STATE__URL", "mysql://x")])).is_err());
    }
}
