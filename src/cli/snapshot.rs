//! `lite2pg snapshot`: create the PostgreSQL tables and copy every row.

use std::process::ExitCode;

use clap::Args;

use crate::error::Result;
use crate::snapshot::SnapshotReport;
use crate::stream::snapshot as copy_everything;

use super::options::default_jobs;
use super::print::print_snapshot;
use super::CommonArgs;

/// Options of `snapshot`.
#[derive(Debug, Clone, Args)]
pub struct SnapshotArgs {
    /// Drop and re-create tables that already exist in PostgreSQL.
    #[arg(long)]
    pub replace: bool,
    /// Parallel copy connections.
    #[arg(long, default_value_t = default_jobs())]
    pub jobs: usize,
}

pub(super) async fn snapshot(common: &CommonArgs, args: &SnapshotArgs) -> Result<ExitCode> {
    let report = copy_everything(&common.snapshot_options(args.replace, args.jobs)?).await?;
    print_snapshot(&report, common.json);
    Ok(clean_exit(&report))
}

/// Exit 1 when values were rejected: the copy is not complete.
fn clean_exit(report: &SnapshotReport) -> ExitCode {
    if report.rejects() == 0 {
        return ExitCode::SUCCESS;
    }
    eprintln!(
        "warning: {} row(s) hold values PostgreSQL cannot hold; they are listed in lite2pg.rejects, not copied",
        report.rejects()
    );
    ExitCode::from(1)
}
