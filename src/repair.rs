//! Repair for `verify --repair` and `rejects --retry`: rows are sent through the stream's normal apply path again
//! by logging their keys in SQLite as if they had just changed, then applied by this process or a running daemon.

use std::time::{Duration, Instant};

use rusqlite::Connection;

use crate::error::{Error, ErrorKind, Result};
use crate::mapping::types::SqlValue;
use crate::metrics::Metrics;
use crate::options::{SnapshotOptions, SourceOptions};
use crate::pg::state::{self, StoredReject};
use crate::sqlite::capture::{self, CaptureState};
use crate::sqlite::{open, Access};
use crate::stream::{run, StopWhen};

/// How long `reapply` waits for a running daemon to apply what it logged.
const REAPPLY_WAIT: Duration = Duration::from_secs(120);

/// Sends rows through the normal apply path again: their keys (per table id) are logged in SQLite as if the rows
/// had just changed, then applied by this process, or by the running daemon when one holds the source. Returns
/// how many keys were logged. Used by `verify --repair` and `rejects --retry`.
pub(crate) async fn reapply(options: &SnapshotOptions, source_id: &str, keys: Vec<(i64, Vec<Vec<SqlValue>>)>) -> Result<u64> {
    let mut conn = open(&options.source.sqlite, Access::ReadWrite)?;
    let (mut logged, mut newest) = (0u64, 0i64);
    for (table_id, keys) in keys.iter().filter(|(_, keys)| !keys.is_empty()) {
        newest = capture::log_keys(&mut conn, *table_id, keys)?;
        logged += keys.len() as u64;
    }
    drop(conn);
    if logged == 0 {
        return Ok(0);
    }
    match run(options, StopWhen::CaughtUp, Metrics::new(Default::default()), |_| {}).await {
        Ok(_) => Ok(logged),
        Err(err) if err.kind() == ErrorKind::Locked => {
            tracing::info!("a running lite2pg holds source {source_id}; waiting for it to apply the logged rows");
            wait_until_applied(&options.source, source_id, newest).await.map(|()| logged)
        }
        Err(err) => Err(err),
    }
}

/// Applies rejected rows again (`lite2pg rejects --retry`): finds their keys in SQLite and re-applies them.
/// A running daemon applies them with its own settings.
pub(crate) async fn retry_rejects(
    options: &SnapshotOptions,
    conn: &Connection,
    capture: &CaptureState,
    rejects: &[StoredReject],
) -> Result<u64> {
    let schema = crate::sqlite::introspect::read_schema(conn)?;
    let mut keys = Vec::new();
    for captured in &capture.tables {
        let wanted: Vec<serde_json::Value> =
            rejects.iter().filter(|r| r.table == captured.name).filter_map(|r| serde_json::from_str(&r.key).ok()).collect();
        if let (false, Some(table)) = (wanted.is_empty(), schema.table(&captured.name)) {
            keys.push((captured.id, capture::keys_with_json(conn, table, captured, &wanted)?));
        }
    }
    reapply(options, &capture.source_id, keys).await
}

async fn wait_until_applied(options: &SourceOptions, source_id: &str, seq: i64) -> Result<()> {
    let client = options.target.connect().await?;
    let deadline = Instant::now() + REAPPLY_WAIT;
    while Instant::now() < deadline {
        if state::source(&client, source_id).await?.is_some_and(|row| row.applied_seq >= seq) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(Error::new(
        ErrorKind::State,
        format!("the running lite2pg did not apply the logged rows within {}s", REAPPLY_WAIT.as_secs()),
    )
    .with_hint("check it with `lite2pg status`; the entries stay in the log and will be applied"))
}
