//! `https://` upstreams with a client certificate, end to end through the
//! real binary: served by a real rustls upstream that requires the
//! certificate; an unusable `upstream_tls` file refused by `config
//! validate` with its field path, and by a reload while the old config
//! keeps serving.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;

use common::*;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../sluice-proxy/tests/fixtures")
        .join(name)
}

/// An HTTPS upstream for `localhost` that requires a client certificate
/// signed by the test CA; answers `secure` with `x-upstream: secure`.
async fn mtls_upstream() -> SocketAddr {
    let provider = Arc::new(ring::default_provider());
    let mut roots = RootCertStore::empty();
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
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = service_fn(|_request| async {
                    Ok::<_, std::convert::Infallible>(
                        http::Response::builder()
                            .header("x-upstream", "secure")
                            .body(Full::new(Bytes::from_static(b"secure")))
                            .unwrap(),
                    )
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    addr
}

fn config(upstream: SocketAddr, dir: &Path) -> String {
    let file = |name: &str| dir.join(name).display().to_string();
    format!(
        r#"listeners:
  - address: 127.0.0.1:0
admin:
  address: 127.0.0.1:0
store: sluice.db
services:
  - name: web
    versions:
      stable: {{ endpoints: ["https://127.0.0.1:{port}"] }}
    upstream_tls:
      ca: "{ca}"
      cert: "{cert}"
      key: "{key}"
      server_name: localhost
"#,
        port = upstream.port(),
        ca = file("ca.crt"),
        cert = file("client.crt"),
        key = file("client.key"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mtls_upstream_is_served_and_a_bad_key_is_refused_by_field() {
    let upstream = mtls_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(fixture("upstream-ca.crt"), dir.path().join("ca.crt")).unwrap();
    std::fs::copy(fixture("client.crt"), dir.path().join("client.crt")).unwrap();
    std::fs::copy(fixture("client.key"), dir.path().join("client.key")).unwrap();
    let sluice = Sluice::start(dir.path(), &config(upstream, dir.path()));
    let client = client();
    let (status, from, body) = get(&client, sluice.proxy, "/", &[]).await;
    assert_eq!((status, from.as_str()), (200, "secure"), "{body}");

    // The key of another certificate: refused, naming the field.
    std::fs::copy(fixture("upstream.key"), dir.path().join("client.key")).unwrap();
    let path = dir.path().join("sluice.yaml");
    let output = sluice.cli(&["config", "validate", "-c", path.to_str().unwrap()]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("services[0].upstream_tls.key: key: ")
            && stderr.contains("is not the private key of"),
        "{stderr}"
    );

    // A reload is refused too, and the old config keeps serving.
    sluice.signal("HUP");
    wait_for_reloads(&client, sluice.admin, "failure", 1).await;
    let (status, from, body) = get(&client, sluice.proxy, "/", &[]).await;
    assert_eq!((status, from.as_str()), (200, "secure"), "{body}");
    assert!(
        sluice.log_text().contains("upstream_tls.key"),
        "{}",
        sluice.log_text()
    );
}
