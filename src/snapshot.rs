//! Snapshot: create the PostgreSQL tables and copy every row with binary COPY, several tables or rowid ranges at
//! once, then build indexes and foreign keys, then record the position streaming starts from.
//!
//! Contract: the position recorded (`snapshot_seq`) is a marker entry appended to the log before any row was
//! copied (with the VACUUM canary armed), and capture was installed before that. Every change after it is in the log, and applying is idempotent, so a row copied
//! while it changed is fixed by the first streamed batch.

use std::collections::{HashMap, VecDeque};

use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use futures_util::SinkExt;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_postgres::Client;

use crate::config::MisfitPolicy;
use crate::error::{Error, ErrorKind, Result};
use crate::ident::{qualified, quote};
use crate::mapping::ddl::create_table_sql;
use crate::mapping::layout::{Layout, SOURCE_COLUMN};
use crate::mapping::table::{foreign_key_groups, TablePlan};
use crate::mapping::types::{joined_types, ColumnStats, PgType, SqlValue};
use crate::pg::copy::{CopyEncoder, CHUNK_BYTES};
use crate::pg::shared_tables::{create_or_adopt_shared, is_shared_table, SharedTable};
use crate::pg::state::{self, Reject};
use crate::pg::tx::Tx;

use crate::options::SnapshotOptions;
use crate::progress::Progress;
use crate::source::Source;
use crate::sqlite::capture::mark_position;
use crate::sqlite::introspect::Table;
use crate::sqlite::scan::{column_stats, read_values, rowid_filter, rowid_ranges};
use crate::sqlite::{begin_read_at, open, Access};

/// Tables with more rows than this are copied as several rowid ranges in parallel.
const SPLIT_ROWS: u64 = 200_000;

/// One column's mapping, as printed.
#[derive(Debug, Clone, Serialize)]
pub struct ColumnMapping {
    pub table: String,
    pub column: String,
    pub declared_type: String,
    pub stored: String,
    pub pg_type: String,
}

/// What was copied for one table.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TableReport {
    pub table: String,
    pub rows: u64,
    pub bytes: u64,
    pub seconds: f64,
    pub rejects: u64,
}

/// The result of a snapshot.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotReport {
    pub source_id: String,
    pub schema: String,
    pub snapshot_seq: i64,
    pub tables: Vec<TableReport>,
    pub mapping: Vec<ColumnMapping>,
    /// Fallbacks taken and things not copied, each a sentence.
    pub notes: Vec<String>,
    pub seconds: f64,
}

impl SnapshotReport {
    /// Values PostgreSQL could not hold, over all tables.
    pub fn rejects(&self) -> u64 {
        self.tables.iter().map(|t| t.rejects).sum()
    }
}

/// Runs a snapshot of the whole selection into tables lite2pg creates (`stream::snapshot` chooses between this and
/// filling the application's existing tables).
pub async fn snapshot(options: &SnapshotOptions) -> Result<SnapshotReport> {
    let mut attempts = 0;
    loop {
        match snapshot_once(options).await {
            Err(err) if err.kind() == ErrorKind::SchemaMoved && attempts < SCHEMA_MOVED_ATTEMPTS => {
                attempts += 1;
                tracing::info!(
                    "the SQLite schema changed during the snapshot (a migration ran): copying again from the new schema"
                );
            }
            result => return result,
        }
    }
}

/// How often a snapshot starts over because a migration changed the schema under it, before it gives up.
const SCHEMA_MOVED_ATTEMPTS: u32 = 10;

async fn snapshot_once(options: &SnapshotOptions) -> Result<SnapshotReport> {
    let started = Instant::now();
    let mut prepared = {
        let options = options.clone();
        tokio::task::spawn_blocking(move || prepare(&options)).await.expect("snapshot preparation does not panic")?
    };
    let mut client = options.source.target.connect().await?;
    state::ensure_state_schema(&mut client).await?;
    state::lock_source(&client, &prepared.source_id).await?;
    check_targets(&client, options, &prepared).await?;
    // Only now, holding the source: the canary is re-armed, which must not hide a VACUUM from a running daemon.
    let sqlite = options.source.sqlite.clone();
    (prepared.snapshot_seq, prepared.snapshot_mark) =
        tokio::task::spawn_blocking(move || mark_position(&mut open(&sqlite, Access::ReadWrite)?))
            .await
            .expect("marking the position does not panic")?;
    let created = create_tables(&mut client, options, &mut prepared).await?;
    let progress = Progress::new(options.progress);
    let copied = copy_all(options, &prepared, &progress).await?;
    refuse_stopping_rejects(options, &copied)?;
    crate::fail_point!("snapshot-after-copy");
    progress.finish();
    let mut notes = prepared.notes.clone();
    let target = (options.source.schema.as_str(), options.source.policies.layout);
    notes.extend(crate::constraints::build_post_data(&client, target, &prepared.tables, &prepared.plans, &created).await?);
    let tables = finish(&mut client, options, &prepared, copied).await?;
    // Released now, not when the server notices the session ended: `run` takes it next.
    state::unlock_source(&client, &prepared.source_id).await?;
    Ok(SnapshotReport {
        source_id: prepared.source_id,
        schema: options.source.schema.clone(),
        snapshot_seq: prepared.snapshot_seq,
        tables,
        mapping: prepared.mapping,
        notes,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Everything read from SQLite before PostgreSQL is touched.
struct Prepared {
    source_id: String,
    database_id: String,
    sqlite_path: String,
    plans: Vec<TablePlan>,
    tables: Vec<Table>,
    row_counts: Vec<u64>,
    mapping: Vec<ColumnMapping>,
    notes: Vec<String>,
    /// The position streaming starts from, taken after the source is locked and before any row is copied.
    snapshot_seq: i64,
    /// SQLite's schema version the plans are of: every read checks it, in its own read transaction.
    schema_version: i64,
    snapshot_mark: Option<String>,
}

fn prepare(options: &SnapshotOptions) -> Result<Prepared> {
    let source = Source::prepare(&options.source.sqlite, &options.source.selection, options.source.source_id.as_deref())?;
    let mut prepared = Prepared {
        source_id: source.capture.source_id.clone(),
        database_id: source.capture.database_id.clone(),
        sqlite_path: source.display_path(),
        plans: Vec::new(),
        tables: Vec::new(),
        row_counts: Vec::new(),
        mapping: Vec::new(),
        notes: source.schema.skipped.iter().map(|s| format!("{} {:?} is not copied", s.kind, s.name)).collect(),
        snapshot_seq: 0,
        snapshot_mark: None,
        schema_version: source.schema_version,
    };
    let (mut stats, mut keys) = (Vec::new(), Vec::new());
    for (table, captured) in source.captured_tables() {
        let (rows, table_stats) = scan_table(&options.source.sqlite, table, options.jobs, source.schema_version)?;
        let plan = TablePlan::from_stats(table, &table_stats, &captured.key_columns, &options.source.policies);
        if captured.key_columns.is_empty() && !table.primary_key.is_empty() {
            prepared.notes.push(format!(
                "table {:?}: primary key ({}) holds NULLs, so rows are keyed by rowid and the key becomes a unique constraint",
                table.name,
                table.primary_key.join(", ")
            ));
        }
        prepared.row_counts.push(rows);
        prepared.plans.push(plan);
        prepared.tables.push(table.clone());
        stats.push(table_stats);
        keys.push(captured.key_columns.clone());
    }
    unify_foreign_key_types(&prepared.tables, &mut prepared.plans, &stats, &keys);
    prepared.notes.extend(prepared.plans.iter().flat_map(shortened_names));
    for ((table, stats), plan) in prepared.tables.iter().zip(&stats).zip(&prepared.plans) {
        prepared.mapping.extend(table.columns.iter().zip(stats).zip(&plan.columns).map(|((column, stats), planned)| {
            ColumnMapping {
                table: table.name.clone(),
                column: column.name.clone(),
                declared_type: column.declared_type.clone(),
                stored: describe_stats(stats),
                pg_type: planned.pg_type.sql().to_string(),
            }
        }));
    }
    Ok(prepared)
}

/// Gives the columns on both ends of every foreign key one type, the join of the types chosen for each, so that
/// PostgreSQL can make every key SQLite declares (it compares keys only within one type).
fn unify_foreign_key_types(tables: &[Table], plans: &mut [TablePlan], stats: &[Vec<ColumnStats>], keys: &[Vec<String>]) {
    let mut types: Vec<Vec<PgType>> =
        tables.iter().zip(plans.iter()).map(|(t, p)| p.columns[..t.columns.len()].iter().map(|c| c.pg_type).collect()).collect();
    let mut changed = vec![false; tables.len()];
    for group in foreign_key_groups(&tables.iter().collect::<Vec<_>>()) {
        let special_reals = group.iter().any(|&(t, c)| stats[t][c].special_reals > 0);
        let joined = joined_types(group.iter().map(|&(t, c)| types[t][c]), special_reals).expect("groups are not empty");
        for &(t, c) in &group {
            changed[t] |= std::mem::replace(&mut types[t][c], joined) != joined;
        }
    }
    for (t, _) in changed.iter().enumerate().filter(|(_, changed)| **changed) {
        plans[t] = TablePlan::new(&tables[t], &types[t], &keys[t]);
    }
}

/// A note for the table's name and each column name PostgreSQL holds under another name (`ident::pg_name`).
fn shortened_names(plan: &TablePlan) -> Vec<String> {
    let table = crate::ident::pg_name(&plan.name);
    let table_note = (table != plan.name).then(|| format!("table {:?} is named {table:?} in PostgreSQL", plan.name));
    let columns = plan
        .columns
        .iter()
        .filter(|c| c.pg_name != c.name)
        .map(|c| format!("column {:?} of table {:?} is named {:?} in PostgreSQL", c.name, plan.name, c.pg_name));
    table_note.into_iter().chain(columns).collect()
}

/// Scans what a table stores, in rowid ranges on several threads when it is big.
fn scan_table(path: &std::path::Path, table: &Table, jobs: usize, schema_version: i64) -> Result<(u64, Vec<ColumnStats>)> {
    let conn = open(path, Access::ReadOnly)?;
    let ranges = rowid_ranges(&conn, table, jobs as u64)?;
    let parts: Vec<Result<(u64, Vec<ColumnStats>)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = ranges
            .into_iter()
            .map(|range| {
                scope.spawn(move || {
                    let conn = open(path, Access::ReadOnly)?;
                    begin_read_at(&conn, schema_version)?;
                    column_stats(&conn, table, range)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("scans do not panic")).collect()
    });
    let mut total = (0, vec![ColumnStats::default(); table.columns.len()]);
    for part in parts {
        let (rows, stats) = part?;
        total.0 += rows;
        total.1.iter_mut().zip(&stats).for_each(|(sum, part)| sum.merge(part));
    }
    Ok(total)
}

fn describe_stats(stats: &ColumnStats) -> String {
    let parts: Vec<String> = [("integer", stats.integers), ("real", stats.reals), ("text", stats.texts), ("blob", stats.blobs)]
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(class, n)| format!("{n} {class}"))
        .collect();
    if parts.is_empty() {
        "only NULL".to_string()
    } else {
        parts.join(", ")
    }
}

/// Refuses to touch tables that exist, unless `--replace` or they belong to an unfinished snapshot of this source.
async fn check_targets(client: &Client, options: &SnapshotOptions, prepared: &Prepared) -> Result<()> {
    let existing_source = state::source(client, &prepared.source_id).await?;
    let unfinished_same_source =
        existing_source.as_ref().is_some_and(|s| s.snapshot_seq.is_none() && s.database_id == prepared.database_id);
    if let Some(source) = &existing_source {
        if source.snapshot_seq.is_some() && !options.replace {
            return Err(Error::new(
                ErrorKind::Usage,
                format!(
                    "source {} was already copied into PostgreSQL (applied up to seq {})",
                    source.source_id, source.applied_seq
                ),
            )
            .with_hint("use `lite2pg run` to keep it in sync, or `snapshot --replace` to copy it again from scratch"));
        }
    }
    let mut blocked = Vec::new();
    for plan in &prepared.plans {
        if !crate::pg::catalog::table_exists(client, &options.source.schema, &plan.name).await? {
            continue;
        }
        if options.source.policies.layout.shares_tables() {
            // Shared tables are expected to exist; one without the source column is not one.
            if !is_shared_table(client, &options.source.schema, &plan.name).await? {
                blocked.push(format!("{} (without a {SOURCE_COLUMN} column)", qualified(&options.source.schema, &plan.name)));
            }
            continue;
        }
        let owner = state::table_owner(client, &options.source.schema, &plan.name).await?;
        let ours_unfinished = unfinished_same_source && owner.as_deref() == Some(prepared.source_id.as_str());
        if !options.replace && !ours_unfinished {
            let whose = match owner {
                Some(owner) => format!("created by lite2pg for source {owner}"),
                None => "not created by lite2pg".to_string(),
            };
            blocked.push(format!("{} ({whose})", qualified(&options.source.schema, &plan.name)));
        }
    }
    if blocked.is_empty() {
        return Ok(());
    }
    Err(Error::new(ErrorKind::Usage, format!("PostgreSQL already has {}", blocked.join(", ")))
        .with_hint("nothing was changed; pass --replace to drop and re-create these tables, or choose another --schema"))
}

/// Creates the tables; returns which ones this snapshot created (and builds constraints and indexes for). A shared
/// table another source created is taken as it is: columns this source has and it lacks are added, and this
/// source's rows are written in its column types.
async fn create_tables(client: &mut Client, options: &SnapshotOptions, prepared: &mut Prepared) -> Result<Vec<bool>> {
    let tx = client.transaction().await?;
    state::ensure_schema(&tx, &options.source.schema).await?;
    state::start_snapshot(&tx, &prepared.source_id, &prepared.database_id, &prepared.sqlite_path, &options.source.schema).await?;
    let layout = options.source.policies.layout;
    let mut created = Vec::new();
    for (plan, table) in prepared.plans.iter_mut().zip(&prepared.tables) {
        let made = match layout {
            Layout::SharedTables => {
                create_or_adopt_shared(&tx, &options.source.schema, plan, table).await? == SharedTable::Missing
            }
            Layout::SchemaPerSource => {
                tx.batch_execute(&format!("DROP TABLE IF EXISTS {} CASCADE", qualified(&options.source.schema, &plan.name)))
                    .await?;
                true
            }
        };
        created.push(made);
        if made {
            tx.batch_execute(&create_table_sql(&options.source.schema, plan, layout)).await.map_err(|err| {
                Error::from(err).context(format!("cannot create table {}", qualified(&options.source.schema, &plan.name)))
            })?;
            crate::pg::citus::distribute_if_shared(&tx, &options.source.schema, &plan.name, layout).await?;
        }
        let key: Vec<String> = plan.key_columns().map(|c| c.name.clone()).collect();
        let columns: Vec<String> = table.columns.iter().map(|c| c.name.clone()).collect();
        state::record_snapshot_table(&tx, &prepared.source_id, &options.source.schema, &plan.name, &key, &columns).await?;
    }
    tx.commit().await?;
    Ok(created)
}

/// One unit of copy work: a table, or a rowid range of one.
#[derive(Debug, Clone, Copy)]
struct CopyItem {
    table: usize,
    rowids: Option<(i64, i64)>,
}

/// Per-table totals gathered by the workers.
#[derive(Debug, Default)]
struct Copied {
    rows: u64,
    bytes: u64,
    rejects: Vec<Reject>,
    seconds: f64,
}

async fn copy_all(options: &SnapshotOptions, prepared: &Prepared, progress: &Progress) -> Result<HashMap<usize, Copied>> {
    let items = plan_items(options, prepared)?;
    let queue = Arc::new(Mutex::new(VecDeque::from(items)));
    let plans = Arc::new(prepared.plans.clone());
    let bars: Arc<Vec<_>> =
        Arc::new(prepared.plans.iter().zip(&prepared.row_counts).map(|(p, n)| progress.table_bar(&p.name, *n)).collect());
    let shared = options.source.policies.layout.shares_tables();
    // A shared table may already hold foreign keys: this source's rows go in one transaction, checked at its end.
    let workers = if shared { 1 } else { options.jobs.max(1).min(queue.lock().expect("fresh lock").len().max(1)) };
    let mut handles = Vec::new();
    for _ in 0..workers {
        let client = options.source.target.connect().await?;
        let (queue, plans, bars) = (queue.clone(), plans.clone(), bars.clone());
        let (path, schema, schema_version) =
            (options.source.sqlite.clone(), options.source.schema.clone(), prepared.schema_version);
        let own_rows = shared.then(|| prepared.source_id.clone());
        handles.push(tokio::spawn(async move {
            let tx = match &own_rows {
                Some(source_id) => Some(replace_own_rows(&client, &schema, source_id, &plans).await?),
                None => None,
            };
            let mut done: Vec<(usize, Copied)> = Vec::new();
            loop {
                let next = queue.lock().expect("queue lock is never poisoned").pop_front();
                let Some(item) = next else {
                    if let Some(tx) = &tx {
                        tx.commit().await?;
                    }
                    return Ok::<_, Error>(done);
                };
                let started = Instant::now();
                let plan = &plans[item.table];
                let mut copied =
                    copy_item(&client, (&path, schema_version), &schema, plan, item.rowids, &bars[item.table]).await?;
                copied.seconds = started.elapsed().as_secs_f64();
                done.push((item.table, copied));
            }
        }));
    }
    let mut totals: HashMap<usize, Copied> = HashMap::new();
    let mut first_error = None;
    for handle in handles {
        match handle.await.expect("copy workers do not panic") {
            Ok(done) => {
                for (table, copied) in done {
                    let total = totals.entry(table).or_default();
                    total.rows += copied.rows;
                    total.bytes += copied.bytes;
                    total.seconds = total.seconds.max(copied.seconds);
                    total.rejects.extend(copied.rejects);
                }
            }
            Err(err) => first_error = first_error.or(Some(err)),
        }
    }
    for bar in bars.iter() {
        bar.finish();
    }
    match first_error {
        Some(err) => Err(err),
        None => Ok(totals),
    }
}

/// Opens the transaction a shared snapshot copies in, sets whose rows it writes, and deletes that source's
/// rows from every table first.
async fn replace_own_rows<'c>(client: &'c Client, schema: &str, source_id: &str, plans: &[TablePlan]) -> Result<Tx<'c>> {
    let tx = Tx::begin(client).await?;
    state::act_as_source(&*tx, source_id, true).await?;
    for plan in plans {
        let own = Layout::SharedTables.this_source("", 1);
        tx.execute(&format!("DELETE FROM {} WHERE true{own}", qualified(schema, &plan.name)), &[&source_id]).await?;
    }
    Ok(tx)
}

/// Under the `stop` policy a value that does not fit ends the snapshot (only a type override can make one: the
/// types chosen from the scan fit every stored value).
fn refuse_stopping_rejects(options: &SnapshotOptions, copied: &HashMap<usize, Copied>) -> Result<()> {
    let stopping = copied
        .values()
        .flat_map(|c| &c.rejects)
        .find(|r| options.source.policies.misfit(&r.table, &r.column) == MisfitPolicy::Stop);
    stopping.map_or(Ok(()), |reject| Err(reject.stop_error()))
}

/// Splits big rowid tables into ranges so both cores (and several connections) work on them.
fn plan_items(options: &SnapshotOptions, prepared: &Prepared) -> Result<Vec<CopyItem>> {
    let conn = open(&options.source.sqlite, Access::ReadOnly)?;
    let mut items = Vec::new();
    for (index, table) in prepared.tables.iter().enumerate() {
        let parts = (options.jobs.max(1) as u64 * 2).min(prepared.row_counts[index] / SPLIT_ROWS).max(1);
        items.extend(rowid_ranges(&conn, table, parts)?.into_iter().map(|rowids| CopyItem { table: index, rowids }));
    }
    // Biggest first, so the last worker does not start a big table alone.
    items.sort_by_key(|item| std::cmp::Reverse(prepared.row_counts[item.table] / if item.rowids.is_some() { 2 } else { 1 }));
    Ok(items)
}

/// A chunk of COPY data and how many rows it holds.
struct Chunk {
    data: Vec<u8>,
    rows: u64,
}

/// Copies one table or rowid range, read from the file at `sqlite.0` in the schema of version `sqlite.1`.
async fn copy_item(
    client: &Client,
    sqlite: (&std::path::Path, i64),
    schema: &str,
    plan: &TablePlan,
    rowids: Option<(i64, i64)>,
    bar: &crate::progress::TableBar,
) -> Result<Copied> {
    let (sender, mut receiver) = mpsc::channel::<Chunk>(4);
    let reader = {
        let ((path, schema_version), plan) = ((sqlite.0.to_path_buf(), sqlite.1), plan.clone());
        tokio::task::spawn_blocking(move || read_rows(&path, schema_version, &plan, rowids, sender))
    };
    let copy_sql = format!("COPY {} ({}) FROM STDIN (FORMAT binary)", qualified(schema, &plan.name), plan.pg_column_list());
    let sink = client.copy_in::<_, Bytes>(copy_sql.as_str()).await?;
    futures_util::pin_mut!(sink);
    let mut copied = Copied::default();
    while let Some(chunk) = receiver.recv().await {
        copied.bytes += chunk.data.len() as u64;
        bar.advance(chunk.rows);
        sink.send(Bytes::from(chunk.data)).await.map_err(|err| Error::from(err).context(format!("COPY into {}", plan.name)))?;
    }
    let (rows, rejects) = reader.await.expect("row readers do not panic")?;
    sink.as_mut().finish().await.map_err(|err| Error::from(err).context(format!("COPY into {}", plan.name)))?;
    copied.rows = rows;
    copied.rejects = rejects;
    Ok(copied)
}

/// Reads a table (or a rowid range of it) and sends it as binary COPY chunks. Rows holding a value PostgreSQL
/// cannot hold are left out and returned as rejects.
fn read_rows(
    path: &std::path::Path,
    schema_version: i64,
    plan: &TablePlan,
    rowids: Option<(i64, i64)>,
    sender: mpsc::Sender<Chunk>,
) -> Result<(u64, Vec<Reject>)> {
    let conn = open(path, Access::ReadOnly)?;
    begin_read_at(&conn, schema_version)?;
    let (range, bounds) = rowid_filter(plan.rowid_name, rowids);
    let sql = format!("SELECT {} FROM {} AS t{range}", plan.select_list("t"), quote(&plan.name));
    let mut stmt = conn.prepare(&sql)?;
    let mut rows = stmt.query(rusqlite::params_from_iter(bounds))?;
    let mut encoder = CopyEncoder::default();
    let (mut values, mut rejects, mut chunk_rows) = (Vec::<SqlValue>::new(), Vec::new(), 0u64);
    let closed = || Error::new(ErrorKind::PgConnect, "the COPY to PostgreSQL stopped early");
    while let Some(row) = rows.next()? {
        read_values(row, 0, plan.columns.len(), &mut values)?;
        if let Some(reject) = Reject::of_null_key(plan, &values) {
            rejects.push(reject);
            continue;
        }
        match encoder.push_table_row(plan, &values) {
            Ok(()) => chunk_rows += 1,
            Err((column, misfit)) => rejects.push(Reject {
                table: plan.name.clone(),
                key: plan.key_of(&values),
                column: plan.columns[column].name.clone(),
                reason: misfit.reason,
                value: values[column].clone(),
            }),
        }
        if encoder.len() >= CHUNK_BYTES {
            sender.blocking_send(Chunk { data: encoder.take(), rows: chunk_rows }).map_err(|_| closed())?;
            chunk_rows = 0;
        }
    }
    let total = encoder.rows();
    sender.blocking_send(Chunk { data: encoder.finish(), rows: chunk_rows }).map_err(|_| closed())?;
    Ok((total, rejects))
}

/// Stores rejects and per-table figures and sets the position streaming starts from, in one transaction.
async fn finish(
    client: &mut Client,
    options: &SnapshotOptions,
    prepared: &Prepared,
    mut copied: HashMap<usize, Copied>,
) -> Result<Vec<TableReport>> {
    let tx = client.transaction().await?;
    let mut reports = Vec::new();
    for (index, plan) in prepared.plans.iter().enumerate() {
        let copied = copied.remove(&index).unwrap_or_default();
        state::store_rejects(&tx, &prepared.source_id, &copied.rejects).await?;
        state::record_copied(&tx, &prepared.source_id, &plan.name, copied.rows, copied.bytes).await?;
        reports.push(TableReport {
            table: plan.name.clone(),
            rows: copied.rows,
            bytes: copied.bytes,
            seconds: copied.seconds,
            rejects: copied.rejects.len() as u64,
        });
    }
    state::finish_snapshot(&tx, &prepared.source_id, prepared.snapshot_seq, prepared.snapshot_mark.as_deref()).await?;
    tx.commit().await?;
    tracing::debug!(schema = %options.source.schema, "snapshot recorded");
    Ok(reports)
}
