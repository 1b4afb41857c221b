//! The deprecated End User Group surface and its mapping onto the Customer API.
//!
//! | legacy call                            | Customer call                       | request              | reply                                   |
//! |----------------------------------------|-------------------------------------|----------------------|-----------------------------------------|
//! | `POST /api/create_user_group/`         | `POST /api/create_customer/`        | `user_group_id` → `provided_id` | `new_customer` → `new_user_group`, `customer` → `user_group` |
//! | `POST /api/update_user_group/`         | `POST /api/update_customer/`        | `user_group_id` → `provided_id` | `customer` → `user_group`       |
//! | `DELETE /api/delete_user_group/`       | `DELETE /api/delete_customer/`      | `current_token` only; by `user_group_id` only: token looked up with `POST /api/get_customer/`; refused if the customer has children | unchanged |
//! | `POST /api/refresh_user_group_token/`  | `POST /api/refresh_customer_token/` | `current_token` only | `customer` → `user_group`               |
//!
//! Every `user_group` carries the documented legacy keys (`team_id`, `token`, `name`,
//! `provided_id`, `is_demo_group`, `properties`, `api_environment_tag`), `null` where the
//! Customer API has no value.
//!
//! [`ROUTES`](route::ROUTES) holds everything else that differs per route (documentation pages, call plan,
//! reply shape, migration notes); the rest of the crate reads it rather than matching on
//! routes. The route table itself and path recognition live below this module, in
//! [`crate::legacy::route`], so that the error type can name routes without depending on translation. Translation
//! itself is pure: [`request`] and [`reply`] are
//! functions from bytes to bytes with no I/O, over the borrowed JSON members of [`json`].

pub mod json;
pub mod lists;
pub mod reply;
pub mod request;
pub mod retirement;
pub mod route;
