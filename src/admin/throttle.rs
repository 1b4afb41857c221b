//! Failed admin credentials, counted per client address: an address that fails
//! [`FAILURES_BEFORE_BLOCK`] times within [`FAILURE_WINDOW`] is refused for
//! [`BLOCK_DURATION`], unchecked, so guessing the token runs at a few tries a minute rather
//! than as fast as the listener answers. Another address is unaffected; probes never come
//! here. A right credential does not start an address's count again: behind one NAT
//! address, a scraper with the token must not wipe a guesser's failures every scrape. The
//! failures age out of the window instead.
//!
//! IPv6 clients are counted by their /64, the block a single host is usually given. The table
//! holds at most [`MAX_TRACKED_ADDRESSES`]. An address is only ever refused for its own
//! failures: one with no entry (it has not failed, or not lately) is always checked. When a
//! new address fails while the table is full, stale entries are dropped; if that frees no
//! place, the entry closest to nothing gives up its own: of the addresses not blocked, the one
//! with the fewest failures, the oldest on a tie (a scan of the table, on failures only). A
//! blocked address keeps its entry until its block ends; were all of them blocked, a new
//! address's failure would go uncounted until one ends. So a flood of addresses can neither
//! grow the table, nor free a blocked address, nor lock out an operator who has not failed;
//! what it can do, with more addresses than the table holds, is push its own entries out
//! before they reach the limit. The throttle slows a guesser or a few; against many, what
//! holds is the token's length (start-up warns below 32 characters).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Failed credentials an address may send within [`FAILURE_WINDOW`]; the next attempt is
/// refused.
pub const FAILURES_BEFORE_BLOCK: u32 = 10;
/// The window the failures are counted in, from an address's first failure.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// How long a blocked address is refused, unchecked (its `Retry-After`).
pub const BLOCK_DURATION: Duration = Duration::from_secs(60);
/// Addresses counted at once: about 64 bytes each, so at most about 256 KiB.
pub const MAX_TRACKED_ADDRESSES: usize = 4096;

#[derive(Debug, Clone, Copy)]
struct Failures {
    window_start: Instant,
    count: u32,
    blocked_until: Option<Instant>,
}

impl Failures {
    fn new(now: Instant) -> Self {
        Self {
            window_start: now,
            count: 0,
            blocked_until: None,
        }
    }

    fn is_blocked(&self, now: Instant) -> bool {
        self.blocked_until.is_some_and(|until| until > now)
    }

    /// Whether the entry says nothing any more at `now`: its window and any block are over.
    fn is_stale(&self, now: Instant) -> bool {
        !self.is_blocked(now) && now.saturating_duration_since(self.window_start) >= FAILURE_WINDOW
    }
}

/// What a failure did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failed {
    Counted,
    /// This failure was the last allowed: the address is refused from now on, for
    /// [`BLOCK_DURATION`].
    Blocked,
    /// The table is full of blocked addresses: this one's failure could not be counted.
    Untracked,
}

/// The failure counts, shared by every admin connection.
#[derive(Debug, Default)]
pub struct AuthThrottle {
    /// By [`counted_as`].
    table: Mutex<HashMap<IpAddr, Failures>>,
}

impl AuthThrottle {
    /// `Err(wait)` while `client` is refused for its own failures: how long until it may try
    /// again.
    pub fn check(&self, client: IpAddr, now: Instant) -> Result<(), Duration> {
        let table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        match table
            .get(&counted_as(client))
            .and_then(|entry| entry.blocked_until)
        {
            Some(until) if until > now => Err(until - now),
            _ => Ok(()),
        }
    }

    /// Counts one failed credential from `client` at `now`.
    pub fn failed(&self, client: IpAddr, now: Instant) -> Failed {
        let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        let key = counted_as(client);
        if !table.contains_key(&key) && table.len() >= MAX_TRACKED_ADDRESSES {
            table.retain(|_, entry| !entry.is_stale(now));
            if table.len() >= MAX_TRACKED_ADDRESSES {
                let closest_to_nothing = table
                    .iter()
                    .filter(|(_, entry)| !entry.is_blocked(now))
                    .min_by_key(|(_, entry)| (entry.count, entry.window_start))
                    .map(|(address, _)| *address);
                match closest_to_nothing {
                    Some(address) => {
                        table.remove(&address);
                    }
                    None => return Failed::Untracked,
                }
            }
        }
        let entry = table.entry(key).or_insert_with(|| Failures::new(now));
        if entry.is_stale(now) {
            *entry = Failures::new(now);
        }
        entry.count = entry.count.saturating_add(1);
        if entry.count >= FAILURES_BEFORE_BLOCK && !entry.is_blocked(now) {
            entry.blocked_until = Some(now + BLOCK_DURATION);
            // The next window starts when the block ends.
            entry.window_start = now + BLOCK_DURATION;
            entry.count = 0;
            return Failed::Blocked;
        }
        Failed::Counted
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.table.lock().unwrap().len()
    }
}

/// The address a client is counted by: IPv4 as it is (an IPv4-mapped IPv6 address as its
/// IPv4), IPv6 by its /64.
fn counted_as(client: IpAddr) -> IpAddr {
    match client.to_canonical() {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn address(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    /// `count` addresses of 10/8, from `first` on.
    fn addresses(first: u32, count: usize) -> impl Iterator<Item = IpAddr> + Clone {
        (first..)
            .take(count)
            .map(|n| IpAddr::from(Ipv4Addr::from((10u32 << 24) | n)))
    }

    #[test]
    fn ten_failures_in_a_minute_block_that_address_for_a_minute_and_no_other() {
        let throttle = AuthThrottle::default();
        let start = Instant::now();
        let (guesser, other) = (address("127.0.0.2"), address("127.0.0.1"));
        for attempt in 1..FAILURES_BEFORE_BLOCK {
            assert_eq!(throttle.check(guesser, start), Ok(()), "{attempt}");
            assert_eq!(
                throttle.failed(guesser, start),
                Failed::Counted,
                "{attempt}"
            );
        }
        assert_eq!(throttle.failed(guesser, start), Failed::Blocked);
        assert_eq!(throttle.check(guesser, start), Err(BLOCK_DURATION));
        let later = start + Duration::from_secs(59);
        assert_eq!(throttle.check(guesser, later), Err(Duration::from_secs(1)));
        assert_eq!(throttle.check(other, later), Ok(()));
        // Over: a fresh count.
        let after = start + BLOCK_DURATION;
        assert_eq!(throttle.check(guesser, after), Ok(()));
        assert_eq!(throttle.failed(guesser, after), Failed::Counted);
    }

    #[test]
    fn failures_spread_over_more_than_a_minute_do_not_block() {
        let throttle = AuthThrottle::default();
        let start = Instant::now();
        let client = address("192.0.2.1");
        for minute in 0..3 {
            let at = start + FAILURE_WINDOW * minute;
            for _ in 1..FAILURES_BEFORE_BLOCK {
                assert_eq!(throttle.failed(client, at), Failed::Counted);
            }
        }
        // Within one window they do: a right credential in between (`check` passing) counts
        // nothing, nor starts the count again.
        let at = start + FAILURE_WINDOW * 3;
        for _ in 1..FAILURES_BEFORE_BLOCK {
            assert_eq!(throttle.failed(client, at), Failed::Counted);
        }
        assert_eq!(throttle.check(client, at), Ok(()));
        assert_eq!(throttle.failed(client, at), Failed::Blocked);
    }

    #[test]
    fn an_ipv6_host_is_counted_by_its_64_and_a_mapped_ipv4_as_ipv4() {
        let throttle = AuthThrottle::default();
        let now = Instant::now();
        for last in 0..FAILURES_BEFORE_BLOCK {
            throttle.failed(address(&format!("2001:db8::{last:x}")), now);
        }
        assert!(throttle.check(address("2001:db8::ffff"), now).is_err());
        assert!(throttle.check(address("2001:db8:0:1::1"), now).is_ok());
        for _ in 0..FAILURES_BEFORE_BLOCK {
            throttle.failed(address("::ffff:192.0.2.7"), now);
        }
        assert!(throttle.check(address("192.0.2.7"), now).is_err());
    }

    #[test]
    fn a_flood_fills_the_table_without_growing_it_blocking_a_newcomer_or_freeing_a_guesser() {
        let throttle = AuthThrottle::default();
        let start = Instant::now();
        let (blocked, nine) = (address("192.0.2.1"), address("192.0.2.2"));
        for _ in 0..FAILURES_BEFORE_BLOCK {
            throttle.failed(blocked, start);
        }
        for _ in 1..FAILURES_BEFORE_BLOCK {
            throttle.failed(nine, start);
        }
        // Past the cap, each new address takes the place of the one with the fewest failures,
        // the oldest first: the flood's own.
        let flood_start = start + Duration::from_secs(1);
        let flood = addresses(0, MAX_TRACKED_ADDRESSES + 100);
        for (client, at) in flood.clone().zip(1..) {
            let at = flood_start + Duration::from_micros(at);
            assert_eq!(throttle.check(client, at), Ok(()), "{client}");
            assert_eq!(throttle.failed(client, at), Failed::Counted, "{client}");
        }
        let now = flood_start + Duration::from_secs(1);
        assert_eq!(throttle.tracked(), MAX_TRACKED_ADDRESSES);
        // An address that has never failed is checked.
        assert_eq!(throttle.check(address("198.51.100.1"), now), Ok(()));
        // A flood address pushed out starts again at one failure.
        let pushed_out = flood.clone().next().unwrap();
        for _ in 1..FAILURES_BEFORE_BLOCK {
            assert_eq!(throttle.failed(pushed_out, now), Failed::Counted);
        }
        // The blocked address stays blocked, and the one with nine failures kept its count.
        assert!(throttle.check(blocked, now).is_err());
        assert_eq!(throttle.failed(nine, now), Failed::Blocked);
        // Once the entries are stale, they make room again.
        let later = now + BLOCK_DURATION + FAILURE_WINDOW;
        assert_eq!(
            throttle.failed(address("198.51.100.1"), later),
            Failed::Counted
        );
        assert_eq!(throttle.tracked(), 1);
    }

    #[test]
    fn a_table_full_of_blocked_addresses_keeps_them_blocked_and_counts_no_newcomer() {
        let throttle = AuthThrottle::default();
        let start = Instant::now();
        let guessers = addresses(0, MAX_TRACKED_ADDRESSES);
        for client in guessers.clone() {
            for _ in 1..FAILURES_BEFORE_BLOCK {
                throttle.failed(client, start);
            }
            assert_eq!(throttle.failed(client, start), Failed::Blocked, "{client}");
        }
        let newcomer = address("198.51.100.1");
        assert_eq!(throttle.failed(newcomer, start), Failed::Untracked);
        assert_eq!(throttle.check(newcomer, start), Ok(()));
        assert!(
            guessers
                .clone()
                .all(|client| throttle.check(client, start).is_err())
        );
        // When the blocks end, their entries (no failures since) make room first.
        let after = start + BLOCK_DURATION;
        assert_eq!(throttle.failed(newcomer, after), Failed::Counted);
        assert_eq!(throttle.tracked(), MAX_TRACKED_ADDRESSES);
    }
}
