//! REPLACE through every kind of unique index, with a daemon streaming: expression, partial, collated (NOCASE and
//! RTRIM, on the column, in the index, on the key), composite, several at once, swaps inside one transaction and
//! UPSERTs. Each ends with a value-by-value comparison; a stalled stream fails `wait_caught_up`.

use std::time::Duration;

use crate::support::daemon::start_daemon_with;
use crate::support::wait::{check, wait_caught_up, wait_until};
use crate::support::{lite2pg_output, stderr, SqliteFile, TestDb};

/// Streams `schema` with a daemon, runs each of `writes` as its own commit, and checks PostgreSQL equals SQLite.
async fn streams_equal(schema: &str, writes: &[&str]) -> (TestDb, SqliteFile) {
    let file = SqliteFile::new(schema);
    let db = TestDb::new().await;
    let _daemon = start_daemon_with(&db, &file, &[]);
    wait_caught_up(&db, &file).await;
    for write in writes {
        file.exec(write);
        wait_caught_up(&db, &file).await;
        db.assert_equal(&file.path).await;
    }
    (db, file)
}

#[tokio::test]
async fn replace_through_an_expression_index() {
    streams_equal(
        "CREATE TABLE users(id INTEGER PRIMARY KEY, email TEXT, name TEXT);
         CREATE UNIQUE INDEX users_email ON users(lower(email));
         INSERT INTO users VALUES (1, 'Ann@x', 'Ann'), (2, 'bob@x', 'Bob');",
        &[
            "INSERT OR REPLACE INTO users VALUES (3, 'ANN@X', 'Ann again')",
            "REPLACE INTO users VALUES (4, 'BOB@x', 'Bob again')",
            "UPDATE OR REPLACE users SET email = 'bob@X' WHERE id = 3",
            "INSERT INTO users VALUES (5, 'new@x', 'upserted') ON CONFLICT (lower(email)) DO UPDATE SET name = 'never'",
            "INSERT INTO users VALUES (6, 'NEW@x', 'upsert') ON CONFLICT DO UPDATE SET name = excluded.name || ' done'",
        ],
    )
    .await;
}

#[tokio::test]
async fn replace_through_a_partial_index() {
    let (db, _file) = streams_equal(
        "CREATE TABLE seats(id INTEGER PRIMARY KEY, seat TEXT, state TEXT NOT NULL);
         CREATE UNIQUE INDEX seats_active ON seats(seat) WHERE state = 'taken';
         INSERT INTO seats VALUES (1, 'a1', 'taken'), (2, 'a1', 'free'), (3, 'b2', 'taken');",
        &[
            "INSERT OR REPLACE INTO seats VALUES (4, 'a1', 'taken')",
            "INSERT OR REPLACE INTO seats VALUES (5, 'a1', 'free')",
            "UPDATE OR REPLACE seats SET seat = 'b2' WHERE id = 4",
            "UPDATE OR REPLACE seats SET state = 'taken' WHERE id = 2",
        ],
    )
    .await;
    let indexes = db.texts("SELECT indexdef FROM pg_indexes WHERE indexname = 'seats_active'").await;
    assert!(indexes[0].as_deref().is_some_and(|d| d.starts_with("CREATE INDEX")), "not unique while streaming: {indexes:?}");
}

#[tokio::test]
async fn replace_over_a_nocase_key() {
    streams_equal(
        "CREATE TABLE tags(name TEXT PRIMARY KEY COLLATE NOCASE, n INTEGER);
         CREATE TABLE pairs(a TEXT COLLATE RTRIM, b TEXT, v, PRIMARY KEY (a, b)) WITHOUT ROWID;
         INSERT INTO tags VALUES ('abc', 1), ('Keep', 2);
         INSERT INTO pairs VALUES ('x', 'y', 1);",
        &[
            "INSERT OR REPLACE INTO tags VALUES ('ABC', 3)",
            "REPLACE INTO pairs VALUES ('x  ', 'y', 2)",
            "UPDATE OR REPLACE tags SET name = 'abc' WHERE name = 'keep'",
            "INSERT INTO tags VALUES ('KEEP', 9) ON CONFLICT (name) DO UPDATE SET n = excluded.n",
            "INSERT INTO tags VALUES ('ABC', 4) ON CONFLICT (name) DO UPDATE SET n = excluded.n",
        ],
    )
    .await;
}

#[tokio::test]
async fn replace_through_collated_unique_columns() {
    streams_equal(
        "CREATE TABLE people(id INTEGER PRIMARY KEY, email TEXT UNIQUE COLLATE NOCASE, handle TEXT, code TEXT);
         CREATE UNIQUE INDEX people_handle ON people(handle COLLATE NOCASE);
         CREATE UNIQUE INDEX people_code ON people(code COLLATE RTRIM);
         INSERT INTO people VALUES (1, 'a@x', 'ann', 'c1'), (2, 'b@x', 'bob', 'c2'), (3, 'c@x', 'cy', 'c3');",
        &[
            "INSERT OR REPLACE INTO people VALUES (4, 'A@X', 'dee', 'c4')",
            "INSERT OR REPLACE INTO people VALUES (5, 'e@x', 'BOB', 'c5')",
            "INSERT OR REPLACE INTO people VALUES (6, 'f@x', 'fay', 'c3 ')",
            "INSERT OR REPLACE INTO people VALUES (7, 'F@x', 'DEE', 'c5')",
        ],
    )
    .await;
}

#[tokio::test]
async fn replace_through_composite_and_several_indexes_at_once() {
    streams_equal(
        "CREATE TABLE slots(id INTEGER PRIMARY KEY, room TEXT, hour INTEGER, label TEXT UNIQUE, code TEXT,
                            UNIQUE (room, hour));
         CREATE UNIQUE INDEX slots_code ON slots(upper(code)) WHERE code IS NOT NULL;
         INSERT INTO slots VALUES (1, 'r1', 9, 'one', 'a'), (2, 'r1', 10, 'two', 'b'), (3, 'r2', 9, 'three', 'c');",
        &[
            "INSERT OR REPLACE INTO slots VALUES (4, 'r1', 9, 'two', 'C')",
            "INSERT OR REPLACE INTO slots VALUES (5, 'r1', 11, 'five', NULL)",
            "INSERT OR REPLACE INTO slots VALUES (6, 'r1', 11, 'six', NULL)",
        ],
    )
    .await;
}

#[tokio::test]
async fn swapping_unique_values_inside_one_transaction() {
    let swap = |column: &str, first: &str, second: &str| {
        format!(
            "BEGIN; UPDATE users SET {column} = 'tmp' WHERE id = 1; UPDATE users SET {column} = '{first}' WHERE id = 2;
             UPDATE users SET {column} = '{second}' WHERE id = 1; COMMIT;"
        )
    };
    let (nick, seat, email) = (swap("nick", "ann", "BOB"), swap("seat", "s1", "s2"), swap("email", "a@x", "b@x"));
    streams_equal(
        "CREATE TABLE users(id INTEGER PRIMARY KEY, email TEXT UNIQUE, nick TEXT, seat TEXT, active INTEGER);
         CREATE UNIQUE INDEX users_nick ON users(lower(nick));
         CREATE UNIQUE INDEX users_seat ON users(seat) WHERE active = 1;
         INSERT INTO users VALUES (1, 'a@x', 'Ann', 's1', 1), (2, 'b@x', 'Bob', 's2', 1);",
        &[
            &nick,
            &seat,
            &email,
            "BEGIN; DELETE FROM users WHERE id = 1; UPDATE users SET nick = 'BOB', seat = 's2' WHERE id = 2;
             INSERT INTO users VALUES (1, 'c@x', 'ann', 's1', 1); COMMIT;",
        ],
    )
    .await;
}

#[tokio::test]
async fn a_unique_expression_index_from_an_older_version_stops_being_unique() {
    let (db, file) = streams_equal(
        "CREATE TABLE users(id INTEGER PRIMARY KEY, nick TEXT); CREATE UNIQUE INDEX users_nick ON users(lower(nick));
         INSERT INTO users VALUES (1, 'Ann'), (2, 'Bob');",
        &[],
    )
    .await;
    db.client()
        .await
        .batch_execute("DROP INDEX users_nick; CREATE UNIQUE INDEX users_nick ON users (lower(nick))")
        .await
        .unwrap();
    let _daemon = start_daemon_with(&db, &file, &[]);
    file.exec("BEGIN; UPDATE users SET nick = 'x' WHERE id = 1; UPDATE users SET nick = 'ann' WHERE id = 2; UPDATE users SET nick = 'bob' WHERE id = 1; COMMIT;");
    wait_caught_up(&db, &file).await;
    db.assert_equal(&file.path).await;
    let definition = db.texts("SELECT indexdef FROM pg_indexes WHERE indexname = 'users_nick'").await;
    assert!(definition[0].as_deref().is_some_and(|d| d.starts_with("CREATE INDEX")), "{definition:?}");
}

#[tokio::test]
async fn a_unique_index_made_while_streaming_covers_replaces_before_capture_sees_it() {
    streams_equal(
        "CREATE TABLE users(id INTEGER PRIMARY KEY, nick TEXT); INSERT INTO users VALUES (1, 'Ann'), (2, 'Bob');",
        &[
            // Both in one transaction: the REPLACE runs before lite2pg can install a trigger for the new index.
            "BEGIN; CREATE UNIQUE INDEX users_nick ON users(lower(nick)); INSERT OR REPLACE INTO users VALUES (3, 'ANN'); COMMIT;",
            "INSERT OR REPLACE INTO users VALUES (4, 'bob')",
        ],
    )
    .await;
}

#[tokio::test]
async fn cutover_makes_expression_and_partial_indexes_unique() {
    let (db, file) = streams_equal(
        "CREATE TABLE users(id INTEGER PRIMARY KEY, email TEXT, active INTEGER);
         CREATE UNIQUE INDEX users_email ON users(lower(email));
         CREATE UNIQUE INDEX users_named ON users(id) WHERE email IS NOT NULL;
         INSERT INTO users VALUES (1, 'a@x', 1);",
        &["INSERT OR REPLACE INTO users VALUES (2, 'A@x', 1)"],
    )
    .await;
    drop_daemons(&db).await;
    let output = lite2pg_output(&["cutover", "--sqlite", file.path.to_str().unwrap(), "--postgres", &db.url()]);
    assert!(output.status.success(), "{}{}", String::from_utf8_lossy(&output.stdout), stderr(&output));
    let unique = db
        .texts("SELECT indexname || ':' || (indexdef LIKE 'CREATE UNIQUE%')::text FROM pg_indexes WHERE tablename = 'users' ORDER BY 1")
        .await;
    let unique: Vec<String> = unique.into_iter().flatten().collect();
    assert_eq!(unique, ["users_email:true", "users_named:true", "users_pkey:true"]);
    let duplicate = db.client().await.batch_execute("INSERT INTO users (id, email) VALUES (7, 'a@X')").await;
    assert!(duplicate.is_err(), "the expression index is unique after cutover");
}

/// Waits until no daemon holds the test database's source lock (the daemon was dropped, so killed).
async fn drop_daemons(db: &TestDb) {
    let client = db.client().await;
    let held = "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database
                WHERE l.locktype = 'advisory' AND d.datname = current_database()";
    wait_until("the daemon's lock to be released", Duration::from_secs(10), || async {
        let held: i64 = client.query_one(held, &[]).await.unwrap().get(0);
        check(held == 0, || format!("{held} advisory lock(s) held"))
    })
    .await
}
