//! Properties over random call sequences: what no sequence of calls,
//! results, cancels and ticks may break.

use super::*;
use crate::policy::SlidingWindow;
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Acquire,
    /// Report the result of the n-th outstanding call (modulo their number).
    Result {
        call: usize,
        outcome: Outcome,
        duration_ms: u64,
    },
    Cancel {
        call: usize,
    },
    Advance {
        ms: u64,
    },
    Tick,
}

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![3 => Just(Outcome::Success), 2 => Just(Outcome::Failure), 1 => Just(Outcome::Timeout)]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => Just(Op::Acquire),
        4 => (any::<usize>(), outcome(), 0u64..200)
            .prop_map(|(call, outcome, duration_ms)| Op::Result { call, outcome, duration_ms }),
        1 => any::<usize>().prop_map(|call| Op::Cancel { call }),
        2 => (0u64..1_500).prop_map(|ms| Op::Advance { ms }),
        1 => Just(Op::Tick),
    ]
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(op(), 0..400)
}

/// Valid policies with small numbers, so that short sequences trip, wait
/// out the open duration and run half-open rounds.
fn policy(mode: Mode) -> impl Strategy<Value = Policy> {
    (
        prop::option::of(1u32..5),
        prop::option::of(20.0f64..=100.0),
        prop::option::of(20.0f64..=100.0),
        prop_oneof![
            (1u32..20).prop_map(|calls| SlidingWindow::Count { calls }),
            (1u32..5).prop_map(|seconds| SlidingWindow::Time { seconds }),
        ],
        1u32..6,
        (100u64..2_000, 1.0f64..3.0),
        (1u32..5).prop_flat_map(|half_open_calls| (Just(half_open_calls), 1..=half_open_calls)),
    )
        .prop_map(
            move |(consecutive, failure_rate, slow_rate, window, minimum, open, half_open)| {
                let minimum_calls = match window {
                    SlidingWindow::Count { calls } => minimum.min(calls),
                    SlidingWindow::Time { .. } => minimum,
                };
                Policy {
                    mode,
                    consecutive_failures: consecutive.or(Some(3)),
                    failure_rate_threshold: failure_rate,
                    slow_call_rate_threshold: slow_rate,
                    slow_call_duration_ms: 100,
                    window,
                    minimum_calls,
                    open_duration_ms: open.0,
                    max_open_duration_ms: open.0 * 4,
                    backoff_multiplier: open.1,
                    half_open_calls: half_open.0,
                    success_threshold: half_open.1,
                }
                .try_new()
                .expect("the strategy makes valid policies")
            },
        )
}

/// What a run of `ops` gave.
struct Run {
    transitions: Vec<Transition>,
    /// Per acquire: the ticket, or `None` when rejected.
    admissions: Vec<Option<Ticket>>,
    results_reported: u64,
}

/// Runs `ops` on `breaker`, checking after every step that the current
/// half-open round has admitted at most `half_open_calls` trials (not
/// counting cancelled ones), in flight or ended.
fn run(breaker: &mut Breaker, ops: &[Op]) -> Result<Run, TestCaseError> {
    let half_open_calls = breaker.policy().half_open_calls;
    let mut now = 0;
    // Each outstanding call with the round (transitions before it) it was admitted in.
    let mut outstanding: Vec<(Ticket, usize)> = Vec::new();
    let mut round_trials = 0u32;
    let mut run = Run {
        transitions: Vec::new(),
        admissions: Vec::new(),
        results_reported: 0,
    };
    for op in ops {
        let (transition, admission) = match *op {
            Op::Acquire => {
                let (admission, transition) = breaker.try_acquire(now);
                (transition, Some(admission))
            }
            Op::Result {
                call,
                outcome,
                duration_ms,
            } if !outstanding.is_empty() => {
                let (ticket, _) = outstanding.swap_remove(call % outstanding.len());
                run.results_reported += 1;
                (breaker.on_result(ticket, outcome, duration_ms, now), None)
            }
            Op::Cancel { call } if !outstanding.is_empty() => {
                let (ticket, round) = outstanding.swap_remove(call % outstanding.len());
                if ticket.trial && round == run.transitions.len() {
                    round_trials -= 1;
                }
                breaker.on_cancel(ticket);
                (None, None)
            }
            Op::Advance { ms } => {
                now += ms;
                (None, None)
            }
            Op::Tick => (breaker.tick(now), None),
            Op::Result { .. } | Op::Cancel { .. } => (None, None),
        };
        if let Some(transition) = transition {
            round_trials = 0;
            run.transitions.push(transition);
        }
        if let Some(admission) = admission {
            let ticket = match admission {
                Admission::Admitted(ticket) => Some(ticket),
                Admission::Rejected { .. } => None,
            };
            run.admissions.push(ticket);
            if let Some(ticket) = ticket {
                round_trials += u32::from(ticket.trial);
                outstanding.push((ticket, run.transitions.len()));
            }
        }
        prop_assert!(
            round_trials <= half_open_calls,
            "{} trials admitted in one round",
            round_trials
        );
    }
    Ok(run)
}

fn mode() -> impl Strategy<Value = Mode> {
    prop_oneof![Just(Mode::On), Just(Mode::Shadow)]
}

proptest! {
    #[test]
    fn counters_add_up(policy in mode().prop_flat_map(policy), ops in ops()) {
        let mut breaker = Breaker::new(policy, 0);
        let run = run(&mut breaker, &ops)?;
        let counters = breaker.snapshot(0).counters;
        prop_assert_eq!(counters.successes + counters.failures + counters.timeouts, run.results_reported);
        let rejected = run.admissions.iter().filter(|a| a.is_none()).count() as u64;
        let would_reject = run.admissions.iter().filter(|a| a.is_some_and(|t| t.would_reject)).count() as u64;
        prop_assert_eq!((counters.rejected, counters.shadow_rejected), (rejected, would_reject));
        prop_assert_eq!(counters.transitions, run.transitions.len() as u64);
        let trips = run.transitions.iter().filter(|t| t.to == State::Open).count() as u64;
        prop_assert_eq!(counters.trips, trips);
        prop_assert!(counters.slow <= run.results_reported);
    }

    #[test]
    fn half_open_never_admits_more_than_half_open_calls(
        policy in mode().prop_flat_map(policy),
        ops in ops(),
    ) {
        let mut breaker = Breaker::new(policy, 0);
        let run = run(&mut breaker, &ops)?;
        let trials = run.admissions.iter().filter(|a| a.is_some_and(|t| t.trial)).count();
        let half_opened = run.transitions.iter().filter(|t| t.to == State::HalfOpen).count();
        prop_assert!(trials <= half_opened * breaker.policy().half_open_calls as usize + count_cancels(&ops));
    }

    #[test]
    fn shadow_makes_the_same_transitions_as_on(policy in policy(Mode::On), ops in ops()) {
        let mut on = Breaker::new(policy.clone(), 0);
        let mut shadow = Breaker::new(Policy { mode: Mode::Shadow, ..policy }, 0);
        let mut now = 0;
        // Every call Shadow admitted, with On's ticket for it (None: On rejected it).
        let mut outstanding: Vec<(Ticket, Option<Ticket>)> = Vec::new();
        for op in &ops {
            let (by_on, by_shadow) = match *op {
                Op::Acquire => {
                    let (on_admission, by_on) = on.try_acquire(now);
                    let (shadow_admission, by_shadow) = shadow.try_acquire(now);
                    let Admission::Admitted(shadow_ticket) = shadow_admission else {
                        return Err(TestCaseError::fail("shadow rejected a call"));
                    };
                    let on_ticket = match on_admission {
                        Admission::Admitted(ticket) => Some(ticket),
                        Admission::Rejected { .. } => None,
                    };
                    prop_assert_eq!(on_ticket.is_none(), shadow_ticket.would_reject);
                    prop_assert_eq!(on_ticket.is_some_and(|t| t.trial), shadow_ticket.trial);
                    outstanding.push((shadow_ticket, on_ticket));
                    (by_on, by_shadow)
                }
                Op::Result { call, outcome, duration_ms } if !outstanding.is_empty() => {
                    let (shadow_ticket, on_ticket) = outstanding.swap_remove(call % outstanding.len());
                    (
                        on_ticket.and_then(|t| on.on_result(t, outcome, duration_ms, now)),
                        shadow.on_result(shadow_ticket, outcome, duration_ms, now),
                    )
                }
                Op::Cancel { call } if !outstanding.is_empty() => {
                    let (shadow_ticket, on_ticket) = outstanding.swap_remove(call % outstanding.len());
                    on_ticket.into_iter().for_each(|t| on.on_cancel(t));
                    shadow.on_cancel(shadow_ticket);
                    (None, None)
                }
                Op::Advance { ms } => {
                    now += ms;
                    (None, None)
                }
                Op::Tick => (on.tick(now), shadow.tick(now)),
                Op::Result { .. } | Op::Cancel { .. } => (None, None),
            };
            prop_assert_eq!(by_on, by_shadow);
        }
        let (on_counters, shadow_counters) = (on.snapshot(now).counters, shadow.snapshot(now).counters);
        prop_assert_eq!(on_counters.rejected, shadow_counters.shadow_rejected);
        prop_assert_eq!(on_counters.trips, shadow_counters.trips);
    }

    #[test]
    fn off_never_transitions(policy in policy(Mode::Off), ops in ops()) {
        let mut breaker = Breaker::new(policy, 0);
        let run = run(&mut breaker, &ops)?;
        prop_assert_eq!(run.transitions, []);
        prop_assert!(run.admissions.iter().all(|a| a.is_some_and(|t| !t.trial && !t.would_reject)));
        prop_assert_eq!(breaker.state(), State::Disabled);
    }
}

fn count_cancels(ops: &[Op]) -> usize {
    ops.iter()
        .filter(|op| matches!(op, Op::Cancel { .. }))
        .count()
}
