//! Constraints while `lite2pg run` streams: a migration tool's table rebuild that loosens or tightens NOT NULL and
//! UNIQUE, CREATE and DROP INDEX, and a child table created before its parent; each followed by writes that
//! only the new constraints allow, and a value-by-value comparison.

use serde_json::Value;

use crate::support::daemon::start_daemon_with;
use crate::support::wait::settle;
use crate::support::{lite2pg_output, run_once, stderr, SqliteFile, TestDb};

const APP: &str = "
    CREATE TABLE beat(id INTEGER PRIMARY KEY);
    CREATE TABLE users(id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE, name TEXT NOT NULL, score REAL);
    INSERT INTO users VALUES (1, 'a@x', 'Ann', NULL), (2, 'b@x', 'Bob', 2.5);";

/// A table rebuild as Django's and Alembic's SQLite schema editors run it.
fn rebuild(file: &SqliteFile, create: &str, copy: &str) {
    file.exec(&format!(
        "PRAGMA foreign_keys=OFF; BEGIN; {create}; {copy}; DROP TABLE users; ALTER TABLE new__users RENAME TO users; COMMIT;"
    ));
}

async fn not_null_columns(db: &TestDb, table: &str) -> Vec<String> {
    let sql = format!(
        "SELECT attname::text FROM pg_attribute WHERE attrelid = 'public.{table}'::regclass AND attnum > 0
         AND NOT attisdropped AND attnotnull ORDER BY attnum"
    );
    db.texts(&sql).await.into_iter().flatten().collect()
}

/// The column lists of the table's unique constraints (other than the primary key), e.g. `email`.
async fn unique_constraints(db: &TestDb, table: &str) -> Vec<String> {
    let sql = format!(
        "SELECT string_agg(a.attname, ',' ORDER BY k.ord) FROM pg_constraint c
         CROSS JOIN LATERAL unnest(c.conkey) WITH ORDINALITY AS k(attnum, ord)
         JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum
         WHERE c.conrelid = 'public.{table}'::regclass AND c.contype = 'u' GROUP BY c.conname ORDER BY 1"
    );
    db.texts(&sql).await.into_iter().flatten().collect()
}

/// Unique indexes other than the primary key, by name (constraint-backed or not).
async fn unique_indexes(db: &TestDb, table: &str) -> Vec<String> {
    let sql = format!(
        "SELECT c.relname::text FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
         WHERE i.indrelid = 'public.{table}'::regclass AND i.indisunique AND NOT i.indisprimary ORDER BY 1"
    );
    db.texts(&sql).await.into_iter().flatten().collect()
}

/// `child(columns) -> parent(columns)` for each foreign key in the schema.
async fn foreign_keys(db: &TestDb) -> Vec<String> {
    let columns = |keys: &str, relation: &str| {
        format!(
            "(SELECT string_agg(a.attname, ',' ORDER BY k.ord) FROM unnest(c.{keys}) WITH ORDINALITY AS k(attnum, ord)
              JOIN pg_attribute a ON a.attrelid = c.{relation} AND a.attnum = k.attnum)"
        )
    };
    let sql = format!(
        "SELECT c.conrelid::regclass::text || '(' || {} || ') -> ' || c.confrelid::regclass::text || '(' || {} || ')'
         FROM pg_constraint c WHERE c.contype = 'f' AND c.connamespace = 'public'::regnamespace ORDER BY 1",
        columns("conkey", "conrelid"),
        columns("confkey", "confrelid")
    );
    db.texts(&sql).await.into_iter().flatten().collect()
}

fn status_json(db: &TestDb, file: &SqliteFile) -> Value {
    let output = lite2pg_output(&["status", "--json", "--sqlite", file.path.to_str().unwrap(), "--postgres", &db.url()]);
    assert!(output.status.success(), "{}", stderr(&output));
    serde_json::from_slice(&output.stdout).unwrap()
}

fn doctor_text(db: &TestDb, file: &SqliteFile) -> String {
    let output = lite2pg_output(&["doctor", "--sqlite", file.path.to_str().unwrap(), "--postgres", &db.url()]);
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn a_rebuild_that_drops_not_null_lets_nulls_through() {
    let file = SqliteFile::new(APP);
    let db = TestDb::new().await;
    let _daemon = start_daemon_with(&db, &file, &[]);
    settle(&db, &file).await;
    assert_eq!(not_null_columns(&db, "users").await, ["id", "email", "name"]);
    // Django's AlterField(null=True) on `name`.
    rebuild(
        &file,
        "CREATE TABLE new__users(id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE, name TEXT, score REAL)",
        "INSERT INTO new__users (id, email, name, score) SELECT id, email, name, score FROM users",
    );
    settle(&db, &file).await;
    file.exec("INSERT INTO users VALUES (3, 'c@x', NULL, 1); UPDATE users SET name = NULL WHERE id = 1;");
    settle(&db, &file).await;
    assert_eq!(not_null_columns(&db, "users").await, ["id", "email"]);
    assert_eq!(db.texts("SELECT count(*)::text FROM users WHERE name IS NULL").await, [Some("2".into())]);
    db.assert_equal(&file.path).await;
}

#[tokio::test]
async fn a_rebuild_that_drops_unique_deletes_no_row_for_a_duplicate() {
    let file = SqliteFile::new(APP);
    let db = TestDb::new().await;
    let _daemon = start_daemon_with(&db, &file, &[]);
    settle(&db, &file).await;
    assert_eq!(unique_constraints(&db, "users").await, ["email"]);
    rebuild(
        &file,
        "CREATE TABLE new__users(id INTEGER PRIMARY KEY, email TEXT NOT NULL, name TEXT NOT NULL, score REAL)",
        "INSERT INTO new__users (id, email, name, score) SELECT id, email, name, score FROM users",
    );
    settle(&db, &file).await;
    // Without the UNIQUE, these share Ann's email: a stale constraint would make the merge delete Ann as displaced.
    file.exec(
        "INSERT INTO users VALUES (3, 'a@x', 'Ann two', 0); INSERT OR REPLACE INTO users VALUES (4, 'a@x', 'Ann three', 0);",
    );
    settle(&db, &file).await;
    assert_eq!(unique_indexes(&db, "users").await, Vec::<String>::new());
    assert_eq!(db.texts("SELECT count(*)::text FROM users WHERE email = 'a@x'").await, [Some("3".into())]);
    db.assert_equal(&file.path).await;
}

#[tokio::test]
async fn a_rebuild_that_adds_not_null_unique_and_a_foreign_key_makes_them() {
    let file = SqliteFile::new(APP);
    file.exec("CREATE TABLE teams(id INTEGER PRIMARY KEY, title TEXT); INSERT INTO teams VALUES (7, 'seven');");
    let db = TestDb::new().await;
    let _daemon = start_daemon_with(&db, &file, &[]);
    settle(&db, &file).await;
    // Django's AlterField(null=False, default=0) fills the NULLs while copying; `name` becomes unique; a new
    // foreign key to teams.
    rebuild(
        &file,
        "CREATE TABLE new__users(id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE, name TEXT NOT NULL UNIQUE,
                                 score REAL NOT NULL, team_id INTEGER REFERENCES teams(id))",
        "INSERT INTO new__users (id, email, name, score, team_id) SELECT id, email, name, coalesce(score, 0), 7 FROM users",
    );
    file.exec("INSERT INTO users VALUES (3, 'c@x', 'Cy', 3, NULL);");
    settle(&db, &file).await;
    assert_eq!(not_null_columns(&db, "users").await, ["id", "email", "name", "score"]);
    assert_eq!(unique_constraints(&db, "users").await, ["email", "name"]);
    assert_eq!(foreign_keys(&db).await, ["users(team_id) -> teams(id)"]);
    assert_eq!(status_json(&db, &file)["missing_constraints"], serde_json::json!([]));
    // The new unique constraint is in the merge too: an INSERT OR REPLACE on `name` displaces Cy.
    file.exec("INSERT OR REPLACE INTO users VALUES (4, 'd@x', 'Cy', 4, 7);");
    settle(&db, &file).await;
    assert_eq!(db.texts("SELECT id::text FROM users WHERE name = 'Cy'").await, [Some("4".into())]);
    db.assert_equal(&file.path).await;
}

#[tokio::test]
async fn created_and_dropped_indexes_are_followed_by_the_merge() {
    let file = SqliteFile::new(APP);
    let db = TestDb::new().await;
    let _daemon = start_daemon_with(&db, &file, &[]);
    settle(&db, &file).await;
    file.exec("CREATE UNIQUE INDEX users_by_name ON users(name); CREATE INDEX users_by_score ON users(score);");
    settle(&db, &file).await;
    assert_eq!(unique_indexes(&db, "users").await, ["users_by_name", "users_email_key"]);
    let indexes = || db.texts("SELECT string_agg(indexname, ',' ORDER BY indexname) FROM pg_indexes WHERE tablename = 'users'");
    assert_eq!(indexes().await, [Some("users_by_name,users_by_score,users_email_key,users_pkey".into())]);
    file.exec("DROP INDEX users_by_name; DROP INDEX users_by_score; INSERT INTO users VALUES (3, 'c@x', 'Ann', 0);");
    settle(&db, &file).await;
    assert_eq!(indexes().await, [Some("users_email_key,users_pkey".into())]);
    assert_eq!(db.texts("SELECT count(*)::text FROM users WHERE name = 'Ann'").await, [Some("2".into())]);
    db.assert_equal(&file.path).await;
}

#[tokio::test]
async fn a_child_table_created_before_its_parent_gets_its_foreign_key() {
    let file = SqliteFile::new(APP);
    let db = TestDb::new().await;
    let _daemon = start_daemon_with(&db, &file, &[]);
    settle(&db, &file).await;
    // In one transaction, child first, as migration files often have it (and the child's name sorts first).
    file.exec(
        "BEGIN;
         CREATE TABLE posts(id INTEGER PRIMARY KEY, author_id INTEGER REFERENCES writers(id), body TEXT);
         CREATE TABLE writers(id INTEGER PRIMARY KEY, name TEXT);
         INSERT INTO writers VALUES (1, 'Ann'); INSERT INTO posts VALUES (1, 1, 'hello');
         COMMIT;",
    );
    settle(&db, &file).await;
    assert_eq!(foreign_keys(&db).await, ["posts(author_id) -> writers(id)"]);
    db.assert_equal(&file.path).await;

    // A child whose parent comes in a later migration: listed as missing until then.
    file.exec("CREATE TABLE comments(id INTEGER PRIMARY KEY, post_id INTEGER, thread_id INTEGER REFERENCES threads);");
    file.exec("INSERT INTO comments VALUES (1, 1, 5);");
    settle(&db, &file).await;
    let missing = status_json(&db, &file)["missing_constraints"].clone();
    assert_eq!(missing.as_array().map(Vec::len), Some(1), "{missing}");
    assert_eq!(missing[0]["table"], "comments");
    assert_eq!(missing[0]["waiting_for"], "threads");
    assert!(doctor_text(&db, &file).contains("[warn] constraints: PostgreSQL lacks foreign key comments(thread_id) -> threads"));
    file.exec("CREATE TABLE threads(id INTEGER PRIMARY KEY, topic TEXT); INSERT INTO threads VALUES (5, 'news');");
    settle(&db, &file).await;
    assert_eq!(foreign_keys(&db).await, ["comments(thread_id) -> threads(id)", "posts(author_id) -> writers(id)"]);
    assert_eq!(status_json(&db, &file)["missing_constraints"], serde_json::json!([]));
    assert!(doctor_text(&db, &file).contains("[ok  ] constraints"));
    db.assert_equal(&file.path).await;
}

#[tokio::test]
async fn a_foreign_key_existing_rows_break_stays_missing_and_the_stream_goes_on() {
    let file = SqliteFile::new(APP);
    file.exec("CREATE TABLE teams(id INTEGER PRIMARY KEY, title TEXT); INSERT INTO teams VALUES (7, 'seven');");
    let db = TestDb::new().await;
    let _daemon = start_daemon_with(&db, &file, &[]);
    settle(&db, &file).await;
    // SQLite does not check the copied rows (foreign_keys is off): team 99 does not exist.
    rebuild(
        &file,
        "CREATE TABLE new__users(id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE, name TEXT NOT NULL, score REAL,
                                 team_id INTEGER REFERENCES teams(id))",
        "INSERT INTO new__users (id, email, name, score, team_id) SELECT id, email, name, score, 99 FROM users",
    );
    settle(&db, &file).await;
    assert_eq!(foreign_keys(&db).await, Vec::<String>::new());
    let missing = status_json(&db, &file)["missing_constraints"].clone();
    assert_eq!(missing.as_array().map(Vec::len), Some(1), "{missing}");
    assert_eq!(missing[0]["waiting_for"], Value::Null);
    file.exec("INSERT INTO users VALUES (3, 'c@x', 'Cy', 3, 99); UPDATE users SET team_id = 7;");
    settle(&db, &file).await;
    db.assert_equal(&file.path).await;
}

#[tokio::test]
async fn values_sqlite_keeps_apart_that_one_unique_constraint_joins_drop_the_constraint_not_a_row() {
    let file = SqliteFile::new(
        "CREATE TABLE s(id INTEGER PRIMARY KEY, code UNIQUE, v); INSERT INTO s VALUES (1, 'a', 'x'), (2, 5, 'y');
         CREATE TABLE d(id INTEGER PRIMARY KEY, at DATETIME UNIQUE); INSERT INTO d VALUES (1, '2024-01-01 00:00:00');",
    );
    let db = TestDb::new().await;
    assert!(run_once(&db, &file).status.success());
    // An integer and a text, one instant written two ways: two values to SQLite, one to PostgreSQL.
    file.exec("INSERT INTO s VALUES (3, '5', 'z'); INSERT INTO d VALUES (2, '2024-01-01T00:00:00');");
    let output = run_once(&db, &file);
    let said = stderr(&output);
    assert!(output.status.success(), "{said}");
    assert!(said.contains("it was dropped in PostgreSQL so the copy stays equal"), "{said}");
    assert_eq!(db.texts("SELECT count(*)::text FROM s").await, [Some("3".into())]);
    assert_eq!(db.texts("SELECT count(*)::text FROM d").await, [Some("2".into())]);
    db.assert_equal(&file.path).await;
}

#[tokio::test]
async fn a_value_too_long_for_a_postgres_index_drops_the_index_not_the_row() {
    let file = SqliteFile::new(
        "CREATE TABLE posts(id INTEGER PRIMARY KEY, url TEXT); CREATE INDEX posts_url ON posts(url);
         CREATE TABLE links(id INTEGER PRIMARY KEY, url TEXT UNIQUE);
         INSERT INTO posts VALUES (1, 'https://example.com/'); INSERT INTO links VALUES (1, 'https://example.com/');",
    );
    let db = TestDb::new().await;
    assert!(run_once(&db, &file).status.success());
    assert_eq!(unique_indexes(&db, "links").await.len(), 1);
    // 8,000 hex digits hold 4,000 random bytes: no compression brings them under btree's 2,704-byte rows.
    file.exec(
        "INSERT INTO posts VALUES (2, 'https://x/?q=' || hex(randomblob(4000))), (3, 'https://after/');
         INSERT INTO links VALUES (2, 'https://x/?q=' || hex(randomblob(4000)));",
    );
    let output = run_once(&db, &file);
    let said = stderr(&output);
    assert!(output.status.success(), "{said}");
    assert!(said.contains("\"posts_url\"") && said.contains("dropped in PostgreSQL"), "{said}");
    assert_eq!(db.texts("SELECT indexname::text FROM pg_indexes WHERE tablename = 'posts'").await, [Some("posts_pkey".into())]);
    assert_eq!(unique_indexes(&db, "links").await, Vec::<String>::new());
    db.assert_equal(&file.path).await;
}

#[tokio::test]
async fn a_rebuild_that_drops_the_key_lets_the_old_key_column_take_null() {
    let file = SqliteFile::new("CREATE TABLE y(code TEXT PRIMARY KEY, v); INSERT INTO y VALUES ('a', 1), ('b', 2);");
    let db = TestDb::new().await;
    assert!(run_once(&db, &file).status.success());
    file.exec(
        "BEGIN; CREATE TABLE new_y(code TEXT, v); INSERT INTO new_y SELECT * FROM y; DROP TABLE y;
         ALTER TABLE new_y RENAME TO y; COMMIT; INSERT INTO y VALUES (NULL, 3);",
    );
    let output = run_once(&db, &file);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(not_null_columns(&db, "y").await, ["__lite2pg_rowid"], "keyed by rowid now; code takes NULL");
    db.assert_equal(&file.path).await;
}
