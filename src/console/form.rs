//! Console form bodies: `application/x-www-form-urlencoded`, or `multipart/form-data`
//! for forms with a file (the SAML IdP metadata). Both become the same list of fields;
//! the body size cap is the gateway's (`http.max_body_bytes`).

use axum::extract::{FromRequest, Multipart, Request};
use axum::http::{header, StatusCode};
use axum::response::Response;

use crate::app::AppState;

/// A submitted form: its fields in order (a name may repeat).
#[derive(Debug, Default, Clone)]
pub struct Form {
    fields: Vec<(String, String)>,
}

impl Form {
    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// Every field, in order.
    pub fn fields(&self) -> &[(String, String)] {
        &self.fields
    }
}

fn refused(message: &str) -> Response {
    super::error_page(StatusCode::BAD_REQUEST, "Form not readable", message)
}

impl FromRequest<AppState> for Form {
    type Rejection = Response;

    async fn from_request(req: Request, app: &AppState) -> Result<Self, Response> {
        let ct = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
        let mut fields = Vec::new();
        if ct.starts_with("multipart/form-data") {
            let mut parts = Multipart::from_request(req, app).await.map_err(|e| refused(&e.body_text()))?;
            loop {
                let field = match parts.next_field().await {
                    Ok(Some(f)) => f,
                    Ok(None) => break,
                    Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                        return Err(super::error_page(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            "Too large",
                            "The form (with its file) is larger than the gateway accepts.",
                        ))
                    }
                    Err(e) => return Err(refused(&e.body_text())),
                };
                let name = field.name().unwrap_or_default().to_string();
                let bytes = field.bytes().await.map_err(|e| refused(&e.body_text()))?;
                let text = String::from_utf8(bytes.to_vec()).map_err(|_| refused(&format!("The field {name} is not UTF-8 text.")))?;
                fields.push((name, text));
            }
        } else if ct.starts_with("application/x-www-form-urlencoded") {
            let bytes = axum::body::Bytes::from_request(req, app).await.map_err(|e| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    super::error_page(StatusCode::PAYLOAD_TOO_LARGE, "Too large", "The form is larger than the gateway accepts.")
                } else {
                    refused(&e.body_text())
                }
            })?;
            fields = serde_urlencoded::from_bytes(&bytes).map_err(|_| refused("The form could not be read."))?;
        } else {
            return Err(super::error_page(StatusCode::UNSUPPORTED_MEDIA_TYPE, "Form not readable", "Console forms are sent as HTML forms."));
        }
        Ok(Form { fields })
    }
}
