//! lite2pg's own schema in PostgreSQL: which sources exist, how far each is applied, which tables lite2pg
//! created, and which values it could not hold (`rejects`). Every statement about them is a function here, one
//! file per table (`sources`, `tables`, `rejects`) and one for the per-source locks.
//!
//! Contract: `applied_seq` only moves forward, and only in the same transaction that applied the changes up to
//! it, so PostgreSQL's data and position can never disagree.

use tokio_postgres::{Client, GenericClient};

use crate::error::{Error, ErrorKind, Result};

mod locks;
mod rejects;
mod sources;
mod tables;

pub use locks::*;
pub use rejects::*;
pub use sources::*;
pub use tables::*;

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

/// Whether lite2pg's state schema exists (it is created by the first snapshot).
pub async fn state_schema_exists(client: &impl GenericClient) -> Result<bool> {
    Ok(client.query_one("SELECT to_regclass('lite2pg.sources') IS NOT NULL", &[]).await?.get(0))
}
