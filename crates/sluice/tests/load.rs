//! `sluice load`: the real binary against real upstreams. `load run` once,
//! and `load serve` driven by Flagger-style webhook calls. Counts are checked
//! for consistency, never for speed: rates get loose bounds.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{binary, client, eventually, get, HttpClient, Upstream};
use http_body_util::{BodyExt, Full};
use hyper::Request;
use serde_json::{json, Value};

/// Runs `sluice ARGS` to its end (bounded); returns the exit code and stdout.
fn run_bounded(args: &[&str], limit: Duration) -> (Option<i32>, String) {
    let mut child = Command::new(binary())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start sluice");
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut stdout = String::new();
            std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();
            return (status.code(), stdout);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("sluice {args:?} did not end within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_run_reports_counts_that_add_up() {
    let upstream = Upstream::start("v1").await;
    upstream.behaviour.fail_every.store(4, Ordering::Relaxed);
    let url = format!("http://{}/", upstream.addr);
    let (code, stdout) = tokio::task::spawn_blocking(move || {
        let args = [
            "load",
            "run",
            &url,
            "--rate",
            "40/s",
            "--duration",
            "2s",
            "-o",
            "json",
        ];
        run_bounded(&args, Duration::from_secs(30))
    })
    .await
    .unwrap();
    assert_eq!(code, Some(0), "{stdout}");
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    let count = |field: &str| report[field].as_u64().unwrap_or_else(|| panic!("{field}"));
    let (requests, ok, non_2xx, errors) = (
        count("requests"),
        count("ok"),
        count("non_2xx"),
        count("transport_errors"),
    );
    assert_eq!(ok + non_2xx + errors, requests, "{report}");
    // 40/s for 2 s is 80 at most; a busy machine may send fewer.
    assert!((10..=82).contains(&requests), "{report}");
    // Every answer the upstream gave was counted; one in four was a 500.
    let served = upstream.served.load(Ordering::Relaxed);
    assert!(
        served >= requests - errors && served <= requests,
        "{report}"
    );
    assert!(
        non_2xx.abs_diff(served / 4) <= errors,
        "{report} served {served}"
    );
    assert!(report["p50_ms"].as_f64().is_some(), "{report}");
    assert!(report["p99_ms"].as_f64() >= report["p50_ms"].as_f64());
}

#[test]
fn load_run_refuses_a_bad_rate() {
    let (code, _) = run_bounded(
        &["load", "run", "http://127.0.0.1:9/", "--rate", "fast"],
        Duration::from_secs(30),
    );
    assert_eq!(code, Some(2));
}

/// `sluice load serve` on port 0, killed by PID on drop.
struct LoadServer {
    child: Child,
    addr: SocketAddr,
}

impl LoadServer {
    fn start() -> LoadServer {
        let mut child = Command::new(binary())
            .args(["load", "serve", "--listen", "127.0.0.1:0"])
            .env("SLUICE_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start sluice");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("{line}");
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = rx.recv_timeout(left) else {
                let _ = child.kill();
                let _ = child.wait();
                panic!("sluice load serve did not start");
            };
            if let Some(rest) = line.strip_prefix("sluice: load server listening on http://") {
                let addr = rest.trim().parse().unwrap();
                return LoadServer { child, addr };
            }
        }
    }

    async fn post(&self, client: &HttpClient, path: &str, body: &Value) -> (u16, Value) {
        let request = Request::post(format!("http://{}{path}", self.addr))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap();
        let response = tokio::time::timeout(Duration::from_secs(20), client.request(request))
            .await
            .expect("webhook call timed out")
            .expect("webhook call failed");
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    async fn status(&self, client: &HttpClient) -> Value {
        let (status, _, body) = get(client, self.addr, "/status", &[]).await;
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    /// The last result for `url`, once its load has ended (bounded wait).
    async fn wait_for_result(&self, client: &HttpClient, url: &str) -> Value {
        eventually(Duration::from_secs(30), "the load to end", || async {
            let status = self.status(client).await;
            let last = status["last"][url].clone();
            (!last.is_null()).then_some(last)
        })
        .await
    }
}

impl Drop for LoadServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn webhook(url: &str, metadata: Value) -> Value {
    let mut metadata = metadata;
    metadata["url"] = json!(url);
    json!({"name": "podinfo", "namespace": "test", "phase": "Progressing", "metadata": metadata})
}

#[tokio::test]
async fn serve_runs_a_webhook_load_with_its_headers() {
    let upstream = Upstream::start("v1").await;
    // Every request with `x-tenant: canary` is answered 500: a load that
    // gets nothing but 500s proves each request carried the header.
    *upstream.behaviour.fail_tenant.lock().unwrap() = Some("canary".to_string());
    let server = LoadServer::start();
    let client = client();
    let (status, _, body) = get(&client, server.addr, "/healthz", &[]).await;
    assert_eq!((status, body.trim()), (200, "ok"));

    let url = format!("http://{}/", upstream.addr);
    let metadata = json!({"rate": "20", "duration": "1s", "concurrency": "2",
                          "headers": "x-tenant: canary\nx-user: someone"});
    let (status, answer) = server.post(&client, "/", &webhook(&url, metadata)).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["status"], "started", "{answer}");

    let last = server.wait_for_result(&client, &url).await;
    let summary = &last["summary"];
    let requests = summary["requests"].as_u64().unwrap();
    assert!(requests > 0, "{last}");
    assert_eq!(summary["non_2xx"].as_u64(), Some(requests), "{last}");
    assert_eq!(last["name"], "podinfo");
    assert!(upstream.served.load(Ordering::Relaxed) >= requests);
    let status = server.status(&client).await;
    assert_eq!(status["running"], json!([]), "{status}");
}

#[tokio::test]
async fn serve_refuses_a_bad_rate_naming_the_field() {
    let server = LoadServer::start();
    let client = client();
    let body = webhook("http://127.0.0.1:9/", json!({"rate": "lots"}));
    let (status, answer) = server.post(&client, "/load", &body).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["errors"][0]["field"], "metadata.rate", "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("metadata.rate"),
        "{answer}"
    );
    let (status, answer) = server.post(&client, "/", &json!({"metadata": {}})).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["errors"][0]["field"], "metadata.url", "{answer}");
}

#[tokio::test]
async fn serve_does_not_double_a_load_already_running() {
    let upstream = Upstream::start("v1").await;
    let server = LoadServer::start();
    let client = client();
    let url = format!("http://{}/", upstream.addr);
    let call = webhook(&url, json!({"rate": 20, "duration": "2s"}));
    let (status, first) = server.post(&client, "/", &call).await;
    assert_eq!((status, first["status"].as_str()), (202, Some("started")));
    let (status, second) = server.post(&client, "/", &call).await;
    assert_eq!(
        (status, second["status"].as_str()),
        (202, Some("already running"))
    );
    let running = server.status(&client).await["running"].clone();
    assert_eq!(running.as_array().map(Vec::len), Some(1), "{running}");

    let last = server.wait_for_result(&client, &url).await;
    // One load of 20/s for 2 s sends 40 at most; two would send about 80.
    let served = upstream.served.load(Ordering::Relaxed);
    assert!(served <= 40, "served {served}: {last}");
    assert_eq!(last["summary"]["requests"].as_u64(), Some(served), "{last}");
}

#[tokio::test]
async fn serve_bounds_the_loads_running_at_once() {
    let server = LoadServer::start();
    let client = client();
    // Nothing listens on port 9: each load only counts transport errors.
    for index in 0..8 {
        let call = webhook(
            &format!("http://127.0.0.1:9/{index}"),
            json!({"rate": "1", "duration": "30s"}),
        );
        let (status, answer) = server.post(&client, "/", &call).await;
        assert_eq!(status, 202, "{answer}");
    }
    let call = webhook("http://127.0.0.1:9/8", json!({"rate": "1"}));
    let (status, answer) = server.post(&client, "/", &call).await;
    assert_eq!(status, 429, "{answer}");
}
