//! Reloading when a watched file changes: the config file, `admin_token_file`, the TLS
//! certificate and key (`watch_files`, on by default). In Kubernetes a ConfigMap or Secret
//! update reaches the pod as kubelet's swap of the mount's `..data` link, with no signal; this
//! is what notices it.
//!
//! Each file's directory is watched with the OS's notifications (inotify on Linux, through
//! the `notify` crate; never polling): its thread blocks in the kernel, so an idle shim does
//! not wake up for it. The events that can concern a watched file ([`plan`]) start or extend
//! a burst; once it is quiet ([`burst`]) the reload runs exactly as SIGHUP's does, one at a
//! time with it ([`crate::server::reloading`]), and is skipped when the files are the bytes
//! the last reload read. After every reload the watch follows the files the running config
//! names (a new token or certificate path, `watch_files` turned off or on).
//!
//! Paths are read as the kernel reads them ([`resolve`]): a `..` after a link steps back
//! from where the link leads, and each link on the way is watched from its parent ([`plan`]).
//!
//! Each time a watcher is armed (at start-up, when a reload names other directories or a
//! linked directory moved, when a watch that was incomplete is whole again) the files are
//! compared once with what was last read, so that a change made before the watch was in
//! place is not lost.
//!
//! A watch that cannot be set up whole (inotify's limits, a missing directory) is logged with
//! the path and the reason; the shim serves on and SIGHUP still reloads. A watched directory
//! that is removed is logged too. Such a watch is tried again after the next reload, and on
//! its own clock ([`WATCH_RETRY`]) while it is incomplete: limits freed and directories come
//! back without anyone sending a signal.

pub(crate) mod burst;
pub(crate) mod fingerprint;
pub(crate) mod plan;
mod resolve;
mod watcher;

use std::sync::Arc;
use std::time::Duration;

use crate::server::reload::Trigger;
use crate::server::reloading::{Looked, Reloads, WatchTargets};
use burst::Burst;
use watcher::{Armed, Notice};

/// How long a watch that could not be set up whole (inotify's limits reached, a directory
/// missing, the watcher's thread gone) waits before it is tried again. The only clock an idle
/// shim runs for the watch, and only while it is in that state.
pub(crate) const WATCH_RETRY: Duration = Duration::from_secs(30);

/// Follows the files `reloads` names and reloads when they change, until aborted.
pub async fn run(reloads: Arc<Reloads>) {
    let mut targets = reloads.targets();
    let mut armed: Option<Armed> = None;
    let mut burst: Option<Burst> = None;
    // Whether the burst under way holds a watched file's events, or only a watcher's arming.
    let mut events_seen = false;
    // Whether the watch is being tried again on its clock, rather than after a reload.
    let mut retrying = false;
    loop {
        let wanted = targets.borrow_and_update().clone();
        if wanted.is_some() && armed.is_none() {
            reloads.remember_files().await;
        }
        let wanted_any = wanted.is_some();
        armed = rearm(armed, wanted, &mut burst, &mut events_seen, retrying).await;
        loop {
            let due = burst.map(|burst| tokio::time::Instant::from_std(burst.due()));
            let degraded = wanted_any && armed.as_ref().is_none_or(|armed| armed.incomplete);
            tokio::select! {
                notice = next_notice(&mut armed) => match notice {
                    Some(notice) => {
                        note(notice, &mut armed, &mut burst);
                        events_seen = true;
                    }
                    None => {
                        tracing::warn!(
                            retry_every = ?WATCH_RETRY,
                            "the file watch stopped; it is set up again on its clock \
                             (retry_every) and after each reload"
                        );
                        armed = None;
                    }
                },
                // The burst's clock, which runs during a burst alone.
                () = sleep_until(due), if due.is_some() => {
                    burst = None;
                    let after_events = std::mem::take(&mut events_seen);
                    if reloads.reload(Trigger::FileChange).await == Looked::NothingToDo {
                        tracing::debug!("{}", match after_events {
                            true => "a watched file had an event, but nothing to reload (the \
                                     files are as the last reload read them, or one is not a \
                                     regular file)",
                            // Had a file changed after the last read (start-up's, or the
                            // reload that named another directory) but before this watcher
                            // was armed, it would have been reloaded.
                            false => "the watch is armed, and the files are as last read: \
                                      nothing to reload",
                        });
                    }
                }
                changed = targets.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    retrying = false;
                    break;
                }
                // Limits are freed and directories come back without a reload to notice.
                () = tokio::time::sleep(WATCH_RETRY), if degraded => {
                    retrying = true;
                    break;
                }
            }
        }
    }
}

async fn sleep_until(due: Option<tokio::time::Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due).await,
        None => std::future::pending().await,
    }
}

async fn next_notice(armed: &mut Option<Armed>) -> Option<Notice> {
    match armed {
        Some(armed) => armed.notices.recv().await,
        None => std::future::pending().await,
    }
}

fn note(notice: Notice, armed: &mut Option<Armed>, burst: &mut Option<Burst>) {
    match notice {
        Notice::Change => {}
        Notice::DirGone(dir) => {
            // Once per watcher: one removal makes several events. Not a warning: a deploy
            // that removes the release it just swapped away from does this too, and a
            // directory that stays gone is warned about when it cannot be watched again.
            if let Some(armed) = armed.as_mut().filter(|armed| !armed.incomplete) {
                armed.incomplete = true;
                tracing::info!(
                    dir = %dir.display(),
                    retry_every = ?WATCH_RETRY,
                    "a watched directory was removed or renamed (or made again): it is watched \
                     again after the reload this starts, or on the watch's clock (retry_every) \
                     once it is back"
                );
            }
        }
        Notice::Trouble(error) => {
            tracing::warn!(%error, "the file watch reported an error; reloading to be sure");
        }
    }
    burst::note(burst, std::time::Instant::now());
}

/// The watcher for `wanted`: the one running when it already watches the same directories
/// and names, else a new one (started before the old one stops, so nothing is missed between).
async fn rearm(
    armed: Option<Armed>,
    wanted: WatchTargets,
    burst: &mut Option<Burst>,
    events_seen: &mut bool,
    retrying: bool,
) -> Option<Armed> {
    let Some(files) = wanted else {
        if armed.is_some() {
            tracing::info!("watch_files is off: no longer watching the configured files");
        }
        return None;
    };
    // Reading links and adding watches may block on a hung mount: not on this thread.
    let plan = tokio::task::spawn_blocking(move || Armed::plan_for(&files))
        .await
        .ok()?;
    if let Some(current) = &armed
        && current.plan == plan
        && !current.incomplete
    {
        return armed;
    }
    let moved = armed.as_ref().is_none_or(|current| current.plan != plan);
    let was_incomplete = armed.as_ref().is_some_and(|current| current.incomplete);
    // The same plan armed again while incomplete (after each event's reload): what still
    // fails was warned about when it first failed.
    let quietly = retrying || !moved && was_incomplete;
    let fresh = tokio::task::spawn_blocking(move || Armed::start(plan, quietly))
        .await
        .ok()
        .flatten();
    if let Some(mut old) = armed {
        // Events the old watcher queued before it stopped still count.
        if old.notices.try_recv().is_ok() {
            burst::note(burst, std::time::Instant::now());
            *events_seen = true;
        }
    }
    // A file that changed after the last read (the start-up's, or the reload that named a new
    // directory or followed a moved link) but before this watcher was armed made no event
    // anyone saw: one check after the quiet time compares the files with what was last read,
    // and reloads only if they differ. So too when a watch that was incomplete is whole now
    // (a directory back, a limit freed). Not when the same plan is armed again and is still
    // incomplete: that check would arm again, and again.
    let whole_now = fresh.as_ref().is_some_and(|fresh| !fresh.incomplete);
    if fresh.is_some() && (moved || was_incomplete && whole_now) {
        burst::note(burst, std::time::Instant::now());
    }
    if retrying && whole_now {
        tracing::info!("the file watch is set up now: changes are reloaded again");
    }
    fresh
}
