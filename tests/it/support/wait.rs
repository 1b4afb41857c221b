//! Waiting on what a test checks (a log line, a metric, a file, a process's exit) instead of a
//! fixed pause: the condition is asked again every few milliseconds until it holds or a
//! generous deadline passes, so a fast machine does not wait and a slow one does not fail.
//!
//! Time made to pass on purpose has its own two helpers, so that every fixed pause in the
//! tests is one of them and says which: [`pace`] (a slow peer is the stimulus) and
//! [`quiet_for`] (a check that something does not happen).

use std::future::Future;
use std::time::{Duration, Instant};

/// How often a condition is asked again.
const EVERY: Duration = Duration::from_millis(20);

/// Asks `check` until it gives a value, for at most `limit`; `None` if it never did. For
/// synchronous code (child processes, files); async tests use [`until`], which lets the test's
/// runtime (its upstreams) run meanwhile.
pub fn blocking_poll<T>(limit: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(found) = check() {
            return Some(found);
        }
        if Instant::now() >= deadline {
            return None;
        }
        // The poll's own pause: what is waited on happens in another process or thread.
        std::thread::sleep(EVERY);
    }
}

/// [`blocking_poll`], panicking with `failure` if `check` never gave a value.
pub fn blocking_until<T>(limit: Duration, failure: &str, check: impl FnMut() -> Option<T>) -> T {
    blocking_poll(limit, check).unwrap_or_else(|| panic!("{failure} (waited {limit:?})"))
}

/// Asks `check` until it gives `Ok`, for at most `limit`; then panics with its last `Err`,
/// which says how far things got.
pub async fn until_ok<T, F, Fut>(limit: Duration, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    until_ok_every(limit, EVERY, check).await
}

/// [`until_ok`], asking only `every` so often: for a check that is itself a request, which
/// the shim counts, logs or refuses.
pub async fn until_ok_every<T, F, Fut>(limit: Duration, every: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + limit;
    loop {
        match check().await {
            Ok(found) => return found,
            Err(why) => assert!(Instant::now() < deadline, "{why} (waited {limit:?})"),
        }
        // The poll's own pause, which yields the runtime to the tasks that make `check` true.
        tokio::time::sleep(every).await;
    }
}

/// Asks `check` until it gives a value, for at most `limit`; panics with `failure` after that.
pub async fn until<T, F, Fut>(limit: Duration, failure: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    until_ok(limit, || {
        let asked = check();
        async move { asked.await.ok_or_else(|| failure.to_owned()) }
    })
    .await
}

/// Lets `pause` pass on purpose, where a slow peer is what the test is about: a client that
/// drips its bytes, an upstream that takes its time to answer.
pub async fn pace(pause: Duration) {
    // The pause is the stimulus, not a wait for something to happen.
    tokio::time::sleep(pause).await;
}

/// Gives a wrong implementation `period` to show itself, for a check that something does not
/// happen (a request is not served, a line is not written): there is no event to wait on.
pub async fn quiet_for(period: Duration) {
    // Proves nothing happens for `period`: an absence has no moment to wait for.
    tokio::time::sleep(period).await;
}
