//! The proxy's life: routing snapshots swapped under load, graceful
//! shutdown with requests in flight, and TLS listeners with ALPN.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use sluice_model::{Config, TlsConfig};
use sluice_proxy::{Metrics, Proxy, RouteTable, Slot};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_under_load_loses_no_request() {
    let (a, b, c) = (
        upstream("a").await,
        upstream("b").await,
        upstream("c").await,
    );
    let proxy = start_proxy(&web_config(a, b, ""), routing("web", a, Some(b), 50.0)).await;
    let per_worker = 300;
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (client, url) = (client(), proxy.url("/"));
        workers.push(tokio::spawn(async move {
            let mut seen = HashMap::<String, usize>::new();
            for _ in 0..per_worker {
                let answer = get(&client, &url, "h", &[]).await;
                assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
                *seen.entry(answer.body).or_default() += 1;
            }
            seen
        }));
    }
    // Swap tables while the workers run: weights and pools change.
    let tables = [
        routing("web", a, Some(b), 0.0),
        routing("web", c, Some(b), 50.0),
        routing("web", a, Some(c), 100.0),
        routing("web", b, None, 0.0),
    ];
    let mut swaps = 0;
    while !workers.iter().all(|w| w.is_finished()) {
        proxy.publish(&tables[swaps % tables.len()]);
        swaps += 1;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut total = 0;
    for w in workers {
        total += w.await.unwrap().values().sum::<usize>();
    }
    assert_eq!(total, 4 * per_worker);
    assert!(swaps > 1);
    let counted = proxy.metrics.snapshot("web", Slot::Stable).requests
        + proxy.metrics.snapshot("web", Slot::Canary).requests;
    assert_eq!(counted, total as u64);
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_requests_in_flight_then_stops_accepting() {
    let (stable, canary) = (upstream("stable").await, upstream("canary").await);
    let proxy = start_proxy(&web_config(stable, canary, ""), HashMap::new()).await;
    let addr = proxy.addr;
    let (client, url) = (client(), proxy.url("/delay?ms=400"));
    let slow = tokio::spawn(async move { get(&client, &url, "h", &[]).await });
    with_patience(async {
        while proxy.metrics.in_flight("web", Slot::Stable) == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    proxy.stop().await;
    let answer = slow.await.unwrap();
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body, "stable");
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "still accepting after shutdown"
    );
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn tls_config() -> TlsConfig {
    TlsConfig {
        cert: fixture("localhost.crt"),
        key: fixture("localhost.key"),
    }
}

/// A TLS client trusting the test certificate, offering `alpn`.
async fn tls_connect(
    addr: std::net::SocketAddr,
    alpn: &[&[u8]],
) -> tokio_rustls::client::TlsStream<TcpStream> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_file_iter(fixture("localhost.crt")).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    with_patience(connector.connect(name, tcp)).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_listener_serves_h2_and_http1_by_alpn() {
    let (stable, canary) = (upstream("stable").await, upstream("canary").await);
    let config = Config::from_yaml(&web_config(stable, canary, "")).unwrap();
    let metrics = Metrics::new();
    let proxy = Proxy::new(
        &config.proxy,
        RouteTable::build(&config, &HashMap::new(), &metrics),
        metrics.clone(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = sluice_proxy::tls_acceptor(&tls_config()).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(proxy.clone().serve(
        listener,
        Some(acceptor),
        async move {
            let _ = stopped.await;
        },
        Duration::from_secs(5),
    ));

    // HTTP/2 by ALPN.
    let tls = tls_connect(addr, &[b"h2", b"http/1.1"]).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut h2, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(connection);
    let request = Request::get("https://localhost/echo")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = with_patience(h2.send_request(request)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = with_patience(response.into_body().collect())
        .await
        .unwrap()
        .to_bytes();
    let body = String::from_utf8_lossy(&body);
    assert!(body.contains("x-forwarded-proto: https\n"), "{body}");
    assert!(
        body.contains("forwarded: for=127.0.0.1;proto=https;host=\"localhost\"\n"),
        "{body}"
    );

    // HTTP/1.1 by ALPN.
    let tls = tls_connect(addr, &[b"http/1.1"]).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let (mut h1, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(connection);
    let request = Request::get("/")
        .header("host", "localhost")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = with_patience(h1.send_request(request)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-upstream"], "stable");

    assert_eq!(metrics.snapshot("web", Slot::Stable).requests, 2);
    let _ = stop.send(());
    drop(h1);
    drop(h2);
    with_patience(served).await.unwrap().unwrap();
}

#[test]
fn tls_errors_name_the_file() {
    let missing = TlsConfig {
        cert: fixture("nope.crt"),
        key: fixture("localhost.key"),
    };
    let error = sluice_proxy::tls_acceptor(&missing)
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains("nope.crt"), "{error}");
    let swapped = TlsConfig {
        cert: fixture("localhost.key"),
        key: fixture("localhost.crt"),
    };
    assert!(sluice_proxy::tls_acceptor(&swapped).is_err());
}
