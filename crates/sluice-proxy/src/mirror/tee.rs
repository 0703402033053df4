//! Copies taken while a body streams on, never by buffering before it: the
//! client's request body as it goes to stable (the mirror sends the copy to
//! the canary once it is whole), and stable's response body as it goes to
//! the client (for the body digest). Both stop copying past their cap.

use bytes::{Bytes, BytesMut};
use tokio::sync::oneshot;

use super::counters::Dropped;
use super::Observed;

/// The client's request body on its way to stable, copied for the mirror.
pub(crate) struct RequestTee {
    copy: BytesMut,
    max_bytes: usize,
    /// Gets the whole copy, or why there is none; dropped unsent (the body
    /// failed or was not read to its end) means no copy either.
    done: Option<oneshot::Sender<Result<Bytes, Dropped>>>,
}

/// Stable's answer on its way to the client: its head, and its body copied
/// while it fits. Sent to the waiting mirror when the body ends, or without
/// the body when it is dropped first (client gone, body over the cap).
pub(crate) struct ResponseTee {
    observed: Option<Observed>,
    copy: BytesMut,
    max_bytes: usize,
    overflowed: bool,
    done: Option<oneshot::Sender<Observed>>,
}

// === impl RequestTee ===

impl RequestTee {
    pub(crate) fn new(
        max_bytes: usize,
        done: oneshot::Sender<Result<Bytes, Dropped>>,
    ) -> RequestTee {
        RequestTee {
            copy: BytesMut::new(),
            max_bytes,
            done: Some(done),
        }
    }

    pub(crate) fn push(&mut self, data: &[u8]) {
        if self.done.is_none() {
            return;
        }
        if self.copy.len() + data.len() > self.max_bytes {
            self.copy = BytesMut::new();
            if let Some(done) = self.done.take() {
                let _ = done.send(Err(Dropped::BodySize));
            }
            return;
        }
        self.copy.extend_from_slice(data);
    }

    /// The body ended whole.
    pub(crate) fn finish(&mut self) {
        if let Some(done) = self.done.take() {
            let _ = done.send(Ok(std::mem::take(&mut self.copy).freeze()));
        }
    }
}

// === impl ResponseTee ===

impl ResponseTee {
    pub(crate) fn new(
        observed: Observed,
        max_bytes: usize,
        done: oneshot::Sender<Observed>,
    ) -> ResponseTee {
        ResponseTee {
            observed: Some(observed),
            copy: BytesMut::new(),
            max_bytes,
            overflowed: false,
            done: Some(done),
        }
    }

    pub(crate) fn push(&mut self, data: &[u8]) {
        if self.overflowed {
            return;
        }
        if self.copy.len() + data.len() > self.max_bytes {
            self.overflowed = true;
            self.copy = BytesMut::new();
            return;
        }
        self.copy.extend_from_slice(data);
    }

    /// The body ended whole: send it with the head.
    pub(crate) fn finish(&mut self) {
        let body = (!self.overflowed).then(|| std::mem::take(&mut self.copy).freeze());
        self.send(body);
    }

    fn send(&mut self, body: Option<Bytes>) {
        if let (Some(done), Some(mut observed)) = (self.done.take(), self.observed.take()) {
            observed.body = body;
            let _ = done.send(observed);
        }
    }
}

impl Drop for ResponseTee {
    fn drop(&mut self) {
        self.send(None);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http::{HeaderMap, StatusCode};

    use super::*;

    fn observed() -> Observed {
        Observed {
            status: Some(StatusCode::OK),
            latency: Duration::from_millis(1),
            headers: HeaderMap::new(),
            body: None,
        }
    }

    #[test]
    fn a_request_copy_is_sent_whole_or_refused_over_its_cap() {
        let (tx, mut rx) = oneshot::channel();
        let mut tee = RequestTee::new(4, tx);
        tee.push(b"ab");
        tee.push(b"cd");
        tee.finish();
        assert_eq!(rx.try_recv().unwrap(), Ok(Bytes::from_static(b"abcd")));
        let (tx, mut rx) = oneshot::channel();
        let mut tee = RequestTee::new(4, tx);
        tee.push(b"abc");
        tee.push(b"de");
        assert_eq!(rx.try_recv().unwrap(), Err(Dropped::BodySize));
        let (tx, mut rx) = oneshot::channel::<Result<Bytes, Dropped>>();
        drop(RequestTee::new(4, tx));
        assert!(
            rx.try_recv().is_err(),
            "a body never finished sends nothing"
        );
    }

    #[test]
    fn a_response_copy_goes_with_its_head_even_when_cut_short() {
        let (tx, mut rx) = oneshot::channel();
        let mut tee = ResponseTee::new(observed(), 8, tx);
        tee.push(b"body");
        tee.finish();
        drop(tee);
        assert_eq!(
            rx.try_recv().unwrap().body,
            Some(Bytes::from_static(b"body"))
        );
        let (tx, mut rx) = oneshot::channel();
        let mut tee = ResponseTee::new(observed(), 2, tx);
        tee.push(b"too long");
        tee.finish();
        assert_eq!(rx.try_recv().unwrap().body, None);
        let (tx, mut rx) = oneshot::channel();
        drop(ResponseTee::new(observed(), 2, tx));
        let head = rx.try_recv().unwrap();
        assert_eq!((head.status, head.body), (Some(StatusCode::OK), None));
    }
}
