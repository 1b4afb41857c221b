//! The configuration file as written (`config/explo-shim.toml`): one struct per table, every
//! key optional. Unknown keys are errors: a typo must not silently fall back to a default.
//! Nothing here decides a value; [`super`] resolves these against flags and defaults.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::ConfigError;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileConfig {
    pub(super) listen: Option<String>,
    pub(super) admin: Option<String>,
    pub(super) workers: Option<toml::Value>,
    pub(super) log_format: Option<String>,
    pub(super) log_level: Option<String>,
    pub(super) access_log: Option<bool>,
    #[serde(default)]
    pub(super) upstream: FileUpstream,
    #[serde(default)]
    pub(super) limits: FileLimits,
    #[serde(default)]
    pub(super) legacy: FileLegacy,
    #[serde(default)]
    pub(super) rate_limit: FileRateLimit,
    #[serde(default)]
    pub(super) deprecation: FileDeprecation,
    #[serde(default)]
    pub(super) tls: FileTls,
    #[serde(default)]
    pub(super) shutdown: FileShutdown,
    #[serde(default)]
    pub(super) clients: BTreeMap<String, String>,
    pub(super) admin_token_file: Option<String>,
    pub(super) admin_allowed_hosts: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileTls {
    pub(super) cert_file: Option<String>,
    pub(super) key_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileDeprecation {
    pub(super) date: Option<String>,
    pub(super) sunset: Option<String>,
    pub(super) brownouts: Option<Vec<String>>,
    pub(super) after_sunset: Option<String>,
    pub(super) exempt_clients: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileRateLimit {
    pub(super) enabled: Option<bool>,
    pub(super) per_minute: Option<u64>,
    pub(super) burst: Option<u64>,
    pub(super) max_wait: Option<String>,
    pub(super) max_upstream_hold: Option<String>,
    pub(super) redis_url: Option<String>,
    pub(super) key: Option<String>,
    pub(super) redis_timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileUpstream {
    pub(super) url: Option<String>,
    pub(super) connect_timeout: Option<String>,
    pub(super) timeout: Option<String>,
    pub(super) pool_idle_timeout: Option<String>,
    pub(super) pool_max_idle: Option<u64>,
    pub(super) ca_file: Option<String>,
    pub(super) add_x_forwarded_for: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileLimits {
    pub(super) legacy_body_bytes: Option<u64>,
    pub(super) upstream_reply_bytes: Option<u64>,
    pub(super) header_read_timeout: Option<String>,
    pub(super) body_idle_timeout: Option<String>,
    pub(super) legacy_body_timeout: Option<String>,
    pub(super) send_timeout: Option<String>,
    pub(super) max_header_bytes: Option<u64>,
    pub(super) max_headers: Option<u64>,
    pub(super) max_in_flight: Option<u64>,
    pub(super) max_connections: Option<u64>,
    pub(super) max_tracked_clients: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileLegacy {
    pub(super) team_id: Option<i64>,
    #[serde(default)]
    pub(super) extra_customer_keys: bool,
    #[serde(default)]
    pub(super) api_environment_tag: BTreeMap<String, String>,
    pub(super) refuse_cascading_delete: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileShutdown {
    pub(super) grace: Option<String>,
    pub(super) delay: Option<String>,
}

/// Reads and parses the file; any problem names the file.
pub(super) fn read(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = super::read::read_bounded_text(path).map_err(|error| {
        ConfigError(format!(
            "cannot read config file {}: {error}",
            path.display()
        ))
    })?;
    toml::from_str(&text)
        .map_err(|error| ConfigError(format!("invalid config file {}: {error}", path.display())))
}
