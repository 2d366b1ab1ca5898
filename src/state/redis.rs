//! State in Redis, shared by every replica: flow state, one-time codes, replay markers
//! and sessions, plus the invalidation feed that keeps each replica's session cache
//! honest (see [`super::cache`]).
//!
//! Layout under the configured prefix `P`. Keys are SHA-256 hex of what the gateway
//! looks them up by, and values are sealed with the master key (AES-256-GCM, bound to
//! their key): reading Redis yields no session id, state, code or token, and writing to
//! it cannot make a session or a code the gateway accepts.
//! - `P e:{hash}`: an ephemeral value, `{expiry ms}:{owner}:{sealed expiry and value}`,
//!   with a Redis TTL (the sealed expiry is the one that counts);
//! - `P f:{client hash}`: a client's queue of login flows (sorted by `P fs:{client
//!   hash}`, its sequence), bounding the flows one client holds (`login.flows_per_client`);
//! - `P s:{hash}`: a session, a hash of `d` (the session without its id, JSON, sealed),
//!   `m` (its last use, sealed), and `u` (user id), `c` (connection id), `l` (last
//!   use), `x` (absolute expiry), `i` (idle timeout) in the clear for the scripts, with
//!   a Redis TTL at whichever expiry comes first;
//! - `P u:{user id}`: the set of a user's session hashes, for "end every session" and
//!   for rewriting their groups when an admin changes them;
//! - `P c:{connection id}`: a sorted set of the session hashes of a connection, scored
//!   by absolute expiry (expired ones are pruned at each login), for "end every session
//!   of this connection";
//! - channel `P events`: `s:{hash}`, `u:{user id}` (revoked or rewritten) and
//!   `c:{connection id}` invalidations, `h:{replica}` heartbeats.
//!
//! The sealed values are the truth; what the scripts read in the clear (and the TTLs)
//! only lets Redis drop a session early. A Redis writer (without the master key) may
//! therefore end sessions, which it could anyway with DEL, but not keep one alive:
//! - expiry: a session read from Redis is live only by its sealed absolute expiry, idle
//!   timeout and last use (`m`, sealed by the gateway at each recorded use and bound to
//!   the session's key), so raising `x`, `i`, `l` or the TTL extends nothing. A replayed
//!   or deleted `m` can only be older: the session idles out sooner, never later;
//! - owner: a session is read only if it is in the index set of the user it was sealed
//!   for (`u` must equal the sealed user id, and the session must be a member of
//!   `P u:{u}`), so a session taken out of its user's index, or moved to another user's,
//!   is refused rather than missed by "end every session" (which deletes the index).
//!   Likewise a session whose `c` names a connection must be in that connection's
//!   index and agree with its sealed connection. A session without `c` (written before
//!   `c` existed) is still read, so one stripped of `c` escapes "end every session of
//!   this connection" (not "end every session" of its user): the same power as
//!   restoring a removed session, below.
//!
//! What this cannot stop: a writer who saved a session's fields earlier can put them
//! back after it was removed (Redis holds no history to tell a restored session from a
//! live one). Keeping that out needs a revocation record outside Redis.
//!
//! Every multi-step operation is one Lua script, so it is atomic on the server and
//! costs one round trip; a script rather than WATCH/MULTI because a WATCH loop would
//! retry under contention. Touch is the exception: the decision needs the sealed
//! values, which only the gateway opens, so it reads (one script), checks, and records
//! the use with a second script that writes only if nothing changed in between (at most
//! once per [`super::LAST_SEEN_STEP_MS`] per session, and only on a cache miss). Expiry is checked
//! against the gateway's clock (the stored expiry) as well as kept by Redis TTLs, so
//! the conformance suite can move time without sleeping.
//!
//! Supported: one Redis (or Valkey) server, `redis://` over TCP, `rediss://` over TLS
//! (rustls; the certificate is always verified, against `state.tls_ca_file` or the
//! system's trust store) or `redis+unix://`, with a password or ACL user, Redis >= 6.2
//! (GETDEL). Not supported yet: Sentinel and Cluster (the scripts touch keys they
//! compute, and the feed uses plain pub/sub); for failover, point `state.url` at an
//! address that always reaches the current primary.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Script};
use sha2::{Digest, Sha256};

use super::cache::{self, Cached, SessionCache, Tasks};
use super::{Ephemeral, Session, Sessions, StateError, StateResult, LAST_SEEN_STEP_MS};
use crate::clock::{Clock, Millis};
use crate::config::StateConfig;
use crate::secret::Cipher;

/// Stores `value` unless a value whose recorded expiry is still ahead is there.
const PUT_NEW: &str = r"
local v = redis.call('GET', KEYS[1])
if v then
  local exp = tonumber(string.match(v, '^(%d+):'))
  if exp and exp > tonumber(ARGV[1]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
";

/// [`PUT_NEW`] for a login's flow state, within its client's quota: the flow joins the
/// client's queue (`KEYS[2]`, a sorted set scored by a per-client sequence kept in
/// `KEYS[3]`), and past `ARGV[4]` flows the client's own oldest are deleted. A queue
/// member whose flow was taken or expired goes first, deleting nothing.
const PUT_FLOW: &str = r"
local v = redis.call('GET', KEYS[1])
if v then
  local exp = tonumber(string.match(v, '^(%d+):'))
  if exp and exp > tonumber(ARGV[1]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
local seq = redis.call('INCR', KEYS[3])
redis.call('PEXPIRE', KEYS[3], ARGV[3])
redis.call('ZADD', KEYS[2], seq, KEYS[1])
local over = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[4])
if over > 0 then
  local old = redis.call('ZPOPMIN', KEYS[2], over)
  for i = 1, #old, 2 do redis.call('DEL', old[i]) end
end
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return 1
";

/// Takes a value (GETDEL) and, for a flow, leaves its client's queue (`ARGV[1]` is the
/// queue keys' prefix), so a finished login frees its place.
const TAKE: &str = r"
local v = redis.call('GETDEL', KEYS[1])
if v then
  local owner = string.match(v, '^%d+:(%x+):')
  if owner then redis.call('ZREM', ARGV[1] .. owner, KEYS[1]) end
end
return v
";

/// Replaces a session and adds it to its user's set and its connection's sorted set
/// (whose TTLs only grow; the connection's drops members past their expiry).
const CREATE: &str = r"
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'd', ARGV[1], 'u', ARGV[2], 'l', ARGV[3], 'x', ARGV[4], 'i', ARGV[5], 'm', ARGV[9], 'c', ARGV[10])
redis.call('PEXPIRE', KEYS[1], ARGV[6])
redis.call('SADD', KEYS[2], ARGV[7])
if redis.call('PTTL', KEYS[2]) < tonumber(ARGV[8]) then redis.call('PEXPIRE', KEYS[2], ARGV[8]) end
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', ARGV[11])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[7])
if redis.call('PTTL', KEYS[3]) < tonumber(ARGV[8]) then redis.call('PEXPIRE', KEYS[3], ARGV[8]) end
return 1
";

/// Reads a session that is live by its fields in the clear and filed in the index of
/// the user `u` names; an expired one, or one missing from that index, is removed.
/// A session whose `c` names a connection must also be in that connection's index.
/// Returns {data, sealed last use or '', user id, connection id or ''} or nil. Writes
/// nothing else: the caller checks the sealed values (the fields read here may have
/// been altered) and only then records the use with RECORD.
const TOUCH: &str = r"
local v = redis.call('HMGET', KEYS[1], 'd', 'u', 'l', 'x', 'i', 'm', 'c')
if not v[1] then return false end
local now, last, exp, idle = tonumber(ARGV[1]), tonumber(v[3]), tonumber(v[4]), tonumber(v[5])
if now >= exp or now >= last + idle then
  redis.call('DEL', KEYS[1])
  redis.call('SREM', ARGV[2] .. 'u:' .. v[2], ARGV[3])
  if v[7] then redis.call('ZREM', ARGV[2] .. 'c:' .. v[7], ARGV[3]) end
  return false
end
if redis.call('SISMEMBER', ARGV[2] .. 'u:' .. v[2], ARGV[3]) == 0
  or (v[7] and not redis.call('ZSCORE', ARGV[2] .. 'c:' .. v[7], ARGV[3])) then
  redis.call('DEL', KEYS[1])
  return false
end
return {v[1], v[6] or '', v[2], v[7] or ''}
";

/// Records a use the gateway checked: last use `l` = ARGV[2] and `m` = ARGV[3] (the
/// same, sealed), TTL ARGV[4], if the session is still there with the sealed last use
/// ARGV[1] that was checked (else a concurrent use or a removal came first).
const RECORD: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 or (redis.call('HGET', KEYS[1], 'm') or '') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'l', ARGV[2], 'm', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
";

/// Removes a session and tells every replica. Returns {data, sealed last use or '',
/// user id} or nil.
const REMOVE: &str = r"
local v = redis.call('HMGET', KEYS[1], 'd', 'u', 'm', 'c')
if not v[1] then return false end
redis.call('DEL', KEYS[1])
redis.call('SREM', ARGV[1] .. 'u:' .. v[2], ARGV[2])
if v[4] then redis.call('ZREM', ARGV[1] .. 'c:' .. v[4], ARGV[2]) end
redis.call('PUBLISH', ARGV[3], 's:' .. ARGV[2])
return {v[1], v[3] or '', v[2]}
";

/// Removes every session of a user (checking each still belongs to them) and tells
/// every replica. Returns how many existed. A session kept out of the index (or with
/// another owner in `u`) is not found here, but is refused when read: see TOUCH.
const REMOVE_USER: &str = r"
local n = 0
for _, h in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local k = ARGV[1] .. 's:' .. h
  if redis.call('HGET', k, 'u') == ARGV[2] then
    redis.call('DEL', k)
    n = n + 1
  end
end
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[3], 'u:' .. ARGV[2])
return n
";

/// The sealed data of a connection's sessions (KEYS[1]: its index), each still naming
/// the connection: hash, data, hash, data...
const CONNECTION_SESSIONS: &str = r"
local out = {}
for _, h in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local v = redis.call('HMGET', ARGV[1] .. 's:' .. h, 'd', 'c')
  if v[1] and v[2] == ARGV[2] then
    table.insert(out, h)
    table.insert(out, v[1])
  end
end
return out
";

/// Removes one session of a user (KEYS[1]: its key, KEYS[2]: the user's index), checking
/// it is the user's, and tells every replica. Returns 1 when it existed.
const REMOVE_ONE: &str = r"
if redis.call('HGET', KEYS[1], 'u') ~= ARGV[1] then
  return 0
end
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[2])
redis.call('PUBLISH', ARGV[3], 'u:' .. ARGV[1])
return 1
";

/// Removes every session of a connection (checking each still names it) and tells
/// every replica. Returns how many existed.
const REMOVE_CONNECTION: &str = r"
local n = 0
for _, h in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local k = ARGV[1] .. 's:' .. h
  local v = redis.call('HMGET', k, 'c', 'u')
  if v[1] == ARGV[2] then
    redis.call('DEL', k)
    if v[2] then redis.call('SREM', ARGV[1] .. 'u:' .. v[2], h) end
    n = n + 1
  end
end
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[3], 'c:' .. ARGV[2])
return n
";

/// The sessions of a user, for SET_GROUPS: {hash, sealed data} pairs, flat, of those
/// in the user's index that still name the user.
const USER_SESSIONS: &str = r"
local out = {}
for _, h in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local v = redis.call('HMGET', ARGV[1] .. 's:' .. h, 'd', 'u')
  if v[1] and v[2] == ARGV[2] then
    table.insert(out, h)
    table.insert(out, v[1])
  end
end
return out
";

/// Replaces the sealed data of a user's sessions, each only if it is still the one
/// read (ARGV[4 + 3i]: hash, read data, new data), and tells every replica to forget
/// the user's sessions. Returns how many were replaced.
const SET_GROUPS: &str = r"
local n = 0
for i = 4, #ARGV, 3 do
  local k = ARGV[1] .. 's:' .. ARGV[i]
  local v = redis.call('HMGET', k, 'd', 'u')
  if v[1] == ARGV[i + 1] and v[2] == ARGV[2] then
    redis.call('HSET', k, 'd', ARGV[i + 2])
    n = n + 1
  end
end
redis.call('PUBLISH', ARGV[3], 'u:' .. ARGV[2])
return n
";

/// Users whose sessions [`RedisSessions::set_groups`] rewrites at once.
const SET_GROUPS_PARALLEL: usize = 16;

fn hash(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// What a sealed value is bound to: its kind and key, so it cannot be moved to another key.
fn context(kind: &str, h: &str) -> String {
    format!("ssogate state {kind}:{h}")
}

/// Opens a sealed value; one that does not open (altered in Redis) counts as absent.
fn unseal(cipher: &Cipher, kind: &str, h: &str, sealed: &str) -> Option<String> {
    match cipher.open(&context(kind, h), sealed).ok().and_then(|v| String::from_utf8(v).ok()) {
        Some(v) => Some(v),
        None => {
            tracing::warn!(kind, "a value in redis failed its integrity check and was ignored");
            None
        }
    }
}

/// A connection to Redis shared by the state backends: reconnects by itself, and no
/// call waits longer than the configured timeout.
#[derive(Clone)]
pub struct Redis {
    client: redis::Client,
    conn: ConnectionManager,
    prefix: String,
    timeout: Duration,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the URL: it may carry a password.
        f.debug_struct("Redis").field("prefix", &self.prefix).field("timeout", &self.timeout).finish_non_exhaustive()
    }
}

fn failed(e: redis::RedisError) -> StateError {
    StateError(format!("redis: {e}"))
}

impl Redis {
    /// A client for `url` with keys under `prefix`. Connects lazily: the gateway starts
    /// (not ready) while Redis is down, and connects when it is back.
    /// With `rediss://`, the server's certificate must chain to `ca_pem` when given,
    /// else to the system's trust store, and name the URL's host.
    pub fn open(url: &str, ca_pem: Option<Vec<u8>>, prefix: &str, timeout: Duration) -> StateResult<Self> {
        let invalid = |_| StateError("redis: state.url is not a valid Redis URL".into());
        let client = match ca_pem {
            None => redis::Client::open(url).map_err(invalid)?,
            Some(pem) => {
                let info = redis::IntoConnectionInfo::into_connection_info(url).map_err(invalid)?;
                let certs = redis::TlsCertificates { client_tls: None, root_cert: Some(pem) };
                redis::Client::build_with_tls(info, certs).map_err(|e| StateError(format!("redis: state.tls_ca_file is not usable: {e}")))?
            }
        };
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            // One attempt per reconnect: requests fail fast (503) while Redis is down, and
            // the next request (or heartbeat) tries again.
            .set_number_of_retries(0);
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), config).map_err(failed)?;
        Ok(Self { client, conn, prefix: prefix.to_string(), timeout })
    }

    fn key(&self, kind: &str, rest: &str) -> String {
        format!("{}{kind}:{rest}", self.prefix)
    }

    /// The invalidation channel.
    pub fn channel(&self) -> String {
        format!("{}events", self.prefix)
    }

    /// Runs `f` on a connection, failing closed after the timeout.
    async fn run<T, F, Fut>(&self, f: F) -> StateResult<T>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        match tokio::time::timeout(self.timeout, f(self.conn.clone())).await {
            Ok(r) => r.map_err(failed),
            Err(_) => Err(StateError(format!("redis did not answer within {} ms", self.timeout.as_millis()))),
        }
    }

    async fn ping(&self) -> StateResult<()> {
        self.run(|mut c| async move { redis::cmd("PING").query_async::<String>(&mut c).await }).await.map(|_| ())
    }

    async fn publish(&self, message: &str) -> StateResult<()> {
        let channel = self.channel();
        self.run(|mut c| async move { c.publish::<_, _, i64>(channel, message).await }).await.map(|_| ())
    }
}

/// Ephemeral values in Redis. Each is stored as `{expiry}:{owner}:{sealed}`: the expiry
/// in the clear for the scripts, the owner (the SHA-256 of a flow's client, or `-`) for
/// its queue, and the sealed `{expiry}:{value}`, whose expiry is the one that counts.
#[derive(Debug)]
pub struct RedisEphemeral {
    redis: Redis,
    clock: Clock,
    cipher: Cipher,
    flows_per_client: usize,
    put_new: Script,
    put_flow: Script,
    take: Script,
}

impl RedisEphemeral {
    /// Values on `redis`, expiring by `clock`, sealed with `cipher`.
    pub fn new(redis: Redis, clock: Clock, cipher: Cipher) -> Self {
        let flows_per_client = crate::config::LoginConfig::default().flows_per_client;
        Self { redis, clock, cipher, flows_per_client, put_new: Script::new(PUT_NEW), put_flow: Script::new(PUT_FLOW), take: Script::new(TAKE) }
    }

    /// At most `n` flows per client (`login.flows_per_client`).
    pub fn with_flow_quota(mut self, n: usize) -> Self {
        self.flows_per_client = n.max(1);
        self
    }

    /// What is stored under hash `h` for `value`, living `ttl` from `now`.
    fn stored(&self, h: &str, owner: Option<&str>, value: &str, now: Millis, ttl: Millis) -> String {
        let exp = now.saturating_add(ttl);
        let sealed = self.cipher.seal(&context("e", h), format!("{exp}:{value}").as_bytes());
        format!("{exp}:{}:{sealed}", owner.unwrap_or("-"))
    }

    /// The value if it opens and its sealed expiry is still ahead.
    fn live(&self, h: &str, stored: Option<String>) -> Option<String> {
        let stored = stored?;
        let (_, rest) = stored.split_once(':')?;
        let (_, sealed) = rest.split_once(':')?;
        let plain = unseal(&self.cipher, "e", h, sealed)?;
        let (exp, value) = plain.split_once(':')?;
        (exp.parse::<Millis>().ok()? > self.clock.now()).then(|| value.to_string())
    }
}

#[async_trait]
impl Ephemeral for RedisEphemeral {
    async fn put_new(&self, key: &str, value: &str, ttl_ms: Millis) -> StateResult<bool> {
        let now = self.clock.now();
        let ttl = ttl_ms.max(1);
        let h = hash(key);
        let stored = self.stored(&h, None, value, now, ttl);
        let k = self.redis.key("e", &h);
        let script = &self.put_new;
        let n: i64 = self.redis.run(|mut c| async move { script.key(k).arg(now).arg(stored).arg(ttl).invoke_async(&mut c).await }).await?;
        Ok(n == 1)
    }

    async fn put_flow(&self, client: &str, key: &str, value: &str, ttl_ms: Millis) -> StateResult<bool> {
        let now = self.clock.now();
        let ttl = ttl_ms.max(1);
        let (h, owner) = (hash(key), hash(client));
        let stored = self.stored(&h, Some(&owner), value, now, ttl);
        let (k, queue, seq) = (self.redis.key("e", &h), self.redis.key("f", &owner), self.redis.key("fs", &owner));
        let (script, quota) = (&self.put_flow, self.flows_per_client);
        let n: i64 = self
            .redis
            .run(|mut c| async move { script.key(k).key(queue).key(seq).arg(now).arg(stored).arg(ttl).arg(quota).invoke_async(&mut c).await })
            .await?;
        Ok(n == 1)
    }

    async fn take(&self, key: &str) -> StateResult<Option<String>> {
        let h = hash(key);
        let k = self.redis.key("e", &h);
        let queues = self.redis.key("f", "");
        let script = &self.take;
        // One step on the server, so two replicas cannot both take it.
        let v: Option<String> = self.redis.run(|mut c| async move { script.key(k).arg(queues).invoke_async(&mut c).await }).await?;
        Ok(self.live(&h, v))
    }

    async fn get(&self, key: &str) -> StateResult<Option<String>> {
        let h = hash(key);
        let k = self.redis.key("e", &h);
        let v: Option<String> = self.redis.run(|mut c| async move { c.get(k).await }).await?;
        Ok(self.live(&h, v))
    }

    async fn ping(&self) -> StateResult<()> {
        self.redis.ping().await
    }
}

/// Sessions in Redis.
#[derive(Debug)]
pub struct RedisSessions {
    redis: Redis,
    clock: Clock,
    cipher: Cipher,
    create: Script,
    touch: Script,
    record: Script,
    remove: Script,
    remove_user: Script,
    remove_one: Script,
    connection_sessions: Script,
    remove_connection: Script,
    user_sessions: Script,
    set_groups: Script,
}

impl RedisSessions {
    /// Sessions on `redis`, sealed with `cipher`; `clock` sets the Redis TTL of new sessions.
    pub fn new(redis: Redis, clock: Clock, cipher: Cipher) -> Self {
        Self {
            redis,
            clock,
            cipher,
            create: Script::new(CREATE),
            touch: Script::new(TOUCH),
            record: Script::new(RECORD),
            remove: Script::new(REMOVE),
            remove_user: Script::new(REMOVE_USER),
            remove_one: Script::new(REMOVE_ONE),
            connection_sessions: Script::new(CONNECTION_SESSIONS),
            remove_connection: Script::new(REMOVE_CONNECTION),
            user_sessions: Script::new(USER_SESSIONS),
            set_groups: Script::new(SET_GROUPS),
        }
    }

    /// The sealed last use `m` of session `h` at `at`.
    fn seal_last_use(&self, h: &str, at: Millis) -> String {
        self.cipher.seal(&context("l", h), at.to_string().as_bytes())
    }

    /// The session from what a script returned: {sealed data, sealed last use or '',
    /// user id in the clear}. Its last use is the later of the sealed ones (`m`, else
    /// the one at creation inside `d`): both were written by the gateway, so neither is
    /// later than the real last use.
    fn decode(&self, id: &str, h: &str, found: Option<(String, String, String)>) -> StateResult<Option<(Session, String)>> {
        let Some((sealed, last, owner)) = found else { return Ok(None) };
        // Altered in Redis: no session, not an error (which would answer 503).
        let Some(data) = unseal(&self.cipher, "s", h, &sealed) else { return Ok(None) };
        let mut s: Session = serde_json::from_str(&data).map_err(|_| StateError("redis: a stored session is unreadable".into()))?;
        s.id = id.to_string();
        if !last.is_empty() {
            if let Some(at) = unseal(&self.cipher, "l", h, &last).and_then(|v| v.parse::<Millis>().ok()) {
                s.last_seen = s.last_seen.max(at);
            }
        }
        Ok(Some((s, owner)))
    }
}

#[async_trait]
impl Sessions for RedisSessions {
    async fn create(&self, s: &Session) -> StateResult<()> {
        let now = self.clock.now();
        let ttl = s.expires_at.min(s.last_seen.saturating_add(s.idle_timeout_ms)) - now;
        if ttl <= 0 {
            return Ok(());
        }
        let h = hash(&s.id);
        // The id stays out of Redis: the key is its hash.
        let data = serde_json::to_string(&Session { id: String::new(), ..s.clone() }).map_err(|e| StateError(e.to_string()))?;
        let data = self.cipher.seal(&context("s", &h), data.as_bytes());
        let (k, uk, ck) = (self.redis.key("s", &h), self.redis.key("u", &s.user_id), self.redis.key("c", &s.connection_id));
        let user_ttl = (s.expires_at - now).max(ttl);
        let script = &self.create;
        let last = self.seal_last_use(&h, s.last_seen);
        let args = (data, s.user_id.clone(), s.last_seen, s.expires_at, s.idle_timeout_ms, ttl, h, user_ttl, last, s.connection_id.clone(), now);
        self.redis
            .run(|mut c| async move {
                script
                    .key(k)
                    .key(uk)
                    .key(ck)
                    .arg(args.0)
                    .arg(args.1)
                    .arg(args.2)
                    .arg(args.3)
                    .arg(args.4)
                    .arg(args.5)
                    .arg(args.6)
                    .arg(args.7)
                    .arg(args.8)
                    .arg(args.9)
                    .arg(args.10)
                    .invoke_async::<i64>(&mut c)
                    .await
            })
            .await?;
        Ok(())
    }

    async fn touch(&self, id: &str, now: Millis) -> StateResult<Option<Arc<Session>>> {
        let h = hash(id);
        let k = self.redis.key("s", &h);
        let (script, prefix, hh) = (&self.touch, self.redis.prefix.clone(), h.clone());
        let found: Option<(String, String, String, String)> =
            self.redis.run(|mut c| async move { script.key(k).arg(now).arg(prefix).arg(hh).invoke_async(&mut c).await }).await?;
        let checked = found.as_ref().map(|(_, m, _, _)| m.clone()).unwrap_or_default();
        let filed_under = found.as_ref().map(|(_, _, _, c)| c.clone()).unwrap_or_default();
        let Some((mut s, owner)) = self.decode(id, &h, found.map(|(d, m, u, _)| (d, m, u)))? else { return Ok(None) };
        // The script judged by fields in the clear and by the index of the user they
        // name; a session passes only if its sealed values agree. They differ only when
        // someone else wrote to Redis.
        if owner != s.user_id {
            tracing::warn!("a session in redis is filed under another user than its own; refused");
            return Ok(None);
        }
        if !filed_under.is_empty() && filed_under != s.connection_id {
            tracing::warn!("a session in redis is filed under another connection than its own; refused");
            return Ok(None);
        }
        if !s.live(now) {
            tracing::warn!("a session in redis was kept past its sealed expiry or idle timeout; refused");
            return Ok(None);
        }
        // Recorded only now that the sealed values said it is live (a second round
        // trip, at most once per LAST_SEEN_STEP_MS per session): a script that moved the
        // last use by itself would renew whatever the fields in the clear let through.
        if now - s.last_seen >= LAST_SEEN_STEP_MS {
            let ttl = s.expires_at.min(now.saturating_add(s.idle_timeout_ms)) - now;
            let (script, k, m) = (&self.record, self.redis.key("s", &h), self.seal_last_use(&h, now));
            let recorded: i64 = self.redis.run(|mut c| async move { script.key(k).arg(checked).arg(now).arg(m).arg(ttl).invoke_async(&mut c).await }).await?;
            if recorded == 1 {
                s.last_seen = now;
            }
        }
        Ok(Some(Arc::new(s)))
    }

    async fn remove(&self, id: &str) -> StateResult<Option<Session>> {
        let h = hash(id);
        let k = self.redis.key("s", &h);
        let (script, prefix, channel) = (&self.remove, self.redis.prefix.clone(), self.redis.channel());
        let hh = h.clone();
        let found: Option<(String, String, String)> =
            self.redis.run(|mut c| async move { script.key(k).arg(prefix).arg(hh).arg(channel).invoke_async(&mut c).await }).await?;
        Ok(self.decode(id, &h, found)?.map(|(s, _)| s))
    }

    async fn remove_user(&self, user_id: &str) -> StateResult<usize> {
        let uk = self.redis.key("u", user_id);
        let (script, prefix, channel, user) = (&self.remove_user, self.redis.prefix.clone(), self.redis.channel(), user_id.to_string());
        let n: i64 = self.redis.run(|mut c| async move { script.key(uk).arg(prefix).arg(user).arg(channel).invoke_async(&mut c).await }).await?;
        Ok(n.max(0) as usize)
    }

    async fn set_groups(&self, groups: &BTreeMap<String, Vec<String>>) -> StateResult<usize> {
        let mut n = 0;
        let mut calls = Vec::with_capacity(groups.len());
        for (user, g) in groups {
            calls.push(self.set_user_groups(user, g));
        }
        let mut each = futures_util::stream::iter(calls).buffer_unordered(SET_GROUPS_PARALLEL);
        while let Some(r) = each.next().await {
            n += r?;
        }
        Ok(n)
    }

    async fn list_user(&self, user_id: &str, now: Millis) -> StateResult<Vec<(String, Session)>> {
        Ok(self.user_sealed(user_id).await?.into_iter().filter(|(_, s)| now < s.expires_at).map(|(h, s)| (h[..32].to_string(), s)).collect())
    }

    async fn list_connection(&self, connection_id: &str, now: Millis) -> StateResult<Vec<(String, Session)>> {
        let ck = self.redis.key("c", connection_id);
        let (script, prefix, conn) = (&self.connection_sessions, self.redis.prefix.clone(), connection_id.to_string());
        let found: Vec<String> = self.redis.run(|mut c| async move { script.key(ck).arg(prefix).arg(conn).invoke_async(&mut c).await }).await?;
        let mut out = Vec::new();
        for pair in found.chunks_exact(2) {
            let (h, sealed) = (&pair[0], &pair[1]);
            let Some(s) = unseal(&self.cipher, "s", h, sealed).and_then(|d| serde_json::from_str::<Session>(&d).ok()) else { continue };
            if s.connection_id == connection_id && now < s.expires_at && h.len() == 64 {
                out.push((h[..32].to_string(), s));
            }
        }
        Ok(out)
    }

    async fn remove_sid(&self, user_id: &str, sid: &str) -> StateResult<bool> {
        let Some((h, _)) = self.user_sealed(user_id).await?.into_iter().find(|(h, _)| h.len() == 64 && &h[..32] == sid) else {
            return Ok(false);
        };
        let (sk, uk) = (self.redis.key("s", &h), self.redis.key("u", user_id));
        let (script, channel, user) = (&self.remove_one, self.redis.channel(), user_id.to_string());
        let n: i64 = self.redis.run(|mut c| async move { script.key(sk).key(uk).arg(user).arg(h).arg(channel).invoke_async(&mut c).await }).await?;
        Ok(n == 1)
    }

    async fn count_by_connection(&self, connections: &[String], now: Millis) -> StateResult<Option<BTreeMap<String, u64>>> {
        // Each connection's index holds its sessions scored by their absolute expiry: one
        // ZCOUNT each, pipelined. Sessions idle past their timeout count until swept.
        let mut pipe = redis::pipe();
        for id in connections {
            pipe.cmd("ZCOUNT").arg(self.redis.key("c", id)).arg(now).arg("+inf");
        }
        let counts: Vec<u64> = if connections.is_empty() { vec![] } else { self.redis.run(|mut c| async move { pipe.query_async(&mut c).await }).await? };
        Ok(Some(connections.iter().cloned().zip(counts).collect()))
    }

    async fn remove_connection(&self, connection_id: &str) -> StateResult<usize> {
        let ck = self.redis.key("c", connection_id);
        let (script, prefix, channel, conn) = (&self.remove_connection, self.redis.prefix.clone(), self.redis.channel(), connection_id.to_string());
        let n: i64 = self.redis.run(|mut c| async move { script.key(ck).arg(prefix).arg(conn).arg(channel).invoke_async(&mut c).await }).await?;
        Ok(n.max(0) as usize)
    }
}

impl RedisSessions {
    /// The sessions filed under `user` whose sealed value opens and names that user, with
    /// their hashes (an altered one is left out: it is refused when read, too).
    async fn user_sealed(&self, user: &str) -> StateResult<Vec<(String, Session)>> {
        let uk = self.redis.key("u", user);
        let (script, prefix, u) = (&self.user_sessions, self.redis.prefix.clone(), user.to_string());
        let found: Vec<String> = self.redis.run(|mut c| async move { script.key(uk).arg(prefix).arg(u).invoke_async(&mut c).await }).await?;
        let mut out = Vec::new();
        for pair in found.chunks_exact(2) {
            let (h, sealed) = (&pair[0], &pair[1]);
            let Some(data) = unseal(&self.cipher, "s", h, sealed) else { continue };
            let Ok(s) = serde_json::from_str::<Session>(&data) else { continue };
            if s.user_id == user {
                out.push((h.clone(), s));
            }
        }
        Ok(out)
    }

    /// Rewrites the groups in every session of `user`: reads the sealed sessions (one
    /// script), reseals the changed ones here (only the gateway holds the key), and
    /// writes each back only if nobody wrote it in between (a second script, which also
    /// tells every replica to forget the user's cached sessions). A session changed in
    /// between is read again. Returns how many sessions the user has.
    async fn set_user_groups(&self, user: &str, groups: &[String]) -> StateResult<usize> {
        for _ in 0..3 {
            let uk = self.redis.key("u", user);
            let (script, prefix, u) = (&self.user_sessions, self.redis.prefix.clone(), user.to_string());
            let found: Vec<String> = self.redis.run(|mut c| async move { script.key(uk).arg(prefix).arg(u).invoke_async(&mut c).await }).await?;
            let mut writes: Vec<String> = Vec::new();
            for pair in found.chunks_exact(2) {
                let (h, sealed) = (&pair[0], &pair[1]);
                // Altered in Redis: left alone (it is refused when read).
                let Some(data) = unseal(&self.cipher, "s", h, sealed) else { continue };
                let mut s: Session = serde_json::from_str(&data).map_err(|_| StateError("redis: a stored session is unreadable".into()))?;
                if s.user_id != user || s.groups == groups {
                    continue;
                }
                s.groups = groups.to_vec();
                let data = serde_json::to_string(&s).map_err(|e| StateError(e.to_string()))?;
                writes.extend([h.clone(), sealed.clone(), self.cipher.seal(&context("s", h), data.as_bytes())]);
            }
            let want = writes.len() / 3;
            if want == 0 {
                return Ok(found.len() / 2);
            }
            let (script, prefix, channel, u) = (&self.set_groups, self.redis.prefix.clone(), self.redis.channel(), user.to_string());
            let done: i64 = self.redis.run(|mut c| async move { script.arg(prefix).arg(u).arg(channel).arg(writes).invoke_async(&mut c).await }).await?;
            if done.max(0) as usize == want {
                return Ok(found.len() / 2);
            }
        }
        Err(StateError(format!("redis: the sessions of user {user} kept changing while their groups were rewritten")))
    }
}

/// Keeps `cache` honest: subscribes to the invalidation feed (again after every drop)
/// and publishes this replica's heartbeat on it.
pub fn feed(redis: &Redis, cache: Arc<SessionCache>, clock: Clock) -> Tasks {
    let me = crate::id::token(12);
    let heartbeat = format!("h:{me}");
    let listener = tokio::spawn(listen(redis.clone(), cache.clone(), heartbeat.clone()));
    let beat = tokio::spawn(beat(redis.clone(), cache, heartbeat, clock));
    Tasks(vec![listener, beat])
}

async fn listen(redis: Redis, cache: Arc<SessionCache>, heartbeat: String) {
    let channel = redis.channel();
    let mut pause = Duration::from_millis(50);
    let mut said = false;
    loop {
        cache.lost();
        let subscribe = async {
            let mut ps = redis.client.get_async_pubsub().await?;
            ps.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(ps)
        };
        let subscribed = match tokio::time::timeout(redis.timeout * 2, subscribe).await {
            Ok(Ok(ps)) => Some(ps),
            Ok(Err(e)) => {
                // Once per outage: a Redis user without SUBSCRIBE would otherwise go unnoticed.
                if !said {
                    tracing::warn!(error = %e, "session invalidation feed cannot subscribe; sessions are read from redis until it can");
                    said = true;
                }
                None
            }
            Err(_) => None,
        };
        if let Some(ps) = subscribed {
            tracing::info!("session invalidation feed subscribed");
            said = false;
            pause = Duration::from_millis(50);
            let mut messages = ps.into_on_message();
            while let Some(m) = messages.next().await {
                let Ok(text) = m.get_payload::<String>() else { continue };
                match text.split_once(':') {
                    Some(("h", _)) if text == heartbeat => cache.heard(),
                    Some(("s", h)) => {
                        if let Some(k) = hex::decode(h).ok().and_then(|v| cache::Key::try_from(v).ok()) {
                            cache.forget(&k);
                        }
                    }
                    Some(("u", user)) => cache.forget_user(user),
                    Some(("c", connection)) => cache.forget_connection(connection),
                    _ => {}
                }
            }
            // The connection closed: revocations may be missed from here on.
            tracing::warn!("session invalidation feed lost; sessions are read from redis until it is back");
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(1));
    }
}

async fn beat(redis: Redis, cache: Arc<SessionCache>, heartbeat: String, clock: Clock) {
    let mut tick = tokio::time::interval(Duration::from_millis(cache::HEARTBEAT_MS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut up = true;
    let mut n: u64 = 0;
    loop {
        tick.tick().await;
        let ok = redis.publish(&heartbeat).await.is_ok();
        if ok != up {
            up = ok;
            if ok {
                tracing::info!("redis reachable again");
            } else {
                tracing::error!("redis unreachable: ingress checks answer 503 and logins cannot start until it is back");
            }
        }
        n += 1;
        if n % 50 == 0 {
            cache.sweep(clock.now());
        }
    }
}

/// The state backends on Redis, per `[state]`, sealing values with the master key
/// `cipher`: sessions behind this replica's cache unless `cache_seconds` is 0.
pub fn open(cfg: &StateConfig, url: &str, clock: &Clock, cipher: &Cipher, flows_per_client: usize) -> StateResult<super::Backends> {
    let ca = match &cfg.tls_ca_file {
        None => None,
        Some(path) => {
            let pem = std::fs::read(path).map_err(|e| StateError(format!("redis: cannot read state.tls_ca_file {}: {e}", path.display())))?;
            // An empty trust list would make every connection fail later, less clearly.
            if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
                return Err(StateError(format!("redis: state.tls_ca_file {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)", path.display())));
            }
            Some(pem)
        }
    };
    let redis = Redis::open(url, ca, &cfg.prefix, Duration::from_millis(cfg.timeout_ms))?;
    let ephemeral: Arc<dyn Ephemeral> = Arc::new(RedisEphemeral::new(redis.clone(), clock.clone(), cipher.clone()).with_flow_quota(flows_per_client));
    let store: Arc<dyn Sessions> = Arc::new(RedisSessions::new(redis.clone(), clock.clone(), cipher.clone()));
    if cfg.cache_seconds == 0 {
        return Ok((ephemeral, store));
    }
    let cache = Arc::new(SessionCache::new((cfg.cache_seconds * 1000) as Millis));
    let tasks = feed(&redis, cache.clone(), clock.clone());
    Ok((ephemeral, Arc::new(Cached::new(store, cache, tasks))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::conformance;

    #[test]
    fn a_ca_file_without_a_certificate_is_refused_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let cipher = Cipher::from_text(&"5".repeat(64)).unwrap();
        for (name, content) in [("key.pem", &b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"[..]), ("ca.der", &[0x30, 0x82, 0x01][..])] {
            let path = dir.path().join(name);
            std::fs::write(&path, content).unwrap();
            let cfg = StateConfig { tls_ca_file: Some(path), ..Default::default() };
            let Err(err) = open(&cfg, "rediss://localhost:6380/0", &Clock::system(), &cipher, 1000) else { panic!("refused") };
            let err = err.to_string();
            assert!(err.contains("holds no PEM certificate") && err.contains(name), "{err}");
        }
        let cfg = StateConfig { tls_ca_file: Some(dir.path().join("missing.pem")), ..Default::default() };
        let Err(err) = open(&cfg, "rediss://localhost:6380/0", &Clock::system(), &cipher, 1000) else { panic!("refused") };
        let err = err.to_string();
        assert!(err.contains("cannot read state.tls_ca_file"), "{err}");
    }

    /// The Redis the tests use (scripts/test starts it at 127.0.0.1:6379).
    pub fn test_url() -> String {
        std::env::var("SSOGATE_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into())
    }

    /// A key prefix of its own, deleted with everything under it when dropped.
    struct Prefix(String);

    impl Prefix {
        fn new() -> Self {
            Prefix(format!("ssogate-test:{}:", crate::id::token(8)))
        }
    }

    impl Drop for Prefix {
        fn drop(&mut self) {
            let client = redis::Client::open(test_url()).unwrap();
            let mut c = client.get_connection().unwrap();
            let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{}*", self.0)).query(&mut c).unwrap();
            if !keys.is_empty() {
                let _: i64 = redis::cmd("DEL").arg(keys).query(&mut c).unwrap();
            }
        }
    }

    fn cipher() -> Cipher {
        Cipher::from_text(&"7".repeat(64)).unwrap()
    }

    fn redis(prefix: &Prefix) -> Redis {
        Redis::open(&test_url(), None, &prefix.0, Duration::from_secs(2)).unwrap()
    }

    async fn wait_live(cache: &SessionCache) {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !cache.live() {
            assert!(std::time::Instant::now() < deadline, "the feed was not heard");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn redis_backends_pass_conformance() {
        let prefix = Prefix::new();
        let clock = Clock::fixed(1_000_000);
        let r = redis(&prefix);
        conformance::ephemeral(&RedisEphemeral::new(r.clone(), clock.clone(), cipher()), &clock).await.unwrap();
        conformance::sessions(&RedisSessions::new(r.clone(), clock.clone(), cipher()), &clock).await.unwrap();
        conformance::revocation(&RedisSessions::new(r.clone(), clock.clone(), cipher()), &clock).await.unwrap();
        // The same suite through the cache the server puts in front of sessions.
        let cfg = StateConfig { prefix: prefix.0.clone(), ..StateConfig::default() };
        let (_, cached) = open(&cfg, &test_url(), &clock, &cipher(), 1000).unwrap();
        conformance::sessions(cached.as_ref(), &clock).await.unwrap();
        conformance::revocation(cached.as_ref(), &clock).await.unwrap();
        conformance::counts(&RedisSessions::new(r.clone(), clock.clone(), cipher()), &clock).await.unwrap();
        conformance::counts(cached.as_ref(), &clock).await.unwrap();
        conformance::flow_quota(&RedisEphemeral::new(r.clone(), clock.clone(), cipher()).with_flow_quota(30), 30).await.unwrap();
    }

    #[tokio::test]
    async fn the_redis_password_is_never_shown() {
        for url in ["redis://:hunter2-secret@10.0.0.1:6379/0", "redis://default:hunter2-secret@redis.internal/1"] {
            assert!(!crate::app::redact_url(url).contains("hunter2-secret"), "{url}");
            let r = Redis::open(url, None, "p:", Duration::from_secs(1)).unwrap();
            assert!(!format!("{r:?}").contains("hunter2-secret"));
        }
    }

    #[tokio::test]
    async fn redis_holds_nothing_usable_and_cannot_forge() {
        let prefix = Prefix::new();
        let clock = Clock::system();
        let r = redis(&prefix);
        let e = RedisEphemeral::new(r.clone(), clock.clone(), cipher());
        assert!(e.put_new("code:the-code-value", "{\"session_id\":\"sid-inside-a-grant\"}", 60_000).await.unwrap());
        let s = RedisSessions::new(r.clone(), clock.clone(), cipher());
        let now = clock.now();
        let mk = |id: &str| Session {
            id: id.into(),
            user_id: "usr_x".into(),
            connection_id: "c".into(),
            username: "alice".into(),
            email: Some("alice@example.test".into()),
            email_verified: true,
            name: None,
            groups: vec!["admins".into()],
            created_at: now,
            expires_at: now + 60_000,
            idle_timeout_ms: 60_000,
            last_seen: now,
            profile: Default::default(),
            upstream_token: Some("upstream-access-token".into()),
            auth_time: None,
        };
        let (id, other) = (crate::id::token(32), crate::id::token(32));
        s.create(&mk(&id)).await.unwrap();
        let mut c = redis::Client::open(test_url()).unwrap().get_connection().unwrap();
        let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{}*", prefix.0)).query(&mut c).unwrap();
        assert_eq!(keys.len(), 4, "{keys:?}");
        let mut dump = format!("{keys:?}");
        for k in &keys {
            let t: String = redis::cmd("TYPE").arg(k).query(&mut c).unwrap();
            let v: Vec<String> = match t.as_str() {
                "hash" => redis::cmd("HGETALL").arg(k).query(&mut c).unwrap(),
                "set" => redis::cmd("SMEMBERS").arg(k).query(&mut c).unwrap(),
                "zset" => redis::cmd("ZRANGE").arg(k).arg(0).arg(-1).query(&mut c).unwrap(),
                _ => vec![redis::cmd("GET").arg(k).query(&mut c).unwrap()],
            };
            dump.push_str(&format!("{v:?}"));
        }
        for secret in [id.as_str(), "the-code-value", "sid-inside-a-grant", "upstream-access-token", "alice@example.test", "admins"] {
            assert!(!dump.contains(secret), "{secret} is readable in redis: {dump}");
        }
        let skey = r.key("s", &hash(&id));
        let pttl: i64 = redis::cmd("PTTL").arg(&skey).query(&mut c).unwrap();
        assert!(pttl > 0 && pttl <= 60_000, "sessions carry a Redis TTL: {pttl}");

        // A session copied to a key of the attacker's choosing does not open there.
        let fields: Vec<String> = redis::cmd("HGETALL").arg(&skey).query(&mut c).unwrap();
        let _: i64 = redis::cmd("HSET").arg(r.key("s", &hash(&other))).arg(&fields).query(&mut c).unwrap();
        assert!(s.touch(&other, now).await.unwrap().is_none(), "a moved session is refused");
        assert!(s.touch(&id, now).await.unwrap().is_some(), "the real one still works");
        // Nor does an altered one.
        let _: i64 = redis::cmd("HSET").arg(&skey).arg("d").arg("v1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").query(&mut c).unwrap();
        assert!(s.touch(&id, now).await.unwrap().is_none(), "an altered session is refused");
        // A code value moved to another code's key does not open either.
        let ekey = r.key("e", &hash("code:the-code-value"));
        let v: String = redis::cmd("GET").arg(&ekey).query(&mut c).unwrap();
        let _: () = redis::cmd("SET").arg(r.key("e", &hash("code:forged"))).arg(v).query(&mut c).unwrap();
        assert!(e.take("code:forged").await.unwrap().is_none());
        // Raising the expiry written in the clear keeps nothing alive: the sealed one rules.
        let fixed = Clock::fixed(clock.now());
        let short = RedisEphemeral::new(r.clone(), fixed.clone(), cipher());
        assert!(short.put_new("code:short-lived", "x", 1_000).await.unwrap());
        let skey_e = r.key("e", &hash("code:short-lived"));
        let v: String = redis::cmd("GET").arg(&skey_e).query(&mut c).unwrap();
        let (_, rest) = v.split_once(':').unwrap();
        let _: () = redis::cmd("SET").arg(&skey_e).arg(format!("{}:{rest}", i64::MAX)).query(&mut c).unwrap();
        fixed.advance(1_001);
        assert!(short.get("code:short-lived").await.unwrap().is_none(), "a raised clear-text expiry extends nothing");
        assert!(e.take("code:the-code-value").await.unwrap().is_some());
    }

    /// A session of `user` for the tamper tests: absolute expiry `life` and idle
    /// timeout `idle` from `now`.
    fn session(id: &str, user: &str, now: Millis, life: Millis, idle: Millis) -> Session {
        Session {
            id: id.into(),
            user_id: user.into(),
            connection_id: "c".into(),
            username: "u".into(),
            email: None,
            email_verified: false,
            name: None,
            groups: vec![],
            created_at: now,
            expires_at: now + life,
            idle_timeout_ms: idle,
            last_seen: now,
            profile: Default::default(),
            upstream_token: None,
            auth_time: None,
        }
    }

    fn raw() -> redis::Connection {
        redis::Client::open(test_url()).unwrap().get_connection().unwrap()
    }

    #[tokio::test]
    async fn a_redis_writer_cannot_extend_a_session_past_its_sealed_expiry() {
        let prefix = Prefix::new();
        let clock = Clock::system();
        let r = redis(&prefix);
        let s = RedisSessions::new(r.clone(), clock.clone(), cipher());
        let now = clock.now();
        let id = crate::id::token(32);
        s.create(&session(&id, "usr_x", now, 10_000, 60_000)).await.unwrap();
        assert!(s.touch(&id, now + 1_000).await.unwrap().is_some());
        // The writer pushes every unsealed expiry far out: the fields the scripts read
        // and the key's TTL.
        let mut c = raw();
        let skey = r.key("s", &hash(&id));
        let far = now + 1_000_000_000;
        let _: i64 = redis::cmd("HSET").arg(&skey).arg("x").arg(far).arg("i").arg(far).arg("l").arg(now + 9_000).query(&mut c).unwrap();
        let _: i64 = redis::cmd("PEXPIRE").arg(&skey).arg(600_000).query(&mut c).unwrap();
        assert!(s.touch(&id, now + 9_500).await.unwrap().is_some(), "still inside its sealed lifetime");
        assert!(s.touch(&id, now + 10_000).await.unwrap().is_none(), "the sealed absolute expiry ends it");
        assert!(s.touch(&id, now + 500_000).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_redis_writer_cannot_renew_an_idle_session() {
        let prefix = Prefix::new();
        let clock = Clock::system();
        let r = redis(&prefix);
        let s = RedisSessions::new(r.clone(), clock.clone(), cipher());
        let now = clock.now();
        let id = crate::id::token(32);
        s.create(&session(&id, "usr_x", now, 60_000, 5_000)).await.unwrap();
        assert!(s.touch(&id, now + 1_000).await.unwrap().is_some_and(|x| x.last_seen == now + 1_000));
        // Its last use is raised (and the idle timeout) in Redis: it was last used at
        // now + 1 s, so it ends at now + 6 s whatever Redis says.
        let mut c = raw();
        let skey = r.key("s", &hash(&id));
        let _: i64 = redis::cmd("HSET").arg(&skey).arg("l").arg(now + 5_900).arg("i").arg(50_000).query(&mut c).unwrap();
        assert!(s.touch(&id, now + 6_000).await.unwrap().is_none(), "idle by its sealed last use");
        // Nor does deleting the sealed last use fall back to anything newer.
        let id = crate::id::token(32);
        s.create(&session(&id, "usr_x", now, 60_000, 5_000)).await.unwrap();
        assert!(s.touch(&id, now + 4_000).await.unwrap().is_some());
        let skey = r.key("s", &hash(&id));
        let _: i64 = redis::cmd("HDEL").arg(&skey).arg("m").query(&mut c).unwrap();
        let _: i64 = redis::cmd("HSET").arg(&skey).arg("l").arg(now + 5_900).query(&mut c).unwrap();
        assert!(s.touch(&id, now + 6_000).await.unwrap().is_none(), "idle since its creation, the last sealed use");
    }

    #[tokio::test]
    async fn remove_user_ends_sessions_hidden_from_its_index() {
        let prefix = Prefix::new();
        let clock = Clock::system();
        let r = redis(&prefix);
        let plain = RedisSessions::new(r.clone(), clock.clone(), cipher());
        let cfg = StateConfig { prefix: prefix.0.clone(), cache_seconds: 30, ..StateConfig::default() };
        let (_, cached) = open(&cfg, &test_url(), &clock, &cipher(), 1000).unwrap();
        let mut c = raw();
        for (store, victim) in [(&plain as &dyn Sessions, "usr_v1"), (cached.as_ref(), "usr_v2")] {
            let now = clock.now();
            let ids: Vec<String> = (0..4).map(|_| crate::id::token(32)).collect();
            for id in &ids {
                store.create(&session(id, victim, now, 60_000, 60_000)).await.unwrap();
                assert!(store.touch(id, now).await.unwrap().is_some());
            }
            let bystander = crate::id::token(32);
            store.create(&session(&bystander, "usr_other", now, 60_000, 60_000)).await.unwrap();
            let (uk, other) = (r.key("u", victim), r.key("u", "usr_other"));
            let sk = |id: &str| r.key("s", &hash(id));
            let h = |id: &str| hash(id);
            // 0: taken out of the user's index.
            let _: i64 = redis::cmd("SREM").arg(&uk).arg(h(&ids[0])).query(&mut c).unwrap();
            // 1: its owner field names someone else.
            let _: i64 = redis::cmd("HSET").arg(sk(&ids[1])).arg("u").arg("usr_other").query(&mut c).unwrap();
            // 2: moved to another user's index, owner field and all.
            let _: i64 = redis::cmd("SREM").arg(&uk).arg(h(&ids[2])).query(&mut c).unwrap();
            let _: i64 = redis::cmd("SADD").arg(&other).arg(h(&ids[2])).query(&mut c).unwrap();
            let _: i64 = redis::cmd("HSET").arg(sk(&ids[2])).arg("u").arg("usr_other").query(&mut c).unwrap();
            // 3: left alone.
            store.remove_user(victim).await.unwrap();
            for (n, id) in ids.iter().enumerate() {
                assert!(store.touch(id, now + 10).await.unwrap().is_none(), "session {n} of {victim} survived remove_user");
            }
            assert!(store.touch(&bystander, now + 10).await.unwrap().is_some(), "another user's session stays");
        }
    }

    #[tokio::test]
    async fn remove_connection_ends_sessions_moved_out_of_its_index() {
        let prefix = Prefix::new();
        let clock = Clock::system();
        let r = redis(&prefix);
        let s = RedisSessions::new(r.clone(), clock.clone(), cipher());
        let now = clock.now();
        let ids: Vec<String> = (0..3).map(|_| crate::id::token(32)).collect();
        for id in &ids {
            s.create(&session(id, "usr_x", now, 60_000, 60_000)).await.unwrap();
        }
        let mut c = raw();
        let (ck, sk) = (r.key("c", "c"), |id: &str| r.key("s", &hash(id)));
        // 0: taken out of its connection's index.
        let _: i64 = redis::cmd("ZREM").arg(&ck).arg(hash(&ids[0])).query(&mut c).unwrap();
        // 1: filed under another connection, index and field.
        let _: i64 = redis::cmd("ZREM").arg(&ck).arg(hash(&ids[1])).query(&mut c).unwrap();
        let _: i64 = redis::cmd("ZADD").arg(r.key("c", "other")).arg(now + 60_000).arg(hash(&ids[1])).query(&mut c).unwrap();
        let _: i64 = redis::cmd("HSET").arg(sk(&ids[1])).arg("c").arg("other").query(&mut c).unwrap();
        assert_eq!(s.remove_connection("c").await.unwrap(), 1);
        for (n, id) in ids.iter().enumerate() {
            assert!(s.touch(id, now + 10).await.unwrap().is_none(), "session {n} survived remove_connection");
        }
    }

    #[tokio::test]
    async fn a_revocation_reaches_the_other_replicas_cache() {
        let prefix = Prefix::new();
        let clock = Clock::system();
        let cfg = StateConfig { prefix: prefix.0.clone(), cache_seconds: 30, ..StateConfig::default() };
        let (_, a) = open(&cfg, &test_url(), &clock, &cipher(), 1000).unwrap();
        let b = Cached::new(Arc::new(RedisSessions::new(redis(&prefix), clock.clone(), cipher())), Arc::new(SessionCache::new(30_000)), Tasks::default());
        let b_cache = b.cache().clone();
        let b_tasks = feed(&redis(&prefix), b_cache.clone(), clock.clone());
        wait_live(&b_cache).await;
        let now = clock.now();
        let mk = |id: &str, user: &str| Session {
            id: id.into(),
            user_id: user.into(),
            connection_id: "c".into(),
            username: "u".into(),
            email: None,
            email_verified: false,
            name: None,
            groups: vec![],
            created_at: now,
            expires_at: now + 60_000,
            idle_timeout_ms: 60_000,
            last_seen: now,
            profile: Default::default(),
            upstream_token: None,
            auth_time: None,
        };
        let (one, two) = (crate::id::token(32), crate::id::token(32));
        a.create(&mk(&one, "u1")).await.unwrap();
        a.create(&mk(&two, "u2")).await.unwrap();
        assert!(b.touch(&one, now).await.unwrap().is_some());
        assert!(b.touch(&two, now).await.unwrap().is_some());
        assert_eq!(b_cache.len(), 2, "b answers from memory now");
        a.remove(&one).await.unwrap();
        a.remove_user("u2").await.unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(1);
        while !b_cache.is_empty() {
            assert!(std::time::Instant::now() < deadline, "revocations did not reach b within a second");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(b.touch(&one, now).await.unwrap().is_none());
        assert!(b.touch(&two, now).await.unwrap().is_none());

        // Groups rewritten and a connection ended on a reach b's memory too.
        let (three, four) = (crate::id::token(32), crate::id::token(32));
        a.create(&Session { groups: vec!["admins".into()], ..mk(&three, "u3") }).await.unwrap();
        a.create(&Session { connection_id: "c4".into(), ..mk(&four, "u4") }).await.unwrap();
        assert!(b.touch(&three, now).await.unwrap().is_some_and(|s| s.groups == ["admins"]));
        assert!(b.touch(&four, now).await.unwrap().is_some());
        assert_eq!(b_cache.len(), 2);
        assert_eq!(a.set_groups(&BTreeMap::from([("u3".to_string(), vec!["Users".to_string()])])).await.unwrap(), 1);
        assert_eq!(a.remove_connection("c4").await.unwrap(), 1);
        let deadline = std::time::Instant::now() + Duration::from_secs(1);
        while !b_cache.is_empty() {
            assert!(std::time::Instant::now() < deadline, "rewrites did not reach b within a second");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(b.touch(&three, now).await.unwrap().is_some_and(|s| s.groups == ["Users"]), "b reads the new groups");
        assert!(b.touch(&four, now).await.unwrap().is_none());
        drop(b_tasks);
    }
}
