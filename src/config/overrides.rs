//! What overrides the config file: the values given as flags or `EXPLO_SHIM_*` variables,
//! each with where it came from. The command line fills this type ([`crate::cli`]); the config
//! owns it, so the config reads nothing of the command line's.

use std::path::PathBuf;

/// A value given on the command line or in the environment, with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    pub value: String,
    /// `--flag` or `EXPLO_SHIM_VAR`, for error messages and `--check-config`.
    pub origin: &'static str,
}

/// The settings that override the config file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    pub config: Option<PathBuf>,
    pub listen: Option<Setting>,
    pub upstream: Option<Setting>,
    pub admin: Option<Setting>,
    pub upstream_timeout: Option<Setting>,
    pub log_format: Option<Setting>,
    pub log_level: Option<Setting>,
    pub access_log: Option<Setting>,
    pub workers: Option<Setting>,
    pub rate_limit_redis_url: Option<Setting>,
    pub brownouts: Option<Setting>,
    pub after_sunset: Option<Setting>,
    pub exempt_clients: Option<Setting>,
    pub shutdown_delay: Option<Setting>,
    pub send_timeout: Option<Setting>,
    pub admin_allowed_hosts: Option<Setting>,
}

impl Overrides {
    /// Each setting a flag or variable can give, by its dotted key in the config file.
    pub fn by_key(&self) -> [(&'static str, Option<&Setting>); 15] {
        [
            ("listen", self.listen.as_ref()),
            ("admin", self.admin.as_ref()),
            ("workers", self.workers.as_ref()),
            ("log_format", self.log_format.as_ref()),
            ("log_level", self.log_level.as_ref()),
            ("access_log", self.access_log.as_ref()),
            ("upstream.url", self.upstream.as_ref()),
            ("upstream.timeout", self.upstream_timeout.as_ref()),
            ("rate_limit.redis_url", self.rate_limit_redis_url.as_ref()),
            ("deprecation.brownouts", self.brownouts.as_ref()),
            ("deprecation.after_sunset", self.after_sunset.as_ref()),
            ("deprecation.exempt_clients", self.exempt_clients.as_ref()),
            ("shutdown.delay", self.shutdown_delay.as_ref()),
            ("limits.send_timeout", self.send_timeout.as_ref()),
            ("admin_allowed_hosts", self.admin_allowed_hosts.as_ref()),
        ]
    }
}
