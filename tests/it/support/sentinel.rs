//! A Redis Sentinel of the test's own (`redis-server --sentinel`), killed on drop.
//!
//! Like [`RedisServer`], it listens on a unix socket only (`port 0`) behind a bridge on a
//! loopback port the test keeps, and announces that port (`sentinel announce-port`). It watches
//! one primary through the primary's bridge, with short timeouts so that a failover takes
//! about two seconds: the primary is judged down after 500 ms without an answer.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::files::temp_path;
use super::redis::{Bridge, RedisServer, await_socket, redis_cli};
use super::wait::blocking_until;

pub struct SentinelServer {
    child: Child,
    socket: PathBuf,
    config: PathBuf,
    bridge: Bridge,
}

impl SentinelServer {
    /// A sentinel watching `primary` under `master_name`, once it knows the primary's
    /// replicas (`replicas` of them), so that it can fail over at once.
    pub fn watch(primary: &RedisServer, master_name: &str, replicas: usize) -> SentinelServer {
        let socket = temp_path("sentinel.sock");
        let config = temp_path("sentinel.conf");
        let bridge = Bridge::start(&socket);
        // Sentinel rewrites its config file as it learns, so it gets a file of its own.
        std::fs::write(
            &config,
            format!(
                "port 0\n\
                 unixsocket {socket}\n\
                 unixsocketperm 700\n\
                 sentinel announce-ip 127.0.0.1\n\
                 sentinel announce-port {port}\n\
                 sentinel monitor {master_name} 127.0.0.1 {primary} 1\n\
                 sentinel down-after-milliseconds {master_name} 500\n\
                 sentinel failover-timeout {master_name} 3000\n\
                 sentinel parallel-syncs {master_name} 1\n",
                socket = socket.display(),
                port = bridge.addr.port(),
                primary = primary.port(),
            ),
        )
        .unwrap();
        let child = Command::new("redis-server")
            .arg(&config)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server --sentinel");
        let child = await_socket(child, &socket, "redis-server --sentinel");
        let sentinel = SentinelServer {
            child,
            socket,
            config,
            bridge,
        };
        blocking_until(
            Duration::from_secs(20),
            "the sentinel never learnt the primary's replicas",
            || {
                let known = sentinel.cli(&["SENTINEL", "replicas", master_name]);
                (known.matches("flags").count() >= replicas).then_some(())
            },
        );
        sentinel
    }

    /// `HOST:PORT` for `rate_limit.redis_sentinels`.
    pub fn addr(&self) -> String {
        self.bridge.addr.to_string()
    }

    /// The port of the primary the sentinel names for `master_name` (`SENTINEL
    /// get-master-addr-by-name`).
    pub fn primary_port(&self, master_name: &str) -> Option<u16> {
        let answer = self.cli(&["SENTINEL", "get-master-addr-by-name", master_name]);
        answer.lines().nth(1)?.trim().parse().ok()
    }

    /// `SENTINEL FAILOVER`: promotes a replica of `master_name`'s primary while the primary
    /// still answers, as an operator's planned switch does.
    pub fn fail_over(&self, master_name: &str) {
        let answer = self.cli(&["SENTINEL", "FAILOVER", master_name]);
        assert_eq!(
            answer.trim(),
            "OK",
            "SENTINEL FAILOVER {master_name}: {answer}"
        );
    }

    fn cli(&self, args: &[&str]) -> String {
        redis_cli(&self.socket, args)
    }
}

impl Drop for SentinelServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.socket);
        let _ = std::fs::remove_file(&self.config);
    }
}
