//! The resolved OpenTelemetry settings as `--check-config` shows them: comment lines after the
//! config file (the `OTEL_*` variables are not settings of that file), header values
//! redacted.

use std::fmt::Write as _;

use super::encode::INSTANCE_ID;
use super::settings::Resolved;

/// What `--check-config` writes instead of a header's value (or a query's).
pub use super::endpoint::REDACTED;

/// `resolved` as comment lines, each starting with `# `.
pub fn describe(resolved: &Resolved) -> String {
    let mut out = String::from("# OpenTelemetry traces, from the OTEL_* variables:\n");
    let Some(settings) = &resolved.settings else {
        let why = resolved.off_because.unwrap_or("no endpoint is set");
        let _ = writeln!(out, "# - export: off ({why})");
        return out;
    };
    let line = |out: &mut String, name: &str, value: &str| {
        let _ = writeln!(out, "# - {name}: {value}");
    };
    line(
        &mut out,
        "endpoint",
        &format!("{} ({})", settings.shown_endpoint(), settings.endpoint_from),
    );
    line(&mut out, "protocol", settings.protocol.name());
    line(&mut out, "compression", settings.compression.name());
    line(
        &mut out,
        "timeout",
        &format!("{} ms per export request", settings.timeout.as_millis()),
    );
    let certificate = match &settings.certificate {
        Some(certificate) => format!(
            "{:?} ({} CA certificates, trusted instead of the usual roots)",
            certificate.path,
            certificate.certificates.len()
        ),
        None => "none (the web PKI roots and upstream.ca_file)".to_owned(),
    };
    line(&mut out, "certificate", &certificate);
    line(&mut out, "sampler", &settings.sampler.to_string());
    let mut resource: Vec<String> = settings
        .resource
        .iter()
        // Quoted and escaped: a decoded value may hold a line break, which must not end the
        // comment and start a setting.
        .map(|(key, value)| format!("{}={value:?}", key.escape_debug()))
        .collect();
    if !settings.resource.iter().any(|(key, _)| key == INSTANCE_ID) {
        resource.push(format!("{INSTANCE_ID}=<a new UUID v4 at each start>"));
    }
    line(&mut out, "resource", &resource.join(", "));
    let headers = match settings.headers.headers.as_slice() {
        [] => "none".to_owned(),
        headers => {
            let names: Vec<String> = headers
                .iter()
                .map(|(name, _)| format!("{name}={REDACTED}"))
                .collect();
            format!("{} ({})", names.join(", "), settings.headers.variable)
        }
    };
    line(&mut out, "headers", &headers);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::otel::settings::from_env;

    fn described(pairs: &[(&str, &str)]) -> String {
        describe(
            &from_env(|name| {
                pairs
                    .iter()
                    .find(|(key, _)| *key == name)
                    .map(|(_, value)| (*value).to_owned())
            })
            .unwrap(),
        )
    }

    #[test]
    fn the_settings_are_shown_with_header_values_redacted() {
        let text = described(&[
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                "https://api.honeycomb.io/base/?tenant=QSECRET",
            ),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "18446744073709551615"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "x-honeycomb-team=hc_secret_1"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
            ("OTEL_RESOURCE_ATTRIBUTES", "note=a%0Ab = 1"),
        ]);
        assert!(!text.contains("hc_secret_1"), "{text}");
        assert!(!text.contains("QSECRET"), "{text}");
        for expected in [
            "# - endpoint: https://api.honeycomb.io/base/v1/traces?tenant=<redacted> \
             (OTEL_EXPORTER_OTLP_ENDPOINT)",
            "# - protocol: http/protobuf",
            "# - compression: gzip",
            "# - timeout: 60000 ms per export request",
            "# - sampler: parentbased_always_on",
            "# - headers: x-honeycomb-team=<redacted> (OTEL_EXPORTER_OTLP_HEADERS)",
            "service.instance.id=<a new UUID v4 at each start>",
            r#"note="a\nb = 1""#,
        ] {
            assert!(text.contains(expected), "no {expected:?} in:\n{text}");
        }
        assert!(text.lines().all(|line| line.starts_with("# ")), "{text}");
    }

    #[test]
    fn an_export_that_is_off_says_why() {
        let text = described(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            ("OTEL_SDK_DISABLED", "true"),
        ]);
        assert!(
            text.contains("# - export: off (OTEL_SDK_DISABLED=true)"),
            "{text}"
        );
    }
}
