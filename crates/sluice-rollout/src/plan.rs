//! The steps of the pool-replacing strategies, made from the pools' sizes
//! when a rollout starts: `rolling` replaces the old pool a few endpoints at
//! a time within `max_surge` / `max_unavailable` (as a Kubernetes Deployment
//! does), `recreate` takes the whole old pool out, then puts the new one in.
//! Pure arithmetic; the controller admits each step's new endpoints only
//! once their health checks pass.

use sluice_model::{RolloutSpec, Step, Strategy};

/// The positions `(new_in, old_in)` a rolling replacement of `old`
/// endpoints by `new` goes through after `(0, old)`, ending at `(new, 0)`.
///
/// Each step admits new endpoints while the endpoints in (the old ones
/// still in counted) stay within `new + max_surge`, then takes old ones out
/// while the endpoints serving stay at least `new - max_unavailable`. The
/// admission and the removal it permits are one routing change (the new
/// endpoints are healthy before they are admitted), so a step never serves
/// more than `new + max_surge` endpoints nor fewer than
/// `min(old, new - max_unavailable)`. With `max_surge` and `max_unavailable`
/// both 0 nothing could move: one endpoint may then be unavailable.
pub fn replace_plan(
    old: usize,
    new: usize,
    max_surge: usize,
    max_unavailable: usize,
) -> Vec<(usize, usize)> {
    let max_unavailable = if max_surge == 0 && max_unavailable == 0 {
        1
    } else {
        max_unavailable
    };
    let ceiling = new + max_surge;
    let floor = new.saturating_sub(max_unavailable);
    let (mut new_in, mut old_in) = (0, old);
    let mut plan = Vec::new();
    while (new_in, old_in) != (new, 0) {
        let room = ceiling.saturating_sub(new_in + old_in);
        new_in = (new_in + room).min(new);
        old_in -= (new_in + old_in).saturating_sub(floor).min(old_in);
        plan.push((new_in, old_in));
    }
    plan
}

/// The steps of a `rolling` or `recreate` rollout from `old` to `new`
/// endpoints; None for the other strategies. The last position, the whole
/// new pool, is the promotion and not a step, so that every analysed step
/// compares new endpoints with old ones. A rolling plan starts with a step
/// that admits nothing (it ends once the first new endpoints are healthy);
/// recreate's one step is its gap.
pub fn replace_steps(spec: &RolloutSpec, old: usize, new: usize) -> Option<Vec<Step>> {
    let positions = match spec.strategy {
        Strategy::Recreate => vec![(0, 0)],
        Strategy::Rolling => {
            let mut positions = replace_plan(old, new, spec.surge(new), spec.unavailable(new));
            positions.pop();
            if positions.first().is_none_or(|(new_in, _)| *new_in > 0) {
                positions.insert(0, (0, old));
            }
            positions
        }
        Strategy::Canary | Strategy::Ab | Strategy::BlueGreen | Strategy::Shadow => return None,
    };
    Some(
        positions
            .into_iter()
            .map(|(new, old)| Step::Replace { new, old })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn one_at_a_time_with_a_surge_of_one() {
        assert_eq!(replace_plan(3, 3, 1, 0), vec![(1, 2), (2, 1), (3, 0)]);
        assert_eq!(
            replace_plan(3, 3, 0, 1),
            vec![(0, 2), (1, 1), (2, 0), (3, 0)]
        );
        assert_eq!(replace_plan(4, 4, 2, 0), vec![(2, 2), (4, 0)]);
        // A larger old pool shrinks first; a smaller one is topped up.
        assert_eq!(replace_plan(5, 2, 1, 0), vec![(0, 2), (1, 1), (2, 0)]);
        assert_eq!(replace_plan(1, 4, 1, 0), vec![(4, 0)]);
        assert_eq!(replace_plan(2, 2, 0, 0), vec![(0, 1), (1, 0), (2, 0)]);
    }

    #[test]
    fn steps_start_by_admitting_nothing_and_leave_the_end_to_promotion() {
        let spec = spec_json;
        let rolling = spec(r#"{"strategy": "rolling"}"#);
        assert_eq!(
            replace_steps(&rolling, 3, 3).unwrap(),
            vec![
                Step::Replace { new: 0, old: 3 },
                Step::Replace { new: 1, old: 2 },
                Step::Replace { new: 2, old: 1 },
            ]
        );
        let recreate = spec(r#"{"strategy": "recreate"}"#);
        assert_eq!(
            replace_steps(&recreate, 3, 2).unwrap(),
            vec![Step::Replace { new: 0, old: 0 }]
        );
        assert_eq!(replace_steps(&spec("{}"), 3, 3), None);
    }

    fn spec_json(json: &str) -> RolloutSpec {
        serde_json::from_str(json).expect("test spec")
    }

    proptest! {
        #[test]
        fn every_step_keeps_the_bounds_and_moves_forward(
            old in 0usize..40,
            new in 1usize..40,
            surge in 0usize..10,
            unavailable in 0usize..10,
        ) {
            let plan = replace_plan(old, new, surge, unavailable);
            let effective = if surge == 0 && unavailable == 0 { 1 } else { unavailable };
            prop_assert_eq!(plan.last().copied(), Some((new, 0)));
            prop_assert!(plan.len() <= old + new + 1, "{:?}", plan);
            let (mut last_new, mut last_old) = (0, old);
            for &(new_in, old_in) in &plan {
                prop_assert!(new_in <= new);
                prop_assert!(new_in >= last_new && old_in <= last_old, "{:?}", plan);
                prop_assert!((new_in, old_in) != (last_new, last_old), "stuck: {:?}", plan);
                prop_assert!(
                    new_in + old_in <= (new + surge).max(old),
                    "above the surge: {:?}", plan
                );
                prop_assert!(
                    new_in + old_in >= new.saturating_sub(effective).min(old),
                    "below the floor: {:?}", plan
                );
                // Admission and removal happen together: never more in than either side allows.
                prop_assert!(new_in + last_old <= (new + surge).max(old) || new_in == last_new);
                (last_new, last_old) = (new_in, old_in);
            }
        }
    }
}
