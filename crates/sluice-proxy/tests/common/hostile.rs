//! Helpers for hostile-input tests: raw TCP clients that send exact bytes,
//! an upstream that records every request it was given (so a test can
//! assert that no smuggled request reached it), and raw upstreams that
//! misbehave (reset, garbage, hang, stall, endless body).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::{with_patience, PATIENCE};

/// What a [`recorder`] upstream was given.
#[derive(Default, Debug)]
pub struct Seen {
    /// `METHOD /path body-length` (or `... body-error`) per request, in order.
    pub requests: Mutex<Vec<String>>,
    /// Requests being answered now, and the most at once.
    pub in_flight: AtomicUsize,
    pub max_in_flight: AtomicUsize,
    /// Bytes of `/endless` bodies produced so far.
    pub produced: AtomicU64,
}

impl Seen {
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

/// An HTTP/1.1 upstream that records each request (line and body length)
/// and answers `ok`; `/delay?ms=N` answers after N ms; `/endless` streams
/// a body that never ends, produced only as fast as it is read.
pub async fn recorder() -> (SocketAddr, Arc<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let shared = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let seen = shared.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| record(seen.clone(), req));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, seen)
}

async fn record(
    seen: Arc<Seen>,
    req: Request<Incoming>,
) -> Result<Response<BoxBody<Bytes, Infallible>>, Infallible> {
    let now = seen.in_flight.fetch_add(1, SeqCst) + 1;
    seen.max_in_flight.fetch_max(now, SeqCst);
    let line = format!("{} {}", req.method(), req.uri().path());
    let delay = req
        .uri()
        .query()
        .and_then(|q| q.strip_prefix("ms="))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let endless = req.uri().path() == "/endless";
    let body = match req.into_body().collect().await {
        Ok(body) => format!("{}", body.to_bytes().len()),
        Err(_) => "body-error".to_string(),
    };
    seen.requests.lock().unwrap().push(format!("{line} {body}"));
    tokio::time::sleep(Duration::from_millis(delay)).await;
    seen.in_flight.fetch_sub(1, SeqCst);
    let body = if endless {
        BoxBody::new(Endless { seen })
    } else {
        BoxBody::new(Full::new(Bytes::from_static(b"ok")))
    };
    Ok(Response::new(body))
}

/// A body of 64 KiB frames that never ends, counting what it produced.
struct Endless {
    seen: Arc<Seen>,
}

impl Body for Endless {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        static CHUNK: [u8; 64 * 1024] = [b'x'; 64 * 1024];
        self.seen.produced.fetch_add(CHUNK.len() as u64, SeqCst);
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(&CHUNK)))))
    }
}

/// How a [`raw_upstream`] misbehaves once it has read a request head.
#[derive(Clone, Copy, Debug)]
pub enum Misbehaviour {
    /// Closes with a TCP reset (SO_LINGER 0).
    Reset,
    /// Answers bytes that are not HTTP.
    Garbage,
    /// Never answers.
    Hang,
    /// Sends a head announcing 1000 bytes, then 10 of them, then nothing.
    StallBody,
    /// Sends a head announcing 1000 bytes, then 10 of them, then a TCP reset.
    ResetBody,
    /// Answers a 200 with a chunked body `hello` at once, without reading
    /// the request body, then waits (never ends its body).
    AnswerEarly,
}

/// A TCP upstream that reads a request head and misbehaves; counts heads read.
pub async fn raw_upstream(how: Misbehaviour) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let heads = Arc::new(AtomicUsize::new(0));
    let counter = heads.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let heads = counter.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match stream.read(&mut byte).await {
                        Ok(1) => head.push(byte[0]),
                        _ => return,
                    }
                }
                heads.fetch_add(1, SeqCst);
                match how {
                    Misbehaviour::Reset => {
                        let _ = stream.set_zero_linger();
                        drop(stream);
                    }
                    Misbehaviour::Garbage => {
                        let _ = stream.write_all(b"SSH-2.0-OpenSSH_9.6\r\n\r\n").await;
                        let _ = stream.shutdown().await;
                    }
                    Misbehaviour::Hang => {
                        tokio::time::sleep(PATIENCE).await;
                    }
                    Misbehaviour::StallBody => {
                        let _ = stream
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n0123456789")
                            .await;
                        tokio::time::sleep(PATIENCE).await;
                    }
                    Misbehaviour::AnswerEarly => {
                        let _ = stream
                            .write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n")
                            .await;
                        // Reads (and drops) the request body until it ends or breaks.
                        let mut sink = [0u8; 4096];
                        while let Ok(1..) = stream.read(&mut sink).await {}
                    }
                    Misbehaviour::ResetBody => {
                        let _ = stream
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n0123456789")
                            .await;
                        let _ = stream.flush().await;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        let _ = stream.set_zero_linger();
                        drop(stream);
                    }
                }
            });
        }
    });
    (addr, heads)
}

/// Sends `bytes` on a new connection to `addr` and reads until the server
/// closes it (or resets it); returns what was read. A server that keeps
/// the connection open fails the test after [`PATIENCE`].
pub async fn exchange(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    read_until_closed(&mut stream).await
}

/// Reads until EOF or a reset, within [`PATIENCE`].
pub async fn read_until_closed(stream: &mut TcpStream) -> String {
    with_patience(async {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    })
    .await
}

/// The status line of a raw response (empty when nothing came).
pub fn status_line(response: &str) -> &str {
    response.lines().next().unwrap_or("")
}

/// Polls `done` every 20 ms until it holds, within [`PATIENCE`].
pub async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let waited = tokio::time::timeout(PATIENCE, async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "never happened: {what}");
}

/// A config with one service `web` on any host whose stable pool is `stable`.
pub fn one_service(stable: SocketAddr, extra: &str) -> String {
    format!(
        "services:\n  - name: web\n    versions:\n      stable: {{ endpoints: [\"{stable}\"] }}\n{extra}\n"
    )
}
