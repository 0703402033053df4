//! The proxy's counters per (service, version): requests, upstream-caused
//! errors by kind, a latency histogram and an in-flight gauge. Recorded with
//! relaxed atomics on the request path (each route holds an `Arc` to its
//! counters, so nothing is looked up by name per request); read as a
//! cumulative [`VersionWindow`] by the controller and as Prometheus text by
//! the admin API.
//!
//! [`Metrics`] outlives routing snapshots: a rebuilt [`crate::RouteTable`]
//! gets the same counters for the same (service, version), so a weight change
//! never resets what the controller diffs.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use sluice_analysis::histogram::{bucket_index, bucket_upper_micros, BUCKETS};
use sluice_analysis::{Histogram, VersionWindow};

use crate::balance::EndpointState;
use crate::breakers::Breakers;
use crate::limits::ListenerCounters;
use crate::mirror::counters::MirrorCounters;
use crate::table::Slot;

/// Why a request failed because of its upstream (the only failures that count
/// against a version). Client-caused and routing failures are not errors here.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The upstream answered with a 5xx status.
    Status5xx,
    /// The upstream could not be connected to (refused, unreachable, connect timeout).
    Connect,
    /// The upstream sent no response head within `upstream_timeout`.
    Timeout,
    /// The upstream closed the connection or sent something that is not HTTP.
    Protocol,
    /// The version's circuit breaker was open: the client got a fallback or a
    /// 503 because this version had been failing (counts against it).
    BreakerOpen,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 5] = [
        ErrorKind::Status5xx,
        ErrorKind::Connect,
        ErrorKind::Timeout,
        ErrorKind::Protocol,
        ErrorKind::BreakerOpen,
    ];

    /// The `kind` label and `x-sluice-error` value.
    pub fn label(self) -> &'static str {
        match self {
            ErrorKind::Status5xx => "5xx",
            ErrorKind::Connect => "connect",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Protocol => "protocol",
            ErrorKind::BreakerOpen => "breaker_open",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The counters of one version of one service.
pub(crate) struct VersionMetrics {
    requests: AtomicU64,
    errors: [AtomicU64; 5],
    /// Time to response head, counted in the shared bucket layout.
    latency: Box<[AtomicU64]>,
    latency_sum_micros: AtomicU64,
    in_flight: AtomicI64,
}

// === impl VersionMetrics ===

impl VersionMetrics {
    fn new() -> VersionMetrics {
        VersionMetrics {
            requests: AtomicU64::new(0),
            errors: Default::default(),
            latency: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            latency_sum_micros: AtomicU64::new(0),
            in_flight: AtomicI64::new(0),
        }
    }

    /// Counts one answered request (by the upstream or by sluice on its behalf).
    pub(crate) fn record(&self, elapsed: Duration, error: Option<ErrorKind>) {
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.requests.fetch_add(1, Relaxed);
        self.latency[bucket_index(micros)].fetch_add(1, Relaxed);
        self.latency_sum_micros.fetch_add(micros, Relaxed);
        if let Some(kind) = error {
            self.errors[kind.index()].fetch_add(1, Relaxed);
        }
    }

    /// Counts a request already recorded (its response head had come) as
    /// failed after all: its upstream's body broke or stalled.
    pub(crate) fn record_body_failure(&self, kind: ErrorKind) {
        self.errors[kind.index()].fetch_add(1, Relaxed);
    }

    pub(crate) fn enter(&self) {
        self.in_flight.fetch_add(1, Relaxed);
    }

    pub(crate) fn leave(&self) {
        self.in_flight.fetch_sub(1, Relaxed);
    }

    fn latency_counts(&self) -> Vec<u64> {
        self.latency.iter().map(|c| c.load(Relaxed)).collect()
    }

    fn window(&self) -> VersionWindow {
        VersionWindow {
            requests: self.requests.load(Relaxed),
            errors: self.errors.iter().map(|c| c.load(Relaxed)).sum(),
            latency: Histogram::from_counts(self.latency_counts()),
            breaker_trips: 0,
            mirror_compared: 0,
            mirror_mismatches: 0,
        }
    }
}

/// The registry of every version's counters, and of endpoint state shared
/// across routing snapshots. One per process; cheap to read, never reset.
pub struct Metrics {
    versions: Mutex<BTreeMap<(String, Slot), Arc<VersionMetrics>>>,
    /// The circuit breakers and caps, which outlive tables like the counters.
    breakers: Breakers,
    /// Endpoint state by address, so least-request in-flight counts survive
    /// table rebuilds. Weak: an endpoint no table uses any more is dropped.
    endpoints: Mutex<HashMap<String, Weak<EndpointState>>>,
    /// The fingerprint of each service's last usable `upstream_tls` files:
    /// its `https://` endpoints stay in service when the files go bad.
    upstream_tls: Mutex<HashMap<String, u64>>,
    /// Mirroring counters by service, created when a service first mirrors.
    mirrors: Mutex<BTreeMap<String, Arc<MirrorCounters>>>,
    /// The `le` bounds exported for request durations (`proxy.latency_buckets`).
    latency_le: ArcSwap<Vec<LeBound>>,
    /// The listener's caps: open connections, requests in flight, shed counts.
    listener: ListenerCounters,
}

/// One exported histogram bound: the `le` label and the same in microseconds.
#[derive(Clone, Debug, PartialEq)]
struct LeBound {
    label: String,
    micros: u64,
}

// === impl Metrics ===

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        Arc::new(Metrics {
            versions: Mutex::new(BTreeMap::new()),
            breakers: Breakers::new(),
            endpoints: Mutex::new(HashMap::new()),
            upstream_tls: Mutex::new(HashMap::new()),
            mirrors: Mutex::new(BTreeMap::new()),
            latency_le: ArcSwap::from_pointee(le_bounds(
                &sluice_model::ProxyConfig::default().latency_buckets,
            )),
            listener: ListenerCounters::default(),
        })
    }

    /// Exports request durations in these buckets (seconds, validated
    /// increasing) from now on. Only the export changes: the counters keep
    /// their fine layout, so nothing recorded is lost.
    pub fn set_latency_buckets(&self, seconds: &[f64]) {
        let bounds = le_bounds(seconds);
        if **self.latency_le.load() != bounds {
            self.latency_le.store(Arc::new(bounds));
        }
    }

    /// The counters of (service, slot), created on first use. Called when a
    /// table is built, never per request.
    pub(crate) fn version(&self, service: &str, slot: Slot) -> Arc<VersionMetrics> {
        let mut versions = self.versions.lock().unwrap_or_else(PoisonError::into_inner);
        versions
            .entry((service.to_string(), slot))
            .or_insert_with(|| Arc::new(VersionMetrics::new()))
            .clone()
    }

    /// The mirroring counters of a service, created on first use. Called
    /// when a table is built, never per request.
    pub(crate) fn mirror(&self, service: &str) -> Arc<MirrorCounters> {
        let mut mirrors = self.mirrors.lock().unwrap_or_else(PoisonError::into_inner);
        mirrors.entry(service.to_string()).or_default().clone()
    }

    /// The state of the endpoint at `address`, shared with any live table.
    /// `make` builds it when no live table has it.
    pub(crate) fn endpoint(
        &self,
        address: &str,
        make: impl FnOnce() -> Option<EndpointState>,
    ) -> Option<Arc<EndpointState>> {
        let mut endpoints = self
            .endpoints
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(live) = endpoints.get(address).and_then(Weak::upgrade) {
            return Some(live);
        }
        endpoints.retain(|_, weak| weak.strong_count() > 0);
        let state = Arc::new(make()?);
        endpoints.insert(address.to_string(), Arc::downgrade(&state));
        Some(state)
    }

    /// The fingerprint of `service`'s last usable `upstream_tls` files.
    pub(crate) fn usable_upstream_tls(&self, service: &str) -> Option<u64> {
        let last = self
            .upstream_tls
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        last.get(service).copied()
    }

    /// Remembers `fingerprint` as `service`'s last usable `upstream_tls` files.
    pub(crate) fn set_usable_upstream_tls(&self, service: &str, fingerprint: u64) {
        let mut last = self
            .upstream_tls
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        last.insert(service.to_string(), fingerprint);
    }

    /// The listener's caps (`proxy.limits`): connections, in flight, shed.
    pub fn listener(&self) -> &ListenerCounters {
        &self.listener
    }

    /// The circuit breakers (per version and partition) and their policies.
    pub fn breakers(&self) -> &Breakers {
        &self.breakers
    }

    /// Cumulative counters of one version since start (zeros if it never had
    /// a route). The controller diffs two of these with `VersionWindow::since`.
    pub fn snapshot(&self, service: &str, slot: Slot) -> VersionWindow {
        let mut window = {
            let versions = self.versions.lock().unwrap_or_else(PoisonError::into_inner);
            versions
                .get(&(service.to_string(), slot))
                .map(|v| v.window())
                .unwrap_or_default()
        };
        window.breaker_trips = self.breakers.trips(service, slot);
        if slot == Slot::Canary {
            let mirrors = self.mirrors.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(counters) = mirrors.get(service) {
                (window.mirror_compared, window.mirror_mismatches) = counters.compared();
            }
        }
        window
    }

    /// Requests of one version currently waiting for or streaming a response.
    pub fn in_flight(&self, service: &str, slot: Slot) -> i64 {
        let versions = self.versions.lock().unwrap_or_else(PoisonError::into_inner);
        versions
            .get(&(service.to_string(), slot))
            .map_or(0, |v| v.in_flight.load(Relaxed))
    }

    /// Prometheus text exposition (format 0.0.4) of all proxy metrics,
    /// appended to `out`.
    pub fn render_prometheus(&self, out: &mut String) {
        let versions: Vec<((String, Slot), Arc<VersionMetrics>)> = {
            let map = self.versions.lock().unwrap_or_else(PoisonError::into_inner);
            map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
        };
        let labels: Vec<String> = versions
            .iter()
            .map(|((service, slot), _)| {
                format!(
                    "service=\"{}\",version=\"{}\"",
                    escape_label(service),
                    slot.label()
                )
            })
            .collect();

        header(
            out,
            "sluice_requests_total",
            "counter",
            "Requests answered per service and version, by the upstream or by sluice on its behalf.",
        );
        for (l, (_, v)) in labels.iter().zip(&versions) {
            let _ = writeln!(
                out,
                "sluice_requests_total{{{l}}} {}",
                v.requests.load(Relaxed)
            );
        }

        header(
            out,
            "sluice_request_errors_total",
            "counter",
            "Upstream-caused failures per service and version: 5xx answers, connect errors, timeouts, protocol errors.",
        );
        for (l, (_, v)) in labels.iter().zip(&versions) {
            for kind in ErrorKind::ALL {
                let count = v.errors[kind.index()].load(Relaxed);
                let _ = writeln!(
                    out,
                    "sluice_request_errors_total{{{l},kind=\"{}\"}} {count}",
                    kind.label()
                );
            }
        }

        header(
            out,
            "sluice_request_duration_seconds",
            "histogram",
            "Time from request arrival to response head, per service and version.",
        );
        let bounds = self.latency_le.load();
        for (l, (_, v)) in labels.iter().zip(&versions) {
            render_histogram(out, l, v, &bounds);
        }

        header(
            out,
            "sluice_requests_in_flight",
            "gauge",
            "Requests waiting for or streaming a response, per service and version.",
        );
        for (l, (_, v)) in labels.iter().zip(&versions) {
            let _ = writeln!(
                out,
                "sluice_requests_in_flight{{{l}}} {}",
                v.in_flight.load(Relaxed).max(0)
            );
        }
        self.listener.render_prometheus(out);
        self.breakers.render_prometheus(out);
        let mirrors: Vec<(String, Arc<MirrorCounters>)> = {
            let map = self.mirrors.lock().unwrap_or_else(PoisonError::into_inner);
            map.iter()
                .map(|(service, c)| (format!("service=\"{}\"", escape_label(service)), c.clone()))
                .collect()
        };
        crate::mirror::counters::render(out, &mirrors);
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// Bounds in seconds as `le` labels (Rust's shortest round-trip text:
/// `0.005`, `1`, `2.5`) and in whole microseconds.
fn le_bounds(seconds: &[f64]) -> Vec<LeBound> {
    seconds
        .iter()
        .map(|&s| LeBound {
            label: format!("{s}"),
            micros: (s * 1e6).round() as u64,
        })
        .collect()
}

/// One histogram's series. A fine bucket counts under `le` only when all of
/// it is at or below `le`, so each exposed bucket is exact or slightly low
/// (never counts a request slower than its bound).
fn render_histogram(out: &mut String, labels: &str, v: &VersionMetrics, bounds: &[LeBound]) {
    let counts = v.latency_counts();
    let total: u64 = counts.iter().sum();
    let mut cumulative = 0u64;
    let mut index = 0usize;
    for LeBound { label: le, micros } in bounds {
        while index < counts.len() && bucket_upper_micros(index) <= *micros {
            cumulative += counts[index];
            index += 1;
        }
        let _ = writeln!(
            out,
            "sluice_request_duration_seconds_bucket{{{labels},le=\"{le}\"}} {cumulative}"
        );
    }
    let _ = writeln!(
        out,
        "sluice_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {total}"
    );
    let sum_seconds = v.latency_sum_micros.load(Relaxed) as f64 / 1e6;
    let _ = writeln!(
        out,
        "sluice_request_duration_seconds_sum{{{labels}}} {sum_seconds}"
    );
    let _ = writeln!(
        out,
        "sluice_request_duration_seconds_count{{{labels}}} {total}"
    );
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A label value as the text format wants it: `\`, `"` and newline escaped.
pub(crate) fn escape_label(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '\n' => escaped.push_str("\\n"),
            c => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_is_cumulative_and_shared_across_lookups() {
        let metrics = Metrics::new();
        let canary = metrics.version("web", Slot::Canary);
        canary.record(Duration::from_millis(3), None);
        canary.record(Duration::from_millis(40), Some(ErrorKind::Timeout));
        // A rebuilt table gets the same counters.
        metrics
            .version("web", Slot::Canary)
            .record(Duration::from_micros(10), Some(ErrorKind::Status5xx));
        let window = metrics.snapshot("web", Slot::Canary);
        assert_eq!(window.requests, 3);
        assert_eq!(window.errors, 2);
        assert_eq!(window.latency.count(), 3);
        assert_eq!(
            metrics.snapshot("web", Slot::Stable),
            VersionWindow::default()
        );
        assert_eq!(
            metrics.snapshot("nope", Slot::Canary),
            VersionWindow::default()
        );
    }

    #[test]
    fn prometheus_text_has_types_buckets_and_escaped_labels() {
        let metrics = Metrics::new();
        let v = metrics.version("we\"b\\x", Slot::Stable);
        v.record(Duration::from_micros(500), None);
        v.record(Duration::from_millis(20), Some(ErrorKind::Connect));
        v.record(Duration::from_secs(20), None);
        let mut out = String::new();
        metrics.render_prometheus(&mut out);
        let l = r#"service="we\"b\\x",version="stable""#;
        for line in [
            "# TYPE sluice_requests_total counter".to_string(),
            "# TYPE sluice_request_duration_seconds histogram".to_string(),
            format!("sluice_requests_total{{{l}}} 3"),
            format!("sluice_request_errors_total{{{l},kind=\"connect\"}} 1"),
            format!("sluice_request_errors_total{{{l},kind=\"5xx\"}} 0"),
            format!("sluice_request_duration_seconds_bucket{{{l},le=\"0.001\"}} 1"),
            format!("sluice_request_duration_seconds_bucket{{{l},le=\"0.01\"}} 1"),
            format!("sluice_request_duration_seconds_bucket{{{l},le=\"0.025\"}} 2"),
            format!("sluice_request_duration_seconds_bucket{{{l},le=\"10\"}} 2"),
            format!("sluice_request_duration_seconds_bucket{{{l},le=\"+Inf\"}} 3"),
            format!("sluice_request_duration_seconds_count{{{l}}} 3"),
            format!("sluice_request_duration_seconds_sum{{{l}}} 20.0205"),
            format!("sluice_requests_in_flight{{{l}}} 0"),
        ] {
            assert!(out.lines().any(|x| x == line), "missing {line:?} in\n{out}");
        }
    }

    #[test]
    fn configured_buckets_are_summed_from_the_fine_histogram() {
        let metrics = Metrics::new();
        let v = metrics.version("web", Slot::Canary);
        for millis in [1, 4, 6, 70, 300] {
            v.record(Duration::from_millis(millis), None);
        }
        metrics.set_latency_buckets(&[0.005, 0.1, 0.25]);
        let mut out = String::new();
        metrics.render_prometheus(&mut out);
        let buckets: Vec<&str> = out
            .lines()
            .filter(|l| l.starts_with("sluice_request_duration_seconds_bucket"))
            .collect();
        let l = r#"service="web",version="canary""#;
        assert_eq!(
            buckets,
            [
                format!("sluice_request_duration_seconds_bucket{{{l},le=\"0.005\"}} 2"),
                format!("sluice_request_duration_seconds_bucket{{{l},le=\"0.1\"}} 4"),
                format!("sluice_request_duration_seconds_bucket{{{l},le=\"0.25\"}} 4"),
                format!("sluice_request_duration_seconds_bucket{{{l},le=\"+Inf\"}} 5"),
            ]
        );
        assert_eq!(
            metrics.snapshot("web", Slot::Canary).latency.count(),
            5,
            "the analysis's histogram is untouched"
        );
    }
}
