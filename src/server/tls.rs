//! Optional TLS on the main listener, so a legacy client configured with an `https://` base
//! URL can point at the shim unchanged. rustls with the ring provider; ALPN offers h2 and
//! http/1.1. On SIGHUP the certificate and key are read again; a bad pair is logged and the
//! current one stays in service.

use std::path::Path;
use std::sync::{Arc, RwLock};

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::config::ConfigError;

/// The certificate in service and where it came from.
pub struct InboundTls {
    current: RwLock<TlsAcceptor>,
}

impl InboundTls {
    /// Reads the certificate chain and key; fails with a message naming the file.
    pub fn load(cert_file: &Path, key_file: &Path) -> Result<Self, ConfigError> {
        let acceptor = acceptor(cert_file, key_file)?;
        Ok(Self {
            current: RwLock::new(acceptor),
        })
    }

    /// The acceptor for a new connection.
    pub fn acceptor(&self) -> TlsAcceptor {
        self.current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Reads the files (the same or, after a config reload, others) into a certificate ready
    /// to [`install`](Self::install); a bad pair is an error and changes nothing.
    pub fn prepare(cert_file: &Path, key_file: &Path) -> Result<TlsAcceptor, ConfigError> {
        acceptor(cert_file, key_file)
    }

    /// Serves new connections with `prepared`.
    pub fn install(&self, prepared: TlsAcceptor) {
        *self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = prepared;
    }
}

fn acceptor(cert_file: &Path, key_file: &Path) -> Result<TlsAcceptor, ConfigError> {
    let invalid = |key: &str, path: &Path, reason: String| {
        ConfigError(format!("invalid `{key}` {}: {reason}", path.display()))
    };
    let read = |key: &str, path: &Path| {
        crate::config::read::read_bounded(path)
            .map_err(|error| invalid(key, path, error.to_string()))
    };
    let chain_pem = read("tls.cert_file", cert_file)?;
    let chain = CertificateDer::pem_slice_iter(&chain_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| invalid("tls.cert_file", cert_file, error.to_string()))?;
    if chain.is_empty() {
        return Err(invalid(
            "tls.cert_file",
            cert_file,
            "no PEM certificates found".to_owned(),
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(&read("tls.key_file", key_file)?)
        .map_err(|error| invalid("tls.key_file", key_file, error.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| ConfigError(format!("TLS set-up failed: {error}")))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|error| {
            invalid(
                "tls.key_file",
                key_file,
                format!("does not match the certificate: {error}"),
            )
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_files_are_named() {
        let error = InboundTls::load(
            Path::new("/nonexistent/cert.pem"),
            Path::new("/nonexistent/key.pem"),
        )
        .err()
        .unwrap()
        .to_string();
        assert!(
            error.contains("tls.cert_file") && error.contains("/nonexistent/cert.pem"),
            "{error}"
        );
    }
}
