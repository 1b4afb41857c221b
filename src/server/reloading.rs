//! One reload at a time, whatever asked for it: SIGHUP ([`crate::server::signals`]) and a
//! watched file's change ([`crate::server::file_watch`]) both come here, and a second one waits
//! for the first to end, so two reloads never read, build or swap at once.
//!
//! The files are read ([`ReloadInputs::prepare`](crate::server::reload::ReloadInputs::prepare))
//! on a blocking thread with no lock held but this one's; only the swap takes the reloader's
//! lock. A file change whose files are byte-identical to those the last reload read (or those
//! read at start-up) is skipped; SIGHUP always reloads.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

use crate::config::ConfigError;
use crate::config::read::recording;
use crate::server::file_watch::fingerprint::{Fingerprint, watched_files};
use crate::server::reload::{Reloader, Trigger};

/// What a reload found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Looked {
    /// The files were read and the reload taken or refused (logged and counted either way).
    Reloaded,
    /// A file change found the files as the last reload read them, or one of them is not a
    /// regular file: nothing was read beyond the digests.
    NothingToDo,
}

/// What the watch should follow: the files, or `None` when `watch_files` is off.
pub type WatchTargets = Option<Vec<PathBuf>>;

/// The reloader and what serialises its reloads.
pub struct Reloads {
    reloader: Arc<Mutex<Reloader>>,
    /// Held for a whole reload. Holds the fingerprint of the files the last reload read (or
    /// `None` before the first one is taken), whether that reload succeeded or was refused:
    /// a refused file is refused once, not again on each event that leaves it as it is.
    last_read: tokio::sync::Mutex<Option<Fingerprint>>,
    /// Told after every reload, so that the watch follows a new token or certificate path.
    targets: watch::Sender<WatchTargets>,
}

impl Reloads {
    pub fn new(reloader: Arc<Mutex<Reloader>>) -> Self {
        let targets = targets_of(&lock(&reloader));
        Self {
            reloader,
            last_read: tokio::sync::Mutex::new(None),
            targets: watch::Sender::new(targets),
        }
    }

    /// The watch's targets, now and after each reload.
    pub fn targets(&self) -> watch::Receiver<WatchTargets> {
        self.targets.subscribe()
    }

    /// Takes the files' fingerprint, if no reload has yet: what the running config was built
    /// from, as far as a read just after start-up can tell.
    pub async fn remember_files(&self) {
        let mut last_read = self.last_read.lock().await;
        if last_read.is_some() {
            return;
        }
        let files = self.files();
        let read_at_start = std::mem::take(&mut lock(&self.reloader).read_at_start);
        let known = files
            .iter()
            .filter(|file| read_at_start.iter().any(|(read, _)| read == *file))
            .count();
        tracing::debug!(
            files = files.len(),
            known,
            "the watch starts from the digests of the bytes start-up read (known), reading \
             the others now"
        );
        if let Ok(fingerprint) =
            tokio::task::spawn_blocking(move || Fingerprint::known_or_read(&files, &read_at_start))
                .await
        {
            *last_read = Some(fingerprint);
        }
    }

    /// Reloads, after any reload under way. For a [`Trigger::FileChange`], only when a file
    /// differs from what the last reload read, and all are regular files: says which.
    pub async fn reload(&self, trigger: Trigger) -> Looked {
        let mut last_read = self.last_read.lock().await;
        let (inputs, config_file) = {
            let reloader = lock(&self.reloader);
            (
                reloader.reload_inputs(),
                reloader.config_file().map(Path::to_path_buf),
            )
        };
        let files = self.files();
        let unchanged_if = match trigger {
            Trigger::FileChange => last_read.clone(),
            Trigger::Hangup => None,
        };
        // The fingerprint is read before the files are parsed, to skip a reload that would
        // change nothing. A reload that is taken keeps, instead, the digests of the very bytes
        // it read, for the files the new configuration names: a change after them is a
        // change, and a file named for the first time is not taken for one.
        let read = tokio::task::spawn_blocking(move || {
            let fingerprint = Fingerprint::read(&files);
            if unchanged_if.as_ref() == Some(&fingerprint) {
                return (Some(fingerprint), None);
            }
            let not_files = fingerprint.not_files();
            if trigger == Trigger::FileChange && !not_files.is_empty() {
                tracing::warn!(
                    files = ?not_files,
                    "a watched path is not a regular file (a FIFO, a device or a directory): \
                     not reloaded on a file change; SIGHUP reads it, with its clock"
                );
                return (Some(fingerprint), None);
            }
            if trigger == Trigger::FileChange {
                tracing::info!(
                    files = ?files,
                    "a watched file changed: reloading the configuration"
                );
            }
            let (prepared, read) = recording(|| inputs.prepare());
            let taken = match &prepared {
                Ok(prepared) => Fingerprint::known_or_read(
                    &watched_files(config_file.as_deref(), prepared.next()),
                    &read,
                ),
                Err(_) => fingerprint,
            };
            (Some(taken), Some(prepared))
        })
        .await;
        // Each read has its own clock, so this ends; a panic is reported as a refusal.
        let (fingerprint, prepared) = read.unwrap_or_else(|error| {
            (
                None,
                Some(Err(ConfigError(format!("the reload stopped: {error}")))),
            )
        });
        *last_read = fingerprint;
        let Some(prepared) = prepared else {
            // Nothing to reload, but a link on the way to a file may have moved (a release
            // directory swapped for one with the same bytes): the watch plans again.
            let targets = targets_of(&lock(&self.reloader));
            self.targets.send_replace(targets);
            return Looked::NothingToDo;
        };
        let targets = {
            let mut reloader = lock(&self.reloader);
            reloader.finish(prepared, trigger);
            targets_of(&reloader)
        };
        // Sent even when unchanged: a directory that was gone may be back, and is watched again.
        self.targets.send_replace(targets);
        Looked::Reloaded
    }

    fn files(&self) -> Vec<PathBuf> {
        let reloader = lock(&self.reloader);
        watched_files(reloader.config_file(), reloader.running())
    }
}

fn lock(reloader: &Mutex<Reloader>) -> MutexGuard<'_, Reloader> {
    reloader
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn targets_of(reloader: &Reloader) -> WatchTargets {
    let running = reloader.running();
    running
        .watch_files
        .then(|| watched_files(reloader.config_file(), running))
}
