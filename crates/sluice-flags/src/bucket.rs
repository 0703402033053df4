//! Bucketing, as flagd's `fractional` does it (v2, flagd ≥ 0.15): a key is
//! hashed with MurmurHash3 x86_32, seed 0, and the unsigned hash `h` is
//! mapped onto the total weight `w` as `(h * w) >> 32`; the variants are
//! then walked in order, each owning `weight` consecutive buckets. Same
//! key, same weights → same variant, in sluice and in every flagd.
//!
//! A percentage rollout is the two-variant case with weights in millionths
//! (`pct * 10_000` of 1,000,000): because a key's bucket does not depend on
//! the percentage, raising it only adds keys to the enabled side.

use std::io::Read;

/// The total weight of a percentage rollout: one unit is 0.0001%.
pub const PERCENT_TOTAL: u64 = 1_000_000;

/// MurmurHash3 x86_32 (seed 0) of `first` followed by `second`, hashed as
/// one string without joining them (no allocation).
pub fn hash(first: &[u8], second: &[u8]) -> u32 {
    // Reading from byte slices cannot fail; the crate's streaming API
    // handles the short read where `first` ends.
    murmur3::murmur3_32(&mut first.chain(second), 0).unwrap_or(0)
}

/// The bucket of a hash among `total_weight` buckets: `(h * w) >> 32`,
/// always below `total_weight` (for a non-zero total).
pub fn bucket(hash: u32, total_weight: u64) -> u64 {
    (u64::from(hash) * total_weight) >> 32
}

/// The index of the weight owning `bucket` when weights are laid end to end.
pub fn pick(bucket: u64, weights: impl IntoIterator<Item = u64>) -> Option<usize> {
    let mut end = 0u64;
    for (i, weight) in weights.into_iter().enumerate() {
        end += weight;
        if bucket < end {
            return Some(i);
        }
    }
    None
}

/// A percentage (0..=100) as a weight out of [`PERCENT_TOTAL`].
pub fn percentage_weight(percentage: f64) -> u64 {
    (percentage.clamp(0.0, 100.0) * 10_000.0).round() as u64
}

/// Whether the key `flag_key + bucket_value` falls in the enabled share.
pub fn in_percentage(flag_key: &str, bucket_value: &str, percentage: f64) -> bool {
    let h = hash(flag_key.as_bytes(), bucket_value.as_bytes());
    bucket(h, PERCENT_TOTAL) < percentage_weight(percentage)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_vectors_of_murmur3_x86_32() {
        assert_eq!(hash(b"", b""), 0);
        assert_eq!(hash(b"hel", b"lo"), 0x248b_fa47);
        // The testbed's edge keys: hash 0, 1, i32::MAX, 2^31, u32::MAX.
        assert_eq!(hash(b"ejOoVL", b""), 0);
        assert_eq!(hash(b"bY9", b"fO-"), 1);
        assert_eq!(hash(b"SI7p-", b""), 2_147_483_647);
        assert_eq!(hash(b"", b"6LvT0"), 2_147_483_648);
        assert_eq!(hash(b"ceQdGm", b""), u32::MAX);
    }

    #[test]
    fn bucket_edges() {
        assert_eq!(bucket(0, 100), 0);
        assert_eq!(bucket(2_147_483_647, 100), 49);
        assert_eq!(bucket(2_147_483_648, 100), 50);
        assert_eq!(bucket(u32::MAX, 100), 99);
        assert_eq!(pick(49, [50, 50]), Some(0));
        assert_eq!(pick(50, [50, 50]), Some(1));
        assert_eq!(pick(0, [0, 10]), Some(1));
        assert_eq!(pick(5, []), None);
    }

    #[test]
    fn percentage_distribution_over_100k_keys_is_within_tolerance() {
        for percentage in [1.0, 5.0, 10.0, 25.0, 50.0, 90.0] {
            let enabled = (0..100_000)
                .filter(|i| in_percentage("new-builder", &format!("user-{i}"), percentage))
                .count();
            let share = enabled as f64 / 1_000.0;
            assert!(
                (share - percentage).abs() < 0.6,
                "{percentage}% gave {share}% of 100k keys"
            );
        }
    }

    proptest! {
        #[test]
        fn hashing_in_two_parts_equals_hashing_the_joined_key(a in ".{0,20}", b in ".{0,20}") {
            let joined = format!("{a}{b}");
            prop_assert_eq!(
                hash(a.as_bytes(), b.as_bytes()),
                murmur3::murmur3_32(&mut joined.as_bytes(), 0).unwrap()
            );
        }

        #[test]
        fn raising_the_percentage_never_moves_a_key_out(
            key in "[a-z0-9-]{1,24}", low in 0.0f64..=100.0, raise in 0.0f64..=100.0,
        ) {
            let high = (low + raise).min(100.0);
            if in_percentage("flag", &key, low) {
                prop_assert!(in_percentage("flag", &key, high));
            }
        }

        #[test]
        fn buckets_stay_below_the_total(h in any::<u32>(), total in 1u64..=2_147_483_647) {
            prop_assert!(bucket(h, total) < total);
        }
    }
}
