//! `lite2pg.tables`: the tables of each source, their keys, the columns last synced and which to copy again.

use tokio_postgres::GenericClient;

use crate::error::Result;

/// Which source (if any) created `schema.table`.
pub async fn table_owner(client: &impl GenericClient, schema: &str, table: &str) -> Result<Option<String>> {
    let row = client
        .query_opt("SELECT source_id FROM lite2pg.tables WHERE target_schema = $1 AND table_name = $2", &[&schema, &table])
        .await?;
    Ok(row.map(|r| r.get(0)))
}

/// Records a table as lite2pg's for this source (or renames its record); `resync` marks it to be copied whole.
pub async fn register_table(
    client: &impl GenericClient,
    source_id: &str,
    schema: &str,
    table: &str,
    key_columns: &[String],
    resync: bool,
) -> Result<()> {
    let key: serde_json::Value = key_columns.to_vec().into();
    client
        .execute(
            "INSERT INTO lite2pg.tables (source_id, table_name, target_schema, key_columns, resync) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (source_id, table_name) DO UPDATE SET target_schema = excluded.target_schema,
               key_columns = CASE WHEN excluded.key_columns = '[]' THEN lite2pg.tables.key_columns ELSE excluded.key_columns END,
               resync = lite2pg.tables.resync OR excluded.resync",
            &[&source_id, &table, &schema, &key, &resync],
        )
        .await?;
    Ok(())
}

/// Moves a table's records (its row in `lite2pg.tables`, its rejects) to a new name.
pub async fn rename_table(client: &impl GenericClient, source_id: &str, old: &str, new: &str) -> Result<()> {
    for sql in [
        "UPDATE lite2pg.tables SET table_name = $3 WHERE source_id = $1 AND table_name = $2",
        "UPDATE lite2pg.rejects SET table_name = $3 WHERE source_id = $1 AND table_name = $2",
    ] {
        client.execute(sql, &[&source_id, &old, &new]).await?;
    }
    Ok(())
}

/// Forgets a table (it was dropped in SQLite and in PostgreSQL).
pub async fn forget_table(client: &impl GenericClient, source_id: &str, table: &str) -> Result<()> {
    for sql in [
        "DELETE FROM lite2pg.tables WHERE source_id = $1 AND table_name = $2",
        "DELETE FROM lite2pg.rejects WHERE source_id = $1 AND table_name = $2",
    ] {
        client.execute(sql, &[&source_id, &table]).await?;
    }
    Ok(())
}

/// Clears the copy-again marks of the source's tables not named in `tables` (the ones it captures now).
pub async fn clear_resync_except(client: &impl GenericClient, source_id: &str, tables: &[String]) -> Result<()> {
    client
        .execute(
            "UPDATE lite2pg.tables SET resync = false WHERE source_id = $1 AND resync AND table_name <> ALL($2)",
            &[&source_id, &tables],
        )
        .await?;
    Ok(())
}

/// Names of the source's tables marked to be copied again in the next batch.
pub async fn tables_to_resync(client: &impl GenericClient, source_id: &str) -> Result<Vec<String>> {
    let rows = client.query("SELECT table_name FROM lite2pg.tables WHERE source_id = $1 AND resync", &[&source_id]).await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Marks a table to be copied again (`resync`) or records that it was, with its old rejects cleared.
pub async fn set_resync(client: &impl GenericClient, source_id: &str, table: &str, resync: bool) -> Result<()> {
    client
        .execute("UPDATE lite2pg.tables SET resync = $3 WHERE source_id = $1 AND table_name = $2", &[&source_id, &table, &resync])
        .await?;
    if !resync {
        client.execute("DELETE FROM lite2pg.rejects WHERE source_id = $1 AND table_name = $2", &[&source_id, &table]).await?;
    }
    Ok(())
}

/// The SQLite columns recorded for a table of a source, if any.
pub async fn synced_columns(client: &impl GenericClient, source_id: &str, table: &str) -> Result<Option<Vec<String>>> {
    let row = client
        .query_opt("SELECT columns FROM lite2pg.tables WHERE source_id = $1 AND table_name = $2", &[&source_id, &table])
        .await?;
    Ok(row.and_then(|r| r.get::<_, Option<serde_json::Value>>(0)).and_then(|v| serde_json::from_value(v).ok()))
}

/// Records the SQLite columns a table of a source has now.
pub async fn set_synced_columns(client: &impl GenericClient, source_id: &str, table: &str, columns: &[String]) -> Result<()> {
    let columns: serde_json::Value = columns.to_vec().into();
    client
        .execute(
            "UPDATE lite2pg.tables SET columns = $3 WHERE source_id = $1 AND table_name = $2",
            &[&source_id, &table, &columns],
        )
        .await?;
    Ok(())
}

/// Forgets every table and reject of a source, before a snapshot or a registration records them again.
pub async fn forget_tables_and_rejects(client: &impl GenericClient, source_id: &str) -> Result<()> {
    for sql in ["DELETE FROM lite2pg.tables WHERE source_id = $1", "DELETE FROM lite2pg.rejects WHERE source_id = $1"] {
        client.execute(sql, &[&source_id]).await?;
    }
    Ok(())
}

/// Records a table a snapshot creates or adopts for a source, with its key columns and SQLite columns.
pub async fn record_snapshot_table(
    client: &impl GenericClient,
    source_id: &str,
    schema: &str,
    table: &str,
    key_columns: &[String],
    columns: &[String],
) -> Result<()> {
    let (key, columns): (serde_json::Value, serde_json::Value) = (key_columns.to_vec().into(), columns.to_vec().into());
    client
        .execute(
            "INSERT INTO lite2pg.tables (source_id, table_name, target_schema, key_columns, columns) VALUES ($1, $2, $3, $4, $5)",
            &[&source_id, &table, &schema, &key, &columns],
        )
        .await?;
    Ok(())
}

/// Records how many rows and bytes a snapshot copied into a table.
pub async fn record_copied(client: &impl GenericClient, source_id: &str, table: &str, rows: u64, bytes: u64) -> Result<()> {
    client
        .execute(
            "UPDATE lite2pg.tables SET rows_copied = $3, bytes_copied = $4, copied_at = now() WHERE source_id = $1 AND table_name = $2",
            &[&source_id, &table, &(rows as i64), &(bytes as i64)],
        )
        .await?;
    Ok(())
}
