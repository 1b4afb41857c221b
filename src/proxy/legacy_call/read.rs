//! Reading a legacy request body: bounded in size and in time, never compressed, and JSON
//! whatever its label.
//!
//! The body is read while the call holds an in-flight slot, so it has two clocks: one for
//! silence (`limits.body_idle_timeout`) and one for the whole body
//! (`limits.legacy_body_timeout`), against a client that drips a byte just inside the first.
//! Either answers 408 and closes the connection; h2c streams are read here too, stream by
//! stream.

use bytes::Bytes;
use http::HeaderMap;
use http::header;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use crate::config::Limits;
use crate::error::ShimError;
use crate::legacy::request::check_body_size;
use crate::message::body::{BodyIdleTimeout, idle_limited};
use crate::server::coarse_timer;

/// Reads a legacy body of at most `limits.legacy_body_bytes`; a declared length over the limit
/// is refused before any of the body is read.
pub(super) async fn read_legacy_body(
    headers: &HeaderMap,
    body: Incoming,
    limits: &Limits,
) -> Result<Bytes, ShimError> {
    let limit = limits.legacy_body_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if let Some(length) = declared {
        check_body_size(length, limit)?;
    }
    if headers
        .get(header::CONTENT_ENCODING)
        .is_some_and(|coding| !coding.as_bytes().eq_ignore_ascii_case(b"identity"))
    {
        return Err(ShimError::EncodedRequestBody);
    }
    let limit_usize = usize::try_from(limit).unwrap_or(usize::MAX);
    let reading = Limited::new(idle_limited(body, limits.body_idle_timeout), limit_usize).collect();
    // The coarse timer: a deadline armed on every legacy call must be cheap, and firing up to a
    // tenth of a second late does not matter here.
    match coarse_timer::timeout(limits.legacy_body_timeout, reading).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(error)) if error.is::<http_body_util::LengthLimitError>() => {
            Err(ShimError::BodyTooLarge { limit })
        }
        Ok(Err(error)) => Err(error
            .downcast_ref::<BodyIdleTimeout>()
            .map_or(ShimError::IncompleteBody, ShimError::from)),
        Err(coarse_timer::TimedOut) => Err(ShimError::BodyTimeout {
            limit: limits.legacy_body_timeout,
            whole: true,
        }),
    }
}

/// Old scripts send `curl -d` bodies labelled as form data, so JSON is accepted whatever the
/// `Content-Type`; a body that does not parse is a 400 when it claimed to be JSON and a 415
/// otherwise.
pub(super) fn unparseable(headers: &HeaderMap, error: ShimError) -> ShimError {
    match error {
        ShimError::InvalidJson { .. } if !claims_json(headers) => ShimError::NotJson,
        other => other,
    }
}

/// `application/json` or any `+json` media type (RFC 6839).
fn claims_json(headers: &HeaderMap) -> bool {
    let Some(content_type) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json" || essence.ends_with("+json")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::legacy::request::translate_request;
    use crate::legacy::route::LegacyRoute;
    use http::{HeaderValue, StatusCode};

    fn content_type(value: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(value));
        headers
    }

    fn parse_legacy_json(headers: &HeaderMap, bytes: &[u8]) -> Result<(), ShimError> {
        translate_request(LegacyRoute::RefreshUserGroupToken, bytes)
            .map(drop)
            .map_err(|error| unparseable(headers, error))
    }

    #[test]
    fn json_is_accepted_whatever_the_content_type() {
        let form = content_type("application/x-www-form-urlencoded");
        assert!(parse_legacy_json(&form, br#"{"current_token": "t"}"#).is_ok());
        assert!(parse_legacy_json(&HeaderMap::new(), br#"{"current_token": "t"}"#).is_ok());
    }

    #[test]
    fn unparseable_body_is_400_when_it_claimed_json_and_415_otherwise() {
        for claimed in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/vnd.api+json",
        ] {
            let error = parse_legacy_json(&content_type(claimed), b"{nope").unwrap_err();
            assert_eq!(error.status(), StatusCode::BAD_REQUEST, "{claimed}");
        }
        for other in ["text/plain", "application/x-www-form-urlencoded"] {
            let error = parse_legacy_json(&content_type(other), b"user_group_id=1").unwrap_err();
            assert_eq!(error, ShimError::NotJson, "{other}");
        }
        assert_eq!(
            parse_legacy_json(&HeaderMap::new(), b"").unwrap_err(),
            ShimError::NotJson
        );
    }
}
