//! Schema changes while `lite2pg run` streams: columns and tables added, dropped, renamed, a migration tool's table
//! rebuild under write load, indexes; each followed by writes and a value-by-value comparison.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::support::daemon::start_daemon_with;
use crate::support::wait::{settle, wait_until_blocking, CATCH_UP};
use crate::support::{lite2pg_output, run_once, stderr, SqliteFile, TestDb};

const APP: &str = "
    CREATE TABLE beat(id INTEGER PRIMARY KEY);
    CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT NOT NULL, price REAL);
    INSERT INTO items VALUES (1, 'pen', 1.5), (2, 'ink', 2.25);";

async fn columns(db: &TestDb, table: &str) -> Vec<String> {
    let sql = format!(
        "SELECT attname || ' ' || format_type(atttypid, atttypmod) FROM pg_attribute
         WHERE attrelid = 'public.{table}'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum"
    );
    db.texts(&sql).await.into_iter().flatten().collect()
}

/// Applies what `file` holds now with `run --once`, which must succeed.
fn applied_once(db: &TestDb, file: &SqliteFile) {
    let output = run_once(db, file);
    assert!(output.status.success(), "{}", stderr(&output));
}

async fn compared_tables(db: &TestDb, file: &SqliteFile) -> Vec<String> {
    db.assert_equal(&file.path).await;
    let report = lite2pg::verify::verify(&db.source(&file.path)).await.unwrap();
    let mut names: Vec<String> = report.tables.into_iter().map(|t| t.table).collect();
    names.sort();
    names
}

#[tokio::test]
async fn columns_added_renamed_and_dropped_are_followed() {
    let file = SqliteFile::new(APP);
    let db = TestDb::new().await;
    let _daemon = start_daemon_with(&db, &file, &[]);
    settle(&db, &file).await;
    file.exec(
        "ALTER TABLE items ADD COLUMN note TEXT;
         ALTER TABLE items ADD COLUMN stock INTEGER NOT NULL DEFAULT 7;
         ALTER TABLE items ADD COLUMN label TEXT DEFAULT 'new';",
    );
    file.exec("INSERT INTO items (id, name, note, stock) VALUES (3, 'pad', 'added later', 1);");
    settle(&db, &file).await;
    assert_eq!(
        columns(&db, "items").await,
        ["id bigint", "name text", "price double precision", "note text", "stock bigint", "label text"]
    );
    db.assert_equal(&file.path).await;

    file.exec("ALTER TABLE items RENAME COLUMN name TO title; ALTER TABLE items DROP COLUMN note;");
    file.exec("UPDATE items SET title = 'fountain pen', stock = stock + 1 WHERE id = 1; INSERT INTO items (id, title) VALUES (4, 'nib');");
    settle(&db, &file).await;
    assert_eq!(columns(&db, "items").await, ["id bigint", "title text", "price double precision", "stock bigint", "label text"]);
    assert_eq!(db.texts("SELECT title || ' ' || stock FROM items WHERE id = 1").await, [Some("fountain pen 8".into())]);
    db.assert_equal(&file.path).await;
}

#[tokio::test]
async fn tables_created_renamed_and_dropped_are_followed() {
    let file = SqliteFile::new(APP);
    let db = TestDb::new().await;
    let _daemon = start_daemon_with(&db, &file, &["--dropped-tables", "drop"]);
    settle(&db, &file).await;
    file.exec(
        "CREATE TABLE orders(id INTEGER PRIMARY KEY, item_id INTEGER REFERENCES items, qty INTEGER NOT NULL, at DATETIME);
         INSERT INTO orders VALUES (1, 1, 3, '2024-05-01 10:00:00'), (2, 2, 1, '2024-05-02 11:30:00');",
    );
    file.exec("INSERT INTO orders VALUES (3, 1, 9, '2024-05-03 12:00:00'); UPDATE orders SET qty = 4 WHERE id = 1;");
    settle(&db, &file).await;
    assert_eq!(columns(&db, "orders").await, ["id bigint", "item_id bigint", "qty bigint", "at timestamp with time zone"]);
    assert_eq!(compared_tables(&db, &file).await, ["beat", "items", "orders"]);
    let foreign_keys = "SELECT count(*)::text FROM pg_constraint WHERE contype = 'f' AND connamespace = 'public'::regnamespace";
    assert_eq!(db.texts(foreign_keys).await, [Some("1".into())], "the new table's foreign key to items");

    file.exec("ALTER TABLE orders RENAME TO purchases; INSERT INTO purchases VALUES (4, 2, 2, NULL); DROP TABLE items;");
    settle(&db, &file).await;
    assert_eq!(compared_tables(&db, &file).await, ["beat", "purchases"]);
    let tables =
        db.texts("SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables WHERE schemaname = 'public'").await;
    assert_eq!(tables, [Some("beat,purchases".into())], "renamed in place; the dropped table dropped as asked");
    assert_eq!(db.texts("SELECT count(*)::text FROM purchases").await, [Some("4".into())]);
    assert_eq!(db.texts(foreign_keys).await, [Some("0".into())], "the foreign key went with the dropped table");

    file.exec(
        "CREATE TABLE a(id INTEGER PRIMARY KEY, v TEXT); CREATE TABLE b(id INTEGER PRIMARY KEY, n INTEGER);
         INSERT INTO a VALUES (1, 'x'); INSERT INTO b VALUES (1, 10), (2, 20);",
    );
    settle(&db, &file).await;
    file.exec("BEGIN; ALTER TABLE a RENAME TO swap; ALTER TABLE b RENAME TO a; ALTER TABLE swap RENAME TO b; COMMIT;");
    file.exec("INSERT INTO a VALUES (3, 30); INSERT INTO b VALUES (2, 'y');");
    settle(&db, &file).await;
    assert_eq!(columns(&db, "a").await, ["id bigint", "n bigint"], "swapped tables keep their rows and shapes");
    assert_eq!(compared_tables(&db, &file).await, ["a", "b", "beat", "purchases"]);
}

#[tokio::test]
async fn a_dropped_table_is_kept_in_postgres_by_default() {
    let file = SqliteFile::new(APP);
    let db = TestDb::new().await;
    let _daemon = start_daemon_with(&db, &file, &[]);
    settle(&db, &file).await;
    file.exec("DROP TABLE items;");
    settle(&db, &file).await;
    assert_eq!(compared_tables(&db, &file).await, ["beat"]);
    assert_eq!(db.texts("SELECT count(*)::text FROM items").await, [Some("2".into())], "the rows stay for reporting");
}

#[tokio::test]
async fn a_migration_tools_table_rebuild_under_write_load_ends_as_one_table() {
    let file = SqliteFile::new(APP);
    file.exec("CREATE INDEX items_by_name ON items(name);");
    let db = TestDb::new().await;
    let _daemon = start_daemon_with(&db, &file, &[]);
    settle(&db, &file).await;
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (conn, stop) = (file.conn(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 100;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                // Before the rebuild the table has `name`, after it `title`; each insert names what exists.
                let inserted = conn.execute("INSERT INTO items (id, name, price) VALUES (?1, 'load', ?1 * 0.5)", [n]);
                if inserted.is_err() {
                    conn.execute("INSERT INTO items (id, title, price, stock) VALUES (?1, 'load', ?1 * 0.5, ?1)", [n]).unwrap();
                }
                conn.execute("UPDATE items SET price = price + 1 WHERE id = ?1", [n - 50]).unwrap();
            }
            n
        })
    };
    let load_reached = |at_least: i64| {
        wait_until_blocking(&format!("the load to write row {at_least}"), CATCH_UP, || {
            let newest: i64 = file.conn().query_row("SELECT max(id) FROM items", [], |r| r.get(0)).unwrap();
            if newest >= at_least {
                Ok(newest)
            } else {
                Err(format!("newest row {newest}"))
            }
        })
    };
    let before = load_reached(150);
    // What Alembic's batch mode and Django's SQLite schema editor do for changes ALTER TABLE cannot make.
    file.exec(
        "BEGIN;
         CREATE TABLE _new_items(id INTEGER PRIMARY KEY, title TEXT NOT NULL, price NUMERIC, stock INTEGER NOT NULL DEFAULT 0);
         INSERT INTO _new_items (id, title, price) SELECT id, name, price FROM items;
         DROP TABLE items;
         ALTER TABLE _new_items RENAME TO items;
         CREATE INDEX items_by_title ON items(title);
         COMMIT;",
    );
    load_reached(before + 50);
    stop.store(true, Ordering::Relaxed);
    let written = load.join().unwrap();
    assert!(written > 110, "the load kept writing ({written})");
    settle(&db, &file).await;
    assert_eq!(compared_tables(&db, &file).await, ["beat", "items"]);
    assert_eq!(
        columns(&db, "items").await,
        ["id bigint", "price numeric", "title text", "stock bigint"],
        "NUMERIC stores 51.0 as 51: widened; in a rebuild columns are matched by name, so `title` is new"
    );
    let indexes =
        db.texts("SELECT string_agg(indexname, ',' ORDER BY indexname) FROM pg_indexes WHERE tablename = 'items'").await;
    assert_eq!(indexes, [Some("items_by_title,items_pkey".into())], "the old table's index went with it");
}

#[tokio::test]
async fn indexes_created_and_dropped_are_mirrored() {
    let file = SqliteFile::new(APP);
    let db = TestDb::new().await;
    let _daemon = start_daemon_with(&db, &file, &[]);
    settle(&db, &file).await;
    file.exec("CREATE INDEX items_by_price ON items(price); CREATE UNIQUE INDEX items_name_unique ON items(name);");
    settle(&db, &file).await;
    let indexes = || db.texts("SELECT string_agg(indexname, ',' ORDER BY indexname) FROM pg_indexes WHERE tablename = 'items'");
    assert_eq!(indexes().await, [Some("items_by_price,items_name_unique,items_pkey".into())]);
    file.exec("DROP INDEX items_by_price; DROP INDEX items_name_unique; INSERT INTO items VALUES (3, 'pen', 0);");
    settle(&db, &file).await;
    assert_eq!(indexes().await, [Some("items_pkey".into())]);
    db.assert_equal(&file.path).await;
}

#[tokio::test]
async fn a_rebuild_that_changes_the_primary_key_moves_it_in_postgres() {
    let file = SqliteFile::new(APP);
    let db = TestDb::new().await;
    let _daemon = start_daemon_with(&db, &file, &[]);
    settle(&db, &file).await;
    let primary_key = || {
        db.texts(
            "SELECT string_agg(a.attname, ',' ORDER BY k.ord) FROM pg_constraint c
             CROSS JOIN LATERAL unnest(c.conkey) WITH ORDINALITY AS k(attnum, ord)
             JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum
             WHERE c.conrelid = 'public.items'::regclass AND c.contype = 'p'",
        )
    };
    file.exec(
        "BEGIN;
         CREATE TABLE _new_items(id INTEGER, name TEXT NOT NULL, price REAL, PRIMARY KEY (name, id)) WITHOUT ROWID;
         INSERT INTO _new_items SELECT id, name, price FROM items; INSERT INTO _new_items VALUES (1, 'pen v2', 3);
         DROP TABLE items; ALTER TABLE _new_items RENAME TO items; COMMIT;",
    );
    file.exec("UPDATE items SET price = 4 WHERE name = 'pen v2'; DELETE FROM items WHERE name = 'ink';");
    settle(&db, &file).await;
    assert_eq!(primary_key().await, [Some("name,id".into())]);
    db.assert_equal(&file.path).await;

    file.exec(
        "BEGIN; CREATE TABLE _new_items(id INTEGER, name TEXT, price REAL); INSERT INTO _new_items SELECT * FROM items;
         INSERT INTO _new_items VALUES (1, 'pen', 1.5); DROP TABLE items; ALTER TABLE _new_items RENAME TO items; COMMIT;",
    );
    settle(&db, &file).await;
    assert_eq!(primary_key().await, [Some("__lite2pg_rowid".into())], "no declared key any more: keyed by rowid");
    file.exec("UPDATE items SET price = 9 WHERE id = 1;");
    settle(&db, &file).await;
    db.assert_equal(&file.path).await;
}

#[tokio::test]
async fn a_rebuild_while_lite2pg_is_stopped_is_copied_at_start_and_init_will_not_hide_it() {
    let file = SqliteFile::new(APP);
    let db = TestDb::new().await;
    let (path, url) = (file.path.to_str().unwrap(), db.url());
    assert!(lite2pg_output(&["run", "--once", "--sqlite", path, "--postgres", &url]).status.success());
    file.exec(
        "BEGIN; CREATE TABLE _new_items(id INTEGER PRIMARY KEY, name TEXT NOT NULL, price REAL, stock INTEGER);
         INSERT INTO _new_items SELECT id, name, price, 5 FROM items; INSERT INTO _new_items VALUES (9, 'unlogged', 1, 1);
         DROP TABLE items; ALTER TABLE _new_items RENAME TO items; COMMIT;",
    );
    let output = lite2pg_output(&["init", "--sqlite", path]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("items") && stderr(&output).contains("lite2pg run"), "{}", stderr(&output));
    let output = lite2pg_output(&["run", "--once", "--sqlite", path, "--postgres", &url]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(db.texts("SELECT name FROM items WHERE id = 9").await, [Some("unlogged".into())]);
    db.assert_equal(&file.path).await;
}

#[tokio::test]
async fn a_rebuild_that_redeclares_renames_and_drops_columns_follows_them_by_name() {
    let file = SqliteFile::new(APP);
    file.exec("ALTER TABLE items ADD COLUMN code INTEGER; ALTER TABLE items ADD COLUMN legacy INTEGER DEFAULT 0; UPDATE items SET code = id * 10;");
    let db = TestDb::new().await;
    let _daemon = start_daemon_with(&db, &file, &[]);
    settle(&db, &file).await;
    // Django's AlterField (INTEGER to varchar) and Alembic's batch rename of `name` with a drop of `legacy`.
    file.exec(
        "PRAGMA foreign_keys=OFF; BEGIN;
         CREATE TABLE new__items(id INTEGER PRIMARY KEY, title TEXT NOT NULL, price REAL, code varchar(20) NOT NULL);
         INSERT INTO new__items SELECT id, name, price, 'C-' || code FROM items;
         DROP TABLE items; ALTER TABLE new__items RENAME TO items; COMMIT;",
    );
    file.exec("INSERT INTO items VALUES (3, 'pad', 0.5, 'C-30'); UPDATE items SET code = 'X' WHERE id = 1;");
    settle(&db, &file).await;
    // Matched by name: `title` is a new column (at the end), `code` keeps its place with its new type.
    assert_eq!(columns(&db, "items").await, ["id bigint", "price double precision", "code text", "title text"]);
    assert_eq!(db.texts("SELECT count(*)::text FROM lite2pg.rejects").await, [Some("0".into())], "nothing rejected");
    let not_null = "SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute
                    WHERE attrelid = 'public.items'::regclass AND attnum > 0 AND attnotnull";
    assert_eq!(db.texts(not_null).await, [Some("id,code,title".into())]);
    db.assert_equal(&file.path).await;
}

#[tokio::test]
async fn a_column_renamed_and_its_name_taken_again_keeps_both_columns_values() {
    let file = SqliteFile::new(
        "CREATE TABLE m(id INTEGER PRIMARY KEY, c0 INTEGER);
         INSERT INTO m VALUES (8, 956.5), (9, 3);",
    );
    let db = TestDb::new().await;
    applied_once(&db, &file);
    // Between two looks: the old name now belongs to a new column holding only its default.
    file.exec("ALTER TABLE m RENAME COLUMN c0 TO c3; ALTER TABLE m ADD COLUMN c0 BOOLEAN DEFAULT 7;");
    applied_once(&db, &file);
    db.assert_equal(&file.path).await;
    file.exec("UPDATE m SET c0 = 1 WHERE id = 9");
    applied_once(&db, &file);
    db.assert_equal(&file.path).await;
}

#[tokio::test]
async fn a_column_dropped_and_added_again_under_its_name_holds_the_new_values() {
    let file = SqliteFile::new(
        "CREATE TABLE m(id INTEGER PRIMARY KEY, a INTEGER, b TEXT);
         INSERT INTO m VALUES (1, 10, 'one'), (2, 20, 'two');",
    );
    let db = TestDb::new().await;
    applied_once(&db, &file);
    // Between two looks, a column in the middle: it comes back at the end, holding only its default.
    file.exec("ALTER TABLE m DROP COLUMN a; ALTER TABLE m ADD COLUMN a INTEGER DEFAULT 5;");
    applied_once(&db, &file);
    db.assert_equal(&file.path).await;
    // The last column, redeclared: same place, new default.
    file.exec("ALTER TABLE m DROP COLUMN a; ALTER TABLE m ADD COLUMN a TEXT DEFAULT 'x';");
    applied_once(&db, &file);
    db.assert_equal(&file.path).await;
}
