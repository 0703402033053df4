//! Notifications against real HTTP servers on loopback: the Slack and
//! generic payloads as received, retries on 5xx with backoff, and a target
//! that never answers given up on after timeout × attempts while `notify`
//! returns at once. The module is included directly to reach what the
//! binary does not export; `notify_e2e.rs` covers it through the binary.

mod common;
#[allow(dead_code)]
#[path = "../src/notify/mod.rs"]
mod notify;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use notify::{Counts, Notice, Notifier};
use serde_json::{json, Value};
use sluice_model::{NotificationConfig, NotificationKind, Timestamp, Weight};
use sluice_rollout::{Decision, DecisionKind, Phase};

/// A webhook receiver: answers with `statuses` in turn (then 200), or never
/// answers when `hang`; keeps every JSON body it was sent.
struct Hook {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<Value>>>,
}

impl Hook {
    async fn start(statuses: Vec<u16>, hang: bool) -> Hook {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let state = (received.clone(), Arc::new(Mutex::new(statuses)));
        tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    continue;
                };
                let (received, statuses) = state.clone();
                let service = service_fn(move |request: Request<Incoming>| {
                    let (received, statuses) = (received.clone(), statuses.clone());
                    async move {
                        let body = request.into_body().collect().await.unwrap().to_bytes();
                        let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
                        received.lock().unwrap().push(json);
                        if hang {
                            std::future::pending::<()>().await;
                        }
                        let mut statuses = statuses.lock().unwrap();
                        let status = if statuses.is_empty() {
                            200
                        } else {
                            statuses.remove(0)
                        };
                        let mut response = Response::new(Full::new(Bytes::from_static(b"ok")));
                        *response.status_mut() = StatusCode::from_u16(status).unwrap();
                        Ok::<_, Infallible>(response)
                    }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(socket), service),
                );
            }
        });
        Hook { addr, received }
    }

    fn received(&self) -> Vec<Value> {
        self.received.lock().unwrap().clone()
    }

    fn target(&self, name: &str, kind: NotificationKind) -> NotificationConfig {
        NotificationConfig {
            name: name.to_string(),
            kind,
            url: Some(format!("http://{}/hook", self.addr)),
            url_env: None,
            services: Vec::new(),
            events: Vec::new(),
            timeout: Duration::from_secs(5),
            retries: 3,
        }
    }
}

fn rolled_back() -> Decision {
    let analysis = notify::tests::failed_analysis();
    Decision {
        service: "checkout".to_string(),
        rollout_id: 7,
        seq: 5,
        at: Timestamp::now_system(),
        kind: DecisionKind::RolledBack,
        from: Phase::Progressing,
        to: Phase::RolledBack,
        weight: Weight::ZERO,
        step_index: 2,
        reason: "rolled back: success_rate 91.5% below 99%; 2 failed runs reached threshold 2"
            .to_string(),
        analysis: Some(analysis),
    }
}

async fn wait_for(notifier: &Notifier, target: &str, done: impl Fn(Counts) -> bool) -> Counts {
    common::eventually(Duration::from_secs(20), "notification counters", || {
        let counts = notifier.counts(target).unwrap();
        std::future::ready(done(counts).then_some(counts))
    })
    .await
}

#[tokio::test]
async fn a_rollback_reaches_slack_with_the_failing_check_and_its_numbers() {
    let hook = Hook::start(Vec::new(), false).await;
    let notifier = Notifier::new(
        &[hook.target("team-slack", NotificationKind::Slack)],
        &|_| None,
    );
    notifier.notify(Notice::Decision(rolled_back()));
    let counts = wait_for(&notifier, "team-slack", |c| c.sent == 1).await;
    assert_eq!((counts.failed, counts.dropped), (0, 0));
    let [body] = &hook.received()[..] else {
        panic!("one payload expected: {:?}", hook.received());
    };
    let text = body["text"].as_str().unwrap();
    assert!(text.contains("checkout: rolled back (rollout 7)"), "{text}");
    assert!(text.contains("success_rate 91.5% below 99%"), "{text}");
    let blocks = body["blocks"].as_array().unwrap();
    assert!(blocks.len() >= 2, "{body}");
    for block in blocks {
        assert_eq!(
            (&block["type"], &block["text"]["type"]),
            (&json!("section"), &json!("mrkdwn"))
        );
    }
    let shown: String = blocks
        .iter()
        .map(|b| b["text"]["text"].as_str().unwrap())
        .collect();
    assert!(
        shown.contains("*Failing checks:*\n• *success_rate*: 91.5 percent, bound 99%"),
        "{shown}"
    );
}

#[tokio::test]
async fn a_generic_webhook_gets_decisions_and_breaker_transitions() {
    let hook = Hook::start(Vec::new(), false).await;
    let notifier = Notifier::new(&[hook.target("audit", NotificationKind::Webhook)], &|_| {
        None
    });
    notifier.notify(Notice::Decision(rolled_back()));
    wait_for(&notifier, "audit", |c| c.sent == 1).await;
    notifier.notify(Notice::Breaker {
        breaker: "checkout/canary".to_string(),
        service: "checkout".to_string(),
        version: "canary".to_string(),
        from: "closed".to_string(),
        to: "open".to_string(),
        reason: "5 upstream failures in a row".to_string(),
        at: Timestamp::now_system(),
    });
    wait_for(&notifier, "audit", |c| c.sent == 2).await;
    let received = hook.received();
    let decision = &received[0];
    assert_eq!(decision["event"], "rolled_back");
    assert_eq!(
        (&decision["service"], &decision["rollout_id"]),
        (&json!("checkout"), &json!(7))
    );
    assert_eq!(
        (&decision["phase"], &decision["step"]),
        (&json!("RolledBack"), &json!(2))
    );
    assert_eq!(decision["weight"], 0.0);
    assert!(decision["at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        decision["checks"][0],
        json!({"name": "success_rate", "verdict": "fail", "value": 91.5, "bound": 99.0, "unit": "percent"})
    );
    let breaker = &received[1];
    assert_eq!(breaker["event"], "breaker_opened");
    assert_eq!(
        (&breaker["from"], &breaker["to"]),
        (&json!("closed"), &json!("open"))
    );
    assert_eq!(breaker["version"], "canary");
}

#[tokio::test]
async fn two_server_errors_then_success_take_exactly_three_attempts() {
    let hook = Hook::start(vec![500, 500], false).await;
    let notifier = Notifier::new(&[hook.target("flaky", NotificationKind::Webhook)], &|_| {
        None
    });
    let started = Instant::now();
    notifier.notify(Notice::Decision(rolled_back()));
    let counts = wait_for(&notifier, "flaky", |c| c.sent + c.failed > 0).await;
    assert_eq!(
        counts,
        Counts {
            sent: 1,
            failed: 0,
            dropped: 0
        }
    );
    assert_eq!(hook.received().len(), 3);
    // Backoff 200ms then 400ms between the attempts.
    assert!(started.elapsed() >= Duration::from_millis(600));
    let mut metrics = String::new();
    notifier.render(&mut metrics);
    assert!(metrics.contains("sluice_notifications_total{target=\"flaky\",result=\"sent\"} 1"));
    common::promtool_check_metrics(&metrics);
}

#[tokio::test]
async fn a_redirect_is_neither_followed_nor_retried() {
    let hook = Hook::start(vec![307, 307, 307], false).await;
    let mut target = hook.target("moved", NotificationKind::Webhook);
    target.retries = 2;
    let notifier = Notifier::new(&[target], &|_| None);
    notifier.notify(Notice::Decision(rolled_back()));
    let counts = wait_for(&notifier, "moved", |c| c.failed == 1).await;
    assert_eq!((counts.sent, counts.dropped), (0, 0));
    assert_eq!(hook.received().len(), 1);
}

#[tokio::test]
async fn a_target_that_never_answers_is_given_up_on_and_never_blocks() {
    let hook = Hook::start(Vec::new(), true).await;
    let mut target = hook.target("silent", NotificationKind::Slack);
    target.timeout = Duration::from_millis(300);
    target.retries = 2;
    let notifier = Notifier::new(&[target], &|_| None);

    let started = Instant::now();
    notifier.notify(Notice::Decision(rolled_back()));
    let returned = started.elapsed();
    // Queued, not sent: it returns before one attempt could even time out.
    assert!(
        returned < Duration::from_millis(300),
        "notify took {returned:?}"
    );

    let counts = wait_for(&notifier, "silent", |c| c.failed == 1).await;
    assert_eq!((counts.sent, counts.dropped), (0, 0));
    // Three attempts of 300ms each, with 200ms and 400ms of backoff between.
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(hook.received().len(), 3);

    // While the task waits on a silent target, the queue fills and the rest is dropped.
    for _ in 0..300 {
        notifier.notify(Notice::Decision(rolled_back()));
    }
    let dropped = notifier.counts("silent").unwrap().dropped;
    assert!(
        (300 - notify::QUEUE_CAPACITY as u64 - 1..=300 - notify::QUEUE_CAPACITY as u64)
            .contains(&dropped),
        "{dropped}"
    );
}
