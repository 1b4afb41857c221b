//! `explo-shim fingerprint`: the client fingerprint of a credential read on stdin, so an
//! operator can find a team in the logs, `/metrics` and `/usage`, or name it in
//! `deprecation.exempt_clients`, without the credential being written anywhere. It is never
//! taken from the command line, where it would land in the shell's history.

use http::HeaderValue;

use crate::message::fingerprint::{client_fingerprint, is_blank};

/// The most read from stdin, in bytes: far more than any `Explo-Authorization` value fits in a
/// request head the shim accepts, and little enough that a file piped in by mistake is
/// refused at once.
pub const MAX_CREDENTIAL_BYTES: u64 = 64 * 1024;

/// The fingerprint of `input`, the whole `Explo-Authorization` value (e.g. `Token abc`) with
/// at most one trailing newline (`\n` or `\r\n`), which is dropped; nothing else is trimmed.
pub fn fingerprint_of(input: &[u8]) -> Result<String, String> {
    let credential = input
        .strip_suffix(b"\r\n")
        .or_else(|| input.strip_suffix(b"\n"))
        .unwrap_or(input);
    let value = HeaderValue::from_bytes(credential).map_err(|_| {
        "stdin is not one header value: it holds a second line or a control character; give \
         the Explo-Authorization value alone, e.g. `Token abc`"
            .to_owned()
    })?;
    if is_blank(&value) {
        return Err(
            "a blank credential has no fingerprint: the shim counts it as `anonymous`, \
                    like a call without Explo-Authorization"
                .to_owned(),
        );
    }
    Ok(client_fingerprint(Some(&value)))
}

/// A warning for a credential with spaces or tabs around it: HTTP drops those in transit, so
/// the shim fingerprints the value without them and would show another fingerprint.
pub fn surrounding_whitespace_warning(input: &[u8]) -> Option<&'static str> {
    let credential = input
        .strip_suffix(b"\r\n")
        .or_else(|| input.strip_suffix(b"\n"))
        .unwrap_or(input);
    let space = |byte: Option<&u8>| matches!(byte, Some(b' ' | b'\t'));
    (space(credential.first()) || space(credential.last())).then_some(
        "the credential starts or ends with a space or tab, which HTTP drops in transit; the \
         shim shows the fingerprint of the value without them",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_the_fingerprint_the_shim_shows_with_one_trailing_newline_dropped() {
        // sha256("Token abc"), as in crate::message::fingerprint's own test.
        for input in ["Token abc", "Token abc\n", "Token abc\r\n"] {
            assert_eq!(
                fingerprint_of(input.as_bytes()),
                Ok("64cc961af68c".to_owned()),
                "{input:?}"
            );
        }
    }

    #[test]
    fn only_one_newline_is_dropped_and_nothing_else_is_trimmed() {
        assert!(fingerprint_of(b"Token abc\n\n").is_err());
        assert!(fingerprint_of(b"Token abc\r\n\r\n").is_err());
        let spaced = fingerprint_of(b"Token abc \n").unwrap();
        assert_ne!(spaced, "64cc961af68c");
        assert_eq!(
            spaced,
            client_fingerprint(Some(&HeaderValue::from_static("Token abc ")))
        );
    }

    #[test]
    fn a_blank_credential_has_no_fingerprint() {
        for blank in ["", "\n", "\r\n", "  \t\n"] {
            let error = fingerprint_of(blank.as_bytes()).unwrap_err();
            assert!(error.contains("anonymous"), "{blank:?}: {error}");
        }
    }

    #[test]
    fn two_lines_or_control_characters_are_not_a_credential() {
        for input in ["Token a\nToken b", "Token a\rb", "Token \u{7}"] {
            assert!(fingerprint_of(input.as_bytes()).is_err(), "{input:?}");
        }
    }

    #[test]
    fn spaces_around_the_credential_are_warned_about() {
        assert!(surrounding_whitespace_warning(b" Token abc\n").is_some());
        assert!(surrounding_whitespace_warning(b"Token abc\t\r\n").is_some());
        assert!(surrounding_whitespace_warning(b"Token abc\n").is_none());
    }
}
