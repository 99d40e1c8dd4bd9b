//! Table scans: what each column holds (one `typeof` pass), key checks, rowid ranges, and reading rows.

use rusqlite::Connection;

use crate::error::Result;
use crate::ident::quote;
use crate::sqlite::introspect::Table;
use crate::types::{Affinity, ColumnStats, SqlValue};

/// Largest finite double: anything above it is an infinity.
const MAX_DOUBLE: &str = "1.7976931348623157e308";

/// Counts, for every column of `table`, the values of each storage class and the shapes the mapping cares about.
pub fn column_stats(conn: &Connection, table: &Table) -> Result<Vec<ColumnStats>> {
    const PER_COLUMN: usize = 9;
    let mut parts = Vec::with_capacity(table.columns.len() * PER_COLUMN);
    for column in &table.columns {
        let c = quote(&column.name);
        let is_text = format!("typeof({c}) = 'text' AND {c} >= '0001'");
        parts.extend([
            format!("count({c})"),
            format!("total(typeof({c}) = 'integer')"),
            format!("total(typeof({c}) = 'real')"),
            format!("total(typeof({c}) = 'blob')"),
            format!("total(typeof({c}) = 'integer' AND {c} NOT IN (0, 1))"),
            match Affinity::of_declared(&column.declared_type) {
                Affinity::Real => "0".to_string(),
                _ => format!("total(typeof({c}) = 'real' AND ({c} > {MAX_DOUBLE} OR {c} < -{MAX_DOUBLE}))"),
            },
        ]);
        if declares_time(&column.declared_type) {
            parts.extend([
                format!("total({is_text} AND datetime({c}) IS {c})"),
                format!("total({is_text} AND strftime('%Y-%m-%d %H:%M:%f', {c}) IS {c})"),
                format!("total({is_text} AND date({c}) IS {c})"),
            ]);
        } else {
            parts.extend(["0".to_string(), "0".to_string(), "0".to_string()]);
        }
    }
    if parts.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!("SELECT {} FROM {}", parts.join(", "), quote(&table.name));
    conn.query_row(&sql, [], |row| {
        (0..table.columns.len())
            .map(|i| {
                let at = |k: usize| -> rusqlite::Result<u64> { Ok(row.get::<_, f64>(i * PER_COLUMN + k)? as u64) };
                let non_null = at(0)?;
                let (integers, reals, blobs) = (at(1)?, at(2)?, at(3)?);
                Ok(ColumnStats {
                    integers,
                    reals,
                    blobs,
                    texts: non_null - integers - reals - blobs,
                    non_boolean_integers: at(4)?,
                    special_reals: at(5)?,
                    timestamp_seconds_texts: at(6)?,
                    timestamp_millis_texts: at(7)?,
                    date_texts: at(8)?,
                })
            })
            .collect()
    })
    .map_err(Into::into)
}

fn declares_time(declared: &str) -> bool {
    let upper = declared.to_ascii_uppercase();
    upper.contains("DATE") || upper.contains("TIME")
}

/// Whether any row holds NULL in a declared primary-key column (legal in rowid tables).
pub fn primary_key_has_nulls(conn: &Connection, table: &Table) -> Result<bool> {
    if table.primary_key.is_empty() || table.without_rowid || table.rowid_alias().is_some() {
        return Ok(false);
    }
    let condition: Vec<String> = table.primary_key.iter().map(|c| format!("{} IS NULL", quote(c))).collect();
    let sql = format!("SELECT EXISTS (SELECT 1 FROM {} WHERE {})", quote(&table.name), condition.join(" OR "));
    Ok(conn.query_row(&sql, [], |row| row.get(0))?)
}

/// The smallest and largest rowid, or `None` for an empty table.
pub fn rowid_bounds(conn: &Connection, table: &str, rowid_name: &str) -> Result<Option<(i64, i64)>> {
    let sql = format!("SELECT min({rowid_name}), max({rowid_name}) FROM {}", quote(table));
    let (low, high): (Option<i64>, Option<i64>) = conn.query_row(&sql, [], |row| Ok((row.get(0)?, row.get(1)?)))?;
    Ok(low.zip(high))
}

/// Copies the values of one result row into `out`, starting at column `from`.
pub fn read_values(row: &rusqlite::Row<'_>, from: usize, count: usize, out: &mut Vec<SqlValue>) -> rusqlite::Result<()> {
    out.clear();
    for i in from..from + count {
        out.push(SqlValue::from_ref(row.get_ref(i)?));
    }
    Ok(())
}
