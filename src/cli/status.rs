//! `lite2pg status`: where the sync stands.

use clap::Args;

use crate::error::Result;

use super::print::print_status;
use super::{CommonArgs, Verdict};

/// Options of `status`.
#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// Only the position, pending changes, lag, rejects, errors and daemon: no row counts per table and no missing
    /// constraints, which read every table (cheap enough to poll; the Python package waits with it).
    #[arg(long)]
    pub brief: bool,
}

pub(super) async fn status(common: &CommonArgs, args: &StatusArgs) -> Result<Verdict> {
    let status = crate::status::status(&common.source_options()?, args.brief).await?;
    if !common.json {
        print_status(&status);
    }
    Ok((serde_json::to_value(&status).expect("statuses serialize"), status.postgres_error.is_none()))
}
