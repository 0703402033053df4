//! Where and how the server commands (`run`, `demo`, `load serve`) log:
//! stderr, human-readable by default or one JSON object per line with
//! `--log-format json`. `SLUICE_LOG` (or `RUST_LOG`) sets the filter,
//! default `info`. Command output (tables, `-o json`) is not logging.

use clap::ValueEnum;

/// The shape of a log line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// `2026-01-01T00:00:00Z  INFO Advanced: … service=web weight=25` (colours on a terminal).
    #[default]
    Human,
    /// One JSON object per line; the event's fields at the top level.
    Json,
}

/// Installs the global subscriber (a second call does nothing).
pub fn init(format: LogFormat) {
    let filter = std::env::var("SLUICE_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".to_string());
    let filter = tracing_subscriber::EnvFilter::new(filter);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = match format {
        LogFormat::Human => builder
            .with_ansi(crate::output::colour_for(&std::io::stderr()))
            .try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
    };
}

/// A line that is always shown whatever the filter (where sluice listens,
/// that it stops): as it reads for `human`, as a log object for `json`, so
/// that a JSON log holds nothing but JSON.
pub fn announce(format: LogFormat, message: &str) {
    match format {
        LogFormat::Human => eprintln!("{message}"),
        LogFormat::Json => {
            let line = serde_json::json!({
                "timestamp": humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string(),
                "level": "INFO",
                "message": message,
            });
            eprintln!("{line}");
        }
    }
}
