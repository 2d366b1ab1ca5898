//! The application state and its start-up: `App::start` opens the store and the key
//! material (checking the master key against the store), the state backends, the
//! outbound client and the caches. Handlers take [`AppState`]; nothing here knows a
//! route.

use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::clock::Clock;
use crate::config::Config;
use crate::connection::Registry;
use crate::directory::Directory;
use crate::secret::{Cipher, CipherError, Secret};
use crate::store::{Store, StoreError};

/// Everything a handler needs; shared by all requests.
#[derive(Debug)]
pub struct App {
    /// Configuration in force.
    pub config: Config,
    /// The store.
    pub store: Arc<dyn Store>,
    /// Connections.
    pub registry: Registry,
    /// Users and groups.
    pub directory: Directory,
    /// The master-key cipher.
    pub cipher: Cipher,
    /// Time.
    pub clock: Clock,
    /// The admin token's hash: configured, or the stored one (rotatable while running).
    pub admin_token: AdminToken,
    /// Flow state, one-time codes, replay markers.
    pub ephemeral: Arc<dyn crate::state::Ephemeral>,
    /// Sessions.
    pub sessions: Arc<dyn crate::state::Sessions>,
    /// IdP signing keys.
    pub jwks: crate::upstream::jwks::JwksCache,
    /// The outbound HTTP client (no redirects, timeouts).
    pub http: reqwest::Client,
    /// The apps' bearer tokens `/auth` signed, per session.
    pub ingress: crate::ingress::Tokens,
    /// Per-client limits on login starts and callbacks, and the trusted proxies.
    pub limits: crate::limit::Limiter,
    /// Counters and histograms for `/metrics`.
    pub metrics: crate::metrics::Metrics,
    /// When this process started (epoch milliseconds).
    pub started_at: crate::clock::Millis,
    /// Refusals counted but not yet audited, and logins not yet in the health table.
    pub recorder: crate::login::record::Recorder,
    /// Ended sessions whose apps are to get back-channel logout tokens.
    pub backchannel: Arc<crate::op::backchannel::Outbox>,
}

/// Handlers' state.
pub type AppState = Arc<App>;

/// What happened at start that the operator must be told once.
#[derive(Debug, Default)]
pub struct Startup {
    /// A master key file was created (back it up).
    pub master_key_created: bool,
    /// An admin token was generated; shown once, only its hash is kept.
    pub admin_token_generated: Option<Secret>,
    /// The first signing key was generated.
    pub signing_key_created: bool,
}

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The data dir could not be made.
    #[error("could not create the data directory {path}")]
    DataDir {
        /// The folder.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The master key is missing, malformed or unreadable.
    #[error(transparent)]
    MasterKey(CipherError),
    /// The master key is not the one the store's secrets were sealed with.
    #[error("the master key does not match the one this store was created with: restore the original certs/master.key (or SSOGATE_MASTER_KEY); secrets sealed with it cannot be read otherwise")]
    WrongMasterKey,
    /// The store could not be opened or migrated.
    #[error("could not open the store ({url}): {source}")]
    Store {
        /// The store URL, without credentials.
        url: String,
        /// Why.
        #[source]
        source: StoreError,
    },
    /// The state backend (Redis) could not be set up.
    #[error("could not set up the state store ({url}): {source}")]
    State {
        /// The Redis URL, without credentials.
        url: String,
        /// Why.
        #[source]
        source: crate::state::StateError,
    },
    /// Key generation failed.
    #[error(transparent)]
    Keys(#[from] crate::token::KeyError),
    /// The outbound HTTP client could not be built with its safety settings.
    #[error("could not build the outbound HTTP client: {0}")]
    Http(String),
}

impl From<StoreError> for StartupError {
    fn from(source: StoreError) -> Self {
        StartupError::Store { url: String::new(), source }
    }
}

const KEY_CHECK: &str = "master_key_check";
const KEY_CHECK_PLAIN: &[u8] = b"ssogate master key check";
const ADMIN_TOKEN_HASH: &str = "admin_token_sha256";

/// Hides the password of a database URL for messages.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

/// The SHA-256 of a token.
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl App {
    /// Opens everything the gateway needs; creates what a first start creates.
    pub async fn start(config: Config, clock: Clock) -> Result<(App, Startup), StartupError> {
        let mut startup = Startup::default();
        let store_url = config.store_url();
        if store_url.starts_with("sqlite:") && config.store.url.is_none() {
            crate::store::private_dir(&config.data_dir).map_err(|source| StartupError::DataDir { path: config.data_dir.display().to_string(), source })?;
        }
        let cipher = match &config.master_key {
            Some(k) => Cipher::from_text(k.expose()).map_err(StartupError::MasterKey)?,
            None => {
                let (c, created) = Cipher::load_or_create(&config.certs_dir.join("master.key")).map_err(StartupError::MasterKey)?;
                startup.master_key_created = created;
                c
            }
        };
        let store: Arc<dyn Store> = Arc::new(
            crate::store::open_waiting(
                &store_url,
                config.store.max_connections,
                Duration::from_secs(config.store.connect_wait_seconds),
                &redact_url(&store_url),
            )
            .await
            .map_err(|source| StartupError::Store { url: redact_url(&store_url), source })?,
        );
        check_master_key(store.as_ref(), &cipher).await?;
        let admin_token = match &config.admin_token {
            Some(t) => AdminToken::configured(token_hash(t.expose())),
            None => AdminToken::stored(admin_token(store.as_ref(), &mut startup).await?),
        };
        startup.signing_key_created = crate::token::ensure(store.as_ref(), &cipher, clock.now()).await?;
        let http = crate::outbound::client(Duration::from_secs(config.outbound.timeout_seconds)).map_err(|e| StartupError::Http(e.to_string()))?;
        let registry = Registry::new(store.clone(), cipher.clone(), config.public_base(), http.clone(), clock.clone()).with_config_file(config.file.as_deref());
        let directory = Directory::new(store.clone(), clock.clone()).with_config_file(config.file.as_deref());
        let (ephemeral, sessions) = state_backends(&config, &clock, &cipher)?;
        // Every session that ends, whoever ends it, is told to the apps (back-channel logout).
        let backchannel = crate::op::backchannel::Outbox::new(crate::op::backchannel::QUEUE_MAX);
        let sessions = crate::op::backchannel::Watched::wrap(sessions, backchannel.clone(), clock.clone());
        let jwks = crate::upstream::jwks::JwksCache::new(http.clone(), clock.clone(), (config.login.jwks_min_refetch_seconds * 1000) as i64);
        let limits = crate::limit::Limiter::new(&config);
        Ok((
            App {
                started_at: clock.now(),
                config,
                store,
                registry,
                directory,
                cipher,
                clock,
                admin_token,
                ephemeral,
                sessions,
                jwks,
                http,
                ingress: Default::default(),
                limits,
                metrics: crate::metrics::Metrics::new(),
                recorder: Default::default(),
                backchannel,
            },
            startup,
        ))
    }
}

/// Flow state and sessions: in this process, or in Redis (`state.url`) for several
/// replicas, sealed with the master key. Redis is connected lazily: a gateway started
/// while Redis is down serves, fails closed (503) and is not ready until Redis answers.
fn state_backends(config: &Config, clock: &Clock, cipher: &Cipher) -> Result<crate::state::Backends, StartupError> {
    let Some(url) = &config.state.url else {
        let bounds = crate::state::memory::Bounds {
            max_entries: config.state.memory_max_entries,
            max_bytes: config.state.memory_max_bytes,
            flows_per_client: config.login.flows_per_client,
        };
        let ephemeral: Arc<dyn crate::state::Ephemeral> = Arc::new(crate::state::memory::MemoryEphemeral::with_bounds(clock.clone(), bounds));
        let sessions: Arc<dyn crate::state::Sessions> = Arc::new(crate::state::memory::MemorySessions::new());
        return Ok((ephemeral, sessions));
    };
    let backends = crate::state::redis::open(&config.state, url.expose(), clock, cipher, config.login.flows_per_client)
        .map_err(|source| StartupError::State { url: redact_url(url.expose()), source })?;
    tracing::info!(url = %redact_url(url.expose()), prefix = %config.state.prefix, cache_seconds = config.state.cache_seconds, "state in redis");
    Ok(backends)
}

async fn check_master_key(store: &dyn Store, cipher: &Cipher) -> Result<(), StartupError> {
    let check = match store.meta_get(KEY_CHECK).await? {
        Some(v) => v,
        None => {
            store.meta_put_if_absent(KEY_CHECK, &cipher.seal(KEY_CHECK, KEY_CHECK_PLAIN)).await?;
            // Another replica may have won the race with its key: read back what counts.
            store.meta_get(KEY_CHECK).await?.unwrap_or_default()
        }
    };
    match cipher.open(KEY_CHECK, &check) {
        Ok(p) if p == KEY_CHECK_PLAIN => Ok(()),
        _ => Err(StartupError::WrongMasterKey),
    }
}

async fn admin_token(store: &dyn Store, startup: &mut Startup) -> Result<[u8; 32], StartupError> {
    if let Some(h) = store.meta_get(ADMIN_TOKEN_HASH).await? {
        return decode_hash(&h);
    }
    let token = format!("sgt_{}", crate::id::token(32));
    let hash = token_hash(&token);
    if store.meta_put_if_absent(ADMIN_TOKEN_HASH, &hex::encode(hash)).await? {
        startup.admin_token_generated = Some(Secret::new(token));
        return Ok(hash);
    }
    let h = store.meta_get(ADMIN_TOKEN_HASH).await?.unwrap_or_default();
    decode_hash(&h)
}

fn decode_hash(h: &str) -> Result<[u8; 32], StartupError> {
    hex::decode(h).ok().and_then(|v| <[u8; 32]>::try_from(v).ok()).ok_or_else(|| StoreError::Corrupt("admin token hash".into()).into())
}

/// Replaces the stored admin token with a new one and returns it (shown once). Every
/// gateway on the store takes it within [`ADMIN_TOKEN_CACHE`]; the old one stops working
/// as fast.
pub async fn reset_admin_token(store: &dyn Store, now: i64, actor: &str) -> Result<Secret, StoreError> {
    let token = format!("sgt_{}", crate::id::token(32));
    store.meta_put(ADMIN_TOKEN_HASH, &hex::encode(token_hash(&token))).await?;
    store.audit_append(&crate::audit::AuditEntry::new(now, actor, "admin_token.reset", "admin_token", serde_json::json!({}))).await?;
    Ok(Secret::new(token))
}

/// How long a gateway trusts the stored admin token hash it last read: a rotation on
/// another replica (or by the CLI) takes effect here within this.
pub const ADMIN_TOKEN_CACHE: Duration = Duration::from_secs(1);

/// The admin token the API accepts. A configured one (`admin_token`,
/// `SSOGATE_ADMIN_TOKEN`) is fixed for the process's life; otherwise the hash in the
/// store is the one, read again once [`ADMIN_TOKEN_CACHE`] has passed, so a token
/// rotated on any replica or by the CLI is taken, and the old one refused, by every
/// replica within a second, without a restart.
#[derive(Debug)]
pub struct AdminToken {
    configured: Option<[u8; 32]>,
    /// The stored hash and when it was read.
    cached: std::sync::Mutex<([u8; 32], std::time::Instant)>,
}

impl AdminToken {
    /// A token from the configuration.
    pub fn configured(hash: [u8; 32]) -> Self {
        Self { configured: Some(hash), cached: std::sync::Mutex::new((hash, std::time::Instant::now())) }
    }

    /// The stored token, just read.
    pub fn stored(hash: [u8; 32]) -> Self {
        Self { configured: None, cached: std::sync::Mutex::new((hash, std::time::Instant::now())) }
    }

    /// Whether the token comes from the configuration (and so cannot be rotated here).
    pub fn is_configured(&self) -> bool {
        self.configured.is_some()
    }

    /// Whether `presented` is the admin token, compared as hashes in constant time
    /// (neither length nor content leaks through timing). Reads the store when the
    /// cached hash is older than [`ADMIN_TOKEN_CACHE`].
    pub async fn accepts(&self, store: &dyn Store, presented: &str) -> Result<bool, StoreError> {
        use subtle::ConstantTimeEq;
        let current = match self.configured {
            Some(h) => h,
            None => self.current(store).await?,
        };
        Ok(bool::from(token_hash(presented).ct_eq(&current)))
    }

    /// The current token's hash (the configured one, or the stored one as last read).
    pub async fn current(&self, store: &dyn Store) -> Result<[u8; 32], StoreError> {
        if let Some(h) = self.configured {
            return Ok(h);
        }
        if let Ok(c) = self.cached.lock() {
            if c.1.elapsed() < ADMIN_TOKEN_CACHE {
                return Ok(c.0);
            }
        }
        let hash = match store.meta_get(ADMIN_TOKEN_HASH).await? {
            Some(h) => decode_hash(&h).map_err(|_| StoreError::Corrupt("admin token hash".into()))?,
            None => return Err(StoreError::Corrupt("the admin token hash is missing".into())),
        };
        if let Ok(mut c) = self.cached.lock() {
            *c = (hash, std::time::Instant::now());
        }
        Ok(hash)
    }

    /// Takes a new stored hash at once (a rotation made through this gateway).
    pub fn replaced(&self, hash: [u8; 32]) {
        if let Ok(mut c) = self.cached.lock() {
            *c = (hash, std::time::Instant::now());
        }
    }
}
