//! The collector's URL, from `OTEL_EXPORTER_OTLP_ENDPOINT` (a base, to which the traces path
//! is added) or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (used as is), and how it is shown.
//!
//! Neither value is ever repeated whole: a URL may carry a secret, in its userinfo
//! (`user:pw@`, refused: credentials go in `OTEL_EXPORTER_OTLP_HEADERS`) or in its query
//! (`?api_key=…`, kept and sent, but every value shown as [`REDACTED`]).

use http::Uri;
use http::uri::PathAndQuery;

use super::settings::{SettingsError, invalid};

/// What a display of the endpoint writes instead of a query value.
pub const REDACTED: &str = "<redacted>";

/// The OTLP/HTTP path added to the base endpoint's path, as the specification's "Endpoint
/// URLs for OTLP/HTTP" says: `http://c:4318/base` and `http://c:4318/base/` both become
/// `http://c:4318/base/v1/traces`; the query stays after it.
const TRACES_PATH: &str = "v1/traces";

/// The URL of `variable`'s value: an `http://` or `https://` URL with a host and no userinfo.
/// With `base`, the traces path is added to its path.
pub fn endpoint_from(
    variable: &'static str,
    value: &str,
    base: bool,
) -> Result<Uri, SettingsError> {
    // The parser's own message names no part of the value; ours names none either.
    let uri: Uri = value
        .trim()
        .parse()
        .map_err(|error| invalid(variable, format!("the value is not a URL ({error})")))?;
    let Some(authority) = uri.authority() else {
        return Err(not_http(variable));
    };
    if !matches!(uri.scheme_str(), Some("http" | "https")) || authority.host().is_empty() {
        return Err(not_http(variable));
    }
    if authority.as_str().contains('@') {
        return Err(invalid(
            variable,
            "the URL holds a user name or password, which would be shown in logs and is not \
             sent; remove it and put the credentials in OTEL_EXPORTER_OTLP_HEADERS (e.g. \
             Authorization=Basic%20…)",
        ));
    }
    if !base {
        return Ok(uri);
    }
    let path = uri.path().trim_end_matches('/');
    let path_and_query = match uri.query() {
        Some(query) => format!("{path}/{TRACES_PATH}?{query}"),
        None => format!("{path}/{TRACES_PATH}"),
    };
    let mut parts = uri.into_parts();
    parts.path_and_query = Some(
        PathAndQuery::try_from(path_and_query)
            .map_err(|error| invalid(variable, format!("the value is not a URL ({error})")))?,
    );
    Uri::from_parts(parts)
        .map_err(|error| invalid(variable, format!("the value is not a URL ({error})")))
}

fn not_http(variable: &'static str) -> SettingsError {
    invalid(
        variable,
        "the value is not an http:// or https:// URL with a host",
    )
}

/// `uri` for a log line or `--check-config`: each query value replaced by [`REDACTED`] (an
/// entry without `=` wholly, as it may be a bare token). The userinfo cannot be there: it is
/// refused.
pub fn shown(uri: &Uri) -> String {
    let mut shown = format!(
        "{}://{}{}",
        uri.scheme_str().unwrap_or("http"),
        uri.authority().map(|a| a.as_str()).unwrap_or_default(),
        uri.path()
    );
    if let Some(query) = uri.query() {
        let entries: Vec<String> = query
            .split('&')
            .map(|entry| match entry.split_once('=') {
                Some((key, _)) => format!("{key}={REDACTED}"),
                None if entry.is_empty() => String::new(),
                None => REDACTED.to_owned(),
            })
            .collect();
        shown.push('?');
        shown.push_str(&entries.join("&"));
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

    #[test]
    fn the_traces_path_is_added_to_the_base_path_before_the_query() {
        for (value, expected) in [
            ("http://c:4318", "http://c:4318/v1/traces"),
            ("http://c:4318/", "http://c:4318/v1/traces"),
            ("http://c:4318/base", "http://c:4318/base/v1/traces"),
            ("http://c:4318/base/", "http://c:4318/base/v1/traces"),
            (
                "http://c:4318/?tenant=QSECRET",
                "http://c:4318/v1/traces?tenant=QSECRET",
            ),
            (
                " https://c/base?tenant=a&b=c ",
                "https://c/base/v1/traces?tenant=a&b=c",
            ),
        ] {
            assert_eq!(endpoint_from(BASE, value, true).unwrap(), expected);
        }
        let traces = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
        assert_eq!(
            endpoint_from(traces, "http://c/custom?x=1", false).unwrap(),
            "http://c/custom?x=1"
        );
    }

    #[test]
    fn userinfo_and_bad_urls_are_refused_without_repeating_the_value() {
        for value in [
            "http://user:QSECRET@127.0.0.1:4318/",
            "http://QSECRET@127.0.0.1:4318",
            "QSECRET:4318",
            "ftp://QSECRET/",
            "http://QSECRET host/",
            "http:///QSECRET",
        ] {
            for base in [true, false] {
                let error = endpoint_from(BASE, value, base).unwrap_err();
                assert_eq!(error.variable, BASE);
                let text = error.to_string();
                assert!(!text.contains("QSECRET"), "{value}: {text}");
                assert!(text.contains(BASE), "{text}");
            }
        }
        let error = endpoint_from(BASE, "http://u:p@c/", true).unwrap_err();
        assert!(
            error.message.contains("OTEL_EXPORTER_OTLP_HEADERS"),
            "{error}"
        );
    }

    #[test]
    fn a_shown_endpoint_redacts_every_query_value() {
        let uri = endpoint_from(BASE, "http://c:4318/b?tenant=QS1&key=QS2&QS3&", true).unwrap();
        let text = shown(&uri);
        assert_eq!(
            text,
            "http://c:4318/b/v1/traces?tenant=<redacted>&key=<redacted>&<redacted>&"
        );
        assert_eq!(
            shown(&"https://c/v1/traces".parse().unwrap()),
            "https://c/v1/traces"
        );
    }
}
