//! Test support: real upstream servers on loopback, the real `sluice`
//! binary started on port 0 (killed by PID on drop), an HTTP client, a load
//! loop and `eventually`. Every wait is bounded.
#![allow(dead_code)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;

/// How an upstream answers; changeable while it runs.
#[derive(Default)]
pub struct Behaviour {
    /// Answer 500 to one request in `every` (0: never).
    pub fail_every: AtomicU64,
    /// Delay before answering, in ms.
    pub delay_ms: AtomicU64,
    /// Answer 500 to every request whose `x-tenant` is this one.
    pub fail_tenant: Mutex<Option<String>>,
    /// Answer `/healthz` with 503 (else 200, like any path).
    pub unhealthy: AtomicBool,
}

/// A real HTTP/1.1 server that answers `name` and counts requests.
pub struct Upstream {
    pub addr: SocketAddr,
    pub name: &'static str,
    pub behaviour: Arc<Behaviour>,
    pub served: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Upstream {
    pub async fn start(name: &'static str) -> Upstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        let addr = listener.local_addr().unwrap();
        let behaviour = Arc::new(Behaviour::default());
        let served = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (b, s, st) = (behaviour.clone(), served.clone(), stop.clone());
        tokio::spawn(async move {
            while !st.load(Ordering::Relaxed) {
                let Ok((socket, _)) = listener.accept().await else {
                    continue;
                };
                let (b, s) = (b.clone(), s.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let (b, s) = (b.clone(), s.clone());
                        async move {
                            if req.uri().path() == "/healthz" {
                                // Health probes are not traffic: not counted in `served`.
                                let status = if b.unhealthy.load(Ordering::Relaxed) {
                                    503
                                } else {
                                    200
                                };
                                return Ok::<_, Infallible>(
                                    Response::builder()
                                        .status(status)
                                        .header("x-upstream", name)
                                        .body(Full::new(Bytes::from(name)))
                                        .unwrap(),
                                );
                            }
                            let n = s.fetch_add(1, Ordering::Relaxed) + 1;
                            let delay = b.delay_ms.load(Ordering::Relaxed);
                            if delay > 0 {
                                tokio::time::sleep(Duration::from_millis(delay)).await;
                            }
                            let every = b.fail_every.load(Ordering::Relaxed);
                            let tenant =
                                req.headers().get("x-tenant").and_then(|v| v.to_str().ok());
                            let tenant_fails = tenant.is_some()
                                && b.fail_tenant.lock().unwrap().as_deref() == tenant;
                            let status = if (every > 0 && n % every == 0) || tenant_fails {
                                500
                            } else {
                                200
                            };
                            let user = req
                                .headers()
                                .get("x-user")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("")
                                .to_string();
                            let _ = req.into_body().collect().await;
                            Ok::<_, Infallible>(
                                Response::builder()
                                    .status(status)
                                    .header("x-upstream", name)
                                    .header("x-echo-user", user)
                                    .body(Full::new(Bytes::from(name)))
                                    .unwrap(),
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(socket), service)
                        .await;
                });
            }
        });
        Upstream {
            addr,
            name,
            behaviour,
            served,
            stop,
        }
    }

    pub fn endpoint(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Reads `output` line by line on a thread: every line is kept in the log
/// returned and sent on the receiver (which may be dropped) as it arrives.
pub fn capture_lines(
    output: impl std::io::Read + Send + 'static,
) -> (Arc<Mutex<Vec<String>>>, std::sync::mpsc::Receiver<String>) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let log_writer = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(output).lines().map_while(Result::ok) {
            let _ = tx.send(line.clone());
            log_writer.lock().unwrap().push(line);
        }
    });
    (log, rx)
}

/// The real binary, started with `run -c FILE`.
pub struct Sluice {
    child: Child,
    pub proxy: SocketAddr,
    pub admin: SocketAddr,
    pub dir: PathBuf,
    pub log: Arc<Mutex<Vec<String>>>,
}

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_sluice")
}

impl Sluice {
    /// Writes `config` to `dir/sluice.yaml` and starts sluice on it; waits (bounded) for its listeners.
    pub fn start(dir: &Path, config: &str) -> Sluice {
        std::fs::write(dir.join("sluice.yaml"), config).unwrap();
        Self::start_existing(dir)
    }

    /// Starts on the config already in `dir` (after a crash, say).
    pub fn start_existing(dir: &Path) -> Sluice {
        let config = dir.join("sluice.yaml");
        Self::start_with(dir, &["run", "-c", config.to_str().unwrap()], &[])
    }

    /// Starts `sluice ARGS` in `dir` with extra environment variables; waits
    /// (bounded) for its admin listener (and the proxy's, when it has one).
    pub fn start_with(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Sluice {
        let mut child = Command::new(binary())
            .args(args)
            .current_dir(dir)
            .env("SLUICE_LOG", "info")
            .env_remove("SLUICE_ADMIN_TOKEN")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start sluice");
        let (log, rx) = capture_lines(child.stderr.take().unwrap());
        let (mut proxy, mut admin) = (None, None);
        let deadline = Instant::now() + Duration::from_secs(30);
        // The proxy line comes first when there is one; the admin line last.
        while admin.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match rx.recv_timeout(left) {
                Ok(line) => line,
                Err(_) => {
                    let _ = child.kill();
                    panic!("sluice did not start: {:#?}", log.lock().unwrap());
                }
            };
            // With `--log-format json` the same line is a log object's message.
            let line = match serde_json::from_str::<Value>(&line) {
                Ok(object) => object["message"].as_str().unwrap_or_default().to_string(),
                Err(_) => line,
            };
            if let Some(rest) = line.strip_prefix("sluice: proxy listening on http://") {
                proxy = Some(rest.trim().parse().unwrap());
            }
            let admin_line = line
                .strip_prefix("sluice: admin API on http://")
                .or_else(|| line.strip_prefix("sluice: admin API on https://"));
            if let Some(rest) = admin_line {
                admin = Some(rest.split_whitespace().next().unwrap().parse().unwrap());
            }
        }
        Sluice {
            child,
            // A flag server alone has no proxy listener.
            proxy: proxy.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 9))),
            admin: admin.unwrap(),
            dir: dir.to_path_buf(),
            log,
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    pub fn admin_url(&self) -> String {
        format!("http://{}", self.admin)
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Runs `sluice <args>` against this instance's admin API.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(binary())
            .args(args)
            .env("SLUICE_ADMIN", self.admin_url())
            .env_remove("SLUICE_ADMIN_TOKEN")
            .output()
            .unwrap()
    }
}

impl Drop for Sluice {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// GET with extra headers; returns status, `x-upstream` and body.
/// A response as tests look at it.
pub struct Answer {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: String,
}

/// GET `path` with `headers` (bounded in time).
pub async fn fetch(
    client: &HttpClient,
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> Answer {
    let mut request = Request::get(format!("http://{addr}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = tokio::time::timeout(
        Duration::from_secs(20),
        client.request(request.body(Full::new(Bytes::new())).unwrap()),
    )
    .await
    .expect("request timed out")
    .expect("request failed");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// GET `path`: status, the `x-upstream` that answered, body.
pub async fn get(
    client: &HttpClient,
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String, String) {
    let answer = fetch(client, addr, path, headers).await;
    let upstream = answer
        .headers
        .get("x-upstream")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    (answer.status, upstream, answer.body)
}

/// `/metrics` from the admin API, or None on a transport error (for polling
/// loops, which try again: a keep-alive connection can race its close).
pub async fn try_metrics(client: &HttpClient, admin: SocketAddr) -> Option<String> {
    let request = Request::get(format!("http://{admin}/metrics"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(20), client.request(request))
        .await
        .ok()?
        .ok()?;
    let body = response.into_body().collect().await.ok()?.to_bytes();
    Some(String::from_utf8_lossy(&body).into_owned())
}

/// Waits (bounded) until `/metrics` counts `count` config reloads with `result` (`success`/`failure`).
pub async fn wait_for_reloads(client: &HttpClient, admin: SocketAddr, result: &str, count: u64) {
    let line = format!("sluice_config_reloads_total{{result=\"{result}\"}} {count}\n");
    let what = format!("{count} {result} reload(s)");
    eventually(Duration::from_secs(20), &what, || async {
        try_metrics(client, admin)
            .await?
            .contains(&line)
            .then_some(())
    })
    .await;
}

/// JSON from the admin API.
pub async fn admin_json(client: &HttpClient, admin: SocketAddr, path: &str) -> Value {
    let (status, _, body) = get(client, admin, path, &[]).await;
    assert!(status < 500, "GET {path}: {status} {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {body}"))
}

pub async fn admin_post(
    client: &HttpClient,
    admin: SocketAddr,
    path: &str,
    token: Option<&str>,
) -> (u16, Value) {
    let mut request = Request::post(format!("http://{admin}{path}"));
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let response = client
        .request(request.body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// POSTs a JSON body to the admin listener: status, headers and the JSON answer.
pub async fn post_json(
    client: &HttpClient,
    admin: SocketAddr,
    path: &str,
    body: Value,
    headers: &[(&str, &str)],
) -> (u16, http::HeaderMap, Value) {
    let mut request =
        Request::post(format!("http://{admin}{path}")).header("content-type", "application/json");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = client
        .request(
            request
                .body(Full::new(Bytes::from(body.to_string())))
                .unwrap(),
        )
        .await
        .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        headers,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// Polls `check` every 100 ms until it returns Some, or panics after `limit` with `what`.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Counts of a background load.
#[derive(Default)]
pub struct LoadCounts {
    pub ok: AtomicU64,
    pub upstream_errors: AtomicU64,
    /// Requests that failed at the transport or got a status sluice made up (not the upstream's).
    pub failed: AtomicU64,
    pub failures: Mutex<Vec<String>>,
}

/// Sends requests from `concurrency` loops until `stop`, each with a distinct `x-user`.
pub fn spawn_load(
    addr: SocketAddr,
    concurrency: usize,
    pause: Duration,
    stop: Arc<AtomicBool>,
) -> (Arc<LoadCounts>, Vec<tokio::task::JoinHandle<()>>) {
    let counts = Arc::new(LoadCounts::default());
    let client = client();
    let tasks = (0..concurrency)
        .map(|worker| {
            let (counts, client, stop) = (counts.clone(), client.clone(), stop.clone());
            tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let user = format!("user-{worker}-{}", n % 50);
                    let request = Request::get(format!("http://{addr}/"))
                        .header("x-user", user)
                        .body(Full::new(Bytes::new()))
                        .unwrap();
                    match tokio::time::timeout(Duration::from_secs(20), client.request(request))
                        .await
                    {
                        Ok(Ok(response)) => {
                            let status = response.status().as_u16();
                            let from_upstream = response.headers().contains_key("x-upstream");
                            let _ = response.into_body().collect().await;
                            if status == 200 {
                                counts.ok.fetch_add(1, Ordering::Relaxed);
                            } else if from_upstream {
                                counts.upstream_errors.fetch_add(1, Ordering::Relaxed);
                            } else {
                                counts.failed.fetch_add(1, Ordering::Relaxed);
                                counts
                                    .failures
                                    .lock()
                                    .unwrap()
                                    .push(format!("status {status}"));
                            }
                        }
                        Ok(Err(e)) => {
                            counts.failed.fetch_add(1, Ordering::Relaxed);
                            counts.failures.lock().unwrap().push(e.to_string());
                        }
                        Err(_) => {
                            counts.failed.fetch_add(1, Ordering::Relaxed);
                            counts.failures.lock().unwrap().push("timeout".to_string());
                        }
                    }
                    if !pause.is_zero() {
                        tokio::time::sleep(pause).await;
                    }
                }
            })
        })
        .collect();
    (counts, tasks)
}

/// `promtool check metrics` (Debian's `prometheus` package) must accept the
/// exposition without a single warning.
pub fn promtool_check_metrics(text: &str) {
    use std::io::Write;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is needed (Debian package `prometheus`; scripts/test.sh installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    // promtool exits non-zero on a lint problem; any line it prints is one
    // too (a naming warning, say), and none is allowed.
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success() && said.trim().is_empty(),
        "promtool check metrics: {said}\n{text}"
    );
}

/// A canary service config; `rollout` is the YAML of the rollout block (indented 4 spaces).
pub fn service_config(stable: &str, canary: &str, rollout: &str) -> String {
    format!(
        r#"{CONFIG_HEAD}services:
  - name: web
    versions:
      stable: {{ endpoints: ["{stable}"] }}
      canary: {{ endpoints: ["{canary}"] }}
    routing:
      sticky: {{ header: x-user }}
    rollout:
{rollout}"#
    )
}

/// Upstreams `v1` (stable) and `v2` (canary) and a sluice rolling v2 out
/// with `plan` (the rollout block, indented six spaces); the directory lives
/// as long as it is held.
pub async fn start_web(plan: &str) -> (Upstream, Upstream, Sluice, tempfile::TempDir) {
    let (v1, v2) = (Upstream::start("v1").await, Upstream::start("v2").await);
    let dir = tempfile::tempdir().unwrap();
    let sluice = Sluice::start(
        dir.path(),
        &service_config(&v1.endpoint(), &v2.endpoint(), plan),
    );
    (v1, v2, sluice, dir)
}

/// The phase of the service's rollout from the admin API.
pub async fn phase(client: &HttpClient, admin: SocketAddr) -> String {
    admin_json(client, admin, "/api/v1/rollouts/web").await["phase"]
        .as_str()
        .unwrap_or("")
        .to_string()
}
/// A webhook receiver: answers each path with its configured status (200
/// by default) and body, and records (path, payload) in order.
#[derive(Clone, Default)]
pub struct HookReceiver {
    pub answers: Arc<Mutex<HashMap<String, (u16, String)>>>,
    pub calls: Arc<Mutex<Vec<(String, Value)>>>,
}

impl HookReceiver {
    pub async fn start(&self) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let this = self.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let this = this.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request: Request<Incoming>| {
                        let this = this.clone();
                        async move {
                            let path = request.uri().path().to_string();
                            let body = request.into_body().collect().await.unwrap().to_bytes();
                            let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
                            this.calls.lock().unwrap().push((path.clone(), json));
                            let (status, text) = this
                                .answers
                                .lock()
                                .unwrap()
                                .get(&path)
                                .cloned()
                                .unwrap_or((200, "ok".into()));
                            Ok::<_, Infallible>(
                                Response::builder()
                                    .status(status)
                                    .body(Full::new(bytes::Bytes::from(text)))
                                    .unwrap(),
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        addr
    }

    pub fn answer(&self, path: &str, status: u16, text: &str) {
        self.answers
            .lock()
            .unwrap()
            .insert(path.into(), (status, text.into()));
    }

    pub fn hooks_called(&self) -> Vec<String> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .map(|(_, body)| body["hook"].as_str().unwrap_or("").to_string())
            .collect()
    }
}

mod config;
pub mod prometheus;

pub use config::*;
