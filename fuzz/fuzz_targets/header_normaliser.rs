//! Any header block: hop-by-hop stripping, the framing check and content decoding never panic,
//! and after stripping no hop-by-hop field remains.
#![no_main]

use bytes::Bytes;
use explo_shim::message::headers::encoding::decode_body;
use explo_shim::message::headers::framing::check_request_framing;
use explo_shim::message::headers::hop::strip_hop_by_hop;
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Lines of `name: value` before a blank line; the rest is a body.
    let split = data.windows(2).position(|w| w == b"\n\n").unwrap_or(data.len());
    let (head, body) = data.split_at(split);
    let mut headers = HeaderMap::new();
    for line in head.split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else { continue };
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(line[..colon].trim_ascii()),
            HeaderValue::from_bytes(line[colon + 1..].trim_ascii()),
        ) else {
            continue;
        };
        headers.append(name, value);
    }
    let _ = check_request_framing(&headers);
    let _ = decode_body(&headers, Bytes::copy_from_slice(body), 1 << 20);
    strip_hop_by_hop(&mut headers);
    for name in ["connection", "keep-alive", "transfer-encoding", "te", "upgrade", "proxy-connection"] {
        assert!(!headers.contains_key(name));
    }
});
