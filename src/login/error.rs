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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
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

/// Why a login was refused, from a small fixed set: a label of the metrics and a field
/// of the audit event (the log line and the page keep the full sentence). Never free
/// text, so no client can make a new series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// The request cannot be a login's (a parameter too long, a form that does not read).
    BadRequest,
    /// No such connection, or it is turned off.
    UnknownConnection,
    /// The reply is larger than `http.max_body_bytes`.
    TooLarge,
    /// The reply answers no login this browser started (expired, used, or none).
    FlowMissing,
    /// The login was started in another browser.
    WrongBrowser,
    /// The IdP could not be reached or did not answer usably (DNS, TLS, timeout, status).
    IdpUnavailable,
    /// The IdP said no (an `error` in the callback, a SAML status other than Success).
    IdpRefused,
    /// The reply failed a check: signature, issuer, audience, times, nonce, claims.
    InvalidReply,
    /// The reply could not be read (not XML, not a token, parameters missing).
    MalformedReply,
    /// The SAML assertion was used before.
    Replay,
    /// The connection requires a verified email and the IdP did not vouch for it.
    EmailNotVerified,
    /// No account, no invitation, and the connection does not create users.
    NoAccount,
    /// The account is disabled.
    UserDisabled,
    /// The store or the state store did not answer.
    Unavailable,
    /// The reply verified but the connection does not admit the user (an allow rule, a
    /// tenant not allowed).
    NotAllowed,
    /// The IdP sent an overage pointer instead of the groups while group sync is on.
    GroupsOverage,
    /// Anything else.
    Other,
}

impl Reason {
    /// The name in metrics and audit events.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::BadRequest => "bad_request",
            Reason::UnknownConnection => "unknown_connection",
            Reason::TooLarge => "too_large",
            Reason::FlowMissing => "flow_missing",
            Reason::WrongBrowser => "wrong_browser",
            Reason::IdpUnavailable => "idp_unavailable",
            Reason::IdpRefused => "idp_refused",
            Reason::InvalidReply => "invalid_reply",
            Reason::MalformedReply => "malformed_reply",
            Reason::Replay => "replay",
            Reason::EmailNotVerified => "email_not_verified",
            Reason::NoAccount => "no_account",
            Reason::UserDisabled => "user_disabled",
            Reason::Unavailable => "unavailable",
            Reason::NotAllowed => "not_allowed",
            Reason::GroupsOverage => "groups_overage",
            Reason::Other => "other",
        }
    }

    /// What a status says when the caller named no reason.
    fn of_status(status: StatusCode) -> Self {
        match status.as_u16() {
            400 => Reason::BadRequest,
            404 => Reason::UnknownConnection,
            413 => Reason::TooLarge,
            502 => Reason::IdpUnavailable,
            503 => Reason::Unavailable,
            _ => Reason::Other,
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
    reason: Reason,
    message: String,
    cause: String,
    // Boxed strings keep the error small (it travels in every `Result` of a login).
    connection: Option<Box<str>>,
    user: Option<Box<str>>,
    retry: Option<Box<str>>,
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
        Self { status, step, reason: Reason::of_status(status), cause: message.clone(), message, connection: None, user: None, retry: None, outage: None }
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
        let (status, reason) = match e {
            UpstreamError::Unavailable(_) => (StatusCode::BAD_GATEWAY, Reason::IdpUnavailable),
            UpstreamError::Malformed(_) => (StatusCode::BAD_REQUEST, Reason::MalformedReply),
            UpstreamError::Refused(_) => (StatusCode::FORBIDDEN, Reason::IdpRefused),
            UpstreamError::Invalid(_) => (StatusCode::FORBIDDEN, Reason::InvalidReply),
            UpstreamError::NotAllowed(_) => (StatusCode::FORBIDDEN, Reason::NotAllowed),
            UpstreamError::GroupsOverage(_) => (StatusCode::FORBIDDEN, Reason::GroupsOverage),
        };
        let err = Self::new(status, Step::Upstream, e.to_string()).reason(reason);
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
        self.connection = Some(id.into());
        self
    }

    /// Why, from the fixed set (default: what the status says).
    pub fn reason(mut self, reason: Reason) -> Self {
        self.reason = reason;
        self
    }

    /// The user the login was for, when it got that far.
    pub fn user(mut self, id: &str) -> Self {
        self.user = Some(id.into());
        self
    }

    /// Where "try again" goes (default: the login page).
    pub fn retry(mut self, href: Option<String>) -> Self {
        self.retry = href.map(String::into_boxed_str);
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

    /// Why, as the metrics and the audit name it.
    pub fn why(&self) -> Reason {
        self.reason
    }

    /// The connection id the login named (not necessarily one that exists).
    pub fn connection_id(&self) -> Option<&str> {
        self.connection.as_deref()
    }

    /// The user, when known.
    pub fn user_id(&self) -> Option<&str> {
        self.user.as_deref()
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
        let (status, step, reason) = (self.status.as_u16(), self.step.as_str(), self.reason.as_str());
        match self.outage {
            // The outage's start is logged once (and once a minute while it lasts); each
            // request still says which login step it stopped.
            Some(Outage::State) => crate::web::outage::STATE.failed(&self.cause),
            Some(Outage::Store) => crate::web::outage::STORE.failed(&self.cause),
            None => {}
        }
        if self.outage.is_some() {
            tracing::debug!(request_id, connection, step, reason, status, cause = %self.cause, "login refused");
        } else {
            tracing::warn!(request_id, connection, step, reason, status, cause = %self.cause, "login refused");
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
        assert_eq!(e.why(), Reason::IdpUnavailable);
        assert_eq!(LoginError::upstream(&UpstreamError::Invalid("bad signature".into()), None).why(), Reason::InvalidReply);
        assert_eq!(LoginError::bad_request(Step::Reply, "x").why(), Reason::BadRequest);
        assert_eq!(LoginError::forbidden(Step::Flow, "x").reason(Reason::FlowMissing).why().as_str(), "flow_missing");
        assert!(e.to_string().contains("upstream: code exchange: the identity provider could not be used"), "{e}");
    }
}
