//! Property: after any sequence of SQL statements (across tables, in transactions that commit or roll back,
//! some failing on constraints) with syncs at random points, PostgreSQL equals SQLite.

use proptest::prelude::*;

use crate::support::{SqliteFile, TestDb};

const SCHEMA: &str = "
    CREATE TABLE a(id INTEGER PRIMARY KEY, u TEXT UNIQUE, v REAL);
    CREATE TABLE b(x TEXT, y INTEGER, note TEXT, PRIMARY KEY (x, y)) WITHOUT ROWID;
    CREATE TABLE c(k INTEGER, v BLOB);
    CREATE TABLE r(id INTEGER PRIMARY KEY, name TEXT UNIQUE COLLATE NOCASE, code TEXT, seat TEXT, state TEXT);
    CREATE UNIQUE INDEX r_code ON r(lower(code));
    CREATE UNIQUE INDEX r_seat ON r(seat COLLATE RTRIM) WHERE state = 'on';
    CREATE TABLE n(k TEXT PRIMARY KEY COLLATE NOCASE, v INTEGER);
    INSERT INTO a VALUES (1, 'u1', 0.5);
    INSERT INTO b VALUES ('p', 1, 'first');
    INSERT INTO c VALUES (1, x'01');";

/// `default` cases, or `PROPTEST_CASES` for a longer hunt.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(default)
}

#[derive(Debug, Clone)]
enum Step {
    Sql(String),
    Sync,
}

fn statement() -> impl Strategy<Value = String> {
    let id = 0i64..8;
    let text = "[a-c]{1,2}";
    prop_oneof![
        (id.clone(), text, any::<f64>().prop_filter("finite", |f| f.is_finite()))
            .prop_map(|(i, u, v)| format!("INSERT INTO a VALUES ({i}, '{u}', {v:e})")),
        (id.clone(), text).prop_map(|(i, u)| format!("INSERT OR REPLACE INTO a(id, u) VALUES ({i}, '{u}')")),
        (id.clone(), id.clone()).prop_map(|(i, j)| format!("UPDATE a SET id = {j} WHERE id = {i}")),
        (id.clone(), text).prop_map(|(i, u)| format!("UPDATE OR REPLACE a SET u = '{u}' WHERE id = {i}")),
        id.clone().prop_map(|i| format!("DELETE FROM a WHERE id = {i}")),
        (text, id.clone(), text).prop_map(|(x, y, n)| format!(
            "INSERT INTO b VALUES ('{x}', {y}, '{n}') ON CONFLICT DO UPDATE SET note = excluded.note || '!'"
        )),
        (text, id.clone()).prop_map(|(x, y)| format!("UPDATE b SET y = y + 1 WHERE x = '{x}' AND y = {y}")),
        text.prop_map(|x| format!("DELETE FROM b WHERE x = '{x}'")),
        (id.clone(), any::<Vec<u8>>())
            .prop_map(|(k, v)| format!("INSERT INTO c VALUES ({k}, x'{}')", lite2pg::mapping::types::hex(&v))),
        id.clone().prop_map(|k| format!("UPDATE c SET k = k + 1 WHERE k = {k}")),
        id.clone().prop_map(|k| format!("DELETE FROM c WHERE k = {k}")),
        Just("DELETE FROM c".to_string()),
        // REPLACE through expression, partial and collated unique indexes, and over a NOCASE key.
        (id.clone(), "[aAbB]{1,2}", "[aAbB]", "[ab] ?", prop::bool::ANY).prop_map(|(i, name, code, seat, on)| format!(
            "INSERT OR REPLACE INTO r VALUES ({i}, '{name}', '{code}', '{seat}', '{}')",
            if on { "on" } else { "off" }
        )),
        (id.clone(), "[aAbB]", "[ab] ?").prop_map(|(i, code, seat)| format!(
            "UPDATE OR REPLACE r SET code = '{code}', seat = '{seat}', state = 'on' WHERE id = {i}"
        )),
        ("[aAbB]{1,2}", id).prop_map(|(k, v)| format!("INSERT OR REPLACE INTO n VALUES ('{k}', {v})")),
        "[aAbB]{1,2}".prop_map(|k| format!("INSERT INTO n VALUES ('{k}', 0) ON CONFLICT (k) DO UPDATE SET v = v + 1")),
        ("[aAbB]{1,2}", "[aAbB]{1,2}").prop_map(|(k, to)| format!("UPDATE OR REPLACE n SET k = '{to}' WHERE k = '{k}'")),
    ]
}

fn transaction() -> impl Strategy<Value = Vec<Step>> {
    (prop::collection::vec(statement(), 1..6), any::<bool>(), prop::bool::weighted(0.25)).prop_map(
        |(statements, commit, sync)| {
            let mut steps = vec![Step::Sql("BEGIN".into())];
            steps.extend(statements.into_iter().map(Step::Sql));
            steps.push(Step::Sql(if commit { "COMMIT" } else { "ROLLBACK" }.into()));
            if sync {
                steps.push(Step::Sync);
            }
            steps
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(12)))]

    #[test]
    fn postgres_equals_sqlite_after_any_statements(transactions in prop::collection::vec(transaction(), 1..25)) {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let file = SqliteFile::new(SCHEMA);
            let db = TestDb::new().await;
            let options = db.options(&file.path);
            let sync = || lite2pg::stream::run(&options, lite2pg::stream::StopWhen::CaughtUp, lite2pg::metrics::Metrics::new(Default::default()), |_| {});
            sync().await.unwrap();
            let conn = file.conn();
            for step in transactions.iter().flatten() {
                match step {
                    // Constraint failures are part of the workload: the statement fails, the transaction goes on.
                    Step::Sql(sql) => { let _ = conn.execute_batch(sql); }
                    Step::Sync => { sync().await.unwrap(); }
                }
            }
            sync().await.unwrap();
            db.assert_equal(&file.path).await;
        });
    }
}

/// One step of an application that migrates while it writes: SQL (which may fail, e.g. on a column a
/// previous step dropped), a migration tool's rebuild of `m`, or a sync.
#[derive(Debug, Clone)]
enum Migration {
    Sql(String),
    SqlThenSync(String),
    RebuildM,
    Sync,
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i32>().prop_map(|i| i.to_string()),
        (-1000i32..1000).prop_map(|i| format!("{}.5", i)),
        "[a-z]{0,3}".prop_map(|t| format!("'{t}'")),
        any::<[u8; 2]>().prop_map(|b| format!("x'{}'", lite2pg::mapping::types::hex(&b))),
        Just("NULL".to_string()),
    ]
}

fn migration() -> impl Strategy<Value = Migration> {
    let column = (0..4).prop_map(|n| format!("c{n}"));
    let table = (0..3).prop_map(|n| format!("t{n}"));
    let declared = prop_oneof![Just(""), Just(" INTEGER"), Just(" TEXT"), Just(" REAL"), Just(" BOOLEAN"), Just(" DATETIME")];
    let default = prop_oneof![Just(""), Just(" DEFAULT 7"), Just(" NOT NULL DEFAULT 'd'"), Just(" DEFAULT 1.5")];
    let id = 0i64..10;
    prop_oneof![
        4 => (id.clone(), column.clone(), value()).prop_map(|(i, c, v)| Migration::Sql(format!(
            "INSERT INTO m(id, {c}) VALUES ({i}, {v}) ON CONFLICT (id) DO UPDATE SET {c} = excluded.{c}"
        ))),
        2 => (id.clone(), column.clone(), value()).prop_map(|(i, c, v)| Migration::Sql(format!("UPDATE m SET {c} = {v} WHERE id = {i}"))),
        1 => id.clone().prop_map(|i| Migration::Sql(format!("DELETE FROM m WHERE id = {i}"))),
        2 => (table.clone(), value()).prop_map(|(t, v)| Migration::Sql(format!("INSERT INTO {t}(v) VALUES ({v})"))),
        2 => (column.clone(), declared, default).prop_map(|(c, d, x)| Migration::Sql(format!("ALTER TABLE m ADD COLUMN {c}{d}{x}"))),
        1 => (column.clone(), column.clone()).prop_map(|(a, b)| Migration::Sql(format!("ALTER TABLE m RENAME COLUMN {a} TO {b}"))),
        // Seen by lite2pg before anything else happens: a column dropped and added again under the same name
        // unseen in between cannot be told from no change at all (docs/configuration.md).
        1 => column.clone().prop_map(|c| Migration::SqlThenSync(format!("ALTER TABLE m DROP COLUMN {c}"))),
        1 => column.clone().prop_map(|c| Migration::Sql(format!("CREATE INDEX IF NOT EXISTS m_{c} ON m({c})"))),
        1 => column.prop_map(|c| Migration::Sql(format!("DROP INDEX IF EXISTS m_{c}"))),
        1 => table.clone().prop_map(|t| Migration::Sql(format!("CREATE TABLE IF NOT EXISTS {t}(id INTEGER PRIMARY KEY, v); INSERT INTO {t}(v) VALUES (1), ('two')"))),
        1 => table.clone().prop_map(|t| Migration::Sql(format!("DROP TABLE IF EXISTS {t}"))),
        1 => (table.clone(), table).prop_map(|(a, b)| Migration::Sql(format!("ALTER TABLE {a} RENAME TO {b}"))),
        1 => Just(Migration::RebuildM),
        2 => Just(Migration::Sync),
    ]
}

/// What Alembic's batch mode does: a new table from `m`'s current definition, rows copied, old dropped, renamed.
fn rebuild_m(conn: &rusqlite::Connection) {
    let sql: String = conn.query_row("SELECT sql FROM sqlite_master WHERE name = 'm'", [], |r| r.get(0)).unwrap();
    // After a rename SQLite keeps the name quoted; the column list is what matters.
    let create = format!("CREATE TABLE m_new{}", &sql[sql.find('(').unwrap()..]);
    conn.execute_batch(&format!(
        "BEGIN; {create}; INSERT INTO m_new SELECT * FROM m; DROP TABLE m; ALTER TABLE m_new RENAME TO m; COMMIT;"
    ))
    .unwrap();
}

/// Runs `steps` against a fresh file and database; `sync` is how lite2pg gets to see them.
async fn replay_migrations<F: std::future::Future<Output = ()>>(file: &SqliteFile, steps: &[Migration], sync: impl Fn() -> F) {
    let conn = file.conn();
    for step in steps {
        match step {
            Migration::Sql(sql) => {
                let _ = conn.execute_batch(sql);
            }
            Migration::SqlThenSync(sql) => {
                let _ = conn.execute_batch(sql);
                sync().await;
            }
            Migration::RebuildM => rebuild_m(&conn),
            Migration::Sync => sync().await,
        }
    }
    sync().await;
}

const MIGRATING: &str = "CREATE TABLE m(id INTEGER PRIMARY KEY, c0 INTEGER); CREATE TABLE t0(id INTEGER PRIMARY KEY, v);
    CREATE TABLE beat(id INTEGER PRIMARY KEY);";

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(6)))]

    #[test]
    fn a_running_daemon_follows_any_migrations_between_writes(steps in prop::collection::vec(migration(), 1..30)) {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let file = SqliteFile::new(MIGRATING);
            let db = TestDb::new().await;
            let _daemon = crate::support::daemon::start_daemon(&db, &file);
            replay_migrations(&file, &steps, || crate::support::wait::settle(&db, &file)).await;
            db.assert_equal(&file.path).await;
        });
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(10)))]

    #[test]
    fn postgres_follows_any_migrations_between_writes(steps in prop::collection::vec(migration(), 1..30)) {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let file = SqliteFile::new(MIGRATING);
            let db = TestDb::new().await;
            let options = db.options(&file.path);
            let sync = || async {
                let metrics = lite2pg::metrics::Metrics::new(Default::default());
                lite2pg::stream::run(&options, lite2pg::stream::StopWhen::CaughtUp, metrics, |_| {}).await.unwrap();
            };
            sync().await;
            replay_migrations(&file, &steps, sync).await;
            db.assert_equal(&file.path).await;
        });
    }
}

/// `db`'s options for `file` as source `id` of shared tables.
fn shared_source(db: &TestDb, file: &SqliteFile, id: &str) -> lite2pg::options::SnapshotOptions {
    let mut options = db.options(&file.path).with_source_id(id);
    options.source.policies.layout = lite2pg::mapping::layout::Layout::SharedTables;
    options
}

async fn assert_source_equal(options: &lite2pg::options::SourceOptions) {
    for diff in lite2pg::verify::verify(options).await.unwrap().tables {
        assert!(diff.is_equal(), "source {:?}: table {} differs: {diff:?}", options.source_id, diff.table);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(8)))]

    #[test]
    fn shared_tables_follow_one_sources_migrations_and_keep_the_others(steps in prop::collection::vec(migration(), 1..30)) {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let (mine, theirs) = (SqliteFile::new(MIGRATING), SqliteFile::new(MIGRATING));
            theirs.exec("INSERT INTO m VALUES (1, 10), (2, 20); INSERT INTO t0(v) VALUES ('theirs');");
            let db = TestDb::new().await;
            let (my_options, their_options) = (shared_source(&db, &mine, "mine"), shared_source(&db, &theirs, "theirs"));
            let sync = || async {
                for options in [&my_options, &their_options] {
                    let metrics = lite2pg::metrics::Metrics::new(Default::default());
                    lite2pg::stream::run(options, lite2pg::stream::StopWhen::CaughtUp, metrics, |_| {}).await.unwrap();
                }
                theirs.exec("UPDATE m SET c0 = c0 + 1");
            };
            sync().await;
            replay_migrations(&mine, &steps, sync).await;
            sync().await;
            assert_source_equal(&my_options.source).await;
            assert_source_equal(&their_options.source).await;
        });
    }
}

/// What real applications' schemas and maintenance hold: unique indexes on expressions, partial and collated ones
/// under REPLACE, a NOCASE primary key, a key-less table and untyped columns holding every kind, VACUUM, a
/// migration tool's rebuilds that loosen and tighten constraints, and a child table created before its parent.
const REAL_APP: &str = "
    CREATE TABLE u(id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT COLLATE NOCASE, active INTEGER NOT NULL DEFAULT 1);
    CREATE UNIQUE INDEX u_name ON u(lower(name));
    CREATE UNIQUE INDEX u_active_email ON u(email) WHERE active = 1;
    CREATE TABLE n(code TEXT COLLATE NOCASE PRIMARY KEY, v);
    CREATE TABLE k(a, b ANY);
    CREATE TABLE beat(id INTEGER PRIMARY KEY);
    INSERT INTO u VALUES (1, 'Ann', 'a@x', 1), (2, 'bob', 'b@x', 0);
    INSERT INTO n VALUES ('abc', 1);
    INSERT INTO k VALUES (1, 'one'), ('two', 2.5), (x'03', NULL);";

const U_LOOSE: &str = "CREATE TABLE u_new(id INTEGER PRIMARY KEY, name TEXT, email TEXT COLLATE NOCASE, active INTEGER)";
const U_STRICT: &str =
    "CREATE TABLE u_new(id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT COLLATE NOCASE UNIQUE, active INTEGER NOT NULL DEFAULT 1)";

#[derive(Debug, Clone)]
enum AppStep {
    /// A statement in its own transaction; it may fail on a constraint.
    Sql(String),
    /// A migration tool's rebuild of `u`, loosening (no NOT NULL, no unique indexes) or tightening; it may fail
    /// on rows the tighter table refuses, and then changes nothing.
    RebuildU {
        strict: bool,
    },
    Settle,
}

fn app_step() -> impl Strategy<Value = AppStep> {
    let id = 0i64..8;
    let name = "[aAbB]{1,2}";
    prop_oneof![
        3 => (id.clone(), name, name, 0i64..2).prop_map(|(i, n, e, a)| AppStep::Sql(format!(
            "INSERT OR REPLACE INTO u(id, name, email, active) VALUES ({i}, '{n}', '{e}@x', {a})"
        ))),
        2 => (id.clone(), name).prop_map(|(i, n)| AppStep::Sql(format!("UPDATE OR REPLACE u SET name = '{n}' WHERE id = {i}"))),
        1 => (id.clone(), id.clone()).prop_map(|(i, j)| AppStep::Sql(format!("UPDATE OR REPLACE u SET id = {j} WHERE id = {i}"))),
        1 => id.clone().prop_map(|i| AppStep::Sql(format!("UPDATE u SET active = 1 - active, name = NULL WHERE id = {i}"))),
        1 => id.clone().prop_map(|i| AppStep::Sql(format!("DELETE FROM u WHERE id = {i}"))),
        2 => (name, value()).prop_map(|(c, v)| AppStep::Sql(format!("REPLACE INTO n VALUES ('{c}', {v})"))),
        1 => (name, value()).prop_map(|(c, v)| AppStep::Sql(format!("UPDATE n SET v = {v} WHERE code = '{c}'"))),
        2 => (value(), value()).prop_map(|(a, b)| AppStep::Sql(format!("INSERT INTO k VALUES ({a}, {b})"))),
        1 => (value(), 0i64..6).prop_map(|(v, r)| AppStep::Sql(format!("UPDATE k SET b = {v} WHERE rowid = (SELECT rowid FROM k ORDER BY rowid LIMIT 1 OFFSET {r})"))),
        1 => (0i64..6).prop_map(|r| AppStep::Sql(format!("DELETE FROM k WHERE rowid = (SELECT rowid FROM k ORDER BY rowid LIMIT 1 OFFSET {r})"))),
        1 => Just(AppStep::Sql("VACUUM".into())),
        1 => Just(AppStep::Sql(
            "BEGIN; CREATE TABLE IF NOT EXISTS ch(id INTEGER PRIMARY KEY, p INTEGER REFERENCES pa(id));
             CREATE TABLE IF NOT EXISTS pa(id TEXT PRIMARY KEY, name TEXT); INSERT INTO pa VALUES ('1', 'one') ON CONFLICT DO NOTHING;
             INSERT INTO ch(p) VALUES (1); COMMIT;".into()
        )),
        1 => any::<bool>().prop_map(|strict| AppStep::RebuildU { strict }),
        2 => Just(AppStep::Settle),
    ]
}

fn rebuild_u(conn: &rusqlite::Connection, strict: bool) {
    let indexes = match strict {
        true => "CREATE UNIQUE INDEX u_name ON u(lower(name)); CREATE UNIQUE INDEX u_active_email ON u(email) WHERE active = 1;",
        false => "",
    };
    let result = conn.execute_batch(&format!(
        "BEGIN; {}; INSERT INTO u_new SELECT id, name, email, active FROM u; DROP TABLE u; ALTER TABLE u_new RENAME TO u; {indexes} COMMIT;",
        if strict { U_STRICT } else { U_LOOSE }
    ));
    if result.is_err() {
        let _ = conn.execute_batch("ROLLBACK");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(6)))]

    #[test]
    fn a_running_daemon_keeps_a_real_apps_schema_equal_through_replace_vacuum_and_rebuilds(steps in prop::collection::vec(app_step(), 1..30)) {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let file = SqliteFile::new(REAL_APP);
            let db = TestDb::new().await;
            let mut daemon = crate::support::daemon::start_daemon(&db, &file);
            let conn = file.conn();
            for step in &steps {
                match step {
                    AppStep::Sql(sql) => {
                        if conn.execute_batch(sql).is_err() && !conn.is_autocommit() {
                            conn.execute_batch("ROLLBACK").unwrap();
                        }
                    }
                    AppStep::RebuildU { strict } => rebuild_u(&conn, *strict),
                    AppStep::Settle => crate::support::wait::settle(&db, &file).await,
                }
            }
            crate::support::wait::settle(&db, &file).await;
            assert_eq!(daemon.child.try_wait().unwrap(), None, "the daemon stopped");
            db.assert_equal(&file.path).await;
        });
    }
}

/// Found by `shared_tables_follow_one_sources_migrations_and_keep_the_others`: the other source's text was
/// rejected by the shared column while it awaited its first type, and stayed out after this source widened it.
#[tokio::test]
async fn a_shared_column_another_source_widens_takes_the_rows_it_rejected_before() {
    let (mine, theirs) = (SqliteFile::new(MIGRATING), SqliteFile::new(MIGRATING));
    theirs.exec("INSERT INTO t0(v) VALUES ('theirs');");
    let db = TestDb::new().await;
    let (my_options, their_options) = (shared_source(&db, &mine, "mine"), shared_source(&db, &theirs, "theirs"));
    let sync = |options| async move {
        let metrics = lite2pg::metrics::Metrics::new(Default::default());
        lite2pg::stream::run(options, lite2pg::stream::StopWhen::CaughtUp, metrics, |_| {}).await.unwrap();
    };
    sync(&my_options).await;
    sync(&their_options).await;
    mine.exec("INSERT INTO t0(v) VALUES (1), ('two');");
    sync(&my_options).await;
    sync(&their_options).await;
    assert_source_equal(&my_options.source).await;
    assert_source_equal(&their_options.source).await;
    assert_eq!(db.texts("SELECT count(*)::text FROM lite2pg.rejects").await, [Some("0".into())]);
}
