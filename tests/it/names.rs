//! Names PostgreSQL cannot hold as they are (over 63 bytes, or lite2pg's own rowid column name) get a shortened
//! name with a hash suffix, the same at the snapshot, while streaming, and in verify.

use lite2pg::stream::{run, StopWhen};

use crate::support::{SqliteFile, TestDb};

async fn sync(db: &TestDb, file: &SqliteFile) -> lite2pg::stream::RunSummary {
    run(&db.options(&file.path), StopWhen::CaughtUp, lite2pg::metrics::Metrics::new(Default::default()), |_| {}).await.unwrap()
}

/// Every column of every table in schema public: `table.column`.
async fn pg_columns(db: &TestDb) -> Vec<String> {
    let sql = "SELECT table_name || '.' || column_name FROM information_schema.columns WHERE table_schema = 'public'
               ORDER BY table_name, ordinal_position";
    db.texts(sql).await.into_iter().flatten().collect()
}

fn long(prefix: &str) -> String {
    format!("{prefix}_{}", "x".repeat(70))
}

#[tokio::test]
async fn long_names_and_the_rowid_column_name_are_shortened_at_the_snapshot() {
    let (table, column) = (long("table"), long("column"));
    let file = SqliteFile::new(&format!(
        r#"CREATE TABLE "{table}"(id INTEGER PRIMARY KEY, "{column}" TEXT UNIQUE, "{column}2" INTEGER);
           CREATE TABLE keyless(__lite2pg_rowid TEXT, n INTEGER);
           CREATE TABLE child(id INTEGER PRIMARY KEY, ref TEXT REFERENCES "{table}"("{column}"));
           INSERT INTO "{table}" VALUES (1, 'a', 10), (2, 'b', 20);
           INSERT INTO keyless VALUES ('mine', 1), ('mine', 1);
           INSERT INTO child VALUES (1, 'a');"#
    ));
    let db = TestDb::new().await;
    let report = lite2pg::snapshot::snapshot(&db.options(&file.path)).await.unwrap();
    let columns = pg_columns(&db).await;
    assert_eq!(columns.len(), 8, "{columns:?}");
    assert!(columns.iter().all(|c| c.split('.').all(|part| part.len() <= 63)), "{columns:?}");
    assert!(columns.contains(&"keyless.__lite2pg_rowid".to_string()), "lite2pg's own column: {columns:?}");
    assert!(columns.iter().any(|c| c.starts_with("keyless.__lite2pg_rowid_")), "the user's column, renamed: {columns:?}");
    let shortened = report.notes.iter().filter(|n| n.contains("in PostgreSQL")).count();
    assert_eq!(shortened, 4, "a note for each shortened name: {:?}", report.notes);
    let keys =
        db.texts("SELECT count(*)::text FROM pg_constraint WHERE contype = 'f' AND conrelid = 'public.child'::regclass").await;
    assert_eq!(keys, [Some("1".to_string())]);
    file.exec(&format!(
        r#"UPDATE "{table}" SET "{column}2" = 11 WHERE id = 1; INSERT INTO "{table}" VALUES (3, 'c', 'thirty');
           UPDATE keyless SET __lite2pg_rowid = 'changed' WHERE rowid = 2; DELETE FROM keyless WHERE rowid = 1;"#
    ));
    sync(&db, &file).await;
    db.assert_equal(&file.path).await;
    let verified = lite2pg::verify::verify(&db.source(&file.path)).await.unwrap();
    let shown = verified.tables.iter().find(|t| t.table == table).map(|t| t.postgres_table.clone()).unwrap();
    assert!(shown.len() <= 63 && columns.iter().any(|c| c.starts_with(&format!("{shown}."))), "verify shows {shown}");
}

#[tokio::test]
async fn long_names_created_while_streaming_are_shortened_the_same_way() {
    let file = SqliteFile::new("CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT); INSERT INTO items VALUES (1, 'pen');");
    let db = TestDb::new().await;
    sync(&db, &file).await;
    let (table, column) = (long("later"), long("added"));
    file.exec(&format!(
        r#"CREATE TABLE "{table}"(k INTEGER PRIMARY KEY, "{column}" TEXT);
           INSERT INTO "{table}" VALUES (1, 'one');
           ALTER TABLE items ADD COLUMN "{column}" INTEGER;
           UPDATE items SET "{column}" = 5;
           CREATE TABLE plain(id INTEGER PRIMARY KEY, "__LITE2PG_ROWID" TEXT);
           INSERT INTO plain VALUES (1, 'a user column');"#
    ));
    sync(&db, &file).await;
    let columns = pg_columns(&db).await;
    assert_eq!(columns.len(), 7, "{columns:?}");
    assert!(columns.iter().all(|c| c.split('.').all(|part| part.len() <= 63)), "{columns:?}");
    file.exec(&format!(
        r#"INSERT INTO "{table}" VALUES (2, 'two'); ALTER TABLE "{table}" ADD COLUMN "{column}_second" REAL;
           UPDATE "{table}" SET "{column}_second" = 1.5; UPDATE items SET "{column}" = 6.5;"#
    ));
    sync(&db, &file).await;
    assert_eq!(pg_columns(&db).await.len(), 8);
    db.assert_equal(&file.path).await;
}

#[tokio::test]
async fn constraints_on_long_names_are_kept_through_a_rebuild() {
    let (table, column) = (long("parent"), long("code"));
    let file = SqliteFile::new(&format!(
        r#"CREATE TABLE "{table}"(id INTEGER PRIMARY KEY, "{column}" TEXT NOT NULL UNIQUE);
           CREATE TABLE child(id INTEGER PRIMARY KEY, ref TEXT REFERENCES "{table}"("{column}"));
           INSERT INTO "{table}" VALUES (1, 'a'); INSERT INTO child VALUES (1, 'a');"#
    ));
    let db = TestDb::new().await;
    sync(&db, &file).await;
    let status = |db: &TestDb, file: &SqliteFile| {
        let output = crate::support::lite2pg_output(&[
            "status",
            "--sqlite",
            file.path.to_str().unwrap(),
            "--postgres",
            &db.url(),
            "--json",
        ]);
        serde_json::from_slice::<serde_json::Value>(&output.stdout).unwrap()
    };
    assert_eq!(status(&db, &file)["missing_constraints"], serde_json::json!([]), "nothing missing after the snapshot");
    // A rebuild that keeps every constraint: none is dropped or reported missing for a name PostgreSQL shortened.
    file.exec(&format!(
        r#"PRAGMA foreign_keys=OFF; BEGIN; CREATE TABLE new_p(id INTEGER PRIMARY KEY, "{column}" TEXT NOT NULL UNIQUE, extra TEXT);
           INSERT INTO new_p(id, "{column}") SELECT id, "{column}" FROM "{table}"; DROP TABLE "{table}";
           ALTER TABLE new_p RENAME TO "{table}"; COMMIT; INSERT INTO "{table}" VALUES (2, 'b', 'x');"#
    ));
    sync(&db, &file).await;
    assert_eq!(status(&db, &file)["missing_constraints"], serde_json::json!([]));
    let not_null = "SELECT count(*)::text FROM pg_attribute WHERE attname LIKE 'code_%' AND attnotnull AND attnum > 0";
    assert_eq!(db.texts(not_null).await, [Some("1".to_string())]);
    db.assert_equal(&file.path).await;
}

#[tokio::test]
async fn columns_named_like_postgres_system_columns_are_renamed_the_same_way_everywhere() {
    let file = SqliteFile::new(
        r#"CREATE TABLE tiles(id INTEGER PRIMARY KEY, xmin REAL, ymin REAL, xmax REAL, ymax REAL, "" TEXT, "Ctid" TEXT);
           CREATE INDEX tiles_box ON tiles(xmin, xmax);
           INSERT INTO tiles VALUES (1, 0.5, 1.5, 2.5, 3.5, 'unnamed', 'case differs');"#,
    );
    let db = TestDb::new().await;
    sync(&db, &file).await;
    let columns = pg_columns(&db).await;
    assert!(columns.contains(&"tiles.ymin".to_string()) && columns.contains(&"tiles.Ctid".to_string()), "{columns:?}");
    assert!(columns.iter().any(|c| c.starts_with("tiles.xmin_")) && columns.iter().any(|c| c.starts_with("tiles.xmax_")));
    file.exec(
        r#"UPDATE tiles SET xmin = -1, "" = 'still unnamed' WHERE id = 1; INSERT INTO tiles VALUES (2, 1, 2, 3, 4, NULL, NULL);
           ALTER TABLE tiles ADD COLUMN cmax TEXT; UPDATE tiles SET cmax = 'added later';"#,
    );
    sync(&db, &file).await;
    assert!(pg_columns(&db).await.iter().any(|c| c.starts_with("tiles.cmax_")));
    db.assert_equal(&file.path).await;
}
