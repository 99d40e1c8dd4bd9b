//! Cutover: the last step of a migration. Applies the last changes while new SQLite writes wait, proves equality,
//! makes PostgreSQL ready for the application's own writes (keys that generate values after the highest ever
//! used, generated columns, CHECK constraints, unique expression and partial indexes, UNIQUE checked at once and
//! foreign keys validated with SQLite's ON DELETE / ON UPDATE actions),
//! lists everything it could not carry, marks the source promoted and removes capture. A dry run does all of it
//! in a transaction it rolls back, so its list is the real one.

use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension};
use serde::Serialize;
use tokio_postgres::Client;

use crate::app_constraints;
use crate::constraints::missing_for_source;
use crate::error::{Error, ErrorKind, Result};
use crate::ident::{qualified, quote};
use crate::mapping::ddl::deferred_unique_indexes;
use crate::mapping::layout::Layout;
use crate::mapping::table::{KeyPlan, TablePlan, ROWID_COLUMN};
use crate::metrics::Metrics;
use crate::options::SnapshotOptions;
use crate::pg::apply::existing_plan;
use crate::pg::state;
use crate::pg::tx::{savepoint, Tx};
use crate::sqlite::capture::{self, CaptureState};
use crate::sqlite::introspect::{read_schema, Table, OWN_PREFIX};
use crate::sqlite::{open, Access};
use crate::stream::StopWhen;

/// How a cutover behaves.
#[derive(Debug, Clone)]
pub struct CutoverOptions {
    pub source: SnapshotOptions,
    /// Longest wait for the SQLite write lock (the application's writers finishing).
    pub wait_for_writers: Duration,
    pub keep_capture: bool,
    pub dry_run: bool,
}

/// What kind of thing was not carried over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NotCarriedKind {
    Trigger,
    View,
    /// A virtual table (FTS, R*Tree, …): never copied.
    VirtualTable,
    /// A generated column left a plain column in PostgreSQL.
    GeneratedColumn,
    /// A default PostgreSQL did not get.
    Default,
    /// A NOT NULL, UNIQUE or foreign key SQLite declares that PostgreSQL lacks.
    MissingConstraint,
    /// A foreign key left NOT VALID: rows break it.
    NotValid,
    /// A CHECK constraint PostgreSQL refused.
    Check,
    /// A unique expression or partial index PostgreSQL refused.
    UniqueIndex,
}

/// Something the application relies on that was not carried over, with its SQL to port by hand.
#[derive(Debug, Clone, Serialize)]
pub struct NotCarried {
    pub kind: NotCarriedKind,
    pub what: String,
    pub sql: String,
}

/// What a cutover did (or, with `--dry-run`, would do).
#[derive(Debug, Clone, Serialize)]
pub struct CutoverReport {
    pub source_id: String,
    pub statements: Vec<String>,
    /// Generated columns PostgreSQL computes now (`table.column`): each is now its table's last column.
    pub generated: Vec<String>,
    pub not_carried: Vec<NotCarried>,
    pub promoted: bool,
    pub capture_removed: bool,
}

/// Runs the cutover.
pub async fn cutover(options: &CutoverOptions) -> Result<CutoverReport> {
    let source = &options.source.source;
    if source.policies.layout.shares_tables() {
        return Err(Error::new(
            ErrorKind::Usage,
            "cutover hands one source's tables to its application; these tables are shared by several sources",
        )
        .with_hint("cut over from a layout with a schema per source"));
    }
    catch_up(&options.source).await?;
    let conn = open(&source.sqlite, Access::ReadWrite)?;
    conn.busy_timeout(options.wait_for_writers)?;
    let capture = capture::require_state(&conn, &source.sqlite)?;
    let client = source.target.connect().await?;
    let applied =
        hold_writes_when_caught_up(&conn, &client, &options.source, &capture.source_id, options.wait_for_writers).await?;
    tracing::info!("new SQLite writes wait until the cutover ends; PostgreSQL is at position {applied}");
    let result = finish(options, &conn, &client, &capture).await;
    let end = if result.as_ref().is_ok_and(|r| r.capture_removed) { "COMMIT" } else { "ROLLBACK" };
    conn.execute_batch(end)?;
    result
}

/// Applies the backlog; refuses while a daemon owns the source (cutover must be the only applier).
async fn catch_up(source: &SnapshotOptions) -> Result<()> {
    match crate::stream::run(source, StopWhen::CaughtUp, Metrics::new(Default::default()), |_| {}).await {
        Err(err) if err.kind() == ErrorKind::Locked => Err(Error::new(ErrorKind::Locked, err.message().to_string())
            .with_hint("stop `lite2pg run` for this source, then cut over")),
        other => other.map(|_| ()),
    }
}

/// Takes the SQLite write lock once PostgreSQL has every committed change; returns the position.
async fn hold_writes_when_caught_up(
    conn: &Connection,
    client: &Client,
    source: &SnapshotOptions,
    source_id: &str,
    wait: Duration,
) -> Result<i64> {
    let deadline = Instant::now() + wait;
    loop {
        conn.execute_batch("BEGIN IMMEDIATE").map_err(|err| {
            Error::from(err).context(format!("the application's writers held the SQLite write lock for over {}s", wait.as_secs()))
        })?;
        let newest = capture::newest_seq(conn)?;
        let applied = state::source(client, source_id).await?.map_or(0, |row| row.applied_seq);
        if newest <= applied {
            return Ok(applied);
        }
        conn.execute_batch("ROLLBACK")?;
        if Instant::now() > deadline {
            return Err(Error::new(ErrorKind::SqliteBusy, "the application kept writing; PostgreSQL could not catch up")
                .with_hint("stop the application's writes (or raise --wait-for-writers), then cut over"));
        }
        catch_up(source).await?;
    }
}

async fn finish(options: &CutoverOptions, conn: &Connection, client: &Client, capture: &CaptureState) -> Result<CutoverReport> {
    let source_id = capture.source_id.as_str();
    let source = &options.source.source;
    let report = crate::verify::verify(source).await?;
    let known_rejects: u64 = report.tables.iter().map(|t| t.known_rejects).sum();
    if !report.is_equal() || known_rejects > 0 {
        return Err(Error::new(
            ErrorKind::State,
            format!(
                "PostgreSQL is not equal to SQLite: {} differing row(s), {known_rejects} unresolved reject(s); nothing was changed",
                report.differences()
            ),
        )
        .with_hint("see `lite2pg verify` and `SELECT * FROM lite2pg.rejects`; fix them, then cut over again"));
    }
    let row = state::source(client, source_id).await?.expect("verified sources have a row");
    let schema = read_schema(conn)?;
    if row.into_existing {
        let statements = application_sequences(conn, client, &row.target_schema, &schema, capture).await?;
        let report = CutoverReport::new(source_id, statements, not_carried_objects(conn)?);
        return promote(options, conn, client, report, &row.target_schema, &[]).await;
    }
    let mut statements = Vec::new();
    let mut not_carried = not_carried_objects(conn)?;
    let mut with_generated = Vec::new();
    let mut key_actions = Vec::new();
    for captured in &capture.tables {
        let Some(table) = schema.table(&captured.name) else { continue };
        if table.columns.iter().any(|c| c.generated.is_some()) {
            with_generated.push(table);
        }
        let plan = existing_plan(client, &row.target_schema, table, &captured.key_columns).await?;
        statements.extend(key_generator(conn, client, &row.target_schema, table, &plan).await?);
        statements.extend(check_constraints(conn, &row.target_schema, table)?);
        statements.extend(deferred_unique_indexes(&row.target_schema, table).into_iter().map(|s| s.sql));
        not_carried.extend(untranslated_defaults(table, &plan));
        key_actions.extend(app_constraints::foreign_key_actions(client, &row.target_schema, table).await?);
    }
    // Unique constraints first: remaking one remakes the foreign keys on it, which then take their actions.
    statements.extend(app_constraints::immediate_unique(client, &row.target_schema).await?);
    statements.extend(key_actions);
    statements.extend(unvalidated_foreign_keys(client, &row.target_schema).await?);
    let missing = missing_for_source(client, &row.target_schema, &schema, &capture.tables, Layout::SchemaPerSource).await?;
    not_carried.extend(missing.into_iter().map(|m| NotCarried {
        kind: NotCarriedKind::MissingConstraint,
        what: format!("{m}, missing in PostgreSQL"),
        sql: m.sql,
    }));
    let report = CutoverReport::new(source_id, statements, not_carried);
    promote(options, conn, client, report, &row.target_schema, &with_generated).await
}

impl CutoverReport {
    fn new(source_id: &str, statements: Vec<String>, not_carried: Vec<NotCarried>) -> CutoverReport {
        CutoverReport {
            source_id: source_id.to_string(),
            statements,
            generated: Vec::new(),
            not_carried,
            promoted: false,
            capture_removed: false,
        }
    }
}

/// Runs the report's statements (rolled back for a dry run), marks the source promoted and removes capture.
async fn promote(
    options: &CutoverOptions,
    conn: &Connection,
    client: &Client,
    mut report: CutoverReport,
    schema: &str,
    with_generated: &[&Table],
) -> Result<CutoverReport> {
    apply(client, &mut report, schema, with_generated, options.dry_run).await?;
    if options.dry_run {
        return Ok(report);
    }
    crate::pg::state::promote(client, &report.source_id).await?;
    report.promoted = true;
    if !options.keep_capture {
        capture::remove_objects(conn)?;
        report.capture_removed = true;
    }
    Ok(report)
}

/// `--into-existing`: the application's schema is its own and complete; only its sequences (identities,
/// serial columns) move past the highest value used, in SQLite's rows or its AUTOINCREMENT memory.
async fn application_sequences(
    conn: &Connection,
    client: &Client,
    target_schema: &str,
    schema: &crate::sqlite::introspect::SourceSchema,
    capture: &CaptureState,
) -> Result<Vec<String>> {
    let mut plans = Vec::new();
    for captured in &capture.tables {
        let Some(table) = schema.table(&captured.name) else { continue };
        plans.extend(crate::existing::app_plan(client, target_schema, table, &captured.key_columns).await?);
    }
    let remembered = |table: &str| autoincrement_memory(conn, table);
    crate::existing::sequence_restarts(client, target_schema, &plans.iter().collect::<Vec<_>>(), remembered).await
}

/// Makes the generated columns, then runs the statements, in one transaction (rolled back for a dry run); a
/// generated column, CHECK, unique index or foreign key PostgreSQL cannot take is reported instead of failing all.
async fn apply(
    client: &Client,
    report: &mut CutoverReport,
    schema: &str,
    with_generated: &[&Table],
    dry_run: bool,
) -> Result<()> {
    let tx = Tx::begin(client).await?;
    let mut kept = Vec::new();
    for table in with_generated {
        for outcome in crate::generated::make_generated(client, schema, table).await? {
            match outcome.result {
                Ok(statement) => {
                    kept.push(statement);
                    report.generated.push(outcome.column);
                }
                Err(reason) => report.not_carried.push(NotCarried {
                    kind: NotCarriedKind::GeneratedColumn,
                    what: format!("generated column {} stays a plain column in PostgreSQL: {reason}", outcome.column),
                    sql: format!("GENERATED ALWAYS AS ({})", outcome.expression),
                }),
            }
        }
    }
    for statement in std::mem::take(&mut report.statements) {
        let Some((kind, what)) = refusable(&statement) else {
            if let Err(err) = tx.batch_execute(&statement).await {
                tx.rollback().await?;
                return Err(Error::from(err).context(format!("cutover statement failed, nothing was changed: {statement}")));
            }
            kept.push(statement);
            continue;
        };
        let (in_tx, sql): (&Client, &str) = (&tx, &statement);
        let refused = savepoint(in_tx, || async move {
            let executed = in_tx.batch_execute(sql).await;
            Ok(executed.map_err(|err| err.as_db_error().map_or_else(|| err.to_string(), |db| db.message().to_string())))
        })
        .await?;
        match refused {
            Ok(()) => kept.push(statement),
            Err(reason) => report.not_carried.push(NotCarried { kind, what: format!("{what} ({reason})"), sql: statement }),
        }
    }
    match dry_run {
        true => tx.rollback().await?,
        false => tx.commit().await?,
    }
    report.statements = kept;
    Ok(())
}

/// What a statement adds when PostgreSQL may refuse it without failing the cutover: a CHECK (its SQLite
/// expression may not be PostgreSQL's), a unique index (PostgreSQL's functions and collations may find
/// duplicates SQLite's did not) or a foreign key's validation (SQLite let rows break it).
fn refusable(statement: &str) -> Option<(NotCarriedKind, &'static str)> {
    if statement.contains(" CHECK (") {
        Some((NotCarriedKind::Check, "CHECK constraint PostgreSQL refused"))
    } else if statement.contains("CREATE UNIQUE INDEX") {
        Some((NotCarriedKind::UniqueIndex, "unique index PostgreSQL refused"))
    } else if statement.contains(" VALIDATE CONSTRAINT ") {
        Some((NotCarriedKind::NotValid, "foreign key stays NOT VALID: rows break it"))
    } else {
        None
    }
}

/// An identity on the rowid key (INTEGER PRIMARY KEY, or lite2pg's rowid column) starting after the highest
/// value ever used: `sqlite_sequence` remembers AUTOINCREMENT values of deleted rows.
async fn key_generator(
    conn: &Connection,
    client: &Client,
    schema: &str,
    table: &Table,
    plan: &TablePlan,
) -> Result<Option<String>> {
    let column = match (&plan.key, table.rowid_alias()) {
        (KeyPlan::Rowid, _) => ROWID_COLUMN.to_string(),
        (KeyPlan::Columns(_), Some(alias)) => crate::mapping::table::pg_column_name(alias),
        (KeyPlan::Columns(_), None) => return Ok(None),
    };
    let relation = qualified(schema, &table.name);
    if crate::pg::catalog::is_identity(client, &relation, &column).await? {
        return Ok(None);
    }
    let highest: i64 =
        client.query_one(&format!("SELECT coalesce(max({}), 0) FROM {relation}", quote(&column)), &[]).await?.get(0);
    let remembered = autoincrement_memory(conn, &table.name)?;
    let start = highest.max(remembered.unwrap_or(0)) + 1;
    Ok(Some(format!(
        "ALTER TABLE {relation} ALTER COLUMN {} ADD GENERATED BY DEFAULT AS IDENTITY (START WITH {start})",
        quote(&column)
    )))
}

/// The highest key `sqlite_sequence` remembers for an AUTOINCREMENT table (also of rows deleted since).
fn autoincrement_memory(conn: &Connection, table: &str) -> Result<Option<i64>> {
    let has_sequence_table: bool =
        conn.query_row("SELECT count(*) > 0 FROM sqlite_master WHERE name = 'sqlite_sequence'", [], |r| r.get(0))?;
    Ok(match has_sequence_table {
        true => conn.query_row("SELECT seq FROM sqlite_sequence WHERE name = ?1", [table], |r| r.get(0)).optional()?,
        false => None,
    })
}

/// The table's CHECK constraints, as written in SQLite; PostgreSQL takes most as they are.
fn check_constraints(conn: &Connection, schema: &str, table: &Table) -> Result<Vec<String>> {
    let sql: String =
        conn.query_row("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?1", [&table.name], |r| r.get(0))?;
    Ok(check_expressions(&sql)
        .into_iter()
        .enumerate()
        .map(|(i, expr)| {
            let name = format!("{}_check_{}", table.name, i + 1);
            format!("ALTER TABLE {} ADD CONSTRAINT {} CHECK ({expr})", qualified(schema, &table.name), quote(&name))
        })
        .collect())
}

/// The expressions inside `CHECK (…)` clauses of a CREATE TABLE statement.
fn check_expressions(sql: &str) -> Vec<String> {
    let bytes = sql.as_bytes();
    let (mut found, mut i, mut quote_char) = (Vec::new(), 0, None);
    while i < bytes.len() {
        let c = bytes[i];
        match quote_char {
            Some(q) if c == q => quote_char = None,
            Some(_) => {}
            None if matches!(c, b'\'' | b'"' | b'`' | b'[') => quote_char = Some(if c == b'[' { b']' } else { c }),
            None if sql[i..].len() >= 5
                && sql[i..i + 5].eq_ignore_ascii_case("check")
                && (i == 0 || !bytes[i - 1].is_ascii_alphanumeric()) =>
            {
                let open = i + 5 + sql[i + 5..].len() - sql[i + 5..].trim_start().len();
                if bytes.get(open) == Some(&b'(') {
                    if let Some(close) = matching_paren(sql, open) {
                        found.push(sql[open + 1..close].trim().to_string());
                        i = close;
                    }
                }
            }
            None => {}
        }
        i += 1;
    }
    found
}

fn matching_paren(sql: &str, open: usize) -> Option<usize> {
    let (mut depth, mut quote_char) = (0, None);
    for (i, c) in sql.bytes().enumerate().skip(open) {
        match quote_char {
            Some(q) if c == q => quote_char = None,
            Some(_) => {}
            None => match c {
                b'\'' | b'"' => quote_char = Some(c),
                b'(' => depth += 1,
                b')' => {
                    depth -= 1;
                    if depth == 0 {
                        return Some(i);
                    }
                }
                _ => {}
            },
        }
    }
    None
}

/// Defaults PostgreSQL did not get because lite2pg cannot translate them.
fn untranslated_defaults(table: &Table, plan: &TablePlan) -> Vec<NotCarried> {
    table
        .columns
        .iter()
        .zip(&plan.columns)
        .filter(|(column, planned)| column.default_sql.is_some() && planned.default_sql.is_none())
        .map(|(column, _)| NotCarried {
            kind: NotCarriedKind::Default,
            what: format!("default of {}.{}", table.name, column.name),
            sql: column.default_sql.clone().unwrap_or_default(),
        })
        .collect()
}

/// Foreign keys the snapshot left NOT VALID.
async fn unvalidated_foreign_keys(client: &Client, schema: &str) -> Result<Vec<String>> {
    let keys = crate::pg::catalog::unvalidated_foreign_keys(client, schema).await?;
    Ok(keys.iter().map(|(table, name)| format!("ALTER TABLE {table} VALIDATE CONSTRAINT {}", quote(name))).collect())
}

/// The application's triggers, views and virtual tables: SQLite SQL to port by hand.
fn not_carried_objects(conn: &Connection) -> Result<Vec<NotCarried>> {
    let mut stmt = conn.prepare(
        "SELECT CASE type WHEN 'table' THEN 'virtual table' ELSE type END AS kind, name, sql FROM sqlite_master
         WHERE (type IN ('trigger', 'view') OR (type = 'table' AND sql LIKE 'CREATE VIRTUAL TABLE%'))
           AND name NOT LIKE ?1 ESCAPE '\\' ORDER BY kind, name",
    )?;
    let pattern = format!("{}%", OWN_PREFIX.replace('_', "\\_"));
    let rows = stmt.query_map([pattern], |r| {
        let (kind, name): (String, String) = (r.get(0)?, r.get(1)?);
        let kind_of = match kind.as_str() {
            "trigger" => NotCarriedKind::Trigger,
            "view" => NotCarriedKind::View,
            _ => NotCarriedKind::VirtualTable,
        };
        Ok(NotCarried { kind: kind_of, what: format!("{kind} {name}"), sql: r.get(2)? })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_check_clauses_but_not_strings_or_names() {
        let sql =
            "CREATE TABLE t(a INT CHECK (a > 0), \"check\" TEXT DEFAULT 'check (x)', b, CONSTRAINT c CHECK(b IN ('x)', 'y')))";
        assert_eq!(check_expressions(sql), ["a > 0", "b IN ('x)', 'y')"]);
    }
}
