//! TLS to `https://` upstream endpoints: a rustls client (ring provider,
//! ALPN `http/1.1`) trusting the service's `upstream_tls.ca` (else the web
//! roots), presenting its client certificate when one is configured (mTLS),
//! and the name each endpoint is asked for (SNI) and checked against.
//!
//! The files are read when the routing table is built; an endpoint's state
//! (and so its idle connections) is keyed by the settings' fingerprint, so
//! connections made with other files or another name are never reused.
//!
//! Not here: TLS for listeners (module `tls`), HTTP/2 to upstreams.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use sluice_model::{split_scheme, Config, Endpoint, FieldError, Service, UpstreamTls};
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

use crate::balance::EndpointState;
use crate::metrics::Metrics;

/// Why a service's `upstream_tls` cannot be used; names the field and file.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamTlsError {
    /// A file cannot be read or holds no usable PEM item.
    #[error("{field}: {path}: {why}")]
    File {
        field: &'static str,
        path: PathBuf,
        why: String,
    },
    /// The client certificate and key do not belong together.
    #[error("key: {key} is not the private key of {cert}: {why}")]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        why: String,
    },
    /// The name to ask the upstream for is not a DNS name or an IP address.
    #[error("server_name: {0:?} is not a DNS name or an IP address")]
    ServerName(String),
    /// rustls refused the settings.
    #[error("the TLS settings were refused: {0}")]
    Rustls(#[from] tokio_rustls::rustls::Error),
}

impl UpstreamTlsError {
    /// The `upstream_tls` field this error is about.
    pub fn field(&self) -> &'static str {
        match self {
            UpstreamTlsError::File { field, .. } => field,
            UpstreamTlsError::Mismatch { .. } => "key",
            UpstreamTlsError::ServerName(_) => "server_name",
            UpstreamTlsError::Rustls(_) => "ca",
        }
    }
}

/// Reads every service's `upstream_tls` files as the routing table will,
/// for config validation: one error per unusable field, with its path
/// (`services[i].upstream_tls.key`), so that a bad file refuses the
/// config (or its reload) instead of taking endpoints out of service.
pub fn check_upstream_tls(config: &Config) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for (i, service) in config.services.iter().enumerate() {
        let Some(tls) = &service.upstream_tls else {
            continue;
        };
        if let Err(error) = TlsSettings::read(Some(tls)).and_then(|s| s.client_config()) {
            errors.push(FieldError {
                path: format!("services[{i}].upstream_tls.{}", error.field()),
                message: error.to_string(),
            });
        }
    }
    errors
}

/// A service's TLS settings with its files read, not yet parsed.
pub(crate) struct TlsSettings {
    files: Option<UpstreamTls>,
    ca: Option<Vec<u8>>,
    client: Option<(Vec<u8>, Vec<u8>)>,
    /// Identifies the settings and file contents: part of the endpoint key.
    pub(crate) fingerprint: u64,
}

/// What one `https://` endpoint needs to connect: the client and the name.
pub(crate) struct TlsClient {
    pub(crate) connector: TlsConnector,
    pub(crate) server_name: ServerName<'static>,
}

impl std::fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsClient")
            .field("server_name", &self.server_name)
            .finish()
    }
}

// === impl TlsSettings ===

impl TlsSettings {
    /// Reads the files of `tls` (None: web roots, no client certificate).
    pub(crate) fn read(tls: Option<&UpstreamTls>) -> Result<TlsSettings, UpstreamTlsError> {
        let Some(files) = tls else {
            return Ok(TlsSettings {
                files: None,
                ca: None,
                client: None,
                fingerprint: 0,
            });
        };
        let ca = files.ca.as_deref().map(|p| read("ca", p)).transpose()?;
        let client = match (&files.cert, &files.key) {
            (Some(cert), Some(key)) => Some((read("cert", cert)?, read("key", key)?)),
            _ => None,
        };
        let mut hasher = DefaultHasher::new();
        (files, &ca, &client).hash(&mut hasher);
        Ok(TlsSettings {
            files: Some(files.clone()),
            ca,
            client,
            fingerprint: hasher.finish() | 1,
        })
    }

    /// The rustls client for these settings.
    pub(crate) fn client_config(&self) -> Result<Arc<ClientConfig>, UpstreamTlsError> {
        let files = self.files.as_ref();
        let mut roots = RootCertStore::empty();
        match (&self.ca, files.and_then(|f| f.ca.as_deref())) {
            (Some(pem), Some(path)) => {
                for cert in certificates("ca", path, pem)? {
                    roots.add(cert).map_err(|e| file_error("ca", path, e))?;
                }
            }
            _ => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        let builder = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots);
        let mut config = match (&self.client, files) {
            (Some((cert_pem, key_pem)), Some(files)) => {
                let (cert, key) = (
                    files.cert.as_deref().unwrap_or(Path::new("")),
                    files.key.as_deref().unwrap_or(Path::new("")),
                );
                let chain = certificates("cert", cert, cert_pem)?;
                let private = PrivateKeyDer::from_pem_slice(key_pem)
                    .map_err(|e| file_error("key", key, e))?;
                builder.with_client_auth_cert(chain, private).map_err(|e| {
                    UpstreamTlsError::Mismatch {
                        cert: cert.to_path_buf(),
                        key: key.to_path_buf(),
                        why: e.to_string(),
                    }
                })?
            }
            _ => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// The client for an endpoint whose host is `host`.
    pub(crate) fn client(&self, host: &str) -> Result<TlsClient, UpstreamTlsError> {
        let name = self
            .files
            .as_ref()
            .and_then(|f| f.server_name.as_deref())
            .unwrap_or_else(|| host.trim_start_matches('[').trim_end_matches(']'));
        let server_name = ServerName::try_from(name.to_string())
            .map_err(|_| UpstreamTlsError::ServerName(name.to_string()))?;
        Ok(TlsClient {
            connector: TlsConnector::from(self.client_config()?),
            server_name,
        })
    }
}

/// A service's TLS settings as the table being built uses them.
pub(crate) struct ServiceTls {
    /// The settings read now; None when the files are not usable now.
    settings: Option<TlsSettings>,
    /// The fingerprint endpoints are keyed by: of the settings read now, or
    /// of the last usable ones (whose live endpoints keep serving).
    fingerprint: Option<u64>,
}

/// The service's TLS settings with their files read, when it has an
/// `https://` endpoint. Files that became unusable since the last table
/// (config validation refuses them at load and reload, but they may change
/// on disk in between) are logged, and the endpoints made with the last
/// usable ones keep serving while a live table holds them.
pub(crate) fn upstream_tls_settings(
    service: &Service,
    stable: &[Endpoint],
    canary: Option<&[Endpoint]>,
    metrics: &Metrics,
) -> Option<ServiceTls> {
    let mut endpoints = stable.iter().chain(canary.into_iter().flatten());
    if !endpoints.any(|e| split_scheme(e).0) {
        return None;
    }
    let last = metrics.usable_upstream_tls(&service.name);
    let read = TlsSettings::read(service.upstream_tls.as_ref()).and_then(|settings| {
        if last != Some(settings.fingerprint) {
            settings.client_config()?;
            metrics.set_usable_upstream_tls(&service.name, settings.fingerprint);
        }
        Ok(settings)
    });
    Some(match read {
        Ok(settings) => ServiceTls {
            fingerprint: Some(settings.fingerprint),
            settings: Some(settings),
        },
        Err(error) => {
            tracing::error!(
                service = %service.name,
                "upstream_tls.{error}; https endpoints keep their last usable settings, if any"
            );
            ServiceTls {
                settings: None,
                fingerprint: last,
            }
        }
    })
}

/// The shared state of `endpoint`: plain endpoints are keyed by `host:port`,
/// TLS ones also by their settings, so that idle connections of one kind
/// (or made with other certificates) are never lent for the other.
pub(crate) fn endpoint_state(
    endpoint: &str,
    tls: Option<&ServiceTls>,
    metrics: &Metrics,
) -> Option<Arc<EndpointState>> {
    let (https, authority) = split_scheme(endpoint);
    if !https {
        return metrics.endpoint(authority, || EndpointState::new(authority));
    }
    let tls = tls?;
    let key = format!("{endpoint}#{:x}", tls.fingerprint?);
    metrics.endpoint(&key, || {
        let host = authority.parse::<http::uri::Authority>().ok()?;
        match tls.settings.as_ref()?.client(host.host()) {
            Ok(client) => EndpointState::with_tls(authority, Some(client)),
            Err(error) => {
                tracing::error!(%endpoint, "endpoint left out: upstream_tls.{error}");
                None
            }
        }
    })
}

fn read(field: &'static str, path: &Path) -> Result<Vec<u8>, UpstreamTlsError> {
    std::fs::read(path).map_err(|e| file_error(field, path, format!("cannot read it: {e}")))
}

fn file_error(field: &'static str, path: &Path, why: impl ToString) -> UpstreamTlsError {
    UpstreamTlsError::File {
        field,
        path: path.to_path_buf(),
        why: why.to_string(),
    }
}

/// The PEM certificates in `pem` (at least one).
fn certificates(
    field: &'static str,
    path: &Path,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, UpstreamTlsError> {
    let chain = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(field, path, e))?;
    if chain.is_empty() {
        return Err(file_error(field, path, "no PEM certificate in it"));
    }
    Ok(chain)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name)
    }

    #[test]
    fn plain_and_tls_endpoints_never_share_connections() {
        let metrics = Metrics::new();
        let usable = |settings: TlsSettings| ServiceTls {
            fingerprint: Some(settings.fingerprint),
            settings: Some(settings),
        };
        let web_roots = usable(TlsSettings::read(None).unwrap());
        let with_ca = UpstreamTls {
            ca: Some(fixture("upstream-ca.crt")),
            ..UpstreamTls::default()
        };
        let with_ca = usable(TlsSettings::read(Some(&with_ca)).unwrap());
        let state = |endpoint: &str, tls: &ServiceTls| {
            endpoint_state(endpoint, Some(tls), &metrics).unwrap()
        };
        let plain = state("127.0.0.1:8443", &web_roots);
        assert!(plain.tls.is_none());
        assert!(Arc::ptr_eq(
            &plain,
            &state("http://127.0.0.1:8443", &web_roots)
        ));

        let tls = state("https://127.0.0.1:8443", &web_roots);
        assert!(tls.tls.is_some());
        assert_eq!(tls.address, "https://127.0.0.1:8443");
        assert!(!Arc::ptr_eq(&plain, &tls));
        assert!(Arc::ptr_eq(
            &tls,
            &state("https://127.0.0.1:8443", &web_roots)
        ));
        // Other settings (here another CA), other connections.
        assert!(!Arc::ptr_eq(
            &tls,
            &state("https://127.0.0.1:8443", &with_ca)
        ));
        // The default port of https is left out of the Host header.
        assert_eq!(state("https://a.test:443", &web_roots).host, "a.test");
        assert_eq!(state("https://a.test:8443", &web_roots).host, "a.test:8443");
    }
}
