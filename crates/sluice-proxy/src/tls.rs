//! TLS for listeners (the proxy's and the admin API's): a rustls acceptor
//! (ring provider) offering HTTP/2 and HTTP/1.1 by ALPN, whose certificate
//! and key are re-read from their files when they change, without a
//! restart. A new pair that cannot be used is refused and the previous one
//! keeps serving. Not here: client certificates from downstream clients.

use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sluice_model::TlsConfig;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
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
    #[error("the certificate {cert} and the key {key} are not usable together: {source}")]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        source: tokio_rustls::rustls::Error,
    },
    #[error("TLS settings refused: {0}")]
    Rustls(#[from] tokio_rustls::rustls::Error),
}

/// A TLS acceptor for `cfg`'s certificate chain and key, with ALPN `h2`
/// then `http/1.1` (read once; see [`ServerCert`] for reloading).
pub fn tls_acceptor(cfg: &TlsConfig) -> Result<TlsAcceptor, TlsError> {
    ServerCert::load(cfg)?.acceptor()
}

/// A listener's certificate and key, read from their files and swapped for
/// the new pair when a file changes ([`ServerCert::reload_if_changed`],
/// [`ServerCert::watch`]). Connections already open keep the certificate
/// they were made with.
pub struct ServerCert {
    files: TlsConfig,
    current: ArcSwap<CertifiedKey>,
    /// What the files looked like when last read (successfully or not), so
    /// that a bad pair is reported once, not at every poll.
    seen: Mutex<Option<Stamp>>,
}

/// Modification time and length of the certificate and key files.
type Stamp = [(SystemTime, u64); 2];

// === impl ServerCert ===

impl ServerCert {
    /// Reads the pair; an error names the file that cannot be used.
    pub fn load(files: &TlsConfig) -> Result<Arc<ServerCert>, TlsError> {
        let seen = stamp(files);
        let key = read_pair(files)?;
        Ok(Arc::new(ServerCert {
            files: files.clone(),
            current: ArcSwap::from_pointee(key),
            seen: Mutex::new(seen),
        }))
    }

    /// An acceptor that presents whichever certificate is current at each handshake.
    pub fn acceptor(self: &Arc<Self>) -> Result<TlsAcceptor, TlsError> {
        let mut config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(TlsAcceptor::from(Arc::new(config)))
    }

    /// The files this certificate comes from.
    pub fn files(&self) -> &TlsConfig {
        &self.files
    }

    /// Re-reads the pair when either file changed since last read: `Ok(true)`
    /// when the new pair now serves, `Ok(false)` when nothing changed, an
    /// error (the previous pair keeps serving) when the new files cannot be used.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let now = stamp(&self.files);
        {
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            if *seen == now {
                return Ok(false);
            }
            // Also when the pair is refused: it is reported once, and read
            // again when a file changes (a missing file reads as `None`).
            *seen = now;
        }
        let key = read_pair(&self.files)?;
        self.current.store(Arc::new(key));
        Ok(true)
    }

    /// Looks at the files every `every` until `stop` completes, logging each
    /// reload and each refused pair (naming the file).
    pub async fn watch(self: Arc<Self>, every: Duration, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => return,
                () = tokio::time::sleep(every) => {}
            }
            match self.reload_if_changed() {
                Ok(true) => tracing::info!(
                    cert = %self.files.cert.display(),
                    "TLS certificate reloaded"
                ),
                Ok(false) => {}
                Err(e) => tracing::error!(
                    "TLS certificate not reloaded, the previous one keeps serving: {e}"
                ),
            }
        }
    }
}

impl ResolvesServerCert for ServerCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

impl fmt::Debug for ServerCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerCert")
            .field("cert", &self.files.cert)
            .field("key", &self.files.key)
            .finish()
    }
}

fn stamp(files: &TlsConfig) -> Option<Stamp> {
    let one = |path: &Path| {
        let meta = std::fs::metadata(path).ok()?;
        Some((meta.modified().ok()?, meta.len()))
    };
    Some([one(&files.cert)?, one(&files.key)?])
}

/// Reads the chain and key and checks that they belong together.
fn read_pair(files: &TlsConfig) -> Result<CertifiedKey, TlsError> {
    let chain = read_chain(&files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|source| TlsError::Key {
        path: files.key.clone(),
        source,
    })?;
    CertifiedKey::from_der(chain, key, &ring::default_provider()).map_err(|source| {
        TlsError::Mismatch {
            cert: files.cert.clone(),
            key: files.key.clone(),
            source,
        }
    })
}

/// The PEM certificates of a file (at least one).
pub(crate) fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certificates_error = |source| TlsError::Certificates {
        path: path.to_path_buf(),
        source,
    };
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(certificates_error)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(certificates_error)?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(chain)
}
