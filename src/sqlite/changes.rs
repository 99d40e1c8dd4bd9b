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
    /// A row whose key holds NULL (SQLite's rowid tables allow it), which no PostgreSQL key can hold.
    NullKeyed(&'a [SqlValue]),
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
        } else if !logged_key.contains(&SqlValue::Null) || !read_null_keyed(conn, plan, &logged_key, &mut on_change)? {
            on_change(Change::Gone(&logged_key))?;
        }
    }
    Ok(())
}

/// Calls `on_change` with each row whose key is `key`, which holds NULL (a join never matches NULL); returns whether
/// there was one.
fn read_null_keyed(
    conn: &Connection,
    plan: &TablePlan,
    key: &[SqlValue],
    on_change: &mut impl FnMut(Change<'_>) -> Result<()>,
) -> Result<bool> {
    let same: Vec<String> =
        plan.key_select_list("t").iter().enumerate().map(|(i, expr)| format!("{expr} IS ?{}", i + 1)).collect();
    let sql = format!("SELECT {} FROM {} AS t WHERE {}", plan.select_list("t"), quote(&plan.name), same.join(" AND "));
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query(rusqlite::params_from_iter(key))?;
    let (mut row, mut found, key_indexes) = (Vec::with_capacity(plan.columns.len()), false, plan.key_indexes());
    while let Some(result) = rows.next()? {
        read_values(result, 0, plan.columns.len(), &mut row)?;
        // `IS` compares under the column's collation and across numeric kinds; the key must be the logged one.
        if key_indexes.iter().zip(key).all(|(i, k)| &row[*i] == k) {
            on_change(Change::NullKeyed(&row))?;
            found = true;
        }
    }
    Ok(found)
}

/// Calls `on_change` with every row of the table, for copying a table again inside a batch.
pub fn read_all(conn: &Connection, plan: &TablePlan, mut on_change: impl FnMut(Change<'_>) -> Result<()>) -> Result<()> {
    let mut stmt = conn.prepare(&format!("SELECT {} FROM {} AS t", plan.select_list("t"), quote(&plan.name)))?;
    let mut rows = stmt.query([])?;
    let mut row = Vec::with_capacity(plan.columns.len());
    while let Some(result) = rows.next()? {
        read_values(result, 0, plan.columns.len(), &mut row)?;
        match plan.key_holds_null(&row) {
            true => on_change(Change::NullKeyed(&row))?,
            false => on_change(Change::Present(&row))?,
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::types::PgType;
    use crate::sqlite::capture::test_support::setup;
    use crate::sqlite::capture::{newest_seq, CaptureState};
    use crate::sqlite::introspect::read_schema;

    fn shown(values: &[SqlValue]) -> String {
        let value = |v: &SqlValue| match v {
            SqlValue::Null => "NULL".to_string(),
            SqlValue::Integer(n) => n.to_string(),
            SqlValue::Real(r) => format!("{r:?}"),
            SqlValue::Text(t) => format!("'{}'", String::from_utf8_lossy(t)),
            SqlValue::Blob(b) => format!("X'{}'", crate::mapping::types::hex(b)),
        };
        values.iter().map(value).collect::<Vec<_>>().join(",")
    }

    /// What `read_changes` reports for `table` over the entries after `after`, one line per change, sorted.
    fn changes_after(conn: &Connection, state: &CaptureState, table: &str, after: i64) -> Result<Vec<String>> {
        let schema = read_schema(conn)?;
        let source = schema.table(table).expect("the test made it");
        let captured = state.table(table).expect("captured");
        let plan = TablePlan::new(source, &vec![PgType::Text; source.columns.len()], &captured.key_columns);
        let range = SeqRange { after, up_to: newest_seq(conn)? };
        let mut seen = Vec::new();
        read_changes(conn, &plan, captured.id, range, |change| {
            seen.push(match change {
                Change::Present(row) => format!("present {}", shown(row)),
                Change::Gone(key) => format!("gone {}", shown(key)),
                Change::NullKeyed(row) => format!("null-keyed {}", shown(row)),
            });
            Ok(())
        })?;
        seen.sort();
        Ok(seen)
    }

    #[test]
    fn inserts_updates_and_deletes_resolve_to_current_rows() -> Result<()> {
        let (conn, state) = setup("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'a'), (2, 'b');")?;
        conn.execute_batch("DELETE FROM t; INSERT INTO t VALUES (5, 'x');")?;
        let start = newest_seq(&conn)?;
        conn.execute_batch(
            "INSERT INTO t VALUES (6, 'new'); UPDATE t SET v = 'once' WHERE id = 5; UPDATE t SET v = 'twice' WHERE id = 5;
             UPDATE t SET id = 7 WHERE id = 6; INSERT INTO t VALUES (8, 'short-lived'); DELETE FROM t WHERE id = 8;",
        )?;
        assert_eq!(
            changes_after(&conn, &state, "t", start)?,
            ["gone 6", "gone 8", "present 5,'twice'", "present 7,'new'"],
            "repeated changes to one key come once; a key that moved away or was deleted is gone"
        );
        assert_eq!(changes_after(&conn, &state, "t", 0)?.len(), 6, "keys 1 and 2 were deleted too");
        Ok(())
    }

    #[test]
    fn a_key_deleted_and_inserted_again_is_present_with_its_new_values() -> Result<()> {
        let (conn, state) = setup("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'old');")?;
        let start = newest_seq(&conn)?;
        conn.execute_batch("DELETE FROM t WHERE id = 1; INSERT INTO t VALUES (1, 'again');")?;
        assert_eq!(changes_after(&conn, &state, "t", start)?, ["present 1,'again'"]);
        assert_eq!(changes_after(&conn, &state, "t", newest_seq(&conn)?)?, Vec::<String>::new(), "an empty range");
        Ok(())
    }

    #[test]
    fn composite_and_blob_keys_resolve_byte_for_byte() -> Result<()> {
        let (conn, state) = setup(
            "CREATE TABLE c(a TEXT, b BLOB, v, PRIMARY KEY (a, b)) WITHOUT ROWID;
             INSERT INTO c VALUES ('k', x'00ff', 1), ('k', x'01', 2);",
        )?;
        let start = newest_seq(&conn)?;
        conn.execute_batch("UPDATE c SET b = x'02' WHERE b = x'01'; UPDATE c SET v = 3 WHERE b = x'00ff';")?;
        assert_eq!(changes_after(&conn, &state, "c", start)?, ["gone 'k',X'01'", "present 'k',X'00ff',3", "present 'k',X'02',2"]);
        Ok(())
    }

    #[test]
    fn a_key_holding_null_is_read_through_the_rowid() -> Result<()> {
        let (conn, state) = setup("CREATE TABLE n(a, b, v, PRIMARY KEY (a, b)); INSERT INTO n VALUES (1, NULL, 'x');")?;
        assert_eq!(state.table("n").unwrap().key_columns, Vec::<String>::new(), "keyed by rowid");
        let start = newest_seq(&conn)?;
        conn.execute_batch("UPDATE n SET v = 'y'; INSERT INTO n VALUES (NULL, NULL, 'z'); DELETE FROM n WHERE v = 'z';")?;
        assert_eq!(changes_after(&conn, &state, "n", start)?, ["gone 2", "present 1,NULL,'y',1"]);
        Ok(())
    }

    #[test]
    fn a_declared_key_taking_null_later_is_read_as_null_keyed_rows() -> Result<()> {
        let (conn, state) = setup("CREATE TABLE n(a, b, v, PRIMARY KEY (a, b)); INSERT INTO n VALUES (1, 2, 'x');")?;
        assert_eq!(state.table("n").unwrap().key_columns, ["a", "b"]);
        let start = newest_seq(&conn)?;
        conn.execute_batch("INSERT INTO n VALUES (1, NULL, 'y'), (1, NULL, 'z'), (NULL, 3, 'w'); DELETE FROM n WHERE v = 'w';")?;
        assert_eq!(
            changes_after(&conn, &state, "n", start)?,
            ["gone NULL,3", "null-keyed 1,NULL,'y'", "null-keyed 1,NULL,'z'"],
            "the NULL key, logged twice, is read once and finds both rows"
        );
        Ok(())
    }

    #[test]
    fn a_key_equal_only_under_its_collation_is_gone() -> Result<()> {
        let (conn, state) = setup("CREATE TABLE n(k TEXT PRIMARY KEY COLLATE NOCASE, v); INSERT INTO n VALUES ('abc', 1);")?;
        let start = newest_seq(&conn)?;
        conn.execute_batch("INSERT OR REPLACE INTO n VALUES ('ABC', 2);")?;
        assert_eq!(
            changes_after(&conn, &state, "n", start)?,
            ["gone 'abc'", "present 'ABC',2"],
            "'abc' finds the row 'ABC' under NOCASE, but that row is not the one logged"
        );
        Ok(())
    }

    #[test]
    fn lists_changed_tables_and_pending_keys() -> Result<()> {
        let (conn, state) = setup("CREATE TABLE a(id INTEGER PRIMARY KEY); CREATE TABLE b(id INTEGER PRIMARY KEY);")?;
        conn.execute_batch("INSERT INTO a VALUES (1); INSERT INTO b VALUES (1); INSERT INTO b VALUES (2);")?;
        let (a, b) = (state.table("a").unwrap().id, state.table("b").unwrap().id);
        let mut tables = changed_tables(&conn, SeqRange { after: 0, up_to: newest_seq(&conn)? })?;
        tables.sort();
        assert_eq!(tables, [a, b]);
        assert_eq!(changed_tables(&conn, SeqRange { after: 1, up_to: 1 })?, Vec::<i64>::new());
        let schema = read_schema(&conn)?;
        let plan = TablePlan::new(schema.table("b").unwrap(), &[PgType::BigInt], &["id".to_string()]);
        let mut keys = pending_keys(&conn, &plan, b, 2)?;
        keys.sort_by_key(|key| shown(key));
        assert_eq!(keys, [vec![SqlValue::Integer(2)]]);
        Ok(())
    }
}
