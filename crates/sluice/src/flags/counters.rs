//! `sluice_flag_evaluations_total{flag,variant,reason}`: counted per
//! evaluation without allocating (flags and variants are looked up by
//! borrowed names in maps built when a flag is first counted).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, PoisonError, RwLock};

use sluice_flags::{Evaluation, Reason};

const REASONS: [Reason; 6] = [
    Reason::Static,
    Reason::TargetingMatch,
    Reason::Split,
    Reason::Default,
    Reason::Disabled,
    Reason::Error,
];

fn reason_index(reason: Reason) -> usize {
    REASONS.iter().position(|r| *r == reason).unwrap_or(5)
}

/// Counts of one flag by variant and reason (variant "" = none).
#[derive(Default)]
struct FlagCounts {
    variants: RwLock<Vec<(String, [AtomicU64; 6])>>,
}

/// Every flag's counts since start; flags are never forgotten (a flag
/// removed and re-added keeps counting).
#[derive(Default)]
pub struct EvaluationCounters {
    flags: RwLock<HashMap<String, Arc<FlagCounts>>>,
}

impl EvaluationCounters {
    pub fn count(&self, evaluation: &Evaluation<'_>) {
        let flag = {
            let flags = self.flags.read().unwrap_or_else(PoisonError::into_inner);
            flags.get(evaluation.key).cloned()
        };
        let flag = match flag {
            Some(flag) => flag,
            None => {
                // Unknown keys are not counted one by one: a scan of random
                // keys would grow the map (and the metrics) without bound.
                if evaluation.error_code() == Some(sluice_flags::ErrorCode::FlagNotFound) {
                    return;
                }
                let mut flags = self.flags.write().unwrap_or_else(PoisonError::into_inner);
                flags.entry(evaluation.key.to_string()).or_default().clone()
            }
        };
        let variant = evaluation.variant.unwrap_or("");
        let reason = reason_index(evaluation.reason);
        {
            let variants = flag.variants.read().unwrap_or_else(PoisonError::into_inner);
            if let Some((_, counts)) = variants.iter().find(|(name, _)| name == variant) {
                counts[reason].fetch_add(1, Relaxed);
                return;
            }
        }
        let mut variants = flag
            .variants
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some((_, counts)) = variants.iter().find(|(name, _)| name == variant) {
            counts[reason].fetch_add(1, Relaxed);
            return;
        }
        let counts: [AtomicU64; 6] = Default::default();
        counts[reason].fetch_add(1, Relaxed);
        variants.push((variant.to_string(), counts));
    }

    /// Prometheus text, appended to `out`.
    pub fn render(&self, out: &mut String) {
        out.push_str(
            "# HELP sluice_flag_evaluations_total Flag evaluations by flag, variant and reason.\n\
             # TYPE sluice_flag_evaluations_total counter\n",
        );
        let flags = self.flags.read().unwrap_or_else(PoisonError::into_inner);
        let mut keys: Vec<&String> = flags.keys().collect();
        keys.sort();
        for key in keys {
            let variants = flags[key]
                .variants
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            for (variant, counts) in variants.iter() {
                for (i, reason) in REASONS.iter().enumerate() {
                    let count = counts[i].load(Relaxed);
                    if count > 0 {
                        let _ = writeln!(
                            out,
                            "sluice_flag_evaluations_total{{flag=\"{}\",variant=\"{}\",reason=\"{}\"}} {count}",
                            escape(key),
                            escape(variant),
                            reason.as_str()
                        );
                    }
                }
            }
        }
    }
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
