//! The machine under an operator's hand and in its other modes: force,
//! reset, shadow, off, live policy changes; and how its values read.

use super::tests::*;
use super::*;
use crate::policy::SlidingWindow;
use Outcome::{Failure as F, Success as S, Timeout as T};
use TransitionReason as Why;

#[test]
fn forced_open_is_sticky_until_closed_or_reset() {
    let mut breaker = breaker(policy());
    trip(&mut breaker, 0);
    assert_eq!(
        breaker.force_open(10),
        Some(transition(State::Open, State::ForcedOpen, 10, Why::Forced))
    );
    assert_eq!(breaker.force_open(11), None);
    assert_eq!(
        breaker.try_acquire(50_000),
        (
            Admission::Rejected {
                retry_after_ms: 1_000
            },
            None
        )
    );
    assert_eq!(breaker.tick(50_000), None);
    assert_eq!(breaker.snapshot(50_000).open_until, None);
    assert_eq!(
        breaker.force_close(50_001),
        Some(transition(
            State::ForcedOpen,
            State::Closed,
            50_001,
            Why::Forced
        ))
    );
    // An operator's close keeps the backoff; a reset clears it.
    assert_eq!(breaker.snapshot(50_001).trips_in_a_row, 1);
    trip(&mut breaker, 50_002);
    assert_eq!(breaker.snapshot(50_002).open_until, Some(52_002));
    assert_eq!(
        breaker.reset(50_003),
        Some(transition(State::Open, State::Closed, 50_003, Why::Reset))
    );
    let snapshot = breaker.snapshot(50_003);
    assert_eq!(
        (
            snapshot.trips_in_a_row,
            snapshot.counters.trips,
            snapshot.counters.failures
        ),
        (0, 2, 6)
    );
    assert_eq!(snapshot.counters.transitions, 5);
}

#[test]
fn closing_a_closed_breaker_empties_its_window_without_a_transition() {
    let mut breaker = breaker(policy());
    calls(&mut breaker, &[F, S, S, S], 0);
    assert_eq!(breaker.force_close(1), None);
    assert_eq!(breaker.snapshot(1).window_calls, 0);
    calls(&mut breaker, &[F, F], 2);
    assert_eq!(breaker.reset(3), None);
    assert_eq!(
        (
            breaker.snapshot(3).window_calls,
            breaker.snapshot(3).consecutive_failures
        ),
        (0, 0)
    );
    assert_eq!(breaker.snapshot(3).counters.transitions, 0);
    assert_eq!(breaker.force_open(4).map(|t| t.from), Some(State::Closed));
}

#[test]
fn shadow_admits_everything_and_says_what_on_would_do() {
    let mut breaker = breaker(Policy {
        mode: Mode::Shadow,
        ..policy()
    });
    let tripped = trip(&mut breaker, 0);
    assert_eq!(tripped.to, State::Open);
    let ticket = admit(&mut breaker, 10);
    assert_eq!((ticket.trial, ticket.would_reject), (false, true));
    assert_eq!(
        breaker.on_result(ticket, S, 10, 10),
        None,
        "a would-be-rejected call changes nothing"
    );
    let (admission, turned) = breaker.try_acquire(1_000);
    assert_eq!(turned.map(|t| t.to), Some(State::HalfOpen));
    assert!(matches!(
        admission,
        Admission::Admitted(Ticket {
            trial: true,
            would_reject: false,
            ..
        })
    ));
    admit(&mut breaker, 1_000);
    admit(&mut breaker, 1_000);
    let extra = admit(&mut breaker, 1_000);
    assert_eq!((extra.trial, extra.would_reject), (false, true));
    breaker.force_open(1_001);
    assert!(admit(&mut breaker, 1_002).would_reject);
    let counters = breaker.snapshot(1_002).counters;
    assert_eq!((counters.rejected, counters.shadow_rejected), (0, 3));
}

#[test]
fn off_admits_everything_and_never_transitions() {
    let mut breaker = breaker(Policy {
        mode: Mode::Off,
        ..policy()
    });
    assert_eq!(breaker.state(), State::Disabled);
    assert_eq!(calls(&mut breaker, &[F; 20], 0), []);
    assert_eq!(breaker.force_open(1), None);
    assert_eq!(breaker.force_close(1), None);
    assert_eq!(breaker.reset(1), None);
    assert_eq!(breaker.tick(1_000_000), None);
    assert_eq!(calls(&mut breaker, &[T; 5], 2), []);
    let snapshot = breaker.snapshot(2);
    assert_eq!(
        (
            snapshot.state,
            snapshot.failure_rate,
            snapshot.consecutive_failures
        ),
        (State::Disabled, Some(100.0), 5)
    );
    assert_eq!(
        (
            snapshot.counters.failures,
            snapshot.counters.timeouts,
            snapshot.counters.transitions
        ),
        (20, 5, 0)
    );
}

#[test]
fn set_policy_turns_the_breaker_off_and_on() {
    let mut breaker = breaker(policy());
    trip(&mut breaker, 0);
    let off = Policy {
        mode: Mode::Off,
        ..policy()
    };
    assert_eq!(
        breaker.set_policy(off.clone(), 5),
        Some(transition(
            State::Open,
            State::Disabled,
            5,
            Why::PolicyChanged
        ))
    );
    assert_eq!(breaker.set_policy(off, 6), None);
    assert_eq!(calls(&mut breaker, &[F, F], 7), []);
    assert_eq!(
        breaker.set_policy(
            Policy {
                mode: Mode::Shadow,
                ..policy()
            },
            8
        ),
        Some(transition(
            State::Disabled,
            State::Closed,
            8,
            Why::PolicyChanged
        ))
    );
    let snapshot = breaker.snapshot(8);
    assert_eq!(
        (
            snapshot.mode,
            snapshot.window_calls,
            snapshot.trips_in_a_row
        ),
        (Mode::Shadow, 0, 0)
    );
}

#[test]
fn set_policy_keeps_an_open_breaker_open_until_its_deadline() {
    let mut breaker = breaker(policy());
    trip(&mut breaker, 0);
    let longer = Policy {
        open_duration_ms: 5_000,
        mode: Mode::Shadow,
        ..policy()
    };
    assert_eq!(breaker.set_policy(longer, 10), None);
    assert_eq!(
        (breaker.state(), breaker.snapshot(10).open_until),
        (State::Open, Some(1_000))
    );
    assert!(admit(&mut breaker, 20).would_reject);
    assert_eq!(breaker.tick(1_000).map(|t| t.to), Some(State::HalfOpen));
}

#[test]
fn set_policy_starts_a_fresh_window_only_for_a_new_window_shape() {
    let mut breaker = breaker(Policy {
        consecutive_failures: None,
        ..policy()
    });
    calls(&mut breaker, &[F, S, F], 0);
    let stricter = Policy {
        consecutive_failures: None,
        failure_rate_threshold: Some(40.0),
        ..policy()
    };
    assert_eq!(breaker.set_policy(stricter.clone(), 1), None);
    assert_eq!(breaker.snapshot(1).window_calls, 3);
    let reason = Why::FailureRate {
        rate: 50.0,
        threshold: 40.0,
        calls: 4,
    };
    assert_eq!(call(&mut breaker, S, 2).map(|t| t.reason), Some(reason));

    let mut breaker = Breaker::new(stricter.clone(), 0);
    calls(&mut breaker, &[F, S, F], 0);
    let wider = Policy {
        window: SlidingWindow::Count { calls: 20 },
        ..stricter.clone()
    };
    assert_eq!(breaker.set_policy(wider, 1), None);
    assert_eq!(breaker.snapshot(1).window_calls, 0);
    let timed = Policy {
        window: SlidingWindow::Time { seconds: 10 },
        ..stricter
    };
    breaker.set_policy(timed, 2);
    assert_eq!(calls(&mut breaker, &[S, F], 3), []);
    assert_eq!(breaker.snapshot(3).window_calls, 2);
}

#[test]
fn set_policy_decides_a_half_open_round_against_the_new_thresholds() {
    let mut breaker = breaker(policy());
    let now = half_open(&mut breaker, 0);
    let trial = admit(&mut breaker, now);
    breaker.on_result(trial, S, 10, now);
    let one_is_enough = Policy {
        success_threshold: 1,
        ..policy()
    };
    assert_eq!(
        breaker.set_policy(one_is_enough, now + 1),
        Some(transition(
            State::HalfOpen,
            State::Closed,
            now + 1,
            Why::TrialsSucceeded { successes: 1 }
        ))
    );

    let mut breaker = Breaker::new(policy(), 0);
    let now = half_open(&mut breaker, 0);
    let trial = admit(&mut breaker, now);
    breaker.on_result(trial, F, 10, now);
    let all_must_pass = Policy {
        success_threshold: 3,
        ..policy()
    };
    let reopened = breaker
        .set_policy(all_must_pass, now + 1)
        .expect("closing is impossible");
    assert_eq!(
        (reopened.to, reopened.reason),
        (State::Open, Why::TrialFailed { failures: 1 })
    );
}

#[test]
fn reasons_read_as_sentences() {
    let cases = [
        (
            Why::ConsecutiveFailures {
                count: 5,
                threshold: 5,
            },
            "5 consecutive failures >= 5",
        ),
        (
            Why::FailureRate {
                rate: 62.5,
                threshold: 50.0,
                calls: 40,
            },
            "failure rate 62.5% >= 50% over 40 calls",
        ),
        (
            Why::SlowCallRate {
                rate: 100.0 / 3.0,
                threshold: 30.0,
                calls: 30,
            },
            "slow-call rate 33.33% >= 30% over 30 calls",
        ),
        (
            Why::OpenElapsed {
                open_for_ms: 30_000,
            },
            "open for 30000 ms, trying calls again",
        ),
        (
            Why::TrialsSucceeded { successes: 3 },
            "3 trial calls succeeded",
        ),
        (
            Why::TrialFailed { failures: 1 },
            "1 trial calls failed, closing is no longer possible",
        ),
        (Why::Forced, "forced by an operator"),
        (Why::Reset, "reset by an operator"),
        (Why::PolicyChanged, "policy changed"),
    ];
    for (reason, text) in cases {
        assert_eq!(reason.to_string(), text);
    }
}

#[test]
fn states_have_gauge_values_and_names() {
    let states = [
        State::Closed,
        State::Open,
        State::HalfOpen,
        State::ForcedOpen,
        State::Disabled,
    ];
    let gauges: Vec<u8> = states.iter().map(|s| s.gauge()).collect();
    assert_eq!(gauges, [0, 2, 1, 2, 0]);
    for state in states {
        let serialized = serde_json::to_value(state).expect("serializes");
        assert_eq!(serialized, state.as_str());
        assert_eq!(state.to_string(), state.as_str());
    }
}

#[test]
fn a_transition_serializes_with_its_reason() {
    let mut breaker = breaker(policy());
    let tripped = trip(&mut breaker, 42);
    let json = serde_json::to_value(&tripped).expect("serializes");
    assert_eq!(
        json,
        serde_json::json!({
            "from": "closed", "to": "open", "at": 42,
            "reason": {"kind": "consecutive_failures", "count": 3, "threshold": 3}
        })
    );
}
