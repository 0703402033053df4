//! A per-thread pseudo-random generator for the request path (weighted
//! version draws, power-of-two-choices balancing): no lock, no syscall per
//! draw. Not cryptographic and not for anything a client may exploit.
//!
//! The generator is wyrand (Wang Yi's `wyhash` family, public domain): one
//! add and one 64×64→128 multiply per draw, full 2^64 period.

use std::cell::Cell;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

thread_local! {
    static STATE: Cell<u64> = Cell::new(seed());
}

/// A per-thread seed from std's randomly keyed hasher (read once per thread).
fn seed() -> u64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(0x5eed);
    hasher.finish()
}

/// The next 64 random bits of this thread's stream.
pub(crate) fn next_u64() -> u64 {
    STATE.with(|state| {
        let x = state.get().wrapping_add(0xa076_1d64_78bd_642f);
        state.set(x);
        let t = u128::from(x) * u128::from(x ^ 0xe703_7ed1_a0b4_28db);
        ((t >> 64) ^ t) as u64
    })
}

/// A uniform draw in `0..bound` (Lemire's multiply-shift; the bias is below
/// 2^-32 and irrelevant for traffic splitting). `bound` must be > 0.
pub(crate) fn below(bound: u32) -> u32 {
    (((next_u64() >> 32) * u64::from(bound)) >> 32) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn below_stays_in_range_and_covers_it() {
        let mut seen = [0u32; 10];
        for _ in 0..10_000 {
            let v = below(10) as usize;
            assert!(v < 10);
            seen[v] += 1;
        }
        // Each value expected 1,000 times; a working generator is far inside these bounds.
        assert!(seen.iter().all(|&n| (800..1200).contains(&n)), "{seen:?}");
    }
}
