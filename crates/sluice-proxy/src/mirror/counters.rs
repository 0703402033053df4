//! What mirroring did per service: pairs compared (matching or not, and why
//! not), mirrors dropped (and why), mirrors in flight. Atomics, kept across
//! routing snapshots like the version counters; rendered for Prometheus.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

use super::compare::Mismatch;

/// Why a mismatching pair mismatched (the `reason` label).
pub(crate) const MISMATCH_REASONS: [&str; 4] = ["status", "latency", "body", "headers"];

/// Why a mirror was not compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dropped {
    /// `max_in_flight` mirrors were already in flight.
    Concurrency,
    /// The request body was over `max_body_bytes`.
    BodySize,
    /// No pair to compare: stable gave no answer, the client's body failed,
    /// or no canary endpoint was usable.
    Error,
}

impl Dropped {
    const ALL: [Dropped; 3] = [Dropped::Concurrency, Dropped::BodySize, Dropped::Error];

    fn label(self) -> &'static str {
        match self {
            Dropped::Concurrency => "concurrency",
            Dropped::BodySize => "body_size",
            Dropped::Error => "error",
        }
    }
}

/// One service's mirror counters.
#[derive(Default)]
pub(crate) struct MirrorCounters {
    in_flight: AtomicUsize,
    matched: AtomicU64,
    mismatched: AtomicU64,
    reasons: [AtomicU64; 4],
    dropped: [AtomicU64; 3],
}

/// A place under the in-flight cap, given back when dropped.
pub(crate) struct MirrorSlot(Arc<MirrorCounters>);

// === impl MirrorCounters ===

impl MirrorCounters {
    /// A place for one more mirror, or None (counted) when `max` are in flight.
    pub(crate) fn enter(self: &Arc<Self>, max: usize) -> Option<MirrorSlot> {
        if self.in_flight.fetch_add(1, Relaxed) >= max {
            self.in_flight.fetch_sub(1, Relaxed);
            self.drop_one(Dropped::Concurrency);
            return None;
        }
        Some(MirrorSlot(self.clone()))
    }

    pub(crate) fn drop_one(&self, why: Dropped) {
        self.dropped[why as usize].fetch_add(1, Relaxed);
    }

    pub(crate) fn record(&self, mismatch: Mismatch) {
        if !mismatch.any() {
            self.matched.fetch_add(1, Relaxed);
            return;
        }
        self.mismatched.fetch_add(1, Relaxed);
        let why = [
            mismatch.status,
            mismatch.latency,
            mismatch.body,
            mismatch.headers,
        ];
        for (counter, hit) in self.reasons.iter().zip(why) {
            if hit {
                counter.fetch_add(1, Relaxed);
            }
        }
    }

    /// Pairs compared and, of those, mismatching (cumulative).
    pub(crate) fn compared(&self) -> (u64, u64) {
        let mismatched = self.mismatched.load(Relaxed);
        (self.matched.load(Relaxed) + mismatched, mismatched)
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Relaxed)
    }
}

impl Drop for MirrorSlot {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Relaxed);
    }
}

/// The mirror metrics of every service with counters, appended to `out`.
/// `labels` is each service's `service="…"` label.
pub(crate) fn render(out: &mut String, services: &[(String, Arc<MirrorCounters>)]) {
    let header = |out: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    };
    header(
        out,
        "sluice_mirror_requests_total",
        "counter",
        "Mirrored requests whose canary answer was compared with stable's, by result (match, mismatch).",
    );
    for (l, c) in services {
        let _ = writeln!(
            out,
            "sluice_mirror_requests_total{{{l},result=\"match\"}} {}\n\
             sluice_mirror_requests_total{{{l},result=\"mismatch\"}} {}",
            c.matched.load(Relaxed),
            c.mismatched.load(Relaxed)
        );
    }
    header(
        out,
        "sluice_mirror_mismatches_total",
        "counter",
        "Mismatching mirrored pairs by reason (a pair may have several).",
    );
    for (l, c) in services {
        for (reason, count) in MISMATCH_REASONS.iter().zip(&c.reasons) {
            let _ = writeln!(
                out,
                "sluice_mirror_mismatches_total{{{l},reason=\"{reason}\"}} {}",
                count.load(Relaxed)
            );
        }
    }
    header(
        out,
        "sluice_mirror_dropped_total",
        "counter",
        "Mirrors not sent or not compared, by reason (concurrency, body_size, error).",
    );
    for (l, c) in services {
        for why in Dropped::ALL {
            let _ = writeln!(
                out,
                "sluice_mirror_dropped_total{{{l},reason=\"{}\"}} {}",
                why.label(),
                c.dropped[why as usize].load(Relaxed)
            );
        }
    }
    header(
        out,
        "sluice_mirror_in_flight",
        "gauge",
        "Mirrored requests in flight (waiting for the canary or for stable's answer to compare).",
    );
    for (l, c) in services {
        let _ = writeln!(out, "sluice_mirror_in_flight{{{l}}} {}", c.in_flight());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_drops_and_counts_instead_of_queueing() {
        let counters = Arc::new(MirrorCounters::default());
        let first = counters.enter(2).unwrap();
        let _second = counters.enter(2).unwrap();
        assert!(counters.enter(2).is_none());
        assert_eq!(counters.in_flight(), 2);
        drop(first);
        assert!(counters.enter(2).is_some());
        assert_eq!(counters.in_flight(), 1);
        counters.record(Mismatch::default());
        counters.record(Mismatch {
            status: true,
            latency: true,
            ..Mismatch::default()
        });
        assert_eq!(counters.compared(), (2, 1));
        let mut out = String::new();
        render(&mut out, &[("service=\"web\"".to_string(), counters)]);
        for line in [
            "sluice_mirror_requests_total{service=\"web\",result=\"match\"} 1",
            "sluice_mirror_requests_total{service=\"web\",result=\"mismatch\"} 1",
            "sluice_mirror_mismatches_total{service=\"web\",reason=\"latency\"} 1",
            "sluice_mirror_mismatches_total{service=\"web\",reason=\"body\"} 0",
            "sluice_mirror_dropped_total{service=\"web\",reason=\"concurrency\"} 1",
            "sluice_mirror_in_flight{service=\"web\"} 1",
        ] {
            assert!(out.lines().any(|l| l == line), "missing {line:?} in\n{out}");
        }
    }
}
