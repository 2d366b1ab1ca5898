//! Request ids: taken from a well-formed incoming `x-request-id` or made here, put on
//! every response, every log line of the request, every error body and audit entry.

use std::time::Instant;

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

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

/// Middleware: assigns the id, logs one line per request (method, path, status,
/// duration; never the query string, which can carry codes and tokens).
pub async fn layer(req: Request, next: Next) -> Response {
    let id = req.headers().get(HEADER).and_then(|v| v.to_str().ok()).filter(|v| acceptable(v)).map(str::to_string).unwrap_or_else(|| crate::id::token(12));
    let method = req.method().clone();
    let path = req.uri().path().to_string();
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
