//! Per-call overhead on the hot path: `try_acquire` + `on_result` on a
//! Closed breaker, with a count window, a time window (the clock moves 1 ms
//! per call, so a bucket turns over every thousand calls) and through the
//! uncontended mutex of `SharedBreaker`.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use sluice_breaker::sync::SharedBreaker;
use sluice_breaker::{Admission, Breaker, Outcome, Policy, SlidingWindow};

/// Every 50th call fails: 2%, well under the thresholds, so the breaker
/// stays Closed while the window and consecutive count do real work.
fn outcome(call: u64) -> Outcome {
    if call % 50 == 0 {
        Outcome::Failure
    } else {
        Outcome::Success
    }
}

fn one_call(breaker: &mut Breaker, now: u64) {
    let (admission, _) = breaker.try_acquire(black_box(now));
    if let Admission::Admitted(ticket) = admission {
        black_box(breaker.on_result(ticket, outcome(now), 3, now));
    }
}

fn closed_breaker(c: &mut Criterion) {
    let mut group = c.benchmark_group("closed");
    for (name, window) in [
        ("count_window_100", SlidingWindow::Count { calls: 100 }),
        ("time_window_60s", SlidingWindow::Time { seconds: 60 }),
    ] {
        let policy = Policy {
            window,
            ..Policy::default()
        };
        let mut breaker = Breaker::new(policy, 0);
        let mut now = 0u64;
        group.bench_function(name, |b| {
            b.iter(|| {
                now += 1;
                one_call(&mut breaker, now);
            })
        });
        assert_eq!(breaker.state(), sluice_breaker::State::Closed);
    }

    let shared = SharedBreaker::new(Policy::default(), 0);
    let mut now = 0u64;
    group.bench_function("shared_count_window_100", |b| {
        b.iter(|| {
            now += 1;
            let (admission, _) = shared.try_acquire(black_box(now));
            if let Admission::Admitted(ticket) = admission {
                black_box(shared.on_result(ticket, outcome(now), 3, now));
            }
        })
    });
    group.finish();
}

criterion_group!(benches, closed_breaker);
criterion_main!(benches);
