//! The HTTP edge shared by every route: request ids, the JSON error body, extractors
//! that turn bad input into a 4xx naming what is wrong, the one `Cookie:` reader, pages
//! and their security headers, health checks, and the public list of providers for
//! login buttons.

pub mod browser;
pub mod cookie;
pub mod error;
pub mod extract;
pub mod outage;
pub mod page;
pub mod public;
pub mod redirect;
pub mod request_id;

pub use error::ApiError;
pub use extract::{ApiJson, ApiPath, ApiQuery};
