//! `https://` upstreams with a client certificate, end to end through the
//! real binary: served by a real rustls upstream that requires the
//! certificate; an unusable `upstream_tls` file refused by `config
//! validate` with its field path, and by a reload while the old config
//! keeps serving.

mod common;
#[path = "../../sluice-proxy/tests/tls_support/mod.rs"]
mod tls_support;

use std::net::SocketAddr;
use std::path::Path;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use common::*;
use tls_support::{fixture, mtls_acceptor};

/// An HTTPS upstream for `localhost` that requires a client certificate
/// signed by the test CA; answers `secure` with `x-upstream: secure`.
async fn mtls_upstream() -> SocketAddr {
    let acceptor = mtls_acceptor();
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
