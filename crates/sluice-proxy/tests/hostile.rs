//! Hostile and malformed clients, over raw TCP against the real proxy and a
//! real loopback upstream that records what reached it: request smuggling
//! pairs, oversized heads, slowloris, a client that stops reading, HTTP/2
//! rapid reset and stream floods, and load shedding over `proxy.limits`.
//! Each test asserts what the client got and what the upstream saw.

mod common;

use std::collections::HashMap;
use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use common::hostile::*;
use common::*;
use http::StatusCode;
use sluice_proxy::ShedReason;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends `request` raw; asserts the status line and that the upstream
/// never saw a request for `/smuggled`. Returns what the upstream saw.
async fn smuggle(request: &str, status: &str) -> Vec<String> {
    let (stable, seen) = recorder().await;
    let proxy = start_proxy(&one_service(stable, ""), HashMap::new()).await;
    let response = exchange(proxy.addr, request.as_bytes()).await;
    assert!(
        status_line(&response).starts_with(status),
        "expected {status}, got {response:?}"
    );
    // A smuggled request would arrive right behind the first one.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let requests = seen.requests();
    assert!(
        requests.iter().all(|r| !r.contains("/smuggled")),
        "the upstream was given a smuggled request: {requests:?}"
    );
    proxy.stop().await;
    requests
}

const SMUGGLED: &str = "GET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_length_with_transfer_encoding_is_read_as_chunked_and_the_connection_closed() {
    // RFC 9112 §6.1: chunked wins, and the connection must close after the
    // answer, so the bytes behind the chunked body are never read as a request.
    for (first, second) in [
        ("Content-Length: 40", "Transfer-Encoding: chunked"),
        ("Transfer-Encoding: chunked", "Content-Length: 40"),
    ] {
        let request = format!(
            "POST /a HTTP/1.1\r\nHost: h\r\n{first}\r\n{second}\r\n\r\n0\r\n\r\n{SMUGGLED}"
        );
        let requests = smuggle(&request, "HTTP/1.1 200").await;
        assert_eq!(requests, ["POST /a 0"], "{first} then {second}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicting_content_lengths_are_refused() {
    let request =
        format!("POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 42\r\n\r\nhello{SMUGGLED}");
    assert!(smuggle(&request, "HTTP/1.1 400").await.is_empty());
    let request =
        format!("POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 42\r\n\r\nhello{SMUGGLED}");
    assert!(smuggle(&request, "HTTP/1.1 400").await.is_empty());
    let request =
        format!("POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: +5\r\n\r\nhello{SMUGGLED}");
    assert!(smuggle(&request, "HTTP/1.1 400").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn obsolete_line_folding_is_refused() {
    let request = format!(
        "POST /a HTTP/1.1\r\nHost: h\r\nX-Folded: a\r\n Transfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n{SMUGGLED}"
    );
    assert!(smuggle(&request, "HTTP/1.1 400").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_encoding_other_than_chunked_is_refused() {
    for te in ["gzip", "chunked, gzip", "xchunked"] {
        let request = format!(
            "POST /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: {te}\r\n\r\n0\r\n\r\n{SMUGGLED}"
        );
        assert!(smuggle(&request, "HTTP/1.1 400").await.is_empty(), "{te}");
    }
    let request = format!(
        "POST /a HTTP/1.0\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{SMUGGLED}"
    );
    assert!(
        smuggle(&request, "HTTP/1.1 400").await.is_empty(),
        "HTTP/1.0"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_chunk_sizes_never_let_the_rest_through() {
    for size in ["zz", "-1", "ffffffffffffffffffff", "5 5"] {
        let request = format!(
            "POST /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n{size}\r\nhello\r\n0\r\n\r\n{SMUGGLED}"
        );
        let (stable, seen) = recorder().await;
        let proxy = start_proxy(&one_service(stable, ""), HashMap::new()).await;
        let response = exchange(proxy.addr, request.as_bytes()).await;
        // The head went upstream before the body broke: the client gets a
        // 400 (or the connection closed), the upstream a body that failed.
        assert!(
            response.is_empty() || status_line(&response).starts_with("HTTP/1.1 400"),
            "chunk size {size:?}: {response:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        let requests = seen.requests();
        assert!(
            requests.iter().all(|r| r == "POST /a body-error"),
            "chunk size {size:?}: the upstream saw {requests:?}"
        );
        proxy.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_heads_and_too_many_headers_answer_431() {
    let (stable, seen) = recorder().await;
    let limits = "proxy: { limits: { max_header_bytes: 8192, max_headers: 20 } }";
    let proxy = start_proxy(&one_service(stable, limits), HashMap::new()).await;

    let big = "a".repeat(10_000);
    let response = exchange(
        proxy.addr,
        format!("GET / HTTP/1.1\r\nHost: h\r\nX-Big: {big}\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(
        status_line(&response).starts_with("HTTP/1.1 431"),
        "{response:?}"
    );

    let many: String = (0..30).map(|i| format!("X-H{i}: v\r\n")).collect();
    let response = exchange(
        proxy.addr,
        format!("GET / HTTP/1.1\r\nHost: h\r\n{many}\r\n").as_bytes(),
    )
    .await;
    assert!(
        status_line(&response).starts_with("HTTP/1.1 431"),
        "{response:?}"
    );

    // Within both limits it is served.
    let few: String = (0..10).map(|i| format!("X-H{i}: v\r\n")).collect();
    let response = exchange(
        proxy.addr,
        format!("GET /fine HTTP/1.1\r\nHost: h\r\nConnection: close\r\n{few}\r\n").as_bytes(),
    )
    .await;
    assert!(
        status_line(&response).starts_with("HTTP/1.1 200"),
        "{response:?}"
    );
    assert_eq!(seen.requests(), ["GET /fine 0"]);
    proxy.stop().await;
}

/// Slowloris: clients that send their head a byte at a time (or nothing)
/// fill `max_connections` only until `header_read_timeout`, then are cut
/// off, and a normal client is served again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_clients_are_cut_off_and_cannot_hold_the_connections() {
    let (stable, seen) = recorder().await;
    let config = "proxy: { header_read_timeout: 500ms, limits: { max_connections: 3 } }";
    let proxy = start_proxy(&one_service(stable, config), HashMap::new()).await;

    let mut slow = Vec::new();
    for i in 0..3 {
        let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
        if i > 0 {
            stream.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        }
        slow.push(tokio::spawn(async move {
            // One byte every 100 ms, until sluice closes the connection.
            let mut buf = [0u8; 256];
            loop {
                tokio::select! {
                    read = stream.read(&mut buf) => match read {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    },
                    () = tokio::time::sleep(Duration::from_millis(100)) => {
                        if i > 0 && stream.write_all(b"x").await.is_err() {
                            return;
                        }
                    }
                }
            }
        }));
    }
    eventually("three connections open", || {
        proxy.metrics.listener().connections_open() == 3
    })
    .await;
    let response = exchange(proxy.addr, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n").await;
    assert!(
        status_line(&response).starts_with("HTTP/1.1 503"),
        "{response:?}"
    );
    assert!(
        response.contains("x-sluice-error: connections"),
        "{response:?}"
    );
    assert!(response.contains("retry-after: 1"), "{response:?}");

    for task in slow {
        with_patience(task).await.unwrap();
    }
    let request = b"GET /after HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n";
    let response = exchange(proxy.addr, request).await;
    assert!(
        status_line(&response).starts_with("HTTP/1.1 200"),
        "{response:?}"
    );
    assert_eq!(seen.requests(), ["GET /after 0"]);
    assert_eq!(proxy.metrics.listener().shed(ShedReason::Connections), 1);
    proxy.stop().await;
}

/// A client that stops reading an endless body: sluice reads from the
/// upstream only as fast as it writes to the client, so the upstream stops
/// producing once the socket buffers on the way are full.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_does_not_make_sluice_buffer() {
    let (stable, seen) = recorder().await;
    let proxy = start_proxy(&one_service(stable, ""), HashMap::new()).await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream
        .write_all(b"GET /endless HTTP/1.1\r\nHost: h\r\n\r\n")
        .await
        .unwrap();
    let mut received = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    while received.len() < 4 * 1024 * 1024 {
        let n = with_patience(stream.read(&mut buf)).await.unwrap();
        assert!(n > 0, "the stream ended");
        received.extend_from_slice(&buf[..n]);
    }
    assert!(received.starts_with(b"HTTP/1.1 200"));
    // Stop reading; wait until the upstream stops producing.
    let mut last = seen.produced.load(SeqCst);
    let mut still = 0;
    eventually("the upstream stops producing", || {
        let now = seen.produced.load(SeqCst);
        still = if now == last { still + 1 } else { 0 };
        last = now;
        still >= 25
    })
    .await;
    let produced = seen.produced.load(SeqCst);
    let unread = produced - received.len() as u64;
    // A number for the report (`--nocapture`), not an assertion on speed.
    eprintln!("upstream bytes produced but not read by the stalled client: {unread}");
    assert!(
        unread < 64 * 1024 * 1024,
        "{unread} bytes produced but not read by the client"
    );
    drop(stream);
    eventually("the request leaves", || {
        proxy.metrics.listener().in_flight() == 0
    })
    .await;
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_max_in_flight_a_request_is_shed_with_retry_after() {
    let (stable, seen) = recorder().await;
    let config = "proxy: { limits: { max_in_flight: 1 } }";
    let proxy = start_proxy(&one_service(stable, config), HashMap::new()).await;
    let client = client();
    let slow = {
        let (client, url) = (client.clone(), proxy.url("/delay?ms=1500"));
        tokio::spawn(async move { get(&client, &url, "h", &[]).await })
    };
    eventually("one request in flight", || {
        proxy.metrics.listener().in_flight() == 1
    })
    .await;
    let shed = get(&client, &proxy.url("/shed"), "h", &[]).await;
    assert_eq!(shed.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(shed.headers["retry-after"], "1");
    assert_eq!(shed.headers["x-sluice-error"], "in_flight");
    assert!(
        shed.body.contains("proxy.limits.max_in_flight"),
        "{}",
        shed.body
    );

    assert_eq!(with_patience(slow).await.unwrap().status, StatusCode::OK);
    let after = get(&client, &proxy.url("/after"), "h", &[]).await;
    assert_eq!(after.status, StatusCode::OK);
    assert_eq!(seen.requests(), ["GET /delay 0", "GET /after 0"]);

    let mut text = String::new();
    proxy.metrics.render_prometheus(&mut text);
    for line in [
        "sluice_requests_shed_total{reason=\"in_flight\"} 1",
        "sluice_requests_shed_total{reason=\"connections\"} 0",
        "sluice_client_requests_in_flight 0",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    proxy.stop().await;
}

type H2Send = h2::client::SendRequest<bytes::Bytes>;
type H2Connection = tokio::task::JoinHandle<Result<(), h2::Error>>;

/// Opens up to `count` streams on a new HTTP/2 connection and resets each
/// at once (stopping when the connection fails); returns how many it opened.
async fn reset_streams(proxy: &Running, count: usize) -> (usize, H2Send, H2Connection) {
    let tcp = TcpStream::connect(proxy.addr).await.unwrap();
    let (mut send, connection) = h2::client::handshake(tcp).await.unwrap();
    let connection = tokio::spawn(connection);
    let mut opened = 0;
    while opened < count {
        let Ok(ready) = with_patience(send.clone().ready()).await else {
            break;
        };
        send = ready;
        let request = http::Request::get(format!("http://{}/delay?ms=2000", proxy.addr))
            .body(())
            .unwrap();
        let Ok((_response, mut stream)) = send.send_request(request, false) else {
            break;
        };
        stream.send_reset(h2::Reason::CANCEL);
        opened += 1;
    }
    (opened, send, connection)
}

/// HTTP/2 rapid reset (CVE-2023-44487): a client opening streams and
/// resetting them at once loses its connection (GOAWAY ENHANCE_YOUR_CALM),
/// while a client that cancels a few keeps it, and other clients are served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_rapid_reset_gets_goaway_and_others_are_served() {
    let (stable, seen) = recorder().await;
    let config = "proxy: { limits: { http2_max_pending_reset_streams: 10 } }";
    let proxy = start_proxy(&one_service(stable, config), HashMap::new()).await;

    // A few cancelled streams are normal: the connection goes on serving.
    let (opened, send, _connection) = reset_streams(&proxy, 5).await;
    assert_eq!(opened, 5);
    let mut send = with_patience(send.ready()).await.unwrap();
    let request = http::Request::get(format!("http://{}/after-cancels", proxy.addr))
        .body(())
        .unwrap();
    let (response, _) = send.send_request(request, true).unwrap();
    assert_eq!(
        with_patience(response).await.unwrap().status(),
        StatusCode::OK
    );

    let (opened, _, connection) = reset_streams(&proxy, 5_000).await;
    assert!(opened > 10, "only {opened} streams were opened");
    let ended = with_patience(connection).await.unwrap();
    let error = ended.expect_err("the flooding connection should be closed");
    // The client reads GOAWAY, unless it was still writing when sluice
    // closed the connection behind it.
    let goaway = error.is_go_away() && error.reason() == Some(h2::Reason::ENHANCE_YOUR_CALM);
    let closed = error.get_io().is_some_and(|e| {
        matches!(
            e.kind(),
            std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
        )
    });
    assert!(goaway || closed, "{error:?}");

    let answer = get(&h2c_client(), &proxy.url("/normal"), "h", &[]).await;
    assert_eq!(answer.status, StatusCode::OK);
    let requests = seen.requests();
    assert!(requests.contains(&"GET /normal 0".to_string()));
    assert!(
        requests.len() < 1_000,
        "{} reached the upstream",
        requests.len()
    );
    proxy.stop().await;
}

/// An HTTP/2 stream flood on one connection is bounded by
/// `http2_max_concurrent_streams`: the upstream never sees more at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_streams_per_connection_are_bounded() {
    let (stable, seen) = recorder().await;
    let config = "proxy: { limits: { http2_max_concurrent_streams: 4 } }";
    let proxy = start_proxy(&one_service(stable, config), HashMap::new()).await;
    let tcp = TcpStream::connect(proxy.addr).await.unwrap();
    let (send, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    let send = with_patience(send.ready()).await.unwrap();
    eventually("the server's SETTINGS allow 4 streams", || {
        send.current_max_send_streams() == 4
    })
    .await;
    let mut streams = Vec::new();
    for _ in 0..16 {
        let mut send = send.clone();
        let url = format!("http://{}/delay?ms=200", proxy.addr);
        streams.push(tokio::spawn(async move {
            send = send.ready().await.unwrap();
            let request = http::Request::get(url).body(()).unwrap();
            let (response, _) = send.send_request(request, true).unwrap();
            response.await.unwrap().status()
        }));
    }
    for stream in streams {
        assert_eq!(with_patience(stream).await.unwrap(), StatusCode::OK);
    }
    assert_eq!(seen.requests().len(), 16);
    let most = seen.max_in_flight.load(SeqCst);
    assert!(most <= 4, "{most} streams at once reached the upstream");
    proxy.stop().await;
}

/// HTTP/2 header lists over `max_header_bytes` answer 431 (the stream
/// only: the connection goes on serving).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_oversized_header_lists_answer_431() {
    let (stable, seen) = recorder().await;
    let config = "proxy: { limits: { max_header_bytes: 8192 } }";
    let proxy = start_proxy(&one_service(stable, config), HashMap::new()).await;
    let tcp = TcpStream::connect(proxy.addr).await.unwrap();
    let (send, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    let big = http::Request::get(format!("http://{}/big", proxy.addr))
        .header("x-big", "a".repeat(10_000))
        .body(())
        .unwrap();
    let mut send = with_patience(send.ready()).await.unwrap();
    let (response, _) = send.send_request(big, true).unwrap();
    let response = with_patience(response).await.unwrap();
    assert_eq!(
        response.status(),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
    );

    let fine = http::Request::get(format!("http://{}/fine", proxy.addr))
        .body(())
        .unwrap();
    let mut send = with_patience(send.ready()).await.unwrap();
    let (response, _) = send.send_request(fine, true).unwrap();
    assert_eq!(
        with_patience(response).await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(seen.requests(), ["GET /fine 0"]);
    proxy.stop().await;
}
