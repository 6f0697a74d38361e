//! TLS for the client: which server to trust ([`TlsOptions`]) and the rustls configuration
//! built from it for each connection, so a reconnection redoes the whole handshake.
//!
//! Trust is either the CA certificates of a PEM file (normal certificate and host name
//! checks) or one pinned certificate: the server must present exactly those DER bytes, and
//! its name and validity dates are not checked (for tests and self-signed servers).

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore,
    SignatureScheme,
};

/// How a client connects over TLS: see [`Client::connect_tls`](super::Client::connect_tls).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsOptions {
    /// The name sent in SNI and, with [`TlsTrust::CaFile`], checked against the certificate.
    pub server_name: String,
    /// Which certificates are accepted.
    pub trust: TlsTrust,
}

/// Which server certificates a TLS client accepts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TlsTrust {
    /// Certificates signed by one of the CA certificates in this PEM file (read at each
    /// connection attempt).
    CaFile(PathBuf),
    /// Exactly this certificate (DER bytes), whatever its names and dates.
    Pinned(Vec<u8>),
}

impl TlsOptions {
    /// Trust the CA certificates in the PEM file at `path`.
    pub fn ca_file(server_name: &str, path: impl Into<PathBuf>) -> TlsOptions {
        TlsOptions {
            server_name: server_name.to_owned(),
            trust: TlsTrust::CaFile(path.into()),
        }
    }

    /// Trust exactly the certificate `der`.
    pub fn pinned(server_name: &str, der: impl Into<Vec<u8>>) -> TlsOptions {
        TlsOptions {
            server_name: server_name.to_owned(),
            trust: TlsTrust::Pinned(der.into()),
        }
    }

    /// A fresh rustls client connection for one connection attempt.
    ///
    /// # Errors
    /// `InvalidInput` for a bad server name or a CA file without certificates; the error of
    /// reading or parsing the CA file.
    pub(super) fn connection(&self) -> io::Result<ClientConnection> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(io::Error::other)?;
        let config = match &self.trust {
            TlsTrust::CaFile(path) => {
                let mut roots = RootCertStore::empty();
                for cert in CertificateDer::pem_file_iter(path).map_err(|e| pem_error(path, e))? {
                    roots
                        .add(cert.map_err(|e| pem_error(path, e))?)
                        .map_err(io::Error::other)?;
                }
                if roots.is_empty() {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("no certificate in {}", path.display()),
                    ));
                }
                builder.with_root_certificates(roots)
            }
            TlsTrust::Pinned(der) => {
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(Pinned {
                        der: der.clone(),
                        provider,
                    }))
            }
        }
        .with_no_client_auth();
        let name = ServerName::try_from(self.server_name.clone()).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("TLS server name {:?}: {e}", self.server_name),
            )
        })?;
        ClientConnection::new(Arc::new(config), name).map_err(io::Error::other)
    }
}

fn pem_error(path: &std::path::Path, error: rustls::pki_types::pem::Error) -> io::Error {
    match error {
        rustls::pki_types::pem::Error::Io(e) => {
            io::Error::new(e.kind(), format!("{}: {e}", path.display()))
        }
        e => io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {e:?}", path.display()),
        ),
    }
}

/// Accepts exactly one certificate; signatures are still verified against it.
#[derive(Debug)]
struct Pinned {
    der: Vec<u8>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.der.as_slice() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
