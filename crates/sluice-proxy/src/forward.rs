//! Forwarding one request: route it, choose its version and endpoint,
//! rewrite it for the upstream (origin-form `/path?query` URI, HTTP/1.1,
//! client's host kept, else the endpoint's, hop-by-hop headers out,
//! forwarding headers in), send it on a pooled connection with the body
//! streamed, and count the outcome for the version.

use std::time::{Duration, Instant};

use http::header::HOST;
use http::uri::Parts;
use http::{HeaderValue, Method, Request, Response, Uri, Version};
use hyper::body::Incoming;
use sluice_model::ProxyConfig;

use crate::body::{InFlight, ProxyBody};
use crate::choose::choose_slot;
use crate::error::{ProxyError, Upstream};
use crate::headers::{add_forwarding, strip_hop_by_hop, ClientInfo};
use crate::metrics::ErrorKind;
use crate::pool::Connector;
use crate::table::{host_without_port, RouteTable, ServiceRoute, VersionRoute};

/// The pooled HTTP/1.1 connections to upstreams and their time limits.
pub(crate) struct Upstreams {
    connector: Connector,
    connect_timeout: Duration,
    upstream_timeout: Duration,
}

// === impl Upstreams ===

impl Upstreams {
    pub(crate) fn new(config: &ProxyConfig) -> Upstreams {
        Upstreams {
            connector: Connector::new(config),
            connect_timeout: config.connect_timeout,
            upstream_timeout: config.upstream_timeout,
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
    let version = route.version(choose_slot(route, &parts.headers));
    let Some(endpoint) = version.pool.pick() else {
        version.metrics.record(start.elapsed(), None);
        return ProxyError::NoEndpoint {
            service: route.name.clone(),
            slot: version.slot,
        }
        .into_response();
    };
    let in_flight = InFlight::new(endpoint, &version.metrics);

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

    let sent = upstreams
        .connector
        .send(endpoint, Request::from_parts(parts, body));
    let outcome = tokio::time::timeout(upstreams.upstream_timeout, sent).await;
    let error = match outcome {
        Ok(Ok((response, lease))) => {
            let kind = response
                .status()
                .is_server_error()
                .then_some(ErrorKind::Status5xx);
            version.metrics.record(start.elapsed(), kind);
            let (mut parts, body) = response.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            return Response::from_parts(parts, ProxyBody::upstream(body, in_flight, lease));
        }
        Ok(Err(error)) => ProxyError::from_client(
            upstream(route, version, endpoint),
            error,
            upstreams.connect_timeout,
        ),
        Err(_elapsed) => ProxyError::Timeout {
            upstream: upstream(route, version, endpoint),
            after: upstreams.upstream_timeout,
        },
    };
    version.metrics.record(start.elapsed(), error.kind());
    tracing::debug!(%error, "upstream request failed");
    error.into_response()
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
