//! Back-channel logout (OpenID Connect Back-Channel Logout 1.0): when a gateway session
//! ends for any reason — the user signs out (here or through an app), an admin ends it,
//! the user is disabled or removed, the connection is turned off, a new login replaces
//! it — every client that received tokens for it gets a signed logout token POSTed to
//! its `backchannel_logout_uri`.
//!
//! [`Watched`] wraps the session backend, so no caller that ends a session can forget
//! to tell: it puts the ended session on a bounded queue ([`Outbox`]) without waiting.
//! A background task ([`spawn`]) signs and delivers, retrying with backoff; the user
//! never waits for an app. A full queue drops the newest ending with a warning (the
//! sessions themselves are gone either way; only the apps' notice is lost).
//! Which clients to tell is kept per session in the state store (`bcl:` + sid + client),
//! set when a client is issued tokens, and living as long as the session (and a grace
//! period after). Sessions that simply expire (absolute or idle) end without anyone
//! calling `remove`: the replica that issued their tokens watches them ([`WATCH_MAX`]
//! at most) and tells the apps within [`SWEEP_MS`] of the end.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;
use tokio::sync::mpsc;

use crate::app::AppState;
use crate::clock::{Clock, Millis};
use crate::state::{public_sid, Session, Sessions, StateResult};

/// Sessions ended and not yet handled that the queue holds at most.
pub const QUEUE_MAX: usize = 4096;

/// Deliveries in flight at most (each with its retries).
const IN_FLIGHT_MAX: usize = 64;

/// Waits between delivery attempts: about a minute in all.
const BACKOFF_MS: &[u64] = &[0, 1000, 2000, 4000, 8000, 16_000, 32_000];

/// How long a logout token is valid (its `exp` - `iat`).
const LOGOUT_TOKEN_TTL_S: i64 = 120;

/// Sessions watched for expiry at most, per replica; past it, newer ones are not watched
/// (their explicit ends are still told).
pub const WATCH_MAX: usize = 100_000;

/// How often watched sessions are checked for expiry.
pub const SWEEP_MS: u64 = 5000;

/// How long after a session's end its clients stay recorded, so the sweep that finds it
/// expired still knows whom to tell.
const MARKER_GRACE_MS: Millis = 10 * 60 * 1000;

/// A session that ended.
#[derive(Debug, Clone)]
pub struct Ended {
    /// Its public name (the `sid` its tokens carry).
    pub sid: String,
    /// The user's id (the tokens' `sub`).
    pub user_id: String,
}

/// The queue of ended sessions between [`Watched`] and the delivery task.
#[derive(Debug)]
pub struct Outbox {
    tx: mpsc::Sender<Ended>,
    rx: Mutex<Option<mpsc::Receiver<Ended>>>,
    /// Sessions whose apps hold tokens, by sid: (user id, the session's absolute end).
    watched: Mutex<BTreeMap<String, (String, Millis)>>,
}

impl Outbox {
    /// An empty queue of `capacity`.
    pub fn new(capacity: usize) -> Arc<Outbox> {
        let (tx, rx) = mpsc::channel(capacity);
        Arc::new(Outbox { tx, rx: Mutex::new(Some(rx)), watched: Mutex::new(BTreeMap::new()) })
    }

    /// Watches a session for expiry (bounded by [`WATCH_MAX`]).
    fn watch(&self, sid: &str, user_id: &str, expires_at: Millis) {
        let Ok(mut w) = self.watched.lock() else { return };
        if w.len() < WATCH_MAX || w.contains_key(sid) {
            w.insert(sid.to_string(), (user_id.to_string(), expires_at));
        }
    }

    /// Queues an ending without waiting; a full queue drops it, with a warning.
    pub fn push(&self, e: Ended) {
        if let Err(err) = self.tx.try_send(e) {
            tracing::warn!(error = %err, "back-channel logout queue full or closed: an app will not be told that a session ended");
        }
    }
}

/// The session backend, telling the [`Outbox`] about every session it ends.
#[derive(Debug)]
pub struct Watched {
    inner: Arc<dyn Sessions>,
    outbox: Arc<Outbox>,
    clock: Clock,
}

impl Watched {
    /// Wraps `inner`.
    pub fn wrap(inner: Arc<dyn Sessions>, outbox: Arc<Outbox>, clock: Clock) -> Arc<dyn Sessions> {
        Arc::new(Watched { inner, outbox, clock })
    }

    fn ended(&self, list: Vec<(String, Session)>) {
        for (sid, s) in list {
            self.outbox.push(Ended { sid, user_id: s.user_id });
        }
    }
}

#[async_trait]
impl Sessions for Watched {
    async fn create(&self, s: &Session) -> StateResult<()> {
        self.inner.create(s).await
    }
    async fn touch(&self, id: &str, now: Millis) -> StateResult<Option<Arc<Session>>> {
        self.inner.touch(id, now).await
    }
    async fn remove(&self, id: &str) -> StateResult<Option<Session>> {
        let s = self.inner.remove(id).await?;
        if let Some(s) = &s {
            self.outbox.push(Ended { sid: public_sid(&s.id), user_id: s.user_id.clone() });
        }
        Ok(s)
    }
    async fn remove_user(&self, user_id: &str) -> StateResult<usize> {
        let before = self.inner.list_user(user_id, self.clock.now()).await?;
        let n = self.inner.remove_user(user_id).await?;
        self.ended(before);
        Ok(n)
    }
    async fn set_groups(&self, groups: &BTreeMap<String, Vec<String>>) -> StateResult<usize> {
        self.inner.set_groups(groups).await
    }
    async fn remove_connection(&self, connection_id: &str) -> StateResult<usize> {
        let before = self.inner.list_connection(connection_id, self.clock.now()).await?;
        let n = self.inner.remove_connection(connection_id).await?;
        self.ended(before);
        Ok(n)
    }
    async fn list_user(&self, user_id: &str, now: Millis) -> StateResult<Vec<(String, Session)>> {
        self.inner.list_user(user_id, now).await
    }
    async fn list_connection(&self, connection_id: &str, now: Millis) -> StateResult<Vec<(String, Session)>> {
        self.inner.list_connection(connection_id, now).await
    }
    async fn remove_sid(&self, user_id: &str, sid: &str) -> StateResult<bool> {
        let removed = self.inner.remove_sid(user_id, sid).await?;
        if removed {
            self.outbox.push(Ended { sid: sid.to_string(), user_id: user_id.to_string() });
        }
        Ok(removed)
    }
    async fn count_by_connection(&self, connections: &[String], now: Millis) -> StateResult<Option<BTreeMap<String, u64>>> {
        self.inner.count_by_connection(connections, now).await
    }
}

fn marker(sid: &str, client_id: &str) -> String {
    format!("bcl:{sid}:{client_id}")
}

/// Records that `client_id` holds tokens of `session`, until a while after its end.
pub async fn register(app: &AppState, session: &Session, client_id: &str) {
    let sid = public_sid(&session.id);
    let ttl = (session.expires_at - app.clock.now()).max(1000) + MARKER_GRACE_MS;
    if let Err(e) = app.ephemeral.put_new(&marker(&sid, client_id), "1", ttl).await {
        tracing::warn!(error = %e, client_id, "could not record the client for back-channel logout");
    }
    app.backchannel.watch(&sid, &session.user_id, session.expires_at);
}

/// Finds the watched sessions that have ended (expired, idle, or ended elsewhere) and
/// queues them; sessions still live stay watched.
pub async fn sweep(app: &AppState) {
    let now = app.clock.now();
    let by_user: BTreeMap<String, Vec<String>> = {
        let Ok(w) = app.backchannel.watched.lock() else { return };
        let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (sid, (user, _)) in w.iter() {
            m.entry(user.clone()).or_default().push(sid.clone());
        }
        m
    };
    for (user, sids) in by_user {
        let live: Vec<String> = match app.sessions.list_user(&user, now).await {
            Ok(l) => l.into_iter().filter(|(_, s)| s.live(now)).map(|(sid, _)| sid).collect(),
            // The store is away: nothing is known to have ended.
            Err(_) => continue,
        };
        for sid in sids.into_iter().filter(|s| !live.contains(s)) {
            if let Ok(mut w) = app.backchannel.watched.lock() {
                w.remove(&sid);
            }
            app.backchannel.push(Ended { sid, user_id: user.clone() });
        }
    }
}

/// Starts the delivery task; it runs until the queue closes (the app is dropped) or
/// the handle is aborted. A second call finds the queue taken and does nothing.
pub fn spawn(app: AppState) -> tokio::task::JoinHandle<()> {
    let rx = app.backchannel.rx.lock().ok().and_then(|mut r| r.take());
    tokio::spawn(async move {
        let Some(mut rx) = rx else { return };
        let permits = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT_MAX));
        let mut tick = tokio::time::interval(Duration::from_millis(SWEEP_MS));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                ended = rx.recv() => match ended {
                    Some(ended) => notify(&app, &ended, &permits).await,
                    None => return,
                },
                _ = tick.tick() => sweep(&app).await,
            }
        }
    })
}

/// Signs a logout token for each client that holds tokens of the session, and starts
/// delivering it.
async fn notify(app: &AppState, ended: &Ended, permits: &Arc<tokio::sync::Semaphore>) {
    let clients = match app.store.client_list().await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "back-channel logout: could not list the clients");
            return;
        }
    };
    for c in clients {
        let Some(uri) = c.settings.backchannel_logout_uri.clone() else { continue };
        match app.ephemeral.take(&marker(&ended.sid, &c.client_id)).await {
            Ok(Some(_)) => {}
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(error = %e, client_id = %c.client_id, "back-channel logout: the state store failed");
                continue;
            }
        }
        let now = app.clock.now() / 1000;
        let claims = json!({
            "iss": app.config.public_base(),
            "aud": c.client_id,
            "iat": now,
            "exp": now + LOGOUT_TOKEN_TTL_S,
            "jti": crate::id::token(16),
            "sub": ended.user_id,
            "sid": ended.sid,
            "events": {"http://schemas.openid.net/event/backchannel-logout": {}},
        });
        let token = match crate::token::claims::sign_typed(app.store.as_ref(), &app.cipher, "logout+jwt", &claims).await {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(error = %e, "back-channel logout: could not sign the logout token");
                continue;
            }
        };
        let Ok(permit) = permits.clone().acquire_owned().await else { return };
        let http = app.http.clone();
        let client_id = c.client_id.clone();
        tokio::spawn(async move {
            deliver(&http, &client_id, &uri, &token).await;
            drop(permit);
        });
    }
}

/// POSTs the logout token, retrying with backoff while the app is unreachable or
/// answers 5xx; a 4xx is the app's final word (OIDC Back-Channel Logout 2.8).
async fn deliver(http: &reqwest::Client, client_id: &str, uri: &str, token: &str) {
    for (attempt, wait) in BACKOFF_MS.iter().enumerate() {
        tokio::time::sleep(Duration::from_millis(*wait)).await;
        match http.post(uri).form(&[("logout_token", token)]).send().await {
            Ok(r) if r.status().is_success() => {
                tracing::info!(client_id, attempt, "back-channel logout delivered");
                return;
            }
            Ok(r) if r.status().is_client_error() => {
                tracing::warn!(client_id, status = r.status().as_u16(), "back-channel logout refused by the app");
                return;
            }
            Ok(r) => tracing::info!(client_id, attempt, status = r.status().as_u16(), "back-channel logout failed; retrying"),
            Err(e) => tracing::info!(client_id, attempt, error = %e, "back-channel logout unreachable; retrying"),
        }
    }
    tracing::warn!(client_id, "back-channel logout not delivered after every retry");
}
