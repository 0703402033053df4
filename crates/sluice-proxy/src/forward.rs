//! Forwarding one request: route it, choose its version and endpoint,
//! rewrite it for the upstream (origin-form `/path?query` URI, HTTP/1.1,
//! client's host kept, else the endpoint's, hop-by-hop headers out,
//! forwarding headers in), send it on a pooled connection with the body
//! streamed, and count the outcome for the version. A request to stable may
//! also be mirrored to the canary (module `mirror`), never waited for.

use std::time::{Duration, Instant};

use http::header::HOST;
use http::uri::Parts;
use http::{HeaderValue, Method, Request, Response, Uri, Version};
use http_body::Body as _;
use hyper::body::Incoming;
use sluice_model::ProxyConfig;

use std::sync::atomic::Ordering::Relaxed;

use sluice_breaker::Outcome;

use crate::body::{InFlight, PendingCall, ProxyBody, RequestBody};
use crate::breakers::{Admit, BreakerCell, CompiledPolicy, Overflow, StaleCache};
use crate::choose::choose_slot;
use crate::error::{ProxyError, Upstream};
use crate::headers::{add_forwarding, strip_hop_by_hop, ClientInfo};
use crate::metrics::ErrorKind;
use crate::pool::Connector;
use crate::table::{host_without_port, RouteTable, ServiceRoute, Slot, VersionRoute};

/// The pooled HTTP/1.1 connections to upstreams and their time limits.
pub(crate) struct Upstreams {
    pub(crate) connector: Connector,
    connect_timeout: Duration,
    pub(crate) upstream_timeout: Duration,
    /// Longest wait for the next piece of a response body.
    body_timeout: Duration,
    /// `proxy.limits.max_request_body_bytes`.
    pub(crate) max_request_body_bytes: u64,
}

// === impl Upstreams ===

impl Upstreams {
    pub(crate) fn new(config: &ProxyConfig) -> Upstreams {
        Upstreams {
            connector: Connector::new(config),
            connect_timeout: config.connect_timeout,
            upstream_timeout: config.upstream_timeout,
            body_timeout: config.upstream_body_timeout,
            max_request_body_bytes: config.limits.max_request_body_bytes,
        }
    }
}

/// Answers one client request through `table`.
pub(crate) async fn handle(
    table: &RouteTable,
    upstreams: &Upstreams,
    client: &ClientInfo,
    request: Request<Incoming>,
) -> Response<ProxyBody> {
    let start = Instant::now();
    let (mut parts, body) = request.into_parts();
    // A Content-Length over the limit: refused before any upstream is asked.
    if body.size_hint().lower() > upstreams.max_request_body_bytes {
        return ProxyError::BodyTooLarge {
            limit: upstreams.max_request_body_bytes,
        }
        .into_response();
    }

    // HTTP/2 (and HTTP/1 absolute-form) carry the host in the URI; else the Host header.
    let host = match parts.uri.authority() {
        Some(authority) => HeaderValue::from_str(authority.as_str()).ok(),
        None => parts.headers.get(HOST).cloned(),
    };
    let host_name = host
        .as_ref()
        .and_then(|h| h.to_str().ok())
        .map(host_without_port);
    let Some(route) = table.route(host_name, parts.uri.path()) else {
        return ProxyError::NoRoute.into_response();
    };
    if let Some(retry_after_secs) = route.unavailable {
        return ProxyError::Recreating {
            service: route.name.clone(),
            retry_after_secs,
        }
        .into_response();
    }
    let version = route.version(choose_slot(route, &parts.headers));
    let request_slot = match version.limits.as_ref().map(|limits| limits.enter()) {
        Some(Err(overflow)) => return overflow_response(route, version, overflow),
        Some(Ok(slot)) => slot,
        None => None,
    };
    // Only remembered or looked up for GETs of services with a stale fallback.
    let stale_key = match (&version.breakers, &parts.method) {
        (Some(b), &Method::GET) if b.stale.is_some() => Some(StaleCache::key(
            host.as_ref(),
            parts.uri.path_and_query().map_or("/", |p| p.as_str()),
        )),
        _ => None,
    };
    let call = match version
        .breakers
        .as_ref()
        .and_then(|breakers| breakers.admit(&parts.headers))
    {
        None => None,
        Some((Admit::Go(guard), _)) => Some(guard),
        Some((
            Admit::Reject {
                policy,
                retry_after_ms,
            },
            cell,
        )) => {
            // The client is answered for this version, which had been failing.
            version
                .metrics
                .record(start.elapsed(), Some(ErrorKind::BreakerOpen));
            return rejected(
                version,
                &cell,
                &policy,
                retry_after_ms,
                stale_key.as_deref(),
            );
        }
    };
    let Some(endpoint) = version.pool.pick() else {
        version.metrics.record(start.elapsed(), None);
        return ProxyError::NoEndpoint {
            service: route.name.clone(),
            slot: version.slot,
        }
        .into_response();
    };
    let mut in_flight = InFlight::new(endpoint, &version.metrics);
    in_flight.request_slot = request_slot;

    strip_hop_by_hop(&mut parts.headers);
    add_forwarding(&mut parts.headers, client, host.as_ref());
    parts
        .headers
        .insert(HOST, host.unwrap_or_else(|| endpoint.host.clone()));
    parts.uri = if parts.method == Method::CONNECT {
        // CONNECT names its target in authority form: the endpoint.
        let mut uri = Parts::default();
        uri.authority = Some(endpoint.authority.clone());
        match Uri::from_parts(uri) {
            Ok(uri) => uri,
            // Not expected: an authority alone is a valid URI.
            Err(_) => {
                return ProxyError::Internal("could not build the upstream URI").into_response()
            }
        }
    } else {
        match std::mem::take(&mut parts.uri).into_parts().path_and_query {
            Some(path) if path.as_str() != "/" => Uri::from(path),
            _ => Uri::default(),
        }
    };
    parts.version = Version::HTTP_11;

    // The breaker policy's call timeout, when shorter than the proxy's.
    let timeout = call
        .as_ref()
        .and_then(|c| c.policy.call_timeout)
        .map_or(upstreams.upstream_timeout, |t| {
            t.min(upstreams.upstream_timeout)
        });
    let deadline = tokio::time::Instant::now() + timeout;
    if let Some(limits) = &version.limits {
        match tokio::time::timeout_at(deadline, limits.connection()).await {
            Ok(Ok(slot)) => in_flight.connection_slot = slot,
            Ok(Err(overflow)) => return overflow_response(route, version, overflow),
            Err(_elapsed) => return overflow_response(route, version, Overflow::Pending),
        }
    }
    // Mirrored (to the canary, on its own task) only when going to stable;
    // a tunnel is not a request that can be answered twice.
    let (body, mirror) = match (version.slot, &route.mirror, &route.canary) {
        (Slot::Stable, Some(mirror), Some(canary)) if parts.method != Method::CONNECT => {
            mirror.start(&parts, body, canary, upstreams)
        }
        _ => (
            RequestBody::client(body, upstreams.max_request_body_bytes),
            None,
        ),
    };
    let sent = upstreams
        .connector
        .send(endpoint, Request::from_parts(parts, body));
    let outcome = tokio::time::timeout_at(deadline, sent).await;
    let error = match outcome {
        Ok(Ok((response, lease))) => {
            let elapsed = start.elapsed();
            let status = response.status();
            let kind = status.is_server_error().then_some(ErrorKind::Status5xx);
            version.metrics.record(elapsed, kind);
            in_flight.counted_as_error = kind.is_some();
            if let Some(call) = call {
                // A failing status is the outcome; a good head waits for its body.
                if call.policy.status_fails(status.as_u16()) {
                    call.finish(Outcome::Failure, millis(elapsed));
                } else {
                    in_flight.call = Some(PendingCall {
                        guard: call,
                        head_ms: millis(elapsed),
                    });
                }
            }
            let (mut parts, body) = response.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            let mirror = mirror.and_then(|m| m.answered(status, elapsed, &parts.headers));
            let capture = match (
                stale_key,
                version.breakers.as_ref().and_then(|b| b.stale.as_ref()),
            ) {
                (Some(key), Some(cache)) if StaleCache::cacheable(status, &parts.headers) => {
                    Some(Box::new(cache.capture(key, status, &parts.headers)))
                }
                _ => None,
            };
            return Response::from_parts(
                parts,
                ProxyBody::upstream(
                    body,
                    in_flight,
                    lease,
                    capture,
                    mirror,
                    upstreams.body_timeout,
                ),
            );
        }
        Ok(Err(error)) => ProxyError::from_client(
            upstream(route, version, endpoint),
            error,
            upstreams.connect_timeout,
        ),
        Err(_elapsed) => ProxyError::Timeout {
            upstream: upstream(route, version, endpoint),
            after: timeout,
        },
    };
    let elapsed = start.elapsed();
    version.metrics.record(elapsed, error.kind());
    if let (Some(call), Some(kind)) = (call, error.kind()) {
        // A client-caused failure drops the guard instead: nothing is counted.
        let outcome = match (call.policy.error_fails(kind), kind) {
            (false, _) => Outcome::Success,
            (true, ErrorKind::Timeout) => Outcome::Timeout,
            (true, _) => Outcome::Failure,
        };
        call.finish(outcome, millis(elapsed));
    }
    tracing::debug!(%error, "upstream request failed");
    error.into_response()
}

/// The answer to a call its breaker rejected: the stale copy, the static
/// fallback, or a 503 with `Retry-After`.
fn rejected(
    version: &VersionRoute,
    cell: &BreakerCell,
    policy: &CompiledPolicy,
    retry_after_ms: u64,
    stale_key: Option<&str>,
) -> Response<ProxyBody> {
    let stale = policy
        .fallback
        .as_ref()
        .and_then(|f| f.stale.as_ref())
        .zip(version.breakers.as_ref().and_then(|b| b.stale.as_ref()))
        .zip(stale_key)
        .and_then(|((spec, cache), key)| cache.answer(key, spec.max_age));
    if let Some(response) = stale.or_else(|| policy.static_response()) {
        cell.fallbacks.fetch_add(1, Relaxed);
        return response;
    }
    ProxyError::BreakerOpen {
        breaker: cell.id.clone(),
        retry_after_secs: retry_after_ms.div_ceil(1000).max(1),
    }
    .into_response()
}

fn overflow_response(
    route: &ServiceRoute,
    version: &VersionRoute,
    overflow: Overflow,
) -> Response<ProxyBody> {
    ProxyError::Overflow {
        service: route.name.clone(),
        slot: version.slot,
        limit: overflow.label(),
    }
    .into_response()
}

fn millis(elapsed: Duration) -> u64 {
    u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
}

fn upstream(
    route: &ServiceRoute,
    version: &VersionRoute,
    endpoint: &crate::balance::EndpointState,
) -> Upstream {
    Upstream {
        endpoint: endpoint.address.clone(),
        service: route.name.clone(),
        slot: version.slot,
    }
}
