//! A Django project moved to PostgreSQL in lite2pg's own schema, as a user would: migrate and write on SQLite,
//! stream, migrate again while streaming (a table rebuild adding a UNIQUE field and generated fields), cut over,
//! then run Django on PostgreSQL: `migrate --check` is clean and the ledger app's ORM checks pass (typed filters,
//! unique enforcement, generated fields PostgreSQL computes, sessions, authentication).

use crate::support::apps::{manage, manage_on_postgres, migrate_all};
use crate::support::daemon::{start_daemon, terminate};
use crate::support::wait::wait_caught_up;
use crate::support::{lite2pg_output, stderr, unique, SqliteFile, TestDb};

#[tokio::test]
async fn a_django_app_runs_on_postgres_after_cutover() {
    let file = SqliteFile::new("PRAGMA journal_mode = DELETE;");
    migrate_all(|args| manage(&file, args), Some("0001"));
    manage(&file, &["ledger_write", "1"]);
    let db = TestDb::new().await;
    let mut daemon = start_daemon(&db, &file);
    manage(&file, &["ledger_write", "2"]);
    wait_caught_up(&db, &file).await;

    // 0002 rebuilds both tables: a UNIQUE account number and stored generated fields.
    manage(&file, &["migrate", "ledger"]);
    manage(&file, &["ledger_write", "3"]);
    manage(&file, &["ledger_write", "4"]);
    wait_caught_up(&db, &file).await;
    daemon.assert_running();
    assert!(unique(&db, "ledger_account", "number").await, "the UNIQUE the rebuild added is missing in PostgreSQL");
    db.assert_equal(&file.path).await;
    assert!(terminate(&mut daemon).success());

    let (path, url) = (file.path.to_str().unwrap(), db.url());
    let output = lite2pg_output(&["cutover", "--sqlite", path, "--postgres", &url]);
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{text}{}", stderr(&output));
    assert!(text.contains("ledger_account.name_lower, ledger_entry.cents"), "the generated fields are generated: {text}");
    let generated = "SELECT attrelid::regclass || '.' || attname FROM pg_attribute WHERE attgenerated = 's' ORDER BY 1";
    assert_eq!(db.texts(generated).await, [Some("ledger_account.name_lower".into()), Some("ledger_entry.cents".into())]);

    manage_on_postgres(&file, &db, &["migrate", "--check"]);
    manage_on_postgres(&file, &db, &["ledger_check"]);
}
