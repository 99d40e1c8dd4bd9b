//! The file's identity over time: VACUUM renumbering rowids, `VACUUM INTO` copies renamed over the file, and
//! backups restored — with the daemon running and while it is stopped. Renumbered rowids are copied again by
//! themselves; a restored file stops with a message naming it, and `snapshot --replace` starts over.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::daemon::{start_daemon, Daemon};
use crate::support::wait::{settle, wait_caught_up, wait_until_blocking};
use crate::support::{lite2pg, run_once, stderr, SqliteFile, TestDb};

/// A table without a declared key (keyed by rowid, renumbered by VACUUM) and one with a text primary key, with
/// gaps in the rowids so VACUUM has something to renumber.
const TABLES: &str = "
    CREATE TABLE beat(id INTEGER PRIMARY KEY);
    CREATE TABLE bare(a INTEGER, b TEXT);
    CREATE TABLE coded(code TEXT PRIMARY KEY, n INTEGER);
    WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300) INSERT INTO bare SELECT i, 'row ' || i FROM n;
    INSERT INTO coded SELECT 'c' || a, a FROM bare;
    DELETE FROM bare WHERE a % 3 = 0 OR a < 20;
    DELETE FROM coded WHERE n % 4 = 0;";

/// Updates, deletes and inserts that land on the wrong rows in PostgreSQL if renumbered rowids go unnoticed.
const LATER_WRITES: &str = "
    UPDATE bare SET b = 'changed ' || a WHERE a % 5 = 0;
    DELETE FROM bare WHERE a % 7 = 0;
    INSERT INTO bare VALUES (1000, 'new');
    UPDATE coded SET n = -n WHERE n % 5 = 0;
    DELETE FROM coded WHERE n % 7 = 0;";

/// A file in rollback-journal mode: a file renamed over it while another process has it open is then safe
/// (with WAL, the old file's -wal and -shm would be taken for the new one's).
fn journal_file(sql: &str) -> SqliteFile {
    let file = SqliteFile::new("PRAGMA journal_mode = DELETE;");
    file.exec(sql);
    file
}

fn sync_once(db: &TestDb, file: &SqliteFile) {
    let output = run_once(db, file);
    assert!(output.status.success(), "{}", stderr(&output));
}

/// Renames `from` over the file, as a restore or a `VACUUM INTO` swap does: while no process writes the file, as
/// SQLite requires (the old and the new file share the journal's name). A running daemon writes it only to prune
/// the log right after a batch (down to the newest entry), so the swap waits for that prune to be done.
fn rename_over(from: &Path, file: &SqliteFile) {
    wait_until_blocking("the log pruned after the last batch", Duration::from_secs(30), || {
        let logged: i64 = file.conn().query_row("SELECT count(*) FROM _lite2pg_changes", [], |r| r.get(0)).unwrap();
        if logged <= 1 {
            Ok(())
        } else {
            Err(format!("{logged} entries logged"))
        }
    });
    std::fs::rename(from, &file.path).unwrap();
}

fn sibling(file: &SqliteFile, name: &str) -> PathBuf {
    file.path.with_file_name(name)
}

/// A consistent copy of the file, made by SQLite (`VACUUM INTO`).
fn copy_of(file: &SqliteFile, name: &str) -> PathBuf {
    let copy = sibling(file, name);
    file.exec(&format!("VACUUM INTO '{}'", copy.display()));
    copy
}

/// Waits for the daemon to stop by itself; its exit code and what it wrote to stderr.
fn stopped(daemon: &mut Daemon) -> (Option<i32>, String) {
    let status = daemon.exited_within(Duration::from_secs(20));
    (status.code(), daemon.log())
}

fn assert_names_a_restore(message: &str) {
    assert!(message.contains("restored from an older copy") && message.contains("snapshot --replace"), "{message}");
}

/// The documented fix after a restore: copy again from the file as it is, then stream on.
async fn start_over(db: &TestDb, file: &SqliteFile) {
    let again = lite2pg()
        .args(["snapshot", "--replace", "--sqlite", file.path.to_str().unwrap(), "--postgres", &db.url()])
        .output()
        .unwrap();
    assert!(again.status.success(), "{}", stderr(&again));
    file.exec("UPDATE bare SET b = 'after the new start' WHERE a = 1000");
    sync_once(db, file);
    db.assert_equal(&file.path).await;
}

#[tokio::test]
async fn vacuum_while_the_daemon_runs_renumbers_nothing_in_postgres() {
    let file = SqliteFile::new(TABLES);
    let db = TestDb::new().await;
    let _daemon = start_daemon(&db, &file);
    file.exec("UPDATE bare SET b = 'before' WHERE a = 20");
    settle(&db, &file).await;
    file.exec("VACUUM");
    file.exec(LATER_WRITES);
    wait_caught_up(&db, &file).await;
    db.assert_equal(&file.path).await;
    // The canary was armed again: a second VACUUM is noticed too.
    file.exec("DELETE FROM bare WHERE a < 100; VACUUM;");
    file.exec("UPDATE bare SET b = 'second' WHERE a % 2 = 0; DELETE FROM bare WHERE a % 11 = 0;");
    wait_caught_up(&db, &file).await;
    db.assert_equal(&file.path).await;
}

#[tokio::test]
async fn vacuum_while_stopped_is_noticed_at_the_next_start() {
    let file = SqliteFile::new(TABLES);
    let db = TestDb::new().await;
    sync_once(&db, &file);
    file.exec("VACUUM");
    file.exec(LATER_WRITES);
    sync_once(&db, &file);
    db.assert_equal(&file.path).await;
}

#[tokio::test]
async fn a_vacuum_into_copy_renamed_over_the_file_while_the_daemon_runs_is_followed() {
    let file = journal_file(TABLES);
    let db = TestDb::new().await;
    let _daemon = start_daemon(&db, &file);
    file.exec("UPDATE bare SET b = 'before' WHERE a = 20");
    settle(&db, &file).await;
    let copy = copy_of(&file, "compact.db");
    rename_over(&copy, &file);
    file.exec(LATER_WRITES);
    wait_caught_up(&db, &file).await;
    db.assert_equal(&file.path).await;
}

#[tokio::test]
async fn a_vacuum_into_copy_renamed_over_the_file_while_stopped_is_followed() {
    let file = SqliteFile::new(TABLES);
    let db = TestDb::new().await;
    sync_once(&db, &file);
    file.exec("UPDATE bare SET b = 'before' WHERE a = 20");
    sync_once(&db, &file);
    let copy = copy_of(&file, "compact.db");
    rename_over(&copy, &file);
    file.exec(LATER_WRITES);
    sync_once(&db, &file);
    db.assert_equal(&file.path).await;
}

#[tokio::test]
async fn a_backup_restored_while_stopped_stops_the_sync_however_many_writes_follow() {
    let file = SqliteFile::new(TABLES);
    let db = TestDb::new().await;
    sync_once(&db, &file);
    let backup = copy_of(&file, "backup.db");
    file.exec("UPDATE bare SET b = 'lost' WHERE a = 20; DELETE FROM coded WHERE n = 1;");
    sync_once(&db, &file);
    rename_over(&backup, &file);
    // More writes than were lost: the log reaches past the applied position again.
    file.exec(LATER_WRITES);
    let output = run_once(&db, &file);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert_names_a_restore(&stderr(&output));
    start_over(&db, &file).await;
}

#[tokio::test]
async fn a_backup_restored_while_the_daemon_runs_stops_it() {
    let file = journal_file(TABLES);
    let db = TestDb::new().await;
    let mut daemon = start_daemon(&db, &file);
    file.exec("UPDATE bare SET b = 'before' WHERE a = 20");
    settle(&db, &file).await;
    let backup = copy_of(&file, "backup.db");
    file.exec("UPDATE bare SET b = 'lost' WHERE a = 20; DELETE FROM coded WHERE n = 1;");
    wait_caught_up(&db, &file).await;
    rename_over(&backup, &file);
    file.exec(LATER_WRITES);
    let (code, said) = stopped(&mut daemon);
    assert_eq!(code, Some(1), "{said}");
    assert_names_a_restore(&said);
    start_over(&db, &file).await;
}

#[tokio::test]
async fn a_backup_copied_into_the_file_while_the_daemon_runs_stops_it() {
    let file = journal_file(TABLES);
    let db = TestDb::new().await;
    let mut daemon = start_daemon(&db, &file);
    file.exec("UPDATE bare SET b = 'before' WHERE a = 20");
    settle(&db, &file).await;
    let backup = copy_of(&file, "backup.db");
    file.exec("UPDATE bare SET b = 'lost' WHERE a = 20; DELETE FROM coded WHERE n = 1;");
    wait_caught_up(&db, &file).await;
    // The same file (inode) rewritten with the backup's bytes, under SQLite's write lock as a restore tool holds it.
    let conn = file.conn();
    conn.execute_batch("BEGIN EXCLUSIVE").unwrap();
    std::fs::write(&file.path, std::fs::read(&backup).unwrap()).unwrap();
    conn.execute_batch("ROLLBACK").unwrap();
    drop(conn);
    file.exec(LATER_WRITES);
    let (code, said) = stopped(&mut daemon);
    assert_eq!(code, Some(1), "{said}");
    assert_names_a_restore(&said);
    start_over(&db, &file).await;
}
