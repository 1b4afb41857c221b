//! The `key=value,key2=value2` lists of `OTEL_EXPORTER_OTLP_HEADERS` and
//! `OTEL_RESOURCE_ATTRIBUTES`: the W3C baggage format without its `;` properties, each part
//! trimmed, each value percent-decoded (UTF-8).
//!
//! A malformed header list stops start-up; a malformed attribute list is dropped whole with a
//! warning, as the specification advises for the resource (a typo there must not cost the
//! traces). Neither error repeats a value: a header's is a secret, and a list without its `=`
//! may be nothing but one.

use http::{HeaderName, HeaderValue};

use super::settings::{DEFAULT_SERVICE_NAME, SettingsError, invalid};

/// Header names an export request sets itself, or that would change its framing: naming one
/// in the header list stops start-up rather than send a request the collector misreads.
pub const REFUSED_HEADERS: &[&str] = &[
    "content-length",
    "content-type",
    "content-encoding",
    "host",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
];

/// Why an entry of a list is unusable; `index` counts from 1. Never holds the entry's text.
#[derive(Debug, PartialEq, Eq)]
struct BadEntry {
    index: usize,
    why: &'static str,
}

/// The list's `(position, key, decoded value)` entries, in order, each with its position in
/// the list as written (from 1), so that a later error names the entry the operator sees;
/// empty entries (a trailing comma) are skipped.
fn parse(list: &str) -> Result<Vec<(usize, String, String)>, BadEntry> {
    let mut pairs = Vec::new();
    for (index, entry) in list.split(',').enumerate() {
        let index = index + 1;
        if entry.trim().is_empty() {
            continue;
        }
        let Some((key, value)) = entry.split_once('=') else {
            return Err(BadEntry {
                index,
                why: "has no `=` between a name and a value",
            });
        };
        let key = key.trim();
        if key.is_empty() {
            return Err(BadEntry {
                index,
                why: "has an empty name",
            });
        }
        let value = percent_decode(value.trim()).ok_or(BadEntry {
            index,
            why: "has a value that is not valid percent-encoded UTF-8",
        })?;
        pairs.push((index, key.to_owned(), value));
    }
    Ok(pairs)
}

/// `%XX` to its byte; a `%` not followed by two hex digits, or bytes that are not UTF-8, are
/// an error (`+` stays a plus: this is not a form).
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] == b'%' {
            // Two hex digits exactly: `from_str_radix` alone would take `%+9` as 9.
            let (high, low) = (bytes.get(at + 1)?, bytes.get(at + 2)?);
            let digit = |byte: &u8| char::from(*byte).to_digit(16);
            decoded.push(u8::try_from(digit(high)? * 16 + digit(low)?).ok()?);
            at += 3;
        } else {
            decoded.push(bytes[at]);
            at += 1;
        }
    }
    String::from_utf8(decoded).ok()
}

/// The headers of `variable`'s list. The values are marked sensitive, so that no `Debug` of a
/// request shows them; the last of two entries with the same name wins.
pub fn headers_from(
    variable: &'static str,
    list: &str,
) -> Result<Vec<(HeaderName, HeaderValue)>, SettingsError> {
    let entry_error =
        |index: usize, why: &str| invalid(variable, format!("entry {index} of the list {why}"));
    let pairs = parse(list).map_err(|bad| entry_error(bad.index, bad.why))?;
    let mut headers: Vec<(HeaderName, HeaderValue)> = Vec::new();
    for (index, key, value) in pairs {
        let name = HeaderName::from_bytes(key.as_bytes())
            .map_err(|_| entry_error(index, "has a name that is not a valid header name"))?;
        if REFUSED_HEADERS.contains(&name.as_str()) {
            return Err(invalid(
                variable,
                format!("the header {name} is set by the exporter itself and cannot be given here"),
            ));
        }
        let mut value = HeaderValue::from_str(&value).map_err(|_| {
            entry_error(
                index,
                "has a value with characters a header cannot hold (a line break?)",
            )
        })?;
        value.set_sensitive(true);
        headers.retain(|(kept, _)| *kept != name);
        headers.push((name, value));
    }
    Ok(headers)
}

/// The service name and the resource's attributes: `service.name` (`OTEL_SERVICE_NAME`, else
/// the list's, else [`DEFAULT_SERVICE_NAME`]), `service.version` (always the shim's own: a
/// trace says which build made it), the list's other attributes in order, and the
/// `telemetry.sdk.*` ones. A malformed list is dropped whole, with a warning in `warnings`.
pub fn resource_from(
    list: Option<&str>,
    service_name: Option<String>,
    warnings: &mut Vec<String>,
) -> (String, Vec<(String, String)>) {
    let listed = match list.map(parse) {
        None => Vec::new(),
        Some(Ok(entries)) => entries
            .into_iter()
            .map(|(_, key, value)| (key, value))
            .collect(),
        Some(Err(bad)) => {
            warnings.push(format!(
                "OTEL_RESOURCE_ATTRIBUTES is ignored: entry {} of the list {}",
                bad.index, bad.why
            ));
            Vec::new()
        }
    };
    let listed_name = listed
        .iter()
        .rev()
        .find(|(key, _)| key == "service.name")
        .map(|(_, value)| value.clone());
    let service_name = service_name
        .map(|name| name.trim().to_owned())
        .or(listed_name)
        .unwrap_or_else(|| DEFAULT_SERVICE_NAME.to_owned());
    let mut attributes = vec![
        ("service.name".to_owned(), service_name.clone()),
        (
            "service.version".to_owned(),
            env!("CARGO_PKG_VERSION").to_owned(),
        ),
    ];
    for (key, value) in listed {
        if key == "service.version" && value != env!("CARGO_PKG_VERSION") {
            warnings.push(format!(
                "OTEL_RESOURCE_ATTRIBUTES sets service.version, which is always the shim's own \
                 ({}): the listed value {value:?} is not used",
                env!("CARGO_PKG_VERSION")
            ));
        }
        if key == "service.name" || key == "service.version" {
            continue;
        }
        attributes.retain(|(kept, _)| *kept != key);
        attributes.push((key, value));
    }
    // The SDK's own attributes are facts, not the operator's to change.
    for (key, value) in [
        ("telemetry.sdk.name", "opentelemetry"),
        ("telemetry.sdk.language", "rust"),
    ] {
        attributes.retain(|(kept, _)| kept != key);
        attributes.push((key.to_owned(), value.to_owned()));
    }
    (service_name, attributes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const VARIABLE: &str = "OTEL_EXPORTER_OTLP_HEADERS";

    #[test]
    fn headers_are_trimmed_and_percent_decoded_and_marked_sensitive() {
        let headers = headers_from(
            VARIABLE,
            " x-honeycomb-team = abc%20def%3D%2C ,Authorization=Basic%20dXNlcjpwYXNz,",
        )
        .unwrap();
        assert_eq!(headers.len(), 2);
        assert_eq!(headers[0].0, "x-honeycomb-team");
        assert_eq!(headers[0].1, "abc def=,");
        assert!(headers[0].1.is_sensitive());
        // A `Debug` of the settings (a panic message, a log of a struct) shows no value.
        assert!(!format!("{headers:?}").contains("abc"), "{headers:?}");
        assert_eq!(headers[1].0, "authorization");
        assert_eq!(headers[1].1, "Basic dXNlcjpwYXNz");
        // A plus is a plus, and the last of two entries wins.
        let headers = headers_from(VARIABLE, "k=a+b,k=c").unwrap();
        assert_eq!(headers.len(), 1);
        assert_eq!(headers[0].1, "c");
    }

    #[test]
    fn a_malformed_header_list_is_an_error_that_never_repeats_a_value() {
        let secret = "sk_live_9f8e7d";
        for (list, says) in [
            (secret.to_owned(), "entry 1 of the list has no `=`"),
            (
                format!("a=b,={secret}"),
                "entry 2 of the list has an empty name",
            ),
            (format!("bad name={secret}"), "not a valid header name"),
            (format!("k={secret}%zz"), "not valid percent-encoded UTF-8"),
            (format!("k={secret}%FF"), "not valid percent-encoded UTF-8"),
            (format!("k={secret}%0A"), "a header cannot hold"),
            (format!("k={secret}%"), "not valid percent-encoded UTF-8"),
        ] {
            let error = headers_from(VARIABLE, &list).unwrap_err();
            assert_eq!(error.variable, VARIABLE);
            let text = error.to_string();
            assert!(text.contains(says), "{list}: {text}");
            assert!(!text.contains(secret), "{text}");
        }
    }

    #[test]
    fn headers_that_frame_or_describe_the_body_are_refused() {
        for name in [
            "Content-Type",
            "content-length",
            "Host",
            "Transfer-Encoding",
        ] {
            let error = headers_from(VARIABLE, &format!("{name}=secret")).unwrap_err();
            assert!(
                error.message.contains(&name.to_ascii_lowercase()),
                "{error}"
            );
            assert!(!error.message.contains("secret"), "{error}");
        }
        assert!(headers_from(VARIABLE, "User-Agent=mine").is_ok());
    }

    fn value<'a>(attributes: &'a [(String, String)], key: &str) -> Option<&'a str> {
        attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn the_resource_has_the_service_the_version_and_the_listed_attributes() {
        let mut warnings = vec![];
        let (name, attributes) = resource_from(
            Some("deployment.environment.name=prod, team=a%2Cb,service.version=9,service.name=x"),
            None,
            &mut warnings,
        );
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("service.version"), "{warnings:?}");
        assert_eq!(name, "x");
        assert_eq!(value(&attributes, "service.name"), Some("x"));
        assert_eq!(
            value(&attributes, "service.version"),
            Some(env!("CARGO_PKG_VERSION"))
        );
        assert_eq!(
            value(&attributes, "deployment.environment.name"),
            Some("prod")
        );
        assert_eq!(value(&attributes, "team"), Some("a,b"));
        assert_eq!(value(&attributes, "telemetry.sdk.language"), Some("rust"));
        // OTEL_SERVICE_NAME wins over the list's.
        let (name, attributes) =
            resource_from(Some("service.name=x"), Some("eu".to_owned()), &mut warnings);
        assert_eq!(name, "eu");
        assert_eq!(value(&attributes, "service.name"), Some("eu"));
        let keys: Vec<&str> = attributes.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys.iter().filter(|k| **k == "service.name").count(), 1);
        // Neither: the default.
        let (name, _) = resource_from(None, None, &mut warnings);
        assert_eq!(name, DEFAULT_SERVICE_NAME);
    }

    #[test]
    fn an_escape_needs_two_hex_digits() {
        assert_eq!(percent_decode("x%09y%2c%2C").as_deref(), Some("x\ty,,"));
        for text in ["x%+9y", "x%-1", "x%9", "x% 9", "x%g0", "%", "x%٣٣"] {
            assert_eq!(percent_decode(text), None, "{text}");
        }
        let mut warnings = vec![];
        let (_, attributes) = resource_from(Some("a=x%+9y"), None, &mut warnings);
        assert_eq!(value(&attributes, "a"), None);
        assert!(warnings[0].contains("percent-encoded"), "{warnings:?}");
    }

    #[test]
    fn an_error_names_the_entry_as_written_empty_ones_counted() {
        let error = headers_from(VARIABLE, ",,k=v,bad name=secret").unwrap_err();
        assert!(error.message.contains("entry 4 of the list"), "{error}");
        let error = headers_from(VARIABLE, "k=v, ,v=%0A").unwrap_err();
        assert!(error.message.contains("entry 3 of the list"), "{error}");
        let error = headers_from(VARIABLE, ",,,=x").unwrap_err();
        assert!(error.message.contains("entry 4 of the list"), "{error}");
    }

    #[test]
    fn a_malformed_attribute_list_is_dropped_whole_with_a_warning() {
        let mut warnings = vec![];
        let (name, attributes) =
            resource_from(Some("team=a,service.name=x,broken"), None, &mut warnings);
        assert_eq!(name, DEFAULT_SERVICE_NAME);
        assert_eq!(value(&attributes, "team"), None);
        assert_eq!(warnings.len(), 1);
        assert!(
            warnings[0].contains("OTEL_RESOURCE_ATTRIBUTES") && warnings[0].contains("entry 3"),
            "{warnings:?}"
        );
    }
}
