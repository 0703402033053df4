//! `rollout undo`: serve an earlier revision's stable pool again, the way
//! `kubectl rollout undo` does. Only between rollouts (a rollout in
//! progress is aborted, not undone); recorded as a decision of the last
//! rollout and as a new revision, so the history reads in order.

use sluice_model::{Timestamp, Weight};

use super::record;
use crate::{Action, DecisionKind, ServiceState};

/// Why an undo cannot apply.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UndoError {
    #[error("rollout {id} of service {service} is in progress: abort it instead")]
    InProgress { service: String, id: u64 },
    #[error("service {service} has no earlier revision to go back to")]
    NothingToUndo { service: String },
    #[error("service {service} has no revision {number} (known: {known:?})")]
    UnknownRevision {
        service: String,
        number: u64,
        known: Vec<u64>,
    },
    #[error("revision {number} of service {service} is the one in force")]
    Current { service: String, number: u64 },
    #[error("service {service} has never had a rollout to record the undo in")]
    NoRollout { service: String },
}

/// Switches `state` back to revision `to` (default: the one before the
/// newest). All traffic goes to that pool at once.
pub fn undo(
    state: &ServiceState,
    to: Option<u64>,
    now: Timestamp,
) -> Result<(ServiceState, Vec<Action>), UndoError> {
    let service = || state.service.clone();
    let Some(rollout) = state.rollout.as_ref() else {
        return Err(UndoError::NoRollout { service: service() });
    };
    if !rollout.phase.is_final() {
        return Err(UndoError::InProgress {
            service: service(),
            id: rollout.id,
        });
    }
    let current = state.revisions.last();
    let target = match to {
        Some(number) => state
            .revisions
            .iter()
            .find(|r| r.number == number)
            .ok_or_else(|| UndoError::UnknownRevision {
                service: service(),
                number,
                known: state.revisions.iter().map(|r| r.number).collect(),
            })?,
        None => state
            .revisions
            .iter()
            .rev()
            .nth(1)
            .ok_or_else(|| UndoError::NothingToUndo { service: service() })?,
    };
    if current.is_some_and(|c| c.number == target.number) || target.endpoints == state.stable {
        return Err(UndoError::Current {
            service: service(),
            number: target.number,
        });
    }
    let target = target.clone();
    let mut next = state.clone();
    let warm = next
        .warm
        .take_if(|w| w.endpoints == target.endpoints)
        .is_some();
    next.stable = target.endpoints.clone();
    next.canary = None;
    next.canary_weight = Weight::ZERO;
    next.push_revision(
        &target.endpoints,
        now,
        format!("undo to revision {}", target.number),
    );
    next.revision += 1;
    let mut rollout = next.rollout.take().expect("checked above");
    let reason = format!(
        "undo: serving revision {} again ({}; it came from {})",
        target.number,
        target.endpoints.join(", "),
        target.cause
    );
    let reason = if warm {
        format!("{reason}; it was still warm: switched at once")
    } else {
        reason
    };
    let phase = rollout.phase;
    let decision = record(&mut rollout, DecisionKind::Undone, phase, reason, None, now);
    next.rollout = Some(rollout);
    Ok((next, vec![decision, Action::SetWeight(Weight::ZERO)]))
}

/// Releases a blue-green switch's previous pool once its warm time is
/// over (None if there is none, or not yet): recorded as a decision of the
/// rollout that switched.
pub fn release_warm(state: &ServiceState, now: Timestamp) -> Option<(ServiceState, Vec<Action>)> {
    let warm = state.warm.as_ref().filter(|w| now >= w.until)?;
    let mut next = state.clone();
    next.warm = None;
    next.revision += 1;
    let mut actions = Vec::new();
    if let Some(rollout) = next.rollout.as_mut() {
        let reason = format!(
            "released the previous pool ({}): its warm time is over; `rollout undo` now switches to a pool sluice no longer keeps ready",
            warm.endpoints.join(", ")
        );
        let phase = rollout.phase;
        actions.push(record(
            rollout,
            DecisionKind::Released,
            phase,
            reason,
            None,
            now,
        ));
    }
    Some((next, actions))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::tests::{plan_spec, service_state};
    use crate::machine::{start, step, Event};
    use crate::Phase;

    fn t(seconds: u64) -> Timestamp {
        Timestamp::from_millis(seconds * 1000)
    }

    /// A service promoted twice: revisions v1 (config), v2, v3.
    fn promoted_twice() -> ServiceState {
        let mut state = service_state();
        state.push_revision(&state.stable.clone(), t(0), "config".into());
        for (i, canary) in ["v2:80", "v3:80"].iter().enumerate() {
            let (started, _) = start(
                &state,
                &plan_spec(),
                vec![canary.to_string()],
                t(i as u64 * 10),
            );
            let (promoted, _) = step(&started, Event::Promote, t(i as u64 * 10 + 1));
            state = promoted;
        }
        state
    }

    #[test]
    fn promotions_are_revisions_and_undo_goes_back_one() {
        let state = promoted_twice();
        let numbers: Vec<(u64, &str)> = state
            .revisions
            .iter()
            .map(|r| (r.number, r.cause.as_str()))
            .collect();
        assert_eq!(
            numbers,
            [
                (1, "config"),
                (2, "rollout 1 promoted"),
                (3, "rollout 2 promoted")
            ]
        );
        let (next, actions) = undo(&state, None, t(100)).unwrap();
        assert_eq!(next.stable, ["v2:80"]);
        assert_eq!(next.canary, None);
        assert_eq!(next.revisions.last().unwrap().cause, "undo to revision 2");
        assert_eq!(next.revisions.last().unwrap().number, 4);
        let Action::Record(decision) = &actions[0] else {
            panic!("{actions:?}")
        };
        assert_eq!(decision.kind, DecisionKind::Undone);
        assert_eq!(
            decision.reason,
            "undo: serving revision 2 again (v2:80; it came from rollout 1 promoted)"
        );
        // Undo again goes forward to v3 (the one before the newest): like kubectl.
        let (again, _) = undo(&next, None, t(101)).unwrap();
        assert_eq!(again.stable, ["v3:80"]);
    }

    #[test]
    fn blue_green_keeps_blue_warm_undo_is_instant_and_release_is_recorded() {
        let spec: sluice_model::RolloutSpec = serde_json::from_value(serde_json::json!({
            "strategy": "blue_green", "iterations": 2, "interval": "1m", "scale_down_delay": "10m"
        }))
        .unwrap();
        let mut state = service_state();
        state.push_revision(&state.stable.clone(), t(0), "config".into());
        let (started, actions) = start(&state, &spec, vec!["green:80".into()], t(0));
        // Green gets no user traffic while it is judged.
        assert_eq!(started.canary_weight, Weight::ZERO);
        assert!(actions.contains(&Action::SetWeight(Weight::ZERO)));
        assert_eq!(started.rollout.as_ref().unwrap().plan.len(), 2);
        let (switched, _) = step(&started, Event::Promote, t(60));
        assert_eq!(switched.stable, ["green:80"]);
        let warm = switched.warm.clone().expect("blue stays warm");
        assert_eq!(warm.endpoints, ["v1:80"]);
        assert_eq!(warm.until, t(60 + 600));
        // Nothing to release before the warm time is over.
        assert!(release_warm(&switched, t(659)).is_none());

        // Undo within it: back to blue at once; blue is no longer "warm".
        let (undone, actions) = undo(&switched, None, t(120)).unwrap();
        assert_eq!(undone.stable, ["v1:80"]);
        assert_eq!(undone.warm, None);
        let Action::Record(decision) = &actions[0] else {
            panic!("{actions:?}")
        };
        assert!(
            decision
                .reason
                .ends_with("it was still warm: switched at once"),
            "{}",
            decision.reason
        );

        // Without undo: released when the time is up, recorded on the rollout.
        let (released, actions) = release_warm(&switched, t(660)).unwrap();
        assert_eq!(released.warm, None);
        assert_eq!(released.stable, ["green:80"]);
        assert_eq!(released.revision, switched.revision + 1);
        let Action::Record(decision) = &actions[0] else {
            panic!("{actions:?}")
        };
        assert_eq!(decision.kind, DecisionKind::Released);
        assert!(decision
            .reason
            .starts_with("released the previous pool (v1:80)"));
        // A canary rollout keeps nothing warm.
        let (canary, _) = start(&state, &plan_spec(), vec!["v2:80".into()], t(0));
        let (promoted, _) = step(&canary, Event::Promote, t(1));
        assert_eq!(promoted.warm, None);
    }

    #[test]
    fn undo_to_a_named_revision_and_its_refusals() {
        let state = promoted_twice();
        let (next, _) = undo(&state, Some(1), t(100)).unwrap();
        assert_eq!(next.stable, ["v1:80"]);
        assert!(matches!(
            undo(&state, Some(9), t(100)),
            Err(UndoError::UnknownRevision { number: 9, .. })
        ));
        assert!(matches!(
            undo(&state, Some(3), t(100)),
            Err(UndoError::Current { .. })
        ));
        let (running, _) = start(&state, &plan_spec(), vec!["v4:80".into()], t(200));
        assert_eq!(running.rollout.as_ref().unwrap().phase, Phase::Progressing);
        assert!(matches!(
            undo(&running, None, t(201)),
            Err(UndoError::InProgress { .. })
        ));
        assert!(matches!(
            undo(&service_state(), None, t(1)),
            Err(UndoError::NoRollout { .. })
        ));
    }
}
