//! lite2pg's own schema in PostgreSQL: which sources exist, how far each is applied, which tables lite2pg
//! created, and which values it could not hold (`rejects`).
//!
//! Contract: `applied_seq` only moves forward, and only in the same transaction that applied the changes up to
//! it, so PostgreSQL's data and position can never disagree.

use tokio_postgres::{Client, GenericClient};

use crate::error::{Error, ErrorKind, Result};
use crate::mapping::types::SqlValue;

/// Oldest PostgreSQL major version lite2pg runs against (`hashtextextended`, `ON CONFLICT`, deferrable unique).
pub const MIN_PG_VERSION: i32 = 12;

/// The schema holding lite2pg's state.
pub const STATE_SCHEMA: &str = "lite2pg";

const STATE_DDL: &str = "
CREATE TABLE IF NOT EXISTS lite2pg.sources (
    source_id text PRIMARY KEY,
    database_id text NOT NULL,
    sqlite_path text NOT NULL,
    target_schema text NOT NULL,
    snapshot_seq bigint,
    snapshot_started_at timestamptz,
    snapshot_finished_at timestamptz,
    applied_seq bigint NOT NULL DEFAULT 0,
    last_applied_at timestamptz,
    last_error text,
    last_error_at timestamptz,
    promoted boolean NOT NULL DEFAULT false,
    applied_mark text
);
CREATE TABLE IF NOT EXISTS lite2pg.tables (
    source_id text NOT NULL REFERENCES lite2pg.sources ON DELETE CASCADE,
    table_name text NOT NULL,
    target_schema text NOT NULL,
    key_columns jsonb NOT NULL,
    rows_copied bigint,
    bytes_copied bigint,
    copied_at timestamptz,
    resync boolean NOT NULL DEFAULT false,
    PRIMARY KEY (source_id, table_name)
);
-- Added after the first release: tables whose rows must be copied again in the next batch.
DO $$ BEGIN
    -- The mark of the log entry at applied_seq (`capture::entry_mark`): tells a restored or replaced file.
    IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'lite2pg.sources'::regclass AND attname = 'applied_mark') THEN
        ALTER TABLE lite2pg.sources ADD COLUMN applied_mark text;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'lite2pg.tables'::regclass AND attname = 'resync') THEN
        ALTER TABLE lite2pg.tables ADD COLUMN resync boolean NOT NULL DEFAULT false;
    END IF;
    -- The SQLite columns a shared table last had from this source, to tell what changed while stopped.
    IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'lite2pg.tables'::regclass AND attname = 'columns') THEN
        ALTER TABLE lite2pg.tables ADD COLUMN columns jsonb;
    END IF;
    -- When the last error was met, for status.
    IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'lite2pg.sources'::regclass AND attname = 'last_error_at') THEN
        ALTER TABLE lite2pg.sources ADD COLUMN last_error_at timestamptz;
    END IF;
    -- Synced into the application's own tables (`--into-existing`): lite2pg never changes their DDL.
    IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'lite2pg.sources'::regclass AND attname = 'into_existing') THEN
        ALTER TABLE lite2pg.sources ADD COLUMN into_existing boolean NOT NULL DEFAULT false;
    END IF;
END $$;
CREATE TABLE IF NOT EXISTS lite2pg.rejects (
    source_id text NOT NULL,
    table_name text NOT NULL,
    key jsonb NOT NULL,
    column_name text NOT NULL,
    reason text NOT NULL,
    raw bytea,
    storage_class text NOT NULL,
    rejected_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source_id, table_name, key)
);
";

/// Arbitrary constant that serializes lite2pg's state DDL between processes.
const STATE_DDL_LOCK: i64 = 0x6c69_7465_3270_6700;

/// Creates lite2pg's schema and tables if they are missing; safe when several processes start at once.
pub async fn ensure_state_schema(client: &mut Client) -> Result<()> {
    check_server_version(client).await?;
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&STATE_DDL_LOCK]).await?;
    // On Citus with schema-based sharding lite2pg's schema would become a tenant schema on some worker; it stays a
    // regular schema on the coordinator, written in each batch's transaction (see docs/fan-in.md for how the
    // position then commits with the data).
    crate::pg::citus::keep_new_schemas_local(&tx).await?;
    if crate::pg::citus::undistribute_schema(&tx, STATE_SCHEMA).await? {
        tracing::info!("schema {STATE_SCHEMA} was a distributed schema: made it a regular schema on the coordinator again");
    }
    ensure_schema(&tx, STATE_SCHEMA).await?;
    tx.batch_execute(STATE_DDL).await.map_err(|err| {
        Error::from(err).context("cannot create lite2pg's state schema").with_hint("lite2pg's user needs CREATE on the database")
    })?;
    tx.commit().await?;
    Ok(())
}

/// The server's major version and its full version string.
pub async fn server_version(client: &impl GenericClient) -> Result<(i32, String)> {
    let row = client
        .query_one("SELECT current_setting('server_version_num')::int / 10000, current_setting('server_version')", &[])
        .await?;
    Ok((row.get(0), row.get(1)))
}

/// Refuses servers older than `MIN_PG_VERSION`, saying which version is needed.
async fn check_server_version(client: &Client) -> Result<()> {
    let (major, version) = server_version(client).await?;
    if major < MIN_PG_VERSION {
        return Err(Error::new(
            ErrorKind::Usage,
            format!("PostgreSQL {version} is too old: lite2pg needs PostgreSQL {MIN_PG_VERSION} or newer"),
        )
        .with_hint("upgrade the server, or point lite2pg at a newer one"));
    }
    Ok(())
}

/// Creates `schema` unless it exists. An existing schema (made by an administrator for a least-privileged user)
/// needs no CREATE privilege on the database, which `CREATE SCHEMA IF NOT EXISTS` would.
pub async fn ensure_schema(client: &impl GenericClient, schema: &str) -> Result<()> {
    let exists: bool = client.query_one("SELECT to_regnamespace($1) IS NOT NULL", &[&crate::ident::quote(schema)]).await?.get(0);
    if !exists {
        client.batch_execute(&format!("CREATE SCHEMA {}", crate::ident::quote(schema))).await.map_err(|err| {
            Error::from(err)
                .context(format!("cannot create schema {}", crate::ident::quote(schema)))
                .with_hint("lite2pg's user needs CREATE on the database, or an administrator creates the schema for it")
        })?;
    }
    Ok(())
}

/// A source's row in `lite2pg.sources`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceRow {
    pub source_id: String,
    pub database_id: String,
    pub target_schema: String,
    /// Set once a snapshot finished.
    pub snapshot_seq: Option<i64>,
    pub applied_seq: i64,
    /// The mark of the SQLite log entry at `applied_seq`; `None` before the first batch of an older lite2pg's source.
    pub applied_mark: Option<String>,
    pub promoted: bool,
    /// Synced into the application's own tables (`--into-existing`).
    pub into_existing: bool,
}

/// Reads a source's row, if any.
pub async fn source(client: &impl GenericClient, source_id: &str) -> Result<Option<SourceRow>> {
    let row = client
        .query_opt(
            "SELECT source_id, database_id, target_schema, snapshot_seq, applied_seq, promoted, applied_mark, into_existing
             FROM lite2pg.sources WHERE source_id = $1",
            &[&source_id],
        )
        .await?;
    Ok(row.map(|r| SourceRow {
        source_id: r.get(0),
        database_id: r.get(1),
        target_schema: r.get(2),
        snapshot_seq: r.get(3),
        applied_seq: r.get(4),
        applied_mark: r.get(6),
        promoted: r.get(5),
        into_existing: r.get(7),
    }))
}

/// Which source (if any) created `schema.table`.
pub async fn table_owner(client: &impl GenericClient, schema: &str, table: &str) -> Result<Option<String>> {
    let row = client
        .query_opt("SELECT source_id FROM lite2pg.tables WHERE target_schema = $1 AND table_name = $2", &[&schema, &table])
        .await?;
    Ok(row.map(|r| r.get(0)))
}

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

/// Moves `applied_seq` from `from` to `to`, whose log entry has `mark`, inside the caller's transaction; fails if
/// another process moved it.
pub async fn advance(client: &impl GenericClient, source_id: &str, from: i64, to: i64, mark: Option<&str>) -> Result<()> {
    let moved = client
        .execute(
            "UPDATE lite2pg.sources SET applied_seq = $3, applied_mark = $4, last_applied_at = now(), last_error = NULL, last_error_at = NULL
             WHERE source_id = $1 AND applied_seq = $2",
            &[&source_id, &from, &to, &mark],
        )
        .await?;
    if moved != 1 {
        return Err(Error::new(
            ErrorKind::State,
            format!("source {source_id} is no longer at position {from}: another lite2pg process applied it"),
        )
        .with_hint("run one lite2pg per source"));
    }
    Ok(())
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

/// Whose rows of shared tables this connection writes and reads (`schema::SOURCE_SETTING`): until the current
/// transaction ends (`transaction`, for a connection the pool hands to many sources), or for the session.
pub async fn act_as_source(client: &impl GenericClient, source_id: &str, transaction: bool) -> Result<()> {
    client.execute("SELECT set_config($1, $2, $3)", &[&crate::mapping::layout::SOURCE_SETTING, &source_id, &transaction]).await?;
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

/// Records the last error a source met and when, for `status` (outside any batch transaction); the next
/// applied batch clears it.
pub async fn record_error(client: &impl GenericClient, source_id: &str, error: &str) -> Result<()> {
    client
        .execute("UPDATE lite2pg.sources SET last_error = $2, last_error_at = now() WHERE source_id = $1", &[&source_id, &error])
        .await?;
    Ok(())
}

/// A value PostgreSQL could not hold, with the row's key and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Reject {
    pub table: String,
    pub key: Vec<SqlValue>,
    pub column: String,
    pub reason: String,
    pub value: SqlValue,
}

impl Reject {
    /// The error of the `stop` policy: which row, which value, and the ways on.
    pub fn stop_error(&self) -> Error {
        let key = serde_json::Value::Array(self.key.iter().map(SqlValue::to_json).collect());
        Error::new(
            ErrorKind::Schema,
            format!(
                "table {:?}, row with key {key}: the {} value of column {:?} does not fit PostgreSQL ({})",
                self.table,
                self.value.storage_class(),
                self.column,
                self.reason
            ),
        )
        .with_hint(format!(
            "nothing of it was applied; fix the value in SQLite, or set on_misfit = \"widen\" or \"reject\" for the column \
             ([table.{:?}.columns.{:?}] in lite2pg.toml, or --on-misfit) and start lite2pg again",
            self.table, self.column
        ))
    }
}

/// Stores rejects, replacing an older reject of the same row.
pub async fn store_rejects(client: &impl GenericClient, source_id: &str, rejects: &[Reject]) -> Result<()> {
    let statement = client
        .prepare(
            "INSERT INTO lite2pg.rejects (source_id, table_name, key, column_name, reason, raw, storage_class)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (source_id, table_name, key) DO UPDATE SET column_name = excluded.column_name,
               reason = excluded.reason, raw = excluded.raw, storage_class = excluded.storage_class, rejected_at = excluded.rejected_at",
        )
        .await?;
    for reject in rejects {
        let key = serde_json::Value::Array(reject.key.iter().map(SqlValue::to_json).collect());
        client
            .execute(
                &statement,
                &[
                    &source_id,
                    &reject.table,
                    &key,
                    &reject.column,
                    &reject.reason,
                    &reject.value.raw_bytes(),
                    &reject.value.storage_class(),
                ],
            )
            .await?;
    }
    Ok(())
}

/// A row of `lite2pg.rejects` as stored, for listing.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StoredReject {
    pub table: String,
    /// JSON array of the key values.
    pub key: String,
    pub column: String,
    pub reason: String,
    pub storage_class: String,
    /// `\x…` hex of the first 16 raw bytes, with the full length when longer.
    pub raw: String,
    pub rejected_at: String,
}

/// A source's rejects, by table and time.
pub async fn rejects(client: &impl GenericClient, source_id: &str) -> Result<Vec<StoredReject>> {
    let rows = client
        .query(
            "SELECT table_name, key::text, column_name, reason, storage_class, raw, rejected_at::text
             FROM lite2pg.rejects WHERE source_id = $1 ORDER BY table_name, rejected_at",
            &[&source_id],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let raw = r.get::<_, Option<Vec<u8>>>(5).map_or_else(String::new, |bytes| {
                let shown = format!("\\x{}", crate::mapping::types::hex(&bytes[..bytes.len().min(16)]));
                if bytes.len() > 16 {
                    format!("{shown}… ({} bytes)", bytes.len())
                } else {
                    shown
                }
            });
            StoredReject {
                table: r.get(0),
                key: r.get(1),
                column: r.get(2),
                reason: r.get(3),
                storage_class: r.get(4),
                raw,
                rejected_at: r.get(6),
            }
        })
        .collect())
}

/// How many of a source's values in `table` PostgreSQL could not hold.
pub async fn reject_count(client: &impl GenericClient, source_id: &str, table: &str) -> Result<u64> {
    let count: i64 = client
        .query_one("SELECT count(*) FROM lite2pg.rejects WHERE source_id = $1 AND table_name = $2", &[&source_id, &table])
        .await?
        .get(0);
    Ok(count as u64)
}

/// Takes the session-level advisory lock that makes one process the only writer of a source. Returns an error
/// naming the holder when another session has it.
pub async fn lock_source(client: &Client, source_id: &str) -> Result<()> {
    let row = client.query_one("SELECT pg_try_advisory_lock(hashtextextended('lite2pg:' || $1, 0))", &[&source_id]).await?;
    if row.get::<_, bool>(0) {
        return Ok(());
    }
    let holder = lock_holder(client, source_id).await?.unwrap_or_else(|| "another session".to_string());
    Err(Error::new(ErrorKind::Locked, format!("source {source_id} is being synced by another lite2pg ({holder})"))
        .with_hint("run one lite2pg per source; stop the other one or wait for it"))
}

/// Releases a source's lock taken by `lock_source` on the same session.
pub async fn unlock_source(client: &Client, source_id: &str) -> Result<()> {
    client.execute("SELECT pg_advisory_unlock(hashtextextended('lite2pg:' || $1, 0))", &[&source_id]).await?;
    Ok(())
}

/// Describes the session holding a source's lock (a running `lite2pg run`), or `None` when it is free.
pub async fn lock_holder(client: &impl GenericClient, source_id: &str) -> Result<Option<String>> {
    let holder = client
        .query_opt(
            "SELECT a.pid, coalesce(host(a.client_addr), 'local socket'), a.backend_start::text
             FROM pg_locks l JOIN pg_stat_activity a USING (pid)
             WHERE l.locktype = 'advisory' AND l.granted
               AND (l.classid::bigint << 32) | l.objid::bigint = hashtextextended('lite2pg:' || $1, 0)
             ORDER BY a.backend_start LIMIT 1",
            &[&source_id],
        )
        .await?;
    Ok(holder.map(|r| {
        format!("PostgreSQL backend pid {} from {} since {}", r.get::<_, i32>(0), r.get::<_, String>(1), r.get::<_, String>(2))
    }))
}

/// Whether lite2pg's state schema exists (it is created by the first snapshot).
pub async fn state_schema_exists(client: &impl GenericClient) -> Result<bool> {
    Ok(client.query_one("SELECT to_regclass('lite2pg.sources') IS NOT NULL", &[]).await?.get(0))
}

/// Refuses a SQLite file whose source was promoted by `lite2pg cutover`: PostgreSQL is the application's
/// database now, and syncing the old file again would overwrite it.
pub async fn refuse_promoted_file(client: &impl GenericClient, sqlite: &std::path::Path) -> Result<()> {
    let path = std::fs::canonicalize(sqlite).unwrap_or_else(|_| sqlite.to_path_buf()).display().to_string();
    let promoted = client
        .query_opt("SELECT source_id FROM lite2pg.sources WHERE sqlite_path = $1 AND promoted", &[&path])
        .await?
        .map(|r| r.get::<_, String>(0));
    match promoted {
        Some(source_id) => Err(Error::new(
            ErrorKind::State,
            format!(
                "source {source_id} ({path}) was promoted by `lite2pg cutover`: PostgreSQL is now the application's database"
            ),
        )
        .with_hint("nothing more to sync; to start over from this file on purpose, DELETE its row from lite2pg.sources first")),
        None => Ok(()),
    }
}
