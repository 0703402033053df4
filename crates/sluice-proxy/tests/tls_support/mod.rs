//! TLS test support shared by the proxy's certificate-reload test and the
//! binary's end-to-end TLS test (which includes this file by path): the two
//! fixture pairs (`localhost`, `localhost-b`), a client that trusts both, and
//! the certificate a server presented.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls;

/// How long a TLS handshake may take on a busy machine.
const HANDSHAKE_LIMIT: Duration = Duration::from_secs(30);

/// A file of `crates/sluice-proxy/tests/fixtures` (found from either crate).
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../sluice-proxy/tests/fixtures")
        .join(name)
}

/// The DER bytes of the first certificate in fixture `name`.
pub fn der(name: &str) -> Vec<u8> {
    CertificateDer::pem_file_iter(fixture(name))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .to_vec()
}

/// Copies the fixture pair `pair` (`localhost` or `localhost-b`) to
/// `dir/NAME.crt` and `dir/NAME.key`, key first.
pub fn install(dir: &Path, name: &str, pair: &str) {
    for extension in ["key", "crt"] {
        std::fs::copy(
            fixture(&format!("{pair}.{extension}")),
            dir.join(format!("{name}.{extension}")),
        )
        .unwrap();
    }
}

/// A TLS connection to `addr` as `localhost`, trusting both test
/// certificates and offering `alpn` (none when empty).
pub async fn connect(addr: SocketAddr, alpn: &[&[u8]]) -> TlsStream<TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    for name in ["localhost.crt", "localhost-b.crt"] {
        roots.add(CertificateDer::from(der(name))).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    tokio::time::timeout(HANDSHAKE_LIMIT, connector.connect(name, tcp))
        .await
        .expect("TLS handshake timed out")
        .unwrap()
}

/// The DER bytes of the certificate the server presented on `tls`.
pub fn presented(tls: &TlsStream<TcpStream>) -> Vec<u8> {
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

/// A TLS acceptor for an HTTPS upstream (fixture `upstream`, for `localhost`
/// and 127.0.0.1, signed by the test CA `upstream-ca`) that requires a client
/// certificate signed by the same CA; ALPN `http/1.1`.
pub fn mtls_acceptor() -> tokio_rustls::TlsAcceptor {
    use rustls::crypto::ring;
    use rustls::server::WebPkiClientVerifier;
    use rustls_pki_types::PrivateKeyDer;

    let provider = Arc::new(ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(fixture("upstream-ca.crt")).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .unwrap();
    let chain = CertificateDer::pem_file_iter(fixture("upstream.crt"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(fixture("upstream.key")).unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}
