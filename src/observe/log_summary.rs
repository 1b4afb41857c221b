//! Log lines that repeat under a flood, summarised: the first line of a kind is written, the
//! next ones within [`SUMMARY_WINDOW`] are only counted, and one line says how many there
//! were. One 60-byte request refused by the shim must not cost 300 bytes of log each: a
//! flood of them would fill the disk or the log queue, pushing out the lines that matter.
//! Metrics count every event; the log keeps one example and the count.
//!
//! Use: a `static` [`LogSummary`] per family of lines, made with the function that writes its
//! summary line; before writing a line of kind `k` (an error code, say), ask
//! [`LogSummary::admit`]`(k)` and write it only when that says so. A suppressed line costs a
//! lock and a comparison per known kind; nothing is allocated, so check before formatting the
//! line.
//!
//! When the summary is written: for a kind still repeating, by its next line past the window
//! (the summary first, then that line, which opens the next window); for a kind that went
//! quiet, by [`report_overdue`], which the log set-up calls every [`SUMMARY_WINDOW`]; and at
//! exit, by [`report_all`]. A count is therefore late by at most about two windows, and
//! only lost when the process is killed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// How long a kind's lines are only counted after one is written.
pub const SUMMARY_WINDOW: Duration = Duration::from_secs(1);

/// Kinds one summary tells apart. Kinds are `&'static str`s (error codes), so their number is
/// fixed by the code; past this, a new kind's lines are all written rather than summarised.
const MAX_KINDS: usize = 64;

/// What a summary line reports: `more` lines of `kind` were not written, over `over`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub kind: &'static str,
    pub more: u64,
    pub over: Duration,
}

/// Writes one summary line.
pub type Report = fn(Summary);

/// One family of summarised lines; see the module documentation.
pub struct LogSummary {
    report: Report,
    tally: Mutex<Tally>,
    /// Whether it is in the list [`report_overdue`] and [`report_all`] go through.
    registered: AtomicBool,
}

impl LogSummary {
    /// A summary whose lines `report` writes.
    pub const fn new(report: Report) -> Self {
        Self {
            report,
            tally: Mutex::new(Tally::new()),
            registered: AtomicBool::new(false),
        }
    }

    /// Whether to write a line of `kind` now: yes for the first in its window; no, and
    /// counted, for the rest. When a window with suppressed lines has ended, their summary is
    /// written first.
    pub fn admit(&'static self, kind: &'static str) -> bool {
        self.admit_at(kind, Instant::now())
    }

    fn admit_at(&'static self, kind: &'static str, now: Instant) -> bool {
        // Read first: after the first call this is a plain load, not a write every serving
        // thread contends for.
        if !self.registered.load(Ordering::Acquire) && !self.registered.swap(true, Ordering::AcqRel)
        {
            lock(&REGISTERED).push(self);
        }
        let verdict = lock(&self.tally).hit(kind, now);
        match verdict {
            Hit::Write { after } => {
                if let Some(summary) = after {
                    (self.report)(summary);
                }
                true
            }
            Hit::Suppress => false,
        }
    }

    /// Writes the summaries of the windows over at `now`.
    fn report_overdue(&self, now: Instant) {
        let overdue = lock(&self.tally).take_overdue(now);
        overdue.into_iter().for_each(self.report);
    }

    /// Writes every count not yet reported (at exit).
    fn report_all(&self) {
        let pending = lock(&self.tally).take_all();
        pending.into_iter().for_each(self.report);
    }
}

/// Every summary used so far, for [`report_overdue`] and [`report_all`].
static REGISTERED: Mutex<Vec<&'static LogSummary>> = Mutex::new(Vec::new());

/// Writes the summaries of every window that is over. Called every [`SUMMARY_WINDOW`].
pub fn report_overdue(now: Instant) {
    let summaries = lock(&REGISTERED).clone();
    for summary in summaries {
        summary.report_overdue(now);
    }
}

/// Writes every count not yet reported; called as the shim exits, before the log writer
/// stops.
pub fn report_all() {
    let summaries = lock(&REGISTERED).clone();
    for summary in summaries {
        summary.report_all();
    }
}

/// A poisoned lock only means a panic elsewhere; the counts are still counts.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The counting, clock passed in.
#[derive(Debug)]
struct Tally {
    kinds: Vec<Kind>,
}

#[derive(Debug)]
struct Kind {
    name: &'static str,
    /// When the last written line of this kind was written.
    window_start: Instant,
    /// Lines of this kind not written since then.
    suppressed: u64,
}

#[derive(Debug, PartialEq, Eq)]
enum Hit {
    /// Write the line, after the summary of the window before it, if any.
    Write {
        after: Option<Summary>,
    },
    Suppress,
}

impl Tally {
    const fn new() -> Self {
        Self { kinds: Vec::new() }
    }

    fn hit(&mut self, name: &'static str, now: Instant) -> Hit {
        let Some(kind) = self.kinds.iter_mut().find(|kind| kind.name == name) else {
            if self.kinds.len() < MAX_KINDS {
                self.kinds.push(Kind {
                    name,
                    window_start: now,
                    suppressed: 0,
                });
            }
            return Hit::Write { after: None };
        };
        if now.saturating_duration_since(kind.window_start) < SUMMARY_WINDOW {
            kind.suppressed += 1;
            return Hit::Suppress;
        }
        let after = kind.take(now);
        kind.window_start = now;
        Hit::Write { after }
    }

    fn take_overdue(&mut self, now: Instant) -> Vec<Summary> {
        self.kinds
            .iter_mut()
            .filter(|kind| now.saturating_duration_since(kind.window_start) >= SUMMARY_WINDOW)
            .filter_map(|kind| kind.take(now))
            .collect()
    }

    fn take_all(&mut self) -> Vec<Summary> {
        let now = Instant::now();
        self.kinds
            .iter_mut()
            .filter_map(|kind| kind.take(now))
            .collect()
    }
}

impl Kind {
    /// The summary of the lines suppressed so far, if any, and the count back to zero. The
    /// window stays: a line past it is written at once.
    fn take(&mut self, now: Instant) -> Option<Summary> {
        let more = std::mem::take(&mut self.suppressed);
        (more > 0).then(|| Summary {
            kind: self.name,
            more,
            over: now.saturating_duration_since(self.window_start),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn the_first_line_is_written_and_the_rest_of_its_window_counted() {
        let start = Instant::now();
        let mut tally = Tally::new();
        assert_eq!(tally.hit("rate_limited", start), Hit::Write { after: None });
        for offset in 1..=999 {
            assert_eq!(
                tally.hit("rate_limited", start + offset * MS),
                Hit::Suppress
            );
        }
        // Another kind has its own window.
        assert_eq!(
            tally.hit("overloaded", start + 500 * MS),
            Hit::Write { after: None }
        );
        // Past the window: the summary, then the line, which opens the next window.
        assert_eq!(
            tally.hit("rate_limited", start + 1200 * MS),
            Hit::Write {
                after: Some(Summary {
                    kind: "rate_limited",
                    more: 999,
                    over: 1200 * MS,
                })
            }
        );
        assert_eq!(tally.hit("rate_limited", start + 1300 * MS), Hit::Suppress);
    }

    #[test]
    fn a_kind_that_went_quiet_is_summarised_once_its_window_is_over() {
        let start = Instant::now();
        let mut tally = Tally::new();
        tally.hit("upstream_timeout", start);
        tally.hit("upstream_timeout", start + 10 * MS);
        tally.hit("upstream_timeout", start + 20 * MS);
        assert_eq!(tally.take_overdue(start + 900 * MS), []);
        assert_eq!(
            tally.take_overdue(start + 1000 * MS),
            [Summary {
                kind: "upstream_timeout",
                more: 2,
                over: 1000 * MS,
            }]
        );
        // Reported once; the next line is written at once, with nothing before it.
        assert_eq!(tally.take_overdue(start + 2000 * MS), []);
        assert_eq!(
            tally.hit("upstream_timeout", start + 2100 * MS),
            Hit::Write { after: None }
        );
    }

    #[test]
    fn at_exit_every_count_is_reported_even_inside_its_window() {
        let start = Instant::now();
        let mut tally = Tally::new();
        tally.hit("brownout", start);
        tally.hit("brownout", start);
        tally.hit("sunset", start);
        let pending = tally.take_all();
        assert_eq!(pending.len(), 1);
        assert_eq!((pending[0].kind, pending[0].more), ("brownout", 1));
        assert_eq!(tally.take_all(), []);
    }

    #[test]
    fn past_the_kinds_it_can_tell_apart_every_line_is_written() {
        const NAMES: [&str; MAX_KINDS + 1] = {
            let mut names = [""; MAX_KINDS + 1];
            names[MAX_KINDS] = "one too many";
            names
        };
        let start = Instant::now();
        let mut tally = Tally::new();
        for _ in 0..MAX_KINDS {
            tally.kinds.push(Kind {
                name: NAMES[0],
                window_start: start,
                suppressed: 0,
            });
        }
        for _ in 0..3 {
            assert_eq!(
                tally.hit(NAMES[MAX_KINDS], start),
                Hit::Write { after: None }
            );
        }
        assert_eq!(tally.kinds.len(), MAX_KINDS);
    }

    static SEEN: Mutex<Vec<Summary>> = Mutex::new(Vec::new());
    static SUMMARISED: LogSummary = LogSummary::new(|summary| SEEN.lock().unwrap().push(summary));

    #[test]
    fn a_static_summary_reports_through_its_function() {
        let start = Instant::now();
        assert!(SUMMARISED.admit_at("test_kind", start));
        assert!(!SUMMARISED.admit_at("test_kind", start + MS));
        assert!(!SUMMARISED.admit_at("test_kind", start + 2 * MS));
        assert!(SEEN.lock().unwrap().is_empty());
        SUMMARISED.report_overdue(start + 1500 * MS);
        let seen = SEEN.lock().unwrap().clone();
        assert_eq!(
            seen,
            [Summary {
                kind: "test_kind",
                more: 2,
                over: 1500 * MS,
            }]
        );
        assert!(
            lock(&REGISTERED)
                .iter()
                .any(|summary| std::ptr::eq(*summary, &SUMMARISED))
        );
    }
}
