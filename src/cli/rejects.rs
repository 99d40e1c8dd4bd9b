//! `lite2pg rejects`: list the values PostgreSQL could not hold, applying them again when asked.

use std::process::ExitCode;

use clap::Args;

use crate::error::Result;

use super::options::default_jobs;
use super::print::print_rejects;
use super::CommonArgs;

/// Options of `rejects`.
#[derive(Debug, Clone, Args)]
pub struct RejectsArgs {
    /// Apply the rejected rows again under the current policies (e.g. after `--on-misfit widen` or a change in
    /// lite2pg.toml), then list what is still rejected.
    #[arg(long)]
    pub retry: bool,
}

pub(super) async fn rejects(common: &CommonArgs, args: &RejectsArgs) -> Result<ExitCode> {
    let options = common.snapshot_options(false, default_jobs())?;
    let source = &options.source;
    let conn = crate::sqlite::open(&source.sqlite, crate::sqlite::Access::ReadOnly)?;
    let capture = crate::sqlite::capture::require_state(&conn, &source.sqlite)?;
    let client = source.target.connect().await?;
    let mut rejects = crate::pg::state::rejects(&client, &capture.source_id).await?;
    if args.retry && !rejects.is_empty() {
        let retried = crate::repair::retry_rejects(&options, &conn, &capture, &rejects).await?;
        tracing::info!("applied {retried} rejected row(s) again under the current policies");
        rejects = crate::pg::state::rejects(&client, &capture.source_id).await?;
    }
    if common.json {
        println!("{}", serde_json::to_string_pretty(&rejects).expect("rejects serialize"));
    } else {
        print_rejects(&rejects, &capture.source_id);
    }
    Ok(ExitCode::SUCCESS)
}
