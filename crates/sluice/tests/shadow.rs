//! End to end: the shadow strategy through the real binary. Clients always
//! get stable's answer at stable's speed while a share of their requests is
//! mirrored to the canary; the mismatch rate sluice reports is the one the
//! canary was made to produce; a rollout gated on it rolls back or promotes.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

/// A shadow plan that stays in progress for the whole test (100 runs); a run
/// is judged on at least 50 pairs, so one in four is 25% within a few points.
fn long_plan(extra: &str) -> String {
    format!(
        "      strategy: shadow
      interval: 1s
      iterations: 100
      min_requests: 50
{extra}      checks:
        - metric: mirror_mismatch_rate
          max: 50
"
    )
}

/// The value of the sample `series` (name and labels, exactly) in `text`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn mirror_series(name: &str, label: &str) -> String {
    format!("sluice_mirror_{name}{{service=\"web\"{label}}}")
}

async fn metrics(client: &HttpClient, sluice: &Sluice) -> String {
    eventually(Duration::from_secs(10), "/metrics", || {
        try_metrics(client, sluice.admin)
    })
    .await
}

async fn wait_progressing(client: &HttpClient, sluice: &Sluice) {
    eventually(
        Duration::from_secs(20),
        "the shadow rollout to start",
        || async { (phase(client, sluice.admin).await == "Progressing").then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_that_sleeps_two_seconds_never_slows_the_client() {
    let (v1, v2) = (Upstream::start("v1").await, Upstream::start("v2").await);
    v2.behaviour.delay_ms.store(2000, Ordering::Relaxed);
    let dir = tempfile::tempdir().unwrap();
    let plan = long_plan("      mirror: { max_in_flight: 4 }\n");
    let sluice = Sluice::start(
        dir.path(),
        &service_config(&v1.endpoint(), &v2.endpoint(), &plan),
    );
    let client = client();
    wait_progressing(&client, &sluice).await;

    // A burst of 30 at once: each answered by stable, none waiting for the canary.
    let burst: Vec<_> = (0..30)
        .map(|_| {
            let (client, proxy) = (client.clone(), sluice.proxy);
            tokio::spawn(async move {
                let start = Instant::now();
                let (status, upstream, _) = get(&client, proxy, "/", &[]).await;
                (status, upstream, start.elapsed())
            })
        })
        .collect();
    let mut slowest = Duration::ZERO;
    for request in burst {
        let (status, upstream, took) = request.await.unwrap();
        assert_eq!((status, upstream.as_str()), (200, "v1"));
        slowest = slowest.max(took);
    }
    // A behavioural bound: stable answers at once, the canary takes 2 s.
    assert!(
        slowest < Duration::from_secs(1),
        "slowest client request took {slowest:?}"
    );

    // At most 4 mirrors in flight; the rest were dropped, not queued.
    let text = metrics(&client, &sluice).await;
    let in_flight = sample(&text, &mirror_series("in_flight", "")).unwrap();
    assert!(in_flight <= 4.0, "{in_flight} mirrors in flight\n{text}");
    let dropped = sample(
        &text,
        &mirror_series("dropped_total", ",reason=\"concurrency\""),
    )
    .unwrap();
    assert!(dropped >= 26.0, "{dropped} dropped\n{text}");
    assert!(v2.served.load(Ordering::Relaxed) <= 4);
    promtool_check_metrics(&text);

    // Once the canary answers, the pairs mismatch on latency (2 s against ~0).
    let text = eventually(Duration::from_secs(30), "the mirrors to finish", || async {
        let text = try_metrics(&client, sluice.admin).await?;
        (sample(&text, &mirror_series("in_flight", "")) == Some(0.0)).then_some(text)
    })
    .await;
    let mismatched = |reason: &str| {
        sample(
            &text,
            &mirror_series("mismatches_total", &format!(",reason=\"{reason}\"")),
        )
    };
    assert_eq!(mismatched("latency"), Some(4.0), "{text}");
    assert_eq!(mismatched("status"), Some(0.0), "{text}");
    assert_eq!(
        sample(
            &text,
            &mirror_series("requests_total", ",result=\"mismatch\"")
        ),
        Some(4.0)
    );
    // The canary's own latency is in its counters; stable's are untouched by mirrors.
    assert!(
        text.contains("sluice_request_duration_seconds_bucket{service=\"web\",version=\"canary\",le=\"2.5\"} 4"),
        "{text}"
    );
    assert!(
        text.contains("sluice_requests_total{service=\"web\",version=\"stable\"} 30"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mismatch_rate_is_the_share_the_canary_was_made_to_fail() {
    let (v1, v2) = (Upstream::start("v1").await, Upstream::start("v2").await);
    // One canary answer in four is a 500; stable never fails.
    v2.behaviour.fail_every.store(4, Ordering::Relaxed);
    let dir = tempfile::tempdir().unwrap();
    // Latency is left out: this test is about the status class alone.
    let plan = long_plan("      mirror: { compare: { latency_factor: null } }\n");
    let sluice = Sluice::start(
        dir.path(),
        &service_config(&v1.endpoint(), &v2.endpoint(), &plan),
    );
    let client = client();
    wait_progressing(&client, &sluice).await;

    let stop = Arc::new(AtomicBool::new(false));
    let (counts, tasks) = spawn_load(sluice.proxy, 2, Duration::from_millis(5), stop.clone());
    // An analysis run judged on enough pairs reports about 25%.
    let rate = eventually(
        Duration::from_secs(20),
        "an analysis run with the mismatch rate",
        || async {
            let status = admin_json(&client, sluice.admin, "/api/v1/rollouts/web").await;
            status["last_analysis"]["checks"]
                .as_array()?
                .iter()
                .find(|c| c["name"] == "mirror_mismatch_rate")?["value"]
                .as_f64()
        },
    )
    .await;
    assert!((20.0..=30.0).contains(&rate), "analysis saw {rate}%");
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
    // Clients only ever saw stable's answers.
    assert_eq!(counts.upstream_errors.load(Ordering::Relaxed), 0);
    assert_eq!(counts.failed.load(Ordering::Relaxed), 0);

    let text = eventually(Duration::from_secs(10), "every mirror compared", || async {
        let text = try_metrics(&client, sluice.admin).await?;
        let compared = sample(&text, &mirror_series("requests_total", ",result=\"match\""))?
            + sample(
                &text,
                &mirror_series("requests_total", ",result=\"mismatch\""),
            )?;
        (compared == v2.served.load(Ordering::Relaxed) as f64).then_some(text)
    })
    .await;
    let mismatches = sample(
        &text,
        &mirror_series("requests_total", ",result=\"mismatch\""),
    )
    .unwrap();
    let served = v2.served.load(Ordering::Relaxed) as f64;
    assert!(served >= 40.0, "only {served} mirrors");
    assert_eq!(mismatches, (served / 4.0).floor(), "{text}");
    assert_eq!(
        sample(
            &text,
            &mirror_series("mismatches_total", ",reason=\"status\"")
        ),
        Some(mismatches)
    );
    // The canary's own errors are in its counters, for success_rate checks.
    assert_eq!(
        sample(
            &text,
            "sluice_request_errors_total{service=\"web\",version=\"canary\",kind=\"5xx\"}"
        ),
        Some(mismatches)
    );
    promtool_check_metrics(&text);
}

/// A shadow rollout gated on `mirror_mismatch_rate max: 5`, under load, to
/// its end. Two failed runs roll back, so one run where a busy machine made
/// a few canary answers late (default `latency_factor`) cannot.
async fn gated_rollout(
    canary_fail_every: u64,
) -> (
    Sluice,
    Upstream,
    Upstream,
    serde_json::Value,
    tempfile::TempDir,
) {
    let (v1, v2) = (Upstream::start("v1").await, Upstream::start("v2").await);
    v2.behaviour
        .fail_every
        .store(canary_fail_every, Ordering::Relaxed);
    let dir = tempfile::tempdir().unwrap();
    let plan = "      strategy: shadow
      interval: 500ms
      iterations: 3
      threshold: 2
      min_requests: 5
      checks:
        - metric: mirror_mismatch_rate
          max: 5
";
    let sluice = Sluice::start(
        dir.path(),
        &service_config(&v1.endpoint(), &v2.endpoint(), plan),
    );
    let client = client();
    let stop = Arc::new(AtomicBool::new(false));
    let (_counts, tasks) = spawn_load(sluice.proxy, 2, Duration::from_millis(10), stop.clone());
    let status = eventually(Duration::from_secs(30), "a final phase", || async {
        let status = admin_json(&client, sluice.admin, "/api/v1/rollouts/web").await;
        matches!(
            status["phase"].as_str(),
            Some("Succeeded" | "RolledBack" | "Failed")
        )
        .then_some(status)
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
    (sluice, v1, v2, status, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mismatching_canary_is_rolled_back() {
    let (sluice, _v1, _v2, status, _dir) = gated_rollout(2).await;
    assert_eq!(status["phase"], "RolledBack", "{status}");
    let reason = status["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["reason"].as_str())
        .find(|r| r.contains("mirror_mismatch_rate"))
        .map(str::to_string);
    assert!(
        reason
            .as_deref()
            .is_some_and(|r| r.contains("above the maximum 5%")),
        "{status}"
    );
    // Rolled back: nothing goes to the canary any more, not even mirrors.
    let client = client();
    for _ in 0..10 {
        assert_eq!(get(&client, sluice.proxy, "/", &[]).await.1, "v1");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_matching_canary_is_promoted() {
    let (sluice, _v1, v2, status, _dir) = gated_rollout(0).await;
    assert_eq!(status["phase"], "Succeeded", "{status}");
    assert_eq!(status["steps_taken"], 3, "{status}");
    assert!(v2.served.load(Ordering::Relaxed) >= 15);
    let client = client();
    for _ in 0..10 {
        assert_eq!(get(&client, sluice.proxy, "/", &[]).await.1, "v2");
    }
}

/// A JSON upstream: `{"id":…,"timestamp":…,"meta":{"request_id":…}}`, the
/// last two different on every answer; with `shift`, `/diff` gets another
/// id. Counts the requests that carried `x-sluice-mirror`.
async fn json_upstream(shift: u64) -> (SocketAddr, Arc<AtomicU64>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mirrored = Arc::new(AtomicU64::new(0));
    let seen = mirrored.clone();
    tokio::spawn(async move {
        let answers = Arc::new(AtomicU64::new(0));
        while let Ok((socket, _)) = listener.accept().await {
            let (seen, answers) = (seen.clone(), answers.clone());
            let service = service_fn(move |request: Request<Incoming>| {
                let n = answers.fetch_add(1, Ordering::Relaxed);
                if request
                    .headers()
                    .get("x-sluice-mirror")
                    .is_some_and(|v| v == "1")
                {
                    seen.fetch_add(1, Ordering::Relaxed);
                }
                let id = if request.uri().path() == "/diff" {
                    7 + shift
                } else {
                    7
                };
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos();
                let body = format!(
                    r#"{{"id":{id},"timestamp":{nanos},"meta":{{"request_id":"r-{n}-{shift}","kind":"x"}}}}"#
                );
                async move {
                    Ok::<_, Infallible>(
                        Response::builder()
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from(body)))
                            .unwrap(),
                    )
                }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(socket), service),
            );
        }
    });
    (addr, mirrored)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_bodies_are_compared_without_their_ignored_fields() {
    let (stable, stable_mirrored) = json_upstream(0).await;
    let (canary, canary_mirrored) = json_upstream(1).await;
    let dir = tempfile::tempdir().unwrap();
    let plan = long_plan(
        "      mirror:
        compare:
          body: true
          ignore_fields: [timestamp, meta.request_id]
          latency_factor: null
",
    );
    let sluice = Sluice::start(
        dir.path(),
        &service_config(&stable.to_string(), &canary.to_string(), &plan),
    );
    let client = client();
    wait_progressing(&client, &sluice).await;
    for path in ["/same"; 20].into_iter().chain(["/diff"; 10]) {
        let answer = fetch(&client, sluice.proxy, path, &[]).await;
        assert_eq!(answer.status, 200);
        assert!(answer.body.starts_with(r#"{"id":7,"#), "{}", answer.body);
    }
    let text = eventually(Duration::from_secs(10), "30 pairs compared", || async {
        let text = try_metrics(&client, sluice.admin).await?;
        let matched = sample(&text, &mirror_series("requests_total", ",result=\"match\""))?;
        let mismatched = sample(
            &text,
            &mirror_series("requests_total", ",result=\"mismatch\""),
        )?;
        (matched + mismatched == 30.0).then_some(text)
    })
    .await;
    assert_eq!(
        sample(
            &text,
            &mirror_series("requests_total", ",result=\"mismatch\"")
        ),
        Some(10.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            &mirror_series("mismatches_total", ",reason=\"body\"")
        ),
        Some(10.0),
        "{text}"
    );
    // Every mirror is marked; stable never sees the mark.
    assert_eq!(canary_mirrored.load(Ordering::Relaxed), 30);
    assert_eq!(stable_mirrored.load(Ordering::Relaxed), 0);
}

/// An upstream that answers `ok` and keeps the bodies of mirrored requests.
async fn body_keeper() -> (SocketAddr, Arc<std::sync::Mutex<Vec<Bytes>>>) {
    use http_body_util::BodyExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let bodies = Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = bodies.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let kept = kept.clone();
            let service = service_fn(move |request: Request<Incoming>| {
                let kept = kept.clone();
                async move {
                    let mirrored = request.headers().contains_key("x-sluice-mirror");
                    let body = request.into_body().collect().await.unwrap().to_bytes();
                    if mirrored {
                        kept.lock().unwrap().push(body);
                    }
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(socket), service),
            );
        }
    });
    (addr, bodies)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_bodies_are_mirrored_up_to_the_cap() {
    let (stable, _) = body_keeper().await;
    let (canary, mirrored) = body_keeper().await;
    let dir = tempfile::tempdir().unwrap();
    let plan = long_plan("      mirror: { max_body_bytes: 1024 }\n");
    let sluice = Sluice::start(
        dir.path(),
        &service_config(&stable.to_string(), &canary.to_string(), &plan),
    );
    let client = client();
    wait_progressing(&client, &sluice).await;
    let post = |body: Bytes| {
        let request = Request::post(format!("http://{}/orders", sluice.proxy))
            .body(Full::new(body))
            .unwrap();
        client.request(request)
    };
    let small = Bytes::from_static(br#"{"order":42}"#);
    assert_eq!(post(small.clone()).await.unwrap().status(), 200);
    assert_eq!(
        post(Bytes::from(vec![b'x'; 4096])).await.unwrap().status(),
        200
    );
    let text = eventually(
        Duration::from_secs(10),
        "both requests accounted",
        || async {
            let text = try_metrics(&client, sluice.admin).await?;
            let matched = sample(&text, &mirror_series("requests_total", ",result=\"match\""))?;
            let too_big = sample(
                &text,
                &mirror_series("dropped_total", ",reason=\"body_size\""),
            )?;
            (matched == 1.0 && too_big == 1.0).then_some(text)
        },
    )
    .await;
    assert_eq!(*mirrored.lock().unwrap(), vec![small], "{text}");
}
