//! Proving and watching the sync: verify (and repair), status, doctor, metrics and health.

use std::time::Duration;

use serde_json::Value;

use crate::support::daemon::{daemon_command, Daemon};
use crate::support::http::{free_port, http_get};
use crate::support::wait::{check, wait_until_blocking};
use crate::support::{lite2pg_output, stderr, SqliteFile, TestDb};

const APP: &str = "
    CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, r REAL, b BLOB);
    WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000)
        INSERT INTO t SELECT i, 'v' || i, i * 0.1, randomblob(8) FROM n;
    CREATE TABLE k(a TEXT, b INT, c, PRIMARY KEY (a, b)) WITHOUT ROWID;
    INSERT INTO k VALUES ('x', 1, 2), ('y', 2, NULL);
    CREATE TABLE nokey(x, y);
    INSERT INTO nokey VALUES (1, 2), (1, 2), (NULL, 'a');";

fn run_json(args: &[&str]) -> (Option<i32>, Value) {
    let output = lite2pg_output(args);
    let json = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|err| panic!("{err}: {}\n{}", String::from_utf8_lossy(&output.stdout), stderr(&output)));
    (output.status.code(), json)
}

fn table<'v>(report: &'v Value, name: &str) -> &'v Value {
    report["tables"].as_array().unwrap().iter().find(|t| t["table"] == name).unwrap()
}

#[tokio::test]
async fn verify_finds_each_kind_of_difference_and_repair_mends_it() {
    let file = SqliteFile::new(APP);
    file.exec("INSERT INTO t VALUES (5000, 'nul' || char(0) || 'inside', 0, NULL)");
    let db = TestDb::new().await;
    let (path, url) = (file.path.to_str().unwrap(), db.url());
    let args = |extra: &[&'static str]| -> Vec<String> {
        [&["--sqlite", path, "--postgres", &url, "--json"][..], extra].concat().into_iter().map(String::from).collect()
    };
    let output = lite2pg_output(&["snapshot", "--sqlite", path, "--postgres", &url]);
    assert_eq!(output.status.code(), Some(1), "a reject makes the snapshot exit 1: {}", stderr(&output));

    let verify = |extra: &[&'static str]| {
        let args = args(extra);
        run_json(&[&["verify"], &args.iter().map(String::as_str).collect::<Vec<_>>()[..]].concat())
    };
    let (code, report) = verify(&[]);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(table(&report, "t")["known_rejects"], 1, "the rejected row is known, not drift");
    let listed = lite2pg_output(&["rejects", "--sqlite", path, "--postgres", &url]);
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert!(listed.contains("[5000]") && listed.contains("NUL character") && listed.contains("\\x6e756c00"), "{listed}");

    db.client()
        .await
        .batch_execute(
            "UPDATE t SET r = r + 1e-15 WHERE id = 7; DELETE FROM t WHERE id = 9; INSERT INTO t VALUES (9999, 'extra', 1, NULL);
             UPDATE k SET c = 3 WHERE a = 'x'; DELETE FROM nokey WHERE x IS NULL;",
        )
        .await
        .unwrap();
    file.exec("UPDATE t SET v = 'not applied yet' WHERE id = 11");
    let (code, report) = verify(&[]);
    assert_eq!(code, Some(1), "{report}");
    let t = table(&report, "t");
    assert_eq!((t["missing"].as_u64(), t["extra"].as_u64(), t["differing"].as_u64()), (Some(1), Some(1), Some(1)), "{t}");
    assert_eq!(t["pending"], 1, "the change not yet applied is pending, not a difference");
    let examples: Vec<String> = t["examples"].as_array().unwrap().iter().map(|e| format!("{}{}", e["kind"], e["key"])).collect();
    assert_eq!(examples.len(), 3);
    for expected in ["\"differing\"[7]", "\"missing\"[9]", "\"extra\"[9999]"] {
        assert!(examples.contains(&expected.to_string()), "{examples:?}");
    }
    assert_eq!(table(&report, "k")["differing"], 1);
    assert_eq!(table(&report, "nokey")["missing"], 1);

    let (code, report) = verify(&["--repair"]);
    assert_eq!(code, Some(0), "repair mends every difference: {report}");
    assert_eq!(db.texts("SELECT v FROM t WHERE id = 11").await, [Some("not applied yet".to_string())]);
    db.assert_equal(&file.path).await;
}

#[tokio::test]
async fn verify_is_consistent_while_the_daemon_streams() {
    let file = SqliteFile::new(include_str!("../../examples/writer_schema.sql"));
    let db = TestDb::new().await;
    let _daemon = crate::support::daemon::start_daemon(&db, &file);
    crate::support::wait::wait_caught_up(&db, &file).await;
    let mut app = crate::support::daemon::writer(&file.path, 5, 1_000_000);
    for round in 0..3 {
        let report = lite2pg::verify::verify(&db.source(&file.path)).await.unwrap();
        assert!(report.tables.iter().all(|d| d.is_equal()), "round {round}: mid-stream verify found drift: {:?}", report.tables);
        assert!(app.try_wait().unwrap().is_none(), "the application kept writing while verify ran");
    }
    app.kill().unwrap();
    app.wait().unwrap();
    crate::support::wait::wait_caught_up(&db, &file).await;
    db.assert_equal(&file.path).await;
}

#[tokio::test]
async fn status_shows_position_backlog_and_counts() {
    let file = SqliteFile::new(APP);
    let db = TestDb::new().await;
    let (path, url) = (file.path.to_str().unwrap(), db.url());
    assert!(lite2pg_output(&["run", "--once", "--sqlite", path, "--postgres", &url]).status.success());
    file.exec("INSERT INTO t VALUES (4000, 'new', 0, NULL); DELETE FROM k;");
    // The lag is measured in time: the sleep is what is under test.
    std::thread::sleep(Duration::from_millis(1100));
    let (code, status) = run_json(&["status", "--sqlite", path, "--postgres", &url, "--json"]);
    assert_eq!(code, Some(0), "{status}");
    assert_eq!(status["pending_changes"], 3, "{status}");
    assert!(status["lag_seconds"].as_f64().unwrap() >= 1.0, "{status}");
    assert_eq!(status["rejects"], 0);
    assert_eq!(status["daemon"], Value::Null);
    assert!(status["applied_seq"].as_i64().is_some());
    assert_eq!(table(&status, "t")["sqlite_rows"], 3001);
    assert_eq!(table(&status, "t")["postgres_rows"], 3000);

    assert!(lite2pg_output(&["run", "--once", "--sqlite", path, "--postgres", &url]).status.success());
    let (_, status) = run_json(&["status", "--sqlite", path, "--postgres", &url, "--json"]);
    assert_eq!((status["pending_changes"].as_i64(), status["lag_seconds"].as_f64()), (Some(0), Some(0.0)), "{status}");

    let (code, status) = run_json(&["status", "--sqlite", path, "--postgres", "postgres://u:secret@127.0.0.1:1/x", "--json"]);
    assert_eq!(code, Some(1), "an unreachable PostgreSQL is reported and fails the command");
    let text = status.to_string();
    assert!(text.contains("127.0.0.1:1") && !text.contains("secret"), "{text}");
    assert_eq!(table(&status, "t")["sqlite_rows"], 3001, "the SQLite side still shows");
}

#[tokio::test]
async fn doctor_passes_a_healthy_sync_and_explains_problems() {
    let file = SqliteFile::new(APP);
    let db = TestDb::new().await;
    let (path, url) = (file.path.to_str().unwrap(), db.url());
    let output = lite2pg_output(&["doctor", "--sqlite", path, "--postgres", &url]);
    assert_eq!(output.status.code(), Some(1), "nothing set up yet");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(text.contains("[FAIL] capture") && text.contains("fix: run `lite2pg run`"), "{text}");

    assert!(lite2pg_output(&["run", "--once", "--sqlite", path, "--postgres", &url]).status.success());
    let (code, findings) = run_json(&["doctor", "--sqlite", path, "--postgres", &url, "--json"]);
    assert_eq!(code, Some(0), "{findings}");
    assert!(findings.as_array().unwrap().iter().all(|f| f["outcome"] == "pass"), "{findings}");

    let conn = file.conn();
    let trigger: String = conn
        .query_row("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 't' AND name LIKE '%insert'", [], |r| {
            r.get(0)
        })
        .unwrap();
    conn.execute_batch(&format!("PRAGMA journal_mode = DELETE; DROP TRIGGER \"{trigger}\";")).unwrap();
    db.client().await.batch_execute("ALTER TABLE t DROP COLUMN r").await.unwrap();
    let output = lite2pg_output(&["doctor", "--sqlite", path, "--postgres", &url]);
    assert_eq!(output.status.code(), Some(1));
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    for expected in
        ["[warn] journal mode: delete", "PRAGMA journal_mode=WAL", "[FAIL] capture: triggers missing on t", "[FAIL] tables"]
    {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }

    let output = lite2pg_output(&["doctor", "--sqlite", path, "--postgres", "postgres://u:secret@127.0.0.1:1/x"]);
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(text.contains("[FAIL] postgres reachable: cannot reach PostgreSQL at 127.0.0.1:1"), "{text}");
    assert!(!text.contains("secret"));
}

#[tokio::test]
async fn metrics_and_health_are_served_while_running() {
    let file = SqliteFile::new(APP);
    let db = TestDb::new().await;
    assert!(lite2pg_output(&["run", "--once", "--sqlite", file.path.to_str().unwrap(), "--postgres", &db.url()])
        .status
        .success());
    let port = free_port();
    let daemon = Daemon::spawn(
        daemon_command()
            .args(["run", "--sqlite", file.path.to_str().unwrap(), "--postgres", &db.url()])
            .args(["--metrics-addr", &format!("127.0.0.1:{port}")]),
    );
    file.exec("INSERT INTO t VALUES (4000, 'new', 0, NULL); UPDATE k SET c = 5; DELETE FROM nokey;");
    let metrics = wait_until_blocking("the changes to show in the metrics", Duration::from_secs(30), || {
        let (code, body) = http_get(port, "/metrics");
        assert_eq!(code, 200);
        match body.contains(",table=\"nokey\",op=\"delete\"} 3") {
            true => Ok(body),
            false => Err(body),
        }
    });
    for name in [
        ",table=\"t\",op=\"upsert\"} 1",
        "lite2pg_pending_changes",
        "lite2pg_lag_seconds",
        "lite2pg_batch_duration_seconds_bucket",
        "lite2pg_rejects_total{source=",
        "lite2pg_up{source=",
    ] {
        assert!(metrics.contains(name), "missing {name} in:\n{metrics}");
    }
    wait_until_blocking("health to say caught up", Duration::from_secs(10), || {
        let health = http_get(port, "/healthz");
        check(health == (200, "ok: caught up\n".to_string()), || format!("{health:?}"))
    });
    assert_eq!(http_get(port, "/nothing").0, 404);
    drop(daemon);

    let port = free_port();
    let _daemon = Daemon::spawn(
        daemon_command()
            .args(["run", "--sqlite", file.path.to_str().unwrap(), "--postgres", "postgres://u:secret@127.0.0.1:1/x"])
            .args(["--metrics-addr", &format!("127.0.0.1:{port}"), "--health-max-outage", "0"]),
    );
    let body = wait_until_blocking("health to say 503 with PostgreSQL unreachable", Duration::from_secs(30), || {
        let (code, body) = http_get(port, "/healthz");
        if code == 503 {
            Ok(body)
        } else {
            Err(format!("{code} {body}"))
        }
    });
    assert!(body.contains("batches have failed"), "{body}");
    let (_, metrics) = http_get(port, "/metrics");
    let down = metrics.lines().any(|line| line.starts_with("lite2pg_up{source=") && line.ends_with("} 0"));
    assert!(metrics.contains(",kind=\"PgConnect\",sqlstate=\"\"}") && down, "{metrics}");
    assert!(!metrics.contains("secret"));
}

#[tokio::test]
async fn bench_reports_every_measure_and_leaves_nothing_behind() {
    let db = TestDb::new().await;
    let (code, report) = run_json(&["bench", "--rows", "10000", "--postgres", &db.url(), "--json"]);
    assert_eq!(code, Some(0), "{report}");
    let measures = report["measures"].as_array().unwrap();
    let names: Vec<&str> = measures.iter().map(|m| m["measure"].as_str().unwrap()).collect();
    for expected in ["snapshot", "verify", "insert, one transaction", "single-row transactions", "catch-up", "p50", "p99"] {
        assert!(names.iter().any(|n| n.contains(expected)), "no {expected:?} measure in {names:?}");
    }
    let limits: Vec<&str> = measures.iter().map(|m| m["raw_limit_is"].as_str().unwrap()).collect();
    for expected in ["without capture", "per-row trigger that does nothing", "into a table with the primary key"] {
        assert!(limits.iter().any(|l| l.contains(expected)), "no raw limit {expected:?} in {limits:?}");
    }
    for measure in measures {
        for field in ["lite2pg", "raw_limit", "ratio"] {
            assert!(measure[field].as_f64().unwrap() > 0.0, "{measure}");
        }
    }
    let leftovers = db
        .texts(
            "SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'lite2pg_bench%'
             UNION ALL SELECT source_id FROM lite2pg.sources",
        )
        .await;
    assert!(leftovers.is_empty(), "bench left {leftovers:?}");
}
