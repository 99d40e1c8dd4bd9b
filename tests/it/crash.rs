//! Crashes at the narrow windows of the guarantee, hit deterministically with fail points: the next run ends with
//! PostgreSQL equal to SQLite, nothing lost and nothing doubled.

use crate::support::{lite2pg, stderr, SqliteFile, TestDb};

fn writes(file: &SqliteFile, from: i64) {
    file.exec(&format!(
        "WITH RECURSIVE n(i) AS (SELECT {from} UNION ALL SELECT i + 1 FROM n WHERE i < {from} + 5999)
         INSERT OR REPLACE INTO accounts(id, email, balance, photo) SELECT i % 300, 'a' || i || '@x', i / 7.0, randomblob(4) FROM n;
         DELETE FROM accounts WHERE id % 11 = 0;
         INSERT INTO events(kind, payload) VALUES ('crash test', {from});"
    ));
}

fn run_once(file: &SqliteFile, db: &TestDb, failpoint: Option<&str>) -> std::process::Output {
    let mut command = lite2pg();
    command.args(["run", "--once", "--sqlite", file.path.to_str().unwrap(), "--postgres", &db.url()]).env("RUST_LOG", "error");
    if let Some(failpoint) = failpoint {
        command.env("FAILPOINTS", format!("{failpoint}=panic"));
    }
    command.output().unwrap()
}

#[tokio::test]
async fn a_crash_at_each_narrow_window_loses_and_doubles_nothing() {
    for failpoint in ["snapshot-after-copy", "batch-before-commit", "batch-after-commit", "prune-between-chunks"] {
        let file = SqliteFile::new(include_str!("../../examples/writer_schema.sql"));
        let db = TestDb::new().await;
        writes(&file, 0);
        if failpoint != "snapshot-after-copy" {
            assert!(run_once(&file, &db, None).status.success());
            writes(&file, 10_000);
        }
        let crashed = run_once(&file, &db, Some(failpoint));
        assert!(!crashed.status.success(), "{failpoint} was not hit: {}", stderr(&crashed));
        assert!(stderr(&crashed).contains(failpoint), "{failpoint}: {}", stderr(&crashed));
        writes(&file, 20_000);
        let recovered = run_once(&file, &db, None);
        assert!(recovered.status.success(), "after a crash at {failpoint}: {}", stderr(&recovered));
        db.assert_equal(&file.path).await;
        let events = db.texts("SELECT count(*)::text FROM events WHERE kind = 'crash test'").await;
        let expected = if failpoint == "snapshot-after-copy" { "2" } else { "3" };
        assert_eq!(events, [Some(expected.to_string())], "after a crash at {failpoint}, no event is doubled or lost");
    }
}
