//! HTTP load at a steady rate, counted by outcome with a latency histogram:
//! the demo's traffic through the proxy (`spawn_load`, a thousand rotating
//! `x-user`s so that sticky routing has keys) and `sluice load` (any URL,
//! method and headers, for a set duration).
//!
//! Not for: benchmarks (use `scripts/bench-proxy.sh` with wrk). The rate is
//! an upper bound: with `concurrency` requests in flight at most, it is also
//! limited to about `concurrency / latency`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, HOST};
use http::{Method, Request, Uri};
use http_body_util::{BodyExt as _, Empty};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

/// Distinct users the demo load rotates through.
const USERS: usize = 1_000;
/// A request that takes longer than this counts as a transport error.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

type HttpClient = Client<HttpConnector, Empty<Bytes>>;

/// What to send, how fast, for how long. Built by the caller from validated
/// input: the rate is positive and finite, the URI is `http://`.
#[derive(Clone, Debug)]
pub struct LoadPlan {
    pub uri: Uri,
    pub method: Method,
    /// Sent with every request (a `host` here is sent as given; the connection goes to `uri`).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Requests per second, all workers together.
    pub rate_per_sec: f64,
    /// Workers, each with at most one request in flight.
    pub concurrency: usize,
    /// Stop starting requests after this long (`None`: until stopped).
    pub duration: Option<Duration>,
    /// Add `x-user: user-N`, rotating through a thousand users.
    pub rotate_users: bool,
}

/// Running load; it stops when dropped, on `stop`, or at the plan's end.
#[derive(Debug)]
pub struct LoadHandle {
    watch: LoadWatch,
    workers: Vec<JoinHandle<()>>,
}

/// A view of a load's counts that outlives its handle (for progress reports).
#[derive(Clone, Debug)]
pub struct LoadWatch {
    counters: Arc<Counters>,
    started: Instant,
}

/// Requests so far, by outcome.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoadCounts {
    /// Requests started (some may still be in flight).
    pub sent: u64,
    /// Requests finished, whatever the outcome: `ok + non_2xx + transport_errors`.
    pub requests: u64,
    /// Answered 2xx.
    pub ok: u64,
    /// Answered with any other status (1xx, 3xx, 4xx, 5xx).
    pub non_2xx: u64,
    /// Answered 5xx (from the upstream or a proxy): part of `non_2xx`.
    pub failed_5xx: u64,
    /// No answer: connection refused or reset, or no answer within 5 s.
    pub transport_errors: u64,
}

/// The outcome of a finished (or stopped) load, as `sluice load` reports it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LoadSummary {
    pub requests: u64,
    pub ok: u64,
    pub non_2xx: u64,
    pub transport_errors: u64,
    /// Wall time from the start to the summary (at the end: to the last answer), in seconds.
    pub elapsed_secs: f64,
    /// `requests / elapsed_secs`.
    pub achieved_rate: f64,
    /// Latency of answered requests (any status), in ms; `None` without any.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

#[derive(Debug, Default)]
struct Counters {
    sent: AtomicU64,
    ok: AtomicU64,
    non_2xx: AtomicU64,
    failed_5xx: AtomicU64,
    transport_errors: AtomicU64,
    latency: LatencyHistogram,
}

/// Starts the demo's load: about `rate_per_sec` GETs per second to
/// `http://target/` (with `Host: demo.local`) from `concurrency` tasks, each
/// pacing its own share, until stopped. Must be called inside a tokio runtime.
pub fn spawn_load(
    target: std::net::SocketAddr,
    rate_per_sec: u32,
    concurrency: usize,
) -> LoadHandle {
    let uri: Uri = match format!("http://{target}/").parse() {
        Ok(uri) => uri,
        Err(_) => unreachable!("a socket address always makes a valid URI"),
    };
    spawn(LoadPlan {
        uri,
        method: Method::GET,
        headers: vec![(HOST, HeaderValue::from_static("demo.local"))],
        rate_per_sec: f64::from(rate_per_sec),
        concurrency,
        duration: None,
        rotate_users: true,
    })
}

/// Starts sending as `plan` says. Must be called inside a tokio runtime.
pub fn spawn(plan: LoadPlan) -> LoadHandle {
    let counters = Arc::new(Counters::default());
    let concurrency = plan.concurrency.max(1);
    let started = Instant::now();
    if !(plan.rate_per_sec.is_finite() && plan.rate_per_sec > 0.0) {
        return LoadHandle {
            watch: LoadWatch { counters, started },
            workers: Vec::new(),
        };
    }
    let mut client = Client::builder(TokioExecutor::new());
    client.pool_max_idle_per_host(concurrency);
    let client: HttpClient = client.build_http();
    let users: Arc<[HeaderValue]> = if plan.rotate_users {
        (0..USERS)
            .map(|i| {
                HeaderValue::from_str(&format!("user-{i}"))
                    .unwrap_or(HeaderValue::from_static("user"))
            })
            .collect()
    } else {
        Arc::from(Vec::new())
    };
    let next_user = Arc::new(AtomicU64::new(0));
    let request = Arc::new(RequestTemplate {
        uri: plan.uri,
        method: plan.method,
        headers: plan.headers,
    });

    // Each worker ticks every `concurrency / rate` seconds; their starts are
    // staggered by `1 / rate` so that together they tick evenly.
    let spacing = Duration::from_secs_f64(1.0 / plan.rate_per_sec);
    let period = spacing * concurrency as u32;
    let deadline = plan.duration.map(|duration| started + duration);
    let workers = (0..concurrency)
        .map(|index| {
            let worker = Worker {
                client: client.clone(),
                request: Arc::clone(&request),
                users: Arc::clone(&users),
                next_user: Arc::clone(&next_user),
                counters: Arc::clone(&counters),
            };
            let first_tick = started + spacing * index as u32;
            tokio::spawn(worker.run(first_tick, period, deadline))
        })
        .collect();
    LoadHandle {
        watch: LoadWatch { counters, started },
        workers,
    }
}

// === impl LoadHandle ===

impl LoadHandle {
    /// The counts so far (each counter read atomically, not all at one instant).
    // The demo only starts and stops its load; `sluice load` reads summaries.
    #[allow(dead_code)]
    pub fn counts(&self) -> LoadCounts {
        self.watch.counts()
    }

    /// A view of the counts that stays valid after the handle is gone.
    pub fn watch(&self) -> LoadWatch {
        self.watch.clone()
    }

    /// Stops sending; requests in flight are abandoned (also done on drop).
    pub fn stop(&self) {
        for worker in &self.workers {
            worker.abort();
        }
    }

    /// Waits for the plan's duration and the answers still in flight (each
    /// bounded by the request timeout), then summarises. A load without a
    /// duration runs until stopped: call `stop` first, or this never returns.
    pub async fn finish(mut self) -> LoadSummary {
        for worker in std::mem::take(&mut self.workers) {
            let _ = worker.await;
        }
        self.watch.summary()
    }
}

// === impl LoadWatch ===

impl LoadWatch {
    /// The counts so far (each counter read atomically, not all at one instant).
    pub fn counts(&self) -> LoadCounts {
        let ok = self.counters.ok.load(Ordering::Relaxed);
        let non_2xx = self.counters.non_2xx.load(Ordering::Relaxed);
        let transport_errors = self.counters.transport_errors.load(Ordering::Relaxed);
        LoadCounts {
            sent: self.counters.sent.load(Ordering::Relaxed),
            requests: ok + non_2xx + transport_errors,
            ok,
            non_2xx,
            failed_5xx: self.counters.failed_5xx.load(Ordering::Relaxed),
            transport_errors,
        }
    }

    /// The outcome so far.
    pub fn summary(&self) -> LoadSummary {
        let counts = self.counts();
        let elapsed_secs = self.started.elapsed().as_secs_f64();
        let achieved_rate = if elapsed_secs > 0.0 {
            counts.requests as f64 / elapsed_secs
        } else {
            0.0
        };
        LoadSummary {
            requests: counts.requests,
            ok: counts.ok,
            non_2xx: counts.non_2xx,
            transport_errors: counts.transport_errors,
            elapsed_secs,
            achieved_rate,
            p50_ms: self.counters.latency.quantile_ms(0.50),
            p99_ms: self.counters.latency.quantile_ms(0.99),
        }
    }
}

impl Drop for LoadHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

// === impl Worker ===

struct RequestTemplate {
    uri: Uri,
    method: Method,
    headers: Vec<(HeaderName, HeaderValue)>,
}

struct Worker {
    client: HttpClient,
    request: Arc<RequestTemplate>,
    users: Arc<[HeaderValue]>,
    next_user: Arc<AtomicU64>,
    counters: Arc<Counters>,
}

impl Worker {
    async fn run(self, first_tick: Instant, period: Duration, deadline: Option<Instant>) {
        let mut ticks = tokio::time::interval_at(first_tick, period);
        // After a slow answer, go on at the normal pace instead of bursting.
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let tick = match deadline {
                // A slow worker's next tick can be far off: end on time.
                Some(deadline) => tokio::select! {
                    tick = ticks.tick() => tick,
                    () = tokio::time::sleep_until(deadline) => return,
                },
                None => ticks.tick().await,
            };
            if deadline.is_some_and(|deadline| tick >= deadline) {
                return;
            }
            self.send_one().await;
        }
    }

    async fn send_one(&self) {
        let template = &self.request;
        let mut request = Request::builder()
            .method(template.method.clone())
            .uri(template.uri.clone());
        for (name, value) in &template.headers {
            request = request.header(name, value);
        }
        if !self.users.is_empty() {
            let user = self.next_user.fetch_add(1, Ordering::Relaxed) as usize % self.users.len();
            request = request.header("x-user", self.users[user].clone());
        }
        let Ok(request) = request.body(Empty::new()) else {
            self.counters
                .transport_errors
                .fetch_add(1, Ordering::Relaxed);
            return;
        };
        self.counters.sent.fetch_add(1, Ordering::Relaxed);
        let sent_at = Instant::now();
        let exchange = async {
            let response = self.client.request(request).await.ok()?;
            let status = response.status();
            // Read the body to the end so the connection goes back to the pool.
            response.into_body().collect().await.ok()?;
            Some(status)
        };
        let counter = match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
            Ok(Some(status)) => {
                self.counters.latency.record(sent_at.elapsed());
                if status.is_success() {
                    &self.counters.ok
                } else {
                    if status.is_server_error() {
                        self.counters.failed_5xx.fetch_add(1, Ordering::Relaxed);
                    }
                    &self.counters.non_2xx
                }
            }
            Ok(None) | Err(_) => &self.counters.transport_errors,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

// === impl LatencyHistogram ===

/// Sub-buckets per power of two of microseconds: about 6% resolution.
const SUB_BUCKETS: u64 = 16;
/// Enough buckets for 2^36 µs (19 hours); longer latencies share the last.
const BUCKETS: usize = 36 * SUB_BUCKETS as usize;

/// Lock-free log-linear latency histogram in microseconds (the layout of
/// HdrHistogram with 4 significant bits): each answer adds one to one
/// atomic, quantiles are read from a snapshot.
#[derive(Debug)]
struct LatencyHistogram {
    buckets: Box<[AtomicU64]>,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl LatencyHistogram {
    fn record(&self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let index = bucket_index(micros).min(BUCKETS - 1);
        self.buckets[index].fetch_add(1, Ordering::Relaxed);
    }

    /// The upper bound of the bucket holding quantile `q`, in ms.
    fn quantile_ms(&self, q: f64) -> Option<f64> {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (index, count) in counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Some(bucket_upper_micros(index) as f64 / 1_000.0);
            }
        }
        None
    }
}

fn bucket_index(micros: u64) -> usize {
    if micros < SUB_BUCKETS {
        return micros as usize;
    }
    let magnitude = 63 - u64::from(micros.leading_zeros()); // >= 4
    let shift = magnitude - 4;
    let sub = (micros >> shift) - SUB_BUCKETS; // 0..16
    ((shift + 1) * SUB_BUCKETS + sub) as usize
}

fn bucket_upper_micros(index: usize) -> u64 {
    let index = index as u64;
    if index < SUB_BUCKETS {
        return index;
    }
    let shift = index / SUB_BUCKETS - 1;
    let sub = index % SUB_BUCKETS;
    ((SUB_BUCKETS + sub + 1) << shift) - 1
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
        assert!((50..=260).contains(&counts.requests), "{counts:?}");
        assert_eq!(counts.ok, counts.requests, "{counts:?}");
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

    #[tokio::test]
    async fn a_plan_with_a_duration_ends_by_itself() -> anyhow::Result<()> {
        let upstream = spawn_upstream("v1", Behaviour::healthy()).await?;
        let load = spawn(LoadPlan {
            uri: format!("http://{}/", upstream.addr).parse()?,
            method: Method::GET,
            headers: Vec::new(),
            rate_per_sec: 100.0,
            concurrency: 2,
            duration: Some(Duration::from_millis(300)),
            rotate_users: false,
        });
        let summary = tokio::time::timeout(Duration::from_secs(10), load.finish()).await?;
        assert!(summary.requests > 0, "{summary:?}");
        assert_eq!(summary.ok, summary.requests, "{summary:?}");
        assert!(summary.p50_ms.is_some() && summary.p50_ms <= summary.p99_ms);
        Ok(())
    }

    #[test]
    fn histogram_buckets_bound_their_values() {
        for micros in [0, 1, 15, 16, 17, 31, 32, 100, 1_000, 12_345, 5_000_000] {
            let index = bucket_index(micros);
            assert!(bucket_upper_micros(index) >= micros, "{micros}");
            // About 6% resolution above 16 µs.
            assert!(bucket_upper_micros(index) as f64 <= micros as f64 * 1.07 + 1.0);
            if index > 0 {
                assert!(bucket_upper_micros(index - 1) < micros, "{micros}");
            }
        }
    }

    #[test]
    fn quantiles_come_from_the_counts() {
        let histogram = LatencyHistogram::default();
        assert_eq!(histogram.quantile_ms(0.5), None);
        for _ in 0..99 {
            histogram.record(Duration::from_millis(1));
        }
        histogram.record(Duration::from_millis(100));
        let p50 = histogram.quantile_ms(0.5).unwrap_or_default();
        let p99 = histogram.quantile_ms(0.99).unwrap_or_default();
        let p100 = histogram.quantile_ms(1.0).unwrap_or_default();
        assert!((1.0..1.07).contains(&p50), "{p50}");
        assert!((1.0..1.07).contains(&p99), "{p99}");
        assert!((100.0..107.0).contains(&p100), "{p100}");
    }
}
