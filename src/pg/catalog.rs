//! Questions to PostgreSQL's catalog (`pg_class`, `pg_attribute`, `pg_constraint`, `pg_index`, …): which tables,
//! columns, keys and constraints exist and how they are typed. lite2pg's catalog queries live here.

use tokio_postgres::GenericClient;

use crate::error::Result;
use crate::ident::qualified;

/// Whether `schema.table` exists in PostgreSQL.
pub async fn table_exists(client: &impl GenericClient, schema: &str, table: &str) -> Result<bool> {
    let row = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2)",
            &[&schema, &crate::ident::pg_name(table)],
        )
        .await?;
    Ok(row.get(0))
}

/// A column of a PostgreSQL table, as the catalog has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    /// `format_type`'s spelling, e.g. `character varying(20)`.
    pub type_name: String,
    /// `GENERATED ALWAYS AS (…) STORED`: PostgreSQL computes it, nothing may write it.
    pub generated: bool,
}

/// A table's columns in their order, or `None` when the table does not exist.
pub async fn columns(client: &impl GenericClient, schema: &str, table: &str) -> Result<Option<Vec<Column>>> {
    let rows = client
        .query(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), a.attgenerated <> '' FROM pg_attribute a
             WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            &[&qualified(schema, table)],
        )
        .await?;
    Ok((!rows.is_empty())
        .then(|| rows.iter().map(|r| Column { name: r.get(0), type_name: r.get(1), generated: r.get(2) }).collect()))
}

/// A table's columns and types as they are now, or `None` when the table does not exist.
pub async fn table_columns(client: &impl GenericClient, schema: &str, table: &str) -> Result<Option<Vec<(String, String)>>> {
    Ok(columns(client, schema, table).await?.map(|found| found.into_iter().map(|c| (c.name, c.type_name)).collect()))
}

/// A column of one of several tables: `(table, column, type, generated)`, ordered by table and position.
pub type TableColumn = (String, String, String, bool);

/// Every column of the tables of `schema` named `tables` (PostgreSQL names), by table and position.
pub async fn columns_of_tables(client: &impl GenericClient, schema: &str, tables: &[String]) -> Result<Vec<TableColumn>> {
    let rows = client
        .query(
            "SELECT c.relname::text, a.attname::text, format_type(a.atttypid, a.atttypmod), a.attgenerated <> ''
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
             WHERE n.nspname = $1 AND c.relname = ANY ($2) AND c.relkind IN ('r', 'p')
             ORDER BY c.relname, a.attnum",
            &[&schema, &tables],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3))).collect())
}

/// The ordinary and partitioned tables of `schema` (not partitions), by name.
pub async fn tables_in_schema(client: &impl GenericClient, schema: &str) -> Result<Vec<String>> {
    let rows = client
        .query(
            "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND NOT c.relispartition ORDER BY c.relname",
            &[&schema],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// The foreign keys between the tables of `schema` named `tables` (PostgreSQL names), as `(child, parent)`
/// pairs; a table referencing itself is left out.
pub async fn foreign_key_pairs(client: &impl GenericClient, schema: &str, tables: &[String]) -> Result<Vec<(String, String)>> {
    let rows = client
        .query(
            "SELECT child.relname::text, parent.relname::text FROM pg_constraint c
             JOIN pg_class child ON child.oid = c.conrelid JOIN pg_class parent ON parent.oid = c.confrelid
             JOIN pg_namespace n ON n.oid = child.relnamespace
             WHERE c.contype = 'f' AND n.nspname = $1 AND parent.relnamespace = child.relnamespace
               AND child.relname = ANY ($2) AND parent.relname = ANY ($2) AND child.oid <> parent.oid",
            &[&schema, &tables],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// The columns of `relation` (quoted and qualified) that own a sequence, with the sequence's name (quoted).
pub async fn serial_sequences(client: &impl GenericClient, relation: &str) -> Result<Vec<(String, String)>> {
    let rows = client
        .query(
            "SELECT a.attname::text, pg_get_serial_sequence($1, a.attname) FROM pg_attribute a
             WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped
               AND pg_get_serial_sequence($1, a.attname) IS NOT NULL",
            &[&relation],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// A table's primary key: its constraint's name and columns in key order.
pub async fn primary_key(client: &impl GenericClient, schema: &str, table: &str) -> Result<Option<(String, Vec<String>)>> {
    let row = client
        .query_opt(
            "SELECT c.conname::text, array_agg(a.attname::text ORDER BY k.ord) FROM pg_constraint c
             CROSS JOIN LATERAL unnest(c.conkey) WITH ORDINALITY AS k(attnum, ord)
             JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum
             WHERE c.conrelid = to_regclass($1) AND c.contype = 'p' GROUP BY c.conname",
            &[&qualified(schema, table)],
        )
        .await?;
    Ok(row.map(|r| (r.get(0), r.get(1))))
}

/// Column sets of a table's unique constraints and plain unique indexes, other than the primary key.
pub async fn unique_sets(client: &impl GenericClient, schema: &str, table: &str) -> Result<Vec<Vec<String>>> {
    let rows = client
        .query(
            "SELECT array_agg(a.attname::text ORDER BY k.ord) FROM pg_index i
             CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
             WHERE i.indrelid = to_regclass($1) AND i.indisunique AND NOT i.indisprimary
               AND i.indexprs IS NULL AND i.indpred IS NULL
             GROUP BY i.indexrelid",
            &[&qualified(schema, table)],
        )
        .await?;
    Ok(rows.into_iter().map(|r| r.get(0)).collect())
}

/// A table's unique expression and partial indexes that back no constraint, with their definitions.
pub async fn unique_indexes_beyond_constraints(
    client: &impl GenericClient,
    schema: &str,
    table: &str,
) -> Result<Vec<(String, String)>> {
    let rows = client
        .query(
            "SELECT c.relname::text, pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
             WHERE i.indrelid = to_regclass($1) AND i.indisunique AND NOT i.indisprimary
               AND (i.indexprs IS NOT NULL OR i.indpred IS NOT NULL)
               AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)",
            &[&qualified(schema, table)],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}
