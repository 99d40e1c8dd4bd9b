//! The change log as a queue: its newest position, what waits after a position and since when, appending keys
//! by hand (repair), and pruning applied entries in short write transactions.

use rusqlite::{Connection, Transaction, TransactionBehavior};

use super::triggers::key_expressions;
use super::{CapturedTable, CHANGES_TABLE, UNIX_EPOCH_JULIAN_DAY, WRITTEN_AT};
use crate::error::Result;
use crate::ident::quote;
use crate::mapping::types::SqlValue;
use crate::sqlite::introspect::{Table, OWN_PREFIX};

/// Rows deleted per write transaction when pruning, so the application's writers never wait long.
const PRUNE_CHUNK: i64 = 5000;
/// The most entries emptied from the log in one write transaction (about 50 ms here); a longer log is first
/// pruned in chunks down to this.
const EMPTY_AT_ONCE_MAX: i64 = 2_000_000;

/// The newest sequence number in the log (0 when it is empty).
pub fn newest_seq(conn: &Connection) -> Result<i64> {
    Ok(conn.query_row(&format!("SELECT coalesce(max(seq), 0) FROM {CHANGES_TABLE}"), [], |r| r.get(0))?)
}

/// The log entries after a position: how many, and the Unix time the oldest of them was written (`None` when
/// there are none, or the oldest predates format 2).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pending {
    pub entries: i64,
    pub oldest_written_at: Option<f64>,
}

impl Pending {
    /// Seconds since the oldest pending entry was written: 0 when nothing is pending.
    pub fn lag_seconds(&self) -> Option<f64> {
        if self.entries == 0 {
            return Some(0.0);
        }
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
        self.oldest_written_at.map(|at| (now - at).max(0.0))
    }
}

/// The entries after `applied_seq`.
pub fn pending(conn: &Connection, applied_seq: i64) -> Result<Pending> {
    let sql = format!(
        "SELECT count(*), (SELECT ({WRITTEN_AT} - {UNIX_EPOCH_JULIAN_DAY}) * 86400.0 FROM {CHANGES_TABLE} WHERE seq > ?1 ORDER BY seq LIMIT 1)
         FROM {CHANGES_TABLE} WHERE seq > ?1"
    );
    Ok(conn.query_row(&sql, [applied_seq], |r| Ok(Pending { entries: r.get(0)?, oldest_written_at: r.get(1)? }))?)
}

/// Appends an entry for each key of table `table_id`, as if each row had just changed, so the normal apply path
/// copies those rows again (how `verify --repair` mends differences). Returns the newest seq.
pub fn log_keys(conn: &mut Connection, table_id: i64, keys: &[Vec<SqlValue>]) -> Result<i64> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    for key in keys {
        let slots: String = (0..key.len()).map(|i| format!(", k{i}")).collect();
        let params: String = (0..key.len()).map(|i| format!(", ?{}", i + 2)).collect();
        let sql = format!("INSERT INTO {CHANGES_TABLE} (tbl, {WRITTEN_AT}{slots}) VALUES (?1, julianday('now'){params})");
        let values: Vec<&dyn rusqlite::ToSql> =
            std::iter::once(&table_id as &dyn rusqlite::ToSql).chain(key.iter().map(|v| v as &dyn rusqlite::ToSql)).collect();
        tx.prepare_cached(&sql)?.execute(values.as_slice())?;
    }
    let newest = newest_seq(&tx)?;
    tx.commit()?;
    Ok(newest)
}

/// The keys of every row of a captured table whose JSON form (as `lite2pg.rejects` stores keys) is in `wanted`.
pub fn keys_with_json(
    conn: &Connection,
    table: &Table,
    captured: &CapturedTable,
    wanted: &[serde_json::Value],
) -> Result<Vec<Vec<SqlValue>>> {
    scan_for_keys(conn, table, captured, wanted, None, |_| true)
}

/// `keys_with_json`, of the rows whose values (read in `plan`'s column order) `fit`.
pub fn fitting_rows_with_json(
    conn: &Connection,
    table: &Table,
    captured: &CapturedTable,
    plan: &crate::mapping::table::TablePlan,
    wanted: &[serde_json::Value],
    fit: impl Fn(&[SqlValue]) -> bool,
) -> Result<Vec<Vec<SqlValue>>> {
    scan_for_keys(conn, table, captured, wanted, Some(plan), fit)
}

/// One scan of the table for the keys in `wanted`; with `plan`, each found row's values are read too and `keep`
/// decides.
fn scan_for_keys(
    conn: &Connection,
    table: &Table,
    captured: &CapturedTable,
    wanted: &[serde_json::Value],
    plan: Option<&crate::mapping::table::TablePlan>,
    keep: impl Fn(&[SqlValue]) -> bool,
) -> Result<Vec<Vec<SqlValue>>> {
    let wanted: std::collections::HashSet<String> = wanted.iter().map(serde_json::Value::to_string).collect();
    let key = key_expressions(table, &captured.key_columns);
    let values_list = plan.map(|plan| format!(", {}", plan.select_list("t"))).unwrap_or_default();
    let sql = format!("SELECT {}{values_list} FROM {} AS t", key.join(", "), quote(&table.name));
    let mut stmt = conn.prepare(&sql)?;
    let mut rows = stmt.query([])?;
    let (mut found, mut values) = (Vec::new(), Vec::new());
    while let Some(row) = rows.next()? {
        let mut key_values = Vec::with_capacity(key.len());
        crate::sqlite::scan::read_values(row, 0, key.len(), &mut key_values)?;
        if !wanted.contains(&serde_json::Value::Array(key_values.iter().map(SqlValue::to_json).collect()).to_string()) {
            continue;
        }
        if let Some(plan) = plan {
            crate::sqlite::scan::read_values(row, key.len(), plan.columns.len(), &mut values)?;
        }
        if keep(&values) {
            found.push(key_values);
        }
    }
    Ok(found)
}

/// Deletes log entries below `applied_seq`. The entry at `applied_seq` itself stays, so the log's largest seq never
/// falls and SQLite never hands out a used seq again.
pub fn prune(conn: &Connection, applied_seq: i64) -> Result<u64> {
    // The bound is computed first so each DELETE is a short range scan, not a scan of the whole backlog.
    let oldest: Option<i64> = conn.query_row(&format!("SELECT min(seq) FROM {CHANGES_TABLE}"), [], |r| r.get(0))?;
    let Some(oldest) = oldest.filter(|oldest| *oldest < applied_seq) else { return Ok(0) };
    let few_kept = applied_seq - oldest > PRUNE_CHUNK && entries_from(conn, applied_seq)? <= PRUNE_CHUNK;
    let mut deleted = 0u64;
    let mut below = oldest;
    while below < applied_seq {
        if few_kept && applied_seq - below <= EMPTY_AT_ONCE_MAX {
            return Ok(deleted + empty_all_but_from(conn, applied_seq)?);
        }
        below = applied_seq.min(below.saturating_add(PRUNE_CHUNK));
        deleted += conn.execute(&format!("DELETE FROM {CHANGES_TABLE} WHERE seq < ?1"), [below])? as u64;
        crate::fail_point!("prune-midway");
    }
    Ok(deleted)
}

/// How many entries there are from `seq` on, counting no further than one past `PRUNE_CHUNK`.
fn entries_from(conn: &Connection, seq: i64) -> Result<i64> {
    let sql = format!("SELECT count(*) FROM (SELECT 1 FROM {CHANGES_TABLE} WHERE seq >= ?1 LIMIT ?2)");
    Ok(conn.query_row(&sql, [seq, PRUNE_CHUNK + 1], |r| r.get(0))?)
}

/// Empties the log but for the entries from `seq` on, which are set aside and put back as they were, in one short
/// write transaction. A DELETE without a condition frees the log's pages whole, where deleting a long backlog entry
/// by entry rewrites each of its pages: a million entries go in tens of milliseconds instead of half a second.
fn empty_all_but_from(conn: &Connection, seq: i64) -> Result<u64> {
    let kept = format!("temp.{OWN_PREFIX}kept");
    let tx = Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
    tx.execute_batch(&format!("DROP TABLE IF EXISTS {kept}"))?;
    tx.execute(&format!("CREATE TABLE {kept} AS SELECT * FROM main.{CHANGES_TABLE} WHERE seq >= ?1"), [seq])?;
    let all = tx.execute(&format!("DELETE FROM main.{CHANGES_TABLE}"), [])?;
    let put_back = tx.execute(&format!("INSERT INTO main.{CHANGES_TABLE} SELECT * FROM {kept}"), [])?;
    tx.execute_batch(&format!("DROP TABLE {kept}"))?;
    crate::fail_point!("prune-midway");
    tx.commit()?;
    Ok((all - put_back) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlite::capture::test_support::setup;

    #[test]
    fn prune_keeps_the_newest_entry_whether_it_deletes_in_chunks_or_empties_the_log() -> Result<()> {
        let (conn, _) = setup("CREATE TABLE t(id INTEGER PRIMARY KEY);")?;
        conn.execute_batch(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 12000) INSERT INTO t SELECT i FROM n;",
        )?;
        let entries = |conn: &Connection| -> Result<Vec<(i64, i64, bool)>> {
            let sql = format!("SELECT seq, k0, {WRITTEN_AT} IS NOT NULL FROM {CHANGES_TABLE} ORDER BY seq");
            let mut stmt = conn.prepare(&sql)?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            Ok(rows.collect::<Result<_, _>>()?)
        };
        let before = entries(&conn)?;
        assert_eq!(prune(&conn, 6000)?, 5999, "more than a chunk follows the position: deleted in chunks");
        assert_eq!(entries(&conn)?, before[5999..]);
        assert_eq!(prune(&conn, 11500)?, 5500, "500 entries follow: the log is emptied but for them");
        assert_eq!(entries(&conn)?, before[11499..], "the entries kept are the same, written_at included");
        assert_eq!(prune(&conn, 12000)?, 500);
        assert_eq!(prune(&conn, 12000)?, 0);
        conn.execute("INSERT INTO t VALUES (0)", [])?;
        assert_eq!(newest_seq(&conn)?, 12001);
        Ok(())
    }

    #[test]
    fn pending_entries_carry_their_write_time() -> Result<()> {
        let (conn, _) = setup("CREATE TABLE t(id INTEGER PRIMARY KEY);")?;
        assert_eq!(pending(&conn, 0)?.lag_seconds(), Some(0.0));
        conn.execute_batch("INSERT INTO t VALUES (1); INSERT INTO t VALUES (2);")?;
        let waiting = pending(&conn, 1)?;
        assert_eq!(waiting.entries, 1);
        let lag = waiting.lag_seconds().expect("format 2 entries have a write time");
        assert!((0.0..5.0).contains(&lag), "lag {lag}");
        Ok(())
    }
}
