//! What a SIGHUP may change while requests are being served, held as one value and swapped
//! whole ([`crate::server::reload`]): the deprecation signals, the retirement schedule (brownouts, the
//! sunset's enforcement, exempt clients), the legacy reply options, the access log switch,
//! the clients' names and the admin token.
//!
//! A request reads the policy once, when it starts, and keeps that snapshot to its end: a
//! reload never changes the rules half-way through a call, and in-flight requests finish on
//! the policy they started with.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::config::{Config, ConfigError};
use crate::legacy::reply::ReplyOptions;
use crate::legacy::retirement::Retirement;
use crate::message::headers::deprecation::DeprecationHeaders;

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
    /// `admin_allowed_hosts`: without a token, the `Host` names besides IP literals and
    /// `localhost` that `/`, `/usage` and `/metrics` answer to (lower case).
    pub admin_allowed_hosts: BTreeSet<String>,
}

/// A token shorter than this many characters gets a warning: it can be guessed more easily
/// than 32 random hex characters (128 bits), which `openssl rand -hex 32` doubles.
pub const ADMIN_TOKEN_MIN_CHARS: usize = 32;

/// How long a console session lasts from sign-in, in the cookie's `Max-Age` and in the expiry
/// the cookie value carries: a working day, so a cookie copied off a machine is not good
/// for ever.
pub const ADMIN_SESSION_LIFETIME: Duration = Duration::from_secs(12 * 60 * 60);

/// How far in the future a session's expiry may lie past [`ADMIN_SESSION_LIFETIME`]: another
/// replica that signed it may have a clock this far ahead of ours.
const ADMIN_SESSION_CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);

/// What the signature of a session covers besides its expiry, so that no other value keyed
/// by the token can pass for a session.
const ADMIN_SESSION_LABEL: &[u8] = b"explo-shim admin session v1\n";

type HmacSha256 = Hmac<Sha256>;

/// The admin listener's bearer token, read from `admin_token_file`. Never printed.
///
/// A signed-in browser keeps a session value instead of the token: `<expiry>.<signature>`,
/// the expiry in Unix seconds and the signature HMAC-SHA256 keyed by the token over a fixed
/// label and the expiry, in hex. Every replica that shares the token can check it without
/// shared state; a rotated token makes every session worthless. Cookies are scoped by host,
/// not port, so the cookie also reaches the main listener and any other service on the same
/// host: what it carries opens this console until it expires, and nothing else.
#[derive(Clone)]
pub struct AdminToken {
    token: Vec<u8>,
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
        Ok(Self {
            token: token.as_bytes().to_vec(),
        })
    }

    /// Whether `candidate` is the token, compared in constant time (the time taken does not
    /// tell how much of a guess was right; only a wrong length returns early).
    pub fn matches(&self, candidate: &[u8]) -> bool {
        constant_time_equal(&self.token, candidate)
    }

    /// Whether `other` holds the same token (a reload that read the file again).
    pub fn same_as(&self, other: &AdminToken) -> bool {
        self.matches(&other.token)
    }

    /// Whether the token is shorter than [`ADMIN_TOKEN_MIN_CHARS`].
    pub fn is_short(&self) -> bool {
        String::from_utf8_lossy(&self.token).chars().count() < ADMIN_TOKEN_MIN_CHARS
    }

    /// Warns, never naming the token, when it is short; at start-up and when a reload reads
    /// a new one.
    pub fn warn_if_short(&self) {
        if self.is_short() {
            tracing::warn!(
                min_chars = ADMIN_TOKEN_MIN_CHARS,
                "the admin token in `admin_token_file` is shorter than {ADMIN_TOKEN_MIN_CHARS} \
                 characters, so easier to guess; make a strong one with \
                 `openssl rand -hex 32 > FILE` and point `admin_token_file` at that file"
            );
        }
    }

    /// A session value that is good until `expires_at`.
    pub fn session_until(&self, expires_at: SystemTime) -> String {
        let expiry = unix_seconds(expires_at);
        let signature = self.session_mac(expiry).finalize().into_bytes();
        let mut value = format!("{expiry}.");
        for byte in signature {
            value.push_str(&format!("{byte:02x}"));
        }
        value
    }

    /// Whether `candidate` is a session value signed with this token and good at `now`. The
    /// signature is compared in constant time.
    pub fn accepts_session(&self, candidate: &[u8], now: SystemTime) -> bool {
        let Some((expiry, signature)) = parse_session(candidate) else {
            return false;
        };
        let now = unix_seconds(now);
        let latest = now
            .saturating_add(ADMIN_SESSION_LIFETIME.as_secs())
            .saturating_add(ADMIN_SESSION_CLOCK_SKEW.as_secs());
        // Checked even when the expiry is out of range, so the time taken tells nothing.
        let signed = self.session_mac(expiry).verify_slice(&signature).is_ok();
        signed && expiry > now && expiry <= latest
    }

    fn session_mac(&self, expiry: u64) -> HmacSha256 {
        // HMAC takes a key of any length; the error cannot happen.
        let mut mac = HmacSha256::new_from_slice(&self.token)
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of every length"));
        mac.update(ADMIN_SESSION_LABEL);
        mac.update(expiry.to_string().as_bytes());
        mac
    }
}

/// The most digits an expiry in Unix seconds has (`u64::MAX`).
const MAX_EXPIRY_DIGITS: usize = 20;
/// Hex digits of an HMAC-SHA256 signature.
const SIGNATURE_HEX_DIGITS: usize = 64;

/// `<expiry>.<signature>` as the expiry and the signature's bytes; `None` when malformed.
fn parse_session(candidate: &[u8]) -> Option<(u64, [u8; SIGNATURE_HEX_DIGITS / 2])> {
    let dot = candidate.iter().position(|byte| *byte == b'.')?;
    let (expiry, signature) = (&candidate[..dot], &candidate[dot + 1..]);
    if expiry.is_empty()
        || expiry.len() > MAX_EXPIRY_DIGITS
        || !expiry.iter().all(u8::is_ascii_digit)
        || signature.len() != SIGNATURE_HEX_DIGITS
    {
        return None;
    }
    let expiry = std::str::from_utf8(expiry).ok()?.parse().ok()?;
    let mut bytes = [0; SIGNATURE_HEX_DIGITS / 2];
    for (byte, pair) in bytes.iter_mut().zip(signature.chunks_exact(2)) {
        *byte = (hex_digit(pair[0])? << 4) | hex_digit(pair[1])?;
    }
    Some((expiry, bytes))
}

fn hex_digit(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        _ => None,
    }
}

fn unix_seconds(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
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
        let admin_token = config
            .admin_token_file
            .as_deref()
            .map(AdminToken::read)
            .transpose()?;
        Self::with_admin_token(config, admin_token)
    }

    /// [`Policy::from_config`], with the admin token given rather than read from
    /// `admin_token_file` (a reload that keeps the running one).
    pub fn with_admin_token(
        config: &Config,
        admin_token: Option<AdminToken>,
    ) -> Result<Self, ConfigError> {
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
            admin_token,
            admin_allowed_hosts: config.admin_allowed_hosts.clone(),
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
        // A session is signed with the token and carries its expiry, not the token.
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let session = token.session_until(now + ADMIN_SESSION_LIFETIME);
        assert!(!session.contains("s3cret"));
        assert!(session.starts_with("1800043200."), "{session}");
        assert!(token.accepts_session(session.as_bytes(), now));
        assert!(!token.accepts_session(session.as_bytes(), now + ADMIN_SESSION_LIFETIME));
        assert!(!token.accepts_session(b"s3cret-token", now));
        assert!(token.is_short());
        std::fs::write(&path, "s3cret-token-that-is-long-enough-0123").unwrap();
        let rotated = AdminToken::read(&path).unwrap();
        assert!(!rotated.is_short() && !rotated.same_as(&token));
        assert!(!rotated.accepts_session(session.as_bytes(), now));
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

    #[test]
    fn a_session_is_refused_once_expired_forged_or_too_far_ahead() {
        let path = std::env::temp_dir().join(format!("explo-shim-session-{}", std::process::id()));
        std::fs::write(&path, "key").unwrap();
        let token = AdminToken::read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        // RFC 4231-style check of the construction: HMAC-SHA256("key", label + expiry).
        let mut mac = HmacSha256::new_from_slice(b"key").unwrap();
        mac.update(b"explo-shim admin session v1\n1800000060");
        let expected: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        let session = token.session_until(now + Duration::from_secs(60));
        assert_eq!(session, format!("1800000060.{expected}"));
        assert!(token.accepts_session(session.as_bytes(), now));
        // Expired, a second past.
        assert!(!token.accepts_session(session.as_bytes(), now + Duration::from_secs(60)));
        // A later expiry under the old signature.
        let forged = session.replacen("1800000060", "1800000061", 1);
        assert!(!token.accepts_session(forged.as_bytes(), now));
        // Signed, but further ahead than any sign-in gives.
        let far = token.session_until(now + ADMIN_SESSION_LIFETIME * 2);
        assert!(!token.accepts_session(far.as_bytes(), now));
        for malformed in [
            &b""[..],
            b".",
            b"1800000060.",
            b"x.ab",
            &session.as_bytes()[1..],
        ] {
            assert!(!token.accepts_session(malformed, now), "{malformed:?}");
        }
        let upper = session.to_uppercase();
        assert!(!token.accepts_session(upper.as_bytes(), now));
    }
}
