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
}
