//! Summarised log lines for an event that an attacker can repeat at will (a wrong admin
//! credential): the first occurrence is written at once, with its details; further ones within
//! the period are only counted, and written as one summary line with the count when the period
//! is over. However fast the events come, the kind gets at most one line per period.
//!
//! The decision is pure ([`LogSummary::note`], [`LogSummary::take`]); [`LogSummary::record`]
//! adds the clock that writes a held count once the period ends, so a count is never lost
//! when the events stop.
//!
//! Local to the admin listener for now: a general summariser for every repeated warning is
//! being written separately; this one should fold into it.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// What to do with one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Noted {
    /// Write its own line now.
    Write,
    /// Counted, not written. `Some`: the first one held since the last line; write the
    /// summary ([`LogSummary::take`]) at this instant.
    Held(Option<Instant>),
}

/// One kind of event's lines: at most one per `period`.
#[derive(Debug)]
pub struct LogSummary {
    period: Duration,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// When the last line (an event's own or a summary) was written.
    last_line: Option<Instant>,
    /// Events counted since then, not yet written.
    held: u64,
}

impl LogSummary {
    pub fn new(period: Duration) -> Self {
        Self {
            period,
            state: Mutex::default(),
        }
    }

    /// Decides about one event at `now`.
    pub fn note(&self, now: Instant) -> Noted {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        match state.last_line {
            Some(last) if state.held > 0 || now.duration_since(last) < self.period => {
                state.held += 1;
                Noted::Held((state.held == 1).then(|| last + self.period))
            }
            _ => {
                state.last_line = Some(now);
                Noted::Write
            }
        }
    }

    /// The events held since the last line, for a summary line written at `now` (which then
    /// counts as the last line); 0 writes nothing.
    pub fn take(&self, now: Instant) -> u64 {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let held = std::mem::take(&mut state.held);
        if held > 0 {
            state.last_line = Some(now);
        }
        held
    }

    /// Notes one event: `write` runs now when the event gets its own line; otherwise, for the
    /// first event held, a task runs `summarise` with the count once the period is over.
    /// Needs a tokio runtime.
    pub fn record(
        self: &Arc<Self>,
        write: impl FnOnce(),
        summarise: impl FnOnce(u64) + Send + 'static,
    ) {
        // tokio's clock, so a paused runtime in tests moves it too.
        match self.note(tokio::time::Instant::now().into_std()) {
            Noted::Write => write(),
            Noted::Held(None) => {}
            Noted::Held(Some(at)) => {
                let summary = Arc::clone(self);
                tokio::spawn(async move {
                    tokio::time::sleep_until(at.into()).await;
                    let held = summary.take(tokio::time::Instant::now().into_std());
                    if held > 0 {
                        summarise(held);
                    }
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn the_first_event_is_written_and_the_rest_of_the_period_summarised_once() {
        let summary = LogSummary::new(SECOND);
        let start = Instant::now();
        assert_eq!(summary.note(start), Noted::Write);
        let at = start + Duration::from_millis(100);
        assert_eq!(summary.note(at), Noted::Held(Some(start + SECOND)));
        for _ in 0..998 {
            assert_eq!(summary.note(at), Noted::Held(None));
        }
        // Still held past the period: the summary is due, not another line of its own.
        assert_eq!(summary.note(start + 2 * SECOND), Noted::Held(None));
        assert_eq!(summary.take(start + SECOND), 1_000);
        assert_eq!(summary.take(start + SECOND), 0);
        // The summary was a line: the next period's events are held again.
        let next = start + SECOND + Duration::from_millis(10);
        assert_eq!(summary.note(next), Noted::Held(Some(start + 2 * SECOND)));
        assert_eq!(summary.take(start + 2 * SECOND), 1);
        // After a quiet period, an event gets its own line again.
        assert_eq!(summary.note(start + 4 * SECOND), Noted::Write);
    }

    #[tokio::test(start_paused = true)]
    async fn a_held_count_is_written_when_the_period_ends_even_if_no_event_follows() {
        let summary = Arc::new(LogSummary::new(SECOND));
        let lines = Arc::new(Mutex::new(Vec::new()));
        for _ in 0..5 {
            let written = Arc::clone(&lines);
            let summarised = Arc::clone(&lines);
            summary.record(
                move || written.lock().unwrap().push("first".to_owned()),
                move |count| summarised.lock().unwrap().push(format!("{count} more")),
            );
        }
        assert_eq!(*lines.lock().unwrap(), ["first"]);
        tokio::time::sleep(2 * SECOND).await;
        assert_eq!(*lines.lock().unwrap(), ["first", "4 more"]);
    }
}
