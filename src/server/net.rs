//! Accepting connections, shared by every listener in the crate (the main and admin listeners
//! and the emulator's). Low in the crate: it knows sockets, nothing of what is served on them.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

use crate::observe::log_summary::{LogSummary, Summary};

/// Pause after a failed `accept` (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(50);

/// Accept errors by listener: out of file descriptors, every serving thread fails every
/// [`ACCEPT_ERROR_BACKOFF`]; the first line of a second says so, then a count.
static ACCEPT_FAILURES: LogSummary = LogSummary::new(report_accept_failures);

fn report_accept_failures(summary: Summary) {
    tracing::warn!(
        listener = summary.kind,
        more = summary.more,
        over_ms = summary.over.as_millis() as u64,
        "accept failed: {} more like this",
        summary.more
    );
}

/// The next connection on `listener`. An accept error (out of file descriptors, say) is
/// logged and waited out, never a busy loop: the main, admin and emulator listeners share it.
pub async fn accept(listener: &TcpListener, which: &'static str) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(accepted) => return accepted,
            Err(error) => {
                if ACCEPT_FAILURES.admit(which) {
                    tracing::warn!(listener = which, %error, "accept failed");
                }
                tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
            }
        }
    }
}
