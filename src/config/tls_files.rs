//! A listener's TLS certificate and key files, loaded into a rustls configuration: at start,
//! at every reload (the event loop's listeners), and by `weir-server -t`.

use std::io::{self, ErrorKind};
use std::path::Path;
use std::sync::Arc;

/// Loads a PEM certificate chain and private key into a rustls server configuration.
///
/// # Errors
/// `InvalidInput`, naming the file, when a file cannot be read, holds no certificate, or the
/// key does not fit the certificate.
pub fn load_tls(cert: &Path, key: &Path) -> io::Result<Arc<rustls::ServerConfig>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let invalid = |what: &Path, e: &dyn std::fmt::Display| {
        io::Error::new(
            ErrorKind::InvalidInput,
            format!("TLS: {}: {e}", what.display()),
        )
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| invalid(cert, &e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(cert, &e))?;
    if chain.is_empty() {
        return Err(invalid(cert, &"no certificate in the file"));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| invalid(key, &e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(cert, &e))?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| invalid(cert, &e))?;
    Ok(Arc::new(config))
}
