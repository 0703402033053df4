//! One target's sending task: takes notices off its queue one at a time and
//! POSTs each, with a timeout per attempt (connect, answer and body) and
//! exponential backoff between attempts; redirects are not followed. Outcomes are logged and counted, never returned to a caller.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use sluice_model::NotificationKind;
use tokio::sync::mpsc;

use super::{payload, Counters, Notice};

/// The wait before the first retry; each later one doubles it.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// No wait between attempts grows beyond this.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// The most of a response body read (only to reuse the connection and log it).
const MAX_RESPONSE_BYTES: usize = 16 * 1024;

pub(crate) type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A client for http:// and https:// URLs (webpki roots, no platform store).
pub(crate) fn client() -> HttpClient {
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .build();
    Client::builder(TokioExecutor::new()).build(connector)
}

/// Everything one target's task needs.
pub(super) struct Task {
    pub name: String,
    pub kind: NotificationKind,
    /// The URL, or why there is none (each notice then fails with that reason).
    pub url: Result<String, String>,
    pub timeout: Duration,
    pub retries: u32,
    pub client: HttpClient,
    pub counters: Arc<Counters>,
}

// === impl Task ===

impl Task {
    /// Runs until every sender of the queue is gone (the notifier dropped).
    pub async fn run(self, mut queue: mpsc::Receiver<Arc<Notice>>) {
        while let Some(notice) = queue.recv().await {
            let Some(event) = notice.event() else {
                continue;
            };
            let result = match &self.url {
                Ok(url) => {
                    let body = payload::body(self.kind, &notice, event).to_string();
                    self.deliver(url, Bytes::from(body)).await
                }
                Err(why) => Err(why.clone()),
            };
            match result {
                Ok(attempts) => {
                    self.counters.sent.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(target_name = %self.name, %event, attempts, "notification sent");
                }
                Err(why) => {
                    self.counters.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        target_name = %self.name,
                        %event,
                        service = %notice.service(),
                        "notification failed: {why}"
                    );
                }
            }
        }
    }

    /// POSTs until a 2xx (Ok with the number of attempts) or the attempts
    /// run out (Err with the last failure). A 4xx other than 408 and 429 is
    /// not retried: the same payload would be refused again.
    async fn deliver(&self, url: &str, body: Bytes) -> Result<u32, String> {
        let attempts = self.retries.saturating_add(1);
        let mut last = String::new();
        for attempt in 1..=attempts {
            if attempt > 1 {
                tokio::time::sleep(backoff(attempt - 1)).await;
            }
            let outcome = tokio::time::timeout(self.timeout, self.post(url, body.clone())).await;
            let retry = match outcome {
                Ok(Ok((status, _))) if status.is_success() => return Ok(attempt),
                Ok(Ok((status, Some(location)))) => {
                    last = format!(
                        "HTTP {status}, a redirect to {location:?}, not followed (sluice follows no redirects: give the final URL)"
                    );
                    false
                }
                Ok(Ok((status, None))) => {
                    last = format!("HTTP {status} (attempt {attempt} of {attempts})");
                    status.is_server_error()
                        || status == StatusCode::TOO_MANY_REQUESTS
                        || status == StatusCode::REQUEST_TIMEOUT
                }
                Ok(Err(error)) => {
                    last = format!("{error} (attempt {attempt} of {attempts})");
                    true
                }
                Err(_) => {
                    last = format!(
                        "no answer within {} (attempt {attempt} of {attempts})",
                        sluice_model::duration::format(self.timeout)
                    );
                    true
                }
            };
            if !retry {
                break;
            }
        }
        Err(last)
    }

    /// One attempt: the response status once its body is read, and where
    /// it points if it is a redirect (never followed).
    async fn post(&self, url: &str, body: Bytes) -> Result<(StatusCode, Option<String>), String> {
        let request = Request::builder()
            .method(Method::POST)
            .uri(url)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::USER_AGENT, "sluice")
            .body(Full::new(body))
            .map_err(|e| format!("bad request to {url:?}: {e}"))?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| describe_client_error(&e))?;
        let status = response.status();
        let location = redirect_target(&response);
        // Read (a bounded part of) the body so the connection can be reused.
        let _ = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await;
        Ok((status, location))
    }
}

/// Where a 3xx answer points, if it is one (outbound calls follow no redirects).
pub(crate) fn redirect_target<B>(response: &http::Response<B>) -> Option<String> {
    if !response.status().is_redirection() {
        return None;
    }
    let location = response
        .headers()
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("(no Location)");
    Some(location.chars().take(200).collect())
}

/// The wait before retry `n` (from 1): 200ms, 400ms, 800ms, … up to 30s.
pub(crate) fn backoff(retry: u32) -> Duration {
    let factor = 1u32
        .checked_shl(retry.saturating_sub(1))
        .unwrap_or(u32::MAX);
    FIRST_BACKOFF.saturating_mul(factor).min(MAX_BACKOFF)
}

/// The client error with its cause (hyper-util's own message is only "client error").
fn describe_client_error(error: &hyper_util::client::legacy::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_200ms_up_to_a_cap() {
        let waits: Vec<_> = (1..=4).map(backoff).collect();
        assert_eq!(
            waits,
            [200, 400, 800, 1600].map(Duration::from_millis).to_vec()
        );
        assert_eq!(backoff(40), MAX_BACKOFF);
    }
}
