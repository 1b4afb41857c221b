//! Subcommands beside the server:
//!
//! - [`translate`]: the migration assistant (legacy request in, Customer API call out).
//! - [`usage`]: the `/usage` migration report of a running shim, as a table or JSON, filtered
//!   by `--since` and ordered by `--sort`.
//! - [`healthcheck`]: probes the admin `/readyz` (the container's HEALTHCHECK).
//! - [`brownout_plan`]: a suggested brownout schedule and who it would affect.
//! - [`fingerprint`]: the client fingerprint of a credential read on stdin.
//! - [`completions`] and [`man`]: the shell completion scripts and the man page, generated from
//!   [`crate::cli`].
//! - `emulate`: the in-memory Customer API ([`crate::emulator`]).
//! - [`run`]: runs any of them from the command line, with its exit code.

pub mod brownout_plan;
pub mod completions;
pub mod fingerprint;
pub mod healthcheck;
pub mod man;
pub mod run;
pub mod translate;
pub mod usage;

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, StatusCode, Uri};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// How long the admin endpoint may take before a subcommand gives up.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The admin base URL given with `--admin URL` (a bare `host:port` means http).
pub fn admin_url_from_flag(url: &str) -> String {
    let url = url.trim_end_matches('/');
    if url.contains("://") {
        url.to_owned()
    } else {
        format!("http://{url}")
    }
}

/// The admin base URL for the configured admin address; an unspecified bind address
/// (0.0.0.0 in a container) is probed on loopback.
pub fn admin_url_for(configured: std::net::SocketAddr) -> String {
    let mut addr = configured;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    format!("http://{addr}")
}

/// GETs `url` from the admin listener, with `Authorization: <bearer>` where the listener asks
/// for its token: status and body, or a worded error.
pub async fn admin_get(
    url: &str,
    bearer: Option<&HeaderValue>,
) -> Result<(StatusCode, Bytes), String> {
    let uri: Uri = url
        .parse()
        .map_err(|error| format!("invalid admin URL {url}: {error}"))?;
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let exchange = async {
        let mut request = http::Request::get(uri);
        if let Some(bearer) = bearer {
            request = request.header(http::header::AUTHORIZATION, bearer);
        }
        let request = request
            .body(Empty::new())
            .map_err(|error| format!("invalid admin request to {url}: {error}"))?;
        let response = client
            .request(request)
            .await
            .map_err(|error| format!("cannot reach {url}: {error}"))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|error| format!("reading {url}: {error}"))?
            .to_bytes();
        Ok((status, body))
    };
    tokio::time::timeout(ADMIN_TIMEOUT, exchange)
        .await
        .map_err(|_| format!("{url} did not answer within {}s", ADMIN_TIMEOUT.as_secs()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_urls() {
        assert_eq!(
            admin_url_for("0.0.0.0:9901".parse().unwrap()),
            "http://127.0.0.1:9901"
        );
        assert_eq!(
            admin_url_for("10.0.0.5:9901".parse().unwrap()),
            "http://10.0.0.5:9901"
        );
        assert_eq!(
            admin_url_from_flag("10.1.2.3:9901/"),
            "http://10.1.2.3:9901"
        );
        assert_eq!(
            admin_url_from_flag("https://admin.internal"),
            "https://admin.internal"
        );
    }
}
