//! The session-level advisory lock that makes one process the only writer of a source.

use tokio_postgres::{Client, GenericClient};

use crate::error::{Error, ErrorKind, Result};

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
