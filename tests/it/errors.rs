//! Errors are never hidden nor retried blindly: PostgreSQL's own message reaches the log, `status` and metrics;
//! constraints SQLite does not hold are relaxed wherever PostgreSQL raises them; other refusals stop; a one-off
//! run always ends; no pooled connection stays inside a transaction; an idle daemon prunes; and the read-only
//! commands work on files and directories they cannot write.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use lite2pg::metrics::Metrics;
use lite2pg::pg::pool::Pool;
use lite2pg::stream::{run, StopWhen};
use serde_json::Value;

use crate::support::daemon::start_daemon;
use crate::support::http::free_port;
use crate::support::wait::{wait_caught_up, wait_until_blocking};
use crate::support::{lite2pg, lite2pg_output, run_once, stderr, SqliteFile, TestDb};

const APP: &str = "
    CREATE TABLE a(id INTEGER PRIMARY KEY, v INTEGER);
    CREATE TABLE b(id INTEGER PRIMARY KEY, name TEXT);
    CREATE TABLE c(id INTEGER PRIMARY KEY, note TEXT);
    INSERT INTO a VALUES (1, 1); INSERT INTO b VALUES (1, 'one'); INSERT INTO c VALUES (1, 'x');";

/// One SQLite transaction writing every table.
const BATCH: &str = "BEGIN; INSERT INTO a VALUES (2, -2); INSERT INTO b VALUES (2, NULL); INSERT INTO c VALUES (2, 'y'); COMMIT;";

async fn sync_once(db: &TestDb, file: &SqliteFile) {
    run(&db.options(&file.path), StopWhen::CaughtUp, Metrics::new(Default::default()), |_| {}).await.unwrap();
}

/// `lite2pg <command> --json` for `file`: exit code and output.
fn json_of(command: &str, db: &TestDb, file: &SqliteFile) -> (Option<i32>, Value) {
    let output = lite2pg_output(&[command, "--json", "--sqlite", file.path.to_str().unwrap(), "--postgres", &db.url()]);
    let json = serde_json::from_slice(&output.stdout).unwrap_or_else(|err| panic!("{err}: {}", stderr(&output)));
    (output.status.code(), json)
}

#[tokio::test]
async fn a_batch_postgres_refuses_stops_with_postgres_own_message() {
    let file = SqliteFile::new(APP);
    let db = TestDb::new().await;
    sync_once(&db, &file).await;
    db.client()
        .await
        .batch_execute(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'b is closed for writes'; END $$;
             CREATE TRIGGER refuse BEFORE INSERT OR UPDATE ON b FOR EACH ROW EXECUTE FUNCTION refuse();",
        )
        .await
        .unwrap();
    file.exec(BATCH);

    let metrics = Metrics::new(Default::default());
    let err = run(&db.options(&file.path), StopWhen::CaughtUp, metrics.clone(), |_| {}).await.unwrap_err();
    assert_eq!(err.postgres().map(|pg| pg.code.as_str()), Some("P0001"), "{err}");
    assert!(err.to_string().contains("b is closed for writes") && err.to_string().contains("\"b\""), "{err}");
    assert!(metrics.encode().contains("sqlstate=\"P0001\""), "{}", metrics.encode());

    let output = run_once(&db, &file);
    let log = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{log}");
    assert!(log.contains("b is closed for writes") && log.contains("SQLSTATE P0001"), "{log}");
    assert!(!log.contains("stopped early"), "the reader's side is not the cause: {log}");
    let (_, status) = json_of("status", &db, &file);
    let last_error = status["last_error"].as_str().unwrap_or_default();
    assert!(last_error.contains("b is closed for writes") && last_error.contains("P0001"), "{status}");
    assert!(status["last_error_at"].is_string(), "{status}");
    assert_eq!(db.texts("SELECT count(*)::text FROM a").await, [Some("1".to_string())], "nothing of the batch was applied");

    db.client().await.batch_execute("DROP TRIGGER refuse ON b").await.unwrap();
    let output = run_once(&db, &file);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let (_, status) = json_of("status", &db, &file);
    assert!(status["last_error"].is_null() && status["last_error_at"].is_null(), "an applied batch clears it: {status}");
    db.assert_equal(&file.path).await;
}

#[tokio::test]
async fn constraints_sqlite_does_not_hold_are_relaxed_where_postgres_raises_them() {
    let file = SqliteFile::new(APP);
    let db = TestDb::new().await;
    sync_once(&db, &file).await;
    db.client()
        .await
        .batch_execute("ALTER TABLE a ADD CONSTRAINT positive CHECK (v > 0); ALTER TABLE b ALTER COLUMN name SET NOT NULL;")
        .await
        .unwrap();
    file.exec(BATCH);

    let output = run_once(&db, &file);
    let log = stderr(&output);
    assert_eq!(output.status.code(), Some(0), "{log}");
    assert!(log.contains("constraint \"positive\" on \"a\"") && log.contains("SQLSTATE 23514"), "{log}");
    // A NOT NULL SQLite does not declare is dropped when the schema is looked at (`constraints`), before any batch.
    let nullable =
        db.texts("SELECT is_nullable::text FROM information_schema.columns WHERE table_name = 'b' AND column_name = 'name'");
    assert_eq!(nullable.await, [Some("YES".to_string())]);
    let left = db.texts("SELECT count(*)::text FROM pg_constraint WHERE conname = 'positive'").await;
    assert_eq!(left, [Some("0".to_string())]);
    db.assert_equal(&file.path).await;
}

#[tokio::test]
async fn a_daemon_retries_what_waiting_can_fix_and_shows_it_meanwhile() {
    let file = SqliteFile::new(APP);
    let db = TestDb::new().await;
    let mut daemon = start_daemon(&db, &file);
    wait_caught_up(&db, &file).await;
    db.client()
        .await
        .batch_execute(
            "CREATE TABLE busy(); INSERT INTO busy DEFAULT VALUES;
             CREATE FUNCTION not_now() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
                 IF EXISTS (SELECT 1 FROM busy) THEN RAISE EXCEPTION 'b is busy' USING ERRCODE = 'serialization_failure'; END IF;
                 RETURN NEW; END $$;
             CREATE TRIGGER not_now BEFORE INSERT OR UPDATE ON b FOR EACH ROW EXECUTE FUNCTION not_now();",
        )
        .await
        .unwrap();
    file.exec(BATCH);
    wait_until_blocking("the retried error in status", Duration::from_secs(10), || {
        let (_, status) = json_of("status", &db, &file);
        let last_error = status["last_error"].as_str().unwrap_or_default();
        match last_error.contains("b is busy") && last_error.contains("SQLSTATE 40001") {
            true => Ok(()),
            false => Err(status.to_string()),
        }
    });
    assert!(daemon.child.try_wait().unwrap().is_none(), "a daemon keeps retrying an error waiting can fix");
    db.client().await.batch_execute("DELETE FROM busy").await.unwrap();
    wait_caught_up(&db, &file).await;
    let (_, status) = json_of("status", &db, &file);
    assert!(status["last_error"].is_null(), "{status}");
    db.assert_equal(&file.path).await;
}

#[test]
fn run_once_gives_up_on_an_unreachable_server_within_its_wait() {
    let file = SqliteFile::new(APP);
    let port = free_port();
    let url = format!("postgres://postgres@127.0.0.1:{port}/nowhere");
    let started = Instant::now();
    let output = lite2pg()
        .args(["run", "--once", "--sqlite", file.path.to_str().unwrap(), "--postgres", &url])
        .env("LITE2PG_WAIT", "2s")
        .output()
        .unwrap();
    let log = stderr(&output);
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}: {log}", started.elapsed());
    assert_eq!(output.status.code(), Some(1), "{log}");
    assert!(log.contains("gave up after 2s") && log.contains(&format!("127.0.0.1:{port}")), "{log}");
}

#[tokio::test]
async fn a_connection_left_in_a_transaction_never_goes_back_to_the_pool() {
    let db = TestDb::new().await;
    let pool = Pool::new(db.target.clone(), 1);
    let lease = pool.lease().await.unwrap();
    let aborted = backend(&lease).await;
    let tx = lease.begin().await.unwrap();
    assert!(tx.batch_execute("SELECT 1 / 0").await.is_err());
    drop(tx);
    drop(lease);

    let lease = pool.lease().await.unwrap();
    let fresh = backend(&lease).await;
    assert_ne!(fresh, aborted, "the connection left in its transaction was closed, not reused");
    lease.begin().await.unwrap().rollback().await.unwrap();
    drop(lease);
    let lease = pool.lease().await.unwrap();
    assert_eq!(backend(&lease).await, fresh, "a connection whose transaction ended is reused");
}

#[tokio::test]
async fn an_idle_daemon_prunes_what_it_applied() {
    let file = SqliteFile::new(APP);
    let db = TestDb::new().await;
    let _daemon = start_daemon(&db, &file);
    wait_caught_up(&db, &file).await;
    let conn = file.conn();
    for id in 10..60 {
        conn.execute("INSERT INTO c VALUES (?1, 'burst')", [id]).unwrap();
    }
    wait_caught_up(&db, &file).await;
    wait_until_blocking("the log pruned to its newest entry after the burst", Duration::from_secs(5), || {
        let logged: i64 = conn.query_row("SELECT count(*) FROM _lite2pg_changes", [], |r| r.get(0)).unwrap();
        if logged == 1 {
            Ok(())
        } else {
            Err(format!("{logged} entries logged"))
        }
    });
    db.assert_equal(&file.path).await;
}

async fn backend(lease: &lite2pg::pg::pool::Lease) -> i32 {
    lease.query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get(0)
}

/// `lite2pg` as user nobody.
fn as_nobody(args: &[&str]) -> Output {
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", env!("CARGO_BIN_EXE_lite2pg")])
        .args(args)
        .env_remove("LITE2PG_POSTGRES")
        .env_remove("LITE2PG_SQLITE")
        .output()
        .unwrap()
}

/// A synced file and its directory that user nobody may read but not write.
async fn read_only_source(journal_mode: &str) -> (SqliteFile, TestDb) {
    let file = SqliteFile::new(APP);
    file.exec(&format!("PRAGMA journal_mode = {journal_mode}"));
    let db = TestDb::new().await;
    sync_once(&db, &file).await;
    std::fs::set_permissions(file.path.parent().unwrap(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&file.path, std::fs::Permissions::from_mode(0o644)).unwrap();
    (file, db)
}

/// Runs verify, status and doctor as nobody: they work, and report `pending` changes not yet in PostgreSQL.
fn check_read_only(file: &SqliteFile, db: &TestDb, pending: i64) {
    let args = |command: &'static str| {
        [command, "--json", "--sqlite", file.path.to_str().unwrap(), "--postgres", &db.url()].map(String::from)
    };
    let json = |command: &'static str| {
        let args = args(command);
        let output = as_nobody(&args.iter().map(String::as_str).collect::<Vec<_>>());
        let json: Value =
            serde_json::from_slice(&output.stdout).unwrap_or_else(|err| panic!("{command}: {err}: {}", stderr(&output)));
        (output.status.code(), json)
    };
    let (code, verify) = json("verify");
    assert_eq!(code, Some(0), "{verify}");
    let (code, status) = json("status");
    assert_eq!(code, Some(0), "{status}");
    assert!(status["postgres_error"].is_null() && status["pending_changes"] == pending, "{status}");
    let (_, doctor) = json("doctor");
    for finding in doctor.as_array().unwrap() {
        if finding["check"] == "sqlite file" {
            assert_eq!(finding["outcome"], "fail", "nobody cannot write the file: {finding}");
        } else {
            assert_ne!(finding["outcome"], "fail", "{doctor}");
        }
    }
}

#[tokio::test]
async fn read_only_commands_read_a_rollback_journal_file_they_cannot_write() {
    let (file, db) = read_only_source("DELETE").await;
    check_read_only(&file, &db, 0);
    db.assert_equal(&file.path).await;
}

#[tokio::test]
async fn read_only_commands_read_a_wal_file_they_cannot_write() {
    let (file, db) = read_only_source("WAL").await;
    assert!(!std::path::Path::new(&format!("{}-shm", file.path.display())).exists());
    check_read_only(&file, &db, 0);
    // With the application connected (its -wal and -shm files exist), what it committed is read too.
    let app = file.conn();
    app.execute_batch("INSERT INTO c VALUES (3, 'not yet in PostgreSQL')").unwrap();
    check_read_only(&file, &db, 1);
    drop(app);
    sync_once(&db, &file).await;
    db.assert_equal(&file.path).await;
}

#[tokio::test]
async fn a_daemon_waits_while_another_process_locks_the_file_at_start_and_later() {
    // Rollback-journal mode, where a writer's exclusive lock keeps readers out too (a VACUUM, a long migration).
    let file = SqliteFile::new(
        "PRAGMA journal_mode = DELETE; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'a');",
    );
    let db = TestDb::new().await;
    let holder = file.conn();
    holder.execute_batch("BEGIN EXCLUSIVE; INSERT INTO t VALUES (2, 'b');").unwrap();
    let mut daemon = start_daemon(&db, &file);
    // Longer than SQLite's busy timeout (10 s): one attempt gives up, the daemon must not. The time is what is
    // under test, so a sleep and not a wait.
    std::thread::sleep(Duration::from_secs(12));
    assert!(daemon.child.try_wait().unwrap().is_none(), "the daemon stopped while the file was locked");
    holder.execute_batch("COMMIT").unwrap();
    drop(holder);
    file.exec("INSERT INTO t VALUES (3, 'c')");
    wait_caught_up(&db, &file).await;
    // And while it runs: neither its look at the file nor its pruning may end it.
    let holder = file.conn();
    holder.execute_batch("BEGIN EXCLUSIVE; INSERT INTO t VALUES (4, 'd');").unwrap();
    // Again the time is what is under test.
    std::thread::sleep(Duration::from_secs(12));
    assert!(daemon.child.try_wait().unwrap().is_none(), "the running daemon stopped while the file was locked");
    holder.execute_batch("COMMIT").unwrap();
    drop(holder);
    wait_caught_up(&db, &file).await;
    db.assert_equal(&file.path).await;
}

/// Two rows SQLite keeps apart that are one key in PostgreSQL (one instant written two ways, in a timestamp key)
/// stop the sync with PostgreSQL's message and what to do, small batch or large (after a few quick tries): the
/// primary key is never dropped and the sync does not retry for ever.
#[tokio::test]
async fn rows_sqlite_keeps_apart_under_one_postgres_key_stop_with_what_to_do() {
    let file = SqliteFile::new("CREATE TABLE t(k TIMESTAMP PRIMARY KEY, v); INSERT INTO t VALUES ('2024-01-01 00:00:00', 1);");
    let db = TestDb::new().await;
    assert!(run_once(&db, &file).status.success());
    // A run that stops soon, saying what to do; what it said.
    let stopped_with_hint = || {
        let started = Instant::now();
        let output = run_once(&db, &file);
        assert!(!output.status.success());
        assert!(started.elapsed() < Duration::from_secs(30), "it stopped after {:?}", started.elapsed());
        let said = stderr(&output);
        assert!(said.contains("Rows SQLite keeps apart may have one key in PostgreSQL"), "{said}");
        said
    };
    file.exec("INSERT INTO t VALUES ('2024-01-02 00:00:00', 2), ('2024-01-02T00:00:00', 3);");
    let said = stopped_with_hint();
    assert!(said.contains("cannot affect row a second time"), "a small batch upserts: {said}");
    file.exec(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10000)
         INSERT INTO t SELECT datetime(1800000000 + i, 'unixepoch'), i FROM n;",
    );
    let said = stopped_with_hint();
    assert!(said.contains("duplicate key value violates unique constraint \"t_pkey\""), "a large batch inserts: {said}");
    let key = db.texts("SELECT conname::text FROM pg_constraint WHERE conrelid = 't'::regclass AND contype = 'p'").await;
    assert_eq!(key, [Some("t_pkey".to_string())]);
}

#[tokio::test]
async fn rows_sqlite_keeps_apart_under_one_postgres_key_in_two_batches_are_a_difference_verify_reports() {
    let file = SqliteFile::new("CREATE TABLE t(k TIMESTAMP PRIMARY KEY, v); INSERT INTO t VALUES ('2024-01-01 00:00:00', 1);");
    let db = TestDb::new().await;
    assert!(run_once(&db, &file).status.success());
    file.exec("INSERT INTO t VALUES ('2024-01-01T00:00:00', 2);");
    let second = run_once(&db, &file);
    let report = lite2pg::verify::verify(&db.source(&file.path)).await.unwrap();
    let table = report.tables.iter().find(|t| t.table == "t").expect("t was compared");
    assert!(
        !table.is_equal(),
        "two SQLite rows, one PostgreSQL row, and verify saw no difference: {table:?}; {}",
        stderr(&second)
    );
}

#[tokio::test]
async fn a_key_too_long_for_postgres_stops_the_sync_and_verify_says_what_the_pending_rows_wait_on() {
    let file =
        SqliteFile::new("CREATE TABLE pages(url TEXT PRIMARY KEY, title TEXT); INSERT INTO pages VALUES ('https://a/', 'a');");
    let db = TestDb::new().await;
    assert!(run_once(&db, &file).status.success());
    // 8,000 hex digits of random bytes: too long for the primary key's btree index, whatever compression does.
    file.exec("INSERT INTO pages VALUES ('https://x/?q=' || hex(randomblob(4000)), 'long');");
    let stopped = run_once(&db, &file);
    assert!(!stopped.status.success());
    assert!(stderr(&stopped).contains("exceeds btree"), "{}", stderr(&stopped));
    let output = lite2pg_output(&["verify", "--sqlite", file.path.to_str().unwrap(), "--postgres", &db.url()]);
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(said.contains("WARNING: the sync stopped on an error") && said.contains("1 pending key(s)"), "{said}");
    assert!(said.contains("exceeds btree"), "{said}");
}

#[tokio::test]
async fn an_empty_file_is_never_written_into() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    std::fs::write(&path, b"").unwrap();
    let db = TestDb::new().await;
    for command in [&["snapshot"][..], &["run", "--once"], &["init"]] {
        let mut args = command.to_vec();
        let path = path.to_str().unwrap();
        let url = db.url();
        args.extend(["--sqlite", path]);
        if command[0] != "init" {
            args.extend(["--postgres", &url]);
        }
        let output = lite2pg_output(&args);
        assert!(!output.status.success(), "{command:?} succeeded");
        assert!(stderr(&output).contains("is empty (0 bytes)"), "{command:?}: {}", stderr(&output));
        assert_eq!(std::fs::metadata(dir.path().join("app.db")).unwrap().len(), 0, "{command:?} wrote into the file");
    }
}

#[tokio::test]
async fn a_file_emptied_under_a_running_daemon_is_never_written_into() {
    let file = SqliteFile::new(
        "PRAGMA journal_mode = DELETE; CREATE TABLE beat(id INTEGER PRIMARY KEY); CREATE TABLE t(id INTEGER PRIMARY KEY, v);",
    );
    let db = TestDb::new().await;
    let mut daemon = crate::support::daemon::start_daemon(&db, &file);
    crate::support::wait::settle(&db, &file).await;
    // The first step of `cp backup app.db`: the file is truncated, then written.
    std::fs::File::create(&file.path).unwrap();
    let status = daemon.exited_within(Duration::from_secs(30));
    assert!(!status.success());
    assert!(daemon.log().contains("no longer holds lite2pg's capture"), "{}", daemon.log());
    assert_eq!(std::fs::metadata(&file.path).unwrap().len(), 0, "the daemon wrote into the emptied file");
}

#[tokio::test]
async fn a_file_whose_tables_the_application_emptied_is_copied_again_by_snapshot_replace() {
    let file = SqliteFile::new("CREATE TABLE t(id INTEGER PRIMARY KEY, v); INSERT INTO t VALUES (1, 'a'), (2, 'b');");
    let db = TestDb::new().await;
    assert!(run_once(&db, &file).status.success());
    // A "reset" helper of the application's that empties every table, lite2pg's included.
    let conn = file.conn();
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for table in tables {
        conn.execute_batch(&format!("DELETE FROM \"{table}\"")).unwrap();
    }
    conn.execute_batch("INSERT INTO t VALUES (3, 'after the reset')").unwrap();
    let stopped = run_once(&db, &file);
    assert!(!stopped.status.success());
    assert!(stderr(&stopped).contains("--replace"), "{}", stderr(&stopped));
    let (path, url) = (file.path.to_str().unwrap(), db.url());
    let replaced = lite2pg_output(&["snapshot", "--replace", "--sqlite", path, "--postgres", &url]);
    assert!(replaced.status.success(), "{}", stderr(&replaced));
    db.assert_equal(&file.path).await;
    assert!(run_once(&db, &file).status.success());
}
