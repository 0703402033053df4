//! Sliding windows over recent call results, with running totals so that a
//! rate costs a division, not a scan (Resilience4j's `FixedSizeSlidingWindowMetrics`
//! and `SlidingTimeWindowMetrics`). Not the place that decides anything: the
//! machine reads the totals and applies the thresholds.

use crate::policy::SlidingWindow;
use crate::Millis;

/// Calls, failures and slow calls over a window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    pub calls: u64,
    pub failures: u64,
    pub slow: u64,
}

impl Totals {
    /// Failure rate in percent; `None` below `minimum_calls` (or with no calls).
    pub fn failure_rate(&self, minimum_calls: u32) -> Option<f64> {
        self.rate(self.failures, minimum_calls)
    }

    /// Slow-call rate in percent; `None` below `minimum_calls` (or with no calls).
    pub fn slow_call_rate(&self, minimum_calls: u32) -> Option<f64> {
        self.rate(self.slow, minimum_calls)
    }

    fn rate(&self, count: u64, minimum_calls: u32) -> Option<f64> {
        (self.calls > 0 && self.calls >= u64::from(minimum_calls))
            .then(|| count as f64 * 100.0 / self.calls as f64)
    }

    /// The window's calls as the `u32` of snapshots and reasons.
    pub fn calls_u32(&self) -> u32 {
        u32::try_from(self.calls).unwrap_or(u32::MAX)
    }
}

/// A count- or time-based window.
#[derive(Clone, Debug)]
pub(crate) enum Window {
    Count(CountWindow),
    Time(TimeWindow),
}

// === impl Window ===

impl Window {
    pub fn new(shape: SlidingWindow, now: Millis) -> Window {
        match shape {
            SlidingWindow::Count { calls } => Window::Count(CountWindow::new(calls)),
            SlidingWindow::Time { seconds } => Window::Time(TimeWindow::new(seconds, now)),
        }
    }

    /// Whether this window has the given shape (so a policy change can keep it).
    pub fn has_shape(&self, shape: SlidingWindow) -> bool {
        match (self, shape) {
            (Window::Count(w), SlidingWindow::Count { calls }) => {
                w.ring.len() == calls.max(1) as usize
            }
            (Window::Time(w), SlidingWindow::Time { seconds }) => {
                w.buckets.len() == seconds.max(1) as usize
            }
            _ => false,
        }
    }

    /// Adds a result; returns the totals with it (what the trip rules read).
    pub fn record(&mut self, failed: bool, slow: bool, now: Millis) -> Totals {
        match self {
            Window::Count(w) => w.record(failed, slow),
            Window::Time(w) => w.record(failed, slow, now),
        }
    }

    /// The totals after dropping what has expired by `now` (a time window's
    /// stale buckets); the window itself is left as it is.
    pub fn totals_at(&self, now: Millis) -> Totals {
        match self {
            Window::Count(w) => w.totals,
            Window::Time(w) => w.totals_at(now),
        }
    }

    /// Empties the window: a fresh start from `now`.
    pub fn clear(&mut self, now: Millis) {
        match self {
            Window::Count(w) => w.clear(),
            Window::Time(w) => w.clear(now),
        }
    }
}

const FAILED: u8 = 1;
const SLOW: u8 = 2;

/// The last N results in a ring, one byte each (bit flags), plus totals.
#[derive(Clone, Debug)]
pub(crate) struct CountWindow {
    ring: Vec<u8>,
    /// Where the next result goes (the oldest once the ring is full).
    next: usize,
    /// `calls` is also how much of the ring is filled.
    totals: Totals,
}

// === impl CountWindow ===

impl CountWindow {
    fn new(calls: u32) -> CountWindow {
        let size = calls.clamp(1, crate::policy::MAX_WINDOW_CALLS) as usize;
        CountWindow {
            ring: vec![0; size],
            next: 0,
            totals: Totals::default(),
        }
    }

    fn record(&mut self, failed: bool, slow: bool) -> Totals {
        // Updated on a copy and stored whole: field-by-field updates in place
        // made the next read of the struct stall on store forwarding (2x slower).
        let mut totals = self.totals;
        let size = self.ring.len();
        let slot = &mut self.ring[self.next];
        if totals.calls == size as u64 {
            totals.failures -= u64::from(*slot & FAILED);
            totals.slow -= u64::from((*slot & SLOW) >> 1);
        } else {
            totals.calls += 1;
        }
        *slot = (u8::from(failed) * FAILED) | (u8::from(slow) * SLOW);
        totals.failures += u64::from(failed);
        totals.slow += u64::from(slow);
        self.totals = totals;
        self.next += 1;
        if self.next == size {
            self.next = 0;
        }
        totals
    }

    fn clear(&mut self) {
        self.ring.fill(0);
        self.next = 0;
        self.totals = Totals::default();
    }
}

/// One bucket per whole second (`now / 1000`) over the last `seconds`
/// seconds, plus totals over the live buckets.
#[derive(Clone, Debug)]
pub(crate) struct TimeWindow {
    /// The bucket of second `s` is `buckets[s % len]`; it is live while
    /// `s > head_second - len`.
    buckets: Vec<Bucket>,
    /// The latest second recorded; buckets after it are empty.
    head_second: u64,
    totals: Totals,
}

#[derive(Clone, Copy, Debug, Default)]
struct Bucket {
    calls: u32,
    failures: u32,
    slow: u32,
}

impl Totals {
    /// Takes an expired bucket out (a bucket never holds more than was added).
    fn remove(&mut self, bucket: Bucket) {
        self.calls -= u64::from(bucket.calls);
        self.failures -= u64::from(bucket.failures);
        self.slow -= u64::from(bucket.slow);
    }
}

// === impl TimeWindow ===

impl TimeWindow {
    fn new(seconds: u32, now: Millis) -> TimeWindow {
        let size = seconds.clamp(1, crate::policy::MAX_WINDOW_SECONDS) as usize;
        TimeWindow {
            buckets: vec![Bucket::default(); size],
            head_second: now / 1000,
            totals: Totals::default(),
        }
    }

    fn record(&mut self, failed: bool, slow: bool, now: Millis) -> Totals {
        self.advance(now / 1000);
        // A result stamped before the head (callers racing for a lock) lands
        // in the head bucket rather than in one that may already be reused.
        let index = self.index(self.head_second);
        let bucket = &mut self.buckets[index];
        bucket.calls = bucket.calls.saturating_add(1);
        bucket.failures = bucket.failures.saturating_add(u32::from(failed));
        bucket.slow = bucket.slow.saturating_add(u32::from(slow));
        let mut totals = self.totals;
        totals.calls += 1;
        totals.failures += u64::from(failed);
        totals.slow += u64::from(slow);
        self.totals = totals;
        totals
    }

    /// Moves the head to `second`, emptying the buckets that fall out.
    fn advance(&mut self, second: u64) {
        if second <= self.head_second {
            return;
        }
        if second - self.head_second >= self.buckets.len() as u64 {
            self.buckets.fill(Bucket::default());
            self.totals = Totals::default();
        } else {
            for expired in self.head_second + 1..=second {
                let index = self.index(expired);
                let bucket = std::mem::take(&mut self.buckets[index]);
                self.totals.remove(bucket);
            }
        }
        self.head_second = second;
    }

    fn totals_at(&self, now: Millis) -> Totals {
        let second = now / 1000;
        if second <= self.head_second {
            return self.totals;
        }
        if second - self.head_second >= self.buckets.len() as u64 {
            return Totals::default();
        }
        let mut totals = self.totals;
        for expired in self.head_second + 1..=second {
            totals.remove(self.buckets[self.index(expired)]);
        }
        totals
    }

    fn clear(&mut self, now: Millis) {
        self.buckets.fill(Bucket::default());
        self.head_second = now / 1000;
        self.totals = Totals::default();
    }

    fn index(&self, second: u64) -> usize {
        (second % self.buckets.len() as u64) as usize
    }
}

#[cfg(test)]
mod tests;
