//! Ports for what must not be served: a port this test holds (bound, never listening), so a
//! connection to it is refused and nothing else on the machine can take it meanwhile. (A port
//! found free, released and handed to a process could be taken by anything in between.)

use std::net::SocketAddr;

/// A loopback port bound and never listened on: connecting to it is refused, and binding it
/// fails, for as long as this value lives.
pub struct ClosedPort {
    // Kept only to hold the port.
    _socket: socket2::Socket,
    pub addr: SocketAddr,
}

impl ClosedPort {
    pub fn new() -> Self {
        use socket2::{Domain, Socket, Type};
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("a TCP socket");
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        socket.bind(&any.into()).expect("bind 127.0.0.1:0");
        let addr = socket
            .local_addr()
            .unwrap()
            .as_socket()
            .expect("an IP address");
        ClosedPort {
            _socket: socket,
            addr,
        }
    }

    /// An `http://` URL of nothing: an upstream that refuses every connection.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}
