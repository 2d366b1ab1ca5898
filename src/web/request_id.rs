//! Request ids: taken from a well-formed incoming `x-request-id` of a trusted proxy
//! (`http.trusted_proxies`) or made here, put on
//! every response, every log line of the request, every error body and audit entry.

use std::time::Instant;

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use crate::app::AppState;

/// The header carrying the request id.
pub const HEADER: &str = "x-request-id";

tokio::task_local! {
    static CURRENT: String;
}

/// The id of the request being handled, if any.
pub fn current() -> Option<String> {
    CURRENT.try_with(Clone::clone).ok()
}

fn acceptable(v: &str) -> bool {
    !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// Text for a log line with its control characters (C0, DEL, C1) and line separators
/// escaped (`\u{85}`): what a client sends can neither forge a line nor drive a terminal.
pub struct Escaped<'a>(pub &'a str);

impl std::fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use std::fmt::Write;
        for c in self.0.chars() {
            if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') {
                write!(f, "{}", c.escape_unicode())?;
            } else {
                f.write_char(c)?;
            }
        }
        Ok(())
    }
}

/// The incoming id, when the peer is one of `http.trusted_proxies` (anyone else could
/// pick ids to blur the log's correlation) and the id is well formed.
fn trusted_id(app: &AppState, req: &Request) -> Option<String> {
    let peer = req.extensions().get::<ConnectInfo<SocketAddr>>()?.0.ip();
    if !app.config.http.trusted_proxy(peer) {
        return None;
    }
    req.headers().get(HEADER).and_then(|v| v.to_str().ok()).filter(|v| acceptable(v)).map(str::to_string)
}

/// Middleware: assigns the id, logs one line per request (method, path, status,
/// duration; never the query string, which can carry codes and tokens).
pub async fn layer(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let id = trusted_id(&app, &req).unwrap_or_else(|| crate::id::token(12));
    let method = req.method().clone();
    let path = Escaped(req.uri().path()).to_string();
    let span = tracing::info_span!("request", request_id = %id, %method, %path);
    let started = Instant::now();
    let mut resp = CURRENT.scope(id.clone(), next.run(req)).instrument(span.clone()).await;
    let status = resp.status().as_u16();
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    span.in_scope(|| {
        if status >= 500 {
            tracing::error!(status, duration_ms = ms, "request failed");
        } else {
            tracing::info!(status, duration_ms = ms, "request");
        }
    });
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(HEADER, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    #[test]
    fn control_characters_are_escaped_for_the_log() {
        assert_eq!(super::Escaped("/a\u{85}b\u{9b}\n\u{1b}[2J\u{2028}é").to_string(), "/a\\u{85}b\\u{9b}\\u{a}\\u{1b}[2J\\u{2028}é");
    }
}
