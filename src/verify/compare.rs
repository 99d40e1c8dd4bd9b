//! Compares one table inside the open snapshots: PostgreSQL only streams the table by binary COPY, hashed here on
//! the async side, while a blocking thread scans and hashes SQLite; only buckets whose row count or hash sum
//! differ are read again, row by row, on both sides.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use futures_util::TryStreamExt;
use rusqlite::Connection;
use tokio_postgres::types::{FromSql, Type};
use tokio_postgres::Client;

use super::fields::{bucket_count, bucket_of, decode_key, push_field, BucketSum, CopyRecords};
use super::{DiffKind, Known, TableDiff};
use crate::error::{Error, ErrorKind, Result};
use crate::ident::{qualified, quote};
use crate::mapping::layout::Layout;
use crate::mapping::table::TablePlan;
use crate::mapping::types::SqlValue;
use crate::pg::copy::CopyEncoder;
use crate::sqlite::scan::read_values;

/// The SQLite connection holding verify's read transaction, lent to blocking threads one scan at a time.
pub(super) type Sqlite = Arc<Mutex<Connection>>;

/// Where one table is compared.
pub(super) struct Compared<'a> {
    pub(super) client: &'a Client,
    pub(super) sqlite: &'a Sqlite,
    pub(super) plan: &'a TablePlan,
    /// The plan's columns, of this source's rows (`$1`) for a shared table.
    select: String,
    /// The source whose rows of a shared table are compared; `None` for a table of one source.
    source: Option<&'a str>,
}

impl<'a> Compared<'a> {
    /// A table in `schema`; in a shared table, only the rows of source `source_id`.
    pub(super) fn new(
        client: &'a Client,
        sqlite: &'a Sqlite,
        plan: &'a TablePlan,
        (schema, layout): (&str, Layout),
        source_id: &'a str,
    ) -> Compared<'a> {
        let columns = plan.columns.iter().map(|c| quote(&c.pg_name)).collect::<Vec<_>>().join(", ");
        let own = layout.this_source("", 1);
        let select = format!("SELECT {columns} FROM {} WHERE true{own}", qualified(schema, &plan.name));
        Compared { client, sqlite, plan, select, source: layout.shares_tables().then_some(source_id) }
    }

    pub(super) async fn compare(&self, known: Arc<Known>) -> Result<TableDiff> {
        let name = self.plan.name.clone();
        let rows: i64 = on_sqlite(self.sqlite, move |conn| {
            Ok(conn.query_row(&format!("SELECT count(*) FROM {}", quote(&name)), [], |r| r.get(0))?)
        })
        .await?;
        let buckets = bucket_count(rows as u64);
        let plan = self.plan.clone();
        let sqlite_side = on_sqlite(self.sqlite, move |conn| {
            let mut sums = vec![BucketSum::default(); buckets as usize];
            scan_sqlite(conn, &plan, buckets, |bucket, _, row, _| sums[bucket as usize].add(row))?;
            Ok(sums)
        });
        let postgres_side = async {
            let mut sums = vec![BucketSum::default(); buckets as usize];
            self.stream_postgres(|key, row| sums[bucket_of(key, buckets) as usize].add(row)).await?;
            Ok::<_, Error>(sums)
        };
        let (sqlite_sums, postgres_sums) = tokio::join!(sqlite_side, postgres_side);
        let (sqlite_sums, postgres_sums) = (sqlite_sums?, postgres_sums?);
        let mut diff = TableDiff {
            table: self.plan.name.clone(),
            postgres_table: crate::ident::pg_name(&self.plan.name),
            sqlite_rows: BucketSum::rows(&sqlite_sums),
            postgres_rows: BucketSum::rows(&postgres_sums),
            pending: known.pending.len() as u64,
            ..TableDiff::default()
        };
        let differing: HashSet<u32> =
            (0..buckets as u32).filter(|&b| sqlite_sums[b as usize] != postgres_sums[b as usize]).collect();
        if !differing.is_empty() {
            self.drill_down(buckets, differing, known, &mut diff).await?;
        }
        Ok(diff)
    }

    /// Reads the rows of differing buckets on both sides and classifies each differing key.
    async fn drill_down(&self, buckets: u64, differing: HashSet<u32>, known: Arc<Known>, diff: &mut TableDiff) -> Result<()> {
        let mut postgres: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
        self.stream_postgres(|key, row| {
            if differing.contains(&bucket_of(key, buckets)) {
                postgres.insert(key.to_vec(), row.to_vec());
            }
        })
        .await?;
        let (plan, pending) = (self.plan.clone(), Arc::clone(&known));
        let (found, extra) = on_sqlite(self.sqlite, move |conn| {
            let mut found = Vec::new();
            scan_sqlite(conn, &plan, buckets, |bucket, key, row, values| {
                if !differing.contains(&bucket) {
                    return;
                }
                let kind = match postgres.remove(key) {
                    Some(other) if other == row => return,
                    Some(_) => DiffKind::Differing,
                    None => DiffKind::Missing,
                };
                if !pending.pending.contains(key) {
                    found.push((kind, plan.key_of(values), !CopyEncoder::fits(&plan, values)));
                }
            })?;
            Ok((found, postgres))
        })
        .await?;
        for (kind, key, misfits) in found {
            // A recorded reject excuses the row only while it still does not fit: once its column was widened, the
            // row belongs in PostgreSQL, and its absence is a difference to repair.
            match misfits && known.is_reject(&key) {
                true => diff.known_rejects += 1,
                false => diff.record(kind, key),
            }
        }
        for key in extra.into_keys().filter(|k| !known.pending.contains(k)) {
            diff.record(DiffKind::Extra, decode_key(self.plan, &key)?);
        }
        Ok(())
    }

    /// Calls `each(key fields, row fields)` for every PostgreSQL row, in the open snapshot.
    async fn stream_postgres(&self, each: impl FnMut(&[u8], &[u8])) -> Result<()> {
        match self.source {
            None => self.stream_copy(each).await,
            Some(source) => self.stream_rows(source, each).await,
        }
    }

    /// The table by binary COPY: PostgreSQL only sends, in the form the fields are compared in.
    async fn stream_copy(&self, mut each: impl FnMut(&[u8], &[u8])) -> Result<()> {
        let copy = format!("COPY ({}) TO STDOUT (FORMAT binary)", self.select);
        let stream = self.client.copy_out(copy.as_str()).await?;
        futures_util::pin_mut!(stream);
        let mut records = CopyRecords::new(self.plan);
        while let Some(chunk) = stream.try_next().await? {
            records.feed(&chunk, &mut each)?;
        }
        records.finish()
    }

    /// A source's rows of a shared table, as binary result rows: COPY takes no parameters, and a session setting
    /// naming the source would not reach the worker nodes of a distributed (Citus) table.
    async fn stream_rows(&self, source: &str, mut each: impl FnMut(&[u8], &[u8])) -> Result<()> {
        let rows = self.client.query_raw(self.select.as_str(), [source]).await?;
        futures_util::pin_mut!(rows);
        let key_indexes = self.plan.key_indexes();
        let (mut key, mut fields) = (Vec::new(), Vec::new());
        while let Some(row) = rows.try_next().await? {
            let value = |i: usize| row.get::<_, SentBytes>(i).0;
            fields.clear();
            key.clear();
            (0..row.len()).for_each(|i| push_sent(value(i), &mut fields));
            key_indexes.iter().for_each(|&i| push_sent(value(i), &mut key));
            each(&key, &fields);
        }
        Ok(())
    }
}

/// A value as PostgreSQL sent it in binary form (its type's send form), whatever its type.
struct SentBytes<'a>(Option<&'a [u8]>);

impl<'a> FromSql<'a> for SentBytes<'a> {
    fn from_sql(_: &Type, raw: &'a [u8]) -> std::result::Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(SentBytes(Some(raw)))
    }

    fn from_sql_null(_: &Type) -> std::result::Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(SentBytes(None))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// Appends a sent value as the binary COPY field it would be.
fn push_sent(value: Option<&[u8]>, out: &mut Vec<u8>) {
    match value {
        Some(bytes) => {
            out.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
            out.extend_from_slice(bytes);
        }
        None => out.extend_from_slice(&(-1i32).to_be_bytes()),
    }
}

/// The SQLite connection, for work between scans.
pub(super) fn lock(sqlite: &Sqlite) -> MutexGuard<'_, Connection> {
    sqlite.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs `work` on the SQLite connection on a blocking thread, so the async side streams PostgreSQL meanwhile.
async fn on_sqlite<T: Send + 'static>(
    sqlite: &Sqlite,
    work: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
) -> Result<T> {
    let sqlite = Arc::clone(sqlite);
    let done = tokio::task::spawn_blocking(move || work(&lock(&sqlite))).await;
    done.map_err(|err| match err.try_into_panic() {
        Ok(panic) => std::panic::resume_unwind(panic),
        Err(err) => Error::new(ErrorKind::Sqlite, format!("the SQLite scan stopped: {err}")),
    })?
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
