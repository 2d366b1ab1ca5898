//! The one error of the browser-facing login. Every refusal a browser can see goes
//! through [`LoginError`]: it picks the status, renders the page (a sentence the user can
//! act on, the request id to quote, a "try again" that returns to the same login), and
//! writes one log line with the request id, the connection, the step and the
//! underlying cause (DNS, TLS, timeout, HTTP status, which check failed).

use std::fmt;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::upstream::UpstreamError;
use crate::web::page;

/// Where in a login a refusal happened (a log field, and the admin's first clue).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The login's start (`/login/{id}`).
    Start,
    /// Reading the IdP's reply (the callback's or ACS's own parameters).
    Reply,
    /// Finding the login this reply answers (state, RelayState, flow cookie).
    Flow,
    /// The protocol step: the IdP's answer, the code exchange, signatures, claims.
    Upstream,
    /// The replay check.
    Replay,
    /// The directory: who the user is, whether they may sign in, their groups.
    Directory,
    /// Starting the session.
    Session,
}

impl Step {
    /// The name in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Start => "start",
            Step::Reply => "reply",
            Step::Flow => "flow",
            Step::Upstream => "upstream",
            Step::Replay => "replay",
            Step::Directory => "directory",
            Step::Session => "session",
        }
    }
}

/// Which store an outage is in: logged once per outage, not once per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outage {
    State,
    Store,
}

/// A refused login (see the module's text).
#[derive(Debug)]
pub struct LoginError {
    status: StatusCode,
    step: Step,
    message: String,
    cause: String,
    connection: Option<String>,
    retry: Option<String>,
    outage: Option<Outage>,
}

const UNAVAILABLE: &str = "Sign-in is unavailable right now; try again shortly.";

fn sentence(s: &str) -> String {
    let mut c = s.chars();
    let first = c.next().map(|f| f.to_uppercase().collect::<String>() + c.as_str()).unwrap_or_default();
    if first.ends_with(['.', '!', '?']) {
        first
    } else {
        first + "."
    }
}

impl LoginError {
    /// A refusal at `step`: `message` is shown and logged.
    pub fn new(status: StatusCode, step: Step, message: impl Into<String>) -> Self {
        let message = sentence(&message.into());
        Self { status, step, cause: message.clone(), message, connection: None, retry: None, outage: None }
    }

    /// 400: the request is not one a login can continue from.
    pub fn bad_request(step: Step, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, step, message)
    }

    /// 403: the login is refused.
    pub fn forbidden(step: Step, message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, step, message)
    }

    /// 503 with `Retry-After`: the state store (flows, sessions, replay markers) did not answer.
    pub fn state_unavailable(step: Step, cause: &dyn fmt::Display) -> Self {
        Self { outage: Some(Outage::State), ..Self::new(StatusCode::SERVICE_UNAVAILABLE, step, UNAVAILABLE).cause(cause) }
    }

    /// 503 with `Retry-After`: the store (connections, the directory) did not answer.
    pub fn store_unavailable(step: Step, cause: &dyn fmt::Display) -> Self {
        Self { outage: Some(Outage::Store), ..Self::new(StatusCode::SERVICE_UNAVAILABLE, step, UNAVAILABLE).cause(cause) }
    }

    /// The protocol step failed: 502 when the IdP could not be used, 400 for a malformed
    /// reply, else 403.
    pub fn upstream(e: &UpstreamError, failed_check: Option<&str>) -> Self {
        let status = match e {
            UpstreamError::Unavailable(_) => StatusCode::BAD_GATEWAY,
            UpstreamError::Malformed(_) => StatusCode::BAD_REQUEST,
            UpstreamError::Refused(_) | UpstreamError::Invalid(_) => StatusCode::FORBIDDEN,
        };
        let err = Self::new(status, Step::Upstream, e.to_string());
        match failed_check {
            Some(check) => err.cause(format!("{check}: {e}")),
            None => err,
        }
    }

    /// What the log says (the page keeps its sentence).
    pub fn cause(mut self, cause: impl fmt::Display) -> Self {
        self.cause = cause.to_string();
        self
    }

    /// The connection the login went through.
    pub fn connection(mut self, id: &str) -> Self {
        self.connection = Some(id.to_string());
        self
    }

    /// Where "try again" goes (default: the login page).
    pub fn retry(mut self, href: Option<String>) -> Self {
        self.retry = href;
        self
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The sentence shown.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The step.
    pub fn step(&self) -> Step {
        self.step
    }
}

impl fmt::Display for LoginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}: {})", self.message, self.step.as_str(), self.cause)
    }
}

impl IntoResponse for LoginError {
    fn into_response(self) -> Response {
        let request_id = crate::web::request_id::current().unwrap_or_default();
        let connection = self.connection.as_deref().unwrap_or("-");
        let (status, step) = (self.status.as_u16(), self.step.as_str());
        match self.outage {
            // The outage's start is logged once (and once a minute while it lasts); each
            // request still says which login step it stopped.
            Some(Outage::State) => crate::web::outage::STATE.failed(&self.cause),
            Some(Outage::Store) => crate::web::outage::STORE.failed(&self.cause),
            None => {}
        }
        if self.outage.is_some() {
            tracing::debug!(request_id, connection, step, status, cause = %self.cause, "login refused");
        } else {
            tracing::warn!(request_id, connection, step, status, cause = %self.cause, "login refused");
        }
        let mut resp = page::error_with_retry(self.status, &self.message, self.retry.as_deref().unwrap_or("/login"));
        if self.outage.is_some() {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static(crate::web::outage::RETRY_AFTER_SECONDS));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentences_start_upper_and_end_once() {
        assert_eq!(LoginError::forbidden(Step::Flow, "this sign-in expired").message(), "This sign-in expired.");
        assert_eq!(LoginError::forbidden(Step::Flow, "Done.").message(), "Done.");
        let e = LoginError::upstream(&UpstreamError::Unavailable("the token endpoint could not be reached (timed out)".into()), Some("code exchange"));
        assert_eq!(e.status(), StatusCode::BAD_GATEWAY);
        assert!(e.to_string().contains("upstream: code exchange: the identity provider could not be used"), "{e}");
    }
}
