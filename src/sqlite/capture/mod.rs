//! Change capture inside the SQLite file: a durable change log written by triggers in the application's own
//! transactions, a registry of captured tables, and the file's identity.
//!
//! Contract: after `install` returns, every committed INSERT, UPDATE or DELETE on a captured table appends the
//! changed keys (old and new key when an UPDATE changes it) to `_lite2pg_changes` in the same transaction, so a
//! rolled-back change leaves nothing and a committed one cannot lose its entry. Sequence numbers grow in commit
//! order because SQLite has one writer at a time. The log never gives up its newest row (see `prune`), so
//! sequence numbers are never reused.
//!
//! Each entry also records when it was written (`julianday('now')`, fixed for one statement), so the age of the
//! oldest entry not yet applied is the sync's lag.
//!
//! The file's identity over time: the entry at the applied position is never pruned, and its table id and write
//! time (`mark`) are stored in PostgreSQL with the position, so a file restored from a backup, rewound or replaced
//! shows a different entry there (or none). A one-row canary table without an index sits at rowid 2: VACUUM gives
//! it rowid 1 exactly when it renumbers the rowids of tables keyed by rowid.
//!
//! The trigger SQL is plain SQL-92-style trigger syntax that SQLite 3.31 already runs: no JSON, no RETURNING.
//!
//! One file per job: `install` (lite2pg's own tables, the registry, upgrades, removal), `triggers` (the capture
//! triggers' SQL), `displacement` (logging rows a REPLACE deletes silently), `drift` (following schema changes),
//! `identity` (the canary and the mark at the applied position), `log` (reading, appending to and pruning the log).
//! This module holds the names and the state every one of them shares.

mod displacement;
mod drift;
mod identity;
mod install;
mod log;
mod triggers;

use rusqlite::{Connection, OptionalExtension};

use crate::error::{Error, ErrorKind, Result};

pub use displacement::unprobed_indexes;
pub use drift::{drift, follow, parking_name, tables_without_triggers, SchemaDrift};
pub use identity::{arm_canary, check_position, entry_mark, mark_position, vacuumed};
#[cfg(test)]
pub(crate) use install::install;
pub use install::{remove_objects, uninstall};
pub use log::{fitting_rows_with_json, keys_with_json, log_keys, newest_seq, pending, prune};

/// Version of the objects lite2pg installs; a newer lite2pg upgrades older files in place.
pub const FORMAT_VERSION: i64 = 2;

/// The change log.
pub const CHANGES_TABLE: &str = "_lite2pg_changes";
const META_TABLE: &str = "_lite2pg_meta";
const TABLES_TABLE: &str = "_lite2pg_tables";
/// A rowid table without an index: VACUUM renumbers its rowids whenever it renumbers any table's.
const CANARY_TABLE: &str = "_lite2pg_canary";
/// The canary's rowid while armed; VACUUM would make it 1.
const CANARY_ROWID: i64 = 2;
/// The `tbl` of lite2pg's own log entries (a snapshot's position marker), which belong to no table.
const MARKER_TABLE_ID: i64 = 0;
/// The log column holding when an entry was written, as a Julian day number.
const WRITTEN_AT: &str = "written_at";
/// The Julian day number of 1970-01-01 00:00 UTC.
const UNIX_EPOCH_JULIAN_DAY: f64 = 2440587.5;

/// A captured table as registered in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapturedTable {
    pub id: i64,
    pub name: String,
    /// Key columns in key order; empty means the rowid.
    pub key_columns: Vec<String>,
}

/// The file's identity and what it captures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureState {
    /// Random id made at first install: tells this database from any other.
    pub database_id: String,
    /// Name of this source in PostgreSQL's `lite2pg.sources`.
    pub source_id: String,
    pub tables: Vec<CapturedTable>,
}

impl CaptureState {
    /// The registry entry for `name`.
    pub fn table(&self, name: &str) -> Option<&CapturedTable> {
        self.tables.iter().find(|t| t.name == name)
    }
}

/// Reads the capture state, or `None` when capture was never installed.
pub fn read_state(conn: &Connection) -> Result<Option<CaptureState>> {
    let installed: bool = conn.query_row(
        "SELECT count(*) = 3 FROM sqlite_master WHERE type = 'table' AND name IN (?1, ?2, ?3)",
        [META_TABLE, TABLES_TABLE, CHANGES_TABLE],
        |r| r.get(0),
    )?;
    if !installed {
        return Ok(None);
    }
    let meta = |key: &str| -> Result<Option<String>> {
        Ok(conn.query_row(&format!("SELECT value FROM {META_TABLE} WHERE key = ?1"), [key], |r| r.get(0)).optional()?)
    };
    // An application that empties every table empties lite2pg's too: what is left is not capture any more.
    let (Some(database_id), Some(source_id)) = (meta("database_id")?, meta("source_id")?) else { return Ok(None) };
    let mut stmt = conn.prepare(&format!("SELECT id, name, key_columns FROM {TABLES_TABLE} ORDER BY id"))?;
    let tables = stmt
        .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?)))?
        .map(|row| {
            let (id, name, key_json) = row?;
            let key_columns = serde_json::from_str(&key_json).map_err(|err| {
                Error::new(ErrorKind::State, format!("capture registry entry for table {name:?} is damaged: {err}"))
                    .with_hint("run `lite2pg init` again to rebuild it")
            })?;
            Ok(CapturedTable { id, name, key_columns })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Some(CaptureState { database_id, source_id, tables }))
}

/// What a stream says of the file it syncs when capture is no longer in it: emptied (a copy into place) or replaced.
pub fn capture_lost() -> Error {
    Error::new(
        ErrorKind::State,
        "the SQLite file no longer holds lite2pg's capture: it was emptied or replaced while lite2pg ran",
    )
    .with_hint("if the file was restored on purpose, copy it again with `lite2pg snapshot --replace`")
}

/// The capture state of a file commands expect to be synced already; an error saying so when it is not.
pub fn require_state(conn: &Connection, path: &std::path::Path) -> Result<CaptureState> {
    read_state(conn)?.ok_or_else(|| {
        Error::new(ErrorKind::State, format!("{} has no lite2pg capture installed", path.display())).with_hint(
            "if nothing was synced from it yet, start with `lite2pg run`; if it replaced a file that was, copy it \
                 again with `lite2pg snapshot --replace`",
        )
    })
}

/// The capture format installed in the file, if any.
pub fn installed_version(conn: &Connection) -> Result<Option<i64>> {
    let installed: Option<String> =
        conn.query_row(&format!("SELECT value FROM {META_TABLE} WHERE key = 'format_version'"), [], |r| r.get(0)).optional()?;
    Ok(installed.and_then(|v| v.parse::<i64>().ok()))
}

#[cfg(test)]
pub(crate) mod test_support {
    //! Capture installed on an in-memory database, and the log as tests compare it.

    use super::*;
    use crate::sqlite::introspect::{read_schema, Table};

    pub(crate) fn setup(sql: &str) -> Result<(Connection, CaptureState)> {
        let mut conn = Connection::open_in_memory()?;
        conn.execute_batch(sql)?;
        let schema = read_schema(&conn)?;
        let tables: Vec<&Table> = schema.tables.iter().collect();
        let state = install(&mut conn, &tables, None)?;
        Ok((conn, state))
    }

    pub(crate) fn log(conn: &Connection) -> Result<Vec<(i64, String)>> {
        let mut stmt = conn.prepare(&format!("SELECT * FROM {CHANGES_TABLE} ORDER BY seq"))?;
        let width = stmt.column_count();
        let rows = stmt.query_map([], |r| {
            let keys: Vec<String> = (3..width)
                .filter_map(|i| match r.get_ref(i).ok()? {
                    rusqlite::types::ValueRef::Null => None,
                    rusqlite::types::ValueRef::Integer(n) => Some(n.to_string()),
                    rusqlite::types::ValueRef::Text(t) => Some(format!("'{}'", String::from_utf8_lossy(t))),
                    other => {
                        Some(format!("X'{}'", crate::mapping::types::hex(other.as_blob().unwrap_or_default()).to_uppercase()))
                    }
                })
                .collect();
            Ok((r.get(1)?, keys.join(",")))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
