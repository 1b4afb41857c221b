//! The admin listener's accept loop: a small cap of its own, the head timeout, the send clock.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::admin::{self, AdminState};
use crate::server::net::accept;
use crate::server::send_clock::SendClock;
use crate::server::{ADMIN_MAX_CONNECTIONS, ADMIN_MAX_HEAD_BYTES};

/// The admin endpoints, on the coordinating thread; stopped by aborting the task. Probes and
/// scrapers are few, so the listener has a small cap of its own ([`ADMIN_MAX_CONNECTIONS`];
/// past it, connections wait in the kernel backlog) and the main listener's head timeout,
/// which hyper also runs while a connection sends nothing at all and between keep-alive
/// requests: a client that stays silent or half-sends a head cannot hold a slot, or the
/// probes' way in, for longer than that. Heads are capped at [`ADMIN_MAX_HEAD_BYTES`]. Writes
/// run under the send clock ([`SendClock`]): a client that asks again and again and never
/// reads is cut off after `send_timeout`. HTTP/1.1 only: probes and scrapers speak it, and
/// nothing there needs HTTP/2. Each request is answered knowing its client's address, which
/// the failed-credential throttle counts by.
pub(super) async fn serve_admin(
    listener: TcpListener,
    state: AdminState,
    header_read_timeout: Duration,
    send_timeout: Duration,
) {
    let slots = Arc::new(Semaphore::new(ADMIN_MAX_CONNECTIONS));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .max_buf_size(ADMIN_MAX_HEAD_BYTES);
    loop {
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let (stream, client) = accept(&listener, "admin").await;
        let stream = SendClock::new(stream, send_timeout, state.metrics.send_timeouts());
        let state = state.clone();
        let service = service_fn(move |request| {
            let state = state.clone();
            async move { Ok::<_, Infallible>(admin::handle(request, &state, client.ip()).await) }
        });
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        tokio::spawn(async move {
            let _slot = slot;
            let _ = connection.await;
        });
    }
}
