//! JSON read and written without building a tree: an object's members are borrowed slices of
//! the input, and a rewritten body copies every value's bytes as they came.
//!
//! Copying the bytes is what keeps numbers exactly as the client wrote them (`1e400` stays
//! `1e400`, `1E5` stays `1E5`, `1.10` stays `1.10`) and is cheaper than a `Value` round trip:
//! one parse, no map of owned strings, no re-serialisation of nested values.
//!
//! A legacy body is parsed strictly ([`parse_strict_object`]): `serde_json` keeps the last of
//! two equal keys, so `{"user_group_id": "a", "user_group_id": "b"}` would silently become
//! `"b"` here while another parser (the upstream's, a WAF's) may read `"a"`. Refusing the body
//! is the only answer that cannot be misread, at any depth. serde_json's nesting limit (128)
//! applies, so a deeply nested body is an error rather than a stack overflow.
//!
//! Upstream replies are parsed leniently ([`parse_object`]): only the top level is split into
//! members, and nested values are checked for syntax while being skipped.

use std::borrow::Cow;
use std::fmt;

use serde::de::{
    DeserializeSeed, Deserializer, Error as _, IgnoredAny, MapAccess, SeqAccess, Visitor,
};
use serde_json::value::RawValue;

/// The key serde_json uses to carry an exact number through `deserialize_any` when
/// `arbitrary_precision` is on. A unit test below fails if serde_json ever changes it.
const EXACT_NUMBER_TOKEN: &str = "$serde_json::private::Number";

/// An object's members in their order: each key as text (borrowed unless it had escapes) and
/// each value as the exact bytes of the input.
pub type Members<'a> = Vec<(Cow<'a, str>, &'a RawValue)>;

/// The bytes without a leading UTF-8 byte order mark, which JSON parsers refuse (RFC 8259
/// §8.1 lets a parser ignore one; some servers send it).
pub fn without_bom(bytes: &bytes::Bytes) -> bytes::Bytes {
    if bytes.starts_with(b"\xEF\xBB\xBF") {
        bytes.slice(3..)
    } else {
        bytes.clone()
    }
}

/// A JSON document, split at the top level.
#[derive(Debug)]
pub enum Document<'a> {
    Object(Members<'a>),
    /// Valid JSON that is not an object (an array, a string, a number, ...).
    NotAnObject,
}

/// Parses `bytes` as JSON, refusing any object with a repeated key at any depth; an object's
/// members are returned as borrowed slices. Two walks, neither building anything: the check,
/// then the split.
pub fn parse_strict_object(bytes: &[u8]) -> Result<Document<'_>, serde_json::Error> {
    let text = as_str(bytes)?;
    let mut deserializer = serde_json::Deserializer::from_str(text);
    deserializer.deserialize_any(StrictCheck)?;
    deserializer.end()?;
    split_document(text)
}

/// Parses `bytes` as JSON and splits an object into its members; nested values are checked for
/// syntax only. The whole input is checked to be UTF-8 first: serde_json checks the strings it
/// reads but not the ones it skips, and a skipped value must be JSON too, since it may be
/// copied out as is.
pub fn parse_object(bytes: &[u8]) -> Result<Document<'_>, serde_json::Error> {
    split_document(as_str(bytes)?)
}

/// An object split at the top level, with the first member named by the caller split one
/// level further in the same pass: an upstream reply and its `customer`, scanned once.
#[derive(Debug)]
pub enum SplitReply<'a> {
    /// The expanded member, if present, holds `null` in `members` (it keeps its place) and
    /// its own members are in `expanded`.
    Object {
        members: Members<'a>,
        expanded: Option<Members<'a>>,
    },
    NotAnObject,
    /// The member to expand is not an object: parse with [`parse_object`] instead.
    ExpandedIsNotAnObject,
}

/// Parses `bytes` like [`parse_object`], splitting the first member named `key` too.
pub fn parse_object_expanding<'a>(
    bytes: &'a [u8],
    key: &'static str,
) -> Result<SplitReply<'a>, serde_json::Error> {
    split(as_str(bytes)?, Some(key))
}

/// Splits a value that is already known to be valid JSON (a member of a parsed document).
pub fn members_of(value: &RawValue) -> Option<Members<'_>> {
    match split_document(value.get()) {
        Ok(Document::Object(members)) => Some(members),
        _ => None,
    }
}

/// The value of the first member named `key`.
pub fn member<'a>(members: &[(Cow<'a, str>, &'a RawValue)], key: &str) -> Option<&'a RawValue> {
    members
        .iter()
        .find(|(name, _)| name == key)
        .map(|(_, value)| *value)
}

/// The text of a JSON string value, unescaped; `None` for any other kind of value.
pub fn string_value(value: &RawValue) -> Option<Cow<'_, str>> {
    if !value.get().starts_with('"') {
        return None;
    }
    let mut deserializer = serde_json::Deserializer::from_str(value.get());
    KeySeed.deserialize(&mut deserializer).ok()
}

/// Builds a JSON object by appending members; values are written as the raw text given.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectWriter {
    out: Vec<u8>,
    empty: bool,
}

impl ObjectWriter {
    pub fn with_capacity(capacity: usize) -> Self {
        let mut out = Vec::with_capacity(capacity);
        out.push(b'{');
        Self { out, empty: true }
    }

    /// Appends `"key":` followed by `raw_value`, which must be valid JSON text.
    pub fn raw(&mut self, key: &str, raw_value: &str) -> &mut Self {
        self.key(key);
        self.out.extend_from_slice(raw_value.as_bytes());
        self
    }

    /// Appends `"key":` followed by `raw_value`, which must be valid JSON bytes.
    pub fn raw_bytes(&mut self, key: &str, raw_value: &[u8]) -> &mut Self {
        self.key(key);
        self.out.extend_from_slice(raw_value);
        self
    }

    /// Appends `"key":"value"` with `value` escaped as a JSON string.
    pub fn string(&mut self, key: &str, value: &str) -> &mut Self {
        self.key(key);
        write_string(&mut self.out, value);
        self
    }

    fn key(&mut self, key: &str) {
        if !self.empty {
            self.out.push(b',');
        }
        self.empty = false;
        write_string(&mut self.out, key);
        self.out.push(b':');
    }

    pub fn finish(mut self) -> Vec<u8> {
        self.out.push(b'}');
        self.out
    }
}

/// `text` as a JSON string literal.
fn write_string(out: &mut Vec<u8>, text: &str) {
    // Writing a `str` into a `Vec` cannot fail.
    let _ = serde_json::to_writer(&mut *out, text);
}

fn as_str(bytes: &[u8]) -> Result<&str, serde_json::Error> {
    std::str::from_utf8(bytes).map_err(serde_json::Error::custom)
}

/// Walks `text` once: the top level's members as borrowed slices, and the members of the
/// first one named `expand`, if asked.
fn split<'a>(
    text: &'a str,
    expand: Option<&'static str>,
) -> Result<SplitReply<'a>, serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let split = deserializer.deserialize_any(SplitVisitor { expand })?;
    deserializer.end()?;
    Ok(split)
}

fn split_document(text: &str) -> Result<Document<'_>, serde_json::Error> {
    split(text, None).map(Document::from)
}

impl<'a> From<SplitReply<'a>> for Document<'a> {
    fn from(split: SplitReply<'a>) -> Self {
        match split {
            SplitReply::Object { members, .. } => Document::Object(members),
            // Without a member to expand, nothing else comes back.
            SplitReply::NotAnObject | SplitReply::ExpandedIsNotAnObject => Document::NotAnObject,
        }
    }
}

/// The `visit_*` methods for every scalar (booleans, numbers, strings, null), each answering
/// `$value`: the visitors below only look inside objects and arrays.
macro_rules! accept_scalars {
    ($value:expr) => {
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok($value)
        }
    };
}

/// An object's members as borrowed slices (one of them split further when `expand` names
/// it); anything else only validated.
struct SplitVisitor {
    expand: Option<&'static str>,
}

impl<'de> Visitor<'de> for SplitVisitor {
    type Value = SplitReply<'de>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("any JSON value")
    }

    accept_scalars!(SplitReply::NotAnObject);

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(SplitReply::NotAnObject)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut members = Members::new();
        let mut expand = self.expand;
        let mut expanded = None;
        let mut expanded_is_not_an_object = false;
        while let Some(key) = map.next_key_seed(KeySeed)? {
            if members.is_empty() && key == EXACT_NUMBER_TOKEN {
                map.next_value::<IgnoredAny>()?;
                return Ok(SplitReply::NotAnObject);
            }
            if expand.is_some_and(|name| key == name) {
                // Only the first member of that name is split.
                expand = None;
                match map.next_value_seed(NestedObject)? {
                    Document::Object(inner) => expanded = Some(inner),
                    // Its bytes are not kept: the caller splits the top level alone.
                    Document::NotAnObject => expanded_is_not_an_object = true,
                }
                members.push((key, RawValue::NULL));
                continue;
            }
            let value: &'de RawValue = map.next_value()?;
            members.push((key, value));
        }
        if expanded_is_not_an_object {
            return Ok(SplitReply::ExpandedIsNotAnObject);
        }
        Ok(SplitReply::Object { members, expanded })
    }
}

/// A nested value split like a document: an object's members, or only validated.
struct NestedObject;

impl<'de> DeserializeSeed<'de> for NestedObject {
    type Value = Document<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer
            .deserialize_any(SplitVisitor { expand: None })
            .map(Document::from)
    }
}

/// A key or string, borrowed from the input when it has no escapes.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a string")
    }

    fn visit_borrowed_str<E>(self, value: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(value))
    }

    fn visit_str<E>(self, value: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(value.to_owned()))
    }

    fn visit_string<E>(self, value: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(value))
    }
}

/// Walks a value, building nothing, and fails on the first object with a repeated key.
struct StrictCheck;

impl<'de> DeserializeSeed<'de> for StrictCheck {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictCheck {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("any JSON value")
    }

    accept_scalars!(());

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(StrictCheck)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut keys: Vec<Cow<'de, str>> = Vec::new();
        while let Some(key) = map.next_key_seed(KeySeed)? {
            if keys.is_empty() && key == EXACT_NUMBER_TOKEN {
                map.next_value::<IgnoredAny>()?;
                return Ok(());
            }
            if keys.contains(&key) {
                return Err(A::Error::custom(format!("duplicate key `{key}`")));
            }
            map.next_value_seed(StrictCheck)?;
            keys.push(key);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(text: &str) -> Members<'_> {
        match parse_strict_object(text.as_bytes()).unwrap() {
            Document::Object(members) => members,
            Document::NotAnObject => panic!("not an object: {text}"),
        }
    }

    #[test]
    fn members_keep_their_order_and_exact_bytes() {
        let text = r#"{"b": [1, -2, 3.5, true, null, "x"], "a": {"nested": {}}, "c": 1E5, "d": 1e400, "e": 1.10}"#;
        let members = object(text);
        let pairs: Vec<(&str, &str)> = members
            .iter()
            .map(|(key, value)| (key.as_ref(), value.get()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("b", r#"[1, -2, 3.5, true, null, "x"]"#),
                ("a", r#"{"nested": {}}"#),
                ("c", "1E5"),
                ("d", "1e400"),
                ("e", "1.10"),
            ]
        );
    }

    #[test]
    fn escaped_keys_are_unescaped_and_strings_read() {
        let members = object(r#"{"user\u005fgroup_id": "a\"b", "n": 5}"#);
        assert_eq!(members[0].0, "user_group_id");
        assert_eq!(string_value(members[0].1).unwrap(), "a\"b");
        assert_eq!(string_value(members[1].1), None);
        assert!(member(&members, "n").is_some());
        assert!(member(&members, "missing").is_none());
    }

    #[test]
    fn the_exact_number_token_is_what_serde_json_uses() {
        let value: serde_json::Value =
            serde_json::from_str("123456789012345678901234567890").unwrap();
        let json = serde_json::to_string(&serde_json::json!({EXACT_NUMBER_TOKEN: "1"})).unwrap();
        assert!(json.contains(EXACT_NUMBER_TOKEN));
        // A top-level number is a number, not an object with the private key.
        assert!(matches!(
            parse_strict_object(value.to_string().as_bytes()).unwrap(),
            Document::NotAnObject
        ));
        assert!(object(r#"{"n": 12345678901234567890123}"#).len() == 1);
    }

    #[test]
    fn other_documents_are_not_objects_but_valid() {
        for text in ["[]", "\"x\"", "1", "null", "true", "[{\"a\": 1}]"] {
            assert!(
                matches!(
                    parse_strict_object(text.as_bytes()).unwrap(),
                    Document::NotAnObject
                ),
                "{text}"
            );
        }
    }

    #[test]
    fn duplicate_keys_are_refused_at_any_depth() {
        for text in [
            r#"{"user_group_id": "a", "user_group_id": "b"}"#,
            r#"{"properties": {"k": 1, "k": 2}}"#,
            r#"{"list": [{"x": 1, "x": 1}]}"#,
            r#"[{"x": 1, "x": 1}]"#,
            r#"{"a\u0062": 1, "ab": 2}"#,
        ] {
            let error = parse_strict_object(text.as_bytes()).unwrap_err();
            assert!(
                error.to_string().contains("duplicate key"),
                "{text}: {error}"
            );
        }
        // Replies are not held to it: the upstream's own words pass.
        assert!(parse_object(br#"{"a": 1, "a": 2}"#).is_ok());
    }

    #[test]
    fn malformed_truncated_and_trailing_input_is_refused() {
        for text in [
            "{",
            r#"{"a": }"#,
            r#"{"a": 1} x"#,
            "",
            "\u{feff}{}",
            r#"{"a": [1,]}"#,
        ] {
            assert!(parse_strict_object(text.as_bytes()).is_err(), "{text:?}");
            assert!(parse_object(text.as_bytes()).is_err(), "{text:?}");
        }
        assert!(parse_strict_object(b"{\"a\": \"\xff\"}").is_err());
        // Found by fuzzing: a string skipped inside an array must be UTF-8 too.
        for text in [
            &b"[\"\xea\"]"[..],
            b"{\"a\": [\"\xea\"]}",
            b"{\"customer\": [\"\xea\"]}",
        ] {
            assert!(parse_object(text).is_err(), "{text:?}");
            assert!(
                parse_object_expanding(text, "customer").is_err(),
                "{text:?}"
            );
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(parse_strict_object(deep.as_bytes()).is_err());
        let deep_member = format!("{{\"a\": {}{}}}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(parse_strict_object(deep_member.as_bytes()).is_err());
        // Skipping a nested value does not recurse, so a reply only has to be well formed.
        assert!(parse_object(deep_member.as_bytes()).is_ok());
    }

    #[test]
    fn one_member_is_split_in_the_same_pass() {
        let text = br#"{"success": 1, "customer": {"token": "t", "n": 1E5}, "x": [1]}"#;
        let SplitReply::Object { members, expanded } =
            parse_object_expanding(text, "customer").unwrap()
        else {
            panic!("an object");
        };
        let keys: Vec<&str> = members.iter().map(|(key, _)| key.as_ref()).collect();
        assert_eq!(keys, ["success", "customer", "x"]);
        let inner = expanded.unwrap();
        assert_eq!(inner[1].0, "n");
        assert_eq!(inner[1].1.get(), "1E5");
        assert!(matches!(
            parse_object_expanding(br#"{"customer": null}"#, "customer").unwrap(),
            SplitReply::ExpandedIsNotAnObject
        ));
        assert!(matches!(
            parse_object_expanding(b"[1]", "customer").unwrap(),
            SplitReply::NotAnObject
        ));
        assert!(parse_object_expanding(br#"{"customer": {"a": }}"#, "customer").is_err());
        let SplitReply::Object { expanded, .. } =
            parse_object_expanding(br#"{"a": 1}"#, "customer").unwrap()
        else {
            panic!("an object");
        };
        assert!(expanded.is_none());
    }

    #[test]
    fn the_writer_builds_valid_json() {
        let mut writer = ObjectWriter::with_capacity(16);
        writer.raw("n", "1e400").string("s", "q\"uote");
        let text = String::from_utf8(writer.finish()).unwrap();
        assert_eq!(text, r#"{"n":1e400,"s":"q\"uote"}"#);
        assert_eq!(ObjectWriter::with_capacity(0).finish(), b"{}");
    }
}
