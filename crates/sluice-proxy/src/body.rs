//! The response body the proxy sends to clients: either the upstream's
//! body streamed through frame by frame (never buffered whole), or a short
//! text sluice wrote itself (404, 502, 504...).
//!
//! An upstream body carries the request's in-flight guard, so the
//! least-request balancer and the in-flight gauge count a request until its
//! response body is finished or dropped (client gone). It also carries the
//! lease on its upstream connection, given back to the endpoint's idle pool
//! when the body was read whole, dropped (never reused) otherwise.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::Sleep;

use crate::balance::EndpointState;
use crate::breakers::{CallGuard, Capture};
use crate::breakers::{ConnectionSlot, RequestSlot};
use crate::limits::Permit;
use crate::metrics::{ErrorKind, VersionMetrics};
use crate::mirror::tee::{RequestTee, ResponseTee};
use crate::pool::Lease;
use sluice_breaker::Outcome;

/// A response body from the proxy.
pub struct ProxyBody {
    inner: Inner,
    /// The request's place under `proxy.limits.max_in_flight`, until the
    /// body is sent or dropped.
    _permit: Option<Permit>,
}

enum Inner {
    Upstream {
        body: Incoming,
        _in_flight: InFlight,
        lease: Option<Lease>,
        /// The body returned its end (`None`): the connection is reusable.
        finished: bool,
        /// A copy for the stale-data fallback, while it fits (boxed: rare).
        capture: Option<Box<Capture>>,
        /// Stable's answer for a mirror comparing bodies (boxed: rare).
        mirror: Option<Box<ResponseTee>>,
        /// `proxy.upstream_body_timeout`: the longest wait for the next frame.
        body_timeout: Duration,
        /// Armed when the body first waits (most bodies never do).
        stall: Option<Pin<Box<Sleep>>>,
        /// A frame arrived since `stall` was last armed.
        progressed: bool,
    },
    Local(Option<Bytes>),
}

// === impl ProxyBody ===

impl ProxyBody {
    pub(crate) fn upstream(
        body: Incoming,
        in_flight: InFlight,
        lease: Lease,
        capture: Option<Box<Capture>>,
        mirror: Option<Box<ResponseTee>>,
        body_timeout: Duration,
    ) -> ProxyBody {
        ProxyBody {
            inner: Inner::Upstream {
                body,
                _in_flight: in_flight,
                lease: Some(lease),
                finished: false,
                capture,
                mirror,
                body_timeout,
                stall: None,
                progressed: false,
            },
            _permit: None,
        }
    }

    /// The same body, holding `permit` until it is finished or dropped.
    pub(crate) fn holding(mut self, permit: Permit) -> ProxyBody {
        self._permit = Some(permit);
        self
    }

    /// A complete body written by sluice.
    pub fn text(text: impl Into<Bytes>) -> ProxyBody {
        let bytes = text.into();
        ProxyBody {
            inner: Inner::Local((!bytes.is_empty()).then_some(bytes)),
            _permit: None,
        }
    }
}

/// Why an upstream's response body was cut: the client sees the stream
/// end abruptly (HTTP/1 connection closed, HTTP/2 stream reset), never a
/// shorter body that looks complete.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The upstream's body failed (reset, closed early, malformed chunks).
    #[error("the upstream's response body failed: {0}")]
    Upstream(#[source] hyper::Error),
    /// The upstream sent nothing for `proxy.upstream_body_timeout`.
    #[error("the upstream's response body stalled for {0:?} (proxy.upstream_body_timeout)")]
    Stalled(Duration),
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match &mut self.get_mut().inner {
            Inner::Upstream {
                body,
                finished,
                capture,
                mirror,
                _in_flight: in_flight,
                body_timeout,
                stall,
                progressed,
                ..
            } => {
                let frame = Pin::new(&mut *body).poll_frame(cx);
                match &frame {
                    Poll::Ready(None) => {
                        *finished = true;
                        in_flight.body_ended();
                        if let Some(capture) = capture.take() {
                            capture.finish();
                        }
                        if let Some(mut mirror) = mirror.take() {
                            mirror.finish();
                        }
                    }
                    Poll::Ready(Some(Ok(frame))) => {
                        if let Some(data) = frame.data_ref() {
                            if let Some(capture) = capture.as_mut() {
                                capture.push(data);
                            }
                            if let Some(mirror) = mirror.as_mut() {
                                mirror.push(data);
                            }
                        }
                        // Servers stop polling a body that says it has ended.
                        if body.is_end_stream() {
                            in_flight.body_ended();
                            if let Some(capture) = capture.take() {
                                capture.finish();
                            }
                            if let Some(mut mirror) = mirror.take() {
                                mirror.finish();
                            }
                        }
                    }
                    Poll::Ready(Some(Err(_))) => {
                        *capture = None;
                        *mirror = None;
                        in_flight.body_failed(ErrorKind::Protocol);
                    }
                    Poll::Pending => {
                        if stalled(stall, progressed, *body_timeout, cx) {
                            *capture = None;
                            *mirror = None;
                            in_flight.body_failed(ErrorKind::Timeout);
                            return Poll::Ready(Some(Err(BodyError::Stalled(*body_timeout))));
                        }
                        return Poll::Pending;
                    }
                }
                *progressed = true;
                frame.map_err(BodyError::Upstream)
            }
            Inner::Local(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Upstream { body, .. } => body.is_end_stream(),
            Inner::Local(bytes) => bytes.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Upstream { body, .. } => body.size_hint(),
            Inner::Local(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
        }
    }
}

/// Whether a body waiting for its next frame has waited `timeout` since
/// its last one; arms (or re-arms) the timer to wake this task otherwise.
fn stalled(
    stall: &mut Option<Pin<Box<Sleep>>>,
    progressed: &mut bool,
    timeout: Duration,
    cx: &mut Context<'_>,
) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    let sleep = stall.get_or_insert_with(|| {
        *progressed = false;
        Box::pin(tokio::time::sleep_until(deadline))
    });
    if std::mem::take(progressed) {
        sleep.as_mut().reset(deadline);
    }
    sleep.as_mut().poll(cx).is_ready()
}

impl Drop for ProxyBody {
    fn drop(&mut self) {
        if let Inner::Upstream {
            body,
            lease,
            finished,
            _in_flight: in_flight,
            ..
        } = &mut self.inner
        {
            // Servers stop polling a body that says it has ended.
            if *finished || body.is_end_stream() {
                in_flight.body_ended();
                if let Some(lease) = lease.take() {
                    lease.release();
                }
            }
        }
    }
}

impl std::fmt::Debug for ProxyBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.inner {
            Inner::Upstream { .. } => f.write_str("ProxyBody::Upstream"),
            Inner::Local(_) => f.write_str("ProxyBody::Local"),
        }
    }
}

/// A request body on its way to an upstream. A client's body carries what
/// is left of `proxy.limits.max_request_body_bytes`: a frame past it fails
/// the body with [`RequestBodyError::TooLarge`] (hyper then aborts the
/// upstream request) before the mirror's copy sees it.
pub(crate) enum RequestBody {
    /// The client's, streamed through.
    Client { body: Incoming, budget: Budget },
    /// The client's, streamed through and copied for a mirror (boxed: rare).
    Tee {
        body: Incoming,
        tee: Option<Box<RequestTee>>,
        budget: Budget,
    },
    /// A complete copy (a mirror's); None when empty or sent.
    Buffered(Option<Bytes>),
}

/// Why a request body on its way to an upstream failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RequestBodyError {
    /// The client's body failed (the client went away or sent garbage).
    #[error(transparent)]
    Client(#[from] hyper::Error),
    /// The client's body grew past `proxy.limits.max_request_body_bytes`.
    #[error("the request body is larger than {limit} bytes (proxy.limits.max_request_body_bytes)")]
    TooLarge { limit: u64 },
}

/// What a client's request body may still bring under
/// `proxy.limits.max_request_body_bytes`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Budget {
    left: u64,
    max: u64,
}

// === impl Budget ===

impl Budget {
    pub(crate) fn new(max_bytes: u64) -> Budget {
        Budget {
            left: max_bytes,
            max: max_bytes,
        }
    }

    /// Takes `frame`'s data from what is left, or says it is too large.
    fn take(&mut self, frame: &Frame<Bytes>) -> Result<(), RequestBodyError> {
        let Some(data) = frame.data_ref() else {
            return Ok(());
        };
        match self.left.checked_sub(data.len() as u64) {
            Some(rest) => {
                self.left = rest;
                Ok(())
            }
            None => Err(RequestBodyError::TooLarge { limit: self.max }),
        }
    }
}

// === impl RequestBody ===

impl RequestBody {
    /// The client's body, allowed `max_bytes` in all.
    pub(crate) fn client(body: Incoming, max_bytes: u64) -> RequestBody {
        RequestBody::Client {
            body,
            budget: Budget::new(max_bytes),
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = RequestBodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, RequestBodyError>>> {
        match self.get_mut() {
            RequestBody::Client { body, budget } => {
                let frame = Pin::new(&mut *body).poll_frame(cx);
                if let Poll::Ready(Some(Ok(frame))) = &frame {
                    budget.take(frame)?;
                }
                frame.map_err(RequestBodyError::Client)
            }
            RequestBody::Tee { body, tee, budget } => {
                let frame = Pin::new(&mut *body).poll_frame(cx);
                match &frame {
                    Poll::Ready(None) => {
                        if let Some(mut tee) = tee.take() {
                            tee.finish();
                        }
                    }
                    Poll::Ready(Some(Ok(frame))) => {
                        if let Err(error) = budget.take(frame) {
                            // No copy: the mirror counts it as dropped.
                            *tee = None;
                            return Poll::Ready(Some(Err(error)));
                        }
                        if let (Some(tee), Some(data)) = (tee.as_mut(), frame.data_ref()) {
                            tee.push(data);
                        }
                        if body.is_end_stream() {
                            if let Some(mut tee) = tee.take() {
                                tee.finish();
                            }
                        }
                    }
                    Poll::Ready(Some(Err(_))) => *tee = None,
                    Poll::Pending => {}
                }
                frame.map_err(RequestBodyError::Client)
            }
            RequestBody::Buffered(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Client { body, .. } | RequestBody::Tee { body, .. } => {
                body.is_end_stream()
            }
            RequestBody::Buffered(bytes) => bytes.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Client { body, .. } | RequestBody::Tee { body, .. } => body.size_hint(),
            RequestBody::Buffered(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
        }
    }
}

/// Counts one request in flight on its endpoint and version until dropped,
/// and holds its places under the version's caps.
pub(crate) struct InFlight {
    endpoint: Arc<EndpointState>,
    version: Arc<VersionMetrics>,
    pub(crate) request_slot: Option<RequestSlot>,
    pub(crate) connection_slot: Option<ConnectionSlot>,
    /// The request already counts as an error (a 5xx head): a body that
    /// fails after it is not a second one.
    pub(crate) counted_as_error: bool,
    /// The breaker's call, when its head was a success: its outcome waits
    /// for the body's end (success) or failure. Dropped unreported (nothing
    /// counted) when the client goes away first.
    pub(crate) call: Option<PendingCall>,
}

/// A breaker call whose head was a success, and how long that head took
/// (the duration the slow-call rule judges, so that a long stream is not
/// a slow call).
pub(crate) struct PendingCall {
    pub(crate) guard: CallGuard,
    pub(crate) head_ms: u64,
}

// === impl InFlight ===

impl InFlight {
    pub(crate) fn new(endpoint: &Arc<EndpointState>, version: &Arc<VersionMetrics>) -> InFlight {
        endpoint.enter();
        version.enter();
        InFlight {
            endpoint: endpoint.clone(),
            version: version.clone(),
            request_slot: None,
            connection_slot: None,
            counted_as_error: false,
            call: None,
        }
    }
}

impl InFlight {
    /// Counts the request as failed by its upstream's body, once, for
    /// the metrics and for the breaker.
    fn body_failed(&mut self, kind: ErrorKind) {
        if !std::mem::replace(&mut self.counted_as_error, true) {
            self.version.record_body_failure(kind);
        }
        if let Some(PendingCall { guard, head_ms }) = self.call.take() {
            let outcome = match (guard.policy.error_fails(kind), kind) {
                (false, _) => Outcome::Success,
                (true, ErrorKind::Timeout) => Outcome::Timeout,
                (true, _) => Outcome::Failure,
            };
            guard.finish(outcome, head_ms);
        }
    }

    /// The upstream's body ended cleanly: the breaker's call succeeded.
    fn body_ended(&mut self) {
        if let Some(PendingCall { guard, head_ms }) = self.call.take() {
            guard.finish(Outcome::Success, head_ms);
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.endpoint.leave();
        self.version.leave();
    }
}
