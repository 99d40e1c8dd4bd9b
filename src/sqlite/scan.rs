//! Table scans: what each column holds (one `typeof` pass), key checks, rowid ranges, and reading rows.

use rusqlite::Connection;

use crate::error::Result;
use crate::ident::quote;
use crate::mapping::types::{ColumnStats, SqlValue, ValueChecks};
use crate::sqlite::introspect::Table;

/// Counts, for every column of `table` (or of the rows in an inclusive rowid range), the values of each storage
/// class and the shapes the mapping cares about. One pass, in Rust: SQLite's aggregate functions cost far more.
pub fn column_stats(conn: &Connection, table: &Table, rowids: Option<(i64, i64)>) -> Result<(u64, Vec<ColumnStats>)> {
    let columns: Vec<String> = table.columns.iter().map(|c| quote(&c.name)).collect();
    let checks: Vec<ValueChecks> = table.columns.iter().map(|c| ValueChecks::for_declared(&c.declared_type)).collect();
    let mut stats = vec![ColumnStats::default(); columns.len()];
    if columns.is_empty() {
        return Ok((0, stats));
    }
    let (range, bounds) = rowid_filter(table.rowid_name(), rowids);
    let mut stmt = conn.prepare(&format!("SELECT {} FROM {} AS t{range}", columns.join(", "), quote(&table.name)))?;
    let mut rows = stmt.query(rusqlite::params_from_iter(bounds))?;
    let mut count = 0u64;
    while let Some(row) = rows.next()? {
        count += 1;
        for (i, column) in stats.iter_mut().enumerate() {
            column.observe(row.get_ref(i)?, &checks[i]);
        }
    }
    Ok((count, stats))
}

/// What one column of a table stores now (in the open read transaction), for a column without a declared kind
/// whose type follows its values.
pub fn column_stats_of(conn: &Connection, table: &str, column: &str) -> Result<ColumnStats> {
    let mut stmt = conn.prepare(&format!("SELECT {} FROM {}", quote(column), quote(table)))?;
    let mut rows = stmt.query([])?;
    let mut stats = ColumnStats::default();
    while let Some(row) = rows.next()? {
        stats.observe(row.get_ref(0)?, &ValueChecks::default());
    }
    Ok(stats)
}

/// The `WHERE` clause (on a table aliased `t`) and its parameters that limit a scan to an inclusive rowid range;
/// nothing for the whole table or a WITHOUT ROWID table.
pub fn rowid_filter(rowid_name: Option<&str>, rowids: Option<(i64, i64)>) -> (String, Vec<i64>) {
    match (rowid_name, rowids) {
        (Some(rowid), Some((low, high))) => (format!(" WHERE t.{rowid} BETWEEN ?1 AND ?2"), vec![low, high]),
        _ => (String::new(), Vec::new()),
    }
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

/// Splits a table into at most `parts` inclusive rowid ranges of similar width, or one `None` (the whole
/// table) for WITHOUT ROWID tables, empty tables and `parts <= 1`.
pub fn rowid_ranges(conn: &Connection, table: &Table, parts: u64) -> Result<Vec<Option<(i64, i64)>>> {
    let Some(rowid) = table.rowid_name().filter(|_| parts > 1) else { return Ok(vec![None]) };
    let sql = format!("SELECT min({rowid}), max({rowid}) FROM {}", quote(&table.name));
    let (low, high): (Option<i64>, Option<i64>) = conn.query_row(&sql, [], |row| Ok((row.get(0)?, row.get(1)?)))?;
    let Some((low, high)) = low.zip(high) else { return Ok(vec![None]) };
    let step = ((i128::from(high) - i128::from(low)) / i128::from(parts) + 1) as i64;
    let mut ranges = Vec::new();
    let mut start = low;
    loop {
        let end = start.saturating_add(step - 1).min(high);
        ranges.push(Some((start, end)));
        if end == high {
            return Ok(ranges);
        }
        start = end + 1;
    }
}

/// Copies the values of one result row into `out`, starting at column `from`.
pub fn read_values(row: &rusqlite::Row<'_>, from: usize, count: usize, out: &mut Vec<SqlValue>) -> rusqlite::Result<()> {
    out.clear();
    for i in from..from + count {
        out.push(SqlValue::from_ref(row.get_ref(i)?));
    }
    Ok(())
}
