//! Demo upstreams for `sluice demo`: tiny HTTP/1.1 servers on loopback that
//! answer `{"version":"v1"}` with a chosen latency and error rate, so a
//! rollout has a healthy stable and a good or bad canary to judge.
//!
//! Not for: benchmarks (the latency is a sleep and the errors are random).

use std::cell::Cell;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

/// How a demo upstream answers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Behaviour {
    /// Share of requests answered 500, from 0 (none) to 1 (all).
    pub error_rate: f64,
    /// Added to every answer on top of `base_latency` (a slow version).
    pub extra_latency: Duration,
    /// Typical time to answer; each answer varies by up to ±25% of it,
    /// at least ±1 ms and at most ±3 ms. Zero answers at once.
    pub base_latency: Duration,
}

impl Behaviour {
    /// No errors, a few milliseconds per answer.
    pub fn healthy() -> Behaviour {
        Behaviour {
            error_rate: 0.0,
            extra_latency: Duration::ZERO,
            base_latency: Duration::from_millis(5),
        }
    }
}

impl Default for Behaviour {
    fn default() -> Behaviour {
        Behaviour::healthy()
    }
}

/// A running demo upstream; it stops when dropped or shut down.
#[derive(Debug)]
pub struct DemoUpstream {
    /// Where it listens (127.0.0.1, a free port).
    pub addr: SocketAddr,
    /// Owns every connection task: aborting it ends them all.
    server: JoinHandle<()>,
}

/// Starts a demo upstream answering as `name` on 127.0.0.1 (a free port).
pub async fn spawn_upstream(
    name: &'static str,
    behaviour: Behaviour,
) -> anyhow::Result<DemoUpstream> {
    anyhow::ensure!(
        (0.0..=1.0).contains(&behaviour.error_rate),
        "demo upstream {name}: error rate {} is not between 0 and 1",
        behaviour.error_rate
    );
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .with_context(|| format!("demo upstream {name}: cannot listen on 127.0.0.1"))?;
    let addr = listener
        .local_addr()
        .with_context(|| format!("demo upstream {name}: no local address"))?;
    let answers = Arc::new(Answers::new(name, behaviour));
    let server = tokio::spawn(serve(listener, answers));
    tracing::debug!(%addr, version = name, ?behaviour, "demo upstream listening");
    Ok(DemoUpstream { addr, server })
}

// === impl DemoUpstream ===

impl DemoUpstream {
    /// Stops accepting and closes every connection (also done on drop).
    // Dropping does the same; the demo may never call this.
    #[allow(dead_code)]
    pub fn shutdown(self) {
        drop(self);
    }
}

impl Drop for DemoUpstream {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn serve(listener: TcpListener, answers: Arc<Answers>) {
    let mut connections = JoinSet::new();
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: wait instead of spinning.
                tracing::warn!(version = answers.name, "demo upstream accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        // Reap finished connections so the set does not grow without bound.
        while connections.try_join_next().is_some() {}
        let answers = Arc::clone(&answers);
        connections.spawn(async move {
            let service = service_fn(move |request| {
                let answers = Arc::clone(&answers);
                async move { Ok::<_, Infallible>(answers.answer(request).await) }
            });
            // A client that goes away mid-request is normal for a demo.
            let _ = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// The prepared bodies and the behaviour of one upstream.
struct Answers {
    name: &'static str,
    behaviour: Behaviour,
    ok_body: Bytes,
    error_body: Bytes,
}

impl Answers {
    fn new(name: &'static str, behaviour: Behaviour) -> Answers {
        Answers {
            name,
            behaviour,
            ok_body: Bytes::from(format!("{{\"version\":\"{name}\"}}\n")),
            error_body: Bytes::from(format!(
                "{{\"version\":\"{name}\",\"error\":\"injected failure\"}}\n"
            )),
        }
    }

    async fn answer(&self, _request: Request<Incoming>) -> Response<Full<Bytes>> {
        let delay = self.delay();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let failed = random_unit() < self.behaviour.error_rate;
        let (status, body) = if failed {
            (StatusCode::INTERNAL_SERVER_ERROR, self.error_body.clone())
        } else {
            (StatusCode::OK, self.ok_body.clone())
        };
        let mut response = Response::new(Full::new(body));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/json"),
        );
        headers.insert(
            "x-demo-version",
            header::HeaderValue::from_static(self.name),
        );
        response
    }

    /// `base_latency` with jitter, plus `extra_latency`.
    fn delay(&self) -> Duration {
        let base = self.behaviour.base_latency;
        let jittered = if base.is_zero() {
            Duration::ZERO
        } else {
            let amplitude = (base / 4).clamp(Duration::from_millis(1), Duration::from_millis(3));
            let offset = amplitude.mul_f64(random_unit());
            if random_unit() < 0.5 {
                base.saturating_sub(offset)
            } else {
                base + offset
            }
        };
        jittered + self.behaviour.extra_latency
    }
}

/// A number in [0, 1) from a per-thread xorshift64* generator; demo-grade
/// randomness without a crate (Vigna, "An experimental exploration of
/// Marsaglia's xorshift generators, scrambled", 2016).
fn random_unit() -> f64 {
    thread_local! {
        static STATE: Cell<u64> = Cell::new(seed());
    }
    STATE.with(|state| {
        let mut x = state.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        state.set(x);
        let bits = x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11;
        bits as f64 / (1u64 << 53) as f64
    })
}

/// Distinct per thread: the clock mixed with a process-wide counter (never 0).
fn seed() -> u64 {
    static THREADS: AtomicU64 = AtomicU64::new(1);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let thread = THREADS.fetch_add(1, Ordering::Relaxed);
    (nanos ^ thread.wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::super::load::spawn_load;
    use super::*;

    #[test]
    fn random_unit_is_in_range_and_spread() {
        let samples: Vec<f64> = (0..10_000).map(|_| random_unit()).collect();
        assert!(samples.iter().all(|x| (0.0..1.0).contains(x)));
        let below_third = samples.iter().filter(|x| **x < 0.3).count();
        assert!((2_700..3_300).contains(&below_third), "{below_third}");
    }

    #[tokio::test]
    async fn answers_with_its_version_and_error_rate() -> anyhow::Result<()> {
        let behaviour = Behaviour {
            error_rate: 0.3,
            extra_latency: Duration::ZERO,
            base_latency: Duration::ZERO,
        };
        let upstream = spawn_upstream("v2", behaviour).await?;
        let load = spawn_load(upstream.addr, 4_000, 16);
        let deadline = Instant::now() + Duration::from_secs(20);
        while load.counts().sent < 2_000 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        load.stop();
        let counts = load.counts();
        assert!(counts.sent >= 2_000, "{counts:?}");
        assert_eq!(counts.transport_errors, 0, "{counts:?}");
        let error_share = counts.failed_5xx as f64 / (counts.ok + counts.failed_5xx) as f64;
        assert!(
            (0.25..0.35).contains(&error_share),
            "{error_share} {counts:?}"
        );
        Ok(())
    }

    #[tokio::test]
    async fn adds_extra_latency_and_headers() -> anyhow::Result<()> {
        let behaviour = Behaviour {
            error_rate: 0.0,
            extra_latency: Duration::from_millis(80),
            base_latency: Duration::from_millis(4),
        };
        let upstream = spawn_upstream("v1", behaviour).await?;
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<http_body_util::Empty<Bytes>>();
        let uri: http::Uri = format!("http://{}/", upstream.addr).parse()?;
        for _ in 0..3 {
            let started = Instant::now();
            let response = client.get(uri.clone()).await?;
            let elapsed = started.elapsed();
            assert!(elapsed >= Duration::from_millis(81), "{elapsed:?}");
            assert_eq!(response.status(), StatusCode::OK);
            assert_eq!(response.headers()["x-demo-version"], "v1");
            let body = http_body_util::BodyExt::collect(response.into_body()).await?;
            assert_eq!(&body.to_bytes()[..], b"{\"version\":\"v1\"}\n");
        }
        upstream.shutdown();
        Ok(())
    }

    #[tokio::test]
    async fn refuses_an_error_rate_above_one() {
        let behaviour = Behaviour {
            error_rate: 1.5,
            ..Behaviour::healthy()
        };
        let err = spawn_upstream("v2", behaviour)
            .await
            .expect_err("error rate");
        assert!(err.to_string().contains("1.5"), "{err}");
    }
}
