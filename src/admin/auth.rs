//! The admin token (`admin_token_file`): who may read `/`, `/usage` and `/metrics`. A caller
//! shows it as `Authorization: Bearer <token>` (scrapers, scripts, `explo-shim usage`) or, in a
//! browser, as the session cookie the console's sign-in form sets once: a value derived from
//! the token, never the token itself (browsers send a cookie to every port of its host).
//! `/healthz` and `/readyz` never ask for it: probes carry no secrets.

use http::header::{AUTHORIZATION, COOKIE};
use http::{HeaderMap, HeaderValue};

use crate::policy::AdminToken;

use crate::headers::cookie::{self, ADMIN_SESSION_COOKIE as COOKIE_NAME};

/// The paths the token guards: what tells who calls and how much.
pub fn is_guarded(path: &str) -> bool {
    matches!(path, "/" | "/usage" | "/metrics")
}

/// Whether the request carries `token`, as a bearer credential or the console's cookie.
pub fn is_authorized(headers: &HeaderMap, token: &AdminToken) -> bool {
    let bearer = headers
        .get_all(AUTHORIZATION)
        .iter()
        .filter_map(bearer_credential)
        .any(|candidate| token.matches(candidate));
    bearer
        || headers
            .get_all(COOKIE)
            .iter()
            .flat_map(|value| cookie::values(value, COOKIE_NAME))
            .any(|candidate| token.matches_session(candidate))
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

/// The `Set-Cookie` value that keeps the session for the console: never readable by scripts
/// (`HttpOnly`), never sent with another site's requests (`SameSite=Strict`).
pub fn session_cookie(token: &AdminToken) -> HeaderValue {
    // The session value is hex: always a valid cookie and header value.
    HeaderValue::from_str(&format!(
        "{COOKIE_NAME}={}; Path=/; HttpOnly; SameSite=Strict",
        token.session()
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
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
    fn a_bearer_credential_or_the_cookie_opens_the_guarded_paths() {
        let token = token("abc123");
        assert!(is_authorized(
            &headers(&[(AUTHORIZATION, "Bearer abc123")]),
            &token
        ));
        assert!(is_authorized(
            &headers(&[(AUTHORIZATION, "bearer  abc123 ")]),
            &token
        ));
        let session = format!("theme=dark; explo_shim_admin={}", token.session());
        assert!(is_authorized(&headers(&[(COOKIE, &session)]), &token));
        // The raw token is no session.
        assert!(!is_authorized(
            &headers(&[(COOKIE, "explo_shim_admin=abc123")]),
            &token
        ));
        for refused in [
            headers(&[]),
            headers(&[(AUTHORIZATION, "Bearer abc124")]),
            headers(&[(AUTHORIZATION, "Basic abc123")]),
            headers(&[(AUTHORIZATION, "Bearer ")]),
            headers(&[(COOKIE, "explo_shim_admin_x=abc123")]),
            headers(&[(COOKIE, "xexplo_shim_admin=abc123")]),
        ] {
            assert!(!is_authorized(&refused, &token), "{refused:?}");
        }
        assert!(is_guarded("/") && is_guarded("/usage") && is_guarded("/metrics"));
        assert!(!is_guarded("/healthz") && !is_guarded("/readyz"));
    }

    #[test]
    fn the_cookie_is_http_only_same_site_and_holds_the_session_not_the_token() {
        let token = token("abc123");
        let cookie = session_cookie(&token);
        let cookie = cookie.to_str().unwrap();
        assert!(cookie.starts_with(&format!("explo_shim_admin={};", token.session())));
        assert!(cookie.ends_with("; Path=/; HttpOnly; SameSite=Strict"));
        assert!(!cookie.contains("abc123"));
    }
}
