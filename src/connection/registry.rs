//! The registry: the one place connections are created, changed and removed. It applies
//! presets and patches, fetches discovery documents and metadata, generates SP key
//! pairs, validates, seals secrets, and writes each change with its audit entry.

use std::sync::Arc;

use serde_json::json;

use super::input::{set, set_opt, validate};
use super::*;
use crate::audit::AuditEntry;
use crate::clock::Clock;
use crate::secret::{Cipher, CipherError};
use crate::store::{ConnectionSort, Store, StoreError, StoredConnection};

/// Largest IdP metadata fetched by URL.
const METADATA_MAX: usize = metadata::MAX_BYTES;

/// Why a connection operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    /// No connection with that id.
    #[error("connection {0} not found")]
    NotFound(String),
    /// Fields are missing or wrong; every one is listed.
    #[error("the connection is not valid")]
    Invalid(Vec<FieldError>),
    /// The display name (or id) is taken.
    #[error("{0}")]
    Conflict(String),
    /// Someone else changed it first.
    #[error("the connection was changed by someone else (now at version {current}); reload and apply your change again")]
    Stale {
        /// The version now stored.
        current: i64,
    },
    /// The store failed.
    #[error(transparent)]
    Store(StoreError),
    /// A stored secret did not decrypt.
    #[error(transparent)]
    Cipher(#[from] CipherError),
    /// Key generation failed.
    #[error("could not generate a key pair")]
    Crypto(#[from] openssl::error::ErrorStack),
    /// The configuration file declares it: only the file changes it (the sentence says so).
    #[error("{0}")]
    Managed(String),
}

/// What [`Registry::declare`] did.
#[derive(Debug)]
pub enum Declaration {
    /// The connection was made.
    Created(Connection),
    /// The stored one was changed to what the file says (or taken over from the API).
    Updated {
        /// The connection now.
        connection: Connection,
        /// Whether it was on before (turned off now: its sessions must end).
        was_active: bool,
        /// Whether who may sign in changed ([`Connection::admission`]): its sessions must end.
        admission_changed: bool,
    },
    /// It already was what the file says.
    Unchanged,
}

impl From<StoreError> for ConnectionError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => ConnectionError::NotFound(what.trim_start_matches("connection ").to_string()),
            StoreError::Conflict(m) => ConnectionError::Conflict(m),
            StoreError::Stale { current } => ConnectionError::Stale { current },
            other => ConnectionError::Store(other),
        }
    }
}

fn invalid(field: &str, message: impl Into<String>) -> ConnectionError {
    ConnectionError::Invalid(vec![FieldError::new(field, message)])
}

/// How long the login paths may use a connection read from the store before reading it
/// again: changes made elsewhere (another replica, the CLI) take effect within this.
const CACHE_MS: i64 = 2_000;

/// Connections read for the login paths: id to (when read, the connection).
type Cache = std::sync::RwLock<std::collections::HashMap<String, (i64, Arc<Connection>)>>;

/// Creates, changes and removes connections.
#[derive(Debug, Clone)]
pub struct Registry {
    store: Arc<dyn Store>,
    cipher: Cipher,
    public_base: String,
    http: reqwest::Client,
    clock: Clock,
    cache: Arc<Cache>,
    /// The configuration file, named in refusals to change what it declares.
    config_file: Option<Arc<std::path::Path>>,
}

impl Registry {
    /// A registry over `store`, sealing secrets with `cipher`.
    pub fn new(store: Arc<dyn Store>, cipher: Cipher, public_base: String, http: reqwest::Client, clock: Clock) -> Self {
        Self { store, cipher, public_base, http, clock, cache: Arc::default(), config_file: None }
    }

    /// This registry, naming `file` when it refuses to change what the file declares.
    pub fn with_config_file(mut self, file: Option<&std::path::Path>) -> Self {
        self.config_file = file.map(Arc::from);
        self
    }

    /// Refuses a change to a connection the configuration file declares, unless the
    /// reconciler or the gateway itself (`system:...`, such as the metadata refresh) makes it.
    fn editable(&self, c: &Connection, actor: &str) -> Result<(), ConnectionError> {
        let system = actor == crate::declare::ACTOR || actor.starts_with("system:");
        if c.managed_by.as_deref() == Some(crate::declare::MANAGED_BY) && !system {
            return Err(ConnectionError::Managed(crate::declare::read_only("connection", &c.id, self.config_file.as_deref())));
        }
        Ok(())
    }

    /// Makes the stored connection exactly what `patch` declares: the provider's preset
    /// with the patch over it (as a create), validated, with the file's id, marked
    /// `managed_by: "config"`. A stored connection with that id is changed to it (one made
    /// through the API is taken over); the SP key pair the gateway made for it is kept
    /// unless the file gives one. Nothing is written when nothing differs.
    pub async fn declare(&self, patch: &ConnectionPatch) -> Result<Declaration, ConnectionError> {
        let Some(id) = patch.id.clone() else {
            return Err(invalid("id", "is required for a connection declared in the configuration"));
        };
        let stored = match self.get(&id).await {
            Ok(c) => Some(c),
            Err(ConnectionError::NotFound(_)) => None,
            Err(e) => return Err(e),
        };
        let mut fresh = self.new_connection(patch).await?;
        fresh.managed_by = Some(crate::declare::MANAGED_BY.into());
        let now = self.clock.now();
        let Some(stored) = stored else {
            let audit = AuditEntry::new(
                now,
                crate::declare::ACTOR,
                "connection.create",
                &id,
                json!({"display_name": fresh.display_name, "protocol": fresh.protocol(), "provider": fresh.provider, "managed_by": crate::declare::MANAGED_BY}),
            );
            self.store.connection_insert(&self.encode(&fresh), &audit).await.map_err(|e| match e {
                StoreError::Conflict(m) if !m.contains("display_name") => ConnectionError::Conflict(format!("id: {id} is taken")),
                other => other.into(),
            })?;
            return Ok(Declaration::Created(fresh));
        };
        if let (Upstream::Saml(f), Upstream::Saml(s)) = (&mut fresh.settings.upstream, &stored.settings.upstream) {
            let given = patch.saml.as_ref().is_some_and(|p| p.sp_certificate.is_some());
            if !given && f.sign_requests && s.sp_certificate.is_some() && stored.secrets.sp_private_key.is_some() {
                f.sp_certificate.clone_from(&s.sp_certificate);
                fresh.secrets.sp_private_key.clone_from(&stored.secrets.sp_private_key);
            }
        }
        // The same for the private_key_jwt key pair: a new one at every reconcile would
        // break the IdP's copy of our public key.
        if let (Upstream::Oidc(f), Upstream::Oidc(s)) = (&mut fresh.settings.upstream, &stored.settings.upstream) {
            if f.token_endpoint_auth_method == ClientAuth::PrivateKeyJwt && s.client_jwk.is_some() && stored.secrets.client_private_key.is_some() {
                f.client_jwk.clone_from(&s.client_jwk);
                fresh.secrets.client_private_key.clone_from(&stored.secrets.client_private_key);
            }
        }
        let same = fresh.display_name == stored.display_name
            && fresh.provider == stored.provider
            && fresh.active == stored.active
            && fresh.settings == stored.settings
            && fresh.secrets == stored.secrets
            && fresh.managed_by == stored.managed_by;
        if same {
            return Ok(Declaration::Unchanged);
        }
        let mut fields = vec![];
        for (name, differs) in [
            ("display_name", fresh.display_name != stored.display_name),
            ("provider", fresh.provider != stored.provider),
            ("active", fresh.active != stored.active),
            ("settings", fresh.settings != stored.settings),
            ("secrets", fresh.secrets != stored.secrets),
            ("managed_by", fresh.managed_by != stored.managed_by),
        ] {
            if differs {
                fields.push(name);
            }
        }
        fresh.created_at = stored.created_at;
        fresh.version = stored.version + 1;
        fresh.updated_at = now.max(stored.updated_at + 1);
        let audit = AuditEntry::new(
            fresh.updated_at,
            crate::declare::ACTOR,
            "connection.update",
            &id,
            json!({"fields": fields, "managed_by": crate::declare::MANAGED_BY}),
        );
        self.store.connection_update(&self.encode(&fresh), stored.version, &audit).await?;
        self.forget(&id);
        let admission_changed = fresh.admission() != stored.admission();
        Ok(Declaration::Updated { connection: fresh, was_active: stored.active, admission_changed })
    }

    /// A connection the configuration file no longer declares: turned off and handed to
    /// the API (`managed_by` cleared), its links and granted memberships kept.
    pub async fn release(&self, id: &str) -> Result<Connection, ConnectionError> {
        let mut c = self.get(id).await?;
        let read_version = c.version;
        c.managed_by = None;
        c.active = false;
        c.version = read_version + 1;
        c.updated_at = self.clock.now().max(c.updated_at + 1);
        let audit =
            AuditEntry::new(c.updated_at, crate::declare::ACTOR, "connection.update", id, json!({"fields": ["active", "managed_by"], "released": true}));
        self.store.connection_update(&self.encode(&c), read_version, &audit).await?;
        self.forget(id);
        Ok(c)
    }

    /// A connection for the login paths: from memory when read in the last two seconds
    /// (every change made through this registry drops it at once).
    pub async fn get_cached(&self, id: &str) -> Result<Arc<Connection>, ConnectionError> {
        let now = self.clock.now();
        if let Some((at, c)) = self.cache.read().ok().and_then(|m| m.get(id).cloned()) {
            if now - at < CACHE_MS {
                return Ok(c);
            }
        }
        let c = Arc::new(self.get(id).await?);
        if let Ok(mut m) = self.cache.write() {
            if m.len() > 10_000 {
                m.clear();
            }
            m.insert(id.to_string(), (now, c.clone()));
        }
        Ok(c)
    }

    fn forget(&self, id: &str) {
        if let Ok(mut m) = self.cache.write() {
            m.remove(id);
        }
    }

    /// The gateway's public URL, without a trailing slash.
    pub fn public_base(&self) -> &str {
        &self.public_base
    }

    fn secrets_context(id: &str) -> String {
        format!("connection:{id}:secrets")
    }

    /// Opens a stored connection.
    pub fn decode(&self, s: StoredConnection) -> Result<Connection, ConnectionError> {
        let settings: Settings = serde_json::from_str(&s.settings).map_err(|e| StoreError::Corrupt(format!("connection {}: {e}", s.id)))?;
        if settings.upstream.protocol().as_str() != s.protocol {
            return Err(StoreError::Corrupt(format!("connection {}: protocol {:?} but {} settings", s.id, s.protocol, settings.upstream.protocol())).into());
        }
        let secrets = match &s.secrets {
            None => Secrets::default(),
            Some(sealed) => {
                let plain = self.cipher.open(&Self::secrets_context(&s.id), sealed)?;
                serde_json::from_slice(&plain).map_err(|_| CipherError::Format)?
            }
        };
        Ok(Connection {
            id: s.id,
            display_name: s.display_name,
            provider: s.provider,
            active: s.active,
            settings,
            secrets,
            created_at: s.created_at,
            updated_at: s.updated_at,
            version: s.version,
            managed_by: s.managed_by,
        })
    }

    fn encode(&self, c: &Connection) -> StoredConnection {
        let secrets = (c.secrets != Secrets::default()).then(|| {
            let plain = serde_json::to_vec(&c.secrets).unwrap_or_default();
            self.cipher.seal(&Self::secrets_context(&c.id), &plain)
        });
        StoredConnection {
            id: c.id.clone(),
            display_name: c.display_name.trim().to_string(),
            protocol: c.protocol().as_str().into(),
            provider: c.provider.clone(),
            active: c.active,
            settings: serde_json::to_string(&c.settings).unwrap_or_default(),
            secrets,
            created_at: c.created_at,
            updated_at: c.updated_at,
            version: c.version,
            managed_by: c.managed_by.clone(),
        }
    }

    /// Every connection, sorted.
    pub async fn list(&self, sort: ConnectionSort, descending: bool) -> Result<Vec<Connection>, ConnectionError> {
        let stored = self.store.connection_list(sort, descending).await?;
        stored.into_iter().map(|s| self.decode(s)).collect()
    }

    /// One connection.
    pub async fn get(&self, id: &str) -> Result<Connection, ConnectionError> {
        match self.store.connection_get(id).await? {
            Some(s) => self.decode(s),
            None => Err(ConnectionError::NotFound(id.into())),
        }
    }

    /// Creates a connection from its provider's preset and the admin's values.
    pub async fn create(&self, patch: &ConnectionPatch, actor: &str) -> Result<Connection, ConnectionError> {
        let c = self.new_connection(patch).await?;
        let stored = self.encode(&c);
        let audit = AuditEntry::new(
            c.created_at,
            actor,
            "connection.create",
            &c.id,
            json!({"display_name": c.display_name, "protocol": c.protocol(), "provider": c.provider, "fields": changed_fields(patch)}),
        );
        self.store.connection_insert(&stored, &audit).await.map_err(|e| match e {
            StoreError::Conflict(m) if !m.contains("display_name") => ConnectionError::Conflict(format!("id: {} is taken", c.id)),
            other => other.into(),
        })?;
        Ok(c)
    }

    /// The connection `patch` would make (or, with the id of a stored one, what the
    /// stored one would become), validated, fetching what must be fetched, and stored
    /// nowhere: what the Test Provider dry run tries before the admin saves.
    pub async fn draft(&self, patch: &ConnectionPatch) -> Result<Connection, ConnectionError> {
        let stored = match &patch.id {
            Some(id) => match self.get(id).await {
                Ok(c) => Some(c),
                Err(ConnectionError::NotFound(_)) => None,
                Err(e) => return Err(e),
            },
            None => None,
        };
        match stored {
            Some(mut c) => {
                let mut p = patch.clone();
                p.version = None;
                self.changed(&mut c, &p).await?;
                Ok(c)
            }
            None => self.new_connection(patch).await,
        }
    }

    async fn new_connection(&self, patch: &ConnectionPatch) -> Result<Connection, ConnectionError> {
        let protocol = patch.protocol.ok_or_else(|| invalid("protocol", "is required: oidc or saml"))?;
        let provider = patch.provider.clone().unwrap_or_else(|| "custom".into());
        let preset = preset::find(protocol, &provider).ok_or_else(|| {
            let known: Vec<_> = preset::all().iter().filter(|p| p.protocol() == protocol).map(|p| p.provider.as_str()).collect();
            invalid("provider", format!("{provider:?} is not a {protocol} provider; choose from {}", known.join(", ")))
        })?;
        if patch.version.is_some() {
            return Err(invalid("version", "is only for updates"));
        }
        let id = match &patch.id {
            Some(id) if crate::id::is_wellformed(id) => id.clone(),
            Some(_) => return Err(invalid("id", "may hold only letters, digits, '-' and '_' (at most 64)")),
            None => crate::id::new("con"),
        };
        let now = self.clock.now();
        let mut c = Connection {
            id,
            display_name: String::new(),
            provider,
            active: true,
            settings: preset.settings(),
            secrets: Secrets::default(),
            created_at: now,
            updated_at: now,
            version: 1,
            managed_by: None,
        };
        if patch.display_name.is_none() {
            return Err(invalid("display_name", "is required"));
        }
        self.apply(&mut c, patch, preset, true).await?;
        Ok(c)
    }

    /// Changes a connection. `if_match` (or `patch.version`) must be the stored version
    /// when given; the write is refused if someone else changed it meanwhile.
    pub async fn update(&self, id: &str, patch: &ConnectionPatch, if_match: Option<i64>, actor: &str) -> Result<Connection, ConnectionError> {
        self.update_admission(id, patch, if_match, actor).await.map(|(c, _)| c)
    }

    /// [`update`](Self::update), also telling whether who may sign in changed
    /// ([`Connection::admission`]): then the connection's live sessions must end.
    pub async fn update_admission(&self, id: &str, patch: &ConnectionPatch, if_match: Option<i64>, actor: &str) -> Result<(Connection, bool), ConnectionError> {
        let mut c = self.get(id).await?;
        let admitted = c.admission();
        self.editable(&c, actor)?;
        let expected = match (if_match, patch.version) {
            (Some(a), Some(b)) if a != b => return Err(invalid("version", "differs from the If-Match header")),
            (a, b) => a.or(b),
        };
        if let Some(v) = expected {
            if v != c.version {
                return Err(ConnectionError::Stale { current: c.version });
            }
        }
        let read_version = c.version;
        self.changed(&mut c, patch).await?;
        c.version = read_version + 1;
        c.updated_at = self.clock.now().max(c.updated_at + 1);
        let audit = AuditEntry::new(c.updated_at, actor, "connection.update", &c.id, json!({"fields": changed_fields(patch)}));
        self.store.connection_update(&self.encode(&c), read_version, &audit).await?;
        self.forget(id);
        let changed = c.admission() != admitted;
        Ok((c, changed))
    }

    /// `c` with `patch` applied and validated.
    async fn changed(&self, c: &mut Connection, patch: &ConnectionPatch) -> Result<(), ConnectionError> {
        if patch.protocol.is_some_and(|p| p != c.protocol()) {
            return Err(invalid("protocol", "cannot change; create a new connection instead"));
        }
        if patch.id.as_ref().is_some_and(|i| *i != c.id) {
            return Err(invalid("id", "cannot change"));
        }
        let provider = patch.provider.clone().unwrap_or_else(|| c.provider.clone());
        let preset = preset::find(c.protocol(), &provider).ok_or_else(|| invalid("provider", format!("{provider:?} is not a {} provider", c.protocol())))?;
        c.provider = provider;
        self.apply(c, patch, preset, false).await
    }

    /// Fetches and parses IdP metadata; the error is a sentence for the admin.
    async fn fetch_metadata(&self, url: &str) -> Result<IdpMetadata, String> {
        let body = crate::outbound::get_bytes(&self.http, url, METADATA_MAX).await.map_err(|e| format!("could not fetch the metadata: {e}"))?;
        std::str::from_utf8(&body).map_err(|_| "is not UTF-8".to_string()).and_then(metadata::parse).map_err(|e| format!("the metadata there {e}"))
    }

    /// Reads again the metadata of every SAML connection that has a metadata URL, and
    /// saves what changed (certificates rolled over, a new SSO URL). Metadata that cannot
    /// be fetched or has no signing certificate leaves the connection as it is, and so
    /// does a concurrent change (the update is conditional on the version read). Returns
    /// (connection id, whether it changed or why not) for each connection looked at.
    pub async fn refresh_saml_metadata(&self) -> Vec<(String, Result<bool, String>)> {
        let list = match self.list(ConnectionSort::Name, false).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "metadata refresh: could not list connections");
                return vec![];
            }
        };
        let mut out = vec![];
        for c in list {
            let Some(url) = c.settings.upstream.saml().and_then(|s| s.idp_metadata_url.clone()) else { continue };
            let result = match self.fetch_metadata(&url).await {
                Ok(m) if c.settings.upstream.saml().is_some_and(|s| s.idp == m) => Ok(false),
                Ok(m) => {
                    let patch = ConnectionPatch { saml: Some(SamlPatch { idp: Some(m), ..Default::default() }), ..Default::default() };
                    self.update(&c.id, &patch, Some(c.version), "system:metadata-refresh").await.map(|_| true).map_err(|e| e.to_string())
                }
                Err(e) => Err(e),
            };
            match &result {
                Ok(true) => tracing::info!(connection = %c.id, "IdP metadata changed; connection updated"),
                Ok(false) => tracing::debug!(connection = %c.id, "IdP metadata unchanged"),
                Err(e) => tracing::warn!(connection = %c.id, error = %e, "IdP metadata refresh failed; the connection keeps its current metadata"),
            }
            out.push((c.id, result));
        }
        out
    }

    /// Turns a connection on or off.
    pub async fn set_active(&self, id: &str, active: bool, actor: &str) -> Result<Connection, ConnectionError> {
        let patch = ConnectionPatch { active: Some(active), ..Default::default() };
        self.update(id, &patch, None, actor).await
    }

    /// Removes a connection, its links and the memberships it granted.
    pub async fn delete(&self, id: &str, actor: &str) -> Result<(), ConnectionError> {
        let c = self.get(id).await?;
        self.editable(&c, actor)?;
        let audit = AuditEntry::new(self.clock.now(), actor, "connection.delete", id, json!({"display_name": c.display_name}));
        self.store.connection_delete(id, &audit).await?;
        self.forget(id);
        Ok(())
    }

    /// Generates a new SP key pair for a SAML connection (replacing any other).
    pub async fn generate_sp_keypair(&self, id: &str, actor: &str) -> Result<Connection, ConnectionError> {
        let mut c = self.get(id).await?;
        self.editable(&c, actor)?;
        let read_version = c.version;
        let cn = sp_common_name(&c, &self.public_base);
        let Upstream::Saml(saml) = &mut c.settings.upstream else {
            return Err(invalid("protocol", "only SAML connections have an SP key pair"));
        };
        let (cert, key) = keypair::generate(&cn)?;
        saml.sp_certificate = Some(cert);
        c.secrets.sp_private_key = Some(key);
        c.version = read_version + 1;
        c.updated_at = self.clock.now().max(c.updated_at + 1);
        let audit = AuditEntry::new(c.updated_at, actor, "connection.sp_keypair.generate", &c.id, json!({}));
        self.store.connection_update(&self.encode(&c), read_version, &audit).await?;
        self.forget(id);
        Ok(c)
    }

    /// Fetches the discovery document for an issuer, or for a preset's pattern.
    pub async fn discover(&self, issuer: &str, discovery_url: Option<&str>) -> Result<discovery::Discovered, ConnectionError> {
        let mut errors = Vec::new();
        input::check_url(&mut errors, "issuer", issuer);
        if !errors.is_empty() {
            return Err(ConnectionError::Invalid(errors));
        }
        let url = discovery_url.map(str::to_string).unwrap_or_else(|| discovery::default_url(issuer));
        discovery::fetch(&self.http, &url, issuer).await.map_err(|e| invalid("oidc.issuer", format!("discovery failed: {e}")))
    }

    /// Applies a patch over `c` (preset values on create, stored values on update),
    /// fetching what must be fetched, then validates the result.
    async fn apply(&self, c: &mut Connection, p: &ConnectionPatch, preset: &preset::Preset, creating: bool) -> Result<(), ConnectionError> {
        let mut errors = Vec::new();
        if let Some(name) = &p.display_name {
            c.display_name = name.trim().to_string();
        }
        set(&mut c.active, &p.active);
        set_opt(&mut c.settings.webapp_url, &p.webapp_url);
        set(&mut c.settings.create_users, &p.create_users);
        set(&mut c.settings.group_sync, &p.group_sync);
        set(&mut c.settings.allow, &p.allow);
        set(&mut c.settings.group_mapping, &p.group_mapping);
        if let Some(claims) = &p.claims {
            claims.apply(&mut c.settings.claims);
        }
        let placeholders = p.placeholders.clone().unwrap_or_default();
        if let Some(other) = p.other_protocol_section(c.protocol()) {
            errors.push(FieldError::new(other, format!("this is an {} connection", c.protocol().as_str().to_uppercase())));
        }
        let cn = sp_common_name(c, &self.public_base);
        let sp_metadata_url = c.sp_metadata_url(&self.public_base);
        match &mut c.settings.upstream {
            Upstream::Oidc(o) => {
                let op = p.oidc.clone().unwrap_or_default();
                op.apply(o, &mut c.secrets);
                let preset_oidc = preset.oidc();
                let refill = creating || p.placeholders.is_some();
                if op.issuer.is_none() && refill {
                    if let Some(pattern) = preset_oidc.and_then(|x| x.issuer.as_deref()) {
                        match preset.fill(pattern, &placeholders, None) {
                            Ok(iss) => o.issuer = iss,
                            Err(e) => errors.extend(e),
                        }
                    }
                }
                let endpoints_missing = o.authorization_endpoint.is_empty() || o.token_endpoint.is_empty();
                let wants = p.discover.unwrap_or(creating && endpoints_missing);
                if wants && errors.is_empty() {
                    if o.issuer.is_empty() {
                        errors.push(FieldError::new("oidc.issuer", "is required to discover the endpoints"));
                    } else {
                        let pattern = preset_oidc.and_then(|x| x.discovery_url.as_deref());
                        let url = match pattern {
                            Some(pat) => preset.fill(pat, &placeholders, Some(&o.issuer)).ok(),
                            None => None,
                        };
                        match self.discover(&o.issuer, url.as_deref()).await {
                            Ok(d) => d.fill(o, &op),
                            Err(ConnectionError::Invalid(e)) => errors.extend(e),
                            Err(other) => return Err(other),
                        }
                    }
                }
                // private_key_jwt: the gateway makes the key pair; the IdP fetches the public
                // key from the connection's JWKS URL.
                if o.token_endpoint_auth_method == ClientAuth::PrivateKeyJwt && (o.client_jwk.is_none() || c.secrets.client_private_key.is_none()) {
                    let (_, pem, jwk) = crate::token::make(crate::token::Alg::Rs256)?;
                    o.client_jwk = Some(jwk);
                    c.secrets.client_private_key = Some(pem);
                }
            }
            Upstream::Saml(s) => {
                let sp = p.saml.clone().unwrap_or_default();
                set(&mut s.entity_id, &sp.entity_id.as_ref().map(|e| e.trim().to_string()));
                if s.entity_id.is_empty() {
                    s.entity_id = sp_metadata_url;
                }
                set(&mut s.require_signed_assertions, &sp.require_signed_assertions);
                set(&mut s.sign_requests, &sp.sign_requests);
                set(&mut s.allow_idp_initiated, &sp.allow_idp_initiated);
                set(&mut s.allow_sha1, &sp.allow_sha1);
                if sp.allow_sha1 == Some(true) {
                    tracing::warn!(connection = %c.id, "SHA-1 signatures are allowed for this SAML connection (allow_sha1): switch the IdP to SHA-256 and turn it off");
                }
                set_opt(&mut s.name_id_format, &sp.name_id_format);
                set_opt(&mut s.idp_metadata_url, &sp.idp_metadata_url);
                if creating && s.idp_metadata_url.is_none() && sp.idp_metadata_xml.is_none() && sp.idp.is_none() && !placeholders.is_empty() {
                    if let Some(pattern) = preset.saml().and_then(|x| x.metadata_url.as_deref()) {
                        match preset.fill(pattern, &placeholders, None) {
                            Ok(u) => s.idp_metadata_url = Some(u),
                            Err(e) => errors.extend(e),
                        }
                    }
                }
                if let Some(xml) = &sp.idp_metadata_xml {
                    match metadata::parse(xml) {
                        Ok(m) => s.idp = m,
                        Err(e) => errors.push(FieldError::new("saml.idp_metadata_xml", e)),
                    }
                } else if let Some(idp) = &sp.idp {
                    match reread(idp) {
                        Ok(m) => s.idp = m,
                        Err(e) => errors.push(FieldError::new("saml.idp", e)),
                    }
                } else if let (Some(url), true) = (&s.idp_metadata_url, sp.idp_metadata_url.is_some() || creating) {
                    let mut url_errors = Vec::new();
                    input::check_url(&mut url_errors, "saml.idp_metadata_url", url);
                    if url_errors.is_empty() {
                        match self.fetch_metadata(url).await {
                            Ok(m) => s.idp = m,
                            Err(e) => errors.push(FieldError::new("saml.idp_metadata_url", e)),
                        }
                    } else {
                        errors.extend(url_errors);
                    }
                }
                match (&sp.sp_certificate, &sp.sp_private_key) {
                    (Some(cert), Some(key)) => match keypair::check_pair(cert, key) {
                        Ok(()) => {
                            s.sp_certificate = Some(cert.trim().to_string() + "\n");
                            c.secrets.sp_private_key = Some(key.trim().to_string() + "\n");
                        }
                        Err(e) => errors.push(FieldError::new("saml.sp_private_key", e)),
                    },
                    (None, None) => {}
                    _ => errors.push(FieldError::new("saml.sp_private_key", "sp_certificate and sp_private_key go together")),
                }
                // "The gateway can generate the pair instead of the admin running openssl."
                if s.sign_requests && (s.sp_certificate.is_none() || c.secrets.sp_private_key.is_none()) && errors.is_empty() {
                    let (cert, key) = keypair::generate(&cn)?;
                    s.sp_certificate = Some(cert);
                    c.secrets.sp_private_key = Some(key);
                }
            }
        }
        if errors.is_empty() {
            errors = validate(c);
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConnectionError::Invalid(errors))
        }
    }
}

/// Re-reads certificates of an already parsed IdP (import), so their details are ours.
fn reread(idp: &IdpMetadata) -> Result<IdpMetadata, String> {
    let mut out = idp.clone();
    out.certificates = idp
        .certificates
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let x = openssl::x509::X509::from_pem(c.pem.as_bytes()).map_err(|_| "certificates[].pem is not a PEM certificate".to_string())?;
            metadata::pinned(&x, i + 1)
        })
        .collect::<Result<_, _>>()?;
    if out.certificates.is_empty() {
        return Err("has no signing certificate".into());
    }
    Ok(out)
}

fn sp_common_name(c: &Connection, public_base: &str) -> String {
    url::Url::parse(&c.webapp_base(public_base)).ok().and_then(|u| u.host_str().map(|h| format!("ssogate SP {h}"))).unwrap_or_else(|| "ssogate SP".into())
}

/// The names of the fields a patch sets (for the audit log: names, never values).
pub fn changed_fields(p: &ConnectionPatch) -> Vec<String> {
    fn walk(prefix: &str, v: &serde_json::Value, out: &mut Vec<String>) {
        if let serde_json::Value::Object(map) = v {
            for (k, v) in map {
                if v.is_null() {
                    continue;
                }
                let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                match v {
                    serde_json::Value::Object(_) if k != "placeholders" && k != "idp" => walk(&path, v, out),
                    _ => out.push(path),
                }
            }
        }
    }
    let mut out = Vec::new();
    walk("", &serde_json::to_value(p).unwrap_or_default(), &mut out);
    out
}

/// A connection as exported: the patch that recreates it. Secrets only when asked.
pub fn export(c: &Connection, include_secrets: bool) -> ConnectionPatch {
    let (mut oidc, mut saml) = (None, None);
    match &c.settings.upstream {
        Upstream::Oidc(o) => {
            oidc = Some(OidcPatch {
                issuer: Some(o.issuer.clone()),
                client_id: Some(o.client_id.clone()),
                client_secret: if include_secrets { c.secrets.client_secret.clone() } else { None },
                authorization_endpoint: Some(o.authorization_endpoint.clone()),
                token_endpoint: Some(o.token_endpoint.clone()),
                revocation_endpoint: o.revocation_endpoint.clone(),
                userinfo_endpoint: o.userinfo_endpoint.clone(),
                jwks_uri: o.jwks_uri.clone(),
                userinfo_from_id_token: Some(o.userinfo_from_id_token),
                email_verification: Some(o.email_verification),
                verify_signature: Some(o.verify_signature),
                code_challenge_method: Some(o.code_challenge_method),
                token_endpoint_auth_method: Some(o.token_endpoint_auth_method),
                scopes: Some(input::ScopeList(o.scopes.clone())),
                additional_scopes: Some(input::ScopeList(o.additional_scopes.clone())),
                allowed_algorithms: Some(o.allowed_algorithms.clone()),
                authorization_response_iss_parameter_supported: Some(o.authorization_response_iss_parameter_supported),
                issuer_aliases: Some(o.issuer_aliases.clone()),
                allowed_tenants: Some(o.allowed_tenants.clone()),
                groups_endpoint: o.groups_endpoint.clone(),
            })
        }
        Upstream::Saml(s) => {
            let with_key = include_secrets && c.secrets.sp_private_key.is_some();
            saml = Some(SamlPatch {
                entity_id: Some(s.entity_id.clone()),
                idp_metadata_xml: None,
                idp_metadata_url: s.idp_metadata_url.clone(),
                idp: Some(s.idp.clone()),
                require_signed_assertions: Some(s.require_signed_assertions),
                // Without the key, an importer regenerates a pair when signing is on.
                sign_requests: Some(s.sign_requests),
                sp_certificate: if with_key { s.sp_certificate.clone() } else { None },
                sp_private_key: if with_key { c.secrets.sp_private_key.clone() } else { None },
                name_id_format: s.name_id_format.clone(),
                allow_idp_initiated: Some(s.allow_idp_initiated),
                allow_sha1: Some(s.allow_sha1),
            });
        }
    }
    let cl = &c.settings.claims;
    ConnectionPatch {
        id: Some(c.id.clone()),
        display_name: Some(c.display_name.clone()),
        protocol: Some(c.protocol()),
        provider: Some(c.provider.clone()),
        active: Some(c.active),
        version: None,
        webapp_url: c.settings.webapp_url.clone(),
        create_users: Some(c.settings.create_users),
        group_sync: Some(c.settings.group_sync),
        placeholders: None,
        discover: Some(false),
        claims: Some(input::ClaimsPatch {
            user_id: Some(cl.user_id.clone()),
            email: Some(cl.email.clone()),
            name: Some(cl.name.clone()),
            given_name: Some(cl.given_name.clone()),
            family_name: Some(cl.family_name.clone()),
            picture: Some(cl.picture.clone()),
            groups: Some(cl.groups.clone()),
        }),
        oidc,
        saml,
        allow: Some(c.settings.allow.clone()),
        group_mapping: Some(c.settings.group_mapping.clone()),
    }
}
