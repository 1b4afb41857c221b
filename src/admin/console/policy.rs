//! The console's `Content-Security-Policy` and the nonce that lets its own inline style and
//! script run, and nothing else.

/// The page's `Content-Security-Policy`: nothing from anywhere but the inline style and script
/// carrying this response's `nonce`, fetches to this listener only, no framing.
pub fn content_security_policy(nonce: &str) -> String {
    format!(
        "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; \
         img-src data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
         base-uri 'none'"
    )
}

/// A fresh nonce: the 16 bytes of a version 4 UUID in base64; 122 of its bits are random,
/// from the operating system's generator (the other 6 name the version and variant).
pub fn nonce() -> String {
    base64(uuid::Uuid::new_v4().as_bytes())
}

/// Standard base64 with padding (RFC 4648 §4).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for (index, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if index <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> shift & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_allows_only_this_pages_inline_code() {
        let csp = content_security_policy("abc=");
        assert!(
            csp.starts_with("default-src 'none'; script-src 'nonce-abc='; style-src 'nonce-abc=';")
        );
        assert!(csp.contains("connect-src 'self'") && csp.contains("frame-ancestors 'none'"));
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        let (one, two) = (nonce(), nonce());
        assert_eq!(one.len(), 24);
        assert_ne!(one, two);
    }
}
