//! The Prometheus provider against a real Prometheus (Debian's package)
//! scraping real `/metrics` endpoints served here, one job per version; and
//! against tiny fake servers for the bearer token and the timeout.

#[path = "common/prometheus.rs"]
mod prometheus;
#[allow(dead_code)]
#[path = "../src/providers/prometheus.rs"]
mod prometheus_provider;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use prometheus_provider::{render, Prometheus, ProviderError};
use sluice_model::PrometheusProvider;

/// Serves `answer(request)` on a loopback port until the test ends.
async fn serve<F>(answer: F) -> SocketAddr
where
    F: Fn(&Request<Incoming>) -> Response<Full<Bytes>> + Send + Sync + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let answer = Arc::new(answer);
    tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                continue;
            };
            let answer = answer.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<Incoming>| {
                    let response = answer(&request);
                    async move { Ok::<_, Infallible>(response) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(socket), service)
                    .await;
            });
        }
    });
    addr
}

/// A version's `/metrics`: a memory gauge and a request counter.
async fn metrics_server(memory_bytes: f64, requests: u64) -> SocketAddr {
    let exposition = format!(
        "# HELP demo_memory_bytes Resident memory.\n# TYPE demo_memory_bytes gauge\n\
         demo_memory_bytes {memory_bytes:e}\n\
         # HELP demo_requests_total Requests served.\n# TYPE demo_requests_total counter\n\
         demo_requests_total{{code=\"200\"}} {requests}\n"
    );
    serve(move |request| {
        let (status, body) = match request.uri().path() {
            "/metrics" => (200, exposition.clone()),
            _ => (404, String::new()),
        };
        Response::builder()
            .status(status)
            .header("content-type", "text/plain; version=0.0.4")
            .body(Full::new(Bytes::from(body)))
            .unwrap()
    })
    .await
}

fn provider(address: &str, timeout: Duration) -> Prometheus {
    Prometheus::new(&PrometheusProvider {
        address: address.to_string(),
        timeout,
        bearer_token: None,
        bearer_token_env: None,
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_a_real_prometheus() {
    let stable = metrics_server(1.5e8, 100).await;
    let canary = metrics_server(1.8e8, 40).await;
    let server = tokio::task::spawn_blocking(move || {
        prometheus::start(&[("web-stable", stable), ("web-canary", canary)])
    })
    .await
    .unwrap();
    let prom = provider(&server.url(), Duration::from_secs(5));

    // One sample: the value.
    let value = prom
        .query(r#"demo_memory_bytes{job="web-stable"}"#)
        .await
        .unwrap();
    assert_eq!(value, 1.5e8);

    // A rendered template selects the version's job; a compound interval is valid PromQL.
    let template =
        r#"max_over_time(demo_memory_bytes{job="{{service}}-{{version}}"}[{{interval}}])"#;
    let canary_query = render(template, "web", "canary", Duration::from_secs(90));
    assert_eq!(prom.query(&canary_query).await.unwrap(), 1.8e8);
    let stable_query = render(template, "web", "stable", Duration::from_secs(30));
    assert_eq!(prom.query(&stable_query).await.unwrap(), 1.5e8);

    // "Memory no more than 30% above stable" is one expression.
    let ratio = prom
        .query(r#"demo_memory_bytes{job="web-canary"} / ignoring(job, instance) demo_memory_bytes{job="web-stable"}"#)
        .await
        .unwrap();
    assert!((ratio - 1.2).abs() < 1e-9, "{ratio}");

    // A scalar answer.
    let total = prom
        .query("scalar(sum(demo_requests_total))")
        .await
        .unwrap();
    assert_eq!(total, 140.0);

    // No series: NoSample, naming the query and the server.
    let missing = r#"demo_memory_bytes{job="web-nope"}"#;
    let error = prom.query(missing).await.unwrap_err();
    assert!(matches!(error, ProviderError::NoSample { .. }), "{error:?}");
    let message = error.to_string();
    assert!(
        message.contains(missing) && message.contains(&server.url()),
        "{message}"
    );

    // Two series: TooManySamples, naming both jobs.
    let error = prom.query("demo_memory_bytes").await.unwrap_err();
    assert!(
        matches!(error, ProviderError::TooManySamples { count: 2, .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains("web-stable") && message.contains("web-canary"),
        "{message}"
    );

    // NaN is not a value a check can judge.
    let error = prom.query("0 / 0").await.unwrap_err();
    assert!(
        matches!(error, ProviderError::NotANumber { .. }),
        "{error:?}"
    );

    // A syntax error: Prometheus' own error text.
    let error = prom.query("sum(demo_memory_bytes").await.unwrap_err();
    match &error {
        ProviderError::Query {
            error_type, error, ..
        } => {
            assert_eq!(error_type, "bad_data");
            assert!(error.contains("parse error"), "{error}");
        }
        other => panic!("expected a query error, got {other:?}"),
    }
    assert!(
        error.to_string().contains("sum(demo_memory_bytes"),
        "{error}"
    );

    // A range vector is refused with its type.
    let error = prom.query("demo_memory_bytes[1m]").await.unwrap_err();
    assert!(
        matches!(error, ProviderError::WrongResultType { .. }),
        "{error:?}"
    );

    server.stop();
}

#[tokio::test]
async fn a_closed_port_is_unreachable_not_a_timeout() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let prom = provider(&format!("http://127.0.0.1:{port}"), Duration::from_secs(5));
    let error = prom.query("up").await.unwrap_err();
    assert!(
        matches!(error, ProviderError::Unreachable { .. }),
        "{error:?}"
    );
    assert!(
        error.to_string().contains(&format!("127.0.0.1:{port}")),
        "{error}"
    );
}

#[tokio::test]
async fn sends_the_bearer_token_and_the_query() {
    // (Authorization header, path) of every request.
    type Seen = Vec<(Option<String>, String)>;
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let record = seen.clone();
    let addr = serve(move |request| {
        let authorization = request
            .headers()
            .get("authorization")
            .map(|value| value.to_str().unwrap().to_string());
        record.lock().unwrap().push((authorization, request.uri().path().to_string()));
        Response::new(Full::new(Bytes::from_static(
            br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1700000000.5,"7"]}]}}"#,
        )))
    })
    .await;

    let literal = Prometheus::new(&PrometheusProvider {
        address: format!("http://{addr}/prefix/"),
        timeout: Duration::from_secs(5),
        bearer_token: Some("literal-token".into()),
        bearer_token_env: None,
    })
    .unwrap();
    assert_eq!(literal.query("up").await.unwrap(), 7.0);

    // The environment variable wins over the literal.
    std::env::set_var("SLUICE_TEST_PROMETHEUS_TOKEN", "env-token");
    let from_env = Prometheus::new(&PrometheusProvider {
        address: format!("http://{addr}"),
        timeout: Duration::from_secs(5),
        bearer_token: Some("literal-token".into()),
        bearer_token_env: Some("SLUICE_TEST_PROMETHEUS_TOKEN".into()),
    })
    .unwrap();
    assert_eq!(from_env.query("up").await.unwrap(), 7.0);

    let none = provider(&format!("http://{addr}"), Duration::from_secs(5));
    assert_eq!(none.query("up").await.unwrap(), 7.0);

    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec![
            (
                Some("Bearer literal-token".into()),
                "/prefix/api/v1/query".into()
            ),
            (Some("Bearer env-token".into()), "/api/v1/query".into()),
            (None, "/api/v1/query".into()),
        ]
    );
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    // Accepts connections and holds them open without a byte of answer.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let timeout = Duration::from_millis(300);
    let prom = provider(&format!("http://{addr}"), timeout);
    let started = Instant::now();
    let error = prom.query("up").await.unwrap_err();
    let elapsed = started.elapsed();
    assert!(matches!(error, ProviderError::Timeout { .. }), "{error:?}");
    assert!(error.to_string().contains("up"), "{error}");
    assert!(
        elapsed >= timeout,
        "gave up after {elapsed:?}, before the timeout"
    );
    assert!(
        elapsed < timeout * 10,
        "took {elapsed:?} for a {timeout:?} timeout"
    );
}

#[tokio::test]
async fn a_redirect_loop_is_not_followed() {
    // Every query is sent back to itself.
    let seen = Arc::new(Mutex::new(0u32));
    let count = seen.clone();
    let addr = serve(move |request| {
        *count.lock().unwrap() += 1;
        Response::builder()
            .status(302)
            .header("location", request.uri().to_string())
            .body(Full::new(Bytes::new()))
            .unwrap()
    })
    .await;
    let prom = provider(&format!("http://{addr}"), Duration::from_secs(5));
    let error = tokio::time::timeout(Duration::from_secs(30), prom.query("up"))
        .await
        .expect("the query did not end on its own")
        .unwrap_err();
    assert!(
        matches!(error, ProviderError::Http { status: 302, .. }),
        "{error:?}"
    );
    assert_eq!(
        *seen.lock().unwrap(),
        1,
        "one request, no redirect followed"
    );
}
