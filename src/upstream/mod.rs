//! Upstream identity providers: the protocol step of a login. Each protocol turns the
//! browser's start into a redirect (`begin`) and the IdP's reply into a verified
//! [`Identity`] (`finish`). Everything after that — directory, group sync, session,
//! hand-off — is shared and protocol-blind (`crate::login`).

pub mod jwks;
pub mod oidc;
pub mod saml;
pub mod saml_precheck;
pub mod saml_response;
pub mod xmldsig;

#[cfg(test)]
mod dsig_differential;
#[cfg(test)]
mod oidc_differential;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::clock::Millis;
use crate::connection::{Connection, Protocol, Upstream};
use crate::mapping::Identity;

/// What a login in progress keeps server-side until the IdP answers: the generic part
/// (connection, browser binding, where to go after) and the protocol's own. `Debug`
/// leaves out the protocol's secrets (nonce, PKCE verifier).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowState {
    /// The connection the login goes through.
    pub connection_id: String,
    /// SHA-256 (hex) of the flow cookie that binds the login to this browser.
    pub browser: String,
    /// Where to go after login (a validated local path, or a downstream request id).
    pub return_to: Option<String>,
    /// When the login started.
    pub created_at: Millis,
    /// What the protocol needs to check the reply.
    pub kept: Kept,
    /// A real login, or the admin's dry run (which never becomes a login).
    #[serde(default)]
    pub purpose: Purpose,
    /// The IdP was asked to authenticate the user anew (`prompt=login`, `ForceAuthn`):
    /// "try again" asks again, so a retry never turns into a login on an old IdP session.
    #[serde(default)]
    pub force_authn: bool,
}

impl std::fmt::Debug for FlowState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlowState")
            .field("connection_id", &self.connection_id)
            .field("return_to", &self.return_to)
            .field("created_at", &self.created_at)
            .field("purpose", &self.purpose)
            .finish_non_exhaustive()
    }
}

/// What each protocol keeps for its reply.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kept {
    /// OIDC: the nonce the ID token must carry and the PKCE verifier.
    Oidc {
        /// The nonce.
        nonce: String,
        /// The PKCE verifier, when PKCE is used.
        pkce_verifier: Option<String>,
    },
    /// SAML: the AuthnRequest ID the response must answer (InResponseTo).
    Saml {
        /// The request ID.
        request_id: String,
    },
}

/// Why a flow was started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Purpose {
    /// A user signs in.
    #[default]
    Login,
    /// An admin tries the connection (Test Provider): the pipeline reports and writes
    /// nothing; the test's report is kept under `test_id`.
    Test {
        /// The test run's id.
        test_id: String,
    },
}

/// How the browser carries the request to the IdP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outbound {
    /// Go to this URL.
    Redirect(String),
    /// An auto-submitted form (SAML HTTP-POST binding).
    Post {
        /// Where the form posts.
        url: String,
        /// The form's fields.
        fields: Vec<(&'static str, String)>,
    },
}

/// A begun login: the key the reply will name (`state`, `RelayState`), what to keep under
/// it, and how to send the browser on.
#[derive(Debug)]
pub struct Begun {
    /// The flow state's key.
    pub key: String,
    /// What to keep.
    pub flow: FlowState,
    /// Where the browser goes.
    pub outbound: Outbound,
}

/// What a login starts from, whatever the protocol.
#[derive(Debug, Clone)]
pub struct Start<'a> {
    /// The gateway's public URL.
    pub public_base: &'a str,
    /// SHA-256 (hex) of the browser's flow cookie.
    pub browser: String,
    /// Where to go after the login.
    pub return_to: Option<String>,
    /// Who is signing in, when known (OIDC `login_hint`).
    pub login_hint: Option<&'a str>,
    /// Now.
    pub now: Millis,
    /// A login, or a test.
    pub purpose: Purpose,
    /// The user must authenticate anew (OIDC `prompt=login`, SAML `ForceAuthn`): the app
    /// asked for `prompt=login` or a `max_age` the session is older than.
    pub force_authn: bool,
}

/// Starts a login with `conn`: the one place that picks the protocol for the way out.
pub fn begin(conn: &Connection, start: Start<'_>) -> Result<Begun, UpstreamError> {
    match &conn.settings.upstream {
        Upstream::Oidc(o) => oidc::begin(conn, o, start),
        Upstream::Saml(s) => saml::begin(conn, s, start),
    }
}

/// The IdP's reply as the browser brought it, before anything is trusted.
#[derive(Debug)]
pub struct Reply {
    /// How it came.
    pub transport: Transport,
    /// Its parameters (query or form fields), in order.
    pub params: Vec<(String, String)>,
    /// The message as [`screen`] passed it (the SAML response's XML), when screened.
    pub screened: Option<String>,
}

/// How a reply came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// The query of a redirect back (OIDC callback).
    Query,
    /// A form post (SAML ACS).
    Form,
}

impl Reply {
    /// A reply with these parameters.
    pub fn new(transport: Transport, params: Vec<(String, String)>) -> Self {
        Self { transport, params, screened: None }
    }

    /// The first value of a parameter.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// The protocol's first look at a reply, before any connection, state or store is looked
/// up: cheap, linear checks that refuse a malformed or hostile message (the SAML
/// pre-check, off the async runtime). OIDC replies are plain parameters: nothing to
/// screen. The reply's route names the protocol.
pub async fn screen(protocol: Protocol, reply: Reply, report: &mut Diagnostics) -> Result<Reply, UpstreamError> {
    match protocol {
        Protocol::Oidc => Ok(reply),
        Protocol::Saml => saml::screen(reply, report).await,
    }
}

/// The key of the flow a reply answers, as the reply names it.
pub fn flow_key<'r>(conn: &Connection, reply: &'r Reply) -> Option<&'r str> {
    match &conn.settings.upstream {
        Upstream::Oidc(_) => reply.get("state"),
        Upstream::Saml(_) => reply.get("RelayState"),
    }
    .filter(|k| !k.is_empty())
}

/// What `conn` does with a reply that answers no flow of ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsolicited {
    /// Taken (SAML IdP-initiated, where the connection allows it).
    Accepted,
    /// The protocol knows such replies, and this connection refuses them: why.
    Refused(&'static str),
    /// The protocol has no such replies: one without a flow is a bad request.
    Never,
}

/// Whether `conn` takes a reply that answers no flow of ours (SAML IdP-initiated).
pub fn unsolicited(conn: &Connection) -> Unsolicited {
    match &conn.settings.upstream {
        Upstream::Oidc(_) => Unsolicited::Never,
        Upstream::Saml(s) if s.allow_idp_initiated => Unsolicited::Accepted,
        Upstream::Saml(_) => Unsolicited::Refused("IdP-initiated sign-in is off for this connection"),
    }
}

/// What finishing needs besides the connection and the reply.
#[derive(Clone, Copy)]
pub struct Context<'a> {
    /// The gateway's public URL.
    pub public_base: &'a str,
    /// The outbound HTTP client.
    pub http: &'a reqwest::Client,
    /// IdP signing keys.
    pub jwks: &'a jwks::JwksCache,
    /// Now.
    pub now: Millis,
    /// Allowed clock difference with the IdP.
    pub skew_ms: Millis,
    /// How long a login may take (oldest SAML IssueInstant accepted).
    pub max_age_ms: Millis,
}

/// A verified reply: who the IdP says the user is, and what the rest of the login needs.
/// No `Debug`: it holds the upstream access token.
pub struct Verified {
    /// The mapped identity.
    pub identity: Identity,
    /// The claims (OIDC) or attributes and NameID (SAML) it was mapped from.
    pub claims: Value,
    /// Refuse unless the IdP verified the email.
    pub require_verified_email: bool,
    /// The upstream access token, for revocation at logout.
    pub upstream_token: Option<String>,
    /// The IdP's own end for the session (SAML `SessionNotOnOrAfter`).
    pub session_until: Option<Millis>,
    /// A one-time marker the reply must not have used before, and how long it is kept.
    pub replay: Option<(String, Millis)>,
    /// When the user really authenticated at the IdP (OIDC `auth_time`, SAML
    /// `AuthnInstant`), when it says.
    pub auth_time: Option<Millis>,
}

/// Verifies the reply to `flow` (none: unsolicited, where the connection allows it): the
/// one place that picks the protocol for the way back. Every check is written to
/// `report` as it runs, failed or not.
pub async fn finish(conn: &Connection, flow: Option<&FlowState>, reply: Reply, cx: &Context<'_>, report: &mut Diagnostics) -> Result<Verified, UpstreamError> {
    let verified = match &conn.settings.upstream {
        Upstream::Oidc(o) => oidc::finish(conn, o, flow, &reply, cx, report).await,
        Upstream::Saml(s) => saml::finish(conn, s, flow, reply, cx, report).await,
    }?;
    admitted(conn, &verified, report)?;
    Ok(verified)
}

/// What every protocol's verified reply must also pass: the connection's allow rules
/// (`hd`, `tid`, any claim), and, with group sync on, a groups claim the IdP did not
/// replace by an overage pointer.
fn admitted(conn: &Connection, v: &Verified, report: &mut Diagnostics) -> Result<(), UpstreamError> {
    let rules = &conn.settings.allow;
    if !rules.is_empty() {
        let checked = crate::mapping::check_allow(&v.claims, rules).map_err(UpstreamError::NotAllowed);
        report.record("allow rules", checked, |_| {
            let names: Vec<&str> = rules.iter().map(|r| r.claim.as_str()).collect();
            format!("{} hold an allowed value", names.join(", "))
        })?;
    }
    if let Some(pointer) = crate::mapping::groups_overage(&v.claims, &conn.settings.claims.groups) {
        if conn.settings.group_sync {
            // Decision: refuse. Keeping the memberships as they were would let a user
            // removed from a group at the IdP keep what it granted here for as long as
            // the overage lasts; refusing says so at once and names the fix.
            let e = UpstreamError::GroupsOverage(format!(
                "the identity provider sent no groups for this user but an overage pointer ({pointer}): the user is in more groups than fit in the token, \
                 so group sync cannot tell their groups. At the identity provider, send only the groups assigned to the application \
                 (Entra ID: Token configuration > groups claim > Groups assigned to the application), or turn group sync off"
            ));
            return report.fail("groups", e);
        }
        report.passed("groups", format!("overage pointer {pointer} ignored: group sync is off"));
    }
    Ok(())
}

/// Revokes an upstream access token at sign-out, where the protocol and the IdP have a
/// way to (OIDC's revocation endpoint). Best effort: the local session is already gone
/// whatever the IdP says; the outcome is logged.
pub async fn revoke(conn: &Connection, token: &str, http: &reqwest::Client) {
    match &conn.settings.upstream {
        Upstream::Oidc(o) => oidc::revoke(conn, o, token, http).await,
        Upstream::Saml(_) => {}
    }
}

/// What the upstream step checked, with which key or certificate, and what it found: in
/// order, each step once, with the time it took. Shown by the Test Provider dry run, and
/// its failed step named in the log when a login fails.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Diagnostics {
    /// The steps, in order.
    pub steps: Vec<Check>,
    /// When the step under way began (the previous one ended).
    #[serde(skip, default = "std::time::Instant::now")]
    mark: std::time::Instant,
}

impl Default for Diagnostics {
    fn default() -> Self {
        Self { steps: vec![], mark: std::time::Instant::now() }
    }
}

/// One step of [`Diagnostics`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// What was checked ("code exchange", "ID token signature", "InResponseTo", ...).
    pub step: String,
    /// Whether it passed.
    pub ok: bool,
    /// What was found (an algorithm and key id, a certificate, a value compared).
    pub detail: String,
    /// How long it took, in milliseconds (from the end of the step before).
    #[serde(default)]
    pub ms: u64,
}

impl Diagnostics {
    fn push(&mut self, step: &str, ok: bool, detail: String) {
        let ms = self.mark.elapsed().as_millis() as u64;
        self.mark = std::time::Instant::now();
        self.steps.push(Check { step: step.into(), ok, detail, ms });
    }

    /// Records a passed step.
    pub fn passed(&mut self, step: &str, detail: impl Into<String>) {
        self.push(step, true, detail.into());
    }

    /// Records the outcome of a step and hands it on.
    pub fn record<T>(&mut self, step: &str, r: Result<T, UpstreamError>, detail: impl FnOnce(&T) -> String) -> Result<T, UpstreamError> {
        match &r {
            Ok(v) => {
                let d = detail(v);
                self.push(step, true, d)
            }
            Err(e) => self.push(step, false, e.to_string()),
        }
        r
    }

    /// Records a failed step and hands the error on.
    pub fn fail<T>(&mut self, step: &str, e: UpstreamError) -> Result<T, UpstreamError> {
        self.push(step, false, e.to_string());
        Err(e)
    }

    /// The step that failed, if one did.
    pub fn failed_step(&self) -> Option<&str> {
        self.steps.iter().find(|c| !c.ok).map(|c| c.step.as_str())
    }
}

/// Why an upstream step failed. Each variant is something a user or admin can act on;
/// none carries a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    /// The IdP answered the login with an error.
    #[error("the identity provider refused the login: {0}")]
    Refused(String),
    /// The IdP could not be reached or answered badly.
    #[error("the identity provider could not be used: {0}")]
    Unavailable(String),
    /// The reply did not verify: it is refused.
    #[error("the identity provider's reply was refused: {0}")]
    Invalid(String),
    /// The reply is not a well-formed message of its protocol (or a hostile one): the
    /// request is bad, whoever sent it.
    #[error("the sign-in reply was refused: {0}")]
    Malformed(String),
    /// The reply verified, but the connection does not admit this user (an allow rule,
    /// a tenant not on the list).
    #[error("this account may not sign in here: {0}")]
    NotAllowed(String),
    /// The IdP replaced the groups by an overage pointer while group sync is on.
    #[error("the sign-in was refused: {0}")]
    GroupsOverage(String),
}
