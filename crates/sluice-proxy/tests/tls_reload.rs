//! A TLS listener's certificate replaced on disk without a restart: a new
//! connection sees the new certificate, one already open keeps working, and
//! a broken file is refused (naming it) while the previous pair keeps serving.

mod tls_support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_model::TlsConfig;
use sluice_proxy::ServerCert;
use tls_support::{connect, der, fixture, install, presented};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::client::TlsStream;

const PATIENCE: Duration = Duration::from_secs(20);

/// An echo server over TLS with `cert`'s acceptor.
async fn serve(cert: &Arc<ServerCert>) -> SocketAddr {
    let acceptor = cert.acceptor().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buffer = [0u8; 64];
                while let Ok(n) = tls.read(&mut buffer).await {
                    if n == 0 || tls.write_all(&buffer[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// The `localhost` pair installed as `dir/server.{crt,key}`, loaded and
/// served by an echo server: the files, the certificate and the address.
async fn serve_pair(dir: &std::path::Path) -> (TlsConfig, Arc<ServerCert>, SocketAddr) {
    install(dir, "server", "localhost");
    let files = TlsConfig {
        cert: dir.join("server.crt"),
        key: dir.join("server.key"),
    };
    let cert = ServerCert::load(&files).unwrap();
    let addr = serve(&cert).await;
    (files, cert, addr)
}

async fn echo(tls: &mut TlsStream<TcpStream>, text: &[u8]) -> Vec<u8> {
    tls.write_all(text).await.unwrap();
    let mut answer = vec![0u8; text.len()];
    tokio::time::timeout(PATIENCE, tls.read_exact(&mut answer))
        .await
        .expect("echo timed out")
        .unwrap();
    answer
}

#[tokio::test]
async fn a_replaced_certificate_serves_new_connections_and_a_broken_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (files, cert, addr) = serve_pair(dir.path()).await;
    let mut old = connect(addr, &[]).await;
    assert_eq!(presented(&old), der("localhost.crt"));
    assert!(!cert.reload_if_changed().unwrap(), "nothing changed yet");

    install(dir.path(), "server", "localhost-b");
    assert!(cert.reload_if_changed().unwrap());
    let new = connect(addr, &[]).await;
    assert_eq!(presented(&new), der("localhost-b.crt"));
    assert_eq!(echo(&mut old, b"still here").await, b"still here");

    // A broken certificate file: refused, named, and B keeps serving.
    std::fs::write(&files.cert, "-----BEGIN CERTIFICATE-----\nbroken\n").unwrap();
    let error = cert.reload_if_changed().unwrap_err().to_string();
    assert!(error.contains("server.crt"), "{error}");
    assert_eq!(presented(&connect(addr, &[]).await), der("localhost-b.crt"));
    // Reported once, not at every look.
    assert!(!cert.reload_if_changed().unwrap());

    // A key that does not belong to the certificate: refused too.
    std::fs::copy(fixture("localhost.crt"), &files.cert).unwrap();
    std::fs::copy(fixture("localhost-b.key"), &files.key).unwrap();
    let error = cert.reload_if_changed().unwrap_err().to_string();
    assert!(error.contains("not usable together"), "{error}");
    assert_eq!(presented(&connect(addr, &[]).await), der("localhost-b.crt"));
}

#[tokio::test]
async fn the_watcher_picks_up_a_new_certificate_on_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let (_files, cert, addr) = serve_pair(dir.path()).await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let watcher = tokio::spawn(cert.clone().watch(Duration::from_millis(50), async move {
        let _ = stopped.await;
    }));
    install(dir.path(), "server", "localhost-b");
    let deadline = Instant::now() + PATIENCE;
    while presented(&connect(addr, &[]).await) != der("localhost-b.crt") {
        assert!(
            Instant::now() < deadline,
            "the new certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = stop.send(());
    tokio::time::timeout(PATIENCE, watcher)
        .await
        .unwrap()
        .unwrap();
}
