//! The shared-tables layout in PostgreSQL: a table every source writes, keyed first by the source column, created
//! by the first source that needs it and adopted as it is by the others.

use tokio_postgres::GenericClient;

use crate::error::{Error, ErrorKind, Result};
use crate::ident::{qualified, quote};
use crate::mapping::layout::{Layout, SOURCE_COLUMN};
use crate::mapping::table::{TablePlan, ROWID_COLUMN};
use crate::sqlite::introspect::Table;

/// Whether `table` has the source column a table shared by several sources has.
pub(crate) async fn is_shared_table(client: &impl GenericClient, schema: &str, table: &str) -> Result<bool> {
    let columns = crate::pg::catalog::table_columns(client, schema, table).await?.unwrap_or_default();
    Ok(columns.iter().any(|(name, _)| name == SOURCE_COLUMN))
}

/// What became of a shared table this source has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SharedTable {
    /// PostgreSQL lacks it: the caller creates it.
    Missing,
    /// It exists, now with every column this source has.
    Adopted,
}

/// For a shared table that exists, adds the columns this source has that it lacks and switches `plan` to the
/// table's column types. Serialized per table between processes (until the transaction ends), so two sources
/// never create one table at once.
pub(crate) async fn create_or_adopt_shared(
    tx: &tokio_postgres::Transaction<'_>,
    schema: &str,
    plan: &mut TablePlan,
    table: &Table,
) -> Result<SharedTable> {
    let name = qualified(schema, &plan.name);
    tx.execute("SELECT pg_advisory_xact_lock(hashtextextended('lite2pg-ddl:' || $1, 0))", &[&name]).await?;
    let Some(existing) = crate::pg::catalog::table_columns(tx, schema, &plan.name).await? else {
        return Ok(SharedTable::Missing);
    };
    if !existing.iter().any(|(column, _)| column == SOURCE_COLUMN) {
        return Err(Error::new(
            ErrorKind::Schema,
            format!("{name} exists without a {SOURCE_COLUMN} column: it is not a shared table"),
        )
        .with_hint("rename or drop it, or sync into another --schema"));
    }
    let wanted = plan.pg_key(Layout::SharedTables);
    let current = crate::pg::catalog::primary_key(tx, schema, &plan.name).await?.map(|(_, columns)| columns);
    if current.as_ref() != Some(&wanted) {
        return Err(Error::new(
            ErrorKind::Schema,
            format!(
                "shared table {name} is keyed by ({}), this source's table by ({})",
                current.unwrap_or_default().join(", "),
                wanted.join(", ")
            ),
        )
        .with_hint("every source must have the same primary key on a shared table"));
    }
    for column in plan.columns.iter().filter(|c| !existing.iter().any(|(name, _)| name == &c.pg_name)) {
        tx.batch_execute(&format!(
            "ALTER TABLE {name} ADD COLUMN IF NOT EXISTS {} {}",
            quote(&column.pg_name),
            column.pg_type.sql()
        ))
        .await?;
    }
    let logged_key: Vec<String> = plan.key_columns().filter(|c| c.name != ROWID_COLUMN).map(|c| c.name.clone()).collect();
    *plan = crate::pg::apply::existing_plan(tx, schema, table, &logged_key).await?;
    Ok(SharedTable::Adopted)
}
