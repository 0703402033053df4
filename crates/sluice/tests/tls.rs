//! TLS through the real binary: the admin API and a proxy listener serve
//! HTTPS, and a certificate replaced on disk is served to new connections
//! without a restart while open ones keep working; a broken file is logged
//! (naming it) and the previous certificate keeps serving.

mod common;
#[path = "../../sluice-proxy/tests/tls_support/mod.rs"]
mod tls_support;

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tls_support::{der, fixture, install, presented};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

const WAIT: Duration = Duration::from_secs(30);

/// A TLS connection trusting both test certificates (HTTP/1.1 by ALPN).
async fn connect(addr: std::net::SocketAddr) -> TlsStream<TcpStream> {
    tls_support::connect(addr, &[b"http/1.1"]).await
}

/// An HTTP/1.1 connection over `tls`, kept open for several requests.
async fn http1(tls: TlsStream<TcpStream>) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(connection);
    sender
}

async fn get_status(
    sender: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    path: &str,
) -> u16 {
    let request = hyper::Request::get(path)
        .header("host", "localhost")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = tokio::time::timeout(WAIT, sender.send_request(request))
        .await
        .expect("request timed out")
        .unwrap();
    let status = response.status().as_u16();
    let _ = response.into_body().collect().await;
    status
}

/// Polls new connections to `addr` until they present `cert`.
async fn until_presented(addr: std::net::SocketAddr, cert: &str) {
    let want = der(cert);
    eventually(WAIT, &format!("{cert} served at {addr}"), || {
        let want = want.clone();
        async move { (presented(&connect(addr).await) == want).then_some(()) }
    })
    .await;
}

#[tokio::test]
async fn certificates_are_reloaded_without_a_restart_on_both_listeners() {
    let upstream = Upstream::start("v1").await;
    let dir = tempfile::tempdir().unwrap();
    install(dir.path(), "admin", "localhost");
    install(dir.path(), "proxy", "localhost");
    let config = format!(
        "listeners:\n  - address: 127.0.0.1:0\n    tls: {{cert: proxy.crt, key: proxy.key}}\nadmin:\n  address: 127.0.0.1:0\n  tls: {{cert: admin.crt, key: admin.key}}\nstore: sluice.db\nservices:\n  - name: web\n    versions:\n      stable: {{ endpoints: [\"{}\"] }}\n",
        upstream.endpoint()
    );
    std::fs::write(dir.path().join("sluice.yaml"), config).unwrap();
    let sluice = Sluice::start_with(dir.path(), &["run", "-c", "sluice.yaml"], &[]);
    let announced = format!("admin API on https://{}", sluice.admin);
    eventually(WAIT, "the https admin address announced", || async {
        sluice.log_text().contains(&announced).then_some(())
    })
    .await;

    // The CLI reaches the https admin API trusting its certificate, and not without.
    let cli = |ca: Option<PathBuf>| {
        let mut command = std::process::Command::new(binary());
        command
            .args(["rollout", "status", "web"])
            .env(
                "SLUICE_ADMIN",
                format!("https://localhost:{}", sluice.admin.port()),
            )
            .env_remove("SLUICE_ADMIN_TOKEN")
            .env_remove("SLUICE_ADMIN_CA");
        if let Some(ca) = ca {
            command.env("SLUICE_ADMIN_CA", ca);
        }
        command.output().unwrap()
    };
    let trusted = cli(Some(fixture("localhost.crt")));
    assert!(trusted.status.success(), "{trusted:?}");
    let untrusted = cli(None);
    assert!(!untrusted.status.success(), "{untrusted:?}");

    // Both listeners serve the first certificate.
    let old = connect(sluice.admin).await;
    assert_eq!(presented(&old), der("localhost.crt"));
    let mut old = http1(old).await;
    assert_eq!(get_status(&mut old, "/healthz").await, 200);
    let proxied = connect(sluice.proxy).await;
    assert_eq!(presented(&proxied), der("localhost.crt"));
    assert_eq!(get_status(&mut http1(proxied).await, "/").await, 200);

    // Replaced on disk: new connections get the new one, the open one keeps working.
    install(dir.path(), "admin", "localhost-b");
    until_presented(sluice.admin, "localhost-b.crt").await;
    assert_eq!(get_status(&mut old, "/healthz").await, 200);
    install(dir.path(), "proxy", "localhost-b");
    until_presented(sluice.proxy, "localhost-b.crt").await;

    // A broken certificate: logged with the file's name; the previous one keeps serving.
    std::fs::write(dir.path().join("admin.crt"), "not a certificate\n").unwrap();
    eventually(WAIT, "the refused certificate in the log", || async {
        let log = sluice.log_text();
        (log.contains("TLS certificate not reloaded") && log.contains("admin.crt")).then_some(())
    })
    .await;
    let after = connect(sluice.admin).await;
    assert_eq!(presented(&after), der("localhost-b.crt"));
    assert_eq!(get_status(&mut http1(after).await, "/readyz").await, 200);
}
