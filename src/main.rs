use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = lite2pg::cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_env("LITE2PG_LOG").unwrap_or_else(|_| EnvFilter::new("info,tokio_postgres=warn")))
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    lite2pg::cli::main_with(cli)
}
