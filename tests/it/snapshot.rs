//! Snapshot: exact values, every table kind, constraints, reruns and bad input.

use crate::support::{lite2pg_output, stderr, SqliteFile, TestDb};
use lite2pg::snapshot::snapshot;

#[tokio::test]
async fn every_storage_class_round_trips_bit_exact() {
    let file = SqliteFile::new(
        "CREATE TABLE v(id INTEGER PRIMARY KEY, r REAL, i INTEGER, t TEXT, b BLOB, anything);
         INSERT INTO v VALUES (1, 0.1, 9223372036854775807, '', x'', 1);
         INSERT INTO v VALUES (2, -0.0, -9223372036854775808, 'ünï©ødé 🎉', x'00ff00', 'text');
         INSERT INTO v VALUES (3, 5e-324, 0, 'line1\nline2\r\n\ttab', NULL, 2.5);
         INSERT INTO v VALUES (4, 1.7976931348623157e308, 1, NULL, x'deadbeef', '01');
         INSERT INTO v VALUES (5, -1.7976931348623157e308, -1, 'x', zeroblob(3), NULL);
         INSERT INTO v VALUES (6, NULL, NULL, 'quote''s \"dq\" \\ back', NULL, 1e300);",
    );
    let db = TestDb::new().await;
    let report = snapshot(&db.options(&file.path)).await.unwrap();
    assert_eq!(report.rejects(), 0);
    assert_eq!(report.tables[0].rows, 6);
    db.assert_equal(&file.path).await;
    let client = db.client().await;
    let bits: Vec<String> = client
        .query("SELECT float8send(r)::text FROM v WHERE r IS NOT NULL ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(bits[0], "\\x3fb999999999999a");
    assert_eq!(bits[2], "\\x0000000000000001");
    let empty: Vec<(Option<String>, Option<Vec<u8>>)> = client
        .query("SELECT t, b FROM v WHERE id IN (1, 3) ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(empty, [(Some(String::new()), Some(Vec::new())), (Some("line1\nline2\r\n\ttab".into()), None)]);
    let anything = db.texts("SELECT anything::text FROM v ORDER BY id").await;
    assert_eq!(
        anything.iter().flatten().collect::<Vec<_>>(),
        ["1", "text", "2.5", "01", "1e300"],
        "a column without a declared kind holding numbers and text: text, numbers in shortest round-trip form"
    );
}

#[tokio::test]
async fn types_follow_what_is_stored() {
    let file = SqliteFile::new(
        "CREATE TABLE m(id INTEGER PRIMARY KEY, mixed INTEGER_OR_TEXT, short VARCHAR(20), cash MONEY, flag BOOLEAN,
                        notflag BOOL, at DATETIME, at_ms TIMESTAMP, day DATE, loose_at DATETIME, ratio REAL, nums INT, empty_int INT);
         INSERT INTO m VALUES (1, 1, 'x', 1.25, 1, 2, '2024-01-01 00:00:00', '2024-01-01 00:00:00.123', '2024-02-29', '2024-01-01T00:00:00Z', 1.5, 1, NULL);
         INSERT INTO m VALUES (2, 'two', printf('%.300c', 'y'), 3, 0, 0, '1999-12-31 23:59:59', '2000-01-01 00:00:00.000', '1970-01-01', 'yesterday', 2.0, 2.5, NULL);",
    );
    let db = TestDb::new().await;
    let report = snapshot(&db.options(&file.path)).await.unwrap();
    let types: Vec<(String, String)> = report.mapping.iter().map(|m| (m.column.clone(), m.pg_type.clone())).collect();
    let expect = [
        ("id", "bigint"),
        ("mixed", "text"),
        ("short", "text"),
        ("cash", "numeric"),
        ("flag", "boolean"),
        ("notflag", "bigint"),
        ("at", "timestamp with time zone"),
        ("at_ms", "timestamp with time zone"),
        ("day", "date"),
        ("loose_at", "text"),
        ("ratio", "double precision"),
        ("nums", "numeric"),
        ("empty_int", "bigint"),
    ];
    assert_eq!(types, expect.map(|(c, t)| (c.to_string(), t.to_string())));
    db.assert_equal(&file.path).await;
    let mixed = db.texts("SELECT mixed || '|' || cash::text || '|' || nums::text FROM m ORDER BY id").await;
    assert_eq!(mixed, [Some("1|1.25|1".to_string()), Some("two|3|2.5".to_string())]);
}

#[tokio::test]
async fn every_table_kind_and_odd_names_are_copied_with_their_constraints() {
    let file = SqliteFile::new(
        r#"CREATE TABLE "Parent Table"(id INTEGER PRIMARY KEY, "select" TEXT NOT NULL UNIQUE, note TEXT DEFAULT 'n/a');
           CREATE TABLE "order items"(a TEXT, b INT, "We""ird" INT REFERENCES "Parent Table"(id), PRIMARY KEY (a, b)) WITHOUT ROWID;
           CREATE TABLE strict_t(k TEXT PRIMARY KEY, n INTEGER NOT NULL) STRICT;
           CREATE TABLE nokey(x, y);
           CREATE TABLE nullkey(code TEXT PRIMARY KEY, v);
           CREATE INDEX nokey_x ON nokey(x);
           CREATE INDEX nokey_expr ON nokey(lower(y)) WHERE y IS NOT NULL;
           CREATE VIEW a_view AS SELECT 1;
           CREATE TRIGGER app_trigger AFTER INSERT ON nokey BEGIN SELECT 1; END;
           INSERT INTO "Parent Table" VALUES (1, 'one', NULL), (2, 'two', 'x');
           INSERT INTO "order items" VALUES ('a', 1, 1), ('a', 2, 99);
           INSERT INTO strict_t VALUES ('k', 5);
           INSERT INTO nokey VALUES (1, 'A'), (1, 'A'), (NULL, NULL);
           INSERT INTO nullkey VALUES (NULL, 1), (NULL, 2), ('c', 3);"#,
    );
    let db = TestDb::new().await;
    let report = snapshot(&db.options(&file.path)).await.unwrap();
    db.assert_equal(&file.path).await;
    let notes = report.notes.join("\n");
    assert!(notes.contains("view \"a_view\" is not copied"), "{notes}");
    assert!(notes.contains("trigger \"app_trigger\" is not copied"), "{notes}");
    assert!(notes.contains("kept NOT VALID"), "{notes}");
    assert!(notes.contains("holds NULLs"), "{notes}");
    let constraints = db
        .texts(
            "SELECT conrelid::regclass::text || ' ' || contype::text || ' ' || condeferrable || ' ' || convalidated
             FROM pg_constraint WHERE connamespace = 'public'::regnamespace AND contype IN ('p', 'u', 'f') ORDER BY 1",
        )
        .await;
    let constraints: Vec<String> = constraints.into_iter().flatten().collect();
    assert_eq!(
        constraints,
        [
            "\"Parent Table\" p false true",
            "\"Parent Table\" u true true",
            "\"order items\" f true false",
            "\"order items\" p false true",
            "nokey p false true",
            "nullkey p false true",
            "nullkey u true true",
            "strict_t p false true",
        ]
    );
    let not_null = db
        .texts("SELECT attname::text FROM pg_attribute WHERE attrelid = '\"Parent Table\"'::regclass AND attnotnull AND attnum > 0 ORDER BY 1")
        .await;
    assert_eq!(not_null, [Some("id".to_string()), Some("select".to_string())]);
    let indexes = db.texts("SELECT indexname::text FROM pg_indexes WHERE tablename = 'nokey' ORDER BY 1").await;
    assert_eq!(indexes, [Some("nokey_expr".into()), Some("nokey_pkey".into()), Some("nokey_x".into())]);
    let default = db.texts("SELECT column_default::text FROM information_schema.columns WHERE column_name = 'note'").await;
    assert_eq!(default, [Some("'n/a'::text".to_string())]);
}

#[tokio::test]
async fn values_postgres_cannot_hold_are_rejected_not_lost() {
    let file = SqliteFile::new(
        "CREATE TABLE t(id INTEGER PRIMARY KEY, s TEXT);
         INSERT INTO t VALUES (1, 'fine'), (2, 'nul' || char(0) || 'inside'), (3, CAST(x'ff41' AS TEXT));",
    );
    let db = TestDb::new().await;
    let output = lite2pg_output(&["snapshot", "--sqlite", file.path.to_str().unwrap(), "--postgres", &db.url()]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(stderr(&output).contains("2 row(s) hold values PostgreSQL cannot hold"), "{}", stderr(&output));
    let rejects = db.texts("SELECT key::text || ' ' || column_name || ' ' || reason || ' ' || encode(raw, 'hex') FROM lite2pg.rejects ORDER BY key").await;
    assert_eq!(
        rejects,
        [
            Some("[2] s text contains a NUL character, which PostgreSQL text cannot hold 6e756c00696e73696465".to_string()),
            Some("[3] s text is not valid UTF-8, which PostgreSQL text cannot hold ff41".to_string()),
        ]
    );
    assert_eq!(db.texts("SELECT s FROM t").await, [Some("fine".to_string())]);
}

#[tokio::test]
async fn rerun_needs_replace_and_never_touches_foreign_tables() {
    let file = SqliteFile::new("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'a');");
    let db = TestDb::new().await;
    db.client()
        .await
        .batch_execute("CREATE SCHEMA other; CREATE TABLE other.t(precious text); INSERT INTO other.t VALUES ('keep')")
        .await
        .unwrap();
    let (path, url) = (file.path.to_str().unwrap(), db.url());
    let first = lite2pg_output(&["snapshot", "--sqlite", path, "--postgres", &url, "--json"]);
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    let json: serde_json::Value = serde_json::from_slice(&first.stdout).unwrap();
    assert_eq!(json["tables"][0]["rows"], 1);
    let again = lite2pg_output(&["snapshot", "--sqlite", path, "--postgres", &url]);
    assert_eq!(again.status.code(), Some(2));
    assert!(stderr(&again).contains("already copied"), "{}", stderr(&again));
    file.exec("INSERT INTO t VALUES (2, 'b')");
    let replaced = lite2pg_output(&["snapshot", "--replace", "--sqlite", path, "--postgres", &url]);
    assert_eq!(replaced.status.code(), Some(0), "{}", stderr(&replaced));
    db.assert_equal(&file.path).await;
    let other = lite2pg_output(&["snapshot", "--sqlite", path, "--postgres", &url, "--schema", "other", "--source-id", "second"]);
    assert_eq!(other.status.code(), Some(2));
    assert!(stderr(&other).contains("not created by lite2pg"), "{}", stderr(&other));
    assert_eq!(db.texts("SELECT precious FROM other.t").await, [Some("keep".to_string())]);
}

#[tokio::test]
async fn bad_input_gets_a_clear_error_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.db");
    let output =
        lite2pg_output(&["snapshot", "--sqlite", missing.to_str().unwrap(), "--postgres", "postgres://u:hunter2@127.0.0.1:1/x"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("cannot open SQLite file"), "{}", stderr(&output));
    assert!(!missing.exists(), "a missing SQLite file must never be created");

    let not_sqlite = dir.path().join("notes.txt");
    std::fs::write(&not_sqlite, "this is not a database, just some text that is long enough to look like a header").unwrap();
    let output =
        lite2pg_output(&["snapshot", "--sqlite", not_sqlite.to_str().unwrap(), "--postgres", "postgres://127.0.0.1:1/x"]);
    assert!(stderr(&output).contains("is not a SQLite database"), "{}", stderr(&output));

    let file = SqliteFile::new("CREATE TABLE t(x);");
    let output = lite2pg_output(&[
        "snapshot",
        "--sqlite",
        file.path.to_str().unwrap(),
        "--postgres",
        "postgres://app:hunter2@127.0.0.1:1/x",
    ]);
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert!(message.contains("cannot reach PostgreSQL at 127.0.0.1:1 (connection refused)"), "{message}");
    assert!(!message.contains("hunter2"), "the password leaked: {message}");

    let usage = lite2pg_output(&["snapshot", "--postgres", "postgres://app@127.0.0.1:1/x"]);
    assert_eq!(usage.status.code(), Some(2));
    assert!(stderr(&usage).contains("no SQLite file given"), "{}", stderr(&usage));
    let unknown = lite2pg_output(&["snapshot", "--bogus"]);
    assert_eq!(unknown.status.code(), Some(2));
}

#[tokio::test]
async fn a_user_without_create_privilege_is_told_so() {
    let file = SqliteFile::new("CREATE TABLE t(x); INSERT INTO t VALUES (1);");
    let db = TestDb::new().await;
    let role = format!("{}_weak", db.name);
    db.client()
        .await
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN; REVOKE CREATE ON DATABASE {} FROM PUBLIC; REVOKE CREATE ON SCHEMA public FROM PUBLIC",
            db.name
        ))
        .await
        .unwrap();
    let url = db.url().replacen("postgres@", &format!("{role}@"), 1);
    let output = lite2pg_output(&["snapshot", "--sqlite", file.path.to_str().unwrap(), "--postgres", &url]);
    db.client().await.batch_execute(&format!("DROP OWNED BY {role}; DROP ROLE {role}")).await.unwrap();
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert!(message.contains("permission denied"), "{message}");
    assert!(message.contains("CREATE"), "{message}");
}

#[tokio::test]
async fn a_locked_file_is_waited_for() {
    let file = SqliteFile::new("CREATE TABLE t(x); INSERT INTO t VALUES (1);");
    let db = TestDb::new().await;
    let holder = file.conn();
    holder.execute_batch("BEGIN EXCLUSIVE; INSERT INTO t VALUES (2);").unwrap();
    let release = std::thread::spawn(move || {
        // How long the lock is held is what is under test: the snapshot must outwait it.
        std::thread::sleep(std::time::Duration::from_millis(700));
        holder.execute_batch("COMMIT").unwrap();
    });
    let report = snapshot(&db.options(&file.path)).await.unwrap();
    release.join().unwrap();
    assert_eq!(report.tables[0].rows, 2);
    db.assert_equal(&file.path).await;
}
