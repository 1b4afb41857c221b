//! The OpenTelemetry SDK variables, read as the specification's "SDK environment variables"
//! and "OTLP Exporter Configuration" pages say ([`from_env`]). Each `OTEL_EXPORTER_OTLP_*`
//! variable has a `OTEL_EXPORTER_OTLP_TRACES_*` twin; when both are set the traces one is used
//! and the other ignored (headers included: the lists are not merged). An empty value counts
//! as unset. A choice the shim does not know (sampler, compression, exporter, timeout) is
//! warned about and ignored ([`super::choices`]); what stops start-up (exit 64), naming its
//! variable, is a protocol other than OTLP/HTTP, an endpoint that is not an http(s) URL or
//! holds credentials ([`super::endpoint`]), a malformed header list and an unusable CA file.
//! Header values are secrets and are never repeated, in an error or anywhere else.

use std::path::PathBuf;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

pub use super::choices::{
    Compression, DEFAULT_TIMEOUT, Exporter, MAX_TIMEOUT, Protocol, SamplerChoice,
};
use super::choices::{
    compression_from, exporter_from, protocol_from, sampler_from, sdk_disabled, timeout_from,
};
use super::endpoint::endpoint_from;
use super::key_values::{headers_from, resource_from};

/// The service name when neither `OTEL_SERVICE_NAME` nor `OTEL_RESOURCE_ATTRIBUTES` names one.
pub const DEFAULT_SERVICE_NAME: &str = "explo-shim";

/// Every `OTEL_*` variable the shim reads; any other `OTEL_*` variable is warned about by name.
pub const HONOURED_VARIABLES: &[&str] = &[
    "OTEL_SDK_DISABLED",
    "OTEL_TRACES_EXPORTER",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
    "OTEL_EXPORTER_OTLP_COMPRESSION",
    "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
    "OTEL_EXPORTER_OTLP_CERTIFICATE",
    "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
    "OTEL_EXPORTER_OTLP_TIMEOUT",
    "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
];

/// The CA an `https://` collector's certificate must chain to, instead of the usual roots.
#[derive(Clone, Debug, PartialEq)]
pub struct Certificate {
    pub path: PathBuf,
    pub certificates: Vec<CertificateDer<'static>>,
}

/// Headers sent with every export request, from `variable`. The values are secrets (API keys):
/// they are marked sensitive and shown nowhere.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct ExportHeaders {
    pub variable: &'static str,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

/// Tracing as the environment configures it.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// Where spans are POSTed: `http://` or `https://`, path and query included. Shown only
    /// through [`Settings::shown_endpoint`], which hides the query's values.
    pub endpoint: http::Uri,
    /// The variable the endpoint came from.
    pub endpoint_from: &'static str,
    pub protocol: Protocol,
    pub compression: Compression,
    /// The most one export request may take, connection included.
    pub timeout: Duration,
    /// With `None`, the upstream's roots (the web PKI and `upstream.ca_file`).
    pub certificate: Option<Certificate>,
    pub headers: ExportHeaders,
    pub service_name: String,
    /// The resource's attributes, `service.*` included, in the order they are shown; the
    /// instance id is added by the exporter (a new one per process).
    pub resource: Vec<(String, String)>,
    pub sampler: SamplerChoice,
}

impl Settings {
    /// The endpoint for a log line or `--check-config`: the query's values redacted.
    pub fn shown_endpoint(&self) -> String {
        super::endpoint::shown(&self.endpoint)
    }
}

/// What the environment asks for: an export, or none and why; and what is worth a warning.
#[derive(Debug, PartialEq)]
pub struct Resolved {
    /// `None`: no tracer at all, every request costs one `Option` test.
    pub settings: Option<Settings>,
    /// Why there is no export, when there is none.
    pub off_because: Option<&'static str>,
    /// Said at start-up, in the log and by `--check-config`; never a header value.
    pub warnings: Vec<String>,
}

/// A variable with a value the shim cannot use; start-up stops (exit 64) naming it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SettingsError {
    pub variable: &'static str,
    pub message: String,
}

impl std::fmt::Display for SettingsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid `{}`: {}", self.variable, self.message)
    }
}

impl std::error::Error for SettingsError {}

pub(super) fn invalid(variable: &'static str, message: impl Into<String>) -> SettingsError {
    SettingsError {
        variable,
        message: message.into(),
    }
}

/// Reads the tracing variables through `var` (the environment, in `main`). With
/// `OTEL_SDK_DISABLED=true` nothing else is read: a bad variable must not stop a shim whose
/// tracing is off. Otherwise every variable set is checked even when there is no endpoint, so
/// a typo is found before the endpoint is added; the certificate file is read only when spans
/// are to be sent.
pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Resolved, SettingsError> {
    let var = |name: &str| var(name).filter(|value| !value.trim().is_empty());
    // The traces variable if set, else the general one, with the name of the one used.
    let either = |general: &'static str, traces: &'static str| match var(traces) {
        Some(value) => Some((traces, value)),
        None => var(general).map(|value| (general, value)),
    };
    let mut warnings = Vec::new();
    let off = |why: &'static str, warnings: Vec<String>| Resolved {
        settings: None,
        off_because: Some(why),
        warnings,
    };
    if sdk_disabled(var("OTEL_SDK_DISABLED").as_deref(), &mut warnings) {
        return Ok(off("OTEL_SDK_DISABLED=true", warnings));
    }
    let exporter = exporter_from(var("OTEL_TRACES_EXPORTER").as_deref(), &mut warnings);
    let sampler = sampler_from(
        var("OTEL_TRACES_SAMPLER").as_deref(),
        var("OTEL_TRACES_SAMPLER_ARG").as_deref(),
        &mut warnings,
    );
    let protocol = match either(
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    ) {
        Some((variable, value)) => protocol_from(variable, &value)?,
        None => Protocol::HttpProtobuf,
    };
    let compression = match either(
        "OTEL_EXPORTER_OTLP_COMPRESSION",
        "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
    ) {
        Some((variable, value)) => compression_from(variable, &value, &mut warnings),
        None => Compression::None,
    };
    let timeout = match either(
        "OTEL_EXPORTER_OTLP_TIMEOUT",
        "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
    ) {
        Some((variable, value)) => timeout_from(variable, &value, &mut warnings),
        None => DEFAULT_TIMEOUT,
    };
    let headers = match either(
        "OTEL_EXPORTER_OTLP_HEADERS",
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
    ) {
        Some((variable, value)) => ExportHeaders {
            variable,
            headers: headers_from(variable, &value)?,
        },
        None => ExportHeaders::default(),
    };
    let certificate_path = either(
        "OTEL_EXPORTER_OTLP_CERTIFICATE",
        "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
    );
    let (service_name, resource) = resource_from(
        var("OTEL_RESOURCE_ATTRIBUTES").as_deref(),
        var("OTEL_SERVICE_NAME"),
        &mut warnings,
    );
    let endpoint = match either(
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ) {
        Some((variable, value)) => Some((
            variable,
            endpoint_from(variable, &value, variable == "OTEL_EXPORTER_OTLP_ENDPOINT")?,
        )),
        None => None,
    };
    if let Exporter::Off(why) = exporter {
        return Ok(off(why, warnings));
    }
    let Some((endpoint_from, endpoint)) = endpoint else {
        // The specification's default endpoint is http://localhost:4318; the shim stays off
        // instead, so that a fleet without a collector does not spend a request per batch on
        // a port nobody listens on. An operator who asked for otlp is told.
        if exporter == Exporter::Otlp {
            warnings.push(format!(
                "OTEL_TRACES_EXPORTER asks for otlp but no traces are exported: {NO_ENDPOINT}"
            ));
        }
        return Ok(off(NO_ENDPOINT, warnings));
    };
    let certificate = match certificate_path {
        Some((variable, path)) => Some(certificate_from(variable, path.trim())?),
        None => None,
    };
    Ok(Resolved {
        settings: Some(Settings {
            endpoint,
            endpoint_from,
            protocol,
            compression,
            timeout,
            certificate,
            headers,
            service_name,
            resource,
            sampler,
        }),
        off_because: None,
        warnings,
    })
}

/// Why there is no export when no endpoint is set.
const NO_ENDPOINT: &str =
    "neither OTEL_EXPORTER_OTLP_ENDPOINT nor OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set";

/// The PEM CA file, read within the clock and cap every configured file has.
fn certificate_from(variable: &'static str, path: &str) -> Result<Certificate, SettingsError> {
    let path = PathBuf::from(path);
    let bad = |reason: String| invalid(variable, format!("{}: {reason}", path.display()));
    let pem = crate::config::read::read_bounded(&path).map_err(|error| bad(error.to_string()))?;
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| bad(error.to_string()))?;
    if certificates.is_empty() {
        return Err(bad("no PEM certificates found".to_owned()));
    }
    let mut roots = rustls::RootCertStore::empty();
    for certificate in &certificates {
        roots
            .add(certificate.clone())
            .map_err(|error| bad(error.to_string()))?;
    }
    Ok(Certificate { path, certificates })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings_from_env(
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Settings>, SettingsError> {
        from_env(var).map(|resolved| resolved.settings)
    }

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn no_endpoint_means_tracing_is_off() {
        assert_eq!(settings_from_env(env(&[])), Ok(None));
        assert_eq!(
            settings_from_env(env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "")])),
            Ok(None)
        );
    }

    #[test]
    fn the_base_endpoint_gets_the_traces_path_and_the_traces_endpoint_is_used_as_is() {
        let settings = settings_from_env(env(&[(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "http://collector:4318/",
        )]))
        .unwrap()
        .unwrap();
        assert_eq!(settings.endpoint, "http://collector:4318/v1/traces");
        assert_eq!(settings.service_name, DEFAULT_SERVICE_NAME);
        assert_eq!(settings.sampler, SamplerChoice::ParentBasedAlwaysOn);
        let settings = settings_from_env(env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://ignored:4318"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "https://collector.example/custom/traces",
            ),
            ("OTEL_SERVICE_NAME", "shim-eu"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(settings.endpoint, "https://collector.example/custom/traces");
        assert_eq!(settings.service_name, "shim-eu");
    }

    #[test]
    fn bad_urls_name_their_variable_even_without_an_exporter() {
        for (pairs, variable) in [
            (
                vec![("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318")],
                "OTEL_EXPORTER_OTLP_ENDPOINT",
            ),
            (
                vec![("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "ftp://collector/")],
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            ),
            (
                vec![
                    ("OTEL_TRACES_EXPORTER", "none"),
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://u:QSECRET@c:4318"),
                ],
                "OTEL_EXPORTER_OTLP_ENDPOINT",
            ),
        ] {
            let error = settings_from_env(env(&pairs)).unwrap_err();
            assert_eq!(error.variable, variable, "{pairs:?}");
            assert!(error.to_string().contains(variable), "{error}");
            assert!(!error.to_string().contains("QSECRET"), "{error}");
        }
    }

    #[test]
    fn unknown_choices_warn_and_keep_their_defaults() {
        let resolved = from_env(env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            ("OTEL_TRACES_SAMPLER", "sometimes"),
            ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "deflate"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "10s"),
            ("OTEL_TRACES_EXPORTER", "OTLP,console"),
        ]))
        .unwrap();
        let settings = resolved.settings.unwrap();
        assert_eq!(settings.sampler, SamplerChoice::ParentBasedAlwaysOn);
        assert_eq!(settings.compression, Compression::None);
        assert_eq!(settings.timeout, DEFAULT_TIMEOUT);
        assert_eq!(resolved.warnings.len(), 4, "{:?}", resolved.warnings);
        for variable in [
            "OTEL_TRACES_SAMPLER",
            "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
            "OTEL_EXPORTER_OTLP_TIMEOUT",
            "OTEL_TRACES_EXPORTER",
        ] {
            assert!(
                resolved.warnings.iter().any(|w| w.starts_with(variable)),
                "{variable}: {:?}",
                resolved.warnings
            );
        }
    }

    #[test]
    fn a_disabled_sdk_reads_nothing_else() {
        let resolved = from_env(env(&[
            ("OTEL_SDK_DISABLED", "True"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://u:p@c"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "broken"),
        ]))
        .unwrap();
        assert_eq!(resolved.settings, None);
        assert_eq!(resolved.off_because, Some("OTEL_SDK_DISABLED=true"));
    }

    #[test]
    fn otlp_asked_for_without_an_endpoint_is_a_warning() {
        let resolved = from_env(env(&[("OTEL_TRACES_EXPORTER", "otlp")])).unwrap();
        assert_eq!(resolved.settings, None);
        assert!(resolved.warnings[0].contains("no traces are exported"));
        // Unset, the default is quietly off.
        assert!(from_env(env(&[])).unwrap().warnings.is_empty());
    }

    fn on(pairs: &[(&str, &str)]) -> Settings {
        let mut pairs = pairs.to_vec();
        pairs.push(("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"));
        settings_from_env(env(&pairs)).unwrap().unwrap()
    }

    #[test]
    fn the_defaults_follow_the_specification() {
        let settings = on(&[]);
        assert_eq!(settings.protocol, Protocol::HttpProtobuf);
        assert_eq!(settings.compression, Compression::None);
        assert_eq!(settings.timeout, Duration::from_secs(10));
        assert_eq!(settings.certificate, None);
        assert!(settings.headers.headers.is_empty());
        assert_eq!(settings.endpoint_from, "OTEL_EXPORTER_OTLP_ENDPOINT");
    }

    #[test]
    fn the_traces_variable_wins_over_the_general_one() {
        let settings = on(&[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "none"),
            ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "gzip"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "30000"),
            ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "250"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "a=1,b=2"),
            ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "c=3"),
        ]);
        assert_eq!(settings.protocol, Protocol::HttpJson);
        assert_eq!(settings.compression, Compression::Gzip);
        assert_eq!(settings.timeout, Duration::from_millis(250));
        // Replaced, not merged: the traces list is the whole list.
        assert_eq!(
            settings.headers.variable,
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS"
        );
        let names: Vec<&str> = settings
            .headers
            .headers
            .iter()
            .map(|(n, _)| n.as_str())
            .collect();
        assert_eq!(names, ["c"]);
    }

    #[test]
    fn grpc_and_unknown_protocols_are_refused_naming_the_variable() {
        for variable in [
            "OTEL_EXPORTER_OTLP_PROTOCOL",
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        ] {
            for value in ["grpc", "GRPC", "thrift"] {
                let error = settings_from_env(env(&[(variable, value)])).unwrap_err();
                assert_eq!(error.variable, variable);
                assert!(error.message.contains("http/protobuf"), "{error}");
            }
        }
    }

    #[test]
    fn disabled_sdk_or_exporter_none_means_no_tracer_and_says_why() {
        for (pairs, why) in [
            (
                vec![("OTEL_SDK_DISABLED", "TRUE")],
                "OTEL_SDK_DISABLED=true",
            ),
            (
                vec![("OTEL_TRACES_EXPORTER", "NONE")],
                "OTEL_TRACES_EXPORTER=none",
            ),
        ] {
            let mut pairs = pairs;
            pairs.push(("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"));
            let resolved = from_env(env(&pairs)).unwrap();
            assert_eq!(resolved.settings, None);
            assert_eq!(resolved.off_because, Some(why));
        }
        // Anything but true is false; a value that is not a boolean is warned about.
        let resolved = from_env(env(&[
            ("OTEL_SDK_DISABLED", "yes"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
        ]))
        .unwrap();
        assert!(resolved.settings.is_some());
        assert_eq!(resolved.warnings.len(), 1, "{:?}", resolved.warnings);
        assert!(resolved.warnings[0].contains("OTEL_SDK_DISABLED"));
        let resolved = from_env(env(&[
            ("OTEL_SDK_DISABLED", "false"),
            ("OTEL_TRACES_EXPORTER", "otlp"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
        ]))
        .unwrap();
        assert!(resolved.settings.is_some() && resolved.warnings.is_empty());
    }

    #[test]
    fn the_certificate_is_read_and_a_bad_one_is_an_error_naming_the_variable() {
        let dir = std::env::temp_dir().join(format!("otel-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let junk = dir.join("junk.pem");
        std::fs::write(&junk, "not a certificate\n").unwrap();
        let missing = dir.join("missing.pem");
        for path in [&junk, &missing] {
            let error = settings_from_env(env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://collector:4318"),
                (
                    "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
                    path.to_str().unwrap(),
                ),
            ]))
            .unwrap_err();
            assert_eq!(error.variable, "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE");
            assert!(error.message.contains(path.to_str().unwrap()), "{error}");
        }
        // Off, the file is not read at all.
        let resolved = from_env(env(&[(
            "OTEL_EXPORTER_OTLP_CERTIFICATE",
            missing.to_str().unwrap(),
        )]))
        .unwrap();
        assert_eq!(resolved.settings, None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
