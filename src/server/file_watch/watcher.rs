//! The OS watcher itself: one inotify instance (on Linux) watching each planned directory, not
//! recursively, whose thread sorts the events ([`WatchPlan::classify`]) and passes on only
//! those that concern a watched file.

use std::path::{Path, PathBuf};

use notify::{Config, Event, EventKindMask, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use super::plan::{Seen, WatchPlan};

/// Notices waiting for the watch task. One is enough to start a burst; when the queue is full
/// (the task is busy with a reload) the rest would add nothing and are dropped.
const QUEUED_NOTICES: usize = 64;

/// What the watcher's thread passes on.
#[derive(Debug)]
pub enum Notice {
    Change,
    DirGone(PathBuf),
    /// The watcher reported an error (an inotify queue overflow, say): events may have been
    /// lost, so it counts as a change too.
    Trouble(String),
}

/// A running watcher and what it watches.
pub struct Armed {
    pub plan: WatchPlan,
    pub notices: mpsc::Receiver<Notice>,
    /// Some directory is not watched (it could not be, or it went away): the next reload
    /// tries again.
    pub incomplete: bool,
    /// Dropped, it stops its thread.
    _watcher: RecommendedWatcher,
}

impl Armed {
    /// The plan for `files`, read from the file system (the links on their way). Relative
    /// paths are made absolute first, so that events and plan name them alike.
    pub fn plan_for(files: &[PathBuf]) -> WatchPlan {
        let absolute: Vec<PathBuf> = files
            .iter()
            .map(|file| std::path::absolute(file).unwrap_or_else(|_| file.clone()))
            .collect();
        WatchPlan::new(&absolute, |path| std::fs::read_link(path).ok())
    }

    /// Starts watching every directory of `plan`; `None` (after a warning) when no watcher
    /// can be made at all. A directory that cannot be watched is named in a warning and the
    /// others are watched. `quietly` (the same plan tried again, on the watch's clock or after
    /// a reload): what still fails was warned about already, and is a debug line now.
    pub fn start(plan: WatchPlan, quietly: bool) -> Option<Self> {
        let (sender, notices) = mpsc::channel(QUEUED_NOTICES);
        let sorting = plan.clone();
        let handler = move |event: notify::Result<Event>| {
            let notice = match event {
                Ok(event) if event.need_rescan() => Notice::Trouble("events were lost".into()),
                Ok(event) => match sorting.classify(&event.kind, &event.paths) {
                    Seen::Change => Notice::Change,
                    Seen::DirGone(dir) => Notice::DirGone(dir),
                    Seen::Unrelated => return,
                },
                Err(error) => Notice::Trouble(error.to_string()),
            };
            let _ = sender.try_send(notice);
        };
        // Reads are not asked for: the reload's own reads would wake the thread for nothing.
        // Nor is each write (IN_MODIFY): a log file or any busy file beside a watched one
        // would wake the thread once per write, about 6,000 instructions per logged request
        // in the benchmark; a writer's close (IN_CLOSE_WRITE) says the same once, when the
        // file is whole.
        let config = Config::default().with_event_kinds(
            EventKindMask::CREATE
                | EventKindMask::REMOVE
                | EventKindMask::MODIFY_NAME
                | EventKindMask::MODIFY_META
                | EventKindMask::ACCESS_CLOSE,
        );
        let dirs: Vec<String> = plan.dirs().map(|dir| dir.display().to_string()).collect();
        let mut watcher = match RecommendedWatcher::new(handler, config) {
            Ok(watcher) => watcher,
            Err(error) if quietly => {
                tracing::debug!(?dirs, %error, "the file watch still cannot be set up");
                return None;
            }
            Err(error) => {
                tracing::warn!(
                    ?dirs,
                    %error,
                    retry_every = ?super::WATCH_RETRY,
                    "cannot watch the configured files (inotify's limits? see \
                     fs.inotify.max_user_instances); changes are taken on SIGHUP, and the \
                     watch is tried again (retry_every)"
                );
                return None;
            }
        };
        let mut incomplete = false;
        for dir in plan.dirs() {
            if let Err(error) = watcher.watch(dir, RecursiveMode::NonRecursive) {
                incomplete = true;
                if quietly {
                    tracing::debug!(dir = %dir.display(), %error, "still cannot watch this directory");
                } else {
                    warn_unwatched(dir, &error);
                }
            }
        }
        if !plan.gave_up.is_empty() && !quietly {
            tracing::warn!(
                files = ?plan.gave_up,
                "a chain of more than 40 links leads to these files (the kernel follows no \
                 more): the watch follows the first 40; a change further along needs a SIGHUP"
            );
        }
        tracing::debug!(?dirs, "watching the configured files' directories");
        Some(Self {
            plan,
            notices,
            incomplete,
            _watcher: watcher,
        })
    }
}

fn warn_unwatched(dir: &Path, error: &notify::Error) {
    tracing::warn!(
        dir = %dir.display(),
        %error,
        retry_every = ?super::WATCH_RETRY,
        "cannot watch this directory (missing? inotify's limits? see \
         fs.inotify.max_user_watches); changes to its files are taken on SIGHUP, and the \
         watch is tried again after each reload and on its clock (retry_every)"
    );
}
