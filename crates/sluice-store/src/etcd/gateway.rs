//! A small blocking client of etcd's v3 JSON gateway (`POST /v3/kv/range`,
//! `/v3/kv/txn`, …): HTTP/1.1 with keep-alive over one connection, moving to
//! the next endpoint when one cannot be reached. The store's calls run on
//! blocking threads, so a blocking client needs no runtime of its own.
//!
//! Keys and values are base64 in the gateway's JSON and 64-bit integers are
//! strings; [`b64`] and [`unb64`] do the former.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use serde_json::Value;

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
}

struct Connection {
    endpoint: usize,
    reader: BufReader<TcpStream>,
}

/// The gateway client: a list of `host:port` endpoints and one live connection.
pub struct Gateway {
    endpoints: Vec<String>,
    timeout: Duration,
    connection: Mutex<Option<Connection>>,
}

impl Gateway {
    pub fn new(endpoints: Vec<String>, timeout: Duration) -> Gateway {
        Gateway {
            endpoints,
            timeout,
            connection: Mutex::new(None),
        }
    }

    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// POSTs `body` to `path` and returns the JSON answer. A request that
    /// could not be sent is tried on the next endpoint; one whose answer was
    /// lost is not sent again (a transaction may have been applied).
    pub fn call(&self, path: &str, body: &Value) -> Result<Value, GatewayError> {
        let body = body.to_string();
        let mut guard = self
            .connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let start = guard.as_ref().map_or(0, |c| c.endpoint);
        let mut last_error = String::new();
        for attempt in 0..=self.endpoints.len() {
            let reused = attempt == 0 && guard.is_some();
            if guard.is_none() {
                let index = (start + attempt) % self.endpoints.len();
                match self.connect(index) {
                    Ok(connection) => *guard = Some(connection),
                    Err(e) => {
                        last_error = format!("{}: {e}", self.endpoints[index]);
                        continue;
                    }
                }
            }
            let connection = guard.as_mut().expect("connected above");
            let endpoint = self.endpoints[connection.endpoint].clone();
            let written = write_request(connection, &endpoint, path, &body);
            if let Err(e) = written {
                // Nothing was applied: try again on a fresh connection.
                *guard = None;
                last_error = format!("{endpoint}: {e}");
                continue;
            }
            match read_response(&mut connection.reader) {
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
                    *guard = None;
                    last_error = format!("{endpoint}: {e}");
                    continue;
                }
                Err(source) => {
                    *guard = None;
                    return Err(GatewayError::Io { endpoint, source });
                }
            }
        }
        Err(GatewayError::Unreachable(last_error))
    }

    fn connect(&self, index: usize) -> io::Result<Connection> {
        let address = self.endpoints[index]
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address"))?;
        let stream = TcpStream::connect_timeout(&address, self.timeout)?;
        stream.set_read_timeout(Some(self.timeout))?;
        stream.set_write_timeout(Some(self.timeout))?;
        let _ = stream.set_nodelay(true);
        Ok(Connection {
            endpoint: index,
            reader: BufReader::new(stream),
        })
    }
}

fn write_request(
    connection: &mut Connection,
    host: &str,
    path: &str,
    body: &str,
) -> io::Result<()> {
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let stream = connection.reader.get_mut();
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    stream.flush()
}

/// Reads one response: its status and body (Content-Length or chunked).
fn read_response(reader: &mut BufReader<TcpStream>) -> io::Result<(u16, String)> {
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
    let mut body = Vec::new();
    if chunked {
        loop {
            line.clear();
            reader.read_line(&mut line)?;
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| invalid("bad chunk size"))?;
            if size == 0 {
                line.clear();
                reader.read_line(&mut line)?;
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
