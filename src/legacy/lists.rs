//! Customer list replies, as far as the checks before a delete need them. Pure functions.
//!
//! The stored docs disagree on the list envelopes (explo-api.md §3.4, §3.5), so every
//! documented one is read: v1 `{"customers": [...]}`, v2 `{"results": {"customers": [...]},
//! "total_count" | "count": N}`, with snake_case or camelCase keys. Anything else is not a
//! list, and the caller must not guess from it.
//!
//! [`OwnerScan`] is the bookkeeping of a search for a token's customer through the list's
//! pages: pages in, a verdict out.

use std::collections::HashSet;
use std::fmt;

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

/// A search for the customer holding one token through a paginated list, fed page by page.
///
/// Customers are counted by `provided_id`, never by entry: a server that ignores `page`, or a
/// page that shifts under a concurrent delete, shows some customers twice, and counting entries
/// would reach `total_count` without having seen them all. "No customer holds the token" is
/// only ever the verdict of a list read whole: every customer of an unchanging `total_count`
/// seen, each with its token and id.
#[derive(Debug)]
pub struct OwnerScan<'a> {
    token: &'a str,
    max_pages: u32,
    pages_read: u32,
    /// The distinct `provided_id`s seen so far.
    seen: HashSet<String>,
    /// The first page's `total_count`; every later page must say the same.
    total: Option<u64>,
    tokens_missing: bool,
    ids_missing: bool,
}

/// Where a page leaves an [`OwnerScan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanStep {
    /// This `provided_id`'s customer holds the token.
    Found(String),
    /// Nothing settled yet: read the next page.
    Continue,
    /// The list was read whole and no customer in it holds the token.
    Absent,
    /// Not found, and the list cannot show that no customer holds the token.
    Incomplete(Incomplete),
}

/// Why a list could not show who holds a token, or that nobody does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Incomplete {
    /// Some entries have no token: the holder may be one of them.
    TokensMissing,
    /// Some entries have no `provided_id`, so the customers cannot be counted.
    IdsMissing,
    /// The list gives no `total_count`, so nothing shows it was read to its end.
    NoCount,
    /// A page brought no customer not seen already (an empty page, or the same page again)
    /// before `total_count` were seen.
    NothingNew,
    /// `total_count` changed between pages, or more customers were seen than it says: the list
    /// changed while it was read.
    Changed,
    /// The list goes on past the most pages a search may read.
    TooManyPages(u32),
    /// A page after the first was not a list (the caller's finding; a scan never says it).
    PageUnreadable,
}

impl fmt::Display for Incomplete {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TokensMissing => f.write_str(
                "the customer list leaves tokens out, so the token's customer is unknown",
            ),
            Self::IdsMissing => f.write_str(
                "the customer list leaves provided_ids out, so its customers cannot be counted",
            ),
            Self::NoCount => f.write_str(
                "the token is not in a customer list that gives no total_count, so the list \
                 cannot show that no customer holds it",
            ),
            Self::NothingNew => f.write_str(
                "the customer list could not be read whole: a page brought no customer not seen \
                 already before its total_count was reached (does the list ignore `page`?)",
            ),
            Self::Changed => f.write_str(
                "the customer list could not be read whole: it changed while it was read",
            ),
            Self::TooManyPages(pages) => write!(
                f,
                "the customer list could not be read whole: it is longer than {pages} pages"
            ),
            Self::PageUnreadable => f.write_str(
                "the customer list could not be read whole: a page after the first was not a list",
            ),
        }
    }
}

impl<'a> OwnerScan<'a> {
    /// A search for `token` that reads at most `max_pages` pages.
    pub fn new(token: &'a str, max_pages: u32) -> Self {
        Self {
            token,
            max_pages,
            pages_read: 0,
            seen: HashSet::new(),
            total: None,
            tokens_missing: false,
            ids_missing: false,
        }
    }

    /// Takes in the next page.
    pub fn read(&mut self, page: &ListPage) -> ScanStep {
        self.pages_read += 1;
        let distinct_before = self.seen.len();
        for customer in &page.customers {
            if customer.token.as_deref() == Some(self.token)
                && let Some(owner) = &customer.provided_id
            {
                return ScanStep::Found(owner.clone());
            }
            self.tokens_missing |= customer.token.is_none();
            match &customer.provided_id {
                Some(id) if !self.seen.contains(id) => {
                    self.seen.insert(id.clone());
                }
                Some(_) => {}
                None => self.ids_missing = true,
            }
        }
        if self.pages_read == 1 {
            self.total = page.total;
        } else if page.total != self.total {
            return self.stopped(Incomplete::Changed);
        }
        let distinct = self.seen.len() as u64;
        let brought_nothing_new = self.seen.len() == distinct_before;
        match self.total {
            Some(total) if distinct > total => self.stopped(Incomplete::Changed),
            Some(total) if distinct == total => match self.unreadable_entries() {
                Some(why) => ScanStep::Incomplete(why),
                None => ScanStep::Absent,
            },
            None if brought_nothing_new => self.stopped(Incomplete::NoCount),
            _ if brought_nothing_new => self.stopped(Incomplete::NothingNew),
            _ if self.pages_read >= self.max_pages => {
                self.stopped(Incomplete::TooManyPages(self.max_pages))
            }
            _ => ScanStep::Continue,
        }
    }

    /// Why the pages read so far do not settle the search, for a list that has no more (v1 is
    /// one page).
    pub fn without_more_pages(&self) -> Incomplete {
        self.unreadable_entries().unwrap_or(match self.total {
            None => Incomplete::NoCount,
            Some(_) => Incomplete::NothingNew,
        })
    }

    /// Entries without a token or an id, which no further reading would make up for.
    fn unreadable_entries(&self) -> Option<Incomplete> {
        if self.tokens_missing {
            Some(Incomplete::TokensMissing)
        } else if self.ids_missing {
            Some(Incomplete::IdsMissing)
        } else {
            None
        }
    }

    /// The end of the search; unreadable entries are given as the reason first, since they
    /// are what the operator has to fix.
    fn stopped(&self, cause: Incomplete) -> ScanStep {
        ScanStep::Incomplete(self.unreadable_entries().unwrap_or(cause))
    }
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

    fn page_of(entries: &[(Option<&str>, Option<&str>)], total: Option<u64>) -> ListPage {
        ListPage {
            customers: entries
                .iter()
                .map(|(token, id)| ListedCustomer {
                    token: token.map(str::to_owned),
                    provided_id: id.map(str::to_owned),
                })
                .collect(),
            total,
        }
    }

    /// Customers whose token is their id in upper case.
    fn listed(ids: &[&str], total: Option<u64>) -> ListPage {
        ListPage {
            customers: ids
                .iter()
                .map(|id| ListedCustomer {
                    token: Some(id.to_uppercase()),
                    provided_id: Some((*id).to_owned()),
                })
                .collect(),
            total,
        }
    }

    /// The step after each page, in order.
    fn scan(token: &str, max_pages: u32, pages: &[ListPage]) -> Vec<ScanStep> {
        let mut scan = OwnerScan::new(token, max_pages);
        pages.iter().map(|page| scan.read(page)).collect()
    }

    #[test]
    fn a_token_on_a_later_page_is_found() {
        let pages = [listed(&["a", "b"], Some(4)), listed(&["c", "d"], Some(4))];
        assert_eq!(
            scan("C", 100, &pages),
            [ScanStep::Continue, ScanStep::Found("c".to_owned())]
        );
    }

    #[test]
    fn only_a_list_read_whole_shows_that_nobody_holds_the_token() {
        let pages = [listed(&["a", "b"], Some(3)), listed(&["c"], Some(3))];
        assert_eq!(
            scan("X", 100, &pages),
            [ScanStep::Continue, ScanStep::Absent]
        );
        assert_eq!(scan("X", 100, &[listed(&[], Some(0))]), [ScanStep::Absent]);
    }

    #[test]
    fn a_repeated_page_is_not_counted_twice() {
        // A server that ignores `page`: two pages of two reach a total of four by entries.
        let pages = [listed(&["a", "b"], Some(4)), listed(&["a", "b"], Some(4))];
        assert_eq!(
            scan("C", 100, &pages),
            [
                ScanStep::Continue,
                ScanStep::Incomplete(Incomplete::NothingNew)
            ]
        );
    }

    #[test]
    fn an_empty_page_before_the_total_ends_the_search_unsettled() {
        let pages = [listed(&["a"], Some(3)), listed(&[], Some(3))];
        assert_eq!(
            scan("C", 100, &pages)[1],
            ScanStep::Incomplete(Incomplete::NothingNew)
        );
    }

    #[test]
    fn a_list_that_changes_while_it_is_read_settles_nothing() {
        // `a` is deleted after page 1: every later customer moves up one place, so `c` slips
        // from page 2 to page 1, unseen, and the count drops to what was seen.
        let shifted = [listed(&["a", "b"], Some(5)), listed(&["d", "e"], Some(4))];
        assert_eq!(
            scan("C", 100, &shifted)[1],
            ScanStep::Incomplete(Incomplete::Changed)
        );
        // More customers seen than the count says.
        let grown = [listed(&["a", "b"], Some(3)), listed(&["c", "d"], Some(3))];
        assert_eq!(
            scan("X", 100, &grown)[1],
            ScanStep::Incomplete(Incomplete::Changed)
        );
    }

    #[test]
    fn entries_without_a_token_or_an_id_are_the_reason_given() {
        let untokened = [page_of(
            &[(None, Some("a")), (Some("B"), Some("b"))],
            Some(2),
        )];
        assert_eq!(
            scan("X", 100, &untokened),
            [ScanStep::Incomplete(Incomplete::TokensMissing)]
        );
        // The token with no id names no customer, and the customers cannot be counted.
        let unnamed = [
            page_of(&[(Some("A"), Some("a")), (Some("X"), None)], Some(2)),
            listed(&["a"], Some(2)),
        ];
        assert_eq!(
            scan("X", 100, &unnamed),
            [
                ScanStep::Continue,
                ScanStep::Incomplete(Incomplete::IdsMissing)
            ]
        );
    }

    #[test]
    fn a_list_without_a_count_never_shows_that_nobody_holds_the_token() {
        let pages = [listed(&["a", "b"], None), listed(&["a", "b"], None)];
        assert_eq!(
            scan("X", 100, &pages),
            [
                ScanStep::Continue,
                ScanStep::Incomplete(Incomplete::NoCount)
            ]
        );
        let mut v1 = OwnerScan::new("X", 100);
        assert_eq!(v1.read(&listed(&["a"], None)), ScanStep::Continue);
        assert_eq!(v1.without_more_pages(), Incomplete::NoCount);
    }

    #[test]
    fn the_search_stops_after_its_most_pages() {
        let pages = [listed(&["a"], Some(5)), listed(&["b"], Some(5))];
        assert_eq!(
            scan("X", 2, &pages)[1],
            ScanStep::Incomplete(Incomplete::TooManyPages(2))
        );
    }
}
