//! The SQL of the three capture triggers of a table (AFTER INSERT, UPDATE, DELETE), their names, and dropping
//! them all.

use rusqlite::Connection;

use super::{CHANGES_TABLE, WRITTEN_AT};
use crate::error::Result;
use crate::ident::quote;
use crate::sqlite::introspect::{Table, OWN_PREFIX};

/// The names of table `id`'s three capture triggers: insert, update, delete.
pub(super) fn capture_trigger_names(id: i64) -> [String; 3] {
    ["insert", "update", "delete"].map(|event| format!("{OWN_PREFIX}{id}_{event}"))
}

/// The three capture triggers of a table. `key_columns` empty means the rowid is the key.
pub fn trigger_sql(id: i64, table: &Table, key_columns: &[String]) -> [String; 3] {
    let key = key_expressions(table, key_columns);
    let slots: String = (0..key.len()).map(|i| format!(", k{i}")).collect();
    let values = |row: &str| key.iter().map(|k| format!(", {row}.{k}")).collect::<String>();
    let changed = key.iter().map(|k| format!("OLD.{k} IS NOT NEW.{k} COLLATE BINARY")).collect::<Vec<_>>().join(" OR ");
    let target = quote(&table.name);
    let log = format!("INSERT INTO {CHANGES_TABLE} (tbl, {WRITTEN_AT}{slots})");
    let head = format!("{id}, julianday('now')");
    [
        format!("CREATE TRIGGER \"{OWN_PREFIX}{id}_insert\" AFTER INSERT ON {target} BEGIN {log} VALUES ({head}{}); END", values("NEW")),
        format!(
            "CREATE TRIGGER \"{OWN_PREFIX}{id}_update\" AFTER UPDATE ON {target} BEGIN {log} VALUES ({head}{}); {log} SELECT {head}{} WHERE {changed}; END",
            values("NEW"),
            values("OLD")
        ),
        format!("CREATE TRIGGER \"{OWN_PREFIX}{id}_delete\" AFTER DELETE ON {target} BEGIN {log} VALUES ({head}{}); END", values("OLD")),
    ]
}

/// The SQL expressions for a table's capture key: its key columns, or a name that reaches the rowid.
pub(super) fn key_expressions(table: &Table, key_columns: &[String]) -> Vec<String> {
    if key_columns.is_empty() {
        vec![table.rowid_name().expect("tables keyed by rowid have one").to_string()]
    } else {
        key_columns.iter().map(|c| quote(c)).collect()
    }
}

/// Drops every trigger lite2pg made, capture and displacement triggers alike.
pub(super) fn drop_triggers(conn: &Connection) -> Result<()> {
    let names: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE '\\_lite2pg\\_%' ESCAPE '\\'")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for name in names {
        conn.execute_batch(&format!("DROP TRIGGER IF EXISTS {}", quote(&name)))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlite::capture::test_support::{log, setup};

    #[test]
    fn logs_keys_of_every_change_and_nothing_rolled_back() -> Result<()> {
        let (conn, state) =
            setup("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); CREATE TABLE c(a, b, PRIMARY KEY (a, b)) WITHOUT ROWID;")?;
        let (t, c) = (state.table("t").unwrap().id, state.table("c").unwrap().id);
        conn.execute_batch(
            "INSERT INTO t VALUES (1, 'a'); UPDATE t SET v = 'b'; UPDATE t SET id = 2; DELETE FROM t;
             INSERT INTO c VALUES ('x', x'00');
             BEGIN; INSERT INTO t VALUES (9, 'gone'); ROLLBACK;",
        )?;
        assert_eq!(
            log(&conn)?,
            [(t, "1".into()), (t, "1".into()), (t, "2".into()), (t, "1".into()), (t, "2".into()), (c, "'x',X'00'".into())]
        );
        Ok(())
    }
}
