//! SIGHUP, or a change to a watched file ([`crate::server::file_watch`]): read the config file
//! again, validate it whole, and put what may change while serving in service at once; or
//! refuse it and change nothing. Both take the same path, one at a time
//! ([`crate::server::reloading`]), and write the same lines, which name the trigger.
//!
//! The file is resolved exactly as at start-up, with the same flags and environment on top
//! (a value pinned by a flag stays pinned). What changes live: the deprecation dates and the
//! retirement schedule (brownouts, `after_sunset`, `exempt_clients`), the legacy reply options
//! (`legacy.team_id`, `api_environment_tag`, `extra_customer_keys`), the rate-limit figures,
//! `log_level`, `access_log`, the TLS certificate and key, `shutdown.delay`, the clients'
//! names (`[clients]`) and the admin token (`admin_token_file`, read again).
//! Each is swapped whole ([`crate::config::policy`]): a request keeps the rules it started with.
//!
//! What is bound at start-up (the listeners, `workers`, the upstream and its connections,
//! `limits`, `log_format`, `shutdown.grace`, the fleet's Redis, whether the budget or TLS is on at all,
//! `legacy.refuse_cascading_delete`) needs a restart: a changed value is logged, naming the
//! key, and the running one kept. So does turning the admin token off: a signal alone must
//! not open the console, `/usage` and `/metrics` to anyone who can reach the admin port.
//!
//! The files are read ([`ReloadInputs::prepare`]) on a blocking thread with no lock held, each
//! with the clock and cap of [`crate::config::read`]; only the swap ([`Reloader::finish`])
//! takes the lock, so a FIFO or a hung mount never holds up the probes or the stop signals.

use std::sync::Arc;
use std::time::SystemTime;

use crate::config::policy::{AdminToken, CurrentPolicy, Policy};
use crate::config::{Config, ConfigError, FleetSettings, Overrides};
use crate::observe::metrics::Metrics;
use crate::observe::telemetry::LogFilter;
use crate::server::tls::InboundTls;
use crate::upstream::BudgetFigures;

/// What asked for a reload; the log lines name it (`trigger`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// SIGHUP: always reloads.
    Hangup,
    /// A watched file changed ([`crate::server::file_watch`]).
    FileChange,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hangup => "SIGHUP",
            Self::FileChange => "file change",
        }
    }
}

/// A key whose new value waits for a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeedsRestart {
    pub key: &'static str,
    pub running: String,
    pub in_file: String,
}

/// The keys of `fresh` that differ from `running` but cannot change while serving.
pub fn restart_only_changes(running: &Config, fresh: &Config) -> Vec<NeedsRestart> {
    let mut changes = Vec::new();
    let mut compare = |key: &'static str, running: String, in_file: String| {
        if running != in_file {
            changes.push(NeedsRestart {
                key,
                running,
                in_file,
            });
        }
    };
    let workers = |config: &Config| {
        config
            .workers
            .map_or_else(|| "auto".to_owned(), |count| count.to_string())
    };
    let other_upstream = |config: &Config| {
        let mut upstream = config.upstream.clone();
        upstream.url = running.upstream.url.clone();
        format!("{upstream:?}")
    };
    let on_off = |on: bool| if on { "on" } else { "off" }.to_owned();
    // The fleet's URL may hold a password: compared whole, shown redacted, and a change of the
    // password alone still shows as a change.
    let fleet_url = |config: &Config| match &config.fleet {
        Some(fleet) if Some(&fleet.redis_url) != running.fleet.as_ref().map(|f| &f.redis_url) => {
            format!(
                "{} (changed)",
                fleet.redacted_url().unwrap_or_else(|| "unset".to_owned())
            )
        }
        Some(fleet) => fleet.redacted_url().unwrap_or_else(|| "unset".to_owned()),
        None => "unset".to_owned(),
    };
    // The same for the sentinels, whose URLs may hold passwords too.
    let sentinels = |config: &Config| {
        let of = |config: &Config| config.fleet.as_ref().and_then(|f| f.sentinels.clone());
        match of(config) {
            Some(nodes) if Some(&nodes) != of(running).as_ref() => format!("{nodes:?} (changed)"),
            Some(nodes) => format!("{nodes:?}"),
            None => "unset".to_owned(),
        }
    };
    let fleet_field = |config: &Config, field: fn(&FleetSettings) -> String| {
        config.fleet.as_ref().map_or_else(String::new, field)
    };
    compare(
        "listen",
        running.listen.to_string(),
        fresh.listen.to_string(),
    );
    compare("admin", running.admin.to_string(), fresh.admin.to_string());
    compare("workers", workers(running), workers(fresh));
    compare(
        "log_format",
        format!("{:?}", running.log_format).to_lowercase(),
        format!("{:?}", fresh.log_format).to_lowercase(),
    );
    compare(
        "upstream.url",
        running.upstream.url.to_string(),
        fresh.upstream.url.to_string(),
    );
    compare("upstream", other_upstream(running), other_upstream(fresh));
    compare(
        "limits",
        format!("{:?}", running.limits),
        format!("{:?}", fresh.limits),
    );
    compare(
        "rate_limit.enabled",
        running.rate_limit.is_some().to_string(),
        fresh.rate_limit.is_some().to_string(),
    );
    compare("rate_limit.redis_url", fleet_url(running), fleet_url(fresh));
    compare(
        "rate_limit.redis_sentinels",
        sentinels(running),
        sentinels(fresh),
    );
    compare(
        "rate_limit.key",
        fleet_field(running, |fleet| fleet.key.clone()),
        fleet_field(fresh, |fleet| fleet.key.clone()),
    );
    compare(
        "rate_limit.redis_timeout",
        fleet_field(running, |fleet| format!("{:?}", fleet.timeout)),
        fleet_field(fresh, |fleet| format!("{:?}", fleet.timeout)),
    );
    compare(
        "legacy.refuse_cascading_delete",
        running.legacy_behaviour.refuse_cascading_delete.to_string(),
        fresh.legacy_behaviour.refuse_cascading_delete.to_string(),
    );
    compare(
        "shutdown.grace",
        humantime::format_duration(running.shutdown_grace).to_string(),
        humantime::format_duration(fresh.shutdown_grace).to_string(),
    );
    compare(
        "tls",
        on_off(running.tls.is_some()),
        on_off(fresh.tls.is_some()),
    );
    // Turning the token off would open the console, /usage and /metrics to anyone who can
    // reach the admin port, on a signal alone: only a restart may do that. Another file, or a
    // token where there was none, is taken at once.
    if let (Some(path), None) = (&running.admin_token_file, &fresh.admin_token_file) {
        changes.push(NeedsRestart {
            key: "admin_token_file",
            running: path.display().to_string(),
            in_file: "unset".to_owned(),
        });
    }
    changes
}

/// The config to run with after a reload: `fresh` for what may change while serving, the
/// running values for the rest.
pub fn applied(running: &Config, fresh: Config) -> Config {
    Config {
        listen: running.listen,
        admin: running.admin,
        workers: running.workers,
        log_format: running.log_format,
        upstream: running.upstream.clone(),
        limits: running.limits.clone(),
        legacy_behaviour: running.legacy_behaviour.clone(),
        fleet: running.fleet.clone(),
        // On or off stays as bound at start-up; the figures and files are the file's, or the
        // running ones where the file turned the feature off (which needs a restart).
        rate_limit: running
            .rate_limit
            .as_ref()
            .map(|kept| fresh.rate_limit.clone().unwrap_or_else(|| kept.clone())),
        tls: running
            .tls
            .as_ref()
            .map(|kept| fresh.tls.clone().unwrap_or_else(|| kept.clone())),
        // The serving threads were given their grace period when they started.
        shutdown_grace: running.shutdown_grace,
        admin_token_file: fresh
            .admin_token_file
            .clone()
            .or_else(|| running.admin_token_file.clone()),
        ..fresh
    }
}

/// Everything a reload changes, and the config now in service.
pub struct Reloader {
    overrides: Overrides,
    running: Config,
    pub policy: CurrentPolicy,
    pub tls: Option<Arc<InboundTls>>,
    pub budget: Option<BudgetFigures>,
    pub log_filter: LogFilter,
    pub metrics: Arc<Metrics>,
    /// The files start-up read, with the digests of their bytes: taken by the file watch's
    /// first fingerprint ([`crate::server::reloading::Reloads::remember_files`]).
    pub read_at_start: Vec<(std::path::PathBuf, crate::config::read::Digest)>,
}

impl Reloader {
    /// `running` is the config as resolved at start-up (before `--demo` points it elsewhere),
    /// so that the next reload compares like with like.
    pub fn new(
        overrides: Overrides,
        running: Config,
        policy: CurrentPolicy,
        metrics: Arc<Metrics>,
    ) -> Self {
        metrics.config_loaded(unix_seconds(SystemTime::now()));
        metrics.sunset(policy.peek().sunset_at);
        Self {
            overrides,
            running,
            policy,
            tls: None,
            budget: None,
            log_filter: LogFilter::default(),
            metrics,
            read_at_start: Vec::new(),
        }
    }

    /// The config in service.
    pub fn running(&self) -> &Config {
        &self.running
    }

    /// The config file every reload reads (`--config`, `EXPLO_SHIM_CONFIG`), if any.
    pub fn config_file(&self) -> Option<&std::path::Path> {
        self.overrides.config.as_deref()
    }

    /// What a reload starts from: a copy, so that the files can be read with no lock held.
    pub fn reload_inputs(&self) -> ReloadInputs {
        ReloadInputs {
            overrides: self.overrides.clone(),
            running: self.running.clone(),
            running_admin_token: self.policy.peek().admin_token.clone(),
            tls_on: self.tls.is_some(),
        }
    }

    /// Puts what [`ReloadInputs::prepare`] built in service, or, when it failed, keeps
    /// everything as it is; logs and counts either way.
    pub fn finish(&mut self, prepared: Result<PreparedReload, ConfigError>, trigger: Trigger) {
        let trigger = trigger.as_str();
        match prepared {
            Ok(prepared) => {
                self.install(prepared, trigger);
                self.metrics.config_reload(true);
                self.metrics.config_loaded(unix_seconds(SystemTime::now()));
            }
            Err(error) => {
                self.metrics.config_reload(false);
                tracing::error!(
                    %error,
                    trigger,
                    "SIGHUP: configuration refused; the running configuration stays in service"
                );
            }
        }
    }

    /// The lines keep their "SIGHUP:" prefix whatever the trigger, so that the queries and
    /// alerts written for them still match; `trigger` tells which it was.
    fn install(&mut self, prepared: PreparedReload, trigger: &'static str) {
        let PreparedReload {
            next,
            waiting,
            policy,
            certificate,
            filter,
        } = prepared;
        let tls_reloaded = certificate.is_some();
        if let (Some(tls), Some(certificate)) = (&self.tls, certificate) {
            tls.install(certificate);
        }
        self.log_filter.install(filter);
        if let (Some(budget), Some(limit)) = (&self.budget, &next.rate_limit) {
            budget.set(limit);
        }
        // A new token is read on every reload; a short one is worth the same warning as at
        // start-up, once, when it comes in.
        if let Some(token) = &policy.admin_token {
            let running = self.policy.peek();
            if running
                .admin_token
                .as_ref()
                .is_none_or(|running| !running.same_as(token))
            {
                token.warn_if_short();
            }
        }
        self.metrics.sunset(policy.sunset_at);
        self.policy.replace(policy);
        for change in &waiting {
            tracing::warn!(
                key = change.key,
                running = %change.running,
                in_file = %change.in_file,
                trigger,
                "SIGHUP: this key needs a restart to change; keeping the running value"
            );
        }
        if tls_reloaded {
            tracing::info!(trigger, "SIGHUP: TLS certificate reloaded");
        }
        tracing::info!(
            needs_restart = waiting.len(),
            trigger,
            "SIGHUP: configuration reloaded"
        );
        self.running = next;
    }
}

/// A copy of what a reload needs from the running shim ([`Reloader::reload_inputs`]).
pub struct ReloadInputs {
    overrides: Overrides,
    running: Config,
    /// Kept when the file turns the token off (that needs a restart): not read again, since
    /// its file may be gone with the key.
    running_admin_token: Option<AdminToken>,
    tls_on: bool,
}

/// Everything a reload puts in service, built before anything is swapped.
pub struct PreparedReload {
    next: Config,
    waiting: Vec<NeedsRestart>,
    policy: Policy,
    certificate: Option<tokio_rustls::TlsAcceptor>,
    filter: tracing_subscriber::EnvFilter,
}

impl PreparedReload {
    /// The configuration this reload puts in service.
    pub fn next(&self) -> &Config {
        &self.next
    }
}

impl ReloadInputs {
    /// Reads the files again (the config file, `admin_token_file`, the TLS files) and builds
    /// everything that can fail. Blocks for as long as the reads take, each within
    /// [`crate::config::read::FILE_READ_TIMEOUT`]: run it off the thread that answers probes
    /// and signals.
    pub fn prepare(self) -> Result<PreparedReload, ConfigError> {
        let fresh = Config::resolve(&self.overrides)?;
        let keeps_admin_token = fresh.admin_token_file.is_none();
        let waiting = restart_only_changes(&self.running, &fresh);
        let next = applied(&self.running, fresh);
        let policy = if keeps_admin_token {
            Policy::with_admin_token(&next, self.running_admin_token)?
        } else {
            Policy::from_config(&next)?
        };
        let certificate = match (self.tls_on, &next.tls) {
            (true, Some(files)) => Some(InboundTls::prepare(&files.cert_file, &files.key_file)?),
            _ => None,
        };
        let filter = LogFilter::prepare(&next.log_level)
            .map_err(|error| ConfigError(format!("invalid `log_level`: {error}")))?;
        Ok(PreparedReload {
            next,
            waiting,
            policy,
            certificate,
            filter,
        })
    }
}

fn unix_seconds(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Setting;

    fn config(extra: &[(&'static str, &str)]) -> Config {
        let mut overrides = Overrides::default();
        for (origin, value) in extra {
            let setting = Some(Setting {
                value: (*value).to_owned(),
                origin,
            });
            match *origin {
                "--listen" => overrides.listen = setting,
                "--workers" => overrides.workers = setting,
                "--brownouts" => overrides.brownouts = setting,
                "--upstream" => overrides.upstream = setting,
                "--log-level" => overrides.log_level = setting,
                "--rate-limit-redis-sentinels" => overrides.rate_limit_redis_sentinels = setting,
                "--rate-limit-redis-master-name" => {
                    overrides.rate_limit_redis_master_name = setting
                }
                _ => unreachable!("{origin}"),
            }
        }
        Config::resolve(&overrides).unwrap()
    }

    #[test]
    fn only_keys_bound_at_start_up_wait_for_a_restart() {
        let running = config(&[]);
        assert_eq!(restart_only_changes(&running, &running), []);
        let fresh = config(&[
            ("--listen", "127.0.0.1:1"),
            ("--workers", "3"),
            ("--upstream", "http://127.0.0.1:9"),
            ("--brownouts", "2030-01-01T00:00:00Z/PT1H"),
            ("--log-level", "warn"),
        ]);
        let keys: Vec<_> = restart_only_changes(&running, &fresh)
            .into_iter()
            .map(|change| change.key)
            .collect();
        assert_eq!(keys, ["listen", "workers", "upstream.url"]);
    }

    #[test]
    fn a_sentinel_password_changed_alone_waits_for_a_restart_and_is_not_shown() {
        let sentinels = |password: &str| {
            config(&[
                (
                    "--rate-limit-redis-sentinels",
                    &format!("redis://:{password}@127.0.0.1:26379"),
                ),
                ("--rate-limit-redis-master-name", "primary"),
            ])
        };
        let running = sentinels("old-secret");
        assert_eq!(restart_only_changes(&running, &running), []);
        let changes = restart_only_changes(&running, &sentinels("new-secret"));
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert_eq!(changes[0].key, "rate_limit.redis_sentinels");
        assert!(changes[0].in_file.ends_with("(changed)"), "{changes:?}");
        let shown = format!("{changes:?}");
        assert!(!shown.contains("secret"), "{shown}");
    }

    #[test]
    fn a_reload_keeps_the_running_bindings_and_takes_the_rest() {
        let running = config(&[]);
        let fresh = config(&[
            ("--listen", "127.0.0.1:1"),
            ("--brownouts", "2030-01-01T00:00:00Z/PT1H"),
            ("--log-level", "warn"),
        ]);
        let next = applied(&running, fresh);
        assert_eq!(next.listen, running.listen);
        assert_eq!(next.log_level, "warn");
        assert_eq!(next.deprecation.retirement.windows().len(), 1);
    }
}
