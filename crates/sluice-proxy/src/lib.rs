//! sluice's data plane: an HTTP reverse proxy (hyper) that matches each
//! request to a service, picks a version (stable or canary) by forced header,
//! sticky hash or weighted draw, balances over that version's endpoints,
//! forwards with streaming bodies, and counts what each version did. While
//! a shadow rollout runs, it also mirrors a share of stable's requests to the
//! canary and compares the answers (module `mirror`), never in the client's way.
//!
//! The request path takes no lock but each endpoint's idle-connection
//! stack's (held for one push or pop): the routing snapshot is read through
//! `arc-swap`, counters are atomics held by the snapshot. The controller
//! builds a new [`RouteTable`] and [`Proxy::publish`]es it; requests in flight
//! finish on the table they started with.
//!
//! Circuit breakers and concurrency caps guard each version (module
//! `breakers`): an uncontended per-breaker mutex around the pure core.
//!
//! Not here: deciding weights (the rollout controller), the admin API
//! (which calls [`Metrics::render_prometheus`]), config parsing (sluice-model).
#![forbid(unsafe_code)]

mod balance;
mod body;
mod breakers;
mod choose;
mod error;
mod forward;
mod headers;
mod limits;
mod metrics;
mod mirror;
mod pool;
mod rng;
mod server;
mod table;
mod tls;
mod upstream_tls;

pub use body::ProxyBody;
pub use breakers::{
    BreakerAction, BreakerError, BreakerStatus, Breakers, PolicyStatus, TransitionRecord,
    X_SLUICE_FALLBACK,
};
pub use choose::sticky_bucket;
pub use error::{ProxyError, Upstream, X_SLUICE_ERROR};
pub use limits::{ListenerCounters, ShedReason};
pub use metrics::{ErrorKind, Metrics};
pub use mirror::X_SLUICE_MIRROR;
pub use server::Proxy;
pub use table::{RouteTable, ServiceRouting, Slot, TenantCohort};
pub use tls::{tls_acceptor, ServerCert, TlsError};
pub use tokio_rustls::TlsAcceptor;
pub use upstream_tls::{check_upstream_tls, UpstreamTlsError};
