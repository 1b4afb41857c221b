//! `Cookie` request headers (RFC 6265 §4.2.1): finding a cookie by name, and taking one out
//! before a request goes upstream. Read a byte at a time, so a header that is not UTF-8 is
//! handled like any other.

use http::header::COOKIE;
use http::{HeaderMap, HeaderValue};

/// The admin console's session cookie. Browsers send a cookie to every port of the host that
/// set it, so a browser signed in to the admin port sends it to the main listener too; it is
/// the shim's own and never goes upstream.
pub const ADMIN_SESSION_COOKIE: &str = "explo_shim_admin";

/// The values of the cookies named `name` in one `Cookie` header.
pub fn values<'a>(value: &'a HeaderValue, name: &'a str) -> impl Iterator<Item = &'a [u8]> {
    value
        .as_bytes()
        .split(|byte| *byte == b';')
        .filter_map(move |pair| value_of(pair, name))
}

/// `pair`'s value when it is the cookie `name`.
fn value_of<'a>(pair: &'a [u8], name: &str) -> Option<&'a [u8]> {
    let (key, value) = pair.trim_ascii().split_at_checked(name.len())?;
    (key == name.as_bytes())
        .then(|| value.strip_prefix(b"="))
        .flatten()
}

/// Takes every cookie named `name` out of `headers`, and drops a `Cookie` header left empty.
/// A request without one is left as it came, and costs no allocation.
pub fn remove(headers: &mut HeaderMap, name: &str) {
    let present = headers
        .get_all(COOKIE)
        .iter()
        .any(|value| values(value, name).next().is_some());
    if !present {
        return;
    }
    let cookies: Vec<HeaderValue> = headers.get_all(COOKIE).iter().cloned().collect();
    headers.remove(COOKIE);
    for value in cookies {
        let kept: Vec<&[u8]> = value
            .as_bytes()
            .split(|byte| *byte == b';')
            .filter(|pair| value_of(pair, name).is_none())
            .map(<[u8]>::trim_ascii)
            .collect();
        if let Ok(rest) = HeaderValue::from_bytes(&kept.join(&b"; "[..]))
            && !rest.is_empty()
        {
            headers.append(COOKIE, rest);
        }
    }
}
