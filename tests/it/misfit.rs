//! Values PostgreSQL's column cannot hold, under each policy: widen ends equal, reject ends equal except the
//! listed keys, stop stops before the batch and resumes after the fix; `rejects --retry` after a policy change.

use lite2pg::config::MisfitPolicy;
use lite2pg::stream::{run, RunSummary, StopWhen};

use crate::support::{lite2pg_output, stderr, SqliteFile, TestDb};

const TABLE: &str = "
    CREATE TABLE t(id INTEGER PRIMARY KEY, flag BOOLEAN DEFAULT 1, n INTEGER, x, seen DATETIME, note TEXT);
    INSERT INTO t VALUES (1, 0, 10, 1.5, '2024-01-01 10:00:00', 'a'), (2, 1, 20, 2.25, '2024-01-02 11:00:00', 'b');";

/// Every bad value of the issue, one row each, in one transaction.
const BAD_VALUES: &str = "BEGIN;
    UPDATE t SET flag = 2 WHERE id = 1;
    UPDATE t SET n = 2.5 WHERE id = 2;
    INSERT INTO t VALUES (3, 1, 30, 7, 'tomorrow', 'c');
    INSERT INTO t VALUES (4, 0, 'forty', 4.5, NULL, 'nul' || char(0) || 'inside');
    INSERT INTO t VALUES (5, 1, 50, 5.5, NULL, x'ff00');
    INSERT INTO t VALUES (6, 1, 60, 6.5, NULL, CAST(x'c328' AS TEXT));
    COMMIT;";

async fn sync(db: &TestDb, file: &SqliteFile, policy: MisfitPolicy) -> lite2pg::Result<RunSummary> {
    let mut options = db.options(&file.path);
    options.source.policies.on_misfit = policy;
    run(&options, StopWhen::CaughtUp, lite2pg::metrics::Metrics::new(Default::default()), |_| {}).await
}

async fn column_types(db: &TestDb) -> Vec<String> {
    let sql = "SELECT attname || ' ' || format_type(atttypid, atttypmod) FROM pg_attribute
               WHERE attrelid = 'public.t'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum";
    db.texts(sql).await.into_iter().flatten().collect()
}

async fn reject_keys(db: &TestDb) -> Vec<String> {
    db.texts("SELECT key::text || ' ' || column_name FROM lite2pg.rejects ORDER BY key").await.into_iter().flatten().collect()
}

#[tokio::test]
async fn widen_alters_columns_and_ends_equal() {
    let file = SqliteFile::new(TABLE);
    let db = TestDb::new().await;
    sync(&db, &file, MisfitPolicy::Widen).await.unwrap();
    file.exec(BAD_VALUES);
    let summary = sync(&db, &file, MisfitPolicy::Widen).await.unwrap();
    assert_eq!(summary.rejects, 3);
    assert_eq!(
        column_types(&db).await,
        ["id bigint", "flag bigint", "n text", "x numeric", "seen text", "note text"],
        "boolean → bigint, bigint → numeric → text, double → numeric, timestamp → text"
    );
    assert_eq!(
        reject_keys(&db).await,
        ["[4] note", "[5] note", "[6] note"],
        "no type holds a blob, a NUL or invalid UTF-8 with text as themselves (bytea holds only blobs)"
    );
    assert_eq!(
        db.texts("SELECT column_default FROM information_schema.columns WHERE column_name = 'flag'").await,
        [Some("1".into())]
    );
    db.assert_equal(&file.path).await;
    file.exec("UPDATE t SET x = 1e300 * 10, n = 60 WHERE id = 1; INSERT INTO t (id) VALUES (7);");
    sync(&db, &file, MisfitPolicy::Widen).await.unwrap();
    db.assert_equal(&file.path).await;
}

#[tokio::test]
async fn auto_widens_within_a_kind_and_rejects_across_kinds() {
    let file = SqliteFile::new(TABLE);
    let db = TestDb::new().await;
    sync(&db, &file, MisfitPolicy::Auto).await.unwrap();
    file.exec(BAD_VALUES);
    let summary = sync(&db, &file, MisfitPolicy::Auto).await.unwrap();
    assert_eq!(summary.rejects, 3);
    assert_eq!(column_types(&db).await, ["id bigint", "flag bigint", "n numeric", "x numeric", "seen text", "note text"]);
    assert_eq!(reject_keys(&db).await, ["[4] n", "[5] note", "[6] note"], "row 4 is rejected for its first misfit: n");
    db.assert_equal(&file.path).await;
}

#[tokio::test]
async fn reject_keeps_types_and_lists_the_rows_then_retry_applies_them() {
    let file = SqliteFile::new(TABLE);
    let db = TestDb::new().await;
    sync(&db, &file, MisfitPolicy::Reject).await.unwrap();
    file.exec(BAD_VALUES);
    let summary = sync(&db, &file, MisfitPolicy::Reject).await.unwrap();
    assert_eq!(summary.rejects, 6);
    assert_eq!(
        column_types(&db).await,
        ["id bigint", "flag boolean", "n bigint", "x double precision", "seen timestamp with time zone", "note text"]
    );
    assert_eq!(reject_keys(&db).await, ["[1] flag", "[2] n", "[3] x", "[4] n", "[5] note", "[6] note"]);
    db.assert_equal(&file.path).await;
    assert_eq!(db.texts("SELECT count(*)::text FROM t").await, [Some("0".into())], "rejected rows are not in PostgreSQL");

    let (path, url) = (file.path.to_str().unwrap(), db.url());
    let output = lite2pg_output(&["rejects", "--retry", "--on-misfit", "widen", "--sqlite", path, "--postgres", &url]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(reject_keys(&db).await, ["[4] note", "[5] note", "[6] note"], "no type holds these with text");
    assert_eq!(db.texts("SELECT count(*)::text FROM t").await, [Some("3".into())]);
    db.assert_equal(&file.path).await;
}

#[tokio::test]
async fn stop_stops_before_the_batch_and_resumes_after_the_fix() {
    let file = SqliteFile::new(TABLE);
    let db = TestDb::new().await;
    sync(&db, &file, MisfitPolicy::Stop).await.unwrap();
    let before = db.texts("SELECT applied_seq::text FROM lite2pg.sources").await;
    file.exec("BEGIN; UPDATE t SET note = 'fits' WHERE id = 2; UPDATE t SET n = 'forty' WHERE id = 1; COMMIT;");
    let err = sync(&db, &file, MisfitPolicy::Stop).await.unwrap_err().to_string();
    assert!(err.contains("\"t\"") && err.contains("[1]") && err.contains("\"n\"") && err.contains("on_misfit"), "{err}");
    assert_eq!(db.texts("SELECT applied_seq::text FROM lite2pg.sources").await, before, "the position stays before the batch");
    assert_eq!(db.texts("SELECT note FROM t WHERE id = 2").await, [Some("b".into())], "nothing of the batch was applied");
    file.exec("UPDATE t SET n = 40 WHERE id = 1;");
    sync(&db, &file, MisfitPolicy::Stop).await.unwrap();
    db.assert_equal(&file.path).await;
}

#[tokio::test]
async fn the_config_file_beside_the_database_sets_connection_and_policies() {
    let file = SqliteFile::new(TABLE);
    let db = TestDb::new().await;
    let config = file.path.with_file_name("lite2pg.toml");
    let path = file.path.to_str().unwrap();
    std::fs::write(&config, "postgress = 'typo'\n").unwrap();
    let output = lite2pg_output(&["run", "--once", "--sqlite", path]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("unknown field `postgress`"), "{}", stderr(&output));

    let settings = format!(
        "postgres = '{}'\non_misfit = 'widen'\n[table.t.columns.n]\non_misfit = 'stop'\n[table.t.columns.note]\ntype = 'bytea'\n",
        db.url()
    );
    std::fs::write(&config, settings).unwrap();
    let output = lite2pg_output(&["run", "--once", "--sqlite", path]);
    assert!(output.status.success(), "{}", stderr(&output));
    file.exec("UPDATE t SET flag = 5 WHERE id = 1; UPDATE t SET n = 'x' WHERE id = 2;");
    let output = lite2pg_output(&["run", "--once", "--sqlite", path]);
    assert_eq!(output.status.code(), Some(1), "the column's own policy (stop) wins over the file's default");
    assert!(stderr(&output).contains("column \"n\""), "{}", stderr(&output));
    let output = lite2pg_output(&["run", "--once", "--sqlite", path, "--on-misfit", "reject"]);
    assert_eq!(output.status.code(), Some(1), "a flag sets the default; the column's own setting still wins");
    file.exec("UPDATE t SET n = 2 WHERE id = 2;");
    let output = lite2pg_output(&["run", "--once", "--sqlite", path]);
    assert!(output.status.success(), "{}", stderr(&output));
    let types = column_types(&db).await;
    assert_eq!(
        (types[1].as_str(), types[5].as_str()),
        ("flag bigint", "note bytea"),
        "widen applied to flag; note's type override"
    );
    db.assert_equal(&file.path).await;
}

/// A date column (exact when widened to text, so not copied again) and a row to reject in it.
const DATES: &str = "CREATE TABLE t(id INTEGER PRIMARY KEY, day DATE, note TEXT);
    INSERT INTO t VALUES (1, '2024-01-01', 'a'), (2, '2024-01-02', 'b');";

#[tokio::test]
async fn a_row_rejected_before_its_column_widens_is_applied_after() {
    let file = SqliteFile::new(DATES);
    let db = TestDb::new().await;
    sync(&db, &file, MisfitPolicy::Auto).await.unwrap();
    file.exec("UPDATE t SET day = 5 WHERE id = 1;");
    sync(&db, &file, MisfitPolicy::Auto).await.unwrap();
    assert_eq!(reject_keys(&db).await, ["[1] day"], "an integer in a date column is another kind: rejected");
    // Another row's text widens the column to text, which holds the rejected integer as well.
    file.exec("UPDATE t SET day = 'someday' WHERE id = 2;");
    sync(&db, &file, MisfitPolicy::Auto).await.unwrap();
    assert!(column_types(&db).await.contains(&"day text".to_string()), "{:?}", column_types(&db).await);
    assert_eq!(reject_keys(&db).await, Vec::<String>::new());
    assert_eq!(db.texts("SELECT day FROM t WHERE id = 1").await, [Some("5".into())]);
    db.assert_equal(&file.path).await;
}

#[tokio::test]
async fn verify_counts_a_reject_as_known_only_while_its_row_does_not_fit() {
    let file = SqliteFile::new(DATES);
    let db = TestDb::new().await;
    sync(&db, &file, MisfitPolicy::Auto).await.unwrap();
    file.exec("UPDATE t SET day = 5 WHERE id = 1;");
    sync(&db, &file, MisfitPolicy::Auto).await.unwrap();
    let (path, url) = (file.path.to_str().unwrap(), db.url());
    let verify = || lite2pg_output(&["verify", "--sqlite", path, "--postgres", &url]);
    let output = verify();
    assert!(output.status.success(), "a row that does not fit is a known reject: {}", stderr(&output));
    // Widened by hand, behind lite2pg's back: the recorded reject no longer explains the missing row.
    db.client().await.batch_execute("ALTER TABLE t ALTER COLUMN day TYPE text").await.unwrap();
    let output = verify();
    let said = format!("{}{}", String::from_utf8_lossy(&output.stdout), stderr(&output));
    assert!(!output.status.success() && said.contains("missing"), "{said}");
}

#[tokio::test]
async fn text_keys_postgres_cannot_hold_are_listed_as_rejects_each_by_its_bytes() {
    let file = SqliteFile::new(
        "CREATE TABLE w(k TEXT PRIMARY KEY, v) WITHOUT ROWID;
         INSERT INTO w VALUES ('ok', 1), (CAST(X'410042' AS TEXT), 2);",
    );
    let db = TestDb::new().await;
    sync(&db, &file, MisfitPolicy::Auto).await.unwrap();
    // A NUL inside, and two byte strings that are not UTF-8 and that a lossy decoding would make one.
    file.exec(
        "INSERT INTO w VALUES (CAST(X'6100' AS TEXT), 3), (CAST(X'FF41' AS TEXT), 4), (CAST(X'FE41' AS TEXT), 5), ('b', 6);",
    );
    sync(&db, &file, MisfitPolicy::Auto).await.unwrap();
    assert_eq!(
        reject_keys(&db).await,
        [
            r#"[{"text_hex": "410042"}] k"#,
            r#"[{"text_hex": "6100"}] k"#,
            r#"[{"text_hex": "fe41"}] k"#,
            r#"[{"text_hex": "ff41"}] k"#
        ]
    );
    assert_eq!(db.texts("SELECT k FROM w ORDER BY k").await, [Some("b".into()), Some("ok".into())]);
    db.assert_equal(&file.path).await;
    file.exec("DELETE FROM w WHERE v IN (2, 4);");
    sync(&db, &file, MisfitPolicy::Auto).await.unwrap();
    assert_eq!(reject_keys(&db).await.len(), 2, "a deleted row's reject goes: {:?}", reject_keys(&db).await);
}

#[tokio::test]
async fn rows_whose_key_holds_null_are_listed_as_rejects_until_they_go() {
    let file = SqliteFile::new(
        "CREATE TABLE doc(k TEXT PRIMARY KEY, v); INSERT INTO doc VALUES ('x', 1), ('y', 2);
         CREATE TABLE pair(a INT, b TEXT, v, PRIMARY KEY (a, b)); INSERT INTO pair VALUES (1, 'x', 1);",
    );
    let db = TestDb::new().await;
    sync(&db, &file, MisfitPolicy::Auto).await.unwrap();
    // SQLite takes NULL in a declared key of a rowid table; PostgreSQL's key cannot hold it.
    file.exec("INSERT INTO doc VALUES (NULL, 'a'); UPDATE doc SET k = NULL WHERE k = 'x'; INSERT INTO pair VALUES (1, NULL, 2);");
    sync(&db, &file, MisfitPolicy::Auto).await.unwrap();
    assert_eq!(reject_keys(&db).await, ["[null] k", "[1, null] b"]);
    assert_eq!(db.texts("SELECT k FROM doc").await, [Some("y".into())], "x took the NULL key: it is gone from PostgreSQL");
    db.assert_equal(&file.path).await;
    // A fresh copy keeps the declared keys and rejects the same rows.
    let (path, url) = (file.path.to_str().unwrap(), db.url());
    let output = lite2pg_output(&["snapshot", "--replace", "--sqlite", path, "--postgres", &url]);
    assert_eq!(output.status.code(), Some(1), "a copy with rejects exits 1: {}", stderr(&output));
    assert!(stderr(&output).contains("3 row(s) hold values PostgreSQL cannot hold"), "{}", stderr(&output));
    assert_eq!(reject_keys(&db).await, ["[null] k", "[1, null] b"]);
    db.assert_equal(&file.path).await;
    file.exec("DELETE FROM doc WHERE k IS NULL; DELETE FROM pair WHERE b IS NULL;");
    sync(&db, &file, MisfitPolicy::Auto).await.unwrap();
    assert_eq!(reject_keys(&db).await, Vec::<String>::new());
    db.assert_equal(&file.path).await;
}
