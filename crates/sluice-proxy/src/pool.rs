//! Keep-alive HTTP/1.1 connections to upstream endpoints: connect (with a
//! time limit, `TCP_NODELAY`), send one request, and keep the connection
//! idle on its endpoint for the next request once its response body has been
//! read whole.
//!
//! Each endpoint keeps its idle connections on a small LIFO stack (the most
//! recently used first: it is the least likely to have been closed by the
//! upstream). Stale entries are dropped lazily, on checkout. A request sent
//! on a reused connection that turns out to be closed before any byte of the
//! request was written is sent again once on a fresh connection, so that
//! upstream keep-alive timeouts never show as 502s. A bodiless idempotent
//! request whose reused connection closes after it was written but before
//! any response byte (the same timeout, racing the write) is sent again
//! once too.
//!
//! This replaces hyper-util's legacy client on the request path: no
//! per-request pool key hashing, no connect racing, no spawned
//! "return to pool" task when the connection is already idle.
//!
//! `https://` endpoints get a TLS handshake (module `upstream_tls`) after
//! the TCP connect, within the same time limit; their idle connections are
//! kept on their own endpoint, apart from plain ones.
//!
//! Not here: HTTP/2 to upstreams, health checks.

use std::io;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use http::{Request, Response};
use hyper::body::Body as _;
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use sluice_model::ProxyConfig;
use tokio::net::TcpStream;

use crate::balance::EndpointState;
use crate::body::RequestBody;

type Sender = http1::SendRequest<RequestBody>;

/// Why a request could not be sent upstream or got no response head.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SendError {
    /// No connection could be made (refused, timed out, unresolvable...).
    #[error("connecting failed: {0}")]
    Connect(#[source] io::Error),
    /// The TLS handshake with an `https://` endpoint failed.
    #[error("TLS handshake failed: {0}")]
    Tls(#[source] io::Error),
    /// The connection failed while sending or before the response head, or
    /// the client's request body failed.
    #[error(transparent)]
    Hyper(#[from] hyper::Error),
}

/// The connect, reuse and idle limits for all upstream endpoints.
#[derive(Clone, Debug)]
pub(crate) struct Connector {
    connect_timeout: Duration,
    idle_timeout: Duration,
    max_idle: usize,
}

/// One endpoint's idle connections, most recently returned last.
#[derive(Default)]
pub(crate) struct IdleConnections {
    stack: Mutex<Vec<Idle>>,
}

struct Idle {
    sender: Sender,
    since: Instant,
}

/// A connection lent to one request; given back to its endpoint by
/// [`Lease::release`] once the response body is read whole.
pub(crate) struct Lease {
    sender: Sender,
    endpoint: Arc<EndpointState>,
    max_idle: usize,
}

// === impl Connector ===

impl Connector {
    pub(crate) fn new(config: &ProxyConfig) -> Connector {
        Connector {
            connect_timeout: config.connect_timeout,
            idle_timeout: config.idle_timeout,
            max_idle: config.max_idle_per_endpoint,
        }
    }

    /// Sends `request` (origin-form URI, `Host` set) to `endpoint` on an idle
    /// connection if there is one, else on a new one; returns the response
    /// head and the lease on its connection.
    pub(crate) async fn send(
        &self,
        endpoint: &Arc<EndpointState>,
        request: Request<RequestBody>,
    ) -> Result<(Response<Incoming>, Lease), SendError> {
        let (mut sender, reused) = match endpoint.idle.pop(self.idle_timeout) {
            Some(sender) => (sender, true),
            None => (self.connect(endpoint).await?, false),
        };
        // A bodiless idempotent request can be sent again if a reused
        // connection closes before its response begins (the upstream's
        // keep-alive timeout racing our write), as nginx and browsers do.
        let replay = (reused && request.body().is_end_stream() && idempotent(request.method()))
            .then(|| replay_of(&request));
        let response = match sender.try_send_request(request).await {
            Ok(response) => response,
            Err(mut error) => match (error.take_message(), replay) {
                // The upstream closed the idle connection (keep-alive timeout)
                // before it got any of the request: safe to send it again.
                (Some(request), _) if reused => {
                    tracing::debug!(endpoint = %endpoint.address, "idle connection was closed; reconnecting");
                    sender = self.connect(endpoint).await?;
                    sender.send_request(request).await?
                }
                (None, Some(request)) if closed_before_response(error.error()) => {
                    tracing::debug!(endpoint = %endpoint.address, "reused connection closed before the response; sending again");
                    sender = self.connect(endpoint).await?;
                    sender.send_request(request).await?
                }
                _ => return Err(SendError::Hyper(error.into_error())),
            },
        };
        let lease = Lease {
            sender,
            endpoint: endpoint.clone(),
            max_idle: self.max_idle,
        };
        Ok((response, lease))
    }

    async fn connect(&self, endpoint: &EndpointState) -> Result<Sender, SendError> {
        let timed_out = || io::Error::new(io::ErrorKind::TimedOut, "connect timeout");
        let deadline = tokio::time::Instant::now() + self.connect_timeout;
        let connecting = TcpStream::connect(endpoint.authority.as_str());
        let stream = match tokio::time::timeout_at(deadline, connecting).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => return Err(SendError::Connect(error)),
            Err(_elapsed) => return Err(SendError::Connect(timed_out())),
        };
        let _ = stream.set_nodelay(true);
        let Some(tls) = &endpoint.tls else {
            return handshake(stream).await;
        };
        // The TLS handshake shares the connect time limit.
        let connecting = tls.connector.connect(tls.server_name.clone(), stream);
        match tokio::time::timeout_at(deadline, connecting).await {
            Ok(Ok(stream)) => handshake(stream).await,
            Ok(Err(error)) => Err(SendError::Tls(error)),
            Err(_elapsed) => Err(SendError::Connect(timed_out())),
        }
    }
}

/// HTTP/1.1 on a connected stream, its connection driven on its own task.
async fn handshake<S>(stream: S) -> Result<Sender, SendError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = http1::Builder::new()
        .writev(false)
        .handshake(TokioIo::new(stream))
        .await?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "upstream connection ended with an error");
        }
    });
    Ok(sender)
}

/// Methods whose request may be sent twice (RFC 9110 §9.2.2), CONNECT aside.
fn idempotent(method: &http::Method) -> bool {
    use http::Method;
    [
        Method::GET,
        Method::HEAD,
        Method::OPTIONS,
        Method::TRACE,
        Method::PUT,
        Method::DELETE,
    ]
    .contains(method)
}

/// The same request head with an empty body (extensions are not copied).
fn replay_of(request: &Request<RequestBody>) -> Request<RequestBody> {
    let mut again = Request::new(RequestBody::Buffered(None));
    *again.method_mut() = request.method().clone();
    *again.uri_mut() = request.uri().clone();
    *again.version_mut() = request.version();
    *again.headers_mut() = request.headers().clone();
    again
}

/// The connection ended before any response byte: closed or reset.
fn closed_before_response(error: &hyper::Error) -> bool {
    if error.is_incomplete_message() || error.is_canceled() {
        return true;
    }
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<io::Error>() {
            return matches!(
                io.kind(),
                io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
            );
        }
        source = cause.source();
    }
    false
}

// === impl IdleConnections ===

impl IdleConnections {
    /// The most recently returned live connection; drops closed and expired ones.
    fn pop(&self, idle_timeout: Duration) -> Option<Sender> {
        let mut stack = self.stack.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some(idle) = stack.pop() {
            if idle.sender.is_closed() {
                continue;
            }
            if idle.since.elapsed() > idle_timeout {
                // Everything below was returned earlier still: all expired.
                let expired = std::mem::take(&mut *stack);
                drop(stack);
                drop(expired);
                return None;
            }
            return Some(idle.sender);
        }
        None
    }

    fn push(&self, sender: Sender, max_idle: usize) {
        let mut stack = self.stack.lock().unwrap_or_else(PoisonError::into_inner);
        if stack.len() < max_idle {
            stack.push(Idle {
                sender,
                since: Instant::now(),
            });
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.stack
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

impl std::fmt::Debug for IdleConnections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let idle = self.stack.lock().map_or(0, |stack| stack.len());
        f.debug_struct("IdleConnections")
            .field("idle", &idle)
            .finish()
    }
}

// === impl Lease ===

impl Lease {
    /// Gives the connection back to its endpoint once it can carry the next
    /// request (at once when it already can, the common case); a connection
    /// the upstream is closing is dropped.
    pub(crate) fn release(mut self) {
        let mut cx = Context::from_waker(Waker::noop());
        match self.sender.poll_ready(&mut cx) {
            Poll::Ready(Ok(())) => self.endpoint.idle.push(self.sender, self.max_idle),
            Poll::Ready(Err(_closed)) => {}
            Poll::Pending => {
                // The connection task has not yet seen the end of the body.
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    runtime.spawn(async move {
                        if self.sender.ready().await.is_ok() {
                            self.endpoint.idle.push(self.sender, self.max_idle);
                        }
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::net::SocketAddr;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use bytes::Bytes;
    use http_body_util::{BodyExt, Either, Full};
    use hyper::service::service_fn;
    use tokio::net::TcpListener;

    use super::*;

    /// A body that never ends: keeps its connection busy.
    struct Endless;

    impl http_body::Body for Endless {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            self: std::pin::Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
            Poll::Pending
        }
    }

    /// A keep-alive upstream answering `ok`, or a body that never ends on
    /// `/hold`; counts its connections.
    async fn upstream() -> (SocketAddr, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::Relaxed);
                let ok = service_fn(|request: Request<Incoming>| async move {
                    let body = if request.uri().path() == "/hold" {
                        Either::Right(Endless)
                    } else {
                        Either::Left(Full::new(Bytes::from_static(b"ok")))
                    };
                    Ok::<_, Infallible>(Response::new(body))
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), ok),
                );
            }
        });
        (addr, accepted)
    }

    /// Hands every request it receives (with its `Incoming` body, which
    /// tests cannot build otherwise) to `forward`.
    async fn front<F, Fut>(forward: F) -> SocketAddr
    where
        F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
        Fut: std::future::Future<Output = Response<Full<Bytes>>> + Send,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let forward = forward.clone();
                let service = service_fn(move |request| {
                    let answer = forward(request);
                    async move { Ok::<_, Infallible>(answer.await) }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        addr
    }

    async fn get(front: SocketAddr, path: &str) -> String {
        let stream = TcpStream::connect(front).await.unwrap();
        let (mut sender, connection) = http1::handshake(TokioIo::new(stream)).await.unwrap();
        tokio::spawn(connection);
        let request = Request::get(path)
            .header("host", "t")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8_lossy(&body).into_owned()
    }

    #[tokio::test]
    async fn a_reused_connection_that_cannot_take_the_request_is_replaced() {
        let (upstream, accepted) = upstream().await;
        let endpoint = Arc::new(EndpointState::new(&upstream.to_string()).unwrap());
        let connector = Arc::new(Connector::new(&ProxyConfig::default()));
        let held = Arc::new(Mutex::new(Vec::new()));
        let front = front({
            let (endpoint, connector, held) = (endpoint.clone(), connector.clone(), held.clone());
            move |request: Request<Incoming>| {
                let (endpoint, connector, held) =
                    (endpoint.clone(), connector.clone(), held.clone());
                async move {
                    let hold = request.uri().path() == "/hold";
                    let (response, lease) = connector
                        .send(&endpoint, request.map(|b| RequestBody::client(b, u64::MAX)))
                        .await
                        .unwrap();
                    if hold {
                        // Pooled while its response body is still coming:
                        // the connection cannot carry another request yet.
                        endpoint.idle.push(lease.sender, 10);
                        held.lock().unwrap().push(response);
                        return Response::new(Full::new(Bytes::from_static(b"held")));
                    }
                    let body = response.into_body().collect().await.unwrap().to_bytes();
                    lease.release();
                    Response::new(Full::new(body))
                }
            }
        })
        .await;

        assert_eq!(get(front, "/hold").await, "held");
        assert_eq!(endpoint.idle.len(), 1);
        assert_eq!(get(front, "/").await, "ok");
        assert_eq!(
            accepted.load(Ordering::Relaxed),
            2,
            "a fresh connection was made"
        );
        // The fresh connection went back to the pool and carries the next request.
        assert_eq!(get(front, "/").await, "ok");
        assert_eq!(accepted.load(Ordering::Relaxed), 2);
    }
}
