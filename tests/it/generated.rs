//! Generated columns: synced as the values SQLite computes while streaming (also after an UPDATE of a base column,
//! a REPLACE through a unique generated column and an ALTER TABLE adding one); `cutover` makes them generated in
//! PostgreSQL where PostgreSQL computes the same values, and lists the others and everything else it could not
//! carry, in a dry run too.

use serde_json::Value;

use crate::support::daemon::start_daemon;
use crate::support::wait::wait_caught_up;
use crate::support::{lite2pg_output, stderr, SqliteFile, TestDb};

#[tokio::test]
async fn generated_columns_hold_sqlite_values_while_streaming() {
    let file = SqliteFile::new(
        "CREATE TABLE items(id INTEGER PRIMARY KEY, price REAL, qty INTEGER, name TEXT,
                            total REAL GENERATED ALWAYS AS (price * qty) STORED,
                            label AS (lower(name) || '#' || id) VIRTUAL);
         CREATE TABLE tags(id INTEGER PRIMARY KEY, name TEXT, slug TEXT GENERATED ALWAYS AS (lower(name)) VIRTUAL UNIQUE);
         INSERT INTO items(price, qty, name) VALUES (2.5, 4, 'Pen'), (10, 1, 'Book');
         INSERT INTO tags(id, name) VALUES (1, 'Rust');",
    );
    let db = TestDb::new().await;
    let _daemon = start_daemon(&db, &file);
    wait_caught_up(&db, &file).await;
    let items = "SELECT concat_ws('|', id, total, label) FROM items ORDER BY id";
    assert_eq!(db.texts(items).await, [Some("1|10|pen#1".into()), Some("2|10|book#2".into())]);

    file.exec(
        "UPDATE items SET qty = qty + 1 WHERE id = 1; UPDATE items SET name = 'NoteBook' WHERE id = 2;
         INSERT OR REPLACE INTO tags(id, name) VALUES (2, 'RUST');",
    );
    wait_caught_up(&db, &file).await;
    assert_eq!(db.texts(items).await, [Some("1|12.5|pen#1".into()), Some("2|10|notebook#2".into())]);
    let tags = "SELECT concat_ws('|', id, slug) FROM tags ORDER BY id";
    assert_eq!(db.texts(tags).await, [Some("2|rust".into())], "the REPLACE displaced row 1 through its generated slug");
    db.assert_equal(&file.path).await;

    // SQLite computes an added VIRTUAL column for every row at once, logging none of them (the insert is logged).
    file.exec(
        "ALTER TABLE items ADD COLUMN doubled INTEGER AS (qty * 2); INSERT INTO items(price, qty, name) VALUES (1, 3, 'Cap');",
    );
    wait_caught_up(&db, &file).await;
    let doubled = db.texts("SELECT doubled::text FROM items ORDER BY id").await;
    assert_eq!(doubled, [Some("10".into()), Some("2".into()), Some("6".into())]);
    db.assert_equal(&file.path).await;
}

const ORDERS: &str = "
    CREATE TABLE orders(id INTEGER PRIMARY KEY, price INTEGER NOT NULL, qty INTEGER, name TEXT, weight REAL, amount REAL,
        total INTEGER GENERATED ALWAYS AS (price * qty) STORED NOT NULL,
        slug TEXT AS (lower(name) || '-' || id),
        third REAL AS (round(price / 3.0, 1)),
        cents NUMERIC AS (CAST(amount * 100 AS NUMERIC)),
        parsed TEXT AS (json_extract('{\"a\": 1}', '$.a')),
        joined TEXT AS (price || qty),
        tag TEXT AS (name || weight),
        half INTEGER AS (price / 2) UNIQUE,
        viewed INTEGER AS (qty + 1),
        pre INTEGER AS (qty * 3));
    CREATE INDEX orders_half_qty ON orders(half, qty);
    CREATE TABLE halves(half INTEGER REFERENCES orders(half));
    INSERT INTO halves VALUES (5);
    INSERT INTO orders(price, qty, name, weight, amount) VALUES (10, 2, 'Pen', 2.0, 12.34), (7, 3, 'Ink', 0.5, 37.02);";

/// The `not_carried` entries of a JSON cutover report, as (kind, what).
fn not_carried(report: &Value) -> Vec<(String, String)> {
    report["not_carried"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| (item["kind"].as_str().unwrap().to_string(), item["what"].as_str().unwrap().to_string()))
        .collect()
}

fn cutover_json(file: &SqliteFile, db: &TestDb, extra: &[&str]) -> Value {
    let (path, url) = (file.path.to_str().unwrap(), db.url());
    let output = lite2pg_output(&[&["cutover", "--json", "--sqlite", path, "--postgres", &url], extra].concat());
    assert!(output.status.success(), "{}", stderr(&output));
    serde_json::from_slice(&output.stdout).unwrap()
}

async fn generated_in_postgres(db: &TestDb) -> Vec<Option<String>> {
    db.texts("SELECT attname::text FROM pg_attribute WHERE attrelid = 'orders'::regclass AND attgenerated = 's' ORDER BY attnum")
        .await
}

#[tokio::test]
async fn cutover_makes_generated_columns_postgres_computes_the_same_and_lists_the_rest() {
    let file = SqliteFile::new(ORDERS);
    let db = TestDb::new().await;
    let (path, url) = (file.path.to_str().unwrap(), db.url());
    assert!(lite2pg_output(&["run", "--once", "--sqlite", path, "--postgres", &url]).status.success());

    // A view on one generated column; another PostgreSQL generates already (as an application's own schema may).
    let already = "ALTER TABLE orders DROP COLUMN pre, ADD COLUMN pre bigint GENERATED ALWAYS AS (qty * 3) STORED";
    db.client().await.batch_execute(&format!("CREATE VIEW viewed AS SELECT viewed FROM orders; {already}")).await.unwrap();
    let dry = cutover_json(&file, &db, &["--dry-run"]);
    assert_eq!(generated_in_postgres(&db).await, [Some("pre".into())], "a dry run changes nothing");
    let report = cutover_json(&file, &db, &[]);
    assert_eq!(dry["generated"], report["generated"]);
    assert_eq!(not_carried(&dry), not_carried(&report), "the dry run lists what the cutover does");
    assert_eq!(
        report["generated"],
        serde_json::json!(["orders.total", "orders.slug", "orders.third", "orders.cents", "orders.half"])
    );
    let reasons: Vec<String> = not_carried(&report)
        .into_iter()
        .filter(|(kind, _)| kind == "generated_column")
        .map(|(_, what)| what.split_once(": ").unwrap().1.to_string())
        .collect();
    assert_eq!(reasons.len(), 4, "{reasons:?}");
    assert!(reasons[0].contains("json_extract() is not known"), "{reasons:?}");
    assert!(reasons[1].starts_with("PostgreSQL refused `\"price\" || \"qty\"`"), "{reasons:?}");
    assert!(reasons[1].contains("operator does not exist: bigint || bigint"), "{reasons:?}");
    assert!(reasons[2].contains("differently from SQLite for 1 row(s)"), "'Pen2.0' in SQLite, 'Pen2' in PostgreSQL: {reasons:?}");
    assert_eq!(reasons[3], "rule _RETURN on view viewed in PostgreSQL uses the column");
    let sql: Vec<&str> = report["not_carried"].as_array().unwrap().iter().filter_map(|i| i["sql"].as_str()).collect();
    assert!(sql.contains(&"GENERATED ALWAYS AS (name || weight)"), "{sql:?}");

    // cents: SQLite computed 37.02 * 100 in floating point (3702.0000000000005, stored beside the integer 1234, so
    // the column is numeric); PostgreSQL's exact 3702 is the same to a double's 15 digits.
    // The made ones moved to the end of the table, keep NOT NULL and compute what the application inserts.
    let columns = db.texts("SELECT attname::text FROM pg_attribute WHERE attrelid = 'orders'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum").await;
    let columns: Vec<String> = columns.into_iter().flatten().collect();
    assert_eq!(
        columns,
        [
            "id", "price", "qty", "name", "weight", "amount", "parsed", "joined", "tag", "viewed", "pre", "total", "slug",
            "third", "cents", "half"
        ]
    );
    assert_eq!(
        generated_in_postgres(&db).await,
        [
            Some("pre".into()),
            Some("total".into()),
            Some("slug".into()),
            Some("third".into()),
            Some("cents".into()),
            Some("half".into())
        ]
    );
    let client = db.client().await;
    client.batch_execute("INSERT INTO orders(price, qty, name, weight, amount) VALUES (5, 5, 'Cup', 1.5, 0.07)").await.unwrap();
    let row =
        client.query_one("SELECT concat_ws('|', total, slug, third, cents) FROM orders WHERE name = 'Cup'", &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "25|cup-3|1.7|7");
    // half's unique constraint, its index with qty and the foreign key to it were made again.
    let made_again =
        "SELECT count(*)::text FROM pg_constraint WHERE conname IN ('orders_half_key', 'halves_fk0') AND convalidated";
    assert_eq!(db.texts(made_again).await, [Some("2".into())]);
    assert!(db.texts("SELECT indexdef FROM pg_indexes WHERE indexname = 'orders_half_qty'").await[0]
        .as_ref()
        .unwrap()
        .contains("(half, qty)"));
    let duplicate = client.batch_execute("INSERT INTO orders(price, qty, name) VALUES (11, 1, 'same half')").await;
    assert!(duplicate.is_err(), "half stays unique");
    let null_total = client.batch_execute("INSERT INTO orders(price, name) VALUES (1, 'no qty')").await;
    assert!(null_total.unwrap_err().as_db_error().unwrap().message().contains("not-null"), "NOT NULL came along");
}

const UNCARRIED: &str = "
    CREATE TABLE parents(id INTEGER PRIMARY KEY);
    CREATE TABLE kids(id INTEGER PRIMARY KEY, parent_id INTEGER REFERENCES parents, ghost_id INTEGER REFERENCES ghosts(id),
                      name TEXT CHECK (name GLOB '[a-z]*'), token TEXT DEFAULT (hex(randomblob(4))));
    CREATE UNIQUE INDEX kids_name ON kids(name) WHERE name GLOB 'a*';
    CREATE VIEW named_kids AS SELECT * FROM kids WHERE name IS NOT NULL;
    CREATE TRIGGER kids_touch AFTER UPDATE ON kids BEGIN SELECT 1; END;
    CREATE VIRTUAL TABLE kid_search USING fts5(name);
    INSERT INTO parents VALUES (1);
    INSERT INTO kids(id, parent_id, name) VALUES (1, 1, 'ann'), (2, 99, 'bob');";

#[tokio::test]
async fn cutover_lists_everything_it_could_not_carry_in_text_and_json() {
    let file = SqliteFile::new(UNCARRIED);
    let db = TestDb::new().await;
    let (path, url) = (file.path.to_str().unwrap(), db.url());
    assert!(lite2pg_output(&["run", "--once", "--sqlite", path, "--postgres", &url]).status.success());

    let dry = lite2pg_output(&["cutover", "--dry-run", "--sqlite", path, "--postgres", &url]);
    let text = String::from_utf8_lossy(&dry.stdout).into_owned();
    assert!(dry.status.success(), "{text}{}", stderr(&dry));
    let report = cutover_json(&file, &db, &[]);
    let mut kinds: Vec<String> = not_carried(&report).into_iter().map(|(kind, _)| kind).collect();
    kinds.sort();
    assert_eq!(
        kinds,
        ["check", "default", "missing_constraint", "not_valid", "trigger", "unique_index", "view", "virtual_table"],
        "{report:#}"
    );
    for (kind, what) in not_carried(&report) {
        assert!(text.contains(&what), "the dry run lists {kind} too: {what}\n{text}");
        let expected = match kind.as_str() {
            "check" => "CHECK constraint PostgreSQL refused",
            "default" => "default of kids.token",
            "missing_constraint" => "foreign key kids(ghost_id) -> ghosts (waits for table \"ghosts\" in PostgreSQL)",
            "not_valid" => "foreign key stays NOT VALID: rows break it",
            "trigger" => "trigger kids_touch",
            "unique_index" => "unique index PostgreSQL refused",
            "view" => "view named_kids",
            _ => "virtual table kid_search",
        };
        assert!(what.starts_with(expected), "{kind}: {what}");
    }
    let client = db.client().await;
    let valid: bool = client
        .query_one("SELECT convalidated FROM pg_constraint WHERE conrelid = 'kids'::regclass AND contype = 'f'", &[])
        .await
        .unwrap()
        .get(0);
    assert!(!valid, "the foreign key row 2 breaks stays, NOT VALID");
    assert!(client.batch_execute("INSERT INTO kids(id, parent_id) VALUES (3, 42)").await.is_err(), "but new rows are checked");
}
