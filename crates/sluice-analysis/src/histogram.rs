//! Latency histograms with one fixed log-linear bucket layout, shared by the
//! proxy (which counts into an array of atomics with [`bucket_index`]) and
//! the analysis (which diffs, merges and reads quantiles from [`Histogram`]).
//!
//! The layout is HDR-style (Gil Tene's HdrHistogram, with 4 bits of
//! sub-bucket precision): values below 16 µs have a bucket each; above, every
//! power of two is split into 16 equal sub-buckets, so a bucket is never
//! wider than 1/16 (6.25%) of its lower bound. Values of 2^27 µs (about
//! 134 s) and more share the last bucket. Not for arbitrary metrics: the
//! unit is microseconds and the layout is frozen, because stored decisions
//! and the proxy's counters depend on it.

use std::time::Duration;

use serde::de::{Error as _, SeqAccess, Visitor};
use serde::ser::SerializeSeq;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// log2 of the number of sub-buckets per power of two.
const SUB_BITS: u32 = 4;
/// Sub-buckets per power of two; also the number of exact buckets at the bottom.
const SUB_BUCKETS: u64 = 1 << SUB_BITS;
/// The first value counted in the overflow bucket: 2^27 µs ≈ 134 s.
const OVERFLOW_MICROS: u64 = 1 << 27;

/// Number of buckets: 16 exact ones, 16 per power of two from 2^4 to 2^26 µs,
/// and one overflow bucket for 2^27 µs and above.
pub const BUCKETS: usize = (SUB_BUCKETS as usize) * (1 + 27 - SUB_BITS as usize) + 1;

/// The bucket a latency in microseconds is counted in. Total and cheap
/// (a leading-zero count, two shifts and a min), so the proxy can call it on
/// every request.
pub fn bucket_index(micros: u64) -> usize {
    if micros < SUB_BUCKETS {
        return micros as usize;
    }
    // Position of the highest set bit (>= SUB_BITS here).
    let magnitude = 63 - micros.leading_zeros();
    let shift = magnitude - SUB_BITS;
    // The SUB_BITS bits after the highest one, plus the highest one itself (16..32).
    let mantissa = micros >> shift;
    let index = (shift as u64) * SUB_BUCKETS + mantissa;
    (index as usize).min(BUCKETS - 1)
}

/// The inclusive upper bound, in microseconds, of bucket `index` (what
/// Prometheus calls `le`). The overflow bucket (and any index past it)
/// returns `u64::MAX`: render it as `+Inf`.
pub fn bucket_upper_micros(index: usize) -> u64 {
    if index >= BUCKETS - 1 {
        return u64::MAX;
    }
    bucket_lower_micros(index + 1) - 1
}

/// The smallest value counted in bucket `index`.
pub fn bucket_lower_micros(index: usize) -> u64 {
    let index = index.min(BUCKETS - 1) as u64;
    if index < SUB_BUCKETS {
        return index;
    }
    let shift = index / SUB_BUCKETS - 1;
    let mantissa = SUB_BUCKETS + index % SUB_BUCKETS;
    mantissa << shift
}

/// A latency histogram in the shared layout: one count per bucket.
///
/// Serialized sparsely, as a list of `[bucket index, count]` pairs for the
/// non-empty buckets, because one is stored with every decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Histogram {
    /// Always exactly `BUCKETS` long.
    counts: Vec<u64>,
}

// === impl Histogram ===

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; BUCKETS],
        }
    }
}

impl Histogram {
    /// An empty histogram.
    pub fn new() -> Histogram {
        Histogram::default()
    }

    /// A histogram from per-bucket counts (for example a snapshot of the
    /// proxy's atomics). A shorter vector is padded with zeros; counts past
    /// the last bucket are added to the overflow bucket.
    pub fn from_counts(mut counts: Vec<u64>) -> Histogram {
        if counts.len() > BUCKETS {
            let extra = counts[BUCKETS..]
                .iter()
                .fold(0u64, |sum, c| sum.saturating_add(*c));
            counts.truncate(BUCKETS);
            counts[BUCKETS - 1] = counts[BUCKETS - 1].saturating_add(extra);
        }
        counts.resize(BUCKETS, 0);
        Histogram { counts }
    }

    /// The count of each bucket, `BUCKETS` long.
    pub fn counts(&self) -> &[u64] {
        &self.counts
    }

    /// Counts one latency.
    pub fn record(&mut self, micros: u64) {
        let slot = &mut self.counts[bucket_index(micros)];
        *slot = slot.saturating_add(1);
    }

    /// Counts one latency given as a duration.
    pub fn record_duration(&mut self, latency: Duration) {
        self.record(u64::try_from(latency.as_micros()).unwrap_or(u64::MAX));
    }

    /// Number of values recorded.
    pub fn count(&self) -> u64 {
        self.counts
            .iter()
            .fold(0u64, |sum, c| sum.saturating_add(*c))
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.counts.iter().all(|c| *c == 0)
    }

    /// The `q` quantile (`q` in 0..=1, clamped; `0.99` is p99), or None when
    /// empty or `q` is NaN.
    ///
    /// Nearest rank over buckets, reporting the **upper bound** of the bucket
    /// that holds the rank: conservative for a "latency must stay below"
    /// gate, never below the exact nearest-rank value and at most 6.25%
    /// above it. The one exception is the overflow bucket, reported as its
    /// lower bound (about 134 s), since it has no upper one.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        if q.is_nan() {
            return None;
        }
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0u64;
        for (index, count) in self.counts.iter().enumerate() {
            seen = seen.saturating_add(*count);
            if seen >= rank {
                return Some(Duration::from_micros(representative_upper(index)));
            }
        }
        // Unreachable when the counts add up; the overflow bucket is the safe answer.
        Some(Duration::from_micros(OVERFLOW_MICROS))
    }

    /// The mean, estimated with each bucket's midpoint (the overflow bucket
    /// counts as its lower bound), or None when empty.
    pub fn mean(&self) -> Option<Duration> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let sum: f64 = self
            .counts
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(index, count)| {
                let lower = bucket_lower_micros(index) as f64;
                let upper = representative_upper(index) as f64;
                (lower + upper) / 2.0 * *count as f64
            })
            .sum();
        Some(Duration::from_secs_f64(sum / total as f64 / 1e6))
    }

    /// What was recorded after `earlier` (both cumulative snapshots of the
    /// same counters); a bucket that went down (a counter reset) counts 0.
    pub fn saturating_sub(&self, earlier: &Histogram) -> Histogram {
        let counts = self
            .counts
            .iter()
            .zip(earlier.counts.iter())
            .map(|(now, before)| now.saturating_sub(*before))
            .collect();
        Histogram { counts }
    }

    /// Adds `other`'s counts to this one (for example several nodes' counts).
    pub fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts.iter()) {
            *mine = mine.saturating_add(*theirs);
        }
    }
}

/// A bucket's upper bound, except the overflow bucket's lower bound.
fn representative_upper(index: usize) -> u64 {
    if index >= BUCKETS - 1 {
        OVERFLOW_MICROS
    } else {
        bucket_upper_micros(index)
    }
}

impl Serialize for Histogram {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let used = self.counts.iter().filter(|c| **c > 0).count();
        let mut seq = serializer.serialize_seq(Some(used))?;
        for (index, count) in self.counts.iter().enumerate().filter(|(_, c)| **c > 0) {
            seq.serialize_element(&(index, *count))?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for Histogram {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Pairs;

        impl<'de> Visitor<'de> for Pairs {
            type Value = Histogram;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a list of [bucket index, count] pairs")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Histogram, A::Error> {
                let mut histogram = Histogram::default();
                while let Some((index, count)) = seq.next_element::<(usize, u64)>()? {
                    let slot = histogram.counts.get_mut(index).ok_or_else(|| {
                        A::Error::custom(format!(
                            "bucket index {index} is out of range (there are {BUCKETS} buckets)"
                        ))
                    })?;
                    *slot = slot.saturating_add(count);
                }
                Ok(histogram)
            }
        }

        deserializer.deserialize_seq(Pairs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn layout_edges() {
        assert_eq!(BUCKETS, 385);
        for v in 0..16 {
            assert_eq!(bucket_index(v), v as usize);
            assert_eq!(bucket_upper_micros(v as usize), v);
        }
        assert_eq!(bucket_index(16), 16);
        assert_eq!(bucket_index(31), 31);
        assert_eq!(bucket_index(32), 32);
        assert_eq!(bucket_index(33), 32);
        assert_eq!(bucket_upper_micros(32), 33);
        assert_eq!(bucket_index(OVERFLOW_MICROS - 1), BUCKETS - 2);
        assert_eq!(bucket_index(OVERFLOW_MICROS), BUCKETS - 1);
        assert_eq!(bucket_index(u64::MAX), BUCKETS - 1);
        assert_eq!(bucket_upper_micros(BUCKETS - 2), OVERFLOW_MICROS - 1);
        assert_eq!(bucket_upper_micros(BUCKETS - 1), u64::MAX);
    }

    #[test]
    fn quantiles_of_a_small_sample() {
        let mut h = Histogram::new();
        assert_eq!(h.quantile(0.5), None);
        assert_eq!(h.mean(), None);
        for ms in 1..=100u64 {
            h.record(ms * 1000);
        }
        assert_eq!(h.count(), 100);
        let p99 = h.quantile(0.99).unwrap();
        assert!(p99 >= Duration::from_millis(99) && p99 <= Duration::from_micros(99_000 * 17 / 16));
        let p50 = h.quantile(0.5).unwrap();
        assert!(p50 >= Duration::from_millis(50) && p50 <= Duration::from_micros(50_000 * 17 / 16));
        let mean = h.mean().unwrap().as_secs_f64() * 1000.0;
        assert!((mean - 50.5).abs() < 50.5 * 0.07, "mean {mean}");
        assert_eq!(h.quantile(f64::NAN), None);
        h.record(u64::MAX);
        assert_eq!(
            h.quantile(1.0),
            Some(Duration::from_micros(OVERFLOW_MICROS))
        );
    }

    #[test]
    fn sub_merge_and_from_counts() {
        let mut a = Histogram::new();
        a.record(100);
        a.record(5_000);
        let mut b = a.clone();
        b.record(5_000);
        b.record(70);
        let diff = b.saturating_sub(&a);
        assert_eq!(diff.count(), 2);
        assert_eq!(a.saturating_sub(&b).count(), 0);
        a.merge(&diff);
        assert_eq!(a, b);

        let short = Histogram::from_counts(vec![1, 2]);
        assert_eq!(short.counts().len(), BUCKETS);
        assert_eq!(short.count(), 3);
        let long = Histogram::from_counts(vec![1; BUCKETS + 3]);
        assert_eq!(long.counts()[BUCKETS - 1], 4);
        assert_eq!(long.count(), BUCKETS as u64 + 3);
    }

    #[test]
    fn serializes_sparsely() {
        let mut h = Histogram::new();
        h.record(3);
        h.record(3);
        h.record(1_000_000);
        let json = serde_json::to_string(&h).unwrap();
        assert_eq!(json, format!("[[3,2],[{},1]]", bucket_index(1_000_000)));
        let back: Histogram = serde_json::from_str(&json).unwrap();
        assert_eq!(back, h);
        assert_eq!(serde_json::to_string(&Histogram::new()).unwrap(), "[]");
        let err = serde_json::from_str::<Histogram>("[[999,1]]").unwrap_err();
        assert!(err.to_string().contains("bucket index 999 is out of range"));
    }

    proptest! {
        #[test]
        fn bucket_index_is_monotonic(a in any::<u64>(), b in any::<u64>()) {
            let (low, high) = if a <= b { (a, b) } else { (b, a) };
            prop_assert!(bucket_index(low) <= bucket_index(high));
        }

        #[test]
        fn value_lies_inside_its_bucket(v in prop_oneof![0u64..100_000, 0u64..(1 << 28), any::<u64>()]) {
            let index = bucket_index(v);
            prop_assert!(v <= bucket_upper_micros(index));
            prop_assert!(v >= bucket_lower_micros(index));
            if index > 0 {
                prop_assert!(v > bucket_upper_micros(index - 1));
            }
            if index < BUCKETS - 1 {
                let width = bucket_upper_micros(index) - bucket_lower_micros(index);
                prop_assert!(width * 16 <= v.max(1), "bucket {} too wide for {}", index, v);
            }
        }

        #[test]
        fn quantile_is_close_and_conservative(
            mut values in proptest::collection::vec(0u64..(1 << 27), 1..300),
            q in 0.0f64..=1.0,
        ) {
            let mut h = Histogram::new();
            for v in &values {
                h.record(*v);
            }
            values.sort_unstable();
            let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
            let exact = values[rank - 1];
            let got = u64::try_from(h.quantile(q).unwrap().as_micros()).unwrap();
            prop_assert!(got >= exact, "got {} below exact {}", got, exact);
            prop_assert!(got - exact <= exact / 16, "got {} too far above exact {}", got, exact);
        }
    }
}
