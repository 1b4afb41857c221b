//! Customer list replies, as far as the checks before a delete need them. Pure functions.
//!
//! The stored docs disagree on the list envelopes (explo-api.md §3.4, §3.5), so every
//! documented one is read: v1 `{"customers": [...]}`, v2 `{"results": {"customers": [...]},
//! "total_count" | "count": N}`, with snake_case or camelCase keys. Anything else is not a
//! list, and the caller must not guess from it.

use super::json::{Document, member, members_of, parse_object};

/// One page of a customer list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListPage {
    pub customers: Vec<ListedCustomer>,
    /// How many customers match in all pages, when the envelope says (v2).
    pub total: Option<u64>,
}

/// What a listed customer says about itself; either may be missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedCustomer {
    pub token: Option<String>,
    pub provided_id: Option<String>,
}

/// The page a list reply holds, or `None` when the reply is not a recognisable list.
pub fn customer_list_page(reply: &[u8]) -> Option<ListPage> {
    let Ok(Document::Object(fields)) = parse_object(reply) else {
        return None;
    };
    let total = ["total_count", "count", "totalCount"]
        .iter()
        .find_map(|key| member(&fields, key)?.get().parse::<u64>().ok());
    let customers = match member(&fields, "customers") {
        Some(customers) => customers,
        None => member(&members_of(member(&fields, "results")?)?, "customers")?,
    };
    let customers: Vec<serde_json::Value> = serde_json::from_str(customers.get()).ok()?;
    let customers = customers
        .iter()
        .map(|customer| {
            let text = |keys: [&str; 2]| {
                keys.iter()
                    .find_map(|key| customer.get(key)?.as_str())
                    .filter(|value| !value.is_empty())
                    .map(str::to_owned)
            };
            ListedCustomer {
                token: text(["token", "customerToken"]),
                provided_id: text(["provided_id", "providedId"]),
            }
        })
        .collect();
    Some(ListPage { customers, total })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn customer(token: Option<&str>, id: &str) -> ListedCustomer {
        ListedCustomer {
            token: token.map(str::to_owned),
            provided_id: Some(id.to_owned()),
        }
    }

    #[test]
    fn every_documented_envelope_is_read() {
        let v1 = br#"{"success": 1, "customers": [{"token": "t", "provided_id": "a"}]}"#;
        assert_eq!(
            customer_list_page(v1),
            Some(ListPage {
                customers: vec![customer(Some("t"), "a")],
                total: None
            })
        );
        let v2a = br#"{"total_count": 7, "results": {"customers": [{"token": "t", "provided_id": "a"}]}}"#;
        assert_eq!(customer_list_page(v2a).unwrap().total, Some(7));
        let v2b = br#"{"count": 3, "next": null, "previous": null, "results": {"customers": []}}"#;
        assert_eq!(
            customer_list_page(v2b),
            Some(ListPage {
                customers: vec![],
                total: Some(3)
            })
        );
        let v2c = br#"{"count": 1, "results": {"customers": [{"token": "t", "providedId": "a"}]}}"#;
        assert_eq!(
            customer_list_page(v2c).unwrap().customers,
            [customer(Some("t"), "a")]
        );
    }

    #[test]
    fn missing_tokens_are_reported_as_missing() {
        let page = customer_list_page(br#"{"customers": [{"provided_id": "a"}]}"#).unwrap();
        assert_eq!(page.customers, [customer(None, "a")]);
    }

    #[test]
    fn other_shapes_are_not_lists() {
        for reply in [
            &b"<html>"[..],
            b"[]",
            br#"{"success": 1}"#,
            br#"{"customers": {"a": 1}}"#,
            br#"{"results": []}"#,
        ] {
            assert_eq!(customer_list_page(reply), None, "{reply:?}");
        }
    }
}
