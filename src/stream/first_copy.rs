//! A source's first copy: `snapshot`'s, or with `--into-existing` the application's own tables, registered and
//! then filled by streaming until caught up (so it lives with the stream, which may start with it).

use std::collections::BTreeSet;
use std::time::Instant;

use crate::error::Result;
use crate::ident::qualified;
use crate::metrics::Metrics;
use crate::options::SnapshotOptions;
use crate::pg::state;
use crate::snapshot::{SnapshotReport, TableReport};

use super::StopWhen;

/// The first copy of the selection: into the application's existing tables when asked or recorded so, else a
/// snapshot into tables lite2pg creates.
pub async fn snapshot(options: &SnapshotOptions) -> Result<SnapshotReport> {
    if crate::existing::asked_or_recorded(options).await? {
        return into_existing(options).await;
    }
    crate::snapshot::snapshot(options).await
}

/// `snapshot --into-existing`: records the source and its tables (`register`), then copies every table in one
/// batch: one PostgreSQL transaction replaces each table's rows with SQLite's and stores the position.
async fn into_existing(options: &SnapshotOptions) -> Result<SnapshotReport> {
    let started = Instant::now();
    let mut report = crate::existing::register(options).await?;
    let options = options.with_source_id(&report.source_id);
    // Boxed: `run` may start with a snapshot itself, and async calls that can recurse need a pointer.
    Box::pin(super::run(&options, StopWhen::CaughtUp, Metrics::new(Default::default()), |_| {})).await?;
    let client = options.source.target.connect().await?;
    for plan in &report.mapping.iter().map(|m| m.table.clone()).collect::<BTreeSet<_>>() {
        let rows: i64 =
            client.query_one(&format!("SELECT count(*) FROM {}", qualified(&options.source.schema, plan)), &[]).await?.get(0);
        let rejects = state::reject_count(&client, &report.source_id, plan).await?;
        report.tables.push(TableReport { table: plan.clone(), rows: rows as u64, rejects, ..Default::default() });
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}
