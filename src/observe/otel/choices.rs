//! The variables that pick one value out of a set, and the timeout, read as the
//! specification's "Type-specific guidance" says: names in any case, and a value the shim does
//! not know warned about and ignored (its default used) rather than stopping start-up. Only
//! the protocol is stricter: `grpc` or an unknown protocol would send the collector requests
//! it cannot read, so those stop start-up (exit 64). None of these values is a secret: the
//! warnings repeat them.

use std::time::Duration;

use opentelemetry_sdk::trace::Sampler;

use super::settings::{SettingsError, invalid};

/// How long one export request may take when `OTEL_EXPORTER_OTLP_TIMEOUT` is unset: the
/// specification's default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(10_000);

/// The longest one export request may take. A collector that stalls holds the export thread
/// for this long, with the queue filling behind it; a minute is far past any healthy reply and
/// still short enough that spans resume soon after the collector does. A larger value (or `0`,
/// which some SDKs read as "no limit") is clamped to it with a warning.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(60);

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

/// What `OTEL_TRACES_EXPORTER` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exporter {
    /// Unset: OTLP, the specification's default.
    Default,
    /// `otlp` named in the list: an operator who asked for it is told when nothing is sent.
    Otlp,
    /// `none`, or a list without `otlp`: no export, for this reason.
    Off(&'static str),
}

/// `OTEL_SDK_DISABLED`: a boolean as the specification reads one, `true` in any case is true;
/// anything but `true` or `false` is false, with a warning.
pub fn sdk_disabled(value: Option<&str>, warnings: &mut Vec<String>) -> bool {
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

/// `OTEL_TRACES_EXPORTER`, a comma-separated list: `otlp` in it exports (the shim speaks
/// nothing else, and the other names are warned about); `none` alone exports nothing; a list
/// without `otlp` exports nothing, with a warning. Never an error: a sidecar's
/// `otlp,console` must not stop the proxy.
pub fn exporter_from(value: Option<&str>, warnings: &mut Vec<String>) -> Exporter {
    let Some(value) = value else {
        return Exporter::Default;
    };
    let names: Vec<String> = value
        .split(',')
        .map(|name| name.trim().to_ascii_lowercase())
        .filter(|name| !name.is_empty())
        .collect();
    let others: Vec<&str> = names
        .iter()
        .map(String::as_str)
        .filter(|name| !matches!(*name, "otlp" | "none"))
        .collect();
    let has_otlp = names.iter().any(|name| name == "otlp");
    if !others.is_empty() {
        let what = if has_otlp {
            "only otlp is used"
        } else {
            "no traces are exported"
        };
        warnings.push(format!(
            "OTEL_TRACES_EXPORTER names {} which explo-shim does not have (it exports over \
             OTLP only): {what}",
            others.join(", ")
        ));
    }
    if has_otlp {
        Exporter::Otlp
    } else if others.is_empty() {
        Exporter::Off("OTEL_TRACES_EXPORTER=none")
    } else {
        Exporter::Off("OTEL_TRACES_EXPORTER names no exporter explo-shim has (otlp)")
    }
}

/// The protocol: `grpc` and unknown names stop start-up, in any case.
pub fn protocol_from(variable: &'static str, value: &str) -> Result<Protocol, SettingsError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "http/protobuf" => Ok(Protocol::HttpProtobuf),
        "http/json" => Ok(Protocol::HttpJson),
        "grpc" => Err(invalid(
            variable,
            "grpc is not supported: explo-shim exports over OTLP/HTTP only; use http/protobuf \
             (the default) and the collector's OTLP/HTTP port (4318), not its gRPC port (4317)",
        )),
        _ => Err(invalid(
            variable,
            format!("{:?} is not one of http/protobuf, http/json", value.trim()),
        )),
    }
}

pub fn compression_from(
    variable: &'static str,
    value: &str,
    warnings: &mut Vec<String>,
) -> Compression {
    match value.trim().to_ascii_lowercase().as_str() {
        "gzip" => Compression::Gzip,
        "none" => Compression::None,
        _ => {
            warnings.push(format!(
                "{variable} is {:?}, not one of gzip, none: requests are not compressed",
                value.trim()
            ));
            Compression::None
        }
    }
}

/// Milliseconds, at most [`MAX_TIMEOUT`]; `0` and larger values are clamped to it, and what
/// is not a whole number is ignored (the default used), each with a warning.
pub fn timeout_from(variable: &'static str, value: &str, warnings: &mut Vec<String>) -> Duration {
    let max = MAX_TIMEOUT.as_millis();
    let value = value.trim();
    // A run of digits too long for any integer is still a number, and over the limit.
    let number = match value.parse::<u128>() {
        Err(_) if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => Ok(u128::MAX),
        number => number,
    };
    match number {
        Ok(millis) if millis > 0 && millis <= max => {
            Duration::from_millis(u64::try_from(millis).unwrap_or(u64::MAX))
        }
        Ok(millis) => {
            let why = if millis == 0 {
                "0, which would let a stalled collector hold the exporter forever"
            } else {
                "over the limit"
            };
            warnings.push(format!(
                "{variable} is {why}: clamped to {max} ms per export request"
            ));
            MAX_TIMEOUT
        }
        Err(_) => {
            warnings.push(format!(
                "{variable} is {value:?}, not a whole number of milliseconds: the default {} ms \
                 is used",
                DEFAULT_TIMEOUT.as_millis()
            ));
            DEFAULT_TIMEOUT
        }
    }
}

/// The sampler, in any case; an unknown name is the default (`parentbased_always_on`) and an
/// unusable ratio 1.0 (as if `OTEL_TRACES_SAMPLER_ARG` were unset), each with a warning.
pub fn sampler_from(
    name: Option<&str>,
    arg: Option<&str>,
    warnings: &mut Vec<String>,
) -> SamplerChoice {
    let mut ratio = || -> f64 {
        let Some(arg) = arg else {
            return 1.0;
        };
        match arg.trim().parse::<f64>() {
            Ok(ratio) if (0.0..=1.0).contains(&ratio) => ratio,
            _ => {
                warnings.push(format!(
                    "OTEL_TRACES_SAMPLER_ARG is {:?}, not a ratio between 0 and 1: 1.0 is used",
                    arg.trim()
                ));
                1.0
            }
        }
    };
    let written = name.map(str::trim);
    match written.map(str::to_ascii_lowercase).as_deref() {
        None | Some("parentbased_always_on") => SamplerChoice::ParentBasedAlwaysOn,
        Some("always_on") => SamplerChoice::AlwaysOn,
        Some("always_off") => SamplerChoice::AlwaysOff,
        Some("traceidratio") => SamplerChoice::TraceIdRatio(ratio()),
        Some("parentbased_always_off") => SamplerChoice::ParentBasedAlwaysOff,
        Some("parentbased_traceidratio") => SamplerChoice::ParentBasedTraceIdRatio(ratio()),
        Some(_) => {
            warnings.push(format!(
                "OTEL_TRACES_SAMPLER is {:?}, not one of always_on, always_off, \
                 traceidratio, parentbased_always_on, parentbased_always_off, \
                 parentbased_traceidratio: parentbased_always_on is used",
                written.unwrap_or_default()
            ));
            SamplerChoice::ParentBasedAlwaysOn
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_read_in_any_case() {
        let mut warnings = vec![];
        assert_eq!(
            protocol_from("P", "HTTP/PROTOBUF"),
            Ok(Protocol::HttpProtobuf)
        );
        assert_eq!(protocol_from("P", " Http/Json "), Ok(Protocol::HttpJson));
        assert_eq!(
            compression_from("C", "GZIP", &mut warnings),
            Compression::Gzip
        );
        assert_eq!(
            sampler_from(Some("Always_On"), None, &mut warnings),
            SamplerChoice::AlwaysOn
        );
        assert_eq!(
            sampler_from(Some("TraceIdRatio"), Some("0.5"), &mut warnings),
            SamplerChoice::TraceIdRatio(0.5)
        );
        assert_eq!(
            exporter_from(Some("NONE"), &mut warnings),
            Exporter::Off("OTEL_TRACES_EXPORTER=none")
        );
        assert_eq!(exporter_from(Some("OTLP"), &mut warnings), Exporter::Otlp);
        assert!(warnings.is_empty(), "{warnings:?}");
    }

    #[test]
    fn grpc_and_unknown_protocols_are_errors_in_any_case() {
        for value in ["grpc", "GRPC", "thrift"] {
            let error = protocol_from("OTEL_EXPORTER_OTLP_PROTOCOL", value).unwrap_err();
            assert_eq!(error.variable, "OTEL_EXPORTER_OTLP_PROTOCOL");
            assert!(error.message.contains("http/protobuf"), "{error}");
        }
    }

    #[test]
    fn unknown_values_are_warned_about_and_the_default_used() {
        let mut warnings = vec![];
        assert_eq!(
            compression_from("C", "zstd", &mut warnings),
            Compression::None
        );
        assert_eq!(
            sampler_from(Some("sometimes"), None, &mut warnings),
            SamplerChoice::ParentBasedAlwaysOn
        );
        assert_eq!(
            sampler_from(Some("traceidratio"), Some("1.5"), &mut warnings),
            SamplerChoice::TraceIdRatio(1.0)
        );
        assert_eq!(
            sampler_from(Some("always_on"), Some("junk"), &mut warnings),
            SamplerChoice::AlwaysOn,
            "the argument of a sampler without one is not read"
        );
        assert_eq!(warnings.len(), 3, "{warnings:?}");
        assert!(warnings[0].contains("C is \"zstd\""), "{warnings:?}");
        assert!(warnings[1].contains("OTEL_TRACES_SAMPLER is \"sometimes\""));
        assert!(warnings[2].contains("OTEL_TRACES_SAMPLER_ARG"));
    }

    #[test]
    fn the_exporter_list_exports_over_otlp_when_it_names_it() {
        let mut warnings = vec![];
        assert_eq!(
            exporter_from(Some("otlp,console"), &mut warnings),
            Exporter::Otlp
        );
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("console") && warnings[0].contains("only otlp"));
        warnings.clear();
        assert_eq!(
            exporter_from(Some("none, ,none"), &mut warnings),
            Exporter::Off("OTEL_TRACES_EXPORTER=none")
        );
        assert!(warnings.is_empty());
        assert!(matches!(
            exporter_from(Some("zipkin,Console"), &mut warnings),
            Exporter::Off(why) if why.contains("no exporter")
        ));
        assert!(warnings[0].contains("zipkin, console") && warnings[0].contains("no traces"));
        assert_eq!(exporter_from(None, &mut warnings), Exporter::Default);
    }

    #[test]
    fn the_timeout_is_clamped_and_a_non_number_is_the_default() {
        let mut warnings = vec![];
        assert_eq!(
            timeout_from("T", "250", &mut warnings),
            Duration::from_millis(250)
        );
        assert_eq!(timeout_from("T", "60000", &mut warnings), MAX_TIMEOUT);
        assert!(warnings.is_empty());
        for (value, expected) in [
            ("18446744073709551615", MAX_TIMEOUT),
            ("99999999999999999999999999999999999999999999", MAX_TIMEOUT),
            ("60001", MAX_TIMEOUT),
            ("0", MAX_TIMEOUT),
            ("10s", DEFAULT_TIMEOUT),
            ("-5", DEFAULT_TIMEOUT),
        ] {
            warnings.clear();
            assert_eq!(timeout_from("T", value, &mut warnings), expected, "{value}");
            assert_eq!(warnings.len(), 1, "{value}");
            assert!(warnings[0].starts_with("T is"), "{warnings:?}");
        }
    }
}
