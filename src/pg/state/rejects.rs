//! `lite2pg.rejects`: the values PostgreSQL could not hold, by source, table and row key.

use tokio_postgres::GenericClient;

use std::collections::{HashMap, HashSet};

use crate::error::{Error, ErrorKind, Result};
use crate::mapping::types::SqlValue;

/// A value PostgreSQL could not hold, with the row's key and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Reject {
    pub table: String,
    pub key: Vec<SqlValue>,
    pub column: String,
    pub reason: String,
    pub value: SqlValue,
}

impl Reject {
    /// The reject of a row of `plan`'s table whose key holds NULL, which no PostgreSQL key can hold; `None` when
    /// its key holds none.
    pub fn of_null_key(plan: &crate::mapping::table::TablePlan, values: &[SqlValue]) -> Option<Reject> {
        if !plan.key_holds_null(values) {
            return None;
        }
        let column = plan.key_indexes().into_iter().find(|i| values[*i] == SqlValue::Null)?;
        Some(Reject {
            table: plan.name.clone(),
            key: plan.key_of(values),
            column: plan.columns[column].name.clone(),
            reason: crate::pg::copy::NULL_IN_KEY.to_string(),
            value: SqlValue::Null,
        })
    }

    /// The error of the `stop` policy: which row, which value, and the ways on.
    pub fn stop_error(&self) -> Error {
        let key = serde_json::Value::Array(self.key.iter().map(SqlValue::to_json).collect());
        Error::new(
            ErrorKind::Schema,
            format!(
                "table {:?}, row with key {key}: the {} value of column {:?} does not fit PostgreSQL ({})",
                self.table,
                self.value.storage_class(),
                self.column,
                self.reason
            ),
        )
        .with_hint(format!(
            "nothing of it was applied; fix the value in SQLite, or set on_misfit = \"widen\" or \"reject\" for the column \
             ([table.{:?}.columns.{:?}] in lite2pg.toml, or --on-misfit) and start lite2pg again",
            self.table, self.column
        ))
    }
}

/// Stores rejects, replacing an older reject of the same row.
pub async fn store_rejects(client: &impl GenericClient, source_id: &str, rejects: &[Reject]) -> Result<()> {
    let statement = client
        .prepare(
            "INSERT INTO lite2pg.rejects (source_id, table_name, key, column_name, reason, raw, storage_class)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (source_id, table_name, key) DO UPDATE SET column_name = excluded.column_name,
               reason = excluded.reason, raw = excluded.raw, storage_class = excluded.storage_class, rejected_at = excluded.rejected_at",
        )
        .await?;
    for reject in rejects {
        let key = serde_json::Value::Array(reject.key.iter().map(SqlValue::to_json).collect());
        client
            .execute(
                &statement,
                &[
                    &source_id,
                    &reject.table,
                    &key,
                    &reject.column,
                    &reject.reason,
                    &reject.value.raw_bytes(),
                    &reject.value.storage_class(),
                ],
            )
            .await?;
    }
    Ok(())
}

/// Forgets the rejects of rows of `table` that are gone from SQLite, by their keys.
pub async fn forget_rejects(client: &impl GenericClient, source_id: &str, table: &str, keys: &[Vec<SqlValue>]) -> Result<()> {
    let keys: Vec<serde_json::Value> =
        keys.iter().map(|key| serde_json::Value::Array(key.iter().map(SqlValue::to_json).collect())).collect();
    client
        .execute(
            "DELETE FROM lite2pg.rejects WHERE source_id = $1 AND table_name = $2 AND key = ANY($3)",
            &[&source_id, &table, &keys],
        )
        .await?;
    Ok(())
}

/// A row of `lite2pg.rejects` as stored, for listing.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StoredReject {
    pub table: String,
    /// JSON array of the key values.
    pub key: String,
    pub column: String,
    pub reason: String,
    pub storage_class: String,
    /// `\x…` hex of the first 16 raw bytes, with the full length when longer.
    pub raw: String,
    pub rejected_at: String,
}

/// A source's rejects, by table and time.
pub async fn rejects(client: &impl GenericClient, source_id: &str) -> Result<Vec<StoredReject>> {
    let rows = client
        .query(
            "SELECT table_name, key::text, column_name, reason, storage_class, raw, rejected_at::text
             FROM lite2pg.rejects WHERE source_id = $1 ORDER BY table_name, rejected_at",
            &[&source_id],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let raw = r.get::<_, Option<Vec<u8>>>(5).map_or_else(String::new, |bytes| {
                let shown = format!("\\x{}", crate::mapping::types::hex(&bytes[..bytes.len().min(16)]));
                if bytes.len() > 16 {
                    format!("{shown}… ({} bytes)", bytes.len())
                } else {
                    shown
                }
            });
            StoredReject {
                table: r.get(0),
                key: r.get(1),
                column: r.get(2),
                reason: r.get(3),
                storage_class: r.get(4),
                raw,
                rejected_at: r.get(6),
            }
        })
        .collect())
}

/// How many of a source's values in `table` PostgreSQL could not hold.
pub async fn reject_count(client: &impl GenericClient, source_id: &str, table: &str) -> Result<u64> {
    let count: i64 = client
        .query_one("SELECT count(*) FROM lite2pg.rejects WHERE source_id = $1 AND table_name = $2", &[&source_id, &table])
        .await?
        .get(0);
    Ok(count as u64)
}

/// Whether a source has any rejects.
pub async fn has_rejects(client: &impl GenericClient, source_id: &str) -> Result<bool> {
    Ok(client.query_one("SELECT EXISTS (SELECT 1 FROM lite2pg.rejects WHERE source_id = $1)", &[&source_id]).await?.get(0))
}

/// A source's rejected row keys (JSON text, as stored), by table.
pub async fn rejected_keys(client: &impl GenericClient, source_id: &str) -> Result<HashMap<String, HashSet<String>>> {
    let mut keys: HashMap<String, HashSet<String>> = HashMap::new();
    for row in client.query("SELECT table_name, key FROM lite2pg.rejects WHERE source_id = $1", &[&source_id]).await? {
        keys.entry(row.get(0)).or_default().insert(row.get::<_, serde_json::Value>(1).to_string());
    }
    Ok(keys)
}
