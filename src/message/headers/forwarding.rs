//! Headers on the way to the upstream.
//!
//! The upstream is a third party: the shim sets `Host` to the upstream's own authority (the
//! client's `Host` never chooses where the shim connects, and would not match the upstream's
//! certificate) and adds `X-Forwarded-For` only when the operator asks for it.

use std::net::IpAddr;

use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue};

use super::cookie::{self, ADMIN_SESSION_COOKIE};
use super::hop::strip_hop_by_hop;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// Turns the client's request headers into the headers sent upstream.
///
/// `Host` is removed so the HTTP client derives it (or `:authority`) from the upstream URI.
pub fn prepare_upstream_headers(
    headers: &mut HeaderMap,
    client_ip: IpAddr,
    add_x_forwarded_for: bool,
) {
    strip_hop_by_hop(headers);
    headers.remove(header::HOST);
    cookie::remove(headers, ADMIN_SESSION_COOKIE);
    if add_x_forwarded_for {
        append_forwarded_for(headers, client_ip);
    }
}

/// Appends the client to an existing `X-Forwarded-For` chain, or starts one.
fn append_forwarded_for(headers: &mut HeaderMap, client_ip: IpAddr) {
    let chain = match headers
        .get(&X_FORWARDED_FOR)
        .and_then(|value| value.to_str().ok())
    {
        Some(existing) if !existing.trim().is_empty() => format!("{existing}, {client_ip}"),
        _ => client_ip.to_string(),
    };
    if let Ok(value) = HeaderValue::from_str(&chain) {
        headers.insert(&X_FORWARDED_FOR, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_admin_session_cookie_never_goes_upstream_and_other_cookies_do() {
        let mut headers = HeaderMap::new();
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; explo_shim_admin=abc; b=2"),
        );
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("explo_shim_admin=abc"),
        );
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("explo_shim_admin_x=keep"),
        );
        prepare_upstream_headers(&mut headers, CLIENT, false);
        let cookies: Vec<_> = headers.get_all(header::COOKIE).iter().collect();
        assert_eq!(cookies, ["a=1; b=2", "explo_shim_admin_x=keep"]);
        let mut untouched = HeaderMap::new();
        untouched.insert(header::COOKIE, HeaderValue::from_static("a=1;b=2"));
        prepare_upstream_headers(&mut untouched, CLIENT, false);
        assert_eq!(untouched[header::COOKIE], "a=1;b=2");
    }

    const CLIENT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 7));

    #[test]
    fn drops_host_and_hop_by_hop_and_adds_nothing_by_default() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("evil.example"));
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        headers.insert("explo-authorization", HeaderValue::from_static("Token t"));
        prepare_upstream_headers(&mut headers, CLIENT, false);
        assert_eq!(headers.len(), 1);
        assert!(headers.contains_key("explo-authorization"));
    }

    #[test]
    fn starts_a_forwarded_for_chain_when_asked() {
        let mut headers = HeaderMap::new();
        prepare_upstream_headers(&mut headers, CLIENT, true);
        assert_eq!(headers["x-forwarded-for"], "192.0.2.7");
    }

    #[test]
    fn extends_an_existing_forwarded_for_chain() {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", HeaderValue::from_static("203.0.113.1"));
        prepare_upstream_headers(&mut headers, CLIENT, true);
        assert_eq!(headers["x-forwarded-for"], "203.0.113.1, 192.0.2.7");
    }

    #[test]
    fn leaves_a_client_forwarded_for_alone_when_not_asked() {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", HeaderValue::from_static("203.0.113.1"));
        prepare_upstream_headers(&mut headers, CLIENT, false);
        assert_eq!(headers["x-forwarded-for"], "203.0.113.1");
    }
}
