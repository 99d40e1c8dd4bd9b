//! The first run and the examples: `lite2pg demo` with no PostgreSQL URL anywhere (lite2pg starts its own local
//! PostgreSQL), the Rust library example, and an SQLAlchemy application synced while it writes.

use crate::support::lite2pg;

#[test]
fn demo_without_a_url_runs_on_the_local_postgres_and_ends_equal() {
    if let Err(err) = lite2pg::pg::local::find_bindir() {
        panic!("the demo needs PostgreSQL's server binaries (`bash .ci/run` installs them): {err}");
    }
    let data = tempfile::tempdir().unwrap();
    // As root, the cluster runs as another user, who must be able to enter the directory.
    std::fs::set_permissions(data.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let local = |args: &[&str]| lite2pg().args(args).env("LITE2PG_DATA_DIR", data.path()).output().unwrap();
    let output = local(&["demo", "--seconds", "3"]);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stopped = local(&["local", "stop"]);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("EQUAL: 4 table(s)"), "{stdout}");
    assert!(stdout.contains("psql postgres://postgres@127.0.0.1:"), "{stdout}");
    assert!(String::from_utf8_lossy(&stopped.stdout).contains("local PostgreSQL stopped"));
    assert!(String::from_utf8_lossy(&local(&["local", "status"]).stdout).starts_with("not running"));
}

fn example_binary(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().join("examples").join(name)
}

#[tokio::test]
async fn the_library_example_copies_applies_and_verifies() {
    let file = crate::support::SqliteFile::new(
        "CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT); INSERT INTO notes VALUES (1, 'hi');",
    );
    let db = crate::support::TestDb::new().await;
    let output = std::process::Command::new(example_binary("library")).arg(&file.path).arg(db.url()).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("equal: true (1 tables compared)"), "{stdout}");
}

#[tokio::test]
async fn an_sqlalchemy_application_is_synced_while_it_writes_then_runs_on_postgres_after_cutover() {
    let app = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/sqlalchemy_app.py");
    let file = crate::support::SqliteFile::new("");
    let run_app = |changes: &str| {
        let output = std::process::Command::new("python3").args([app, file.path.to_str().unwrap(), changes]).output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    };
    run_app("0");
    let db = crate::support::TestDb::new().await;
    let _daemon = crate::support::daemon::start_daemon(&db, &file);
    run_app("400");
    crate::support::wait::wait_caught_up(&db, &file).await;
    db.assert_equal(&file.path).await;
    let orders = db.texts("SELECT count(*)::text FROM orders").await;
    assert_ne!(orders, [Some("0".to_string())], "the ORM's orders arrived");
    drop(_daemon);

    let cutover = crate::support::lite2pg_output(&["cutover", "--sqlite", file.path.to_str().unwrap(), "--postgres", &db.url()]);
    assert!(cutover.status.success(), "{}", crate::support::stderr(&cutover));
    let before = db.texts("SELECT max(id)::text FROM orders").await;
    let url = db.url().replacen("postgres://", "postgresql+psycopg2://", 1);
    let output = std::process::Command::new("python3").args([app, &url, "400"]).output().unwrap();
    assert!(output.status.success(), "the unchanged app fails on PostgreSQL: {}", String::from_utf8_lossy(&output.stderr));
    assert_ne!(db.texts("SELECT max(id)::text FROM orders").await, before, "the app wrote new orders to PostgreSQL");
}
