//! Graceful shutdown of the real binary: at SIGTERM, requests in flight to a
//! slow upstream complete, new connections are refused, and a request that
//! outlives `--drain-timeout` is cut there and the process exits. The
//! upstream holds each request until the test releases it, so nothing here
//! depends on how fast the machine is.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{client, eventually, Sluice, CONFIG_HEAD};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::sync::watch;

/// An upstream that answers each request only once `release` is sent `true`.
struct HeldUpstream {
    addr: SocketAddr,
    /// Requests that have arrived (and are being held).
    arrived: Arc<AtomicU64>,
    release: watch::Sender<bool>,
}

impl HeldUpstream {
    async fn start() -> HeldUpstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let arrived = Arc::new(AtomicU64::new(0));
        let (release, released) = watch::channel(false);
        let counter = arrived.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let (counter, released) = (counter.clone(), released.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |_request: Request<Incoming>| {
                        let mut released = released.clone();
                        counter.fetch_add(1, Ordering::SeqCst);
                        async move {
                            let _ = released.wait_for(|go| *go).await;
                            Ok::<_, Infallible>(
                                Response::builder()
                                    .header("x-upstream", "slow")
                                    .body(Full::new(Bytes::from("done")))
                                    .unwrap(),
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(socket), service)
                        .await;
                });
            }
        });
        HeldUpstream {
            addr,
            arrived,
            release,
        }
    }
}

fn config(upstream: SocketAddr) -> String {
    format!(
        r#"{CONFIG_HEAD}proxy:
  upstream_timeout: 120s
services:
  - name: web
    versions:
      stable: {{ endpoints: ["{upstream}"] }}
"#
    )
}

fn start(dir: &std::path::Path, upstream: SocketAddr, drain: &str) -> Sluice {
    std::fs::write(dir.join("sluice.yaml"), config(upstream)).unwrap();
    let path = dir.join("sluice.yaml");
    Sluice::start_with(
        dir,
        &[
            "run",
            "-c",
            path.to_str().unwrap(),
            "--drain-timeout",
            drain,
        ],
        &[],
    )
}

/// Sends a GET through sluice; the status, or the transport error.
fn send(proxy: SocketAddr) -> tokio::task::JoinHandle<Result<(u16, String), String>> {
    tokio::spawn(async move {
        let request = Request::get(format!("http://{proxy}/"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let response = tokio::time::timeout(Duration::from_secs(120), client().request(request))
            .await
            .map_err(|_| "no answer in 120 s".to_string())?
            .map_err(|e| format!("{e:?}"))?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("body: {e:?}"))?
            .to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    })
}

async fn refused(proxy: SocketAddr) -> bool {
    matches!(
        tokio::net::TcpStream::connect(proxy).await,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused
    )
}

#[tokio::test]
async fn sigterm_refuses_new_connections_and_lets_requests_in_flight_finish() {
    let upstream = HeldUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut sluice = start(dir.path(), upstream.addr, "60s");
    let in_flight: Vec<_> = (0..5).map(|_| send(sluice.proxy)).collect();
    eventually(
        Duration::from_secs(30),
        "5 requests at the upstream",
        || {
            let arrived = upstream.arrived.load(Ordering::SeqCst);
            async move { (arrived == 5).then_some(()) }
        },
    )
    .await;

    sluice.signal("TERM");
    let proxy = sluice.proxy;
    eventually(
        Duration::from_secs(30),
        "new connections refused after SIGTERM",
        || async move { refused(proxy).await.then_some(()) },
    )
    .await;
    // The upstream still holds all five: the process is draining, not gone.
    assert!(sluice.is_running(), "sluice exited with requests in flight");
    assert_eq!(upstream.arrived.load(Ordering::SeqCst), 5);

    upstream.release.send(true).unwrap();
    for request in in_flight {
        let answer = request.await.unwrap();
        assert_eq!(
            answer,
            Ok((200, "done".to_string())),
            "{}",
            sluice.log_text()
        );
    }
    eventually(
        Duration::from_secs(30),
        "sluice to exit once drained",
        || {
            let running = sluice.is_running();
            async move { (!running).then_some(()) }
        },
    )
    .await;
    assert!(
        sluice.log_text().contains("draining in-flight requests"),
        "{}",
        sluice.log_text()
    );
}

#[tokio::test]
async fn a_request_longer_than_the_drain_timeout_is_cut_there_and_the_process_exits() {
    let upstream = HeldUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut sluice = start(dir.path(), upstream.addr, "2s");
    let held = send(sluice.proxy);
    eventually(
        Duration::from_secs(30),
        "the request at the upstream",
        || {
            let arrived = upstream.arrived.load(Ordering::SeqCst);
            async move { (arrived == 1).then_some(()) }
        },
    )
    .await;

    let signalled = Instant::now();
    sluice.signal("TERM");
    let answer = held.await.unwrap();
    let cut_after = signalled.elapsed();
    assert!(
        answer.is_err(),
        "a request held past the drain timeout was answered: {answer:?}"
    );
    // Not cut before the deadline (a lower bound, not a speed claim).
    assert!(
        cut_after >= Duration::from_millis(1900),
        "cut after {cut_after:?}, before the 2 s drain timeout"
    );
    // Exits within the deadline plus a generous margin for a busy machine.
    eventually(
        Duration::from_secs(20),
        "sluice to exit after the drain timeout",
        || {
            let running = sluice.is_running();
            async move { (!running).then_some(()) }
        },
    )
    .await;
    assert!(
        sluice.log_text().contains("drain time over"),
        "{}",
        sluice.log_text()
    );
    drop(upstream);
}
