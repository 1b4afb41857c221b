//! Undoing the upstream's `Content-Encoding` on replies the shim rewrites.
//!
//! Translated calls ask the upstream for `identity`, but a server may compress anyway
//! (RFC 9110 §12.5.3 makes `Accept-Encoding` advisory). A legacy reply is rebuilt from JSON,
//! so the shim must see the plain bytes; it then sends the rewritten reply uncompressed with an
//! exact `Content-Length`, which every client accepts.

use std::io::Read;

use bytes::Bytes;
use flate2::read::{DeflateDecoder, MultiGzDecoder, ZlibDecoder};
use http::HeaderMap;
use http::header::CONTENT_ENCODING;

/// Why a body could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// A coding the shim does not implement (`zstd`, ...).
    Unsupported(String),
    /// The bytes are not valid for the declared coding.
    Corrupt(String),
    /// The compressed stream ends before its end marker: the reply was cut short.
    Truncated,
    /// Decoding would exceed the configured limit (a compression bomb, or just too big).
    TooLarge { limit: u64 },
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unsupported(coding) => write!(f, "unsupported content-encoding `{coding}`"),
            Self::Corrupt(detail) => write!(f, "corrupt compressed body: {detail}"),
            Self::Truncated => f.write_str("the compressed body ends early"),
            Self::TooLarge { limit } => write!(f, "decoded body exceeds {limit} bytes"),
        }
    }
}

/// The codings listed in `Content-Encoding`, in the order they were applied.
fn codings(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(CONTENT_ENCODING)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|list| list.split(','))
        .map(|coding| coding.trim().to_ascii_lowercase())
        .filter(|coding| !coding.is_empty() && coding != "identity")
        .collect()
}

/// Returns the body with every content coding removed, never larger than `limit` bytes.
pub fn decode_body(headers: &HeaderMap, body: Bytes, limit: u64) -> Result<Bytes, DecodeError> {
    if !headers.contains_key(CONTENT_ENCODING) {
        return Ok(body);
    }
    let mut decoded = body;
    // Codings are listed in the order they were applied, so they are undone in reverse.
    for coding in codings(headers).iter().rev() {
        decoded = match coding.as_str() {
            "gzip" | "x-gzip" => read_limited(MultiGzDecoder::new(&decoded[..]), limit)?,
            // RFC 9110 says "deflate" is zlib-wrapped; some servers send raw deflate instead.
            "deflate" => read_limited(ZlibDecoder::new(&decoded[..]), limit)
                .or_else(|_| read_limited(DeflateDecoder::new(&decoded[..]), limit))?,
            // 4 KiB is the decoder's window buffer, not a limit on the body.
            "br" => read_limited(
                brotli_decompressor::Decompressor::new(&decoded[..], 4096),
                limit,
            )?,
            other => return Err(DecodeError::Unsupported(other.to_owned())),
        };
    }
    Ok(decoded)
}

fn read_limited(reader: impl Read, limit: u64) -> Result<Bytes, DecodeError> {
    let mut out = Vec::new();
    reader
        .take(limit.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|error| match error.kind() {
            std::io::ErrorKind::UnexpectedEof => DecodeError::Truncated,
            _ => DecodeError::Corrupt(error.to_string()),
        })?;
    if out.len() as u64 > limit {
        return Err(DecodeError::TooLarge { limit });
    }
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::Compression;
    use flate2::write::{GzEncoder, ZlibEncoder};
    use http::HeaderValue;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Bytes {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
        encoder.write_all(data).unwrap();
        Bytes::from(encoder.finish().unwrap())
    }

    fn encoded_as(coding: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_ENCODING, HeaderValue::from_static(coding));
        headers
    }

    #[test]
    fn identity_is_returned_unchanged() {
        let body = Bytes::from_static(b"{\"success\":1}");
        assert_eq!(
            decode_body(&HeaderMap::new(), body.clone(), 100),
            Ok(body.clone())
        );
        assert_eq!(
            decode_body(&encoded_as("identity"), body.clone(), 100),
            Ok(body)
        );
    }

    #[test]
    fn gzip_is_decoded() {
        let decoded = decode_body(&encoded_as("gzip"), gzip(b"{\"a\":1}"), 100).unwrap();
        assert_eq!(&decoded[..], b"{\"a\":1}");
    }

    #[test]
    fn stacked_codings_are_undone_in_reverse() {
        let twice = gzip(&gzip(b"hello"));
        let decoded = decode_body(&encoded_as("gzip, gzip"), twice, 100).unwrap();
        assert_eq!(&decoded[..], b"hello");
    }

    #[test]
    fn zlib_and_raw_deflate_are_both_accepted() {
        let mut zlib = ZlibEncoder::new(Vec::new(), Compression::default());
        zlib.write_all(b"zlib body").unwrap();
        let decoded = decode_body(
            &encoded_as("deflate"),
            Bytes::from(zlib.finish().unwrap()),
            100,
        );
        assert_eq!(decoded.unwrap(), Bytes::from_static(b"zlib body"));

        let mut raw = flate2::write::DeflateEncoder::new(Vec::new(), Compression::default());
        raw.write_all(b"raw body").unwrap();
        let decoded = decode_body(
            &encoded_as("deflate"),
            Bytes::from(raw.finish().unwrap()),
            100,
        );
        assert_eq!(decoded.unwrap(), Bytes::from_static(b"raw body"));
    }

    #[test]
    fn a_compression_bomb_stops_at_the_limit() {
        let bomb = gzip(&vec![b'a'; 1_000_000]);
        assert_eq!(
            decode_body(&encoded_as("gzip"), bomb, 1000),
            Err(DecodeError::TooLarge { limit: 1000 })
        );
    }

    #[test]
    fn truncated_gzip_is_told_apart_from_corrupt_gzip() {
        let whole = gzip(b"{\"success\": 1, \"customer\": {}}");
        let cut = whole.slice(..whole.len() / 2);
        assert_eq!(
            decode_body(&encoded_as("gzip"), cut, 1000),
            Err(DecodeError::Truncated)
        );
        let mut garbled = whole.to_vec();
        garbled[12] ^= 0xff;
        garbled[13] ^= 0xff;
        assert!(matches!(
            decode_body(&encoded_as("gzip"), Bytes::from(garbled), 1000),
            Err(DecodeError::Corrupt(_))
        ));
    }

    fn brotli(data: &[u8]) -> Bytes {
        let mut out = Vec::new();
        brotli::BrotliCompress(&mut &data[..], &mut out, &Default::default()).unwrap();
        Bytes::from(out)
    }

    #[test]
    fn brotli_is_decoded_and_bounded() {
        let decoded = decode_body(&encoded_as("br"), brotli(b"{\"a\":1}"), 100).unwrap();
        assert_eq!(&decoded[..], b"{\"a\":1}");
        assert_eq!(
            decode_body(&encoded_as("br"), brotli(&vec![b'a'; 100_000]), 1000),
            Err(DecodeError::TooLarge { limit: 1000 })
        );
        assert!(matches!(
            decode_body(&encoded_as("br"), Bytes::from_static(b"not brotli"), 100),
            Err(DecodeError::Corrupt(_))
        ));
    }

    #[test]
    fn unknown_codings_are_reported() {
        assert_eq!(
            decode_body(&encoded_as("zstd"), Bytes::from_static(b"x"), 10),
            Err(DecodeError::Unsupported("zstd".into()))
        );
    }
}
