//! The flag core: loads flag definitions (flagd's format, unchanged, plus
//! sluice's `percentage`, `segments` and `env` overrides), validates them
//! with field paths, compiles their targeting once, and evaluates a flag
//! for a context with flagd's semantics and flagd's bucketing — the same
//! flag key and context give the same variant here and in flagd. Pure: no
//! I/O, no clock (the request time is a [`Context`] field), no async; the
//! OFREP server, the store and the CLI are shells around it.
//!
//! ```
//! use sluice_flags::{Context, FlagSet, Reason};
//!
//! let set = FlagSet::from_flagd_json(r#"{"flags": {"new-builder": {
//!     "state": "ENABLED", "variants": {"on": true, "off": false},
//!     "defaultVariant": "off",
//!     "targeting": {"fractional": [["on", 10], ["off", 90]]}}}}"#).unwrap();
//! let ctx = Context::empty(1_767_225_600).with_targeting_key("user-42");
//! let evaluation = set.evaluate("new-builder", &ctx, false);
//! assert_eq!(evaluation.reason, Reason::Split);
//! ```
//!
//! Semantics worth knowing (checked by flagd's own test suite, run from
//! `cargo test`): a targeting result of `null` serves the default variant
//! (reason DEFAULT); a name that is not a variant is an error (GENERAL); a
//! disabled flag, or any flag under the kill switch, answers DISABLED with
//! no value, so the caller's default applies.
#![forbid(unsafe_code)]

pub mod bucket;
mod build;
mod context;
mod error;
mod evaluate;
mod fingerprint;
mod flag;
mod logic;
pub mod ofrep;
mod set;
mod spec;

pub use context::Context;
pub use error::{ErrorCode, FieldError, FlagsError, Reason};
pub use evaluate::Evaluation;
pub use flag::{EnvOverride, Flag};
pub use set::FlagSet;
pub use spec::{EnvSpec, FlagSpec, FlagsSpec, State, ValueKind};
