//! Which legacy route a request path names, whatever its spelling.
//!
//! `/api/update%5Fuser_group/` and `/api/./update_user_group/` are the same resource as
//! `/api/update_user_group/` to most servers and CDNs (RFC 3986 §6.2.2), so they must get the
//! same treatment: translation, deprecation headers and a usage record. The path is matched
//! after decoding percent-encoded unreserved characters, merging repeated slashes (nginx's
//! `merge_slashes`, on by default, hands `//api/update_user_group/` to the legacy endpoint)
//! and resolving dot-segments. A path the
//! shim cannot normalise safely is refused: a malformed percent-escape, or an encoded `/`, `\`
//! or NUL that some server on the way could decode into a legacy path. Only the decision uses
//! the normalised form; a passed-through path is forwarded exactly as it came.

use std::borrow::Cow;

use http::Method;

use super::LegacyRoute;

/// Why a path cannot be matched safely.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnsafePath {
    /// A `%` not followed by two hex digits.
    MalformedEscape,
    /// An encoded `/`, `\` or NUL that would name a legacy endpoint once decoded.
    EncodedSeparator,
}

/// The legacy route `path` names, `None` for a path that passes through.
pub fn recognise(method: &Method, path: &str) -> Result<Option<LegacyRoute>, UnsafePath> {
    if is_plain(path) {
        return Ok(LegacyRoute::recognise(method, path));
    }
    let decoded = decode_unreserved(path)?;
    // Servers that merge slashes and servers that do not resolve `x//..` differently; a
    // legacy path under either reading is a legacy call.
    for normalised in [
        remove_dot_segments(&merge_slashes(&decoded)),
        remove_dot_segments(&decoded),
    ] {
        if let Some(route) = LegacyRoute::recognise(method, &normalised) {
            return Ok(Some(route));
        }
    }
    // A server that also decodes reserved characters (or treats `\` as `/`) could see a legacy
    // path here; the shim cannot know what the upstream does, so it refuses to guess.
    let decoded = decode_everything(path).replace('\\', "/");
    if decoded.contains('\0') {
        return Err(UnsafePath::EncodedSeparator);
    }
    for aggressive in [
        remove_dot_segments(&merge_slashes(&decoded)),
        remove_dot_segments(&decoded),
    ] {
        if LegacyRoute::recognise(method, &aggressive).is_some() {
            return Err(UnsafePath::EncodedSeparator);
        }
    }
    Ok(None)
}

/// Nothing to decode, no repeated slash and no dot-segment: the common case, found in one scan.
fn is_plain(path: &str) -> bool {
    let mut previous = 0u8;
    !path.bytes().any(|byte| {
        let special =
            matches!(byte, b'%' | b'\\') || (previous == b'/' && matches!(byte, b'.' | b'/'));
        previous = byte;
        special
    })
}

/// RFC 3986 §6.2.2: percent-encoded unreserved characters decoded, the remaining escapes in
/// upper case, repeated slashes merged, dot-segments removed.
pub fn normalise(path: &str) -> Result<Cow<'_, str>, UnsafePath> {
    let decoded = decode_unreserved(path)?;
    Ok(Cow::Owned(remove_dot_segments(&merge_slashes(&decoded))))
}

/// Runs of `/` as one, as nginx (`merge_slashes on`, its default) and many other fronts
/// resolve them before routing.
fn merge_slashes(path: &str) -> String {
    let mut merged = String::with_capacity(path.len());
    let mut previous = '\0';
    for character in path.chars() {
        if !(character == '/' && previous == '/') {
            merged.push(character);
        }
        previous = character;
    }
    merged
}

fn hex_value(byte: u8) -> Option<u8> {
    (byte as char)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

/// Decodes `%XX` where it stands for an unreserved character; other escapes stay, upper-cased.
fn decode_unreserved(path: &str) -> Result<String, UnsafePath> {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] != b'%' {
            // Request targets are ASCII (hyper refuses anything else), so bytes are chars.
            out.push(char::from(bytes[index]));
            index += 1;
            continue;
        }
        let (Some(high), Some(low)) = (
            bytes.get(index + 1).copied().and_then(hex_value),
            bytes.get(index + 2).copied().and_then(hex_value),
        ) else {
            return Err(UnsafePath::MalformedEscape);
        };
        let value = high * 16 + low;
        if is_unreserved(value) {
            out.push(char::from(value));
        } else {
            out.push('%');
            out.push(char::from(bytes[index + 1].to_ascii_uppercase()));
            out.push(char::from(bytes[index + 2].to_ascii_uppercase()));
        }
        index += 3;
    }
    Ok(out)
}

/// Decodes every escape, as the most liberal server would; only used to spot ambiguity.
fn decode_everything(path: &str) -> String {
    let bytes: Vec<u8> = percent_decode(path.as_bytes());
    String::from_utf8_lossy(&bytes).into_owned()
}

fn percent_decode(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let escaped = (bytes[index] == b'%')
            .then(|| {
                Some(hex_value(*bytes.get(index + 1)?)? * 16 + hex_value(*bytes.get(index + 2)?)?)
            })
            .flatten();
        match escaped {
            Some(value) => {
                out.push(value);
                index += 3;
            }
            None => {
                out.push(bytes[index]);
                index += 1;
            }
        }
    }
    out
}

/// RFC 3986 §5.2.4, for an absolute path.
fn remove_dot_segments(path: &str) -> String {
    let mut output: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let last = segments.len().saturating_sub(1);
    for (index, segment) in segments.iter().enumerate() {
        match *segment {
            "." | ".." => {
                if *segment == ".." {
                    output.pop();
                }
                // A trailing dot-segment leaves the path ending in `/`.
                if index == last {
                    output.push("");
                }
            }
            other => output.push(other),
        }
    }
    let mut result = String::with_capacity(path.len());
    for segment in output {
        result.push('/');
        result.push_str(segment);
    }
    if result.is_empty() {
        result.push('/');
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post(path: &str) -> Result<Option<LegacyRoute>, UnsafePath> {
        recognise(&Method::POST, path)
    }

    #[test]
    fn dot_segments_follow_rfc_3986_examples() {
        // RFC 3986 §5.2.4's own examples, and the edge cases.
        assert_eq!(remove_dot_segments("/a/b/c/./../../g"), "/a/g");
        assert_eq!(remove_dot_segments("/a/./b/"), "/a/b/");
        assert_eq!(remove_dot_segments("/a/b/.."), "/a/");
        assert_eq!(remove_dot_segments("/../a"), "/a");
        assert_eq!(remove_dot_segments("/."), "/");
        assert_eq!(remove_dot_segments("/"), "/");
        assert_eq!(remove_dot_segments("/a/.b/..c"), "/a/.b/..c");
    }

    #[test]
    fn equivalent_spellings_name_the_same_route() {
        for path in [
            "/api/update_user_group/",
            "/api/update%5Fuser_group/",
            "/api/update%5fuser%5Fgroup",
            "/api/./update_user_group/",
            "/api/x/../update_user_group/",
            "/%61pi/update_user_group/",
            "/api/%2E/update_user_group/",
            "/embed/./update_user_group",
            "/../api/update_user_group/",
            "//api/update_user_group/",
            "/api//update_user_group/",
            "/api/update_user_group//",
            "///api///update_user_group",
            "/api/x//../update_user_group/",
        ] {
            assert_eq!(post(path), Ok(Some(LegacyRoute::UpdateUserGroup)), "{path}");
        }
    }

    #[test]
    fn other_paths_still_pass_through() {
        for path in [
            "/api/update_customer/",
            "/api/./update_customer/",
            "/files/a%20b",
            "/files/a%2Fb",
            "/api/update_user_group/x/y/..",
            "//api/update_customer/",
            "/files//a",
        ] {
            assert_eq!(post(path), Ok(None), "{path}");
        }
        // The method still decides, as for the canonical path.
        assert_eq!(
            recognise(&Method::GET, "/api/update%5Fuser_group/"),
            Ok(None)
        );
    }

    #[test]
    fn a_trailing_dot_segment_leaves_the_trailing_slash() {
        assert_eq!(
            post("/api/update_user_group/x/.."),
            Ok(Some(LegacyRoute::UpdateUserGroup))
        );
        assert_eq!(
            post("/api/update_user_group/."),
            Ok(Some(LegacyRoute::UpdateUserGroup))
        );
    }

    #[test]
    fn unsafe_spellings_are_refused() {
        assert_eq!(
            post("/api/update%ZZuser_group/"),
            Err(UnsafePath::MalformedEscape)
        );
        assert_eq!(post("/files/100%"), Err(UnsafePath::MalformedEscape));
        assert_eq!(
            post("/api%2Fupdate_user_group/"),
            Err(UnsafePath::EncodedSeparator)
        );
        assert_eq!(
            post("/api%5Cupdate_user_group/"),
            Err(UnsafePath::EncodedSeparator)
        );
        assert_eq!(
            post("/api\\update_user_group/"),
            Err(UnsafePath::EncodedSeparator)
        );
        assert_eq!(post("/files/a%00b"), Err(UnsafePath::EncodedSeparator));
        // Legacy only to a server that decodes `%2F` and does not merge slashes.
        assert_eq!(
            post("/api/update_user_group/%2F.."),
            Err(UnsafePath::EncodedSeparator)
        );
        assert_eq!(
            post("/api/update_user_group/%2F"),
            Err(UnsafePath::EncodedSeparator)
        );
    }

    #[test]
    fn other_escapes_are_upper_cased_not_decoded() {
        assert_eq!(normalise("/a%2fb%7e").unwrap(), "/a%2Fb~");
    }
}
