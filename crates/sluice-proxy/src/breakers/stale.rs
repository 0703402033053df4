//! Stale-data fallback: the last good answer to each cacheable GET of a
//! service, kept so that a request its breaker rejects can still get data
//! (marked `x-sluice-fallback: stale` with an `Age`). Bounded in entries and
//! body size; the oldest entry is forgotten first. Filled by teeing the
//! response body as it streams to the client, never by buffering before it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Response, StatusCode};

use crate::body::ProxyBody;

/// One service's remembered answers.
pub(crate) struct StaleCache {
    max_entries: usize,
    pub(crate) max_body_bytes: usize,
    entries: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    by_key: HashMap<String, Arc<Entry>>,
    /// Keys oldest first (a key re-stored moves to the back).
    order: VecDeque<String>,
}

struct Entry {
    stored: Instant,
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

/// A response body on its way to the client, copied while it fits.
pub(crate) struct Capture {
    cache: Arc<StaleCache>,
    key: String,
    status: StatusCode,
    headers: HeaderMap,
    body: BytesMut,
    overflowed: bool,
}

// === impl StaleCache ===

impl StaleCache {
    pub(crate) fn new(max_entries: usize, max_body_bytes: usize) -> StaleCache {
        StaleCache {
            max_entries: max_entries.max(1),
            max_body_bytes,
            entries: Mutex::new(Entries::default()),
        }
    }

    /// The key of a request: host and path with query.
    pub(crate) fn key(host: Option<&HeaderValue>, path_and_query: &str) -> String {
        let host = host.and_then(|h| h.to_str().ok()).unwrap_or("");
        format!("{host}{path_and_query}")
    }

    /// Whether a response to a GET may be remembered (private and no-store ones are not).
    pub(crate) fn cacheable(status: StatusCode, headers: &HeaderMap) -> bool {
        if status != StatusCode::OK || headers.contains_key(http::header::SET_COOKIE) {
            return false;
        }
        !headers
            .get_all(http::header::CACHE_CONTROL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|d| {
                let d = d.trim();
                d.eq_ignore_ascii_case("no-store") || d.eq_ignore_ascii_case("private")
            })
    }

    pub(crate) fn capture(
        self: &Arc<Self>,
        key: String,
        status: StatusCode,
        headers: &HeaderMap,
    ) -> Capture {
        Capture {
            cache: self.clone(),
            key,
            status,
            headers: headers.clone(),
            body: BytesMut::new(),
            overflowed: false,
        }
    }

    fn store(&self, key: String, entry: Entry) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries
            .by_key
            .insert(key.clone(), Arc::new(entry))
            .is_some()
        {
            entries.order.retain(|k| *k != key);
        }
        entries.order.push_back(key);
        while entries.order.len() > self.max_entries {
            if let Some(oldest) = entries.order.pop_front() {
                entries.by_key.remove(&oldest);
            }
        }
    }

    /// The remembered answer for `key` if it is at most `max_age` old.
    pub(crate) fn answer(&self, key: &str, max_age: Duration) -> Option<Response<ProxyBody>> {
        let entry = {
            let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
            entries.by_key.get(key)?.clone()
        };
        let age = entry.stored.elapsed();
        if age > max_age {
            return None;
        }
        let mut response = Response::new(ProxyBody::text(entry.body.clone()));
        *response.status_mut() = entry.status;
        *response.headers_mut() = entry.headers.clone();
        let headers = response.headers_mut();
        headers.insert(super::X_SLUICE_FALLBACK, HeaderValue::from_static("stale"));
        headers.insert(http::header::AGE, HeaderValue::from(age.as_secs()));
        headers.remove(http::header::CONTENT_LENGTH);
        Some(response)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .by_key
            .len()
    }
}

// === impl Capture ===

impl Capture {
    pub(crate) fn push(&mut self, data: &[u8]) {
        if self.overflowed {
            return;
        }
        if self.body.len() + data.len() > self.cache.max_body_bytes {
            self.overflowed = true;
            self.body = BytesMut::new();
            return;
        }
        self.body.extend_from_slice(data);
    }

    /// The body ended whole: remember it.
    pub(crate) fn finish(self) {
        if self.overflowed {
            return;
        }
        let entry = Entry {
            stored: Instant::now(),
            status: self.status,
            headers: self.headers,
            body: self.body.freeze(),
        };
        self.cache.store(self.key, entry);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capture(cache: &Arc<StaleCache>, key: &str, body: &[u8]) {
        let mut c = cache.capture(key.into(), StatusCode::OK, &HeaderMap::new());
        c.push(body);
        c.finish();
    }

    #[test]
    fn oldest_entry_goes_first_and_big_bodies_are_skipped() {
        let cache = Arc::new(StaleCache::new(2, 4));
        capture(&cache, "a", b"1");
        capture(&cache, "b", b"2");
        capture(&cache, "a", b"3");
        capture(&cache, "c", b"4");
        assert_eq!(cache.len(), 2);
        assert!(cache.answer("b", Duration::from_secs(60)).is_none());
        let a = cache.answer("a", Duration::from_secs(60)).unwrap();
        assert_eq!(a.headers()[super::super::X_SLUICE_FALLBACK], "stale");
        capture(&cache, "d", b"too long");
        assert!(cache.answer("d", Duration::from_secs(60)).is_none());
    }

    #[test]
    fn private_and_no_store_are_not_remembered() {
        let mut headers = HeaderMap::new();
        assert!(StaleCache::cacheable(StatusCode::OK, &headers));
        assert!(!StaleCache::cacheable(StatusCode::CREATED, &headers));
        headers.insert(
            http::header::CACHE_CONTROL,
            HeaderValue::from_static("max-age=5, Private"),
        );
        assert!(!StaleCache::cacheable(StatusCode::OK, &headers));
    }
}
