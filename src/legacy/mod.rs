//! The deprecated End User Group surface and its mapping onto the Customer API.
//!
//! | legacy call                            | Customer call                       | request              | reply                                   |
//! |----------------------------------------|-------------------------------------|----------------------|-----------------------------------------|
//! | `POST /api/create_user_group/`         | `POST /api/create_customer/`        | `user_group_id` → `provided_id` | `new_customer` → `new_user_group`, `customer` → `user_group` |
//! | `POST /api/update_user_group/`         | `POST /api/update_customer/`        | `user_group_id` → `provided_id` | `customer` → `user_group`       |
//! | `DELETE /api/delete_user_group/`       | `DELETE /api/delete_customer/`      | unchanged; by `user_group_id` only: token looked up with `POST /api/get_customer/` | unchanged |
//! | `POST /api/refresh_user_group_token/`  | `POST /api/refresh_customer_token/` | unchanged            | `customer` → `user_group`               |
//!
//! Each legacy path also matches without its trailing slash and under the oldest `/embed/`
//! prefix (Explo docs S3/S4). Translation itself is pure: [`request`] and [`reply`] are
//! functions from bytes to bytes with no I/O, over the borrowed JSON members of [`json`].

pub mod json;
pub mod reply;
pub mod request;

use http::Method;

/// One of the four deprecated End User Group endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LegacyRoute {
    CreateUserGroup,
    UpdateUserGroup,
    DeleteUserGroup,
    RefreshUserGroupToken,
}

/// The route table: legacy method and endpoint name, and the Customer endpoint it became.
struct RouteSpec {
    route: LegacyRoute,
    method: Method,
    legacy_endpoint: &'static str,
    customer_path: &'static str,
    customer_endpoint: &'static str,
}

static ROUTES: [RouteSpec; 4] = [
    RouteSpec {
        route: LegacyRoute::CreateUserGroup,
        method: Method::POST,
        legacy_endpoint: "create_user_group",
        customer_path: "/api/create_customer/",
        customer_endpoint: "create_customer",
    },
    RouteSpec {
        route: LegacyRoute::UpdateUserGroup,
        method: Method::POST,
        legacy_endpoint: "update_user_group",
        customer_path: "/api/update_customer/",
        customer_endpoint: "update_customer",
    },
    RouteSpec {
        route: LegacyRoute::DeleteUserGroup,
        method: Method::DELETE,
        legacy_endpoint: "delete_user_group",
        customer_path: "/api/delete_customer/",
        customer_endpoint: "delete_customer",
    },
    RouteSpec {
        route: LegacyRoute::RefreshUserGroupToken,
        method: Method::POST,
        legacy_endpoint: "refresh_user_group_token",
        customer_path: "/api/refresh_customer_token/",
        customer_endpoint: "refresh_customer_token",
    },
];

/// The Customer endpoint a delete-by-id uses to find the customer's token first.
pub const GET_CUSTOMER_PATH: &str = "/api/get_customer/";

/// Path prefixes legacy clients use: the current `/api/` and the oldest `/embed/`.
const LEGACY_PREFIXES: [&str; 2] = ["/api/", "/embed/"];

impl LegacyRoute {
    /// Every legacy route, in table order.
    pub const ALL: [LegacyRoute; 4] = [
        Self::CreateUserGroup,
        Self::UpdateUserGroup,
        Self::DeleteUserGroup,
        Self::RefreshUserGroupToken,
    ];

    /// The legacy route for this method and path, if it is one. The query string is not part
    /// of `path`. Anything else (including a legacy path with another method) passes through.
    pub fn recognise(method: &Method, path: &str) -> Option<Self> {
        let endpoint = LEGACY_PREFIXES
            .iter()
            .find_map(|prefix| path.strip_prefix(prefix))?;
        let endpoint = endpoint.strip_suffix('/').unwrap_or(endpoint);
        ROUTES
            .iter()
            .find(|spec| spec.legacy_endpoint == endpoint && spec.method == method)
            .map(|spec| spec.route)
    }

    fn spec(self) -> &'static RouteSpec {
        // The table holds every variant, in the order of `ALL`.
        &ROUTES[self as usize]
    }

    /// The legacy endpoint name, e.g. `update_user_group`.
    pub fn legacy_endpoint(self) -> &'static str {
        self.spec().legacy_endpoint
    }

    /// The Customer API path it is translated to, always with the trailing slash the API
    /// requires ("Method not allowed" otherwise, Explo overview page).
    pub fn customer_path(self) -> &'static str {
        self.spec().customer_path
    }

    /// The Customer endpoint name, e.g. `update_customer`.
    pub fn customer_endpoint(self) -> &'static str {
        self.spec().customer_endpoint
    }

    /// The HTTP method of both the legacy and the Customer call.
    pub fn method(self) -> &'static Method {
        &self.spec().method
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_order_matches_all() {
        for route in LegacyRoute::ALL {
            assert_eq!(route.spec().route, route);
        }
    }

    #[test]
    fn recognises_every_prefix_and_slash_variant() {
        for route in LegacyRoute::ALL {
            let name = route.legacy_endpoint();
            for path in [
                format!("/api/{name}/"),
                format!("/api/{name}"),
                format!("/embed/{name}/"),
                format!("/embed/{name}"),
            ] {
                assert_eq!(
                    LegacyRoute::recognise(route.method(), &path),
                    Some(route),
                    "{path}"
                );
            }
        }
    }

    #[test]
    fn other_methods_and_paths_pass_through() {
        assert_eq!(
            LegacyRoute::recognise(&Method::GET, "/api/update_user_group/"),
            None
        );
        assert_eq!(
            LegacyRoute::recognise(&Method::POST, "/api/delete_user_group/"),
            None
        );
        assert_eq!(
            LegacyRoute::recognise(&Method::POST, "/api/update_customer/"),
            None
        );
        assert_eq!(
            LegacyRoute::recognise(&Method::POST, "/api/update_user_group//"),
            None
        );
        assert_eq!(
            LegacyRoute::recognise(&Method::POST, "/v2/api/update_user_group/"),
            None
        );
        assert_eq!(LegacyRoute::recognise(&Method::POST, "/api/"), None);
    }

    #[test]
    fn customer_endpoint_names_match_their_paths() {
        for route in LegacyRoute::ALL {
            assert_eq!(
                route.customer_path(),
                format!("/api/{}/", route.customer_endpoint())
            );
        }
    }

    #[test]
    fn customer_names_follow_the_docs() {
        assert_eq!(
            LegacyRoute::CreateUserGroup.customer_endpoint(),
            "create_customer"
        );
        assert_eq!(
            LegacyRoute::UpdateUserGroup.customer_path(),
            "/api/update_customer/"
        );
        assert_eq!(
            LegacyRoute::DeleteUserGroup.customer_endpoint(),
            "delete_customer"
        );
        assert_eq!(
            LegacyRoute::RefreshUserGroupToken.customer_endpoint(),
            "refresh_customer_token"
        );
    }
}
