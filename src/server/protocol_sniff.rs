//! Which HTTP version a client connection speaks, from its first bytes.
//!
//! A plain client connection may carry HTTP/1.1 or HTTP/2 with prior knowledge (h2c), which
//! starts with a fixed preface. hyper-util's auto builder answers the same question, but it
//! keeps both protocols' connection state inline in one future (about 6.8 KB per connection,
//! idle or not) and hands hyper the sniffed bytes in a read of their own, which doubles hyper's
//! read buffer to 16 KB on the first request. Sniffing here lets the server box only the
//! protocol that was chosen and pass the bytes on together with the rest of the head (see
//! [`crate::server::framing_guard::FramingGuard::new`]).

use tokio::io::{AsyncRead, AsyncReadExt};

/// The HTTP/2 connection preface (RFC 9113 §3.4).
pub const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What the first bytes say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http1,
    Http2,
}

/// The verdict on `prefix`, or `None` while it could still become the HTTP/2 preface.
pub fn classify(prefix: &[u8]) -> Option<Protocol> {
    let compared = prefix.len().min(H2_PREFACE.len());
    if prefix[..compared] != H2_PREFACE[..compared] {
        Some(Protocol::Http1)
    } else if compared == H2_PREFACE.len() {
        Some(Protocol::Http2)
    } else {
        None
    }
}

/// The bytes read while sniffing; they go to hyper ahead of the rest of the stream.
pub struct Sniffed {
    pub protocol: Protocol,
    buffer: [u8; H2_PREFACE.len()],
    len: usize,
}

impl Sniffed {
    pub fn bytes(&self) -> &[u8] {
        &self.buffer[..self.len]
    }
}

/// Reads until the protocol is known: at most the preface's 24 bytes, and only as far as the
/// first byte that differs from it (`G` of `GET`, usually the first read). A stream that ends
/// first is HTTP/1, whose parser then reports the short message. The caller bounds the wait.
pub async fn sniff<IO: AsyncRead + Unpin>(io: &mut IO) -> std::io::Result<Sniffed> {
    let mut buffer = [0u8; H2_PREFACE.len()];
    let mut len = 0;
    loop {
        let read = io.read(&mut buffer[len..]).await?;
        len += read;
        let verdict = if read == 0 {
            Some(Protocol::Http1)
        } else {
            classify(&buffer[..len])
        };
        if let Some(protocol) = verdict {
            return Ok(Sniffed {
                protocol,
                buffer,
                len,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[test]
    fn the_preface_and_its_prefixes_are_told_from_http1() {
        assert_eq!(classify(H2_PREFACE), Some(Protocol::Http2));
        assert_eq!(classify(&H2_PREFACE[..10]), None);
        assert_eq!(classify(b""), None);
        assert_eq!(classify(b"GET / HTTP/1.1\r\n"), Some(Protocol::Http1));
        assert_eq!(classify(b"PRI * HTTP/1.1"), Some(Protocol::Http1));
        let mut longer = H2_PREFACE.to_vec();
        longer.extend_from_slice(b"\x00\x00\x12\x04");
        assert_eq!(classify(&longer), Some(Protocol::Http2));
    }

    #[tokio::test]
    async fn a_preface_dripped_a_byte_at_a_time_is_read_whole() {
        let (mut client, mut server) = tokio::io::duplex(64);
        let writer = tokio::spawn(async move {
            for byte in H2_PREFACE {
                client.write_all(&[*byte]).await.unwrap();
                tokio::task::yield_now().await;
            }
            client
        });
        let sniffed = sniff(&mut server).await.unwrap();
        assert_eq!(sniffed.protocol, Protocol::Http2);
        assert_eq!(sniffed.bytes(), H2_PREFACE);
        drop(writer.await.unwrap());
    }

    #[tokio::test]
    async fn an_http1_head_is_known_from_its_first_read_and_nothing_is_lost() {
        let (mut client, mut server) = tokio::io::duplex(64);
        client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        let sniffed = sniff(&mut server).await.unwrap();
        assert_eq!(sniffed.protocol, Protocol::Http1);
        assert_eq!(sniffed.bytes(), b"GET / HTTP/1.1\r\n");
    }

    #[tokio::test]
    async fn a_stream_that_ends_inside_the_preface_is_left_to_http1() {
        let (mut client, mut server) = tokio::io::duplex(64);
        client.write_all(&H2_PREFACE[..5]).await.unwrap();
        drop(client);
        let sniffed = sniff(&mut server).await.unwrap();
        assert_eq!(sniffed.protocol, Protocol::Http1);
        assert_eq!(sniffed.bytes(), &H2_PREFACE[..5]);
    }
}
