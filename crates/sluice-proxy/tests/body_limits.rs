//! `proxy.limits.max_request_body_bytes` over raw TCP against the real
//! proxy and a loopback upstream that records what reached it: a declared
//! `Content-Length` over the limit is refused before any upstream is asked,
//! a chunked body that grows past it is cut (the upstream sees its request
//! aborted, never a shorter body that looks whole), and bodies within the
//! limit pass untouched.

mod common;

use std::collections::HashMap;

use common::hostile::*;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LIMITED: &str = "proxy: { limits: { max_request_body_bytes: 1000 } }";

/// A chunked body of `chunks` chunks of `size` bytes each, terminated.
fn chunked(chunks: usize, size: usize) -> String {
    let chunk = format!("{size:x}\r\n{}\r\n", "a".repeat(size));
    format!("{}0\r\n\r\n", chunk.repeat(chunks))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_content_length_over_the_limit_is_413_before_any_upstream() {
    let (stable, seen) = recorder().await;
    let proxy = start_proxy(&one_service(stable, LIMITED), HashMap::new()).await;
    let request =
        "POST /upload HTTP/1.1\r\nhost: h\r\nconnection: close\r\ncontent-length: 1001\r\n\r\n";
    let response = exchange(proxy.addr, request.as_bytes()).await;
    assert!(
        status_line(&response).starts_with("HTTP/1.1 413"),
        "{response:?}"
    );
    assert!(
        response.contains("x-sluice-error: body_too_large"),
        "{response:?}"
    );
    assert!(
        response.contains("larger than 1000 bytes (proxy.limits.max_request_body_bytes)"),
        "{response:?}"
    );
    // A request sent upstream would have arrived by the time the client
    // got its answer; give it a moment more all the same.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(
        seen.requests(),
        Vec::<String>::new(),
        "nothing reached the upstream"
    );
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_content_length_at_the_limit_passes_whole() {
    let (stable, seen) = recorder().await;
    let proxy = start_proxy(&one_service(stable, LIMITED), HashMap::new()).await;
    let request = format!(
        "POST /upload HTTP/1.1\r\nhost: h\r\nconnection: close\r\ncontent-length: 1000\r\n\r\n{}",
        "a".repeat(1000)
    );
    let response = exchange(proxy.addr, request.as_bytes()).await;
    assert!(
        status_line(&response).starts_with("HTTP/1.1 200"),
        "{response:?}"
    );
    assert_eq!(seen.requests(), vec!["POST /upload 1000".to_string()]);
    proxy.stop().await;
}

/// Asserts that a request cut at the limit reached the upstream as a
/// broken body (`body-error`) or not at all (its head may not have left
/// yet), never as a shorter complete one: sends a small request after it
/// and, once that one arrived, looks at everything else the upstream got
/// but the `earlier` requests of the test.
async fn assert_cut(proxy: &Running, seen: &Seen, earlier: &[&str]) {
    let after =
        "POST /after HTTP/1.1\r\nhost: h\r\nconnection: close\r\ncontent-length: 3\r\n\r\nabc";
    let response = exchange(proxy.addr, after.as_bytes()).await;
    assert!(
        status_line(&response).starts_with("HTTP/1.1 200"),
        "{response:?}"
    );
    eventually("the request after the cut one arrived", || {
        seen.requests().contains(&"POST /after 3".to_string())
    })
    .await;
    let others: Vec<String> = seen
        .requests()
        .into_iter()
        .filter(|r| r != "POST /after 3" && !earlier.contains(&r.as_str()))
        .collect();
    assert!(
        others.iter().all(|r| r == "POST /upload body-error") && others.len() <= 1,
        "the cut request looked complete upstream: {others:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_body_growing_past_the_limit_is_cut_with_413() {
    let (stable, seen) = recorder().await;
    let proxy = start_proxy(&one_service(stable, LIMITED), HashMap::new()).await;
    let request = format!(
        "POST /upload HTTP/1.1\r\nhost: h\r\nconnection: close\r\ntransfer-encoding: chunked\r\n\r\n{}",
        chunked(3, 600)
    );
    let response = exchange(proxy.addr, request.as_bytes()).await;
    assert!(
        status_line(&response).starts_with("HTTP/1.1 413"),
        "{response:?}"
    );
    assert!(
        response.contains("x-sluice-error: body_too_large"),
        "{response:?}"
    );
    assert_cut(&proxy, &seen, &["POST /upload 900"]).await;
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_body_within_the_limit_passes_whole() {
    let (stable, seen) = recorder().await;
    let proxy = start_proxy(&one_service(stable, LIMITED), HashMap::new()).await;
    let request = format!(
        "POST /upload HTTP/1.1\r\nhost: h\r\nconnection: close\r\ntransfer-encoding: chunked\r\n\r\n{}",
        chunked(2, 500)
    );
    let response = exchange(proxy.addr, request.as_bytes()).await;
    assert!(
        status_line(&response).starts_with("HTTP/1.1 200"),
        "{response:?}"
    );
    assert_eq!(seen.requests(), vec!["POST /upload 1000".to_string()]);
    proxy.stop().await;
}

/// Sends a chunked body of `chunks` x 500 bytes to `web`, whose stable is
/// mirrored to its canary; returns what each upstream saw, once both are
/// settled, and the proxy's metrics text.
async fn mirrored(chunks: usize, expect_status: &str) -> (Vec<String>, Vec<String>, String) {
    let (stable, stable_seen) = recorder().await;
    let (canary, canary_seen) = recorder().await;
    let mut routes = routing("web", stable, Some(canary), 0.0);
    routes.get_mut("web").unwrap().mirror_active = true;
    let proxy = start_proxy(&web_config(stable, canary, LIMITED), routes).await;
    let request = format!(
        "POST /upload HTTP/1.1\r\nhost: h\r\nconnection: close\r\ntransfer-encoding: chunked\r\n\r\n{}",
        chunked(chunks, 500)
    );
    let response = exchange(proxy.addr, request.as_bytes()).await;
    assert!(
        status_line(&response).starts_with(expect_status),
        "{response:?}"
    );
    let metrics = || {
        let mut text = String::new();
        proxy.metrics.render_prometheus(&mut text);
        text
    };
    // Settled: stable recorded its request (a cut one may never arrive),
    // and the canary got its copy or the mirror was counted dropped.
    let cut = expect_status.contains("413");
    eventually("the upstreams and the mirror settled", || {
        let dropped = "sluice_mirror_dropped_total{service=\"web\",reason=\"error\"} 1";
        (cut || !stable_seen.requests().is_empty())
            && (!canary_seen.requests().is_empty() || metrics().contains(dropped))
    })
    .await;
    let seen = (stable_seen.requests(), canary_seen.requests(), metrics());
    proxy.stop().await;
    seen
}

/// Control for the test below: a body within the limit reaches both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirrored_body_within_the_limit_reaches_stable_and_canary() {
    let (stable, canary, _) = mirrored(2, "HTTP/1.1 200").await;
    assert_eq!(stable, vec!["POST /upload 1000".to_string()]);
    assert_eq!(canary, vec!["POST /upload 1000".to_string()]);
}

/// A body cut at the limit is not mirrored with what came before the cut
/// (which would look like a complete, shorter request): the mirror is
/// dropped and counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirrored_body_over_the_limit_is_not_sent_to_the_canary() {
    let (stable, canary, metrics) = mirrored(3, "HTTP/1.1 413").await;
    // A broken body, or nothing when the head had not left yet.
    assert!(
        stable.iter().all(|r| r == "POST /upload body-error") && stable.len() <= 1,
        "{stable:?}"
    );
    assert_eq!(
        canary,
        Vec::<String>::new(),
        "no cut body reached the canary"
    );
    assert!(
        metrics.contains("sluice_mirror_dropped_total{service=\"web\",reason=\"error\"} 1"),
        "{metrics}"
    );
}

/// Sends a POST over HTTP/2 (prior knowledge) with `content_length` (or
/// none) and the body as `chunks` DATA frames of `size` bytes; returns the
/// response status.
async fn h2_post(
    proxy: &Running,
    content_length: Option<usize>,
    chunks: usize,
    size: usize,
) -> http::StatusCode {
    let tcp = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let (send, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    let mut send = with_patience(send.ready()).await.unwrap();
    let mut request = http::Request::post(format!("http://{}/upload", proxy.addr));
    if let Some(length) = content_length {
        request = request.header("content-length", length);
    }
    let (response, mut stream) = send.send_request(request.body(()).unwrap(), false).unwrap();
    for i in 0..chunks {
        // The stream may be refused before the whole body is out.
        let last = i + 1 == chunks;
        if stream
            .send_data(bytes::Bytes::from(vec![b'a'; size]), last)
            .is_err()
        {
            break;
        }
    }
    with_patience(response).await.unwrap().status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_bodies_over_the_limit_are_413_declared_or_streamed() {
    let (stable, seen) = recorder().await;
    let proxy = start_proxy(&one_service(stable, LIMITED), HashMap::new()).await;

    // Declared too large: refused before any upstream is asked.
    assert_eq!(
        h2_post(&proxy, Some(1200), 2, 600).await,
        http::StatusCode::PAYLOAD_TOO_LARGE
    );
    // Within the limit: forwarded whole.
    assert_eq!(h2_post(&proxy, None, 1, 900).await, http::StatusCode::OK);
    assert_eq!(
        seen.requests(),
        vec!["POST /upload 900".to_string()],
        "the declared-too-large request never reached the upstream"
    );
    // Streamed without a length, growing past the limit: cut.
    assert_eq!(
        h2_post(&proxy, None, 2, 600).await,
        http::StatusCode::PAYLOAD_TOO_LARGE
    );
    assert_cut(&proxy, &seen, &["POST /upload 900"]).await;
    proxy.stop().await;
}

/// When the upstream has already started its answer, a body growing past
/// the limit cannot become a 413: the client's connection is closed
/// before the response's end, so the response never looks complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_cut_after_the_response_began_closes_the_connection() {
    let (stable, heads) = raw_upstream(Misbehaviour::AnswerEarly).await;
    let proxy = start_proxy(&one_service(stable, LIMITED), HashMap::new()).await;
    let mut client = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let head = "POST /upload HTTP/1.1\r\nhost: h\r\ntransfer-encoding: chunked\r\n\r\n";
    let first = format!("{head}{}", chunked(1, 600).trim_end_matches("0\r\n\r\n"));
    client.write_all(first.as_bytes()).await.unwrap();
    // The upstream's answer begins while the body is still coming.
    let mut seen = Vec::new();
    with_patience(async {
        let mut buf = [0u8; 1024];
        while !String::from_utf8_lossy(&seen).contains("hello") {
            let n = client.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed early: {:?}", String::from_utf8_lossy(&seen));
            seen.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    assert!(
        String::from_utf8_lossy(&seen).starts_with("HTTP/1.1 200"),
        "{seen:?}"
    );
    // 600 + 600 > 1000: the second chunk crosses the limit.
    let _ = client.write_all(chunked(1, 600).as_bytes()).await;
    let rest = read_until_closed(&mut client).await;
    assert!(
        !rest.contains("0\r\n\r\n"),
        "the cut response must not end like a complete one: {rest:?}"
    );
    assert_eq!(heads.load(std::sync::atomic::Ordering::SeqCst), 1);
    proxy.stop().await;
}
