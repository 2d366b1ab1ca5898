//! ssogate: an identity federation gateway (SSO broker).
//!
//! Admins connect it to upstream identity providers (OIDC and SAML 2.0), keep a
//! directory of users and groups, and hand a verified session to the main application
//! server and to a Kubernetes ingress.
//!
//! # Layout
//! - [`config`]: the one configuration tree (TOML file overlaid by `SSOGATE_*` env).
//! - [`app`]: the application state and its start-up (store, keys, state backends).
//! - [`server`]: composes the routes each feature module exposes; answers `/auth` first;
//!   `serve(listener, state, shutdown)`.
//! - [`secret`]: secrets that never print, and the master-key cipher for secrets at rest.
//! - [`store`]: the `Store` trait over SQLite and PostgreSQL, its migrations and the
//!   conformance suite every backend passes.
//! - [`connection`]: the connection model (`Settings.upstream`: one enum over the
//!   protocols), its validation, provider presets, IdP metadata parsing, OIDC discovery
//!   and SP key pairs; drafts for the Test Provider.
//! - [`declare`]: connections, groups and clients declared in the configuration file,
//!   reconciled into the store at start and on SIGHUP, read-only through the API.
//! - [`mapping`]: raw claims or SAML attributes to an `Identity`, by the connection's claim mappings.
//! - [`directory`]: users, groups, memberships and invitations: the rules above the store.
//! - [`state`]: flow state, one-time codes, replay markers and sessions: in memory, or in Redis
//!   with a per-replica session cache kept honest by a pub/sub invalidation feed.
//! - [`token`]: the gateway's own signing keys, the claims of every token it signs, JWS.
//! - [`outbound`]: the one HTTP client for calls to IdPs: no redirects, timeouts, size caps.
//! - [`upstream`]: the seam between the protocols and the rest: `begin`, `screen`,
//!   `finish` (verified claims plus a diagnostics record), each protocol in its module.
//! - [`login`]: the login page, login start, the reply (OIDC callback, SAML ACS), the one
//!   pipeline after the seam (with its report-only mode), the Test Provider, sign-out,
//!   and `LoginError`.
//! - [`ingress`]: `/auth` for ingress controllers, `/start?rd=`, the oauth2-proxy paths.
//! - [`op`]: ssogate as an OpenID Provider for the main server (discovery, authorize, token with
//!   refresh, userinfo, JWKS, revocation, introspection, RP-initiated and back-channel logout,
//!   per-client settings).
//! - [`admin`]: the admin REST API and its OpenAPI document.
//! - [`console`]: the admin console's pages (sign-in, Identity Providers, Users, Groups,
//!   Audit log, Signing keys, Apps), server-rendered.
//! - [`limit`]: length caps on kept values, per-client rate limits, the client's address.
//! - [`listen`]: the accept loop: connection timeouts and cap, peer addresses.
//! - [`web`]: request ids, error bodies and pages (with their security headers), the
//!   cookies and the browser session, the one redirect validator, outage logging, health
//!   checks and the public provider list.
//! - [`metrics`]: Prometheus metrics at `/metrics`: atomics on the `/auth` path, the
//!   rest read when scraped.
//! - [`audit`]: who changed what and when.
//! - [`clock`]: time, injected so expiry tests never sleep.
//! - [`testkit`]: fixtures shared by tests, benches and fuzz targets.

// Outside tests, failures are handled, not unwrapped (STYLE.md).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod admin;
pub mod app;
pub mod audit;
pub mod clock;
pub mod config;
pub mod connection;
pub mod console;
pub mod declare;
pub mod directory;
pub mod id;
pub mod ingress;
pub mod limit;
pub mod listen;
pub mod login;
pub mod mapping;
pub mod metrics;
pub mod op;
pub mod outbound;
pub mod secret;
pub mod server;
pub mod state;
pub mod store;
pub mod testkit;
pub mod token;
pub mod upstream;
pub mod web;
