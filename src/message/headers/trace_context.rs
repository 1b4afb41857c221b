//! W3C Trace Context (`traceparent`): the caller's trace id, so a deprecated-usage line and an
//! access-log line can be joined to the caller's trace, and the caller's span, which the shim's
//! own trace continues when tracing is on ([`crate::observe::otel`]). With tracing off the header goes
//! upstream unchanged; with it on the shim names its own span there instead. Only a
//! well-formed one is read, so a client cannot put arbitrary text into a log field through it.

use http::HeaderMap;

pub static TRACEPARENT: http::HeaderName = http::HeaderName::from_static("traceparent");

/// The trace id of a valid `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`), lower-case hex as
/// the spec requires. An all-zero id, the reserved version `ff`, upper-case hex or a
/// malformed header yields `None`. Versions above `00` may append fields, which are ignored.
pub fn trace_id(headers: &HeaderMap) -> Option<&str> {
    parse(headers).map(|parent| parent.trace_id)
}

/// The fields of a valid `traceparent`, lower-case hex.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceParent<'a> {
    pub trace_id: &'a str,
    pub parent_id: &'a str,
    /// The trace flags; bit 0 is `sampled`.
    pub flags: u8,
}

/// A valid `traceparent`, by the rules of [`trace_id`].
pub fn parse(headers: &HeaderMap) -> Option<TraceParent<'_>> {
    let value = headers.get(&TRACEPARENT)?.to_str().ok()?.trim();
    let mut fields = value.split('-');
    let version = fields.next()?;
    let trace_id = fields.next()?;
    let parent_id = fields.next()?;
    let flags = fields.next()?;
    let is_hex = |text: &str, len: usize| {
        text.len() == len && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    let valid = is_hex(version, 2)
        && version != "ff"
        && (version != "00" || fields.next().is_none())
        && is_hex(trace_id, 32)
        && trace_id.bytes().any(|b| b != b'0')
        && is_hex(parent_id, 16)
        && parent_id.bytes().any(|b| b != b'0')
        && is_hex(flags, 2);
    let flags = u8::from_str_radix(flags, 16).ok()?;
    valid.then_some(TraceParent {
        trace_id,
        parent_id,
        flags,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(&TRACEPARENT, value.parse().unwrap());
        headers
    }

    #[test]
    fn the_spec_example_gives_its_trace_id() {
        // W3C Trace Context, §3.2.2.2's example.
        let headers = with("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        assert_eq!(trace_id(&headers), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        // A later version may carry more fields.
        let headers = with("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra");
        assert_eq!(trace_id(&headers), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
    }

    #[test]
    fn the_parent_span_and_the_sampled_flag_are_read_too() {
        let headers = with("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        assert_eq!(
            parse(&headers),
            Some(TraceParent {
                trace_id: "4bf92f3577b34da6a3ce929d0e0e4736",
                parent_id: "00f067aa0ba902b7",
                flags: 1,
            })
        );
        let headers = with("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00");
        assert_eq!(parse(&headers).map(|parent| parent.flags), Some(0));
    }

    #[test]
    fn malformed_or_reserved_values_give_none() {
        assert_eq!(trace_id(&HeaderMap::new()), None);
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-\"forged\"-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e47-00f067aa0ba902b7-01",
        ] {
            assert_eq!(trace_id(&with(bad)), None, "{bad}");
        }
    }
}
