//! `lite2pg doctor`: check everything the sync needs, and explain each problem's fix.

use crate::error::Result;

use super::print::print_findings;
use super::{CommonArgs, Verdict};

pub(super) async fn doctor(common: &CommonArgs) -> Result<Verdict> {
    let findings = crate::doctor::doctor(&common.source_options()?).await;
    let failed = findings.iter().any(|f| f.outcome == crate::doctor::Outcome::Fail);
    if !common.json {
        print_findings(&findings);
    }
    Ok((serde_json::to_value(&findings).expect("findings serialize"), !failed))
}
