//! Integration tests: real servers on port 0, real SQLite and PostgreSQL, real peers
//! (oidc-provider from npm, pysaml2) set up by `tests/peers/setup.sh`.

mod admin_token;
mod apache;
mod api;
mod browser;
mod cli;
mod console;
mod console_pages;
mod declarative;
mod flood;
mod hostile;
mod identity;
mod ingress;
mod login;
mod nginx;
mod oauth2_proxy;
mod op;
mod op_authlib;
mod op_logout;
mod op_refresh;
mod op_spec;
mod openapi;
mod operations;
mod peers;
mod presets;
mod races;
mod refusals;
mod replicas;
mod revocation;
mod saml;
mod saml_flaws;
mod store;
mod support;
mod surface;
mod testprovider;
mod vendors;
