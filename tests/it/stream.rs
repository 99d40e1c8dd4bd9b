//! Continuous sync: every statement form, whole transactions, crashes, restarts and concurrent writers.

use std::path::Path;
use std::time::Duration;

use lite2pg::stream::{run, RunSummary, StopWhen};

use crate::support::daemon::{start_daemon, terminate, writer};
use crate::support::wait::wait_caught_up;
use crate::support::{lite2pg, SqliteFile, TestDb};

/// `lite2pg run --once` through the library.
async fn sync_once(db: &TestDb, file: &Path) -> RunSummary {
    run(&db.options(file), StopWhen::CaughtUp, lite2pg::metrics::Metrics::new(Default::default()), |_| {}).await.unwrap()
}

const APP: &str = "
    CREATE TABLE users(id INTEGER PRIMARY KEY, email TEXT UNIQUE NOT NULL, name TEXT, score REAL);
    CREATE TABLE posts(user_id INTEGER REFERENCES users ON DELETE CASCADE, n INTEGER, body TEXT, PRIMARY KEY (user_id, n)) WITHOUT ROWID;
    CREATE TABLE tags(label TEXT, weight);
    CREATE TABLE audit(id INTEGER PRIMARY KEY AUTOINCREMENT, what TEXT);
    CREATE TRIGGER users_audit AFTER UPDATE ON users BEGIN INSERT INTO audit(what) VALUES ('user ' || NEW.id); END;
    INSERT INTO users VALUES (1, 'a@x', 'Ann', 1.5), (2, 'b@x', 'Bob', 2.5), (3, 'c@x', 'Cy', NULL);
    INSERT INTO posts VALUES (1, 1, 'hello'), (1, 2, 'again'), (2, 1, 'bob here');
    INSERT INTO tags VALUES ('x', 1), ('x', 1), ('y', NULL);";

#[tokio::test]
async fn every_statement_form_reaches_postgres() {
    let file = SqliteFile::new(APP);
    let db = TestDb::new().await;
    let first = sync_once(&db, &file.path).await;
    assert!(first.snapshot.is_some());
    file.exec(
        "PRAGMA foreign_keys = ON;
         INSERT INTO users VALUES (4, 'd@x', 'Di', 4.0);
         UPDATE users SET id = 40 WHERE id = 4;
         UPDATE users SET name = 'Ann B.' WHERE id = 1;
         INSERT OR REPLACE INTO users VALUES (5, 'b@x', 'Replaces Bob by email', 0);
         INSERT OR IGNORE INTO users VALUES (1, 'ignored@x', 'ignored', 0);
         INSERT INTO users VALUES (3, 'c@x', 'Cy upserted', 3) ON CONFLICT (id) DO UPDATE SET name = excluded.name;
         DELETE FROM users WHERE id = 1;
         DELETE FROM tags;
         INSERT INTO tags VALUES ('z', 2);
         BEGIN; INSERT INTO users VALUES (99, 'rolled@x', 'never', 0); ROLLBACK;
         BEGIN; INSERT INTO users VALUES (98, 'kept@x', 'kept', 0); SAVEPOINT s; DELETE FROM users WHERE id = 98;
                INSERT INTO users VALUES (97, 'sp@x', 'sp', 0); ROLLBACK TO s; RELEASE s; COMMIT;",
    );
    let summary = sync_once(&db, &file.path).await;
    assert!(summary.snapshot.is_none());
    db.assert_equal(&file.path).await;
    let users = db.texts("SELECT id || ':' || name FROM users ORDER BY id").await;
    let users: Vec<String> = users.into_iter().flatten().collect();
    assert_eq!(users, ["3:Cy upserted", "5:Replaces Bob by email", "40:Di", "98:kept"]);
    let posts = db.texts("SELECT count(*)::text FROM posts").await;
    assert_eq!(posts, [Some("0".to_string())], "cascaded deletes of both users' posts arrive");
    let audit = db.texts("SELECT count(*)::text FROM audit").await;
    assert_eq!(audit, [Some("3".to_string())], "rows written by the application's own triggers arrive");
}

#[tokio::test]
async fn a_batch_ends_where_sqlite_ended() {
    let file = SqliteFile::new(APP);
    let db = TestDb::new().await;
    sync_once(&db, &file.path).await;
    file.exec(
        "INSERT INTO users VALUES (10, 'ten@x', 'inserted then deleted', 0); DELETE FROM users WHERE id = 10;
         DELETE FROM users WHERE id = 2; INSERT INTO users VALUES (2, 'b2@x', 'deleted then re-inserted', 0);
         UPDATE users SET id = 20 WHERE id = 3; UPDATE users SET id = 3 WHERE id = 1; UPDATE users SET email = 'swap' WHERE id = 3;
         UPDATE users SET email = 'a@x' WHERE id = 20; UPDATE users SET email = 'c@x' WHERE id = 3;
         INSERT INTO posts VALUES (20, 1, 'child before parent? order does not matter');",
    );
    let summary = sync_once(&db, &file.path).await;
    assert_eq!(summary.batches, 1);
    db.assert_equal(&file.path).await;
}

#[tokio::test]
async fn init_and_uninstall_leave_the_application_alone() {
    let file = SqliteFile::new(APP);
    let path = file.path.to_str().unwrap();
    for _ in 0..2 {
        let init = lite2pg().args(["init", "--sqlite", path]).output().unwrap();
        assert!(init.status.success(), "{}", String::from_utf8_lossy(&init.stderr));
        assert!(String::from_utf8_lossy(&init.stdout).contains("capture installed on 4 table(s)"));
    }
    file.exec("INSERT INTO users VALUES (7, 'g@x', 'G', 0)");
    let logged: i64 = file.conn().query_row("SELECT count(*) FROM _lite2pg_changes", [], |r| r.get(0)).unwrap();
    assert_eq!(logged, 1);
    let uninstall = lite2pg().args(["uninstall", "--sqlite", path]).output().unwrap();
    assert!(uninstall.status.success());
    let leftovers: i64 =
        file.conn().query_row("SELECT count(*) FROM sqlite_master WHERE name LIKE '%lite2pg%'", [], |r| r.get(0)).unwrap();
    assert_eq!(leftovers, 0);
    let users: i64 = file.conn().query_row("SELECT count(*) FROM users", [], |r| r.get(0)).unwrap();
    assert_eq!(users, 4);
}

#[tokio::test]
async fn two_writer_processes_and_the_daemon_at_once() {
    let file = SqliteFile::new(include_str!("../../examples/writer_schema.sql"));
    let db = TestDb::new().await;
    let mut daemon = start_daemon(&db, &file);
    let mut writers = [writer(&file.path, 11, 400), writer(&file.path, 23, 400)];
    for w in &mut writers {
        assert!(w.wait().unwrap().success());
    }
    wait_caught_up(&db, &file).await;
    let status = terminate(&mut daemon);
    assert_eq!(status.code(), Some(0), "SIGTERM ends the daemon cleanly");
    db.assert_equal(&file.path).await;
}

#[tokio::test]
async fn killing_the_daemon_loses_nothing_and_doubles_nothing() {
    let file = SqliteFile::new(include_str!("../../examples/writer_schema.sql"));
    let db = TestDb::new().await;
    let mut app = writer(&file.path, 7, 1500);
    let mut seed = 0x9e37_79b9_u64;
    for _ in 0..6 {
        let daemon = start_daemon(&db, &file);
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        // A random moment of the daemon's work is what is under test: a sleep, not a wait.
        std::thread::sleep(Duration::from_millis(150 + seed % 400));
        drop(daemon);
    }
    assert!(app.wait().unwrap().success());
    sync_once(&db, &file.path).await;
    db.assert_equal(&file.path).await;
}

#[tokio::test]
async fn postgres_restarting_mid_stream_is_ridden_out() {
    let cluster = crate::support::cluster::PrivateCluster::start_new()
        .expect("this test needs PostgreSQL's server binaries for a private cluster (`bash .ci/run` installs them)");
    let db = TestDb::on(&cluster.url("postgres")).await;
    let file = SqliteFile::new(include_str!("../../examples/writer_schema.sql"));
    let mut daemon = start_daemon(&db, &file);
    assert!(writer(&file.path, 3, 100).wait().unwrap().success());
    wait_caught_up(&db, &file).await;
    let retries = daemon.retries();
    cluster.stop();
    assert!(writer(&file.path, 5, 200).wait().unwrap().success());
    daemon.wait_retry_after(retries);
    assert!(daemon.child.try_wait().unwrap().is_none(), "the daemon keeps running while PostgreSQL is down");
    cluster.start();
    wait_caught_up(&db, &file).await;
    assert_eq!(terminate(&mut daemon).code(), Some(0));
    db.assert_equal(&file.path).await;
}

#[tokio::test]
async fn a_value_that_stops_fitting_is_rejected_then_cleared_when_it_fits_again() {
    let file = SqliteFile::new("CREATE TABLE t(id INTEGER PRIMARY KEY, n INTEGER); INSERT INTO t VALUES (1, 1), (2, 2);");
    let db = TestDb::new().await;
    sync_once(&db, &file.path).await;
    file.exec("UPDATE t SET n = 'not a number' WHERE id = 1; UPDATE t SET n = 20 WHERE id = 2;");
    let summary = sync_once(&db, &file.path).await;
    assert_eq!(summary.rejects, 1);
    let rejects = db
        .texts("SELECT key::text || ' ' || column_name || ' ' || reason || ' ' || convert_from(raw, 'UTF8') FROM lite2pg.rejects")
        .await;
    assert_eq!(rejects, [Some("[1] n a text value does not fit a bigint column not a number".to_string())]);
    assert_eq!(db.texts("SELECT id || ':' || n FROM t ORDER BY id").await, [Some("2:20".to_string())]);
    file.exec("UPDATE t SET n = 10 WHERE id = 1;");
    sync_once(&db, &file.path).await;
    assert_eq!(db.texts("SELECT count(*)::text FROM lite2pg.rejects").await, [Some("0".to_string())]);
    db.assert_equal(&file.path).await;
}

/// lite2pg expects to be the only writer of its copy. When another session inserts a key into it at the same time
/// as a large batch does, the batch waits for that session, fails on the primary key, and is tried again: it then
/// updates the row. The key is never dropped and the daemon never stops.
#[tokio::test]
async fn a_key_another_session_inserts_meanwhile_delays_the_batch_and_keeps_the_primary_key() {
    let file = SqliteFile::new("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'first');");
    let db = TestDb::new().await;
    let _daemon = start_daemon(&db, &file);
    wait_caught_up(&db, &file).await;
    let by_hand = db.client().await;
    by_hand.batch_execute("BEGIN; INSERT INTO t VALUES (42, 'by hand')").await.unwrap();
    // A large batch (10,001 keys): its present rows are written by UPDATE, then INSERT (small ones upsert).
    file.exec(
        "BEGIN; INSERT INTO t VALUES (42, 'from the app');
         WITH RECURSIVE n(i) AS (SELECT 1000 UNION ALL SELECT i + 1 FROM n WHERE i < 10999) INSERT INTO t SELECT i, 'bulk' FROM n;
         COMMIT;",
    );
    let waiting = "SELECT count(*)::text FROM pg_stat_activity
                   WHERE application_name = 'lite2pg' AND datname = current_database() AND wait_event_type = 'Lock'";
    crate::support::wait::wait_until("the batch to wait for the other session's row", Duration::from_secs(30), || async {
        match db.texts(waiting).await.as_slice() {
            [Some(n)] if n != "0" => Ok(()),
            seen => Err(format!("{seen:?}")),
        }
    })
    .await;
    by_hand.batch_execute("COMMIT").await.unwrap();
    wait_caught_up(&db, &file).await;
    db.assert_equal(&file.path).await;
    let key = db.texts("SELECT conname::text FROM pg_constraint WHERE conrelid = 't'::regclass AND contype = 'p'").await;
    assert_eq!(key.len(), 1, "the primary key stays");
}
