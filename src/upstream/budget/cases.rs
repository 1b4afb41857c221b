//! The one table of cases both upstream budgets are tested against: this replica's own
//! ([`super::UpstreamBudget`], by the unit test below) and the fleet's script on a real Redis
//! (`tests/it/shared_rules.rs`). Public for that test only, not an API.
//!
//! Times are milliseconds from the start of a case. Waits are compared in whole milliseconds,
//! rounded up: the fleet's script counts in milliseconds (Redis's clock) and rounds a wait up,
//! the local budget counts in nanoseconds.

use std::time::Duration;

use super::Admission;

/// A budget's settings, as `[rate_limit]` gives them.
#[derive(Debug, Clone, Copy)]
pub struct Figures {
    pub per_minute: u32,
    pub burst: u32,
    pub max_wait_ms: u64,
    pub longest_hold_ms: u64,
}

impl Figures {
    pub fn max_wait(&self) -> Duration {
        Duration::from_millis(self.max_wait_ms)
    }

    pub fn longest_hold(&self) -> Duration {
        Duration::from_millis(self.longest_hold_ms)
    }
}

/// What one step of a case does.
#[derive(Debug, Clone, Copy)]
pub enum Step {
    /// A call takes a turn at `at_ms`, and gets `expect`.
    Admit { at_ms: u64, expect: Expect },
    /// The upstream answered 429 with a `Retry-After` of `delay_ms` at `at_ms`.
    Throttled { at_ms: u64, delay_ms: u64 },
    /// A reload puts new settings in service.
    Reload(Figures),
}

/// An [`Admission`] in whole milliseconds, rounded up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    Go,
    WaitThenGo(u64),
    Refuse(u64),
}

impl Expect {
    pub fn of(admission: Admission) -> Self {
        let ms = |wait: Duration| {
            let whole = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
            whole + u64::from(wait > Duration::from_millis(whole))
        };
        match admission {
            Admission::Go => Self::Go,
            Admission::WaitThenGo(wait) => Self::WaitThenGo(ms(wait)),
            Admission::Refuse { retry_after } => Self::Refuse(ms(retry_after)),
        }
    }
}

pub struct Case {
    pub name: &'static str,
    pub figures: Figures,
    pub steps: &'static [Step],
}

const HOUR_MS: u64 = 3_600_000;

const fn admit(at_ms: u64, expect: Expect) -> Step {
    Step::Admit { at_ms, expect }
}

use Expect::{Go, Refuse, WaitThenGo};

pub const CASES: &[Case] = &[
    Case {
        name: "a burst goes at once, then calls are paced one interval apart",
        figures: Figures {
            per_minute: 60,
            burst: 3,
            max_wait_ms: 5_000,
            longest_hold_ms: HOUR_MS,
        },
        steps: &[
            admit(0, Go),
            admit(0, Go),
            admit(0, Go),
            admit(0, WaitThenGo(1_000)),
            admit(0, WaitThenGo(2_000)),
            admit(3_000, Go),
        ],
    },
    Case {
        name: "pacing, and the burst comes back after a pause",
        figures: Figures {
            per_minute: 120,
            burst: 2,
            max_wait_ms: 2_000,
            longest_hold_ms: HOUR_MS,
        },
        steps: &[
            admit(0, Go),
            admit(0, Go),
            admit(0, WaitThenGo(500)),
            admit(500, WaitThenGo(500)),
            admit(2_000, Go),
            admit(2_000, Go),
            admit(2_000, WaitThenGo(500)),
        ],
    },
    Case {
        name: "an interval that is not whole milliseconds rounds each wait up",
        figures: Figures {
            per_minute: 180,
            burst: 1,
            max_wait_ms: 1_000,
            longest_hold_ms: HOUR_MS,
        },
        steps: &[
            admit(0, Go),
            admit(0, WaitThenGo(334)),
            admit(0, WaitThenGo(667)),
            admit(0, WaitThenGo(1_000)),
            admit(0, Refuse(1_334)),
        ],
    },
    Case {
        name: "a wait beyond the limit is refused without reserving",
        figures: Figures {
            per_minute: 60,
            burst: 1,
            max_wait_ms: 1_500,
            longest_hold_ms: HOUR_MS,
        },
        steps: &[
            admit(0, Go),
            admit(0, WaitThenGo(1_000)),
            admit(0, Refuse(2_000)),
            // The refusal took nothing: after two seconds there is a turn again.
            admit(2_000, Go),
        ],
    },
    Case {
        name: "an upstream 429 holds everyone, and a shorter later one does not shorten it",
        figures: Figures {
            per_minute: 180,
            burst: 180,
            max_wait_ms: 2_000,
            longest_hold_ms: HOUR_MS,
        },
        steps: &[
            Step::Throttled {
                at_ms: 0,
                delay_ms: 10_000,
            },
            admit(0, Refuse(10_000)),
            admit(9_000, WaitThenGo(1_000)),
            admit(10_000, Go),
            Step::Throttled {
                at_ms: 0,
                delay_ms: 11_000,
            },
            Step::Throttled {
                at_ms: 1_000,
                delay_ms: 9_000,
            },
            admit(10_000, WaitThenGo(1_000)),
        ],
    },
    Case {
        name: "calls held by a 429 go at its end as one burst, then are paced",
        figures: Figures {
            per_minute: 60,
            burst: 3,
            max_wait_ms: 5_000,
            longest_hold_ms: HOUR_MS,
        },
        steps: &[
            Step::Throttled {
                at_ms: 0,
                delay_ms: 1_000,
            },
            admit(0, WaitThenGo(1_000)),
            admit(0, WaitThenGo(1_000)),
            admit(0, WaitThenGo(1_000)),
            admit(0, WaitThenGo(2_000)),
        ],
    },
    Case {
        name: "a hold longer than the cap ends at the cap",
        figures: Figures {
            per_minute: 180,
            burst: 180,
            max_wait_ms: 0,
            longest_hold_ms: 10_000,
        },
        steps: &[
            Step::Throttled {
                at_ms: 0,
                delay_ms: u64::MAX,
            },
            admit(0, Refuse(10_000)),
            admit(10_000, Go),
        ],
    },
    Case {
        name: "a reload changes the rate and the burst from the next call; what is owed stays",
        figures: Figures {
            per_minute: 60,
            burst: 2,
            max_wait_ms: 0,
            longest_hold_ms: HOUR_MS,
        },
        steps: &[
            admit(0, Go),
            admit(0, Go),
            admit(0, Refuse(1_000)),
            Step::Reload(Figures {
                per_minute: 120,
                burst: 2,
                max_wait_ms: 0,
                longest_hold_ms: HOUR_MS,
            }),
            // Two seconds are owed; at the new rate one call fits half a second before that.
            admit(0, Refuse(1_500)),
            admit(1_500, Go),
            Step::Reload(Figures {
                per_minute: 120,
                burst: 4,
                max_wait_ms: 0,
                longest_hold_ms: HOUR_MS,
            }),
            admit(1_500, Go),
            admit(1_500, Go),
            admit(1_500, Refuse(500)),
        ],
    },
    Case {
        name: "a reload to a smaller burst leaves fewer calls saved up",
        figures: Figures {
            per_minute: 60,
            burst: 5,
            max_wait_ms: 0,
            longest_hold_ms: HOUR_MS,
        },
        steps: &[
            Step::Reload(Figures {
                per_minute: 60,
                burst: 1,
                max_wait_ms: 0,
                longest_hold_ms: HOUR_MS,
            }),
            admit(0, Go),
            admit(0, Refuse(1_000)),
        ],
    },
    Case {
        name: "a reload to a shorter max_upstream_hold caps each wait a hold already in place \
               asks for",
        figures: Figures {
            per_minute: 60,
            burst: 5,
            max_wait_ms: 0,
            longest_hold_ms: HOUR_MS,
        },
        steps: &[
            Step::Throttled {
                at_ms: 0,
                delay_ms: 60_000,
            },
            admit(0, Refuse(60_000)),
            Step::Reload(Figures {
                per_minute: 60,
                burst: 5,
                max_wait_ms: 0,
                longest_hold_ms: 10_000,
            }),
            admit(0, Refuse(10_000)),
            // The cap bounds each wait from the moment of asking; the hold still ends when the
            // upstream said.
            admit(10_000, Refuse(10_000)),
            admit(59_000, Refuse(1_000)),
            admit(60_000, Go),
        ],
    },
];

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::super::UpstreamBudget;
    use super::*;

    #[test]
    fn the_local_budget_follows_every_shared_case() {
        for case in CASES {
            let start = Instant::now();
            let at = |ms: u64| start + Duration::from_millis(ms);
            let mut figures = case.figures;
            let budget = UpstreamBudget::new(
                figures.per_minute,
                figures.burst,
                figures.max_wait(),
                figures.longest_hold(),
                start,
            );
            for (index, step) in case.steps.iter().enumerate() {
                match *step {
                    Step::Admit { at_ms, expect } => assert_eq!(
                        Expect::of(budget.admit(at(at_ms))),
                        expect,
                        "{}: step {index}",
                        case.name
                    ),
                    Step::Throttled { at_ms, delay_ms } => {
                        budget.upstream_throttled(at(at_ms), Duration::from_millis(delay_ms));
                    }
                    Step::Reload(new) => {
                        figures = new;
                        budget.set_figures(
                            figures.per_minute,
                            figures.burst,
                            figures.max_wait(),
                            figures.longest_hold(),
                        );
                    }
                }
            }
        }
    }
}
