//! The one reader of the `Cookie:` request header, for every route (the `/auth` check
//! included). It works on the raw bytes, pair by pair: a pair that is malformed or not
//! ASCII (`pref=José`, set by some other app on the cookie domain) is skipped, never the
//! whole header, so it cannot sign anyone out. It allocates nothing.

use axum::http::{header, HeaderMap};

/// The value of the first well-formed cookie called `name`, in every `Cookie:` header.
/// A value must be visible ASCII (what every cookie of ours is); DQUOTEs around it go.
pub fn find<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get_all(header::COOKIE).iter().flat_map(|v| v.as_bytes().split(|b| *b == b';')).find_map(|pair| value_of(pair, name.as_bytes()))
}

fn value_of<'a>(pair: &'a [u8], name: &[u8]) -> Option<&'a str> {
    let eq = pair.iter().position(|b| *b == b'=')?;
    if pair[..eq].trim_ascii() != name {
        return None;
    }
    let value = pair[eq + 1..].trim_ascii();
    let value = value.strip_prefix(b"\"").and_then(|v| v.strip_suffix(b"\"")).unwrap_or(value);
    // Not ours if not visible ASCII: skip it and keep looking (a later pair may be).
    if !value.iter().all(u8::is_ascii_graphic) {
        return None;
    }
    std::str::from_utf8(value).ok()
}

#[cfg(test)]
mod tests {
    use axum::http::{HeaderMap, HeaderValue};

    fn headers(values: &[&[u8]]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("cookie", HeaderValue::from_bytes(v).unwrap());
        }
        h
    }

    #[test]
    fn one_bad_pair_never_hides_another() {
        for (values, want) in [
            (&[&b"a=1; s=abc"[..]][..], Some("abc")),
            (&[b"pref=Jos\xc3\xa9; s=abc"], Some("abc")),
            (&[b"pref=Jos\xe9;s=abc;x=y"], Some("abc")),
            (&[b"s=\xff; s=abc"], Some("abc")),
            (&[b"=x; noeq; ; s = abc "], Some("abc")),
            (&[b"s=\"abc\""], Some("abc")),
            (&[b"pref=Jos\xc3\xa9", b"s=abc"], Some("abc")),
            (&[b"ss=abc; s2=x"], None),
            (&[b"s=a b"], None),
            (&[b"s=\xff"], None),
            (&[], None),
        ] {
            assert_eq!(super::find(&headers(values), "s"), want, "{values:?}");
        }
        assert_eq!(super::find(&headers(&[b"s="]), "s"), Some(""));
    }
}
