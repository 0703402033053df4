//! A wake-up signal for cluster nodes: a blocking watch of key prefixes
//! (`POST /v3/watch`), on a thread and a connection of its own, that calls
//! back when a key under one of them changes. etcd's gateway answers a
//! long-lived chunked stream of JSON messages, one per line, the first ones
//! confirming each watch (`created`).
//!
//! Not for: reading what changed. A follower reads the store again when
//! woken, so a missed event costs nothing but latency: the watch wakes its
//! follower when it (re)connects and when it goes down, and while it is
//! down the follower polls as it would without it.

use std::io::{self, BufRead, BufReader, Read};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::Duration;

use serde_json::{json, Value};

use super::gateway::{b64, read_head, unb64, write_request, Gateway, GatewayError, Stream};
use super::range_end;

/// The first wait before connecting again; doubled up to [`MAX_BACKOFF`].
pub const MIN_BACKOFF: Duration = Duration::from_millis(100);

/// The longest wait between two attempts to watch.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// A stream quiet for this long is opened again (a network that drops
/// packets silently would otherwise hold it forever).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// What woke the follower.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wake {
    /// A key under the prefix of this index (in the order given) changed.
    Changed(usize),
    /// The watch (re)connected or went down: anything may have changed.
    Everything,
}

/// A running watch; stops (at its next message or idle timeout) when dropped.
pub struct WatchHandle {
    up: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    last_error: Arc<Mutex<Option<String>>>,
}

impl WatchHandle {
    /// Whether every prefix is watched now (else the follower should poll).
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::SeqCst)
    }

    /// Why the watch last went down, if it did.
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for WatchHandle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Watches every key under each of `prefixes` on a thread of its own,
/// reconnecting with a backoff ([`MIN_BACKOFF`] to [`MAX_BACKOFF`]), and
/// calls `wake` as [`Wake`] says.
pub fn spawn_watch(
    gateway: Gateway,
    prefixes: Vec<String>,
    wake: impl Fn(Wake) + Send + 'static,
) -> io::Result<WatchHandle> {
    let up = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let last_error = Arc::new(Mutex::new(None));
    let handle = WatchHandle {
        up: up.clone(),
        stop: stop.clone(),
        last_error: last_error.clone(),
    };
    thread::Builder::new()
        .name("sluice-etcd-watch".into())
        .spawn(move || {
            let mut backoff = MIN_BACKOFF;
            while !stop.load(Ordering::SeqCst) {
                let outcome = watch_once(&gateway, &prefixes, &up, &stop, &wake);
                if up.swap(false, Ordering::SeqCst) {
                    backoff = MIN_BACKOFF;
                    wake(Wake::Everything);
                }
                if let Err(e) = outcome {
                    *last_error.lock().unwrap_or_else(PoisonError::into_inner) =
                        Some(e.to_string());
                }
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                thread::sleep(backoff);
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        })?;
    Ok(handle)
}

/// One watch stream, until it ends, breaks, is canceled or goes idle.
fn watch_once(
    gateway: &Gateway,
    prefixes: &[String],
    up: &AtomicBool,
    stop: &AtomicBool,
    wake: &impl Fn(Wake),
) -> Result<(), GatewayError> {
    // One create request per prefix, in one body: the gateway sends each
    // to the same stream.
    let body: String = prefixes
        .iter()
        .map(|prefix| {
            let create = json!({ "create_request": {
                "key": b64(prefix.as_bytes()),
                "range_end": b64(&range_end(prefix.as_bytes())),
            }});
            format!("{create}\n")
        })
        .collect();
    let (endpoint, body) = open_stream(gateway, "/v3/watch", &body)?;
    let io_error = |source| GatewayError::Io {
        endpoint: endpoint.clone(),
        source,
    };
    let mut lines = BufReader::new(body);
    let mut line = String::new();
    let mut created = 0;
    while !stop.load(Ordering::SeqCst) {
        line.clear();
        match lines.read_line(&mut line) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(())
            }
            Err(e) => return Err(io_error(e)),
        }
        if line.trim().is_empty() {
            continue;
        }
        let message: Value = serde_json::from_str(&line).map_err(|source| GatewayError::Json {
            endpoint: endpoint.clone(),
            source,
        })?;
        let result = &message["result"];
        if !message["error"].is_null() || result["canceled"].as_bool() == Some(true) {
            return Err(GatewayError::Status {
                endpoint: endpoint.clone(),
                status: 200,
                body: line.trim().to_string(),
            });
        }
        if result["created"].as_bool() == Some(true) {
            created += 1;
            if created == prefixes.len() {
                up.store(true, Ordering::SeqCst);
                // Whatever changed while no watch ran.
                wake(Wake::Everything);
            }
        }
        for event in result["events"].as_array().into_iter().flatten() {
            let Some(key) = event["kv"]["key"].as_str().and_then(unb64) else {
                continue;
            };
            if let Some(index) = prefixes
                .iter()
                .position(|prefix| key.starts_with(prefix.as_bytes()))
            {
                wake(Wake::Changed(index));
            }
        }
    }
    Ok(())
}

/// POSTs `body` on a connection of its own and returns the endpoint and the
/// (de-chunked) body of its `200` answer, read with [`IDLE_TIMEOUT`].
fn open_stream(
    gateway: &Gateway,
    path: &str,
    body: &str,
) -> Result<(String, StreamBody), GatewayError> {
    let token = match &gateway.security.credentials {
        None => None,
        Some(credentials) => {
            let mut session = gateway
                .session
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if session.token.is_none() {
                session.token = Some(gateway.authenticate(&mut session, credentials)?);
            }
            session.token.clone()
        }
    };
    let mut last_error = String::new();
    for (index, endpoint) in gateway.endpoints().iter().enumerate() {
        let mut connection = match gateway.connect(index) {
            Ok(connection) => connection,
            Err(e) => {
                last_error = format!("{endpoint}: {e}");
                continue;
            }
        };
        let io_error = |source| GatewayError::Io {
            endpoint: endpoint.clone(),
            source,
        };
        write_request(&mut connection, endpoint, path, body, token.as_deref()).map_err(io_error)?;
        socket(connection.reader.get_ref())
            .set_read_timeout(Some(IDLE_TIMEOUT))
            .map_err(io_error)?;
        let (status, _, chunked) = read_head(&mut connection.reader).map_err(io_error)?;
        if status != 200 {
            if status == 401 {
                // The token expired: the next attempt gets a new one.
                gateway
                    .session
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .token = None;
            }
            return Err(GatewayError::Status {
                endpoint: endpoint.clone(),
                status,
                body: String::new(),
            });
        }
        let body = StreamBody {
            reader: connection.reader,
            chunked,
            left_in_chunk: 0,
            started: false,
            done: false,
        };
        return Ok((endpoint.clone(), body));
    }
    Err(GatewayError::Unreachable(last_error))
}

fn socket(stream: &Stream) -> &TcpStream {
    match stream {
        Stream::Plain(stream) => stream,
        Stream::Tls(stream) => &stream.sock,
    }
}

/// The body of a streamed answer, without its chunk framing.
struct StreamBody {
    reader: BufReader<Stream>,
    chunked: bool,
    left_in_chunk: usize,
    /// A chunk was read, so its closing CRLF comes before the next size.
    started: bool,
    done: bool,
}

impl Read for StreamBody {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done || buf.is_empty() {
            return Ok(0);
        }
        if !self.chunked {
            return self.reader.read(buf);
        }
        if self.left_in_chunk == 0 {
            let mut line = String::new();
            if self.started {
                self.reader.read_line(&mut line)?;
                line.clear();
            }
            if self.reader.read_line(&mut line)? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            self.started = true;
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
            if size == 0 {
                self.done = true;
                return Ok(0);
            }
            self.left_in_chunk = size;
        }
        let wanted = buf.len().min(self.left_in_chunk);
        let read = self.reader.read(&mut buf[..wanted])?;
        if read == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.left_in_chunk -= read;
        Ok(read)
    }
}
