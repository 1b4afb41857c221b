//! Deprecation signals on every legacy reply, errors included.
//!
//! - `Deprecation: @<unix-seconds>` (RFC 9745 §2.1: a Structured Fields Date, `@` followed by
//!   an integer). Not `true`, which older drafts used.
//! - `Link: <successor>; rel="successor-version", <legacy page>; rel="deprecation"` (RFC 9745
//!   §3 and RFC 8288): the Customer API page for the endpoint, and the page that documents the
//!   deprecation.
//! - `Sunset: <IMF-fixdate>` (RFC 8594 §3, the HTTP-date of RFC 9110 §5.6.7), only when
//!   configured. A Sunset before the deprecation date makes no sense and stops start-up.
//!
//! The values are built once per route at start-up; a request only clones them.

use std::time::{Duration, SystemTime};

use http::header::{HeaderName, LINK};
use http::{HeaderMap, HeaderValue};

use crate::legacy::route::{LegacyRoute, legacy_doc_url, successor_doc_url};

pub static DEPRECATION: HeaderName = HeaderName::from_static("deprecation");
pub static SUNSET: HeaderName = HeaderName::from_static("sunset");

/// 2025-10-15T00:00:00Z: the docs' sitemap date, when every End User Group page already
/// carried the deprecation notice.
pub const DEFAULT_DEPRECATION_DATE: Duration = Duration::from_secs(1_760_486_400);

/// A configuration problem with the dates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SunsetBeforeDeprecation;

/// The precomputed headers for each legacy route.
#[derive(Debug, Clone)]
pub struct DeprecationHeaders {
    deprecation: HeaderValue,
    sunset: Option<HeaderValue>,
    links: [HeaderValue; 4],
}

impl DeprecationHeaders {
    pub fn new(
        deprecated_at: SystemTime,
        sunset_at: Option<SystemTime>,
    ) -> Result<Self, SunsetBeforeDeprecation> {
        if sunset_at.is_some_and(|sunset| sunset < deprecated_at) {
            return Err(SunsetBeforeDeprecation);
        }
        let seconds = deprecated_at
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let links = LegacyRoute::ALL.map(|route| {
            let value = format!(
                "<{}>; rel=\"successor-version\", <{}>; rel=\"deprecation\"",
                successor_doc_url(route),
                legacy_doc_url(route)
            );
            // Built from constant ASCII URLs: always a valid header value.
            HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""))
        });
        Ok(Self {
            deprecation: HeaderValue::from_str(&format!("@{seconds}"))
                .unwrap_or_else(|_| HeaderValue::from_static("@0")),
            sunset: sunset_at
                .and_then(|at| HeaderValue::from_str(&httpdate::fmt_http_date(at)).ok()),
            links,
        })
    }

    /// Adds the signals for `route` to a reply's headers.
    pub fn apply(&self, route: LegacyRoute, headers: &mut HeaderMap) {
        headers.insert(&DEPRECATION, self.deprecation.clone());
        headers.append(LINK, self.links[route as usize].clone());
        if let Some(sunset) = &self.sunset {
            headers.insert(&SUNSET, sunset.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(seconds)
    }

    #[test]
    fn deprecation_is_an_sf_date_and_link_names_both_pages() {
        let signals =
            DeprecationHeaders::new(SystemTime::UNIX_EPOCH + DEFAULT_DEPRECATION_DATE, None)
                .unwrap();
        let mut headers = HeaderMap::new();
        signals.apply(LegacyRoute::UpdateUserGroup, &mut headers);
        assert_eq!(headers["deprecation"], "@1760486400");
        assert_eq!(
            headers["link"],
            "<https://docs.explo.co/api-reference/customer-api/update>; rel=\"successor-version\", \
             <https://docs.explo.co/api-reference/end-user-group-api/update>; rel=\"deprecation\""
        );
        assert!(headers.get("sunset").is_none());
    }

    #[test]
    fn each_route_links_its_own_successor() {
        let signals = DeprecationHeaders::new(at(0), None).unwrap();
        for (route, slug) in [
            (LegacyRoute::CreateUserGroup, "get-or-create"),
            (LegacyRoute::DeleteUserGroup, "delete"),
            (LegacyRoute::RefreshUserGroupToken, "refresh-token"),
        ] {
            let mut headers = HeaderMap::new();
            signals.apply(route, &mut headers);
            let link = headers["link"].to_str().unwrap();
            assert!(
                link.starts_with(&format!(
                    "<https://docs.explo.co/api-reference/customer-api/{slug}>"
                )),
                "{link}"
            );
        }
    }

    #[test]
    fn sunset_is_an_imf_fixdate() {
        // RFC 9110 §5.6.7's own example: Sun, 06 Nov 1994 08:49:37 GMT.
        let signals = DeprecationHeaders::new(at(0), Some(at(784_111_777))).unwrap();
        let mut headers = HeaderMap::new();
        signals.apply(LegacyRoute::CreateUserGroup, &mut headers);
        assert_eq!(headers["sunset"], "Sun, 06 Nov 1994 08:49:37 GMT");
    }

    #[test]
    fn existing_link_headers_are_kept() {
        let signals = DeprecationHeaders::new(at(0), None).unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(LINK, HeaderValue::from_static("<https://x>; rel=\"next\""));
        signals.apply(LegacyRoute::CreateUserGroup, &mut headers);
        assert_eq!(headers.get_all(LINK).iter().count(), 2);
    }

    #[test]
    fn a_sunset_before_the_deprecation_is_refused() {
        assert_eq!(
            DeprecationHeaders::new(at(100), Some(at(99))).unwrap_err(),
            SunsetBeforeDeprecation
        );
        assert!(DeprecationHeaders::new(at(100), Some(at(100))).is_ok());
    }
}
