//! Status: where the sync of one source stands, read from the SQLite file and from `lite2pg.sources` (and the
//! constraints PostgreSQL lacks, from its catalog), whether or not a daemon is running. PostgreSQL being
//! unreachable is reported, not fatal: the SQLite side still shows.

use serde::Serialize;

use crate::constraints::{missing_for_source, Missing};
use crate::error::Result;
use crate::ident::{qualified, quote};
use crate::options::SourceOptions;
use crate::pg::state;
use crate::sqlite::capture::{self, CaptureState};
use crate::sqlite::introspect::{read_schema, SourceSchema, Table};
use crate::sqlite::{open, Access};

/// One table's row counts on both sides.
#[derive(Debug, Clone, Serialize)]
pub struct TableStatus {
    pub table: String,
    /// Its name in PostgreSQL (`ident::pg_name`: shortened when over 63 bytes).
    pub postgres_table: String,
    pub sqlite_rows: i64,
    /// `None` when PostgreSQL could not be read.
    pub postgres_rows: Option<i64>,
}

/// Where a source's sync stands.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub source_id: String,
    pub sqlite: String,
    pub postgres: String,
    /// Why PostgreSQL could not be read, when it could not.
    pub postgres_error: Option<String>,
    pub snapshot_done: bool,
    pub applied_seq: Option<i64>,
    pub newest_seq: i64,
    /// Log entries PostgreSQL does not have yet.
    pub pending_changes: Option<i64>,
    /// Age of the oldest change not yet in PostgreSQL; 0 when caught up.
    pub lag_seconds: Option<f64>,
    /// Tables the daemon's next batch copies whole (the first copy into existing tables, a rebuild, a VACUUM):
    /// until they are copied the source is not caught up, whatever the position says. `None` when PostgreSQL
    /// could not be read.
    pub tables_to_copy: Option<Vec<String>>,
    pub rejects: Option<i64>,
    /// The error that last stopped or held up the daemon (PostgreSQL's message with SQLSTATE, table and
    /// constraint when PostgreSQL refused a batch); cleared by the next applied batch.
    pub last_error: Option<String>,
    pub last_error_at: Option<String>,
    pub last_applied_at: Option<String>,
    /// Who holds the source's daemon lock, or `None` when no daemon runs.
    pub daemon: Option<String>,
    pub tables: Vec<TableStatus>,
    /// Constraints SQLite declares that PostgreSQL lacks (refused, or a foreign key waiting for its parent table);
    /// `None` when PostgreSQL could not be read, or the tables are the application's own.
    pub missing_constraints: Option<Vec<Missing>>,
    /// Synced into the application's own tables (`--into-existing`).
    pub into_existing: bool,
    /// Into the application's own tables: the tables and columns only one side has; `None` otherwise.
    pub gaps: Option<crate::existing::Gaps>,
}

/// Reads the status of `options.sqlite`'s source; `brief` leaves out the row counts per table and the missing
/// constraints (they read every table: too slow to poll on a large database).
pub async fn status(options: &SourceOptions, brief: bool) -> Result<Status> {
    let conn = open(&options.sqlite, Access::ReadOnly)?;
    let capture = capture::require_state(&conn, &options.sqlite)?;
    conn.execute_batch("BEGIN")?;
    let mut status = Status {
        source_id: capture.source_id.clone(),
        sqlite: options.sqlite.display().to_string(),
        postgres: options.target.shown().to_string(),
        postgres_error: None,
        snapshot_done: false,
        applied_seq: None,
        newest_seq: capture::newest_seq(&conn)?,
        pending_changes: None,
        lag_seconds: None,
        tables_to_copy: None,
        rejects: None,
        last_error: None,
        last_error_at: None,
        last_applied_at: None,
        daemon: None,
        tables: if brief { Vec::new() } else { sqlite_counts(&conn, &capture)? },
        missing_constraints: None,
        into_existing: false,
        gaps: None,
    };
    let sqlite_schema = (!brief).then(|| read_schema(&conn)).transpose()?;
    match postgres_status(options, &capture, sqlite_schema.as_ref(), &mut status).await {
        Ok(Some(applied_seq)) => {
            status.applied_seq = Some(applied_seq);
            let pending = capture::pending(&conn, applied_seq)?;
            status.pending_changes = Some(pending.entries);
            status.lag_seconds = pending.lag_seconds();
        }
        Ok(None) => {}
        Err(err) => status.postgres_error = Some(err.to_string()),
    }
    conn.execute_batch("COMMIT")?;
    Ok(status)
}

fn sqlite_counts(conn: &rusqlite::Connection, capture: &CaptureState) -> Result<Vec<TableStatus>> {
    capture
        .tables
        .iter()
        // A table the application dropped or renamed since the daemon last followed its schema is not counted: the
        // daemon follows the change at its next batch.
        .filter(|t| crate::sqlite::table_exists(conn, &t.name).unwrap_or(true))
        .map(|t| {
            let rows = conn.query_row(&format!("SELECT count(*) FROM {}", quote(&t.name)), [], |r| r.get(0))?;
            let postgres_table = crate::ident::pg_name(&t.name);
            Ok(TableStatus { table: t.name.clone(), postgres_table, sqlite_rows: rows, postgres_rows: None })
        })
        .collect()
}

/// Fills in the PostgreSQL side and returns the applied position (`None` when the source was never copied); the
/// missing constraints only given `sqlite_schema`.
async fn postgres_status(
    options: &SourceOptions,
    capture: &CaptureState,
    sqlite_schema: Option<&SourceSchema>,
    status: &mut Status,
) -> Result<Option<i64>> {
    let client = options.target.connect().await?;
    if !state::state_schema_exists(&client).await? {
        return Ok(None);
    }
    status.daemon = state::lock_holder(&client, &capture.source_id).await?;
    let Some(row) = state::source_status(&client, &capture.source_id).await? else { return Ok(None) };
    status.snapshot_done = row.snapshot_done;
    status.last_error = row.last_error;
    status.last_applied_at = row.last_applied_at;
    status.rejects = Some(row.rejects);
    status.last_error_at = row.last_error_at;
    let schema = row.target_schema;
    status.into_existing = row.into_existing;
    status.tables_to_copy = Some(state::tables_to_resync(&client, &capture.source_id).await?);
    state::act_as_source(&client, &capture.source_id, false).await?;
    let own = options.policies.layout.this_source("", 1);
    let params = options.policies.layout.source_param(&capture.source_id);
    for table in &mut status.tables {
        if crate::pg::catalog::table_exists(&client, &schema, &table.table).await? {
            let sql = format!("SELECT count(*) FROM {} WHERE true{own}", qualified(&schema, &table.table));
            let count = client.query_one(&sql, &params).await?;
            table.postgres_rows = Some(count.get(0));
        }
    }
    let Some(sqlite_schema) = sqlite_schema else { return Ok(Some(row.applied_seq)) };
    if status.into_existing {
        let tables: Vec<&Table> = capture.tables.iter().filter_map(|t| sqlite_schema.table(&t.name)).collect();
        status.gaps = Some(crate::existing::gaps(&client, &schema, &tables).await?);
        return Ok(Some(row.applied_seq));
    }
    let layout = options.policies.layout;
    status.missing_constraints = Some(missing_for_source(&client, &schema, sqlite_schema, &capture.tables, layout).await?);
    Ok(Some(row.applied_seq))
}
