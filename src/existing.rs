//! `--into-existing`: syncing into the tables an application made in PostgreSQL itself (Django's `migrate`,
//! Alembic, Rails). Tables and columns are matched by name (as `ident::pg_name` maps them), each column's type
//! is read from the catalog, and the application's DDL is never changed: no table, column, constraint or index
//! is created, altered or dropped. Columns only one side has are left out of the plans and reported; when one
//! appears on the other side, the table is copied again (its set of synced columns is recorded per table).
//!
//! Contract: a plan from here names only columns both sides have, in types lite2pg writes, and its key is the
//! PostgreSQL table's primary key, which must be the key SQLite's rows are logged by.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use serde::Serialize;
use tokio_postgres::GenericClient;

use crate::error::{Error, ErrorKind, Result};
use crate::ident::{pg_name, qualified};
use crate::mapping::table::{pg_column_name, TablePlan};
use crate::mapping::types::PgType;
use crate::options::SnapshotOptions;
use crate::pg::catalog::{self, primary_key};
use crate::pg::state::{self, SourceRow};
use crate::snapshot::{ColumnMapping, SnapshotReport};
use crate::source::Source;
use crate::sqlite::capture::mark_position;
use crate::sqlite::introspect::Table;
use crate::sqlite::{open, Access};

/// The PostgreSQL types a column may have in this mode (`PgType::from_format_type` reads them).
const WRITABLE_TYPES: &str = "boolean, smallint, integer, bigint, real, double precision, numeric, numeric(p,s), text, \
     character varying(n), bytea, date, time, timestamp, timestamp with time zone, uuid, json, jsonb";

/// Whether a source syncs into existing tables: as recorded for it, else as asked. Asking for it on a source
/// copied into lite2pg's own tables is an error, unless that copy is being replaced.
pub fn mode(asked: bool, recorded: Option<&SourceRow>, replacing: bool) -> Result<bool> {
    match recorded.filter(|row| row.snapshot_seq.is_some()) {
        Some(row) if row.into_existing => Ok(true),
        Some(row) if asked && !replacing => Err(Error::new(
            ErrorKind::Usage,
            format!(
                "source {} was copied into tables lite2pg created in schema {}, not into existing ones",
                row.source_id, row.target_schema
            ),
        )
        .with_hint("leave out --into-existing (LITE2PG_INTO_EXISTING) to keep syncing it, or `snapshot --replace --into-existing` to switch")),
        _ => Ok(asked),
    }
}

/// One column of an application's table, from the catalog.
/// The plan of `table` into the application's table of the same name: the columns both sides have, in the
/// catalog's types. `None` when PostgreSQL has no such table (yet). A key that differs from SQLite's, or a
/// column type lite2pg cannot write, is an error naming the table and column.
pub async fn app_plan(
    client: &impl GenericClient,
    schema: &str,
    table: &Table,
    key_columns: &[String],
) -> Result<Option<TablePlan>> {
    let Some(columns) = catalog::columns(client, schema, &table.name).await? else {
        return Ok(None);
    };
    check_key(client, schema, table, key_columns).await?;
    let writable: HashMap<&str, &catalog::Column> =
        columns.iter().filter(|c| !c.generated).map(|c| (c.name.as_str(), c)).collect();
    let mut shared = table.clone();
    shared.columns.retain(|c| writable.contains_key(pg_column_name(&c.name).as_str()));
    let types = shared
        .columns
        .iter()
        .map(|c| {
            let app = writable[pg_column_name(&c.name).as_str()];
            PgType::from_format_type(&app.type_name).ok_or_else(|| {
                Error::new(
                    ErrorKind::Schema,
                    format!(
                        "column {:?} of table {} has type {} in PostgreSQL, which lite2pg does not write",
                        c.name,
                        qualified(schema, &table.name),
                        app.type_name
                    ),
                )
                .with_hint(format!(
                    "lite2pg writes {WRITABLE_TYPES}; leave the table out with --exclude {:?}, or change the column's type",
                    table.name
                ))
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Some(TablePlan::new(&shared, &types, key_columns)))
}

/// Refuses a table whose PostgreSQL primary key is not the key SQLite's rows are logged by: rows could not be
/// matched one to one.
async fn check_key(client: &impl GenericClient, schema: &str, table: &Table, key_columns: &[String]) -> Result<()> {
    let wanted: Vec<String> = key_columns.iter().map(|c| pg_column_name(c)).collect();
    let found = primary_key(client, schema, &table.name).await?.map(|(_, columns)| columns);
    if !wanted.is_empty() && found.as_ref() == Some(&wanted) {
        return Ok(());
    }
    let sqlite_key = match key_columns.is_empty() {
        true => "no primary key without NULLs (its rows are known by rowid only)".to_string(),
        false => format!("primary key ({})", key_columns.join(", ")),
    };
    let postgres_key = match found {
        Some(columns) => format!("primary key ({})", columns.join(", ")),
        None => "no primary key".to_string(),
    };
    Err(Error::new(
        ErrorKind::Schema,
        format!(
            "table {:?} has {sqlite_key} in SQLite and {postgres_key} in PostgreSQL ({}): its rows cannot be matched",
            table.name,
            qualified(schema, &table.name)
        ),
    )
    .with_hint(format!("give both the same primary key, or leave the table out with --exclude {:?}", table.name)))
}

/// The PostgreSQL column names a plan writes, recorded per table to notice when its shared columns change.
pub fn synced_columns(plan: Option<&TablePlan>) -> Vec<String> {
    plan.map(|p| p.columns.iter().map(|c| c.pg_name.clone()).collect()).unwrap_or_default()
}

/// The tables in parent-first order of the foreign keys between them in PostgreSQL (names as PostgreSQL holds
/// them; cycles are broken where they close). Rows are upserted in this order and deleted in the reverse, so
/// that foreign keys which are not deferrable (Alembic's, SQLAlchemy's) hold after every statement.
pub async fn parent_first(client: &impl GenericClient, schema: &str, tables: &[String]) -> Result<Vec<String>> {
    let pairs = catalog::foreign_key_pairs(client, schema, tables).await?;
    let parents: Vec<(&String, &String)> = pairs.iter().map(|(child, parent)| (child, parent)).collect();
    let mut ordered: Vec<String> = Vec::new();
    let mut visiting = HashSet::new();
    fn visit<'a>(
        table: &'a String,
        parents: &[(&'a String, &'a String)],
        visiting: &mut HashSet<&'a String>,
        ordered: &mut Vec<String>,
    ) {
        if ordered.contains(table) || !visiting.insert(table) {
            return;
        }
        for (_, parent) in parents.iter().filter(|(child, _)| *child == table) {
            visit(parent, parents, visiting, ordered);
        }
        ordered.push(table.clone());
    }
    for table in tables {
        visit(table, &parents, &mut visiting, &mut ordered);
    }
    Ok(ordered)
}

/// A fingerprint of the shape of the application's tables named `tables` (PostgreSQL names): every column,
/// its type and whether it is generated. A migration of the PostgreSQL side changes it.
pub async fn shape(client: &impl GenericClient, schema: &str, tables: &[String]) -> Result<String> {
    let columns = catalog::columns_of_tables(client, schema, tables).await?;
    Ok(columns
        .iter()
        .map(|(table, column, type_name, generated)| format!("{table}.{column}:{type_name}:{generated}"))
        .collect::<Vec<_>>()
        .join(","))
}

/// What one side has and the other lacks, for `status`, `doctor` and the snapshot's notes.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Gaps {
    /// SQLite tables PostgreSQL lacks: captured, not written until the application makes them.
    pub tables_missing_in_postgres: Vec<String>,
    /// PostgreSQL tables of the schema no SQLite table maps to (besides migration tools' own).
    pub tables_missing_in_sqlite: Vec<String>,
    /// `table.column` SQLite has and PostgreSQL lacks: not written.
    pub columns_missing_in_postgres: Vec<String>,
    /// `table.column` PostgreSQL has and SQLite lacks: left to PostgreSQL's default (or generated there).
    pub columns_missing_in_sqlite: Vec<String>,
}

impl Gaps {
    pub fn is_empty(&self) -> bool {
        *self == Gaps::default()
    }

    /// One sentence per gap.
    pub fn sentences(&self) -> Vec<String> {
        let lists = [
            (&self.tables_missing_in_postgres, "SQLite table missing in PostgreSQL (not written until it exists there)"),
            (&self.tables_missing_in_sqlite, "PostgreSQL table without a SQLite table (left as it is)"),
            (&self.columns_missing_in_postgres, "SQLite column missing in PostgreSQL (not written until it exists there)"),
            (&self.columns_missing_in_sqlite, "PostgreSQL column without a SQLite column (left to its default)"),
        ];
        lists.iter().flat_map(|(names, what)| names.iter().map(move |name| format!("{what}: {name}"))).collect()
    }
}

/// Compares SQLite's `tables` with the application's tables in `schema`.
pub async fn gaps(client: &impl GenericClient, schema: &str, tables: &[&Table]) -> Result<Gaps> {
    let mut gaps = Gaps::default();
    let mapped: HashSet<String> = tables.iter().map(|t| pg_name(&t.name)).collect();
    for table in tables {
        let Some(columns) = catalog::columns(client, schema, &table.name).await? else {
            gaps.tables_missing_in_postgres.push(table.name.clone());
            continue;
        };
        // A column PostgreSQL generates is no gap when SQLite has it too: PostgreSQL computes its values.
        let sqlite_columns: HashSet<String> = table.columns.iter().map(|c| pg_column_name(&c.name)).collect();
        let postgres_columns: HashSet<&str> = columns.iter().map(|c| c.name.as_str()).collect();
        for column in table.columns.iter().filter(|c| !postgres_columns.contains(pg_column_name(&c.name).as_str())) {
            gaps.columns_missing_in_postgres.push(format!("{}.{}", table.name, column.name));
        }
        for column in columns.iter().filter(|c| !sqlite_columns.contains(&c.name)) {
            gaps.columns_missing_in_sqlite.push(format!("{}.{}", table.name, column.name));
        }
    }
    gaps.tables_missing_in_sqlite = catalog::tables_in_schema(client, schema)
        .await?
        .into_iter()
        .filter(|name| !mapped.contains(name) && !MIGRATION_TABLES.contains(&name.as_str()))
        .collect();
    Ok(gaps)
}

/// Tables migration tools keep in PostgreSQL only.
const MIGRATION_TABLES: [&str; 2] = ["alembic_version", "schema_migrations"];

/// For cutover: restarts every sequence behind a column of the synced tables (identities, serial columns) after
/// the highest value the column holds, or that SQLite's AUTOINCREMENT remembers (`remembered`, by table).
pub async fn sequence_restarts(
    client: &impl GenericClient,
    schema: &str,
    plans: &[&TablePlan],
    remembered: impl Fn(&str) -> Result<Option<i64>>,
) -> Result<Vec<String>> {
    let mut statements = Vec::new();
    for plan in plans {
        let relation = qualified(schema, &plan.name);
        for (column, sequence) in catalog::serial_sequences(client, &relation).await? {
            let column = crate::ident::quote(&column);
            let highest: i64 =
                client.query_one(&format!("SELECT coalesce(max({column})::bigint, 0) FROM {relation}"), &[]).await?.get(0);
            let start = highest.max(remembered(&plan.name)?.unwrap_or(0)) + 1;
            // The name comes quoted from pg_get_serial_sequence.
            statements.push(format!("ALTER SEQUENCE {sequence} RESTART WITH {start}"));
        }
    }
    Ok(statements)
}

/// Installs capture, matches every captured table with the application's (refusing, with nothing changed,
/// a table whose key or column types do not fit) and records the source at a fresh position with every table
/// PostgreSQL has marked to be copied whole: the next batch copies them, so the copy and the position commit
/// together, and a crash before it copies them again.
pub async fn register(options: &SnapshotOptions) -> Result<SnapshotReport> {
    let started = Instant::now();
    if options.source.policies.layout.shares_tables() {
        return Err(Error::new(ErrorKind::Usage, "--into-existing fills one application's tables; they cannot be shared tables")
            .with_hint("leave out layout = \"shared_tables\" for this source"));
    }
    let source = {
        let options = options.clone();
        tokio::task::spawn_blocking(move || {
            Source::prepare(&options.source.sqlite, &options.source.selection, options.source.source_id.as_deref())
        })
        .await
        .expect("preparing the source does not panic")?
    };
    // The connection stays behind: only what was read travels across the awaits below.
    let (sqlite_path, Source { schema: sqlite_schema, capture, .. }) = (source.display_path(), source);
    let source_id = capture.source_id.clone();
    let mut client = options.source.target.connect().await?;
    state::ensure_state_schema(&mut client).await?;
    state::lock_source(&client, &source_id).await?;
    let recorded = state::source(&client, &source_id).await?;
    mode(true, recorded.as_ref(), options.replace)?;
    if let Some(row) = recorded.filter(|row| row.snapshot_seq.is_some() && !options.replace) {
        return Err(Error::new(
            ErrorKind::Usage,
            format!("source {} was already copied into PostgreSQL (applied up to seq {})", row.source_id, row.applied_seq),
        )
        .with_hint("use `lite2pg run` to keep it in sync, or `snapshot --replace` to copy it again from scratch"));
    }
    let mut tables = Vec::new();
    for (table, captured) in sqlite_schema.tables.iter().filter_map(|t| capture.table(&t.name).map(|c| (t, c))) {
        let plan = app_plan(&client, &options.source.schema, table, &captured.key_columns).await?;
        tables.push((table, captured, plan));
    }
    if tables.iter().all(|(_, _, plan)| plan.is_none()) {
        return Err(Error::new(
            ErrorKind::Usage,
            format!("PostgreSQL schema {} has none of the SQLite file's tables", crate::ident::quote(&options.source.schema)),
        )
        .with_hint("run the application's migrations against PostgreSQL first (e.g. `manage.py migrate`), or pass the --schema they made"));
    }
    let sqlite_tables: Vec<&Table> = tables.iter().map(|(table, _, _)| *table).collect();
    let gaps = gaps(&client, &options.source.schema, &sqlite_tables).await?;
    let sqlite = options.source.sqlite.clone();
    let (snapshot_seq, mark) = tokio::task::spawn_blocking(move || mark_position(&mut open(&sqlite, Access::ReadWrite)?))
        .await
        .expect("marking the position does not panic")?;
    let tx = client.transaction().await?;
    let position = (snapshot_seq, mark.as_deref());
    state::record_into_existing(&tx, &source_id, &capture.database_id, &sqlite_path, &options.source.schema, position).await?;
    let mut mapping = Vec::new();
    for (table, captured, plan) in &tables {
        state::register_table(&tx, &source_id, &options.source.schema, &table.name, &captured.key_columns, plan.is_some())
            .await?;
        state::set_synced_columns(&tx, &source_id, &table.name, &synced_columns(plan.as_ref())).await?;
        mapping.extend(plan.iter().flat_map(|plan| {
            plan.columns.iter().map(|c| ColumnMapping {
                table: table.name.clone(),
                column: c.name.clone(),
                declared_type: c.declared_type.clone(),
                stored: "-".to_string(),
                pg_type: c.pg_type.sql().to_string(),
            })
        }));
    }
    tx.commit().await?;
    state::unlock_source(&client, &source_id).await?;
    let mut notes: Vec<String> = sqlite_schema.skipped.iter().map(|s| format!("{} {:?} is not copied", s.kind, s.name)).collect();
    notes.extend(gaps.sentences());
    Ok(SnapshotReport {
        source_id,
        schema: options.source.schema.clone(),
        snapshot_seq,
        tables: Vec::new(),
        mapping,
        notes,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Whether `snapshot` is to fill existing tables: asked for, or recorded for the source at an earlier snapshot
/// (`--replace` then never drops the application's tables).
pub async fn asked_or_recorded(options: &SnapshotOptions) -> Result<bool> {
    if options.source.policies.into_existing {
        return Ok(true);
    }
    let installed = match &options.source.source_id {
        Some(id) => Some(id.clone()),
        None => crate::sqlite::capture::read_state(&open(&options.source.sqlite, Access::ReadOnly)?)?.map(|c| c.source_id),
    };
    let Some(source_id) = installed else { return Ok(false) };
    let client = options.source.target.connect().await?;
    if !state::state_schema_exists(&client).await? {
        return Ok(false);
    }
    let recorded = state::source(&client, &source_id).await?;
    mode(false, recorded.as_ref(), options.replace)
}
