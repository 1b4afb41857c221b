//! Accepting connections, shared by every listener in the crate (the main and admin listeners
//! and the emulator's). Low in the crate: it knows sockets, nothing of what is served on them.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

/// Pause after a failed `accept` (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(50);

/// The next connection on `listener`. An accept error (out of file descriptors, say) is
/// logged and waited out, never a busy loop: the main, admin and emulator listeners share it.
pub async fn accept(listener: &TcpListener, which: &'static str) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(accepted) => return accepted,
            Err(error) => {
                tracing::warn!(listener = which, %error, "accept failed");
                tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
            }
        }
    }
}
