//! Fixed-seed simulations and properties of the sequential judge.

use proptest::prelude::*;

use super::*;
use crate::simulate::{LatencyModel, Rng, Scenario, VersionTraffic, BASELINE_ERROR_RATE};
use crate::VersionWindow;

/// Feeds 10-second batches of `scenario` (canary 20 req/s, stable 380) until
/// the verdict is Fail or `batches` have passed; the canary requests at the
/// failure, if any.
fn run(scenario: Scenario, seed: u64, batches: u64) -> Option<u64> {
    let config = SequentialConfig::default();
    let stable = VersionTraffic::new(380.0, &LatencyModel::baseline());
    let canary = VersionTraffic::new(20.0, &scenario.canary_latency());
    let mut rng = Rng::new(seed);
    let mut state = SequentialState::default();
    for batch in 0..batches {
        let window = Window {
            stable: stable.window(&mut rng, 10.0, BASELINE_ERROR_RATE),
            canary: canary.window(&mut rng, 10.0, scenario.canary_error_rate(batch * 10)),
        };
        if state.observe(&config, &window).verdict == SequentialVerdict::Fail {
            return Some(state.errors.canary_trials);
        }
    }
    None
}

#[test]
fn identical_versions_are_rarely_rolled_back() {
    // 300 runs of 30 simulated minutes, looking after every batch.
    let runs = 300;
    let false_rollbacks = (0..runs)
        .filter(|seed| run(Scenario::Aa, 1_000 + seed, 180).is_some())
        .count();
    // alpha = 0.01: expect at most 3; allow sampling noise.
    assert!(false_rollbacks <= 6, "{false_rollbacks} of {runs}");
}

#[test]
fn a_tenfold_error_regression_is_caught_within_minutes() {
    for seed in 0..20 {
        let requests = run(Scenario::Err10x, seed, 60).expect("detected within 10 minutes");
        assert!(requests < 3_000, "seed {seed}: {requests} canary requests");
    }
}

#[test]
fn fifty_ms_more_on_the_p99_is_caught() {
    let detected = (0..20)
        .filter(|seed| run(Scenario::P99Plus50ms, *seed, 360).is_some())
        .count();
    assert!(detected >= 18, "{detected} of 20");
}

#[test]
fn a_latency_shift_is_caught_and_explained() {
    let config = SequentialConfig::default();
    let stable = VersionTraffic::new(380.0, &LatencyModel::baseline());
    let canary = VersionTraffic::new(20.0, &Scenario::Latency20pct.canary_latency());
    let mut rng = Rng::new(3);
    let mut state = SequentialState::default();
    let outcome = (0..360)
        .map(|_| {
            let window = Window {
                stable: stable.window(&mut rng, 10.0, BASELINE_ERROR_RATE),
                canary: canary.window(&mut rng, 10.0, BASELINE_ERROR_RATE),
            };
            state.observe(&config, &window)
        })
        .find(|o| o.verdict == SequentialVerdict::Fail)
        .expect("detected");
    assert!(
        outcome.reason.contains("slower than stable's p99"),
        "{}",
        outcome.reason
    );
    assert!(outcome.reason.contains("exceeds the margin 1.25"));
    assert_eq!(outcome.errors.verdict, SequentialVerdict::Continue);
}

#[test]
fn config_is_validated() {
    assert!(SequentialConfig::try_new(0.01, 0.1, 0.25, 0.99).is_ok());
    let err = SequentialConfig::try_new(0.0, 0.1, 0.25, 0.99).unwrap_err();
    assert_eq!(err.to_string(), "alpha must be in (0, 0.5], got 0");
    assert!(SequentialConfig::try_new(0.01, f64::NAN, 0.25, 0.99).is_err());
    assert!(SequentialConfig::try_new(0.01, 0.1, -1.0, 0.99).is_err());
    assert!(SequentialConfig::try_new(0.01, 0.1, 0.25, 1.0).is_err());
}

#[test]
fn an_empty_batch_continues_and_state_round_trips() {
    let config = SequentialConfig::default();
    let (state, outcome) = update(&config, &SequentialState::default(), &Window::default());
    assert_eq!(outcome.verdict, SequentialVerdict::Continue);
    assert!(outcome
        .reason
        .starts_with("no decision yet after 0 canary requests"));
    let mut rng = Rng::new(9);
    let traffic = VersionTraffic::new(100.0, &LatencyModel::baseline());
    let window = Window {
        stable: traffic.window(&mut rng, 60.0, 0.01),
        canary: traffic.window(&mut rng, 60.0, 0.01),
    };
    let (state, _) = update(&config, &state, &window);
    let (state, outcome) = update(&config, &state, &window);
    let json = serde_json::to_string(&state).unwrap();
    let back: SequentialState = serde_json::from_str(&json).unwrap();
    // serde_json may round the last bit of a float; the evidence is the same.
    assert_eq!(back.errors.canary_trials, state.errors.canary_trials);
    assert_eq!(back.stable_latency, state.stable_latency);
    let (again, original) = (back.judge(&config), state.judge(&config));
    assert_eq!(again.verdict, original.verdict);
    assert!((again.errors.statistic - original.errors.statistic).abs() < 1e-9);
    let outcome_json = serde_json::to_string(&outcome).unwrap();
    let outcome_back: SequentialOutcome = serde_json::from_str(&outcome_json).unwrap();
    assert_eq!(outcome_back.verdict, outcome.verdict);
    assert!(outcome_json.contains("\"verdict\":\"continue\""));
}

#[test]
fn a_clear_regression_reads_as_a_sentence() {
    let config = SequentialConfig::default();
    let window = Window {
        stable: VersionWindow {
            requests: 40_000,
            errors: 200,
            ..VersionWindow::default()
        },
        canary: VersionWindow {
            requests: 2_000,
            errors: 60,
            ..VersionWindow::default()
        },
    };
    let (_, outcome) = update(&config, &SequentialState::default(), &window);
    assert_eq!(outcome.verdict, SequentialVerdict::Fail);
    assert!(
        outcome.reason.starts_with(
            "canary error rate 3.00% vs stable 0.50% (ratio 6.00, anytime-valid bounds ["
        ),
        "{}",
        outcome.reason
    );
    assert!(outcome
        .reason
        .contains("] at 99.4% each) exceeds the margin 1.05"));
}

fn window_strategy() -> impl Strategy<Value = Window> {
    (0u64..3_000, 0u64..100, 0u64..3_000, 0u64..100, 0u64..50).prop_map(
        |(stable_requests, stable_errors, canary_requests, canary_errors, slow)| {
            let mut stable = VersionWindow {
                requests: stable_requests,
                errors: stable_errors,
                ..VersionWindow::default()
            };
            let mut canary = VersionWindow {
                requests: canary_requests,
                errors: canary_errors,
                ..VersionWindow::default()
            };
            for i in 0..stable_requests.min(500) {
                stable.latency.record(40_000 + i * 97);
            }
            for i in 0..canary_requests.min(500) {
                canary
                    .latency
                    .record(40_000 + i * 89 + if i < slow { 200_000 } else { 0 });
            }
            Window { stable, canary }
        },
    )
}

proptest! {
    #[test]
    fn statistics_are_never_nan_and_verdicts_agree(
        batches in proptest::collection::vec(window_strategy(), 1..12),
    ) {
        let config = SequentialConfig::default();
        let mut state = SequentialState::default();
        for batch in &batches {
            let outcome = state.observe(&config, batch);
            for test in [&outcome.errors, &outcome.latency, &outcome.latency_tail] {
                prop_assert!(!test.statistic.is_nan());
                prop_assert!(test.threshold > 0.0);
                let (lower, upper) = test.interval.unwrap();
                prop_assert!(lower >= 0.0 && lower <= upper);
            }
            let any_fail = [&outcome.errors, &outcome.latency, &outcome.latency_tail]
                .iter()
                .any(|t| t.verdict == SequentialVerdict::Fail);
            prop_assert_eq!(any_fail, outcome.verdict == SequentialVerdict::Fail);
        }
    }

    #[test]
    fn error_evidence_does_not_depend_on_batch_order(
        batches in proptest::collection::vec(window_strategy(), 1..12),
    ) {
        let config = SequentialConfig::default();
        let mut forward = SequentialState::default();
        let mut backward = SequentialState::default();
        let mut last_forward = None;
        let mut last_backward = None;
        for batch in &batches {
            last_forward = Some(forward.observe(&config, batch));
        }
        for batch in batches.iter().rev() {
            last_backward = Some(backward.observe(&config, batch));
        }
        let (f, b) = (last_forward.unwrap(), last_backward.unwrap());
        prop_assert_eq!(f.errors.verdict, b.errors.verdict);
        prop_assert!((f.errors.statistic - b.errors.statistic).abs() <= 1e-6 * f.errors.statistic.abs().max(1.0));
        prop_assert_eq!(forward.stable_latency, backward.stable_latency);
    }
}
