//! A small blocking client of etcd's v3 JSON gateway (`POST /v3/kv/range`,
//! `/v3/kv/txn`, …): HTTP/1.1 with keep-alive over one connection, moving to
//! the next endpoint when one cannot be reached. The store's calls run on
//! blocking threads, so a blocking client needs no runtime of its own.
//!
//! With [`Security`], the connection is TLS (rustls over the `TcpStream`) and
//! every call carries the token of an etcd user, got from
//! `/v3/auth/authenticate` on first use and again when etcd answers that the
//! token is no longer valid (expired, or etcd's auth was re-enabled).
//!
//! Keys and values are base64 in the gateway's JSON and 64-bit integers are
//! strings; [`b64`] and [`unb64`] do the former.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::{ClientConnection, StreamOwned};
use serde_json::{json, Value};

use super::security::Security;

/// Why a gateway call failed.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("no etcd endpoint answered ({0})")]
    Unreachable(String),
    /// The request may or may not have been applied (the connection broke after it was sent).
    #[error("etcd {endpoint}: {source}")]
    Io {
        endpoint: String,
        #[source]
        source: io::Error,
    },
    #[error("etcd {endpoint} answered {status}: {body}")]
    Status {
        endpoint: String,
        status: u16,
        body: String,
    },
    #[error("etcd {endpoint}: not a JSON answer: {source}")]
    Json {
        endpoint: String,
        #[source]
        source: serde_json::Error,
    },
    /// etcd refused the user's password (or has no such user, or its auth is off).
    #[error("etcd {endpoint} refused user {user:?}: {reason}")]
    Authentication {
        endpoint: String,
        user: String,
        /// etcd's own words, e.g. `etcdserver: authentication failed, invalid user ID or password`.
        reason: String,
    },
}

/// Plain TCP, or TLS over it.
pub(super) enum Stream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(stream) => stream.read(buf),
            Stream::Tls(stream) => stream.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(stream) => stream.write(buf),
            Stream::Tls(stream) => stream.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(stream) => stream.flush(),
            Stream::Tls(stream) => stream.flush(),
        }
    }
}

pub(super) struct Connection {
    pub(super) endpoint: usize,
    pub(super) reader: BufReader<Stream>,
}

/// The live connection and the user's token, changed under one lock.
#[derive(Default)]
pub(super) struct Session {
    connection: Option<Connection>,
    pub(super) token: Option<String>,
}

/// The gateway client: a list of `host:port` endpoints and one live connection.
pub struct Gateway {
    endpoints: Vec<String>,
    timeout: Duration,
    pub(super) security: Security,
    pub(super) session: Mutex<Session>,
}

impl Gateway {
    /// A client over plain HTTP without a user.
    pub fn new(endpoints: Vec<String>, timeout: Duration) -> Gateway {
        Gateway::with_security(endpoints, timeout, Security::default())
    }

    /// A client with TLS and/or a user (see [`Security::from_location`]).
    pub fn with_security(endpoints: Vec<String>, timeout: Duration, security: Security) -> Gateway {
        Gateway {
            endpoints,
            timeout,
            security,
            session: Mutex::new(Session::default()),
        }
    }

    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// Its TLS and user, for another client of the same cluster.
    pub fn security(&self) -> Security {
        self.security.clone()
    }

    /// `https` with TLS, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.security.is_tls() {
            "https"
        } else {
            "http"
        }
    }

    /// POSTs `body` to `path` and returns the JSON answer. A request that
    /// could not be sent is tried on the next endpoint; one whose answer was
    /// lost is not sent again (a transaction may have been applied). With a
    /// user, a token etcd no longer accepts is renewed once and the request
    /// sent again (etcd refused it, so nothing was applied).
    pub fn call(&self, path: &str, body: &Value) -> Result<Value, GatewayError> {
        let body = body.to_string();
        let mut session = self.session.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(credentials) = &self.security.credentials else {
            return self.exchange(&mut session, path, &body);
        };
        let fresh = session.token.is_none();
        if fresh {
            session.token = Some(self.authenticate(&mut session, credentials)?);
        }
        match self.exchange(&mut session, path, &body) {
            Err(GatewayError::Status { status: 401, .. }) if !fresh => {
                session.token = None;
                session.token = Some(self.authenticate(&mut session, credentials)?);
                self.exchange(&mut session, path, &body)
            }
            other => other,
        }
    }

    /// Gets a token for the user; a refusal names the user, never the password.
    pub(super) fn authenticate(
        &self,
        session: &mut MutexGuard<'_, Session>,
        credentials: &super::security::Credentials,
    ) -> Result<String, GatewayError> {
        let request = json!({ "name": credentials.user, "password": credentials.password });
        match self.exchange(session, "/v3/auth/authenticate", &request.to_string()) {
            Ok(answer) => Ok(answer["token"].as_str().unwrap_or_default().to_string()),
            Err(GatewayError::Status {
                endpoint,
                status: 400..=499,
                body,
            }) => {
                let said = serde_json::from_str::<Value>(&body)
                    .ok()
                    .and_then(|v| v["error"].as_str().map(str::to_string))
                    .unwrap_or(body);
                let reason = if said.contains("CommonName") {
                    format!("{said} (etcd runs with --client-cert-auth and its authentication on, and through its JSON gateway it takes no user from a certificate nor a password: use users without --client-cert-auth, or client certificates with etcd's authentication off)")
                } else if said.contains("password") {
                    format!(
                        "{said} (check the password that password_env= or password_file= names)"
                    )
                } else {
                    said
                };
                Err(GatewayError::Authentication {
                    endpoint,
                    user: credentials.user.clone(),
                    reason,
                })
            }
            Err(other) => Err(other),
        }
    }

    /// One request on the live connection (made if there is none), moving to
    /// the next endpoint while a request cannot be sent.
    fn exchange(
        &self,
        session: &mut MutexGuard<'_, Session>,
        path: &str,
        body: &str,
    ) -> Result<Value, GatewayError> {
        let start = session.connection.as_ref().map_or(0, |c| c.endpoint);
        let mut last_error = String::new();
        for attempt in 0..=self.endpoints.len() {
            let reused = attempt == 0 && session.connection.is_some();
            if session.connection.is_none() {
                let index = (start + attempt) % self.endpoints.len();
                match self.connect(index) {
                    Ok(connection) => session.connection = Some(connection),
                    Err(e) => {
                        last_error = format!("{}: {e}", self.endpoints[index]);
                        continue;
                    }
                }
            }
            let Session { connection, token } = &mut **session;
            let live = connection.as_mut().expect("connected above");
            let endpoint = self.endpoints[live.endpoint].clone();
            let written = write_request(live, &endpoint, path, body, token.as_deref());
            if let Err(e) = written {
                // Nothing was applied: try again on a fresh connection.
                *connection = None;
                last_error = format!("{endpoint}: {}", self.explain(e, reused));
                continue;
            }
            match read_response(&mut live.reader) {
                Ok((status, text)) => {
                    if !(200..300).contains(&status) {
                        return Err(GatewayError::Status {
                            endpoint,
                            status,
                            body: text,
                        });
                    }
                    return serde_json::from_str(&text)
                        .map_err(|source| GatewayError::Json { endpoint, source });
                }
                // A kept-alive connection the server had closed: the
                // request never reached it, so sending it again is safe.
                Err(e) if reused && e.kind() == io::ErrorKind::UnexpectedEof => {
                    *connection = None;
                    last_error = format!("{endpoint}: {e}");
                    continue;
                }
                Err(source) => {
                    *connection = None;
                    let source = self.explain(source, reused);
                    return Err(GatewayError::Io { endpoint, source });
                }
            }
        }
        Err(GatewayError::Unreachable(last_error))
    }

    /// A failed first answer on a new TLS connection, with a hint at the
    /// client certificate.
    fn explain(&self, error: io::Error, reused: bool) -> io::Error {
        match &self.security.tls {
            Some(tls) if !reused => refused_client_certificate(error, !tls.client_certificate),
            _ => error,
        }
    }

    pub(super) fn connect(&self, index: usize) -> io::Result<Connection> {
        let endpoint = &self.endpoints[index];
        let address = endpoint
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address"))?;
        let stream = TcpStream::connect_timeout(&address, self.timeout)?;
        stream.set_read_timeout(Some(self.timeout))?;
        stream.set_write_timeout(Some(self.timeout))?;
        let _ = stream.set_nodelay(true);
        let stream = match &self.security.tls {
            None => Stream::Plain(stream),
            Some(tls) => {
                let name = match &tls.server_name {
                    Some(name) => name.clone(),
                    None => host_name(endpoint)?,
                };
                let connection = ClientConnection::new(tls.config.clone(), name)
                    .map_err(|e| io::Error::other(format!("TLS: {e}")))?;
                let mut stream = StreamOwned::new(connection, stream);
                // Shake hands now, so that a certificate etcd or sluice
                // refuses is reported as such, not as a broken request.
                while stream.conn.is_handshaking() {
                    stream
                        .conn
                        .complete_io(&mut stream.sock)
                        .map_err(handshake_error)?;
                }
                Stream::Tls(Box::new(stream))
            }
        };
        Ok(Connection {
            endpoint: index,
            reader: BufReader::new(stream),
        })
    }
}

/// The host of `host:port` as the name its certificate must carry.
fn host_name(endpoint: &str) -> io::Result<ServerName<'static>> {
    let host = endpoint.rsplit_once(':').map_or(endpoint, |(host, _)| host);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_string()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{host:?} is not a DNS name or an IP address to check the certificate against (set server_name=)"),
        )
    })
}

/// A failed handshake, with a hint at the option to look at.
fn handshake_error(error: io::Error) -> io::Error {
    let text = error.to_string();
    let hint = if text.contains("UnknownIssuer") || text.contains("BadSignature") {
        " (etcd's certificate is not signed by a CA that ca= names)"
    } else if text.contains("NotValidForName") || text.contains("not valid for name") {
        " (etcd's certificate is not for this host: set server_name= to a name it carries)"
    } else if text.contains("CertificateRequired") || text.contains("BadCertificate") {
        " (etcd wants a client certificate it trusts: set cert= and key=)"
    } else {
        ""
    };
    io::Error::new(error.kind(), format!("TLS handshake failed: {text}{hint}"))
}

/// With TLS 1.3 etcd refuses a client certificate after the handshake, in
/// its answer to the first request (an alert, or the connection closed
/// before the alert is read): say what to set.
fn refused_client_certificate(error: io::Error, without_certificate: bool) -> io::Error {
    let text = error.to_string();
    let hint = if text.contains("BadCertificate") || text.contains("CertificateRequired") {
        "etcd refused this node's client certificate or got none: set cert= and key= to one signed by a CA etcd trusts"
    } else if without_certificate
        && matches!(
            error.kind(),
            io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::UnexpectedEof
                | io::ErrorKind::BrokenPipe
        )
    {
        "etcd closed the connection after the TLS handshake: if it runs with --client-cert-auth, set cert= and key="
    } else {
        return error;
    };
    io::Error::new(error.kind(), format!("{text} ({hint})"))
}

pub(super) fn write_request(
    connection: &mut Connection,
    host: &str,
    path: &str,
    body: &str,
    token: Option<&str>,
) -> io::Result<()> {
    let authorization = token.map_or_else(String::new, |t| format!("Authorization: {t}\r\n"));
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n{authorization}Content-Length: {}\r\n\r\n",
        body.len()
    );
    let stream = connection.reader.get_mut();
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    stream.flush()
}

/// Reads one response: its status and body (Content-Length or chunked).
fn read_response(reader: &mut BufReader<Stream>) -> io::Result<(u16, String)> {
    let (status, length, chunked) = read_head(reader)?;
    let mut line = String::new();
    let mut body = Vec::new();
    if chunked {
        loop {
            line.clear();
            reader.read_line(&mut line)?;
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| invalid("bad chunk size"))?;
            if size == 0 {
                // Trailers (etcd sends some with an error), then an empty line.
                loop {
                    line.clear();
                    if reader.read_line(&mut line)? == 0 || line.trim_end().is_empty() {
                        break;
                    }
                }
                break;
            }
            let start = body.len();
            body.resize(start + size, 0);
            reader.read_exact(&mut body[start..])?;
            line.clear();
            reader.read_line(&mut line)?;
        }
    } else {
        let length = length.ok_or_else(|| invalid("no Content-Length"))?;
        body.resize(length, 0);
        reader.read_exact(&mut body)?;
    }
    String::from_utf8(body)
        .map(|text| (status, text))
        .map_err(|_| invalid("body is not UTF-8"))
}

/// Reads a response's status line and headers: the status, the
/// Content-Length if any, and whether the body is chunked.
pub(super) fn read_head(reader: &mut BufReader<Stream>) -> io::Result<(u16, Option<usize>, bool)> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| invalid(format!("bad status line {line:?}")))?;
    let mut length = None;
    let mut chunked = false;
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = Some(value.parse::<usize>().map_err(|_| invalid("bad length"))?);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.eq_ignore_ascii_case("chunked");
            }
        }
    }
    Ok((status, length, chunked))
}

fn invalid(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding (RFC 4648 §4), as the gateway wants bytes.
pub fn b64(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().fold(0u32, |n, b| (n << 8) | u32::from(*b)) << (8 * (3 - chunk.len()));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard base64 (padding optional); None on a foreign character.
pub fn unb64(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let mut n = 0u32;
    let mut bits = 0;
    for c in text.bytes().filter(|c| *c != b'=') {
        let value = ALPHABET.iter().position(|a| *a == c)? as u32;
        n = (n << 6) | value;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((n >> bits) as u8);
            n &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (plain, coded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(b64(plain.as_bytes()), coded);
            assert_eq!(unb64(coded).unwrap(), plain.as_bytes());
        }
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(unb64(&b64(&all)).unwrap(), all);
        assert_eq!(unb64("a$"), None);
    }
}
