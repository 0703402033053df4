//! Header rewriting between client and upstream: hop-by-hop headers removed
//! (RFC 9110 §7.6.1) in both directions, and the client's address, scheme
//! and host passed on in `X-Forwarded-For`, `X-Forwarded-Proto`,
//! `X-Forwarded-Host` and an RFC 7239 `Forwarded` element.
//!
//! What depends only on the connection (the client's address, the scheme)
//! is formatted once per connection in [`ClientInfo`].

use std::net::{IpAddr, SocketAddr};

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{CONNECTION, FORWARDED, TE, TRAILER, TRANSFER_ENCODING, UPGRADE};
use http::{HeaderMap, HeaderName, HeaderValue};

const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
pub(crate) const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub(crate) const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub(crate) const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// The standard hop-by-hop fields, besides those a `Connection` header names.
const HOP_BY_HOP: [HeaderName; 6] = [
    KEEP_ALIVE,
    PROXY_CONNECTION,
    TE,
    TRAILER,
    TRANSFER_ENCODING,
    UPGRADE,
];

/// What the proxy tells upstreams about one client connection.
#[derive(Debug)]
pub(crate) struct ClientInfo {
    /// The client's IP, as an `X-Forwarded-For` element.
    forwarded_for_ip: HeaderValue,
    /// `for=...;proto=...` of the `Forwarded` element (host is per request).
    forwarded_prefix: Bytes,
    proto: HeaderValue,
}

// === impl ClientInfo ===

impl ClientInfo {
    pub(crate) fn new(peer: SocketAddr, tls: bool) -> ClientInfo {
        let ip = peer.ip().to_canonical();
        let proto = if tls { "https" } else { "http" };
        let node = match ip {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("\"[{v6}]\""),
        };
        let prefix = format!("for={node};proto={proto}");
        ClientInfo {
            forwarded_for_ip: HeaderValue::try_from(ip.to_string())
                .unwrap_or(HeaderValue::from_static("unknown")),
            forwarded_prefix: Bytes::from(prefix),
            proto: HeaderValue::from_static(proto),
        }
    }
}

/// Removes hop-by-hop headers: `Connection`, every header it names, and the
/// standard list (`Keep-Alive`, `Proxy-Connection`, `TE`, `Trailer`,
/// `Transfer-Encoding`, `Upgrade`).
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if headers.contains_key(CONNECTION) {
        let named: Vec<HeaderValue> = headers.get_all(CONNECTION).iter().cloned().collect();
        headers.remove(CONNECTION);
        for value in &named {
            for token in value.as_bytes().split(|&b| b == b',') {
                if let Ok(name) = HeaderName::from_bytes(token.trim_ascii()) {
                    headers.remove(name);
                }
            }
        }
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
}

/// Adds the forwarding headers for a request from `client` whose host
/// (`Host` or `:authority`, port included) is `host`.
pub(crate) fn add_forwarding(
    headers: &mut HeaderMap,
    client: &ClientInfo,
    host: Option<&HeaderValue>,
) {
    append_list(
        headers,
        X_FORWARDED_FOR,
        client.forwarded_for_ip.as_bytes(),
        Some(&client.forwarded_for_ip),
    );
    headers.insert(X_FORWARDED_PROTO, client.proto.clone());
    match host {
        Some(host) => {
            headers.insert(X_FORWARDED_HOST, host.clone());
        }
        None => {
            headers.remove(X_FORWARDED_HOST);
        }
    }

    let host_len = host.map_or(0, |h| h.len() + 9);
    let mut element = BytesMut::with_capacity(client.forwarded_prefix.len() + host_len);
    element.put_slice(&client.forwarded_prefix);
    if let Some(host) = host {
        element.put_slice(b";host=\"");
        for &b in host.as_bytes() {
            if b == b'"' || b == b'\\' {
                element.put_u8(b'\\');
            }
            element.put_u8(b);
        }
        element.put_u8(b'"');
    }
    append_list(headers, FORWARDED, &element, None);
}

/// Appends `element` to the comma-separated list header `name`, merging
/// existing lines into one. `alone` is the value to use when the header is
/// absent, if it is already at hand (saves a copy).
fn append_list(
    headers: &mut HeaderMap,
    name: HeaderName,
    element: &[u8],
    alone: Option<&HeaderValue>,
) {
    let mut existing = headers.get_all(&name).iter().peekable();
    if existing.peek().is_none() {
        let value = match alone {
            Some(v) => v.clone(),
            None => match HeaderValue::from_bytes(element) {
                Ok(v) => v,
                Err(_) => return,
            },
        };
        headers.insert(name, value);
        return;
    }
    let mut merged = BytesMut::new();
    for value in existing {
        merged.put_slice(value.as_bytes());
        merged.put_slice(b", ");
    }
    merged.put_slice(element);
    if let Ok(value) = HeaderValue::from_maybe_shared(merged.freeze()) {
        headers.insert(name, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        map
    }

    #[test]
    fn hop_by_hop_and_connection_named_headers_are_removed() {
        let mut map = headers(&[
            ("connection", "close, x-secret"),
            ("connection", "X-Other"),
            ("x-secret", "1"),
            ("x-other", "1"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("te", "trailers"),
            ("trailer", "x"),
            ("upgrade", "websocket"),
            ("proxy-connection", "keep-alive"),
            ("proxy-authorization", "Basic x"),
            ("x-keep", "yes"),
        ]);
        strip_hop_by_hop(&mut map);
        let mut left: Vec<&str> = map.keys().map(|k| k.as_str()).collect();
        left.sort();
        assert_eq!(left, ["proxy-authorization", "x-keep"]);
    }

    #[test]
    fn forwarding_headers_are_appended() {
        let client = ClientInfo::new("10.1.2.3:5555".parse().unwrap(), false);
        let mut map = headers(&[("x-forwarded-for", "1.1.1.1"), ("forwarded", "for=1.1.1.1")]);
        add_forwarding(
            &mut map,
            &client,
            Some(&HeaderValue::from_static("example.com:8080")),
        );
        assert_eq!(map["x-forwarded-for"], "1.1.1.1, 10.1.2.3");
        assert_eq!(map["x-forwarded-proto"], "http");
        assert_eq!(map["x-forwarded-host"], "example.com:8080");
        assert_eq!(
            map["forwarded"],
            "for=1.1.1.1, for=10.1.2.3;proto=http;host=\"example.com:8080\""
        );
    }

    #[test]
    fn ipv6_clients_are_quoted_and_mapped_v4_unwrapped() {
        let client = ClientInfo::new("[::1]:5555".parse().unwrap(), true);
        let mut map = HeaderMap::new();
        add_forwarding(&mut map, &client, None);
        assert_eq!(map["x-forwarded-for"], "::1");
        assert_eq!(map["forwarded"], "for=\"[::1]\";proto=https");
        assert_eq!(map["x-forwarded-proto"], "https");
        assert!(!map.contains_key("x-forwarded-host"));

        let mapped = ClientInfo::new("[::ffff:10.0.0.1]:1".parse().unwrap(), false);
        let mut map = HeaderMap::new();
        add_forwarding(&mut map, &mapped, None);
        assert_eq!(map["x-forwarded-for"], "10.0.0.1");
    }
}
