//! Claim mapping: raw claims (OIDC) or attributes (SAML) become an [`Identity`]
//! through the connection's [`ClaimMappings`]. Pure logic, shared by both protocols.
//!
//! A name is looked up as a whole first (so `cognito:groups` and URI claim names such
//! as `https://ssogate/groups` work as they are), then as a dotted path into nested
//! objects (`realm_access.roles`). A list of names is tried in order.

use serde::{Deserialize, Serialize};
use serde_json::Value;

// XML whitespace (space, tab, CR, LF) is the only thing trimmed from a value: a Unicode
// `trim()` would also take U+00A0 and the like, merging `victim\u{A0}` with `victim`.
use crate::connection::{ClaimMappings, ClaimNames};
use crate::upstream::xmldsig::xml_trim;

/// Who the upstream says the user is, after verification and mapping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Identity {
    /// The stable upstream user id (links the user to this connection).
    pub subject: String,
    /// Email address.
    pub email: Option<String>,
    /// Whether the upstream says the email is verified (`None`: it did not say).
    pub email_verified: Option<bool>,
    /// Full name.
    pub name: Option<String>,
    /// Given name.
    pub given_name: Option<String>,
    /// Family name.
    pub family_name: Option<String>,
    /// Picture URL.
    pub picture: Option<String>,
    /// Group names asserted by the upstream. `None`: no groups claim was sent (or none is
    /// mapped), which group sync takes as "no news" and changes nothing; `Some(vec![])`:
    /// the IdP said the user is in no group.
    pub groups: Option<Vec<String>>,
    /// Where the claims were read (`the ID token`, `userinfo`, `the SAML assertion`), for
    /// refusals that name a missing claim. Empty: not said.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<String>,
}

impl Identity {
    /// Where the claims were looked for, as a phrase: `the ID token and userinfo`.
    pub fn looked_in(&self) -> String {
        match self.sources.as_slice() {
            [] => "the identity provider's reply".into(),
            [one] => one.clone(),
            [init @ .., last] => format!("{} and {last}", init.join(", ")),
        }
    }
}

/// Why mapping failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    /// The user id claim is absent or empty.
    #[error("the identity provider sent no {0} claim, which this connection uses as the user id")]
    NoSubject(String),
    /// A claim that would become an identity field carries a control character (the
    /// value is not repeated: it is the IdP's, and may be built to break a log or a header).
    #[error("the identity provider's {0} claim contains a control character, which is refused")]
    ControlCharacter(String),
}

/// Finds a claim by exact name, then by dotted path.
pub fn lookup<'a>(claims: &'a Value, name: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(name) {
        return Some(v);
    }
    if !name.contains('.') {
        return None;
    }
    let mut cur = claims;
    for part in name.split('.') {
        cur = cur.get(part)?;
    }
    Some(cur)
}

/// The first of `names` present (and not null): its name and value.
fn first<'a, 'n>(claims: &'a Value, names: &'n ClaimNames) -> Option<(&'n str, &'a Value)> {
    names.0.iter().find_map(|n| lookup(claims, n).filter(|v| !v.is_null()).map(|v| (n.as_str(), v)))
}

/// The claim the first of `names` present would be read from (for the user id: whether
/// a SAML login's user id is its NameID).
pub fn source_of<'n>(claims: &Value, names: &'n ClaimNames) -> Option<&'n str> {
    first(claims, names).map(|(n, _)| n)
}

/// Characters refused in an identity field: Unicode category Cc (C0, DEL, C1: NUL, CR,
/// LF, ESC...); the line and paragraph separators U+2028/U+2029, which some consumers
/// (JavaScript, log viewers) also take for line ends; the bidirectional controls
/// (U+061C, U+200E/F, U+202A–U+202E, U+2066–U+2069), which make a name or an email show
/// as another in the console and in logs; and the invisible U+200B, U+2060 and U+FEFF,
/// which make two identifiers that look alike differ. ZWJ/ZWNJ (U+200C/D) stay: scripts
/// and emoji need them in names.
pub fn is_refused_char(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
        || matches!(c, '\u{200B}' | '\u{2060}' | '\u{FEFF}')
}

/// A scalar claim as text: strings as they are, numbers and booleans printed; the
/// first element of a list (SAML attributes are lists). Surrounding XML whitespace is
/// trimmed; `Err(())` when what remains has a refused character.
fn text(v: &Value) -> Result<Option<String>, ()> {
    let s = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Array(items) => {
            for item in items {
                if let Some(t) = text(item)? {
                    return Ok(Some(t));
                }
            }
            return Ok(None);
        }
        _ => return Ok(None),
    };
    let s = xml_trim(&s);
    if s.chars().any(is_refused_char) {
        return Err(());
    }
    Ok((!s.is_empty()).then(|| s.to_string()))
}

/// `email_verified` and the like: only the JSON literals `true` and `false` count. The
/// string `"true"` is not a yes (OpenID Connect Core 5.1 types the claim as a boolean,
/// and an IdP that lets users or scripts set attributes as text could otherwise vouch
/// for any address); it reads as "not said".
pub fn boolean(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        _ => None,
    }
}

/// Whether `v` (a claim: a string, or a list of them) holds one of `values`, compared by
/// ASCII case only.
fn holds_one_of(v: &Value, values: &[String]) -> bool {
    let one = |s: &str| {
        let s = xml_trim(s);
        values.iter().any(|want| want.trim().eq_ignore_ascii_case(s))
    };
    match v {
        Value::String(s) => one(s),
        Value::Array(items) => items.iter().any(|i| i.as_str().is_some_and(one)),
        _ => false,
    }
}

/// Checks the connection's allow rules against the verified claims (or SAML attributes):
/// each rule's claim must hold one of its values. The refusal names the claim and the
/// values allowed, never what the IdP sent.
pub fn check_allow(claims: &Value, rules: &[crate::connection::AllowRule]) -> Result<(), String> {
    for rule in rules {
        match lookup(claims, &rule.claim).filter(|v| !v.is_null()) {
            // The refusal names the claim only: the values admitted (internal domains,
            // tenants) are the admin's to know, not every visitor's.
            None => return Err(format!("the identity provider sent no {} claim, which this connection requires", rule.claim)),
            Some(v) if !holds_one_of(v, &rule.values) => return Err(format!("your {} is not one this connection admits", rule.claim)),
            Some(_) => {}
        }
    }
    Ok(())
}

/// Entra ID's SAML overage attribute: the groups were replaced by a link to Graph.
pub const SAML_GROUPS_LINK: &str = "http://schemas.microsoft.com/claims/groups.link";

/// When the IdP left the groups out and sent a pointer to them instead (too many to fit):
/// OIDC `_claim_names` naming the groups claim (with `_claim_sources`), the implicit
/// flow's `hasgroups`, or SAML's `groups.link` attribute. Returns what was found, to name
/// it; `None` when the groups claim itself is there.
pub fn groups_overage(claims: &Value, groups: &ClaimNames) -> Option<String> {
    if first(claims, groups).is_some() {
        return None;
    }
    if let Some(names) = claims.get("_claim_names").and_then(Value::as_object) {
        let mapped = groups.0.iter().chain(std::iter::once(&"groups".to_string())).find(|n| names.contains_key(n.as_str())).cloned();
        if let Some(n) = mapped {
            return Some(format!("_claim_names.{n}"));
        }
    }
    if claims.get("hasgroups").and_then(boolean) == Some(true) {
        return Some("hasgroups".into());
    }
    if claims.get(SAML_GROUPS_LINK).is_some() {
        return Some("groups.link".into());
    }
    None
}

/// Groups from a list of strings, or a single string (one group). `Err(())` when any
/// group name has a refused character (one bad name refuses them all: none is dropped
/// silently).
fn groups(v: &Value) -> Result<Vec<String>, ()> {
    let mut out: Vec<String> = match v {
        Value::Array(items) => {
            let mut out = Vec::new();
            for item in items {
                out.extend(text(item)?);
            }
            out
        }
        other => text(other)?.into_iter().collect(),
    };
    out.sort();
    out.dedup();
    Ok(out)
}

/// Maps raw claims to an identity. Every field that reaches the directory, a session or
/// an app's headers is refused with a control character in it (naming the claim, never
/// repeating the value).
pub fn map(claims: &Value, m: &ClaimMappings) -> Result<Identity, MappingError> {
    let get = |names: &ClaimNames| -> Result<Option<String>, MappingError> {
        match first(claims, names) {
            Some((name, v)) => text(v).map_err(|()| MappingError::ControlCharacter(name.to_string())),
            None => Ok(None),
        }
    };
    let subject = get(&m.user_id)?.ok_or_else(|| MappingError::NoSubject(m.user_id.0.join(" or ")))?;
    // An absent claim (or a null one) is `None`: never read as "in no group".
    let groups = match first(claims, &m.groups) {
        Some((name, v)) if !m.groups.is_empty() => Some(groups(v).map_err(|()| MappingError::ControlCharacter(name.to_string()))?),
        _ => None,
    };
    let email = get(&m.email)?;
    // `email_verified` vouches for the `email` claim and nothing else: an address mapped
    // from another claim (`upn`, `preferred_username`, a SAML attribute) is unverified,
    // whatever `email_verified` says (an IdP whose `preferred_username` is free text would
    // otherwise vouch for any address a user types there).
    let described = claims.get("email").and_then(|v| text(v).ok().flatten());
    let email_verified = match (&email, described) {
        (Some(e), Some(d)) if crate::store::same_name(e, &d) => claims.get("email_verified").and_then(boolean),
        (Some(_), _) => None,
        (None, _) => claims.get("email_verified").and_then(boolean),
    };
    Ok(Identity {
        subject,
        email,
        email_verified,
        name: get(&m.name)?,
        given_name: get(&m.given_name)?,
        family_name: get(&m.family_name)?,
        picture: get(&m.picture)?,
        groups,
        sources: vec![],
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn mappings(groups: &[&str]) -> ClaimMappings {
        ClaimMappings {
            user_id: ClaimNames::one("sub"),
            email: ClaimNames(vec!["email".into(), "upn".into()]),
            name: ClaimNames::one("name"),
            given_name: ClaimNames::one("given_name"),
            family_name: ClaimNames::one("family_name"),
            picture: ClaimNames::one("picture"),
            groups: ClaimNames(groups.iter().map(|s| s.to_string()).collect()),
        }
    }

    #[test]
    fn names_paths_colons_and_uris() {
        let claims = json!({
            "sub": "u1", "upn": "u1@corp.example", "email_verified": true,
            "cognito:groups": ["b", "a", "a"],
            "realm_access": {"roles": ["admin"]},
            "https://ssogate/groups": "solo",
        });
        let id = map(&claims, &mappings(&["cognito:groups"])).unwrap();
        assert_eq!(id.subject, "u1");
        assert_eq!(id.email.as_deref(), Some("u1@corp.example"), "falls back to the second name");
        assert_eq!(id.email_verified, None, "email_verified vouches for the email claim, not for upn");
        let with_email = json!({"sub": "u1", "email": "U1@corp.example", "upn": "x@corp.example", "email_verified": true});
        assert_eq!(map(&with_email, &mappings(&[])).unwrap().email_verified, Some(true));
        let attack = json!({"sub": "att", "preferred_username": "victim@x.test", "email_verified": true});
        let m = ClaimMappings { email: ClaimNames(vec!["email".into(), "preferred_username".into()]), ..mappings(&[]) };
        assert_eq!(map(&attack, &m).unwrap().email_verified, None, "the Entra ID shape: preferred_username is not what email_verified vouches for");
        assert_eq!(id.groups.unwrap(), vec!["a", "b"]);
        assert_eq!(map(&claims, &mappings(&["realm_access.roles"])).unwrap().groups.unwrap(), vec!["admin"]);
        assert_eq!(map(&claims, &mappings(&["https://ssogate/groups"])).unwrap().groups.unwrap(), vec!["solo"], "a single string is one group");
        assert_eq!(map(&claims, &mappings(&["missing"])).unwrap().groups, None, "absent is not empty");
        assert_eq!(map(&json!({"sub": "u", "groups": null}), &mappings(&["groups"])).unwrap().groups, None, "null is absent");
        assert_eq!(map(&json!({"sub": "u", "groups": []}), &mappings(&["groups"])).unwrap().groups, Some(vec![]), "present and empty");
        assert_eq!(map(&json!({"sub": "u", "groups": ["a"]}), &mappings(&[])).unwrap().groups, None, "no mapping: nothing asserted");
    }

    #[test]
    fn subject_is_required_and_email_verified_is_strict() {
        assert!(matches!(map(&json!({"email": "x@y"}), &mappings(&[])), Err(MappingError::NoSubject(_))));
        assert!(matches!(map(&json!({"sub": "  "}), &mappings(&[])), Err(MappingError::NoSubject(_))));
        let id = map(&json!({"sub": 42, "email_verified": "yes"}), &mappings(&[])).unwrap();
        assert_eq!(id.subject, "42");
        assert_eq!(id.email_verified, None, "only true or false count");
        assert_eq!(map(&json!({"sub": "a", "email_verified": "FALSE"}), &mappings(&[])).unwrap().email_verified, None);
        let with = |v: Value| map(&json!({"sub": "a", "email": "a@x.test", "email_verified": v}), &mappings(&[])).unwrap().email_verified;
        assert_eq!(with(json!(true)), Some(true), "only the JSON literal true vouches");
        for not_a_yes in [json!("true"), json!("TRUE"), json!(1), json!([true]), json!({"value": true})] {
            assert_eq!(with(not_a_yes.clone()), None, "{not_a_yes}");
        }
    }

    #[test]
    fn allow_rules_admit_only_the_listed_values() {
        use crate::connection::AllowRule;
        let hd = vec![AllowRule { claim: "hd".into(), values: vec!["example.com".into(), "corp.example".into()] }];
        assert!(check_allow(&json!({"hd": "example.com"}), &hd).is_ok());
        assert!(check_allow(&json!({"hd": "Example.COM"}), &hd).is_ok(), "ASCII case only");
        assert!(check_allow(&json!({"hd": ["x.test", "corp.example"]}), &hd).is_ok(), "a list passes with any member");
        let e = check_allow(&json!({"hd": "evil.example"}), &hd).unwrap_err();
        assert!(e.contains("hd is not one this connection admits") && !e.contains("evil") && !e.contains("example.com"), "{e}");
        assert!(check_allow(&json!({"email": "a@gmail.com"}), &hd).unwrap_err().contains("no hd claim"), "a consumer account has no hd");
        assert!(check_allow(&json!({"hd": "example.com.evil"}), &hd).is_err());
        assert!(check_allow(&json!({"hd": "\u{212A}example.com"}), &hd).is_err());
        assert!(check_allow(&json!({"hd": true}), &hd).is_err());
        let two = vec![hd[0].clone(), AllowRule { claim: "tid".into(), values: vec!["t1".into()] }];
        assert!(check_allow(&json!({"hd": "example.com", "tid": "t2"}), &two).is_err(), "every rule must pass");
    }

    #[test]
    fn overage_pointers_are_found_only_when_the_groups_are_missing() {
        let g = ClaimNames::one("groups");
        let oidc = json!({"sub": "s", "_claim_names": {"groups": "src1"}, "_claim_sources": {"src1": {"endpoint": "https://graph.microsoft.com/v1.0/users/x/getMemberObjects"}}});
        assert_eq!(groups_overage(&oidc, &g).as_deref(), Some("_claim_names.groups"));
        assert_eq!(groups_overage(&json!({"sub": "s", "hasgroups": true}), &g).as_deref(), Some("hasgroups"));
        assert_eq!(groups_overage(&json!({"NameID": ["n"], SAML_GROUPS_LINK: ["https://graph.windows.net/x"]}), &g).as_deref(), Some("groups.link"));
        assert_eq!(groups_overage(&json!({"sub": "s", "groups": ["a"], "_claim_names": {"groups": "src1"}}), &g), None);
        assert_eq!(groups_overage(&json!({"sub": "s"}), &g), None);
    }

    #[test]
    fn saml_style_multi_valued_attributes() {
        let attrs = json!({"NameID": ["n1"], "mail": ["m@x.example"], "memberOf": ["g1", "g2"]});
        let m = ClaimMappings { user_id: ClaimNames::one("NameID"), email: ClaimNames::one("mail"), groups: ClaimNames::one("memberOf"), ..Default::default() };
        let id = map(&attrs, &m).unwrap();
        assert_eq!((id.subject.as_str(), id.email.as_deref()), ("n1", Some("m@x.example")));
        assert_eq!(id.groups.unwrap(), vec!["g1", "g2"]);
    }

    #[test]
    fn control_characters_are_refused_in_every_identity_field() {
        let base = json!({"sub": "u1", "email": "u1@example.test", "name": "U One", "given_name": "U", "family_name": "One",
            "picture": "https://pics.example/u1.png", "groups": ["a", "b"]});
        for (claim, value) in [
            ("sub", json!("u1\u{0}")),
            ("sub", json!("u1\nX-Injected: yes")),
            ("sub", json!(["u1\u{2028}x"])),
            ("email", json!("crlf@example.test\r\nX-Injected: yes")),
            ("email", json!("a\u{0}@example.test")),
            ("email", json!("a@example.test\u{2029}b")),
            ("name", json!("Mallory\u{0}Admin")),
            ("name", json!("\u{1b}[31mred")),
            ("given_name", json!("G\u{7}")),
            ("family_name", json!("F\u{7f}x")),
            ("picture", json!("https://pics.example/\u{85}x.png")),
            ("groups", json!(["ok", "bad\ngroup"])),
            ("groups", json!("solo\tgroup")),
            ("groups", json!(["x\u{9f}"])),
            ("name", json!("Eve\u{202E}nimda")),
            ("email", json!("admin\u{200B}@example.test")),
            ("groups", json!(["\u{FEFF}admins"])),
            ("sub", json!("u\u{2066}1")),
        ] {
            let mut claims = base.clone();
            claims[claim] = value.clone();
            let err = map(&claims, &mappings(&["groups"])).unwrap_err();
            assert_eq!(err, MappingError::ControlCharacter(claim.into()), "{claim}: {value}");
            let msg = err.to_string();
            assert!(msg.contains(&format!("{claim} claim")) && !msg.contains("X-Injected") && !msg.contains("Mallory"), "{msg}");
        }
        // Surrounding XML whitespace (a pretty-printed SAML value) is trimmed, not refused.
        let mut claims = base.clone();
        claims["sub"] = json!("\n  u1\t\r\n");
        claims["groups"] = json!([" a\n", "b"]);
        let id = map(&claims, &mappings(&["groups"])).unwrap();
        assert_eq!((id.subject.as_str(), id.groups.clone()), ("u1", Some(vec!["a".to_string(), "b".to_string()])));
        // Other Unicode is kept as is.
        claims["name"] = json!("Zoë \u{200d} Ω");
        assert_eq!(map(&claims, &mappings(&[])).unwrap().name.as_deref(), Some("Zoë \u{200d} Ω"));
    }

    #[test]
    fn only_xml_whitespace_is_trimmed_so_distinct_identifiers_stay_distinct() {
        for (raw, want) in [
            ("victim\u{A0}", "victim\u{A0}"),
            ("\u{A0}victim", "\u{A0}victim"),
            ("victim\u{2003}", "victim\u{2003}"),
            ("victim\u{1680}", "victim\u{1680}"),
            ("victim\u{3000}", "victim\u{3000}"),
            (" victim ", "victim"),
            ("\tvictim\r\n", "victim"),
        ] {
            let id = map(&json!({"sub": raw}), &mappings(&[])).unwrap();
            assert_eq!(id.subject, want, "{raw:?}");
        }
        let id = map(&json!({"sub": "a", "email": "victim@example.test\u{A0}"}), &mappings(&[])).unwrap();
        assert_eq!(id.email.as_deref(), Some("victim@example.test\u{A0}"));
    }
}
