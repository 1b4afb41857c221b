//! A `redis-server` of the test's own, with no persistence, killed on drop.
//!
//! It listens on a unix socket only (`--port 0`), at a path of its own, so it takes no port.
//! The shim accepts only `redis://` and `rediss://` URLs, so a bridge on a loopback port of the
//! test's own (bound to port 0 and kept, on a thread of its own) carries the shim's
//! connections to that socket. The port therefore outlives an outage: [`RedisServer::stop`]
//! kills the server and [`RedisServer::restart`] brings it back behind the same URL, with no
//! moment where the port is free for anything else to take.
//!
//! Replication and Sentinel need TCP addresses too, and get the bridges': a replica announces
//! its bridge's port (`replica-announce-port`) and follows its primary's ([`RedisServer::
//! replicate`]), and a sentinel ([`super::sentinel`]) is reached through a bridge of its own.
//! [`RedisServer::lead_to`] turns a bridge to another server, as a managed endpoint's name
//! moves to the new primary after a failover.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::files::temp_path;
use super::wait::blocking_until;

/// The Redis clock the tests run with: the default (25 ms) is for a Redis next door, and one
/// slow reply on a loaded test machine would send a replica to its local fallback.
pub const TEST_REDIS_TIMEOUT: &str = "redis_timeout = \"2s\"\n";

pub struct RedisServer {
    /// `None` during an outage.
    child: Option<Child>,
    socket: PathBuf,
    bridge: Bridge,
}

impl RedisServer {
    /// Starts one, or says why it cannot. Without `redis-server` installed the test is
    /// skipped with a message, except where `EXPLO_SHIM_REQUIRE_REDIS` is set (`.ci/run` sets
    /// it after installing Redis), where that is a failure.
    pub fn start() -> Option<RedisServer> {
        let installed = Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if !installed {
            let why = "redis-server is not installed (apt-get install redis-server; .ci/run \
                       installs it), so this Redis test cannot run";
            assert!(
                std::env::var_os("EXPLO_SHIM_REQUIRE_REDIS").is_none(),
                "{why}"
            );
            eprintln!("SKIPPED: {why}");
            return None;
        }
        let socket = temp_path("redis.sock");
        let child = spawn_on(&socket);
        let bridge = Bridge::start(&socket);
        Some(RedisServer {
            child: Some(child),
            socket,
            bridge,
        })
    }

    /// The URL the shim is given: the bridge's port.
    pub fn url(&self) -> String {
        format!("redis://{}/", self.bridge.addr)
    }

    /// A connection of the test's own to the server, through the bridge as the shim's go.
    pub async fn connect(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .expect("a Redis URL")
            .get_multiplexed_async_connection()
            .await
            .expect("connect to the test's redis-server")
    }

    /// The server's own socket, for `redis-cli -s`.
    pub fn socket(&self) -> &str {
        self.socket.to_str().unwrap()
    }

    /// The bridge's port: the server's TCP address for replicas and sentinels.
    pub fn port(&self) -> u16 {
        self.bridge.addr.port()
    }

    /// `redis-cli` with `args` on the server's socket; its answer.
    pub fn cli(&self, args: &[&str]) -> String {
        redis_cli(&self.socket, args)
    }

    /// Makes this server a replica of `primary`, announced at its bridge's port, once the
    /// primary counts it online.
    pub fn replicate(&self, primary: &RedisServer) {
        // No waiting for more replicas before the first full sync.
        primary.cli(&["CONFIG", "SET", "repl-diskless-sync-delay", "0"]);
        self.cli(&["CONFIG", "SET", "replica-announce-ip", "127.0.0.1"]);
        self.cli(&[
            "CONFIG",
            "SET",
            "replica-announce-port",
            &self.port().to_string(),
        ]);
        self.cli(&["REPLICAOF", "127.0.0.1", &primary.port().to_string()]);
        let online = format!("port={},state=online", self.port());
        blocking_until(
            Duration::from_secs(10),
            "the replica never came online",
            || {
                primary
                    .cli(&["INFO", "replication"])
                    .contains(&online)
                    .then_some(())
            },
        );
    }

    /// `master` or `slave`, from `INFO replication`.
    pub fn role(&self) -> String {
        let info = self.cli(&["INFO", "replication"]);
        info.lines()
            .find_map(|line| line.strip_prefix("role:"))
            .unwrap_or("unknown")
            .trim()
            .to_owned()
    }

    /// The scripts this server has run itself (`EVAL` and `EVALSHA` that did not fail), from
    /// `INFO commandstats`: a replica runs none, it only applies the effects its primary sends.
    pub fn scripts_run(&self) -> u64 {
        let stats = self.cli(&["INFO", "commandstats"]);
        stats
            .lines()
            .filter(|line| {
                line.starts_with("cmdstat_eval:") || line.starts_with("cmdstat_evalsha:")
            })
            .map(|line| {
                let field = |name: &str| -> u64 {
                    line.split([':', ','])
                        .find_map(|part| part.strip_prefix(name)?.strip_prefix('='))
                        .and_then(|value| value.parse().ok())
                        .unwrap_or(0)
                };
                field("calls").saturating_sub(field("failed_calls") + field("rejected_calls"))
            })
            .sum()
    }

    /// From now on, new connections to this server's URL reach `other` instead (those open
    /// stay where they are), as a managed endpoint's name moves to a new primary.
    pub fn lead_to(&self, other: &RedisServer) {
        *self.bridge.target.lock().unwrap() = other.socket.clone();
    }

    /// Stops it, as an outage would: its connections end and new ones are reset.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Brings it back after [`RedisServer::stop`], empty, behind the same URL.
    pub fn restart(&mut self) {
        self.stop();
        self.child = Some(spawn_on(&self.socket));
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// `redis-cli` with `args` on the unix socket `socket`; its answer.
pub(super) fn redis_cli(socket: &std::path::Path, args: &[&str]) -> String {
    let output = Command::new("redis-cli")
        .arg("-s")
        .arg(socket)
        .args(args)
        .output()
        .expect("redis-cli comes with redis-server");
    assert!(output.status.success(), "redis-cli {args:?}: {output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `redis-server` on the unix socket `socket` and no TCP port, once it accepts connections.
fn spawn_on(socket: &std::path::Path) -> Child {
    // A socket file left by a killed server would be mistaken for a live one.
    let _ = std::fs::remove_file(socket);
    let path = socket.to_str().unwrap();
    let child = Command::new("redis-server")
        .args([
            "--port",
            "0",
            "--unixsocket",
            path,
            "--unixsocketperm",
            "700",
        ])
        .args(["--save", "", "--appendonly", "no"])
        // Replication through sockets only: no RDB file is written, in the working directory
        // or anywhere else.
        .args([
            "--repl-diskless-sync",
            "yes",
            "--repl-diskless-load",
            "swapdb",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn redis-server");
    await_socket(child, socket, "redis-server")
}

/// `child` once it accepts connections on `socket`.
pub(super) fn await_socket(mut child: Child, socket: &std::path::Path, name: &str) -> Child {
    blocking_until(
        Duration::from_secs(10),
        &format!("{name} did not start"),
        || {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("{name} exited with {status}");
            }
            std::os::unix::net::UnixStream::connect(socket).ok()
        },
    );
    child
}

/// Carries every connection to a loopback port of its own to the server's unix socket; while
/// the server is down, a connection is reset as soon as it is accepted.
pub(super) struct Bridge {
    pub(super) addr: std::net::SocketAddr,
    /// The socket new connections are carried to.
    target: Arc<Mutex<PathBuf>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Bridge {
    pub(super) fn start(socket: &std::path::Path) -> Bridge {
        let target = Arc::new(Mutex::new(socket.to_path_buf()));
        let carried_to = Arc::clone(&target);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        // A runtime of its own: the test's may be blocked (waiting on a child process) while
        // the shim talks to Redis.
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let serve = async {
                    while let Ok((mut client, _)) = listener.accept().await {
                        let socket = carried_to.lock().unwrap().clone();
                        tokio::spawn(async move {
                            match tokio::net::UnixStream::connect(&socket).await {
                                Ok(mut server) => {
                                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server)
                                        .await;
                                }
                                // As close to a refused connection as an accepted one gets.
                                Err(_) => {
                                    let _ = client.set_zero_linger();
                                }
                            }
                        });
                    }
                };
                tokio::select! {
                    _ = serve => {}
                    _ = stopped => {}
                }
            });
            // Dropping the runtime ends every connection still carried.
        });
        Bridge {
            addr,
            target,
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
