//! Columns joined by foreign keys get one PostgreSQL type (the join of theirs), so every foreign key SQLite
//! declares exists in PostgreSQL: at the snapshot, for tables created while streaming, and after a widening.

use lite2pg::config::MisfitPolicy;
use lite2pg::stream::{run, StopWhen};

use crate::support::{SqliteFile, TestDb};

async fn sync(db: &TestDb, file: &SqliteFile) {
    let mut options = db.options(&file.path);
    options.source.policies.on_misfit = MisfitPolicy::Widen;
    run(&options, StopWhen::CaughtUp, lite2pg::metrics::Metrics::new(Default::default()), |_| {}).await.unwrap();
}

/// `table.column type` for the named columns.
async fn types(db: &TestDb, columns: &[(&str, &str)]) -> Vec<String> {
    let mut found = Vec::new();
    for (table, column) in columns {
        let sql = format!(
            "SELECT '{table}.{column} ' || format_type(atttypid, atttypmod) FROM pg_attribute
             WHERE attrelid = 'public.{table}'::regclass AND attname = '{column}'"
        );
        found.extend(db.texts(&sql).await.into_iter().flatten());
    }
    found
}

/// Every foreign key in PostgreSQL: `table: definition`.
async fn foreign_keys(db: &TestDb) -> Vec<String> {
    let sql = "SELECT conrelid::regclass::text || ': ' || pg_get_constraintdef(oid) FROM pg_constraint
               WHERE contype = 'f' AND connamespace = 'public'::regnamespace ORDER BY 1";
    db.texts(sql).await.into_iter().flatten().collect()
}

const SCHEMA: &str = "
    CREATE TABLE parent(code TEXT PRIMARY KEY, name TEXT);
    CREATE TABLE child(id INTEGER PRIMARY KEY, parent_code INTEGER REFERENCES parent(code), u INT UNIQUE REFERENCES parent);
    CREATE TABLE grandchild(id INTEGER PRIMARY KEY, child_code REFERENCES child(u));
    CREATE TABLE num_parent(n INT PRIMARY KEY);
    CREATE TABLE text_child(id INTEGER PRIMARY KEY, n TEXT REFERENCES num_parent);
    CREATE TABLE pair(a TEXT, b INTEGER, PRIMARY KEY (a, b));
    CREATE TABLE pair_child(x INTEGER, y TEXT, FOREIGN KEY (x, y) REFERENCES pair(a, b));
    CREATE TABLE coded(id INTEGER PRIMARY KEY, code TEXT UNIQUE);
    CREATE TABLE by_code(id INTEGER PRIMARY KEY, code INTEGER REFERENCES coded(code));
    INSERT INTO parent VALUES ('A1', 'a'), ('B2', 'b'), ('7', 'seven');
    INSERT INTO child VALUES (1, 7, 7), (2, 7, NULL), (3, 404, NULL);
    INSERT INTO grandchild VALUES (1, 7);
    INSERT INTO num_parent VALUES (1), (2);
    INSERT INTO text_child VALUES (1, '1'), (2, 'two');
    INSERT INTO pair VALUES ('1', 2), ('x', 3);
    INSERT INTO pair_child VALUES (1, '2'), (1, 'two');
    INSERT INTO coded VALUES (1, '5'), (2, 'C');
    INSERT INTO by_code VALUES (1, 5);";

#[tokio::test]
async fn snapshot_gives_both_ends_of_every_foreign_key_one_type() {
    let file = SqliteFile::new(SCHEMA);
    let db = TestDb::new().await;
    let report = lite2pg::snapshot::snapshot(&db.options(&file.path)).await.unwrap();
    let columns = [
        ("parent", "code"),
        ("child", "parent_code"),
        ("child", "u"),
        ("grandchild", "child_code"),
        ("num_parent", "n"),
        ("text_child", "n"),
        ("pair", "a"),
        ("pair", "b"),
        ("pair_child", "x"),
        ("pair_child", "y"),
        ("coded", "code"),
        ("by_code", "code"),
    ];
    let expect: Vec<String> = columns.iter().map(|(t, c)| format!("{t}.{c} text")).collect();
    assert_eq!(types(&db, &columns).await, expect, "the wider of the two ends, through chains of keys too");
    let mapped = report.mapping.iter().find(|m| m.table == "child" && m.column == "parent_code").unwrap();
    assert_eq!(mapped.pg_type, "text", "the printed mapping shows the type the column got");
    let keys = foreign_keys(&db).await;
    assert_eq!(keys.len(), 6, "every foreign key SQLite declares exists: {keys:?}");
    assert!(keys.iter().any(|k| k.starts_with("child: ") && k.ends_with("NOT VALID")), "child 3 has no parent 404: {keys:?}");
    assert!(keys.iter().any(|k| k.starts_with("by_code: ") && !k.ends_with("NOT VALID")), "{keys:?}");
    assert!(!report.notes.iter().any(|n| n.contains("foreign key") && n.contains("not created")), "{:?}", report.notes);
    db.assert_equal(&file.path).await;
}

#[tokio::test]
async fn tables_created_while_streaming_get_the_type_of_their_partners() {
    let file = SqliteFile::new(
        "CREATE TABLE parent(code TEXT PRIMARY KEY);
         CREATE TABLE orphan(id INTEGER PRIMARY KEY, later_id INTEGER REFERENCES later(k));
         INSERT INTO parent VALUES ('A1'), ('1');
         INSERT INTO orphan VALUES (1, 1), (2, 2);",
    );
    let db = TestDb::new().await;
    sync(&db, &file).await;
    assert_eq!(types(&db, &[("orphan", "later_id")]).await, ["orphan.later_id bigint"]);
    file.exec(
        "CREATE TABLE child(id INTEGER PRIMARY KEY, parent_code INTEGER REFERENCES parent(code));
         INSERT INTO child VALUES (1, 1), (2, 1);
         CREATE TABLE later(k TEXT PRIMARY KEY);
         INSERT INTO later VALUES ('1'), ('two');",
    );
    sync(&db, &file).await;
    let columns = [("parent", "code"), ("child", "parent_code"), ("orphan", "later_id"), ("later", "k")];
    let expect: Vec<String> = columns.iter().map(|(t, c)| format!("{t}.{c} text")).collect();
    assert_eq!(types(&db, &columns).await, expect, "a new child takes its parent's type; a new parent widens its child");
    let keys = foreign_keys(&db).await;
    assert!(keys.iter().any(|k| k.starts_with("child: ")), "{keys:?}");
    assert!(keys.iter().any(|k| k.starts_with("orphan: ")), "the existing child of a new parent gets its key: {keys:?}");
    file.exec("INSERT INTO child VALUES (3, 'A1'); INSERT INTO orphan VALUES (3, 'two');");
    sync(&db, &file).await;
    db.assert_equal(&file.path).await;
}

#[tokio::test]
async fn widening_a_key_column_widens_its_partners_and_keeps_the_key() {
    let file = SqliteFile::new(
        "CREATE TABLE parent(code INT PRIMARY KEY, label TEXT);
         CREATE TABLE child(id INTEGER PRIMARY KEY, code INT DEFAULT 1 REFERENCES parent);
         CREATE TABLE other(id INTEGER PRIMARY KEY, code INT REFERENCES parent(code));
         INSERT INTO parent VALUES (1, 'one'), (2, 'two');
         INSERT INTO child VALUES (1, 1), (2, 2);
         INSERT INTO other VALUES (1, 2);",
    );
    let db = TestDb::new().await;
    sync(&db, &file).await;
    let columns = [("parent", "code"), ("child", "code"), ("other", "code")];
    assert_eq!(types(&db, &columns).await, columns.map(|(t, c)| format!("{t}.{c} bigint")));
    file.exec("INSERT INTO parent VALUES (2.5, 'two and a half'); INSERT INTO child VALUES (3, 2.5);");
    sync(&db, &file).await;
    assert_eq!(types(&db, &columns).await, columns.map(|(t, c)| format!("{t}.{c} numeric")));
    file.exec("INSERT INTO child VALUES (4, 'A1'); INSERT INTO parent VALUES ('A1', 'from the child side');");
    sync(&db, &file).await;
    assert_eq!(
        types(&db, &columns).await,
        columns.map(|(t, c)| format!("{t}.{c} text")),
        "a child's widening reaches its parent"
    );
    let keys = foreign_keys(&db).await;
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(keys.iter().all(|k| !k.ends_with("NOT VALID")), "the keys hold and stay validated: {keys:?}");
    let default = db
        .texts("SELECT column_default FROM information_schema.columns WHERE table_name = 'child' AND column_name = 'code'")
        .await;
    assert_eq!(default, [Some("'1'::text".into())], "the default follows the widened type");
    db.assert_equal(&file.path).await;
}
