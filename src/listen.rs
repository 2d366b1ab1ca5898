//! The accept loop: one HTTP/1 connection per socket, each served by the gateway's
//! [`Front`](crate::server::Front) with its peer address, under three bounds
//! (`[http]`): a new connection must send its first request's headers within
//! `header_read_timeout_seconds`; a connection with no request in progress is closed
//! after `idle_timeout_seconds`; at most `max_connections` are open, and at the cap the
//! longest-idle one is closed to make room, so idle sockets never starve `/auth`.
//!
//! hyper's own `header_read_timeout` restarts its clock between keep-alive requests,
//! so it would also cut idle keep-alive at the header timeout; the watch here tells the
//! two apart by the requests the front sees. On shutdown: stop accepting, let the
//! requests in flight finish, then return.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};
use tower::ServiceExt;

use crate::config::HttpConfig;
use crate::server::Front;

/// What the front tells the accept loop about one connection's requests.
#[derive(Debug)]
pub struct Activity {
    base: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds after `base` of the last response (or of the accept, before any).
    last_ms: AtomicU64,
    served_one: AtomicBool,
    evicting: AtomicBool,
    evict: Notify,
}

impl Activity {
    fn new(base: Instant) -> Self {
        let me = Self {
            base,
            in_flight: AtomicUsize::new(0),
            last_ms: AtomicU64::new(0),
            served_one: AtomicBool::new(false),
            evicting: AtomicBool::new(false),
            evict: Notify::new(),
        };
        me.last_ms.store(me.now_ms(), Ordering::Relaxed);
        me
    }

    fn now_ms(&self) -> u64 {
        self.base.elapsed().as_millis() as u64
    }

    /// A request began; the returned guard ends it when dropped.
    pub fn begin(self: &Arc<Self>) -> Busy {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        Busy(self.clone())
    }

    fn idle(&self) -> bool {
        self.in_flight.load(Ordering::Relaxed) == 0
    }

    /// When this connection, left as it is, has overstayed: none while a request runs.
    fn deadline(&self, header: Duration, idle: Duration) -> Option<Instant> {
        if !self.idle() {
            return None;
        }
        let allowed = if self.served_one.load(Ordering::Relaxed) { idle } else { header };
        Some(self.base + Duration::from_millis(self.last_ms.load(Ordering::Relaxed)) + allowed)
    }
}

/// A request in progress on a connection.
#[derive(Debug)]
pub struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        let a = &self.0;
        a.served_one.store(true, Ordering::Relaxed);
        a.last_ms.store(a.now_ms(), Ordering::Relaxed);
        a.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The open connections, for the cap.
#[derive(Default)]
struct Table {
    open: Mutex<HashMap<u64, Arc<Activity>>>,
    ended: Notify,
}

impl Table {
    fn len(&self) -> usize {
        self.open.lock().map_or(0, |m| m.len())
    }

    /// Asks the longest-idle connection to close; false when every one is busy.
    fn evict_longest_idle(&self) -> bool {
        let Ok(open) = self.open.lock() else { return false };
        let victim = open.values().filter(|a| a.idle() && !a.evicting.load(Ordering::Relaxed)).min_by_key(|a| a.last_ms.load(Ordering::Relaxed));
        match victim {
            Some(a) => {
                a.evicting.store(true, Ordering::Relaxed);
                a.evict.notify_one();
                true
            }
            None => false,
        }
    }
}

/// Removes a connection from the table when its task ends, however it ends.
struct Registered(Arc<Table>, u64);

impl Drop for Registered {
    fn drop(&mut self) {
        if let Ok(mut open) = self.0.open.lock() {
            open.remove(&self.1);
        }
        self.0.ended.notify_one();
    }
}

/// Serves `front` on `listener` until `shutdown` resolves.
pub async fn run(listener: TcpListener, front: Front, http: &HttpConfig, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
    let header = Duration::from_secs(http.header_read_timeout_seconds);
    let idle = Duration::from_secs(http.idle_timeout_seconds);
    let cap = http.max_connections;
    let base = Instant::now();
    let table = Arc::new(Table::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut next_id = 0u64;
    loop {
        // At the cap, make room: close the longest-idle connection, or wait for one to end.
        while table.len() >= cap {
            let freed = table.ended.notified();
            if !table.evict_longest_idle() {
                tracing::warn!(max_connections = cap, "connection cap reached and every connection is busy: waiting");
            }
            tokio::select! {
                () = freed => {}
                () = &mut shutdown => return finish(listener, stop_tx, stop_rx).await,
            }
        }
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors (or the like): wait rather than spin.
                    tracing::error!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        next_id += 1;
        let activity = Arc::new(Activity::new(base));
        if let Ok(mut open) = table.open.lock() {
            open.insert(next_id, activity.clone());
        }
        let registered = Registered(table.clone(), next_id);
        let service = front.for_connection(peer, activity.clone()).map_request(|req: hyper::Request<Incoming>| req.map(Body::new));
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let _registered = registered;
            let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
            let mut conn = std::pin::pin!(conn);
            let mut stopping = false;
            loop {
                let deadline = activity.deadline(header, idle);
                let wake = deadline.unwrap_or_else(|| Instant::now() + idle);
                tokio::select! {
                    _ = conn.as_mut() => return,
                    () = tokio::time::sleep_until(wake.into()) => {
                        // Dropping the connection closes the socket.
                        if activity.deadline(header, idle).is_some_and(|d| d <= Instant::now()) {
                            return;
                        }
                    }
                    () = activity.evict.notified() => {
                        if activity.idle() {
                            return;
                        }
                        activity.evicting.store(false, Ordering::Relaxed);
                    }
                    _ = stop.wait_for(|s| *s), if !stopping => {
                        stopping = true;
                        conn.as_mut().graceful_shutdown();
                    }
                }
            }
        });
    }
    finish(listener, stop_tx, stop_rx).await
}

async fn finish(listener: TcpListener, stop_tx: watch::Sender<bool>, stop_rx: watch::Receiver<bool>) -> std::io::Result<()> {
    drop(listener);
    drop(stop_rx);
    let _ = stop_tx.send(true);
    stop_tx.closed().await;
    Ok(())
}

/// Warns when the file-descriptor limit cannot hold `max_connections` plus what the
/// gateway needs besides (store pool, Redis, outbound calls, files); returns whether
/// it can (true where the limit cannot be read).
pub fn check_fd_limit(max_connections: usize) -> bool {
    let need = max_connections as u64 + FD_RESERVE;
    let Some(soft) = fd_limit() else { return true };
    if soft >= need {
        return true;
    }
    tracing::warn!(
        open_files_limit = soft,
        max_connections,
        "the open-files limit (ulimit -n) is too low for http.max_connections plus {FD_RESERVE} for the gateway itself: \
         raise the limit or lower http.max_connections, or accept() fails under load and idle sockets can starve /auth"
    );
    false
}

/// Descriptors kept for everything but client connections.
const FD_RESERVE: u64 = 256;

/// The soft `RLIMIT_NOFILE`, as `/proc/self/limits` shows it (Linux).
fn fd_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line["Max open files".len()..].split_whitespace().next()?;
    if soft == "unlimited" {
        return Some(u64::MAX);
    }
    soft.parse().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_fd_limit_is_read_and_compared_with_the_cap() {
        assert!(super::fd_limit().is_some_and(|n| n > 0));
        assert!(!super::check_fd_limit(usize::MAX / 2), "no limit holds that many");
    }
}
