//! Traffic over time for the dashboard's charts: every few seconds, the
//! proxy's cumulative counters of each service's stable and canary version
//! are diffed with the previous reading into one sample (requests, success
//! rate, p50/p95/p99), kept in a bounded ring per service and served as
//! `GET /api/v1/rollouts/{service}/series`.
//!
//! Not for analysis: the controller judges rollouts on its own windows. The
//! samples live in memory only and start empty after a restart.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde::{Deserialize, Serialize};
use sluice_analysis::VersionWindow;
use sluice_proxy::Slot;

use super::{AdminState, Problem};
use crate::controller::Controller;

/// Time between two samples.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(2);
/// Samples kept per service: 12 minutes at one every 2 s.
pub const CAPACITY: usize = 360;

/// One version's traffic between two readings.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct VersionPoint {
    pub requests: u64,
    /// Percent of requests not failed by the upstream; None without requests.
    pub success_rate: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

impl VersionPoint {
    fn from_window(window: &VersionWindow) -> VersionPoint {
        VersionPoint {
            requests: window.requests,
            success_rate: window.success_rate(),
            p50_ms: window.latency_percentile_ms(50.0),
            p95_ms: window.latency_percentile_ms(95.0),
            p99_ms: window.latency_percentile_ms(99.0),
        }
    }
}

/// Both versions of a service over one sampling period, and the canary
/// weight at its end.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Sample {
    /// End of the period, in milliseconds since the Unix epoch.
    pub at: u64,
    /// Canary weight in percent.
    pub weight: f64,
    pub stable: VersionPoint,
    pub canary: VersionPoint,
}

/// The ring of one service, with the readings the next sample is diffed from.
#[derive(Default)]
struct Ring {
    last: Option<(VersionWindow, VersionWindow)>,
    samples: VecDeque<Sample>,
}

impl Ring {
    /// Records the cumulative readings taken at `at`; the first one only
    /// sets the baseline.
    fn observe(&mut self, at: u64, weight: f64, stable: VersionWindow, canary: VersionWindow) {
        if let Some((last_stable, last_canary)) = &self.last {
            if self.samples.len() == CAPACITY {
                self.samples.pop_front();
            }
            self.samples.push_back(Sample {
                at,
                weight,
                stable: VersionPoint::from_window(&stable.since(last_stable)),
                canary: VersionPoint::from_window(&canary.since(last_canary)),
            });
        }
        self.last = Some((stable, canary));
    }
}

/// Every service's ring. Shared by the sampling task and the handler.
#[derive(Default)]
pub struct Series {
    rings: Mutex<HashMap<String, Ring>>,
}

// === impl Series ===

impl Series {
    /// A series fed every [`SAMPLE_EVERY`] by a task that ends when the
    /// series or the controller is dropped (it keeps neither alive).
    /// Outside a tokio runtime nothing samples.
    pub fn start(controller: &Arc<Controller>) -> Arc<Series> {
        let series = Arc::new(Series::default());
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(sample_forever(
                Arc::downgrade(&series),
                Arc::downgrade(controller),
            ));
        }
        series
    }

    /// Reads every service's counters once.
    fn sample(&self, controller: &Controller) {
        let at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let metrics = controller.metrics();
        let mut rings = self.rings.lock().unwrap_or_else(PoisonError::into_inner);
        for state in controller.states() {
            // Flag release plans (`flag:KEY`) send no traffic through the proxy.
            if state.service.starts_with("flag:") {
                continue;
            }
            let stable = metrics.snapshot(&state.service, Slot::Stable);
            let canary = metrics.snapshot(&state.service, Slot::Canary);
            rings.entry(state.service.clone()).or_default().observe(
                at,
                state.canary_weight.percent(),
                stable,
                canary,
            );
        }
    }

    /// The samples of `service` taken after `since` (ms), oldest first.
    fn samples(&self, service: &str, since: u64) -> Vec<Sample> {
        let rings = self.rings.lock().unwrap_or_else(PoisonError::into_inner);
        rings.get(service).map_or_else(Vec::new, |ring| {
            ring.samples
                .iter()
                .filter(|s| s.at > since)
                .cloned()
                .collect()
        })
    }
}

async fn sample_forever(series: Weak<Series>, controller: Weak<Controller>) {
    let mut ticks = tokio::time::interval(SAMPLE_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let (Some(series), Some(controller)) = (series.upgrade(), controller.upgrade()) else {
            return;
        };
        series.sample(&controller);
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SeriesQuery {
    /// Only samples after this time (ms since the Unix epoch).
    since: Option<u64>,
}

#[derive(Serialize)]
struct SeriesBody {
    service: String,
    interval_ms: u64,
    capacity: usize,
    samples: Vec<Sample>,
}

/// `GET /api/v1/rollouts/{service}/series[?since=MS]`.
pub fn routes(series: Arc<Series>) -> Router<AdminState> {
    Router::new()
        .route("/api/v1/rollouts/{service}/series", get(serve))
        .layer(Extension(series))
}

async fn serve(
    State(state): State<AdminState>,
    Extension(series): Extension<Arc<Series>>,
    Path(service): Path<String>,
    query: Result<Query<SeriesQuery>, QueryRejection>,
) -> Result<Json<SeriesBody>, Problem> {
    let Query(query) = query.map_err(|e| Problem::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    if state.controller.state(&service).is_none() {
        return Err(Problem::not_found(&service));
    }
    let samples = series.samples(&service, query.since.unwrap_or(0));
    Ok(Json(SeriesBody {
        service,
        interval_ms: u64::try_from(SAMPLE_EVERY.as_millis()).unwrap_or(2000),
        capacity: CAPACITY,
        samples,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(requests: u64, errors: u64, latency_ms: u64) -> VersionWindow {
        let mut window = VersionWindow {
            requests,
            errors,
            ..VersionWindow::default()
        };
        for _ in 0..requests {
            window.latency.record(latency_ms * 1000);
        }
        window
    }

    #[test]
    fn a_sample_is_the_difference_of_two_readings() {
        let mut ring = Ring::default();
        ring.observe(1, 0.0, window(100, 0, 5), window(0, 0, 0));
        assert!(ring.samples.is_empty(), "the first reading is a baseline");
        let mut stable = window(100, 0, 5);
        stable.requests = 300;
        for _ in 0..200 {
            stable.latency.record(20_000);
        }
        ring.observe(2, 10.0, stable, window(50, 5, 30));
        let sample = &ring.samples[0];
        assert_eq!(sample.weight, 10.0);
        assert_eq!(sample.stable.requests, 200);
        assert_eq!(sample.stable.success_rate, Some(100.0));
        let p50 = sample.stable.p50_ms.unwrap();
        assert!((19.0..=21.5).contains(&p50), "{p50}");
        assert_eq!(sample.canary.requests, 50);
        assert_eq!(sample.canary.success_rate, Some(90.0));
    }

    #[test]
    fn the_ring_keeps_the_newest_samples() {
        let mut ring = Ring::default();
        for at in 0..(CAPACITY as u64 + 10) {
            ring.observe(at, 0.0, window(at, 0, 1), window(0, 0, 0));
        }
        assert_eq!(ring.samples.len(), CAPACITY);
        assert_eq!(ring.samples.back().unwrap().at, CAPACITY as u64 + 9);
        assert_eq!(ring.samples.front().unwrap().at, 10);
        // No traffic: no rate, no percentile (not a 0% or a 0 ms).
        assert_eq!(ring.samples[0].canary.success_rate, None);
        assert_eq!(ring.samples[0].canary.p99_ms, None);
    }
}
