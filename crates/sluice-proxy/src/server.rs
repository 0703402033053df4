//! The listening side: accepts TCP (optionally TLS) connections and serves
//! HTTP/1.1 and HTTP/2 on them (h2c prior knowledge on plaintext, ALPN over
//! TLS) with hyper-util's auto builder; holds the current routing snapshot
//! and swaps it atomically; stops accepting on shutdown and drains
//! connections gracefully, for at most the drain time.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
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

/// What a connection's request handler needs: the proxy and the client.
struct Connection {
    proxy: Arc<Proxy>,
    client: ClientInfo,
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
                graceful.watcher(),
                closed.clone(),
            ));
        }
        drop(listener);
        tracing::debug!(connections = graceful.count(), "draining");
        tokio::select! {
            () = graceful.shutdown() => {}
            () = tokio::time::sleep(drain) => {
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
    watcher: Watcher,
    mut closed: watch::Receiver<()>,
) {
    let handshake_timeout = proxy.header_read_timeout;
    let connection = Arc::new(Connection {
        proxy,
        client: ClientInfo::new(peer, tls.is_some()),
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
            let response = handle(
                &table,
                &connection.proxy.upstreams,
                &connection.client,
                request,
            )
            .await;
            Ok::<_, Infallible>(response)
        }
    });
    let served = builder.serve_connection(TokioIo::new(io), service);
    if let Err(error) = watcher.watch(served.into_owned()).await {
        tracing::debug!(%error, "connection ended with an error");
    }
}
