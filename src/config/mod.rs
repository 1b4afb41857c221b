//! Configuration: built-in defaults, the TOML file, then the environment and flags on top.
//!
//! Every setting is one row of the settings table ([`table`]): its key in the file, its flag
//! and variable, its parser, its default and its documentation. The command line, the
//! environment, the file, `--check-config` and the unknown-variable warning all read the
//! table. Every default is a named constant with its unit ([`defaults`]) and appears once,
//! commented, in `config/explo-shim.toml`. Resolution fails with a message that names the key
//! and where the bad value came from; `main` turns that into exit code 64 (EX_USAGE) before
//! anything listens.
//!
//! [`file`] reads the file as the table says; [`sourced`] and [`lists`] parse one value and
//! name its source; [`resolve`] puts the values together into the [`resolved`] settings;
//! [`render`] writes them back as a file for `--check-config`.

pub mod defaults;
mod file;
mod lists;
mod overrides;
pub(crate) mod policy;
pub mod read;
pub mod render;
mod resolve;
mod resolved;
mod sourced;
mod spec;
mod table;

pub use defaults::*;
pub use overrides::Setting;
pub use resolved::*;
pub use spec::{About, FileKind, Flag};
pub use table::{Overrides, SETTINGS};

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::legacy::reply::ReplyOptions;
    use crate::message::headers::deprecation::DEFAULT_DEPRECATION_DATE;

    fn setting(value: &str, origin: &'static str) -> Option<Setting> {
        Some(Setting {
            value: value.to_owned(),
            origin,
        })
    }

    #[test]
    fn paths_are_read_as_they_always_were_the_ca_file_as_written_the_others_trimmed() {
        let (_file, overrides) = write_config(
            "admin_token_file = \" /run/token \"\n[upstream]\nca_file = \" /etc/roots.pem \"\n",
        );
        let config = Config::resolve(&overrides).unwrap();
        assert_eq!(
            config.upstream.ca_file.as_deref(),
            Some(std::path::Path::new(" /etc/roots.pem "))
        );
        assert_eq!(
            config.admin_token_file.as_deref(),
            Some(std::path::Path::new("/run/token"))
        );
        let (_file, overrides) = write_config("[upstream]\nca_file = \"  \"\n");
        assert_eq!(Config::resolve(&overrides).unwrap().upstream.ca_file, None);
    }

    fn write_config(text: &str) -> (tempfile_path::TempPath, Overrides) {
        let path = tempfile_path::TempPath::new(text);
        let overrides = Overrides {
            config: Some(path.0.clone()),
            ..Overrides::default()
        };
        (path, overrides)
    }

    /// A file under the target dir that is removed when dropped.
    mod tempfile_path {
        use std::path::PathBuf;
        use std::sync::atomic::{AtomicUsize, Ordering};

        pub struct TempPath(pub PathBuf);

        impl TempPath {
            pub fn new(text: &str) -> Self {
                static NEXT: AtomicUsize = AtomicUsize::new(0);
                let path = std::env::temp_dir().join(format!(
                    "explo-shim-config-{}-{}.toml",
                    std::process::id(),
                    NEXT.fetch_add(1, Ordering::Relaxed)
                ));
                std::fs::write(&path, text).unwrap();
                Self(path)
            }
        }

        impl Drop for TempPath {
            fn drop(&mut self) {
                let _ = std::fs::remove_file(&self.0);
            }
        }
    }

    #[test]
    fn defaults_apply_without_a_file() {
        let config = Config::resolve(&Overrides::default()).unwrap();
        assert_eq!(config.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(config.admin.to_string(), DEFAULT_ADMIN);
        assert_eq!(config.log_format, LogFormat::Text);
        assert_eq!(config.upstream.url.to_string(), DEFAULT_UPSTREAM);
        assert_eq!(config.upstream.timeout, DEFAULT_UPSTREAM_TIMEOUT);
        assert_eq!(config.limits.legacy_body_bytes, DEFAULT_LEGACY_BODY_BYTES);
        assert_eq!(config.legacy, ReplyOptions::default());
        assert_eq!(config.shutdown_grace, DEFAULT_SHUTDOWN_GRACE);
    }

    #[test]
    fn the_shipped_config_file_is_valid_and_matches_the_defaults() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config/explo-shim.toml");
        let overrides = Overrides {
            config: Some(path.into()),
            ..Overrides::default()
        };
        assert_eq!(
            Config::resolve(&overrides).unwrap(),
            Config::resolve(&Overrides::default()).unwrap()
        );
    }

    #[test]
    fn flag_beats_file_beats_default() {
        let (_file, mut overrides) = write_config(
            "listen = \"127.0.0.1:1111\"\nadmin = \"127.0.0.1:2222\"\n[upstream]\ntimeout = \"7s\"\n",
        );
        overrides.listen = setting("127.0.0.1:3333", "--listen");
        let config = Config::resolve(&overrides).unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:3333");
        assert_eq!(config.admin.to_string(), "127.0.0.1:2222");
        assert_eq!(config.upstream.timeout, Duration::from_secs(7));
        overrides.upstream_timeout = setting("500ms", "EXPLO_SHIM_UPSTREAM_TIMEOUT");
        assert_eq!(
            Config::resolve(&overrides).unwrap().upstream.timeout,
            Duration::from_millis(500)
        );
    }

    #[test]
    fn send_timeout_comes_from_the_flag_then_the_file_then_the_default_and_is_bounded() {
        let defaults = Config::resolve(&Overrides::default()).unwrap();
        assert_eq!(defaults.limits.send_timeout, DEFAULT_SEND_TIMEOUT);
        let (_file, mut overrides) = write_config("[limits]\nsend_timeout = \"7s\"\n");
        assert_eq!(
            Config::resolve(&overrides).unwrap().limits.send_timeout,
            Duration::from_secs(7)
        );
        overrides.send_timeout = setting("1500ms", "--send-timeout");
        assert_eq!(
            Config::resolve(&overrides).unwrap().limits.send_timeout,
            Duration::from_millis(1500)
        );
        // Zero would cut off every reply that waits at all; past a day is refused like every
        // other duration.
        for bad in ["0s", "25h", "soon"] {
            overrides.send_timeout = setting(bad, "EXPLO_SHIM_SEND_TIMEOUT");
            let error = Config::resolve(&overrides).unwrap_err().to_string();
            assert!(
                error.contains("limits.send_timeout") && error.contains("EXPLO_SHIM_SEND_TIMEOUT"),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn unknown_keys_are_named() {
        let (_file, overrides) = write_config("[upstream]\nurll = \"https://x\"\n");
        let error = Config::resolve(&overrides).unwrap_err().to_string();
        assert!(error.contains("urll"), "{error}");
    }

    #[test]
    fn bad_values_name_the_key_and_the_origin() {
        let overrides = Overrides {
            upstream_timeout: setting("soon", "EXPLO_SHIM_UPSTREAM_TIMEOUT"),
            ..Overrides::default()
        };
        let error = Config::resolve(&overrides).unwrap_err().to_string();
        assert!(
            error.contains("upstream.timeout") && error.contains("EXPLO_SHIM_UPSTREAM_TIMEOUT"),
            "{error}"
        );

        for (bad, key) in [
            ("listen = \"localhost\"", "listen"),
            ("log_format = \"xml\"", "log_format"),
            ("[upstream]\nurl = \"ftp://x\"", "upstream.url"),
            ("[upstream]\nurl = \"https://u:p@x\"", "upstream.url"),
            (
                "[upstream]\nurl = \"http://127.0.0.1:88537\"",
                "upstream.url",
            ),
            (
                "[upstream]\nurl = \"https://api.explo.co:4430000\"",
                "upstream.url",
            ),
            ("[upstream]\ntimeout = \"0s\"", "upstream.timeout"),
            (
                "[limits]\nlegacy_body_bytes = 0",
                "limits.legacy_body_bytes",
            ),
            ("[shutdown]\ngrace = \"forever\"", "shutdown.grace"),
            (
                "[limits]\nmax_header_bytes = 100",
                "limits.max_header_bytes",
            ),
            ("[limits]\nmax_in_flight = 0", "limits.max_in_flight"),
            ("[rate_limit]\nper_minute = 0", "rate_limit.per_minute"),
            ("[deprecation]\ndate = \"yesterday\"", "deprecation.date"),
            ("[tls]\ncert_file = \"/x.pem\"", "tls"),
            (
                "[deprecation]\ndate = \"2025-10-15\"\nsunset = \"2025-01-01\"",
                "deprecation.sunset",
            ),
            ("[rate_limit]\nmax_wait = \"x\"", "rate_limit.max_wait"),
            ("[rate_limit]\nmax_wait = \"25h\"", "rate_limit.max_wait"),
            (
                "[upstream]\ntimeout = \"18446744073709551615s\"",
                "upstream.timeout",
            ),
            (
                "[upstream]\nconnect_timeout = \"18446744073709551616s\"",
                "upstream.connect_timeout",
            ),
            ("[shutdown]\ngrace = \"584942417355y\"", "shutdown.grace"),
            (
                "[limits]\nheader_read_timeout = \"2days\"",
                "limits.header_read_timeout",
            ),
            (
                "[rate_limit]\nredis_url = \"redis://r\"\nredis_timeout = \"99999999h\"",
                "rate_limit.redis_timeout",
            ),
            (
                "[deprecation]\nsunset = \"2026-12-31T23:59:60Z\"",
                "deprecation.sunset",
            ),
            (
                "[deprecation]\ndate = \"2016-12-31T23:59:60Z\"",
                "deprecation.date",
            ),
            (
                "[deprecation]\nexempt_clients = [\"anonymous\"]",
                "deprecation.exempt_clients",
            ),
            (
                "[deprecation]\nbrownouts = [\"2026-12-01T00:00:00Z/P30000000000000W\"]",
                "deprecation.brownouts",
            ),
            (
                "[deprecation]\nbrownouts = [\"2026-12-01T23:59:60Z/PT1H\"]",
                "deprecation.brownouts",
            ),
            (
                "[rate_limit]\nmax_upstream_hold = \"61m\"",
                "rate_limit.max_upstream_hold",
            ),
            (
                "[rate_limit]\nmax_upstream_hold = \"0s\"",
                "rate_limit.max_upstream_hold",
            ),
            (
                "[legacy]\nrefuse_cascading_delete = \"yes\"",
                "refuse_cascading_delete",
            ),
            ("[clients]\nbilling = \"billing-service\"", "clients"),
            ("[clients]\n\"89b20371356a\" = \" \"", "clients"),
            ("[clients]\n\"89b20371356a\" = \"a\\nb\"", "clients"),
            (
                "[clients]\n\"89b20371356a\" = \"billing\"\n\"64cc961af68c\" = \"billing\"",
                "clients",
            ),
            ("log_level = \"info,=[\"", "log_level"),
            ("access_log = \"yes\"", "access_log"),
            ("[shutdown]\ndelay = \"25h\"", "shutdown.delay"),
        ] {
            let (_file, overrides) = write_config(bad);
            let error = Config::resolve(&overrides).unwrap_err().to_string();
            assert!(error.contains(key), "{bad}: {error}");
        }
    }

    #[test]
    fn upstream_url_keeps_a_path_prefix_without_trailing_slash() {
        let overrides = Overrides {
            upstream: setting("http://127.0.0.1:9/explo/", "--upstream"),
            ..Overrides::default()
        };
        let url = Config::resolve(&overrides).unwrap().upstream.url;
        assert_eq!(url.scheme, http::uri::Scheme::HTTP);
        assert_eq!(url.authority.as_str(), "127.0.0.1:9");
        assert_eq!(url.path_prefix, "/explo");
    }

    #[test]
    fn legacy_reply_options_are_read() {
        let (_file, overrides) = write_config(
            "[legacy]\nteam_id = 113\nextra_customer_keys = true\n[legacy.api_environment_tag]\nProduction = \"Customer\"\n",
        );
        let legacy = Config::resolve(&overrides).unwrap().legacy;
        assert_eq!(legacy.team_id, Some(113.into()));
        assert!(legacy.extra_customer_keys);
        assert_eq!(legacy.api_environment_tags["Production"], "Customer");
    }

    #[test]
    fn a_fleet_shares_by_the_upstream_url_unless_keyed_and_never_shows_its_password() {
        let (_file, mut overrides) =
            write_config("[rate_limit]\nredis_url = \"redis://:s3cret@redis.internal:6380/2\"\n");
        let fleet = Config::resolve(&overrides).unwrap().fleet.unwrap();
        assert_eq!(fleet.key, "https://api.explo.co");
        assert_eq!(fleet.timeout, DEFAULT_REDIS_TIMEOUT);
        assert_eq!(
            fleet.redacted_url().unwrap(),
            "redis://:<redacted>@redis.internal:6380/2"
        );
        assert!(!format!("{fleet:?}").contains("s3cret"));
        // The flag wins over the file; an empty value means no fleet.
        overrides.rate_limit_redis_url = setting("", "EXPLO_SHIM_RATE_LIMIT_REDIS_URL");
        assert_eq!(Config::resolve(&overrides).unwrap().fleet, None);
        let (_file, overrides) =
            write_config("[rate_limit]\nredis_url = \"rediss://r:6379\"\nkey = \"egress-a\"\n");
        assert_eq!(
            Config::resolve(&overrides).unwrap().fleet.unwrap().key,
            "egress-a"
        );
    }

    #[test]
    fn sentinels_name_the_primary_and_redis_url_keeps_only_its_credentials() {
        let (_file, mut overrides) = write_config(
            "[rate_limit]\nredis_sentinels = [\"10.0.0.1:26379\", \
             \"rediss://:s3cret@10.0.0.2:26379\"]\nredis_master_name = \"explo\"\n",
        );
        let fleet = Config::resolve(&overrides).unwrap().fleet.unwrap();
        let sentinels = fleet.sentinels.as_ref().unwrap();
        assert_eq!(
            fleet.redis_url, None,
            "redis_url is optional with sentinels"
        );
        assert_eq!(sentinels.master_name, "explo");
        assert_eq!(
            sentinels.urls(),
            ["redis://10.0.0.1:26379", "rediss://:s3cret@10.0.0.2:26379"]
        );
        assert!(!format!("{fleet:?}").contains("s3cret"));
        assert!(!fleet.describe().contains("s3cret"));
        // The URL's database, user and password are the primary's; its host is ignored...
        overrides.rate_limit_redis_url = setting("redis://:pw@primary/2", "--rate-limit-redis-url");
        assert!(Config::resolve(&overrides).is_ok());
        // ...unless it is a sentinel's.
        for url in ["redis://10.0.0.1:26379/2", "redis://elsewhere:26379"] {
            overrides.rate_limit_redis_url = setting(url, "--rate-limit-redis-url");
            let error = Config::resolve(&overrides).unwrap_err().0;
            assert!(error.contains("`rate_limit.redis_url`"), "{error}");
        }
        for bad in [
            "[]",
            "[\"no-port\"]",
            "[\"http://s:26379\"]",
            "[\"redis://s:26379/3\"]",
        ] {
            let (_file, overrides) = write_config(&format!(
                "[rate_limit]\nredis_sentinels = {bad}\nredis_master_name = \"explo\"\n"
            ));
            let error = Config::resolve(&overrides).unwrap_err().0;
            assert!(
                error.contains("`rate_limit.redis_sentinels`"),
                "{bad}: {error}"
            );
        }
        let (_file, overrides) =
            write_config("[rate_limit]\nredis_sentinels = [\"10.0.0.1:26379\"]\n");
        let error = Config::resolve(&overrides).unwrap_err().0;
        assert!(error.contains("`rate_limit.redis_master_name`"), "{error}");
        let (_file, overrides) = write_config("[rate_limit]\nredis_master_name = \"explo\"\n");
        let error = Config::resolve(&overrides).unwrap_err().0;
        assert!(error.contains("`rate_limit.redis_sentinels`"), "{error}");
    }

    #[test]
    fn the_retirement_schedule_is_read_from_the_file_and_replaced_by_flags() {
        let (_file, mut overrides) = write_config(
            "[deprecation]\nsunset = \"2027-03-01\"\nafter_sunset = \"refuse\"\n\
             brownouts = [\"2026-12-08T15:00:00Z/PT5M\", \"2026-12-15T15:00:00Z/2026-12-15T15:10:00Z\"]\n\
             exempt_clients = [\"64cc961af68c\"]\n",
        );
        let retirement = Config::resolve(&overrides).unwrap().deprecation.retirement;
        assert_eq!(retirement.windows().len(), 2);
        assert!(retirement.is_exempt("64cc961af68c"));
        overrides.brownouts = setting("2026-12-08T15:00:00Z/PT1H", "--brownouts");
        overrides.exempt_clients = setting("aaaaaaaaaaaa, bbbbbbbbbbbb", "--exempt-clients");
        let retirement = Config::resolve(&overrides).unwrap().deprecation.retirement;
        assert_eq!(retirement.windows().len(), 1);
        assert!(retirement.is_exempt("bbbbbbbbbbbb") && !retirement.is_exempt("64cc961af68c"));
    }

    #[test]
    fn admin_allowed_hosts_are_names_read_from_the_file_and_replaced_by_flags() {
        assert!(
            Config::resolve(&Overrides::default())
                .unwrap()
                .admin_allowed_hosts
                .is_empty()
        );
        let (_file, mut overrides) =
            write_config("admin_allowed_hosts = [\"Shim.Internal.\", \"metrics-1\"]\n");
        let hosts = Config::resolve(&overrides).unwrap().admin_allowed_hosts;
        assert_eq!(
            hosts.into_iter().collect::<Vec<_>>(),
            ["metrics-1", "shim.internal"]
        );
        overrides.admin_allowed_hosts = setting("a.example, b.example", "--admin-allowed-hosts");
        let hosts = Config::resolve(&overrides).unwrap().admin_allowed_hosts;
        assert_eq!(
            hosts.into_iter().collect::<Vec<_>>(),
            ["a.example", "b.example"]
        );
        for bad in [
            "shim.internal:9090",
            "*.example",
            "http://shim",
            "a..b",
            "-a.example",
        ] {
            overrides.admin_allowed_hosts = setting(bad, "EXPLO_SHIM_ADMIN_ALLOWED_HOSTS");
            let error = Config::resolve(&overrides).unwrap_err().to_string();
            assert!(
                error.contains("admin_allowed_hosts")
                    && error.contains("EXPLO_SHIM_ADMIN_ALLOWED_HOSTS"),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn deprecation_dates_accept_dates_and_date_times() {
        let (_file, overrides) = write_config(
            "[deprecation]\ndate = \"2025-10-15\"\nsunset = \"2026-10-15T12:00:00Z\"\n",
        );
        let dates = Config::resolve(&overrides).unwrap().deprecation;
        assert_eq!(
            dates.deprecated_at,
            SystemTime::UNIX_EPOCH + DEFAULT_DEPRECATION_DATE
        );
        assert_eq!(
            dates.sunset_at,
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_792_065_600))
        );
    }

    #[test]
    fn a_missing_file_is_an_error() {
        let overrides = Overrides {
            config: Some("/nonexistent/explo.toml".into()),
            ..Overrides::default()
        };
        assert!(
            Config::resolve(&overrides)
                .unwrap_err()
                .to_string()
                .contains("/nonexistent/explo.toml")
        );
    }

    /// A file that sets every key to something other than its default.
    const RICH_FILE: &str = r#"
listen = "127.0.0.1:1111"
admin = "[::1]:2222"
workers = 3
log_format = "json"
log_level = "warn,explo_shim=debug"
access_log = true
[upstream]
url = "http://127.0.0.1:9/explo/"
connect_timeout = "1500ms"
timeout = "1m 30s"
pool_idle_timeout = "2m"
pool_max_idle = 0
ca_file = "/etc/ssl/extra roots.pem"
add_x_forwarded_for = true
[limits]
legacy_body_bytes = 2048
upstream_reply_bytes = 4096
header_read_timeout = "3s"
body_idle_timeout = "4s"
legacy_body_timeout = "5s"
send_timeout = "6s"
max_header_bytes = 9000
max_headers = 50
max_in_flight = 10
max_connections = 20
max_tracked_clients = 30
[rate_limit]
per_minute = 60
burst = 5
max_wait = "0s"
max_upstream_hold = "1h"
redis_url = "redis://ops:s3cret@redis.internal:6380/2"
key = "egress-a"
redis_timeout = "40ms"
[legacy]
team_id = 113
extra_customer_keys = true
refuse_cascading_delete = false
[legacy.api_environment_tag]
Production = "Customer"
"Data team" = "Testing"
[tls]
cert_file = "/etc/tls/cert.pem"
key_file = "/etc/tls/key.pem"
[deprecation]
date = "2025-11-01"
sunset = "2027-03-01T12:30:00.5Z"
brownouts = ["2026-12-08T15:00:00Z/PT5M", "2026-12-15T15:00:00Z/2026-12-15T16:30:00Z"]
after_sunset = "refuse"
exempt_clients = ["64cc961af68c", "aaaaaaaaaaaa"]
[shutdown]
delay = "5s"
grace = "45s"
"#;

    /// `--check-config`'s output, fed back as the config file, gives the same settings; only
    /// the Redis password is lost to the redaction.
    #[test]
    fn the_rendered_config_resolves_to_the_same_config() {
        let (_file, mut overrides) = write_config(RICH_FILE);
        // A variable on top: its value is written like the file's.
        overrides.upstream_timeout = setting("7s", "EXPLO_SHIM_UPSTREAM_TIMEOUT");
        let rich = Config::resolve(&overrides).unwrap();
        assert_ne!(rich, Config::resolve(&Overrides::default()).unwrap());
        let (_rate_limit_off, off) = write_config("[rate_limit]\nenabled = false\n");
        for (config, overrides) in [
            (rich, overrides),
            (Config::resolve(&off).unwrap(), off),
            (
                Config::resolve(&Overrides::default()).unwrap(),
                Overrides::default(),
            ),
        ] {
            let text = render::effective_config(&config, &overrides).unwrap();
            assert!(!text.contains("s3cret"), "{text}");
            let (_rendered, again) = write_config(&text);
            let mut expected = config.clone();
            if let Some(fleet) = &mut expected.fleet {
                fleet.redis_url = fleet.redacted_url();
            }
            assert_eq!(Config::resolve(&again).unwrap(), expected, "{text}");
        }
    }

    #[test]
    fn workers_are_auto_by_default_and_validated() {
        let config = Config::resolve(&Overrides::default()).unwrap();
        assert_eq!(config.workers, None);
        assert!(config.worker_threads() >= 1);
        let (_file, mut overrides) = write_config("workers = 3\n");
        assert_eq!(Config::resolve(&overrides).unwrap().worker_threads(), 3);
        overrides.workers = setting("auto", "--workers");
        assert_eq!(Config::resolve(&overrides).unwrap().workers, None);
        for bad in ["0", "-1", "many", "100000"] {
            overrides.workers = setting(bad, "--workers");
            let error = Config::resolve(&overrides).unwrap_err().to_string();
            assert!(
                error.contains("`workers`") && error.contains("--workers"),
                "{error}"
            );
        }
    }
}
