//! Upstreams that misbehave — reset, answer garbage, hang, stall a body —
//! are bounded by timeouts, answered 502/504 with a reason, and counted as
//! failures for the analysis (the version's error counters) and for the
//! circuit breaker (which opens on them).

mod common;

use std::collections::HashMap;
use std::sync::atomic::Ordering::SeqCst;

use common::hostile::*;
use common::*;
use http::StatusCode;
use http_body_util::BodyExt;
use sluice_proxy::Slot;

/// Sends one GET through a proxy in front of an upstream misbehaving `how`.
async fn one_request(how: Misbehaviour, extra: &str) -> (Answer, Running) {
    let (stable, heads) = raw_upstream(how).await;
    let proxy = start_proxy(&one_service(stable, extra), HashMap::new()).await;
    let answer = get(&client(), &proxy.url("/"), "h", &[]).await;
    assert_eq!(heads.load(SeqCst), 1, "the upstream got the request");
    (answer, proxy)
}

fn errors_of_kind(proxy: &Running, kind: &str) -> String {
    let mut text = String::new();
    proxy.metrics.render_prometheus(&mut text);
    let prefix = format!(
        "sluice_request_errors_total{{service=\"web\",version=\"stable\",kind=\"{kind}\"}} "
    );
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or("missing")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_reset_is_a_502_counted_as_protocol_error() {
    let (answer, proxy) = one_request(Misbehaviour::Reset, "").await;
    assert_eq!(answer.status, StatusCode::BAD_GATEWAY);
    assert_eq!(answer.headers["x-sluice-error"], "protocol");
    assert!(
        answer.body.contains("failed before a response"),
        "{}",
        answer.body
    );
    assert_eq!(errors_of_kind(&proxy, "protocol"), "1");
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_answering_garbage_is_a_502_with_the_reason() {
    let (answer, proxy) = one_request(Misbehaviour::Garbage, "").await;
    assert_eq!(answer.status, StatusCode::BAD_GATEWAY);
    assert_eq!(answer.headers["x-sluice-error"], "protocol");
    assert!(
        answer
            .body
            .contains("(service web, stable) failed before a response"),
        "{}",
        answer.body
    );
    let window = proxy.metrics.snapshot("web", Slot::Stable);
    assert_eq!((window.requests, window.errors), (1, 1));
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_upstream_is_a_504_after_the_upstream_timeout() {
    let (answer, proxy) =
        one_request(Misbehaviour::Hang, "proxy: { upstream_timeout: 300ms }").await;
    assert_eq!(answer.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(answer.headers["x-sluice-error"], "timeout");
    assert!(
        answer.body.contains("no response head within 300ms"),
        "{}",
        answer.body
    );
    assert_eq!(errors_of_kind(&proxy, "timeout"), "1");
    proxy.stop().await;
}

/// A body that stalls after its head is cut after `upstream_body_timeout`:
/// the client sees the body fail (never a short body that looks whole), and
/// the request counts as a timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_body_is_cut_and_counted_as_a_timeout() {
    let (stable, _) = raw_upstream(Misbehaviour::StallBody).await;
    let config = one_service(stable, "proxy: { upstream_body_timeout: 300ms }");
    let proxy = start_proxy(&config, HashMap::new()).await;
    let request = http::Request::get(proxy.url("/"))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let response = with_patience(client().request(request)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = with_patience(response.into_body().collect()).await;
    assert!(body.is_err(), "the cut body must not look complete");
    eventually("the stall counted as a timeout", || {
        errors_of_kind(&proxy, "timeout") == "1"
    })
    .await;
    proxy.stop().await;
}

/// Garbage and resets open the circuit breaker like 5xx answers do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_garbage_opens_the_breaker() {
    let (stable, heads) = raw_upstream(Misbehaviour::Garbage).await;
    let config = format!(
        "{}\n    breaker: {{ policy: strict }}\nbreakers: {{ policies: {{ strict: {{ failure_threshold: 2, open_duration: 60s }} }} }}\n",
        one_service(stable, "").trim_end()
    );
    let proxy = start_proxy(&config, HashMap::new()).await;
    let client = client();
    for _ in 0..2 {
        let answer = get(&client, &proxy.url("/"), "h", &[]).await;
        assert_eq!(answer.status, StatusCode::BAD_GATEWAY);
    }
    let answer = get(&client, &proxy.url("/"), "h", &[]).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.headers["x-sluice-error"], "breaker_open");
    assert_eq!(
        heads.load(SeqCst),
        2,
        "the open breaker kept the third away"
    );
    proxy.stop().await;
}

/// Sends GETs through a breaker with `failure_threshold: 2` to an upstream
/// that answers a 200 head and then fails its body `how`: each client sees
/// a 200 whose body fails, and after two of them the breaker is open.
async fn failing_bodies_open_the_breaker(how: Misbehaviour) {
    let (stable, heads) = raw_upstream(how).await;
    let config = format!(
        "{}\n    breaker: {{ policy: strict }}\nproxy: {{ upstream_body_timeout: 300ms }}\nbreakers: {{ policies: {{ strict: {{ failure_threshold: 2, open_duration: 60s }} }} }}\n",
        one_service(stable, "").trim_end()
    );
    let proxy = start_proxy(&config, HashMap::new()).await;
    let client = client();
    for _ in 0..2 {
        let request = http::Request::get(proxy.url("/"))
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap();
        let response = with_patience(client.request(request)).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body = with_patience(response.into_body().collect()).await;
        assert!(body.is_err(), "the cut body must not look complete");
    }
    // The body's failure reaches the breaker when the proxy sees it, which
    // may be a moment after the client does.
    eventually("the breaker opened on the failed bodies", || {
        proxy
            .metrics
            .breakers()
            .list()
            .iter()
            .any(|b| b.state == sluice_breaker::State::Open)
    })
    .await;
    let answer = get(&client, &proxy.url("/"), "h", &[]).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.headers["x-sluice-error"], "breaker_open");
    assert_eq!(
        heads.load(SeqCst),
        2,
        "the open breaker kept the third away"
    );
    proxy.stop().await;
}

/// A body reset after a 200 head is a failure for the breaker, not the
/// success its head looked like.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_reset_after_a_200_head_open_the_breaker() {
    failing_bodies_open_the_breaker(Misbehaviour::ResetBody).await;
}

/// A body cut by `proxy.upstream_body_timeout` after a 200 head is a
/// failure (a timeout) for the breaker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_stalled_after_a_200_head_open_the_breaker() {
    failing_bodies_open_the_breaker(Misbehaviour::StallBody).await;
}
