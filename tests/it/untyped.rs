//! Columns whose declaration names no kind (none at all, or `ANY`): their type follows the values that arrive, each
//! held as itself, and what no type can hold with the rest is recorded in rejects; verify tells kinds apart.

use lite2pg::stream::{run, StopWhen};

use crate::support::daemon::start_daemon_with;
use crate::support::wait::settle;
use crate::support::{SqliteFile, TestDb};

const SETTINGS: &str = "
    CREATE TABLE beat(id INTEGER PRIMARY KEY);
    CREATE TABLE settings(key TEXT PRIMARY KEY, value);
    CREATE TABLE settings_any(key TEXT PRIMARY KEY, value ANY);
    CREATE TABLE files(name TEXT PRIMARY KEY, body);";

async fn value_types(db: &TestDb) -> Vec<String> {
    let sql = "SELECT attrelid::regclass || ' ' || format_type(atttypid, atttypmod) FROM pg_attribute
               WHERE attname IN ('value', 'body') AND attrelid::regclass::text IN ('settings', 'settings_any', 'files')
               ORDER BY 1";
    db.texts(sql).await.into_iter().flatten().collect()
}

/// Writes the same statement into both settings tables.
fn write_settings(file: &SqliteFile, rows: &str) {
    file.exec(&format!("INSERT INTO settings VALUES {rows}; INSERT INTO settings_any VALUES {rows};"));
}

#[tokio::test]
async fn settings_without_a_declared_kind_hold_every_value_as_itself() {
    let file = SqliteFile::new(SETTINGS);
    let db = TestDb::new().await;
    let _daemon = start_daemon_with(&db, &file, &[]);
    settle(&db, &file).await;
    assert_eq!(value_types(&db).await, ["files bytea", "settings bytea", "settings_any bytea"], "empty: nothing known yet");

    write_settings(&file, "('retries', 3), ('port', 5432)");
    file.exec("INSERT INTO files VALUES ('logo.png', x'89504e47'), ('empty', NULL)");
    settle(&db, &file).await;
    assert_eq!(value_types(&db).await, ["files bytea", "settings bigint", "settings_any bigint"]);
    db.assert_equal(&file.path).await;

    write_settings(&file, "('ratio', 0.25)");
    settle(&db, &file).await;
    assert_eq!(value_types(&db).await, ["files bytea", "settings numeric", "settings_any numeric"]);
    db.assert_equal(&file.path).await;

    write_settings(&file, "('name', 'prod'), ('timeout', '30s')");
    file.exec("UPDATE settings SET value = 'fast' WHERE key = 'retries'");
    settle(&db, &file).await;
    assert_eq!(value_types(&db).await, ["files bytea", "settings text", "settings_any text"]);
    let values = db.texts("SELECT string_agg(key || '=' || value, ' ' ORDER BY key) FROM settings").await;
    assert_eq!(values, [Some("name=prod port=5432 ratio=0.25 retries=fast timeout=30s".into())], "numbers as text");
    db.assert_equal(&file.path).await;

    write_settings(&file, "('secret', x'00ff')");
    file.exec("INSERT INTO files VALUES ('readme', 'text, not bytes'), ('size', 12)");
    settle(&db, &file).await;
    assert_eq!(value_types(&db).await, ["files bytea", "settings text", "settings_any text"], "no type holds both kinds");
    let rejects = db
        .texts("SELECT table_name || ' ' || key::text || ': ' || reason FROM lite2pg.rejects ORDER BY table_name, key::text")
        .await;
    let because = "; no PostgreSQL type holds it together with the column's other values as themselves";
    assert_eq!(
        rejects,
        [
            Some(format!("files [\"readme\"]: a text value does not fit a bytea column{because}")),
            Some(format!("files [\"size\"]: a integer value does not fit a bytea column{because}")),
            Some(format!("settings [\"secret\"]: a blob value does not fit a text column{because}")),
            Some(format!("settings_any [\"secret\"]: a blob value does not fit a text column{because}")),
        ]
    );
    db.assert_equal(&file.path).await;

    file.exec("UPDATE settings SET value = 'rotated' WHERE key = 'secret'; DELETE FROM files WHERE name = 'size';");
    settle(&db, &file).await;
    assert_eq!(db.texts("SELECT value FROM settings WHERE key = 'secret'").await, [Some("rotated".into())]);
    assert_eq!(db.texts("SELECT count(*)::text FROM lite2pg.rejects").await, [Some("2".into())], "cleared when fixed");
    db.assert_equal(&file.path).await;
}

#[tokio::test]
async fn a_column_added_without_a_kind_follows_its_default_and_values() {
    let file = SqliteFile::new(SETTINGS);
    let db = TestDb::new().await;
    let _daemon = start_daemon_with(&db, &file, &[]);
    write_settings(&file, "('a', 1), ('b', 'two')");
    settle(&db, &file).await;
    let types = || async {
        let sql = "SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod), ', ' ORDER BY attnum)
                   FROM pg_attribute WHERE attrelid = 'settings'::regclass AND attnum > 0 AND NOT attisdropped";
        db.texts(sql).await
    };
    file.exec("ALTER TABLE settings ADD COLUMN note DEFAULT 0; ALTER TABLE settings ADD COLUMN extra;");
    settle(&db, &file).await;
    assert_eq!(types().await, [Some("key text, value text, note bigint, extra bytea".into())], "the default's kind");
    db.assert_equal(&file.path).await;
    file.exec("INSERT INTO settings VALUES ('c', 3.5, 'three', x'03')");
    settle(&db, &file).await;
    assert_eq!(types().await, [Some("key text, value text, note text, extra bytea".into())]);
    db.assert_equal(&file.path).await;
}

#[tokio::test]
async fn verify_tells_integer_text_and_blob_apart() {
    let file = SqliteFile::new(
        "CREATE TABLE kinds(id INTEGER PRIMARY KEY, i, t, b);
         INSERT INTO kinds VALUES (1, 1, '1', x'31');",
    );
    let db = TestDb::new().await;
    let options = db.options(&file.path);
    lite2pg::snapshot::snapshot(&options).await.unwrap();
    db.assert_equal(&file.path).await;
    let client = db.client().await;
    let differing = || async { lite2pg::verify::verify(&options.source).await.unwrap().tables[0].differing };
    // Each column by hand into a type holding the same bytes as another kind; then back.
    let wrong_kinds = [
        ("i", "bytea USING '\\x31'::bytea", "bigint USING 1"),
        ("t", "bytea USING convert_to(t, 'UTF8')", "text USING '1'"),
        ("b", "text USING convert_from(b, 'UTF8')", "bytea USING '\\x31'::bytea"),
    ];
    for (column, wrong, right) in wrong_kinds {
        client.batch_execute(&format!("ALTER TABLE kinds ALTER COLUMN {column} TYPE {wrong}")).await.unwrap();
        assert_eq!(differing().await, 1, "column {column} holding {wrong}");
        client.batch_execute(&format!("ALTER TABLE kinds ALTER COLUMN {column} TYPE {right}")).await.unwrap();
        assert_eq!(differing().await, 0);
    }
    client.batch_execute("ALTER TABLE kinds ALTER COLUMN i TYPE text").await.unwrap();
    assert_eq!(differing().await, 0, "a number in a text column is the documented mixed form");

    // An older version made the columns bytea and wrote numbers and text as their bytes: verify says so, and
    // repair re-types them from what SQLite stores (the table is copied again).
    client
        .batch_execute(
            "ALTER TABLE kinds ALTER COLUMN i TYPE bytea USING '\\x31'::bytea, ALTER COLUMN t TYPE bytea USING '\\x31'::bytea",
        )
        .await
        .unwrap();
    let report = lite2pg::verify::verify(&options.source).await.unwrap();
    assert_eq!(report.tables[0].differing, 1);
    lite2pg::verify::repair(&options, &report).await.unwrap();
    let types = db.texts("SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'kinds'::regclass AND attnum > 1 ORDER BY attnum").await;
    assert_eq!(types, [Some("bigint".into()), Some("text".into()), Some("bytea".into())]);
    db.assert_equal(&file.path).await;
}

#[tokio::test]
async fn an_any_column_holding_numbers_takes_text_later() {
    let file = SqliteFile::new("CREATE TABLE kv(k TEXT PRIMARY KEY, v ANY); INSERT INTO kv VALUES ('a', 1), ('b', 2.5);");
    let db = TestDb::new().await;
    let options = db.options(&file.path);
    let sync = || run(&options, StopWhen::CaughtUp, lite2pg::metrics::Metrics::new(Default::default()), |_| {});
    sync().await.unwrap();
    let v_type = "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'kv'::regclass AND attname = 'v'";
    assert_eq!(db.texts(v_type).await, [Some("numeric".into())]);
    file.exec("INSERT INTO kv VALUES ('c', 'three'), ('d', x'04'), ('e', '5')");
    sync().await.unwrap();
    assert_eq!(db.texts(v_type).await, [Some("text".into())], "text no longer rejected from a column declared ANY");
    let rows = db.texts("SELECT string_agg(k || '=' || v, ' ' ORDER BY k) FROM kv").await;
    assert_eq!(rows, [Some("a=1 b=2.5 c=three e=5".into())], "'5' was stored as integer 5 (ANY has numeric affinity)");
    assert_eq!(db.texts("SELECT key::text FROM lite2pg.rejects").await, [Some("[\"d\"]".into())], "the blob is recorded");
    db.assert_equal(&file.path).await;
}

#[tokio::test]
async fn an_empty_untyped_column_takes_its_first_type_under_any_policy() {
    let file = SqliteFile::new("CREATE TABLE kv(k TEXT PRIMARY KEY, v);");
    let db = TestDb::new().await;
    let mut options = db.options(&file.path);
    options.source.policies.on_misfit = lite2pg::config::MisfitPolicy::Reject;
    let sync = || run(&options, StopWhen::CaughtUp, lite2pg::metrics::Metrics::new(Default::default()), |_| {});
    sync().await.unwrap();
    file.exec("INSERT INTO kv VALUES ('a', 1), ('b', 'two')");
    assert_eq!(sync().await.unwrap().rejects, 0, "bytea was only a placeholder");
    file.exec("INSERT INTO kv VALUES ('c', 3.5), ('d', x'04')");
    assert_eq!(sync().await.unwrap().rejects, 1, "after that, the policy: reject what does not fit");
    let v_type = "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'kv'::regclass AND attname = 'v'";
    assert_eq!(db.texts(v_type).await, [Some("text".into())]);
    assert_eq!(db.texts("SELECT key::text FROM lite2pg.rejects").await, [Some("[\"d\"]".into())]);
    db.assert_equal(&file.path).await;
}
