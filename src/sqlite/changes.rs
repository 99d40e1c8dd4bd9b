//! Reads what changed: for each key logged in a range of the change log, the row as it is now, or the fact that
//! it is gone. Reading current rows rather than row images collapses repeated changes to one key and always yields
//! a state the SQLite database really had at the read snapshot.

use rusqlite::Connection;

use crate::error::Result;
use crate::ident::quote;
use crate::mapping::table::TablePlan;
use crate::mapping::types::SqlValue;
use crate::sqlite::capture::CHANGES_TABLE;
use crate::sqlite::scan::read_values;

/// A half-open range of the change log: entries with `after < seq <= up_to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeqRange {
    pub after: i64,
    pub up_to: i64,
}

/// One changed key, resolved against the table.
#[derive(Debug)]
pub enum Change<'a> {
    /// The row exists: its full current values, in plan column order.
    Present(&'a [SqlValue]),
    /// No row has this key any more: the key values, in key order.
    Gone(&'a [SqlValue]),
}

/// Registry ids of the tables with entries in `range`.
pub fn changed_tables(conn: &Connection, range: SeqRange) -> Result<Vec<i64>> {
    let mut stmt = conn.prepare_cached(&format!("SELECT DISTINCT tbl FROM {CHANGES_TABLE} WHERE seq > ?1 AND seq <= ?2"))?;
    let ids = stmt.query_map([range.after, range.up_to], |r| r.get(0))?.collect::<Result<_, _>>()?;
    Ok(ids)
}

/// Calls `on_change` once per distinct key of table `table_id` logged in `range`.
pub fn read_changes(
    conn: &Connection,
    plan: &TablePlan,
    table_id: i64,
    range: SeqRange,
    mut on_change: impl FnMut(Change<'_>) -> Result<()>,
) -> Result<()> {
    let key_exprs = plan.key_select_list("t");
    let width = key_exprs.len();
    let slots: Vec<String> = (0..width).map(|i| format!("k{i}")).collect();
    let join: Vec<String> = key_exprs.iter().zip(&slots).map(|(expr, slot)| format!("{expr} = c.{slot}")).collect();
    let sql = format!(
        "SELECT {}, {} FROM (SELECT DISTINCT {} FROM {CHANGES_TABLE} WHERE seq > ?1 AND seq <= ?2 AND tbl = ?3) AS c \
         LEFT JOIN {} AS t ON {}",
        slots.iter().map(|s| format!("c.{s}")).collect::<Vec<_>>().join(", "),
        plan.select_list("t"),
        slots.join(", "),
        quote(&plan.name),
        join.join(" AND "),
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query([range.after, range.up_to, table_id])?;
    let key_indexes = plan.key_indexes();
    let (mut logged_key, mut row) = (Vec::with_capacity(width), Vec::with_capacity(plan.columns.len()));
    while let Some(result) = rows.next()? {
        read_values(result, 0, width, &mut logged_key)?;
        read_values(result, width, plan.columns.len(), &mut row)?;
        // A join under a NOCASE (or numeric) comparison can find a row whose key is not byte-for-byte the logged
        // one; then the logged key itself is gone, and the row's own key was logged separately.
        let found_same_key = key_indexes.iter().zip(&logged_key).all(|(i, k)| row[*i] != SqlValue::Null && &row[*i] == k);
        if found_same_key {
            on_change(Change::Present(&row))?;
        } else {
            on_change(Change::Gone(&logged_key))?;
        }
    }
    Ok(())
}

/// Calls `on_change` with every row of the table, for copying a table again inside a batch.
pub fn read_all(conn: &Connection, plan: &TablePlan, mut on_change: impl FnMut(Change<'_>) -> Result<()>) -> Result<()> {
    let mut stmt = conn.prepare(&format!("SELECT {} FROM {} AS t", plan.select_list("t"), quote(&plan.name)))?;
    let mut rows = stmt.query([])?;
    let mut row = Vec::with_capacity(plan.columns.len());
    while let Some(result) = rows.next()? {
        read_values(result, 0, plan.columns.len(), &mut row)?;
        on_change(Change::Present(&row))?;
    }
    Ok(())
}

/// The distinct keys of table `table_id` logged after `applied_seq`: rows with changes PostgreSQL does not have yet.
pub fn pending_keys(conn: &Connection, plan: &TablePlan, table_id: i64, applied_seq: i64) -> Result<Vec<Vec<SqlValue>>> {
    let width = plan.key_indexes().len();
    let slots: Vec<String> = (0..width).map(|i| format!("k{i}")).collect();
    let sql = format!("SELECT DISTINCT {} FROM {CHANGES_TABLE} WHERE seq > ?1 AND tbl = ?2", slots.join(", "));
    let mut stmt = conn.prepare(&sql)?;
    let mut rows = stmt.query([applied_seq, table_id])?;
    let mut keys = Vec::new();
    while let Some(row) = rows.next()? {
        let mut key = Vec::with_capacity(width);
        read_values(row, 0, width, &mut key)?;
        keys.push(key);
    }
    Ok(keys)
}
