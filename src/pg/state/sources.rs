//! `lite2pg.sources`: one row per source, with its position, its snapshot's progress and its last error.

use tokio_postgres::{GenericClient, Statement};

use crate::error::{Error, ErrorKind, Result};

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

/// The statement `advance` runs, for preparing it once per connection.
pub const ADVANCE: &str = "UPDATE lite2pg.sources SET applied_seq = $3, applied_mark = $4, last_applied_at = now(),
     last_error = NULL, last_error_at = NULL WHERE source_id = $1 AND applied_seq = $2";

/// Moves `applied_seq` from `from` to `to`, whose log entry has `mark`, inside the caller's transaction, with
/// `statement` prepared from `ADVANCE`; fails if another process moved it.
pub async fn advance(
    client: &impl GenericClient,
    statement: &Statement,
    source_id: &str,
    from: i64,
    to: i64,
    mark: Option<&str>,
) -> Result<()> {
    let moved = client.execute(statement, &[&source_id, &from, &to, &mark]).await?;
    if moved != 1 {
        return Err(Error::new(
            ErrorKind::State,
            format!("source {source_id} is no longer at position {from}: another lite2pg process applied it"),
        )
        .with_hint("run one lite2pg per source"));
    }
    Ok(())
}

/// Whose rows of shared tables this connection writes and reads (`schema::SOURCE_SETTING`): until the current
/// transaction ends (`transaction`, for a connection the pool hands to many sources), or for the session.
pub async fn act_as_source(client: &impl GenericClient, source_id: &str, transaction: bool) -> Result<()> {
    client.execute("SELECT set_config($1, $2, $3)", &[&crate::mapping::layout::SOURCE_SETTING, &source_id, &transaction]).await?;
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

/// Starts a snapshot of a source: its row is (re)made with no position yet, and its tables and rejects forgotten
/// (the snapshot records them again).
pub async fn start_snapshot(
    client: &impl GenericClient,
    source_id: &str,
    database_id: &str,
    sqlite_path: &str,
    schema: &str,
) -> Result<()> {
    client
        .execute(
            "INSERT INTO lite2pg.sources (source_id, database_id, sqlite_path, target_schema, snapshot_started_at)
             VALUES ($1, $2, $3, $4, now())
             ON CONFLICT (source_id) DO UPDATE SET database_id = excluded.database_id, sqlite_path = excluded.sqlite_path,
               target_schema = excluded.target_schema, snapshot_started_at = excluded.snapshot_started_at, snapshot_seq = NULL,
               snapshot_finished_at = NULL, applied_seq = 0, applied_mark = NULL, last_error = NULL, last_error_at = NULL",
            &[&source_id, &database_id, &sqlite_path, &schema],
        )
        .await?;
    super::forget_tables_and_rejects(client, source_id).await
}

/// Records that a snapshot finished at `seq` (whose log entry has `mark`): streaming goes on from there.
pub async fn finish_snapshot(client: &impl GenericClient, source_id: &str, seq: i64, mark: Option<&str>) -> Result<()> {
    client
        .execute(
            "UPDATE lite2pg.sources SET snapshot_seq = $2, applied_seq = $2, applied_mark = $3, snapshot_finished_at = now()
             WHERE source_id = $1",
            &[&source_id, &seq, &mark],
        )
        .await?;
    Ok(())
}

/// Records a source that fills the application's existing tables (`--into-existing`), positioned at `seq` (whose
/// log entry has `mark`), with its tables and rejects forgotten (registration records the tables again).
pub async fn record_into_existing(
    client: &impl GenericClient,
    source_id: &str,
    database_id: &str,
    sqlite_path: &str,
    schema: &str,
    (seq, mark): (i64, Option<&str>),
) -> Result<()> {
    client
        .execute(
            "INSERT INTO lite2pg.sources (source_id, database_id, sqlite_path, target_schema, snapshot_started_at,
               snapshot_finished_at, snapshot_seq, applied_seq, applied_mark, into_existing)
             VALUES ($1, $2, $3, $4, now(), now(), $5, $5, $6, true)
             ON CONFLICT (source_id) DO UPDATE SET database_id = excluded.database_id, sqlite_path = excluded.sqlite_path,
               target_schema = excluded.target_schema, snapshot_started_at = now(), snapshot_finished_at = now(),
               snapshot_seq = excluded.snapshot_seq, applied_seq = excluded.applied_seq, applied_mark = excluded.applied_mark,
               into_existing = true, promoted = false, last_error = NULL, last_error_at = NULL",
            &[&source_id, &database_id, &sqlite_path, &schema, &seq, &mark],
        )
        .await?;
    super::forget_tables_and_rejects(client, source_id).await
}

/// Marks a source promoted by `cutover`: PostgreSQL is the application's database now.
pub async fn promote(client: &impl GenericClient, source_id: &str) -> Result<()> {
    client.execute("UPDATE lite2pg.sources SET promoted = true WHERE source_id = $1", &[&source_id]).await?;
    Ok(())
}

/// Locks a source's row until the transaction open on `client` ends: no batch can commit meanwhile.
pub async fn lock_source_row(client: &impl GenericClient, source_id: &str) -> Result<()> {
    client.query_one("SELECT 1 FROM lite2pg.sources WHERE source_id = $1 FOR UPDATE", &[&source_id]).await?;
    Ok(())
}

/// How far a source is applied, as `client`'s snapshot sees it.
pub async fn applied_seq(client: &impl GenericClient, source_id: &str) -> Result<i64> {
    Ok(client.query_one("SELECT applied_seq FROM lite2pg.sources WHERE source_id = $1", &[&source_id]).await?.get(0))
}

/// What `status` shows of a source's row.
#[derive(Debug, Clone)]
pub struct SourceStatus {
    pub applied_seq: i64,
    pub snapshot_done: bool,
    pub last_error: Option<String>,
    pub last_applied_at: Option<String>,
    pub target_schema: String,
    pub rejects: i64,
    pub last_error_at: Option<String>,
    pub into_existing: bool,
}

/// A source's row for `status`, with its number of rejects; `None` for a source never recorded.
pub async fn source_status(client: &impl GenericClient, source_id: &str) -> Result<Option<SourceStatus>> {
    let row = client
        .query_opt(
            "SELECT s.applied_seq, s.snapshot_seq IS NOT NULL, s.last_error, s.last_applied_at::text, s.target_schema,
                    (SELECT count(*) FROM lite2pg.rejects r WHERE r.source_id = s.source_id), s.last_error_at::text,
                    s.into_existing
             FROM lite2pg.sources s WHERE s.source_id = $1",
            &[&source_id],
        )
        .await?;
    Ok(row.map(|row| SourceStatus {
        applied_seq: row.get(0),
        snapshot_done: row.get(1),
        last_error: row.get(2),
        last_applied_at: row.get(3),
        target_schema: row.get(4),
        rejects: row.get(5),
        last_error_at: row.get(6),
        into_existing: row.get(7),
    }))
}

/// Forgets every source whose id starts with `prefix`, with its tables and rejects (`bench` cleaning up its runs).
pub async fn forget_sources_with_prefix(client: &impl GenericClient, prefix: &str) -> Result<()> {
    client.execute("DELETE FROM lite2pg.rejects WHERE source_id LIKE $1 || '%'", &[&prefix]).await?;
    client.execute("DELETE FROM lite2pg.sources WHERE source_id LIKE $1 || '%'", &[&prefix]).await?;
    Ok(())
}
