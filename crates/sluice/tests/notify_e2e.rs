//! Notifications through the real binary: a rollout whose canary fails is
//! told to a Slack-format receiver (naming the failing check and its
//! numbers) and, event by event, to a generic webhook, which also hears the
//! canary's breaker open.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::Value;

type Received = Arc<Mutex<Vec<(String, Value)>>>;

/// Records every JSON body posted to it, with its path.
async fn receiver() -> (SocketAddr, Received) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received: Received = Arc::default();
    let sink = received.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let sink = sink.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<Incoming>| {
                    let sink = sink.clone();
                    async move {
                        let path = request.uri().path().to_string();
                        let body = request.into_body().collect().await.unwrap().to_bytes();
                        let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
                        sink.lock().unwrap().push((path, json));
                        Ok::<_, Infallible>(Response::new(Full::new(bytes::Bytes::from("ok"))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, received)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolled_back_rollout_and_an_open_breaker_are_notified() {
    let (v1, v2) = (Upstream::start("v1").await, Upstream::start("v2").await);
    v2.behaviour.fail_every.store(2, Ordering::Relaxed);
    let (hooks, received) = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        r#"listeners:
  - address: 127.0.0.1:0
admin:
  address: 127.0.0.1:0
store: sluice.db
notifications:
  - name: team-slack
    kind: slack
    url: http://{hooks}/slack
    events: [rolled_back]
  - name: audit
    kind: webhook
    url: http://{hooks}/hook
breakers:
  policies:
    default: {{ failure_threshold: 2, error_rate_threshold: null, open_duration: 1m }}
services:
  - name: web
    versions:
      stable: {{ endpoints: ["{}"] }}
      canary: {{ endpoints: ["{}"] }}
    breaker: {{ policy: default }}
    rollout:
      interval: 500ms
      threshold: 2
      step_weights: [50]
      checks:
        - metric: success_rate
          min: 99
"#,
        v1.endpoint(),
        v2.endpoint()
    );
    let sluice = Sluice::start(dir.path(), &config);
    let stop = Arc::new(AtomicBool::new(false));
    let (_counts, tasks) = spawn_load(sluice.proxy, 4, Duration::from_millis(5), stop.clone());
    let slack: Value = eventually(Duration::from_secs(30), "the Slack notice", || async {
        let received = received.lock().unwrap();
        received
            .iter()
            .find(|(path, _)| path == "/slack")
            .map(|(_, body)| body.clone())
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
    let text = slack["text"].as_str().unwrap();
    assert!(
        text.contains("web") && text.contains("rolled back"),
        "{slack}"
    );
    let blocks = slack["blocks"].to_string();
    assert!(blocks.contains("success_rate"), "{slack}");

    let events = eventually(Duration::from_secs(10), "the webhook's notices", || async {
        let received = received.lock().unwrap();
        let events: Vec<String> = received
            .iter()
            .filter(|(path, _)| path == "/hook")
            .map(|(_, body)| body["event"].as_str().unwrap_or("").to_string())
            .collect();
        events
            .contains(&"rolled_back".to_string())
            .then_some(events)
    })
    .await;
    assert_eq!(
        events.first().map(String::as_str),
        Some("started"),
        "{events:?}"
    );
    assert!(events.contains(&"breaker_opened".to_string()), "{events:?}");
    let metrics = try_metrics(&client(), sluice.admin).await.unwrap();
    assert!(
        metrics.contains("sluice_notifications_total{target=\"team-slack\",result=\"sent\"} 1"),
        "{metrics}"
    );
    promtool_check_metrics(&metrics);
}
