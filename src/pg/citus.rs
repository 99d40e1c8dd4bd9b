//! Citus, the distributed PostgreSQL, as a target: lite2pg's own schema kept a regular schema on the coordinator
//! (schema-based sharding would make it a tenant schema of its own), and shared tables distributed by `source_id`,
//! all co-located. Nothing here runs on a server without the `citus` extension.

use tokio_postgres::GenericClient;

use crate::error::Result;
use crate::ident::qualified;
use crate::mapping::layout::{Layout, SOURCE_COLUMN};

/// Whether the `citus` extension is installed in the connected database.
pub async fn is_citus(client: &impl GenericClient) -> Result<bool> {
    Ok(client.query_one("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus')", &[]).await?.get(0))
}

/// Makes schemas created later in the caller's transaction regular ones, whatever
/// `citus.enable_schema_based_sharding` says (a no-op without Citus: the setting then does not exist).
pub async fn keep_new_schemas_local(client: &impl GenericClient) -> Result<()> {
    client
        .execute(
            "SELECT set_config('citus.enable_schema_based_sharding', 'off', true)
             WHERE current_setting('citus.enable_schema_based_sharding', true) IS NOT NULL",
            &[],
        )
        .await?;
    Ok(())
}

/// Turns `schema` back into a regular schema on the coordinator if Citus made it a distributed (tenant) schema,
/// as lite2pg 0.1 let schema-based sharding do to its own schema. Returns whether it did.
pub async fn undistribute_schema(client: &impl GenericClient, schema: &str) -> Result<bool> {
    if !is_citus(client).await? {
        return Ok(false);
    }
    let distributed: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_dist_schema WHERE schemaid = to_regnamespace($1))",
            &[&crate::ident::quote(schema)],
        )
        .await?
        .get(0);
    if distributed {
        client.execute("SELECT citus_schema_undistribute(to_regnamespace($1))", &[&crate::ident::quote(schema)]).await?;
    }
    Ok(distributed)
}

/// On Citus, distributes shared table `schema.table` (just created, still empty) by `source_id`, co-located with
/// the schema's other tables distributed so: every source's rows of every table sit in one shard group, so a
/// batch touches one shard group and foreign keys between the tables hold. Does nothing for a table of one
/// source, or without Citus.
pub async fn distribute_if_shared(client: &impl GenericClient, schema: &str, table: &str, layout: Layout) -> Result<()> {
    if !layout.shares_tables() || !is_citus(client).await? {
        return Ok(());
    }
    let relation = qualified(schema, table);
    let colocated: Option<String> = client
        .query_opt(
            "SELECT p.logicalrelid::text FROM pg_dist_partition p JOIN pg_class c ON c.oid = p.logicalrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = $1 AND p.partmethod = 'h' AND column_to_column_name(p.logicalrelid, p.partkey) = $2
               AND p.logicalrelid <> to_regclass($3)
             ORDER BY p.logicalrelid LIMIT 1",
            &[&schema, &SOURCE_COLUMN, &relation],
        )
        .await?
        .map(|r| r.get(0));
    let colocate_with = colocated.unwrap_or_else(|| "default".to_string());
    client
        .execute(
            "SELECT create_distributed_table(to_regclass($1), $2, colocate_with => $3)",
            &[&relation, &SOURCE_COLUMN, &colocate_with],
        )
        .await
        .map_err(|err| {
            crate::error::Error::from(err)
                .context(format!("cannot distribute shared table {relation} by {SOURCE_COLUMN} on Citus"))
        })?;
    tracing::info!("distributed shared table {relation} by {SOURCE_COLUMN}, co-located with {colocate_with}");
    Ok(())
}

/// On Citus, has the coordinator finish the two-phase commits it decided but could not complete on a worker (one
/// down at COMMIT PREPARED): until Citus's maintenance daemon recovers them (every `citus.recover_2pc_interval`),
/// their rows are invisible although the batch and its position committed. Done only when the role may run
/// `recover_prepared_transactions()` (superuser or granted); returns how many it finished.
pub(crate) async fn finish_prepared_commits(client: &impl GenericClient) -> Result<i32> {
    if !is_citus(client).await? {
        return Ok(0);
    }
    let finished = client
        .query_opt(
            "SELECT recover_prepared_transactions()
             WHERE has_function_privilege(to_regprocedure('recover_prepared_transactions()'), 'EXECUTE')",
            &[],
        )
        .await?;
    Ok(finished.map_or(0, |row| row.get(0)))
}
