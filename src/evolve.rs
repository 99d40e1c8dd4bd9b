//! Schema evolution in PostgreSQL while streaming: columns widened for values that did not fit, and SQLite's
//! schema changes (tables and columns added, dropped, renamed, rebuilt; indexes) followed without a restart.
//!
//! Contract: every change here is idempotent and leaves PostgreSQL's rows either exact or marked in
//! `lite2pg.tables.resync`, so that the next batch copies that table whole inside its own transaction.

use tokio_postgres::{Client, Transaction};

use crate::config::{DroppedTables, Policies};
use crate::constraints::Declared;
use crate::error::{Error, ErrorKind, Result};
use crate::ident::{pg_name, qualified, quote};
use crate::mapping::ddl::{create_table_sql, foreign_key_statement, post_data_statements};
use crate::mapping::defaults::translate_default;
use crate::mapping::layout::Layout;
use crate::mapping::table::{foreign_key_groups, pg_column_name, TablePlan, ROWID_COLUMN};
use crate::mapping::types::{choose_pg_type, is_untyped, joined_type, joined_types, widen_cast, ColumnStats, PgType};
use crate::pg::catalog::{self, table_columns};
use crate::pg::shared_tables::{create_or_adopt_shared, SharedTable};
use crate::pg::state;
use crate::pg::tx::attempt;
use crate::sqlite::introspect::{Column, Index, Table};

/// A column to widen: its table as SQLite has it, its position there, and a type it must hold.
pub struct ColumnWidening<'a> {
    pub table: &'a Table,
    pub column: usize,
    pub to: PgType,
}

/// Alters each column to the join of its type and `to` (keeping the default, translated anew), in one transaction.
/// The caller names a column together with its foreign-key partners, which must change with it. Returns whether
/// every conversion was exact; when not, the table is marked to be copied whole.
pub async fn widen_column(client: &mut Client, schema: &str, source_id: &str, columns: &[ColumnWidening<'_>]) -> Result<bool> {
    let tx = client.transaction().await?;
    let exact = widen_columns(&tx, schema, source_id, columns).await?;
    tx.commit().await?;
    Ok(exact)
}

/// `widen_column` inside `tx`. Foreign keys on the columns are dropped around the change and made again (NOT
/// VALID, then validated where rows allow): PostgreSQL re-makes them after each ALTER and refuses while one end
/// still has the old type.
async fn widen_columns(tx: &Transaction<'_>, schema: &str, source_id: &str, columns: &[ColumnWidening<'_>]) -> Result<bool> {
    let mut alters = Vec::new();
    for widening in columns {
        let name = &widening.table.columns[widening.column].name;
        // bytea holds blobs only, so a column leaves it for the type asked (its rows are copied again), never joins it.
        let target = |from| if from == PgType::Bytea { widening.to } else { joined_type(from, widening.to) };
        match current_type(tx, schema, name, &widening.table.name).await? {
            Some(from) if target(from) != from => alters.push((widening, from, target(from))),
            _ => {}
        }
    }
    if alters.is_empty() {
        return Ok(true);
    }
    let relations: Vec<String> = alters.iter().map(|(w, _, _)| qualified(schema, &w.table.name)).collect();
    let names: Vec<String> = alters.iter().map(|(w, _, _)| pg_column_name(&w.table.columns[w.column].name)).collect();
    let keys = catalog::foreign_keys_on_columns(tx, &relations, &names).await?;
    for key in &keys {
        tx.batch_execute(&format!("ALTER TABLE {} DROP CONSTRAINT {}", key.table, quote(&key.name))).await?;
    }
    let mut exact = true;
    for (widening, from, to) in alters {
        let column = &widening.table.columns[widening.column];
        let name = quote(&pg_column_name(&column.name));
        let table = qualified(schema, &widening.table.name);
        // A column holding only NULLs (one without a declared kind, empty at the snapshot) takes any type exactly.
        let only_nulls = format!("SELECT NOT EXISTS (SELECT 1 FROM {table} WHERE {name} IS NOT NULL)");
        let (using, exact_cast) = match tx.query_one(&only_nulls, &[]).await?.get(0) {
            true => (format!("NULL::{}", to.sql()), true),
            false => widen_cast(&name, from, to),
        };
        let default = match column.default_sql.as_deref().and_then(|sql| translate_default(sql, to)) {
            Some(default) => format!(", ALTER COLUMN {name} SET DEFAULT {default}"),
            None => String::new(),
        };
        tx.batch_execute(&format!(
            "ALTER TABLE {table} ALTER COLUMN {name} DROP DEFAULT, ALTER COLUMN {name} TYPE {} USING {using}{default}",
            to.sql()
        ))
        .await
        .map_err(|err| {
            Error::from(err)
                .context(format!("cannot widen column {name} of table {:?} from {from} to {to}", widening.table.name))
                .with_hint("widen it by hand (or set on_misfit = \"reject\" for it in lite2pg.toml) and start lite2pg again")
        })?;
        if !exact_cast {
            state::set_resync(tx, source_id, &widening.table.name, true).await?;
        }
        exact &= exact_cast;
    }
    for key in &keys {
        let (table, name, definition, valid) = (&key.table, key.name.as_str(), key.definition.as_str(), key.valid);
        let not_valid = if definition.ends_with("NOT VALID") { "" } else { " NOT VALID" };
        tx.batch_execute(&format!("ALTER TABLE {table} ADD CONSTRAINT {} {definition}{not_valid}", quote(name))).await?;
        if valid {
            if let Some(err) = attempt(tx, &format!("ALTER TABLE {table} VALIDATE CONSTRAINT {}", quote(name))).await? {
                tracing::warn!("foreign key {name} on {table} kept NOT VALID after widening its columns: {err}");
            }
        }
    }
    Ok(exact)
}

/// Where the evolution happens: the target schema, the source and its policies.
pub struct Target<'a> {
    pub schema: &'a str,
    pub source_id: &'a str,
    pub policies: &'a Policies,
}

/// One captured SQLite table as it is now, and what is known of how it got so.
pub struct TableNow<'a> {
    pub table: &'a Table,
    pub key_columns: &'a [String],
    /// Its shape when the stream last saw it, to tell which indexes were dropped since.
    pub previous: Option<&'a Table>,
    /// Its name before a rename.
    pub renamed_from: Option<&'a str>,
    /// What its columns store, for a table PostgreSQL does not have yet.
    pub stats: Option<Vec<ColumnStats>>,
    /// What its columns store, when a migration tool rebuilt it (its rows are copied whole): its columns are then
    /// matched by name only, and one whose declared type changed takes the type for what it stores.
    pub rebuilt: Option<Vec<ColumnStats>>,
}

/// Brings PostgreSQL's tables to SQLite's current shape inside `tx`: renames, creates, added, dropped and renamed
/// columns, indexes, constraints SQLite no longer declares; dropped tables per policy. Tables whose rows cannot be
/// made exact by DDL alone are marked to be copied whole. Each change is logged once.
pub async fn follow(tx: &Transaction<'_>, target: &Target<'_>, tables: &[TableNow<'_>], dropped: &[String]) -> Result<()> {
    if target.policies.layout.shares_tables() {
        return follow_shared(tx, target, tables, dropped).await;
    }
    for name in dropped {
        drop_table(tx, target, name).await?;
    }
    let renames: Vec<(&str, &str)> =
        tables.iter().filter_map(|now| now.renamed_from.map(|old| (old, now.table.name.as_str()))).collect();
    rename_tables(tx, target, &renames).await?;
    let known: Vec<&Table> = tables.iter().map(|now| now.table).collect();
    let mut created = Vec::new();
    for now in tables {
        let columns = table_columns(tx, target.schema, &now.table.name).await?;
        created.push(columns.is_none());
        if let Some(columns) = columns {
            let exact = follow_columns(tx, target, now, &columns).await?;
            follow_indexes(tx, target, now).await?;
            loosen_constraints(tx, target, now, &known).await?;
            if !exact {
                state::set_resync(tx, target.source_id, &now.table.name, true).await?;
            }
        }
    }
    let plans = plan_new_tables(tx, target, tables, &created).await?;
    for (now, plan) in tables.iter().zip(&plans) {
        if let Some(plan) = plan {
            create_table(tx, target, now, plan).await?;
        }
    }
    create_foreign_keys(tx, target, tables, &created).await
}

/// Plans the tables PostgreSQL lacks (`created`) from what they store, with one type for each group of columns
/// foreign keys join them with: the join of the group's types. Existing columns in such a group that are
/// narrower are widened here, so that every foreign key of and to a new table can be made.
async fn plan_new_tables(
    tx: &Transaction<'_>,
    target: &Target<'_>,
    tables: &[TableNow<'_>],
    created: &[bool],
) -> Result<Vec<Option<TablePlan>>> {
    let mut plans: Vec<Option<TablePlan>> = tables
        .iter()
        .zip(created)
        .map(|(now, &new)| {
            let empty = vec![ColumnStats::default(); now.table.columns.len()];
            let stats = now.stats.as_deref().unwrap_or(&empty);
            new.then(|| TablePlan::from_stats(now.table, stats, now.key_columns, target.policies))
        })
        .collect();
    let all: Vec<&Table> = tables.iter().map(|now| now.table).collect();
    let mut widenings = Vec::new();
    for group in foreign_key_groups(&all).into_iter().filter(|g| g.iter().any(|&(t, _)| created[t])) {
        let mut types = Vec::new();
        for &(t, c) in &group {
            types.push(match &plans[t] {
                Some(plan) => Some(plan.columns[c].pg_type),
                None => current_type(tx, target.schema, &all[t].columns[c].name, &all[t].name).await?,
            });
        }
        let special_reals =
            group.iter().any(|&(t, c)| created[t] && tables[t].stats.as_ref().is_some_and(|s| s[c].special_reals > 0));
        let Some(joined) = types.iter().copied().collect::<Option<Vec<_>>>().and_then(|ts| joined_types(ts, special_reals))
        else {
            continue;
        };
        for (&(t, c), current) in group.iter().zip(&types) {
            match &mut plans[t] {
                Some(plan) if plan.columns[c].pg_type != joined => {
                    let mut types: Vec<PgType> = plan.columns[..all[t].columns.len()].iter().map(|c| c.pg_type).collect();
                    types[c] = joined;
                    *plan = TablePlan::new(all[t], &types, tables[t].key_columns);
                }
                None if *current != Some(joined) => widenings.push(ColumnWidening { table: all[t], column: c, to: joined }),
                _ => {}
            }
        }
    }
    widen_columns(tx, target.schema, target.source_id, &widenings).await?;
    Ok(plans)
}

/// The PostgreSQL type SQLite column `column` of `table` has now, when it is one lite2pg writes.
async fn current_type(tx: &Transaction<'_>, schema: &str, column: &str, table: &str) -> Result<Option<PgType>> {
    let columns = table_columns(tx, schema, table).await?.unwrap_or_default();
    let column = pg_column_name(column);
    Ok(columns.iter().find(|(name, _)| *name == column).and_then(|(_, t)| PgType::from_format_type(t)))
}

/// `follow` for tables shared by several sources: a source changes only its own rows. A table it renamed or
/// dropped (with `dropped_tables = "drop"`) loses this source's rows and keeps the others'; columns are added for
/// all and never dropped or renamed; a table whose columns changed gets this source's rows copied whole.
async fn follow_shared(tx: &Transaction<'_>, target: &Target<'_>, tables: &[TableNow<'_>], dropped: &[String]) -> Result<()> {
    state::act_as_source(tx, target.source_id, true).await?;
    let dropped_rows = dropped.iter().map(String::as_str).filter(|_| target.policies.dropped_tables == DroppedTables::Drop);
    let gone: Vec<&str> = dropped_rows.chain(tables.iter().filter_map(|now| now.renamed_from)).collect();
    for &name in &gone {
        if crate::pg::catalog::table_exists(tx, target.schema, name).await? {
            let own = Layout::SharedTables.this_source("", 1);
            tx.execute(&format!("DELETE FROM {} WHERE true{own}", qualified(target.schema, name)), &[&target.source_id]).await?;
            tracing::info!("table {name:?} was dropped or renamed in SQLite: deleted this source's rows from the shared table");
        }
        state::forget_table(tx, target.source_id, name).await?;
    }
    let names = |t: &Table| t.columns.iter().map(|c| c.name.clone()).collect::<Vec<_>>();
    let known: Vec<&Table> = tables.iter().map(|now| now.table).collect();
    let mut created = Vec::new();
    for now in tables {
        let empty = vec![ColumnStats::default(); now.table.columns.len()];
        let mut plan = TablePlan::from_stats(now.table, now.stats.as_deref().unwrap_or(&empty), now.key_columns, target.policies);
        let found = create_or_adopt_shared(tx, target.schema, &mut plan, now.table).await?;
        created.push(found == SharedTable::Missing);
        match found {
            SharedTable::Missing => create_with_constraints(tx, target, now, &plan).await?,
            _ => loosen_constraints(tx, target, now, &known).await?,
        }
        // Columns dropped and added again while lite2pg was stopped hold old values: compare with the last record.
        let before = match now.previous {
            Some(previous) => Some(names(previous)),
            None => state::synced_columns(tx, target.source_id, &now.table.name).await?,
        };
        // A name given up and taken again in one look (renamed away, then created anew) is a new table.
        let reused = gone.contains(&now.table.name.as_str());
        let unchanged =
            found != SharedTable::Missing && now.renamed_from.is_none() && !reused && before == Some(names(now.table));
        let key: Vec<String> = plan.key_columns().map(|c| c.name.clone()).collect();
        state::register_table(tx, target.source_id, target.schema, &plan.name, &key, !unchanged).await?;
        state::set_synced_columns(tx, target.source_id, &now.table.name, &names(now.table)).await?;
    }
    create_foreign_keys(tx, target, tables, &created).await
}

async fn drop_table(tx: &Transaction<'_>, target: &Target<'_>, name: &str) -> Result<()> {
    if !owned(tx, target, name).await? {
        return Ok(());
    }
    if target.policies.dropped_tables == DroppedTables::Keep {
        tracing::info!(
            "table {name:?} was dropped in SQLite: capture stopped, its PostgreSQL table is kept (dropped_tables = \"keep\")"
        );
        return Ok(());
    }
    // Foreign keys other tables hold on it go with it (SQLite let the table go despite them); views do not.
    let table = qualified(target.schema, name);
    let referencing = catalog::foreign_keys_from_other_tables(tx, &table).await?;
    let drops: Vec<String> =
        referencing.iter().map(|(child, name)| format!("ALTER TABLE {child} DROP CONSTRAINT {}; ", quote(name))).collect();
    let sql = format!("{}DROP TABLE IF EXISTS {table}", drops.concat());
    match attempt(tx, &sql).await? {
        None => {
            state::forget_table(tx, target.source_id, name).await?;
            tracing::info!("table {name:?} was dropped in SQLite: dropped it in PostgreSQL");
        }
        Some(err) => tracing::warn!("table {name:?} was dropped in SQLite but is kept in PostgreSQL: {err}"),
    }
    Ok(())
}

/// Renames `(old, new)` tables through parking names, so that chains (a to b, b to c) and swaps land in any order.
async fn rename_tables(tx: &Transaction<'_>, target: &Target<'_>, renames: &[(&str, &str)]) -> Result<()> {
    let mut parked = Vec::new();
    for (i, &(old, new)) in renames.iter().enumerate() {
        if crate::pg::catalog::table_exists(tx, target.schema, old).await? && owned(tx, target, old).await? {
            let parking = crate::sqlite::capture::parking_name(i);
            rename_table(tx, target, old, &parking).await?;
            parked.push((old, parking, new));
        }
    }
    for (old, parking, new) in parked {
        if crate::pg::catalog::table_exists(tx, target.schema, new).await? {
            // The name is held by a table kept after SQLite dropped it (a rebuild seen step by step): it gives way.
            if !owned(tx, target, new).await? {
                return Err(Error::new(
                    ErrorKind::Schema,
                    format!("SQLite renamed table {old:?} to {new:?}, but PostgreSQL schema {} already has a table {new:?} lite2pg did not create", target.schema),
                )
                .with_hint("rename or drop that PostgreSQL table, then start lite2pg again"));
            }
            tx.batch_execute(&format!("DROP TABLE {}", qualified(target.schema, new))).await?;
            state::forget_table(tx, target.source_id, new).await?;
            tracing::info!("replaced PostgreSQL table {new:?}, kept from a dropped SQLite table, by the renamed {old:?}");
        }
        rename_table(tx, target, &parking, new).await?;
        tracing::info!("table {old:?} was renamed to {new:?} in SQLite: renamed it in PostgreSQL");
    }
    Ok(())
}

async fn rename_table(tx: &Transaction<'_>, target: &Target<'_>, old: &str, new: &str) -> Result<()> {
    tx.batch_execute(&format!("ALTER TABLE {} RENAME TO {}", qualified(target.schema, old), quote(&pg_name(new)))).await?;
    state::rename_table(tx, target.source_id, old, new).await
}

/// Whether lite2pg made `name` for this source: only those tables are renamed or dropped to follow SQLite.
async fn owned(tx: &Transaction<'_>, target: &Target<'_>, name: &str) -> Result<bool> {
    Ok(state::table_owner(tx, target.schema, name).await?.as_deref() == Some(target.source_id))
}

async fn create_table(tx: &Transaction<'_>, target: &Target<'_>, now: &TableNow<'_>, plan: &TablePlan) -> Result<()> {
    create_with_constraints(tx, target, now, plan).await?;
    let key: Vec<String> = plan.key_columns().map(|c| c.name.clone()).collect();
    state::register_table(tx, target.source_id, target.schema, &plan.name, &key, true).await
}

/// Creates the table of `plan` with its unique constraints and indexes (its rows come with the next batch, which
/// copies it whole; its foreign keys come with `create_foreign_keys`, once every new table exists).
async fn create_with_constraints(tx: &Transaction<'_>, target: &Target<'_>, now: &TableNow<'_>, plan: &TablePlan) -> Result<()> {
    let layout = target.policies.layout;
    tx.batch_execute(&create_table_sql(target.schema, plan, layout))
        .await
        .map_err(|err| Error::from(err).context(format!("cannot create table {}", qualified(target.schema, &plan.name))))?;
    crate::pg::citus::distribute_if_shared(tx, target.schema, &plan.name, layout).await?;
    for statement in post_data_statements(target.schema, now.table, plan, &[], layout) {
        if let Some(err) = attempt(tx, &statement.sql).await? {
            tracing::warn!("{} not created: {err}", statement.what);
        }
    }
    let types: Vec<String> = plan.columns.iter().map(|c| format!("{} {}", c.name, c.pg_type)).collect();
    tracing::info!(
        "table {:?} appeared in SQLite: created it in PostgreSQL ({}) and copied its rows",
        plan.name,
        types.join(", ")
    );
    Ok(())
}

/// Makes the foreign keys of the tables just `created` and those other tables hold on them.
async fn create_foreign_keys(tx: &Transaction<'_>, target: &Target<'_>, tables: &[TableNow<'_>], created: &[bool]) -> Result<()> {
    let layout = target.policies.layout;
    let is_new = |name: &str| tables.iter().zip(created).any(|(now, &new)| new && now.table.name.eq_ignore_ascii_case(name));
    for (now, &new) in tables.iter().zip(created) {
        for (n, key) in now.table.foreign_keys.iter().enumerate().filter(|(_, key)| new || is_new(&key.parent_table)) {
            let parent = tables.iter().find(|parent| parent.table.name.eq_ignore_ascii_case(&key.parent_table));
            let parent_columns = match (key.parent_columns.is_empty(), parent) {
                (false, _) => key.parent_columns.clone(),
                (true, Some(parent)) => parent.table.primary_key.clone(),
                (true, None) => continue,
            };
            let statement = foreign_key_statement(target.schema, &now.table.name, n, key, &parent_columns, layout);
            if let Some(err) = attempt(tx, &statement.sql).await? {
                tracing::warn!("{} not created: {err}", statement.what);
            }
        }
    }
    Ok(())
}

/// The type of a column just added in SQLite, which holds only its default yet: from the declared type, or for a
/// column declared without a kind from its default's kind (a number or text literal), so rows take it in place.
fn added_column_type(column: &Column) -> PgType {
    let declared = choose_pg_type(&column.declared_type, &ColumnStats::default());
    match column.default_sql.as_deref().filter(|_| is_untyped(&column.declared_type)) {
        Some(default) => [PgType::BigInt, PgType::Double, PgType::Text]
            .into_iter()
            .find(|pg_type| translate_default(default, *pg_type).is_some())
            .unwrap_or(declared),
        None => declared,
    }
}

/// Renames, drops and adds columns so PostgreSQL's match SQLite's. SQLite keeps a renamed column in its place,
/// drops in place and adds at the end, so a column at the same position under a name neither side has is a
/// rename. Returns false when the rows must be copied whole (an added column's default does not translate).
async fn follow_columns(tx: &Transaction<'_>, target: &Target<'_>, now: &TableNow<'_>, pg: &[(String, String)]) -> Result<bool> {
    let table = qualified(target.schema, &now.table.name);
    // Compared in PostgreSQL's names: those of SQLite's columns are `pg_column_name`.
    let sqlite_names: Vec<String> = now.table.columns.iter().map(|c| pg_column_name(&c.name)).collect();
    let sqlite_names: Vec<&str> = sqlite_names.iter().map(String::as_str).collect();
    let (renames, mut exact) = match now.rebuilt {
        // A rebuild may rename one column and drop another at once: names, not positions, say which is which.
        Some(_) => (Vec::new(), false),
        None => inferred_renames(pg, &sqlite_names),
    };
    for (old, new) in &renames {
        tx.batch_execute(&format!("ALTER TABLE {table} RENAME COLUMN {} TO {}", quote(old), quote(new))).await?;
        tracing::info!("column {old:?} of table {:?} was renamed to {new:?} in SQLite: renamed it in PostgreSQL", now.table.name);
    }
    let pg_names: Vec<&str> = pg
        .iter()
        .map(|(name, _)| renames.iter().find(|(old, _)| old == name).map_or(name.as_str(), |(_, new)| *new))
        .filter(|name| *name != ROWID_COLUMN)
        .collect();
    let dropped: Vec<&&str> = pg_names.iter().filter(|name| !sqlite_names.contains(name)).collect();
    // A column dropped and one added in the same look may have been a rename followed by an add: copy to be sure.
    exact &= dropped.is_empty() || sqlite_names.iter().all(|name| pg_names.contains(name));
    for gone in dropped {
        let sql = format!("ALTER TABLE {table} DROP COLUMN {}", quote(gone));
        match attempt(tx, &sql).await? {
            None => {
                tracing::info!("column {gone:?} of table {:?} was dropped in SQLite: dropped it in PostgreSQL", now.table.name)
            }
            Some(err) => {
                tx.batch_execute(&format!("ALTER TABLE {table} ALTER COLUMN {} DROP NOT NULL", quote(gone))).await?;
                tracing::warn!(
                    "column {gone:?} of table {:?} was dropped in SQLite; kept in PostgreSQL (nullable): {err}",
                    now.table.name
                );
            }
        }
    }
    let has_rowid = pg.iter().any(|(name, _)| name == ROWID_COLUMN);
    let rowid_column = quote(ROWID_COLUMN);
    match (now.key_columns.is_empty(), has_rowid) {
        (true, false) => tx.batch_execute(&format!("ALTER TABLE {table} ADD COLUMN {rowid_column} bigint")).await?,
        (false, true) => tx.batch_execute(&format!("ALTER TABLE {table} DROP COLUMN {rowid_column}")).await?,
        _ => {}
    }
    exact &= now.key_columns.is_empty() == has_rowid;
    // SQLite adds columns at the end: a new name before a kept one means a column was renamed and its old name
    // taken again (`RENAME COLUMN c TO d; ADD COLUMN c`), so the kept name no longer holds the same values.
    let first_added = sqlite_names.iter().position(|name| !pg_names.contains(name));
    let last_kept = sqlite_names.iter().rposition(|name| pg_names.contains(name));
    exact &= now.rebuilt.is_some() || first_added.zip(last_kept).is_none_or(|(added, kept)| added > kept);
    exact &= now.rebuilt.is_some() || !dropped_and_added_again(now, &pg_names, &sqlite_names);
    let added = now.table.columns.iter().enumerate().zip(&sqlite_names).filter(|(_, name)| !pg_names.contains(name));
    for ((position, column), pg_column) in added {
        let pg_type = target.policies.type_override(&now.table.name, &column.name).unwrap_or_else(|| match &now.rebuilt {
            Some(stats) => choose_pg_type(&column.declared_type, &stats[position]),
            None => added_column_type(column),
        });
        let default = column.default_sql.as_deref().map(|sql| translate_default(sql, pg_type));
        let clause = match default {
            Some(Some(default)) => format!(" DEFAULT {default}{}", if column.not_null { " NOT NULL" } else { "" }),
            Some(None) => {
                exact = false;
                String::new()
            }
            None => String::new(),
        };
        // SQLite computes a generated column added by ALTER TABLE for every row at once, without logging them.
        exact &= column.generated.is_none();
        tx.batch_execute(&format!("ALTER TABLE {table} ADD COLUMN {} {}{clause}", quote(pg_column), pg_type.sql())).await?;
        tracing::info!(
            "column {:?} was added to table {:?} in SQLite: added it in PostgreSQL as {pg_type}{clause}",
            column.name,
            now.table.name
        );
    }
    if let (Some(stats), Some(previous)) = (&now.rebuilt, now.previous) {
        retype_redeclared_columns(tx, target, now, previous, stats, pg).await?;
    }
    Ok(exact)
}

/// In a rebuilt table (copied whole by the next batch), gives each column whose declared type changed (Django's
/// `AlterField`, Alembic's `alter_column(type_=…)`) the type for what it stores now. Its values are NULL until that
/// copy, and its NOT NULL comes back after it (`constraints`); PostgreSQL refusing the change (a foreign key or a
/// view on the column) leaves the old type, and values that do not fit it follow the column's misfit policy.
async fn retype_redeclared_columns(
    tx: &Transaction<'_>,
    target: &Target<'_>,
    now: &TableNow<'_>,
    previous: &Table,
    stats: &[ColumnStats],
    pg: &[(String, String)],
) -> Result<()> {
    let table = qualified(target.schema, &now.table.name);
    for (column, stats) in now.table.columns.iter().zip(stats) {
        let redeclared = previous.columns.iter().any(|c| c.name == column.name && c.declared_type != column.declared_type);
        let name = pg_column_name(&column.name);
        let Some((_, current)) = pg.iter().find(|(pg_name, _)| *pg_name == name).filter(|_| redeclared) else { continue };
        let to = target
            .policies
            .type_override(&now.table.name, &column.name)
            .unwrap_or_else(|| choose_pg_type(&column.declared_type, stats));
        if PgType::from_format_type(current) == Some(to) {
            continue;
        }
        let quoted = quote(&name);
        let default = match column.default_sql.as_deref().and_then(|sql| translate_default(sql, to)) {
            Some(default) => format!(", ALTER COLUMN {quoted} SET DEFAULT {default}"),
            None => String::new(),
        };
        let sql = format!(
            "ALTER TABLE {table} ALTER COLUMN {quoted} DROP NOT NULL, ALTER COLUMN {quoted} DROP DEFAULT, \
             ALTER COLUMN {quoted} TYPE {} USING NULL::{0}{default}",
            to.sql()
        );
        match attempt(tx, &sql).await? {
            None => tracing::info!(
                "column {:?} of table {:?} was declared {:?} by a rebuild: made it {to} in PostgreSQL (was {current})",
                column.name,
                now.table.name,
                column.declared_type
            ),
            Some(err) => tracing::warn!(
                "column {:?} of table {:?} was declared {:?} by a rebuild; PostgreSQL keeps {current}: {err}",
                column.name,
                now.table.name,
                column.declared_type
            ),
        }
    }
    Ok(())
}

/// Whether a kept name may now be a column dropped and added again (its values are then only the new default):
/// SQLite keeps its columns' order through renames and drops and appends added ones, so a kept column out of
/// PostgreSQL's order, or one whose declaration changed, was re-added.
fn dropped_and_added_again(now: &TableNow<'_>, pg_names: &[&str], sqlite_names: &[&str]) -> bool {
    let kept_in_sqlite: Vec<&str> = sqlite_names.iter().copied().filter(|name| pg_names.contains(name)).collect();
    let kept_in_pg: Vec<&str> = pg_names.iter().copied().filter(|name| sqlite_names.contains(name)).collect();
    let redeclared = now.previous.is_some_and(|previous| {
        now.table.columns.iter().any(|column| {
            previous.columns.iter().find(|before| before.name == column.name).is_some_and(|before| {
                (&before.declared_type, &before.default_sql, &before.generated)
                    != (&column.declared_type, &column.default_sql, &column.generated)
            })
        })
    });
    kept_in_sqlite != kept_in_pg || redeclared
}

/// Pairs PostgreSQL's columns with SQLite's in order: a column neither side knows by name, followed by the same
/// column on both sides (or by the end of both), is a rename. Returns the renames, and false when one sits at
/// the very end, where a dropped column and a newly added one look the same: then the rows are copied whole.
fn inferred_renames<'a>(pg: &'a [(String, String)], sqlite: &[&'a str]) -> (Vec<(&'a str, &'a str)>, bool) {
    let pg: Vec<&str> = pg.iter().map(|(name, _)| name.as_str()).filter(|name| *name != ROWID_COLUMN).collect();
    let (mut renames, mut exact) = (Vec::new(), true);
    let (mut i, mut j) = (0, 0);
    while i < pg.len() && j < sqlite.len() {
        let (old, new) = (pg[i], sqlite[j]);
        if old == new {
            (i, j) = (i + 1, j + 1);
        } else if !sqlite.contains(&old) && !pg.contains(&new) && pg.get(i + 1) == sqlite.get(j + 1) {
            exact &= i + 1 < pg.len();
            renames.push((old, new));
            (i, j) = (i + 1, j + 1);
        } else if !sqlite.contains(&old) {
            i += 1;
        } else {
            j += 1;
        }
    }
    (renames, exact)
}

/// Drops the NOT NULL, UNIQUE and foreign key constraints SQLite no longer declares on `now`'s table (see
/// `constraints`; new ones are made by the batch that follows, once PostgreSQL holds SQLite's rows).
async fn loosen_constraints(tx: &Transaction<'_>, target: &Target<'_>, now: &TableNow<'_>, known: &[&Table]) -> Result<()> {
    let empty = vec![ColumnStats::default(); now.table.columns.len()];
    let plan = TablePlan::from_stats(now.table, &empty, now.key_columns, target.policies);
    let layout = target.policies.layout;
    crate::constraints::loosen(tx, target.schema, &Declared { table: now.table, plan: &plan, tables: known, layout }).await
}

/// Creates indexes SQLite has and PostgreSQL lacks, by name, and drops those SQLite dropped since the stream last
/// saw the table. Unique ones on plain columns are constraints, kept by `constraints`.
async fn follow_indexes(tx: &Transaction<'_>, target: &Target<'_>, now: &TableNow<'_>) -> Result<()> {
    let table = qualified(target.schema, &now.table.name);
    let existing = catalog::index_names(tx, &table).await?;
    let created: Vec<&Index> = now.table.indexes.iter().filter(|i| i.origin == "c").collect();
    for index in &created {
        let unique_constraint = index.unique && !index.partial && index.columns.is_some();
        if existing.contains(&index.name) || unique_constraint {
            continue;
        }
        let empty = vec![ColumnStats::default(); now.table.columns.len()];
        let plan = TablePlan::from_stats(now.table, &empty, now.key_columns, target.policies);
        // Only this index; no primary key, so no constraint for the key is added again.
        let only_this = Table { indexes: vec![(*index).clone()], primary_key: Vec::new(), ..now.table.clone() };
        for statement in post_data_statements(target.schema, &only_this, &plan, &[], Layout::SchemaPerSource) {
            match attempt(tx, &statement.sql).await? {
                None => tracing::info!("{} was created in SQLite: created it in PostgreSQL", statement.what),
                Some(err) => tracing::warn!("{} was created in SQLite; PostgreSQL refused it: {err}", statement.what),
            }
        }
    }
    let Some(previous) = now.previous else { return Ok(()) };
    for gone in previous.indexes.iter().filter(|i| i.origin == "c" && !created.iter().any(|c| c.name == i.name)) {
        let sql = format!(
            "ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {0}; DROP INDEX IF EXISTS {1}",
            quote(&gone.name),
            qualified(target.schema, &gone.name)
        );
        match attempt(tx, &sql).await? {
            None => tracing::info!("index {} was dropped in SQLite: dropped it in PostgreSQL", gone.name),
            Some(err) => tracing::warn!("index {} was dropped in SQLite; PostgreSQL kept it: {err}", gone.name),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pg(names: &[&str]) -> Vec<(String, String)> {
        names.iter().map(|n| (n.to_string(), "text".to_string())).collect()
    }

    #[test]
    fn renames_are_told_from_drops_and_adds_by_position() {
        let renamed = |old: &[&str], new: &[&str]| {
            let old = pg(old);
            let (renames, exact) = inferred_renames(&old, new);
            (renames.into_iter().map(|(a, b)| format!("{a}>{b}")).collect::<Vec<_>>(), exact)
        };
        assert_eq!(renamed(&["id", "name", "price", "note"], &["id", "title", "price"]), (vec!["name>title".into()], true));
        assert_eq!(renamed(&["id", "a", "b"], &["id", "b", "c"]), (vec![], true), "a dropped, c added");
        assert_eq!(renamed(&["id", "a"], &["id", "b"]), (vec!["a>b".into()], false), "at the end: copy to be sure");
        assert_eq!(renamed(&["id", ROWID_COLUMN], &["id", "x"]), (vec![], true));
    }
}
