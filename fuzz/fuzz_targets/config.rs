//! The config file parser and its validation (`Config::from_yaml`), fed
//! any text. Whatever the text, it gives a config or field errors, never
//! a panic; a config it accepts also yields its rollout plans and
//! serializes (`GET /api/v1/config` answers it as JSON).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_model::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let config = match Config::from_yaml(text) {
        Ok(config) => config,
        Err(error) => {
            // Every error can be shown to the user.
            let _ = error.to_string();
            return;
        }
    };
    for service in &config.services {
        if let Some(rollout) = &service.rollout {
            let _ = rollout.plan();
        }
    }
    for plan in config.flags.release_plans.values() {
        let _ = plan.plan.plan();
    }
    if let Err(e) = serde_json::to_string(&config) {
        panic!("a valid config does not serialize: {e}");
    }
});
