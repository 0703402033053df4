//! Forwarding one request: route it, choose its version and endpoint,
//! rewrite it for the upstream (absolute `http://endpoint/path?query` URI,
//! HTTP/1.1, client's host kept, hop-by-hop headers out, forwarding headers
//! in), send it through the pooled client with the body streamed, and count
//! the outcome for the version.

use std::time::{Duration, Instant};

use http::header::HOST;
use http::uri::{PathAndQuery, Scheme};
use http::{HeaderValue, Request, Response, Uri, Version};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use sluice_model::ProxyConfig;

use crate::body::{InFlight, ProxyBody};
use crate::choose::choose_slot;
use crate::error::{ProxyError, Upstream};
use crate::headers::{add_forwarding, strip_hop_by_hop, ClientInfo};
use crate::metrics::ErrorKind;
use crate::table::{host_without_port, RouteTable, ServiceRoute, VersionRoute};

/// The pooled HTTP/1.1 client to upstreams and its time limits.
pub(crate) struct Upstreams {
    client: Client<HttpConnector, Incoming>,
    connect_timeout: Duration,
    upstream_timeout: Duration,
}

// === impl Upstreams ===

impl Upstreams {
    pub(crate) fn new(config: &ProxyConfig) -> Upstreams {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(config.connect_timeout));
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(config.idle_timeout)
            .pool_max_idle_per_host(config.max_idle_per_endpoint)
            .build(connector);
        Upstreams {
            client,
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
    if let Some(host) = host {
        parts.headers.insert(HOST, host);
    }
    let mut uri = std::mem::take(&mut parts.uri).into_parts();
    uri.scheme = Some(Scheme::HTTP);
    uri.authority = Some(endpoint.authority.clone());
    if uri.path_and_query.is_none() {
        uri.path_and_query = Some(PathAndQuery::from_static("/"));
    }
    parts.uri = match Uri::from_parts(uri) {
        Ok(uri) => uri,
        // Not expected: scheme, authority and path are all set and valid.
        Err(_) => return ProxyError::Internal("could not build the upstream URI").into_response(),
    };
    parts.version = Version::HTTP_11;

    let sent = upstreams.client.request(Request::from_parts(parts, body));
    let outcome = tokio::time::timeout(upstreams.upstream_timeout, sent).await;
    let error = match outcome {
        Ok(Ok(response)) => {
            let kind = response
                .status()
                .is_server_error()
                .then_some(ErrorKind::Status5xx);
            version.metrics.record(start.elapsed(), kind);
            let (mut parts, body) = response.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            return Response::from_parts(parts, ProxyBody::upstream(body, in_flight));
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
