//! What reaches the upstream and what comes back: rewritten URI and headers,
//! hop-by-hop removal, forwarding headers, streamed bodies, HTTP/2 clients.

mod common;

use bytes::Bytes;
use common::*;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use sluice_proxy::Slot;

fn echoed<'a>(body: &'a str, name: &str) -> Vec<&'a str> {
    body.lines()
        .filter_map(|l| l.split_once(": "))
        .filter(|(k, _)| *k == name)
        .map(|(_, v)| v)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_headers_are_rewritten_for_the_upstream() {
    let (stable, canary) = (upstream("stable").await, upstream("canary").await);
    let proxy = start_proxy(
        &web_config(stable, canary, ""),
        routing("web", stable, None, 0.0),
    )
    .await;
    let client = client();
    let answer = get(
        &client,
        &proxy.url("/echo/path?q=1&r=2"),
        "shop.example.com:8443",
        &[
            ("connection", "x-secret"),
            ("x-secret", "do not forward"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("te", "trailers"),
            ("trailer", "x-checksum"),
            ("x-forwarded-for", "203.0.113.7"),
            ("forwarded", "for=203.0.113.7"),
            ("x-kept", "yes"),
        ],
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    let body = &answer.body;
    for gone in [
        "x-secret",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
    ] {
        assert!(
            echoed(body, gone).is_empty(),
            "{gone} reached the upstream:\n{body}"
        );
    }
    assert_eq!(echoed(body, "x-kept"), ["yes"]);
    assert_eq!(echoed(body, "host"), ["shop.example.com:8443"]);
    assert_eq!(echoed(body, "uri"), ["/echo/path?q=1&r=2"]);
    assert_eq!(echoed(body, "x-forwarded-for"), ["203.0.113.7, 127.0.0.1"]);
    assert_eq!(echoed(body, "x-forwarded-proto"), ["http"]);
    assert_eq!(echoed(body, "x-forwarded-host"), ["shop.example.com:8443"]);
    assert_eq!(
        echoed(body, "forwarded"),
        ["for=203.0.113.7, for=127.0.0.1;proto=http;host=\"shop.example.com:8443\""]
    );

    // Hop-by-hop headers of the upstream's response stay behind too.
    assert_eq!(answer.headers["x-upstream"], "stable");
    for gone in ["x-hop", "keep-alive"] {
        assert!(
            !answer.headers.contains_key(gone),
            "{gone} reached the client"
        );
    }
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_stream_intact_both_ways() {
    let (stable, canary) = (upstream("stable").await, upstream("canary").await);
    let proxy = start_proxy(
        &web_config(stable, canary, ""),
        routing("web", stable, None, 0.0),
    )
    .await;
    let client = client();

    // Download: 8 MiB in 64 KiB chunks from the upstream, chunked encoding.
    let size = 8 * 1024 * 1024 + 17;
    let response =
        with_patience(client.get(proxy.url(&format!("/stream?bytes={size}")).parse().unwrap()))
            .await
            .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    let (mut received, mut frames) = (0usize, 0usize);
    while let Some(frame) = with_patience(body.frame()).await {
        let data = frame.unwrap().into_data().unwrap();
        for (i, b) in data.iter().enumerate() {
            assert_eq!(*b, pattern(received + i), "byte {} differs", received + i);
        }
        received += data.len();
        frames += 1;
    }
    assert_eq!(received, size);
    // Streamed, not collected into one buffer.
    assert!(frames > 1);

    // Upload: a streamed request body of 3 MiB (chunked, no length known in advance).
    let upload = 3 * 1024 * 1024;
    let stream_client =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http::<Pattern>();
    let request = Request::post(proxy.url("/upload"))
        .body(Pattern {
            sent: 0,
            total: upload,
        })
        .unwrap();
    let response = with_patience(stream_client.request(request)).await.unwrap();
    let text = with_patience(response.into_body().collect())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(text, format!("{upload} intact"));
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_clients_are_served_and_keep_their_host() {
    let (stable, canary) = (upstream("stable").await, upstream("canary").await);
    let proxy = start_proxy(
        &web_config(stable, canary, ""),
        routing("web", stable, Some(canary), 0.0),
    )
    .await;
    // The :authority names a host that does not resolve: connect by hand.
    let stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    let request = Request::get("http://h2.example.com:8443/echo")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = with_patience(sender.send_request(request)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.version(), http::Version::HTTP_2);
    let body = with_patience(response.into_body().collect())
        .await
        .unwrap()
        .to_bytes();
    let body = String::from_utf8_lossy(&body);
    assert_eq!(echoed(&body, "host"), ["h2.example.com:8443"]);
    assert_eq!(echoed(&body, "x-forwarded-host"), ["h2.example.com:8443"]);

    let client = h2c_client();
    let forced = Request::get(proxy.url("/"))
        .header("x-canary", "always")
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(send(&client, forced).await.upstream(), "canary");
    assert_eq!(proxy.metrics.snapshot("web", Slot::Canary).requests, 1);
    proxy.stop().await;
}
