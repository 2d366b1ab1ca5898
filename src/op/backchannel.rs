//! Back-channel logout (OpenID Connect Back-Channel Logout 1.0): when a gateway session
//! ends for any reason — the user signs out (here or through an app), an admin ends it,
//! the user is disabled or removed, the connection is turned off, a new login replaces
//! it — every client that received tokens for it gets a signed logout token POSTed to
//! its `backchannel_logout_uri`.
//!
//! [`Watched`] wraps the session backend, so no caller that ends a session can forget
//! to tell: it puts the ended session on a bounded queue ([`Outbox`]) without waiting.
//! A background task ([`spawn`]) hands each ending to one queue per client, never
//! waiting for an app; each client's own worker signs and delivers, at most
//! [`CLIENT_IN_FLIGHT_MAX`] at once, each attempt cut at [`ATTEMPT_TIMEOUT`], retrying
//! with backoff. So an app that is down or hangs delays only its own notices, and the
//! user never waits for any app. A full queue drops the notice with a warning and
//! counts it (`ssogate_backchannel_dropped_total`); a notice given up after every retry
//! is counted per client (`ssogate_backchannel_failed_total`). The sessions themselves
//! are gone either way; only the apps' notice is lost.
//! Which clients to tell is kept per session in the state store (`bcl:` + sid + client),
//! set when a client is issued tokens, and living as long as the session (and a grace
//! period after). Sessions that simply expire (absolute or idle) end without anyone
//! calling `remove`: the replica that issued their tokens watches them ([`WATCH_MAX`]
//! at most) on a task of its own. Every [`SWEEP_MS`] it finds those past their
//! absolute end without asking the store, and looks up at most [`SWEEP_BATCH`] users
//! (in turn, [`SWEEP_PARALLEL`] at once) for the sessions that went idle or ended
//! elsewhere.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use serde_json::json;
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};

use crate::app::AppState;
use crate::clock::{Clock, Millis};
use crate::state::{public_sid, Session, Sessions, StateResult};

/// Sessions ended and not yet handled that the queue holds at most.
pub const QUEUE_MAX: usize = 4096;

/// Notices waiting for one client at most; past it, that client's new notices are
/// dropped (and counted), the other clients' are not affected.
pub const CLIENT_QUEUE_MAX: usize = 1024;

/// Deliveries in flight to one client at most (each with its retries).
pub const CLIENT_IN_FLIGHT_MAX: usize = 16;

/// How long one delivery attempt may take: an app that accepts and never answers
/// holds its slot this long per attempt, not the outbound client's whole timeout.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// Users whose sessions one sweep looks up at most (the next sweep goes on from there).
pub const SWEEP_BATCH: usize = 5000;

/// Session lookups one sweep makes at once.
pub const SWEEP_PARALLEL: usize = 16;

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

/// The queue of ended sessions between [`Watched`] and the delivery task, and what
/// `/metrics` reports of the deliveries.
#[derive(Debug)]
pub struct Outbox {
    tx: mpsc::Sender<Ended>,
    rx: Mutex<Option<mpsc::Receiver<Ended>>>,
    /// Sessions whose apps hold tokens, by sid: (user id, the session's absolute end).
    watched: Mutex<BTreeMap<String, (String, Millis)>>,
    /// The last user the sweep looked up (it goes on after it next time).
    sweep_cursor: Mutex<Option<String>>,
    /// Notices dropped because a queue was full.
    dropped: AtomicU64,
    /// Notices given up after every retry, by client id (ids from the store: bounded).
    failed: Mutex<BTreeMap<String, u64>>,
}

impl Outbox {
    /// An empty queue of `capacity`.
    pub fn new(capacity: usize) -> Arc<Outbox> {
        let (tx, rx) = mpsc::channel(capacity);
        Arc::new(Outbox {
            tx,
            rx: Mutex::new(Some(rx)),
            watched: Mutex::new(BTreeMap::new()),
            sweep_cursor: Mutex::new(None),
            dropped: AtomicU64::new(0),
            failed: Mutex::new(BTreeMap::new()),
        })
    }

    /// Notices dropped because a queue was full, since start.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Notices given up after every retry, by client id, since start.
    pub fn failed(&self) -> BTreeMap<String, u64> {
        self.failed.lock().map(|f| f.clone()).unwrap_or_default()
    }

    fn count_failed(&self, client_id: &str) {
        if let Ok(mut f) = self.failed.lock() {
            *f.entry(client_id.to_string()).or_default() += 1;
        }
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
            self.dropped.fetch_add(1, Ordering::Relaxed);
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

/// Watched sessions' sids by user id.
type SidsByUser = BTreeMap<String, Vec<String>>;

/// Finds the watched sessions that have ended and queues them; sessions still live
/// stay watched. Those past their absolute end are found without a lookup; for the
/// rest (idle, or ended on another replica) at most [`SWEEP_BATCH`] users are looked
/// up, [`SWEEP_PARALLEL`] at once, going on next time from where this one stopped.
pub async fn sweep(app: &AppState) {
    let now = app.clock.now();
    let outbox = &app.backchannel;
    let (expired, by_user): (Vec<(String, String)>, SidsByUser) = {
        let Ok(mut w) = outbox.watched.lock() else { return };
        let expired: Vec<String> = w.iter().filter(|(_, (_, end))| *end <= now).map(|(sid, _)| sid.clone()).collect();
        let expired = expired.into_iter().filter_map(|sid| w.remove(&sid).map(|(user, _)| (sid, user))).collect();
        let mut m = SidsByUser::new();
        for (sid, (user, _)) in w.iter() {
            m.entry(user.clone()).or_default().push(sid.clone());
        }
        (expired, m)
    };
    for (sid, user_id) in expired {
        outbox.push(Ended { sid, user_id });
    }
    // This turn's users: those after the cursor, then from the start again.
    let cursor = outbox.sweep_cursor.lock().ok().and_then(|c| c.clone());
    let after = by_user.iter().filter(|(u, _)| cursor.as_ref().is_none_or(|c| *u > c));
    let before = by_user.iter().filter(|(u, _)| cursor.as_ref().is_some_and(|c| *u <= c));
    let turn: Vec<(String, Vec<String>)> = after.chain(before).take(SWEEP_BATCH).map(|(u, s)| (u.clone(), s.clone())).collect();
    if let (Some((last, _)), Ok(mut c)) = (turn.last(), outbox.sweep_cursor.lock()) {
        *c = Some(last.clone());
    }
    let lookups = futures_util::stream::iter(turn).map(|(user, sids)| async move {
        match app.sessions.list_user(&user, now).await {
            Ok(l) => {
                let live: Vec<String> = l.into_iter().filter(|(_, s)| s.live(now)).map(|(sid, _)| sid).collect();
                Some((user, sids.into_iter().filter(|s| !live.contains(s)).collect::<Vec<_>>()))
            }
            // The store is away: nothing is known to have ended.
            Err(_) => None,
        }
    });
    let mut each = lookups.buffer_unordered(SWEEP_PARALLEL);
    while let Some(found) = each.next().await {
        let Some((user, ended)) = found else { continue };
        for sid in ended {
            if let Ok(mut w) = outbox.watched.lock() {
                w.remove(&sid);
            }
            outbox.push(Ended { sid, user_id: user.clone() });
        }
    }
}

/// Aborts the tasks it holds when dropped: the sweep and the client workers end with
/// the task that [`spawn`] returns.
struct Tasks(Vec<JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

/// One notice for one client.
struct Notice {
    uri: String,
    ended: Ended,
}

/// Starts the delivery task (and the sweep's); it runs until the queue closes (the app
/// is dropped) or the handle is aborted, which ends the sweep and the client workers
/// too. A second call finds the queue taken and does nothing.
pub fn spawn(app: AppState) -> JoinHandle<()> {
    let rx = app.backchannel.rx.lock().ok().and_then(|mut r| r.take());
    tokio::spawn(async move {
        let Some(mut rx) = rx else { return };
        let sweeper = {
            let app = app.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(SWEEP_MS));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    sweep(&app).await;
                }
            })
        };
        let mut tasks = Tasks(vec![sweeper]);
        let mut queues: HashMap<String, mpsc::Sender<Notice>> = HashMap::new();
        while let Some(ended) = rx.recv().await {
            notify(&app, &ended, &mut queues, &mut tasks).await;
        }
    })
}

/// Hands the ending to the queue of each client that holds tokens of the session,
/// without waiting for any app: a full queue drops the notice (and counts it).
async fn notify(app: &AppState, ended: &Ended, queues: &mut HashMap<String, mpsc::Sender<Notice>>, tasks: &mut Tasks) {
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
        let queue = queues.entry(c.client_id.clone()).or_insert_with(|| {
            let (tx, rx) = mpsc::channel(CLIENT_QUEUE_MAX);
            tasks.0.push(tokio::spawn(client_worker(app.clone(), c.client_id.clone(), rx)));
            tx
        });
        if let Err(err) = queue.try_send(Notice { uri, ended: ended.clone() }) {
            app.backchannel.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(client_id = %c.client_id, error = %err, "back-channel logout: this client's queue is full; it will not be told that a session ended");
        }
    }
}

/// One client's deliveries: at most [`CLIENT_IN_FLIGHT_MAX`] at once; the rest wait in
/// its own queue. Dropping it (abort) ends its deliveries in flight.
async fn client_worker(app: AppState, client_id: String, mut rx: mpsc::Receiver<Notice>) {
    let mut in_flight = JoinSet::new();
    loop {
        while in_flight.try_join_next().is_some() {}
        if in_flight.len() >= CLIENT_IN_FLIGHT_MAX {
            in_flight.join_next().await;
            continue;
        }
        let Some(n) = rx.recv().await else { break };
        let (app, client_id) = (app.clone(), client_id.clone());
        in_flight.spawn(async move {
            if !deliver(&app, &client_id, &n.uri, &n.ended).await {
                app.backchannel.count_failed(&client_id);
            }
        });
    }
    while in_flight.join_next().await.is_some() {}
}

/// Signs the logout token (when its delivery starts, so it is fresh) and POSTs it,
/// retrying with backoff while the app is unreachable, slow past [`ATTEMPT_TIMEOUT`],
/// or answers 5xx; a 4xx is the app's final word (OIDC Back-Channel Logout 2.8).
/// False when the notice was not taken: given up, refused, or not signed.
async fn deliver(app: &AppState, client_id: &str, uri: &str, ended: &Ended) -> bool {
    let now = app.clock.now() / 1000;
    let claims = json!({
        "iss": app.config.public_base(),
        "aud": client_id,
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
            return false;
        }
    };
    for (attempt, wait) in BACKOFF_MS.iter().enumerate() {
        tokio::time::sleep(Duration::from_millis(*wait)).await;
        match app.http.post(uri).timeout(ATTEMPT_TIMEOUT).form(&[("logout_token", &token)]).send().await {
            Ok(r) if r.status().is_success() => {
                tracing::info!(client_id, attempt, "back-channel logout delivered");
                return true;
            }
            Ok(r) if r.status().is_client_error() => {
                // Final, and counted as failed: the app did not take the notice.
                tracing::warn!(client_id, status = r.status().as_u16(), "back-channel logout refused by the app");
                return false;
            }
            Ok(r) => tracing::info!(client_id, attempt, status = r.status().as_u16(), "back-channel logout failed; retrying"),
            Err(e) => tracing::info!(client_id, attempt, error = %e, "back-channel logout unreachable; retrying"),
        }
    }
    tracing::warn!(client_id, "back-channel logout not delivered after every retry");
    false
}
