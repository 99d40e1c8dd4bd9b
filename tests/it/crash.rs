//! Crashes at the narrow windows of the guarantee, hit deterministically with fail points: the next run ends with
//! PostgreSQL equal to SQLite, nothing lost and nothing doubled.

use crate::support::{lite2pg, stderr, SqliteFile, TestDb};

fn writes(file: &SqliteFile, from: i64) {
    file.exec(&format!(
        "WITH RECURSIVE n(i) AS (SELECT {from} UNION ALL SELECT i + 1 FROM n WHERE i < {from} + 5999)
         INSERT OR REPLACE INTO accounts(id, email, balance, photo) SELECT i % 300, 'a' || i || '@x', i / 7.0, randomblob(4) FROM n;
         DELETE FROM accounts WHERE id % 11 = 0;
         INSERT INTO events(kind, payload) VALUES ('crash test', {from});"
    ));
}

fn run_once(file: &SqliteFile, db: &TestDb, failpoint: Option<&str>) -> std::process::Output {
    let mut command = lite2pg();
    command.args(["run", "--once", "--sqlite", file.path.to_str().unwrap(), "--postgres", &db.url()]).env("RUST_LOG", "error");
    if let Some(failpoint) = failpoint {
        command.env("FAILPOINTS", format!("{failpoint}=panic"));
    }
    command.output().unwrap()
}

#[tokio::test]
async fn a_crash_at_each_narrow_window_loses_and_doubles_nothing() {
    for failpoint in ["snapshot-after-copy", "batch-before-commit", "batch-after-commit", "prune-midway"] {
        let file = SqliteFile::new(include_str!("../../examples/writer_schema.sql"));
        let db = TestDb::new().await;
        writes(&file, 0);
        if failpoint != "snapshot-after-copy" {
            assert!(run_once(&file, &db, None).status.success());
            writes(&file, 10_000);
        }
        let crashed = run_once(&file, &db, Some(failpoint));
        assert!(!crashed.status.success(), "{failpoint} was not hit: {}", stderr(&crashed));
        assert!(stderr(&crashed).contains(failpoint), "{failpoint}: {}", stderr(&crashed));
        writes(&file, 20_000);
        let recovered = run_once(&file, &db, None);
        assert!(recovered.status.success(), "after a crash at {failpoint}: {}", stderr(&recovered));
        db.assert_equal(&file.path).await;
        let events = db.texts("SELECT count(*)::text FROM events WHERE kind = 'crash test'").await;
        let expected = if failpoint == "snapshot-after-copy" { "2" } else { "3" };
        assert_eq!(events, [Some(expected.to_string())], "after a crash at {failpoint}, no event is doubled or lost");
    }
}

#[tokio::test]
async fn terminated_connections_and_a_writer_holding_the_lock_are_ridden_out() {
    let file = SqliteFile::new(include_str!("../../examples/writer_schema.sql"));
    let db = TestDb::new().await;
    let _daemon = crate::support::daemon::start_daemon(&db, &file);
    let mut app = crate::support::daemon::writer(&file.path, 3, 1_000_000);
    let admin = db.client().await;
    let terminate = "SELECT count(pg_terminate_backend(pid))::text FROM pg_stat_activity
                     WHERE application_name = 'lite2pg' AND datname = current_database() AND pid <> pg_backend_pid()";
    let (mut terminated, mut held) = (0, false);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while terminated < 4 && std::time::Instant::now() < deadline {
        // Terminations spread over the writer's run: the pacing is the test, not a stand-in for a condition.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let count: String = admin.query_one(terminate, &[]).await.unwrap().get(0);
        terminated += count.parse::<u32>().unwrap();
        if terminated >= 2 && !held {
            // The application holds SQLite's write lock for two seconds (the time is what is under test); lite2pg
            // waits without failing.
            let conn = file.conn();
            conn.execute_batch("BEGIN IMMEDIATE; INSERT INTO events VALUES ('held', 2);").unwrap();
            std::thread::sleep(std::time::Duration::from_secs(2));
            conn.execute_batch("COMMIT").unwrap();
            held = true;
        }
    }
    assert!(terminated >= 4, "only {terminated} lite2pg connections were terminated in 60 s");
    app.kill().unwrap();
    app.wait().unwrap();
    crate::support::wait::wait_caught_up(&db, &file).await;
    db.assert_equal(&file.path).await;
}

#[tokio::test]
async fn a_long_read_transaction_elsewhere_does_not_stop_the_stream() {
    let file = SqliteFile::new(include_str!("../../examples/writer_schema.sql"));
    let db = TestDb::new().await;
    let _daemon = crate::support::daemon::start_daemon(&db, &file);
    let reader = file.conn();
    reader.execute_batch("BEGIN; SELECT count(*) FROM accounts;").unwrap();
    let mut app = crate::support::daemon::writer(&file.path, 9, 600);
    assert!(app.wait().unwrap().success());
    crate::support::wait::wait_caught_up(&db, &file).await;
    reader.execute_batch("COMMIT").unwrap();
    db.assert_equal(&file.path).await;
}

#[tokio::test]
async fn a_restored_or_replaced_file_stops_clearly_and_can_start_over() {
    let file = SqliteFile::new("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'a');");
    let db = TestDb::new().await;
    assert!(run_once(&file, &db, None).status.success());
    let backup = file.path.with_extension("backup");
    let copy_of = |from: &std::path::Path, to: &std::path::Path| {
        file.exec("PRAGMA wal_checkpoint(TRUNCATE)");
        std::fs::copy(from, to).unwrap();
        for suffix in ["-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", to.display()));
        }
    };
    copy_of(&file.path, &backup);
    file.exec("INSERT INTO t VALUES (2, 'b'); UPDATE t SET v = 'a2' WHERE id = 1;");
    assert!(run_once(&file, &db, None).status.success());
    copy_of(&backup, &file.path);
    let stopped = run_once(&file, &db, None);
    assert_eq!(stopped.status.code(), Some(1));
    assert!(
        stderr(&stopped).contains("restored from an older copy") && stderr(&stopped).contains("snapshot --replace"),
        "{}",
        stderr(&stopped)
    );

    let other = SqliteFile::new("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES (7, 'other');");
    let init = lite2pg().args(["init", "--sqlite", other.path.to_str().unwrap()]).output().unwrap();
    assert!(init.status.success());
    let source_id: String =
        file.conn().query_row("SELECT value FROM _lite2pg_meta WHERE key = 'source_id'", [], |r| r.get(0)).unwrap();
    other.exec(&format!("UPDATE _lite2pg_meta SET value = '{source_id}' WHERE key = 'source_id'"));
    let replaced = lite2pg()
        .args(["run", "--once", "--sqlite", other.path.to_str().unwrap(), "--postgres", &db.url()])
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    assert_eq!(replaced.status.code(), Some(1));
    assert!(stderr(&replaced).contains("is a different database"), "{}", stderr(&replaced));

    let again = lite2pg()
        .args(["snapshot", "--replace", "--sqlite", file.path.to_str().unwrap(), "--postgres", &db.url()])
        .output()
        .unwrap();
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(run_once(&file, &db, None).status.success());
    db.assert_equal(&file.path).await;
}
