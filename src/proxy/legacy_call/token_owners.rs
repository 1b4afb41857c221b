//! Which customer holds a token, remembered from the Customer replies the shim has seen (the
//! ones it translates or looks up, and the single-customer replies it passes through, read by
//! [`OwnerTap`] as they stream by), so a legacy delete by token rarely needs the whole list.
//!
//! Tokens embed dashboards, so the raw token is never kept: entries are keyed by a keyed hash
//! (SipHash with a per-process random key), which is useless outside this process. The map is
//! bounded; the oldest entry goes first. An entry is a hint, never proof: the workflow confirms
//! it with `get_customer` before relying on it, because a customer may have been renamed
//! (`new_provided_id`) or its token rotated by someone else since.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use crate::legacy::reply::reply_owner;
use crate::message::body::{FrameObserver, Observed, ProxyBody};

/// Entries kept: about 1 MB at typical `provided_id` lengths.
pub const DEFAULT_CAPACITY: usize = 10_000;

/// `token → provided_id`, bounded, keyed by a keyed hash of the token.
pub struct TokenOwners {
    key: RandomState,
    capacity: usize,
    entries: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    owners: HashMap<u64, String>,
    /// Keys in insertion order, for eviction. A key may appear more than once after it was
    /// forgotten and remembered again; only the map says whether it is current.
    order: VecDeque<u64>,
}

impl TokenOwners {
    pub fn new(capacity: usize) -> Self {
        Self {
            key: RandomState::new(),
            capacity: capacity.max(1),
            entries: Mutex::new(Entries::default()),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The `provided_id` last seen holding `token`.
    pub fn get(&self, token: &str) -> Option<String> {
        let key = self.key.hash_one(token);
        self.entries().owners.get(&key).cloned()
    }

    pub fn remember(&self, token: &str, provided_id: &str) {
        let key = self.key.hash_one(token);
        let mut entries = self.entries();
        if entries.owners.insert(key, provided_id.to_owned()).is_none() {
            entries.order.push_back(key);
        }
        while entries.owners.len() > self.capacity {
            let Some(oldest) = entries.order.pop_front() else {
                break;
            };
            entries.owners.remove(&oldest);
        }
        // Forgotten keys leave stale places in the queue; compact before it grows unbounded.
        if entries.order.len() > self.capacity.saturating_mul(2) {
            let Entries { owners, order } = &mut *entries;
            let mut seen = HashSet::with_capacity(owners.len());
            order.retain(|key| owners.contains_key(key) && seen.insert(*key));
        }
    }

    /// The token no longer exists (deleted, rotated) or no longer names this customer.
    pub fn forget(&self, token: &str) {
        let key = self.key.hash_one(token);
        self.entries().owners.remove(&key);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries().owners.len()
    }
}

/// The most of a passed-through reply [`OwnerTap`] keeps to read; a single customer is far
/// smaller, and a larger reply is let go unread.
const TAP_LIMIT: usize = 64 * 1024;

/// A passed-through single-customer reply (`create_customer`, `update_customer`,
/// `get_customer`, `refresh_customer_token`), streamed to the client unchanged while a copy of
/// at most [`TAP_LIMIT`] bytes is kept; at its end the customer's token and `provided_id` are
/// remembered.
pub struct OwnerTap {
    copy: Vec<u8>,
    /// Too large, or already read: nothing more to keep.
    done: bool,
    owners: Arc<TokenOwners>,
}

impl OwnerTap {
    /// `reply`, streamed as it comes, read on the way.
    pub fn tap(reply: ProxyBody, owners: Arc<TokenOwners>) -> Observed<ProxyBody, Self> {
        Observed::new(
            reply,
            Self {
                copy: Vec::new(),
                done: false,
                owners,
            },
        )
    }
}

impl FrameObserver for OwnerTap {
    fn data(&mut self, data: &Bytes) {
        if self.done {
            return;
        }
        if self.copy.len() + data.len() > TAP_LIMIT {
            self.done = true;
            self.copy = Vec::new();
        } else {
            self.copy.extend_from_slice(data);
        }
    }

    fn ended(&mut self) {
        if !self.done {
            self.done = true;
            if let Some(owner) = reply_owner(&self.copy) {
                self.owners.remember(&owner.token, &owner.provided_id);
            }
            self.copy = Vec::new();
        }
    }

    /// A broken reply teaches nothing.
    fn failed(&mut self) {
        self.done = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_and_forgets() {
        let owners = TokenOwners::new(10);
        assert_eq!(owners.get("t1"), None);
        owners.remember("t1", "a");
        owners.remember("t2", "b");
        assert_eq!(owners.get("t1").as_deref(), Some("a"));
        owners.remember("t1", "renamed");
        assert_eq!(owners.get("t1").as_deref(), Some("renamed"));
        owners.forget("t1");
        assert_eq!(owners.get("t1"), None);
        assert_eq!(owners.get("t2").as_deref(), Some("b"));
    }

    #[test]
    fn the_oldest_entry_goes_first_and_the_size_is_bounded() {
        let owners = TokenOwners::new(3);
        for n in 0..10 {
            owners.remember(&format!("t{n}"), &format!("c{n}"));
        }
        assert_eq!(owners.len(), 3);
        assert_eq!(owners.get("t6"), None);
        assert_eq!(owners.get("t9").as_deref(), Some("c9"));
        // Forgetting and remembering again keeps the queue bounded too.
        for _ in 0..100 {
            owners.forget("t9");
            owners.remember("t9", "c9");
        }
        assert!(owners.entries().order.len() <= 6);
        assert_eq!(owners.len(), 3);
    }

    #[tokio::test]
    async fn a_tapped_reply_streams_unchanged_and_teaches_its_owner() {
        use http_body_util::BodyExt;
        let owners = Arc::new(TokenOwners::new(3));
        let reply = r#"{"success": 1, "customer": {"token": "tk", "provided_id": "p"}}"#;
        let tapped = OwnerTap::tap(crate::message::body::full_body(reply), Arc::clone(&owners));
        let streamed = tapped.collect().await.unwrap().to_bytes();
        assert_eq!(&streamed[..], reply.as_bytes());
        assert_eq!(owners.get("tk").as_deref(), Some("p"));

        let large = format!(
            r#"{{"customer": {{"token": "big", "provided_id": "p", "pad": "{}"}}}}"#,
            "x".repeat(TAP_LIMIT)
        );
        let tapped = OwnerTap::tap(
            crate::message::body::full_body(large.clone()),
            Arc::clone(&owners),
        );
        assert_eq!(
            tapped.collect().await.unwrap().to_bytes().len(),
            large.len()
        );
        assert_eq!(owners.get("big"), None, "too large to read");
    }

    #[test]
    fn the_raw_token_is_not_kept() {
        let owners = TokenOwners::new(3);
        owners.remember("secret-token-value", "c");
        let entries = owners.entries();
        let debug = format!("{:?} {:?}", entries.owners, entries.order);
        assert!(!debug.contains("secret-token-value"));
    }
}
