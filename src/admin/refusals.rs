//! Refused admin credentials: what a request for a guarded path gets instead of the data, and
//! what each refusal costs: a count against its address ([`throttle`]), the metric, and a log
//! line (summarised under a flood).

use std::net::IpAddr;
use std::time::{Instant, SystemTime};

use http::Response;

use super::AdminState;
use super::auth::{self, Credential, Presented};
use super::replies::{several_credentials, throttled, unauthorized};
use super::throttle::{self, AuthThrottle, Failed};
use crate::config::policy::AdminToken;
use crate::message::body::ProxyBody;
use crate::observe::log_summary::{LogSummary, Summary};
use crate::observe::metrics::Metrics;

/// The target of this file's events: the module they were logged from before it was split
/// into files, which log filters and queries name.
const LOG_TARGET: &str = "explo_shim::admin";

/// Failed admin credentials: who is refused unchecked for a while ([`throttle`]). Their log
/// lines are summarised ([`REFUSED_LINES`], [`BLOCKED_LINES`]): a guesser must not be able to
/// fill the log.
#[derive(Debug, Default)]
pub struct AuthFailures {
    pub(super) throttle: AuthThrottle,
}

/// Refused credentials: the first line names the client and the reason, then one summary a
/// second says how many more.
static REFUSED_LINES: LogSummary = LogSummary::new(report_refused);
/// Addresses blocked by the throttle, summarised the same way.
static BLOCKED_LINES: LogSummary = LogSummary::new(report_blocked);

fn report_refused(summary: Summary) {
    tracing::warn!(target: LOG_TARGET,
        refused = summary.more,
        over_ms = u64::try_from(summary.over.as_millis()).unwrap_or(u64::MAX),
        "admin: more credentials refused since the last line"
    );
}

fn report_blocked(summary: Summary) {
    tracing::warn!(target: LOG_TARGET,
        addresses = summary.more,
        over_ms = u64::try_from(summary.over.as_millis()).unwrap_or(u64::MAX),
        "admin: more addresses refused since the last line"
    );
}

/// Why a credential was refused, as the log line says it.
#[derive(Debug, Clone, Copy)]
pub(super) enum Refusal {
    WrongToken,
    InvalidSession,
    Several,
}

impl Refusal {
    fn reason(self) -> &'static str {
        match self {
            Refusal::WrongToken => "wrong token",
            Refusal::InvalidSession => "session expired, forged or signed with an old token",
            Refusal::Several => "several credentials in one request",
        }
    }
}

impl AuthFailures {
    /// Counts one refused credential from `client`: the metric, the address's count, and a
    /// log line (the first at once, the rest summarised). Never logs the credential.
    pub(super) fn refused(&self, client: IpAddr, refusal: Refusal, metrics: &Metrics) {
        metrics.admin_auth_failed();
        let failed = self.throttle.failed(client, Instant::now());
        let reason = refusal.reason();
        if REFUSED_LINES.admit("refused") {
            tracing::warn!(target: LOG_TARGET,
                %client,
                reason,
                "admin: credential refused; more are summarised, at most one line a second"
            );
        }
        if failed == Failed::Blocked && BLOCKED_LINES.admit("blocked") {
            tracing::warn!(target: LOG_TARGET,
                %client,
                failures = throttle::FAILURES_BEFORE_BLOCK,
                window_seconds = throttle::FAILURE_WINDOW.as_secs(),
                block_seconds = throttle::BLOCK_DURATION.as_secs(),
                "admin: too many failed credentials; this address is refused unchecked for a while"
            );
        }
    }
}

/// What a request for a guarded path gets instead of the data, if anything: `None` when
/// `client`'s address is not refused for its failures and the request carries exactly one
/// credential, the right one. A page for the console (`page`), JSON for the rest.
pub(super) fn refusal(
    headers: &http::HeaderMap,
    page: bool,
    token: &AdminToken,
    state: &AdminState,
    client: IpAddr,
) -> Option<Response<ProxyBody>> {
    if let Err(wait) = state.failures.throttle.check(client, Instant::now()) {
        return Some(throttled(page, wait));
    }
    let refusal = match auth::presented(headers) {
        Presented::Nothing => return Some(unauthorized(page, None)),
        // A right credential leaves the address's failures as they are ([`throttle`]).
        Presented::One(credential) if auth::accepts(credential, token, SystemTime::now()) => {
            return None;
        }
        Presented::One(Credential::Session(_)) => Refusal::InvalidSession,
        Presented::One(_) => Refusal::WrongToken,
        Presented::Several => Refusal::Several,
    };
    state.failures.refused(client, refusal, &state.metrics);
    Some(match refusal {
        Refusal::Several => several_credentials(),
        Refusal::InvalidSession => unauthorized(
            page,
            Some("The session has ended (expired, or the token changed); sign in again."),
        ),
        Refusal::WrongToken => unauthorized(page, None),
    })
}
