//! The one table of cases both capped client tables are tested against: this replica's
//! ([`crate::observe::metrics::Metrics::settle`], by the unit test in `metrics::clients`) and
//! the fleet's usage script on a real Redis (`tests/it/shared_rules.rs`). Public for that test
//! only, not an API.
//!
//! Clients are named by a word: the local test sends `Token <word>` and reads fingerprints
//! back as words; the fleet's script is given the word as the client. [`ANONYMOUS`] is a call
//! without credentials; [`OTHER_CLIENTS`] is the label of a call past the cap.

pub use super::OTHER_CLIENTS;
pub use crate::message::fingerprint::ANONYMOUS;

/// Where one call is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counted {
    /// Under its own client.
    Itself,
    /// Under its own client, which took the place of this one.
    Displacing(&'static str),
    /// As `other`.
    Other,
}

/// One call: its client, whether the upstream accepted it, and where it is counted.
#[derive(Debug, Clone, Copy)]
pub struct Call {
    pub client: &'static str,
    pub accepted: bool,
    pub counted: Counted,
}

pub struct Case {
    pub name: &'static str,
    /// `limits.max_tracked_clients`.
    pub cap: usize,
    pub calls: &'static [Call],
}

const fn refused(client: &'static str, counted: Counted) -> Call {
    Call {
        client,
        accepted: false,
        counted,
    }
}

const fn accepted(client: &'static str, counted: Counted) -> Call {
    Call {
        client,
        accepted: true,
        counted,
    }
}

use Counted::{Displacing, Itself, Other};

pub const CASES: &[Case] = &[
    Case {
        name: "while there is room every client is tracked, accepted or not",
        cap: 3,
        calls: &[
            refused("a", Itself),
            accepted("b", Itself),
            refused("c", Itself),
            refused("a", Itself),
        ],
    },
    Case {
        name: "past the cap a refused client is other and displaces nobody",
        cap: 2,
        calls: &[
            refused("a", Itself),
            refused("b", Itself),
            refused("c", Other),
            refused("a", Itself),
        ],
    },
    Case {
        name: "an accepted client displaces the never-accepted one placed first",
        cap: 3,
        calls: &[
            refused("r1", Itself),
            refused("r2", Itself),
            refused("r3", Itself),
            refused("r4", Other),
            accepted("team1", Displacing("r1")),
            accepted("team2", Displacing("r2")),
            refused("r1", Other),
        ],
    },
    Case {
        name: "the order is the order of placement, not of names",
        cap: 3,
        calls: &[
            refused("zz", Itself),
            refused("aa", Itself),
            refused("mm", Itself),
            accepted("team", Displacing("zz")),
            accepted("team2", Displacing("aa")),
        ],
    },
    Case {
        name: "a client accepted once is never displaced, even when refused later",
        cap: 2,
        calls: &[
            refused("r1", Itself),
            refused("r2", Itself),
            accepted("r1", Itself),
            accepted("team", Displacing("r2")),
            accepted("team2", Other),
            refused("r1", Itself),
        ],
    },
    Case {
        name: "when every place holds an accepted client a new one is other",
        cap: 2,
        calls: &[
            accepted("a", Itself),
            accepted("b", Itself),
            accepted("c", Other),
            refused("d", Other),
            accepted("a", Itself),
        ],
    },
    Case {
        name: "anonymous calls take no place and are never displaced",
        cap: 1,
        calls: &[
            refused(ANONYMOUS, Itself),
            refused("a", Itself),
            refused(ANONYMOUS, Itself),
            accepted("b", Displacing("a")),
            refused(ANONYMOUS, Itself),
            accepted(ANONYMOUS, Itself),
        ],
    },
    Case {
        name: "a displaced client comes back as a newcomer",
        cap: 1,
        calls: &[
            refused("a", Itself),
            accepted("b", Displacing("a")),
            accepted("a", Other),
        ],
    },
];
