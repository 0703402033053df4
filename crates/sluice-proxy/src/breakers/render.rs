//! Breakers as the admin API shows them: listings and Prometheus text
//! (`sluice_circuit_breaker_*`, one series per breaker).

use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use sluice_breaker::State;

use super::cell::{BreakerCell, CellView, STATES};
use super::{BreakerStatus, VersionLimits};
use crate::metrics::escape_label;
use crate::table::Slot;

pub(super) fn status(cell: &BreakerCell) -> BreakerStatus {
    let view = cell.view();
    let now = cell.now();
    status_of(cell, &view, now)
}

fn status_of(cell: &BreakerCell, view: &CellView, now: u64) -> BreakerStatus {
    let snapshot = &view.snapshot;
    BreakerStatus {
        id: cell.id.clone(),
        service: cell.service.clone(),
        version: cell.slot.label().to_string(),
        partition: cell.partition.clone(),
        policy: view.policy_id.clone(),
        state: snapshot.state,
        mode: snapshot.mode,
        disabled: cell.disabled.load(Relaxed),
        failure_rate: snapshot.failure_rate,
        slow_call_rate: snapshot.slow_call_rate,
        window_calls: snapshot.window_calls,
        consecutive_failures: snapshot.consecutive_failures,
        retry_after_ms: snapshot.open_until.map(|until| until.saturating_sub(now)),
        trips_in_a_row: snapshot.trips_in_a_row,
        counters: snapshot.counters,
        fallbacks: cell.fallbacks.load(Relaxed),
    }
}

fn labels(cell: &BreakerCell, policy: &str) -> String {
    let mut labels = format!(
        "breaker=\"{}\",service=\"{}\",version=\"{}\",policy=\"{}\"",
        escape_label(&cell.id),
        escape_label(&cell.service),
        cell.slot.label(),
        escape_label(policy),
    );
    if let Some(partition) = &cell.partition {
        let _ = write!(labels, ",partition=\"{}\"", escape_label(partition));
    }
    labels
}

pub(super) fn prometheus(
    cells: &[Arc<BreakerCell>],
    enabled: bool,
    partition_overflow: u64,
    out: &mut String,
) {
    let views: Vec<(String, CellView)> = cells
        .iter()
        .map(|cell| {
            let view = cell.view();
            (labels(cell, &view.policy_id), view)
        })
        .collect();
    let _ = writeln!(
        out,
        "# HELP sluice_circuit_breakers_enabled Whether circuit breakers act at all (the global switch).\n\
         # TYPE sluice_circuit_breakers_enabled gauge\nsluice_circuit_breakers_enabled {}",
        u8::from(enabled)
    );
    let _ = writeln!(
        out,
        "# HELP sluice_circuit_breaker_partition_overflow_total Requests whose partition had no breaker of its own (max_partitions reached).\n\
         # TYPE sluice_circuit_breaker_partition_overflow_total counter\n\
         sluice_circuit_breaker_partition_overflow_total {partition_overflow}"
    );
    if views.is_empty() {
        return;
    }
    out.push_str(
        "# HELP sluice_circuit_breaker_state Breaker state: 0 closed (or disabled), 1 half-open, 2 open.\n\
         # TYPE sluice_circuit_breaker_state gauge\n",
    );
    for (labels, view) in &views {
        let _ = writeln!(
            out,
            "sluice_circuit_breaker_state{{{labels}}} {}",
            view.snapshot.state.gauge()
        );
    }
    out.push_str(
        "# HELP sluice_circuit_breaker_state_transitions_total Transitions between states.\n\
         # TYPE sluice_circuit_breaker_state_transitions_total counter\n",
    );
    for (labels, view) in &views {
        for (from_index, from) in STATES.iter().enumerate() {
            for (to_index, to) in STATES.iter().enumerate() {
                let count = view.transitions[from_index][to_index];
                if count > 0 {
                    let _ = writeln!(
                        out,
                        "sluice_circuit_breaker_state_transitions_total{{{labels},from=\"{}\",to=\"{}\"}} {count}",
                        from.as_str(),
                        to.as_str()
                    );
                }
            }
        }
    }
    out.push_str(
        "# HELP sluice_circuit_breaker_events_total Calls by what the breaker saw or did.\n\
         # TYPE sluice_circuit_breaker_events_total counter\n",
    );
    for ((labels, view), cell) in views.iter().zip(cells) {
        let c = &view.snapshot.counters;
        for (event, count) in [
            ("success", c.successes),
            ("failure", c.failures),
            ("timeout", c.timeouts),
            ("slow", c.slow),
            ("rejected", c.rejected),
            ("shadow_rejected", c.shadow_rejected),
            ("fallback", cell.fallbacks.load(Relaxed)),
        ] {
            let _ = writeln!(
                out,
                "sluice_circuit_breaker_events_total{{{labels},event=\"{event}\"}} {count}"
            );
        }
    }
    out.push_str(
        "# HELP sluice_circuit_breaker_failure_rate Failure rate over the window, 0 to 1 (absent below minimum_calls).\n\
         # TYPE sluice_circuit_breaker_failure_rate gauge\n",
    );
    for (labels, view) in &views {
        if let Some(rate) = view.snapshot.failure_rate {
            let _ = writeln!(
                out,
                "sluice_circuit_breaker_failure_rate{{{labels}}} {}",
                rate / 100.0
            );
        }
    }
    out.push_str(
        "# HELP sluice_circuit_breaker_open Whether the breaker rejects calls now (open or forced open).\n\
         # TYPE sluice_circuit_breaker_open gauge\n",
    );
    for (labels, view) in &views {
        let open = matches!(view.snapshot.state, State::Open | State::ForcedOpen);
        let _ = writeln!(
            out,
            "sluice_circuit_breaker_open{{{labels}}} {}",
            u8::from(open)
        );
    }
}

/// Requests shed by each version's caps, and the queue for connections.
pub(super) fn limits(limits: &[((String, Slot), Arc<VersionLimits>)], out: &mut String) {
    if limits.is_empty() {
        return;
    }
    out.push_str(
        "# HELP sluice_upstream_overflow_total Requests shed by a version's caps (max_requests, max_pending).\n\
         # TYPE sluice_upstream_overflow_total counter\n",
    );
    for ((service, slot), l) in limits {
        let labels = format!(
            "service=\"{}\",version=\"{}\"",
            escape_label(service),
            slot.label()
        );
        for (limit, count) in [
            ("max_requests", l.shed_requests.load(Relaxed)),
            ("max_pending", l.shed_pending.load(Relaxed)),
        ] {
            let _ = writeln!(
                out,
                "sluice_upstream_overflow_total{{{labels},limit=\"{limit}\"}} {count}"
            );
        }
    }
    out.push_str(
        "# HELP sluice_upstream_pending Requests waiting for an upstream connection under max_connections.\n\
         # TYPE sluice_upstream_pending gauge\n",
    );
    for ((service, slot), l) in limits {
        let _ = writeln!(
            out,
            "sluice_upstream_pending{{service=\"{}\",version=\"{}\"}} {}",
            escape_label(service),
            slot.label(),
            l.pending()
        );
    }
}
