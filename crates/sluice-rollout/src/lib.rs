//! The rollout core: a pure state machine that moves a service's canary
//! weight step by step, promotes on passing analysis and rolls back on
//! failing analysis or an operator's abort. No I/O and no clock: `now` is a
//! parameter, so a four-week plan is driven event by event in milliseconds.
//! The controller (a shell) performs the returned actions after storing the
//! new state.
#![forbid(unsafe_code)]

mod machine;
mod plan;
mod state;

pub use machine::{can_accept, release_warm, start, step, undo, Event, RejectReason, UndoError};
pub use plan::{replace_plan, replace_steps};
pub use state::{
    Action, Decision, DecisionKind, Phase, Revision, Rollout, ServiceState, WarmPool, MAX_REVISIONS,
};
