//! A PostgreSQL table's NOT NULL, UNIQUE and foreign key constraints kept to what its SQLite table declares now
//! (and first built after a snapshot's copy).
//!
//! Constraints are matched by what they are (columns; parent table and columns), never by name: a migration
//! tool's table rebuild renumbers foreign keys and renames unique indexes. Loosening (dropping what SQLite no
//! longer declares) is always safe and runs as soon as a schema change is seen, so a stale constraint can neither
//! refuse a row SQLite took nor make the merge delete a row as "displaced". Tightening may meet rows PostgreSQL
//! still holds from before the change, so it runs once PostgreSQL holds SQLite's rows again (inside a batch), each
//! statement in a savepoint; what PostgreSQL refuses, or a foreign key whose parent table does not exist yet, stays
//! missing and is tried again after the next schema look. `missing` compares SQLite with PostgreSQL's catalog each
//! time it is asked (for `status`, `doctor` and `cutover`), so its answer cannot be stale.

use serde::Serialize;
use tokio_postgres::{Client, GenericClient};

use crate::error::{Error, Result};
use crate::ident::{pg_name, qualified, quote};
use crate::mapping::ddl::{constraint_name, foreign_key_statement, post_data_statements};
use crate::mapping::layout::{Layout, SOURCE_COLUMN};
use crate::mapping::table::{pg_column_names, referenced_columns, KeyPlan, TablePlan, ROWID_COLUMN};
use crate::pg::apply::existing_plan;
use crate::pg::catalog::{self, Reference};
use crate::sqlite::capture::CapturedTable;
use crate::sqlite::introspect::{Index, SourceSchema, Table};

/// A constraint SQLite declares that PostgreSQL does not have, with the statement that would make it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Missing {
    pub table: String,
    pub what: String,
    pub sql: String,
    /// The parent table a foreign key waits for, when PostgreSQL does not have it yet.
    pub waiting_for: Option<String>,
}

impl std::fmt::Display for Missing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.waiting_for {
            Some(parent) => write!(f, "{} (waits for table {parent:?} in PostgreSQL)", self.what),
            None => f.write_str(&self.what),
        }
    }
}

/// A table's constraints as PostgreSQL's catalog has them.
struct Present {
    not_null: Vec<String>,
    primary_key: Vec<String>,
    /// Plain unique indexes: the index's name, the name of the constraint it backs (if any), its columns.
    uniques: Vec<(String, Option<String>, Vec<String>)>,
    foreign_keys: Vec<(String, Reference)>,
}

/// One SQLite table and everything its constraints are read against.
pub struct Declared<'a> {
    pub table: &'a Table,
    pub plan: &'a TablePlan,
    /// Every SQLite table lite2pg knows now: parents' keys and the column sets foreign keys point at.
    pub tables: &'a [&'a Table],
    pub layout: Layout,
}

impl Declared<'_> {
    fn not_null(&self) -> Vec<String> {
        self.plan.columns.iter().filter(|c| c.not_null && c.name != ROWID_COLUMN).map(|c| c.pg_name.clone()).collect()
    }

    /// Unique column sets, in PostgreSQL's columns, with the index that declares each (`None`: the declared
    /// primary key of a table keyed by rowid).
    fn uniques(&self) -> Vec<(Vec<String>, Option<&Index>)> {
        let key = (self.plan.key == KeyPlan::Rowid && !self.table.primary_key.is_empty())
            .then(|| (self.layout.scoped(&pg_column_names(&self.table.primary_key)), None));
        let indexes = self.table.indexes.iter().filter(|i| i.origin != "pk" && i.unique && !i.partial);
        let mut uniques: Vec<(Vec<String>, Option<&Index>)> = key.into_iter().collect();
        for index in indexes {
            let Some(columns) = &index.columns else { continue };
            let columns = self.layout.scoped(&pg_column_names(columns));
            if !uniques.iter().any(|(known, _)| known == &columns) {
                uniques.push((columns, Some(index)));
            }
        }
        uniques
    }

    /// The parent columns of foreign key `n`, as SQLite names them (a bare `REFERENCES parent` means its key).
    fn parent_columns(&self, n: usize) -> Vec<String> {
        let key = &self.table.foreign_keys[n];
        match key.parent_columns.is_empty() {
            false => key.parent_columns.clone(),
            true => self.tables.iter().find(|t| t.name == key.parent_table).map(|t| t.primary_key.clone()).unwrap_or_default(),
        }
    }

    fn references(&self) -> Vec<Reference> {
        (0..self.table.foreign_keys.len())
            .map(|n| Reference {
                columns: self.layout.scoped(&pg_column_names(&self.table.foreign_keys[n].columns)),
                parent: pg_name(&self.table.foreign_keys[n].parent_table),
                parent_columns: self.layout.scoped(&pg_column_names(&self.parent_columns(n))),
            })
            .collect()
    }
}

async fn present(client: &impl GenericClient, schema: &str, table: &str) -> Result<Present> {
    let columns = catalog::columns(client, schema, table).await?.unwrap_or_default();
    let not_null = columns.into_iter().filter(|c| c.not_null).map(|c| c.name).collect();
    let uniques = catalog::unique_indexes(client, schema, table).await?;
    let uniques = uniques.into_iter().map(|index| (index.name, index.constraint, index.columns)).collect();
    let foreign_keys = catalog::foreign_keys(client, schema, table).await?;
    let primary_key = catalog::primary_key(client, schema, table).await?.map(|(_, columns)| columns).unwrap_or_default();
    Ok(Present { not_null, primary_key, uniques, foreign_keys })
}

/// Drops the NOT NULL, UNIQUE and foreign key constraints of `declared`'s table that SQLite no longer declares
/// (never the primary key, nor NOT NULL on its columns or on the key the plan moves to).
pub async fn loosen(client: &impl GenericClient, schema: &str, declared: &Declared<'_>) -> Result<()> {
    let name = &declared.table.name;
    let table = qualified(schema, name);
    let present = present(client, schema, name).await?;
    let (not_null, keys) = (declared.not_null(), declared.plan.pg_key(declared.layout));
    let loosened =
        present.not_null.iter().filter(|c| !not_null.contains(c) && !present.primary_key.contains(c) && !keys.contains(c));
    for column in loosened.filter(|c| c.as_str() != SOURCE_COLUMN) {
        client.batch_execute(&format!("ALTER TABLE {table} ALTER COLUMN {} DROP NOT NULL", quote(column))).await?;
        tracing::info!("column {column:?} of table {name:?} may hold NULL in SQLite now: dropped NOT NULL in PostgreSQL");
    }
    let uniques: Vec<Vec<String>> = declared.uniques().into_iter().map(|(columns, _)| columns).collect();
    for (index, constraint, columns) in present.uniques.iter().filter(|(_, _, columns)| !uniques.contains(columns)) {
        // CASCADE: a foreign key on these columns is one SQLite cannot enforce any more either; it goes too.
        let sql = match constraint {
            Some(constraint) => format!("ALTER TABLE {table} DROP CONSTRAINT {} CASCADE", quote(constraint)),
            None => format!("DROP INDEX {} CASCADE", qualified(schema, index)),
        };
        client.batch_execute(&sql).await?;
        tracing::info!("unique ({}) on {name:?} is no longer declared in SQLite: dropped it in PostgreSQL", columns.join(", "));
    }
    let references = declared.references();
    for (constraint, reference) in present.foreign_keys.iter().filter(|(_, r)| !references.contains(r)) {
        client.batch_execute(&format!("ALTER TABLE {table} DROP CONSTRAINT {}", quote(constraint))).await?;
        tracing::info!(
            "foreign key {name}({}) -> {} is no longer declared in SQLite: dropped it in PostgreSQL",
            reference.columns.join(", "),
            reference.parent
        );
    }
    Ok(())
}

/// What `declared`'s table lacks in PostgreSQL, each with the statement that makes it.
pub async fn missing(client: &impl GenericClient, schema: &str, declared: &Declared<'_>) -> Result<Vec<Missing>> {
    let (table, name) = (declared.table, &declared.table.name);
    let present = present(client, schema, name).await?;
    let missing =
        |what: String, sql: String, waiting_for: Option<String>| Missing { table: name.clone(), what, sql, waiting_for };
    let mut found: Vec<Missing> = declared
        .not_null()
        .into_iter()
        .filter(|c| !present.not_null.contains(c))
        .map(|c| {
            let sql = format!("ALTER TABLE {} ALTER COLUMN {} SET NOT NULL", qualified(schema, name), quote(&c));
            missing(format!("not null {name}.{c}"), sql, None)
        })
        .collect();
    let present_uniques: Vec<&Vec<String>> = present.uniques.iter().map(|(_, _, columns)| columns).collect();
    let lacking: Vec<Option<&Index>> =
        declared.uniques().into_iter().filter(|(columns, _)| !present_uniques.contains(&columns)).map(|(_, i)| i).collect();
    // The statements the snapshot makes, for the lacking ones only.
    let only_lacking = Table {
        indexes: lacking.iter().flatten().map(|i| (*i).clone()).collect(),
        primary_key: if lacking.contains(&None) { table.primary_key.clone() } else { Vec::new() },
        ..table.clone()
    };
    let referenced: Vec<Vec<String>> = crate::mapping::table::referenced_columns(declared.tables)
        .into_iter()
        .filter(|(parent, _)| parent == name)
        .map(|(_, columns)| columns)
        .collect();
    for statement in post_data_statements(schema, &only_lacking, declared.plan, &referenced, declared.layout) {
        found.push(missing(statement.what, statement.sql, None));
    }
    let names: Vec<&str> = present.foreign_keys.iter().map(|(constraint, _)| constraint.as_str()).collect();
    let mut free = (0..).filter(|n| !names.contains(&constraint_name(name, *n).as_str()));
    let present_references: Vec<&Reference> = present.foreign_keys.iter().map(|(_, r)| r).collect();
    for (n, reference) in declared.references().into_iter().enumerate() {
        if present_references.contains(&&reference) {
            continue;
        }
        let (key, free_n) = (&table.foreign_keys[n], free.next().expect("names never run out"));
        let statement = foreign_key_statement(schema, name, free_n, key, &declared.parent_columns(n), declared.layout);
        // Validated at once: rows that break it would fail a later batch (and have it dropped again).
        let validate =
            format!("ALTER TABLE {} VALIDATE CONSTRAINT {}", qualified(schema, name), quote(&constraint_name(name, free_n)));
        let parent_exists = crate::pg::catalog::table_exists(client, schema, &key.parent_table).await?;
        let waiting_for = (!parent_exists).then(|| key.parent_table.clone());
        found.push(missing(statement.what, format!("{}; {validate}", statement.sql), waiting_for));
    }
    Ok(found)
}

/// Makes what `declared`'s table lacks, each statement in a savepoint of the caller's open transaction, after
/// dropping what SQLite no longer declares. Returns what is still missing; refusals are warned about.
pub async fn reconcile(client: &impl GenericClient, schema: &str, declared: &Declared<'_>) -> Result<Vec<Missing>> {
    loosen(client, schema, declared).await?;
    let mut still = Vec::new();
    for missing in missing(client, schema, declared).await? {
        if missing.waiting_for.is_some() {
            tracing::warn!("{missing}: it is created as soon as that table exists");
            still.push(missing);
            continue;
        }
        match crate::pg::tx::attempt(client, &missing.sql).await? {
            None => tracing::info!("{} is declared in SQLite: created it in PostgreSQL", missing.what),
            Some(err) => {
                tracing::warn!("{} is declared in SQLite but PostgreSQL refuses it: {err}", missing.what);
                still.push(missing);
            }
        }
    }
    Ok(still)
}

/// What the captured tables lack in PostgreSQL schema `schema`, read from SQLite's schema and PostgreSQL's catalog
/// now. A table PostgreSQL lacks, or holds in a shape lite2pg does not write, is left to the other checks.
pub async fn missing_for_source(
    client: &impl GenericClient,
    schema: &str,
    sqlite: &SourceSchema,
    captured: &[CapturedTable],
    layout: Layout,
) -> Result<Vec<Missing>> {
    let tables: Vec<&Table> = sqlite.tables.iter().collect();
    let mut found = Vec::new();
    for captured in captured {
        let Some(table) = sqlite.table(&captured.name) else { continue };
        if !crate::pg::catalog::table_exists(client, schema, &table.name).await? {
            continue;
        }
        let Ok(plan) = existing_plan(client, schema, table, &captured.key_columns).await else { continue };
        found.extend(missing(client, schema, &Declared { table, plan: &plan, tables: &tables, layout }).await?);
    }
    Ok(found)
}

/// After a snapshot's copy, builds the unique constraints, indexes and foreign keys of the tables it `created`; what PostgreSQL refuses becomes a note, not a failure.
pub(crate) async fn build_post_data(
    client: &Client,
    (schema, layout): (&str, Layout),
    tables: &[Table],
    plans: &[TablePlan],
    created: &[bool],
) -> Result<Vec<String>> {
    let mut notes = Vec::new();
    let referenced = referenced_columns(&tables.iter().collect::<Vec<_>>());
    let made: Vec<(&Table, &TablePlan)> =
        tables.iter().zip(plans).zip(created).filter(|(_, made)| **made).map(|(both, _)| both).collect();
    for &(table, plan) in &made {
        let parent_refs: Vec<Vec<String>> = referenced.iter().filter(|(t, _)| t == &table.name).map(|(_, c)| c.clone()).collect();
        for statement in post_data_statements(schema, table, plan, &parent_refs, layout) {
            if let Err(err) = client.batch_execute(&statement.sql).await {
                notes.push(format!("{} not created: {}", statement.what, Error::from(err)));
            }
        }
    }
    // After every unique constraint: a foreign key needs the one on its parent's columns.
    for (table, _) in made {
        for (n, key) in table.foreign_keys.iter().enumerate() {
            notes.extend(add_foreign_key(client, (schema, layout), tables, table, n, key).await?);
        }
    }
    Ok(notes)
}

/// Adds one foreign key, deferrable and without actions (SQLite's cascades arrive as their own changes).
/// Existing violations keep it NOT VALID.
async fn add_foreign_key(
    client: &Client,
    (schema, layout): (&str, Layout),
    tables: &[Table],
    table: &Table,
    n: usize,
    key: &crate::sqlite::introspect::ForeignKey,
) -> Result<Option<String>> {
    let what = format!("foreign key {}({}) -> {}", table.name, key.columns.join(", "), key.parent_table);
    let Some(parent) = tables.iter().find(|t| t.name == key.parent_table) else {
        return Ok(Some(format!("{what} not created: the parent table is not copied")));
    };
    let parent_columns = if key.parent_columns.is_empty() { parent.primary_key.clone() } else { key.parent_columns.clone() };
    let add = foreign_key_statement(schema, &table.name, n, key, &parent_columns, layout);
    if let Err(err) = client.batch_execute(&add.sql).await {
        return Ok(Some(format!("{what} not created: {}", Error::from(err))));
    }
    let validate =
        format!("ALTER TABLE {} VALIDATE CONSTRAINT {}", qualified(schema, &table.name), quote(&constraint_name(&table.name, n)));
    Ok(client
        .batch_execute(&validate)
        .await
        .err()
        .map(|_| format!("{what} kept NOT VALID: existing rows break it (SQLite does not enforce foreign keys unless asked)")))
}
