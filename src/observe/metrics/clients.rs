//! The tracked clients: the client label's bounded set. A client is named by a keyed hash of
//! its credential (never the credential itself), so the SHA-256 of the fingerprint runs once
//! per client rather than once per call, and it is only placed once its call is over and the
//! upstream's verdict is known ([`Metrics::settle`]); who gives way when the table is full is
//! the rule of [`super::eviction`].

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex, MutexGuard};

use http::HeaderValue;

use super::Metrics;
use super::eviction::{OTHER_CLIENTS, Placement, Standing, place};
use super::labels::{LegacyCallLabels, STATUS_CLASSES};
use crate::legacy::route::LegacyRoute;
use crate::message::fingerprint::{ANONYMOUS, client_fingerprint, is_blank};

/// A calling client, as the logs name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    /// 12 hex digits of the SHA-256 of the credential (see [`client_fingerprint`]).
    pub fingerprint: Arc<String>,
    /// A keyed hash of the credential, its place in the table; `None` without one.
    credential_key: Option<u64>,
}

/// Where a call's client is counted, once the call is over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    /// The fingerprint, or `other` when the table had no place for it.
    pub label: Arc<String>,
    /// A never-accepted client whose place this one took: drop its records too.
    pub evicted: Option<Arc<String>>,
}

/// The table, at most `max_clients` long.
#[derive(Debug)]
pub(super) struct ClientTable {
    max_clients: usize,
    tracked: Mutex<Tracked>,
    /// The key of the credential hashes: random per process, so a table's layout cannot be
    /// aimed at.
    credential_key: RandomState,
}

#[derive(Debug, Default)]
struct Tracked {
    clients: HashMap<u64, TrackedClient>,
    /// Clients placed so far: each one's `standing.placed`.
    placements: u64,
}

/// One client in the table.
#[derive(Debug)]
struct TrackedClient {
    fingerprint: Arc<String>,
    standing: Standing,
}

impl ClientTable {
    pub(super) fn new(max_clients: usize) -> Self {
        Self {
            max_clients,
            tracked: Mutex::new(Tracked::default()),
            credential_key: RandomState::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Tracked> {
        self.tracked
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn identify(&self, authorization: Option<&HeaderValue>) -> ClientIdentity {
        let Some(credential) = authorization.filter(|value| !is_blank(value)) else {
            return ClientIdentity {
                fingerprint: Arc::new(ANONYMOUS.to_owned()),
                credential_key: None,
            };
        };
        let key = self.credential_key.hash_one(credential.as_bytes());
        let known = self
            .lock()
            .clients
            .get(&key)
            .map(|tracked| Arc::clone(&tracked.fingerprint));
        ClientIdentity {
            fingerprint: known.unwrap_or_else(|| Arc::new(client_fingerprint(Some(credential)))),
            credential_key: Some(key),
        }
    }

    fn settle(&self, client: &ClientIdentity, accepted: bool) -> Placed {
        let placed_as_itself = |evicted| Placed {
            label: Arc::clone(&client.fingerprint),
            evicted,
        };
        // Without credentials there is nothing to rank; `anonymous` is one fixed label.
        let Some(key) = client.credential_key else {
            return placed_as_itself(None);
        };
        let mut table = self.lock();
        let Tracked {
            clients,
            placements,
        } = &mut *table;
        if let Some(tracked) = clients.get_mut(&key) {
            tracked.standing.accepted |= accepted;
            return placed_as_itself(None);
        }
        let standings = clients
            .iter()
            .map(|(key, tracked)| (*key, tracked.standing));
        let evicted = match place(standings, clients.len(), self.max_clients, accepted) {
            Placement::Track => None,
            Placement::Displace(victim) => clients.remove(&victim).map(|gone| gone.fingerprint),
            Placement::Other => {
                return Placed {
                    label: Arc::new(OTHER_CLIENTS.to_owned()),
                    evicted: None,
                };
            }
        };
        *placements += 1;
        let standing = Standing {
            accepted,
            placed: *placements,
        };
        let fingerprint = Arc::clone(&client.fingerprint);
        clients.insert(
            key,
            TrackedClient {
                fingerprint,
                standing,
            },
        );
        placed_as_itself(evicted)
    }
}

impl Metrics {
    /// Who is calling: the fingerprint of `authorization`. Takes no place in the table; that
    /// waits for the upstream's verdict ([`Metrics::settle`]).
    pub fn identify(&self, authorization: Option<&HeaderValue>) -> ClientIdentity {
        self.clients.identify(authorization)
    }

    /// Places `client` once its call is over; `accepted` when the upstream answered it with
    /// anything but 401 or 403. Returns the label its call counts under, and the client it
    /// displaced, whose metric series are removed here (the caller drops its other records).
    pub fn settle(&self, client: &ClientIdentity, accepted: bool) -> Placed {
        let placed = self.clients.settle(client, accepted);
        if let Some(fingerprint) = &placed.evicted {
            self.forget_client(fingerprint);
        }
        placed
    }

    /// Removes every `legacy_calls` series of `client`, so a displaced client's label does not
    /// stay in the exposition for good.
    fn forget_client(&self, client: &Arc<String>) {
        for route in LegacyRoute::ALL {
            for status_class in STATUS_CLASSES {
                self.legacy_calls.remove(&LegacyCallLabels {
                    endpoint: route.legacy_endpoint(),
                    status_class,
                    client: Arc::clone(client),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::eviction::cases::{CASES, Counted};
    use super::*;

    fn token(value: &'static str) -> HeaderValue {
        HeaderValue::from_static(value)
    }

    /// Settles one call by `credential` and returns its label.
    fn settled(metrics: &Metrics, credential: &'static str, accepted: bool) -> String {
        let client = metrics.identify(Some(&token(credential)));
        metrics.settle(&client, accepted).label.to_string()
    }

    #[test]
    fn fingerprints_past_the_cap_count_as_other() {
        let metrics = Metrics::new(2);
        let first = metrics.identify(Some(&token("Token a")));
        assert_eq!(
            first.fingerprint.as_str(),
            client_fingerprint(Some(&token("Token a")))
        );
        assert_eq!(metrics.settle(&first, true).label, first.fingerprint);
        assert_eq!(
            settled(&metrics, "Token b", true),
            client_fingerprint(Some(&token("Token b")))
        );
        let third = metrics.identify(Some(&token("Token c")));
        assert_eq!(
            third.fingerprint.as_str(),
            client_fingerprint(Some(&token("Token c")))
        );
        assert_eq!(metrics.settle(&third, true).label.as_str(), OTHER_CLIENTS);
        assert_eq!(metrics.identify(Some(&token("Token a"))), first);
        let anonymous = metrics.identify(None);
        assert_eq!(metrics.settle(&anonymous, false).label.as_str(), ANONYMOUS);
    }

    #[test]
    fn an_accepted_client_displaces_the_oldest_never_accepted_one() {
        let metrics = Metrics::new(3);
        let refused = ["Token r1", "Token r2", "Token r3"];
        for credential in refused {
            let client = metrics.identify(Some(&token(credential)));
            let placed = metrics.settle(&client, false);
            assert_eq!(placed.label, client.fingerprint, "room: tracked");
            metrics.legacy_call(LegacyRoute::UpdateUserGroup, 401, &placed.label);
        }
        // A fourth refused client finds no room and displaces nobody.
        assert_eq!(settled(&metrics, "Token r4", false), OTHER_CLIENTS);
        // A real team does: the oldest refused one goes, with its metric series.
        let team = metrics.identify(Some(&token("Token team")));
        let placed = metrics.settle(&team, true);
        assert_eq!(placed.label, team.fingerprint);
        let first_refused = client_fingerprint(Some(&token(refused[0])));
        assert_eq!(placed.evicted.as_deref(), Some(&first_refused));
        let text = metrics.encode();
        assert!(!text.contains(&first_refused), "{text}");
        assert!(text.contains(&client_fingerprint(Some(&token(refused[1])))));
        // A tracked client accepted later is never displaced.
        assert_eq!(
            settled(&metrics, refused[1], true),
            client_fingerprint(Some(&token(refused[1])))
        );
        settled(&metrics, "Token team2", true);
        assert_eq!(settled(&metrics, "Token team3", true), OTHER_CLIENTS);
        assert_eq!(
            settled(&metrics, refused[1], false),
            client_fingerprint(Some(&token(refused[1])))
        );
    }

    #[test]
    fn the_local_table_follows_every_shared_case() {
        for case in CASES {
            let metrics = Metrics::new(case.cap);
            let fingerprint = |client: &str| {
                let credential = HeaderValue::from_str(&format!("Token {client}")).unwrap();
                client_fingerprint(Some(&credential))
            };
            for (index, call) in case.calls.iter().enumerate() {
                let credential = HeaderValue::from_str(&format!("Token {}", call.client)).unwrap();
                let identity = if call.client == ANONYMOUS {
                    metrics.identify(None)
                } else {
                    metrics.identify(Some(&credential))
                };
                let own = if call.client == ANONYMOUS {
                    ANONYMOUS.to_owned()
                } else {
                    fingerprint(call.client)
                };
                let (label, evicted) = match call.counted {
                    Counted::Itself => (own, None),
                    Counted::Displacing(victim) => (own, Some(fingerprint(victim))),
                    Counted::Other => (OTHER_CLIENTS.to_owned(), None),
                };
                let placed = metrics.settle(&identity, call.accepted);
                assert_eq!(
                    (
                        placed.label.as_str(),
                        placed.evicted.as_deref().map(String::as_str)
                    ),
                    (label.as_str(), evicted.as_deref()),
                    "{}: call {index}",
                    case.name
                );
            }
        }
    }
}
