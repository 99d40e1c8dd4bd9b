//! The first run: `lite2pg demo` with no PostgreSQL URL anywhere starts lite2pg's own local PostgreSQL.

use crate::support::lite2pg;

#[test]
fn demo_without_a_url_runs_on_the_local_postgres_and_ends_equal() {
    if lite2pg::pg::local::find_bindir().is_err() {
        eprintln!("skipped: no PostgreSQL server binaries for the local cluster");
        return;
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
