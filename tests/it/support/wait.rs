//! Waiting for a condition instead of sleeping: poll until it holds, and on timeout fail saying what was awaited
//! and what was seen last. Also the conditions most tests wait for: a daemon has caught up with its file.

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::{lite2pg_output, SqliteFile, TestDb};

const POLL: Duration = Duration::from_millis(20);

/// How long a daemon may take to apply what a test wrote (generous: the machine may be busy).
pub const CATCH_UP: Duration = Duration::from_secs(60);

/// Polls `check` until it returns `Ok`; `Err` says what it saw. Returns that last sight on timeout.
pub async fn poll_until<T, F: Future<Output = Result<T, String>>>(
    timeout: Duration,
    mut check: impl FnMut() -> F,
) -> Result<T, String> {
    let deadline = Instant::now() + timeout;
    loop {
        match check().await {
            Ok(value) => return Ok(value),
            Err(seen) if Instant::now() >= deadline => return Err(seen),
            Err(_) => tokio::time::sleep(POLL).await,
        }
    }
}

/// Polls `check` until it returns `Ok`, and fails the test saying what it waited for and what it saw last.
pub async fn wait_until<T, F: Future<Output = Result<T, String>>>(what: &str, timeout: Duration, check: impl FnMut() -> F) -> T {
    poll_until(timeout, check).await.unwrap_or_else(|seen| panic!("waited {timeout:?} for {what}; last saw: {seen}"))
}

/// `wait_until` for tests and helpers outside the runtime.
pub fn wait_until_blocking<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match check() {
            Ok(value) => return value,
            Err(seen) => assert!(Instant::now() < deadline, "waited {timeout:?} for {what}; last saw: {seen}"),
        }
        std::thread::sleep(POLL);
    }
}

/// Newest seq in the SQLite log (-1 until capture is installed) and the applied position of source `id` (any
/// source when `None`) in PostgreSQL, once its snapshot is done.
async fn positions(db: &TestDb, path: &std::path::Path, id: Option<&str>) -> (i64, Option<i64>) {
    let conn = rusqlite::Connection::open(path).unwrap();
    let newest: i64 = conn.query_row("SELECT coalesce(max(seq), 0) FROM _lite2pg_changes", [], |r| r.get(0)).unwrap_or(-1);
    let applied = match db.target.connect().await {
        Ok(client) => client
            .query_opt(
                // A table still to be copied whole (the first copy into existing tables) is not caught up yet.
                "SELECT s.applied_seq FROM lite2pg.sources s WHERE s.snapshot_seq IS NOT NULL AND ($1::text IS NULL OR s.source_id = $1)
                   AND NOT EXISTS (SELECT FROM lite2pg.tables t WHERE t.source_id = s.source_id AND t.resync)",
                &[&id],
            )
            .await
            .ok()
            .flatten()
            .map(|r| r.get::<_, i64>(0)),
        Err(_) => None,
    };
    (newest, applied)
}

/// Waits until the daemon has applied everything committed so far, schema changes included: the daemon follows a
/// migration by logging a marker entry, which the position then has to reach. On timeout the failure shows
/// `lite2pg status` (the daemon's own log is shown when its `Daemon` is dropped).
pub async fn wait_caught_up(db: &TestDb, file: &SqliteFile) {
    let caught_up = poll_until(CATCH_UP, || async {
        let (newest, applied) = positions(db, &file.path, None).await;
        let followed = schema_followed(file);
        match applied == Some(newest) && followed {
            true => Ok(()),
            false => Err(format!("newest {newest}, applied {applied:?}, schema followed: {followed}")),
        }
    })
    .await;
    if let Err(seen) = caught_up {
        let status = lite2pg_output(&["status", "--sqlite", file.path.to_str().unwrap(), "--postgres", &db.url()]);
        panic!(
            "the daemon did not catch up in {CATCH_UP:?}: {seen}\n--- lite2pg status ---\n{}{}",
            String::from_utf8_lossy(&status.stdout),
            String::from_utf8_lossy(&status.stderr)
        );
    }
}

/// Whether capture follows the file's schema as it is now (the daemon records the version it followed).
fn schema_followed(file: &SqliteFile) -> bool {
    let conn = file.conn();
    let followed: Option<String> =
        conn.query_row("SELECT value FROM _lite2pg_meta WHERE key = 'followed_schema_version'", [], |r| r.get(0)).unwrap_or(None);
    let now: i64 = conn.query_row("PRAGMA schema_version", [], |r| r.get(0)).unwrap_or(-1);
    followed == Some(now.to_string())
}

/// Waits until every source's position reached the newest entry of its file.
pub async fn wait_all_caught_up(db: &TestDb, files: &[(PathBuf, &str)]) {
    wait_until("every source to catch up", Duration::from_secs(90), || async {
        for (path, id) in files {
            let (newest, applied) = positions(db, path, Some(id)).await;
            if applied != Some(newest) {
                return Err(format!("source {id}: newest {newest}, applied {applied:?}"));
            }
        }
        Ok(())
    })
    .await
}

/// Lets the daemon see everything written so far: one more commit, then wait until it is applied (a schema
/// change is followed before the batch that holds a later commit). A commit made before the daemon installed
/// capture is not logged (and one the snapshot copied was not streamed), so settling repeats until the row it
/// wrote came through the stream.
/// The file needs `CREATE TABLE beat(id INTEGER PRIMARY KEY)`.
pub async fn settle(db: &TestDb, file: &SqliteFile) {
    let streamed = "SELECT (SELECT max(id) FROM beat), applied_seq > snapshot_seq FROM lite2pg.sources";
    loop {
        file.exec("INSERT INTO beat DEFAULT VALUES");
        let newest: i64 = file.conn().query_row("SELECT max(id) FROM beat", [], |r| r.get(0)).unwrap();
        wait_caught_up(db, file).await;
        if let Ok(row) = db.client().await.query_one(streamed, &[]).await {
            if row.get::<_, Option<i64>>(0) == Some(newest) && row.get::<_, Option<bool>>(1) == Some(true) {
                return;
            }
        }
    }
}

/// `Ok` when the condition `holds`, else what was seen (for the checks given to `wait_until`).
pub fn check(holds: bool, seen: impl FnOnce() -> String) -> Result<(), String> {
    if holds {
        Ok(())
    } else {
        Err(seen())
    }
}

/// Waits until at least `sources` sources meet `condition` (SQL over `lite2pg.sources`, written by the test).
pub async fn wait_sources(db: &TestDb, condition: &str, sources: usize) {
    let meeting = format!("SELECT count(*) FROM lite2pg.sources WHERE {condition}");
    wait_until(&format!("{sources} source(s) with {condition}"), CATCH_UP, || async {
        let client = db.client().await;
        let met = client.query_one(&meeting, &[]).await.map(|r| r.get::<_, i64>(0) as usize).unwrap_or(0);
        check(met >= sources, || format!("{met} source(s)"))
    })
    .await
}
