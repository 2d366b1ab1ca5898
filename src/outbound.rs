//! Outbound HTTP to identity providers (discovery, metadata, JWKS, token calls).
//! One client: redirects never followed (an IdP URL must not bounce us to an internal
//! address), timeouts always set, response bodies capped.

use std::time::Duration;

/// What went wrong calling out.
#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    /// Connection failed, timed out, or the body could not be read.
    #[error("could not reach {url}: {reason}")]
    Unreachable {
        /// The URL.
        url: String,
        /// Why, in words.
        reason: String,
    },
    /// The server answered with a status other than 200.
    #[error("{url} answered HTTP {status}")]
    Status {
        /// The URL.
        url: String,
        /// The status.
        status: u16,
    },
    /// The body was larger than allowed.
    #[error("{url} sent more than {limit} bytes")]
    TooLarge {
        /// The URL.
        url: String,
        /// The limit.
        limit: usize,
    },
}

/// The outbound client: no redirects, timeouts set. A client that cannot be built
/// with these guarantees is an error, never a fallback without them.
pub fn client(timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .user_agent(concat!("ssogate/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Reads a response body, refusing more than `limit` bytes.
pub async fn read_capped(url: &str, mut resp: reqwest::Response, limit: usize) -> Result<Vec<u8>, OutboundError> {
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| OutboundError::Unreachable { url: url.into(), reason: reason(&e) })? {
        if body.len() + chunk.len() > limit {
            return Err(OutboundError::TooLarge { url: url.into(), limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn reason(e: &reqwest::Error) -> String {
    describe(e)
}

/// Why a call out failed, in words an admin can act on: timed out, or the connection
/// failed, with the innermost cause (a DNS name that does not resolve, a TLS certificate
/// that does not verify, a refused port). Never a secret: reqwest's messages carry the
/// URL, which is configuration, and no body or header.
pub fn describe(e: &reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "the connection failed"
    } else if e.is_body() || e.is_decode() {
        "the answer could not be read"
    } else {
        "the request failed"
    };
    let mut cause: Option<&dyn std::error::Error> = std::error::Error::source(e);
    let mut innermost = None;
    while let Some(c) = cause {
        innermost = Some(c.to_string());
        cause = c.source();
    }
    match innermost {
        Some(c) if !c.is_empty() => format!("{what}: {}", c.chars().take(300).collect::<String>()),
        _ => what.to_string(),
    }
}

/// GETs `url` and returns its body (at most `limit` bytes) when the answer is 200.
pub async fn get_bytes(client: &reqwest::Client, url: &str, limit: usize) -> Result<Vec<u8>, OutboundError> {
    let resp = client.get(url).send().await.map_err(|e| OutboundError::Unreachable { url: url.into(), reason: reason(&e) })?;
    if resp.status() != reqwest::StatusCode::OK {
        return Err(OutboundError::Status { url: url.into(), status: resp.status().as_u16() });
    }
    read_capped(url, resp, limit).await
}
