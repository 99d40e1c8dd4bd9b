use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};
use lite2pg::cli::{Cli, Command, LogFormat};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|err| err.exit());
    #[cfg(feature = "failpoints")]
    let _failpoints = fail::FailScenario::setup();
    let filter = cli
        .common
        .log_level
        .as_deref()
        .map(EnvFilter::new)
        .or_else(|| EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| EnvFilter::new(default_log_filter(&cli.command)));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        // A closed stderr (the application that read it died) must not panic the task logging: the stop it was
        // about to request would be lost.
        .log_internal_errors(false)
        .with_ansi(std::io::stderr().is_terminal());
    match cli.common.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    lite2pg::cli::main_with(cli, &matches)
}

/// The demo shows live counters instead of a line per batch.
fn default_log_filter(command: &Command) -> &'static str {
    match command {
        Command::Demo(_) => "warn",
        _ => "info,tokio_postgres=warn",
    }
}
