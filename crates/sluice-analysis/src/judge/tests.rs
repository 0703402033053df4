use std::time::Duration;

use sluice_model::{BoundSpec, Metric};

use super::*;
use crate::Histogram;

fn success(min: f64) -> CheckSpec {
    CheckSpec::builtin_min(Metric::SuccessRate, min)
}

fn p99(max_ms: u64) -> CheckSpec {
    CheckSpec::latency_max(99.0, Duration::from_millis(max_ms))
}

fn relative(metric: Metric, factor: f64) -> CheckSpec {
    let mut check = CheckSpec::builtin_min(metric, 0.0);
    check.min = None;
    check.max = Some(BoundSpec::Text(format!("stable * {factor}")));
    if metric == Metric::Latency {
        check.percentile = Some(95.0);
    }
    check
}

fn version(requests: u64, errors: u64, latency_ms: u64) -> VersionWindow {
    let mut latency = Histogram::new();
    for _ in 0..requests {
        latency.record(latency_ms * 1000);
    }
    VersionWindow {
        requests,
        errors,
        latency,
        breaker_trips: 0,
        mirror_compared: 0,
        mirror_mismatches: 0,
    }
}

/// `requests` canary requests, `errors` of them failed, all taking `latency_ms`.
fn canary(requests: u64, errors: u64, latency_ms: u64) -> Window {
    Window {
        stable: VersionWindow::default(),
        canary: version(requests, errors, latency_ms),
    }
}

fn both(stable: VersionWindow, canary: VersionWindow) -> Window {
    Window { stable, canary }
}

fn at(seconds: u64) -> Timestamp {
    Timestamp::from_millis(seconds * 1000)
}

#[test]
fn too_little_traffic_is_inconclusive_never_pass() {
    let run = analyse(&[success(99.0), p99(100)], 20, &canary(7, 0, 5));
    assert_eq!(run.verdict, Verdict::Inconclusive);
    assert_eq!(
        run.reason,
        "too little traffic: 7 canary requests, 20 needed"
    );
    assert!(run
        .checks
        .iter()
        .all(|c| c.verdict == Verdict::Inconclusive));
    assert_eq!(
        run.checks[0].reason,
        "success_rate not judged: too little traffic: 7 canary requests, 20 needed"
    );
    // Even a terrible canary with too little traffic is not judged failed.
    assert_eq!(
        analyse(&[success(99.0)], 20, &canary(7, 7, 5)).verdict,
        Verdict::Inconclusive
    );
}

#[test]
fn success_rate_below_minimum_fails_with_numbers() {
    let run = analyse(&[success(99.0)], 20, &canary(2000, 598, 5));
    assert_eq!(run.verdict, Verdict::Fail);
    let check = &run.checks[0];
    assert_eq!(check.value, Some(70.1));
    assert_eq!(check.bound, Some(99.0));
    assert_eq!(
        check.reason,
        "success_rate 70.1% is below the minimum 99% (598 of 2000 canary requests failed)"
    );
    assert_eq!(run.reason, check.reason);
}

#[test]
fn a_value_just_below_its_bound_is_never_shown_equal() {
    let run = analyse(&[success(99.99)], 20, &canary(100_000, 11, 5));
    assert!(
        run.checks[0]
            .reason
            .starts_with("success_rate 99.989% is below the minimum 99.99%"),
        "{}",
        run.reason
    );
}

#[test]
fn latency_above_maximum_fails_and_within_passes() {
    let run = analyse(&[p99(100)], 20, &canary(500, 0, 250));
    assert_eq!(run.verdict, Verdict::Fail);
    assert!(
        run.checks[0].reason.starts_with("latency_p99 2"),
        "{}",
        run.reason
    );
    assert!(
        run.checks[0]
            .reason
            .contains("is above the maximum 100ms (500 canary requests)"),
        "{}",
        run.reason
    );
    let run = analyse(&[p99(100)], 20, &canary(500, 0, 20));
    assert_eq!(run.verdict, Verdict::Pass);
    assert!(
        run.checks[0].reason.contains("is within the maximum 100ms"),
        "{}",
        run.reason
    );
}

#[test]
fn run_verdict_combines_checks_and_no_checks_pass_on_traffic() {
    let run = analyse(&[success(99.0), p99(100)], 20, &canary(1520, 0, 5));
    assert_eq!(
        (run.verdict, run.reason.as_str()),
        (Verdict::Pass, "all 2 checks passed on 1520 canary requests")
    );
    let run = analyse(&[success(99.0), p99(100)], 20, &canary(1520, 800, 500));
    assert_eq!(run.verdict, Verdict::Fail);
    assert_eq!(run.reason.matches("; ").count(), 1);
    assert_eq!(analyse(&[], 20, &canary(30, 0, 5)).verdict, Verdict::Pass);
    assert_eq!(
        analyse(&[], 20, &canary(3, 0, 5)).verdict,
        Verdict::Inconclusive
    );
}

#[test]
fn relative_bounds_compare_with_stable_over_the_same_window() {
    let check = relative(Metric::ErrorRate, 1.10);
    // stable 1% errors; canary 1.05% is within stable * 1.1 = 1.1%.
    let run = analyse(
        std::slice::from_ref(&check),
        20,
        &both(version(10_000, 100, 5), version(2000, 21, 5)),
    );
    assert_eq!(run.verdict, Verdict::Pass, "{}", run.reason);
    assert_eq!(run.checks[0].stable_value, Some(1.0));
    assert_eq!(run.checks[0].bound_expr, "stable * 1.1 = 1.1%");
    // canary 2% is above.
    let run = analyse(
        std::slice::from_ref(&check),
        20,
        &both(version(10_000, 100, 5), version(2000, 40, 5)),
    );
    assert_eq!(run.verdict, Verdict::Fail);
    assert_eq!(
        run.reason,
        "error_rate 2% is above the maximum stable * 1.1 = 1.1% (40 of 2000 canary requests failed)"
    );
    // No stable traffic: nothing to compare with, inconclusive.
    let run = analyse(&[check], 20, &canary(2000, 40, 5));
    assert_eq!(run.verdict, Verdict::Inconclusive);
    assert!(
        run.reason.contains("no stable value to compare with"),
        "{}",
        run.reason
    );

    let latency = relative(Metric::Latency, 1.3);
    let run = analyse(
        std::slice::from_ref(&latency),
        20,
        &both(version(5000, 0, 100), version(500, 0, 120)),
    );
    assert_eq!(run.verdict, Verdict::Pass, "{}", run.reason);
    let run = analyse(
        &[latency],
        20,
        &both(version(5000, 0, 100), version(500, 0, 150)),
    );
    assert_eq!(run.verdict, Verdict::Fail, "{}", run.reason);
}

#[test]
fn mean_latency_is_measured() {
    let mut check = CheckSpec::builtin_min(Metric::MeanLatency, 0.0);
    check.min = None;
    check.max = Some(BoundSpec::Text("stable * 1.2".to_string()));
    let run = analyse(
        &[check],
        20,
        &both(version(1000, 0, 100), version(100, 0, 150)),
    );
    assert_eq!(run.verdict, Verdict::Fail, "{}", run.reason);
    assert!(run.reason.starts_with("mean_latency 1"), "{}", run.reason);
}

#[test]
fn a_sustained_check_fails_only_after_its_duration() {
    let mut check = success(99.0);
    check.sustained = Some(Duration::from_secs(300));
    let bad = canary(1000, 100, 5);
    let good = canary(1000, 0, 5);
    let judge = |window: &Window, memory: &[CheckMemory], now| {
        analyse_with(
            std::slice::from_ref(&check),
            20,
            &Inputs {
                window,
                provided: &[],
                memory,
                now,
            },
        )
    };
    let first = judge(&bad, &[], at(60));
    assert_eq!(first.verdict, Verdict::Inconclusive);
    assert!(
        first
            .reason
            .starts_with("pending: success_rate 90% is below the minimum 99%"),
        "{}",
        first.reason
    );
    assert!(first.reason.ends_with("for 0s of 5m"), "{}", first.reason);
    let later = judge(&bad, &first.memory, at(300));
    assert_eq!(later.verdict, Verdict::Inconclusive, "{}", later.reason);
    let failed = judge(&bad, &later.memory, at(360));
    assert_eq!(failed.verdict, Verdict::Fail);
    assert!(
        failed.reason.ends_with("sustained for 5m (needed 5m)"),
        "{}",
        failed.reason
    );
    // One good run resets the clock.
    let recovered = judge(&good, &later.memory, at(360));
    assert_eq!(recovered.verdict, Verdict::Pass);
    assert_eq!(recovered.memory[0].failing_since, None);
    assert_eq!(
        judge(&bad, &recovered.memory, at(420)).verdict,
        Verdict::Inconclusive
    );
}

fn memory_check(on_error: OnError) -> CheckSpec {
    let mut check = CheckSpec::builtin_min(Metric::SuccessRate, 0.0);
    check.metric = None;
    check.min = None;
    check.name = Some("memory".to_string());
    check.query = Some("process_resident_memory_bytes".to_string());
    check.max = Some(BoundSpec::Text("stable * 1.3".to_string()));
    check.on_error = on_error;
    check
}

#[test]
fn provider_errors_are_inconclusive_until_the_limit_then_fail() {
    let check = memory_check(OnError::Inconclusive);
    let window = canary(0, 0, 5);
    let error: Vec<Option<Result<Measured, String>>> =
        vec![Some(Err("connection refused".to_string()))];
    let judge = |memory: &[CheckMemory]| {
        analyse_with(
            std::slice::from_ref(&check),
            20,
            &Inputs {
                window: &window,
                provided: &error,
                memory,
                now: at(1),
            },
        )
    };
    let first = judge(&[]);
    assert_eq!(first.checks[0].verdict, Verdict::Inconclusive);
    assert_eq!(
        first.checks[0].reason,
        "memory: provider error 1 of 3 allowed in a row, inconclusive: connection refused"
    );
    let second = judge(&first.memory);
    assert_eq!(second.checks[0].verdict, Verdict::Inconclusive);
    let third = judge(&second.memory);
    assert_eq!(third.verdict, Verdict::Fail);
    assert_eq!(
        third.checks[0].reason,
        "memory: 3 provider errors in a row (limit 3): connection refused"
    );

    // A good answer resets the streak; values are compared like builtin ones.
    let fine: Vec<Option<Result<Measured, String>>> = vec![Some(Ok(Measured {
        canary: Some(120e6),
        stable: Some(100e6),
    }))];
    let run = analyse_with(
        std::slice::from_ref(&check),
        20,
        &Inputs {
            window: &canary(100, 0, 5),
            provided: &fine,
            memory: &second.memory,
            now: at(2),
        },
    );
    assert_eq!(run.verdict, Verdict::Pass, "{}", run.reason);
    assert_eq!(run.memory[0].error_streak, 0);
    let heavy: Vec<Option<Result<Measured, String>>> = vec![Some(Ok(Measured {
        canary: Some(140e6),
        stable: Some(100e6),
    }))];
    let run = analyse_with(
        &[check],
        20,
        &Inputs {
            window: &canary(100, 0, 5),
            provided: &heavy,
            memory: &[],
            now: at(2),
        },
    );
    assert_eq!(run.verdict, Verdict::Fail);
    assert_eq!(
        run.reason,
        "memory 140000000 is above the maximum stable * 1.3 = 130000000"
    );

    let strict = memory_check(OnError::Fail);
    let run = analyse_with(
        &[strict],
        20,
        &Inputs {
            window: &window,
            provided: &error,
            memory: &[],
            now: at(1),
        },
    );
    assert_eq!(run.verdict, Verdict::Fail);
    assert!(run.reason.contains("on_error: fail"), "{}", run.reason);
}

#[test]
fn a_provider_check_is_judged_even_with_little_proxy_traffic() {
    let check = memory_check(OnError::Inconclusive);
    let heavy: Vec<Option<Result<Measured, String>>> = vec![Some(Ok(Measured {
        canary: Some(140e6),
        stable: Some(100e6),
    }))];
    let run = analyse_with(
        &[check, success(99.0)],
        20,
        &Inputs {
            window: &canary(3, 0, 5),
            provided: &heavy,
            memory: &[],
            now: at(2),
        },
    );
    assert_eq!(
        run.verdict,
        Verdict::Fail,
        "a measured regression fails even while traffic is short"
    );
    assert_eq!(run.checks[1].verdict, Verdict::Inconclusive);
}

#[test]
fn progress_numbers_are_filled_and_names_are_used() {
    let mut named = success(99.0);
    named.name = Some("availability".to_string());
    let run = analyse(
        &[named],
        20,
        &both(version(1000, 10, 8), version(100, 0, 9)),
    );
    assert_eq!(run.checks[0].name, "availability");
    assert_eq!(run.canary_success_rate, Some(100.0));
    assert_eq!(run.stable_success_rate, Some(99.0));
    assert!(run.canary_p99_ms.unwrap() >= 9.0);
    assert_eq!((run.canary_requests, run.stable_requests), (100, 1000));
}

#[test]
fn a_value_equal_to_a_relative_bound_up_to_rounding_passes() {
    // 4.9% against stable 9.8% × 0.5: equal, though the two products round differently.
    let run = analyse(
        &[relative(Metric::ErrorRate, 0.5)],
        20,
        &both(version(1000, 98, 5), version(1000, 49, 5)),
    );
    assert_eq!(run.verdict, Verdict::Pass, "{}", run.reason);
    let run = analyse(
        &[relative(Metric::ErrorRate, 0.5)],
        20,
        &both(version(1000, 98, 5), version(1000, 50, 5)),
    );
    assert_eq!(run.verdict, Verdict::Fail, "{}", run.reason);
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// An absolute minimum fails exactly when the measured rate is below it.
        #[test]
        fn a_minimum_fails_exactly_below_it(requests in 20u64..5000, error_share in 0.0f64..=1.0, min in 0.0f64..=100.0) {
            let errors = (requests as f64 * error_share) as u64;
            let run = analyse(&[success(min)], 20, &canary(requests, errors, 5));
            let rate = 100.0 * (requests - errors) as f64 / requests as f64;
            let expected = if rate < min { Verdict::Fail } else { Verdict::Pass };
            prop_assert_eq!(run.verdict, expected, "{}", run.reason);
            prop_assert_eq!(run.checks[0].value, Some(rate));
        }

        /// A relative maximum compares with stable's value times the factor.
        #[test]
        fn a_relative_maximum_scales_stable(stable_errors in 0u64..200, canary_errors in 0u64..200, factor in 0.5f64..3.0) {
            let check = relative(Metric::ErrorRate, (factor * 100.0).round() / 100.0);
            let factor = (factor * 100.0).round() / 100.0;
            let run = analyse(&[check], 20, &both(version(1000, stable_errors, 5), version(1000, canary_errors, 5)));
            let (stable, canary) = (stable_errors as f64 / 10.0, canary_errors as f64 / 10.0);
            let expected = if canary > stable * factor { Verdict::Fail } else { Verdict::Pass };
            prop_assert_eq!(run.verdict, expected, "{}", run.reason);
        }

        /// A sustained check fails exactly when the violation has lasted its
        /// duration without a good run in between, and passes on a good run.
        #[test]
        fn sustained_fails_only_after_an_unbroken_violation(
            runs in proptest::collection::vec((any::<bool>(), 1u64..120), 1..60),
            needed in 0u64..600,
        ) {
            let mut check = success(99.0);
            check.sustained = Some(Duration::from_secs(needed));
            let (bad, good) = (canary(1000, 100, 5), canary(1000, 0, 5));
            let mut memory = Vec::new();
            let mut now = 0;
            let mut streak_start: Option<u64> = None;
            for (is_bad, gap) in runs {
                now += gap;
                let window = if is_bad { &bad } else { &good };
                let run = analyse_with(&[check.clone()], 20, &Inputs { window, provided: &[], memory: &memory, now: at(now) });
                if is_bad {
                    let start = *streak_start.get_or_insert(now);
                    let expected = if now - start >= needed { Verdict::Fail } else { Verdict::Inconclusive };
                    prop_assert_eq!(run.verdict, expected, "{}", run.reason);
                } else {
                    streak_start = None;
                    prop_assert_eq!(run.verdict, Verdict::Pass);
                }
                memory = run.memory;
            }
        }
    }
}

#[test]
fn a_breaker_trip_on_the_canary_fails_a_no_trips_check() {
    let mut no_trips = CheckSpec::builtin_min(Metric::BreakerTrips, 0.0);
    no_trips.min = None;
    no_trips.max = Some(BoundSpec::Number(0.0));
    let mut window = canary(500, 0, 5);
    let quiet = analyse(std::slice::from_ref(&no_trips), 20, &window);
    assert_eq!(quiet.verdict, Verdict::Pass);
    window.canary.breaker_trips = 1;
    let tripped = analyse(&[no_trips], 20, &window);
    assert_eq!(tripped.verdict, Verdict::Fail);
    assert!(
        tripped
            .reason
            .starts_with("breaker_trips 1 is above the maximum 0"),
        "{}",
        tripped.reason
    );
}

#[test]
fn the_mirror_mismatch_rate_is_judged_on_compared_pairs_only() {
    let mut few_mismatches = CheckSpec::builtin_min(Metric::MirrorMismatchRate, 0.0);
    few_mismatches.min = None;
    few_mismatches.max = Some(BoundSpec::Number(5.0));
    let mut window = canary(500, 0, 5);
    let nothing_compared = analyse(std::slice::from_ref(&few_mismatches), 20, &window);
    assert_eq!(nothing_compared.verdict, Verdict::Inconclusive);
    window.canary.mirror_compared = 200;
    window.canary.mirror_mismatches = 4;
    let matching = analyse(std::slice::from_ref(&few_mismatches), 20, &window);
    assert_eq!(matching.verdict, Verdict::Pass, "{}", matching.reason);
    window.canary.mirror_mismatches = 50;
    let differing = analyse(&[few_mismatches], 20, &window);
    assert_eq!(differing.verdict, Verdict::Fail);
    assert!(
        differing
            .reason
            .starts_with("mirror_mismatch_rate 25% is above the maximum 5%"),
        "{}",
        differing.reason
    );
    assert!(
        differing
            .reason
            .contains("50 of 200 mirrored pairs differed"),
        "{}",
        differing.reason
    );
}
