//! `https://` upstream endpoints against a real rustls upstream on loopback
//! that requires a client certificate signed by its CA: served with the
//! service's `upstream_tls` client certificate, a 502 naming TLS without
//! one or when the upstream's certificate is not trusted, counted as the
//! version's upstream failures; bad `upstream_tls` files refused by field.

mod common;
mod tls_support;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use sluice_model::Config;
use sluice_proxy::{check_upstream_tls, Slot};
use tokio::net::TcpListener;

use common::{client, get, start_proxy};
use tls_support::{fixture, mtls_acceptor};

/// An HTTPS upstream (certificate for `localhost` and 127.0.0.1, signed by
/// the test CA) that requires a client certificate signed by the same CA.
/// Its body names the SNI it was asked for; it counts its TLS sessions.
async fn mtls_upstream() -> (SocketAddr, Arc<AtomicUsize>) {
    let acceptor = mtls_acceptor();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let sessions = Arc::new(AtomicUsize::new(0));
    let counter = sessions.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let counter = counter.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                counter.fetch_add(1, Ordering::Relaxed);
                let sni = tls.get_ref().1.server_name().unwrap_or("-").to_string();
                let service = service_fn(move |_request| {
                    let body = format!("secure sni={sni}");
                    async move {
                        Ok::<_, Infallible>(
                            Response::builder()
                                .header("x-upstream", "secure")
                                .body(Full::new(Bytes::from(body)))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (addr, sessions)
}

/// One service `web` with `endpoint` as its stable pool and `tls` as its `upstream_tls`.
fn config(endpoint: &str, tls: &[(&str, String)]) -> String {
    let mut yaml = format!(
        "services:\n  - name: web\n    versions:\n      stable: {{ endpoints: [\"{endpoint}\"] }}\n"
    );
    if !tls.is_empty() {
        yaml.push_str("    upstream_tls:\n");
        for (field, value) in tls {
            yaml.push_str(&format!("      {field}: \"{value}\"\n"));
        }
    }
    yaml
}

fn path(name: &str) -> String {
    fixture(name).display().to_string()
}

fn mtls(extra: &[(&'static str, String)]) -> Vec<(&'static str, String)> {
    let mut fields = vec![
        ("ca", path("upstream-ca.crt")),
        ("cert", path("client.crt")),
        ("key", path("client.key")),
    ];
    fields.extend_from_slice(extra);
    fields
}

#[tokio::test]
async fn a_client_certificate_gets_the_request_served_and_its_connection_reused() {
    let (upstream, sessions) = mtls_upstream().await;
    let endpoint = format!("https://localhost:{}", upstream.port());
    let yaml = config(&endpoint, &mtls(&[]));
    assert!(check_upstream_tls(&Config::from_yaml(&yaml).unwrap()).is_empty());
    let proxy = start_proxy(&yaml, HashMap::new()).await;
    let client = client();
    for _ in 0..3 {
        let answer = get(&client, &proxy.url("/"), "web.test", &[]).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        assert_eq!(answer.body, "secure sni=localhost");
    }
    assert_eq!(
        sessions.load(Ordering::Relaxed),
        1,
        "one TLS session, kept alive"
    );
    let stable = proxy.metrics.snapshot("web", Slot::Stable);
    assert_eq!((stable.requests, stable.errors), (3, 0));
    proxy.stop().await;
}

#[tokio::test]
async fn server_name_sets_the_sni_for_an_address_endpoint() {
    let (upstream, _) = mtls_upstream().await;
    let endpoint = format!("https://{upstream}");
    let tls = mtls(&[("server_name", "localhost".to_string())]);
    let proxy = start_proxy(&config(&endpoint, &tls), HashMap::new()).await;
    let answer = get(&client(), &proxy.url("/"), "web.test", &[]).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.body, "secure sni=localhost");
    proxy.stop().await;
}

#[tokio::test]
async fn without_a_client_certificate_the_answer_is_a_502_naming_tls() {
    let (upstream, _) = mtls_upstream().await;
    let endpoint = format!("https://localhost:{}", upstream.port());
    let tls = [("ca", path("upstream-ca.crt"))];
    let proxy = start_proxy(&config(&endpoint, &tls), HashMap::new()).await;
    let answer = get(&client(), &proxy.url("/"), "web.test", &[]).await;
    assert_eq!(answer.status, StatusCode::BAD_GATEWAY, "{}", answer.body);
    assert_eq!(answer.headers["x-sluice-error"], "connect");
    assert!(
        answer.body.starts_with(&format!(
            "sluice: TLS with upstream {endpoint} (service web, stable) failed: "
        )),
        "{}",
        answer.body
    );
    assert!(answer.body.contains("Certificate"), "{}", answer.body);
    let stable = proxy.metrics.snapshot("web", Slot::Stable);
    assert_eq!((stable.requests, stable.errors), (1, 1));
    proxy.stop().await;
}

#[tokio::test]
async fn an_upstream_certificate_from_another_ca_is_a_502_naming_the_problem() {
    let (upstream, _) = mtls_upstream().await;
    let endpoint = format!("https://localhost:{}", upstream.port());
    // Trusts only the self-signed localhost.crt: the upstream's issuer is unknown.
    let tls = [
        ("ca", path("localhost.crt")),
        ("cert", path("client.crt")),
        ("key", path("client.key")),
    ];
    let proxy = start_proxy(&config(&endpoint, &tls), HashMap::new()).await;
    let answer = get(&client(), &proxy.url("/"), "web.test", &[]).await;
    assert_eq!(answer.status, StatusCode::BAD_GATEWAY, "{}", answer.body);
    assert!(answer.body.contains("TLS"), "{}", answer.body);
    assert!(
        answer
            .body
            .contains("invalid peer certificate: UnknownIssuer"),
        "{}",
        answer.body
    );
    let mut text = String::new();
    proxy.metrics.render_prometheus(&mut text);
    assert!(
        text.contains(
            "sluice_request_errors_total{service=\"web\",version=\"stable\",kind=\"connect\"} 1\n"
        ),
        "{text}"
    );
    proxy.stop().await;
}

#[test]
fn unusable_files_are_refused_naming_the_field() {
    let check = |tls: &[(&str, String)]| {
        let yaml = config("https://localhost:8443", tls);
        check_upstream_tls(&Config::from_yaml(&yaml).unwrap())
    };
    let missing = check(&[("ca", path("no-such-ca.crt"))]);
    assert_eq!(missing.len(), 1, "{missing:?}");
    assert_eq!(missing[0].path, "services[0].upstream_tls.ca");
    assert!(missing[0].message.contains("no-such-ca.crt"), "{missing:?}");
    assert!(missing[0].message.contains("cannot read it"), "{missing:?}");

    let not_a_cert = check(&[("ca", path("client.key"))]);
    assert_eq!(not_a_cert[0].path, "services[0].upstream_tls.ca");
    assert!(
        not_a_cert[0].message.contains("no PEM certificate"),
        "{not_a_cert:?}"
    );

    let mismatch = check(&[("cert", path("client.crt")), ("key", path("upstream.key"))]);
    assert_eq!(mismatch.len(), 1, "{mismatch:?}");
    assert_eq!(mismatch[0].path, "services[0].upstream_tls.key");
    assert!(
        mismatch[0].message.contains("is not the private key of"),
        "{mismatch:?}"
    );

    assert!(check(&mtls(&[])).is_empty());
}

#[tokio::test]
async fn files_changed_on_disk_are_used_at_the_next_table_and_bad_ones_are_not() {
    let (upstream, sessions) = mtls_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    for name in ["upstream-ca.crt", "client.crt", "client.key"] {
        std::fs::copy(fixture(name), dir.path().join(name)).unwrap();
    }
    let in_dir = |name: &str| dir.path().join(name).display().to_string();
    let tls = [
        ("ca", in_dir("upstream-ca.crt")),
        ("cert", in_dir("client.crt")),
        ("key", in_dir("client.key")),
    ];
    let endpoint = format!("https://localhost:{}", upstream.port());
    let proxy = start_proxy(&config(&endpoint, &tls), HashMap::new()).await;
    let client = client();
    let served = || async {
        let answer = get(&client, &proxy.url("/"), "web.test", &[]).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    };
    served().await;
    assert_eq!(sessions.load(Ordering::Relaxed), 1);

    // A key that is not PEM any more: the next table keeps the endpoint
    // made with the last usable files, and its idle connection.
    std::fs::write(dir.path().join("client.key"), "not a key").unwrap();
    proxy.publish(&HashMap::new());
    served().await;
    assert_eq!(sessions.load(Ordering::Relaxed), 1);

    // Usable files that differ (the key back, the CA file with a comment):
    // the next table makes new connections with them.
    std::fs::copy(fixture("client.key"), dir.path().join("client.key")).unwrap();
    let ca = std::fs::read_to_string(fixture("upstream-ca.crt")).unwrap();
    std::fs::write(
        dir.path().join("upstream-ca.crt"),
        format!("# rotated\n{ca}"),
    )
    .unwrap();
    proxy.publish(&HashMap::new());
    served().await;
    assert_eq!(sessions.load(Ordering::Relaxed), 2);
    proxy.stop().await;
}
