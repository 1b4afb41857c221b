//! What a SIGHUP may change while requests are being served, held as one value and swapped
//! whole ([`crate::reload`]): the deprecation signals, the retirement schedule (brownouts, the
//! sunset's enforcement, exempt clients), the legacy reply options and the access log switch.
//!
//! A request reads the policy once, when it starts, and keeps that snapshot to its end: a
//! reload never changes the rules half-way through a call, and in-flight requests finish on
//! the policy they started with.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::config::{Config, ConfigError};
use crate::headers::deprecation::DeprecationHeaders;
use crate::legacy::reply::ReplyOptions;
use crate::retirement::Retirement;

/// The reloadable rules for legacy calls.
#[derive(Debug)]
pub struct Policy {
    pub deprecation: DeprecationHeaders,
    pub retirement: Retirement,
    pub reply_options: ReplyOptions,
    /// One access-log line per request.
    pub access_log: bool,
}

impl Policy {
    pub fn from_config(config: &Config) -> Result<Self, ConfigError> {
        Ok(Self {
            deprecation: DeprecationHeaders::new(
                config.deprecation.deprecated_at,
                config.deprecation.sunset_at,
            )
            .map_err(|_| {
                ConfigError("`deprecation.sunset` is earlier than `deprecation.date`".to_owned())
            })?,
            retirement: config.deprecation.retirement.clone(),
            reply_options: config.legacy.clone(),
            access_log: config.access_log,
        })
    }
}

/// The policy in service, shared by every serving thread, the admin listener and the reload.
#[derive(Clone)]
pub struct CurrentPolicy(Arc<ArcSwap<Policy>>);

impl CurrentPolicy {
    pub fn new(policy: Policy) -> Self {
        Self(Arc::new(ArcSwap::from_pointee(policy)))
    }

    /// The policy for one request, kept until it ends.
    pub fn snapshot(&self) -> Arc<Policy> {
        self.0.load_full()
    }

    /// A short look that holds nothing across an `.await`.
    pub fn peek(&self) -> arc_swap::Guard<Arc<Policy>> {
        self.0.load()
    }

    /// Puts `policy` in service for every request that starts from now on.
    pub fn replace(&self, policy: Policy) {
        self.0.store(Arc::new(policy));
    }
}
