//! The listening side: accepts TCP (optionally TLS) connections and serves
//! HTTP/1.1 and HTTP/2 on them (h2c prior knowledge on plaintext, ALPN over
//! TLS) with hyper-util's auto builder; holds the current routing snapshot
//! and swaps it atomically; stops accepting on shutdown and drains
//! connections gracefully, for at most the drain time.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use sluice_model::{ProxyConfig, ProxyLimits};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::forward::{handle, Upstreams};
use crate::headers::ClientInfo;
use crate::limits::{shed_connection_bytes, shed_response, Gate, ShedReason};
use crate::metrics::Metrics;
use crate::table::RouteTable;

/// The reverse proxy: routing snapshot, upstream client, counters.
pub struct Proxy {
    table: ArcSwap<RouteTable>,
    upstreams: Upstreams,
    metrics: Arc<Metrics>,
    header_read_timeout: Duration,
    limits: ProxyLimits,
    /// `proxy.limits.max_connections`.
    connections: Gate,
    /// `proxy.limits.max_in_flight`.
    in_flight: Gate,
}

/// How long, at shutdown, idle HTTP/1.1 keep-alive connections stay open
/// (at most the drain time): a client about to reuse one gets its answer with
/// `Connection: close` instead of a connection closed under its request.
const IDLE_CLOSE_DELAY: Duration = Duration::from_secs(1);

/// How a connection learns of the shutdown.
struct Lifecycle {
    /// Tells the connection to finish gracefully.
    watcher: Watcher,
    /// Changes (its sender dropped) when the drain time is over.
    closed: watch::Receiver<()>,
    /// Set at shutdown: HTTP/1.1 answers carry `Connection: close`.
    draining: Arc<AtomicBool>,
}

/// What a connection's request handler needs: the proxy and the client.
struct Connection {
    proxy: Arc<Proxy>,
    client: ClientInfo,
    /// A request has arrived: the connection is past `header_read_timeout`'s
    /// first deadline (hyper bounds later heads itself).
    started: AtomicBool,
    /// Set at shutdown: HTTP/1.1 answers carry `Connection: close`.
    draining: Arc<AtomicBool>,
}

// === impl Proxy ===

impl Proxy {
    pub fn new(config: &ProxyConfig, table: RouteTable, metrics: Arc<Metrics>) -> Arc<Proxy> {
        Arc::new(Proxy {
            table: ArcSwap::from_pointee(table),
            upstreams: Upstreams::new(config),
            connections: Gate::new(
                metrics.clone(),
                ShedReason::Connections,
                config.limits.max_connections,
            ),
            in_flight: Gate::new(
                metrics.clone(),
                ShedReason::InFlight,
                config.limits.max_in_flight,
            ),
            metrics,
            header_read_timeout: config.header_read_timeout,
            limits: config.limits.clone(),
        })
    }

    /// Makes `table` the routing snapshot for new requests; requests in
    /// flight finish on the one they started with.
    pub fn publish(&self, table: RouteTable) {
        self.table.store(Arc::new(table));
    }

    /// The routing snapshot in force.
    pub fn current(&self) -> Arc<RouteTable> {
        self.table.load_full()
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Accepts connections on `listener` (TLS when `tls` is given) until
    /// `shutdown` resolves; then stops accepting, lets open connections
    /// finish their requests (HTTP/1 keep-alive is closed, HTTP/2 gets
    /// GOAWAY) and returns when they are done or after `drain`, whichever
    /// is first (connections still open then are closed).
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        tls: Option<TlsAcceptor>,
        shutdown: impl Future<Output = ()> + Send + 'static,
        drain: Duration,
    ) -> io::Result<()> {
        let builder = Arc::new(self.builder());
        let graceful = GracefulShutdown::new();
        let draining = Arc::new(AtomicBool::new(false));
        // Dropped after the drain time: closes whatever is still open.
        let (force_close, closed) = watch::channel(());

        tokio::pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                biased;
                () = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        accept_error(error).await;
                        continue;
                    }
                },
            };
            let Some(permit) = self.connections.enter() else {
                tokio::spawn(shed_connection(stream, tls.is_none()));
                continue;
            };
            let _ = stream.set_nodelay(true);
            let connection = serve_connection(
                self.clone(),
                builder.clone(),
                stream,
                peer,
                tls.clone(),
                Lifecycle {
                    watcher: graceful.watcher(),
                    closed: closed.clone(),
                    draining: draining.clone(),
                },
            );
            tokio::spawn(async move {
                connection.await;
                // The place under max_connections is free once the socket is.
                drop(permit);
            });
        }
        drop(listener);
        tracing::debug!(connections = graceful.count(), "draining");
        let deadline = tokio::time::Instant::now() + drain;
        // Envoy's way: answers say `Connection: close` for a moment before the
        // idle connections are closed, so that a keep-alive client never
        // sends a request on a connection just closed under it.
        draining.store(true, Relaxed);
        let idle_close = tokio::time::Instant::now() + IDLE_CLOSE_DELAY.min(drain / 2);
        while graceful.count() > 0 && tokio::time::Instant::now() < idle_close {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::select! {
            () = graceful.shutdown() => {}
            () = tokio::time::sleep_until(deadline) => {
                tracing::info!(?drain, "drain time over; closing the remaining connections");
            }
        }
        drop(force_close);
        Ok(())
    }
}

impl Proxy {
    /// The HTTP/1 and HTTP/2 settings, with `proxy.limits` applied: hyper
    /// answers 431 to a head over `max_header_bytes` or `max_headers`, and
    /// sends GOAWAY to an HTTP/2 client resetting too many streams.
    fn builder(&self) -> auto::Builder<TokioExecutor> {
        let limits = &self.limits;
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_read_timeout)
            .max_buf_size(limits.max_header_bytes)
            .max_headers(limits.max_headers)
            .writev(false)
            .keep_alive(true);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(limits.http2_max_concurrent_streams)
            .max_pending_accept_reset_streams(limits.http2_max_pending_reset_streams)
            .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
        builder
    }
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("table", &self.table.load())
            .finish_non_exhaustive()
    }
}

/// Errors of `accept` are about one connection (or a full fd table): back
/// off briefly on the latter instead of spinning.
async fn accept_error(error: io::Error) {
    match error.kind() {
        io::ErrorKind::ConnectionAborted
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::Interrupted => {}
        _ => {
            tracing::warn!(%error, "accept failed");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Answers a connection over `max_connections` with a 503 (plaintext) or
/// just closes it (TLS: a handshake is the very work being shed). The
/// request is drained briefly first, so that closing does not reset the
/// connection before the client read the answer.
async fn shed_connection(mut stream: TcpStream, plaintext: bool) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if !plaintext {
        return;
    }
    let linger = async {
        stream.write_all(&shed_connection_bytes()).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 1024];
        while stream.read(&mut sink).await? > 0 {}
        Ok::<_, io::Error>(())
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), linger).await;
}

async fn serve_connection(
    proxy: Arc<Proxy>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    lifecycle: Lifecycle,
) {
    let Lifecycle {
        watcher,
        mut closed,
        draining,
    } = lifecycle;
    let handshake_timeout = proxy.header_read_timeout;
    let connection = Arc::new(Connection {
        proxy,
        client: ClientInfo::new(peer, tls.is_some()),
        started: AtomicBool::new(false),
        draining,
    });
    // hyper times out a slow request head, but not a client that sends
    // nothing, or only the start of the HTTP/2 preface: bound the wait for
    // the first request here.
    let first_request = {
        let connection = connection.clone();
        async move {
            tokio::time::sleep(handshake_timeout).await;
            if connection.started.load(Relaxed) {
                std::future::pending::<()>().await;
            }
        }
    };
    let served = async {
        match tls {
            None => serve_io(&builder, stream, connection, watcher).await,
            Some(acceptor) => {
                match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => serve_io(&builder, stream, connection, watcher).await,
                    Ok(Err(error)) => tracing::debug!(%error, %peer, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                }
            }
        }
    };
    tokio::select! {
        () = served => {}
        () = first_request => tracing::debug!(%peer, "no request within the header read timeout"),
        _ = closed.changed() => {}
    }
}

async fn serve_io<I>(
    builder: &auto::Builder<TokioExecutor>,
    io: I,
    connection: Arc<Connection>,
    watcher: Watcher,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |request| {
        let connection = connection.clone();
        async move {
            connection.started.store(true, Relaxed);
            let Some(permit) = connection.proxy.in_flight.enter() else {
                return Ok::<_, Infallible>(shed_response(ShedReason::InFlight));
            };
            let table = connection.proxy.table.load_full();
            let http1 = request.version() < http::Version::HTTP_2;
            let mut response = handle(
                &table,
                &connection.proxy.upstreams,
                &connection.client,
                request,
            )
            .await;
            if http1 && connection.draining.load(Relaxed) {
                response.headers_mut().insert(
                    http::header::CONNECTION,
                    http::HeaderValue::from_static("close"),
                );
            }
            Ok::<_, Infallible>(response.map(|body| body.holding(permit)))
        }
    });
    let served = builder.serve_connection(TokioIo::new(io), service);
    if let Err(error) = watcher.watch(served.into_owned()).await {
        tracing::debug!(%error, "connection ended with an error");
    }
}
