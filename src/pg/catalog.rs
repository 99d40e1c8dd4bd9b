//! Questions to PostgreSQL's catalog (`pg_class`, `pg_attribute`, `pg_constraint`, `pg_index`, …): which tables,
//! columns, keys and constraints exist and how they are typed. lite2pg's catalog queries live here.

use tokio_postgres::GenericClient;

use crate::error::Result;

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
