//! Typed columns: dates and times, booleans and decimals declared in SQLite become PostgreSQL's own types (also in
//! tables empty at the snapshot); every written form is kept as the instant it names and verify compares instants;
//! misfits follow the policy and a widening keeps the copy exact; every type lite2pg writes round-trips through
//! PostgreSQL's own binary form, and copies made by earlier versions keep working.

use lite2pg::config::{ConfigFile, MisfitPolicy, Policies};
use lite2pg::stream::{run, RunSummary, StopWhen};

use crate::support::{SqliteFile, TestDb};

/// The columns a Django model with DateTime, Date, Time, Boolean, Decimal and Float fields has on SQLite, and the
/// spellings other tools write.
const EVENTS: &str = r#"
    CREATE TABLE ev(id INTEGER PRIMARY KEY, at DATETIME, at6 datetime(6), tz "timestamp with time zone", day DATE,
                    clock TIME, ok BOOLEAN, price DECIMAL(12,2), amount decimal, ratio REAL);"#;

const EVENT_TYPES: [&str; 10] = [
    "id bigint",
    "at timestamp with time zone",
    "at6 timestamp with time zone",
    "tz timestamp with time zone",
    "day date",
    "clock time without time zone",
    "ok boolean",
    "price numeric(12,2)",
    "amount numeric",
    "ratio double precision",
];

/// One row per form: SQLite's own, Django's, ISO 8601 with `T`, `Z` and offsets, fractions of 1 to 6 digits.
const EVENT_ROWS: &str = "
    INSERT INTO ev VALUES (1, '2024-01-02 03:04:05', '2024-01-02 03:04:05.123456', '2024-01-02T05:04:05+02:00',
                           '2024-01-02', '03:04:05', 1, 12.5, 12.5, 0.5);
    INSERT INTO ev VALUES (2, '2024-01-02T03:04:05Z', '2024-01-02 03:04:05.1', '2024-01-02T03:04:05.000001-0130',
                           '1999-12-31', '23:59:59.999999', 0, 12, '1.10', 2.0);
    INSERT INTO ev VALUES (3, datetime('now'), strftime('%Y-%m-%d %H:%M:%f', 'now'), CURRENT_TIMESTAMP, date('now'),
                           time('now'), 1, 0.1, 7, NULL);
    INSERT INTO ev VALUES (4, '2024-01-02 03:04', '2024-01-02', '2024-01-02 08:04:05+05', NULL, '12:30', NULL, NULL,
                           NULL, NULL);";

async fn sync_with(db: &TestDb, file: &SqliteFile, policies: Policies) -> lite2pg::Result<RunSummary> {
    let mut options = db.options(&file.path);
    options.source.policies = policies;
    run(&options, StopWhen::CaughtUp, lite2pg::metrics::Metrics::new(Default::default()), |_| {}).await
}

async fn sync(db: &TestDb, file: &SqliteFile) -> RunSummary {
    sync_with(db, file, Policies::default()).await.unwrap()
}

fn policy(on_misfit: MisfitPolicy) -> Policies {
    let mut policies = Policies::default();
    policies.on_misfit = on_misfit;
    policies
}

async fn column_types(db: &TestDb, table: &str) -> Vec<String> {
    let sql = format!(
        "SELECT attname || ' ' || format_type(atttypid, atttypmod) FROM pg_attribute
         WHERE attrelid = 'public.{table}'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum"
    );
    db.texts(&sql).await.into_iter().flatten().collect()
}

/// The first column of a query's rows, NULL as "NULL".
async fn values(db: &TestDb, sql: &str) -> Vec<String> {
    db.texts(sql).await.into_iter().map(|v| v.unwrap_or_else(|| "NULL".into())).collect()
}

#[tokio::test]
async fn an_empty_table_gets_typed_columns_and_takes_every_written_form() {
    let file = SqliteFile::new(EVENTS);
    let db = TestDb::new().await;
    sync(&db, &file).await;
    assert_eq!(column_types(&db, "ev").await, EVENT_TYPES, "typed from the declarations alone");

    file.exec(EVENT_ROWS);
    assert_eq!(sync(&db, &file).await.rejects, 0);
    db.assert_equal(&file.path).await;
    let utc = "to_char(%s AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')";
    let instants = |column: &str| format!("SELECT {} FROM ev WHERE id IN (1, 2, 4) ORDER BY id", utc.replace("%s", column));
    assert_eq!(
        values(&db, &instants("at")).await,
        ["2024-01-02 03:04:05.000000", "2024-01-02 03:04:05.000000", "2024-01-02 03:04:00.000000"],
        "a value without an offset is UTC, as SQLite and Django write them"
    );
    assert_eq!(
        values(&db, &instants("at6")).await,
        ["2024-01-02 03:04:05.123456", "2024-01-02 03:04:05.100000", "2024-01-02 00:00:00.000000"]
    );
    assert_eq!(
        values(&db, &instants("tz")).await,
        ["2024-01-02 03:04:05.000000", "2024-01-02 04:34:05.000001", "2024-01-02 03:04:05.000000"],
        "offsets name the instant"
    );
    assert_eq!(values(&db, "SELECT day::text || ' ' || clock::text FROM ev WHERE id = 2").await, ["1999-12-31 23:59:59.999999"]);
    assert_eq!(values(&db, "SELECT price::text FROM ev ORDER BY id").await, ["12.50", "12.00", "0.10", "NULL"]);
    assert_eq!(values(&db, "SELECT amount::text FROM ev ORDER BY id").await, ["12.5", "1.1", "7", "NULL"]);

    // What an ORM asks of these columns works in SQL.
    assert_eq!(values(&db, "SELECT id::text FROM ev WHERE at >= now() - interval '1 day'").await, ["3"]);
    assert_eq!(values(&db, "SELECT count(*)::text FROM ev WHERE date_part('year', at) = 2024").await, ["3"]);
    assert_eq!(values(&db, "SELECT id::text FROM ev WHERE day < '2000-01-01'::date").await, ["2"]);
    assert_eq!(values(&db, "SELECT id::text FROM ev WHERE ok ORDER BY id").await, ["1", "3"]);
    assert_eq!(values(&db, "SELECT id::text FROM ev WHERE clock > '12:00' AND id <> 3 ORDER BY id").await, ["2", "4"]);
    assert_eq!(values(&db, "SELECT sum(price)::text FROM ev").await, ["24.60"]);

    // The instants do not depend on the session's time zone: another zone shows the same instants, verify agrees.
    db.client().await.batch_execute(&format!("ALTER DATABASE {} SET timezone TO 'Asia/Kathmandu'", db.name)).await.unwrap();
    file.exec("INSERT INTO ev (id, at, tz) VALUES (5, '2024-06-01 00:00:00', '2024-06-01T05:45:00+05:45')");
    sync(&db, &file).await;
    assert_eq!(values(&db, "SELECT at::text FROM ev WHERE id = 5").await, ["2024-06-01 05:45:00+05:45"]);
    assert_eq!(values(&db, "SELECT (at = tz)::text FROM ev WHERE id = 5").await, ["true"]);
    db.assert_equal(&file.path).await;
}

#[tokio::test]
async fn a_snapshot_with_values_keeps_the_declared_types_when_every_value_fits() {
    let file = SqliteFile::new(&format!(
        "{EVENTS} {EVENT_ROWS}
         CREATE TABLE loose(id INTEGER PRIMARY KEY, at DATETIME, day DATE, clock TIME, price DECIMAL(5,2), ok BOOLEAN);
         INSERT INTO loose VALUES (1, '2024-01-02 03:04:05', '2024-01-02 03:04:05', '10:00', 1.005, 2),
                                  (2, 'yesterday', '2024-01-03', '2024-01-02 10:00', 1000, 1);"
    ));
    let db = TestDb::new().await;
    assert_eq!(sync(&db, &file).await.rejects, 0);
    assert_eq!(column_types(&db, "ev").await, EVENT_TYPES);
    assert_eq!(
        column_types(&db, "loose").await,
        ["id bigint", "at text", "day timestamp with time zone", "clock text", "price numeric", "ok bigint"],
        "a value that does not fit keeps the column the type holding every value as itself"
    );
    db.assert_equal(&file.path).await;
    assert_eq!(values(&db, "SELECT at FROM loose ORDER BY id").await, ["2024-01-02 03:04:05", "yesterday"]);
}

#[tokio::test]
async fn misfits_follow_the_policy_and_a_widening_keeps_the_copy_exact() {
    const MISFITS: &str = "
        INSERT INTO ev (id, at) VALUES (10, 'tomorrow');
        INSERT INTO ev (id, price) VALUES (11, 1.005);
        INSERT INTO ev (id, ok) VALUES (12, 2);";
    for policy_name in [MisfitPolicy::Auto, MisfitPolicy::Reject, MisfitPolicy::Stop] {
        let file = SqliteFile::new(EVENTS);
        let db = TestDb::new().await;
        sync_with(&db, &file, policy(policy_name)).await.unwrap();
        file.exec(EVENT_ROWS);
        sync_with(&db, &file, policy(policy_name)).await.unwrap();
        file.exec(MISFITS);
        let outcome = sync_with(&db, &file, policy(policy_name)).await;
        let rejects = db.texts("SELECT key::text || ' ' || reason FROM lite2pg.rejects ORDER BY key::text").await;
        match policy_name {
            MisfitPolicy::Auto => {
                assert_eq!(outcome.unwrap().rejects, 0);
                let types = column_types(&db, "ev").await;
                assert_eq!([&types[1], &types[6], &types[7]], ["at text", "ok bigint", "price numeric"], "each widened");
                // The texts are SQLite's own again, not PostgreSQL's rendering of the instants they named.
                assert_eq!(
                    values(&db, "SELECT at FROM ev WHERE id IN (1, 2, 10) ORDER BY id").await,
                    ["2024-01-02 03:04:05", "2024-01-02T03:04:05Z", "tomorrow"]
                );
                assert_eq!(values(&db, "SELECT price::text FROM ev WHERE id IN (1, 11) ORDER BY id").await, ["12.5", "1.005"]);
            }
            MisfitPolicy::Reject => {
                assert_eq!(outcome.unwrap().rejects, 3);
                assert_eq!(column_types(&db, "ev").await, EVENT_TYPES, "types stay");
                assert_eq!(
                    rejects.into_iter().flatten().collect::<Vec<_>>(),
                    [
                        "[10] a text value does not fit a timestamp with time zone column: not a date and time \
                         (YYYY-MM-DD[ HH:MM[:SS[.ffffff]]][Z|±HH:MM])",
                        "[11] a real value does not fit a numeric(12,2) column: 1.005 has more than 2 fraction digits",
                        "[12] a integer value does not fit a boolean column: 2 is not 0 or 1",
                    ]
                );
            }
            _ => {
                let err = outcome.unwrap_err().to_string();
                assert!(err.contains("[10]") && err.contains("timestamp with time zone"), "{err}");
                file.exec("UPDATE ev SET at = '2024-01-05T00:00:00+01:00' WHERE id = 10; DELETE FROM ev WHERE id > 10;");
                sync_with(&db, &file, policy(policy_name)).await.unwrap();
            }
        }
        db.assert_equal(&file.path).await;
    }
}

#[tokio::test]
async fn verify_compares_instants_and_repair_mends_typed_columns() {
    let file = SqliteFile::new(&format!(
        "{EVENTS} {EVENT_ROWS}
         CREATE TABLE daily(at DATETIME PRIMARY KEY, n INTEGER);
         INSERT INTO daily VALUES ('2024-01-02T05:04:05+02:00', 1), ('2024-01-03 00:00:00', 2);"
    ));
    let db = TestDb::new().await;
    sync(&db, &file).await;
    db.assert_equal(&file.path).await;
    // The same instant written another way in SQLite is no difference.
    file.exec(
        "UPDATE daily SET at = '2024-01-02 03:04:05.000' WHERE n = 1; UPDATE ev SET tz = '2024-01-02 03:04:05Z' WHERE id = 1;",
    );
    sync(&db, &file).await;
    db.assert_equal(&file.path).await;

    db.client()
        .await
        .batch_execute(
            "UPDATE daily SET n = 5 WHERE at = '2024-01-03 00:00:00+00';
             INSERT INTO daily VALUES ('2030-01-01 00:00:00.5+00', 9);
             UPDATE ev SET at = at + interval '1 microsecond' WHERE id = 2;
             UPDATE ev SET price = 12.51 WHERE id = 1;",
        )
        .await
        .unwrap();
    let options = db.options(&file.path);
    let report = lite2pg::verify::verify(&options.source).await.unwrap();
    let diff = |name: &str| report.tables.iter().find(|t| t.table == name).unwrap().clone();
    let daily = diff("daily");
    assert_eq!((daily.differing, daily.extra, daily.missing), (1, 1, 0), "{daily:?}");
    let examples: Vec<String> = daily.examples.iter().map(|e| e.key.to_string()).collect();
    assert!(examples.contains(&r#"["2030-01-01 00:00:00.500000"]"#.to_string()), "keys found only in PostgreSQL: {examples:?}");
    assert_eq!(diff("ev").differing, 2);
    lite2pg::verify::repair(&options, &report).await.unwrap();
    db.assert_equal(&file.path).await;
    assert_eq!(values(&db, "SELECT count(*)::text FROM daily").await, ["2"]);
}

#[tokio::test]
async fn every_type_lite2pg_writes_round_trips_through_postgres() {
    let file = SqliteFile::new(
        "CREATE TABLE k(id INTEGER PRIMARY KEY, small INTEGER, int4 INTEGER, f4 REAL, u TEXT, ub BLOB, doc TEXT, raw TEXT,
                        code TEXT, money REAL, naive TEXT, clock TEXT, secs TEXT, millis TEXT, old_text DATETIME);
         INSERT INTO k VALUES
           (1, -32768, 2147483647, 0.5, '0123456789ABCDEF0123456789abcdef', x'00112233445566778899aabbccddeeff',
            '{\"b\": [1, 2.50, 1e2], \"a\": \"\\u00e9\"}', ' {\"x\":1} ', 'héllo', 12.5, '2024-01-02T05:04:05+02:00',
            '23:59:59.5', '2024-01-02 03:04:05', '2024-01-02 03:04:05.123', '2024-01-02T03:04:05Z'),
           (2, 7, -1, -0.0, '01234567-89ab-cdef-0123-456789abcdef', NULL, '[]', 'null', '', 3, '2024-01-02', '00:00',
            NULL, NULL, 'whenever'),
           (3, NULL, NULL, 1048576.5, NULL, NULL, 5, 2.5, 12345, 0.01, NULL, NULL, NULL, NULL, NULL);
         CREATE TABLE j(id INTEGER PRIMARY KEY, doc TEXT, raw TEXT);",
    );
    // JSON as jsonb prints it and verify reproduces: key order by length then bytes, the last duplicate, escapes,
    // numbers as numeric prints them.
    for (id, json) in [
        r#"{"bb": 1, "a": 2, "é": 3, "z": 4, "aa": 5, "a": 6}"#,
        r#"["\t\u001f\"\\\/", "\ud83d\ude00", "ü", "\u00fc"]"#,
        r#"[-0, -0.0, 1E+2, 0.000, 1e-20, 12.3400, -1.5e3, 123456789012345678901234567890]"#,
        r#"{"nested": {"b": [true, false, null, {}], "a": []}, "": ""}"#,
        "\t [ 1 ,\n 2 ] \r\n",
        r#""just a string""#,
    ]
    .iter()
    .enumerate()
    {
        file.conn().execute("INSERT INTO j VALUES (?1, ?2, ?2)", rusqlite::params![id as i64, json]).unwrap();
    }
    let config = r#"
        [table.k.columns]
        small = { type = "smallint" }
        int4 = { type = "integer" }
        f4 = { type = "real" }
        u = { type = "uuid" }
        ub = { type = "uuid" }
        doc = { type = "jsonb" }
        raw = { type = "json" }
        code = { type = "varchar(5)" }
        money = { type = "numeric(12,2)" }
        naive = { type = "timestamp" }
        clock = { type = "time" }
        secs = { type = "timestamp(0)" }
        millis = { type = "timestamp(3)" }
        old_text = { type = "text" }
        [table.j.columns]
        doc = { type = "jsonb" }
        raw = { type = "json" }
    "#;
    let policies = ConfigFile::parse(config).unwrap().policies();
    let db = TestDb::new().await;
    assert_eq!(sync_with(&db, &file, policies.clone()).await.unwrap().rejects, 0);
    assert_eq!(
        column_types(&db, "k").await[1..],
        [
            "small smallint",
            "int4 integer",
            "f4 real",
            "u uuid",
            "ub uuid",
            "doc jsonb",
            "raw json",
            "code character varying(5)",
            "money numeric(12,2)",
            "naive timestamp(6) without time zone",
            "clock time without time zone",
            "secs timestamp(0) without time zone",
            "millis timestamp(3) without time zone",
            "old_text text",
        ]
    );
    db.assert_equal(&file.path).await;
    assert_eq!(
        values(&db, "SELECT concat_ws(' | ', u, ub, doc, raw, money, naive, clock) FROM k WHERE id = 1").await,
        [
            r#"01234567-89ab-cdef-0123-456789abcdef | 00112233-4455-6677-8899-aabbccddeeff | {"a": "é", "b": [1, 2.50, 100]} |  {"x":1}  | 12.50 | 2024-01-02 03:04:05 | 23:59:59.5"#
        ]
    );
    assert_eq!(values(&db, "SELECT doc::text || ' ' || raw::text FROM k WHERE id = 3").await, ["5 2.5"]);
    assert_eq!(values(&db, "SELECT doc::text FROM j WHERE id = 0").await, [r#"{"a": 6, "z": 4, "aa": 5, "bb": 1, "é": 3}"#]);

    // Streamed changes, including values none of these types take: rejected with the reason, the rest equal.
    file.exec(
        "UPDATE k SET small = 70000 WHERE id = 2;
         UPDATE k SET f4 = 0.1 WHERE id = 3;
         INSERT INTO k (id, u, doc, code, money, naive, clock) VALUES (4, 'not-a-uuid', NULL, NULL, NULL, NULL, NULL),
            (5, NULL, '{', NULL, NULL, NULL, NULL), (6, NULL, NULL, 'toolong', NULL, NULL, NULL),
            (7, NULL, NULL, NULL, 1.005, NULL, NULL), (8, NULL, NULL, NULL, NULL, 'soon', '25:00'),
            (9, 'ABCDEF0123456789abcdef0123456789', '{\"k\": true}', 'ok', 99.99, '2024-02-29 12:00:00.000001Z', '12:00');",
    );
    let mut rejecting = policies.clone();
    rejecting.on_misfit = MisfitPolicy::Reject;
    assert_eq!(sync_with(&db, &file, rejecting).await.unwrap().rejects, 7);
    let reasons = db.texts("SELECT key::text || ' ' || column_name FROM lite2pg.rejects ORDER BY key::text").await;
    assert_eq!(
        reasons.into_iter().flatten().collect::<Vec<_>>(),
        ["[2] small", "[3] f4", "[4] u", "[5] doc", "[6] code", "[7] money", "[8] naive"]
    );
    db.assert_equal(&file.path).await;
    assert_eq!(
        values(&db, "SELECT u::text || ' ' || naive::text FROM k WHERE id = 9").await,
        ["abcdef01-2345-6789-abcd-ef0123456789 2024-02-29 12:00:00.000001"]
    );
}

/// The PostgreSQL type of every column of the tables named, as `table.column type`, in `db`.
async fn table_types(db: &TestDb, tables: &[&str]) -> Vec<(String, String)> {
    let sql = "SELECT c.relname || '.' || a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
               JOIN pg_class c ON c.oid = a.attrelid
               WHERE c.relnamespace = 'public'::regnamespace AND c.relname = ANY($1) AND a.attnum > 0
                 AND NOT a.attisdropped ORDER BY 1";
    let rows = db.client().await.query(sql, &[&tables]).await.unwrap();
    rows.iter().map(|r| (r.get(0), r.get(1))).collect()
}

/// What an ORM sees of a type: parameters dropped, sizes of integers and texts alike.
fn kind(pg_type: &str) -> &str {
    match pg_type.split('(').next().unwrap_or_default() {
        "integer" | "smallint" | "bigint" => "integer",
        "character varying" | "text" => "text",
        other => other.trim_end(),
    }
}

#[tokio::test]
async fn django_fields_get_the_types_djangos_postgresql_backend_uses() {
    use crate::support::apps::{manage, DJANGO_PROJECT};
    const TABLES: [&str; 4] = ["ledger_account", "ledger_entry", "auth_user", "django_session"];
    let file = SqliteFile::new("");
    manage(&file, &["migrate"]);
    let db = TestDb::new().await;
    sync(&db, &file).await;
    let empty_snapshot = table_types(&db, &TABLES).await;
    manage(&file, &["ledger_write", "1"]);
    assert_eq!(sync(&db, &file).await.rejects, 0, "every value Django wrote fits");
    db.assert_equal(&file.path).await;

    // A snapshot of the file with rows chooses the same types.
    let with_rows = TestDb::new().await;
    sync(&with_rows, &file).await;
    assert_eq!(table_types(&with_rows, &TABLES).await, empty_snapshot);
    let types: std::collections::HashMap<String, String> = empty_snapshot.into_iter().collect();
    for (column, expected) in [
        ("ledger_account.opened", "timestamp with time zone"),
        ("ledger_account.birthday", "date"),
        ("ledger_account.wakes", "time without time zone"),
        ("ledger_account.active", "boolean"),
        ("ledger_account.balance", "numeric"),
        ("ledger_account.rate", "double precision"),
        ("ledger_entry.amount", "numeric"),
        ("ledger_entry.booked", "timestamp with time zone"),
        ("ledger_entry.day", "date"),
        ("ledger_entry.cleared", "boolean"),
        ("ledger_entry.weight", "double precision"),
        ("auth_user.date_joined", "timestamp with time zone"),
        ("auth_user.last_login", "timestamp with time zone"),
        ("auth_user.is_staff", "boolean"),
        ("django_session.expire_date", "timestamp with time zone"),
    ] {
        assert_eq!(types.get(column).map(String::as_str), Some(expected), "{column}");
    }

    // Django's own PostgreSQL schema for the same models has the same kind in every column lite2pg made.
    let django = TestDb::new().await;
    let output = std::process::Command::new("python3")
        .current_dir(DJANGO_PROJECT)
        .args(["manage.py", "migrate", "-v0"])
        .env("SHOP_POSTGRES", django.url())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    for (column, django_type) in table_types(&django, &TABLES).await {
        if let Some(ours) = types.get(&column) {
            assert_eq!(kind(ours), kind(&django_type), "{column}: lite2pg made {ours}, Django makes {django_type}");
        }
    }
    let values = "SELECT count(*)::text FROM ledger_entry WHERE booked >= '2024-01-01' AND date_part('year', day) = 2024
                  AND amount > 20 AND cleared";
    assert_ne!(db.texts(values).await, [Some("0".to_string())], "ORM-style filters work on the copy");
}

#[tokio::test]
async fn copies_made_by_earlier_versions_keep_working_and_widen_to_instants() {
    // Earlier versions made timestamp(0), timestamp(3), date and text columns for SQLite's dates and times.
    let file = SqliteFile::new(
        "CREATE TABLE old(id INTEGER PRIMARY KEY, secs DATETIME, millis DATETIME, day DATE, loose DATETIME);
         INSERT INTO old VALUES (1, '2024-01-02 03:04:05', '2024-01-02 03:04:05.123', '2024-01-02', 'whenever');",
    );
    let config = r#"
        [table.old.columns]
        secs = { type = "timestamp(0)" }
        millis = { type = "timestamp(3)" }
        loose = { type = "text" }
    "#;
    let policies = ConfigFile::parse(config).unwrap().policies();
    let db = TestDb::new().await;
    sync_with(&db, &file, policies).await.unwrap();
    let earlier =
        ["id bigint", "secs timestamp(0) without time zone", "millis timestamp(3) without time zone", "day date", "loose text"];
    assert_eq!(column_types(&db, "old").await, earlier);
    // A later lite2pg (no type settings now) reads the plans back from PostgreSQL and streams into them.
    file.exec("INSERT INTO old VALUES (2, '2024-01-03 00:00:00', '2024-01-03 00:00:00.500', '2024-01-03', '2024-01-03T00:00Z');");
    sync(&db, &file).await;
    assert_eq!(column_types(&db, "old").await, earlier);
    db.assert_equal(&file.path).await;
    // Values in forms those columns did not take widen them to timestamptz, holding the same instants.
    file.exec(
        "INSERT INTO old VALUES (3, '2024-01-04 00:00:00.123456', '2024-01-04T00:00:00Z', '2024-01-04 10:00:00+02:00', NULL);",
    );
    assert_eq!(sync(&db, &file).await.rejects, 0);
    assert_eq!(
        column_types(&db, "old").await,
        [
            "id bigint",
            "secs timestamp with time zone",
            "millis timestamp with time zone",
            "day timestamp with time zone",
            "loose text",
        ]
    );
    db.assert_equal(&file.path).await;
    assert_eq!(
        values(&db, "SELECT to_char(day AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') FROM old ORDER BY id").await,
        ["2024-01-02 00:00", "2024-01-03 00:00", "2024-01-04 08:00"]
    );
}

/// JSON texts with nesting, duplicate keys, escapes and numbers in every notation.
fn json_text() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    let leaf = prop_oneof![
        Just("null".to_string()),
        Just("true".to_string()),
        Just("false".to_string()),
        "-?(0|[1-9][0-9]{0,20})(\\.[0-9]{1,8})?([eE][+-]?[0-9]{1,2})?",
        "\"([a-zA-Z é€😀/]|\\\\[nt\"\\\\/bfr]|\\\\u00[1-9a-f][0-9a-f]|\\\\ud83d\\\\ude00){0,6}\"",
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(|items| format!("[{}]", items.join(" ,"))),
            proptest::collection::vec(("\"[a-cé]{0,2}\"", inner), 0..5).prop_map(|pairs| {
                let pairs: Vec<String> = pairs.into_iter().map(|(key, value)| format!("{key}:{value}")).collect();
                format!("{{ {} }}", pairs.join(", "))
            }),
        ]
    })
}

#[tokio::test]
async fn postgres_reads_generated_json_dates_and_times_as_lite2pg_does() {
    use proptest::strategy::{Strategy, ValueTree};
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let datetime = "(19|20)[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])([ T]([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\\.[0-9]{1,6})?)?(Z|[+-](0[0-9]|1[0-4])(:?[0-5][0-9])?)?)?";
    let clock = "([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\\.[0-9]{1,6})?)?";
    let mut sample =
        |strategy: &dyn Fn() -> proptest::strategy::BoxedStrategy<String>| strategy().new_tree(&mut runner).unwrap().current();
    let file = SqliteFile::new(
        "CREATE TABLE g(id INTEGER PRIMARY KEY, doc TEXT, doc_text TEXT, at DATETIME, at_text TEXT, clock TIME, clock_text TEXT);",
    );
    {
        let conn = file.conn();
        for id in 0..400i64 {
            let doc = sample(&|| json_text().boxed());
            let at = sample(&|| datetime.boxed());
            let time = sample(&|| clock.boxed());
            conn.execute("INSERT INTO g VALUES (?1, ?2, ?2, ?3, ?3, ?4, ?4)", rusqlite::params![id, doc, at, time]).unwrap();
        }
    }
    let policies = ConfigFile::parse("[table.g.columns]\ndoc = { type = \"jsonb\" }").unwrap().policies();
    let db = TestDb::new().await;
    assert_eq!(sync_with(&db, &file, policies).await.unwrap().rejects, 0);
    assert_eq!(column_types(&db, "g").await[3], "at timestamp with time zone");
    // verify compares lite2pg's jsonb text and instants with what PostgreSQL sends.
    db.assert_equal(&file.path).await;
    // PostgreSQL parsing the same texts itself (no offset = the session's zone, here UTC) agrees on every row.
    let client = db.client().await;
    client.batch_execute("SET TIME ZONE 'UTC'").await.unwrap();
    let disagreeing = "SELECT id, doc_text, at_text, clock_text FROM g WHERE doc IS DISTINCT FROM doc_text::jsonb
                       OR at IS DISTINCT FROM at_text::timestamptz OR clock IS DISTINCT FROM clock_text::time";
    let rows = client.query(disagreeing, &[]).await.unwrap();
    let shown: Vec<(i64, String, String, String)> = rows.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3))).collect();
    assert!(shown.is_empty(), "{shown:?}");
}

#[tokio::test]
async fn declared_uuid_and_json_columns_get_those_types_and_widen_to_text() {
    let file = SqliteFile::new("CREATE TABLE doc(id INTEGER PRIMARY KEY, ref UUID, body JSON, meta JSONB);");
    let db = TestDb::new().await;
    sync(&db, &file).await;
    assert_eq!(column_types(&db, "doc").await, ["id bigint", "ref uuid", "body json", "meta jsonb"]);
    file.exec(
        r#"INSERT INTO doc VALUES (1, '0123456789abcdef0123456789ABCDEF', '{"b": 1, "a": [true]}', '{"b": 1, "a": 2}'),
                                  (2, x'00112233445566778899aabbccddeeff', 5, '[1, 2.50]'), (3, NULL, '"x"', NULL);"#,
    );
    assert_eq!(sync(&db, &file).await.rejects, 0);
    db.assert_equal(&file.path).await;
    assert_eq!(
        values(&db, "SELECT concat_ws(' | ', ref, body, meta) FROM doc ORDER BY id").await,
        [
            r#"01234567-89ab-cdef-0123-456789abcdef | {"b": 1, "a": [true]} | {"a": 2, "b": 1}"#,
            "00112233-4455-6677-8899-aabbccddeeff | 5 | [1, 2.50]",
            r#""x""#
        ]
    );
    // Text that is not a UUID or JSON widens those columns to text under `auto`, every row as SQLite holds it.
    file.exec("UPDATE doc SET ref = NULL WHERE id = 2; INSERT INTO doc VALUES (4, 'not-a-uuid', 'not json', NULL);");
    assert_eq!(sync(&db, &file).await.rejects, 0);
    assert_eq!(column_types(&db, "doc").await, ["id bigint", "ref text", "body text", "meta jsonb"]);
    db.assert_equal(&file.path).await;
    assert_eq!(values(&db, "SELECT ref FROM doc WHERE id = 1").await, ["0123456789abcdef0123456789ABCDEF"]);
}
