//! The four deprecated End User Group routes as data: [`ROUTES`] holds everything that varies
//! per route (endpoint names, the Customer call, documentation pages, call plan, reply shape,
//! migration notes), and [`path`] recognises a route in a path as clients send it. Each legacy
//! path also matches without its trailing slash, under the oldest `/embed/` prefix (Explo docs
//! S3/S4), and in any equivalent spelling.
//!
//! This module sits low in the crate: [`crate::error`], [`crate::message::headers`] and
//! [`crate::legacy`] all read it, and it reads none of them.

pub mod path;

use http::Method;

/// One of the four deprecated End User Group endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LegacyRoute {
    CreateUserGroup,
    UpdateUserGroup,
    DeleteUserGroup,
    RefreshUserGroupToken,
}

/// How the legacy request names its customer, and so which calls it becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallPlan {
    /// By `user_group_id`, sent on as `provided_id`; one call with the client's other keys.
    ByGroupId,
    /// By `current_token`; only the Customer keys are sent.
    ByToken,
    /// By `current_token`, or by `user_group_id` alone: the token is then looked up first
    /// (`POST /api/get_customer/`), because the Customer call takes only the token.
    ByTokenOrGroupId,
}

/// What a successful Customer reply becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyShape {
    /// `customer` becomes the legacy `user_group`.
    UserGroup,
    /// As [`ReplyShape::UserGroup`], and `new_customer` becomes `new_user_group` (create).
    NewUserGroup,
    /// The same in both APIs (`{"success": 1}`).
    Unchanged,
}

/// The route table: everything that differs between the four routes, on one screen.
pub struct RouteSpec {
    pub route: LegacyRoute,
    /// The method of both the legacy and the Customer call.
    pub method: Method,
    /// The legacy endpoint name, e.g. `update_user_group`.
    pub legacy_endpoint: &'static str,
    /// A short name `explo-shim translate --endpoint` accepts too.
    pub short_name: &'static str,
    /// The Customer endpoint name, e.g. `update_customer`.
    pub customer_endpoint: &'static str,
    /// The Customer API path, always with the trailing slash the API requires ("Method not
    /// allowed" otherwise, Explo overview page).
    pub customer_path: &'static str,
    /// The page slug shared by the legacy and the Customer documentation page (`Link`).
    pub doc_slug: &'static str,
    pub plan: CallPlan,
    /// Whether the call is refused when the customer has children, because the Customer
    /// call cascades to them and the legacy call never did (`refuse_cascading_delete`).
    pub guards_against_cascade: bool,
    pub reply: ReplyShape,
    /// The semantic differences `explo-shim translate` prints.
    pub migration_notes: &'static [&'static str],
}

const REPLY_NOTE: &str = "The reply holds `customer` instead of `user_group`, with more keys \
    (emails, group_tags, access_group, hierarchy_level, computed_*); `team_id` and \
    `api_environment_tag` do not exist in the Customer API (`access_group` names a Data \
    Visibility Group, not an environment).";

pub static ROUTES: [RouteSpec; 4] = [
    RouteSpec {
        route: LegacyRoute::CreateUserGroup,
        method: Method::POST,
        legacy_endpoint: "create_user_group",
        short_name: "create",
        customer_endpoint: "create_customer",
        customer_path: "/api/create_customer/",
        doc_slug: "get-or-create",
        plan: CallPlan::ByGroupId,
        guards_against_cascade: false,
        reply: ReplyShape::NewUserGroup,
        migration_notes: &[
            "`user_group_id` is now `provided_id`.",
            "`new_user_group` is now `new_customer`. create_customer is get-or-create: an \
             existing customer is returned, and whether the other fields are applied to it is \
             not documented.",
            REPLY_NOTE,
        ],
    },
    RouteSpec {
        route: LegacyRoute::UpdateUserGroup,
        method: Method::POST,
        legacy_endpoint: "update_user_group",
        short_name: "update",
        customer_endpoint: "update_customer",
        customer_path: "/api/update_customer/",
        doc_slug: "update",
        plan: CallPlan::ByGroupId,
        guards_against_cascade: false,
        reply: ReplyShape::UserGroup,
        migration_notes: &[
            "`user_group_id` is now `provided_id` and selects the customer; only the fields \
             sent are updated. Whether `properties` is merged or replaced is not documented.",
            REPLY_NOTE,
        ],
    },
    RouteSpec {
        route: LegacyRoute::DeleteUserGroup,
        method: Method::DELETE,
        legacy_endpoint: "delete_user_group",
        short_name: "delete",
        customer_endpoint: "delete_customer",
        customer_path: "/api/delete_customer/",
        doc_slug: "delete",
        plan: CallPlan::ByTokenOrGroupId,
        guards_against_cascade: true,
        reply: ReplyShape::Unchanged,
        migration_notes: &[
            "CASCADE: delete_customer also deletes every descendant customer, which the legacy \
             delete never did. Check for children first with \
             GET /api/customers/?parent_provided_id=<provided_id>.",
            "The reply is `{\"success\": 1}` as before.",
        ],
    },
    RouteSpec {
        route: LegacyRoute::RefreshUserGroupToken,
        method: Method::POST,
        legacy_endpoint: "refresh_user_group_token",
        short_name: "refresh",
        customer_endpoint: "refresh_customer_token",
        customer_path: "/api/refresh_customer_token/",
        doc_slug: "refresh-token",
        plan: CallPlan::ByToken,
        guards_against_cascade: false,
        reply: ReplyShape::UserGroup,
        migration_notes: &[
            "The new token is `customer.token` in the reply.",
            REPLY_NOTE,
        ],
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

    /// The legacy route for this method and already normalised path, if it is one (see
    /// [`path::recognise`] for paths as clients send them). The query string is not part of
    /// `path`. Anything else (including a legacy path with another method) passes through.
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

    /// This route's row of the table.
    pub fn spec(self) -> &'static RouteSpec {
        // The table holds every variant, in the order of `ALL`.
        &ROUTES[self as usize]
    }

    /// The legacy endpoint name, e.g. `update_user_group`.
    pub fn legacy_endpoint(self) -> &'static str {
        self.spec().legacy_endpoint
    }

    /// The Customer API path it is translated to.
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

const DOCS: &str = "https://docs.explo.co/api-reference";

/// The Customer API page that replaces `route`.
pub fn successor_doc_url(route: LegacyRoute) -> String {
    format!("{DOCS}/customer-api/{}", route.spec().doc_slug)
}

/// The deprecated End User Group page for `route`.
pub fn legacy_doc_url(route: LegacyRoute) -> String {
    format!("{DOCS}/end-user-group-api/{}", route.spec().doc_slug)
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
