//! Who may read `/`, `/usage` and `/metrics`.
//!
//! With the admin token (`admin_token_file`), a caller shows it as `Authorization: Bearer
//! <token>` (scrapers, scripts, `explo-shim usage`) or, in a browser, as the session cookie
//! the console's sign-in form sets: a value signed with the token that carries its own expiry
//! ([`AdminToken::session_until`]), never the token itself (browsers send a cookie to every
//! port of its host). A request carries one credential or none: several are refused unchecked,
//! so one request cannot try many guesses.
//!
//! Without a token, the `Host` a request names must be this machine as an address or
//! `localhost`, or a name in `admin_allowed_hosts`: a web page that rebinds its own name to
//! this address (DNS rebinding) still sends its own name, and so reads nothing.
//!
//! `/healthz` and `/readyz` never ask for either: probes carry no secrets.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::SystemTime;

use http::header::{AUTHORIZATION, COOKIE, HOST};
use http::{HeaderMap, HeaderValue, Uri};

use crate::config::policy::{ADMIN_SESSION_LIFETIME, AdminToken};
use crate::message::headers::cookie::{self, ADMIN_SESSION_COOKIE as COOKIE_NAME};

/// The paths the token guards: what tells who calls and how much.
pub fn is_guarded(path: &str) -> bool {
    matches!(path, "/" | "/usage" | "/metrics")
}

/// One credential as the request carries it, not yet checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential<'a> {
    /// `Authorization: Bearer <credential>`.
    Bearer(&'a [u8]),
    /// An `Authorization` header of another scheme, or an empty bearer: never right.
    Unusable,
    /// The console's session cookie.
    Session(&'a [u8]),
}

/// What a request carries for the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presented<'a> {
    Nothing,
    One(Credential<'a>),
    /// More than one `Authorization` header or session cookie, or one of each.
    Several,
}

/// The one credential `headers` carry, or that they carry none or several. Stops counting at
/// the second, so a head full of them costs no more than two.
pub fn presented(headers: &HeaderMap) -> Presented<'_> {
    let bearers = headers
        .get_all(AUTHORIZATION)
        .iter()
        .map(|value| bearer_credential(value).map_or(Credential::Unusable, Credential::Bearer));
    let sessions = headers
        .get_all(COOKIE)
        .iter()
        .flat_map(|value| cookie::values(value, COOKIE_NAME))
        .map(Credential::Session);
    let mut all = bearers.chain(sessions);
    match (all.next(), all.next()) {
        (None, _) => Presented::Nothing,
        (Some(one), None) => Presented::One(one),
        (Some(_), Some(_)) => Presented::Several,
    }
}

/// Whether `credential` is the token, or a session it signed that is good at `now`.
pub fn accepts(credential: Credential<'_>, token: &AdminToken, now: SystemTime) -> bool {
    match credential {
        Credential::Bearer(candidate) => token.matches(candidate),
        Credential::Session(candidate) => token.accepts_session(candidate, now),
        Credential::Unusable => false,
    }
}

/// The credential of `Bearer <credential>` (the scheme in any case, RFC 9110 §11.1).
fn bearer_credential(value: &HeaderValue) -> Option<&[u8]> {
    let value = value.as_bytes();
    let (scheme, rest) = value.split_at_checked(7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| rest.trim_ascii())
        .filter(|credential| !credential.is_empty())
}

/// The `Set-Cookie` value that keeps a session, signed at `now`, for the console: gone with
/// its expiry (`Max-Age`, and the expiry inside the value for a browser that keeps it
/// longer), never readable by scripts (`HttpOnly`), never sent with another site's requests
/// (`SameSite=Strict`).
pub fn session_cookie(token: &AdminToken, now: SystemTime) -> HeaderValue {
    let session = token.session_until(now + ADMIN_SESSION_LIFETIME);
    let mut value = HeaderValue::from_str(&format!(
        "{COOKIE_NAME}={session}; Max-Age={}; Path=/; HttpOnly; SameSite=Strict",
        ADMIN_SESSION_LIFETIME.as_secs()
    ))
    // Digits, a dot and hex: always a valid header value.
    .unwrap_or_else(|_| HeaderValue::from_static(""));
    value.set_sensitive(true);
    value
}

/// The `Set-Cookie` value that makes a browser drop the session (`POST /logout`).
pub fn signed_out_cookie() -> HeaderValue {
    HeaderValue::from_static("explo_shim_admin=; Max-Age=0; Path=/; HttpOnly; SameSite=Strict")
}

/// Without a token: whether the request names this listener by an address, `localhost` or a
/// name in `allowed`. A request without `Host` (HTTP/1.0) passes: every browser sends one, so
/// a page cannot leave it out. Several `Host` headers do not.
pub fn host_is_allowed(headers: &HeaderMap, uri: &Uri, allowed: &BTreeSet<String>) -> bool {
    let mut hosts = headers.get_all(HOST).iter();
    let header_allowed = match (hosts.next(), hosts.next()) {
        (None, _) => true,
        (Some(host), None) => host
            .to_str()
            .is_ok_and(|host| authority_is_allowed(host, allowed)),
        (Some(_), Some(_)) => false,
    };
    // An absolute-form target names a host too (RFC 9112 §3.2.2); it must pass as well.
    header_allowed
        && uri
            .authority()
            .is_none_or(|authority| authority_is_allowed(authority.as_str(), allowed))
}

/// `host[:port]` as in `Host`: an IPv4 literal, a bracketed IPv6 literal, `localhost` or a
/// name in `allowed`, any case, with or without a trailing dot.
fn authority_is_allowed(authority: &str, allowed: &BTreeSet<String>) -> bool {
    let is_port = |port: &str| !port.is_empty() && port.bytes().all(|byte| byte.is_ascii_digit());
    if let Some(bracketed) = authority.strip_prefix('[') {
        let Some((literal, rest)) = bracketed.split_once(']') else {
            return false;
        };
        return literal.parse::<Ipv6Addr>().is_ok()
            && (rest.is_empty() || rest.strip_prefix(':').is_some_and(is_port));
    }
    let host = match authority.split_once(':') {
        None => authority,
        Some((host, port)) if is_port(port) => host,
        Some(_) => return false,
    };
    if host.parse::<Ipv4Addr>().is_ok() {
        return true;
    }
    let name = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    name == "localhost" || allowed.contains(&name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(text: &str) -> AdminToken {
        // Unique per call: the tests run at once, and one must not remove another's file.
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "explo-shim-auth-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::write(&path, text).unwrap();
        let token = AdminToken::read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        token
    }

    fn headers(pairs: &[(http::HeaderName, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn one_credential_is_read_and_several_are_refused_unread() {
        let one = |pairs: &[(http::HeaderName, &str)]| match presented(&headers(pairs)) {
            Presented::One(credential) => format!("{credential:?}"),
            other => format!("{other:?}"),
        };
        assert_eq!(one(&[]), "Nothing");
        assert_eq!(one(&[(COOKIE, "theme=dark")]), "Nothing");
        assert_eq!(
            presented(&headers(&[(AUTHORIZATION, "bearer  abc123 ")])),
            Presented::One(Credential::Bearer(b"abc123"))
        );
        for unusable in ["Basic abc123", "Bearer ", "Bearer"] {
            assert_eq!(
                presented(&headers(&[(AUTHORIZATION, unusable)])),
                Presented::One(Credential::Unusable),
                "{unusable}"
            );
        }
        assert_eq!(
            presented(&headers(&[(COOKIE, "theme=dark; explo_shim_admin=1.ab")])),
            Presented::One(Credential::Session(b"1.ab"))
        );
        for several in [
            headers(&[(AUTHORIZATION, "Bearer a"), (AUTHORIZATION, "Bearer b")]),
            headers(&[(AUTHORIZATION, "Bearer a"), (AUTHORIZATION, "Basic b")]),
            headers(&[(COOKIE, "explo_shim_admin=a; explo_shim_admin=b")]),
            headers(&[
                (COOKIE, "explo_shim_admin=a"),
                (COOKIE, "explo_shim_admin=b"),
            ]),
            headers(&[(AUTHORIZATION, "Bearer a"), (COOKIE, "explo_shim_admin=b")]),
        ] {
            assert_eq!(presented(&several), Presented::Several, "{several:?}");
        }
    }

    #[test]
    fn the_token_or_a_live_session_is_accepted() {
        let token = token("abc123");
        let now = SystemTime::now();
        assert!(accepts(Credential::Bearer(b"abc123"), &token, now));
        assert!(!accepts(Credential::Bearer(b"abc124"), &token, now));
        assert!(!accepts(Credential::Unusable, &token, now));
        let session = token.session_until(now + ADMIN_SESSION_LIFETIME);
        assert!(accepts(
            Credential::Session(session.as_bytes()),
            &token,
            now
        ));
        // The raw token is no session.
        assert!(!accepts(Credential::Session(b"abc123"), &token, now));
        assert!(is_guarded("/") && is_guarded("/usage") && is_guarded("/metrics"));
        assert!(!is_guarded("/healthz") && !is_guarded("/readyz"));
    }

    #[test]
    fn the_cookie_expires_is_http_only_same_site_and_holds_no_token() {
        let token = token("abc123");
        let cookie = session_cookie(&token, SystemTime::now());
        assert!(cookie.is_sensitive());
        let cookie = cookie.to_str().unwrap();
        let value = cookie
            .strip_prefix("explo_shim_admin=")
            .and_then(|rest| rest.split(';').next())
            .unwrap();
        assert!(token.accepts_session(value.as_bytes(), SystemTime::now()));
        assert!(cookie.ends_with("; Max-Age=43200; Path=/; HttpOnly; SameSite=Strict"));
        assert!(!cookie.contains("abc123"));
        assert_eq!(
            signed_out_cookie(),
            "explo_shim_admin=; Max-Age=0; Path=/; HttpOnly; SameSite=Strict"
        );
    }

    #[test]
    fn without_a_token_only_this_machines_names_reach_the_data() {
        let allowed = BTreeSet::from(["shim.internal".to_owned()]);
        let uri: Uri = "/usage".parse().unwrap();
        let passes = |host: &str| host_is_allowed(&headers(&[(HOST, host)]), &uri, &allowed);
        for good in [
            "127.0.0.1",
            "127.0.0.1:9090",
            "10.1.2.3:80",
            "[::1]",
            "[::1]:9090",
            "localhost",
            "LOCALHOST:9090",
            "localhost.",
            "shim.internal",
            "Shim.Internal:9090",
        ] {
            assert!(passes(good), "{good}");
        }
        for bad in [
            "evil.example",
            "evil.example:9090",
            "localhost.evil.example",
            "127.0.0.1.evil.example",
            "::1",
            "[::1",
            "[evil]",
            "127.0.0.1:",
            "127.0.0.1:x",
            "shim.internal.evil",
            "",
        ] {
            assert!(!passes(bad), "{bad}");
        }
        // No Host at all (HTTP/1.0): no browser sends that.
        assert!(host_is_allowed(&headers(&[]), &uri, &allowed));
        assert!(!host_is_allowed(
            &headers(&[(HOST, "127.0.0.1"), (HOST, "evil.example")]),
            &uri,
            &allowed
        ));
        let absolute: Uri = "http://evil.example/usage".parse().unwrap();
        assert!(!host_is_allowed(
            &headers(&[(HOST, "127.0.0.1")]),
            &absolute,
            &allowed
        ));
    }
}
