//! Load shedding at the listener (`proxy.limits`): a cap on client
//! connections open at once and one on requests in flight, each taken with
//! one atomic add and given back when its permit drops. Over a cap sluice
//! answers 503 at once and counts it in `sluice_requests_shed_total{reason}`;
//! it never queues, so an overload costs clients a retry, not sluice its
//! memory.
//!
//! Not here: per-version caps (`breakers.policies.*.limits`, module
//! `breakers`), which protect one upstream rather than sluice itself.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

use http::{HeaderValue, Response, StatusCode};

use crate::body::ProxyBody;
use crate::error::X_SLUICE_ERROR;

/// Why a client was shed (the `reason` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShedReason {
    /// `proxy.limits.max_connections` connections were open.
    Connections,
    /// `proxy.limits.max_in_flight` requests were being answered.
    InFlight,
}

impl ShedReason {
    const ALL: [ShedReason; 2] = [ShedReason::Connections, ShedReason::InFlight];

    /// The `reason` label and the `x-sluice-error` value.
    pub fn label(self) -> &'static str {
        match self {
            ShedReason::Connections => "connections",
            ShedReason::InFlight => "in_flight",
        }
    }
}

/// Process-wide counters of the listener's caps, rendered on `/metrics`.
#[derive(Debug, Default)]
pub struct ListenerCounters {
    connections_open: AtomicUsize,
    in_flight: AtomicUsize,
    shed: [AtomicU64; 2],
}

// === impl ListenerCounters ===

impl ListenerCounters {
    /// Clients shed for `reason` since start.
    pub fn shed(&self, reason: ShedReason) -> u64 {
        self.shed[reason as usize].load(Relaxed)
    }

    /// Client connections open now.
    pub fn connections_open(&self) -> usize {
        self.connections_open.load(Relaxed)
    }

    /// Client requests being answered now (all services).
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Relaxed)
    }

    pub(crate) fn count_shed(&self, reason: ShedReason) {
        self.shed[reason as usize].fetch_add(1, Relaxed);
    }

    pub(crate) fn render_prometheus(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP sluice_requests_shed_total Client connections and requests answered 503 because a proxy.limits cap was reached, by reason.\n# TYPE sluice_requests_shed_total counter"
        );
        for reason in ShedReason::ALL {
            let _ = writeln!(
                out,
                "sluice_requests_shed_total{{reason=\"{}\"}} {}",
                reason.label(),
                self.shed(reason)
            );
        }
        let _ = writeln!(
            out,
            "# HELP sluice_client_connections_open Client connections open on the proxy listeners.\n# TYPE sluice_client_connections_open gauge\nsluice_client_connections_open {}",
            self.connections_open()
        );
        let _ = writeln!(
            out,
            "# HELP sluice_client_requests_in_flight Client requests being answered by the proxy (all services), counted against proxy.limits.max_in_flight.\n# TYPE sluice_client_requests_in_flight gauge\nsluice_client_requests_in_flight {}",
            self.in_flight()
        );
    }
}

/// One of the listener's caps: at most `max` permits out at once.
#[derive(Debug, Clone)]
pub(crate) struct Gate {
    counters: Arc<crate::Metrics>,
    reason: ShedReason,
    max: usize,
}

/// A place under a [`Gate`], given back when dropped.
#[derive(Debug)]
pub(crate) struct Permit {
    counters: Arc<crate::Metrics>,
    reason: ShedReason,
}

// === impl Gate ===

impl Gate {
    pub(crate) fn new(counters: Arc<crate::Metrics>, reason: ShedReason, max: u32) -> Gate {
        Gate {
            counters,
            reason,
            max: usize::try_from(max).unwrap_or(usize::MAX),
        }
    }

    /// A permit, or `None` (counted as shed) when `max` are out.
    pub(crate) fn enter(&self) -> Option<Permit> {
        let listener = self.counters.listener();
        let held = gauge(listener, self.reason);
        if held.fetch_add(1, Relaxed) >= self.max {
            held.fetch_sub(1, Relaxed);
            listener.count_shed(self.reason);
            return None;
        }
        Some(Permit {
            counters: self.counters.clone(),
            reason: self.reason,
        })
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        gauge(self.counters.listener(), self.reason).fetch_sub(1, Relaxed);
    }
}

fn gauge(counters: &ListenerCounters, reason: ShedReason) -> &AtomicUsize {
    match reason {
        ShedReason::Connections => &counters.connections_open,
        ShedReason::InFlight => &counters.in_flight,
    }
}

/// The 503 a shed request gets: retry in a second, elsewhere or later.
pub(crate) fn shed_response(reason: ShedReason) -> Response<ProxyBody> {
    let mut response = Response::new(ProxyBody::text(shed_text(reason)));
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    let headers = response.headers_mut();
    headers.insert(X_SLUICE_ERROR, HeaderValue::from_static(reason.label()));
    headers.insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn shed_text(reason: ShedReason) -> &'static str {
    match reason {
        ShedReason::Connections => {
            "sluice: too many client connections (proxy.limits.max_connections); retry later\n"
        }
        ShedReason::InFlight => {
            "sluice: too many requests in flight (proxy.limits.max_in_flight); retry later\n"
        }
    }
}

/// The bytes written on a connection shed before HTTP is spoken on it (a
/// plaintext listener only: TLS connections over the cap are just closed).
pub(crate) fn shed_connection_bytes() -> Vec<u8> {
    let text = shed_text(ShedReason::Connections);
    format!(
        "HTTP/1.1 503 Service Unavailable\r\nx-sluice-error: connections\r\nretry-after: 1\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
        text.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gate_sheds_over_its_max_and_counts_it() {
        let metrics = crate::Metrics::new();
        let gate = Gate::new(metrics.clone(), ShedReason::InFlight, 2);
        let first = gate.enter().expect("first fits");
        let second = gate.enter().expect("second fits");
        assert!(gate.enter().is_none(), "third is over the cap");
        assert_eq!(metrics.listener().in_flight(), 2);
        assert_eq!(metrics.listener().shed(ShedReason::InFlight), 1);
        drop(first);
        let third = gate.enter().expect("a place was given back");
        drop((second, third));
        assert_eq!(metrics.listener().in_flight(), 0);
        assert_eq!(metrics.listener().shed(ShedReason::Connections), 0);
    }

    #[test]
    fn the_raw_503_is_a_complete_response() {
        let bytes = String::from_utf8(shed_connection_bytes()).unwrap();
        let (head, body) = bytes.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 503 "));
        assert!(head.contains(&format!("content-length: {}", body.len())));
    }
}
