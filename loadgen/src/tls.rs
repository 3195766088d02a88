//! TLS for `wss://` targets: how loadgen verifies a server and resumes sessions.
//!
//! rustls with the `ring` provider (no OpenSSL). The trusted roots are Mozilla's, compiled
//! in (`webpki-roots`): the same on every machine and in a bare container, so a run
//! verifies the same way wherever it runs; a private CA is added with `ca_file`
//! (`--ca-file`). `insecure` (`--insecure`) skips verification altogether — only when
//! asked for explicitly, and every report says so. Session resumption is on by default
//! (a relogin then skips the full handshake when the server allows it) and can be turned
//! off, so a relogin storm can measure both.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::Resumption;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Servers whose sessions are remembered for resumption. rustls keys its cache by
/// server name and keeps a few TLS 1.3 tickets for each, shared by every simulated user.
const REMEMBERED_SERVERS: usize = 256;

/// How TLS connections are made (`[users] tls` in a scenario; `--ca-file`, `--insecure`,
/// `--no-tls-resumption` on the command line).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// A PEM file of CA certificates to trust besides the public roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Accept any certificate (no verification at all).
    #[serde(default)]
    pub insecure: bool,
    /// Resume TLS sessions on later logins.
    #[serde(default = "yes")]
    pub resumption: bool,
}

fn yes() -> bool {
    true
}

impl Default for TlsSettings {
    fn default() -> Self {
        TlsSettings {
            ca_file: None,
            insecure: false,
            resumption: true,
        }
    }
}

impl TlsSettings {
    /// The settings in words, for the reports.
    pub fn describe(&self) -> String {
        let mut text = if self.insecure {
            "INSECURE: server certificates are not verified (--insecure)".to_string()
        } else {
            match &self.ca_file {
                Some(ca) => format!("verified against the public roots and {}", ca.display()),
                None => "verified against the public roots (Mozilla's)".to_string(),
            }
        };
        text += if self.resumption {
            "; session resumption on"
        } else {
            "; session resumption off"
        };
        text
    }
}

/// Why TLS cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the CA file {}: {reason}", path.display())]
    CaFile { path: PathBuf, reason: String },
    #[error("{} holds no certificate (a PEM \"BEGIN CERTIFICATE\" block)", .0.display())]
    NoCertificate(PathBuf),
    #[error("{}: {reason}", path.display())]
    BadCertificate { path: PathBuf, reason: String },
}

/// A configured TLS client, shared by every connection of a run.
#[derive(Clone)]
pub struct TlsClient {
    connector: TlsConnector,
}

impl std::fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsClient")
    }
}

impl TlsClient {
    /// A client with `settings`.
    pub fn new(settings: &TlsSettings) -> Result<TlsClient, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::BadCertificate {
                path: PathBuf::new(),
                reason: e.to_string(),
            })?;
        let mut config = if settings.insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnything(provider)))
                .with_no_client_auth()
        } else {
            let mut roots = RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            if let Some(path) = &settings.ca_file {
                for cert in read_certificates(path)? {
                    roots.add(cert).map_err(|e| TlsError::BadCertificate {
                        path: path.clone(),
                        reason: e.to_string(),
                    })?;
                }
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        config.resumption = if settings.resumption {
            Resumption::in_memory_sessions(REMEMBERED_SERVERS)
        } else {
            Resumption::disabled()
        };
        Ok(TlsClient {
            connector: TlsConnector::from(Arc::new(config)),
        })
    }

    /// The client of the default settings (public roots, resumption on), made once.
    pub fn shared_default() -> &'static TlsClient {
        static DEFAULT: OnceLock<TlsClient> = OnceLock::new();
        DEFAULT.get_or_init(|| {
            TlsClient::new(&TlsSettings::default()).unwrap_or_else(|_| {
                unreachable!("bug: the default TLS settings read no file and cannot fail")
            })
        })
    }

    /// The TLS handshake over `tcp` with the server named `host` (a DNS name or an IP
    /// address, as in the URL). The error says what was wrong with the certificate.
    pub async fn connect(
        &self,
        host: &str,
        tcp: TcpStream,
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
        let name = ServerName::try_from(host.to_string())
            .map_err(|_| format!("{host:?} is not a name TLS can verify"))?;
        self.connector
            .connect(name, tcp)
            .await
            .map_err(|error| error.to_string())
    }
}

fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<_, _>>())
        .map_err(|error| TlsError::CaFile {
            path: path.to_path_buf(),
            reason: error.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(path.to_path_buf()));
    }
    Ok(certs)
}

/// `--insecure`: every certificate is accepted; signatures are still checked, so the
/// handshake itself is sound.
#[derive(Debug)]
struct AcceptAnything(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnything {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
