//! The console's static files, compiled into the binary: one style sheet, one small
//! script (copy buttons), and a logo per provider preset. The logos are simple
//! lettermarks in each vendor's colour, drawn here, not the vendors' artwork.

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::connection::Protocol;

const CSS: &str = include_str!("assets/console.css");
const JS: &str = include_str!("assets/console.js");

/// Short-lived caching: the files change only with the binary.
const CACHE: &str = "public, max-age=300";

/// `GET /console/assets/console.css`
pub async fn css() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, CACHE)], CSS).into_response()
}

/// `GET /console/assets/console.js`
pub async fn js() -> Response {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8"), (header::CACHE_CONTROL, CACHE)], JS).into_response()
}

/// A provider's lettermark: (letters, background colour, letter colour).
fn mark(provider: &str) -> (&'static str, &'static str, &'static str) {
    match provider {
        "adfs" => ("AD", "#0078d4", "#ffffff"),
        "auth0" => ("A0", "#eb5424", "#ffffff"),
        "azure" => ("Az", "#0062ad", "#ffffff"),
        "cognito" => ("Co", "#dd344c", "#ffffff"),
        "google" => ("G", "#ffffff", "#4285f4"),
        "keycloak" => ("K", "#4d4d4d", "#ffffff"),
        "okta" => ("O", "#00297a", "#ffffff"),
        "ping" => ("P", "#b3282d", "#ffffff"),
        "duo" => ("D", "#6bbf4e", "#ffffff"),
        "jumpcloud" => ("JC", "#1a8a72", "#ffffff"),
        _ => ("", "#64748b", "#ffffff"),
    }
}

/// The SVG of a provider's logo.
pub fn svg(provider: &str) -> String {
    let (letters, bg, fg) = mark(provider);
    let border = if bg == "#ffffff" { " stroke=\"#d5d9e0\" stroke-width=\"1.5\"" } else { "" };
    let inner = if letters.is_empty() {
        // Custom: a plug, for "any other provider".
        format!(
            "<path d=\"M15 9v5M25 9v5M12 14h16v5a8 8 0 0 1-16 0zM20 27v5\" fill=\"none\" stroke=\"{fg}\" stroke-width=\"2.4\" stroke-linecap=\"round\" stroke-linejoin=\"round\"/>"
        )
    } else {
        let size = if letters.len() > 1 { 15 } else { 20 };
        format!(
            "<text x=\"20\" y=\"20\" dy=\".35em\" text-anchor=\"middle\" font-family=\"Helvetica,Arial,sans-serif\" font-weight=\"700\" font-size=\"{size}\" fill=\"{fg}\">{letters}</text>"
        )
    };
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 40 40\" width=\"40\" height=\"40\" role=\"img\"><rect x=\"1\" y=\"1\" width=\"38\" height=\"38\" rx=\"9\" fill=\"{bg}\"{border}/>{inner}</svg>"
    )
}

/// The logo URL of a connection's provider (presets share a logo across protocols).
pub fn logo_path(_protocol: Protocol, provider: &str) -> String {
    let known = crate::connection::preset::all().iter().any(|p| p.provider == provider);
    format!("/console/assets/logos/{}.svg", if known { provider } else { "custom" })
}

/// `GET /console/assets/logos/{provider}.svg`
pub async fn logo(Path(file): Path<String>) -> Response {
    let Some(provider) = file.strip_suffix(".svg") else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if !crate::connection::preset::all().iter().any(|p| p.provider == provider) {
        return StatusCode::NOT_FOUND.into_response();
    }
    ([(header::CONTENT_TYPE, "image/svg+xml"), (header::CACHE_CONTROL, CACHE)], svg(provider)).into_response()
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_preset_has_its_own_mark_and_custom_a_plug() {
        for p in crate::connection::preset::all() {
            let s = super::svg(&p.provider);
            assert!(s.starts_with("<svg") && s.ends_with("</svg>"), "{}", p.provider);
            assert_eq!(p.provider == "custom", !s.contains("<text"), "{}", p.provider);
        }
    }
}
