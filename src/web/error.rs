//! The one place errors become HTTP answers: bad input 400/422 naming the field, not
//! authenticated 401, not allowed 403, missing 404, conflict 409, too large 413;
//! a store that is down or dropped the connection 503 with `Retry-After`; internal
//! failures 500, logged with the request id while the body shows only the id.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::connection::{ConnectionError, FieldError};
use crate::directory::DirectoryError;
use crate::store::StoreError;

/// The JSON body of every error.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// Machine-readable kind: `invalid`, `not_found`, `conflict`, ...
    pub error: String,
    /// A sentence saying what is wrong and what to do.
    pub message: String,
    /// Field-level problems, for validation errors.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldError>,
    /// Quote this when reporting a problem.
    pub request_id: Option<String>,
}

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Kind.
    pub kind: &'static str,
    /// Message.
    pub message: String,
    /// Field problems.
    pub fields: Vec<FieldError>,
    /// Extra headers (for example `WWW-Authenticate`).
    pub www_authenticate: Option<&'static str>,
}

impl ApiError {
    /// An error with a status, kind and message.
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self { status, kind, message: message.into(), fields: vec![], www_authenticate: None }
    }

    /// 400: the request cannot be read.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 404.
    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", format!("{} not found", what.into()))
    }

    /// 422 with field errors.
    pub fn invalid(fields: Vec<FieldError>) -> Self {
        let message = fields.iter().map(|f| format!("{}: {}", f.field, f.message)).collect::<Vec<_>>().join("; ");
        Self { fields, ..Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message) }
    }

    /// 500: logged here with its cause; the answer carries only the request id.
    pub fn internal(cause: &dyn std::error::Error) -> Self {
        let mut chain = cause.to_string();
        let mut src = cause.source();
        while let Some(s) = src {
            chain.push_str(": ");
            chain.push_str(&s.to_string());
            src = s.source();
        }
        tracing::error!(error = %chain, "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error; quote the request id when reporting it")
    }

    /// 503: a dependency is unavailable (logged once per outage, not per request).
    pub fn unavailable(cause: &dyn std::error::Error) -> Self {
        super::outage::STORE.failed(cause);
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "the store is unavailable; retry shortly")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody { error: self.kind.to_string(), message: self.message, fields: self.fields, request_id: super::request_id::current() };
        let mut resp = (self.status, axum::Json(body)).into_response();
        if let Some(v) = self.www_authenticate {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static(v));
        }
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static(super::outage::RETRY_AFTER_SECONDS));
        }
        resp
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => ApiError::not_found(what),
            StoreError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "conflict", m),
            StoreError::Stale { .. } => ApiError::new(StatusCode::CONFLICT, "stale", e.to_string()),
            StoreError::Backend(ref inner) if is_unavailable(inner) => ApiError::unavailable(&e),
            other => ApiError::internal(&other),
        }
    }
}

pub use crate::store::is_unavailable;

impl From<ConnectionError> for ApiError {
    fn from(e: ConnectionError) -> Self {
        match e {
            ConnectionError::NotFound(id) => ApiError::not_found(format!("connection {id}")),
            ConnectionError::Invalid(fields) => ApiError::invalid(fields),
            ConnectionError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "conflict", m),
            ConnectionError::Stale { .. } => ApiError::new(StatusCode::CONFLICT, "stale", e.to_string()),
            ConnectionError::Managed(m) => ApiError::new(StatusCode::CONFLICT, "managed_by_config", m),
            ConnectionError::Store(s) => s.into(),
            other => ApiError::internal(&other),
        }
    }
}

impl From<DirectoryError> for ApiError {
    fn from(e: DirectoryError) -> Self {
        match e {
            DirectoryError::NotFound(what) => ApiError::not_found(what),
            DirectoryError::Invalid(fields) => ApiError::invalid(fields),
            DirectoryError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "conflict", m),
            DirectoryError::Managed(m) => ApiError::new(StatusCode::CONFLICT, "managed_by_config", m),
            DirectoryError::Store(s) => s.into(),
        }
    }
}
