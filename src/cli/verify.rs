//! `lite2pg verify`: compare every replicated value, repairing first when asked.

use clap::Args;

use crate::error::Result;
use crate::verify::VerifyReport;

use super::options::default_jobs;
use super::print::print_verify;
use super::{CommonArgs, Verdict};

/// Options of `verify`.
#[derive(Debug, Clone, Args)]
pub struct VerifyArgs {
    /// Send the differing rows through the apply path again, then verify once more.
    #[arg(long)]
    pub repair: bool,
}

pub(super) async fn verify(common: &CommonArgs, args: &VerifyArgs) -> Result<Verdict> {
    let report = verify_report(common, args).await?;
    if !common.json {
        print_verify(&report);
    }
    Ok((serde_json::to_value(&report).expect("reports serialize"), report.is_equal()))
}

/// Compares one source, repairing first when asked.
async fn verify_report(common: &CommonArgs, args: &VerifyArgs) -> Result<VerifyReport> {
    let options = common.snapshot_options(false, default_jobs())?;
    let mut report = crate::verify::verify(&options.source).await?;
    if args.repair && !report.is_equal() {
        if !common.json {
            print_verify(&report);
        }
        let repaired = crate::verify::repair(&options, &report).await?;
        tracing::info!("re-applied {repaired} differing row(s); verifying again");
        report = crate::verify::verify(&options.source).await?;
    }
    Ok(report)
}
