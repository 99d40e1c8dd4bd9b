//! Verify: compare SQLite and PostgreSQL value by value, each value in PostgreSQL's binary form, so doubles are
//! compared by their bits and blobs by their bytes.

use std::collections::HashMap;

use bytes::BytesMut;
use futures_util::TryStreamExt;
use rusqlite::Connection;
use serde::Serialize;
use tokio_postgres::Client;

use crate::error::Result;
use crate::ident::{qualified, quote};
use crate::pg::copy::{decode_rows, Field};
use crate::schema::TablePlan;
use crate::sqlite::scan::read_values;
use crate::types::{encode_binary, SqlValue};

/// Most example keys reported per kind of difference.
const EXAMPLES: usize = 10;

/// How one table compares.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TableDiff {
    pub table: String,
    pub sqlite_rows: u64,
    pub postgres_rows: u64,
    /// In SQLite, not in PostgreSQL.
    pub missing: u64,
    /// In PostgreSQL, not in SQLite.
    pub extra: u64,
    /// In both with different values.
    pub differing: u64,
    /// Up to ten keys of differences, as JSON arrays.
    pub examples: Vec<String>,
}

impl TableDiff {
    /// Whether both sides hold the same rows.
    pub fn is_equal(&self) -> bool {
        self.missing == 0 && self.extra == 0 && self.differing == 0
    }
}

type Row = Vec<Field>;

/// Compares one table completely. SQLite is read in one transaction of `conn`; PostgreSQL with one COPY.
pub async fn compare_table(conn: &Connection, client: &Client, schema: &str, plan: &TablePlan) -> Result<TableDiff> {
    let sqlite_rows = sqlite_rows(conn, plan)?;
    let postgres_rows = postgres_rows(client, schema, plan).await?;
    let key_indexes = plan.key_indexes();
    let key_of = |row: &Row| -> Vec<Field> { key_indexes.iter().map(|i| row[*i].clone()).collect() };
    let mut by_key: HashMap<Vec<Field>, Row> = postgres_rows.into_iter().map(|row| (key_of(&row), row)).collect();
    let mut diff = TableDiff { table: plan.name.clone(), postgres_rows: by_key.len() as u64, ..TableDiff::default() };
    for (values, row) in sqlite_rows {
        diff.sqlite_rows += 1;
        let key = key_of(&row);
        let outcome = match by_key.remove(&key) {
            None => &mut diff.missing,
            Some(other) if other != row => &mut diff.differing,
            Some(_) => continue,
        };
        *outcome += 1;
        if diff.examples.len() < EXAMPLES {
            diff.examples
                .push(serde_json::Value::Array(plan.key_of(&values).iter().map(SqlValue::to_json).collect()).to_string());
        }
    }
    diff.extra = by_key.len() as u64;
    for key in by_key.keys().take(EXAMPLES.saturating_sub(diff.examples.len())) {
        diff.examples.push(format!("{key:?}"));
    }
    Ok(diff)
}

/// Every SQLite row with its values in PostgreSQL's binary form (a value PostgreSQL cannot hold stays raw and so
/// never matches).
fn sqlite_rows(conn: &Connection, plan: &TablePlan) -> Result<Vec<(Vec<SqlValue>, Row)>> {
    let sql = format!("SELECT {} FROM {} AS t", plan.select_list("t"), quote(&plan.name));
    let mut stmt = conn.prepare(&sql)?;
    let mut rows = stmt.query([])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let mut values = Vec::new();
        read_values(row, 0, plan.columns.len(), &mut values)?;
        let fields = values
            .iter()
            .zip(&plan.columns)
            .map(|(value, column)| {
                if *value == SqlValue::Null {
                    return None;
                }
                let mut bytes = Vec::new();
                match encode_binary(value, column.pg_type, &mut bytes) {
                    Ok(()) => Some(bytes),
                    Err(_) => Some(value.raw_bytes()),
                }
            })
            .collect();
        out.push((values, fields));
    }
    Ok(out)
}

async fn postgres_rows(client: &Client, schema: &str, plan: &TablePlan) -> Result<Vec<Row>> {
    let sql = format!("COPY (SELECT {} FROM {}) TO STDOUT (FORMAT binary)", plan.pg_column_list(), qualified(schema, &plan.name));
    let stream = client.copy_out(sql.as_str()).await?;
    let data: BytesMut = stream
        .try_fold(BytesMut::new(), |mut acc, chunk| async move {
            acc.extend_from_slice(&chunk);
            Ok(acc)
        })
        .await?;
    decode_rows(&data).map_err(|reason| crate::error::Error::new(crate::error::ErrorKind::PgQuery, reason))
}

/// Compares every captured table of a source with PostgreSQL, reading SQLite in one transaction.
pub async fn verify_source(sqlite: &std::path::Path, target: &crate::pg::PgTarget, schema: &str) -> Result<Vec<TableDiff>> {
    let conn = crate::sqlite::open(sqlite, crate::sqlite::Access::ReadOnly)?;
    let capture = crate::sqlite::capture::read_state(&conn)?.ok_or_else(|| {
        crate::error::Error::new(crate::error::ErrorKind::State, format!("{} has no lite2pg capture installed", sqlite.display()))
            .with_hint("run `lite2pg snapshot` or `lite2pg init` first")
    })?;
    let source_schema = crate::sqlite::introspect::read_schema(&conn)?;
    let client = target.connect().await?;
    conn.execute_batch("BEGIN")?;
    let mut diffs = Vec::new();
    for captured in &capture.tables {
        let Some(table) = source_schema.table(&captured.name) else {
            continue;
        };
        let plan = crate::pg::apply::existing_plan(&client, schema, table, &captured.key_columns).await?;
        diffs.push(compare_table(&conn, &client, schema, &plan).await?);
    }
    conn.execute_batch("COMMIT")?;
    Ok(diffs)
}
