//! The listening side: accepts TCP (optionally TLS) connections and serves
//! HTTP/1.1 and HTTP/2 on them (h2c prior knowledge on plaintext, ALPN over
//! TLS) with hyper-util's auto builder; holds the current routing snapshot
//! and swaps it atomically; stops accepting on shutdown and drains
//! connections gracefully, for at most the drain time.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use sluice_model::ProxyConfig;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::forward::{handle, Upstreams};
use crate::headers::ClientInfo;
use crate::metrics::Metrics;
use crate::table::RouteTable;

/// The reverse proxy: routing snapshot, upstream client, counters.
pub struct Proxy {
    table: ArcSwap<RouteTable>,
    upstreams: Upstreams,
    metrics: Arc<Metrics>,
    header_read_timeout: Duration,
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
    /// Set at shutdown: HTTP/1.1 answers carry `Connection: close`.
    draining: Arc<AtomicBool>,
}

// === impl Proxy ===

impl Proxy {
    pub fn new(config: &ProxyConfig, table: RouteTable, metrics: Arc<Metrics>) -> Arc<Proxy> {
        Arc::new(Proxy {
            table: ArcSwap::from_pointee(table),
            upstreams: Upstreams::new(config),
            metrics,
            header_read_timeout: config.header_read_timeout,
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
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_read_timeout)
            .writev(false)
            .keep_alive(true);
        builder.http2().timer(TokioTimer::new());
        let builder = Arc::new(builder);
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
            let _ = stream.set_nodelay(true);
            tokio::spawn(serve_connection(
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
            ));
        }
        drop(listener);
        tracing::debug!(connections = graceful.count(), "draining");
        let deadline = tokio::time::Instant::now() + drain;
        // Envoy's way: answers say `Connection: close` for a moment before the
        // idle connections are closed, so that a keep-alive client never
        // sends a request on a connection just closed under it.
        draining.store(true, Ordering::Relaxed);
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
        draining,
    });
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
            let table = connection.proxy.table.load_full();
            let http1 = request.version() < http::Version::HTTP_2;
            let mut response = handle(
                &table,
                &connection.proxy.upstreams,
                &connection.client,
                request,
            )
            .await;
            if http1 && connection.draining.load(Ordering::Relaxed) {
                response.headers_mut().insert(
                    http::header::CONNECTION,
                    http::HeaderValue::from_static("close"),
                );
            }
            Ok::<_, Infallible>(response)
        }
    });
    let served = builder.serve_connection(TokioIo::new(io), service);
    if let Err(error) = watcher.watch(served.into_owned()).await {
        tracing::debug!(%error, "connection ended with an error");
    }
}
