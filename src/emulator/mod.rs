//! `explo-shim emulate`: an in-memory stand-in for Explo's Customer API, the way LocalStack
//! stands in for AWS. It lets a legacy integration be tested through the shim entirely offline
//! and without spending the real API's 180 requests per minute.
//!
//! [`store`] holds the data and the rules of each endpoint as pure functions; this module is
//! the HTTP face: authentication, the trailing-slash rule, routing and the optional rate limit.

pub mod hierarchy;
pub mod store;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::error::retry_after_seconds;
use crate::message::body::{ProxyBody, full_body};
use crate::upstream::budget::{Admission, UpstreamBudget};
pub use hierarchy::HierarchyLevels;
use store::{Reply, Store, V2_MAX_PAGE_SIZE};

/// Explo's documented limit (docs: security/rate-limits).
pub const EXPLO_RATE_LIMIT_PER_MINUTE: u32 = 180;
/// Largest request body the emulator reads.
const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The emulated API: its data, its optional rate limit and the faults it was told to show.
pub struct Emulator {
    store: Mutex<Store>,
    rate_limit: Option<UpstreamBudget>,
    faults: Faults,
}

/// Ways the emulator can misbehave, so that what a client sees when the real API does can be
/// tried offline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Fault {
    /// After a successful write (create, update, delete, refresh), the reply is not JSON; the
    /// write still happens.
    NonJsonAfterWrite,
    /// Customer lists (v1 and v2) leave each customer's token out.
    ListsWithoutTokens,
    /// The v1 list answers 410 Gone, as once it is retired.
    V1ListRetired,
    /// The v2 list ignores `page` and serves the first page whatever is asked, as a server
    /// whose paginator is misconfigured would.
    V2ListIgnoresPage,
    /// The v2 list serves at most 2 customers a page whatever `page_size` asks, as a server
    /// with a lower maximum than the documented 1,000 would.
    V2ListCapsPageSize,
    /// The v2 list is served only at `/api/v2/customers/` (explo-api.md §3.5, version B);
    /// `/v2/api/customers/` answers 404.
    V2ListOnlyAtApiV2,
}

/// The faults in effect.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Faults {
    pub non_json_after_write: bool,
    pub lists_without_tokens: bool,
    pub v1_list_retired: bool,
    pub v2_list_ignores_page: bool,
    pub v2_list_caps_page_size: bool,
    pub v2_list_only_at_api_v2: bool,
}

impl FromIterator<Fault> for Faults {
    fn from_iter<I: IntoIterator<Item = Fault>>(faults: I) -> Self {
        let mut all = Faults::default();
        for fault in faults {
            match fault {
                Fault::NonJsonAfterWrite => all.non_json_after_write = true,
                Fault::ListsWithoutTokens => all.lists_without_tokens = true,
                Fault::V1ListRetired => all.v1_list_retired = true,
                Fault::V2ListIgnoresPage => all.v2_list_ignores_page = true,
                Fault::V2ListCapsPageSize => all.v2_list_caps_page_size = true,
                Fault::V2ListOnlyAtApiV2 => all.v2_list_only_at_api_v2 = true,
            }
        }
        all
    }
}

/// What the emulator answers after a write when told to misbehave.
const NON_JSON_WRITE_REPLY: &str = "<html><body>OK</body></html>";
/// The largest v2 page under [`Fault::V2ListCapsPageSize`], in customers: small enough that a
/// test's handful of customers spans several pages.
const CAPPED_PAGE_SIZE: usize = 2;
/// The v2 path of the latest stored doc version, which [`Fault::V2ListOnlyAtApiV2`] hides.
const LIST_V2_LATEST_PATH: &str = "/v2/api/customers/";

/// The Customer endpoints, their method, and the store operation behind each.
#[derive(Clone, Copy)]
enum Endpoint {
    Create,
    Update,
    Get,
    Delete,
    Refresh,
    List,
    ListV2,
}

const ENDPOINTS: [(&str, Method, Endpoint); 8] = [
    ("/api/create_customer/", Method::POST, Endpoint::Create),
    ("/api/update_customer/", Method::POST, Endpoint::Update),
    ("/api/get_customer/", Method::POST, Endpoint::Get),
    ("/api/delete_customer/", Method::DELETE, Endpoint::Delete),
    (
        "/api/refresh_customer_token/",
        Method::POST,
        Endpoint::Refresh,
    ),
    ("/api/customers/", Method::GET, Endpoint::List),
    (LIST_V2_LATEST_PATH, Method::GET, Endpoint::ListV2),
    // One stored doc version puts the version after /api/; both answer the same.
    ("/api/v2/customers/", Method::GET, Endpoint::ListV2),
];

impl Emulator {
    /// `rate_limit_per_minute`: `None` for no limit, else requests per minute per emulator.
    pub fn new(rate_limit_per_minute: Option<u32>) -> Self {
        Self::with_faults(rate_limit_per_minute, Faults::default())
    }

    /// An emulator that misbehaves as `faults` say.
    pub fn with_faults(rate_limit_per_minute: Option<u32>, faults: Faults) -> Self {
        Self {
            store: Mutex::new(Store::default()),
            // The emulator never receives a 429, so the hold cap never applies.
            rate_limit: rate_limit_per_minute.map(|limit| {
                UpstreamBudget::new(limit, limit, Duration::ZERO, Duration::ZERO, Instant::now())
            }),
            faults,
        }
    }

    /// The same emulator for a team whose hierarchy levels are `levels` (highest first)
    /// instead of the default `Customer` > `User`, e.g.
    /// `Emulator::new(None).with_hierarchy_levels(levels)`. Meant for a new emulator: the
    /// customers it holds are left behind.
    pub fn with_hierarchy_levels(self, levels: HierarchyLevels) -> Self {
        Self {
            store: Mutex::new(Store::with_levels(levels)),
            ..self
        }
    }

    /// Answers one request.
    pub fn handle(
        &self,
        method: &Method,
        path: &str,
        query: Option<&str>,
        authorization: Option<&HeaderValue>,
        body: &[u8],
    ) -> Response<ProxyBody> {
        if let Some(limit) = &self.rate_limit
            && let Admission::Refuse { retry_after } = limit.admit(Instant::now())
        {
            let seconds = retry_after_seconds(retry_after);
            let mut response = json_response(
                429,
                json!({"detail": format!("Request was throttled. Expected available in {seconds} seconds.")}),
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            return response;
        }
        let served = |path: &str| {
            let hidden = self.faults.v2_list_only_at_api_v2 && path == LIST_V2_LATEST_PATH;
            route(path).filter(|_| !hidden)
        };
        let Some((endpoint_method, endpoint)) = served(path) else {
            return if served(&format!("{path}/")).is_some() {
                // The docs: without the trailing slash, "Method not allowed".
                json_response(405, json!({"detail": "Method not allowed"}))
            } else {
                json_response(404, json!({"detail": "Not found."}))
            };
        };
        if *method != endpoint_method {
            return json_response(
                405,
                json!({"detail": format!("Method \"{method}\" not allowed.")}),
            );
        }
        let authorized = authorization
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Token "))
            .is_some_and(|token| !token.trim().is_empty());
        if !authorized {
            return json_response(
                401,
                json!({"detail": "Authentication credentials were not provided."}),
            );
        }
        let body: Value = if body.iter().all(u8::is_ascii_whitespace) {
            json!({})
        } else {
            match serde_json::from_slice(body) {
                Ok(value @ Value::Object(_)) => value,
                _ => {
                    return json_response(
                        400,
                        json!({"success": 0, "error": "the body must be a JSON object"}),
                    );
                }
            }
        };
        if self.faults.v1_list_retired && matches!(endpoint, Endpoint::List) {
            return json_response(410, json!({"detail": "This endpoint has been retired."}));
        }
        let mut query: BTreeMap<String, String> =
            form_urlencoded::parse(query.unwrap_or("").as_bytes())
                .into_owned()
                .collect();
        if self.faults.v2_list_ignores_page && matches!(endpoint, Endpoint::ListV2) {
            query.remove("page");
        }
        let max_page_size = if self.faults.v2_list_caps_page_size {
            CAPPED_PAGE_SIZE
        } else {
            V2_MAX_PAGE_SIZE
        };
        let mut store = self
            .store
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let reply: Result<Reply, Reply> = match endpoint {
            Endpoint::Create => store.create(&body),
            Endpoint::Update => store.update(&body),
            Endpoint::Get => store.get(&body),
            Endpoint::Delete => store.delete(&body),
            Endpoint::Refresh => store.refresh_token(&body),
            Endpoint::List => store.list(&query),
            Endpoint::ListV2 => store.list_v2(&query, max_page_size),
        };
        let (status, mut body) = reply.unwrap_or_else(|refusal| refusal);
        let is_write = matches!(
            endpoint,
            Endpoint::Create | Endpoint::Update | Endpoint::Delete | Endpoint::Refresh
        );
        if self.faults.non_json_after_write && is_write && (200..300).contains(&status) {
            let mut response = Response::new(full_body(NON_JSON_WRITE_REPLY));
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
            return response;
        }
        if self.faults.lists_without_tokens && matches!(endpoint, Endpoint::List | Endpoint::ListV2)
        {
            remove_tokens(&mut body);
        }
        json_response(status, body)
    }
}

/// Takes `token` out of every customer in a v1 or v2 list reply.
fn remove_tokens(list: &mut Value) {
    let customers = match list.get_mut("customers") {
        Some(customers) => Some(customers),
        None => list
            .get_mut("results")
            .and_then(|results| results.get_mut("customers")),
    };
    if let Some(Value::Array(customers)) = customers {
        for customer in customers {
            if let Value::Object(fields) = customer {
                fields.remove("token");
            }
        }
    }
}

fn route(path: &str) -> Option<(Method, Endpoint)> {
    ENDPOINTS
        .iter()
        .find(|(endpoint_path, _, _)| *endpoint_path == path)
        .map(|(_, method, endpoint)| (method.clone(), *endpoint))
}

fn json_response(status: u16, body: Value) -> Response<ProxyBody> {
    let mut response = Response::new(full_body(body.to_string()));
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

async fn answer(emulator: &Emulator, request: Request<Incoming>) -> Response<ProxyBody> {
    let (parts, body) = request.into_parts();
    let body = match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return json_response(
                413,
                json!({"success": 0, "error": "request body too large or incomplete"}),
            );
        }
    };
    emulator.handle(
        &parts.method,
        parts.uri.path(),
        parts.uri.query(),
        parts.headers.get("explo-authorization"),
        &body,
    )
}

/// Serves the emulator on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    emulator: Arc<Emulator>,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            accepted = crate::server::net::accept(&listener, "emulator") => accepted,
            () = &mut shutdown => return,
        };
        let emulator = Arc::clone(&emulator);
        let service = service_fn(move |request| {
            let emulator = Arc::clone(&emulator);
            async move { Ok::<_, Infallible>(answer(&emulator, request).await) }
        });
        tokio::spawn(async move {
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    const TOKEN: HeaderValue = HeaderValue::from_static("Token team");

    fn body_bytes(bytes: &Bytes) -> Value {
        serde_json::from_slice(bytes).unwrap_or(Value::Null)
    }

    async fn call(emulator: &Emulator, method: Method, path: &str, body: &str) -> (u16, Value) {
        let response = emulator.handle(&method, path, None, Some(&TOKEN), body.as_bytes());
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, body_bytes(&bytes))
    }

    #[tokio::test]
    async fn the_trailing_slash_rule_and_methods() {
        let emulator = Emulator::new(None);
        assert_eq!(
            call(&emulator, Method::POST, "/api/create_customer", "{}")
                .await
                .0,
            405
        );
        assert_eq!(
            call(&emulator, Method::GET, "/api/create_customer/", "")
                .await
                .0,
            405
        );
        assert_eq!(
            call(&emulator, Method::POST, "/api/nothing/", "{}").await.0,
            404
        );
        assert_eq!(
            call(
                &emulator,
                Method::POST,
                "/api/create_customer/",
                r#"{"provided_id": "a"}"#
            )
            .await
            .0,
            200
        );
    }

    #[tokio::test]
    async fn the_token_header_is_required() {
        let emulator = Emulator::new(None);
        for authorization in [
            None,
            Some(HeaderValue::from_static("Bearer x")),
            Some(HeaderValue::from_static("Token ")),
        ] {
            let response = emulator.handle(
                &Method::GET,
                "/api/customers/",
                None,
                authorization.as_ref(),
                b"",
            );
            assert_eq!(response.status(), 401);
        }
    }

    #[tokio::test]
    async fn the_rate_limit_answers_429_with_retry_after() {
        let emulator = Emulator::new(Some(2));
        assert_eq!(
            call(&emulator, Method::GET, "/api/customers/", "").await.0,
            200
        );
        assert_eq!(
            call(&emulator, Method::GET, "/api/customers/", "").await.0,
            200
        );
        let response = emulator.handle(&Method::GET, "/api/customers/", None, Some(&TOKEN), b"");
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers()[header::RETRY_AFTER], "30");
    }

    #[tokio::test]
    async fn faults_misbehave_as_told_and_the_write_still_happens() {
        let faults = [
            Fault::NonJsonAfterWrite,
            Fault::ListsWithoutTokens,
            Fault::V1ListRetired,
        ]
        .into_iter()
        .collect();
        let emulator = Emulator::with_faults(None, faults);
        let created = emulator.handle(
            &Method::POST,
            "/api/create_customer/",
            None,
            Some(&TOKEN),
            br#"{"provided_id": "a"}"#,
        );
        assert_eq!(created.status(), 200);
        let body = created.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], NON_JSON_WRITE_REPLY.as_bytes());
        let (status, listed) = call(&emulator, Method::GET, "/v2/api/customers/", "").await;
        assert_eq!(status, 200);
        assert_eq!(listed["results"]["customers"][0]["provided_id"], "a");
        assert!(listed["results"]["customers"][0].get("token").is_none());
        assert_eq!(
            call(&emulator, Method::GET, "/api/customers/", "").await.0,
            410
        );
        let (status, got) = call(
            &emulator,
            Method::POST,
            "/api/get_customer/",
            r#"{"provided_id": "a"}"#,
        )
        .await;
        assert_eq!(status, 200, "reads are not writes");
        assert!(got["customer"]["token"].is_string());
    }

    /// The `provided_id`s of one v2 page at `path?query`.
    async fn create_customers(emulator: &Emulator, provided_ids: &[&str]) {
        for id in provided_ids {
            call(
                emulator,
                Method::POST,
                "/api/create_customer/",
                &format!(r#"{{"provided_id": "{id}"}}"#),
            )
            .await;
        }
    }

    async fn v2_page(emulator: &Emulator, path: &str, query: &str) -> (u16, Vec<String>) {
        let response = emulator.handle(&Method::GET, path, Some(query), Some(&TOKEN), b"");
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let ids = body_bytes(&bytes)["results"]["customers"]
            .as_array()
            .map(|customers| {
                customers
                    .iter()
                    .map(|c| c["provided_id"].as_str().unwrap().to_owned())
                    .collect()
            })
            .unwrap_or_default();
        (status, ids)
    }

    #[tokio::test]
    async fn v2_list_faults_change_the_pages_and_the_path() {
        let faults = [
            Fault::V2ListIgnoresPage,
            Fault::V2ListCapsPageSize,
            Fault::V2ListOnlyAtApiV2,
        ]
        .into_iter()
        .collect();
        let emulator = Emulator::with_faults(None, faults);
        create_customers(&emulator, &["a", "b", "c"]).await;
        let first = v2_page(&emulator, "/api/v2/customers/", "page=1&page_size=1000").await;
        assert_eq!(first, (200, vec!["a".to_owned(), "b".to_owned()]));
        let second = v2_page(&emulator, "/api/v2/customers/", "page=2&page_size=1000").await;
        assert_eq!(second, first, "`page` is ignored");
        assert_eq!(
            v2_page(&emulator, "/v2/api/customers/", "page=1").await.0,
            404
        );
        assert_eq!(
            call(&emulator, Method::GET, "/api/customers/", "").await.0,
            200,
            "v1 is left alone: v1-list-retired says otherwise"
        );

        let capped_only =
            Emulator::with_faults(None, [Fault::V2ListCapsPageSize].into_iter().collect());
        create_customers(&capped_only, &["a", "b", "c"]).await;
        let second = v2_page(&capped_only, "/v2/api/customers/", "page=2&pageSize=1000").await;
        assert_eq!(second, (200, vec!["c".to_owned()]));
    }

    #[tokio::test]
    async fn list_filters_come_from_the_query_string() {
        let emulator = Emulator::new(None);
        call(
            &emulator,
            Method::POST,
            "/api/create_customer/",
            r#"{"provided_id": "org"}"#,
        )
        .await;
        call(&emulator, Method::POST, "/api/create_customer/",
             r#"{"provided_id": "kid", "parent_provided_id": "org", "hierarchy_level_name": "User"}"#).await;
        let response = emulator.handle(
            &Method::GET,
            "/api/customers/",
            Some("parent_provided_id=org"),
            Some(&TOKEN),
            b"",
        );
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let customers = body_bytes(&bytes)["customers"].as_array().unwrap().clone();
        assert_eq!(customers.len(), 1);
        assert_eq!(customers[0]["provided_id"], "kid");
    }
}
