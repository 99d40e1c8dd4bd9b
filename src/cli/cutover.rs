//! `lite2pg cutover`: make PostgreSQL the application's database.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use crate::error::Result;

use super::options::{default_jobs, parse_duration};
use super::print::print_cutover;
use super::CommonArgs;

/// Options of `cutover`.
#[derive(Debug, Clone, Args)]
pub struct CutoverArgs {
    /// Longest wait for the application's writers to release the SQLite write lock (e.g. 30s, 2m).
    #[arg(long, default_value = "30s", value_parser = parse_duration, value_name = "DURATION")]
    pub wait_for_writers: Duration,
    /// Leave change capture in the SQLite file.
    #[arg(long)]
    pub keep_capture: bool,
    /// Print every statement it would run in PostgreSQL, change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

pub(super) async fn cutover(common: &CommonArgs, args: &CutoverArgs) -> Result<ExitCode> {
    let options = crate::cutover::CutoverOptions {
        source: common.snapshot_options(false, default_jobs())?,
        wait_for_writers: args.wait_for_writers,
        keep_capture: args.keep_capture,
        dry_run: args.dry_run,
    };
    let report = crate::cutover::cutover(&options).await?;
    if common.json {
        println!("{}", serde_json::to_string_pretty(&report).expect("reports serialize"));
        return Ok(ExitCode::SUCCESS);
    }
    print_cutover(&report, args.dry_run);
    Ok(ExitCode::SUCCESS)
}
