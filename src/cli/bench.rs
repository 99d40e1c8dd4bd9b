//! `lite2pg bench`: measure lite2pg on this machine, each measure beside its raw limit.

use std::process::ExitCode;

use clap::Args;

use crate::error::Result;

use super::print::print_bench;
use super::CommonArgs;

/// Options of `bench`.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Rows of the synthetic table (and changes of the catch-up backlog).
    #[arg(long, default_value_t = 1_000_000)]
    pub rows: u64,
    /// Run only these parts (comma-separated); every part when not given.
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<crate::bench::Part>,
}

pub(super) async fn bench(common: &CommonArgs, args: &BenchArgs) -> Result<ExitCode> {
    let target = common.postgres()?;
    let started = std::time::Instant::now();
    let report = crate::bench::bench(&target, args.rows, &args.only, |step| {
        eprintln!("bench [{:>5.1}s] {step}", started.elapsed().as_secs_f64());
    })
    .await?;
    if common.json {
        println!("{}", serde_json::to_string_pretty(&report).expect("reports serialize"));
        return Ok(ExitCode::SUCCESS);
    }
    print_bench(&report, &target);
    Ok(ExitCode::SUCCESS)
}
