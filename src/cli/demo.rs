//! `lite2pg demo`: a sample database written by threads, streamed to PostgreSQL, then verified.

use std::process::ExitCode;

use clap::Args;

use crate::error::Result;

use super::print::print_verify;
use super::CommonArgs;

/// Options of `demo`.
#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// How long the writers write.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
}

pub(super) async fn demo(common: &CommonArgs, args: &DemoArgs) -> Result<ExitCode> {
    let admin = common.postgres()?;
    let report = crate::demo::demo(&admin, &crate::pg::local::data_dir().join("demo"), args.seconds).await?;
    println!();
    print_verify(&report.verify);
    println!(
        "\n{} transactions written to {} while lite2pg streamed them.\nLook at the PostgreSQL side: psql {} -c 'SELECT * FROM orders ORDER BY id DESC LIMIT 5'",
        report.transactions,
        report.sqlite.display(),
        report.postgres_url
    );
    Ok(if report.verify.is_equal() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
