//! A real Prometheus server for integration tests: Debian's
//! `/usr/bin/prometheus` on a free loopback port, scraping the given targets
//! every second, stopped by PID (SIGTERM, then SIGKILL) on drop. Every wait is
//! bounded. Missing binary is a test failure, never a skip.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BINARY: &str = "/usr/bin/prometheus";
const READY_WITHIN: Duration = Duration::from_secs(30);
const STOP_WITHIN: Duration = Duration::from_secs(5);
/// A port found free may be taken before Prometheus binds it.
const START_ATTEMPTS: usize = 3;

/// A running Prometheus; its data lives in a temp dir removed after it stops.
pub struct PrometheusServer {
    pub addr: SocketAddr,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

/// Starts Prometheus scraping `targets` (`job_name`, `host:port` serving
/// `/metrics`) every second; returns once it is ready and every job's first
/// scrape succeeded (`up{job=…} == 1`).
///
/// Blocks the calling thread: when the targets are served by the test's own
/// tokio runtime, call it from `spawn_blocking` (or a multi-thread runtime),
/// or the scrapes it waits for can never be answered.
pub fn start(targets: &[(&str, SocketAddr)]) -> PrometheusServer {
    assert!(
        Path::new(BINARY).exists(),
        "{BINARY} is missing: install Debian's `prometheus` package \
         (apt-get install prometheus; scripts/test.sh does it in CI) — this test is not skipped"
    );
    let mut last_log = String::new();
    for _ in 0..START_ATTEMPTS {
        let dir = tempfile::tempdir().expect("temp dir for prometheus");
        std::fs::write(dir.path().join("prometheus.yml"), config(targets))
            .expect("write prometheus.yml");
        let addr = free_port();
        let log = std::fs::File::create(dir.path().join("prometheus.log"))
            .expect("create prometheus.log");
        let child = Command::new(BINARY)
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=warn")
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|error| panic!("start {BINARY}: {error}"));
        let mut server = PrometheusServer {
            addr,
            child: Some(child),
            dir,
        };
        match server.wait_ready(targets) {
            Ok(()) => return server,
            Err(Exited) => last_log = server.log(),
        }
    }
    panic!("prometheus exited at start {START_ATTEMPTS} times; last log:\n{last_log}");
}

/// Prometheus exited before it was ready (most likely its port was taken).
struct Exited;

impl PrometheusServer {
    /// `http://127.0.0.1:PORT`, the provider's `address`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Prometheus' own output so far (it logs at `warn` and above).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// Runs an instant query; the parsed JSON answer (any status).
    pub fn query_json(&self, promql: &str) -> Option<serde_json::Value> {
        let (_, body) = http_get(
            self.addr,
            &format!("/api/v1/query?query={}", encode(promql)),
        )?;
        serde_json::from_slice(&body).ok()
    }

    /// SIGTERM, then SIGKILL if it has not exited within a bound.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + STOP_WITHIN;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    fn wait_ready(&mut self, targets: &[(&str, SocketAddr)]) -> Result<(), Exited> {
        let deadline = Instant::now() + READY_WITHIN;
        let mut pending: Vec<&str> = targets.iter().map(|(job, _)| *job).collect();
        let mut ready = false;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(_)) = child.try_wait() {
                    self.child = None;
                    return Err(Exited);
                }
            }
            if !ready {
                ready = matches!(http_get(self.addr, "/-/ready"), Some((200, _)));
            }
            if ready {
                pending.retain(|job| !self.scraped(job));
                if pending.is_empty() {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                let log = self.log();
                self.shutdown();
                panic!(
                    "prometheus at {} not ready within {READY_WITHIN:?} (ready: {ready}, jobs not yet scraped: {pending:?}); log:\n{log}",
                    self.addr
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Whether `up{job=…}` is 1 for every target of the job.
    fn scraped(&self, job: &str) -> bool {
        let Some(answer) = self.query_json(&format!("up{{job={job:?}}}")) else {
            return false;
        };
        let result = &answer["data"]["result"];
        result.as_array().is_some_and(|samples| {
            !samples.is_empty() && samples.iter().all(|sample| sample["value"][1] == "1")
        })
    }
}

impl Drop for PrometheusServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn config(targets: &[(&str, SocketAddr)]) -> String {
    let mut yaml = String::from(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\nscrape_configs:\n",
    );
    for (job, addr) in targets {
        yaml.push_str(&format!(
            "  - job_name: {job:?}\n    metrics_path: /metrics\n    static_configs:\n      - targets: [\"{addr}\"]\n"
        ));
    }
    yaml
}

fn free_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr")
}

/// A bounded HTTP/1.0 GET: `(status, body)`, or `None` on any failure.
fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, Vec<u8>)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream
        .set_write_timeout(Some(Duration::from_secs(5)))
        .ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).ok()?;
    let split = response.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&response[..split]).ok()?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, response[split + 4..].to_vec()))
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|byte| {
            if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
                (byte as char).to_string()
            } else {
                format!("%{byte:02X}")
            }
        })
        .collect()
}
