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
    let relation = qualified(schema, &table.name);
    for column in table.columns.iter().filter(|c| c.generated.is_some()) {
        // The application's own schema (made by its migrations) may generate it already.
        let already: Option<bool> = client
            .query_opt(
                "SELECT attgenerated = 's' FROM pg_attribute WHERE attrelid = to_regclass($1) AND attname = $2",
                &[&relation, &pg_column_name(&column.name)],
            )
            .await?
            .map(|row| row.get(0));
        if already == Some(true) {
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
    let found = client
        .query_opt(
            "SELECT format_type(atttypid, atttypmod), attnotnull FROM pg_attribute
             WHERE attrelid = to_regclass($1) AND attname = $2 AND NOT attisdropped",
            &[&relation, &name],
        )
        .await?;
    let Some(found) = found else { return Ok(Err("PostgreSQL has no such column".to_string())) };
    let (pg_type, not_null): (String, bool) = (found.get(0), found.get(1));
    let remake = match dependents(client, &relation, &name).await? {
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

/// The statements that make again what dropping the column drops: constraints (other tables' foreign keys to it
/// last) and indexes on it. `Err` describes a dependent of another kind (a view, …), which keeps the column plain.
async fn dependents(client: &Client, relation: &str, column: &str) -> Result<std::result::Result<Vec<String>, String>> {
    let rows = client
        .query(
            "SELECT DISTINCT CASE WHEN c.oid IS NOT NULL
                         THEN format('ALTER TABLE %s ADD CONSTRAINT %I %s', c.conrelid::regclass, c.conname, pg_get_constraintdef(c.oid))
                         WHEN i.indexrelid IS NOT NULL THEN pg_get_indexdef(i.indexrelid) END,
                    pg_describe_object(d.classid, d.objid, d.objsubid),
                    CASE WHEN c.contype = 'f' THEN 2 WHEN c.oid IS NOT NULL THEN 0 ELSE 1 END AS step
             FROM pg_attribute a
             JOIN pg_depend d ON d.refclassid = 'pg_class'::regclass AND d.refobjid = a.attrelid AND d.refobjsubid = a.attnum
             LEFT JOIN pg_constraint c ON d.classid = 'pg_constraint'::regclass AND c.oid = d.objid
             LEFT JOIN pg_index i ON d.classid = 'pg_class'::regclass AND i.indexrelid = d.objid
             WHERE a.attrelid = to_regclass($1) AND a.attname = $2
               -- The index behind a constraint comes back with the constraint.
               AND NOT EXISTS (SELECT FROM pg_constraint k WHERE d.classid = 'pg_class'::regclass AND k.conindid = d.objid
                                                           AND k.conrelid = a.attrelid AND k.contype IN ('p', 'u', 'x'))
             ORDER BY step",
            &[&relation, &column],
        )
        .await?;
    rows.iter()
        .map(|row| row.get::<_, Option<String>>(0).ok_or_else(|| row.get::<_, String>(1)))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_or_else(|other| Ok(Err(other)), |remake| Ok(Ok(remake)))
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
