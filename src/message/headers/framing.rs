//! Request framing: refuse every shape that two HTTP parsers could read differently.
//!
//! RFC 9112 §6.1 and §6.3: a message with both `Transfer-Encoding` and `Content-Length`, more
//! than one `Content-Length`, or a transfer coding other than a final `chunked` is the raw
//! material of request smuggling. hyper already refuses the worst of these; this check makes
//! the shim's answer explicit (400 and `Connection: close`) and independent of the parser.

use http::HeaderMap;
use http::header::{CONTENT_LENGTH, HeaderName, TRANSFER_ENCODING};

use crate::error::ShimError;
use crate::server::framing_guard::AMBIGUOUS_FRAMING_MARKER;

/// The guard's marker as a name: a look-up by `&str` would parse the name on every request.
static AMBIGUOUS_FRAMING: HeaderName = HeaderName::from_static(AMBIGUOUS_FRAMING_MARKER);

/// Accepts only unambiguous framing: no body headers, one decimal `Content-Length`, or
/// `Transfer-Encoding: chunked` alone.
pub fn check_request_framing(headers: &HeaderMap) -> Result<(), ShimError> {
    let mut lengths = headers.get_all(CONTENT_LENGTH).iter();
    let mut encodings = headers.get_all(TRANSFER_ENCODING).iter();
    let ambiguous = |reason: &'static str| Err(ShimError::AmbiguousFraming { reason });
    // The connection guard renames a Content-Length that hyper would have dropped or merged.
    if headers.contains_key(&AMBIGUOUS_FRAMING) {
        return ambiguous("Transfer-Encoding with Content-Length, or a repeated Content-Length");
    }
    match (lengths.next(), encodings.next()) {
        (None, None) => Ok(()),
        (Some(_), Some(_)) => ambiguous("both Transfer-Encoding and Content-Length"),
        (Some(length), None) => {
            if lengths.next().is_some() {
                return ambiguous("more than one Content-Length");
            }
            let digits = length.as_bytes();
            if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
                return ambiguous("a Content-Length that is not a single decimal number");
            }
            Ok(())
        }
        (None, Some(coding)) => {
            let chunked = coding
                .to_str()
                .is_ok_and(|c| c.trim().eq_ignore_ascii_case("chunked"));
            if !chunked || encodings.next().is_some() {
                return ambiguous("a Transfer-Encoding other than chunked");
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn check(pairs: &[(&'static str, &'static str)]) -> Result<(), ShimError> {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, HeaderValue::from_static(value));
        }
        check_request_framing(&headers)
    }

    #[test]
    fn plain_framings_pass() {
        assert!(check(&[]).is_ok());
        assert!(check(&[("content-length", "0")]).is_ok());
        assert!(check(&[("content-length", "42")]).is_ok());
        assert!(check(&[("transfer-encoding", "chunked")]).is_ok());
        assert!(check(&[("transfer-encoding", " Chunked ")]).is_ok());
    }

    #[test]
    fn smuggling_shapes_are_refused() {
        for pairs in [
            &[("content-length", "5"), ("transfer-encoding", "chunked")][..],
            &[("content-length", "5"), ("content-length", "5")],
            &[("content-length", "5, 5")],
            &[("content-length", "+5")],
            &[("content-length", "")],
            &[("transfer-encoding", "gzip, chunked")],
            &[
                ("transfer-encoding", "chunked"),
                ("transfer-encoding", "chunked"),
            ],
            &[("transfer-encoding", "xchunked")],
            &[("transfer-encoding", "identity")],
            &[("transfer-encoding", "chunked"), ("x-ambiguous-cl", "5")],
        ] {
            let error = check(pairs).unwrap_err();
            assert_eq!(error.status(), http::StatusCode::BAD_REQUEST, "{pairs:?}");
            assert_eq!(error.code(), "ambiguous_framing");
        }
    }
}
