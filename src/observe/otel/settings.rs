//! The OpenTelemetry SDK variables, read as the specification's "SDK environment variables"
//! and "OTLP Exporter Configuration" pages say ([`from_env`]). Each `OTEL_EXPORTER_OTLP_*`
//! variable has a `OTEL_EXPORTER_OTLP_TRACES_*` twin; when both are set the traces one is used
//! and the other ignored (headers included: the lists are not merged). An empty value counts
//! as unset. A value the shim cannot use stops start-up (exit 64) naming its variable; header
//! values are secrets and are never repeated, in an error or anywhere else.

use std::path::PathBuf;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use opentelemetry_sdk::trace::Sampler;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use super::key_values::{headers_from, resource_from};

/// The service name when neither `OTEL_SERVICE_NAME` nor `OTEL_RESOURCE_ATTRIBUTES` names one.
pub const DEFAULT_SERVICE_NAME: &str = "explo-shim";

/// The OTLP/HTTP path appended to `OTEL_EXPORTER_OTLP_ENDPOINT`.
const TRACES_PATH: &str = "/v1/traces";

/// How long one export request may take when `OTEL_EXPORTER_OTLP_TIMEOUT` is unset: the
/// specification's default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(10_000);

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

/// `OTEL_TRACES_SAMPLER` (and its `OTEL_TRACES_SAMPLER_ARG` ratio).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SamplerChoice {
    AlwaysOn,
    AlwaysOff,
    TraceIdRatio(f64),
    ParentBasedAlwaysOn,
    ParentBasedAlwaysOff,
    ParentBasedTraceIdRatio(f64),
}

impl SamplerChoice {
    /// The SDK's sampler for this choice.
    pub fn sampler(self) -> Sampler {
        match self {
            Self::AlwaysOn => Sampler::AlwaysOn,
            Self::AlwaysOff => Sampler::AlwaysOff,
            Self::TraceIdRatio(ratio) => Sampler::TraceIdRatioBased(ratio),
            Self::ParentBasedAlwaysOn => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
            Self::ParentBasedAlwaysOff => Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
            Self::ParentBasedTraceIdRatio(ratio) => {
                Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(ratio)))
            }
        }
    }
}

impl std::fmt::Display for SamplerChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::AlwaysOn => f.write_str("always_on"),
            Self::AlwaysOff => f.write_str("always_off"),
            Self::TraceIdRatio(ratio) => write!(f, "traceidratio {ratio}"),
            Self::ParentBasedAlwaysOn => f.write_str("parentbased_always_on"),
            Self::ParentBasedAlwaysOff => f.write_str("parentbased_always_off"),
            Self::ParentBasedTraceIdRatio(ratio) => write!(f, "parentbased_traceidratio {ratio}"),
        }
    }
}

/// How spans are written: `OTEL_EXPORTER_OTLP_PROTOCOL`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// `http/protobuf`, the specification's default: `application/x-protobuf`.
    HttpProtobuf,
    /// `http/json`: `application/json`, in the OTLP/JSON mapping.
    HttpJson,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Self::HttpProtobuf => "http/protobuf",
            Self::HttpJson => "http/json",
        }
    }
}

/// `OTEL_EXPORTER_OTLP_COMPRESSION`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
}

impl Compression {
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Gzip => "gzip",
        }
    }
}

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
    /// Where spans are POSTed: `http://` or `https://`, path included.
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

/// Reads the tracing variables through `var` (the environment, in `main`). Every variable set
/// is checked even when tracing is off, so a typo is found before the endpoint is added; the
/// certificate file is read only when spans are to be sent.
pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Resolved, SettingsError> {
    let var = |name: &str| var(name).filter(|value| !value.trim().is_empty());
    // The traces variable if set, else the general one, with the name of the one used.
    let either = |general: &'static str, traces: &'static str| match var(traces) {
        Some(value) => Some((traces, value)),
        None => var(general).map(|value| (general, value)),
    };
    let mut warnings = Vec::new();
    let disabled = sdk_disabled(var("OTEL_SDK_DISABLED").as_deref(), &mut warnings);
    let exporter_none = exporter_is_none(var("OTEL_TRACES_EXPORTER").as_deref())?;
    let sampler = sampler_from(
        var("OTEL_TRACES_SAMPLER").as_deref(),
        var("OTEL_TRACES_SAMPLER_ARG").as_deref(),
    )?;
    let protocol = match either(
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    ) {
        Some((variable, value)) => protocol_from(variable, value.trim())?,
        None => Protocol::HttpProtobuf,
    };
    let compression = match either(
        "OTEL_EXPORTER_OTLP_COMPRESSION",
        "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
    ) {
        Some((variable, value)) => compression_from(variable, value.trim())?,
        None => Compression::None,
    };
    let timeout = match either(
        "OTEL_EXPORTER_OTLP_TIMEOUT",
        "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
    ) {
        Some((variable, value)) => timeout_from(variable, value.trim())?,
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
        Some((variable @ "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", traces)) => {
            Some((variable, endpoint_from(variable, traces.trim())?))
        }
        Some((variable, base)) => {
            let base = base.trim().trim_end_matches('/');
            let uri = endpoint_from(variable, &format!("{base}{TRACES_PATH}"))?;
            Some((variable, uri))
        }
        None => None,
    };
    let off = |why: &'static str, warnings: Vec<String>| Resolved {
        settings: None,
        off_because: Some(why),
        warnings,
    };
    if disabled {
        return Ok(off("OTEL_SDK_DISABLED=true", warnings));
    }
    if exporter_none {
        return Ok(off("OTEL_TRACES_EXPORTER=none", warnings));
    }
    let Some((endpoint_from, endpoint)) = endpoint else {
        return Ok(off(
            "neither OTEL_EXPORTER_OTLP_ENDPOINT nor OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set",
            warnings,
        ));
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

/// `OTEL_SDK_DISABLED`: a boolean as the specification reads one, `true` in any case is true;
/// anything but `true` or `false` is false, with a warning.
fn sdk_disabled(value: Option<&str>, warnings: &mut Vec<String>) -> bool {
    let Some(value) = value.map(str::trim) else {
        return false;
    };
    if value.eq_ignore_ascii_case("true") {
        return true;
    }
    if !value.eq_ignore_ascii_case("false") {
        warnings.push(format!(
            "OTEL_SDK_DISABLED is {value:?}, neither true nor false: read as false"
        ));
    }
    false
}

/// `OTEL_TRACES_EXPORTER`: `otlp` (the default) or `none`. Another exporter (zipkin, console,
/// jaeger…) is refused rather than silently replaced by OTLP or by nothing.
fn exporter_is_none(value: Option<&str>) -> Result<bool, SettingsError> {
    let Some(value) = value else {
        return Ok(false);
    };
    let names: Vec<&str> = value.split(',').map(str::trim).collect();
    if names.iter().all(|name| *name == "none") {
        return Ok(true);
    }
    if names.iter().all(|name| *name == "otlp") {
        return Ok(false);
    }
    Err(invalid(
        "OTEL_TRACES_EXPORTER",
        format!(
            "{value:?}: explo-shim exports traces over OTLP only; use otlp (the default) or \
             none"
        ),
    ))
}

fn protocol_from(variable: &'static str, value: &str) -> Result<Protocol, SettingsError> {
    match value {
        "http/protobuf" => Ok(Protocol::HttpProtobuf),
        "http/json" => Ok(Protocol::HttpJson),
        "grpc" => Err(invalid(
            variable,
            "grpc is not supported: explo-shim exports over OTLP/HTTP only; use http/protobuf \
             (the default) and the collector's OTLP/HTTP port (4318), not its gRPC port (4317)",
        )),
        other => Err(invalid(
            variable,
            format!("{other:?} is not one of http/protobuf, http/json"),
        )),
    }
}

fn compression_from(variable: &'static str, value: &str) -> Result<Compression, SettingsError> {
    match value {
        "gzip" => Ok(Compression::Gzip),
        "none" => Ok(Compression::None),
        other => Err(invalid(
            variable,
            format!("{other:?} is not one of gzip, none"),
        )),
    }
}

fn timeout_from(variable: &'static str, value: &str) -> Result<Duration, SettingsError> {
    match value.parse::<u64>() {
        Ok(millis) if millis > 0 => Ok(Duration::from_millis(millis)),
        _ => Err(invalid(
            variable,
            format!("{value:?} is not a positive whole number of milliseconds"),
        )),
    }
}

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

fn endpoint_from(variable: &'static str, value: &str) -> Result<http::Uri, SettingsError> {
    let uri: http::Uri = value
        .parse()
        .map_err(|error| invalid(variable, format!("{value:?} is not a URL: {error}")))?;
    match uri.scheme_str() {
        Some("http" | "https") if uri.authority().is_some() => Ok(uri),
        _ => Err(invalid(
            variable,
            format!("{value:?} is not an http:// or https:// URL with a host"),
        )),
    }
}

fn sampler_from(name: Option<&str>, arg: Option<&str>) -> Result<SamplerChoice, SettingsError> {
    let ratio = || -> Result<f64, SettingsError> {
        let Some(arg) = arg else {
            return Ok(1.0);
        };
        match arg.trim().parse::<f64>() {
            Ok(ratio) if (0.0..=1.0).contains(&ratio) => Ok(ratio),
            _ => Err(invalid(
                "OTEL_TRACES_SAMPLER_ARG",
                format!("{arg:?} is not a ratio between 0 and 1"),
            )),
        }
    };
    Ok(match name.map(str::trim) {
        None | Some("parentbased_always_on") => SamplerChoice::ParentBasedAlwaysOn,
        Some("always_on") => SamplerChoice::AlwaysOn,
        Some("always_off") => SamplerChoice::AlwaysOff,
        Some("traceidratio") => SamplerChoice::TraceIdRatio(ratio()?),
        Some("parentbased_always_off") => SamplerChoice::ParentBasedAlwaysOff,
        Some("parentbased_traceidratio") => SamplerChoice::ParentBasedTraceIdRatio(ratio()?),
        Some(other) => {
            return Err(invalid(
                "OTEL_TRACES_SAMPLER",
                format!(
                    "{other:?} is not one of always_on, always_off, traceidratio, \
                     parentbased_always_on, parentbased_always_off, parentbased_traceidratio"
                ),
            ));
        }
    })
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
    fn every_sampler_name_is_read_with_its_ratio() {
        for (name, arg, expected) in [
            ("always_on", None, SamplerChoice::AlwaysOn),
            ("always_off", None, SamplerChoice::AlwaysOff),
            (
                "traceidratio",
                Some("0.25"),
                SamplerChoice::TraceIdRatio(0.25),
            ),
            ("traceidratio", None, SamplerChoice::TraceIdRatio(1.0)),
            (
                "parentbased_always_on",
                None,
                SamplerChoice::ParentBasedAlwaysOn,
            ),
            (
                "parentbased_always_off",
                None,
                SamplerChoice::ParentBasedAlwaysOff,
            ),
            (
                "parentbased_traceidratio",
                Some("0"),
                SamplerChoice::ParentBasedTraceIdRatio(0.0),
            ),
            // The argument of a sampler without one is ignored, as the specification says.
            ("always_on", Some("junk"), SamplerChoice::AlwaysOn),
        ] {
            let mut pairs = vec![
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
                ("OTEL_TRACES_SAMPLER", name),
            ];
            if let Some(arg) = arg {
                pairs.push(("OTEL_TRACES_SAMPLER_ARG", arg));
            }
            let settings = settings_from_env(env(&pairs)).unwrap().unwrap();
            assert_eq!(settings.sampler, expected, "{name} {arg:?}");
        }
    }

    #[test]
    fn bad_values_name_their_variable_even_without_an_endpoint() {
        for (pairs, variable) in [
            (
                vec![("OTEL_TRACES_SAMPLER", "sometimes")],
                "OTEL_TRACES_SAMPLER",
            ),
            (
                vec![
                    ("OTEL_TRACES_SAMPLER", "traceidratio"),
                    ("OTEL_TRACES_SAMPLER_ARG", "1.5"),
                ],
                "OTEL_TRACES_SAMPLER_ARG",
            ),
            (
                vec![
                    ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
                    ("OTEL_TRACES_SAMPLER_ARG", "half"),
                ],
                "OTEL_TRACES_SAMPLER_ARG",
            ),
            (
                vec![("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318")],
                "OTEL_EXPORTER_OTLP_ENDPOINT",
            ),
            (
                vec![("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "ftp://collector/")],
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            ),
        ] {
            let error = settings_from_env(env(&pairs)).unwrap_err();
            assert_eq!(error.variable, variable, "{pairs:?}");
            assert!(error.to_string().contains(variable), "{error}");
        }
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
            let error = settings_from_env(env(&[(variable, "grpc")])).unwrap_err();
            assert_eq!(error.variable, variable);
            assert!(error.message.contains("http/protobuf"), "{error}");
            let error = settings_from_env(env(&[(variable, "thrift")])).unwrap_err();
            assert_eq!(error.variable, variable);
            assert!(
                error.message.contains("http/protobuf, http/json"),
                "{error}"
            );
        }
    }

    #[test]
    fn bad_compression_timeout_and_exporter_values_are_refused() {
        for (variable, value) in [
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "zstd"),
            ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "deflate"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "10s"),
            ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "0"),
            ("OTEL_TRACES_EXPORTER", "zipkin"),
            ("OTEL_TRACES_EXPORTER", "otlp,console"),
        ] {
            let error = settings_from_env(env(&[(variable, value)])).unwrap_err();
            assert_eq!(error.variable, variable, "{value}");
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
                vec![("OTEL_TRACES_EXPORTER", "none")],
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
