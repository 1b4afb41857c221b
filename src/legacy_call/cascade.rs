//! The cascade guard: a legacy delete goes ahead only once the shim has established that the
//! customer has no children, because the Customer delete also deletes them (explo-api.md §3.6)
//! and the legacy delete never did. Whatever cannot be established refuses the delete
//! ([`ShimError::CascadeUnverified`]); a refusal by the upstream (401, 403, 429, 5xx) is the
//! client's answer. Nothing is deleted in either case.
//!
//! The check is made cheap:
//! - **Whose token?** The customer last seen holding the token ([`super::token_owners`]),
//!   confirmed with one `get_customer`; only when that fails, the customer list, v2 page by
//!   page, then v1.
//! - **Any children?** One filtered v2 call (`parent_provided_id`, one result is enough); the
//!   v1 filtered list only when v2 does not answer.

use http::{Method, StatusCode};

use super::{CustomerApi, Precheck};
use crate::error::ShimError;
use crate::legacy::lists::{ListPage, customer_list_page};
use crate::upstream::CollectedReply;

const LIST_V1: &str = "/api/customers/";
/// The latest stored doc version's v2 path (explo-api.md §3.5, version A).
const LIST_V2: &str = "/v2/api/customers/";
/// The documented maximum page size.
const PAGE_SIZE: u32 = 1000;
/// At most this many pages are read looking for a token (100,000 customers); each page is one
/// call against the upstream budget.
const MAX_PAGES: u32 = 100;

/// Whether a list endpoint is absent (not deployed, retired), as opposed to refusing the call.
fn not_served(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::NOT_FOUND
            | StatusCode::METHOD_NOT_ALLOWED
            | StatusCode::GONE
            | StatusCode::NOT_IMPLEMENTED
    )
}

/// What a list call said.
enum Listed {
    Page(ListPage),
    /// The endpoint is absent or its reply is not a list: ask elsewhere.
    Unusable,
    Refused(CollectedReply),
}

async fn list(
    api: &CustomerApi<'_>,
    lookup: &'static str,
    target: &str,
) -> Result<Listed, ShimError> {
    let reply = api.lookup(lookup, &Method::GET, target, None).await?;
    if not_served(reply.status) {
        return Ok(Listed::Unusable);
    }
    if !reply.status.is_success() {
        return Ok(Listed::Refused(reply));
    }
    Ok(api
        .decoded_success(&reply)
        .and_then(|body| customer_list_page(&body))
        .map_or(Listed::Unusable, Listed::Page))
}

fn query(pairs: &[(&str, &str)]) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (key, value) in pairs {
        query.append_pair(key, value);
    }
    query.finish()
}

/// Who holds a token.
pub(super) enum Owner {
    Customer(String),
    /// The whole v2 list, every entry with its token, has no customer holding it: the delete
    /// cannot delete anything, and the upstream's own answer is the right one for the client.
    Nobody,
}

/// The `provided_id` of the customer holding `token`.
pub(super) async fn owner_of(
    api: &CustomerApi<'_>,
    token: &str,
) -> Result<Precheck<Owner>, ShimError> {
    let owners = &api.calls.owners;
    if let Some(seen) = owners.get(token) {
        // Confirmed, never trusted: a rename or a rotation elsewhere would make the hint name
        // another customer, and the children check would then look at the wrong one.
        if let Precheck::Proceed(current) = api.token_of(&seen, "owner_check").await?
            && current == token
        {
            return Ok(Precheck::Proceed(Owner::Customer(seen)));
        }
        owners.forget(token);
    }
    let mut tokens_missing = false;
    let found = match find_in_v2(api, token, &mut tokens_missing).await? {
        Search::Found(owner) => Some(owner),
        Search::Refused(reply) => return Ok(Precheck::Answer(reply)),
        Search::Absent => return Ok(Precheck::Proceed(Owner::Nobody)),
        Search::NotFound => match list(api, "list_v1", LIST_V1).await? {
            Listed::Refused(reply) => return Ok(Precheck::Answer(reply)),
            Listed::Page(page) => find(&page, token, &mut tokens_missing),
            Listed::Unusable => None,
        },
    };
    if let Some(owner) = found {
        owners.remember(token, &owner);
        return Ok(Precheck::Proceed(Owner::Customer(owner)));
    }
    api.calls.metrics.cascade_unverified();
    Err(ShimError::CascadeUnverified {
        reason: if tokens_missing {
            "the customer list leaves tokens out, so the token's customer is unknown"
        } else {
            "the token's customer is not in the customer list"
        }
        .to_owned(),
    })
}

enum Search {
    Found(String),
    /// Not in the list, and the list is provably whole: every page read up to its
    /// `total_count`, every entry with a token.
    Absent,
    /// Not found, and the list cannot say more (no count, tokens left out, not a list).
    NotFound,
    Refused(CollectedReply),
}

/// Reads the v2 list page by page until the token turns up.
async fn find_in_v2(
    api: &CustomerApi<'_>,
    token: &str,
    tokens_missing: &mut bool,
) -> Result<Search, ShimError> {
    let size = PAGE_SIZE.to_string();
    let mut read = 0u64;
    let mut previous_first = None;
    for page_number in 1..=MAX_PAGES {
        let number = page_number.to_string();
        let target = format!(
            "{LIST_V2}?{}",
            query(&[("page", &number), ("page_size", &size), ("pageSize", &size)])
        );
        let page = match list(api, "list_v2_page", &target).await? {
            Listed::Page(page) => page,
            Listed::Unusable => return Ok(Search::NotFound),
            Listed::Refused(reply) => return Ok(Search::Refused(reply)),
        };
        if let Some(owner) = find(&page, token, tokens_missing) {
            return Ok(Search::Found(owner));
        }
        read += page.customers.len() as u64;
        if page.total.is_some_and(|total| read >= total) {
            return Ok(if *tokens_missing {
                Search::NotFound
            } else {
                Search::Absent
            });
        }
        // A server that ignores `page` repeats the first page; stop rather than loop.
        let first = page.customers.first().cloned();
        if page.customers.is_empty() || (page_number > 1 && first == previous_first) {
            break;
        }
        previous_first = first;
    }
    Ok(Search::NotFound)
}

fn find(page: &ListPage, token: &str, tokens_missing: &mut bool) -> Option<String> {
    let mut found = None;
    for customer in &page.customers {
        match &customer.token {
            Some(listed) if listed == token => found = customer.provided_id.clone(),
            Some(_) => {}
            None => *tokens_missing = true,
        }
        if found.is_some() {
            break;
        }
    }
    found
}

/// How many children a filtered list shows; `None` when the list lists the customer itself,
/// which a filter by parent never does: the server ignored the filter, and the list says
/// nothing about children.
fn children_in(page: &ListPage, provided_id: &str) -> Option<usize> {
    if page
        .customers
        .iter()
        .any(|customer| customer.provided_id.as_deref() == Some(provided_id))
    {
        return None;
    }
    let listed = page.customers.len();
    Some(
        page.total
            .and_then(|total| usize::try_from(total).ok())
            .map_or(listed, |total| total.max(listed)),
    )
}

/// Refuses the delete when `provided_id` has children.
pub(super) async fn check_no_children(
    api: &CustomerApi<'_>,
    provided_id: &str,
) -> Result<Precheck<()>, ShimError> {
    let v2 = format!(
        "{LIST_V2}?{}",
        query(&[
            ("parent_provided_id", provided_id),
            ("parentProvidedId", provided_id),
            ("page", "1"),
            ("page_size", "1"),
            ("pageSize", "1"),
        ])
    );
    let v1 = format!(
        "{LIST_V1}?{}",
        query(&[("parent_provided_id", provided_id)])
    );
    let mut children = None;
    for (lookup, target) in [("children_v2", &v2), ("children_v1", &v1)] {
        match list(api, lookup, target).await? {
            Listed::Refused(reply) => return Ok(Precheck::Answer(reply)),
            Listed::Page(page) => {
                children = children_in(&page, provided_id);
                if children.is_some() {
                    break;
                }
            }
            Listed::Unusable => {}
        }
    }
    match children {
        Some(0) => Ok(Precheck::Proceed(())),
        Some(children) => {
            api.calls.metrics.cascade_refused();
            Err(ShimError::DeleteWouldCascade {
                provided_id: provided_id.to_owned(),
                children,
            })
        }
        None => {
            api.calls.metrics.cascade_unverified();
            Err(ShimError::CascadeUnverified {
                reason: "no customer list answered the children check with a filtered list"
                    .to_owned(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::legacy::lists::ListedCustomer;

    fn page(ids: &[&str], total: Option<u64>) -> ListPage {
        ListPage {
            customers: ids
                .iter()
                .map(|id| ListedCustomer {
                    token: None,
                    provided_id: Some((*id).to_owned()),
                })
                .collect(),
            total,
        }
    }

    #[test]
    fn a_filtered_page_counts_children_and_an_unfiltered_one_says_nothing() {
        assert_eq!(children_in(&page(&[], Some(0)), "p"), Some(0));
        assert_eq!(children_in(&page(&["kid"], Some(7)), "p"), Some(7));
        assert_eq!(children_in(&page(&["a", "b"], None), "p"), Some(2));
        // The customer itself in a list filtered by parent: the filter was ignored.
        assert_eq!(children_in(&page(&["p"], Some(40)), "p"), None);
    }
}
