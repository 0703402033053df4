//! Test helpers: small real upstream servers (hyper, HTTP/1.1) on loopback
//! port 0, a proxy started on port 0 in-process, and a client with bounded
//! waits so that a broken proxy fails a test instead of hanging it.
#![allow(dead_code)]

pub mod hostile;

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use sluice_model::Config;
use sluice_proxy::{Metrics, Proxy, RouteTable, ServiceRouting};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Longest wait for anything in a test; only there to turn a hang into a failure.
pub const PATIENCE: Duration = Duration::from_secs(20);

pub type TestClient = Client<HttpConnector, Full<Bytes>>;

/// Starts an upstream answering as `name`. Paths:
/// - `/echo...`: body is the request headers, one `name: value` line each;
/// - `/fail`: 500;
/// - `/slow`: answers after 5 s; `/delay?ms=N` after N ms;
/// - `/stream?bytes=N`: N bytes of [`pattern`] in 64 KiB chunks;
/// - `/upload`: reads the request body, answers its length;
/// - anything else: body `name`.
///
/// Every response has `x-upstream: name`, and `connection: x-hop` with
/// `x-hop: 1` and `keep-alive: timeout=5` (hop-by-hop, for the proxy to drop).
pub async fn upstream(name: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = service_fn(move |req| answer(name, req));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

async fn answer(
    name: &'static str,
    req: Request<Incoming>,
) -> Result<Response<BoxBody<Bytes, Infallible>>, Infallible> {
    let path = req.uri().path().to_string();
    let mut status = StatusCode::OK;
    let body: BoxBody<Bytes, Infallible> = if path.starts_with("/echo") {
        let mut text = String::new();
        for (k, v) in req.headers() {
            text.push_str(&format!("{k}: {}\n", v.to_str().unwrap_or("?")));
        }
        text.push_str(&format!("uri: {}\n", req.uri()));
        full(text)
    } else if path == "/fail" {
        status = StatusCode::INTERNAL_SERVER_ERROR;
        full(name)
    } else if path == "/slow" {
        tokio::time::sleep(Duration::from_secs(5)).await;
        full(name)
    } else if path == "/delay" {
        let ms: u64 = req
            .uri()
            .query()
            .and_then(|q| q.strip_prefix("ms="))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        full(name)
    } else if path == "/stream" {
        let bytes: usize = req
            .uri()
            .query()
            .and_then(|q| q.strip_prefix("bytes="))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        BoxBody::new(Pattern {
            sent: 0,
            total: bytes,
        })
    } else if path == "/upload" {
        let body = req
            .into_body()
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        let ok = body.iter().enumerate().all(|(i, b)| *b == pattern(i));
        full(format!(
            "{} {}",
            body.len(),
            if ok { "intact" } else { "corrupt" }
        ))
    } else {
        full(name)
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert("x-upstream", name.parse().unwrap());
    headers.insert("connection", "x-hop".parse().unwrap());
    headers.insert("x-hop", "1".parse().unwrap());
    headers.insert("keep-alive", "timeout=5".parse().unwrap());
    Ok(response)
}

fn full(text: impl Into<Bytes>) -> BoxBody<Bytes, Infallible> {
    BoxBody::new(Full::new(text.into()))
}

/// Byte `i` of streamed test bodies: a sequence that a lost or reordered chunk breaks.
pub fn pattern(i: usize) -> u8 {
    (i % 251) as u8
}

/// A body of `total` pattern bytes in 64 KiB frames, produced as it is read.
pub struct Pattern {
    pub sent: usize,
    pub total: usize,
}

impl Body for Pattern {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.sent >= self.total {
            return Poll::Ready(None);
        }
        let n = (self.total - self.sent).min(64 * 1024);
        let chunk: Vec<u8> = (self.sent..self.sent + n).map(pattern).collect();
        self.sent += n;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(chunk)))))
    }
}

/// An address where nothing listens (bound, then released).
pub async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    addr
}

/// A proxy running on a loopback port.
pub struct Running {
    pub proxy: Arc<Proxy>,
    pub metrics: Arc<Metrics>,
    pub addr: SocketAddr,
    pub config: Config,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl Running {
    /// Signals shutdown and waits for `serve` to return.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(PATIENCE, task)
                .await
                .unwrap()
                .unwrap()
                .unwrap();
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn publish(&self, routing: &HashMap<String, ServiceRouting>) {
        self.proxy
            .publish(RouteTable::build(&self.config, routing, &self.metrics));
    }
}

/// Starts a proxy for the YAML `config` with `routing`, draining for at most 5 s on stop.
pub async fn start_proxy(yaml: &str, routing: HashMap<String, ServiceRouting>) -> Running {
    let config = Config::from_yaml(yaml).unwrap_or_else(|e| panic!("bad test config: {e}"));
    let metrics = Metrics::new();
    let table = RouteTable::build(&config, &routing, &metrics);
    let proxy = Proxy::new(&config.proxy, table, metrics.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let shutdown = async move {
        let _ = rx.await;
    };
    let task = tokio::spawn(
        proxy
            .clone()
            .serve(listener, None, shutdown, Duration::from_secs(5)),
    );
    Running {
        proxy,
        metrics,
        addr,
        config,
        shutdown: Some(tx),
        task: Some(task),
    }
}

pub fn client() -> TestClient {
    Client::builder(TokioExecutor::new()).build_http()
}

pub fn h2c_client() -> TestClient {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

/// A response read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Answer {
    /// The `x-upstream` header: which upstream answered.
    pub fn upstream(&self) -> &str {
        self.headers
            .get("x-upstream")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// Sends `request`, reads the whole answer, within [`PATIENCE`].
pub async fn send(client: &TestClient, request: Request<Full<Bytes>>) -> Answer {
    with_patience(async {
        let response = client.request(request).await.expect("request failed");
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await.expect("body failed").to_bytes();
        Answer {
            status: parts.status,
            headers: parts.headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    })
    .await
}

/// GET `url` with a Host header and extra headers.
pub async fn get(client: &TestClient, url: &str, host: &str, headers: &[(&str, &str)]) -> Answer {
    let mut builder = Request::get(url).header("host", host);
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    send(client, builder.body(Full::new(Bytes::new())).unwrap()).await
}

pub async fn with_patience<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, f)
        .await
        .expect("test step took longer than the patience bound")
}

/// A routing entry.
pub fn routing(
    service: &str,
    stable: SocketAddr,
    canary: Option<SocketAddr>,
    percent: f64,
) -> HashMap<String, ServiceRouting> {
    HashMap::from([(
        service.to_string(),
        ServiceRouting {
            stable: vec![stable.to_string()],
            canary: canary.map(|c| vec![c.to_string()]),
            canary_weight: sluice_model::Weight::from_percent(percent).unwrap(),
            match_active: false,
            cohort: None,
            mirror_active: false,
            unavailable: None,
        },
    )])
}

/// A config with one service `web` (any host, `/`) whose pools are `stable` and `canary`.
pub fn web_config(stable: SocketAddr, canary: SocketAddr, extra: &str) -> String {
    format!(
        r#"
services:
  - name: web
    versions:
      stable: {{ endpoints: ["{stable}"] }}
      canary: {{ endpoints: ["{canary}"] }}
{extra}
"#
    )
}
