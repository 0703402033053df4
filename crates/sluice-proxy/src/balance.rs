//! Picking an endpoint inside one version's pool: round-robin (one atomic
//! counter) or least-request (per-endpoint in-flight counters; the minimum of
//! all for small pools, else the better of two random choices — Mitzenmacher,
//! "The Power of Two Choices in Randomized Load Balancing", 2001).
//!
//! Not here: health checking or outlier ejection (breakers do that).

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

use http::uri::Authority;
use http::HeaderValue;
use sluice_model::Balance;

use crate::pool::IdleConnections;
use crate::rng;
use crate::upstream_tls::TlsClient;

/// Pools up to this size are scanned whole for least-request.
const SCAN_ALL_MAX: usize = 8;

/// One upstream endpoint, shared by every table (and service) that uses its address.
#[derive(Debug)]
pub(crate) struct EndpointState {
    /// `host:port` as configured, `https://host:port` for TLS (used in error messages).
    pub(crate) address: String,
    /// `host:port`, parsed once for connecting and the upstream request URI.
    pub(crate) authority: Authority,
    /// The `Host` sent when the client gave none: the host, and the port
    /// unless it is the scheme's default (80, or 443 over TLS).
    pub(crate) host: HeaderValue,
    /// How to speak TLS to an `https://` endpoint; None for plain HTTP.
    pub(crate) tls: Option<TlsClient>,
    /// Keep-alive connections to this endpoint waiting for a request.
    pub(crate) idle: IdleConnections,
    in_flight: AtomicUsize,
}

// === impl EndpointState ===

impl EndpointState {
    /// A plain HTTP endpoint; None when `address` is not a valid `host:port` authority.
    pub(crate) fn new(address: &str) -> Option<EndpointState> {
        EndpointState::with_tls(address, None)
    }

    /// An endpoint at `authority` (`host:port`), over TLS with `tls`; None
    /// when `authority` is not valid.
    pub(crate) fn with_tls(authority: &str, tls: Option<TlsClient>) -> Option<EndpointState> {
        let address = match tls {
            Some(_) => format!("{}{authority}", sluice_model::upstream_tls::HTTPS_SCHEME),
            None => authority.to_string(),
        };
        let authority: Authority = authority.parse().ok()?;
        // An upstream needs an explicit port.
        let port = authority.port_u16()?;
        let default_port = if tls.is_some() { 443 } else { 80 };
        let host = if port == default_port {
            HeaderValue::from_str(authority.host()).ok()?
        } else {
            HeaderValue::from_str(&format!("{}:{port}", authority.host())).ok()?
        };
        Some(EndpointState {
            address,
            authority,
            host,
            tls,
            idle: IdleConnections::default(),
            in_flight: AtomicUsize::new(0),
        })
    }

    pub(crate) fn enter(&self) {
        self.in_flight.fetch_add(1, Relaxed);
    }

    pub(crate) fn leave(&self) {
        self.in_flight.fetch_sub(1, Relaxed);
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Relaxed)
    }
}

/// The endpoints of one version and how to pick among them.
#[derive(Debug)]
pub(crate) struct Pool {
    endpoints: Box<[Arc<EndpointState>]>,
    balance: Balance,
    next: AtomicUsize,
}

// === impl Pool ===

impl Pool {
    pub(crate) fn new(endpoints: Vec<Arc<EndpointState>>, balance: Balance) -> Pool {
        Pool {
            endpoints: endpoints.into_boxed_slice(),
            balance,
            next: AtomicUsize::new(0),
        }
    }

    #[cfg(test)]
    pub(crate) fn endpoints(&self) -> &[Arc<EndpointState>] {
        &self.endpoints
    }

    /// The endpoint for the next request; None for an empty pool.
    pub(crate) fn pick(&self) -> Option<&Arc<EndpointState>> {
        let len = self.endpoints.len();
        match len {
            0 => None,
            1 => self.endpoints.first(),
            _ => match self.balance {
                Balance::RoundRobin => self.endpoints.get(self.rotate() % len),
                Balance::LeastRequest if len <= SCAN_ALL_MAX => self.least_of_all(),
                Balance::LeastRequest => self.best_of_two(),
            },
        }
    }

    fn rotate(&self) -> usize {
        self.next.fetch_add(1, Relaxed)
    }

    /// The minimum in-flight endpoint, scanning from a rotating start so that ties rotate.
    fn least_of_all(&self) -> Option<&Arc<EndpointState>> {
        let len = self.endpoints.len();
        let start = self.rotate() % len;
        (0..len)
            .map(|i| &self.endpoints[(start + i) % len])
            .min_by_key(|e| e.in_flight())
    }

    fn best_of_two(&self) -> Option<&Arc<EndpointState>> {
        let len = self.endpoints.len() as u32;
        let a = rng::below(len);
        // A second index different from the first.
        let b = (a + 1 + rng::below(len - 1)) % len;
        let (a, b) = (&self.endpoints[a as usize], &self.endpoints[b as usize]);
        Some(if b.in_flight() < a.in_flight() { b } else { a })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(n: usize, balance: Balance) -> Pool {
        let endpoints = (0..n)
            .map(|i| Arc::new(EndpointState::new(&format!("10.0.0.{i}:80")).unwrap()))
            .collect();
        Pool::new(endpoints, balance)
    }

    #[test]
    fn round_robin_visits_each_in_turn() {
        let p = pool(3, Balance::RoundRobin);
        let picks: Vec<_> = (0..6).map(|_| p.pick().unwrap().address.clone()).collect();
        assert_eq!(picks[0..3], picks[3..6]);
        assert_ne!(picks[0], picks[1]);
        assert_ne!(picks[1], picks[2]);
    }

    #[test]
    fn least_request_avoids_busy_endpoints() {
        for n in [3, 20] {
            let p = pool(n, Balance::LeastRequest);
            // All but the last are busy.
            for e in &p.endpoints()[..n - 1] {
                e.enter();
            }
            let idle = &p.endpoints()[n - 1].address;
            let hits = (0..200)
                .filter(|_| &p.pick().unwrap().address == idle)
                .count();
            if n <= SCAN_ALL_MAX {
                assert_eq!(hits, 200);
            } else {
                // Two random choices include the idle one about 2/n of the time.
                assert!(hits > 5, "idle endpoint picked {hits} times");
            }
        }
    }

    #[test]
    fn invalid_addresses_are_rejected() {
        assert!(EndpointState::new("127.0.0.1:8080").is_some());
        assert!(EndpointState::new("[::1]:8080").is_some());
        assert!(EndpointState::new("no-port").is_none());
        assert!(EndpointState::new("a b:80").is_none());
        assert_eq!(
            pool(0, Balance::RoundRobin)
                .pick()
                .map(|e| e.address.clone()),
            None
        );
    }
}
