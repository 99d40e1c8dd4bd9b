//! Follows the file's schema: tells which captured tables were renamed, dropped or rebuilt and which chosen
//! tables are new, then brings the registry and the triggers along in one write transaction.

use rusqlite::{Connection, TransactionBehavior};

use super::identity::append_marker;
use super::install::install_in;
use super::triggers::capture_trigger_names;
use super::{read_state, CaptureState, META_TABLE, TABLES_TABLE};
use crate::error::Result;
use crate::sqlite::introspect::{SourceSchema, Table};

/// How the file's schema moved away from its capture: seen from the registry and where the capture triggers
/// are attached now (SQLite carries triggers along when a table is renamed and drops them with the table).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SchemaDrift {
    /// `(old name, new name)` of captured tables renamed.
    pub renamed: Vec<(String, String)>,
    /// Captured tables that no longer exist.
    pub dropped: Vec<String>,
    /// Captured tables whose triggers are gone while a table of that name exists: rebuilt (new table, copied
    /// rows, old one dropped, new one renamed) or triggers dropped by hand. Changes may have been missed.
    pub rebuilt: Vec<String>,
    /// Chosen tables not captured yet.
    pub new: Vec<String>,
}

impl SchemaDrift {
    /// Tables whose rows must be copied whole, as they may hold changes no trigger logged.
    pub fn uncaptured_rows(&self) -> impl Iterator<Item = &String> {
        self.rebuilt.iter().chain(&self.new)
    }
}

/// Compares the capture registry with the schema; `wanted` says whether a table is chosen for sync.
pub fn drift(conn: &Connection, schema: &SourceSchema, wanted: impl Fn(&str) -> bool) -> Result<SchemaDrift> {
    let state =
        read_state(conn)?.unwrap_or(CaptureState { database_id: String::new(), source_id: String::new(), tables: Vec::new() });
    let mut drift = SchemaDrift::default();
    for table in &state.tables {
        let attached: Vec<String> = conn
            .prepare("SELECT tbl_name FROM sqlite_master WHERE type = 'trigger' AND name IN (?1, ?2, ?3)")?
            .query_map(capture_trigger_names(table.id), |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        match (attached.first(), schema.table(&table.name)) {
            (Some(now), _) if now != &table.name => drift.renamed.push((table.name.clone(), now.clone())),
            (_, None) => drift.dropped.push(table.name.clone()),
            (_, Some(_)) if !wanted(&table.name) => {}
            (_, Some(_)) if attached.len() < 3 => drift.rebuilt.push(table.name.clone()),
            _ => {}
        }
    }
    let renamed_to: Vec<String> = drift.renamed.iter().map(|(_, new)| new.clone()).collect();
    // A table whose name another captured table took (dropped, then the other renamed to it) was dropped.
    let (taken, rebuilt): (Vec<String>, Vec<String>) = drift.rebuilt.drain(..).partition(|name| renamed_to.contains(name));
    drift.dropped.extend(taken);
    drift.rebuilt = rebuilt;
    drift.new = schema
        .tables
        .iter()
        .map(|t| &t.name)
        .filter(|name| wanted(name) && state.table(name).is_none() && !renamed_to.contains(*name))
        .cloned()
        .collect();
    Ok(drift)
}

/// Brings capture along with `drift` in one write transaction: renames and drops in the registry, then
/// triggers on `tables`, and (`mark`: for a stream, which requires capture to be there still) a marker entry in
/// the log. Returns the state and the schema version that
/// includes these triggers, or `None`, changing nothing, when the schema changed again since `schema_version`.
pub fn follow(
    conn: &mut Connection,
    schema_version: i64,
    drift: &SchemaDrift,
    tables: &[&Table],
    source_id: Option<&str>,
    mark: bool,
) -> Result<Option<(CaptureState, i64)>> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    if crate::sqlite::schema_version(&tx)? != schema_version {
        return Ok(None);
    }
    if mark && read_state(&tx)?.is_none() {
        // A stream follows a file it synced: one without capture was emptied (a copy into place) or replaced, and
        // installing capture again would write lite2pg's tables into the application's file.
        return Err(super::capture_lost());
    }
    // Drops first: a table may be renamed to the name of one dropped.
    for name in &drift.dropped {
        tx.execute(&format!("DELETE FROM {TABLES_TABLE} WHERE name = ?1"), [name])?;
    }
    // Through parking names, so that chains (a to b, b to c) and swaps land in any order.
    let rename = |from: &str, to: &str| tx.execute(&format!("UPDATE {TABLES_TABLE} SET name = ?2 WHERE name = ?1"), [from, to]);
    for (i, (old, _)) in drift.renamed.iter().enumerate() {
        rename(old, &parking_name(i))?;
    }
    for (i, (_, new)) in drift.renamed.iter().enumerate() {
        rename(&parking_name(i), new)?;
    }
    for name in &drift.rebuilt {
        // A rebuilt table is keyed by what it declares now (`register` derives the key again).
        tx.execute(&format!("UPDATE {TABLES_TABLE} SET key_columns = 'null' WHERE name = ?1"), [name])?;
    }
    let state = install_in(&tx, tables, source_id)?;
    if mark {
        // A schema change leaves no log entry of its own (a rebuilt table's rows are copied without triggers):
        // this marker makes it one, so `applied_seq` reaches the log's end only once PostgreSQL has the change.
        append_marker(&tx)?;
    }
    let version = crate::sqlite::schema_version(&tx)?;
    // Data, not schema: recording it leaves the version as it is. Tells watchers the schema capture follows.
    tx.execute(&format!("INSERT OR REPLACE INTO {META_TABLE} VALUES ('followed_schema_version', ?1)"), [version.to_string()])?;
    tx.commit()?;
    Ok(Some((state, version)))
}

/// A name no application table has, held by a table between the two steps of a rename.
pub fn parking_name(index: usize) -> String {
    format!("_lite2pg_renaming_{index}")
}

/// Captured tables missing any of their three capture triggers (dropped by hand, or by a table rebuild).
pub fn tables_without_triggers(conn: &Connection, state: &CaptureState) -> Result<Vec<String>> {
    let mut missing = Vec::new();
    for table in &state.tables {
        let [insert, update, delete] = capture_trigger_names(table.id);
        let triggers: i64 = conn.query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ?1 AND name IN (?2, ?3, ?4)",
            rusqlite::params![table.name, insert, update, delete],
            |r| r.get(0),
        )?;
        if triggers != 3 {
            missing.push(table.name.clone());
        }
    }
    Ok(missing)
}
