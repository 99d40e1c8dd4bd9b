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

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use crate::error::{Error, ErrorKind, Result};
use crate::ident::quote;
use crate::mapping::types::SqlValue;
use crate::sqlite::index_sql::{on_row, parse_index};
use crate::sqlite::introspect::{Index, SourceSchema, Table, OWN_PREFIX};
use crate::sqlite::scan::primary_key_has_nulls;

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

/// Starts the comment naming the indexes a displacement trigger probes.
const PROBES_MARK: &str = "lite2pg probes";

/// Rows deleted per write transaction when pruning, so the application's writers never wait long.
const PRUNE_CHUNK: i64 = 5000;

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

/// Installs or upgrades capture for `tables` (and removes it from any other table), in one write transaction.
/// Idempotent: running it again with the same tables changes nothing but the triggers' text.
pub fn install(conn: &mut Connection, tables: &[&Table], source_id: Option<&str>) -> Result<CaptureState> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let state = install_in(&tx, tables, source_id)?;
    tx.commit()?;
    Ok(state)
}

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
    pub fn is_empty(&self) -> bool {
        self == &SchemaDrift::default()
    }

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
            .query_map(
                [
                    format!("{OWN_PREFIX}{}_insert", table.id),
                    format!("{OWN_PREFIX}{}_update", table.id),
                    format!("{OWN_PREFIX}{}_delete", table.id),
                ],
                |r| r.get(0),
            )?
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
/// triggers on `tables`, and (`mark`) a marker entry in the log. Returns the state and the schema version that
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

/// `install` inside the caller's write transaction.
fn install_in(tx: &Connection, tables: &[&Table], source_id: Option<&str>) -> Result<CaptureState> {
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

/// The capture format installed in the file, if any.
pub fn installed_version(conn: &Connection) -> Result<Option<i64>> {
    let installed: Option<String> =
        conn.query_row(&format!("SELECT value FROM {META_TABLE} WHERE key = 'format_version'"), [], |r| r.get(0)).optional()?;
    Ok(installed.and_then(|v| v.parse::<i64>().ok()))
}

/// Captured tables missing any of their three capture triggers (dropped by hand, or by a table rebuild).
pub fn tables_without_triggers(conn: &Connection, state: &CaptureState) -> Result<Vec<String>> {
    let mut missing = Vec::new();
    for table in &state.tables {
        let triggers: i64 = conn.query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ?1 AND name IN (?2, ?3, ?4)",
            rusqlite::params![
                table.name,
                format!("{OWN_PREFIX}{}_insert", table.id),
                format!("{OWN_PREFIX}{}_update", table.id),
                format!("{OWN_PREFIX}{}_delete", table.id)
            ],
            |r| r.get(0),
        )?;
        if triggers != 3 {
            missing.push(table.name.clone());
        }
    }
    Ok(missing)
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

/// Creates the canary, armed, unless it exists (a moved canary must stay moved until a batch has seen it).
fn ensure_canary(conn: &Connection) -> Result<()> {
    let exists: bool =
        conn.query_row("SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = ?1", [CANARY_TABLE], |r| {
            r.get(0)
        })?;
    if !exists {
        conn.execute_batch(&format!("CREATE TABLE {CANARY_TABLE} (armed INTEGER)"))?;
        arm_canary_in(conn)?;
    }
    Ok(())
}

fn arm_canary_in(conn: &Connection) -> Result<()> {
    conn.execute_batch(&format!(
        "DELETE FROM {CANARY_TABLE}; INSERT INTO {CANARY_TABLE} (rowid, armed) VALUES ({CANARY_ROWID}, 1);"
    ))?;
    Ok(())
}

/// Puts the canary back at its rowid, so the next VACUUM is noticed too. The caller has recorded first what the
/// last one requires (tables to copy again), so nothing is lost between.
pub fn arm_canary(conn: &mut Connection) -> Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    arm_canary_in(&tx)?;
    tx.commit()?;
    Ok(())
}

/// Whether a VACUUM renumbered rowids since the canary was armed (its row moved, or is gone).
pub fn vacuumed(conn: &Connection) -> Result<bool> {
    let armed: bool = conn
        .prepare_cached(&format!("SELECT count(*) = 1 AND max(rowid) = {CANARY_ROWID} FROM {CANARY_TABLE}"))?
        .query_row([], |r| r.get(0))?;
    Ok(!armed)
}

/// Starts a snapshot's position: arms the canary (the copy that follows holds the rowids as they are then) and
/// appends a marker entry of lite2pg's own, so even an empty log has an entry at the position to check the file
/// by. Returns the marker's seq and mark.
pub fn mark_position(conn: &mut Connection) -> Result<(i64, Option<String>)> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    arm_canary_in(&tx)?;
    let seq = append_marker(&tx)?;
    let mark = entry_mark(&tx, seq)?;
    tx.commit()?;
    Ok((seq, mark))
}

/// Appends an entry of lite2pg's own to the log (no table's: batches skip it); returns its seq.
fn append_marker(tx: &Connection) -> Result<i64> {
    tx.execute(&format!("INSERT INTO {CHANGES_TABLE} (tbl, {WRITTEN_AT}) VALUES ({MARKER_TABLE_ID}, julianday('now'))"), [])?;
    Ok(tx.last_insert_rowid())
}

/// What tells the log entry at `seq` from any other entry that could take that seq in a restored or replaced
/// file: its table id and write time (a Julian day with milliseconds). `None` when there is no such entry.
pub fn entry_mark(conn: &Connection, seq: i64) -> Result<Option<String>> {
    Ok(conn
        .prepare_cached(&format!("SELECT tbl, {WRITTEN_AT} FROM {CHANGES_TABLE} WHERE seq = ?1"))?
        .query_row([seq], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Option<f64>>(1)?)))
        .optional()?
        .map(|(tbl, written_at)| format!("{tbl}@{}", written_at.map_or_else(|| "?".to_string(), |at| at.to_string()))))
}

/// Checks that the file still holds the entry PostgreSQL's position was applied up to (`applied_mark`, when
/// recorded), and returns the newest seq. A missing or different entry means the file was restored from an older
/// copy, rewound or replaced: the changes applied after that copy exist only in PostgreSQL.
pub fn check_position(conn: &Connection, path: &std::path::Path, applied_seq: i64, applied_mark: Option<&str>) -> Result<i64> {
    let newest = newest_seq(conn)?;
    let restored = |what: String| {
        Error::new(
            ErrorKind::State,
            format!("{what}: the file {} was restored from an older copy, rewound or replaced", path.display()),
        )
        .with_hint("changes applied after that copy exist only in PostgreSQL; to start over from the file as it is now, run `lite2pg snapshot --replace`")
    };
    if newest < applied_seq {
        return Err(restored(format!(
            "the SQLite file's change log ends at seq {newest}, before the applied position {applied_seq}"
        )));
    }
    if let Some(applied_mark) = applied_mark {
        if entry_mark(conn, applied_seq)?.as_deref() != Some(applied_mark) {
            return Err(restored(format!(
                "the SQLite file's change log entry at the applied position {applied_seq} is not the one applied"
            )));
        }
    }
    Ok(newest)
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

/// `INSERT OR REPLACE`, `REPLACE INTO`, `UPDATE OR REPLACE` (and constraints declared `ON CONFLICT REPLACE`)
/// silently delete rows that collide on a unique index, without firing their DELETE triggers. These BEFORE
/// triggers log the keys of rows an insert or update is about to displace: one statement per unique index that
/// can displace another row, comparing under the index's collations and, for a partial index, its WHERE clause,
/// so each lookup can use that index. The key's own index counts when it compares other than byte for byte: a
/// NOCASE key 'ABC' displaces 'abc'. A statement that then fails takes its log rows with it; one that ignores
/// the conflict (or updates the row, as an UPSERT does) leaves a harmless extra entry for a row that still exists.
pub fn displacement_trigger_sql(id: i64, table: &Table, key_columns: &[String]) -> Vec<String> {
    let indexes: Vec<&Index> = displacing_indexes(table, key_columns).collect();
    let probes: Vec<Probe> = indexes.iter().map(|index| probe(table, index)).collect();
    if probes.is_empty() {
        return Vec::new();
    }
    let key: Vec<String> = key_expressions(table, key_columns);
    let slots: String = (0..key.len()).map(|i| format!(", k{i}")).collect();
    let other_key = key.iter().map(|k| format!("{k} IS NEW.{k} COLLATE BINARY")).collect::<Vec<_>>().join(" AND ");
    let target = quote(&table.name);
    let logs: String = probes
        .iter()
        .map(|probe| {
            format!(
                "INSERT INTO {CHANGES_TABLE} (tbl, {WRITTEN_AT}{slots}) SELECT {id}, julianday('now'), {} FROM {target} WHERE {} AND NOT ({other_key}); ",
                key.join(", "),
                probe.collides
            )
        })
        .collect();
    // An UPDATE that leaves every indexed column alone collides with nothing but its own row.
    let watched: Option<Vec<String>> = probes.iter().try_fold(Vec::<String>::new(), |mut all, probe| {
        for column in probe.reads.as_ref()? {
            if !all.contains(column) {
                all.push(column.clone());
            }
        }
        Some(all)
    });
    let update_of = match watched {
        Some(columns) if !columns.is_empty() => {
            format!("UPDATE OF {}", columns.iter().map(|c| quote(c)).collect::<Vec<_>>().join(", "))
        }
        _ => "UPDATE".to_string(),
    };
    [("insert", "INSERT".to_string()), ("update", update_of)]
        .into_iter()
        .map(|(name, event)| {
            format!(
                "CREATE TRIGGER \"{OWN_PREFIX}{id}_displace_{name}\" BEFORE {event} ON {target} BEGIN {} {logs}END",
                probes_mark(&indexes)
            )
        })
        .collect()
}

/// Names the indexes a displacement trigger probes, in a comment SQLite keeps in the trigger's text (hex, so no
/// name can end the comment), for `unprobed_indexes` to read back.
fn probes_mark(indexes: &[&Index]) -> String {
    let names: String = indexes.iter().map(|index| format!(" {}", crate::mapping::types::hex(index.name.as_bytes()))).collect();
    format!("/* {PROBES_MARK}{names} */")
}

/// The index names in a displacement trigger's `probes_mark`, or `None` for a trigger made before it had one.
fn probed_names(trigger_sql: &str) -> Option<Vec<String>> {
    let start = trigger_sql.find(PROBES_MARK)? + PROBES_MARK.len();
    let end = start + trigger_sql[start..].find("*/")?;
    trigger_sql[start..end].split_whitespace().map(unhex).collect()
}

fn unhex(text: &str) -> Option<String> {
    let bytes =
        (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
}

/// Unique indexes of `table` its installed capture triggers do not probe: a REPLACE through one of them since
/// they were installed (the index is newer, or lite2pg was) may have displaced rows without logging them.
pub fn unprobed_indexes(conn: &Connection, table: &Table, captured: &CapturedTable) -> Result<Vec<String>> {
    let trigger_sql = |suffix: &str| -> Result<Option<String>> {
        let name = format!("{OWN_PREFIX}{}_{suffix}", captured.id);
        Ok(conn
            .query_row("SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = ?1", [name], |r| r.get(0))
            .optional()?)
    };
    if trigger_sql("insert")?.is_none() {
        // Not captured now: the table is copied whole when capture is installed.
        return Ok(Vec::new());
    }
    let probed = match trigger_sql("displace_insert")? {
        None => Vec::new(),
        Some(sql) => probed_names(&sql).unwrap_or_else(|| format_2_probes(table, &captured.key_columns)),
    };
    Ok(displacing_indexes(table, &captured.key_columns)
        .map(|index| index.name.clone())
        .filter(|name| !probed.contains(name))
        .collect())
}

/// What displacement triggers of capture format 2 before the mark probed: unique column indexes, not partial,
/// other than the key's.
fn format_2_probes(table: &Table, key_columns: &[String]) -> Vec<String> {
    table
        .indexes
        .iter()
        .filter(|index| index.unique && !index.partial && index.columns.as_ref().is_some_and(|columns| columns != key_columns))
        .map(|index| index.name.clone())
        .collect()
}

/// The unique indexes through which a REPLACE can displace a row with another key.
pub fn displacing_indexes<'a>(table: &'a Table, key_columns: &'a [String]) -> impl Iterator<Item = &'a Index> + 'a {
    table.indexes.iter().filter(|index| index.unique && !is_binary_key_index(index, key_columns))
}

/// The key's own index when it compares byte for byte: a row colliding there has the same key, so it is
/// logged by the capture triggers already.
fn is_binary_key_index(index: &Index, key_columns: &[String]) -> bool {
    let same_columns = index.columns.as_ref().is_some_and(|columns| {
        !key_columns.is_empty() && columns.len() == key_columns.len() && columns.iter().all(|c| key_columns.contains(c))
    });
    same_columns && index.collations.iter().all(|c| c.eq_ignore_ascii_case("BINARY"))
}

/// How to find the existing rows a new row collides with in one unique index.
struct Probe {
    /// SQL condition on an existing row (its columns unqualified) and `NEW`.
    collides: String,
    /// The columns the index reads, or `None` when it could not be read.
    reads: Option<Vec<String>>,
}

/// The probe for `index`; for an index whose SQL cannot be read, every row of the table (safe, but slow on a
/// large table), said in a warning.
fn probe(table: &Table, index: &Index) -> Probe {
    let columns: Vec<String> = table.columns.iter().map(|c| c.name.clone()).collect();
    exact_probe(index, &columns).unwrap_or_else(|| {
        tracing::warn!(
            "cannot read unique index {:?} of table {:?}: every INSERT and UPDATE of the table logs all its rows, so \
             that rows a REPLACE displaces through this index still reach PostgreSQL; writes to a large table slow down",
            index.name,
            table.name
        );
        Probe { collides: "1".to_string(), reads: None }
    })
}

/// Each indexed term equal under the index's collation for the existing row and for `NEW`, and the WHERE clause
/// of a partial index holding for both.
fn exact_probe(index: &Index, columns: &[String]) -> Option<Probe> {
    let (terms, predicate) = match (&index.columns, index.partial) {
        (Some(indexed), false) => (indexed.iter().map(|c| quote(c)).collect(), None),
        _ => {
            let parsed = parse_index(index.sql.as_deref()?)?;
            (parsed.terms, parsed.predicate)
        }
    };
    if terms.len() != index.collations.len() {
        return None;
    }
    let mut reads: Vec<String> = Vec::new();
    let mut on_new = |expr: &str| -> Option<String> {
        let (text, used) = on_row(expr, columns, "NEW")?;
        reads.extend(used.into_iter().filter(|c| !reads.contains(c)).collect::<Vec<_>>());
        Some(text)
    };
    let mut conditions = Vec::new();
    for (term, collation) in terms.iter().zip(&index.collations) {
        conditions.push(format!("({term}) COLLATE {} = ({})", quote(collation), on_new(term)?));
    }
    if let Some(predicate) = predicate {
        conditions.push(format!("({predicate}) AND ({})", on_new(&predicate)?));
    }
    Some(Probe { collides: conditions.join(" AND "), reads: Some(reads) })
}

/// The SQL expressions for a table's capture key: its key columns, or a name that reaches the rowid.
fn key_expressions(table: &Table, key_columns: &[String]) -> Vec<String> {
    if key_columns.is_empty() {
        vec![table.rowid_name().expect("tables keyed by rowid have one").to_string()]
    } else {
        key_columns.iter().map(|c| quote(c)).collect()
    }
}

fn drop_triggers(conn: &Connection) -> Result<()> {
    let names: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE '\\_lite2pg\\_%' ESCAPE '\\'")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for name in names {
        conn.execute_batch(&format!("DROP TRIGGER IF EXISTS {}", quote(&name)))?;
    }
    Ok(())
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
    let meta = |key: &str| -> Result<String> {
        Ok(conn.query_row(&format!("SELECT value FROM {META_TABLE} WHERE key = ?1"), [key], |r| r.get(0))?)
    };
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
    Ok(Some(CaptureState { database_id: meta("database_id")?, source_id: meta("source_id")?, tables }))
}

/// The capture state of a file commands expect to be synced already; an error saying so when it is not.
pub fn require_state(conn: &Connection, path: &std::path::Path) -> Result<CaptureState> {
    read_state(conn)?.ok_or_else(|| {
        Error::new(ErrorKind::State, format!("{} has no lite2pg capture installed", path.display()))
            .with_hint("nothing was synced from it yet: start with `lite2pg run`")
    })
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
    let key = key_expressions(table, &captured.key_columns);
    let mut stmt = conn.prepare(&format!("SELECT {} FROM {}", key.join(", "), quote(&table.name)))?;
    let mut rows = stmt.query([])?;
    let mut found = Vec::new();
    while let Some(row) = rows.next()? {
        let mut values = Vec::with_capacity(key.len());
        crate::sqlite::scan::read_values(row, 0, key.len(), &mut values)?;
        let json = serde_json::Value::Array(values.iter().map(SqlValue::to_json).collect());
        if wanted.contains(&json) {
            found.push(values);
        }
    }
    Ok(found)
}

/// Deletes log entries below `applied_seq` in short write transactions. The entry at `applied_seq` itself stays,
/// so the log's largest seq never falls and SQLite never hands out a used seq again.
pub fn prune(conn: &Connection, applied_seq: i64) -> Result<u64> {
    let mut deleted = 0u64;
    loop {
        // The bound is computed first so each DELETE is a short range scan, not a scan of the whole backlog.
        let oldest: Option<i64> = conn.query_row(&format!("SELECT min(seq) FROM {CHANGES_TABLE}"), [], |r| r.get(0))?;
        let Some(oldest) = oldest.filter(|oldest| *oldest < applied_seq) else { return Ok(deleted) };
        let below = applied_seq.min(oldest.saturating_add(PRUNE_CHUNK));
        deleted += conn.execute(&format!("DELETE FROM {CHANGES_TABLE} WHERE seq < ?1"), [below])? as u64;
        crate::fail_point!("prune-between-chunks");
    }
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
    use crate::sqlite::introspect::read_schema;

    fn setup(sql: &str) -> Result<(Connection, CaptureState)> {
        let mut conn = Connection::open_in_memory()?;
        conn.execute_batch(sql)?;
        let schema = read_schema(&conn)?;
        let tables: Vec<&Table> = schema.tables.iter().collect();
        let state = install(&mut conn, &tables, None)?;
        Ok((conn, state))
    }

    fn log(conn: &Connection) -> Result<Vec<(i64, String)>> {
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
    fn logs_rows_that_insert_or_replace_displaces() -> Result<()> {
        let (conn, state) = setup("CREATE TABLE u(id INTEGER PRIMARY KEY, email TEXT UNIQUE); INSERT INTO u VALUES (1, 'a');")?;
        let u = state.table("u").unwrap().id;
        conn.execute_batch("INSERT OR REPLACE INTO u VALUES (2, 'a'); INSERT OR IGNORE INTO u VALUES (3, NULL);")?;
        assert_eq!(log(&conn)?, [(u, "1".into()), (u, "2".into()), (u, "3".into())]);
        assert!(conn.execute("INSERT INTO u VALUES (4, 'a')", []).is_err());
        assert_eq!(log(&conn)?.len(), 3, "a failed statement leaves no log rows");
        Ok(())
    }

    /// The keys logged after the first `skip` entries, as `log` shows them.
    fn logged_after(conn: &Connection, skip: usize) -> Result<Vec<String>> {
        Ok(log(conn)?.into_iter().skip(skip).map(|(_, key)| key).collect())
    }

    #[test]
    fn logs_rows_displaced_through_expression_and_partial_indexes() -> Result<()> {
        let (conn, _) = setup(
            "CREATE TABLE p(id INTEGER PRIMARY KEY, name TEXT, active INT);
             CREATE UNIQUE INDEX p_lower ON p(lower(name));
             CREATE TABLE q(id INTEGER PRIMARY KEY, email TEXT, active INT);
             CREATE UNIQUE INDEX q_active ON q(email) WHERE active = 1;",
        )?;
        conn.execute_batch("INSERT INTO p VALUES (1, 'Ann', 1), (2, 'Bob', 1); INSERT INTO q VALUES (1, 'a', 1), (2, 'a', 0);")?;
        let before = log(&conn)?.len();
        conn.execute_batch("INSERT OR REPLACE INTO p VALUES (3, 'ANN', 0);")?;
        assert_eq!(logged_after(&conn, before)?, ["1", "3"]);
        conn.execute_batch("REPLACE INTO q VALUES (3, 'a', 1); REPLACE INTO q VALUES (4, 'a', 0);")?;
        assert_eq!(logged_after(&conn, before + 2)?, ["1", "3", "4"], "only the active row collided");
        conn.execute_batch("UPDATE OR REPLACE p SET name = 'bob' WHERE id = 3;")?;
        assert_eq!(logged_after(&conn, before + 5)?, ["2", "3"]);
        conn.execute_batch("UPDATE p SET active = 0;")?;
        assert_eq!(logged_after(&conn, before + 7)?, ["3"], "an update of other columns probes nothing");
        Ok(())
    }

    #[test]
    fn logs_rows_displaced_under_a_collation() -> Result<()> {
        let (conn, _) = setup(
            "CREATE TABLE n(k TEXT PRIMARY KEY COLLATE NOCASE, v);
             CREATE TABLE r(id INTEGER PRIMARY KEY, name TEXT);
             CREATE UNIQUE INDEX r_name ON r(name COLLATE RTRIM);
             CREATE TABLE plain(k TEXT PRIMARY KEY, v);",
        )?;
        conn.execute_batch("INSERT INTO n VALUES ('abc', 1); INSERT INTO r VALUES (1, 'a');")?;
        conn.execute_batch("INSERT OR REPLACE INTO n VALUES ('ABC', 2); INSERT OR REPLACE INTO r VALUES (2, 'a  ');")?;
        assert_eq!(logged_after(&conn, 2)?, ["'abc'", "'ABC'", "1", "2"]);
        conn.execute_batch("INSERT INTO n VALUES ('x', 1) ON CONFLICT (k) DO UPDATE SET v = 3;")?;
        let triggers: i64 = conn.query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'plain' AND name LIKE '%displace%'",
            [],
            |r| r.get(0),
        )?;
        assert_eq!(triggers, 0, "a key compared byte for byte needs no displacement triggers");
        Ok(())
    }

    #[test]
    fn an_index_it_cannot_read_logs_every_row() -> Result<()> {
        let (conn, _) = setup(
            "CREATE TABLE t(id INTEGER PRIMARY KEY, a, b); CREATE UNIQUE INDEX t_a ON t(a) WHERE t.b > 1;
             INSERT INTO t VALUES (1, 1, 2), (2, 2, 2);",
        )?;
        conn.execute_batch("INSERT OR REPLACE INTO t VALUES (3, 1, 5);")?;
        assert_eq!(logged_after(&conn, 0)?, ["1", "2", "3"]);
        Ok(())
    }

    #[test]
    fn finds_unique_indexes_made_after_its_triggers() -> Result<()> {
        let (mut conn, state) = setup("CREATE TABLE t(id INTEGER PRIMARY KEY, a TEXT UNIQUE, b TEXT);")?;
        let unprobed = |conn: &Connection| -> Result<Vec<String>> {
            let schema = read_schema(conn)?;
            unprobed_indexes(conn, schema.table("t").unwrap(), state.table("t").unwrap())
        };
        assert_eq!(unprobed(&conn)?, Vec::<String>::new());
        conn.execute_batch("CREATE UNIQUE INDEX \"t*/b\" ON t(lower(b));")?;
        assert_eq!(unprobed(&conn)?, ["t*/b"]);
        let schema = read_schema(&conn)?;
        install(&mut conn, &schema.tables.iter().collect::<Vec<_>>(), None)?;
        assert_eq!(unprobed(&conn)?, Vec::<String>::new(), "probed once the triggers are installed again");
        // A trigger of format 2 without the mark probed the plain unique column only.
        let id = state.table("t").unwrap().id;
        conn.execute_batch(&format!(
            "DROP TRIGGER _lite2pg_{id}_displace_insert; CREATE TRIGGER _lite2pg_{id}_displace_insert BEFORE INSERT ON t BEGIN SELECT 1; END;"
        ))?;
        assert_eq!(unprobed(&conn)?, ["t*/b"]);
        Ok(())
    }

    #[test]
    fn prune_keeps_the_newest_entry() -> Result<()> {
        let (conn, _) = setup("CREATE TABLE t(id INTEGER PRIMARY KEY);")?;
        conn.execute_batch(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 12000) INSERT INTO t SELECT i FROM n;",
        )?;
        assert_eq!(prune(&conn, 12000)?, 11999);
        conn.execute("INSERT INTO t VALUES (0)", [])?;
        assert_eq!(newest_seq(&conn)?, 12001);
        Ok(())
    }

    #[test]
    fn the_canary_moves_when_vacuum_renumbers_rowids() -> Result<()> {
        let (mut conn, _) = setup("CREATE TABLE t(x); INSERT INTO t VALUES (1), (2); DELETE FROM t WHERE x = 1;")?;
        assert!(!vacuumed(&conn)?);
        conn.execute_batch("VACUUM")?;
        assert!(vacuumed(&conn)?);
        assert_eq!(conn.query_row("SELECT rowid FROM t", [], |r| r.get::<_, i64>(0))?, 1, "the table was renumbered too");
        arm_canary(&mut conn)?;
        assert!(!vacuumed(&conn)?);
        assert!(uninstall(&mut conn)?);
        let left: i64 = conn.query_row("SELECT count(*) FROM sqlite_master WHERE name LIKE '%lite2pg%'", [], |r| r.get(0))?;
        assert_eq!(left, 0);
        Ok(())
    }

    #[test]
    fn a_rewritten_log_is_told_from_the_applied_one() -> Result<()> {
        let (mut conn, _) = setup("CREATE TABLE t(id INTEGER PRIMARY KEY);")?;
        let (seq, mark) = mark_position(&mut conn)?;
        let path = std::path::Path::new("app.db");
        assert_eq!(check_position(&conn, path, seq, mark.as_deref())?, seq, "an empty log gets an entry to check");
        conn.execute_batch("INSERT INTO t VALUES (1);")?;
        let applied = newest_seq(&conn)?;
        let applied_mark = entry_mark(&conn, applied)?;
        // A restored copy from before that insert, then more writes than were lost: the seq comes again.
        conn.execute_batch(&format!("DELETE FROM {CHANGES_TABLE} WHERE seq = {applied};"))?;
        assert!(check_position(&conn, path, applied, applied_mark.as_deref()).is_err(), "the log ends before the position");
        std::thread::sleep(std::time::Duration::from_millis(5));
        conn.execute_batch("INSERT INTO t VALUES (2); INSERT INTO t VALUES (3);")?;
        let err = check_position(&conn, path, applied, applied_mark.as_deref()).unwrap_err();
        assert!(err.message().contains("restored from an older copy"), "{err}");
        assert_eq!(err.kind(), ErrorKind::State);
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
