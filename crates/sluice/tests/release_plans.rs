//! Flag release plans through the real binary: the rollout core's steps
//! drive a flag's percentage (recorded in the flag log and in the rollout's
//! decisions), a Prometheus check templated with the code path's label
//! rolls a bad new implementation back at once, and a gradual rollback walks
//! the percentage down the plan's steps.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::prometheus;
use common::*;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::Response;
use hyper_util::rt::TokioIo;
use serde_json::Value;

const FLAG: &str = r#"{"flags": {"main-builder": {
  "state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off"}}}"#;

fn config(plan: &str, providers: &str) -> String {
    format!(
        "admin: {{ address: 127.0.0.1:0 }}
store: sluice.db
{providers}
flags:
  files: [flags.json]
  release_plans:
    main-builder:
{plan}
"
    )
}

/// The percentages the flag log shows for the flag, in order.
async fn percentages(client: &HttpClient, admin: SocketAddr) -> Vec<f64> {
    let log = admin_json(client, admin, "/api/v1/flags/changes?key=main-builder").await;
    log.as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["after"]["percentage"].as_f64())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_ramps_the_flag_step_by_step_to_full() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("flags.json"), FLAG).unwrap();
    std::fs::write(
        dir.path().join("sluice.yaml"),
        config(
            "      plan: { interval: 300ms, step_weights: [5, 25, 50] }",
            "",
        ),
    )
    .unwrap();
    let sluice = Sluice::start_with(dir.path(), &["run", "-c", "sluice.yaml"], &[]);
    let client = client();
    eventually(Duration::from_secs(20), "the plan to promote", || async {
        let status = admin_json(&client, sluice.admin, "/api/v1/rollouts/flag:main-builder").await;
        (status["phase"] == "Succeeded").then_some(())
    })
    .await;
    assert_eq!(
        percentages(&client, sluice.admin).await,
        [5.0, 25.0, 50.0, 100.0]
    );
    let log = admin_json(
        &client,
        sluice.admin,
        "/api/v1/flags/changes?key=main-builder",
    )
    .await;
    assert_eq!(log[0]["actor"], "release plan flag:main-builder");
    let history = sluice.cli(&["rollout", "history", "flag:main-builder"]);
    assert!(
        String::from_utf8_lossy(&history.stdout).contains("Promoted"),
        "{history:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gradual_rollback_walks_back_down_the_steps() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("flags.json"), FLAG).unwrap();
    std::fs::write(
        dir.path().join("sluice.yaml"),
        config(
            "      rollback: gradual
      plan:
        interval: 200ms
        steps: [ { weight: 10 }, { weight: 30 }, { weight: 60 }, { pause: manual } ]",
            "",
        ),
    )
    .unwrap();
    let sluice = Sluice::start_with(dir.path(), &["run", "-c", "sluice.yaml"], &[]);
    let client = client();
    eventually(
        Duration::from_secs(20),
        "the plan to reach its manual gate",
        || async {
            let status =
                admin_json(&client, sluice.admin, "/api/v1/rollouts/flag:main-builder").await;
            (status["phase"] == "Paused"
                || percentages(&client, sluice.admin).await.last() == Some(&60.0))
            .then_some(())
        },
    )
    .await;
    let output = sluice.cli(&["rollout", "abort", "flag:main-builder"]);
    assert!(output.status.success(), "{output:?}");
    eventually(
        Duration::from_secs(20),
        "the flag to come back to 0%",
        || async { (percentages(&client, sluice.admin).await.last() == Some(&0.0)).then_some(()) },
    )
    .await;
    assert_eq!(
        percentages(&client, sluice.admin).await,
        [10.0, 30.0, 60.0, 30.0, 10.0, 0.0]
    );
}

/// Serves `app_error_percent{implementation=…}` for Prometheus to scrape.
async fn app(new_errors: f64) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let body = format!(
        "# TYPE app_error_percent gauge\n\
         app_error_percent{{implementation=\"old\"}} 0.5\n\
         app_error_percent{{implementation=\"new\"}} {new_errors}\n"
    );
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                let service = service_fn(move |_| {
                    let body = body.clone();
                    async move { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body)))) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prometheus_check_on_the_new_code_path_rolls_the_flag_back() {
    let app = app(9.0).await;
    let prometheus = tokio::task::spawn_blocking(move || prometheus::start(&[("app", app)]))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("flags.json"), FLAG).unwrap();
    std::fs::write(
        dir.path().join("sluice.yaml"),
        config(
            r#"      labels: { canary: new, stable: old }
      plan:
        interval: 1s
        threshold: 1
        step_weights: [5, 10, 25]
        checks:
          - name: new_error_percent
            provider: prometheus
            query: 'max(app_error_percent{implementation="{{variant}}"})'
            max: "stable * 2""#,
            &format!(
                "providers: {{ prometheus: {{ address: {} }} }}",
                prometheus.url()
            ),
        ),
    )
    .unwrap();
    let sluice = Sluice::start_with(dir.path(), &["run", "-c", "sluice.yaml"], &[]);
    let client = client();
    let status: Value = eventually(Duration::from_secs(30), "the plan to roll back", || async {
        let status = admin_json(&client, sluice.admin, "/api/v1/rollouts/flag:main-builder").await;
        (status["phase"] == "RolledBack").then_some(status)
    })
    .await;
    let reasons: Vec<String> = status["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["reason"].as_str().map(str::to_string))
        .collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("new_error_percent 9 is above the maximum stable * 2 = 1")),
        "{reasons:?}"
    );
    assert_eq!(percentages(&client, sluice.admin).await, [5.0, 0.0]);
    let answer = admin_json(&client, sluice.admin, "/api/v1/flags").await;
    assert_eq!(answer[0]["percentage"], 0.0);
    prometheus.stop();
}
