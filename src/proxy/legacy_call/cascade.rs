//! The cascade guard: a legacy delete goes ahead only once the shim has established that the
//! customer has no children, because the Customer delete also deletes them (explo-api.md §3.6)
//! and the legacy delete never did. Whatever cannot be established refuses the delete
//! ([`ShimError::CascadeUnverified`]); a refusal by the upstream (401, 403, 429, 5xx) is the
//! client's answer. Nothing is deleted in either case.
//!
//! The check is made cheap:
//! - **Whose token?** The customer last seen holding the token ([`super::token_owners`]),
//!   confirmed with one `get_customer`; only when that fails, the customer list, v2 page by
//!   page ([`OwnerScan`] keeps the count), then v1.
//! - **Any children?** One filtered v2 call (`parent_provided_id`, one result is enough); the
//!   v1 filtered list only when v2 does not answer.
//!
//! The stored docs put the v2 list at two paths (explo-api.md §3.5); both are asked, the one
//! that answered last first ([`V2ListPath`]).

use std::sync::atomic::{AtomicUsize, Ordering};

use http::{Method, StatusCode};

use super::{CustomerApi, Precheck};
use crate::error::ShimError;
use crate::legacy::lists::{Incomplete, ListPage, OwnerScan, ScanStep, customer_list_page};
use crate::upstream::CollectedReply;

const LIST_V1: &str = "/api/customers/";
/// The v2 list's paths in the stored doc versions (explo-api.md §3.5): versions A and C, then
/// version B. Which one is live is not documented.
const LIST_V2_PATHS: [&str; 2] = ["/v2/api/customers/", "/api/v2/customers/"];
/// The documented maximum page size. A server may serve fewer a page; the scan counts what
/// each page brings rather than assuming this many.
const PAGE_SIZE: u32 = 1000;
/// At most this many pages are read looking for a token (100,000 customers at the documented
/// page size); each page is one call against the upstream budget.
const MAX_PAGES: u32 = 100;

/// Which v2 path answered with a list last, shared by every serving thread, so that later
/// calls ask it first and a deployment at the second path pays for the first path's 404 once
/// per process, not on every delete. Only a hint: either order is correct, so a relaxed atomic
/// and no lock.
#[derive(Default)]
pub(super) struct V2ListPath {
    /// An index into [`LIST_V2_PATHS`].
    answered: AtomicUsize,
}

impl V2ListPath {
    /// The v2 paths, the one that answered last first.
    fn in_order(&self) -> [&'static str; 2] {
        let [first, second] = LIST_V2_PATHS;
        match self.answered.load(Ordering::Relaxed) {
            1 => [second, first],
            _ => [first, second],
        }
    }

    /// `path` answered with a list; anything but a v2 path is ignored.
    fn answered_at(&self, path: &str) {
        if let Some(index) = LIST_V2_PATHS.iter().position(|known| *known == path) {
            self.answered.store(index, Ordering::Relaxed);
        }
    }
}

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

/// `GET path?query`. A v2 path that answers with a list is remembered ([`V2ListPath`]).
async fn list(
    api: &CustomerApi<'_>,
    lookup: &'static str,
    path: &'static str,
    query: &str,
) -> Result<Listed, ShimError> {
    let target = if query.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{query}")
    };
    let reply = api.lookup(lookup, &Method::GET, &target, None).await?;
    if not_served(reply.status) {
        return Ok(Listed::Unusable);
    }
    if !reply.status.is_success() {
        return Ok(Listed::Refused(reply));
    }
    let Some(page) = api
        .decoded_success(&reply)
        .and_then(|body| customer_list_page(&body))
    else {
        return Ok(Listed::Unusable);
    };
    api.calls.v2_list_path.answered_at(path);
    Ok(Listed::Page(page))
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
    /// The whole v2 list, read to an unchanging `total_count` of distinct customers, each with
    /// its token, has no customer holding it: the delete cannot delete anything, and the
    /// upstream's own answer is the right one for the client.
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
    let found = |owner: String| {
        owners.remember(token, &owner);
        Ok(Precheck::Proceed(Owner::Customer(owner)))
    };
    let unsettled_in_v2 = match find_in_v2(api, token).await? {
        Search::Found(owner) => return found(owner),
        Search::Refused(reply) => return Ok(Precheck::Answer(reply)),
        Search::Absent => return Ok(Precheck::Proceed(Owner::Nobody)),
        Search::Unsettled(why) => why,
    };
    // The v1 list is one page of every customer: it can name the holder, but without a count
    // it never shows that nobody holds the token.
    let unsettled_in_v1 = match list(api, "list_v1", LIST_V1, "").await? {
        Listed::Refused(reply) => return Ok(Precheck::Answer(reply)),
        Listed::Page(page) => {
            let mut scan = OwnerScan::new(token, 1);
            if let ScanStep::Found(owner) = scan.read(&page) {
                return found(owner);
            }
            Some(scan.without_more_pages())
        }
        Listed::Unusable => None,
    };
    api.calls.metrics.cascade_unverified();
    Err(ShimError::CascadeUnverified {
        reason: unverified_reason(unsettled_in_v2, unsettled_in_v1),
    })
}

/// Why no list named the token's customer. Entries without tokens come first, since that is
/// what the operator can fix; then what the v2 search found, which v1 cannot make up for.
fn unverified_reason(v2: Option<Incomplete>, v1: Option<Incomplete>) -> String {
    match (v2, v1) {
        (_, Some(Incomplete::TokensMissing)) => Incomplete::TokensMissing.to_string(),
        (Some(why), _) | (None, Some(why)) => why.to_string(),
        (None, None) => "no customer list answered".to_owned(),
    }
}

enum Search {
    Found(String),
    /// Not in the list, and the list is provably whole ([`ScanStep::Absent`]).
    Absent,
    /// Not found, and the v2 list cannot say more; `None` when no v2 path served a list.
    Unsettled(Option<Incomplete>),
    Refused(CollectedReply),
}

/// Reads the v2 list page by page until [`OwnerScan`] settles the search, or stops it (at the
/// latest after [`MAX_PAGES`] pages).
async fn find_in_v2(api: &CustomerApi<'_>, token: &str) -> Result<Search, ShimError> {
    let size = PAGE_SIZE.to_string();
    let mut scan = OwnerScan::new(token, MAX_PAGES);
    let order = api.calls.v2_list_path.in_order();
    // Until a path serves the first page, the paths still to ask; then only that one, since
    // two deployments need not page alike.
    let mut paths = &order[..];
    let mut page_number = 1u32;
    loop {
        let Some(&path) = paths.first() else {
            return Ok(Search::Unsettled(None));
        };
        let number = page_number.to_string();
        let page_query = query(&[("page", &number), ("page_size", &size), ("pageSize", &size)]);
        let page = match list(api, "list_v2_page", path, &page_query).await? {
            Listed::Page(page) => page,
            Listed::Refused(reply) => return Ok(Search::Refused(reply)),
            Listed::Unusable if page_number == 1 => {
                paths = &paths[1..];
                continue;
            }
            Listed::Unusable => return Ok(Search::Unsettled(Some(Incomplete::PageUnreadable))),
        };
        paths = &paths[..1];
        match scan.read(&page) {
            ScanStep::Found(owner) => return Ok(Search::Found(owner)),
            ScanStep::Absent => return Ok(Search::Absent),
            ScanStep::Incomplete(why) => return Ok(Search::Unsettled(Some(why))),
            ScanStep::Continue => page_number += 1,
        }
    }
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
    let v2_query = query(&[
        ("parent_provided_id", provided_id),
        ("parentProvidedId", provided_id),
        ("page", "1"),
        ("page_size", "1"),
        ("pageSize", "1"),
    ]);
    let v1_query = query(&[("parent_provided_id", provided_id)]);
    let [v2_first, v2_second] = api.calls.v2_list_path.in_order();
    let mut children = None;
    for (lookup, path, filter) in [
        ("children_v2", v2_first, &v2_query),
        ("children_v2", v2_second, &v2_query),
        ("children_v1", LIST_V1, &v1_query),
    ] {
        match list(api, lookup, path, filter).await? {
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
    fn the_v2_path_that_answered_last_is_asked_first() {
        let path = V2ListPath::default();
        assert_eq!(path.in_order(), LIST_V2_PATHS);
        path.answered_at("/api/v2/customers/");
        assert_eq!(
            path.in_order(),
            ["/api/v2/customers/", "/v2/api/customers/"]
        );
        path.answered_at(LIST_V1);
        assert_eq!(path.in_order()[0], "/api/v2/customers/", "v1 is no v2 path");
        path.answered_at("/v2/api/customers/");
        assert_eq!(path.in_order(), LIST_V2_PATHS);
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
