//! Verify: prove that PostgreSQL holds what SQLite holds, value by value, at one consistent point, while the
//! daemon may be running. Every row becomes its fields in PostgreSQL's binary form (doubles by their bits, blobs
//! by their bytes; a value its column does not hold as its own kind never equals one) on both sides; rows are
//! hashed into buckets by key — inside PostgreSQL, and in Rust for SQLite — and only buckets whose count or hash
//! sum differ are read row by row. An equal table costs one scan per side.
//!
//! The consistent point: while `lite2pg.sources` is locked (the daemon cannot commit a batch), a repeatable-read
//! PostgreSQL snapshot fixes the applied position and a SQLite read transaction starts. Keys logged after that
//! position are `pending` (applied later by the daemon), not differences.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use md5::{Digest, Md5};
use rusqlite::Connection;
use serde::Serialize;
use tokio_postgres::types::ToSql;
use tokio_postgres::Client;

use crate::error::{Error, ErrorKind, Result};
use crate::ident::{qualified, quote};
use crate::mapping::layout::Layout;
use crate::mapping::table::TablePlan;
use crate::mapping::types::{decode_binary, SqlValue};
use crate::pg::apply::existing_plan;
use crate::pg::copy::write_field;
use crate::pg::state::{self, SourceRow};
use crate::snapshot::SnapshotOptions;
use crate::sqlite::capture::{self, CaptureState};
use crate::sqlite::changes::pending_keys;
use crate::sqlite::introspect::read_schema;
use crate::sqlite::scan::read_values;
use crate::sqlite::{open, Access};

/// Most example keys reported per table.
const EXAMPLES: usize = 10;
/// Rows per hash bucket aimed at, so a difference costs re-reading about this many rows.
const ROWS_PER_BUCKET: u64 = 64;
const MAX_BUCKETS: u64 = 1 << 16;

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
pub async fn verify(options: &SnapshotOptions) -> Result<VerifyReport> {
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
    let applied_seq = consistent_point(&conn, &lock_client, &snapshot_client, &capture.source_id, &tables).await?;
    // The column types as of the snapshot: a column may have been widened since the first look.
    let plans = plans(&conn, &snapshot_client, options, &capture, &row).await?;
    let target = (row.target_schema.as_str(), options.policies.layout);
    let result = compare_all(&conn, &snapshot_client, &capture.source_id, target, &plans, applied_seq).await;
    conn.execute_batch("COMMIT")?;
    snapshot_client.batch_execute("COMMIT").await?;
    Ok(VerifyReport { source_id: capture.source_id, applied_seq, tables: result?, seconds: started.elapsed().as_secs_f64() })
}

/// The plans of the chosen captured tables, with their registry ids. Into existing tables: the columns both
/// sides have, of the tables PostgreSQL has (`status` and `doctor` report the rest).
async fn plans(
    conn: &Connection,
    client: &Client,
    options: &SnapshotOptions,
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
    lock_client.batch_execute("BEGIN").await?;
    lock_client.query_one("SELECT 1 FROM lite2pg.sources WHERE source_id = $1 FOR UPDATE", &[&source_id]).await?;
    let applied: i64 =
        snapshot_client.query_one("SELECT applied_seq FROM lite2pg.sources WHERE source_id = $1", &[&source_id]).await?.get(0);
    conn.execute_batch("BEGIN")?;
    // The first read fixes SQLite's snapshot.
    capture::newest_seq(conn)?;
    lock_client.batch_execute("COMMIT").await?;
    Ok(applied)
}

async fn compare_all(
    conn: &Connection,
    client: &Client,
    source_id: &str,
    target: (&str, Layout),
    plans: &[(i64, TablePlan)],
    applied_seq: i64,
) -> Result<Vec<TableDiff>> {
    let mut rejects: HashMap<String, HashSet<String>> = HashMap::new();
    for row in client.query("SELECT table_name, key FROM lite2pg.rejects WHERE source_id = $1", &[&source_id]).await? {
        rejects.entry(row.get(0)).or_default().insert(row.get::<_, serde_json::Value>(1).to_string());
    }
    let mut diffs = Vec::new();
    for (id, plan) in plans {
        let pending = pending_keys(conn, plan, *id, applied_seq)?;
        let known = Known { pending: pending.iter().map(|k| key_fields(plan, k)).collect(), rejects: rejects.remove(&plan.name) };
        let sql = PgSql::new(target, plan, source_id);
        diffs.push(compare_table(conn, client, &sql, plan, &known).await?);
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

/// Compares one table inside the open snapshots, its PostgreSQL side read by `sql`.
async fn compare_table(conn: &Connection, client: &Client, sql: &PgSql, plan: &TablePlan, known: &Known) -> Result<TableDiff> {
    let rows: i64 = conn.query_row(&format!("SELECT count(*) FROM {}", quote(&plan.name)), [], |r| r.get(0))?;
    let buckets = (rows as u64 / ROWS_PER_BUCKET).clamp(1, MAX_BUCKETS);
    let mut sqlite_sums = vec![BucketSum::default(); buckets as usize];
    let bucket_count = buckets as i64;
    let params = sql.params(&[&bucket_count]);
    let statement = client.prepare(&sql.bucket_sums).await?;
    // PostgreSQL hashes its side while this thread scans SQLite: a prepared query is sent on the first poll.
    let (postgres, scanned) = tokio::join!(biased; client.query(&statement, &params), async {
        scan_sqlite(conn, plan, buckets, |bucket, _, row, _| sqlite_sums[bucket as usize].add(row))
    });
    scanned?;
    let mut postgres_sums = vec![BucketSum::default(); buckets as usize];
    for row in postgres? {
        let sum: String = row.get(2);
        postgres_sums[row.get::<_, i64>(0) as usize] = BucketSum {
            rows: row.get::<_, i64>(1) as u64,
            hash_sum: sum.parse().map_err(|_| Error::new(ErrorKind::PgQuery, format!("unexpected hash sum {sum:?}")))?,
        };
    }
    let mut diff = TableDiff {
        table: plan.name.clone(),
        postgres_table: crate::ident::pg_name(&plan.name),
        sqlite_rows: sqlite_sums.iter().map(|b| b.rows).sum(),
        postgres_rows: postgres_sums.iter().map(|b| b.rows).sum(),
        pending: known.pending.len() as u64,
        ..TableDiff::default()
    };
    let differing: Vec<i64> = (0..buckets as usize).filter(|&b| sqlite_sums[b] != postgres_sums[b]).map(|b| b as i64).collect();
    if !differing.is_empty() {
        drill_down(conn, client, sql, plan, buckets, &differing, known, &mut diff).await?;
    }
    Ok(diff)
}

/// Reads the rows of differing buckets on both sides and classifies each differing key.
#[allow(clippy::too_many_arguments)]
async fn drill_down(
    conn: &Connection,
    client: &Client,
    sql: &PgSql,
    plan: &TablePlan,
    buckets: u64,
    differing: &[i64],
    known: &Known,
    diff: &mut TableDiff,
) -> Result<()> {
    let mut postgres: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
    let bucket_count = buckets as i64;
    for row in client.query(sql.rows_in_buckets.as_str(), &sql.params(&[&bucket_count, &differing])).await? {
        postgres.insert(row.get(0), row.get(1));
    }
    let wanted: HashSet<u32> = differing.iter().map(|b| *b as u32).collect();
    let key_indexes = plan.key_indexes();
    scan_sqlite(conn, plan, buckets, |bucket, key, row, values| {
        if !wanted.contains(&bucket) {
            return;
        }
        let kind = match postgres.remove(key) {
            Some(other) if other == row => return,
            Some(_) => DiffKind::Differing,
            None => DiffKind::Missing,
        };
        if known.pending.contains(key) {
            return;
        }
        let key_values: Vec<SqlValue> = key_indexes.iter().map(|i| values[*i].clone()).collect();
        if known.is_reject(&key_values) {
            diff.known_rejects += 1;
        } else {
            diff.record(kind, key_values);
        }
    })?;
    for key in postgres.into_keys().filter(|k| !known.pending.contains(k)) {
        diff.record(DiffKind::Extra, decode_key(plan, &key)?);
    }
    Ok(())
}

/// A bucket's row count and the sum of its rows' 64-bit hashes (order-free, so both sides may scan in any order).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct BucketSum {
    rows: u64,
    hash_sum: i128,
}

impl BucketSum {
    fn add(&mut self, row: &[u8]) {
        self.rows += 1;
        self.hash_sum += row_hash(row) as i128;
    }
}

/// Calls `each(bucket, key fields, row fields, values)` for every SQLite row, in the open read transaction.
fn scan_sqlite(
    conn: &Connection,
    plan: &TablePlan,
    buckets: u64,
    mut each: impl FnMut(u32, &[u8], &[u8], &[SqlValue]),
) -> Result<()> {
    let mut stmt = conn.prepare(&format!("SELECT {} FROM {} AS t", plan.select_list("t"), quote(&plan.name)))?;
    let mut rows = stmt.query([])?;
    let key_indexes = plan.key_indexes();
    let (mut values, mut row_fields, mut key_fields) = (Vec::new(), Vec::new(), Vec::new());
    while let Some(row) = rows.next()? {
        read_values(row, 0, plan.columns.len(), &mut values)?;
        row_fields.clear();
        key_fields.clear();
        for (value, column) in values.iter().zip(&plan.columns) {
            push_field(value, column.pg_type, &mut row_fields);
        }
        for index in &key_indexes {
            push_field(&values[*index], plan.columns[*index].pg_type, &mut key_fields);
        }
        each(bucket_of(&key_fields, buckets), &key_fields, &row_fields, &values);
    }
    Ok(())
}

/// Appends a value as a binary COPY field (length, then PostgreSQL's binary form). The encoder accepts a value only
/// as itself or in a documented mixed form (a number in a text column), so kinds are compared, not only bytes:
/// integer 1, text '1' and blob x'31' differ. A value its column cannot hold so is written after a length
/// PostgreSQL never sends (-2): it never matches, so its row shows up as a difference (or a known reject).
fn push_field(value: &SqlValue, pg_type: crate::mapping::types::PgType, out: &mut Vec<u8>) {
    if write_field(value, pg_type, out).is_err() {
        out.extend_from_slice(&(-2i32).to_be_bytes());
        out.extend_from_slice(value.storage_class().as_bytes());
        out.extend_from_slice(&value.raw_bytes());
    }
}

fn key_fields(plan: &TablePlan, key: &[SqlValue]) -> Vec<u8> {
    let mut out = Vec::new();
    for (value, column) in key.iter().zip(plan.key_columns()) {
        push_field(value, column.pg_type, &mut out);
    }
    out
}

/// The key values of fields read from PostgreSQL.
fn decode_key(plan: &TablePlan, mut fields: &[u8]) -> Result<Vec<SqlValue>> {
    let damaged = || Error::new(ErrorKind::PgQuery, format!("unreadable key fields from table {:?}", plan.name));
    let mut key = Vec::new();
    for column in plan.key_columns() {
        let (length, rest) = fields.split_first_chunk::<4>().ok_or_else(damaged)?;
        let length = i32::from_be_bytes(*length);
        if length < 0 {
            key.push(SqlValue::Null);
            fields = rest;
            continue;
        }
        let (bytes, rest) = rest.split_at_checked(length as usize).ok_or_else(damaged)?;
        key.push(decode_binary(bytes, column.pg_type).ok_or_else(damaged)?);
        fields = rest;
    }
    Ok(key)
}

/// The first 32 bits of the key's MD5, modulo the bucket count: what `PgSql` computes in PostgreSQL.
fn bucket_of(key: &[u8], buckets: u64) -> u32 {
    let digest = Md5::digest(key);
    (u64::from(u32::from_be_bytes(digest[..4].try_into().expect("four bytes"))) % buckets) as u32
}

/// The first 64 bits of the row's MD5, as a signed integer: what `PgSql` computes in PostgreSQL.
fn row_hash(row: &[u8]) -> i64 {
    i64::from_be_bytes(Md5::digest(row)[..8].try_into().expect("eight bytes"))
}

fn key_json(key: &[SqlValue]) -> serde_json::Value {
    serde_json::Value::Array(key.iter().map(SqlValue::to_json).collect())
}

/// The PostgreSQL side of the comparison, for one table.
struct PgSql {
    /// `$1` = bucket count (`$2` = the source) → (bucket, rows, hash sum as text).
    bucket_sums: String,
    /// `$1` = bucket count, `$2` = buckets (`$3` = the source) → (key fields, row fields).
    rows_in_buckets: String,
    /// The source whose rows of a shared table are compared; `None` for a table of one source.
    source: Option<String>,
}

impl PgSql {
    /// The queries for `plan` in `schema`; in a shared table, only the rows of source `source_id`, named by the
    /// parameter after the queries' own.
    fn new((schema, layout): (&str, Layout), plan: &TablePlan, source_id: &str) -> PgSql {
        let field = |name: &str, send: &str| {
            let sent = format!("{send}({})", quote(name));
            format!("coalesce(int4send(octet_length({sent})) || {sent}, decode('ffffffff', 'hex'))")
        };
        let row = plan.columns.iter().map(|c| field(&c.pg_name, c.pg_type.send_function())).collect::<Vec<_>>().join(" || ");
        let key = plan.key_columns().map(|c| field(&c.pg_name, c.pg_type.send_function())).collect::<Vec<_>>().join(" || ");
        let fields = |param: usize| {
            let own = layout.this_source("", param);
            format!("SELECT {key} AS k, {row} AS r FROM {} WHERE true{own}", qualified(schema, &plan.name))
        };
        let bucket = "(('x' || left(md5(s.k), 8))::bit(32)::bigint % $1)";
        PgSql {
            bucket_sums: format!(
                "SELECT {bucket}, count(*), coalesce(sum(('x' || left(md5(s.r), 16))::bit(64)::bigint), 0)::text FROM ({}) AS s GROUP BY 1",
                fields(2)
            ),
            rows_in_buckets: format!("SELECT s.k, s.r FROM ({}) AS s WHERE {bucket} = ANY($2)", fields(3)),
            source: layout.shares_tables().then(|| source_id.to_string()),
        }
    }

    /// A query's own parameters, then the source's when the table is shared.
    fn params<'a>(&'a self, own: &[&'a (dyn ToSql + Sync)]) -> Vec<&'a (dyn ToSql + Sync)> {
        own.iter().copied().chain(self.source.as_ref().map(|s| s as &(dyn ToSql + Sync))).collect()
    }
}

/// Sends every difference of `report` through the normal apply path (see `stream::reapply`).
pub async fn repair(options: &SnapshotOptions, report: &VerifyReport) -> Result<u64> {
    let conn = open(&options.sqlite, Access::ReadOnly)?;
    let capture = capture::require_state(&conn, &options.sqlite)?;
    drop(conn);
    let keys = report
        .tables
        .iter()
        .filter(|d| !d.drifted_keys.is_empty())
        .map(|diff| (capture.table(&diff.table).expect("verified tables are captured").id, diff.drifted_keys.clone()))
        .collect();
    crate::stream::reapply(options, &capture.source_id, keys).await
}
