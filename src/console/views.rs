//! What each console page shows: one struct per template (in `src/console/templates`),
//! built by the handlers. askama checks the templates against these at compile time and
//! escapes every value it puts into the HTML.

use askama::Template;

/// The signed-in frame of every page: who, and the token for its forms.
#[derive(Debug, Clone)]
pub struct Chrome {
    /// Who is signed in (email, username or "Admin token").
    pub who: String,
    /// The console session's CSRF token.
    pub csrf: String,
    /// Which page of the main navigation this is (`connections`, `users`, `groups`,
    /// `apps`, `keys`, `audit`): marked `aria-current` there.
    pub section: &'static str,
}

impl From<&super::session::Admin> for Chrome {
    fn from(a: &super::session::Admin) -> Self {
        Chrome { who: a.identity.label(), csrf: a.csrf.clone(), section: "connections" }
    }
}

impl Chrome {
    /// The frame of a page in `section` of the navigation.
    pub fn at(admin: &super::session::Admin, section: &'static str) -> Self {
        Chrome { section, ..Chrome::from(admin) }
    }
}

/// An error page.
#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage {
    /// Heading.
    pub title: String,
    /// What happened and what to do.
    pub message: String,
    /// To quote.
    pub request_id: String,
}

/// Signed in, but not an admin.
#[derive(Template)]
#[template(path = "forbidden.html")]
pub struct Forbidden {
    /// Why, as the end of "You are signed in, but …".
    pub reason: String,
    /// To quote.
    pub request_id: String,
}

/// The sign-in page.
#[derive(Template)]
#[template(path = "signin.html")]
pub struct SignIn {
    /// One per active connection.
    pub buttons: Vec<SignInButton>,
    /// The token form's double-submit value.
    pub form_token: String,
    /// A wrong token, said.
    pub error: Option<String>,
}

/// A "Sign in with …" button.
pub struct SignInButton {
    /// The login start, returning to the console.
    pub href: String,
    /// Logo URL.
    pub logo: String,
    /// Display name.
    pub name: String,
}

/// The Identity Providers table.
#[derive(Template)]
#[template(path = "connections.html")]
pub struct Connections {
    /// Frame.
    pub chrome: Chrome,
    /// Sortable columns.
    pub columns: Vec<Column>,
    /// What the table is sorted by, said.
    pub sorted_by: String,
    /// One per connection.
    pub rows: Vec<Row>,
    /// What just happened.
    pub notice: Option<String>,
}

/// A sortable column heading.
pub struct Column {
    /// Heading.
    pub label: &'static str,
    /// The link that sorts by it (the other way when it is the current sort).
    pub href: String,
    /// `ascending`, `descending` or `none` (for `aria-sort`).
    pub sort: &'static str,
    /// ` ▲`, ` ▼` or nothing.
    pub arrow: &'static str,
}

/// A connection in the table.
pub struct Row {
    /// Id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// On the login page.
    pub active: bool,
    /// The preset's vendor name.
    pub provider_name: String,
    /// Logo URL.
    pub logo: String,
    /// `OIDC` or `SAML`.
    pub protocol: &'static str,
    /// Last update, for people.
    pub updated: String,
    /// Last update, RFC 3339.
    pub updated_iso: String,
    /// The next IdP certificate expiry (SAML).
    pub cert: Option<CertBadge>,
    /// The last Test Provider run: passed or not, and when.
    pub last_test: Option<LastTest>,
}

/// The last Test Provider run of a connection, from the audit log.
pub struct LastTest {
    /// It verified.
    pub ok: bool,
    /// When, for people.
    pub when: String,
    /// When, short (month-day hour:minute, UTC).
    pub short: String,
}

/// A certificate expiry in the table.
pub struct CertBadge {
    /// "expires 2027-01-01".
    pub text: String,
    /// Within 30 days (or past).
    pub warn: bool,
}

/// New connection: protocol, then the provider grid.
#[derive(Template)]
#[template(path = "choose.html")]
pub struct Choose {
    /// Frame.
    pub chrome: Chrome,
    /// `oidc`, `saml`, or empty before the choice.
    pub chosen: &'static str,
    /// The presets of the chosen protocol.
    pub presets: Vec<PresetCard>,
}

/// A preset in the grid.
pub struct PresetCard {
    /// The form for it.
    pub href: String,
    /// Provider id.
    pub provider: String,
    /// Logo URL.
    pub logo: String,
    /// Vendor name.
    pub name: String,
    /// A short line.
    pub summary: String,
}

/// The connection form, new or existing.
#[derive(Template)]
#[template(path = "form.html")]
pub struct ConnectionForm {
    /// Frame.
    pub chrome: Chrome,
    /// Heading.
    pub title: String,
    /// Where the form posts.
    pub action: String,
    /// New (not saved yet).
    pub creating: bool,
    /// The (reserved) id.
    pub id: String,
    /// `oidc` or `saml`.
    pub protocol: &'static str,
    /// `OpenID Connect` or `SAML 2.0`.
    pub protocol_label: &'static str,
    /// Provider id.
    pub provider: String,
    /// Vendor name.
    pub provider_name: String,
    /// How the page names the IdP ("Okta", or "your identity provider" for Custom).
    pub idp_name: String,
    /// Logo URL.
    pub logo: String,
    /// The preset's hint.
    pub preset_hint: String,
    /// The vendor's page.
    pub preset_docs: Option<String>,
    /// The version the edit starts from.
    pub version: i64,
    /// What just happened.
    pub notice: Option<String>,
    /// Errors that belong to no field on the form, and the summary.
    pub errors: Vec<String>,
    /// Someone else saved first.
    pub stale: Option<Stale>,
    /// The addresses to register at the IdP.
    pub register: Vec<Field>,
    /// The groups of fields, as the product groups them.
    pub sections: Vec<Section>,
    /// The IdP metadata in use (SAML, saved).
    pub idp: Option<IdpSummary>,
    /// Our request-signing certificate (SAML, saved).
    pub sp_cert: Option<SpCert>,
}

/// A refused stale edit.
pub struct Stale {
    /// The version stored now.
    pub current: i64,
}

/// A group of fields.
pub struct Section {
    /// Anchor and template switch.
    pub id: &'static str,
    /// Legend.
    pub title: &'static str,
    /// A line under the legend.
    pub intro: String,
    /// Fields.
    pub fields: Vec<Field>,
}

/// One form control with its label, hint and error.
#[derive(Default)]
pub struct Field {
    /// The form name; also the API's field path, so 422 errors land beside it.
    pub name: String,
    /// Element id.
    pub id: String,
    /// Label.
    pub label: String,
    /// `text`, `url`, `password`, `checkbox`, `select`, `textarea`, `file` or `copy`.
    pub kind: &'static str,
    /// Current value (never a secret).
    pub value: String,
    /// Checkbox state.
    pub checked: bool,
    /// Select options.
    pub options: Vec<Opt>,
    /// Help text.
    pub hint: String,
    /// The API's complaint.
    pub error: Option<String>,
    /// Placeholder text.
    pub placeholder: String,
    /// Marked required.
    pub required: bool,
    /// A write-only secret is stored.
    pub secret_set: bool,
    /// Spans both columns.
    pub full: bool,
    /// A submit button beside the input ("Fetch from issuer").
    pub action: Option<FieldAction>,
}

/// A select option.
pub struct Opt {
    /// Value.
    pub value: String,
    /// Label.
    pub label: String,
    /// Selected.
    pub selected: bool,
}

/// A button beside a field that posts the form with `action=value`.
pub struct FieldAction {
    /// `action` value.
    pub value: &'static str,
    /// Button text.
    pub label: &'static str,
}

/// The IdP as its metadata describes it.
pub struct IdpSummary {
    /// Entity id.
    pub entity_id: String,
    /// Sign-on URL.
    pub sso_url: String,
    /// Binding, short.
    pub binding: String,
    /// Signing certificates.
    pub certs: Vec<CertInfo>,
}

/// A pinned signing certificate.
pub struct CertInfo {
    /// Subject.
    pub subject: String,
    /// Expiry, for people.
    pub not_after: String,
    /// Fingerprint.
    pub sha256: String,
    /// Within 30 days.
    pub warn: bool,
}

/// Our SP certificate.
pub struct SpCert {
    /// Subject.
    pub subject: String,
    /// Expiry.
    pub not_after: String,
}

/// Delete confirmation.
#[derive(Template)]
#[template(path = "delete.html")]
pub struct Delete {
    /// Frame.
    pub chrome: Chrome,
    /// Id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Active now.
    pub active: bool,
    /// Live sessions started through it.
    pub sessions: usize,
    /// Users linked to it.
    pub linked: usize,
    /// Users with memberships its group sync granted.
    pub granted: usize,
}

/// The page that starts a Test Provider run in its new window.
#[derive(askama::Template)]
#[template(path = "test-starting.html")]
pub struct TestStarting {
    /// Where the round trip starts.
    pub start: String,
}
