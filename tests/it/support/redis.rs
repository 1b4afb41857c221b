//! A `redis-server` of the test's own, with no persistence, killed on drop.
//!
//! It listens on a unix socket only (`--port 0`), at a path of its own, so it takes no port.
//! The shim accepts only `redis://` and `rediss://` URLs, so a bridge on a loopback port of the
//! test's own (bound to port 0 and kept, on a thread of its own) carries the shim's
//! connections to that socket. The port therefore outlives an outage: [`RedisServer::stop`]
//! kills the server and [`RedisServer::restart`] brings it back behind the same URL, with no
//! moment where the port is free for anything else to take.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::files::temp_path;
use super::wait::blocking_until;

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
        let bridge = Bridge::start(socket.clone());
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

    /// The server's own socket, for `redis-cli -s`.
    pub fn socket(&self) -> &str {
        self.socket.to_str().unwrap()
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

/// `redis-server` on the unix socket `socket` and no TCP port, once it accepts connections.
fn spawn_on(socket: &std::path::Path) -> Child {
    // A socket file left by a killed server would be mistaken for a live one.
    let _ = std::fs::remove_file(socket);
    let path = socket.to_str().unwrap();
    let mut child = Command::new("redis-server")
        .args([
            "--port",
            "0",
            "--unixsocket",
            path,
            "--unixsocketperm",
            "700",
        ])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn redis-server");
    blocking_until(
        Duration::from_secs(10),
        "redis-server did not start",
        || {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("redis-server exited with {status}");
            }
            std::os::unix::net::UnixStream::connect(socket).ok()
        },
    );
    child
}

/// Carries every connection to a loopback port of its own to the server's unix socket; while
/// the server is down, a connection is reset as soon as it is accepted.
struct Bridge {
    addr: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Bridge {
    fn start(socket: PathBuf) -> Bridge {
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
                        let socket = socket.clone();
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
