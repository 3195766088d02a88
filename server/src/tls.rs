//! TLS termination: with `--tls-cert` and `--tls-key` the server speaks `wss://` (and
//! `https://` for `/healthz` and `/metrics`) through rustls, on the same code path as
//! plain connections ([`crate::transport`]); without them it speaks plain `ws://`.
//!
//! rustls with the `ring` provider: no OpenSSL, nothing to install. Certificates and keys
//! are PEM files (the chain, leaf first; one private key, PKCS#8, PKCS#1 or SEC1). TLS 1.2
//! and 1.3; sessions resume by stateless tickets, so a relogin storm of returning
//! clients can skip the full handshake when they offer one.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;

/// Why the certificate or key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the certificate chain {}: {reason}", path.display())]
    Certificates { path: PathBuf, reason: String },
    #[error("{} holds no certificate (a PEM \"BEGIN CERTIFICATE\" block)", .0.display())]
    NoCertificate(PathBuf),
    #[error("cannot read a private key from {}: {reason}", path.display())]
    Key { path: PathBuf, reason: String },
    #[error("the certificate and key cannot be used together: {0}")]
    Rejected(String),
}

/// The TLS configuration of a server presenting the chain in `cert` with the key in
/// `key` (both PEM files).
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<_, _>>())
        .map_err(|error| TlsError::Certificates {
            path: cert.to_path_buf(),
            reason: error.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate(cert.to_path_buf()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|error| TlsError::Key {
        path: key.to_path_buf(),
        reason: error.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| TlsError::Rejected(error.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|error| TlsError::Rejected(error.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    if let Ok(ticketer) = rustls::crypto::ring::Ticketer::new() {
        config.ticketer = ticketer;
    }
    Ok(Arc::new(config))
}
