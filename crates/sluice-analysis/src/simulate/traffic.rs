//! Seeded randomness and traffic for the simulator: a small PRNG
//! (xoshiro256** seeded through splitmix64), Poisson and binomial sampling,
//! and the latency distributions of the scenarios as per-bucket
//! probabilities of the shared histogram layout. Deterministic: the same
//! seed gives the same windows on every platform.

use crate::histogram::{bucket_lower_micros, bucket_upper_micros, BUCKETS};
use crate::{Histogram, VersionWindow};

/// xoshiro256** (Blackman & Vigna), seeded through splitmix64.
#[derive(Clone, Debug)]
pub struct Rng {
    state: [u64; 4],
}

// === impl Rng ===

impl Rng {
    pub fn new(seed: u64) -> Rng {
        let mut sm = seed;
        let mut next = || {
            sm = sm.wrapping_add(0x9E37_79B9_7F4A_7C15);
            mix(sm)
        };
        Rng {
            state: [next(), next(), next(), next()],
        }
    }

    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.state;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Poisson(mean): multiplication for small means, PTRS (Hörmann 1993,
    /// transformed rejection with squeeze) above.
    pub fn poisson(&mut self, mean: f64) -> u64 {
        if mean <= 0.0 {
            return 0;
        }
        if mean < 12.0 {
            return self.poisson_small((-mean).exp());
        }
        let slam = mean.sqrt();
        let loglam = mean.ln();
        let b = 0.931 + 2.53 * slam;
        let a = -0.059 + 0.02483 * b;
        let inv_alpha = 1.1239 + 1.1328 / (b - 3.4);
        let vr = 0.9277 - 3.6224 / (b - 2.0);
        loop {
            let u = self.uniform() - 0.5;
            let v = self.uniform();
            let us = 0.5 - u.abs();
            let k = ((2.0 * a / us + b) * u + mean + 0.43).floor();
            if us >= 0.07 && v <= vr {
                return k as u64;
            }
            if k < 0.0 || (us < 0.013 && v > us) {
                continue;
            }
            if v.ln() + inv_alpha.ln() - (a / (us * us) + b).ln()
                <= -mean + k * loglam - ln_factorial(k as u64)
            {
                return k as u64;
            }
        }
    }

    /// Poisson by multiplying uniforms until below `exp(-mean)` (given).
    pub fn poisson_small(&mut self, exp_neg_mean: f64) -> u64 {
        let mut k = 0;
        let mut product = self.uniform();
        while product > exp_neg_mean {
            k += 1;
            product *= self.uniform();
        }
        k
    }

    /// Binomial(trials, p): inversion while the mean is small, a rounded
    /// normal approximation beyond (only reached by very high error rates).
    pub fn binomial(&mut self, trials: u64, p: f64) -> u64 {
        if trials == 0 || p <= 0.0 {
            return 0;
        }
        if p >= 1.0 {
            return trials;
        }
        if p > 0.5 {
            return trials - self.binomial(trials, 1.0 - p);
        }
        let n = trials as f64;
        if n * p > 60.0 {
            let z = self.normal();
            let k = (n * p + z * (n * p * (1.0 - p)).sqrt()).round();
            return k.clamp(0.0, n) as u64;
        }
        let ratio = p / (1.0 - p);
        let mut pmf = (1.0 - p).powf(n);
        let mut u = self.uniform();
        let mut k = 0u64;
        while u >= pmf && k < trials {
            u -= pmf;
            pmf *= ratio * (n - k as f64) / (k as f64 + 1.0);
            k += 1;
        }
        k
    }

    /// Standard normal by Box–Muller.
    pub fn normal(&mut self) -> f64 {
        let u = 1.0 - self.uniform();
        let v = self.uniform();
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

/// splitmix64's output function: seeds for runs derived from one base seed.
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn ln_factorial(k: u64) -> f64 {
    if k < 16 {
        return (2..=k).map(|i| (i as f64).ln()).sum();
    }
    let x = k as f64 + 1.0;
    (x - 0.5) * x.ln() - x + 0.5 * std::f64::consts::TAU.ln() + 1.0 / (12.0 * x)
        - 1.0 / (360.0 * x * x * x)
}

/// Standard normal CDF through erfc (Numerical Recipes' Chebyshev fit,
/// relative error below 1.2e-7: plenty for bucket probabilities).
fn normal_cdf(z: f64) -> f64 {
    let x = -z / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.5 * x.abs());
    let poly = -x * x - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let erfc = t * poly.exp();
    let erfc = if x >= 0.0 { erfc } else { 2.0 - erfc };
    0.5 * erfc
}

/// A latency distribution: log-normal, optionally scaled, optionally with a
/// fixed delay added to its slowest share.
#[derive(Clone, Copy, Debug)]
pub struct LatencyModel {
    pub median_micros: f64,
    /// Standard deviation of ln(latency).
    pub sigma: f64,
    /// Every latency multiplied by this.
    pub scale: f64,
    /// Latencies above the log-normal's quantile `1 − tail_share` get `tail_delay_micros` more.
    pub tail_share: f64,
    pub tail_delay_micros: f64,
}

// === impl LatencyModel ===

impl LatencyModel {
    /// The baseline of every scenario: median 50 ms, σ 0.5 (p99 ≈ 160 ms).
    pub fn baseline() -> LatencyModel {
        LatencyModel {
            median_micros: 50_000.0,
            sigma: 0.5,
            scale: 1.0,
            tail_share: 0.0,
            tail_delay_micros: 0.0,
        }
    }

    fn base_cdf(&self, micros: f64) -> f64 {
        let x = micros / self.scale;
        if x <= 0.0 {
            return 0.0;
        }
        normal_cdf((x / self.median_micros).ln() / self.sigma)
    }

    /// P(latency < micros).
    pub fn cdf(&self, micros: f64) -> f64 {
        if self.tail_share <= 0.0 {
            return self.base_cdf(micros);
        }
        let cut_probability = 1.0 - self.tail_share;
        // Below the cut the distribution is unchanged; the tail moves right.
        let below = self.base_cdf(micros).min(cut_probability);
        let shifted = (self.base_cdf(micros - self.tail_delay_micros) - cut_probability).max(0.0);
        below + shifted
    }

    /// The probability of each histogram bucket, keeping those above 1e-10.
    pub fn bucket_probabilities(&self) -> Vec<(usize, f64)> {
        (0..BUCKETS)
            .map(|index| {
                let lower = bucket_lower_micros(index) as f64;
                let upper = match bucket_upper_micros(index) {
                    u64::MAX => f64::INFINITY,
                    upper => upper as f64 + 1.0,
                };
                let p = if upper.is_infinite() {
                    1.0 - self.cdf(lower)
                } else {
                    self.cdf(upper) - self.cdf(lower)
                };
                (index, p)
            })
            .filter(|(_, p)| *p > 1e-10)
            .collect()
    }
}

/// One version's traffic at a constant rate: draws windows of any length.
#[derive(Clone, Debug)]
pub struct VersionTraffic {
    /// (bucket, expected requests per second in it, exp(−mean) per batch).
    buckets: Vec<(usize, f64)>,
}

// === impl VersionTraffic ===

impl VersionTraffic {
    pub fn new(requests_per_second: f64, latency: &LatencyModel) -> VersionTraffic {
        let buckets = latency
            .bucket_probabilities()
            .into_iter()
            .map(|(index, p)| (index, p * requests_per_second))
            .collect();
        VersionTraffic { buckets }
    }

    /// A window of `seconds` with errors at `error_rate`: Poisson arrivals,
    /// so each bucket's count is an independent Poisson draw.
    pub fn window(&self, rng: &mut Rng, seconds: f64, error_rate: f64) -> VersionWindow {
        let mut counts = vec![0u64; BUCKETS];
        let mut requests = 0u64;
        for (index, rate) in &self.buckets {
            let count = rng.poisson(rate * seconds);
            counts[*index] = count;
            requests += count;
        }
        VersionWindow {
            requests,
            errors: rng.binomial(requests, error_rate),
            latency: Histogram::from_counts(counts),
            breaker_trips: 0,
            mirror_compared: 0,
            mirror_mismatches: 0,
        }
    }

    /// Only the request and error counts of a window.
    pub fn counts(&self, rng: &mut Rng, seconds: f64, error_rate: f64) -> (u64, u64) {
        let rate: f64 = self.buckets.iter().map(|(_, r)| r).sum();
        let requests = rng.poisson(rate * seconds);
        (requests, rng.binomial(requests, error_rate))
    }

    /// The latencies of `requests` requests: a multinomial draw over the
    /// buckets by conditional binomials, slowest bucket first so that the
    /// tail (what the latency tests read) is drawn exactly. With a Poisson
    /// `requests` this has the same law as [`VersionTraffic::window`]'s.
    pub fn latencies(&self, rng: &mut Rng, requests: u64) -> Histogram {
        let mut counts = vec![0u64; BUCKETS];
        let mut remaining = requests;
        let mut mass: f64 = self.buckets.iter().map(|(_, r)| r).sum();
        for (index, rate) in self.buckets.iter().rev() {
            if remaining == 0 || mass <= 0.0 {
                break;
            }
            let count = rng.binomial(remaining, (rate / mass).min(1.0));
            counts[*index] = count;
            remaining -= count;
            mass -= rate;
        }
        // Rounding can leave a few behind: they belong to the fastest bucket kept.
        if let Some((index, _)) = self.buckets.first() {
            counts[*index] += remaining;
        }
        Histogram::from_counts(counts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samplers_have_the_right_means() {
        let mut rng = Rng::new(7);
        for mean in [0.3, 5.0, 40.0, 3_800.0] {
            let n = 20_000;
            let sum: u64 = (0..n).map(|_| rng.poisson(mean)).sum();
            let got = sum as f64 / n as f64;
            assert!(
                (got - mean).abs() < 4.0 * (mean / n as f64).sqrt() + 1e-9,
                "{mean}: {got}"
            );
        }
        let sum: u64 = (0..20_000).map(|_| rng.binomial(200, 0.05)).sum();
        assert!((sum as f64 / 20_000.0 - 10.0).abs() < 0.1);
        assert_eq!(Rng::new(1).next_u64(), Rng::new(1).next_u64());
    }

    #[test]
    fn latency_models_are_distributions() {
        for model in [
            LatencyModel::baseline(),
            LatencyModel {
                tail_share: 0.01,
                tail_delay_micros: 50_000.0,
                ..LatencyModel::baseline()
            },
        ] {
            let total: f64 = model.bucket_probabilities().iter().map(|(_, p)| p).sum();
            assert!((total - 1.0).abs() < 1e-6, "{total}");
        }
        let base = LatencyModel::baseline();
        assert!((base.cdf(50_000.0) - 0.5).abs() < 1e-6);
        let p99 = 50_000.0 * (0.5f64 * 2.326_348).exp();
        assert!((base.cdf(p99) - 0.99).abs() < 1e-5);
    }
}
