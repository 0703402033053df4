//! Upstream failures: refused connections (502), slow upstreams (504), 5xx
//! answers, clients that leave — how each is answered and counted, and how
//! the counters read in Prometheus text.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use http::StatusCode;
use sluice_proxy::Slot;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connection_is_a_502_counted_as_connect_error() {
    let stable = upstream("stable").await;
    let dead = closed_port().await;
    let proxy = start_proxy(&web_config(stable, dead, ""), HashMap::new()).await;
    let client = client();
    let answer = get(&client, &proxy.url("/"), "h", &[("x-canary", "always")]).await;
    assert_eq!(answer.status, StatusCode::BAD_GATEWAY);
    assert_eq!(answer.headers["x-sluice-error"], "connect");
    assert_eq!(
        answer.body.trim_end(),
        format!("sluice: upstream {dead} (service web, canary) refused the connection")
    );
    let canary = proxy.metrics.snapshot("web", Slot::Canary);
    assert_eq!((canary.requests, canary.errors), (1, 1));
    assert_eq!(proxy.metrics.snapshot("web", Slot::Stable).errors, 0);

    let mut text = String::new();
    proxy.metrics.render_prometheus(&mut text);
    let labels = r#"service="web",version="canary""#;
    assert!(
        text.contains(&format!(
            "sluice_request_errors_total{{{labels},kind=\"connect\"}} 1\n"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "sluice_request_errors_total{{{labels},kind=\"timeout\"}} 0\n"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("sluice_requests_total{{{labels}}} 1\n")),
        "{text}"
    );
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_upstream_is_a_504_counted_as_timeout() {
    let (stable, canary) = (upstream("stable").await, upstream("canary").await);
    let yaml = web_config(stable, canary, "proxy: { upstream_timeout: 300ms }");
    let proxy = start_proxy(&yaml, HashMap::new()).await;
    let client = client();
    let answer = get(&client, &proxy.url("/slow"), "h", &[]).await;
    assert_eq!(answer.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(answer.headers["x-sluice-error"], "timeout");
    assert_eq!(
        answer.body.trim_end(),
        format!(
            "sluice: upstream {stable} (service web, stable) sent no response head within 300ms"
        )
    );
    // A fast request on the same proxy is fine.
    assert_eq!(
        get(&client, &proxy.url("/"), "h", &[]).await.status,
        StatusCode::OK
    );
    let window = proxy.metrics.snapshot("web", Slot::Stable);
    assert_eq!((window.requests, window.errors), (2, 1));

    let mut text = String::new();
    proxy.metrics.render_prometheus(&mut text);
    let labels = r#"service="web",version="stable""#;
    assert!(
        text.contains(&format!(
            "sluice_request_errors_total{{{labels},kind=\"timeout\"}} 1\n"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "sluice_request_duration_seconds_count{{{labels}}} 2\n"
        )),
        "{text}"
    );
    assert!(text.contains("# TYPE sluice_request_duration_seconds histogram\n"));
    assert!(text.contains("# TYPE sluice_requests_in_flight gauge\n"));
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_5xx_is_passed_through_and_counted() {
    let (stable, canary) = (upstream("stable").await, upstream("canary").await);
    let proxy = start_proxy(
        &web_config(stable, canary, ""),
        routing("web", stable, Some(canary), 100.0),
    )
    .await;
    let client = client();
    for _ in 0..3 {
        let answer = get(&client, &proxy.url("/fail"), "h", &[]).await;
        assert_eq!(answer.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(answer.upstream(), "canary");
        assert!(!answer.headers.contains_key("x-sluice-error"));
    }
    assert_eq!(
        get(&client, &proxy.url("/"), "h", &[]).await.status,
        StatusCode::OK
    );
    let window = proxy.metrics.snapshot("web", Slot::Canary);
    assert_eq!((window.requests, window.errors), (4, 3));
    let mut text = String::new();
    proxy.metrics.render_prometheus(&mut text);
    assert!(text.contains(
        "sluice_request_errors_total{service=\"web\",version=\"canary\",kind=\"5xx\"} 3\n"
    ));
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_is_not_an_upstream_error() {
    let (stable, canary) = (upstream("stable").await, upstream("canary").await);
    let proxy = start_proxy(&web_config(stable, canary, ""), HashMap::new()).await;
    let client = client();
    let url = proxy.url("/delay?ms=1500");
    let request = tokio::spawn(async move { get(&client, &url, "h", &[]).await });
    // Wait until the request is at the upstream, then give up on it.
    wait_for(|| proxy.metrics.in_flight("web", Slot::Stable) == 1).await;
    request.abort();
    wait_for(|| proxy.metrics.in_flight("web", Slot::Stable) == 0).await;
    assert_eq!(proxy.metrics.snapshot("web", Slot::Stable).errors, 0);
    proxy.stop().await;
}

/// Polls `done` until it holds, within [`PATIENCE`].
async fn wait_for(done: impl Fn() -> bool) {
    with_patience(async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

/// The exposition passes `promtool check metrics` (Debian package
/// `prometheus`, installed by scripts/test.sh); without promtool this fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_text_passes_promtool() {
    let (stable, canary) = (upstream("stable").await, upstream("canary").await);
    let yaml = format!(
        "{}  - name: other\n    match: {{ hosts: [other.test] }}\n    versions: {{ stable: {{ endpoints: [\"{stable}\"] }} }}\n",
        web_config(stable, canary, "")
    );
    let proxy = start_proxy(&yaml, routing("web", stable, Some(canary), 50.0)).await;
    let client = client();
    for path in ["/", "/fail", "/", "/delay?ms=30"] {
        get(&client, &proxy.url(path), "h", &[]).await;
        get(&client, &proxy.url(path), "other.test", &[]).await;
    }
    let mut text = String::new();
    proxy.metrics.render_prometheus(&mut text);
    proxy.stop().await;
    assert!(
        text.contains("sluice_requests_total{service=\"other\",version=\"stable\"} 4\n"),
        "{text}"
    );

    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool is needed (Debian package `prometheus`; scripts/test.sh installs it)");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool: {}{}\n{text}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
