use super::*;
use proptest::prelude::*;

fn count(calls: u32) -> Window {
    Window::new(SlidingWindow::Count { calls }, 0)
}

fn time(seconds: u32, now: Millis) -> Window {
    Window::new(SlidingWindow::Time { seconds }, now)
}

fn totals(calls: u64, failures: u64, slow: u64) -> Totals {
    Totals {
        calls,
        failures,
        slow,
    }
}

#[test]
fn a_count_window_keeps_the_last_n_results() {
    let mut window = count(4);
    for failed in [true, true, false, false] {
        window.record(failed, false, 0);
    }
    assert_eq!(window.totals_at(0), totals(4, 2, 0));
    assert_eq!(window.totals_at(0).failure_rate(4), Some(50.0));
    // The two failures are pushed out by two slow successes.
    window.record(false, true, 0);
    window.record(false, true, 0);
    assert_eq!(window.totals_at(0), totals(4, 0, 2));
    window.record(true, true, 0);
    assert_eq!(window.totals_at(0), totals(4, 1, 3));
    assert_eq!(window.totals_at(0).slow_call_rate(1), Some(75.0));
    window.clear(0);
    assert_eq!(window.totals_at(0), Totals::default());
    window.record(true, false, 0);
    assert_eq!(window.totals_at(0), totals(1, 1, 0));
}

#[test]
fn no_rate_below_the_minimum_calls() {
    let mut window = count(10);
    for _ in 0..4 {
        window.record(true, true, 0);
    }
    let below = window.totals_at(0);
    assert_eq!(
        (below.failure_rate(5), below.slow_call_rate(5)),
        (None, None)
    );
    window.record(false, false, 0);
    let at = window.totals_at(0);
    assert_eq!(
        (at.failure_rate(5), at.slow_call_rate(5)),
        (Some(80.0), Some(80.0))
    );
    assert_eq!(Totals::default().failure_rate(0), None, "no calls, no rate");
}

#[test]
fn a_time_window_drops_buckets_as_seconds_pass() {
    let mut window = time(3, 10_000);
    window.record(true, false, 10_000); // second 10
    window.record(false, false, 10_999); // second 10
    window.record(true, true, 11_500); // second 11
    window.record(false, false, 12_000); // second 12
    assert_eq!(window.totals_at(12_999), totals(4, 2, 1));
    // At second 13, second 10 has left the 3-second window.
    assert_eq!(window.totals_at(13_000), totals(2, 1, 1));
    assert_eq!(window.totals_at(14_000), totals(1, 0, 0));
    assert_eq!(window.totals_at(15_000), Totals::default());
    // Reading does not move the window; recording does.
    assert_eq!(window.totals_at(12_000), totals(4, 2, 1));
    window.record(true, false, 13_200);
    assert_eq!(window.totals_at(13_200), totals(3, 2, 1));
    assert_eq!(
        window.totals_at(13_200).failure_rate(3).map(|r| r.round()),
        Some(67.0)
    );
}

#[test]
fn a_long_gap_empties_a_time_window() {
    let mut window = time(5, 0);
    for second in 0..5 {
        window.record(true, false, second * 1_000);
    }
    assert_eq!(window.totals_at(4_000), totals(5, 5, 0));
    window.record(false, false, 60_000);
    assert_eq!(window.totals_at(60_000), totals(1, 0, 0));
}

#[test]
fn a_late_result_lands_in_the_newest_bucket() {
    let mut window = time(2, 0);
    window.record(false, false, 5_000);
    // Stamped before the head (a caller that read the clock, then waited for a lock).
    window.record(true, false, 3_000);
    assert_eq!(window.totals_at(5_000), totals(2, 1, 0));
    assert_eq!(window.totals_at(6_000), totals(2, 1, 0));
    assert_eq!(window.totals_at(7_000), Totals::default());
}

#[test]
fn a_window_knows_its_shape() {
    assert!(count(100).has_shape(SlidingWindow::Count { calls: 100 }));
    assert!(!count(100).has_shape(SlidingWindow::Count { calls: 50 }));
    assert!(!count(100).has_shape(SlidingWindow::Time { seconds: 100 }));
    assert!(time(60, 0).has_shape(SlidingWindow::Time { seconds: 60 }));
}

#[test]
fn degenerate_sizes_do_not_panic() {
    let mut empty = count(0);
    empty.record(true, false, 0);
    assert_eq!(empty.totals_at(0), totals(1, 1, 0));
    let mut instant = time(0, 0);
    instant.record(true, false, 0);
    assert_eq!(instant.totals_at(999), totals(1, 1, 0));
    assert_eq!(instant.totals_at(1_000), Totals::default());
}

/// One result: (failed, slow, milliseconds since the previous result).
fn results() -> impl Strategy<Value = Vec<(bool, bool, u64)>> {
    prop::collection::vec((any::<bool>(), any::<bool>(), 0u64..1_500), 0..300)
}

proptest! {
    #[test]
    fn count_window_totals_match_a_recount_of_the_last_n(
        size in 1u32..40,
        results in results(),
    ) {
        let mut window = count(size);
        for (i, &(failed, slow, _)) in results.iter().enumerate() {
            window.record(failed, slow, 0);
            let recent = &results[(i + 1).saturating_sub(size as usize)..=i];
            let expected = totals(
                recent.len() as u64,
                recent.iter().filter(|r| r.0).count() as u64,
                recent.iter().filter(|r| r.1).count() as u64,
            );
            prop_assert_eq!(window.totals_at(0), expected);
            let rate = expected.failures as f64 * 100.0 / expected.calls as f64;
            prop_assert_eq!(window.totals_at(0).failure_rate(1), Some(rate));
        }
    }

    #[test]
    fn time_window_totals_match_a_recount_of_the_last_seconds(
        seconds in 1u32..10,
        results in results(),
        read_after in 0u64..12_000,
    ) {
        let mut window = time(seconds, 0);
        let mut stamped = Vec::new();
        let mut now = 0;
        for &(failed, slow, gap) in &results {
            now += gap;
            window.record(failed, slow, now);
            stamped.push((failed, slow, now / 1000));
        }
        let read_second = (now + read_after) / 1000;
        let live: Vec<_> = stamped
            .iter()
            .filter(|r| r.2 + u64::from(seconds) > read_second)
            .collect();
        let expected = totals(
            live.len() as u64,
            live.iter().filter(|r| r.0).count() as u64,
            live.iter().filter(|r| r.1).count() as u64,
        );
        prop_assert_eq!(window.totals_at(now + read_after), expected);
    }
}
