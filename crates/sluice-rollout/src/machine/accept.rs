//! Whether the machine accepts an event, and why not: what the admin API
//! answers when an operator's command cannot apply ("no rollout in progress
//! for service web", "rollout 3 of service web already Succeeded").

use sluice_model::Timestamp;

use super::{pause_over, Event};
use crate::{Phase, ServiceState};

/// Why an event does not change a service's rollout.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RejectReason {
    #[error("no rollout in progress for service {service}")]
    NoRollout { service: String },
    #[error("rollout {id} of service {service} already {phase}")]
    Finished {
        service: String,
        id: u64,
        phase: Phase,
    },
    #[error("rollout {id} of service {service} is already paused")]
    AlreadyPaused { service: String, id: u64 },
    #[error("rollout {id} of service {service} is not paused")]
    NotPaused { service: String, id: u64 },
    #[error("rollout {id} of service {service} is paused; analysis resumes with it")]
    AnalysisWhilePaused { service: String, id: u64 },
    #[error("nothing is due yet for rollout {id} of service {service}")]
    NotDue { service: String, id: u64 },
    #[error("rollout {id} of service {service} is {phase}, where {event} does not apply")]
    WrongPhase {
        service: String,
        id: u64,
        phase: Phase,
        event: &'static str,
    },
}

/// Whether `step` would act on `event` at `now`; the error says why not.
/// `step` changes the state exactly when this is `Ok`.
pub fn can_accept(state: &ServiceState, event: &Event, now: Timestamp) -> Result<(), RejectReason> {
    let service = || state.service.clone();
    let Some(rollout) = state.rollout.as_ref() else {
        return Err(RejectReason::NoRollout { service: service() });
    };
    let id = rollout.id;
    let phase = rollout.phase;
    if phase.is_final() {
        return Err(RejectReason::Finished {
            service: service(),
            id,
            phase,
        });
    }
    let wrong_phase = || RejectReason::WrongPhase {
        service: service(),
        id,
        phase,
        event: event.name(),
    };
    match (event, phase) {
        (Event::Promote | Event::Abort | Event::Reject { .. }, _) => Ok(()),
        (Event::Analysis(_), Phase::Progressing) if rollout.waits_for_admission() => {
            Err(RejectReason::NotDue {
                service: service(),
                id,
            })
        }
        (Event::Analysis(_), Phase::Progressing) => match rollout.next_analysis_at {
            Some(due) if now < due => Err(RejectReason::NotDue {
                service: service(),
                id,
            }),
            _ => Ok(()),
        },
        (Event::Analysis(_), Phase::Paused) => Err(RejectReason::AnalysisWhilePaused {
            service: service(),
            id,
        }),
        (Event::Tick, Phase::Progressing)
            if pause_over(rollout, now) || rollout.waits_for_admission() =>
        {
            Ok(())
        }
        (Event::Tick, Phase::Paused)
            if rollout.approval_deadline().is_some_and(|end| now >= end) =>
        {
            Ok(())
        }
        (Event::Tick, _) => Err(RejectReason::NotDue {
            service: service(),
            id,
        }),
        (Event::Pause, Phase::Progressing) => Ok(()),
        (Event::Pause, Phase::Paused) => Err(RejectReason::AlreadyPaused {
            service: service(),
            id,
        }),
        (Event::Resume, Phase::Paused) => Ok(()),
        (Event::Resume, Phase::Progressing) => Err(RejectReason::NotPaused {
            service: service(),
            id,
        }),
        _ => Err(wrong_phase()),
    }
}
