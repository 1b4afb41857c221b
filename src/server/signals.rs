//! The signals the shim takes over as it starts: SIGHUP reloads, SIGTERM and SIGINT drain.

use std::sync::Arc;

use crate::server::reload::Trigger;
use crate::server::reloading::Reloads;

/// The target of this file's events: the module they were logged from before it was split
/// into files, which log filters and queries name.
const LOG_TARGET: &str = "explo_shim::server";

/// SIGHUP, taken over as the process starts ([`Hangups::register`], called by `main` before
/// it reads the config). Its default action ends the process (exit 129), and log rotators,
/// supervisors and shells without `nohup` send it, so it must never reach a shim unwatched.
/// Each one reloads the config file ([`crate::server::reload`]).
pub struct Hangups {
    #[cfg(unix)]
    signal: Option<tokio::signal::unix::Signal>,
}

impl Hangups {
    /// Takes over SIGHUP's disposition; must be called inside the runtime.
    pub fn register() -> Self {
        #[cfg(unix)]
        {
            let signal = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
                .map_err(|error| tracing::warn!(target: LOG_TARGET, %error, "cannot watch SIGHUP"))
                .ok();
            Self { signal }
        }
        #[cfg(not(unix))]
        Self {}
    }

    /// Answers every SIGHUP until aborted, one reload at a time with the file watch's.
    pub(super) async fn handle(self, reloads: Arc<Reloads>) {
        #[cfg(unix)]
        {
            let Some(mut hangups) = self.signal else {
                return;
            };
            while hangups.recv().await.is_some() {
                tracing::info!(target: LOG_TARGET, "SIGHUP: reloading the configuration");
                // The files are read on a blocking thread, with no lock held: this thread
                // also answers the probes and the stop signals, and a FIFO or a hung mount
                // must not take them with it. Each read has its own clock, so this ends.
                // SIGHUP always reads the files: there is always something to do.
                let _ = reloads.reload(Trigger::Hangup).await;
            }
        }
        #[cfg(not(unix))]
        let _ = (self, reloads);
    }
}

/// SIGTERM (orchestrators) and SIGINT (a terminal), taken over at once, before anything
/// listens, so that a signal sent as soon as the shim says it listens drains it instead of
/// killing it. The first one starts the shutdown; a second one skips what is left of
/// `shutdown.delay`.
pub struct StopSignals {
    received: tokio::sync::mpsc::UnboundedReceiver<()>,
}

impl StopSignals {
    /// Must be called inside the runtime.
    pub fn register() -> Self {
        let (sender, received) = tokio::sync::mpsc::unbounded_channel();
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            match (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) {
                (Ok(mut terminate), Ok(mut interrupt)) => {
                    tokio::spawn(async move {
                        loop {
                            tokio::select! {
                                _ = terminate.recv() => {}
                                _ = interrupt.recv() => {}
                            }
                            if sender.send(()).is_err() {
                                return;
                            }
                        }
                    });
                }
                (Err(error), _) | (_, Err(error)) => {
                    // Stopping at once would be worse than not stopping on a signal: the
                    // orchestrator's SIGKILL still ends the process. The sender is kept, so
                    // the channel never reports a signal.
                    tracing::error!(target: LOG_TARGET, %error, "cannot watch SIGTERM and SIGINT; the shim stops only when killed");
                    std::mem::forget(sender);
                }
            }
        }
        #[cfg(not(unix))]
        tokio::spawn(async move {
            while tokio::signal::ctrl_c().await.is_ok() {
                if sender.send(()).is_err() {
                    return;
                }
            }
        });
        Self { received }
    }

    /// The next signal.
    pub(super) async fn next(&mut self) {
        if self.received.recv().await.is_none() {
            std::future::pending::<()>().await;
        }
    }
}
