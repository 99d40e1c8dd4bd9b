//! Verify: prove that PostgreSQL holds what SQLite holds, value by value, at one consistent point, while the
//! daemon may be running. Every row becomes its fields in PostgreSQL's binary form (doubles by their bits, blobs
//! by their bytes; a value its column does not hold as its own kind never equals one) on both sides; rows are
//! hashed into buckets by key in Rust, PostgreSQL only streaming its rows by binary COPY, and only buckets whose
//! count or hash sum differ are read row by row. An equal table costs one scan per side, both sides at once.
//!
//! The consistent point: while `lite2pg.sources` is locked (the daemon cannot commit a batch), a repeatable-read
//! PostgreSQL snapshot fixes the applied position and a SQLite read transaction starts. Keys logged after that
//! position are `pending` (applied later by the daemon), not differences. On Citus, two-phase commits a worker
//! missed (down at COMMIT PREPARED) are finished first: their position committed, so their rows are compared.

mod compare;
mod fields;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rusqlite::Connection;
use serde::Serialize;
use tokio_postgres::Client;

use crate::error::{Error, ErrorKind, Result};
use crate::ident::qualified;
use crate::mapping::layout::Layout;
use crate::mapping::table::TablePlan;
use crate::mapping::types::SqlValue;
use crate::options::{SnapshotOptions, SourceOptions};
use crate::pg::apply::existing_plan;
use crate::pg::state::{self, SourceRow};
use crate::pg::tx::Tx;
use crate::sqlite::capture::{self, CaptureState};
use crate::sqlite::changes::pending_keys;
use crate::sqlite::introspect::read_schema;
use crate::sqlite::{open, Access};
use compare::{Compared, Sqlite};

/// Most example keys reported per table.
const EXAMPLES: usize = 10;

/// What kind of difference a row shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DiffKind {
    /// In SQLite, not in PostgreSQL.
    Missing,
    /// In PostgreSQL, not in SQLite.
    Extra,
    /// In both, with different values.
    Differing,
}

/// One differing row's key (a JSON array of the key values, in key order).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Example {
    pub kind: DiffKind,
    pub key: serde_json::Value,
}

/// How one table compares.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TableDiff {
    pub table: String,
    /// Its name in PostgreSQL (`ident::pg_name`: shortened when over 63 bytes).
    pub postgres_table: String,
    pub sqlite_rows: u64,
    pub postgres_rows: u64,
    pub missing: u64,
    pub extra: u64,
    pub differing: u64,
    /// Rows that differ because a value is recorded in `lite2pg.rejects`: known, not drift.
    pub known_rejects: u64,
    /// Keys with changes logged after the compared position (the daemon applies them next).
    pub pending: u64,
    /// Up to ten differing keys.
    pub examples: Vec<Example>,
    /// Keys of every difference, for `--repair`.
    #[serde(skip)]
    pub drifted_keys: Vec<Vec<SqlValue>>,
}

impl TableDiff {
    /// Whether both sides hold the same rows (known rejects and pending keys aside).
    pub fn is_equal(&self) -> bool {
        self.missing == 0 && self.extra == 0 && self.differing == 0
    }

    fn record(&mut self, kind: DiffKind, key: Vec<SqlValue>) {
        *match kind {
            DiffKind::Missing => &mut self.missing,
            DiffKind::Extra => &mut self.extra,
            DiffKind::Differing => &mut self.differing,
        } += 1;
        if self.examples.len() < EXAMPLES {
            self.examples.push(Example { kind, key: key_json(&key) });
        }
        self.drifted_keys.push(key);
    }
}

/// What a verification found.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub source_id: String,
    /// The applied position PostgreSQL was compared at.
    pub applied_seq: i64,
    pub tables: Vec<TableDiff>,
    pub seconds: f64,
    /// The error the sync last stopped on, when no batch was applied since and keys are pending: they wait on it.
    pub sync_error: Option<String>,
}

impl VerifyReport {
    /// Whether every compared table is equal.
    pub fn is_equal(&self) -> bool {
        self.tables.iter().all(TableDiff::is_equal)
    }

    /// Rows that differ, over all tables.
    pub fn differences(&self) -> u64 {
        self.tables.iter().map(|t| t.missing + t.extra + t.differing).sum()
    }
}

/// Compares the chosen captured tables of `options.sqlite` with PostgreSQL.
pub async fn verify(options: &SourceOptions) -> Result<VerifyReport> {
    let started = Instant::now();
    let conn = open(&options.sqlite, Access::ReadOnly)?;
    let capture = capture::require_state(&conn, &options.sqlite)?;
    let snapshot_client = options.target.connect().await?;
    // Which rows of a shared table are this source's.
    state::act_as_source(&snapshot_client, &capture.source_id, false).await?;
    let row =
        state::source(&snapshot_client, &capture.source_id).await?.filter(|r| r.snapshot_seq.is_some()).ok_or_else(|| {
            Error::new(ErrorKind::State, format!("source {} has not been copied to PostgreSQL yet", capture.source_id))
                .with_hint("run `lite2pg snapshot` (or `lite2pg run`) first")
        })?;
    let compared = plans(&conn, &snapshot_client, options, &capture, &row).await?;
    let tables: Vec<String> = compared.iter().map(|(_, plan)| qualified(&row.target_schema, &plan.name)).collect();
    let lock_client = options.target.connect().await?;
    let finished = crate::pg::citus::finish_prepared_commits(&lock_client).await?;
    if finished > 0 {
        tracing::info!("Citus finished {finished} two-phase commits a worker had not completed; their rows are compared");
    }
    let applied_seq = consistent_point(&conn, &lock_client, &snapshot_client, &capture.source_id, &tables).await?;
    // The column types as of the snapshot: a column may have been widened since the first look.
    let plans = plans(&conn, &snapshot_client, options, &capture, &row).await?;
    let target = (row.target_schema.as_str(), options.policies.layout);
    let sqlite = Arc::new(Mutex::new(conn));
    let result = compare_all(&sqlite, &snapshot_client, &capture.source_id, target, &plans, applied_seq).await;
    compare::lock(&sqlite).execute_batch("COMMIT")?;
    snapshot_client.batch_execute("COMMIT").await?;
    let tables = result?;
    // An error is the sync's state only while keys wait on it; one it recovered from stays recorded until a batch.
    let pending = tables.iter().any(|t| t.pending > 0);
    let sync_error = state::source_status(&lock_client, &capture.source_id).await?.and_then(|s| s.last_error).filter(|_| pending);
    Ok(VerifyReport { source_id: capture.source_id, applied_seq, tables, seconds: started.elapsed().as_secs_f64(), sync_error })
}

/// The plans of the chosen captured tables, with their registry ids. Into existing tables: the columns both
/// sides have, of the tables PostgreSQL has (`status` and `doctor` report the rest).
async fn plans(
    conn: &Connection,
    client: &Client,
    options: &SourceOptions,
    capture: &CaptureState,
    source: &SourceRow,
) -> Result<Vec<(i64, TablePlan)>> {
    let source_schema = read_schema(conn)?;
    let into_existing = crate::existing::mode(options.policies.into_existing, Some(source), false)?;
    let schema = source.target_schema.as_str();
    let mut plans = Vec::new();
    for table in options.selection.apply(&source_schema)? {
        let Some(captured) = capture.table(&table.name) else { continue };
        let plan = match into_existing {
            true => crate::existing::app_plan(client, schema, table, &captured.key_columns).await?,
            false => Some(existing_plan(client, schema, table, &captured.key_columns).await?),
        };
        plans.extend(plan.map(|plan| (captured.id, plan)));
    }
    Ok(plans)
}

/// Opens the PostgreSQL and SQLite read snapshots at one position and returns it. The source row stays locked
/// only until both snapshots exist, so a running daemon pauses for milliseconds. The compared `tables` stay
/// locked against DDL until verify ends (taken before the snapshot, which then sees their current columns): a
/// column widened meanwhile would no longer match the plans, and rewriting a table hides its rows from older
/// snapshots. They are locked before the source row, so a batch altering a table finishes first.
async fn consistent_point(
    conn: &Connection,
    lock_client: &Client,
    snapshot_client: &Client,
    source_id: &str,
    tables: &[String],
) -> Result<i64> {
    snapshot_client.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").await?;
    if !tables.is_empty() {
        snapshot_client.batch_execute(&format!("LOCK TABLE {} IN ACCESS SHARE MODE", tables.join(", "))).await?;
    }
    let lock = Tx::begin(lock_client).await?;
    state::lock_source_row(&*lock, source_id).await?;
    let applied = state::applied_seq(snapshot_client, source_id).await?;
    conn.execute_batch("BEGIN")?;
    // The first read fixes SQLite's snapshot.
    capture::newest_seq(conn)?;
    lock.commit().await?;
    Ok(applied)
}

async fn compare_all(
    sqlite: &Sqlite,
    client: &Client,
    source_id: &str,
    target: (&str, Layout),
    plans: &[(i64, TablePlan)],
    applied_seq: i64,
) -> Result<Vec<TableDiff>> {
    let mut rejects = state::rejected_keys(client, source_id).await?;
    let mut diffs = Vec::new();
    for (id, plan) in plans {
        let pending = pending_keys(&compare::lock(sqlite), plan, *id, applied_seq)?;
        let pending = pending.iter().map(|k| fields::key_fields(plan, k)).collect();
        let known = Arc::new(Known { pending, rejects: rejects.remove(&plan.name) });
        diffs.push(Compared::new(client, sqlite, plan, target, source_id).compare(known).await?);
    }
    Ok(diffs)
}

/// Differences that are expected: keys changed after the compared position, and rows with rejected values.
struct Known {
    pending: HashSet<Vec<u8>>,
    rejects: Option<HashSet<String>>,
}

impl Known {
    fn is_reject(&self, key: &[SqlValue]) -> bool {
        self.rejects.as_ref().is_some_and(|r| r.contains(&key_json(key).to_string()))
    }
}

fn key_json(key: &[SqlValue]) -> serde_json::Value {
    serde_json::Value::Array(key.iter().map(SqlValue::to_json).collect())
}

/// Sends every difference of `report` through the normal apply path (see `repair::reapply`).
pub async fn repair(options: &SnapshotOptions, report: &VerifyReport) -> Result<u64> {
    let conn = open(&options.source.sqlite, Access::ReadOnly)?;
    let capture = capture::require_state(&conn, &options.source.sqlite)?;
    drop(conn);
    let keys = report
        .tables
        .iter()
        .filter(|d| !d.drifted_keys.is_empty())
        .map(|diff| (capture.table(&diff.table).expect("verified tables are captured").id, diff.drifted_keys.clone()))
        .collect();
    crate::repair::reapply(options, &capture.source_id, keys).await
}
