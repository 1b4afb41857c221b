//! Parsing a legacy body: one pass that builds the `Value` and refuses duplicate keys.
//!
//! `serde_json` keeps the last of two equal keys, so `{"user_group_id": "a", "user_group_id":
//! "b"}` would silently become `"b"` here while another parser (the upstream's, a WAF's) may
//! read `"a"`. Refusing the body is the only answer that cannot be misread. Numbers keep their
//! exact text (serde_json's `arbitrary_precision`), and serde_json's nesting limit (128) still
//! applies, so a deeply nested body is an error rather than a stack overflow.

use std::fmt;
use std::str::FromStr;

use serde::de::{DeserializeSeed, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// The key serde_json uses to carry an exact number through `deserialize_any` when
/// `arbitrary_precision` is on. A unit test below fails if serde_json ever changes it.
const EXACT_NUMBER_TOKEN: &str = "$serde_json::private::Number";

/// Parses `bytes` as JSON, refusing any object with a repeated key.
pub fn parse_without_duplicate_keys(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = StrictValue.deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(value)
}

struct StrictValue;

/// Inserts `key` unless it is already there; returns the key back when it was a duplicate.
fn insert_new(object: &mut Map<String, Value>, key: String, value: Value) -> Option<String> {
    match object.entry(key) {
        serde_json::map::Entry::Occupied(entry) => Some(entry.key().clone()),
        serde_json::map::Entry::Vacant(entry) => {
            entry.insert(value);
            None
        }
    }
}

impl<'de> DeserializeSeed<'de> for StrictValue {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictValue {
    type Value = Value;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_f64<E: serde::de::Error>(self, value: f64) -> Result<Value, E> {
        Number::from_f64(value)
            .map(Value::Number)
            .ok_or_else(|| E::custom("number out of range"))
    }

    fn visit_str<E>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_owned()))
    }

    fn visit_string<E>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element_seed(StrictValue)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let Some(first_key) = map.next_key::<String>()? else {
            return Ok(Value::Object(Map::new()));
        };
        if first_key == EXACT_NUMBER_TOKEN {
            let literal: String = map.next_value()?;
            return Number::from_str(&literal)
                .map(Value::Number)
                .map_err(A::Error::custom);
        }
        let mut object = Map::new();
        let mut key = Some(first_key);
        while let Some(name) = key {
            let value = map.next_value_seed(StrictValue)?;
            if let Some(name) = insert_new(&mut object, name, value) {
                return Err(A::Error::custom(format!("duplicate key `{name}`")));
            }
            key = map.next_key::<String>()?;
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_like_serde_json_and_keeps_key_order() {
        let text = r#"{"b": [1, -2, 3.5, true, null, "x"], "a": {"nested": {}}, "c": []}"#;
        let strict = parse_without_duplicate_keys(text.as_bytes()).unwrap();
        assert_eq!(strict, serde_json::from_str::<Value>(text).unwrap());
        let keys: Vec<&str> = strict
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, ["b", "a", "c"]);
    }

    #[test]
    fn numbers_keep_their_exact_text() {
        let text = r#"{"big": 123456789012345678901234567890, "float": 1.10, "exp": 1e400}"#;
        let value = parse_without_duplicate_keys(text.as_bytes()).unwrap();
        assert_eq!(value["big"].to_string(), "123456789012345678901234567890");
        assert_eq!(value["float"].to_string(), "1.10");
        // Not rounded to infinity or refused: the value survives, as serde_json writes it.
        assert_eq!(value["exp"].to_string(), "1e+400");
        assert_eq!(value, serde_json::from_str::<Value>(text).unwrap());
    }

    #[test]
    fn duplicate_keys_are_refused_at_any_depth() {
        for text in [
            r#"{"user_group_id": "a", "user_group_id": "b"}"#,
            r#"{"properties": {"k": 1, "k": 2}}"#,
            r#"[{"x": 1, "x": 1}]"#,
        ] {
            let error = parse_without_duplicate_keys(text.as_bytes()).unwrap_err();
            assert!(
                error.to_string().contains("duplicate key"),
                "{text}: {error}"
            );
        }
    }

    #[test]
    fn malformed_truncated_and_trailing_input_is_refused() {
        for text in ["{", r#"{"a": }"#, r#"{"a": 1} x"#, "", "\u{feff}{}"] {
            assert!(
                parse_without_duplicate_keys(text.as_bytes()).is_err(),
                "{text:?}"
            );
        }
        assert!(parse_without_duplicate_keys(b"{\"a\": \"\xff\"}").is_err());
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(parse_without_duplicate_keys(deep.as_bytes()).is_err());
    }
}
