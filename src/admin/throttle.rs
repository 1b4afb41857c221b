//! Failed admin credentials, counted per client address: an address that fails
//! [`FAILURES_BEFORE_BLOCK`] times within [`FAILURE_WINDOW`] is refused for
//! [`BLOCK_DURATION`], unchecked, so guessing the token runs at a few tries a minute rather
//! than as fast as the listener answers. Another address is unaffected; probes never come
//! here. A right credential does not start an address's count again: behind one NAT
//! address, a scraper with the token must not wipe a guesser's failures every scrape. The
//! failures age out of the window instead.
//!
//! IPv6 clients are counted by their /64, the block a single host is usually given. The table
//! holds at most [`MAX_TRACKED_ADDRESSES`]: past it, stale entries are dropped, and while it
//! is still full the addresses without a place share one entry, so a flood of addresses
//! cannot grow it, nor escape the count.

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

/// Whom an entry counts: one address (IPv6 by its /64), or everyone without a place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Address(IpAddr),
    Overflow,
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    window_start: Instant,
    count: u32,
    blocked_until: Option<Instant>,
}

impl Failures {
    /// Whether the entry says nothing any more at `now`: its window and any block are over.
    fn is_stale(&self, now: Instant) -> bool {
        self.blocked_until.is_none_or(|until| until <= now)
            && now.duration_since(self.window_start) >= FAILURE_WINDOW
    }
}

/// What a failure did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failed {
    Counted,
    /// This failure was the last allowed: the address is refused from now on, for
    /// [`BLOCK_DURATION`].
    Blocked,
}

/// The failure counts, shared by every admin connection.
#[derive(Debug, Default)]
pub struct AuthThrottle {
    table: Mutex<HashMap<Key, Failures>>,
}

impl AuthThrottle {
    /// `Err(wait)` while `client` is refused: how long until it may try again.
    pub fn check(&self, client: IpAddr, now: Instant) -> Result<(), Duration> {
        let table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        let key = Key::Address(counted_as(client));
        let entry = match table.get(&key) {
            Some(entry) => Some(entry),
            None if table.len() >= MAX_TRACKED_ADDRESSES => table.get(&Key::Overflow),
            None => None,
        };
        match entry.and_then(|entry| entry.blocked_until) {
            Some(until) if until > now => Err(until - now),
            _ => Ok(()),
        }
    }

    /// Counts one failed credential from `client` at `now`.
    pub fn failed(&self, client: IpAddr, now: Instant) -> Failed {
        let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        let mut key = Key::Address(counted_as(client));
        if !table.contains_key(&key) && table.len() >= MAX_TRACKED_ADDRESSES {
            table.retain(|_, entry| !entry.is_stale(now));
            if table.len() >= MAX_TRACKED_ADDRESSES {
                key = Key::Overflow;
            }
        }
        let entry = table.entry(key).or_insert(Failures {
            window_start: now,
            count: 0,
            blocked_until: None,
        });
        if entry.is_stale(now) {
            *entry = Failures {
                window_start: now,
                count: 0,
                blocked_until: None,
            };
        }
        entry.count = entry.count.saturating_add(1);
        if entry.count >= FAILURES_BEFORE_BLOCK
            && entry.blocked_until.is_none_or(|until| until <= now)
        {
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
    use super::*;

    fn address(text: &str) -> IpAddr {
        text.parse().unwrap()
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
    fn a_flood_of_addresses_never_grows_the_table_past_its_cap_nor_escapes_the_count() {
        let throttle = AuthThrottle::default();
        let now = Instant::now();
        let mut flood = (0..MAX_TRACKED_ADDRESSES as u32 + 100)
            .map(|n| IpAddr::from(std::net::Ipv4Addr::from((10u32 << 24) | n)));
        for client in flood.clone() {
            throttle.failed(client, now);
        }
        assert_eq!(
            throttle.tracked(),
            MAX_TRACKED_ADDRESSES + 1,
            "the cap and one shared entry"
        );
        // The 100 addresses without a place shared one count, so they are blocked, and so is
        // any other without a place.
        assert!(throttle.check(flood.next_back().unwrap(), now).is_err());
        assert!(throttle.check(address("198.51.100.1"), now).is_err());
        // A tracked address keeps its own count.
        assert!(throttle.check(address("10.0.0.1"), now).is_ok());
        // Once the entries are stale, they make room again.
        let later = now + FAILURE_WINDOW + BLOCK_DURATION;
        assert_eq!(
            throttle.failed(address("198.51.100.1"), later),
            Failed::Counted
        );
        assert_eq!(throttle.tracked(), 1);
    }
}
