//! Upstream connection reuse: keep-alive connections carry request after
//! request, and an upstream that closes its idle connections (keep-alive
//! timeout) never turns into a 502 — the request is sent again on a fresh
//! connection when the reused one was closed before it got the request, or
//! (for a bodiless idempotent request) closed before it answered.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The raw upstream's keep-alive timeout.
const UPSTREAM_IDLE: Duration = Duration::from_millis(20);

/// What the raw upstream does after each response.
#[derive(Clone, Copy)]
enum AfterResponse {
    /// Waits for the next request on the same connection.
    KeepAlive,
    /// Closes the connection once it has been idle for [`UPSTREAM_IDLE`],
    /// without having said so (no `Connection: close`): a keep-alive timeout.
    CloseWhenIdle,
    /// Reads the second request on a connection, then closes it unanswered:
    /// the keep-alive timeout firing just as a reused connection is written to.
    CloseOnSecondRequest,
}

/// An HTTP/1.1 upstream on a raw socket answering `ok` to every GET;
/// returns its address and the number of connections it accepted.
async fn raw_upstream(after: AfterResponse) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(serve_raw(stream, after));
        }
    });
    (addr, accepted)
}

async fn serve_raw(mut stream: TcpStream, after: AfterResponse) {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let mut served = 0;
    loop {
        // Requests through the proxy here are GETs without a body.
        while !buffer.windows(4).any(|w| w == b"\r\n\r\n") {
            let read = match after {
                AfterResponse::KeepAlive | AfterResponse::CloseOnSecondRequest => {
                    stream.read(&mut chunk).await
                }
                AfterResponse::CloseWhenIdle => {
                    match tokio::time::timeout(UPSTREAM_IDLE, stream.read(&mut chunk)).await {
                        Ok(read) => read,
                        // Idle too long: close.
                        Err(_) => return,
                    }
                }
            };
            match read {
                Ok(0) | Err(_) => return,
                Ok(read) => buffer.extend_from_slice(&chunk[..read]),
            }
        }
        let end = buffer.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        buffer.drain(..end);
        if matches!(after, AfterResponse::CloseOnSecondRequest) && served == 1 {
            return;
        }
        served += 1;
        let response = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
        if stream.write_all(response).await.is_err() {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_closing_idle_connections_never_causes_a_502() {
    let (stable, accepted) = raw_upstream(AfterResponse::CloseWhenIdle).await;
    let proxy = start_proxy(&web_config(stable, stable, ""), HashMap::new()).await;
    let client = client();
    let mut failures = Vec::new();
    for i in 0..500 {
        // Now and then, a pause longer than the upstream's keep-alive
        // timeout: the pooled connection is closed by the time it is reused.
        if i % 10 == 9 {
            tokio::time::sleep(UPSTREAM_IDLE * 2).await;
        }
        let answer = get(&client, &proxy.url("/"), "h", &[]).await;
        if answer.status != StatusCode::OK || answer.body != "ok" {
            failures.push((answer.status, answer.body));
        }
    }
    assert_eq!(failures, vec![], "{} failed of 500", failures.len());
    let accepted = accepted.load(Ordering::Relaxed);
    assert!(
        (50..500).contains(&accepted),
        "{accepted} upstream connections: expected one per pause, reused in between"
    );
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_whose_reused_connection_closes_unanswered_is_sent_again() {
    let (stable, accepted) = raw_upstream(AfterResponse::CloseOnSecondRequest).await;
    let proxy = start_proxy(&web_config(stable, stable, ""), HashMap::new()).await;
    let client = client();
    for _ in 0..20 {
        let answer = get(&client, &proxy.url("/"), "h", &[]).await;
        assert_eq!(
            (answer.status, answer.body.as_str()),
            (StatusCode::OK, "ok")
        );
    }
    // Every connection after the first carried a request sent again.
    assert_eq!(accepted.load(Ordering::Relaxed), 20);
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_connections_are_reused() {
    let (stable, accepted) = raw_upstream(AfterResponse::KeepAlive).await;
    let proxy = start_proxy(&web_config(stable, stable, ""), HashMap::new()).await;
    let client = client();
    for _ in 0..100 {
        let answer = get(&client, &proxy.url("/"), "h", &[]).await;
        assert_eq!(
            (answer.status, answer.body.as_str()),
            (StatusCode::OK, "ok")
        );
    }
    assert_eq!(accepted.load(Ordering::Relaxed), 1);
    proxy.stop().await;
}
