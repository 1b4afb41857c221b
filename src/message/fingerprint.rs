//! The client fingerprint: how a legacy caller is named in logs, metrics, `/usage` and
//! `exempt_clients` without its credential ever being written down. Low in the crate: the
//! config validates fingerprints with it, and telemetry and metrics label with it.

use http::{HeaderName, HeaderValue};
use sha2::{Digest, Sha256};

/// The Explo API credential header (Explo docs, "Explo's authentication"), whose value the
/// fingerprint is taken of.
pub static EXPLO_AUTHORIZATION: HeaderName = HeaderName::from_static("explo-authorization");

/// The fingerprint of a client that sent no `Explo-Authorization`.
pub const ANONYMOUS: &str = "anonymous";

/// Identifies a client without revealing its credential: the first 12 hex digits of the
/// SHA-256 of its `Explo-Authorization` value, or `anonymous` without one.
pub fn client_fingerprint(authorization: Option<&HeaderValue>) -> String {
    // An empty credential is no credential: it must not get a fingerprint of its own, which
    // `exempt_clients` could name and so exempt everyone who sends the header empty.
    let Some(value) = authorization.filter(|value| !is_blank(value)) else {
        return ANONYMOUS.to_owned();
    };
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(value.as_bytes());
    // Written digit by digit: `format!` per byte cost more than the hash itself (callgrind,
    // with the access log on, which fingerprints every request).
    let mut fingerprint = String::with_capacity(12);
    for byte in &digest[..6] {
        fingerprint.push(char::from(HEX[usize::from(byte >> 4)]));
        fingerprint.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    fingerprint
}

/// Whether `text` is a fingerprint as [`client_fingerprint`] writes it: 12 lower-case hex
/// digits (not [`ANONYMOUS`], which names every caller without a credential).
pub fn is_fingerprint(text: &str) -> bool {
    text.len() == 12
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A header value with nothing but spaces and tabs, or nothing at all.
pub fn is_blank(value: &HeaderValue) -> bool {
    value
        .as_bytes()
        .iter()
        .all(|byte| matches!(byte, b' ' | b'\t'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_is_twelve_hex_digits_of_sha256() {
        let value = HeaderValue::from_static("Token abc");
        // sha256("Token abc") computed independently with `printf 'Token abc' | sha256sum`.
        assert_eq!(client_fingerprint(Some(&value)), "64cc961af68c");
        assert_eq!(client_fingerprint(None), "anonymous");
    }

    #[test]
    fn a_blank_credential_is_anonymous() {
        for blank in ["", " ", "\t "] {
            assert_eq!(
                client_fingerprint(Some(&HeaderValue::from_static(blank))),
                ANONYMOUS,
                "{blank:?}"
            );
        }
    }

    #[test]
    fn fingerprint_does_not_contain_the_token() {
        let value = HeaderValue::from_static("Token 0123456789ab");
        let fingerprint = client_fingerprint(Some(&value));
        assert_eq!(fingerprint.len(), 12);
        assert!(!fingerprint.contains("0123456789ab"));
    }
}
