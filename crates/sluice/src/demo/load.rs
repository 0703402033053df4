//! Demo load for `sluice demo`: GET requests at a steady rate through the
//! proxy, from a thousand rotating users (`x-user: user-0..user-999`) so that
//! sticky routing has keys, counted by outcome.
//!
//! Not for: benchmarks (use `scripts/bench-proxy.sh` with wrk). The rate is
//! an upper bound: with `concurrency` requests in flight at most, it is also
//! limited to about `concurrency / latency`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, HOST};
use http::{Request, Uri};
use http_body_util::{BodyExt as _, Empty};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

/// Distinct users the load rotates through.
const USERS: usize = 1_000;
/// A request that takes longer than this counts as a transport error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

type HttpClient = Client<HttpConnector, Empty<Bytes>>;

/// Running load; it stops when dropped or on `stop`.
#[derive(Debug)]
pub struct LoadHandle {
    counters: Arc<Counters>,
    workers: Vec<JoinHandle<()>>,
}

/// Requests so far, by outcome.
// Read by whoever displays progress; a caller that only starts and stops load
// leaves it unused.
#[allow(dead_code)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoadCounts {
    /// Requests started.
    pub sent: u64,
    /// Answered 2xx.
    pub ok: u64,
    /// Answered 5xx (from the upstream or the proxy).
    pub failed_5xx: u64,
    /// No answer: connection refused or reset, or no answer within 5 s.
    pub transport_errors: u64,
}

#[derive(Debug, Default)]
struct Counters {
    sent: AtomicU64,
    ok: AtomicU64,
    failed_5xx: AtomicU64,
    transport_errors: AtomicU64,
}

/// Starts sending about `rate_per_sec` GETs per second to `http://target/`
/// (with `Host: demo.local`) from `concurrency` tasks, each pacing its own
/// share. Must be called inside a tokio runtime.
pub fn spawn_load(
    target: std::net::SocketAddr,
    rate_per_sec: u32,
    concurrency: usize,
) -> LoadHandle {
    let counters = Arc::new(Counters::default());
    let concurrency = concurrency.max(1);
    if rate_per_sec == 0 {
        return LoadHandle {
            counters,
            workers: Vec::new(),
        };
    }
    let mut client = Client::builder(TokioExecutor::new());
    client.pool_max_idle_per_host(concurrency);
    let client: HttpClient = client.build_http();
    let uri: Uri = match format!("http://{target}/").parse() {
        Ok(uri) => uri,
        Err(_) => unreachable!("a socket address always makes a valid URI"),
    };
    let users: Arc<[HeaderValue]> = (0..USERS)
        .map(|i| {
            HeaderValue::from_str(&format!("user-{i}")).unwrap_or(HeaderValue::from_static("user"))
        })
        .collect();
    let next_user = Arc::new(AtomicU64::new(0));

    // Each worker ticks every `concurrency / rate` seconds; their starts are
    // staggered by `1 / rate` so that together they tick evenly.
    let spacing = Duration::from_secs_f64(1.0 / f64::from(rate_per_sec));
    let period = spacing * concurrency as u32;
    let start = Instant::now();
    let workers = (0..concurrency)
        .map(|index| {
            let worker = Worker {
                client: client.clone(),
                uri: uri.clone(),
                users: Arc::clone(&users),
                next_user: Arc::clone(&next_user),
                counters: Arc::clone(&counters),
            };
            let first_tick = start + spacing * index as u32;
            tokio::spawn(worker.run(first_tick, period))
        })
        .collect();
    LoadHandle { counters, workers }
}

// === impl LoadHandle ===

impl LoadHandle {
    /// The counts so far (each counter read atomically, not all at one instant).
    #[allow(dead_code)]
    pub fn counts(&self) -> LoadCounts {
        LoadCounts {
            sent: self.counters.sent.load(Ordering::Relaxed),
            ok: self.counters.ok.load(Ordering::Relaxed),
            failed_5xx: self.counters.failed_5xx.load(Ordering::Relaxed),
            transport_errors: self.counters.transport_errors.load(Ordering::Relaxed),
        }
    }

    /// Stops sending; requests in flight are abandoned (also done on drop).
    pub fn stop(&self) {
        for worker in &self.workers {
            worker.abort();
        }
    }
}

impl Drop for LoadHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

// === impl Worker ===

struct Worker {
    client: HttpClient,
    uri: Uri,
    users: Arc<[HeaderValue]>,
    next_user: Arc<AtomicU64>,
    counters: Arc<Counters>,
}

impl Worker {
    async fn run(self, first_tick: Instant, period: Duration) {
        let mut ticks = tokio::time::interval_at(first_tick, period);
        // After a slow answer, go on at the normal pace instead of bursting.
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            self.send_one().await;
        }
    }

    async fn send_one(&self) {
        let user = self.next_user.fetch_add(1, Ordering::Relaxed) as usize % self.users.len();
        let request = Request::get(self.uri.clone())
            .header(HOST, HeaderValue::from_static("demo.local"))
            .header("x-user", self.users[user].clone())
            .body(Empty::new());
        let Ok(request) = request else {
            self.counters
                .transport_errors
                .fetch_add(1, Ordering::Relaxed);
            return;
        };
        self.counters.sent.fetch_add(1, Ordering::Relaxed);
        let exchange = async {
            let response = self.client.request(request).await.ok()?;
            let status = response.status();
            // Read the body to the end so the connection goes back to the pool.
            response.into_body().collect().await.ok()?;
            Some(status)
        };
        let counter = match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
            Ok(Some(status)) if status.is_success() => &self.counters.ok,
            Ok(Some(status)) if status.is_server_error() => &self.counters.failed_5xx,
            // 1xx/3xx/4xx: counted as sent only.
            Ok(Some(_)) => return,
            Ok(None) | Err(_) => &self.counters.transport_errors,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::super::upstream::{spawn_upstream, Behaviour};
    use super::*;

    #[tokio::test]
    async fn paces_requests_and_counts_outcomes() -> anyhow::Result<()> {
        let behaviour = Behaviour {
            base_latency: Duration::from_millis(1),
            ..Behaviour::healthy()
        };
        let upstream = spawn_upstream("v1", behaviour).await?;
        let load = spawn_load(upstream.addr, 200, 4);
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        load.stop();
        let counts = load.counts();
        // About 200 in one second; wide bounds, a test never asserts on speed.
        assert!((50..=260).contains(&counts.sent), "{counts:?}");
        assert!(counts.ok + 4 >= counts.sent, "{counts:?}");
        assert_eq!(counts.failed_5xx, 0, "{counts:?}");
        Ok(())
    }

    #[tokio::test]
    async fn counts_transport_errors_when_nothing_listens() -> anyhow::Result<()> {
        let addr = {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            listener.local_addr()?
        };
        let load = spawn_load(addr, 100, 2);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let counts = load.counts();
        load.stop();
        assert!(counts.transport_errors > 0, "{counts:?}");
        assert_eq!(counts.ok, 0, "{counts:?}");
        Ok(())
    }
}
