//! Installs, upgrades and removes lite2pg's own objects in the file: the meta table (format version, database
//! id, source id), the table registry, the change log and every table's triggers, in one write transaction.

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use super::displacement::displacement_trigger_sql;
use super::identity::ensure_canary;
use super::triggers::{drop_triggers, trigger_sql};
use super::{
    installed_version, read_state, CaptureState, CANARY_TABLE, CHANGES_TABLE, FORMAT_VERSION, META_TABLE, TABLES_TABLE,
    WRITTEN_AT,
};
use crate::error::{Error, ErrorKind, Result};
use crate::sqlite::introspect::Table;
use crate::sqlite::scan::primary_key_has_nulls;

/// Installs or upgrades capture for `tables` (and removes it from any other table), in one write transaction.
/// Idempotent: running it again with the same tables changes nothing but the triggers' text. Only tests install
/// capture alone; commands install it while preparing a source (`Source::prepare`).
#[cfg(test)]
pub fn install(conn: &mut Connection, tables: &[&Table], source_id: Option<&str>) -> Result<CaptureState> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let state = install_in(&tx, tables, source_id)?;
    tx.commit()?;
    Ok(state)
}

/// `install` inside the caller's write transaction.
pub(super) fn install_in(tx: &Connection, tables: &[&Table], source_id: Option<&str>) -> Result<CaptureState> {
    tx.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS {META_TABLE} (key TEXT PRIMARY KEY, value TEXT NOT NULL);
         CREATE TABLE IF NOT EXISTS {TABLES_TABLE} (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, key_columns TEXT NOT NULL);
         CREATE TABLE IF NOT EXISTS {CHANGES_TABLE} (seq INTEGER PRIMARY KEY, tbl INTEGER NOT NULL, {WRITTEN_AT} REAL, k0);"
    ))?;
    check_format_version(tx)?;
    add_written_at(tx)?;
    ensure_canary(tx)?;
    tx.execute(&format!("INSERT OR REPLACE INTO {META_TABLE} VALUES ('format_version', ?1)"), [FORMAT_VERSION.to_string()])?;
    let database_id = random_id()?;
    tx.execute(&format!("INSERT OR IGNORE INTO {META_TABLE} VALUES ('database_id', ?1)"), [&database_id])?;
    if let Some(source_id) = source_id {
        tx.execute(&format!("INSERT OR REPLACE INTO {META_TABLE} VALUES ('source_id', ?1)"), [source_id])?;
    }
    tx.execute(&format!("INSERT OR IGNORE INTO {META_TABLE} VALUES ('source_id', 'sqlite-' || ?1)"), [&database_id[..12]])?;
    drop_triggers(tx)?;
    for table in tables {
        let key_columns = register(tx, table)?;
        ensure_key_slots(tx, key_columns.len().max(1))?;
        let id: i64 = tx.query_row(&format!("SELECT id FROM {TABLES_TABLE} WHERE name = ?1"), [&table.name], |r| r.get(0))?;
        for sql in trigger_sql(id, table, &key_columns).iter().chain(&displacement_trigger_sql(id, table, &key_columns)) {
            tx.execute_batch(sql)?;
        }
    }
    let state = read_state(tx)?.expect("installed above");
    Ok(CaptureState { tables: state.tables.into_iter().filter(|t| tables.iter().any(|s| s.name == t.name)).collect(), ..state })
}

fn check_format_version(conn: &Connection) -> Result<()> {
    match installed_version(conn)? {
        Some(version) if version > FORMAT_VERSION => Err(Error::new(
            ErrorKind::State,
            format!(
                "the SQLite file's capture was installed by a newer lite2pg (format {version}, this one knows {FORMAT_VERSION})"
            ),
        )
        .with_hint("upgrade lite2pg")),
        _ => Ok(()),
    }
}

/// Format 1 logs had no write time; entries already there keep NULL (their age is unknown).
fn add_written_at(conn: &Connection) -> Result<()> {
    let has_column: bool = conn.query_row(
        &format!("SELECT count(*) > 0 FROM pragma_table_info('{CHANGES_TABLE}') WHERE name = '{WRITTEN_AT}'"),
        [],
        |r| r.get(0),
    )?;
    if !has_column {
        conn.execute_batch(&format!("ALTER TABLE {CHANGES_TABLE} ADD COLUMN {WRITTEN_AT} REAL"))?;
    }
    Ok(())
}

/// Registers a table and returns its key columns; a table keeps the key it was registered with.
fn register(conn: &Connection, table: &Table) -> Result<Vec<String>> {
    let registered: Option<String> = conn
        .query_row(&format!("SELECT key_columns FROM {TABLES_TABLE} WHERE name = ?1"), [&table.name], |r| r.get(0))
        .optional()?;
    if let Some(key) = registered.and_then(|json| serde_json::from_str::<Vec<String>>(&json).ok()) {
        if key.iter().all(|k| table.columns.iter().any(|c| &c.name == k)) {
            return Ok(key);
        }
    }
    let key = if primary_key_has_nulls(conn, table)? { Vec::new() } else { table.primary_key.clone() };
    if key.is_empty() && table.rowid_name().is_none() {
        return Err(Error::new(
            ErrorKind::Schema,
            format!("table {:?}: its primary key holds NULLs and its columns rowid, _rowid_ and oid hide the rowid, so no key tells its rows apart", table.name),
        )
        .with_hint("leave it out with --exclude, or rename one of those columns in SQLite"));
    }
    conn.execute(
        &format!("INSERT INTO {TABLES_TABLE} (name, key_columns) VALUES (?1, ?2) ON CONFLICT (name) DO UPDATE SET key_columns = excluded.key_columns"),
        rusqlite::params![table.name, serde_json::to_string(&key).expect("strings serialize")],
    )?;
    Ok(key)
}

/// Adds `k1`, `k2`, … to the log until it has `width` key columns.
fn ensure_key_slots(conn: &Connection, width: usize) -> Result<()> {
    let existing: usize = conn.query_row(
        &format!("SELECT count(*) FROM pragma_table_info('{CHANGES_TABLE}') WHERE name GLOB 'k[0-9]*'"),
        [],
        |r| r.get::<_, i64>(0),
    )? as usize;
    for slot in existing..width {
        conn.execute_batch(&format!("ALTER TABLE {CHANGES_TABLE} ADD COLUMN k{slot}"))?;
    }
    Ok(())
}

/// Removes every lite2pg object from the file; the application's tables and rows are untouched.
pub fn uninstall(conn: &mut Connection) -> Result<bool> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let had_capture = remove_objects(&tx)?;
    tx.commit()?;
    Ok(had_capture)
}

/// Drops every lite2pg object inside the caller's write transaction; returns whether capture was installed.
pub fn remove_objects(conn: &Connection) -> Result<bool> {
    let had_capture = read_state(conn)?.is_some();
    drop_triggers(conn)?;
    conn.execute_batch(&format!(
        "DROP TABLE IF EXISTS {CHANGES_TABLE}; DROP TABLE IF EXISTS {TABLES_TABLE}; DROP TABLE IF EXISTS {META_TABLE};
         DROP TABLE IF EXISTS {CANARY_TABLE};"
    ))?;
    Ok(had_capture)
}

fn random_id() -> Result<String> {
    let mut bytes = [0u8; 16];
    getrandom::getrandom(&mut bytes)
        .map_err(|err| Error::new(ErrorKind::Sqlite, format!("cannot make a random database id: {err}")))?;
    Ok(crate::mapping::types::hex(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlite::capture::pending;
    use crate::sqlite::capture::test_support::setup;
    use crate::sqlite::introspect::read_schema;

    #[test]
    fn install_is_idempotent_and_uninstall_leaves_data() -> Result<()> {
        let (mut conn, first) = setup("CREATE TABLE t(x); INSERT INTO t VALUES (1);")?;
        let schema = read_schema(&conn)?;
        let tables: Vec<&Table> = schema.tables.iter().collect();
        let second = install(&mut conn, &tables, None)?;
        assert_eq!(first, second);
        assert_eq!(first.table("t").unwrap().key_columns, Vec::<String>::new());
        assert!(uninstall(&mut conn)?);
        assert_eq!(read_state(&conn)?, None);
        assert_eq!(conn.query_row("SELECT count(*) FROM t", [], |r| r.get::<_, i64>(0))?, 1);
        Ok(())
    }

    #[test]
    fn upgrades_a_format_1_log_in_place() -> Result<()> {
        let mut conn = Connection::open_in_memory()?;
        conn.execute_batch(&format!(
            "CREATE TABLE t(id INTEGER PRIMARY KEY);
             CREATE TABLE {CHANGES_TABLE} (seq INTEGER PRIMARY KEY, tbl INTEGER NOT NULL, k0);
             INSERT INTO {CHANGES_TABLE} VALUES (7, 1, 1);"
        ))?;
        let schema = read_schema(&conn)?;
        install(&mut conn, &schema.tables.iter().collect::<Vec<_>>(), None)?;
        conn.execute("INSERT INTO t VALUES (2)", [])?;
        assert_eq!(pending(&conn, 0)?.oldest_written_at, None, "the old entry's time is unknown");
        assert!(pending(&conn, 7)?.oldest_written_at.is_some());
        Ok(())
    }
}
