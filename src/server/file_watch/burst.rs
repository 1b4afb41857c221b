//! When a burst of file events becomes a reload. Pure: the caller gives the times.
//!
//! One update makes several events: kubelet creates a timestamped directory, a temporary link,
//! renames it over `..data` and removes the old directory; an editor writes a backup, the file
//! and its metadata; `cp` truncates, then writes in pieces. Reloading on the first event could
//! read a half-written file, and would count several reloads for one update. So a reload
//! waits until the events have been quiet for [`QUIET`], but never more than [`LONGEST`] after
//! the first, so that a file rewritten without pause is still reloaded.

use std::time::{Duration, Instant};

/// Quiet time that ends a burst: kubelet's whole swap and an editor's save take a few
/// milliseconds, and a person who saves twice in a row is not kept waiting long.
pub const QUIET: Duration = Duration::from_millis(500);

/// The longest a burst may hold a reload back: a file rewritten every few hundred ms (a
/// runaway script, a tool that touches it in a loop) still gets reloaded this often.
pub const LONGEST: Duration = Duration::from_secs(5);
const _: () = assert!(QUIET.as_millis() < LONGEST.as_millis());

/// A burst under way: when its first and its latest events came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Burst {
    first: Instant,
    latest: Instant,
}

impl Burst {
    pub fn start(now: Instant) -> Self {
        Self {
            first: now,
            latest: now,
        }
    }

    /// Another event of the same burst.
    pub fn note(&mut self, now: Instant) {
        self.latest = self.latest.max(now);
    }

    /// When the reload is due: [`QUIET`] after the latest event, or [`LONGEST`] after the
    /// first, whichever comes first.
    pub fn due(&self) -> Instant {
        (self.latest + QUIET).min(self.first + LONGEST)
    }
}

/// Notes an event at `now`: starts a burst or extends the one under way.
pub fn note(burst: &mut Option<Burst>, now: Instant) {
    match burst {
        Some(burst) => burst.note(now),
        None => *burst = Some(Burst::start(now)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_single_event_reloads_after_the_quiet_time() {
        let now = Instant::now();
        let mut burst = None;
        note(&mut burst, now);
        assert_eq!(burst.unwrap().due(), now + QUIET);
    }

    #[test]
    fn each_event_of_a_burst_pushes_the_reload_back() {
        let now = Instant::now();
        let mut burst = None;
        for at in [0, 3, 10, 400] {
            note(&mut burst, now + at * MS);
        }
        assert_eq!(burst.unwrap().due(), now + 400 * MS + QUIET);
        // An event reported late (an earlier time) does not pull it forward.
        note(&mut burst, now + 5 * MS);
        assert_eq!(burst.unwrap().due(), now + 400 * MS + QUIET);
    }

    #[test]
    fn a_burst_that_never_ends_still_reloads_within_the_longest_wait() {
        let now = Instant::now();
        let mut burst = None;
        let mut at = Duration::ZERO;
        while at < 3 * LONGEST {
            note(&mut burst, now + at);
            at += QUIET / 2;
        }
        assert_eq!(burst.unwrap().due(), now + LONGEST);
    }
}
