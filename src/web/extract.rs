//! Extractors whose failures are our JSON errors naming what is wrong: JSON bodies
//! (content type, size, syntax, unknown fields, wrong types, with the field's path),
//! query strings and path segments.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;

use super::ApiError;

/// A JSON body, read strictly.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("application/json"))
            .unwrap_or(false);
        if !json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as JSON with Content-Type: application/json",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", "the request body is larger than the server accepts (http.max_body_bytes)")
            } else {
                ApiError::bad_request("the request body could not be read")
            }
        })?;
        parse(&bytes).map(ApiJson)
    }
}

/// Fields that hold objects in our request bodies. serde's derived structs also accept
/// a JSON array (fields by position), which silently maps values to the wrong fields:
/// refuse that shape before deserializing.
/// (The protocols' sections, `oidc` and `saml`, are named by `Protocol::ALL`.)
const OBJECT_FIELDS: &[&str] = &["claims", "placeholders", "idp"];

fn check_shape(bytes: &[u8]) -> Result<(), ApiError> {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(bytes) else {
        return Ok(()); // the typed parse below reports syntax errors with their position
    };
    let Some(obj) = v.as_object() else {
        return Err(ApiError::invalid(vec![crate::connection::FieldError::new("body", "must be a JSON object")]));
    };
    if has_nul(&v) {
        return Err(ApiError::invalid(vec![crate::connection::FieldError::new("body", "must not contain NUL characters")]));
    }
    let protocols = crate::connection::Protocol::ALL.map(crate::connection::Protocol::as_str);
    for f in OBJECT_FIELDS.iter().chain(protocols.iter()) {
        if obj.get(*f).is_some_and(|x| !x.is_object() && !x.is_null()) {
            return Err(ApiError::invalid(vec![crate::connection::FieldError::new(*f, "must be a JSON object")]));
        }
    }
    Ok(())
}

fn has_nul(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::String(s) => s.contains('\0'),
        serde_json::Value::Array(a) => a.iter().any(has_nul),
        serde_json::Value::Object(o) => o.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

/// Parses JSON, naming the path of a field that is wrong.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    check_shape(bytes)?;
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    match serde_path_to_error::deserialize(de) {
        Ok(v) => Ok(v),
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let at = if path == "." { String::new() } else { format!("{path}: ") };
            match inner.classify() {
                serde_json::error::Category::Data => Err(ApiError::invalid(vec![crate::connection::FieldError::new(
                    if path == "." { "body".to_string() } else { path },
                    strip_position(&inner.to_string()),
                )])),
                _ => Err(ApiError::bad_request(format!("the body is not valid JSON: {at}{inner}"))),
            }
        }
    }
}

fn strip_position(msg: &str) -> String {
    match msg.find(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

/// A query string, read strictly.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let q = parts.uri.query().unwrap_or("");
        serde_urlencoded::from_str(q).map(ApiQuery).map_err(|e| ApiError::bad_request(format!("the query string is not valid: {e}")))
    }
}

fn percent_decoded_has_control(path: &str) -> bool {
    let bytes: Vec<u8> =
        url::form_urlencoded::parse(format!("p={}", path.replace('+', "%2B")).as_bytes()).next().map(|(_, v)| v.into_owned().into_bytes()).unwrap_or_default();
    bytes.iter().any(|b| b.is_ascii_control())
}

/// Path parameters.
#[derive(Debug)]
pub struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        // Ids are printable: control characters (NUL among them) never reach the store.
        if percent_decoded_has_control(parts.uri.path()) {
            return Err(ApiError::not_found("an id with control characters"));
        }
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(v)| ApiPath(v))
            .map_err(|e| ApiError::bad_request(format!("the path is not valid: {}", e.body_text())))
    }
}
