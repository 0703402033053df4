use super::*;

fn problems(policy: Policy) -> Vec<(&'static str, String)> {
    match policy.try_new() {
        Ok(_) => Vec::new(),
        Err(invalid) => invalid
            .problems
            .into_iter()
            .map(|p| (p.field, p.message))
            .collect(),
    }
}

#[test]
fn the_default_policy_is_valid() {
    assert_eq!(Policy::default().try_new(), Ok(Policy::default()));
}

#[test]
fn each_broken_rule_names_its_field_and_value() {
    let cases: Vec<(Policy, &str, &str)> = vec![
        (
            Policy { consecutive_failures: Some(0), ..Policy::default() },
            "consecutive_failures",
            "consecutive_failures 0 must be at least 1 (or absent)",
        ),
        (
            Policy { failure_rate_threshold: Some(0.0), ..Policy::default() },
            "failure_rate_threshold",
            "failure_rate_threshold 0 must be above 0 and at most 100 (percent)",
        ),
        (
            Policy { failure_rate_threshold: Some(f64::NAN), ..Policy::default() },
            "failure_rate_threshold",
            "failure_rate_threshold NaN must be above 0 and at most 100 (percent)",
        ),
        (
            Policy { slow_call_rate_threshold: Some(100.5), ..Policy::default() },
            "slow_call_rate_threshold",
            "slow_call_rate_threshold 100.5 must be above 0 and at most 100 (percent)",
        ),
        (
            Policy { slow_call_duration_ms: 0, ..Policy::default() },
            "slow_call_duration_ms",
            "slow_call_duration_ms 0 must be at least 1",
        ),
        (
            Policy { window: SlidingWindow::Count { calls: 0 }, minimum_calls: 1, ..Policy::default() },
            "window.calls",
            "window.calls 0 must be between 1 and 100000",
        ),
        (
            Policy { window: SlidingWindow::Time { seconds: 3_601 }, ..Policy::default() },
            "window.seconds",
            "window.seconds 3601 must be between 1 and 3600",
        ),
        (
            Policy { minimum_calls: 0, ..Policy::default() },
            "minimum_calls",
            "minimum_calls 0 must be at least 1",
        ),
        (
            Policy { minimum_calls: 101, ..Policy::default() },
            "minimum_calls",
            "minimum_calls 101 is above window.calls 100: no rate would ever be computed",
        ),
        (
            Policy { open_duration_ms: 0, max_open_duration_ms: 0, ..Policy::default() },
            "open_duration_ms",
            "open_duration_ms 0 must be at least 1",
        ),
        (
            Policy { max_open_duration_ms: 29_999, ..Policy::default() },
            "max_open_duration_ms",
            "max_open_duration_ms 29999 is below open_duration_ms 30000",
        ),
        (
            Policy { backoff_multiplier: 0.5, ..Policy::default() },
            "backoff_multiplier",
            "backoff_multiplier 0.5 must be a finite number >= 1.0",
        ),
        (
            Policy { backoff_multiplier: f64::INFINITY, ..Policy::default() },
            "backoff_multiplier",
            "backoff_multiplier inf must be a finite number >= 1.0",
        ),
        (
            Policy { half_open_calls: 0, success_threshold: 1, ..Policy::default() },
            "half_open_calls",
            "half_open_calls 0 must be at least 1",
        ),
        (
            Policy { success_threshold: 0, ..Policy::default() },
            "success_threshold",
            "success_threshold 0 must be at least 1",
        ),
        (
            Policy { success_threshold: 5, ..Policy::default() },
            "success_threshold",
            "success_threshold 5 is above half_open_calls 3",
        ),
        (
            Policy {
                consecutive_failures: None,
                failure_rate_threshold: None,
                slow_call_rate_threshold: None,
                ..Policy::default()
            },
            "consecutive_failures",
            "no trip rule: set consecutive_failures, failure_rate_threshold or slow_call_rate_threshold",
        ),
    ];
    for (policy, field, message) in cases {
        assert_eq!(
            problems(policy),
            vec![(field, message.to_string())],
            "{field}"
        );
    }
}

#[test]
fn every_broken_rule_is_reported_at_once() {
    let policy = Policy {
        minimum_calls: 0,
        half_open_calls: 2,
        success_threshold: 3,
        backoff_multiplier: 0.0,
        ..Policy::default()
    };
    let error = policy.try_new().expect_err("three broken rules");
    let fields: Vec<_> = error.problems.iter().map(|p| p.field).collect();
    assert_eq!(
        fields,
        ["minimum_calls", "backoff_multiplier", "success_threshold"]
    );
    assert_eq!(
        error.to_string(),
        "invalid breaker policy: minimum_calls 0 must be at least 1; \
         backoff_multiplier 0 must be a finite number >= 1.0; \
         success_threshold 3 is above half_open_calls 2"
    );
}

#[test]
fn a_time_window_takes_any_minimum_and_boundaries_are_valid() {
    for policy in [
        Policy {
            window: SlidingWindow::Time { seconds: 60 },
            minimum_calls: 1_000,
            ..Policy::default()
        },
        Policy {
            window: SlidingWindow::Count { calls: 1 },
            minimum_calls: 1,
            ..Policy::default()
        },
        Policy {
            failure_rate_threshold: Some(100.0),
            backoff_multiplier: 1.0,
            ..Policy::default()
        },
        Policy {
            half_open_calls: 1,
            success_threshold: 1,
            ..Policy::default()
        },
        Policy {
            max_open_duration_ms: 30_000,
            ..Policy::default()
        },
    ] {
        assert_eq!(problems(policy), Vec::new());
    }
}

#[test]
fn open_duration_grows_by_the_multiplier_up_to_the_cap() {
    let policy = Policy::default();
    let durations: Vec<u64> = (1..=6)
        .map(|trips| policy.open_duration_for(trips))
        .collect();
    assert_eq!(
        durations,
        [30_000, 60_000, 120_000, 240_000, 300_000, 300_000]
    );
    assert_eq!(policy.open_duration_for(u32::MAX), 300_000);
    assert_eq!(
        policy.open_duration_for(0),
        30_000,
        "trips 0 reads as the first"
    );
    let flat = Policy {
        backoff_multiplier: 1.0,
        ..Policy::default()
    };
    assert_eq!(flat.open_duration_for(10), 30_000);
    let gentle = Policy {
        backoff_multiplier: 1.5,
        max_open_duration_ms: 60_000,
        ..Policy::default()
    };
    assert_eq!(gentle.open_duration_for(2), 45_000);
    assert_eq!(gentle.open_duration_for(3), 60_000);
}

#[test]
fn policies_read_from_config_with_defaults_for_what_is_left_out() {
    let policy: Policy = serde_json::from_str(
        r#"{"mode": "shadow", "window": {"time": {"seconds": 30}}, "slow_call_rate_threshold": 80}"#,
    )
    .expect("a valid policy document");
    assert_eq!(
        policy,
        Policy {
            mode: Mode::Shadow,
            window: SlidingWindow::Time { seconds: 30 },
            slow_call_rate_threshold: Some(80.0),
            ..Policy::default()
        }
    );
    let unknown = serde_json::from_str::<Policy>(r#"{"failure_threshold": 5}"#)
        .expect_err("an unknown field is an error");
    assert!(
        unknown.to_string().contains("failure_threshold"),
        "{unknown}"
    );
    let written = serde_json::to_value(Policy::default()).expect("serializes");
    assert_eq!(written["mode"], "on");
    assert_eq!(written["window"]["count"]["calls"], 100);
}
