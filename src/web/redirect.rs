//! The one redirect validator: where a login, a sign-out or the ingress may send the
//! browser next. A path on this gateway, or an http(s) URL on this gateway's host or on
//! a host of `ingress.allowed_domains`; every trick of the ~70 tried (scheme-relative,
//! backslashes, control characters, user info, lookalike suffixes, other ports) refused.

use url::Url;

use crate::config::Config;
use crate::limit::RETURN_TO_MAX;

/// A local path's verdict, or `None` when `rd` is not a path (it does not start with `/`).
fn path(rd: &str) -> Option<Result<String, &'static str>> {
    let verdict = if rd.is_empty() || rd.len() > RETURN_TO_MAX {
        Err("the return URL is empty or too long")
    } else if rd.chars().any(|c| c.is_control() || c.is_whitespace() || c == '\\') {
        Err("the return URL contains spaces, control characters or backslashes")
    } else if !rd.starts_with('/') {
        return None;
    } else if rd.starts_with("//") {
        Err("the return URL is scheme-relative")
    } else {
        Ok(rd.to_string())
    };
    Some(verdict)
}

/// A local return path: absolute path on this host, no scheme-relative tricks.
pub fn local_path(p: &str) -> Option<String> {
    path(p).and_then(Result::ok)
}

/// Where a login may return: a local path, or a URL the configuration allows.
pub fn return_target(config: &Config, p: &str) -> Option<String> {
    validate(p, &config.ingress.allowed_domains, &config.public_url).ok()
}

/// Whether `host[:port]` matches an allowed-domain entry.
fn host_allowed(host: &str, port: Option<u16>, entry: &str) -> bool {
    let (pattern, want_port) = match entry.rsplit_once(':') {
        Some((h, p)) => match p.parse::<u16>() {
            Ok(p) => (h, Some(p)),
            Err(_) => return false,
        },
        None => (entry, None),
    };
    // A non-default port must be named in the entry; a named port must be the one used.
    if port != want_port {
        return false;
    }
    let pattern = pattern.to_ascii_lowercase();
    match pattern.strip_prefix('.') {
        Some(domain) => host == domain || host.ends_with(&format!(".{domain}")),
        None => host == pattern,
    }
}

/// Validates a return target: a local path, or an http(s) URL on an allowed host.
/// Refuses scheme-relative and backslash tricks, control characters and spaces, user
/// info, other schemes, lookalike suffixes and other ports. Returns the URL to go to.
pub fn validate(rd: &str, allowed: &[String], public_url: &Url) -> Result<String, &'static str> {
    if let Some(path) = path(rd) {
        return path;
    }
    let url = Url::parse(rd).map_err(|_| "the return URL is not a URL")?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("the return URL must be http or https");
    }
    // `https:evil.example` parses, but is not how anyone writes a URL: insist on `//`.
    if !rd[url.scheme().len()..].starts_with("://") {
        return Err("the return URL is malformed");
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("the return URL carries a user name or password");
    }
    let host = url.host_str().ok_or("the return URL has no host")?.to_ascii_lowercase();
    let port = url.port();
    let own = public_url.host_str().is_some_and(|h| h.eq_ignore_ascii_case(&host)) && public_url.port() == port;
    if own || allowed.iter().any(|e| host_allowed(&host, port, e.trim())) {
        Ok(url.to_string())
    } else {
        Err("the return URL's host is not one this gateway may send you to")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_table() {
        let public = Url::parse("https://sso.example.com").unwrap();
        let allowed = vec!["app.example.com".to_string(), ".corp.example".to_string(), "tools.example.com:8443".to_string()];
        let ok = [
            "/",
            "/path?q=1",
            "https://app.example.com/x",
            "http://app.example.com",
            "https://corp.example/",
            "https://a.b.corp.example/x",
            "https://tools.example.com:8443/",
            "https://sso.example.com/after",
        ];
        for rd in ok {
            assert!(validate(rd, &allowed, &public).is_ok(), "{rd} should pass");
        }
        let bad = [
            "//evil.example",
            "/\\evil.example",
            "\\/evil.example",
            "/\tx",
            "https://app.example.com/\nx",
            "https://app.example.com\r/x",
            "https:evil.example",
            "https:/evil.example",
            "https://app.example.com@evil.example/",
            "https://user:pw@app.example.com/",
            "https://app.example.com.evil.example/",
            "https://evilcorp.example/",
            "https://app.example.com:444/",
            "https://tools.example.com/",
            "javascript:alert(1)",
            "ftp://app.example.com/",
            "data:text/html,x",
            "https://evil.example/",
            "",
            "https://app.example.com /x",
        ];
        for rd in bad {
            assert!(validate(rd, &allowed, &public).is_err(), "{rd:?} should be refused");
        }
    }

    /// Whatever the validator accepts, a browser resolving it from a gateway page lands on
    /// the gateway or an allowed host, over http(s). Checked against the WHATWG URL
    /// parser (what browsers implement) on 200 000 strings spliced from the pieces open
    /// redirects are made of; a fixed seed, so a failure reproduces.
    #[test]
    fn nothing_accepted_leads_a_browser_off_the_allowed_hosts() {
        use rand::{Rng, SeedableRng};
        let public = Url::parse("https://sso.example.com").unwrap();
        let page = public.join("/login/con_x?return_to=x").unwrap();
        let allowed = vec!["app.example.com".to_string(), ".corp.example".to_string(), "tools.example.com:8443".to_string()];
        let lands_well = |u: &Url| {
            let host = u.host_str().unwrap_or_default();
            let port = u.port();
            matches!(u.scheme(), "http" | "https")
                && u.username().is_empty()
                && u.password().is_none()
                && ((host == "sso.example.com" && port.is_none())
                    || (host == "app.example.com" && port.is_none())
                    || ((host == "corp.example" || host.ends_with(".corp.example")) && port.is_none())
                    || (host == "tools.example.com" && port == Some(8443)))
        };
        let pieces = [
            "/",
            "//",
            "///",
            "\\",
            "\\\\",
            "@",
            ":",
            ".",
            "..",
            "%2F",
            "%2f",
            "%5C",
            "%40",
            "%00",
            "%09",
            "%2e",
            "\t",
            "\n",
            "\r",
            " ",
            "\u{0}",
            "http",
            "https",
            "HTTPS",
            "javascript",
            "data",
            "ftp",
            "://",
            ":/",
            ":443",
            ":8443",
            ":80",
            "app.example.com",
            "evil.example",
            "example.com",
            "corp.example",
            ".corp.example",
            "sso.example.com",
            "tools.example.com",
            "#",
            "?",
            "&",
            "=",
            "[::1]",
            "127.0.0.1",
            "0x7f.1",
            "\u{3002}",
            "\u{FF0F}",
            "\u{FF0E}",
            "\u{2215}",
            "\u{200B}",
            "\u{FEFF}",
            "xn--",
            "localhost",
            "a",
            "user",
            "pw",
        ];
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x0550_9a7e);
        let mut accepted = 0;
        for _ in 0..200_000 {
            let n = rng.gen_range(1..8);
            let rd: String = (0..n).map(|_| pieces[rng.gen_range(0..pieces.len())]).collect();
            let Ok(target) = validate(&rd, &allowed, &public) else { continue };
            accepted += 1;
            let landed = page.join(&target).unwrap_or_else(|e| panic!("{rd:?} was accepted as {target:?}, which a browser cannot resolve: {e}"));
            assert!(lands_well(&landed), "{rd:?} was accepted as {target:?}, and a browser would go to {landed}");
        }
        assert!(accepted > 1_000, "the pieces make enough acceptable targets to mean something: {accepted}");
    }

    #[test]
    fn return_paths_stay_on_this_host() {
        for ok in ["/", "/authorize?client_id=a&x=%2F%2Fevil", "/a/b"] {
            assert!(local_path(ok).is_some(), "{ok}");
        }
        for bad in [
            "//evil.example",
            "/\\evil.example",
            "\\/evil.example",
            "https://evil.example",
            "https:evil.example",
            "evil.example",
            "/\tx",
            "/a\nb",
            "/a\rb",
            "//good@evil.example",
            "",
            "javascript:alert(1)",
        ] {
            assert!(local_path(bad).is_none(), "{bad:?}");
        }
    }
}
