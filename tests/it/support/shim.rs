//! The shim as a running child process: started on port 0 for both listeners with JSON logs
//! on stderr; the bound addresses come from its "explo-shim listening" line, and every log
//! line is kept for the test to wait on or assert.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use super::http::{Got, send};
use super::wait::{blocking_poll, blocking_until, until};

/// How long a condition on a running shim (a log line, a metric) is waited for.
const PATIENCE: Duration = Duration::from_secs(10);

/// What the stderr reader has collected.
#[derive(Default)]
struct Logs {
    lines: Vec<String>,
    /// The reader has seen stderr end: every line the process wrote is in `lines`.
    ended: bool,
}

pub struct Shim {
    child: Child,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    logs: Arc<Mutex<Logs>>,
}

impl Shim {
    /// The shim in front of `upstream_url`, at trace level, with any extra flags.
    pub fn start(upstream_url: &str, extra_args: &[&str]) -> Shim {
        Self::start_with_env(upstream_url, extra_args, &[])
    }

    pub fn start_with_env(upstream_url: &str, extra_args: &[&str], env: &[(&str, &str)]) -> Shim {
        let mut args = vec!["--upstream", upstream_url];
        args.extend_from_slice(extra_args);
        Self::spawn(&args, env)
    }

    /// `explo-shim --demo`: the shim in front of its own emulator.
    pub fn start_demo() -> Shim {
        Self::spawn(&["--demo"], &[])
    }

    /// `explo-shim --demo` with more flags (a `--config`, say).
    pub fn start_demo_with(extra_args: &[&str]) -> Shim {
        let mut args = vec!["--demo"];
        args.extend_from_slice(extra_args);
        Self::spawn(&args, &[])
    }

    fn spawn(args: &[&str], env: &[(&str, &str)]) -> Shim {
        let mut command = Command::new(env!("CARGO_BIN_EXE_explo-shim"));
        command
            .args([
                "--listen",
                "127.0.0.1:0",
                "--admin",
                "127.0.0.1:0",
                "--log-format",
                "json",
            ])
            .args(args)
            .env("RUST_LOG", "trace")
            .env_remove("EXPLO_SHIM_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("spawn explo-shim");
        let stderr = child.stderr.take().unwrap();
        let logs = Arc::new(Mutex::new(Logs::default()));
        let sink = Arc::clone(&logs);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().lines.push(line);
            }
            sink.lock().unwrap().ended = true;
        });
        let (addr, admin) =
            blocking_until(Duration::from_secs(20), "explo-shim did not start", || {
                let logs = logs.lock().unwrap();
                let listening = logs.lines.iter().find_map(|line| {
                    let event: Value = serde_json::from_str(line).ok()?;
                    (event["message"] == "explo-shim listening").then(|| {
                        (
                            event["listen"].as_str().unwrap().parse().unwrap(),
                            event["admin"].as_str().unwrap().parse().unwrap(),
                        )
                    })
                });
                if listening.is_none()
                    && let Ok(Some(status)) = child.try_wait()
                {
                    panic!("explo-shim exited early with {status}: {:?}", logs.lines);
                }
                listening
            });
        Shim {
            child,
            addr,
            admin,
            logs,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin, path)
    }

    /// `/metrics` as text, asked without a token.
    pub async fn metrics_text(&self) -> String {
        let metrics = send("GET", &self.admin_url("/metrics"), &[], "").await;
        String::from_utf8_lossy(&metrics.body).into_owned()
    }

    /// `/metrics` asked for as OpenMetrics (with exemplars), without a token.
    pub async fn openmetrics(&self) -> Got {
        send(
            "GET",
            &self.admin_url("/metrics"),
            &[("accept", "application/openmetrics-text")],
            "",
        )
        .await
    }

    /// Polls `/metrics` until it has `line` (a whole line, name and value), for up to 10 s.
    pub async fn wait_for_metric(&self, line: &str, failure: &str) {
        until(PATIENCE, failure, || async {
            self.metrics_text()
                .await
                .lines()
                .any(|found| found == line)
                .then_some(())
        })
        .await
    }

    /// The first log line `matches` accepts, waiting for it up to 10 s.
    pub async fn wait_for_line(&self, failure: &str, matches: impl Fn(&str) -> bool) -> String {
        until(PATIENCE, failure, || async {
            self.lines_so_far().into_iter().find(|line| matches(line))
        })
        .await
    }

    /// The lines the reader has collected up to now, without waiting: for a poll, which asks
    /// again anyway.
    pub fn lines_so_far(&self) -> Vec<String> {
        self.logs.lock().unwrap().lines.clone()
    }

    /// The events on `target` the reader has collected up to now, without waiting.
    pub fn events_so_far(&self, target: &str) -> Vec<Value> {
        parsed(&self.lines_so_far(), target)
    }

    /// Every log line so far. For a test that a line is absent, or that counts lines: a line
    /// the test waits for is better found with [`Shim::wait_for_line`].
    pub fn logs(&self) -> Vec<String> {
        if !self.logs.lock().unwrap().ended {
            // The lines of a running process can still be on their way through the pipe, and
            // nothing marks the last one written so far: a moment lets them arrive. (Once the
            // process has exited, the end of its stderr is that mark.)
            std::thread::sleep(Duration::from_millis(100));
        }
        self.lines_so_far()
    }

    /// The events on `target`, once at least `count` have come. A request's lines reach the
    /// pipe through the log writer's thread after its answer, so a test that counts them
    /// right after the request waits for them here.
    pub async fn wait_for_events(&self, target: &str, count: usize) -> Vec<Value> {
        until(
            PATIENCE,
            &format!("fewer than {count} events on {target}"),
            || async {
                let events = self.events_so_far(target);
                (events.len() >= count).then_some(events)
            },
        )
        .await
    }

    /// Parsed log events on `target`.
    pub fn events(&self, target: &str) -> Vec<Value> {
        parsed(&self.logs(), target)
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([format!("-{signal}"), self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit, at most `limit`; once it has, its last log lines are
    /// in too.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let status = blocking_poll(limit, || self.child.try_wait().ok().flatten())?;
        // Its stderr ends with it (unless a child of its own kept it open, which it has none).
        blocking_poll(limit, || self.logs.lock().unwrap().ended.then_some(()));
        Some(status)
    }
}

impl Drop for Shim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The JSON events among `lines` on `target`.
fn parsed(lines: &[String], target: &str) -> Vec<Value> {
    lines
        .iter()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|event| event["target"] == target)
        .collect()
}
