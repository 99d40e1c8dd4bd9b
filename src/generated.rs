//! Generated columns at cutover. While streaming they are plain columns holding the values SQLite computed; once
//! the application writes to PostgreSQL, PostgreSQL must compute them. PostgreSQL 15 cannot turn a plain column
//! into a generated one, so each is re-added as `GENERATED ALWAYS AS (…) STORED` beside the old one, kept only if
//! PostgreSQL computes every row's value exactly as SQLite did, then takes the old one's name (and moves to the
//! end of the table); the indexes and constraints on it are made again. Anything else keeps the plain column, with
//! the reason.

use tokio_postgres::Client;

use crate::error::Result;
use crate::ident::{qualified, quote};
use crate::mapping::table::pg_column_name;
use crate::pg::catalog;
use crate::sqlite::index_sql::to_postgres;
use crate::sqlite::introspect::{Column, Table};

/// The temporary name of the generated column while it is compared with the synced one.
const CANDIDATE: &str = "__lite2pg_generated";

/// What became of one SQLite generated column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// `table.column`, in SQLite's names.
    pub column: String,
    /// The SQLite expression (`AS (…)` text), or the column's name when it could not be read.
    pub expression: String,
    /// The statement that made it generated, or why it stays a plain column.
    pub result: std::result::Result<String, String>,
}

/// Makes `table`'s generated columns generated in PostgreSQL too, inside the caller's open transaction, each in a
/// savepoint: one that PostgreSQL refuses or computes differently is left as it was; one PostgreSQL generates
/// already is left alone.
pub async fn make_generated(client: &Client, schema: &str, table: &Table) -> Result<Vec<Outcome>> {
    let plain: Vec<(String, String)> =
        table.columns.iter().filter(|c| c.generated.is_none()).map(|c| (c.name.clone(), pg_column_name(&c.name))).collect();
    let mut outcomes = Vec::new();
    for column in table.columns.iter().filter(|c| c.generated.is_some()) {
        // The application's own schema (made by its migrations) may generate it already.
        let name = pg_column_name(&column.name);
        if catalog::columns(client, schema, &table.name).await?.unwrap_or_default().iter().any(|c| c.name == name && c.generated)
        {
            continue;
        }
        let expression = column.generated.as_ref().and_then(|g| g.expression.clone());
        let result = match expression.as_deref().map(|e| to_postgres(e, &plain)) {
            None => Err("its expression could not be read from the table's SQL".to_string()),
            Some(Err(reason)) => Err(format!("its expression does not translate: {reason}")),
            Some(Ok(pg_expression)) => replace_column(client, schema, table, column, &pg_expression).await?,
        };
        outcomes.push(Outcome {
            column: format!("{}.{}", table.name, column.name),
            expression: expression.unwrap_or_else(|| column.name.clone()),
            result,
        });
    }
    Ok(outcomes)
}

/// Swaps the plain column for one PostgreSQL computes from `pg_expression`, when every row comes out the same.
async fn replace_column(
    client: &Client,
    schema: &str,
    table: &Table,
    column: &Column,
    pg_expression: &str,
) -> Result<std::result::Result<String, String>> {
    let relation = qualified(schema, &table.name);
    let name = pg_column_name(&column.name);
    let columns = catalog::columns(client, schema, &table.name).await?.unwrap_or_default();
    let Some(found) = columns.into_iter().find(|c| c.name == name) else {
        return Ok(Err("PostgreSQL has no such column".to_string()));
    };
    let (pg_type, not_null) = (found.type_name, found.not_null);
    let remake = match catalog::column_dependents(client, &relation, &name).await? {
        Ok(remake) => remake,
        Err(other) => return Ok(Err(format!("{other} in PostgreSQL uses the column"))),
    };
    let generated = format!("{pg_type} GENERATED ALWAYS AS ({pg_expression}) STORED");
    let (relation, name, remake, generated_type) = (&relation, &name, &remake, &generated);
    let swapped = crate::pg::tx::savepoint(client, || async move {
        let add = format!("ALTER TABLE {relation} ADD COLUMN {} {generated_type}", quote(CANDIDATE));
        if let Some(err) = crate::pg::tx::attempt(client, &add).await? {
            return Ok(Err(format!("PostgreSQL refused `{pg_expression}`: {}", err.message())));
        }
        let differing: i64 =
            client.query_one(&format!("SELECT count(*) FROM {relation} WHERE {}", differs(name, &pg_type)), &[]).await?.get(0);
        if differing > 0 {
            return Ok(Err(format!("PostgreSQL computes `{pg_expression}` differently from SQLite for {differing} row(s)")));
        }
        let set_not_null = format!("ALTER TABLE {relation} ALTER COLUMN {} SET NOT NULL;", quote(name));
        client
            .batch_execute(&format!(
                "ALTER TABLE {relation} DROP COLUMN {0} CASCADE;
                 ALTER TABLE {relation} RENAME COLUMN {1} TO {0};
                 {2}",
                quote(name),
                quote(CANDIDATE),
                if not_null { set_not_null.as_str() } else { "" }
            ))
            .await?;
        for statement in remake {
            if let Some(err) = crate::pg::tx::attempt(client, statement).await? {
                return Ok(Err(format!("PostgreSQL could not make `{statement}` again on the new column: {}", err.message())));
            }
        }
        Ok(Ok(()))
    })
    .await?;
    Ok(swapped.map(|()| {
        let replaced = format!("ALTER TABLE {relation} DROP COLUMN {0}, ADD COLUMN {0} {generated}", quote(name));
        [replaced].into_iter().chain(remake.iter().cloned()).collect::<Vec<_>>().join("; ")
    }))
}

/// The condition on a row where PostgreSQL's value of the candidate differs from the synced one. SQLite has no
/// decimal arithmetic: a numeric column with a fraction holds the double SQLite computed (3702.0000000000005 for
/// 37.02 * 100, which SQLite itself prints as 3702.0), so PostgreSQL's exact value counts as the same when both
/// agree to a double's 15 significant digits (PostgreSQL's float8-to-numeric cast). Integers must match exactly.
fn differs(column: &str, pg_type: &str) -> String {
    let (candidate, synced) = (quote(CANDIDATE), quote(column));
    let exact = format!("{candidate} IS DISTINCT FROM {synced}");
    match pg_type.starts_with("numeric") {
        true => format!(
            "{exact} AND (scale({synced}) = 0 OR {candidate}::float8::numeric IS DISTINCT FROM {synced}::float8::numeric)"
        ),
        false => exact,
    }
}
