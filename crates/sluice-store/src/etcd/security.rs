//! How the gateway client proves who it talks to and who it is: TLS (the
//! CA to trust, an optional client certificate for etcd's
//! `--client-cert-auth`, a server name override) and etcd's user
//! authentication (a user and a password read from an environment variable
//! or a file when the store is opened).
//!
//! Not for: the connection itself (the gateway's) or parsing the `store`
//! URL (the model's). The password never leaves this module except in the
//! body of `/v3/auth/authenticate`; it is not in any `Debug` or error text.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use sluice_model::{EtcdLocation, PasswordSource};

/// A TLS setting or a credential that cannot be used, named by its option
/// in the `store` URL.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    /// A file named by an option cannot be read.
    #[error("{option}={}: cannot read it: {source}", path.display())]
    Read {
        /// `ca`, `cert`, `key` or `password_file`.
        option: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A PEM file holds nothing of what the option needs.
    #[error("{option}={}: {what}", path.display())]
    Pem {
        option: &'static str,
        path: PathBuf,
        /// e.g. `no PEM certificate (BEGIN CERTIFICATE) in it`.
        what: String,
    },
    /// rustls refused the certificates or the key (e.g. a key that does not
    /// match the certificate).
    #[error("{what}: {source}")]
    Tls {
        /// e.g. `cert= and key=`.
        what: &'static str,
        #[source]
        source: rustls::Error,
    },
    /// `server_name=` is not a DNS name or an IP address.
    #[error("server_name={0:?} is not a DNS name or an IP address")]
    ServerName(String),
    /// `password_env=` names a variable that is not set (or is empty).
    #[error("password_env={0}: the environment variable is not set or is empty")]
    PasswordEnv(String),
    /// `password_file=` holds no password.
    #[error("password_file={}: the file is empty", .0.display())]
    PasswordFileEmpty(PathBuf),
}

/// TLS to every endpoint: the client config and an optional fixed name.
#[derive(Clone)]
pub(crate) struct Tls {
    pub(crate) config: Arc<ClientConfig>,
    /// Checked against every member's certificate instead of its host.
    pub(crate) server_name: Option<ServerName<'static>>,
    /// Whether `cert=` and `key=` give a client certificate.
    pub(crate) client_certificate: bool,
}

/// An etcd user and its password.
#[derive(Clone)]
pub(crate) struct Credentials {
    pub(crate) user: String,
    pub(crate) password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"(hidden)")
            .finish()
    }
}

/// What the gateway adds to plain HTTP: TLS and a user, both optional.
#[derive(Clone, Default)]
pub struct Security {
    pub(crate) tls: Option<Tls>,
    pub(crate) credentials: Option<Credentials>,
}

// === impl Security ===

impl Security {
    /// Reads the files and the password a `store` URL names; the error names
    /// the option at fault.
    pub fn from_location(location: &EtcdLocation) -> Result<Security, SecurityError> {
        let tls = match &location.tls {
            None => None,
            Some(files) => {
                let roots = match &files.ca {
                    Some(path) => trusted_roots(path)?,
                    None => webpki_roots::TLS_SERVER_ROOTS.iter().cloned().collect(),
                };
                let provider = Arc::new(rustls::crypto::ring::default_provider());
                let builder = ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map_err(|source| SecurityError::Tls {
                        what: "TLS versions",
                        source,
                    })?
                    .with_root_certificates(roots);
                let config = match (&files.cert, &files.key) {
                    (Some(cert), Some(key)) => builder
                        .with_client_auth_cert(certificates("cert", cert)?, private_key(key)?)
                        .map_err(|source| SecurityError::Tls {
                            what: "cert= and key= (the client certificate and its key)",
                            source,
                        })?,
                    _ => builder.with_no_client_auth(),
                };
                let server_name = files
                    .server_name
                    .as_ref()
                    .map(|name| {
                        ServerName::try_from(name.clone())
                            .map_err(|_| SecurityError::ServerName(name.clone()))
                    })
                    .transpose()?;
                Some(Tls {
                    config: Arc::new(config),
                    server_name,
                    client_certificate: files.cert.is_some(),
                })
            }
        };
        let credentials = match &location.auth {
            None => None,
            Some(auth) => Some(Credentials {
                user: auth.user.clone(),
                password: read_password(&auth.password)?,
            }),
        };
        Ok(Security { tls, credentials })
    }

    /// Whether the gateway speaks TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The etcd user, if the gateway authenticates.
    pub fn user(&self) -> Option<&str> {
        self.credentials.as_ref().map(|c| c.user.as_str())
    }
}

fn read(option: &'static str, path: &Path) -> Result<Vec<u8>, SecurityError> {
    std::fs::read(path).map_err(|source| SecurityError::Read {
        option,
        path: path.to_path_buf(),
        source,
    })
}

fn certificates(
    option: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, SecurityError> {
    let pem = read(option, path)?;
    let bad = |what: String| SecurityError::Pem {
        option,
        path: path.to_path_buf(),
        what,
    };
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("not a PEM file: {e}")))?;
    if certificates.is_empty() {
        return Err(bad("no PEM certificate (BEGIN CERTIFICATE) in it".into()));
    }
    Ok(certificates)
}

fn trusted_roots(path: &Path) -> Result<RootCertStore, SecurityError> {
    let mut roots = RootCertStore::empty();
    for certificate in certificates("ca", path)? {
        roots
            .add(certificate)
            .map_err(|source| SecurityError::Tls {
                what: "ca= (a CA certificate)",
                source,
            })?;
    }
    Ok(roots)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, SecurityError> {
    let pem = read("key", path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| SecurityError::Pem {
        option: "key",
        path: path.to_path_buf(),
        what: format!("no PEM private key (BEGIN PRIVATE KEY) in it: {e}"),
    })
}

fn read_password(source: &PasswordSource) -> Result<String, SecurityError> {
    match source {
        PasswordSource::Env(name) => std::env::var(name)
            .ok()
            .filter(|p| !p.is_empty())
            .ok_or_else(|| SecurityError::PasswordEnv(name.clone())),
        PasswordSource::File(path) => {
            let text = read("password_file", path)?;
            let text = String::from_utf8_lossy(&text);
            let password = text.lines().next().unwrap_or("").trim_end_matches('\r');
            if password.is_empty() {
                return Err(SecurityError::PasswordFileEmpty(path.clone()));
            }
            Ok(password.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_show_the_password() {
        let credentials = Credentials {
            user: "sluice".into(),
            password: "hunter2".into(),
        };
        let shown = format!("{credentials:?}");
        assert!(
            shown.contains("sluice") && !shown.contains("hunter2"),
            "{shown}"
        );
    }

    #[test]
    fn a_password_file_gives_its_first_line() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("password");
        std::fs::write(&path, "s3cret\r\nignored\n").expect("write");
        let password = read_password(&PasswordSource::File(path.clone())).expect("read");
        assert_eq!(password, "s3cret");
        std::fs::write(&path, "\n").expect("write");
        let error = read_password(&PasswordSource::File(path)).unwrap_err();
        assert!(error.to_string().contains("the file is empty"), "{error}");
        let error = read_password(&PasswordSource::Env("SLUICE_TEST_NO_SUCH_VAR".into()))
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "password_env=SLUICE_TEST_NO_SUCH_VAR: the environment variable is not set or is empty"
        );
    }

    #[test]
    fn missing_and_foreign_files_are_named_by_their_option() {
        let dir = tempfile::tempdir().expect("temp dir");
        let missing = dir.path().join("missing.pem");
        let error = certificates("ca", &missing).unwrap_err().to_string();
        assert!(
            error.starts_with(&format!("ca={}: cannot read it", missing.display())),
            "{error}"
        );
        let text = dir.path().join("notes.txt");
        std::fs::write(&text, "hello").expect("write");
        let error = certificates("cert", &text).unwrap_err().to_string();
        assert!(
            error.contains("cert=") && error.contains("no PEM certificate"),
            "{error}"
        );
        let error = private_key(&text).unwrap_err().to_string();
        assert!(
            error.contains("key=") && error.contains("no PEM private key"),
            "{error}"
        );
    }
}
