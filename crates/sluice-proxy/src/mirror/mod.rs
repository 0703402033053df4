//! Shadow traffic: while a rollout mirrors, a share of the requests that go
//! to stable is copied to the canary on a spawned task. The client gets
//! stable's answer and never waits for the copy; each (stable, canary) pair
//! is then compared (module `compare`) and counted (module `counters`).
//!
//! A mirror costs stable nothing it can feel: it is bounded by a cap on
//! mirrors in flight (above it a mirror is dropped and counted, never
//! queued) and by a body-size cap (a larger request is not mirrored); the
//! request body is copied while it streams to stable, not read first.
//!
//! The canary's own answers are counted in its version counters (so the
//! builtin success-rate and latency checks judge it on mirrored traffic),
//! and nowhere else: not in stable's counters, the canary's breakers or caps.
//!
//! Not here: deciding when to mirror (the controller, through
//! `ServiceRouting::mirror_active`).

mod compare;
pub(crate) mod counters;
pub(crate) mod tee;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri, Version};
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use sluice_model::MirrorSpec;
use tokio::sync::oneshot;

use crate::balance::EndpointState;
use crate::body::{Budget, InFlight, RequestBody};
use crate::forward::Upstreams;
use crate::metrics::{ErrorKind, VersionMetrics};
use crate::pool::{Connector, SendError};
use crate::rng;
use crate::table::VersionRoute;
use compare::{compare, Answer, CompareRules};
use counters::{Dropped, MirrorCounters, MirrorSlot};
use tee::{RequestTee, ResponseTee};

/// Marks a mirrored request to the canary (value `1`).
pub const X_SLUICE_MIRROR: HeaderName = HeaderName::from_static("x-sluice-mirror");

/// One service's mirroring, as compiled into a routing snapshot.
pub(crate) struct MirrorRoute {
    /// Share of stable's requests mirrored, in basis points (1..=10,000).
    percent_bp: u32,
    max_in_flight: usize,
    max_body_bytes: usize,
    rules: Arc<CompareRules>,
    counters: Arc<MirrorCounters>,
}

/// One side's answer, owned (stable's travels from the response body to the mirror task).
#[derive(Debug)]
pub(crate) struct Observed {
    pub(crate) status: Option<StatusCode>,
    pub(crate) latency: Duration,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Option<Bytes>,
}

/// What the request path owes a started mirror: stable's answer.
pub(crate) struct StableSide {
    keep_headers: bool,
    keep_body: bool,
    max_body_bytes: usize,
    answer: oneshot::Sender<Observed>,
}

/// The request body the mirror sends: known already, or being copied.
enum MirrorBody {
    Ready(Bytes),
    Copying(oneshot::Receiver<Result<Bytes, Dropped>>),
}

/// Everything a spawned mirror needs, owned.
struct Job {
    _slot: MirrorSlot,
    body: MirrorBody,
    stable: oneshot::Receiver<Observed>,
    rules: Arc<CompareRules>,
    counters: Arc<MirrorCounters>,
    call: CanaryCall,
}

/// The mirrored request and where it goes.
struct CanaryCall {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    endpoint: Arc<EndpointState>,
    metrics: Arc<VersionMetrics>,
    connector: Connector,
    timeout: Duration,
    max_body_bytes: usize,
    keep_headers: bool,
    keep_body: bool,
}

// === impl MirrorRoute ===

impl MirrorRoute {
    pub(crate) fn new(spec: &MirrorSpec, counters: Arc<MirrorCounters>) -> MirrorRoute {
        MirrorRoute {
            percent_bp: ((spec.percent * 100.0).round() as u32).clamp(1, 10_000),
            max_in_flight: spec.max_in_flight.max(1),
            max_body_bytes: spec.max_body_bytes,
            rules: Arc::new(CompareRules::new(&spec.compare)),
            counters,
        }
    }

    /// Mirrors the request (already rewritten for the upstream) to `canary`
    /// when drawn and within the caps: spawns the mirror and returns the
    /// body to send stable (copying for the mirror) and what stable's
    /// answer must be reported to. Never waits.
    pub(crate) fn start(
        &self,
        parts: &Parts,
        body: Incoming,
        canary: &VersionRoute,
        upstreams: &Upstreams,
    ) -> (RequestBody, Option<StableSide>) {
        // The request goes to stable alone, its body within the request limit.
        let unmirrored = |body| {
            (
                RequestBody::client(body, upstreams.max_request_body_bytes),
                None,
            )
        };
        if self.percent_bp < 10_000 && rng::below(10_000) >= self.percent_bp {
            return unmirrored(body);
        }
        let size = body.size_hint();
        if size.lower() > self.max_body_bytes as u64 {
            self.counters.drop_one(Dropped::BodySize);
            return unmirrored(body);
        }
        let Some(slot) = self.counters.enter(self.max_in_flight) else {
            return unmirrored(body);
        };
        let Some(endpoint) = canary.pool.pick().cloned() else {
            self.counters.drop_one(Dropped::Error);
            return unmirrored(body);
        };
        let (body, mirror_body) = if body.is_end_stream() {
            (
                RequestBody::client(body, upstreams.max_request_body_bytes),
                MirrorBody::Ready(Bytes::new()),
            )
        } else {
            let (done, copied) = oneshot::channel();
            let tee = RequestTee::new(self.max_body_bytes, done);
            (
                RequestBody::Tee {
                    body,
                    tee: Some(Box::new(tee)),
                    budget: Budget::new(upstreams.max_request_body_bytes),
                },
                MirrorBody::Copying(copied),
            )
        };
        let mut headers = parts.headers.clone();
        headers.insert(X_SLUICE_MIRROR, HeaderValue::from_static("1"));
        let (answer, stable) = oneshot::channel();
        tokio::spawn(run(Job {
            _slot: slot,
            body: mirror_body,
            stable,
            rules: self.rules.clone(),
            counters: self.counters.clone(),
            call: CanaryCall {
                method: parts.method.clone(),
                uri: parts.uri.clone(),
                headers,
                endpoint,
                metrics: canary.metrics.clone(),
                connector: upstreams.connector.clone(),
                timeout: upstreams.upstream_timeout,
                max_body_bytes: self.max_body_bytes,
                keep_headers: self.rules.wants_headers(),
                keep_body: self.rules.wants_body(),
            },
        }));
        let side = StableSide {
            keep_headers: self.rules.wants_headers(),
            keep_body: self.rules.wants_body(),
            max_body_bytes: self.max_body_bytes,
            answer,
        };
        (body, Some(side))
    }
}

// === impl StableSide ===

impl StableSide {
    /// Stable answered with this head: reported now, or (when bodies are
    /// compared) by the returned tee once the body has gone to the client.
    pub(crate) fn answered(
        self,
        status: StatusCode,
        latency: Duration,
        headers: &HeaderMap,
    ) -> Option<Box<ResponseTee>> {
        let observed = Observed {
            status: Some(status),
            latency,
            headers: if self.keep_headers {
                headers.clone()
            } else {
                HeaderMap::new()
            },
            body: None,
        };
        if self.keep_body {
            return Some(Box::new(ResponseTee::new(
                observed,
                self.max_body_bytes,
                self.answer,
            )));
        }
        let _ = self.answer.send(observed);
        None
    }
}

// === impl Observed ===

impl Observed {
    fn answer(&self) -> Answer<'_> {
        Answer {
            status: self.status,
            latency: self.latency,
            headers: &self.headers,
            body: self.body.as_deref(),
        }
    }
}

/// One mirror: wait for the request body copy, send it to the canary,
/// count the canary's answer for its version, then compare it with stable's.
async fn run(job: Job) {
    let Job {
        _slot,
        body,
        stable,
        rules,
        counters,
        call,
    } = job;
    let timeout = call.timeout;
    let body = match body {
        MirrorBody::Ready(body) => body,
        MirrorBody::Copying(copied) => match tokio::time::timeout(timeout, copied).await {
            Ok(Ok(Ok(body))) => body,
            Ok(Ok(Err(why))) => return counters.drop_one(why),
            _ => return counters.drop_one(Dropped::Error),
        },
    };
    let canary = ask_canary(call, body).await;
    let stable = match tokio::time::timeout(timeout, stable).await {
        Ok(Ok(stable)) => stable,
        _ => return counters.drop_one(Dropped::Error),
    };
    counters.record(compare(&rules, &stable.answer(), &canary.answer()));
}

/// Sends the mirror and reads the canary's answer (its body up to the cap),
/// counting it in the canary's version counters.
async fn ask_canary(call: CanaryCall, body: Bytes) -> Observed {
    let start = Instant::now();
    let _in_flight = InFlight::new(&call.endpoint, &call.metrics);
    let mut request = Request::new(RequestBody::Buffered((!body.is_empty()).then_some(body)));
    *request.method_mut() = call.method;
    *request.uri_mut() = call.uri;
    *request.version_mut() = Version::HTTP_11;
    *request.headers_mut() = call.headers;
    let sent = call.connector.send(&call.endpoint, request);
    let (response, lease) = match tokio::time::timeout(call.timeout, sent).await {
        Ok(Ok(answered)) => answered,
        failed => {
            let kind = match failed {
                Ok(Err(SendError::Connect(_))) => ErrorKind::Connect,
                Ok(_) => ErrorKind::Protocol,
                Err(_elapsed) => ErrorKind::Timeout,
            };
            let latency = start.elapsed();
            call.metrics.record(latency, Some(kind));
            return Observed {
                status: None,
                latency,
                headers: HeaderMap::new(),
                body: None,
            };
        }
    };
    let latency = start.elapsed();
    let status = response.status();
    call.metrics.record(
        latency,
        status.is_server_error().then_some(ErrorKind::Status5xx),
    );
    let (parts, mut incoming) = response.into_parts();
    // Read to the end (so the connection is reused) while it fits the cap.
    let mut copy = BytesMut::new();
    let read = tokio::time::timeout(call.timeout, async {
        while let Some(frame) = incoming.frame().await {
            let Ok(frame) = frame else { return false };
            if let Some(data) = frame.data_ref() {
                if copy.len() + data.len() > call.max_body_bytes {
                    return false;
                }
                copy.extend_from_slice(data);
            }
        }
        true
    })
    .await;
    let whole = read == Ok(true);
    if whole {
        lease.release();
    }
    Observed {
        status: Some(status),
        latency,
        headers: if call.keep_headers {
            parts.headers
        } else {
            HeaderMap::new()
        },
        body: (whole && call.keep_body).then(|| copy.freeze()),
    }
}
