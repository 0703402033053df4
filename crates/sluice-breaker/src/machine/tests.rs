//! The machine driven call by call with a fake clock: `now` is a number.

use super::*;
use crate::policy::SlidingWindow;
use TransitionReason as Why;

/// Small numbers: trips on 3 failures in a row or >= 50% over at least 4 of
/// the last 10 calls; open 1 s, doubling up to 8 s; 3 trials, 2 to close.
pub(super) fn policy() -> Policy {
    Policy {
        mode: Mode::On,
        consecutive_failures: Some(3),
        failure_rate_threshold: Some(50.0),
        slow_call_rate_threshold: None,
        slow_call_duration_ms: 100,
        window: SlidingWindow::Count { calls: 10 },
        minimum_calls: 4,
        open_duration_ms: 1_000,
        max_open_duration_ms: 8_000,
        backoff_multiplier: 2.0,
        half_open_calls: 3,
        success_threshold: 2,
    }
    .try_new()
    .expect("the test policy is valid")
}

pub(super) fn breaker(policy: Policy) -> Breaker {
    Breaker::new(policy, 0)
}

pub(super) fn admit(breaker: &mut Breaker, now: Millis) -> Ticket {
    match breaker.try_acquire(now) {
        (Admission::Admitted(ticket), _) => ticket,
        (rejected, _) => panic!("expected an admission at {now}, got {rejected:?}"),
    }
}

/// Admits a call at `now` and reports it right away, 10 ms long.
pub(super) fn call(breaker: &mut Breaker, outcome: Outcome, now: Millis) -> Option<Transition> {
    let ticket = admit(breaker, now);
    breaker.on_result(ticket, outcome, 10, now)
}

pub(super) fn calls(breaker: &mut Breaker, outcomes: &[Outcome], now: Millis) -> Vec<Transition> {
    outcomes
        .iter()
        .filter_map(|&o| call(breaker, o, now))
        .collect()
}

pub(super) fn transition(
    from: State,
    to: State,
    at: Millis,
    reason: TransitionReason,
) -> Transition {
    Transition {
        from,
        to,
        at,
        reason,
    }
}

/// Trips a Closed breaker with consecutive failures at `now`.
pub(super) fn trip(breaker: &mut Breaker, now: Millis) -> Transition {
    let transitions = calls(breaker, &[Outcome::Failure; 3], now);
    assert_eq!(transitions.len(), 1, "{transitions:?}");
    transitions[0].clone()
}

/// Trips, waits out the open duration and turns half-open.
pub(super) fn half_open(breaker: &mut Breaker, now: Millis) -> Millis {
    trip(breaker, now);
    let due = breaker.snapshot(now).open_until.expect("open");
    assert!(breaker.tick(due).is_some());
    due
}

use Outcome::{Failure as F, Success as S, Timeout as T};

#[test]
fn consecutive_failures_trip_and_a_success_resets_the_count() {
    let mut breaker = breaker(Policy {
        failure_rate_threshold: None,
        ..policy()
    });
    assert_eq!(calls(&mut breaker, &[F, T, S, F, T], 5), []);
    assert_eq!(breaker.snapshot(5).consecutive_failures, 2);
    assert_eq!(
        call(&mut breaker, F, 7),
        Some(transition(
            State::Closed,
            State::Open,
            7,
            Why::ConsecutiveFailures {
                count: 3,
                threshold: 3
            }
        ))
    );
    let counters = breaker.snapshot(7).counters;
    assert_eq!((counters.trips, counters.transitions), (1, 1));
    assert_eq!(
        (counters.successes, counters.failures, counters.timeouts),
        (1, 3, 2)
    );
}

#[test]
fn the_failure_rate_trips_at_the_threshold_once_minimum_calls_are_in() {
    let mut breaker = breaker(Policy {
        consecutive_failures: None,
        ..policy()
    });
    // Three failures: 100%, but below minimum_calls 4 no rate is computed.
    assert_eq!(calls(&mut breaker, &[F, F, F], 0), []);
    assert_eq!(breaker.snapshot(0).failure_rate, None);
    // The fourth call, a success, brings in a rate of 75%.
    let reason = Why::FailureRate {
        rate: 75.0,
        threshold: 50.0,
        calls: 4,
    };
    assert_eq!(
        call(&mut breaker, S, 1),
        Some(transition(State::Closed, State::Open, 1, reason))
    );

    let mut exactly = Breaker::new(
        Policy {
            consecutive_failures: None,
            ..policy()
        },
        0,
    );
    assert_eq!(calls(&mut exactly, &[S, F, S, S, F, S], 0), []);
    let reason = Why::FailureRate {
        rate: 50.0,
        threshold: 50.0,
        calls: 8,
    };
    assert_eq!(
        calls(&mut exactly, &[T, F], 0),
        [transition(State::Closed, State::Open, 0, reason)]
    );
}

#[test]
fn the_count_window_forgets_old_failures() {
    let mut breaker = breaker(Policy {
        consecutive_failures: None,
        ..policy()
    });
    // 4 failures in 10 is 40%, never 50% on the way.
    let history = [S, S, S, F, S, F, S, F, S, F];
    assert_eq!(calls(&mut breaker, &history, 0), []);
    assert_eq!(breaker.snapshot(0).failure_rate, Some(40.0));
    assert_eq!(
        calls(&mut breaker, &[S, S, S, S], 0),
        [],
        "pushed out S, S, S, F: 30%"
    );
    assert_eq!(breaker.snapshot(0).failure_rate, Some(30.0));
}

#[test]
fn the_slow_call_rate_trips_on_slow_successes() {
    let slow_rule = Policy {
        consecutive_failures: None,
        failure_rate_threshold: None,
        slow_call_rate_threshold: Some(50.0),
        ..policy()
    };
    let mut breaker = breaker(slow_rule);
    for (duration, now) in [(100, 0), (101, 1), (100, 2)] {
        let ticket = admit(&mut breaker, now);
        assert_eq!(breaker.on_result(ticket, S, duration, now), None);
    }
    let ticket = admit(&mut breaker, 3);
    let reason = Why::SlowCallRate {
        rate: 50.0,
        threshold: 50.0,
        calls: 4,
    };
    assert_eq!(
        breaker.on_result(ticket, S, 250, 3),
        Some(transition(State::Closed, State::Open, 3, reason))
    );
    assert_eq!(breaker.snapshot(3).counters.slow, 2);
}

#[test]
fn the_time_window_counts_only_recent_seconds() {
    let timed = Policy {
        consecutive_failures: None,
        window: SlidingWindow::Time { seconds: 2 },
        ..policy()
    };
    let mut breaker = breaker(timed);
    assert_eq!(calls(&mut breaker, &[F, F, F], 500), []);
    // At 2.5 s the failures of second 0 have expired: 1 failure in 4 calls.
    assert_eq!(calls(&mut breaker, &[S, S, S, F], 2_500), []);
    assert_eq!(breaker.snapshot(2_500).failure_rate, Some(25.0));
    assert_eq!(breaker.snapshot(3_000).window_calls, 4);
    assert_eq!(breaker.snapshot(4_000).window_calls, 0);
    // Second 3 and second 2 together: 4 failures in 8 calls is 50%.
    let reason = Why::FailureRate {
        rate: 50.0,
        threshold: 50.0,
        calls: 8,
    };
    assert_eq!(
        calls(&mut breaker, &[S, F, F, F], 3_100),
        [transition(State::Closed, State::Open, 3_100, reason)]
    );
}

#[test]
fn open_rejects_with_the_time_left_then_turns_half_open() {
    let mut breaker = breaker(policy());
    trip(&mut breaker, 100);
    let snapshot = breaker.snapshot(100);
    assert_eq!(
        (snapshot.state, snapshot.open_until, snapshot.trips_in_a_row),
        (State::Open, Some(1_100), 1)
    );
    assert_eq!(
        breaker.try_acquire(400),
        (
            Admission::Rejected {
                retry_after_ms: 700
            },
            None
        )
    );
    assert_eq!(breaker.tick(1_099), None);
    assert_eq!(breaker.snapshot(1_099).counters.rejected, 1);
    let (admission, turned) = breaker.try_acquire(1_150);
    assert_eq!(
        turned,
        Some(transition(
            State::Open,
            State::HalfOpen,
            1_150,
            Why::OpenElapsed { open_for_ms: 1_050 }
        ))
    );
    assert!(matches!(
        admission,
        Admission::Admitted(Ticket {
            trial: true,
            would_reject: false,
            ..
        })
    ));
    assert_eq!(breaker.snapshot(1_150).open_until, None);
}

#[test]
fn half_open_admits_exactly_half_open_calls_and_a_cancel_frees_a_slot() {
    let mut breaker = breaker(policy());
    let now = half_open(&mut breaker, 0);
    let trials: Vec<Ticket> = (0..3).map(|_| admit(&mut breaker, now)).collect();
    assert!(trials.iter().all(|t| t.trial));
    let full = Admission::Rejected {
        retry_after_ms: HALF_OPEN_RETRY_AFTER_MS,
    };
    assert_eq!(breaker.try_acquire(now).0, full);
    breaker.on_cancel(trials[0]);
    let replacement = admit(&mut breaker, now);
    assert!(replacement.trial);
    assert_eq!(breaker.try_acquire(now).0, full);
    // An ended trial keeps its slot: the round has three trials in all.
    assert_eq!(breaker.on_result(trials[1], S, 10, now), None);
    assert_eq!(breaker.try_acquire(now).0, full);
    assert_eq!(
        breaker.on_result(trials[2], S, 10, now + 5),
        Some(transition(
            State::HalfOpen,
            State::Closed,
            now + 5,
            Why::TrialsSucceeded { successes: 2 }
        ))
    );
    let snapshot = breaker.snapshot(now + 5);
    assert_eq!(
        (
            snapshot.window_calls,
            snapshot.trips_in_a_row,
            snapshot.counters.rejected
        ),
        (0, 0, 3)
    );
    // The last trial ends after the round: counted, but nothing more.
    assert_eq!(breaker.on_result(replacement, F, 10, now + 6), None);
    assert_eq!(breaker.snapshot(now + 6).window_calls, 0);
    assert_eq!(breaker.snapshot(now + 6).counters.failures, 4);
}

#[test]
fn half_open_reopens_once_closing_is_impossible() {
    let mut breaker = breaker(policy());
    let now = half_open(&mut breaker, 0);
    let trials: Vec<Ticket> = (0..3).map(|_| admit(&mut breaker, now)).collect();
    // 3 trials, 2 successes needed: one failure still leaves a way to close.
    assert_eq!(breaker.on_result(trials[0], T, 10, now), None);
    assert_eq!(
        breaker.on_result(trials[1], F, 10, now + 1),
        Some(transition(
            State::HalfOpen,
            State::Open,
            now + 1,
            Why::TrialFailed { failures: 2 }
        ))
    );
    // The third trial belongs to the round that ended: it cannot close the breaker.
    assert_eq!(breaker.on_result(trials[2], S, 10, now + 2), None);
    assert_eq!(breaker.state(), State::Open);

    let strict = Policy {
        success_threshold: 3,
        ..policy()
    };
    let mut breaker = Breaker::new(strict, 0);
    let now = half_open(&mut breaker, 0);
    let trial = admit(&mut breaker, now);
    let reopened = breaker
        .on_result(trial, F, 10, now)
        .expect("one failure is enough");
    assert_eq!(reopened.reason, Why::TrialFailed { failures: 1 });
}

#[test]
fn a_slow_trial_fails_only_when_slowness_is_a_rule() {
    let mut lenient = breaker(policy());
    let now = half_open(&mut lenient, 0);
    for _ in 0..2 {
        let trial = admit(&mut lenient, now);
        lenient.on_result(trial, S, 5_000, now);
    }
    assert_eq!(lenient.state(), State::Closed);

    let mut strict = breaker(Policy {
        slow_call_rate_threshold: Some(100.0),
        ..policy()
    });
    let now = half_open(&mut strict, 0);
    let trials: Vec<Ticket> = (0..2).map(|_| admit(&mut strict, now)).collect();
    assert_eq!(strict.on_result(trials[0], S, 5_000, now), None);
    let reopened = strict
        .on_result(trials[1], S, 5_000, now)
        .expect("two slow trials fail");
    assert_eq!(reopened.reason, Why::TrialFailed { failures: 2 });
}

#[test]
fn the_open_duration_backs_off_up_to_the_cap_and_resets_on_closing() {
    let mut breaker = breaker(Policy {
        success_threshold: 3,
        ..policy()
    });
    let mut now = half_open(&mut breaker, 0);
    let mut open_for = Vec::new();
    for _ in 0..5 {
        let trial = admit(&mut breaker, now);
        breaker.on_result(trial, F, 10, now);
        let snapshot = breaker.snapshot(now);
        let until = snapshot.open_until.expect("re-opened");
        open_for.push((until - now, snapshot.trips_in_a_row));
        now = until;
        breaker.tick(now).expect("half-open again");
    }
    assert_eq!(
        open_for,
        [(2_000, 2), (4_000, 3), (8_000, 4), (8_000, 5), (8_000, 6)]
    );
    for _ in 0..3 {
        call(&mut breaker, S, now);
    }
    assert_eq!(
        (breaker.state(), breaker.snapshot(now).trips_in_a_row),
        (State::Closed, 0)
    );
    trip(&mut breaker, now);
    assert_eq!(breaker.snapshot(now).open_until, Some(now + 1_000));
}

#[test]
fn results_from_an_older_generation_only_count() {
    let mut breaker = breaker(policy());
    let before_trip = admit(&mut breaker, 0);
    let now = half_open(&mut breaker, 0);
    // A success admitted while Closed ends during half-open: not a trial.
    assert_eq!(breaker.on_result(before_trip, S, 10, now), None);
    assert_eq!(breaker.on_result(before_trip, S, 10, now), None);
    assert_eq!(breaker.state(), State::HalfOpen);
    breaker.on_cancel(before_trip);
    let trials: Vec<Ticket> = (0..3).map(|_| admit(&mut breaker, now)).collect();
    assert_eq!(
        breaker.try_acquire(now).0,
        Admission::Rejected {
            retry_after_ms: 1_000
        }
    );

    breaker.reset(now);
    // Trials from before the reset neither fill the fresh window nor trip it.
    for trial in trials {
        assert_eq!(breaker.on_result(trial, F, 10, now), None);
    }
    let snapshot = breaker.snapshot(now);
    assert_eq!(
        (snapshot.window_calls, snapshot.consecutive_failures),
        (0, 0)
    );
    assert_eq!(
        (snapshot.counters.successes, snapshot.counters.failures),
        (2, 6)
    );
}
