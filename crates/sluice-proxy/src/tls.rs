//! TLS for client-facing listeners: a rustls acceptor (ring provider) from a
//! PEM certificate chain and private key, offering HTTP/2 and HTTP/1.1 by
//! ALPN. Not here: client certificates, certificate reload.

use std::path::PathBuf;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sluice_model::TlsConfig;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

/// Why a listener's TLS config cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read certificates from {path}: {source}")]
    Certificates {
        path: PathBuf,
        source: rustls_pki_types::pem::Error,
    },
    #[error("no certificate in {path}")]
    NoCertificate { path: PathBuf },
    #[error("cannot read a private key from {path}: {source}")]
    Key {
        path: PathBuf,
        source: rustls_pki_types::pem::Error,
    },
    #[error("certificate and key are not usable together: {0}")]
    Rustls(#[from] tokio_rustls::rustls::Error),
}

/// A TLS acceptor for `cfg`'s certificate chain and key, with ALPN `h2`
/// then `http/1.1`.
pub fn tls_acceptor(cfg: &TlsConfig) -> Result<TlsAcceptor, TlsError> {
    let certificates_error = |source| TlsError::Certificates {
        path: cfg.cert.clone(),
        source,
    };
    let chain = CertificateDer::pem_file_iter(&cfg.cert)
        .map_err(certificates_error)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(certificates_error)?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cfg.cert.clone(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(&cfg.key).map_err(|source| TlsError::Key {
        path: cfg.key.clone(),
        source,
    })?;
    let mut config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
