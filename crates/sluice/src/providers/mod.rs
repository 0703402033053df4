//! Metric providers: where a check's numbers come from when they are not the
//! proxy's own per-version counters. Each provider turns one query into one
//! value or a reason why it could not; judging the value is the analysis
//! crate's business, not a provider's.

pub mod prometheus;
