//! Envoy-style caps of one version: requests in flight, and upstream
//! connections in use with a bounded queue of requests waiting for one.
//! Excess load is shed at once with a 503 instead of queueing without bound.
//!
//! A "connection in use" is one lent to a request (from send to the end of
//! its response body); idle keep-alive connections are not counted, so the
//! upstream sees at most `max_connections` concurrent requests from this
//! proxy and at most `max_pending` more wait in sluice.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use sluice_model::Limits;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Which cap shed a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Overflow {
    Requests,
    Pending,
}

impl Overflow {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Overflow::Requests => "max_requests",
            Overflow::Pending => "max_pending",
        }
    }
}

pub(crate) struct VersionLimits {
    spec: Limits,
    in_flight: Arc<AtomicU32>,
    connections: Option<Arc<Semaphore>>,
    pending: AtomicU32,
    pub(crate) shed_requests: AtomicU64,
    pub(crate) shed_pending: AtomicU64,
}

/// Held while a request counts against `max_requests` (until its response ends).
pub(crate) struct RequestSlot {
    in_flight: Arc<AtomicU32>,
}

/// Held while a request uses one of `max_connections`.
pub(crate) type ConnectionSlot = OwnedSemaphorePermit;

impl VersionLimits {
    pub(crate) fn new(spec: &Limits) -> VersionLimits {
        VersionLimits {
            spec: spec.clone(),
            in_flight: Arc::new(AtomicU32::new(0)),
            connections: spec
                .max_connections
                .map(|n| Arc::new(Semaphore::new(n as usize))),
            pending: AtomicU32::new(0),
            shed_requests: AtomicU64::new(0),
            shed_pending: AtomicU64::new(0),
        }
    }

    pub(crate) fn spec(&self) -> &Limits {
        &self.spec
    }

    /// A slot under `max_requests`, or the overflow.
    pub(crate) fn enter(&self) -> Result<Option<RequestSlot>, Overflow> {
        let Some(max) = self.spec.max_requests else {
            return Ok(None);
        };
        let before = self.in_flight.fetch_add(1, Relaxed);
        if before >= max {
            self.in_flight.fetch_sub(1, Relaxed);
            self.shed_requests.fetch_add(1, Relaxed);
            return Err(Overflow::Requests);
        }
        Ok(Some(RequestSlot {
            in_flight: self.in_flight.clone(),
        }))
    }

    /// A connection slot under `max_connections`, waiting in the queue of at
    /// most `max_pending` (default 0: no waiting) when all are in use.
    pub(crate) async fn connection(&self) -> Result<Option<ConnectionSlot>, Overflow> {
        let Some(connections) = &self.connections else {
            return Ok(None);
        };
        if let Ok(permit) = connections.clone().try_acquire_owned() {
            return Ok(Some(permit));
        }
        let max_pending = self.spec.max_pending.unwrap_or(0);
        let before = self.pending.fetch_add(1, Relaxed);
        let _leave = PendingGuard(&self.pending);
        if before >= max_pending {
            self.shed_pending.fetch_add(1, Relaxed);
            return Err(Overflow::Pending);
        }
        match connections.clone().acquire_owned().await {
            Ok(permit) => Ok(Some(permit)),
            // Not expected: the semaphore is never closed.
            Err(_closed) => Err(Overflow::Pending),
        }
    }

    pub(crate) fn pending(&self) -> u32 {
        self.pending.load(Relaxed)
    }
}

struct PendingGuard<'a>(&'a AtomicU32);

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

impl Drop for RequestSlot {
    fn drop(&mut self) {
        self.in_flight.fetch_sub(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_beyond_the_cap_are_shed_and_slots_come_back() {
        let limits = VersionLimits::new(&Limits {
            max_requests: Some(2),
            ..Limits::default()
        });
        let a = limits.enter().unwrap();
        let _b = limits.enter().unwrap();
        assert_eq!(limits.enter().err(), Some(Overflow::Requests));
        drop(a);
        assert!(limits.enter().is_ok());
        assert_eq!(limits.shed_requests.load(Relaxed), 1);
    }

    #[tokio::test]
    async fn waiting_for_a_connection_is_bounded() {
        let limits = Arc::new(VersionLimits::new(&Limits {
            max_connections: Some(1),
            max_pending: Some(1),
            ..Limits::default()
        }));
        let held = limits.connection().await.unwrap();
        let waiter = tokio::spawn({
            let limits = limits.clone();
            async move { limits.connection().await.map(|p| p.is_some()) }
        });
        while limits.pending() == 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(limits.connection().await.err(), Some(Overflow::Pending));
        drop(held);
        assert_eq!(waiter.await.unwrap(), Ok(true));
        assert_eq!(limits.pending(), 0);
    }
}
