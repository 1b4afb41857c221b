//! The `process_*` metrics of the Prometheus client conventions, read from `/proc` when
//! `/metrics` is scraped (Linux only; elsewhere they are absent). No background thread: each
//! scrape reads five small files and lists `/proc/self/fd`.
//!
//! Two constants stand in for system calls the crate cannot make without `unsafe`
//! (`sysconf`): the clock tick is [`USER_HZ`], which Linux fixes at 100 for `/proc` on every
//! architecture it exports to user space, and no page size is needed, since the resident
//! memory is read in kB from `/proc/self/status` (`VmRSS`) and the virtual size in bytes from
//! `/proc/self/stat` (`vsize`).

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Clock ticks per second in `/proc/self/stat` and `/proc/stat` (`USER_HZ`): 100 on Linux.
const USER_HZ: f64 = 100.0;

/// What `/proc/self/stat` says of the process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stat {
    /// User plus system CPU time, in seconds.
    pub cpu_seconds: f64,
    /// Start time after boot, in seconds.
    pub started_after_boot: f64,
    /// Virtual memory size, in bytes.
    pub virtual_bytes: u64,
}

/// Parses `/proc/self/stat`. The second field, the command name in parentheses, may itself
/// hold spaces and parentheses, so the fields are counted from the last `)`.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let (_, after_name) = text.rsplit_once(')')?;
    // Field 3 (the state) is the first after the name; proc(5) numbers fields from 1.
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let field = |number: usize| {
        fields
            .get(number - 3)
            .and_then(|value| value.parse::<u64>().ok())
    };
    let (utime, stime) = (field(14)?, field(15)?);
    Some(Stat {
        cpu_seconds: (utime + stime) as f64 / USER_HZ,
        started_after_boot: field(22)? as f64 / USER_HZ,
        virtual_bytes: field(23)?,
    })
}

/// The resident set size in bytes, from `/proc/self/status`'s `VmRSS:` line (in kB).
pub fn parse_resident_bytes(status: &str) -> Option<u64> {
    let line = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?;
    let mut parts = line.split_whitespace();
    let kilobytes: u64 = parts.next()?.parse().ok()?;
    (parts.next() == Some("kB")).then_some(kilobytes * 1024)
}

/// The soft limit on open files from `/proc/self/limits`; `None` when it is `unlimited`.
pub fn parse_max_fds(limits: &str) -> Option<u64> {
    let line = limits
        .lines()
        .find_map(|line| line.strip_prefix("Max open files"))?;
    line.split_whitespace().next()?.parse().ok()
}

/// The boot time (Unix seconds) from `/proc/stat`'s `btime` line.
pub fn parse_boot_time(stat: &str) -> Option<u64> {
    stat.lines()
        .find_map(|line| line.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

/// Reads `/proc` at each scrape. A file that cannot be read or parsed leaves its metrics
/// out of that scrape rather than failing it.
#[derive(Debug)]
pub struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let read = |path: &str| std::fs::read_to_string(path).ok();
        let stat = read("/proc/self/stat").as_deref().and_then(parse_stat);
        if let Some(stat) = stat {
            let cpu = ConstCounter::new(stat.cpu_seconds);
            cpu.encode(encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds",
                None,
                cpu.metric_type(),
            )?)?;
        }
        let resident = read("/proc/self/status")
            .as_deref()
            .and_then(parse_resident_bytes);
        if let Some(bytes) = resident {
            gauge(
                &mut encoder,
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                saturating_i64(bytes),
            )?;
        }
        if let Some(stat) = stat {
            gauge(
                &mut encoder,
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes",
                saturating_i64(stat.virtual_bytes),
            )?;
        }
        if let Ok(entries) = std::fs::read_dir("/proc/self/fd") {
            gauge(
                &mut encoder,
                "process_open_fds",
                "Number of open file descriptors",
                saturating_i64(entries.count() as u64),
            )?;
        }
        if let Some(limit) = read("/proc/self/limits").as_deref().and_then(parse_max_fds) {
            gauge(
                &mut encoder,
                "process_max_fds",
                "Maximum number of open file descriptors",
                saturating_i64(limit),
            )?;
        }
        let boot = read("/proc/stat").as_deref().and_then(parse_boot_time);
        if let (Some(stat), Some(boot)) = (stat, boot) {
            let started = ConstGauge::new(boot as f64 + stat.started_after_boot);
            started.encode(encoder.encode_descriptor(
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds",
                None,
                started.metric_type(),
            )?)?;
        }
        Ok(())
    }
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: i64,
) -> Result<(), std::fmt::Error> {
    let gauge = ConstGauge::new(value);
    gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)
}

fn saturating_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real line from a 6.x kernel, its command name made hostile.
    const STAT: &str = "4242 (explo) (shim x) S 1 4242 4242 0 -1 4194560 2711 0 0 0 \
                        150 75 0 0 20 0 9 0 123456 1234567168 4321 18446744073709551615 \
                        1 1 0 0 0 0 0 4096 17635 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n";

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        let stat = parse_stat(STAT).unwrap();
        assert_eq!(stat.cpu_seconds, 2.25);
        assert_eq!(stat.started_after_boot, 1234.56);
        assert_eq!(stat.virtual_bytes, 1_234_567_168);
    }

    #[test]
    fn a_truncated_stat_is_no_stat() {
        assert_eq!(parse_stat("4242 (explo S 1 2"), None);
        assert_eq!(parse_stat("4242 (explo) S 1 2 3"), None);
        assert_eq!(parse_stat(""), None);
    }

    #[test]
    fn resident_memory_is_read_in_kilobytes() {
        let status = "Name:\texplo-shim\nVmPeak:\t  30000 kB\nVmRSS:\t   11736 kB\nThreads:\t9\n";
        assert_eq!(parse_resident_bytes(status), Some(11736 * 1024));
        assert_eq!(parse_resident_bytes("Name:\tx\n"), None);
        assert_eq!(parse_resident_bytes("VmRSS:\t12 MB\n"), None);
    }

    #[test]
    fn the_soft_limit_on_open_files_is_the_max() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max cpu time              unlimited            unlimited            seconds   \n\
                      Max open files            1024                 524288               files     \n";
        assert_eq!(parse_max_fds(limits), Some(1024));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(parse_max_fds(unlimited), None);
    }

    #[test]
    fn boot_time_is_btime() {
        let stat = "cpu  1 2 3 4\nintr 5\nctxt 6\nbtime 1700000000\nprocesses 7\n";
        assert_eq!(parse_boot_time(stat), Some(1_700_000_000));
        assert_eq!(parse_boot_time("cpu 1\n"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_reads_as_itself() {
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(ProcessCollector));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for name in [
            "process_cpu_seconds_total ",
            "process_resident_memory_bytes ",
            "process_virtual_memory_bytes ",
            "process_open_fds ",
            "process_max_fds ",
            "process_start_time_seconds ",
        ] {
            assert!(text.contains(name), "missing {name} in\n{text}");
        }
    }
}
