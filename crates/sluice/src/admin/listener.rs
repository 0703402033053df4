//! The admin API over TLS: accepts connections, completes the handshake
//! with the listener's current certificate (see `sluice_proxy::ServerCert`),
//! and serves the router over HTTP/1.1 or HTTP/2 as ALPN chose. Plain HTTP
//! goes through `axum::serve` instead.

use std::future::Future;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use sluice_proxy::TlsAcceptor;
use tokio::net::TcpListener;
use tower::ServiceExt;

/// Longest a client may take to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `router` on `socket` over TLS until `stop` completes; connections
/// already open finish on their own.
pub async fn serve_tls(
    socket: TcpListener,
    router: Router,
    acceptor: TlsAcceptor,
    stop: impl Future<Output = ()>,
) {
    tokio::pin!(stop);
    loop {
        let (tcp, peer) = tokio::select! {
            () = &mut stop => return,
            accepted = socket.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!("admin API: cannot accept a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let (acceptor, router) = (acceptor.clone(), router.clone());
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, "admin API: TLS handshake failed: {e}");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "admin API: TLS handshake timed out");
                    return;
                }
            };
            let service =
                hyper::service::service_fn(move |request| router.clone().oneshot(request));
            if let Err(e) = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tls), service)
                .await
            {
                tracing::debug!(%peer, "admin API connection ended: {e}");
            }
        });
    }
}
