//! Property: after any sequence of SQL statements (across tables, in transactions that commit or roll back,
//! some failing on constraints) with syncs at random points, PostgreSQL equals SQLite.

use proptest::prelude::*;

use crate::support::{SqliteFile, TestDb};

const SCHEMA: &str = "
    CREATE TABLE a(id INTEGER PRIMARY KEY, u TEXT UNIQUE, v REAL);
    CREATE TABLE b(x TEXT, y INTEGER, note TEXT, PRIMARY KEY (x, y)) WITHOUT ROWID;
    CREATE TABLE c(k INTEGER, v BLOB);
    INSERT INTO a VALUES (1, 'u1', 0.5);
    INSERT INTO b VALUES ('p', 1, 'first');
    INSERT INTO c VALUES (1, x'01');";

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
        (id.clone(), any::<Vec<u8>>()).prop_map(|(k, v)| format!("INSERT INTO c VALUES ({k}, x'{}')", lite2pg::types::hex(&v))),
        id.clone().prop_map(|k| format!("UPDATE c SET k = k + 1 WHERE k = {k}")),
        id.prop_map(|k| format!("DELETE FROM c WHERE k = {k}")),
        Just("DELETE FROM c".to_string()),
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
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

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
