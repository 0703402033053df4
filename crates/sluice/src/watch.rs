//! `--watch` on status commands: print the answer again every `--interval`
//! until Ctrl-C. On a terminal a table replaces the previous one; in a pipe
//! each answer follows the last (JSON documents one after another, YAML
//! documents separated by `---`), so that nothing but the data is written.

use std::future::Future;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use crate::cli::Output;

/// `--watch` and `--interval`.
#[derive(Args, Clone, Copy, Debug)]
pub struct WatchArgs {
    /// Print again every `--interval` until Ctrl-C.
    #[arg(short, long)]
    pub watch: bool,
    /// Time between two prints with `--watch`.
    #[arg(long, default_value = "2s", value_parser = sluice_model::duration::parse, requires = "watch")]
    pub interval: Duration,
}

/// Prints what `render` answers once, or every interval with `--watch`.
pub async fn repeat<F, Fut>(
    watch: WatchArgs,
    output: Output,
    mut render: F,
) -> anyhow::Result<ExitCode>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<String>>,
{
    let redraw = std::io::stdout().is_terminal() && output == Output::Table;
    let mut first = true;
    loop {
        let text = render().await?;
        let mut stdout = std::io::stdout().lock();
        if !watch.watch {
            write!(stdout, "{text}")?;
            return Ok(ExitCode::SUCCESS);
        }
        if redraw {
            let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
            write!(
                stdout,
                "\x1b[2J\x1b[H{now}, every {} (Ctrl-C to stop)\n\n",
                sluice_model::duration::format(watch.interval)
            )?;
        } else if !first {
            match output {
                Output::Yaml => writeln!(stdout, "---")?,
                Output::Table => writeln!(stdout)?,
                Output::Json => {}
            }
        }
        write!(stdout, "{text}")?;
        stdout.flush()?;
        drop(stdout);
        first = false;
        tokio::select! {
            () = tokio::time::sleep(watch.interval) => {}
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
        }
    }
}
