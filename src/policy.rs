//! What a SIGHUP may change while requests are being served, held as one value and swapped
//! whole ([`crate::reload`]): the deprecation signals, the retirement schedule (brownouts, the
//! sunset's enforcement, exempt clients), the legacy reply options, the access log switch,
//! the clients' names and the admin token.
//!
//! A request reads the policy once, when it starts, and keeps that snapshot to its end: a
//! reload never changes the rules half-way through a call, and in-flight requests finish on
//! the policy they started with.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::{Config, ConfigError};
use crate::headers::deprecation::DeprecationHeaders;
use crate::legacy::reply::ReplyOptions;
use crate::retirement::Retirement;

/// The reloadable rules for legacy calls.
#[derive(Debug)]
pub struct Policy {
    pub deprecation: DeprecationHeaders,
    /// `deprecation.date`: when the legacy API was deprecated (the console shows it).
    pub deprecated_at: SystemTime,
    /// `deprecation.sunset`, when set: when it stops, or may stop, being served.
    pub sunset_at: Option<SystemTime>,
    pub retirement: Retirement,
    pub reply_options: ReplyOptions,
    /// One access-log line per request.
    pub access_log: bool,
    /// `[clients]`: fingerprint -> name.
    pub client_names: BTreeMap<String, String>,
    /// What `/`, `/usage` and `/metrics` ask for; `None`: they are open.
    pub admin_token: Option<AdminToken>,
}

/// The admin listener's bearer token, read from `admin_token_file`, and the session value the
/// console's cookie carries instead of it. Never printed.
pub struct AdminToken {
    token: Vec<u8>,
    /// SHA-256 of a fixed label and the token, in hex: a browser keeps this, not the token.
    /// Cookies are scoped by host, not port, so the cookie also reaches the main listener and
    /// any other service on the same host; what it carries opens this console and nothing
    /// else, and a rotated token makes it worthless.
    session: String,
}

impl AdminToken {
    /// Reads the token: the file's content without surrounding whitespace (a trailing newline
    /// from an editor or `echo` is not part of it). An unreadable or empty file is an error.
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        let text = crate::config::read::read_bounded_text(path).map_err(|error| {
            ConfigError(format!(
                "invalid `admin_token_file` {}: {error}",
                path.display()
            ))
        })?;
        let token = text.trim();
        if token.is_empty() {
            return Err(ConfigError(format!(
                "invalid `admin_token_file` {}: the file is empty; put the token in it, or \
                 leave the key unset for an open admin listener",
                path.display()
            )));
        }
        let digest = Sha256::new()
            .chain_update(b"explo-shim admin session\n")
            .chain_update(token.as_bytes())
            .finalize();
        let session = digest.iter().map(|byte| format!("{byte:02x}")).collect();
        Ok(Self {
            token: token.as_bytes().to_vec(),
            session,
        })
    }

    /// Whether `candidate` is the token, compared in constant time (the time taken does not
    /// tell how much of a guess was right; only a wrong length returns early).
    pub fn matches(&self, candidate: &[u8]) -> bool {
        constant_time_equal(&self.token, candidate)
    }

    /// The value the console's cookie holds once signed in.
    pub fn session(&self) -> &str {
        &self.session
    }

    /// Whether `candidate` is the session value, in constant time.
    pub fn matches_session(&self, candidate: &[u8]) -> bool {
        constant_time_equal(self.session.as_bytes(), candidate)
    }
}

fn constant_time_equal(expected: &[u8], candidate: &[u8]) -> bool {
    expected.len() == candidate.len() && bool::from(expected.ct_eq(candidate))
}

impl AdminToken {
    /// `Bearer <token>`, for the subcommands that ask the admin listener; `None` when the
    /// token cannot be a header value.
    pub fn bearer(&self) -> Option<http::HeaderValue> {
        let mut value = b"Bearer ".to_vec();
        value.extend_from_slice(&self.token);
        let mut header = http::HeaderValue::from_bytes(&value).ok()?;
        header.set_sensitive(true);
        Some(header)
    }
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
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
            deprecated_at: config.deprecation.deprecated_at,
            sunset_at: config.deprecation.sunset_at,
            retirement: config.deprecation.retirement.clone(),
            reply_options: config.legacy.clone(),
            access_log: config.access_log,
            client_names: config.clients.clone(),
            admin_token: config
                .admin_token_file
                .as_deref()
                .map(AdminToken::read)
                .transpose()?,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_the_file_without_surrounding_whitespace_and_never_printed() {
        let path = std::env::temp_dir().join(format!("explo-shim-token-{}", std::process::id()));
        std::fs::write(&path, "  s3cret-token\n").unwrap();
        let token = AdminToken::read(&path).unwrap();
        assert!(token.matches(b"s3cret-token"));
        assert!(!token.matches(b"s3cret-tokem"));
        assert!(!token.matches(b"s3cret"));
        assert!(!token.matches(b""));
        assert!(!format!("{token:?}").contains("s3cret"));
        // The session value is derived, fixed per token, and not the token.
        assert_eq!(token.session().len(), 64);
        assert!(!token.session().contains("s3cret"));
        assert!(token.matches_session(token.session().as_bytes()));
        assert!(!token.matches_session(b"s3cret-token"));
        std::fs::write(&path, " \n").unwrap();
        let error = AdminToken::read(&path).unwrap_err().to_string();
        assert!(
            error.contains("admin_token_file") && error.contains("empty"),
            "{error}"
        );
        std::fs::remove_file(&path).unwrap();
        let error = AdminToken::read(&path).unwrap_err().to_string();
        assert!(error.contains("admin_token_file"), "{error}");
    }
}
