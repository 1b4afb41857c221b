//! Which client a full table gives up for a new one: the one rule of both tables capped at
//! `limits.max_tracked_clients`, this replica's metrics ([`super::clients`]) and the fleet's
//! usage records in Redis (the script in `fleet::usage::record`, which takes its labels from
//! the constants here). Both are tested against one table of cases ([`cases`]).
//!
//! The rule, in order:
//!
//! 1. `anonymous` and `other` are labels, not clients ([`NOT_CLIENTS`]): they take no place
//!    and are never displaced.
//! 2. A client already tracked stays; a call the upstream accepted marks it accepted for good.
//! 3. A new client is tracked while there is room, accepted or not (an operator wants to see
//!    who hit a brownout).
//! 4. When the table is full, a new client the upstream accepted takes the place of the
//!    never-accepted client placed first (the one refused the longest); its records go.
//! 5. Otherwise (a refused newcomer, or every place held by an accepted client) the call is
//!    counted as [`OTHER_CLIENTS`].
//!
//! So refused tokens cannot file the next real team under `other`, and junk credentials past
//! the cap cost no scan: only an accepted newcomer looks for a place to take.

use crate::message::fingerprint::ANONYMOUS;

#[doc(hidden)]
pub mod cases;

/// The label for clients past the cap.
pub const OTHER_CLIENTS: &str = "other";

/// Labels that name no client (rule 1).
pub const NOT_CLIENTS: [&str; 2] = [ANONYMOUS, OTHER_CLIENTS];

/// Where a tracked client stands, as the rule sees it.
#[derive(Debug, Clone, Copy)]
pub struct Standing {
    /// The upstream has accepted one of its calls.
    pub accepted: bool,
    /// When it was placed, counted in placements: smaller is earlier.
    pub placed: u64,
}

/// What becomes of a client not yet tracked (rules 3 to 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement<K> {
    /// There is room.
    Track,
    /// It takes the place of this client.
    Displace(K),
    /// Counted as [`OTHER_CLIENTS`].
    Other,
}

/// Rules 3 to 5 for a newcomer, given the `tracked` clients (`len` of them, at most `cap`).
/// `tracked` is only walked for an accepted newcomer at a full table.
pub fn place<K>(
    tracked: impl IntoIterator<Item = (K, Standing)>,
    len: usize,
    cap: usize,
    accepted: bool,
) -> Placement<K> {
    if len < cap {
        return Placement::Track;
    }
    if !accepted {
        return Placement::Other;
    }
    tracked
        .into_iter()
        .filter(|(_, standing)| !standing.accepted)
        .min_by_key(|(_, standing)| standing.placed)
        .map_or(Placement::Other, |(key, _)| Placement::Displace(key))
}
