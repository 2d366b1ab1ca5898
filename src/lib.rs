//! ssogate: an identity federation gateway (SSO broker).
//!
//! Admins connect it to upstream identity providers (OIDC and SAML 2.0), keep a
//! directory of users and groups, and hand a verified session to the main application
//! server and to a Kubernetes ingress.
//!
//! # Layout
//! - [`config`]: the one configuration tree (TOML file overlaid by `SSOGATE_*` env).
//! - [`secret`]: secrets that never print, and the master-key cipher for secrets at rest.
//! - [`store`]: the `Store` trait over SQLite and PostgreSQL, its migrations and the
//!   conformance suite every backend passes.
//! - [`connection`]: the connection model, its validation, provider presets, IdP
//!   metadata parsing, OIDC discovery and SP key pairs.
//! - [`mapping`]: raw claims or SAML attributes to an `Identity`, by the connection's claim mappings.
//! - [`directory`]: users, groups, memberships and invitations: the rules above the store.
//! - [`state`]: flow state, one-time codes, replay markers and sessions: in memory, or in Redis
//!   with a per-replica session cache kept honest by a pub/sub invalidation feed.
//! - [`token`]: the gateway's own signing keys (generated, encrypted, listed as JWKS).
//! - [`outbound`]: the one HTTP client for calls to IdPs: no redirects, timeouts, size caps.
//! - [`upstream`]: the protocol step of a login (OIDC and SAML): begin, then verify the
//!   reply (the SAML pre-check, XML signatures, the profile's checks).
//! - [`admin`]: the admin REST API and its OpenAPI document.
//! - [`console`]: the admin console's pages (sign-in, Identity Providers), server-rendered.
//! - [`limit`]: length caps on kept values, per-client rate limits, the client's address.
//! - [`listen`]: the accept loop: connection timeouts and cap, peer addresses.
//! - [`login`]: the login page, login start, OIDC callback, the shared steps after it, logout.
//! - [`ingress`]: `/auth` for ingress controllers, `/start?rd=`, and the redirect validator.
//! - [`op`]: ssogate as an OpenID Provider for the main server (discovery, authorize, token, userinfo, JWKS).
//! - [`web`]: request ids, error bodies and pages (with their security headers), the one
//!   cookie reader, outage logging, health checks and the public provider list.
//! - [`server`]: builds the application state and router; `serve(listener, state, shutdown)`.
//! - [`audit`]: who changed what and when.
//! - [`clock`]: time, injected so expiry tests never sleep.

// Outside tests, failures are handled, not unwrapped (STYLE.md).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod admin;
pub mod audit;
pub mod clock;
pub mod config;
pub mod connection;
pub mod console;
pub mod directory;
pub mod id;
pub mod ingress;
pub mod limit;
pub mod listen;
pub mod login;
pub mod mapping;
pub mod op;
pub mod outbound;
pub mod secret;
pub mod server;
pub mod state;
pub mod store;
pub mod token;
pub mod upstream;
pub mod web;
