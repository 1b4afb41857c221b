//! Where and how to connect to the one upstream ([`Endpoint`]: TCP, TLS through rustls, ALPN),
//! and the byte stream a connection runs on ([`Transport`]).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::HeaderValue;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::observe::metrics::{Metrics, UpstreamFailure};

/// Where and how to connect: built once, shared by every thread's pool.
#[derive(Clone)]
pub struct Endpoint {
    pub(super) host: String,
    pub(super) port: u16,
    /// `Some` for `https://` upstreams.
    pub(super) tls: Option<(TlsConnector, ServerName<'static>)>,
    /// The `Host` header every HTTP/1.1 request carries.
    pub(super) host_header: HeaderValue,
    pub(super) connect_timeout: Duration,
    pub(super) idle_timeout: Duration,
    pub(super) max_idle: usize,
    /// Where failed exchanges are counted, by [`UpstreamFailure`].
    pub(super) metrics: Arc<Metrics>,
}

impl Endpoint {
    pub fn new(
        url: &crate::config::UpstreamUrl,
        tls: Arc<rustls::ClientConfig>,
        connect_timeout: Duration,
        idle_timeout: Duration,
        max_idle: usize,
        metrics: Arc<Metrics>,
    ) -> Result<Self, String> {
        let https = url.scheme == http::uri::Scheme::HTTPS;
        let host = url
            .authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = url
            .authority
            .port_u16()
            .unwrap_or(if https { 443 } else { 80 });
        let tls = if https {
            let name = ServerName::try_from(host.clone())
                .map_err(|error| format!("invalid upstream host {host:?}: {error}"))?;
            Some((TlsConnector::from(tls), name))
        } else {
            None
        };
        let host_header = HeaderValue::from_str(url.authority.as_str())
            .map_err(|error| format!("invalid upstream authority: {error}"))?;
        Ok(Self {
            host,
            port,
            tls,
            host_header,
            connect_timeout,
            idle_timeout,
            max_idle,
            metrics,
        })
    }
}

/// A connection's byte stream: plain TCP or TLS over it.
pub(super) enum Transport {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Transport {
    pub(super) fn negotiated_h2(&self) -> bool {
        match self {
            Self::Plain(_) => false,
            Self::Tls(stream) => stream.get_ref().1.alpn_protocol() == Some(b"h2"),
        }
    }
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            Self::Tls(stream) => Pin::new(stream.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            Self::Tls(stream) => Pin::new(stream.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
            Self::Tls(stream) => Pin::new(stream.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(stream) => stream.is_write_vectored(),
            Self::Tls(stream) => stream.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_flush(cx),
            Self::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_shutdown(cx),
            Self::Tls(stream) => Pin::new(stream.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Why an exchange with the upstream broke, from hyper's error and its sources: a reply hyper
/// could not parse is `invalid_reply`, a TLS error anywhere in the chain `tls`, hyper's own
/// timer `timeout`, and everything else (a reset, a broken pipe, a connection closed before
/// the reply was complete, an HTTP/2 stream or connection torn down) `reset`.
pub fn classify(error: &(dyn std::error::Error + 'static)) -> UpstreamFailure {
    let mut cause = Some(error);
    while let Some(error) = cause {
        if let Some(hyper_error) = error.downcast_ref::<hyper::Error>() {
            if hyper_error.is_parse() {
                return UpstreamFailure::InvalidReply;
            }
            if hyper_error.is_timeout() {
                return UpstreamFailure::Timeout;
            }
        }
        if error.is::<rustls::Error>() {
            return UpstreamFailure::Tls;
        }
        // An `io::Error` hides the error it wraps from `source()`: look inside.
        if let Some(io_error) = error.downcast_ref::<io::Error>()
            && io_error
                .get_ref()
                .is_some_and(|inner| inner.is::<rustls::Error>())
        {
            return UpstreamFailure::Tls;
        }
        cause = error.source();
    }
    UpstreamFailure::Reset
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tls_error_anywhere_in_the_chain_is_tls() {
        let alert = rustls::Error::AlertReceived(rustls::AlertDescription::BadCertificate);
        let wrapped = io::Error::new(io::ErrorKind::InvalidData, alert.clone());
        assert_eq!(classify(&wrapped), UpstreamFailure::Tls);
        assert_eq!(classify(&alert), UpstreamFailure::Tls);
    }

    #[test]
    fn a_broken_connection_is_reset() {
        for kind in [
            io::ErrorKind::ConnectionReset,
            io::ErrorKind::BrokenPipe,
            io::ErrorKind::UnexpectedEof,
        ] {
            assert_eq!(classify(&io::Error::from(kind)), UpstreamFailure::Reset);
        }
    }
}
