//! Zero-downtime restart of the real binary: the listening socket is held
//! outside sluice (as systemd socket activation does) and inherited through
//! `LISTEN_FDS`; a new process starts on it (waiting for the store file the
//! old one still holds), the old one gets SIGTERM and drains, and clients
//! hammering the port all along see no failed request, with no retry.

mod common;

use std::net::{SocketAddr, TcpListener};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{binary, capture_lines, eventually, spawn_load, Upstream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A sluice started on an inherited socket; killed on drop.
struct Inheriting {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl Inheriting {
    /// Starts `sluice run` with `socket` as descriptor 3 and `LISTEN_FDS=1`,
    /// the way systemd starts a socket-activated service: the shell moves the
    /// socket from stdin to 3 and sets `LISTEN_PID` to its own pid, which
    /// `exec` keeps.
    fn start(dir: &Path, socket: &TcpListener) -> Inheriting {
        let socket = OwnedFd::from(socket.try_clone().unwrap());
        let config = dir.join("sluice.yaml");
        let mut child = Command::new("sh")
            .args([
                "-c",
                r#"exec 3<&0 0</dev/null; LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" "$@""#,
                binary(),
                "run",
                "-c",
                config.to_str().unwrap(),
                "--drain-timeout",
                "30s",
            ])
            .current_dir(dir)
            .env("SLUICE_LOG", "info")
            .stdin(Stdio::from(socket))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start sluice");
        let (log, _) = capture_lines(child.stderr.take().unwrap());
        Inheriting { child, log }
    }

    fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    fn serving(&self) -> bool {
        self.log_text().contains("sluice: admin API on")
    }

    fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Inheriting {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// New-connection clients: one `Connection: close` request per connection.
fn spawn_closing_clients(
    addr: SocketAddr,
    count: usize,
    stop: Arc<AtomicBool>,
) -> (Arc<AtomicU64>, Arc<Mutex<Vec<String>>>) {
    let ok = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(Mutex::new(Vec::new()));
    for _ in 0..count {
        let (ok, failures, stop) = (ok.clone(), failures.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let exchange = async {
                    let mut stream = tokio::net::TcpStream::connect(addr).await?;
                    stream
                        .write_all(b"GET / HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n")
                        .await?;
                    let mut answer = Vec::new();
                    stream.read_to_end(&mut answer).await?;
                    std::io::Result::Ok(answer)
                };
                match tokio::time::timeout(Duration::from_secs(60), exchange).await {
                    Ok(Ok(answer)) if answer.starts_with(b"HTTP/1.1 200") => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Ok(answer)) => failures.lock().unwrap().push(format!(
                        "answer {:?}",
                        String::from_utf8_lossy(&answer[..answer.len().min(80)])
                    )),
                    Ok(Err(error)) => failures.lock().unwrap().push(error.to_string()),
                    Err(_) => failures.lock().unwrap().push("no answer in 60 s".into()),
                }
            }
        });
    }
    (ok, failures)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_process_takes_over_the_inherited_socket_without_a_failed_request() {
    let upstream = Upstream::start("v1").await;
    let socket = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("sluice.yaml"),
        format!(
            r#"listeners:
  - address: {addr}
admin:
  address: 127.0.0.1:0
store: sluice.db
services:
  - name: web
    versions:
      stable: {{ endpoints: ["{}"] }}
"#,
            upstream.endpoint()
        ),
    )
    .unwrap();

    let mut old = Inheriting::start(dir.path(), &socket);
    eventually(Duration::from_secs(30), "the old process serving", || {
        let serving = old.serving();
        async move { serving.then_some(()) }
    })
    .await;
    assert!(old
        .log_text()
        .contains("using the inherited listening socket"));

    let stop = Arc::new(AtomicBool::new(false));
    let (keep_alive, _tasks) = spawn_load(addr, 4, Duration::ZERO, stop.clone());
    let (closing_ok, closing_failures) = spawn_closing_clients(addr, 4, stop.clone());
    let served_before = |n: u64| {
        let served = upstream.served.clone();
        move || {
            let done = served.load(Ordering::Relaxed) >= n;
            async move { done.then_some(()) }
        }
    };
    eventually(
        Duration::from_secs(60),
        "traffic through the old process",
        served_before(200),
    )
    .await;

    // The new process starts while the old one serves: it waits for the store file.
    let mut new = Inheriting::start(dir.path(), &socket);
    eventually(
        Duration::from_secs(30),
        "the new process waiting for the store",
        || {
            let waiting = new
                .log_text()
                .contains("the store is in use by another sluice");
            async move { waiting.then_some(()) }
        },
    )
    .await;
    old.terminate();
    eventually(
        Duration::from_secs(60),
        "the old process to drain and exit",
        || {
            let exited = !old.running();
            async move { exited.then_some(()) }
        },
    )
    .await;
    eventually(Duration::from_secs(60), "the new process serving", || {
        let serving = new.serving();
        async move { serving.then_some(()) }
    })
    .await;
    let served = upstream.served.load(Ordering::Relaxed);
    eventually(
        Duration::from_secs(60),
        "traffic through the new process",
        served_before(served + 200),
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(500)).await;

    let keep_alive_failed = keep_alive.failures.lock().unwrap().clone();
    let closing_failed = closing_failures.lock().unwrap().clone();
    assert!(
        keep_alive_failed.is_empty() && closing_failed.is_empty(),
        "failed across the restart: keep-alive {keep_alive_failed:?}, new connections {closing_failed:?}\nold:\n{}\nnew:\n{}",
        old.log_text(),
        new.log_text()
    );
    assert!(keep_alive.ok.load(Ordering::Relaxed) > 0);
    assert!(closing_ok.load(Ordering::Relaxed) > 0);
    assert!(new.running(), "{}", new.log_text());
}
